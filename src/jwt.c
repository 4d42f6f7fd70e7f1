#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#include <openssl/hmac.h>
#endif

#include "jwt.h"
#include "names.h"
#include "xmalloc.h"

#define JWT_SIG_LEN 32                  /* HMAC-SHA256 */
/* No part of a token we accept decodes to more than this. */
#define JWT_DEC_MAX (JWT_MAX_LEN / 4 * 3)

struct jwt_part {
	const char *s;
	size_t len;
};

/* ---- base64url without padding (RFC 7515 section 2) ----------------- */

static int
b64url_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '-')
		return 62;
	if (ch == '_')
		return 63;
	return -1;              /* '=', '+', '/', '.', NUL, anything else */
}

/*
 * Decode len characters into out, which has room for len * 3 / 4 bytes.
 * One spare character (len % 4 == 1) carries no whole byte, and non-zero
 * leftover bits mean a second spelling of the same bytes: both refused, so
 * every accepted token has exactly one encoding.
 */
static int
b64url_decode(const char *s, size_t len, uint8_t *out, size_t *out_len)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n = 0;
	int v;

	for (size_t i = 0; i < len; i++) {
		if ((v = b64url_value((unsigned char)s[i])) < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (bits >= 6 || acc != 0)
		return -1;
	*out_len = n;
	return 0;
}

static size_t
b64url_len(size_t n)
{
	return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* Encode n bytes; out has room for b64url_len(n). Returns chars written. */
static size_t
b64url_encode(const void *in, size_t n, char *out)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const uint8_t *p = in;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		acc = acc << 8 | p[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = abc[(acc >> bits) & 63];
		}
	}
	if (bits > 0)
		out[o++] = abc[(acc << (6 - bits)) & 63];
	return o;
}

/* ---- HMAC ------------------------------------------------------------ */

static int
jwt_hmac(const uint8_t *key, size_t key_len, const char *data, size_t len,
    uint8_t mac[JWT_SIG_LEN])
{
	/* OpenSSL takes a NULL key as "keep the last one": pass a real one. */
	static const uint8_t no_key[1];

	if (key_len == 0)
		key = no_key;
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	size_t mac_len = 0;

	/* EVP_Q_mac, not HMAC(): the latter is deprecated in 3.0 (-Werror). */
	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_len,
	    (const unsigned char *)data, len, mac, JWT_SIG_LEN,
	    &mac_len) == NULL)
		return -1;
#else
	unsigned int mac_len = 0;

	if (key_len > INT32_MAX || HMAC(EVP_sha256(), key, (int)key_len,
	    (const unsigned char *)data, len, mac, &mac_len) == NULL)
		return -1;
#endif
	return mac_len == JWT_SIG_LEN ? 0 : -1;
}

/* ---- verification ---------------------------------------------------- */

/*
 * Exactly three non-empty parts, each of plausible base64url, so nothing
 * later has to wonder about dots, NULs or padding in a part.
 */
static enum jwt_result
jwt_split(const char *token, size_t len, struct jwt_part part[3])
{
	const char *p = token, *end = token + len, *dot;

	if (token == NULL || len > JWT_MAX_LEN)
		return JWT_MALFORMED;
	for (int i = 0; i < 3; i++) {
		dot = memchr(p, '.', (size_t)(end - p));
		if ((i < 2) != (dot != NULL))
			return JWT_MALFORMED;
		part[i].s = p;
		part[i].len = (size_t)((dot ? dot : end) - p);
		if (part[i].len == 0 || part[i].len % 4 == 1)
			return JWT_MALFORMED;
		for (size_t j = 0; j < part[i].len; j++)
			if (b64url_value((unsigned char)p[j]) < 0)
				return JWT_MALFORMED;
		p = dot ? dot + 1 : end;
	}
	return JWT_OK;
}

/* A part decoded and parsed as a JSON object, or NULL. */
static json_t *
jwt_load_object(const struct jwt_part *part)
{
	uint8_t buf[JWT_DEC_MAX];
	json_error_t err;
	json_t *o;
	size_t n;

	if (b64url_decode(part->s, part->len, buf, &n) != 0)
		return NULL;
	/* Duplicate names let one token read differently to two parsers. */
	o = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &err);
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		o = NULL;
	}
	return o;
}

static int
json_string_is(const json_t *j, const char *want)
{
	size_t n = strlen(want);

	return json_is_string(j) && json_string_length(j) == n &&
	    memcmp(json_string_value(j), want, n) == 0;
}

/*
 * The alg decides everything else, and is compared exactly: "none",
 * "HS512" and "hs256" are all someone else's idea of a token. A "crit"
 * header names extensions the recipient must understand; we understand
 * none (RFC 7515 section 4.1.11).
 */
static enum jwt_result
jwt_check_header(const struct jwt_part *part)
{
	enum jwt_result r = JWT_OK;
	json_t *hdr;

	if ((hdr = jwt_load_object(part)) == NULL)
		return JWT_MALFORMED;
	if (!json_string_is(json_object_get(hdr, "alg"), "HS256"))
		r = JWT_BAD_ALG;
	else if (json_object_get(hdr, "crit") != NULL)
		r = JWT_MALFORMED;
	json_decref(hdr);
	return r;
}

/* Before the payload is even decoded: an unsigned payload is not input. */
static enum jwt_result
jwt_check_signature(const struct jwt_verifier *v, const char *token,
    const struct jwt_part part[3])
{
	uint8_t sig[JWT_SIG_LEN], mac[JWT_SIG_LEN];
	size_t n;

	if (part[2].len != b64url_len(JWT_SIG_LEN))
		return JWT_BAD_SIGNATURE;
	if (b64url_decode(part[2].s, part[2].len, sig, &n) != 0)
		return JWT_MALFORMED;
	/* The signing input is the token's own bytes up to the second dot. */
	if (jwt_hmac(v->secret, v->secret_len, token,
	    (size_t)(part[1].s + part[1].len - token), mac) != 0)
		return JWT_BAD_SIGNATURE;
	if (CRYPTO_memcmp(sig, mac, JWT_SIG_LEN) != 0)
		return JWT_BAD_SIGNATURE;
	return JWT_OK;
}

/*
 * A NumericDate as whole seconds. RFC 7519 allows fractions; since now is
 * whole, rounding exp down and nbf up (round_up) keeps the comparisons
 * exact. Reals beyond int64 saturate: 1e300 simply never expires.
 */
static int
jwt_numeric(const json_t *j, int round_up, int64_t *out)
{
	double d;
	int64_t i;

	if (json_is_integer(j)) {
		*out = (int64_t)json_integer_value(j);
		return 0;
	}
	if (!json_is_real(j))
		return -1;
	d = json_real_value(j);
	if (d >= 0x1p63)
		i = INT64_MAX;
	else if (d < -0x1p63)
		i = INT64_MIN;
	else {
		i = (int64_t)d;         /* toward zero, then fix direction */
		if (!round_up && (double)i > d)
			i--;
		else if (round_up && (double)i < d)
			i++;
	}
	*out = i;
	return 0;
}

/* a > b + leeway, without the sum overflowing (leeway >= 0). */
static int
jwt_later_than(int64_t a, int64_t b, int64_t leeway)
{
	/* a > b makes the unsigned difference exact. */
	return a > b && (uint64_t)a - (uint64_t)b > (uint64_t)leeway;
}

/*
 * exp is required; nbf only counts when present, but present and not a
 * number is a broken token (JWT_MALFORMED), not one to accept.
 */
static enum jwt_result
jwt_check_times(const struct jwt_verifier *v, const json_t *claims,
    int64_t now, int64_t *exp)
{
	int64_t leeway = v->leeway_s > 0 ? v->leeway_s : 0;
	const json_t *j;
	int64_t nbf;

	if (jwt_numeric(json_object_get(claims, "exp"), 0, exp) != 0)
		return JWT_MISSING_EXP;
	if (jwt_later_than(now, *exp, leeway))
		return JWT_EXPIRED;
	if ((j = json_object_get(claims, "nbf")) == NULL)
		return JWT_OK;
	if (jwt_numeric(j, 1, &nbf) != 0)
		return JWT_MALFORMED;
	if (jwt_later_than(nbf, now, leeway))
		return JWT_NOT_YET_VALID;
	return JWT_OK;
}

/* aud is one string or an array of them (RFC 7519 section 4.1.3). */
static int
jwt_audience_has(const json_t *aud, const char *want)
{
	size_t i;
	json_t *e;

	if (json_is_string(aud))
		return json_string_is(aud, want);
	if (!json_is_array(aud))
		return 0;
	json_array_foreach(aud, i, e)
		if (json_string_is(e, want))
			return 1;
	return 0;
}

static enum jwt_result
jwt_check_claims(const struct jwt_verifier *v, const json_t *claims,
    int64_t now, struct jwt_claims *out)
{
	const json_t *sub;
	enum jwt_result r;
	int64_t exp;
	size_t len;

	if ((r = jwt_check_times(v, claims, now, &exp)) != JWT_OK)
		return r;
	sub = json_object_get(claims, "sub");
	if (!json_is_string(sub) ||
	    !names_valid_user(json_string_value(sub), json_string_length(sub)))
		return JWT_BAD_SUB;
	if (v->issuer != NULL &&
	    !json_string_is(json_object_get(claims, "iss"), v->issuer))
		return JWT_BAD_ISSUER;
	if (v->audience != NULL &&
	    !jwt_audience_has(json_object_get(claims, "aud"), v->audience))
		return JWT_BAD_AUDIENCE;
	if (out != NULL) {
		/* names_valid_user bounded the length by NAMES_USER_MAX. */
		len = json_string_length(sub);
		memcpy(out->sub, json_string_value(sub), len);
		out->sub[len] = '\0';
		out->exp = exp;
	}
	return JWT_OK;
}

/*
 * Order: secret, shape, header, alg, signature, payload, exp, nbf, sub,
 * iss, aud. No secret comes first, before the token is looked at: jwt.h
 * promises JWT_NO_SECRET for every token then, and it names the real cause
 * (the server's configuration) rather than some flaw of the token.
 */
enum jwt_result
jwt_verify(const struct jwt_verifier *v, const char *token, size_t len,
    int64_t now_s, struct jwt_claims *out)
{
	struct jwt_part part[3];
	enum jwt_result r;
	json_t *claims;

	if (v->secret == NULL || v->secret_len == 0)
		return JWT_NO_SECRET;
	if ((r = jwt_split(token, len, part)) != JWT_OK)
		return r;
	if ((r = jwt_check_header(&part[0])) != JWT_OK)
		return r;
	if ((r = jwt_check_signature(v, token, part)) != JWT_OK)
		return r;
	if ((claims = jwt_load_object(&part[1])) == NULL)
		return JWT_MALFORMED;
	r = jwt_check_claims(v, claims, now_s, out);
	json_decref(claims);
	return r;
}

const char *
jwt_strerror(enum jwt_result r)
{
	switch (r) {
	case JWT_OK:
		return "ok";
	case JWT_NO_SECRET:
		return "no secret configured";
	case JWT_MALFORMED:
		return "malformed token";
	case JWT_BAD_ALG:
		return "unsupported alg";
	case JWT_BAD_SIGNATURE:
		return "bad signature";
	case JWT_MISSING_EXP:
		return "missing exp";
	case JWT_EXPIRED:
		return "expired";
	case JWT_NOT_YET_VALID:
		return "not yet valid";
	case JWT_BAD_SUB:
		return "bad sub";
	case JWT_BAD_ISSUER:
		return "bad issuer";
	case JWT_BAD_AUDIENCE:
		return "bad audience";
	}
	return "unknown error";
}

/* ---- signing (tests, benchmark) -------------------------------------- */

/* Like xmalloc: a signer that cannot sign has nothing useful to return. */
static _Noreturn void
jwt_die(const char *why)
{
	fprintf(stderr, "parleyd: fatal: %s\n", why);
	abort();
}

char *
jwt_sign(const uint8_t *secret, size_t secret_len, const char *payload_json)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	size_t plen = strlen(payload_json);
	size_t signed_len =
	    b64url_len(sizeof(header) - 1) + 1 + b64url_len(plen);
	char *tok = xmalloc(signed_len + 1 + b64url_len(JWT_SIG_LEN) + 1);
	uint8_t mac[JWT_SIG_LEN];
	char *p = tok;

	p += b64url_encode(header, sizeof(header) - 1, p);
	*p++ = '.';
	p += b64url_encode(payload_json, plen, p);
	if (jwt_hmac(secret, secret_len, tok, signed_len, mac) != 0)
		jwt_die("jwt_sign: HMAC-SHA256 failed");
	*p++ = '.';
	p += b64url_encode(mac, JWT_SIG_LEN, p);
	*p = '\0';
	return tok;
}

char *
jwt_sign_user(const uint8_t *secret, size_t secret_len, const char *sub,
    int64_t exp)
{
	json_t *claims;
	char *payload, *tok;

	/* Only a sub that is not UTF-8 fails here: JSON cannot carry it. */
	claims = json_pack("{s:s, s:I}", "sub", sub, "exp", (json_int_t)exp);
	if (claims == NULL ||
	    (payload = json_dumps(claims, JSON_COMPACT)) == NULL)
		jwt_die("jwt_sign_user: cannot encode the claims");
	json_decref(claims);
	tok = jwt_sign(secret, secret_len, payload);
	free(payload);
	return tok;
}
