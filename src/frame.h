/*
 * frame.h - an outgoing WebSocket text frame (header + JSON payload) built
 * once and shared by reference count between every connection it goes to.
 *
 * A frame is immutable once built, so any thread may read it. The reference
 * count is atomic: a room builds a frame on its home worker, hands one
 * reference to each worker that has members, and each worker appends it to
 * its members' output with evbuffer_add_reference(), one reference per
 * connection, released when that connection's buffer drains it.
 */
#ifndef PARLEY_FRAME_H
#define PARLEY_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* What a server frame is, for the per-type counters. */
enum frame_type {
	FRAME_WELCOME = 0,
	FRAME_JOINED,
	FRAME_LEFT,
	FRAME_MESSAGE,
	FRAME_EDIT,
	FRAME_DELETE,
	FRAME_REACTION,
	FRAME_ACK,
	FRAME_PRESENCE,
	FRAME_TYPING,
	FRAME_RECEIPT,
	FRAME_HISTORY,
	FRAME_PONG,
	FRAME_ERROR,
	FRAME_TYPE_COUNT
};

struct frame {
	int refs;                 /* atomic */
	uint8_t type;             /* enum frame_type */
	uint8_t hlen;             /* WebSocket header bytes at data[0] */
	uint32_t len;             /* header + payload */
	uint8_t data[];
};

/* Encode o (compact JSON) as a frame with one reference. o is not consumed. */
struct frame *frame_from_json(const json_t *o, enum frame_type type);

/* A frame around payload bytes (already JSON text), one reference. */
struct frame *frame_from_text(const char *payload, size_t len, enum frame_type type);

static inline const char *
frame_payload(const struct frame *f)
{
	return (const char *)f->data + f->hlen;
}

static inline size_t
frame_payload_len(const struct frame *f)
{
	return f->len - f->hlen;
}

void frame_ref(struct frame *f);
void frame_ref_n(struct frame *f, int n);
void frame_unref(struct frame *f);

/* evbuffer_add_reference cleanup: drops the reference held by a buffer. */
void frame_buffer_release(const void *data, size_t len, void *arg);

const char *frame_type_name(enum frame_type t);

#endif
