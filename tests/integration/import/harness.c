/* The harness of test_import (import_int.h): the service, requests, calls, events. */
#include "import_int.h"
#include "pgdb.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- a running command-svc with a seeded tenant and a libpq connection --------------------- */

void ti_env_start(env *e, const char *tz)
{
    const char *vars[] = { "TALLY_WORKERS=4", "TALLY_RELAY=false", NULL };
    fx_start_command_svc(&e->p, vars);
    e->c = gc_new_port(e->p.grpc_port);
    fx_seed_tenant(e->c, fx_tenant(e->tenant, sizeof(e->tenant)), tz);
    e->pg = pgdb_connect_dsn(pgdb_owner_dsn());
}

void ti_env_stop(env *e)
{
    PQfinish(e->pg);
    gc_free(e->c);
    int rc = proc_stop(&e->p, SIGTERM, 10000);
    /* Under ASan a leak or error in command-svc shows here as a non-zero exit. */
    cr_assert_eq(rc, 0, "command-svc exited %d:\n%s", rc, e->p.log ? e->p.log : "");
    proc_release(&e->p);
}

/* Runs sql with $1 = tenant; asserts it succeeded. Caller frees with PQclear. */
PGresult *ti_query(env *e, const char *tenant, const char *sql)
{
    const char *vals[] = { tenant };
    return pgdb_sql(e->pg, sql, 1, vals);
}

/* Rows of the tenant in every table an import writes, as one string. */
void ti_count_rows(env *e, char *out, size_t len)
{
    PGresult *r =
        ti_query(e, e->tenant,
                 "SELECT (SELECT count(*) FROM complaints WHERE tenant_id = $1) || '/' ||"
                 " (SELECT count(*) FROM status_history WHERE tenant_id = $1) || '/' ||"
                 " (SELECT count(*) FROM events WHERE tenant_id = $1 AND complaint_id IS NOT NULL)"
                 " || '/' ||"
                 " (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1)");
    snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* Unix ms of a UTC calendar time. */
int64_t ti_utc_ms(int y, int mo, int d, int h, int mi)
{
    struct tm t = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi
    };
    return (int64_t)timegm(&t) * 1000;
}

/* ---- building requests ------------------------------------------------------------------- */

/*
 * Three complaints: A with assignments, a reopen cycle, a no-op reassignment and a close; B
 * without history; C resolved at once, reopened, with a no-op unassignment and an assignment.
 * A's reopen is at 23:30Z, which is the next day in Europe/Berlin.
 */
void ti_history_batch(imp_batch *b, const char *tenant)
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
Tally__V1__ImportComplaintsReply *ti_import_ok(env *e, const imp_batch *b)
{
    return call_ok(e->c, GC_COMMANDS("ImportComplaints"), &b->req.base,
                   &tally__v1__import_complaints_reply__descriptor, 60000);
}

/* The call fails with code, its message starts with prefix, and no row was written. */
void ti_import_fails(env *e, const imp_batch *b, int code, const char *prefix)
{
    char before[128], after[128];
    gc_status st;
    ti_count_rows(e, before, sizeof(before));
    call_code(e->c, GC_COMMANDS("ImportComplaints"), &b->req.base, 60000, &st);
    cr_assert_eq(st.code, code, "expected code %d, got %d: %s", code, st.code, st.details);
    cr_assert_eq(strncmp(st.details, prefix, strlen(prefix)), 0,
                 "message \"%s\" does not start with \"%s\"", st.details, prefix);
    ti_count_rows(e, after, sizeof(after));
    cr_assert_str_eq(after, before, "rows were written: %s -> %s", before, after);
}

Tally__V1__Complaint *ti_get_complaint(env *e, int64_t id, Tally__V1__GetComplaintReply **own)
{
    Tally__V1__GetComplaintRequest req = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    req.tenant_id = e->tenant;
    req.complaint_id = id;
    *own = call_ok(e->c, GC_COMMANDS("GetComplaint"), &req.base,
                   &tally__v1__get_complaint_reply__descriptor, 10000);
    cr_assert((*own)->complaint);
    return (*own)->complaint;
}

Tally__V1__ListStatusHistoryReply *ti_history(env *e, int64_t id)
{
    Tally__V1__ListStatusHistoryRequest req = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
    req.tenant_id = e->tenant;
    req.complaint_id = id;
    req.page_size = 100;
    return call_ok(e->c, GC_COMMANDS("ListStatusHistory"), &req.base,
                   &tally__v1__list_status_history_reply__descriptor, 10000);
}

void ti_check_entry(const Tally__V1__StatusHistoryEntry *h, int64_t version, int from, int to,
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

/* The tenant's complaint events in seq order, bodies decoded. Returns how many (<= cap). */
int ti_load_events(env *e, const char *tenant, ev *out, int cap)
{
    PGresult *r = ti_query(e, tenant,
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

void ti_free_events(ev *v, int n)
{
    for (int i = 0; i < n; i++) {
        tally__v1__complaint_created__free_unpacked(v[i].created, NULL);
        tally__v1__complaint_assigned__free_unpacked(v[i].assigned, NULL);
        tally__v1__status_changed__free_unpacked(v[i].changed, NULL);
    }
}

void ti_check_assigned(const ev *v, const char *prev, const char *agent, int status,
                       int64_t created)
{
    cr_assert_not_null(v->assigned, "v%" PRId64 " is not an assignment", v->version);
    cr_assert_str_eq(v->assigned->previous_agent_id, prev);
    cr_assert_str_eq(v->assigned->agent_id, agent);
    cr_assert_str_eq(v->assigned->category_id, "c1");
    cr_assert_eq(v->assigned->status, status);
    cr_assert_eq(v->assigned->created_at_ms, created);
}

void ti_check_changed(const ev *v, int from, int to, const char *agent, const char *actor,
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
