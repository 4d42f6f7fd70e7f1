/*
 * metrics.h - per-worker counters, summed only when /metrics is read.
 *
 * Owner: each worker owns one struct metrics and is the only writer; it
 * bumps fields with plain (non-atomic read-modify-write) relaxed stores, so
 * the hot path costs an ordinary increment and no shared cache line. The
 * /metrics handler, on any worker, reads every worker's block with relaxed
 * atomic loads: a sum may be a few increments stale, never torn.
 */
#ifndef PARLEY_METRICS_H
#define PARLEY_METRICS_H

#include <stdint.h>

#include <ck_pr.h>

#include "frame.h"
#include "proto.h"

struct evbuffer;

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
	uint64_t mailbox_high_water;     /* gauge (max over workers): most messages
	                                    found queued at once, worker or room mailbox */
	uint64_t rooms;                  /* gauge: rooms resident on this worker */
	uint64_t rooms_active;           /* gauge: rooms with at least one member */
	uint64_t rate_limited;           /* rate_limited errors sent */
	uint64_t requests[PROTO_TYPE_COUNT];   /* client requests by type ([0]: undecodable) */
	uint64_t frames_out_type[FRAME_TYPE_COUNT]; /* server frames queued, by type */
} __attribute__((aligned(64)));      /* one worker's block never shares a line */

/* Owner-only increment: a relaxed load and store, no locked instruction. */
#define METRIC_ADD(m, field, n) \
	ck_pr_store_64(&(m)->field, ck_pr_load_64(&(m)->field) + (uint64_t)(n))
#define METRIC_INC(m, field) METRIC_ADD(m, field, 1)
#define METRIC_SUB(m, field, n) \
	ck_pr_store_64(&(m)->field, ck_pr_load_64(&(m)->field) - (uint64_t)(n))
/* Owner-only: raise a high-water mark. */
#define METRIC_MAX(m, field, v) do { \
	if ((uint64_t)(v) > ck_pr_load_64(&(m)->field)) \
		ck_pr_store_64(&(m)->field, (uint64_t)(v)); \
} while (0)

/* Add another worker's block into total, field by field (any thread). */
void metrics_add(struct metrics *total, const struct metrics *block);

/*
 * Append the Prometheus text exposition of total to out. capacity (from the
 * open-files limit) and max_connections (the effective limit) come from
 * the server, not from per-worker counters.
 */
void metrics_render(const struct metrics *total, uint64_t capacity,
    uint64_t max_connections, struct evbuffer *out);

#endif
