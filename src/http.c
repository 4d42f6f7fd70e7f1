#include "config.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "http.h"

/*
 * The parser works on what the caller has received so far and keeps no
 * state between calls: it scans from the start each time, which costs at
 * most HTTP_MAX_HEAD bytes per call and keeps the code a plain one-pass
 * reader. Every byte is classified as soon as it is seen, so a head that is
 * already malformed is rejected at once instead of when the buffer fills.
 * A verdict on a prefix is therefore final: more bytes never change it.
 */

#define C_TOKEN	0x01	/* tchar (RFC 9110 5.6.2): methods, field names */
#define C_VCHAR	0x02	/* 0x21-0x7E: the request-target */
#define C_FIELD	0x04	/* field-vchar, obs-text, SP, HTAB: field values */

#define T	(C_TOKEN | C_VCHAR | C_FIELD)
#define V	(C_VCHAR | C_FIELD)
#define F	C_FIELD
static const unsigned char ctype[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, F, 0, 0, 0, 0, 0, 0,	/* 0x00 */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* 0x10 */
	F, T, V, T, T, T, T, T, V, V, T, T, V, T, T, V,	/* 0x20 */
	T, T, T, T, T, T, T, T, T, T, V, V, V, V, V, V,	/* 0x30 */
	V, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T,	/* 0x40 */
	T, T, T, T, T, T, T, T, T, T, T, V, V, V, T, T,	/* 0x50 */
	T, T, T, T, T, T, T, T, T, T, T, T, T, T, T, T,	/* 0x60 */
	T, T, T, T, T, T, T, T, T, T, T, V, T, V, T, 0,	/* 0x70 */
	F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F,	/* 0x80 */
	F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F,	/* 0x90 */
	F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F,	/* 0xa0 */
	F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F,	/* 0xb0 */
	F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F,	/* 0xc0 */
	F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F,	/* 0xd0 */
	F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F,	/* 0xe0 */
	F, F, F, F, F, F, F, F, F, F, F, F, F, F, F, F,	/* 0xf0 */
};
#undef T
#undef V
#undef F

#define OK	HTTP_PARSE_OK
#define NEED	HTTP_PARSE_INCOMPLETE

/* The part of the buffer being read: never more than HTTP_MAX_HEAD bytes. */
struct cursor {
	const unsigned char *base;
	const unsigned char *p;
	const unsigned char *end;
};

/* What the header lines say about framing and the connection. */
struct fields {
	int hosts;
	int lengths;		/* Content-Length lines */
	int64_t length;
	int codings;		/* Transfer-Encoding lines */
	int nchunked;		/* "chunked" elements among them */
	int nother;		/* any other transfer coding */
	unsigned close : 1;
	unsigned keep_alive : 1;
};

static const struct {
	const char *name;
	size_t len;
	enum http_method method;
} methods[] = {
	{ "GET", 3, HTTP_GET },
	{ "HEAD", 4, HTTP_HEAD },
	{ "POST", 4, HTTP_POST },
	{ "PUT", 3, HTTP_PUT },
	{ "DELETE", 6, HTTP_DELETE },
	{ "OPTIONS", 7, HTTP_OPTIONS },
	{ "PATCH", 5, HTTP_PATCH },
};

static int
is_ows(int c)
{
	return c == ' ' || c == '\t';
}

static int
lower(int c)
{
	/* Not tolower(): the locale must not change what a header name is. */
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = lower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static struct http_str
span(const unsigned char *from, const unsigned char *to)
{
	struct http_str s;

	s.p = (const char *)from;
	s.len = (size_t)(to - from);
	return s;
}

/* A line ends at p with CR LF; a lone CR or LF is malformed. */
static int
expect_crlf(const struct cursor *c, const unsigned char *p)
{
	if (p == c->end)
		return NEED;
	if (*p != '\r')
		return 400;
	if (p + 1 == c->end)
		return NEED;
	return p[1] == '\n' ? OK : 400;
}

static enum http_method
method_lookup(struct http_str s)
{
	size_t i;

	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (methods[i].len == s.len &&
		    memcmp(methods[i].name, s.p, s.len) == 0)
			return methods[i].method;
	return HTTP_OTHER;
}

/*
 * RFC 9112 2.2 lets a server skip empty lines before the request line; we
 * reject them instead (an empty method), as no client we serve sends them
 * and a stray CRLF after a body is a framing error worth surfacing.
 */
static int
parse_method(struct cursor *c, struct http_request *req)
{
	const unsigned char *p = c->p;

	while (p < c->end && (ctype[*p] & C_TOKEN))
		p++;
	if (p == c->end)
		return NEED;
	if (p == c->p || *p != ' ')
		return 400;
	req->method_str = span(c->p, p);
	req->method = method_lookup(req->method_str);
	c->p = p + 1;
	return OK;
}

/*
 * Only origin-form, and asterisk-form for OPTIONS: we are never a proxy,
 * so absolute-form and authority-form (CONNECT) are rejected with 400.
 */
static int
parse_target(struct cursor *c, struct http_request *req)
{
	const unsigned char *p = c->p, *q;

	if (p == c->end)
		return NEED;
	if (*p == '*' && req->method == HTTP_OPTIONS)
		p++;
	else if (*p == '/') {
		while (p < c->end && (ctype[*p] & C_VCHAR))
			p++;
	} else
		return 400;
	if (p == c->end)
		return NEED;
	if (*p != ' ')
		return 400;
	req->target = span(c->p, p);
	q = memchr(c->p, '?', (size_t)(p - c->p));
	if (q != NULL) {
		req->path = span(c->p, q);
		req->query = span(q + 1, p);
	} else {
		req->path = req->target;
		req->query = span(p, p);
	}
	c->p = p + 1;
	return OK;
}

/*
 * "HTTP/" DIGIT "." DIGIT CRLF, checked byte by byte so that garbage fails
 * early; a well-formed version we do not speak is 505, not 400.
 */
static int
parse_version(struct cursor *c, struct http_request *req)
{
	static const char form[] = "HTTP/#.#";
	const unsigned char *p = c->p;
	size_t i;
	int r;

	for (i = 0; i < sizeof(form) - 1; i++, p++) {
		if (p == c->end)
			return NEED;
		if (form[i] == '#' ? *p < '0' || *p > '9' :
		    *p != (unsigned char)form[i])
			return 400;
	}
	if ((r = expect_crlf(c, p)) != OK)
		return r;
	if (c->p[5] != '1' || c->p[7] > '1')
		return 505;
	req->minor = c->p[7] - '0';
	c->p = p + 2;
	return OK;
}

static int
parse_request_line(struct cursor *c, struct http_request *req)
{
	int r;

	if ((r = parse_method(c, req)) != OK)
		return r;
	if ((r = parse_target(c, req)) != OK)
		return r;
	return parse_version(c, req);
}

/*
 * NAME ":" OWS VALUE OWS CRLF. The name loop stops at the first non-tchar,
 * which also rejects obs-fold (a leading SP or HTAB), an empty name and
 * whitespace before the colon.
 */
static int
parse_field(struct cursor *c, struct http_header *h)
{
	const unsigned char *p = c->p, *v, *e;
	int r;

	while (p < c->end && (ctype[*p] & C_TOKEN))
		p++;
	if (p == c->end)
		return NEED;
	if (*p != ':' || p == c->p)
		return 400;
	h->name = span(c->p, p);
	for (p++; p < c->end && is_ows(*p); p++)
		;
	v = p;
	while (p < c->end && (ctype[*p] & C_FIELD))
		p++;
	if ((r = expect_crlf(c, p)) != OK)
		return r;
	/* Trim trailing OWS once the line is known, not on every byte. */
	for (e = p; e > v && is_ows(e[-1]); e--)
		;
	h->value = span(v, e);
	c->p = p + 2;
	return OK;
}

static int
parse_fields(struct cursor *c, struct http_request *req)
{
	int r;

	while (c->p < c->end && *c->p != '\r') {
		if (req->nheaders == HTTP_MAX_HEADERS)
			return 431;
		if ((r = parse_field(c, &req->headers[req->nheaders])) != OK)
			return r;
		req->nheaders++;
	}
	if ((r = expect_crlf(c, c->p)) != OK)
		return r;
	req->head_len = (size_t)(c->p + 2 - c->base);
	return OK;
}

/* 1*DIGIT into a non-negative int64_t; a sign, a space or overflow fail. */
static int
parse_length(struct http_str v, int64_t *out)
{
	int64_t n = 0;
	size_t i;
	int d;

	if (v.len == 0)
		return -1;
	for (i = 0; i < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -1;
		d = v.p[i] - '0';
		if (n > (INT64_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	*out = n;
	return 0;
}

/*
 * Next non-empty element of a comma-separated list (RFC 9110 5.6.1) with
 * its OWS trimmed; 0 when none is left. Empty elements are skipped, as
 * the RFC asks of recipients.
 */
static int
list_next(struct http_str *rest, struct http_str *elem)
{
	const char *p, *end, *comma, *e;

	if (rest->len == 0)
		return 0;
	p = rest->p;
	end = p + rest->len;
	while (p < end && (*p == ',' || is_ows(*p)))
		p++;
	if (p == end) {
		rest->len = 0;
		return 0;
	}
	comma = memchr(p, ',', (size_t)(end - p));
	e = comma != NULL ? comma : end;
	while (e > p && is_ows(e[-1]))
		e--;
	elem->p = p;
	elem->len = (size_t)(e - p);
	rest->p = comma != NULL ? comma + 1 : end;
	rest->len = (size_t)(end - rest->p);
	return 1;
}

/* Several Content-Length lines are tolerated only when they agree. */
static int
note_length(struct fields *f, struct http_str v)
{
	int64_t n;

	if (parse_length(v, &n) == -1)
		return 400;
	if (f->lengths > 0 && n != f->length)
		return 400;
	f->length = n;
	f->lengths++;
	return OK;
}

/* Transfer-Encoding lines form one list, in order, across lines. */
static void
note_codings(struct fields *f, struct http_str v)
{
	struct http_str e;

	f->codings++;
	while (list_next(&v, &e)) {
		if (http_str_ieq(e, "chunked"))
			f->nchunked++;
		else
			f->nother++;
	}
}

static void
note_connection(struct fields *f, struct http_request *req, struct http_str v)
{
	struct http_str e;

	while (list_next(&v, &e)) {
		if (http_str_ieq(e, "close"))
			f->close = 1;
		else if (http_str_ieq(e, "keep-alive"))
			f->keep_alive = 1;
		else if (http_str_ieq(e, "upgrade"))
			req->connection_upgrade = 1;
	}
}

/* Collect the framing headers; dispatch on length before comparing names. */
static int
scan_fields(struct http_request *req, struct fields *f)
{
	const struct http_header *h;
	size_t i;

	for (i = 0; i < req->nheaders; i++) {
		h = &req->headers[i];
		switch (h->name.len) {
		case 4:
			if (http_str_ieq(h->name, "host"))
				f->hosts++;
			break;
		case 7:
			if (http_str_ieq(h->name, "upgrade") &&
			    http_list_has_token(h->value, "websocket"))
				req->upgrade_websocket = 1;
			break;
		case 10:
			if (http_str_ieq(h->name, "connection"))
				note_connection(f, req, h->value);
			break;
		case 14:
			if (http_str_ieq(h->name, "content-length") &&
			    note_length(f, h->value) != OK)
				return 400;
			break;
		case 17:
			if (http_str_ieq(h->name, "transfer-encoding"))
				note_codings(f, h->value);
			break;
		}
	}
	return OK;
}

/*
 * Transfer-Encoding must be exactly "chunked" for us to name the problem
 * (411 from the caller). It is a framing error (400) with HTTP/1.0, next to
 * Content-Length (smuggling), when empty, or with chunked applied twice;
 * any other coding, wherever it sits in the list, is one we lack (501).
 */
static int
check_codings(const struct fields *f, struct http_request *req)
{
	if (f->codings == 0)
		return OK;
	if (req->minor == 0 || f->lengths > 0)
		return 400;
	if (f->nchunked + f->nother == 0 || f->nchunked > 1)
		return 400;
	if (f->nother > 0)
		return 501;
	req->chunked = 1;
	return OK;
}

static int
check_fields(struct http_request *req)
{
	struct fields f;
	int r;

	memset(&f, 0, sizeof(f));
	if ((r = scan_fields(req, &f)) != OK)
		return r;
	if (req->minor == 1)
		req->keep_alive = !f.close;
	else
		req->keep_alive = f.keep_alive && !f.close;
	if (f.hosts > 1 || (req->minor == 1 && f.hosts == 0))
		return 400;
	if ((r = check_codings(&f, req)) != OK)
		return r;
	if (f.lengths > 0) {
		req->content_length = f.length;
		if (f.length > HTTP_MAX_BODY)
			return 413;
	}
	return OK;
}

static void
request_init(struct http_request *req)
{
	/* Headers are filled as parsed: clearing 2 KiB per call is waste. */
	memset(req, 0, offsetof(struct http_request, headers));
	req->content_length = -1;
	req->chunked = 0;
	req->keep_alive = 0;
	req->upgrade_websocket = 0;
	req->connection_upgrade = 0;
}

int
http_parse_head(const char *buf, size_t len, struct http_request *req)
{
	struct cursor c;
	int r;

	request_init(req);
	if (len == 0)
		return NEED;
	c.base = c.p = (const unsigned char *)buf;
	c.end = c.p + (len < HTTP_MAX_HEAD ? len : HTTP_MAX_HEAD);
	if ((r = parse_request_line(&c, req)) == OK)
		r = parse_fields(&c, req);
	if (r == NEED)
		return len >= HTTP_MAX_HEAD ? 431 : NEED;
	if (r != OK)
		return r;
	return check_fields(req);
}

const struct http_str *
http_header_get(const struct http_request *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++)
		if (http_str_ieq(req->headers[i].name, name))
			return &req->headers[i].value;
	return NULL;
}

int
http_list_has_token(struct http_str value, const char *token)
{
	struct http_str e;

	while (list_next(&value, &e))
		if (http_str_ieq(e, token))
			return 1;
	return 0;
}

int
http_str_ieq(struct http_str s, const char *lit)
{
	size_t i;
	int a, b;

	/* Stops at the first difference: no strlen() of the literal. */
	for (i = 0; i < s.len; i++) {
		a = lower((unsigned char)s.p[i]);
		b = lower((unsigned char)lit[i]);
		if (b == '\0' || a != b)
			return 0;
	}
	return lit[i] == '\0';
}

int
http_str_eq(struct http_str s, const char *lit)
{
	size_t i;

	for (i = 0; i < s.len; i++)
		if (lit[i] == '\0' || s.p[i] != lit[i])
			return 0;
	return lit[i] == '\0';
}

/*
 * application/x-www-form-urlencoded value: '+' is a space, %XX a byte.
 * A NUL is refused so that out is a C string the caller can trust.
 */
static int
query_decode(struct http_str v, char *out, size_t outsz)
{
	size_t i, n = 0;
	int c, hi, lo;

	for (i = 0; i < v.len; i++) {
		c = (unsigned char)v.p[i];
		if (c == '+')
			c = ' ';
		else if (c == '%') {
			if (v.len - i < 3 ||
			    (hi = hexval((unsigned char)v.p[i + 1])) == -1 ||
			    (lo = hexval((unsigned char)v.p[i + 2])) == -1)
				return -2;
			c = hi << 4 | lo;
			i += 2;
		}
		if (c == '\0' || n + 1 >= outsz || n >= INT_MAX)
			return -2;
		out[n++] = (char)c;
	}
	out[n] = '\0';
	return (int)n;
}

/*
 * Names are matched as sent, not decoded: the names we look up are plain
 * ASCII and a client has no reason to escape them. The first match wins,
 * even when its value is malformed. On any failure out is left empty.
 */
int
http_query_param(struct http_str query, const char *name, char *out,
    size_t outsz)
{
	const char *p, *end, *amp, *eq;
	struct http_str key, val;
	int r = -1;

	if (outsz == 0)
		return -2;
	p = query.p;
	end = query.len > 0 ? p + query.len : p;
	while (p < end) {
		if ((amp = memchr(p, '&', (size_t)(end - p))) == NULL)
			amp = end;
		if ((eq = memchr(p, '=', (size_t)(amp - p))) == NULL)
			eq = amp;
		key.p = p;
		key.len = (size_t)(eq - p);
		if (key.len > 0 && http_str_eq(key, name)) {
			val.p = eq < amp ? eq + 1 : amp;
			val.len = (size_t)(amp - val.p);
			r = query_decode(val, out, outsz);
			break;
		}
		if (amp == end)
			break;
		p = amp + 1;
	}
	if (r < 0)
		out[0] = '\0';
	return r;
}

const char *
http_reason(int status)
{
	switch (status) {
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}
