#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "conn.h"
#include "frame.h"
#include "jwt.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "room.h"
#include "server.h"
#include "session.h"
#include "settings.h"
#include "worker.h"
#include "xmalloc.h"

static void session_dispatch(struct session *s, struct room_msg *msg);

static struct worker *
sess_worker(const struct session *s)
{
	return s->c->w;
}

static const struct settings *
sess_cfg(const struct session *s)
{
	return s->c->w->srv->cfg;
}

/* ---- replies -------------------------------------------------------------- */

static void
send_json(struct session *s, json_t *o, enum frame_type type)
{
	struct frame *f = frame_from_json(o, type);

	json_decref(o);
	conn_send_shared(s->c, f);
	frame_unref(f);
}

static json_t *
reply_obj(const char *type, const struct proto_req *req)
{
	json_t *o = json_object();

	json_object_set_new(o, "type", json_string(type));
	if (req != NULL && req->has_ref)
		json_object_set_new(o, "ref", json_string(req->ref));
	return o;
}

static void
send_error(struct session *s, const struct proto_req *req, const char *code,
    const char *message, int64_t retry_after_ms)
{
	json_t *o = reply_obj("error", req);

	json_object_set_new(o, "code", json_string(code));
	json_object_set_new(o, "message", json_string(message));
	if (retry_after_ms >= 0)
		json_object_set_new(o, "retry_after_ms", json_integer(retry_after_ms));
	send_json(s, o, FRAME_ERROR);
}

/* Before a successful hello, anything at all ends the connection. */
static void
refuse(struct session *s, const struct proto_req *req, const char *message)
{
	send_error(s, req, "unauthorized", message, -1);
	conn_close_async(s->c, WS_CLOSE_POLICY);
}

/* ---- identity ------------------------------------------------------------- */

struct session *
session_new(struct conn *c)
{
	struct session *s = xcalloc(1, sizeof(*s));
	uint32_t now = worker_clock_ms(c->w);
	const struct settings *cfg = c->w->srv->cfg;

	s->c = c;
	rate_init(&s->seq_bucket, (uint32_t)cfg->burst, now);
	rate_init(&s->typing_bucket, (uint32_t)cfg->signal_burst, now);
	rate_init(&s->read_bucket, (uint32_t)cfg->signal_burst, now);
	s->abuse_window_ms = now;
	s->started_ms = now;
	return s;
}

int
session_hello_timer(struct session *s, uint32_t now_ms, uint32_t *next)
{
	uint32_t deadline = s->started_ms + SESSION_HELLO_TIMEOUT_MS;

	if (s->authed)
		return 0;
	if ((int32_t)(now_ms - deadline) >= 0) {
		log_debug("hello_timeout fd=%d", s->c->fd);
		refuse(s, NULL, "no hello within 10 seconds");
		return 1;
	}
	if ((int32_t)(deadline - *next) < 0)
		*next = deadline;
	return 0;
}

static void
welcome(struct session *s, const char *user, const struct proto_req *req)
{
	struct worker *w = sess_worker(s);
	const struct settings *cfg = sess_cfg(s);
	json_t *o = reply_obj("welcome", req);

	s->authed = 1;
	snprintf(s->user, sizeof(s->user), "%s", user);
	snprintf(s->id, sizeof(s->id), "%s-%u-%llx", w->srv->session_prefix, w->id,
	    (unsigned long long)++w->sessions);
	json_object_set_new(o, "user", json_string(s->user));
	json_object_set_new(o, "session", json_string(s->id));
	json_object_set_new(o, "heartbeat", json_integer((json_int_t)cfg->heartbeat));
	json_object_set_new(o, "max_body", json_integer((json_int_t)cfg->max_body));
	json_object_set_new(o, "server", json_string("parleyd/" PACKAGE_VERSION));
	send_json(s, o, FRAME_WELCOME);
	log_debug("session_start fd=%d user=%s session=%s", s->c->fd, s->user, s->id);
}

void
session_start(struct session *s, const char *user)
{
	welcome(s, user, NULL);
}

static void
hello(struct session *s, struct proto_req *req)
{
	struct server *srv = sess_worker(s)->srv;
	struct jwt_claims claims;
	enum jwt_result jr;

	if (req->token != NULL) {
		/* When both come, the token decides. */
		jr = jwt_verify(&srv->verifier, req->token, strlen(req->token),
		    worker_now_ms() / 1000, &claims);
		if (jr != JWT_OK) {
			log_debug("hello_refused fd=%d reason=\"%s\"", s->c->fd, jwt_strerror(jr));
			refuse(s, req, jwt_strerror(jr));
			return;
		}
		welcome(s, claims.sub, req);
		return;
	}
	if (req->name == NULL) {
		refuse(s, req, "hello needs a token");
		return;
	}
	if (!sess_cfg(s)->allow_anonymous) {
		refuse(s, req, "anonymous access is disabled: hello needs a token");
		return;
	}
	if (!names_valid_user(req->name, strlen(req->name))) {
		refuse(s, req, "name must be 1-32 bytes of [A-Za-z0-9._-]");
		return;
	}
	welcome(s, req->name, req);
}

/* ---- memberships ------------------------------------------------------------ */

static struct member *
member_find(struct session *s, const struct proto_req *req)
{
	for (struct member *m = s->rooms; m != NULL; m = m->sess_next)
		if (m->room_len == req->room_len &&
		    memcmp(m->room_name, req->room, req->room_len) == 0)
			return m;
	return NULL;
}

static int
list_unlink(struct member **head, struct member *m)
{
	struct member **pp = head;

	while (*pp != NULL && *pp != m)
		pp = &(*pp)->sess_next;
	if (*pp != m)
		return 0;
	*pp = m->sess_next;
	m->sess_next = NULL;
	return 1;
}

static void
member_unlink_session(struct session *s, struct member *m)
{
	if (list_unlink(&s->rooms, m))
		s->nrooms--;
}

static void
local_add(struct worker *w, struct member *m)
{
	struct room_local *l = &m->room->local[w->id];

	m->prev = NULL;
	m->next = l->head;
	if (l->head != NULL)
		l->head->prev = m;
	l->head = m;
}

static void
local_remove(struct worker *w, struct member *m)
{
	struct room_local *l = &m->room->local[w->id];

	if (m->prev != NULL)
		m->prev->next = m->next;
	else if (l->head == m)
		l->head = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	m->prev = m->next = NULL;
}

static void
to_room(struct room *r, struct room_msg *msg)
{
	if (room_push(r, msg))
		worker_schedule_room(r);
}

/* A LEAVE for a joined member; it is freed when the room's LEFT comes. */
static void
member_leave(struct worker *w, struct member *m, const struct proto_req *req,
    int silent)
{
	struct room_msg *msg = xcalloc(1, sizeof(*msg));

	local_remove(w, m);
	m->state = MEMBER_LEAVING;
	msg->base.kind = ROOM_MSG_LEAVE;
	msg->m = m;
	msg->silent = (uint8_t)silent;
	if (req != NULL) {
		msg->req.has_ref = req->has_ref;
		memcpy(msg->req.ref, req->ref, sizeof(msg->req.ref));
	}
	to_room(m->room, msg);
}

static void
pending_free(struct member *m)
{
	struct room_msg *msg, *next;

	for (msg = m->pend_head; msg != NULL; msg = next) {
		next = (struct room_msg *)msg->base.next;
		room_msg_free(msg);
	}
	m->pend_head = m->pend_tail = NULL;
	m->npend = 0;
}

static void
pending_add(struct member *m, struct room_msg *msg)
{
	msg->base.next = NULL;
	if (m->pend_tail != NULL)
		m->pend_tail->base.next = &msg->base;
	else
		m->pend_head = msg;
	m->pend_tail = msg;
	m->npend++;
}

/* Hand the requests that waited for a JOINED (or refusal) to the normal path. */
static void
pending_replay(struct session *s, struct member *m)
{
	struct room_msg *msg = m->pend_head, *next;

	m->pend_head = m->pend_tail = NULL;
	m->npend = 0;
	for (; msg != NULL; msg = next) {
		next = (struct room_msg *)msg->base.next;
		msg->base.next = NULL;
		session_dispatch(s, msg);
	}
}

static void
join(struct session *s, struct room_msg *msg)
{
	struct worker *w = sess_worker(s);
	struct member *m = member_find(s, &msg->req);

	if (m != NULL && m->state == MEMBER_JOINED) {
		msg->base.kind = ROOM_MSG_JOIN;
		msg->m = m;
		msg->rejoin = 1;
		to_room(m->room, msg);
		return;
	}
	if (s->nrooms >= SESSION_MAX_ROOMS) {
		send_error(s, &msg->req, "bad_request", "too many rooms joined on this connection", -1);
		room_msg_free(msg);
		return;
	}
	m = xcalloc(1, sizeof(*m));
	m->worker = w->id;
	memcpy(m->user, s->user, sizeof(m->user));
	m->state = MEMBER_PENDING;
	m->sess = s;
	m->room_len = msg->req.room_len;
	memcpy(m->room_name, msg->req.room, msg->req.room_len);
	m->sess_next = s->rooms;
	s->rooms = m;
	s->nrooms++;
	msg->base.kind = ROOM_MSG_JOIN;
	msg->m = m;
	worker_route_join(w, msg);
}

/* ---- rate limits --------------------------------------------------------------- */

/* 1 when the request may go on; else it was answered (and maybe closed). */
static int
rate_check(struct session *s, const struct proto_req *req)
{
	const struct settings *cfg = sess_cfg(s);
	uint32_t now = worker_clock_ms(sess_worker(s)), wait;

	if (cfg->rate == 0)
		return 1;   /* --rate 0 lifts every limit */
	if (proto_is_sequenced(req->type))
		wait = rate_take(&s->seq_bucket, (uint32_t)cfg->rate, (uint32_t)cfg->burst, now);
	else if (req->type == PROTO_TYPING)
		wait = rate_take(&s->typing_bucket, (uint32_t)cfg->signal_rate,
		    (uint32_t)cfg->signal_burst, now);
	else if (req->type == PROTO_READ)
		wait = rate_take(&s->read_bucket, (uint32_t)cfg->signal_rate,
		    (uint32_t)cfg->signal_burst, now);
	else
		return 1;
	if (wait == 0)
		return 1;
	METRIC_INC(&sess_worker(s)->metrics, rate_limited);
	if (now - s->abuse_window_ms >= SESSION_ABUSE_WINDOW_MS) {
		s->abuse_window_ms = now;
		s->abuse_count = 0;
	}
	send_error(s, req, "rate_limited", "too many requests; slow down", wait);
	if (++s->abuse_count >= SESSION_ABUSE_LIMIT) {
		log_info("rate_abuse_close fd=%d user=%s", s->c->fd, s->user);
		conn_close_async(s->c, WS_CLOSE_POLICY);
	}
	return 0;
}

/* ---- requests --------------------------------------------------------------------- */

static void
to_member(struct session *s, struct member *m, struct room_msg *msg)
{
	if (msg->req.type == PROTO_LEAVE) {
		m->want_left = 1;
		member_unlink_session(s, m);
		/* Still ours until LEFT: it carries the reply to this client. */
		m->sess_next = s->leaving;
		s->leaving = m;
		member_leave(sess_worker(s), m, &msg->req, 0);
		room_msg_free(msg);
		return;
	}
	msg->base.kind = ROOM_MSG_REQUEST;
	msg->m = m;
	to_room(m->room, msg);
}

/* Route one decoded request; takes ownership of msg. */
static void
session_dispatch(struct session *s, struct room_msg *msg)
{
	struct proto_req *req = &msg->req;
	struct member *m;

	switch (req->type) {
	case PROTO_HELLO:
		send_error(s, req, "bad_request", "already authenticated", -1);
		break;
	case PROTO_PING: {
		json_t *o = reply_obj("pong", req);

		json_object_set_new(o, "ts", json_integer(worker_now_ms()));
		send_json(s, o, FRAME_PONG);
		break;
	}
	case PROTO_JOIN:
		join(s, msg);
		return;
	default:
		if ((m = member_find(s, req)) == NULL) {
			send_error(s, req, "not_member", "join the room first", -1);
			break;
		}
		if (!msg->charged && !rate_check(s, req))
			break;
		if (proto_is_sequenced(req->type) && server_stopping(sess_worker(s)->srv)) {
			/* Stopping: what was accepted is finished, nothing new starts. */
			send_error(s, req, "unavailable", "server shutting down; retry on another connection",
			    SESSION_RETRY_SHUTDOWN_MS);
			break;
		}
		msg->charged = 1;
		if (m->state == MEMBER_PENDING) {
			if (m->npend >= SESSION_MAX_PENDING) {
				send_error(s, req, "rate_limited",
				    "too many requests before the join completed", 100);
				break;
			}
			pending_add(m, msg);
			return;
		}
		to_member(s, m, msg);
		return;
	}
	room_msg_free(msg);
}

static const char *
proto_code(enum proto_status st)
{
	return st == PROTO_TOO_LARGE ? "too_large" : "bad_request";
}

void
session_on_text(struct session *s, const uint8_t *data, size_t len)
{
	struct room_msg *msg = xcalloc(1, sizeof(*msg));
	struct worker *w = sess_worker(s);
	const char *why = NULL;
	enum proto_status st;

	st = proto_decode((const char *)data, len, sess_cfg(s)->max_body, &msg->req, &why);
	METRIC_INC(&w->metrics, requests[msg->req.type]);
	if (!s->authed) {
		if (st == PROTO_OK && msg->req.type == PROTO_HELLO)
			hello(s, &msg->req);
		else
			refuse(s, &msg->req, msg->req.type == PROTO_HELLO ? why :
			    "say hello first");
		room_msg_free(msg);
		return;
	}
	if (st != PROTO_OK) {
		send_error(s, &msg->req, proto_code(st), why != NULL ? why : "bad request", -1);
		room_msg_free(msg);
		return;
	}
	session_dispatch(s, msg);
}

void
session_free(struct session *s)
{
	struct worker *w = sess_worker(s);
	struct member *m, *next;

	for (m = s->rooms; m != NULL; m = next) {
		next = m->sess_next;
		m->sess_next = NULL;
		m->sess = NULL;
		pending_free(m);
		/* A pending member leaves once its JOINED comes back. */
		if (m->state == MEMBER_JOINED)
			member_leave(w, m, NULL, 1);
	}
	for (m = s->leaving; m != NULL; m = next) {
		next = m->sess_next;
		m->sess_next = NULL;
		m->sess = NULL;   /* its LEFT finds no one to tell */
	}
	free(s);
}

/* ---- what rooms send ---------------------------------------------------------------- */

void
session_deliver(struct worker *w, struct deliver_msg *dm)
{
	struct member *m = dm->room->local[w->id].head;
	uint64_t n = 0;

	for (; m != NULL; m = m->next) {
		if (dm->exclude[0] != '\0' && strcmp(m->user, dm->exclude) == 0)
			continue;
		if (conn_send_shared(m->sess->c, dm->f) == 0)
			n++;
	}
	if (dm->stream)
		METRIC_ADD(&w->metrics, deliveries, n);
	deliver_msg_free(dm);
}

static void
member_joined(struct worker *w, struct member_msg *mm)
{
	struct member *m = mm->m;
	struct session *s = m->sess;

	m->room = mm->room;
	if (s == NULL) {
		/* The connection went away while the join was on its way. */
		member_leave(w, m, NULL, 1);
		return;
	}
	m->state = MEMBER_JOINED;
	conn_send_shared(s->c, mm->reply);
	for (size_t i = 0; i < mm->nreplay; i++)
		conn_send_shared(s->c, mm->replay[i]);
	/* From here on every deliver reaches it: the replay ends where they start. */
	local_add(w, m);
	pending_replay(s, m);
}

void
session_member_event(struct worker *w, struct member_msg *mm)
{
	struct member *m = mm->m;
	struct session *s = m->sess;

	switch (mm->event) {
	case MEMBER_EV_JOINED:
		member_joined(w, mm);
		break;
	case MEMBER_EV_REPLY:
		if (s != NULL && mm->reply != NULL)
			conn_send_shared(s->c, mm->reply);
		break;
	case MEMBER_EV_LEFT:
		if (s != NULL) {
			list_unlink(&s->leaving, m);
			if (m->want_left && mm->reply != NULL)
				conn_send_shared(s->c, mm->reply);
		}
		room_release(mm->room);
		free(m);
		break;
	case MEMBER_EV_REFUSED:
		if (s != NULL) {
			conn_send_shared(s->c, mm->reply);
			member_unlink_session(s, m);
			pending_replay(s, m);
		}
		pending_free(m);
		free(m);
		break;
	}
	member_msg_free(mm);
}

void
session_member_discard(struct member *m)
{
	pending_free(m);
	free(m);
}
