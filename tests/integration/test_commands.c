/*
 * tally.v1.ComplaintCommands against a real command-svc and PostgreSQL (scripts/test's stack).
 *
 * Each test starts its own command-svc (relay off: the relay has tests of its own) and works
 * in tenants of its own, so tests run in parallel on one database. Replies are checked field
 * by field, refusals by status code and by the field their message starts with (the contract
 * of types.proto), and the database is read directly with libpq to prove what was written:
 * one event per version, nothing at all for a refused request.
 */
#include "err.h"
#include "fixture.h"
#include "proxy.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/events.pb-c.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <grpc/status.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEADLINE_MS 10000
#define MS(x)       "(extract(epoch FROM " x ") * 1000)::bigint"

#define OPEN        TALLY__V1__STATUS__STATUS_OPEN
#define IN_PROGRESS TALLY__V1__STATUS__STATUS_IN_PROGRESS
#define RESOLVED    TALLY__V1__STATUS__STATUS_RESOLVED
#define CLOSED      TALLY__V1__STATUS__STATUS_CLOSED

static proc svc;
static bool svc_up;
static gc_client *cli;
static PGconn *db;

/* ---- the service ----------------------------------------------------------------------- */

static void start_svc(const char *dsn_override, const char *workers)
{
    const char *env[] = { "TALLY_RELAY=false", workers, dsn_override, NULL };
    fx_start_command_svc(&svc, env);
    svc_up = true;
    cli = gc_new_port(svc.grpc_port);
    cr_assert(cli);
    db = PQconnectdb(getenv("TALLY_PG_DSN"));
    cr_assert_eq(PQstatus(db), CONNECTION_OK, "%s", PQerrorMessage(db));
}

static void setup(void)
{
    start_svc(NULL, "TALLY_WORKERS=2");
}

static void setup_wide(void)
{
    start_svc(NULL, "TALLY_WORKERS=8");
}

static void teardown(void)
{
    if (cli)
        gc_free(cli);
    cli = NULL;
    if (db)
        PQfinish(db);
    db = NULL;
    if (!svc_up)
        return;
    svc_up = false;
    int rc = proc_stop(&svc, SIGTERM, 15000);
    if (rc != 0)
        cr_log_error("command-svc log:\n%s", svc.log ? svc.log : "");
    proc_release(&svc);
    cr_assert_eq(rc, 0, "command-svc exited %d on SIGTERM", rc);
}

static void sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- calls ------------------------------------------------------------------------------ */

static gc_result call(const char *method, const ProtobufCMessage *msg)
{
    gc_result r;
    cr_assert_eq(gc_call(cli, method, msg, NULL, DEADLINE_MS, &r), 0, "%s did not start", method);
    return r;
}

/* Calls method, asserts OK, and returns the decoded reply (free with free_msg). */
static void *call_ok(const char *method, const ProtobufCMessage *msg,
                     const ProtobufCMessageDescriptor *reply)
{
    gc_result r = call(method, msg);
    cr_assert_eq(r.code, GRPC_STATUS_OK, "%s: %s \"%s\"", method, tally_grpc_code_name(r.code),
                 r.details);
    ProtobufCMessage *rep = protobuf_c_message_unpack(reply, NULL, r.len, r.data);
    cr_assert(rep, "%s: the reply does not decode", method);
    gc_result_release(&r);
    return rep;
}

static void free_msg(void *m)
{
    protobuf_c_message_free_unpacked(m, NULL);
}

/*
 * Asserts the code, and when field is set that the message starts with "field:". Releases the
 * reply bytes first (code and details stay readable), so that a failure leaks nothing.
 */
static void check_refusal(const char *what, gc_result *r, int code, const char *field)
{
    gc_result_release(r);
    cr_assert_eq(r->code, code, "%s: want %s, got %s \"%s\"", what, tally_grpc_code_name(code),
                 tally_grpc_code_name(r->code), r->details);
    if (!field)
        return;
    size_t n = strlen(field);
    cr_assert(strncmp(r->details, field, n) == 0 && r->details[n] == ':',
              "%s: message \"%s\" does not start with \"%s:\"", what, r->details, field);
}

static void expect(const char *what, const char *method, const ProtobufCMessage *msg, int code,
                   const char *field)
{
    gc_result r = call(method, msg);
    check_refusal(what, &r, code, field);
    gc_result_release(&r);
}

/* ---- hand-made protobuf, for bytes protobuf-c would never produce ------------------------ */

typedef struct pbw {
    uint8_t b[16384];
    size_t n;
} pbw;

static void pb_varint(pbw *w, uint64_t v)
{
    while (v >= 0x80) {
        w->b[w->n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->b[w->n++] = (uint8_t)v;
}

static void pb_bytes(pbw *w, int field, const void *s, size_t len)
{
    cr_assert_lt(w->n + len + 16, sizeof(w->b));
    pb_varint(w, ((uint64_t)field << 3) | 2);
    pb_varint(w, len);
    memcpy(w->b + w->n, s, len);
    w->n += len;
}

static void pb_str(pbw *w, int field, const char *s)
{
    pb_bytes(w, field, s, strlen(s));
}

static void pb_int(pbw *w, int field, int64_t v)
{
    pb_varint(w, (uint64_t)field << 3);
    pb_varint(w, (uint64_t)v);
}

static void expect_raw(const char *what, const char *method, const pbw *w, int code,
                       const char *field)
{
    gc_result r;
    cr_assert_eq(gc_call_raw(cli, method, w->b, w->n, true, NULL, DEADLINE_MS, &r), 0);
    check_refusal(what, &r, code, field);
    gc_result_release(&r);
}

/* ---- SQL -------------------------------------------------------------------------------- */

static PGresult *sql(const char *q, int n, const char *const *params)
{
    PGresult *r = PQexecParams(db, q, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", q,
              PQresultErrorMessage(r));
    return r;
}

static long long sql_int(const char *q, int n, const char *const *params)
{
    PGresult *r = sql(q, n, params);
    cr_assert_eq(PQntuples(r), 1, "%s", q);
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

static const char *const table_names[] = { "tenants",         "categories", "agents",
                                           "complaints",      "events",     "status_history",
                                           "idempotency_keys" };
#define NTABLES 7

typedef struct counts {
    long long n[NTABLES];
} counts;

/* The rows of one tenant in every table. */
static counts count_rows(const char *tenant)
{
    counts c;
    char q[256];
    for (int i = 0; i < NTABLES; i++) {
        snprintf(q, sizeof(q), "SELECT count(*) FROM %s WHERE tenant_id = $1", table_names[i]);
        c.n[i] = sql_int(q, 1, &tenant);
    }
    return c;
}

static void assert_unchanged(const counts *before, const char *tenant, const char *what)
{
    counts after = count_rows(tenant);
    for (int i = 0; i < NTABLES; i++)
        cr_assert_eq(after.n[i], before->n[i], "%s wrote %lld row(s) to %s of tenant \"%s\"", what,
                     after.n[i] - before->n[i], table_names[i], tenant);
}

static void assert_nothing_for(const char *tenant, const char *what)
{
    counts none;
    memset(&none, 0, sizeof(none));
    assert_unchanged(&none, tenant, what);
}

/* One row of the events table. */
typedef struct ev {
    long long seq, complaint_id, version, occurred_ms;
    int type;
    char local_day[16], zone_day[16];
    bool imported;
    uint8_t *payload;
    size_t len;
} ev;

/*
 * The events of a tenant for one complaint (0: reference events), in seq order; zone_day is
 * occurred_at's date in tz by PostgreSQL. Returns the count; free with free_events.
 */
static int load_events(const char *tenant, const char *tz, long long complaint_id, ev *out, int max)
{
    char id[24];
    snprintf(id, sizeof(id), "%lld", complaint_id);
    const char *p[] = { tenant, tz, id };
    PGresult *r = sql("SELECT seq, coalesce(complaint_id, 0), coalesce(version, 0), type,"
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

static void free_events(ev *e, int n)
{
    for (int i = 0; i < n; i++)
        PQfreemem(e[i].payload);
}

/* ---- command helpers -------------------------------------------------------------------- */

static Tally__V1__CreateComplaintRequest create_req(const char *tenant, const char *key)
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

static Tally__V1__CreateComplaintReply *create_rep(const Tally__V1__CreateComplaintRequest *req)
{
    return call_ok(CMD("CreateComplaint"), &req->base,
                   &tally__v1__create_complaint_reply__descriptor);
}

static long long create_ok(const char *tenant, const char *key)
{
    Tally__V1__CreateComplaintRequest req = create_req(tenant, key);
    Tally__V1__CreateComplaintReply *rep = create_rep(&req);
    long long id = rep->complaint_id;
    cr_assert_geq(id, 1);
    cr_assert_eq(rep->version, 1);
    free_msg(rep);
    return id;
}

static Tally__V1__AssignComplaintRequest assign_req(const char *tenant, long long id,
                                                    const char *agent, long long expected)
{
    Tally__V1__AssignComplaintRequest r = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.complaint_id = id;
    r.agent_id = (char *)agent;
    r.expected_version = expected;
    return r;
}

static Tally__V1__AssignComplaintReply *assign_rep(const char *tenant, long long id,
                                                   const char *agent, long long expected)
{
    Tally__V1__AssignComplaintRequest req = assign_req(tenant, id, agent, expected);
    Tally__V1__AssignComplaintReply *rep =
        call_ok(CMD("AssignComplaint"), &req.base, &tally__v1__assign_complaint_reply__descriptor);
    cr_assert_eq(rep->complaint_id, id);
    return rep;
}

static long long assign_ok(const char *tenant, long long id, const char *agent, long long expected)
{
    Tally__V1__AssignComplaintReply *rep = assign_rep(tenant, id, agent, expected);
    long long v = rep->version;
    free_msg(rep);
    return v;
}

static Tally__V1__ChangeStatusRequest move_req(const char *tenant, long long id, int status,
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
static long long move_ok(const char *tenant, long long id, int status, long long expected,
                         long long *updated_ms)
{
    Tally__V1__ChangeStatusRequest req = move_req(tenant, id, status, expected);
    Tally__V1__ChangeStatusReply *rep =
        call_ok(CMD("ChangeStatus"), &req.base, &tally__v1__change_status_reply__descriptor);
    cr_assert_eq(rep->complaint_id, id);
    cr_assert_eq(rep->version, expected + 1);
    cr_assert_gt(rep->updated_at_ms, 0);
    if (updated_ms)
        *updated_ms = rep->updated_at_ms;
    long long v = rep->version;
    free_msg(rep);
    return v;
}

static Tally__V1__GetComplaintReply *get_rep(const char *tenant, long long id)
{
    Tally__V1__GetComplaintRequest req = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    req.tenant_id = (char *)tenant;
    req.complaint_id = id;
    Tally__V1__GetComplaintReply *rep =
        call_ok(CMD("GetComplaint"), &req.base, &tally__v1__get_complaint_reply__descriptor);
    cr_assert(rep->complaint, "GetComplaint: OK without a complaint");
    return rep;
}

static Tally__V1__ListStatusHistoryReply *history_rep(const char *tenant, long long id, int size,
                                                      const char *token)
{
    Tally__V1__ListStatusHistoryRequest req = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
    req.tenant_id = (char *)tenant;
    req.complaint_id = id;
    req.page_size = size;
    req.page_token = (char *)token;
    return call_ok(CMD("ListStatusHistory"), &req.base,
                   &tally__v1__list_status_history_reply__descriptor);
}

/* A fresh tenant with categories c1, c2 and agents a1, a2. */
static const char *seeded(char *buf, size_t len, const char *tz)
{
    fx_tenant(buf, len);
    fx_seed_tenant(cli, buf, tz);
    return buf;
}

static void repeat(char *buf, char c, size_t n)
{
    memset(buf, c, n);
    buf[n] = '\0';
}

/* ======================================================================================== */

TestSuite(commands, .init = setup, .fini = teardown, .timeout = 60);

/* ---- reference data -------------------------------------------------------------------- */

Test(commands, put_tenant_created_then_unchanged_then_changed)
{
    char t[32];
    ev e[8];
    fx_tenant(t, sizeof(t));
    Tally__V1__PutTenantRequest req = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    req.tenant_id = t;
    req.name = "Acme";
    req.time_zone = "Europe/Berlin";
    const ProtobufCMessageDescriptor *d = &tally__v1__put_tenant_reply__descriptor;

    Tally__V1__PutTenantReply *rep = call_ok(CMD("PutTenant"), &req.base, d);
    cr_assert(rep->created, "first put: created");
    free_msg(rep);
    const char *p[] = { t };
    PGresult *r = sql("SELECT name, time_zone FROM tenants WHERE tenant_id = $1", 1, p);
    cr_assert_eq(PQntuples(r), 1);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "Acme");
    cr_assert_str_eq(PQgetvalue(r, 0, 1), "Europe/Berlin");
    PQclear(r);
    cr_assert_eq(load_events(t, "Europe/Berlin", 0, e, 8), 1, "creation writes one TenantPut");

    rep = call_ok(CMD("PutTenant"), &req.base, d);
    cr_assert_not(rep->created, "identical put: created");
    cr_assert_not(rep->changed, "identical put: changed");
    free_msg(rep);
    free_events(e, 1);
    cr_assert_eq(load_events(t, "Europe/Berlin", 0, e, 8), 1, "an identical put writes no event");
    free_events(e, 1);

    req.name = "Acme Ltd";
    rep = call_ok(CMD("PutTenant"), &req.base, d);
    cr_assert_not(rep->created);
    cr_assert(rep->changed, "renamed: changed");
    free_msg(rep);
    req.time_zone = "Pacific/Auckland";
    rep = call_ok(CMD("PutTenant"), &req.base, d);
    cr_assert_not(rep->created);
    cr_assert(rep->changed, "new time zone: changed");
    free_msg(rep);

    int n = load_events(t, "Pacific/Auckland", 0, e, 8);
    cr_assert_eq(n, 3, "one TenantPut per change, got %d", n);
    const char *names[] = { "Acme", "Acme Ltd", "Acme Ltd" };
    const char *zones[] = { "Europe/Berlin", "Europe/Berlin", "Pacific/Auckland" };
    for (int i = 0; i < n; i++) {
        cr_assert_eq(e[i].type, TALLY__V1__EVENT_TYPE__EVENT_TYPE_TENANT_PUT);
        cr_assert_eq(e[i].version, 0);
        cr_assert_not(e[i].imported);
        Tally__V1__TenantPut *b = tally__v1__tenant_put__unpack(NULL, e[i].len, e[i].payload);
        cr_assert(b, "event %d: payload is not a TenantPut", i);
        cr_assert_str_eq(b->name, names[i]);
        cr_assert_str_eq(b->time_zone, zones[i]);
        free_msg(b);
    }
    /* The last event's day is in the zone it set. */
    cr_assert_str_eq(e[2].local_day, e[2].zone_day);
    free_events(e, n);
}

/* PutTenantReply.changed: "True when the call created the tenant or changed ..." (same wording
 * for PutCategoryReply and PutAgentReply). */
Test(commands, a_creating_put_reports_changed)
{
    char t[32];
    fx_tenant(t, sizeof(t));
    Tally__V1__PutTenantRequest pt = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    pt.tenant_id = t;
    pt.name = "New";
    pt.time_zone = "UTC";
    Tally__V1__PutTenantReply *tr =
        call_ok(CMD("PutTenant"), &pt.base, &tally__v1__put_tenant_reply__descriptor);
    bool tenant_changed = tr->changed;
    free_msg(tr);
    Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    pc.tenant_id = t;
    pc.category_id = "new-cat";
    pc.name = "New";
    Tally__V1__PutCategoryReply *cr =
        call_ok(CMD("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor);
    bool category_changed = cr->changed;
    free_msg(cr);
    Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
    pa.tenant_id = t;
    pa.agent_id = "new-agent";
    pa.name = "New";
    Tally__V1__PutAgentReply *ar =
        call_ok(CMD("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor);
    bool agent_changed = ar->changed;
    free_msg(ar);
    cr_assert(tenant_changed && category_changed && agent_changed,
              "a put that creates must say changed=true (an event was written): tenant %d, "
              "category %d, agent %d",
              tenant_changed, category_changed, agent_changed);
}

Test(commands, put_category_and_put_agent_upsert_and_emit_events)
{
    char t[32];
    ev e[16];
    seeded(t, sizeof(t), "UTC");
    int before = load_events(t, "UTC", 0, e, 16);
    free_events(e, before);
    cr_assert_eq(before, 5, "seeding writes 1 TenantPut, 2 CategoryPut, 2 AgentPut");

    Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    pc.tenant_id = t;
    pc.category_id = "billing";
    pc.name = "Billing";
    Tally__V1__PutCategoryReply *cr =
        call_ok(CMD("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor);
    cr_assert(cr->created);
    free_msg(cr);
    cr = call_ok(CMD("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor);
    cr_assert_not(cr->created);
    cr_assert_not(cr->changed);
    free_msg(cr);
    pc.name = "Billing & Payments";
    cr = call_ok(CMD("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor);
    cr_assert_not(cr->created);
    cr_assert(cr->changed);
    free_msg(cr);

    Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
    pa.tenant_id = t;
    pa.agent_id = "ann";
    pa.name = "Ann";
    Tally__V1__PutAgentReply *ar =
        call_ok(CMD("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor);
    cr_assert(ar->created);
    free_msg(ar);
    ar = call_ok(CMD("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor);
    cr_assert_not(ar->created);
    cr_assert_not(ar->changed);
    free_msg(ar);
    pa.name = "Ann Smith";
    ar = call_ok(CMD("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor);
    cr_assert_not(ar->created);
    cr_assert(ar->changed);
    free_msg(ar);

    /* The same id in another tenant is another category. */
    char t2[32];
    seeded(t2, sizeof(t2), "UTC");
    pc.tenant_id = t2;
    cr = call_ok(CMD("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor);
    cr_assert(cr->created, "category ids are per tenant");
    free_msg(cr);

    int n = load_events(t, "UTC", 0, e, 16);
    cr_assert_eq(n, 9, "4 events after seeding (2 creations, 2 renames), got %d", n - 5);
    const int types[] = { 11, 11, 12, 12 };
    const char *names[] = { "Billing", "Billing & Payments", "Ann", "Ann Smith" };
    for (int i = 0; i < 4; i++) {
        ev *x = &e[5 + i];
        cr_assert_eq(x->type, types[i]);
        cr_assert_eq(x->complaint_id, 0);
        cr_assert_str_eq(x->local_day, x->zone_day);
        if (types[i] == 11) {
            Tally__V1__CategoryPut *b = tally__v1__category_put__unpack(NULL, x->len, x->payload);
            cr_assert(b);
            cr_assert_str_eq(b->category_id, "billing");
            cr_assert_str_eq(b->name, names[i]);
            free_msg(b);
        } else {
            Tally__V1__AgentPut *b = tally__v1__agent_put__unpack(NULL, x->len, x->payload);
            cr_assert(b);
            cr_assert_str_eq(b->agent_id, "ann");
            cr_assert_str_eq(b->name, names[i]);
            free_msg(b);
        }
    }
    free_events(e, n);
    const char *p[] = { t };
    cr_assert_eq(sql_int("SELECT count(*) FROM categories WHERE tenant_id = $1 AND category_id ="
                         " 'billing' AND name = 'Billing & Payments'",
                         1, p),
                 1);
}

Test(commands, put_validation_errors_name_the_field_and_write_nothing)
{
    char t[32], t_new[32], long_id[80], long_name[256], long_tz[80];
    seeded(t, sizeof(t), "UTC");
    fx_tenant(t_new, sizeof(t_new));
    repeat(long_id, 'x', 65);
    repeat(long_name, 'n', 201);
    repeat(long_tz, 'Z', 65);
    counts before = count_rows(t);

    struct {
        const char *tenant, *name, *tz;
        int code;
        const char *field;
    } tenants[] = {
        { "", "N", "UTC", GRPC_STATUS_INVALID_ARGUMENT, "tenant_id" },
        { long_id, "N", "UTC", GRPC_STATUS_INVALID_ARGUMENT, "tenant_id" },
        { "a b", "N", "UTC", GRPC_STATUS_INVALID_ARGUMENT, "tenant_id" },
        { t_new, "", "UTC", GRPC_STATUS_INVALID_ARGUMENT, "name" },
        { t_new, long_name, "UTC", GRPC_STATUS_INVALID_ARGUMENT, "name" },
        { t_new, "N", "", GRPC_STATUS_INVALID_ARGUMENT, "time_zone" },
        { t_new, "N", long_tz, GRPC_STATUS_INVALID_ARGUMENT, "time_zone" },
        { t_new, "N", "Europe/Ber lin", GRPC_STATUS_INVALID_ARGUMENT, "time_zone" },
        { t_new, "N", "Mars/Olympus_Mons", GRPC_STATUS_INVALID_ARGUMENT, "time_zone" },
        { t, "Test tenant", "Mars/Olympus_Mons", GRPC_STATUS_INVALID_ARGUMENT, "time_zone" },
    };
    for (size_t i = 0; i < sizeof(tenants) / sizeof(tenants[0]); i++) {
        Tally__V1__PutTenantRequest req = TALLY__V1__PUT_TENANT_REQUEST__INIT;
        req.tenant_id = (char *)tenants[i].tenant;
        req.name = (char *)tenants[i].name;
        req.time_zone = (char *)tenants[i].tz;
        char what[64];
        snprintf(what, sizeof(what), "PutTenant case %zu", i);
        expect(what, CMD("PutTenant"), &req.base, tenants[i].code, tenants[i].field);
    }
    const char *p[] = { t };
    PGresult *r = sql("SELECT time_zone FROM tenants WHERE tenant_id = $1", 1, p);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "UTC", "a refused time zone must not be stored");
    PQclear(r);

    struct {
        const char *tenant, *id, *name;
        int code;
        const char *field;
    } refs[] = {
        { "", "x", "N", GRPC_STATUS_INVALID_ARGUMENT, "tenant_id" },
        { long_id, "x", "N", GRPC_STATUS_INVALID_ARGUMENT, "tenant_id" },
        { t, "", "N", GRPC_STATUS_INVALID_ARGUMENT, NULL /* category_id or agent_id */ },
        { t, long_id, "N", GRPC_STATUS_INVALID_ARGUMENT, NULL },
        { t, "x/y", "N", GRPC_STATUS_INVALID_ARGUMENT, NULL },
        { t, "x", "", GRPC_STATUS_INVALID_ARGUMENT, "name" },
        { t, "x", long_name, GRPC_STATUS_INVALID_ARGUMENT, "name" },
        { t_new, "x", "N", GRPC_STATUS_NOT_FOUND, "tenant_id" },
    };
    for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
        char what[64];
        Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        pc.tenant_id = (char *)refs[i].tenant;
        pc.category_id = (char *)refs[i].id;
        pc.name = (char *)refs[i].name;
        snprintf(what, sizeof(what), "PutCategory case %zu", i);
        expect(what, CMD("PutCategory"), &pc.base, refs[i].code,
               refs[i].field ? refs[i].field : "category_id");
        Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
        pa.tenant_id = (char *)refs[i].tenant;
        pa.agent_id = (char *)refs[i].id;
        pa.name = (char *)refs[i].name;
        snprintf(what, sizeof(what), "PutAgent case %zu", i);
        expect(what, CMD("PutAgent"), &pa.base, refs[i].code,
               refs[i].field ? refs[i].field : "agent_id");
    }
    assert_unchanged(&before, t, "refused puts");
    assert_nothing_for(t_new, "refused puts");
}

/* ---- CreateComplaint and GetComplaint -------------------------------------------------- */

Test(commands, create_complaint_replies_and_get_complaint_returns_every_field)
{
    char t[32];
    seeded(t, sizeof(t), "America/New_York");
    Tally__V1__CreateComplaintRequest req = create_req(t, "9b2f0c1e-1f0a-4c8e-9a55-0d9e1f2a3b4c");
    req.category_id = "c2";
    req.priority = TALLY__V1__PRIORITY__PRIORITY_URGENT;
    req.description = "";
    Tally__V1__CreateComplaintReply *rep = create_rep(&req);
    cr_assert_geq(rep->complaint_id, 1);
    cr_assert_eq(rep->version, 1);
    cr_assert_gt(rep->created_at_ms, 1600000000000LL);
    long long id = rep->complaint_id, created = rep->created_at_ms;
    free_msg(rep);

    Tally__V1__GetComplaintReply *g = get_rep(t, id);
    Tally__V1__Complaint *c = g->complaint;
    cr_assert_eq(c->complaint_id, id);
    cr_assert_str_eq(c->tenant_id, t);
    cr_assert_str_eq(c->category_id, "c2");
    cr_assert_eq(c->priority, TALLY__V1__PRIORITY__PRIORITY_URGENT);
    cr_assert_eq(c->status, OPEN);
    cr_assert_str_eq(c->assigned_agent_id, "");
    cr_assert_str_eq(c->title, "Printer on fire");
    cr_assert_str_eq(c->description, "");
    cr_assert_str_eq(c->customer_id, "cust-1");
    cr_assert_eq(c->created_at_ms, created);
    cr_assert_eq(c->updated_at_ms, created);
    cr_assert_eq(c->resolved_at_ms, 0);
    cr_assert_eq(c->version, 1);
    cr_assert_str_eq(c->idempotency_key, "9b2f0c1e-1f0a-4c8e-9a55-0d9e1f2a3b4c");
    free_msg(g);

    /* A second complaint gets another id; limits at their edges are accepted. */
    char title[256], desc[4096];
    repeat(title, 't', 200);
    repeat(desc, 'd', 4000);
    req = create_req(t, "second");
    req.title = title;
    req.description = desc;
    rep = create_rep(&req);
    cr_assert_neq(rep->complaint_id, id);
    long long id2 = rep->complaint_id;
    free_msg(rep);
    g = get_rep(t, id2);
    cr_assert_eq(strlen(g->complaint->title), 200);
    cr_assert_eq(strlen(g->complaint->description), 4000);
    free_msg(g);

    /* The creation's audit row and event. */
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = { t, ids };
    cr_assert_eq(sql_int("SELECT count(*) FROM status_history WHERE tenant_id = $1 AND"
                         " complaint_id = $2 AND version = 1 AND from_status = 0 AND to_status = 1",
                         2, p),
                 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND complaint_id = $2"
                         " AND version = 1 AND type = 1",
                         2, p),
                 1);
}

Test(commands, create_complaint_validation_errors_name_the_field_and_write_nothing)
{
    char t[32], long_id[80], title201[256], desc4001[4100], euro[256];
    seeded(t, sizeof(t), "UTC");
    repeat(long_id, 'k', 65);
    repeat(title201, 't', 201);
    repeat(desc4001, 'd', 4001);
    /* 67 euro signs: 67 characters, 201 bytes. */
    euro[0] = '\0';
    for (int i = 0; i < 67; i++)
        strcat(euro, "\xe2\x82\xac");
    counts before = count_rows(t);

    enum { F_TENANT, F_KEY, F_CATEGORY, F_PRIORITY, F_TITLE, F_DESC, F_CUSTOMER };
    struct {
        int f;
        const char *s;
        int prio;
        const char *field;
    } cases[] = {
        { F_TENANT, "", 0, "tenant_id" },
        { F_TENANT, long_id, 0, "tenant_id" },
        { F_TENANT, "t.1 ", 0, "tenant_id" },
        { F_KEY, "", 0, "idempotency_key" },
        { F_KEY, long_id, 0, "idempotency_key" },
        { F_KEY, "key/1", 0, "idempotency_key" },
        { F_CATEGORY, "", 0, "category_id" },
        { F_CATEGORY, "c 1", 0, "category_id" },
        { F_CATEGORY, long_id, 0, "category_id" },
        { F_PRIORITY, NULL, 0, "priority" },
        { F_PRIORITY, NULL, 5, "priority" },
        { F_PRIORITY, NULL, 99, "priority" },
        { F_PRIORITY, NULL, -1, "priority" },
        { F_TITLE, "", 0, "title" },
        { F_TITLE, title201, 0, "title" },
        { F_TITLE, euro, 0, "title" },
        { F_DESC, desc4001, 0, "description" },
        { F_CUSTOMER, "", 0, "customer_id" },
        { F_CUSTOMER, long_id, 0, "customer_id" },
        { F_CUSTOMER, "cust@example.com", 0, "customer_id" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Tally__V1__CreateComplaintRequest req = create_req(t, "k-valid");
        char *s = (char *)cases[i].s;
        switch (cases[i].f) {
        case F_TENANT:
            req.tenant_id = s;
            break;
        case F_KEY:
            req.idempotency_key = s;
            break;
        case F_CATEGORY:
            req.category_id = s;
            break;
        case F_PRIORITY:
            req.priority = (Tally__V1__Priority)cases[i].prio;
            break;
        case F_TITLE:
            req.title = s;
            break;
        case F_DESC:
            req.description = s;
            break;
        default:
            req.customer_id = s;
        }
        char what[64];
        snprintf(what, sizeof(what), "CreateComplaint case %zu (%s)", i, cases[i].field);
        expect(what, CMD("CreateComplaint"), &req.base, GRPC_STATUS_INVALID_ARGUMENT,
               cases[i].field);
    }
    assert_unchanged(&before, t, "refused CreateComplaint requests");
    /* The key of the refused requests is still free. */
    create_ok(t, "k-valid");
}

Test(commands, create_complaint_unknown_references_are_not_found)
{
    char t[32], other[32], ghost[32];
    seeded(t, sizeof(t), "UTC");
    fx_tenant(other, sizeof(other));
    fx_seed_tenant(cli, other, "UTC");
    Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    pc.tenant_id = other;
    pc.category_id = "only-other";
    pc.name = "Theirs";
    free_msg(call_ok(CMD("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor));
    fx_tenant(ghost, sizeof(ghost));
    counts before = count_rows(t);

    Tally__V1__CreateComplaintRequest req = create_req(ghost, "k1");
    expect("unknown tenant", CMD("CreateComplaint"), &req.base, GRPC_STATUS_NOT_FOUND, "tenant_id");
    req = create_req(t, "k1");
    req.category_id = "nope";
    expect("unknown category", CMD("CreateComplaint"), &req.base, GRPC_STATUS_NOT_FOUND,
           "category_id");
    req.category_id = "only-other";
    expect("category of another tenant", CMD("CreateComplaint"), &req.base, GRPC_STATUS_NOT_FOUND,
           "category_id");
    assert_unchanged(&before, t, "CreateComplaint with unknown references");
    assert_nothing_for(ghost, "CreateComplaint for an unknown tenant");
    /* The key stays usable once the category exists. */
    req.category_id = "c2";
    Tally__V1__CreateComplaintReply *rep = create_rep(&req);
    free_msg(rep);
}

/* ---- idempotency ------------------------------------------------------------------------ */

Test(commands, a_retry_returns_the_first_reply_and_other_content_is_already_exists)
{
    char t[32], t2[32];
    seeded(t, sizeof(t), "UTC");
    Tally__V1__CreateComplaintRequest req = create_req(t, "retry-key");
    Tally__V1__CreateComplaintReply *first = create_rep(&req);
    counts before = count_rows(t);
    for (int i = 0; i < 3; i++) {
        Tally__V1__CreateComplaintReply *again = create_rep(&req);
        cr_assert_eq(again->complaint_id, first->complaint_id);
        cr_assert_eq(again->version, 1);
        cr_assert_eq(again->created_at_ms, first->created_at_ms);
        free_msg(again);
    }
    /* Even after the complaint moved on, the retry answers the first reply. */
    move_ok(t, first->complaint_id, IN_PROGRESS, 1, NULL);
    before = count_rows(t);
    Tally__V1__CreateComplaintReply *again = create_rep(&req);
    cr_assert_eq(again->complaint_id, first->complaint_id);
    cr_assert_eq(again->version, 1);
    free_msg(again);
    assert_unchanged(&before, t, "retries");

    const char *fields[] = { "title", "description", "category_id", "priority", "customer_id" };
    for (size_t i = 0; i < 5; i++) {
        Tally__V1__CreateComplaintRequest other = create_req(t, "retry-key");
        switch (i) {
        case 0:
            other.title = "Another title";
            break;
        case 1:
            other.description = "Another description";
            break;
        case 2:
            other.category_id = "c2";
            break;
        case 3:
            other.priority = TALLY__V1__PRIORITY__PRIORITY_LOW;
            break;
        default:
            other.customer_id = "cust-2";
        }
        gc_result r = call(CMD("CreateComplaint"), &other.base);
        check_refusal(fields[i], &r, GRPC_STATUS_ALREADY_EXISTS, "idempotency_key");
        gc_result_release(&r);
    }
    assert_unchanged(&before, t, "ALREADY_EXISTS refusals");

    /* Keys are per tenant: the same key in another tenant makes another complaint. */
    seeded(t2, sizeof(t2), "UTC");
    req.tenant_id = t2;
    Tally__V1__CreateComplaintReply *theirs = create_rep(&req);
    cr_assert_neq(theirs->complaint_id, first->complaint_id);
    free_msg(theirs);
    free_msg(first);
}

/* ---- AssignComplaint -------------------------------------------------------------------- */

Test(commands, assign_assigns_reassigns_unassigns_and_the_same_agent_is_a_no_op)
{
    char t[32];
    ev e[16];
    seeded(t, sizeof(t), "UTC");
    long long id = create_ok(t, "k1");

    Tally__V1__AssignComplaintReply *rep = assign_rep(t, id, "a1", 1);
    cr_assert_eq(rep->version, 2);
    Tally__V1__GetComplaintReply *g = get_rep(t, id);
    cr_assert_str_eq(g->complaint->assigned_agent_id, "a1");
    cr_assert_eq(g->complaint->version, 2);
    cr_assert_eq(g->complaint->updated_at_ms, rep->updated_at_ms);
    cr_assert_eq(g->complaint->status, OPEN, "assigning does not move the status");
    free_msg(g);
    free_msg(rep);

    counts before = count_rows(t);
    cr_assert_eq(assign_ok(t, id, "a1", 2), 2, "the same agent: OK with the same version");
    assert_unchanged(&before, t, "a no-op assignment");

    cr_assert_eq(assign_ok(t, id, "a2", 2), 3);
    cr_assert_eq(assign_ok(t, id, "", 3), 4, "unassign");
    g = get_rep(t, id);
    cr_assert_str_eq(g->complaint->assigned_agent_id, "");
    cr_assert_eq(g->complaint->version, 4);
    free_msg(g);
    before = count_rows(t);
    cr_assert_eq(assign_ok(t, id, "", 4), 4, "unassigning an unassigned complaint: no-op");
    assert_unchanged(&before, t, "a no-op unassignment");

    int n = load_events(t, "UTC", id, e, 16);
    cr_assert_eq(n, 4, "created + 3 assignments, got %d", n);
    const char *prev[] = { "", "a1", "a2" }, *next[] = { "a1", "a2", "" };
    for (int i = 1; i < 4; i++) {
        cr_assert_eq(e[i].type, 2);
        cr_assert_eq(e[i].version, i + 1);
        Tally__V1__ComplaintAssigned *b =
            tally__v1__complaint_assigned__unpack(NULL, e[i].len, e[i].payload);
        cr_assert(b);
        cr_assert_str_eq(b->previous_agent_id, prev[i - 1]);
        cr_assert_str_eq(b->agent_id, next[i - 1]);
        free_msg(b);
    }
    free_events(e, n);
}

/* AssignComplaintReply.updated_at_ms is "the complaint's updated_at_ms after the command". */
Test(commands, a_no_op_assignment_reports_the_current_updated_at)
{
    char t[32];
    seeded(t, sizeof(t), "UTC");
    long long id = create_ok(t, "k1");
    assign_ok(t, id, "a1", 1);
    Tally__V1__GetComplaintReply *g = get_rep(t, id);
    Tally__V1__AssignComplaintReply *rep = assign_rep(t, id, "a1", 2);
    long long version = rep->version, replied = rep->updated_at_ms;
    long long stored = g->complaint->updated_at_ms;
    free_msg(rep);
    free_msg(g);
    cr_assert_eq(version, 2);
    cr_assert_eq(replied, stored,
                 "no-op assignment replied updated_at_ms %lld, the complaint's is %lld", replied,
                 stored);
}

Test(commands, assign_refusals)
{
    char t[32], other[32], long_id[80];
    seeded(t, sizeof(t), "UTC");
    seeded(other, sizeof(other), "UTC");
    Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
    pa.tenant_id = other;
    pa.agent_id = "theirs";
    pa.name = "Not ours";
    free_msg(call_ok(CMD("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor));
    repeat(long_id, 'a', 65);
    long long id = create_ok(t, "k1");
    counts before = count_rows(t);

    struct {
        const char *tenant, *agent;
        long long id, expected;
        int code;
        const char *field;
    } cases[] = {
        { "", "a1", id, 1, GRPC_STATUS_INVALID_ARGUMENT, "tenant_id" },
        { "t 1", "a1", id, 1, GRPC_STATUS_INVALID_ARGUMENT, "tenant_id" },
        { t, "a1", 0, 1, GRPC_STATUS_INVALID_ARGUMENT, "complaint_id" },
        { t, "a1", -5, 1, GRPC_STATUS_INVALID_ARGUMENT, "complaint_id" },
        { t, "a 1", id, 1, GRPC_STATUS_INVALID_ARGUMENT, "agent_id" },
        { t, long_id, id, 1, GRPC_STATUS_INVALID_ARGUMENT, "agent_id" },
        { t, "a1", id, 0, GRPC_STATUS_INVALID_ARGUMENT, "expected_version" },
        { t, "a1", id, -1, GRPC_STATUS_INVALID_ARGUMENT, "expected_version" },
        { t, "nobody", id, 1, GRPC_STATUS_NOT_FOUND, "agent_id" },
        { t, "theirs", id, 1, GRPC_STATUS_NOT_FOUND, "agent_id" },
        { t, "a1", 999999999999LL, 1, GRPC_STATUS_NOT_FOUND, "complaint_id" },
        { t, "a1", id, 2, GRPC_STATUS_ABORTED, "expected_version" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Tally__V1__AssignComplaintRequest req =
            assign_req(cases[i].tenant, cases[i].id, cases[i].agent, cases[i].expected);
        char what[64];
        snprintf(what, sizeof(what), "AssignComplaint case %zu", i);
        gc_result r = call(CMD("AssignComplaint"), &req.base);
        check_refusal(what, &r, cases[i].code, cases[i].field);
        if (cases[i].code == GRPC_STATUS_ABORTED)
            cr_assert(strstr(r.details, "version 1"), "ABORTED must say the current version: %s",
                      r.details);
        gc_result_release(&r);
    }
    assert_unchanged(&before, t, "refused assignments");

    /* A CLOSED complaint can no longer be assigned, nor unassigned. */
    long long v = assign_ok(t, id, "a1", 1);
    v = move_ok(t, id, RESOLVED, v, NULL);
    v = move_ok(t, id, CLOSED, v, NULL);
    before = count_rows(t);
    const char *agents[] = { "a2", "", "a1" };
    for (int i = 0; i < 3; i++) {
        Tally__V1__AssignComplaintRequest req = assign_req(t, id, agents[i], v);
        expect("assigning a CLOSED complaint", CMD("AssignComplaint"), &req.base,
               GRPC_STATUS_FAILED_PRECONDITION, NULL);
    }
    assert_unchanged(&before, t, "assignments of a CLOSED complaint");
}

/* ---- ChangeStatus ----------------------------------------------------------------------- */

Test(commands, change_status_walks_the_whole_state_machine)
{
    char t[32];
    long long at, resolved_at;
    seeded(t, sizeof(t), "UTC");
    long long id = create_ok(t, "k1");
    struct {
        int to;
        bool resolved;
    } path[] = { { IN_PROGRESS, false },
                 { RESOLVED, true },
                 { OPEN, false },
                 { RESOLVED, true },
                 { CLOSED, false } };
    long long v = 1;
    resolved_at = 0;
    for (size_t i = 0; i < 5; i++) {
        v = move_ok(t, id, path[i].to, v, &at);
        if (path[i].to == RESOLVED)
            resolved_at = at;
        else if (path[i].to == OPEN)
            resolved_at = 0;
        Tally__V1__GetComplaintReply *g = get_rep(t, id);
        Tally__V1__Complaint *c = g->complaint;
        cr_assert_eq(c->status, path[i].to, "step %zu", i);
        cr_assert_eq(c->version, v);
        cr_assert_eq(c->updated_at_ms, at);
        cr_assert_eq(c->resolved_at_ms, resolved_at,
                     "step %zu: resolved_at_ms %lld, want %lld (0 after a reopen, kept when "
                     "CLOSED)",
                     i, (long long)c->resolved_at_ms, resolved_at);
        cr_assert_geq(c->updated_at_ms, c->created_at_ms);
        free_msg(g);
    }
    cr_assert_eq(v, 6);
    cr_assert_neq(resolved_at, 0, "CLOSED keeps resolved_at_ms");

    /* OPEN -> RESOLVED directly is allowed too. */
    long long id2 = create_ok(t, "k2");
    cr_assert_eq(move_ok(t, id2, RESOLVED, 1, NULL), 2);

    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = { t, ids };
    cr_assert_eq(sql_int("SELECT count(*) FROM status_history WHERE tenant_id = $1 AND"
                         " complaint_id = $2",
                         2, p),
                 6, "one audit row per move plus the creation");
}

/* Every refused move, from every status: FAILED_PRECONDITION naming the allowed moves. */
Test(commands, change_status_refuses_moves_outside_the_state_machine)
{
    char t[32];
    seeded(t, sizeof(t), "UTC");
    /* A complaint in each status, and its version. */
    long long id[5] = { 0 }, ver[5] = { 0 };
    id[OPEN] = create_ok(t, "open");
    ver[OPEN] = 1;
    id[IN_PROGRESS] = create_ok(t, "in-progress");
    ver[IN_PROGRESS] = move_ok(t, id[IN_PROGRESS], IN_PROGRESS, 1, NULL);
    id[RESOLVED] = create_ok(t, "resolved");
    ver[RESOLVED] = move_ok(t, id[RESOLVED], RESOLVED, 1, NULL);
    id[CLOSED] = create_ok(t, "closed");
    ver[CLOSED] = move_ok(t, id[CLOSED], CLOSED, move_ok(t, id[CLOSED], RESOLVED, 1, NULL), NULL);
    const char *allowed[5][2] = { { NULL, NULL },
                                  { "IN_PROGRESS", "RESOLVED" },
                                  { "RESOLVED", NULL },
                                  { "OPEN", "CLOSED" },
                                  { NULL, NULL } };
    const bool ok[5][5] = { [OPEN] = { [IN_PROGRESS] = true, [RESOLVED] = true },
                            [IN_PROGRESS] = { [RESOLVED] = true },
                            [RESOLVED] = { [OPEN] = true, [CLOSED] = true } };
    counts before = count_rows(t);
    int refused = 0;
    for (int from = OPEN; from <= CLOSED; from++)
        for (int to = OPEN; to <= CLOSED; to++) {
            if (ok[from][to])
                continue;
            Tally__V1__ChangeStatusRequest req = move_req(t, id[from], to, ver[from]);
            gc_result r = call(CMD("ChangeStatus"), &req.base);
            char what[64];
            snprintf(what, sizeof(what), "move %d -> %d", from, to);
            check_refusal(what, &r, GRPC_STATUS_FAILED_PRECONDITION, NULL);
            const char *list = strstr(r.details, "allowed");
            if (from == CLOSED) {
                cr_assert(strstr(r.details, "final"), "%s: \"%s\"", what, r.details);
            } else {
                cr_assert(list, "%s: \"%s\" does not name the allowed moves", what, r.details);
                for (int k = 0; k < 2 && allowed[from][k]; k++)
                    cr_assert(strstr(list, allowed[from][k]), "%s: \"%s\" lacks %s", what,
                              r.details, allowed[from][k]);
            }
            gc_result_release(&r);
            refused++;
        }
    cr_assert_eq(refused, 11);
    assert_unchanged(&before, t, "refused moves");
    for (int s = OPEN; s <= CLOSED; s++) {
        Tally__V1__GetComplaintReply *g = get_rep(t, id[s]);
        cr_assert_eq(g->complaint->status, s);
        cr_assert_eq(g->complaint->version, ver[s]);
        free_msg(g);
    }
}

Test(commands, change_status_refusals_name_the_field_and_write_nothing)
{
    char t[32], long_id[80], note[2100];
    seeded(t, sizeof(t), "UTC");
    repeat(long_id, 'x', 65);
    repeat(note, 'n', 2001);
    long long id = create_ok(t, "k1");
    counts before = count_rows(t);
    struct {
        const char *tenant, *actor, *note;
        long long id, expected;
        int status, code;
        const char *field;
    } cases[] = {
        { "", "agent-7", "", id, 1, IN_PROGRESS, GRPC_STATUS_INVALID_ARGUMENT, "tenant_id" },
        { t, "agent-7", "", 0, 1, IN_PROGRESS, GRPC_STATUS_INVALID_ARGUMENT, "complaint_id" },
        { t, "agent-7", "", id, 1, 0, GRPC_STATUS_INVALID_ARGUMENT, "status" },
        { t, "agent-7", "", id, 1, 5, GRPC_STATUS_INVALID_ARGUMENT, "status" },
        { t, "agent-7", "", id, 1, 99, GRPC_STATUS_INVALID_ARGUMENT, "status" },
        { t, "agent-7", "", id, 1, -1, GRPC_STATUS_INVALID_ARGUMENT, "status" },
        { t, "agent-7", "", id, 0, IN_PROGRESS, GRPC_STATUS_INVALID_ARGUMENT, "expected_version" },
        { t, "agent-7", note, id, 1, IN_PROGRESS, GRPC_STATUS_INVALID_ARGUMENT, "note" },
        { t, "", "", id, 1, IN_PROGRESS, GRPC_STATUS_INVALID_ARGUMENT, "actor" },
        { t, "auto close", "", id, 1, IN_PROGRESS, GRPC_STATUS_INVALID_ARGUMENT, "actor" },
        { t, long_id, "", id, 1, IN_PROGRESS, GRPC_STATUS_INVALID_ARGUMENT, "actor" },
        { t, "agent-7", "", 999999999999LL, 1, IN_PROGRESS, GRPC_STATUS_NOT_FOUND, "complaint_id" },
        { t, "agent-7", "", id, 7, IN_PROGRESS, GRPC_STATUS_ABORTED, "expected_version" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Tally__V1__ChangeStatusRequest req =
            move_req(cases[i].tenant, cases[i].id, cases[i].status, cases[i].expected);
        req.actor = (char *)cases[i].actor;
        req.note = (char *)cases[i].note;
        gc_result r = call(CMD("ChangeStatus"), &req.base);
        char what[64];
        snprintf(what, sizeof(what), "ChangeStatus case %zu", i);
        check_refusal(what, &r, cases[i].code, cases[i].field);
        if (cases[i].code == GRPC_STATUS_ABORTED)
            cr_assert(strstr(r.details, "version 1"), "ABORTED must say the current version: %s",
                      r.details);
        gc_result_release(&r);
    }
    assert_unchanged(&before, t, "refused status changes");
    /* A 2000-byte note is fine. */
    note[2000] = '\0';
    Tally__V1__ChangeStatusRequest req = move_req(t, id, IN_PROGRESS, 1);
    req.note = note;
    free_msg(call_ok(CMD("ChangeStatus"), &req.base, &tally__v1__change_status_reply__descriptor));
}

/* ---- reads ------------------------------------------------------------------------------ */

Test(commands, list_status_history_pages_one_by_one)
{
    char t[32], notes[8][16];
    long long at[8];
    seeded(t, sizeof(t), "UTC");
    Tally__V1__CreateComplaintRequest creq = create_req(t, "k1");
    Tally__V1__CreateComplaintReply *crep = create_rep(&creq);
    long long id = crep->complaint_id;
    at[1] = crep->created_at_ms;
    free_msg(crep);
    long long v = assign_ok(t, id, "a1", 1); /* version 2, no audit row */
    const int moves[] = { IN_PROGRESS, RESOLVED, OPEN, RESOLVED, CLOSED };
    const int from[] = { 0, OPEN, IN_PROGRESS, RESOLVED, OPEN, RESOLVED };
    const int to[] = { OPEN, IN_PROGRESS, RESOLVED, OPEN, RESOLVED, CLOSED };
    const long long want_version[] = { 1, 3, 4, 5, 6, 7 };
    for (int i = 0; i < 5; i++) {
        Tally__V1__ChangeStatusRequest req = move_req(t, id, moves[i], v);
        snprintf(notes[i + 1], sizeof(notes[i + 1]), "note %d", i + 1);
        req.note = notes[i + 1];
        Tally__V1__ChangeStatusReply *rep =
            call_ok(CMD("ChangeStatus"), &req.base, &tally__v1__change_status_reply__descriptor);
        v = rep->version;
        at[i + 2] = rep->updated_at_ms;
        free_msg(rep);
    }

    char token[512] = "", seen[8][512];
    int pages = 0;
    for (;;) {
        Tally__V1__ListStatusHistoryReply *rep = history_rep(t, id, 1, token);
        cr_assert_eq(rep->n_entries, 1, "page %d has %zu entries", pages, rep->n_entries);
        cr_assert_lt(pages, 6, "more than 6 pages");
        Tally__V1__StatusHistoryEntry *e = rep->entries[0];
        cr_assert_eq(e->version, want_version[pages]);
        cr_assert_eq(e->from_status, from[pages], "page %d", pages);
        cr_assert_eq(e->to_status, to[pages], "page %d", pages);
        cr_assert_str_eq(e->actor, pages == 0 ? "" : "agent-7");
        cr_assert_str_eq(e->note, pages == 0 ? "" : notes[pages]);
        cr_assert_eq(e->changed_at_ms, at[pages + 1], "page %d changed_at_ms", pages);
        snprintf(seen[pages], sizeof(seen[pages]), "%s", rep->next_page_token);
        snprintf(token, sizeof(token), "%s", rep->next_page_token);
        pages++;
        free_msg(rep);
        if (!token[0])
            break;
        for (int k = 0; k < pages - 1; k++)
            cr_assert_str_neq(seen[k], token, "a token repeats");
    }
    cr_assert_eq(pages, 6);

    /* Default page size: everything, no token. Exact fit: no token either. */
    Tally__V1__ListStatusHistoryReply *all = history_rep(t, id, 0, "");
    cr_assert_eq(all->n_entries, 6);
    cr_assert_str_eq(all->next_page_token, "");
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(all->entries[i]->version, want_version[i]);
    free_msg(all);
    all = history_rep(t, id, 6, "");
    cr_assert_eq(all->n_entries, 6);
    cr_assert_str_eq(all->next_page_token, "");
    free_msg(all);
    all = history_rep(t, id, 4, "");
    cr_assert_eq(all->n_entries, 4);
    cr_assert_str_neq(all->next_page_token, "");
    Tally__V1__ListStatusHistoryReply *rest = history_rep(t, id, 500, all->next_page_token);
    cr_assert_eq(rest->n_entries, 2);
    cr_assert_eq(rest->entries[0]->version, 6);
    cr_assert_eq(rest->entries[1]->version, 7);
    cr_assert_str_eq(rest->next_page_token, "");
    free_msg(rest);
    free_msg(all);
}

Test(commands, list_status_history_refusals)
{
    char t[32], long_token[300];
    seeded(t, sizeof(t), "UTC");
    long long id = create_ok(t, "k1");
    long long other = create_ok(t, "k2");
    move_ok(t, other, IN_PROGRESS, 1, NULL);
    Tally__V1__ListStatusHistoryReply *o = history_rep(t, other, 1, "");
    char other_token[128];
    snprintf(other_token, sizeof(other_token), "%s", o->next_page_token);
    cr_assert_str_neq(other_token, "");
    free_msg(o);
    Tally__V1__ListStatusHistoryReply *mine = history_rep(t, id, 1, "");
    cr_assert_str_eq(mine->next_page_token, "", "one entry only: no next page");
    free_msg(mine);
    move_ok(t, id, IN_PROGRESS, 1, NULL);
    mine = history_rep(t, id, 1, "");
    char good[128], junk[160];
    snprintf(good, sizeof(good), "%s", mine->next_page_token);
    free_msg(mine);
    snprintf(junk, sizeof(junk), "%sx", good);
    repeat(long_token, 'h', 257);

    struct {
        const char *tenant;
        long long id;
        int size;
        const char *token;
        int code;
        const char *field;
    } cases[] = {
        { "", id, 1, "", GRPC_STATUS_INVALID_ARGUMENT, "tenant_id" },
        { t, 0, 1, "", GRPC_STATUS_INVALID_ARGUMENT, "complaint_id" },
        { t, id, 501, "", GRPC_STATUS_INVALID_ARGUMENT, "page_size" },
        { t, id, -1, "", GRPC_STATUS_INVALID_ARGUMENT, "page_size" },
        { t, id, 1, "garbage", GRPC_STATUS_INVALID_ARGUMENT, "page_token" },
        { t, id, 1, junk, GRPC_STATUS_INVALID_ARGUMENT, "page_token" },
        { t, id, 1, other_token, GRPC_STATUS_INVALID_ARGUMENT, "page_token" },
        { t, id, 1, long_token, GRPC_STATUS_INVALID_ARGUMENT, "page_token" },
        { t, 999999999999LL, 1, "", GRPC_STATUS_NOT_FOUND, "complaint_id" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Tally__V1__ListStatusHistoryRequest req = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
        req.tenant_id = (char *)cases[i].tenant;
        req.complaint_id = cases[i].id;
        req.page_size = cases[i].size;
        req.page_token = (char *)cases[i].token;
        char what[64];
        snprintf(what, sizeof(what), "ListStatusHistory case %zu", i);
        expect(what, CMD("ListStatusHistory"), &req.base, cases[i].code, cases[i].field);
    }
    /* The good token still works. */
    Tally__V1__ListStatusHistoryReply *next = history_rep(t, id, 1, good);
    cr_assert_eq(next->n_entries, 1);
    cr_assert_eq(next->entries[0]->version, 2);
    free_msg(next);
}

Test(commands, a_complaint_of_another_tenant_is_not_found)
{
    char a[32], b[32];
    seeded(a, sizeof(a), "UTC");
    seeded(b, sizeof(b), "UTC");
    long long id = create_ok(a, "k1");
    counts before_a = count_rows(a), before_b = count_rows(b);

    Tally__V1__GetComplaintRequest g = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    g.tenant_id = b;
    g.complaint_id = id;
    expect("GetComplaint", CMD("GetComplaint"), &g.base, GRPC_STATUS_NOT_FOUND, "complaint_id");
    Tally__V1__AssignComplaintRequest as = assign_req(b, id, "a1", 1);
    expect("AssignComplaint", CMD("AssignComplaint"), &as.base, GRPC_STATUS_NOT_FOUND,
           "complaint_id");
    Tally__V1__ChangeStatusRequest cs = move_req(b, id, IN_PROGRESS, 1);
    expect("ChangeStatus", CMD("ChangeStatus"), &cs.base, GRPC_STATUS_NOT_FOUND, "complaint_id");
    Tally__V1__ListStatusHistoryRequest ls = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
    ls.tenant_id = b;
    ls.complaint_id = id;
    expect("ListStatusHistory", CMD("ListStatusHistory"), &ls.base, GRPC_STATUS_NOT_FOUND,
           "complaint_id");
    assert_unchanged(&before_a, a, "another tenant's commands");
    assert_unchanged(&before_b, b, "commands on another tenant's complaint");

    /* A tenant that does not exist at all: NOT_FOUND naming the tenant or the complaint. */
    char ghost[32];
    fx_tenant(ghost, sizeof(ghost));
    g.tenant_id = ghost;
    as.tenant_id = ghost;
    cs.tenant_id = ghost;
    ls.tenant_id = ghost;
    const ProtobufCMessage *msgs[] = { &g.base, &as.base, &cs.base, &ls.base };
    const char *methods[] = { CMD("GetComplaint"), CMD("AssignComplaint"), CMD("ChangeStatus"),
                              CMD("ListStatusHistory") };
    for (int i = 0; i < 4; i++) {
        gc_result r = call(methods[i], msgs[i]);
        check_refusal(methods[i], &r, GRPC_STATUS_NOT_FOUND, NULL);
        cr_assert(strncmp(r.details, "tenant_id:", 10) == 0 ||
                      strncmp(r.details, "complaint_id:", 13) == 0,
                  "%s: \"%s\" names neither tenant_id nor complaint_id", methods[i], r.details);
    }
    assert_nothing_for(ghost, "commands for an unknown tenant");
    Tally__V1__GetComplaintReply *mine = get_rep(a, id);
    cr_assert_eq(mine->complaint->version, 1);
    free_msg(mine);
}

/* A page token of tenant A's complaint must not turn tenant B's NOT_FOUND into an answer. */
Test(commands, a_page_token_does_not_bypass_tenant_isolation)
{
    char a[32], b[32];
    seeded(a, sizeof(a), "UTC");
    seeded(b, sizeof(b), "UTC");
    long long id = create_ok(a, "k1");
    move_ok(a, id, IN_PROGRESS, 1, NULL);
    Tally__V1__ListStatusHistoryReply *first = history_rep(a, id, 1, "");
    char token[128];
    snprintf(token, sizeof(token), "%s", first->next_page_token);
    free_msg(first);
    cr_assert_str_neq(token, "");
    Tally__V1__ListStatusHistoryRequest ls = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
    ls.tenant_id = b;
    ls.complaint_id = id;
    ls.page_size = 1;
    ls.page_token = token;
    expect("ListStatusHistory of another tenant's complaint with its token",
           CMD("ListStatusHistory"), &ls.base, GRPC_STATUS_NOT_FOUND, "complaint_id");
}

/* ---- hostile input ---------------------------------------------------------------------- */

static const char *const bad_utf8[] = {
    "ab\xc0\x80",         /* overlong NUL */
    "\xed\xa0\x80",       /* a surrogate */
    "truncated \xe2\x82", /* a cut 3-byte sequence */
    "\xff\xfe",           /* bytes that never occur */
    "\xf4\x90\x80\x80",   /* above U+10FFFF */
    "\xe0\x80\xaf",       /* overlong '/' */
};
#define NBAD (sizeof(bad_utf8) / sizeof(bad_utf8[0]))

Test(commands, invalid_utf8_in_free_text_is_refused_and_writes_nothing)
{
    char t[32], t_new[32], ids[24];
    seeded(t, sizeof(t), "UTC");
    fx_tenant(t_new, sizeof(t_new));
    long long id = create_ok(t, "k1");
    snprintf(ids, sizeof(ids), "%lld", id);
    counts before = count_rows(t);
    for (size_t i = 0; i < NBAD; i++) {
        const char *s = bad_utf8[i];
        char what[64];
        pbw w;

        w.n = 0;
        pb_str(&w, 1, t_new);
        pb_str(&w, 2, s);
        pb_str(&w, 3, "UTC");
        snprintf(what, sizeof(what), "PutTenant.name #%zu", i);
        expect_raw(what, CMD("PutTenant"), &w, GRPC_STATUS_INVALID_ARGUMENT, "name");

        w.n = 0;
        pb_str(&w, 1, t);
        pb_str(&w, 2, "c-new");
        pb_str(&w, 3, s);
        snprintf(what, sizeof(what), "PutCategory.name #%zu", i);
        expect_raw(what, CMD("PutCategory"), &w, GRPC_STATUS_INVALID_ARGUMENT, "name");
        snprintf(what, sizeof(what), "PutAgent.name #%zu", i);
        expect_raw(what, CMD("PutAgent"), &w, GRPC_STATUS_INVALID_ARGUMENT, "name");
        /* Renaming an existing one is refused the same way. */
        w.n = 0;
        pb_str(&w, 1, t);
        pb_str(&w, 2, "c1");
        pb_str(&w, 3, s);
        expect_raw(what, CMD("PutCategory"), &w, GRPC_STATUS_INVALID_ARGUMENT, "name");

        for (int f = 5; f <= 6; f++) {
            w.n = 0;
            pb_str(&w, 1, t);
            pb_str(&w, 2, "k-utf8");
            pb_str(&w, 3, "c1");
            pb_int(&w, 4, 2);
            pb_str(&w, 5, f == 5 ? s : "Fine title");
            pb_str(&w, 6, f == 6 ? s : "Fine description");
            pb_str(&w, 7, "cust-1");
            snprintf(what, sizeof(what), "CreateComplaint.%s #%zu",
                     f == 5 ? "title" : "description", i);
            expect_raw(what, CMD("CreateComplaint"), &w, GRPC_STATUS_INVALID_ARGUMENT,
                       f == 5 ? "title" : "description");
        }

        w.n = 0;
        pb_str(&w, 1, t);
        pb_int(&w, 2, id);
        pb_int(&w, 3, IN_PROGRESS);
        pb_int(&w, 4, 1);
        pb_str(&w, 5, s);
        pb_str(&w, 6, "agent-7");
        snprintf(what, sizeof(what), "ChangeStatus.note #%zu", i);
        expect_raw(what, CMD("ChangeStatus"), &w, GRPC_STATUS_INVALID_ARGUMENT, "note");
    }
    assert_unchanged(&before, t, "requests with invalid UTF-8");
    assert_nothing_for(t_new, "PutTenant with invalid UTF-8");
    const char *p[] = { t };
    cr_assert_eq(sql_int("SELECT count(*) FROM categories WHERE tenant_id = $1 AND category_id ="
                         " 'c1' AND name = 'Category'",
                         1, p),
                 1, "the refused rename changed the category");
    /* The idempotency key of the refused creations is still free. */
    create_ok(t, "k-utf8");
}

/* types.proto: free text is "valid UTF-8 without NUL bytes"; an id is [A-Za-z0-9_.-]. A NUL
 * inside a protobuf string must be refused, not silently cut off. */
Test(commands, a_nul_byte_inside_a_string_is_refused)
{
    char t[32];
    seeded(t, sizeof(t), "UTC");
    counts before = count_rows(t);
    pbw w;
    w.n = 0;
    pb_str(&w, 1, t);
    pb_str(&w, 2, "k-nul");
    pb_str(&w, 3, "c1");
    pb_int(&w, 4, 2);
    pb_bytes(&w, 5, "Visible\0hidden", 14);
    pb_str(&w, 6, "d");
    pb_str(&w, 7, "cust-1");
    expect_raw("CreateComplaint.title with a NUL", CMD("CreateComplaint"), &w,
               GRPC_STATUS_INVALID_ARGUMENT, "title");
    assert_unchanged(&before, t, "a title with a NUL byte");

    char id_with_nul[48];
    int n = snprintf(id_with_nul, sizeof(id_with_nul), "%s", t);
    memcpy(id_with_nul + n, "\0evil", 5);
    w.n = 0;
    pb_bytes(&w, 1, id_with_nul, (size_t)n + 5);
    pb_str(&w, 2, "c-nul");
    pb_str(&w, 3, "Name");
    expect_raw("PutCategory.tenant_id with a NUL", CMD("PutCategory"), &w,
               GRPC_STATUS_INVALID_ARGUMENT, "tenant_id");
    assert_unchanged(&before, t, "a tenant id with a NUL byte");
}

Test(commands, undecodable_requests_are_invalid_argument)
{
    char t[32];
    seeded(t, sizeof(t), "UTC");
    counts before = count_rows(t);
    const struct {
        const char *b;
        size_t n;
    } junk[] = {
        { "\xff\xff\xff\xff", 4 }, /* a truncated varint */
        { "\x0a\x10"
          "abc",
          5 },                                                      /* a length past the end */
        { "\x0f", 1 },                                              /* wire type 7 */
        { "\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 12 }, /* an 11-byte varint */
    };
    const char *methods[] = { CMD("PutTenant"), CMD("CreateComplaint"), CMD("ChangeStatus"),
                              CMD("GetComplaint") };
    for (size_t m = 0; m < 4; m++)
        for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
            gc_result r;
            cr_assert_eq(
                gc_call_raw(cli, methods[m], junk[i].b, junk[i].n, true, NULL, DEADLINE_MS, &r), 0);
            cr_assert_eq(r.code, GRPC_STATUS_INVALID_ARGUMENT, "%s junk %zu: %s \"%s\"", methods[m],
                         i, tally_grpc_code_name(r.code), r.details);
            gc_result_release(&r);
        }
    assert_unchanged(&before, t, "undecodable requests");
}

static const char *const hostile_text[] = {
    "'; DROP TABLE complaints; --",
    "Robert'); DROP TABLE events; --",
    "O'Brien's \"quoted\" `ticked` text",
    "back\\slash \\' \\\\ \\x00 \\n E'\\\\'",
    "$1 $2 $$ $tag$ dollar-quoted $tag$",
    "%s %n %x %% %1$s %p",
    "/* comment */ -- line ; SELECT pg_sleep(30);",
    "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 ' \" \\ ;",
};
#define NHOSTILE (sizeof(hostile_text) / sizeof(hostile_text[0]))

Test(commands, sql_metacharacters_in_free_text_are_stored_byte_exact)
{
    char t[32], key[16], desc[1024];
    seeded(t, sizeof(t), "UTC");
    const char *p[] = { t };
    for (size_t i = 0; i < NHOSTILE; i++) {
        const char *h = hostile_text[i];
        Tally__V1__PutTenantRequest pt = TALLY__V1__PUT_TENANT_REQUEST__INIT;
        pt.tenant_id = t;
        pt.name = (char *)h;
        pt.time_zone = "UTC";
        free_msg(call_ok(CMD("PutTenant"), &pt.base, &tally__v1__put_tenant_reply__descriptor));
        Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        pc.tenant_id = t;
        pc.category_id = "c1";
        pc.name = (char *)h;
        free_msg(call_ok(CMD("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor));
        Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
        pa.tenant_id = t;
        pa.agent_id = "a1";
        pa.name = (char *)h;
        free_msg(call_ok(CMD("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor));
        PGresult *r = sql("SELECT (SELECT name FROM tenants WHERE tenant_id = $1),"
                          " (SELECT name FROM categories WHERE tenant_id = $1 AND"
                          "  category_id = 'c1'),"
                          " (SELECT name FROM agents WHERE tenant_id = $1 AND agent_id = 'a1')",
                          1, p);
        for (int k = 0; k < 3; k++)
            cr_assert_str_eq(PQgetvalue(r, 0, k), h, "name %d of case %zu", k, i);
        PQclear(r);

        snprintf(key, sizeof(key), "k%zu", i);
        snprintf(desc, sizeof(desc), "%s\n%s\t%s", h, h, h);
        Tally__V1__CreateComplaintRequest req = create_req(t, key);
        req.title = (char *)h;
        req.description = desc;
        Tally__V1__CreateComplaintReply *rep = create_rep(&req);
        long long id = rep->complaint_id;
        free_msg(rep);
        Tally__V1__GetComplaintReply *g = get_rep(t, id);
        cr_assert_str_eq(g->complaint->title, h);
        cr_assert_str_eq(g->complaint->description, desc);
        free_msg(g);

        Tally__V1__ChangeStatusRequest cs = move_req(t, id, IN_PROGRESS, 1);
        cs.note = (char *)h;
        free_msg(
            call_ok(CMD("ChangeStatus"), &cs.base, &tally__v1__change_status_reply__descriptor));
        Tally__V1__ListStatusHistoryReply *hist = history_rep(t, id, 0, "");
        cr_assert_eq(hist->n_entries, 2);
        cr_assert_str_eq(hist->entries[1]->note, h);
        free_msg(hist);

        ev e[4];
        int n = load_events(t, "UTC", id, e, 4);
        cr_assert_eq(n, 2);
        Tally__V1__ComplaintCreated *b =
            tally__v1__complaint_created__unpack(NULL, e[0].len, e[0].payload);
        cr_assert(b);
        cr_assert_str_eq(b->title, h, "the event carries the title byte-exact");
        free_msg(b);
        free_events(e, n);
    }
    /* The tables are all still there and hold what was written. */
    cr_assert_eq(sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1", 1, p),
                 (long long)NHOSTILE);
    cr_assert_eq(sql_int("SELECT count(*) FROM status_history WHERE tenant_id = $1", 1, p),
                 2 * (long long)NHOSTILE);
}

static const char *const hostile_ids[] = {
    "'; DROP TABLE complaints; --", "a'b", "a\\b", "$1", "%s%n", "a b", "t1;--", "\"x\"", "a/b",
};
#define NHOSTILE_IDS (sizeof(hostile_ids) / sizeof(hostile_ids[0]))

Test(commands, sql_metacharacters_in_ids_are_refused_and_write_nothing)
{
    char t[32];
    seeded(t, sizeof(t), "UTC");
    long long id = create_ok(t, "k1");
    counts before = count_rows(t);
    for (size_t i = 0; i < NHOSTILE_IDS; i++) {
        char *h = (char *)hostile_ids[i];
        char what[96];
#define REFUSED(method, msg, field)                                                  \
    do {                                                                             \
        snprintf(what, sizeof(what), "%s.%s = %s", method, field, h);                \
        expect(what, CMD(method), &(msg).base, GRPC_STATUS_INVALID_ARGUMENT, field); \
    } while (0)
        Tally__V1__PutTenantRequest pt = TALLY__V1__PUT_TENANT_REQUEST__INIT;
        pt.tenant_id = h;
        pt.name = "N";
        pt.time_zone = "UTC";
        REFUSED("PutTenant", pt, "tenant_id");

        Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        pc.tenant_id = h;
        pc.category_id = "c9";
        pc.name = "N";
        REFUSED("PutCategory", pc, "tenant_id");
        pc.tenant_id = t;
        pc.category_id = h;
        REFUSED("PutCategory", pc, "category_id");

        Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
        pa.tenant_id = h;
        pa.agent_id = "a9";
        pa.name = "N";
        REFUSED("PutAgent", pa, "tenant_id");
        pa.tenant_id = t;
        pa.agent_id = h;
        REFUSED("PutAgent", pa, "agent_id");

        Tally__V1__CreateComplaintRequest cc = create_req(h, "k-new");
        REFUSED("CreateComplaint", cc, "tenant_id");
        cc = create_req(t, h);
        REFUSED("CreateComplaint", cc, "idempotency_key");
        cc = create_req(t, "k-new");
        cc.category_id = h;
        REFUSED("CreateComplaint", cc, "category_id");
        cc = create_req(t, "k-new");
        cc.customer_id = h;
        REFUSED("CreateComplaint", cc, "customer_id");

        Tally__V1__AssignComplaintRequest as = assign_req(h, id, "a1", 1);
        REFUSED("AssignComplaint", as, "tenant_id");
        as = assign_req(t, id, h, 1);
        REFUSED("AssignComplaint", as, "agent_id");

        Tally__V1__ChangeStatusRequest cs = move_req(h, id, IN_PROGRESS, 1);
        REFUSED("ChangeStatus", cs, "tenant_id");
        cs = move_req(t, id, IN_PROGRESS, 1);
        cs.actor = h;
        REFUSED("ChangeStatus", cs, "actor");

        Tally__V1__GetComplaintRequest g = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
        g.tenant_id = h;
        g.complaint_id = id;
        REFUSED("GetComplaint", g, "tenant_id");

        Tally__V1__ListStatusHistoryRequest ls = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
        ls.tenant_id = h;
        ls.complaint_id = id;
        REFUSED("ListStatusHistory", ls, "tenant_id");
        ls.tenant_id = t;
        ls.page_token = h;
        REFUSED("ListStatusHistory", ls, "page_token");
#undef REFUSED
        assert_nothing_for(h, "requests with a hostile tenant id");
    }
    assert_unchanged(&before, t, "requests with hostile ids");
    Tally__V1__GetComplaintReply *g = get_rep(t, id);
    cr_assert_eq(g->complaint->version, 1);
    cr_assert_str_eq(g->complaint->assigned_agent_id, "");
    free_msg(g);
}

/* Enum numbers no version of the contract defines, sent as raw varints. */
Test(commands, unknown_enum_numbers_are_refused_and_write_nothing)
{
    char t[32];
    seeded(t, sizeof(t), "UTC");
    long long id = create_ok(t, "k1");
    counts before = count_rows(t);
    const int64_t bad[] = { 0, 5, 99, 1000000, -1, INT32_MAX };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char what[64];
        pbw w;
        w.n = 0;
        pb_str(&w, 1, t);
        pb_str(&w, 2, "k-enum");
        pb_str(&w, 3, "c1");
        pb_int(&w, 4, bad[i]);
        pb_str(&w, 5, "Title");
        pb_str(&w, 7, "cust-1");
        snprintf(what, sizeof(what), "priority %lld", (long long)bad[i]);
        expect_raw(what, CMD("CreateComplaint"), &w, GRPC_STATUS_INVALID_ARGUMENT, "priority");
        w.n = 0;
        pb_str(&w, 1, t);
        pb_int(&w, 2, id);
        pb_int(&w, 3, bad[i]);
        pb_int(&w, 4, 1);
        pb_str(&w, 6, "agent-7");
        snprintf(what, sizeof(what), "status %lld", (long long)bad[i]);
        expect_raw(what, CMD("ChangeStatus"), &w, GRPC_STATUS_INVALID_ARGUMENT, "status");
    }
    assert_unchanged(&before, t, "unknown enum numbers");
}

/* ---- the events table ------------------------------------------------------------------- */

Test(commands, event_rows_carry_versions_types_local_days_and_fat_bodies)
{
    char t[32];
    const char *tz = "Pacific/Auckland";
    seeded(t, sizeof(t), tz);
    Tally__V1__CreateComplaintRequest req = create_req(t, "k1");
    req.category_id = "c2";
    req.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    req.customer_id = "cust-42";
    Tally__V1__CreateComplaintReply *rep = create_rep(&req);
    long long id = rep->complaint_id;
    free_msg(rep);
    rep = create_rep(&req); /* a retry writes no second creation event */
    cr_assert_eq(rep->complaint_id, id);
    free_msg(rep);
    long long v = 1;
    v = assign_ok(t, id, "a1", v);            /* 2 */
    v = move_ok(t, id, IN_PROGRESS, v, NULL); /* 3 */
    v = assign_ok(t, id, "a2", v);            /* 4 */
    v = move_ok(t, id, RESOLVED, v, NULL);    /* 5 */
    v = move_ok(t, id, OPEN, v, NULL);        /* 6 */
    v = move_ok(t, id, RESOLVED, v, NULL);    /* 7 */
    v = assign_ok(t, id, "", v);              /* 8 */
    v = move_ok(t, id, CLOSED, v, NULL);      /* 9 */
    cr_assert_eq(v, 9);

    Tally__V1__GetComplaintReply *g = get_rep(t, id);
    long long created = g->complaint->created_at_ms, updated = g->complaint->updated_at_ms;
    free_msg(g);

    ev e[16];
    int n = load_events(t, tz, id, e, 16);
    cr_assert_eq(n, 9, "one event per version, got %d", n);
    const int types[] = { 1, 2, 3, 2, 3, 3, 3, 2, 3 };
    /* For assignments: previous, new, status; for moves: from, to, agent. */
    const char *prev[] = { NULL, "", NULL, "a1", NULL, NULL, NULL, "a2", NULL };
    const char *agent[] = { NULL, "a1", "a1", "a2", "a2", "a2", "a2", "", "" };
    const int st_from[] = { 0, 0, OPEN, 0, IN_PROGRESS, RESOLVED, OPEN, 0, RESOLVED };
    const int st_to[] = { 0, 0, IN_PROGRESS, 0, RESOLVED, OPEN, RESOLVED, 0, CLOSED };
    const int st_now[] = { 0, OPEN, 0, IN_PROGRESS, 0, 0, 0, RESOLVED, 0 };
    char created_day[16] = "";
    for (int i = 0; i < n; i++) {
        ev *x = &e[i];
        cr_assert_eq(x->version, i + 1, "event %d has version %lld", i, x->version);
        cr_assert_eq(x->complaint_id, id);
        cr_assert_eq(x->type, types[i], "event %d", i);
        cr_assert_str_eq(x->local_day, x->zone_day, "event %d: local_day %s, Auckland day %s", i,
                         x->local_day, x->zone_day);
        cr_assert_not(x->imported);
        if (i > 0)
            cr_assert_gt(x->seq, e[i - 1].seq);
        if (x->type == 1) {
            Tally__V1__ComplaintCreated *b =
                tally__v1__complaint_created__unpack(NULL, x->len, x->payload);
            cr_assert(b);
            cr_assert_str_eq(b->category_id, "c2");
            cr_assert_eq(b->priority, TALLY__V1__PRIORITY__PRIORITY_HIGH);
            cr_assert_str_eq(b->customer_id, "cust-42");
            cr_assert_str_eq(b->title, "Printer on fire");
            cr_assert_eq(b->status, OPEN);
            cr_assert_str_eq(b->agent_id, "");
            cr_assert_eq(x->occurred_ms, created);
            snprintf(created_day, sizeof(created_day), "%s", x->local_day);
            free_msg(b);
        } else if (x->type == 2) {
            Tally__V1__ComplaintAssigned *b =
                tally__v1__complaint_assigned__unpack(NULL, x->len, x->payload);
            cr_assert(b);
            cr_assert_str_eq(b->previous_agent_id, prev[i], "event %d", i);
            cr_assert_str_eq(b->agent_id, agent[i], "event %d", i);
            cr_assert_str_eq(b->category_id, "c2");
            cr_assert_eq(b->priority, TALLY__V1__PRIORITY__PRIORITY_HIGH);
            cr_assert_eq(b->status, st_now[i], "event %d", i);
            cr_assert_eq(b->created_at_ms, created);
            free_msg(b);
        } else {
            Tally__V1__StatusChanged *b =
                tally__v1__status_changed__unpack(NULL, x->len, x->payload);
            cr_assert(b);
            cr_assert_eq(b->from_status, st_from[i], "event %d", i);
            cr_assert_eq(b->to_status, st_to[i], "event %d", i);
            cr_assert_str_eq(b->category_id, "c2");
            cr_assert_eq(b->priority, TALLY__V1__PRIORITY__PRIORITY_HIGH);
            cr_assert_str_eq(b->agent_id, agent[i], "event %d", i);
            cr_assert_str_eq(b->actor, "agent-7");
            cr_assert_eq(b->created_at_ms, created);
            cr_assert_str_eq(b->created_local_day, created_day);
            if (b->to_status == RESOLVED) {
                cr_assert_geq(b->resolution_seconds, 0);
                cr_assert_eq(b->resolution_seconds, (x->occurred_ms - created) / 1000,
                             "event %d: resolution_seconds %lld, occurred %lld, created %lld", i,
                             (long long)b->resolution_seconds, x->occurred_ms, created);
            } else {
                cr_assert_eq(b->resolution_seconds, 0, "event %d", i);
            }
            free_msg(b);
        }
    }
    cr_assert_eq(e[n - 1].occurred_ms, updated, "the last event's time is the complaint's");
    free_events(e, n);

    /* The audit log has the creation and the five moves, with the same versions. */
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = { t, ids };
    PGresult *r = sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM status_history"
                      " WHERE tenant_id = $1 AND complaint_id = $2",
                      2, p);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "1,3,5,6,7,9");
    PQclear(r);
}

/*
 * StatusChanged.created_local_day is "the local_day of its ComplaintCreated", and a time-zone
 * change "applies to events from now on; days already recorded keep the zone they were
 * computed in". UTC+14 and UTC-12 are 26 hours apart, so their dates always differ.
 */
Test(commands, created_local_day_survives_a_time_zone_change)
{
    char t[32];
    seeded(t, sizeof(t), "Etc/GMT-14");
    long long id = create_ok(t, "k1");
    Tally__V1__PutTenantRequest pt = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    pt.tenant_id = t;
    pt.name = "Test tenant";
    pt.time_zone = "Etc/GMT+12";
    Tally__V1__PutTenantReply *tr =
        call_ok(CMD("PutTenant"), &pt.base, &tally__v1__put_tenant_reply__descriptor);
    cr_assert(tr->changed);
    free_msg(tr);
    move_ok(t, id, RESOLVED, 1, NULL);

    ev e[4];
    int n = load_events(t, "Etc/GMT+12", id, e, 4);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(e[1].local_day, e[1].zone_day, "the move's day is in the new zone");
    cr_assert_str_neq(e[0].local_day, e[1].local_day, "the zones should give different days");
    Tally__V1__StatusChanged *b = tally__v1__status_changed__unpack(NULL, e[1].len, e[1].payload);
    free_events(e, n);
    cr_assert(b);
    char carried[16];
    snprintf(carried, sizeof(carried), "%s", b->created_local_day);
    free_msg(b);
    cr_assert_str_eq(carried, e[0].local_day,
                     "created_local_day %s, but the ComplaintCreated's local_day is %s", carried,
                     e[0].local_day);
}

/* ---- deadlines -------------------------------------------------------------------------- */

/*
 * 1 ms deadlines: every call ends (OK if it was that fast, else DEADLINE_EXCEEDED; nothing
 * else, never a hang), and a retry with a normal deadline makes each key exactly one complaint
 * whatever the timed-out call committed. A call that must wait (its key is locked by an open
 * transaction) is always DEADLINE_EXCEEDED.
 */
Test(commands, a_tiny_deadline_is_deadline_exceeded_and_a_retry_is_safe)
{
    char t[32], key[16];
    seeded(t, sizeof(t), "UTC");
    int timed_out = 0;
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k-dl-%d", i);
        Tally__V1__CreateComplaintRequest req = create_req(t, key);
        gc_result r;
        cr_assert_eq(gc_call(cli, CMD("CreateComplaint"), &req.base, NULL, 1, &r), 0);
        cr_assert(r.code == GRPC_STATUS_DEADLINE_EXCEEDED || r.code == GRPC_STATUS_OK,
                  "1 ms deadline: %s \"%s\"", tally_grpc_code_name(r.code), r.details);
        timed_out += r.code == GRPC_STATUS_DEADLINE_EXCEEDED;
        gc_result_release(&r);
    }
    cr_log_info("%d of 20 calls with a 1 ms deadline timed out", timed_out);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k-dl-%d", i);
        Tally__V1__CreateComplaintRequest req = create_req(t, key);
        Tally__V1__CreateComplaintReply *rep = create_rep(&req);
        cr_assert_eq(rep->version, 1);
        free_msg(rep);
    }
    const char *p[] = { t };
    cr_assert_eq(sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1", 1, p), 20);
    cr_assert_eq(sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND type = 1", 1, p),
                 20);

    /* The key is taken by a transaction that has not committed: the call has to wait. */
    PGconn *locker = PQconnectdb(getenv("TALLY_PG_DSN"));
    cr_assert_eq(PQstatus(locker), CONNECTION_OK);
    PQclear(PQexec(locker, "BEGIN"));
    const char *lp[] = { t };
    PGresult *r = PQexecParams(locker,
                               "INSERT INTO idempotency_keys (tenant_id, idempotency_key,"
                               " request_hash, complaint_id, version, created_at)"
                               " VALUES ($1, 'k-locked', '\\x00', 1, 1, now())",
                               1, NULL, lp, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQresultErrorMessage(r));
    PQclear(r);
    Tally__V1__CreateComplaintRequest req = create_req(t, "k-locked");
    for (int i = 0; i < 3; i++) {
        gc_result g;
        cr_assert_eq(gc_call(cli, CMD("CreateComplaint"), &req.base, NULL, 1, &g), 0);
        cr_assert_eq(g.code, GRPC_STATUS_DEADLINE_EXCEEDED, "a waiting call: %s \"%s\"",
                     tally_grpc_code_name(g.code), g.details);
        gc_result_release(&g);
    }
    PQclear(PQexec(locker, "ROLLBACK"));
    PQfinish(locker);
    Tally__V1__CreateComplaintReply *rep = create_rep(&req);
    cr_assert_eq(rep->version, 1);
    free_msg(rep);
    cr_assert_eq(sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1", 1, p), 21);
}

typedef struct bg_move {
    const char *tenant;
    long long id;
    int deadline_ms;
    gc_result r;
} bg_move;

static void *run_move(void *arg)
{
    bg_move *m = arg;
    Tally__V1__ChangeStatusRequest req = move_req(m->tenant, m->id, IN_PROGRESS, 1);
    gc_call(cli, CMD("ChangeStatus"), &req.base, NULL, m->deadline_ms, &m->r);
    return NULL;
}

/* Backends waiting for a lock that pid holds. */
static long long waiting_on(int pid)
{
    char s[16];
    snprintf(s, sizeof(s), "%d", pid);
    const char *p[] = { s };
    return sql_int("SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY"
                   " (pg_blocking_pids(pid))",
                   1, p);
}

/*
 * A statement blocked on a row lock is cancelled on the server when the call's deadline passes:
 * after the lock is released the complaint is unchanged (an uncancelled UPDATE would commit).
 */
Test(commands, a_blocked_statement_is_cancelled_at_the_deadline)
{
    char t[32], ids[24];
    seeded(t, sizeof(t), "UTC");
    long long id = create_ok(t, "k1");
    snprintf(ids, sizeof(ids), "%lld", id);
    PGconn *locker = PQconnectdb(getenv("TALLY_PG_DSN"));
    cr_assert_eq(PQstatus(locker), CONNECTION_OK);
    PQclear(PQexec(locker, "BEGIN"));
    const char *p[] = { ids };
    PGresult *r =
        PQexecParams(locker, "SELECT 1 FROM complaints WHERE complaint_id = $1 FOR UPDATE", 1, NULL,
                     p, NULL, NULL, 0);
    cr_assert_eq(PQntuples(r), 1, "%s", PQresultErrorMessage(r));
    PQclear(r);
    int pid = PQbackendPID(locker);

    bg_move m = { .tenant = t, .id = id, .deadline_ms = 1500 };
    pthread_t th;
    pthread_create(&th, NULL, run_move, &m);
    bool blocked = false;
    for (int i = 0; i < 100 && !blocked; i++) {
        blocked = waiting_on(pid) > 0;
        if (!blocked)
            sleep_ms(10);
    }
    pthread_join(th, NULL);
    cr_assert(blocked, "the ChangeStatus never waited for the row lock (test is void)");
    cr_assert_eq(m.r.code, GRPC_STATUS_DEADLINE_EXCEEDED, "%s \"%s\"",
                 tally_grpc_code_name(m.r.code), m.r.details);
    gc_result_release(&m.r);
    /* The server must stop waiting on its own; give it the cancel round trip. */
    long long still = 1;
    for (int i = 0; i < 50 && still; i++) {
        still = waiting_on(pid);
        if (still)
            sleep_ms(100);
    }
    cr_assert_eq(still, 0, "the blocked statement outlived the call's deadline by 5 s");
    PQclear(PQexec(locker, "ROLLBACK"));
    PQfinish(locker);

    Tally__V1__GetComplaintReply *g = get_rep(t, id);
    cr_assert_eq(g->complaint->version, 1, "the timed-out ChangeStatus committed after all");
    cr_assert_eq(g->complaint->status, OPEN);
    free_msg(g);
    cr_assert_eq(move_ok(t, id, IN_PROGRESS, 1, NULL), 2, "the service is fine afterwards");
}

/* ======================================================================================== */

TestSuite(race, .init = setup_wide, .fini = teardown, .timeout = 90);

Test(race, fifty_concurrent_retries_make_one_complaint_and_one_event)
{
    char t[32];
    seeded(t, sizeof(t), "UTC");
    Tally__V1__CreateComplaintRequest req = create_req(t, "one-key-for-all");
    gc_result rs[50];
    cr_assert_eq(gc_call_many(cli, CMD("CreateComplaint"), &req.base, 50, 30000, rs), 0);
    long long id = 0, created = 0;
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(rs[i].code, GRPC_STATUS_OK, "call %d: %s \"%s\"", i,
                     tally_grpc_code_name(rs[i].code), rs[i].details);
        Tally__V1__CreateComplaintReply *rep =
            tally__v1__create_complaint_reply__unpack(NULL, rs[i].len, rs[i].data);
        cr_assert(rep);
        if (i == 0) {
            id = rep->complaint_id;
            created = rep->created_at_ms;
        }
        cr_assert_eq(rep->complaint_id, id, "call %d got another complaint", i);
        cr_assert_eq(rep->version, 1);
        cr_assert_eq(rep->created_at_ms, created, "call %d: another created_at_ms", i);
        free_msg(rep);
        gc_result_release(&rs[i]);
    }
    cr_assert_geq(id, 1);
    const char *p[] = { t };
    cr_assert_eq(sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1", 1, p), 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND"
                         " complaint_id IS NOT NULL",
                         1, p),
                 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM status_history WHERE tenant_id = $1", 1, p), 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", 1, p), 1);
}

Test(race, twenty_concurrent_status_changes_one_wins)
{
    char t[32];
    seeded(t, sizeof(t), "UTC");
    long long id = create_ok(t, "k1");
    Tally__V1__ChangeStatusRequest req = move_req(t, id, IN_PROGRESS, 1);
    gc_result rs[20];
    cr_assert_eq(gc_call_many(cli, CMD("ChangeStatus"), &req.base, 20, 30000, rs), 0);
    int won = 0, aborted = 0;
    for (int i = 0; i < 20; i++) {
        if (rs[i].code == GRPC_STATUS_OK) {
            Tally__V1__ChangeStatusReply *rep =
                tally__v1__change_status_reply__unpack(NULL, rs[i].len, rs[i].data);
            cr_assert(rep);
            cr_assert_eq(rep->version, 2);
            free_msg(rep);
            won++;
        } else {
            check_refusal("a losing writer", &rs[i], GRPC_STATUS_ABORTED, "expected_version");
            cr_assert(strstr(rs[i].details, "version 2"),
                      "ABORTED must say the current version 2: \"%s\"", rs[i].details);
            aborted++;
        }
        gc_result_release(&rs[i]);
    }
    cr_assert_eq(won, 1, "%d writers won", won);
    cr_assert_eq(aborted, 19);
    Tally__V1__GetComplaintReply *g = get_rep(t, id);
    cr_assert_eq(g->complaint->version, 2);
    cr_assert_eq(g->complaint->status, IN_PROGRESS);
    free_msg(g);
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = { t, ids };
    cr_assert_eq(
        sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND complaint_id = $2", 2, p), 2);
    cr_assert_eq(sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND complaint_id = $2"
                         " AND version = 2",
                         2, p),
                 1);
    cr_assert_eq(sql_int("SELECT count(*) FROM status_history WHERE tenant_id = $1 AND"
                         " complaint_id = $2",
                         2, p),
                 2);
}

typedef struct bg_assign {
    int port;
    const char *tenant, *agent;
    long long id;
    pthread_barrier_t *go;
    gc_result r;
} bg_assign;

static void *run_assign(void *arg)
{
    bg_assign *a = arg;
    gc_client *c = gc_new_port(a->port);
    Tally__V1__AssignComplaintRequest req = assign_req(a->tenant, a->id, a->agent, 1);
    pthread_barrier_wait(a->go);
    gc_call(c, CMD("AssignComplaint"), &req.base, NULL, DEADLINE_MS, &a->r);
    gc_free(c);
    return NULL;
}

Test(race, two_assigners_with_the_same_version_one_wins)
{
    char t[32], key[16];
    seeded(t, sizeof(t), "UTC");
    for (int round = 0; round < 10; round++) {
        snprintf(key, sizeof(key), "k%d", round);
        long long id = create_ok(t, key);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        bg_assign a[2] = {
            { .port = svc.grpc_port, .tenant = t, .agent = "a1", .id = id, .go = &go },
            { .port = svc.grpc_port, .tenant = t, .agent = "a2", .id = id, .go = &go }
        };
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&th[i], NULL, run_assign, &a[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        int winner = -1;
        for (int i = 0; i < 2; i++) {
            if (a[i].r.code == GRPC_STATUS_OK) {
                cr_assert_eq(winner, -1, "round %d: both writers won", round);
                winner = i;
            } else {
                check_refusal("the losing assigner", &a[i].r, GRPC_STATUS_ABORTED,
                              "expected_version");
                cr_assert(strstr(a[i].r.details, "version 2"), "\"%s\"", a[i].r.details);
            }
            gc_result_release(&a[i].r);
        }
        cr_assert_neq(winner, -1, "round %d: nobody won", round);
        Tally__V1__GetComplaintReply *g = get_rep(t, id);
        cr_assert_eq(g->complaint->version, 2);
        cr_assert_str_eq(g->complaint->assigned_agent_id, a[winner].agent);
        free_msg(g);
        char ids[24];
        snprintf(ids, sizeof(ids), "%lld", id);
        const char *p[] = { t, ids };
        cr_assert_eq(sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND"
                             " complaint_id = $2 AND version = 2",
                             2, p),
                     1);
    }
}

/* ======================================================================================== */

/*
 * PostgreSQL going away, without touching the shared server: command-svc reaches it through a
 * TCP proxy in this process. "Down" resets every proxied connection and then closes each new
 * one at once (a server that is not there). "Stall" freezes every proxied connection for good
 * and accepts new ones without ever answering (a server or network that went silent). "Up"
 * proxies new connections again; frozen ones stay frozen, as after a partition
 * (tests/support/proxy).
 */
Test(pg_down, unreachable_postgres_is_unavailable_never_a_hang_then_recovers, .fini = teardown,
     .timeout = 90)
{
    proxy px;
    char dsn[1024], env_dsn[1100], t[32], key[16];
    proxy_start_pg(&px, getenv("TALLY_PG_DSN"), dsn, sizeof(dsn));
    snprintf(env_dsn, sizeof(env_dsn), "TALLY_PG_DSN=%s", dsn);
    start_svc(env_dsn, "TALLY_WORKERS=2");
    seeded(t, sizeof(t), "UTC");
    long long id = create_ok(t, "before");

    proxy_down(&px);
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof(key), "down-%d", i);
        Tally__V1__CreateComplaintRequest req = create_req(t, key);
        gc_result r = call(CMD("CreateComplaint"), &req.base);
        check_refusal("CreateComplaint without PostgreSQL", &r, GRPC_STATUS_UNAVAILABLE, NULL);
        cr_assert(strstr(r.details, "PostgreSQL"), "\"%s\"", r.details);
        gc_result_release(&r);
        Tally__V1__GetComplaintRequest g = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
        g.tenant_id = t;
        g.complaint_id = id;
        expect("GetComplaint without PostgreSQL", CMD("GetComplaint"), &g.base,
               GRPC_STATUS_UNAVAILABLE, NULL);
    }

    proxy_up(&px);
    Tally__V1__CreateComplaintRequest req = create_req(t, "after");
    int code = -1, tries = 0;
    for (; tries < 100 && code != GRPC_STATUS_OK; tries++) {
        gc_result r = call(CMD("CreateComplaint"), &req.base);
        code = r.code;
        cr_assert(code == GRPC_STATUS_OK || code == GRPC_STATUS_UNAVAILABLE,
                  "while reconnecting: %s \"%s\"", tally_grpc_code_name(code), r.details);
        gc_result_release(&r);
        if (code != GRPC_STATUS_OK)
            sleep_ms(100);
    }
    cr_assert_eq(code, GRPC_STATUS_OK, "no recovery after PostgreSQL came back");
    /* Both workers reconnect: a run of calls all succeed. */
    for (int i = 0; i < 6; i++) {
        Tally__V1__GetComplaintReply *g = get_rep(t, id);
        free_msg(g);
    }
    const char *p[] = { t };
    cr_assert_eq(sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1", 1, p), 2,
                 "only \"before\" and \"after\" exist");
    cr_assert_eq(sql_int("SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1 AND"
                         " idempotency_key LIKE 'down-%'",
                         1, p),
                 0);
    teardown();
    proxy_stop(&px);
}

/*
 * A PostgreSQL that goes silent (no reset, no answer, not even to a cancel request) must not
 * hold a worker forever: once a reachable server is back, calls succeed again. Each worker's
 * statement times out at its call's deadline; what it does then (cancel, drop the connection)
 * must be bounded too.
 */
Test(pg_down, a_silent_postgres_does_not_hold_workers_forever, .fini = teardown, .timeout = 90)
{
    proxy px;
    char dsn[1024], env_dsn[1100], t[32];
    proxy_start_pg(&px, getenv("TALLY_PG_DSN"), dsn, sizeof(dsn));
    snprintf(env_dsn, sizeof(env_dsn), "TALLY_PG_DSN=%s", dsn);
    start_svc(env_dsn, "TALLY_WORKERS=2");
    seeded(t, sizeof(t), "UTC");
    long long id = create_ok(t, "before");
    Tally__V1__GetComplaintRequest g = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    g.tenant_id = t;
    g.complaint_id = id;

    proxy_stall(&px);
    /* Enough calls to reach both workers; each ends by its deadline on the client anyway. */
    gc_result rs[4];
    cr_assert_eq(gc_call_many(cli, CMD("GetComplaint"), &g.base, 4, 1000, rs), 0);
    for (int i = 0; i < 4; i++) {
        cr_assert(rs[i].code == GRPC_STATUS_DEADLINE_EXCEEDED ||
                      rs[i].code == GRPC_STATUS_UNAVAILABLE,
                  "a call while PostgreSQL is silent: %s \"%s\"", tally_grpc_code_name(rs[i].code),
                  rs[i].details);
        gc_result_release(&rs[i]);
    }

    /* Let the workers act on their deadlines (a cancel request, say) while still silent. */
    for (int i = 0; i < 30; i++) {
        if (proxy_silent(&px) >= 2)
            break;
        sleep_ms(100);
    }
    proxy_up(&px);
    int code = -1, tries = 0;
    char last[1100] = "";
    for (; tries < 10 && code != GRPC_STATUS_OK; tries++) {
        gc_result r;
        cr_assert_eq(gc_call(cli, CMD("GetComplaint"), &g.base, NULL, 2000, &r), 0);
        code = r.code;
        snprintf(last, sizeof(last), "%s \"%s\"", tally_grpc_code_name(r.code), r.details);
        gc_result_release(&r);
        if (code != GRPC_STATUS_OK)
            sleep_ms(500);
    }
    int ok_after = 0;
    for (int i = 0; code == GRPC_STATUS_OK && i < 6; i++) {
        gc_result r;
        cr_assert_eq(gc_call(cli, CMD("GetComplaint"), &g.base, NULL, 2000, &r), 0);
        ok_after += r.code == GRPC_STATUS_OK;
        gc_result_release(&r);
    }
    /* Release whatever is still stuck before judging, so that the service can stop. */
    proxy_stop(&px);
    cr_assert_eq(code, GRPC_STATUS_OK,
                 "no call succeeded in %d tries (about 25 s) after PostgreSQL answered again; "
                 "last: %s. Workers are stuck on the silent connections.",
                 tries, last);
    cr_assert_eq(ok_after, 6, "only %d of 6 calls succeeded afterwards: a worker is stuck",
                 ok_after);
}
