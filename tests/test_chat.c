/*
 * test_chat.c - integration tests of the chat protocol (PROTOCOL.md)
 * against the real parleyd binary.
 *
 * Suites (each starts its own server with the flags it needs; its last test
 * stops it with SIGTERM and asserts exit status 0):
 *
 *   fanout t1/t2/t4  50 clients in 5 processes, 20 rooms, 200 pipelined
 *                    sends each: every member sees every seq of its rooms
 *                    exactly once and in order, every send is acked, and
 *                    the event/delivery counters add up.
 *   join since       joins with since while senders (other processes) keep
 *                    sending, disconnect/reconnect/resume, truncated replay.
 *   protocol         hello/tokens, errors, rooms, DMs, edit/delete/react,
 *                    dedupe, presence, typing, receipts, history.
 *   rate limits      --rate 5 --burst 10: buckets, retry_after_ms, the
 *                    50th rate_limited error closes 1008.
 *   churn            --room-idle 1: 8 processes open, use and drop
 *                    connections (every way a connection can end) while
 *                    joining and leaving a pool of 40 rooms for 8 s; each
 *                    stream reaches its members in order, without gaps;
 *                    then quiet rooms are freed and busy streams intact.
 *
 * Every wait is bounded. Nothing asserts on timing: "nothing was delivered"
 * is checked with a barrier (a later event of the same room must be the
 * next frame), since a room's frames reach a connection in the room's order.
 *
 * PARLEY_TEST_SUITES=<substring> runs only the suites whose name contains it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
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
#define SECRET "chat-test-secret-0123456789"

static struct server srv;       /* the current suite's server */
static char secret_path[64];    /* the protocol suite's --jwt-secret-file */
static int last_close = -1;     /* close code seen by recv_json, or -1 */
static int stalls;              /* timeouts in this suite (see cl_recv) */

/* An assertion reported at the caller's line. */
#define CHECK_AT(cond, line, what)                                      \
	CU_assertImplementation((cond) ? CU_TRUE : CU_FALSE,             \
	    (unsigned)(line), (what), __FILE__, "", CU_FALSE)

/* ---- suite setup ---------------------------------------------------- */

static int
start_with(const char *const args[])
{
	stalls = 0;
	return harness_suite_start(&srv, args);
}

static int
init_norate_t1(void)
{
	static const char *const a[] = { "-t", "1", "--rate", "0", NULL };

	return start_with(a);
}

static int
init_norate_t2(void)
{
	static const char *const a[] = { "-t", "2", "--rate", "0", NULL };

	return start_with(a);
}

static int
init_norate_t4(void)
{
	static const char *const a[] = { "-t", "4", "--rate", "0", NULL };

	return start_with(a);
}

static int
init_proto(void)
{
	static const char secret[] = SECRET "\n";   /* the server strips it */
	const char *a[] = { "-t", "2", "--jwt-secret-file", secret_path,
	    "--max-body", "100", NULL };
	int fd;

	snprintf(secret_path, sizeof(secret_path), "/tmp/parley-secret-XXXXXX");
	fd = mkstemp(secret_path);
	if (fd < 0)
		return -1;
	if (write(fd, secret, sizeof(secret) - 1) != (ssize_t)sizeof(secret) - 1) {
		close(fd);
		return -1;
	}
	close(fd);
	return start_with(a);
}

static int
init_rate(void)
{
	static const char *const a[] = { "-t", "2", "--rate", "5", "--burst",
	    "10", NULL };

	return start_with(a);
}

static int
cleanup_server(void)
{
	int st = harness_suite_cleanup(&srv);

	if (secret_path[0] != '\0')
		unlink(secret_path);
	secret_path[0] = '\0';
	return st;
}

/* The last test of every suite: SIGTERM must give exit status 0. */
static void
test_stop(void)
{
	harness_test_stop(&srv);
}

/* ---- JSON helpers --------------------------------------------------- */

static int
jtrue(const json_t *o, const char *k)
{
	return json_is_true(json_object_get(o, k));
}

static int
is_type(const json_t *o, const char *t)
{
	return jstreq(o, "type", t);
}

static void
jdump(const char *prefix, const json_t *j)
{
	char *d = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

	fprintf(stderr, "%s%s\n", prefix, d != NULL ? d : "(none)");
	free(d);
}

/*
 * The next text frame as a JSON object; pings are answered and skipped.
 * NULL on timeout, close (last_close = its code) or a malformed frame.
 */
static json_t *
recv_json(struct wsc *c, int timeout_ms)
{
	struct wsc_frame f;
	json_error_t err;
	json_t *j;

	last_close = -1;
	if (wsc_recv_data(c, &f, timeout_ms) != 1)
		return NULL;
	if (f.opcode == 8) {
		last_close = f.close_code;
		return NULL;
	}
	if (f.opcode != 1 || !f.fin || f.masked || f.rsv != 0) {
		fprintf(stderr, "unexpected frame: opcode %d fin %d "
		    "masked %d rsv %d\n", f.opcode, f.fin, f.masked, f.rsv);
		return NULL;
	}
	j = json_loadb((const char *)f.payload, f.len, 0, &err);
	if (j == NULL || !json_is_object(j)) {
		fprintf(stderr, "not a JSON object: %.*s\n",
		    (int)(f.len > 300 ? 300 : f.len), (const char *)f.payload);
		json_decref(j);
		return NULL;
	}
	return j;
}

/* ---- one client ------------------------------------------------------ */

struct cl {
	struct wsc w;
	char user[40];
	int dead;               /* a wait on it failed: fail fast from now on */
};

/*
 * Timeouts in the current suite. After a few, waits get short, so a server
 * that stopped answering fails the remaining tests quickly, not in minutes.
 */
/* The next frame of c (see recv_json), bounded as described above. */
static json_t *
cl_recv(struct cl *c)
{
	json_t *j;

	if (c->dead)
		return NULL;
	j = recv_json(&c->w, stalls >= 3 ? 300 : T_IO);
	if (j == NULL) {
		c->dead = 1;
		if (last_close < 0)
			stalls++;
	}
	return j;
}

static int
cl_connect(struct cl *c, const char *path, const char *headers)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->user, sizeof(c->user), "?");
	return wsc_connect(&c->w, HOST, srv.port, NULL, path ? path : "/ws",
	    headers, 0, T_IO);
}

static int csend(struct cl *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
csend(struct cl *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = wsc_vsend_textf(&c->w, fmt, ap);
	va_end(ap);
	return r;
}

static json_t *
expect_at(struct cl *c, const char *type, int line)
{
	json_t *j = cl_recv(c);

	if (j != NULL && is_type(j, type))
		return j;
	if (j == NULL)
		fprintf(stderr, "%s:%d: [%s] expected '%s', got nothing "
		    "(close %d)\n", __FILE__, line, c->user, type, last_close);
	else {
		fprintf(stderr, "%s:%d: [%s] expected '%s', got: ", __FILE__,
		    line, c->user, type);
		jdump("", j);
	}
	CHECK_AT(0, line, "expected frame type");
	json_decref(j);
	return NULL;
}

#define EXPECT(c, type) expect_at((c), (type), __LINE__)

/* An error frame with this code (and ref when not NULL) and a message. */
static json_t *
expect_error_at(struct cl *c, const char *code, const char *ref, int line)
{
	json_t *j = expect_at(c, "error", line);
	int ok;

	if (j == NULL)
		return NULL;
	ok = jstreq(j, "code", code) &&
	    json_is_string(json_object_get(j, "message")) &&
	    (ref == NULL || jstreq(j, "ref", ref));
	if (!ok) {
		fprintf(stderr, "%s:%d: [%s] expected error %s ref %s, got: ",
		    __FILE__, line, c->user, code, ref ? ref : "-");
		jdump("", j);
	}
	CHECK_AT(ok, line, "error code, message and ref");
	return j;
}

#define EXPECT_ERROR(c, code, ref) \
	json_decref(expect_error_at((c), (code), (ref), __LINE__))

/* A close frame with code, then the TCP close. */
static void
expect_close_at(struct cl *c, int code, int line)
{
	int got = wsc_recv_close(&c->w, T_IO);

	if (got != code)
		fprintf(stderr, "%s:%d: [%s] expected close %d, got %d\n",
		    __FILE__, line, c->user, code, got);
	CHECK_AT(got == code, line, "close code");
	/* Complete the closing handshake (RFC 6455 5.5.1); then TCP closes. */
	if (got > 0) {
		uint8_t p[2] = { (uint8_t)(got >> 8), (uint8_t)got };

		(void)wsc_send_frame(&c->w, 8, 1, p, 2, 0);
	}
	CHECK_AT(wsc_wait_eof(&c->w, T_IO) == 1, line, "TCP closed");
}

#define EXPECT_CLOSE(c, code) expect_close_at((c), (code), __LINE__)

/* hello with a name (anonymous) and the welcome. 1 on success. */
static int
hello_at(struct cl *c, const char *user, int line)
{
	json_t *j;
	int ok;

	snprintf(c->user, sizeof(c->user), "%s", user);
	if (csend(c, "{\"type\":\"hello\",\"name\":\"%s\"}", user) < 0) {
		CHECK_AT(0, line, "send hello");
		return 0;
	}
	j = expect_at(c, "welcome", line);
	ok = j != NULL && jstreq(j, "user", user);
	CHECK_AT(ok, line, "welcome names the user");
	json_decref(j);
	return ok;
}

/* Connect and say hello as user. 1 on success. */
static int
open_at(struct cl *c, const char *user, int line)
{
	int st = cl_connect(c, NULL, NULL);

	snprintf(c->user, sizeof(c->user), "%s", user);
	CHECK_AT(st == 101, line, "WebSocket upgrade");
	if (st != 101)
		return 0;
	return hello_at(c, user, line);
}

#define OPEN(c, user) CU_ASSERT_FATAL(open_at((c), (user), __LINE__))

static json_t *
join_at(struct cl *c, const char *room, int line)
{
	json_t *j;

	csend(c, "{\"type\":\"join\",\"room\":\"%s\",\"ref\":\"jr\"}", room);
	j = expect_at(c, "joined", line);
	if (j != NULL)
		CHECK_AT(jstreq(j, "room", room) && jstreq(j, "ref", "jr") &&
		    jint(j, "seq") >= 0 && jint(j, "online") >= 1 &&
		    json_is_array(json_object_get(j, "members")) &&
		    jint(j, "read") >= 0, line, "joined fields");
	return j;
}

#define JOIN(c, room) json_decref(join_at((c), (room), __LINE__))

/*
 * Read the two frames that answer a sequenced request, in either order:
 * the stream event (evtype) and the ack. Both must carry the same seq.
 */
static int
expect_pair_at(struct cl *c, const char *evtype, json_t **ev, json_t **ack,
    int line)
{
	int ok;

	*ev = *ack = NULL;
	for (int i = 0; i < 2; i++) {
		json_t *j = cl_recv(c);

		if (j != NULL && *ev == NULL && is_type(j, evtype)) {
			*ev = j;
		} else if (j != NULL && *ack == NULL && is_type(j, "ack")) {
			*ack = j;
		} else {
			fprintf(stderr, "%s:%d: [%s] expected '%s' and 'ack', "
			    "got: ", __FILE__, line, c->user, evtype);
			jdump("", j);
			json_decref(j);
			break;
		}
	}
	ok = *ev != NULL && *ack != NULL &&
	    jint(*ev, "seq") == jint(*ack, "seq") && jint(*ack, "seq") > 0 &&
	    jstreq(*ev, "room", jstr(*ack, "room")) &&
	    jint(*ev, "ts") > 0 && jint(*ack, "ts") > 0 &&
	    jstreq(*ev, "user", c->user) &&
	    json_object_get(*ack, "noop") == NULL &&
	    json_object_get(*ack, "duplicate") == NULL;
	if (!ok && *ev != NULL && *ack != NULL) {
		fprintf(stderr, "%s:%d: [%s] event/ack mismatch:\n", __FILE__,
		    line, c->user);
		jdump("  event: ", *ev);
		jdump("  ack:   ", *ack);
	}
	CHECK_AT(ok, line, "event and its ack");
	return ok;
}

/*
 * send body to room (with id unless NULL), expect its message and ack;
 * returns the seq, or -1.
 */
static long long
say_at(struct cl *c, const char *room, const char *body, const char *id,
    int line)
{
	json_t *ev, *ack;
	long long seq = -1;
	int ok;

	if (id != NULL)
		csend(c, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"%s\","
		    "\"id\":\"%s\",\"ref\":\"s\"}", room, body, id);
	else
		csend(c, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"%s\","
		    "\"ref\":\"s\"}", room, body);
	if (expect_pair_at(c, "message", &ev, &ack, line)) {
		ok = jstreq(ev, "room", room) && jstreq(ev, "body", body) &&
		    jstreq(ack, "ref", "s") && json_object_get(ev, "ref") == NULL &&
		    (id == NULL ? json_object_get(ev, "id") == NULL &&
		    json_object_get(ack, "id") == NULL :
		    jstreq(ev, "id", id) && jstreq(ack, "id", id));
		if (!ok) {
			jdump("  message: ", ev);
			jdump("  ack:     ", ack);
		}
		CHECK_AT(ok, line, "message and ack fields");
		seq = jint(ev, "seq");
	}
	json_decref(ev);
	json_decref(ack);
	return seq;
}

#define SAY(c, room, body, id) say_at((c), (room), (body), (id), __LINE__)

/* The next frame is the message seq in room from user with body. */
static json_t *
hear_at(struct cl *c, const char *room, long long seq, const char *user,
    const char *body, int line)
{
	json_t *j = expect_at(c, "message", line);
	int ok;

	if (j == NULL)
		return NULL;
	ok = jstreq(j, "room", room) && jint(j, "seq") == seq &&
	    jstreq(j, "user", user) && (body == NULL || jstreq(j, "body", body)) &&
	    jint(j, "ts") > 0;
	if (!ok) {
		fprintf(stderr, "%s:%d: [%s] expected message %s#%lld from %s, "
		    "got: ", __FILE__, line, c->user, room, seq, user);
		jdump("", j);
	}
	CHECK_AT(ok, line, "message fields");
	return j;
}

#define HEAR(c, room, seq, user, body) \
	json_decref(hear_at((c), (room), (seq), (user), (body), __LINE__))

static void
expect_presence_at(struct cl *c, const char *room, const char *user,
    const char *status, int line)
{
	json_t *j = expect_at(c, "presence", line);
	int ok = j != NULL && jstreq(j, "room", room) &&
	    jstreq(j, "user", user) && jstreq(j, "status", status);

	if (j != NULL && !ok) {
		fprintf(stderr, "%s:%d: [%s] expected presence %s %s, got: ",
		    __FILE__, line, c->user, user, status);
		jdump("", j);
	}
	CHECK_AT(ok, line, "presence fields");
	json_decref(j);
}

#define PRESENCE(c, room, user, status) \
	expect_presence_at((c), (room), (user), (status), __LINE__)

/* members (a JSON array) holds exactly the comma-separated names. */
static int
members_are(const json_t *joined, const char *names)
{
	const json_t *a = json_object_get(joined, "members");
	char buf[512], *save = NULL, *tok;
	size_t n = 0, i;
	int found;

	if (!json_is_array(a))
		return 0;
	snprintf(buf, sizeof(buf), "%s", names);
	for (tok = strtok_r(buf, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		n++;
		found = 0;
		for (i = 0; i < json_array_size(a); i++)
			if (json_is_string(json_array_get(a, i)) &&
			    strcmp(json_string_value(json_array_get(a, i)),
			    tok) == 0)
				found++;
		if (found != 1)
			return 0;
	}
	return json_array_size(a) == n;
}

/* Ping with ref; the next frame must be its pong. */
static void
expect_pong_at(struct cl *c, const char *ref, int line)
{
	json_t *j;

	csend(c, "{\"type\":\"ping\",\"ref\":\"%s\"}", ref);
	j = expect_at(c, "pong", line);
	CHECK_AT(j != NULL && jstreq(j, "ref", ref) && jint(j, "ts") > 0,
	    line, "pong with ref and ts");
	json_decref(j);
}

#define PONG(c, ref) expect_pong_at((c), (ref), __LINE__)

static char *
token_for(const char *user, int64_t exp_offset)
{
	return jwt_sign_user((const uint8_t *)SECRET, strlen(SECRET), user,
	    (int64_t)time(NULL) + exp_offset);
}

static char *token_payload(const char *secret, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static char *
token_payload(const char *secret, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return jwt_sign((const uint8_t *)secret, strlen(secret), buf);
}

/* ---- processes: bounded pipes and reaping ---------------------------- */

/* Read exactly len bytes from fd before deadline. 0, or -1. */
static int
read_full(int fd, void *buf, size_t len, int64_t deadline)
{
	char *p = buf;
	ssize_t n;

	while (len > 0) {
		if (wsc_wait_fd(fd, POLLIN, deadline) != 1)
			return -1;
		n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Wait for a child until deadline; SIGKILL it after. Its exit status or -1. */
static int
reap(pid_t pid, int64_t deadline)
{
	int wstatus;
	pid_t r;

	for (;;) {
		r = waitpid(pid, &wstatus, WNOHANG);
		if (r == pid)
			return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
		if (r < 0 && errno != EINTR)
			return -1;
		if (wsc_now_ms() >= deadline)
			break;
		wsc_sleep_ms(5);
	}
	fprintf(stderr, "child %d did not exit in time: SIGKILL\n", (int)pid);
	kill(pid, SIGKILL);
	while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
		;
	return -1;
}

/* fork; the child never returns into CUnit and dies with the test program. */
static pid_t
fork_child(void)
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGPIPE, SIG_IGN);
	}
	return pid;
}

/* ---- fanout: 50 clients, 5 processes, 20 rooms ----------------------- */

#define FAN_PROCS 5
#define FAN_PER_PROC 10
#define FAN_CLIENTS (FAN_PROCS * FAN_PER_PROC)
#define FAN_ROOMS 20
#define FAN_SENDS 200           /* per client, over its rooms */
#define FAN_WINDOW 32           /* unacked sends in flight per client */
#define FAN_BATCH 8             /* sends per client per loop turn */
#define FAN_SETUP_MS 8000       /* connect, hello, join */
#define FAN_RUN_MS 15000        /* send and receive everything */

/* Client i joins 2 or 3 distinct rooms. */
static int
fan_rooms_of(int i, int rooms[3])
{
	rooms[0] = i % FAN_ROOMS;
	rooms[1] = (i + 7) % FAN_ROOMS;
	if (i % 2 == 0) {
		rooms[2] = (i + 13) % FAN_ROOMS;
		return 3;
	}
	return 2;
}

/* Events per room (send k of client i goes to its room k % n) and members. */
static void
fan_plan(long events[FAN_ROOMS], long members[FAN_ROOMS])
{
	int rooms[3], n;

	memset(events, 0, FAN_ROOMS * sizeof(*events));
	memset(members, 0, FAN_ROOMS * sizeof(*members));
	for (int i = 0; i < FAN_CLIENTS; i++) {
		n = fan_rooms_of(i, rooms);
		for (int s = 0; s < n; s++)
			members[rooms[s]]++;
		for (int k = 0; k < FAN_SENDS; k++)
			events[rooms[k % n]]++;
	}
}

struct fan_cl {
	struct wsc w;
	int idx, nrooms, rooms[3], dead;
	long long last[3];      /* last seq seen per room */
	long long want[3];      /* the room's final seq */
	int sent, acked;
	long long ack_seq[FAN_SENDS], own_seq[FAN_SENDS];
};

struct fan_result {
	int clients_ok;
	int nerr;
	long frames;
	char err[400];
};

static void fan_err(struct fan_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fan_err(struct fan_result *res, const char *fmt, ...)
{
	va_list ap;

	if (res->nerr++ > 0)
		return;
	va_start(ap, fmt);
	vsnprintf(res->err, sizeof(res->err), fmt, ap);
	va_end(ap);
}

static int
fan_slot(const struct fan_cl *c, const char *room)
{
	int r;

	if (room == NULL || sscanf(room, "fan-%d", &r) != 1)
		return -1;
	for (int s = 0; s < c->nrooms; s++)
		if (c->rooms[s] == r)
			return s;
	return -1;
}

static int
fan_done(const struct fan_cl *c)
{
	if (c->acked < FAN_SENDS)
		return 0;
	for (int s = 0; s < c->nrooms; s++)
		if (c->last[s] != c->want[s])
			return 0;
	return 1;
}

/* One frame for client c during the run. */
static void
fan_frame(struct fan_cl *c, const struct wsc_frame *f, struct fan_result *res)
{
	json_t *j;
	const char *type, *id;
	long long seq;
	int slot, who, k;
	char body[64];

	res->frames++;
	if (f->opcode != 1) {
		if (f->opcode == 8)
			fan_err(res, "fan%d: closed %d", c->idx, f->close_code);
		return;
	}
	j = json_loadb((const char *)f->payload, f->len, 0, NULL);
	type = jstr(j, "type");
	if (type == NULL) {
		fan_err(res, "fan%d: bad frame %.*s", c->idx,
		    (int)(f->len > 200 ? 200 : f->len), (const char *)f->payload);
	} else if (strcmp(type, "message") == 0) {
		slot = fan_slot(c, jstr(j, "room"));
		seq = jint(j, "seq");
		if (slot < 0) {
			fan_err(res, "fan%d: message for room %s, not joined",
			    c->idx, jstr(j, "room"));
		} else {
			if (seq != c->last[slot] + 1)
				fan_err(res, "fan%d: room fan-%02d: seq %lld "
				    "after %lld (gap, duplicate or disorder)",
				    c->idx, c->rooms[slot], seq, c->last[slot]);
			if (seq > c->last[slot])
				c->last[slot] = seq;
		}
		id = jstr(j, "id");
		if (id == NULL || sscanf(id, "c%d-%d", &who, &k) != 2 ||
		    k < 0 || k >= FAN_SENDS) {
			fan_err(res, "fan%d: message with id %s", c->idx,
			    id ? id : "(none)");
		} else {
			char user[16];

			/* Every message carries its sender's user, body and id. */
			snprintf(user, sizeof(user), "fan%d", who);
			snprintf(body, sizeof(body), "fan %d %d", who, k);
			if (!jstreq(j, "user", user) || !jstreq(j, "body", body))
				fan_err(res, "fan%d: message %s has user %s body "
				    "%s", c->idx, id, jstr(j, "user"),
				    jstr(j, "body"));
			if (who == c->idx) {
				if (c->own_seq[k] != 0)
					fan_err(res, "fan%d: own message %s "
					    "twice", c->idx, id);
				c->own_seq[k] = seq;
			}
		}
	} else if (strcmp(type, "ack") == 0) {
		id = jstr(j, "id");
		if (id == NULL || sscanf(id, "c%d-%d", &who, &k) != 2 ||
		    who != c->idx || k < 0 || k >= FAN_SENDS) {
			fan_err(res, "fan%d: ack with id %s", c->idx,
			    id ? id : "(none)");
		} else if (c->ack_seq[k] != 0) {
			fan_err(res, "fan%d: second ack for %s", c->idx, id);
		} else {
			slot = fan_slot(c, jstr(j, "room"));
			if (slot != k % c->nrooms || jint(j, "seq") < 1)
				fan_err(res, "fan%d: ack for %s: room %s seq "
				    "%lld", c->idx, id, jstr(j, "room"),
				    jint(j, "seq"));
			c->ack_seq[k] = jint(j, "seq");
			c->acked++;
		}
	} else if (strcmp(type, "presence") != 0) {
		fan_err(res, "fan%d: unexpected frame %.*s", c->idx,
		    (int)(f->len > 200 ? 200 : f->len), (const char *)f->payload);
	}
	json_decref(j);
}

/* Setup for one client: connect, hello, join its rooms (blocking, bounded). */
static int
fan_setup(struct fan_cl *c, int port, const char *src, const long *events,
    struct fan_result *res)
{
	int64_t deadline;
	struct wsc_frame f;
	char msg[256];
	int joined = 0, s;
	json_t *j;

	c->nrooms = fan_rooms_of(c->idx, c->rooms);
	for (s = 0; s < c->nrooms; s++)
		c->want[s] = events[c->rooms[s]];
	if (wsc_connect(&c->w, HOST, port, src, "/ws", NULL, 0, T_IO) != 101) {
		fan_err(res, "fan%d: connect failed", c->idx);
		return -1;
	}
	snprintf(msg, sizeof(msg), "{\"type\":\"hello\",\"name\":\"fan%d\"}",
	    c->idx);
	wsc_send_text(&c->w, msg);
	j = recv_json(&c->w, T_IO);
	if (!is_type(j, "welcome")) {
		fan_err(res, "fan%d: no welcome", c->idx);
		json_decref(j);
		return -1;
	}
	json_decref(j);
	for (s = 0; s < c->nrooms; s++) {
		snprintf(msg, sizeof(msg),
		    "{\"type\":\"join\",\"room\":\"fan-%02d\"}", c->rooms[s]);
		wsc_send_text(&c->w, msg);
	}
	deadline = wsc_now_ms() + T_IO;
	while (joined < c->nrooms) {
		if (wsc_recv(&c->w, &f, wsc_remaining_ms(deadline)) != 1) {
			fan_err(res, "fan%d: %d of %d joined", c->idx, joined,
			    c->nrooms);
			return -1;
		}
		j = json_loadb((const char *)f.payload, f.len, 0, NULL);
		if (is_type(j, "joined")) {
			s = fan_slot(c, jstr(j, "room"));
			if (s < 0 || jint(j, "seq") != 0)
				fan_err(res, "fan%d: joined %s seq %lld", c->idx,
				    jstr(j, "room"), jint(j, "seq"));
			joined++;
		} else if (!is_type(j, "presence")) {
			fan_err(res, "fan%d: unexpected frame while joining: "
			    "%.*s", c->idx, (int)(f.len > 200 ? 200 : f.len),
			    (const char *)f.payload);
		}
		json_decref(j);
	}
	return 0;
}

static void __attribute__((noreturn))
fan_child(int proc, int port, int wfd, int rfd)
{
	struct fan_cl *cls = calloc(FAN_PER_PROC, sizeof(*cls));
	struct pollfd pfd[FAN_PER_PROC];
	struct fan_result res;
	long events[FAN_ROOMS], members[FAN_ROOMS];
	struct wsc_frame f;
	char src[32], msg[256], go = 0;
	int64_t deadline;
	int i, n, k, r, ok = 1;

	memset(&res, 0, sizeof(res));
	snprintf(src, sizeof(src), "127.0.0.%d", 2 + proc);
	fan_plan(events, members);
	if (cls == NULL)
		_exit(2);
	for (i = 0; i < FAN_PER_PROC && ok; i++) {
		cls[i].idx = proc * FAN_PER_PROC + i;
		ok = fan_setup(&cls[i], port, src, events, &res) == 0;
	}
	(void)!write(wfd, ok ? "R" : "F", 1);
	if (!ok || read_full(rfd, &go, 1, wsc_now_ms() + FAN_SETUP_MS + 5000) < 0 ||
	    go != 'G') {
		if (ok)
			fan_err(&res, "proc %d: no go from the parent", proc);
		goto report;
	}

	deadline = wsc_now_ms() + FAN_RUN_MS;
	for (;;) {
		int can_send = 0, all_done = 1;

		for (i = 0; i < FAN_PER_PROC; i++) {
			struct fan_cl *c = &cls[i];

			for (n = 0; !c->dead && n < FAN_BATCH &&
			    c->sent < FAN_SENDS &&
			    c->sent - c->acked < FAN_WINDOW; n++) {
				k = c->sent;
				snprintf(msg, sizeof(msg), "{\"type\":\"send\","
				    "\"room\":\"fan-%02d\",\"body\":\"fan %d %d\","
				    "\"id\":\"c%d-%d\"}", c->rooms[k % c->nrooms],
				    c->idx, k, c->idx, k);
				if (wsc_send_text(&c->w, msg) < 0) {
					fan_err(&res, "fan%d: send failed",
					    c->idx);
					c->dead = 1;
					break;
				}
				c->sent++;
			}
			if (!c->dead && c->sent < FAN_SENDS &&
			    c->sent - c->acked < FAN_WINDOW)
				can_send = 1;
			if (!c->dead && !fan_done(c))
				all_done = 0;
			pfd[i].fd = c->dead ? -1 : c->w.fd;
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
		}
		if (all_done)
			break;
		if (wsc_now_ms() >= deadline) {
			for (i = 0; i < FAN_PER_PROC; i++) {
				struct fan_cl *c = &cls[i];

				if (c->dead || fan_done(c))
					continue;
				fan_err(&res, "fan%d: timeout: sent %d acked "
				    "%d, room fan-%02d at %lld of %lld",
				    c->idx, c->sent, c->acked, c->rooms[0],
				    c->last[0], c->want[0]);
			}
			break;
		}
		if (poll(pfd, FAN_PER_PROC, can_send ? 0 : 100) < 0 &&
		    errno != EINTR)
			break;
		for (i = 0; i < FAN_PER_PROC; i++) {
			struct fan_cl *c = &cls[i];

			if (c->dead)
				continue;
			while ((r = wsc_recv(&c->w, &f, 0)) == 1)
				fan_frame(c, &f, &res);
			if (r < 0) {
				fan_err(&res, "fan%d: connection lost", c->idx);
				c->dead = 1;
			}
		}
	}

	for (i = 0; i < FAN_PER_PROC; i++) {
		struct fan_cl *c = &cls[i];
		int good = !c->dead && fan_done(c);

		for (k = 0; good && k < FAN_SENDS; k++)
			if (c->ack_seq[k] < 1 || c->ack_seq[k] != c->own_seq[k]) {
				fan_err(&res, "fan%d: send %d: ack seq %lld, own "
				    "copy seq %lld", c->idx, k, c->ack_seq[k],
				    c->own_seq[k]);
				good = 0;
			}
		res.clients_ok += good;
	}
report:
	(void)!write(wfd, &res, sizeof(res));
	for (i = 0; i < FAN_PER_PROC; i++)
		wsc_close(&cls[i].w);
	_exit(0);
}

static void
test_fanout(void)
{
	long events[FAN_ROOMS], members[FAN_ROOMS], want_ev = 0, want_del = 0;
	int to_child[FAN_PROCS][2], from_child[FAN_PROCS][2];
	struct fan_result res[FAN_PROCS];
	pid_t pids[FAN_PROCS];
	int64_t t0 = wsc_now_ms(), deadline;
	int p, ready = 0, ok_clients = 0, st;
	double ev = -1, del = -1;
	char b;

	CU_ASSERT_FATAL(srv.pid > 0);
	fan_plan(events, members);
	for (int r = 0; r < FAN_ROOMS; r++) {
		want_ev += events[r];
		want_del += events[r] * members[r];
	}
	memset(res, 0, sizeof(res));
	for (p = 0; p < FAN_PROCS; p++) {
		CU_ASSERT_FATAL(pipe(to_child[p]) == 0 && pipe(from_child[p]) == 0);
		pids[p] = fork_child();
		CU_ASSERT_FATAL(pids[p] >= 0);
		if (pids[p] == 0) {
			for (int q = 0; q < p; q++) {
				close(to_child[q][1]);
				close(from_child[q][0]);
			}
			close(to_child[p][1]);
			close(from_child[p][0]);
			fan_child(p, srv.port, from_child[p][1], to_child[p][0]);
		}
		close(to_child[p][0]);
		close(from_child[p][1]);
	}
	/* Every client has joined every room before anyone sends. */
	deadline = wsc_now_ms() + FAN_SETUP_MS;
	for (p = 0; p < FAN_PROCS; p++)
		if (read_full(from_child[p][0], &b, 1, deadline) == 0 && b == 'R')
			ready++;
	CU_ASSERT_EQUAL(ready, FAN_PROCS);
	for (p = 0; p < FAN_PROCS; p++)
		(void)!write(to_child[p][1], ready == FAN_PROCS ? "G" : "X", 1);
	fprintf(stderr, "fanout: %d clients joined in %lld ms\n", FAN_CLIENTS,
	    (long long)(wsc_now_ms() - t0));
	t0 = wsc_now_ms();
	deadline = wsc_now_ms() + FAN_RUN_MS + 5000;
	for (p = 0; p < FAN_PROCS; p++) {
		if (read_full(from_child[p][0], &res[p], sizeof(res[p]),
		    deadline) < 0) {
			fprintf(stderr, "fanout: no result from process %d\n", p);
			CU_FAIL("a client process reported no result");
			continue;
		}
		ok_clients += res[p].clients_ok;
		if (res[p].nerr > 0)
			fprintf(stderr, "fanout: process %d: %d errors, first: "
			    "%s\n", p, res[p].nerr, res[p].err);
		CU_ASSERT_EQUAL(res[p].nerr, 0);
	}
	for (p = 0; p < FAN_PROCS; p++) {
		st = reap(pids[p], wsc_now_ms() + 3000);
		CU_ASSERT_EQUAL(st, 0);
		close(to_child[p][1]);
		close(from_child[p][0]);
	}
	fprintf(stderr, "fanout: %d/%d clients saw every seq once and in "
	    "order and every ack, %ld events in %lld ms\n", ok_clients,
	    FAN_CLIENTS, want_ev, (long long)(wsc_now_ms() - t0));
	CU_ASSERT_EQUAL(ok_clients, FAN_CLIENTS);

	/* Counters (summed over workers) settle once everything was seen. */
	deadline = wsc_now_ms() + 3000;
	do {
		if (server_metric(&srv, "parley_events_total", &ev) == 0 &&
		    server_metric(&srv, "parley_deliveries_total", &del) == 0 &&
		    ev == (double)want_ev && del == (double)want_del)
			break;
		wsc_sleep_ms(20);
	} while (wsc_now_ms() < deadline);
	if (ev != (double)want_ev || del != (double)want_del)
		fprintf(stderr, "fanout: parley_events_total %.0f (want %ld), "
		    "parley_deliveries_total %.0f (want %ld)\n", ev, want_ev,
		    del, want_del);
	CU_ASSERT_EQUAL(ev, (double)want_ev);
	CU_ASSERT_EQUAL(del, (double)want_del);
}

/* ---- join since: senders in other processes -------------------------- */

#define SND_PROCS 3
#define SND_COUNT 300           /* per sender: 900 events, so no replay
                                 * of a join since >= 0 passes 1000 */
#define SND_RUN_MS 10000
#define T_STREAM 5000          /* ms: a stream to reach a seq */

/*
 * A sender process: join room, send count messages keeping at most window
 * unacked, read everything (its copies must run gap-free from its join),
 * exit 0 when all are acked.
 */
static void __attribute__((noreturn))
sender_child(int port, const char *room, int n, int count, int window)
{
	int64_t deadline = wsc_now_ms() + SND_RUN_MS;
	struct wsc_frame f;
	struct wsc c;
	char msg[256], src[32];
	long long next = -1;
	int sent = 0, acked = 0, bad = 0, r;
	json_t *j;

	snprintf(src, sizeof(src), "127.0.0.%d", 10 + n);
	if (wsc_connect(&c, HOST, port, src, "/ws", NULL, 0, T_IO) != 101)
		_exit(10);
	snprintf(msg, sizeof(msg), "{\"type\":\"hello\",\"name\":\"snd%d\"}", n);
	wsc_send_text(&c, msg);
	snprintf(msg, sizeof(msg), "{\"type\":\"join\",\"room\":\"%s\"}", room);
	wsc_send_text(&c, msg);
	while (acked < count && bad == 0) {
		while (sent < count && sent - acked < window) {
			snprintf(msg, sizeof(msg), "{\"type\":\"send\",\"room\":"
			    "\"%s\",\"body\":\"b%d-%d\",\"id\":\"i%d-%d\"}",
			    room, n, sent, n, sent);
			if (wsc_send_text(&c, msg) < 0)
				_exit(11);
			sent++;
		}
		if (wsc_now_ms() >= deadline) {
			fprintf(stderr, "sender %d: timeout, %d sent %d acked\n",
			    n, sent, acked);
			_exit(12);
		}
		r = wsc_recv(&c, &f, wsc_remaining_ms(deadline));
		if (r < 0) {
			fprintf(stderr, "sender %d: connection lost\n", n);
			_exit(13);
		}
		if (r == 0 || f.opcode != 1)
			continue;
		j = json_loadb((const char *)f.payload, f.len, 0, NULL);
		if (is_type(j, "ack")) {
			acked++;
		} else if (is_type(j, "joined")) {
			next = jint(j, "seq") + 1;
		} else if (is_type(j, "message")) {
			if (next < 0 || jint(j, "seq") != next) {
				fprintf(stderr, "sender %d: seq %lld, expected "
				    "%lld\n", n, jint(j, "seq"), next);
				bad++;
			}
			next = jint(j, "seq") + 1;
		} else if (!is_type(j, "presence") && !is_type(j, "welcome")) {
			fprintf(stderr, "sender %d: unexpected %.*s\n", n,
			    (int)f.len, (const char *)f.payload);
			bad++;
		}
		json_decref(j);
	}
	wsc_close(&c);
	_exit(bad ? 14 : 0);
}

static void
start_senders(pid_t pids[SND_PROCS], const char *room, int window)
{
	for (int i = 0; i < SND_PROCS; i++) {
		pids[i] = fork_child();
		if (pids[i] == 0)
			sender_child(srv.port, room, i, SND_COUNT, window);
		CU_ASSERT(pids[i] > 0);
	}
}

static void
reap_senders(pid_t pids[SND_PROCS])
{
	int64_t deadline = wsc_now_ms() + SND_RUN_MS;

	for (int i = 0; i < SND_PROCS; i++) {
		int st = pids[i] > 0 ? reap(pids[i], deadline) : -1;

		if (st != 0)
			fprintf(stderr, "sender %d: exit status %d\n", i, st);
		CU_ASSERT_EQUAL(st, 0);
	}
}

/* A reader's view of one room's stream: each seq once, in order. */
struct track {
	const char *room;
	long long last;         /* last seq seen */
	long long first;        /* first seq seen, 0 before */
	int bad;
};

/*
 * Read c's frames until the room's seq reaches target; only message frames
 * of the room and presence frames may come. 1 when reached.
 */
static int
read_until(struct cl *c, struct track *t, long long target, int timeout_ms)
{
	int64_t deadline = wsc_now_ms() + timeout_ms;
	json_t *j;

	while (t->last < target && t->bad == 0) {
		j = recv_json(&c->w, wsc_remaining_ms(deadline));
		if (j == NULL) {
			fprintf(stderr, "[%s] %s: stream stopped at seq %lld "
			    "(want %lld, close %d)\n", c->user, t->room,
			    t->last, target, last_close);
			return 0;
		}
		if (is_type(j, "message") && jstreq(j, "room", t->room)) {
			if (jint(j, "seq") != t->last + 1) {
				fprintf(stderr, "[%s] %s: seq %lld after %lld: "
				    "gap or duplicate\n", c->user, t->room,
				    jint(j, "seq"), t->last);
				t->bad++;
			}
			if (t->first == 0)
				t->first = jint(j, "seq");
			t->last = jint(j, "seq");
		} else if (!is_type(j, "presence")) {
			jdump("unexpected frame in the stream: ", j);
			t->bad++;
		}
		json_decref(j);
	}
	return t->bad == 0 && t->last >= target;
}

/* join room with since; the first frame must be its joined. */
static json_t *
join_since_at(struct cl *c, const char *room, long long since, int line)
{
	json_t *j;

	csend(c, "{\"type\":\"join\",\"room\":\"%s\",\"since\":%lld,"
	    "\"ref\":\"js\"}", room, since);
	j = expect_at(c, "joined", line);
	CHECK_AT(j != NULL && jstreq(j, "room", room) && jstreq(j, "ref", "js"),
	    line, "joined room and ref");
	return j;
}

static int
since_round(int round, long long since, int window)
{
	const long long final = (long long)SND_PROCS * SND_COUNT;
	struct track tw = { NULL, 0, 0, 0 }, tj = { NULL, 0, 0, 0 };
	char room[32], name[32];
	struct cl w, late;
	pid_t pids[SND_PROCS];
	long long at = -1;
	json_t *j;
	int ok;

	snprintf(room, sizeof(room), "since-%d", round);
	tw.room = tj.room = room;
	snprintf(name, sizeof(name), "watch%d", round);
	if (!open_at(&w, name, __LINE__))
		return 0;
	JOIN(&w, room);
	snprintf(name, sizeof(name), "late%d", round);
	if (!open_at(&late, name, __LINE__)) {
		wsc_close(&w.w);
		return 0;
	}
	start_senders(pids, room, window);

	ok = read_until(&w, &tw, since, T_STREAM);
	CU_ASSERT(ok);
	if (ok) {
		j = join_since_at(&late, room, since, __LINE__);
		at = jint(j, "seq");
		CU_ASSERT(j != NULL && at >= since && at <= final);
		CU_ASSERT(json_object_get(j, "truncated") == NULL);
		json_decref(j);
		tj.last = since;
		ok = j != NULL && read_until(&late, &tj, final, T_STREAM);
		CU_ASSERT(ok);
		CU_ASSERT_EQUAL(tj.bad, 0);
		CU_ASSERT_EQUAL(tj.last, final);
	}
	if (ok) {
		ok = read_until(&w, &tw, final, T_STREAM);
		CU_ASSERT(ok);
		CU_ASSERT_EQUAL(tw.last, final);
		fprintf(stderr, "join since: round %d: since %lld, joined at "
		    "seq %lld of %lld: %lld replayed, %lld live\n", round,
		    since, at, final, at - since, final - at);
	}
	wsc_close(&w.w);
	wsc_close(&late.w);
	reap_senders(pids);
	return ok;
}

static void
test_join_since(void)
{
	/* Stop at the first failed round: every wait is bounded once. */
	if (since_round(1, 100, 1) && since_round(2, 300, 4) &&
	    since_round(3, 600, 16))
		since_round(4, 0, 2);
}

/* Disconnect at the cut points, reconnect, join with since = last seen. */
static int
resume_round(int round, const long long cuts[2], int graceful)
{
	const long long final = (long long)SND_PROCS * SND_COUNT;
	struct track t = { NULL, 0, 0, 0 };
	char room[32], name[32];
	pid_t pids[SND_PROCS];
	struct cl c;
	json_t *j;
	int ok = 1;

	snprintf(room, sizeof(room), "resume-%d", round);
	snprintf(name, sizeof(name), "resumer%d", round);
	t.room = room;
	if (!open_at(&c, name, __LINE__))
		return 0;
	JOIN(&c, room);
	start_senders(pids, room, 3);
	for (int i = 0; i < 2 && ok; i++) {
		ok = read_until(&c, &t, cuts[i], T_STREAM);
		CU_ASSERT(ok);
		if (!ok)
			break;
		if (graceful) {
			/* Frames still coming are dropped: they come again. */
			CU_ASSERT_EQUAL(wsc_send_frame(&c.w, 8, 1, "\x03\xe8", 2,
			    0), 0);
			CU_ASSERT_EQUAL(wsc_recv_close(&c.w, T_IO), 1000);
		}
		wsc_close(&c.w);
		ok = open_at(&c, name, __LINE__);
		if (!ok)
			break;
		j = join_since_at(&c, room, t.last, __LINE__);
		ok = j != NULL && jint(j, "seq") >= t.last;
		CU_ASSERT(ok);
		fprintf(stderr, "resume: round %d: reconnected after seq %lld, "
		    "room at %lld\n", round, t.last, jint(j, "seq"));
		json_decref(j);
	}
	if (ok) {
		ok = read_until(&c, &t, final, T_STREAM);
		CU_ASSERT(ok);
		CU_ASSERT_EQUAL(t.first, 1);
		CU_ASSERT_EQUAL(t.last, final);
		CU_ASSERT_EQUAL(t.bad, 0);
	}
	wsc_close(&c.w);
	reap_senders(pids);
	return ok;
}

static void
test_resume(void)
{
	static const long long a[2] = { 150, 500 }, b[2] = { 320, 700 };

	if (resume_round(1, a, 0))
		resume_round(2, b, 1);
}

/*
 * More than 1000 to replay: the latest 1000 and truncated: true; the
 * client then pages back with history (PROTOCOL.md 4) down to seq 1.
 */
#define TRUNC_EVENTS 1100

static void
test_truncated(void)
{
	static const char room[] = "trunc";
	struct track t = { room, 0, 0, 0 };
	long long sent = 0, acked = 0, before, want_from, got, i;
	struct cl a, b;
	json_t *j, *evs;
	char msg[160];
	int more, pages = 0;

	OPEN(&a, "trunc-a");
	JOIN(&a, room);
	/* Pipelined: at most 64 unacked. */
	while (acked < TRUNC_EVENTS) {
		while (sent < TRUNC_EVENTS && sent - acked < 64) {
			snprintf(msg, sizeof(msg), "{\"type\":\"send\",\"room\":"
			    "\"%s\",\"body\":\"t%lld\"}", room, sent + 1);
			CU_ASSERT_FATAL(wsc_send_text(&a.w, msg) == 0);
			sent++;
		}
		j = cl_recv(&a);
		CU_ASSERT_FATAL(j != NULL);
		if (is_type(j, "ack"))
			acked++;
		else if (is_type(j, "message"))
			CU_ASSERT_EQUAL(jint(j, "seq"), ++t.last);
		json_decref(j);
	}
	CU_ASSERT_FATAL(read_until(&a, &t, TRUNC_EVENTS, T_IO));

	OPEN(&b, "trunc-b");
	j = join_since_at(&b, room, 0, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "seq") == TRUNC_EVENTS &&
	    jtrue(j, "truncated"));
	json_decref(j);
	/* The latest 1000, in order, then live traffic. */
	for (i = TRUNC_EVENTS - 1000 + 1; i <= TRUNC_EVENTS; i++) {
		j = expect_at(&b, "message", __LINE__);
		if (j == NULL || jint(j, "seq") != i) {
			fprintf(stderr, "replay: expected seq %lld\n", i);
			jdump("got: ", j);
			CU_FAIL("truncated replay is the latest 1000");
			json_decref(j);
			break;
		}
		json_decref(j);
	}
	PRESENCE(&a, room, "trunc-b", "online");
	CU_ASSERT_EQUAL(SAY(&a, room, "live", NULL), TRUNC_EVENTS + 1);
	HEAR(&b, room, TRUNC_EVENTS + 1, "trunc-a", "live");

	/* Page back with history from the oldest replayed event to seq 1. */
	before = TRUNC_EVENTS - 1000 + 1;
	do {
		csend(&b, "{\"type\":\"history\",\"room\":\"%s\",\"before\":%lld,"
		    "\"limit\":50,\"ref\":\"h\"}", room, before);
		j = expect_at(&b, "history", __LINE__);
		if (j == NULL)
			break;
		evs = json_object_get(j, "events");
		more = jtrue(j, "more");
		want_from = before - 50 > 1 ? before - 50 : 1;
		got = json_is_array(evs) ? (long long)json_array_size(evs) : -1;
		if (got != before - want_from ||
		    jint(json_array_get(evs, 0), "seq") != want_from ||
		    more != (want_from > 1)) {
			fprintf(stderr, "history before %lld limit 50: %lld "
			    "events from seq %lld, more %d; expected %lld from "
			    "seq %lld, more %d\n", before, got,
			    jint(json_array_get(evs, 0), "seq"), more,
			    before - want_from, want_from, want_from > 1);
			CU_FAIL("history pages back to seq 1 after a truncated "
			    "replay");
			json_decref(j);
			break;
		}
		for (i = 0; i < got; i++)
			CU_ASSERT_EQUAL(jint(json_array_get(evs, (size_t)i),
			    "seq"), want_from + i);
		before = want_from;
		json_decref(j);
	} while (more && ++pages < 10);
	CU_ASSERT_EQUAL(before, 1);
	wsc_close(&a.w);
	wsc_close(&b.w);
}

/* ---- protocol: identity --------------------------------------------- */

/* hello with a token: welcome fields; the token decides over a name. */
static void
test_hello_token(void)
{
	char *ta = token_for("alice", 3600), *tb = token_for("bob", 3600);
	char sess[64] = "";
	struct cl a, a2, b;
	json_t *j;

	CU_ASSERT_FATAL(ta != NULL && tb != NULL);
	CU_ASSERT_FATAL(cl_connect(&a, NULL, NULL) == 101);
	snprintf(a.user, sizeof(a.user), "alice");
	csend(&a, "{\"type\":\"hello\",\"token\":\"%s\",\"ref\":\"h1\"}", ta);
	j = EXPECT(&a, "welcome");
	CU_ASSERT(j != NULL && jstreq(j, "user", "alice") &&
	    jstreq(j, "ref", "h1"));
	CU_ASSERT(jstr(j, "session") != NULL && jstr(j, "session")[0] != '\0');
	CU_ASSERT_EQUAL(jint(j, "heartbeat"), 30);
	CU_ASSERT_EQUAL(jint(j, "max_body"), 100);
	CU_ASSERT(jstr(j, "server") != NULL && jstr(j, "server")[0] != '\0');
	if (jstr(j, "session") != NULL)
		snprintf(sess, sizeof(sess), "%s", jstr(j, "session"));
	json_decref(j);

	/* Another connection of the same user: another session. */
	CU_ASSERT_FATAL(cl_connect(&a2, NULL, NULL) == 101);
	snprintf(a2.user, sizeof(a2.user), "alice");
	csend(&a2, "{\"type\":\"hello\",\"token\":\"%s\"}", ta);
	j = EXPECT(&a2, "welcome");
	CU_ASSERT(j != NULL && jstreq(j, "user", "alice") &&
	    jstr(j, "session") != NULL && !jstreq(j, "session", sess) &&
	    json_object_get(j, "ref") == NULL);
	json_decref(j);

	/* Token and name: the token decides. */
	CU_ASSERT_FATAL(cl_connect(&b, NULL, NULL) == 101);
	snprintf(b.user, sizeof(b.user), "bob");
	csend(&b, "{\"type\":\"hello\",\"name\":\"mallory\",\"token\":\"%s\"}", tb);
	j = EXPECT(&b, "welcome");
	CU_ASSERT(j != NULL && jstreq(j, "user", "bob"));
	json_decref(j);

	/* The identity is the token's sub. */
	JOIN(&a, "tok-room");
	JOIN(&b, "tok-room");
	PRESENCE(&a, "tok-room", "bob", "online");
	CU_ASSERT(SAY(&b, "tok-room", "from bob", NULL) == 1);
	HEAR(&a, "tok-room", 1, "bob", "from bob");

	/* A second hello is bad_request; the connection stays. */
	csend(&a, "{\"type\":\"hello\",\"token\":\"%s\",\"ref\":\"h2\"}", ta);
	EXPECT_ERROR(&a, "bad_request", "h2");
	csend(&a, "{\"type\":\"hello\",\"name\":\"alice\",\"ref\":\"h3\"}");
	EXPECT_ERROR(&a, "bad_request", "h3");
	PONG(&a, "still");
	wsc_close(&a.w);
	wsc_close(&a2.w);
	wsc_close(&b.w);
	free(ta);
	free(tb);
}

/* Clock leeway of 60 s on exp and nbf. */
static void
test_hello_leeway(void)
{
	int64_t now = (int64_t)time(NULL);
	char *t1 = token_payload(SECRET, "{\"sub\":\"lee\",\"exp\":%lld}",
	    (long long)(now - 30));
	char *t2 = token_payload(SECRET, "{\"sub\":\"lee\",\"exp\":%lld,"
	    "\"nbf\":%lld,\"iat\":%lld}", (long long)(now + 3600),
	    (long long)(now + 30), (long long)now);
	struct cl c;
	json_t *j;

	CU_ASSERT_FATAL(cl_connect(&c, NULL, NULL) == 101);
	csend(&c, "{\"type\":\"hello\",\"token\":\"%s\"}", t1);
	j = EXPECT(&c, "welcome");
	CU_ASSERT(j != NULL && jstreq(j, "user", "lee"));
	json_decref(j);
	wsc_close(&c.w);
	CU_ASSERT_FATAL(cl_connect(&c, NULL, NULL) == 101);
	csend(&c, "{\"type\":\"hello\",\"token\":\"%s\"}", t2);
	j = EXPECT(&c, "welcome");
	CU_ASSERT(j != NULL && jstreq(j, "user", "lee"));
	json_decref(j);
	wsc_close(&c.w);
	free(t1);
	free(t2);
}

static char *strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A malloc'd formatted string (never NULL: the test aborts instead). */
static char *
strf(const char *fmt, ...)
{
	char *p = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	return p;
}

/* Bad tokens and names: unauthorized (ref echoed), then close 1008. */
static void
test_hello_refused(void)
{
	int64_t now = (int64_t)time(NULL);
	char *good = token_for("alice", 3600), *hello[16], *t, *dot;
	char none[2048];
	int n = 0;
	struct cl c;

	CU_ASSERT_FATAL(good != NULL);
	/* Wrong secret; the secret with its newline (the server strips it). */
	t = jwt_sign_user((const uint8_t *)"other", 5, "alice", now + 3600);
	hello[n++] = strf("{\"type\":\"hello\",\"token\":\"%s\"", t);
	free(t);
	t = jwt_sign_user((const uint8_t *)SECRET "\n", strlen(SECRET) + 1,
	    "alice", now + 3600);
	hello[n++] = strf("{\"type\":\"hello\",\"token\":\"%s\"", t);
	free(t);
	/* Expired beyond the leeway, not yet valid beyond it, no exp. */
	t = token_payload(SECRET, "{\"sub\":\"alice\",\"exp\":%lld}",
	    (long long)(now - 600));
	hello[n++] = strf("{\"type\":\"hello\",\"token\":\"%s\"", t);
	free(t);
	t = token_payload(SECRET, "{\"sub\":\"alice\",\"exp\":%lld,\"nbf\":%lld}",
	    (long long)(now + 3600), (long long)(now + 600));
	hello[n++] = strf("{\"type\":\"hello\",\"token\":\"%s\"", t);
	free(t);
	t = token_payload(SECRET, "{\"sub\":\"alice\"}");
	hello[n++] = strf("{\"type\":\"hello\",\"token\":\"%s\"", t);
	free(t);
	/* A sub that is not a user name. */
	t = token_payload(SECRET, "{\"sub\":\"a b\",\"exp\":%lld}",
	    (long long)(now + 3600));
	hello[n++] = strf("{\"type\":\"hello\",\"token\":\"%s\"", t);
	free(t);
	/* alg none: the good payload, a none header, no signature. */
	dot = strchr(good, '.');
	snprintf(none, sizeof(none), "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0%.*s.",
	    (int)(strrchr(good, '.') - dot), dot);
	hello[n++] = strf("{\"type\":\"hello\",\"token\":\"%s\"", none);
	hello[n++] = strf("{\"type\":\"hello\",\"token\":\"garbage\"");
	/* A bad token with a good name: the token decides. */
	hello[n++] = strf("{\"type\":\"hello\",\"token\":\"x.y.z\","
	    "\"name\":\"alice\"");
	hello[n++] = strf("{\"type\":\"hello\",\"token\":5");
	/* Bad names, no identity at all. */
	hello[n++] = strf("{\"type\":\"hello\",\"name\":\"bad name\"");
	hello[n++] = strf("{\"type\":\"hello\",\"name\":"
	    "\"abcdefghijklmnopqrstuvwxyz0123456\"");
	hello[n++] = strf("{\"type\":\"hello\",\"name\":\"\"");
	hello[n++] = strf("{\"type\":\"hello\",\"name\":7");
	hello[n++] = strf("{\"type\":\"hello\"");
	for (int i = 0; i < n; i++) {
		CU_ASSERT_FATAL(cl_connect(&c, NULL, NULL) == 101);
		snprintf(c.user, sizeof(c.user), "hello #%d", i);
		csend(&c, "%s,\"ref\":\"bad%d\"}", hello[i], i);
		EXPECT_ERROR(&c, "unauthorized", NULL);
		EXPECT_CLOSE(&c, 1008);
		wsc_close(&c.w);
		free(hello[i]);
	}
	free(good);
}

/* Anything before a successful hello: unauthorized, then close 1008. */
static void
test_before_hello(void)
{
	static const char *const reqs[] = {
		"{\"type\":\"join\",\"room\":\"x\",\"ref\":\"b1\"}",
		"{\"type\":\"ping\",\"ref\":\"b2\"}",
		"{\"type\":\"send\",\"room\":\"x\",\"body\":\"hi\",\"ref\":\"b3\"}",
		"{\"type\":\"nope\",\"ref\":\"b4\"}",
		"not json",
		"[1,2,3]",
		NULL
	};
	struct cl c;

	for (int i = 0; reqs[i] != NULL; i++) {
		CU_ASSERT_FATAL(cl_connect(&c, NULL, NULL) == 101);
		snprintf(c.user, sizeof(c.user), "before-hello #%d", i);
		CU_ASSERT_EQUAL(wsc_send_text(&c.w, reqs[i]), 0);
		if (strstr(reqs[i], "\"ref\"") != NULL) {
			char ref[8];

			snprintf(ref, sizeof(ref), "b%d", i + 1);
			EXPECT_ERROR(&c, "unauthorized", ref);
		} else {
			EXPECT_ERROR(&c, "unauthorized", NULL);
		}
		EXPECT_CLOSE(&c, 1008);
		wsc_close(&c.w);
	}
}

/* Silence after the upgrade: after 10 s, unauthorized and close 1008. */
static void
test_hello_timeout(void)
{
	struct wsc_frame f;
	struct cl c;
	json_t *j;

	CU_ASSERT_FATAL(cl_connect(&c, NULL, NULL) == 101);
	snprintf(c.user, sizeof(c.user), "silent");
	CU_ASSERT_EQUAL_FATAL(wsc_recv(&c.w, &f, 13000), 1);
	CU_ASSERT_EQUAL(f.opcode, 1);
	j = json_loadb((const char *)f.payload, f.len, 0, NULL);
	CU_ASSERT(j != NULL && jstreq(j, "type", "error") &&
	    jstreq(j, "code", "unauthorized"));
	json_decref(j);
	EXPECT_CLOSE(&c, 1008);
	wsc_close(&c.w);
}

/* A raw upgrade request carrying a token; returns the HTTP status. */
static int
upgrade_with(const char *path, const char *headers, struct http_resp *r)
{
	char q[4096];

	snprintf(q, sizeof(q), "GET %s HTTP/1.1\r\nHost: x\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n%s\r\n", path, headers);
	return http_request(srv.port, q, strlen(q), r, T_IO);
}

static void
check_401(const char *path, const char *headers)
{
	struct http_resp r;
	char ct[128] = "";
	json_t *j;
	int st = upgrade_with(path, headers, &r);

	if (st != 401)
		fprintf(stderr, "upgrade %s %s: status %d, expected 401\n",
		    path, headers, st);
	CU_ASSERT_EQUAL(st, 401);
	CU_ASSERT(http_header(&r, "Content-Type", ct, sizeof(ct)) &&
	    strncasecmp(ct, "application/json", 16) == 0);
	j = r.body != NULL ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
	CU_ASSERT(j != NULL && json_is_string(json_object_get(j, "error")));
	json_decref(j);
	http_resp_free(&r);
}

/* PROTOCOL.md 7: /api/ needs a valid bearer token before anything else. */
static void
test_api_needs_token(void)
{
	static const char *const paths[] = {
		"/api/rooms", "/api/rooms/lobby/events", "/api/nothing-here", NULL
	};
	char *good = token_for("apiuser", 3600), *bad = token_for("apiuser", -3600);
	char hdr[4200], q[4400];
	struct http_resp r;

	for (int i = 0; paths[i] != NULL; i++) {
		snprintf(q, sizeof(q), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
		CU_ASSERT_EQUAL(http_request(srv.port, q, strlen(q), &r, T_IO), 401);
		http_resp_free(&r);
		snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", bad);
		snprintf(q, sizeof(q), "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", paths[i], hdr);
		CU_ASSERT_EQUAL(http_request(srv.port, q, strlen(q), &r, T_IO), 401);
		http_resp_free(&r);
		snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", good);
		snprintf(q, sizeof(q), "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n", paths[i], hdr);
		CU_ASSERT_NOT_EQUAL(http_request(srv.port, q, strlen(q), &r, T_IO), 401);
		http_resp_free(&r);
	}
	check_401("/api/rooms", "");
	free(good);
	free(bad);
}

/* A token in the upgrade request: welcome at once, no hello; 401 if bad. */
static void
test_upgrade_token(void)
{
	char *tu = token_for("upq", 3600), *tb = token_for("upb", 3600);
	char *wrong = jwt_sign_user((const uint8_t *)"nope", 4, "upq",
	    (int64_t)time(NULL) + 3600);
	char *expired = token_for("upq", -600);
	char path[2048], hdr[2048];
	struct cl q, b;
	json_t *j;

	snprintf(path, sizeof(path), "/ws?token=%s", tu);
	CU_ASSERT_FATAL(cl_connect(&q, path, NULL) == 101);
	snprintf(q.user, sizeof(q.user), "upq");
	j = EXPECT(&q, "welcome");
	CU_ASSERT(j != NULL && jstreq(j, "user", "upq") &&
	    jstr(j, "session") != NULL && jint(j, "heartbeat") == 30 &&
	    jint(j, "max_body") == 100 && jstr(j, "server") != NULL);
	json_decref(j);

	snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", tb);
	CU_ASSERT_FATAL(cl_connect(&b, NULL, hdr) == 101);
	snprintf(b.user, sizeof(b.user), "upb");
	j = EXPECT(&b, "welcome");
	CU_ASSERT(j != NULL && jstreq(j, "user", "upb"));
	json_decref(j);

	/* Authenticated: chat works, a hello is a second hello. */
	JOIN(&q, "up-room");
	JOIN(&b, "up-room");
	PRESENCE(&q, "up-room", "upb", "online");
	CU_ASSERT(SAY(&q, "up-room", "via query", NULL) == 1);
	HEAR(&b, "up-room", 1, "upq", "via query");
	csend(&b, "{\"type\":\"hello\",\"name\":\"x\",\"ref\":\"h\"}");
	EXPECT_ERROR(&b, "bad_request", "h");
	PONG(&b, "alive");
	wsc_close(&q.w);
	wsc_close(&b.w);

	/* Invalid tokens in the upgrade: 401 with a JSON body, no upgrade. */
	check_401("/ws?token=garbage", "");
	snprintf(path, sizeof(path), "/ws?token=%s", wrong);
	check_401(path, "");
	snprintf(path, sizeof(path), "/ws?token=%s", expired);
	check_401(path, "");
	check_401("/ws", "Authorization: Bearer garbage\r\n");
	snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", wrong);
	check_401("/ws", hdr);
	free(tu);
	free(tb);
	free(wrong);
	free(expired);
}

/* ---- protocol: requests ---------------------------------------------- */

static void
test_ping_refs(void)
{
	static const char ref64[] =
	    "0123456789012345678901234567890123456789012345678901234567890123";
	struct cl c;
	json_t *j;

	OPEN(&c, "pinger");
	PONG(&c, "r1");
	PONG(&c, ref64);
	csend(&c, "{\"type\":\"ping\"}");
	j = EXPECT(&c, "pong");
	CU_ASSERT(j != NULL && jint(j, "ts") > 1600000000000LL &&
	    json_object_get(j, "ref") == NULL);
	json_decref(j);
	/* Unknown fields are ignored. */
	csend(&c, "{\"type\":\"ping\",\"ref\":\"u\",\"extra\":[1,{\"a\":2}]}");
	j = EXPECT(&c, "pong");
	CU_ASSERT(j != NULL && jstreq(j, "ref", "u"));
	json_decref(j);
	/* ref on joined, left, ack, history, error. */
	csend(&c, "{\"type\":\"join\",\"room\":\"refs\",\"ref\":\"R1\"}");
	j = EXPECT(&c, "joined");
	CU_ASSERT(jstreq(j, "ref", "R1"));
	json_decref(j);
	csend(&c, "{\"type\":\"history\",\"room\":\"refs\",\"ref\":\"R2\"}");
	j = EXPECT(&c, "history");
	CU_ASSERT(jstreq(j, "ref", "R2") && jstreq(j, "room", "refs") &&
	    json_array_size(json_object_get(j, "events")) == 0 &&
	    json_is_false(json_object_get(j, "more")));
	json_decref(j);
	csend(&c, "{\"type\":\"send\",\"room\":\"refs\",\"body\":\"x\",\"ref\":\"R3\"}");
	{
		json_t *ev, *ack;

		if (expect_pair_at(&c, "message", &ev, &ack, __LINE__))
			CU_ASSERT(jstreq(ack, "ref", "R3") &&
			    json_object_get(ev, "ref") == NULL);
		json_decref(ev);
		json_decref(ack);
	}
	csend(&c, "{\"type\":\"send\",\"room\":\"refs\",\"ref\":\"R4\"}");
	EXPECT_ERROR(&c, "bad_request", "R4");
	csend(&c, "{\"type\":\"leave\",\"room\":\"refs\",\"ref\":\"R5\"}");
	j = EXPECT(&c, "left");
	CU_ASSERT(jstreq(j, "ref", "R5") && jstreq(j, "room", "refs"));
	json_decref(j);
	wsc_close(&c.w);
}

/* Every malformed request is bad_request; the connection stays. */
static void
test_bad_requests(void)
{
	static const char *const bad[] = {
		/* framing and type */
		"not json", "[]", "42", "\"str\"", "{}",
		"{\"ref\":\"r\"}",
		"{\"type\":\"nope\",\"ref\":\"r\"}",
		"{\"type\":5,\"ref\":\"r\"}",
		"{\"type\":\"ping\",\"ref\":5}",
		"{\"type\":\"ping\",\"ref\":"
		"\"01234567890123456789012345678901234567890123456789012345678901234\"}",
		/* room names */
		"{\"type\":\"join\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":5,\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"has space\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"a/b\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"caf\\u00e9\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		"aaaaaaaaaaaaaaaaaaaaaaaaa\",\"ref\":\"r\"}",          /* 65 */
		"{\"type\":\"join\",\"room\":\"dm:bob:alice\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"dm:alice:alice\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"dm:alice\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"dm::bob\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"dm:alice:b c\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"dm:a:b:c\",\"ref\":\"r\"}",
		"{\"type\":\"send\",\"room\":\"dm:bob:alice\",\"body\":\"x\",\"ref\":\"r\"}",
		"{\"type\":\"leave\",\"room\":\"a b\",\"ref\":\"r\"}",
		/* since */
		"{\"type\":\"join\",\"room\":\"badreq\",\"since\":-1,\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"badreq\",\"since\":\"3\",\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"badreq\",\"since\":1.5,\"ref\":\"r\"}",
		"{\"type\":\"join\",\"room\":\"badreq\",\"since\":null,\"ref\":\"r\"}",
		/* send */
		"{\"type\":\"send\",\"room\":\"badreq\",\"ref\":\"r\"}",
		"{\"type\":\"send\",\"room\":\"badreq\",\"body\":5,\"ref\":\"r\"}",
		"{\"type\":\"send\",\"room\":\"badreq\",\"body\":\"\",\"ref\":\"r\"}",
		"{\"type\":\"send\",\"room\":\"badreq\",\"body\":\"x\",\"id\":5,\"ref\":\"r\"}",
		"{\"type\":\"send\",\"room\":\"badreq\",\"body\":\"x\",\"ref\":\"r\","
		"\"id\":\"01234567890123456789012345678901234567890123456789012345678901234\"}",
		"{\"type\":\"send\",\"body\":\"x\",\"ref\":\"r\"}",
		/* edit, delete, react */
		"{\"type\":\"edit\",\"room\":\"badreq\",\"body\":\"x\",\"ref\":\"r\"}",
		"{\"type\":\"edit\",\"room\":\"badreq\",\"target\":0,\"body\":\"x\",\"ref\":\"r\"}",
		"{\"type\":\"edit\",\"room\":\"badreq\",\"target\":\"1\",\"body\":\"x\",\"ref\":\"r\"}",
		"{\"type\":\"edit\",\"room\":\"badreq\",\"target\":1,\"ref\":\"r\"}",
		"{\"type\":\"delete\",\"room\":\"badreq\",\"target\":-1,\"ref\":\"r\"}",
		"{\"type\":\"delete\",\"room\":\"badreq\",\"ref\":\"r\"}",
		"{\"type\":\"react\",\"room\":\"badreq\",\"target\":1,\"ref\":\"r\"}",
		"{\"type\":\"react\",\"room\":\"badreq\",\"target\":1,\"emoji\":\"\",\"ref\":\"r\"}",
		"{\"type\":\"react\",\"room\":\"badreq\",\"target\":1,\"ref\":\"r\","
		"\"emoji\":\"012345678901234567890123456789012\"}",
		"{\"type\":\"react\",\"room\":\"badreq\",\"target\":1,\"emoji\":\"x\","
		"\"add\":\"yes\",\"ref\":\"r\"}",
		"{\"type\":\"react\",\"room\":\"badreq\",\"target\":0,\"emoji\":\"x\",\"ref\":\"r\"}",
		/* typing, read, history */
		"{\"type\":\"typing\",\"room\":\"badreq\",\"ref\":\"r\"}",
		"{\"type\":\"typing\",\"room\":\"badreq\",\"active\":\"true\",\"ref\":\"r\"}",
		"{\"type\":\"typing\",\"room\":\"badreq\",\"active\":1,\"ref\":\"r\"}",
		"{\"type\":\"read\",\"room\":\"badreq\",\"ref\":\"r\"}",
		"{\"type\":\"read\",\"room\":\"badreq\",\"seq\":0,\"ref\":\"r\"}",
		"{\"type\":\"history\",\"room\":\"badreq\",\"limit\":0,\"ref\":\"r\"}",
		"{\"type\":\"history\",\"room\":\"badreq\",\"before\":0,\"ref\":\"r\"}",
		"{\"type\":\"history\",\"room\":\"badreq\",\"limit\":\"5\",\"ref\":\"r\"}",
		NULL
	};
	struct cl c;
	json_t *j;

	OPEN(&c, "badreq-user");
	JOIN(&c, "badreq");
	for (int i = 0; bad[i] != NULL; i++) {
		const char *ref = strstr(bad[i], "\"ref\":\"r\"") ? "r" : NULL;

		CU_ASSERT_EQUAL(wsc_send_text(&c.w, bad[i]), 0);
		j = expect_error_at(&c, "bad_request", ref, __LINE__);
		if (j == NULL || !jstreq(j, "code", "bad_request"))
			fprintf(stderr, "  ... for request #%d: %s\n", i, bad[i]);
		json_decref(j);
	}
	/* The edge values that are valid. */
	JOIN(&c, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	JOIN(&c, "A-z_0.9");
	CU_ASSERT(SAY(&c, "badreq", "edge id",
	    "0123456789012345678901234567890123456789012345678901234567890123") == 1);
	csend(&c, "{\"type\":\"react\",\"room\":\"badreq\",\"target\":1,\"ref\":\"e\","
	    "\"emoji\":\"01234567890123456789012345678901\"}");
	{
		json_t *ev, *ack;

		if (expect_pair_at(&c, "reaction", &ev, &ack, __LINE__))
			CU_ASSERT(jstreq(ev, "emoji",
			    "01234567890123456789012345678901") &&
			    json_is_true(json_object_get(ev, "add")) &&
			    jint(ev, "target") == 1);
		json_decref(ev);
		json_decref(ack);
	}
	csend(&c, "{\"type\":\"history\",\"room\":\"badreq\",\"limit\":500,\"ref\":\"h\"}");
	j = EXPECT(&c, "history");
	CU_ASSERT(j != NULL && json_array_size(json_object_get(j, "events")) == 2);
	json_decref(j);
	PONG(&c, "after");
	wsc_close(&c.w);
}

/* body over max_body (UTF-8 bytes of the decoded string) is too_large. */
static void
test_too_large(void)
{
	char body[512], big[512];
	struct cl c;
	long long seq;

	OPEN(&c, "big-user");
	JOIN(&c, "big");
	memset(body, 'a', 100);
	body[100] = '\0';
	CU_ASSERT(SAY(&c, "big", body, NULL) == 1);
	csend(&c, "{\"type\":\"send\",\"room\":\"big\",\"body\":\"%sb\",\"ref\":\"t1\"}",
	    body);
	EXPECT_ERROR(&c, "too_large", "t1");
	/* 33 x U+20AC = 99 bytes passes, 34 = 102 bytes does not. */
	big[0] = '\0';
	for (int i = 0; i < 33; i++)
		strcat(big, "\xe2\x82\xac");
	seq = SAY(&c, "big", big, NULL);
	CU_ASSERT_EQUAL(seq, 2);
	csend(&c, "{\"type\":\"send\",\"room\":\"big\",\"body\":\"%s\xe2\x82\xac\","
	    "\"ref\":\"t2\"}", big);
	EXPECT_ERROR(&c, "too_large", "t2");
	/* The same as JSON escapes. */
	big[0] = '\0';
	for (int i = 0; i < 34; i++)
		strcat(big, "\\u20ac");
	csend(&c, "{\"type\":\"send\",\"room\":\"big\",\"body\":\"%s\",\"ref\":\"t3\"}",
	    big);
	EXPECT_ERROR(&c, "too_large", "t3");
	/* edit is held to the same limit. */
	csend(&c, "{\"type\":\"edit\",\"room\":\"big\",\"target\":1,\"body\":\"%sb\","
	    "\"ref\":\"t4\"}", body);
	EXPECT_ERROR(&c, "too_large", "t4");
	csend(&c, "{\"type\":\"send\",\"room\":\"big\",\"body\":\"\",\"ref\":\"t5\"}");
	EXPECT_ERROR(&c, "bad_request", "t5");
	CU_ASSERT(SAY(&c, "big", "small", NULL) == 3);
	wsc_close(&c.w);
}

/* A connection must join first: not_member (with ref) for each request. */
static void
test_not_member(void)
{
	static const char *const reqs[] = {
		"{\"type\":\"send\",\"room\":\"nm\",\"body\":\"x\",\"ref\":\"n\"}",
		"{\"type\":\"edit\",\"room\":\"nm\",\"target\":1,\"body\":\"x\",\"ref\":\"n\"}",
		"{\"type\":\"delete\",\"room\":\"nm\",\"target\":1,\"ref\":\"n\"}",
		"{\"type\":\"react\",\"room\":\"nm\",\"target\":1,\"emoji\":\"x\",\"ref\":\"n\"}",
		"{\"type\":\"typing\",\"room\":\"nm\",\"active\":true,\"ref\":\"n\"}",
		"{\"type\":\"read\",\"room\":\"nm\",\"seq\":1,\"ref\":\"n\"}",
		"{\"type\":\"history\",\"room\":\"nm\",\"ref\":\"n\"}",
		"{\"type\":\"leave\",\"room\":\"nm\",\"ref\":\"n\"}",
		NULL
	};
	struct cl a, b;
	json_t *j;

	OPEN(&a, "nm-a");
	OPEN(&b, "nm-b");
	JOIN(&a, "nm-other");
	/* The room exists and has a message; b is in it, a is not. */
	JOIN(&b, "nm");
	CU_ASSERT(SAY(&b, "nm", "hello", NULL) == 1);
	for (int i = 0; reqs[i] != NULL; i++) {
		CU_ASSERT_EQUAL(wsc_send_text(&a.w, reqs[i]), 0);
		EXPECT_ERROR(&a, "not_member", "n");
	}
	/* Joined then left: not a member again. */
	JOIN(&a, "nm");
	PRESENCE(&b, "nm", "nm-a", "online");
	csend(&a, "{\"type\":\"leave\",\"room\":\"nm\",\"ref\":\"l\"}");
	j = EXPECT(&a, "left");
	CU_ASSERT(j != NULL && jstreq(j, "room", "nm") && jstreq(j, "ref", "l"));
	json_decref(j);
	PRESENCE(&b, "nm", "nm-a", "offline");
	for (int i = 0; reqs[i] != NULL; i++) {
		CU_ASSERT_EQUAL(wsc_send_text(&a.w, reqs[i]), 0);
		EXPECT_ERROR(&a, "not_member", "n");
	}
	/* Nothing reached the room: b's next event is seq 2. */
	CU_ASSERT(SAY(&b, "nm", "second", NULL) == 2);
	wsc_close(&a.w);
	wsc_close(&b.w);
}

/* dm:A:B admits only A and B. */
static void
test_dm(void)
{
	static const char room[] = "dm:alice:bob";
	struct cl a, b, c;
	json_t *j;

	OPEN(&a, "alice");
	OPEN(&b, "bob");
	OPEN(&c, "carol");
	csend(&c, "{\"type\":\"join\",\"room\":\"%s\",\"ref\":\"f\"}", room);
	EXPECT_ERROR(&c, "forbidden", "f");
	csend(&c, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"x\",\"ref\":\"g\"}",
	    room);
	EXPECT_ERROR(&c, "not_member", "g");
	j = join_at(&a, room, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "seq") == 0 && jint(j, "online") == 1 &&
	    members_are(j, "alice"));
	json_decref(j);
	j = join_at(&b, room, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "online") == 2 &&
	    members_are(j, "alice,bob"));
	json_decref(j);
	PRESENCE(&a, room, "bob", "online");
	CU_ASSERT(SAY(&a, room, "hi bob", NULL) == 1);
	HEAR(&b, room, 1, "alice", "hi bob");
	/* Still forbidden once it exists; carol saw nothing. */
	csend(&c, "{\"type\":\"join\",\"room\":\"%s\",\"since\":0,\"ref\":\"f2\"}",
	    room);
	EXPECT_ERROR(&c, "forbidden", "f2");
	PONG(&c, "nothing-else");
	/* Another DM pairs differently: dm:bob:carol admits carol. */
	JOIN(&c, "dm:bob:carol");
	csend(&a, "{\"type\":\"join\",\"room\":\"dm:bob:carol\",\"ref\":\"f3\"}");
	EXPECT_ERROR(&a, "forbidden", "f3");
	wsc_close(&a.w);
	wsc_close(&b.w);
	wsc_close(&c.w);
}

/* members and online in joined; presence once per user. */
static void
test_presence(void)
{
	static const char room[] = "pres";
	struct cl a, b1, b2, c, d;
	json_t *j;

	OPEN(&a, "p-alice");
	OPEN(&b1, "p-bob");
	OPEN(&b2, "p-bob");
	OPEN(&c, "p-carol");
	j = join_at(&a, room, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "online") == 1 &&
	    members_are(j, "p-alice") && jint(j, "read") == 0 &&
	    jint(j, "seq") == 0 && json_object_get(j, "truncated") == NULL &&
	    json_object_get(j, "members_truncated") == NULL);
	json_decref(j);
	j = join_at(&b1, room, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "online") == 2 &&
	    members_are(j, "p-alice,p-bob"));
	json_decref(j);
	PRESENCE(&a, room, "p-bob", "online");
	/* bob's second connection: no presence, bob listed once. */
	j = join_at(&b2, room, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "online") == 2 &&
	    members_are(j, "p-alice,p-bob"));
	json_decref(j);
	j = join_at(&c, room, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "online") == 3 &&
	    members_are(j, "p-alice,p-bob,p-carol"));
	json_decref(j);
	/* The next frame everywhere is carol's: nothing came for b2's join. */
	PRESENCE(&a, room, "p-carol", "online");
	PRESENCE(&b1, room, "p-carol", "online");
	PRESENCE(&b2, room, "p-carol", "online");
	/* bob's first connection goes: bob is still online. */
	wsc_close(&b1.w);
	CU_ASSERT(SAY(&c, room, "barrier 1", NULL) == 1);
	HEAR(&a, room, 1, "p-carol", "barrier 1");
	HEAR(&b2, room, 1, "p-carol", "barrier 1");
	/* Now the last one leaves: offline, once. */
	csend(&b2, "{\"type\":\"leave\",\"room\":\"%s\"}", room);
	json_decref(EXPECT(&b2, "left"));
	PRESENCE(&c, room, "p-bob", "offline");
	CU_ASSERT(SAY(&c, room, "barrier 2", NULL) == 2);
	PRESENCE(&a, room, "p-bob", "offline");
	HEAR(&a, room, 2, "p-carol", "barrier 2");
	csend(&c, "{\"type\":\"leave\",\"room\":\"%s\"}", room);
	json_decref(EXPECT(&c, "left"));
	wsc_close(&c.w);
	OPEN(&d, "p-dave");
	j = join_at(&d, room, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "online") == 2 && jint(j, "seq") == 2 &&
	    members_are(j, "p-alice,p-dave"));
	json_decref(j);
	PRESENCE(&a, room, "p-carol", "offline");
	PRESENCE(&a, room, "p-dave", "online");
	wsc_close(&a.w);
	wsc_close(&b2.w);
	wsc_close(&d.w);
}

/* Typing goes to the other users only; refreshes are coalesced. */
static void
test_typing(void)
{
	static const char room[] = "typing";
	struct cl a, a2, b;
	int64_t t0;
	json_t *j;
	int ok, saw_typing = 0, saw_presence = 0;

	OPEN(&a, "t-alice");
	OPEN(&a2, "t-alice");
	OPEN(&b, "t-bob");
	JOIN(&a, room);
	JOIN(&a2, room);
	JOIN(&b, room);
	PRESENCE(&a, room, "t-bob", "online");
	PRESENCE(&a2, room, "t-bob", "online");

	t0 = wsc_now_ms();
	csend(&a, "{\"type\":\"typing\",\"room\":\"%s\",\"active\":true}", room);
	j = EXPECT(&b, "typing");
	CU_ASSERT(j != NULL && jstreq(j, "room", room) &&
	    jstreq(j, "user", "t-alice") && jtrue(j, "active"));
	json_decref(j);
	/* A refresh within 3 s says nothing new. */
	csend(&a, "{\"type\":\"typing\",\"room\":\"%s\",\"active\":true}", room);
	CU_ASSERT(SAY(&b, room, "barrier", NULL) == 1);
	/* Not to alice's own connections either. */
	HEAR(&a, room, 1, "t-bob", "barrier");
	HEAR(&a2, room, 1, "t-bob", "barrier");
	if (wsc_now_ms() - t0 > 2500)
		fprintf(stderr, "typing: slow machine, refresh check moot\n");

	csend(&a, "{\"type\":\"typing\",\"room\":\"%s\",\"active\":false}", room);
	j = EXPECT(&b, "typing");
	CU_ASSERT(j != NULL && jstreq(j, "user", "t-alice") &&
	    json_is_false(json_object_get(j, "active")));
	json_decref(j);
	/* Stopping twice says nothing. */
	csend(&a, "{\"type\":\"typing\",\"room\":\"%s\",\"active\":false}", room);
	CU_ASSERT(SAY(&a, room, "barrier 2", NULL) == 2);
	HEAR(&b, room, 2, "t-alice", "barrier 2");
	HEAR(&a2, room, 2, "t-alice", "barrier 2");

	/* bob types, then leaves: alice sees active false and offline. */
	csend(&b, "{\"type\":\"typing\",\"room\":\"%s\",\"active\":true}", room);
	j = EXPECT(&a, "typing");
	CU_ASSERT(j != NULL && jstreq(j, "user", "t-bob") && jtrue(j, "active"));
	json_decref(j);
	j = EXPECT(&a2, "typing");
	CU_ASSERT(j != NULL && jstreq(j, "user", "t-bob") && jtrue(j, "active"));
	json_decref(j);
	wsc_close(&b.w);
	for (int i = 0; i < 2; i++) {
		j = cl_recv(&a);
		if (is_type(j, "typing") && jstreq(j, "user", "t-bob") &&
		    json_is_false(json_object_get(j, "active")))
			saw_typing++;
		else if (is_type(j, "presence") && jstreq(j, "user", "t-bob") &&
		    jstreq(j, "status", "offline"))
			saw_presence++;
		else
			jdump("typing: unexpected after bob left: ", j);
		json_decref(j);
	}
	ok = saw_typing == 1 && saw_presence == 1;
	if (!ok)
		fprintf(stderr, "typing: after bob's disconnect: %d typing "
		    "false, %d presence offline\n", saw_typing, saw_presence);
	CU_ASSERT(ok);
	wsc_close(&a.w);
	wsc_close(&a2.w);
}

/* An active typer that stops refreshing: active false after 6 s. */
static void
test_typing_expiry(void)
{
	static const char room[] = "typing-exp";
	struct cl a, b;
	int64_t t0;
	json_t *j;

	OPEN(&a, "te-alice");
	OPEN(&b, "te-bob");
	JOIN(&a, room);
	JOIN(&b, room);
	PRESENCE(&a, room, "te-bob", "online");
	csend(&a, "{\"type\":\"typing\",\"room\":\"%s\",\"active\":true}", room);
	j = EXPECT(&b, "typing");
	CU_ASSERT(j != NULL && jtrue(j, "active"));
	json_decref(j);
	t0 = wsc_now_ms();
	j = recv_json(&b.w, 10000);
	CU_ASSERT(is_type(j, "typing") && jstreq(j, "user", "te-alice") &&
	    json_is_false(json_object_get(j, "active")));
	if (!is_type(j, "typing"))
		jdump("typing expiry: got ", j);
	fprintf(stderr, "typing expired after %lld ms\n",
	    (long long)(wsc_now_ms() - t0));
	json_decref(j);
	wsc_close(&a.w);
	wsc_close(&b.w);
}

static void
expect_receipt_at(struct cl *c, const char *room, const char *user,
    long long seq, int line)
{
	json_t *j = expect_at(c, "receipt", line);
	int ok = j != NULL && jstreq(j, "room", room) &&
	    jstreq(j, "user", user) && jint(j, "seq") == seq;

	if (j != NULL && !ok) {
		fprintf(stderr, "%s:%d: [%s] expected receipt %s %lld, got: ",
		    __FILE__, line, c->user, user, seq);
		jdump("", j);
	}
	CHECK_AT(ok, line, "receipt fields");
	json_decref(j);
}

#define RECEIPT(c, room, user, seq) \
	expect_receipt_at((c), (room), (user), (seq), __LINE__)

/* Receipts go to every member, only move forward, and are stored. */
static void
test_receipts(void)
{
	static const char room[] = "receipts";
	struct cl a1, a2, b, a3, b2;
	json_t *j;

	OPEN(&a1, "r-alice");
	OPEN(&a2, "r-alice");
	OPEN(&b, "r-bob");
	JOIN(&a1, room);
	JOIN(&a2, room);
	JOIN(&b, room);
	PRESENCE(&a1, room, "r-bob", "online");
	PRESENCE(&a2, room, "r-bob", "online");
	for (int i = 1; i <= 3; i++) {
		CU_ASSERT(SAY(&a1, room, "m", NULL) == i);
		HEAR(&a2, room, i, "r-alice", "m");
		HEAR(&b, room, i, "r-alice", "m");
	}
	csend(&a1, "{\"type\":\"read\",\"room\":\"%s\",\"seq\":2}", room);
	RECEIPT(&a1, room, "r-alice", 2);
	RECEIPT(&a2, room, "r-alice", 2);
	RECEIPT(&b, room, "r-alice", 2);
	/* Not forward (from either connection): nothing. */
	csend(&a1, "{\"type\":\"read\",\"room\":\"%s\",\"seq\":1}", room);
	csend(&a2, "{\"type\":\"read\",\"room\":\"%s\",\"seq\":2}", room);
	CU_ASSERT(SAY(&a1, room, "m4", NULL) == 4);
	HEAR(&a2, room, 4, "r-alice", "m4");
	HEAR(&b, room, 4, "r-alice", "m4");
	/* Beyond the latest seq: counts as the latest. */
	csend(&a2, "{\"type\":\"read\",\"room\":\"%s\",\"seq\":999}", room);
	RECEIPT(&a1, room, "r-alice", 4);
	RECEIPT(&a2, room, "r-alice", 4);
	RECEIPT(&b, room, "r-alice", 4);
	csend(&b, "{\"type\":\"read\",\"room\":\"%s\",\"seq\":3}", room);
	RECEIPT(&a1, room, "r-bob", 3);
	RECEIPT(&b, room, "r-bob", 3);
	RECEIPT(&a2, room, "r-bob", 3);
	/* Stored: joined reports each user's position. */
	OPEN(&a3, "r-alice");
	j = join_at(&a3, room, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "read") == 4 && jint(j, "seq") == 4);
	json_decref(j);
	OPEN(&b2, "r-bob");
	j = join_at(&b2, room, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "read") == 3);
	json_decref(j);
	wsc_close(&a1.w);
	wsc_close(&a2.w);
	wsc_close(&a3.w);
	wsc_close(&b.w);
	wsc_close(&b2.w);
}

/* The events of a history frame are seqs from..to, equal to the live frames. */
static int
history_is(const json_t *h, json_t *const *live, long long from, long long to,
    int more)
{
	const json_t *evs = json_object_get(h, "events");
	size_t n = to >= from ? (size_t)(to - from + 1) : 0;

	if (!json_is_array(evs) || json_array_size(evs) != n ||
	    json_is_true(json_object_get(h, "more")) != more ||
	    !json_is_boolean(json_object_get(h, "more"))) {
		jdump("history: ", h);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		if (!json_equal(json_array_get(evs, i), live[from + (long long)i])) {
			jdump("history event: ", json_array_get(evs, i));
			jdump("live frame:    ", live[from + (long long)i]);
			return 0;
		}
	return 1;
}

static void
test_history(void)
{
	static const char room[] = "hist";
	static const struct {
		const char *args;
		long long from, to;
		int more;
	} cases[] = {
		{ "", 1, 10, 0 },
		{ ",\"limit\":3", 8, 10, 1 },
		{ ",\"before\":8,\"limit\":3", 5, 7, 1 },
		{ ",\"before\":3,\"limit\":5", 1, 2, 0 },
		{ ",\"before\":4,\"limit\":3", 1, 3, 0 },
		{ ",\"before\":1", 1, 0, 0 },
		{ ",\"before\":100,\"limit\":2", 9, 10, 1 },
		{ ",\"limit\":500", 1, 10, 0 },
		{ ",\"before\":11,\"limit\":10", 1, 10, 0 },
	};
	json_t *live[11] = { NULL };
	struct cl a, b;
	json_t *j, *ev, *ack;
	char body[16];

	OPEN(&a, "h-alice");
	OPEN(&b, "h-bob");
	JOIN(&a, room);
	for (int i = 1; i <= 10; i++) {
		snprintf(body, sizeof(body), "h%d", i);
		if (i % 2)
			csend(&a, "{\"type\":\"send\",\"room\":\"%s\",\"body\":"
			    "\"%s\",\"id\":\"hid%d\"}", room, body, i);
		else
			csend(&a, "{\"type\":\"send\",\"room\":\"%s\",\"body\":"
			    "\"%s\"}", room, body);
		CU_ASSERT_FATAL(expect_pair_at(&a, "message", &ev, &ack,
		    __LINE__));
		CU_ASSERT(jint(ev, "seq") == i);
		live[i] = ev;
		json_decref(ack);
	}
	JOIN(&b, room);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		csend(&b, "{\"type\":\"history\",\"room\":\"%s\",\"ref\":\"h%zu\"%s}",
		    room, k, cases[k].args);
		j = EXPECT(&b, "history");
		if (j == NULL)
			continue;
		if (!history_is(j, live, cases[k].from, cases[k].to,
		    cases[k].more)) {
			fprintf(stderr, "history%s: expected %lld..%lld more %d\n",
			    cases[k].args, cases[k].from, cases[k].to,
			    cases[k].more);
			CU_FAIL("history events and more");
		}
		CU_ASSERT(jstreq(j, "room", room));
		json_decref(j);
	}
	for (int i = 1; i <= 10; i++)
		json_decref(live[i]);
	wsc_close(&a.w);
	wsc_close(&b.w);
}

/* Replay on join with since; rejoin; leave stops the stream. */
static void
test_replay(void)
{
	static const char room[] = "replay";
	json_t *live[13] = { NULL }, *ev, *ack, *j;
	struct cl a, b, c, d, e;
	char body[16];
	int i;

	/* All connections of one user: no presence frames in between. */
	OPEN(&a, "rp-alice");
	JOIN(&a, room);
	for (i = 1; i <= 5; i++) {
		snprintf(body, sizeof(body), "r%d", i);
		csend(&a, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"%s\","
		    "\"id\":\"rp%d\"}", room, body, i);
		CU_ASSERT_FATAL(expect_pair_at(&a, "message", &ev, &ack,
		    __LINE__));
		live[i] = ev;
		json_decref(ack);
	}
	OPEN(&b, "rp-alice");
	j = join_since_at(&b, room, 2, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "seq") == 5 &&
	    json_object_get(j, "truncated") == NULL);
	json_decref(j);
	for (i = 3; i <= 5; i++) {
		j = EXPECT(&b, "message");
		CU_ASSERT(j != NULL && json_equal(j, live[i]));
		json_decref(j);
	}
	CU_ASSERT(SAY(&a, room, "r6", NULL) == 6);
	HEAR(&b, room, 6, "rp-alice", "r6");
	/* since at or above the room's seq: nothing replayed. */
	OPEN(&c, "rp-alice");
	j = join_since_at(&c, room, 6, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "seq") == 6);
	json_decref(j);
	OPEN(&d, "rp-alice");
	j = join_since_at(&d, room, 100, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "seq") == 6);
	json_decref(j);
	CU_ASSERT(SAY(&a, room, "r7", NULL) == 7);
	HEAR(&b, room, 7, "rp-alice", "r7");
	HEAR(&c, room, 7, "rp-alice", "r7");
	HEAR(&d, room, 7, "rp-alice", "r7");
	/* since 0: everything. */
	OPEN(&e, "rp-alice");
	j = join_since_at(&e, room, 0, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "seq") == 7);
	json_decref(j);
	for (i = 1; i <= 7; i++) {
		j = EXPECT(&e, "message");
		CU_ASSERT(j != NULL && jint(j, "seq") == i);
		if (i <= 5)
			CU_ASSERT(j != NULL && json_equal(j, live[i]));
		json_decref(j);
	}
	/* A join of a joined connection: the snapshot, no replay, no doubles. */
	csend(&b, "{\"type\":\"join\",\"room\":\"%s\",\"ref\":\"again\"}", room);
	j = EXPECT(&b, "joined");
	CU_ASSERT(j != NULL && jint(j, "seq") == 7 && jstreq(j, "ref", "again"));
	json_decref(j);
	CU_ASSERT(SAY(&a, room, "r8", NULL) == 8);
	CU_ASSERT(SAY(&a, room, "r9", NULL) == 9);
	HEAR(&b, room, 8, "rp-alice", "r8");
	HEAR(&b, room, 9, "rp-alice", "r9");
	/* After leave nothing comes; a new join starts at the new seq. */
	csend(&b, "{\"type\":\"leave\",\"room\":\"%s\",\"ref\":\"bye\"}", room);
	j = EXPECT(&b, "left");
	CU_ASSERT(j != NULL && jstreq(j, "ref", "bye") && jstreq(j, "room", room));
	json_decref(j);
	CU_ASSERT(SAY(&a, room, "r10", NULL) == 10);
	j = join_at(&b, room, __LINE__);
	CU_ASSERT(j != NULL && jint(j, "seq") == 10);
	json_decref(j);
	CU_ASSERT(SAY(&a, room, "r11", NULL) == 11);
	HEAR(&b, room, 11, "rp-alice", "r11");
	for (i = 1; i <= 5; i++)
		json_decref(live[i]);
	wsc_close(&a.w);
	wsc_close(&b.w);
	wsc_close(&c.w);
	wsc_close(&d.w);
	wsc_close(&e.w);
}

/* hello, join, send, history in one burst: handled in the order sent. */
static void
test_pipelined(void)
{
	struct cl c;
	json_t *j, *ev, *ack;

	CU_ASSERT_FATAL(cl_connect(&c, NULL, NULL) == 101);
	snprintf(c.user, sizeof(c.user), "pipe");
	csend(&c, "{\"type\":\"hello\",\"name\":\"pipe\"}");
	csend(&c, "{\"type\":\"join\",\"room\":\"pipe-room\",\"ref\":\"j\"}");
	csend(&c, "{\"type\":\"send\",\"room\":\"pipe-room\",\"body\":\"first\"}");
	csend(&c, "{\"type\":\"send\",\"room\":\"pipe-room\",\"body\":\"second\"}");
	csend(&c, "{\"type\":\"history\",\"room\":\"pipe-room\",\"ref\":\"h\"}");
	json_decref(EXPECT(&c, "welcome"));
	j = EXPECT(&c, "joined");
	CU_ASSERT(j != NULL && jint(j, "seq") == 0);
	json_decref(j);
	if (expect_pair_at(&c, "message", &ev, &ack, __LINE__))
		CU_ASSERT(jint(ev, "seq") == 1 && jstreq(ev, "body", "first"));
	json_decref(ev);
	json_decref(ack);
	if (expect_pair_at(&c, "message", &ev, &ack, __LINE__))
		CU_ASSERT(jint(ev, "seq") == 2 && jstreq(ev, "body", "second"));
	json_decref(ev);
	json_decref(ack);
	j = EXPECT(&c, "history");
	CU_ASSERT(j != NULL && json_array_size(json_object_get(j, "events")) == 2);
	json_decref(j);
	wsc_close(&c.w);
}

/*
 * "Requests from one connection are handled in the order sent": the direct
 * replies to pipelined requests come in request order (only a sender's own
 * copy of its event may come before or after its ack).
 */
static void
test_reply_order(void)
{
	static const char *const want[] = { "ack:o1", "error:o2", "ack:o3",
	    "pong:o4", "history:o5", "left:o6", "error:o7", NULL };
	char got[512] = "";
	struct cl c;
	json_t *j;
	int i, ok = 1;

	OPEN(&c, "order");
	JOIN(&c, "order-room");
	csend(&c, "{\"type\":\"send\",\"room\":\"order-room\",\"body\":\"1\","
	    "\"ref\":\"o1\"}");
	csend(&c, "{\"type\":\"send\",\"room\":\"order-room\",\"body\":\"\","
	    "\"ref\":\"o2\"}");
	csend(&c, "{\"type\":\"send\",\"room\":\"order-room\",\"body\":\"3\","
	    "\"ref\":\"o3\"}");
	csend(&c, "{\"type\":\"ping\",\"ref\":\"o4\"}");
	csend(&c, "{\"type\":\"history\",\"room\":\"order-room\",\"ref\":\"o5\"}");
	csend(&c, "{\"type\":\"leave\",\"room\":\"order-room\",\"ref\":\"o6\"}");
	csend(&c, "{\"type\":\"send\",\"room\":\"order-room\",\"body\":\"7\","
	    "\"ref\":\"o7\"}");
	for (i = 0; want[i] != NULL; ) {
		j = cl_recv(&c);
		if (j == NULL)
			break;
		if (!is_type(j, "message")) {
			snprintf(got + strlen(got), sizeof(got) - strlen(got),
			    "%s%s:%s", got[0] ? " " : "", jstr(j, "type"),
			    jstr(j, "ref") ? jstr(j, "ref") : "-");
			i++;
		}
		json_decref(j);
	}
	for (i = 0; want[i] != NULL; i++) {
		char *p = strstr(got, want[i]);

		/* The i-th reply (space-separated) must be want[i]. */
		const char *q = got;
		for (int k = 0; k < i && q != NULL; k++)
			if ((q = strchr(q, ' ')) != NULL)
				q++;
		if (q == NULL || p != q)
			ok = 0;
	}
	if (!ok)
		fprintf(stderr, "reply order: got      %s\n"
		    "             expected ack:o1 error:o2 ack:o3 pong:o4 "
		    "history:o5 left:o6 error:o7\n", got);
	CU_ASSERT(ok);
	wsc_close(&c.w);
}

/*
 * send then leave, pipelined: the event is sequenced while the connection
 * is still joined, so its own copy must arrive (before left).
 */
static void
test_send_then_leave(void)
{
	static const char room[] = "sl-room";
	struct cl a, b;
	json_t *j;
	char got[256] = "";
	int msgs = 0, acks = 0, left = 0;

	OPEN(&a, "sl-alice");
	OPEN(&b, "sl-bob");
	JOIN(&b, room);
	JOIN(&a, room);
	csend(&a, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"bye\"}",
	    room);
	csend(&a, "{\"type\":\"leave\",\"room\":\"%s\"}", room);
	while (!left && (j = cl_recv(&a)) != NULL) {
		msgs += is_type(j, "message");
		acks += is_type(j, "ack");
		left += is_type(j, "left");
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s",
		    got[0] ? " " : "", jstr(j, "type"));
		json_decref(j);
	}
	if (msgs != 1 || acks != 1 || left != 1)
		fprintf(stderr, "send+leave: the sender got: %s\n", got);
	CU_ASSERT_EQUAL(msgs, 1);
	CU_ASSERT_EQUAL(acks, 1);
	CU_ASSERT_EQUAL(left, 1);
	/* The other member got it: it was sequenced while a was joined. */
	PRESENCE(&b, room, "sl-alice", "online");
	HEAR(&b, room, 1, "sl-alice", "bye");
	PRESENCE(&b, room, "sl-alice", "offline");
	wsc_close(&a.w);
	wsc_close(&b.w);
}

static void
expect_event_at(struct cl *c, const char *type, long long seq,
    long long target, const char *user, int line)
{
	json_t *j = expect_at(c, type, line);
	int ok = j != NULL && jint(j, "seq") == seq &&
	    jint(j, "target") == target && jstreq(j, "user", user) &&
	    jint(j, "ts") > 0;

	if (j != NULL && !ok)
		jdump("event: ", j);
	CHECK_AT(ok, line, "stream event fields");
	json_decref(j);
}

#define EVENT(c, type, seq, target, user) \
	expect_event_at((c), (type), (seq), (target), (user), __LINE__)

/* A no-op ack: noop true, the room's current seq, ref. */
static void
expect_noop_at(struct cl *c, long long seq, const char *ref, int line)
{
	json_t *j = expect_at(c, "ack", line);
	int ok = j != NULL && jtrue(j, "noop") && jint(j, "seq") == seq &&
	    jint(j, "ts") > 0 && jstreq(j, "ref", ref);

	if (j != NULL && !ok)
		jdump("noop ack: ", j);
	CHECK_AT(ok, line, "noop ack");
	json_decref(j);
}

#define NOOP(c, seq, ref) expect_noop_at((c), (seq), (ref), __LINE__)

#define THUMB "\xf0\x9f\x91\x8d"
#define HEART "\xe2\x9d\xa4"

static void
test_edit_delete_react(void)
{
	static const char room[] = "edr";
	json_t *ev, *ack, *j, *h, *evs;
	struct cl a, b, c;
	size_t i;

	OPEN(&a, "e-alice");
	OPEN(&b, "e-bob");
	JOIN(&a, room);
	JOIN(&b, room);
	PRESENCE(&a, room, "e-bob", "online");
	CU_ASSERT(SAY(&a, room, "m1", NULL) == 1);
	HEAR(&b, room, 1, "e-alice", "m1");
	CU_ASSERT(SAY(&b, room, "m2", NULL) == 2);
	HEAR(&a, room, 2, "e-bob", "m2");

	/* Only the author edits or deletes. */
	csend(&b, "{\"type\":\"edit\",\"room\":\"%s\",\"target\":1,\"body\":\"x\","
	    "\"ref\":\"f1\"}", room);
	EXPECT_ERROR(&b, "forbidden", "f1");
	csend(&b, "{\"type\":\"delete\",\"room\":\"%s\",\"target\":1,\"ref\":\"f2\"}",
	    room);
	EXPECT_ERROR(&b, "forbidden", "f2");
	csend(&a, "{\"type\":\"delete\",\"room\":\"%s\",\"target\":2,\"ref\":\"f3\"}",
	    room);
	EXPECT_ERROR(&a, "forbidden", "f3");

	csend(&a, "{\"type\":\"edit\",\"room\":\"%s\",\"target\":1,\"body\":"
	    "\"m1 edited\",\"id\":\"e1\",\"ref\":\"e\"}", room);
	if (expect_pair_at(&a, "edit", &ev, &ack, __LINE__)) {
		CU_ASSERT(jint(ev, "seq") == 3 && jint(ev, "target") == 1 &&
		    jstreq(ev, "body", "m1 edited") && jstreq(ev, "id", "e1") &&
		    jstreq(ack, "id", "e1") && jstreq(ack, "ref", "e") &&
		    jstreq(ev, "room", room));
		j = EXPECT(&b, "edit");
		CU_ASSERT(j != NULL && json_equal(j, ev));
		json_decref(j);
	}
	json_decref(ev);
	json_decref(ack);

	/* Targets that are not live messages. */
	csend(&a, "{\"type\":\"edit\",\"room\":\"%s\",\"target\":99,\"body\":\"x\","
	    "\"ref\":\"n1\"}", room);
	EXPECT_ERROR(&a, "not_found", "n1");
	csend(&a, "{\"type\":\"edit\",\"room\":\"%s\",\"target\":3,\"body\":\"x\","
	    "\"ref\":\"n2\"}", room);
	EXPECT_ERROR(&a, "not_found", "n2");

	/* Reactions: to everyone; a repeat is a no-op ack. */
	csend(&a, "{\"type\":\"react\",\"room\":\"%s\",\"target\":2,\"emoji\":\""
	    THUMB "\",\"ref\":\"r1\"}", room);
	if (expect_pair_at(&a, "reaction", &ev, &ack, __LINE__)) {
		CU_ASSERT(jint(ev, "seq") == 4 && jint(ev, "target") == 2 &&
		    jstreq(ev, "emoji", THUMB) && jtrue(ev, "add") &&
		    jstreq(ack, "ref", "r1"));
		j = EXPECT(&b, "reaction");
		CU_ASSERT(j != NULL && json_equal(j, ev));
		json_decref(j);
	}
	json_decref(ev);
	json_decref(ack);
	csend(&a, "{\"type\":\"react\",\"room\":\"%s\",\"target\":2,\"emoji\":\""
	    THUMB "\",\"add\":true,\"ref\":\"r2\"}", room);
	NOOP(&a, 4, "r2");
	/* Another user's same reaction is not a no-op. */
	csend(&b, "{\"type\":\"react\",\"room\":\"%s\",\"target\":2,\"emoji\":\""
	    THUMB "\"}", room);
	if (expect_pair_at(&b, "reaction", &ev, &ack, __LINE__))
		CU_ASSERT(jint(ev, "seq") == 5);
	json_decref(ev);
	json_decref(ack);
	EVENT(&a, "reaction", 5, 2, "e-bob");
	csend(&a, "{\"type\":\"react\",\"room\":\"%s\",\"target\":2,\"emoji\":\""
	    THUMB "\",\"add\":false}", room);
	if (expect_pair_at(&a, "reaction", &ev, &ack, __LINE__))
		CU_ASSERT(jint(ev, "seq") == 6 &&
		    json_is_false(json_object_get(ev, "add")));
	json_decref(ev);
	json_decref(ack);
	EVENT(&b, "reaction", 6, 2, "e-alice");
	csend(&a, "{\"type\":\"react\",\"room\":\"%s\",\"target\":2,\"emoji\":\""
	    THUMB "\",\"add\":false,\"ref\":\"r3\"}", room);
	NOOP(&a, 6, "r3");
	/* Reactions and edits are not messages. */
	csend(&b, "{\"type\":\"react\",\"room\":\"%s\",\"target\":4,\"emoji\":\"x\","
	    "\"ref\":\"n3\"}", room);
	EXPECT_ERROR(&b, "not_found", "n3");
	csend(&b, "{\"type\":\"react\",\"room\":\"%s\",\"target\":3,\"emoji\":\"x\","
	    "\"ref\":\"n4\"}", room);
	EXPECT_ERROR(&b, "not_found", "n4");
	csend(&b, "{\"type\":\"react\",\"room\":\"%s\",\"target\":7,\"emoji\":\"x\","
	    "\"ref\":\"n5\"}", room);
	EXPECT_ERROR(&b, "not_found", "n5");

	/* Delete; then the message is gone for edit, delete and react. */
	csend(&a, "{\"type\":\"delete\",\"room\":\"%s\",\"target\":1,\"id\":\"d1\","
	    "\"ref\":\"d\"}", room);
	if (expect_pair_at(&a, "delete", &ev, &ack, __LINE__)) {
		CU_ASSERT(jint(ev, "seq") == 7 && jint(ev, "target") == 1 &&
		    jstreq(ev, "id", "d1") && jstreq(ack, "ref", "d"));
		j = EXPECT(&b, "delete");
		CU_ASSERT(j != NULL && json_equal(j, ev));
		json_decref(j);
	}
	json_decref(ev);
	json_decref(ack);
	csend(&a, "{\"type\":\"edit\",\"room\":\"%s\",\"target\":1,\"body\":\"x\","
	    "\"ref\":\"n6\"}", room);
	EXPECT_ERROR(&a, "not_found", "n6");
	csend(&a, "{\"type\":\"delete\",\"room\":\"%s\",\"target\":1,\"ref\":\"n7\"}",
	    room);
	EXPECT_ERROR(&a, "not_found", "n7");
	csend(&b, "{\"type\":\"react\",\"room\":\"%s\",\"target\":1,\"emoji\":\"x\","
	    "\"ref\":\"n8\"}", room);
	EXPECT_ERROR(&b, "not_found", "n8");
	/* No event came from any of those. */
	CU_ASSERT(SAY(&b, room, "m8", NULL) == 8);
	HEAR(&a, room, 8, "e-bob", "m8");

	/* History and replay: the deleted message and its edit emptied. */
	csend(&a, "{\"type\":\"history\",\"room\":\"%s\"}", room);
	h = EXPECT(&a, "history");
	evs = json_object_get(h, "events");
	CU_ASSERT(json_array_size(evs) == 8);
	for (i = 0; i < json_array_size(evs); i++) {
		json_t *e = json_array_get(evs, i);
		long long s = jint(e, "seq");

		CU_ASSERT(s == (long long)i + 1);
		if (s == 1 || s == 3) {
			CU_ASSERT(jstreq(e, "body", "") && jtrue(e, "deleted"));
			if (!(jstreq(e, "body", "") && jtrue(e, "deleted")))
				jdump("history: not emptied: ", e);
		} else {
			CU_ASSERT(json_object_get(e, "deleted") == NULL);
		}
	}
	CU_ASSERT(jstreq(json_array_get(evs, 0), "type", "message") &&
	    jstreq(json_array_get(evs, 2), "type", "edit") &&
	    jstreq(json_array_get(evs, 3), "type", "reaction") &&
	    jstreq(json_array_get(evs, 6), "type", "delete") &&
	    jstreq(json_array_get(evs, 1), "body", "m2"));
	OPEN(&c, "e-carol");
	j = join_since_at(&c, room, 0, __LINE__);
	json_decref(j);
	for (i = 0; i < 8; i++) {
		j = cl_recv(&c);
		if (!json_equal(j, json_array_get(evs, i))) {
			jdump("replay:  ", j);
			jdump("history: ", json_array_get(evs, i));
			CU_FAIL("replay equals history");
		}
		json_decref(j);
	}
	json_decref(h);
	PRESENCE(&a, room, "e-carol", "online");
	PRESENCE(&b, room, "e-carol", "online");

	/* A no-op's id is not remembered; a sequenced one is. */
	csend(&a, "{\"type\":\"react\",\"room\":\"%s\",\"target\":2,\"emoji\":\""
	    HEART "\",\"id\":\"x1\"}", room);
	if (expect_pair_at(&a, "reaction", &ev, &ack, __LINE__))
		CU_ASSERT(jint(ev, "seq") == 9);
	json_decref(ev);
	json_decref(ack);
	csend(&a, "{\"type\":\"react\",\"room\":\"%s\",\"target\":2,\"emoji\":\""
	    HEART "\",\"id\":\"x2\",\"ref\":\"r4\"}", room);
	NOOP(&a, 9, "r4");
	CU_ASSERT(SAY(&a, room, "m10", "x2") == 10);
	csend(&a, "{\"type\":\"react\",\"room\":\"%s\",\"target\":2,\"emoji\":\""
	    THUMB "\",\"id\":\"x1\",\"ref\":\"r5\"}", room);
	j = EXPECT(&a, "ack");
	CU_ASSERT(j != NULL && jint(j, "seq") == 9 && jstreq(j, "id", "x1") &&
	    jstreq(j, "ref", "r5") && !jtrue(j, "noop"));
	json_decref(j);
	CU_ASSERT(SAY(&a, room, "m11", NULL) == 11);
	EVENT(&b, "reaction", 9, 2, "e-alice");
	HEAR(&b, room, 10, "e-alice", "m10");
	HEAR(&b, room, 11, "e-alice", "m11");
	wsc_close(&a.w);
	wsc_close(&b.w);
	wsc_close(&c.w);
}

/* An id already used by that user in that room: the original seq, no event. */
static void
test_dedupe(void)
{
	static const char room[] = "dd";
	struct cl a, a2, b;
	json_t *j;

	OPEN(&a, "d-alice");
	OPEN(&a2, "d-alice");
	OPEN(&b, "d-bob");
	JOIN(&a, room);
	JOIN(&b, room);
	PRESENCE(&a, room, "d-bob", "online");
	JOIN(&a2, room);
	CU_ASSERT(SAY(&a, room, "one", "k1") == 1);
	HEAR(&b, room, 1, "d-alice", "one");
	HEAR(&a2, room, 1, "d-alice", "one");

	csend(&a, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"different\","
	    "\"id\":\"k1\",\"ref\":\"d1\"}", room);
	j = EXPECT(&a, "ack");
	CU_ASSERT(j != NULL && jint(j, "seq") == 1 && jstreq(j, "id", "k1") &&
	    jstreq(j, "ref", "d1") && jstreq(j, "room", room) &&
	    jint(j, "ts") > 0);
	json_decref(j);
	/* The id belongs to the user, not the connection. */
	csend(&a2, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"again\","
	    "\"id\":\"k1\",\"ref\":\"d2\"}", room);
	j = EXPECT(&a2, "ack");
	CU_ASSERT(j != NULL && jint(j, "seq") == 1 && jstreq(j, "ref", "d2"));
	json_decref(j);
	/* Any sequenced request with that id, whatever it is. */
	csend(&a, "{\"type\":\"edit\",\"room\":\"%s\",\"target\":1,\"body\":\"e\","
	    "\"id\":\"k1\",\"ref\":\"d3\"}", room);
	j = EXPECT(&a, "ack");
	CU_ASSERT(j != NULL && jint(j, "seq") == 1 && jstreq(j, "ref", "d3"));
	json_decref(j);
	CU_ASSERT(SAY(&a, room, "two", "k2") == 2);
	HEAR(&b, room, 2, "d-alice", "two");
	HEAR(&a2, room, 2, "d-alice", "two");
	/* Another user's k1, and alice's k1 in another room, are new. */
	CU_ASSERT(SAY(&b, room, "bob k1", "k1") == 3);
	HEAR(&a, room, 3, "d-bob", "bob k1");
	HEAR(&a2, room, 3, "d-bob", "bob k1");
	JOIN(&a, "dd2");
	CU_ASSERT(SAY(&a, "dd2", "elsewhere", "k1") == 1);
	wsc_close(&a.w);
	wsc_close(&a2.w);
	wsc_close(&b.w);
}

/* ---- rate limits (--rate 5 --burst 10) ------------------------------- */

struct batch {
	uint8_t buf[65536];
	size_t len;
};

static void batch_add(struct batch *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Append one masked text frame; the whole batch goes out in one write. */
static void
batch_add(struct batch *b, const char *fmt, ...)
{
	char text[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(text) ||
	    b->len + (size_t)n + WSC_MAX_HEADER > sizeof(b->buf)) {
		CU_FAIL("batch overflow");
		return;
	}
	b->len += wsc_encode(b->buf + b->len, 1, 1, text, (size_t)n,
	    0x5a3c96e1u + (uint32_t)b->len, 0);
}

struct tally {
	int acks, msgs, receipts, reactions, errors, pong, other;
	int err_ok;             /* errors that were rate_limited with retry */
	long long retry;        /* the last retry_after_ms */
	char err_refs[512];     /* refs of the errors, space-separated */
	char order[128];        /* the first frames: a(ck) m r e(rror) p(ong) */
};

static void
tally_frame(struct tally *t, json_t *j)
{
	size_t n = strlen(t->order);

	if (n + 1 < sizeof(t->order)) {
		t->order[n] = is_type(j, "ack") ? 'a' : is_type(j, "message") ?
		    'm' : is_type(j, "receipt") ? 'r' : is_type(j, "error") ?
		    'e' : is_type(j, "pong") ? 'p' : '?';
		t->order[n + 1] = '\0';
	}
	if (is_type(j, "ack")) {
		t->acks++;
	} else if (is_type(j, "message")) {
		t->msgs++;
	} else if (is_type(j, "receipt")) {
		t->receipts++;
	} else if (is_type(j, "reaction")) {
		t->reactions++;
	} else if (is_type(j, "pong")) {
		t->pong++;
	} else if (is_type(j, "error")) {
		t->errors++;
		t->retry = jint(j, "retry_after_ms");
		if (jstreq(j, "code", "rate_limited") && t->retry > 0)
			t->err_ok++;
		else
			jdump("rate: unexpected error: ", j);
		snprintf(t->err_refs + strlen(t->err_refs),
		    sizeof(t->err_refs) - strlen(t->err_refs), "%s%s",
		    t->err_refs[0] ? " " : "", jstr(j, "ref") ? jstr(j, "ref") :
		    "-");
	} else if (!is_type(j, "presence")) {
		t->other++;
		jdump("rate: unexpected frame: ", j);
	}
}

/* Read frames until the tally reaches the wanted counts (or timeout). */
static void
tally_until(struct cl *c, struct tally *t, int acks, int msgs, int receipts,
    int errors, int pong)
{
	int64_t deadline = wsc_now_ms() + T_IO;
	json_t *j;

	while (t->acks < acks || t->msgs < msgs || t->receipts < receipts ||
	    t->errors < errors || t->pong < pong) {
		j = recv_json(&c->w, wsc_remaining_ms(deadline));
		if (j == NULL) {
			fprintf(stderr, "rate: [%s] stopped at %d acks %d msgs "
			    "%d receipts %d errors %d pongs (close %d)\n",
			    c->user, t->acks, t->msgs, t->receipts, t->errors,
			    t->pong, last_close);
			return;
		}
		tally_frame(t, j);
		json_decref(j);
	}
}

static void
test_rate_burst(void)
{
	static const char room[] = "rl1";
	struct tally t = { 0 }, t2 = { 0 };
	struct batch *b = calloc(1, sizeof(*b));
	struct cl a, a2;
	int i;

	CU_ASSERT_FATAL(b != NULL);
	OPEN(&a, "rl-a");
	JOIN(&a, room);
	for (i = 1; i <= 11; i++)
		batch_add(b, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"b%d\","
		    "\"id\":\"s%d\",\"ref\":\"q%d\"}", room, i, i, i);
	batch_add(b, "{\"type\":\"ping\",\"ref\":\"end\"}");
	CU_ASSERT_FATAL(wsc_send_raw(&a.w, b->buf, b->len) == 0);
	tally_until(&a, &t, 10, 10, 0, 1, 1);
	CU_ASSERT_EQUAL(t.acks, 10);
	CU_ASSERT_EQUAL(t.msgs, 10);
	CU_ASSERT_EQUAL(t.errors, 1);
	CU_ASSERT_EQUAL(t.err_ok, 1);
	CU_ASSERT_STRING_EQUAL(t.err_refs, "q11");
	CU_ASSERT(t.retry > 0 && t.retry <= 1000);
	fprintf(stderr, "rate: 11th send refused, retry_after_ms %lld; "
	    "frames: %s\n", t.retry, t.order);
	/* After the advised wait it passes; the refused one made no event. */
	if (t.retry > 0 && t.retry <= 1000)
		wsc_sleep_ms((int)t.retry + 20);
	CU_ASSERT_EQUAL(SAY(&a, room, "later", "s12"), 11);

	/* The bucket is per connection: the same user's other one has its own. */
	OPEN(&a2, "rl-a");
	JOIN(&a2, room);
	b->len = 0;
	for (i = 1; i <= 10; i++)
		batch_add(b, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"c%d\"}",
		    room, i);
	batch_add(b, "{\"type\":\"ping\",\"ref\":\"end\"}");
	CU_ASSERT_FATAL(wsc_send_raw(&a2.w, b->buf, b->len) == 0);
	tally_until(&a2, &t2, 10, 10, 0, 0, 1);
	CU_ASSERT_EQUAL(t2.acks, 10);
	CU_ASSERT_EQUAL(t2.errors, 0);
	wsc_close(&a.w);
	wsc_close(&a2.w);
	free(b);
}

/* Duplicates and no-ops are charged too. */
static void
test_rate_dups_noops(void)
{
	static const char room[] = "rl2";
	struct tally t = { 0 }, t2 = { 0 };
	struct batch *b = calloc(1, sizeof(*b));
	struct cl a, c;
	int i;

	CU_ASSERT_FATAL(b != NULL);
	OPEN(&a, "rl-dup");
	JOIN(&a, room);
	for (i = 1; i <= 11; i++)
		batch_add(b, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"x\","
		    "\"id\":\"same\",\"ref\":\"q%d\"}", room, i);
	batch_add(b, "{\"type\":\"ping\",\"ref\":\"end\"}");
	CU_ASSERT_FATAL(wsc_send_raw(&a.w, b->buf, b->len) == 0);
	tally_until(&a, &t, 10, 1, 0, 1, 1);
	CU_ASSERT_EQUAL(t.acks, 10);
	CU_ASSERT_EQUAL(t.msgs, 1);
	CU_ASSERT_STRING_EQUAL(t.err_refs, "q11");

	OPEN(&c, "rl-noop");
	JOIN(&c, room);
	b->len = 0;
	for (i = 1; i <= 11; i++)
		batch_add(b, "{\"type\":\"react\",\"room\":\"%s\",\"target\":1,"
		    "\"emoji\":\"+\",\"ref\":\"q%d\"}", room, i);
	batch_add(b, "{\"type\":\"ping\",\"ref\":\"end\"}");
	CU_ASSERT_FATAL(wsc_send_raw(&c.w, b->buf, b->len) == 0);
	/* One reaction event, one ack for it, nine no-op acks, one error. */
	tally_until(&c, &t2, 10, 0, 0, 1, 1);
	CU_ASSERT_EQUAL(t2.acks, 10);
	CU_ASSERT_EQUAL(t2.reactions, 1);
	CU_ASSERT_EQUAL(t2.other, 0);
	CU_ASSERT_STRING_EQUAL(t2.err_refs, "q11");
	wsc_close(&a.w);
	wsc_close(&c.w);
	free(b);
}

/* typing and read: 5/s, burst 10, each its own bucket. */
static void
test_rate_signal_buckets(void)
{
	static const char room[] = "rl3";
	struct tally t = { 0 };
	struct batch *b = calloc(1, sizeof(*b));
	struct cl a, o;
	int i;

	CU_ASSERT_FATAL(b != NULL);
	OPEN(&o, "rl-obs");
	OPEN(&a, "rl-sig");
	JOIN(&o, room);
	JOIN(&a, room);
	for (i = 1; i <= 11; i++)
		batch_add(b, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"x\","
		    "\"ref\":\"q%d\"}", room, i);
	for (i = 1; i <= 11; i++)
		batch_add(b, "{\"type\":\"typing\",\"room\":\"%s\",\"active\":true,"
		    "\"ref\":\"t%d\"}", room, i);
	for (i = 1; i <= 11; i++)
		batch_add(b, "{\"type\":\"read\",\"room\":\"%s\",\"seq\":%d,"
		    "\"ref\":\"r%d\"}", room, i, i);
	batch_add(b, "{\"type\":\"ping\",\"ref\":\"end\"}");
	CU_ASSERT_FATAL(wsc_send_raw(&a.w, b->buf, b->len) == 0);
	tally_until(&a, &t, 10, 10, 10, 3, 1);
	CU_ASSERT_EQUAL(t.acks, 10);
	CU_ASSERT_EQUAL(t.msgs, 10);
	CU_ASSERT_EQUAL(t.receipts, 10);
	CU_ASSERT_EQUAL(t.errors, 3);
	CU_ASSERT_EQUAL(t.err_ok, 3);
	CU_ASSERT_EQUAL(t.other, 0);
	if (strcmp(t.err_refs, "q11 t11 r11") != 0)
		fprintf(stderr, "rate: errors for %s\n", t.err_refs);
	CU_ASSERT_STRING_EQUAL(t.err_refs, "q11 t11 r11");
	wsc_close(&a.w);
	wsc_close(&o.w);
	free(b);
}

/* The 50th rate_limited error within 10 s is sent, then close 1008. */
static void
test_rate_abuse_close(void)
{
	static const char room[] = "rl4";
	struct tally t = { 0 };
	struct batch *b = calloc(1, sizeof(*b));
	int64_t deadline;
	struct cl a, o;
	json_t *j;
	int n;

	CU_ASSERT_FATAL(b != NULL);
	OPEN(&a, "rl-flood");
	JOIN(&a, room);
	for (int i = 1; i <= 75; i++)
		batch_add(b, "{\"type\":\"send\",\"room\":\"%s\",\"body\":\"f%d\","
		    "\"ref\":\"q%d\"}", room, i, i);
	CU_ASSERT_FATAL(wsc_send_raw(&a.w, b->buf, b->len) == 0);
	deadline = wsc_now_ms() + 5000;
	while ((j = recv_json(&a.w, wsc_remaining_ms(deadline))) != NULL) {
		tally_frame(&t, j);
		json_decref(j);
	}
	fprintf(stderr, "rate: flood: %d acks, %d errors, then close %d; "
	    "frames: %s\n", t.acks, t.errors, last_close, t.order);
	CU_ASSERT_EQUAL(last_close, 1008);
	CU_ASSERT_EQUAL(t.errors, 50);
	CU_ASSERT_EQUAL(t.err_ok, 50);
	CU_ASSERT(t.acks >= 10 && t.acks + t.errors <= 75);
	(void)wsc_send_frame(&a.w, 8, 1, "\x03\xf0", 2, 0);
	CU_ASSERT_EQUAL(wsc_wait_eof(&a.w, T_IO), 1);
	wsc_close(&a.w);
	free(b);

	/* Every event the flood made was acked to its sender before the close. */
	OPEN(&o, "rl-flood-obs");
	JOIN(&o, room);
	csend(&o, "{\"type\":\"history\",\"room\":\"%s\",\"limit\":200}", room);
	j = EXPECT(&o, "history");
	n = j != NULL ? (int)json_array_size(json_object_get(j, "events")) : -1;
	if (n != t.acks)
		fprintf(stderr, "rate: flood: the room holds %d events of the "
		    "flooder, it got %d acks\n", n, t.acks);
	CU_ASSERT_EQUAL(n, t.acks);
	json_decref(j);
	wsc_close(&o.w);
}

/* ---- churn: room lifetime and membership races ------------------------ */

/*
 * --room-idle 1: an empty room without events is freed after 1 s. Processes
 * of clients open, use and drop connections as fast as they can, joining
 * and leaving rooms of a pool: "busy" rooms get stream events (each was
 * seeded with one message first, so in memory mode every busy room stays),
 * "quiet" rooms only ever see join, leave, typing, read and history, so
 * they empty, are freed and are created again over and over while their
 * joins and leaves are in flight. Connections end in every way a client
 * can end one. Contents depend on timing and are not checked; what is:
 * every frame is a JSON object with a type, and while a connection is in a
 * room the room's stream events reach it each once, in order, with no gap
 * (and none for a room it is not in). Afterwards every quiet room must be
 * gone, every busy room's stream intact from seq 1, and SIGTERM exit 0.
 */

#define CH_PROCS 8
#define CH_CONNS 6              /* concurrent connections per process */
#define CH_USERS 3              /* user names per process, shared by its connections */
#define CH_ROOMS 40             /* the pool of room names */
#define CH_BUSY 12              /* rooms 0..CH_BUSY-1 are busy, the rest quiet */
#define CH_MAXJOIN 4            /* rooms a connection asks to be in at most */
#define CH_QMAX 8               /* joins in flight per room and connection */
#define CH_INFLIGHT 48          /* unanswered requests before a connection waits */
#define CH_BUDGET 4000          /* sequenced requests per process, spread over the run;
                                 * keeps each busy room's stream well inside
                                 * the 10000 events a room keeps by default */
#define CH_RUN_MS 8000          /* the churn */
#define CH_END_MS 3000          /* then: closing handshakes, reports */
#define CH_SUITE_MS 14000       /* every wait before the stop, from the suite's start */
#define CH_OPEN_PCT 40          /* the part of its period a quiet room is used */

enum ch_end {
	CH_END_CLEAN,           /* close frame, wait for the server's */
	CH_END_ABRUPT,          /* close(2) without a close frame */
	CH_END_RESET,           /* SO_LINGER 0: RST */
	CH_END_JOIN,            /* close right after sending a join */
	CH_END_LEAVE,           /* close right after sending a leave */
	CH_END_HALF,            /* close in the middle of a frame */
	CH_END_N
};

static const char *const ch_end_names[CH_END_N] = { "clean", "abrupt",
    "reset", "join-in-flight", "leave-in-flight", "half-frame" };

/* Error codes the clients got (timing decides them: only counted). */
static const char *const ch_codes[] = { "not_found", "forbidden",
    "not_member", "bad_request", "unauthorized", "too_large",
    "rate_limited", "unavailable", NULL };
#define CH_NCODES 9             /* the above and "other" */

/* One room as a connection sees it. */
struct ch_room {
	int want;               /* our last request for it was a join */
	int member;             /* a joined came, and no left since */
	int trunc;              /* that joined said truncated: the next seq may skip */
	int nq;                 /* joins in flight; their since (-1: none) */
	long long q[CH_QMAX];
	long long last;         /* the last stream seq seen while a member */
	long long own;          /* our user's latest message (edit target) */
	long long any;          /* the latest message (react target) */
};

struct ch_conn {
	struct wsc w;
	int live;               /* the socket is open */
	int closing;            /* our close frame went out: waiting for the server's */
	int64_t next;           /* next burst (or reconnect) */
	int64_t until;          /* closing: the server's close is due by then */
	int bursts;             /* bursts left before the connection ends */
	int inflight;           /* requests sent that get a reply, not yet answered */
	int nwant;
	char user[24];
	struct ch_room rooms[CH_ROOMS];
};

struct ch_result {
	long conns, frames, events, requests, sequenced, joins, since_joins;
	long truncated, gaps, ends[CH_END_N], codes[CH_NCODES];
	int nerr;
	char err[400];
	char odd[300];          /* the first error other than not_found, forbidden */
};

struct ch_proc {
	int proc, port;
	char src[32];
	uint64_t rng;
	int64_t epoch;                  /* the parent's start: seasons agree */
	int64_t t0, run_end;
	long long seen[CH_ROOMS];       /* the highest seq any connection saw */
	unsigned long body_n;
	struct ch_result res;
};

static void ch_err(struct ch_proc *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
ch_err(struct ch_proc *p, const char *fmt, ...)
{
	va_list ap;

	if (p->res.nerr++ > 0)
		return;
	va_start(ap, fmt);
	vsnprintf(p->res.err, sizeof(p->res.err), fmt, ap);
	va_end(ap);
}

static uint32_t
ch_rand(struct ch_proc *p)
{
	p->rng ^= p->rng << 13;
	p->rng ^= p->rng >> 7;
	p->rng ^= p->rng << 17;
	return (uint32_t)(p->rng >> 32);
}

static int
ch_pct(struct ch_proc *p, unsigned pct)
{
	return ch_rand(p) % 100 < pct;
}

static void
ch_room_name(int r, char *buf, size_t n)
{
	snprintf(buf, n, r < CH_BUSY ? "churn-busy-%02d" : "churn-quiet-%02d", r);
}

/* The pool index of a room name, or -1. */
static int
ch_room_index(const char *name)
{
	char want[32];
	int r;

	if (name == NULL || sscanf(name, "churn-%*[a-z]-%d", &r) != 1 ||
	    r < 0 || r >= CH_ROOMS)
		return -1;
	ch_room_name(r, want, sizeof(want));
	return strcmp(name, want) == 0 ? r : -1;
}

static int
ch_stream_type(const char *t)
{
	return strcmp(t, "message") == 0 || strcmp(t, "edit") == 0 ||
	    strcmp(t, "delete") == 0 || strcmp(t, "reaction") == 0;
}

static void
ch_drop(struct ch_proc *p, struct ch_conn *c)
{
	wsc_close(&c->w);
	c->live = 0;
	c->closing = 0;
	c->next = wsc_now_ms() + (int64_t)(ch_rand(p) % 20);
}

static void ch_send(struct ch_proc *p, struct ch_conn *c, int replies,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Send one request; replies: it gets a reply (it carries a ref). */
static void
ch_send(struct ch_proc *p, struct ch_conn *c, int replies, const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	int n;

	if (!c->live)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		ch_err(p, "%s: request too long", c->user);
		return;
	}
	if (wsc_send_text(&c->w, buf) < 0) {
		ch_err(p, "%s: send failed (%s)", c->user, strerror(errno));
		ch_drop(p, c);
		return;
	}
	p->res.requests++;
	c->inflight += replies;
}

/*
 * Quiet room r is used during the first CH_OPEN_PCT % of its period (1.8 to
 * 3.3 s, each room its own phase) by every process alike, and left alone
 * for the rest, 1.1 to 2 s: around the 1 s after which the server frees
 * it, so its frees (every 0.5 s tick) race the joins that create it anew.
 */
static int
ch_in_season(const struct ch_proc *p, int r, int64_t now)
{
	int q = r - CH_BUSY;
	int64_t period = 1800 + (q % 7) * 250, off = (q * 137) % period;

	return r < CH_BUSY ||
	    ((now - p->epoch + off) % period) * 100 < period * CH_OPEN_PCT;
}

/*
 * A random room of the pool: one we are not asking to be in (want 0), or
 * one we are (want 1); -1 when there is none. Only busy ones when busy;
 * only quiet ones in season when season.
 */
static int
ch_pick(struct ch_proc *p, struct ch_conn *c, int want, int busy, int season)
{
	int n = busy ? CH_BUSY : CH_ROOMS, start = (int)(ch_rand(p) % (unsigned)n);
	int64_t now = wsc_now_ms();

	for (int i = 0; i < n; i++) {
		int r = (start + i) % n;

		if (c->rooms[r].want == want &&
		    (!season || ch_in_season(p, r, now)))
			return r;
	}
	return -1;
}

/* join r: plain, or with a since behind, at or ahead of what we saw. */
static void
ch_join(struct ch_proc *p, struct ch_conn *c, int r)
{
	struct ch_room *cr = &c->rooms[r];
	long long since = -1, base;
	char name[32];
	uint32_t x = ch_rand(p) % 100;

	if (cr->nq >= CH_QMAX)
		return;
	ch_room_name(r, name, sizeof(name));
	base = cr->last > p->seen[r] ? cr->last : p->seen[r];
	if (x < 50) {
		since = -1;
	} else if (x < 85) {
		since = base - (long long)(ch_rand(p) % 30);
		if (since < 0)
			since = 0;
	} else if (x < 95) {
		since = base + 1 + (long long)(ch_rand(p) % 1000);
	} else {
		since = 0;      /* everything: at most 1000, truncated past */
	}
	if (since < 0)
		ch_send(p, c, 1, "{\"type\":\"join\",\"room\":\"%s\","
		    "\"ref\":\"j%d\"}", name, r);
	else
		ch_send(p, c, 1, "{\"type\":\"join\",\"room\":\"%s\",\"since\":"
		    "%lld,\"ref\":\"j%d\"}", name, since, r);
	if (!c->live)
		return;
	cr->q[cr->nq++] = since;
	if (!cr->want)
		c->nwant++;
	cr->want = 1;
	p->res.joins++;
	p->res.since_joins += since >= 0;
}

static void
ch_leave(struct ch_proc *p, struct ch_conn *c, int r)
{
	char name[32];

	ch_room_name(r, name, sizeof(name));
	ch_send(p, c, 1, "{\"type\":\"leave\",\"room\":\"%s\",\"ref\":\"l\"}",
	    name);
	if (c->live && c->rooms[r].want) {
		c->rooms[r].want = 0;
		c->nwant--;
	}
}

/* A request that makes (or may make) a stream event in busy room r. */
static void
ch_sequenced(struct ch_proc *p, struct ch_conn *c, int r)
{
	static const char *const emoji[] = { "+1", "\\u2764", "ok", "x" };
	struct ch_room *cr = &c->rooms[r];
	char name[32], body[3200], id[48];
	uint32_t x = ch_rand(p) % 100;
	size_t len;

	ch_room_name(r, name, sizeof(name));
	id[0] = '\0';
	if (ch_pct(p, 40))      /* ids from a small space: duplicates happen */
		snprintf(id, sizeof(id), ",\"id\":\"k%d-%u\"", p->proc,
		    ch_rand(p) % 300);
	p->res.sequenced++;
	if (x < 20 && cr->own > 0) {
		ch_send(p, c, 1, "{\"type\":\"edit\",\"room\":\"%s\",\"target\":"
		    "%lld,\"body\":\"edited %lu\",\"ref\":\"e\"%s}", name,
		    cr->own, p->body_n++, id);
	} else if (x < 40 && cr->any > 0) {
		long long target = cr->any - (long long)(ch_rand(p) % 3);

		ch_send(p, c, 1, "{\"type\":\"react\",\"room\":\"%s\",\"target\":"
		    "%lld,\"emoji\":\"%s\",\"add\":%s,\"ref\":\"r\"%s}", name,
		    target < 1 ? 1 : target, emoji[ch_rand(p) % 4],
		    ch_pct(p, 70) ? "true" : "false", id);
	} else if (x < 43 && cr->own > 0) {
		ch_send(p, c, 1, "{\"type\":\"delete\",\"room\":\"%s\",\"target\":"
		    "%lld,\"ref\":\"d\"%s}", name, cr->own, id);
	} else {
		len = (size_t)snprintf(body, sizeof(body), "churn %d %lu",
		    p->proc, p->body_n++);
		if (ch_pct(p, 5)) {     /* now and then a long one */
			size_t want = 100 + ch_rand(p) % 2900;

			for (; len < want; len++)
				body[len] = (char)('a' + len % 26);
			body[len] = '\0';
		}
		ch_send(p, c, 1, "{\"type\":\"send\",\"room\":\"%s\",\"body\":"
		    "\"%s\",\"ref\":\"s\"%s}", name, body, id);
	}
}

/* One request of a random kind. */
static void
ch_op(struct ch_proc *p, struct ch_conn *c)
{
	int64_t elapsed = wsc_now_ms() - p->t0;
	int can_seq = p->res.sequenced <
	    (long)((long long)CH_BUDGET * elapsed / CH_RUN_MS) + 20;
	uint32_t x = ch_rand(p) % 100;
	char name[32];
	int r;

	if (c->nwant == 0 || (x < 14 && c->nwant < CH_MAXJOIN)) {
		/* Quiet rooms get most joins: they are the ones freed. */
		r = ch_pick(p, c, 0, ch_pct(p, 35), 1);
		if (r >= 0)
			ch_join(p, c, r);
		return;
	}
	if (x < 20) {                   /* join again: a fresh snapshot */
		if ((r = ch_pick(p, c, 1, 0, 1)) >= 0)
			ch_join(p, c, r);
		return;
	}
	if (x < 32) {
		if ((r = ch_pick(p, c, 1, 0, 0)) >= 0)
			ch_leave(p, c, r);
		return;
	}
	r = ch_pick(p, c, 1, ch_pct(p, 60), 0);
	if (r < 0 && (r = ch_pick(p, c, 1, 0, 0)) < 0)
		return;
	ch_room_name(r, name, sizeof(name));
	if (r < CH_BUSY && can_seq && x < 75) {
		ch_sequenced(p, c, r);
		return;
	}
	if (x < 75)             /* a quiet room, or out of budget */
		x = 75 + ch_rand(p) % 25;
	if (x < 84) {
		ch_send(p, c, 0, "{\"type\":\"typing\",\"room\":\"%s\","
		    "\"active\":%s}", name, ch_pct(p, 60) ? "true" : "false");
	} else if (x < 90) {
		ch_send(p, c, 0, "{\"type\":\"read\",\"room\":\"%s\",\"seq\":%lld}",
		    name, c->rooms[r].last + 1 + (long long)(ch_rand(p) % 3));
	} else if (x < 97) {
		if (ch_pct(p, 50) && c->rooms[r].last > 1)
			ch_send(p, c, 1, "{\"type\":\"history\",\"room\":\"%s\","
			    "\"before\":%lld,\"limit\":%u,\"ref\":\"h\"}", name,
			    c->rooms[r].last, 1 + ch_rand(p) % 60);
		else
			ch_send(p, c, 1, "{\"type\":\"history\",\"room\":\"%s\","
			    "\"limit\":%u,\"ref\":\"h\"}", name,
			    1 + ch_rand(p) % 60);
	} else {
		ch_send(p, c, 1, "{\"type\":\"ping\",\"ref\":\"p\"}");
	}
}

/* End the connection one way or another. */
static void
ch_end(struct ch_proc *p, struct ch_conn *c, enum ch_end how)
{
	static const struct linger lg = { 1, 0 };
	uint8_t frame[3300];
	char text[3200], name[32];
	size_t n, len;
	int r;

	p->res.ends[how]++;
	switch (how) {
	case CH_END_CLEAN: {
		uint8_t code[2] = { 1000 >> 8, 1000 & 0xff };

		if (wsc_send_frame(&c->w, 8, 1, code, 2, 0) < 0) {
			ch_err(p, "%s: sending a close frame failed", c->user);
			break;
		}
		c->closing = 1;
		c->until = wsc_now_ms() + 3000;
		return;
	}
	case CH_END_ABRUPT:
		break;
	case CH_END_RESET:
		(void)setsockopt(c->w.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		break;
	case CH_END_JOIN:
		/* Now and then out of season: it may be on its way out. */
		r = ch_pick(p, c, 0, ch_pct(p, 30), !ch_pct(p, 4));
		if (r < 0)
			r = (int)(ch_rand(p) % CH_ROOMS);
		ch_room_name(r, name, sizeof(name));
		ch_send(p, c, 1, "{\"type\":\"join\",\"room\":\"%s\"%s}", name,
		    ch_pct(p, 30) ? ",\"since\":0" : "");
		if (c->live && ch_pct(p, 30))
			(void)setsockopt(c->w.fd, SOL_SOCKET, SO_LINGER, &lg,
			    sizeof(lg));
		break;
	case CH_END_LEAVE:
		r = ch_pick(p, c, 1, 0, 0);
		if (r < 0) {
			r = ch_pick(p, c, 0, 0, 1);
			if (r >= 0)
				ch_join(p, c, r);
		}
		if (r >= 0)
			ch_leave(p, c, r);
		if (c->live && ch_pct(p, 30))
			(void)setsockopt(c->w.fd, SOL_SOCKET, SO_LINGER, &lg,
			    sizeof(lg));
		break;
	case CH_END_HALF:
		r = ch_pick(p, c, 1, 1, 0);
		ch_room_name(r >= 0 ? r : 0, name, sizeof(name));
		len = 10 + ch_rand(p) % 3000;
		n = (size_t)snprintf(text, sizeof(text), "{\"type\":\"send\","
		    "\"room\":\"%s\",\"body\":\"", name);
		while (n < len)
			text[n++] = 'h';
		memcpy(text + n, "\"}", 3);
		n = wsc_encode(frame, 1, 1, text, strlen(text), ch_rand(p), 0);
		/* Anything from one byte of the header to all but one byte. */
		len = 1 + ch_rand(p) % (n - 1);
		if (wsc_send_raw(&c->w, frame, len) < 0)
			ch_err(p, "%s: sending half a frame failed", c->user);
		break;
	case CH_END_N:
		break;
	}
	if (c->live)
		ch_drop(p, c);
}

/* Leave the quiet rooms whose season is over. */
static void
ch_off_season(struct ch_proc *p, struct ch_conn *c)
{
	int64_t now = wsc_now_ms();

	for (int r = CH_BUSY; r < CH_ROOMS && c->live; r++)
		if (c->rooms[r].want && !ch_in_season(p, r, now))
			ch_leave(p, c, r);
}

static void
ch_open(struct ch_proc *p, struct ch_conn *c)
{
	int st;

	memset(c, 0, sizeof(*c));
	c->w.fd = -1;
	snprintf(c->user, sizeof(c->user), "cu%d-%u", p->proc,
	    ch_rand(p) % CH_USERS);
	st = wsc_connect(&c->w, HOST, p->port, p->src, "/ws", NULL, 0, 2000);
	if (st != 101) {
		ch_err(p, "%s: upgrade: %d", c->user, st);
		wsc_close(&c->w);
		c->next = wsc_now_ms() + 100;
		return;
	}
	c->live = 1;
	c->bursts = 1 + (int)(ch_rand(p) % 8);
	c->next = wsc_now_ms();         /* the first burst goes with the hello */
	p->res.conns++;
	ch_send(p, c, 1, "{\"type\":\"hello\",\"name\":\"%s\"}", c->user);
}

/* A stream event for room r on c. */
static void
ch_event(struct ch_proc *p, struct ch_conn *c, const json_t *j, const char *type)
{
	const char *room = jstr(j, "room");
	int r = ch_room_index(room);
	struct ch_room *cr;
	long long seq = jint(j, "seq");

	p->res.events++;
	if (r < 0 || seq < 1) {
		ch_err(p, "%s: %s for room %s seq %lld", c->user, type,
		    room ? room : "(none)", seq);
		return;
	}
	cr = &c->rooms[r];
	if (r >= CH_BUSY)
		ch_err(p, "%s: %s seq %lld in quiet room %s", c->user, type, seq,
		    room);
	if (!cr->member) {
		ch_err(p, "%s: %s seq %lld in %s, which it is not in", c->user,
		    type, seq, room);
		return;
	}
	if (seq <= cr->last) {
		ch_err(p, "%s: %s: %s seq %lld after %lld: backwards or repeated",
		    c->user, room, type, seq, cr->last);
		return;
	}
	if (seq != cr->last + 1 && !cr->trunc) {
		p->res.gaps++;
		ch_err(p, "%s: %s: %s seq %lld after %lld: a gap", c->user, room,
		    type, seq, cr->last);
	}
	cr->trunc = 0;
	cr->last = seq;
	if (seq > p->seen[r])
		p->seen[r] = seq;
	if (strcmp(type, "message") == 0) {
		cr->any = seq;
		if (jstreq(j, "user", c->user))
			cr->own = seq;
	}
}

static void
ch_joined(struct ch_proc *p, struct ch_conn *c, const json_t *j)
{
	const char *room = jstr(j, "room");
	int r = ch_room_index(room);
	struct ch_room *cr;
	long long since, seq = jint(j, "seq");

	c->inflight--;
	if (r < 0 || seq < 0) {
		ch_err(p, "%s: joined %s seq %lld", c->user, room ? room : "(none)",
		    seq);
		return;
	}
	cr = &c->rooms[r];
	if (cr->nq == 0) {
		ch_err(p, "%s: joined %s, no join of it in flight", c->user, room);
		return;
	}
	since = cr->q[0];
	memmove(cr->q, cr->q + 1, (size_t)(--cr->nq) * sizeof(cr->q[0]));
	if (cr->member)
		return;         /* joined again: a fresh snapshot, the stream goes on */
	cr->member = 1;
	cr->last = since >= 0 && since < seq ? since : seq;
	cr->trunc = jtrue(j, "truncated");
	p->res.truncated += cr->trunc;
	if (seq > p->seen[r])
		p->seen[r] = seq;
}

static void
ch_text(struct ch_proc *p, struct ch_conn *c, const struct wsc_frame *f)
{
	json_t *j = json_loadb((const char *)f->payload, f->len, 0, NULL);
	const char *type = jstr(j, "type"), *ref;
	int r, k;

	if (!json_is_object(j) || type == NULL) {
		ch_err(p, "%s: not a JSON object with a type: %.*s", c->user,
		    (int)(f->len > 200 ? 200 : f->len), (const char *)f->payload);
		json_decref(j);
		return;
	}
	if (ch_stream_type(type)) {
		ch_event(p, c, j, type);
	} else if (strcmp(type, "joined") == 0) {
		ch_joined(p, c, j);
	} else if (strcmp(type, "left") == 0) {
		c->inflight--;
		r = ch_room_index(jstr(j, "room"));
		if (r < 0 || !c->rooms[r].member)
			ch_err(p, "%s: left %s, which it was not in", c->user,
			    jstr(j, "room"));
		else
			c->rooms[r].member = 0;
	} else if (strcmp(type, "error") == 0) {
		ref = jstr(j, "ref");
		for (k = 0; ch_codes[k] != NULL && !jstreq(j, "code", ch_codes[k]);
		    k++)
			;
		p->res.codes[k]++;
		if (k >= 2 && p->res.odd[0] == '\0')
			snprintf(p->res.odd, sizeof(p->res.odd), "%s: %.*s", c->user,
			    (int)(f->len > 250 ? 250 : f->len),
			    (const char *)f->payload);
		if (ref != NULL) {
			c->inflight--;
			/* A join refused: it is no longer in flight. */
			if (sscanf(ref, "j%d", &r) == 1 && r >= 0 && r < CH_ROOMS &&
			    c->rooms[r].nq > 0)
				memmove(c->rooms[r].q, c->rooms[r].q + 1,
				    (size_t)(--c->rooms[r].nq) *
				    sizeof(c->rooms[r].q[0]));
		}
	} else if (strcmp(type, "ack") == 0 || strcmp(type, "history") == 0 ||
	    strcmp(type, "pong") == 0 || strcmp(type, "welcome") == 0) {
		c->inflight--;
	}
	/* presence, typing, receipt: nothing to count */
	json_decref(j);
}

static void
ch_frame(struct ch_proc *p, struct ch_conn *c, const struct wsc_frame *f)
{
	uint8_t pl[125];
	size_t n;

	p->res.frames++;
	switch (f->opcode) {
	case 1:
		if (!f->fin || f->masked || f->rsv != 0)
			ch_err(p, "%s: text frame fin %d masked %d rsv %d", c->user,
			    f->fin, f->masked, f->rsv);
		ch_text(p, c, f);
		break;
	case 8:
		if (!c->closing)
			ch_err(p, "%s: the server closed the connection (%d)",
			    c->user, f->close_code);
		ch_drop(p, c);
		break;
	case 9:
		n = f->len < sizeof(pl) ? f->len : sizeof(pl);
		memcpy(pl, f->payload, n);
		(void)wsc_send_frame(&c->w, 10, 1, pl, n, 0);
		break;
	case 10:
		break;
	default:
		ch_err(p, "%s: frame with opcode %d", c->user, f->opcode);
		break;
	}
}

static void __attribute__((noreturn))
churn_child(int proc, int port, uint64_t seed, int64_t epoch, int wfd)
{
	struct ch_conn *cs = calloc(CH_CONNS, sizeof(*cs));
	struct pollfd pfd[CH_CONNS];
	struct ch_proc *p = calloc(1, sizeof(*p));
	struct wsc_frame f;
	int64_t now, hard_end;
	int i, n, r = 0, ended = 0, any;

	if (cs == NULL || p == NULL)
		_exit(2);
	p->proc = proc;
	p->port = port;
	p->epoch = epoch;
	p->rng = seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(proc + 1));
	if (p->rng == 0)
		p->rng = 1;
	snprintf(p->src, sizeof(p->src), "127.0.0.%d", 20 + proc);
	p->t0 = wsc_now_ms();
	p->run_end = p->t0 + CH_RUN_MS;
	hard_end = p->run_end + CH_END_MS;
	for (i = 0; i < CH_CONNS; i++) {
		cs[i].w.fd = -1;
		cs[i].next = p->t0 + i * 3;
	}
	for (;;) {
		now = wsc_now_ms();
		if (now >= p->run_end && !ended) {
			/* The end: whatever is still open ends now, some way. */
			for (i = 0; i < CH_CONNS; i++)
				if (cs[i].live && !cs[i].closing)
					ch_end(p, &cs[i], (enum ch_end)(ch_rand(p) %
					    CH_END_N));
			ended = 1;
		}
		any = 0;
		for (i = 0; i < CH_CONNS; i++) {
			struct ch_conn *c = &cs[i];

			if (!c->live && !ended && now >= c->next)
				ch_open(p, c);
			if (c->live && c->closing && wsc_now_ms() >= c->until) {
				ch_err(p, "%s: no close frame from the server "
				    "within 3 s of ours", c->user);
				ch_drop(p, c);
			}
			if (c->live && !c->closing && !ended)
				ch_off_season(p, c);
			if (c->live && !c->closing && !ended &&
			    wsc_now_ms() >= c->next && c->inflight < CH_INFLIGHT) {
				n = 1 + (int)(ch_rand(p) % 8);
				for (int k = 0; k < n && c->live; k++)
					ch_op(p, c);
				if (c->live && --c->bursts <= 0)
					ch_end(p, c, (enum ch_end)(ch_rand(p) %
					    CH_END_N));
				else
					c->next = wsc_now_ms() + 3 +
					    (int64_t)(ch_rand(p) % 40);
			}
			any |= c->live;
		}
		if (ended && !any)
			break;
		if (wsc_now_ms() >= hard_end) {
			for (i = 0; i < CH_CONNS; i++)
				if (cs[i].live)
					ch_err(p, "%s: still open %d ms after the "
					    "run (closing %d)", cs[i].user,
					    CH_END_MS, cs[i].closing);
			break;
		}
		for (i = 0; i < CH_CONNS; i++) {
			pfd[i].fd = cs[i].live ? cs[i].w.fd : -1;
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
		}
		if (poll(pfd, CH_CONNS, 5) < 0 && errno != EINTR)
			break;
		for (i = 0; i < CH_CONNS; i++) {
			struct ch_conn *c = &cs[i];

			if (!c->live || pfd[i].revents == 0)
				continue;
			while (c->live && (r = wsc_recv(&c->w, &f, 0)) == 1)
				ch_frame(p, c, &f);
			if (c->live && r < 0) {
				if (!c->closing)
					ch_err(p, "%s: connection lost", c->user);
				ch_drop(p, c);
			}
		}
	}
	for (i = 0; i < CH_CONNS; i++)
		wsc_close(&cs[i].w);
	(void)!write(wfd, &p->res, sizeof(p->res));
	_exit(0);
}

static int64_t ch_deadline;     /* the last wait before the stop ends by then */
static int ch_churned;          /* the churn ran and every process reported */

static int
init_churn(void)
{
	static const char *const a[] = { "-t", "4", "--room-idle", "1",
	    "--rate", "0", NULL };

	ch_deadline = wsc_now_ms() + CH_SUITE_MS;
	ch_churned = 0;
	return start_with(a);
}

/* At most ms, and no later than the suite's deadline. */
static int
ch_wait_ms(int ms)
{
	int left = wsc_remaining_ms(ch_deadline);

	return ms < left ? ms : left;
}

/* parley_connections, parley_rooms, parley_rooms_active from one GET /metrics. */
static int
ch_metrics(double v[3], int timeout_ms)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\n"
	    "Host: 127.0.0.1\r\nConnection: close\r\n\r\n";
	static const char *const names[3] = { "parley_connections",
	    "parley_rooms", "parley_rooms_active" };
	struct http_resp r;
	char pat[64];
	const char *at;
	int found = 0;

	if (timeout_ms <= 0)
		return -1;
	memset(&r, 0, sizeof(r));
	if (http_request(srv.port, req, sizeof(req) - 1, &r, timeout_ms) != 200 ||
	    r.body == NULL) {
		http_resp_free(&r);
		return -1;
	}
	for (int i = 0; i < 3; i++) {
		snprintf(pat, sizeof(pat), "\n%s ", names[i]);
		if ((at = strstr(r.body, pat)) != NULL) {
			v[i] = strtod(at + strlen(pat), NULL);
			found++;
		}
	}
	http_resp_free(&r);
	return found == 3 ? 0 : -1;
}

/* Lines of the server's log that contain s. */
static long
ch_log_count(const char *s)
{
	FILE *fp = fopen(srv.log, "r");
	char line[1024];
	long n = 0;

	if (fp == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		n += strstr(line, s) != NULL;
	fclose(fp);
	return n;
}

static void
test_churn(void)
{
	int from_child[CH_PROCS][2];
	struct ch_result res[CH_PROCS], sum;
	pid_t pids[CH_PROCS];
	uint64_t seed = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
	int64_t t0, deadline;
	char name[32];
	int p, st, reported = 0;
	struct cl s;

	CU_ASSERT_FATAL(srv.pid > 0);
	/* Every busy room gets its seq 1: it has events, so it stays. */
	OPEN(&s, "churn-seed");
	for (int r = 0; r < CH_BUSY; r++) {
		ch_room_name(r, name, sizeof(name));
		JOIN(&s, name);
		CU_ASSERT_EQUAL_FATAL(SAY(&s, name, "seed", NULL), 1);
	}
	wsc_close(&s.w);

	fprintf(stderr, "churn: seed %llu, %d processes x %d connections, "
	    "%d rooms (%d busy), %d ms\n", (unsigned long long)seed, CH_PROCS,
	    CH_CONNS, CH_ROOMS, CH_BUSY, CH_RUN_MS);
	memset(res, 0, sizeof(res));
	memset(&sum, 0, sizeof(sum));
	t0 = wsc_now_ms();
	for (p = 0; p < CH_PROCS; p++) {
		CU_ASSERT_FATAL(pipe(from_child[p]) == 0);
		pids[p] = fork_child();
		CU_ASSERT_FATAL(pids[p] >= 0);
		if (pids[p] == 0) {
			for (int q = 0; q < p; q++)
				close(from_child[q][0]);
			close(from_child[p][0]);
			churn_child(p, srv.port, seed, t0, from_child[p][1]);
		}
		close(from_child[p][1]);
	}
	deadline = t0 + CH_RUN_MS + CH_END_MS + 1500;
	for (p = 0; p < CH_PROCS; p++) {
		if (read_full(from_child[p][0], &res[p], sizeof(res[p]),
		    deadline) < 0) {
			fprintf(stderr, "churn: no result from process %d\n", p);
			CU_FAIL("a churn process reported no result");
			continue;
		}
		reported++;
		if (res[p].nerr > 0)
			fprintf(stderr, "churn: process %d: %d errors, first: %s\n",
			    p, res[p].nerr, res[p].err);
		CU_ASSERT_EQUAL(res[p].nerr, 0);
		if (res[p].odd[0] != '\0')
			fprintf(stderr, "churn: process %d: an error frame: %s\n",
			    p, res[p].odd);
		sum.conns += res[p].conns;
		sum.frames += res[p].frames;
		sum.events += res[p].events;
		sum.requests += res[p].requests;
		sum.sequenced += res[p].sequenced;
		sum.joins += res[p].joins;
		sum.since_joins += res[p].since_joins;
		sum.truncated += res[p].truncated;
		sum.gaps += res[p].gaps;
		for (int k = 0; k < CH_END_N; k++)
			sum.ends[k] += res[p].ends[k];
		for (int k = 0; k < CH_NCODES; k++)
			sum.codes[k] += res[p].codes[k];
	}
	for (p = 0; p < CH_PROCS; p++) {
		st = reap(pids[p], wsc_now_ms() + 1000);
		CU_ASSERT_EQUAL(st, 0);
		close(from_child[p][0]);
	}
	fprintf(stderr, "churn: %ld connections, %ld requests (%ld sequenced, "
	    "%ld joins, %ld with since, %ld truncated), %ld frames, %ld stream "
	    "events seen, %ld gaps, in %lld ms\n", sum.conns, sum.requests,
	    sum.sequenced, sum.joins, sum.since_joins, sum.truncated, sum.frames,
	    sum.events, sum.gaps, (long long)(wsc_now_ms() - t0));
	fprintf(stderr, "churn: ends:");
	for (int k = 0; k < CH_END_N; k++)
		fprintf(stderr, " %s %ld", ch_end_names[k], sum.ends[k]);
	fprintf(stderr, "\nchurn: errors:");
	for (int k = 0; k < CH_NCODES; k++)
		fprintf(stderr, " %s %ld", ch_codes[k] ? ch_codes[k] : "other",
		    sum.codes[k]);
	fprintf(stderr, "\n");
	CU_ASSERT_EQUAL(sum.gaps, 0);
	CU_ASSERT(sum.conns > CH_PROCS * CH_CONNS);
	CU_ASSERT(server_alive(&srv));
	ch_churned = reported == CH_PROCS;
}

/* Every client gone: no connection, no active room, quiet rooms freed. */
static void
test_churn_settle(void)
{
	double v[3] = { -1, -1, -1 };
	int64_t deadline;
	int ok = 0;

	CU_ASSERT_FATAL(srv.pid > 0);
	deadline = wsc_now_ms() + ch_wait_ms(5000);
	do {
		/* The /metrics connection itself is one. */
		if (ch_metrics(v, wsc_remaining_ms(deadline)) == 0 &&
		    v[0] <= 1 && v[2] == 0) {
			ok = 1;
			break;
		}
		wsc_sleep_ms(50);
	} while (wsc_now_ms() < deadline);
	if (!ok)
		fprintf(stderr, "churn: after the clients: parley_connections "
		    "%g, parley_rooms_active %g, parley_rooms %g\n", v[0], v[2],
		    v[1]);
	CU_ASSERT_FATAL(ok);
	/* Room ticks come every 0.5 s: a room empty for 1 s goes within 1.5 s. */
	wsc_sleep_ms(ch_wait_ms(1100));
	ok = 0;
	deadline = wsc_now_ms() + ch_wait_ms(3000);
	do {
		if (ch_metrics(v, wsc_remaining_ms(deadline)) == 0 &&
		    v[1] == CH_BUSY) {
			ok = 1;
			break;
		}
		wsc_sleep_ms(50);
	} while (wsc_now_ms() < deadline);
	fprintf(stderr, "churn: parley_rooms %g (want %d busy rooms of %d), "
	    "parley_rooms_active %g, parley_connections %g; log: %ld "
	    "room_created, %ld room_freed\n", v[1], CH_BUSY, CH_ROOMS, v[2],
	    v[0], ch_log_count("room_created"), ch_log_count("room_freed"));
	CU_ASSERT(v[1] < CH_ROOMS);
	CU_ASSERT_EQUAL(v[1], CH_BUSY);
	CU_ASSERT_EQUAL(v[2], 0);
}

/*
 * A fresh client joins each busy room with since 0 and pages back with
 * history: seqs 1..N, each exactly once, all stream events of the room.
 */
static void
test_churn_streams(void)
{
	char name[32];
	long long total = 0;
	struct cl a;
	json_t *j;

	CU_ASSERT_FATAL(srv.pid > 0);
	CU_ASSERT_FATAL(ch_churned);
	CU_ASSERT_FATAL(wsc_remaining_ms(ch_deadline) > 0);
	OPEN(&a, "churn-audit");
	for (int r = 0; r < CH_BUSY && !a.dead; r++) {
		long long n = -1, low = -1, dup = 0, bad = 0, pages = 0;
		unsigned char *got = NULL;
		int more = 1, trunc = 0, pong = 0;

		ch_room_name(r, name, sizeof(name));
		csend(&a, "{\"type\":\"join\",\"room\":\"%s\",\"since\":0,"
		    "\"ref\":\"aj\"}", name);
		csend(&a, "{\"type\":\"ping\",\"ref\":\"ap\"}");
		/* joined, the replay, then the pong. */
		while (!pong && !a.dead) {
			j = recv_json(&a.w, ch_wait_ms(T_IO));
			if (j == NULL) {
				fprintf(stderr, "churn: %s: join since 0 stopped "
				    "(close %d)\n", name, last_close);
				a.dead = 1;
				break;
			}
			if (is_type(j, "joined") && jstreq(j, "room", name)) {
				n = jint(j, "seq");
				trunc = jtrue(j, "truncated");
				if (n >= 1)
					got = calloc((size_t)n + 1, 1);
			} else if (is_type(j, "pong")) {
				pong = 1;
			} else if (got != NULL && jstreq(j, "room", name) &&
			    ch_stream_type(jstr(j, "type") ? jstr(j, "type") : "")) {
				long long s = jint(j, "seq");

				if (s < 1 || s > n || got[s]++)
					bad++;
				else if (low < 0 || s < low)
					low = s;
			} else {
				jdump("churn: unexpected frame: ", j);
				bad++;
			}
			json_decref(j);
		}
		CU_ASSERT(got != NULL);
		if (got == NULL)
			break;
		/* Page back from the oldest replayed event to seq 1. */
		if (low < 0)
			low = n + 1;
		while (more && low > 1 && !a.dead && pages++ < n / 100 + 10) {
			const json_t *evs;

			csend(&a, "{\"type\":\"history\",\"room\":\"%s\",\"before\":"
			    "%lld,\"limit\":200,\"ref\":\"ah\"}", name, low);
			j = recv_json(&a.w, ch_wait_ms(T_IO));
			if (!is_type(j, "history")) {
				jdump("churn: expected history, got: ", j);
				json_decref(j);
				a.dead = 1;
				break;
			}
			evs = json_object_get(j, "events");
			more = jtrue(j, "more");
			if (!json_is_array(evs) || json_array_size(evs) == 0)
				more = 0;
			for (size_t i = 0; json_is_array(evs) &&
			    i < json_array_size(evs); i++) {
				const json_t *e = json_array_get(evs, i);
				long long s = jint(e, "seq");

				if (!jstreq(e, "room", name) || jstr(e, "type") ==
				    NULL || !ch_stream_type(jstr(e, "type")) ||
				    s < 1 || s >= low) {
					jdump("churn: history event: ", e);
					bad++;
				} else if (got[s]++) {
					dup++;
				}
			}
			for (size_t i = 0; json_is_array(evs) &&
			    i < json_array_size(evs); i++) {
				long long s = jint(json_array_get(evs, i), "seq");

				if (s >= 1 && s < low)
					low = s;
			}
			json_decref(j);
		}
		for (long long s = 1; s <= n; s++)
			if (got[s] != 1) {
				if (got[s] == 0)
					fprintf(stderr, "churn: %s: seq %lld of %lld "
					    "missing\n", name, s, n);
				bad++;
				break;
			}
		if (bad || dup)
			fprintf(stderr, "churn: %s: seq 1..%lld: %lld bad, %lld "
			    "duplicated (truncated %d, %lld pages)\n", name, n,
			    bad, dup, trunc, pages);
		CU_ASSERT(bad == 0 && dup == 0 && n >= 1);
		total += n;
		free(got);
		csend(&a, "{\"type\":\"leave\",\"room\":\"%s\",\"ref\":\"al\"}",
		    name);
		j = recv_json(&a.w, ch_wait_ms(T_IO));
		CU_ASSERT(is_type(j, "left"));
		json_decref(j);
	}
	CU_ASSERT(!a.dead);
	fprintf(stderr, "churn: %d busy rooms hold seq 1..N each once, %lld "
	    "events in all\n", CH_BUSY, total);
	wsc_close(&a.w);
}

/* ---- main ------------------------------------------------------------ */

static const struct test_def fanout_tests[] = {
	{ "50 clients, 5 processes, 20 rooms, 200 sends each", test_fanout },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def since_tests[] = {
	{ "join since while senders send", test_join_since },
	{ "disconnect, reconnect, resume", test_resume },
	{ "truncated replay, then history to seq 1", test_truncated },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def proto_tests[] = {
	{ "hello with a token: welcome", test_hello_token },
	{ "token clock leeway", test_hello_leeway },
	{ "bad token or name: unauthorized, 1008", test_hello_refused },
	{ "request before hello: unauthorized, 1008", test_before_hello },
	{ "no hello within 10 s: unauthorized, 1008", test_hello_timeout },
	{ "token in the upgrade; 401 when invalid", test_upgrade_token },
	{ "/api/ without a valid token: 401", test_api_needs_token },
	{ "ping, refs, unknown fields", test_ping_refs },
	{ "bad_request", test_bad_requests },
	{ "too_large", test_too_large },
	{ "not_member", test_not_member },
	{ "dm rooms: forbidden", test_dm },
	{ "presence, members, online", test_presence },
	{ "typing", test_typing },
	{ "typing expires after 6 s", test_typing_expiry },
	{ "read receipts", test_receipts },
	{ "history", test_history },
	{ "join since: replay, rejoin, leave", test_replay },
	{ "pipelined hello, join, send, history", test_pipelined },
	{ "replies in request order", test_reply_order },
	{ "send then leave: own copy arrives", test_send_then_leave },
	{ "edit, delete, react", test_edit_delete_react },
	{ "dedupe by id", test_dedupe },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def churn_tests[] = {
	{ "8 processes churn connections and rooms for 8 s", test_churn },
	{ "after the churn: no connection, quiet rooms freed", test_churn_settle },
	{ "after the churn: busy streams hold seq 1..N once", test_churn_streams },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

/*
 * SIGTERM in the middle of a pipelined stream: every send the server took
 * is acked (or refused with unavailable) before the 1001; no event is seen
 * without its ack; the server exits 0.
 */
#define DRAIN_SENDS 400

static void
drain_count(json_t *j, int *acks, int *copies, int *unavailable, int *last_ack,
    int *last_copy, int *order_ok)
{
	if (is_type(j, "ack")) {
		(*acks)++;
		*order_ok &= jint(j, "seq") == *last_ack + 1;
		*last_ack = (int)jint(j, "seq");
	} else if (is_type(j, "message")) {
		(*copies)++;
		*last_copy = (int)jint(j, "seq");
	} else if (is_type(j, "error") && jstreq(j, "code", "unavailable")) {
		(*unavailable)++;
		CU_ASSERT(jint(j, "retry_after_ms") > 0);
	}
}

static void
test_shutdown_drain(void)
{
	struct cl a;
	json_t *j;
	int acks = 0, unavailable = 0, copies = 0, last_ack = 0, last_copy = 0;
	int st, order_ok = 1, killed = 0;

	OPEN(&a, "drainer");
	csend(&a, "{\"type\":\"join\",\"room\":\"drain\"}");
	json_decref(expect_at(&a, "joined", __LINE__));
	/*
	 * A quarter of the sends, then SIGTERM as soon as the server is
	 * visibly working on them (an ack or our copy arrived), then the rest
	 * while it stops.
	 */
	for (int i = 0; i < DRAIN_SENDS; i++) {
		csend(&a, "{\"type\":\"send\",\"room\":\"drain\",\"body\":\"b%d\","
		    "\"id\":\"d%d\"}", i, i);
		if (i + 1 != DRAIN_SENDS / 4)
			continue;
		while (!killed && (j = cl_recv(&a)) != NULL) {
			drain_count(j, &acks, &copies, &unavailable, &last_ack,
			    &last_copy, &order_ok);
			json_decref(j);
			if (acks + copies > 0) {
				kill(srv.pid, SIGTERM);
				killed = 1;
			}
		}
	}
	CU_ASSERT_FATAL(killed);
	while ((j = cl_recv(&a)) != NULL) {
		drain_count(j, &acks, &copies, &unavailable, &last_ack, &last_copy,
		    &order_ok);
		json_decref(j);
	}
	fprintf(stderr, "drain: %d acks, %d own copies, %d unavailable, close %d\n",
	    acks, copies, unavailable, last_close);
	CU_ASSERT(order_ok);
	CU_ASSERT(acks >= 1);
	/* Nothing delivered that was not acked (the order of the two is free). */
	CU_ASSERT(last_copy <= last_ack);
	CU_ASSERT(copies == acks);
	CU_ASSERT_EQUAL(last_close, 1001);
	(void)wsc_send_frame(&a.w, 8, 1, "\x03\xe9", 2, 0);
	wsc_close(&a.w);
	st = server_stop(&srv, 0, 6000);
	if (st != 0)
		server_dump_log(&srv, "shutdown drain");
	CU_ASSERT_EQUAL(st, 0);
}

static const struct test_def drain_tests[] = {
	{ "SIGTERM: accepted sends acked, then 1001", test_shutdown_drain },
	{ NULL, NULL }
};

static const struct test_def rate_tests[] = {
	{ "burst 10, then rate_limited", test_rate_burst },
	{ "duplicates and no-ops count", test_rate_dups_noops },
	{ "typing and read buckets", test_rate_signal_buckets },
	{ "50th rate_limited closes 1008", test_rate_abuse_close },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

int
main(void)
{
	if (harness_begin("test_chat") != 0)
		return 1;
	if (harness_add_suite("fanout t1", init_norate_t1, cleanup_server, fanout_tests) ||
	    harness_add_suite("fanout t2", init_norate_t2, cleanup_server, fanout_tests) ||
	    harness_add_suite("fanout t4", init_norate_t4, cleanup_server, fanout_tests) ||
	    harness_add_suite("join since", init_norate_t4, cleanup_server, since_tests) ||
	    harness_add_suite("protocol", init_proto, cleanup_server, proto_tests) ||
	    harness_add_suite("rate limits", init_rate, cleanup_server, rate_tests) ||
	    harness_add_suite("shutdown drain", init_norate_t2, cleanup_server, drain_tests) ||
	    harness_add_suite("churn", init_churn, cleanup_server, churn_tests)) {
		CU_cleanup_registry();
		return 1;
	}
	return harness_run();
}
