/*
 * http.h - strict HTTP/1.1 request-head parser and response helpers.
 *
 * Pure functions: no sockets, no allocation, no globals, so they are unit
 * tested and fuzzed on byte arrays and may run on any thread. A parsed
 * request points into the caller's buffer; it is valid while that buffer is.
 *
 * Strictness (RFC 9112): the request line is METHOD SP TARGET SP HTTP/1.x
 * CRLF; header lines are NAME ":" OWS VALUE OWS CRLF with NAME a token;
 * lines end with CRLF (a bare LF or CR is malformed); no obs-fold; no
 * whitespace before the colon; control characters other than HTAB in values
 * are malformed. The head ends with an empty line.
 */
#ifndef PARLEY_HTTP_H
#define PARLEY_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEAD 8192      /* request line + headers + final CRLF (PROTOCOL.md 7) */
#define HTTP_MAX_HEADERS 64     /* header lines */
#define HTTP_MAX_BODY 65536     /* Content-Length limit (PROTOCOL.md 7) */

/* A string that points into the request buffer; not NUL-terminated. */
struct http_str {
	const char *p;
	size_t len;
};

struct http_header {
	struct http_str name;
	struct http_str value;  /* leading and trailing OWS removed */
};

enum http_method {
	HTTP_OTHER = 0,         /* a valid token we do not serve: 405 or 501 by route */
	HTTP_GET,
	HTTP_HEAD,
	HTTP_POST,
	HTTP_PUT,
	HTTP_DELETE,
	HTTP_OPTIONS,
	HTTP_PATCH,
};

struct http_request {
	enum http_method method;
	struct http_str method_str;
	struct http_str target;   /* as sent: path plus "?query" */
	struct http_str path;     /* target up to '?' */
	struct http_str query;    /* after '?', empty if none */
	int minor;                /* HTTP/1.minor: 0 or 1 */
	size_t head_len;          /* bytes of the head, final CRLF included */

	size_t nheaders;
	struct http_header headers[HTTP_MAX_HEADERS];

	/* derived from the headers while parsing */
	int64_t content_length;   /* -1 when absent */
	unsigned chunked : 1;     /* Transfer-Encoding present (only chunked is legal) */
	unsigned keep_alive : 1;  /* after Connection and the version default */
	unsigned upgrade_websocket : 1; /* Upgrade: websocket (case-insensitive token) */
	unsigned connection_upgrade : 1; /* Connection lists "upgrade" */
};

/*
 * Result of http_parse_head(): HTTP_PARSE_OK with req filled, or
 * HTTP_PARSE_INCOMPLETE (no final empty line yet and still within limits),
 * or an HTTP status code to answer before closing:
 *   400 malformed head, bad or conflicting Content-Length,
 *       Transfer-Encoding together with Content-Length, a missing Host on 1.1
 *   413 Content-Length over HTTP_MAX_BODY
 *   431 head over HTTP_MAX_HEAD, or more than HTTP_MAX_HEADERS headers
 *   501 a Transfer-Encoding other than chunked
 *   505 a version other than HTTP/1.0 or HTTP/1.1
 * The caller answers chunked bodies (req.chunked) with 411.
 */
enum {
	HTTP_PARSE_OK = 0,
	HTTP_PARSE_INCOMPLETE = 1,
};
int http_parse_head(const char *buf, size_t len, struct http_request *req);

/* The header named name (case-insensitive), or NULL. First one wins. */
const struct http_str *http_header_get(const struct http_request *req,
    const char *name);

/* 1 if the comma-separated header value list contains token (case-insensitive). */
int http_list_has_token(struct http_str value, const char *token);

/* Case-insensitive comparison of s with a NUL-terminated literal. */
int http_str_ieq(struct http_str s, const char *lit);
/* Exact comparison of s with a NUL-terminated literal. */
int http_str_eq(struct http_str s, const char *lit);

/*
 * Find query parameter name in query (a=b&c=d), percent-decode its value into
 * out (at most outsz-1 bytes, NUL-terminated). Returns the decoded length,
 * -1 when absent, -2 when malformed or too long.
 */
int http_query_param(struct http_str query, const char *name, char *out,
    size_t outsz);

/* Reason phrase for a status code ("Not Found"); "Unknown" if none. */
const char *http_reason(int status);

#endif
