/*
 * reader.h - a worker's non-blocking PostgreSQL connection for reads: room
 * activation, history beyond the ring, old targets, the HTTP events API.
 *
 * Owner: one worker. Every function runs on that worker's thread; the
 * connection's socket is an event in its loop, so a read never blocks it.
 * Queries run one at a time in the order queued (each may hold several
 * statements: one round trip). The reader connects lazily and reconnects
 * with backoff; it takes queries only while connected and the schema is
 * in place (the persistence thread applies it), so a caller learns at once
 * that the database is unavailable instead of waiting on it.
 */
#ifndef PARLEY_READER_H
#define PARLEY_READER_H

#include <stdint.h>

#include <libpq-fe.h>

struct event_base;
struct db_reader;
struct db_query;

/*
 * Called once per query on the worker's thread: res[0..nres) are its
 * results (owned by the reader, cleared after the call), or error is set
 * (res NULL) when the query failed or the connection was lost.
 */
typedef void db_reader_cb(void *arg, PGresult *const *res, int nres, const char *error);

/* schema_ready: an atomic int that says the tables exist. */
struct db_reader *db_reader_new(struct event_base *base, const char *conninfo,
    unsigned worker, const int *schema_ready);
void db_reader_free(struct db_reader *rd);   /* drops queued queries, no calls */

/* 1 when a query queued now would run (connected, schema in place). */
int db_reader_up(struct db_reader *rd);

/*
 * Queue sql (owned by the reader from now on, freed with free()). Returns
 * a handle, or NULL when the reader is not up (sql is freed; cb is never
 * called). cb is never called before this returns.
 */
struct db_query *db_reader_query(struct db_reader *rd, char *sql, db_reader_cb *cb,
    void *arg);

/* The caller is going away: its callback will not be called. */
void db_reader_cancel(struct db_reader *rd, struct db_query *q);

#endif
