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
	struct live *live;             /* main thread: the newest settings snapshot
	                                  (workers hold their own: worker.live) */
	int argc;                      /* main thread: the command line, which */
	char **argv;                   /* SIGHUP parses again with the file */

	int nconns;                    /* shared atomic: open client connections, all workers */
	int nconns_peak;               /* shared atomic: most nconns ever seen, raised by
	                                  CAS at accept (metrics_raise_peak), /metrics */
	int stopping;                  /* shared atomic: set once shutdown starts */
	int64_t started_ms;            /* wall clock at start */

	char session_prefix[9];        /* shared, read-only: random per run */

	struct event_base *base;       /* main thread: signals and systemd */
	struct event *notify_ev;       /* main thread: READY, STATUS, WATCHDOG timer */
	int ready_sent;                /* main thread: READY=1 went to systemd */
	uint64_t ping_seq;             /* main thread: last liveness ping posted */
	int64_t ping_ms;               /* main thread, monotonic ms: when it went */
	int64_t alive_ms;              /* main thread: when all workers last answered */
	int stall_logged;              /* main thread: worker_stalled said */
	int64_t watchdog_ms;           /* main thread: last WATCHDOG=1 */
	int64_t status_ms;             /* main thread: last STATUS= */
	struct persist *persist;       /* --db: the persistence thread, else NULL */
};

/* Descriptors kept back from the open-files limit for listeners, eventfds,
 * epoll, logs, database connections and the accept reserve. */
uint64_t server_reserved_fds(unsigned nworkers);

/*
 * Raise the open-files soft limit to the hard limit, derive the capacity and
 * the first settings snapshot, open the listeners. argc and argv are kept
 * for SIGHUP, which parses them again along with the config file. Logs and returns -1 on
 * failure (nothing to clean up but server_free).
 */
int server_init(struct server *srv, const struct settings *cfg, int argc,
    char **argv);

/* Run until SIGTERM/SIGINT, then drain and join. Returns the exit status. */
int server_run(struct server *srv);

void server_free(struct server *srv);

/* Any thread: 1 once shutdown has started. */
int server_stopping(const struct server *srv);

/* Any thread: 1 when the database (if any) takes writes: /readyz. */
int server_db_ready(const struct server *srv);

#endif
