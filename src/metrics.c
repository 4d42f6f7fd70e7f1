#include "config.h"

#include <stddef.h>

#include <event2/buffer.h>

#include "metrics.h"

struct metric_def {
	const char *name;
	const char *type;
	const char *help;
	size_t offset;
};

#define M(name, type, help, field) { name, type, help, offsetof(struct metrics, field) }

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
};

void
metrics_add(struct metrics *total, const struct metrics *block)
{
	for (size_t d = 0; d < sizeof(metric_defs) / sizeof(metric_defs[0]); d++) {
		size_t off = metric_defs[d].offset;

		*(uint64_t *)((char *)total + off) +=
		    ck_pr_load_64((const uint64_t *)((const char *)block + off));
	}
}

void
metrics_render(const struct metrics *total, uint64_t capacity,
    uint64_t max_connections, struct evbuffer *out)
{
	for (size_t d = 0; d < sizeof(metric_defs) / sizeof(metric_defs[0]); d++) {
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
