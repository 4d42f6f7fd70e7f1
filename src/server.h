/*
 * server.h - the process: settings, listeners, workers, signals, shutdown.
 *
 * Owner: the main thread creates the server, opens one SO_REUSEPORT
 * listening socket per worker (so bind errors surface before anything
 * starts), starts the workers, runs its own small event loop for signals,
 * and on SIGTERM/SIGINT tells every worker to stop, joins them and frees
 * everything. Fields marked "shared" are read by workers; the only ones
 * written after start are the atomics.
 */
#ifndef PARLEY_SERVER_H
#define PARLEY_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "jwt.h"

struct persist;
struct settings;
struct worker;
struct event_base;

struct server {
	const struct settings *cfg;    /* shared, read-only once workers run */
	unsigned nworkers;
	struct worker **workers;       /* shared: workers read each other's metrics only */
	uint64_t nofile;               /* open-files limit after raising it */
	uint64_t capacity;             /* client connections this process can hold */
	uint64_t max_connections;      /* effective --max-connections (<= capacity) */

	int nconns;                    /* shared atomic: open client connections, all workers */
	int stopping;                  /* shared atomic: set once shutdown starts */
	int64_t started_ms;            /* wall clock at start */

	uint8_t *jwt_secret;           /* NULL: no token verifies */
	size_t jwt_secret_len;
	struct jwt_verifier verifier;  /* shared, read-only */
	char session_prefix[9];        /* shared, read-only: random per run */

	struct event_base *base;       /* main thread: signals only */
	struct persist *persist;       /* --db: the persistence thread, else NULL */
};

/* Descriptors kept back from the open-files limit for listeners, eventfds,
 * epoll, logs, database connections and the accept reserve. */
uint64_t server_reserved_fds(unsigned nworkers);

/*
 * Raise the open-files soft limit to the hard limit, derive the capacity and
 * the effective connection limit, open the listeners. Logs and returns -1 on
 * failure (nothing to clean up but server_free).
 */
int server_init(struct server *srv, const struct settings *cfg);

/* Run until SIGTERM/SIGINT, then drain and join. Returns the exit status. */
int server_run(struct server *srv);

void server_free(struct server *srv);

/* Any thread: 1 once shutdown has started. */
int server_stopping(const struct server *srv);

/* Any thread: 1 when the database (if any) takes writes: /readyz. */
int server_db_ready(const struct server *srv);

#endif
