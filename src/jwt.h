/*
 * jwt.h - HS256 JSON Web Tokens (RFC 7519 / RFC 7515 compact form):
 * verification for clients' tokens, signing for tests and the benchmark.
 *
 * Pure functions: no state, callable from any thread. The caller passes the
 * clock so tests can drive it.
 *
 * Verification is strict: the header must be a JSON object whose "alg" is
 * exactly "HS256" ("none", "HS512" and anything else are refused); the
 * signature is checked with HMAC-SHA256 and a constant-time compare before
 * the payload is trusted; "sub" must be a valid user name (names.h); "exp"
 * is required; "nbf" is honoured; "iss" and "aud" must match when the
 * verifier names them ("aud" may be a string or an array of strings).
 */
#ifndef PARLEY_JWT_H
#define PARLEY_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "names.h"

#define JWT_MAX_LEN 8192          /* longer tokens are refused unparsed */
#define JWT_DEFAULT_LEEWAY 60     /* seconds, applied to exp and nbf */

enum jwt_result {
	JWT_OK = 0,
	JWT_NO_SECRET,        /* the server has no secret: no token can be valid */
	JWT_MALFORMED,        /* not three base64url parts, bad base64, bad JSON */
	JWT_BAD_ALG,          /* header alg is not exactly "HS256" */
	JWT_BAD_SIGNATURE,
	JWT_MISSING_EXP,      /* exp absent or not a number */
	JWT_EXPIRED,          /* now > exp + leeway */
	JWT_NOT_YET_VALID,    /* now < nbf - leeway */
	JWT_BAD_SUB,          /* sub absent, not a string, or not a valid user name */
	JWT_BAD_ISSUER,       /* iss required and absent or different */
	JWT_BAD_AUDIENCE,     /* aud required and absent or without a match */
};

struct jwt_verifier {
	const uint8_t *secret;    /* NULL or empty: every token is JWT_NO_SECRET */
	size_t secret_len;
	const char *issuer;       /* NULL: iss not checked */
	const char *audience;     /* NULL: aud not checked */
	int64_t leeway_s;         /* clock leeway for exp and nbf, in seconds */
};

struct jwt_claims {
	char sub[NAMES_USER_MAX + 1];
	int64_t exp;              /* seconds since the epoch */
};

/* Verify token (len bytes, not necessarily NUL-terminated) at now_s. */
enum jwt_result jwt_verify(const struct jwt_verifier *v, const char *token,
    size_t len, int64_t now_s, struct jwt_claims *out);

/* A short lower-case reason for logs and error messages ("expired"). */
const char *jwt_strerror(enum jwt_result r);

/*
 * Sign: header {"alg":"HS256","typ":"JWT"} and the given payload JSON text
 * (used as is). Returns a malloc'd NUL-terminated token.
 */
char *jwt_sign(const uint8_t *secret, size_t secret_len, const char *payload_json);

/* Sign a token for sub expiring at exp (seconds since the epoch). */
char *jwt_sign_user(const uint8_t *secret, size_t secret_len, const char *sub,
    int64_t exp);

#endif
