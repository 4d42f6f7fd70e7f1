/*
 * session.h - the chat protocol on one WebSocket connection: identity,
 * requests, rate limits, and the connection's side of room membership.
 *
 * Owner: the connection's worker; every function here runs on that thread.
 * A session belongs to its connection (created at the upgrade, freed with
 * it). Its memberships (struct member, room.h) belong to the same worker but
 * outlive the session when a room still has to answer them: a membership is
 * freed when its room's LEFT (or refusal) arrives, never before, so a room
 * never names a freed member.
 *
 * Requests from one connection are started in the order sent and answered
 * in that order (see "the request pipeline" in session.c).
 */
#ifndef PARLEY_SESSION_H
#define PARLEY_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "names.h"
#include "ratelimit.h"

struct conn;
struct worker;
struct member;
struct deliver_msg;
struct member_msg;

#define SESSION_MAX_ROOMS 1024     /* rooms one connection may be in */
#define SESSION_MAX_QUEUE 1024     /* requests waiting their turn: input pauses */
#define SESSION_MAX_OUTSTANDING 64 /* replies one room may owe a connection */
#define SESSION_JOIN_RATE 50       /* joins and leaves per second ... */
#define SESSION_JOIN_BURST 1024    /* ... after a burst of a whole room list */
#define SESSION_ABUSE_LIMIT 50     /* rate_limited errors within ... */
#define SESSION_ABUSE_WINDOW_MS 10000 /* ... this long: close 1008 */
#define SESSION_HELLO_TIMEOUT_MS 10000 /* a client must say hello within this */
#define SESSION_RETRY_SHUTDOWN_MS 1000 /* retry_after_ms of unavailable while stopping */

struct session {
	struct conn *c;
	uint8_t authed;
	uint32_t started_ms;           /* worker clock at the upgrade */
	uint32_t max_body;             /* --max-body at the upgrade, told in welcome:
	                                  a SIGHUP changes new connections only */
	char user[NAMES_USER_MAX + 1];
	char id[32];                   /* the welcome's session */
	struct member *rooms;          /* memberships joined or pending */
	struct member *leaving;        /* left, waiting for the room's LEFT */
	unsigned nrooms;
	struct rate_bucket seq_bucket, typing_bucket, read_bucket, join_bucket;
	uint32_t *abuse;               /* times of the last SESSION_ABUSE_LIMIT
	                                  rate_limited errors (from the first) */
	uint32_t abuse_count, abuse_pos;
	uint8_t closing;               /* server stopping: 1001 once nothing is owed */

	/* requests in order (session.c, "the request pipeline") */
	uint32_t outstanding;          /* room replies still to come */
	struct member *out_member;     /* the membership they come through */
	struct room_msg *q_head, *q_tail; /* requests waiting their turn */
	unsigned qlen;
	uint8_t input_paused;          /* queue full: not reading the socket */
};

/* At the upgrade: a session that has not said hello yet. */
struct session *session_new(struct conn *c);

/*
 * The upgrade request carried a valid token for user: authenticate now and
 * send welcome.
 */
void session_start(struct session *s, const char *user);

/*
 * Timer: a session that has not said hello by its deadline is refused
 * (unauthorized, close 1008). Returns 1 then; else 0 with *next set to the
 * deadline still pending (or left alone once authenticated).
 */
int session_hello_timer(struct session *s, uint32_t now_ms, uint32_t *next);

/*
 * The server is stopping: answer what was accepted, refuse new sequenced
 * requests with unavailable, and close with 1001 once nothing is owed.
 */
void session_shutdown(struct session *s);

/* The connection is going away: leave every room without replies. */
void session_free(struct session *s);

/* One complete text message from the client. */
void session_on_text(struct session *s, const uint8_t *data, size_t len);

/* Worker mailbox handlers for what rooms send. Each consumes its message. */
void session_deliver(struct worker *w, struct deliver_msg *dm);
void session_member_event(struct worker *w, struct member_msg *mm);

#endif
