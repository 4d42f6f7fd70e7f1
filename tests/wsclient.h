/*
 * wsclient.h - a small WebSocket (RFC 6455) and HTTP/1.1 client for the
 * integration tests and, later, the parley-bench load generator.
 *
 * Two layers:
 *   - a pure codec (wsc_encode, wsc_parse) with no I/O, which an
 *     event-driven client (parley-bench on libevent) reuses as it is;
 *   - a blocking client over one TCP socket (struct wsc) with poll()
 *     timeouts, for tests. Every call that waits takes a timeout, so a test
 *     can never hang on a broken server.
 *
 * Owner: a struct wsc belongs to the thread that created it.
 */
#ifndef PARLEY_WSCLIENT_H
#define PARLEY_WSCLIENT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Flags for wsc_encode/wsc_send_frame, used to build invalid frames on purpose. */
#define WSC_UNMASKED 0x01u      /* send without a mask (a protocol violation) */
#define WSC_RSV1 0x10u
#define WSC_RSV2 0x20u
#define WSC_RSV3 0x40u

#define WSC_MAX_HEADER 14

/* A frame parsed from the server: payload points into the caller's buffer. */
struct wsc_frame {
	int opcode;
	int fin;
	int rsv;                /* RSV bits as sent (should be 0) */
	int masked;             /* server frames must not be masked */
	const uint8_t *payload;
	size_t len;
	uint16_t close_code;    /* close frames: code, or 1005 when absent */
};

/*
 * Encode one client frame into out (room for WSC_MAX_HEADER + len bytes).
 * mask_key is used unless WSC_UNMASKED. Returns the encoded size.
 */
size_t wsc_encode(uint8_t *out, int opcode, int fin, const void *payload,
    size_t len, uint32_t mask_key, unsigned flags);

/*
 * Parse one server frame from buf[0..len). Returns its total size (header
 * and payload) with *f filled, 0 if more bytes are needed, -1 if malformed.
 */
ssize_t wsc_parse(const uint8_t *buf, size_t len, struct wsc_frame *f);

/*
 * A header's value from a NUL-terminated HTTP response head (every line
 * ending in CRLF), trimmed, copied into out. 1 if found.
 */
int wsc_head_header(const char *head, const char *name, char *out, size_t outsz);

/* A Sec-WebSocket-Key and the Sec-WebSocket-Accept the server must answer. */
void wsc_make_key(char key[25]);
void wsc_expected_accept(const char *key, char accept[29]);

struct wsc {
	int fd;
	uint8_t *in;            /* received, not yet returned to the caller */
	size_t in_len, in_cap;
	size_t in_off;          /* start of unread data in in */
	int status;             /* HTTP status of the upgrade response */
	char head[8192];        /* the upgrade response head, NUL-terminated */
	uint32_t rng;           /* for mask keys */
};

/*
 * Connect to host:port (numeric IPv4) from source address src (NULL: any)
 * and send an upgrade request for path. extra_headers, if not NULL, is
 * inserted verbatim into the request (each line ending in "\r\n") and
 * replaces the default Sec-WebSocket-Version and Sec-WebSocket-Protocol
 * lines when it contains them. Returns the HTTP status of the response (101
 * on success, after checking Sec-WebSocket-Accept), or -1 on a network
 * error or timeout. On non-101 the response head is in c->head and the
 * connection is left open for the caller to inspect or close.
 * rcvbuf > 0 sets SO_RCVBUF before connecting (slow-consumer tests).
 */
int wsc_connect(struct wsc *c, const char *host, int port, const char *src,
    const char *path, const char *extra_headers, int rcvbuf, int timeout_ms);

/* Look up a header of the upgrade response; copies its value into out. 1 if found. */
int wsc_response_header(const struct wsc *c, const char *name, char *out,
    size_t outsz);

/* Send one frame. Returns 0, or -1 on error. */
int wsc_send_frame(struct wsc *c, int opcode, int fin, const void *payload,
    size_t len, unsigned flags);
/* Send a masked text frame holding the NUL-terminated string s. */
int wsc_send_text(struct wsc *c, const char *s);
/* The same from printf-style arguments (at most WSC_TEXTF_MAX - 1 bytes):
 * 0, or -1 when too long or on error. */
#define WSC_TEXTF_MAX 16384
int wsc_send_textf(struct wsc *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int wsc_vsend_textf(struct wsc *c, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Send raw bytes. Returns 0, or -1 on error. */
int wsc_send_raw(struct wsc *c, const void *buf, size_t len);

/*
 * Wait for the next frame. Returns 1 with *f filled (payload valid until the
 * next wsc_* call on c), 0 on timeout, -1 when the server closed the TCP
 * connection or on error.
 */
int wsc_recv(struct wsc *c, struct wsc_frame *f, int timeout_ms);
/*
 * The same, as a client application sees it: pings are answered with a pong
 * of the same payload and pongs are skipped, so *f is a data or close frame.
 */
int wsc_recv_data(struct wsc *c, struct wsc_frame *f, int timeout_ms);

/*
 * Read frames until a close frame arrives; returns its code (1005 when it
 * had none), or -1 if the TCP connection ended or timeout_ms passed first.
 * Other frames are skipped.
 */
int wsc_recv_close(struct wsc *c, int timeout_ms);

/* 1 if the server closed the TCP connection within timeout_ms, else 0. */
int wsc_wait_eof(struct wsc *c, int timeout_ms);

void wsc_close(struct wsc *c);

/*
 * One plain HTTP exchange on a new connection: sends request (complete,
 * head and body) and reads one response. Returns the status, or -1. The
 * response body (NUL-terminated, truncated to bodysz - 1) goes to body when
 * not NULL. Handles Content-Length bodies.
 */
int wsc_http(const char *host, int port, const char *request, char *body,
    size_t bodysz, int timeout_ms);

/* Bounded waiting, shared by the tests and tools. */
int64_t wsc_now_ms(void);                   /* CLOCK_MONOTONIC milliseconds */
int wsc_remaining_ms(int64_t deadline);     /* ms until deadline, at least 0 */
void wsc_sleep_ms(int ms);
/* Wait until fd is ready for events (POLLIN...): 1 ready, 0 timeout, -1 error. */
int wsc_wait_fd(int fd, short events, int64_t deadline);

#endif
