/*
 * persist-bench - how fast the persistence thread makes events durable,
 * next to one INSERT per event and next to the database's own ceiling.
 *
 *   persist-bench --mode persist --conninfo C [-n EVENTS] [-r ROOMS]
 *                 [--batch-max N] [--batch-delay MS] [--rate R] [-d S]
 *   persist-bench --mode insert --conninfo C [-n EVENTS] [-r ROOMS] [-d S]
 *   persist-bench --mode rows [-n EVENTS] [-r ROOMS]     COPY text to stdout
 *   persist-bench --mode reset --conninfo C [-r ROOMS]   schema, empty events,
 *                                                        the rooms
 *
 * persist drives the real persistence thread (db/persist.c) exactly as
 * room actors do: R fake rooms take a place in the backlog, build a record
 * and submit it; the thread's commit notices come back through cfg.post to
 * this program's main thread over a mailbox, as they would to a worker.
 * Without --rate the rooms submit as fast as the backlog lets them (the
 * producer is never the limit, so this measures the thread and the
 * database); the ack latency printed then is mostly time spent queued
 * behind the backlog. With --rate the submissions are paced open-loop and
 * each record's latency is counted from the time it was due, not the time
 * it went out, so a stalled producer cannot hide a stalled thread.
 *
 * Every mode makes the same rows, event i going to room i % R with seq
 * i / R + 1, so the ceiling (psql \copy of --mode rows) writes what the
 * thread writes. Events name their room by rooms.id: reset empties rooms
 * (restarting its identity) and creates rooms 0..R-1 (bench-room-N) in
 * order, so room N has id N + 1, which every mode writes (rows without
 * asking the database); reset reads the ids back and fails unless it is
 * so. persist and insert start with reset and count the rows at the end:
 * a row missing is a failure.
 *
 * Exit status: 0 when every event committed, 1 on an error or a loss,
 * 2 on bad usage.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ck_pr.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "log.h"
#include "mailbox.h"
#include "migrate.h"
#include "persist.h"
#include "xmalloc.h"

#define NS_PER_S 1000000000LL
#define EVENTS_MAX 20000000ULL     /* two arrays of them are held in memory */
#define SUBMIT_CHUNK 1024          /* submits between looks at the notices */
#define STALL_NS (30 * NS_PER_S)   /* no commit for this long: give up */
#define READY_NS (15 * NS_PER_S)   /* the thread must connect within this */
#define NOTICE_KIND 1              /* base.kind of our commit notices */

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

enum mode { MODE_PERSIST, MODE_INSERT, MODE_ROWS, MODE_RESET };

static const char *const mode_names[] = {
	[MODE_PERSIST] = "persist", [MODE_INSERT] = "insert",
	[MODE_ROWS] = "rows", [MODE_RESET] = "reset",
};

struct opts {
	enum mode mode;
	const char *conninfo;
	unsigned batch_max;
	unsigned batch_delay_ms;
	uint64_t backlog;
	uint64_t events;             /* at most this many */
	unsigned rooms;
	double rate;                 /* events/s; 0: as fast as taken */
	double duration;             /* stop submitting after this, s; 0: never */
	int json;
	int quiet;
};

static volatile sig_atomic_t interrupted;

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
cpu_ns(clockid_t clk)
{
	struct timespec ts;

	if (clock_gettime(clk, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* ---- the rows ----------------------------------------------------------- */

/*
 * One chat event as a room would sequence it. Mostly messages of 60-100
 * bytes, a tenth reactions and a twentieth edits (so the partial indexes
 * on target see rows), each from one of a room's eight members and each
 * with a 36-byte client id, as clients send a UUID.
 */
struct row {
	unsigned room;               /* 0..R-1; rooms.id is room_id_of(room) */
	char user[24];
	char body[128];
	size_t body_len;             /* 0 with body NULL: see has_body */
	int has_body;
	const char *emoji;           /* NULL unless a reaction */
	char client_id[40];
	uint8_t type;                /* enum persist_event_type */
	uint8_t add;
	uint64_t seq;
	int64_t target;              /* 0 for a message */
};

static const char *const words[] = {
	"hey", "so", "the", "build", "is", "green", "again", "after", "that",
	"fix", "did", "anyone", "look", "at", "deploy", "logs", "from", "last",
	"night", "I", "think", "we", "should", "ship", "it", "today", "lunch",
	"at", "noon", "sounds", "good", "thanks", "for", "review", "merged",
	"coffee", "meeting", "moved", "to", "three", "ok", "works", "for", "me",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

/* splitmix64: cheap, well mixed, and the same rows every run. */
static uint64_t
mix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ULL;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	return x ^ (x >> 31);
}

#define ROOM_PREFIX "bench-room-"   /* room N is bench-room-N */

static void
room_name(char *out, size_t len, unsigned room)
{
	snprintf(out, len, ROOM_PREFIX "%u", room);
}

/* rooms.id of room 0..R-1 once reset has made the rooms (see db_reset). */
static int64_t
room_id_of(unsigned room)
{
	return (int64_t)room + 1;
}

/* Words until a length of 60-100 bytes, cut there. */
static size_t
make_body(char *out, size_t cap, uint64_t h)
{
	size_t want = 60 + h % 41, len = 0;

	while (len < want) {
		const char *w = words[(h >> 8) % NWORDS];
		int n = snprintf(out + len, cap - len, len ? " %s" : "%s", w);

		len += (size_t)n;
		h = mix64(h);
	}
	len = want < cap - 1 ? want : cap - 1;
	out[len] = '\0';
	return len;
}

static void
row_make(struct row *w, unsigned room, uint64_t seq)
{
	uint64_t h = mix64((uint64_t)room << 40 | seq), h2 = mix64(h);

	w->room = room;
	snprintf(w->user, sizeof(w->user), "user%u", (room * 8 + (unsigned)(h % 8)) % 5000);
	snprintf(w->client_id, sizeof(w->client_id), "%08x-%04x-4%03x-a%03x-%012llx",
	    (unsigned)(h >> 32), (unsigned)(h >> 16) & 0xffff, (unsigned)h & 0xfff,
	    (unsigned)(h2 >> 52), (unsigned long long)(h2 & 0xffffffffffffULL));
	w->seq = seq;
	w->add = 0;
	w->emoji = NULL;
	w->target = 0;
	w->type = PERSIST_MESSAGE;
	w->has_body = 1;
	if (seq % 10 == 5) {
		w->type = PERSIST_REACTION;
		w->target = (int64_t)seq - 1 - (int64_t)(h % 4);
		w->emoji = "\xf0\x9f\x91\x8d";   /* thumbs up */
		w->add = 1;
		w->has_body = 0;
	} else if (seq % 20 == 10) {
		w->type = PERSIST_EDIT;
		w->target = (int64_t)seq - 1 - (int64_t)(h % 8);
	}
	w->body_len = w->has_body ? make_body(w->body, sizeof(w->body), h2) : 0;
}

/* Event number i of a run: rooms take turns. */
static void
row_of_event(struct row *w, uint64_t i, unsigned rooms)
{
	row_make(w, (unsigned)(i % rooms), i / rooms + 1);
}

static const char *const type_names[] = {
	[PERSIST_MESSAGE] = "message", [PERSIST_EDIT] = "edit",
	[PERSIST_DELETE] = "delete", [PERSIST_REACTION] = "reaction",
};

/* One COPY text field; our rows hold no specials, but stay correct anyway. */
static void
copy_field(FILE *f, const char *s)
{
	if (s == NULL) {
		fputs("\\N", f);
		return;
	}
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '\\': fputs("\\\\", f); break;
		case '\t': fputs("\\t", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		default: putc(*s, f); break;
		}
	}
}

/* Columns: room_id, seq, kind, user_name, target, body, emoji, add, client_id, ts. */
static void
copy_row(FILE *f, const struct row *w, int64_t ts)
{
	fprintf(f, "%" PRId64 "\t%" PRIu64 "\t%s\t", room_id_of(w->room), w->seq,
	    type_names[w->type]);
	copy_field(f, w->user);
	if (w->type == PERSIST_MESSAGE)
		fputs("\t\\N\t", f);
	else
		fprintf(f, "\t%" PRId64 "\t", w->target);
	copy_field(f, w->has_body ? w->body : NULL);
	putc('\t', f);
	copy_field(f, w->emoji);
	fputs(w->type == PERSIST_REACTION ? "\tt\t" : "\t\\N\t", f);
	copy_field(f, w->client_id);
	fprintf(f, "\t%" PRId64 "\n", ts);
}

/* ---- results ------------------------------------------------------------- */

struct pcts {
	double p50, p99, p999, max, mean;   /* ms */
	uint64_t n;
};

static int
u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorts us in place. */
static void
pcts_of(uint32_t *us, uint64_t n, struct pcts *p)
{
	double sum = 0;

	memset(p, 0, sizeof(*p));
	if (n == 0)
		return;
	qsort(us, n, sizeof(*us), u32_cmp);
	for (uint64_t i = 0; i < n; i++)
		sum += us[i];
	p->n = n;
	p->p50 = us[(n - 1) / 2] / 1e3;
	p->p99 = us[(uint64_t)((n - 1) * 0.99)] / 1e3;
	p->p999 = us[(uint64_t)((n - 1) * 0.999)] / 1e3;
	p->max = us[n - 1] / 1e3;
	p->mean = sum / (double)n / 1e3;
}

struct result {
	const char *error;           /* NULL: the run completed */
	char errbuf[256];
	uint64_t submitted, committed, in_table;
	double seconds;              /* first submit to last commit */
	double events_per_s;
	struct pcts ack;
	uint64_t batches;
	double commit_ms_mean, commit_ms_max;
	uint64_t failures, reconnects;
	double thread_cpu_pct;       /* the persistence thread */
	double main_cpu_pct;         /* the producer and notice handler */
	double backend_cpu_pct;      /* the PostgreSQL backend writing, -1: unknown */
};

static void fail(struct result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fail(struct result *res, const char *fmt, ...)
{
	va_list ap;

	if (res->error != NULL)
		return;   /* the first failure explains the rest */
	va_start(ap, fmt);
	vsnprintf(res->errbuf, sizeof(res->errbuf), fmt, ap);
	va_end(ap);
	for (char *nl; (nl = strchr(res->errbuf, '\n')) != NULL;)
		*nl = ' ';
	res->error = res->errbuf;
}

static json_t *
pcts_json(const struct pcts *p)
{
	return json_pack("{s:f, s:f, s:f, s:f, s:f, s:I}", "p50", p->p50, "p99", p->p99,
	    "p99_9", p->p999, "max", p->max, "mean", p->mean, "n", (json_int_t)p->n);
}

static void
print_json(const struct opts *o, const struct result *r)
{
	json_t *j = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:f, s:f}",
	    "mode", mode_names[o->mode], "ok", r->error == NULL,
	    "rooms", (json_int_t)o->rooms, "submitted", (json_int_t)r->submitted,
	    "committed", (json_int_t)r->committed, "in_table", (json_int_t)r->in_table,
	    "seconds", r->seconds, "events_per_s", r->events_per_s);

	json_object_set_new(j, "ack_ms", pcts_json(&r->ack));
	if (o->mode == MODE_PERSIST) {
		json_object_set_new(j, "batch_max", json_integer(o->batch_max));
		json_object_set_new(j, "batch_delay_ms", json_integer(o->batch_delay_ms));
		json_object_set_new(j, "backlog", json_integer((json_int_t)o->backlog));
		json_object_set_new(j, "rate", o->rate > 0 ? json_real(o->rate) : json_null());
		json_object_set_new(j, "batches", json_integer((json_int_t)r->batches));
		json_object_set_new(j, "rows_per_batch", json_real(r->batches ?
		    (double)r->committed / (double)r->batches : 0));
		json_object_set_new(j, "commit_ms_mean", json_real(r->commit_ms_mean));
		json_object_set_new(j, "commit_ms_max", json_real(r->commit_ms_max));
		json_object_set_new(j, "failures", json_integer((json_int_t)r->failures));
		json_object_set_new(j, "reconnects", json_integer((json_int_t)r->reconnects));
		json_object_set_new(j, "thread_cpu_pct", json_real(r->thread_cpu_pct));
	}
	json_object_set_new(j, "main_cpu_pct", json_real(r->main_cpu_pct));
	json_object_set_new(j, "backend_cpu_pct", r->backend_cpu_pct >= 0 ?
	    json_real(r->backend_cpu_pct) : json_null());
	json_object_set_new(j, "error", r->error ? json_string(r->error) : json_null());
	json_dumpf(j, stdout, JSON_COMPACT);
	putchar('\n');
	json_decref(j);
}

static void
print_line(const struct opts *o, const struct result *r)
{
	if (o->mode == MODE_PERSIST) {
		printf("persist batch-max %u delay %u ms", o->batch_max, o->batch_delay_ms);
		if (o->rate > 0)
			printf(" at %.0f/s", o->rate);
	} else
		printf("insert (one per event, autocommit)");
	printf(": %" PRIu64 " of %" PRIu64 " events committed in %.2f s = %.0f events/s; "
	    "ack ms p50 %.2f p99 %.2f p99.9 %.2f max %.2f",
	    r->committed, r->submitted, r->seconds, r->events_per_s,
	    r->ack.p50, r->ack.p99, r->ack.p999, r->ack.max);
	if (o->mode == MODE_PERSIST)
		printf("; %" PRIu64 " batches of %.0f, commit %.2f ms mean %.2f max; "
		    "thread CPU %.0f%%", r->batches,
		    r->batches ? (double)r->committed / (double)r->batches : 0,
		    r->commit_ms_mean, r->commit_ms_max, r->thread_cpu_pct);
	printf("; main CPU %.0f%%", r->main_cpu_pct);
	if (r->backend_cpu_pct >= 0)
		printf(", backend CPU %.0f%%", r->backend_cpu_pct);
	putchar('\n');
	if (r->error != NULL)
		printf("  FAILED: %s\n", r->error);
}

/* ---- the database, from this program's own connection ------------------------------ */

/* The migrations' "already exists, skipping" notices are not results. */
static void
quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static PGconn *
db_connect(const struct opts *o, const char *app, struct result *res)
{
	const char *keys[] = { "dbname", "connect_timeout", "application_name", NULL };
	const char *vals[] = { o->conninfo, "10", app, NULL };
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(c) != CONNECTION_OK) {
		fail(res, "connect: %s", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PQsetNoticeProcessor(c, quiet_notice, NULL);
	return c;
}

static int
db_exec(PGconn *c, const char *sql, struct result *res)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fail(res, "%s", PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	PQclear(r);
	return 0;
}

/*
 * The rooms reset made: exactly rooms 0..R-1, room N named room_name(N)
 * with id room_id_of(N), which every mode writes without asking.
 */
static int
db_check_rooms(PGconn *c, unsigned rooms, struct result *res)
{
	PGresult *r = PQexec(c, "SELECT id, name FROM rooms ORDER BY id");
	char name[32];
	int ok = 1;

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		fail(res, "rooms: %s", PQresultErrorMessage(r));
		PQclear(r);
		return -1;
	}
	if (PQntuples(r) != (int)rooms) {
		fail(res, "rooms: %d rows after reset, %u made", PQntuples(r), rooms);
		ok = 0;
	}
	for (int i = 0; ok && i < PQntuples(r); i++) {
		int64_t id = strtoll(PQgetvalue(r, i, 0), NULL, 10);

		room_name(name, sizeof(name), (unsigned)i);
		if (id != room_id_of((unsigned)i) || strcmp(PQgetvalue(r, i, 1), name) != 0) {
			fail(res, "rooms: %s has id %" PRId64 ", not %" PRId64 " as %s",
			    PQgetvalue(r, i, 1), id, room_id_of((unsigned)i), name);
			ok = 0;
		}
	}
	PQclear(r);
	return ok ? 0 : -1;
}

/*
 * The schema as parleyd makes it, no events, and the R rooms: every run
 * starts from the same empty table (no primary key clashes with the last
 * run) and the same rooms with the same ids (the identity restarts, so
 * room N is N + 1 and --mode rows can name it without a connection), and
 * the checkpoint puts every run at the same point of the WAL cycle rather
 * than some paying for the previous run's dirty pages.
 */
static int
db_reset(PGconn *c, unsigned rooms, struct result *res)
{
	char err[256], sql[160];

	if (migrate_apply(c, err, sizeof(err)) < 0) {
		fail(res, "migrations: %s", err);
		return -1;
	}
	/* CASCADE: whatever refers to rooms goes too (a bench database). */
	if (db_exec(c, "TRUNCATE events, rooms RESTART IDENTITY CASCADE", res) != 0)
		return -1;
	/* Made in order, so the identity hands out 1..R; checked below. */
	snprintf(sql, sizeof(sql), "INSERT INTO rooms (name) SELECT '" ROOM_PREFIX "' || g "
	    "FROM generate_series(0, %u) AS g ORDER BY g", rooms - 1);
	return db_exec(c, sql, res) != 0 ||
	    db_check_rooms(c, rooms, res) != 0 ||
	    db_exec(c, "CHECKPOINT", res) != 0 ? -1 : 0;
}

static uint64_t
db_count(PGconn *c, struct result *res)
{
	PGresult *r = PQexec(c, "SELECT count(*) FROM events");
	uint64_t n = 0;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		n = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	else
		fail(res, "count: %s", PQresultErrorMessage(r));
	PQclear(r);
	return n;
}

/* The backend serving application_name app, or 0. */
static int
db_backend_pid(PGconn *c, const char *app)
{
	const char *params[1] = { app };
	PGresult *r = PQexecParams(c, "SELECT pid FROM pg_stat_activity "
	    "WHERE application_name = $1 AND datname = current_database() LIMIT 1",
	    1, NULL, params, NULL, NULL, 0);
	int pid = 0;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		pid = atoi(PQgetvalue(r, 0, 0));
	PQclear(r);
	return pid;
}

/*
 * CPU time of a process from /proc (the backend runs as another user on
 * the same machine; stat is world-readable). -1 when it cannot be read.
 */
static int64_t
proc_cpu_ns(int pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	FILE *f;
	size_t n;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold spaces: fields count from the last ')'. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (int64_t)((ut + st) * (NS_PER_S / sysconf(_SC_CLK_TCK)));
}

static double
pct(int64_t part, int64_t whole)
{
	return whole > 0 ? 100.0 * (double)part / (double)whole : 0;
}

/* ---- persist: the real thread, fed like rooms feed it -------------------------------- */

struct fake_room {
	int64_t id;                  /* rooms.id, which records carry */
	unsigned idx;
	uint64_t rec;                /* records made, numbered as a room does */
	uint64_t seq;                /* events sequenced */
	uint64_t acked;              /* committed up to this record */
};

struct prun {
	const struct opts *o;
	struct persist *p;
	struct mailbox notices;      /* commit notices, pushed by the thread */
	struct fake_room *rooms;
	int64_t *sent_ns;            /* by event number: when it was due or sent */
	uint32_t *lat_us;            /* by event number, in commit order */
	uint64_t submitted, committed, nlat;
	int64_t t0, t_last;
};

/* cfg.post: the thread hands us a notice as it would hand a worker one. */
static void
notice_post(void *ctx, unsigned w, struct mailbox_msg *m)
{
	struct prun *r = ctx;

	(void)w;
	mailbox_push(&r->notices, m);
}

/* Room ro, record rec: its event number (records of a room are its events). */
static uint64_t
event_of(const struct prun *r, const struct fake_room *ro, uint64_t rec)
{
	return (rec - 1) * r->o->rooms + ro->idx;
}

static void
submit_one(struct prun *r, int64_t due_ns)
{
	struct fake_room *ro = &r->rooms[r->submitted % r->o->rooms];
	struct persist_rec *rec;
	struct row w;

	row_of_event(&w, r->submitted, r->o->rooms);
	rec = persist_rec_new(PERSIST_EVENT, w.user, w.has_body ? w.body : NULL,
	    w.body_len, w.emoji, w.client_id);
	rec->type = w.type;
	rec->add = w.add;
	rec->seq = ++ro->seq;
	rec->target = w.target;
	rec->ts = wall_ms();
	rec->room = (struct room *)ro;   /* a key for the thread, never read */
	rec->home = 0;
	rec->rec = ++ro->rec;
	rec->room_id = ro->id;
	r->sent_ns[r->submitted++] = due_ns;
	persist_submit(r->p, rec);
}

/*
 * Take every notice: each acks its room's records up to rec. The eventfd
 * is read only when poll said so (signalled): a read per loop would be a
 * system call per few events at 10,000/s, for nothing.
 */
static void
take_notices(struct prun *r, int signalled)
{
	struct mailbox_msg *m;
	int64_t t;

	if (signalled)
		mailbox_clear_wakeup(&r->notices);
	if (!mailbox_pending(&r->notices))
		return;
	t = now_ns();
	while ((m = mailbox_take(&r->notices)) != NULL) {
		struct persist_committed *c = (struct persist_committed *)m;
		struct fake_room *ro = (struct fake_room *)c->room;

		for (uint64_t k = ro->acked + 1; k <= c->rec; k++) {
			int64_t d = t - r->sent_ns[event_of(r, ro, k)];

			r->lat_us[r->nlat++] = (uint32_t)(d > 0 ? d / 1000 : 0);
		}
		if (c->rec > ro->acked) {
			r->committed += c->rec - ro->acked;
			ro->acked = c->rec;
		}
		free(m);
	}
	r->t_last = t;
}

/* Submit what is due (all of it without --rate), a chunk at a time. */
static int
submit_due(struct prun *r, int64_t now, uint64_t limit)
{
	const struct opts *o = r->o;
	int n = 0;

	while (r->submitted < limit && n < SUBMIT_CHUNK) {
		int64_t due = o->rate > 0 ?
		    r->t0 + (int64_t)((double)r->submitted * NS_PER_S / o->rate) : now;

		if (due > now)
			break;
		if (persist_reserve(r->p) != 0)
			return -1;   /* the backlog is full: wait for commits */
		submit_one(r, due);
		n++;
	}
	return 0;
}

/* Wait for a notice, or until the next paced event is due; 1: notified. */
static int
wait_notice(struct prun *r, int64_t now, uint64_t limit, int blocked)
{
	struct pollfd pfd = { r->notices.efd, POLLIN, 0 };
	struct timespec ts;
	int64_t left = 100 * 1000000LL;   /* a look at the clock now and then */

	if (r->submitted < limit && !blocked) {
		if (r->o->rate <= 0)
			return 0;   /* more to submit right away */
		left = r->t0 + (int64_t)((double)r->submitted * NS_PER_S / r->o->rate) - now;
	} else if (blocked)
		left = 1000000;   /* the thread frees places just after it posts */
	if (left <= 0)
		return 0;
	ts.tv_sec = left / NS_PER_S;
	ts.tv_nsec = left % NS_PER_S;
	return ppoll(&pfd, 1, &ts, NULL) > 0;
}

static int
wait_ready(struct persist *p, struct result *res)
{
	int64_t until = now_ns() + READY_NS;

	while (!persist_ready(p)) {
		if (now_ns() > until || interrupted) {
			fail(res, "%s", "the persistence thread did not connect");
			return -1;
		}
		usleep(10000);
	}
	return 0;
}

static void
persist_loop(struct prun *r, struct result *res)
{
	const struct opts *o = r->o;
	uint64_t limit = o->events;
	int64_t last_progress = now_ns(), end_submit = o->duration > 0 ?
	    r->t0 + (int64_t)(o->duration * NS_PER_S) : INT64_MAX;
	int signalled = 1;

	while (r->committed < r->submitted || r->submitted < limit) {
		uint64_t before = r->committed;
		int64_t now = now_ns();
		int blocked = 0;

		if (now >= end_submit || interrupted)
			limit = r->submitted;   /* time is up: stop making events */
		if (r->submitted < limit)
			blocked = submit_due(r, now, limit) != 0;
		take_notices(r, signalled);
		if (r->committed != before)
			last_progress = now;
		else if (now - last_progress > STALL_NS) {
			fail(res, "%s", "no commit for 30 s (database down?)");
			return;
		}
		if (interrupted && r->committed < r->submitted &&
		    now - last_progress > 2 * NS_PER_S) {
			fail(res, "%s", "interrupted");
			return;
		}
		signalled = wait_notice(r, now_ns(), limit, blocked);
	}
}

static int
run_persist(const struct opts *o, struct result *res)
{
	struct persist_config cfg;
	struct prun r;
	clockid_t tclk = CLOCK_THREAD_CPUTIME_ID;
	PGconn *c;
	int64_t thr0 = 0, main0, be0 = -1, be1;
	int bpid;

	memset(&r, 0, sizeof(r));
	r.o = o;
	r.notices.efd = -1;
	if ((c = db_connect(o, "persist-bench", res)) == NULL)
		return -1;
	if (db_reset(c, o->rooms, res) != 0)
		goto out;
	if (mailbox_init(&r.notices) != 0) {
		fail(res, "mailbox: %s", strerror(errno));
		goto out;
	}
	r.rooms = xcalloc(o->rooms, sizeof(*r.rooms));
	for (unsigned i = 0; i < o->rooms; i++) {
		r.rooms[i].id = room_id_of(i);
		r.rooms[i].idx = i;
	}
	r.sent_ns = xmalloc(o->events * sizeof(*r.sent_ns));
	r.lat_us = xmalloc(o->events * sizeof(*r.lat_us));

	memset(&cfg, 0, sizeof(cfg));
	cfg.conninfo = o->conninfo;
	cfg.batch_max = o->batch_max;
	cfg.batch_delay_ms = o->batch_delay_ms;
	cfg.backlog = o->backlog;
	cfg.committed_kind = NOTICE_KIND;
	cfg.post = notice_post;
	cfg.ctx = &r;
	if ((r.p = persist_new(&cfg)) == NULL) {
		fail(res, "%s", "persist_new failed");
		goto out;
	}
	if (persist_start(r.p) != 0) {
		fail(res, "%s", "persist_start failed");
		goto out;
	}
	/* Connecting and migrating are not what we measure. */
	if (wait_ready(r.p, res) != 0)
		goto stop;
	bpid = db_backend_pid(c, "parleyd-persist");
	be0 = proc_cpu_ns(bpid);
	if (pthread_getcpuclockid(r.p->thread, &tclk) == 0)
		thr0 = cpu_ns(tclk);
	main0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
	r.t0 = r.t_last = now_ns();

	persist_loop(&r, res);

	res->seconds = (double)(r.t_last - r.t0) / NS_PER_S;
	be1 = proc_cpu_ns(bpid);
	res->backend_cpu_pct = be0 >= 0 && be1 >= 0 ? pct(be1 - be0, r.t_last - r.t0) : -1;
	res->thread_cpu_pct = thr0 ? pct(cpu_ns(tclk) - thr0, r.t_last - r.t0) : 0;
	res->main_cpu_pct = pct(cpu_ns(CLOCK_THREAD_CPUTIME_ID) - main0, r.t_last - r.t0);
stop:
	/* Whatever was submitted is written before the count, unless the
	 * run failed: then the database may be gone and nobody should wait. */
	persist_stop(r.p, res->error != NULL);
	res->batches = ck_pr_load_64(&r.p->stats.batches);
	res->failures = ck_pr_load_64(&r.p->stats.failures);
	res->reconnects = ck_pr_load_64(&r.p->stats.reconnects);
	if (res->batches > 0)
		res->commit_ms_mean = ck_pr_load_64(&r.p->stats.commit_us_total) /
		    1e3 / (double)res->batches;
	res->commit_ms_max = ck_pr_load_64(&r.p->stats.commit_us_max) / 1e3;
	take_notices(&r, 1);
	res->submitted = r.submitted;
	res->committed = r.committed;
	res->events_per_s = res->seconds > 0 ? (double)r.committed / res->seconds : 0;
	pcts_of(r.lat_us, r.nlat, &res->ack);
out:
	if (res->error == NULL || PQstatus(c) == CONNECTION_OK)
		res->in_table = db_count(c, res);
	PQfinish(c);
	if (r.p != NULL)
		persist_free(r.p);
	if (r.notices.efd >= 0)
		mailbox_destroy(&r.notices);
	free(r.rooms);
	free(r.sent_ns);
	free(r.lat_us);
	return res->error == NULL ? 0 : -1;
}

/* ---- insert: one autocommit INSERT per event ---------------------------------------- */

static const char insert_sql[] =
    "INSERT INTO events (room_id, seq, kind, user_name, target, body, emoji, add, "
    "client_id, ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

static int
insert_one(PGconn *c, const struct row *w, struct result *res)
{
	char room_id[24], seq[24], target[24], ts[24];
	const char *v[10];
	PGresult *r;
	int ok;

	snprintf(room_id, sizeof(room_id), "%" PRId64, room_id_of(w->room));
	snprintf(seq, sizeof(seq), "%" PRIu64, w->seq);
	snprintf(target, sizeof(target), "%" PRId64, w->target);
	snprintf(ts, sizeof(ts), "%" PRId64, wall_ms());
	v[0] = room_id;
	v[1] = seq;
	v[2] = type_names[w->type];
	v[3] = w->user;
	v[4] = w->type == PERSIST_MESSAGE ? NULL : target;
	v[5] = w->has_body ? w->body : NULL;
	v[6] = w->emoji;
	v[7] = w->type == PERSIST_REACTION ? "t" : NULL;
	v[8] = w->client_id;
	v[9] = ts;
	r = PQexecPrepared(c, "ins", 10, v, NULL, NULL, 0);
	if (!(ok = PQresultStatus(r) == PGRES_COMMAND_OK))
		fail(res, "insert: %s", PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : -1;
}

static int
run_insert(const struct opts *o, struct result *res)
{
	uint32_t *lat = xmalloc(o->events * sizeof(*lat));
	int64_t t0, t, end, main0, be0, be1;
	uint64_t i = 0;
	PGresult *pr;
	PGconn *c;

	if ((c = db_connect(o, "persist-bench-insert", res)) == NULL) {
		free(lat);
		return -1;
	}
	if (db_reset(c, o->rooms, res) != 0)
		goto out;
	pr = PQprepare(c, "ins", insert_sql, 10, NULL);
	if (PQresultStatus(pr) != PGRES_COMMAND_OK)
		fail(res, "prepare: %s", PQresultErrorMessage(pr));
	PQclear(pr);
	if (res->error != NULL)
		goto out;
	be0 = proc_cpu_ns(PQbackendPID(c));
	main0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
	t0 = t = now_ns();
	end = o->duration > 0 ? t0 + (int64_t)(o->duration * NS_PER_S) : INT64_MAX;
	for (; i < o->events && t < end && !interrupted; i++) {
		struct row w;
		int64_t t1;

		row_of_event(&w, i, o->rooms);
		if (insert_one(c, &w, res) != 0)
			break;
		t1 = now_ns();
		lat[i] = (uint32_t)((t1 - t) / 1000);
		t = t1;
	}
	res->submitted = res->committed = i;
	res->seconds = (double)(t - t0) / NS_PER_S;
	res->events_per_s = res->seconds > 0 ? (double)i / res->seconds : 0;
	be1 = proc_cpu_ns(PQbackendPID(c));
	res->backend_cpu_pct = be0 >= 0 && be1 >= 0 ? pct(be1 - be0, t - t0) : -1;
	res->main_cpu_pct = pct(cpu_ns(CLOCK_THREAD_CPUTIME_ID) - main0, t - t0);
	pcts_of(lat, i, &res->ack);
out:
	res->in_table = db_count(c, res);
	PQfinish(c);
	free(lat);
	return res->error == NULL ? 0 : -1;
}

/* ---- rows and reset ---------------------------------------------------------------- */

static int
run_rows(const struct opts *o)
{
	int64_t ts = wall_ms();
	struct row w;

	for (uint64_t i = 0; i < o->events; i++) {
		row_of_event(&w, i, o->rooms);
		copy_row(stdout, &w, ts + (int64_t)(i / 1000));
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "persist-bench: writing rows: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

static int
run_reset(const struct opts *o)
{
	struct result res;
	PGconn *c;
	int rc;

	memset(&res, 0, sizeof(res));
	if ((c = db_connect(o, "persist-bench", &res)) == NULL)
		rc = -1;
	else {
		rc = db_reset(c, o->rooms, &res);
		PQfinish(c);
	}
	if (rc != 0)
		fprintf(stderr, "persist-bench: reset: %s\n", res.error);
	return rc;
}

/* ---- options ------------------------------------------------------------------------ */

static void
usage(FILE *f)
{
	fprintf(f,
"usage: persist-bench --mode MODE [options]\n"
"\n"
"Durable events per second of parley's persistence thread, next to one\n"
"INSERT per event; the rows are the same in every mode (chat events: 85%%\n"
"messages of 60-100 bytes, 10%% reactions, 5%% edits, a client id on each).\n"
"Modes:\n"
"  persist  the real persistence thread, fed by R fake rooms as rooms feed\n"
"           it; events/s from first submit to last commit notice, and\n"
"           submit-to-notice (ack) latency per event\n"
"  insert   one autocommit INSERT per event, prepared; per-INSERT latency\n"
"  rows     the same rows as COPY text on stdout (for psql \\copy)\n"
"  reset    apply the schema, TRUNCATE events and rooms, make the R rooms\n"
"           (ids 1..R, as rows writes them), CHECKPOINT\n"
"persist and insert start with reset and count the table at the end.\n"
"\n"
"      --mode MODE          persist, insert, rows or reset\n"
"      --conninfo C         libpq conninfo or URI of the database\n"
"  -n, --events N           events (100000)\n"
"  -r, --rooms N            rooms, events dealt in turn (100)\n"
"      --batch-max N        persist: the thread's batch size (1000)\n"
"      --batch-delay MS     persist: the thread's batch delay (2)\n"
"      --backlog N          persist: records held at most (100000)\n"
"      --rate R             persist: submit R events/s open-loop; latency is\n"
"                           counted from when each event was due (0: as fast\n"
"                           as the backlog allows, latency is then queueing)\n"
"  -d, --duration S         persist, insert: stop submitting after S seconds\n"
"                           (0: never); events/s counts what was committed\n"
"      --json               one JSON object instead of the line\n"
"  -q, --quiet              no log lines from the thread below errors\n"
"  -h, --help               this help\n"
"\n"
"Exit status: 0 every event committed, 1 an error or a loss, 2 bad usage.\n");
}

enum {
	OPT_MODE = 256, OPT_CONNINFO, OPT_BATCH_MAX, OPT_BATCH_DELAY, OPT_BACKLOG,
	OPT_RATE, OPT_JSON,
};

static const struct option longopts[] = {
	{ "mode", required_argument, NULL, OPT_MODE },
	{ "conninfo", required_argument, NULL, OPT_CONNINFO },
	{ "events", required_argument, NULL, 'n' },
	{ "rooms", required_argument, NULL, 'r' },
	{ "batch-max", required_argument, NULL, OPT_BATCH_MAX },
	{ "batch-delay", required_argument, NULL, OPT_BATCH_DELAY },
	{ "backlog", required_argument, NULL, OPT_BACKLOG },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "duration", required_argument, NULL, 'd' },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int
parse_u64(const char *name, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || *s == '-' || v < lo || v > hi) {
		fprintf(stderr, "persist-bench: --%s wants a number in %llu-%llu, not '%s'\n",
		    name, (unsigned long long)lo, (unsigned long long)hi, s);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_double(const char *name, const char *s, double *out)
{
	char *end;

	errno = 0;
	*out = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(*out) || *out < 0) {
		fprintf(stderr, "persist-bench: --%s wants a number >= 0, not '%s'\n", name, s);
		return -1;
	}
	return 0;
}

static int
parse_one(struct opts *o, int ch, const char *arg)
{
	uint64_t v;
	size_t i;

	switch (ch) {
	case OPT_MODE:
		for (i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
			if (strcmp(arg, mode_names[i]) == 0) {
				o->mode = (enum mode)i;
				return 0;
			}
		fprintf(stderr, "persist-bench: unknown mode '%s'\n", arg);
		return -1;
	case OPT_CONNINFO:
		o->conninfo = arg;
		return 0;
	case 'n':
		return parse_u64("events", arg, 1, EVENTS_MAX, &o->events);
	case 'r':
		if (parse_u64("rooms", arg, 1, 1000000, &v) != 0)
			return -1;
		o->rooms = (unsigned)v;
		return 0;
	case OPT_BATCH_MAX:
		if (parse_u64("batch-max", arg, 1, 100000, &v) != 0)
			return -1;
		o->batch_max = (unsigned)v;
		return 0;
	case OPT_BATCH_DELAY:
		if (parse_u64("batch-delay", arg, 0, 10000, &v) != 0)
			return -1;
		o->batch_delay_ms = (unsigned)v;
		return 0;
	case OPT_BACKLOG:
		return parse_u64("backlog", arg, 1, 100000000, &o->backlog);
	case OPT_RATE:
		return parse_double("rate", arg, &o->rate);
	case 'd':
		return parse_double("duration", arg, &o->duration);
	case OPT_JSON:
		o->json = 1;
		return 0;
	case 'q':
		o->quiet = 1;
		return 0;
	}
	return -1;
}

int
main(int argc, char **argv)
{
	struct opts o;
	struct result res;
	int ch, mode_set = 0, rc;

	memset(&o, 0, sizeof(o));
	o.batch_max = 1000;
	o.batch_delay_ms = 2;
	o.backlog = 100000;
	o.events = 100000;
	o.rooms = 100;
	while ((ch = getopt_long(argc, argv, "n:r:d:qh", longopts, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			return EXIT_OK;
		}
		if (ch == '?' || parse_one(&o, ch, optarg) != 0)
			return EXIT_USAGE;
		mode_set |= ch == OPT_MODE;
	}
	if (optind < argc || !mode_set) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (o.conninfo == NULL && o.mode != MODE_ROWS) {
		fprintf(stderr, "persist-bench: --mode %s needs --conninfo\n", mode_names[o.mode]);
		return EXIT_USAGE;
	}
	if (o.mode == MODE_ROWS)
		return run_rows(&o) == 0 ? EXIT_OK : EXIT_FAIL;
	if (o.mode == MODE_RESET)
		return run_reset(&o) == 0 ? EXIT_OK : EXIT_FAIL;

	log_set_level(o.quiet ? LOG_ERROR : LOG_WARN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	memset(&res, 0, sizeof(res));
	res.backend_cpu_pct = -1;
	if (o.mode == MODE_PERSIST)
		rc = run_persist(&o, &res);
	else
		rc = run_insert(&o, &res);
	/* Every submitted event must be acked and in the table, once. */
	if (rc == 0 && res.committed != res.submitted)
		fail(&res, "%" PRIu64 " events submitted but never acked",
		    res.submitted - res.committed);
	if (res.error == NULL && res.in_table != res.committed)
		fail(&res, "the table holds %" PRIu64 " rows for %" PRIu64 " acked events",
		    res.in_table, res.committed);
	if (res.error == NULL && res.failures > 0)
		fail(&res, "%s", "the thread logged failed batches");
	if (o.json)
		print_json(&o, &res);
	else
		print_line(&o, &res);
	return res.error == NULL ? EXIT_OK : EXIT_FAIL;
}
