/*
 * test_durable.c - integration tests of parleyd --db: every event is
 * committed to PostgreSQL before it is acked or delivered (PROTOCOL.md
 * sections 3-5 and 8), and survives SIGKILL, SIGTERM and database outages.
 *
 * The suite starts a private PostgreSQL cluster (tests/pg-private.sh, found
 * through $PARLEY_SRCDIR) and gives each test a database of its own in it;
 * each test starts (and restarts) its own parleyd on that database and
 * checks the tables with psql. Outages stop and start the cluster itself
 * (pg-private.sh pause / resume: same data, same port).
 *
 *   1 SIGKILL     2000 acked sends over 4 connections and 3 rooms, SIGKILL:
 *                 all 2000 stored once, gap-free, in send order; after a
 *                 restart seqs go on from the stored max; a join since 0
 *                 replays exactly what the database holds.
 *   2 SIGTERM     a pipelined stream, SIGTERM while sends are in flight:
 *                 acked (and delivered) is a subset of stored, stored is
 *                 gap-free, refusals come after every ack and are not stored,
 *                 exit 0.
 *   3 outage      the database stops in the middle of a stream: nothing is
 *                 acked while it is down, /readyz 503; once it is back every
 *                 held send is acked in order, once, and stored once.
 *   4 backlog     --backlog 50 with the database down: the 51st outstanding
 *                 send is refused with unavailable and retry_after_ms.
 *   5 dedupe      an id used before a restart is a duplicate after it.
 *   6 history     1500 events, restart, page back with history across the
 *                 ring and the database; edit/delete of an old message.
 *   7 readyz      parleyd started with the database down: /healthz 200,
 *                 /readyz 503, a join is refused (not hung), then ready.
 *   8 read        a read position survives a restart (joined.read).
 *
 * Every wait is bounded. Without PostgreSQL (initdb, pg_ctl) the suite's
 * init fails, which CUnit reports as a failure (exit status 1).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <jansson.h>

#include "harness.h"
#include "wsclient.h"

#define HOST "127.0.0.1"
#define T_IO 5000               /* ms: one ordinary exchange */
#define MAX_LOGS 16

static struct pg_cluster pg;    /* the private cluster */
static char pg_host_port[128];  /* "host=127.0.0.1 port=N" */
static int pg_paused;
static struct server srv;       /* the current test's parleyd */
static char cur_db[32];         /* its database */
static char *logs[MAX_LOGS];    /* the current test's parleyd logs */
static int nlogs;
static unsigned fails_at_begin;
static int64_t test_t0;         /* when the current test began, or 0 */

/* ---- running programs: pg-private.sh, psql ------------------------------ */

/* pg-private.sh pause or resume ("paused"/"resumed" in the log). 0, or -1. */
static int
pg_switch(const char *verb, const char *done, int paused)
{
	int64_t t0 = wsc_now_ms();
	int st = pg_cluster_run(&pg, verb);

	if (st == 0)
		pg_paused = paused;
	fprintf(stderr, "[durable] database %s (%lld ms)\n", done,
	    (long long)(wsc_now_ms() - t0));
	return st == 0 ? 0 : -1;
}

/* Stop the database (keeping its data and port). 0, or -1. */
static int
pg_pause(void)
{
	return pg_switch("pause", "paused", 1);
}

/* Start it again. 0, or -1. */
static int
pg_resume(void)
{
	return pg_switch("resume", "resumed", 0);
}

static void
conninfo_of(const char *db, char *buf, size_t n)
{
	snprintf(buf, n, "%s dbname=%s user=parley", pg_host_port, db);
}

/*
 * Run sql with psql on database db; its unaligned, tuples-only output
 * (fields separated by '|') into *out (malloc'd) when out is not NULL.
 * Several sql strings may be given (NULL-terminated): one -c each.
 * Returns 0, or -1 (psql's error went to stderr).
 */
static int
psql_v(const char *db, char **out, const char *const sqls[])
{
	char ci[256];
	const char *argv[32];
	const char *psql = getenv("PSQL");
	int argc = 0, st;

	conninfo_of(db, ci, sizeof(ci));
	strncat(ci, " connect_timeout=5 options='-c client_min_messages=warning'",
	    sizeof(ci) - strlen(ci) - 1);
	argv[argc++] = psql != NULL && *psql != '\0' ? psql : "psql";
	argv[argc++] = "-X";
	argv[argc++] = "-q";
	argv[argc++] = "-A";
	argv[argc++] = "-t";
	argv[argc++] = "-v";
	argv[argc++] = "ON_ERROR_STOP=1";
	argv[argc++] = "-d";
	argv[argc++] = ci;
	for (int i = 0; sqls[i] != NULL && argc < 29; i++) {
		argv[argc++] = "-c";
		argv[argc++] = sqls[i];
	}
	argv[argc] = NULL;
	st = harness_exec(argv, out, NULL, 30000);
	if (st != 0) {
		fprintf(stderr, "[durable] psql on %s failed (status %d): %s\n",
		    db, st, sqls[0]);
		if (out != NULL) {
			free(*out);
			*out = NULL;
		}
		return -1;
	}
	return 0;
}

static int
psql(const char *db, const char *sql, char **out)
{
	const char *sqls[] = { sql, NULL };

	return psql_v(db, out, sqls);
}

/* One integer (the first field of the first row), or -1. */
static long long
psql_int(const char *db, const char *sql)
{
	char *out = NULL, *end;
	long long v;

	if (psql(db, sql, &out) != 0)
		return -1;
	v = strtoll(out, &end, 10);
	if (end == out)
		v = -1;
	free(out);
	return v;
}

/* A new, empty database (the schema is parleyd's to create). */
static int
db_fresh(const char *db)
{
	char drop[96], create[96];
	const char *sqls[] = { drop, create, NULL };

	snprintf(drop, sizeof(drop), "DROP DATABASE IF EXISTS %s", db);
	snprintf(create, sizeof(create), "CREATE DATABASE %s OWNER parley", db);
	snprintf(cur_db, sizeof(cur_db), "%s", db);
	return psql_v("parley", NULL, sqls);
}

/*
 * The next line of a psql output, split at '|' into at most nf fields
 * (the line is modified). Returns the number of fields, 0 at the end.
 */
static int
next_row(char **cursor, char **f, int nf)
{
	char *line = *cursor, *nl;
	int n = 0;

	if (line == NULL || *line == '\0')
		return 0;
	nl = strchr(line, '\n');
	if (nl != NULL) {
		*nl = '\0';
		*cursor = nl + 1;
	} else {
		*cursor = line + strlen(line);
	}
	f[n++] = line;
	for (char *p = line; *p != '\0' && n < nf; p++)
		if (*p == '|') {
			*p = '\0';
			f[n++] = p + 1;
		}
	return n;
}

/* ---- parleyd ------------------------------------------------------------- */

static void
log_keep(void)
{
	if (srv.log[0] != '\0' && nlogs < MAX_LOGS)
		logs[nlogs++] = strdup(srv.log);
	else if (srv.log[0] != '\0')
		unlink(srv.log);
	srv.log[0] = '\0';
}

/* Print the warnings and errors of a log and its last lines. */
static void
log_show(const char *path)
{
	char line[1200], *tail[40];
	int ntail = 0, pos = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return;
	memset(tail, 0, sizeof(tail));
	fprintf(stderr, "\n---- parleyd log %s: warnings and errors ----\n", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strstr(line, "level=warn") != NULL ||
		    strstr(line, "level=error") != NULL)
			fputs(line, stderr);
		free(tail[pos]);
		tail[pos] = strdup(line);
		pos = (pos + 1) % 40;
		if (ntail < 40)
			ntail++;
	}
	fclose(f);
	fprintf(stderr, "---- last %d lines ----\n", ntail);
	for (int i = 0; i < 40; i++) {
		char *l = tail[(pos + i) % 40];

		if (l != NULL)
			fputs(l, stderr);
		free(l);
	}
	fprintf(stderr, "---- end of log ----\n");
}

/* The end of a test: logs shown when it failed, then removed. */
static void
test_end(void)
{
	int failed = CU_get_number_of_failures() != fails_at_begin;

	if (srv.pid > 0) {
		kill(srv.pid, SIGKILL);
		(void)server_stop(&srv, 0, 3000);
	}
	log_keep();
	for (int i = 0; i < nlogs; i++) {
		if (failed)
			log_show(logs[i]);
		unlink(logs[i]);
		free(logs[i]);
	}
	nlogs = 0;
	if (pg_paused)
		(void)pg_resume();
	if (test_t0 != 0)
		fprintf(stderr, "[durable] test %s in %lld ms\n", failed ? "FAILED" :
		    "done", (long long)(wsc_now_ms() - test_t0));
	test_t0 = 0;
}

static void
test_begin(void)
{
	test_end();   /* what an earlier test left, if it stopped early */
	fails_at_begin = CU_get_number_of_failures();
	memset(&srv, 0, sizeof(srv));
	test_t0 = wsc_now_ms();
}

static int
readyz(void)
{
	return http_get_status(srv.port, "/readyz", 2000);
}

static int
healthz(void)
{
	return http_get_status(srv.port, "/healthz", 2000);
}

/* Poll /readyz until it answers want; ms it took, or -1 after timeout_ms. */
static int
wait_readyz(int want, int timeout_ms)
{
	int64_t t0 = wsc_now_ms();

	while (wsc_now_ms() - t0 < timeout_ms) {
		if (readyz() == want)
			return (int)(wsc_now_ms() - t0);
		wsc_sleep_ms(50);
	}
	return -1;
}

/*
 * Start parleyd on database db with the suite's flags and extra (NULL or
 * NULL-terminated). ready: also wait for /readyz 200. 0, or -1.
 */
static int
parley_start(const char *db, const char *const extra[], int ready)
{
	char ci[256];
	const char *args[32];
	int n = 0;

	log_keep();
	conninfo_of(db, ci, sizeof(ci));
	/* server_start adds --allow-anonymous (and -l, --log-level debug). */
	args[n++] = "--db";
	args[n++] = ci;
	args[n++] = "--rate";
	args[n++] = "0";
	args[n++] = "-t";
	args[n++] = "2";
	for (int i = 0; extra != NULL && extra[i] != NULL && n < 31; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	if (server_start(&srv, args) != 0)
		return -1;
	if (ready && wait_readyz(200, 10000) < 0) {
		fprintf(stderr, "[durable] /readyz not 200 within 10 s\n");
		return -1;
	}
	return 0;
}

/* Stop parleyd with sig; its status (see server_stop). */
static int
parley_stop(int sig, int timeout_ms)
{
	int st = server_stop(&srv, sig, timeout_ms);

	fprintf(stderr, "[durable] parleyd stopped with signal %d: status %d\n",
	    sig, st);
	return st;
}

/* ---- JSON ---------------------------------------------------------------- */

static int
is_type(const json_t *o, const char *t)
{
	return o != NULL && jstreq(o, "type", t);
}

static void
jdump(const char *prefix, const json_t *j)
{
	char *d = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

	fprintf(stderr, "%s%s\n", prefix, d != NULL ? d : "(none)");
	free(d);
}

/* ---- a client ------------------------------------------------------------ */

struct dcl {
	struct wsc w;
	char user[40];
	int close_code;         /* the close frame's code, or -1 */
	int gone;               /* the TCP connection ended */
};

/*
 * The next text frame as JSON. *st: 1 a frame, 0 timeout, -1 closed (a
 * close frame or the end of the connection) or a bad frame.
 */
static json_t *
recv_json(struct dcl *c, int timeout_ms, int *st)
{
	struct wsc_frame f;
	json_error_t err;
	json_t *j;
	int r;

	if (c->gone) {
		*st = -1;
		return NULL;
	}
	r = wsc_recv_data(&c->w, &f, timeout_ms);
	if (r == 0) {
		*st = 0;
		return NULL;
	}
	if (r < 0) {
		c->gone = 1;
		*st = -1;
		return NULL;
	}
	if (f.opcode == 8) {
		uint8_t cc[2] = { (uint8_t)(f.close_code >> 8), (uint8_t)f.close_code };

		c->close_code = f.close_code;
		(void)wsc_send_frame(&c->w, 8, 1, cc, 2, 0);
		c->gone = 1;
		*st = -1;
		return NULL;
	}
	j = json_loadb((const char *)f.payload, f.len, 0, &err);
	if (f.opcode != 1 || j == NULL || !json_is_object(j)) {
		fprintf(stderr, "[%s] bad frame: opcode %d: %.*s\n", c->user,
		    f.opcode, (int)(f.len > 200 ? 200 : f.len),
		    (const char *)f.payload);
		json_decref(j);
		c->gone = 1;
		*st = -1;
		return NULL;
	}
	*st = 1;
	return j;
}

static int dsend(struct dcl *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
dsend(struct dcl *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (c->gone)
		return -1;
	va_start(ap, fmt);
	r = wsc_vsend_textf(&c->w, fmt, ap);
	va_end(ap);
	return r;
}

/* Frames a waiting client may pass over: stream events and signals. */
static int
passable(const json_t *j)
{
	static const char *const t[] = { "message", "edit", "delete", "reaction",
	    "presence", "typing", "receipt", NULL };

	for (int i = 0; t[i] != NULL; i++)
		if (is_type(j, t[i]))
			return 1;
	return 0;
}

/*
 * The next frame of this type, passing over stream events and signals
 * (unless that is the type asked for). Anything else (an error when not
 * asked for) is printed and ends the wait: NULL.
 */
static json_t *
await_type(struct dcl *c, const char *type, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	json_t *j;
	int st;

	for (;;) {
		j = recv_json(c, wsc_remaining_ms(deadline), &st);
		if (j == NULL) {
			fprintf(stderr, "[%s] waiting for '%s': %s (close %d)\n",
			    c->user, type, st == 0 ? "timeout" : "closed",
			    c->close_code);
			return NULL;
		}
		if (is_type(j, type))
			return j;
		if (!passable(j)) {
			fprintf(stderr, "[%s] waiting for '%s', got: ", c->user, type);
			jdump("", j);
			json_decref(j);
			return NULL;
		}
		json_decref(j);
	}
}

/* A client not connected (yet): safe to dcl_close. */
static void
dcl_init(struct dcl *c)
{
	memset(c, 0, sizeof(*c));
	c->w.fd = -1;
	c->close_code = -1;
	c->gone = 1;
}

static int
dcl_open(struct dcl *c, const char *user)
{
	json_t *j;
	int st, ok;

	dcl_init(c);
	c->gone = 0;
	snprintf(c->user, sizeof(c->user), "%s", user);
	st = wsc_connect(&c->w, HOST, srv.port, NULL, "/ws", NULL, 0, T_IO);
	if (st != 101) {
		fprintf(stderr, "[%s] upgrade: %d\n", user, st);
		if (st > 0)
			wsc_close(&c->w);
		c->w.fd = -1;
		c->gone = 1;
		return -1;
	}
	dsend(c, "{\"type\":\"hello\",\"name\":\"%s\"}", user);
	j = await_type(c, "welcome", T_IO);
	ok = j != NULL && jstreq(j, "user", user);
	json_decref(j);
	return ok ? 0 : -1;
}

static void
dcl_close(struct dcl *c)
{
	wsc_close(&c->w);
	c->gone = 1;
}

/* join room (since < 0: without since); the joined frame, or NULL. */
static json_t *
dcl_join(struct dcl *c, const char *room, long long since)
{
	json_t *j;

	if (since >= 0)
		dsend(c, "{\"type\":\"join\",\"room\":\"%s\",\"since\":%lld,"
		    "\"ref\":\"j\"}", room, since);
	else
		dsend(c, "{\"type\":\"join\",\"room\":\"%s\",\"ref\":\"j\"}", room);
	j = await_type(c, "joined", T_IO);
	if (j != NULL && !(jstreq(j, "room", room) && jstreq(j, "ref", "j"))) {
		jdump("joined for another room: ", j);
		json_decref(j);
		return NULL;
	}
	return j;
}

/* send one message (id NULL: without one) and wait for its ack; its seq, or -1. */
static long long
send_acked(struct dcl *c, const char *room, const char *body, const char *id)
{
	json_t *j;
	long long seq = -1;

	if (id != NULL)
		dsend(c, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"%s\","
		    "\"id\":\"%s\",\"ref\":\"sa\"}", room, body, id);
	else
		dsend(c, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"%s\","
		    "\"ref\":\"sa\"}", room, body);
	j = await_type(c, "ack", T_IO);
	if (j != NULL && jstreq(j, "ref", "sa") && jstreq(j, "room", room) &&
	    (id != NULL ? jstreq(j, "id", id) : json_object_get(j, "id") == NULL) &&
	    json_object_get(j, "duplicate") == NULL)
		seq = jint(j, "seq");
	else
		jdump("unexpected ack: ", j);
	json_decref(j);
	return seq;
}

/* Wait until one of the clients has data (or the timeout). */
static void
wait_any(struct dcl *cs, int n, int timeout_ms)
{
	struct pollfd pfd[16];
	int k = 0;

	for (int i = 0; i < n && k < 16; i++) {
		if (cs[i].gone)
			continue;
		if (cs[i].w.in_len > cs[i].w.in_off)
			return;   /* buffered already */
		pfd[k].fd = cs[i].w.fd;
		pfd[k].events = POLLIN;
		pfd[k].revents = 0;
		k++;
	}
	if (k > 0)
		(void)poll(pfd, (nfds_t)k, timeout_ms);
	else
		wsc_sleep_ms(timeout_ms);
}

/* ---- the suite ----------------------------------------------------------- */

static int
suite_init(void)
{
	const char *p;

	if (pg_cluster_start(&pg) != 0)
		return -1;
	/* "host=127.0.0.1 port=N dbname=parley user=parley": each test names its own database. */
	if ((p = strstr(pg.conninfo, " dbname=")) == NULL) {
		fprintf(stderr, "test_durable: FAIL: unexpected conninfo: %s\n", pg.conninfo);
		(void)pg_cluster_stop(&pg);
		return -1;
	}
	snprintf(pg_host_port, sizeof(pg_host_port), "%.*s", (int)(p - pg.conninfo),
	    pg.conninfo);
	return 0;
}

static int
suite_cleanup(void)
{
	test_end();
	return pg_cluster_stop(&pg);
}

/* ---- 1: 2000 acked sends, SIGKILL, restart ------------------------------- */

#define K_CONNS 4
#define K_ROOMS 3
#define K_PER 500               /* sends per connection */
#define K_WINDOW 64             /* unacked sends per connection */
#define K_TOTAL (K_CONNS * K_PER)

static int
k_room(int i, int k)
{
	return (i + k) % K_ROOMS;
}

static void
test_kill_restart(void)
{
	struct dcl c[K_CONNS], a, jn;
	static long long ack[K_CONNS][K_PER];
	static int found[K_CONNS][K_PER];
	static char body_at[K_ROOMS][K_TOTAL + 2][24];
	static long long ts_at[K_ROOMS][K_TOTAL + 2];
	static char user_at[K_ROOMS][K_TOTAL + 2][16];
	long long maxseq[K_ROOMS], last_k[K_ROOMS][K_CONNS];
	int sent[K_CONNS], acked[K_CONNS], errors = 0, dup_acks = 0, bad = 0;
	int64_t deadline, t0;
	char *out = NULL, *cur, *f[6], room[16], want[24];
	long long rows = 0;
	json_t *j;
	int st;

	test_begin();
	for (int i = 0; i < K_CONNS; i++)
		dcl_init(&c[i]);
	dcl_init(&a);
	dcl_init(&jn);
	memset(found, 0, sizeof(found));
	memset(body_at, 0, sizeof(body_at));
	memset(user_at, 0, sizeof(user_at));
	REQUIRE(db_fresh("durable_kill") == 0);
	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	for (int i = 0; i < K_CONNS; i++) {
		char user[16];

		snprintf(user, sizeof(user), "u%d", i);
		REQUIRE(dcl_open(&c[i], user) == 0);
		for (int r = 0; r < K_ROOMS; r++) {
			snprintf(room, sizeof(room), "kr%d", r);
			j = dcl_join(&c[i], room, -1);
			REQUIRE(j != NULL && jint(j, "seq") == 0);
			json_decref(j);
		}
		sent[i] = acked[i] = 0;
		for (int k = 0; k < K_PER; k++)
			ack[i][k] = -1;
	}

	/* Pipelined sends, K_WINDOW unacked per connection. */
	t0 = wsc_now_ms();
	deadline = t0 + 40000;
	for (;;) {
		int total = 0, progress = 0;

		for (int i = 0; i < K_CONNS; i++) {
			while (sent[i] < K_PER && sent[i] - acked[i] < K_WINDOW) {
				int k = sent[i]++;

				dsend(&c[i], "{\"type\":\"send\",\"room\":\"kr%d\","
				    "\"body\":\"c%d-%d\",\"id\":\"c%d-%d\"}",
				    k_room(i, k), i, k, i, k);
			}
			total += acked[i];
		}
		if (total == K_TOTAL || wsc_now_ms() >= deadline)
			break;
		for (int i = 0; i < K_CONNS; i++) {
			while ((j = recv_json(&c[i], 0, &st)) != NULL) {
				int ci = -1, k = -1;

				progress = 1;
				if (is_type(j, "ack")) {
					const char *id = jstr(j, "id");

					if (id == NULL || sscanf(id, "c%d-%d", &ci, &k) != 2 ||
					    ci != i || k < 0 || k >= K_PER) {
						jdump("unexpected ack: ", j);
						bad++;
					} else if (ack[i][k] >= 0) {
						jdump("second ack: ", j);
						dup_acks++;
					} else {
						snprintf(room, sizeof(room), "kr%d", k_room(i, k));
						if (!jstreq(j, "room", room) || jint(j, "seq") < 1) {
							jdump("ack for the wrong room: ", j);
							bad++;
						}
						ack[i][k] = jint(j, "seq");
						acked[i]++;
					}
				} else if (!passable(j)) {
					jdump("unexpected frame: ", j);
					errors++;
				}
				json_decref(j);
			}
			REQUIRE(st != -1);
		}
		if (!progress)
			wait_any(c, K_CONNS, 50);
	}
	{
		int total = 0;

		for (int i = 0; i < K_CONNS; i++)
			total += acked[i];
		fprintf(stderr, "[durable] kill: %d of %d sends acked in %lld ms\n",
		    total, K_TOTAL, (long long)(wsc_now_ms() - t0));
		CU_ASSERT_EQUAL(total, K_TOTAL);
	}
	CU_ASSERT_EQUAL(errors, 0);
	CU_ASSERT_EQUAL(dup_acks, 0);
	CU_ASSERT_EQUAL(bad, 0);
	/* Per connection and room, acks carry rising seqs. */
	for (int i = 0; i < K_CONNS; i++) {
		long long last[K_ROOMS] = { 0 };
		int rising = 1;

		for (int k = 0; k < K_PER; k++) {
			if (ack[i][k] < 0)
				continue;
			if (ack[i][k] <= last[k_room(i, k)])
				rising = 0;
			last[k_room(i, k)] = ack[i][k];
		}
		CU_ASSERT(rising);
	}

	/* SIGKILL: nothing gets a chance to flush anything. */
	st = parley_stop(SIGKILL, 3000);
	CU_ASSERT_EQUAL(st, 128 + SIGKILL);
	for (int i = 0; i < K_CONNS; i++)
		dcl_close(&c[i]);

	/* Every acked send is stored exactly once, at its acked seq. */
	REQUIRE(psql(cur_db, "SELECT r.name, e.seq, e.user_name, e.body, "
	    "coalesce(e.client_id, '-'), e.ts FROM events e LEFT JOIN rooms r "
	    "ON r.id = e.room_id ORDER BY r.name, e.seq", &out) == 0);
	for (int r = 0; r < K_ROOMS; r++) {
		maxseq[r] = 0;
		for (int i = 0; i < K_CONNS; i++)
			last_k[r][i] = -1;
	}
	cur = out;
	while (next_row(&cur, f, 6) == 6) {
		int r = -1, ci = -1, k = -1;
		long long seq = strtoll(f[1], NULL, 10);
		char user[16];

		rows++;
		if (sscanf(f[0], "kr%d", &r) != 1 || r < 0 || r >= K_ROOMS ||
		    sscanf(f[3], "c%d-%d", &ci, &k) != 2 || ci < 0 ||
		    ci >= K_CONNS || k < 0 || k >= K_PER) {
			fprintf(stderr, "unexpected row: %s %s %s %s\n", f[0], f[1],
			    f[2], f[3]);
			bad++;
			continue;
		}
		snprintf(user, sizeof(user), "u%d", ci);
		if (seq != maxseq[r] + 1) {
			fprintf(stderr, "room %s: seq %lld after %lld (gap or "
			    "duplicate)\n", f[0], seq, maxseq[r]);
			bad++;
		}
		maxseq[r] = seq;
		if (strcmp(f[2], user) != 0 || strcmp(f[3], f[4]) != 0 ||
		    k_room(ci, k) != r) {
			fprintf(stderr, "row %s#%lld: user %s body %s id %s\n", f[0],
			    seq, f[2], f[3], f[4]);
			bad++;
		}
		if (found[ci][k]++ != 0) {
			fprintf(stderr, "%s stored twice\n", f[3]);
			bad++;
		}
		if (ack[ci][k] != seq) {
			fprintf(stderr, "%s stored at seq %lld, acked at %lld\n", f[3],
			    seq, ack[ci][k]);
			bad++;
		}
		if (k <= last_k[r][ci]) {
			fprintf(stderr, "room %s: %s stored after c%d-%lld (send "
			    "order)\n", f[0], f[3], ci, last_k[r][ci]);
			bad++;
		}
		last_k[r][ci] = k;
		if (seq <= K_TOTAL) {
			snprintf(body_at[r][seq], sizeof(body_at[r][seq]), "%s", f[3]);
			snprintf(user_at[r][seq], sizeof(user_at[r][seq]), "%s", user);
			ts_at[r][seq] = strtoll(f[5], NULL, 10);
		}
	}
	free(out);
	out = NULL;
	fprintf(stderr, "[durable] kill: %lld rows stored; max seqs %lld %lld %lld\n",
	    rows, maxseq[0], maxseq[1], maxseq[2]);
	CU_ASSERT_EQUAL(rows, K_TOTAL);
	CU_ASSERT_EQUAL(bad, 0);
	for (int i = 0; i < K_CONNS; i++)
		for (int k = 0; k < K_PER; k++)
			if (ack[i][k] >= 0 && found[i][k] != 1) {
				fprintf(stderr, "acked c%d-%d (seq %lld) is not stored\n",
				    i, k, ack[i][k]);
				bad++;
			}
	CU_ASSERT_EQUAL(bad, 0);

	/* Restart on the same database: seqs go on, never reused. */
	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	REQUIRE(dcl_open(&a, "after") == 0);
	for (int r = 0; r < K_ROOMS; r++) {
		long long seq;

		snprintf(room, sizeof(room), "kr%d", r);
		j = dcl_join(&a, room, -1);
		REQUIRE(j != NULL);
		if (jint(j, "seq") != maxseq[r])
			jdump("joined after the restart: ", j);
		CU_ASSERT_EQUAL(jint(j, "seq"), maxseq[r]);
		json_decref(j);
		snprintf(want, sizeof(want), "after-%d", r);
		seq = send_acked(&a, room, want, want);
		CU_ASSERT_EQUAL(seq, maxseq[r] + 1);
		if (maxseq[r] + 1 <= K_TOTAL + 1) {
			snprintf(body_at[r][maxseq[r] + 1], sizeof(body_at[r][0]),
			    "%s", want);
			snprintf(user_at[r][maxseq[r] + 1], sizeof(user_at[r][0]),
			    "after");
		}
	}
	/* The new ones' ts, as stored. */
	REQUIRE(psql(cur_db, "SELECT r.name, e.seq, e.ts FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE e.client_id LIKE 'after-%' ORDER BY r.name",
	    &out) == 0);
	cur = out;
	while (next_row(&cur, f, 3) == 3) {
		int r = -1;
		long long seq = strtoll(f[1], NULL, 10);

		if (sscanf(f[0], "kr%d", &r) == 1 && r >= 0 && r < K_ROOMS &&
		    seq >= 1 && seq <= K_TOTAL + 1)
			ts_at[r][seq] = strtoll(f[2], NULL, 10);
	}
	free(out);
	out = NULL;
	/* A joiner with since 0 is replayed the stream the database holds. */
	REQUIRE(dcl_open(&jn, "joiner") == 0);
	for (int r = 0; r < K_ROOMS; r++) {
		long long next = 1, top = maxseq[r] + 1;
		int mism = 0;

		snprintf(room, sizeof(room), "kr%d", r);
		j = dcl_join(&jn, room, 0);
		REQUIRE(j != NULL);
		CU_ASSERT_EQUAL(jint(j, "seq"), top);
		CU_ASSERT(json_object_get(j, "truncated") == NULL);
		json_decref(j);
		while (next <= top) {
			j = recv_json(&jn, T_IO, &st);
			if (j == NULL)
				break;
			if (is_type(j, "presence")) {
				json_decref(j);
				continue;
			}
			if (!is_type(j, "message") || !jstreq(j, "room", room) ||
			    jint(j, "seq") != next || next > K_TOTAL + 1 ||
			    !jstreq(j, "body", body_at[r][next]) ||
			    !jstreq(j, "id", body_at[r][next]) ||
			    jint(j, "ts") != ts_at[r][next] ||
			    !jstreq(j, "user", user_at[r][next])) {
				if (mism++ < 3) {
					fprintf(stderr, "replay of %s: expected seq %lld "
					    "body %s ts %lld, got: ", room, next,
					    next <= K_TOTAL + 1 ? body_at[r][next] : "?",
					    next <= K_TOTAL + 1 ? ts_at[r][next] : -1);
					jdump("", j);
				}
			}
			json_decref(j);
			next++;
		}
		fprintf(stderr, "[durable] kill: replay of %s: %lld of %lld events, "
		    "%d mismatches\n", room, next - 1, top, mism);
		CU_ASSERT_EQUAL(next, top + 1);
		CU_ASSERT_EQUAL(mism, 0);
	}
	dcl_close(&a);
	dcl_close(&jn);
	/* The new sends are stored too, once each. */
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events"),
	    K_TOTAL + K_ROOMS);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM (SELECT r.name FROM "
	    "events e LEFT JOIN rooms r ON r.id = e.room_id GROUP BY r.name HAVING "
	    "count(*) = max(e.seq) AND min(e.seq) = 1) x"),
	    K_ROOMS);
	st = parley_stop(SIGTERM, 10000);
	CU_ASSERT_EQUAL(st, 0);
out:
	free(out);
	for (int i = 0; i < K_CONNS; i++)
		dcl_close(&c[i]);
	dcl_close(&a);
	dcl_close(&jn);
	test_end();
}

/* ---- 2: SIGTERM while sends are in flight --------------------------------- */

#define D_SENDS 3000
#define D_KILL_AT 1200          /* sent before the SIGTERM */
#define D_KILL_SEQ 50           /* sequenced (not yet committed) at the SIGTERM */

enum { R_NONE = 0, R_ACK, R_UNAVAILABLE };

struct drain {
	int sent, nack, nunavail, ncopy, bad, no_retry;
	int first_unavail, max_acked, last_ack_k, acks_order;
	long long last_ack_seq;
	int reply[D_SENDS], copies[D_SENDS], stored[D_SENDS];
	long long ack_seq[D_SENDS], copy_seq[D_SENDS];
};

static void
drain_frame(struct drain *d, json_t *j)
{
	const char *ref = jstr(j, "ref"), *id = jstr(j, "id");
	int k = -1;

	if (is_type(j, "ack")) {
		if (id == NULL || sscanf(id, "d%d", &k) != 1 || k < 0 ||
		    k >= d->sent || d->reply[k] != R_NONE) {
			jdump("unexpected ack: ", j);
			d->bad++;
			return;
		}
		d->reply[k] = R_ACK;
		d->ack_seq[k] = jint(j, "seq");
		d->nack++;
		if (k <= d->last_ack_k || d->ack_seq[k] <= d->last_ack_seq)
			d->acks_order = 0;
		d->last_ack_k = k;
		d->last_ack_seq = d->ack_seq[k];
		if (k > d->max_acked)
			d->max_acked = k;
	} else if (is_type(j, "error")) {
		if (ref == NULL || sscanf(ref, "d%d", &k) != 1 || k < 0 ||
		    k >= d->sent || d->reply[k] != R_NONE ||
		    !jstreq(j, "code", "unavailable")) {
			jdump("unexpected error: ", j);
			d->bad++;
			return;
		}
		d->reply[k] = R_UNAVAILABLE;
		d->nunavail++;
		if (jint(j, "retry_after_ms") < 1)
			d->no_retry++;
		if (d->first_unavail < 0 || k < d->first_unavail)
			d->first_unavail = k;
	} else if (is_type(j, "message")) {
		if (id == NULL || sscanf(id, "d%d", &k) != 1 || k < 0 ||
		    k >= d->sent || d->copies[k]++ != 0) {
			jdump("unexpected message: ", j);
			d->bad++;
			return;
		}
		d->copy_seq[k] = jint(j, "seq");
		d->ncopy++;
	} else if (!passable(j)) {
		jdump("unexpected frame: ", j);
		d->bad++;
	}
}

static void
test_sigterm_drain(void)
{
	static struct drain d;
	struct dcl c;
	int killed = 0, sent_at_kill = 0, acked_at_kill = 0, timed_out = 0;
	int resumed = 0;
	int64_t killed_at = 0;
	long long events_at_kill = -1;
	long long srows = 0, last_seq = 0;
	int64_t deadline;
	char *out = NULL, *cur, *f[4];
	json_t *j;
	int st, exit_st;

	test_begin();
	dcl_init(&c);
	memset(&d, 0, sizeof(d));
	d.first_unavail = d.max_acked = d.last_ack_k = -1;
	d.acks_order = 1;
	REQUIRE(db_fresh("durable_term") == 0);
	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	REQUIRE(dcl_open(&c, "drainer") == 0);
	j = dcl_join(&c, "drain", -1);
	REQUIRE(j != NULL);
	json_decref(j);
	/* The database goes away: what is sequenced now is held, not acked. */
	REQUIRE(pg_pause() == 0);

	/*
	 * Send D_KILL_AT as fast as the socket takes them (reading what comes
	 * between bursts). Once the server has sequenced D_KILL_SEQ events
	 * (/metrics; the database is down, so none is committed), SIGTERM;
	 * send the rest while it stops; bring the database back 300 ms
	 * later; then read until the connection ends.
	 */
	deadline = wsc_now_ms() + 30000;
	while (wsc_now_ms() < deadline) {
		int upto = killed ? D_SENDS : D_KILL_AT;

		if (d.sent < upto && !c.gone) {
			for (int n = 0; n < 50 && d.sent < upto; n++) {
				if (dsend(&c, "{\"type\":\"send\",\"room\":\"drain\","
				    "\"body\":\"b%d\",\"id\":\"d%d\",\"ref\":\"d%d\"}",
				    d.sent, d.sent, d.sent) != 0) {
					fprintf(stderr, "[drainer] send d%d failed\n", d.sent);
					c.gone = 1;
					break;
				}
				d.sent++;
			}
			while ((j = recv_json(&c, 0, &st)) != NULL) {
				drain_frame(&d, j);
				json_decref(j);
			}
			continue;
		}
		if (!killed) {
			double ev = 0;

			if (server_metric(&srv, "parley_events_total", &ev) == 0 &&
			    ev >= D_KILL_SEQ) {
				events_at_kill = (long long)ev;
				acked_at_kill = d.nack;
				sent_at_kill = d.sent;
				kill(srv.pid, SIGTERM);
				killed = 1;
				killed_at = wsc_now_ms();
				continue;
			}
			while ((j = recv_json(&c, 5, &st)) != NULL) {
				drain_frame(&d, j);
				json_decref(j);
			}
			continue;
		}
		if (!resumed && wsc_now_ms() - killed_at >= 300) {
			REQUIRE(pg_resume() == 0);
			resumed = 1;
		}
		j = recv_json(&c, resumed ? 5000 : 50, &st);
		if (j == NULL) {
			if (!resumed && st == 0)
				continue;   /* nothing yet: the database is still down */
			timed_out = st == 0;
			break;
		}
		drain_frame(&d, j);
		json_decref(j);
	}
	if (!resumed)
		REQUIRE(pg_resume() == 0);
	fprintf(stderr, "[durable] drain: sent %d (SIGTERM after %d sent, %lld "
	    "sequenced, %d acked), %d acks, %d unavailable, %d own copies, close "
	    "%d%s\n", d.sent, sent_at_kill, events_at_kill, acked_at_kill, d.nack,
	    d.nunavail, d.ncopy, c.close_code,
	    timed_out ? " (still open 5 s after the last frame)" : "");
	CU_ASSERT(killed);
	/* The setup: many sends were in flight at the signal. */
	CU_ASSERT(sent_at_kill - acked_at_kill > 100);
	/*
	 * What was in flight was drained: every event sequenced before the
	 * signal is acked, and acks arrived after it.
	 */
	CU_ASSERT(d.nack >= events_at_kill);
	CU_ASSERT(d.nack > acked_at_kill);
	CU_ASSERT_EQUAL(d.bad, 0);
	CU_ASSERT(d.acks_order);
	CU_ASSERT_EQUAL(d.no_retry, 0);
	/* Once one send is refused, every later one is. */
	if (d.first_unavail >= 0 && d.max_acked > d.first_unavail)
		fprintf(stderr, "d%d acked after d%d was refused\n", d.max_acked,
		    d.first_unavail);
	CU_ASSERT(d.first_unavail < 0 || d.max_acked < d.first_unavail);
	/* Requests are answered in order: the answered ones are a prefix. */
	{
		int answered = 0, holes = 0;

		for (int k = 0; k < d.sent; k++) {
			if (d.reply[k] != R_NONE)
				answered = k + 1;
		}
		for (int k = 0; k < answered; k++)
			if (d.reply[k] == R_NONE)
				holes++;
		if (holes > 0)
			fprintf(stderr, "%d sends before the last answered one got "
			    "no answer\n", holes);
		CU_ASSERT_EQUAL(holes, 0);
	}
	/* The server closed with 1001 (or dropped the connection) ... */
	CU_ASSERT(c.gone);
	CU_ASSERT(c.close_code == 1001 || c.close_code == -1);
	/* ... and exits 0. */
	exit_st = parley_stop(0, 20000);
	CU_ASSERT_EQUAL(exit_st, 0);
	dcl_close(&c);

	/* The stream as stored: gap-free, in send order, acked seqs kept. */
	REQUIRE(psql(cur_db, "SELECT e.seq, coalesce(e.client_id, '-'), e.body "
	    "FROM events e JOIN rooms r ON r.id = e.room_id WHERE r.name = 'drain' "
	    "ORDER BY e.seq", &out) == 0);
	cur = out;
	{
		int last_k = -1, order = 1, gaps = 0, wrong = 0;

		while (next_row(&cur, f, 3) == 3) {
			long long seq = strtoll(f[0], NULL, 10);
			char body[24];
			int k = -1;

			srows++;
			if (seq != last_seq + 1)
				gaps++;
			last_seq = seq;
			if (sscanf(f[1], "d%d", &k) != 1 || k < 0 || k >= D_SENDS) {
				wrong++;
				continue;
			}
			snprintf(body, sizeof(body), "b%d", k);
			if (strcmp(body, f[2]) != 0 || d.stored[k]++ != 0)
				wrong++;
			if (k <= last_k)
				order = 0;
			last_k = k;
			if (d.reply[k] == R_ACK && d.ack_seq[k] != seq) {
				fprintf(stderr, "d%d stored at %lld, acked at %lld\n", k,
				    seq, d.ack_seq[k]);
				wrong++;
			}
			if (d.copies[k] && d.copy_seq[k] != seq)
				wrong++;
		}
		CU_ASSERT_EQUAL(gaps, 0);
		CU_ASSERT(order);
		CU_ASSERT_EQUAL(wrong, 0);
	}
	{
		int acked_missing = 0, copy_missing = 0, refused_stored = 0;
		int unacked_stored = 0;

		for (int k = 0; k < d.sent; k++) {
			if (d.reply[k] == R_ACK && !d.stored[k])
				acked_missing++;
			if (d.copies[k] && !d.stored[k])
				copy_missing++;
			if (d.reply[k] == R_UNAVAILABLE && d.stored[k])
				refused_stored++;
			if (d.reply[k] != R_ACK && d.stored[k])
				unacked_stored++;
		}
		fprintf(stderr, "[durable] drain: %lld rows stored; acked but not "
		    "stored %d, delivered but not stored %d, refused but stored "
		    "%d, stored without an ack %d\n", srows, acked_missing,
		    copy_missing, refused_stored, unacked_stored);
		/* Nothing acked (or seen) is lost; nothing refused is stored. */
		CU_ASSERT_EQUAL(acked_missing, 0);
		CU_ASSERT_EQUAL(copy_missing, 0);
		CU_ASSERT_EQUAL(refused_stored, 0);
		/*
		 * The client read everything up to the close: every event the
		 * server accepted was acked before its 1001.
		 */
		if (c.close_code == 1001)
			CU_ASSERT_EQUAL(unacked_stored, 0);
	}
out:
	free(out);
	dcl_close(&c);
	test_end();
}

/* ---- 3: the database stops and comes back in the middle of a stream ------ */

#define O_TOTAL 500

struct outage {
	struct dcl c;
	int sent, nack, bad, errors, order, last_k;
	int down_from;            /* sends from here on went out with the database down */
	int acked_while_down, seen_while_down;
	long long last_seq;
	int acks[O_TOTAL], copies[O_TOTAL];
	long long ack_seq[O_TOTAL];
};

static void
outage_send(struct outage *o, int upto)
{
	for (; o->sent < upto; o->sent++)
		dsend(&o->c, "{\"type\":\"send\",\"room\":\"flap\",\"body\":\"o%d\","
		    "\"id\":\"f%d\",\"ref\":\"f%d\"}", o->sent, o->sent, o->sent);
}

/* Read frames for up to ms (0: what is there). */
static void
outage_pump(struct outage *o, int ms)
{
	int64_t deadline = wsc_now_ms() + ms;
	json_t *j;
	int st;

	while ((j = recv_json(&o->c, wsc_remaining_ms(deadline), &st)) != NULL) {
		const char *id = jstr(j, "id");
		int k = -1;

		if (id == NULL || sscanf(id, "f%d", &k) != 1 || k < 0 || k >= o->sent) {
			if (!passable(j)) {
				jdump("unexpected frame: ", j);
				o->errors++;
			}
		} else if (is_type(j, "ack")) {
			if (o->acks[k]++ != 0) {
				jdump("second ack: ", j);
				o->bad++;
			}
			o->ack_seq[k] = jint(j, "seq");
			o->nack++;
			if (k <= o->last_k || o->ack_seq[k] <= o->last_seq)
				o->order = 0;
			o->last_k = k;
			o->last_seq = o->ack_seq[k];
			if (pg_paused && o->down_from >= 0 && k >= o->down_from) {
				jdump("acked while the database is down: ", j);
				o->acked_while_down++;
			}
		} else if (is_type(j, "message")) {
			if (o->copies[k]++ != 0)
				o->bad++;
			if (pg_paused && o->down_from >= 0 && k >= o->down_from) {
				jdump("delivered while the database is down: ", j);
				o->seen_while_down++;
			}
		} else {
			jdump("unexpected frame: ", j);
			o->errors++;
		}
		json_decref(j);
	}
}

static void
test_db_outage(void)
{
	static const char *const extra[] = { "--batch-delay", "100", NULL };
	static struct outage o;
	int ms_503 = -1, ms_200 = -1, held_at_resume = -1;
	int64_t t_down, deadline;
	char *out = NULL, *cur, *f[3];
	json_t *j;
	int st;

	test_begin();
	memset(&o, 0, sizeof(o));
	dcl_init(&o.c);
	o.down_from = o.last_k = -1;
	o.order = 1;
	REQUIRE(db_fresh("durable_outage") == 0);
	/* Batches wait 100 ms: the stop lands on a batch in the making. */
	REQUIRE(parley_start(cur_db, extra, 1) == 0);
	REQUIRE(dcl_open(&o.c, "flap") == 0);
	j = dcl_join(&o.c, "flap", -1);
	REQUIRE(j != NULL);
	json_decref(j);

	/* 0-99 with the database up, all acked. */
	outage_send(&o, 100);
	deadline = wsc_now_ms() + 10000;
	while (o.nack < 100 && wsc_now_ms() < deadline && !o.c.gone)
		outage_pump(&o, 100);
	REQUIRE(o.nack == 100);
	/* 100-199 pipelined, and the database stops under them. */
	outage_send(&o, 200);
	REQUIRE(pg_pause() == 0);
	t_down = wsc_now_ms();
	o.down_from = 200;
	/*
	 * 200-399 while it is down, one every 10 ms; then 4 s in all down:
	 * nothing sent now may be acked or delivered; /readyz must say 503.
	 */
	while (!o.c.gone && (o.sent < 400 || wsc_now_ms() - t_down < 4000)) {
		if (o.sent < 400)
			outage_send(&o, o.sent + 1);
		outage_pump(&o, 10);
		if (ms_503 < 0 && readyz() == 503)
			ms_503 = (int)(wsc_now_ms() - t_down);
	}
	held_at_resume = o.sent - o.nack;
	CU_ASSERT_EQUAL(readyz(), 503);
	REQUIRE(pg_resume() == 0);
	/* 400-499 after it is back; everything is acked. */
	outage_send(&o, O_TOTAL);
	deadline = wsc_now_ms() + 20000;
	while (o.nack < O_TOTAL && wsc_now_ms() < deadline && !o.c.gone)
		outage_pump(&o, 100);
	/* Copies may trail their acks. */
	outage_pump(&o, 300);
	ms_200 = wait_readyz(200, 10000);
	fprintf(stderr, "[durable] outage: %d sent, %d acked, %d held when the "
	    "database came back; /readyz 503 after %d ms down, 200 %d ms after "
	    "the end\n", o.sent, o.nack, held_at_resume, ms_503, ms_200);
	CU_ASSERT_EQUAL(o.sent, O_TOTAL);
	CU_ASSERT_EQUAL(o.nack, O_TOTAL);
	CU_ASSERT_EQUAL(o.acked_while_down, 0);
	CU_ASSERT_EQUAL(o.seen_while_down, 0);
	CU_ASSERT(held_at_resume >= 200);
	CU_ASSERT(ms_503 >= 0 && ms_503 <= 4000);
	CU_ASSERT(ms_200 >= 0);
	CU_ASSERT(o.order);
	CU_ASSERT_EQUAL(o.bad, 0);
	CU_ASSERT_EQUAL(o.errors, 0);
	{
		int wrong_seq = 0, no_copy = 0;

		for (int k = 0; k < O_TOTAL; k++) {
			if (o.acks[k] == 1 && o.ack_seq[k] != k + 1)
				wrong_seq++;
			if (o.acks[k] == 1 && o.copies[k] != 1)
				no_copy++;
		}
		CU_ASSERT_EQUAL(wrong_seq, 0);
		CU_ASSERT_EQUAL(no_copy, 0);
	}
	REQUIRE(psql(cur_db, "SELECT e.seq, coalesce(e.client_id, '-') FROM events e "
	    "JOIN rooms r ON r.id = e.room_id WHERE r.name = 'flap' ORDER BY e.seq",
	    &out) == 0);
	cur = out;
	{
		long long n = 0, wrong = 0;
		char want[32];

		while (next_row(&cur, f, 2) == 2) {
			n++;
			snprintf(want, sizeof(want), "f%lld", n - 1);
			if (strtoll(f[0], NULL, 10) != n || strcmp(f[1], want) != 0) {
				if (wrong++ < 3)
					fprintf(stderr, "row %lld: seq %s id %s\n", n,
					    f[0], f[1]);
			}
		}
		fprintf(stderr, "[durable] outage: %lld rows stored\n", n);
		CU_ASSERT_EQUAL(n, O_TOTAL);
		CU_ASSERT_EQUAL(wrong, 0);
	}
	st = parley_stop(SIGTERM, 10000);
	CU_ASSERT_EQUAL(st, 0);
out:
	free(out);
	dcl_close(&o.c);
	test_end();
}

/* ---- 4: the backlog bound ------------------------------------------------- */

#define B_BACKLOG 50
#define B_SENDS 60

static void
test_backlog(void)
{
	static const char *const extra[] = { "--backlog", "50", NULL };
	struct dcl c, o;
	int reply[B_SENDS], err_down = 0, err_up = 0, acks_down = 0, bad = 0;
	int no_retry = 0, other_refused = 0, order = 1;
	int ms_first_ack = -1, ms_first_err = -1;
	long long ack_seq[B_SENDS], last_seq = 1;
	int64_t deadline, t_up;
	json_t *j;
	int st;

	test_begin();
	dcl_init(&c);
	dcl_init(&o);
	memset(reply, 0, sizeof(reply));
	REQUIRE(db_fresh("durable_backlog") == 0);
	REQUIRE(parley_start(cur_db, extra, 1) == 0);
	REQUIRE(dcl_open(&c, "bl") == 0);
	j = dcl_join(&c, "bl", -1);
	REQUIRE(j != NULL);
	json_decref(j);
	REQUIRE(send_acked(&c, "bl", "before", "pre") == 1);
	REQUIRE(dcl_open(&o, "bo") == 0);
	j = dcl_join(&o, "bl-other", -1);
	REQUIRE(j != NULL);
	json_decref(j);

	REQUIRE(pg_pause() == 0);
	for (int k = 0; k < B_SENDS; k++)
		dsend(&c, "{\"type\":\"send\",\"room\":\"bl\",\"body\":\"b%d\","
		    "\"id\":\"b%d\",\"ref\":\"b%d\"}", k, k, k);
	/* While it is down: 50 held, the 51st and later refused. */
	deadline = wsc_now_ms() + 4000;
	while (wsc_now_ms() < deadline && err_down < B_SENDS - B_BACKLOG) {
		const char *ref;
		int k = -1;

		j = recv_json(&c, wsc_remaining_ms(deadline), &st);
		if (j == NULL)
			break;
		ref = jstr(j, "ref");
		if (ref != NULL && sscanf(ref, "b%d", &k) == 1 && k >= 0 &&
		    k < B_SENDS) {
			if (is_type(j, "error") && jstreq(j, "code", "unavailable") &&
			    reply[k] == 0) {
				reply[k] = 2;
				err_down++;
				if (jint(j, "retry_after_ms") < 1)
					no_retry++;
				if (k < B_BACKLOG) {
					jdump("refused within the backlog: ", j);
					bad++;
				}
			} else if (is_type(j, "ack")) {
				jdump("acked while the database is down: ", j);
				acks_down++;
			} else {
				jdump("unexpected: ", j);
				bad++;
			}
		} else if (!passable(j)) {
			jdump("unexpected: ", j);
			bad++;
		}
		json_decref(j);
	}
	/* Another room's send while the backlog is full: refused at once. */
	dsend(&o, "{\"type\":\"send\",\"room\":\"bl-other\",\"body\":\"x\","
	    "\"id\":\"o0\",\"ref\":\"o0\"}");
	j = recv_json(&o, 3000, &st);
	if (is_type(j, "error") && jstreq(j, "code", "unavailable") &&
	    jstreq(j, "ref", "o0") && jint(j, "retry_after_ms") >= 1)
		other_refused = 1;
	else
		jdump("[bo] expected unavailable, got: ", j);
	json_decref(j);
	st = readyz();
	fprintf(stderr, "[durable] backlog: database down: %d of %d sends beyond "
	    "the backlog refused, %d acks; another room's send %s; /readyz %d\n",
	    err_down, B_SENDS - B_BACKLOG, acks_down,
	    other_refused ? "refused" : "NOT refused", st);
	CU_ASSERT_EQUAL(err_down, B_SENDS - B_BACKLOG);
	CU_ASSERT_EQUAL(acks_down, 0);
	CU_ASSERT_EQUAL(no_retry, 0);
	CU_ASSERT(other_refused);
	CU_ASSERT_EQUAL(st, 503);

	/* Back: the 50 held are acked in order; the refused never are. */
	REQUIRE(pg_resume() == 0);
	t_up = wsc_now_ms();
	deadline = wsc_now_ms() + 15000;
	for (;;) {
		int acked = 0, answered = 0;
		const char *ref;
		int k = -1;

		for (int i = 0; i < B_SENDS; i++) {
			acked += reply[i] == 1;
			answered += reply[i] != 0;
		}
		if (answered == B_SENDS || wsc_now_ms() >= deadline)
			break;
		j = recv_json(&c, wsc_remaining_ms(deadline), &st);
		if (j == NULL)
			break;
		ref = jstr(j, "ref");
		if (ref != NULL && sscanf(ref, "b%d", &k) == 1 && k >= 0 &&
		    k < B_SENDS && reply[k] == 0) {
			if (is_type(j, "ack") && k < B_BACKLOG) {
				if (ms_first_ack < 0)
					ms_first_ack = (int)(wsc_now_ms() - t_up);
				reply[k] = 1;
				ack_seq[k] = jint(j, "seq");
				if (ack_seq[k] != last_seq + 1)
					order = 0;
				last_seq = ack_seq[k];
			} else if (is_type(j, "error") &&
			    jstreq(j, "code", "unavailable") && k >= B_BACKLOG) {
				if (ms_first_err < 0)
					ms_first_err = (int)(wsc_now_ms() - t_up);
				reply[k] = 2;
				err_up++;
			} else {
				jdump("unexpected: ", j);
				bad++;
			}
		} else if (!passable(j)) {
			jdump("unexpected: ", j);
			bad++;
		}
		json_decref(j);
	}
	{
		int acked = 0;

		for (int i = 0; i < B_SENDS; i++)
			acked += reply[i] == 1;
		fprintf(stderr, "[durable] backlog: database back: %d held sends "
		    "acked (the first %d ms after the restart), %d refusals "
		    "arrived only now (the first %d ms after the restart)\n", acked,
		    ms_first_ack, err_up, ms_first_err);
		CU_ASSERT_EQUAL(acked, B_BACKLOG);
	}
	CU_ASSERT(order);
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'bl'"), 1 + B_BACKLOG);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'bl' AND e.client_id ~ '^b[0-9]+$' "
	    "AND substr(e.client_id, 2)::int >= 50"), 0);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'bl-other'"), 0);
	/* And the room takes new sends again. */
	CU_ASSERT_EQUAL(send_acked(&c, "bl", "after", "after"), 2 + B_BACKLOG);
	st = parley_stop(SIGTERM, 10000);
	CU_ASSERT_EQUAL(st, 0);
out:
	dcl_close(&c);
	dcl_close(&o);
	test_end();
}

/* ---- 5: dedupe across a restart ------------------------------------------- */

static void
test_dedupe_restart(void)
{
	struct dcl c;
	long long s, seq;
	json_t *j = NULL, *ev = NULL, *ack = NULL;
	int st;

	test_begin();
	dcl_init(&c);
	REQUIRE(db_fresh("durable_dedupe") == 0);
	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	REQUIRE(dcl_open(&c, "dd") == 0);
	j = dcl_join(&c, "dedupe", -1);
	REQUIRE(j != NULL);
	json_decref(j);
	j = NULL;
	CU_ASSERT_EQUAL(send_acked(&c, "dedupe", "one", "a1"), 1);
	CU_ASSERT_EQUAL(send_acked(&c, "dedupe", "two", "a2"), 2);
	s = send_acked(&c, "dedupe", "first", "x1");
	CU_ASSERT_EQUAL(s, 3);
	dcl_close(&c);
	st = parley_stop(SIGTERM, 10000);
	CU_ASSERT_EQUAL(st, 0);

	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	REQUIRE(dcl_open(&c, "dd") == 0);
	j = dcl_join(&c, "dedupe", -1);
	REQUIRE(j != NULL);
	CU_ASSERT_EQUAL(jint(j, "seq"), 3);
	json_decref(j);
	j = NULL;
	/* The same id, another body: the original's seq, no new event. */
	dsend(&c, "{\"type\":\"send\",\"room\":\"dedupe\",\"body\":\"second\","
	    "\"id\":\"x1\",\"ref\":\"again\"}");
	j = recv_json(&c, T_IO, &st);
	if (!(is_type(j, "ack") && jint(j, "seq") == s &&
	    json_is_true(json_object_get(j, "duplicate")) &&
	    jstreq(j, "id", "x1") && jstreq(j, "ref", "again") &&
	    jstreq(j, "room", "dedupe")))
		jdump("expected a duplicate ack, got: ", j);
	CU_ASSERT(is_type(j, "ack") && jint(j, "seq") == s &&
	    json_is_true(json_object_get(j, "duplicate")) &&
	    jstreq(j, "id", "x1") && jstreq(j, "ref", "again"));
	json_decref(j);
	j = NULL;
	/* The next frames are the new send's event and ack: seq s + 1. */
	dsend(&c, "{\"type\":\"send\",\"room\":\"dedupe\",\"body\":\"new\","
	    "\"id\":\"y1\",\"ref\":\"new\"}");
	for (int i = 0; i < 2; i++) {
		j = recv_json(&c, T_IO, &st);
		if (is_type(j, "message") && ev == NULL)
			ev = j;
		else if (is_type(j, "ack") && ack == NULL)
			ack = j;
		else {
			jdump("expected the new message and its ack, got: ", j);
			json_decref(j);
		}
		j = NULL;
	}
	CU_ASSERT(ev != NULL && jint(ev, "seq") == s + 1 &&
	    jstreq(ev, "body", "new") && jstreq(ev, "id", "y1"));
	CU_ASSERT(ack != NULL && jint(ack, "seq") == s + 1 &&
	    json_object_get(ack, "duplicate") == NULL);
	/* The same id again in this run: still the original. */
	dsend(&c, "{\"type\":\"send\",\"room\":\"dedupe\",\"body\":\"third\","
	    "\"id\":\"x1\",\"ref\":\"again2\"}");
	j = recv_json(&c, T_IO, &st);
	CU_ASSERT(is_type(j, "ack") && jint(j, "seq") == s &&
	    json_is_true(json_object_get(j, "duplicate")));
	json_decref(j);
	j = NULL;
	dcl_close(&c);
	seq = psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r ON "
	    "r.id = e.room_id WHERE r.name = 'dedupe' AND e.client_id = 'x1' AND "
	    "e.body = 'first' AND e.seq = 3");
	CU_ASSERT_EQUAL(seq, 1);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'dedupe' AND (e.client_id = 'x1' OR "
	    "e.body IN ('second', 'third'))"), 1);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'dedupe'"), 4);
	st = parley_stop(SIGTERM, 10000);
	CU_ASSERT_EQUAL(st, 0);
out:
	json_decref(j);
	json_decref(ev);
	json_decref(ack);
	dcl_close(&c);
	test_end();
}

/* ---- 6: history across the ring and the database -------------------------- */

#define H_EVENTS 1500
#define H_OTHER 5               /* seqs 1-5 are "other"'s (4 and 5 without id) */
#define H_WINDOW 100

/* A history request's reply; NULL (printed) when it is something else. */
static json_t *
history(struct dcl *c, const char *room, long long before, int limit)
{
	if (before > 0)
		dsend(c, "{\"type\":\"history\",\"room\":\"%s\",\"before\":%lld,"
		    "\"limit\":%d,\"ref\":\"h\"}", room, before, limit);
	else
		dsend(c, "{\"type\":\"history\",\"room\":\"%s\",\"limit\":%d,"
		    "\"ref\":\"h\"}", room, limit);
	return await_type(c, "history", T_IO);
}

/* The next two frames: the event of this type and the ack (any order). */
static int
await_pair(struct dcl *c, const char *type, json_t **ev, json_t **ack)
{
	int st;

	*ev = *ack = NULL;
	for (int i = 0; i < 2; i++) {
		json_t *j = recv_json(c, T_IO, &st);

		if (is_type(j, type) && *ev == NULL)
			*ev = j;
		else if (is_type(j, "ack") && *ack == NULL)
			*ack = j;
		else {
			fprintf(stderr, "[%s] expected '%s' and 'ack', got: ", c->user,
			    type);
			jdump("", j);
			json_decref(j);
			return -1;
		}
	}
	return 0;
}

static json_t *
await_error(struct dcl *c, const char *code, const char *ref)
{
	int st;
	json_t *j = recv_json(c, T_IO, &st);

	if (is_type(j, "error") && jstreq(j, "code", code) && jstreq(j, "ref", ref))
		return j;
	fprintf(stderr, "[%s] expected error %s (ref %s), got: ", c->user, code, ref);
	jdump("", j);
	json_decref(j);
	return NULL;
}

static void
test_history_paging(void)
{
	static json_t *live[H_EVENTS + 3];
	static int seen[H_EVENTS + 1];
	struct dcl h, o;
	int sent = 0, acked = 0, pages = 0, bad_pages = 0, mism = 0, more_wrong = 0;
	long long before = 0, ring_low;
	json_t *j = NULL, *ev = NULL, *ack = NULL, *want = NULL;
	int64_t deadline;
	int st;

	test_begin();
	dcl_init(&h);
	dcl_init(&o);
	memset(live, 0, sizeof(live));
	memset(seen, 0, sizeof(seen));
	REQUIRE(db_fresh("durable_history") == 0);
	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	REQUIRE(dcl_open(&o, "other") == 0);
	REQUIRE(dcl_open(&h, "hist") == 0);
	j = dcl_join(&o, "big", -1);
	REQUIRE(j != NULL);
	json_decref(j);
	j = dcl_join(&h, "big", -1);
	REQUIRE(j != NULL);
	json_decref(j);
	j = NULL;
	for (int k = 1; k <= H_OTHER; k++) {
		char body[16];

		/* The last two without an id: history must not invent one. */
		snprintf(body, sizeof(body), "o%d", k);
		REQUIRE(send_acked(&o, "big", body, k <= 3 ? body : NULL) == k);
	}
	/* The rest from hist, pipelined; its live frames are kept by seq. */
	deadline = wsc_now_ms() + 30000;
	while (acked < H_EVENTS - H_OTHER && wsc_now_ms() < deadline) {
		while (sent < H_EVENTS - H_OTHER && sent - acked < H_WINDOW) {
			dsend(&h, "{\"type\":\"send\",\"room\":\"big\",\"body\":\"m%d\","
			    "\"id\":\"h%d\"}", sent, sent);
			sent++;
		}
		j = recv_json(&h, 2000, &st);
		if (j == NULL)
			break;
		if (is_type(j, "ack")) {
			acked++;
		} else if (is_type(j, "message") && jint(j, "seq") >= 1 &&
		    jint(j, "seq") <= H_EVENTS && live[jint(j, "seq")] == NULL) {
			live[jint(j, "seq")] = j;
			j = NULL;
		} else if (!passable(j)) {
			jdump("unexpected: ", j);
			bad_pages++;
		}
		json_decref(j);
		j = NULL;
	}
	/* Copies may trail the last ack. */
	for (long long s = 1; s <= H_EVENTS; s++)
		while (live[s] == NULL && (j = recv_json(&h, 2000, &st)) != NULL) {
			if (is_type(j, "message") && jint(j, "seq") >= 1 &&
			    jint(j, "seq") <= H_EVENTS && live[jint(j, "seq")] == NULL) {
				live[jint(j, "seq")] = j;
				j = NULL;
			}
			json_decref(j);
			j = NULL;
		}
	{
		int missing = 0;

		for (long long s = 1; s <= H_EVENTS; s++)
			missing += live[s] == NULL;
		fprintf(stderr, "[durable] history: %d acks, %d live frames missing\n",
		    acked, missing);
		REQUIRE(acked == H_EVENTS - H_OTHER && missing == 0);
	}
	CU_ASSERT_EQUAL(bad_pages, 0);
	dcl_close(&h);
	dcl_close(&o);
	REQUIRE(parley_stop(SIGTERM, 10000) == 0);

	/* After a restart the ring holds only the latest 1024. */
	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	REQUIRE(dcl_open(&h, "hist") == 0);
	j = dcl_join(&h, "big", -1);
	REQUIRE(j != NULL);
	CU_ASSERT_EQUAL(jint(j, "seq"), H_EVENTS);
	json_decref(j);
	j = NULL;
	ring_low = H_EVENTS - 1024 + 1;
	for (;;) {
		json_t *evs;
		long long prev = 0, top = before > 0 ? before - 1 : H_EVENTS;
		size_t n;
		int more;

		j = history(&h, "big", before, 200);
		REQUIRE(j != NULL);
		pages++;
		evs = json_object_get(j, "events");
		REQUIRE(json_is_array(evs) && json_array_size(evs) > 0);
		n = json_array_size(evs);
		more = json_is_true(json_object_get(j, "more"));
		if (!jstreq(j, "room", "big") || !jstreq(j, "ref", "h") ||
		    !json_is_boolean(json_object_get(j, "more")))
			bad_pages++;
		/* The latest 200 below before, ascending. */
		if (n != (size_t)(top >= 200 ? 200 : top) ||
		    jint(json_array_get(evs, n - 1), "seq") != top) {
			fprintf(stderr, "page %d (before %lld): %zu events, last seq "
			    "%lld\n", pages, before, n,
			    jint(json_array_get(evs, n - 1), "seq"));
			bad_pages++;
		}
		for (size_t i = 0; i < n; i++) {
			json_t *e = json_array_get(evs, i);
			long long s = jint(e, "seq");

			if (s < 1 || s > H_EVENTS || (prev != 0 && s != prev + 1)) {
				fprintf(stderr, "page %d: seq %lld after %lld\n", pages, s,
				    prev);
				bad_pages++;
				continue;
			}
			prev = s;
			seen[s]++;
			if (!json_equal(e, live[s])) {
				if (mism++ < 4) {
					fprintf(stderr, "history seq %lld (%s the ring) is not "
					    "the live frame:\n", s, s < ring_low ? "below" :
					    "in");
					jdump("  history: ", e);
					jdump("  live:    ", live[s]);
				}
			}
		}
		before = jint(json_array_get(evs, 0), "seq");
		if (more != (before > 1))
			more_wrong++;
		json_decref(j);
		j = NULL;
		if (!more || pages >= 20 || before <= 1)
			break;
	}
	{
		int once = 0;

		for (long long s = 1; s <= H_EVENTS; s++)
			once += seen[s] == 1;
		fprintf(stderr, "[durable] history: %d pages, %d of %d seqs once, %d "
		    "frames differ from the live ones, %d wrong 'more'\n", pages,
		    once, H_EVENTS, mism, more_wrong);
		CU_ASSERT_EQUAL(once, H_EVENTS);
	}
	CU_ASSERT_EQUAL(pages, (H_EVENTS + 199) / 200);
	CU_ASSERT_EQUAL(bad_pages, 0);
	CU_ASSERT_EQUAL(mism, 0);
	CU_ASSERT_EQUAL(more_wrong, 0);

	/* Old messages (below the ring): edit and delete one's own ... */
	dsend(&h, "{\"type\":\"edit\",\"room\":\"big\",\"target\":10,"
	    "\"body\":\"edited\",\"id\":\"e1\",\"ref\":\"e1\"}");
	REQUIRE(await_pair(&h, "edit", &ev, &ack) == 0);
	CU_ASSERT(jint(ev, "seq") == H_EVENTS + 1 && jint(ev, "target") == 10 &&
	    jstreq(ev, "body", "edited") && jstreq(ev, "user", "hist") &&
	    jint(ack, "seq") == H_EVENTS + 1 && jstreq(ack, "ref", "e1"));
	json_decref(ev);
	json_decref(ack);
	ev = ack = NULL;
	/* ... not another user's, not one that does not exist ... */
	dsend(&h, "{\"type\":\"edit\",\"room\":\"big\",\"target\":3,"
	    "\"body\":\"mine now\",\"ref\":\"f1\"}");
	j = await_error(&h, "forbidden", "f1");
	CU_ASSERT(j != NULL);
	json_decref(j);
	dsend(&h, "{\"type\":\"delete\",\"room\":\"big\",\"target\":4,"
	    "\"ref\":\"f2\"}");
	j = await_error(&h, "forbidden", "f2");
	CU_ASSERT(j != NULL);
	json_decref(j);
	dsend(&h, "{\"type\":\"edit\",\"room\":\"big\",\"target\":999999,"
	    "\"body\":\"x\",\"ref\":\"n1\"}");
	j = await_error(&h, "not_found", "n1");
	CU_ASSERT(j != NULL);
	json_decref(j);
	j = NULL;
	dsend(&h, "{\"type\":\"delete\",\"room\":\"big\",\"target\":10,"
	    "\"id\":\"del1\",\"ref\":\"d1\"}");
	REQUIRE(await_pair(&h, "delete", &ev, &ack) == 0);
	CU_ASSERT(jint(ev, "seq") == H_EVENTS + 2 && jint(ev, "target") == 10 &&
	    jint(ack, "seq") == H_EVENTS + 2);
	json_decref(ev);
	json_decref(ack);
	ev = ack = NULL;
	/* A deleted message is no longer a target. */
	dsend(&h, "{\"type\":\"edit\",\"room\":\"big\",\"target\":10,"
	    "\"body\":\"again\",\"ref\":\"n2\"}");
	j = await_error(&h, "not_found", "n2");
	CU_ASSERT(j != NULL);
	json_decref(j);
	j = NULL;

	/* History shows the message and its edit deleted: now and after a restart. */
	want = json_deep_copy(live[10]);
	json_object_set_new(want, "body", json_string(""));
	json_object_set_new(want, "deleted", json_true());
	for (int round = 0; round < 2; round++) {
		json_t *evs, *e;

		j = history(&h, "big", 11, 1);
		REQUIRE(j != NULL);
		evs = json_object_get(j, "events");
		e = json_array_get(evs, 0);
		if (!(json_array_size(evs) == 1 && json_equal(e, want))) {
			fprintf(stderr, "round %d: history of deleted seq 10:\n", round);
			jdump("  got:  ", j);
			jdump("  want: ", want);
		}
		CU_ASSERT(json_array_size(evs) == 1 && json_equal(e, want));
		CU_ASSERT(json_is_true(json_object_get(j, "more")));
		json_decref(j);
		j = history(&h, "big", 0, 2);
		REQUIRE(j != NULL);
		evs = json_object_get(j, "events");
		e = json_array_get(evs, 0);
		if (!(json_array_size(evs) == 2 && is_type(e, "edit") &&
		    jint(e, "seq") == H_EVENTS + 1 && jstreq(e, "body", "") &&
		    json_is_true(json_object_get(e, "deleted")) &&
		    is_type(json_array_get(evs, 1), "delete")))
			jdump("latest two (edit and delete of seq 10): ", j);
		CU_ASSERT(json_array_size(evs) == 2 && is_type(e, "edit") &&
		    jint(e, "seq") == H_EVENTS + 1 && jstreq(e, "body", "") &&
		    json_is_true(json_object_get(e, "deleted")) &&
		    jint(e, "target") == 10 && jstreq(e, "id", "e1") &&
		    is_type(json_array_get(evs, 1), "delete") &&
		    jint(json_array_get(evs, 1), "target") == 10);
		json_decref(j);
		j = NULL;
		if (round == 1)
			break;
		dcl_close(&h);
		REQUIRE(parley_stop(SIGTERM, 10000) == 0);
		REQUIRE(parley_start(cur_db, NULL, 1) == 0);
		REQUIRE(dcl_open(&h, "hist") == 0);
		j = dcl_join(&h, "big", -1);
		REQUIRE(j != NULL && jint(j, "seq") == H_EVENTS + 2);
		json_decref(j);
		j = NULL;
		/* Still not anyone's target. */
		dsend(&h, "{\"type\":\"delete\",\"room\":\"big\",\"target\":10,"
		    "\"ref\":\"n3\"}");
		j = await_error(&h, "not_found", "n3");
		CU_ASSERT(j != NULL);
		json_decref(j);
		j = NULL;
	}
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'big' AND e.target = 10"), 2);
	dcl_close(&h);
	st = parley_stop(SIGTERM, 10000);
	CU_ASSERT_EQUAL(st, 0);
out:
	json_decref(j);
	json_decref(ev);
	json_decref(ack);
	json_decref(want);
	for (int s = 0; s < H_EVENTS + 3; s++) {
		json_decref(live[s]);
		live[s] = NULL;
	}
	dcl_close(&h);
	dcl_close(&o);
	test_end();
}

/* ---- 7: /readyz follows the database -------------------------------------- */

static void
test_readyz(void)
{
	struct dcl c;
	json_t *j = NULL;
	int st, not_ready = 1, joined = 0, ms;
	int64_t t0, deadline;

	test_begin();
	dcl_init(&c);
	REQUIRE(db_fresh("durable_ready") == 0);   /* no schema yet */
	REQUIRE(pg_pause() == 0);
	REQUIRE(parley_start(cur_db, NULL, 0) == 0);
	CU_ASSERT_EQUAL(healthz(), 200);
	for (int i = 0; i < 5; i++) {
		if (readyz() != 503)
			not_ready = 0;
		wsc_sleep_ms(100);
	}
	CU_ASSERT(not_ready);
	/* A room never loaded cannot be: refused at once, not hung. */
	REQUIRE(dcl_open(&c, "early") == 0);
	t0 = wsc_now_ms();
	dsend(&c, "{\"type\":\"join\",\"room\":\"never\",\"ref\":\"jn\"}");
	j = recv_json(&c, 5000, &st);
	ms = (int)(wsc_now_ms() - t0);
	if (!(is_type(j, "error") && jstreq(j, "code", "unavailable") &&
	    jstreq(j, "ref", "jn") && jint(j, "retry_after_ms") >= 1))
		jdump("join with the database down: ", j);
	CU_ASSERT(is_type(j, "error") && jstreq(j, "code", "unavailable") &&
	    jstreq(j, "ref", "jn") && jint(j, "retry_after_ms") >= 1);
	fprintf(stderr, "[durable] readyz: join refused after %d ms\n", ms);
	json_decref(j);
	j = NULL;
	CU_ASSERT_EQUAL(healthz(), 200);

	/* The database starts: ready within 10 s, and the schema is made. */
	REQUIRE(pg_resume() == 0);
	ms = wait_readyz(200, 10000);
	fprintf(stderr, "[durable] readyz: 200 after %d ms\n", ms);
	CU_ASSERT(ms >= 0);
	/* The join works now (retried as retry_after_ms says). */
	deadline = wsc_now_ms() + 8000;
	while (!joined && wsc_now_ms() < deadline) {
		dsend(&c, "{\"type\":\"join\",\"room\":\"never\",\"ref\":\"jn\"}");
		j = recv_json(&c, 5000, &st);
		if (is_type(j, "joined") && jint(j, "seq") == 0)
			joined = 1;
		else if (is_type(j, "error") && jstreq(j, "code", "unavailable"))
			wsc_sleep_ms((int)(jint(j, "retry_after_ms") > 500 ? 500 :
			    jint(j, "retry_after_ms")));
		else {
			jdump("join: ", j);
			break;
		}
		json_decref(j);
		j = NULL;
	}
	CU_ASSERT(joined);
	if (joined)
		CU_ASSERT_EQUAL(send_acked(&c, "never", "hello", "n1"), 1);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'never' AND e.client_id = 'n1'"), 1);
	dcl_close(&c);
	st = parley_stop(SIGTERM, 10000);
	CU_ASSERT_EQUAL(st, 0);
out:
	json_decref(j);
	dcl_close(&c);
	test_end();
}

/* ---- 8: read positions are stored ------------------------------------------- */

static void
test_read_position(void)
{
	struct dcl c, o;
	json_t *j = NULL;
	int st;

	test_begin();
	dcl_init(&c);
	dcl_init(&o);
	REQUIRE(db_fresh("durable_read") == 0);
	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	REQUIRE(dcl_open(&c, "rd") == 0);
	j = dcl_join(&c, "rp", -1);
	REQUIRE(j != NULL);
	CU_ASSERT_EQUAL(jint(j, "read"), 0);
	json_decref(j);
	j = NULL;
	for (int k = 1; k <= 10; k++) {
		char id[16];

		snprintf(id, sizeof(id), "r%d", k);
		REQUIRE(send_acked(&c, "rp", id, id) == k);
	}
	dsend(&c, "{\"type\":\"read\",\"room\":\"rp\",\"seq\":5}");
	j = await_type(&c, "receipt", T_IO);
	CU_ASSERT(j != NULL && jint(j, "seq") == 5 && jstreq(j, "user", "rd"));
	json_decref(j);
	j = NULL;
	dcl_close(&c);
	st = parley_stop(SIGTERM, 10000);
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT p.seq FROM read_positions p JOIN "
	    "rooms r ON r.id = p.room_id WHERE r.name = 'rp' AND p.user_name = 'rd'"),
	    5);

	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	REQUIRE(dcl_open(&c, "rd") == 0);
	REQUIRE(dcl_open(&o, "ro") == 0);
	j = dcl_join(&c, "rp", -1);
	REQUIRE(j != NULL);
	if (jint(j, "read") != 5)
		jdump("joined after the restart: ", j);
	CU_ASSERT_EQUAL(jint(j, "read"), 5);
	CU_ASSERT_EQUAL(jint(j, "seq"), 10);
	json_decref(j);
	j = dcl_join(&o, "rp", -1);
	REQUIRE(j != NULL);
	CU_ASSERT_EQUAL(jint(j, "read"), 0);
	json_decref(j);
	j = NULL;
	/* Forward only, across the restart too: 3 moves nothing, 7 does. */
	dsend(&c, "{\"type\":\"read\",\"room\":\"rp\",\"seq\":3}");
	dsend(&c, "{\"type\":\"read\",\"room\":\"rp\",\"seq\":7}");
	j = await_type(&c, "receipt", T_IO);
	CU_ASSERT(j != NULL && jint(j, "seq") == 7);
	json_decref(j);
	j = NULL;
	dcl_close(&c);
	dcl_close(&o);
	st = parley_stop(SIGTERM, 10000);
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT p.seq FROM read_positions p JOIN "
	    "rooms r ON r.id = p.room_id WHERE r.name = 'rp' AND p.user_name = 'rd'"),
	    7);
out:
	json_decref(j);
	dcl_close(&c);
	dcl_close(&o);
	test_end();
}

/* ---- 9: an id that left the dedupe window comes back ----------------------- */

#define R_FILL 100000   /* STORE_IDS_SCAN: ids older than this are not loaded */

/*
 * After a restart a room remembers the ids among its latest R_FILL events
 * only. An older id that comes back is a new event (PROTOCOL.md section 5:
 * the window is at least 10,000 ids); the unique index on (room, user,
 * client id) refuses it as it stands, so it must be stored without its id,
 * acked, and the batch around it must not be lost.
 */
static void
test_id_reused_beyond_window(void)
{
	struct dcl c;
	long long s;
	char *out = NULL;
	int st;
	json_t *j;

	test_begin();
	dcl_init(&c);
	REQUIRE(db_fresh("durable_reuse") == 0);
	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	REQUIRE(dcl_open(&c, "ru") == 0);
	j = dcl_join(&c, "reuse", -1);
	REQUIRE(j != NULL);
	json_decref(j);
	CU_ASSERT_EQUAL(send_acked(&c, "reuse", "old", "z1"), 1);
	dcl_close(&c);
	CU_ASSERT_EQUAL(parley_stop(SIGTERM, 10000), 0);

	/* R_FILL events without ids push z1 out of what a load looks at. */
	REQUIRE(psql(cur_db, "INSERT INTO events (room_id, seq, kind, user_name, body, ts) "
	    "SELECT r.id, g, 'message', 'ru', 'filler', 0 FROM rooms r, "
	    "generate_series(2, 100001) g WHERE r.name = 'reuse'", &out) == 0);
	free(out);
	out = NULL;

	REQUIRE(parley_start(cur_db, NULL, 1) == 0);
	REQUIRE(dcl_open(&c, "ru") == 0);
	j = dcl_join(&c, "reuse", -1);
	REQUIRE(j != NULL);
	CU_ASSERT_EQUAL(jint(j, "seq"), R_FILL + 1);
	json_decref(j);
	/* A new event, acked; and one after it in the same breath. */
	s = send_acked(&c, "reuse", "again", "z1");
	CU_ASSERT_EQUAL(s, R_FILL + 2);
	CU_ASSERT_EQUAL(send_acked(&c, "reuse", "next", "z2"), R_FILL + 3);
	dcl_close(&c);
	st = parley_stop(SIGTERM, 10000);
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'reuse' AND e.client_id = 'z1'"), 1);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'reuse' AND e.seq = 100002 AND "
	    "e.body = 'again' AND e.client_id IS NULL"), 1);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT count(*) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'reuse' AND e.seq = 100003 AND "
	    "e.client_id = 'z2'"), 1);
	CU_ASSERT_EQUAL(psql_int(cur_db, "SELECT max(e.seq) FROM events e JOIN rooms r "
	    "ON r.id = e.room_id WHERE r.name = 'reuse'"), R_FILL + 3);
out:
	free(out);
	dcl_close(&c);
	test_end();
}

/* ---- main --------------------------------------------------------------------- */

static const struct test_def durable_tests[] = {
	{ "2000 acked sends survive SIGKILL; seqs go on after it", test_kill_restart },
	{ "SIGTERM with sends in flight: acked is stored, exit 0", test_sigterm_drain },
	{ "database down mid-stream: held, then acked in order once", test_db_outage },
	{ "--backlog 50: the 51st outstanding send is unavailable", test_backlog },
	{ "dedupe by id across a restart", test_dedupe_restart },
	{ "history pages across the ring and the database", test_history_paging },
	{ "/readyz follows the database; join refused while down", test_readyz },
	{ "read positions survive a restart", test_read_position },
	{ "an id reused beyond the dedupe window is a new event", test_id_reused_beyond_window },
	{ NULL, NULL }
};

int
main(void)
{
	if (harness_begin("test_durable") != 0)
		return 1;
	if (harness_add_suite("durable", suite_init, suite_cleanup, durable_tests)) {
		CU_cleanup_registry();
		return 1;
	}
	return harness_run();
}
