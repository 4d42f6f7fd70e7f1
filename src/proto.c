#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "names.h"
#include "proto.h"
#include "xmalloc.h"

/*
 * hello's token and name are judged by the session, but a frame may be up
 * to 64 KiB: these bounds keep a hostile hello from costing more than a
 * generous real one (a JWT with a few claims, a user name of 32 bytes).
 */
#define HELLO_TOKEN_MAX 8192
#define HELLO_NAME_MAX 1024

/* One decode in progress: where it reads, where it writes, how it ended. */
struct dec {
	const json_t *obj;
	struct proto_req *req;
	size_t max_body;
	enum proto_status status;
	const char *msg;
};

/*
 * A field's key and its complaints. The messages are string literals built
 * from the key, so every reason names its field and needs no formatting.
 */
struct field {
	const char *key;
	const char *missing;    /* NULL: the field is optional */
	const char *bad;
};

#define REQUIRED(k, why) { k, k ": missing", k ": " why }
#define OPTIONAL(k, why) { k, NULL, k ": " why }

static const struct field f_ref =
    OPTIONAL("ref", "must be a string of at most 64 bytes");
static const struct field f_id =
    OPTIONAL("id", "must be a string of at most 64 bytes");
static const struct field f_since =
    OPTIONAL("since", "must be an integer >= 0");
static const struct field f_target =
    REQUIRED("target", "must be an integer >= 1");
static const struct field f_seq =
    REQUIRED("seq", "must be an integer >= 1");
static const struct field f_before =
    OPTIONAL("before", "must be an integer >= 1");
static const struct field f_limit =
    OPTIONAL("limit", "must be an integer >= 1");
static const struct field f_emoji =
    REQUIRED("emoji", "must be a string of 1-32 bytes");
static const struct field f_add =
    OPTIONAL("add", "must be a boolean");
static const struct field f_active =
    REQUIRED("active", "must be a boolean");
static const struct field f_token =
    OPTIONAL("token", "must be a string of at most 8192 bytes");
static const struct field f_name =
    OPTIONAL("name", "must be a string of at most 1024 bytes");

/* Record the first failure; returns nonzero so extractors chain with ||. */
static int
fail(struct dec *d, enum proto_status status, const char *msg)
{
	d->status = status;
	d->msg = msg;
	return -1;
}

/* *v = the field's value, NULL when absent; a required one must be there. */
static int
lookup(struct dec *d, const struct field *f, const json_t **v)
{
	*v = json_object_get(d->obj, f->key);
	if (*v == NULL && f->missing != NULL)
		return fail(d, PROTO_BAD_REQUEST, f->missing);
	return 0;
}

/*
 * An integer >= min. json_is_integer is false for 5.0, "5", true and null,
 * which the protocol refuses alike: a client sending them has a bug.
 */
static int
get_int(struct dec *d, const struct field *f, int64_t min, int64_t *out,
    uint8_t *has)
{
	const json_t *v;

	if (lookup(d, f, &v) != 0)
		return -1;
	if (v == NULL)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min)
		return fail(d, PROTO_BAD_REQUEST, f->bad);
	*out = json_integer_value(v);
	if (has != NULL)
		*has = 1;
	return 0;
}

/* A JSON boolean; an absent optional one leaves the caller's default. */
static int
get_bool(struct dec *d, const struct field *f, uint8_t *out)
{
	const json_t *v;

	if (lookup(d, f, &v) != 0)
		return -1;
	if (v == NULL)
		return 0;
	if (!json_is_boolean(v))
		return fail(d, PROTO_BAD_REQUEST, f->bad);
	*out = json_is_true(v) ? 1 : 0;
	return 0;
}

/* A string of min..max bytes copied into buf, which holds max + 1. */
static int
get_inline(struct dec *d, const struct field *f, size_t min, size_t max,
    char *buf, uint8_t *has)
{
	const json_t *v;
	size_t len;

	if (lookup(d, f, &v) != 0)
		return -1;
	if (v == NULL)
		return 0;
	if (!json_is_string(v))
		return fail(d, PROTO_BAD_REQUEST, f->bad);
	len = json_string_length(v);
	if (len < min || len > max)
		return fail(d, PROTO_BAD_REQUEST, f->bad);
	memcpy(buf, json_string_value(v), len);
	buf[len] = '\0';
	if (has != NULL)
		*has = 1;
	return 0;
}

/* An optional string of at most max bytes, copied to the heap. */
static int
get_alloc(struct dec *d, const struct field *f, size_t max, char **out)
{
	const json_t *v;
	size_t len;

	if (lookup(d, f, &v) != 0)
		return -1;
	if (v == NULL)
		return 0;
	if (!json_is_string(v) || (len = json_string_length(v)) > max)
		return fail(d, PROTO_BAD_REQUEST, f->bad);
	*out = xmalloc(len + 1);
	memcpy(*out, json_string_value(v), len + 1);
	return 0;
}

static int
get_room(struct dec *d)
{
	const json_t *v = json_object_get(d->obj, "room");
	const char *s;
	size_t len;

	if (v == NULL)
		return fail(d, PROTO_BAD_REQUEST, "room: missing");
	if (!json_is_string(v))
		return fail(d, PROTO_BAD_REQUEST, "room: must be a string");
	s = json_string_value(v);
	len = json_string_length(v);
	/* The length test only guards the copy: no valid name is longer. */
	if (len > NAMES_ROOM_STR_MAX || !names_valid_room(s, len))
		return fail(d, PROTO_BAD_REQUEST,
		    "room: not a valid room name");
	memcpy(d->req->room, s, len);
	d->req->room[len] = '\0';
	d->req->room_len = len;
	return 0;
}

/* Over max_body is too_large, a distinct error code (PROTOCOL.md 6). */
static int
get_body(struct dec *d)
{
	const json_t *v = json_object_get(d->obj, "body");
	size_t len;

	if (v == NULL)
		return fail(d, PROTO_BAD_REQUEST, "body: missing");
	if (!json_is_string(v))
		return fail(d, PROTO_BAD_REQUEST, "body: must be a string");
	len = json_string_length(v);
	if (len == 0)
		return fail(d, PROTO_BAD_REQUEST, "body: must not be empty");
	if (len > d->max_body)
		return fail(d, PROTO_TOO_LARGE, "body: larger than max_body");
	d->req->body = xmalloc(len + 1);
	memcpy(d->req->body, json_string_value(v), len + 1);
	d->req->body_len = len;
	return 0;
}

static int
get_id(struct dec *d)
{
	return get_inline(d, &f_id, 0, PROTO_ID_MAX, d->req->id,
	    &d->req->has_id);
}

static int
get_target(struct dec *d)
{
	return get_int(d, &f_target, 1, &d->req->target, NULL);
}

/*
 * One decoder per request type, fields in the order of PROTOCOL.md's
 * table, so the first field at fault is the one reported.
 */
static int
dec_hello(struct dec *d)
{
	return get_alloc(d, &f_token, HELLO_TOKEN_MAX, &d->req->token) ||
	    get_alloc(d, &f_name, HELLO_NAME_MAX, &d->req->name);
}

static int
dec_join(struct dec *d)
{
	return get_room(d) ||
	    get_int(d, &f_since, 0, &d->req->since, &d->req->has_since);
}

static int
dec_leave(struct dec *d)
{
	return get_room(d);
}

static int
dec_send(struct dec *d)
{
	return get_room(d) || get_body(d) || get_id(d);
}

static int
dec_edit(struct dec *d)
{
	return get_room(d) || get_target(d) || get_body(d) || get_id(d);
}

static int
dec_delete(struct dec *d)
{
	return get_room(d) || get_target(d) || get_id(d);
}

static int
dec_react(struct dec *d)
{
	d->req->add = 1;
	return get_room(d) || get_target(d) ||
	    get_inline(d, &f_emoji, 1, PROTO_EMOJI_MAX, d->req->emoji, NULL) ||
	    get_bool(d, &f_add, &d->req->add) || get_id(d);
}

static int
dec_typing(struct dec *d)
{
	return get_room(d) || get_bool(d, &f_active, &d->req->active);
}

static int
dec_read(struct dec *d)
{
	return get_room(d) || get_int(d, &f_seq, 1, &d->req->seq, NULL);
}

static int
dec_history(struct dec *d)
{
	struct proto_req *r = d->req;

	r->limit = PROTO_HISTORY_DEFAULT;
	if (get_room(d) ||
	    get_int(d, &f_before, 1, &r->before, &r->has_before) ||
	    get_int(d, &f_limit, 1, &r->limit, NULL))
		return -1;
	/* The protocol clamps rather than refuses: a big page is not a bug. */
	if (r->limit > PROTO_HISTORY_MAX)
		r->limit = PROTO_HISTORY_MAX;
	return 0;
}

static int
dec_ping(struct dec *d)
{
	(void)d;
	return 0;
}

static const struct {
	const char *name;
	int (*decode)(struct dec *);
} types[PROTO_TYPE_COUNT] = {
	[PROTO_NONE] = { "unknown", NULL },
	[PROTO_HELLO] = { "hello", dec_hello },
	[PROTO_JOIN] = { "join", dec_join },
	[PROTO_LEAVE] = { "leave", dec_leave },
	[PROTO_SEND] = { "send", dec_send },
	[PROTO_EDIT] = { "edit", dec_edit },
	[PROTO_DELETE] = { "delete", dec_delete },
	[PROTO_REACT] = { "react", dec_react },
	[PROTO_TYPING] = { "typing", dec_typing },
	[PROTO_READ] = { "read", dec_read },
	[PROTO_HISTORY] = { "history", dec_history },
	[PROTO_PING] = { "ping", dec_ping },
};

/* PROTO_NONE for a missing, non-string or unknown type; never fails. */
static enum proto_type
lookup_type(const json_t *obj)
{
	const json_t *v = json_object_get(obj, "type");

	if (!json_is_string(v))
		return PROTO_NONE;
	for (int t = PROTO_NONE + 1; t < PROTO_TYPE_COUNT; t++)
		if (strcmp(json_string_value(v), types[t].name) == 0)
			return (enum proto_type)t;
	return PROTO_NONE;
}

static const char *
type_complaint(const json_t *obj)
{
	const json_t *v = json_object_get(obj, "type");

	if (v == NULL)
		return "type: missing";
	if (!json_is_string(v))
		return "type: must be a string";
	return "type: unknown";
}

/*
 * The type is looked up before ref is checked, and ref before anything
 * else, so that whatever fails later the error can still name the request
 * and echo its ref.
 */
static int
decode_object(struct dec *d)
{
	struct proto_req *r = d->req;

	r->type = lookup_type(d->obj);
	if (get_inline(d, &f_ref, 0, PROTO_REF_MAX, r->ref, &r->has_ref) != 0)
		return -1;
	if (r->type == PROTO_NONE)
		return fail(d, PROTO_BAD_REQUEST, type_complaint(d->obj));
	return types[r->type].decode(d);
}

enum proto_status
proto_decode(const char *data, size_t len, size_t max_body,
    struct proto_req *req, const char **msg)
{
	struct dec d = { NULL, req, max_body, PROTO_OK, NULL };
	json_t *root;

	memset(req, 0, sizeof(*req));
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
	if (root != NULL && json_is_object(root)) {
		d.obj = root;
		decode_object(&d);
	} else {
		fail(&d, PROTO_BAD_REQUEST, "frame: not a JSON object");
	}
	json_decref(root);
	/* A refused request keeps no heap data; a second free is harmless. */
	if (d.status != PROTO_OK)
		proto_req_free(req);
	if (msg != NULL)
		*msg = d.msg;
	return d.status;
}

void
proto_req_free(struct proto_req *req)
{
	free(req->token);
	free(req->name);
	free(req->body);
	req->token = NULL;
	req->name = NULL;
	req->body = NULL;
	req->body_len = 0;
}

const char *
proto_type_name(enum proto_type t)
{
	if ((int)t <= PROTO_NONE || t >= PROTO_TYPE_COUNT)
		return types[PROTO_NONE].name;
	return types[t].name;
}

int
proto_is_sequenced(enum proto_type t)
{
	return t == PROTO_SEND || t == PROTO_EDIT || t == PROTO_DELETE ||
	    t == PROTO_REACT;
}

json_t *
proto_reply(const char *type, const struct proto_req *req)
{
	json_t *o = json_object();

	json_object_set_new(o, "type", json_string(type));
	if (req != NULL && req->has_ref)
		json_object_set_new(o, "ref", json_string(req->ref));
	return o;
}
