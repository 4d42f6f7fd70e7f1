#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/*
 * libFuzzer target for the request-head parser. Beyond "no crash", it
 * checks what callers rely on: everything points into the head, a verdict
 * does not change as more bytes arrive, and INCOMPLETE is only said while
 * the buffer may still grow.
 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do {							\
	if (!(x)) {							\
		fprintf(stderr, "%s:%d: invariant failed: %s\n",	\
		    __FILE__, __LINE__, #x);				\
		abort();						\
	}								\
} while (0)

/* Every prefix of a short input; a sample of a long one (cost is n^2). */
#define PREFIX_ALL 1024
#define PREFIX_SAMPLES 256

static int
inside(struct http_str s, const char *lo, const char *hi)
{
	uintptr_t p = (uintptr_t)s.p;

	return p >= (uintptr_t)lo && p <= (uintptr_t)hi &&
	    s.len <= (uintptr_t)hi - p;
}

/* Strictly inside: a non-empty string must not start at hi. */
static int
inside_head(struct http_str s, const char *lo, const char *hi)
{
	return inside(s, lo, hi) &&
	    (s.len > 0 || (uintptr_t)s.p < (uintptr_t)hi);
}

static const char *
find_crlfcrlf(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i + 4 <= n; i++)
		if (memcmp(p + i, "\r\n\r\n", 4) == 0)
			return p + i;
	return NULL;
}

static int
is_ows(int c)
{
	return c == ' ' || c == '\t';
}

/* Room only decides between a value and "too long", never presence. */
static void
check_query(struct http_str query, const char *name)
{
	static const size_t sizes[] = { 1, 8, 256 };
	char out[256];
	size_t i;
	int r, prev = -3;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		r = http_query_param(query, name, out, sizes[i]);
		CHECK(r >= -2);
		if (r < 0)
			CHECK(out[0] == '\0');
		else {
			CHECK((size_t)r < sizes[i]);
			CHECK(out[r] == '\0');
			CHECK(memchr(out, '\0', (size_t)r) == NULL);
		}
		if (prev == -1 || prev >= 0)
			CHECK(r == prev);
		else if (prev == -2)
			CHECK(r != -1);
		prev = r;
	}
}

/* The first key of the query, as a C string, so lookups can hit. */
static void
first_key(struct http_str q, char *name, size_t size)
{
	size_t i;

	for (i = 0; i < q.len && i + 1 < size; i++) {
		if (q.p[i] == '=' || q.p[i] == '&' || q.p[i] == '\0')
			break;
		name[i] = q.p[i];
	}
	name[i] = '\0';
}

static void
check_lists(struct http_str v)
{
	static const char *const tokens[] = {
		"close", "keep-alive", "upgrade", "websocket", "chunked", "",
	};
	size_t i;

	for (i = 0; i < sizeof(tokens) / sizeof(tokens[0]); i++)
		if (http_list_has_token(v, tokens[i]))
			CHECK(tokens[i][0] != '\0' &&
			    v.len >= strlen(tokens[i]));
}

static void
check_headers(const char *buf, const struct http_request *req)
{
	const char *end = buf + req->head_len;
	const struct http_header *h;
	const struct http_str *got;
	char name[HTTP_MAX_HEAD + 1];
	size_t i, j;
	int hosts = 0;

	CHECK(req->nheaders <= HTTP_MAX_HEADERS);
	for (i = 0; i < req->nheaders; i++) {
		h = &req->headers[i];
		CHECK(h->name.len > 0);
		CHECK(inside_head(h->name, buf, end));
		CHECK(inside_head(h->value, buf, end));
		CHECK(h->value.p > h->name.p + h->name.len);
		if (h->value.len > 0) {
			CHECK(!is_ows(h->value.p[0]));
			CHECK(!is_ows(h->value.p[h->value.len - 1]));
		}
		check_lists(h->value);
		if (http_str_ieq(h->name, "host"))
			hosts++;

		/* header_get finds the first header of that name. */
		memcpy(name, h->name.p, h->name.len);
		name[h->name.len] = '\0';
		got = http_header_get(req, name);
		CHECK(got != NULL);
		for (j = 0; &req->headers[j].value != got; j++)
			CHECK(j < i);
		CHECK(http_str_ieq(req->headers[j].name, name));
	}
	CHECK(hosts <= 1);
	CHECK(req->minor == 0 || hosts == 1);
}

static void
check_ok(const char *buf, size_t len, const struct http_request *req)
{
	const char *end = buf + req->head_len, *tend;
	char name[64];

	CHECK(req->head_len <= len);
	CHECK(req->head_len <= HTTP_MAX_HEAD);
	CHECK(req->head_len >= 4);
	CHECK(find_crlfcrlf(buf, req->head_len) == end - 4);
	CHECK(req->minor == 0 || req->minor == 1);

	CHECK(req->method_str.p == buf && req->method_str.len > 0);
	CHECK(inside_head(req->target, buf, end) && req->target.len > 0);
	CHECK(req->path.p == req->target.p);
	tend = req->target.p + req->target.len;
	CHECK(inside(req->path, req->target.p, tend));
	CHECK(inside(req->query, req->target.p, tend));
	CHECK(memchr(req->path.p, '?', req->path.len) == NULL);
	if (req->path.len < req->target.len) {
		CHECK(req->path.p[req->path.len] == '?');
		CHECK(req->query.p == req->path.p + req->path.len + 1);
		CHECK(req->path.len + 1 + req->query.len == req->target.len);
	} else
		CHECK(req->query.len == 0);
	CHECK(req->target.p[0] == '/' ||
	    (req->target.len == 1 && req->method == HTTP_OPTIONS));

	CHECK(req->content_length >= -1);
	CHECK(req->content_length <= HTTP_MAX_BODY);
	if (req->chunked)
		CHECK(req->content_length == -1 && req->minor == 1);
	check_headers(buf, req);

	check_query(req->query, "token");
	first_key(req->query, name, sizeof(name));
	check_query(req->query, name);
}

/* A verdict on a prefix is INCOMPLETE or the final one, and never goes back. */
static void
check_prefixes(const char *buf, size_t size, int full,
    const struct http_request *fullreq)
{
	struct http_request req;
	size_t m, step;
	int r, settled = 0;

	step = size <= PREFIX_ALL ? 1 : size / PREFIX_SAMPLES;
	for (m = 0; m <= size; m += step) {
		r = http_parse_head(buf, m, &req);
		if (settled)
			CHECK(r == full);
		CHECK(r == HTTP_PARSE_INCOMPLETE || r == full);
		if (r == HTTP_PARSE_INCOMPLETE)
			CHECK(m < HTTP_MAX_HEAD);
		else
			settled = 1;
		if (r == HTTP_PARSE_OK)
			CHECK(req.head_len == fullreq->head_len);
	}
	if (full == HTTP_PARSE_OK) {
		m = fullreq->head_len;
		r = http_parse_head(buf, m - 1, &req);
		CHECK(r == HTTP_PARSE_INCOMPLETE);
		CHECK(http_parse_head(buf, m, &req) == HTTP_PARSE_OK);
		CHECK(req.head_len == m);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct http_request req;
	const char *buf = (const char *)data;
	struct http_str raw;
	int r;

	r = http_parse_head(buf, size, &req);
	switch (r) {
	case HTTP_PARSE_OK:
		check_ok(buf, size, &req);
		break;
	case HTTP_PARSE_INCOMPLETE:
		CHECK(size < HTTP_MAX_HEAD);
		CHECK(find_crlfcrlf(buf, size) == NULL);
		break;
	default:
		CHECK(r == 400 || r == 413 || r == 431 || r == 501 || r == 505);
		break;
	}
	check_prefixes(buf, size, r, &req);

	/* The helpers also take bytes the parser would never let through. */
	raw.p = buf;
	raw.len = size;
	check_query(raw, "a");
	check_lists(raw);
	return 0;
}
