/*
 * proto.h - the chat protocol's client requests (PROTOCOL.md section 3):
 * decode one WebSocket text message into a validated, self-contained
 * struct proto_req.
 *
 * Pure functions, callable from any thread. A decoded request owns all its
 * data (small strings inline, body and hello's token/name malloc'd), so it
 * can travel to a room actor on another thread; proto_req_free() releases it.
 *
 * Validation follows PROTOCOL.md section 3 exactly: a missing field, a field
 * of the wrong JSON type (an integer field given 5.0 or "5" included), or a
 * value out of range (a bad room name, id or ref over 64 bytes, emoji
 * outside 1-32 bytes, since < 0, target/seq/before/limit < 1) is
 * PROTO_BAD_REQUEST; a body over max_body bytes is PROTO_TOO_LARGE and an
 * empty one PROTO_BAD_REQUEST. Unknown fields are ignored. A limit over 200
 * is clamped to 200; absent, it is 50.
 *
 * hello is decoded for shape only (token and name must be strings when
 * present); the session decides whether they authenticate.
 */
#ifndef PARLEY_PROTO_H
#define PARLEY_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "names.h"

#define PROTO_REF_MAX 64
#define PROTO_ID_MAX 64
#define PROTO_EMOJI_MAX 32
#define PROTO_HISTORY_DEFAULT 50
#define PROTO_HISTORY_MAX 200

enum proto_type {
	PROTO_NONE = 0,       /* type missing, not a string, or unknown */
	PROTO_HELLO,
	PROTO_JOIN,
	PROTO_LEAVE,
	PROTO_SEND,
	PROTO_EDIT,
	PROTO_DELETE,
	PROTO_REACT,
	PROTO_TYPING,
	PROTO_READ,
	PROTO_HISTORY,
	PROTO_PING,
	PROTO_TYPE_COUNT
};

enum proto_status {
	PROTO_OK = 0,
	PROTO_BAD_REQUEST,
	PROTO_TOO_LARGE,
};

struct proto_req {
	enum proto_type type;
	uint8_t has_ref;          /* ref present and valid: echo it */
	uint8_t has_id;
	uint8_t has_since;
	uint8_t has_before;
	uint8_t add;              /* react: default 1 */
	uint8_t active;           /* typing */
	char ref[PROTO_REF_MAX + 1];
	char room[NAMES_ROOM_STR_MAX + 1];
	char id[PROTO_ID_MAX + 1];
	char emoji[PROTO_EMOJI_MAX + 1];
	char *token;              /* hello: malloc'd, NULL when absent */
	char *name;               /* hello: malloc'd, NULL when absent */
	char *body;               /* send, edit: malloc'd, NUL-terminated */
	size_t body_len;          /* UTF-8 bytes */
	size_t room_len;
	int64_t target;           /* edit, delete, react */
	int64_t seq;              /* read */
	int64_t since;            /* join, when has_since */
	int64_t before;           /* history, when has_before */
	int64_t limit;            /* history: 1-200 */
};

/*
 * Decode len bytes of UTF-8 JSON text. Always fills req (zeroed first) as
 * far as it got: on failure, req->type and req->ref/has_ref are still set
 * when they were valid, so the error can name the request and echo its ref.
 * On failure *msg points to a static, human-readable reason naming the
 * field ("room: not a valid room name"). The caller must proto_req_free()
 * in every case.
 */
enum proto_status proto_decode(const char *data, size_t len, size_t max_body,
    struct proto_req *req, const char **msg);

void proto_req_free(struct proto_req *req);

/*
 * Start a server frame {"type": type} that echoes req's ref when it had a
 * valid one (req may be NULL). The caller adds fields and encodes it.
 */
json_t *proto_reply(const char *type, const struct proto_req *req);

/* "hello", "join", ... for metrics and logs; "unknown" for PROTO_NONE. */
const char *proto_type_name(enum proto_type t);

/* 1 for the sequenced requests: send, edit, delete, react. */
int proto_is_sequenced(enum proto_type t);

#endif
