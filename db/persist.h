/*
 * persist.h - the persistence thread: the only writer to PostgreSQL.
 *
 * Ownership:
 *   - The thread owns its PERSIST_WRITERS connections ("writers"), each
 *     with its FIFO of taken records and its batch in flight; a room's
 *     records always go to the same writer (room_id % PERSIST_WRITERS).
 *     It applies the migrations (migrate.h) when it connects.
 *   - Room actors (each on its home worker) reserve a place in the backlog
 *     (persist_reserve), then hand over records (persist_submit); from then
 *     on the record belongs to the thread, which frees it.
 *   - After a batch commits, the thread posts one struct persist_committed
 *     per room to the room's home worker: "committed up to record N". The
 *     room fans out, rings and acks only then (PROTOCOL.md section 5).
 *   - The counters and flags below marked "shared" are atomics any thread
 *     may read (/readyz, /metrics, shutdown).
 *
 * Records of one room arrive in the order the room made them (one producer
 * thread per room, FIFO per producer), go to one writer, and are committed
 * in that order.
 *
 * Faults: while the database is unreachable, or a batch has not committed
 * within PERSIST_COMMIT_TIMEOUT_MS, the thread holds its records, marks
 * itself not ready, and reconnects with backoff. A batch whose commit was
 * in doubt (the connection died around COMMIT) is looked up before it is
 * written again, so it is never applied twice. Rooms bound what is held
 * with persist_reserve (--backlog in all).
 */
#ifndef PARLEY_PERSIST_H
#define PARLEY_PERSIST_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox.h"
#include "metrics.h"

struct room;
struct writer;

#define PERSIST_COMMIT_TIMEOUT_MS 5000
/*
 * Connections the thread writes on, rooms shared out by id. One backend
 * sits idle while its commit's WAL is flushed and between our round trips;
 * a second one uses that time.
 */
#define PERSIST_WRITERS 2
#define PERSIST_BACKOFF_MIN_MS 100
#define PERSIST_BACKOFF_MAX_MS 5000

enum persist_kind {
	PERSIST_EVENT = 1,        /* one row of events */
	PERSIST_READ,             /* a read position, upserted forward only */
	PERSIST_MSG_STOP,         /* internal: drain and exit */
};

/* Event kinds, as stored in events.kind. */
enum persist_event_type {
	PERSIST_MESSAGE = 0,
	PERSIST_EDIT,
	PERSIST_DELETE,
	PERSIST_REACTION,
};

struct persist_rec {
	struct mailbox_msg base;  /* kind: enum persist_kind */
	struct persist_rec *next; /* the thread's FIFO */
	struct room *room;        /* told after commit (NULL: nobody waits) */
	unsigned home;            /* the room's home worker */
	uint64_t rec;             /* the room's record number (0: nobody waits) */
	int64_t room_id;          /* rooms.id, known once the room is loaded */
	uint8_t type;             /* PERSIST_EVENT: enum persist_event_type */
	uint8_t add;              /* reaction */
	uint64_t seq;             /* event seq, or the read position */
	int64_t target;           /* edit, delete, reaction; 0 for a message */
	int64_t ts;
	const char *user;         /* into data[] */
	const char *body;         /* NULL, or into data[] */
	size_t body_len;
	const char *emoji;        /* NULL, or into data[] */
	const char *client_id;    /* NULL, or into data[] */
	char data[];
};

/* To a room's home worker: records up to rec of that room are durable. */
struct persist_committed {
	struct mailbox_msg base;  /* kind: the worker's (WORKER_MSG_COMMITTED) */
	struct room *room;
	uint64_t rec;
};

struct persist_config {
	const char *conninfo;
	unsigned batch_max;
	unsigned batch_delay_ms;
	uint64_t backlog;
	int committed_kind;       /* base.kind of struct persist_committed */
	/* Hand msg to worker w's mailbox; never fails. Called on the thread. */
	void (*post)(void *ctx, unsigned w, struct mailbox_msg *msg);
	void *ctx;
};

/*
 * The thread is the only writer of these: relaxed stores (persist.c
 * stats_commit), which /metrics on any worker reads with relaxed loads.
 * A batch counts when its COMMIT is seen to succeed; one found landed
 * after a lost connection (in doubt) frees its places but is not timed.
 */
struct persist_stats {            /* shared: read by /metrics */
	uint64_t batches;
	uint64_t rows;
	uint64_t commit_us_total;
	uint64_t commit_us_max;
	uint64_t reconnects;
	uint64_t failures;
	struct metrics_hist batch_rows;     /* rows per committed batch */
	struct metrics_hist commit_us;      /* first query sent to COMMIT done */
};

struct persist {
	struct persist_config cfg;
	struct mailbox mb;            /* any thread pushes records */
	pthread_t thread;
	int started;

	int stop;                     /* shared: drain what is queued, then exit */
	int abandon;                  /* shared: exit now, dropping unacked records */
	int up;                       /* shared: connected, migrated, committing */
	int schema_ready;             /* shared: migrations applied once */
	uint64_t inflight;            /* shared: reserved and not yet committed */
	struct persist_stats stats;   /* shared */

	/* the thread only */
	struct writer *writers;       /* [nwriters]: connections, FIFOs, batches (persist.c) */
	unsigned nwriters;
	uint64_t nqueued;             /* records taken, all writers */
	int stop_seen;
};

/* Main thread. Returns NULL (logged) if its mailbox cannot be made. */
struct persist *persist_new(const struct persist_config *cfg);
int persist_start(struct persist *p);   /* 0 or an errno value */
/* Main thread: commit everything queued, then join (abandon: don't wait
 * for a database that is down; unacked records are dropped and logged). */
void persist_stop(struct persist *p, int abandon);
void persist_free(struct persist *p);

/*
 * Any thread: take one place in the backlog. Returns 0, or -1 when
 * --backlog records are already held (answer unavailable).
 */
int persist_reserve(struct persist *p);
/* Any thread: give back a place that was not used. */
void persist_unreserve(struct persist *p);

/*
 * A record with room for the strings; the caller fills the fields and the
 * strings (persist_rec_new copies them into data[]).
 */
struct persist_rec *persist_rec_new(enum persist_kind kind, const char *user,
    const char *body, size_t body_len, const char *emoji, const char *client_id);

/* Any thread: hand rec over (after persist_reserve for EVENT and READ). */
void persist_submit(struct persist *p, struct persist_rec *rec);

/* Any thread: /readyz. */
int persist_ready(const struct persist *p);
/* Any thread: records reserved and not yet committed. */
uint64_t persist_inflight(const struct persist *p);
/* Any thread: retry_after_ms to give a client refused for the backlog. */
int64_t persist_retry_ms(const struct persist *p);

struct evbuffer;
/* Any thread: the persistence metrics in the Prometheus text format. */
void persist_metrics(const struct persist *p, struct evbuffer *out);

#endif
