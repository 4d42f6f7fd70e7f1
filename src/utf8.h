/*
 * utf8.h - incremental UTF-8 validation (RFC 3629).
 *
 * Pure functions over caller-owned state; no allocation, no globals, so any
 * thread may use them on its own state. The validator rejects overlong
 * forms, UTF-16 surrogates (U+D800..U+DFFF) and code points above U+10FFFF
 * as early as the first byte that makes a sequence impossible, which is what
 * RFC 6455 section 8.1 asks of a WebSocket endpoint ("fail fast").
 */
#ifndef PARLEY_UTF8_H
#define PARLEY_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* State between calls: UTF8_ACCEPT at a character boundary. */
#define UTF8_ACCEPT 0u
#define UTF8_REJECT 1u

typedef uint32_t utf8_state;

/*
 * Feed len bytes. Returns the new state: UTF8_REJECT as soon as the input
 * can no longer be valid (and stays there), UTF8_ACCEPT when the input so
 * far ends on a character boundary, anything else while a sequence is open.
 */
utf8_state utf8_feed(utf8_state state, const uint8_t *buf, size_t len);

/* Whole-buffer check: 1 if buf is complete, valid UTF-8, else 0. */
int utf8_valid(const uint8_t *buf, size_t len);

#endif
