#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "names.h"
#include "proto.h"

/*
 * libFuzzer target for what a client controls before any room sees it:
 * the request decoder and the token verifier. Beyond "no crash", a request
 * the decoder accepts must satisfy every range the rooms rely on.
 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: invariant failed: %s\n",	\
		    __FILE__, __LINE__, #x);				\
		abort();						\
	}								\
} while (0)

#define MAX_BODY 100

static void
check_accepted(const struct proto_req *r)
{
	CHECK(r->type > PROTO_NONE && r->type < PROTO_TYPE_COUNT);
	CHECK(!r->has_ref || strlen(r->ref) <= PROTO_REF_MAX);
	CHECK(!r->has_id || strlen(r->id) <= PROTO_ID_MAX);
	if (r->type != PROTO_HELLO && r->type != PROTO_PING) {
		CHECK(r->room_len == strlen(r->room));
		CHECK(names_valid_room(r->room, r->room_len));
	}
	if (r->type == PROTO_SEND || r->type == PROTO_EDIT) {
		CHECK(r->body != NULL && r->body_len > 0 && r->body_len <= MAX_BODY);
	}
	if (r->type == PROTO_EDIT || r->type == PROTO_DELETE || r->type == PROTO_REACT)
		CHECK(r->target >= 1);
	if (r->type == PROTO_REACT)
		CHECK(strlen(r->emoji) >= 1 && strlen(r->emoji) <= PROTO_EMOJI_MAX);
	if (r->type == PROTO_READ)
		CHECK(r->seq >= 1);
	if (r->type == PROTO_JOIN && r->has_since)
		CHECK(r->since >= 0);
	if (r->type == PROTO_HISTORY) {
		CHECK(r->limit >= 1 && r->limit <= PROTO_HISTORY_MAX);
		CHECK(!r->has_before || r->before >= 1);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t secret[] = "fuzz-secret";
	struct jwt_verifier v = { secret, sizeof(secret) - 1, "iss", "aud", 60 };
	struct proto_req req;
	struct jwt_claims claims;
	const char *msg = NULL;
	char *copy = malloc(size ? size : 1);

	/* An exact-size copy: ASan sees any read past the end. */
	memcpy(copy, data, size);
	if (proto_decode(copy, size, MAX_BODY, &req, &msg) == PROTO_OK)
		check_accepted(&req);
	else
		CHECK(msg != NULL);
	proto_req_free(&req);
	proto_req_free(&req);
	if (jwt_verify(&v, copy, size, 1800000000, &claims) == JWT_OK)
		CHECK(names_valid_user(claims.sub, strlen(claims.sub)));
	free(copy);
	return 0;
}
