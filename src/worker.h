/*
 * worker.h - one I/O thread: an event_base, a listening socket, a mailbox,
 * and every connection it accepted (a connection never changes worker).
 *
 * Owner: everything in struct worker belongs to its thread, except
 *   - mb, which any thread may push to (worker_post);
 *   - pong, which the main thread reads;
 *   - metrics, which other threads read (never write) for /metrics.
 * Functions here are called on the worker's own thread unless noted.
 */
#ifndef PARLEY_WORKER_H
#define PARLEY_WORKER_H

#include <pthread.h>
#include <stdint.h>

#include "htab.h"
#include "mailbox.h"
#include "metrics.h"
#include "room.h"

struct server;
struct conn;
struct room;
struct room_msg;
struct event;
struct event_base;
struct db_reader;
struct live;

/* Messages a worker accepts in its mailbox. */
enum worker_msg_kind {
	WORKER_MSG_SHUTDOWN = 1,  /* stop accepting, close clients with 1001, exit */
	WORKER_MSG_ROOM_RUN,      /* a room homed here has mail (struct room.run_msg) */
	WORKER_MSG_ROOM_OPEN,     /* a struct room_msg JOIN for a room homed here, by name */
	WORKER_MSG_COMMITTED,     /* struct persist_committed for a room homed here */
	WORKER_MSG_RELOAD,        /* struct worker_reload_msg: new settings (SIGHUP) */
	WORKER_MSG_PING,          /* struct worker_ping_msg: the watchdog's liveness check */
	/* ROOM_OUT_DELIVER, ROOM_OUT_MEMBER (room.h): what rooms send members */
};

/* The snapshot to use from now on; the worker takes over the reference. */
struct worker_reload_msg {
	struct mailbox_msg base;
	struct live *live;
};

/* Answered by storing seq in worker.pong. */
struct worker_ping_msg {
	struct mailbox_msg base;
	uint64_t seq;
};

#define ROOM_BUDGET 256           /* messages a room handles per run */
#define ROOM_TICK_MS 500          /* typing expiry and idle checks */

/*
 * Timer wheel of 100 ms ticks: fine enough that a deadline is met within a
 * tenth of a second (a heartbeat of 1 s must not be judged a second late),
 * 1024 slots cover 2 x the default heartbeat without wrapping; longer
 * deadlines come round again and are re-filed.
 */
#define WHEEL_TICK_MS 100
#define WHEEL_SLOTS 1024

struct worker {
	struct metrics metrics;        /* owner writes, others read: first, aligned */

	unsigned id;
	struct server *srv;
	struct live *live;             /* the settings SIGHUP may change (live.h):
	                                  this worker's reference, swapped by
	                                  WORKER_MSG_RELOAD between events */
	uint64_t pong;                 /* shared atomic: last ping answered (the
	                                  main thread reads it for the watchdog) */
	pthread_t thread;
	int started;
	struct event_base *base;

	int listen_fd;                 /* this worker's SO_REUSEPORT socket, -1 once closed */
	struct event *listen_ev;
	int reserve_fd;                /* spare descriptor released to shed load on EMFILE */

	struct mailbox mb;             /* any thread pushes; the worker takes */
	struct event *mb_ev;
	struct event *flush_ev;        /* end-of-iteration: coalesced writes, async closes */
	struct event *tick_ev;         /* one-second timer driving the wheel */
	struct event *stop_ev;         /* shutdown grace period */

	struct conn *conns;            /* every connection, doubly linked */
	struct conn *flush_head;       /* connections with output to write */
	struct conn *close_head;       /* connections to close with a code, async */

	struct conn *wheel[WHEEL_SLOTS];
	uint32_t wheel_done;           /* last tick whose slot was processed */
	int64_t mono_origin_ms;        /* worker clock zero (CLOCK_MONOTONIC_COARSE) */

	/* rooms homed here */
	struct htab rooms;             /* the registry shard: struct room by name */
	struct room_env room_env;      /* what these rooms call back into */
	struct room *ready_head, *ready_tail; /* rooms to run */
	struct event *run_ev;          /* runs the ready rooms after this iteration's I/O */
	struct room *timed_head;       /* rooms needing room_tick */
	uint64_t last_room_tick_ms;
	uint64_t sessions;             /* sessions started here (for their ids) */
	struct db_reader *reader;      /* --db: this worker's non-blocking reads */
	int waiting_logged;            /* stopping: "waiting for the database" said */

	uint8_t *rbuf;                 /* read scratch shared by all its connections */
	size_t rbuf_size;
	int stopping;
};

/* Main thread: create the worker around an already listening socket. */
struct worker *worker_new(struct server *srv, unsigned id, int listen_fd);
/* Main thread: start its thread. Returns 0 or an errno value. */
int worker_start(struct worker *w);
/* Main thread: wait for its thread to end (no-op if it never started). */
void worker_join(struct worker *w);
/* Main thread, after every worker is joined: drop its connections (their
 * sessions leave their rooms). */
void worker_close_conns(struct worker *w);
/* Main thread, after every worker is joined (they read each other's
 * metrics): free everything it owns. */
void worker_free(struct worker *w);

/* A worker message dropped unread (teardown): free it and what it holds. */
void worker_drop_msg(struct mailbox_msg *m);

/* Any thread: hand the worker a message (ownership passes to the worker). */
void worker_post(struct worker *w, struct mailbox_msg *msg);

/*
 * Any thread: the room got mail while idle (room_push said so): run it on
 * its home worker, from a local list when called there, else by message.
 */
void worker_schedule_room(struct room *r);

/* Worker thread: send a JOIN to the room's home worker's registry. */
void worker_route_join(struct worker *w, struct room_msg *msg);

/* The worker whose thread is running, or NULL (main thread). */
struct worker *worker_current(void);

/*
 * Main thread, after every worker has stopped and before any is freed:
 * play out the messages still in flight (leaves, lefts) on behalf of each
 * worker, so every membership and room is released cleanly.
 */
void worker_quiesce(struct worker **workers, unsigned n);

/* Worker thread, stopping: end the loop once every worker's clients are gone. */
void worker_maybe_exit(struct worker *w);

/* Worker thread: ask for a flush pass at the end of this loop iteration. */
void worker_want_flush(struct worker *w);

/* Worker thread: wall-clock milliseconds since the epoch. */
int64_t worker_now_ms(void);

/*
 * Worker clock: milliseconds since the worker started, from the coarse
 * monotonic clock (a vDSO read of a few ns, 1-4 ms resolution), cheap
 * enough to stamp every read. Differences are wrap-safe in uint32_t.
 */
uint32_t worker_clock_ms(const struct worker *w);
uint64_t worker_clock_ms64(const struct worker *w);
/* Wheel ticks (WHEEL_TICK_MS) on the same clock (wraps after 13 years). */
uint32_t worker_clock_tick(const struct worker *w);

#endif
