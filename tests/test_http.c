#include "config.h"

#include <stdio.h>
#include <string.h>

#include <CUnit/Basic.h>

#include "unit.h"

#include "http.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static int
parse(const char *s, struct http_request *req)
{
	return http_parse_head(s, strlen(s), req);
}

static int
str_is(struct http_str s, const char *lit)
{
	return s.len == strlen(lit) && memcmp(s.p, lit, s.len) == 0;
}

static struct http_str
str_of(const char *s)
{
	struct http_str r;

	r.p = s;
	r.len = strlen(s);
	return r;
}

/* Expect status for every string in cases; name the ones that differ. */
static void
expect_all(const char *const *cases, size_t n, int status)
{
	struct http_request req;
	size_t i;
	int r;

	for (i = 0; i < n; i++) {
		r = parse(cases[i], &req);
		if (r != status)
			fprintf(stderr, "\n  case %zu: got %d, want %d: %s\n",
			    i, r, status, cases[i]);
		CU_ASSERT_EQUAL(r, status);
	}
}

/*
 * A request of exactly total bytes: a Host line, then a filler header whose
 * value pads the head, then the final CRLF CRLF unless unterminated.
 */
static void
build_head(char *buf, size_t total, int terminated)
{
	static const char start[] = "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ";
	size_t n = sizeof(start) - 1, tail = terminated ? 4 : 0;

	memcpy(buf, start, n);
	memset(buf + n, 'a', total - n - tail);
	if (terminated)
		memcpy(buf + total - 4, "\r\n\r\n", 4);
}

static void
test_minimal_get(void)
{
	struct http_request req;
	const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

	CU_ASSERT_EQUAL(parse(s, &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.method, HTTP_GET);
	CU_ASSERT(str_is(req.path, "/"));
	CU_ASSERT_EQUAL(req.query.len, 0);
	CU_ASSERT_EQUAL(req.minor, 1);
	CU_ASSERT_EQUAL(req.head_len, strlen(s));
	CU_ASSERT_EQUAL(req.nheaders, 1);
	CU_ASSERT_EQUAL(req.content_length, -1);
	CU_ASSERT_EQUAL(req.chunked, 0);
	CU_ASSERT_EQUAL(req.keep_alive, 1);
	CU_ASSERT_EQUAL(req.upgrade_websocket, 0);
	CU_ASSERT_EQUAL(req.connection_upgrade, 0);
}

static void
test_all_fields(void)
{
	struct http_request req;
	const char *s =
	    "POST /rooms/lobby?token=abc&x=1 HTTP/1.1\r\n"
	    "Host:   example.org  \r\n"
	    "Content-Length:\t42\t\r\n"
	    "X-Empty:\r\n"
	    "X-Inner: a  b \r\n"
	    "\r\n";

	CU_ASSERT_EQUAL_FATAL(parse(s, &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.method, HTTP_POST);
	CU_ASSERT(str_is(req.method_str, "POST"));
	CU_ASSERT(str_is(req.target, "/rooms/lobby?token=abc&x=1"));
	CU_ASSERT(str_is(req.path, "/rooms/lobby"));
	CU_ASSERT(str_is(req.query, "token=abc&x=1"));
	CU_ASSERT_EQUAL(req.minor, 1);
	CU_ASSERT_EQUAL(req.head_len, strlen(s));
	CU_ASSERT_EQUAL_FATAL(req.nheaders, 4);
	CU_ASSERT(str_is(req.headers[0].name, "Host"));
	CU_ASSERT(str_is(req.headers[0].value, "example.org"));
	CU_ASSERT(str_is(req.headers[1].name, "Content-Length"));
	CU_ASSERT(str_is(req.headers[1].value, "42"));
	CU_ASSERT(str_is(req.headers[2].name, "X-Empty"));
	CU_ASSERT(str_is(req.headers[2].value, ""));
	CU_ASSERT(str_is(req.headers[3].value, "a  b"));
	CU_ASSERT_EQUAL(req.content_length, 42);
	/* Pointers go into the caller's buffer, not into copies. */
	CU_ASSERT(req.headers[0].value.p == strstr(s, "example.org"));
}

static void
test_empty_query(void)
{
	struct http_request req;

	CU_ASSERT_EQUAL_FATAL(parse("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n",
	    &req), HTTP_PARSE_OK);
	CU_ASSERT(str_is(req.path, "/a"));
	CU_ASSERT(str_is(req.target, "/a?"));
	CU_ASSERT_EQUAL(req.query.len, 0);
}

static void
test_every_prefix(void)
{
	struct http_request req;
	const char *s =
	    "GET /chat?room=x HTTP/1.1\r\n"
	    "Host: h\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "\r\n";
	size_t n = strlen(s), i;
	int r;

	for (i = 0; i < n; i++) {
		r = http_parse_head(s, i, &req);
		if (r != HTTP_PARSE_INCOMPLETE)
			fprintf(stderr, "\n  prefix %zu: %d\n", i, r);
		CU_ASSERT_EQUAL(r, HTTP_PARSE_INCOMPLETE);
	}
	CU_ASSERT_EQUAL(http_parse_head(s, n, &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.head_len, n);
}

static void
test_max_head(void)
{
	static char buf[HTTP_MAX_HEAD + 64];
	struct http_request req;

	build_head(buf, HTTP_MAX_HEAD, 1);
	CU_ASSERT_EQUAL(http_parse_head(buf, HTTP_MAX_HEAD, &req),
	    HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.head_len, HTTP_MAX_HEAD);
	/* Bytes after the head (a body, a pipelined request) do not count. */
	CU_ASSERT_EQUAL(http_parse_head(buf, sizeof(buf), &req), HTTP_PARSE_OK);

	build_head(buf, HTTP_MAX_HEAD + 1, 1);
	CU_ASSERT_EQUAL(http_parse_head(buf, HTTP_MAX_HEAD + 1, &req), 431);
	CU_ASSERT_EQUAL(http_parse_head(buf, HTTP_MAX_HEAD, &req), 431);
	CU_ASSERT_EQUAL(http_parse_head(buf, HTTP_MAX_HEAD - 1, &req),
	    HTTP_PARSE_INCOMPLETE);
}

static void
test_unterminated(void)
{
	static char buf[HTTP_MAX_HEAD];
	struct http_request req;

	build_head(buf, sizeof(buf), 0);
	CU_ASSERT_EQUAL(http_parse_head(buf, sizeof(buf), &req), 431);
	CU_ASSERT_EQUAL(http_parse_head(buf, sizeof(buf) - 1, &req),
	    HTTP_PARSE_INCOMPLETE);
}

/* Host plus extra headers, then the empty line. */
static size_t
build_headers(char *buf, int extra)
{
	size_t n;
	int i;

	n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: h\r\n");
	for (i = 0; i < extra; i++)
		n += (size_t)sprintf(buf + n, "X-%d: %d\r\n", i, i);
	n += (size_t)sprintf(buf + n, "\r\n");
	return n;
}

static void
test_max_headers(void)
{
	static char buf[4096];
	struct http_request req;
	size_t n;

	n = build_headers(buf, HTTP_MAX_HEADERS - 1);
	CU_ASSERT_EQUAL(http_parse_head(buf, n, &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.nheaders, HTTP_MAX_HEADERS);
	n = build_headers(buf, HTTP_MAX_HEADERS);
	CU_ASSERT_EQUAL(http_parse_head(buf, n, &req), 431);
	/* Known as soon as the 65th line starts. */
	CU_ASSERT_EQUAL(http_parse_head(buf, n - 3, &req), 431);
}

static void
test_malformed(void)
{
	static const char *const cases[] = {
		/* bare LF */
		"GET / HTTP/1.1\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\n\n",
		/* bare CR */
		"GET / HTTP/1.1\rHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n",
		/* space before colon */
		"GET / HTTP/1.1\r\nHost : h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost\t: h\r\n\r\n",
		/* obs-fold */
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n",
		"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
		/* bad method char */
		"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GE@ / HTTP/1.1\r\nHost: h\r\n\r\n",
		/* whitespace other than one SP between the parts */
		"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /  HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n",
		" GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
		/* missing version */
		"GET /\r\nHost: h\r\n\r\n",
		"GET / \r\nHost: h\r\n\r\n",
		"GET\r\nHost: h\r\n\r\n",
		/* a version that is not HTTP/DIGIT.DIGIT */
		"GET / http/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/11\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.x\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.10\r\nHost: h\r\n\r\n",
		/* target: origin-form only, asterisk only for OPTIONS */
		"GET x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
		"OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
		/* CTL in value */
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fz\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX: a\x1b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX\x01: a\r\n\r\n",
		/* empty name */
		"GET / HTTP/1.1\r\nHost: h\r\n: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX y: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX(y): a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
		/* no Host on 1.1 */
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nX-Host: h\r\n\r\n",
		/* two Hosts */
		"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
		/* leading CRLF */
		"\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"\r\n\r\n",
	};

	expect_all(cases, NELEM(cases), 400);
}

static void
test_nul(void)
{
	static const char s1[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
	static const char s2[] = "GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n";
	static const char s3[] = "GET / HTTP/1.1\r\nHo\0st: h\r\n\r\n";
	struct http_request req;

	CU_ASSERT_EQUAL(http_parse_head(s1, sizeof(s1) - 1, &req), 400);
	CU_ASSERT_EQUAL(http_parse_head(s2, sizeof(s2) - 1, &req), 400);
	CU_ASSERT_EQUAL(http_parse_head(s3, sizeof(s3) - 1, &req), 400);
	CU_ASSERT_EQUAL(http_parse_head("\0", 1, &req), 400);
}

/* Garbage is refused before any CRLF CRLF arrives, not at 8 KiB. */
static void
test_early_reject(void)
{
	static const char *const cases[] = {
		"\n",
		"\x16\x03\x01\x02\x00",		/* a TLS ClientHello */
		"GET  ",
		"GET /a b",
		"GET / HTTP/1.1\n",
		"GET / HTTP/1.1\rx",
		"GET / HTTP/2x",
		"GET / HTTP/1.1\r\nHost : ",
		"GET / HTTP/1.1\r\nHost: h\r\n ",
		"GET / HTTP/1.1\r\nHost: h\r\nX: \x01",
		"GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n\rX",
	};

	expect_all(cases, NELEM(cases), 400);
}

static void
test_version(void)
{
	static const char *const bad[] = {
		"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.2\r\nHost: h\r\n\r\n",
		"GET / HTTP/0.9\r\nHost: h\r\n\r\n",
		"GET / HTTP/9.9\r\n",	/* known once the line is complete */
	};
	struct http_request req;

	expect_all(bad, NELEM(bad), 505);
	CU_ASSERT_EQUAL(parse("GET / HTTP/2.0\r", &req), HTTP_PARSE_INCOMPLETE);
	CU_ASSERT_EQUAL(parse("GET / HTTP/1.0\r\n\r\n", &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.minor, 0);
}

static void
test_bad_content_length(void)
{
	static const char *const cases[] = {
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
		    "Content-Length: 6\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
		    "content-length: 5\r\nContent-Length: 7\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\n"
		    "Content-Length: 99999999999999999999\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\n"
		    "Content-Length: 9223372036854775808\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
		    "Content-Length: 5\r\n\r\n",
	};
	struct http_request req;

	expect_all(cases, NELEM(cases), 400);
	/* Identical duplicates are one length. */
	CU_ASSERT_EQUAL(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
	    "Content-Length: 5\r\n\r\n", &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.content_length, 5);
	/* The largest int64_t parses, then is too large for us. */
	CU_ASSERT_EQUAL(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 9223372036854775807\r\n\r\n", &req), 413);
	CU_ASSERT_EQUAL(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 0\r\n\r\n", &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.content_length, 0);
}

static void
test_body_limit(void)
{
	struct http_request req;

	CU_ASSERT_EQUAL(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 65537\r\n\r\n", &req), 413);
	CU_ASSERT_EQUAL(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 65536\r\n\r\n", &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.content_length, HTTP_MAX_BODY);
	CU_ASSERT_EQUAL(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Content-Length: 0065536\r\n\r\n", &req), HTTP_PARSE_OK);
}

static void
test_transfer_encoding(void)
{
	static const char *const bad[] = {
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\n"
		    "Transfer-Encoding: chunked, chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n",
	};
	static const char *const unknown[] = {
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\n"
		    "Transfer-Encoding: gzip, chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\n"
		    "Transfer-Encoding: chunked, gzip\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\n"
		    "Transfer-Encoding: chunked;x=1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n",
	};
	struct http_request req;

	CU_ASSERT_EQUAL(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n", &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.chunked, 1);
	CU_ASSERT_EQUAL(req.content_length, -1);
	CU_ASSERT_EQUAL(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "transfer-encoding:  CHUNKED \r\n\r\n", &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.chunked, 1);
	CU_ASSERT_EQUAL(parse("POST / HTTP/1.1\r\nHost: h\r\n"
	    "Transfer-Encoding: , chunked,\r\n\r\n", &req), HTTP_PARSE_OK);
	CU_ASSERT_EQUAL(req.chunked, 1);
	expect_all(bad, NELEM(bad), 400);
	expect_all(unknown, NELEM(unknown), 501);
}

static void
test_keep_alive(void)
{
	struct http_request req;

	CU_ASSERT_EQUAL_FATAL(parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n",
	    &req), 0);
	CU_ASSERT_EQUAL(req.keep_alive, 1);
	CU_ASSERT_EQUAL_FATAL(parse("GET / HTTP/1.1\r\nHost: h\r\n"
	    "Connection: close\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(req.keep_alive, 0);
	CU_ASSERT_EQUAL_FATAL(parse("GET / HTTP/1.1\r\nHost: h\r\n"
	    "Connection: foo\r\nConnection: Close\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(req.keep_alive, 0);
	CU_ASSERT_EQUAL_FATAL(parse("GET / HTTP/1.1\r\nHost: h\r\n"
	    "Connection: closed\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(req.keep_alive, 1);
	CU_ASSERT_EQUAL_FATAL(parse("GET / HTTP/1.0\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(req.keep_alive, 0);
	CU_ASSERT_EQUAL_FATAL(parse("GET / HTTP/1.0\r\n"
	    "Connection: Keep-Alive\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(req.keep_alive, 1);
	CU_ASSERT_EQUAL_FATAL(parse("GET / HTTP/1.0\r\n"
	    "Connection: keep-alive, close\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(req.keep_alive, 0);
	CU_ASSERT_EQUAL_FATAL(parse("GET / HTTP/1.0\r\nHost: h\r\n"
	    "Connection: close\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(req.keep_alive, 0);
}

static void
test_upgrade(void)
{
	struct http_request req;

	CU_ASSERT_EQUAL_FATAL(parse("GET /ws HTTP/1.1\r\nHost: h\r\n"
	    "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n",
	    &req), 0);
	CU_ASSERT_EQUAL(req.upgrade_websocket, 1);
	CU_ASSERT_EQUAL(req.connection_upgrade, 1);
	CU_ASSERT_EQUAL(req.keep_alive, 1);
	CU_ASSERT_EQUAL_FATAL(parse("GET /ws HTTP/1.1\r\nHost: h\r\n"
	    "Upgrade: h2c, websocket\r\nConnection: Upgrade\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(req.upgrade_websocket, 1);
	CU_ASSERT_EQUAL_FATAL(parse("GET /ws HTTP/1.1\r\nHost: h\r\n"
	    "Upgrade: websockets\r\nConnection: upgrades\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(req.upgrade_websocket, 0);
	CU_ASSERT_EQUAL(req.connection_upgrade, 0);
	CU_ASSERT_EQUAL_FATAL(parse("GET /ws HTTP/1.1\r\nHost: h\r\n"
	    "X-Upgrade: websocket\r\nUpgrade-X: websocket\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(req.upgrade_websocket, 0);
}

static void
test_header_get(void)
{
	struct http_request req;
	const struct http_str *v;

	CU_ASSERT_EQUAL_FATAL(parse("GET / HTTP/1.1\r\nHost: h\r\n"
	    "Sec-WebSocket-Key: one\r\nsec-websocket-key: two\r\n\r\n", &req), 0);
	v = http_header_get(&req, "SEC-WEBSOCKET-KEY");
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	CU_ASSERT(str_is(*v, "one"));
	v = http_header_get(&req, "sec-websocket-key");
	CU_ASSERT_PTR_NOT_NULL_FATAL(v);
	CU_ASSERT(str_is(*v, "one"));
	CU_ASSERT_PTR_NULL(http_header_get(&req, "Sec-WebSocket"));
	CU_ASSERT_PTR_NULL(http_header_get(&req, "Sec-WebSocket-Keys"));
	CU_ASSERT_PTR_NULL(http_header_get(&req, ""));
	CU_ASSERT_PTR_NOT_NULL(http_header_get(&req, "HOST"));
}

static void
test_list_has_token(void)
{
	CU_ASSERT(http_list_has_token(str_of("keep-alive, Upgrade"), "upgrade"));
	CU_ASSERT(http_list_has_token(str_of("Upgrade"), "upgrade"));
	CU_ASSERT(http_list_has_token(str_of("a,upgrade"), "upgrade"));
	CU_ASSERT(http_list_has_token(str_of(" \tupgrade\t ,a"), "upgrade"));
	CU_ASSERT(http_list_has_token(str_of(",,upgrade,,"), "upgrade"));
	CU_ASSERT(!http_list_has_token(str_of("upgrades"), "upgrade"));
	CU_ASSERT(!http_list_has_token(str_of("xupgrade"), "upgrade"));
	CU_ASSERT(!http_list_has_token(str_of("up grade"), "upgrade"));
	CU_ASSERT(!http_list_has_token(str_of("upgrade;q=1"), "upgrade"));
	CU_ASSERT(!http_list_has_token(str_of("upgrad"), "upgrade"));
	CU_ASSERT(!http_list_has_token(str_of(""), "upgrade"));
	CU_ASSERT(!http_list_has_token(str_of(" , ,"), "upgrade"));
	CU_ASSERT(!http_list_has_token(str_of("a, b"), ""));
}

static void
test_str_eq(void)
{
	CU_ASSERT(http_str_eq(str_of("abc"), "abc"));
	CU_ASSERT(!http_str_eq(str_of("abc"), "ABC"));
	CU_ASSERT(!http_str_eq(str_of("ab"), "abc"));
	CU_ASSERT(!http_str_eq(str_of("abc"), "ab"));
	CU_ASSERT(http_str_eq(str_of(""), ""));
	CU_ASSERT(http_str_ieq(str_of("Content-LENGTH"), "content-length"));
	CU_ASSERT(!http_str_ieq(str_of("content-lengths"), "content-length"));
	/* Only ASCII letters fold: '@' is not '`', '[' is not '{'. */
	CU_ASSERT(!http_str_ieq(str_of("@["), "`{"));
}

static void
test_query_param(void)
{
	struct http_str q = str_of("tokens=1&token=a%2Fb%2fc+d&e&empty=&bad=%4&"
	    "nul=%00&esc=%zz&long=0123456789&dup=1&dup=2&pct=%41%62");
	char out[8];

	CU_ASSERT_EQUAL(http_query_param(q, "token", out, sizeof(out)), 7);
	CU_ASSERT_STRING_EQUAL(out, "a/b/c d");
	CU_ASSERT_EQUAL(http_query_param(q, "tokens", out, sizeof(out)), 1);
	CU_ASSERT_STRING_EQUAL(out, "1");
	CU_ASSERT_EQUAL(http_query_param(q, "tok", out, sizeof(out)), -1);
	CU_ASSERT_STRING_EQUAL(out, "");
	CU_ASSERT_EQUAL(http_query_param(q, "missing", out, sizeof(out)), -1);
	CU_ASSERT_EQUAL(http_query_param(q, "e", out, sizeof(out)), 0);
	CU_ASSERT_STRING_EQUAL(out, "");
	CU_ASSERT_EQUAL(http_query_param(q, "empty", out, sizeof(out)), 0);
	CU_ASSERT_EQUAL(http_query_param(q, "bad", out, sizeof(out)), -2);
	CU_ASSERT_EQUAL(http_query_param(q, "nul", out, sizeof(out)), -2);
	CU_ASSERT_EQUAL(http_query_param(q, "esc", out, sizeof(out)), -2);
	CU_ASSERT_EQUAL(http_query_param(q, "long", out, sizeof(out)), -2);
	CU_ASSERT_STRING_EQUAL(out, "");
	CU_ASSERT_EQUAL(http_query_param(q, "dup", out, sizeof(out)), 1);
	CU_ASSERT_STRING_EQUAL(out, "1");
	CU_ASSERT_EQUAL(http_query_param(q, "pct", out, sizeof(out)), 2);
	CU_ASSERT_STRING_EQUAL(out, "Ab");
	CU_ASSERT_EQUAL(http_query_param(q, "", out, sizeof(out)), -1);
	CU_ASSERT_EQUAL(http_query_param(q, "token", out, 0), -2);
}

static void
test_query_param_edges(void)
{
	char out[16];

	/* Exactly outsz - 1 bytes fit; one more does not. */
	CU_ASSERT_EQUAL(http_query_param(str_of("a=1234567"), "a", out, 8), 7);
	CU_ASSERT_EQUAL(http_query_param(str_of("a=12345678"), "a", out, 8), -2);
	CU_ASSERT_EQUAL(http_query_param(str_of("a=%41%4"), "a", out,
	    sizeof(out)), -2);
	CU_ASSERT_EQUAL(http_query_param(str_of("a=%"), "a", out,
	    sizeof(out)), -2);
	CU_ASSERT_EQUAL(http_query_param(str_of("a"), "a", out, sizeof(out)), 0);
	CU_ASSERT_EQUAL(http_query_param(str_of("b=1&a"), "a", out,
	    sizeof(out)), 0);
	CU_ASSERT_EQUAL(http_query_param(str_of("a=x=y"), "a", out,
	    sizeof(out)), 3);
	CU_ASSERT_STRING_EQUAL(out, "x=y");
	CU_ASSERT_EQUAL(http_query_param(str_of("&&a=2&"), "a", out,
	    sizeof(out)), 1);
	CU_ASSERT_STRING_EQUAL(out, "2");
	CU_ASSERT_EQUAL(http_query_param(str_of("%61=1"), "a", out,
	    sizeof(out)), -1);
	CU_ASSERT_EQUAL(http_query_param(str_of("a=%C3%A9"), "a", out,
	    sizeof(out)), 2);
	CU_ASSERT_EQUAL(http_query_param(str_of(""), "a", out, sizeof(out)), -1);
}

/* The query as the parser hands it over. */
static void
test_query_from_request(void)
{
	struct http_request req;
	char out[32];

	CU_ASSERT_EQUAL_FATAL(parse("GET /ws?room=lobby&token=x%20y HTTP/1.1\r\n"
	    "Host: h\r\n\r\n", &req), 0);
	CU_ASSERT_EQUAL(http_query_param(req.query, "token", out,
	    sizeof(out)), 3);
	CU_ASSERT_STRING_EQUAL(out, "x y");
	CU_ASSERT_EQUAL_FATAL(parse("GET /ws HTTP/1.1\r\nHost: h\r\n\r\n",
	    &req), 0);
	CU_ASSERT_EQUAL(http_query_param(req.query, "token", out,
	    sizeof(out)), -1);
}

static void
test_pipelined(void)
{
	const char *s =
	    "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
	    "GET /b?x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
	struct http_request req;
	size_t first;

	CU_ASSERT_EQUAL_FATAL(parse(s, &req), HTTP_PARSE_OK);
	CU_ASSERT(str_is(req.path, "/a"));
	CU_ASSERT_EQUAL(req.keep_alive, 1);
	first = req.head_len;
	CU_ASSERT_EQUAL(first, strlen("GET /a HTTP/1.1\r\nHost: h\r\n\r\n"));
	CU_ASSERT_EQUAL_FATAL(parse(s + first, &req), HTTP_PARSE_OK);
	CU_ASSERT(str_is(req.path, "/b"));
	CU_ASSERT(str_is(req.query, "x"));
	CU_ASSERT_EQUAL(req.keep_alive, 0);
	CU_ASSERT_EQUAL(first + req.head_len, strlen(s));
}

static void
test_methods(void)
{
	static const struct {
		const char *line;
		enum http_method m;
	} cases[] = {
		{ "GET / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_GET },
		{ "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_HEAD },
		{ "POST / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_POST },
		{ "PUT / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_PUT },
		{ "DELETE / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_DELETE },
		{ "OPTIONS / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_OPTIONS },
		{ "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_OPTIONS },
		{ "PATCH / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_PATCH },
		{ "get / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_OTHER },
		{ "GETS / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_OTHER },
		{ "BREW / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_OTHER },
		{ "M-SEARCH / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_OTHER },
	};
	struct http_request req;
	size_t i;

	for (i = 0; i < NELEM(cases); i++) {
		CU_ASSERT_EQUAL(parse(cases[i].line, &req), HTTP_PARSE_OK);
		CU_ASSERT_EQUAL(req.method, cases[i].m);
	}
	CU_ASSERT_EQUAL(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
	    &req), 0);
	CU_ASSERT(str_is(req.target, "*"));
	CU_ASSERT(str_is(req.path, "*"));
}

/*
 * Every byte value in a method, a field name and a field value against the
 * RFC 9110 grammar, so a slip in the class table cannot hide.
 */
static int
is_tchar(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') ||
	    (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Parse form with its '#' replaced by byte c. */
static int
parse_with(const char *form, int c)
{
	struct http_request req;
	char buf[64];
	size_t n = strlen(form);

	memcpy(buf, form, n);
	*(char *)memchr(buf, '#', n) = (char)c;
	return http_parse_head(buf, n, &req);
}

static void
test_byte_classes(void)
{
	int c, want;

	for (c = 0; c < 256; c++) {
		want = is_tchar(c) ? HTTP_PARSE_OK : 400;
		CU_ASSERT_EQUAL(parse_with("G#T / HTTP/1.1\r\nHost: h\r\n\r\n",
		    c), want);
		/* A colon there just ends the name early. */
		if (c == ':')
			want = HTTP_PARSE_OK;
		CU_ASSERT_EQUAL(parse_with("GET / HTTP/1.1\r\nHost: h\r\n"
		    "X#Y: v\r\n\r\n", c), want);
		want = c == '\t' || (c >= 0x20 && c != 0x7f) ?
		    HTTP_PARSE_OK : 400;
		CU_ASSERT_EQUAL(parse_with("GET / HTTP/1.1\r\nHost: h\r\n"
		    "X: a#b\r\n\r\n", c), want);
		want = c > 0x20 && c < 0x7f ? HTTP_PARSE_OK : 400;
		CU_ASSERT_EQUAL(parse_with("GET /# HTTP/1.1\r\nHost: h\r\n\r\n",
		    c), want);
	}
}

static void
test_obs_text(void)
{
	struct http_request req;

	CU_ASSERT_EQUAL_FATAL(parse("GET / HTTP/1.1\r\nHost: h\r\n"
	    "X-Name: caf\xc3\xa9 \xff\r\n\r\n", &req), 0);
	CU_ASSERT(str_is(req.headers[1].value, "caf\xc3\xa9 \xff"));
}

static void
test_reason(void)
{
	static const int codes[] = { 101, 200, 201, 204, 400, 401, 403, 404,
	    405, 408, 409, 411, 413, 414, 426, 429, 431, 500, 501, 503, 505 };
	size_t i;

	for (i = 0; i < NELEM(codes); i++)
		CU_ASSERT_STRING_NOT_EQUAL(http_reason(codes[i]), "Unknown");
	CU_ASSERT_STRING_EQUAL(http_reason(404), "Not Found");
	CU_ASSERT_STRING_EQUAL(http_reason(101), "Switching Protocols");
	CU_ASSERT_STRING_EQUAL(http_reason(431),
	    "Request Header Fields Too Large");
	CU_ASSERT_STRING_EQUAL(http_reason(299), "Unknown");
	CU_ASSERT_STRING_EQUAL(http_reason(-1), "Unknown");
}

int
main(void)
{
	static const struct unit_test tests[] = {
	{ "minimal GET", test_minimal_get },
	{ "all fields", test_all_fields },
	{ "empty query", test_empty_query },
	{ "every prefix incomplete", test_every_prefix },
	{ "head size limit", test_max_head },
	{ "unterminated head", test_unterminated },
	{ "header count limit", test_max_headers },
	{ "malformed heads", test_malformed },
	{ "NUL bytes", test_nul },
	{ "early rejection", test_early_reject },
	{ "version", test_version },
	{ "bad Content-Length", test_bad_content_length },
	{ "body limit", test_body_limit },
	{ "Transfer-Encoding", test_transfer_encoding },
	{ "keep-alive", test_keep_alive },
	{ "upgrade", test_upgrade },
	{ "header_get", test_header_get },
	{ "list_has_token", test_list_has_token },
	{ "str_eq and str_ieq", test_str_eq },
	{ "query_param", test_query_param },
	{ "query_param edges", test_query_param_edges },
	{ "query from a request", test_query_from_request },
	{ "pipelined requests", test_pipelined },
	{ "methods", test_methods },
	{ "byte classes", test_byte_classes },
	{ "obs-text in values", test_obs_text },
	{ "reason phrases", test_reason },
	};

	return UNIT_RUN("http", tests);
}
