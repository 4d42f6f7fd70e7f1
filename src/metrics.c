#include "config.h"

#include <stddef.h>
#include <string.h>

#include <event2/buffer.h>

#include "metrics.h"

struct metric_def {
	const char *name;
	const char *type;
	const char *help;
	size_t offset;
	int max;              /* combine workers by maximum, not by sum */
};

#define M(name, type, help, field) { name, type, help, offsetof(struct metrics, field), 0 }
#define MMAX(name, type, help, field) { name, type, help, offsetof(struct metrics, field), 1 }

static const struct metric_def metric_defs[] = {
	M("parley_connections", "gauge", "Open client connections (HTTP and WebSocket).", connections),
	M("parley_connections_accepted_total", "counter", "Client connections accepted.", connections_accepted),
	M("parley_connections_refused_total", "counter", "Connections refused with 503 over --max-connections.", connections_refused),
	M("parley_websockets", "gauge", "Open WebSocket sessions.", websockets),
	M("parley_http_requests_total", "counter", "HTTP requests parsed.", http_requests),
	M("parley_frames_in_total", "counter", "WebSocket frames received.", frames_in),
	M("parley_frames_out_total", "counter", "WebSocket frames queued to clients.", frames_out),
	M("parley_bytes_in_total", "counter", "Bytes read from client sockets.", bytes_in),
	M("parley_bytes_out_total", "counter", "Bytes written to client sockets.", bytes_out),
	M("parley_events_total", "counter", "Stream events sequenced.", events),
	M("parley_deliveries_total", "counter", "Live stream-event frames queued to member connections.", deliveries),
	M("parley_slow_consumer_closes_total", "counter", "Connections closed 1013 for passing --out-limit.", slow_consumer_closes),
	M("parley_idle_closes_total", "counter", "Connections closed 1001 after 2 x heartbeat of silence.", idle_closes),
	M("parley_protocol_closes_total", "counter", "Connections closed for a WebSocket protocol violation.", protocol_closes),
	M("parley_mailbox_messages_total", "counter", "Messages taken from worker mailboxes.", mailbox_messages),
	M("parley_mailbox_depth", "gauge", "Messages found waiting in the worker mailboxes when each last woke.", mailbox_depth),
	MMAX("parley_mailbox_depth_max", "gauge", "Most messages ever found queued at once in one worker or room mailbox.", mailbox_high_water),
	M("parley_rooms", "gauge", "Rooms resident in memory.", rooms),
	M("parley_rooms_active", "gauge", "Rooms with at least one member connection.", rooms_active),
	M("parley_rate_limited_total", "counter", "Requests refused with rate_limited.", rate_limited),
};
#define NDEFS (sizeof(metric_defs) / sizeof(metric_defs[0]))

/* Label values of parley_errors_total, by enum metrics_error. */
static const char *const error_codes[METRICS_ERR_COUNT] = {
	[METRICS_ERR_BAD_REQUEST] = "bad_request",
	[METRICS_ERR_UNAUTHORIZED] = "unauthorized",
	[METRICS_ERR_FORBIDDEN] = "forbidden",
	[METRICS_ERR_NOT_MEMBER] = "not_member",
	[METRICS_ERR_NOT_FOUND] = "not_found",
	[METRICS_ERR_TOO_LARGE] = "too_large",
	[METRICS_ERR_RATE_LIMITED] = "rate_limited",
	[METRICS_ERR_UNAVAILABLE] = "unavailable",
	[METRICS_ERR_OTHER] = "other",
};

/* Label values of parley_http_errors_total, by enum metrics_http_error. */
static const char *const http_error_codes[METRICS_HTTP_COUNT] = {
	[METRICS_HTTP_BAD_REQUEST] = "bad_request",
	[METRICS_HTTP_UNAUTHORIZED] = "unauthorized",
	[METRICS_HTTP_FORBIDDEN] = "forbidden",
	[METRICS_HTTP_NOT_FOUND] = "not_found",
	[METRICS_HTTP_METHOD_NOT_ALLOWED] = "method_not_allowed",
	[METRICS_HTTP_REQUEST_TIMEOUT] = "request_timeout",
	[METRICS_HTTP_LENGTH_REQUIRED] = "length_required",
	[METRICS_HTTP_BODY_TOO_LARGE] = "body_too_large",
	[METRICS_HTTP_UPGRADE_REQUIRED] = "upgrade_required",
	[METRICS_HTTP_HEADERS_TOO_LARGE] = "headers_too_large",
	[METRICS_HTTP_NOT_IMPLEMENTED] = "not_implemented",
	[METRICS_HTTP_VERSION_NOT_SUPPORTED] = "http_version_not_supported",
	[METRICS_HTTP_NOT_READY] = "not_ready",
	[METRICS_HTTP_UNAVAILABLE] = "unavailable",
	[METRICS_HTTP_OTHER] = "other",
};

/* The index of code in table[0..n), whose last entry is "other". */
static size_t
code_index(const char *const *table, size_t n, const char *code)
{
	for (size_t i = 0; code != NULL && i + 1 < n; i++)
		if (strcmp(table[i], code) == 0)
			return i;
	return n - 1;
}

void
metrics_error(struct metrics *m, const char *code)
{
	METRIC_INC(m, errors[code_index(error_codes, METRICS_ERR_COUNT, code)]);
}

void
metrics_http_error(struct metrics *m, const char *code)
{
	METRIC_INC(m, http_errors[code_index(http_error_codes, METRICS_HTTP_COUNT, code)]);
}

static uint64_t
field(const struct metrics *m, size_t off)
{
	return ck_pr_load_64((const uint64_t *)((const char *)m + off));
}

/* total[i] += relaxed loads of block[i], for n counters. */
static void
add_array(uint64_t *total, const uint64_t *block, size_t n)
{
	for (size_t i = 0; i < n; i++)
		total[i] += ck_pr_load_64(&block[i]);
}

void
metrics_add(struct metrics *total, const struct metrics *block)
{
	for (size_t d = 0; d < NDEFS; d++) {
		size_t off = metric_defs[d].offset;
		uint64_t *t = (uint64_t *)((char *)total + off), v = field(block, off);

		if (!metric_defs[d].max)
			*t += v;
		else if (v > *t)
			*t = v;
	}
	add_array(total->requests, block->requests, PROTO_TYPE_COUNT);
	add_array(total->frames_out_type, block->frames_out_type, FRAME_TYPE_COUNT);
	add_array(total->errors, block->errors, METRICS_ERR_COUNT);
	add_array(total->http_errors, block->http_errors, METRICS_HTTP_COUNT);
}

/* ---- the text format ------------------------------------------------------ */

/*
 * Append s with the escapes of the text format: a HELP text escapes
 * backslash and newline; a label value also the double quote.
 */
static void
add_escaped(struct evbuffer *out, const char *s, int label)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else if (*s == '"' && label)
			evbuffer_add(out, "\\\"", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

/* HELP and TYPE: once per family, before its samples. */
static void
family(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s ", name);
	add_escaped(out, help, 0);
	evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type);
}

/* One sample name{label="value"} v (label NULL: no labels). */
static void
sample(struct evbuffer *out, const char *name, const char *label,
    const char *value, uint64_t v)
{
	evbuffer_add_printf(out, "%s", name);
	if (label != NULL) {
		evbuffer_add_printf(out, "{%s=\"", label);
		add_escaped(out, value, 1);
		evbuffer_add(out, "\"}", 2);
	}
	evbuffer_add_printf(out, " %llu\n", (unsigned long long)v);
}

/* A counter family with one label, a sample per value: name_of(0..n). */
static void
labelled(struct evbuffer *out, const char *name, const char *help,
    const char *label, const uint64_t *v, size_t n, const char *(*name_of)(size_t))
{
	family(out, name, "counter", help);
	for (size_t i = 0; i < n; i++)
		sample(out, name, label, name_of(i), v[i]);
}

static const char *
request_name(size_t i)
{
	return proto_type_name((enum proto_type)i);
}

static const char *
frame_name(size_t i)
{
	return frame_type_name((enum frame_type)i);
}

static const char *
error_name(size_t i)
{
	return error_codes[i];
}

static const char *
http_error_name(size_t i)
{
	return http_error_codes[i];
}

void
metrics_render(const struct metrics *total, const struct metrics_process *proc,
    struct evbuffer *out)
{
	for (size_t d = 0; d < NDEFS; d++) {
		const struct metric_def *m = &metric_defs[d];

		family(out, m->name, m->type, m->help);
		sample(out, m->name, NULL, NULL,
		    *(const uint64_t *)((const char *)total + m->offset));
	}
	family(out, "parley_connections_peak", "gauge",
	    "Most client connections open at once since start (those refused with 503 not counted).");
	sample(out, "parley_connections_peak", NULL, NULL, proc->connections_peak);
	labelled(out, "parley_requests_total",
	    "Client requests received, by type (unknown: not decodable).", "type",
	    total->requests, PROTO_TYPE_COUNT, request_name);
	labelled(out, "parley_frames_sent_total", "Server frames queued to clients, by type.",
	    "type", total->frames_out_type, FRAME_TYPE_COUNT, frame_name);
	labelled(out, "parley_errors_total",
	    "WebSocket error frames made for clients, by code (other: a code not in the protocol's list).",
	    "code", total->errors, METRICS_ERR_COUNT, error_name);
	labelled(out, "parley_http_errors_total",
	    "HTTP error responses sent, by the code of their JSON body.",
	    "code", total->http_errors, METRICS_HTTP_COUNT, http_error_name);
	family(out, "parley_connection_capacity", "gauge",
	    "Client connections the open-files limit allows (the limit less reserved descriptors).");
	sample(out, "parley_connection_capacity", NULL, NULL, proc->capacity);
	family(out, "parley_max_connections", "gauge",
	    "Client connections accepted before HTTP 503 (--max-connections, at most the capacity).");
	sample(out, "parley_max_connections", NULL, NULL, proc->max_connections);
}

/* ---- histograms ------------------------------------------------------------ */

void
metrics_hist_observe(struct metrics_hist *h, const struct metrics_hist_spec *spec,
    uint64_t v)
{
	size_t i = 0;

	while (i < spec->n && v > spec->bound[i])
		i++;
	METRIC_INC(h, counts[i]);
	METRIC_ADD(h, sum, v);
}

void
metrics_hist_render(const struct metrics_hist *h, const struct metrics_hist_spec *spec,
    struct evbuffer *out)
{
	uint64_t acc = 0, sum = ck_pr_load_64(&h->sum);

	family(out, spec->name, "histogram", spec->help);
	for (size_t i = 0; i <= spec->n; i++) {
		acc += ck_pr_load_64(&h->counts[i]);
		/* %g: the shortest form of a bound (0.0005, 2.5, 1000). */
		if (i < spec->n)
			evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", spec->name,
			    (double)spec->bound[i] * spec->scale, (unsigned long long)acc);
		else
			evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", spec->name,
			    (unsigned long long)acc);
	}
	if (spec->scale == 1.0)
		evbuffer_add_printf(out, "%s_sum %llu\n", spec->name, (unsigned long long)sum);
	else
		evbuffer_add_printf(out, "%s_sum %.6f\n", spec->name, (double)sum * spec->scale);
	evbuffer_add_printf(out, "%s_count %llu\n", spec->name, (unsigned long long)acc);
}
