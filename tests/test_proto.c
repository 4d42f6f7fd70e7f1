/*
 * test_proto.c - the client request decoder (PROTOCOL.md sections 3 and 6)
 * and the name rules it leans on (sections 2 and 4): a good request of
 * every type with its defaults, every missing required field, every field
 * of the wrong JSON type, every range, ref echo on failure, frames that
 * are not JSON objects, body limits counted in UTF-8 bytes.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "unit.h"

#include "names.h"
#include "proto.h"

#define MAX_BODY 4000

/* Long strings for the length limits, built by literal concatenation. */
#define X8 "xxxxxxxx"
#define X32 X8 X8 X8 X8
#define X64 X32 X32
#define X65 X64 "x"
#define X33 X32 "x"
#define Y8 "yyyyyyyy"
#define Y32 Y8 Y8 Y8 Y8
#define Y33 Y32 "y"
/* 32 two-byte characters: 64 bytes. */
#define E8 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
#define E32 E8 E8 E8 E8

/*
 * Like CU_ASSERT, but a failure is reported with the table case's input
 * instead of the condition, so a failing row can be found at once.
 */
#define CASE_ASSERT(cond, input) \
	CU_assertImplementation((cond) ? CU_TRUE : CU_FALSE, __LINE__, \
	    (input), __FILE__, "", CU_FALSE)

/*
 * The JSON in this file is written with ' for " to keep it readable; no
 * case needs a literal '. The copy has no NUL after its len bytes, so
 * AddressSanitizer catches a decoder that reads past len. msg may be NULL
 * here when the reason does not matter.
 */
static enum proto_status
decode_max(const char *text, size_t max_body, struct proto_req *r,
    const char **msg)
{
	size_t len = strlen(text);
	char *json = malloc(len > 0 ? len : 1);
	const char *ignored;
	enum proto_status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(json);
	for (size_t i = 0; i < len; i++)
		json[i] = text[i] == '\'' ? '"' : text[i];
	st = proto_decode(json, len, max_body, r, msg ? msg : &ignored);
	free(json);
	return st;
}

static enum proto_status
decode(const char *text, struct proto_req *r, const char **msg)
{
	return decode_max(text, MAX_BODY, r, msg);
}

/* Decode a request that must be good; the caller checks the fields. */
static void
decode_ok(const char *json, struct proto_req *r)
{
	const char *msg = "unset";

	CASE_ASSERT(decode(json, r, &msg) == PROTO_OK, json);
	CASE_ASSERT(msg == NULL, json);
}

struct bad_case {
	const char *json;
	enum proto_status want;
	enum proto_type type;     /* what req->type must still say */
	const char *msg;
};

static void
check_bad_cases(const struct bad_case *cases, size_t n)
{
	struct proto_req r;
	const char *msg;

	for (size_t i = 0; i < n; i++) {
		const struct bad_case *c = &cases[i];

		msg = NULL;
		CASE_ASSERT(decode(c->json, &r, &msg) == c->want, c->json);
		CASE_ASSERT(r.type == c->type, c->json);
		CASE_ASSERT(msg != NULL && strcmp(msg, c->msg) == 0, c->json);
		/* A refused request carries nothing on the heap. */
		CASE_ASSERT(r.body == NULL && r.token == NULL && r.name == NULL,
		    c->json);
		proto_req_free(&r);
	}
}

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define CHECK_BAD(cases) check_bad_cases(cases, NELEM(cases))

#define BAD PROTO_BAD_REQUEST

/* The reasons, as the decoder must word them. */
#define M_TOKEN "token: must be a string of at most 8192 bytes"
#define M_NAME "name: must be a string of at most 1024 bytes"
#define M_ROOM_TYPE "room: must be a string"
#define M_ROOM "room: not a valid room name"
#define M_SINCE "since: must be an integer >= 0"
#define M_BODY_TYPE "body: must be a string"
#define M_ID "id: must be a string of at most 64 bytes"
#define M_REF "ref: must be a string of at most 64 bytes"
#define M_TARGET "target: must be an integer >= 1"
#define M_EMOJI "emoji: must be a string of 1-32 bytes"
#define M_ADD "add: must be a boolean"
#define M_ACTIVE "active: must be a boolean"
#define M_SEQ "seq: must be an integer >= 1"
#define M_BEFORE "before: must be an integer >= 1"
#define M_LIMIT "limit: must be an integer >= 1"
#define M_FRAME "frame: not a JSON object"

static void
test_hello_good(void)
{
	struct proto_req r;

	decode_ok("{'type':'hello','token':'a.b.c','name':'alice',"
	    "'ref':'h1'}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_HELLO);
	CU_ASSERT_STRING_EQUAL(r.token, "a.b.c");
	CU_ASSERT_STRING_EQUAL(r.name, "alice");
	CU_ASSERT_EQUAL(r.has_ref, 1);
	CU_ASSERT_STRING_EQUAL(r.ref, "h1");
	proto_req_free(&r);

	/* Shape only: neither is required; content is the session's call. */
	decode_ok("{'type':'hello'}", &r);
	CU_ASSERT_PTR_NULL(r.token);
	CU_ASSERT_PTR_NULL(r.name);
	CU_ASSERT_EQUAL(r.has_ref, 0);
	proto_req_free(&r);
	decode_ok("{'type':'hello','name':'not a valid user!'}", &r);
	CU_ASSERT_PTR_NULL(r.token);
	CU_ASSERT_STRING_EQUAL(r.name, "not a valid user!");
	proto_req_free(&r);
	decode_ok("{'type':'hello','token':''}", &r);
	CU_ASSERT_STRING_EQUAL(r.token, "");
	CU_ASSERT_PTR_NULL(r.name);
	proto_req_free(&r);
}

static void
test_hello_bounds(void)
{
	char buf[10000];
	struct proto_req r;
	const char *msg;

	for (size_t len = 1024; len <= 1025; len++) {
		size_t off = strlen("{'type':'hello','name':'");

		memcpy(buf, "{'type':'hello','name':'", off);
		memset(buf + off, 'n', len);
		memcpy(buf + off + len, "'}", 3);
		CU_ASSERT_EQUAL(decode(buf, &r, &msg),
		    len == 1024 ? PROTO_OK : PROTO_BAD_REQUEST);
		if (len == 1024) {
			CU_ASSERT_EQUAL(strlen(r.name), 1024);
		} else {
			CU_ASSERT_STRING_EQUAL(msg,
			    "name: must be a string of at most 1024 bytes");
		}
		proto_req_free(&r);
	}
	for (size_t len = 8192; len <= 8193; len++) {
		size_t off = strlen("{'type':'hello','token':'");

		memcpy(buf, "{'type':'hello','token':'", off);
		memset(buf + off, 't', len);
		memcpy(buf + off + len, "'}", 3);
		CU_ASSERT_EQUAL(decode(buf, &r, &msg),
		    len == 8192 ? PROTO_OK : PROTO_BAD_REQUEST);
		if (len == 8192) {
			CU_ASSERT_EQUAL(strlen(r.token), 8192);
		} else {
			CU_ASSERT_STRING_EQUAL(msg,
			    "token: must be a string of at most 8192 bytes");
		}
		proto_req_free(&r);
	}
}

static void
test_join_leave_good(void)
{
	struct proto_req r;

	decode_ok("{'type':'join','room':'lobby'}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_JOIN);
	CU_ASSERT_STRING_EQUAL(r.room, "lobby");
	CU_ASSERT_EQUAL(r.room_len, 5);
	CU_ASSERT_EQUAL(r.has_since, 0);
	proto_req_free(&r);

	decode_ok("{'type':'join','room':'dm:alice:bob','since':0}", &r);
	CU_ASSERT_STRING_EQUAL(r.room, "dm:alice:bob");
	CU_ASSERT_EQUAL(r.room_len, 12);
	CU_ASSERT_EQUAL(r.has_since, 1);
	CU_ASSERT_EQUAL(r.since, 0);
	proto_req_free(&r);

	decode_ok("{'type':'join','room':'a','since':9007199254740993}", &r);
	CU_ASSERT_EQUAL(r.since, INT64_C(9007199254740993));
	proto_req_free(&r);

	/* The longest room string there is: a dm of two 32-byte users. */
	decode_ok("{'type':'join','room':'dm:" X32 ":" Y32 "'}", &r);
	CU_ASSERT_EQUAL(r.room_len, NAMES_ROOM_STR_MAX);
	proto_req_free(&r);

	decode_ok("{'type':'leave','room':'" X64 "','ref':'l'}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_LEAVE);
	CU_ASSERT_STRING_EQUAL(r.room, X64);
	CU_ASSERT_EQUAL(r.room_len, 64);
	CU_ASSERT_STRING_EQUAL(r.ref, "l");
	proto_req_free(&r);
}

static void
test_send_good(void)
{
	struct proto_req r;

	decode_ok("{'type':'send','room':'lobby','body':'hi \\'you\\'',"
	    "'id':'c-1','ref':'r1'}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_SEND);
	CU_ASSERT_STRING_EQUAL(r.room, "lobby");
	CU_ASSERT_STRING_EQUAL(r.body, "hi \"you\"");
	CU_ASSERT_EQUAL(r.body_len, 8);
	CU_ASSERT_EQUAL(r.has_id, 1);
	CU_ASSERT_STRING_EQUAL(r.id, "c-1");
	CU_ASSERT_EQUAL(r.has_ref, 1);
	CU_ASSERT_STRING_EQUAL(r.ref, "r1");
	proto_req_free(&r);

	decode_ok("{'type':'send','room':'lobby','body':'x'}", &r);
	CU_ASSERT_EQUAL(r.has_id, 0);
	CU_ASSERT_EQUAL(r.has_ref, 0);
	proto_req_free(&r);

	/* An empty id is a key like any other; so is an empty ref. */
	decode_ok("{'type':'send','room':'lobby','body':'x','id':'',"
	    "'ref':''}", &r);
	CU_ASSERT_EQUAL(r.has_id, 1);
	CU_ASSERT_STRING_EQUAL(r.id, "");
	CU_ASSERT_EQUAL(r.has_ref, 1);
	CU_ASSERT_STRING_EQUAL(r.ref, "");
	proto_req_free(&r);
}

static void
test_edit_delete_good(void)
{
	struct proto_req r;

	decode_ok("{'type':'edit','room':'lobby','target':7,"
	    "'body':'fixed','id':'e1'}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_EDIT);
	CU_ASSERT_STRING_EQUAL(r.room, "lobby");
	CU_ASSERT_EQUAL(r.target, 7);
	CU_ASSERT_STRING_EQUAL(r.body, "fixed");
	CU_ASSERT_EQUAL(r.body_len, 5);
	CU_ASSERT_STRING_EQUAL(r.id, "e1");
	proto_req_free(&r);

	decode_ok("{'type':'edit','room':'lobby','target':1,'body':'b'}", &r);
	CU_ASSERT_EQUAL(r.target, 1);
	CU_ASSERT_EQUAL(r.has_id, 0);
	proto_req_free(&r);

	decode_ok("{'type':'delete','room':'lobby','target':3,'id':'d'}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_DELETE);
	CU_ASSERT_EQUAL(r.target, 3);
	CU_ASSERT_PTR_NULL(r.body);
	CU_ASSERT_STRING_EQUAL(r.id, "d");
	proto_req_free(&r);

	decode_ok("{'type':'delete','room':'lobby','target':1}", &r);
	CU_ASSERT_EQUAL(r.has_id, 0);
	proto_req_free(&r);
}

static void
test_react_good(void)
{
	struct proto_req r;

	decode_ok("{'type':'react','room':'lobby','target':2,"
	    "'emoji':'\xf0\x9f\x91\x8d'}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_REACT);
	CU_ASSERT_EQUAL(r.target, 2);
	CU_ASSERT_STRING_EQUAL(r.emoji, "\xf0\x9f\x91\x8d");
	CU_ASSERT_EQUAL(r.add, 1);        /* the default */
	CU_ASSERT_EQUAL(r.has_id, 0);
	proto_req_free(&r);

	decode_ok("{'type':'react','room':'lobby','target':2,"
	    "'emoji':'+','add':false,'id':'k'}", &r);
	CU_ASSERT_STRING_EQUAL(r.emoji, "+");
	CU_ASSERT_EQUAL(r.add, 0);
	CU_ASSERT_STRING_EQUAL(r.id, "k");
	proto_req_free(&r);

	decode_ok("{'type':'react','room':'lobby','target':2,"
	    "'emoji':'" X32 "','add':true}", &r);
	CU_ASSERT_STRING_EQUAL(r.emoji, X32);
	CU_ASSERT_EQUAL(r.add, 1);
	proto_req_free(&r);
}

static void
test_typing_read_good(void)
{
	struct proto_req r;

	decode_ok("{'type':'typing','room':'lobby','active':true}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_TYPING);
	CU_ASSERT_EQUAL(r.active, 1);
	proto_req_free(&r);
	decode_ok("{'type':'typing','room':'lobby','active':false}", &r);
	CU_ASSERT_EQUAL(r.active, 0);
	proto_req_free(&r);

	decode_ok("{'type':'read','room':'lobby','seq':42}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_READ);
	CU_ASSERT_STRING_EQUAL(r.room, "lobby");
	CU_ASSERT_EQUAL(r.seq, 42);
	proto_req_free(&r);
}

static void
test_history_good(void)
{
	struct proto_req r;

	decode_ok("{'type':'history','room':'lobby'}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_HISTORY);
	CU_ASSERT_EQUAL(r.has_before, 0);
	CU_ASSERT_EQUAL(r.limit, PROTO_HISTORY_DEFAULT);
	CU_ASSERT_EQUAL(r.limit, 50);
	proto_req_free(&r);

	decode_ok("{'type':'history','room':'lobby','before':10,'limit':1}",
	    &r);
	CU_ASSERT_EQUAL(r.has_before, 1);
	CU_ASSERT_EQUAL(r.before, 10);
	CU_ASSERT_EQUAL(r.limit, 1);
	proto_req_free(&r);

	decode_ok("{'type':'history','room':'lobby','limit':200}", &r);
	CU_ASSERT_EQUAL(r.limit, 200);
	proto_req_free(&r);
	decode_ok("{'type':'history','room':'lobby','limit':201}", &r);
	CU_ASSERT_EQUAL(r.limit, PROTO_HISTORY_MAX);
	proto_req_free(&r);
	decode_ok("{'type':'history','room':'lobby','limit':500}", &r);
	CU_ASSERT_EQUAL(r.limit, 200);
	proto_req_free(&r);
	decode_ok("{'type':'history','room':'lobby',"
	    "'limit':9223372036854775807}", &r);
	CU_ASSERT_EQUAL(r.limit, 200);
	proto_req_free(&r);
}

static void
test_ping_good(void)
{
	struct proto_req r;

	decode_ok("{'type':'ping'}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_PING);
	CU_ASSERT_EQUAL(r.has_ref, 0);
	proto_req_free(&r);
	decode_ok("{'ref':'p','type':'ping'}", &r);
	CU_ASSERT_STRING_EQUAL(r.ref, "p");
	proto_req_free(&r);
}

/* Unknown fields, and fields another type would use, are not looked at. */
static void
test_ignored_fields(void)
{
	struct proto_req r;

	decode_ok("{'type':'ping','room':5,'body':[],'target':'x',"
	    "'active':'yes','id':{}}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_PING);
	CU_ASSERT_EQUAL(r.room_len, 0);
	CU_ASSERT_EQUAL(r.has_id, 0);
	proto_req_free(&r);

	decode_ok("{'type':'send','room':'a','body':'b','since':-1,"
	    "'emoji':'','limit':0,'x-trace':{'deep':[1,2]}}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_SEND);
	CU_ASSERT_EQUAL(r.has_since, 0);
	CU_ASSERT_EQUAL(r.limit, 0);
	proto_req_free(&r);

	decode_ok("{'type':'leave','room':'a','token':1,'name':2}", &r);
	CU_ASSERT_PTR_NULL(r.token);
	CU_ASSERT_PTR_NULL(r.name);
	proto_req_free(&r);

	decode_ok("{'type':'hello','room':'not a room','seq':0}", &r);
	CU_ASSERT_EQUAL(r.type, PROTO_HELLO);
	proto_req_free(&r);
}

/* Every required field of every type, left out. */
static const struct bad_case missing_cases[] = {
	{ "{'type':'join'}", BAD, PROTO_JOIN, "room: missing" },
	{ "{'type':'join','since':1}", BAD, PROTO_JOIN, "room: missing" },
	{ "{'type':'leave'}", BAD, PROTO_LEAVE, "room: missing" },
	{ "{'type':'send','body':'b'}", BAD, PROTO_SEND, "room: missing" },
	{ "{'type':'send','room':'a'}", BAD, PROTO_SEND, "body: missing" },
	{ "{'type':'send','room':'a','id':'i'}", BAD, PROTO_SEND,
	    "body: missing" },
	{ "{'type':'edit','target':1,'body':'b'}", BAD, PROTO_EDIT,
	    "room: missing" },
	{ "{'type':'edit','room':'a','body':'b'}", BAD, PROTO_EDIT,
	    "target: missing" },
	{ "{'type':'edit','room':'a','target':1}", BAD, PROTO_EDIT,
	    "body: missing" },
	{ "{'type':'delete','target':1}", BAD, PROTO_DELETE, "room: missing" },
	{ "{'type':'delete','room':'a'}", BAD, PROTO_DELETE,
	    "target: missing" },
	{ "{'type':'react','target':1,'emoji':'e'}", BAD, PROTO_REACT,
	    "room: missing" },
	{ "{'type':'react','room':'a','emoji':'e'}", BAD, PROTO_REACT,
	    "target: missing" },
	{ "{'type':'react','room':'a','target':1}", BAD, PROTO_REACT,
	    "emoji: missing" },
	{ "{'type':'react','room':'a','target':1,'add':true}", BAD,
	    PROTO_REACT, "emoji: missing" },
	{ "{'type':'typing','active':true}", BAD, PROTO_TYPING,
	    "room: missing" },
	{ "{'type':'typing','room':'a'}", BAD, PROTO_TYPING,
	    "active: missing" },
	{ "{'type':'read','seq':1}", BAD, PROTO_READ, "room: missing" },
	{ "{'type':'read','room':'a'}", BAD, PROTO_READ, "seq: missing" },
	{ "{'type':'history'}", BAD, PROTO_HISTORY, "room: missing" },
	{ "{'type':'history','before':5,'limit':5}", BAD, PROTO_HISTORY,
	    "room: missing" },
	{ "{'room':'a'}", BAD, PROTO_NONE, "type: missing" },
	{ "{}", BAD, PROTO_NONE, "type: missing" },
};

static void
test_missing_fields(void)
{
	CHECK_BAD(missing_cases);
}

/*
 * Every field, required or optional, given the wrong JSON type: a string
 * or real (or bool, or null) for an integer, a number for a string, a
 * string or number for a boolean.
 */
static const struct bad_case wrong_type_cases[] = {
	/* hello */
	{ "{'type':'hello','token':5}", BAD, PROTO_HELLO, M_TOKEN },
	{ "{'type':'hello','token':null}", BAD, PROTO_HELLO, M_TOKEN },
	{ "{'type':'hello','name':7}", BAD, PROTO_HELLO, M_NAME },
	{ "{'type':'hello','name':['alice']}", BAD, PROTO_HELLO, M_NAME },
	{ "{'type':'hello','token':'t','name':false}", BAD, PROTO_HELLO,
	    M_NAME },
	/* room, in each type that has one */
	{ "{'type':'join','room':5}", BAD, PROTO_JOIN, M_ROOM_TYPE },
	{ "{'type':'join','room':null}", BAD, PROTO_JOIN, M_ROOM_TYPE },
	{ "{'type':'leave','room':['a']}", BAD, PROTO_LEAVE, M_ROOM_TYPE },
	{ "{'type':'send','room':1,'body':'b'}", BAD, PROTO_SEND, M_ROOM_TYPE },
	{ "{'type':'edit','room':1.5,'target':1,'body':'b'}", BAD,
	    PROTO_EDIT, M_ROOM_TYPE },
	{ "{'type':'delete','room':true,'target':1}", BAD, PROTO_DELETE,
	    M_ROOM_TYPE },
	{ "{'type':'react','room':{},'target':1,'emoji':'e'}", BAD,
	    PROTO_REACT, M_ROOM_TYPE },
	{ "{'type':'typing','room':2,'active':true}", BAD, PROTO_TYPING,
	    M_ROOM_TYPE },
	{ "{'type':'read','room':3,'seq':1}", BAD, PROTO_READ, M_ROOM_TYPE },
	{ "{'type':'history','room':4}", BAD, PROTO_HISTORY, M_ROOM_TYPE },
	/* join since */
	{ "{'type':'join','room':'a','since':'5'}", BAD, PROTO_JOIN, M_SINCE },
	{ "{'type':'join','room':'a','since':5.0}", BAD, PROTO_JOIN, M_SINCE },
	{ "{'type':'join','room':'a','since':true}", BAD, PROTO_JOIN, M_SINCE },
	{ "{'type':'join','room':'a','since':null}", BAD, PROTO_JOIN, M_SINCE },
	{ "{'type':'join','room':'a','since':1e2}", BAD, PROTO_JOIN, M_SINCE },
	/* send body and id */
	{ "{'type':'send','room':'a','body':5}", BAD, PROTO_SEND, M_BODY_TYPE },
	{ "{'type':'send','room':'a','body':null}", BAD, PROTO_SEND,
	    M_BODY_TYPE },
	{ "{'type':'send','room':'a','body':['hi']}", BAD, PROTO_SEND,
	    M_BODY_TYPE },
	{ "{'type':'send','room':'a','body':'b','id':5}", BAD,
	    PROTO_SEND, M_ID },
	{ "{'type':'send','room':'a','body':'b','id':null}", BAD,
	    PROTO_SEND, M_ID },
	/* edit target, body, id */
	{ "{'type':'edit','room':'a','target':'5','body':'b'}", BAD,
	    PROTO_EDIT, M_TARGET },
	{ "{'type':'edit','room':'a','target':5.0,'body':'b'}", BAD,
	    PROTO_EDIT, M_TARGET },
	{ "{'type':'edit','room':'a','target':true,'body':'b'}", BAD,
	    PROTO_EDIT, M_TARGET },
	{ "{'type':'edit','room':'a','target':null,'body':'b'}", BAD,
	    PROTO_EDIT, M_TARGET },
	{ "{'type':'edit','room':'a','target':1,'body':1}", BAD,
	    PROTO_EDIT, M_BODY_TYPE },
	{ "{'type':'edit','room':'a','target':1,'body':'b','id':1}",
	    BAD, PROTO_EDIT, M_ID },
	/* delete target, id */
	{ "{'type':'delete','room':'a','target':'1'}", BAD,
	    PROTO_DELETE, M_TARGET },
	{ "{'type':'delete','room':'a','target':1.0}", BAD,
	    PROTO_DELETE, M_TARGET },
	{ "{'type':'delete','room':'a','target':1,'id':true}", BAD,
	    PROTO_DELETE, M_ID },
	/* react target, emoji, add, id */
	{ "{'type':'react','room':'a','target':'1','emoji':'e'}",
	    BAD, PROTO_REACT, M_TARGET },
	{ "{'type':'react','room':'a','target':1.5,'emoji':'e'}",
	    BAD, PROTO_REACT, M_TARGET },
	{ "{'type':'react','room':'a','target':1,'emoji':1}", BAD,
	    PROTO_REACT, M_EMOJI },
	{ "{'type':'react','room':'a','target':1,'emoji':null}", BAD,
	    PROTO_REACT, M_EMOJI },
	{ "{'type':'react','room':'a','target':1,'emoji':'e',"
	    "'add':'true'}", BAD, PROTO_REACT, M_ADD },
	{ "{'type':'react','room':'a','target':1,'emoji':'e',"
	    "'add':1}", BAD, PROTO_REACT, M_ADD },
	{ "{'type':'react','room':'a','target':1,'emoji':'e',"
	    "'add':null}", BAD, PROTO_REACT, M_ADD },
	{ "{'type':'react','room':'a','target':1,'emoji':'e',"
	    "'id':2}", BAD, PROTO_REACT, M_ID },
	/* typing active */
	{ "{'type':'typing','room':'a','active':'true'}", BAD,
	    PROTO_TYPING, M_ACTIVE },
	{ "{'type':'typing','room':'a','active':1}", BAD, PROTO_TYPING,
	    M_ACTIVE },
	{ "{'type':'typing','room':'a','active':0}", BAD, PROTO_TYPING,
	    M_ACTIVE },
	{ "{'type':'typing','room':'a','active':null}", BAD,
	    PROTO_TYPING, M_ACTIVE },
	/* read seq */
	{ "{'type':'read','room':'a','seq':'1'}", BAD, PROTO_READ, M_SEQ },
	{ "{'type':'read','room':'a','seq':1.0}", BAD, PROTO_READ, M_SEQ },
	{ "{'type':'read','room':'a','seq':true}", BAD, PROTO_READ, M_SEQ },
	{ "{'type':'read','room':'a','seq':null}", BAD, PROTO_READ, M_SEQ },
	/* history before, limit */
	{ "{'type':'history','room':'a','before':'9'}", BAD,
	    PROTO_HISTORY, M_BEFORE },
	{ "{'type':'history','room':'a','before':9.0}", BAD,
	    PROTO_HISTORY, M_BEFORE },
	{ "{'type':'history','room':'a','before':false}", BAD,
	    PROTO_HISTORY, M_BEFORE },
	{ "{'type':'history','room':'a','limit':'10'}", BAD,
	    PROTO_HISTORY, M_LIMIT },
	{ "{'type':'history','room':'a','limit':10.0}", BAD,
	    PROTO_HISTORY, M_LIMIT },
	{ "{'type':'history','room':'a','limit':null}", BAD,
	    PROTO_HISTORY, M_LIMIT },
	/* ref, on any type, and type itself */
	{ "{'type':'ping','ref':5}", BAD, PROTO_PING, M_REF },
	{ "{'type':'ping','ref':null}", BAD, PROTO_PING, M_REF },
	{ "{'type':'join','room':'a','ref':true}", BAD, PROTO_JOIN, M_REF },
	{ "{'type':5}", BAD, PROTO_NONE, "type: must be a string" },
	{ "{'type':null}", BAD, PROTO_NONE, "type: must be a string" },
	{ "{'type':['ping']}", BAD, PROTO_NONE, "type: must be a string" },
};

static void
test_wrong_types(void)
{
	CHECK_BAD(wrong_type_cases);
}

/* Values of the right type outside their range. */
static const struct bad_case range_cases[] = {
	{ "{'type':'join','room':'a','since':-1}", BAD, PROTO_JOIN, M_SINCE },
	{ "{'type':'edit','room':'a','target':0,'body':'b'}", BAD,
	    PROTO_EDIT, M_TARGET },
	{ "{'type':'delete','room':'a','target':0}", BAD, PROTO_DELETE,
	    M_TARGET },
	{ "{'type':'react','room':'a','target':-3,'emoji':'e'}",
	    BAD, PROTO_REACT, M_TARGET },
	{ "{'type':'read','room':'a','seq':0}", BAD, PROTO_READ, M_SEQ },
	{ "{'type':'history','room':'a','before':0}", BAD,
	    PROTO_HISTORY, M_BEFORE },
	{ "{'type':'history','room':'a','limit':0}", BAD,
	    PROTO_HISTORY, M_LIMIT },
	{ "{'type':'history','room':'a','limit':-50}", BAD,
	    PROTO_HISTORY, M_LIMIT },
	{ "{'type':'react','room':'a','target':1,'emoji':''}", BAD,
	    PROTO_REACT, M_EMOJI },
	{ "{'type':'react','room':'a','target':1,'emoji':'" X33 "'}",
	    BAD, PROTO_REACT, M_EMOJI },
	{ "{'type':'send','room':'a','body':'b','id':'" X65 "'}",
	    BAD, PROTO_SEND, M_ID },
	{ "{'type':'ping','ref':'" X65 "'}", BAD, PROTO_PING, M_REF },
	{ "{'type':'send','room':'a','body':''}", BAD, PROTO_SEND,
	    "body: must not be empty" },
	{ "{'type':'edit','room':'a','target':1,'body':''}", BAD,
	    PROTO_EDIT, "body: must not be empty" },
	/* Room names: shape, length, dm order. */
	{ "{'type':'join','room':''}", BAD, PROTO_JOIN, M_ROOM },
	{ "{'type':'join','room':'" X65 "'}", BAD, PROTO_JOIN, M_ROOM },
	{ "{'type':'join','room':'the lobby'}", BAD, PROTO_JOIN, M_ROOM },
	{ "{'type':'join','room':'a/b'}", BAD, PROTO_JOIN, M_ROOM },
	{ "{'type':'join','room':'dm:bob:alice'}", BAD, PROTO_JOIN, M_ROOM },
	{ "{'type':'join','room':'dm:alice:alice'}", BAD, PROTO_JOIN, M_ROOM },
	{ "{'type':'send','room':'dm:alice','body':'b'}", BAD,
	    PROTO_SEND, M_ROOM },
	{ "{'type':'read','room':'caf\xc3\xa9','seq':1}", BAD, PROTO_READ,
	    M_ROOM },
	{ "{'type':'leave','room':'dm:" X33 ":z'}", BAD, PROTO_LEAVE, M_ROOM },
};

static void
test_ranges(void)
{
	CHECK_BAD(range_cases);
}

/* id and ref: 64 bytes is the most, counted in bytes. */
static void
test_id_ref_lengths(void)
{
	struct proto_req r;

	decode_ok("{'type':'send','room':'a','body':'b','id':'" X64
	    "','ref':'" X64 "'}", &r);
	CU_ASSERT_EQUAL(r.has_id, 1);
	CU_ASSERT_STRING_EQUAL(r.id, X64);
	CU_ASSERT_EQUAL(r.has_ref, 1);
	CU_ASSERT_STRING_EQUAL(r.ref, X64);
	proto_req_free(&r);

	/* 32 two-byte characters are 64 bytes; one more is 66. */
	decode_ok("{'type':'ping','ref':'" E32 "','id':'" E32 "'}", &r);
	CU_ASSERT_EQUAL(strlen(r.ref), 64);
	proto_req_free(&r);
	decode_ok("{'type':'send','room':'a','body':'b','id':'" E32 "'}", &r);
	CU_ASSERT_EQUAL(strlen(r.id), 64);
	proto_req_free(&r);
	CU_ASSERT_EQUAL(decode("{'type':'ping','ref':'" E32 "\xc3\xa9'}", &r,
	    NULL), PROTO_BAD_REQUEST);
	CU_ASSERT_EQUAL(r.has_ref, 0);
	proto_req_free(&r);
	CU_ASSERT_EQUAL(decode("{'type':'send','room':'a','body':'b','id':'"
	    E32 "\xc3\xa9'}", &r, NULL), PROTO_BAD_REQUEST);
	proto_req_free(&r);
}

/*
 * A valid ref is kept, and the type named, whatever else is wrong, so the
 * error can echo it; an invalid ref is never echoed.
 */
static void
test_ref_on_failure(void)
{
	static const struct {
		const char *json;
		enum proto_type type;
	} cases[] = {
		{ "{'type':'join','ref':'R-1','room':'no way'}", PROTO_JOIN },
		{ "{'ref':'R-1','type':'send','room':'a'}", PROTO_SEND },
		{ "{'type':'read','room':'a','seq':0,'ref':'R-1'}",
		    PROTO_READ },
		{ "{'type':'typing','room':'a','ref':'R-1'}", PROTO_TYPING },
		{ "{'type':'shout','ref':'R-1'}", PROTO_NONE },
		{ "{'ref':'R-1'}", PROTO_NONE },
		{ "{'type':'hello','token':1,'ref':'R-1'}", PROTO_HELLO },
	};
	struct proto_req r;
	const char *msg;

	for (size_t i = 0; i < NELEM(cases); i++) {
		const char *json = cases[i].json;

		CASE_ASSERT(decode(json, &r, &msg) == PROTO_BAD_REQUEST, json);
		CASE_ASSERT(r.type == cases[i].type, json);
		CASE_ASSERT(r.has_ref == 1 && strcmp(r.ref, "R-1") == 0, json);
		proto_req_free(&r);
	}

	/* With a too-large body, the status is too_large and ref still kept. */
#define BIG "{'type':'send','room':'a','body':'12345','ref':'big'}"
	CU_ASSERT_EQUAL(decode_max(BIG, 4, &r, &msg), PROTO_TOO_LARGE);
#undef BIG
	CU_ASSERT_EQUAL(r.type, PROTO_SEND);
	CU_ASSERT_EQUAL(r.has_ref, 1);
	CU_ASSERT_STRING_EQUAL(r.ref, "big");
	proto_req_free(&r);

	/* A bad ref is the error, is not echoed, yet the type is known. */
	CU_ASSERT_EQUAL(decode("{'type':'send','room':'a','body':'b',"
	    "'ref':'" X65 "'}", &r, &msg), PROTO_BAD_REQUEST);
	CU_ASSERT_EQUAL(r.type, PROTO_SEND);
	CU_ASSERT_EQUAL(r.has_ref, 0);
	CU_ASSERT_STRING_EQUAL(r.ref, "");
	CU_ASSERT_STRING_EQUAL(msg, M_REF);
	proto_req_free(&r);
}

static const struct bad_case frame_cases[] = {
	{ "", BAD, PROTO_NONE, M_FRAME },
	{ "   ", BAD, PROTO_NONE, M_FRAME },
	{ "hello", BAD, PROTO_NONE, M_FRAME },
	{ "{'type':'ping'", BAD, PROTO_NONE, M_FRAME },
	{ "{'type':'ping'}}", BAD, PROTO_NONE, M_FRAME },
	{ "[{'type':'ping'}]", BAD, PROTO_NONE, M_FRAME },
	{ "[]", BAD, PROTO_NONE, M_FRAME },
	{ "'ping'", BAD, PROTO_NONE, M_FRAME },
	{ "42", BAD, PROTO_NONE, M_FRAME },
	{ "null", BAD, PROTO_NONE, M_FRAME },
	{ "true", BAD, PROTO_NONE, M_FRAME },
	{ "{'type':'ping'} {'type':'ping'}", BAD, PROTO_NONE, M_FRAME },
	/* Duplicate keys would make "which room?" ambiguous. */
	{ "{'type':'ping','type':'ping'}", BAD, PROTO_NONE, M_FRAME },
	{ "{'type':'join','room':'a','room':'b'}", BAD, PROTO_NONE, M_FRAME },
	/* The parser refuses NUL in a string, so names stay C strings. */
	{ "{'type':'join','room':'a\\u0000b'}", BAD, PROTO_NONE, M_FRAME },
	/* Unknown types, including near misses. */
	{ "{'type':'shout'}", BAD, PROTO_NONE, "type: unknown" },
	{ "{'type':''}", BAD, PROTO_NONE, "type: unknown" },
	{ "{'type':'PING'}", BAD, PROTO_NONE, "type: unknown" },
	{ "{'type':'ping '}", BAD, PROTO_NONE, "type: unknown" },
	{ "{'type':'unknown'}", BAD, PROTO_NONE, "type: unknown" },
	{ "{'type':'message','room':'a','body':'b'}", BAD, PROTO_NONE,
	    "type: unknown" },
};

static void
test_not_objects_and_types(void)
{
	static const char single[] = "{'type':'ping'}";
	struct proto_req r;
	const char *msg;

	CHECK_BAD(frame_cases);
	/* Bypasses decode(), which would turn this into real JSON. */
	CU_ASSERT_EQUAL(proto_decode(single, strlen(single), MAX_BODY, &r,
	    &msg), PROTO_BAD_REQUEST);
	CU_ASSERT_STRING_EQUAL(msg, M_FRAME);
	proto_req_free(&r);
}

/* Only len bytes are read: the buffer need not be NUL-terminated. */
static void
test_length_bounded(void)
{
	static const char buf[] = "{\"type\":\"ping\"}garbage";
	struct proto_req r;
	const char *msg;

	CU_ASSERT_EQUAL(proto_decode(buf, 15, MAX_BODY, &r, &msg), PROTO_OK);
	CU_ASSERT_EQUAL(r.type, PROTO_PING);
	proto_req_free(&r);
	CU_ASSERT_EQUAL(proto_decode(buf, 14, MAX_BODY, &r, &msg),
	    PROTO_BAD_REQUEST);
	proto_req_free(&r);
}

/*
 * max_body counts the UTF-8 bytes of the decoded string, not characters
 * and not the escaped text: "\u00e9" is 6 bytes on the wire and 2 decoded,
 * a surrogate pair 12 and 4, "\n" 2 and 1.
 */
static void
test_body_limits(void)
{
#define SEND(body) "{'type':'send','room':'a','body':'" body "'}"
	static const struct {
		const char *json;
		enum proto_status want;
		const char *body;         /* decoded, when good */
	} cases[] = {
		{ SEND("abcd"), PROTO_OK, "abcd" },
		{ SEND("abcde"), PROTO_TOO_LARGE, NULL },
		{ SEND("\xc3\xa9\xc3\xa9"), PROTO_OK, "\xc3\xa9\xc3\xa9" },
		{ SEND("\xc3\xa9\xc3\xa9\xc3\xa9"), PROTO_TOO_LARGE, NULL },
		{ SEND("\xf0\x9f\x98\x80"), PROTO_OK, "\xf0\x9f\x98\x80" },
		{ SEND("\xf0\x9f\x98\x80!"), PROTO_TOO_LARGE, NULL },
		{ SEND("\\u00e9\\u00e9"), PROTO_OK, "\xc3\xa9\xc3\xa9" },
		{ SEND("\\u00e9\\u00e9!"), PROTO_TOO_LARGE, NULL },
		{ SEND("\\ud83d\\ude00"), PROTO_OK, "\xf0\x9f\x98\x80" },
		{ SEND("\\ud83d\\ude00!"), PROTO_TOO_LARGE, NULL },
		{ SEND("\\n\\n\\n\\n"), PROTO_OK, "\n\n\n\n" },
		{ SEND(""), PROTO_BAD_REQUEST, NULL },
	};
#undef SEND
	struct proto_req r;
	const char *msg;

	for (size_t i = 0; i < NELEM(cases); i++) {
		const char *json = cases[i].json, *want = cases[i].body;

		msg = NULL;
		CASE_ASSERT(decode_max(json, 4, &r, &msg) == cases[i].want,
		    json);
		if (want != NULL) {
			CASE_ASSERT(r.body != NULL &&
			    r.body_len == strlen(want) &&
			    strcmp(r.body, want) == 0, json);
		} else {
			CASE_ASSERT(r.body == NULL && msg != NULL, json);
		}
		if (cases[i].want == PROTO_TOO_LARGE) {
			CASE_ASSERT(msg != NULL && strcmp(msg,
			    "body: larger than max_body") == 0, json);
		}
		proto_req_free(&r);
	}
}

/* The default max_body of 4000, at and over the limit, and for edit too. */
static void
test_body_default_limit(void)
{
	static const char *types[] = {
		"{'type':'send','room':'a','body':'",
		"{'type':'edit','room':'a','target':1,'body':'",
	};
	char buf[MAX_BODY + 100];
	struct proto_req r;
	const char *msg;

	for (size_t t = 0; t < 2; t++) {
		size_t off = strlen(types[t]);

		for (size_t len = MAX_BODY - 1; len <= MAX_BODY + 1; len++) {
			memcpy(buf, types[t], off);
			memset(buf + off, 'b', len);
			memcpy(buf + off + len, "'}", 3);
			CU_ASSERT_EQUAL(decode(buf, &r, &msg),
			    len <= MAX_BODY ? PROTO_OK : PROTO_TOO_LARGE);
			if (len <= MAX_BODY) {
				CU_ASSERT_EQUAL(r.body_len, len);
				CU_ASSERT_PTR_NOT_NULL(r.body);
				if (r.body != NULL) {
					CU_ASSERT_EQUAL(strlen(r.body), len);
				}
			}
			proto_req_free(&r);
		}
	}
}

static void
test_free_twice(void)
{
	struct proto_req r;

	memset(&r, 0, sizeof(r));
	proto_req_free(&r);
	proto_req_free(&r);

	decode_ok("{'type':'hello','token':'t','name':'n'}", &r);
	proto_req_free(&r);
	CU_ASSERT_PTR_NULL(r.token);
	CU_ASSERT_PTR_NULL(r.name);
	proto_req_free(&r);

	decode_ok("{'type':'send','room':'a','body':'b'}", &r);
	proto_req_free(&r);
	CU_ASSERT_PTR_NULL(r.body);
	proto_req_free(&r);

	/* A failure after the token was copied leaves nothing allocated. */
	CU_ASSERT_EQUAL(decode("{'type':'hello','token':'t','name':1}",
	    &r, NULL), PROTO_BAD_REQUEST);
	CU_ASSERT_PTR_NULL(r.token);
	proto_req_free(&r);
}

static void
test_type_names(void)
{
	static const struct {
		enum proto_type t;
		const char *name;
		int sequenced;
	} cases[] = {
		{ PROTO_NONE, "unknown", 0 },
		{ PROTO_HELLO, "hello", 0 },
		{ PROTO_JOIN, "join", 0 },
		{ PROTO_LEAVE, "leave", 0 },
		{ PROTO_SEND, "send", 1 },
		{ PROTO_EDIT, "edit", 1 },
		{ PROTO_DELETE, "delete", 1 },
		{ PROTO_REACT, "react", 1 },
		{ PROTO_TYPING, "typing", 0 },
		{ PROTO_READ, "read", 0 },
		{ PROTO_HISTORY, "history", 0 },
		{ PROTO_PING, "ping", 0 },
		{ PROTO_TYPE_COUNT, "unknown", 0 },
	};

	for (size_t i = 0; i < NELEM(cases); i++) {
		enum proto_type t = cases[i].t;
		const char *name = cases[i].name;

		CASE_ASSERT(strcmp(proto_type_name(t), name) == 0, name);
		CASE_ASSERT(proto_is_sequenced(t) == cases[i].sequenced, name);
	}
	CU_ASSERT_STRING_EQUAL(proto_type_name((enum proto_type)99), "unknown");
}

struct name_case {
	const char *s;
	int want;
};

static void
test_user_names(void)
{
	static const struct name_case cases[] = {
		{ "a", 1 },
		{ "alice", 1 },
		{ "A.b_c-9", 1 },
		{ X32, 1 },
		{ "", 0 },
		{ X33, 0 },
		{ "al ice", 0 },
		{ "a/b", 0 },
		{ "a:b", 0 },
		{ "caf\xc3\xa9", 0 },
		{ "\xff", 0 },
		{ "a@b", 0 },
		{ "a+b", 0 },
		{ "tab\t", 0 },
	};

	for (size_t i = 0; i < NELEM(cases); i++)
		CASE_ASSERT(names_valid_user(cases[i].s, strlen(cases[i].s)) ==
		    cases[i].want, cases[i].s);
	/* Lengths are explicit: a NUL byte is just a bad byte. */
	CU_ASSERT_FALSE(names_valid_user("a\0b", 3));
	CU_ASSERT_TRUE(names_valid_user("alice", 3));
}

static void
test_room_names(void)
{
	static const struct name_case cases[] = {
		{ "lobby", 1 },
		{ "a", 1 },
		{ "Room_1.2-x", 1 },
		{ X64, 1 },
		{ "dm", 1 },
		{ "dmx", 1 },
		{ "", 0 },
		{ X65, 0 },
		{ "the lobby", 0 },
		{ "a/b", 0 },
		{ "a:b", 0 },
		{ "caf\xc3\xa9", 0 },
		{ "dm:alice:bob", 1 },   /* not plain, but a room */
	};

	for (size_t i = 0; i < NELEM(cases); i++) {
		size_t len = strlen(cases[i].s);
		int plain = cases[i].want && strchr(cases[i].s, ':') == NULL;

		CASE_ASSERT(names_valid_room(cases[i].s, len) == cases[i].want,
		    cases[i].s);
		CASE_ASSERT(names_valid_plain_room(cases[i].s, len) == plain,
		    cases[i].s);
	}
}

static void
test_dm_rooms(void)
{
	static const struct name_case cases[] = {
		{ "dm:alice:bob", 1 },
		{ "dm:bob:alice", 0 },
		{ "dm:alice:alice", 0 },
		{ "dm:a:ab", 1 },         /* a prefix sorts first */
		{ "dm:ab:a", 0 },
		{ "dm:B:a", 1 },          /* bytewise: upper case first */
		{ "dm:a:B", 0 },
		{ "dm:" X32 ":y", 1 },
		{ "dm:" X33 ":y", 0 },
		{ "dm:a:" Y32, 1 },
		{ "dm:a:" Y33, 0 },
		{ "dm:alice", 0 },
		{ "dm:alice:", 0 },
		{ "dm::bob", 0 },
		{ "dm:", 0 },
		{ "dm::", 0 },
		{ "dm:alice:bob:carol", 0 },
		{ "dm:al ice:bob", 0 },
		{ "dm:alice:b\xc3\xb6" "b", 0 },
		{ "DM:alice:bob", 0 },
		{ "dm-alice-bob", 1 },     /* a plain name, not a dm */
	};
	const char *a, *b;
	size_t la, lb;

	for (size_t i = 0; i < NELEM(cases); i++) {
		size_t len = strlen(cases[i].s);
		int dm = cases[i].want && strncmp(cases[i].s, "dm:", 3) == 0;

		CASE_ASSERT(names_valid_room(cases[i].s, len) == cases[i].want,
		    cases[i].s);
		CASE_ASSERT(names_parse_dm(cases[i].s, len, &a, &la, &b, &lb) ==
		    dm, cases[i].s);
	}

	CU_ASSERT_TRUE_FATAL(names_parse_dm("dm:a:ab", 7, &a, &la, &b, &lb));
	CU_ASSERT_EQUAL(la, 1);
	CU_ASSERT_NSTRING_EQUAL(a, "a", 1);
	CU_ASSERT_EQUAL(lb, 2);
	CU_ASSERT_NSTRING_EQUAL(b, "ab", 2);
	/* Only len bytes count: "dm:alice:bob" cut short is "dm:alice:b". */
	CU_ASSERT_TRUE(names_parse_dm("dm:alice:bob", 10, &a, &la, &b, &lb));
	CU_ASSERT_EQUAL(lb, 1);
	CU_ASSERT_FALSE(names_parse_dm("dm:alice:bob", 9, &a, &la, &b, &lb));
}

static void
test_dm_admits(void)
{
	static const struct {
		const char *room;
		const char *user;
		int want;
	} cases[] = {
		{ "dm:alice:bob", "alice", 1 },
		{ "dm:alice:bob", "bob", 1 },
		{ "dm:alice:bob", "carol", 0 },
		{ "dm:alice:bob", "alic", 0 },
		{ "dm:alice:bob", "alicex", 0 },
		{ "dm:alice:bob", "bo", 0 },
		{ "dm:alice:bob", "", 0 },
		{ "dm:alice:bob", "Alice", 0 },
		{ "dm:a:ab", "a", 1 },
		{ "dm:a:ab", "ab", 1 },
		{ "dm:a:ab", "b", 0 },
		{ "dm:bob:alice", "alice", 0 },   /* not a valid dm */
		{ "dm:alice:alice", "alice", 0 },
		{ "lobby", "lobby", 0 },
		{ "alice", "alice", 0 },
	};

	for (size_t i = 0; i < NELEM(cases); i++)
		CASE_ASSERT(names_dm_admits(cases[i].room,
		    strlen(cases[i].room), cases[i].user) == cases[i].want,
		    cases[i].room);
}

static const struct unit_test tests[] = {
	{ "hello good", test_hello_good },
	{ "hello token and name bounds", test_hello_bounds },
	{ "join and leave good", test_join_leave_good },
	{ "send good", test_send_good },
	{ "edit and delete good", test_edit_delete_good },
	{ "react good, add defaults to true", test_react_good },
	{ "typing and read good", test_typing_read_good },
	{ "history good, limit default and clamp", test_history_good },
	{ "ping good", test_ping_good },
	{ "unknown and irrelevant fields ignored", test_ignored_fields },
	{ "every missing required field", test_missing_fields },
	{ "every field of the wrong type", test_wrong_types },
	{ "values out of range", test_ranges },
	{ "id and ref at 64 bytes", test_id_ref_lengths },
	{ "ref kept on another field's failure", test_ref_on_failure },
	{ "not an object, duplicates, bad type", test_not_objects_and_types },
	{ "decode reads only len bytes", test_length_bounded },
	{ "body limits in UTF-8 bytes", test_body_limits },
	{ "body at the default max_body", test_body_default_limit },
	{ "free on zeroed and twice", test_free_twice },
	{ "type names and sequenced", test_type_names },
	{ "user names", test_user_names },
	{ "room names", test_room_names },
	{ "dm rooms", test_dm_rooms },
	{ "names_dm_admits", test_dm_admits },
};

int
main(void)
{
	return UNIT_RUN("proto", tests);
}
