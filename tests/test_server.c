/*
 * test_server.c - integration tests against the real parleyd binary.
 *
 * One server per suite (started in the suite's init), extra servers for
 * tests that need special flags. The last test of each suite stops its
 * server with SIGTERM and asserts exit status 0. Every wait is bounded.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <jansson.h>

#include "harness.h"
#include "wsclient.h"

#define HOST "127.0.0.1"
#define T_IO 3000               /* ms: one ordinary exchange */

static struct server srv;       /* the current suite's server */


/* ---- suite setup ---------------------------------------------------- */

static int
start_with(const char *const args[])
{
	return harness_suite_start(&srv, args);
}

static int init_plain(void) { return start_with(NULL); }

static int
init_maxframe(void)
{
	static const char *const a[] = { "--max-frame", "1024", NULL };

	return start_with(a);
}

static int
init_slow(void)
{
	static const char *const a[] = { "--out-limit", "65536", NULL };

	return start_with(a);
}

static int
init_heartbeat(void)
{
	static const char *const a[] = { "--heartbeat", "1", NULL };

	return start_with(a);
}

static int
init_maxconn(void)
{
	static const char *const a[] = { "--max-connections", "2", NULL };

	return start_with(a);
}

static int
init_t1(void)
{
	static const char *const a[] = { "-t", "1", NULL };

	return start_with(a);
}

static int
init_t4(void)
{
	static const char *const a[] = { "-t", "4", NULL };

	return start_with(a);
}

static int
cleanup_server(void)
{
	return harness_suite_cleanup(&srv);
}

/* The last test of every suite: SIGTERM must give exit status 0. */
static void
test_stop(void)
{
	harness_test_stop(&srv);
}

/* ---- helpers -------------------------------------------------------- */

/*
 * Say hello (the suites run with --allow-anonymous) and read the welcome:
 * the chat protocol refuses everything before it. 1 on success.
 */
static int
greet(struct wsc *c)
{
	static unsigned n;
	struct wsc_frame f;
	char hello[64];

	snprintf(hello, sizeof(hello), "{\"type\":\"hello\",\"name\":\"t%u\"}", ++n);
	if (wsc_send_text(c, hello) != 0 || wsc_recv(c, &f, T_IO) != 1 || f.opcode != 1)
		return 0;
	return f.len > 17 && memcmp(f.payload, "{\"type\":\"welcome\"", 17) == 0;
}

/* Connect a WebSocket to the current server and say hello. */
static int
ws_open(struct wsc *c)
{
	int st = wsc_connect(c, HOST, srv.port, NULL, "/ws", NULL, 0, T_IO);

	if (st == 101 && !greet(c))
		return -1;
	return st;
}

static json_t *
frame_json(const struct wsc_frame *f)
{
	json_error_t err;

	return json_loadb((const char *)f->payload, f->len, 0, &err);
}

/* Receive the next data frame (skipping nothing) as JSON; NULL if none. */
static json_t *
recv_json(struct wsc *c, int timeout_ms)
{
	struct wsc_frame f;

	if (wsc_recv(c, &f, timeout_ms) != 1)
		return NULL;
	if (f.opcode != 1 || !f.fin || f.masked || f.rsv != 0) {
		fprintf(stderr, "expected a text frame, got opcode %d fin %d "
		    "masked %d rsv %d len %zu\n", f.opcode, f.fin, f.masked,
		    f.rsv, f.len);
		return NULL;
	}
	return frame_json(&f);
}

/* One app-level ping/pong round trip within timeout_ms; 1 when it worked. */
static int
app_ping(struct wsc *c, const char *ref, int timeout_ms)
{
	char msg[128];
	json_t *j;
	int ok;

	if (ref != NULL)
		snprintf(msg, sizeof(msg), "{\"type\":\"ping\",\"ref\":\"%s\"}",
		    ref);
	else
		snprintf(msg, sizeof(msg), "{\"type\":\"ping\"}");
	if (wsc_send_text(c, msg) < 0)
		return 0;
	j = recv_json(c, timeout_ms);
	if (j == NULL)
		return 0;
	ok = jstr(j, "type") != NULL && strcmp(jstr(j, "type"), "pong") == 0 &&
	    json_is_integer(json_object_get(j, "ts"));
	if (ref != NULL)
		ok = ok && jstr(j, "ref") != NULL &&
		    strcmp(jstr(j, "ref"), ref) == 0;
	if (!ok) {
		char *d = json_dumps(j, 0);

		fprintf(stderr, "bad pong: %s\n", d ? d : "?");
		free(d);
	}
	json_decref(j);
	return ok;
}

/* Expect a close frame with code, then the TCP close. */
#define EXPECT_CLOSE(c, code) do {                                     \
	int got_ = wsc_recv_close((c), T_IO);                          \
	if (got_ != (code))                                            \
		fprintf(stderr, "%s:%d: expected close %d, got %d\n",  \
		    __FILE__, __LINE__, (code), got_);                 \
	CU_ASSERT_EQUAL(got_, (code));                                 \
	CU_ASSERT_EQUAL(wsc_wait_eof((c), T_IO), 1);                   \
} while (0)

/* Check an error response: JSON content type, object with string "error". */
static void
check_json_error(const struct http_resp *r, const char *code)
{
	char ct[128] = "";
	json_error_t err;
	json_t *j;

	CU_ASSERT(http_header(r, "Content-Type", ct, sizeof(ct)));
	CU_ASSERT(strncasecmp(ct, "application/json", 16) == 0);
	j = r->body ? json_loadb(r->body, r->body_len, 0, &err) : NULL;
	CU_ASSERT_PTR_NOT_NULL(j);
	CU_ASSERT(json_is_object(j));
	CU_ASSERT(json_is_string(json_object_get(j, "error")));
	if (code != NULL) {
		const char *e = j ? jstr(j, "error") : NULL;

		if (e == NULL || strcmp(e, code) != 0)
			fprintf(stderr, "expected error %s, body: %s\n", code,
			    r->body ? r->body : "(none)");
		CU_ASSERT(e != NULL && strcmp(e, code) == 0);
	}
	json_decref(j);
}

static int
req(const char *request, struct http_resp *r)
{
	int st = http_request(srv.port, request, strlen(request), r, T_IO);

	if (st < 0)
		fprintf(stderr, "no HTTP response to: %.60s...\n", request);
	return st;
}

/* ---- HTTP ----------------------------------------------------------- */

static void
test_healthz(void)
{
	struct http_resp r;
	json_error_t err;
	json_t *j;

	CU_ASSERT_EQUAL(req("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &r),
	    200);
	j = r.body ? json_loadb(r.body, r.body_len, 0, &err) : NULL;
	CU_ASSERT(j != NULL && jstr(j, "status") != NULL &&
	    strcmp(jstr(j, "status"), "ok") == 0);
	json_decref(j);
	http_resp_free(&r);
}

static void
test_readyz(void)
{
	struct http_resp r;

	CU_ASSERT_EQUAL(req("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", &r),
	    200);
	http_resp_free(&r);
}

static void
test_metrics(void)
{
	static const char *const names[] = { "parley_connections",
	    "parley_connections_accepted_total", "parley_events_total",
	    "parley_deliveries_total", "parley_frames_in_total",
	    "parley_frames_out_total", "parley_bytes_in_total",
	    "parley_bytes_out_total", NULL };
	struct http_resp r;
	char pat[128];
	double v;
	int i;

	CU_ASSERT_EQUAL(req("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r),
	    200);
	for (i = 0; names[i] != NULL; i++) {
		snprintf(pat, sizeof(pat), "# TYPE %s ", names[i]);
		if (r.body == NULL || strstr(r.body, pat) == NULL)
			fprintf(stderr, "missing: %s\n", pat);
		CU_ASSERT(r.body != NULL && strstr(r.body, pat) != NULL);
		snprintf(pat, sizeof(pat), "\n%s ", names[i]);
		if (r.body == NULL || strstr(r.body, pat) == NULL)
			fprintf(stderr, "missing sample: %s\n", names[i]);
		CU_ASSERT(r.body != NULL && strstr(r.body, pat) != NULL);
	}
	http_resp_free(&r);
	CU_ASSERT_EQUAL(server_metric(&srv, "parley_connections", &v), 0);
	CU_ASSERT(v >= 1);      /* the /metrics connection itself */
}

static void
test_not_found(void)
{
	struct http_resp r;

	CU_ASSERT_EQUAL(req("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", &r), 404);
	check_json_error(&r, "not_found");
	http_resp_free(&r);
}

static void
test_method_not_allowed(void)
{
	struct http_resp r;
	char allow[128];

	CU_ASSERT_EQUAL(req("POST /healthz HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 0\r\n\r\n", &r), 405);
	CU_ASSERT(http_header(&r, "Allow", allow, sizeof(allow)));
	check_json_error(&r, "method_not_allowed");
	http_resp_free(&r);
}

static void
test_head_too_large(void)
{
	struct http_resp r;
	char *big = malloc(10000);
	int n;

	CU_ASSERT_FATAL(big != NULL);
	n = snprintf(big, 10000, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
	memset(big + n, 'a', 9000);
	strcpy(big + n + 9000, "\r\n\r\n");
	CU_ASSERT_EQUAL(req(big, &r), 431);
	check_json_error(&r, "headers_too_large");
	http_resp_free(&r);
	free(big);
}

static void
test_too_many_headers(void)
{
	struct http_resp r;
	char buf[4096];
	size_t n;
	int i;

	n = (size_t)snprintf(buf, sizeof(buf),
	    "GET /healthz HTTP/1.1\r\nHost: x\r\n");
	for (i = 0; i < 64; i++)        /* 65 with Host */
		n += (size_t)snprintf(buf + n, sizeof(buf) - n,
		    "X-H%d: %d\r\n", i, i);
	snprintf(buf + n, sizeof(buf) - n, "\r\n");
	CU_ASSERT_EQUAL(req(buf, &r), 431);
	check_json_error(&r, "headers_too_large");
	http_resp_free(&r);
}

static void
test_bad_request_line(void)
{
	struct http_resp r;

	CU_ASSERT_EQUAL(req("GARBAGE\r\nHost: x\r\n\r\n", &r), 400);
	check_json_error(&r, "bad_request");
	http_resp_free(&r);
	CU_ASSERT_EQUAL(req("GET /healthz XTTP/1.1\r\nHost: x\r\n\r\n",
	    &r), 400);
	check_json_error(&r, "bad_request");
	http_resp_free(&r);
}

static void
test_body_too_large(void)
{
	struct http_resp r;

	CU_ASSERT_EQUAL(req("POST /api/register HTTP/1.1\r\nHost: x\r\n"
	    "Content-Type: application/json\r\n"
	    "Content-Length: 70000\r\n\r\n", &r), 413);
	check_json_error(&r, "body_too_large");
	http_resp_free(&r);
}

static void
test_chunked(void)
{
	struct http_resp r;

	CU_ASSERT_EQUAL(req("POST /api/register HTTP/1.1\r\nHost: x\r\n"
	    "Content-Type: application/json\r\n"
	    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", &r), 411);
	check_json_error(&r, "length_required");
	http_resp_free(&r);
}

static void
test_pipelined(void)
{
	static const char one[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char two[] =
	    "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
	    "GET /healthz HTTP/1.1\r\nHost: y\r\n\r\n";
	struct http_conn hc;
	struct http_resp r;

	CU_ASSERT_FATAL(http_open(&hc, srv.port, T_IO) == 0);
	CU_ASSERT_EQUAL(http_send(&hc, two, sizeof(two) - 1, T_IO), 0);
	CU_ASSERT_EQUAL(http_read(&hc, &r, T_IO), 200);
	http_resp_free(&r);
	CU_ASSERT_EQUAL(http_read(&hc, &r, T_IO), 200);
	http_resp_free(&r);
	/* Keep-alive: the connection still serves. */
	CU_ASSERT_EQUAL(http_send(&hc, one, sizeof(one) - 1, T_IO), 0);
	CU_ASSERT_EQUAL(http_read(&hc, &r, T_IO), 200);
	http_resp_free(&r);
	http_close(&hc);
}

/* A client pipelining without reading is paced, not buffered without bound. */
#define FLOOD_REQUESTS 60000

struct flood {
	struct http_conn *hc;
	char *req;
	size_t len;
	int rc;
};

static void *
flood_sender(void *p)
{
	struct flood *f = p;

	f->rc = http_send(f->hc, f->req, f->len, 30000);
	return NULL;
}

static long
server_rss_kib(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *fp;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)srv.pid);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(fp);
	return kib;
}

static void
test_pipelined_flood(void)
{
	static const char one[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
	size_t n = sizeof(one) - 1, got = 0;
	struct http_conn hc;
	struct http_resp r;
	struct flood f;
	pthread_t th;
	long before = server_rss_kib(), during;

	CU_ASSERT_FATAL(http_open(&hc, srv.port, T_IO) == 0);
	f.hc = &hc;
	f.len = n * FLOOD_REQUESTS;
	f.req = malloc(f.len);
	for (size_t i = 0; i < FLOOD_REQUESTS; i++)
		memcpy(f.req + i * n, one, n);
	CU_ASSERT_FATAL(pthread_create(&th, NULL, flood_sender, &f) == 0);
	wsc_sleep_ms(1000);   /* the server answers until its output is full */
	during = server_rss_kib();
	fprintf(stderr, "pipelined flood: server RSS %ld KiB before, %ld KiB while unread\n",
	    before, during);
	/* --out-limit is 1 MiB by default: far below what 60,000 answers take. */
	CU_ASSERT(before > 0 && during > 0 && during - before < 16384);
	while (got < FLOOD_REQUESTS && http_read(&hc, &r, T_IO) == 200) {
		http_resp_free(&r);
		got++;
	}
	pthread_join(th, NULL);
	CU_ASSERT_EQUAL(f.rc, 0);
	CU_ASSERT_EQUAL(got, FLOOD_REQUESTS);
	free(f.req);
	http_close(&hc);
}

static void
test_http10_close(void)
{
	static const char q[] = "GET /healthz HTTP/1.0\r\n\r\n";
	struct http_conn hc;
	struct http_resp r;

	CU_ASSERT_FATAL(http_open(&hc, srv.port, T_IO) == 0);
	CU_ASSERT_EQUAL(http_send(&hc, q, sizeof(q) - 1, T_IO), 0);
	CU_ASSERT_EQUAL(http_read(&hc, &r, T_IO), 200);
	http_resp_free(&r);
	CU_ASSERT_EQUAL(http_wait_eof(&hc, T_IO), 1);
	http_close(&hc);
}

/* Every non-2xx response above is JSON; also a 404 under /api/. */
static void
test_error_bodies(void)
{
	struct http_resp r;
	int st;

	st = req("GET /definitely/not/here HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	CU_ASSERT(st >= 300);
	check_json_error(&r, NULL);
	http_resp_free(&r);
	st = req("DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	CU_ASSERT_EQUAL(st, 405);
	check_json_error(&r, "method_not_allowed");
	http_resp_free(&r);
}

/* ---- handshake ------------------------------------------------------ */

/* Send a raw upgrade request; returns the status. */
static int
raw_upgrade(const char *request, struct http_resp *r)
{
	return req(request, r);
}

static void
test_upgrade_ok(void)
{
	struct wsc c;
	char v[128];

	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);    /* checks the accept */
	CU_ASSERT(wsc_response_header(&c, "Sec-WebSocket-Protocol", v,
	    sizeof(v)) && strcmp(v, "parley.v1") == 0);
	wsc_close(&c);
}

static void
test_upgrade_accept_value(void)
{
	/* The RFC 6455 example key. */
	static const char q[] = "GET /ws HTTP/1.1\r\nHost: x\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n";
	struct http_conn hc;
	struct http_resp r;
	char v[128] = "";

	CU_ASSERT_FATAL(http_open(&hc, srv.port, T_IO) == 0);
	CU_ASSERT_EQUAL(http_send(&hc, q, sizeof(q) - 1, T_IO), 0);
	CU_ASSERT_EQUAL(http_read(&hc, &r, T_IO), 101);
	CU_ASSERT(http_header(&r, "Sec-WebSocket-Accept", v, sizeof(v)));
	CU_ASSERT_STRING_EQUAL(v, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	CU_ASSERT(!http_header(&r, "Sec-WebSocket-Protocol", v, sizeof(v)));
	http_resp_free(&r);
	http_close(&hc);
}

static void
test_upgrade_protocols(void)
{
	struct wsc c;
	char v[128];

	CU_ASSERT_EQUAL(wsc_connect(&c, HOST, srv.port, NULL, "/ws",
	    "Sec-WebSocket-Protocol: chat, parley.v1\r\n", 0, T_IO), 101);
	CU_ASSERT(wsc_response_header(&c, "Sec-WebSocket-Protocol", v,
	    sizeof(v)) && strcmp(v, "parley.v1") == 0);
	wsc_close(&c);

	CU_ASSERT_EQUAL(wsc_connect(&c, HOST, srv.port, NULL, "/ws",
	    "sec-websocket-protocol: chat\r\n", 0, T_IO), 101);
	CU_ASSERT(!wsc_response_header(&c, "Sec-WebSocket-Protocol", v,
	    sizeof(v)));
	/* The connection works without a subprotocol. */
	CU_ASSERT(greet(&c));
	CU_ASSERT(app_ping(&c, NULL, T_IO));
	wsc_close(&c);
}

static void
test_upgrade_bad_key(void)
{
	struct http_resp r;

	CU_ASSERT_EQUAL(raw_upgrade("GET /ws HTTP/1.1\r\nHost: x\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n", &r), 400);
	check_json_error(&r, NULL);
	http_resp_free(&r);
	CU_ASSERT_EQUAL(raw_upgrade("GET /ws HTTP/1.1\r\nHost: x\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: not-a-key\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n", &r), 400);
	check_json_error(&r, NULL);
	http_resp_free(&r);
}

static void
test_upgrade_version(void)
{
	struct wsc c;
	char v[64] = "";

	CU_ASSERT_EQUAL(wsc_connect(&c, HOST, srv.port, NULL, "/ws",
	    "Sec-WebSocket-Version: 8\r\n", 0, T_IO), 426);
	CU_ASSERT(wsc_response_header(&c, "Sec-WebSocket-Version", v,
	    sizeof(v)));
	CU_ASSERT_STRING_EQUAL(v, "13");
	wsc_close(&c);
}

static void
test_upgrade_post(void)
{
	struct http_resp r;

	CU_ASSERT_EQUAL(raw_upgrade("POST /ws HTTP/1.1\r\nHost: x\r\n"
	    "Content-Length: 0\r\n\r\n", &r), 405);
	check_json_error(&r, "method_not_allowed");
	http_resp_free(&r);
}

static void
test_upgrade_missing(void)
{
	struct http_resp r;

	CU_ASSERT_EQUAL(raw_upgrade("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", &r),
	    426);
	check_json_error(&r, NULL);
	http_resp_free(&r);
}

/* ---- WebSocket basics ----------------------------------------------- */

static void
test_ws_silent(void)
{
	struct wsc_frame f;
	struct wsc c;

	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	CU_ASSERT_EQUAL(wsc_recv(&c, &f, 300), 0);
	wsc_close(&c);
}

static void
ws_ping_echo(struct wsc *c, const void *p, size_t len)
{
	struct wsc_frame f;

	CU_ASSERT_EQUAL(wsc_send_frame(c, 9, 1, p, len, 0), 0);
	CU_ASSERT_EQUAL_FATAL(wsc_recv(c, &f, T_IO), 1);
	CU_ASSERT_EQUAL(f.opcode, 10);
	CU_ASSERT(f.fin && !f.masked && f.rsv == 0);
	CU_ASSERT_EQUAL(f.len, len);
	CU_ASSERT(f.len == len && (len == 0 || memcmp(f.payload, p, len) == 0));
}

static void
test_ws_ping(void)
{
	char p[125];
	struct wsc c;

	memset(p, 'z', sizeof(p));
	p[0] = 'a';
	p[124] = 'b';
	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	ws_ping_echo(&c, "hello", 5);
	ws_ping_echo(&c, "", 0);
	ws_ping_echo(&c, p, sizeof(p));
	wsc_close(&c);
}

static void
test_app_ping(void)
{
	struct wsc c;

	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	CU_ASSERT(app_ping(&c, NULL, T_IO));
	CU_ASSERT(app_ping(&c, "abc", T_IO));
	wsc_close(&c);
}

static void
expect_bad_request(struct wsc *c, const char *text)
{
	json_t *j;

	CU_ASSERT_EQUAL(wsc_send_text(c, text), 0);
	j = recv_json(c, T_IO);
	CU_ASSERT_PTR_NOT_NULL(j);
	if (j == NULL) {
		fprintf(stderr, "no error frame for %s\n", text);
		return;
	}
	CU_ASSERT(jstr(j, "type") && strcmp(jstr(j, "type"), "error") == 0);
	CU_ASSERT(jstr(j, "code") && strcmp(jstr(j, "code"), "bad_request") == 0);
	CU_ASSERT(json_is_string(json_object_get(j, "message")));
	json_decref(j);
}

static void
test_bad_messages(void)
{
	struct wsc c;

	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	expect_bad_request(&c, "{\"type\":\"nope\"}");
	CU_ASSERT(app_ping(&c, "1", T_IO));
	expect_bad_request(&c, "hello");
	CU_ASSERT(app_ping(&c, "2", T_IO));
	expect_bad_request(&c, "[1]");
	CU_ASSERT(app_ping(&c, "3", T_IO));
	wsc_close(&c);
}

static void
test_fragmented_interleaved(void)
{
	struct wsc_frame f;
	struct wsc c;
	json_t *j;

	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	CU_ASSERT_EQUAL(wsc_send_frame(&c, 1, 0, "{\"type\"", 7, 0), 0);
	CU_ASSERT_EQUAL(wsc_send_frame(&c, 9, 1, "mid", 3, 0), 0);
	CU_ASSERT_EQUAL(wsc_send_frame(&c, 0, 0, ":\"pi", 4, 0), 0);
	CU_ASSERT_EQUAL(wsc_send_frame(&c, 0, 1, "ng\"}", 4, 0), 0);
	CU_ASSERT_EQUAL_FATAL(wsc_recv(&c, &f, T_IO), 1);
	CU_ASSERT_EQUAL(f.opcode, 10);
	CU_ASSERT(f.len == 3 && memcmp(f.payload, "mid", 3) == 0);
	j = recv_json(&c, T_IO);
	CU_ASSERT(j != NULL && jstr(j, "type") &&
	    strcmp(jstr(j, "type"), "pong") == 0);
	json_decref(j);
	wsc_close(&c);
}

/* ---- close codes ---------------------------------------------------- */

static const char ping_msg[] = "{\"type\":\"ping\"}";

static void
violation(int opcode, int fin, const void *p, size_t len, unsigned flags,
    int code)
{
	struct wsc c;

	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	CU_ASSERT_EQUAL(wsc_send_frame(&c, opcode, fin, p, len, flags), 0);
	EXPECT_CLOSE(&c, code);
	wsc_close(&c);
}

static void test_close_unmasked(void)
{ violation(1, 1, ping_msg, sizeof(ping_msg) - 1, WSC_UNMASKED, 1002); }
static void test_close_rsv1(void)
{ violation(1, 1, ping_msg, sizeof(ping_msg) - 1, WSC_RSV1, 1002); }
static void test_close_opcode3(void)
{ violation(3, 1, ping_msg, sizeof(ping_msg) - 1, 0, 1002); }
static void test_close_fragmented_ping(void)
{ violation(9, 0, "x", 1, 0, 1002); }
static void test_close_cont_without_start(void)
{ violation(0, 1, ping_msg, sizeof(ping_msg) - 1, 0, 1002); }
static void test_close_binary(void)
{ violation(2, 1, "\x01\x02", 2, 0, 1003); }
static void test_close_utf8_overlong(void)
{ violation(1, 1, "\"\xc0\x80\"", 4, 0, 1007); }
static void test_close_utf8_surrogate(void)
{ violation(1, 1, "\"\xed\xa0\x80\"", 5, 0, 1007); }
/* Detected on the first fragment, before any other is sent. */
static void test_close_utf8_first_fragment(void)
{ violation(1, 0, "{\"a\":\"\xc0\x80", 8, 0, 1007); }

static void
test_close_big_ping(void)
{
	char p[126];

	memset(p, 'p', sizeof(p));
	violation(9, 1, p, sizeof(p), 0, 1002);
}

static void
close_echo(const void *payload, size_t len, int expect, size_t expect_len)
{
	struct wsc_frame f;
	struct wsc c;
	int r;

	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	CU_ASSERT_EQUAL(wsc_send_frame(&c, 8, 1, payload, len, 0), 0);
	r = wsc_recv(&c, &f, T_IO);
	CU_ASSERT_EQUAL(r, 1);
	if (r == 1) {
		CU_ASSERT_EQUAL(f.opcode, 8);
		if (f.close_code != expect)
			fprintf(stderr, "close code sent %zu bytes: expected "
			    "%d, got %d\n", len, expect, f.close_code);
		CU_ASSERT_EQUAL(f.close_code, expect);
		if (expect_len != (size_t)-1)
			CU_ASSERT_EQUAL(f.len, expect_len);
	}
	CU_ASSERT_EQUAL(wsc_wait_eof(&c, T_IO), 1);
	wsc_close(&c);
}

static void
close_code(int code, int expect)
{
	uint8_t p[2] = { (uint8_t)(code >> 8), (uint8_t)code };

	close_echo(p, 2, expect, (size_t)-1);
}

static void test_close_1000(void) { close_code(1000, 1000); }
static void test_close_4000(void) { close_code(4000, 4000); }
static void test_close_empty(void) { close_echo("", 0, 1005, 0); }
static void test_close_one_byte(void) { close_echo("\x03", 1, 1002, (size_t)-1); }

static void
test_close_invalid_codes(void)
{
	static const int bad[] = { 999, 1005, 1006, 1016, 5000 };
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		close_code(bad[i], 1002);
}

/* ---- --max-frame 1024 ----------------------------------------------- */

static void
test_frame_limit_ok(void)
{
	char buf[1024];
	struct wsc c;
	json_t *j;

	/* Exactly 1024 bytes: accepted. */
	memset(buf, ' ', sizeof(buf));
	memcpy(buf, ping_msg, sizeof(ping_msg) - 2);
	buf[1023] = '}';
	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	CU_ASSERT_EQUAL(wsc_send_frame(&c, 1, 1, buf, sizeof(buf), 0), 0);
	j = recv_json(&c, T_IO);
	CU_ASSERT(j != NULL && jstr(j, "type") &&
	    strcmp(jstr(j, "type"), "pong") == 0);
	json_decref(j);
	wsc_close(&c);
}

static void
test_frame_too_big(void)
{
	char buf[1025];

	memset(buf, 'a', sizeof(buf));
	violation(1, 1, buf, sizeof(buf), 0, 1009);
}

static void
test_message_too_big(void)
{
	char buf[400];
	struct wsc c;

	memset(buf, 'a', sizeof(buf));
	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	CU_ASSERT_EQUAL(wsc_send_frame(&c, 1, 0, buf, sizeof(buf), 0), 0);
	CU_ASSERT_EQUAL(wsc_send_frame(&c, 0, 0, buf, sizeof(buf), 0), 0);
	/* The server may close as soon as it sees this one. */
	(void)wsc_send_frame(&c, 0, 1, buf, sizeof(buf), 0);
	EXPECT_CLOSE(&c, 1009);
	wsc_close(&c);
}

/* ---- slow consumer (--out-limit 65536) ------------------------------ */

#define SLOW_MAX_PINGS 50000

static void
test_slow_consumer(void)
{
	struct wsc a, b;
	struct wsc_frame f;
	char p[120];
	double base = 0, v = -1;
	unsigned sent = 0, next = 0, seq;
	int r, i, ok_rt = 0, end = 0, bad = 0;
	int64_t t0, deadline;

	CU_ASSERT_EQUAL(server_metric(&srv, "parley_connections", &base), 0);
	CU_ASSERT_EQUAL_FATAL(wsc_connect(&a, HOST, srv.port, NULL, "/ws",
	    NULL, 4096, T_IO), 101);
	CU_ASSERT_FATAL(greet(&a));
	CU_ASSERT_EQUAL_FATAL(ws_open(&b), 101);

	/* A floods pings and never reads; B checks the server stays live. */
	t0 = wsc_now_ms();
	while (sent < SLOW_MAX_PINGS && wsc_now_ms() - t0 < 30000) {
		memset(p, '.', sizeof(p));
		snprintf(p, sizeof(p), "%010u", sent);
		p[10] = '.';
		if (wsc_send_frame(&a, 9, 1, p, sizeof(p), 0) < 0)
			break;
		sent++;
		if (sent % 5000 == 0 && ok_rt < 10)
			ok_rt += app_ping(&b, NULL, 1000);
	}
	fprintf(stderr, "slow consumer: %u pings sent in %lld ms\n", sent,
	    (long long)(wsc_now_ms() - t0));
	for (i = 0; i < 50; i++) {
		int64_t s = wsc_now_ms();

		if (!app_ping(&b, NULL, 1000) || wsc_now_ms() - s > 1000)
			break;
	}
	CU_ASSERT_EQUAL(i, 50);

	/* A reads: a gap-free prefix of pongs, then close 1013 or EOF. */
	deadline = wsc_now_ms() + 10000;
	while (!end && wsc_now_ms() < deadline) {
		r = wsc_recv(&a, &f, (int)(deadline - wsc_now_ms()));
		if (r < 0) {
			end = 1;        /* EOF (or reset) */
			break;
		}
		if (r == 0)
			break;
		if (f.opcode == 8) {
			if (f.close_code != 1013)
				fprintf(stderr, "slow: close %d\n", f.close_code);
			CU_ASSERT_EQUAL(f.close_code, 1013);
			end = 2;
			break;
		}
		if (f.opcode != 10 || f.len != sizeof(p) ||
		    sscanf((const char *)f.payload, "%10u", &seq) != 1 ||
		    seq != next) {
			bad++;
			fprintf(stderr, "slow: unexpected frame opcode %d len "
			    "%zu at pong %u\n", f.opcode, f.len, next);
			break;
		}
		next++;
	}
	fprintf(stderr, "slow consumer: %u pongs then %s\n", next,
	    end == 2 ? "close 1013" : end == 1 ? "EOF" : "nothing (timeout)");
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(end != 0);
	CU_ASSERT(next < sent || sent < SLOW_MAX_PINGS);
	wsc_close(&a);
	CU_ASSERT(app_ping(&b, "after", T_IO));
	wsc_close(&b);

	/* The gauge comes back down. */
	deadline = wsc_now_ms() + 5000;
	while (wsc_now_ms() < deadline) {
		if (server_metric(&srv, "parley_connections", &v) == 0 &&
		    v <= base)
			break;
		wsc_sleep_ms(50);
	}
	if (v > base)
		fprintf(stderr, "parley_connections %g, before %g\n", v, base);
	CU_ASSERT(v >= 0 && v <= base);
	/* The server counted it as a slow consumer, not some other close. */
	v = -1;
	CU_ASSERT_EQUAL(server_metric(&srv, "parley_slow_consumer_closes_total", &v), 0);
	CU_ASSERT(v >= 1);
}

/* ---- heartbeat (--heartbeat 1) -------------------------------------- */

static void
test_heartbeat_idle(void)
{
	struct wsc_frame f;
	struct wsc c;
	int64_t t0;
	int r, pings = 0, code = -1;

	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	t0 = wsc_now_ms();
	while (wsc_now_ms() - t0 < 4500) {
		r = wsc_recv(&c, &f, (int)(t0 + 4500 - wsc_now_ms()));
		if (r != 1)
			break;
		if (f.opcode == 9) {
			if (pings++ == 0) {
				fprintf(stderr, "first ping after %lld ms\n",
				    (long long)(wsc_now_ms() - t0));
				CU_ASSERT(wsc_now_ms() - t0 <= 2200);
			}
		} else if (f.opcode == 8) {
			code = f.close_code;
			fprintf(stderr, "close %d after %lld ms\n", code,
			    (long long)(wsc_now_ms() - t0));
			break;
		}
	}
	CU_ASSERT(pings >= 1);
	CU_ASSERT_EQUAL(code, 1001);
	CU_ASSERT(wsc_now_ms() - t0 <= 4500);
	/* Complete the closing handshake; then the server closes TCP. */
	(void)wsc_send_frame(&c, 8, 1, "\x03\xe9", 2, 0);
	CU_ASSERT_EQUAL(wsc_wait_eof(&c, T_IO), 1);
	wsc_close(&c);
}

static void
test_heartbeat_alive(void)
{
	struct wsc_frame f;
	struct wsc c;
	int64_t t0;
	int r, pings = 0, closed = 0;
	char p[125];
	size_t n;

	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	t0 = wsc_now_ms();
	while (wsc_now_ms() - t0 < 4000) {
		r = wsc_recv(&c, &f, (int)(t0 + 4000 - wsc_now_ms()));
		if (r < 0) {
			closed = 1;
			break;
		}
		if (r == 0)
			break;
		if (f.opcode == 9) {
			/* f.payload is valid until the next call on c. */
			n = f.len < sizeof(p) ? f.len : sizeof(p);
			memcpy(p, f.payload, n);
			pings++;
			fprintf(stderr, "ping %d (%zu bytes) at %lld ms\n",
			    pings, f.len, (long long)(wsc_now_ms() - t0));
			CU_ASSERT_EQUAL(wsc_send_frame(&c, 10, 1, p, n, 0), 0);
		} else if (f.opcode == 8) {
			fprintf(stderr, "closed %d while answering pings at "
			    "%lld ms\n", f.close_code,
			    (long long)(wsc_now_ms() - t0));
			closed = 1;
			break;
		}
	}
	CU_ASSERT(pings >= 2);
	CU_ASSERT_EQUAL(closed, 0);
	/* Still served; a heartbeat ping may come before the pong: answer it. */
	CU_ASSERT_EQUAL(wsc_send_text(&c, "{\"type\":\"ping\",\"ref\":\"alive\"}"), 0);
	for (r = 0; r < 3 && wsc_recv(&c, &f, T_IO) == 1; r++) {
		if (f.opcode != 9)
			break;
		n = f.len < sizeof(p) ? f.len : sizeof(p);
		memcpy(p, f.payload, n);
		CU_ASSERT_EQUAL(wsc_send_frame(&c, 10, 1, p, n, 0), 0);
	}
	CU_ASSERT_EQUAL(f.opcode, 1);
	CU_ASSERT(f.opcode == 1 && f.len > 0 &&
	    memmem(f.payload, f.len, "\"pong\"", 6) != NULL &&
	    memmem(f.payload, f.len, "\"alive\"", 7) != NULL);
	wsc_close(&c);
}

/* ---- --max-connections 2 -------------------------------------------- */

static void
test_max_connections(void)
{
	static const char q[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n"
	    "Connection: close\r\n\r\n";
	struct wsc a, b, c;
	struct http_resp r;
	int64_t deadline;
	int st = -1;

	CU_ASSERT_EQUAL_FATAL(ws_open(&a), 101);
	CU_ASSERT_EQUAL_FATAL(ws_open(&b), 101);
	CU_ASSERT(app_ping(&a, NULL, T_IO));
	CU_ASSERT(app_ping(&b, NULL, T_IO));
	CU_ASSERT_EQUAL(req(q, &r), 503);
	check_json_error(&r, NULL);
	http_resp_free(&r);

	CU_ASSERT_EQUAL(wsc_send_frame(&a, 8, 1, "\x03\xe8", 2, 0), 0);
	CU_ASSERT_EQUAL(wsc_recv_close(&a, T_IO), 1000);
	CU_ASSERT_EQUAL(wsc_wait_eof(&a, T_IO), 1);
	wsc_close(&a);
	/* The server may take a moment to count the close. */
	deadline = wsc_now_ms() + 2000;
	while (wsc_now_ms() < deadline) {
		st = ws_open(&c);
		if (st == 101)
			break;
		wsc_close(&c);
		wsc_sleep_ms(50);
	}
	CU_ASSERT_EQUAL(st, 101);
	if (st == 101)
		CU_ASSERT(app_ping(&c, NULL, T_IO));
	wsc_close(&c);
	wsc_close(&b);
}

/* ---- shutdown ------------------------------------------------------- */

static void
test_shutdown(void)
{
	static const char q[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	struct wsc a, b;
	struct server s;
	struct http_resp r;
	int64_t t0;
	int st;

	CU_ASSERT_FATAL(server_start(&s, NULL) == 0);
	CU_ASSERT_EQUAL(wsc_connect(&a, HOST, s.port, NULL, "/ws", NULL, 0,
	    T_IO), 101);
	CU_ASSERT_EQUAL(wsc_connect(&b, HOST, s.port, NULL, "/ws", NULL, 0,
	    T_IO), 101);
	CU_ASSERT(greet(&a) && greet(&b));
	CU_ASSERT(app_ping(&a, NULL, T_IO));
	CU_ASSERT(app_ping(&b, NULL, T_IO));
	t0 = wsc_now_ms();
	kill(s.pid, SIGTERM);
	CU_ASSERT_EQUAL(wsc_recv_close(&a, 5000), 1001);
	(void)wsc_send_frame(&a, 8, 1, "\x03\xe9", 2, 0);
	CU_ASSERT_EQUAL(wsc_recv_close(&b, 5000), 1001);
	(void)wsc_send_frame(&b, 8, 1, "\x03\xe9", 2, 0);
	st = server_stop(&s, 0, (int)(t0 + 5000 - wsc_now_ms()));
	if (st != 0)
		server_dump_log(&s, "shutdown");
	CU_ASSERT_EQUAL(st, 0);
	CU_ASSERT_EQUAL(wsc_wait_eof(&a, 1000), 1);
	CU_ASSERT_EQUAL(wsc_wait_eof(&b, 1000), 1);
	wsc_close(&a);
	wsc_close(&b);
	CU_ASSERT_EQUAL(http_request(s.port, q, sizeof(q) - 1, &r, 1000), -1);
	http_resp_free(&r);
	server_remove_log(&s);
}

/* ---- threads: basic + 20 concurrent clients ------------------------- */

#define NCLIENTS 20
#define ROUNDS 20

struct client_job {
	int port;
	int id;
	int ok;                 /* round trips that worked */
	int closed_ok;
};

static void *
client_main(void *arg)
{
	struct client_job *job = arg;
	struct wsc_frame f;
	struct wsc c;
	char ref[32], p[32];
	int i, n;

	if (wsc_connect(&c, HOST, job->port, NULL, "/ws", NULL, 0, T_IO) !=
	    101 || !greet(&c)) {
		wsc_close(&c);
		return NULL;
	}
	for (i = 0; i < ROUNDS; i++) {
		snprintf(ref, sizeof(ref), "c%d-%d", job->id, i);
		if (!app_ping(&c, ref, T_IO))
			break;
		n = snprintf(p, sizeof(p), "w%d-%d", job->id, i);
		if (wsc_send_frame(&c, 9, 1, p, (size_t)n, 0) < 0 ||
		    wsc_recv(&c, &f, T_IO) != 1 || f.opcode != 10 ||
		    f.len != (size_t)n || memcmp(f.payload, p, (size_t)n) != 0)
			break;
		job->ok++;
	}
	if (wsc_send_frame(&c, 8, 1, "\x03\xe8", 2, 0) == 0 &&
	    wsc_recv_close(&c, T_IO) == 1000 && wsc_wait_eof(&c, T_IO) == 1)
		job->closed_ok = 1;
	wsc_close(&c);
	return NULL;
}

static void
test_basic(void)
{
	struct wsc c;

	CU_ASSERT_EQUAL_FATAL(ws_open(&c), 101);
	ws_ping_echo(&c, "x", 1);
	CU_ASSERT(app_ping(&c, "basic", T_IO));
	wsc_close(&c);
}

static void
test_concurrent(void)
{
	struct client_job jobs[NCLIENTS];
	pthread_t th[NCLIENTS];
	int i, started[NCLIENTS];

	for (i = 0; i < NCLIENTS; i++) {
		jobs[i].port = srv.port;
		jobs[i].id = i;
		jobs[i].ok = 0;
		jobs[i].closed_ok = 0;
		started[i] = pthread_create(&th[i], NULL, client_main,
		    &jobs[i]) == 0;
	}
	for (i = 0; i < NCLIENTS; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		CU_ASSERT(started[i]);
		if (jobs[i].ok != ROUNDS || !jobs[i].closed_ok)
			fprintf(stderr, "client %d: %d/%d round trips, close "
			    "%s\n", i, jobs[i].ok, ROUNDS,
			    jobs[i].closed_ok ? "ok" : "failed");
		CU_ASSERT_EQUAL(jobs[i].ok, ROUNDS);
		CU_ASSERT(jobs[i].closed_ok);
	}
}

/* ---- main ----------------------------------------------------------- */

static const struct test_def http_tests[] = {
	{ "GET /healthz", test_healthz },
	{ "GET /readyz", test_readyz },
	{ "GET /metrics", test_metrics },
	{ "404 not_found", test_not_found },
	{ "405 method_not_allowed", test_method_not_allowed },
	{ "431 head over 8 KiB", test_head_too_large },
	{ "431 65 headers", test_too_many_headers },
	{ "400 malformed request line", test_bad_request_line },
	{ "413 body too large", test_body_too_large },
	{ "411 chunked", test_chunked },
	{ "error bodies are JSON", test_error_bodies },
	{ "pipelined keep-alive", test_pipelined },
	{ "pipelined flood is paced", test_pipelined_flood },
	{ "HTTP/1.0 closes", test_http10_close },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def handshake_tests[] = {
	{ "101 with accept and parley.v1", test_upgrade_ok },
	{ "RFC 6455 accept value, no protocol", test_upgrade_accept_value },
	{ "subprotocol selection", test_upgrade_protocols },
	{ "400 missing/malformed key", test_upgrade_bad_key },
	{ "426 version 8", test_upgrade_version },
	{ "405 POST /ws", test_upgrade_post },
	{ "426 no upgrade headers", test_upgrade_missing },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def ws_tests[] = {
	{ "server silent after upgrade", test_ws_silent },
	{ "ping/pong payloads", test_ws_ping },
	{ "app ping/pong and ref", test_app_ping },
	{ "bad_request keeps the connection", test_bad_messages },
	{ "fragments with interleaved ping", test_fragmented_interleaved },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def close_tests[] = {
	{ "unmasked -> 1002", test_close_unmasked },
	{ "RSV1 -> 1002", test_close_rsv1 },
	{ "opcode 3 -> 1002", test_close_opcode3 },
	{ "fragmented ping -> 1002", test_close_fragmented_ping },
	{ "126-byte ping -> 1002", test_close_big_ping },
	{ "stray continuation -> 1002", test_close_cont_without_start },
	{ "binary -> 1003", test_close_binary },
	{ "C0 80 -> 1007", test_close_utf8_overlong },
	{ "ED A0 80 -> 1007", test_close_utf8_surrogate },
	{ "bad UTF-8 in first fragment -> 1007", test_close_utf8_first_fragment },
	{ "close 1000 echoed", test_close_1000 },
	{ "close 4000 echoed", test_close_4000 },
	{ "empty close echoed empty", test_close_empty },
	{ "invalid close codes -> 1002", test_close_invalid_codes },
	{ "1-byte close -> 1002", test_close_one_byte },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def maxframe_tests[] = {
	{ "1024-byte message accepted", test_frame_limit_ok },
	{ "1025-byte frame -> 1009", test_frame_too_big },
	{ "3 x 400-byte fragments -> 1009", test_message_too_big },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def slow_tests[] = {
	{ "slow consumer: prefix then 1013", test_slow_consumer },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def heartbeat_tests[] = {
	{ "idle client: ping then 1001", test_heartbeat_idle },
	{ "ponging client stays", test_heartbeat_alive },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def maxconn_tests[] = {
	{ "503 beyond the limit", test_max_connections },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static const struct test_def shutdown_tests[] = {
	{ "SIGTERM: 1001 and exit 0", test_shutdown },
	{ NULL, NULL }
};

static const struct test_def thread_tests[] = {
	{ "basic ping/pong", test_basic },
	{ "20 concurrent clients", test_concurrent },
	{ "stop: exit 0", test_stop },
	{ NULL, NULL }
};

static int no_init(void) { return 0; }
static int no_cleanup(void) { return 0; }

int
main(void)
{
	if (harness_begin("test_server") != 0)
		return 1;
	if (harness_add_suite("http", init_plain, cleanup_server, http_tests) ||
	    harness_add_suite("handshake", init_plain, cleanup_server,
	    handshake_tests) ||
	    harness_add_suite("websocket", init_plain, cleanup_server, ws_tests) ||
	    harness_add_suite("close codes", init_plain, cleanup_server,
	    close_tests) ||
	    harness_add_suite("max-frame 1024", init_maxframe, cleanup_server,
	    maxframe_tests) ||
	    harness_add_suite("slow consumer", init_slow, cleanup_server,
	    slow_tests) ||
	    harness_add_suite("heartbeat 1", init_heartbeat, cleanup_server,
	    heartbeat_tests) ||
	    harness_add_suite("max-connections 2", init_maxconn, cleanup_server,
	    maxconn_tests) ||
	    harness_add_suite("shutdown", no_init, no_cleanup, shutdown_tests) ||
	    harness_add_suite("threads 1", init_t1, cleanup_server, thread_tests) ||
	    harness_add_suite("threads 4", init_t4, cleanup_server, thread_tests)) {
		CU_cleanup_registry();
		return 1;
	}
	return harness_run();
}
