#include "config.h"

/*
 * libFuzzer target for the WebSocket decoder.
 *
 * Input: byte 0 picks a chunk size, bytes 1-2 a split position, and the
 * rest is client frames. The frames are decoded three ways: whole, split
 * in two at that position, and the second piece fed in chunks. All three
 * must give the same events (a hash of them), and every call and event
 * must keep the decoder's documented promises.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"
#include "ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_MESSAGE 4096
#define FUZZ_PREFIX 3

struct tally {
	uint64_t hash;
	size_t events;
};

static void
die(const char *what)
{
	fprintf(stderr, "fuzz_ws: invariant broken: %s\n", what);
	abort();
}

/* FNV-1a: only equality between runs matters. */
static void
mix(struct tally *t, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++) {
		t->hash ^= b[i];
		t->hash *= 0x100000001b3ull;
	}
}

static void
check_close(const struct ws_message *m)
{
	if (m->close_code == WS_CLOSE_NO_STATUS) {
		if (m->len != 0)
			die("reason without a close code");
		return;
	}
	if (!ws_close_code_valid(m->close_code))
		die("close code not allowed on the wire");
	if (m->len > 123 || !utf8_valid(m->data, m->len))
		die("bad close reason");
}

static void
check_event(enum ws_event ev, const struct ws_message *m)
{
	if (m->data == NULL)
		die("event without data pointer");
	switch (ev) {
	case WS_EV_TEXT:
		if (m->len > FUZZ_MAX_MESSAGE)
			die("text over max_message");
		if (!utf8_valid(m->data, m->len))
			die("text is not UTF-8");
		break;
	case WS_EV_PING:
	case WS_EV_PONG:
		if (m->len > 125)
			die("control payload over 125");
		break;
	case WS_EV_CLOSE:
		check_close(m);
		break;
	case WS_EV_ERROR:
		if (m->error == NULL)
			die("error without a reason");
		if (m->close_code != 1002 && m->close_code != 1003 &&
		    m->close_code != 1007 && m->close_code != 1009)
			die("unexpected error code");
		break;
	default:
		die("unknown event");
	}
}

static void
tally_event(struct tally *t, enum ws_event ev, const struct ws_message *m)
{
	uint32_t e = (uint32_t)ev, c = m->close_code;
	uint64_t n = m->len;

	mix(t, &e, sizeof(e));
	if (ev == WS_EV_CLOSE || ev == WS_EV_ERROR)
		mix(t, &c, sizeof(c));
	mix(t, &n, sizeof(n));
	mix(t, m->data, m->len);
	t->events++;
}

/*
 * Decode one piece from a heap copy of exactly its size, so ASan sees any
 * read past it. Returns 0 once the decoder has failed.
 */
static int
feed(struct ws_decoder *d, const uint8_t *in, size_t len, struct tally *t)
{
	uint8_t *buf = malloc(len ? len : 1);
	struct ws_message m;
	enum ws_event ev;
	uint16_t code;
	size_t pos = 0, n;

	if (buf == NULL)
		abort();
	if (len > 0)
		memcpy(buf, in, len);
	for (;;) {
		ev = ws_decode(d, buf + pos, len - pos, &n, &m);
		if (n > len - pos)
			die("consumed more than given");
		pos += n;
		if (ev == WS_EV_NEED_MORE) {
			if (pos != len)
				die("NEED_MORE with input left");
			break;
		}
		if (n == 0)
			die("event without progress");
		check_event(ev, &m);
		tally_event(t, ev, &m);
		if (ev == WS_EV_ERROR) {
			code = m.close_code;
			if (ws_decode(d, buf, len, &n, &m) != WS_EV_ERROR ||
			    n != 0 || m.close_code != code)
				die("error is not sticky");
			free(buf);
			return 0;
		}
		if (pos == len)
			break;
	}
	free(buf);
	return 1;
}

/* Frames in [0, split) at once, then the rest in chunks of step (0: all). */
static void
decode(const uint8_t *in, size_t len, size_t split, size_t step,
    struct tally *t)
{
	struct ws_decoder d;
	size_t pos, n;

	memset(t, 0, sizeof(*t));
	t->hash = 0xcbf29ce484222325ull;
	ws_decoder_init(&d, FUZZ_MAX_MESSAGE);
	if (feed(&d, in, split, t)) {
		for (pos = split; pos < len; pos += n) {
			n = step == 0 || len - pos < step ? len - pos : step;
			if (!feed(&d, in + pos, n, t))
				break;
		}
	}
	if (d.msg_len > d.msg_cap || d.msg_cap > FUZZ_MAX_MESSAGE)
		die("message buffer out of bounds");
	ws_decoder_free(&d);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tally whole, split, chunked;
	const uint8_t *in;
	size_t len, at, step;

	if (size < FUZZ_PREFIX)
		return 0;
	step = data[0] & 0x7f;
	at = (size_t)data[1] << 8 | data[2];
	in = data + FUZZ_PREFIX;
	len = size - FUZZ_PREFIX;
	at = len ? at % (len + 1) : 0;

	decode(in, len, len, 0, &whole);
	decode(in, len, at, 0, &split);
	decode(in, len, at, step ? step : 1, &chunked);
	if (whole.events != split.events || whole.hash != split.hash)
		die("events differ when split in two");
	if (whole.events != chunked.events || whole.hash != chunked.hash)
		die("events differ when fed in chunks");
	return 0;
}
