#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "unit.h"
#include <CUnit/CUnit.h>

#include "utf8.h"

/* Byte strings are written as C string literals; sizeof - 1 drops the NUL. */
#define S(lit) (const uint8_t *)(lit), (sizeof(lit) - 1)

/* Feeding one byte at a time must end in the same state as one call. */
static utf8_state
feed_bytewise(const uint8_t *p, size_t n)
{
	utf8_state st = UTF8_ACCEPT;
	size_t i;

	for (i = 0; i < n; i++)
		st = utf8_feed(st, p + i, 1);
	return st;
}

/* Same again split in two at every position. */
static void
check_splits(const uint8_t *p, size_t n, utf8_state whole)
{
	utf8_state st;
	size_t k;

	for (k = 0; k <= n; k++) {
		st = utf8_feed(UTF8_ACCEPT, p, k);
		st = utf8_feed(st, p + k, n - k);
		CU_ASSERT_EQUAL(st, whole);
	}
	CU_ASSERT_EQUAL(feed_bytewise(p, n), whole);
}

static void
expect_valid(const uint8_t *p, size_t n)
{
	CU_ASSERT_TRUE(utf8_valid(p, n));
	CU_ASSERT_EQUAL(utf8_feed(UTF8_ACCEPT, p, n), UTF8_ACCEPT);
	check_splits(p, n, UTF8_ACCEPT);
}

/* Invalid, and already REJECT after the byte at index bad. */
static void
expect_reject_at(const uint8_t *p, size_t n, size_t bad)
{
	CU_ASSERT_FALSE(utf8_valid(p, n));
	CU_ASSERT_EQUAL(utf8_feed(UTF8_ACCEPT, p, n), UTF8_REJECT);
	CU_ASSERT_NOT_EQUAL(utf8_feed(UTF8_ACCEPT, p, bad), UTF8_REJECT);
	CU_ASSERT_EQUAL(utf8_feed(UTF8_ACCEPT, p, bad + 1), UTF8_REJECT);
	check_splits(p, n, UTF8_REJECT);
}

/* Valid so far but cut off: neither ACCEPT nor REJECT. */
static void
expect_truncated(const uint8_t *p, size_t n)
{
	utf8_state st = utf8_feed(UTF8_ACCEPT, p, n);

	CU_ASSERT_FALSE(utf8_valid(p, n));
	CU_ASSERT_NOT_EQUAL(st, UTF8_REJECT);
	CU_ASSERT_NOT_EQUAL(st, UTF8_ACCEPT);
	check_splits(p, n, st);
}

static void
test_ascii(void)
{
	uint8_t all[128];
	size_t i;

	for (i = 0; i < sizeof(all); i++)
		all[i] = (uint8_t)i;
	expect_valid(all, sizeof(all));
	expect_valid(S(""));
	expect_valid(S("hello, world"));
	/* Long enough for the word-at-a-time path, with a tail. */
	expect_valid(S("0123456789abcdef0123456789abcdefXYZ"));
	CU_ASSERT_TRUE(utf8_valid(NULL, 0));
}

static void
test_multibyte(void)
{
	expect_valid(S("\xc3\xa9"));                   /* U+00E9 */
	expect_valid(S("\xe2\x82\xac"));               /* U+20AC */
	expect_valid(S("\xf0\x9f\x98\x80"));           /* U+1F600 */
	expect_valid(S("caf\xc3\xa9 \xe2\x82\xac 5 \xf0\x9f\x98\x80!"));
	/* A non-ASCII byte after a long ASCII run, and the reverse. */
	expect_valid(S("abcdefghijklmnop\xc3\xa9qrstuvwxyz012345"));
	expect_valid(S("\xe2\x82\xac" "abcdefghijklmnopqrstuvwxyz"));
	expect_valid(S("\xef\xbb\xbf"));               /* BOM is just U+FEFF */
	expect_valid(S("\xee\x80\x80"));               /* U+E000, after surrogates */
}

static void
test_boundaries(void)
{
	expect_valid(S("\x7f"));                       /* U+007F */
	expect_valid(S("\xc2\x80"));                   /* U+0080 */
	expect_valid(S("\xdf\xbf"));                   /* U+07FF */
	expect_valid(S("\xe0\xa0\x80"));               /* U+0800 */
	expect_valid(S("\xed\x9f\xbf"));               /* U+D7FF */
	expect_valid(S("\xef\xbf\xbf"));               /* U+FFFF */
	expect_valid(S("\xf0\x90\x80\x80"));           /* U+10000 */
	expect_valid(S("\xf4\x8f\xbf\xbf"));           /* U+10FFFF */
	expect_valid(S("\x00"));                       /* U+0000 is allowed */
}

static void
test_overlong(void)
{
	expect_reject_at(S("\xc0\x80"), 0);            /* NUL in 2 bytes */
	expect_reject_at(S("\xc0\xaf"), 0);            /* '/' in 2 bytes */
	expect_reject_at(S("\xc1\xbf"), 0);            /* U+007F in 2 bytes */
	expect_reject_at(S("\xe0\x80\x80"), 1);        /* NUL in 3 bytes */
	expect_reject_at(S("\xe0\x9f\xbf"), 1);        /* U+07FF in 3 bytes */
	expect_reject_at(S("\xf0\x80\x80\x80"), 1);    /* NUL in 4 bytes */
	expect_reject_at(S("\xf0\x8f\xbf\xbf"), 1);    /* U+FFFF in 4 bytes */
	expect_reject_at(S("ok\xc0\x80"), 2);
}

static void
test_surrogates(void)
{
	expect_reject_at(S("\xed\xa0\x80"), 1);        /* U+D800 */
	expect_reject_at(S("\xed\xad\xbf"), 1);        /* U+DB7F */
	expect_reject_at(S("\xed\xb0\x80"), 1);        /* U+DC00 */
	expect_reject_at(S("\xed\xbf\xbf"), 1);        /* U+DFFF */
	/* A surrogate pair encoded as two 3-byte sequences (CESU-8). */
	expect_reject_at(S("\xed\xa0\xbd\xed\xb8\x80"), 1);
}

static void
test_above_max(void)
{
	uint8_t b[4] = { 0, 0x80, 0x80, 0x80 };
	unsigned c;

	expect_reject_at(S("\xf4\x90\x80\x80"), 1);    /* U+110000 */
	expect_reject_at(S("\xf4\xbf\xbf\xbf"), 1);
	for (c = 0xf5; c <= 0xff; c++) {
		b[0] = (uint8_t)c;
		expect_reject_at(b, sizeof(b), 0);
		expect_reject_at(b, 1, 0);
	}
}

static void
test_stray_continuation(void)
{
	uint8_t b[1];
	unsigned c;

	for (c = 0x80; c <= 0xbf; c++) {
		b[0] = (uint8_t)c;
		expect_reject_at(b, 1, 0);
	}
	expect_reject_at(S("abc\x80"), 3);
	expect_reject_at(S("\xc3\xa9\xa9"), 2);        /* one too many */
	expect_reject_at(S("\xe2\x82\xac\x80"), 3);
	expect_reject_at(S("\xf0\x9f\x98\x80\xbf"), 4);
	/* A lead byte cut short by a non-continuation. */
	expect_reject_at(S("\xc3" "a"), 1);
	expect_reject_at(S("\xe2\x82" "a"), 2);
	expect_reject_at(S("\xf0\x9f\x98" "a"), 3);
	expect_reject_at(S("\xe2\xc3\xa9"), 1);
}

static void
test_truncated(void)
{
	expect_truncated(S("\xc3"));
	expect_truncated(S("\xe2"));
	expect_truncated(S("\xe2\x82"));
	expect_truncated(S("\xe0\xa0"));
	expect_truncated(S("\xed\x9f"));
	expect_truncated(S("\xf0"));
	expect_truncated(S("\xf0\x9f"));
	expect_truncated(S("\xf0\x9f\x98"));
	expect_truncated(S("\xf4\x8f\xbf"));
	expect_truncated(S("hello \xf0\x9f\x98"));
	expect_truncated(S("0123456789abcdef\xe2\x82"));
}

/* The sticky REJECT, and that a split sequence resumes correctly. */
static void
test_incremental(void)
{
	static const uint8_t text[] =
	    "abcdefgh\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80ijklmnopqrstuvwx\xf4\x8f\xbf\xbf";
	utf8_state st;
	size_t n = sizeof(text) - 1;

	check_splits(text, n, UTF8_ACCEPT);
	st = utf8_feed(UTF8_ACCEPT, S("\xf0\x9f"));
	st = utf8_feed(st, S("\x98"));
	st = utf8_feed(st, S("\x80"));
	CU_ASSERT_EQUAL(st, UTF8_ACCEPT);
	st = utf8_feed(UTF8_ACCEPT, S("\xc0"));
	CU_ASSERT_EQUAL(st, UTF8_REJECT);
	CU_ASSERT_EQUAL(utf8_feed(st, S("abcdefghijklmnop")), UTF8_REJECT);
	CU_ASSERT_EQUAL(utf8_feed(st, NULL, 0), UTF8_REJECT);
	CU_ASSERT_EQUAL(utf8_feed(UTF8_ACCEPT, NULL, 0), UTF8_ACCEPT);
}

/* Fail fast: REJECT on the impossible byte, not at the end of the buffer. */
static void
test_fail_fast(void)
{
	static const uint8_t text[] = "valid prefix \xed\xa0 and a long tail that follows";
	size_t bad = 14;                    /* the A0 after ED */

	CU_ASSERT_EQUAL(text[bad], 0xa0);
	expect_reject_at(text, sizeof(text) - 1, bad);
	CU_ASSERT_EQUAL(feed_bytewise(text, bad + 1), UTF8_REJECT);
}

static void
test_every_two_byte_sequence(void)
{
	uint8_t b[2];
	unsigned hi, lo;
	int ok;

	/* Cross-check the table against the definition for all 2-byte inputs. */
	for (hi = 0; hi < 256; hi++) {
		for (lo = 0; lo < 256; lo++) {
			b[0] = (uint8_t)hi;
			b[1] = (uint8_t)lo;
			if (hi < 0x80)
				ok = lo < 0x80;
			else
				ok = hi >= 0xc2 && hi <= 0xdf &&
				    lo >= 0x80 && lo <= 0xbf;
			if (utf8_valid(b, 2) != ok)
				CU_FAIL("2-byte table mismatch");
		}
	}
}

/*
 * Reference: decode by arithmetic and apply RFC 3629 to the code point, a
 * different route from the state machine's byte ranges.
 */
static int
ref_valid(const uint8_t *p, size_t n)
{
	static const uint32_t min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t i = 0, k, len;
	uint32_t cp;

	while (i < n) {
		if (p[i] < 0x80)
			len = 1, cp = p[i];
		else if ((p[i] & 0xe0) == 0xc0)
			len = 2, cp = p[i] & 0x1f;
		else if ((p[i] & 0xf0) == 0xe0)
			len = 3, cp = p[i] & 0x0f;
		else if ((p[i] & 0xf8) == 0xf0)
			len = 4, cp = p[i] & 0x07;
		else
			return 0;
		if (n - i < len)
			return 0;
		for (k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (len > 1 && cp < min_cp[len])
			return 0;
		if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
		i += len;
	}
	return 1;
}

static void
test_against_reference(void)
{
	static const uint8_t tails[] = { 0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
	    0xa0, 0xbf, 0xc0, 0xff };
	uint8_t b[4];
	unsigned x, y, z, w, bad = 0;

	/* Every 3-byte input with a non-ASCII first byte. */
	for (x = 0x80; x < 0x100; x++)
		for (y = 0; y < 0x100; y++)
			for (z = 0; z < 0x100; z++) {
				b[0] = (uint8_t)x;
				b[1] = (uint8_t)y;
				b[2] = (uint8_t)z;
				bad += utf8_valid(b, 3) != ref_valid(b, 3);
			}
	/* 4-byte leads with every second byte and edge values after it. */
	for (x = 0xf0; x < 0x100; x++)
		for (y = 0; y < 0x100; y++)
			for (z = 0; z < sizeof(tails); z++)
				for (w = 0; w < sizeof(tails); w++) {
					b[0] = (uint8_t)x;
					b[1] = (uint8_t)y;
					b[2] = tails[z];
					b[3] = tails[w];
					bad += utf8_valid(b, 4) != ref_valid(b, 4);
				}
	CU_ASSERT_EQUAL(bad, 0);
}

int
main(void)
{
	static const struct unit_test tests[] = {
		{ "ascii", test_ascii },
		{ "multibyte", test_multibyte },
		{ "boundaries", test_boundaries },
		{ "overlong", test_overlong },
		{ "surrogates", test_surrogates },
		{ "above U+10FFFF", test_above_max },
		{ "stray continuation", test_stray_continuation },
		{ "truncated", test_truncated },
		{ "incremental", test_incremental },
		{ "fail fast", test_fail_fast },
		{ "all 2-byte inputs", test_every_two_byte_sequence },
		{ "against a reference", test_against_reference },
	};

	return UNIT_RUN("utf8", tests);
}
