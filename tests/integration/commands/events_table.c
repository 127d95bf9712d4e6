/* The events table: versions, types, local days and bodies of the rows a command writes. */
#include "cmd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(commands, event_rows_carry_versions_types_local_days_and_fat_bodies)
{
    char t[32];
    const char *tz = "Pacific/Auckland";
    tc_seeded(t, sizeof(t), tz);
    Tally__V1__CreateComplaintRequest req = tc_create_req(t, "k1");
    req.category_id = "c2";
    req.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    req.customer_id = "cust-42";
    Tally__V1__CreateComplaintReply *rep = tc_create_rep(&req);
    long long id = rep->complaint_id;
    call_free(rep);
    rep = tc_create_rep(&req); /* a retry writes no second creation event */
    cr_assert_eq(rep->complaint_id, id);
    call_free(rep);
    long long v = 1;
    v = tc_assign_ok(t, id, "a1", v);            /* 2 */
    v = tc_move_ok(t, id, IN_PROGRESS, v, NULL); /* 3 */
    v = tc_assign_ok(t, id, "a2", v);            /* 4 */
    v = tc_move_ok(t, id, RESOLVED, v, NULL);    /* 5 */
    v = tc_move_ok(t, id, OPEN, v, NULL);        /* 6 */
    v = tc_move_ok(t, id, RESOLVED, v, NULL);    /* 7 */
    v = tc_assign_ok(t, id, "", v);              /* 8 */
    v = tc_move_ok(t, id, CLOSED, v, NULL);      /* 9 */
    cr_assert_eq(v, 9);

    Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
    long long created = g->complaint->created_at_ms, updated = g->complaint->updated_at_ms;
    call_free(g);

    ev e[16];
    int n = tc_load_events(t, tz, id, e, 16);
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
            call_free(b);
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
            call_free(b);
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
            call_free(b);
        }
    }
    cr_assert_eq(e[n - 1].occurred_ms, updated, "the last event's time is the complaint's");
    tc_free_events(e, n);

    /* The audit log has the creation and the five moves, with the same versions. */
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = { t, ids };
    PGresult *r =
        tc_sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM status_history"
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
    tc_seeded(t, sizeof(t), "Etc/GMT-14");
    long long id = tc_create_ok(t, "k1");
    Tally__V1__PutTenantRequest pt = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    pt.tenant_id = t;
    pt.name = "Test tenant";
    pt.time_zone = "Etc/GMT+12";
    Tally__V1__PutTenantReply *tr =
        tc_call_ok(GC_COMMANDS("PutTenant"), &pt.base, &tally__v1__put_tenant_reply__descriptor);
    cr_assert(tr->changed);
    call_free(tr);
    tc_move_ok(t, id, RESOLVED, 1, NULL);

    ev e[4];
    int n = tc_load_events(t, "Etc/GMT+12", id, e, 4);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(e[1].local_day, e[1].zone_day, "the move's day is in the new zone");
    cr_assert_str_neq(e[0].local_day, e[1].local_day, "the zones should give different days");
    Tally__V1__StatusChanged *b = tally__v1__status_changed__unpack(NULL, e[1].len, e[1].payload);
    tc_free_events(e, n);
    cr_assert(b);
    char carried[16];
    snprintf(carried, sizeof(carried), "%s", b->created_local_day);
    call_free(b);
    cr_assert_str_eq(carried, e[0].local_day,
                     "created_local_day %s, but the ComplaintCreated's local_day is %s", carried,
                     e[0].local_day);
}
