/*
 * verify: the oracle of the read model. Recomputes a tenant's read-model figures from
 * PostgreSQL (the source of truth) with SQL and compares them with the tenant's current
 * generation in Redis (docs/keyspace.md), reporting every difference through a callback.
 * Used by `tally verify` (cli/) and by the projector's periodic run (projector/verify_loop.c).
 *
 * What is compared, per tenant (P = {t:T}:<gen>:):
 *   - current state: P st, P open (members and scores), P od, P ao, P cv (each complaint's
 *     applied version against complaints.version), reference data P tenant, P cats, P agents;
 *   - the window: every day and month key of the whole months that hold the last `days`
 *     tenant-local days and tomorrow: P d:M, P kc:M, P lb:M, P hm:M:{a,k,p,kp}, P ad:M,
 *     P hd:D:{a,k,p,kp}, P ad:D.
 * Not compared: keys of months before the window, P refseq and P fresh (bookkeeping, not
 * figures), tenants that exist in Redis only (finding them would need a SCAN).
 *
 * Truth: a creation is the complaints row with the local_day of its version-1 event; a
 * resolution is a status_history row with to_status 3, counted on its event's local_day, with
 * floor((changed_at - created_at) in ms / 1000) seconds (bucket by hist.h), credited to the
 * agent of the complaint's latest ComplaintAssigned event before it (VERIFY_SQL_ASSIGNED_AGENT
 * decodes the payload); the current status and assignee are complaints.status and
 * assigned_agent_id, or the status_history row and assignment event at the applied version.
 *
 * Events in flight: the read model records per complaint the version it has applied (P cv).
 * verify reads all the tenant's keys in one MULTI/EXEC (a consistent cut: tally_apply is
 * atomic), passes that cv to PostgreSQL and computes every figure "as of" it, counting only
 * the events (complaint, version <= cv) the read model has applied. So the views compare
 * exactly, whatever is in flight. What remains is whether the applied versions keep up:
 * a complaint whose cv is behind complaints.version (or absent), and a reference-data field
 * that differs, are re-read after settle_ms; only what is still behind or different then is
 * reported. A complaint behind because it is parked ({t:T}:parked) is counted in
 * verify_stats.parked, not as drift (the dead letters have their own alert).
 *
 * The engine never prints; it reports through verify_diff_fn. Not thread-safe per connection:
 * give each thread its own pgx_conn and kv_conn.
 */
#ifndef TALLY_VERIFY_H
#define TALLY_VERIFY_H

#include "kv.h"
#include "pgx.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VERIFY_DEFAULT_DAYS      35
#define VERIFY_MAX_DAYS          3660
#define VERIFY_DEFAULT_SETTLE_MS 5000
#define VERIFY_MAX_SETTLE_MS     600000

/*
 * CREATE FUNCTION pg_temp.assigned_agent(bytea) RETURNS text: the agent_id (field 2) of a
 * serialized ComplaintAssigned, '' when it is absent (unassigned). Shared with the tests'
 * SQL oracles (tests/integration/query/oracle_sql.c).
 */
extern const char VERIFY_SQL_ASSIGNED_AGENT[];

typedef struct verify_options {
    const char *tenant; /* NULL or "": every tenant of the tenants table */
    int days;           /* 1..VERIFY_MAX_DAYS: the window's tenant-local days ending today */
    int settle_ms;      /* 0..VERIFY_MAX_SETTLE_MS: wait before re-reading what lags */
    int64_t timeout_ms; /* bound of each SQL statement (0: 60 s) */
    bool (*stop)(void); /* NULL, or true when the run should end early (between tenants) */
} verify_options;

/* One difference. Strings are borrowed for the callback's duration; NULL = absent. */
typedef struct verify_diff {
    const char *tenant;
    const char *view;  /* "st", "open", "od", "ao", "cv", "d", "kc", "lb", "hm", "ad", "hd",
                          "tenant", "cats", "agents" */
    const char *key;   /* the Redis key */
    const char *field; /* hash field or zset member; "" for the key as a whole */
    const char *expected;
    const char *found;
} verify_diff;

typedef void (*verify_diff_fn)(const verify_diff *d, void *arg);

typedef struct verify_stats {
    int tenants;
    int64_t keys;    /* Redis keys compared */
    int64_t fields;  /* fields and members compared */
    int64_t diffs;   /* differences reported (persisting ones) */
    int64_t settled; /* differences gone after the settle delay (events in flight) */
    int64_t parked;  /* complaints behind because parked (not drift) */
    int64_t sql_ms;  /* time in PostgreSQL, Redis, and in all (including the settle wait) */
    int64_t redis_ms;
    int64_t total_ms;
} verify_stats;

/*
 * Verifies o->tenant (or every tenant) and reports each difference to fn. *st is filled (also
 * on failure, with what was done). Returns 0 when the comparison ran (differences or not), or
 * a tally_err with a message in err: TALLY_ENOTFOUND for an unknown tenant, TALLY_EINVAL for bad
 * options, TALLY_EUNAVAIL when PostgreSQL or Redis fails.
 */
int verify_run(pgx_conn *pg, kv_conn *kv, const verify_options *o, verify_diff_fn fn, void *arg,
               verify_stats *st, char *err, size_t errlen);

/*
 * The window of day numbers (civil.h) for today and days: from the first day of the month of
 * today - days + 1 to the last day of the month of today + 1 (whole months, so that month keys
 * compare exactly).
 */
void verify_window(int64_t today, int days, int64_t *first, int64_t *last);

#endif
