/*
 * live.h - the settings SIGHUP may change, as immutable snapshots.
 *
 * Owner: the main thread makes a snapshot at start and on every SIGHUP, and
 * never writes one after making it. Each worker holds a reference to the
 * snapshot it uses (worker.live); a WORKER_MSG_RELOAD hands it the new one,
 * and the worker drops its reference to the old. The last reference frees
 * it. So a worker never sees a value change in the middle of a request, and
 * no lock is taken on any path that reads a setting.
 *
 * Keys that need a restart keep their running values in every snapshot:
 * only the keys marked live in settings.c ever differ from the first one.
 */
#ifndef PARLEY_LIVE_H
#define PARLEY_LIVE_H

#include <stddef.h>
#include <stdint.h>

#include "jwt.h"
#include "settings.h"

struct live {
	unsigned refs;                 /* atomic: holders (main thread, workers) */
	struct settings cfg;           /* a deep copy */
	uint64_t max_connections;      /* effective: --max-connections, at most capacity */
	uint8_t *jwt_secret;           /* NULL: no token verifies */
	size_t jwt_secret_len;
	struct jwt_verifier verifier;  /* points into this snapshot */
};

/*
 * Main thread: a snapshot of cfg, reading the JWT secret (file or
 * PARLEY_JWT_SECRET) and capping max-connections at capacity. announce:
 * log a missing secret and a capped limit (at start, not on every reload).
 * Returns it with one reference, or NULL after logging why (an unreadable
 * secret).
 */
struct live *live_new(const struct settings *cfg, uint64_t capacity, int announce);

/* Any thread holding a reference. */
void live_ref(struct live *l);
void live_unref(struct live *l);

#endif
