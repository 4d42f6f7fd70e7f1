/*
 * ratelimit.h - token buckets for per-connection request limits.
 *
 * Owner: the connection's worker; no locking. Time is the caller's
 * millisecond clock (the worker clock), so tests can drive it.
 */
#ifndef PARLEY_RATELIMIT_H
#define PARLEY_RATELIMIT_H

#include <stdint.h>

struct rate_bucket {
	float tokens;
	uint32_t last_ms;
};

/* A full bucket. */
void rate_init(struct rate_bucket *b, uint32_t burst, uint32_t now_ms);

/*
 * Take one token at rate per second and burst at most. Returns 0 when
 * allowed, else the milliseconds until a token will be there (at least 1).
 * rate 0 means unlimited.
 */
uint32_t rate_take(struct rate_bucket *b, uint32_t rate, uint32_t burst,
    uint32_t now_ms);

#endif
