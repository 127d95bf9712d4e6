/*
 * tally.v1.ComplaintCommands against a real command-svc and PostgreSQL (scripts/test's stack).
 *
 * Each test starts its own command-svc (relay off: the relay has tests of its own) and works
 * in tenants of its own, so tests run in parallel on one database. Replies are checked field
 * by field, refusals by status code and by the field their message starts with (the contract
 * of types.proto), and the database is read directly with libpq to prove what was written:
 * one event per version, nothing at all for a refused request.
 *
 * One binary, test_commands, of one file per behaviour over this header's harness (prefix tc_,
 * harness.c): the suite's command-svc and connections, the calls (over tests/support/calls.h),
 * hand-made protobuf, row counts and events read with libpq, and builders of each command. The
 * tests: refdata.c (PutTenant, PutCategory, PutAgent), create.c (CreateComplaint, GetComplaint),
 * idempotency.c, assign.c, status.c (ChangeStatus), reads.c (ListStatusHistory, tenant
 * isolation), hostile_input.c, events_table.c, deadlines.c, races.c (suite race: 8 workers) and
 * pg_down.c (PostgreSQL through a faulty proxy).
 */
#ifndef TALLY_TEST_COMMANDS_INT_H
#define TALLY_TEST_COMMANDS_INT_H

#include "calls.h"
#include "err.h"
#include "fixture.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/events.pb-c.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#define DEADLINE_MS 10000
#define MS(x)       "(extract(epoch FROM " x ") * 1000)::bigint"

#define OPEN        TALLY__V1__STATUS__STATUS_OPEN
#define IN_PROGRESS TALLY__V1__STATUS__STATUS_IN_PROGRESS
#define RESOLVED    TALLY__V1__STATUS__STATUS_RESOLVED
#define CLOSED      TALLY__V1__STATUS__STATUS_CLOSED

/* A request message written by hand, for bytes protobuf-c would never produce. */
typedef struct pbw {
    uint8_t b[16384];
    size_t n;
} pbw;

/* The rows of one tenant in each table that a command writes. */
#define NTABLES 7

typedef struct counts {
    long long n[NTABLES];
} counts;

/* One row of the events table. */
typedef struct ev {
    long long seq, complaint_id, version, occurred_ms;
    int type;
    char local_day[16], zone_day[16];
    bool imported;
    uint8_t *payload;
    size_t len;
} ev;

/* ---- the service of the running test: command-svc (relay off) and a libpq connection ------ */

extern proc tc_svc;
extern gc_client *tc_cli;

/* Starts command-svc with TALLY_RELAY=false, workers ("TALLY_WORKERS=n") and, unless NULL, a
 * TALLY_PG_DSN=... override; connects tc_cli and the harness's libpq connection. */
void tc_start_svc(const char *dsn_override, const char *workers);

/* The init of the suite race: 8 workers. */
void tc_setup_wide(void);

/* Stops command-svc (asserting it exits 0 on SIGTERM) and closes the connections. */
void tc_teardown(void);

void tc_sleep_ms(int ms);

/* ---- calls to tc_cli, with DEADLINE_MS ---------------------------------------------------- */

/* The call's status (code, details, seconds); the reply is not decoded. */
gc_status tc_call(const char *method, const ProtobufCMessage *msg);

/* Asserts OK; the decoded reply, caller frees with call_free. */
void *tc_call_ok(const char *method, const ProtobufCMessage *msg,
                 const ProtobufCMessageDescriptor *reply);

/* call_check_refusal for a gc_result (of gc_call_many or a thread's gc_call); releases its
 * bytes first, so that a failure leaks nothing. */
void tc_check_refusal(const char *what, gc_result *r, int code, const char *field);

/* Asserts the call is refused with code, the message starting with "field:" (NULL: any). */
void tc_expect(const char *what, const char *method, const ProtobufCMessage *msg, int code,
               const char *field);

/* ---- hand-made protobuf, SQL, rows and events ------------------------------------------- */

void tc_pb_bytes(pbw *w, int field, const void *s, size_t len);

void tc_pb_str(pbw *w, int field, const char *s);

void tc_pb_int(pbw *w, int field, int64_t v);

/* Sends w's bytes as the request of method and asserts the refusal as call_check_refusal. */
void tc_expect_raw(const char *what, const char *method, const pbw *w, int code, const char *field);

PGresult *tc_sql(const char *q, int n, const char *const *params);

long long tc_sql_int(const char *q, int n, const char *const *params);

/* The rows of one tenant in every table. */
counts tc_count_rows(const char *tenant);

void tc_assert_unchanged(const counts *before, const char *tenant, const char *what);

void tc_assert_nothing_for(const char *tenant, const char *what);

/*
 * The events of a tenant for one complaint (0: reference events), in seq order; zone_day is
 * occurred_at's date in tz by PostgreSQL. Returns the count; free with tc_free_events.
 */
int tc_load_events(const char *tenant, const char *tz, long long complaint_id, ev *out, int max);

void tc_free_events(ev *e, int n);

/* ---- command helpers: requests, and calls that must succeed ------------------------------ */

/* What a PutTenant, PutCategory or PutAgent reply says (each reply has these two fields). */
typedef struct put_flags {
    bool created, changed;
} put_flags;

/* Calls a put method, asserts OK, and returns its reply's created and changed. */
put_flags tc_put(const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *reply);

Tally__V1__CreateComplaintRequest tc_create_req(const char *tenant, const char *key);

Tally__V1__CreateComplaintReply *tc_create_rep(const Tally__V1__CreateComplaintRequest *req);

long long tc_create_ok(const char *tenant, const char *key);

Tally__V1__AssignComplaintRequest tc_assign_req(const char *tenant, long long id, const char *agent,
                                                long long expected);

Tally__V1__AssignComplaintReply *tc_assign_rep(const char *tenant, long long id, const char *agent,
                                               long long expected);

long long tc_assign_ok(const char *tenant, long long id, const char *agent, long long expected);

Tally__V1__ChangeStatusRequest tc_move_req(const char *tenant, long long id, int status,
                                           long long expected);

/* Moves the complaint; returns the new version and (if asked) the reply's updated_at_ms. */
long long tc_move_ok(const char *tenant, long long id, int status, long long expected,
                     long long *updated_ms);

Tally__V1__GetComplaintReply *tc_get_rep(const char *tenant, long long id);

Tally__V1__ListStatusHistoryReply *tc_history_rep(const char *tenant, long long id, int size,
                                                  const char *token);

/* A fresh tenant with categories c1, c2 and agents a1, a2. */
const char *tc_seeded(char *buf, size_t len, const char *tz);

void tc_repeat(char *buf, char c, size_t n);

#endif
