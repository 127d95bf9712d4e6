/*
 * ImportComplaints against real PostgreSQL: imported histories leave the rows and events the
 * live commands would have left, at the historical times; retries write nothing and report
 * already_existed; every validation error names its path and writes nothing; local days come
 * from the tenant's time zone.
 *
 * One binary, test_import: batches.c (imports, retries, validation, time zones, concurrency, the
 * largest batch) and live.c (an import equals the same history done live; text stored verbatim;
 * the rules of the foreign keys migration 0005 dropped, for imports and live commands),
 * over this header's harness (prefix ti_, harness.c) and tests/support/imports.h.
 */
#ifndef TALLY_TEST_IMPORT_INT_H
#define TALLY_TEST_IMPORT_INT_H

#include "calls.h"
#include "fixture.h"
#include "imports.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/events.pb-c.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#define MIN  (60 * 1000LL)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

#define OPEN        TALLY__V1__STATUS__STATUS_OPEN
#define IN_PROGRESS TALLY__V1__STATUS__STATUS_IN_PROGRESS
#define RESOLVED    TALLY__V1__STATUS__STATUS_RESOLVED
#define CLOSED      TALLY__V1__STATUS__STATUS_CLOSED

/* The reference times of the history batch: T0 = 2026-03-10T09:00Z. */
#define T0 ti_utc_ms(2026, 3, 10, 9, 0)

/* A running command-svc (relay off) with a seeded tenant and a libpq connection. */
typedef struct env {
    proc p;
    gc_client *c;
    PGconn *pg;
    char tenant[32];
} env;

/* One complaint event of the events table, its body decoded. */
typedef struct ev {
    int64_t complaint, version, occurred_ms;
    int type;
    char local_day[16];
    bool imported, recorded_later;
    Tally__V1__ComplaintCreated *created;
    Tally__V1__ComplaintAssigned *assigned;
    Tally__V1__StatusChanged *changed;
} ev;

/* Starts command-svc and seeds a fresh tenant (time zone tz): categories c1, c2, agents a1, a2. */
void ti_env_start(env *e, const char *tz);

void ti_env_stop(env *e);

/* Runs sql with $1 = tenant; asserts it succeeded. Caller frees with PQclear. */
PGresult *ti_query(env *e, const char *tenant, const char *sql);

/* Rows of the tenant in every table an import writes, as one string. */
void ti_count_rows(env *e, char *out, size_t len);

/* Unix ms of a UTC calendar time. */
int64_t ti_utc_ms(int y, int mo, int d, int h, int mi);

/*
 * Three complaints: A with assignments, a reopen cycle, a no-op reassignment and a close; B
 * without history; C resolved at once, reopened, with a no-op unassignment and an assignment.
 * A's reopen is at 23:30Z, which is the next day in Europe/Berlin.
 */
void ti_history_batch(imp_batch *b, const char *tenant);

/* Imports and asserts OK; caller frees with tally__v1__import_complaints_reply__free_unpacked. */
Tally__V1__ImportComplaintsReply *ti_import_ok(env *e, const imp_batch *b);

/* The call fails with code, its message starts with prefix, and no row was written. */
void ti_import_fails(env *e, const imp_batch *b, int code, const char *prefix);

Tally__V1__Complaint *ti_get_complaint(env *e, int64_t id, Tally__V1__GetComplaintReply **own);

Tally__V1__ListStatusHistoryReply *ti_history(env *e, int64_t id);

void ti_check_entry(const Tally__V1__StatusHistoryEntry *h, int64_t version, int from, int to,
                    const char *actor, const char *note, int64_t at);

/* The tenant's complaint events in seq order, bodies decoded. Returns how many (<= cap). */
int ti_load_events(env *e, const char *tenant, ev *out, int cap);

void ti_free_events(ev *v, int n);

void ti_check_assigned(const ev *v, const char *prev, const char *agent, int status,
                       int64_t created);

void ti_check_changed(const ev *v, int from, int to, const char *agent, const char *actor,
                      int64_t created, const char *created_day, int64_t resolution);

#endif
