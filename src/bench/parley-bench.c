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
 * Scenarios share everything up to "all connections joined" (the connect
 * phase) and then run rounds: the parent sends each worker the clock and
 * the event rate of a round (0 for idle), the workers report at its end and
 * wait for the next one or EOF. fanout and persist run one round, ramp one
 * per step, idle one with nothing sent, connect none.
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
	double ramp_step, ramp_max;  /* deliveries per second */
	double p99_limit;            /* ms */
	const char *plot;            /* ramp: PNG file, NULL for none */
	int timeline;                /* print the per-second timeline */
	int json;
	int quiet;
};

struct scenario {
	const char *name;
	const char *summary;
	int (*run)(struct bench_opts *o);
};

static int connect_run(struct bench_opts *o);
static int idle_run(struct bench_opts *o);
static int fanout_run(struct bench_opts *o);
static int ramp_run(struct bench_opts *o);
static int persist_run(struct bench_opts *o);

static const struct scenario scenarios[] = {
	{ "connect", "connections per second, failures, time to all joined",
	    connect_run },
	{ "idle", "hold the connections: server RSS per connection, drops",
	    idle_run },
	{ "fanout", "open-loop room fan-out: latency, loss, CPU per delivery",
	    fanout_run },
	{ "ramp", "fan-out stepped up until p99 passes a bound or anything is lost",
	    ramp_run },
	{ "persist", "open-loop sends: ack latency and acked (durable) events/s",
	    persist_run },
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
	uint64_t stop_ns;    /* drain over: report, then wait for the next round */
	double events_s;     /* events per second, all publishers of all workers */
};

enum msg_kind { MSG_READY = 1, MSG_REPORT = 2 };

struct msg_hdr {
	uint32_t kind;       /* enum msg_kind */
	uint32_t len;        /* payload bytes after this header */
};

/* Followed by the handshake-time histogram (HIST_BUCKETS counts). */
struct ready_msg {
	uint32_t joined, failed;
	uint64_t handshake_max_ns;   /* slowest TCP connect to joined */
	char error[BENCH_ERRLEN];    /* first failure, "" if none */
};

/*
 * A worker's counters for one round. The report is this struct, then one
 * uint64 per room (acks of measured sends), the delivery latency histogram,
 * the ack latency histogram and the timeline.
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
	uint64_t ack_max_ns;         /* slowest send-to-ack of the window */
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
	MAX(lat_max_ns); MAX(ack_max_ns); MAX(lag_max_ns); MAX(out_max);
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
	uint64_t t0;                 /* handshake start, CLOCK_MONOTONIC ns */
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
	double pub_share;            /* this worker's publishers / all publishers */
	double rate;                 /* events per second this worker sends */
	uint64_t due_sent;           /* events sent since go.warm_ns */
	struct go_msg go;            /* the current or last round */
	int running;                 /* a round is under way */
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
	uint64_t *hist;              /* send-to-delivery latency; the next two follow it */
	uint64_t *ack_hist;          /* send-to-ack latency */
	uint64_t *tl;                /* per second of the window: TL_FIELDS each */
	uint64_t *hs_hist;           /* handshake time: TCP connect to joined */
	uint64_t hs_max_ns;
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

/* The uint64s after the room counts in a report: two histograms, the timeline. */
static size_t
series_len(const struct bench_opts *o)
{
	return 2 * HIST_BUCKETS + tl_seconds(o) * TL_FIELDS;
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
		uint64_t hs = mono_ns() - c->t0;

		g->inflight--;
		g->joined++;
		g->hs_hist[hist_index(hs)]++;
		if (hs > g->hs_max_ns)
			g->hs_max_ns = hs;
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
	c->t0 = mono_ns();
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
		uint64_t lat = g->now > t ? g->now - t : 0;

		g->st.acked_measured++;
		g->acked_room[c->room]++;
		g->ack_hist[hist_index(lat)]++;
		if (lat > g->st.ack_max_ns)
			g->st.ack_max_ns = lat;
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
	m.handshake_max_ns = g->hs_max_ns;
	memcpy(m.error, g->st.error, sizeof(m.error));
	g->ready_sent = 1;
	event_del(g->deadline_ev);
	gen_send_msg(g, MSG_READY, &m, sizeof(m), g->hs_hist,
	    HIST_BUCKETS * sizeof(uint64_t), NULL, 0);
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
	if (now < g->go.warm_ns || g->npubs == 0 || g->rate <= 0)
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

static void gen_report(struct gen *g);

/* The drain is over: report the round and start the next one from zero. */
static void
gen_stop(evutil_socket_t fd, short what, void *arg)
{
	struct gen *g = arg;

	(void)fd;
	(void)what;
	event_del(g->tick_ev);
	gen_report(g);
	memset(&g->st, 0, sizeof(g->st));
	memset(g->acked_room, 0, (size_t)g->o->rooms * sizeof(uint64_t));
	memset(g->hist, 0, series_len(g->o) * sizeof(uint64_t));
	g->due_sent = 0;
	g->running = 0;
}

static struct timeval
ns_to_tv(uint64_t ns)
{
	struct timeval tv = { (time_t)(ns / NS_PER_S),
	    (suseconds_t)(ns % NS_PER_S / 1000) };

	return tv;
}

/*
 * The parent's command pipe: the clock of the next round, or EOF when the
 * run is over (between rounds) or aborted (during one).
 */
static void
gen_cmd(evutil_socket_t fd, short what, void *arg)
{
	struct gen *g = arg;
	struct timeval tick = { 0, g->o->tick_ms * 1000 }, tv;
	uint64_t now;
	ssize_t n;

	(void)what;
	n = read(fd, &g->go, sizeof(g->go));
	if (n < 0 && errno == EINTR)
		return;
	if (n == 0 && !g->running)
		_exit(0);
	if (n != (ssize_t)sizeof(g->go) || g->running)
		_exit(1);
	g->running = 1;
	g->rate = g->go.events_s * g->pub_share;
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
	    series_len(g->o) * sizeof(uint64_t));
}

/* Connections id = no + k * procs; the first publishers * rooms ids publish. */
static void
gen_layout(struct gen *g)
{
	const struct bench_opts *o = g->o;
	uint32_t i, id, npub_all = (uint32_t)(o->publishers * o->rooms);

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
	/* Every publisher sends the same share of the events. */
	g->pub_share = (double)g->npubs / npub_all;
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
	g->hist = xcalloc(series_len(o), sizeof(uint64_t));
	g->ack_hist = g->hist + HIST_BUCKETS;
	g->tl = g->ack_hist + HIST_BUCKETS;
	g->hs_hist = xcalloc(HIST_BUCKETS, sizeof(uint64_t));
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
	_exit(1);        /* only gen_cmd ends a worker */
}

/* ---- parent: workers --------------------------------------------------- */

/* CPU ticks of the server, the workers and the parent at two instants. */
struct cpu_sample {
	uint64_t srv0, srv1;
	int srv_ok;                  /* both server samples were read */
	uint64_t gen0, gen1;         /* workers and parent together */
};

struct proc {
	pid_t pid;
	int cmd_fd;                  /* to the worker: go_msg; closing it aborts */
	int rep_fd;                  /* from the worker: ready, report */
	uint8_t *buf;                /* received, not yet parsed */
	size_t len, cap;
	int ready, reported, gone;
	struct ready_msg rdy;
};

/* What the parent gathers: the connect phase, then the current round. */
struct run {
	struct bench_opts *o;
	struct proc *procs;
	/* connect phase */
	uint32_t joined, failed;
	uint64_t connect_ns;         /* fork to every worker ready */
	uint64_t *hs_hist;           /* handshake times, merged */
	uint64_t hs_max_ns;
	struct cpu_sample conn_cpu;  /* server and generator CPU of the phase */
	/* the round */
	struct bench_stats st;
	uint64_t *acked_room;
	uint64_t *hist;              /* delivery latency; then ack latency, timeline */
	uint64_t *ack_hist;
	uint64_t *tl;
	struct cpu_sample cpu;       /* of the measured window */
	double window_s;
	double events_s;             /* the round's target */
	char error[BENCH_ERRLEN];    /* fatal problem of the run, "" if none */
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
	size_t want = sizeof(struct bench_stats) +
	    (rooms + series_len(r->o)) * sizeof(uint64_t);
	const uint64_t *u;
	struct bench_stats st;

	if (h->kind == MSG_READY && !p->ready &&
	    h->len == sizeof(p->rdy) + HIST_BUCKETS * sizeof(uint64_t)) {
		memcpy(&p->rdy, d, sizeof(p->rdy));
		u = (const uint64_t *)(const void *)(d + sizeof(p->rdy));
		for (i = 0; i < HIST_BUCKETS; i++)
			r->hs_hist[i] += u[i];
		if (p->rdy.handshake_max_ns > r->hs_max_ns)
			r->hs_max_ns = p->rdy.handshake_max_ns;
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
	u += rooms;
	for (i = 0; i < 2 * HIST_BUCKETS; i++)
		r->hist[i] += u[i];     /* delivery, then ack latency */
	u += 2 * HIST_BUCKETS;
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

/* VmRSS of a process in KiB; 0 when unreadable. */
static uint64_t
proc_rss_kib(pid_t pid)
{
	char path[64], line[256];
	unsigned long long kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %llu kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* One edge (end = 0 or 1) of a CPU measurement. */
static void
sample_cpu(struct run *r, struct cpu_sample *c, int end)
{
	uint64_t t = 0, gen = 0;
	int i, ok;

	if (r->o->server_pid > 0) {
		ok = proc_cpu(r->o->server_pid, &t) == 0;
		if (end) {
			c->srv1 = t;
			c->srv_ok = c->srv_ok && ok;
		} else {
			c->srv0 = t;
			c->srv_ok = ok;
		}
		if (!ok)
			run_error(r, "cannot read /proc/%ld/stat: server gone?",
			    (long)r->o->server_pid);
	}
	/* Before the fork there are no workers: they start from zero. */
	for (i = 0; r->procs != NULL && i < r->o->procs; i++) {
		t = 0;
		if (r->procs[i].pid > 0)
			(void)proc_cpu(r->procs[i].pid, &t);
		gen += t;
	}
	t = 0;
	(void)proc_cpu(getpid(), &t);
	gen += t;
	if (end)
		c->gen1 = gen;
	else
		c->gen0 = gen;
}

/* Fork the workers and wait until every one has joined its connections. */
static int
connect_phase(struct run *r)
{
	const struct bench_opts *o = r->o;
	uint64_t t0 = mono_ns();
	int i;

	sample_cpu(r, &r->conn_cpu, 0);
	if (spawn_workers(r) != 0)
		return -1;
	if (pump(r, WAIT_READY, t0 + secs_to_ns(o->connect_timeout + 5)) != 0) {
		run_error(r, "workers not ready within --connect-timeout");
		return -1;
	}
	r->connect_ns = mono_ns() - t0;
	sample_cpu(r, &r->conn_cpu, 1);
	for (i = 0; i < o->procs; i++) {
		r->joined += r->procs[i].rdy.joined;
		r->failed += r->procs[i].rdy.failed;
		if (r->procs[i].rdy.error[0] != '\0')
			run_error(r, "%s", r->procs[i].rdy.error);
	}
	if (!o->quiet)
		fprintf(stderr, "parley-bench: %u of %d connections joined in %.2f s\n",
		    r->joined, o->connections, (double)r->connect_ns / 1e9);
	return 0;
}

static void
round_reset(struct run *r)
{
	int i;

	memset(&r->st, 0, sizeof(r->st));
	memset(r->acked_room, 0, (size_t)r->o->rooms * sizeof(uint64_t));
	memset(r->hist, 0, series_len(r->o) * sizeof(uint64_t));
	memset(&r->cpu, 0, sizeof(r->cpu));
	for (i = 0; i < r->o->procs; i++)
		r->procs[i].reported = 0;
}

/*
 * One round at events_s events per second in all (0: nothing is sent, the
 * connections are only held): start the clock in every worker, sample CPU
 * around the window, collect the reports.
 */
static int
measure_phase(struct run *r, double events_s)
{
	const struct bench_opts *o = r->o;
	struct go_msg go;
	int i;

	round_reset(r);
	r->events_s = events_s;
	/* A little lead so that every worker has the clock before warm-up starts. */
	memset(&go, 0, sizeof(go));
	go.warm_ns = mono_ns() + 50000000ull;
	go.start_ns = go.warm_ns + secs_to_ns(o->warmup);
	go.end_ns = go.start_ns + secs_to_ns(o->duration);
	go.stop_ns = go.end_ns + secs_to_ns(o->drain);
	go.events_s = events_s;
	for (i = 0; i < o->procs; i++) {
		if (write_full(r->procs[i].cmd_fd, &go, sizeof(go)) != 0) {
			run_error(r, "worker %d: %s", i, strerror(errno));
			return -1;
		}
	}
	if (pump(r, WAIT_TIME, go.start_ns) != 0)
		return -1;
	sample_cpu(r, &r->cpu, 0);
	if (pump(r, WAIT_TIME, go.end_ns) != 0)
		return -1;
	sample_cpu(r, &r->cpu, 1);
	r->window_s = (double)(go.end_ns - go.start_ns) / 1e9;
	if (!o->quiet && o->drain > 0)
		fprintf(stderr, "parley-bench: window done, draining %.1f s\n", o->drain);
	if (pump(r, WAIT_REPORTS, go.stop_ns + REPORT_GRACE_NS) != 0) {
		run_error(r, "workers did not report after the drain");
		return -1;
	}
	return 0;
}

static void
run_init(struct run *r, struct bench_opts *o)
{
	memset(r, 0, sizeof(*r));
	r->o = o;
	r->acked_room = xcalloc((size_t)o->rooms, sizeof(uint64_t));
	r->hist = xcalloc(series_len(o), sizeof(uint64_t));
	r->ack_hist = r->hist + HIST_BUCKETS;
	r->tl = r->ack_hist + HIST_BUCKETS;
	r->hs_hist = xcalloc(HIST_BUCKETS, sizeof(uint64_t));
}

static void
run_free(struct run *r)
{
	reap_workers(r);
	free(r->procs);
	free(r->acked_room);
	free(r->hist);
	free(r->hs_hist);
}

/* ---- parent: results -------------------------------------------------- */

struct pcts {
	double p50, p90, p99, p999, max;          /* ms */
};

/* What CPU went where, over wall_s seconds. */
struct cpu_use {
	double srv_s;                             /* -1 when not measured */
	double gen_s, gen_pct;                    /* generator: workers + parent */
	int gen_cpus;                             /* CPUs it may run on */
	int gen_bound;                            /* above BOUND_FRACTION of them */
};

struct results {
	uint64_t expected, lost;
	double deliveries_s, events_s;
	struct pcts lat, ack;
	struct cpu_use cpu;
	double srv_us_per_delivery, srv_us_per_event;   /* -1 when not measured */
	double gen_us_per_delivery;
	uint64_t errors;                          /* everything but loss */
	int ok;                                   /* no loss, no error */
};

static double
ns_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void
pcts_of(const uint64_t *h, uint64_t max_ns, struct pcts *p)
{
	uint64_t n = 0;
	unsigned i;

	for (i = 0; i < HIST_BUCKETS; i++)
		n += h[i];
	p->p50 = ns_ms(hist_quantile(h, n, 0.50, max_ns));
	p->p90 = ns_ms(hist_quantile(h, n, 0.90, max_ns));
	p->p99 = ns_ms(hist_quantile(h, n, 0.99, max_ns));
	p->p999 = ns_ms(hist_quantile(h, n, 0.999, max_ns));
	p->max = ns_ms(max_ns);
}

static void
cpu_use_of(const struct run *r, const struct cpu_sample *c, double wall_s,
    struct cpu_use *u)
{
	double tck = (double)sysconf(_SC_CLK_TCK);
	cpu_set_t set;

	u->srv_s = c->srv_ok ? (double)(c->srv1 - c->srv0) / tck : -1;
	if (r->o->server_pid == 0)
		u->srv_s = -1;
	u->gen_s = (double)(c->gen1 - c->gen0) / tck;
	CPU_ZERO(&set);
	u->gen_cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ?
	    CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
	u->gen_pct = wall_s > 0 ? 100.0 * u->gen_s / (wall_s * u->gen_cpus) : 0;
	u->gen_bound = u->gen_pct > 100.0 * BOUND_FRACTION;
}

static double
per_us(double cpu_s, uint64_t n)
{
	return cpu_s >= 0 && n > 0 ? cpu_s * 1e6 / (double)n : -1;
}

static void
compute(const struct run *r, struct results *x)
{
	const struct bench_opts *o = r->o;
	const struct bench_stats *s = &r->st;
	uint64_t members, n = s->delivered_measured;
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
	pcts_of(r->hist, s->lat_max_ns, &x->lat);
	pcts_of(r->ack_hist, s->ack_max_ns, &x->ack);
	cpu_use_of(r, &r->cpu, r->window_s, &x->cpu);
	x->srv_us_per_delivery = per_us(x->cpu.srv_s, n);
	x->srv_us_per_event = per_us(x->cpu.srv_s, s->acked_measured);
	x->gen_us_per_delivery = per_us(x->cpu.gen_s, n);
	x->errors = r->failed + s->dropped + s->send_errors + s->unacked +
	    s->dups + s->protocol_errors + s->other_errors + s->skipped;
	x->ok = x->lost == 0 && x->errors == 0 && r->error[0] == '\0';
}

static void
print_pcts(const char *label, const struct pcts *p, const char *what)
{
	printf("  %-14s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  (%s)\n",
	    label, p->p50, p->p90, p->p99, p->p999, p->max, what);
}

static void
print_server_cpu(const struct run *r, const struct cpu_use *u, double wall_s,
    double per, const char *unit)
{
	if (u->srv_s >= 0) {
		printf("  %-14s %.2f s = %.1f%% of one CPU", "server cpu", u->srv_s,
		    100 * u->srv_s / wall_s);
		if (per >= 0)
			printf(", %.2f us/%s", per, unit);
		printf("\n");
	} else if (r->o->server_pid > 0)
		printf("  %-14s unknown: the server exited\n", "server cpu");
	else
		printf("  %-14s not measured (no --server-pid)\n", "server cpu");
}

static void
print_gen_cpu(const struct cpu_use *u, double per, const char *unit,
    const char *extra)
{
	printf("  %-14s %.2f s = %.1f%% of %d allowed CPU(s)", "generator cpu",
	    u->gen_s, u->gen_pct, u->gen_cpus);
	if (per >= 0)
		printf(", %.2f us/%s", per, unit);
	printf("%s%s\n", extra, u->gen_bound ? "  GENERATOR-BOUND" : "");
}

static void
print_errors(const struct run *r)
{
	if (r->st.error[0] != '\0')
		printf("  %-14s %s\n", "first error", r->st.error);
	if (r->error[0] != '\0')
		printf("  %-14s %s\n", "run error", r->error);
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

static int
members_per_room(const struct bench_opts *o)
{
	return o->connections / o->rooms;
}

static void
print_header(const struct run *r)
{
	const struct bench_opts *o = r->o;

	printf("parley-bench %s: %d connections, %d rooms (%d members), "
	    "%d procs, %d publishers, %d source addresses\n", o->scenario,
	    o->connections, o->rooms, members_per_room(o), o->procs,
	    o->publishers * o->rooms, o->src_count);
	printf("  %-14s %u joined in %.2f s, %u failed\n", "connect",
	    r->joined, (double)r->connect_ns / 1e9, r->failed);
}

/* The table of one fanout or persist round. */
static void
print_round(const struct run *r, const struct results *x)
{
	const struct bench_opts *o = r->o;
	const struct bench_stats *s = &r->st;
	int persist = strcmp(o->scenario, "persist") == 0;
	char lag[64];

	print_header(r);
	if (persist)
		printf("  %-14s %.0f events/s (sends); %.1f s measured after %.1f s warm-up\n",
		    "target", r->events_s, r->window_s, o->warmup);
	else
		printf("  %-14s %.0f deliveries/s = %.1f events/s; %.1f s measured after %.1f s warm-up\n",
		    "target", o->rate, r->events_s, r->window_s, o->warmup);
	printf("  %-14s %.1f events/s acked, %.0f deliveries/s\n", "achieved",
	    x->events_s, x->deliveries_s);
	printf("  %-14s %" PRIu64 " expected, %" PRIu64 " delivered, %" PRIu64
	    " lost (gaps %" PRIu64 " skipping %" PRIu64 " events, duplicates %" PRIu64 ")\n",
	    "deliveries", x->expected, s->delivered_measured, x->lost, s->gaps,
	    s->gap_events, s->dups);
	printf("  %-14s %" PRIu64 " dropped connections; sends: %" PRIu64
	    " errors, %" PRIu64 " unacked, %" PRIu64 " skipped\n", "errors",
	    s->dropped, s->send_errors, s->unacked, s->skipped);
	print_pcts("latency ms", &x->lat, "send to delivery");
	print_pcts("ack ms", &x->ack, persist ? "send to ack: durable with --db" :
	    "send to ack");
	if (persist)
		print_server_cpu(r, &x->cpu, r->window_s, x->srv_us_per_event, "event");
	else
		print_server_cpu(r, &x->cpu, r->window_s, x->srv_us_per_delivery,
		    "delivery");
	snprintf(lag, sizeof(lag), ", pacing lag max %.2f ms", ns_ms(s->lag_max_ns));
	print_gen_cpu(&x->cpu, x->gen_us_per_delivery, "delivery", lag);
	if (o->timeline)
		print_timeline(r);
	print_errors(r);
	printf("  %-14s %s\n", "result", x->ok ? "OK" : x->lost > 0 ? "LOSS" : "ERRORS");
}

static json_t *
pcts_json(const struct pcts *p)
{
	return json_pack("{s:f, s:f, s:f, s:f, s:f}", "p50", p->p50, "p90", p->p90,
	    "p99", p->p99, "p99_9", p->p999, "max", p->max);
}

static json_t *
real_or_null(double v)
{
	return v >= 0 ? json_real(v) : json_null();
}

static void
cpu_json(json_t *j, const struct cpu_use *u)
{
	json_object_set_new(j, "server_cpu_s", real_or_null(u->srv_s));
	json_object_update_new(j, json_pack("{s:f, s:i, s:f, s:b}",
	    "generator_cpu_s", u->gen_s, "generator_cpus", u->gen_cpus,
	    "generator_cpu_pct", u->gen_pct, "generator_bound", u->gen_bound));
}

/* The fields every scenario reports: layout and the connect phase. */
static json_t *
base_json(const struct run *r)
{
	const struct bench_opts *o = r->o;

	return json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:I, s:I, s:o}",
	    "scenario", o->scenario, "connections", o->connections,
	    "rooms", o->rooms, "procs", o->procs,
	    "publishers", o->publishers * o->rooms,
	    "source_addresses", o->src_count,
	    "connect_s", (double)r->connect_ns / 1e9,
	    "joined", (json_int_t)r->joined, "failed", (json_int_t)r->failed,
	    "error", r->error[0] != '\0' ? json_string(r->error) : json_null());
}

/* A fanout or persist round (also one step of a ramp). */
static json_t *
round_json(const struct run *r, const struct results *x)
{
	const struct bench_stats *s = &r->st;
	json_t *j = json_pack("{s:f, s:f, s:f, s:f, s:f}",
	    "target_events_per_s", r->events_s,
	    "target_deliveries_per_s",
	    r->events_s * r->o->connections / r->o->rooms,
	    "duration_s", r->window_s,
	    "deliveries_per_s", x->deliveries_s, "events_per_s", x->events_s);

	json_object_update_new(j, json_pack(
	    "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
	    "events_acked", (json_int_t)s->acked_measured,
	    "expected_deliveries", (json_int_t)x->expected,
	    "delivered", (json_int_t)s->delivered_measured,
	    "lost", (json_int_t)x->lost, "gaps", (json_int_t)s->gaps,
	    "gap_events", (json_int_t)s->gap_events,
	    "duplicates", (json_int_t)s->dups,
	    "dropped_connections", (json_int_t)s->dropped,
	    "send_errors", (json_int_t)s->send_errors,
	    "unacked", (json_int_t)s->unacked,
	    "skipped_sends", (json_int_t)s->skipped,
	    "latency_ms", pcts_json(&x->lat), "ack_latency_ms", pcts_json(&x->ack)));
	cpu_json(j, &x->cpu);
	json_object_set_new(j, "pacing_lag_max_ms", json_real(ns_ms(s->lag_max_ns)));
	json_object_set_new(j, "generator_us_per_delivery",
	    real_or_null(x->gen_us_per_delivery));
	json_object_set_new(j, "server_us_per_delivery",
	    real_or_null(x->srv_us_per_delivery));
	json_object_set_new(j, "server_us_per_event", real_or_null(x->srv_us_per_event));
	json_object_set_new(j, "first_error", s->error[0] != '\0' ?
	    json_string(s->error) : json_null());
	json_object_set_new(j, "ok", json_boolean(x->ok));
	return j;
}

static void
print_json(json_t *j)
{
	char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));

	if (text != NULL)
		printf("%s\n", text);
	free(text);
	json_decref(j);
}

/* No complete numbers: say what went wrong and stop there. */
static int
report_abort(const struct run *r)
{
	json_t *j;

	fprintf(stderr, "parley-bench: %s (%u joined, %u failed)\n",
	    r->error[0] ? r->error : "aborted", r->joined, r->failed);
	if (r->o->json) {
		j = base_json(r);
		json_object_set_new(j, "ok", json_false());
		if (r->error[0] == '\0')
			json_object_set_new(j, "error", json_string("aborted"));
		print_json(j);
	}
	return EXIT_LOSS;
}

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

/* Connect everything; -1 (run aborted) unless every connection joined. */
static int
run_start(struct run *r, struct bench_opts *o)
{
	run_init(r, o);
	if (connect_phase(r) != 0)
		return -1;
	if (r->failed > 0) {
		run_error(r, "%u connections failed", r->failed);
		return -1;
	}
	return 0;
}

/* ---- scenario: connect --------------------------------------------------- */

static int
connect_run(struct bench_opts *o)
{
	struct run r;
	struct pcts hs;
	struct cpu_use u;
	double wall, per_s;
	int ok;
	json_t *j;

	run_init(&r, o);
	if (connect_phase(&r) != 0) {
		run_free(&r);
		return report_abort(&r);
	}
	wall = (double)r.connect_ns / 1e9;
	per_s = wall > 0 ? r.joined / wall : 0;
	pcts_of(r.hs_hist, r.hs_max_ns, &hs);
	cpu_use_of(&r, &r.conn_cpu, wall, &u);
	ok = r.failed == 0 && r.error[0] == '\0';
	if (o->json) {
		j = base_json(&r);
		json_object_update_new(j, json_pack("{s:f, s:o}",
		    "connections_per_s", per_s, "handshake_ms", pcts_json(&hs)));
		cpu_json(j, &u);
		json_object_set_new(j, "server_us_per_connection",
		    real_or_null(per_us(u.srv_s, r.joined)));
		json_object_set_new(j, "ok", json_boolean(ok));
		print_json(j);
	} else {
		print_header(&r);
		printf("  %-14s %.0f connections/s; all %s in %.2f s\n", "rate",
		    per_s, r.failed ? "attempted" : "connected", wall);
		print_pcts("handshake ms", &hs, "TCP connect to joined");
		print_server_cpu(&r, &u, wall, per_us(u.srv_s, r.joined), "connection");
		print_gen_cpu(&u, per_us(u.gen_s, r.joined), "connection", "");
		print_errors(&r);
		printf("  %-14s %s\n", "result", ok ? "OK" : "FAILURES");
	}
	run_free(&r);
	return ok ? EXIT_CLEAN : EXIT_LOSS;
}

/* ---- scenario: idle ------------------------------------------------------ */

static void
idle_report(const struct run *r, uint64_t rss0, uint64_t rss1, uint64_t rss2)
{
	const struct bench_opts *o = r->o;
	struct cpu_use u;
	double per = r->joined && rss2 >= rss0 ?
	    (double)(rss2 - rss0) * 1024 / r->joined : -1;
	int ok = r->st.dropped == 0 && r->error[0] == '\0' && r->failed == 0;
	json_t *j;

	cpu_use_of(r, &r->cpu, r->window_s, &u);
	if (o->json) {
		j = base_json(r);
		json_object_update_new(j, json_pack("{s:f, s:I}",
		    "held_s", r->window_s, "dropped_connections",
		    (json_int_t)r->st.dropped));
		if (o->server_pid > 0)
			json_object_update_new(j, json_pack("{s:I, s:I, s:I}",
			    "server_rss_before_kib", (json_int_t)rss0,
			    "server_rss_joined_kib", (json_int_t)rss1,
			    "server_rss_after_kib", (json_int_t)rss2));
		json_object_set_new(j, "server_rss_bytes_per_connection",
		    real_or_null(per));
		cpu_json(j, &u);
		json_object_set_new(j, "ok", json_boolean(ok));
		print_json(j);
		return;
	}
	print_header(r);
	printf("  %-14s %.1f s: %" PRIu64 " connections dropped\n", "held",
	    r->window_s, r->st.dropped);
	if (o->server_pid > 0) {
		printf("  %-14s %.1f MiB before, %.1f MiB joined, %.1f MiB after the "
		    "hold", "server rss", rss0 / 1024.0, rss1 / 1024.0, rss2 / 1024.0);
		if (per >= 0)
			printf(": %.0f bytes per connection\n", per);
		else
			printf(": it fell, so the server reused memory an earlier run "
			    "freed; measure on a fresh server\n");
	} else
		printf("  %-14s not measured (no --server-pid)\n", "server rss");
	print_server_cpu(r, &u, r->window_s, -1, "");
	print_gen_cpu(&u, -1, "", "");
	print_errors(r);
	printf("  %-14s %s\n", "result", ok ? "OK" : "ERRORS");
}

/* RSS before, once all joined, and after --duration of holding them. */
static int
idle_run(struct bench_opts *o)
{
	struct run r;
	uint64_t rss0 = 0, rss1 = 0, rss2 = 0;
	int rc;

	if (o->server_pid > 0 && (rss0 = proc_rss_kib(o->server_pid)) == 0) {
		fprintf(stderr, "parley-bench: cannot read /proc/%ld/status\n",
		    (long)o->server_pid);
		return EXIT_LOSS;
	}
	/* Nothing is sent: the round is only the hold. */
	o->warmup = o->drain = 0;
	if (run_start(&r, o) != 0) {
		run_free(&r);
		return report_abort(&r);
	}
	if (o->server_pid > 0)
		rss1 = proc_rss_kib(o->server_pid);
	if (measure_phase(&r, 0) != 0) {
		run_free(&r);
		return report_abort(&r);
	}
	if (o->server_pid > 0 && (rss2 = proc_rss_kib(o->server_pid)) == 0)
		run_error(&r, "server gone during the hold");
	idle_report(&r, rss0, rss1, rss2);
	rc = r.st.dropped == 0 && r.error[0] == '\0' ? EXIT_CLEAN : EXIT_LOSS;
	run_free(&r);
	return rc;
}

/* ---- scenarios: fanout and persist ----------------------------------------- */

static int
round_run(struct bench_opts *o, double events_s)
{
	struct run r;
	struct results x;
	int rc;

	warn_oversubscribed(o);
	if (run_start(&r, o) != 0 || measure_phase(&r, events_s) != 0) {
		run_free(&r);
		return report_abort(&r);
	}
	compute(&r, &x);
	if (o->json) {
		json_t *j = base_json(&r);

		json_object_update_new(j, round_json(&r, &x));
		if (o->timeline)
			json_object_set_new(j, "timeline", timeline_json(&r));
		print_json(j);
	} else
		print_round(&r, &x);
	rc = x.ok ? EXIT_CLEAN : EXIT_LOSS;
	run_free(&r);
	return rc;
}

/* --rate is deliveries per second: events/s = rate / members per room. */
static int
fanout_run(struct bench_opts *o)
{
	return round_run(o, o->rate * o->rooms / o->connections);
}

/* --rate is events (sends) per second; with parleyd --db an ack means durable. */
static int
persist_run(struct bench_opts *o)
{
	return round_run(o, o->rate);
}

/* ---- scenario: ramp ------------------------------------------------------ */

#define RAMP_STEPS_MAX 64

struct ramp_step {
	double target;               /* deliveries per second asked */
	struct results x;
	const char *verdict;
	int held;
};

static void
ramp_judge(const struct bench_opts *o, struct ramp_step *s)
{
	const struct results *x = &s->x;

	/* A failed step with the generator near its bound may be the generator's. */
	s->held = 0;
	if (x->lost > 0)
		s->verdict = x->cpu.gen_bound ? "loss, generator-bound" : "loss";
	else if (!x->ok)
		s->verdict = x->cpu.gen_bound ? "errors, generator-bound" : "errors";
	else if (x->lat.p99 > o->p99_limit)
		s->verdict = x->cpu.gen_bound ? "p99 over limit, generator-bound" :
		    "p99 over limit";
	else {
		s->held = 1;
		s->verdict = x->cpu.gen_bound ? "held, generator-bound" : "held";
	}
}

static void
ramp_table(const struct run *r, const struct ramp_step *s, int n, int held,
    const char *stop)
{
	const struct bench_opts *o = r->o;
	int i;

	print_header(r);
	printf("  %-14s p99 under %.3g ms and nothing lost; steps of %.0f "
	    "deliveries/s, each %.1f s after %.1f s warm-up\n", "holds if",
	    o->p99_limit, o->ramp_step, o->duration, o->warmup);
	printf("  %5s %10s %10s %7s %8s %8s %8s %8s %8s %6s %7s %6s  %s\n", "step",
	    "target/s", "achieved", "lost", "p50 ms", "p90 ms", "p99 ms",
	    "p99.9 ms", "max ms", "srv %", "us/dlv", "gen %", "verdict");
	for (i = 0; i < n; i++)
		printf("  %5d %10.0f %10.0f %7" PRIu64 " %8.3f %8.3f %8.3f %8.3f "
		    "%8.3f %6.1f %7.2f %6.1f  %s\n", i + 1, s[i].target,
		    s[i].x.deliveries_s, s[i].x.lost, s[i].x.lat.p50, s[i].x.lat.p90,
		    s[i].x.lat.p99, s[i].x.lat.p999, s[i].x.lat.max,
		    s[i].x.cpu.srv_s >= 0 ? 100 * s[i].x.cpu.srv_s / r->window_s : -1,
		    s[i].x.srv_us_per_delivery, s[i].x.cpu.gen_pct, s[i].verdict);
	if (held >= 0)
		printf("  %-14s %.0f deliveries/s (step %d): p99 %.3f ms, nothing lost\n",
		    "held", s[held].target, held + 1, s[held].x.lat.p99);
	else
		printf("  %-14s nothing: the first step already failed\n", "held");
	printf("  %-14s %s\n", "stopped", stop);
	print_errors(r);
}

static void
ramp_json(const struct run *r, const struct ramp_step *s, int n, int held,
    const char *stop)
{
	json_t *j = base_json(r), *steps = json_array(), *st;
	int i;

	for (i = 0; i < n; i++) {
		st = round_json(r, &s[i].x);
		json_object_set_new(st, "target_deliveries_per_s", json_real(s[i].target));
		json_object_set_new(st, "verdict", json_string(s[i].verdict));
		json_object_set_new(st, "held", json_boolean(s[i].held));
		json_array_append_new(steps, st);
	}
	json_object_update_new(j, json_pack("{s:f, s:f, s:o, s:o, s:s, s:b}",
	    "p99_limit_ms", r->o->p99_limit, "ramp_step", r->o->ramp_step,
	    "steps", steps, "held_deliveries_per_s",
	    held >= 0 ? json_real(s[held].target) : json_null(),
	    "stopped", stop, "ok", held >= 0));
	print_json(j);
}

/*
 * Latency percentiles against the achieved rate, by gnuplot. The file name
 * goes into gnuplot's single-quoted string: check_opts refuses quotes.
 */
static int
ramp_plot(const struct run *r, const struct ramp_step *s, int n)
{
	const struct bench_opts *o = r->o;
	char data[] = "/tmp/parley-bench-plot-XXXXXX";
	FILE *f, *gp;
	int fd, i, st;

	if ((fd = mkstemp(data)) < 0 || (f = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "parley-bench: --plot: temporary file: %s\n",
		    strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++)
		if (s[i].x.lat.p50 > 0)
			fprintf(f, "%.0f %.0f %.4f %.4f %.4f %.4f %.4f\n", s[i].target,
			    s[i].x.deliveries_s, s[i].x.lat.p50, s[i].x.lat.p90,
			    s[i].x.lat.p99, s[i].x.lat.p999, s[i].x.lat.max);
	fclose(f);
	fflush(NULL);
	if ((gp = popen("gnuplot", "w")) == NULL) {
		unlink(data);
		fprintf(stderr, "parley-bench: --plot: %s\n", strerror(errno));
		return -1;
	}
	fprintf(gp, "set terminal pngcairo size 960,600 noenhanced\n"
	    "set output '%s'\n"
	    "set title 'parley-bench ramp: %d connections, %d rooms of %d, %d procs'\n"
	    "set xlabel 'deliveries per second (achieved)'\n"
	    "set ylabel 'send-to-delivery latency, ms'\n"
	    "set logscale y\nset grid\nset key top left\n"
	    "plot '%s' using 2:3 with linespoints title 'p50', "
	    "'' using 2:4 with linespoints title 'p90', "
	    "'' using 2:5 with linespoints lw 2 title 'p99', "
	    "'' using 2:6 with linespoints title 'p99.9', "
	    "%g with lines dt 2 title 'p99 limit'\n",
	    o->plot, o->connections, o->rooms, members_per_room(o), o->procs,
	    data, o->p99_limit);
	st = pclose(gp);
	unlink(data);
	if (st != 0) {
		fprintf(stderr, "parley-bench: --plot: gnuplot failed (%s)\n",
		    WIFEXITED(st) && WEXITSTATUS(st) == 127 ?
		    "not installed? apt-get install gnuplot-nox" : "see above");
		return -1;
	}
	if (!o->quiet)
		fprintf(stderr, "parley-bench: plot written to %s\n", o->plot);
	return 0;
}

/*
 * Step the rate up from --rate by --ramp-step until a step loses anything,
 * errs, or its p99 passes --p99-limit; the last step before is the rate
 * that held. A step at which the generator is near its CPU bound still
 * counts, but ends the ramp: beyond it the generator measures itself.
 */
static int
ramp_run(struct bench_opts *o)
{
	struct ramp_step *steps = xcalloc(RAMP_STEPS_MAX, sizeof(*steps));
	char stop[BENCH_ERRLEN + 64] = "";
	double rate;
	struct run r;
	int n = 0, held = -1, rc;

	warn_oversubscribed(o);
	if (run_start(&r, o) != 0) {
		free(steps);
		run_free(&r);
		return report_abort(&r);
	}
	for (rate = o->rate; rate <= o->ramp_max * (1 + 1e-9); rate += o->ramp_step) {
		if (n == RAMP_STEPS_MAX) {
			snprintf(stop, sizeof(stop), "after %d steps, the most a run takes",
			    RAMP_STEPS_MAX);
			break;
		}
		if (measure_phase(&r, rate * o->rooms / o->connections) != 0) {
			snprintf(stop, sizeof(stop), "step %d: %s", n + 1, r.error);
			break;
		}
		steps[n].target = rate;
		compute(&r, &steps[n].x);
		ramp_judge(o, &steps[n]);
		n++;
		if (!o->quiet)
			fprintf(stderr, "parley-bench: step %d: %.0f deliveries/s, p99 "
			    "%.3f ms, %" PRIu64 " lost: %s\n", n, rate,
			    steps[n - 1].x.lat.p99, steps[n - 1].x.lost,
			    steps[n - 1].verdict);
		if (!steps[n - 1].held) {
			snprintf(stop, sizeof(stop), "step %d: %s", n, steps[n - 1].verdict);
			break;
		}
		held = n - 1;
		if (steps[n - 1].x.cpu.gen_bound) {
			snprintf(stop, sizeof(stop), "step %d: the generator used %.0f%% "
			    "of its CPU; the server holds at least this much", n,
			    steps[n - 1].x.cpu.gen_pct);
			break;
		}
	}
	if (stop[0] == '\0')
		snprintf(stop, sizeof(stop), "--ramp-max %.0f reached", o->ramp_max);
	if (o->json)
		ramp_json(&r, steps, n, held, stop);
	else
		ramp_table(&r, steps, n, held, stop);
	rc = held >= 0 ? EXIT_CLEAN : EXIT_LOSS;
	if (o->plot != NULL && n > 0 && ramp_plot(&r, steps, n) != 0)
		rc = EXIT_LOSS;
	run_free(&r);
	free(steps);
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
"Every scenario opens C WebSocket connections from P worker processes, over\n"
"source addresses 127.0.0.x, says hello (anonymous --name-prefix names, or\n"
"tokens minted from --jwt-secret-file) and joins connection n to room n %% R.\n"
"  connect  reports connections per second, failures, handshake times.\n"
"  idle     then holds them for --duration: server RSS per connection (from\n"
"           /proc/PID/status of --server-pid) and connections dropped.\n"
"  fanout   then K publishers per room send open-loop (never waiting for\n"
"           acks) at --rate deliveries per second in all; every connection\n"
"           measures send-to-delivery latency and checks seqs for gaps.\n"
"  ramp     runs fanout steps from --rate up by --ramp-step until p99 passes\n"
"           --p99-limit or anything is lost; reports the last rate that held.\n"
"  persist  like fanout, but --rate counts events (sends) per second, and\n"
"           reports send-to-ack latency: against parleyd --db an ack means\n"
"           the event is committed.\n"
"Start the server with --rate 0 (no per-connection rate limit) and, unless\n"
"--jwt-secret-file is given, --allow-anonymous.\n"
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
"      --rate D                fanout, ramp: deliveries per second in all\n"
"                              (10000); events/s = D / members per room, the\n"
"                              same in every room; persist: events per second\n"
"      --ramp-step D           ramp: deliveries/s added per step (--rate)\n"
"      --ramp-max D            ramp: the highest rate tried (1000000)\n"
"      --p99-limit MS          ramp: a step holds if its p99 is at most this\n"
"                              and nothing is lost (10)\n"
"      --body-size N           pad message bodies to N bytes (0: ~30)\n"
"      --tick MS               pacing timer period, 1-100 ms (1)\n"
"Phases (seconds, fractions allowed):\n"
"      --connect-timeout S     connect, upgrade, hello and join (30)\n"
"      --warmup S              publishing before the window, not measured (2)\n"
"  -d, --duration S            measured window, each ramp step, idle hold (10)\n"
"      --drain S               receive after publishing stops (2)\n"
"Report:\n"
"      --server-pid PID        parleyd's pid: server CPU per delivery, from\n"
"                              /proc/PID/stat at the window's edges\n"
"      --timeline              also deliveries, mean and max latency for each\n"
"                              second of the window (by send time)\n"
"      --json                  one JSON object instead of the table\n"
"      --plot FILE.png         ramp: latency percentiles against rate, drawn\n"
"                              by gnuplot\n"
"  -q, --quiet                 no progress lines on stderr\n"
"  -h, --help                  this help\n"
"\n"
"Measured: deliveries of messages sent in the window; expected = acked sends\n"
"of the window x members of their room; lost = expected - delivered after\n"
"the drain. Latency percentiles come from a log histogram (<1.6%% buckets).\n"
"CPU is read from /proc; the generator is flagged GENERATOR-BOUND above\n"
"85%% of the CPUs it may run on (sched_getaffinity).\n"
"\n"
"Exit status: 0 no loss and no error (ramp: at least one step held), 1 loss,\n"
"errors or an aborted run, 2 bad usage.\n");
}

enum {
	OPT_HOST = 256, OPT_PORT, OPT_SRC_BASE, OPT_SRC_COUNT, OPT_NAME_PREFIX,
	OPT_ROOM_PREFIX, OPT_JWT, OPT_PUBLISHERS, OPT_RATE, OPT_WARMUP,
	OPT_DRAIN, OPT_CONNECT_TIMEOUT, OPT_CONCURRENCY, OPT_TICK, OPT_BODY,
	OPT_SERVER_PID, OPT_TIMELINE, OPT_JSON, OPT_RAMP_STEP, OPT_RAMP_MAX,
	OPT_P99_LIMIT, OPT_PLOT
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
	{ "ramp-step", required_argument, NULL, OPT_RAMP_STEP },
	{ "ramp-max", required_argument, NULL, OPT_RAMP_MAX },
	{ "p99-limit", required_argument, NULL, OPT_P99_LIMIT },
	{ "plot", required_argument, NULL, OPT_PLOT },
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
	case OPT_RAMP_STEP: return secs_arg("--ramp-step", a, 1, 1e9, &o->ramp_step);
	case OPT_RAMP_MAX: return secs_arg("--ramp-max", a, 1, 1e9, &o->ramp_max);
	case OPT_P99_LIMIT: return secs_arg("--p99-limit", a, 0.001, 60000, &o->p99_limit);
	case OPT_PLOT: o->plot = a; return 0;
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
	if (o->plot != NULL && strcmp(o->scenario, "ramp") != 0)
		return bad("--plot", o->plot, "only the ramp scenario plots");
	if (o->plot != NULL && (o->plot[0] == '\0' || strpbrk(o->plot, "'\n") != NULL))
		return bad("--plot", o->plot, "want a file name without quotes");
	if (o->ramp_step == 0)
		o->ramp_step = o->rate;
	if (o->ramp_max < o->rate)
		return bad("--ramp-max", "", "below --rate, the first step");
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
	o->ramp_max = 1e6;
	o->p99_limit = 10;
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
