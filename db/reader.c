#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <ck_pr.h>

#include "log.h"
#include "reader.h"
#include "xmalloc.h"

#define READER_BACKOFF_MIN_MS 100
#define READER_BACKOFF_MAX_MS 5000
#define READER_MAX_RESULTS 16

enum reader_state {
	READER_DOWN = 0,          /* waiting to (re)connect */
	READER_CONNECTING,
	READER_UP,
};

struct db_query {
	struct db_query *next;
	char *sql;
	db_reader_cb *cb;         /* NULL once cancelled */
	void *arg;
};

struct db_reader {
	struct event_base *base;
	char *conninfo;
	unsigned worker;
	const int *schema_ready;
	PGconn *pg;
	enum reader_state state;
	struct event *retry_ev;   /* timer: the next connection attempt */
	struct event *io_ev;      /* connecting: one-shot; up: read, persistent */
	struct event *write_ev;   /* up: output libpq could not flush yet */
	struct event *kick_ev;    /* runs the next query from the loop */
	unsigned backoff_ms;
	int logged_down;

	struct db_query *head, *tail;  /* head is running when sent */
	int sent;
	PGresult *res[READER_MAX_RESULTS];
	int nres;
	int overflow;
};

static void io_cb(evutil_socket_t fd, short what, void *arg);
static void write_cb(evutil_socket_t fd, short what, void *arg);
static void run_next(struct db_reader *rd);

static void
clear_results(struct db_reader *rd)
{
	for (int i = 0; i < rd->nres; i++)
		PQclear(rd->res[i]);
	rd->nres = 0;
	rd->overflow = 0;
}

static void
query_free(struct db_query *q)
{
	free(q->sql);
	free(q);
}

/* ---- connection ----------------------------------------------------------------- */

static void
schedule_retry(struct db_reader *rd)
{
	struct timeval tv;

	rd->backoff_ms = rd->backoff_ms == 0 ? READER_BACKOFF_MIN_MS :
	    rd->backoff_ms * 2 > READER_BACKOFF_MAX_MS ? READER_BACKOFF_MAX_MS :
	    rd->backoff_ms * 2;
	tv.tv_sec = rd->backoff_ms / 1000;
	tv.tv_usec = (rd->backoff_ms % 1000) * 1000;
	evtimer_add(rd->retry_ev, &tv);
}

/* Everything queued fails now; the connection goes; try again later. */
static void
lost(struct db_reader *rd, const char *why)
{
	struct db_query *q = rd->head, *next;

	if (!rd->logged_down)
		log_warn("db_unreachable role=reader worker=%u error=\"%s\"", rd->worker,
		    why != NULL ? why : "connection lost");
	rd->logged_down = 1;
	if (rd->io_ev != NULL) {
		event_free(rd->io_ev);
		rd->io_ev = NULL;
	}
	if (rd->write_ev != NULL) {
		event_free(rd->write_ev);
		rd->write_ev = NULL;
	}
	if (rd->pg != NULL)
		PQfinish(rd->pg);
	rd->pg = NULL;
	rd->state = READER_DOWN;
	clear_results(rd);
	/* Detach first: a callback may try to queue again (and be refused). */
	rd->head = rd->tail = NULL;
	rd->sent = 0;
	for (; q != NULL; q = next) {
		next = q->next;
		if (q->cb != NULL)
			q->cb(q->arg, NULL, 0, "database unavailable");
		query_free(q);
	}
	schedule_retry(rd);
}

static void
connect_wait(struct db_reader *rd, short what)
{
	if (rd->io_ev != NULL)
		event_free(rd->io_ev);
	rd->io_ev = event_new(rd->base, PQsocket(rd->pg), what, io_cb, rd);
	if (rd->io_ev == NULL || event_add(rd->io_ev, NULL) != 0)
		lost(rd, "cannot watch the database socket");
}

static void
connected(struct db_reader *rd)
{
	event_free(rd->io_ev);
	rd->io_ev = event_new(rd->base, PQsocket(rd->pg), EV_READ | EV_PERSIST, io_cb, rd);
	rd->write_ev = event_new(rd->base, PQsocket(rd->pg), EV_WRITE, write_cb, rd);
	if (rd->io_ev == NULL || rd->write_ev == NULL || event_add(rd->io_ev, NULL) != 0 ||
	    PQsetnonblocking(rd->pg, 1) != 0) {
		lost(rd, "cannot set up the database connection");
		return;
	}
	rd->state = READER_UP;
	rd->backoff_ms = 0;
	if (rd->logged_down)
		log_info("db_connected role=reader worker=%u", rd->worker);
	rd->logged_down = 0;
	run_next(rd);
}

static void
connect_step(struct db_reader *rd)
{
	switch (PQconnectPoll(rd->pg)) {
	case PGRES_POLLING_READING:
		connect_wait(rd, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		connect_wait(rd, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		connected(rd);
		break;
	default:
		lost(rd, PQerrorMessage(rd->pg));
		break;
	}
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_reader *rd = arg;
	const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
	const char *vals[] = { rd->conninfo, "5", "parleyd-reader", NULL };

	(void)fd;
	(void)what;
	rd->pg = PQconnectStartParams(keys, vals, 1);
	if (rd->pg == NULL || PQstatus(rd->pg) == CONNECTION_BAD) {
		lost(rd, rd->pg != NULL ? PQerrorMessage(rd->pg) : "out of memory");
		return;
	}
	rd->state = READER_CONNECTING;
	connect_wait(rd, EV_WRITE);   /* as if PQconnectPoll said WRITING */
}

/* ---- queries ---------------------------------------------------------------------- */

static void
flush_out(struct db_reader *rd)
{
	int r = PQflush(rd->pg);

	if (r < 0)
		lost(rd, PQerrorMessage(rd->pg));
	else if (r == 1)
		event_add(rd->write_ev, NULL);
}

static void
run_next(struct db_reader *rd)
{
	struct db_query *q;

	/* Cancelled queries at the head need not run at all. */
	while ((q = rd->head) != NULL && q->cb == NULL && !rd->sent) {
		rd->head = q->next;
		if (rd->head == NULL)
			rd->tail = NULL;
		query_free(q);
	}
	if (rd->state != READER_UP || rd->sent || (q = rd->head) == NULL)
		return;
	if (!PQsendQuery(rd->pg, q->sql)) {
		lost(rd, PQerrorMessage(rd->pg));
		return;
	}
	rd->sent = 1;
	flush_out(rd);
}

static void
finish_query(struct db_reader *rd)
{
	struct db_query *q = rd->head;

	rd->head = q->next;
	if (rd->head == NULL)
		rd->tail = NULL;
	rd->sent = 0;
	if (q->cb != NULL) {
		if (rd->overflow)
			q->cb(q->arg, NULL, 0, "too many results");
		else
			q->cb(q->arg, rd->res, rd->nres, NULL);
	}
	query_free(q);
	clear_results(rd);
}

static void
read_results(struct db_reader *rd)
{
	PGresult *r;

	if (!PQconsumeInput(rd->pg)) {
		lost(rd, PQerrorMessage(rd->pg));
		return;
	}
	while (rd->sent && !PQisBusy(rd->pg)) {
		if ((r = PQgetResult(rd->pg)) == NULL) {
			finish_query(rd);   /* may queue (not run) another */
			run_next(rd);
			return;
		}
		if (rd->nres < READER_MAX_RESULTS)
			rd->res[rd->nres++] = r;
		else {
			PQclear(r);
			rd->overflow = 1;
		}
	}
	if (PQstatus(rd->pg) == CONNECTION_BAD)
		lost(rd, PQerrorMessage(rd->pg));
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	run_next(arg);
}

static void
io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_reader *rd = arg;

	(void)fd;
	(void)what;
	if (rd->state == READER_CONNECTING)
		connect_step(rd);
	else if (rd->state == READER_UP)
		read_results(rd);
}

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	flush_out(arg);
}

/* ---- the interface ------------------------------------------------------------------ */

struct db_reader *
db_reader_new(struct event_base *base, const char *conninfo, unsigned worker,
    const int *schema_ready)
{
	struct db_reader *rd = xcalloc(1, sizeof(*rd));
	struct timeval now = { 0, 0 };

	rd->base = base;
	rd->conninfo = xstrdup(conninfo);
	rd->worker = worker;
	rd->schema_ready = schema_ready;
	rd->retry_ev = evtimer_new(base, retry_cb, rd);
	rd->kick_ev = event_new(base, -1, 0, kick_cb, rd);
	if (rd->retry_ev == NULL || rd->kick_ev == NULL || evtimer_add(rd->retry_ev, &now) != 0) {
		db_reader_free(rd);
		return NULL;
	}
	return rd;
}

void
db_reader_free(struct db_reader *rd)
{
	struct db_query *q, *next;

	if (rd == NULL)
		return;
	for (q = rd->head; q != NULL; q = next) {
		next = q->next;
		query_free(q);
	}
	clear_results(rd);
	if (rd->io_ev != NULL)
		event_free(rd->io_ev);
	if (rd->write_ev != NULL)
		event_free(rd->write_ev);
	if (rd->retry_ev != NULL)
		event_free(rd->retry_ev);
	if (rd->kick_ev != NULL)
		event_free(rd->kick_ev);
	if (rd->pg != NULL)
		PQfinish(rd->pg);
	free(rd->conninfo);
	free(rd);
}

int
db_reader_up(struct db_reader *rd)
{
	return rd != NULL && rd->state == READER_UP && ck_pr_load_int(rd->schema_ready);
}

struct db_query *
db_reader_query(struct db_reader *rd, char *sql, db_reader_cb *cb, void *arg)
{
	struct db_query *q;

	if (!db_reader_up(rd)) {
		free(sql);
		return NULL;
	}
	q = xcalloc(1, sizeof(*q));
	q->sql = sql;
	q->cb = cb;
	q->arg = arg;
	if (rd->tail != NULL)
		rd->tail->next = q;
	else
		rd->head = q;
	rd->tail = q;
	/* From the loop, not now: a failure there calls back, and the caller
	 * must have its handle first. */
	if (!rd->sent)
		event_active(rd->kick_ev, EV_TIMEOUT, 0);
	return q;
}

void
db_reader_cancel(struct db_reader *rd, struct db_query *q)
{
	(void)rd;
	q->cb = NULL;
}
