/* The harness of test_commands (cmd_int.h): the service, calls, SQL, events, command helpers. */
#include "cmd_int.h"
#include "pgdb.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

proc tc_svc;
static bool svc_up;
gc_client *tc_cli;
static PGconn *db;

/* ---- the service ----------------------------------------------------------------------- */

void tc_start_svc(const char *dsn_override, const char *workers)
{
    const char *env[] = { "TALLY_RELAY=false", workers, dsn_override, NULL };
    fx_start_command_svc(&tc_svc, env);
    svc_up = true;
    tc_cli = gc_new_port(tc_svc.grpc_port);
    cr_assert(tc_cli);
    db = pgdb_connect_dsn(pgdb_owner_dsn());
}

static void setup(void)
{
    tc_start_svc(NULL, "TALLY_WORKERS=2");
}

void tc_setup_wide(void)
{
    tc_start_svc(NULL, "TALLY_WORKERS=8");
}

void tc_teardown(void)
{
    if (tc_cli)
        gc_free(tc_cli);
    tc_cli = NULL;
    if (db)
        PQfinish(db);
    db = NULL;
    if (!svc_up)
        return;
    svc_up = false;
    int rc = proc_stop(&tc_svc, SIGTERM, 15000);
    if (rc != 0)
        cr_log_error("command-svc log:\n%s", tc_svc.log ? tc_svc.log : "");
    proc_release(&tc_svc);
    cr_assert_eq(rc, 0, "command-svc exited %d on SIGTERM", rc);
}

void tc_sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- calls ------------------------------------------------------------------------------ */

gc_status tc_call(const char *method, const ProtobufCMessage *msg)
{
    gc_status st;
    call_code(tc_cli, method, msg, DEADLINE_MS, &st);
    return st;
}

void *tc_call_ok(const char *method, const ProtobufCMessage *msg,
                 const ProtobufCMessageDescriptor *reply)
{
    return call_ok(tc_cli, method, msg, reply, DEADLINE_MS);
}

void tc_check_refusal(const char *what, gc_result *r, int code, const char *field)
{
    gc_status st;
    gc_result_release(r);
    gc_status_of(r, &st);
    call_check_refusal(what, &st, code, field);
}

void tc_expect(const char *what, const char *method, const ProtobufCMessage *msg, int code,
               const char *field)
{
    call_expect(tc_cli, what, method, msg, code, field, DEADLINE_MS);
}

/* ---- hand-made protobuf, for bytes protobuf-c would never produce ------------------------ */

static void pb_varint(pbw *w, uint64_t v)
{
    while (v >= 0x80) {
        w->b[w->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->b[w->n++] = (uint8_t)v;
}

void tc_pb_bytes(pbw *w, int field, const void *s, size_t len)
{
    cr_assert_lt(w->n + len + 16, sizeof(w->b));
    pb_varint(w, ((uint64_t)field << 3) | 2);
    pb_varint(w, len);
    memcpy(w->b + w->n, s, len);
    w->n += len;
}

void tc_pb_str(pbw *w, int field, const char *s)
{
    tc_pb_bytes(w, field, s, strlen(s));
}

void tc_pb_int(pbw *w, int field, int64_t v)
{
    pb_varint(w, (uint64_t)field << 3);
    pb_varint(w, (uint64_t)v);
}

void tc_expect_raw(const char *what, const char *method, const pbw *w, int code, const char *field)
{
    gc_result r;
    cr_assert_eq(gc_call_raw(tc_cli, method, w->b, w->n, true, NULL, DEADLINE_MS, &r), 0);
    tc_check_refusal(what, &r, code, field);
}

/* ---- SQL -------------------------------------------------------------------------------- */

PGresult *tc_sql(const char *q, int n, const char *const *params)
{
    return pgdb_sql(db, q, n, params);
}

long long tc_sql_int(const char *q, int n, const char *const *params)
{
    return pgdb_int(db, q, n, params);
}

static const char *const table_names[] = { "tenants",         "categories", "agents",
                                           "complaints",      "events",     "status_history",
                                           "idempotency_keys" };

/* The rows of one tenant in every table. */
counts tc_count_rows(const char *tenant)
{
    counts c;
    char q[256];
    for (int i = 0; i < NTABLES; i++) {
        snprintf(q, sizeof(q), "SELECT count(*) FROM %s WHERE tenant_id = $1", table_names[i]);
        c.n[i] = tc_sql_int(q, 1, &tenant);
    }
    return c;
}

void tc_assert_unchanged(const counts *before, const char *tenant, const char *what)
{
    counts after = tc_count_rows(tenant);
    for (int i = 0; i < NTABLES; i++)
        cr_assert_eq(after.n[i], before->n[i], "%s wrote %lld row(s) to %s of tenant \"%s\"", what,
                     after.n[i] - before->n[i], table_names[i], tenant);
}

void tc_assert_nothing_for(const char *tenant, const char *what)
{
    counts none;
    memset(&none, 0, sizeof(none));
    tc_assert_unchanged(&none, tenant, what);
}

/*
 * The events of a tenant for one complaint (0: reference events), in seq order; zone_day is
 * occurred_at's date in tz by PostgreSQL. Returns the count; free with tc_free_events.
 */
int tc_load_events(const char *tenant, const char *tz, long long complaint_id, ev *out, int max)
{
    char id[24];
    snprintf(id, sizeof(id), "%lld", complaint_id);
    const char *p[] = { tenant, tz, id };
    PGresult *r =
        tc_sql("SELECT seq, coalesce(complaint_id, 0), coalesce(version, 0), type,"
               " local_day::text, (occurred_at AT TIME ZONE $2)::date::text, " MS(
                   "occurred_at") ", imported, payload FROM events WHERE tenant_id = $1"
                                  " AND coalesce(complaint_id, 0) = $3::bigint ORDER BY seq",
               3, p);
    int n = PQntuples(r);
    cr_assert_leq(n, max);
    for (int i = 0; i < n; i++) {
        ev *e = &out[i];
        e->seq = atoll(PQgetvalue(r, i, 0));
        e->complaint_id = atoll(PQgetvalue(r, i, 1));
        e->version = atoll(PQgetvalue(r, i, 2));
        e->type = atoi(PQgetvalue(r, i, 3));
        snprintf(e->local_day, sizeof(e->local_day), "%s", PQgetvalue(r, i, 4));
        snprintf(e->zone_day, sizeof(e->zone_day), "%s", PQgetvalue(r, i, 5));
        e->occurred_ms = atoll(PQgetvalue(r, i, 6));
        e->imported = strcmp(PQgetvalue(r, i, 7), "t") == 0;
        e->payload = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 8), &e->len);
        cr_assert(e->payload);
    }
    PQclear(r);
    return n;
}

void tc_free_events(ev *e, int n)
{
    for (int i = 0; i < n; i++)
        PQfreemem(e[i].payload);
}

/* ---- command helpers -------------------------------------------------------------------- */

/* A bool field of a decoded message, by name; asserts the message has it. */
static bool bool_field(const ProtobufCMessage *m, const char *name)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    cr_assert(f && f->type == PROTOBUF_C_TYPE_BOOL, "%s has no bool %s", m->descriptor->name, name);
    return *(const protobuf_c_boolean *)((const char *)m + f->offset);
}

put_flags tc_put(const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *reply)
{
    ProtobufCMessage *rep = tc_call_ok(method, req, reply);
    put_flags p = { bool_field(rep, "created"), bool_field(rep, "changed") };
    call_free(rep);
    return p;
}

Tally__V1__CreateComplaintRequest tc_create_req(const char *tenant, const char *key)
{
    Tally__V1__CreateComplaintRequest r = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.idempotency_key = (char *)key;
    r.category_id = "c1";
    r.priority = TALLY__V1__PRIORITY__PRIORITY_MEDIUM;
    r.title = "Printer on fire";
    r.description = "It was fine yesterday.";
    r.customer_id = "cust-1";
    return r;
}

Tally__V1__CreateComplaintReply *tc_create_rep(const Tally__V1__CreateComplaintRequest *req)
{
    return tc_call_ok(GC_COMMANDS("CreateComplaint"), &req->base,
                      &tally__v1__create_complaint_reply__descriptor);
}

long long tc_create_ok(const char *tenant, const char *key)
{
    Tally__V1__CreateComplaintRequest req = tc_create_req(tenant, key);
    Tally__V1__CreateComplaintReply *rep = tc_create_rep(&req);
    long long id = rep->complaint_id;
    cr_assert_geq(id, 1);
    cr_assert_eq(rep->version, 1);
    call_free(rep);
    return id;
}

Tally__V1__AssignComplaintRequest tc_assign_req(const char *tenant, long long id, const char *agent,
                                                long long expected)
{
    Tally__V1__AssignComplaintRequest r = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.complaint_id = id;
    r.agent_id = (char *)agent;
    r.expected_version = expected;
    return r;
}

Tally__V1__AssignComplaintReply *tc_assign_rep(const char *tenant, long long id, const char *agent,
                                               long long expected)
{
    Tally__V1__AssignComplaintRequest req = tc_assign_req(tenant, id, agent, expected);
    Tally__V1__AssignComplaintReply *rep = tc_call_ok(
        GC_COMMANDS("AssignComplaint"), &req.base, &tally__v1__assign_complaint_reply__descriptor);
    cr_assert_eq(rep->complaint_id, id);
    return rep;
}

long long tc_assign_ok(const char *tenant, long long id, const char *agent, long long expected)
{
    Tally__V1__AssignComplaintReply *rep = tc_assign_rep(tenant, id, agent, expected);
    long long v = rep->version;
    call_free(rep);
    return v;
}

Tally__V1__ChangeStatusRequest tc_move_req(const char *tenant, long long id, int status,
                                           long long expected)
{
    Tally__V1__ChangeStatusRequest r = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.complaint_id = id;
    r.status = (Tally__V1__Status)status;
    r.expected_version = expected;
    r.actor = "agent-7";
    return r;
}

/* Moves the complaint; returns the new version and (if asked) the reply's updated_at_ms. */
long long tc_move_ok(const char *tenant, long long id, int status, long long expected,
                     long long *updated_ms)
{
    Tally__V1__ChangeStatusRequest req = tc_move_req(tenant, id, status, expected);
    Tally__V1__ChangeStatusReply *rep = tc_call_ok(GC_COMMANDS("ChangeStatus"), &req.base,
                                                   &tally__v1__change_status_reply__descriptor);
    cr_assert_eq(rep->complaint_id, id);
    cr_assert_eq(rep->version, expected + 1);
    cr_assert_gt(rep->updated_at_ms, 0);
    if (updated_ms)
        *updated_ms = rep->updated_at_ms;
    long long v = rep->version;
    call_free(rep);
    return v;
}

Tally__V1__GetComplaintReply *tc_get_rep(const char *tenant, long long id)
{
    Tally__V1__GetComplaintRequest req = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    req.tenant_id = (char *)tenant;
    req.complaint_id = id;
    Tally__V1__GetComplaintReply *rep = tc_call_ok(GC_COMMANDS("GetComplaint"), &req.base,
                                                   &tally__v1__get_complaint_reply__descriptor);
    cr_assert(rep->complaint, "GetComplaint: OK without a complaint");
    return rep;
}

Tally__V1__ListStatusHistoryReply *tc_history_rep(const char *tenant, long long id, int size,
                                                  const char *token)
{
    Tally__V1__ListStatusHistoryRequest req = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
    req.tenant_id = (char *)tenant;
    req.complaint_id = id;
    req.page_size = size;
    req.page_token = (char *)token;
    return tc_call_ok(GC_COMMANDS("ListStatusHistory"), &req.base,
                      &tally__v1__list_status_history_reply__descriptor);
}

/* A fresh tenant with categories c1, c2 and agents a1, a2. */
const char *tc_seeded(char *buf, size_t len, const char *tz)
{
    fx_tenant(buf, len);
    fx_seed_tenant(tc_cli, buf, tz);
    return buf;
}

void tc_repeat(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
}

TestSuite(commands, .init = setup, .fini = tc_teardown, .timeout = 60);
