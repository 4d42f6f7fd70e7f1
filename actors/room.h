/*
 * room.h - the room actor: one per active room, homed on one worker.
 *
 * Ownership:
 *   - Everything in struct room belongs to its home worker (the worker
 *     hash(name) % nworkers), which alone calls room_run/room_tick/room_free,
 *     except:
 *       mb, scheduled: any thread pushes requests (room_push);
 *       refs: a member's worker drops its reference (room_release);
 *       local[i]: worker i's list of its member connections (worker-owned).
 *   - A struct member belongs to its connection's worker. The room reads only
 *     its immutable fields (worker, user), set before the JOIN is posted.
 *
 * The room owns the seq counter, the user-level presence set, the dedupe
 * window of client ids, a ring of its latest events for replay and history,
 * typing timers, read positions, reactions, and a count of members per
 * worker. It answers its members and fans out through env->post(): one
 * deliver per worker that has members, carrying one shared frame.
 *
 * Ordering: everything the room sends a given worker (JOINED, deliveries,
 * replies, LEFT) is posted from the home thread in the room's own order,
 * and worker mailboxes are FIFO per producer. So a member added to the
 * local list when its JOINED (with the replay) is handled sees every later
 * event exactly once: no gap, no duplicate.
 *
 * Durability (env->persist set, --db): a sequenced event (and a read
 * position) becomes a record for the persistence thread and waits on the
 * room's pending list; when the thread says "committed up to record N"
 * (room_committed, on the home worker) the room rings the events, fans
 * them out and acks them, in order. While anything is pending, the room's
 * other replies and leaves queue behind it, so each connection still hears
 * its answers in the order it asked. Without --db the same path commits at
 * once.
 *
 * Reads: a room touched first loads its state (max seq, latest events,
 * dedupe ids, read positions) through the home worker's reader before it
 * handles its mailbox; history below the ring and requests about messages
 * older than what it keeps are looked up the same way. While a read is in
 * flight the room's mailbox waits (so requests keep their order) but
 * commits still flow; the reader's callback puts it back to work
 * (env->resume).
 *
 * Lifetime: the room takes a reference for each joined member; the member's
 * worker drops it when it handles LEFT, after every earlier message from
 * the room. A room is freed (room_tick says so) only with no members, no
 * references, nothing queued or pending, idle for env->idle_ms, and - in
 * memory mode - no events (freeing those would lose the stream and reuse
 * seqs).
 */
#ifndef PARLEY_ROOM_H
#define PARLEY_ROOM_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "htab.h"
#include "mailbox.h"
#include "names.h"
#include "proto.h"

struct db_reader;
struct metrics;
struct pending;
struct persist;
struct room;
struct session;

#define ROOM_RING 1024          /* latest events kept at least (replay needs 1000) */
#define ROOM_RING_MIN 64        /* a new room's ring; it doubles as events come */
#define ROOM_REPLAY_MAX 1000    /* replayed on join at most; more = truncated */
#define ROOM_DEDUPE_WINDOW 10240 /* client ids remembered per room (at least 10,000) */
#define ROOM_MEMBERS_MAX 500    /* names listed in joined */
#define ROOM_LOAD_EVENTS 1024   /* events loaded into the ring at activation */
#define ROOM_TYPING_REFRESH_MS 3000
#define ROOM_TYPING_EXPIRE_MS 6000

struct room_clock {
	int64_t wall_ms;          /* ms since the epoch: event ts */
	uint64_t mono_ms;         /* monotonic ms: timers */
};

/* What the room needs from its home worker (or from a test). */
struct room_env {
	unsigned nworkers;
	/* Hand msg (a deliver_msg or member_msg) to worker w; never fails. */
	void (*post)(void *ctx, unsigned w, struct mailbox_msg *msg);
	void *ctx;
	struct metrics *metrics;  /* the home worker's counters */
	uint32_t idle_ms;         /* empty this long before it may be freed */
	int keep_events;          /* memory mode: never free a room with events */
	size_t ring_max;          /* latest events a room keeps (raised to ROOM_RING) */
	size_t reply_max_bytes;   /* replay and history frames per request, at most
	                             (half of --out-limit: never a 1013 by itself;
	                             0: no byte bound) */
	struct persist *persist;  /* --db: the persistence thread, else NULL */
	struct db_reader *reader; /* --db: the home worker's reader */
	/* A read finished: run the room again (its mailbox waited). */
	void (*resume)(void *ctx, struct room *r);
};

enum member_state {
	MEMBER_PENDING = 1,       /* JOIN sent, JOINED not back yet */
	MEMBER_JOINED,
	MEMBER_LEAVING,           /* LEAVE sent, waiting for LEFT */
};

/* One connection's membership of one room. */
struct member {
	/* immutable once the JOIN is posted (the room reads them) */
	unsigned worker;
	char user[NAMES_USER_MAX + 1];

	/* the connection's worker only */
	uint8_t state;            /* enum member_state */
	uint8_t want_left;        /* reply "left" to the client */
	struct room *room;        /* known once JOINED arrives */
	struct session *sess;     /* NULL once the connection is gone */
	struct member *prev, *next;        /* room->local[worker] */
	struct member *sess_next;          /* the session's memberships */
	uint8_t in_local;                  /* on room->local[worker] */
	size_t room_len;
	char room_name[NAMES_ROOM_STR_MAX + 1];
};

/* One worker's members of a room: the worker owns it, the room holds it. */
struct room_local {
	struct member *head;
} __attribute__((aligned(64)));   /* workers never share a line */

/* Requests into a room's mailbox. */
enum room_msg_kind {
	ROOM_MSG_JOIN = 1,        /* req: room, since, ref */
	ROOM_MSG_LEAVE,           /* silent: the connection is gone, no reply */
	ROOM_MSG_REQUEST,         /* send, edit, delete, react, typing, read, history */
};

struct room_msg {
	struct mailbox_msg base;
	struct member *m;
	uint8_t silent;
	uint8_t rejoin;           /* JOIN of a member already joined: snapshot only */
	/* the session's verdict at arrival, when it answers the request itself */
	const char *local_code;   /* NULL, or the error code to answer with */
	const char *local_message;
	int64_t local_retry_ms;   /* retry_after_ms, or -1 */
	uint8_t local_close;      /* close 1008 after the error (rate abuse) */
	struct proto_req req;
};

/* Messages out of a room, into a worker's mailbox (kinds after the worker's). */
enum room_out_kind {
	ROOM_OUT_DELIVER = 64,
	ROOM_OUT_MEMBER,
};

struct deliver_msg {
	struct mailbox_msg base;
	struct room *room;
	struct frame *f;          /* one reference, the receiving worker's */
	uint8_t stream;           /* a stream event: counted as deliveries */
	char exclude[NAMES_USER_MAX + 1]; /* "" or a user whose connections skip it */
};

enum member_event {
	MEMBER_EV_JOINED = 1,     /* reply = joined, then replay; room referenced */
	MEMBER_EV_REPLY,          /* reply = ack, error or history */
	MEMBER_EV_LEFT,           /* reply = left or NULL; drop the room reference */
	MEMBER_EV_REFUSED,        /* reply = error; the join did not happen */
	MEMBER_EV_NOTICE,         /* reply = error to a request that has no reply */
};

struct member_msg {
	struct mailbox_msg base;
	uint8_t event;
	struct member *m;
	struct room *room;
	struct frame *reply;      /* NULL or one reference */
	struct frame **replay;    /* JOINED: one reference each, ascending seq */
	size_t nreplay;
};

struct room {
	/* shared: see the header comment */
	struct mailbox mb;
	int scheduled;            /* atomic: on its worker's run list or mailbox */
	int refs;                 /* atomic: members whose LEFT is not handled yet */
	struct mailbox_msg run_msg; /* the home worker's ROOM_RUN, one at most */
	struct room_local *local; /* [nworkers] */

	/* immutable after room_new: any thread holding the room may read */
	unsigned home;

	/* home worker only */
	const struct room_env *env;
	struct hnode reg_node;    /* the home worker's registry */
	struct room *ready_next;  /* the home worker's run list */
	struct room *timed_prev, *timed_next; /* the home worker's timer list */
	uint8_t timed;
	uint8_t dm;
	size_t name_len;          /* name, name_len: immutable, like home */
	char name[NAMES_ROOM_STR_MAX + 1];

	uint64_t seq;
	int64_t last_ts;
	uint32_t members;         /* member connections */
	uint32_t online;          /* users with at least one */
	uint32_t typers;          /* users typing */
	uint32_t *on_worker;      /* [nworkers] member connections per worker */
	uint64_t idle_since;      /* mono ms when members fell to 0 */

	struct htab users;        /* struct room_user by name */
	uint32_t next_uidx;
	uint32_t *authors;        /* [seq]: author uidx + 1 of a message, 0 else */
	size_t authors_cap;
	struct ring_slot *ring;   /* [ring_cap] by seq % ring_cap, lazily */
	size_t ring_cap;
	struct htab reactions;
	struct htab ids;          /* struct dedupe by (user, id) */
	struct dedupe **id_fifo;  /* [id_cap], oldest first from id_head */
	uint32_t id_head, id_count, id_cap; /* grows to ROOM_DEDUPE_WINDOW, then evicts */

	/* the stream as others see it (== seq in memory mode) */
	uint64_t committed;       /* last event delivered and acked */
	uint64_t ring_first;      /* lowest seq the ring may hold */
	uint64_t authors_base;    /* authors[i] is about seq authors_base + i */
	struct htab old;          /* struct old_target: messages below authors_base */
	uint64_t rec;             /* records handed to the persistence thread */
	uint64_t rec_done;        /* ... and committed */
	struct pending *pend_head, *pend_tail;
	uint32_t npending;

	/* reads (home worker) */
	int64_t room_id;          /* --db: rooms.id, from activation */
	uint8_t loaded;           /* activation done */
	uint8_t loading;          /* activation read in flight */
	uint8_t blocked;          /* another read in flight */
	uint8_t parked;           /* room_run stopped for a read: resume re-runs it */
	struct room_msg *stalled; /* the request the read is for */
};

/* The worker a room lives on. */
unsigned room_home(const char *name, size_t len, unsigned nworkers);

/* Home worker: a new, empty room (seq 0). */
struct room *room_new(const char *name, size_t len, unsigned home,
    const struct room_env *env);
void room_free(struct room *r);

/*
 * Any thread: queue msg. Returns 1 when the caller must schedule the room
 * on its home worker (it was neither queued nor running), else 0.
 */
int room_push(struct room *r, struct room_msg *msg);

/*
 * Home worker: handle at most budget messages. Returns 1 when the room must
 * run again (more queued), 0 when it went idle.
 */
int room_run(struct room *r, unsigned budget, const struct room_clock *now);

enum room_tick_result {
	ROOM_TICK_IDLE = 0,       /* no timer pending: take it off the timer list */
	ROOM_TICK_KEEP,           /* a timer is pending: tick again */
	ROOM_TICK_FREE,           /* empty, idle, unreferenced: free it now */
};

/*
 * Home worker: the persistence thread committed this room's records up to
 * rec: ring, fan out and ack them, then what waited behind them.
 */
void room_committed(struct room *r, uint64_t rec, const struct room_clock *now);

/*
 * Teardown (the reader is gone, its queries dropped): whatever waited on a
 * read is answered unavailable, so the room can play out its mailbox.
 */
void room_abandon_reads(struct room *r);

/* Home worker: typing expiry and the idle check. */
enum room_tick_result room_tick(struct room *r, const struct room_clock *now);

/* 1 if the room needs room_tick calls (typing or empty). */
int room_wants_tick(const struct room *r);

/* A member's worker, handling LEFT: drop the member's reference. */
void room_release(struct room *r);

/* Either side: free a message and what it owns. */
void room_msg_free(struct room_msg *msg);
void member_msg_free(struct member_msg *mm);
void deliver_msg_free(struct deliver_msg *dm);

#endif
