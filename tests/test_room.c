/*
 * test_room.c - the room actor, driven without threads: requests are pushed
 * into its mailbox and run with room_run() under a clock the test controls,
 * and everything it posts (JOINED/REPLY/LEFT/REFUSED to members, DELIVER to
 * workers) is captured by the env's post callback and checked frame by
 * frame against PROTOCOL.md sections 3-5: seq without gaps, dedupe by
 * (user, id) and its window, edit/delete/react rules, replay and its
 * truncation, history paging, the byte bound on both, presence counting
 * per user, typing refresh and expiry, read receipts, dm admission, and
 * when a room may be freed.
 *
 * Frames are compared as whole JSON objects (json_equal): a missing or an
 * extra key fails, so "truncated" and friends must be absent unless true.
 */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <jansson.h>

#include "unit.h"

#include "frame.h"
#include "mailbox.h"
#include "metrics.h"
#include "persist.h"
#include "proto.h"
#include "room.h"

#define ROOM "lobby"
#define T0 1700000000000LL        /* wall clock at the start of each test */
#define M0 1000000ULL             /* monotonic clock at the start */
#define IDLE_MS 30000
#define MAX_BODY 4000
#define W(i) (1u << (i))
#define ACK "{'type':'ack','room':'lobby','seq':%d,'ts':%lld}"
#define LETTERS "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz" \
	"abcdefghijklmnopqrstuvwxyz"
#define PRESENCE(user, status) \
	"{'type':'presence','room':'lobby','user':'" user "','status':'" status "'}"
#define THUMBS "\xf0\x9f\x91\x8d"  /* U+1F44D, 4 bytes of UTF-8 */

/* Assertions reported at the caller's line (helpers get it by macro). */
#define CHECK_AT(cond, line, what) \
	CU_assertImplementation((cond) ? CU_TRUE : CU_FALSE, (unsigned)(line), \
	    (what), __FILE__, "", CU_FALSE)
#define FATAL_AT(cond, line, what) \
	CU_assertImplementation((cond) ? CU_TRUE : CU_FALSE, (unsigned)(line), \
	    (what), __FILE__, "", CU_TRUE)

/* ---- the fixture: one room, a capturing env, a clock --------------------- */

struct posted {
	unsigned w;
	struct mailbox_msg *msg;
};

struct fx {
	struct room_env env;
	struct room *r;
	struct room_clock now;
	struct posted *q;         /* everything the room posted, in order */
	size_t nq, qcap;
	struct member **mem;      /* every member allocated, freed at the end */
	size_t nmem, memcap;
	/* database mode (fx_init_db): the test plays the persistence thread */
	struct persist *persist;  /* == env.persist; never started */
	uint64_t rec_seen;        /* last record taken from its mailbox */
	uint64_t rec_done;        /* last record committed (places given back) */
};

static void
capture_post(void *ctx, unsigned w, struct mailbox_msg *msg)
{
	struct fx *fx = ctx;

	CU_ASSERT(w < fx->env.nworkers);
	CU_ASSERT(msg->kind == ROOM_OUT_DELIVER || msg->kind == ROOM_OUT_MEMBER);
	if (fx->nq == fx->qcap) {
		fx->qcap = fx->qcap ? fx->qcap * 2 : 64;
		fx->q = realloc(fx->q, fx->qcap * sizeof(*fx->q));
		CU_ASSERT_PTR_NOT_NULL_FATAL(fx->q);
	}
	fx->q[fx->nq].w = w;
	fx->q[fx->nq].msg = msg;
	fx->nq++;
}

/* What a worker does with a message it will not look at: LEFT drops the ref. */
static void
posted_free(struct mailbox_msg *msg)
{
	if (msg->kind == ROOM_OUT_MEMBER) {
		struct member_msg *mm = (struct member_msg *)msg;

		if (mm->event == MEMBER_EV_LEFT)
			room_release(mm->room);
		member_msg_free(mm);
	} else {
		deliver_msg_free((struct deliver_msg *)msg);
	}
}

static void
fx_drop(struct fx *fx)
{
	for (size_t i = 0; i < fx->nq; i++)
		posted_free(fx->q[i].msg);
	fx->nq = 0;
}

static void
fx_remove(struct fx *fx, size_t i)
{
	memmove(&fx->q[i], &fx->q[i + 1], (fx->nq - i - 1) * sizeof(*fx->q));
	fx->nq--;
}

static void
fx_init(struct fx *fx, const char *name, unsigned nworkers, int keep_events)
{
	struct metrics *mt = aligned_alloc(64, sizeof(*mt));

	CU_ASSERT_PTR_NOT_NULL_FATAL(mt);
	memset(mt, 0, sizeof(*mt));
	memset(fx, 0, sizeof(*fx));
	fx->env.nworkers = nworkers;
	fx->env.post = capture_post;
	fx->env.ctx = fx;
	fx->env.metrics = mt;
	fx->env.idle_ms = IDLE_MS;
	fx->env.keep_events = keep_events;
	fx->now.wall_ms = T0;
	fx->now.mono_ms = M0;
	fx->r = room_new(name, strlen(name), room_home(name, strlen(name), nworkers),
	    &fx->env);
	CU_ASSERT_PTR_NOT_NULL_FATAL(fx->r);
	CU_ASSERT_EQUAL(fx->r->seq, 0);
}

static void
fx_done(struct fx *fx)
{
	fx_drop(fx);
	room_free(fx->r);
	for (size_t i = 0; i < fx->nmem; i++)
		free(fx->mem[i]);
	free(fx->mem);
	free(fx->q);
	free(fx->env.metrics);
}

static struct member *
member_new(struct fx *fx, unsigned worker, const char *user)
{
	struct member *m = calloc(1, sizeof(*m));

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	m->worker = worker;
	snprintf(m->user, sizeof(m->user), "%s", user);
	if (fx->nmem == fx->memcap) {
		fx->memcap = fx->memcap ? fx->memcap * 2 : 16;
		fx->mem = realloc(fx->mem, fx->memcap * sizeof(*fx->mem));
		CU_ASSERT_PTR_NOT_NULL_FATAL(fx->mem);
	}
	fx->mem[fx->nmem++] = m;
	return m;
}

/* ---- requests ------------------------------------------------------------ */

/* The JSON in this file is written with ' for ". */
static void
unquote(char *s)
{
	for (; *s != '\0'; s++)
		if (*s == '\'')
			*s = '"';
}

/*
 * A request to the room, decoded by the real decoder from
 * {"room": <the room>, <fields>}.
 */
static struct room_msg * __attribute__((format(printf, 4, 0)))
vmsg_new(struct fx *fx, int kind, struct member *m, const char *fmt, va_list ap)
{
	char fields[8192], text[8400];
	struct room_msg *msg = calloc(1, sizeof(*msg));
	const char *err = NULL;
	enum proto_status st;

	CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
	vsnprintf(fields, sizeof(fields), fmt, ap);
	snprintf(text, sizeof(text), "{'room':'%s',%s}", fx->r->name, fields);
	unquote(text);
	st = proto_decode(text, strlen(text), MAX_BODY, &msg->req, &err);
	if (st != PROTO_OK)
		fprintf(stderr, "\n  cannot decode %s: %s\n", text, err);
	CU_ASSERT_FATAL(st == PROTO_OK);
	msg->base.kind = kind;
	msg->m = m;
	return msg;
}

static struct room_msg * __attribute__((format(printf, 4, 5)))
msg_new(struct fx *fx, int kind, struct member *m, const char *fmt, ...)
{
	struct room_msg *msg;
	va_list ap;

	va_start(ap, fmt);
	msg = vmsg_new(fx, kind, m, fmt, ap);
	va_end(ap);
	return msg;
}

static void
run(struct fx *fx)
{
	CU_ASSERT_EQUAL(room_run(fx->r, 1u << 20, &fx->now), 0);
}

/* A ROOM_MSG_REQUEST from m, handled at once. */
static void __attribute__((format(printf, 3, 4)))
req(struct fx *fx, struct member *m, const char *fmt, ...)
{
	struct room_msg *msg;
	va_list ap;

	va_start(ap, fmt);
	msg = vmsg_new(fx, ROOM_MSG_REQUEST, m, fmt, ap);
	va_end(ap);
	room_push(fx->r, msg);
	run(fx);
}

/* A join (fields after "type":"join", may be ""), handled at once. */
static void __attribute__((format(printf, 3, 4)))
join(struct fx *fx, struct member *m, const char *fmt, ...)
{
	char fields[512];
	struct room_msg *msg;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fields, sizeof(fields), fmt, ap);
	va_end(ap);
	msg = msg_new(fx, ROOM_MSG_JOIN, m, "'type':'join'%s%s",
	    fields[0] != '\0' ? "," : "", fields);
	room_push(fx->r, msg);
	run(fx);
}

static void
leave(struct fx *fx, struct member *m, int silent, const char *ref)
{
	struct room_msg *msg;

	if (ref != NULL)
		msg = msg_new(fx, ROOM_MSG_LEAVE, m, "'type':'leave','ref':'%s'", ref);
	else
		msg = msg_new(fx, ROOM_MSG_LEAVE, m, "'type':'leave'");
	msg->silent = (uint8_t)silent;
	room_push(fx->r, msg);
	run(fx);
}

static int64_t
json_int(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* o[key] if it is a string, else "". */
static const char *
jstr(const json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v != NULL ? v : "";
}

/* a[i] if it is a string, else "". */
static const char *
jstr_at(const json_t *a, size_t i)
{
	const char *v = json_string_value(json_array_get(a, i));

	return v != NULL ? v : "";
}

/* ---- what the room posted ------------------------------------------------ */

static json_t *
frame_json(const struct frame *f)
{
	return json_loadb(frame_payload(f), frame_payload_len(f), 0, NULL);
}

static json_t * __attribute__((format(printf, 1, 0)))
vexpected(const char *fmt, va_list ap)
{
	char text[16384];
	json_error_t e;
	json_t *o;

	vsnprintf(text, sizeof(text), fmt, ap);
	unquote(text);
	o = json_loads(text, 0, &e);
	if (o == NULL)
		fprintf(stderr, "\n  bad expected JSON %s: %s\n", text, e.text);
	return o;
}

/* 1 if f is a frame of type whose JSON equals want (all keys, no extra). */
static int
frame_equals(const struct frame *f, enum frame_type type, const json_t *want)
{
	json_t *got;
	int ok;

	if (f == NULL) {
		fprintf(stderr, "\n  no frame\n");
		return 0;
	}
	got = frame_json(f);
	ok = got != NULL && want != NULL && json_equal(got, want) && f->type == type;
	if (!ok) {
		char *w = want ? json_dumps(want, JSON_COMPACT) : NULL;

		fprintf(stderr, "\n  got  (%s) %.*s\n  want (%s) %s\n",
		    frame_type_name((enum frame_type)f->type),
		    (int)frame_payload_len(f), frame_payload(f),
		    frame_type_name(type), w ? w : "?");
		free(w);
	}
	json_decref(got);
	return ok;
}

static int __attribute__((format(printf, 3, 4)))
frame_is(const struct frame *f, enum frame_type type, const char *fmt, ...)
{
	json_t *want;
	va_list ap;
	int ok;

	va_start(ap, fmt);
	want = vexpected(fmt, ap);
	va_end(ap);
	ok = frame_equals(f, type, want);
	json_decref(want);
	return ok;
}

/* The next member_msg to m: it must be event ev, posted to m's worker. */
static struct member_msg *
take_member(int line, struct fx *fx, struct member *m, int ev)
{
	for (size_t i = 0; i < fx->nq; i++) {
		struct member_msg *mm = (struct member_msg *)fx->q[i].msg;

		if (mm->base.kind != ROOM_OUT_MEMBER || mm->m != m)
			continue;
		CHECK_AT(fx->q[i].w == m->worker, line, "to the member's worker");
		CHECK_AT(mm->room == fx->r, line, "member_msg names the room");
		fx_remove(fx, i);
		if (mm->event != ev)
			fprintf(stderr, "\n  member event %d, want %d\n",
			    mm->event, ev);
		FATAL_AT(mm->event == ev, line, "member event");
		/* The worker handles LEFT: it drops the member's reference. */
		if (ev == MEMBER_EV_LEFT)
			room_release(mm->room);
		return mm;
	}
	fprintf(stderr, "\n  no member_msg for %s (want event %d)\n", m->user, ev);
	FATAL_AT(0, line, "a member_msg for the member");
	return NULL;
}
#define TAKE_MEMBER(fx, m, ev) take_member(__LINE__, fx, m, ev)

/* m's next message is a REPLY whose frame is exactly the JSON given. */
static void __attribute__((format(printf, 5, 6)))
expect_reply(int line, struct fx *fx, struct member *m, enum frame_type type,
    const char *fmt, ...)
{
	struct member_msg *mm = take_member(line, fx, m, MEMBER_EV_REPLY);
	json_t *want;
	va_list ap;

	va_start(ap, fmt);
	want = vexpected(fmt, ap);
	va_end(ap);
	CHECK_AT(frame_equals(mm->reply, type, want), line, "reply frame");
	CHECK_AT(mm->nreplay == 0, line, "no replay with a reply");
	json_decref(want);
	member_msg_free(mm);
}
#define EXPECT_REPLY(fx, m, type, ...) expect_reply(__LINE__, fx, m, type, __VA_ARGS__)

/* m's next message is an error reply (or REFUSED) with this code and ref. */
static void
expect_error(int line, struct fx *fx, struct member *m, int ev, const char *code,
    const char *ref)
{
	struct member_msg *mm = take_member(line, fx, m, ev);
	json_t *o = mm->reply ? frame_json(mm->reply) : NULL;

	FATAL_AT(o != NULL, line, "an error frame");
	CHECK_AT(mm->reply->type == FRAME_ERROR, line, "frame type error");
	CHECK_AT(json_object_size(o) == (ref ? 4u : 3u), line,
	    "error has type, code, message (and ref)");
	CHECK_AT(strcmp(jstr(o, "type"), "error") == 0, line, "type error");
	CHECK_AT(strcmp(jstr(o, "code"), code) == 0, line, "error code");
	CHECK_AT(json_is_string(json_object_get(o, "message")), line, "message");
	if (ref != NULL)
		CHECK_AT(strcmp(jstr(o, "ref"), ref) == 0, line, "ref echoed");
	if (strcmp(jstr(o, "code"), code) != 0)
		fprintf(stderr, "\n  got %.*s, want code %s\n",
		    (int)frame_payload_len(mm->reply), frame_payload(mm->reply), code);
	json_decref(o);
	member_msg_free(mm);
}
#define EXPECT_ERROR(fx, m, code, ref) \
	expect_error(__LINE__, fx, m, MEMBER_EV_REPLY, code, ref)

/*
 * The next broadcast: the first deliver still captured and the ones posted
 * right after it carrying the same frame. It must reach every worker in
 * must, none outside may, with this stream flag and exclude, and the frame
 * must be exactly the JSON given (fmt NULL: not checked). keep: NULL, or
 * where to store one more reference to the frame.
 */
static void __attribute__((format(printf, 9, 10)))
expect_bcast(int line, struct fx *fx, unsigned must, unsigned may, int stream,
    const char *exclude, struct frame **keep, enum frame_type type,
    const char *fmt, ...)
{
	struct deliver_msg *first = NULL;
	unsigned seen = 0;
	size_t i;
	int same_ok = 1, flags_ok = 1;

	for (i = 0; i < fx->nq; i++)
		if (fx->q[i].msg->kind == ROOM_OUT_DELIVER)
			break;
	if (i == fx->nq)
		fprintf(stderr, "\n  no deliver captured\n");
	FATAL_AT(i < fx->nq, line, "a broadcast");
	first = (struct deliver_msg *)fx->q[i].msg;
	if (fmt != NULL) {
		json_t *want;
		va_list ap;

		va_start(ap, fmt);
		want = vexpected(fmt, ap);
		va_end(ap);
		CHECK_AT(frame_equals(first->f, type, want), line, "broadcast frame");
		json_decref(want);
	}
	if (keep != NULL) {
		frame_ref(first->f);
		*keep = first->f;
	}
	while (i < fx->nq && fx->q[i].msg->kind == ROOM_OUT_DELIVER) {
		struct deliver_msg *dm = (struct deliver_msg *)fx->q[i].msg;

		if (dm->f != first->f)
			break;
		if (seen & W(fx->q[i].w))
			same_ok = 0;   /* two copies to one worker */
		seen |= W(fx->q[i].w);
		if (dm->stream != stream || strcmp(dm->exclude, exclude) != 0 ||
		    dm->room != fx->r)
			flags_ok = 0;
		fx_remove(fx, i);
		if (dm != first)
			deliver_msg_free(dm);
	}
	if ((seen & must) != must || (seen & ~may) != 0)
		fprintf(stderr, "\n  delivered to workers 0x%x, want 0x%x (may 0x%x)\n",
		    seen, must, may);
	CHECK_AT((seen & must) == must, line, "delivered to every worker with members");
	CHECK_AT((seen & ~may) == 0, line, "delivered only to workers with members");
	CHECK_AT(same_ok, line, "one deliver per worker");
	CHECK_AT(flags_ok, line, "stream flag and exclude");
	/* No other deliver of this frame anywhere (they all share one frame). */
	for (i = 0; i < fx->nq; i++)
		if (fx->q[i].msg->kind == ROOM_OUT_DELIVER)
			CHECK_AT(((struct deliver_msg *)fx->q[i].msg)->f != first->f,
			    line, "the frame's delivers are posted together");
	deliver_msg_free(first);
}
#define EXPECT_BCAST(fx, mask, stream, exclude, type, ...) \
	expect_bcast(__LINE__, fx, mask, mask, stream, exclude, NULL, type, __VA_ARGS__)
#define EXPECT_BCAST_MAY(fx, must, may, stream, exclude, type, ...) \
	expect_bcast(__LINE__, fx, must, may, stream, exclude, NULL, type, __VA_ARGS__)
#define KEEP_BCAST(fx, mask, keep) \
	expect_bcast(__LINE__, fx, mask, mask, 1, "", keep, FRAME_MESSAGE, NULL)

static void
expect_nothing(int line, struct fx *fx)
{
	for (size_t i = 0; i < fx->nq; i++) {
		struct mailbox_msg *msg = fx->q[i].msg;
		const struct frame *f = msg->kind == ROOM_OUT_DELIVER ?
		    ((struct deliver_msg *)msg)->f : ((struct member_msg *)msg)->reply;

		fprintf(stderr, "\n  unexpected %s to worker %u: %.*s\n",
		    msg->kind == ROOM_OUT_DELIVER ? "deliver" : "member_msg",
		    fx->q[i].w,
		    f ? (int)frame_payload_len(f) : 4, f ? frame_payload(f) : "NULL");
	}
	CHECK_AT(fx->nq == 0, line, "nothing else posted");
	fx_drop(fx);
}
#define EXPECT_NOTHING(fx) expect_nothing(__LINE__, fx)

/* ---- short cuts ---------------------------------------------------------- */

/* Join m (no since), check JOINED came, forget everything posted. */
static void
join_quiet(struct fx *fx, struct member *m)
{
	join(fx, m, "%s", "");
	member_msg_free(TAKE_MEMBER(fx, m, MEMBER_EV_JOINED));
	fx_drop(fx);
}

/* Leave m, check LEFT came (its reference dropped), forget the rest. */
static void
leave_quiet(struct fx *fx, struct member *m)
{
	leave(fx, m, 1, NULL);
	member_msg_free(TAKE_MEMBER(fx, m, MEMBER_EV_LEFT));
	fx_drop(fx);
}


/* m sends body (id: NULL or an id): returns the acked seq, forgets the rest. */
static uint64_t
send_ok(int line, struct fx *fx, struct member *m, const char *body, const char *id)
{
	struct member_msg *mm;
	json_t *o;
	uint64_t seq;

	if (id != NULL)
		req(fx, m, "'type':'send','body':'%s','id':'%s'", body, id);
	else
		req(fx, m, "'type':'send','body':'%s'", body);
	mm = take_member(line, fx, m, MEMBER_EV_REPLY);
	o = frame_json(mm->reply);
	CHECK_AT(mm->reply->type == FRAME_ACK, line, "send acked");
	seq = (uint64_t)json_int(o, "seq");
	CHECK_AT(seq == fx->r->seq, line, "acked with the room's seq");
	json_decref(o);
	member_msg_free(mm);
	fx_drop(fx);
	return seq;
}
#define SEND(fx, m, body) send_ok(__LINE__, fx, m, body, NULL)
#define SEND_ID(fx, m, body, id) send_ok(__LINE__, fx, m, body, id)

/*
 * A duplicate's ack: room, original seq and ts, id, ref. PROTOCOL.md lists
 * no flag for it; a "duplicate": true extra is tolerated (and nothing else).
 */
static void
expect_dup_ack(int line, struct fx *fx, struct member *m, uint64_t seq, int64_t ts,
    const char *id, const char *ref)
{
	struct member_msg *mm = take_member(line, fx, m, MEMBER_EV_REPLY);
	json_t *o = frame_json(mm->reply);
	json_t *want = json_pack("{s:s, s:s, s:I, s:I, s:s}", "type", "ack",
	    "room", fx->r->name, "seq", (json_int_t)seq, "ts", (json_int_t)ts,
	    "id", id);
	json_t *dup;

	FATAL_AT(o != NULL && want != NULL, line, "ack JSON");
	if (ref != NULL)
		json_object_set_new(want, "ref", json_string(ref));
	dup = json_object_get(o, "duplicate");
	CHECK_AT(dup == NULL || json_is_true(dup), line,
	    "duplicate flag, if any, is true");
	json_object_del(o, "duplicate");
	CHECK_AT(mm->reply->type == FRAME_ACK, line, "frame type ack");
	if (!json_equal(o, want))
		fprintf(stderr, "\n  got %.*s, want seq %llu ts %lld id %s\n",
		    (int)frame_payload_len(mm->reply), frame_payload(mm->reply),
		    (unsigned long long)seq, (long long)ts, id);
	CHECK_AT(json_equal(o, want), line,
	    "duplicate acked with the original seq and ts");
	json_decref(o);
	json_decref(want);
	member_msg_free(mm);
}
#define EXPECT_DUP_ACK(fx, m, seq, ts, id, ref) \
	expect_dup_ack(__LINE__, fx, m, seq, ts, id, ref)

/* The joined frame's members: joiner first, then exactly the others. */
static int
members_are(const json_t *joined, const char *joiner, const char *const *others,
    size_t n)
{
	const json_t *a = json_object_get(joined, "members");
	size_t found = 0;

	if (!json_is_array(a) || json_array_size(a) != n + 1)
		return 0;
	if (strcmp(jstr_at(a, 0), joiner) != 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 1; j <= n; j++)
			if (strcmp(jstr_at(a, j), others[i]) == 0)
				found++;
	return found == n;
}

/* ---- scheduling ---------------------------------------------------------- */

static void
test_push_schedules(void)
{
	struct fx fx;
	struct member *a;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	/* Idle room: the first push schedules, later ones ride along. */
	CU_ASSERT_EQUAL(room_push(fx.r,
	    msg_new(&fx, ROOM_MSG_JOIN, a, "'type':'join'")), 1);
	CU_ASSERT_EQUAL(room_push(fx.r, msg_new(&fx, ROOM_MSG_REQUEST, a,
	    "'type':'send','body':'one'")), 0);
	CU_ASSERT_EQUAL(room_push(fx.r, msg_new(&fx, ROOM_MSG_REQUEST, a,
	    "'type':'send','body':'two'")), 0);
	/* A budget of 1 leaves work: still scheduled, pushes still say 0. */
	CU_ASSERT_EQUAL(room_run(fx.r, 1, &fx.now), 1);
	CU_ASSERT_EQUAL(room_push(fx.r, msg_new(&fx, ROOM_MSG_REQUEST, a,
	    "'type':'send','body':'three'")), 0);
	CU_ASSERT_EQUAL(room_run(fx.r, 100, &fx.now), 0);
	CU_ASSERT_EQUAL(fx.r->seq, 3);
	/* Drained and idle: the next push schedules again. */
	CU_ASSERT_EQUAL(room_push(fx.r, msg_new(&fx, ROOM_MSG_REQUEST, a,
	    "'type':'send','body':'four'")), 1);
	CU_ASSERT_EQUAL(room_push(fx.r, msg_new(&fx, ROOM_MSG_REQUEST, a,
	    "'type':'send','body':'five'")), 0);
	/* A budget that exactly drains the mailbox goes idle too. */
	CU_ASSERT_EQUAL(room_run(fx.r, 2, &fx.now), 0);
	CU_ASSERT_EQUAL(fx.r->seq, 5);
	CU_ASSERT_EQUAL(room_run(fx.r, 100, &fx.now), 0);   /* nothing queued */
	CU_ASSERT_EQUAL(room_push(fx.r, msg_new(&fx, ROOM_MSG_REQUEST, a,
	    "'type':'send','body':'six'")), 1);
	run(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 6);
	/* Requests were handled in push order: JOINED, then acks 1..6. */
	member_msg_free(TAKE_MEMBER(&fx, a, MEMBER_EV_JOINED));
	for (int s = 1; s <= 6; s++) {
		struct member_msg *mm = TAKE_MEMBER(&fx, a, MEMBER_EV_REPLY);
		json_t *o = frame_json(mm->reply);

		CU_ASSERT_EQUAL(json_int(o, "seq"), s);
		json_decref(o);
		member_msg_free(mm);
	}
	fx_drop(&fx);
	/* Never run messages are freed with the room. */
	room_push(fx.r, msg_new(&fx, ROOM_MSG_REQUEST, a, "'type':'send','body':'x'"));
	fx_done(&fx);
}

/* ---- seq and frames ------------------------------------------------------ */

static void
test_seq_frames_and_fanout(void)
{
	struct fx fx;
	struct member *a, *b;

	fx_init(&fx, ROOM, 3, 1);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);

	fx.now.wall_ms = T0 + 1;
	req(&fx, a, "'type':'send','body':'hello','id':'m1','ref':'r1'");
	/* Workers 0 and 1 have members, worker 2 none: two delivers, one frame. */
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':1,'user':'alice',"
	    "'body':'hello','ts':%lld,'id':'m1'}", T0 + 1);
	EXPECT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','ref':'r1','room':'lobby','seq':1,'ts':%lld,'id':'m1'}",
	    T0 + 1);
	EXPECT_NOTHING(&fx);

	fx.now.wall_ms = T0 + 2;
	req(&fx, a, "'type':'edit','target':1,'body':'hello!'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_EDIT,
	    "{'type':'edit','room':'lobby','seq':2,'target':1,'user':'alice',"
	    "'body':'hello!','ts':%lld}", T0 + 2);
	EXPECT_REPLY(&fx, a, FRAME_ACK,
	    ACK, 2, T0 + 2);
	EXPECT_NOTHING(&fx);

	fx.now.wall_ms = T0 + 3;
	req(&fx, b, "'type':'react','target':1,'emoji':'" THUMBS "','id':'x1',"
	    "'ref':'r3'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_REACTION,
	    "{'type':'reaction','room':'lobby','seq':3,'target':1,'user':'bob',"
	    "'emoji':'" THUMBS "','add':true,'ts':%lld,'id':'x1'}", T0 + 3);
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','ref':'r3','room':'lobby','seq':3,'ts':%lld,'id':'x1'}",
	    T0 + 3);
	EXPECT_NOTHING(&fx);

	fx.now.wall_ms = T0 + 4;
	req(&fx, b, "'type':'react','target':1,'emoji':'" THUMBS "','add':false");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_REACTION,
	    "{'type':'reaction','room':'lobby','seq':4,'target':1,'user':'bob',"
	    "'emoji':'" THUMBS "','add':false,'ts':%lld}", T0 + 4);
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    ACK, 4, T0 + 4);
	EXPECT_NOTHING(&fx);

	fx.now.wall_ms = T0 + 5;
	req(&fx, b, "'type':'send','body':'bye \\\"now\\\"'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':5,'user':'bob',"
	    "'body':'bye \\\"now\\\"','ts':%lld}", T0 + 5);
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    ACK, 5, T0 + 5);

	fx.now.wall_ms = T0 + 6;
	req(&fx, b, "'type':'delete','target':5,'id':'d1','ref':'r6'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_DELETE,
	    "{'type':'delete','room':'lobby','seq':6,'target':5,'user':'bob',"
	    "'ts':%lld,'id':'d1'}", T0 + 6);
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','ref':'r6','room':'lobby','seq':6,'ts':%lld,'id':'d1'}",
	    T0 + 6);
	EXPECT_NOTHING(&fx);

	CU_ASSERT_EQUAL(fx.r->seq, 6);
	CU_ASSERT_EQUAL(fx.env.metrics->events, 6);
	fx_done(&fx);
}

static void
test_ts_never_decreases(void)
{
	struct fx fx;
	struct member *a;

	fx_init(&fx, ROOM, 1, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	fx.now.wall_ms = T0 + 100;
	req(&fx, a, "'type':'send','body':'one'");
	EXPECT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':1,'user':'alice','body':'one',"
	    "'ts':%lld}", T0 + 100);
	EXPECT_REPLY(&fx, a, FRAME_ACK, ACK, 1, T0 + 100);
	/* The wall clock steps back: ts stays where it was. */
	fx.now.wall_ms = T0 - 5000;
	req(&fx, a, "'type':'send','body':'two'");
	EXPECT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':2,'user':'alice','body':'two',"
	    "'ts':%lld}", T0 + 100);
	EXPECT_REPLY(&fx, a, FRAME_ACK, ACK, 2, T0 + 100);
	fx.now.wall_ms = T0 + 99;
	req(&fx, a, "'type':'edit','target':2,'body':'deux'");
	EXPECT_BCAST(&fx, W(0), 1, "", FRAME_EDIT,
	    "{'type':'edit','room':'lobby','seq':3,'target':2,'user':'alice',"
	    "'body':'deux','ts':%lld}", T0 + 100);
	EXPECT_REPLY(&fx, a, FRAME_ACK, ACK, 3, T0 + 100);
	/* And moves on with the clock once it is past. */
	fx.now.wall_ms = T0 + 101;
	req(&fx, a, "'type':'send','body':'three'");
	EXPECT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':4,'user':'alice','body':'three',"
	    "'ts':%lld}", T0 + 101);
	EXPECT_REPLY(&fx, a, FRAME_ACK, ACK, 4, T0 + 101);
	EXPECT_NOTHING(&fx);
	fx_done(&fx);
}

/* ---- dedupe -------------------------------------------------------------- */

static void
test_dedupe_same_and_other_user(void)
{
	struct fx fx;
	struct member *a, *b;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);
	fx.now.wall_ms = T0 + 10;
	CU_ASSERT_EQUAL(SEND_ID(&fx, a, "one", "k"), 1);

	/* Same user, same id, another body, later: the original seq and ts. */
	fx.now.wall_ms = T0 + 500;
	req(&fx, a, "'type':'send','body':'two','id':'k','ref':'again'");
	EXPECT_DUP_ACK(&fx, a, 1, T0 + 10, "k", "again");
	EXPECT_NOTHING(&fx);   /* no event, no deliver */
	/* Whatever the request: an edit reusing the id is the same duplicate. */
	req(&fx, a, "'type':'edit','target':1,'body':'three','id':'k'");
	EXPECT_DUP_ACK(&fx, a, 1, T0 + 10, "k", NULL);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 1);
	CU_ASSERT_EQUAL(fx.env.metrics->events, 1);

	/* The id belongs to its user: bob's "k" is a new event. */
	req(&fx, b, "'type':'send','body':'bob says','id':'k'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':2,'user':'bob',"
	    "'body':'bob says','ts':%lld,'id':'k'}", T0 + 500);
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':2,'ts':%lld,'id':'k'}", T0 + 500);
	EXPECT_NOTHING(&fx);
	req(&fx, b, "'type':'send','body':'bob again','id':'k'");
	EXPECT_DUP_ACK(&fx, b, 2, T0 + 500, "k", NULL);
	EXPECT_NOTHING(&fx);
	/* Still no gap after the duplicates. */
	CU_ASSERT_EQUAL(SEND_ID(&fx, a, "four", "k2"), 3);
	/* A duplicate from another connection of the same user is one too. */
	{
		struct member *a2 = member_new(&fx, 1, "alice");

		join_quiet(&fx, a2);
		req(&fx, a2, "'type':'send','body':'x','id':'k2'");
		EXPECT_DUP_ACK(&fx, a2, 3, T0 + 500, "k2", NULL);
		EXPECT_NOTHING(&fx);
	}
	CU_ASSERT_EQUAL(fx.env.metrics->events, 3);
	fx_done(&fx);
}

static void
test_dedupe_window(void)
{
	struct fx fx;
	struct member *a;
	char id[32];
	unsigned i;

	fx_init(&fx, ROOM, 1, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	CU_ASSERT_EQUAL(SEND_ID(&fx, a, "first", "n1"), 1);
	/*
	 * n1 and ROOM_DEDUPE_WINDOW - 1 more: the window holds the last
	 * ROOM_DEDUPE_WINDOW ids (at least 10,000), n1 included.
	 */
	for (i = 2; i <= ROOM_DEDUPE_WINDOW; i++) {
		snprintf(id, sizeof(id), "n%u", i);
		req(&fx, a, "'type':'send','body':'b','id':'%s'", id);
		fx_drop(&fx);
	}
	CU_ASSERT_EQUAL(fx.r->seq, ROOM_DEDUPE_WINDOW);
	req(&fx, a, "'type':'send','body':'first again','id':'n1'");
	EXPECT_DUP_ACK(&fx, a, 1, T0, "n1", NULL);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, ROOM_DEDUPE_WINDOW);
	/* One more id: n1 is now the 10,001st latest, beyond the window. */
	snprintf(id, sizeof(id), "n%u", ROOM_DEDUPE_WINDOW + 1);
	CU_ASSERT_EQUAL(SEND_ID(&fx, a, "b", id), ROOM_DEDUPE_WINDOW + 1);
	/* n2, the oldest kept, is still a duplicate... */
	req(&fx, a, "'type':'send','body':'x','id':'n2'");
	EXPECT_DUP_ACK(&fx, a, 2, T0, "n2", NULL);
	EXPECT_NOTHING(&fx);
	/* ...and n1 is forgotten: a new event. */
	req(&fx, a, "'type':'send','body':'first, third time','id':'n1'");
	EXPECT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':%u,'user':'alice',"
	    "'body':'first, third time','ts':%lld,'id':'n1'}",
	    ROOM_DEDUPE_WINDOW + 2, T0);
	EXPECT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':%u,'ts':%lld,'id':'n1'}",
	    ROOM_DEDUPE_WINDOW + 2, T0);
	EXPECT_NOTHING(&fx);
	/* Remembered again, under its new seq. */
	req(&fx, a, "'type':'send','body':'x','id':'n1'");
	EXPECT_DUP_ACK(&fx, a, ROOM_DEDUPE_WINDOW + 2, T0, "n1", NULL);
	EXPECT_NOTHING(&fx);
	fx_done(&fx);
}

static void
test_noop_reaction_not_remembered(void)
{
	struct fx fx;
	struct member *a, *b;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);
	CU_ASSERT_EQUAL(SEND(&fx, a, "hi"), 1);
	req(&fx, b, "'type':'react','target':1,'emoji':'+1','id':'r1'");
	fx_drop(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 2);

	/* Adding it again: no event, an ack with noop, seq 2, the current time. */
	fx.now.wall_ms = T0 + 777;
	req(&fx, b, "'type':'react','target':1,'emoji':'+1','id':'r2','ref':'q'");
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','ref':'q','room':'lobby','seq':2,'ts':%lld,'id':'r2',"
	    "'noop':true}", T0 + 777);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.env.metrics->events, 2);
	/* r2 was not remembered: a removal under r2 is a real event. */
	fx.now.wall_ms = T0 + 800;
	req(&fx, b, "'type':'react','target':1,'emoji':'+1','add':false,'id':'r2'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_REACTION,
	    "{'type':'reaction','room':'lobby','seq':3,'target':1,'user':'bob',"
	    "'emoji':'+1','add':false,'ts':%lld,'id':'r2'}", T0 + 800);
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':3,'ts':%lld,'id':'r2'}", T0 + 800);
	EXPECT_NOTHING(&fx);
	/* Removing one it lacks: noop, and its id r3 is not remembered either. */
	fx.now.wall_ms = T0 + 900;
	req(&fx, b, "'type':'react','target':1,'emoji':'+1','add':false,'id':'r3'");
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':3,'ts':%lld,'id':'r3','noop':true}",
	    T0 + 900);
	EXPECT_NOTHING(&fx);
	/* Another emoji, or another user's same emoji, is not a noop. */
	req(&fx, b, "'type':'react','target':1,'emoji':'" THUMBS "','id':'r3'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_REACTION,
	    "{'type':'reaction','room':'lobby','seq':4,'target':1,'user':'bob',"
	    "'emoji':'" THUMBS "','add':true,'ts':%lld,'id':'r3'}", T0 + 900);
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':4,'ts':%lld,'id':'r3'}", T0 + 900);
	req(&fx, a, "'type':'react','target':1,'emoji':'" THUMBS "'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_REACTION,
	    "{'type':'reaction','room':'lobby','seq':5,'target':1,'user':'alice',"
	    "'emoji':'" THUMBS "','add':true,'ts':%lld}", T0 + 900);
	EXPECT_REPLY(&fx, a, FRAME_ACK,
	    ACK, 5, T0 + 900);
	EXPECT_NOTHING(&fx);
	/* A noop without an id: no id in the ack. */
	req(&fx, a, "'type':'react','target':1,'emoji':'" THUMBS "','add':true");
	EXPECT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':5,'ts':%lld,'noop':true}", T0 + 900);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.env.metrics->events, 5);
	fx_done(&fx);
}

/* ---- edit, delete, react rules ------------------------------------------- */

static void
test_target_rules(void)
{
	struct fx fx;
	struct member *a, *b;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);

	/* An empty room: nothing to target. */
	req(&fx, a, "'type':'edit','target':1,'body':'x','ref':'e0'");
	EXPECT_ERROR(&fx, a, "not_found", "e0");
	EXPECT_NOTHING(&fx);

	CU_ASSERT_EQUAL(SEND(&fx, a, "mine"), 1);
	req(&fx, a, "'type':'edit','target':1,'body':'mine!'");     /* seq 2 */
	req(&fx, b, "'type':'react','target':1,'emoji':'+1'");      /* seq 3 */
	fx_drop(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 3);

	/* Above the room's seq. */
	req(&fx, a, "'type':'edit','target':4,'body':'x','ref':'e1'");
	EXPECT_ERROR(&fx, a, "not_found", "e1");
	req(&fx, a, "'type':'delete','target':99,'ref':'e2'");
	EXPECT_ERROR(&fx, a, "not_found", "e2");
	req(&fx, b, "'type':'react','target':4,'emoji':'+1'");
	EXPECT_ERROR(&fx, b, "not_found", NULL);
	/* An edit and a reaction event are not messages. */
	req(&fx, a, "'type':'edit','target':2,'body':'x','ref':'e3'");
	EXPECT_ERROR(&fx, a, "not_found", "e3");
	req(&fx, a, "'type':'delete','target':2");
	EXPECT_ERROR(&fx, a, "not_found", NULL);
	req(&fx, b, "'type':'react','target':2,'emoji':'+1'");
	EXPECT_ERROR(&fx, b, "not_found", NULL);
	req(&fx, b, "'type':'delete','target':3");
	EXPECT_ERROR(&fx, b, "not_found", NULL);
	req(&fx, b, "'type':'react','target':3,'emoji':'+1'");
	EXPECT_ERROR(&fx, b, "not_found", NULL);
	EXPECT_NOTHING(&fx);

	/* Another user's live message: bob may react, not edit or delete. */
	req(&fx, b, "'type':'edit','target':1,'body':'his','ref':'f1','id':'bx'");
	EXPECT_ERROR(&fx, b, "forbidden", "f1");
	req(&fx, b, "'type':'delete','target':1,'ref':'f2'");
	EXPECT_ERROR(&fx, b, "forbidden", "f2");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 3);
	CU_ASSERT_EQUAL(fx.env.metrics->events, 3);
	/* No gap after refusals; a refused request's id is not taken. */
	req(&fx, b, "'type':'react','target':1,'emoji':'ok','id':'bx'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_REACTION,
	    "{'type':'reaction','room':'lobby','seq':4,'target':1,'user':'bob',"
	    "'emoji':'ok','add':true,'ts':%lld,'id':'bx'}", T0);
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':4,'ts':%lld,'id':'bx'}", T0);
	EXPECT_NOTHING(&fx);

	/* Edit twice: both edits target the message. */
	req(&fx, a, "'type':'edit','target':1,'body':'mine!!'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_EDIT,
	    "{'type':'edit','room':'lobby','seq':5,'target':1,'user':'alice',"
	    "'body':'mine!!','ts':%lld}", T0);
	EXPECT_REPLY(&fx, a, FRAME_ACK, ACK, 5, T0);

	/* Deleted: no longer live, for everyone and every kind of request. */
	req(&fx, a, "'type':'delete','target':1");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_DELETE,
	    "{'type':'delete','room':'lobby','seq':6,'target':1,'user':'alice',"
	    "'ts':%lld}", T0);
	EXPECT_REPLY(&fx, a, FRAME_ACK, ACK, 6, T0);
	req(&fx, a, "'type':'delete','target':1,'ref':'g1'");
	EXPECT_ERROR(&fx, a, "not_found", "g1");
	req(&fx, a, "'type':'edit','target':1,'body':'back'");
	EXPECT_ERROR(&fx, a, "not_found", NULL);
	req(&fx, b, "'type':'react','target':1,'emoji':'+1','add':false");
	EXPECT_ERROR(&fx, b, "not_found", NULL);
	req(&fx, b, "'type':'edit','target':1,'body':'x'");
	EXPECT_ERROR(&fx, b, "not_found", NULL);
	req(&fx, a, "'type':'delete','target':6");
	EXPECT_ERROR(&fx, a, "not_found", NULL);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 6);
	CU_ASSERT_EQUAL(SEND(&fx, b, "after"), 7);
	fx_done(&fx);
}

/* The events of a history reply, and checks on the frame around them. */
static json_t *
history_events(int line, struct fx *fx, struct member *m, const char *ref, int more)
{
	struct member_msg *mm = take_member(line, fx, m, MEMBER_EV_REPLY);
	json_t *o = frame_json(mm->reply), *ev;

	FATAL_AT(o != NULL, line, "history is JSON");
	CHECK_AT(mm->reply->type == FRAME_HISTORY, line, "frame type history");
	CHECK_AT(json_object_size(o) == (ref ? 5u : 4u), line,
	    "history has type, room, events, more (and ref)");
	CHECK_AT(strcmp(jstr(o, "type"), "history") == 0,
	    line, "type history");
	CHECK_AT(strcmp(jstr(o, "room"),
	    fx->r->name) == 0, line, "room");
	if (ref != NULL)
		CHECK_AT(strcmp(jstr(o, "ref"), ref) == 0,
		    line, "ref echoed");
	CHECK_AT(json_is_boolean(json_object_get(o, "more")), line, "more is a bool");
	if (more >= 0)
		CHECK_AT(json_is_true(json_object_get(o, "more")) == more, line,
		    "more");
	ev = json_object_get(o, "events");
	FATAL_AT(json_is_array(ev), line, "events is an array");
	json_incref(ev);
	json_decref(o);
	member_msg_free(mm);
	return ev;
}

/* events hold seqs from..to ascending, each a stream event of the room. */
static int
events_span(const json_t *ev, uint64_t from, uint64_t to)
{
	if (json_array_size(ev) != (to >= from ? to - from + 1 : 0)) {
		fprintf(stderr, "\n  %zu events, want %llu..%llu\n",
		    json_array_size(ev), (unsigned long long)from,
		    (unsigned long long)to);
		return 0;
	}
	for (size_t i = 0; i < json_array_size(ev); i++) {
		const json_t *e = json_array_get(ev, i);

		if ((uint64_t)json_int(e, "seq") != from + i ||
		    strcmp(jstr(e, "room"), ROOM) != 0 ||
		    !json_is_string(json_object_get(e, "type")))
			return 0;
	}
	return 1;
}

static void
test_delete_empties_history_and_replay(void)
{
	struct fx fx;
	struct member *a, *b, *c;
	struct frame *live[5] = { NULL };
	json_t *ev, *want;
	struct member_msg *mm;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);
	req(&fx, a, "'type':'send','body':'secret','id':'s'");
	KEEP_BCAST(&fx, W(0) | W(1), &live[0]);
	req(&fx, a, "'type':'edit','target':1,'body':'secret!'");
	KEEP_BCAST(&fx, W(0) | W(1), &live[1]);
	req(&fx, b, "'type':'send','body':'other'");
	KEEP_BCAST(&fx, W(0) | W(1), &live[2]);
	req(&fx, b, "'type':'react','target':1,'emoji':'+1'");
	KEEP_BCAST(&fx, W(0) | W(1), &live[3]);
	req(&fx, a, "'type':'delete','target':1,'id':'del'");
	KEEP_BCAST(&fx, W(0) | W(1), &live[4]);
	fx_drop(&fx);

	/* Live frames already sent are not recalled. */
	CU_ASSERT(frame_is(live[0], FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':1,'user':'alice','body':'secret',"
	    "'ts':%lld,'id':'s'}", T0));
	CU_ASSERT(frame_is(live[1], FRAME_EDIT,
	    "{'type':'edit','room':'lobby','seq':2,'target':1,'user':'alice',"
	    "'body':'secret!','ts':%lld}", T0));

	req(&fx, b, "'type':'history','ref':'h'");
	ev = history_events(__LINE__, &fx, b, "h", 0);
	CU_ASSERT(events_span(ev, 1, 5));
	want = json_pack("{s:s, s:s, s:i, s:s, s:s, s:I, s:s, s:b}", "type", "message",
	    "room", ROOM, "seq", 1, "user", "alice", "body", "", "ts", (json_int_t)T0,
	    "id", "s", "deleted", 1);
	CU_ASSERT(json_equal(json_array_get(ev, 0), want));
	json_decref(want);
	want = json_pack("{s:s, s:s, s:i, s:i, s:s, s:s, s:I, s:b}", "type", "edit",
	    "room", ROOM, "seq", 2, "target", 1, "user", "alice", "body", "",
	    "ts", (json_int_t)T0, "deleted", 1);
	CU_ASSERT(json_equal(json_array_get(ev, 1), want));
	json_decref(want);
	/* The others, the delete itself included, are their live frames. */
	for (int i = 2; i < 5; i++) {
		json_t *l = frame_json(live[i]);

		CU_ASSERT(json_equal(json_array_get(ev, (size_t)i), l));
		json_decref(l);
	}
	json_decref(ev);
	EXPECT_NOTHING(&fx);

	/* Replay shows the same. */
	c = member_new(&fx, 1, "carol");
	join(&fx, c, "'since':0");
	mm = TAKE_MEMBER(&fx, c, MEMBER_EV_JOINED);
	CU_ASSERT_EQUAL_FATAL(mm->nreplay, 5);
	CU_ASSERT(frame_is(mm->replay[0], FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':1,'user':'alice','body':'',"
	    "'ts':%lld,'id':'s','deleted':true}", T0));
	CU_ASSERT(frame_is(mm->replay[1], FRAME_EDIT,
	    "{'type':'edit','room':'lobby','seq':2,'target':1,'user':'alice','body':'',"
	    "'ts':%lld,'deleted':true}", T0));
	CU_ASSERT_PTR_EQUAL(mm->replay[2], live[2]);
	CU_ASSERT_PTR_EQUAL(mm->replay[3], live[3]);
	CU_ASSERT_PTR_EQUAL(mm->replay[4], live[4]);
	CU_ASSERT(frame_is(mm->replay[4], FRAME_DELETE,
	    "{'type':'delete','room':'lobby','seq':5,'target':1,'user':'alice',"
	    "'ts':%lld,'id':'del'}", T0));
	member_msg_free(mm);
	for (int i = 0; i < 5; i++)
		frame_unref(live[i]);
	fx_done(&fx);
}

/* ---- join: replay, truncation, the joined frame -------------------------- */

static void
test_replay_since(void)
{
	struct fx fx;
	struct member *a, *b, *b2, *b3, *b4;
	struct frame *live[5] = { NULL };
	struct member_msg *mm;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	for (int i = 0; i < 5; i++) {
		fx.now.wall_ms = T0 + i;
		req(&fx, a, "'type':'send','body':'m%d'", i + 1);
		KEEP_BCAST(&fx, W(0), &live[i]);
		fx_drop(&fx);
	}

	/* since 2: seqs 3, 4, 5, in order, exactly the live frames. */
	b = member_new(&fx, 1, "bob");
	join(&fx, b, "'since':2,'ref':'j1'");
	EXPECT_BCAST(&fx, W(0), 0, "bob", FRAME_PRESENCE,
	    PRESENCE("bob", "online"));
	mm = TAKE_MEMBER(&fx, b, MEMBER_EV_JOINED);
	CU_ASSERT(frame_is(mm->reply, FRAME_JOINED,
	    "{'type':'joined','ref':'j1','room':'lobby','seq':5,'online':2,"
	    "'members':['bob','alice'],'read':0}"));
	CU_ASSERT_EQUAL_FATAL(mm->nreplay, 3);
	for (size_t i = 0; i < 3; i++)
		CU_ASSERT_PTR_EQUAL(mm->replay[i], live[i + 2]);
	CU_ASSERT(frame_is(mm->replay[0], FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':3,'user':'alice','body':'m3',"
	    "'ts':%lld}", T0 + 2));
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	/* The next event comes live, once, to both workers. */
	req(&fx, a, "'type':'send','body':'m6'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE,
	    "{'type':'message','room':'lobby','seq':6,'user':'alice','body':'m6',"
	    "'ts':%lld}", T0 + 4);
	EXPECT_REPLY(&fx, a, FRAME_ACK, ACK, 6, T0 + 4);
	EXPECT_NOTHING(&fx);

	/* since at the room's seq, above it, or absent: nothing replayed. */
	b2 = member_new(&fx, 1, "bob");
	join(&fx, b2, "'since':6");
	mm = TAKE_MEMBER(&fx, b2, MEMBER_EV_JOINED);
	CU_ASSERT_EQUAL(mm->nreplay, 0);
	CU_ASSERT(frame_is(mm->reply, FRAME_JOINED,
	    "{'type':'joined','room':'lobby','seq':6,'online':2,"
	    "'members':['bob','alice'],'read':0}"));
	member_msg_free(mm);
	b3 = member_new(&fx, 0, "bob");
	join(&fx, b3, "'since':1000");
	mm = TAKE_MEMBER(&fx, b3, MEMBER_EV_JOINED);
	CU_ASSERT_EQUAL(mm->nreplay, 0);
	member_msg_free(mm);
	b4 = member_new(&fx, 0, "bob");
	join(&fx, b4, "%s", "");
	mm = TAKE_MEMBER(&fx, b4, MEMBER_EV_JOINED);
	CU_ASSERT_EQUAL(mm->nreplay, 0);
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);   /* bob was online already: no presence */

	/* since 0: everything. */
	{
		struct member *c = member_new(&fx, 0, "carol");

		static const char *const others[] = { "alice", "bob" };
		json_t *j;

		join(&fx, c, "'since':0");
		mm = TAKE_MEMBER(&fx, c, MEMBER_EV_JOINED);
		j = frame_json(mm->reply);
		CU_ASSERT(members_are(j, "carol", others, 2));
		CU_ASSERT_EQUAL(json_int(j, "online"), 3);
		json_decref(j);
		CU_ASSERT_EQUAL_FATAL(mm->nreplay, 6);
		for (size_t i = 0; i < 6; i++) {
			json_t *o = frame_json(mm->replay[i]);

			CU_ASSERT_EQUAL(json_int(o, "seq"), (json_int_t)i + 1);
			json_decref(o);
		}
		member_msg_free(mm);
		fx_drop(&fx);
	}
	CU_ASSERT_EQUAL(fx.r->refs, 6);   /* a, b, b2, b3, b4, c */
	for (int i = 0; i < 5; i++)
		frame_unref(live[i]);
	fx_done(&fx);
}

static void
test_replay_truncated(void)
{
	struct fx fx;
	struct member *a, *b;
	struct member_msg *mm;
	const unsigned n = ROOM_REPLAY_MAX + 5;   /* 1005 events */
	json_t *o;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	for (unsigned i = 1; i <= n; i++) {
		req(&fx, a, "'type':'send','body':'m%u'", i);
		fx_drop(&fx);
	}
	CU_ASSERT_EQUAL(fx.r->seq, n);

	/* Exactly 1000 to replay (since 5): all of them, not truncated. */
	b = member_new(&fx, 1, "bob");
	join(&fx, b, "'since':5");
	mm = TAKE_MEMBER(&fx, b, MEMBER_EV_JOINED);
	CU_ASSERT_EQUAL_FATAL(mm->nreplay, ROOM_REPLAY_MAX);
	for (size_t i = 0; i < mm->nreplay; i++) {
		o = frame_json(mm->replay[i]);
		CU_ASSERT_EQUAL(json_int(o, "seq"), (json_int_t)(6 + i));
		json_decref(o);
	}
	CU_ASSERT(frame_is(mm->reply, FRAME_JOINED,
	    "{'type':'joined','room':'lobby','seq':%u,'online':2,"
	    "'members':['bob','alice'],'read':0}", n));
	member_msg_free(mm);
	fx_drop(&fx);

	/* 1001 (since 4) or all (since 0): the latest 1000, truncated. */
	for (int since = 4; since >= 0; since -= 4) {
		struct member *c = member_new(&fx, 1, "carol");

		join(&fx, c, "'since':%d,'ref':'t'", since);
		mm = TAKE_MEMBER(&fx, c, MEMBER_EV_JOINED);
		CU_ASSERT_EQUAL_FATAL(mm->nreplay, ROOM_REPLAY_MAX);
		for (size_t i = 0; i < mm->nreplay; i++) {
			o = frame_json(mm->replay[i]);
			CU_ASSERT_EQUAL(json_int(o, "seq"), (json_int_t)(6 + i));
			json_decref(o);
		}
		o = frame_json(mm->reply);
		CU_ASSERT(json_is_true(json_object_get(o, "truncated")));
		CU_ASSERT_EQUAL(json_int(o, "seq"), n);
		CU_ASSERT_STRING_EQUAL(jstr(o, "ref"), "t");
		json_decref(o);
		member_msg_free(mm);
		fx_drop(&fx);
	}
	fx_done(&fx);
}

static void
test_joined_members_truncated(void)
{
	struct fx fx;
	struct member *m, *z;
	struct member_msg *mm;
	char name[16];
	json_t *o, *arr;
	int distinct = 1;

	fx_init(&fx, ROOM, 2, 1);
	/* 500 users online: listed in full. */
	for (unsigned i = 0; i < ROOM_MEMBERS_MAX; i++) {
		snprintf(name, sizeof(name), "u%03u", i);
		m = member_new(&fx, i % 2, name);
		join(&fx, m, "%s", "");
		mm = TAKE_MEMBER(&fx, m, MEMBER_EV_JOINED);
		if (i == ROOM_MEMBERS_MAX - 1) {
			o = frame_json(mm->reply);
			arr = json_object_get(o, "members");
			CU_ASSERT_EQUAL(json_array_size(arr), ROOM_MEMBERS_MAX);
			CU_ASSERT_STRING_EQUAL(jstr_at(arr, 0), name);
			CU_ASSERT_PTR_NULL(json_object_get(o, "members_truncated"));
			CU_ASSERT_EQUAL(json_int(o, "online"), ROOM_MEMBERS_MAX);
			json_decref(o);
		}
		member_msg_free(mm);
		fx_drop(&fx);
	}
	/* The 501st: 500 names, the joiner first, then members_truncated. */
	z = member_new(&fx, 1, "zed");
	join(&fx, z, "'since':0");
	mm = TAKE_MEMBER(&fx, z, MEMBER_EV_JOINED);
	o = frame_json(mm->reply);
	arr = json_object_get(o, "members");
	CU_ASSERT_EQUAL(json_array_size(arr), ROOM_MEMBERS_MAX);
	CU_ASSERT_STRING_EQUAL(jstr_at(arr, 0), "zed");
	for (size_t i = 1; i < json_array_size(arr); i++) {
		const char *s = jstr_at(arr, i);

		if (s[0] != 'u')
			distinct = 0;
		for (size_t j = 1; j < i; j++)
			if (strcmp(s, jstr_at(arr, j)) == 0)
				distinct = 0;
	}
	CU_ASSERT(distinct);
	CU_ASSERT(json_is_true(json_object_get(o, "members_truncated")));
	CU_ASSERT_EQUAL(json_int(o, "online"), ROOM_MEMBERS_MAX + 1);
	CU_ASSERT_EQUAL(json_int(o, "seq"), 0);
	CU_ASSERT_EQUAL(json_int(o, "read"), 0);
	CU_ASSERT_PTR_NULL(json_object_get(o, "truncated"));   /* nothing to replay */
	CU_ASSERT_EQUAL(json_object_size(o), 7);
	CU_ASSERT_EQUAL(mm->nreplay, 0);
	json_decref(o);
	member_msg_free(mm);
	fx_done(&fx);
}

static void
test_rejoin_snapshot(void)
{
	struct fx fx;
	struct member *a, *b;
	struct room_msg *msg;
	struct member_msg *mm;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);
	CU_ASSERT_EQUAL(SEND(&fx, a, "x"), 1);
	/* A join of a member already joined: joined again, no replay, no presence. */
	msg = msg_new(&fx, ROOM_MSG_JOIN, a, "'type':'join','since':0,'ref':'again'");
	msg->rejoin = 1;
	room_push(fx.r, msg);
	run(&fx);
	mm = TAKE_MEMBER(&fx, a, MEMBER_EV_REPLY);
	CU_ASSERT(frame_is(mm->reply, FRAME_JOINED,
	    "{'type':'joined','ref':'again','room':'lobby','seq':1,'online':2,"
	    "'members':['alice','bob'],'read':0}"));
	CU_ASSERT_EQUAL(mm->nreplay, 0);
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->refs, 2);
	CU_ASSERT_EQUAL(fx.r->members, 2);
	fx_done(&fx);
}

/* ---- history ------------------------------------------------------------- */

static void
test_history_paging(void)
{
	struct fx fx;
	struct member *a;
	struct frame *live[120] = { NULL };
	struct member_msg *mm;
	json_t *ev;

	fx_init(&fx, ROOM, 1, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);

	/* An empty room. */
	req(&fx, a, "'type':'history'");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT_EQUAL(json_array_size(ev), 0);
	json_decref(ev);

	for (int i = 0; i < 120; i++) {
		fx.now.wall_ms = T0 + i;
		if (i % 10 == 9)
			req(&fx, a, "'type':'edit','target':%d,'body':'e%d'", i, i + 1);
		else
			req(&fx, a, "'type':'send','body':'m%d','id':'i%d'",
			    i + 1, i + 1);
		KEEP_BCAST(&fx, W(0), &live[i]);
		fx_drop(&fx);
	}
	CU_ASSERT_EQUAL(fx.r->seq, 120);

	/* Default: the latest 50, ascending, more before them. */
	req(&fx, a, "'type':'history','ref':'p1'");
	mm = TAKE_MEMBER(&fx, a, MEMBER_EV_REPLY);
	/* Each event is its live frame's text, spliced as it is. */
	for (int i = 70; i < 120; i++)
		CU_ASSERT_PTR_NOT_NULL(memmem(frame_payload(mm->reply),
		    frame_payload_len(mm->reply), frame_payload(live[i]),
		    frame_payload_len(live[i])));
	/* Put it back to read it through the common checks. */
	capture_post(&fx, 0, &mm->base);
	ev = history_events(__LINE__, &fx, a, "p1", 1);
	CU_ASSERT(events_span(ev, 71, 120));
	for (size_t i = 0; i < json_array_size(ev); i++) {
		json_t *l = frame_json(live[70 + i]);

		CU_ASSERT(json_equal(json_array_get(ev, i), l));
		json_decref(l);
	}
	json_decref(ev);

	/* before: the 50 before it; then what is left, and no more. */
	req(&fx, a, "'type':'history','before':71");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, 21, 70));
	json_decref(ev);
	req(&fx, a, "'type':'history','before':21");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT(events_span(ev, 1, 20));
	json_decref(ev);
	req(&fx, a, "'type':'history','before':1");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT_EQUAL(json_array_size(ev), 0);
	json_decref(ev);
	req(&fx, a, "'type':'history','before':2,'limit':1");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT(events_span(ev, 1, 1));
	json_decref(ev);
	req(&fx, a, "'type':'history','before':3,'limit':1");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, 2, 2));
	json_decref(ev);
	/* before past the end: the latest. limit 10. */
	req(&fx, a, "'type':'history','before':5000,'limit':10");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, 111, 120));
	json_decref(ev);
	req(&fx, a, "'type':'history','before':121,'limit':120");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT(events_span(ev, 1, 120));
	json_decref(ev);
	req(&fx, a, "'type':'history','limit':119");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, 2, 120));
	json_decref(ev);
	EXPECT_NOTHING(&fx);
	for (int i = 0; i < 120; i++)
		frame_unref(live[i]);
	fx_done(&fx);
}

static void
test_history_limit_clamp(void)
{
	struct fx fx;
	struct member *a;
	json_t *ev;

	fx_init(&fx, ROOM, 1, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	for (int i = 1; i <= 250; i++) {
		req(&fx, a, "'type':'send','body':'m%d'", i);
		fx_drop(&fx);
	}
	/* The decoder clamps a limit over 200 to 200. */
	req(&fx, a, "'type':'history','limit':100000");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, 51, 250));
	json_decref(ev);
	req(&fx, a, "'type':'history','limit':201,'before':201");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT(events_span(ev, 1, 200));
	json_decref(ev);
	EXPECT_NOTHING(&fx);
	fx_done(&fx);
}

static void
test_history_ring_edge(void)
{
	struct fx fx;
	struct member *a;
	const unsigned n = ROOM_RING + 76;   /* 1100: the ring keeps 77..1100 */
	json_t *ev;

	fx_init(&fx, ROOM, 1, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	for (unsigned i = 1; i <= n; i++) {
		req(&fx, a, "'type':'send','body':'m%u'", i);
		fx_drop(&fx);
	}
	req(&fx, a, "'type':'history'");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, n - 49, n));
	json_decref(ev);
	/*
	 * Paging back stops at the oldest event kept (memory mode forgets the
	 * rest): "more" is false there, as room.c documents it.
	 */
	req(&fx, a, "'type':'history','before':277,'limit':200");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT(events_span(ev, 77, 276));
	json_decref(ev);
	req(&fx, a, "'type':'history','before':278,'limit':200");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, 78, 277));
	json_decref(ev);
	req(&fx, a, "'type':'history','before':100");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT(events_span(ev, 77, 99));
	json_decref(ev);
	req(&fx, a, "'type':'history','before':77");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT_EQUAL(json_array_size(ev), 0);
	json_decref(ev);
	EXPECT_NOTHING(&fx);
	fx_done(&fx);
}

/* ---- byte bounds on replay and history (env->reply_max_bytes) ------------ */

static void
test_replay_byte_bound(void)
{
	struct fx fx;
	struct member *a, *c;
	struct frame *live[10] = { NULL };
	struct member_msg *mm;
	size_t three;
	json_t *o;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	for (int i = 0; i < 10; i++) {
		/* Bodies of different lengths: the bound counts bytes, not events. */
		req(&fx, a, "'type':'send','body':'%.*s'", 1 + i * 7,
		    LETTERS);
		KEEP_BCAST(&fx, W(0), &live[i]);
		fx_drop(&fx);
	}
	three = live[7]->len + live[8]->len + live[9]->len;

	/* The latest three fit exactly: since 7 replays them, not truncated. */
	fx.env.reply_max_bytes = three;
	c = member_new(&fx, 1, "carol");
	join(&fx, c, "'since':7");
	mm = TAKE_MEMBER(&fx, c, MEMBER_EV_JOINED);
	CU_ASSERT_EQUAL_FATAL(mm->nreplay, 3);
	CU_ASSERT_PTR_EQUAL(mm->replay[0], live[7]);
	CU_ASSERT_PTR_EQUAL(mm->replay[2], live[9]);
	o = frame_json(mm->reply);
	CU_ASSERT_PTR_NULL(json_object_get(o, "truncated"));
	json_decref(o);
	member_msg_free(mm);
	fx_drop(&fx);

	/* since 0 with the same bound: the latest three, truncated. */
	c = member_new(&fx, 1, "carol");
	join(&fx, c, "'since':0");
	mm = TAKE_MEMBER(&fx, c, MEMBER_EV_JOINED);
	CU_ASSERT_EQUAL_FATAL(mm->nreplay, 3);
	CU_ASSERT_PTR_EQUAL(mm->replay[0], live[7]);
	CU_ASSERT_PTR_EQUAL(mm->replay[1], live[8]);
	CU_ASSERT_PTR_EQUAL(mm->replay[2], live[9]);
	o = frame_json(mm->reply);
	CU_ASSERT(json_is_true(json_object_get(o, "truncated")));
	json_decref(o);
	member_msg_free(mm);
	fx_drop(&fx);

	/* One byte less: two. */
	fx.env.reply_max_bytes = three - 1;
	c = member_new(&fx, 1, "carol");
	join(&fx, c, "'since':7");
	mm = TAKE_MEMBER(&fx, c, MEMBER_EV_JOINED);
	CU_ASSERT_EQUAL_FATAL(mm->nreplay, 2);
	CU_ASSERT_PTR_EQUAL(mm->replay[0], live[8]);
	CU_ASSERT_PTR_EQUAL(mm->replay[1], live[9]);
	o = frame_json(mm->reply);
	CU_ASSERT(json_is_true(json_object_get(o, "truncated")));
	json_decref(o);
	member_msg_free(mm);
	fx_drop(&fx);

	/* Not even the latest fits: nothing replayed, truncated. */
	fx.env.reply_max_bytes = live[9]->len - 1;
	c = member_new(&fx, 1, "carol");
	join(&fx, c, "'since':0");
	mm = TAKE_MEMBER(&fx, c, MEMBER_EV_JOINED);
	CU_ASSERT_EQUAL(mm->nreplay, 0);
	o = frame_json(mm->reply);
	CU_ASSERT(json_is_true(json_object_get(o, "truncated")));
	CU_ASSERT_EQUAL(json_int(o, "seq"), 10);
	json_decref(o);
	member_msg_free(mm);
	fx_drop(&fx);

	/* 0: no byte bound. */
	fx.env.reply_max_bytes = 0;
	c = member_new(&fx, 1, "carol");
	join(&fx, c, "'since':0");
	mm = TAKE_MEMBER(&fx, c, MEMBER_EV_JOINED);
	CU_ASSERT_EQUAL(mm->nreplay, 10);
	o = frame_json(mm->reply);
	CU_ASSERT_PTR_NULL(json_object_get(o, "truncated"));
	json_decref(o);
	member_msg_free(mm);
	fx_drop(&fx);
	for (int i = 0; i < 10; i++)
		frame_unref(live[i]);
	fx_done(&fx);
}

static void
test_history_byte_bound(void)
{
	struct fx fx;
	struct member *a;
	struct frame *live[10] = { NULL };
	size_t three;
	json_t *ev;

	fx_init(&fx, ROOM, 1, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	for (int i = 0; i < 10; i++) {
		req(&fx, a, "'type':'send','body':'%.*s'", 1 + i * 7,
		    LETTERS);
		KEEP_BCAST(&fx, W(0), &live[i]);
		fx_drop(&fx);
	}
	/* Each event costs its JSON and a comma. */
	three = frame_payload_len(live[7]) + frame_payload_len(live[8]) +
	    frame_payload_len(live[9]) + 3;
	fx.env.reply_max_bytes = three;
	req(&fx, a, "'type':'history'");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, 8, 10));
	json_decref(ev);
	fx.env.reply_max_bytes = three - 1;
	req(&fx, a, "'type':'history'");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, 9, 10));
	json_decref(ev);
	/* Paging on from there: smaller events, so three fit again. */
	CU_ASSERT(frame_payload_len(live[5]) + frame_payload_len(live[6]) +
	    frame_payload_len(live[7]) + frame_payload_len(live[8]) + 4 > three - 1);
	CU_ASSERT(frame_payload_len(live[6]) + frame_payload_len(live[7]) +
	    frame_payload_len(live[8]) + 3 <= three - 1);
	req(&fx, a, "'type':'history','before':9");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, 6, 8));
	json_decref(ev);
	/* A tiny bound still gives one event, so paging always progresses. */
	fx.env.reply_max_bytes = 1;
	req(&fx, a, "'type':'history','before':3");
	ev = history_events(__LINE__, &fx, a, NULL, 1);
	CU_ASSERT(events_span(ev, 2, 2));
	json_decref(ev);
	req(&fx, a, "'type':'history','before':2");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT(events_span(ev, 1, 1));
	json_decref(ev);
	/* A bound that is not reached changes nothing. */
	fx.env.reply_max_bytes = 1 << 20;
	req(&fx, a, "'type':'history'");
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT(events_span(ev, 1, 10));
	json_decref(ev);
	EXPECT_NOTHING(&fx);
	for (int i = 0; i < 10; i++)
		frame_unref(live[i]);
	fx_done(&fx);
}

/* ---- presence ------------------------------------------------------------ */

static void
test_presence_counts_users(void)
{
	struct fx fx;
	struct member *a1, *a2, *b;
	struct member_msg *mm;

	fx_init(&fx, ROOM, 3, 1);
	b = member_new(&fx, 2, "bob");
	a1 = member_new(&fx, 0, "alice");
	a2 = member_new(&fx, 1, "alice");
	join_quiet(&fx, b);

	/* alice's first connection: online, to bob's worker only. */
	join(&fx, a1, "'ref':'a1'");
	EXPECT_BCAST(&fx, W(2), 0, "alice", FRAME_PRESENCE,
	    PRESENCE("alice", "online"));
	mm = TAKE_MEMBER(&fx, a1, MEMBER_EV_JOINED);
	CU_ASSERT(frame_is(mm->reply, FRAME_JOINED,
	    "{'type':'joined','ref':'a1','room':'lobby','seq':0,'online':2,"
	    "'members':['alice','bob'],'read':0}"));
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	/* Her second: no presence, still 2 users online. */
	join(&fx, a2, "%s", "");
	mm = TAKE_MEMBER(&fx, a2, MEMBER_EV_JOINED);
	CU_ASSERT(frame_is(mm->reply, FRAME_JOINED,
	    "{'type':'joined','room':'lobby','seq':0,'online':2,"
	    "'members':['alice','bob'],'read':0}"));
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->online, 2);
	CU_ASSERT_EQUAL(fx.r->members, 3);
	CU_ASSERT_EQUAL(fx.r->refs, 3);

	/* Events reach all three workers. */
	req(&fx, b, "'type':'send','body':'hi'");
	EXPECT_BCAST(&fx, W(0) | W(1) | W(2), 1, "", FRAME_MESSAGE, NULL);
	fx_drop(&fx);

	/* One of alice's connections leaves: left, no presence. */
	leave(&fx, a1, 0, "bye");
	mm = TAKE_MEMBER(&fx, a1, MEMBER_EV_LEFT);
	CU_ASSERT(frame_is(mm->reply, FRAME_LEFT,
	    "{'type':'left','ref':'bye','room':'lobby'}"));
	CU_ASSERT_EQUAL(mm->nreplay, 0);
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->online, 2);
	CU_ASSERT_EQUAL(fx.r->refs, 2);
	/* Worker 0 has no member left: it gets nothing more. */
	req(&fx, b, "'type':'send','body':'hi again'");
	EXPECT_BCAST(&fx, W(1) | W(2), 1, "", FRAME_MESSAGE, NULL);
	fx_drop(&fx);

	/* A new connection of bob sees alice (still online) and counts 2. */
	{
		struct member *b2 = member_new(&fx, 0, "bob");

		join(&fx, b2, "%s", "");
		mm = TAKE_MEMBER(&fx, b2, MEMBER_EV_JOINED);
		CU_ASSERT(frame_is(mm->reply, FRAME_JOINED,
		    "{'type':'joined','room':'lobby','seq':2,'online':2,"
		    "'members':['bob','alice'],'read':0}"));
		member_msg_free(mm);
		EXPECT_NOTHING(&fx);
		leave(&fx, b2, 0, NULL);
		mm = TAKE_MEMBER(&fx, b2, MEMBER_EV_LEFT);
		CU_ASSERT(frame_is(mm->reply, FRAME_LEFT,
		    "{'type':'left','room':'lobby'}"));
		member_msg_free(mm);
		EXPECT_NOTHING(&fx);
	}

	/* Her last connection goes away (silently): offline, to the others. */
	leave(&fx, a2, 1, NULL);
	EXPECT_BCAST_MAY(&fx, W(2), W(1) | W(2), 0, "alice", FRAME_PRESENCE,
	    PRESENCE("alice", "offline"));
	mm = TAKE_MEMBER(&fx, a2, MEMBER_EV_LEFT);
	CU_ASSERT_PTR_NULL(mm->reply);   /* silent: no frame */
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->online, 1);
	CU_ASSERT_EQUAL(fx.r->members, 1);
	CU_ASSERT_EQUAL(fx.r->refs, 1);
	req(&fx, b, "'type':'send','body':'alone'");
	EXPECT_BCAST(&fx, W(2), 1, "", FRAME_MESSAGE, NULL);
	fx_drop(&fx);

	/* alice back: online again. */
	{
		struct member *a3 = member_new(&fx, 1, "alice");

		join(&fx, a3, "%s", "");
		EXPECT_BCAST(&fx, W(2), 0, "alice", FRAME_PRESENCE,
		    PRESENCE("alice", "online"));
		member_msg_free(TAKE_MEMBER(&fx, a3, MEMBER_EV_JOINED));
		EXPECT_NOTHING(&fx);
		/* bob leaves: alice's worker hears he is offline. */
		leave(&fx, b, 0, NULL);
		EXPECT_BCAST_MAY(&fx, W(1), W(1) | W(2), 0, "bob", FRAME_PRESENCE,
		    PRESENCE("bob", "offline"));
		member_msg_free(TAKE_MEMBER(&fx, b, MEMBER_EV_LEFT));
		EXPECT_NOTHING(&fx);
		CU_ASSERT_EQUAL(fx.r->online, 1);
	}
	fx_done(&fx);
}

/* ---- typing -------------------------------------------------------------- */

#define TYPING(active) \
	"{'type':'typing','room':'lobby','user':'alice','active':" active "}"

static void
test_typing_refresh_and_expiry(void)
{
	struct fx fx;
	struct member *a, *b;
	uint64_t t = M0;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 0);

	fx.now.mono_ms = t;
	req(&fx, a, "'type':'typing','active':true");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("true"));
	EXPECT_NOTHING(&fx);   /* no reply to typing */
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 1);
	/* Refreshed within 3 s: nothing. */
	fx.now.mono_ms = t + 1000;
	req(&fx, a, "'type':'typing','active':true");
	EXPECT_NOTHING(&fx);
	fx.now.mono_ms = t + 2999;
	req(&fx, a, "'type':'typing','active':true");
	EXPECT_NOTHING(&fx);
	/* 3 s after the last broadcast: said again. */
	fx.now.mono_ms = t + 3000;
	req(&fx, a, "'type':'typing','active':true");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("true"));
	EXPECT_NOTHING(&fx);
	fx.now.mono_ms = t + 5999;
	req(&fx, a, "'type':'typing','active':true");
	EXPECT_NOTHING(&fx);
	fx.now.mono_ms = t + 6000;
	req(&fx, a, "'type':'typing','active':true");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("true"));

	/* Last refresh at t+6000: it expires at t+12000, not before. */
	fx.now.mono_ms = t + 11999;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_KEEP);
	EXPECT_NOTHING(&fx);
	fx.now.mono_ms = t + 12000;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_IDLE);
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("false"));
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 0);
	CU_ASSERT_EQUAL(fx.r->typers, 0);
	/* Once only. */
	fx.now.mono_ms = t + 20000;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_IDLE);
	EXPECT_NOTHING(&fx);

	/* A refresh that did not broadcast still counts for expiry. */
	t = fx.now.mono_ms;
	req(&fx, a, "'type':'typing','active':true");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("true"));
	fx.now.mono_ms = t + 2000;
	req(&fx, a, "'type':'typing','active':true");
	EXPECT_NOTHING(&fx);
	fx.now.mono_ms = t + 6000;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_KEEP);
	EXPECT_NOTHING(&fx);
	fx.now.mono_ms = t + 8000;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_IDLE);
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("false"));
	EXPECT_NOTHING(&fx);

	/* Typing again after expiry: active:true at once. */
	fx.now.mono_ms = t + 8001;
	req(&fx, a, "'type':'typing','active':true");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("true"));
	/* Stopping: active:false at once; stopping again says nothing. */
	req(&fx, a, "'type':'typing','active':false");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("false"));
	req(&fx, a, "'type':'typing','active':false");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 0);
	fx_done(&fx);
}

static void
test_typing_stops_on_leave(void)
{
	struct fx fx;
	struct member *a1, *a2, *b;

	fx_init(&fx, ROOM, 2, 1);
	a1 = member_new(&fx, 0, "alice");
	a2 = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a1);
	join_quiet(&fx, b);

	/* Typing, then leaves: active:false, then offline, then left. */
	req(&fx, a1, "'type':'typing','active':true");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("true"));
	leave(&fx, a1, 0, NULL);
	EXPECT_BCAST_MAY(&fx, W(1), W(0) | W(1), 0, "alice", FRAME_TYPING,
	    TYPING("false"));
	EXPECT_BCAST_MAY(&fx, W(1), W(0) | W(1), 0, "alice", FRAME_PRESENCE,
	    PRESENCE("alice", "offline"));
	member_msg_free(TAKE_MEMBER(&fx, a1, MEMBER_EV_LEFT));
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->typers, 0);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 0);

	/* Typing, then disconnects (silent leave): the same, no left frame. */
	join_quiet(&fx, a2);
	req(&fx, a2, "'type':'typing','active':true");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("true"));
	leave(&fx, a2, 1, NULL);
	EXPECT_BCAST_MAY(&fx, W(1), W(0) | W(1), 0, "alice", FRAME_TYPING,
	    TYPING("false"));
	EXPECT_BCAST_MAY(&fx, W(1), W(0) | W(1), 0, "alice", FRAME_PRESENCE,
	    PRESENCE("alice", "offline"));
	{
		struct member_msg *mm = TAKE_MEMBER(&fx, a2, MEMBER_EV_LEFT);

		CU_ASSERT_PTR_NULL(mm->reply);
		member_msg_free(mm);
	}
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->typers, 0);
	/* Nothing left to expire. */
	fx.now.mono_ms += 60000;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_IDLE);
	EXPECT_NOTHING(&fx);
	fx_done(&fx);
}

static void
test_typing_two_connections(void)
{
	struct fx fx;
	struct member *a1, *a2, *b;

	fx_init(&fx, ROOM, 2, 1);
	a1 = member_new(&fx, 0, "alice");
	a2 = member_new(&fx, 1, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a1);
	join_quiet(&fx, a2);
	join_quiet(&fx, b);
	/* Typing on a1; a2 leaves: alice is still in the room and typing. */
	req(&fx, a1, "'type':'typing','active':true");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING, TYPING("true"));
	leave(&fx, a2, 0, NULL);
	member_msg_free(TAKE_MEMBER(&fx, a2, MEMBER_EV_LEFT));
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->typers, 1);
	/* The typing connection disconnects: active:false, then offline. */
	leave(&fx, a1, 1, NULL);
	EXPECT_BCAST_MAY(&fx, W(1), W(0) | W(1), 0, "alice", FRAME_TYPING,
	    TYPING("false"));
	EXPECT_BCAST_MAY(&fx, W(1), W(0) | W(1), 0, "alice", FRAME_PRESENCE,
	    PRESENCE("alice", "offline"));
	member_msg_free(TAKE_MEMBER(&fx, a1, MEMBER_EV_LEFT));
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->typers, 0);

	/*
	 * Typing on a connection that leaves while another of the same user
	 * stays: the typing stops (active:false), alice stays online.
	 */
	{
		struct member *a3 = member_new(&fx, 0, "alice");
		struct member *a4 = member_new(&fx, 1, "alice");

		join_quiet(&fx, a3);
		join_quiet(&fx, a4);
		req(&fx, a3, "'type':'typing','active':true");
		EXPECT_BCAST(&fx, W(0) | W(1), 0, "alice", FRAME_TYPING,
		    TYPING("true"));
		leave(&fx, a3, 0, NULL);
		EXPECT_BCAST_MAY(&fx, W(1), W(0) | W(1), 0, "alice", FRAME_TYPING,
		    TYPING("false"));
		member_msg_free(TAKE_MEMBER(&fx, a3, MEMBER_EV_LEFT));
		EXPECT_NOTHING(&fx);   /* no presence: a4 is still there */
		CU_ASSERT_EQUAL(fx.r->typers, 0);
		CU_ASSERT_EQUAL(fx.r->online, 2);
		CU_ASSERT_EQUAL(room_wants_tick(fx.r), 0);
	}
	fx_done(&fx);
}

/* ---- read receipts ------------------------------------------------------- */

static void
test_read_receipts(void)
{
	struct fx fx;
	struct member *a, *b, *b2;
	struct member_msg *mm;

	fx_init(&fx, ROOM, 2, 1);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);
	/* An empty room: seq 0, nowhere to move. */
	req(&fx, b, "'type':'read','seq':1");
	EXPECT_NOTHING(&fx);
	for (int i = 0; i < 3; i++)
		SEND(&fx, a, "m");

	/* To every member, the reader included (exclude empty). */
	req(&fx, b, "'type':'read','seq':2");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "", FRAME_RECEIPT,
	    "{'type':'receipt','room':'lobby','user':'bob','seq':2}");
	EXPECT_NOTHING(&fx);
	/* Not forward: nothing. */
	req(&fx, b, "'type':'read','seq':2");
	EXPECT_NOTHING(&fx);
	req(&fx, b, "'type':'read','seq':1");
	EXPECT_NOTHING(&fx);
	/* Above the room's seq: counts as seq 3. */
	req(&fx, b, "'type':'read','seq':99,'ref':'r'");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "", FRAME_RECEIPT,
	    "{'type':'receipt','room':'lobby','user':'bob','seq':3}");
	EXPECT_NOTHING(&fx);
	req(&fx, b, "'type':'read','seq':100");
	EXPECT_NOTHING(&fx);
	/* Another user's position is its own. */
	req(&fx, a, "'type':'read','seq':1");
	EXPECT_BCAST(&fx, W(0) | W(1), 0, "", FRAME_RECEIPT,
	    "{'type':'receipt','room':'lobby','user':'alice','seq':1}");
	EXPECT_NOTHING(&fx);

	/* joined.read: the user's position, also after leaving and coming back. */
	leave_quiet(&fx, b);
	b2 = member_new(&fx, 0, "bob");
	join(&fx, b2, "%s", "");
	mm = TAKE_MEMBER(&fx, b2, MEMBER_EV_JOINED);
	CU_ASSERT(frame_is(mm->reply, FRAME_JOINED,
	    "{'type':'joined','room':'lobby','seq':3,'online':2,"
	    "'members':['bob','alice'],'read':3}"));
	member_msg_free(mm);
	fx_drop(&fx);
	/* Only workers with members hear receipts: all are on worker 0 now. */
	SEND(&fx, a, "m4");
	req(&fx, b2, "'type':'read','seq':4");
	EXPECT_BCAST(&fx, W(0), 0, "", FRAME_RECEIPT,
	    "{'type':'receipt','room':'lobby','user':'bob','seq':4}");
	EXPECT_NOTHING(&fx);
	fx_done(&fx);
}

/* ---- dm rooms ------------------------------------------------------------ */

static void
test_dm_admits_two_users(void)
{
	struct fx fx;
	struct member *a, *b, *c, *pre;
	struct member_msg *mm;

	fx_init(&fx, "dm:alice:bob", 2, 1);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	c = member_new(&fx, 1, "carol");
	pre = member_new(&fx, 0, "alic");
	join(&fx, a, "%s", "");
	mm = TAKE_MEMBER(&fx, a, MEMBER_EV_JOINED);
	CU_ASSERT(frame_is(mm->reply, FRAME_JOINED,
	    "{'type':'joined','room':'dm:alice:bob','seq':0,'online':1,"
	    "'members':['alice'],'read':0}"));
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	join(&fx, b, "%s", "");
	EXPECT_BCAST(&fx, W(0), 0, "bob", FRAME_PRESENCE,
	    "{'type':'presence','room':'dm:alice:bob','user':'bob','status':'online'}");
	member_msg_free(TAKE_MEMBER(&fx, b, MEMBER_EV_JOINED));
	EXPECT_NOTHING(&fx);

	/* carol: refused with forbidden, nothing counted, no presence. */
	join(&fx, c, "'ref':'c1'");
	expect_error(__LINE__, &fx, c, MEMBER_EV_REFUSED, "forbidden", "c1");
	EXPECT_NOTHING(&fx);
	join(&fx, pre, "%s", "");
	expect_error(__LINE__, &fx, pre, MEMBER_EV_REFUSED, "forbidden", NULL);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->online, 2);
	CU_ASSERT_EQUAL(fx.r->members, 2);
	CU_ASSERT_EQUAL(fx.r->refs, 2);
	CU_ASSERT_EQUAL(fx.r->on_worker[1], 1);
	/* The two talk as in any room. */
	req(&fx, b, "'type':'send','body':'hi alice'");
	EXPECT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE,
	    "{'type':'message','room':'dm:alice:bob','seq':1,'user':'bob',"
	    "'body':'hi alice','ts':%lld}", T0);
	EXPECT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','room':'dm:alice:bob','seq':1,'ts':%lld}", T0);
	EXPECT_NOTHING(&fx);
	fx_done(&fx);
}

/* ---- lifetime ------------------------------------------------------------ */

static void
test_tick_free_rules(void)
{
	struct fx fx;
	struct member *a, *b;
	struct member_msg *left;
	uint64_t t;

	fx_init(&fx, ROOM, 2, 0);   /* database mode: events may be dropped */
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	fx.now.mono_ms = M0;
	join_quiet(&fx, a);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 0);
	fx.now.mono_ms = M0 + 10 * IDLE_MS;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_IDLE);   /* a member */
	SEND(&fx, a, "x");

	/* Empty, but alice's worker has not handled LEFT yet: refs 1. */
	t = M0 + 20 * IDLE_MS;
	fx.now.mono_ms = t;
	leave(&fx, a, 0, NULL);
	CU_ASSERT_EQUAL(fx.r->members, 0);
	CU_ASSERT_EQUAL(fx.r->refs, 1);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 1);
	fx.now.mono_ms = t + IDLE_MS - 1;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_KEEP);
	fx.now.mono_ms = t + 2 * IDLE_MS;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_KEEP);
	left = TAKE_MEMBER(&fx, a, MEMBER_EV_LEFT);   /* releases */
	member_msg_free(left);
	CU_ASSERT_EQUAL(fx.r->refs, 0);
	fx_drop(&fx);
	/* Idle long enough and unreferenced, but something is queued. */
	CU_ASSERT_EQUAL(room_push(fx.r,
	    msg_new(&fx, ROOM_MSG_JOIN, b, "'type':'join'")), 1);
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_KEEP);
	run(&fx);
	member_msg_free(TAKE_MEMBER(&fx, b, MEMBER_EV_JOINED));
	fx_drop(&fx);
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_IDLE);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 0);

	/* bob leaves at t2: the idle clock starts again from there. */
	t = fx.now.mono_ms + 5;
	fx.now.mono_ms = t;
	leave_quiet(&fx, b);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 1);
	fx.now.mono_ms = t + IDLE_MS - 1;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_KEEP);
	fx.now.mono_ms = t + IDLE_MS;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_FREE);
	EXPECT_NOTHING(&fx);
	fx_done(&fx);
}

static void
test_tick_keep_events(void)
{
	struct fx fx;
	struct member *a;
	uint64_t t;

	/* Memory mode, a room with events: never freed. */
	fx_init(&fx, ROOM, 1, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	SEND(&fx, a, "keep me");
	t = fx.now.mono_ms;
	leave_quiet(&fx, a);
	CU_ASSERT_EQUAL(fx.r->refs, 0);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 0);
	fx.now.mono_ms = t + 100 * IDLE_MS;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_IDLE);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 0);
	fx_done(&fx);

	/* Memory mode, seq 0: freed like any empty room. */
	fx_init(&fx, ROOM, 1, 1);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	req(&fx, a, "'type':'typing','active':true");
	req(&fx, a, "'type':'read','seq':1");
	req(&fx, a, "'type':'history'");
	fx_drop(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 0);
	t = fx.now.mono_ms;
	leave_quiet(&fx, a);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 1);
	CU_ASSERT_EQUAL(fx.r->typers, 0);
	fx.now.mono_ms = t + IDLE_MS - 1;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_KEEP);
	fx.now.mono_ms = t + IDLE_MS;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_FREE);
	fx_done(&fx);
}

static void
test_not_member(void)
{
	struct fx fx;
	struct member *a, *b;

	fx_init(&fx, ROOM, 1, 1);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 0, "bob");
	join_quiet(&fx, a);
	req(&fx, b, "'type':'send','body':'hi','ref':'n'");
	EXPECT_ERROR(&fx, b, "not_member", "n");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 0);
	fx_done(&fx);
}

/* ---- database mode: held until committed (PROTOCOL.md section 5) --------- */

/*
 * The room with env->persist set. The persistence thread is never started:
 * the test takes the records from its mailbox itself (expect_recs) and says
 * when they are committed (commit_upto), as the thread would after a batch.
 */

static void
persist_post_never(void *ctx, unsigned w, struct mailbox_msg *msg)
{
	(void)ctx;
	(void)w;
	CU_FAIL("the persistence thread posted, but it was never started");
	free(msg);
}

static void
resume_never(void *ctx, struct room *r)
{
	(void)ctx;
	(void)r;
	CU_FAIL("env->resume called: no read was ever started");
}

/* Like fx_init, but --db: the room is loaded empty (no reader, no rows). */
static void
fx_init_db(struct fx *fx, unsigned nworkers, uint64_t backlog)
{
	struct metrics *mt = aligned_alloc(64, sizeof(*mt));
	struct persist_config cfg;

	CU_ASSERT_PTR_NOT_NULL_FATAL(mt);
	memset(mt, 0, sizeof(*mt));
	memset(fx, 0, sizeof(*fx));
	memset(&cfg, 0, sizeof(cfg));
	cfg.conninfo = "dbname=none";
	cfg.batch_max = 1000;
	cfg.backlog = backlog;
	cfg.committed_kind = 77;
	cfg.post = persist_post_never;
	fx->persist = persist_new(&cfg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(fx->persist);
	fx->env.nworkers = nworkers;
	fx->env.post = capture_post;
	fx->env.ctx = fx;
	fx->env.metrics = mt;
	fx->env.idle_ms = IDLE_MS;
	fx->env.keep_events = 0;
	fx->env.persist = fx->persist;   /* before room_new: it decides loaded */
	fx->env.reader = NULL;
	fx->env.resume = resume_never;
	fx->now.wall_ms = T0;
	fx->now.mono_ms = M0;
	fx->r = room_new(ROOM, strlen(ROOM), room_home(ROOM, strlen(ROOM), nworkers),
	    &fx->env);
	CU_ASSERT_PTR_NOT_NULL_FATAL(fx->r);
	CU_ASSERT_EQUAL(fx->r->loaded, 0);   /* --db: loaded before first use */
	/* What activation leaves for a room with no rows (load_events). */
	fx->r->loaded = 1;
	fx->r->ring_first = fx->r->authors_base = 1;
	fx->r->room_id = 7;   /* as if rooms.id said so */
}

static void
fx_done_db(struct fx *fx)
{
	struct persist *p = fx->persist;

	fx_done(fx);
	persist_free(p);   /* and any record still queued */
}

/* What one record handed to the persistence thread must hold. */
struct want_rec {
	int kind;                 /* PERSIST_EVENT or PERSIST_READ */
	int type;                 /* EVENT: enum persist_event_type */
	uint64_t seq;             /* the event's seq, or the read position */
	const char *user;
	const char *body;         /* NULL: none */
	const char *client_id;    /* NULL: none */
	const char *emoji;        /* NULL: none */
	int64_t target;
	int add;                  /* REACTION */
	int64_t ts;               /* EVENT */
};

static int
str_same(const char *got, const char *want)
{
	if (got == NULL || want == NULL)
		return got == want;
	return strcmp(got, want) == 0;
}

static void
check_rec(int line, struct fx *fx, const struct persist_rec *rec,
    const struct want_rec *w)
{
	int ok;

	CHECK_AT(rec->base.kind == w->kind, line, "record kind");
	CHECK_AT(rec->rec == fx->rec_seen + 1, line,
	    "record numbers increase by one, in order");
	fx->rec_seen = rec->rec;
	CHECK_AT(rec->room == fx->r, line, "record names its room");
	CHECK_AT(rec->home == fx->r->home, line, "record names the home worker");
	CHECK_AT(rec->room_id == fx->r->room_id, line, "record room_id");
	ok = rec->seq == w->seq && str_same(rec->user, w->user) &&
	    str_same(rec->body, w->body) && str_same(rec->client_id, w->client_id) &&
	    str_same(rec->emoji, w->emoji) && rec->target == w->target &&
	    (w->body == NULL || rec->body_len == strlen(w->body));
	if (w->kind == PERSIST_EVENT)
		ok = ok && rec->type == w->type && rec->ts == w->ts &&
		    (w->type != PERSIST_REACTION || rec->add == w->add);
	if (!ok)
		fprintf(stderr, "\n  record rec %llu kind %d type %u seq %llu user %s "
		    "body %s id %s emoji %s target %lld add %u ts %lld\n"
		    "  want     kind %d type %d seq %llu user %s body %s id %s "
		    "emoji %s target %lld add %d ts %lld\n",
		    (unsigned long long)rec->rec, rec->base.kind, rec->type,
		    (unsigned long long)rec->seq, rec->user ? rec->user : "NULL",
		    rec->body ? rec->body : "NULL",
		    rec->client_id ? rec->client_id : "NULL",
		    rec->emoji ? rec->emoji : "NULL", (long long)rec->target,
		    rec->add, (long long)rec->ts, w->kind, w->type,
		    (unsigned long long)w->seq, w->user ? w->user : "NULL",
		    w->body ? w->body : "NULL", w->client_id ? w->client_id : "NULL",
		    w->emoji ? w->emoji : "NULL", (long long)w->target, w->add,
		    (long long)w->ts);
	CHECK_AT(ok, line, "record fields");
}

/*
 * Take every record the room handed to the persistence thread: exactly n,
 * in order, as want says. Afterwards the test has seen all of the room's.
 */
static void
expect_recs(int line, struct fx *fx, const struct want_rec *want, size_t n)
{
	struct mailbox_msg *mm;
	size_t i = 0;

	while ((mm = mailbox_take(&fx->persist->mb)) != NULL) {
		struct persist_rec *rec = (struct persist_rec *)mm;

		if (i < n)
			check_rec(line, fx, rec, &want[i]);
		else
			fprintf(stderr, "\n  unexpected record kind %d seq %llu\n",
			    rec->base.kind, (unsigned long long)rec->seq);
		i++;
		free(rec);
	}
	if (i != n)
		fprintf(stderr, "\n  %zu records, want %zu\n", i, n);
	CHECK_AT(i == n, line, "records handed to the persistence thread");
	CHECK_AT(fx->r->rec == fx->rec_seen, line, "every record of the room taken");
}
#define EXPECT_RECS(fx, ...) do { \
	const struct want_rec want_[] = { __VA_ARGS__ }; \
	expect_recs(__LINE__, fx, want_, sizeof(want_) / sizeof(want_[0])); \
} while (0)
#define EXPECT_NO_RECS(fx) expect_recs(__LINE__, fx, NULL, 0)

/*
 * The thread committed the room's records up to rec: each one's backlog
 * place is given back, then the room hears of it on its home worker.
 */
static void
commit_upto(int line, struct fx *fx, uint64_t rec)
{
	FATAL_AT(rec <= fx->rec_seen, line, "only records taken can commit");
	FATAL_AT(rec >= fx->rec_done, line, "commits move forward");
	CHECK_AT(persist_inflight(fx->persist) >= rec - fx->rec_done, line,
	    "each held record has its place");
	for (; fx->rec_done < rec; fx->rec_done++)
		persist_unreserve(fx->persist);
	room_committed(fx->r, rec, &fx->now);
	CHECK_AT(fx->r->rec_done >= rec, line, "the room knows what committed");
}
#define COMMIT(fx, rec) commit_upto(__LINE__, fx, rec)

/*
 * Strict order: the oldest message still captured must be a deliver (m
 * NULL) or a member_msg to m with event ev.
 */
static void
expect_head(int line, struct fx *fx, struct member *m, int ev)
{
	struct mailbox_msg *msg;
	const struct frame *f;
	int ok;

	if (fx->nq == 0)
		fprintf(stderr, "\n  nothing posted, want %s\n", m ? m->user : "a deliver");
	FATAL_AT(fx->nq > 0, line, "something posted");
	msg = fx->q[0].msg;
	if (m == NULL)
		ok = msg->kind == ROOM_OUT_DELIVER;
	else
		ok = msg->kind == ROOM_OUT_MEMBER &&
		    ((struct member_msg *)msg)->m == m &&
		    ((struct member_msg *)msg)->event == ev;
	if (!ok) {
		f = msg->kind == ROOM_OUT_DELIVER ? ((struct deliver_msg *)msg)->f :
		    ((struct member_msg *)msg)->reply;
		fprintf(stderr, "\n  first posted: %s %s%s event %d: %.*s\n"
		    "  want %s%s event %d\n",
		    msg->kind == ROOM_OUT_DELIVER ? "deliver" : "member_msg",
		    msg->kind == ROOM_OUT_MEMBER ? "to " : "",
		    msg->kind == ROOM_OUT_MEMBER ?
		    ((struct member_msg *)msg)->m->user : "",
		    msg->kind == ROOM_OUT_MEMBER ? ((struct member_msg *)msg)->event : 0,
		    f ? (int)frame_payload_len(f) : 4, f ? frame_payload(f) : "NULL",
		    m ? "member_msg to " : "a deliver", m ? m->user : "", ev);
	}
	CHECK_AT(ok, line, "posted in this order");
}
#define NEXT_BCAST(fx, mask, stream, exclude, type, ...) do { \
	expect_head(__LINE__, fx, NULL, 0); \
	expect_bcast(__LINE__, fx, mask, mask, stream, exclude, NULL, type, __VA_ARGS__); \
} while (0)
#define NEXT_BCAST_MAY(fx, must, may, stream, exclude, type, ...) do { \
	expect_head(__LINE__, fx, NULL, 0); \
	expect_bcast(__LINE__, fx, must, may, stream, exclude, NULL, type, __VA_ARGS__); \
} while (0)
#define NEXT_REPLY(fx, m, type, ...) do { \
	expect_head(__LINE__, fx, m, MEMBER_EV_REPLY); \
	expect_reply(__LINE__, fx, m, type, __VA_ARGS__); \
} while (0)
#define NEXT_ERROR(fx, m, code, ref) do { \
	expect_head(__LINE__, fx, m, MEMBER_EV_REPLY); \
	expect_error(__LINE__, fx, m, MEMBER_EV_REPLY, code, ref); \
} while (0)
#define NEXT_MEMBER(fx, m, ev) \
	(expect_head(__LINE__, fx, m, ev), take_member(__LINE__, fx, m, ev))

/*
 * The next message is to m, event ev, an error unavailable: type, code,
 * message, an integer retry_after_ms (the persistence thread's), ref.
 */
static void
expect_unavailable(int line, struct fx *fx, struct member *m, int ev, const char *ref)
{
	struct member_msg *mm;
	json_t *o, *retry;

	expect_head(line, fx, m, ev);
	mm = take_member(line, fx, m, ev);
	o = mm->reply ? frame_json(mm->reply) : NULL;
	FATAL_AT(o != NULL, line, "an error frame");
	if (strcmp(jstr(o, "code"), "unavailable") != 0 ||
	    json_object_size(o) != (ref ? 5u : 4u))
		fprintf(stderr, "\n  got %.*s, want unavailable\n",
		    (int)frame_payload_len(mm->reply), frame_payload(mm->reply));
	CHECK_AT(mm->reply->type == FRAME_ERROR, line, "frame type error");
	CHECK_AT(json_object_size(o) == (ref ? 5u : 4u), line,
	    "type, code, message, retry_after_ms (and ref)");
	CHECK_AT(strcmp(jstr(o, "type"), "error") == 0, line, "type error");
	CHECK_AT(strcmp(jstr(o, "code"), "unavailable") == 0, line, "code unavailable");
	CHECK_AT(json_is_string(json_object_get(o, "message")), line, "message");
	retry = json_object_get(o, "retry_after_ms");
	CHECK_AT(json_is_integer(retry), line, "retry_after_ms is an integer");
	CHECK_AT(json_integer_value(retry) > 0 &&
	    json_integer_value(retry) == persist_retry_ms(fx->persist), line,
	    "retry_after_ms from the persistence thread");
	if (ref != NULL)
		CHECK_AT(strcmp(jstr(o, "ref"), ref) == 0, line, "ref echoed");
	else
		CHECK_AT(json_object_get(o, "ref") == NULL, line, "no ref");
	json_decref(o);
	member_msg_free(mm);
}
#define NEXT_UNAVAILABLE(fx, m, ev, ref) expect_unavailable(__LINE__, fx, m, ev, ref)

/* m sends body; it is committed at once: returns its seq, forgets the rest. */
static uint64_t
db_send(int line, struct fx *fx, struct member *m, const char *body)
{
	struct want_rec w;
	struct member_msg *mm;
	json_t *o;

	req(fx, m, "'type':'send','body':'%s'", body);
	expect_nothing(line, fx);
	memset(&w, 0, sizeof(w));
	w.kind = PERSIST_EVENT;
	w.type = PERSIST_MESSAGE;
	w.seq = fx->r->seq;
	w.user = m->user;
	w.body = body;
	w.ts = fx->r->last_ts;
	expect_recs(line, fx, &w, 1);
	commit_upto(line, fx, fx->rec_seen);
	CHECK_AT(fx->r->committed == fx->r->seq, line, "committed");
	expect_head(line, fx, NULL, 0);
	mm = take_member(line, fx, m, MEMBER_EV_REPLY);
	o = frame_json(mm->reply);
	CHECK_AT(json_int(o, "seq") == (json_int_t)fx->r->seq, line, "acked");
	json_decref(o);
	member_msg_free(mm);
	fx_drop(fx);
	return fx->r->seq;
}
#define DB_SEND(fx, m, body) db_send(__LINE__, fx, m, body)

#define MSG(seq, user, body, ts) \
	"{'type':'message','room':'lobby','seq':" #seq ",'user':'" user "'," \
	"'body':'" body "','ts':%lld}", (long long)(ts)
#define MSG_ID(seq, user, body, ts, id) \
	"{'type':'message','room':'lobby','seq':" #seq ",'user':'" user "'," \
	"'body':'" body "','ts':%lld,'id':'" id "'}", (long long)(ts)

static void
test_db_send_waits_for_commit(void)
{
	struct fx fx;
	struct member *a, *b;

	fx_init_db(&fx, 2, 100);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);
	EXPECT_NO_RECS(&fx);   /* joins are not records */

	fx.now.wall_ms = T0 + 1;
	req(&fx, a, "'type':'send','body':'hello','id':'m1','ref':'r1'");
	/* Sequenced, handed over, but neither delivered nor acked. */
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 1);
	CU_ASSERT_EQUAL(fx.r->committed, 0);
	CU_ASSERT_EQUAL(fx.r->npending, 1);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 1);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 1,
	    .user = "alice", .body = "hello", .client_id = "m1", .ts = T0 + 1 });
	/* Time passes, a commit of nothing of ours: still nothing. */
	fx.now.wall_ms = T0 + 500;
	COMMIT(&fx, 0);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->npending, 1);

	COMMIT(&fx, 1);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE,
	    MSG_ID(1, "alice", "hello", T0 + 1, "m1"));
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','ref':'r1','room':'lobby','seq':1,'ts':%lld,'id':'m1'}",
	    T0 + 1);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->committed, 1);
	CU_ASSERT_EQUAL(fx.r->npending, 0);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);
	/* A second commit notice for the same record changes nothing. */
	room_committed(fx.r, 1, &fx.now);
	EXPECT_NOTHING(&fx);

	/* An edit: the same path, and its record says what it is. */
	fx.now.wall_ms = T0 + 600;
	req(&fx, a, "'type':'edit','target':1,'body':'hello!','id':'m2'");
	EXPECT_NOTHING(&fx);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_EDIT, .seq = 2,
	    .user = "alice", .body = "hello!", .client_id = "m2", .target = 1,
	    .ts = T0 + 600 });
	COMMIT(&fx, 2);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_EDIT,
	    "{'type':'edit','room':'lobby','seq':2,'target':1,'user':'alice',"
	    "'body':'hello!','ts':%lld,'id':'m2'}", T0 + 600);
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':2,'ts':%lld,'id':'m2'}", T0 + 600);
	EXPECT_NOTHING(&fx);
	/* Nothing pending: other replies are immediate again. */
	req(&fx, b, "'type':'delete','target':1,'ref':'x'");
	NEXT_ERROR(&fx, b, "forbidden", "x");
	EXPECT_NOTHING(&fx);
	EXPECT_NO_RECS(&fx);
	CU_ASSERT_EQUAL(fx.env.metrics->events, 2);
	fx_done_db(&fx);
}

static void
test_db_commit_partial(void)
{
	struct fx fx;
	struct member *a, *c, *e;
	struct member_msg *mm;

	fx_init_db(&fx, 2, 100);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	fx.now.wall_ms = T0 + 1;
	req(&fx, a, "'type':'send','body':'one'");
	fx.now.wall_ms = T0 + 2;
	req(&fx, a, "'type':'send','body':'two','id':'t2'");
	EXPECT_NOTHING(&fx);
	EXPECT_RECS(&fx,
	    { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 1,
	      .user = "alice", .body = "one", .ts = T0 + 1 },
	    { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 2,
	      .user = "alice", .body = "two", .client_id = "t2", .ts = T0 + 2 });
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 2);

	/* Only the first is durable: only the first is delivered and acked. */
	COMMIT(&fx, 1);
	NEXT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE, MSG(1, "alice", "one", T0 + 1));
	NEXT_REPLY(&fx, a, FRAME_ACK, ACK, 1, T0 + 1);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 2);
	CU_ASSERT_EQUAL(fx.r->committed, 1);
	CU_ASSERT_EQUAL(fx.r->npending, 1);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 1);

	/* A joiner now: joined.seq is what others see (1), replay up to it. */
	c = member_new(&fx, 1, "carol");
	join(&fx, c, "'since':0,'ref':'j'");
	NEXT_BCAST(&fx, W(0), 0, "carol", FRAME_PRESENCE, PRESENCE("carol", "online"));
	mm = NEXT_MEMBER(&fx, c, MEMBER_EV_JOINED);
	CU_ASSERT(frame_is(mm->reply, FRAME_JOINED,
	    "{'type':'joined','ref':'j','room':'lobby','seq':1,'online':2,"
	    "'members':['carol','alice'],'read':0}"));
	CU_ASSERT_EQUAL_FATAL(mm->nreplay, 1);
	CU_ASSERT(frame_is(mm->replay[0], FRAME_MESSAGE,
	    MSG(1, "alice", "one", T0 + 1)));
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);

	/* The rest commits: seq 2 comes live to both, once. */
	COMMIT(&fx, 2);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE,
	    MSG_ID(2, "alice", "two", T0 + 2, "t2"));
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':2,'ts':%lld,'id':'t2'}", T0 + 2);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->committed, 2);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);

	/* And a later joiner gets both replayed. */
	e = member_new(&fx, 0, "erin");
	join(&fx, e, "'since':0");
	NEXT_BCAST(&fx, W(0) | W(1), 0, "erin", FRAME_PRESENCE, PRESENCE("erin", "online"));
	mm = NEXT_MEMBER(&fx, e, MEMBER_EV_JOINED);
	{
		static const char *const others[] = { "alice", "carol" };
		json_t *j = frame_json(mm->reply);
		json_t *want = json_pack("{s:s, s:s, s:i, s:i, s:i}", "type", "joined",
		    "room", "lobby", "seq", 2, "online", 3, "read", 0);

		CU_ASSERT(mm->reply->type == FRAME_JOINED);
		CU_ASSERT(members_are(j, "erin", others, 2));
		json_object_del(j, "members");
		CU_ASSERT(json_equal(j, want));
		json_decref(want);
		json_decref(j);
	}
	CU_ASSERT_EQUAL_FATAL(mm->nreplay, 2);
	CU_ASSERT(frame_is(mm->replay[0], FRAME_MESSAGE, MSG(1, "alice", "one", T0 + 1)));
	CU_ASSERT(frame_is(mm->replay[1], FRAME_MESSAGE,
	    MSG_ID(2, "alice", "two", T0 + 2, "t2")));
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	EXPECT_NO_RECS(&fx);
	fx_done_db(&fx);
}

static void
test_db_replies_wait_behind_acks(void)
{
	struct fx fx;
	struct member *a, *b;

	fx_init_db(&fx, 2, 100);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);

	/* A is pending; then two refused requests: their errors wait for it. */
	fx.now.wall_ms = T0 + 1;
	req(&fx, a, "'type':'send','body':'A','id':'a1','ref':'s1'");
	req(&fx, a, "'type':'edit','target':5,'body':'x','ref':'e1'");
	req(&fx, b, "'type':'edit','target':1,'body':'his','ref':'f1'");
	EXPECT_NOTHING(&fx);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 1,
	    .user = "alice", .body = "A", .client_id = "a1", .ts = T0 + 1 });
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 1);
	COMMIT(&fx, 1);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE,
	    MSG_ID(1, "alice", "A", T0 + 1, "a1"));
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','ref':'s1','room':'lobby','seq':1,'ts':%lld,'id':'a1'}",
	    T0 + 1);
	NEXT_ERROR(&fx, a, "not_found", "e1");
	NEXT_ERROR(&fx, b, "forbidden", "f1");
	EXPECT_NOTHING(&fx);

	/* A duplicate of a pending event: acked right after the original. */
	fx.now.wall_ms = T0 + 10;
	req(&fx, a, "'type':'send','body':'B','id':'b1','ref':'s2'");
	fx.now.wall_ms = T0 + 20;
	req(&fx, a, "'type':'send','body':'B again','id':'b1','ref':'d2'");
	EXPECT_NOTHING(&fx);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 2,
	    .user = "alice", .body = "B", .client_id = "b1", .ts = T0 + 10 });
	CU_ASSERT_EQUAL(fx.r->seq, 2);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 1);
	COMMIT(&fx, 2);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE,
	    MSG_ID(2, "alice", "B", T0 + 10, "b1"));
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','ref':'s2','room':'lobby','seq':2,'ts':%lld,'id':'b1'}",
	    T0 + 10);
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','ref':'d2','room':'lobby','seq':2,'ts':%lld,'id':'b1',"
	    "'duplicate':true}", T0 + 10);
	EXPECT_NOTHING(&fx);

	/* Committed: the next duplicate is answered at once. */
	req(&fx, a, "'type':'send','body':'B3','id':'b1','ref':'d3'");
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','ref':'d3','room':'lobby','seq':2,'ts':%lld,'id':'b1',"
	    "'duplicate':true}", T0 + 10);
	EXPECT_NOTHING(&fx);
	EXPECT_NO_RECS(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 2);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);
	fx_done_db(&fx);
}

static void
test_db_leave_waits_behind_acks(void)
{
	struct fx fx;
	struct member *a, *a2, *b, *c;
	struct member_msg *mm;

	fx_init_db(&fx, 2, 100);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);

	/* A client's leave: its ack first, then offline, then left. */
	req(&fx, a, "'type':'send','body':'bye','ref':'s'");
	leave(&fx, a, 0, "l1");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->members, 2);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 1,
	    .user = "alice", .body = "bye", .ts = T0 });
	COMMIT(&fx, 1);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE, MSG(1, "alice", "bye", T0));
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','ref':'s','room':'lobby','seq':1,'ts':%lld}", T0);
	NEXT_BCAST_MAY(&fx, W(1), W(0) | W(1), 0, "alice", FRAME_PRESENCE,
	    PRESENCE("alice", "offline"));
	mm = NEXT_MEMBER(&fx, a, MEMBER_EV_LEFT);
	CU_ASSERT(frame_is(mm->reply, FRAME_LEFT,
	    "{'type':'left','ref':'l1','room':'lobby'}"));
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->members, 1);
	CU_ASSERT_EQUAL(fx.r->refs, 1);

	/* A connection gone (silent leave): still acked first, LEFT without a frame. */
	a2 = member_new(&fx, 0, "alice");
	join_quiet(&fx, a2);
	req(&fx, a2, "'type':'send','body':'gone','ref':'s2'");
	leave(&fx, a2, 1, NULL);
	EXPECT_NOTHING(&fx);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 2,
	    .user = "alice", .body = "gone", .ts = T0 });
	COMMIT(&fx, 2);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE, MSG(2, "alice", "gone", T0));
	NEXT_REPLY(&fx, a2, FRAME_ACK,
	    "{'type':'ack','ref':'s2','room':'lobby','seq':2,'ts':%lld}", T0);
	NEXT_BCAST_MAY(&fx, W(1), W(0) | W(1), 0, "alice", FRAME_PRESENCE,
	    PRESENCE("alice", "offline"));
	mm = NEXT_MEMBER(&fx, a2, MEMBER_EV_LEFT);
	CU_ASSERT_PTR_NULL(mm->reply);
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->members, 1);
	CU_ASSERT_EQUAL(fx.r->refs, 1);

	/*
	 * Another user's leave waits behind carol's pending event: bob gets
	 * the event sequenced before his leave, not the one after it.
	 */
	c = member_new(&fx, 0, "carol");
	join_quiet(&fx, c);
	req(&fx, c, "'type':'send','body':'three'");
	leave(&fx, b, 0, "l2");
	req(&fx, c, "'type':'send','body':'four'");
	EXPECT_NOTHING(&fx);
	EXPECT_RECS(&fx,
	    { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 3,
	      .user = "carol", .body = "three", .ts = T0 },
	    { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 4,
	      .user = "carol", .body = "four", .ts = T0 });
	COMMIT(&fx, 4);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE, MSG(3, "carol", "three", T0));
	NEXT_REPLY(&fx, c, FRAME_ACK, ACK, 3, T0);
	NEXT_BCAST_MAY(&fx, W(0), W(0) | W(1), 0, "bob", FRAME_PRESENCE,
	    PRESENCE("bob", "offline"));
	mm = NEXT_MEMBER(&fx, b, MEMBER_EV_LEFT);
	CU_ASSERT(frame_is(mm->reply, FRAME_LEFT,
	    "{'type':'left','ref':'l2','room':'lobby'}"));
	member_msg_free(mm);
	NEXT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE, MSG(4, "carol", "four", T0));
	NEXT_REPLY(&fx, c, FRAME_ACK, ACK, 4, T0);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->members, 1);
	CU_ASSERT_EQUAL(fx.r->refs, 1);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);
	fx_done_db(&fx);
}

static void
test_db_backlog_bound(void)
{
	struct fx fx;
	struct member *a;

	fx_init_db(&fx, 2, 2);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);

	/* Other rooms hold the whole backlog: refused at once, no seq taken. */
	CU_ASSERT_EQUAL(persist_reserve(fx.persist), 0);
	CU_ASSERT_EQUAL(persist_reserve(fx.persist), 0);
	req(&fx, a, "'type':'send','body':'x','id':'i0','ref':'u0'");
	NEXT_UNAVAILABLE(&fx, a, MEMBER_EV_REPLY, "u0");
	EXPECT_NOTHING(&fx);
	EXPECT_NO_RECS(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 0);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 2);
	persist_unreserve(fx.persist);
	persist_unreserve(fx.persist);

	/*
	 * This room holds two: the third is refused at once, ahead of their
	 * acks (during an outage those wait for the database; the client
	 * must hear "retry later" now).
	 */
	fx.now.wall_ms = T0 + 1;
	req(&fx, a, "'type':'send','body':'one','id':'i1'");
	fx.now.wall_ms = T0 + 2;
	req(&fx, a, "'type':'send','body':'two'");
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 2);
	fx.now.wall_ms = T0 + 3;
	req(&fx, a, "'type':'send','body':'three','id':'i3','ref':'u3'");
	NEXT_UNAVAILABLE(&fx, a, MEMBER_EV_REPLY, "u3");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->seq, 2);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 2);
	EXPECT_RECS(&fx,
	    { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 1,
	      .user = "alice", .body = "one", .client_id = "i1", .ts = T0 + 1 },
	    { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 2,
	      .user = "alice", .body = "two", .ts = T0 + 2 });
	COMMIT(&fx, 1);
	NEXT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE, MSG_ID(1, "alice", "one", T0 + 1, "i1"));
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':1,'ts':%lld,'id':'i1'}", T0 + 1);
	EXPECT_NOTHING(&fx);
	COMMIT(&fx, 2);
	NEXT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE, MSG(2, "alice", "two", T0 + 2));
	NEXT_REPLY(&fx, a, FRAME_ACK, ACK, 2, T0 + 2);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);

	/* Places given back: the next send is taken, at seq 3, i3 not a dup. */
	fx.now.wall_ms = T0 + 4;
	req(&fx, a, "'type':'send','body':'three','id':'i3','ref':'u4'");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 1);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 3,
	    .user = "alice", .body = "three", .client_id = "i3", .ts = T0 + 4 });
	COMMIT(&fx, 3);
	NEXT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE,
	    MSG_ID(3, "alice", "three", T0 + 4, "i3"));
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','ref':'u4','room':'lobby','seq':3,'ts':%lld,'id':'i3'}",
	    T0 + 4);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);
	CU_ASSERT_EQUAL(fx.env.metrics->events, 3);
	fx_done_db(&fx);
}

static void
test_db_read_receipts_held(void)
{
	struct fx fx;
	struct member *a, *b;

	fx_init_db(&fx, 2, 4);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);
	for (int i = 0; i < 3; i++)
		DB_SEND(&fx, a, "m");

	/* A read is a record; the receipt waits for its commit. */
	req(&fx, b, "'type':'read','seq':2,'ref':'q'");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 1);
	EXPECT_RECS(&fx, { .kind = PERSIST_READ, .seq = 2, .user = "bob" });
	COMMIT(&fx, 4);
	NEXT_BCAST(&fx, W(0) | W(1), 0, "", FRAME_RECEIPT,
	    "{'type':'receipt','room':'lobby','user':'bob','seq':2}");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);

	/* Above what is delivered: counts as the committed seq (3), not 4. */
	req(&fx, a, "'type':'send','body':'four'");
	req(&fx, b, "'type':'read','seq':99");
	EXPECT_NOTHING(&fx);
	EXPECT_RECS(&fx,
	    { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 4,
	      .user = "alice", .body = "four", .ts = T0 },
	    { .kind = PERSIST_READ, .seq = 3, .user = "bob" });
	COMMIT(&fx, 5);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_MESSAGE, MSG(4, "alice", "four", T0));
	NEXT_REPLY(&fx, a, FRAME_ACK, ACK, 4, T0);
	EXPECT_NOTHING(&fx);   /* the receipt still waits */
	COMMIT(&fx, 6);
	NEXT_BCAST(&fx, W(0) | W(1), 0, "", FRAME_RECEIPT,
	    "{'type':'receipt','room':'lobby','user':'bob','seq':3}");
	EXPECT_NOTHING(&fx);

	/* The backlog is full (other rooms): a notice, not a reply. */
	for (int i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(persist_reserve(fx.persist), 0);
	req(&fx, b, "'type':'read','seq':4,'ref':'n1'");
	NEXT_UNAVAILABLE(&fx, b, MEMBER_EV_NOTICE, "n1");
	EXPECT_NOTHING(&fx);
	EXPECT_NO_RECS(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 4);
	for (int i = 0; i < 4; i++)
		persist_unreserve(fx.persist);

	/* The refused read did not move the position: the same one now does. */
	req(&fx, b, "'type':'read','seq':4");
	EXPECT_NOTHING(&fx);
	EXPECT_RECS(&fx, { .kind = PERSIST_READ, .seq = 4, .user = "bob" });
	COMMIT(&fx, 7);
	NEXT_BCAST(&fx, W(0) | W(1), 0, "", FRAME_RECEIPT,
	    "{'type':'receipt','room':'lobby','user':'bob','seq':4}");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);
	fx_done_db(&fx);
}

static void
test_db_noop_react_keeps_no_place(void)
{
	struct fx fx;
	struct member *a, *b;

	fx_init_db(&fx, 2, 100);
	a = member_new(&fx, 0, "alice");
	b = member_new(&fx, 1, "bob");
	join_quiet(&fx, a);
	join_quiet(&fx, b);
	CU_ASSERT_EQUAL(DB_SEND(&fx, a, "hi"), 1);
	fx.now.wall_ms = T0 + 5;
	req(&fx, b, "'type':'react','target':1,'emoji':'+1','id':'r1'");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 1);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_REACTION, .seq = 2,
	    .user = "bob", .client_id = "r1", .emoji = "+1", .target = 1, .add = 1,
	    .ts = T0 + 5 });
	COMMIT(&fx, 2);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_REACTION,
	    "{'type':'reaction','room':'lobby','seq':2,'target':1,'user':'bob',"
	    "'emoji':'+1','add':true,'ts':%lld,'id':'r1'}", T0 + 5);
	NEXT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','room':'lobby','seq':2,'ts':%lld,'id':'r1'}", T0 + 5);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);

	/* The same again: a noop, answered at once, no record, no place kept. */
	fx.now.wall_ms = T0 + 777;
	req(&fx, b, "'type':'react','target':1,'emoji':'+1','id':'r2','ref':'q'");
	NEXT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','ref':'q','room':'lobby','seq':2,'ts':%lld,'id':'r2',"
	    "'noop':true}", T0 + 777);
	EXPECT_NOTHING(&fx);
	EXPECT_NO_RECS(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);
	CU_ASSERT_EQUAL(fx.r->seq, 2);

	/*
	 * A noop repeating a change still pending: no place kept either; it
	 * is answered behind the pending ack, with the seq committed when it
	 * was asked (2) and the time then.
	 */
	fx.now.wall_ms = T0 + 800;
	req(&fx, b, "'type':'react','target':1,'emoji':'ok'");
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 1);
	fx.now.wall_ms = T0 + 801;
	req(&fx, b, "'type':'react','target':1,'emoji':'ok','ref':'q2'");
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 1);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_REACTION, .seq = 3,
	    .user = "bob", .emoji = "ok", .target = 1, .add = 1, .ts = T0 + 800 });
	COMMIT(&fx, 3);
	NEXT_BCAST(&fx, W(0) | W(1), 1, "", FRAME_REACTION,
	    "{'type':'reaction','room':'lobby','seq':3,'target':1,'user':'bob',"
	    "'emoji':'ok','add':true,'ts':%lld}", T0 + 800);
	NEXT_REPLY(&fx, b, FRAME_ACK, ACK, 3, T0 + 800);
	NEXT_REPLY(&fx, b, FRAME_ACK,
	    "{'type':'ack','ref':'q2','room':'lobby','seq':2,'ts':%lld,'noop':true}",
	    T0 + 801);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(persist_inflight(fx.persist), 0);
	CU_ASSERT_EQUAL(fx.env.metrics->events, 3);
	fx_done_db(&fx);
}

static void
test_db_tick_keeps_pending(void)
{
	struct fx fx;
	struct member *a;
	struct member_msg *mm;
	uint64_t t;

	fx_init_db(&fx, 1, 100);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);

	/* The last member sends and disconnects; the database is slow. */
	req(&fx, a, "'type':'send','body':'last'");
	leave(&fx, a, 1, NULL);
	EXPECT_NOTHING(&fx);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 1,
	    .user = "alice", .body = "last", .ts = T0 });
	CU_ASSERT_EQUAL(fx.r->npending, 2);
	/* However long it takes, the room is never freed with records held. */
	for (int i = 1; i <= 3; i++) {
		fx.now.mono_ms = M0 + (uint64_t)i * 10 * IDLE_MS;
		CU_ASSERT_NOT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_FREE);
	}
	CU_ASSERT_NOT_EQUAL(fx.r->npending, 0);
	EXPECT_NOTHING(&fx);
	/*
	 * Through requests, members and refs cannot reach 0 while anything is
	 * pending (the leave waits, holding its reference). Force them, so
	 * the rule itself is checked: pending records alone keep the room.
	 */
	{
		uint32_t members = fx.r->members;
		int refs = fx.r->refs;
		uint64_t idle_since = fx.r->idle_since;

		fx.r->members = 0;
		fx.r->refs = 0;
		fx.r->idle_since = M0;
		CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_KEEP);
		fx.r->members = members;
		fx.r->refs = refs;
		fx.r->idle_since = idle_since;
	}
	EXPECT_NOTHING(&fx);

	/* Committed: the leave happens now, and the idle clock starts now. */
	t = fx.now.mono_ms;
	COMMIT(&fx, 1);
	NEXT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE, MSG(1, "alice", "last", T0));
	NEXT_REPLY(&fx, a, FRAME_ACK, ACK, 1, T0);
	NEXT_BCAST_MAY(&fx, 0, W(0), 0, "alice", FRAME_PRESENCE,
	    PRESENCE("alice", "offline"));
	mm = NEXT_MEMBER(&fx, a, MEMBER_EV_LEFT);   /* releases */
	CU_ASSERT_PTR_NULL(mm->reply);
	member_msg_free(mm);
	EXPECT_NOTHING(&fx);
	CU_ASSERT_EQUAL(fx.r->members, 0);
	CU_ASSERT_EQUAL(fx.r->npending, 0);
	CU_ASSERT_EQUAL(fx.r->refs, 0);
	CU_ASSERT_EQUAL(room_wants_tick(fx.r), 1);   /* db mode: events may go */
	fx.now.mono_ms = t + IDLE_MS - 1;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_KEEP);
	fx.now.mono_ms = t + IDLE_MS;
	CU_ASSERT_EQUAL(room_tick(fx.r, &fx.now), ROOM_TICK_FREE);
	EXPECT_NO_RECS(&fx);
	fx_done_db(&fx);
}

static void
test_db_history_committed_only(void)
{
	struct fx fx;
	struct member *a;
	json_t *ev, *want;

	fx_init_db(&fx, 1, 100);
	a = member_new(&fx, 0, "alice");
	join_quiet(&fx, a);
	CU_ASSERT_EQUAL(DB_SEND(&fx, a, "one"), 1);

	fx.now.wall_ms = T0 + 5;
	req(&fx, a, "'type':'send','body':'two','ref':'s2'");
	req(&fx, a, "'type':'history','ref':'h'");
	EXPECT_NOTHING(&fx);
	EXPECT_RECS(&fx, { .kind = PERSIST_EVENT, .type = PERSIST_MESSAGE, .seq = 2,
	    .user = "alice", .body = "two", .ts = T0 + 5 });
	COMMIT(&fx, 2);
	NEXT_BCAST(&fx, W(0), 1, "", FRAME_MESSAGE, MSG(2, "alice", "two", T0 + 5));
	NEXT_REPLY(&fx, a, FRAME_ACK,
	    "{'type':'ack','ref':'s2','room':'lobby','seq':2,'ts':%lld}", T0 + 5);
	/* The history, after the ack, holds what was committed when asked. */
	expect_head(__LINE__, &fx, a, MEMBER_EV_REPLY);
	ev = history_events(__LINE__, &fx, a, "h", 0);
	CU_ASSERT(events_span(ev, 1, 1));
	want = json_pack("{s:s, s:s, s:i, s:s, s:s, s:I}", "type", "message",
	    "room", "lobby", "seq", 1, "user", "alice", "body", "one",
	    "ts", (json_int_t)T0);
	CU_ASSERT(json_equal(json_array_get(ev, 0), want));
	json_decref(want);
	json_decref(ev);
	EXPECT_NOTHING(&fx);

	/* Asked again now: both. */
	req(&fx, a, "'type':'history'");
	expect_head(__LINE__, &fx, a, MEMBER_EV_REPLY);
	ev = history_events(__LINE__, &fx, a, NULL, 0);
	CU_ASSERT(events_span(ev, 1, 2));
	json_decref(ev);
	EXPECT_NOTHING(&fx);
	EXPECT_NO_RECS(&fx);
	fx_done_db(&fx);
}

int
main(void)
{
	static const struct unit_test tests[] = {
		{ "push schedules an idle room once", test_push_schedules },
		{ "seq 1,2,3 across kinds, frames, ack, fan-out",
		    test_seq_frames_and_fanout },
		{ "ts never decreases", test_ts_never_decreases },
		{ "dedupe: same user's id, other user's id",
		    test_dedupe_same_and_other_user },
		{ "dedupe window: 10,000 ids, both sides", test_dedupe_window },
		{ "noop reaction: ack noop, id not remembered",
		    test_noop_reaction_not_remembered },
		{ "edit/delete/react: not_found, forbidden", test_target_rules },
		{ "delete empties history and replay",
		    test_delete_empties_history_and_replay },
		{ "join since: replay in order, once", test_replay_since },
		{ "join since: latest 1000, truncated", test_replay_truncated },
		{ "joined members: 500, members_truncated",
		    test_joined_members_truncated },
		{ "rejoin: a joined snapshot only", test_rejoin_snapshot },
		{ "history: limit, before, more, live frames", test_history_paging },
		{ "history: limit clamped to 200", test_history_limit_clamp },
		{ "history: paging stops at the ring's oldest", test_history_ring_edge },
		{ "replay: byte bound, latest first, truncated",
		    test_replay_byte_bound },
		{ "history: byte bound, at least one event", test_history_byte_bound },
		{ "presence counts users, not connections",
		    test_presence_counts_users },
		{ "typing: refresh every 3 s, expiry at 6 s",
		    test_typing_refresh_and_expiry },
		{ "typing: false on leave and disconnect", test_typing_stops_on_leave },
		{ "typing: two connections of one user", test_typing_two_connections },
		{ "read receipts", test_read_receipts },
		{ "dm room admits its two users only", test_dm_admits_two_users },
		{ "tick: free only empty, idle, unreferenced", test_tick_free_rules },
		{ "tick: memory mode keeps rooms with events", test_tick_keep_events },
		{ "request from a non-member", test_not_member },
		{ "db: a send is delivered and acked once committed",
		    test_db_send_waits_for_commit },
		{ "db: partial commit; joined.seq and replay are committed",
		    test_db_commit_partial },
		{ "db: errors and duplicate acks wait behind pending acks",
		    test_db_replies_wait_behind_acks },
		{ "db: leave waits behind pending acks",
		    test_db_leave_waits_behind_acks },
		{ "db: backlog bound, unavailable with retry_after_ms",
		    test_db_backlog_bound },
		{ "db: receipts held until committed; full backlog is a notice",
		    test_db_read_receipts_held },
		{ "db: noop react keeps no backlog place",
		    test_db_noop_react_keeps_no_place },
		{ "db: tick never frees a room with pending records",
		    test_db_tick_keeps_pending },
		{ "db: history holds committed events, after pending acks",
		    test_db_history_committed_only },
	};

	return UNIT_RUN("room", tests);
}
