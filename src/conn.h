/*
 * conn.h - one client TCP connection: HTTP/1.1 until it upgrades, then a
 * WebSocket session; its buffers, its timers, and every state change.
 *
 * Owner: the worker that accepted it; only that thread calls anything here.
 * Memory matters (tens of thousands of idle connections per worker): the
 * struct holds two events and small fields; the HTTP input buffer, the
 * output evbuffer's chains and a partial WebSocket message exist only while
 * in use. Reads go through the worker's shared scratch buffer.
 *
 * Output is never written from inside the path that produced it: senders
 * append to c->out and put the connection on the worker's flush list; the
 * worker writes every listed connection once at the end of the loop
 * iteration, so frames produced together leave in one writev(). A
 * connection is never freed from inside a send either: closes requested
 * while sending are queued and carried out in the flush pass.
 */
#ifndef PARLEY_CONN_H
#define PARLEY_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event_struct.h>

#include "ws.h"

struct worker;
struct evbuffer;
struct frame;
struct session;
struct http_request;
struct db_query;

enum conn_state {
	CONN_HTTP = 0,     /* reading requests (keep-alive, pipelining) */
	CONN_WS,           /* WebSocket open */
	CONN_WS_CLOSING,   /* we sent a close first; waiting for the peer's (5 s at most) */
	CONN_DRAINING,     /* last output queued (final response, close frame): input
	                      is ignored; once written, LINGER (5 s at most) */
	CONN_LINGER,       /* output written, write side shut: discard input until
	                      the peer's FIN (2 s at most) */
};

struct conn {
	struct worker *w;
	int fd;
	uint8_t state;            /* enum conn_state: changed only by conn_set_state */
	uint8_t in_flush;         /* on w->flush_head list */
	uint8_t in_close;         /* on w->close_head list */
	uint8_t want_write;       /* wev is armed */
	uint8_t read_paused;      /* rev removed: HTTP until the client reads our answers,
	                             WebSocket while its session's queue is full */
	uint8_t refused;          /* accepted over --max-connections: 503 then close */
	uint8_t subprotocol;      /* parley.v1 selected */
	uint16_t close_code;      /* for the async close */
	uint8_t pinged;           /* a heartbeat ping went out since the last byte in */
	uint16_t wheel_slot;
	uint16_t heartbeat_s;     /* WebSocket: --heartbeat at the upgrade, told in
	                             welcome: a SIGHUP changes new connections only */
	uint32_t deadline;        /* wheel tick at which the wheel looks at it next */
	uint32_t last_rx_ms;      /* worker clock (ms) of the last byte received */
	uint32_t req_start_ms;    /* HTTP: when the current request's first byte came */

	struct event rev, wev;

	struct evbuffer *out;     /* pending output; bounded by --out-limit */

	char *http_in;            /* HTTP: bytes of the current request(s) */
	uint32_t http_len, http_cap;
	uint32_t http_scanned;    /* bytes searched for the end of the head */
	uint32_t http_need;       /* head parsed: bytes needed with its body */
	struct db_query *http_query; /* an answer being read from the database:
	                                later requests wait their turn */
	void *http_ctx;           /* the route's state for it (free()d with c) */

	struct ws_decoder *dec;   /* WebSocket: allocated at the upgrade */
	struct session *sess;     /* WebSocket: the chat session, from the upgrade */

	struct conn *prev, *next;           /* w->conns */
	struct conn *flush_prev, *flush_next; /* w->flush_head: O(1) unlink on destroy */
	struct conn *close_next;            /* w->close_head */
	struct conn *wheel_prev, *wheel_next;
};

/* Take ownership of an accepted, non-blocking socket. */
struct conn *conn_new(struct worker *w, int fd, int refused);

/* Close at once and free (RST when abort). Safe only outside send paths. */
void conn_destroy(struct conn *c, int abort);

/*
 * Append bytes to the connection's output and schedule a flush. Over
 * --out-limit, a WebSocket gets a queued close 1013 instead and nothing more.
 * Returns 0, or -1 if the bytes were not queued.
 */
int conn_send(struct conn *c, const void *data, size_t len);

/*
 * Queue a shared, ready-made frame by reference (no copy): the connection's
 * buffer holds one reference until the bytes are written. Same limit rule
 * as conn_send. Returns 0, or -1 if not queued.
 */
int conn_send_shared(struct conn *c, struct frame *f);

/*
 * WebSocket: stop (pause 1) or resume (0) reading the socket, for a
 * session whose requests are queued up; the kernel buffer and then TCP
 * flow control hold the client back meanwhile.
 */
void conn_pause_input(struct conn *c, int pause);

/* Send one text frame holding payload (a JSON object). */
int conn_send_text(struct conn *c, const char *payload, size_t len);

/* Queue a WebSocket close with code (async: done in the flush pass). */
void conn_close_async(struct conn *c, uint16_t code);

/*
 * HTTP response. extra_headers: NULL or complete "Name: value\r\n" lines.
 * close: send Connection: close and end the connection once written.
 * A HEAD request gets the head without the body.
 */
void conn_http_respond(struct conn *c, const struct http_request *req,
    int status, const char *content_type, const char *extra_headers,
    const void *body, size_t body_len, int close);

/* HTTP error with a JSON body {"error": code, "message": message}. */
void conn_http_error(struct conn *c, const struct http_request *req,
    int status, const char *code, const char *message,
    const char *extra_headers, int close);

/*
 * The answer to the current request comes from the database (q, on this
 * worker's reader): pipelined requests behind it wait. ctx is the route's
 * and is freed with the connection if it goes first (q is cancelled).
 */
void conn_http_wait(struct conn *c, struct db_query *q, void *ctx);
/* The answer was queued (conn_http_respond): go on with what waited. */
void conn_http_resume_after_wait(struct conn *c);

/* Switch an HTTP connection to WebSocket after the 101 was queued. */
void conn_upgrade(struct conn *c, int subprotocol);

/* Worker callbacks (worker.c drives these). */
void conn_flush_unlink(struct conn *c);       /* take c off the flush list */
void conn_close_unlink(struct conn *c);       /* take c off the close list */
void conn_flush(struct conn *c);              /* write what is pending */
void conn_run_async_close(struct conn *c);    /* carry out conn_close_async */
void conn_timeout(struct conn *c);            /* the wheel reached c->deadline */
void conn_shutdown(struct conn *c);           /* server stopping: 1001 or close */

/* Put c in the wheel slot for deadline (worker wheel ticks). */
void conn_schedule(struct conn *c, uint32_t deadline);

#endif
