/*
 * parley-bench - the load generator of parleyd.
 *
 *   parley-bench SCENARIO [options]
 *
 * Shape of a run. The parent process forks --procs workers and afterwards
 * only coordinates: one pipe to each worker (commands) and one back
 * (readiness, then the final report). Each worker runs its own libevent
 * loop, one event per socket, and drives its share of the connections
 * through TCP connect, WebSocket upgrade, hello and join. When every worker
 * has joined all of its connections, the parent hands out the absolute
 * CLOCK_MONOTONIC times of the warm-up, the measured window and the drain;
 * it samples server and generator CPU at the window's edges and finally
 * merges the workers' reports (counters, per-room ack counts and a latency
 * histogram that adds bucket by bucket).
 *
 * Why processes rather than threads: one process may hold at most 20000
 * files here, and one loop per process needs no locks at all.
 *
 * Latency: the publisher writes its CLOCK_MONOTONIC send time into the
 * message body ("<t_ns>:<publisher>:<n>"); every process on the machine
 * shares that clock, so the receiver subtracts with no clock sync.
 *
 * Scenarios: "fanout" for now. Everything up to "all connections joined"
 * (the engine) is shared, so connect, idle, ramp or persist scenarios add an
 * entry to the scenarios[] table plus what they do once the connections are
 * up.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/event_struct.h>   /* struct event is embedded in struct conn */
#include <jansson.h>

#include "jwt.h"
#include "wsclient.h"
#include "xmalloc.h"

#define BENCH_ERRLEN 160          /* first error text carried to the report */
#define SCRATCH_MIN (128u * 1024) /* read buffer shared by a worker's sockets */
#define READ_ROOM (16u * 1024)    /* least free space offered to one read() */
#define HEAD_MAX 8192             /* upgrade response head */
#define OUT_MAX (64u << 20)       /* pending output of one connection: past this
                                     the generator is hopelessly behind */
#define USER_MAX 32               /* protocol: user names are 1-32 bytes */
#define ROOM_MAX 64               /* protocol: room names are 1-64 bytes */
#define BODY_MAX 60000
#define FD_SLACK 32               /* files a worker needs besides its sockets */
#define REPORT_GRACE_NS (5 * NS_PER_S) /* wait for reports past the drain */
#define NS_PER_S 1000000000ull
#define BOUND_FRACTION 0.85       /* CPU share above which we call it generator-bound */

/* Exit statuses. */
#define EXIT_CLEAN 0              /* no loss, no error */
#define EXIT_LOSS 1               /* loss or errors */
#define EXIT_USAGE 2

/* ---- options ------------------------------------------------------- */

struct bench_opts {
	const char *scenario;
	int connections;
	int rooms;
	int procs;
	const char *host;
	struct in_addr dst;
	int port;
	struct in_addr src_base;
	int src_count;               /* 0 until resolved: one per 5000 connections */
	const char *name_prefix;
	const char *room_prefix;
	const char *jwt_secret_file;
	uint8_t *secret;             /* read before fork, NULL without a file */
	size_t secret_len;
	int publishers;              /* per room */
	double rate;                 /* deliveries per second, all rooms */
	double duration, warmup, drain, connect_timeout;  /* seconds */
	int concurrency;             /* handshakes in flight per worker */
	int tick_ms;                 /* pacing timer period */
	int body_size;               /* pad bodies to at least this many bytes */
	pid_t server_pid;            /* 0: no server CPU */
	int timeline;                /* print the per-second timeline */
	int json;
	int quiet;
};

struct scenario {
	const char *name;
	const char *summary;
	int (*run)(struct bench_opts *o);
};

static int fanout_run(struct bench_opts *o);

static const struct scenario scenarios[] = {
	{ "fanout", "open-loop room fan-out: latency, loss, CPU per delivery",
	    fanout_run },
};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

/* ---- time, misc ---------------------------------------------------- */

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t
secs_to_ns(double s)
{
	return (uint64_t)(s * 1e9);
}

/* Write all of buf to a blocking fd (pipes to and from the parent). */
static int
write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Digits at s (before end) as an unsigned; pointer past them, NULL if none. */
static const char *
parse_u64(const char *s, const char *end, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;

	while (p < end && *p >= '0' && *p <= '9' && p - s < 19)
		v = v * 10 + (uint64_t)(*p++ - '0');
	if (p == s)
		return NULL;
	*out = v;
	return p;
}

static const char *
skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/*
 * The value of a top-level key in a server frame, found without a JSON
 * parser: qkey is the key with its quotes ("\"seq\""). A string value can
 * only contain a quote escaped, so the quoted key cannot match inside one;
 * a match not followed by ':' was a value (a user named "seq") and the
 * search goes on.
 */
static const char *
json_field(const char *p, const char *end, const char *qkey, size_t qlen)
{
	const char *hit, *v;

	while (p < end && (hit = memmem(p, (size_t)(end - p), qkey, qlen)) != NULL) {
		v = skip_ws(hit + qlen, end);
		if (v < end && *v == ':') {
			v = skip_ws(v + 1, end);
			return v < end ? v : NULL;
		}
		p = hit + 1;
	}
	return NULL;
}

#define FIELD(p, end, lit) json_field((p), (end), (lit), sizeof(lit) - 1)

static int
value_is(const char *v, const char *end, const char *lit, size_t len)
{
	return v != NULL && (size_t)(end - v) >= len && memcmp(v, lit, len) == 0;
}

#define VALUE_IS(v, end, lit) value_is((v), (end), (lit), sizeof(lit) - 1)

/* ---- latency histogram ---------------------------------------------- */

/*
 * Log-linear buckets in nanoseconds, as HdrHistogram: values below 128 are
 * exact, then each power of two splits into 64 buckets, so a bucket is at
 * most 1/64 (1.6%) of its value wide. Index = shift * 64 + (v >> shift)
 * where shift puts v >> shift in [64, 128). Up to 2^36 ns (68 s), 1984
 * buckets; values are clamped to 60 s. Histograms merge by adding counts.
 */
#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_TOP_BITS 36
#define HIST_BUCKETS ((HIST_TOP_BITS - HIST_SUB_BITS + 1) * HIST_SUB)
#define HIST_MAX_NS (60 * NS_PER_S)

static unsigned
hist_index(uint64_t v)
{
	unsigned e, shift;

	if (v > HIST_MAX_NS)
		v = HIST_MAX_NS;
	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	shift = e - HIST_SUB_BITS;
	return shift * HIST_SUB + (unsigned)(v >> shift);
}

/* The highest value that lands in bucket i. */
static uint64_t
hist_high(unsigned i)
{
	unsigned shift = i < 2 * HIST_SUB ? 0 : i / HIST_SUB - 1;
	uint64_t m = i - shift * HIST_SUB;

	return ((m + 1) << shift) - 1;
}

/* The value at quantile q (0..1], never above the exact maximum seen. */
static uint64_t
hist_quantile(const uint64_t *h, uint64_t total, double q, uint64_t max)
{
	uint64_t want = (uint64_t)(q * (double)total + 0.999999), seen = 0;
	unsigned i;

	if (total == 0)
		return 0;
	if (want == 0)
		want = 1;
	for (i = 0; i < HIST_BUCKETS; i++) {
		seen += h[i];
		if (seen >= want)
			return hist_high(i) < max ? hist_high(i) : max;
	}
	return max;
}

/* ---- messages between the parent and its workers --------------------- */

/* Parent to worker: the run's clock, absolute CLOCK_MONOTONIC ns. */
struct go_msg {
	uint64_t warm_ns;    /* publishing starts (warm-up, not measured) */
	uint64_t start_ns;   /* measured window is [start_ns, end_ns) of send times */
	uint64_t end_ns;     /* publishing stops */
	uint64_t stop_ns;    /* drain over: report and exit */
};

enum msg_kind { MSG_READY = 1, MSG_REPORT = 2 };

struct msg_hdr {
	uint32_t kind;       /* enum msg_kind */
	uint32_t len;        /* payload bytes after this header */
};

struct ready_msg {
	uint32_t joined, failed;
	char error[BENCH_ERRLEN];    /* first failure, "" if none */
};

/*
 * A worker's counters. The report is this struct, then one uint64 per room
 * (acks of measured sends) and the latency histogram.
 */
struct bench_stats {
	uint64_t sent;               /* send frames written */
	uint64_t sent_measured;      /* ... with a send time in the window */
	uint64_t skipped;            /* due sends whose publisher was gone */
	uint64_t acked;
	uint64_t acked_measured;
	uint64_t send_errors;        /* error replies to sends */
	uint64_t unacked;            /* sends with no reply when the drain ended */
	uint64_t delivered;          /* message frames received, any time */
	uint64_t delivered_measured; /* ... of sends in the window */
	uint64_t gaps;               /* seq jumps */
	uint64_t gap_events;         /* events those jumps skipped */
	uint64_t dups;               /* seq not above the last one */
	uint64_t foreign;            /* message frames not in our body format */
	uint64_t dropped;            /* joined connections closed (frame or EOF) */
	uint64_t protocol_errors;    /* malformed or unexpected server frames */
	uint64_t other_errors;       /* error frames that answer no send */
	uint64_t lat_max_ns;
	uint64_t lag_max_ns;         /* worst send behind its schedule (window) */
	uint64_t out_max;            /* largest pending output of a connection */
	uint64_t last_close;         /* last close code received */
	char error[BENCH_ERRLEN];    /* first error, "" if none */
};

static void
stats_merge(struct bench_stats *a, const struct bench_stats *b)
{
#define SUM(f) a->f += b->f
#define MAX(f) a->f = a->f > b->f ? a->f : b->f
	SUM(sent); SUM(sent_measured); SUM(skipped); SUM(acked);
	SUM(acked_measured); SUM(send_errors); SUM(unacked); SUM(delivered);
	SUM(delivered_measured); SUM(gaps); SUM(gap_events); SUM(dups);
	SUM(foreign); SUM(dropped); SUM(protocol_errors); SUM(other_errors);
	MAX(lat_max_ns); MAX(lag_max_ns); MAX(out_max);
#undef SUM
#undef MAX
	if (b->last_close != 0)
		a->last_close = b->last_close;
	if (a->error[0] == '\0')
		memcpy(a->error, b->error, sizeof(a->error));
}

/* ---- worker: connections -------------------------------------------- */

enum conn_state {
	CS_IDLE = 0,         /* not started */
	CS_CONNECTING,       /* TCP connect in progress */
	CS_UPGRADING,        /* upgrade request sent, waiting for 101 */
	CS_JOINING,          /* hello and join sent, waiting for joined */
	CS_READY,            /* joined: counts deliveries */
	CS_CLOSED
};

/* A publisher's sends awaiting their reply, oldest first (replies come in order). */
struct pending {
	uint64_t *t;                 /* send time of each, ns */
	uint32_t head, count, cap;   /* cap is a power of two */
	uint64_t n;                  /* sends so far: the <n> of the body */
};

struct gen;

/* One WebSocket connection. Owned by its worker's loop. */
struct conn {
	struct event ev;             /* the only event of this socket */
	struct gen *g;
	int fd;
	uint32_t id;                 /* global number: names its user, room, source */
	uint32_t room;               /* id % rooms */
	uint8_t state;               /* enum conn_state, changed by conn_set_state */
	short watching;              /* events ev is armed for, 0 when none */
	uint64_t last_seq;           /* last seq seen (joined's seq at first) */
	uint8_t *in;                 /* incomplete frame or head carried over */
	uint32_t in_len, in_cap;
	uint8_t *out;                /* output the socket has not taken yet */
	uint32_t out_off, out_len, out_cap;
	char accept[29];             /* the Sec-WebSocket-Accept we expect */
	struct pending *pend;        /* publishers only */
};

/* One worker process. */
struct gen {
	const struct bench_opts *o;
	int no;                      /* worker number, 0..procs-1 */
	struct event_base *base;
	struct conn *conns;          /* ids no, no + procs, no + 2 procs ... */
	uint32_t nconns;
	uint32_t next;               /* next connection to start */
	uint32_t inflight;           /* handshakes under way */
	uint32_t joined, failed;
	int ready_sent;
	struct conn **pubs;          /* this worker's publishers */
	uint32_t npubs, pub_rr;
	double rate;                 /* events per second this worker sends */
	uint64_t due_sent;           /* events sent since go.warm_ns */
	struct go_msg go;
	int cmd_fd, rep_fd;
	struct event *cmd_ev, *tick_ev, *deadline_ev, *stop_ev;
	uint8_t *scratch;            /* every read() lands here */
	size_t scratch_cap;
	uint8_t *tmp;                /* frame encoding */
	size_t tmp_cap;
	char *json;                  /* send request text */
	size_t json_cap;
	char *pad;                   /* --body-size 'x's, NUL-terminated */
	uint32_t rng;                /* mask keys */
	uint64_t now;                /* CLOCK_MONOTONIC ns of the current read */
	struct bench_stats st;
	uint64_t *acked_room;        /* per room: acks of measured sends */
	uint64_t *hist;              /* send-to-delivery latency */
	uint64_t *tl;                /* per second of the window: TL_FIELDS each */
};

/*
 * The timeline: for each second of the window (by send time), deliveries,
 * their latency sum and max. It tells a backlog that builds and drains
 * from scattered stalls, which percentiles cannot.
 */
enum { TL_COUNT, TL_SUM, TL_MAX, TL_FIELDS };

static size_t
tl_seconds(const struct bench_opts *o)
{
	return (size_t)o->duration + ((double)(size_t)o->duration < o->duration);
}

static void
gen_error(struct gen *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keep the first error of the worker for the report; later ones are counted only. */
static void
gen_error(struct gen *g, const char *fmt, ...)
{
	va_list ap;

	if (g->st.error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(g->st.error, sizeof(g->st.error), fmt, ap);
	va_end(ap);
}

static uint32_t
gen_rand(struct gen *g)
{
	/* xorshift32: mask keys need no cryptographic strength here. */
	g->rng ^= g->rng << 13;
	g->rng ^= g->rng >> 17;
	g->rng ^= g->rng << 5;
	return g->rng;
}

static void conn_cb(evutil_socket_t fd, short what, void *arg);

/* Arm the socket's one event for what (EV_READ and/or EV_WRITE). */
static void
conn_watch(struct conn *c, short what)
{
	if (c->watching == what)
		return;
	if (c->watching != 0)
		event_del(&c->ev);
	c->watching = what;
	if (what == 0)
		return;
	event_assign(&c->ev, c->g->base, c->fd, what | EV_PERSIST, conn_cb, c);
	event_add(&c->ev, NULL);
}

/*
 * The one place a connection changes state, so the worker's counters
 * (in flight, joined, failed, dropped) always agree with the states.
 */
static void
conn_set_state(struct conn *c, enum conn_state s)
{
	struct gen *g = c->g;
	enum conn_state from = (enum conn_state)c->state;

	c->state = (uint8_t)s;
	if (s == CS_CONNECTING)
		g->inflight++;
	if (s == CS_READY) {
		g->inflight--;
		g->joined++;
	}
	if (s != CS_CLOSED)
		return;
	if (from == CS_READY)
		g->st.dropped++;
	else if (from != CS_CLOSED) {
		if (from != CS_IDLE)
			g->inflight--;
		g->failed++;
	}
	conn_watch(c, 0);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->in);
	free(c->out);
	c->in = c->out = NULL;
	c->in_len = c->in_cap = c->out_off = c->out_len = c->out_cap = 0;
}

static void
conn_fail(struct conn *c, const char *why)
{
	if (c->state == CS_CLOSED)
		return;
	gen_error(c->g, "connection %" PRIu32 ": %s", c->id, why);
	conn_set_state(c, CS_CLOSED);
}

/* Queue bytes the socket did not take; the event then also waits for EV_WRITE. */
static int
conn_buffer(struct conn *c, const uint8_t *p, size_t len)
{
	size_t live = c->out_len - c->out_off, cap = c->out_cap;

	if (live + len > OUT_MAX) {
		conn_fail(c, "pending output over 64 MiB: generator or server hopelessly behind");
		return -1;
	}
	if (c->out_off > 0) {
		memmove(c->out, c->out + c->out_off, live);
		c->out_off = 0;
		c->out_len = (uint32_t)live;
	}
	if (live + len > cap) {
		cap = cap ? cap : 4096;
		while (cap < live + len)
			cap *= 2;
		c->out = xrealloc(c->out, cap);
		c->out_cap = (uint32_t)cap;
	}
	memcpy(c->out + live, p, len);
	c->out_len = (uint32_t)(live + len);
	if (c->out_len > c->g->st.out_max)
		c->g->st.out_max = c->out_len;
	conn_watch(c, EV_READ | EV_WRITE);
	return 0;
}

/* Send now what the socket takes, keep the rest. -1: the connection is closed. */
static int
conn_write(struct conn *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	ssize_t n;

	if (c->state == CS_CLOSED)
		return -1;
	if (c->out_len == c->out_off) {
		n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR) {
			conn_fail(c, strerror(errno));
			return -1;
		}
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		}
		if (len == 0)
			return 0;
	}
	return conn_buffer(c, p, len);
}

static void
conn_flush(struct conn *c)
{
	ssize_t n;

	while (c->out_off < c->out_len) {
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
		    MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			conn_fail(c, strerror(errno));
			return;
		}
		c->out_off += (uint32_t)n;
	}
	c->out_off = c->out_len = 0;
	conn_watch(c, EV_READ);
}

/* Encode one masked client frame and write it. */
static int
conn_send_frame(struct conn *c, int opcode, const void *payload, size_t len)
{
	struct gen *g = c->g;
	size_t n;

	if (len + WSC_MAX_HEADER > g->tmp_cap) {
		g->tmp_cap = len + WSC_MAX_HEADER + 1024;
		g->tmp = xrealloc(g->tmp, g->tmp_cap);
	}
	n = wsc_encode(g->tmp, opcode, 1, payload, len, gen_rand(g), 0);
	return conn_write(c, g->tmp, n);
}

static int
conn_send_text(struct conn *c, const char *s, size_t len)
{
	return conn_send_frame(c, 1, s, len);
}

/* ---- worker: handshake ---------------------------------------------- */

static void
conn_start(struct conn *c)
{
	const struct bench_opts *o = c->g->o;
	struct sockaddr_in src = { 0 }, dst = { 0 };
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		conn_fail(c, strerror(errno));
		return;
	}
	c->fd = fd;
	conn_set_state(c, CS_CONNECTING);
	/*
	 * Let connect() pick the port for the whole 4-tuple: bind() alone
	 * would reserve a port per source address and run out at ~28000.
	 */
	(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	src.sin_family = AF_INET;
	src.sin_addr.s_addr = htonl(ntohl(o->src_base.s_addr) +
	    c->id % (uint32_t)o->src_count);
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
		conn_fail(c, "bind to source address failed");
		return;
	}
	dst.sin_family = AF_INET;
	dst.sin_addr = o->dst;
	dst.sin_port = htons((uint16_t)o->port);
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0 &&
	    errno != EINPROGRESS) {
		conn_fail(c, strerror(errno));
		return;
	}
	conn_watch(c, EV_WRITE);
}

static void
conn_connected(struct conn *c)
{
	const struct bench_opts *o = c->g->o;
	char req[512], key[25];
	int err = 0, n;
	socklen_t elen = sizeof(err);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0)
		err = errno;
	if (err != 0) {
		conn_fail(c, strerror(err));
		return;
	}
	wsc_make_key(key);
	wsc_expected_accept(key, c->accept);
	n = snprintf(req, sizeof(req),
	    "GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: parley.v1\r\n\r\n",
	    o->host, o->port, key);
	conn_set_state(c, CS_UPGRADING);
	conn_watch(c, EV_READ);
	(void)conn_write(c, req, (size_t)n);
}

/* After the 101: authenticate and join, pipelined (requests are handled in order). */
static void
conn_hello_join(struct conn *c)
{
	const struct bench_opts *o = c->g->o;
	char name[USER_MAX + 1], buf[JWT_MAX_LEN + 128], *tok;
	int n;

	snprintf(name, sizeof(name), "%s%" PRIu32, o->name_prefix, c->id);
	if (o->secret != NULL) {
		tok = jwt_sign_user(o->secret, o->secret_len, name,
		    (int64_t)time(NULL) + 3600 + (int64_t)o->duration);
		n = snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"token\":\"%s\"}", tok);
		free(tok);
	} else {
		n = snprintf(buf, sizeof(buf), "{\"type\":\"hello\",\"name\":\"%s\"}", name);
	}
	if (conn_send_text(c, buf, (size_t)n) != 0)
		return;
	n = snprintf(buf, sizeof(buf), "{\"type\":\"join\",\"room\":\"%s%" PRIu32 "\"}",
	    o->room_prefix, c->room);
	(void)conn_send_text(c, buf, (size_t)n);
}

/*
 * Check the upgrade response at buf. Returns the bytes of its head, 0 when
 * incomplete, -1 when refused (the connection is then closed).
 */
static ssize_t
conn_upgrade(struct conn *c, const uint8_t *buf, size_t len)
{
	const uint8_t *e = memmem(buf, len, "\r\n\r\n", 4);
	char head[HEAD_MAX + 1], val[64], why[BENCH_ERRLEN];
	size_t hlen;

	if (e == NULL) {
		if (len < HEAD_MAX)
			return 0;
		conn_fail(c, "upgrade response head over 8 KiB");
		return -1;
	}
	hlen = (size_t)(e - buf) + 4;
	if (hlen > HEAD_MAX) {
		conn_fail(c, "upgrade response head over 8 KiB");
		return -1;
	}
	memcpy(head, buf, hlen);
	head[hlen] = '\0';
	if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
		snprintf(why, sizeof(why), "upgrade refused: %.*s",
		    (int)strcspn(head, "\r"), head);
		conn_fail(c, why);
		return -1;
	}
	if (!wsc_head_header(head, "Sec-WebSocket-Accept", val, sizeof(val)) ||
	    strcmp(val, c->accept) != 0) {
		conn_fail(c, "bad Sec-WebSocket-Accept");
		return -1;
	}
	conn_set_state(c, CS_JOINING);
	conn_hello_join(c);
	return c->state == CS_CLOSED ? -1 : (ssize_t)hlen;
}

/* ---- worker: frames from the server ----------------------------------- */

static void
pending_push(struct pending *p, uint64_t t)
{
	uint32_t i, cap;
	uint64_t *nt;

	if (p->count == p->cap) {
		/* Grow, unrolling the ring so that head is 0 again. */
		cap = p->cap ? p->cap * 2 : 64;
		nt = xmalloc(cap * sizeof(*nt));
		for (i = 0; i < p->count; i++)
			nt[i] = p->t[(p->head + i) & (p->cap - 1)];
		free(p->t);
		p->t = nt;
		p->cap = cap;
		p->head = 0;
	}
	p->t[(p->head + p->count) & (p->cap - 1)] = t;
	p->count++;
}

/* The send time of the oldest unanswered send; 0 if there is none. */
static int
pending_pop(struct pending *p, uint64_t *t)
{
	if (p == NULL || p->count == 0)
		return 0;
	*t = p->t[p->head];
	p->head = (p->head + 1) & (p->cap - 1);
	p->count--;
	return 1;
}

static int
in_window(const struct gen *g, uint64_t t)
{
	return t >= g->go.start_ns && t < g->go.end_ns;
}

static void
on_joined(struct conn *c, const char *p, const char *end)
{
	const char *v = FIELD(p, end, "\"seq\"");

	if (c->state != CS_JOINING) {
		c->g->st.protocol_errors++;
		return;
	}
	/* Events up to the joined seq are history: the stream starts after it. */
	if (v == NULL || parse_u64(v, end, &c->last_seq) == NULL) {
		conn_fail(c, "joined without a seq");
		return;
	}
	conn_set_state(c, CS_READY);
}

static void
tl_add(uint64_t *sec, uint64_t lat)
{
	sec[TL_COUNT]++;
	sec[TL_SUM] += lat;
	if (lat > sec[TL_MAX])
		sec[TL_MAX] = lat;
}

/*
 * The hot path: one call per delivered message. Check the seq for gaps and
 * duplicates and, for sends of the measured window, record the latency.
 */
static void
on_message(struct conn *c, const char *p, const char *end)
{
	struct gen *g = c->g;
	const char *v = FIELD(p, end, "\"seq\"");
	uint64_t seq, t, lat;

	if (v == NULL || parse_u64(v, end, &seq) == NULL) {
		g->st.protocol_errors++;
		return;
	}
	if (seq <= c->last_seq) {
		g->st.dups++;
		return;
	}
	if (seq > c->last_seq + 1) {
		g->st.gaps++;
		g->st.gap_events += seq - c->last_seq - 1;
	}
	c->last_seq = seq;
	g->st.delivered++;
	v = FIELD(p, end, "\"body\"");
	if (v == NULL || *v != '"' || (v = parse_u64(v + 1, end, &t)) == NULL ||
	    v >= end || *v != ':') {
		g->st.foreign++;
		return;
	}
	if (!in_window(g, t))
		return;
	g->st.delivered_measured++;
	lat = g->now > t ? g->now - t : 0;
	g->hist[hist_index(lat)]++;
	if (lat > g->st.lat_max_ns)
		g->st.lat_max_ns = lat;
	tl_add(g->tl + (t - g->go.start_ns) / NS_PER_S * TL_FIELDS, lat);
}

static void
on_ack(struct conn *c)
{
	struct gen *g = c->g;
	uint64_t t;

	if (!pending_pop(c->pend, &t)) {
		g->st.protocol_errors++;
		return;
	}
	g->st.acked++;
	if (in_window(g, t)) {
		g->st.acked_measured++;
		g->acked_room[c->room]++;
	}
}

static void
on_error(struct conn *c, const char *p, size_t len)
{
	struct gen *g = c->g;
	char why[BENCH_ERRLEN];
	uint64_t t;

	snprintf(why, sizeof(why), "server error: %.*s",
	    (int)(len > 120 ? 120 : len), p);
	if (c->state != CS_READY) {
		conn_fail(c, why);
		return;
	}
	/* Replies come in request order, so this error answers the oldest send. */
	if (pending_pop(c->pend, &t))
		g->st.send_errors++;
	else
		g->st.other_errors++;
	gen_error(g, "connection %" PRIu32 ": %s", c->id, why);
}

static void
on_text(struct conn *c, const char *p, size_t len)
{
	const char *end = p + len, *type = FIELD(p, end, "\"type\"");

	if (type == NULL)
		c->g->st.protocol_errors++;
	else if (VALUE_IS(type, end, "\"message\""))
		on_message(c, p, end);
	else if (VALUE_IS(type, end, "\"ack\""))
		on_ack(c);
	else if (VALUE_IS(type, end, "\"error\""))
		on_error(c, p, len);
	else if (VALUE_IS(type, end, "\"joined\""))
		on_joined(c, p, end);
	/* welcome, presence and the rest need nothing. */
}

static void
conn_frame(struct conn *c, const struct wsc_frame *f)
{
	char why[64];

	switch (f->opcode) {
	case 1:
		if (f->fin && !f->masked && f->rsv == 0) {
			on_text(c, (const char *)f->payload, f->len);
			return;
		}
		break;
	case 8:
		c->g->st.last_close = f->close_code;
		snprintf(why, sizeof(why), "closed by the server, code %u",
		    (unsigned)f->close_code);
		conn_fail(c, why);
		return;
	case 9:
		(void)conn_send_frame(c, 10, f->payload, f->len);
		return;
	case 10:
		return;
	default:
		break;
	}
	/* The server neither fragments nor sends binary: anything else is a bug. */
	c->g->st.protocol_errors++;
}

/* Keep the unparsed tail for the next read. */
static void
conn_keep(struct conn *c, const uint8_t *p, size_t len)
{
	size_t cap = c->in_cap;

	c->in_len = (uint32_t)len;
	if (len == 0)
		return;
	if (len > cap) {
		cap = cap ? cap : 512;
		while (cap < len)
			cap *= 2;
		c->in = xrealloc(c->in, cap);
		c->in_cap = (uint32_t)cap;
	}
	memcpy(c->in, p, len);
}

/* Room for a carried-over tail plus one good read. */
static void
gen_scratch(struct gen *g, size_t carried)
{
	if (g->scratch_cap >= carried + READ_ROOM)
		return;
	while (g->scratch_cap < carried + READ_ROOM)
		g->scratch_cap *= 2;
	g->scratch = xrealloc(g->scratch, g->scratch_cap);
}

/*
 * One read per event, level-triggered, so a busy socket cannot starve the
 * others; the carried-over tail is copied in front of the new bytes.
 */
static void
conn_read(struct conn *c)
{
	struct gen *g = c->g;
	struct wsc_frame f;
	size_t len, off = 0;
	ssize_t n, r;

	gen_scratch(g, c->in_len);
	if (c->in_len > 0)
		memcpy(g->scratch, c->in, c->in_len);
	n = read(c->fd, g->scratch + c->in_len, g->scratch_cap - c->in_len);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		conn_fail(c, n == 0 ? "connection closed (EOF)" : strerror(errno));
		return;
	}
	len = c->in_len + (size_t)n;
	g->now = mono_ns();
	if (c->state == CS_UPGRADING) {
		r = conn_upgrade(c, g->scratch, len);
		if (r < 0)
			return;
		off = (size_t)r;
		if (r == 0) {
			conn_keep(c, g->scratch, len);
			return;
		}
	}
	while (off < len && c->state != CS_CLOSED) {
		r = wsc_parse(g->scratch + off, len - off, &f);
		if (r == 0)
			break;
		if (r < 0) {
			g->st.protocol_errors++;
			conn_fail(c, "malformed frame from the server");
			return;
		}
		conn_frame(c, &f);
		off += (size_t)r;
	}
	if (c->state != CS_CLOSED)
		conn_keep(c, g->scratch + off, len - off);
}

static void gen_progress(struct gen *g);

static void
conn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct gen *g = c->g;

	(void)fd;
	if (c->state == CS_CONNECTING)
		conn_connected(c);
	else {
		if (what & EV_WRITE)
			conn_flush(c);
		if ((what & EV_READ) && c->state != CS_CLOSED)
			conn_read(c);
	}
	if (!g->ready_sent)
		gen_progress(g);
}

/* ---- worker: phases --------------------------------------------------- */

static void
gen_send_msg(struct gen *g, uint32_t kind, const void *a, size_t alen,
    const void *b, size_t blen, const void *d, size_t dlen)
{
	struct msg_hdr h = { kind, (uint32_t)(alen + blen + dlen) };

	if (write_full(g->rep_fd, &h, sizeof(h)) != 0 ||
	    write_full(g->rep_fd, a, alen) != 0 ||
	    (blen > 0 && write_full(g->rep_fd, b, blen) != 0) ||
	    (dlen > 0 && write_full(g->rep_fd, d, dlen) != 0))
		_exit(1);        /* the parent is gone: nobody to report to */
}

static void
gen_send_ready(struct gen *g)
{
	struct ready_msg m;

	memset(&m, 0, sizeof(m));
	m.joined = g->joined;
	m.failed = g->failed;
	memcpy(m.error, g->st.error, sizeof(m.error));
	g->ready_sent = 1;
	event_del(g->deadline_ev);
	gen_send_msg(g, MSG_READY, &m, sizeof(m), NULL, 0, NULL, 0);
}

/* Start handshakes up to the concurrency bound; say ready when all are done. */
static void
gen_progress(struct gen *g)
{
	while (g->next < g->nconns &&
	    g->inflight < (uint32_t)g->o->concurrency)
		conn_start(&g->conns[g->next++]);
	if (g->joined + g->failed == g->nconns)
		gen_send_ready(g);
}

static void
gen_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct gen *g = arg;
	uint32_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < g->nconns; i++)
		if (g->conns[i].state != CS_READY)
			conn_fail(&g->conns[i], "not joined within --connect-timeout");
	g->next = g->nconns;
	gen_send_ready(g);
}

static void
gen_publish(struct gen *g, struct conn *c, uint64_t t)
{
	const struct bench_opts *o = g->o;
	char body[96];
	int blen, pad, n;

	blen = snprintf(body, sizeof(body), "%" PRIu64 ":%" PRIu32 ":%" PRIu64,
	    t, c->id, c->pend->n++);
	pad = o->body_size > blen ? o->body_size - blen : 0;
	n = snprintf(g->json, g->json_cap,
	    "{\"type\":\"send\",\"room\":\"%s%" PRIu32 "\",\"body\":\"%s%.*s\"}",
	    o->room_prefix, c->room, body, pad, g->pad);
	pending_push(c->pend, t);
	g->st.sent++;
	if (in_window(g, t))
		g->st.sent_measured++;
	(void)conn_send_text(c, g->json, (size_t)n);
}

/*
 * Open loop: every tick sends what the schedule says is due by now, never
 * waiting for acks. Send k of this worker is due at warm + k / rate; how
 * late it goes out is the pacing lag, our own saturation signal.
 */
static void
gen_tick(evutil_socket_t fd, short what, void *arg)
{
	struct gen *g = arg;
	uint64_t now = mono_ns(), until, due, sched;
	struct conn *c;

	(void)fd;
	(void)what;
	if (now < g->go.warm_ns || g->npubs == 0)
		return;
	/* Sends 0 .. due-1 are those scheduled at or before until (< end). */
	until = now < g->go.end_ns ? now : g->go.end_ns - 1;
	due = (uint64_t)((double)(until - g->go.warm_ns) * g->rate / 1e9) + 1;
	while (g->due_sent < due) {
		sched = g->go.warm_ns +
		    (uint64_t)((double)g->due_sent * 1e9 / g->rate);
		now = mono_ns();
		if (in_window(g, sched) && now - sched > g->st.lag_max_ns)
			g->st.lag_max_ns = now - sched;
		c = g->pubs[g->pub_rr++ % g->npubs];
		g->due_sent++;
		if (c->state == CS_READY)
			gen_publish(g, c, now);
		else
			g->st.skipped++;
	}
	if (now >= g->go.end_ns)
		event_del(g->tick_ev);
}

static void
gen_stop(evutil_socket_t fd, short what, void *arg)
{
	struct gen *g = arg;

	(void)fd;
	(void)what;
	event_base_loopbreak(g->base);
}

static struct timeval
ns_to_tv(uint64_t ns)
{
	struct timeval tv = { (time_t)(ns / NS_PER_S),
	    (suseconds_t)(ns % NS_PER_S / 1000) };

	return tv;
}

/* The parent's command pipe: the run's clock, or EOF when the run is aborted. */
static void
gen_cmd(evutil_socket_t fd, short what, void *arg)
{
	struct gen *g = arg;
	struct timeval tick = { 0, g->o->tick_ms * 1000 }, tv;
	uint64_t now;
	ssize_t n;

	(void)what;
	if (g->go.stop_ns != 0) {
		/* Only EOF can follow the clock: the parent aborts the run. */
		_exit(1);
	}
	n = read(fd, &g->go, sizeof(g->go));
	if (n < 0 && errno == EINTR)
		return;
	if (n != (ssize_t)sizeof(g->go))
		_exit(1);
	now = mono_ns();
	tv = ns_to_tv(g->go.stop_ns > now ? g->go.stop_ns - now : 0);
	event_add(g->stop_ev, &tv);
	event_add(g->tick_ev, &tick);
}

static void
gen_report(struct gen *g)
{
	uint32_t i;

	for (i = 0; i < g->nconns; i++)
		if (g->conns[i].pend != NULL)
			g->st.unacked += g->conns[i].pend->count;
	/* The histogram and the timeline are adjacent in one allocation. */
	gen_send_msg(g, MSG_REPORT, &g->st, sizeof(g->st), g->acked_room,
	    (size_t)g->o->rooms * sizeof(uint64_t), g->hist,
	    (HIST_BUCKETS + tl_seconds(g->o) * TL_FIELDS) * sizeof(uint64_t));
}

/* Connections id = no + k * procs; the first publishers * rooms ids publish. */
static void
gen_layout(struct gen *g)
{
	const struct bench_opts *o = g->o;
	uint32_t i, id, npub_all = (uint32_t)(o->publishers * o->rooms);
	double per_pub;

	g->nconns = (uint32_t)((o->connections - g->no + o->procs - 1) / o->procs);
	g->conns = xcalloc(g->nconns ? g->nconns : 1, sizeof(*g->conns));
	g->pubs = xcalloc(g->nconns ? g->nconns : 1, sizeof(*g->pubs));
	for (i = 0; i < g->nconns; i++) {
		id = (uint32_t)g->no + i * (uint32_t)o->procs;
		g->conns[i].g = g;
		g->conns[i].fd = -1;
		g->conns[i].id = id;
		g->conns[i].room = id % (uint32_t)o->rooms;
		if (id < npub_all) {
			g->conns[i].pend = xcalloc(1, sizeof(struct pending));
			g->pubs[g->npubs++] = &g->conns[i];
		}
	}
	/* Every room gets rate / connections events/s, shared by its publishers. */
	per_pub = o->rate / o->connections / o->publishers;
	g->rate = per_pub * g->npubs;
}

static void
gen_init(struct gen *g, const struct bench_opts *o, int no, int cmd_fd,
    int rep_fd)
{
	struct event_config *cfg = event_config_new();

	memset(g, 0, sizeof(*g));
	g->o = o;
	g->no = no;
	g->cmd_fd = cmd_fd;
	g->rep_fd = rep_fd;
	g->rng = (uint32_t)(getpid() * 2654435761u) | 1u;
	/* Only this process's one thread touches the base. */
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	g->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (g->base == NULL)
		_exit(1);
	g->scratch_cap = SCRATCH_MIN;
	g->scratch = xmalloc(g->scratch_cap);
	g->json_cap = (size_t)o->body_size + 512;
	g->json = xmalloc(g->json_cap);
	g->pad = xmalloc((size_t)o->body_size + 1);
	memset(g->pad, 'x', (size_t)o->body_size);
	g->pad[o->body_size] = '\0';
	g->acked_room = xcalloc((size_t)o->rooms, sizeof(uint64_t));
	g->hist = xcalloc(HIST_BUCKETS + tl_seconds(o) * TL_FIELDS,
	    sizeof(uint64_t));
	g->tl = g->hist + HIST_BUCKETS;
	gen_layout(g);
	g->cmd_ev = event_new(g->base, cmd_fd, EV_READ | EV_PERSIST, gen_cmd, g);
	g->tick_ev = event_new(g->base, -1, EV_PERSIST, gen_tick, g);
	g->stop_ev = evtimer_new(g->base, gen_stop, g);
	g->deadline_ev = evtimer_new(g->base, gen_deadline, g);
}

/* A worker's life; never returns. */
static void
gen_main(const struct bench_opts *o, int no, int cmd_fd, int rep_fd)
{
	struct timeval dl = ns_to_tv(secs_to_ns(o->connect_timeout));
	struct gen g;

	gen_init(&g, o, no, cmd_fd, rep_fd);
	event_add(g.cmd_ev, NULL);
	event_add(g.deadline_ev, &dl);
	gen_progress(&g);
	event_base_dispatch(g.base);
	gen_report(&g);
	_exit(0);
}

/* ---- parent: workers --------------------------------------------------- */

struct proc {
	pid_t pid;
	int cmd_fd;                  /* to the worker: go_msg; closing it aborts */
	int rep_fd;                  /* from the worker: ready, report */
	uint8_t *buf;                /* received, not yet parsed */
	size_t len, cap;
	int ready, reported, gone;
	struct ready_msg rdy;
	uint64_t cpu0, cpu1;         /* CPU ticks at the window's edges */
};

/* What the parent gathers. */
struct run {
	struct bench_opts *o;
	struct proc *procs;
	struct bench_stats st;
	uint64_t *acked_room;
	uint64_t *hist;
	uint64_t *tl;                /* merged timeline, after hist */
	uint32_t joined, failed;
	char error[BENCH_ERRLEN];    /* fatal problem of the run, "" if none */
	uint64_t connect_ns;
	uint64_t srv0, srv1;         /* server CPU ticks */
	int srv_ok;                  /* both server samples were read */
	uint64_t self0, self1;       /* the parent's own CPU */
	double window_s;
};

static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void
run_error(struct run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
run_error(struct run *r, const char *fmt, ...)
{
	va_list ap;

	if (r->error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
}

static int
spawn_workers(struct run *r)
{
	struct bench_opts *o = r->o;
	int cmd[2], rep[2], i, j;
	pid_t parent = getpid();

	r->procs = xcalloc((size_t)o->procs, sizeof(*r->procs));
	for (i = 0; i < o->procs; i++)
		r->procs[i].cmd_fd = r->procs[i].rep_fd = -1;
	fflush(NULL);
	for (i = 0; i < o->procs; i++) {
		if (pipe2(cmd, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0) {
			run_error(r, "pipe: %s", strerror(errno));
			return -1;
		}
		r->procs[i].pid = fork();
		if (r->procs[i].pid < 0) {
			run_error(r, "fork: %s", strerror(errno));
			return -1;
		}
		if (r->procs[i].pid == 0) {
			/* Die with the parent, and hold no pipe of a sibling. */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(1);
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			for (j = 0; j < i; j++) {
				close(r->procs[j].cmd_fd);
				close(r->procs[j].rep_fd);
			}
			close(cmd[1]);
			close(rep[0]);
			gen_main(o, i, cmd[0], rep[1]);
		}
		close(cmd[0]);
		close(rep[1]);
		r->procs[i].cmd_fd = cmd[1];
		r->procs[i].rep_fd = rep[0];
	}
	return 0;
}

/* Apply one complete message from worker p. */
static void
proc_message(struct run *r, struct proc *p, const struct msg_hdr *h,
    const uint8_t *d)
{
	size_t rooms = (size_t)r->o->rooms, i;
	size_t ntl = tl_seconds(r->o) * TL_FIELDS;
	size_t want = sizeof(struct bench_stats) + (rooms + HIST_BUCKETS + ntl) *
	    sizeof(uint64_t);
	const uint64_t *u;
	struct bench_stats st;

	if (h->kind == MSG_READY && h->len == sizeof(p->rdy) && !p->ready) {
		memcpy(&p->rdy, d, sizeof(p->rdy));
		p->ready = 1;
		return;
	}
	if (h->kind != MSG_REPORT || h->len != want || p->reported) {
		run_error(r, "worker %d sent a bad message", (int)(p - r->procs));
		return;
	}
	memcpy(&st, d, sizeof(st));
	stats_merge(&r->st, &st);
	u = (const uint64_t *)(const void *)(d + sizeof(st));
	for (i = 0; i < rooms; i++)
		r->acked_room[i] += u[i];
	for (i = 0; i < HIST_BUCKETS; i++)
		r->hist[i] += u[rooms + i];
	u += rooms + HIST_BUCKETS;
	for (i = 0; i < ntl; i += TL_FIELDS) {
		r->tl[i + TL_COUNT] += u[i + TL_COUNT];
		r->tl[i + TL_SUM] += u[i + TL_SUM];
		if (u[i + TL_MAX] > r->tl[i + TL_MAX])
			r->tl[i + TL_MAX] = u[i + TL_MAX];
	}
	p->reported = 1;
}

static void
proc_input(struct run *r, struct proc *p)
{
	struct msg_hdr h;
	size_t used = 0;
	ssize_t n;

	if (p->cap - p->len < 65536) {
		p->cap = p->cap ? p->cap * 2 : 131072;
		p->buf = xrealloc(p->buf, p->cap);
	}
	n = read(p->rep_fd, p->buf + p->len, p->cap - p->len);
	if (n < 0 && errno == EINTR)
		return;
	if (n <= 0) {
		p->gone = 1;
		return;
	}
	p->len += (size_t)n;
	while (p->len - used >= sizeof(h)) {
		memcpy(&h, p->buf + used, sizeof(h));
		if (p->len - used - sizeof(h) < h.len)
			break;
		proc_message(r, p, &h, p->buf + used + sizeof(h));
		used += sizeof(h) + h.len;
	}
	memmove(p->buf, p->buf + used, p->len - used);
	p->len -= used;
}

enum wait_for { WAIT_TIME, WAIT_READY, WAIT_REPORTS };

static int
all_done(const struct run *r, enum wait_for what)
{
	int i;

	if (what == WAIT_TIME)
		return 0;
	for (i = 0; i < r->o->procs; i++) {
		if (what == WAIT_READY && !r->procs[i].ready)
			return 0;
		if (what == WAIT_REPORTS && !r->procs[i].reported)
			return 0;
	}
	return 1;
}

/*
 * Read the workers' pipes until what is true or deadline (mono ns) passes.
 * Returns 0 when done (or, for WAIT_TIME, at the deadline), -1 on timeout,
 * a worker gone before its report, or SIGINT.
 */
static int
pump(struct run *r, enum wait_for what, uint64_t deadline)
{
	struct pollfd pfd[r->o->procs];
	uint64_t now;
	int i, n, ms;

	for (;;) {
		if (all_done(r, what))
			return 0;
		if (interrupted) {
			run_error(r, "interrupted");
			return -1;
		}
		for (i = 0; i < r->o->procs; i++) {
			if (r->procs[i].gone && !r->procs[i].reported) {
				run_error(r, "worker %d exited before its report", i);
				return -1;
			}
		}
		now = mono_ns();
		if (now >= deadline)
			return what == WAIT_TIME ? 0 : -1;
		ms = (int)((deadline - now + 999999) / 1000000);
		for (i = 0, n = 0; i < r->o->procs; i++) {
			pfd[i].fd = r->procs[i].gone ? -1 : r->procs[i].rep_fd;
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
		}
		n = poll(pfd, (nfds_t)r->o->procs, ms);
		if (n < 0 && errno != EINTR) {
			run_error(r, "poll: %s", strerror(errno));
			return -1;
		}
		for (i = 0; n > 0 && i < r->o->procs; i++)
			if (pfd[i].revents != 0)
				proc_input(r, &r->procs[i]);
	}
}

/* Close the command pipes (workers exit on EOF), reap, kill stragglers. */
static void
reap_workers(struct run *r)
{
	uint64_t deadline = mono_ns() + 3 * NS_PER_S;
	int i, left, status;

	if (r->procs == NULL)
		return;
	for (i = 0; i < r->o->procs; i++) {
		if (r->procs[i].cmd_fd >= 0)
			close(r->procs[i].cmd_fd);
		r->procs[i].cmd_fd = -1;
	}
	do {
		left = 0;
		for (i = 0; i < r->o->procs; i++) {
			if (r->procs[i].pid <= 0)
				continue;
			if (waitpid(r->procs[i].pid, &status, WNOHANG) == r->procs[i].pid)
				r->procs[i].pid = 0;
			else
				left++;
		}
		if (left > 0)
			wsc_sleep_ms(10);
	} while (left > 0 && mono_ns() < deadline);
	for (i = 0; i < r->o->procs; i++) {
		if (r->procs[i].pid > 0) {
			kill(r->procs[i].pid, SIGKILL);
			waitpid(r->procs[i].pid, &status, 0);
		}
		if (r->procs[i].rep_fd >= 0)
			close(r->procs[i].rep_fd);
		free(r->procs[i].buf);
	}
}

/* utime + stime of a process, in clock ticks; -1 if unreadable. */
static int
proc_cpu(pid_t pid, uint64_t *ticks)
{
	char path[64], buf[1024], *p;
	unsigned long long ut, st;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip past the last ')'. */
	if ((p = strrchr(buf, ')')) == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	    &ut, &st) != 2)
		return -1;
	*ticks = ut + st;
	return 0;
}

static void
sample_cpu(struct run *r, int end)
{
	uint64_t t = 0;
	int i, ok;

	if (r->o->server_pid > 0) {
		ok = proc_cpu(r->o->server_pid, &t) == 0;
		if (end) {
			r->srv1 = t;
			r->srv_ok = r->srv_ok && ok;
		} else {
			r->srv0 = t;
			r->srv_ok = ok;
		}
		if (!ok)
			run_error(r, "cannot read /proc/%ld/stat: server gone?",
			    (long)r->o->server_pid);
	}
	for (i = 0; i < r->o->procs; i++) {
		t = 0;
		(void)proc_cpu(r->procs[i].pid, &t);
		if (end)
			r->procs[i].cpu1 = t;
		else
			r->procs[i].cpu0 = t;
	}
	(void)proc_cpu(getpid(), end ? &r->self1 : &r->self0);
}

/* Wait for every worker to join its connections. */
static int
connect_phase(struct run *r)
{
	const struct bench_opts *o = r->o;
	uint64_t t0 = mono_ns();
	int i;

	if (pump(r, WAIT_READY, t0 + secs_to_ns(o->connect_timeout + 5)) != 0) {
		run_error(r, "workers not ready within --connect-timeout");
		return -1;
	}
	r->connect_ns = mono_ns() - t0;
	for (i = 0; i < o->procs; i++) {
		r->joined += r->procs[i].rdy.joined;
		r->failed += r->procs[i].rdy.failed;
		if (r->procs[i].rdy.error[0] != '\0')
			run_error(r, "%s", r->procs[i].rdy.error);
	}
	if (!o->quiet)
		fprintf(stderr, "parley-bench: %u of %d connections joined in %.2f s\n",
		    r->joined, o->connections, (double)r->connect_ns / 1e9);
	return r->failed == 0 ? 0 : -1;
}

/* Start the clock in every worker, sample CPU around the window, collect. */
static int
measure_phase(struct run *r)
{
	const struct bench_opts *o = r->o;
	struct go_msg go;
	int i;

	/* A little lead so that every worker has the clock before warm-up starts. */
	go.warm_ns = mono_ns() + 50000000ull;
	go.start_ns = go.warm_ns + secs_to_ns(o->warmup);
	go.end_ns = go.start_ns + secs_to_ns(o->duration);
	go.stop_ns = go.end_ns + secs_to_ns(o->drain);
	for (i = 0; i < o->procs; i++) {
		if (write_full(r->procs[i].cmd_fd, &go, sizeof(go)) != 0) {
			run_error(r, "worker %d: %s", i, strerror(errno));
			return -1;
		}
	}
	if (pump(r, WAIT_TIME, go.start_ns) != 0)
		return -1;
	sample_cpu(r, 0);
	if (pump(r, WAIT_TIME, go.end_ns) != 0)
		return -1;
	sample_cpu(r, 1);
	r->window_s = (double)(go.end_ns - go.start_ns) / 1e9;
	if (!o->quiet)
		fprintf(stderr, "parley-bench: window done, draining %.1f s\n", o->drain);
	if (pump(r, WAIT_REPORTS, go.stop_ns + REPORT_GRACE_NS) != 0) {
		run_error(r, "workers did not report after the drain");
		return -1;
	}
	return 0;
}

/* ---- parent: results -------------------------------------------------- */

struct results {
	uint64_t expected, lost;
	double deliveries_s, events_s;
	double p50, p90, p99, p999, max;          /* ms */
	double srv_cpu_s, srv_us_per_delivery;    /* -1 when not measured */
	double gen_cpu_s, gen_pct, gen_us_per_delivery;
	int gen_cpus;
	int gen_bound;
	uint64_t errors;                          /* everything but loss */
};

static double
ns_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void
compute(const struct run *r, struct results *x)
{
	const struct bench_opts *o = r->o;
	const struct bench_stats *s = &r->st;
	double tck = (double)sysconf(_SC_CLK_TCK), gen = 0;
	uint64_t members, n = s->delivered_measured;
	cpu_set_t set;
	int i;

	memset(x, 0, sizeof(*x));
	/* Expected = each acked event of the window x the members of its room. */
	for (i = 0; i < o->rooms; i++) {
		members = (uint64_t)(o->connections / o->rooms +
		    (i < o->connections % o->rooms));
		x->expected += r->acked_room[i] * members;
	}
	x->lost = x->expected > n ? x->expected - n : 0;
	x->deliveries_s = (double)n / r->window_s;
	x->events_s = (double)s->acked_measured / r->window_s;
	x->p50 = ns_ms(hist_quantile(r->hist, n, 0.50, s->lat_max_ns));
	x->p90 = ns_ms(hist_quantile(r->hist, n, 0.90, s->lat_max_ns));
	x->p99 = ns_ms(hist_quantile(r->hist, n, 0.99, s->lat_max_ns));
	x->p999 = ns_ms(hist_quantile(r->hist, n, 0.999, s->lat_max_ns));
	x->max = ns_ms(s->lat_max_ns);
	x->srv_cpu_s = x->srv_us_per_delivery = -1;
	if (r->srv_ok) {
		x->srv_cpu_s = (double)(r->srv1 - r->srv0) / tck;
		x->srv_us_per_delivery = n ? x->srv_cpu_s * 1e6 / (double)n : -1;
	}
	for (i = 0; i < o->procs; i++)
		gen += (double)(r->procs[i].cpu1 - r->procs[i].cpu0);
	gen += (double)(r->self1 - r->self0);
	x->gen_cpu_s = gen / tck;
	CPU_ZERO(&set);
	x->gen_cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ?
	    CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
	x->gen_pct = 100.0 * x->gen_cpu_s / (r->window_s * x->gen_cpus);
	x->gen_us_per_delivery = n ? x->gen_cpu_s * 1e6 / (double)n : -1;
	x->gen_bound = x->gen_pct > 100.0 * BOUND_FRACTION;
	x->errors = r->failed + s->dropped + s->send_errors + s->unacked +
	    s->dups + s->protocol_errors + s->other_errors + s->skipped;
}

static void
print_timeline(const struct run *r)
{
	const uint64_t *sec;
	size_t i;

	printf("  %-14s %8s %12s %10s %10s\n", "timeline", "second",
	    "deliveries", "mean ms", "max ms");
	for (i = 0; i < tl_seconds(r->o); i++) {
		sec = r->tl + i * TL_FIELDS;
		printf("  %-14s %8zu %12" PRIu64 " %10.3f %10.3f\n", "", i,
		    sec[TL_COUNT], sec[TL_COUNT] ?
		    ns_ms(sec[TL_SUM]) / (double)sec[TL_COUNT] : 0.0,
		    ns_ms(sec[TL_MAX]));
	}
}

static json_t *
timeline_json(const struct run *r)
{
	json_t *a = json_array();
	const uint64_t *sec;
	size_t i;

	for (i = 0; i < tl_seconds(r->o); i++) {
		sec = r->tl + i * TL_FIELDS;
		json_array_append_new(a, json_pack("{s:I, s:f, s:f}",
		    "deliveries", (json_int_t)sec[TL_COUNT],
		    "mean_ms", sec[TL_COUNT] ?
		    ns_ms(sec[TL_SUM]) / (double)sec[TL_COUNT] : 0.0,
		    "max_ms", ns_ms(sec[TL_MAX])));
	}
	return a;
}

static void
print_table(const struct run *r, const struct results *x)
{
	const struct bench_opts *o = r->o;
	const struct bench_stats *s = &r->st;
	double ev_target = o->rate * o->rooms / o->connections;

	printf("parley-bench fanout: %d connections, %d rooms (%d members), "
	    "%d procs, %d publishers\n", o->connections, o->rooms,
	    o->connections / o->rooms, o->procs, o->publishers * o->rooms);
	printf("  %-14s %u joined in %.2f s, %u failed\n", "connect",
	    r->joined, (double)r->connect_ns / 1e9, r->failed);
	printf("  %-14s %.0f deliveries/s = %.1f events/s; %.1f s measured after %.1f s warm-up\n",
	    "target", o->rate, ev_target, r->window_s, o->warmup);
	printf("  %-14s %.0f deliveries/s, %.1f events/s\n", "achieved",
	    x->deliveries_s, x->events_s);
	printf("  %-14s %" PRIu64 " expected, %" PRIu64 " delivered, %" PRIu64
	    " lost (gaps %" PRIu64 " skipping %" PRIu64 " events, duplicates %" PRIu64 ")\n",
	    "deliveries", x->expected, s->delivered_measured, x->lost, s->gaps,
	    s->gap_events, s->dups);
	printf("  %-14s %" PRIu64 " dropped connections; sends: %" PRIu64
	    " errors, %" PRIu64 " unacked, %" PRIu64 " skipped\n", "errors",
	    s->dropped, s->send_errors, s->unacked, s->skipped);
	printf("  %-14s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
	    "latency ms", x->p50, x->p90, x->p99, x->p999, x->max);
	if (x->srv_cpu_s >= 0)
		printf("  %-14s %.2f s = %.1f%% of one CPU, %.2f us/delivery\n",
		    "server cpu", x->srv_cpu_s, 100 * x->srv_cpu_s / r->window_s,
		    x->srv_us_per_delivery);
	else if (o->server_pid > 0)
		printf("  %-14s unknown: the server exited during the window\n",
		    "server cpu");
	else
		printf("  %-14s not measured (no --server-pid)\n", "server cpu");
	printf("  %-14s %.2f s = %.1f%% of %d allowed CPU(s), %.2f us/delivery, "
	    "pacing lag max %.2f ms%s\n", "generator cpu", x->gen_cpu_s,
	    x->gen_pct, x->gen_cpus, x->gen_us_per_delivery,
	    ns_ms(s->lag_max_ns), x->gen_bound ? "  GENERATOR-BOUND" : "");
	if (o->timeline)
		print_timeline(r);
	if (s->error[0] != '\0')
		printf("  %-14s %s\n", "first error", s->error);
	if (r->error[0] != '\0')
		printf("  %-14s %s\n", "run error", r->error);
	printf("  %-14s %s\n", "result", x->lost == 0 && x->errors == 0 &&
	    r->error[0] == '\0' ? "OK" : x->lost > 0 ? "LOSS" : "ERRORS");
}

static void
print_json(const struct run *r, const struct results *x)
{
	const struct bench_opts *o = r->o;
	const struct bench_stats *s = &r->st;
	json_t *j, *lat;
	char *text;

	lat = json_pack("{s:f, s:f, s:f, s:f, s:f}", "p50", x->p50, "p90", x->p90,
	    "p99", x->p99, "p99_9", x->p999, "max", x->max);
	j = json_pack("{s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:I, s:I}",
	    "scenario", "fanout", "connections", o->connections, "rooms", o->rooms,
	    "procs", o->procs, "publishers", o->publishers * o->rooms,
	    "target_deliveries_per_s", o->rate,
	    "target_events_per_s", o->rate * o->rooms / o->connections,
	    "duration_s", r->window_s, "connect_s", (double)r->connect_ns / 1e9,
	    "joined", (json_int_t)r->joined, "failed", (json_int_t)r->failed);
	json_object_update_new(j, json_pack(
	    "{s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
	    "deliveries_per_s", x->deliveries_s, "events_per_s", x->events_s,
	    "events_acked", (json_int_t)s->acked_measured,
	    "expected_deliveries", (json_int_t)x->expected,
	    "delivered", (json_int_t)s->delivered_measured,
	    "lost", (json_int_t)x->lost, "gaps", (json_int_t)s->gaps,
	    "gap_events", (json_int_t)s->gap_events,
	    "duplicates", (json_int_t)s->dups,
	    "dropped_connections", (json_int_t)s->dropped,
	    "send_errors", (json_int_t)s->send_errors,
	    "unacked", (json_int_t)s->unacked,
	    "skipped_sends", (json_int_t)s->skipped, "latency_ms", lat));
	json_object_update_new(j, json_pack(
	    "{s:f, s:i, s:f, s:b, s:f}",
	    "generator_cpu_s", x->gen_cpu_s, "generator_cpus", x->gen_cpus,
	    "generator_cpu_pct", x->gen_pct, "generator_bound", x->gen_bound,
	    "pacing_lag_max_ms", ns_ms(s->lag_max_ns)));
	json_object_set_new(j, "generator_us_per_delivery",
	    x->gen_us_per_delivery >= 0 ? json_real(x->gen_us_per_delivery) : json_null());
	json_object_set_new(j, "server_cpu_s",
	    x->srv_cpu_s >= 0 ? json_real(x->srv_cpu_s) : json_null());
	json_object_set_new(j, "server_us_per_delivery",
	    x->srv_us_per_delivery >= 0 ? json_real(x->srv_us_per_delivery) : json_null());
	json_object_set_new(j, "error", s->error[0] != '\0' ?
	    json_string(s->error) : json_null());
	json_object_set_new(j, "run_error", r->error[0] != '\0' ?
	    json_string(r->error) : json_null());
	if (o->timeline)
		json_object_set_new(j, "timeline", timeline_json(r));
	json_object_set_new(j, "ok", json_boolean(x->lost == 0 && x->errors == 0 &&
	    r->error[0] == '\0'));
	text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
	if (text != NULL)
		printf("%s\n", text);
	free(text);
	json_decref(j);
}

static void
print_abort_json(const struct run *r)
{
	json_t *j = json_pack("{s:s, s:b, s:s, s:i, s:i}", "scenario", "fanout",
	    "ok", 0, "error", r->error[0] ? r->error : "aborted",
	    "joined", (int)r->joined, "failed", (int)r->failed);
	char *text = json_dumps(j, JSON_COMPACT);

	if (text != NULL)
		printf("%s\n", text);
	free(text);
	json_decref(j);
}

/* ---- scenario: fanout ---------------------------------------------------- */

/*
 * Measured here (2-core VM, generator pinned to one CPU, 10000
 * connections): 4 workers sharing that CPU added ~100 ms to p99 compared
 * with 1 worker at the same rate. Say so rather than silently skew tails.
 */
static void
warn_oversubscribed(const struct bench_opts *o)
{
	cpu_set_t set;
	int cpus;

	CPU_ZERO(&set);
	if (o->quiet || sched_getaffinity(0, sizeof(set), &set) != 0)
		return;
	cpus = CPU_COUNT(&set);
	if (o->procs > cpus)
		fprintf(stderr, "parley-bench: note: %d workers share %d allowed CPU(s); "
		    "tail latency is more faithful with --procs %d if connections "
		    "per process fit the open-files limit\n", o->procs, cpus, cpus);
}

static int
fanout_run(struct bench_opts *o)
{
	struct run r;
	struct results x;
	int rc = 0;

	warn_oversubscribed(o);
	memset(&r, 0, sizeof(r));
	r.o = o;
	r.acked_room = xcalloc((size_t)o->rooms, sizeof(uint64_t));
	r.hist = xcalloc(HIST_BUCKETS + tl_seconds(o) * TL_FIELDS, sizeof(uint64_t));
	r.tl = r.hist + HIST_BUCKETS;
	if (spawn_workers(&r) != 0 || connect_phase(&r) != 0)
		rc = -1;
	else if (measure_phase(&r) != 0)
		rc = -1;
	reap_workers(&r);
	if (rc != 0 && !all_done(&r, WAIT_REPORTS)) {
		/* No complete numbers: say what went wrong and stop there. */
		fprintf(stderr, "parley-bench: %s (%u joined, %u failed)\n",
		    r.error[0] ? r.error : "aborted", r.joined, r.failed);
		if (o->json)
			print_abort_json(&r);
		rc = EXIT_LOSS;
	} else {
		compute(&r, &x);
		if (o->json)
			print_json(&r, &x);
		else
			print_table(&r, &x);
		rc = x.lost == 0 && x.errors == 0 && r.error[0] == '\0' ?
		    EXIT_CLEAN : EXIT_LOSS;
	}
	free(r.procs);
	free(r.acked_room);
	free(r.hist);
	return rc;
}

/* ---- command line ------------------------------------------------------- */

static void
usage(FILE *f)
{
	size_t i;

	fprintf(f,
"usage: parley-bench SCENARIO [options]\n"
"\n"
"Load generator for parleyd. Scenarios:\n");
	for (i = 0; i < NSCENARIOS; i++)
		fprintf(f, "  %-10s %s\n", scenarios[i].name, scenarios[i].summary);
	fprintf(f,
"\n"
"fanout: C connections spread over R rooms (connection n joins room n %% R),\n"
"from P worker processes. Once every connection has joined, K publishers per\n"
"room send messages open-loop (never waiting for acks) at a fixed total rate\n"
"of deliveries per second; every connection measures send-to-delivery latency\n"
"and checks seqs for gaps. Start the server with --rate 0 (no per-connection\n"
"rate limit) and, unless --jwt-secret-file is given, --allow-anonymous.\n"
"\n"
"Target:\n"
"      --host ADDR             server IPv4 address (127.0.0.1)\n"
"      --port N                server port (8080)\n"
"      --src-base ADDR         first source address (127.0.0.2)\n"
"      --src-count N           source addresses used in rotation, from\n"
"                              --src-base up (one per 5000 connections)\n"
"Layout:\n"
"  -c, --connections N         WebSocket connections (1000)\n"
"  -r, --rooms N               rooms, named <room-prefix>0 .. (10)\n"
"  -p, --procs N               worker processes, one libevent loop each (4);\n"
"                              each holds connections/procs sockets, which\n"
"                              must fit its open-files limit; more workers\n"
"                              than allowed CPUs inflate tail latency\n"
"      --concurrency N         handshakes in flight per process (256)\n"
"      --name-prefix S         user names are <S><n> (bench)\n"
"      --room-prefix S         room names are <S><n> (bench-)\n"
"      --jwt-secret-file FILE  mint an HS256 token per user with this secret\n"
"                              instead of an anonymous hello with a name\n"
"Load:\n"
"      --publishers-per-room K publishing connections per room (1)\n"
"      --rate D                deliveries per second in all (10000); events/s\n"
"                              = D / members per room, the same in every room\n"
"      --body-size N           pad message bodies to N bytes (0: ~30)\n"
"      --tick MS               pacing timer period, 1-5 ms (1)\n"
"Phases (seconds, fractions allowed):\n"
"      --connect-timeout S     connect, upgrade, hello and join (30)\n"
"      --warmup S              publishing before the window, not measured (2)\n"
"  -d, --duration S            measured window (10)\n"
"      --drain S               receive after publishing stops (2)\n"
"Report:\n"
"      --server-pid PID        parleyd's pid: server CPU per delivery, from\n"
"                              /proc/PID/stat at the window's edges\n"
"      --timeline              also deliveries, mean and max latency for each\n"
"                              second of the window (by send time)\n"
"      --json                  one JSON object instead of the table\n"
"  -q, --quiet                 no progress lines on stderr\n"
"  -h, --help                  this help\n"
"\n"
"Measured: deliveries of messages sent in the window; expected = acked sends\n"
"of the window x members of their room; lost = expected - delivered after\n"
"the drain. Latency percentiles come from a log histogram (<1.6%% buckets).\n"
"CPU is read from /proc; the generator is flagged GENERATOR-BOUND above\n"
"85%% of the CPUs it may run on (sched_getaffinity).\n"
"\n"
"Exit status: 0 no loss and no error, 1 loss or errors, 2 bad usage.\n");
}

enum {
	OPT_HOST = 256, OPT_PORT, OPT_SRC_BASE, OPT_SRC_COUNT, OPT_NAME_PREFIX,
	OPT_ROOM_PREFIX, OPT_JWT, OPT_PUBLISHERS, OPT_RATE, OPT_WARMUP,
	OPT_DRAIN, OPT_CONNECT_TIMEOUT, OPT_CONCURRENCY, OPT_TICK, OPT_BODY,
	OPT_SERVER_PID, OPT_TIMELINE, OPT_JSON
};

static const struct option longopts[] = {
	{ "connections", required_argument, NULL, 'c' },
	{ "rooms", required_argument, NULL, 'r' },
	{ "procs", required_argument, NULL, 'p' },
	{ "duration", required_argument, NULL, 'd' },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "host", required_argument, NULL, OPT_HOST },
	{ "port", required_argument, NULL, OPT_PORT },
	{ "src-base", required_argument, NULL, OPT_SRC_BASE },
	{ "src-count", required_argument, NULL, OPT_SRC_COUNT },
	{ "name-prefix", required_argument, NULL, OPT_NAME_PREFIX },
	{ "room-prefix", required_argument, NULL, OPT_ROOM_PREFIX },
	{ "jwt-secret-file", required_argument, NULL, OPT_JWT },
	{ "publishers-per-room", required_argument, NULL, OPT_PUBLISHERS },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "warmup", required_argument, NULL, OPT_WARMUP },
	{ "drain", required_argument, NULL, OPT_DRAIN },
	{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
	{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
	{ "tick", required_argument, NULL, OPT_TICK },
	{ "body-size", required_argument, NULL, OPT_BODY },
	{ "server-pid", required_argument, NULL, OPT_SERVER_PID },
	{ "timeline", no_argument, NULL, OPT_TIMELINE },
	{ "json", no_argument, NULL, OPT_JSON },
	{ NULL, 0, NULL, 0 }
};

static int
bad(const char *opt, const char *arg, const char *why)
{
	fprintf(stderr, "parley-bench: %s%s%s: %s\n", opt, *arg ? " " : "", arg, why);
	return -1;
}

static int
int_arg(const char *opt, const char *s, long min, long max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "parley-bench: %s %s: want an integer in %ld..%ld\n",
		    opt, s, min, max);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int
secs_arg(const char *opt, const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max)) {
		fprintf(stderr, "parley-bench: %s %s: want a number in %g..%g\n",
		    opt, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int
name_chars_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' || *s == '-'))
			return 0;
	return 1;
}

static int
addr_arg(const char *opt, const char *s, struct in_addr *out)
{
	if (inet_pton(AF_INET, s, out) != 1)
		return bad(opt, s, "want a numeric IPv4 address");
	return 0;
}

/* The secret is the file's content without a trailing newline (as parleyd). */
static int
read_secret(struct bench_opts *o)
{
	FILE *f = fopen(o->jwt_secret_file, "rb");
	uint8_t buf[4096];
	size_t n;

	if (f == NULL)
		return bad("--jwt-secret-file", o->jwt_secret_file, strerror(errno));
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n == 0)
		return bad("--jwt-secret-file", o->jwt_secret_file, "empty secret");
	o->secret = xmalloc(n);
	memcpy(o->secret, buf, n);
	o->secret_len = n;
	return 0;
}

static int
parse_one(struct bench_opts *o, int ch, const char *a)
{
	switch (ch) {
	case 'c': return int_arg("--connections", a, 1, 10000000, &o->connections);
	case 'r': return int_arg("--rooms", a, 1, 1000000, &o->rooms);
	case 'p': return int_arg("--procs", a, 1, 256, &o->procs);
	case 'd': return secs_arg("--duration", a, 0.1, 86400, &o->duration);
	case 'q': o->quiet = 1; return 0;
	case OPT_HOST: o->host = a; return addr_arg("--host", a, &o->dst);
	case OPT_PORT: return int_arg("--port", a, 1, 65535, &o->port);
	case OPT_SRC_BASE: return addr_arg("--src-base", a, &o->src_base);
	case OPT_SRC_COUNT: return int_arg("--src-count", a, 1, 65536, &o->src_count);
	case OPT_NAME_PREFIX: o->name_prefix = a; return 0;
	case OPT_ROOM_PREFIX: o->room_prefix = a; return 0;
	case OPT_JWT: o->jwt_secret_file = a; return 0;
	case OPT_PUBLISHERS:
		return int_arg("--publishers-per-room", a, 1, 10000000, &o->publishers);
	case OPT_RATE: return secs_arg("--rate", a, 0.001, 1e9, &o->rate);
	case OPT_WARMUP: return secs_arg("--warmup", a, 0, 3600, &o->warmup);
	case OPT_DRAIN: return secs_arg("--drain", a, 0, 3600, &o->drain);
	case OPT_CONNECT_TIMEOUT:
		return secs_arg("--connect-timeout", a, 0.1, 3600, &o->connect_timeout);
	case OPT_CONCURRENCY:
		return int_arg("--concurrency", a, 1, 100000, &o->concurrency);
	case OPT_TICK: return int_arg("--tick", a, 1, 100, &o->tick_ms);
	case OPT_BODY: return int_arg("--body-size", a, 0, BODY_MAX, &o->body_size);
	case OPT_SERVER_PID: {
		int pid;

		if (int_arg("--server-pid", a, 1, INT_MAX, &pid) != 0)
			return -1;
		o->server_pid = (pid_t)pid;
		return 0;
	}
	case OPT_TIMELINE: o->timeline = 1; return 0;
	case OPT_JSON: o->json = 1; return 0;
	default: return -1;
	}
}

/* Cross-option checks, and what follows from the options. */
static int
check_opts(struct bench_opts *o)
{
	struct rlimit rl;
	char num[32];
	long per_proc;

	if (o->rooms > o->connections)
		return bad("--rooms", "", "more rooms than connections");
	if ((long)o->publishers * o->rooms > o->connections ||
	    o->publishers > o->connections / o->rooms)
		return bad("--publishers-per-room", "", "more publishers than members in a room");
	snprintf(num, sizeof(num), "%d", o->connections - 1);
	if (!name_chars_ok(o->name_prefix) ||
	    strlen(o->name_prefix) + strlen(num) > USER_MAX)
		return bad("--name-prefix", o->name_prefix,
		    "user names are 1-32 bytes of [A-Za-z0-9._-]");
	snprintf(num, sizeof(num), "%d", o->rooms - 1);
	if (!name_chars_ok(o->room_prefix) ||
	    strlen(o->room_prefix) + strlen(num) > ROOM_MAX)
		return bad("--room-prefix", o->room_prefix,
		    "room names are 1-64 bytes of [A-Za-z0-9._-]");
	if (o->src_count == 0)
		o->src_count = 1 + o->connections / 5000;
	if (ntohl(o->src_base.s_addr) + (uint32_t)o->src_count - 1 <
	    ntohl(o->src_base.s_addr))
		return bad("--src-count", "", "runs past 255.255.255.255");
	if (o->jwt_secret_file != NULL && read_secret(o) != 0)
		return -1;
	/* Every worker holds connections / procs sockets: raise the soft limit. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	per_proc = (o->connections + o->procs - 1) / o->procs;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)(per_proc + FD_SLACK) > rl.rlim_cur) {
		fprintf(stderr, "parley-bench: %ld connections per process do not fit "
		    "the open-files limit %llu: use more --procs (or ulimit -n)\n",
		    per_proc, (unsigned long long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

static void
opts_init(struct bench_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->connections = 1000;
	o->rooms = 10;
	o->procs = 4;
	o->host = "127.0.0.1";
	inet_pton(AF_INET, o->host, &o->dst);
	o->port = 8080;
	inet_pton(AF_INET, "127.0.0.2", &o->src_base);
	o->name_prefix = "bench";
	o->room_prefix = "bench-";
	o->publishers = 1;
	o->rate = 10000;
	o->duration = 10;
	o->warmup = 2;
	o->drain = 2;
	o->connect_timeout = 30;
	o->concurrency = 256;
	o->tick_ms = 1;
}

int
main(int argc, char **argv)
{
	const struct scenario *sc = NULL;
	struct bench_opts o;
	size_t i;
	int ch, rc;

	opts_init(&o);
	if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	for (i = 0; i < NSCENARIOS; i++)
		if (strcmp(argv[1], scenarios[i].name) == 0)
			sc = &scenarios[i];
	if (sc == NULL) {
		fprintf(stderr, "parley-bench: unknown scenario '%s' (try --help)\n", argv[1]);
		return EXIT_USAGE;
	}
	o.scenario = sc->name;
	/* Options follow the scenario name. */
	optind = 2;
	while ((ch = getopt_long(argc, argv, "c:r:p:d:qh", longopts, NULL)) != -1) {
		if (ch == 'h') {
			usage(stdout);
			return 0;
		}
		if (ch == '?' || parse_one(&o, ch, optarg) != 0)
			return EXIT_USAGE;
	}
	if (optind < argc) {
		fprintf(stderr, "parley-bench: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if (check_opts(&o) != 0)
		return EXIT_USAGE;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	rc = sc->run(&o);
	free(o.secret);
	return rc;
}
