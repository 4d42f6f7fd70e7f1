/*
 * store.h - the reads of a room's stream: the SQL the readers send and the
 * parsing of what comes back. Pure functions, any thread; no connection.
 *
 * Every query names the room by its (checked) name, quoted as a literal,
 * and is one round trip (several statements where several answers are
 * needed).
 */
#ifndef PARLEY_STORE_H
#define PARLEY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "names.h"

/* One stored event, pointing into a PGresult (valid while it is). */
struct stored_event {
	uint64_t seq;
	int type;                 /* enum persist_event_type */
	const char *user;
	int64_t target;           /* 0 for a message */
	const char *body;         /* NULL for delete and reaction */
	size_t body_len;
	const char *emoji;        /* reaction */
	int add;                  /* reaction */
	const char *id;           /* NULL without a client id */
	int64_t ts;
	int deleted;              /* a message or edit whose message was deleted */
};

/*
 * Room activation: the room's row is made if it is new (a room exists once
 * touched, PROTOCOL.md section 4), then four results:
 *   1: the room's id, its latest seq and that event's ts (0, 0 if none)
 *   2: the latest ring events, newest first (store_event_row)
 *   3: the latest ids_max client ids, newest first: user, id, seq, ts
 *   4: read positions: user, seq
 * (result 0 is the insert's).
 */
char *store_sql_activate(const char *room, unsigned ring, unsigned ids_max);
/*
 * The ids are looked for among the room's latest STORE_IDS_SCAN events (by
 * the primary key: no index of their own, which would cost a fifth of the
 * write rate). A room where fewer than ids_max of those carry an id loads
 * fewer; an id older than that which comes back is a new event, stored
 * without its id (persist.c).
 */
#define STORE_IDS_SCAN 100000
#define STORE_ACTIVATE_RESULTS 5

/* The latest limit + 1 events with seq <= top, newest first. */
char *store_sql_page(const char *room, uint64_t top, unsigned limit);

/*
 * What a request about an old message (below what the room keeps) needs:
 *   0: the event at seq target: kind, user
 *   1: whether a delete targets it
 *   2: its reactions in order: user, emoji, add
 */
char *store_sql_target(const char *room, uint64_t target);
#define STORE_TARGET_RESULTS 3

/*
 * The JSON of an event exactly as members receive it live (PROTOCOL.md
 * section 3): a deleted message (or an edit of one) shows an empty body and
 * "deleted": true. Live events and events read back both come here.
 */
json_t *store_event_json(const char *room, const struct stored_event *ev);

/*
 * GET /api/rooms/{room}/events for user, two results:
 *   0: whether the room exists, whether it is private, whether user is a member
 *   1: as store_sql_page
 */
char *store_sql_events_api(const char *room, const char *user, uint64_t top,
    unsigned limit);
#define STORE_EVENTS_API_RESULTS 2

/*
 * s as an SQL literal into out (cap bytes: 2 * strlen(s) + 3 always fit).
 * For checked names (names.h: rooms and users hold no quote), quoted as
 * if they could.
 */
#define STORE_LITERAL_MAX (2 * NAMES_ROOM_STR_MAX + 3)
void store_literal(char *out, size_t cap, const char *s);

/* Row row of a result of stored events; 0, or -1 if it does not parse. */
int store_event_row(const PGresult *r, int row, struct stored_event *ev);

/* "message", ... -> enum persist_event_type, or -1. */
int store_kind(const char *s);

/* Column col of row as an integer (0 when NULL). */
int64_t store_int(const PGresult *r, int row, int col);

#endif
