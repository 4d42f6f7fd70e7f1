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
#include "migrate.h"
#include "persist.h"
#include "xmalloc.h"

#define CONNECT_TIMEOUT_S "5"
#define BATCH_QUIET_US 200      /* a burst is over when nothing came for this long */

static const char *const kind_names[] = {
	[PERSIST_MESSAGE] = "message", [PERSIST_EDIT] = "edit",
	[PERSIST_DELETE] = "delete", [PERSIST_REACTION] = "reaction",
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

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

int
persist_schema_ready(const struct persist *p)
{
	return ck_pr_load_int(&p->schema_ready);
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
	    "# HELP parley_persist_pending Records (events, read positions) reserved and not yet committed.\n"
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
	    (unsigned long long)ck_pr_load_64((uint64_t *)&s->batches),
	    (unsigned long long)ck_pr_load_64((uint64_t *)&s->rows),
	    (double)ck_pr_load_64((uint64_t *)&s->commit_us_total) / 1e6,
	    (double)ck_pr_load_64((uint64_t *)&s->commit_us_max) / 1e6,
	    (unsigned long long)ck_pr_load_64((uint64_t *)&s->failures),
	    (unsigned long long)ck_pr_load_64((uint64_t *)&s->reconnects));
}

/* ---- the thread's FIFO ------------------------------------------------------------ */

static void
fifo_append(struct persist *p, struct persist_rec *r)
{
	r->next = NULL;
	if (p->tail != NULL)
		p->tail->next = r;
	else {
		p->head = r;
		p->head_since_us = now_us();
	}
	p->tail = r;
	p->nqueued++;
	ck_pr_store_64(&p->queued, p->nqueued);
}

/* Move whatever the mailbox holds onto the FIFO. */
static void
take_mail(struct persist *p)
{
	struct mailbox_msg *m;

	mailbox_clear_wakeup(&p->mb);
	while ((m = mailbox_take(&p->mb)) != NULL) {
		if (m->kind == PERSIST_MSG_STOP) {
			p->stop_seen = 1;
			free(m);
			continue;
		}
		fifo_append(p, (struct persist_rec *)m);
	}
}

/* Wait for mail at most us microseconds, then take it. */
static void
wait_mail_us(struct persist *p, int64_t us)
{
	struct pollfd pfd = { p->mb.efd, POLLIN, 0 };
	struct timespec ts = { (time_t)(us / 1000000), (long)(us % 1000000) * 1000 };

	if (!mailbox_pending(&p->mb))
		ppoll(&pfd, 1, &ts, NULL);
	take_mail(p);
}

/* Wait for mail (or timeout_ms; -1: forever), then take it. */
static void
wait_mail(struct persist *p, int timeout_ms)
{
	struct pollfd pfd = { p->mb.efd, POLLIN, 0 };

	if (!mailbox_pending(&p->mb))
		poll(&pfd, 1, timeout_ms);
	take_mail(p);
}

/* ---- connecting --------------------------------------------------------------------- */

static void
disconnect(struct persist *p)
{
	if (p->pg != NULL)
		PQfinish(p->pg);
	p->pg = NULL;
	ck_pr_store_int(&p->up, 0);
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
backoff_grow(struct persist *p)
{
	p->backoff_ms = p->backoff_ms == 0 ? PERSIST_BACKOFF_MIN_MS :
	    p->backoff_ms * 2 > PERSIST_BACKOFF_MAX_MS ? PERSIST_BACKOFF_MAX_MS :
	    p->backoff_ms * 2;
}

/* Connect and migrate; 0 on success. Logged once per failure streak. */
static int
connect_db(struct persist *p)
{
	const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
	const char *vals[] = { p->cfg.conninfo, CONNECT_TIMEOUT_S, "parleyd-persist", NULL };
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
	p->pg = c;
	if (p->attempts != 0 || !ck_pr_load_int(&p->schema_ready))
		log_info("db_connected role=persist schema_version=%d after_attempts=%u",
		    version, p->attempts);
	p->attempts = 0;
	ck_pr_store_int(&p->schema_ready, 1);
	ck_pr_store_int(&p->up, 1);
	p->backoff_ms = 0;
	return 0;
fail:
	for (char *nl; (nl = strchr(err, '\n')) != NULL;)
		*nl = ' ';
	if (p->attempts++ % 20 == 0)
		log_warn("db_unreachable role=persist attempts=%u held=%llu error=\"%s\"",
		    p->attempts, (unsigned long long)p->nqueued, err);
	backoff_grow(p);
	p->retry_at_ms = now_ms() + p->backoff_ms;
	ck_pr_inc_64(&p->stats.reconnects);
	return -1;
}

/* ---- talking to the server with a deadline ------------------------------------------- */

/* Wait until the socket is ready for what libpq needs, or the deadline. */
static int
pq_wait(struct persist *p, short events, int64_t deadline)
{
	struct pollfd pfd = { PQsocket(p->pg), events, 0 };
	int64_t left = deadline - now_ms();
	int n;

	if (left <= 0)
		return -1;
	do
		n = poll(&pfd, 1, (int)left);
	while (n < 0 && errno == EINTR);
	return n > 0 ? 0 : -1;
}

static int
pq_flush(struct persist *p, int64_t deadline)
{
	int r;

	while ((r = PQflush(p->pg)) == 1) {
		if (pq_wait(p, POLLIN | POLLOUT, deadline) != 0)
			return -1;
		if (PQconsumeInput(p->pg) == 0)
			return -1;
	}
	return r == 0 ? 0 : -1;
}

/* The next result, NULL at the end of the query or on failure (*failed). */
static PGresult *
pq_next(struct persist *p, int64_t deadline, int *failed)
{
	while (PQisBusy(p->pg)) {
		if (pq_wait(p, POLLIN, deadline) != 0 || PQconsumeInput(p->pg) == 0) {
			*failed = 1;
			return NULL;
		}
	}
	return PQgetResult(p->pg);
}

/*
 * Send sql (one or more statements) and check every result: the wanted
 * status for the last, COMMAND_OK or TUPLES_OK before. Returns 0, or -1
 * with the first error's SQLSTATE and constraint in st (when the server
 * answered) and *lost set when the connection failed.
 */
struct pq_error {
	int lost;
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

/* Drain the results of the current query; wanted: the last one's status. */
static int
pq_finish_query(struct persist *p, ExecStatusType wanted, int64_t deadline,
    struct pq_error *e)
{
	PGresult *r;
	int ok = 1, failed = 0;

	while ((r = pq_next(p, deadline, &failed)) != NULL) {
		ExecStatusType st = PQresultStatus(r);

		if (st == wanted && wanted == PGRES_COPY_IN) {
			PQclear(r);
			return ok ? 0 : -1;   /* the server waits for our rows */
		}
		if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
			ok = 0;
			note_error(e, r, p->pg);
		}
		PQclear(r);
	}
	if (failed || PQstatus(p->pg) != CONNECTION_OK) {
		e->lost = 1;
		note_error(e, NULL, p->pg);
		return -1;
	}
	return ok && wanted != PGRES_COPY_IN ? 0 : -1;
}

static int
pq_query(struct persist *p, const char *sql, ExecStatusType wanted, int64_t deadline,
    struct pq_error *e)
{
	if (!PQsendQuery(p->pg, sql) || pq_flush(p, deadline) != 0) {
		e->lost = 1;
		note_error(e, NULL, p->pg);
		return -1;
	}
	return pq_finish_query(p, wanted, deadline, e);
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

/* 'text' as an SQL literal (names are [A-Za-z0-9._:-], but quote anyway). */
static void
sql_literal(struct buf *b, const char *s)
{
	buf_add(b, "'", 1);
	for (; *s != '\0'; s++) {
		if (*s == '\'')
			buf_add(b, "'", 1);
		buf_add(b, s, 1);
	}
	buf_add(b, "'", 1);
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
	char num[48];
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
		sql_literal(b, r->user);
		snprintf(num, sizeof(num), ",%llu)", (unsigned long long)r->seq);
		buf_str(b, num);
	}
	if (out > 0)
		buf_str(b, " ON CONFLICT (room_id, user_name) DO UPDATE SET seq = "
		    "GREATEST(read_positions.seq, EXCLUDED.seq);");
	buf_add(b, "COMMIT", 7);   /* with its NUL: it is sent as a string */
}

/* ---- writing a batch ---------------------------------------------------------------------- */

struct batch {
	struct persist_rec **recs;   /* the first n of the FIFO */
	size_t n;
	struct buf rows;             /* COPY data */
	struct buf tail;             /* rooms, reads, COMMIT */
	size_t nevents;
	struct persist_rec *first_event;
};

static void
batch_build(struct persist *p, struct batch *bt, size_t n)
{
	struct persist_rec **reads = xmalloc(n * sizeof(*reads));
	size_t nreads = 0, i = 0;

	bt->recs = xrealloc(bt->recs, n * sizeof(*bt->recs));
	bt->n = n;
	bt->rows.len = bt->tail.len = 0;
	bt->nevents = 0;
	bt->first_event = NULL;
	for (struct persist_rec *r = p->head; i < n; r = r->next, i++) {
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

/*
 * The batch's events as COPY rows, sent a chunk at a time as they are
 * formatted: the server inserts the first rows while we format the rest
 * (formatting is a tenth of a batch's time it would otherwise sit idle).
 */
#define COPY_CHUNK (32 * 1024)

static int
copy_rows(struct persist *p, struct batch *bt)
{
	bt->rows.len = 0;
	for (size_t i = 0; i < bt->n; i++) {
		if (bt->recs[i]->base.kind != PERSIST_EVENT)
			continue;
		copy_row(&bt->rows, bt->recs[i]);
		if (bt->rows.len >= COPY_CHUNK) {
			if (PQputCopyData(p->pg, bt->rows.p, (int)bt->rows.len) != 1)
				return -1;
			bt->rows.len = 0;
		}
	}
	if (bt->rows.len > 0 && PQputCopyData(p->pg, bt->rows.p, (int)bt->rows.len) != 1)
		return -1;
	return 0;
}

static int
batch_write(struct persist *p, struct batch *bt, int staged, struct pq_error *e)
{
	int64_t deadline = now_ms() + PERSIST_COMMIT_TIMEOUT_MS;
	int alone = !staged && bt->nevents == bt->n;

	if (bt->nevents > 0) {
		if (pq_query(p, staged ? staging_sql : alone ? copy_alone_sql : copy_sql,
		    PGRES_COPY_IN, deadline, e) != 0)
			goto fail;
		if (copy_rows(p, bt) != 0 ||
		    PQputCopyEnd(p->pg, NULL) != 1 || pq_flush(p, deadline) != 0) {
			e->lost = 1;
			note_error(e, NULL, p->pg);
			goto fail;
		}
		if (pq_finish_query(p, PGRES_COMMAND_OK, deadline, e) != 0)
			goto fail;
		if (alone)
			return 0;   /* committed with the COPY */
		if (staged && pq_query(p, staging_insert_sql, PGRES_COMMAND_OK, deadline, e) != 0)
			goto fail;
	} else if (pq_query(p, "BEGIN", PGRES_COMMAND_OK, deadline, e) != 0) {
		goto fail;
	}
	if (pq_query(p, bt->tail.p, PGRES_COMMAND_OK, deadline, e) != 0)
		goto fail;
	return 0;
fail:
	if (!e->lost && now_ms() >= deadline) {
		e->lost = 1;
		snprintf(e->message, sizeof(e->message),
		    "no commit within %d ms", PERSIST_COMMIT_TIMEOUT_MS);
	}
	if (!e->lost)
		PQclear(PQexec(p->pg, "ROLLBACK"));
	return -1;
}

/* ---- after a commit -------------------------------------------------------------------------- */

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

/* The first n records are durable: tell their rooms, free them. */
static void
batch_done(struct persist *p, struct batch *bt)
{
	notify_rooms(p, bt);
	for (size_t i = 0; i < bt->n; i++) {
		struct persist_rec *r = p->head;

		p->head = r->next;
		free(r);
	}
	if (p->head == NULL)
		p->tail = NULL;
	else
		p->head_since_us = now_us();
	p->nqueued -= bt->n;
	ck_pr_store_64(&p->queued, p->nqueued);
	ck_pr_sub_64(&p->inflight, bt->n);   /* every record held a place */
}

/*
 * The connection died around a COMMIT: did it land? Each event's (room,
 * seq) is unique, so one row answers for the whole transaction. A batch
 * without events is safe to apply again (rooms and reads are idempotent).
 */
static int
batch_landed(struct persist *p, struct batch *bt)
{
	char seq[24], room[24];
	const char *params[2] = { room, seq };
	PGresult *r;
	int landed;

	if (bt->first_event == NULL)
		return 0;
	snprintf(room, sizeof(room), "%lld", (long long)bt->first_event->room_id);
	snprintf(seq, sizeof(seq), "%llu", (unsigned long long)bt->first_event->seq);
	r = PQexecParams(p->pg, "SELECT 1 FROM events WHERE room_id = $1 AND seq = $2",
	    2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		PQclear(r);
		return -1;
	}
	landed = PQntuples(r) == 1;
	PQclear(r);
	return landed;
}

static void
stats_commit(struct persist *p, struct batch *bt, int64_t us)
{
	ck_pr_inc_64(&p->stats.batches);
	ck_pr_add_64(&p->stats.rows, bt->n);
	ck_pr_add_64(&p->stats.commit_us_total, (uint64_t)us);
	if ((uint64_t)us > ck_pr_load_64(&p->stats.commit_us_max))
		ck_pr_store_64(&p->stats.commit_us_max, (uint64_t)us);
}

/* Write the head of the FIFO; 0 when it is durable. */
static int
write_head(struct persist *p, struct batch *bt)
{
	size_t n = p->nqueued < p->cfg.batch_max ? p->nqueued : p->cfg.batch_max;
	struct pq_error e;
	int64_t t0 = now_us();
	int staged = 0;

	batch_build(p, bt, n);
	for (;;) {
		memset(&e, 0, sizeof(e));
		if (batch_write(p, bt, staged, &e) == 0)
			break;
		if (!e.lost && !staged && strcmp(e.sqlstate, "23505") == 0 &&
		    strcmp(e.constraint, "events_client_id") == 0) {
			log_warn("client_id_reused action=\"stored without the id\" "
			    "batch=%zu", bt->n);
			staged = 1;
			continue;
		}
		for (char *nl; (nl = strchr(e.message, '\n')) != NULL;)
			*nl = ' ';
		log_error("db_write_failed rows=%zu lost=%d sqlstate=%s error=\"%s\"",
		    bt->n, e.lost, e.sqlstate, e.message);
		ck_pr_inc_64(&p->stats.failures);
		if (e.lost) {
			/* Maybe it committed just before the line went: look first. */
			p->in_doubt = bt->first_event != NULL;
			p->doubt_n = bt->n;
			disconnect(p);
			return -1;
		}
		/* The server refused it: not ready, and not in a tight loop. */
		ck_pr_store_int(&p->up, 0);
		backoff_grow(p);
		p->retry_at_ms = now_ms() + p->backoff_ms;
		return -1;
	}
	ck_pr_store_int(&p->up, 1);
	p->backoff_ms = 0;
	stats_commit(p, bt, now_us() - t0);
	log_debug("db_batch rows=%zu events=%zu us=%lld", bt->n, bt->nevents,
	    (long long)(now_us() - t0));
	batch_done(p, bt);
	return 0;
}

/* Reconnected with a batch in doubt: finish it if it landed. */
static int
settle_doubt(struct persist *p, struct batch *bt)
{
	int landed;

	if (!p->in_doubt)
		return 0;
	batch_build(p, bt, p->doubt_n);
	if ((landed = batch_landed(p, bt)) < 0) {
		disconnect(p);
		return -1;
	}
	log_info("db_batch_in_doubt rows=%zu landed=%d", bt->n, landed);
	if (landed)
		batch_done(p, bt);
	p->in_doubt = 0;
	return 0;
}

/* ---- the thread ------------------------------------------------------------------------------ */

static int
stopping(struct persist *p)
{
	return p->stop_seen || ck_pr_load_int(&p->stop);
}

/*
 * Group commit. Records that came in while the last batch was being
 * written have waited already: they go at once, however few. After an
 * idle spell the first record waits for company, until batch_max records,
 * batch_delay, or BATCH_QUIET_US without a new one: requests come in
 * bursts (a tick of many clients), and once a burst is over waiting out
 * the whole delay buys no larger batch, only latency.
 */
/*
 * Idle: wait for records, and watch the connection meanwhile, so a server
 * that goes away is noticed (and /readyz says so) before the next write.
 * Returns -1 when the connection is gone.
 */
static int
wait_idle(struct persist *p)
{
	struct pollfd pfd[2] = { { p->mb.efd, POLLIN, 0 }, { PQsocket(p->pg), POLLIN, 0 } };

	if (poll(pfd, 2, -1) > 0 && pfd[1].revents != 0 &&
	    (!PQconsumeInput(p->pg) || PQstatus(p->pg) != CONNECTION_OK)) {
		char err[256];

		snprintf(err, sizeof(err), "%s", PQerrorMessage(p->pg));
		for (char *nl; (nl = strchr(err, '\n')) != NULL;)
			*nl = ' ';
		log_warn("db_lost role=persist error=\"%s\"", err);
		disconnect(p);
		return -1;
	}
	take_mail(p);
	return 0;
}

static void
gather(struct persist *p)
{
	take_mail(p);
	if (p->nqueued > 0 || stopping(p))
		return;
	while (p->nqueued == 0 && !stopping(p))
		if (wait_idle(p) != 0)
			return;
	while (p->nqueued < p->cfg.batch_max && !stopping(p)) {
		int64_t left = p->head_since_us + 1000 * (int64_t)p->cfg.batch_delay_ms - now_us();
		uint64_t before = p->nqueued;

		if (left <= 0)
			return;
		wait_mail_us(p, left < BATCH_QUIET_US ? left : BATCH_QUIET_US);
		if (p->nqueued == before)
			return;   /* the burst is over */
	}
}

static void *
persist_main(void *arg)
{
	struct persist *p = arg;
	struct batch bt;
	sigset_t all;

	memset(&bt, 0, sizeof(bt));
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		int64_t wait = p->retry_at_ms - now_ms();

		if (ck_pr_load_int(&p->abandon))
			break;
		take_mail(p);
		if (stopping(p) && p->nqueued == 0)
			break;
		/* After a failure: records that keep coming must not hurry
		 * the next attempt. */
		if (wait > 0) {
			wait_mail(p, (int)wait);
			continue;
		}
		if (p->pg == NULL) {
			if (connect_db(p) != 0)
				continue;
			if (settle_doubt(p, &bt) != 0)
				continue;
		}
		gather(p);
		if (p->nqueued == 0) {
			if (stopping(p))
				break;
			continue;
		}
		write_head(p, &bt);
	}
	if (p->nqueued > 0)
		log_error("persist_abandoned records=%llu reason=\"database unreachable at exit; "
		    "none of them was acked\"", (unsigned long long)p->nqueued);
	free(bt.recs);
	free(bt.rows.p);
	free(bt.tail.p);
	disconnect(p);
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
	while ((r = p->head) != NULL) {
		p->head = r->next;
		free(r);
	}
	mailbox_destroy(&p->mb);
	free(p);
}
