#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h>
#include <event2/buffer.h>
#include <libpq-fe.h>

#include "log.h"
#include "monotime.h"
#include "migrate.h"
#include "persist.h"
#include "store.h"
#include "xmalloc.h"

#define CONNECT_TIMEOUT_S "5"
#define BATCH_QUIET_US 200      /* a burst is over when nothing came for this long */

static const char *const kind_names[] = {
	[PERSIST_MESSAGE] = "message", [PERSIST_EDIT] = "edit",
	[PERSIST_DELETE] = "delete", [PERSIST_REACTION] = "reaction",
};

/* ---- metrics ---------------------------------------------------------------- */

/* Buckets of parley_persist_batch_rows (--batch-max: 1000 by default;
 * batches over 5000 rows fall in +Inf). */
static const uint64_t batch_rows_bounds[] = {
	1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
};
static const struct metrics_hist_spec batch_rows_spec = {
	"parley_persist_batch_rows", "Records per committed batch.",
	sizeof(batch_rows_bounds) / sizeof(batch_rows_bounds[0]), batch_rows_bounds, 1.0,
};

/* Buckets of parley_persist_commit_latency_seconds, in microseconds:
 * 0.5 ms (a local commit) to the 5 s commit timeout. */
static const uint64_t commit_us_bounds[] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000,
};
static const struct metrics_hist_spec commit_us_spec = {
	"parley_persist_commit_latency_seconds",
	"Time from sending a batch's first query to its COMMIT done.",
	sizeof(commit_us_bounds) / sizeof(commit_us_bounds[0]), commit_us_bounds, 1e-6,
};
_Static_assert(sizeof(batch_rows_bounds) / sizeof(batch_rows_bounds[0]) <= METRICS_HIST_MAX &&
    sizeof(commit_us_bounds) / sizeof(commit_us_bounds[0]) <= METRICS_HIST_MAX,
    "a histogram has at most METRICS_HIST_MAX bounds");

/* ---- records ------------------------------------------------------------------ */

struct persist_rec *
persist_rec_new(enum persist_kind kind, const char *user, const char *body,
    size_t body_len, const char *emoji, const char *client_id)
{
	size_t ulen = user != NULL ? strlen(user) + 1 : 0;
	size_t elen = emoji != NULL ? strlen(emoji) + 1 : 0;
	size_t ilen = client_id != NULL ? strlen(client_id) + 1 : 0;
	size_t blen = body != NULL ? body_len + 1 : 0;
	struct persist_rec *r = xcalloc(1, sizeof(*r) + ulen + elen + ilen + blen);
	char *p = r->data;

	r->base.kind = (int)kind;
	if (user != NULL) {
		memcpy(p, user, ulen);
		r->user = p;
		p += ulen;
	}
	if (emoji != NULL) {
		memcpy(p, emoji, elen);
		r->emoji = p;
		p += elen;
	}
	if (client_id != NULL) {
		memcpy(p, client_id, ilen);
		r->client_id = p;
		p += ilen;
	}
	if (body != NULL) {
		memcpy(p, body, body_len);
		p[body_len] = '\0';
		r->body = p;
		r->body_len = body_len;
	}
	return r;
}

int
persist_reserve(struct persist *p)
{
	if (ck_pr_faa_64(&p->inflight, 1) < p->cfg.backlog)
		return 0;
	ck_pr_dec_64(&p->inflight);
	return -1;
}

void
persist_unreserve(struct persist *p)
{
	ck_pr_dec_64(&p->inflight);
}

void
persist_submit(struct persist *p, struct persist_rec *rec)
{
	mailbox_push(&p->mb, &rec->base);
}

int
persist_ready(const struct persist *p)
{
	return ck_pr_load_int(&p->up);
}

uint64_t
persist_inflight(const struct persist *p)
{
	return ck_pr_load_64(&p->inflight);
}

int64_t
persist_retry_ms(const struct persist *p)
{
	/* Down: about when the next reconnect is tried; up: a batch or two. */
	return persist_ready(p) ? 100 : PERSIST_BACKOFF_MAX_MS / 5;
}

void
persist_metrics(const struct persist *p, struct evbuffer *out)
{
	const struct persist_stats *s = &p->stats;

	evbuffer_add_printf(out,
	    "# HELP parley_db_up 1 while the database takes writes (connected, schema in place).\n"
	    "# TYPE parley_db_up gauge\nparley_db_up %d\n"
	    "# HELP parley_persist_pending Persistence queue depth: records (events, read positions) reserved and not yet committed.\n"
	    "# TYPE parley_persist_pending gauge\nparley_persist_pending %llu\n"
	    "# HELP parley_persist_backlog_limit Records held at most (--backlog).\n"
	    "# TYPE parley_persist_backlog_limit gauge\nparley_persist_backlog_limit %llu\n"
	    "# HELP parley_persist_batches_total Batches committed.\n"
	    "# TYPE parley_persist_batches_total counter\nparley_persist_batches_total %llu\n"
	    "# HELP parley_persist_rows_total Records committed.\n"
	    "# TYPE parley_persist_rows_total counter\nparley_persist_rows_total %llu\n"
	    "# HELP parley_persist_commit_seconds_total Time spent writing and committing batches.\n"
	    "# TYPE parley_persist_commit_seconds_total counter\nparley_persist_commit_seconds_total %.6f\n"
	    "# HELP parley_persist_commit_seconds_max Longest batch write and commit.\n"
	    "# TYPE parley_persist_commit_seconds_max gauge\nparley_persist_commit_seconds_max %.6f\n"
	    "# HELP parley_persist_failures_total Batches that failed (and were held and retried).\n"
	    "# TYPE parley_persist_failures_total counter\nparley_persist_failures_total %llu\n"
	    "# HELP parley_db_reconnects_total Failed attempts to connect the persistence thread.\n"
	    "# TYPE parley_db_reconnects_total counter\nparley_db_reconnects_total %llu\n",
	    persist_ready(p), (unsigned long long)persist_inflight(p),
	    (unsigned long long)p->cfg.backlog,
	    (unsigned long long)ck_pr_load_64(&s->batches),
	    (unsigned long long)ck_pr_load_64(&s->rows),
	    (double)ck_pr_load_64(&s->commit_us_total) / 1e6,
	    (double)ck_pr_load_64(&s->commit_us_max) / 1e6,
	    (unsigned long long)ck_pr_load_64(&s->failures),
	    (unsigned long long)ck_pr_load_64(&s->reconnects));
	metrics_hist_render(&s->batch_rows, &batch_rows_spec, out);
	metrics_hist_render(&s->commit_us, &commit_us_spec, out);
}

/* What a failed batch said: its first error. */
struct pq_error {
	char sqlstate[6];
	char constraint[64];
	char message[256];
};

static void
note_error(struct pq_error *e, const PGresult *r, PGconn *c)
{
	const char *s, *k;

	if (e->message[0] != '\0')
		return;   /* the first error explains the rest */
	if (r == NULL) {
		snprintf(e->message, sizeof(e->message), "%s", PQerrorMessage(c));
		return;
	}
	s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	k = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
	snprintf(e->sqlstate, sizeof(e->sqlstate), "%s", s != NULL ? s : "");
	snprintf(e->constraint, sizeof(e->constraint), "%s", k != NULL ? k : "");
	snprintf(e->message, sizeof(e->message), "%s", PQresultErrorMessage(r));
}

/* ---- building a batch ------------------------------------------------------------------ */

struct buf {
	char *p;
	size_t len, cap;
};

static void
buf_reserve(struct buf *b, size_t n)
{
	if (b->len + n <= b->cap)
		return;
	while (b->len + n > b->cap)
		b->cap = b->cap ? b->cap * 2 : 65536;
	b->p = xrealloc(b->p, b->cap);
}

static void
buf_add(struct buf *b, const char *s, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void
buf_str(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* One COPY text field: \N for NULL; backslash, tab, newline, CR escaped. */
static void
copy_text(struct buf *b, const char *s, size_t n)
{
	if (s == NULL) {
		buf_add(b, "\\N", 2);
		return;
	}
	buf_reserve(b, 2 * n);
	for (size_t i = 0; i < n; i++) {
		char c = s[i], *o = b->p + b->len;

		switch (c) {
		case '\\': o[0] = '\\'; o[1] = '\\'; b->len += 2; break;
		case '\t': o[0] = '\\'; o[1] = 't'; b->len += 2; break;
		case '\n': o[0] = '\\'; o[1] = 'n'; b->len += 2; break;
		case '\r': o[0] = '\\'; o[1] = 'r'; b->len += 2; break;
		default: o[0] = c; b->len++; break;
		}
	}
}

static void
copy_row(struct buf *b, const struct persist_rec *r)
{
	char num[64];
	int n;

	n = snprintf(num, sizeof(num), "%lld\t%llu\t%s\t", (long long)r->room_id,
	    (unsigned long long)r->seq, kind_names[r->type]);
	buf_add(b, num, (size_t)n);
	copy_text(b, r->user, strlen(r->user));
	if (r->type == PERSIST_MESSAGE)
		buf_add(b, "\t\\N\t", 4);
	else {
		n = snprintf(num, sizeof(num), "\t%lld\t", (long long)r->target);
		buf_add(b, num, (size_t)n);
	}
	copy_text(b, r->body, r->body_len);
	buf_add(b, "\t", 1);
	copy_text(b, r->emoji, r->emoji != NULL ? strlen(r->emoji) : 0);
	if (r->type == PERSIST_REACTION)
		buf_add(b, r->add ? "\tt\t" : "\tf\t", 3);
	else
		buf_add(b, "\t\\N\t", 4);
	copy_text(b, r->client_id, r->client_id != NULL ? strlen(r->client_id) : 0);
	n = snprintf(num, sizeof(num), "\t%lld\n", (long long)r->ts);
	buf_add(b, num, (size_t)n);
}

static int
read_cmp(const void *a, const void *b)
{
	const struct persist_rec *x = *(struct persist_rec *const *)a;
	const struct persist_rec *y = *(struct persist_rec *const *)b;
	if (x->room_id != y->room_id)
		return x->room_id < y->room_id ? -1 : 1;
	return strcmp(x->user, y->user);
}

/*
 * The statements after the COPY: read positions (one row per room and
 * user: the highest; the database keeps the higher of its own and ours),
 * then COMMIT.
 */
static void
tail_sql(struct buf *b, struct persist_rec **reads, size_t nreads)
{
	char num[48], user[STORE_LITERAL_MAX];
	size_t i, out = 0;

	qsort(reads, nreads, sizeof(*reads), read_cmp);
	for (i = 0; i < nreads; i++) {
		struct persist_rec *r = reads[i];

		if (i + 1 < nreads && read_cmp(&reads[i], &reads[i + 1]) == 0 &&
		    reads[i + 1]->seq >= r->seq)
			continue;   /* a later one of the same pair is at least as far */
		if (i + 1 < nreads && read_cmp(&reads[i], &reads[i + 1]) == 0) {
			reads[i + 1] = r;   /* carry the higher forward */
			continue;
		}
		buf_str(b, out++ == 0 ?
		    "INSERT INTO read_positions (room_id, user_name, seq) VALUES (" : ",(");
		snprintf(num, sizeof(num), "%lld,", (long long)r->room_id);
		buf_str(b, num);
		store_literal(user, sizeof(user), r->user);
		buf_str(b, user);
		snprintf(num, sizeof(num), ",%llu)", (unsigned long long)r->seq);
		buf_str(b, num);
	}
	if (out > 0)
		buf_str(b, " ON CONFLICT (room_id, user_name) DO UPDATE SET seq = "
		    "GREATEST(read_positions.seq, EXCLUDED.seq);");
	buf_add(b, "COMMIT", 7);   /* with its NUL: it is sent as a string */
}

struct batch {
	struct persist_rec **recs;   /* the first n of the FIFO */
	size_t n;
	struct buf rows;             /* COPY data */
	struct buf tail;             /* rooms, reads, COMMIT */
	size_t nevents;
	struct persist_rec *first_event;
};

/* ---- writers ----------------------------------------------------------------------- */

/*
 * The thread drives PERSIST_WRITERS connections, each with its own FIFO,
 * batch and state; a room's records always go to the same one (room_id %
 * PERSIST_WRITERS), so each room's records still commit in order. One
 * backend waits for its commit's WAL flush and for our round trips about
 * a sixth of the time; a second one fills those gaps.
 */
enum writer_state {
	W_DOWN = 0,               /* no connection: retry at retry_at_ms */
	W_IDLE,                   /* connected, no batch in flight */
	W_COPYIN,                 /* COPY sent, waiting for the server to take rows */
	W_RESULT,                 /* rows sent, waiting for the COPY's result */
	W_TAIL,                   /* the statements after it (and COMMIT) sent */
};

struct writer {
	struct persist *p;
	unsigned id;
	PGconn *pg;
	enum writer_state st;
	struct persist_rec *head, *tail;
	uint64_t nqueued;
	int64_t head_since_us;        /* when the oldest queued record came */
	int64_t last_in_us;           /* when the newest came */
	int arrived_busy;             /* records came while a batch was in flight */
	struct batch bt;
	struct buf sql;               /* a query built for this batch */
	int staged, alone, refused;
	struct pq_error e;
	int64_t deadline_ms, t0_us;
	unsigned backoff_ms, attempts;
	int64_t retry_at_ms;
	int in_doubt;                 /* the first doubt_n records may be committed */
	size_t doubt_n;
};

static int
writer_busy(const struct writer *w)
{
	return w->st >= W_COPYIN;
}

/* /readyz: every writer connected and none refused by the server. */
static void
update_up(struct persist *p)
{
	int up = 1;

	for (unsigned i = 0; i < p->nwriters; i++)
		if (p->writers[i].pg == NULL || p->writers[i].refused)
			up = 0;
	ck_pr_store_int(&p->up, up);
}

/* ---- the FIFOs ----------------------------------------------------------------------- */

static void
fifo_append(struct writer *w, struct persist_rec *r)
{
	int64_t now = mono_us();

	r->next = NULL;
	if (w->tail != NULL)
		w->tail->next = r;
	else {
		w->head = r;
		w->head_since_us = now;
	}
	w->tail = r;
	w->nqueued++;
	w->last_in_us = now;
	if (writer_busy(w))
		w->arrived_busy = 1;
	w->p->nqueued++;
}

/* Move whatever the mailbox holds onto the writers' FIFOs. */
static void
take_mail(struct persist *p)
{
	struct mailbox_msg *m;

	mailbox_clear_wakeup(&p->mb);
	while ((m = mailbox_take(&p->mb)) != NULL) {
		struct persist_rec *r = (struct persist_rec *)m;

		if (m->kind == PERSIST_MSG_STOP) {
			p->stop_seen = 1;
			free(m);
			continue;
		}
		fifo_append(&p->writers[(uint64_t)r->room_id % p->nwriters], r);
	}
}

/* ---- connecting --------------------------------------------------------------------- */

static void
disconnect(struct writer *w)
{
	if (w->pg != NULL)
		PQfinish(w->pg);
	w->pg = NULL;
	w->st = W_DOWN;
	update_up(w->p);
}

/* The server's notices (IF NOT EXISTS skips and the like) are not ours to print. */
static void
quiet_notice(void *arg, const char *message)
{
	(void)arg;
	log_debug("db_notice role=persist message=\"%.*s\"",
	    (int)strcspn(message, "\n"), message);
}

static void
backoff_grow(struct writer *w)
{
	w->backoff_ms = w->backoff_ms == 0 ? PERSIST_BACKOFF_MIN_MS :
	    w->backoff_ms * 2 > PERSIST_BACKOFF_MAX_MS ? PERSIST_BACKOFF_MAX_MS :
	    w->backoff_ms * 2;
	w->retry_at_ms = mono_ms() + w->backoff_ms;
}

/* Connect (blocking: up to CONNECT_TIMEOUT_S) and migrate; 0 on success. */
static int
connect_db(struct writer *w)
{
	const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
	const char *vals[] = { w->p->cfg.conninfo, CONNECT_TIMEOUT_S, "parleyd-persist", NULL };
	struct persist *p = w->p;
	char err[512];
	PGconn *c;
	int version;

	/* expand_dbname: the conninfo string or URI decides, the rest are defaults. */
	c = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, sizeof(err), "%s", PQerrorMessage(c));
		PQfinish(c);
		goto fail;
	}
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	if ((version = migrate_apply(c, err, sizeof(err))) < 0) {
		PQfinish(c);
		goto fail;
	}
	w->pg = c;
	w->st = W_IDLE;
	if (w->attempts != 0 || !ck_pr_load_int(&p->schema_ready))
		log_info("db_connected role=persist writer=%u schema_version=%d "
		    "after_attempts=%u", w->id, version, w->attempts);
	w->attempts = 0;
	w->backoff_ms = 0;
	w->refused = 0;
	ck_pr_store_int(&p->schema_ready, 1);
	update_up(p);
	return 0;
fail:
	if (w->attempts++ % 20 == 0)
		log_warn("db_unreachable role=persist writer=%u attempts=%u held=%llu "
		    "error=\"%s\"", w->id, w->attempts, (unsigned long long)w->nqueued, err);
	backoff_grow(w);
	ck_pr_inc_64(&p->stats.reconnects);
	return -1;
}

/* The writer's next batch: the first n records of its FIFO. */
static void
batch_build(struct writer *w, size_t n)
{
	struct batch *bt = &w->bt;
	struct persist_rec **reads = xmalloc(n * sizeof(*reads));
	size_t nreads = 0, i = 0;

	bt->recs = xrealloc(bt->recs, n * sizeof(*bt->recs));
	bt->n = n;
	bt->rows.len = bt->tail.len = 0;
	bt->nevents = 0;
	bt->first_event = NULL;
	for (struct persist_rec *r = w->head; i < n; r = r->next, i++) {
		bt->recs[i] = r;
		switch (r->base.kind) {
		case PERSIST_EVENT:
			if (bt->first_event == NULL)
				bt->first_event = r;
			bt->nevents++;
			break;
		case PERSIST_READ:
			reads[nreads++] = r;
			break;
		}
	}
	tail_sql(&bt->tail, reads, nreads);
	free(reads);
}

/*
 * A client id reused beyond the dedupe window met the unique index: store
 * those events without their id (they are new events, PROTOCOL.md section
 * 5), through a staging table. Rare; the fast path stays a plain COPY.
 */
static const char staging_sql[] =
    "BEGIN;"
    "CREATE TEMP TABLE IF NOT EXISTS events_staging (LIKE events) ON COMMIT DELETE ROWS;"
    "COPY events_staging (room_id, seq, kind, user_name, target, body, emoji, add, client_id, ts) "
    "FROM STDIN";
static const char staging_insert_sql[] =
    "INSERT INTO events SELECT s.room_id, s.seq, s.kind, s.user_name, s.target, s.body, "
    "s.emoji, s.add, CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.room_id = s.room_id "
    "AND e.user_name = s.user_name AND e.client_id = s.client_id) THEN NULL "
    "ELSE s.client_id END, s.ts FROM events_staging s ORDER BY s.room_id, s.seq;";
static const char copy_sql[] =
    "BEGIN;"
    "COPY events (room_id, seq, kind, user_name, target, body, emoji, add, client_id, ts) "
    "FROM STDIN";
/* A batch of events only: the COPY is its own transaction, one round trip less. */
static const char copy_alone_sql[] =
    "COPY events (room_id, seq, kind, user_name, target, body, emoji, add, client_id, ts) "
    "FROM STDIN";

/* Per batch: the last record of each room, told once. */
struct notice {
	struct room *room;
	unsigned home;
	uint64_t rec;
};

static void
notify_rooms(struct persist *p, struct batch *bt)
{
	size_t cap = 16, i;
	struct notice *t;

	while (cap < bt->n * 2)
		cap *= 2;
	t = xcalloc(cap, sizeof(*t));
	for (i = 0; i < bt->n; i++) {
		struct persist_rec *r = bt->recs[i];
		size_t h;

		if (r->room == NULL || r->rec == 0)
			continue;
		h = ((uintptr_t)r->room >> 4) * 0x9E3779B97F4A7C15ULL >> 7 & (cap - 1);
		while (t[h].room != NULL && t[h].room != r->room)
			h = (h + 1) & (cap - 1);
		t[h].room = r->room;
		t[h].home = r->home;
		if (r->rec > t[h].rec)
			t[h].rec = r->rec;
	}
	for (i = 0; i < cap; i++) {
		struct persist_committed *c;

		if (t[i].room == NULL)
			continue;
		c = xmalloc(sizeof(*c));
		c->base.kind = p->cfg.committed_kind;
		c->room = t[i].room;
		c->rec = t[i].rec;
		p->cfg.post(p->cfg.ctx, t[i].home, &c->base);
	}
	free(t);
}

/*
 * The batch's events as COPY rows, sent a chunk at a time as they are
 * formatted: the server inserts the first rows while we format the rest.
 * The connection is in blocking mode: a send waits only for socket buffer
 * space, which the server frees as it reads.
 */
#define COPY_CHUNK (32 * 1024)

static int
copy_rows(struct writer *w)
{
	struct batch *bt = &w->bt;

	bt->rows.len = 0;
	for (size_t i = 0; i < bt->n; i++) {
		if (bt->recs[i]->base.kind != PERSIST_EVENT)
			continue;
		copy_row(&bt->rows, bt->recs[i]);
		if (bt->rows.len >= COPY_CHUNK) {
			if (PQputCopyData(w->pg, bt->rows.p, (int)bt->rows.len) != 1)
				return -1;
			bt->rows.len = 0;
		}
	}
	if (bt->rows.len > 0 && PQputCopyData(w->pg, bt->rows.p, (int)bt->rows.len) != 1)
		return -1;
	return PQputCopyEnd(w->pg, NULL) == 1 ? 0 : -1;
}

/* ---- after a commit ---------------------------------------------------------------- */

/* The first n records of w are durable: tell their rooms, free them. */
static void
batch_done(struct writer *w)
{
	struct persist *p = w->p;
	struct batch *bt = &w->bt;

	notify_rooms(p, bt);
	for (size_t i = 0; i < bt->n; i++) {
		struct persist_rec *r = w->head;

		w->head = r->next;
		free(r);
	}
	if (w->head == NULL)
		w->tail = NULL;
	else
		w->head_since_us = mono_us();
	w->nqueued -= bt->n;
	p->nqueued -= bt->n;
	ck_pr_sub_64(&p->inflight, bt->n);   /* every record held a place */
	bt->n = 0;
}

/*
 * The connection died around a COMMIT: did it land? Each event's (room,
 * seq) is unique, so one row answers for the whole transaction. A batch
 * without events is safe to apply again (read positions only move up).
 * Returns 1, 0, or -1 when it could not be asked.
 */
static int
batch_landed(struct writer *w)
{
	struct persist_rec *first = w->bt.first_event;
	char seq[24], room[24];
	const char *params[2] = { room, seq };
	PGresult *r;
	int landed;

	if (first == NULL)
		return 0;
	snprintf(room, sizeof(room), "%lld", (long long)first->room_id);
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)first->seq);
	r = PQexecParams(w->pg, "SELECT 1 FROM events WHERE room_id = $1 AND seq = $2",
	    2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		PQclear(r);
		return -1;
	}
	landed = PQntuples(r) == 1;
	PQclear(r);
	return landed;
}

/* Reconnected with a batch in doubt: finish it if it landed. */
static int
settle_doubt(struct writer *w)
{
	int landed;

	if (!w->in_doubt)
		return 0;
	batch_build(w, w->doubt_n);
	if ((landed = batch_landed(w)) < 0) {
		disconnect(w);
		backoff_grow(w);
		return -1;
	}
	log_info("db_batch_in_doubt writer=%u rows=%zu landed=%d", w->id, w->bt.n, landed);
	if (landed)
		batch_done(w);
	w->in_doubt = 0;
	return 0;
}

/* The thread only: owner stores, no locked instruction (persist.h). */
static void
stats_commit(struct persist *p, size_t n, int64_t us)
{
	struct persist_stats *s = &p->stats;

	METRIC_INC(s, batches);
	METRIC_ADD(s, rows, n);
	METRIC_ADD(s, commit_us_total, us);
	METRIC_MAX(s, commit_us_max, us);
	metrics_hist_observe(&s->batch_rows, &batch_rows_spec, n);
	metrics_hist_observe(&s->commit_us, &commit_us_spec, (uint64_t)us);
}

/* ---- a batch, step by step ------------------------------------------------------------ */

static int
send_query(struct writer *w, const char *sql, enum writer_state next)
{
	if (!PQsendQuery(w->pg, sql))
		return -1;
	w->st = next;
	return 0;
}

static void batch_failed(struct writer *w, int lost);

/* Take the head of the FIFO and send its first query. */
static void
batch_start(struct writer *w)
{
	struct persist *p = w->p;
	size_t n = w->nqueued < p->cfg.batch_max ? w->nqueued : p->cfg.batch_max;
	struct batch *bt = &w->bt;
	int ok;

	batch_build(w, n);
	w->alone = !w->staged && bt->nevents == bt->n;
	memset(&w->e, 0, sizeof(w->e));
	w->arrived_busy = 0;
	w->t0_us = mono_us();
	w->deadline_ms = mono_ms() + PERSIST_COMMIT_TIMEOUT_MS;
	if (bt->nevents > 0) {
		ok = send_query(w, w->staged ? staging_sql : w->alone ? copy_alone_sql :
		    copy_sql, W_COPYIN) == 0;
	} else {
		w->sql.len = 0;
		buf_str(&w->sql, "BEGIN;");
		buf_add(&w->sql, bt->tail.p, strlen(bt->tail.p) + 1);
		ok = send_query(w, w->sql.p, W_TAIL) == 0;
	}
	if (!ok)
		batch_failed(w, 1);
}

static void
batch_committed(struct writer *w)
{
	struct persist *p = w->p;
	size_t n = w->bt.n, nevents = w->bt.nevents;
	int64_t us = mono_us() - w->t0_us;

	w->st = W_IDLE;
	w->staged = 0;
	w->backoff_ms = 0;
	if (w->refused) {
		w->refused = 0;
		update_up(p);
	}
	stats_commit(p, n, us);
	batch_done(w);
	log_debug("db_batch writer=%u rows=%zu events=%zu us=%lld", w->id, n, nevents,
	    (long long)us);
}

/* The batch did not commit. Its records stay at the head of the FIFO. */
static void
batch_failed(struct writer *w, int lost)
{
	struct pq_error *e = &w->e;

	if (e->message[0] == '\0' && w->pg != NULL)
		note_error(e, NULL, w->pg);
	if (!lost && !w->staged && strcmp(e->sqlstate, "23505") == 0 &&
	    strcmp(e->constraint, "events_client_id") == 0) {
		log_warn("client_id_reused writer=%u action=\"stored without the id\" batch=%zu",
		    w->id, w->bt.n);
		PQclear(PQexec(w->pg, "ROLLBACK"));
		w->staged = 1;
		w->st = W_IDLE;   /* again at once, through the staging table */
		return;
	}
	log_error("db_write_failed writer=%u rows=%zu lost=%d sqlstate=%s error=\"%s\"",
	    w->id, w->bt.n, lost, e->sqlstate, e->message);
	ck_pr_inc_64(&w->p->stats.failures);
	if (lost) {
		/* Maybe it committed just before the line went: look first. */
		w->in_doubt = w->bt.first_event != NULL;
		w->doubt_n = w->bt.n;
		disconnect(w);
		w->retry_at_ms = mono_ms();
		return;
	}
	/* The server refused it: not ready, and not in a tight loop. */
	PQclear(PQexec(w->pg, "ROLLBACK"));
	w->st = W_IDLE;
	w->refused = 1;
	update_up(w->p);
	backoff_grow(w);
}

/* The current query's results are all in. */
static void
query_ended(struct writer *w)
{
	if (w->e.message[0] != '\0') {
		batch_failed(w, 0);
		return;
	}
	switch (w->st) {
	case W_RESULT:
		if (w->alone) {
			batch_committed(w);   /* the COPY was the transaction */
			return;
		}
		w->sql.len = 0;
		if (w->staged)
			buf_str(&w->sql, staging_insert_sql);
		buf_add(&w->sql, w->bt.tail.p, strlen(w->bt.tail.p) + 1);
		if (send_query(w, w->sql.p, W_TAIL) != 0)
			batch_failed(w, 1);
		return;
	case W_TAIL:
		batch_committed(w);
		return;
	default:
		/* the query ended before the server asked for rows */
		snprintf(w->e.message, sizeof(w->e.message), "COPY was not started");
		batch_failed(w, 0);
		return;
	}
}

/* The writer's socket is readable: take what the server said. */
static void
writer_input(struct writer *w)
{
	PGresult *r;

	if (!PQconsumeInput(w->pg)) {
		if (writer_busy(w)) {
			batch_failed(w, 1);
		} else {
			log_warn("db_lost role=persist writer=%u error=\"%.*s\"", w->id,
			    (int)strcspn(PQerrorMessage(w->pg), "\n"), PQerrorMessage(w->pg));
			disconnect(w);
			w->retry_at_ms = mono_ms();
		}
		return;
	}
	while (writer_busy(w) && !PQisBusy(w->pg)) {
		if ((r = PQgetResult(w->pg)) == NULL) {
			query_ended(w);
			return;
		}
		switch (PQresultStatus(r)) {
		case PGRES_COPY_IN:
			PQclear(r);
			if (w->e.message[0] != '\0' || copy_rows(w) != 0) {
				PQputCopyEnd(w->pg, "batch abandoned");
				if (w->e.message[0] == '\0') {
					batch_failed(w, 1);
					return;
				}
			}
			w->st = W_RESULT;
			continue;
		case PGRES_COMMAND_OK:
		case PGRES_TUPLES_OK:
			break;
		default:
			note_error(&w->e, r, w->pg);
			break;
		}
		PQclear(r);
	}
	if (w->pg != NULL && PQstatus(w->pg) != CONNECTION_OK) {
		if (writer_busy(w))
			batch_failed(w, 1);
		else
			disconnect(w);
	}
}

/* ---- the thread ------------------------------------------------------------------------------ */

static int
stopping(struct persist *p)
{
	return p->stop_seen || ck_pr_load_int(&p->stop);
}

/*
 * Group commit. Records that came in while the writer's last batch was in
 * flight have waited already: they go at once, however few. After an idle
 * spell the first record waits for company, until batch_max records,
 * batch_delay, or BATCH_QUIET_US without a new one: requests come in
 * bursts (a tick of many clients), and once a burst is over waiting out
 * the whole delay buys no larger batch, only latency. Returns 0 when the
 * batch should start now, else the microseconds to wait at most.
 */
static int64_t
batch_wait_us(struct writer *w, int64_t now)
{
	struct persist *p = w->p;
	int64_t by_delay, by_quiet;

	if (w->nqueued >= p->cfg.batch_max || w->arrived_busy || stopping(p))
		return 0;
	by_delay = w->head_since_us + 1000 * (int64_t)p->cfg.batch_delay_ms - now;
	by_quiet = w->last_in_us + BATCH_QUIET_US - now;
	if (by_delay <= 0 || by_quiet <= 0)
		return 0;
	return by_delay < by_quiet ? by_delay : by_quiet;
}

/*
 * Move w along as far as it can go without waiting; returns how long (us)
 * it may sleep before it needs looking at again (-1: until its socket or
 * the mailbox says something).
 */
static int64_t
writer_step(struct writer *w)
{
	int64_t now_m = mono_ms(), wait;

	if (w->st == W_DOWN) {
		if (now_m < w->retry_at_ms)
			return (w->retry_at_ms - now_m) * 1000;
		if (connect_db(w) != 0 || settle_doubt(w) != 0)
			return (w->retry_at_ms - mono_ms()) * 1000;
	}
	if (writer_busy(w)) {
		if (now_m >= w->deadline_ms) {
			snprintf(w->e.message, sizeof(w->e.message),
			    "no commit within %d ms", PERSIST_COMMIT_TIMEOUT_MS);
			batch_failed(w, 1);
			return 0;
		}
		return (w->deadline_ms - now_m) * 1000;
	}
	if (w->nqueued == 0)
		return -1;
	if (now_m < w->retry_at_ms)
		return (w->retry_at_ms - now_m) * 1000;   /* refused: backing off */
	if ((wait = batch_wait_us(w, mono_us())) > 0)
		return wait;
	batch_start(w);
	return w->st == W_DOWN ? 0 : (w->deadline_ms - mono_ms()) * 1000;
}

static int
all_drained(const struct persist *p)
{
	for (unsigned i = 0; i < p->nwriters; i++)
		if (p->writers[i].nqueued > 0 || writer_busy(&p->writers[i]))
			return 0;
	return 1;
}

/* One turn: step every writer, then sleep on the mailbox and their sockets. */
static void
persist_turn(struct persist *p)
{
	struct pollfd pfd[1 + PERSIST_WRITERS];
	int64_t sleep_us = -1;
	struct timespec ts;
	unsigned n = 1;

	for (unsigned i = 0; i < p->nwriters; i++) {
		int64_t t = writer_step(&p->writers[i]);

		if (t >= 0 && (sleep_us < 0 || t < sleep_us))
			sleep_us = t;
	}
	pfd[0].fd = p->mb.efd;
	pfd[0].events = POLLIN;
	for (unsigned i = 0; i < p->nwriters; i++) {
		struct writer *w = &p->writers[i];

		pfd[n].fd = w->pg != NULL ? PQsocket(w->pg) : -1;
		pfd[n].events = POLLIN;
		n++;
	}
	if (mailbox_pending(&p->mb))
		sleep_us = 0;
	ts.tv_sec = (time_t)(sleep_us / 1000000);
	ts.tv_nsec = (long)(sleep_us % 1000000) * 1000;
	if (ppoll(pfd, n, sleep_us < 0 ? NULL : &ts, NULL) > 0)
		for (unsigned i = 0; i < p->nwriters; i++)
			if (pfd[1 + i].revents != 0 && p->writers[i].pg != NULL)
				writer_input(&p->writers[i]);
	take_mail(p);
}

static void *
persist_main(void *arg)
{
	struct persist *p = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	take_mail(p);
	for (;;) {
		if (ck_pr_load_int(&p->abandon))
			break;
		if (stopping(p) && all_drained(p))
			break;
		persist_turn(p);
	}
	if (p->nqueued > 0)
		log_error("persist_abandoned records=%llu reason=\"database unreachable at exit; "
		    "none of them was acked\"", (unsigned long long)p->nqueued);
	for (unsigned i = 0; i < p->nwriters; i++)
		disconnect(&p->writers[i]);
	return NULL;
}

/* ---- life -------------------------------------------------------------------------------------- */

struct persist *
persist_new(const struct persist_config *cfg)
{
	struct persist *p = xcalloc(1, sizeof(*p));

	p->cfg = *cfg;
	if (p->cfg.batch_max == 0)
		p->cfg.batch_max = 1;
	if (mailbox_init(&p->mb) != 0) {
		log_error("persist_init_failed error=\"%s\"", strerror(errno));
		free(p);
		return NULL;
	}
	p->nwriters = PERSIST_WRITERS;
	p->writers = xcalloc(p->nwriters, sizeof(*p->writers));
	for (unsigned i = 0; i < p->nwriters; i++) {
		p->writers[i].p = p;
		p->writers[i].id = i;
	}
	return p;
}

int
persist_start(struct persist *p)
{
	int err = pthread_create(&p->thread, NULL, persist_main, p);

	p->started = err == 0;
	return err;
}

void
persist_stop(struct persist *p, int abandon)
{
	struct mailbox_msg *m;

	if (!p->started)
		return;
	if (abandon)
		ck_pr_store_int(&p->abandon, 1);
	ck_pr_store_int(&p->stop, 1);
	m = xcalloc(1, sizeof(*m));
	m->kind = PERSIST_MSG_STOP;
	mailbox_push(&p->mb, m);
	pthread_join(p->thread, NULL);
	p->started = 0;
}

void
persist_free(struct persist *p)
{
	struct mailbox_msg *m;
	struct persist_rec *r;

	if (p == NULL)
		return;
	while ((m = mailbox_take(&p->mb)) != NULL)
		free(m);
	for (unsigned i = 0; i < p->nwriters; i++) {
		struct writer *w = &p->writers[i];

		while ((r = w->head) != NULL) {
			w->head = r->next;
			free(r);
		}
		if (w->pg != NULL)
			PQfinish(w->pg);
		free(w->bt.recs);
		free(w->bt.rows.p);
		free(w->bt.tail.p);
		free(w->sql.p);
	}
	free(p->writers);
	mailbox_destroy(&p->mb);
	free(p);
}
