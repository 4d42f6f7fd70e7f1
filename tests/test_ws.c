#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "unit.h"
#include <CUnit/CUnit.h>

#include "utf8.h"
#include "ws.h"
#include "xmalloc.h"

/* ---- building client frames ---------------------------------------- */

struct bytes {
	uint8_t *p;
	size_t len, cap;
};

/* Flags for frame_ex, beside the first header byte. */
#define F_UNMASKED 0x1u
#define F_LEN16 0x2u            /* 16-bit length form even if shorter */
#define F_LEN64 0x4u            /* 64-bit length form */

#define FIN 0x80u
#define RSV1 0x40u
#define RSV2 0x20u
#define RSV3 0x10u

static void
b_add(struct bytes *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = xrealloc(b->p, b->cap);
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void
b_byte(struct bytes *b, unsigned c)
{
	uint8_t x = (uint8_t)c;

	b_add(b, &x, 1);
}

static void
b_free(struct bytes *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Raw header: b0 as on the wire, the length field written as told. */
static void
header_ex(struct bytes *b, unsigned b0, uint64_t len, unsigned flags,
    const uint8_t mask[4])
{
	unsigned m = flags & F_UNMASKED ? 0 : 0x80;
	int i;

	b_byte(b, b0);
	if (flags & F_LEN64 || len > 0xffff) {
		b_byte(b, m | 127);
		for (i = 7; i >= 0; i--)
			b_byte(b, (unsigned)(len >> (8 * i)) & 0xff);
	} else if (flags & F_LEN16 || len > 125) {
		b_byte(b, m | 126);
		b_byte(b, (unsigned)(len >> 8) & 0xff);
		b_byte(b, (unsigned)len & 0xff);
	} else
		b_byte(b, m | (unsigned)len);
	if (m)
		b_add(b, mask, 4);
}

/* A client frame; every frame gets a different mask to catch offset bugs. */
static void
frame_ex(struct bytes *b, unsigned b0, const void *payload, size_t n,
    unsigned flags)
{
	static unsigned seq;
	uint8_t mask[4];
	const uint8_t *p = payload;
	size_t i, start;

	seq++;
	for (i = 0; i < 4; i++)
		mask[i] = (uint8_t)(0x5a + 37 * seq + 71 * i);
	header_ex(b, b0, n, flags, mask);
	start = b->len;
	b_add(b, payload, n);
	if (!(flags & F_UNMASKED))
		for (i = 0; i < n; i++)
			b->p[start + i] = p[i] ^ mask[i & 3];
}

static void
frame(struct bytes *b, unsigned b0, const char *s)
{
	frame_ex(b, b0, s, strlen(s), 0);
}

/* ---- running the decoder ------------------------------------------- */

struct got {
	enum ws_event ev;
	uint16_t code;
	uint8_t *data;          /* a copy: the decoder's pointer is short-lived */
	size_t len;
	const char *error;
	size_t at;              /* input offset just after the event */
};

#define MAX_EVENTS 64

struct run {
	struct got ev[MAX_EVENTS];
	size_t n;
};

static void
run_free(struct run *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		free(r->ev[i].data);
	r->n = 0;
}

static void
record(struct run *r, enum ws_event ev, const struct ws_message *m, size_t at)
{
	struct got *g;

	if (r->n == MAX_EVENTS) {
		CU_FAIL("too many events");
		return;
	}
	g = &r->ev[r->n++];
	g->ev = ev;
	g->code = ev == WS_EV_CLOSE || ev == WS_EV_ERROR ? m->close_code : 0;
	g->len = m->len;
	g->data = xmalloc(m->len);
	if (m->len > 0)
		memcpy(g->data, m->data, m->len);
	g->error = ev == WS_EV_ERROR ? m->error : NULL;
	g->at = at;
	CU_ASSERT_PTR_NOT_NULL(m->data);
	if (ev == WS_EV_ERROR)
		CU_ASSERT_PTR_NOT_NULL(m->error);
}

/*
 * Feed one piece, copied into a buffer of exactly its size so that ASan
 * catches a read past it. Returns 0 once the decoder has failed.
 */
static int
feed(struct ws_decoder *d, const uint8_t *in, size_t off, size_t len,
    struct run *r)
{
	uint8_t *buf = xmalloc(len);
	struct ws_message m;
	enum ws_event ev;
	size_t pos = 0, n;
	int alive = 1;

	memcpy(buf, in + off, len);
	while (alive) {
		ev = ws_decode(d, buf + pos, len - pos, &n, &m);
		CU_ASSERT(n <= len - pos);
		pos += n;
		if (ev == WS_EV_NEED_MORE) {
			CU_ASSERT_EQUAL(pos, len);
			break;
		}
		CU_ASSERT(n > 0);
		record(r, ev, &m, off + pos);
		if (ev == WS_EV_ERROR) {
			/* Sticky: the same code again, nothing consumed. */
			CU_ASSERT_EQUAL(ws_decode(d, buf, len, &n, &m), WS_EV_ERROR);
			CU_ASSERT_EQUAL(n, 0);
			CU_ASSERT_EQUAL(m.close_code, r->ev[r->n - 1].code);
			alive = 0;
		} else if (pos == len)
			break;
	}
	free(buf);
	return alive;
}

/* Decode in with the pieces ending at cuts[] and then at len. */
static void
run_cuts(const uint8_t *in, size_t len, size_t max, const size_t *cuts,
    size_t ncuts, struct run *r)
{
	struct ws_decoder d;
	size_t i, from = 0;

	r->n = 0;
	ws_decoder_init(&d, max);
	for (i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : len;

		if (!feed(&d, in, from, to - from, r))
			break;
		from = to;
	}
	ws_decoder_free(&d);
}

static void
run_split(const uint8_t *in, size_t len, size_t max, size_t k, struct run *r)
{
	run_cuts(in, len, max, &k, 1, r);
}

static void
run_bytewise(const uint8_t *in, size_t len, size_t max, struct run *r)
{
	size_t *cuts = xmalloc((len + 1) * sizeof(*cuts));
	size_t i;

	for (i = 0; i < len; i++)
		cuts[i] = i + 1;
	run_cuts(in, len, max, cuts, len, r);
	free(cuts);
}

static int
same_event(const struct got *a, const struct got *b)
{
	if (a->ev != b->ev || a->code != b->code || a->len != b->len)
		return 0;
	if (a->len > 0 && memcmp(a->data, b->data, a->len) != 0)
		return 0;
	if ((a->error == NULL) != (b->error == NULL))
		return 0;
	return a->error == NULL || strcmp(a->error, b->error) == 0;
}

static int
same_run(const struct run *a, const struct run *b)
{
	size_t i;

	if (a->n != b->n)
		return 0;
	for (i = 0; i < a->n; i++)
		if (!same_event(&a->ev[i], &b->ev[i]))
			return 0;
	return 1;
}

/* What a case should produce; data NULL means "any bytes of this len". */
struct want {
	enum ws_event ev;
	uint16_t code;
	const void *data;
	size_t len;
};

#define W_TEXT(s) { WS_EV_TEXT, 0, s, sizeof(s) - 1 }
#define W_PING(s) { WS_EV_PING, 0, s, sizeof(s) - 1 }
#define W_PONG(s) { WS_EV_PONG, 0, s, sizeof(s) - 1 }
#define W_CLOSE(c, s) { WS_EV_CLOSE, c, s, sizeof(s) - 1 }
#define W_ERR(c) { WS_EV_ERROR, c, "", 0 }

static void
check_want(const struct run *r, const struct want *w, size_t nw)
{
	size_t i;

	CU_ASSERT_EQUAL_FATAL(r->n, nw);
	for (i = 0; i < nw; i++) {
		CU_ASSERT_EQUAL(r->ev[i].ev, w[i].ev);
		CU_ASSERT_EQUAL(r->ev[i].code, w[i].code);
		CU_ASSERT_EQUAL(r->ev[i].len, w[i].len);
		if (w[i].data != NULL && r->ev[i].len == w[i].len && w[i].len > 0)
			CU_ASSERT(memcmp(r->ev[i].data, w[i].data, w[i].len) == 0);
	}
}

/*
 * Past a few KiB, splits deep inside one payload all take the same path;
 * a stride of 13 still meets every mask (4) and word (8) alignment, and
 * keeps the 64 KiB cases from taking many seconds under ASan.
 */
static int
split_wanted(size_t k, size_t len)
{
	if (len <= 4096 || k < 512 || len - k < 512)
		return 1;
	return k % 13 == 0;
}

/*
 * The heart of these tests: whole, split in two at every position, and
 * one byte at a time must all give exactly the expected events.
 */
static void
check_ex(const struct bytes *in, size_t max, const struct want *w, size_t nw)
{
	struct run whole, other;
	size_t k, bad = 0;

	run_split(in->p, in->len, max, in->len, &whole);
	check_want(&whole, w, nw);
	for (k = 0; k <= in->len; k++) {
		if (!split_wanted(k, in->len))
			continue;
		run_split(in->p, in->len, max, k, &other);
		if (!same_run(&whole, &other) && bad++ == 0)
			fprintf(stderr, "\n    differs when split at %zu of %zu\n",
			    k, in->len);
		run_free(&other);
	}
	CU_ASSERT_EQUAL(bad, 0);
	run_bytewise(in->p, in->len, max, &other);
	CU_ASSERT(same_run(&whole, &other));
	run_free(&other);
	run_free(&whole);
}

#define CHECK(in, max, ...) do {                                        \
	const struct want w_[] = { __VA_ARGS__ };                       \
	check_ex((in), (max), w_, sizeof(w_) / sizeof(w_[0]));          \
} while (0)

#define MAX 1024

/* ---- decoder cases -------------------------------------------------- */

static void
test_single_text(void)
{
	struct bytes b = { 0 };

	frame(&b, FIN | WS_OP_TEXT, "Hello");
	CHECK(&b, MAX, W_TEXT("Hello"));
	b_free(&b);

	frame(&b, FIN | WS_OP_TEXT, "");
	CHECK(&b, MAX, W_TEXT(""));
	b_free(&b);

	frame(&b, FIN | WS_OP_TEXT, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	CHECK(&b, MAX, W_TEXT("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
	b_free(&b);
}

static void
test_several_in_one_buffer(void)
{
	struct bytes b = { 0 };

	frame(&b, FIN | WS_OP_TEXT, "one");
	frame(&b, FIN | WS_OP_PING, "");
	frame(&b, FIN | WS_OP_TEXT, "two");
	frame(&b, FIN | WS_OP_TEXT, "");
	frame(&b, FIN | WS_OP_CLOSE, "\x03\xe8");
	CHECK(&b, MAX, W_TEXT("one"), W_PING(""), W_TEXT("two"), W_TEXT(""),
	    W_CLOSE(1000, ""));
	b_free(&b);
}

static void
test_fragmented_with_control(void)
{
	struct bytes b = { 0 };

	frame(&b, WS_OP_TEXT, "Hel");
	frame(&b, FIN | WS_OP_PING, "p1");
	frame(&b, WS_OP_CONT, "lo, ");
	frame(&b, FIN | WS_OP_PONG, "q");
	frame(&b, FIN | WS_OP_CONT, "world");
	frame(&b, FIN | WS_OP_TEXT, "next");
	CHECK(&b, MAX, W_PING("p1"), W_PONG("q"), W_TEXT("Hello, world"),
	    W_TEXT("next"));
	b_free(&b);

	/* Empty fragments, and a close while a message is open. */
	frame(&b, WS_OP_TEXT, "");
	frame(&b, WS_OP_CONT, "a");
	frame(&b, WS_OP_CONT, "");
	frame(&b, FIN | WS_OP_CONT, "");
	frame(&b, WS_OP_TEXT, "x");
	frame(&b, FIN | WS_OP_CLOSE, "\x03\xe9" "bye");
	CHECK(&b, MAX, W_TEXT("a"), W_CLOSE(1001, "bye"));
	b_free(&b);

	frame(&b, WS_OP_TEXT, "");
	frame(&b, FIN | WS_OP_CONT, "");
	CHECK(&b, MAX, W_TEXT(""));
	b_free(&b);
}

static void
test_ping_echo(void)
{
	struct bytes b = { 0 };
	char p[126];

	memset(p, 'x', 125);
	p[125] = '\0';
	p[0] = '\x01';
	p[124] = '\xff';                /* pings carry bytes, not text */
	frame(&b, FIN | WS_OP_PING, p);
	frame(&b, FIN | WS_OP_PONG, "");
	frame(&b, FIN | WS_OP_PING, "\xc0\x80");
	CHECK(&b, MAX, { WS_EV_PING, 0, p, 125 }, W_PONG(""), W_PING("\xc0\x80"));
	b_free(&b);
}

static void
test_lengths(void)
{
	struct bytes b = { 0 };
	size_t sizes[] = { 125, 126, 300, 65535, 65536 };
	uint8_t *p = xmalloc(65536);
	size_t i;

	for (i = 0; i < 65536; i++)
		p[i] = (uint8_t)('a' + i % 26);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		frame_ex(&b, FIN | WS_OP_TEXT, p, sizes[i], 0);
		CHECK(&b, 65536, { WS_EV_TEXT, 0, p, sizes[i] });
		b_free(&b);
	}
	/* Longer length forms than needed are accepted. */
	frame_ex(&b, FIN | WS_OP_TEXT, "hi", 2, F_LEN16);
	frame_ex(&b, FIN | WS_OP_TEXT, "yo", 2, F_LEN64);
	frame_ex(&b, FIN | WS_OP_PING, "", 0, F_LEN16);
	CHECK(&b, MAX, W_TEXT("hi"), W_TEXT("yo"), W_ERR(1002));
	b_free(&b);
	free(p);
}

static void
test_max_message(void)
{
	struct bytes b = { 0 };
	char p[202];

	memset(p, 'm', sizeof(p));
	frame_ex(&b, FIN | WS_OP_TEXT, p, 100, 0);
	CHECK(&b, 100, { WS_EV_TEXT, 0, p, 100 });
	b_free(&b);

	frame_ex(&b, FIN | WS_OP_TEXT, p, 101, 0);
	CHECK(&b, 100, W_ERR(1009));
	b_free(&b);

	/* Refused on the header alone, before any payload. */
	header_ex(&b, FIN | WS_OP_TEXT, 101, 0, (const uint8_t *)"abcd");
	CHECK(&b, 100, W_ERR(1009));
	b_free(&b);
	header_ex(&b, FIN | WS_OP_TEXT, (uint64_t)1 << 62, 0,
	    (const uint8_t *)"abcd");
	CHECK(&b, 100, W_ERR(1009));
	b_free(&b);

	/* Reassembled: 40 + 40 + 20 fits, 40 + 40 + 21 does not. */
	frame_ex(&b, WS_OP_TEXT, p, 40, 0);
	frame_ex(&b, WS_OP_CONT, p, 40, 0);
	frame_ex(&b, FIN | WS_OP_CONT, p, 20, 0);
	CHECK(&b, 100, { WS_EV_TEXT, 0, p, 100 });
	b_free(&b);

	frame_ex(&b, WS_OP_TEXT, p, 40, 0);
	frame_ex(&b, WS_OP_CONT, p, 40, 0);
	header_ex(&b, FIN | WS_OP_CONT, 21, 0, (const uint8_t *)"abcd");
	CHECK(&b, 100, W_ERR(1009));
	b_free(&b);

	/* Control frames are bounded by 125, not by max_message. */
	frame(&b, WS_OP_TEXT, "");
	frame(&b, FIN | WS_OP_PING, "longer than max");
	frame(&b, FIN | WS_OP_CONT, "");
	frame(&b, FIN | WS_OP_TEXT, "x");
	CHECK(&b, 0, W_PING("longer than max"), W_TEXT(""), W_ERR(1009));
	b_free(&b);
}

static void
close_case(const char *payload, size_t n, const struct want *w)
{
	struct bytes b = { 0 };

	frame_ex(&b, FIN | WS_OP_CLOSE, payload, n, 0);
	check_ex(&b, MAX, w, 1);
	b_free(&b);
}

static void
test_close(void)
{
	static const unsigned good[] = { 1000, 1001, 1002, 1003, 1007, 1008,
	    1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999 };
	static const unsigned bad[] = { 0, 1, 999, 1004, 1005, 1006, 1015,
	    1016, 2000, 2999, 5000, 65535 };
	struct want w = W_CLOSE(WS_CLOSE_NO_STATUS, "");
	struct want e1002 = W_ERR(1002), e1007 = W_ERR(1007);
	char p[16];
	size_t i;

	close_case("", 0, &w);
	close_case("\x03", 1, &e1002);
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		p[0] = (char)(good[i] >> 8);
		p[1] = (char)good[i];
		memcpy(p + 2, "bye \xc3\xa9", 6);
		w.ev = WS_EV_CLOSE;
		w.code = (uint16_t)good[i];
		w.data = "bye \xc3\xa9";
		w.len = 6;
		close_case(p, 8, &w);
		w.len = 0;
		close_case(p, 2, &w);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p[0] = (char)(bad[i] >> 8);
		p[1] = (char)bad[i];
		close_case(p, 2, &e1002);
		close_case(p, 3, &e1002);
	}
	close_case("\x03\xe8" "bad \xff", 7, &e1007);
	close_case("\x03\xe8" "cut \xe2\x82", 8, &e1007);
	close_case("\x03\xe8\xed\xa0\x80", 5, &e1007);
}

static void
test_protocol_errors(void)
{
	static const unsigned reserved[] = { 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 };
	static const unsigned rsv[] = { RSV1, RSV2, RSV3 };
	struct bytes b = { 0 };
	size_t i;

	frame_ex(&b, FIN | WS_OP_TEXT, "hi", 2, F_UNMASKED);
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);
	frame_ex(&b, FIN | WS_OP_PING, "", 0, F_UNMASKED);
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);

	for (i = 0; i < sizeof(rsv) / sizeof(rsv[0]); i++) {
		frame(&b, FIN | WS_OP_TEXT, "ok");
		frame(&b, FIN | rsv[i] | WS_OP_TEXT, "hi");
		CHECK(&b, MAX, W_TEXT("ok"), W_ERR(1002));
		b_free(&b);
	}
	for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		frame(&b, FIN | reserved[i], "");
		CHECK(&b, MAX, W_ERR(1002));
		b_free(&b);
		frame(&b, reserved[i], "abc");
		CHECK(&b, MAX, W_ERR(1002));
		b_free(&b);
	}
}

static void
test_control_rules(void)
{
	struct bytes b = { 0 };
	char p[127];

	memset(p, 'c', sizeof(p));
	frame(&b, WS_OP_PING, "frag");
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);
	frame(&b, WS_OP_PONG, "");
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);
	frame(&b, WS_OP_CLOSE, "\x03\xe8");
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);

	frame_ex(&b, FIN | WS_OP_PING, p, 125, 0);
	CHECK(&b, MAX, { WS_EV_PING, 0, p, 125 });
	b_free(&b);
	frame_ex(&b, FIN | WS_OP_PING, p, 126, 0);
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);
	frame_ex(&b, FIN | WS_OP_CLOSE, p, 127, F_LEN64);
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);
}

static void
test_fragment_rules(void)
{
	struct bytes b = { 0 };

	frame(&b, FIN | WS_OP_CONT, "orphan");
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);
	frame(&b, WS_OP_CONT, "orphan");
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);

	/* A continuation after the message has ended is an orphan too. */
	frame(&b, WS_OP_TEXT, "a");
	frame(&b, FIN | WS_OP_CONT, "b");
	frame(&b, FIN | WS_OP_CONT, "c");
	CHECK(&b, MAX, W_TEXT("ab"), W_ERR(1002));
	b_free(&b);

	frame(&b, WS_OP_TEXT, "start");
	frame(&b, FIN | WS_OP_TEXT, "again");
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);
	frame(&b, WS_OP_TEXT, "start");
	frame(&b, FIN | WS_OP_BINARY, "bin");
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);
}

static void
test_binary(void)
{
	struct bytes b = { 0 };

	frame_ex(&b, FIN | WS_OP_BINARY, "\x00\x01", 2, 0);
	CHECK(&b, MAX, W_ERR(1003));
	b_free(&b);
	frame(&b, FIN | WS_OP_TEXT, "t");
	frame(&b, WS_OP_BINARY, "b");
	CHECK(&b, MAX, W_TEXT("t"), W_ERR(1003));
	b_free(&b);
	/* Known from the first two bytes, even with more length to come. */
	b_byte(&b, FIN | WS_OP_BINARY);
	b_byte(&b, 0x80 | 127);
	CHECK(&b, MAX, W_ERR(1003));
	b_free(&b);
}

static void
test_length_top_bit(void)
{
	struct bytes b = { 0 };

	header_ex(&b, FIN | WS_OP_TEXT, (uint64_t)1 << 63, 0,
	    (const uint8_t *)"abcd");
	CHECK(&b, MAX, W_ERR(1002));
	b_free(&b);
	header_ex(&b, FIN | WS_OP_TEXT, UINT64_MAX, 0, (const uint8_t *)"abcd");
	CHECK(&b, SIZE_MAX, W_ERR(1002));
	b_free(&b);
}

static void
test_invalid_utf8(void)
{
	struct bytes b = { 0 };

	frame(&b, FIN | WS_OP_TEXT, "bad \xff here");
	CHECK(&b, MAX, W_ERR(1007));
	b_free(&b);
	frame(&b, FIN | WS_OP_TEXT, "\xed\xa0\x80");
	CHECK(&b, MAX, W_ERR(1007));
	b_free(&b);
	frame(&b, FIN | WS_OP_TEXT, "\xc0\x80");
	CHECK(&b, MAX, W_ERR(1007));
	b_free(&b);

	/* Truncated at the end of the message. */
	frame(&b, FIN | WS_OP_TEXT, "abc\xe2\x82");
	CHECK(&b, MAX, W_ERR(1007));
	b_free(&b);
	frame(&b, WS_OP_TEXT, "abc");
	frame(&b, FIN | WS_OP_CONT, "\xf0\x9f\x98");
	CHECK(&b, MAX, W_ERR(1007));
	b_free(&b);
}

static void
test_utf8_across_fragments(void)
{
	struct bytes b = { 0 };

	frame(&b, WS_OP_TEXT, "smile \xf0\x9f");
	frame(&b, FIN | WS_OP_PING, "");
	frame(&b, WS_OP_CONT, "\x98");
	frame(&b, WS_OP_CONT, "\x80 euro \xe2");
	frame(&b, FIN | WS_OP_CONT, "\x82\xac");
	CHECK(&b, MAX, W_PING(""),
	    W_TEXT("smile \xf0\x9f\x98\x80 euro \xe2\x82\xac"));
	b_free(&b);

	/* Split inside a sequence that then turns out impossible. */
	frame(&b, WS_OP_TEXT, "x\xed");
	frame(&b, FIN | WS_OP_CONT, "\xa0\x80");
	CHECK(&b, MAX, W_ERR(1007));
	b_free(&b);
}

/*
 * Fail fast: a bad byte in the first fragment fails the connection when
 * that byte arrives, not when the message would have ended.
 */
static void
test_utf8_fail_fast(void)
{
	struct bytes b = { 0 };
	struct run r;
	size_t first_end, bad, k;

	frame(&b, WS_OP_TEXT, "good start, then \xc3\x28 and more");
	first_end = b.len;
	bad = first_end - strlen("\x28 and more");
	frame(&b, WS_OP_CONT, "second");
	frame(&b, FIN | WS_OP_CONT, "third");
	CHECK(&b, MAX, W_ERR(1007));

	run_bytewise(b.p, b.len, MAX, &r);
	CU_ASSERT_EQUAL_FATAL(r.n, 1);
	CU_ASSERT_EQUAL(r.ev[0].at, bad + 1);
	run_free(&r);
	for (k = 0; k <= b.len; k++) {
		run_split(b.p, b.len, MAX, k, &r);
		CU_ASSERT(r.n == 1 && r.ev[0].at <= first_end);
		run_free(&r);
	}
	/* Even with the rest of the message never sent. */
	run_bytewise(b.p, first_end, MAX, &r);
	CU_ASSERT(r.n == 1 && r.ev[0].ev == WS_EV_ERROR &&
	    r.ev[0].code == 1007);
	run_free(&r);
	b_free(&b);
}

/* ---- buffers and pointers ------------------------------------------- */

static void
test_zero_copy(void)
{
	struct bytes b = { 0 };
	struct ws_decoder d;
	struct ws_message m;
	size_t n;

	frame(&b, FIN | WS_OP_TEXT, "in place");
	frame(&b, FIN | WS_OP_PING, "pp");
	ws_decoder_init(&d, MAX);
	CU_ASSERT_EQUAL(ws_decode(&d, b.p, b.len, &n, &m), WS_EV_TEXT);
	CU_ASSERT_EQUAL(n, 14);
	CU_ASSERT_PTR_EQUAL(m.data, b.p + 6);
	CU_ASSERT_EQUAL(ws_decode(&d, b.p + n, b.len - n, &n, &m), WS_EV_PING);
	CU_ASSERT_PTR_EQUAL(m.data, b.p + 14 + 6);
	CU_ASSERT_PTR_NULL(d.msg);
	ws_decoder_free(&d);
	b_free(&b);
}

static void
test_buffer_release(void)
{
	struct bytes b = { 0 };
	struct ws_decoder d;
	struct ws_message m;
	uint8_t *p = xmalloc(6000);
	size_t n, off;

	memset(p, 'z', 6000);
	frame_ex(&b, WS_OP_TEXT, p, 3000, 0);
	frame_ex(&b, FIN | WS_OP_CONT, p, 3000, 0);
	ws_decoder_init(&d, 10000);
	CU_ASSERT_EQUAL(ws_decode(&d, b.p, b.len, &n, &m), WS_EV_TEXT);
	CU_ASSERT_EQUAL(m.len, 6000);
	CU_ASSERT_PTR_EQUAL(m.data, d.msg);
	/* Still held while the event may be read; dropped on the next call. */
	CU_ASSERT_EQUAL(ws_decode(&d, NULL, 0, &n, &m), WS_EV_NEED_MORE);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT_PTR_NULL(d.msg);
	CU_ASSERT_EQUAL(d.msg_cap, 0);
	b_free(&b);

	/* A small buffer is kept for the next message. */
	frame(&b, WS_OP_TEXT, "sm");
	frame(&b, FIN | WS_OP_CONT, "all");
	CU_ASSERT_EQUAL(ws_decode(&d, b.p, b.len, &n, &m), WS_EV_TEXT);
	CU_ASSERT_EQUAL(ws_decode(&d, NULL, 0, &n, &m), WS_EV_NEED_MORE);
	CU_ASSERT_PTR_NOT_NULL(d.msg);
	CU_ASSERT(d.msg_cap <= 4096);
	b_free(&b);

	/* Freed mid-message: nothing may leak (ASan checks). */
	frame_ex(&b, WS_OP_TEXT, p, 5000, 0);
	for (off = 0; off < b.len; off += n)
		CU_ASSERT_EQUAL(ws_decode(&d, b.p + off, b.len - off, &n, &m),
		    WS_EV_NEED_MORE);
	CU_ASSERT(d.msg_cap >= 5000);
	ws_decoder_free(&d);
	CU_ASSERT_PTR_NULL(d.msg);
	b_free(&b);
	free(p);
}

static void
test_partial_frame_grows_slowly(void)
{
	struct bytes b = { 0 };
	struct ws_decoder d;
	struct ws_message m;
	size_t n;

	/* A huge announced frame with little sent costs little memory. */
	header_ex(&b, FIN | WS_OP_TEXT, 1000000, 0, (const uint8_t *)"abcd");
	b_add(&b, "0123456789", 10);
	ws_decoder_init(&d, 1 << 20);
	CU_ASSERT_EQUAL(ws_decode(&d, b.p, b.len, &n, &m), WS_EV_NEED_MORE);
	CU_ASSERT(d.msg_cap < 4096);
	ws_decoder_free(&d);
	b_free(&b);
}

/* ---- encoder and handshake ------------------------------------------ */

static void
test_frame_header(void)
{
	static const struct {
		uint64_t len;
		size_t size;
	} cases[] = { { 0, 2 }, { 1, 2 }, { 125, 2 }, { 126, 4 },
	    { 65535, 4 }, { 65536, 10 }, { (uint64_t)1 << 40, 10 } };
	uint8_t h[WS_MAX_HEADER];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(h, 0xee, sizeof(h));
		CU_ASSERT_EQUAL(ws_frame_header(h, WS_OP_TEXT, cases[i].len),
		    cases[i].size);
		CU_ASSERT_EQUAL(h[0], 0x81);
		CU_ASSERT_EQUAL(h[1] & 0x80, 0);
	}
	CU_ASSERT_EQUAL(ws_frame_header(h, WS_OP_TEXT, 125), 2);
	CU_ASSERT_EQUAL(h[1], 125);
	CU_ASSERT_EQUAL(ws_frame_header(h, WS_OP_PONG, 126), 4);
	CU_ASSERT(h[0] == 0x8a && h[1] == 126 && h[2] == 0 && h[3] == 126);
	CU_ASSERT_EQUAL(ws_frame_header(h, WS_OP_TEXT, 65535), 4);
	CU_ASSERT(h[2] == 0xff && h[3] == 0xff);
	CU_ASSERT_EQUAL(ws_frame_header(h, WS_OP_TEXT, 65536), 10);
	CU_ASSERT(memcmp(h + 1, "\x7f\0\0\0\0\0\x01\0\0", 9) == 0);
	CU_ASSERT_EQUAL(ws_frame_header(h, WS_OP_CLOSE, 0), 2);
	CU_ASSERT(h[0] == 0x88 && h[1] == 0);
}

static void
test_close_frame(void)
{
	uint8_t f[4];

	CU_ASSERT_EQUAL(ws_close_frame(f, 1000), 4);
	CU_ASSERT(memcmp(f, "\x88\x02\x03\xe8", 4) == 0);
	CU_ASSERT_EQUAL(ws_close_frame(f, WS_CLOSE_TOO_BIG), 4);
	CU_ASSERT(memcmp(f, "\x88\x02\x03\xf1", 4) == 0);
}

static void
test_close_code_valid(void)
{
	unsigned c, n = 0;

	for (c = 0; c < 70000; c++)
		n += ws_close_code_valid(c) != 0;
	/* 1000-1003, 1007-1014 and 3000-4999. */
	CU_ASSERT_EQUAL(n, 4 + 8 + 2000);
	CU_ASSERT_FALSE(ws_close_code_valid(1004));
	CU_ASSERT_FALSE(ws_close_code_valid(1005));
	CU_ASSERT_FALSE(ws_close_code_valid(1006));
	CU_ASSERT_FALSE(ws_close_code_valid(1015));
	CU_ASSERT_TRUE(ws_close_code_valid(1014));
	CU_ASSERT_TRUE(ws_close_code_valid(4999));
}

static void
test_accept_key(void)
{
	static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
	char out[WS_ACCEPT_LEN + 1];
	char *big;

	memset(out, 'x', sizeof(out));
	ws_accept_key(key, strlen(key), out);
	CU_ASSERT_STRING_EQUAL(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	/* Only key_len bytes count. */
	ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==garbage", 24, out);
	CU_ASSERT_STRING_EQUAL(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	big = xmalloc(5000);
	memset(big, 'A', 5000);
	ws_accept_key(big, 5000, out);
	CU_ASSERT_EQUAL(strlen(out), WS_ACCEPT_LEN);
	free(big);
}

static void
test_client_key_valid(void)
{
#define KEY_OK(s) CU_ASSERT_TRUE(ws_client_key_valid(s, strlen(s)))
#define KEY_BAD(s) CU_ASSERT_FALSE(ws_client_key_valid(s, strlen(s)))
	KEY_OK("dGhlIHNhbXBsZSBub25jZQ==");
	KEY_OK("AAAAAAAAAAAAAAAAAAAAAA==");
	KEY_OK("+/+/+/+/+/09azAZ+/+/+w==");
	KEY_BAD("");
	KEY_BAD("dGhlIHNhbXBsZSBub25jZQ=");
	KEY_BAD("dGhlIHNhbXBsZSBub25jZQ===");
	KEY_BAD("dGhlIHNhbXBsZSBub25jZQ== ");
	KEY_BAD(" dGhlIHNhbXBsZSBub25jZQ==");
	KEY_BAD("dGhlIHNhbXBsZSBub25jZQAA");
	KEY_BAD("dGhlIHNhbXBsZSBub25jZ===");
	KEY_BAD("dGhlIHNhbXBs*SBub25jZQ==");
	KEY_BAD("dGhlIHNhbXBs-SBub25jZQ==");
	KEY_BAD("dGhlIHNhbXBsZSBub25j=Q==");
	KEY_BAD("dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==");
	/* Only key_len counts: the NUL-free prefix of a longer string. */
	CU_ASSERT_TRUE(ws_client_key_valid("dGhlIHNhbXBsZSBub25jZQ==xx", 24));
	CU_ASSERT_FALSE(ws_client_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 23));
#undef KEY_OK
#undef KEY_BAD
}

int
main(void)
{
	static const struct unit_test tests[] = {
	{ "single text", test_single_text },
	{ "several frames in one buffer", test_several_in_one_buffer },
	{ "fragments with control frames", test_fragmented_with_control },
	{ "ping echo", test_ping_echo },
	{ "16- and 64-bit lengths", test_lengths },
	{ "max_message", test_max_message },
	{ "close frames", test_close },
	{ "protocol errors", test_protocol_errors },
	{ "control frame rules", test_control_rules },
	{ "fragmentation rules", test_fragment_rules },
	{ "binary", test_binary },
	{ "64-bit length top bit", test_length_top_bit },
	{ "invalid UTF-8", test_invalid_utf8 },
	{ "UTF-8 across fragments", test_utf8_across_fragments },
	{ "UTF-8 fail fast", test_utf8_fail_fast },
	{ "zero copy", test_zero_copy },
	{ "buffer release", test_buffer_release },
	{ "partial frame grows slowly", test_partial_frame_grows_slowly },
	{ "frame header", test_frame_header },
	{ "close frame", test_close_frame },
	{ "close code valid", test_close_code_valid },
	{ "accept key", test_accept_key },
	{ "client key valid", test_client_key_valid },
	};

	return UNIT_RUN("ws", tests);
}
