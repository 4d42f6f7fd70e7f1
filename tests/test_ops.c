/*
 * test_ops.c - integration tests of what operating parleyd needs, against
 * the real binary: systemd notifications (sd_notify(3) without
 * libsystemd), SIGHUP reload of the config file, --log-file and its
 * reopening for logrotate, and --check-config.
 *
 * Suites (each test starts its own parleyd and stops it; SIGTERM must give
 * exit status 0):
 *
 *   notify        NOTIFY_SOCKET (a path) and WATCHDOG_USEC=400000: READY=1
 *                 with MAINPID, STATUS, WATCHDOG=1 about every 200 ms;
 *                 SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1;
 *                 SIGTERM: STOPPING=1. The abstract form "@name", with a
 *                 WATCHDOG_PID naming another process: no WATCHDOG=1.
 *                 --db that nobody answers: /healthz 200 but no READY=1;
 *                 a private PostgreSQL (tests/pg-private.sh) paused at
 *                 start: READY=1 only once it is resumed.
 *   reload        live keys applied on SIGHUP (rate on an open connection,
 *                 max-connections: 503 beyond it), a restart-only key
 *                 (threads) logged at warn and kept, an invalid file refused
 *                 with everything kept; the JWT secret file reread (tokens
 *                 signed with the new secret accepted in hello and in the
 *                 upgrade, the old refused; a missing secret refused, kept).
 *   log file      log-file (in the config file): the log goes there, not to
 *                 standard error; rename it and SIGHUP: a new file gets the
 *                 new lines, the renamed one does not, also when the reload
 *                 itself is refused; a new log-file path applies on SIGHUP.
 *   check-config  the effective settings printed as a config file (which
 *                 parses again to the same), the command line winning over
 *                 the file, a database password hidden; bad files and an
 *                 unreadable secret: exit 2 with the reason on stderr.
 *
 * Every wait is bounded. Temporary files are under /tmp and removed by the
 * test that made them, failed or not.
 *
 * PARLEY_TEST_SUITES=<substring> runs only the suites whose name contains it.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <jansson.h>

#include "harness.h"
#include "jwt.h"
#include "wsclient.h"

#define HOST "127.0.0.1"
#define T_IO 3000               /* ms: one ordinary exchange */
#define T_LOG 3000              /* ms: a line to reach the log */
#define MAX_TMP 16
#define NOTES_MAX 1024

/* The datagrams parleyd sent to our NOTIFY_SOCKET, in order of arrival. */
struct notes {
	int fd;                 /* -1 when closed */
	int n;
	char *msg[NOTES_MAX];   /* malloc'd, NUL-terminated */
};

static struct server srv;       /* the current test's parleyd */
static struct notes nt = { -1, 0, { NULL } };
static char tmp_paths[MAX_TMP][PATH_MAX];   /* removed by test_end */
static int ntmp;
static struct pg_cluster pg;    /* a private cluster while one runs */

/* ---- temporary files ------------------------------------------------------ */

static void
tmp_track(const char *path)
{
	size_t len = strlen(path);

	if (ntmp < MAX_TMP && len < sizeof(tmp_paths[0]))
		memcpy(tmp_paths[ntmp++], path, len + 1);
}

/* A new empty file /tmp/parley-ops-<tag>-XXXXXX, removed by test_end. */
static int
tmp_file(char *path, size_t n, const char *tag)
{
	int fd;

	snprintf(path, n, "/tmp/parley-ops-%s-XXXXXX", tag);
	if ((fd = mkstemp(path)) < 0)
		return -1;
	close(fd);
	tmp_track(path);
	return 0;
}

/* Replace the content of path (not atomically: nobody reads it meanwhile). */
static int
write_file(const char *path, const char *content)
{
	FILE *f = fopen(path, "w");
	int ok;

	if (f == NULL)
		return -1;
	ok = fputs(content, f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

/* The whole file, malloc'd and NUL-terminated; NULL when unreadable. */
static char *
slurp(const char *path)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap), *nb;
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL || buf == NULL) {
		if (f != NULL)
			fclose(f);
		free(buf);
		return NULL;
	}
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (cap - len < 4096) {
			if ((nb = realloc(buf, cap * 2)) == NULL)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	fclose(f);
	buf[len] = '\0';
	return buf;
}

static int
count_in(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; p != NULL && (p = strstr(p, needle)) != NULL;
	    p += strlen(needle))
		n++;
	return n;
}

/* Occurrences of needle in the file; -1 when it cannot be read. */
static int
file_count(const char *path, const char *needle)
{
	char *t = slurp(path);
	int n = t != NULL ? count_in(t, needle) : -1;

	free(t);
	return n;
}

static int
nonneg(int n)
{
	return n > 0 ? n : 0;
}

/* Wait up to timeout_ms for at least n occurrences; returns the last count. */
static int
file_wait(const char *path, const char *needle, int n, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	int got;

	for (;;) {
		got = file_count(path, needle);
		if (got >= n || wsc_now_ms() >= deadline)
			return got;
		wsc_sleep_ms(20);
	}
}

/* ---- the notification socket ------------------------------------------------- */

static void
notes_close(struct notes *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
	for (int i = 0; i < n->n; i++)
		free(n->msg[i]);
	n->n = 0;
}

/*
 * Bind a datagram socket for parleyd to notify: a file under /tmp, or a
 * name in the abstract namespace. env gets the NOTIFY_SOCKET value.
 */
static int
notes_open(struct notes *n, int abstract, char *env, size_t envsz)
{
	struct sockaddr_un sa;
	socklen_t sl;
	char path[sizeof(sa.sun_path)];

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (abstract) {
		snprintf(path, sizeof(path), "parley-ops-%d-%lld", (int)getpid(),
		    (long long)wsc_now_ms());
		memcpy(sa.sun_path + 1, path, strlen(path));
		sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
		    strlen(path));
		snprintf(env, envsz, "@%s", path);
	} else {
		/* A fresh name: mkstemp makes it, bind needs it gone. */
		if (tmp_file(path, sizeof(path), "notify") != 0)
			return -1;
		unlink(path);
		memcpy(sa.sun_path, path, strlen(path) + 1);
		sl = (socklen_t)sizeof(sa);
		snprintf(env, envsz, "%s", path);
	}
	n->n = 0;
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (n->fd < 0 || bind(n->fd, (struct sockaddr *)&sa, sl) < 0) {
		fprintf(stderr, "[ops] notify socket %s: %s\n", env, strerror(errno));
		notes_close(n);
		return -1;
	}
	return 0;
}

/* Receive datagrams until deadline (at least once, without waiting). */
static void
notes_pump(struct notes *n, int64_t deadline)
{
	char buf[4096];
	ssize_t r;

	for (;;) {
		while ((r = recv(n->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) >= 0) {
			buf[r] = '\0';
			if (n->n < NOTES_MAX)
				n->msg[n->n++] = strdup(buf);
		}
		if (wsc_now_ms() >= deadline)
			return;
		(void)wsc_wait_fd(n->fd, POLLIN, deadline);
	}
}

/* The value of KEY in a notification ("KEY=value" lines); 1 if present. */
static int
note_get(const char *msg, const char *key, char *val, size_t valsz)
{
	size_t kl = strlen(key);
	const char *p = msg, *nl;
	size_t ll;

	while (p != NULL && *p != '\0') {
		nl = strchr(p, '\n');
		ll = nl != NULL ? (size_t)(nl - p) : strlen(p);
		if (ll > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
			snprintf(val, valsz, "%.*s", (int)(ll - kl - 1), p + kl + 1);
			return 1;
		}
		p = nl != NULL ? nl + 1 : NULL;
	}
	return 0;
}

/* The first message from index from on with KEY (=value when not NULL); -1. */
static int
notes_find(const struct notes *n, int from, const char *key, const char *value)
{
	char v[1024];

	for (int i = from; i < n->n; i++)
		if (note_get(n->msg[i], key, v, sizeof(v)) &&
		    (value == NULL || strcmp(v, value) == 0))
			return i;
	return -1;
}

static int
notes_count(const struct notes *n, int from, const char *key, const char *value)
{
	int c = 0;

	for (int i = from; i >= 0 && i < n->n; i++)
		if ((i = notes_find(n, i, key, value)) >= 0)
			c++;
		else
			break;
	return c;
}

/* Wait up to timeout_ms for notes_find to succeed; its index, or -1. */
static int
notes_wait(struct notes *n, int from, const char *key, const char *value,
    int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	int i;

	for (;;) {
		if ((i = notes_find(n, from, key, value)) >= 0)
			return i;
		if (wsc_now_ms() >= deadline)
			return -1;
		notes_pump(n, wsc_now_ms() + 50 < deadline ? wsc_now_ms() + 50 :
		    deadline);
	}
}

static void
notes_dump(const struct notes *n, const char *why)
{
	fprintf(stderr, "[ops] notifications (%s), %d:\n", why, n->n);
	for (int i = 0; i < n->n; i++)
		fprintf(stderr, "  %3d: %s\n", i, n->msg[i]);
}

/* "MAINPID" of message i equals pid. */
static int
note_is_pid(const struct notes *n, int i, pid_t pid)
{
	char v[64];

	return i >= 0 && note_get(n->msg[i], "MAINPID", v, sizeof(v)) &&
	    strtol(v, NULL, 10) == (long)pid;
}

/* Environment variables a test sets for the server only. */
static void
env_clear(void)
{
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

/* ---- WebSocket clients --------------------------------------------------------- */

/*
 * The next text frame as a JSON object; pings answered, pongs skipped.
 * NULL on timeout, close (*close_code set when not NULL) or a bad frame.
 */
static json_t *
recv_json(struct wsc *c, int timeout_ms, int *close_code)
{
	struct wsc_frame f;
	json_t *j;

	if (close_code != NULL)
		*close_code = -1;
	if (wsc_recv_data(c, &f, timeout_ms) != 1)
		return NULL;
	if (f.opcode == 8) {
		if (close_code != NULL)
			*close_code = f.close_code;
		return NULL;
	}
	if (f.opcode != 1)
		return NULL;
	j = json_loadb((const char *)f.payload, f.len, 0, NULL);
	if (j != NULL && json_is_object(j))
		return j;
	json_decref(j);
	return NULL;
}

/* Skip frames until one of this type (returned), else NULL (dumped). */
static json_t *
expect_type(struct wsc *c, const char *type)
{
	int64_t deadline = wsc_now_ms() + T_IO;
	int code;
	json_t *j;
	char *d;

	for (;;) {
		j = recv_json(c, wsc_remaining_ms(deadline), &code);
		if (j == NULL) {
			fprintf(stderr, "[ops] expected '%s', got nothing (close %d)\n",
			    type, code);
			return NULL;
		}
		if (jstreq(j, "type", type))
			return j;
		if (jstreq(j, "type", "error")) {
			d = json_dumps(j, JSON_COMPACT);
			fprintf(stderr, "[ops] expected '%s', got %s\n", type, d);
			free(d);
			json_decref(j);
			return NULL;
		}
		json_decref(j);   /* presence and the like */
	}
}

/* Connect, anonymous hello as name, join room. 0, or -1. */
static int
ws_enter(struct wsc *c, int port, const char *name, const char *room)
{
	json_t *j;
	int ok;

	if (wsc_connect(c, HOST, port, NULL, "/ws", NULL, 0, T_IO) != 101)
		return -1;
	wsc_send_textf(c, "{\"type\":\"hello\",\"name\":\"%s\"}", name);
	j = expect_type(c, "welcome");
	ok = j != NULL && jstreq(j, "user", name);
	json_decref(j);
	if (!ok)
		return -1;
	wsc_send_textf(c, "{\"type\":\"join\",\"room\":\"%s\",\"ref\":\"j\"}", room);
	j = expect_type(c, "joined");
	ok = j != NULL && jstreq(j, "room", room);
	json_decref(j);
	return ok ? 0 : -1;
}

/*
 * n sends to room in one go, then read until each has its answer: an ack,
 * or an error (rate_limited counted in *limited, others in *other).
 * 0 when every send was answered, else -1.
 */
static int
send_burst(struct wsc *c, const char *room, int n, int *acked, int *limited,
    int *other)
{
	int64_t deadline = wsc_now_ms() + T_IO;
	static int round;
	int answered = 0;
	char ref[32];
	json_t *j;

	*acked = *limited = *other = 0;
	round++;
	for (int i = 0; i < n; i++)
		if (wsc_send_textf(c, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"b%d\","
		    "\"ref\":\"r%d-%d\"}", room, i, round, i) < 0)
			return -1;
	snprintf(ref, sizeof(ref), "r%d-", round);
	while (answered < n) {
		const char *r;

		if ((j = recv_json(c, wsc_remaining_ms(deadline), NULL)) == NULL)
			return -1;
		r = jstr(j, "ref");
		if (r != NULL && strncmp(r, ref, strlen(ref)) == 0) {
			if (jstreq(j, "type", "ack"))
				(*acked)++;
			else if (jstreq(j, "type", "error") &&
			    jstreq(j, "code", "rate_limited"))
				(*limited)++;
			else
				(*other)++;
			answered++;
		}
		json_decref(j);
	}
	return 0;
}

/*
 * A hello with token on a new connection. 1: welcome as user; 0: refused
 * (error unauthorized, then close 1008); -1: anything else.
 */
static int
hello_token(int port, const char *token, const char *user)
{
	struct wsc c;
	int code, rc = -1;
	json_t *j;

	if (wsc_connect(&c, HOST, port, NULL, "/ws", NULL, 0, T_IO) != 101) {
		wsc_close(&c);
		return -1;
	}
	wsc_send_textf(&c, "{\"type\":\"hello\",\"token\":\"%s\",\"ref\":\"h\"}", token);
	j = recv_json(&c, T_IO, &code);
	if (j != NULL && jstreq(j, "type", "welcome"))
		rc = jstreq(j, "user", user) ? 1 : -1;
	else if (j != NULL && jstreq(j, "type", "error") &&
	    jstreq(j, "code", "unauthorized"))
		rc = wsc_recv_close(&c, T_IO) == 1008 ? 0 : -1;
	json_decref(j);
	wsc_close(&c);
	return rc;
}

/* The status of an upgrade to /ws?token=... (101 or 401 expected). */
static int
upgrade_token(int port, const char *token)
{
	char path[2048];
	struct wsc c;
	int st;

	snprintf(path, sizeof(path), "/ws?token=%s", token);
	st = wsc_connect(&c, HOST, port, NULL, path, NULL, 0, T_IO);
	wsc_close(&c);
	return st;
}

/* ---- per test setup and cleanup ------------------------------------------------- */

/* A sanitizer build reports on standard error (or the log file): none expected. */
static void
check_no_report(const char *path)
{
	char *t = slurp(path);
	int bad = t != NULL && (strstr(t, "runtime error:") != NULL ||
	    strstr(t, "Sanitizer") != NULL);

	if (bad)
		fprintf(stderr, "[ops] sanitizer report in %s:\n%s\n", path, t);
	CU_ASSERT(!bad);
	free(t);
}


static void
test_begin(void)
{
	memset(&srv, 0, sizeof(srv));
	ntmp = 0;
}

/* Whatever the test left: the server, the socket, the files, the cluster. */
static void
test_end(void)
{
	int st;

	env_clear();
	if (srv.pid > 0) {
		st = server_stop(&srv, SIGTERM, 5000);
		if (st != 0) {
			fprintf(stderr, "[ops] exit status at cleanup: %d\n", st);
			server_dump_log(&srv, "cleanup");
		}
	}
	if (srv.log[0] != '\0')
		check_no_report(srv.log);
	server_remove_log(&srv);
	notes_close(&nt);
	for (int i = 0; i < ntmp; i++)
		unlink(tmp_paths[i]);
	ntmp = 0;
	(void)pg_cluster_stop(&pg);
}

/* Start parleyd with the environment set for it only. 0, or -1. */
static int
start_env(const char *const args[], const char *notify, const char *wd_usec,
    const char *wd_pid)
{
	int st;

	if (notify != NULL)
		setenv("NOTIFY_SOCKET", notify, 1);
	if (wd_usec != NULL)
		setenv("WATCHDOG_USEC", wd_usec, 1);
	if (wd_pid != NULL)
		setenv("WATCHDOG_PID", wd_pid, 1);
	st = server_start(&srv, args);
	env_clear();
	return st;
}

/* SIGTERM: STOPPING=1 comes, and the exit status is 0. */
static void
stop_notified(void)
{
	int from = nt.n, i, st;

	CU_ASSERT(srv.pid > 0);
	if (srv.pid <= 0)
		return;
	kill(srv.pid, SIGTERM);
	i = notes_wait(&nt, from, "STOPPING", "1", T_IO);
	CU_ASSERT(i >= 0);
	st = server_stop(&srv, 0, 5000);
	CU_ASSERT_EQUAL(st, 0);
	if (i < 0 || st != 0) {
		notes_dump(&nt, "stop");
		server_dump_log(&srv, "stop");
	}
}

static uint64_t
mono_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- notify ------------------------------------------------------------------------ */

static void
test_notify_path(void)
{
	static const char *const args[] = { "-t", "2", NULL };
	char env[128], v[1024];
	int i, r, from, wd;
	uint64_t mono, now;

	test_begin();
	REQUIRE(notes_open(&nt, 0, env, sizeof(env)) == 0);
	REQUIRE(start_env(args, env, "400000", NULL) == 0);

	/* READY=1 with our MAINPID in the same datagram, then a status line. */
	i = notes_wait(&nt, 0, "READY", "1", T_IO);
	CU_ASSERT(i >= 0);
	CU_ASSERT(note_is_pid(&nt, i, srv.pid));
	r = notes_wait(&nt, 0, "STATUS", NULL, T_IO);
	CU_ASSERT(r >= 0 && note_get(nt.msg[r], "STATUS", v, sizeof(v)) &&
	    strstr(v, "0 connections") != NULL &&
	    strstr(v, "database not used") != NULL);
	CU_ASSERT_EQUAL(notes_count(&nt, 0, "READY", "1"), 1);
	REQUIRE(i >= 0);

	/* WATCHDOG=1 at half of 400 ms, on a 250 ms tick: about 6 in 1.5 s. */
	notes_pump(&nt, wsc_now_ms());
	from = nt.n;
	notes_pump(&nt, wsc_now_ms() + 1500);
	wd = notes_count(&nt, from, "WATCHDOG", "1");
	fprintf(stderr, "[ops] %d WATCHDOG=1 in 1.5 s\n", wd);
	CU_ASSERT(wd >= 3 && wd <= 10);

	/* SIGHUP: RELOADING=1 with the monotonic clock now, then READY=1. */
	from = nt.n;
	kill(srv.pid, SIGHUP);
	r = notes_wait(&nt, from, "RELOADING", "1", T_IO);
	now = mono_usec();
	CU_ASSERT(r >= 0);
	if (r >= 0) {
		CU_ASSERT(note_get(nt.msg[r], "MONOTONIC_USEC", v, sizeof(v)));
		mono = strtoull(v, NULL, 10);
		CU_ASSERT(mono > 0 && mono <= now && now - mono < 5000000u);
		i = notes_wait(&nt, r + 1, "READY", "1", T_IO);
		CU_ASSERT(i > r);
	}
	CU_ASSERT_EQUAL(file_wait(srv.log, "reload_done applied=0 needs_restart=0",
	    1, T_LOG), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload config=none"), 1);
	/* Still serving, still kept alive. */
	CU_ASSERT_EQUAL(http_get_status(srv.port, "/healthz", T_IO), 200);
	from = nt.n;
	CU_ASSERT(notes_wait(&nt, from, "WATCHDOG", "1", 1000) >= 0);

	stop_notified();
out:
	if (CU_get_number_of_failures() > 0)
		notes_dump(&nt, "notify path");
	test_end();
}

/* "@name", and a WATCHDOG_PID of another process: the watchdog is not ours. */
static void
test_notify_abstract(void)
{
	static const char *const args[] = { "-t", "1", NULL };
	char env[128];
	int i;

	test_begin();
	REQUIRE(notes_open(&nt, 1, env, sizeof(env)) == 0);
	REQUIRE(start_env(args, env, "400000", "1") == 0);
	i = notes_wait(&nt, 0, "READY", "1", T_IO);
	REQUIRE(i >= 0);
	CU_ASSERT(note_is_pid(&nt, i, srv.pid));
	notes_pump(&nt, wsc_now_ms() + 1000);
	CU_ASSERT_EQUAL(notes_count(&nt, 0, "WATCHDOG", NULL), 0);
	CU_ASSERT(notes_find(&nt, 0, "STATUS", NULL) >= 0);
	stop_notified();
out:
	if (CU_get_number_of_failures() > 0)
		notes_dump(&nt, "notify abstract");
	test_end();
}

/* ---- the private PostgreSQL ---------------------------------------------------------- */

/*
 * With --db, READY=1 waits for the database: none at all (a port nobody
 * listens on), then a real one that is down at start and comes up.
 */
static void
test_notify_db(void)
{
	char env[128], db[512], v[1024];
	const char *args[] = { "-t", "2", "--db", db, NULL };
	int64_t t0 = wsc_now_ms();
	int i, port;

	test_begin();
	REQUIRE(notes_open(&nt, 0, env, sizeof(env)) == 0);
	REQUIRE((port = harness_free_port()) > 0);
	snprintf(db, sizeof(db), "host=127.0.0.1 port=%d dbname=parley "
	    "user=parley connect_timeout=1", port);
	REQUIRE(start_env(args, env, "400000", NULL) == 0);
	CU_ASSERT_EQUAL(http_get_status(srv.port, "/readyz", T_IO), 503);
	notes_pump(&nt, wsc_now_ms() + 1000);
	/* A reload before READY=1 must not tell systemd the start is over. */
	REQUIRE(kill(srv.pid, SIGHUP) == 0);
	notes_pump(&nt, wsc_now_ms() + 500);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_done"), 1);
	CU_ASSERT_EQUAL(notes_count(&nt, 0, "RELOADING", NULL), 0);
	CU_ASSERT_EQUAL(notes_count(&nt, 0, "READY", NULL), 0);
	CU_ASSERT_EQUAL(notes_count(&nt, 0, "MAINPID", NULL), 0);
	CU_ASSERT_EQUAL(file_count(srv.log, " ready "), 0);
	/* Meanwhile "systemctl status" says what the start waits for. */
	i = notes_wait(&nt, 0, "STATUS", NULL, T_IO);
	CU_ASSERT(i >= 0 && note_get(nt.msg[i], "STATUS", v, sizeof(v)) &&
	    strstr(v, "database unavailable") != NULL);
	CU_ASSERT_EQUAL(http_get_status(srv.port, "/healthz", T_IO), 200);
	stop_notified();
	check_no_report(srv.log);
	server_remove_log(&srv);
	notes_close(&nt);
	fprintf(stderr, "[ops] no database: %lld ms\n",
	    (long long)(wsc_now_ms() - t0));

	/* A private cluster, paused before parleyd starts. */
	REQUIRE(pg_cluster_start(&pg) == 0);
	snprintf(db, sizeof(db), "%s connect_timeout=1", pg.conninfo);
	REQUIRE(pg_cluster_run(&pg, "pause") == 0);
	REQUIRE(notes_open(&nt, 0, env, sizeof(env)) == 0);
	REQUIRE(start_env(args, env, "400000", NULL) == 0);
	notes_pump(&nt, wsc_now_ms() + 1500);
	CU_ASSERT_EQUAL(notes_count(&nt, 0, "READY", NULL), 0);
	CU_ASSERT_EQUAL(http_get_status(srv.port, "/readyz", T_IO), 503);
	REQUIRE(pg_cluster_run(&pg, "resume") == 0);
	i = notes_wait(&nt, 0, "READY", "1", 10000);
	CU_ASSERT(i >= 0);
	CU_ASSERT(note_is_pid(&nt, i, srv.pid));
	if (i >= 0) {
		i = notes_wait(&nt, i, "STATUS", NULL, T_IO);
		CU_ASSERT(i >= 0 && note_get(nt.msg[i], "STATUS", v, sizeof(v)) &&
		    strstr(v, "database up") != NULL);
		CU_ASSERT_EQUAL(http_get_status(srv.port, "/readyz", T_IO), 200);
		CU_ASSERT_EQUAL(file_count(srv.log, " ready "), 1);
	}
	stop_notified();
	fprintf(stderr, "[ops] notify db: %lld ms in all\n",
	    (long long)(wsc_now_ms() - t0));
out:
	if (CU_get_number_of_failures() > 0)
		notes_dump(&nt, "notify db");
	test_end();
}

/* ---- reload --------------------------------------------------------------------------- */

/* SIGHUP, then wait for the nth line with needle. Its count. */
static int
hup_wait(const char *needle, int n)
{
	kill(srv.pid, SIGHUP);
	return file_wait(srv.log, needle, n, T_LOG);
}

static void
test_reload_live(void)
{
	char conf[PATH_MAX];
	const char *args[] = { "-c", conf, NULL };
	int acked, limited, other, st = -1;
	struct wsc c;
	int64_t deadline;

	memset(&c, 0, sizeof(c));
	c.fd = -1;
	test_begin();
	REQUIRE(tmp_file(conf, sizeof(conf), "conf") == 0);
	REQUIRE(write_file(conf, "# reload test\nrate = 1\nburst = 1\n"
	    "allow-anonymous = true\n") == 0);
	REQUIRE(server_start(&srv, args) == 0);
	REQUIRE(ws_enter(&c, srv.port, "rl", "ops-room") == 0);

	/* rate 1, burst 1: of three at once, one goes and the rest wait. */
	REQUIRE(send_burst(&c, "ops-room", 3, &acked, &limited, &other) == 0);
	CU_ASSERT(acked >= 1 && limited >= 1 && other == 0);
	fprintf(stderr, "[ops] rate 1: %d acked, %d rate_limited\n", acked, limited);

	/* rate = 0 applies at once (same connection); threads waits for a restart. */
	REQUIRE(write_file(conf, "rate = 0\nburst = 1\nallow-anonymous = true\n"
	    "threads = 3\n") == 0);
	REQUIRE(hup_wait("reload_done", 1) == 1);
	CU_ASSERT_EQUAL(file_count(srv.log,
	    "reload_applied key=rate old=\"1\" new=\"0\""), 1);
	CU_ASSERT_EQUAL(file_count(srv.log,
	    "level=warn reload_needs_restart key=threads "), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "file=\"3\""), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_applied "), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_needs_restart "), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_done applied=1 needs_restart=1"), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_failed"), 0);
	REQUIRE(send_burst(&c, "ops-room", 3, &acked, &limited, &other) == 0);
	CU_ASSERT(acked == 3 && limited == 0 && other == 0);

	/* An invalid file: refused, nothing changes, still serving. */
	REQUIRE(write_file(conf, "rate = banana\nburst = 1\n") == 0);
	CU_ASSERT_EQUAL(hup_wait("reload_failed", 1), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "level=error reload_failed error=\""), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, ":1: rate: 'banana'"), 1);
	REQUIRE(send_burst(&c, "ops-room", 3, &acked, &limited, &other) == 0);
	CU_ASSERT(acked == 3 && limited == 0 && other == 0);
	CU_ASSERT_EQUAL(http_get_status(srv.port, "/healthz", T_IO), 200);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_done"), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_applied "), 1);

	/*
	 * max-connections = 1 while this test holds one connection (c): one
	 * more is refused with 503; once c is gone, one fits again.
	 */
	CU_ASSERT_EQUAL(http_get_status(srv.port, "/healthz", T_IO), 200);
	REQUIRE(write_file(conf, "rate = 0\nburst = 1\nallow-anonymous = true\n"
	    "threads = 3\nmax-connections = 1\n") == 0);
	REQUIRE(hup_wait("reload_done", 2) == 2);
	CU_ASSERT_EQUAL(file_count(srv.log,
	    "reload_applied key=max-connections old=\"0\" new=\"1\""), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_done applied=1 needs_restart=1"), 2);
	CU_ASSERT_EQUAL(http_get_status(srv.port, "/healthz", T_IO), 503);
	REQUIRE(send_burst(&c, "ops-room", 1, &acked, &limited, &other) == 0);
	CU_ASSERT_EQUAL(acked, 1);
	wsc_close(&c);
	deadline = wsc_now_ms() + 2000;
	while ((st = http_get_status(srv.port, "/healthz", T_IO)) != 200 &&
	    wsc_now_ms() < deadline)
		wsc_sleep_ms(50);
	CU_ASSERT_EQUAL(st, 200);
	/*
	 * Two at once: the second is over the limit. The first one must have
	 * been let in (a keep-alive request answered 200: it stays counted);
	 * it may itself be refused while the server still counts a connection
	 * that just closed, so it retries.
	 */
	{
		static const char ka[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
		struct http_conn h1;
		struct http_resp r1;
		int st1 = -1, st2;

		deadline = wsc_now_ms() + 2000;
		for (;;) {
			REQUIRE(http_open(&h1, srv.port, T_IO) == 0);
			if (http_send(&h1, ka, sizeof(ka) - 1, T_IO) == 0)
				st1 = http_read(&h1, &r1, T_IO);
			http_resp_free(&r1);
			if (st1 == 200 || wsc_now_ms() >= deadline)
				break;
			http_close(&h1);
			wsc_sleep_ms(50);
		}
		st2 = http_get_status(srv.port, "/healthz", T_IO);
		http_close(&h1);
		CU_ASSERT_EQUAL(st1, 200);
		CU_ASSERT_EQUAL(st2, 503);
	}

	st = server_stop(&srv, SIGTERM, 5000);
	CU_ASSERT_EQUAL(st, 0);
out:
	wsc_close(&c);
	if (CU_get_number_of_failures() > 0)
		server_dump_log(&srv, "reload");
	test_end();
}

/*
 * The command line still wins on reload, and the defaults that follow
 * max-frame follow the running one: a max-frame change waits for a restart,
 * and so do the max-body and out-limit it would move.
 */
static void
test_reload_precedence(void)
{
	char conf[PATH_MAX];
	const char *args[] = { "-c", conf, "--rate", "1", "--burst", "1", NULL };
	int acked, limited, other, st;
	struct wsc c;

	memset(&c, 0, sizeof(c));
	c.fd = -1;
	test_begin();
	REQUIRE(tmp_file(conf, sizeof(conf), "conf") == 0);
	REQUIRE(write_file(conf, "rate = 0\nmax-frame = 1024\n") == 0);
	REQUIRE(server_start(&srv, args) == 0);
	REQUIRE(ws_enter(&c, srv.port, "pr", "ops-prec") == 0);
	REQUIRE(send_burst(&c, "ops-prec", 3, &acked, &limited, &other) == 0);
	CU_ASSERT(limited >= 1);   /* --rate 1 beat the file's rate = 0 */

	/* max-frame gone from the file: it stays 1024 until a restart, and
	 * max-body (unset) stays at most 1024 with it; room-idle applies. */
	REQUIRE(write_file(conf, "rate = 0\nroom-idle = 5\n") == 0);
	REQUIRE(hup_wait("reload_done", 1) == 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_failed"), 0);
	CU_ASSERT_EQUAL(file_count(srv.log,
	    "reload_applied key=room-idle old=\"60\" new=\"5\""), 1);
	CU_ASSERT_EQUAL(file_count(srv.log,
	    "reload_needs_restart key=max-frame running=\"1024\" file=\"65536\""), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_applied key=rate"), 0);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_applied key=max-body"), 0);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_applied key=out-limit"), 0);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_done applied=1 needs_restart=1"), 1);
	wsc_sleep_ms(1100);   /* a fresh token in the bucket */
	REQUIRE(send_burst(&c, "ops-prec", 3, &acked, &limited, &other) == 0);
	CU_ASSERT(limited >= 1);   /* still --rate 1 */

	/* A max-body above the running max-frame: refused as a whole. */
	REQUIRE(write_file(conf, "max-frame = 4096\nmax-body = 3000\nroom-idle = 7\n") == 0);
	CU_ASSERT_EQUAL(hup_wait("reload_failed", 1), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "exceeds the running max-frame 1024"), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_applied key=room-idle"), 1);

	st = server_stop(&srv, SIGTERM, 5000);
	CU_ASSERT_EQUAL(st, 0);
out:
	wsc_close(&c);
	if (CU_get_number_of_failures() > 0)
		server_dump_log(&srv, "reload precedence");
	test_end();
}

#define SECRET_A "ops-secret-A-0123456789abcdef"
#define SECRET_B "ops-secret-B-fedcba9876543210"

static char *
token(const char *secret, const char *user)
{
	return jwt_sign_user((const uint8_t *)secret, strlen(secret), user,
	    (int64_t)time(NULL) + 3600);
}

static void
test_reload_jwt(void)
{
	char conf[PATH_MAX], secret[PATH_MAX], body[PATH_MAX + 64];
	const char *args[] = { "-c", conf, NULL };
	char *ta = token(SECRET_A, "alice"), *tb = token(SECRET_B, "bob");
	int st;

	test_begin();
	REQUIRE(ta != NULL && tb != NULL);
	REQUIRE(tmp_file(conf, sizeof(conf), "conf") == 0);
	REQUIRE(tmp_file(secret, sizeof(secret), "secret") == 0);
	REQUIRE(write_file(secret, SECRET_A "\n") == 0);
	snprintf(body, sizeof(body), "jwt-secret-file = %s\n", secret);
	REQUIRE(write_file(conf, body) == 0);
	REQUIRE(server_start(&srv, args) == 0);

	CU_ASSERT_EQUAL(hello_token(srv.port, ta, "alice"), 1);
	CU_ASSERT_EQUAL(hello_token(srv.port, tb, "bob"), 0);
	CU_ASSERT_EQUAL(upgrade_token(srv.port, ta), 101);
	CU_ASSERT_EQUAL(upgrade_token(srv.port, tb), 401);

	/* Rotate: the same file now holds B. */
	REQUIRE(write_file(secret, SECRET_B "\n") == 0);
	REQUIRE(hup_wait("reload_done", 1) == 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_done applied=0 needs_restart=0"), 1);
	CU_ASSERT_EQUAL(hello_token(srv.port, tb, "bob"), 1);
	CU_ASSERT_EQUAL(hello_token(srv.port, ta, "alice"), 0);
	CU_ASSERT_EQUAL(upgrade_token(srv.port, tb), 101);
	CU_ASSERT_EQUAL(upgrade_token(srv.port, ta), 401);

	/* The secret gone, and rate changed in the same file: the reload is
	 * refused as a whole, B stays in force, and no change is logged as
	 * applied. */
	REQUIRE(unlink(secret) == 0);
	snprintf(body, sizeof(body), "jwt-secret-file = %s\nrate = 9\n", secret);
	REQUIRE(write_file(conf, body) == 0);
	CU_ASSERT_EQUAL(hup_wait("reload_failed", 1), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_done"), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "reload_applied"), 0);
	CU_ASSERT_EQUAL(hello_token(srv.port, tb, "bob"), 1);
	CU_ASSERT_EQUAL(hello_token(srv.port, ta, "alice"), 0);

	st = server_stop(&srv, SIGTERM, 5000);
	CU_ASSERT_EQUAL(st, 0);
out:
	free(ta);
	free(tb);
	if (CU_get_number_of_failures() > 0)
		server_dump_log(&srv, "reload jwt");
	test_end();
}

/* ---- log file ---------------------------------------------------------------------------- */

/* Print the log files of a failed test. */
static void
dump_files(const char *const files[], int n)
{
	for (int i = 0; i < n; i++) {
		char *t = slurp(files[i]);

		fprintf(stderr, "---- %s ----\n%s", files[i], t ? t : "(none)\n");
		free(t);
	}
}

/* --log-file on the command line, and logrotate's rename + SIGHUP. */
static void
test_log_file(void)
{
	char logf[PATH_MAX], rotated[PATH_MAX + 4];
	const char *args[] = { "-t", "2", "--log-file", logf, NULL };
	const char *files[] = { logf, rotated };
	struct stat sb;
	int st;

	test_begin();
	REQUIRE(tmp_file(logf, sizeof(logf), "log") == 0);
	unlink(logf);   /* parleyd creates it */
	snprintf(rotated, sizeof(rotated), "%s.1", logf);
	tmp_track(rotated);
	REQUIRE(server_start(&srv, args) == 0);

	CU_ASSERT_EQUAL(file_wait(logf, "listening addr=127.0.0.1:", 1, T_LOG), 1);
	CU_ASSERT_EQUAL(file_count(logf, "starting version="), 1);
	/* Nothing on standard error any more. */
	CU_ASSERT_EQUAL(file_count(srv.log, "level="), 0);
	CU_ASSERT(stat(logf, &sb) == 0 && S_ISREG(sb.st_mode) &&
	    (sb.st_mode & 0137) == 0);

	/* logrotate: rename, SIGHUP, a new file with what comes next. */
	REQUIRE(rename(logf, rotated) == 0);
	kill(srv.pid, SIGHUP);
	CU_ASSERT_EQUAL(file_wait(logf, "reload_done applied=0 needs_restart=0", 1,
	    T_LOG), 1);
	CU_ASSERT_EQUAL(file_count(rotated, "reload_done"), 0);
	CU_ASSERT_EQUAL(file_count(rotated, "listening addr="), 1);
	CU_ASSERT_EQUAL(file_count(logf, "listening addr="), 0);

	/* Again, without a rename: the same (new) file goes on. */
	kill(srv.pid, SIGHUP);
	CU_ASSERT_EQUAL(file_wait(logf, "reload_done", 2, T_LOG), 2);
	CU_ASSERT_EQUAL(file_count(rotated, "reload_done"), 0);
	CU_ASSERT_EQUAL(http_get_status(srv.port, "/healthz", T_IO), 200);

	st = server_stop(&srv, SIGTERM, 5000);
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT_EQUAL(file_count(logf, "stopped status=0"), 1);
	CU_ASSERT_EQUAL(file_count(rotated, "stopped"), 0);
	CU_ASSERT_EQUAL(file_count(srv.log, "level="), 0);
	check_no_report(logf);
	check_no_report(rotated);
out:
	if (CU_get_number_of_failures() > 0)
		dump_files(files, 2);
	test_end();
}

/*
 * log-file in the config file: rotated while the file is broken, the log
 * is reopened all the same; a new path applies on SIGHUP.
 */
static void
test_log_file_live(void)
{
	char logf[PATH_MAX], logm[PATH_MAX], conf[PATH_MAX], body[2 * PATH_MAX];
	char rotated[PATH_MAX + 4], want[3 * PATH_MAX];
	const char *args[] = { "-t", "2", "-c", conf, NULL };
	const char *files[] = { logf, rotated, logm };
	int64_t deadline;
	int st, n;

	test_begin();
	REQUIRE(tmp_file(logf, sizeof(logf), "log") == 0);
	REQUIRE(tmp_file(logm, sizeof(logm), "log") == 0);
	REQUIRE(tmp_file(conf, sizeof(conf), "conf") == 0);
	unlink(logf);   /* parleyd creates them */
	unlink(logm);
	snprintf(rotated, sizeof(rotated), "%s.1", logf);
	tmp_track(rotated);
	snprintf(body, sizeof(body), "log-file = %s\n", logf);
	REQUIRE(write_file(conf, body) == 0);
	REQUIRE(server_start(&srv, args) == 0);
	CU_ASSERT_EQUAL(file_wait(logf, "listening addr=127.0.0.1:", 1, T_LOG), 1);
	CU_ASSERT_EQUAL(file_count(srv.log, "level="), 0);

	REQUIRE(rename(logf, rotated) == 0);
	snprintf(body, sizeof(body), "log-file = %s\nrate = banana\n", logf);
	REQUIRE(write_file(conf, body) == 0);
	kill(srv.pid, SIGHUP);
	deadline = wsc_now_ms() + T_LOG;
	while (access(logf, F_OK) != 0 && wsc_now_ms() < deadline)
		wsc_sleep_ms(20);
	CU_ASSERT_EQUAL(access(logf, F_OK), 0);
	/* The refusal itself is logged before the reopen, wherever it lands. */
	while ((n = nonneg(file_count(rotated, "reload_failed")) +
	    nonneg(file_count(logf, "reload_failed"))) < 1 && wsc_now_ms() < deadline)
		wsc_sleep_ms(20);
	CU_ASSERT_EQUAL(n, 1);

	/* A new path takes the lines from the reopen on. */
	snprintf(body, sizeof(body), "log-file = %s\n", logm);
	REQUIRE(write_file(conf, body) == 0);
	kill(srv.pid, SIGHUP);
	CU_ASSERT_EQUAL(file_wait(logm, "reload_done applied=1 needs_restart=0", 1,
	    T_LOG), 1);
	snprintf(want, sizeof(want), "reload_applied key=log-file old=\"%s\" new=\"%s\"",
	    logf, logm);
	CU_ASSERT_EQUAL(file_count(logf, want), 1);
	CU_ASSERT_EQUAL(file_count(logf, "reload_done"), 0);
	CU_ASSERT_EQUAL(http_get_status(srv.port, "/healthz", T_IO), 200);

	st = server_stop(&srv, SIGTERM, 5000);
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT_EQUAL(file_count(logm, "stopped status=0"), 1);
	CU_ASSERT_EQUAL(file_count(logf, "stopped"), 0);
	CU_ASSERT_EQUAL(file_count(srv.log, "level="), 0);
	check_no_report(logf);
	check_no_report(logm);
	check_no_report(rotated);
out:
	if (CU_get_number_of_failures() > 0)
		dump_files(files, 3);
	test_end();
}

/* ---- --check-config ---------------------------------------------------------------------- */

/* Run parleyd with args; stdout and stderr captured. Its exit status. */
static int
run_parleyd(const char *const args[], char **out, char **err)
{
	const char *argv[16];
	int n = 0, st;

	argv[n++] = harness_binary();
	for (int i = 0; args[i] != NULL && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	st = harness_exec(argv, out, err, 10000);
	if (st >= 0 && (strstr(*err, "runtime error:") != NULL ||
	    strstr(*err, "Sanitizer") != NULL)) {
		fprintf(stderr, "[ops] sanitizer report:\n%s\n", *err);
		CU_FAIL("sanitizer report from parleyd --check-config");
	}
	return st;
}

/* The output without its first line (which names the file). */
static const char *
after_first_line(const char *s)
{
	const char *nl = strchr(s, '\n');

	return nl != NULL ? nl + 1 : s;
}

static void
test_check_config(void)
{
	char conf[PATH_MAX], conf2[PATH_MAX], listen[64], want[80], errwant[PATH_MAX + 8];
	char *out = NULL, *err = NULL, *out2 = NULL, *err2 = NULL;
	const char *restart, *live;
	int port, st;

	test_begin();
	REQUIRE((port = harness_free_port()) > 0);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	REQUIRE(tmp_file(conf, sizeof(conf), "conf") == 0);
	REQUIRE(tmp_file(conf2, sizeof(conf2), "conf") == 0);
	REQUIRE(write_file(conf, "# check\nrate = 7\nlisten = 0.0.0.0:9\n"
	    "  burst   =   9  \n\nroom-history = 2048\n") == 0);
	{
		const char *a[] = { "-c", conf, "-l", listen, "--check-config", NULL };

		st = run_parleyd(a, &out, &err);
	}
	REQUIRE(st >= 0);
	CU_ASSERT_EQUAL(st, 0);
	if (st != 0)
		fprintf(stderr, "stdout:\n%s\nstderr:\n%s\n", out, err);
	snprintf(want, sizeof(want), "\nlisten = %s\n", listen);
	CU_ASSERT(strstr(out, want) != NULL);
	CU_ASSERT(strstr(out, "0.0.0.0:9") == NULL);
	CU_ASSERT(strstr(out, "\nrate = 7\n") != NULL);
	CU_ASSERT(strstr(out, "\nburst = 9\n") != NULL);
	CU_ASSERT(strstr(out, "\nroom-history = 2048\n") != NULL);
	CU_ASSERT(strstr(out, "\nmax-body = 4000\n") != NULL);   /* a default */
	/* Two sections: restart-only keys, then those SIGHUP applies. */
	restart = strstr(out, "\n# These need a restart:\n");
	live = strstr(out, "\n# SIGHUP applies these:\n");
	CU_ASSERT(restart != NULL && live != NULL && restart < live);
	if (restart != NULL && live != NULL) {
		CU_ASSERT(strstr(out, want) > restart && strstr(out, want) < live);
		CU_ASSERT(strstr(out, "\nrate = 7\n") > live);
		CU_ASSERT(strstr(out, "\nroom-history = 2048\n") < live);
	}
	CU_ASSERT_EQUAL(count_in(out, "\nrate = "), 1);
	/* The settings only: no log lines among them. */
	CU_ASSERT(strstr(out, "level=") == NULL);
	/* It is a config file: read back, the same settings come out. */
	REQUIRE(write_file(conf2, out) == 0);
	{
		const char *a[] = { "-c", conf2, "--check-config", NULL };

		st = run_parleyd(a, &out2, &err2);
	}
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT(out2 != NULL && strcmp(after_first_line(out),
	    after_first_line(out2)) == 0);
	if (out2 != NULL && strcmp(after_first_line(out), after_first_line(out2)) != 0)
		fprintf(stderr, "first:\n%s\nread back:\n%s\nstderr: %s\n", out, out2,
		    err2);
	free(out);
	free(err);
	free(out2);
	free(err2);
	out = err = out2 = err2 = NULL;

	/* A database password never shows. */
	{
		const char *a[] = { "--db", "host=x password=hunter2 dbname=p",
		    "--check-config", NULL };

		st = run_parleyd(a, &out, &err);
	}
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT(out != NULL && strstr(out, "\ndb = host=x password=******** dbname=p\n")
	    != NULL);
	CU_ASSERT(out != NULL && strstr(out, "hunter2") == NULL);
	CU_ASSERT(err != NULL && strstr(err, "hunter2") == NULL);
	free(out);
	free(err);
	out = err = NULL;
	{
		const char *a[] = { "--db", "postgresql://u:hunter2@h/p",
		    "--check-config", NULL };

		st = run_parleyd(a, &out, &err);
	}
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT(out != NULL && strstr(out, "\ndb = postgresql://u:********@h/p\n")
	    != NULL);
	CU_ASSERT(out != NULL && strstr(out, "hunter2") == NULL);
	free(out);
	free(err);
	out = err = NULL;
	/* libpq's other spellings: spaces around '=', a quoted value, a
	 * repeated key (the last wins in libpq), the URI's query. */
	{
		const char *a[] = { "--db", "host=x password = 'hunter2 x' "
		    "password=hunter3 application_name='my app'", "--check-config", NULL };

		st = run_parleyd(a, &out, &err);
	}
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT(out != NULL && strstr(out, "\ndb = host=x password = ******** "
	    "password=******** application_name='my app'\n") != NULL);
	CU_ASSERT(out != NULL && strstr(out, "hunter") == NULL);
	free(out);
	free(err);
	out = err = NULL;
	{
		const char *a[] = { "--db", "postgresql://h/p?sslmode=disable&password=hunter2&x=1",
		    "--check-config", NULL };

		st = run_parleyd(a, &out, &err);
	}
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT(out != NULL && strstr(out,
	    "\ndb = postgresql://h/p?sslmode=disable&password=********&x=1\n") != NULL);
	free(out);
	free(err);
	out = err = NULL;

	/* What start refuses, refused here too: TLS, a log file it cannot open. */
	{
		const char *a[] = { "--tls-cert", "/x.pem", "--tls-key", "/y.pem",
		    "--check-config", NULL };

		st = run_parleyd(a, &out, &err);
	}
	CU_ASSERT_EQUAL(st, 2);
	CU_ASSERT(err != NULL && strstr(err, "--tls-cert") != NULL);
	free(out);
	free(err);
	out = err = NULL;
	{
		const char *a[] = { "--log-file", "/nonexistent/parley-ops/x.log",
		    "--check-config", NULL };

		st = run_parleyd(a, &out, &err);
	}
	CU_ASSERT_EQUAL(st, 2);
	CU_ASSERT(err != NULL && strstr(err, "/nonexistent/parley-ops/x.log") != NULL);
	free(out);
	free(err);
	out = err = NULL;

	/* An unknown key: exit 2, file:line on stderr, nothing on stdout. */
	REQUIRE(write_file(conf, "rate = 7\n# fine so far\nfrobnicate = 1\n") == 0);
	{
		const char *a[] = { "-c", conf, "--check-config", NULL };

		st = run_parleyd(a, &out, &err);
	}
	CU_ASSERT_EQUAL(st, 2);
	snprintf(errwant, sizeof(errwant), "%s:3:", conf);
	CU_ASSERT(err != NULL && strstr(err, errwant) != NULL &&
	    strstr(err, "frobnicate") != NULL);
	CU_ASSERT(out != NULL && out[0] == '\0');
	free(out);
	free(err);
	out = err = NULL;

	/* A bad value. */
	REQUIRE(write_file(conf, "rate = banana\n") == 0);
	{
		const char *a[] = { "-c", conf, "--check-config", NULL };

		st = run_parleyd(a, &out, &err);
	}
	CU_ASSERT_EQUAL(st, 2);
	snprintf(errwant, sizeof(errwant), "%s:1:", conf);
	CU_ASSERT(err != NULL && strstr(err, errwant) != NULL &&
	    strstr(err, "banana") != NULL);
	CU_ASSERT(out != NULL && out[0] == '\0');
	free(out);
	free(err);
	out = err = NULL;

	/* An unreadable JWT secret: what start would refuse, refused here. */
	REQUIRE(write_file(conf, "jwt-secret-file = /nonexistent/parley-ops-secret\n") == 0);
	{
		const char *a[] = { "-c", conf, "--check-config", NULL };

		st = run_parleyd(a, &out, &err);
	}
	CU_ASSERT_EQUAL(st, 2);
	CU_ASSERT(err != NULL && strstr(err, "/nonexistent/parley-ops-secret") != NULL);
	CU_ASSERT(out != NULL && out[0] == '\0');
out:
	free(out);
	free(err);
	free(out2);
	free(err2);
	test_end();
}

/* ---- main ----------------------------------------------------------------------------------- */

static const struct test_def notify_tests[] = {
	{ "NOTIFY_SOCKET path: READY, STATUS, WATCHDOG, RELOADING, STOPPING",
	  test_notify_path },
	{ "NOTIFY_SOCKET @abstract; WATCHDOG_PID of another process", test_notify_abstract },
	{ "--db: READY=1 only once the database answers", test_notify_db },
	{ NULL, NULL }
};

static const struct test_def reload_tests[] = {
	{ "SIGHUP applies rate and max-connections, not threads; bad file kept",
	  test_reload_live },
	{ "SIGHUP rereads the JWT secret file", test_reload_jwt },
	{ "SIGHUP: the command line wins; max-frame's defaults wait with it",
	    test_reload_precedence },
	{ NULL, NULL }
};

static const struct test_def log_tests[] = {
	{ "--log-file: rename, SIGHUP, a new file", test_log_file },
	{ "log-file in the file: reopened on a refused reload; a new path",
	  test_log_file_live },
	{ NULL, NULL }
};

static const struct test_def check_tests[] = {
	{ "--check-config prints, hides, refuses", test_check_config },
	{ NULL, NULL }
};

static int no_init(void) { return 0; }
static int no_cleanup(void) { return 0; }

int
main(void)
{
	if (harness_begin("test_ops") != 0)
		return 1;
	if (harness_add_suite("notify", no_init, no_cleanup, notify_tests) ||
	    harness_add_suite("reload", no_init, no_cleanup, reload_tests) ||
	    harness_add_suite("log file", no_init, no_cleanup, log_tests) ||
	    harness_add_suite("check-config", no_init, no_cleanup, check_tests)) {
		CU_cleanup_registry();
		return 1;
	}
	return harness_run();
}
