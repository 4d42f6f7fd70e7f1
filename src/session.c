#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "conn.h"
#include "frame.h"
#include "jwt.h"
#include "live.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "room.h"
#include "server.h"
#include "session.h"
#include "settings.h"
#include "worker.h"
#include "xmalloc.h"

static struct worker *
sess_worker(const struct session *s)
{
	return s->c->w;
}

static const struct settings *
sess_cfg(const struct session *s)
{
	return &s->c->w->live->cfg;
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

static void
send_error(struct session *s, const struct proto_req *req, const char *code,
    const char *message, int64_t retry_after_ms)
{
	json_t *o = proto_reply("error", req);

	/* Every error frame of a session is built here (rooms count their own). */
	metrics_error(&sess_worker(s)->metrics, code);
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
	const struct settings *cfg = &c->w->live->cfg;

	s->c = c;
	rate_init(&s->seq_bucket, (uint32_t)cfg->burst, now);
	rate_init(&s->typing_bucket, (uint32_t)cfg->signal_burst, now);
	rate_init(&s->read_bucket, (uint32_t)cfg->signal_burst, now);
	rate_init(&s->join_bucket, SESSION_JOIN_BURST, now);
	s->started_ms = now;
	s->max_body = (uint32_t)cfg->max_body;
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
	json_t *o = proto_reply("welcome", req);

	s->authed = 1;
	snprintf(s->user, sizeof(s->user), "%s", user);
	snprintf(s->id, sizeof(s->id), "%s-%u-%llx", w->srv->session_prefix, w->id,
	    (unsigned long long)++w->sessions);
	json_object_set_new(o, "user", json_string(s->user));
	json_object_set_new(o, "session", json_string(s->id));
	json_object_set_new(o, "heartbeat", json_integer((json_int_t)s->c->heartbeat_s));
	json_object_set_new(o, "max_body", json_integer((json_int_t)s->max_body));
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
	struct jwt_claims claims;
	enum jwt_result jr;

	if (req->token != NULL) {
		/* When both come, the token decides. */
		jr = jwt_verify(&sess_worker(s)->live->verifier, req->token, strlen(req->token),
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
	m->in_local = 1;
}

static void
local_remove(struct worker *w, struct member *m)
{
	struct room_local *l = &m->room->local[w->id];

	if (!m->in_local)
		return;
	if (m->prev != NULL)
		m->prev->next = m->next;
	else if (l->head == m)
		l->head = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	m->prev = m->next = NULL;
	m->in_local = 0;
}

static void
to_room(struct room *r, struct room_msg *msg)
{
	if (room_push(r, msg))
		worker_schedule_room(r);
}

/*
 * A LEAVE for a joined member; it is freed when the room's LEFT comes. A
 * client's leave keeps getting the events sequenced before it (its own
 * included) until then; a closed connection stops at once.
 */
static void
member_leave(struct worker *w, struct member *m, struct room_msg *msg, int silent)
{
	if (msg == NULL)
		msg = xcalloc(1, sizeof(*msg));
	if (silent)
		local_remove(w, m);
	m->state = MEMBER_LEAVING;
	msg->base.kind = ROOM_MSG_LEAVE;
	msg->m = m;
	msg->silent = (uint8_t)silent;
	to_room(m->room, msg);
}

/* ---- the request pipeline ------------------------------------------------------ */

/*
 * Requests are started in the order sent and answered in that order. A
 * request that the room answers leaves its reply outstanding; while one
 * is, only further requests to the same room may start (that room answers
 * them in order); anything else waits in the queue, so a local answer (an
 * error, a pong) never overtakes a room's. The queue is bounded by pausing
 * input.
 */
static void
queue_push(struct session *s, struct room_msg *msg)
{
	msg->base.next = NULL;
	if (s->q_tail != NULL)
		s->q_tail->base.next = &msg->base;
	else
		s->q_head = msg;
	s->q_tail = msg;
	if (++s->qlen >= SESSION_MAX_QUEUE && !s->input_paused) {
		s->input_paused = 1;
		conn_pause_input(s->c, 1);
	}
}

static struct room_msg *
queue_pop(struct session *s)
{
	struct room_msg *msg = s->q_head;

	if (msg == NULL)
		return NULL;
	s->q_head = (struct room_msg *)msg->base.next;
	if (s->q_head == NULL)
		s->q_tail = NULL;
	msg->base.next = NULL;
	s->qlen--;
	return msg;
}

static void
queue_unpop(struct session *s, struct room_msg *msg)
{
	msg->base.next = s->q_head != NULL ? &s->q_head->base : NULL;
	s->q_head = msg;
	if (s->q_tail == NULL)
		s->q_tail = msg;
	s->qlen++;
}

static void
outstanding_add(struct session *s, struct member *m)
{
	s->outstanding++;
	s->out_member = m;
}

static int
join_start(struct session *s, struct room_msg *msg)
{
	struct worker *w = sess_worker(s);
	struct member *m;

	if (s->outstanding > 0)
		return 0;
	if ((m = member_find(s, &msg->req)) != NULL) {
		/* Already in: a fresh snapshot, nothing replayed again. */
		msg->base.kind = ROOM_MSG_JOIN;
		msg->m = m;
		msg->rejoin = 1;
		outstanding_add(s, m);
		to_room(m->room, msg);
		return 1;
	}
	if (s->nrooms >= SESSION_MAX_ROOMS) {
		send_error(s, &msg->req, "bad_request", "too many rooms joined on this connection", -1);
		room_msg_free(msg);
		return 1;
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
	outstanding_add(s, m);
	worker_route_join(w, msg);
	return 1;
}

/* Answered here: only when no room reply is still due. */
static int
local_start(struct session *s, struct room_msg *msg)
{
	struct proto_req *req = &msg->req;

	if (s->outstanding > 0)
		return 0;
	if (msg->local_code != NULL) {
		send_error(s, req, msg->local_code, msg->local_message, msg->local_retry_ms);
		if (msg->local_close) {
			log_info("rate_abuse_close fd=%d user=%s", s->c->fd, s->user);
			conn_close_async(s->c, WS_CLOSE_POLICY);
		}
	} else if (req->type == PROTO_HELLO) {
		send_error(s, req, "bad_request", "already authenticated", -1);
	} else if (req->type == PROTO_PING) {
		json_t *o = proto_reply("pong", req);

		json_object_set_new(o, "ts", json_integer(worker_now_ms()));
		send_json(s, o, FRAME_PONG);
	}
	room_msg_free(msg);
	return 1;
}

static int
room_start(struct session *s, struct room_msg *msg)
{
	struct proto_req *req = &msg->req;
	struct member *m = member_find(s, req);

	if (m == NULL) {
		msg->local_code = "not_member";
		msg->local_message = "join the room first";
		return local_start(s, msg);
	}
	if (m->state == MEMBER_PENDING || (s->outstanding > 0 && s->out_member != m) ||
	    s->outstanding >= SESSION_MAX_OUTSTANDING)
		return 0;   /* its JOINED, another room's replies, or enough in flight */
	if (proto_is_sequenced(req->type) && server_stopping(sess_worker(s)->srv)) {
		/* Stopping: what was accepted is finished, nothing new starts. */
		msg->local_code = "unavailable";
		msg->local_message = "server shutting down; retry on another connection";
		msg->local_retry_ms = SESSION_RETRY_SHUTDOWN_MS;
		return local_start(s, msg);
	}
	msg->m = m;
	if (req->type == PROTO_LEAVE) {
		m->want_left = 1;
		member_unlink_session(s, m);
		/* Still ours until LEFT: it carries the reply to this client. */
		m->sess_next = s->leaving;
		s->leaving = m;
		outstanding_add(s, m);
		member_leave(sess_worker(s), m, msg, 0);
		return 1;
	}
	msg->base.kind = ROOM_MSG_REQUEST;
	/* typing and read have no reply: nothing to wait for. */
	if (req->type != PROTO_TYPING && req->type != PROTO_READ)
		outstanding_add(s, m);
	to_room(m->room, msg);
	return 1;
}

/* 1 when msg was started (and is no longer ours), 0 when it must wait. */
static int
try_start(struct session *s, struct room_msg *msg)
{
	if (msg->local_code != NULL)
		return local_start(s, msg);
	switch (msg->req.type) {
	case PROTO_HELLO:
	case PROTO_PING:
		return local_start(s, msg);
	case PROTO_JOIN:
		return join_start(s, msg);
	default:
		return room_start(s, msg);
	}
}

/* Stopping, and nothing owed or waiting: say goodbye. */
static void
maybe_close(struct session *s)
{
	if (s->closing && s->outstanding == 0 && s->qlen == 0)
		conn_close_async(s->c, WS_CLOSE_GOING_AWAY);
}

static void
session_dispatch(struct session *s, struct room_msg *msg)
{
	if (s->q_head != NULL || !try_start(s, msg))
		queue_push(s, msg);
	maybe_close(s);
}

/* A reply came back: start whatever was waiting for it. */
static void
queue_drain(struct session *s)
{
	struct room_msg *msg;

	while ((msg = queue_pop(s)) != NULL) {
		if (!try_start(s, msg)) {
			queue_unpop(s, msg);
			break;
		}
	}
	if (s->input_paused && s->qlen < SESSION_MAX_QUEUE / 2) {
		s->input_paused = 0;
		conn_pause_input(s->c, 0);
	}
}

static void
reply_arrived(struct session *s)
{
	if (s->outstanding > 0 && --s->outstanding == 0)
		s->out_member = NULL;
	if (s->outstanding == 0)
		queue_drain(s);
	maybe_close(s);
}

void
session_shutdown(struct session *s)
{
	s->closing = 1;
	maybe_close(s);
}

/* ---- rate limits --------------------------------------------------------------- */

/*
 * Remember a rate_limited error; 1 when it is the SESSION_ABUSE_LIMIT-th
 * within SESSION_ABUSE_WINDOW_MS (a sliding window: the times of the last
 * errors, kept only for connections that have had one).
 */
static int
abuse_record(struct session *s, uint32_t now)
{
	uint32_t oldest;

	if (s->abuse == NULL)
		s->abuse = xcalloc(SESSION_ABUSE_LIMIT, sizeof(*s->abuse));
	s->abuse[s->abuse_pos] = now;
	s->abuse_pos = (s->abuse_pos + 1) % SESSION_ABUSE_LIMIT;
	if (s->abuse_count < SESSION_ABUSE_LIMIT)
		s->abuse_count++;
	if (s->abuse_count < SESSION_ABUSE_LIMIT)
		return 0;
	oldest = s->abuse[s->abuse_pos];   /* the next slot to reuse */
	return now - oldest < SESSION_ABUSE_WINDOW_MS;
}

/* At arrival: a request over its bucket is answered locally, in its turn. */
static void
rate_check(struct session *s, struct room_msg *msg)
{
	const struct settings *cfg = sess_cfg(s);
	const struct proto_req *req = &msg->req;
	uint32_t now = worker_clock_ms(sess_worker(s)), wait;

	if (cfg->rate == 0)
		return;   /* --rate 0 lifts every limit */
	if (proto_is_sequenced(req->type))
		wait = rate_take(&s->seq_bucket, (uint32_t)cfg->rate, (uint32_t)cfg->burst, now);
	else if (req->type == PROTO_TYPING)
		wait = rate_take(&s->typing_bucket, (uint32_t)cfg->signal_rate,
		    (uint32_t)cfg->signal_burst, now);
	else if (req->type == PROTO_READ)
		wait = rate_take(&s->read_bucket, (uint32_t)cfg->signal_rate,
		    (uint32_t)cfg->signal_burst, now);
	else if (req->type == PROTO_JOIN || req->type == PROTO_LEAVE)
		/* Each join may create a room: bound what one client can make. */
		wait = rate_take(&s->join_bucket, SESSION_JOIN_RATE, SESSION_JOIN_BURST, now);
	else
		return;
	if (wait == 0)
		return;
	METRIC_INC(&sess_worker(s)->metrics, rate_limited);
	msg->local_code = "rate_limited";
	msg->local_message = "too many requests; slow down";
	msg->local_retry_ms = wait;
	if (abuse_record(s, now))
		msg->local_close = 1;
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

	msg->local_retry_ms = -1;
	st = proto_decode((const char *)data, len, s->max_body, &msg->req, &why);
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
		msg->local_code = proto_code(st);
		msg->local_message = why != NULL ? why : "bad request";
	} else {
		rate_check(s, msg);
	}
	session_dispatch(s, msg);
}

void
session_free(struct session *s)
{
	struct worker *w = sess_worker(s);
	struct member *m, *next;
	struct room_msg *msg;

	while ((msg = queue_pop(s)) != NULL)
		room_msg_free(msg);
	for (m = s->rooms; m != NULL; m = next) {
		next = m->sess_next;
		m->sess_next = NULL;
		m->sess = NULL;
		/* A pending member leaves once its JOINED comes back. */
		if (m->state == MEMBER_JOINED)
			member_leave(w, m, NULL, 1);
	}
	for (m = s->leaving; m != NULL; m = next) {
		next = m->sess_next;
		m->sess_next = NULL;
		m->sess = NULL;   /* its LEFT finds no one to tell */
		local_remove(w, m);
	}
	free(s->abuse);
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
	reply_arrived(s);
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
		if (s != NULL) {
			if (mm->reply != NULL)
				conn_send_shared(s->c, mm->reply);
			reply_arrived(s);
		}
		break;
	case MEMBER_EV_NOTICE:
		/* An error to a request nobody waits on (a read): no turn ends. */
		if (s != NULL && mm->reply != NULL)
			conn_send_shared(s->c, mm->reply);
		break;
	case MEMBER_EV_LEFT:
		local_remove(w, m);
		room_release(mm->room);
		if (s != NULL) {
			list_unlink(&s->leaving, m);
			if (m->want_left && mm->reply != NULL)
				conn_send_shared(s->c, mm->reply);
			free(m);
			reply_arrived(s);
			break;
		}
		free(m);
		break;
	case MEMBER_EV_REFUSED:
		if (s != NULL) {
			conn_send_shared(s->c, mm->reply);
			member_unlink_session(s, m);
			free(m);
			reply_arrived(s);
			break;
		}
		free(m);
		break;
	}
	member_msg_free(mm);
}
