#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <ck_pr.h>

#include "log.h"
#include "persist.h"
#include "reader.h"
#include "live.h"
#include "room.h"
#include "rooms.h"
#include "server.h"
#include "session.h"
#include "settings.h"
#include "worker.h"
#include "xmalloc.h"

static _Thread_local struct worker *current;

struct worker *
worker_current(void)
{
	return current;
}

void
rooms_bind_thread(struct worker *w)
{
	current = w;
}

static struct room_clock
clock_now(struct worker *w)
{
	struct room_clock c = { worker_now_ms(), worker_clock_ms64(w) };

	return c;
}

/* ---- what rooms send ------------------------------------------------------------ */

static void
room_out_handle(struct worker *w, struct mailbox_msg *msg)
{
	if (msg->kind == ROOM_OUT_DELIVER)
		session_deliver(w, (struct deliver_msg *)msg);
	else
		session_member_event(w, (struct member_msg *)msg);
}

/*
 * env->post: a room homed on w sends to worker target. To its own worker
 * it is handled at once (every message from the room to w goes this way,
 * so their order is kept); to another, through its FIFO mailbox.
 */
static void
room_out_post(void *ctx, unsigned target, struct mailbox_msg *msg)
{
	struct worker *w = ctx;

	if (target == w->id)
		room_out_handle(w, msg);
	else
		worker_post(w->srv->workers[target], msg);
}

/* ---- the registry ------------------------------------------------------------------ */

struct name_key {
	const char *p;
	size_t len;
};

static int
room_name_eq(const struct hnode *n, const void *key)
{
	const struct room *r = (const struct room *)((const char *)n -
	    offsetof(struct room, reg_node));
	const struct name_key *k = key;

	return r->name_len == k->len && memcmp(r->name, k->p, k->len) == 0;
}

static struct room *
registry_get(struct worker *w, const char *name, size_t len)
{
	struct name_key k = { name, len };
	uint64_t h = htab_hash(name, len, 0);
	struct hnode *n = htab_find(&w->rooms, h, room_name_eq, &k);
	struct room *r;

	if (n != NULL)
		return (struct room *)((char *)n - offsetof(struct room, reg_node));
	r = room_new(name, len, w->id, &w->room_env);
	r->run_msg.kind = WORKER_MSG_ROOM_RUN;
	htab_insert(&w->rooms, &r->reg_node, h);
	METRIC_INC(&w->metrics, rooms);
	log_debug("room_created worker=%u room=%s", w->id, r->name);
	return r;
}

/* A JOIN reached the room's home: find or create the room and queue it. */
static void
room_open(struct worker *w, struct room_msg *msg)
{
	struct room *r = registry_get(w, msg->req.room, msg->req.room_len);

	msg->base.kind = ROOM_MSG_JOIN;   /* it travelled as ROOM_OPEN */
	if (room_push(r, msg))
		worker_schedule_room(r);
}

void
worker_route_join(struct worker *w, struct room_msg *msg)
{
	unsigned home = room_home(msg->req.room, msg->req.room_len, w->srv->nworkers);

	if (home == w->id) {
		room_open(w, msg);
		return;
	}
	msg->base.kind = WORKER_MSG_ROOM_OPEN;
	worker_post(w->srv->workers[home], &msg->base);
}

/* ---- running rooms ------------------------------------------------------------------ */

static void timed_add(struct worker *w, struct room *r);

static void
ready_append(struct worker *w, struct room *r)
{
	r->ready_next = NULL;
	if (w->ready_tail != NULL)
		w->ready_tail->ready_next = r;
	else
		w->ready_head = r;
	w->ready_tail = r;
	event_active(w->run_ev, EV_READ, 0);
}

void
worker_schedule_room(struct room *r)
{
	if (current != NULL && current->id == r->home)
		ready_append(current, r);   /* no system call: we are its thread */
	else if (current != NULL)
		worker_post(current->srv->workers[r->home], &r->run_msg);
	else
		log_error("room_schedule_off_thread room=%s", r->name);
}

static void
timed_add(struct worker *w, struct room *r)
{
	if (r->timed)
		return;
	r->timed = 1;
	r->timed_prev = NULL;
	r->timed_next = w->timed_head;
	if (w->timed_head != NULL)
		w->timed_head->timed_prev = r;
	w->timed_head = r;
}

static void
timed_remove(struct worker *w, struct room *r)
{
	if (!r->timed)
		return;
	if (r->timed_prev != NULL)
		r->timed_prev->timed_next = r->timed_next;
	else
		w->timed_head = r->timed_next;
	if (r->timed_next != NULL)
		r->timed_next->timed_prev = r->timed_prev;
	r->timed = 0;
	r->timed_prev = r->timed_next = NULL;
}

/* After the room did something: gauges and timers follow its members. */
static void
room_after(struct worker *w, struct room *r, uint32_t was_members)
{
	if (was_members == 0 && r->members > 0)
		METRIC_INC(&w->metrics, rooms_active);
	else if (was_members > 0 && r->members == 0)
		METRIC_SUB(&w->metrics, rooms_active, 1);
	if (room_wants_tick(r))
		timed_add(w, r);
}

static void
room_run_once(struct worker *w, struct room *r)
{
	struct room_clock now = clock_now(w);
	uint32_t was_members = r->members;

	if (room_run(r, ROOM_BUDGET, &now))
		ready_append(w, r);
	METRIC_MAX(&w->metrics, mailbox_high_water, r->mb.high_water);
	room_after(w, r, was_members);
}

/* The persistence thread committed some of the room's records. */
static void
room_commit_once(struct worker *w, struct persist_committed *c)
{
	struct room_clock now = clock_now(w);
	struct room *r = c->room;
	uint32_t was_members = r->members;

	room_committed(r, c->rec, &now);
	free(c);
	room_after(w, r, was_members);
}

/* env->resume: a read finished; the room's mailbox goes on. */
static void
room_resume_cb(void *ctx, struct room *r)
{
	ready_append(ctx, r);
}

/* Run each room that was ready when we started; newcomers wait a turn. */
static void
run_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct room *r = w->ready_head, *last = w->ready_tail, *next;

	(void)fd;
	(void)what;
	w->ready_head = w->ready_tail = NULL;
	while (r != NULL) {
		int end = r == last;

		next = r->ready_next;
		room_run_once(w, r);
		if (end)
			break;
		r = next;
	}
}

void
rooms_tick(struct worker *w)
{
	uint64_t now_ms = worker_clock_ms64(w);
	struct room_clock now;
	struct room *r, *next;

	if (now_ms - w->last_room_tick_ms < ROOM_TICK_MS)
		return;
	w->last_room_tick_ms = now_ms;
	now = clock_now(w);
	for (r = w->timed_head; r != NULL; r = next) {
		next = r->timed_next;
		switch (room_tick(r, &now)) {
		case ROOM_TICK_KEEP:
			break;
		case ROOM_TICK_IDLE:
			timed_remove(w, r);
			break;
		case ROOM_TICK_FREE:
			timed_remove(w, r);
			htab_remove(&w->rooms, &r->reg_node);
			METRIC_SUB(&w->metrics, rooms, 1);
			log_debug("room_freed worker=%u room=%s", w->id, r->name);
			room_free(r);
			break;
		}
	}
}

int
rooms_handle(struct worker *w, struct mailbox_msg *msg)
{
	switch (msg->kind) {
	case WORKER_MSG_ROOM_RUN:
		room_run_once(w, (struct room *)((char *)msg - offsetof(struct room, run_msg)));
		return 1;
	case WORKER_MSG_ROOM_OPEN:
		room_open(w, (struct room_msg *)msg);
		return 1;
	case WORKER_MSG_COMMITTED:
		room_commit_once(w, (struct persist_committed *)msg);
		return 1;
	case ROOM_OUT_DELIVER:
	case ROOM_OUT_MEMBER:
		room_out_handle(w, msg);
		return 1;
	default:
		return 0;
	}
}

void
rooms_apply_live(struct worker *w)
{
	const struct settings *cfg = &w->live->cfg;

	w->room_env.idle_ms = (uint32_t)(cfg->room_idle * 1000);
	/* A reply (history, replay) is cut to stay well under --out-limit. */
	w->room_env.reply_max_bytes = (size_t)cfg->out_limit / 2;
}

int
rooms_init(struct worker *w)
{
	const struct settings *cfg = w->srv->cfg;

	htab_init(&w->rooms, 64);
	w->room_env.nworkers = w->srv->nworkers;
	w->room_env.post = room_out_post;
	w->room_env.ctx = w;
	w->room_env.metrics = &w->metrics;
	/*
	 * In memory mode a room with events is the stream's only copy: freeing
	 * it would reuse seqs and forget ids. With --db it loads again.
	 */
	w->room_env.persist = w->srv->persist;
	w->room_env.reader = w->reader;
	w->room_env.resume = room_resume_cb;
	w->room_env.keep_events = w->srv->persist == NULL;
	w->room_env.ring_max = (size_t)cfg->room_history;
	rooms_apply_live(w);
	w->run_ev = event_new(w->base, -1, 0, run_cb, w);
	return w->run_ev == NULL ? -1 : 0;
}

static void
free_room(struct hnode *n, void *arg)
{
	(void)arg;
	room_free((struct room *)((char *)n - offsetof(struct room, reg_node)));
}

void
rooms_free(struct worker *w)
{
	if (w->rooms.buckets != NULL) {
		htab_each(&w->rooms, free_room, NULL);
		htab_free(&w->rooms);
	}
	if (w->run_ev != NULL)
		event_free(w->run_ev);
}

/* ---- teardown ------------------------------------------------------------------------ */

static int
quiesce_room(struct worker *w)
{
	int progress = 0;

	for (size_t i = 0; i <= w->rooms.mask; i++)
		for (struct hnode *n = w->rooms.buckets[i]; n != NULL; n = n->next) {
			struct room *r = (struct room *)((char *)n - offsetof(struct room, reg_node));
			struct room_clock now = clock_now(w);

			while (mailbox_pending(&r->mb)) {
				room_run(r, ROOM_BUDGET, &now);
				progress = 1;
			}
		}
	return progress;
}

/* The loops are gone: so are the readers, and what waited on them. */
static void
abandon_reads(struct worker *w)
{
	db_reader_free(w->reader);
	w->reader = NULL;
	w->room_env.reader = NULL;
	for (size_t i = 0; i <= w->rooms.mask; i++)
		for (struct hnode *n = w->rooms.buckets[i]; n != NULL; n = n->next)
			room_abandon_reads((struct room *)((char *)n -
			    offsetof(struct room, reg_node)));
}

void
worker_quiesce(struct worker **workers, unsigned n)
{
	int progress = 1;

	for (unsigned i = 0; i < n; i++) {
		current = workers[i];
		abandon_reads(workers[i]);
	}

	/* Act as each worker in turn until no message is left anywhere. */
	while (progress) {
		progress = 0;
		for (unsigned i = 0; i < n; i++) {
			struct worker *w = workers[i];
			struct mailbox_msg *m;

			current = w;
			w->ready_head = w->ready_tail = NULL;
			while ((m = mailbox_take(&w->mb)) != NULL) {
				progress = 1;
				if (!rooms_handle(w, m))
					worker_drop_msg(m);   /* RELOAD holds a reference */
			}
			progress |= quiesce_room(w);
		}
	}
	current = NULL;
}
