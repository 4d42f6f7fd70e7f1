#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "utf8.h"

/*
 * States past ACCEPT and REJECT. Most lead bytes only fix how many
 * continuation bytes follow, but E0, ED, F0 and F4 also narrow the range of
 * the first one: that is where overlongs, surrogates and code points above
 * U+10FFFF are ruled out, so they fail on the byte that makes them
 * impossible instead of at the end of the sequence.
 */
enum {
	UTF8_TAIL1 = 2,         /* one continuation byte left */
	UTF8_TAIL2,             /* two left */
	UTF8_TAIL3,             /* three left */
	UTF8_E0,                /* A0..BF, then one more: no 3-byte overlong */
	UTF8_ED,                /* 80..9F, then one more: no surrogate */
	UTF8_F0,                /* 90..BF, then two more: no 4-byte overlong */
	UTF8_F4,                /* 80..8F, then two more: <= U+10FFFF */
};

#define UTF8_HIGH_BITS 0x8080808080808080ull

static int
utf8_in(uint8_t c, uint8_t lo, uint8_t hi)
{
	return c >= lo && c <= hi;
}

static utf8_state
utf8_lead(uint8_t c)
{
	if (c < 0x80)
		return UTF8_ACCEPT;
	/* 80..BF cannot start a sequence; C0 and C1 only encode overlongs. */
	if (c < 0xc2)
		return UTF8_REJECT;
	if (c < 0xe0)
		return UTF8_TAIL1;
	if (c == 0xe0)
		return UTF8_E0;
	if (c == 0xed)
		return UTF8_ED;
	if (c < 0xf0)
		return UTF8_TAIL2;
	if (c == 0xf0)
		return UTF8_F0;
	if (c < 0xf4)
		return UTF8_TAIL3;
	if (c == 0xf4)
		return UTF8_F4;
	/* F5..FF would start a code point above U+10FFFF. */
	return UTF8_REJECT;
}

static utf8_state
utf8_step(utf8_state s, uint8_t c)
{
	switch (s) {
	case UTF8_ACCEPT:
		return utf8_lead(c);
	case UTF8_TAIL1:
		return utf8_in(c, 0x80, 0xbf) ? UTF8_ACCEPT : UTF8_REJECT;
	case UTF8_TAIL2:
		return utf8_in(c, 0x80, 0xbf) ? UTF8_TAIL1 : UTF8_REJECT;
	case UTF8_TAIL3:
		return utf8_in(c, 0x80, 0xbf) ? UTF8_TAIL2 : UTF8_REJECT;
	case UTF8_E0:
		return utf8_in(c, 0xa0, 0xbf) ? UTF8_TAIL1 : UTF8_REJECT;
	case UTF8_ED:
		return utf8_in(c, 0x80, 0x9f) ? UTF8_TAIL1 : UTF8_REJECT;
	case UTF8_F0:
		return utf8_in(c, 0x90, 0xbf) ? UTF8_TAIL2 : UTF8_REJECT;
	case UTF8_F4:
		return utf8_in(c, 0x80, 0x8f) ? UTF8_TAIL2 : UTF8_REJECT;
	default:
		/* REJECT, or a state value we never produce. */
		return UTF8_REJECT;
	}
}

utf8_state
utf8_feed(utf8_state state, const uint8_t *buf, size_t len)
{
	size_t i = 0;
	uint64_t w;

	while (i < len) {
		/* Chat text is mostly ASCII: skip it a word at a time. */
		if (state == UTF8_ACCEPT) {
			while (len - i >= 8) {
				memcpy(&w, buf + i, sizeof(w));
				if (w & UTF8_HIGH_BITS)
					break;
				i += 8;
			}
			if (i == len)
				break;
		}
		state = utf8_step(state, buf[i++]);
		if (state == UTF8_REJECT)
			break;
	}
	return state;
}

int
utf8_valid(const uint8_t *buf, size_t len)
{
	return utf8_feed(UTF8_ACCEPT, buf, len) == UTF8_ACCEPT;
}
