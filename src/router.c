#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "conn.h"
#include "http.h"
#include "live.h"
#include "log.h"
#include "metrics.h"
#include "names.h"
#include "persist.h"
#include "proto.h"
#include "reader.h"
#include "router.h"
#include "store.h"
#include "jwt.h"
#include "server.h"
#include "session.h"
#include "settings.h"
#include "worker.h"
#include "ws.h"
#include "xmalloc.h"

typedef void route_fn(struct conn *, const struct http_request *, const char *, size_t);

#define M_GET (1u << HTTP_GET)
#define M_HEAD (1u << HTTP_HEAD)

struct route {
	const char *path;
	unsigned methods;      /* bit per enum http_method */
	const char *allow;     /* the Allow header of a 405 */
	route_fn *fn;
};

static void
healthz(struct conn *c, const struct http_request *req, const char *body, size_t len)
{
	static const char ok[] = "{\"status\":\"ok\"}";

	conn_http_respond(c, req, 200, "application/json", NULL, ok, sizeof(ok) - 1, 0);
}

static void
readyz(struct conn *c, const struct http_request *req, const char *body, size_t len)
{
	static const char ready[] = "{\"status\":\"ready\"}";

	if (server_stopping(c->w->srv)) {
		conn_http_error(c, req, 503, "not_ready", "shutting down", NULL, 0);
		return;
	}
	if (!server_db_ready(c->w->srv)) {
		conn_http_error(c, req, 503, "not_ready", "the database is unavailable", NULL, 0);
		return;
	}
	conn_http_respond(c, req, 200, "application/json", NULL, ready, sizeof(ready) - 1, 0);
}

static void
metrics(struct conn *c, const struct http_request *req, const char *body, size_t len)
{
	struct server *srv = c->w->srv;
	struct metrics total;
	struct metrics_process proc = {
		.capacity = srv->capacity,
		.max_connections = c->w->live->max_connections,
		.connections_peak = (uint64_t)ck_pr_load_int(&srv->nconns_peak),
	};
	struct evbuffer *out = evbuffer_new();

	memset(&total, 0, sizeof(total));
	for (unsigned i = 0; i < srv->nworkers; i++)
		metrics_add(&total, &srv->workers[i]->metrics);
	metrics_render(&total, &proc, out);
	if (srv->persist != NULL)
		persist_metrics(srv->persist, out);
	conn_http_respond(c, req, 200, "text/plain; version=0.0.4; charset=utf-8",
	    NULL, evbuffer_pullup(out, -1), evbuffer_get_length(out), 0);
	evbuffer_free(out);
}

/*
 * The token of "Authorization: Bearer <token>" into out (JWT_MAX_LEN + 1
 * bytes). Returns its length, -1 without the header, -2 when the header is
 * not a bearer token or too long.
 */
static int
bearer_token(const struct http_request *req, char *out)
{
	const struct http_str *auth = http_header_get(req, "Authorization");

	if (auth == NULL)
		return -1;
	if (auth->len <= 7 || strncasecmp(auth->p, "Bearer ", 7) != 0 ||
	    auth->len - 7 > JWT_MAX_LEN)
		return -2;
	memcpy(out, auth->p + 7, auth->len - 7);
	out[auth->len - 7] = '\0';
	return (int)auth->len - 7;
}

/* Verify; on failure answer 401 with a JSON body and return -1. */
static int
verify_or_401(struct conn *c, const struct http_request *req, const char *token,
    int len, struct jwt_claims *claims)
{
	enum jwt_result jr;

	if (len < 0) {
		conn_http_error(c, req, 401, "unauthorized",
		    len == -1 ? "a bearer token is required" :
		    "malformed Authorization header or token parameter",
		    "WWW-Authenticate: Bearer\r\n", 0);
		return -1;
	}
	jr = jwt_verify(&c->w->live->verifier, token, (size_t)len,
	    worker_now_ms() / 1000, claims);
	if (jr != JWT_OK) {
		conn_http_error(c, req, 401, "unauthorized", jwt_strerror(jr),
		    "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n", 0);
		return -1;
	}
	return 0;
}

/*
 * A token in the upgrade request (Authorization: Bearer, else ?token=).
 * Returns 0 with no token, 1 with a valid one (user filled), -1 when it
 * was answered with 401.
 */
static int
upgrade_token(struct conn *c, const struct http_request *req, char *user)
{
	char token[JWT_MAX_LEN + 1];
	struct jwt_claims claims;
	int len = bearer_token(req, token);

	if (len == -1) {
		len = http_query_param(req->query, "token", token, sizeof(token));
		if (len == -1)
			return 0;
	}
	if (verify_or_401(c, req, token, len < 0 ? -2 : len, &claims) < 0)
		return -1;
	memcpy(user, claims.sub, sizeof(claims.sub));
	return 1;
}

/*
 * PROTOCOL.md section 7: every /api/ path but register and login needs a
 * valid bearer token, checked before anything else. Returns 1 when the
 * request was answered; claims holds the caller otherwise.
 */
static int
api_unauthorized(struct conn *c, const struct http_request *req,
    struct jwt_claims *claims)
{
	char token[JWT_MAX_LEN + 1];

	if (req->path.len < 5 || memcmp(req->path.p, "/api/", 5) != 0 ||
	    http_str_eq(req->path, "/api/register") ||
	    http_str_eq(req->path, "/api/login"))
		return 0;
	return verify_or_401(c, req, token, bearer_token(req, token), claims) < 0;
}

/* ---- GET /api/rooms/{room}/events ------------------------------------------- */

#define ROOMS_PREFIX "/api/rooms/"
#define EVENTS_SUFFIX "/events"

/* What the answer needs once the database has spoken. */
struct events_ctx {
	struct conn *c;
	struct http_request req;  /* method, version, keep-alive: its strings are gone */
	unsigned limit;
	char room[NAMES_ROOM_STR_MAX + 1];
};

/* The room of /api/rooms/{room}/events into room; 1 if the path is one. */
static int
events_path(const struct http_request *req, char *room)
{
	size_t plen = sizeof(ROOMS_PREFIX) - 1, slen = sizeof(EVENTS_SUFFIX) - 1;
	size_t n;

	if (req->path.len <= plen + slen ||
	    memcmp(req->path.p, ROOMS_PREFIX, plen) != 0 ||
	    memcmp(req->path.p + req->path.len - slen, EVENTS_SUFFIX, slen) != 0)
		return 0;
	n = req->path.len - plen - slen;
	if (n > NAMES_ROOM_STR_MAX)
		n = NAMES_ROOM_STR_MAX + 1;   /* too long: invalid below */
	else
		memcpy(room, req->path.p + plen, n);
	room[n <= NAMES_ROOM_STR_MAX ? n : 0] = '\0';
	return 1;
}

/* A positive integer query parameter: 1 found, 0 absent, -1 invalid. */
static int
query_uint(const struct http_request *req, const char *name, uint64_t *v)
{
	char buf[24], *end;
	int len = http_query_param(req->query, name, buf, sizeof(buf));

	if (len == -1)
		return 0;
	if (len <= 0 || buf[0] < '0' || buf[0] > '9')
		return -1;
	*v = strtoull(buf, &end, 10);
	return *end == '\0' && *v >= 1 && *v <= INT64_MAX ? 1 : -1;
}

static void
events_answer(void *arg, PGresult *const *res, int nres, const char *error)
{
	struct events_ctx *x = arg;
	struct conn *c = x->c;
	json_t *o, *events;
	char *body;
	int rows, more;

	if (error != NULL || nres != STORE_EVENTS_API_RESULTS ||
	    PQresultStatus(res[0]) != PGRES_TUPLES_OK || PQresultStatus(res[1]) != PGRES_TUPLES_OK) {
		log_warn("db_read_failed read=events_api room=%s error=\"%s\"", x->room,
		    error != NULL ? error : "unexpected results");
		conn_http_error(c, &x->req, 503, "unavailable",
		    "the database is unavailable; retry later", "Retry-After: 1\r\n", 0);
		conn_http_resume_after_wait(c);
		return;
	}
	if (PQgetvalue(res[0], 0, 0)[0] != 't') {
		conn_http_error(c, &x->req, 404, "not_found", "no such room", NULL, 0);
	} else if (PQgetvalue(res[0], 0, 1)[0] == 't' && PQgetvalue(res[0], 0, 2)[0] != 't') {
		conn_http_error(c, &x->req, 403, "forbidden", "this room is private", NULL, 0);
	} else {
		rows = PQntuples(res[1]);
		more = rows > (int)x->limit;
		if (more)
			rows = (int)x->limit;
		events = json_array();
		for (int i = rows - 1; i >= 0; i--) {   /* newest first: ascending out */
			struct stored_event ev;

			if (store_event_row(res[1], i, &ev) == 0)
				json_array_append_new(events, store_event_json(x->room, &ev));
		}
		o = json_pack("{s:o, s:b}", "events", events, "more", more);
		body = json_dumps(o, JSON_COMPACT);
		conn_http_respond(c, &x->req, 200, "application/json", NULL, body,
		    strlen(body), 0);
		free(body);
		json_decref(o);
	}
	conn_http_resume_after_wait(c);   /* frees x */
}

/*
 * The stream of a room from the database (everything committed is
 * there), as the history frame: {events, more}. Without --db there is no
 * database to read: 503 says so.
 */
static void
room_events(struct conn *c, const struct http_request *req, const char *user,
    const char *room)
{
	struct db_reader *rd = c->w->reader;
	uint64_t before = 0, limit = PROTO_HISTORY_DEFAULT;
	struct events_ctx *x;
	struct db_query *q;
	const char *a, *b;
	size_t alen, blen;
	int rb, rl;

	if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
		conn_http_error(c, req, 405, "method_not_allowed",
		    "method not allowed on this path", "Allow: GET, HEAD\r\n", 0);
		return;
	}
	if (!names_valid_room(room, strlen(room))) {
		conn_http_error(c, req, 404, "not_found", "not a valid room name", NULL, 0);
		return;
	}
	if ((rb = query_uint(req, "before", &before)) < 0 ||
	    (rl = query_uint(req, "limit", &limit)) < 0) {
		conn_http_error(c, req, 400, "bad_request",
		    "before and limit must be integers of at least 1", NULL, 0);
		return;
	}
	if (limit > PROTO_HISTORY_MAX)
		limit = PROTO_HISTORY_MAX;
	if (names_parse_dm(room, strlen(room), &a, &alen, &b, &blen) &&
	    !names_dm_admits(room, strlen(room), user)) {
		conn_http_error(c, req, 403, "forbidden",
		    "this direct-message room admits only its two users", NULL, 0);
		return;
	}
	if (rd == NULL) {
		conn_http_error(c, req, 503, "unavailable",
		    "the events API reads the database: this parleyd runs without --db",
		    NULL, 0);
		return;
	}
	x = xcalloc(1, sizeof(*x));
	x->c = c;
	x->req.method = req->method;
	x->req.minor = req->minor;
	x->req.keep_alive = req->keep_alive;
	x->limit = (unsigned)limit;
	memcpy(x->room, room, strlen(room) + 1);
	q = db_reader_query(rd, store_sql_events_api(room, user,
	    rb ? before - 1 : (uint64_t)INT64_MAX, (unsigned)limit), events_answer, x);
	if (q == NULL) {
		free(x);
		conn_http_error(c, req, 503, "unavailable",
		    "the database is unavailable; retry later", "Retry-After: 1\r\n", 0);
		return;
	}
	conn_http_wait(c, q, x);
}

/* RFC 6455 section 4.2: validate the opening handshake, answer 101. */
static void
websocket(struct conn *c, const struct http_request *req, const char *body, size_t len)
{
	const struct http_str *key = http_header_get(req, "Sec-WebSocket-Key");
	const struct http_str *version = http_header_get(req, "Sec-WebSocket-Version");
	char accept[WS_ACCEPT_LEN + 1], head[256], user[NAMES_USER_MAX + 1];
	int subprotocol = 0, authed;

	if (!req->upgrade_websocket || !req->connection_upgrade) {
		conn_http_error(c, req, 426, "upgrade_required",
		    "this endpoint speaks WebSocket: send Upgrade: websocket and Connection: Upgrade",
		    "Upgrade: websocket\r\nConnection: Upgrade\r\n", 0);
		return;
	}
	if (req->minor < 1 || req->content_length > 0) {
		conn_http_error(c, req, 400, "bad_request",
		    "a WebSocket upgrade is an HTTP/1.1 GET without a body", NULL, 1);
		return;
	}
	if (version == NULL) {
		conn_http_error(c, req, 400, "bad_request",
		    "missing Sec-WebSocket-Version", "Sec-WebSocket-Version: 13\r\n", 1);
		return;
	}
	if (!http_str_eq(*version, "13")) {
		conn_http_error(c, req, 426, "upgrade_required",
		    "unsupported WebSocket version: use 13", "Sec-WebSocket-Version: 13\r\n", 0);
		return;
	}
	if (key == NULL || !ws_client_key_valid(key->p, key->len)) {
		conn_http_error(c, req, 400, "bad_request",
		    "missing or malformed Sec-WebSocket-Key", NULL, 1);
		return;
	}
	if ((authed = upgrade_token(c, req, user)) < 0)
		return;
	for (size_t i = 0; i < req->nheaders; i++)
		if (http_str_ieq(req->headers[i].name, "Sec-WebSocket-Protocol") &&
		    http_list_has_token(req->headers[i].value, "parley.v1"))
			subprotocol = 1;
	ws_accept_key(key->p, key->len, accept);
	len = (size_t)snprintf(head, sizeof(head),
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n", accept,
	    subprotocol ? "Sec-WebSocket-Protocol: parley.v1\r\n" : "");
	if (conn_send(c, head, len) != 0)
		return;
	conn_upgrade(c, subprotocol);
	if (authed)
		session_start(c->sess, user);
}

static const struct route routes[] = {
	{ "/healthz", M_GET | M_HEAD, "GET, HEAD", healthz },
	{ "/readyz", M_GET | M_HEAD, "GET, HEAD", readyz },
	{ "/metrics", M_GET | M_HEAD, "GET, HEAD", metrics },
	{ "/ws", M_GET, "GET", websocket },
};

void
router_dispatch(struct conn *c, const struct http_request *req,
    const char *body, size_t body_len)
{
	char allow[64], room[NAMES_ROOM_STR_MAX + 2];
	struct jwt_claims claims;

	if (api_unauthorized(c, req, &claims))
		return;
	if (events_path(req, room)) {
		room_events(c, req, claims.sub, room);
		return;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *r = &routes[i];

		if (!http_str_eq(req->path, r->path))
			continue;
		if (r->methods & (1u << req->method)) {
			r->fn(c, req, body, body_len);
			return;
		}
		snprintf(allow, sizeof(allow), "Allow: %s\r\n", r->allow);
		conn_http_error(c, req, 405, "method_not_allowed",
		    "method not allowed on this path", allow, 0);
		return;
	}
	conn_http_error(c, req, 404, "not_found", "no such path", NULL, 0);
}
