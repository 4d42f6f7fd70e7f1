#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>
#include <jansson.h>

#include "metrics.h"
#include "room.h"
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

static void
reply_error(struct room *r, struct member *m, const struct proto_req *req,
    const char *code, const char *message)
{
	json_t *o = proto_reply("error", req);

	json_object_set_new(o, "code", json_string(code));
	json_object_set_new(o, "message", json_string(message));
	member_send(r, m, MEMBER_EV_REPLY, take_frame(o, FRAME_ERROR));
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

/* The oldest seq the ring still holds (1 when it holds them all). */
static uint64_t
ring_oldest(const struct room *r)
{
	return r->seq >= r->ring_cap ? r->seq - r->ring_cap + 1 : 1;
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
	if (r->ring != NULL && (seq < r->ring_cap || r->ring_cap >= max))
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
	return r;
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
	if (r->ring != NULL)
		for (size_t i = 0; i < r->ring_cap; i++)
			frame_unref(r->ring[i].f);
	htab_each(&r->users, free_node, NULL);
	htab_each(&r->reactions, free_node, NULL);
	htab_each(&r->ids, free_node, NULL);
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
	json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
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
	if (!req->has_since || (uint64_t)req->since >= r->seq || r->ring == NULL)
		return;
	from = (uint64_t)req->since + 1;
	oldest = ring_oldest(r);
	if (r->seq - oldest + 1 > ROOM_REPLAY_MAX)
		oldest = r->seq - ROOM_REPLAY_MAX + 1;
	if (from < oldest) {
		from = oldest;
		*truncated = 1;
	}
	for (s = r->seq; s >= from; s--) {
		bytes += ring_at(r, s)->f->len;
		if (r->env->reply_max_bytes != 0 && bytes > r->env->reply_max_bytes) {
			from = s + 1;
			*truncated = 1;
			break;
		}
	}
	if (from > r->seq)
		return;
	mm->replay = xmalloc((size_t)(r->seq - from + 1) * sizeof(*mm->replay));
	for (s = from; s <= r->seq; s++) {
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
		json_t *o = proto_reply("error", &msg->req);

		json_object_set_new(o, "code", json_string("forbidden"));
		json_object_set_new(o, "message",
		    json_string("this direct-message room admits only its two users"));
		member_send(r, m, MEMBER_EV_REFUSED, take_frame(o, FRAME_ERROR));
		return;
	}
	u = user_get(r, m->user);
	if (msg->rejoin) {
		/* Already a member: the current state, nothing replayed again. */
		member_send(r, m, MEMBER_EV_REPLY, joined_frame(r, &msg->req, u, 0));
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
room_leave(struct room *r, struct room_msg *msg, const struct room_clock *now)
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

static void
ack(struct room *r, struct member *m, const struct proto_req *req, uint64_t seq,
    int64_t ts, const char *flag)
{
	json_t *o = proto_reply("ack", req);

	json_object_set_new(o, "room", json_string(r->name));
	json_object_set_new(o, "seq", json_integer((json_int_t)seq));
	json_object_set_new(o, "ts", json_integer(ts));
	if (req->has_id)
		json_object_set_new(o, "id", json_string(req->id));
	if (flag != NULL)
		json_object_set_new(o, flag, json_true());
	member_send(r, m, MEMBER_EV_REPLY, take_frame(o, FRAME_ACK));
}

/* The target's author index, or -1 unless it is a live message. */
static int64_t
live_author(const struct room *r, int64_t target)
{
	uint32_t a;

	if (target < 1 || (uint64_t)target > r->seq)
		return -1;
	a = r->authors[target];
	if (a == 0 || (a & AUTHOR_DELETED))
		return -1;
	return (int64_t)(a - 1);
}

static void
authors_set(struct room *r, uint64_t seq, uint32_t value)
{
	if (seq >= r->authors_cap) {
		size_t cap = r->authors_cap ? r->authors_cap * 2 : 64;

		while (cap <= seq)
			cap *= 2;
		r->authors = xrealloc(r->authors, cap * sizeof(*r->authors));
		memset(r->authors + r->authors_cap, 0,
		    (cap - r->authors_cap) * sizeof(*r->authors));
		r->authors_cap = cap;
	}
	r->authors[seq] = value;
}

/* History and replay show a deleted message and its edits emptied. */
static void
ring_mark_deleted(struct room *r, uint64_t target)
{
	uint64_t oldest = ring_oldest(r);

	for (uint64_t s = oldest; s <= r->seq; s++) {
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

/* Give the request the next seq, keep it, fan it out, ack it. */
static void
room_sequence(struct room *r, struct member *m, struct room_user *u,
    const struct proto_req *req, enum frame_type type, const struct room_clock *now)
{
	static const char *const names[FRAME_TYPE_COUNT] = {
		[FRAME_MESSAGE] = "message", [FRAME_EDIT] = "edit",
		[FRAME_DELETE] = "delete", [FRAME_REACTION] = "reaction",
	};
	json_t *o = proto_reply(names[type], NULL);
	struct ring_slot *slot;
	int64_t ts = now->wall_ms > r->last_ts ? now->wall_ms : r->last_ts;
	uint64_t seq = ++r->seq;
	struct frame *f;

	r->last_ts = ts;
	json_object_set_new(o, "room", json_string(r->name));
	json_object_set_new(o, "seq", json_integer((json_int_t)seq));
	if (type != FRAME_MESSAGE)
		json_object_set_new(o, "target", json_integer(req->target));
	json_object_set_new(o, "user", json_string(u->name));
	if (type == FRAME_MESSAGE || type == FRAME_EDIT)
		json_object_set_new(o, "body", json_stringn(req->body, req->body_len));
	if (type == FRAME_REACTION) {
		json_object_set_new(o, "emoji", json_string(req->emoji));
		json_object_set_new(o, "add", json_boolean(req->add));
	}
	json_object_set_new(o, "ts", json_integer(ts));
	if (req->has_id)
		json_object_set_new(o, "id", json_string(req->id));
	f = take_frame(o, type);

	authors_set(r, seq, type == FRAME_MESSAGE ? u->idx + 1 : 0);
	if (type == FRAME_DELETE) {
		r->authors[req->target] |= AUTHOR_DELETED;
		ring_mark_deleted(r, (uint64_t)req->target);
	}
	ring_reserve(r, seq);
	slot = ring_at(r, seq);
	frame_unref(slot->f);
	slot->seq = seq;
	slot->target = type == FRAME_MESSAGE ? 0 : (uint64_t)req->target;
	slot->type = (uint8_t)type;
	frame_ref(f);
	slot->f = f;
	if (req->has_id)
		dedupe_remember(r, u->idx, req->id, seq, ts);
	METRIC_INC(r->env->metrics, events);
	room_broadcast(r, f, 1, NULL);
	ack(r, m, req, seq, ts, NULL);
}

/* react: a no-op answers with an ack and makes no event. */
static int
reaction_apply(struct room *r, struct room_user *u, const struct proto_req *req)
{
	struct reaction_key k = { (uint64_t)req->target, u->idx, req->emoji,
	    strlen(req->emoji) };
	uint64_t h = reaction_hash(&k);
	struct reaction *x = (struct reaction *)htab_find(&r->reactions, h,
	    reaction_eq, &k);

	if (req->add) {
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

static void
room_stream_request(struct room *r, struct member *m, struct room_user *u,
    const struct proto_req *req, const struct room_clock *now)
{
	static const enum frame_type types[PROTO_TYPE_COUNT] = {
		[PROTO_SEND] = FRAME_MESSAGE, [PROTO_EDIT] = FRAME_EDIT,
		[PROTO_DELETE] = FRAME_DELETE, [PROTO_REACT] = FRAME_REACTION,
	};
	struct dedupe *d;
	int64_t author;

	if (req->has_id && (d = dedupe_find(r, u->idx, req)) != NULL) {
		ack(r, m, req, d->seq, d->ts, "duplicate");
		return;
	}
	if (req->type != PROTO_SEND) {
		if ((author = live_author(r, req->target)) < 0) {
			reply_error(r, m, req, "not_found",
			    "target is not a live message of this room");
			return;
		}
		if (req->type != PROTO_REACT && (uint32_t)author != u->idx) {
			reply_error(r, m, req, "forbidden",
			    "only the author may edit or delete a message");
			return;
		}
		if (req->type == PROTO_REACT && !reaction_apply(r, u, req)) {
			/* Nothing changes: no event, and the id is not remembered. */
			ack(r, m, req, r->seq, now->wall_ms, "noop");
			return;
		}
	}
	room_sequence(r, m, u, req, types[req->type], now);
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

static void
room_read(struct room *r, struct room_user *u, const struct proto_req *req)
{
	uint64_t seq = (uint64_t)req->seq < r->seq ? (uint64_t)req->seq : r->seq;
	json_t *o;

	if (seq <= u->read)
		return;   /* not forward: nothing to say */
	u->read = seq;
	o = proto_reply("receipt", NULL);
	json_object_set_new(o, "room", json_string(r->name));
	json_object_set_new(o, "user", json_string(u->name));
	json_object_set_new(o, "seq", json_integer((json_int_t)seq));
	room_broadcast(r, take_frame(o, FRAME_RECEIPT), 0, NULL);
}

/*
 * history: the latest limit events below before, ascending, each exactly
 * its (current) live frame; more when older ones are still kept. The
 * stored frames are spliced in as they are, not encoded again.
 */
static void
room_history(struct room *r, struct member *m, const struct proto_req *req)
{
	uint64_t oldest = ring_oldest(r);
	uint64_t top = r->seq, from = 1, s;
	json_t *head = proto_reply("history", req);
	char *prefix, *p;
	size_t plen, len, cap;

	if (req->has_before && (uint64_t)req->before - 1 < top)
		top = (uint64_t)req->before - 1;
	if (r->ring == NULL || top < oldest) {
		top = 0;              /* nothing kept below before */
	} else {
		size_t bytes = 0;

		from = top >= (uint64_t)req->limit ? top - (uint64_t)req->limit + 1 : 1;
		if (from < oldest)
			from = oldest;
		/* No more than the client's output limit allows: more says so. */
		for (s = top; s >= from; s--) {
			bytes += frame_payload_len(ring_at(r, s)->f) + 1;
			if (r->env->reply_max_bytes != 0 && bytes > r->env->reply_max_bytes &&
			    s < top) {
				from = s + 1;
				break;
			}
		}
	}
	json_object_set_new(head, "room", json_string(r->name));
	json_object_set_new(head, "more", json_boolean(top > 0 && from > oldest));
	prefix = json_dumps(head, JSON_COMPACT);
	json_decref(head);
	plen = strlen(prefix) - 1;   /* without its closing brace */
	cap = plen + 16;
	for (s = from; s <= top; s++)
		cap += frame_payload_len(ring_at(r, s)->f) + 1;
	p = xmalloc(cap);
	memcpy(p, prefix, plen);
	free(prefix);
	len = plen;
	memcpy(p + len, ",\"events\":[", 11);
	len += 11;
	for (s = from; s <= top; s++) {
		const struct frame *f = ring_at(r, s)->f;

		if (s > from)
			p[len++] = ',';
		memcpy(p + len, frame_payload(f), frame_payload_len(f));
		len += frame_payload_len(f);
	}
	p[len++] = ']';
	p[len++] = '}';
	member_send(r, m, MEMBER_EV_REPLY, frame_from_text(p, len, FRAME_HISTORY));
	free(p);
}

static void
room_request(struct room *r, struct room_msg *msg, const struct room_clock *now)
{
	struct member *m = msg->m;
	struct room_user *u = user_find(r, m->user);

	if (u == NULL || u->conns == 0) {
		/* cannot happen: the worker sends only for joined members */
		if (msg->req.type != PROTO_TYPING && msg->req.type != PROTO_READ)
			reply_error(r, m, &msg->req, "not_member", "join the room first");
		return;
	}
	switch (msg->req.type) {
	case PROTO_SEND:
	case PROTO_EDIT:
	case PROTO_DELETE:
	case PROTO_REACT:
		room_stream_request(r, m, u, &msg->req, now);
		break;
	case PROTO_TYPING:
		room_typing(r, m, u, &msg->req, now);
		break;
	case PROTO_READ:
		room_read(r, u, &msg->req);
		break;
	case PROTO_HISTORY:
		room_history(r, m, &msg->req);
		break;
	default:
		reply_error(r, m, &msg->req, "bad_request", "not a room request");
		break;
	}
}

/* ---- running --------------------------------------------------------------------- */

int
room_run(struct room *r, unsigned budget, const struct room_clock *now)
{
	struct mailbox_msg *mm;

	for (unsigned n = 0; n < budget; n++) {
		struct room_msg *msg;

		if ((mm = mailbox_take(&r->mb)) == NULL)
			break;
		msg = (struct room_msg *)mm;
		switch (msg->base.kind) {
		case ROOM_MSG_JOIN:
			room_join(r, msg);
			break;
		case ROOM_MSG_LEAVE:
			room_leave(r, msg, now);
			break;
		default:
			room_request(r, msg, now);
			break;
		}
		room_msg_free(msg);
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
	    mailbox_pending(&r->mb))
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
