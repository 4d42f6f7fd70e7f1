#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "migrate.h"

/* "parley" in ASCII: the key every parleyd takes before migrating. */
#define MIGRATE_LOCK_KEY "7061726c6579"

struct migration {
	int version;
	const char *name;
	const char *sql;
};

static const struct migration migrations[] = {
#include "db/migrations.inc"
};

#define NMIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

int
migrate_latest(void)
{
	return migrations[NMIGRATIONS - 1].version;
}

/* Run sql; 0 when it succeeded, else -1 with err filled. */
static int
exec_ok(PGconn *c, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (!ok)
		snprintf(err, errlen, "%s", PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : -1;
}

static int
current_version(PGconn *c, char *err, size_t errlen)
{
	PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_version");
	int v = -1;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		v = atoi(PQgetvalue(r, 0, 0));
	else
		snprintf(err, errlen, "%s", PQresultErrorMessage(r));
	PQclear(r);
	return v;
}

static int
record_version(PGconn *c, const struct migration *m, char *err, size_t errlen)
{
	char version[16];
	const char *params[2] = { version, m->name };
	PGresult *r;
	int ok;

	snprintf(version, sizeof(version), "%d", m->version);
	r = PQexecParams(c, "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
	    2, NULL, params, NULL, NULL, 0);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		snprintf(err, errlen, "%s", PQresultErrorMessage(r));
	PQclear(r);
	return ok ? 0 : -1;
}

int
migrate_apply(PGconn *c, char *err, size_t errlen)
{
	int version;

	if (exec_ok(c, "BEGIN", err, errlen) != 0)
		return -1;
	/* Held to the end of the transaction: the second server waits, then
	 * finds the work done. */
	if (exec_ok(c, "SELECT pg_advisory_xact_lock(x'" MIGRATE_LOCK_KEY "'::bigint)",
	    err, errlen) != 0 ||
	    exec_ok(c, "CREATE TABLE IF NOT EXISTS schema_version ("
	    "version integer PRIMARY KEY, name text NOT NULL, "
	    "applied_at timestamptz NOT NULL DEFAULT now())", err, errlen) != 0 ||
	    (version = current_version(c, err, errlen)) < 0)
		goto fail;
	if (version > migrate_latest()) {
		snprintf(err, errlen, "the database schema is version %d, newer than "
		    "this parleyd knows (%d): upgrade parleyd", version, migrate_latest());
		goto fail;
	}
	for (size_t i = 0; i < NMIGRATIONS; i++) {
		const struct migration *m = &migrations[i];

		if (m->version <= version)
			continue;
		if (exec_ok(c, m->sql, err, errlen) != 0 ||
		    record_version(c, m, err, errlen) != 0)
			goto fail;
		log_info("db_migrated version=%d name=%s", m->version, m->name);
		version = m->version;
	}
	if (exec_ok(c, "COMMIT", err, errlen) != 0)
		return -1;
	return version;
fail:
	PQclear(PQexec(c, "ROLLBACK"));
	return -1;
}
