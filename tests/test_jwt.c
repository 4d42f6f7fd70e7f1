/*
 * test_jwt.c - HS256 token verification and signing. Tokens are built by
 * hand here (own base64url encoder plus HMAC), so headers such as
 * {"alg":"none"} can carry a perfectly valid HS256 signature and still
 * have to be refused for their alg alone.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "unit.h"
#include <openssl/evp.h>

#include "jwt.h"
#include "xmalloc.h"

#define NOW INT64_C(1700000000)
#define SECRET "correct horse battery staple"
#define HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* ---- building tokens --------------------------------------------------- */

static char *
b64url(const void *in, size_t n)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const uint8_t *p = in;
	char *out = xmalloc(n / 3 * 4 + 4 + 1), *o = out;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t w = (uint32_t)p[i] << 16;

		if (i + 1 < n)
			w |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			w |= p[i + 2];
		*o++ = abc[w >> 18 & 63];
		*o++ = abc[w >> 12 & 63];
		if (i + 1 < n)
			*o++ = abc[w >> 6 & 63];
		if (i + 2 < n)
			*o++ = abc[w & 63];
	}
	*o = '\0';
	return out;
}

static char *
b64s(const char *s)
{
	return b64url(s, strlen(s));
}

/* c with its 6-bit value XORed with x: same alphabet, other bits. */
static char
b64_xor(char c, unsigned x)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

	return abc[(unsigned)(strchr(abc, c) - abc) ^ x];
}

static char *
cat3(const char *a, const char *sep, const char *b)
{
	size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
	char *s = xmalloc(la + ls + lb + 1);

	memcpy(s, a, la);
	memcpy(s + la, sep, ls);
	memcpy(s + la + ls, b, lb + 1);
	return s;
}

/* "header.payload" from the encoded parts, signed with key. */
static char *
sign_raw(const char *key, const char *h64, const char *p64)
{
	uint8_t mac[EVP_MAX_MD_SIZE];
	size_t mac_len = 0;
	char *input = cat3(h64, ".", p64), *sig, *tok;

	CU_ASSERT_PTR_NOT_NULL_FATAL(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256",
	    NULL, key, strlen(key), (const unsigned char *)input,
	    strlen(input), mac, sizeof(mac), &mac_len));
	sig = b64url(mac, mac_len);
	tok = cat3(input, ".", sig);
	free(input);
	free(sig);
	return tok;
}

/* A token with any header and payload text, HS256-signed with key. */
static char *
mk_key(const char *key, const char *hdr, const char *payload)
{
	char *h = b64s(hdr), *p = b64s(payload);
	char *tok = sign_raw(key, h, p);

	free(h);
	free(p);
	return tok;
}

static char *
mk(const char *hdr, const char *payload)
{
	return mk_key(SECRET, hdr, payload);
}

/* A standard header and a payload built printf-style. */
static char *
mkp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
mkp(const char *fmt, ...)
{
	char payload[16384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(payload, sizeof(payload), fmt, ap);
	va_end(ap);
	return mk(HDR, payload);
}

/* ---- verifying ------------------------------------------------------- */

static struct jwt_verifier
verifier(void)
{
	struct jwt_verifier v = {
		.secret = (const uint8_t *)SECRET,
		.secret_len = strlen(SECRET),
		.issuer = NULL,
		.audience = NULL,
		.leeway_s = JWT_DEFAULT_LEEWAY,
	};

	return v;
}

static enum jwt_result
check_with(const struct jwt_verifier *v, const char *tok, int64_t now)
{
	struct jwt_claims c;

	return jwt_verify(v, tok, strlen(tok), now, &c);
}

static enum jwt_result
check_at(const char *tok, int64_t now)
{
	struct jwt_verifier v = verifier();

	return check_with(&v, tok, now);
}

static enum jwt_result
check(const char *tok)
{
	return check_at(tok, NOW);
}

/* Verify and free: most tests build a token just to verify it once. */
static enum jwt_result
once_with(const struct jwt_verifier *v, char *tok, int64_t now)
{
	enum jwt_result r = check_with(v, tok, now);

	free(tok);
	return r;
}

static enum jwt_result
once_at(char *tok, int64_t now)
{
	struct jwt_verifier v = verifier();

	return once_with(&v, tok, now);
}

static enum jwt_result
once(char *tok)
{
	return once_at(tok, NOW);
}

/* ---- tests ------------------------------------------------------------ */

static void
test_good_token(void)
{
	struct jwt_verifier v = verifier();
	struct jwt_claims c;
	char *tok = mkp("{\"sub\":\"alice.b-c_9\",\"exp\":%lld,\"iat\":\"ignored\"}",
	    (long long)NOW + 3600);

	memset(&c, 0xa5, sizeof(c));
	CU_ASSERT_EQUAL(jwt_verify(&v, tok, strlen(tok), NOW, &c), JWT_OK);
	CU_ASSERT_STRING_EQUAL(c.sub, "alice.b-c_9");
	CU_ASSERT_EQUAL(c.exp, NOW + 3600);
	free(tok);
}

static void
test_good_token_extra_header(void)
{
	/* Other header fields (typ, kid) and key order do not matter. */
	CU_ASSERT_EQUAL(once(mk("{\"kid\":\"k1\",\"typ\":\"JWT\",\"alg\":\"HS256\"}",
	    "{\"exp\":1700003600,\"sub\":\"bob\"}")), JWT_OK);
	CU_ASSERT_EQUAL(once(mk("{\"alg\":\"HS256\"}",
	    "{\"exp\":1700003600,\"sub\":\"bob\"}")), JWT_OK);
}

static void
test_not_nul_terminated(void)
{
	struct jwt_verifier v = verifier();
	struct jwt_claims c;
	char *tok = mkp("{\"sub\":\"carol\",\"exp\":%lld}", (long long)NOW + 60);
	char *padded = cat3(tok, "", "garbage.after.the.end");

	CU_ASSERT_EQUAL(jwt_verify(&v, padded, strlen(tok), NOW, &c), JWT_OK);
	CU_ASSERT_STRING_EQUAL(c.sub, "carol");
	/* One byte short cuts the signature. */
	CU_ASSERT_NOT_EQUAL(jwt_verify(&v, padded, strlen(tok) - 1, NOW, &c),
	    JWT_OK);
	free(padded);
	free(tok);
}

static void
test_bad_signature_flipped(void)
{
	char *tok = mkp("{\"sub\":\"alice\",\"exp\":%lld}", (long long)NOW + 60);
	char *sig = strrchr(tok, '.') + 1;

	/* A middle character, so the trailing bits stay canonical. */
	sig[10] = sig[10] == 'A' ? 'B' : 'A';
	CU_ASSERT_EQUAL(check(tok), JWT_BAD_SIGNATURE);
	free(tok);
}

static void
test_bad_signature_other_secret(void)
{
	CU_ASSERT_EQUAL(once(mk_key("another secret", HDR,
	    "{\"sub\":\"alice\",\"exp\":1700000060}")), JWT_BAD_SIGNATURE);
	/* The same secret with one byte less. */
	CU_ASSERT_EQUAL(once(mk_key("correct horse battery stapl", HDR,
	    "{\"sub\":\"alice\",\"exp\":1700000060}")), JWT_BAD_SIGNATURE);
}

static void
test_bad_signature_length(void)
{
	char *h = b64s(HDR);
	char *p = b64s("{\"sub\":\"a\",\"exp\":1700000060}");
	char *hp = cat3(h, ".", p);
	char *tok;

	/* A signature of the wrong size (here 3 bytes) is not a signature. */
	tok = cat3(hp, ".", "AAAA");
	CU_ASSERT_EQUAL(check(tok), JWT_BAD_SIGNATURE);
	free(tok);
	free(hp);
	free(p);
	free(h);
}

static void
test_alg_none(void)
{
	char *h = b64s("{\"alg\":\"none\"}");
	char *p = b64s("{\"sub\":\"alice\",\"exp\":1700000060}");
	char *hp = cat3(h, ".", p);
	char *tok = cat3(hp, ".", "");

	/* The classic unsigned token: no third part at all. */
	CU_ASSERT_EQUAL(check(tok), JWT_MALFORMED);
	free(tok);
	/* Some signature bytes: alg is refused before they are looked at. */
	tok = cat3(hp, ".", "AAAA");
	CU_ASSERT_EQUAL(check(tok), JWT_BAD_ALG);
	free(tok);
	/* Even a valid HS256 signature does not save it. */
	CU_ASSERT_EQUAL(once(sign_raw(SECRET, h, p)), JWT_BAD_ALG);
	CU_ASSERT_EQUAL(once(mk("{\"alg\":\"None\"}",
	    "{\"sub\":\"alice\",\"exp\":1700000060}")), JWT_BAD_ALG);
	free(hp);
	free(p);
	free(h);
}

static void
test_alg_hs512(void)
{
	CU_ASSERT_EQUAL(once(mk("{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
	    "{\"sub\":\"alice\",\"exp\":1700000060}")), JWT_BAD_ALG);
	CU_ASSERT_EQUAL(once(mk("{\"alg\":\"RS256\"}",
	    "{\"sub\":\"alice\",\"exp\":1700000060}")), JWT_BAD_ALG);
}

static void
test_alg_wrong_case(void)
{
	const char *hdrs[] = {
		"{\"alg\":\"hs256\"}", "{\"alg\":\"Hs256\"}", "{\"alg\":\"HS256 \"}",
		"{\"alg\":\"HS2560\"}", "{\"alg\":\"HS25\"}", "{\"alg\":\"\"}",
		"{\"alg\":256}", "{\"alg\":[\"HS256\"]}", "{\"alg\":null}",
		"{\"ALG\":\"HS256\"}",
	};

	for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
		CU_ASSERT_EQUAL(once(mk(hdrs[i],
		    "{\"sub\":\"alice\",\"exp\":1700000060}")), JWT_BAD_ALG);
}

static void
test_alg_missing(void)
{
	CU_ASSERT_EQUAL(once(mk("{\"typ\":\"JWT\"}",
	    "{\"sub\":\"alice\",\"exp\":1700000060}")), JWT_BAD_ALG);
	CU_ASSERT_EQUAL(once(mk("{}",
	    "{\"sub\":\"alice\",\"exp\":1700000060}")), JWT_BAD_ALG);
}

static void
test_crit_header(void)
{
	CU_ASSERT_EQUAL(once(mk("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}",
	    "{\"sub\":\"alice\",\"exp\":1700000060}")), JWT_MALFORMED);
}

static void
test_expired(void)
{
	struct jwt_verifier v = verifier();
	char *tok = mkp("{\"sub\":\"alice\",\"exp\":%lld}", (long long)NOW);

	CU_ASSERT_EQUAL(check_at(tok, NOW), JWT_OK);
	CU_ASSERT_EQUAL(check_at(tok, NOW + 1), JWT_OK);            /* leeway */
	CU_ASSERT_EQUAL(check_at(tok, NOW + 60), JWT_OK);
	CU_ASSERT_EQUAL(check_at(tok, NOW + 61), JWT_EXPIRED);
	CU_ASSERT_EQUAL(check_at(tok, INT64_MAX), JWT_EXPIRED);
	v.leeway_s = 0;
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW), JWT_OK);
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW + 1), JWT_EXPIRED);
	/* A negative leeway counts as none. */
	v.leeway_s = -100;
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW), JWT_OK);
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW + 1), JWT_EXPIRED);
	free(tok);
}

static void
test_expired_extremes(void)
{
	struct jwt_verifier v = verifier();

	/* exp + leeway must not wrap into the past, nor now - exp. */
	v.leeway_s = INT64_MAX;
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":0}"),
	    INT64_MAX), JWT_OK);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":-1}"),
	    INT64_MAX), JWT_EXPIRED);
	/* Nor nbf - leeway wrap into the future. */
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"nbf\":%lld}", (long long)INT64_MIN)), JWT_OK);
	CU_ASSERT_EQUAL(once_at(mkp("{\"sub\":\"a\",\"exp\":%lld}",
	    (long long)INT64_MAX), NOW), JWT_OK);
	CU_ASSERT_EQUAL(once_at(mkp("{\"sub\":\"a\",\"exp\":%lld}",
	    (long long)INT64_MIN), INT64_MAX), JWT_EXPIRED);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"a\",\"exp\":1e300}")), JWT_OK);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"a\",\"exp\":-1e300}")), JWT_EXPIRED);
	/* Beyond json_int_t: the parser refuses the payload. */
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"a\",\"exp\":99999999999999999999}")),
	    JWT_MALFORMED);
}

static void
test_exp_real(void)
{
	struct jwt_verifier v = verifier();
	struct jwt_claims c;
	char *tok = mkp("{\"sub\":\"alice\",\"exp\":1700000000.5}");

	v.leeway_s = 0;
	CU_ASSERT_EQUAL(jwt_verify(&v, tok, strlen(tok), NOW, &c), JWT_OK);
	CU_ASSERT_EQUAL(c.exp, NOW);
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW + 1), JWT_EXPIRED);
	free(tok);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"alice\",\"exp\":1.6e9}")),
	    JWT_EXPIRED);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"alice\",\"exp\":1.8e9}")), JWT_OK);
}

static void
test_exp_missing(void)
{
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"alice\"}")), JWT_MISSING_EXP);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"alice\",\"exp\":null}")),
	    JWT_MISSING_EXP);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"alice\",\"EXP\":1800000000}")),
	    JWT_MISSING_EXP);
}

static void
test_exp_string(void)
{
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"alice\",\"exp\":\"1800000000\"}")),
	    JWT_MISSING_EXP);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"alice\",\"exp\":true}")),
	    JWT_MISSING_EXP);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"alice\",\"exp\":[1800000000]}")),
	    JWT_MISSING_EXP);
}

static void
test_nbf(void)
{
	struct jwt_verifier v = verifier();
	char *tok = mkp("{\"sub\":\"alice\",\"exp\":%lld,\"nbf\":%lld}",
	    (long long)NOW + 3600, (long long)NOW + 100);

	CU_ASSERT_EQUAL(check_at(tok, NOW), JWT_NOT_YET_VALID);
	CU_ASSERT_EQUAL(check_at(tok, NOW + 39), JWT_NOT_YET_VALID);
	CU_ASSERT_EQUAL(check_at(tok, NOW + 40), JWT_OK);  /* within leeway */
	CU_ASSERT_EQUAL(check_at(tok, NOW + 100), JWT_OK);
	CU_ASSERT_EQUAL(check_at(tok, NOW + 3600), JWT_OK);
	CU_ASSERT_EQUAL(check_at(tok, INT64_MIN), JWT_NOT_YET_VALID);
	v.leeway_s = 0;
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW + 99), JWT_NOT_YET_VALID);
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW + 100), JWT_OK);
	free(tok);
	/* A fractional nbf is not reached until the next whole second. */
	tok = mkp("{\"sub\":\"alice\",\"exp\":1800000000,\"nbf\":1700000000.5}");
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW), JWT_NOT_YET_VALID);
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW + 1), JWT_OK);
	free(tok);
}

static void
test_nbf_not_number(void)
{
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"alice\",\"exp\":1800000000,"
	    "\"nbf\":\"1600000000\"}")), JWT_MALFORMED);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"alice\",\"exp\":1800000000,"
	    "\"nbf\":null}")), JWT_MALFORMED);
}

static void
test_sub_missing(void)
{
	CU_ASSERT_EQUAL(once(mkp("{\"exp\":1800000000}")), JWT_BAD_SUB);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":null,\"exp\":1800000000}")),
	    JWT_BAD_SUB);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":42,\"exp\":1800000000}")),
	    JWT_BAD_SUB);
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"\",\"exp\":1800000000}")),
	    JWT_BAD_SUB);
}

static void
test_sub_bad_char(void)
{
	const char *subs[] = {
		"al ice", "al/ice", "alice!", "al:ice", "al\\u00e9ce", "\\u00e9",
		"alice\\n", "a+b", "dm:a:b",
	};

	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"%s\",\"exp\":1800000000}",
		    subs[i])), JWT_BAD_SUB);
	/* An escaped NUL is refused by the JSON parser itself. */
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"al\\u0000ice\",\"exp\":1800000000}")),
	    JWT_MALFORMED);
}

static void
test_sub_length(void)
{
	struct jwt_verifier v = verifier();
	struct jwt_claims c;
	char name[NAMES_USER_MAX + 2], *tok;

	memset(name, 'x', sizeof(name) - 1);
	name[NAMES_USER_MAX + 1] = '\0';
	CU_ASSERT_EQUAL(once(mkp("{\"sub\":\"%s\",\"exp\":1800000000}", name)),
	    JWT_BAD_SUB);
	name[NAMES_USER_MAX] = '\0';
	tok = mkp("{\"sub\":\"%s\",\"exp\":1800000000}", name);
	CU_ASSERT_EQUAL(jwt_verify(&v, tok, strlen(tok), NOW, &c), JWT_OK);
	CU_ASSERT_STRING_EQUAL(c.sub, name);
	free(tok);
}

static void
test_base64_bad_char(void)
{
	const char bad[] = { '+', '/', '*', '=', ' ', '\n', '\0', '\x80' };
	struct jwt_verifier v = verifier();
	char *tok, *at[3];
	size_t len;

	for (size_t i = 0; i < sizeof(bad); i++) {
		for (int part = 0; part < 3; part++) {
			tok = mkp("{\"sub\":\"alice\",\"exp\":1800000000}");
			len = strlen(tok);
			at[0] = tok;
			at[1] = strchr(tok, '.') + 1;
			at[2] = strrchr(tok, '.') + 1;
			at[part][3] = bad[i];
			CU_ASSERT_EQUAL(jwt_verify(&v, tok, len, NOW, NULL),
			    JWT_MALFORMED);
			free(tok);
		}
	}
}

static void
test_base64_padding(void)
{
	/* 31-byte payload: base64 "needs" padding, base64url must not have it. */
	const char *payload = "{\"sub\":\"bobo\",\"exp\":1800000000}";
	char *h = b64s(HDR), *p = b64s(payload);
	char *padded = cat3(p, "", "==");
	char *tok;

	CU_ASSERT_EQUAL(strlen(payload) % 3, 1);
	CU_ASSERT_EQUAL(once(sign_raw(SECRET, h, p)), JWT_OK);
	/* Signed over the padded form too, so only the padding is at fault. */
	CU_ASSERT_EQUAL(once(sign_raw(SECRET, h, padded)), JWT_MALFORMED);
	free(padded);
	padded = cat3(p, "", "=");
	CU_ASSERT_EQUAL(once(sign_raw(SECRET, h, padded)), JWT_MALFORMED);
	/* A padded signature. */
	tok = sign_raw(SECRET, h, p);
	free(padded);
	padded = cat3(tok, "", "=");
	CU_ASSERT_EQUAL(check(padded), JWT_MALFORMED);
	free(tok);
	free(padded);
	free(p);
	free(h);
}

static void
test_base64_length(void)
{
	char *h = b64s(HDR), *p, *hp, *tok;

	/* 5 characters cannot be base64url of anything. */
	CU_ASSERT_EQUAL(once(sign_raw(SECRET, h, "eyJhb")), JWT_MALFORMED);
	CU_ASSERT_EQUAL(once(sign_raw(SECRET, "e", "eyJh")), JWT_MALFORMED);
	/* Signature 43 + 2 characters: 45 % 4 == 1, no byte string. */
	p = b64s("{\"sub\":\"a\",\"exp\":1800000000}");
	tok = sign_raw(SECRET, h, p);
	hp = cat3(tok, "", "AA");
	CU_ASSERT_EQUAL(check(hp), JWT_MALFORMED);
	free(hp);
	/* 43 + 1 decodes, to 33 bytes: the wrong size for HMAC-SHA256. */
	hp = cat3(tok, "", "A");
	CU_ASSERT_EQUAL(check(hp), JWT_BAD_SIGNATURE);
	free(hp);
	free(tok);
	free(p);
	free(h);
}

static void
test_base64_trailing_bits(void)
{
	/* "{}" is e30 in canonical form; e31 spells the same bytes plus 01. */
	const char *payload = "{\"sub\":\"bobo\",\"exp\":1800000000}";
	char *h = b64s(HDR), *p = b64s(payload);
	size_t n = strlen(p);
	char *tok;

	CU_ASSERT_EQUAL(n % 4, 2);             /* 4 leftover bits */
	p[n - 1] = b64_xor(p[n - 1], 1);
	CU_ASSERT_EQUAL(once(sign_raw(SECRET, h, p)), JWT_MALFORMED);
	free(p);
	/* The signature: 43 characters, 2 leftover bits. */
	p = b64s(payload);
	tok = sign_raw(SECRET, h, p);
	n = strlen(tok);
	tok[n - 1] = b64_xor(tok[n - 1], 2);
	CU_ASSERT_EQUAL(check(tok), JWT_MALFORMED);
	free(tok);
	free(p);
	free(h);
}

static void
test_parts_count(void)
{
	char *good = mkp("{\"sub\":\"alice\",\"exp\":1800000000}");
	char *two = xstrndup(good, (size_t)(strrchr(good, '.') - good));
	char *four = cat3(good, ".", "AAAA");
	char *trail = cat3(good, ".", "");
	char *one = xstrndup(good, (size_t)(strchr(good, '.') - good));
	char *lead = cat3("", ".", good);
	char *mid = xstrdup(good);

	CU_ASSERT_EQUAL(check(good), JWT_OK);
	CU_ASSERT_EQUAL(check(two), JWT_MALFORMED);
	CU_ASSERT_EQUAL(check(four), JWT_MALFORMED);
	CU_ASSERT_EQUAL(check(trail), JWT_MALFORMED);
	CU_ASSERT_EQUAL(check(one), JWT_MALFORMED);
	CU_ASSERT_EQUAL(check(lead), JWT_MALFORMED);
	CU_ASSERT_EQUAL(check(""), JWT_MALFORMED);
	CU_ASSERT_EQUAL(check("."), JWT_MALFORMED);
	CU_ASSERT_EQUAL(check(".."), JWT_MALFORMED);
	CU_ASSERT_EQUAL(check("..."), JWT_MALFORMED);
	/* Empty payload: header..signature */
	memmove(strchr(mid, '.') + 1, strrchr(mid, '.'),
	    strlen(strrchr(mid, '.')) + 1);
	CU_ASSERT_EQUAL(check(mid), JWT_MALFORMED);
	free(mid);
	free(lead);
	free(one);
	free(trail);
	free(four);
	free(two);
	free(good);
}

static void
test_header_not_json(void)
{
	const char *hdrs[] = {
		"not json", "{\"alg\":\"HS256\"", "[\"HS256\"]", "\"HS256\"",
		"{\"alg\":\"HS256\"} x", "{\"alg\":\"HS256\",\"alg\":\"HS256\"}",
		"{\"alg\":\"none\",\"alg\":\"HS256\"}",
	};

	for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++)
		CU_ASSERT_EQUAL(once(mk(hdrs[i],
		    "{\"sub\":\"alice\",\"exp\":1800000000}")), JWT_MALFORMED);
}

static void
test_payload_not_object(void)
{
	const char *payloads[] = {
		"[\"alice\",1800000000]", "\"alice\"", "1800000000", "null",
		"not json", "{\"sub\":\"alice\",\"exp\":1800000000",
		"{\"sub\":\"alice\",\"exp\":1800000000}{}",
		"{\"sub\":\"eve\",\"sub\":\"alice\",\"exp\":1800000000}",
	};

	for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++)
		CU_ASSERT_EQUAL(once(mk(HDR, payloads[i])), JWT_MALFORMED);
}

static void
test_issuer(void)
{
	struct jwt_verifier v = verifier();

	/* Not required: any iss, or none, is fine. */
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"iss\":\"whoever\"}"), NOW), JWT_OK);
	v.issuer = "https://auth.example";
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"iss\":\"https://auth.example\"}"), NOW), JWT_OK);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000}"),
	    NOW), JWT_BAD_ISSUER);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"iss\":\"https://evil.example\"}"), NOW), JWT_BAD_ISSUER);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"iss\":\"https://auth.example/\"}"), NOW), JWT_BAD_ISSUER);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"iss\":\"https://auth.exampl\"}"), NOW), JWT_BAD_ISSUER);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"iss\":[\"https://auth.example\"]}"), NOW), JWT_BAD_ISSUER);
}

static void
test_audience_string(void)
{
	struct jwt_verifier v = verifier();

	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":42}"), NOW), JWT_OK);     /* not required */
	v.audience = "parley";
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":\"parley\"}"), NOW), JWT_OK);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":\"parleyd\"}"), NOW), JWT_BAD_AUDIENCE);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":\"Parley\"}"), NOW), JWT_BAD_AUDIENCE);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000}"),
	    NOW), JWT_BAD_AUDIENCE);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":null}"), NOW), JWT_BAD_AUDIENCE);
}

static void
test_audience_array(void)
{
	struct jwt_verifier v = verifier();

	v.audience = "parley";
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":[\"parley\"]}"), NOW), JWT_OK);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":[\"other\",7,\"parley\"]}"), NOW), JWT_OK);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":[\"other\",\"more\"]}"), NOW), JWT_BAD_AUDIENCE);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":[]}"), NOW), JWT_BAD_AUDIENCE);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":[[\"parley\"]]}"), NOW), JWT_BAD_AUDIENCE);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"aud\":{\"parley\":1}}"), NOW), JWT_BAD_AUDIENCE);
}

static void
test_check_order(void)
{
	struct jwt_verifier v = verifier();

	/* Several faults at once: the earliest check in jwt.c's order wins. */
	v.issuer = "iss";
	v.audience = "aud";
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a b\",\"exp\":1,"
	    "\"nbf\":1900000000}"), NOW), JWT_EXPIRED);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a b\","
	    "\"nbf\":1900000000}"), NOW), JWT_MISSING_EXP);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a b\",\"exp\":1800000000,"
	    "\"nbf\":1900000000}"), NOW), JWT_NOT_YET_VALID);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a b\",\"exp\":1800000000}"),
	    NOW), JWT_BAD_SUB);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000}"),
	    NOW), JWT_BAD_ISSUER);
	CU_ASSERT_EQUAL(once_with(&v, mkp("{\"sub\":\"a\",\"exp\":1800000000,"
	    "\"iss\":\"iss\"}"), NOW), JWT_BAD_AUDIENCE);
	/* A bad signature hides a bad payload; a bad alg hides both. */
	CU_ASSERT_EQUAL(once(mk_key("other", HDR, "[]")), JWT_BAD_SIGNATURE);
	CU_ASSERT_EQUAL(once(mk_key("other", "{\"alg\":\"none\"}", "[]")),
	    JWT_BAD_ALG);
}

static void
test_no_secret(void)
{
	struct jwt_verifier v = verifier();
	char *signed_empty, *tok = mkp("{\"sub\":\"alice\",\"exp\":1800000000}");

	CU_ASSERT_EQUAL(check_with(&v, tok, NOW), JWT_OK);
	v.secret = NULL;
	v.secret_len = 0;
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW), JWT_NO_SECRET);
	CU_ASSERT_EQUAL(check_with(&v, "garbage", NOW), JWT_NO_SECRET);
	v.secret = (const uint8_t *)"";
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW), JWT_NO_SECRET);
	v.secret = (const uint8_t *)SECRET;    /* a pointer, but no bytes */
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW), JWT_NO_SECRET);
	free(tok);
	/* A token signed with the empty key is still refused. */
	tok = mk_key("", HDR, "{\"sub\":\"alice\",\"exp\":1800000000}");
	CU_ASSERT_EQUAL(check_with(&v, tok, NOW), JWT_NO_SECRET);
	/* jwt_sign can make one (tests need it); HMAC takes empty keys. */
	signed_empty = jwt_sign(NULL, 0, "{\"sub\":\"alice\",\"exp\":1800000000}");
	CU_ASSERT_STRING_EQUAL(signed_empty, tok);
	free(signed_empty);
	free(tok);
}

static void
test_too_long(void)
{
	char *pad = xmalloc(JWT_MAX_LEN + 1), *tok, *last_ok = NULL;
	size_t n;

	/* Grow a filler claim until the token crosses JWT_MAX_LEN. */
	for (n = JWT_MAX_LEN * 3 / 4 - 200; ; n++) {
		memset(pad, 'x', n);
		pad[n] = '\0';
		tok = mkp("{\"sub\":\"alice\",\"exp\":1800000000,\"x\":\"%s\"}", pad);
		if (strlen(tok) > JWT_MAX_LEN)
			break;
		free(last_ok);
		last_ok = tok;
	}
	CU_ASSERT_PTR_NOT_NULL_FATAL(last_ok);
	CU_ASSERT(strlen(last_ok) >= JWT_MAX_LEN - 3);
	CU_ASSERT_EQUAL(check(last_ok), JWT_OK);
	CU_ASSERT_EQUAL(check(tok), JWT_MALFORMED);
	free(tok);
	free(last_ok);
	free(pad);
}

static void
test_sign_user_roundtrip(void)
{
	const uint8_t *key = (const uint8_t *)SECRET;
	struct jwt_verifier v = verifier();
	struct jwt_claims c;
	char *tok = jwt_sign_user(key, strlen(SECRET), "Zed_01.x-y", NOW + 30);
	char *hdr = b64s(HDR);

	CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
	CU_ASSERT_EQUAL(strncmp(tok, hdr, strlen(hdr)), 0);
	CU_ASSERT_PTR_NULL(strchr(tok, '='));
	CU_ASSERT_EQUAL(jwt_verify(&v, tok, strlen(tok), NOW, &c), JWT_OK);
	CU_ASSERT_STRING_EQUAL(c.sub, "Zed_01.x-y");
	CU_ASSERT_EQUAL(c.exp, NOW + 30);
	CU_ASSERT_EQUAL(check_at(tok, NOW + 91), JWT_EXPIRED);
	free(tok);
	free(hdr);
	/* jwt_sign and a hand-made token agree byte for byte. */
	tok = jwt_sign(key, strlen(SECRET), "{\"sub\":\"q\",\"exp\":5}");
	hdr = mk(HDR, "{\"sub\":\"q\",\"exp\":5}");
	CU_ASSERT_STRING_EQUAL(tok, hdr);
	free(tok);
	free(hdr);
	/* A sub that is not a user name still signs; verify refuses it. */
	tok = jwt_sign_user(key, strlen(SECRET), "no way", NOW + 30);
	CU_ASSERT_EQUAL(check(tok), JWT_BAD_SUB);
	free(tok);
}

static void
test_strerror(void)
{
	for (int r = JWT_OK; r <= JWT_BAD_AUDIENCE; r++) {
		const char *s = jwt_strerror((enum jwt_result)r);

		CU_ASSERT_PTR_NOT_NULL_FATAL(s);
		CU_ASSERT(s[0] != '\0');
		for (const char *p = s; *p; p++)
			CU_ASSERT(!isupper((unsigned char)*p));
	}
	CU_ASSERT_STRING_EQUAL(jwt_strerror(JWT_EXPIRED), "expired");
	CU_ASSERT_STRING_EQUAL(jwt_strerror(JWT_BAD_SIGNATURE), "bad signature");
	CU_ASSERT_STRING_NOT_EQUAL(jwt_strerror(JWT_BAD_SUB),
	    jwt_strerror(JWT_BAD_ISSUER));
}

static const struct unit_test tests[] = {
	{ "good token", test_good_token },
	{ "good token, other header fields", test_good_token_extra_header },
	{ "token not NUL-terminated", test_not_nul_terminated },
	{ "bad signature: flipped char", test_bad_signature_flipped },
	{ "bad signature: other secret", test_bad_signature_other_secret },
	{ "bad signature: wrong length", test_bad_signature_length },
	{ "alg none", test_alg_none },
	{ "alg HS512", test_alg_hs512 },
	{ "alg wrong case and shape", test_alg_wrong_case },
	{ "alg missing", test_alg_missing },
	{ "crit header", test_crit_header },
	{ "expired and leeway", test_expired },
	{ "exp extremes", test_expired_extremes },
	{ "exp as a real", test_exp_real },
	{ "exp missing", test_exp_missing },
	{ "exp not a number", test_exp_string },
	{ "nbf and leeway", test_nbf },
	{ "nbf not a number", test_nbf_not_number },
	{ "sub missing", test_sub_missing },
	{ "sub bad character", test_sub_bad_char },
	{ "sub length", test_sub_length },
	{ "base64url bad character", test_base64_bad_char },
	{ "base64url padding", test_base64_padding },
	{ "base64url impossible length", test_base64_length },
	{ "base64url trailing bits", test_base64_trailing_bits },
	{ "not three parts", test_parts_count },
	{ "header not a JSON object", test_header_not_json },
	{ "payload not a JSON object", test_payload_not_object },
	{ "issuer", test_issuer },
	{ "audience string", test_audience_string },
	{ "audience array", test_audience_array },
	{ "order of checks", test_check_order },
	{ "no secret", test_no_secret },
	{ "longer than JWT_MAX_LEN", test_too_long },
	{ "jwt_sign_user round trip", test_sign_user_roundtrip },
	{ "strerror", test_strerror },
};

int
main(void)
{
	return UNIT_RUN("jwt", tests);
}
