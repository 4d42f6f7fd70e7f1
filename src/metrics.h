/*
 * metrics.h - per-worker counters, summed only when /metrics is read.
 *
 * Owner: each worker owns one struct metrics and is the only writer; it
 * bumps fields with plain (non-atomic read-modify-write) relaxed stores, so
 * the hot path costs an ordinary increment and no shared cache line. The
 * /metrics handler, on any worker, reads every worker's block with relaxed
 * atomic loads: a sum may be a few increments stale, never torn.
 *
 * Labels: every labelled family has a fixed table of label values (request
 * and frame types, the protocol's error codes), so the number of series is
 * bounded whatever clients send; an unknown error code counts as "other".
 *
 * Histograms (struct metrics_hist) follow the same rule: one owner writes
 * (today the persistence thread), readers load each bucket relaxed.
 */
#ifndef PARLEY_METRICS_H
#define PARLEY_METRICS_H

#include <stdint.h>

#include <ck_pr.h>

#include "frame.h"
#include "proto.h"

struct evbuffer;

/*
 * The codes of WebSocket error frames (PROTOCOL.md section 6), for
 * parley_errors_total{code}. Add a code here when the protocol gains one.
 */
enum metrics_error {
	METRICS_ERR_BAD_REQUEST = 0,
	METRICS_ERR_UNAUTHORIZED,
	METRICS_ERR_FORBIDDEN,
	METRICS_ERR_NOT_MEMBER,
	METRICS_ERR_NOT_FOUND,
	METRICS_ERR_TOO_LARGE,
	METRICS_ERR_RATE_LIMITED,
	METRICS_ERR_UNAVAILABLE,
	METRICS_ERR_OTHER,              /* a code missing from the table above */
	METRICS_ERR_COUNT
};

/* The "error" codes of HTTP error bodies, for parley_http_errors_total{code}. */
enum metrics_http_error {
	METRICS_HTTP_BAD_REQUEST = 0,
	METRICS_HTTP_UNAUTHORIZED,
	METRICS_HTTP_FORBIDDEN,
	METRICS_HTTP_NOT_FOUND,
	METRICS_HTTP_METHOD_NOT_ALLOWED,
	METRICS_HTTP_REQUEST_TIMEOUT,
	METRICS_HTTP_LENGTH_REQUIRED,
	METRICS_HTTP_BODY_TOO_LARGE,
	METRICS_HTTP_UPGRADE_REQUIRED,
	METRICS_HTTP_HEADERS_TOO_LARGE,
	METRICS_HTTP_NOT_IMPLEMENTED,
	METRICS_HTTP_VERSION_NOT_SUPPORTED,
	METRICS_HTTP_NOT_READY,
	METRICS_HTTP_UNAVAILABLE,
	METRICS_HTTP_OTHER,             /* a code missing from the table above */
	METRICS_HTTP_COUNT
};

/* Counters (monotonic) and gauges (owner adds and subtracts). */
struct metrics {
	uint64_t connections;            /* gauge: open client TCP connections */
	uint64_t connections_accepted;
	uint64_t connections_refused;    /* over --max-connections: HTTP 503 */
	uint64_t websockets;             /* gauge: open WebSocket sessions */
	uint64_t http_requests;
	uint64_t frames_in;              /* WebSocket frames received */
	uint64_t frames_out;             /* WebSocket frames queued to clients */
	uint64_t bytes_in;               /* TCP payload bytes read */
	uint64_t bytes_out;              /* TCP payload bytes written */
	uint64_t events;                 /* stream events sequenced (chat protocol) */
	uint64_t deliveries;             /* live stream-event frames queued to members */
	uint64_t slow_consumer_closes;   /* closed 1013 over --out-limit */
	uint64_t idle_closes;            /* closed 1001 after 2 x heartbeat of silence */
	uint64_t protocol_closes;        /* closed 1002/1003/1007/1009 */
	uint64_t mailbox_messages;       /* messages taken from this worker's mailbox */
	uint64_t mailbox_depth;          /* gauge: messages this worker's mailbox held
	                                    when it last woke (sum over workers) */
	uint64_t mailbox_high_water;     /* gauge (max over workers): most messages
	                                    found queued at once, worker or room mailbox */
	uint64_t rooms;                  /* gauge: rooms resident on this worker */
	uint64_t rooms_active;           /* gauge: rooms with at least one member */
	uint64_t rate_limited;           /* rate_limited errors sent */
	uint64_t requests[PROTO_TYPE_COUNT];   /* client requests by type ([0]: undecodable) */
	uint64_t frames_out_type[FRAME_TYPE_COUNT]; /* server frames queued, by type */
	uint64_t errors[METRICS_ERR_COUNT];    /* WebSocket error frames built, by code:
	                                          by the session or a room homed here */
	uint64_t http_errors[METRICS_HTTP_COUNT]; /* HTTP error responses, by code */
} __attribute__((aligned(64)));      /* one worker's block never shares a line */

/* Owner-only increment: a relaxed load and store, no locked instruction. */
#define METRIC_ADD(m, field, n) \
	ck_pr_store_64(&(m)->field, ck_pr_load_64(&(m)->field) + (uint64_t)(n))
#define METRIC_INC(m, field) METRIC_ADD(m, field, 1)
#define METRIC_SUB(m, field, n) \
	ck_pr_store_64(&(m)->field, ck_pr_load_64(&(m)->field) - (uint64_t)(n))
/* Owner-only: set a gauge. */
#define METRIC_SET(m, field, v) ck_pr_store_64(&(m)->field, (uint64_t)(v))
/* Owner-only: raise a high-water mark. */
#define METRIC_MAX(m, field, v) do { \
	if ((uint64_t)(v) > ck_pr_load_64(&(m)->field)) \
		ck_pr_store_64(&(m)->field, (uint64_t)(v)); \
} while (0)

/*
 * Owner-only: count one error frame (code: its "code") or one HTTP error
 * response (code: its body's "error"). Off the hot path: a short table scan.
 */
void metrics_error(struct metrics *m, const char *code);
void metrics_http_error(struct metrics *m, const char *code);

/*
 * Any thread: raise a process-wide high-water mark to v. Most calls find the
 * mark already higher and cost one relaxed load; only a new peak pays a CAS
 * (several writers, so a plain store could lower it).
 */
static inline void
metrics_raise_peak(int *peak, int v)
{
	int cur = ck_pr_load_int(peak);

	while (v > cur && !ck_pr_cas_int_value(peak, cur, v, &cur))
		;
}

/*
 * A histogram with fixed buckets (a struct metrics_hist_spec, static) and
 * one writer. counts[i] holds observations in (bound[i-1], bound[i]], not
 * cumulative, so one observation is one store; counts[n] those above the
 * last bound. Rendering makes them cumulative and derives _count from the
 * same loads, so the +Inf bucket always equals _count even while the owner
 * writes. Values are integers in the spec's unit (rows, microseconds).
 */
#define METRICS_HIST_MAX 16             /* bounds at most, +Inf not included */

struct metrics_hist_spec {
	const char *name;                   /* family name, without _bucket etc. */
	const char *help;
	size_t n;                           /* bounds, at most METRICS_HIST_MAX */
	const uint64_t *bound;              /* ascending, in the value's unit */
	double scale;                       /* exposition unit per value unit:
	                                       1e-6 for microseconds as seconds */
};

struct metrics_hist {
	uint64_t counts[METRICS_HIST_MAX + 1];
	uint64_t sum;                       /* of the values, in their unit */
};

/* Owner only: record v (relaxed stores, no locked instruction). */
void metrics_hist_observe(struct metrics_hist *h, const struct metrics_hist_spec *spec,
    uint64_t v);
/* Any thread: append h as a Prometheus histogram family (HELP, TYPE,
 * _bucket{le} cumulative with +Inf, _sum, _count). */
void metrics_hist_render(const struct metrics_hist *h,
    const struct metrics_hist_spec *spec, struct evbuffer *out);

/* Add another worker's block into total, field by field (any thread). */
void metrics_add(struct metrics *total, const struct metrics *block);

/* Process-wide values that are no worker's counters (struct server's). */
struct metrics_process {
	uint64_t capacity;                  /* from the open-files limit */
	uint64_t max_connections;           /* the effective limit */
	uint64_t connections_peak;          /* most connections open at once */
};

/*
 * Append the Prometheus text exposition (format 0.0.4) of total and proc
 * to out: every family once, HELP and TYPE before its samples.
 */
void metrics_render(const struct metrics *total, const struct metrics_process *proc,
    struct evbuffer *out);

#endif
