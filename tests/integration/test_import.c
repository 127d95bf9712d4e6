/*
 * ImportComplaints against real PostgreSQL: imported histories leave the rows and events the
 * live commands would have left, at the historical times; retries write nothing and report
 * already_existed; every validation error names its path and writes nothing; local days come
 * from the tenant's time zone.
 */
#include "calls.h"
#include "fixture.h"
#include "imports.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/events.pb-c.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIN  (60 * 1000LL)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

#define OPEN        TALLY__V1__STATUS__STATUS_OPEN
#define IN_PROGRESS TALLY__V1__STATUS__STATUS_IN_PROGRESS
#define RESOLVED    TALLY__V1__STATUS__STATUS_RESOLVED
#define CLOSED      TALLY__V1__STATUS__STATUS_CLOSED

/* ---- a running command-svc with a seeded tenant and a libpq connection --------------------- */

typedef struct env {
    proc p;
    gc_client *c;
    PGconn *pg;
    char tenant[32];
} env;

static void env_start(env *e, const char *tz)
{
    const char *vars[] = { "TALLY_WORKERS=4", "TALLY_RELAY=false", NULL };
    fx_start_command_svc(&e->p, vars);
    e->c = gc_new_port(e->p.grpc_port);
    fx_seed_tenant(e->c, fx_tenant(e->tenant, sizeof(e->tenant)), tz);
    e->pg = PQconnectdb(getenv("TALLY_PG_DSN"));
    cr_assert_eq(PQstatus(e->pg), CONNECTION_OK, "%s", PQerrorMessage(e->pg));
}

static void env_stop(env *e)
{
    PQfinish(e->pg);
    gc_free(e->c);
    int rc = proc_stop(&e->p, SIGTERM, 10000);
    /* Under ASan a leak or error in command-svc shows here as a non-zero exit. */
    cr_assert_eq(rc, 0, "command-svc exited %d:\n%s", rc, e->p.log ? e->p.log : "");
    proc_release(&e->p);
}

/* Runs sql with $1 = tenant; asserts it succeeded. Caller frees with PQclear. */
static PGresult *query(env *e, const char *tenant, const char *sql)
{
    const char *vals[] = { tenant };
    PGresult *r = PQexecParams(e->pg, sql, 1, NULL, vals, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQresultErrorMessage(r));
    return r;
}

/* Rows of the tenant in every table an import writes, as one string. */
static void count_rows(env *e, char *out, size_t len)
{
    PGresult *r =
        query(e, e->tenant,
              "SELECT (SELECT count(*) FROM complaints WHERE tenant_id = $1) || '/' ||"
              " (SELECT count(*) FROM status_history WHERE tenant_id = $1) || '/' ||"
              " (SELECT count(*) FROM events WHERE tenant_id = $1 AND complaint_id IS NOT NULL)"
              " || '/' ||"
              " (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)");
    snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* Unix ms of a UTC calendar time. */
static int64_t utc_ms(int y, int mo, int d, int h, int mi)
{
    struct tm t = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi
    };
    return (int64_t)timegm(&t) * 1000;
}

/* ---- building requests ------------------------------------------------------------------- */

/* The reference times of the history batch: T0 = 2026-03-10T09:00Z. */
#define T0 utc_ms(2026, 3, 10, 9, 0)

/*
 * Three complaints: A with assignments, a reopen cycle, a no-op reassignment and a close; B
 * without history; C resolved at once, reopened, with a no-op unassignment and an assignment.
 * A's reopen is at 23:30Z, which is the next day in Europe/Berlin.
 */
static void history_batch(imp_batch *b, const char *tenant)
{
    int64_t t0 = T0;
    imp_batch_init(b, tenant, 3);
    imp_entry *a = &b->x[0], *bb = &b->x[1], *c = &b->x[2];
    imp_entry_init(a, "legacy-A", "c1", TALLY__V1__PRIORITY__PRIORITY_HIGH, t0);
    imp_add_assign(a, t0 + HOUR, "a1");
    imp_add_move(a, t0 + 2 * HOUR, IN_PROGRESS, "a1", "looking into it");
    imp_add_move(a, t0 + 5 * HOUR, RESOLVED, "a1", "replaced the fuser");
    imp_add_move(a, t0 + DAY + 14 * HOUR + 30 * MIN, OPEN, "cust-portal", "on fire again");
    imp_add_assign(a, t0 + DAY + 15 * HOUR, "a2");
    imp_add_assign(a, t0 + DAY + 16 * HOUR, "a2");
    imp_add_move(a, t0 + 2 * DAY, RESOLVED, "a2", "");
    imp_add_move(a, t0 + 3 * DAY, CLOSED, "auto-close", "");
    imp_entry_init(bb, "legacy-B", "c2", TALLY__V1__PRIORITY__PRIORITY_LOW, t0 + 10 * MIN);
    imp_entry_init(c, "legacy-C", "c1", TALLY__V1__PRIORITY__PRIORITY_URGENT, t0 + 20 * MIN);
    imp_add_assign(c, t0 + 30 * MIN, "");
    imp_add_move(c, t0 + HOUR, RESOLVED, "legacy-import", "duplicate");
    imp_add_move(c, t0 + 2 * HOUR, OPEN, "legacy-import", "not a duplicate");
    imp_add_move(c, t0 + 2 * HOUR, IN_PROGRESS, "a1", "");
    imp_add_assign(c, t0 + 3 * HOUR, "a1");
}

/* ---- calls --------------------------------------------------------------------------------- */

/* Imports and asserts OK; caller frees with tally__v1__import_complaints_reply__free_unpacked. */
static Tally__V1__ImportComplaintsReply *import_ok(env *e, const imp_batch *b)
{
    return call_ok(e->c, CMD("ImportComplaints"), &b->req.base,
                   &tally__v1__import_complaints_reply__descriptor, 60000);
}

/* The call fails with code, its message starts with prefix, and no row was written. */
static void import_fails(env *e, const imp_batch *b, int code, const char *prefix)
{
    char before[128], after[128];
    gc_status st;
    count_rows(e, before, sizeof(before));
    call_code(e->c, CMD("ImportComplaints"), &b->req.base, 60000, &st);
    cr_assert_eq(st.code, code, "expected code %d, got %d: %s", code, st.code, st.details);
    cr_assert_eq(strncmp(st.details, prefix, strlen(prefix)), 0,
                 "message \"%s\" does not start with \"%s\"", st.details, prefix);
    count_rows(e, after, sizeof(after));
    cr_assert_str_eq(after, before, "rows were written: %s -> %s", before, after);
}

static Tally__V1__Complaint *get_complaint(env *e, int64_t id, Tally__V1__GetComplaintReply **own)
{
    Tally__V1__GetComplaintRequest req = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    req.tenant_id = e->tenant;
    req.complaint_id = id;
    *own = call_ok(e->c, CMD("GetComplaint"), &req.base,
                   &tally__v1__get_complaint_reply__descriptor, 10000);
    cr_assert((*own)->complaint);
    return (*own)->complaint;
}

static Tally__V1__ListStatusHistoryReply *history(env *e, int64_t id)
{
    Tally__V1__ListStatusHistoryRequest req = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
    req.tenant_id = e->tenant;
    req.complaint_id = id;
    req.page_size = 100;
    return call_ok(e->c, CMD("ListStatusHistory"), &req.base,
                   &tally__v1__list_status_history_reply__descriptor, 10000);
}

static void check_entry(const Tally__V1__StatusHistoryEntry *h, int64_t version, int from, int to,
                        const char *actor, const char *note, int64_t at)
{
    cr_assert_eq(h->version, version);
    cr_assert_eq(h->from_status, from, "v%" PRId64 " from", version);
    cr_assert_eq(h->to_status, to, "v%" PRId64 " to", version);
    cr_assert_str_eq(h->actor, actor);
    cr_assert_str_eq(h->note, note);
    cr_assert_eq(h->changed_at_ms, at, "v%" PRId64 " changed_at_ms", version);
}

/* ---- the events table ---------------------------------------------------------------------- */

typedef struct ev {
    int64_t complaint, version, occurred_ms;
    int type;
    char local_day[16];
    bool imported, recorded_later;
    Tally__V1__ComplaintCreated *created;
    Tally__V1__ComplaintAssigned *assigned;
    Tally__V1__StatusChanged *changed;
} ev;

/* The tenant's complaint events in seq order, bodies decoded. Returns how many (<= cap). */
static int load_events(env *e, const char *tenant, ev *out, int cap)
{
    PGresult *r = query(e, tenant,
                        "SELECT complaint_id, version, type,"
                        " (extract(epoch FROM occurred_at) * 1000)::bigint, local_day::text,"
                        " imported, payload, recorded_at >= occurred_at FROM events"
                        " WHERE tenant_id = $1 AND complaint_id IS NOT NULL ORDER BY seq");
    int n = PQntuples(r);
    cr_assert_leq(n, cap);
    for (int i = 0; i < n; i++) {
        ev *v = &out[i];
        size_t len;
        memset(v, 0, sizeof(*v));
        v->complaint = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        v->version = strtoll(PQgetvalue(r, i, 1), NULL, 10);
        v->type = atoi(PQgetvalue(r, i, 2));
        v->occurred_ms = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        snprintf(v->local_day, sizeof(v->local_day), "%s", PQgetvalue(r, i, 4));
        v->imported = PQgetvalue(r, i, 5)[0] == 't';
        v->recorded_later = PQgetvalue(r, i, 7)[0] == 't';
        unsigned char *body = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 6), &len);
        cr_assert_not_null(body);
        if (v->type == TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED)
            v->created = tally__v1__complaint_created__unpack(NULL, len, body);
        else if (v->type == TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED)
            v->assigned = tally__v1__complaint_assigned__unpack(NULL, len, body);
        else if (v->type == TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED)
            v->changed = tally__v1__status_changed__unpack(NULL, len, body);
        PQfreemem(body);
        cr_assert(v->created || v->assigned || v->changed, "event %d (type %d) does not decode", i,
                  v->type);
    }
    PQclear(r);
    return n;
}

static void free_events(ev *v, int n)
{
    for (int i = 0; i < n; i++) {
        tally__v1__complaint_created__free_unpacked(v[i].created, NULL);
        tally__v1__complaint_assigned__free_unpacked(v[i].assigned, NULL);
        tally__v1__status_changed__free_unpacked(v[i].changed, NULL);
    }
}

static void check_assigned(const ev *v, const char *prev, const char *agent, int status,
                           int64_t created)
{
    cr_assert_not_null(v->assigned, "v%" PRId64 " is not an assignment", v->version);
    cr_assert_str_eq(v->assigned->previous_agent_id, prev);
    cr_assert_str_eq(v->assigned->agent_id, agent);
    cr_assert_str_eq(v->assigned->category_id, "c1");
    cr_assert_eq(v->assigned->status, status);
    cr_assert_eq(v->assigned->created_at_ms, created);
}

static void check_changed(const ev *v, int from, int to, const char *agent, const char *actor,
                          int64_t created, const char *created_day, int64_t resolution)
{
    cr_assert_not_null(v->changed, "v%" PRId64 " is not a status change", v->version);
    cr_assert_eq(v->changed->from_status, from, "v%" PRId64, v->version);
    cr_assert_eq(v->changed->to_status, to, "v%" PRId64, v->version);
    cr_assert_str_eq(v->changed->category_id, "c1");
    cr_assert_str_eq(v->changed->agent_id, agent, "v%" PRId64, v->version);
    cr_assert_str_eq(v->changed->actor, actor);
    cr_assert_eq(v->changed->created_at_ms, created);
    cr_assert_str_eq(v->changed->created_local_day, created_day);
    cr_assert_eq(v->changed->resolution_seconds, resolution, "v%" PRId64, v->version);
}

/* ---- tests ----------------------------------------------------------------------------------- */

Test(import, history_lands_with_final_state_and_full_audit_log, .timeout = 60)
{
    env e;
    imp_batch b;
    int64_t t0 = T0;
    env_start(&e, "Europe/Berlin");
    history_batch(&b, e.tenant);
    Tally__V1__ImportComplaintsReply *rep = import_ok(&e, &b);

    cr_assert_eq(rep->n_results, 3);
    cr_assert_eq(rep->imported, 3);
    cr_assert_eq(rep->events_written, 8 + 1 + 5);
    const char *keys[] = { "legacy-A", "legacy-B", "legacy-C" };
    const int64_t versions[] = { 8, 1, 5 };
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(rep->results[i]->idempotency_key, keys[i]);
        cr_assert_eq(rep->results[i]->version, versions[i], "results[%d].version", i);
        cr_assert_not(rep->results[i]->already_existed);
        cr_assert_geq(rep->results[i]->complaint_id, 1);
    }
    cr_assert_neq(rep->results[0]->complaint_id, rep->results[1]->complaint_id);
    cr_assert_neq(rep->results[1]->complaint_id, rep->results[2]->complaint_id);

    Tally__V1__GetComplaintReply *own;
    Tally__V1__Complaint *a = get_complaint(&e, rep->results[0]->complaint_id, &own);
    cr_assert_eq(a->status, CLOSED);
    cr_assert_str_eq(a->assigned_agent_id, "a2");
    cr_assert_str_eq(a->category_id, "c1");
    cr_assert_eq(a->priority, TALLY__V1__PRIORITY__PRIORITY_HIGH);
    cr_assert_str_eq(a->title, "Printer on fire");
    cr_assert_str_eq(a->description, "It was fine yesterday.");
    cr_assert_str_eq(a->customer_id, "cust-42");
    cr_assert_str_eq(a->idempotency_key, "legacy-A");
    cr_assert_eq(a->created_at_ms, t0);
    cr_assert_eq(a->updated_at_ms, t0 + 3 * DAY);
    cr_assert_eq(a->resolved_at_ms, t0 + 2 * DAY, "resolved_at is the latest RESOLVED move");
    cr_assert_eq(a->version, 8);
    tally__v1__get_complaint_reply__free_unpacked(own, NULL);

    Tally__V1__Complaint *bc = get_complaint(&e, rep->results[1]->complaint_id, &own);
    cr_assert_eq(bc->status, OPEN);
    cr_assert_str_eq(bc->assigned_agent_id, "");
    cr_assert_eq(bc->created_at_ms, t0 + 10 * MIN);
    cr_assert_eq(bc->updated_at_ms, t0 + 10 * MIN);
    cr_assert_eq(bc->resolved_at_ms, 0);
    cr_assert_eq(bc->version, 1);
    tally__v1__get_complaint_reply__free_unpacked(own, NULL);

    Tally__V1__Complaint *c = get_complaint(&e, rep->results[2]->complaint_id, &own);
    cr_assert_eq(c->status, IN_PROGRESS);
    cr_assert_str_eq(c->assigned_agent_id, "a1");
    cr_assert_eq(c->updated_at_ms, t0 + 3 * HOUR);
    cr_assert_eq(c->resolved_at_ms, 0, "a reopen clears resolved_at");
    cr_assert_eq(c->version, 5);
    tally__v1__get_complaint_reply__free_unpacked(own, NULL);

    Tally__V1__ListStatusHistoryReply *h = history(&e, rep->results[0]->complaint_id);
    cr_assert_eq(h->n_entries, 6);
    check_entry(h->entries[0], 1, 0, OPEN, "", "", t0);
    check_entry(h->entries[1], 3, OPEN, IN_PROGRESS, "a1", "looking into it", t0 + 2 * HOUR);
    check_entry(h->entries[2], 4, IN_PROGRESS, RESOLVED, "a1", "replaced the fuser", t0 + 5 * HOUR);
    check_entry(h->entries[3], 5, RESOLVED, OPEN, "cust-portal", "on fire again",
                t0 + DAY + 14 * HOUR + 30 * MIN);
    check_entry(h->entries[4], 7, OPEN, RESOLVED, "a2", "", t0 + 2 * DAY);
    check_entry(h->entries[5], 8, RESOLVED, CLOSED, "auto-close", "", t0 + 3 * DAY);
    cr_assert_str_eq(h->next_page_token, "");
    tally__v1__list_status_history_reply__free_unpacked(h, NULL);

    h = history(&e, rep->results[2]->complaint_id);
    cr_assert_eq(h->n_entries, 4);
    check_entry(h->entries[0], 1, 0, OPEN, "", "", t0 + 20 * MIN);
    check_entry(h->entries[1], 2, OPEN, RESOLVED, "legacy-import", "duplicate", t0 + HOUR);
    check_entry(h->entries[2], 3, RESOLVED, OPEN, "legacy-import", "not a duplicate",
                t0 + 2 * HOUR);
    check_entry(h->entries[3], 4, OPEN, IN_PROGRESS, "a1", "", t0 + 2 * HOUR);
    tally__v1__list_status_history_reply__free_unpacked(h, NULL);

    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    env_stop(&e);
}

Test(import, events_carry_historical_times_versions_and_live_bodies, .timeout = 60)
{
    env e;
    imp_batch b;
    ev v[32];
    int64_t t0 = T0;
    env_start(&e, "Europe/Berlin");
    history_batch(&b, e.tenant);
    Tally__V1__ImportComplaintsReply *rep = import_ok(&e, &b);
    int64_t ida = rep->results[0]->complaint_id, idb = rep->results[1]->complaint_id;
    int64_t idc = rep->results[2]->complaint_id;
    int n = load_events(&e, e.tenant, v, 32);
    cr_assert_eq(n, 14);

    /* Seq order: A's versions 1..8, then B's 1, then C's 1..5. */
    const int64_t owner[] = {
        ida, ida, ida, ida, ida, ida, ida, ida, idb, idc, idc, idc, idc, idc
    };
    const int64_t version[] = { 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 2, 3, 4, 5 };
    const int type[] = { 1, 2, 3, 3, 3, 2, 3, 3, 1, 1, 3, 3, 3, 2 };
    const int64_t at[] = { t0,
                           t0 + HOUR,
                           t0 + 2 * HOUR,
                           t0 + 5 * HOUR,
                           t0 + DAY + 14 * HOUR + 30 * MIN,
                           t0 + DAY + 15 * HOUR,
                           t0 + 2 * DAY,
                           t0 + 3 * DAY,
                           t0 + 10 * MIN,
                           t0 + 20 * MIN,
                           t0 + HOUR,
                           t0 + 2 * HOUR,
                           t0 + 2 * HOUR,
                           t0 + 3 * HOUR };
    for (int i = 0; i < n; i++) {
        cr_assert_eq(v[i].complaint, owner[i], "event %d complaint", i);
        cr_assert_eq(v[i].version, version[i], "event %d version", i);
        cr_assert_eq(v[i].type, type[i], "event %d type", i);
        cr_assert_eq(v[i].occurred_ms, at[i], "event %d occurred_at", i);
        cr_assert(v[i].imported, "event %d imported", i);
        cr_assert(v[i].recorded_later, "event %d recorded_at", i);
    }
    /* Europe/Berlin is UTC+1 in March: 23:30Z on the 11th is the 12th there. */
    cr_assert_str_eq(v[0].local_day, "2026-03-10");
    cr_assert_str_eq(v[3].local_day, "2026-03-10");
    cr_assert_str_eq(v[4].local_day, "2026-03-12");
    cr_assert_str_eq(v[5].local_day, "2026-03-12");
    cr_assert_str_eq(v[7].local_day, "2026-03-13");

    cr_assert_not_null(v[0].created);
    cr_assert_str_eq(v[0].created->category_id, "c1");
    cr_assert_eq(v[0].created->priority, TALLY__V1__PRIORITY__PRIORITY_HIGH);
    cr_assert_str_eq(v[0].created->customer_id, "cust-42");
    cr_assert_str_eq(v[0].created->title, "Printer on fire");
    cr_assert_eq(v[0].created->status, OPEN);
    cr_assert_str_eq(v[0].created->agent_id, "");
    check_assigned(&v[1], "", "a1", OPEN, t0);
    check_changed(&v[2], OPEN, IN_PROGRESS, "a1", "a1", t0, "2026-03-10", 0);
    check_changed(&v[3], IN_PROGRESS, RESOLVED, "a1", "a1", t0, "2026-03-10", 5 * 3600);
    check_changed(&v[4], RESOLVED, OPEN, "a1", "cust-portal", t0, "2026-03-10", 0);
    check_assigned(&v[5], "a1", "a2", OPEN, t0);
    check_changed(&v[6], OPEN, RESOLVED, "a2", "a2", t0, "2026-03-10", 2 * 86400);
    check_changed(&v[7], RESOLVED, CLOSED, "a2", "auto-close", t0, "2026-03-10", 0);
    cr_assert_eq(v[8].created->priority, TALLY__V1__PRIORITY__PRIORITY_LOW);
    cr_assert_str_eq(v[8].created->category_id, "c2");
    check_changed(&v[10], OPEN, RESOLVED, "", "legacy-import", t0 + 20 * MIN, "2026-03-10",
                  40 * 60);
    check_assigned(&v[13], "", "a1", IN_PROGRESS, t0 + 20 * MIN);

    /* The status-history rows carry the tenant and match the events one for one. */
    PGresult *r = query(&e, e.tenant,
                        "SELECT count(*) FROM status_history h JOIN events v"
                        " ON v.complaint_id = h.complaint_id AND v.version = h.version"
                        " WHERE h.tenant_id = $1 AND v.tenant_id = $1"
                        " AND v.occurred_at = h.changed_at AND v.type IN (1, 3)");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "11");
    PQclear(r);

    free_events(v, n);
    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    env_stop(&e);
}

Test(import, a_retry_writes_nothing_and_reports_the_first_result, .timeout = 60)
{
    env e;
    imp_batch b, mixed, changed;
    char before[128], after[128];
    env_start(&e, "UTC");
    history_batch(&b, e.tenant);
    Tally__V1__ImportComplaintsReply *first = import_ok(&e, &b);
    count_rows(&e, before, sizeof(before));
    cr_assert_str_eq(before, "3/11/14/3");

    Tally__V1__ImportComplaintsReply *again = import_ok(&e, &b);
    count_rows(&e, after, sizeof(after));
    cr_assert_str_eq(after, before);
    cr_assert_eq(again->imported, 0);
    cr_assert_eq(again->events_written, 0);
    cr_assert_eq(again->n_results, 3);
    for (int i = 0; i < 3; i++) {
        cr_assert(again->results[i]->already_existed);
        cr_assert_eq(again->results[i]->complaint_id, first->results[i]->complaint_id);
        cr_assert_eq(again->results[i]->version, first->results[i]->version);
        cr_assert_str_eq(again->results[i]->idempotency_key, first->results[i]->idempotency_key);
    }

    /* A batch mixing a known entry with a new one writes only the new one. */
    imp_batch_init(&mixed, e.tenant, 2);
    mixed.x[0] = b.x[2];
    mixed.x[0].c.idempotency_key = mixed.x[0].key;
    mixed.x[0].c.history = mixed.x[0].ptrs;
    for (size_t j = 0; j < mixed.x[0].c.n_history; j++) {
        mixed.x[0].ptrs[j] = &mixed.x[0].steps[j];
        if (mixed.x[0].steps[j].change_case == TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT)
            mixed.x[0].steps[j].assignment = &mixed.x[0].assign[j];
        else
            mixed.x[0].steps[j].status_change = &mixed.x[0].move[j];
    }
    imp_entry_init(&mixed.x[1], "legacy-D", "c2", 2, T0);
    imp_add_move(&mixed.x[1], T0 + HOUR, RESOLVED, "a1", "");
    Tally__V1__ImportComplaintsReply *mix = import_ok(&e, &mixed);
    cr_assert(mix->results[0]->already_existed);
    cr_assert_eq(mix->results[0]->complaint_id, first->results[2]->complaint_id);
    cr_assert_eq(mix->results[0]->version, 5);
    cr_assert_not(mix->results[1]->already_existed);
    cr_assert_eq(mix->results[1]->version, 2);
    cr_assert_eq(mix->imported, 1);
    cr_assert_eq(mix->events_written, 2);
    count_rows(&e, after, sizeof(after));
    cr_assert_str_eq(after, "4/13/16/4");

    /* The same key with other content is refused for the whole batch. */
    imp_batch_init(&changed, e.tenant, 2);
    imp_entry_init(&changed.x[0], "legacy-E", "c1", 1, T0);
    imp_entry_init(&changed.x[1], "legacy-B", "c2", TALLY__V1__PRIORITY__PRIORITY_LOW,
                   T0 + 10 * MIN);
    changed.x[1].c.title = "Another title";
    import_fails(&e, &changed, TALLY_GRPC_ALREADY_EXISTS,
                 "complaints[1].idempotency_key: \"legacy-B\"");

    /* A CreateComplaint key reused by an import: other content, TALLY_GRPC_ALREADY_EXISTS. */
    Tally__V1__CreateComplaintRequest cr = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    cr.tenant_id = e.tenant;
    cr.idempotency_key = "live-1";
    cr.category_id = "c1";
    cr.priority = TALLY__V1__PRIORITY__PRIORITY_MEDIUM;
    cr.title = "Printer on fire";
    cr.customer_id = "cust-42";
    call_free(call_ok(e.c, CMD("CreateComplaint"), &cr.base,
                      &tally__v1__create_complaint_reply__descriptor, 10000));
    imp_entry_init(&changed.x[1], "live-1", "c1", TALLY__V1__PRIORITY__PRIORITY_MEDIUM, T0);
    import_fails(&e, &changed, TALLY_GRPC_ALREADY_EXISTS,
                 "complaints[1].idempotency_key: \"live-1\"");

    tally__v1__import_complaints_reply__free_unpacked(first, NULL);
    tally__v1__import_complaints_reply__free_unpacked(again, NULL);
    tally__v1__import_complaints_reply__free_unpacked(mix, NULL);
    imp_batch_release(&changed);
    imp_batch_release(&mixed);
    imp_batch_release(&b);
    env_stop(&e);
}

/* A valid two-entry batch to break in one place. */
static void good_batch(imp_batch *b, const char *tenant)
{
    imp_batch_init(b, tenant, 3);
    imp_entry_init(&b->x[0], "k0", "c1", 2, T0);
    imp_add_assign(&b->x[0], T0 + HOUR, "a1");
    imp_add_move(&b->x[0], T0 + 2 * HOUR, RESOLVED, "a1", "");
    imp_add_move(&b->x[0], T0 + 3 * HOUR, CLOSED, "a1", "");
    imp_entry_init(&b->x[1], "k1", "c2", 3, T0);
    imp_entry_init(&b->x[2], "k2", "c1", 4, T0);
    imp_add_move(&b->x[2], T0 + HOUR, IN_PROGRESS, "a2", "");
}

Test(import, every_validation_error_names_its_path_and_writes_nothing, .timeout = 60)
{
    env e;
    imp_batch b;
    env_start(&e, "UTC");

    good_batch(&b, e.tenant);
    b.x[1].c.priority = 7;
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[1].priority: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[0].steps[0].at_ms = T0 - 1;
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                 "complaints[0].history[0].at_ms: before created_at_ms");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[0].steps[2].at_ms = T0 + 90 * MIN;
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                 "complaints[0].history[2].at_ms: before the previous");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[2].move[0].status = CLOSED;
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                 "complaints[2].history[0].status_change.status: cannot move from OPEN to CLOSED; "
                 "allowed from OPEN: IN_PROGRESS, RESOLVED");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    imp_add_move(&b.x[0], T0 + 4 * HOUR, OPEN, "a1", "");
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                 "complaints[0].history[3].status_change.status: cannot move from CLOSED to OPEN");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    imp_add_assign(&b.x[0], T0 + 4 * HOUR, "a1");
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[0].history[3].assignment: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[2].move[0].status = 0;
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                 "complaints[2].history[0].status_change.status: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[2].steps[0].change_case = TALLY__V1__IMPORTED_STEP__CHANGE__NOT_SET;
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[2].history[0]: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[2].move[0].actor = "";
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                 "complaints[2].history[0].status_change.actor: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[1].c.created_at_ms = (int64_t)time(NULL) * 1000 + DAY;
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[1].created_at_ms: in the future");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[1].c.created_at_ms = utc_ms(1999, 12, 31, 23, 59);
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[1].created_at_ms: before 2000");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[2].c.title = "bad \xc3\x28 utf-8";
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[2].title: not valid UTF-8");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    snprintf(b.x[1].key, sizeof(b.x[1].key), "k1'; DROP TABLE events; --");
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[1].idempotency_key: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    snprintf(b.x[2].key, sizeof(b.x[2].key), "k0");
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                 "complaints[2].idempotency_key: \"k0\" repeats complaints[0]");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    for (int j = 0; j < 201; j++)
        imp_add_assign(&b.x[1], T0 + j * MIN, j % 2 ? "a1" : "a2");
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[1].history: more than 200");
    imp_batch_release(&b);

    imp_batch_init(&b, e.tenant, 0);
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints: ");
    imp_batch_release(&b);

    imp_batch_init(&b, e.tenant, 1001);
    for (int i = 0; i < 1001; i++) {
        char key[16];
        snprintf(key, sizeof(key), "bulk-%d", i);
        imp_entry_init(&b.x[i], key, "c1", 1, T0);
    }
    import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints: more than 1000");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[1].c.category_id = "nope";
    b.x[2].c.category_id = "nope";
    import_fails(&e, &b, TALLY_GRPC_NOT_FOUND, "complaints[1].category_id: no category \"nope\"");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    imp_add_assign(&b.x[2], T0 + 2 * HOUR, "ghost");
    import_fails(&e, &b, TALLY_GRPC_NOT_FOUND,
                 "complaints[2].history[1].assignment.agent_id: no agent "
                 "\"ghost\"");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.req.tenant_id = "no-such-tenant";
    import_fails(&e, &b, TALLY_GRPC_NOT_FOUND, "tenant_id: no tenant \"no-such-tenant\"");
    imp_batch_release(&b);

    /* After all of that, the good batch imports. */
    good_batch(&b, e.tenant);
    Tally__V1__ImportComplaintsReply *rep = import_ok(&e, &b);
    cr_assert_eq(rep->imported, 3);
    cr_assert_eq(rep->events_written, 4 + 1 + 2);
    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    env_stop(&e);
}

Test(import, local_days_follow_the_tenant_time_zone, .timeout = 60)
{
    env e;
    char utc[32];
    imp_batch b;
    ev v[4];
    int64_t created = utc_ms(2026, 1, 1, 23, 30), solved = utc_ms(2026, 1, 2, 10, 0);
    env_start(&e, "Pacific/Auckland");
    fx_seed_tenant(e.c, fx_tenant(utc, sizeof(utc)), "UTC");

    const char *tenants[] = { e.tenant, utc };
    const char *days[][2] = { { "2026-01-02", "2026-01-02" }, { "2026-01-01", "2026-01-02" } };
    for (int t = 0; t < 2; t++) {
        imp_batch_init(&b, tenants[t], 1);
        imp_entry_init(&b.x[0], "nye", "c1", 1, created);
        imp_add_move(&b.x[0], solved, RESOLVED, "a1", "");
        Tally__V1__ImportComplaintsReply *rep = import_ok(&e, &b);
        cr_assert_eq(rep->events_written, 2);
        int n = load_events(&e, tenants[t], v, 4);
        cr_assert_eq(n, 2);
        cr_assert_str_eq(v[0].local_day, days[t][0], "%s created", tenants[t]);
        cr_assert_str_eq(v[1].local_day, days[t][1], "%s resolved", tenants[t]);
        cr_assert_str_eq(v[1].changed->created_local_day, days[t][0]);
        cr_assert_eq(v[1].changed->resolution_seconds, (solved - created) / 1000);
        free_events(v, n);
        tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
        imp_batch_release(&b);
    }
    env_stop(&e);
}

Test(import, concurrent_imports_of_one_batch_write_it_once, .timeout = 60)
{
    env e;
    imp_batch b;
    gc_result rs[4];
    char rows[128];
    int ok = 0;
    env_start(&e, "UTC");
    history_batch(&b, e.tenant);
    gc_call_many(e.c, CMD("ImportComplaints"), &b.req.base, 4, 30000, rs);
    for (int i = 0; i < 4; i++) {
        cr_assert(rs[i].code == 0 || rs[i].code == TALLY_GRPC_ABORTED, "call %d: %d %s", i,
                  rs[i].code, rs[i].details);
        ok += rs[i].code == 0;
        gc_result_release(&rs[i]);
    }
    cr_assert_geq(ok, 1);
    count_rows(&e, rows, sizeof(rows));
    cr_assert_str_eq(rows, "3/11/14/3");
    Tally__V1__ImportComplaintsReply *rep = import_ok(&e, &b); /* the retry of an ABORTED one */
    cr_assert_eq(rep->imported, 0);
    for (int i = 0; i < 3; i++)
        cr_assert(rep->results[i]->already_existed);
    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    env_stop(&e);
}

Test(import, a_full_batch_of_1000_imports_in_one_call, .timeout = 60)
{
    env e;
    imp_batch b;
    gc_status st;
    Tally__V1__ImportComplaintsReply *rep;
    char rows[128];
    env_start(&e, "America/New_York");
    imp_batch_init(&b, e.tenant, 1000);
    for (int i = 0; i < 1000; i++) {
        char key[16];
        int64_t t = T0 - (int64_t)i * HOUR;
        snprintf(key, sizeof(key), "bulk-%d", i);
        imp_entry_init(&b.x[i], key, i % 2 ? "c1" : "c2", 1 + i % 4, t);
        imp_add_assign(&b.x[i], t + MIN, i % 3 ? "a1" : "a2");
        imp_add_move(&b.x[i], t + 2 * MIN, RESOLVED, "a1", "");
        if (i % 5)
            imp_add_move(&b.x[i], t + 3 * MIN, CLOSED, "a1", "");
    }
    gc_call_msg(e.c, CMD("ImportComplaints"), &b.req.base,
                &tally__v1__import_complaints_reply__descriptor, NULL, 60000,
                (ProtobufCMessage **)&rep, &st);
    cr_assert_eq(st.code, 0, "%s", st.details);
    cr_assert_lt(st.seconds, 10.0, "a batch of 1000 took %.2f s", st.seconds);
    cr_assert_eq(rep->imported, 1000);
    cr_assert_eq(rep->events_written, 1000 * 3 + 800);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(rep->results[i]->version, i % 5 ? 4 : 3);
    count_rows(&e, rows, sizeof(rows));
    cr_assert_str_eq(rows, "1000/2800/3800/1000");
    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    env_stop(&e);
}

/* ---- equivalence with the live commands ---------------------------------------------------- */

/* A live command that must succeed; returns the reply's version (field 2 of every reply). */
static int64_t live(env *e, const char *method, const ProtobufCMessage *msg)
{
    Tally__V1__AssignComplaintReply *rep =
        call_ok(e->c, method, msg, &tally__v1__assign_complaint_reply__descriptor, 10000);
    int64_t version = rep->version;
    tally__v1__assign_complaint_reply__free_unpacked(rep, NULL);
    return version;
}

static int64_t live_assign(env *e, int64_t id, int64_t version, const char *agent)
{
    Tally__V1__AssignComplaintRequest req = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
    req.tenant_id = e->tenant;
    req.complaint_id = id;
    req.agent_id = (char *)agent;
    req.expected_version = version;
    return live(e, CMD("AssignComplaint"), &req.base);
}

static int64_t live_move(env *e, int64_t id, int64_t version, int status, const char *actor,
                         const char *note)
{
    Tally__V1__ChangeStatusRequest req = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    req.tenant_id = e->tenant;
    req.complaint_id = id;
    req.status = (Tally__V1__Status)status;
    req.expected_version = version;
    req.actor = (char *)actor;
    req.note = (char *)note;
    return live(e, CMD("ChangeStatus"), &req.base);
}

/* The body packed with its time-dependent fields cleared (restored after), for comparison. */
static size_t timeless_body(const ev *v, uint8_t *buf, size_t cap)
{
    size_t n;
    if (v->created) {
        cr_assert_leq(protobuf_c_message_get_packed_size(&v->created->base), cap);
        return protobuf_c_message_pack(&v->created->base, buf);
    }
    if (v->assigned) {
        Tally__V1__ComplaintAssigned a = *v->assigned;
        a.created_at_ms = 0;
        cr_assert_leq(protobuf_c_message_get_packed_size(&a.base), cap);
        return protobuf_c_message_pack(&a.base, buf);
    }
    Tally__V1__StatusChanged c = *v->changed;
    c.created_at_ms = 0;
    c.created_local_day = "";
    c.resolution_seconds = 0;
    n = protobuf_c_message_get_packed_size(&c.base);
    cr_assert_leq(n, cap);
    return protobuf_c_message_pack(&c.base, buf);
}

Test(import, an_imported_history_equals_the_same_history_done_live, .timeout = 60)
{
    env e;
    imp_batch b;
    ev v[32];
    int64_t t0 = T0;
    env_start(&e, "UTC");

    Tally__V1__CreateComplaintRequest cr = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    cr.tenant_id = e.tenant;
    cr.idempotency_key = "live-A";
    cr.category_id = "c1";
    cr.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    cr.title = "Printer on fire";
    cr.description = "It was fine yesterday.";
    cr.customer_id = "cust-42";
    Tally__V1__CreateComplaintReply *created =
        call_ok(e.c, CMD("CreateComplaint"), &cr.base,
                &tally__v1__create_complaint_reply__descriptor, 10000);
    int64_t id = created->complaint_id, ver = created->version;
    tally__v1__create_complaint_reply__free_unpacked(created, NULL);
    /* The same steps as legacy-A of history_batch, live. */
    ver = live_assign(&e, id, ver, "a1");
    ver = live_move(&e, id, ver, IN_PROGRESS, "a1", "looking into it");
    ver = live_move(&e, id, ver, RESOLVED, "a1", "replaced the fuser");
    ver = live_move(&e, id, ver, OPEN, "cust-portal", "on fire again");
    ver = live_assign(&e, id, ver, "a2");
    ver = live_assign(&e, id, ver, "a2");
    ver = live_move(&e, id, ver, RESOLVED, "a2", "");
    ver = live_move(&e, id, ver, CLOSED, "auto-close", "");
    cr_assert_eq(ver, 8);

    history_batch(&b, e.tenant);
    b.req.n_complaints = 1;
    Tally__V1__ImportComplaintsReply *rep = import_ok(&e, &b);
    int64_t imported_id = rep->results[0]->complaint_id;
    cr_assert_eq(rep->results[0]->version, ver);

    int n = load_events(&e, e.tenant, v, 32);
    cr_assert_eq(n, 16);
    for (int i = 0; i < 8; i++) {
        ev *l = &v[i], *m = &v[8 + i];
        uint8_t lb[1024], mb[1024];
        cr_assert_eq(l->complaint, id);
        cr_assert_eq(m->complaint, imported_id);
        cr_assert_eq(l->version, m->version);
        cr_assert_eq(l->type, m->type, "v%" PRId64 " type", l->version);
        cr_assert_not(l->imported);
        cr_assert(m->imported);
        size_t ln = timeless_body(l, lb, sizeof(lb)), mn = timeless_body(m, mb, sizeof(mb));
        cr_assert(ln == mn && memcmp(lb, mb, ln) == 0, "v%" PRId64 ": bodies differ", l->version);
    }
    cr_assert_eq(v[8 + 3].changed->resolution_seconds, 5 * 3600);
    cr_assert_eq(v[8 + 3].changed->created_at_ms, t0);

    /* The audit log and the final row agree too, apart from the times. */
    PGresult *q = query(&e, e.tenant,
                        "SELECT string_agg(format('%s:%s>%s:%s:%s', version, from_status,"
                        " to_status, actor, note), ',' ORDER BY version) FROM status_history"
                        " WHERE tenant_id = $1 GROUP BY complaint_id ORDER BY complaint_id");
    cr_assert_eq(PQntuples(q), 2);
    cr_assert_str_eq(PQgetvalue(q, 0, 0), PQgetvalue(q, 1, 0));
    PQclear(q);
    q = query(&e, e.tenant,
              "SELECT format('%s/%s/%s/%s/%s/%s/%s', category_id, priority, status,"
              " assigned_agent_id, title, version, resolved_at IS NOT NULL) FROM complaints"
              " WHERE tenant_id = $1 ORDER BY complaint_id");
    cr_assert_eq(PQntuples(q), 2);
    cr_assert_str_eq(PQgetvalue(q, 0, 0), PQgetvalue(q, 1, 0));
    cr_assert_str_eq(PQgetvalue(q, 1, 0), "c1/3/4/a2/Printer on fire/8/t");
    PQclear(q);

    free_events(v, n);
    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    env_stop(&e);
}

Test(import, text_with_sql_and_array_metacharacters_is_stored_verbatim, .timeout = 60)
{
    env e;
    imp_batch b;
    static const char *title = "Robert'); DROP TABLE complaints;-- {\"a\",NULL} \\x00 \xc3\xa9";
    static const char *note = "NULL";
    env_start(&e, "UTC");
    imp_batch_init(&b, e.tenant, 2);
    imp_entry_init(&b.x[0], "meta-1", "c1", 1, T0);
    b.x[0].c.title = (char *)title;
    b.x[0].c.description = "";
    imp_add_move(&b.x[0], T0 + HOUR, RESOLVED, "a.b-c_d", note);
    imp_entry_init(&b.x[1], "meta-2", "c2", 2, T0);
    b.x[1].c.description = "line one\nline two\t,{}\\";
    Tally__V1__ImportComplaintsReply *rep = import_ok(&e, &b);

    Tally__V1__GetComplaintReply *own;
    Tally__V1__Complaint *c = get_complaint(&e, rep->results[0]->complaint_id, &own);
    cr_assert_str_eq(c->title, title);
    cr_assert_str_eq(c->description, "");
    tally__v1__get_complaint_reply__free_unpacked(own, NULL);
    c = get_complaint(&e, rep->results[1]->complaint_id, &own);
    cr_assert_str_eq(c->description, "line one\nline two\t,{}\\");
    tally__v1__get_complaint_reply__free_unpacked(own, NULL);
    Tally__V1__ListStatusHistoryReply *h = history(&e, rep->results[0]->complaint_id);
    cr_assert_eq(h->n_entries, 2);
    cr_assert_str_eq(h->entries[1]->note, "NULL");
    cr_assert_str_eq(h->entries[1]->actor, "a.b-c_d");
    tally__v1__list_status_history_reply__free_unpacked(h, NULL);

    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    env_stop(&e);
}
