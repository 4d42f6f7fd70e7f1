#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>
#include <jansson.h>

#include "log.h"
#include "metrics.h"
#include "persist.h"
#include "reader.h"
#include "room.h"
#include "store.h"
#include "xmalloc.h"

#define ROOM_HASH_SEED 0x70617266ULL   /* fixed: every thread agrees on homes */
#define AUTHOR_DELETED 0x80000000u

struct ring_slot {
	uint64_t seq;             /* 0: empty */
	uint64_t target;          /* edit, delete, reaction */
	uint8_t type;             /* enum frame_type */
	struct frame *f;          /* the live frame (re-rendered once deleted) */
};

struct room_user {
	struct hnode node;
	uint32_t idx;
	uint32_t conns;           /* member connections in the room */
	uint64_t read;            /* read position */
	uint8_t typing;
	uint64_t typing_refresh;  /* mono ms of the last active:true */
	uint64_t typing_sent;     /* mono ms of the last active:true broadcast */
	const struct member *typing_member;
	uint8_t len;
	char name[NAMES_USER_MAX + 1];
};

struct reaction {
	struct hnode node;
	uint64_t target;
	uint32_t uidx;
	uint8_t len;
	char emoji[PROTO_EMOJI_MAX + 1];
};

struct dedupe {
	struct hnode node;
	uint64_t seq;
	int64_t ts;
	uint32_t uidx;
	uint8_t len;
	char id[];
};

/* A message below authors_base, once looked up. */
struct old_target {
	struct hnode node;
	uint64_t target;
	uint32_t author;          /* author uidx + 1 of a message (| AUTHOR_DELETED), 0 else */
};

enum pending_kind {
	PEND_EVENT = 1,           /* ring, fan out, ack */
	PEND_RECEIPT,             /* fan out */
	PEND_REPLY,               /* a reply that must not overtake earlier acks */
	PEND_LEAVE,               /* a leave that must not overtake them either */
};

/* Waits on the room until the persistence thread has passed rec. */
struct pending {
	struct pending *next;
	uint64_t rec;
	uint8_t kind;
	uint8_t type;             /* PEND_EVENT: enum frame_type */
	uint8_t ev;               /* PEND_REPLY: enum member_event */
	uint64_t seq, target;     /* PEND_EVENT */
	struct frame *f;          /* the event or receipt */
	struct frame *reply;      /* the ack, or the reply */
	struct member *m;
	struct room_msg *msg;     /* PEND_LEAVE */
};

/* What handling a request did with it. */
enum room_step {
	STEP_DONE = 0,            /* free the message */
	STEP_KEPT,                /* the room kept the message (a pending leave) */
	STEP_STALL,               /* a read is in flight: run it again afterwards */
};

struct reaction_key {
	uint64_t target;
	uint32_t uidx;
	const char *emoji;
	size_t len;
};

struct dedupe_key {
	uint32_t uidx;
	const char *id;
	size_t len;
};

/* ---- small helpers --------------------------------------------------------- */

unsigned
room_home(const char *name, size_t len, unsigned nworkers)
{
	return (unsigned)(htab_hash(name, len, ROOM_HASH_SEED) % nworkers);
}

static void
room_post(struct room *r, unsigned w, struct mailbox_msg *msg)
{
	r->env->post(r->env->ctx, w, msg);
}

static int
user_eq(const struct hnode *n, const void *key)
{
	const struct room_user *u = (const struct room_user *)n;

	return strcmp(u->name, key) == 0;
}

static struct room_user *
user_find(struct room *r, const char *name)
{
	return (struct room_user *)htab_find(&r->users,
	    htab_hash(name, strlen(name), 0), user_eq, name);
}

static struct room_user *
user_get(struct room *r, const char *name)
{
	struct room_user *u = user_find(r, name);
	size_t len = strlen(name);

	if (u != NULL)
		return u;
	u = xcalloc(1, sizeof(*u));
	u->idx = r->next_uidx++;
	u->len = (uint8_t)len;
	memcpy(u->name, name, len + 1);
	htab_insert(&r->users, &u->node, htab_hash(name, len, 0));
	return u;
}

static struct frame *
take_frame(json_t *o, enum frame_type type)
{
	struct frame *f = frame_from_json(o, type);

	json_decref(o);
	return f;
}

static void
member_send(struct room *r, struct member *m, enum member_event ev,
    struct frame *reply)
{
	struct member_msg *mm = xcalloc(1, sizeof(*mm));

	mm->base.kind = ROOM_OUT_MEMBER;
	mm->event = (uint8_t)ev;
	mm->m = m;
	mm->room = r;
	mm->reply = reply;
	room_post(r, m->worker, &mm->base);
}

static struct pending *
pending_add(struct room *r, enum pending_kind kind, uint64_t rec)
{
	struct pending *p = xcalloc(1, sizeof(*p));

	p->kind = (uint8_t)kind;
	p->rec = rec;
	if (r->pend_tail != NULL)
		r->pend_tail->next = p;
	else
		r->pend_head = p;
	r->pend_tail = p;
	r->npending++;
	return p;
}

/*
 * A reply to m: now, or - while earlier acks wait for a commit - behind
 * them, so a connection hears its answers in the order it asked.
 */
static void
room_reply(struct room *r, struct member *m, enum member_event ev, struct frame *f)
{
	struct pending *p;

	if (r->npending == 0) {
		member_send(r, m, ev, f);
		return;
	}
	p = pending_add(r, PEND_REPLY, r->rec);
	p->ev = (uint8_t)ev;
	p->m = m;
	p->reply = f;
}

/* Every error frame of a room is built here, and counted on its home worker. */
static struct frame *
error_frame(struct room *r, const struct proto_req *req, const char *code,
    const char *message, int64_t retry_ms)
{
	json_t *o = proto_reply("error", req);

	metrics_error(r->env->metrics, code);
	json_object_set_new(o, "code", json_string(code));
	json_object_set_new(o, "message", json_string(message));
	if (retry_ms >= 0)
		json_object_set_new(o, "retry_after_ms", json_integer(retry_ms));
	return take_frame(o, FRAME_ERROR);
}

static void
reply_error(struct room *r, struct member *m, const struct proto_req *req,
    const char *code, const char *message)
{
	room_reply(r, m, MEMBER_EV_REPLY, error_frame(r, req, code, message, -1));
}

/*
 * The database cannot take more now (or cannot be read). Said at once, not
 * behind pending acks: during an outage those wait for the database, and
 * the point of unavailable is to tell the client now (it matches the
 * error to its request by ref).
 */
static void
reply_unavailable(struct room *r, struct member *m, const struct proto_req *req,
    enum member_event ev)
{
	member_send(r, m, ev, error_frame(r, req, "unavailable",
	    "the database is unavailable; retry later",
	    persist_retry_ms(r->env->persist)));
}

/*
 * Fan a frame out: one deliver per worker with members, all sharing f.
 * exclude: NULL, or a user whose connections must not get it. Consumes
 * the caller's reference.
 */
static void
room_broadcast(struct room *r, struct frame *f, int stream, const char *exclude)
{
	for (unsigned w = 0; w < r->env->nworkers; w++) {
		struct deliver_msg *dm;

		if (r->on_worker[w] == 0)
			continue;
		dm = xmalloc(sizeof(*dm));
		dm->base.kind = ROOM_OUT_DELIVER;
		dm->room = r;
		dm->stream = (uint8_t)stream;
		if (exclude != NULL)
			memcpy(dm->exclude, exclude, strlen(exclude) + 1);
		else
			dm->exclude[0] = '\0';
		frame_ref(f);
		dm->f = f;
		room_post(r, w, &dm->base);
	}
	frame_unref(f);
}

/* ---- the ring of latest events -------------------------------------------- */

static struct ring_slot *
ring_at(const struct room *r, uint64_t seq)
{
	return &r->ring[seq % r->ring_cap];
}

/*
 * The oldest committed seq the ring still holds (ring_first when it holds
 * all since then; with nothing held, committed + 1).
 */
static uint64_t
ring_oldest(const struct room *r)
{
	uint64_t oldest = r->committed >= r->ring_cap ? r->committed - r->ring_cap + 1 : 1;

	if (r->ring == NULL)
		return r->committed + 1;
	return oldest > r->ring_first ? oldest : r->ring_first;
}

/*
 * Make room for seq. The ring starts small (most rooms are small) and
 * doubles up to env->ring_max; only then does the oldest event go.
 */
static void
ring_reserve(struct room *r, uint64_t seq)
{
	struct ring_slot *old = r->ring;
	size_t cap = r->ring_cap, max = r->env->ring_max;

	if (max < ROOM_RING)
		max = ROOM_RING;   /* replay needs 1000 */
	if (r->ring != NULL && (seq - r->ring_first < r->ring_cap || r->ring_cap >= max))
		return;
	cap = cap == 0 ? ROOM_RING_MIN : cap * 2;
	if (cap > max)
		cap = max;
	r->ring = xcalloc(cap, sizeof(*r->ring));
	for (size_t i = 0; old != NULL && i < r->ring_cap; i++)
		if (old[i].seq != 0)
			r->ring[old[i].seq % cap] = old[i];
	free(old);
	r->ring_cap = cap;
}

/* ---- life ------------------------------------------------------------------- */

struct room *
room_new(const char *name, size_t len, unsigned home, const struct room_env *env)
{
	struct room *r = xcalloc(1, sizeof(*r));
	const char *a, *b;
	size_t la, lb;

	mailbox_init_quiet(&r->mb);
	r->env = env;
	r->home = home;
	r->name_len = len;
	memcpy(r->name, name, len);
	r->name[len] = '\0';
	r->dm = (uint8_t)names_parse_dm(name, len, &a, &la, &b, &lb);
	r->local = xcalloc_aligned(64, env->nworkers, sizeof(*r->local));
	r->on_worker = xcalloc(env->nworkers, sizeof(*r->on_worker));
	htab_init(&r->users, 16);
	htab_init(&r->reactions, 16);
	htab_init(&r->ids, 16);
	htab_init(&r->old, 4);
	r->ring_first = 1;
	r->loaded = env->persist == NULL;   /* memory mode: nothing to load */
	return r;
}

static void
pending_free(struct pending *p)
{
	frame_unref(p->f);
	frame_unref(p->reply);
	room_msg_free(p->msg);
	free(p);
}

static void
free_node(struct hnode *n, void *arg)
{
	(void)arg;
	free(n);
}

void
room_free(struct room *r)
{
	struct mailbox_msg *m;

	while ((m = mailbox_take(&r->mb)) != NULL)
		room_msg_free((struct room_msg *)m);
	room_msg_free(r->stalled);
	while (r->pend_head != NULL) {
		struct pending *p = r->pend_head;

		r->pend_head = p->next;
		pending_free(p);
	}
	if (r->ring != NULL)
		for (size_t i = 0; i < r->ring_cap; i++)
			frame_unref(r->ring[i].f);
	htab_each(&r->users, free_node, NULL);
	htab_each(&r->reactions, free_node, NULL);
	htab_each(&r->ids, free_node, NULL);
	htab_each(&r->old, free_node, NULL);
	htab_free(&r->old);
	htab_free(&r->users);
	htab_free(&r->reactions);
	htab_free(&r->ids);
	free(r->ring);
	free(r->id_fifo);
	free(r->authors);
	free(r->on_worker);
	free(r->local);
	free(r);
}

void
room_release(struct room *r)
{
	/* Everything this worker did with r happens before the home sees 0. */
	ck_pr_fence_release();
	ck_pr_dec_int(&r->refs);
}

int
room_push(struct room *r, struct room_msg *msg)
{
	mailbox_push(&r->mb, &msg->base);
	/*
	 * Store-load ordering (a Dekker pair with room_run): either we see
	 * scheduled == 0 and schedule the room ourselves, or the running room,
	 * which clears scheduled and fences before it looks at its mailbox
	 * again, sees our message. ck's CAS is a full barrier on x86 but not
	 * on every architecture, so the fence is explicit.
	 */
	ck_pr_fence_memory();
	if (ck_pr_load_int(&r->scheduled))
		return 0;
	return ck_pr_cas_int(&r->scheduled, 0, 1);
}

/* ---- join and leave ----------------------------------------------------------- */

static json_t *
members_array(struct room *r, const char *joiner, int *truncated)
{
	json_t *a = json_array();
	size_t n = 1;

	/* The joiner first: it is listed even when the list is cut. */
	json_array_append_new(a, json_string(joiner));
	*truncated = 0;
	for (size_t i = 0; i <= r->users.mask; i++) {
		for (struct hnode *h = r->users.buckets[i]; h != NULL; h = h->next) {
			struct room_user *u = (struct room_user *)h;

			if (u->conns == 0 || strcmp(u->name, joiner) == 0)
				continue;
			if (n == ROOM_MEMBERS_MAX) {
				*truncated = 1;
				return a;
			}
			json_array_append_new(a, json_string(u->name));
			n++;
		}
	}
	return a;
}

static struct frame *
joined_frame(struct room *r, const struct proto_req *req, struct room_user *u,
    int truncated)
{
	json_t *o = proto_reply("joined", req);
	int members_truncated;

	json_object_set_new(o, "room", json_string(r->name));
	json_object_set_new(o, "seq", json_integer((json_int_t)r->committed));
	json_object_set_new(o, "online", json_integer(r->online));
	json_object_set_new(o, "members", members_array(r, u->name, &members_truncated));
	if (members_truncated)
		json_object_set_new(o, "members_truncated", json_true());
	json_object_set_new(o, "read", json_integer((json_int_t)u->read));
	if (truncated)
		json_object_set_new(o, "truncated", json_true());
	return take_frame(o, FRAME_JOINED);
}

/* {"type", "room", "user", key: value} about u, to the other users. */
static void
tell_others(struct room *r, struct room_user *u, const char *type,
    enum frame_type ftype, const char *key, json_t *value)
{
	json_t *o = proto_reply(type, NULL);

	json_object_set_new(o, "room", json_string(r->name));
	json_object_set_new(o, "user", json_string(u->name));
	json_object_set_new(o, key, value);
	room_broadcast(r, take_frame(o, ftype), 0, u->name);
}

static void
presence(struct room *r, struct room_user *u, const char *status)
{
	tell_others(r, u, "presence", FRAME_PRESENCE, "status", json_string(status));
}

static void
typing_broadcast(struct room *r, struct room_user *u, int active)
{
	tell_others(r, u, "typing", FRAME_TYPING, "active", json_boolean(active));
}

static void
typing_stop(struct room *r, struct room_user *u)
{
	if (!u->typing)
		return;
	u->typing = 0;
	u->typing_member = NULL;
	r->typers--;
	typing_broadcast(r, u, 0);
}

/*
 * The events a join with since must replay, each with a new reference: the
 * latest ROOM_REPLAY_MAX at most, and no more bytes than the client's
 * output limit allows (truncated says the client must page with history).
 */
static void
replay_collect(struct room *r, const struct proto_req *req,
    struct member_msg *mm, int *truncated)
{
	uint64_t from, oldest, s;
	size_t bytes = 0;

	*truncated = 0;
	if (!req->has_since || (uint64_t)req->since >= r->committed || r->ring == NULL)
		return;
	from = (uint64_t)req->since + 1;
	oldest = ring_oldest(r);
	if (r->committed - oldest + 1 > ROOM_REPLAY_MAX)
		oldest = r->committed - ROOM_REPLAY_MAX + 1;
	if (from < oldest) {
		from = oldest;
		*truncated = 1;
	}
	for (s = r->committed; s >= from; s--) {
		bytes += ring_at(r, s)->f->len;
		if (r->env->reply_max_bytes != 0 && bytes > r->env->reply_max_bytes) {
			from = s + 1;
			*truncated = 1;
			break;
		}
	}
	if (from > r->committed)
		return;
	mm->replay = xmalloc((size_t)(r->committed - from + 1) * sizeof(*mm->replay));
	for (s = from; s <= r->committed; s++) {
		struct ring_slot *slot = ring_at(r, s);

		frame_ref(slot->f);
		mm->replay[mm->nreplay++] = slot->f;
	}
}

static void
room_join(struct room *r, struct room_msg *msg)
{
	struct member *m = msg->m;
	struct member_msg *mm;
	struct room_user *u;
	int truncated;

	if (r->dm && !names_dm_admits(r->name, r->name_len, m->user)) {
		member_send(r, m, MEMBER_EV_REFUSED, error_frame(r, &msg->req, "forbidden",
		    "this direct-message room admits only its two users", -1));
		return;
	}
	u = user_get(r, m->user);
	if (msg->rejoin) {
		/* Already a member: the current state, nothing replayed again. */
		room_reply(r, m, MEMBER_EV_REPLY, joined_frame(r, &msg->req, u, 0));
		return;
	}
	if (u->conns++ == 0) {
		r->online++;
		presence(r, u, "online");
	}
	r->members++;
	r->on_worker[m->worker]++;
	ck_pr_inc_int(&r->refs);
	mm = xcalloc(1, sizeof(*mm));
	mm->base.kind = ROOM_OUT_MEMBER;
	mm->event = MEMBER_EV_JOINED;
	mm->m = m;
	mm->room = r;
	replay_collect(r, &msg->req, mm, &truncated);
	mm->reply = joined_frame(r, &msg->req, u, truncated);
	room_post(r, m->worker, &mm->base);
}

static void
room_leave_now(struct room *r, struct room_msg *msg, const struct room_clock *now)
{
	struct member *m = msg->m;
	struct room_user *u = user_find(r, m->user);
	struct frame *f = NULL;

	if (u != NULL && u->conns > 0) {
		if (u->typing_member == m || u->conns == 1)
			typing_stop(r, u);
		if (--u->conns == 0) {
			r->online--;
			presence(r, u, "offline");
		}
	}
	r->members--;
	r->on_worker[m->worker]--;
	if (r->members == 0)
		r->idle_since = now->mono_ms;
	if (!msg->silent) {
		json_t *o = proto_reply("left", &msg->req);

		json_object_set_new(o, "room", json_string(r->name));
		f = take_frame(o, FRAME_LEFT);
	}
	/* The last thing the room says to m: its worker frees m on LEFT. */
	member_send(r, m, MEMBER_EV_LEFT, f);
}

/*
 * A leave waits behind pending events: the member still gets its acks (m
 * lives until LEFT) and, unless its connection is gone, the events
 * sequenced before it.
 */
static enum room_step
room_leave(struct room *r, struct room_msg *msg, const struct room_clock *now)
{
	struct pending *p;

	if (r->npending == 0) {
		room_leave_now(r, msg, now);
		return STEP_DONE;
	}
	p = pending_add(r, PEND_LEAVE, r->rec);
	p->msg = msg;
	return STEP_KEPT;
}

/* ---- the stream ------------------------------------------------------------------ */

static int
reaction_eq(const struct hnode *n, const void *key)
{
	const struct reaction *x = (const struct reaction *)n;
	const struct reaction_key *k = key;

	return x->target == k->target && x->uidx == k->uidx && x->len == k->len &&
	    memcmp(x->emoji, k->emoji, k->len) == 0;
}

static uint64_t
reaction_hash(const struct reaction_key *k)
{
	return htab_hash(k->emoji, k->len, k->target * 31 + k->uidx);
}

static int
dedupe_eq(const struct hnode *n, const void *key)
{
	const struct dedupe *d = (const struct dedupe *)n;
	const struct dedupe_key *k = key;

	return d->uidx == k->uidx && d->len == k->len && memcmp(d->id, k->id, k->len) == 0;
}

static struct dedupe *
dedupe_find(struct room *r, uint32_t uidx, const struct proto_req *req)
{
	struct dedupe_key k = { uidx, req->id, strlen(req->id) };

	return (struct dedupe *)htab_find(&r->ids, htab_hash(k.id, k.len, uidx),
	    dedupe_eq, &k);
}

/* Most rooms see few ids: the window's array grows, up to its bound. */
static void
dedupe_grow(struct room *r)
{
	uint32_t cap = r->id_cap ? r->id_cap * 2 : 16;
	struct dedupe **fifo;

	if (cap > ROOM_DEDUPE_WINDOW)
		cap = ROOM_DEDUPE_WINDOW;
	fifo = xcalloc(cap, sizeof(*fifo));
	for (uint32_t i = 0; i < r->id_count; i++)
		fifo[i] = r->id_fifo[(r->id_head + i) % r->id_cap];
	free(r->id_fifo);
	r->id_fifo = fifo;
	r->id_head = 0;
	r->id_cap = cap;
}

static void
dedupe_remember(struct room *r, uint32_t uidx, const char *id, uint64_t seq,
    int64_t ts)
{
	size_t len = strlen(id);
	struct dedupe *d = xmalloc(sizeof(*d) + len + 1);
	uint32_t slot;

	d->seq = seq;
	d->ts = ts;
	d->uidx = uidx;
	d->len = (uint8_t)len;
	memcpy(d->id, id, len + 1);
	if (r->id_count == r->id_cap && r->id_cap < ROOM_DEDUPE_WINDOW)
		dedupe_grow(r);
	/* A full window forgets its oldest id. */
	slot = (r->id_head + r->id_count) % r->id_cap;
	if (r->id_count == r->id_cap) {
		htab_remove(&r->ids, &r->id_fifo[slot]->node);
		free(r->id_fifo[slot]);
		r->id_head = (r->id_head + 1) % r->id_cap;
	} else {
		r->id_count++;
	}
	r->id_fifo[slot] = d;
	htab_insert(&r->ids, &d->node, htab_hash(id, len, uidx));
}

static struct frame *
ack_frame(struct room *r, const struct proto_req *req, uint64_t seq, int64_t ts,
    const char *flag)
{
	json_t *o = proto_reply("ack", req);

	json_object_set_new(o, "room", json_string(r->name));
	json_object_set_new(o, "seq", json_integer((json_int_t)seq));
	json_object_set_new(o, "ts", json_integer(ts));
	if (req->has_id)
		json_object_set_new(o, "id", json_string(req->id));
	if (flag != NULL)
		json_object_set_new(o, flag, json_true());
	return take_frame(o, FRAME_ACK);
}

static int
old_eq(const struct hnode *n, const void *key)
{
	return ((const struct old_target *)n)->target == *(const uint64_t *)key;
}

static struct old_target *
old_find(struct room *r, uint64_t target)
{
	return (struct old_target *)htab_find(&r->old, htab_hash(&target, sizeof(target), 0),
	    old_eq, &target);
}

static struct old_target *
old_add(struct room *r, uint64_t target, uint32_t author)
{
	struct old_target *o = xcalloc(1, sizeof(*o));

	o->target = target;
	o->author = author;
	htab_insert(&r->old, &o->node, htab_hash(&target, sizeof(target), 0));
	return o;
}

/* Where a message's author word lives, or NULL when it must be looked up. */
static uint32_t *
author_word(struct room *r, uint64_t seq)
{
	struct old_target *o;

	if (seq >= r->authors_base) {
		if (seq - r->authors_base >= r->authors_cap)
			return NULL;   /* not a message: never set */
		return &r->authors[seq - r->authors_base];
	}
	o = old_find(r, seq);
	return o != NULL ? &o->author : NULL;
}

#define AUTHOR_UNKNOWN (-2)

/*
 * The target's author index; -1 unless it is a live message; AUTHOR_UNKNOWN
 * when it is older than what the room keeps and must be looked up.
 */
static int64_t
live_author(struct room *r, int64_t target)
{
	uint32_t *a;

	if (target < 1 || (uint64_t)target > r->seq)
		return -1;
	if ((uint64_t)target < r->authors_base && old_find(r, (uint64_t)target) == NULL)
		return AUTHOR_UNKNOWN;
	a = author_word(r, (uint64_t)target);
	if (a == NULL || *a == 0 || (*a & AUTHOR_DELETED))
		return -1;
	return (int64_t)(*a - 1);
}

static void
authors_set(struct room *r, uint64_t seq, uint32_t value)
{
	uint64_t i = seq - r->authors_base;

	if (i >= r->authors_cap) {
		size_t cap = r->authors_cap ? r->authors_cap * 2 : 64;

		while (cap <= i)
			cap *= 2;
		r->authors = xrealloc(r->authors, cap * sizeof(*r->authors));
		memset(r->authors + r->authors_cap, 0,
		    (cap - r->authors_cap) * sizeof(*r->authors));
		r->authors_cap = cap;
	}
	r->authors[i] = value;
}

static void
author_mark_deleted(struct room *r, uint64_t target)
{
	uint32_t *a = author_word(r, target);

	if (a != NULL)
		*a |= AUTHOR_DELETED;
}

/* History and replay show a deleted message and its edits emptied. */
static void
ring_mark_deleted(struct room *r, uint64_t target)
{
	uint64_t oldest = ring_oldest(r);

	for (uint64_t s = oldest; s <= r->committed; s++) {
		struct ring_slot *slot = ring_at(r, s);
		json_t *o;

		if (!((slot->type == FRAME_MESSAGE && s == target) ||
		    (slot->type == FRAME_EDIT && slot->target == target)))
			continue;
		o = json_loadb(frame_payload(slot->f), frame_payload_len(slot->f), 0, NULL);
		if (o == NULL)
			continue;   /* cannot happen: we encoded it */
		json_object_set_new(o, "body", json_string(""));
		json_object_set_new(o, "deleted", json_true());
		frame_unref(slot->f);
		slot->f = take_frame(o, (enum frame_type)slot->type);
	}
}

/* ---- events: sequenced now, delivered once committed ---------------------------------- */

static const enum frame_type frame_of[] = {
	[PERSIST_MESSAGE] = FRAME_MESSAGE, [PERSIST_EDIT] = FRAME_EDIT,
	[PERSIST_DELETE] = FRAME_DELETE, [PERSIST_REACTION] = FRAME_REACTION,
};

static int
persist_type(enum frame_type t)
{
	switch (t) {
	case FRAME_EDIT: return PERSIST_EDIT;
	case FRAME_DELETE: return PERSIST_DELETE;
	case FRAME_REACTION: return PERSIST_REACTION;
	default: return PERSIST_MESSAGE;
	}
}

/* The frame of an event, exactly as members receive it live. */
static struct frame *
event_frame(const struct room *r, const struct stored_event *ev)
{
	return take_frame(store_event_json(r->name, ev), frame_of[ev->type]);
}

/* Put a committed event into the ring (it may push the oldest out). */
static void
ring_put(struct room *r, uint64_t seq, enum frame_type type, uint64_t target,
    struct frame *f)
{
	struct ring_slot *slot;

	ring_reserve(r, seq);
	slot = ring_at(r, seq);
	frame_unref(slot->f);
	slot->seq = seq;
	slot->target = target;
	slot->type = (uint8_t)type;
	slot->f = f;
}

/* A committed event: ring it, fan it out, ack its sender. */
static void
commit_event(struct room *r, struct pending *p)
{
	frame_ref(p->f);
	ring_put(r, p->seq, (enum frame_type)p->type, p->target, p->f);
	r->committed = p->seq;
	if (p->type == FRAME_DELETE)
		ring_mark_deleted(r, p->target);
	room_broadcast(r, p->f, 1, NULL);
	p->f = NULL;
	member_send(r, p->m, MEMBER_EV_REPLY, p->reply);
	p->reply = NULL;
}

void
room_committed(struct room *r, uint64_t rec, const struct room_clock *now)
{
	struct pending *p;

	if (rec > r->rec_done)
		r->rec_done = rec;
	while ((p = r->pend_head) != NULL && p->rec <= r->rec_done) {
		r->pend_head = p->next;
		if (r->pend_head == NULL)
			r->pend_tail = NULL;
		r->npending--;
		switch (p->kind) {
		case PEND_EVENT:
			commit_event(r, p);
			break;
		case PEND_RECEIPT:
			room_broadcast(r, p->f, 0, NULL);
			p->f = NULL;
			break;
		case PEND_REPLY:
			member_send(r, p->m, (enum member_event)p->ev, p->reply);
			p->reply = NULL;
			break;
		case PEND_LEAVE:
			room_leave_now(r, p->msg, now);
			break;
		}
		pending_free(p);
	}
}

/*
 * Hand a record to the persistence thread (its place in the backlog is
 * already taken); in memory mode it is "committed" at once.
 */
static void
room_record(struct room *r, struct persist_rec *rec, const struct room_clock *now)
{
	if (rec == NULL) {
		room_committed(r, r->rec, now);
		return;
	}
	rec->room = r;
	rec->home = r->home;
	rec->rec = r->rec;
	rec->room_id = r->room_id;
	persist_submit(r->env->persist, rec);
}

/* Give the request the next seq; deliver and ack it once it is durable. */
static void
room_sequence(struct room *r, struct member *m, struct room_user *u,
    const struct proto_req *req, enum frame_type type, const struct room_clock *now)
{
	struct stored_event ev;
	struct persist_rec *rec = NULL;
	struct pending *p;

	memset(&ev, 0, sizeof(ev));
	ev.ts = now->wall_ms > r->last_ts ? now->wall_ms : r->last_ts;
	ev.seq = ++r->seq;
	ev.type = persist_type(type);
	ev.user = u->name;
	ev.target = type == FRAME_MESSAGE ? 0 : req->target;
	ev.body = type == FRAME_MESSAGE || type == FRAME_EDIT ? req->body : NULL;
	ev.body_len = ev.body != NULL ? req->body_len : 0;
	ev.emoji = type == FRAME_REACTION ? req->emoji : NULL;
	ev.add = req->add;
	ev.id = req->has_id ? req->id : NULL;
	r->last_ts = ev.ts;

	authors_set(r, ev.seq, type == FRAME_MESSAGE ? u->idx + 1 : 0);
	if (type == FRAME_DELETE)
		author_mark_deleted(r, (uint64_t)req->target);
	if (req->has_id)
		dedupe_remember(r, u->idx, req->id, ev.seq, ev.ts);
	METRIC_INC(r->env->metrics, events);

	p = pending_add(r, PEND_EVENT, ++r->rec);
	p->type = (uint8_t)type;
	p->seq = ev.seq;
	p->target = (uint64_t)ev.target;
	p->f = event_frame(r, &ev);
	p->reply = ack_frame(r, req, ev.seq, ev.ts, NULL);
	p->m = m;
	if (r->env->persist != NULL) {
		rec = persist_rec_new(PERSIST_EVENT, u->name, ev.body, ev.body_len, ev.emoji, ev.id);
		rec->type = (uint8_t)ev.type;
		rec->add = (uint8_t)ev.add;
		rec->seq = ev.seq;
		rec->target = ev.target;
		rec->ts = ev.ts;
	}
	room_record(r, rec, now);
}

/* A reaction's state: add or remove one (1 when that changed anything). */
static int
reaction_set(struct room *r, uint64_t target, uint32_t uidx, const char *emoji, int add)
{
	struct reaction_key k = { target, uidx, emoji, strlen(emoji) };
	uint64_t h = reaction_hash(&k);
	struct reaction *x = (struct reaction *)htab_find(&r->reactions, h,
	    reaction_eq, &k);

	if (k.len == 0 || k.len > PROTO_EMOJI_MAX)
		return 0;
	if (add) {
		if (x != NULL)
			return 0;
		x = xcalloc(1, sizeof(*x));
		x->target = k.target;
		x->uidx = k.uidx;
		x->len = (uint8_t)k.len;
		memcpy(x->emoji, k.emoji, k.len);
		htab_insert(&r->reactions, &x->node, h);
		return 1;
	}
	if (x == NULL)
		return 0;
	htab_remove(&r->reactions, &x->node);
	free(x);
	return 1;
}

static enum room_step room_lookup_target(struct room *r, struct room_msg *msg);

static enum room_step
room_stream_request(struct room *r, struct room_msg *msg, struct room_user *u,
    const struct room_clock *now)
{
	static const enum frame_type types[PROTO_TYPE_COUNT] = {
		[PROTO_SEND] = FRAME_MESSAGE, [PROTO_EDIT] = FRAME_EDIT,
		[PROTO_DELETE] = FRAME_DELETE, [PROTO_REACT] = FRAME_REACTION,
	};
	const struct proto_req *req = &msg->req;
	struct member *m = msg->m;
	struct persist *persist = r->env->persist;
	struct dedupe *d;
	int64_t author;

	if (req->has_id && (d = dedupe_find(r, u->idx, req)) != NULL) {
		/* Behind the original's ack when that one still waits. */
		room_reply(r, m, MEMBER_EV_REPLY, ack_frame(r, req, d->seq, d->ts, "duplicate"));
		return STEP_DONE;
	}
	if (req->type != PROTO_SEND) {
		if ((author = live_author(r, req->target)) == AUTHOR_UNKNOWN)
			return room_lookup_target(r, msg);
		if (author < 0) {
			reply_error(r, m, req, "not_found",
			    "target is not a live message of this room");
			return STEP_DONE;
		}
		if (req->type != PROTO_REACT && (uint32_t)author != u->idx) {
			reply_error(r, m, req, "forbidden",
			    "only the author may edit or delete a message");
			return STEP_DONE;
		}
	}
	if (persist != NULL && persist_reserve(persist) != 0) {
		reply_unavailable(r, m, req, MEMBER_EV_REPLY);
		return STEP_DONE;
	}
	if (req->type == PROTO_REACT &&
	    !reaction_set(r, (uint64_t)req->target, u->idx, req->emoji, req->add)) {
		/* Nothing changes: no event, and the id is not remembered. */
		if (persist != NULL)
			persist_unreserve(persist);
		room_reply(r, m, MEMBER_EV_REPLY,
		    ack_frame(r, req, r->committed, now->wall_ms, "noop"));
		return STEP_DONE;
	}
	room_sequence(r, m, u, req, types[req->type], now);
	return STEP_DONE;
}

/* ---- typing, receipts, history ---------------------------------------------------- */

static void
room_typing(struct room *r, struct member *m, struct room_user *u,
    const struct proto_req *req, const struct room_clock *now)
{
	if (!req->active) {
		typing_stop(r, u);
		return;
	}
	u->typing_refresh = now->mono_ms;
	u->typing_member = m;
	if (!u->typing) {
		u->typing = 1;
		r->typers++;
	} else if (now->mono_ms - u->typing_sent < ROOM_TYPING_REFRESH_MS) {
		return;   /* still typing: say so again at most every 3 s */
	}
	u->typing_sent = now->mono_ms;
	typing_broadcast(r, u, 1);
}

/* A read position moves forward, is stored, then told to every member. */
static void
room_read(struct room *r, struct member *m, struct room_user *u,
    const struct proto_req *req, const struct room_clock *now)
{
	uint64_t seq = (uint64_t)req->seq < r->committed ? (uint64_t)req->seq : r->committed;
	struct persist_rec *rec = NULL;
	struct pending *p;
	json_t *o;

	if (seq <= u->read)
		return;   /* not forward: nothing to say */
	if (r->env->persist != NULL) {
		if (persist_reserve(r->env->persist) != 0) {
			reply_unavailable(r, m, req, MEMBER_EV_NOTICE);
			return;
		}
		rec = persist_rec_new(PERSIST_READ, u->name, NULL, 0, NULL, NULL);
		rec->seq = seq;
	}
	u->read = seq;
	o = proto_reply("receipt", NULL);
	json_object_set_new(o, "room", json_string(r->name));
	json_object_set_new(o, "user", json_string(u->name));
	json_object_set_new(o, "seq", json_integer((json_int_t)seq));
	p = pending_add(r, PEND_RECEIPT, ++r->rec);
	p->f = take_frame(o, FRAME_RECEIPT);
	room_record(r, rec, now);
}

/*
 * The history frame around frames fs[0..n) (ascending): the stored frames
 * are spliced in as they are, not encoded again.
 */
static struct frame *
history_frame(struct room *r, const struct proto_req *req, struct frame *const *fs,
    size_t n, int more)
{
	json_t *head = proto_reply("history", req);
	char *prefix, *p;
	size_t plen, len, cap;
	struct frame *f;

	json_object_set_new(head, "room", json_string(r->name));
	json_object_set_new(head, "more", json_boolean(more));
	prefix = json_dumps(head, JSON_COMPACT);
	json_decref(head);
	plen = strlen(prefix) - 1;   /* without its closing brace */
	cap = plen + 16;
	for (size_t i = 0; i < n; i++)
		cap += frame_payload_len(fs[i]) + 1;
	p = xmalloc(cap);
	memcpy(p, prefix, plen);
	free(prefix);
	len = plen;
	memcpy(p + len, ",\"events\":[", 11);
	len += 11;
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			p[len++] = ',';
		memcpy(p + len, frame_payload(fs[i]), frame_payload_len(fs[i]));
		len += frame_payload_len(fs[i]);
	}
	p[len++] = ']';
	p[len++] = '}';
	f = frame_from_text(p, len, FRAME_HISTORY);
	free(p);
	return f;
}

/*
 * How many of the newest frames fit the client's output bound (at least
 * one: a single event is never refused).
 */
static size_t
fit_newest(const struct room *r, struct frame *const *fs, size_t n)
{
	size_t bytes = 0, k;

	for (k = 0; k < n; k++) {
		bytes += frame_payload_len(fs[n - 1 - k]) + 1;
		if (r->env->reply_max_bytes != 0 && bytes > r->env->reply_max_bytes && k > 0)
			break;
	}
	return k;
}

static enum room_step room_history_db(struct room *r, struct room_msg *msg,
    uint64_t top);

/*
 * history: the latest limit events below before, ascending, each exactly
 * its (current) live frame; more when older ones exist. From the ring when
 * it holds the page, else (--db) from the database.
 */
static enum room_step
room_history(struct room *r, struct room_msg *msg)
{
	const struct proto_req *req = &msg->req;
	uint64_t oldest = ring_oldest(r), top = r->committed, from, floor;
	struct frame **fs = NULL;
	size_t n = 0, k;
	int more = 0;

	if (req->has_before && (uint64_t)req->before - 1 < top)
		top = (uint64_t)req->before - 1;
	from = top >= (uint64_t)req->limit ? top - (uint64_t)req->limit + 1 : 1;
	/* What exists below the ring: the database's (--db), else nothing. */
	floor = r->env->persist != NULL ? 1 : oldest;
	if (top > 0 && from < oldest && r->env->persist != NULL)
		return room_history_db(r, msg, top);
	if (top >= oldest && top > 0) {
		if (from < oldest)
			from = oldest;
		n = (size_t)(top - from + 1);
		fs = xmalloc(n * sizeof(*fs));
		for (uint64_t s = from; s <= top; s++)
			fs[s - from] = ring_at(r, s)->f;
		k = fit_newest(r, fs, n);
		from += n - k;
		more = from > floor;
		memmove(fs, fs + (n - k), k * sizeof(*fs));
		n = k;
	}
	room_reply(r, msg->m, MEMBER_EV_REPLY, history_frame(r, req, fs, n, more));
	free(fs);
	return STEP_DONE;
}

/* ---- reads from the database ------------------------------------------------------- */

/* The room's mailbox may go on (the read that held it is over). */
static void
room_resume(struct room *r)
{
	if (!r->parked)
		return;
	r->parked = 0;
	r->env->resume(r->env->ctx, r);
}

static int
result_ok(const PGresult *r)
{
	return PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
}

static int
results_ok(PGresult *const *res, int nres, int want)
{
	if (res == NULL || nres != want)
		return 0;
	for (int i = 0; i < nres; i++)
		if (!result_ok(res[i]))
			return 0;
	return 1;
}

static const char *
results_error(PGresult *const *res, int nres, const char *error)
{
	if (error != NULL)
		return error;
	for (int i = 0; i < nres; i++)
		if (!result_ok(res[i]))
			return PQresultErrorMessage(res[i]);
	return "unexpected results";
}

static void
log_read_failed(const struct room *r, const char *what, PGresult *const *res,
    int nres, const char *error)
{
	log_warn("db_read_failed room=%s read=%s error=\"%s\"", r->name, what,
	    results_error(res, nres, error));
}

static void
history_done(void *arg, PGresult *const *res, int nres, const char *error)
{
	struct room *r = arg;
	struct room_msg *msg = r->stalled;
	struct frame **fs;
	size_t n = 0, k;
	int rows, more;

	r->blocked = 0;
	r->stalled = NULL;
	if (!results_ok(res, nres, 1)) {
		log_read_failed(r, "history", res, nres, error);
		reply_unavailable(r, msg->m, &msg->req, MEMBER_EV_REPLY);
		room_msg_free(msg);
		room_resume(r);
		return;
	}
	rows = PQntuples(res[0]);
	more = rows > msg->req.limit;
	if (more)
		rows = (int)msg->req.limit;
	fs = xmalloc(((size_t)rows + 1) * sizeof(*fs));
	/* Newest first from the database; the frame wants them ascending. */
	for (int i = rows - 1; i >= 0; i--) {
		struct stored_event ev;

		if (store_event_row(res[0], i, &ev) == 0)
			fs[n++] = event_frame(r, &ev);
	}
	k = fit_newest(r, fs, n);
	if (k < n)
		more = 1;
	room_reply(r, msg->m, MEMBER_EV_REPLY, history_frame(r, &msg->req, fs + (n - k), k, more));
	for (size_t i = 0; i < n; i++)
		frame_unref(fs[i]);
	free(fs);
	room_msg_free(msg);
	room_resume(r);
}

/* Start a read for msg; the mailbox waits for it. */
static enum room_step
room_read_db(struct room *r, struct room_msg *msg, char *sql, db_reader_cb *cb)
{
	if (db_reader_query(r->env->reader, sql, cb, r) == NULL) {
		reply_unavailable(r, msg->m, &msg->req, MEMBER_EV_REPLY);
		return STEP_DONE;
	}
	r->blocked = 1;
	return STEP_STALL;
}

static enum room_step
room_history_db(struct room *r, struct room_msg *msg, uint64_t top)
{
	return room_read_db(r, msg, store_sql_page(r->name, top, (unsigned)msg->req.limit),
	    history_done);
}

/* An old message's author, deletion and reactions: now the room knows it. */
static void
target_done(void *arg, PGresult *const *res, int nres, const char *error)
{
	struct room *r = arg;
	uint64_t target = (uint64_t)r->stalled->req.target;
	uint32_t author = 0;

	r->blocked = 0;
	if (!results_ok(res, nres, STORE_TARGET_RESULTS)) {
		log_read_failed(r, "target", res, nres, error);
		reply_unavailable(r, r->stalled->m, &r->stalled->req, MEMBER_EV_REPLY);
		room_msg_free(r->stalled);
		r->stalled = NULL;
		room_resume(r);
		return;
	}
	if (PQntuples(res[0]) == 1 && strcmp(PQgetvalue(res[0], 0, 0), "message") == 0)
		author = user_get(r, PQgetvalue(res[0], 0, 1))->idx + 1;
	if (author != 0 && PQntuples(res[1]) == 1 && PQgetvalue(res[1], 0, 0)[0] == 't')
		author |= AUTHOR_DELETED;
	if (old_find(r, target) == NULL)
		old_add(r, target, author);
	for (int i = 0; i < PQntuples(res[2]); i++)
		reaction_set(r, target, user_get(r, PQgetvalue(res[2], i, 0))->idx,
		    PQgetvalue(res[2], i, 1), PQgetvalue(res[2], i, 2)[0] == 't');
	room_resume(r);   /* the request runs again, knowing its target */
}

static enum room_step
room_lookup_target(struct room *r, struct room_msg *msg)
{
	return room_read_db(r, msg, store_sql_target(r->name, (uint64_t)msg->req.target),
	    target_done);
}

/* ---- activation --------------------------------------------------------------------- */

/* The room could not be loaded: every join waiting for it is refused. */
static void
refuse_waiting(struct room *r)
{
	struct mailbox_msg *mm;

	while ((mm = mailbox_take(&r->mb)) != NULL) {
		struct room_msg *msg = (struct room_msg *)mm;

		if (msg->base.kind == ROOM_MSG_JOIN && !msg->rejoin)
			member_send(r, msg->m, MEMBER_EV_REFUSED, error_frame(r, &msg->req,
			    "unavailable", "the database is unavailable; retry later",
			    persist_retry_ms(r->env->persist)));
		else
			log_error("room_unloaded_request room=%s kind=%d", r->name, msg->base.kind);
		room_msg_free(msg);
	}
}

static void
load_events(struct room *r, const PGresult *res)
{
	int n = PQntuples(res);

	r->ring_first = r->authors_base = r->seq + 1;
	if (n == 0)
		return;
	r->ring_first = r->authors_base = (uint64_t)store_int(res, n - 1, 0);
	for (int i = n - 1; i >= 0; i--) {   /* oldest first */
		struct stored_event ev;
		uint32_t uidx;

		if (store_event_row(res, i, &ev) != 0)
			continue;
		uidx = user_get(r, ev.user)->idx;
		ring_put(r, ev.seq, frame_of[ev.type], (uint64_t)ev.target, event_frame(r, &ev));
		authors_set(r, ev.seq, ev.type == PERSIST_MESSAGE ? uidx + 1 : 0);
		if ((uint64_t)ev.target < r->authors_base)
			continue;   /* about an older message: looked up when needed */
		if (ev.type == PERSIST_DELETE)
			author_mark_deleted(r, (uint64_t)ev.target);
		else if (ev.type == PERSIST_REACTION && ev.emoji != NULL)
			reaction_set(r, (uint64_t)ev.target, uidx, ev.emoji, ev.add);
	}
}

/* res: as store_sql_activate says (res[0] made the room's row if new). */
static void
load_state(struct room *r, PGresult *const *res)
{
	const PGresult *ids = res[3], *reads = res[4];

	r->room_id = store_int(res[1], 0, 0);
	r->seq = r->committed = (uint64_t)store_int(res[1], 0, 1);
	r->last_ts = store_int(res[1], 0, 2);
	load_events(r, res[2]);
	/* Oldest first, so the window forgets them in their order. */
	for (int i = PQntuples(ids) - 1; i >= 0; i--) {
		const char *id = PQgetvalue(ids, i, 1);

		if (strlen(id) <= PROTO_ID_MAX)
			dedupe_remember(r, user_get(r, PQgetvalue(ids, i, 0))->idx, id,
			    (uint64_t)store_int(ids, i, 2), store_int(ids, i, 3));
	}
	for (int i = 0; i < PQntuples(reads); i++)
		user_get(r, PQgetvalue(reads, i, 0))->read = (uint64_t)store_int(reads, i, 1);
}

static void
activate_done(void *arg, PGresult *const *res, int nres, const char *error)
{
	struct room *r = arg;

	r->loading = 0;
	if (!results_ok(res, nres, STORE_ACTIVATE_RESULTS) || PQntuples(res[1]) != 1) {
		log_read_failed(r, "activate", res, nres, error);
		refuse_waiting(r);
	} else {
		load_state(r, res);
		r->loaded = 1;
		log_debug("room_loaded room=%s seq=%llu", r->name, (unsigned long long)r->seq);
	}
	room_resume(r);
}

/* First touch: load the room before anything else happens in it. */
static void
room_activate(struct room *r)
{
	char *sql = store_sql_activate(r->name, ROOM_LOAD_EVENTS, ROOM_DEDUPE_WINDOW);

	if (db_reader_query(r->env->reader, sql, activate_done, r) == NULL)
		refuse_waiting(r);   /* the database is down: say so now */
	else
		r->loading = 1;
}

void
room_abandon_reads(struct room *r)
{
	if (r->loading) {
		r->loading = 0;
		refuse_waiting(r);
	}
	if (r->blocked) {
		r->blocked = 0;
		reply_unavailable(r, r->stalled->m, &r->stalled->req, MEMBER_EV_REPLY);
		room_msg_free(r->stalled);
		r->stalled = NULL;
	}
	r->parked = 0;
}

/* ---- requests ---------------------------------------------------------------------- */

static enum room_step
room_request(struct room *r, struct room_msg *msg, const struct room_clock *now)
{
	struct member *m = msg->m;
	struct room_user *u = user_find(r, m->user);

	if (u == NULL || u->conns == 0) {
		/* cannot happen: the worker sends only for joined members */
		if (msg->req.type != PROTO_TYPING && msg->req.type != PROTO_READ)
			reply_error(r, m, &msg->req, "not_member", "join the room first");
		return STEP_DONE;
	}
	switch (msg->req.type) {
	case PROTO_SEND:
	case PROTO_EDIT:
	case PROTO_DELETE:
	case PROTO_REACT:
		return room_stream_request(r, msg, u, now);
	case PROTO_TYPING:
		room_typing(r, m, u, &msg->req, now);
		return STEP_DONE;
	case PROTO_READ:
		room_read(r, m, u, &msg->req, now);
		return STEP_DONE;
	case PROTO_HISTORY:
		return room_history(r, msg);
	default:
		reply_error(r, m, &msg->req, "bad_request", "not a room request");
		return STEP_DONE;
	}
}

static enum room_step
room_handle(struct room *r, struct room_msg *msg, const struct room_clock *now)
{
	switch (msg->base.kind) {
	case ROOM_MSG_JOIN:
		room_join(r, msg);
		return STEP_DONE;
	case ROOM_MSG_LEAVE:
		return room_leave(r, msg, now);
	default:
		return room_request(r, msg, now);
	}
}

/* ---- running --------------------------------------------------------------------- */

int
room_run(struct room *r, unsigned budget, const struct room_clock *now)
{
	struct mailbox_msg *mm;

	if (!r->loaded && !r->loading && mailbox_pending(&r->mb))
		room_activate(r);
	if (r->loading || r->blocked) {
		/* Still scheduled: pushes wait, the read's callback resumes us. */
		r->parked = 1;
		return 0;
	}
	for (unsigned n = 0; n < budget; n++) {
		struct room_msg *msg = r->stalled;

		if (msg != NULL)
			r->stalled = NULL;
		else if ((mm = mailbox_take(&r->mb)) != NULL)
			msg = (struct room_msg *)mm;
		else
			break;
		switch (room_handle(r, msg, now)) {
		case STEP_DONE:
			room_msg_free(msg);
			break;
		case STEP_KEPT:
			break;
		case STEP_STALL:
			r->stalled = msg;
			r->parked = 1;
			return 0;
		}
	}
	if (mailbox_pending(&r->mb))
		return 1;   /* still scheduled: run again after other work */
	/*
	 * Going idle. Clear, then fence (store-load, the other half of
	 * room_push's): a producer that saw scheduled == 1 pushed before our
	 * clear became visible, so the check below sees its message and we
	 * schedule ourselves again for it.
	 */
	ck_pr_fas_int(&r->scheduled, 0);
	ck_pr_fence_memory();
	if (mailbox_pending(&r->mb) && ck_pr_cas_int(&r->scheduled, 0, 1))
		return 1;
	return 0;
}

int
room_wants_tick(const struct room *r)
{
	if (r->typers > 0)
		return 1;
	return r->members == 0 && !(r->env->keep_events && r->seq > 0);
}

static void
typing_expire(struct hnode *n, void *arg)
{
	struct room_user *u = (struct room_user *)n;
	void **a = arg;
	struct room *r = a[0];
	const struct room_clock *now = a[1];

	if (u->typing && now->mono_ms - u->typing_refresh >= ROOM_TYPING_EXPIRE_MS)
		typing_stop(r, u);
}

enum room_tick_result
room_tick(struct room *r, const struct room_clock *now)
{
	if (r->typers > 0) {
		void *arg[2] = { r, (void *)now };

		htab_each(&r->users, typing_expire, arg);
	}
	if (r->members > 0)
		return r->typers > 0 ? ROOM_TICK_KEEP : ROOM_TICK_IDLE;
	if (r->env->keep_events && r->seq > 0)
		return ROOM_TICK_IDLE;   /* memory mode: the stream lives here */
	if (now->mono_ms - r->idle_since < r->env->idle_ms ||
	    ck_pr_load_int(&r->refs) != 0 || ck_pr_load_int(&r->scheduled) ||
	    mailbox_pending(&r->mb) || r->npending > 0 || r->stalled != NULL ||
	    r->loading || r->blocked)
		return ROOM_TICK_KEEP;
	ck_pr_fence_acquire();   /* pairs with room_release */
	return ROOM_TICK_FREE;
}

/* ---- messages --------------------------------------------------------------------- */

void
room_msg_free(struct room_msg *msg)
{
	if (msg == NULL)
		return;
	proto_req_free(&msg->req);
	free(msg);
}

void
member_msg_free(struct member_msg *mm)
{
	if (mm == NULL)
		return;
	frame_unref(mm->reply);
	for (size_t i = 0; i < mm->nreplay; i++)
		frame_unref(mm->replay[i]);
	free(mm->replay);
	free(mm);
}

void
deliver_msg_free(struct deliver_msg *dm)
{
	frame_unref(dm->f);
	free(dm);
}
