/*
 * migrate: the schema of the write side, as numbered SQL migrations compiled into the binary
 * (command-svc/migrations/NNNN_name.sql). migrate_apply() runs the pending ones, each in its own
 * transaction and all under an advisory lock, so two Jobs started at once cannot interleave;
 * schema_migrations records what was applied. migrate_check() is what the service runs at
 * start: it refuses a database whose schema version is not the one it was built for.
 */
#ifndef TALLY_MIGRATE_H
#define TALLY_MIGRATE_H

#include <stddef.h>

/* The schema version this binary knows: the number of its last migration. */
int migrate_latest(void);

/* Applies pending migrations. 0, or a tally_err with the reason in err. Logs each one. */
int migrate_apply(const char *dsn, char *err, size_t errlen);

/*
 * 0 when the database is at migrate_latest(); TALLY_EPRECOND (or EUNAVAIL) with why in err.
 * Warns (log) when the role is not held to row-level security (a superuser, the owner).
 */
int migrate_check(const char *dsn, char *err, size_t errlen);

#endif
