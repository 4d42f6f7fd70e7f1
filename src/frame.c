#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>

#include "frame.h"
#include "ws.h"
#include "xmalloc.h"

static struct frame *
frame_alloc(size_t payload_len, enum frame_type type)
{
	uint8_t head[WS_MAX_HEADER];
	size_t hlen = ws_frame_header(head, WS_OP_TEXT, payload_len);
	struct frame *f = xmalloc(sizeof(*f) + hlen + payload_len + 1);

	f->refs = 1;
	f->type = (uint8_t)type;
	f->hlen = (uint8_t)hlen;
	f->len = (uint32_t)(hlen + payload_len);
	memcpy(f->data, head, hlen);
	return f;
}

struct frame *
frame_from_text(const char *payload, size_t len, enum frame_type type)
{
	struct frame *f = frame_alloc(len, type);

	memcpy(f->data + f->hlen, payload, len);
	f->data[f->len] = '\0';
	return f;
}

struct frame *
frame_from_json(const json_t *o, enum frame_type type)
{
	size_t len = json_dumpb(o, NULL, 0, JSON_COMPACT);
	struct frame *f = frame_alloc(len, type);

	/* Sized by the first pass: the second writes exactly len bytes. */
	json_dumpb(o, (char *)f->data + f->hlen, len, JSON_COMPACT);
	f->data[f->len] = '\0';
	return f;
}

void
frame_ref(struct frame *f)
{
	ck_pr_inc_int(&f->refs);
}

void
frame_ref_n(struct frame *f, int n)
{
	if (n > 0)
		ck_pr_add_int(&f->refs, n);
}

void
frame_unref(struct frame *f)
{
	bool zero;

	if (f == NULL)
		return;
	/*
	 * Release: this holder's reads of the frame happen before its
	 * decrement; acquire: the last holder frees only after seeing them all.
	 */
	ck_pr_fence_release();
	ck_pr_dec_int_zero(&f->refs, &zero);
	if (zero) {
		ck_pr_fence_acquire();
		free(f);
	}
}

void
frame_buffer_release(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	frame_unref(arg);
}

const char *
frame_type_name(enum frame_type t)
{
	static const char *const names[FRAME_TYPE_COUNT] = {
		"welcome", "joined", "left", "message", "edit", "delete",
		"reaction", "ack", "presence", "typing", "receipt", "history",
		"pong", "error",
	};

	return (unsigned)t < FRAME_TYPE_COUNT ? names[t] : "unknown";
}
