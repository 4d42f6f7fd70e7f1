#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "persist.h"
#include "store.h"
#include "xmalloc.h"

void
store_literal(char *out, size_t cap, const char *s)
{
	size_t o = 0;

	out[o++] = '\'';
	for (; *s != '\0' && o + 3 < cap; s++) {
		if (*s == '\'')
			out[o++] = '\'';
		out[o++] = *s;
	}
	out[o++] = '\'';
	out[o] = '\0';
}

#define EVENT_COLUMNS \
	"e.seq, e.kind, e.user_name, e.target, e.body, e.emoji, e.add, e.client_id, e.ts, " \
	"e.kind IN ('message', 'edit') AND EXISTS (SELECT 1 FROM events d " \
	"WHERE d.room_id = e.room_id AND d.kind = 'delete' AND d.target = " \
	"CASE WHEN e.kind = 'message' THEN e.seq ELSE e.target END)"

/* The room's id, by its name (a literal). */
#define ROOM_ID "(SELECT id FROM rooms WHERE name = %s)"

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
format(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

char *
store_sql_activate(const char *room, unsigned ring, unsigned ids_max)
{
	char q[STORE_LITERAL_MAX];

	store_literal(q, sizeof(q), room);
	/* The ts of the latest event is the room's latest (ts never goes
	 * back within a room): no scan for max(ts). */
	return format(
	    "INSERT INTO rooms (name) VALUES (%s) ON CONFLICT (name) DO NOTHING;"
	    "SELECT r.id, coalesce(l.seq, 0), coalesce(l.ts, 0) FROM rooms r "
	    "LEFT JOIN LATERAL (SELECT seq, ts FROM events WHERE room_id = r.id "
	    "ORDER BY seq DESC LIMIT 1) l ON true WHERE r.name = %s;"
	    "SELECT " EVENT_COLUMNS " FROM events e WHERE e.room_id = " ROOM_ID " "
	    "ORDER BY e.seq DESC LIMIT %u;"
	    "SELECT user_name, client_id, seq, ts FROM events WHERE room_id = " ROOM_ID " "
	    "AND client_id IS NOT NULL AND seq > (SELECT coalesce(max(seq), 0) "
	    "FROM events WHERE room_id = " ROOM_ID ") - %u ORDER BY seq DESC LIMIT %u;"
	    "SELECT user_name, seq FROM read_positions WHERE room_id = " ROOM_ID,
	    q, q, q, ring, q, q, STORE_IDS_SCAN, ids_max, q);
}

char *
store_sql_page(const char *room, uint64_t top, unsigned limit)
{
	char q[STORE_LITERAL_MAX];

	store_literal(q, sizeof(q), room);
	return format("SELECT " EVENT_COLUMNS " FROM events e WHERE e.room_id = " ROOM_ID " "
	    "AND e.seq <= %llu ORDER BY e.seq DESC LIMIT %u",
	    q, (unsigned long long)top, limit + 1);
}

char *
store_sql_target(const char *room, uint64_t target)
{
	char q[STORE_LITERAL_MAX];
	unsigned long long t = (unsigned long long)target;

	store_literal(q, sizeof(q), room);
	return format(
	    "SELECT kind, user_name FROM events WHERE room_id = " ROOM_ID " AND seq = %llu;"
	    "SELECT EXISTS (SELECT 1 FROM events WHERE room_id = " ROOM_ID " AND target = %llu "
	    "AND kind = 'delete');"
	    "SELECT user_name, emoji, add FROM events WHERE room_id = " ROOM_ID
	    " AND target = %llu AND kind = 'reaction' ORDER BY seq",
	    q, t, q, t, q, t);
}

char *
store_sql_events_api(const char *room, const char *user, uint64_t top, unsigned limit)
{
	char q[STORE_LITERAL_MAX], u[STORE_LITERAL_MAX];
	char *page = store_sql_page(room, top, limit), *sql;

	store_literal(q, sizeof(q), room);
	store_literal(u, sizeof(u), user);
	sql = format("SELECT EXISTS (SELECT 1 FROM rooms WHERE name = %s), "
	    "coalesce((SELECT private FROM rooms WHERE name = %s), false), "
	    "EXISTS (SELECT 1 FROM members WHERE room_id = " ROOM_ID " AND user_name = %s);%s",
	    q, q, q, u, page);
	free(page);
	return sql;
}

json_t *
store_event_json(const char *room, const struct stored_event *ev)
{
	static const char *const names[] = {
		[PERSIST_MESSAGE] = "message", [PERSIST_EDIT] = "edit",
		[PERSIST_DELETE] = "delete", [PERSIST_REACTION] = "reaction",
	};
	json_t *o = json_object();

	json_object_set_new(o, "type", json_string(names[ev->type]));
	json_object_set_new(o, "room", json_string(room));
	json_object_set_new(o, "seq", json_integer((json_int_t)ev->seq));
	if (ev->type != PERSIST_MESSAGE)
		json_object_set_new(o, "target", json_integer(ev->target));
	json_object_set_new(o, "user", json_string(ev->user));
	if (ev->type == PERSIST_MESSAGE || ev->type == PERSIST_EDIT)
		json_object_set_new(o, "body", ev->deleted ? json_string("") :
		    json_stringn(ev->body != NULL ? ev->body : "", ev->body_len));
	if (ev->type == PERSIST_REACTION) {
		json_object_set_new(o, "emoji", json_string(ev->emoji != NULL ? ev->emoji : ""));
		json_object_set_new(o, "add", json_boolean(ev->add));
	}
	json_object_set_new(o, "ts", json_integer(ev->ts));
	if (ev->id != NULL)
		json_object_set_new(o, "id", json_string(ev->id));
	if (ev->deleted)
		json_object_set_new(o, "deleted", json_true());
	return o;
}

int
store_kind(const char *s)
{
	if (strcmp(s, "message") == 0)
		return PERSIST_MESSAGE;
	if (strcmp(s, "edit") == 0)
		return PERSIST_EDIT;
	if (strcmp(s, "delete") == 0)
		return PERSIST_DELETE;
	if (strcmp(s, "reaction") == 0)
		return PERSIST_REACTION;
	return -1;
}

int64_t
store_int(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return 0;
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *
text_or_null(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

int
store_event_row(const PGresult *r, int row, struct stored_event *ev)
{
	if (PQnfields(r) < 10 || row >= PQntuples(r))
		return -1;
	memset(ev, 0, sizeof(*ev));
	ev->seq = (uint64_t)store_int(r, row, 0);
	if ((ev->type = store_kind(PQgetvalue(r, row, 1))) < 0 || ev->seq == 0)
		return -1;
	ev->user = PQgetvalue(r, row, 2);
	ev->target = store_int(r, row, 3);
	ev->body = text_or_null(r, row, 4);
	ev->body_len = ev->body != NULL ? (size_t)PQgetlength(r, row, 4) : 0;
	ev->emoji = text_or_null(r, row, 5);
	ev->add = !PQgetisnull(r, row, 6) && PQgetvalue(r, row, 6)[0] == 't';
	ev->id = text_or_null(r, row, 7);
	ev->ts = store_int(r, row, 8);
	ev->deleted = PQgetvalue(r, row, 9)[0] == 't';
	return 0;
}
