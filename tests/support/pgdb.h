/*
 * pgdb: a PostgreSQL database of a test's own, on the test stack's server (TALLY_PG_DSN).
 *
 * Why: command-svc's relay leads per database (an advisory lock) and other test binaries run
 * against the stack's database at the same time, so a test that runs the relay needs a database
 * nobody else writes. pgdb_create() makes one with a name unique to the process and call,
 * pgdb_migrate() runs `command-svc migrate` against it, pgdb_drop() drops it (WITH (FORCE):
 * sessions still open are ended).
 *
 * Functions assert (Criterion) instead of returning errors.
 */
#ifndef TALLY_TEST_PGDB_H
#define TALLY_TEST_PGDB_H

#include <libpq-fe.h>

typedef struct pgdb {
    char name[64];        /* "" until created, and again once dropped */
    char dsn[1024];       /* the services' conninfo of it: TALLY_PG_DSN's, dbname replaced */
    char owner_dsn[1024]; /* the owner's (pgdb_owner_dsn's parameters): migrations, raw SQL */
    char pg_var[1100];    /* "TALLY_PG_DSN=<dsn>", for a service's environment */
    char admin[1024];     /* pgdb_owner_dsn() when it was created: where it is dropped from */
} pgdb;

/*
 * The test stack's owner DSN (TALLY_PG_MIGRATE_DSN, which scripts/test exports; TALLY_PG_DSN
 * when unset). TALLY_PG_DSN is the services' role (tally_app), held to row-level security:
 * it sees no row without a tenant set, so a test's own SQL goes through the owner.
 */
const char *pgdb_owner_dsn(void);

/*
 * Creates the database "<prefix>_<pid>_<n>_<us>" (prefix: a few lower-case letters) on
 * TALLY_PG_DSN's server; the caller may point TALLY_PG_DSN at it afterwards.
 */
void pgdb_create(pgdb *d, const char *prefix);

/*
 * Runs `command-svc migrate` against it as the owner (no inherited TALLY_* variable) and asserts
 * exit 0.
 */
void pgdb_migrate(const pgdb *d);

/* Drops it; no-op when it was not created (or is dropped already). */
void pgdb_drop(pgdb *d);

/* A connection to it as the owner (asserts it connects); caller frees with PQfinish. */
PGconn *pgdb_connect(const pgdb *d);

/* A connection to dsn (asserts it connects); caller frees with PQfinish. */
PGconn *pgdb_connect_dsn(const char *dsn);

/*
 * The test's one way to run SQL: q with n text parameters on pg, asserting it succeeds (rows
 * or a command); the caller frees the result with PQclear.
 */
PGresult *pgdb_sql(PGconn *pg, const char *q, int n, const char *const *params);

/* pgdb_sql of a query of one row whose first column is a whole number: that number. */
long long pgdb_int(PGconn *pg, const char *q, int n, const char *const *params);

#endif
