/*
 * migrate.h - the schema: versioned migrations (db/migrations/NNNN_*.sql,
 * compiled in) applied in one transaction under an advisory lock, so two
 * servers starting at once do not race; each applied version is recorded
 * in schema_version.
 *
 * Called by the persistence thread on its own (blocking) connection, each
 * time it connects; a schema already current costs one round trip.
 */
#ifndef PARLEY_MIGRATE_H
#define PARLEY_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

/* The newest version this build knows. */
int migrate_latest(void);

/*
 * Bring the database to migrate_latest(). Returns the version it is at,
 * or -1 with err filled (a database newer than this build is an error:
 * it refuses to guess what a later schema means).
 */
int migrate_apply(PGconn *c, char *err, size_t errlen);

#endif
