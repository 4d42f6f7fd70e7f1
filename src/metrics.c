#include "config.h"

#include <stddef.h>

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
	MMAX("parley_mailbox_depth_max", "gauge", "Most messages ever found queued at once in one worker or room mailbox.", mailbox_high_water),
	M("parley_rooms", "gauge", "Rooms resident in memory.", rooms),
	M("parley_rooms_active", "gauge", "Rooms with at least one member connection.", rooms_active),
	M("parley_rate_limited_total", "counter", "Requests refused with rate_limited.", rate_limited),
};
#define NDEFS (sizeof(metric_defs) / sizeof(metric_defs[0]))

static uint64_t
field(const struct metrics *m, size_t off)
{
	return ck_pr_load_64((const uint64_t *)((const char *)m + off));
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
	for (size_t i = 0; i < PROTO_TYPE_COUNT; i++)
		total->requests[i] += ck_pr_load_64(&block->requests[i]);
	for (size_t i = 0; i < FRAME_TYPE_COUNT; i++)
		total->frames_out_type[i] += ck_pr_load_64(&block->frames_out_type[i]);
}

static void
render_labelled(const struct metrics *total, struct evbuffer *out)
{
	evbuffer_add_printf(out, "# HELP parley_requests_total Client requests received, by type (unknown: not decodable).\n"
	    "# TYPE parley_requests_total counter\n");
	for (size_t i = 0; i < PROTO_TYPE_COUNT; i++)
		evbuffer_add_printf(out, "parley_requests_total{type=\"%s\"} %llu\n",
		    proto_type_name((enum proto_type)i),
		    (unsigned long long)total->requests[i]);
	evbuffer_add_printf(out, "# HELP parley_frames_sent_total Server frames queued to clients, by type.\n"
	    "# TYPE parley_frames_sent_total counter\n");
	for (size_t i = 0; i < FRAME_TYPE_COUNT; i++)
		evbuffer_add_printf(out, "parley_frames_sent_total{type=\"%s\"} %llu\n",
		    frame_type_name((enum frame_type)i),
		    (unsigned long long)total->frames_out_type[i]);
}

void
metrics_render(const struct metrics *total, uint64_t capacity,
    uint64_t max_connections, struct evbuffer *out)
{
	render_labelled(total, out);
	for (size_t d = 0; d < NDEFS; d++) {
		const struct metric_def *m = &metric_defs[d];

		evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n",
		    m->name, m->help, m->name, m->type, m->name,
		    (unsigned long long)*(const uint64_t *)((const char *)total + m->offset));
	}
	evbuffer_add_printf(out, "# HELP parley_connection_capacity Client connections the open-files limit allows (the limit less reserved descriptors).\n"
	    "# TYPE parley_connection_capacity gauge\nparley_connection_capacity %llu\n"
	    "# HELP parley_max_connections Client connections accepted before HTTP 503 (--max-connections, at most the capacity).\n"
	    "# TYPE parley_max_connections gauge\nparley_max_connections %llu\n",
	    (unsigned long long)capacity, (unsigned long long)max_connections);
}
