#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "utf8.h"
#include "ws.h"
#include "xmalloc.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_GUID_LEN (sizeof(WS_GUID) - 1)
#define WS_KEY_LEN 24           /* base64 of 16 bytes */

#define WS_BASE_HEADER 2        /* FIN/RSV/opcode, MASK/length */
#define WS_MASK_LEN 4
#define WS_CTL_MAX 125

/* A reassembly buffer above this size is not kept between messages. */
#define WS_MSG_KEEP 4096
#define WS_MSG_MIN 256

/* Empty payloads point here, so data is never NULL in an event. */
static const uint8_t ws_empty[1];

static int
ws_is_control(uint8_t op)
{
	return (op & 0x8) != 0;
}

/*
 * Fail the connection. The close code is kept as code - 1000 in the one
 * byte the struct has for it (every code we send is 1002..1011), so a
 * caller that calls again gets the same answer without a larger struct.
 */
static enum ws_event
ws_fail(struct ws_decoder *d, struct ws_message *out, uint16_t code,
    const char *why)
{
	d->failed = (uint8_t)(code - 1000);
	out->data = ws_empty;
	out->len = 0;
	out->close_code = code;
	out->error = why;
	return WS_EV_ERROR;
}

static enum ws_event
ws_emit(enum ws_event ev, struct ws_message *out, const uint8_t *data,
    size_t len, uint16_t code)
{
	out->data = len > 0 ? data : ws_empty;
	out->len = len;
	out->close_code = code;
	out->error = NULL;
	return ev;
}

/*
 * XOR n bytes with the mask, the first of them being byte off of the
 * payload. Word-sized steps once aligned to the mask period, since text
 * frames of many kilobytes go through here.
 */
static void
ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t off)
{
	uint8_t m8[8];
	uint64_t w, m;
	size_t i = 0;

	for (; i < n && ((off + i) & 3) != 0; i++)
		p[i] ^= mask[(off + i) & 3];
	if (n - i >= 8) {
		memcpy(m8, mask, 4);
		memcpy(m8 + 4, mask, 4);
		memcpy(&m, m8, 8);
		for (; n - i >= 8; i += 8) {
			memcpy(&w, p + i, 8);
			w ^= m;
			memcpy(p + i, &w, 8);
		}
	}
	for (; i < n; i++)
		p[i] ^= mask[(off + i) & 3];
}

void
ws_decoder_init(struct ws_decoder *d, size_t max_message)
{
	memset(d, 0, sizeof(*d));
	d->max_message = max_message;
	d->hdr_need = WS_BASE_HEADER;
	d->utf8 = UTF8_ACCEPT;
}

void
ws_decoder_free(struct ws_decoder *d)
{
	free(d->msg);
	d->msg = NULL;
	d->msg_len = d->msg_cap = 0;
}

/*
 * The previous event may still point into d->msg until this call, so a
 * large buffer left by a finished message is only dropped here.
 */
static void
ws_trim(struct ws_decoder *d)
{
	if (d->msg_opcode == 0 && d->msg_cap > WS_MSG_KEEP)
		ws_decoder_free(d);
}

/* Room for n more message bytes; the header check kept the total <= max. */
static void
ws_reserve(struct ws_decoder *d, size_t n)
{
	size_t need = d->msg_len + n, cap;

	if (need <= d->msg_cap)
		return;
	/* Grow as bytes arrive, not to the announced length: a peer that
	 * announces a large frame and stalls costs only what it sent. */
	cap = d->msg_cap ? d->msg_cap : WS_MSG_MIN;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
	if (cap > d->max_message)
		cap = d->max_message;
	if (cap < need)
		cap = need;
	d->msg = xrealloc(d->msg, cap);
	d->msg_cap = cap;
}

static void
ws_next_frame(struct ws_decoder *d)
{
	d->hdr_len = 0;
	d->hdr_need = WS_BASE_HEADER;
	d->ctl_len = 0;
	d->payload_len = d->payload_got = 0;
}

/*
 * The first two bytes say almost everything that can be wrong with a
 * frame; checking them before the rest of the header arrives keeps the
 * answer the same however the input is split.
 */
static enum ws_event
ws_check_base(struct ws_decoder *d, struct ws_message *out)
{
	uint8_t b0 = d->hdr[0], b1 = d->hdr[1], len7 = b1 & 0x7f;

	d->fin = b0 >> 7;
	d->opcode = b0 & 0x0f;
	if (b0 & 0x70)
		return ws_fail(d, out, WS_CLOSE_PROTOCOL, "reserved bits set");
	switch (d->opcode) {
	case WS_OP_CONT:
		if (d->msg_opcode == 0)
			return ws_fail(d, out, WS_CLOSE_PROTOCOL,
			    "continuation without a message");
		break;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (d->msg_opcode != 0)
			return ws_fail(d, out, WS_CLOSE_PROTOCOL,
			    "new message inside a fragmented one");
		break;
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		if (!d->fin)
			return ws_fail(d, out, WS_CLOSE_PROTOCOL,
			    "fragmented control frame");
		if (len7 > WS_CTL_MAX)
			return ws_fail(d, out, WS_CLOSE_PROTOCOL,
			    "control frame too long");
		break;
	default:
		return ws_fail(d, out, WS_CLOSE_PROTOCOL, "reserved opcode");
	}
	if (!(b1 & 0x80))
		return ws_fail(d, out, WS_CLOSE_PROTOCOL,
		    "unmasked client frame");
	if (d->opcode == WS_OP_BINARY)
		return ws_fail(d, out, WS_CLOSE_UNSUPPORTED,
		    "binary messages are not supported");
	d->hdr_need = WS_BASE_HEADER + WS_MASK_LEN +
	    (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
	return WS_EV_NEED_MORE;
}

/* The whole header is in: length, mask, and the size limits. */
static enum ws_event
ws_check_header(struct ws_decoder *d, struct ws_message *out)
{
	const uint8_t *p = d->hdr + WS_BASE_HEADER;
	uint8_t len7 = d->hdr[1] & 0x7f;
	uint64_t len = len7;
	size_t base;
	int i;

	if (len7 == 126) {
		len = (uint64_t)p[0] << 8 | p[1];
		p += 2;
	} else if (len7 == 127) {
		for (len = 0, i = 0; i < 8; i++)
			len = len << 8 | p[i];
		p += 8;
		if (len >> 63)
			return ws_fail(d, out, WS_CLOSE_PROTOCOL,
			    "64-bit length with the top bit set");
	}
	memcpy(d->mask, p, WS_MASK_LEN);
	d->payload_len = len;
	d->payload_got = 0;
	if (ws_is_control(d->opcode))
		return WS_EV_NEED_MORE;

	/* Refuse now rather than after buffering up to the limit. */
	base = d->opcode == WS_OP_CONT ? d->msg_len : 0;
	if (len > (uint64_t)(d->max_message - base))
		return ws_fail(d, out, WS_CLOSE_TOO_BIG, "message too big");
	if (d->opcode == WS_OP_TEXT) {
		d->msg_opcode = WS_OP_TEXT;
		d->msg_len = 0;
		d->utf8 = UTF8_ACCEPT;
	}
	return WS_EV_NEED_MORE;
}

/* Take header bytes one at a time, checking as soon as a part is complete. */
static enum ws_event
ws_header(struct ws_decoder *d, const uint8_t *buf, size_t len, size_t *used,
    struct ws_message *out)
{
	enum ws_event ev = WS_EV_NEED_MORE;
	size_t n = 0;

	while (n < len && d->hdr_len < d->hdr_need) {
		d->hdr[d->hdr_len++] = buf[n++];
		if (d->hdr_len == WS_BASE_HEADER) {
			ev = ws_check_base(d, out);
			if (ev != WS_EV_NEED_MORE)
				break;
		}
	}
	if (ev == WS_EV_NEED_MORE && d->hdr_len == d->hdr_need)
		ev = ws_check_header(d, out);
	*used = n;
	return ev;
}

static enum ws_event
ws_utf8_fail(struct ws_decoder *d, struct ws_message *out, utf8_state st)
{
	if (st == UTF8_REJECT)
		return ws_fail(d, out, WS_CLOSE_INVALID_DATA, "invalid UTF-8");
	return ws_fail(d, out, WS_CLOSE_INVALID_DATA, "truncated UTF-8");
}

static enum ws_event
ws_close(struct ws_decoder *d, const uint8_t *p, size_t n,
    struct ws_message *out)
{
	unsigned code;
	utf8_state st;

	if (n == 0)
		return ws_emit(WS_EV_CLOSE, out, NULL, 0, WS_CLOSE_NO_STATUS);
	if (n == 1)
		return ws_fail(d, out, WS_CLOSE_PROTOCOL,
		    "close payload of 1 byte");
	code = (unsigned)p[0] << 8 | p[1];
	if (!ws_close_code_valid(code))
		return ws_fail(d, out, WS_CLOSE_PROTOCOL, "invalid close code");
	st = utf8_feed(UTF8_ACCEPT, p + 2, n - 2);
	if (st != UTF8_ACCEPT)
		return ws_utf8_fail(d, out, st);
	return ws_emit(WS_EV_CLOSE, out, p + 2, n - 2, (uint16_t)code);
}

/* A complete control payload, unmasked, wherever it lies. */
static enum ws_event
ws_control(struct ws_decoder *d, const uint8_t *p, size_t n,
    struct ws_message *out)
{
	uint8_t op = d->opcode;

	ws_next_frame(d);
	if (op == WS_OP_PING)
		return ws_emit(WS_EV_PING, out, p, n, 0);
	if (op == WS_OP_PONG)
		return ws_emit(WS_EV_PONG, out, p, n, 0);
	return ws_close(d, p, n, out);
}

/* An unfragmented text frame that lies whole in the caller's buffer. */
static enum ws_event
ws_text_whole(struct ws_decoder *d, uint8_t *p, size_t n,
    struct ws_message *out)
{
	utf8_state st;

	ws_unmask(p, n, d->mask, 0);
	st = utf8_feed(UTF8_ACCEPT, p, n);
	if (st != UTF8_ACCEPT)
		return ws_utf8_fail(d, out, st);
	d->msg_opcode = 0;
	ws_next_frame(d);
	return ws_emit(WS_EV_TEXT, out, p, n, 0);
}

/* The current frame's payload is all in; a final one ends the message. */
static enum ws_event
ws_data_end(struct ws_decoder *d, struct ws_message *out)
{
	int fin = d->fin;

	ws_next_frame(d);
	if (!fin)
		return WS_EV_NEED_MORE;
	if (d->utf8 != UTF8_ACCEPT)
		return ws_utf8_fail(d, out, d->utf8);
	d->msg_opcode = 0;
	return ws_emit(WS_EV_TEXT, out, d->msg, d->msg_len, 0);
}

/* Append payload bytes to the message, validating them as they arrive. */
static enum ws_event
ws_data(struct ws_decoder *d, const uint8_t *buf, size_t n,
    struct ws_message *out)
{
	uint8_t *dst;

	if (n > 0) {
		ws_reserve(d, n);
		dst = d->msg + d->msg_len;
		memcpy(dst, buf, n);
		ws_unmask(dst, n, d->mask, d->payload_got);
		d->utf8 = utf8_feed(d->utf8, dst, n);
		if (d->utf8 == UTF8_REJECT)
			return ws_utf8_fail(d, out, d->utf8);
		d->msg_len += n;
		d->payload_got += n;
	}
	if (d->payload_got == d->payload_len)
		return ws_data_end(d, out);
	return WS_EV_NEED_MORE;
}

static enum ws_event
ws_payload(struct ws_decoder *d, uint8_t *buf, size_t len, size_t *used,
    struct ws_message *out)
{
	uint64_t left = d->payload_len - d->payload_got;
	size_t n = left < len ? (size_t)left : len;
	int control = ws_is_control(d->opcode);

	*used = n;
	/* Whole frame here: unmask in place and point into buf, no copy. */
	if (d->payload_got == 0 && n == left) {
		if (control) {
			ws_unmask(buf, n, d->mask, 0);
			return ws_control(d, buf, n, out);
		}
		if (d->opcode == WS_OP_TEXT && d->fin)
			return ws_text_whole(d, buf, n, out);
	}
	if (!control)
		return ws_data(d, buf, n, out);

	memcpy(d->ctl + d->ctl_len, buf, n);
	ws_unmask(d->ctl + d->ctl_len, n, d->mask, d->payload_got);
	d->ctl_len += (uint8_t)n;
	d->payload_got += n;
	if (d->payload_got == d->payload_len)
		return ws_control(d, d->ctl, d->ctl_len, out);
	return WS_EV_NEED_MORE;
}

enum ws_event
ws_decode(struct ws_decoder *d, uint8_t *buf, size_t len, size_t *consumed,
    struct ws_message *out)
{
	enum ws_event ev = WS_EV_NEED_MORE;
	size_t pos = 0, n;

	*consumed = 0;
	if (d->failed)
		return ws_fail(d, out, (uint16_t)(1000 + d->failed),
		    "input after a failure");
	ws_trim(d);
	while (ev == WS_EV_NEED_MORE) {
		if (d->hdr_len < d->hdr_need) {
			if (pos == len)
				break;
			ev = ws_header(d, buf + pos, len - pos, &n, out);
		} else {
			/* An empty payload completes with no input left. */
			if (pos == len && d->payload_got < d->payload_len)
				break;
			ev = ws_payload(d, buf + pos, len - pos, &n, out);
		}
		pos += n;
	}
	*consumed = pos;
	return ev;
}

int
ws_close_code_valid(unsigned code)
{
	/* 1004 is reserved; 1005, 1006 and 1015 must never be sent. */
	if (code >= 1000 && code <= 1003)
		return 1;
	if (code >= 1007 && code <= 1014)
		return 1;
	return code >= 3000 && code <= 4999;
}

size_t
ws_frame_header(uint8_t *out, enum ws_opcode op, uint64_t len)
{
	int i;

	out[0] = 0x80 | (uint8_t)op;
	if (len <= WS_CTL_MAX) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
	return 10;
}

size_t
ws_close_frame(uint8_t *out, uint16_t code)
{
	out[0] = 0x80 | WS_OP_CLOSE;
	out[1] = 2;
	out[2] = (uint8_t)(code >> 8);
	out[3] = (uint8_t)code;
	return 4;
}

void
ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
	unsigned char digest[SHA_DIGEST_LENGTH];
	unsigned char *buf;

	buf = xmalloc(key_len + WS_GUID_LEN);
	memcpy(buf, key, key_len);
	memcpy(buf + key_len, WS_GUID, WS_GUID_LEN);
	SHA1(buf, key_len + WS_GUID_LEN, digest);
	free(buf);
	/* 20 bytes encode to 28 characters, and EVP_EncodeBlock adds a NUL. */
	EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

static int
ws_is_base64(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int
ws_client_key_valid(const char *key, size_t key_len)
{
	size_t i;

	/* 16 bytes are 22 significant characters and two of padding. */
	if (key_len != WS_KEY_LEN)
		return 0;
	for (i = 0; i < WS_KEY_LEN - 2; i++)
		if (!ws_is_base64(key[i]))
			return 0;
	return key[22] == '=' && key[23] == '=';
}
