#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include <ck_pr.h>

#include "conn.h"
#include "frame.h"
#include "http.h"
#include "live.h"
#include "log.h"
#include "reader.h"
#include "router.h"
#include "server.h"
#include "session.h"
#include "settings.h"
#include "worker.h"
#include "xmalloc.h"

#define HTTP_BUF_MAX (HTTP_MAX_HEAD + HTTP_MAX_BODY)
#define HTTP_BUF_MIN 2048
#define HTTP_HEAD_TIMEOUT_MS 10000  /* a request head must arrive within this */
#define HTTP_IDLE_MS 30000      /* keep-alive connections idle this long are closed */
#define CLOSE_WAIT_MS 5000      /* our close frame must be answered within this */
#define LINGER_MS 2000          /* after our last byte, wait this long for the peer's FIN */
#define WRITE_BUDGET (256 * 1024) /* bytes per connection per write event */
#define WRITE_IOVS 64             /* buffer chains one sendmsg() takes */

static void conn_ws_input(struct conn *c, uint8_t *buf, size_t len);

/* The worker's current snapshot: SIGHUP may have changed it since accept. */
static const struct settings *
cfg_of(const struct conn *c)
{
	return &c->w->live->cfg;
}

static void conn_mark_dirty(struct conn *c);
static void conn_http_settle(struct conn *c);
static void conn_http_resume(struct conn *c);
static int conn_http_backpressure(struct conn *c);
static void conn_schedule_ms(struct conn *c, uint32_t deadline_ms);
static void conn_ws_reschedule(struct conn *c, uint32_t next_ms);

/* The one place a connection changes state; closing states get their bound. */
static void
conn_set_state(struct conn *c, enum conn_state state)
{
	log_debug("conn_state fd=%d from=%d to=%d", c->fd, c->state, state);
	c->state = (uint8_t)state;
	if (state == CONN_WS_CLOSING || state == CONN_DRAINING)
		conn_schedule_ms(c, worker_clock_ms(c->w) + CLOSE_WAIT_MS);
	if (state == CONN_DRAINING)
		conn_mark_dirty(c);   /* the flush pass notices "all written" */
	else if (state == CONN_LINGER)
		conn_schedule_ms(c, worker_clock_ms(c->w) + LINGER_MS);
}

/* ---- the timer wheel ------------------------------------------------- */

static void
wheel_unlink(struct conn *c)
{
	struct worker *w = c->w;

	if (c->wheel_prev != NULL)
		c->wheel_prev->wheel_next = c->wheel_next;
	else if (w->wheel[c->wheel_slot] == c)
		w->wheel[c->wheel_slot] = c->wheel_next;
	if (c->wheel_next != NULL)
		c->wheel_next->wheel_prev = c->wheel_prev;
	c->wheel_prev = c->wheel_next = NULL;
}

void
conn_schedule(struct conn *c, uint32_t deadline)
{
	struct worker *w = c->w;
	uint16_t slot;

	/* A slot already processed would not come round for a whole lap. */
	if (deadline <= w->wheel_done)
		deadline = w->wheel_done + 1;
	wheel_unlink(c);
	slot = (uint16_t)(deadline % WHEEL_SLOTS);
	c->deadline = deadline;
	c->wheel_slot = slot;
	c->wheel_next = w->wheel[slot];
	if (c->wheel_next != NULL)
		c->wheel_next->wheel_prev = c;
	w->wheel[slot] = c;
}

/*
 * Millisecond stamps wrap (uint32_t); the wheel counts ticks. Convert
 * through the distance from now, rounded up so a deadline is never early.
 */
static void
conn_schedule_ms(struct conn *c, uint32_t deadline_ms)
{
	uint64_t now = worker_clock_ms64(c->w);
	int32_t ahead = (int32_t)(deadline_ms - (uint32_t)now);

	if (ahead < 0)
		ahead = 0;
	conn_schedule(c, (uint32_t)((now + (uint64_t)ahead + WHEEL_TICK_MS - 1) /
	    WHEEL_TICK_MS));
}

/* ---- life and death ------------------------------------------------------ */

static void read_cb(evutil_socket_t fd, short what, void *arg);
static void write_cb(evutil_socket_t fd, short what, void *arg);

struct conn *
conn_new(struct worker *w, int fd, int refused)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	int one = 1;

	/* Chat frames are small and latency-bound; we coalesce ourselves. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->w = w;
	c->fd = fd;
	c->refused = (uint8_t)refused;
	c->last_rx_ms = worker_clock_ms(w);
	c->out = evbuffer_new();
	event_assign(&c->rev, w->base, fd, EV_READ | EV_PERSIST, read_cb, c);
	event_assign(&c->wev, w->base, fd, EV_WRITE | EV_PERSIST, write_cb, c);
	event_add(&c->rev, NULL);
	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	METRIC_INC(&w->metrics, connections);
	if (refused) {
		log_debug("conn_refused fd=%d reason=max_connections", fd);
		conn_http_error(c, NULL, 503, "unavailable",
		    "server at its connection limit; retry later",
		    "Retry-After: 1\r\n", 1);
	} else {
		conn_schedule_ms(c, c->last_rx_ms + HTTP_HEAD_TIMEOUT_MS);
	}
	return c;
}

void
conn_destroy(struct conn *c, int abort)
{
	struct worker *w = c->w;

	if (abort) {
		/* RST: drop what the kernel still holds for a peer that went away. */
		struct linger lg = { 1, 0 };

		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	event_del(&c->rev);
	event_del(&c->wev);
	close(c->fd);
	wheel_unlink(c);
	if (c->in_flush)
		conn_flush_unlink(c);
	if (c->in_close)
		conn_close_unlink(c);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	METRIC_SUB(&w->metrics, connections, 1);
	if (c->http_query != NULL)
		db_reader_cancel(w->reader, c->http_query);
	free(c->http_ctx);
	if (c->sess != NULL)
		session_free(c->sess);
	if (c->dec != NULL) {
		METRIC_SUB(&w->metrics, websockets, 1);
		ws_decoder_free(c->dec);
		free(c->dec);
	}
	if (!c->refused)
		ck_pr_dec_int(&w->srv->nconns);
	evbuffer_free(c->out);
	free(c->http_in);
	free(c);
	worker_maybe_exit(w);
}

/* ---- output ---------------------------------------------------------------- */

static void
conn_mark_dirty(struct conn *c)
{
	struct worker *w = c->w;

	if (c->in_flush)
		return;
	worker_want_flush(w);
	c->in_flush = 1;
	c->flush_prev = NULL;
	c->flush_next = w->flush_head;
	if (w->flush_head != NULL)
		w->flush_head->flush_prev = c;
	w->flush_head = c;
}

void
conn_flush_unlink(struct conn *c)
{
	struct worker *w = c->w;

	if (c->flush_prev != NULL)
		c->flush_prev->flush_next = c->flush_next;
	else
		w->flush_head = c->flush_next;
	if (c->flush_next != NULL)
		c->flush_next->flush_prev = c->flush_prev;
	c->flush_prev = c->flush_next = NULL;
	c->in_flush = 0;
}

/* The close list is short (slow consumers this iteration): a walk is fine. */
void
conn_close_unlink(struct conn *c)
{
	struct conn **pp = &c->w->close_head;

	while (*pp != NULL && *pp != c)
		pp = &(*pp)->close_next;
	if (*pp == c)
		*pp = c->close_next;
	c->close_next = NULL;
	c->in_close = 0;
}

void
conn_close_async(struct conn *c, uint16_t code)
{
	struct worker *w = c->w;

	if (c->in_close)
		return;
	worker_want_flush(w);
	c->close_code = code;
	c->in_close = 1;
	c->close_next = w->close_head;
	w->close_head = c;
}

/* Append without the limit check: close frames and HTTP heads use it. */
static void
conn_append(struct conn *c, const void *data, size_t len)
{
	evbuffer_add(c->out, data, len);
	conn_mark_dirty(c);
}

/*
 * May len more bytes be queued? Over --out-limit a WebSocket is a slow
 * consumer: it gets a queued close 1013 and nothing more.
 */
static int
conn_may_send(struct conn *c, size_t len)
{
	if (c->state > CONN_WS || c->in_close)
		return 0;   /* a closing connection gets no further frames */
	if (evbuffer_get_length(c->out) + len > cfg_of(c)->out_limit) {
		/* Never close from inside a send: the caller may be iterating. */
		if (c->state == CONN_WS)
			METRIC_INC(&c->w->metrics, slow_consumer_closes);
		conn_close_async(c, c->state == CONN_WS ? WS_CLOSE_TRY_AGAIN : 0);
		return 0;
	}
	return 1;
}

int
conn_send(struct conn *c, const void *data, size_t len)
{
	if (!conn_may_send(c, len))
		return -1;
	conn_append(c, data, len);
	return 0;
}

void
conn_pause_input(struct conn *c, int pause)
{
	if (pause && !c->read_paused) {
		event_del(&c->rev);
		c->read_paused = 1;
	} else if (!pause && c->read_paused) {
		c->read_paused = 0;
		event_add(&c->rev, NULL);
	}
}

int
conn_send_shared(struct conn *c, struct frame *f)
{
	if (!conn_may_send(c, f->len))
		return -1;
	frame_ref(f);
	if (evbuffer_add_reference(c->out, f->data, f->len, frame_buffer_release, f) != 0) {
		frame_unref(f);
		return -1;
	}
	conn_mark_dirty(c);
	METRIC_INC(&c->w->metrics, frames_out);
	METRIC_INC(&c->w->metrics, frames_out_type[f->type]);
	return 0;
}

static int
conn_send_frame(struct conn *c, enum ws_opcode op, const void *payload, size_t len)
{
	uint8_t frame[WS_MAX_HEADER + 256];
	size_t hlen = ws_frame_header(frame, op, len);

	if (!conn_may_send(c, hlen + len))
		return -1;
	/* Small frames go in as one piece: one chain, one iovec. */
	if (len <= sizeof(frame) - hlen) {
		if (len > 0)
			memcpy(frame + hlen, payload, len);
		conn_append(c, frame, hlen + len);
	} else {
		conn_append(c, frame, hlen);
		conn_append(c, payload, len);
	}
	METRIC_INC(&c->w->metrics, frames_out);
	return 0;
}

int
conn_send_text(struct conn *c, const char *payload, size_t len)
{
	return conn_send_frame(c, WS_OP_TEXT, payload, len);
}

/* Send our close frame (once) and wait for the peer's, 5 s at most. */
static void
conn_ws_start_close(struct conn *c, uint16_t code)
{
	uint8_t frame[4];

	if (c->state != CONN_WS)
		return;
	conn_append(c, frame, ws_close_frame(frame, code));
	METRIC_INC(&c->w->metrics, frames_out);
	conn_set_state(c, CONN_WS_CLOSING);
}

void
conn_run_async_close(struct conn *c)
{
	if (c->close_code == 0) {
		conn_destroy(c, 1);
		return;
	}
	log_debug("conn_close fd=%d code=%u", c->fd, c->close_code);
	conn_ws_start_close(c, c->close_code);
}

/* All output written: finish a close that was waiting for it. */
static void
conn_drained(struct conn *c)
{
	if (c->state != CONN_DRAINING)
		return;
	/*
	 * Half-close and read until the peer's FIN: closing with unread input
	 * would send an RST that can destroy our last response in flight.
	 */
	shutdown(c->fd, SHUT_WR);
	conn_set_state(c, CONN_LINGER);
}

/*
 * Write up to WRITE_BUDGET bytes with one sendmsg() straight from the
 * buffer's chains. Not evbuffer_write_atmost(): its writev() goes through
 * the VFS (fdget_pos, vfs_writev), about 7% of the server's CPU in a
 * fan-out profile where nearly every delivery is its own system call.
 */
static ssize_t
conn_send_out(struct conn *c)
{
	struct evbuffer_iovec vec[WRITE_IOVS];
	struct iovec iov[WRITE_IOVS];
	struct msghdr msg;
	size_t len = 0;
	ssize_t n;
	int i, nvec;

	nvec = evbuffer_peek(c->out, WRITE_BUDGET, NULL, vec, WRITE_IOVS);
	if (nvec > WRITE_IOVS)
		nvec = WRITE_IOVS;
	for (i = 0; i < nvec && len < WRITE_BUDGET; i++) {
		iov[i].iov_base = vec[i].iov_base;
		iov[i].iov_len = vec[i].iov_len;
		if (iov[i].iov_len > WRITE_BUDGET - len)
			iov[i].iov_len = WRITE_BUDGET - len;
		len += iov[i].iov_len;
	}
	if (i == 1) {
		/* The fan-out case, one frame: send() skips copying a msghdr
		 * and importing an iovec. */
		n = send(c->fd, iov[0].iov_base, iov[0].iov_len,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
	} else {
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = (size_t)i;
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	if (n > 0)
		evbuffer_drain(c->out, (size_t)n);
	return n;
}

void
conn_flush(struct conn *c)
{
	size_t left;
	ssize_t n;

	if (evbuffer_get_length(c->out) > 0) {
		n = conn_send_out(c);
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			log_debug("conn_write_failed fd=%d error=\"%s\"", c->fd, strerror(errno));
			conn_destroy(c, 1);
			return;
		}
		if (n > 0) {
			METRIC_ADD(&c->w->metrics, bytes_out, n);
			/* A paused HTTP client is busy reading our answers, not idle. */
			if (c->read_paused && c->state == CONN_HTTP)
				c->req_start_ms = c->last_rx_ms = worker_clock_ms(c->w);
		}
	}
	if (c->read_paused && c->state == CONN_HTTP)
		conn_http_resume(c);
	left = evbuffer_get_length(c->out);
	if (left > 0 && !c->want_write) {
		event_add(&c->wev, NULL);
		c->want_write = 1;
	} else if (left == 0 && c->want_write) {
		event_del(&c->wev);
		c->want_write = 0;
	}
	if (left == 0)
		conn_drained(c);
}

static void
write_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_flush(arg);
}

/* ---- HTTP ---------------------------------------------------------------- */

void
conn_http_respond(struct conn *c, const struct http_request *req, int status,
    const char *content_type, const char *extra_headers, const void *body,
    size_t body_len, int close)
{
	int keep_alive = req != NULL && req->keep_alive && !close &&
	    !server_stopping(c->w->srv);
	char head[1024];
	int n;

	n = snprintf(head, sizeof(head),
	    "HTTP/1.1 %d %s\r\nServer: parleyd/" PACKAGE_VERSION "\r\n"
	    "Content-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n"
	    "%s%s\r\n", status, http_reason(status), content_type, body_len,
	    extra_headers != NULL ? extra_headers : "",
	    keep_alive ? (req->minor == 0 ? "Connection: keep-alive\r\n" : "") :
	    "Connection: close\r\n");
	conn_append(c, head, (size_t)n);
	if (body_len > 0 && (req == NULL || req->method != HTTP_HEAD))
		conn_append(c, body, body_len);
	if (!keep_alive)
		conn_set_state(c, CONN_DRAINING);
}

void
conn_http_error(struct conn *c, const struct http_request *req, int status,
    const char *code, const char *message, const char *extra_headers, int close)
{
	json_t *o = json_pack("{s:s, s:s}", "error", code, "message", message);
	char *body = json_dumps(o, JSON_COMPACT);

	/* Every HTTP error response goes through here. */
	metrics_http_error(&c->w->metrics, code);
	conn_http_respond(c, req, status, "application/json", extra_headers,
	    body, strlen(body), close);
	free(body);
	json_decref(o);
}

static const char *
http_error_code(int status)
{
	switch (status) {
	case 400: return "bad_request";
	case 408: return "request_timeout";
	case 411: return "length_required";
	case 413: return "body_too_large";
	case 431: return "headers_too_large";
	case 501: return "not_implemented";
	case 505: return "http_version_not_supported";
	default: return "error";
	}
}

static void
conn_http_consume(struct conn *c, size_t n)
{
	memmove(c->http_in, c->http_in + n, c->http_len - n);
	c->http_len -= (uint32_t)n;
	c->http_scanned = 0;
	c->http_need = 0;
	c->req_start_ms = worker_clock_ms(c->w);
}

/*
 * The parser is stateless and reads from the start each time. Re-parse
 * only when it can say something new: on a request's first bytes (early
 * errors for garbage), once the head's final CRLF CRLF has arrived, or at
 * the size limit; and not at all while a parsed head waits for its body.
 * A client sending a byte at a time then costs O(bytes), not O(bytes^2).
 */
static int
conn_http_worth_parsing(struct conn *c, size_t first_read)
{
	size_t from = c->http_scanned > 3 ? c->http_scanned - 3 : 0;

	if (c->http_need > 0)
		return c->http_len >= c->http_need;
	if (c->http_len == first_read || c->http_len >= HTTP_MAX_HEAD)
		return 1;
	if (memmem(c->http_in + from, c->http_len - from, "\r\n\r\n", 4) != NULL)
		return 1;
	c->http_scanned = c->http_len;
	return 0;
}

/* Parse and answer every complete request in http_in. */
static void
conn_http_process(struct conn *c, size_t first_read)
{
	struct http_request req;

	while (c->state == CONN_HTTP && c->http_len > 0 && c->http_query == NULL) {
		int r;
		size_t body_len, total;

		if (conn_http_backpressure(c) || !conn_http_worth_parsing(c, first_read))
			return;
		first_read = 0;
		if ((r = http_parse_head(c->http_in, c->http_len, &req)) == HTTP_PARSE_INCOMPLETE) {
			c->http_scanned = c->http_len;
			return;
		}
		if (r != HTTP_PARSE_OK) {
			conn_http_error(c, NULL, r, http_error_code(r),
			    http_reason(r), NULL, 1);
			return;
		}
		if (req.chunked) {
			conn_http_error(c, &req, 411, "length_required",
			    "chunked request bodies are not accepted: send Content-Length",
			    NULL, 1);
			return;
		}
		body_len = req.content_length > 0 ? (size_t)req.content_length : 0;
		total = req.head_len + body_len;
		if (c->http_len < total) {
			c->http_need = (uint32_t)total;   /* the body is still coming */
			return;
		}
		METRIC_INC(&c->w->metrics, http_requests);
		router_dispatch(c, &req, c->http_in + req.head_len, body_len);
		conn_http_consume(c, total);
	}
}

/* After the 101: bytes that followed the request are WebSocket frames. */
static void
conn_http_handoff(struct conn *c)
{
	struct worker *w = c->w;
	size_t rest = c->http_len;

	memcpy(w->rbuf, c->http_in, rest);
	free(c->http_in);
	c->http_in = NULL;
	c->http_len = c->http_cap = 0;
	if (rest > 0)
		conn_ws_input(c, w->rbuf, rest);
}

static void
conn_http_read(struct conn *c)
{
	ssize_t n;

	if (c->http_cap - c->http_len < 1024 && c->http_cap < HTTP_BUF_MAX) {
		uint32_t cap = c->http_cap ? c->http_cap * 2 : HTTP_BUF_MIN;

		c->http_cap = cap < HTTP_BUF_MAX ? cap : HTTP_BUF_MAX;
		c->http_in = xrealloc(c->http_in, c->http_cap);
	}
	if (c->http_cap == c->http_len) {
		conn_destroy(c, 1);   /* cannot happen: the parser bounds a request */
		return;
	}
	n = read(c->fd, c->http_in + c->http_len, c->http_cap - c->http_len);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		conn_destroy(c, n < 0);
		return;
	}
	METRIC_ADD(&c->w->metrics, bytes_in, n);
	c->last_rx_ms = worker_clock_ms(c->w);
	if (c->http_len == 0)
		c->req_start_ms = c->last_rx_ms;
	c->http_len += (uint32_t)n;
	conn_http_process(c, c->http_len == (uint32_t)n ? (size_t)n : 0);
	conn_http_settle(c);
}

/* After processing: hand over to WebSocket, or drop a buffer not needed. */
static void
conn_http_settle(struct conn *c)
{
	if (c->state == CONN_WS) {
		conn_http_handoff(c);
	} else if (c->http_len == 0 || c->state != CONN_HTTP) {
		/* Idle keep-alive and closing connections hold no buffer. */
		c->http_len = 0;
		free(c->http_in);
		c->http_in = NULL;
		c->http_cap = 0;
	}
}

/*
 * A client that pipelines requests without reading the answers would grow
 * our output without bound: past --out-limit stop reading its requests
 * until it has read half of what is pending.
 */
static int
conn_http_backpressure(struct conn *c)
{
	if (evbuffer_get_length(c->out) < cfg_of(c)->out_limit)
		return 0;
	if (!c->read_paused) {
		log_debug("http_pause fd=%d pending=%zu", c->fd, evbuffer_get_length(c->out));
		event_del(&c->rev);
		c->read_paused = 1;
	}
	return 1;
}

void
conn_http_wait(struct conn *c, struct db_query *q, void *ctx)
{
	c->http_query = q;
	c->http_ctx = ctx;
}

void
conn_http_resume_after_wait(struct conn *c)
{
	c->http_query = NULL;
	free(c->http_ctx);
	c->http_ctx = NULL;
	conn_http_process(c, 0);
	conn_http_settle(c);
}

static void
conn_http_resume(struct conn *c)
{
	if (evbuffer_get_length(c->out) > cfg_of(c)->out_limit / 2)
		return;
	log_debug("http_resume fd=%d pending=%zu buffered=%u", c->fd,
	    evbuffer_get_length(c->out), c->http_len);
	c->read_paused = 0;
	event_add(&c->rev, NULL);
	conn_http_process(c, 0);
	conn_http_settle(c);
}

void
conn_upgrade(struct conn *c, int subprotocol)
{
	struct worker *w = c->w;

	c->dec = xmalloc(sizeof(*c->dec));
	ws_decoder_init(c->dec, cfg_of(c)->max_frame);
	c->heartbeat_s = (uint16_t)cfg_of(c)->heartbeat;
	c->subprotocol = (uint8_t)subprotocol;
	conn_set_state(c, CONN_WS);
	METRIC_INC(&w->metrics, websockets);
	c->sess = session_new(c);
	conn_ws_reschedule(c, c->last_rx_ms + 1000 * (uint32_t)c->heartbeat_s);
}

/* ---- WebSocket ------------------------------------------------------------ */

/* Queue our last close frame (an echo or a failure) and end after it. */
static void
conn_ws_final_close(struct conn *c, uint16_t code)
{
	uint8_t frame[4];

	if (code == WS_CLOSE_NO_STATUS) {
		/* The peer's close had no code: echo an empty one. */
		frame[0] = 0x80 | WS_OP_CLOSE;
		frame[1] = 0;
		conn_append(c, frame, 2);
	} else {
		conn_append(c, frame, ws_close_frame(frame, code));
	}
	METRIC_INC(&c->w->metrics, frames_out);
	conn_set_state(c, CONN_DRAINING);
}

/* Feed received bytes to the decoder and act on every event. */
static void
conn_ws_input(struct conn *c, uint8_t *buf, size_t len)
{
	struct ws_message m;
	size_t off = 0, used;

	while (off < len) {
		enum ws_event ev = ws_decode(c->dec, buf + off, len - off, &used, &m);

		off += used;
		if (ev == WS_EV_NEED_MORE)
			return;
		METRIC_INC(&c->w->metrics, frames_in);
		switch (ev) {
		case WS_EV_TEXT:
			if (c->state == CONN_WS && !c->in_close)
				session_on_text(c->sess, m.data, m.len);
			break;
		case WS_EV_PING:
			if (c->state == CONN_WS)
				conn_send_frame(c, WS_OP_PONG, m.data, m.len);
			break;
		case WS_EV_PONG:
			break;
		case WS_EV_CLOSE:
			if (c->state == CONN_WS)
				conn_ws_final_close(c, m.close_code);
			else if (c->state == CONN_WS_CLOSING)
				conn_destroy(c, 0);   /* it answered ours: we close TCP first */
			return;
		case WS_EV_ERROR:
			log_debug("ws_protocol_error fd=%d code=%u reason=\"%s\"", c->fd,
			    m.close_code, m.error ? m.error : "");
			METRIC_INC(&c->w->metrics, protocol_closes);
			if (c->state == CONN_WS)
				conn_ws_final_close(c, m.close_code);
			else
				conn_destroy(c, 1);
			return;
		default:
			break;
		}
	}
}

/* ---- events from the loop ------------------------------------------------------ */

/* Read into the worker's scratch buffer; 0 = nothing to do, -1 = destroyed. */
static ssize_t
conn_read_scratch(struct conn *c)
{
	ssize_t n = read(c->fd, c->w->rbuf, c->w->rbuf_size);

	if (n > 0) {
		METRIC_ADD(&c->w->metrics, bytes_in, n);
		c->last_rx_ms = worker_clock_ms(c->w);
		c->pinged = 0;
		return n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	/* EOF or reset: nothing more can be said to this peer. */
	conn_destroy(c, n < 0 || evbuffer_get_length(c->out) > 0);
	return -1;
}

static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	if (c->state == CONN_HTTP) {
		conn_http_read(c);
		return;
	}
	if ((n = conn_read_scratch(c)) <= 0)
		return;
	/* DRAINING and LINGER discard input: nothing more will be answered. */
	if (c->state == CONN_WS || c->state == CONN_WS_CLOSING)
		conn_ws_input(c, c->w->rbuf, (size_t)n);
}

/* The next WebSocket timer: heartbeat at next_ms, or the hello deadline. */
static void
conn_ws_reschedule(struct conn *c, uint32_t next_ms)
{
	if (c->sess != NULL &&
	    session_hello_timer(c->sess, worker_clock_ms(c->w), &next_ms))
		return;   /* refused: its close has its own bound */
	conn_schedule_ms(c, next_ms);
}

/* The heartbeat: ping a silent peer after heartbeat s, close it after 2x. */
static void
conn_ws_heartbeat(struct conn *c)
{
	struct worker *w = c->w;
	uint32_t hb_ms = 1000 * (uint32_t)c->heartbeat_s;
	uint32_t idle = worker_clock_ms(w) - c->last_rx_ms;

	if (idle >= 2 * hb_ms) {
		METRIC_INC(&w->metrics, idle_closes);
		log_debug("conn_idle_close fd=%d idle_ms=%u", c->fd, idle);
		conn_ws_start_close(c, WS_CLOSE_GOING_AWAY);
		return;
	}
	if (idle >= hb_ms) {
		if (!c->pinged) {
			c->pinged = 1;
			conn_send_frame(c, WS_OP_PING, NULL, 0);
		}
		conn_ws_reschedule(c, c->last_rx_ms + 2 * hb_ms);
		return;
	}
	conn_ws_reschedule(c, c->last_rx_ms + hb_ms);
}

static void
conn_http_timeout(struct conn *c)
{
	uint32_t now = worker_clock_ms(c->w);

	if (c->read_paused) {
		/* Waiting for it to read our answers: only the idle bound applies. */
		if (now - c->last_rx_ms >= HTTP_IDLE_MS)
			conn_destroy(c, 1);
		else
			conn_schedule_ms(c, c->last_rx_ms + HTTP_IDLE_MS);
		return;
	}
	if (c->http_len > 0 && now - c->req_start_ms >= HTTP_HEAD_TIMEOUT_MS) {
		conn_http_error(c, NULL, 408, "request_timeout",
		    "the request did not arrive in time", NULL, 1);
		return;
	}
	if (c->http_len == 0 && now - c->last_rx_ms >= HTTP_IDLE_MS &&
	    evbuffer_get_length(c->out) == 0) {
		conn_destroy(c, 0);
		return;
	}
	conn_schedule_ms(c, c->http_len > 0 ? c->req_start_ms + HTTP_HEAD_TIMEOUT_MS :
	    c->last_rx_ms + HTTP_IDLE_MS);
}

void
conn_timeout(struct conn *c)
{
	switch (c->state) {
	case CONN_HTTP:
		conn_http_timeout(c);
		break;
	case CONN_WS:
		conn_ws_heartbeat(c);
		break;
	default:
		/* A closing state outlived its bound: drop the connection. */
		log_debug("conn_close_timeout fd=%d state=%d", c->fd, c->state);
		conn_destroy(c, 1);
		break;
	}
}

void
conn_shutdown(struct conn *c)
{
	switch (c->state) {
	case CONN_HTTP:
		if (c->http_len == 0 && evbuffer_get_length(c->out) == 0)
			conn_destroy(c, 0);
		else
			conn_set_state(c, CONN_DRAINING);
		break;
	case CONN_WS:
		/* Finish what was accepted first: the session closes with 1001. */
		if (c->sess != NULL)
			session_shutdown(c->sess);
		else
			conn_ws_start_close(c, WS_CLOSE_GOING_AWAY);
		break;
	default:
		break;   /* already closing, within its own bound */
	}
}
