/* ImportComplaints: what a batch writes, retries, validation, time zones, concurrency, size. */
#include "import.h"
#include "import_int.h"
#include "pgdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(import, history_lands_with_final_state_and_full_audit_log, .timeout = 60)
{
    env e;
    imp_batch b;
    int64_t t0 = T0;
    ti_env_start(&e, "Europe/Berlin");
    ti_history_batch(&b, e.tenant);
    Tally__V1__ImportComplaintsReply *rep = ti_import_ok(&e, &b);

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
    Tally__V1__Complaint *a = ti_get_complaint(&e, rep->results[0]->complaint_id, &own);
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

    Tally__V1__Complaint *bc = ti_get_complaint(&e, rep->results[1]->complaint_id, &own);
    cr_assert_eq(bc->status, OPEN);
    cr_assert_str_eq(bc->assigned_agent_id, "");
    cr_assert_eq(bc->created_at_ms, t0 + 10 * MIN);
    cr_assert_eq(bc->updated_at_ms, t0 + 10 * MIN);
    cr_assert_eq(bc->resolved_at_ms, 0);
    cr_assert_eq(bc->version, 1);
    tally__v1__get_complaint_reply__free_unpacked(own, NULL);

    Tally__V1__Complaint *c = ti_get_complaint(&e, rep->results[2]->complaint_id, &own);
    cr_assert_eq(c->status, IN_PROGRESS);
    cr_assert_str_eq(c->assigned_agent_id, "a1");
    cr_assert_eq(c->updated_at_ms, t0 + 3 * HOUR);
    cr_assert_eq(c->resolved_at_ms, 0, "a reopen clears resolved_at");
    cr_assert_eq(c->version, 5);
    tally__v1__get_complaint_reply__free_unpacked(own, NULL);

    Tally__V1__ListStatusHistoryReply *h = ti_history(&e, rep->results[0]->complaint_id);
    cr_assert_eq(h->n_entries, 6);
    ti_check_entry(h->entries[0], 1, 0, OPEN, "", "", t0);
    ti_check_entry(h->entries[1], 3, OPEN, IN_PROGRESS, "a1", "looking into it", t0 + 2 * HOUR);
    ti_check_entry(h->entries[2], 4, IN_PROGRESS, RESOLVED, "a1", "replaced the fuser",
                   t0 + 5 * HOUR);
    ti_check_entry(h->entries[3], 5, RESOLVED, OPEN, "cust-portal", "on fire again",
                   t0 + DAY + 14 * HOUR + 30 * MIN);
    ti_check_entry(h->entries[4], 7, OPEN, RESOLVED, "a2", "", t0 + 2 * DAY);
    ti_check_entry(h->entries[5], 8, RESOLVED, CLOSED, "auto-close", "", t0 + 3 * DAY);
    cr_assert_str_eq(h->next_page_token, "");
    tally__v1__list_status_history_reply__free_unpacked(h, NULL);

    h = ti_history(&e, rep->results[2]->complaint_id);
    cr_assert_eq(h->n_entries, 4);
    ti_check_entry(h->entries[0], 1, 0, OPEN, "", "", t0 + 20 * MIN);
    ti_check_entry(h->entries[1], 2, OPEN, RESOLVED, "legacy-import", "duplicate", t0 + HOUR);
    ti_check_entry(h->entries[2], 3, RESOLVED, OPEN, "legacy-import", "not a duplicate",
                   t0 + 2 * HOUR);
    ti_check_entry(h->entries[3], 4, OPEN, IN_PROGRESS, "a1", "", t0 + 2 * HOUR);
    tally__v1__list_status_history_reply__free_unpacked(h, NULL);

    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    ti_env_stop(&e);
}

Test(import, events_carry_historical_times_versions_and_live_bodies, .timeout = 60)
{
    env e;
    imp_batch b;
    ev v[32];
    int64_t t0 = T0;
    ti_env_start(&e, "Europe/Berlin");
    ti_history_batch(&b, e.tenant);
    Tally__V1__ImportComplaintsReply *rep = ti_import_ok(&e, &b);
    int64_t ida = rep->results[0]->complaint_id, idb = rep->results[1]->complaint_id;
    int64_t idc = rep->results[2]->complaint_id;
    int n = ti_load_events(&e, e.tenant, v, 32);
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
    ti_check_assigned(&v[1], "", "a1", OPEN, t0);
    ti_check_changed(&v[2], OPEN, IN_PROGRESS, "a1", "a1", t0, "2026-03-10", 0);
    ti_check_changed(&v[3], IN_PROGRESS, RESOLVED, "a1", "a1", t0, "2026-03-10", 5 * 3600);
    ti_check_changed(&v[4], RESOLVED, OPEN, "a1", "cust-portal", t0, "2026-03-10", 0);
    ti_check_assigned(&v[5], "a1", "a2", OPEN, t0);
    ti_check_changed(&v[6], OPEN, RESOLVED, "a2", "a2", t0, "2026-03-10", 2 * 86400);
    ti_check_changed(&v[7], RESOLVED, CLOSED, "a2", "auto-close", t0, "2026-03-10", 0);
    cr_assert_eq(v[8].created->priority, TALLY__V1__PRIORITY__PRIORITY_LOW);
    cr_assert_str_eq(v[8].created->category_id, "c2");
    ti_check_changed(&v[10], OPEN, RESOLVED, "", "legacy-import", t0 + 20 * MIN, "2026-03-10",
                     40 * 60);
    ti_check_assigned(&v[13], "", "a1", IN_PROGRESS, t0 + 20 * MIN);

    /* The status-history rows carry the tenant and match the events one for one. */
    PGresult *r = ti_query(&e, e.tenant,
                           "SELECT count(*) FROM status_history h JOIN events v"
                           " ON v.complaint_id = h.complaint_id AND v.version = h.version"
                           " WHERE h.tenant_id = $1 AND v.tenant_id = $1"
                           " AND v.occurred_at = h.changed_at AND v.type IN (1, 3)");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "11");
    PQclear(r);

    ti_free_events(v, n);
    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    ti_env_stop(&e);
}

Test(import, a_retry_writes_nothing_and_reports_the_first_result, .timeout = 60)
{
    env e;
    imp_batch b, mixed, changed;
    char before[128], after[128];
    ti_env_start(&e, "UTC");
    ti_history_batch(&b, e.tenant);
    Tally__V1__ImportComplaintsReply *first = ti_import_ok(&e, &b);
    ti_count_rows(&e, before, sizeof(before));
    cr_assert_str_eq(before, "3/11/14/3");

    Tally__V1__ImportComplaintsReply *again = ti_import_ok(&e, &b);
    ti_count_rows(&e, after, sizeof(after));
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
    Tally__V1__ImportComplaintsReply *mix = ti_import_ok(&e, &mixed);
    cr_assert(mix->results[0]->already_existed);
    cr_assert_eq(mix->results[0]->complaint_id, first->results[2]->complaint_id);
    cr_assert_eq(mix->results[0]->version, 5);
    cr_assert_not(mix->results[1]->already_existed);
    cr_assert_eq(mix->results[1]->version, 2);
    cr_assert_eq(mix->imported, 1);
    cr_assert_eq(mix->events_written, 2);
    ti_count_rows(&e, after, sizeof(after));
    cr_assert_str_eq(after, "4/13/16/4");

    /* The same key with other content is refused for the whole batch. */
    imp_batch_init(&changed, e.tenant, 2);
    imp_entry_init(&changed.x[0], "legacy-E", "c1", 1, T0);
    imp_entry_init(&changed.x[1], "legacy-B", "c2", TALLY__V1__PRIORITY__PRIORITY_LOW,
                   T0 + 10 * MIN);
    changed.x[1].c.title = "Another title";
    ti_import_fails(&e, &changed, TALLY_GRPC_ALREADY_EXISTS,
                    "complaints[1].idempotency_key: \"legacy-B\"");

    /* A CreateComplaint key reused by an import: other content, TALLY_GRPC_ALREADY_EXISTS. */
    Tally__V1__CreateComplaintRequest cr = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    cr.tenant_id = e.tenant;
    cr.idempotency_key = "live-1";
    cr.category_id = "c1";
    cr.priority = TALLY__V1__PRIORITY__PRIORITY_MEDIUM;
    cr.title = "Printer on fire";
    cr.customer_id = "cust-42";
    call_free(call_ok(e.c, GC_COMMANDS("CreateComplaint"), &cr.base,
                      &tally__v1__create_complaint_reply__descriptor, 10000));
    imp_entry_init(&changed.x[1], "live-1", "c1", TALLY__V1__PRIORITY__PRIORITY_MEDIUM, T0);
    ti_import_fails(&e, &changed, TALLY_GRPC_ALREADY_EXISTS,
                    "complaints[1].idempotency_key: \"live-1\"");

    tally__v1__import_complaints_reply__free_unpacked(first, NULL);
    tally__v1__import_complaints_reply__free_unpacked(again, NULL);
    tally__v1__import_complaints_reply__free_unpacked(mix, NULL);
    imp_batch_release(&changed);
    imp_batch_release(&mixed);
    imp_batch_release(&b);
    ti_env_stop(&e);
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
    ti_env_start(&e, "UTC");

    good_batch(&b, e.tenant);
    b.x[1].c.priority = 7;
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[1].priority: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[0].steps[0].at_ms = T0 - 1;
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                    "complaints[0].history[0].at_ms: before created_at_ms");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[0].steps[2].at_ms = T0 + 90 * MIN;
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                    "complaints[0].history[2].at_ms: before the previous");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[2].move[0].status = CLOSED;
    ti_import_fails(
        &e, &b, TALLY_GRPC_INVALID_ARGUMENT,
        "complaints[2].history[0].status_change.status: cannot move from OPEN to CLOSED; "
        "allowed from OPEN: IN_PROGRESS, RESOLVED");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    imp_add_move(&b.x[0], T0 + 4 * HOUR, OPEN, "a1", "");
    ti_import_fails(
        &e, &b, TALLY_GRPC_INVALID_ARGUMENT,
        "complaints[0].history[3].status_change.status: cannot move from CLOSED to OPEN");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    imp_add_assign(&b.x[0], T0 + 4 * HOUR, "a1");
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[0].history[3].assignment: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[2].move[0].status = 0;
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                    "complaints[2].history[0].status_change.status: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[2].steps[0].change_case = TALLY__V1__IMPORTED_STEP__CHANGE__NOT_SET;
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[2].history[0]: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[2].move[0].actor = "";
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                    "complaints[2].history[0].status_change.actor: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[1].c.created_at_ms = (int64_t)time(NULL) * 1000 + DAY;
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                    "complaints[1].created_at_ms: in the future");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[1].c.created_at_ms = ti_utc_ms(1999, 12, 31, 23, 59);
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                    "complaints[1].created_at_ms: before 2000");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[2].c.title = "bad \xc3\x28 utf-8";
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[2].title: not valid UTF-8");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    snprintf(b.x[1].key, sizeof(b.x[1].key), "k1'; DROP TABLE events; --");
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[1].idempotency_key: ");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    snprintf(b.x[2].key, sizeof(b.x[2].key), "k0");
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT,
                    "complaints[2].idempotency_key: \"k0\" repeats complaints[0]");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    for (int j = 0; j < 201; j++)
        imp_add_assign(&b.x[1], T0 + j * MIN, j % 2 ? "a1" : "a2");
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints[1].history: more than 200");
    imp_batch_release(&b);

    imp_batch_init(&b, e.tenant, 0);
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints: ");
    imp_batch_release(&b);

    imp_batch_init(&b, e.tenant, 1001);
    for (int i = 0; i < 1001; i++) {
        char key[16];
        snprintf(key, sizeof(key), "bulk-%d", i);
        imp_entry_init(&b.x[i], key, "c1", 1, T0);
    }
    ti_import_fails(&e, &b, TALLY_GRPC_INVALID_ARGUMENT, "complaints: more than 1000");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.x[1].c.category_id = "nope";
    b.x[2].c.category_id = "nope";
    ti_import_fails(&e, &b, TALLY_GRPC_NOT_FOUND,
                    "complaints[1].category_id: no category \"nope\"");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    imp_add_assign(&b.x[2], T0 + 2 * HOUR, "ghost");
    ti_import_fails(&e, &b, TALLY_GRPC_NOT_FOUND,
                    "complaints[2].history[1].assignment.agent_id: no agent "
                    "\"ghost\"");
    imp_batch_release(&b);

    good_batch(&b, e.tenant);
    b.req.tenant_id = "no-such-tenant";
    ti_import_fails(&e, &b, TALLY_GRPC_NOT_FOUND, "tenant_id: no tenant \"no-such-tenant\"");
    imp_batch_release(&b);

    /* After all of that, the good batch imports. */
    good_batch(&b, e.tenant);
    Tally__V1__ImportComplaintsReply *rep = ti_import_ok(&e, &b);
    cr_assert_eq(rep->imported, 3);
    cr_assert_eq(rep->events_written, 4 + 1 + 2);
    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    ti_env_stop(&e);
}

Test(import, local_days_follow_the_tenant_time_zone, .timeout = 60)
{
    env e;
    char utc[32];
    imp_batch b;
    ev v[4];
    int64_t created = ti_utc_ms(2026, 1, 1, 23, 30), solved = ti_utc_ms(2026, 1, 2, 10, 0);
    ti_env_start(&e, "Pacific/Auckland");
    fx_seed_tenant(e.c, fx_tenant(utc, sizeof(utc)), "UTC");

    const char *tenants[] = { e.tenant, utc };
    const char *days[][2] = { { "2026-01-02", "2026-01-02" }, { "2026-01-01", "2026-01-02" } };
    for (int t = 0; t < 2; t++) {
        imp_batch_init(&b, tenants[t], 1);
        imp_entry_init(&b.x[0], "nye", "c1", 1, created);
        imp_add_move(&b.x[0], solved, RESOLVED, "a1", "");
        Tally__V1__ImportComplaintsReply *rep = ti_import_ok(&e, &b);
        cr_assert_eq(rep->events_written, 2);
        int n = ti_load_events(&e, tenants[t], v, 4);
        cr_assert_eq(n, 2);
        cr_assert_str_eq(v[0].local_day, days[t][0], "%s created", tenants[t]);
        cr_assert_str_eq(v[1].local_day, days[t][1], "%s resolved", tenants[t]);
        cr_assert_str_eq(v[1].changed->created_local_day, days[t][0]);
        cr_assert_eq(v[1].changed->resolution_seconds, (solved - created) / 1000);
        ti_free_events(v, n);
        tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
        imp_batch_release(&b);
    }
    ti_env_stop(&e);
}

Test(import, concurrent_imports_of_one_batch_write_it_once, .timeout = 60)
{
    env e;
    imp_batch b;
    gc_result rs[4];
    char rows[128];
    int ok = 0;
    ti_env_start(&e, "UTC");
    ti_history_batch(&b, e.tenant);
    gc_call_many(e.c, GC_COMMANDS("ImportComplaints"), &b.req.base, 4, 30000, rs);
    for (int i = 0; i < 4; i++) {
        cr_assert(rs[i].code == 0 || rs[i].code == TALLY_GRPC_ABORTED, "call %d: %d %s", i,
                  rs[i].code, rs[i].details);
        ok += rs[i].code == 0;
        gc_result_release(&rs[i]);
    }
    cr_assert_geq(ok, 1);
    ti_count_rows(&e, rows, sizeof(rows));
    cr_assert_str_eq(rows, "3/11/14/3");
    Tally__V1__ImportComplaintsReply *rep = ti_import_ok(&e, &b); /* the retry of an ABORTED one */
    cr_assert_eq(rep->imported, 0);
    for (int i = 0; i < 3; i++)
        cr_assert(rep->results[i]->already_existed);
    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    ti_env_stop(&e);
}

Test(import, a_full_batch_of_1000_imports_in_one_call, .timeout = 60)
{
    env e;
    imp_batch b;
    gc_status st;
    Tally__V1__ImportComplaintsReply *rep;
    char rows[128];
    ti_env_start(&e, "America/New_York");
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
    gc_call_msg(e.c, GC_COMMANDS("ImportComplaints"), &b.req.base,
                &tally__v1__import_complaints_reply__descriptor, NULL, 60000,
                (ProtobufCMessage **)&rep, &st);
    cr_assert_eq(st.code, 0, "%s", st.details);
    cr_assert_lt(st.seconds, 10.0, "a batch of 1000 took %.2f s", st.seconds);
    cr_assert_eq(rep->imported, 1000);
    cr_assert_eq(rep->events_written, 1000 * 3 + 800);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(rep->results[i]->version, i % 5 ? 4 : 3);
    ti_count_rows(&e, rows, sizeof(rows));
    cr_assert_str_eq(rows, "1000/2800/3800/1000");
    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    ti_env_stop(&e);
}

/*
 * The validation looks each key of a batch up by itself: a join read every key the tenant had
 * ever used, so a batch's check grew with the tenant's history (bench/README.md, import).
 */
Test(import, the_key_check_reads_only_the_batch_keys, .timeout = 60)
{
    env e;
    char keys[16 * 1000 + 2], *p = keys;
    ti_env_start(&e, "America/New_York");
    for (int n = 0; n < 3; n++) {
        imp_batch b;
        imp_batch_init(&b, e.tenant, 1000);
        for (int i = 0; i < 1000; i++) {
            char key[16];
            snprintf(key, sizeof(key), "old-%d", n * 1000 + i);
            imp_entry_init(&b.x[i], key, "c1", 1 + i % 4, T0 - (int64_t)i * MIN);
        }
        tally__v1__import_complaints_reply__free_unpacked(ti_import_ok(&e, &b), NULL);
        imp_batch_release(&b);
    }
    PQclear(pgdb_sql(e.pg, "ANALYZE idempotency_keys", 0, NULL));
    /* A batch of 1000 keys, 10 of them used before. */
    *p++ = '{';
    for (int i = 0; i < 1000; i++)
        p += sprintf(p, "%s%s-%d", i ? "," : "", i < 10 ? "old" : "new", i);
    strcpy(p, "}");
    char sql[4096];
    cr_assert_lt(snprintf(sql, sizeof(sql), "EXPLAIN (ANALYZE, FORMAT JSON) %s", import_check_sql),
                 (int)sizeof(sql));
    const char *args[] = { e.tenant, "{}", "{}", keys, "{}" };
    PGresult *plan = pgdb_sql(e.pg, sql, 5, args);
    const char *json[] = { PQgetvalue(plan, 0, 0) };
    long long read = pgdb_int(e.pg,
                              "SELECT coalesce(sum((n->>'Actual Rows')::numeric"
                              " * (n->>'Actual Loops')::numeric), 0)::bigint"
                              " FROM jsonb_path_query($1::jsonb,"
                              " 'strict $.** ? (@.\"Relation Name\" == \"idempotency_keys\")') n",
                              1, json);
    /* Rows per loop x loops, rounded per loop: 0 for 1000 lookups finding 10; a join read 3000. */
    cr_assert_lt(read, 1000, "the check of 1000 keys read %lld rows of idempotency_keys", read);
    PQclear(plan);
    ti_env_stop(&e);
}
