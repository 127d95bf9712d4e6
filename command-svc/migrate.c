#include "migrate.h"

#include "embedded.h"
#include "err.h"
#include "log.h"
#include "pgx.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The SQL migrations, ordered by name (0001_..., 0002_...), compiled in. */
extern const embedded_file migrations[];
extern const size_t migrations_count;

#define LOCK_KEY "7411001" /* advisory lock of the migrations; the relay uses another */

static const char create_table[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())";

int migrate_latest(void)
{
    return migrations_count ? atoi(migrations[migrations_count - 1].name) : 0;
}

static PGconn *connect_db(const char *dsn, char *err, size_t errlen)
{
    /* Notices such as "schema_migrations already exists, skipping" are noise here. */
    const char *keys[] = { "dbname", "connect_timeout", "application_name", "options", NULL };
    const char *vals[] = { dsn, "5", "command-svc-migrate", "-c client_min_messages=warning",
                           NULL };
    PGconn *pg = PQconnectdbParams(keys, vals, 1);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s",
                 pg ? PQerrorMessage(pg) : "out of memory");
        err[strcspn(err, "\n")] = '\0';
        PQfinish(pg);
        return NULL;
    }
    pgx_log_notices(pg);
    return pg;
}

/* Runs sql; 0 or TALLY_EINTERNAL with the server's message in err. */
static int run(PGconn *pg, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        snprintf(err, errlen, "%s: %s", what, PQresultErrorMessage(r));
        err[strcspn(err, "\n")] = '\0';
    }
    PQclear(r);
    return ok ? 0 : TALLY_EINTERNAL;
}

/* The highest applied version, or -1 with err set. */
static int current_version(PGconn *pg, char *err, size_t errlen)
{
    PGresult *r = PQexec(pg, "SELECT to_regclass('schema_migrations') IS NOT NULL");
    int v = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "reading the schema version: %s", PQresultErrorMessage(r));
    } else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        v = 0;
    } else {
        PQclear(r);
        r = PQexec(pg, "SELECT coalesce(max(version), 0) FROM schema_migrations");
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            v = atoi(PQgetvalue(r, 0, 0));
        else
            snprintf(err, errlen, "reading the schema version: %s", PQresultErrorMessage(r));
    }
    PQclear(r);
    err[strcspn(err, "\n")] = '\0';
    return v;
}

int migrate_apply(const char *dsn, char *err, size_t errlen)
{
    PGconn *pg = connect_db(dsn, err, errlen);
    int rc, current;
    if (!pg)
        return TALLY_EUNAVAIL;
    if ((rc = run(pg, "SELECT pg_advisory_lock(" LOCK_KEY ")", "taking the migration lock", err,
                  errlen)) != 0 ||
        (rc = run(pg, create_table, "creating schema_migrations", err, errlen)) != 0)
        goto out;
    if ((current = current_version(pg, err, errlen)) < 0) {
        rc = TALLY_EINTERNAL;
        goto out;
    }
    if (current > migrate_latest()) {
        snprintf(err, errlen, "the database is at schema version %d, newer than this binary's %d",
                 current, migrate_latest());
        rc = TALLY_EPRECOND;
        goto out;
    }
    for (size_t i = 0; i < migrations_count; i++) {
        int version = atoi(migrations[i].name);
        char record[256];
        if (version <= current)
            continue;
        snprintf(record, sizeof(record),
                 "INSERT INTO schema_migrations (version, name) VALUES (%d, '%s')", version,
                 migrations[i].name);
        if ((rc = run(pg, "BEGIN", "BEGIN", err, errlen)) != 0 ||
            (rc = run(pg, migrations[i].data, migrations[i].name, err, errlen)) != 0 ||
            (rc = run(pg, record, "recording the migration", err, errlen)) != 0 ||
            (rc = run(pg, "COMMIT", "COMMIT", err, errlen)) != 0) {
            char ignore[64];
            run(pg, "ROLLBACK", "ROLLBACK", ignore, sizeof(ignore));
            goto out;
        }
        log_info("migration applied", LOG_INT("version", version),
                 LOG_STR("name", migrations[i].name));
    }
    log_info("schema is up to date", LOG_INT("version", migrate_latest()));
out:
    PQfinish(pg); /* also releases the advisory lock */
    return rc;
}

/*
 * The services should connect as a member of tally_service (migration 0007): a superuser, a
 * role with BYPASSRLS or the tables' owner is not held to row-level security and may change the
 * schema. Said at every start, as TALLY_AUTH=off is.
 */
static void warn_if_unguarded(PGconn *pg)
{
    PGresult *r =
        PQexec(pg, "SELECT r.rolsuper OR r.rolbypassrls OR pg_has_role(c.relowner, 'USAGE')"
                   " FROM pg_roles r, pg_class c"
                   " WHERE r.rolname = current_user AND c.oid = 'events'::regclass");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
        strcmp(PQgetvalue(r, 0, 0), "t") == 0)
        log_warn("connected to PostgreSQL as a role that bypasses row-level security and may "
                 "change the schema: connect as a member of tally_service (docs/security.md)",
                 LOG_STR("role", PQuser(pg)));
    PQclear(r);
}

int migrate_check(const char *dsn, char *err, size_t errlen)
{
    PGconn *pg = connect_db(dsn, err, errlen);
    int current, rc = 0;
    if (!pg)
        return TALLY_EUNAVAIL;
    current = current_version(pg, err, errlen);
    if (current < 0) {
        rc = TALLY_EUNAVAIL;
    } else if (current != migrate_latest()) {
        snprintf(err, errlen, "the database is at schema version %d, this binary needs %d: %s",
                 current, migrate_latest(),
                 current < migrate_latest()
                     ? "run `command-svc migrate` first"
                     : "it is newer than this binary; deploy the newer command-svc");
        rc = TALLY_EPRECOND;
    } else {
        warn_if_unguarded(pg);
    }
    PQfinish(pg);
    return rc;
}
