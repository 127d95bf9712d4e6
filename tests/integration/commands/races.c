/* Races (suite race, 8 workers): concurrent retries, status changes and assignments; one wins. */
#include "cmd_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(race, .init = tc_setup_wide, .fini = tc_teardown, .timeout = 90);

Test(race, fifty_concurrent_retries_make_one_complaint_and_one_event)
{
    char t[32];
    tc_seeded(t, sizeof(t), "UTC");
    Tally__V1__CreateComplaintRequest req = tc_create_req(t, "one-key-for-all");
    gc_result rs[50];
    cr_assert_eq(gc_call_many(tc_cli, GC_COMMANDS("CreateComplaint"), &req.base, 50, 30000, rs), 0);
    long long id = 0, created = 0;
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(rs[i].code, TALLY_GRPC_OK, "call %d: %s \"%s\"", i,
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
        call_free(rep);
        gc_result_release(&rs[i]);
    }
    cr_assert_geq(id, 1);
    const char *p[] = { t };
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1", 1, p), 1);
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND"
                            " complaint_id IS NOT NULL",
                            1, p),
                 1);
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM status_history WHERE tenant_id = $1", 1, p), 1);
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1", 1, p), 1);
}

Test(race, twenty_concurrent_status_changes_one_wins)
{
    char t[32];
    tc_seeded(t, sizeof(t), "UTC");
    long long id = tc_create_ok(t, "k1");
    Tally__V1__ChangeStatusRequest req = tc_move_req(t, id, IN_PROGRESS, 1);
    gc_result rs[20];
    cr_assert_eq(gc_call_many(tc_cli, GC_COMMANDS("ChangeStatus"), &req.base, 20, 30000, rs), 0);
    int won = 0, aborted = 0;
    for (int i = 0; i < 20; i++) {
        if (rs[i].code == TALLY_GRPC_OK) {
            Tally__V1__ChangeStatusReply *rep =
                tally__v1__change_status_reply__unpack(NULL, rs[i].len, rs[i].data);
            cr_assert(rep);
            cr_assert_eq(rep->version, 2);
            call_free(rep);
            won++;
        } else {
            tc_check_refusal("a losing writer", &rs[i], TALLY_GRPC_ABORTED, "expected_version");
            cr_assert(strstr(rs[i].details, "version 2"),
                      "ABORTED must say the current version 2: \"%s\"", rs[i].details);
            aborted++;
        }
        gc_result_release(&rs[i]);
    }
    cr_assert_eq(won, 1, "%d writers won", won);
    cr_assert_eq(aborted, 19);
    Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
    cr_assert_eq(g->complaint->version, 2);
    cr_assert_eq(g->complaint->status, IN_PROGRESS);
    call_free(g);
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = { t, ids };
    cr_assert_eq(
        tc_sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND complaint_id = $2", 2, p),
        2);
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND complaint_id = $2"
                            " AND version = 2",
                            2, p),
                 1);
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM status_history WHERE tenant_id = $1 AND"
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
    Tally__V1__AssignComplaintRequest req = tc_assign_req(a->tenant, a->id, a->agent, 1);
    pthread_barrier_wait(a->go);
    gc_call(c, GC_COMMANDS("AssignComplaint"), &req.base, NULL, DEADLINE_MS, &a->r);
    gc_free(c);
    return NULL;
}

Test(race, two_assigners_with_the_same_version_one_wins)
{
    char t[32], key[16];
    tc_seeded(t, sizeof(t), "UTC");
    for (int round = 0; round < 10; round++) {
        snprintf(key, sizeof(key), "k%d", round);
        long long id = tc_create_ok(t, key);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        bg_assign a[2] = {
            { .port = tc_svc.grpc_port, .tenant = t, .agent = "a1", .id = id, .go = &go },
            { .port = tc_svc.grpc_port, .tenant = t, .agent = "a2", .id = id, .go = &go }
        };
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&th[i], NULL, run_assign, &a[i]);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        int winner = -1;
        for (int i = 0; i < 2; i++) {
            if (a[i].r.code == TALLY_GRPC_OK) {
                cr_assert_eq(winner, -1, "round %d: both writers won", round);
                winner = i;
            } else {
                tc_check_refusal("the losing assigner", &a[i].r, TALLY_GRPC_ABORTED,
                                 "expected_version");
                cr_assert(strstr(a[i].r.details, "version 2"), "\"%s\"", a[i].r.details);
            }
            gc_result_release(&a[i].r);
        }
        cr_assert_neq(winner, -1, "round %d: nobody won", round);
        Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
        cr_assert_eq(g->complaint->version, 2);
        cr_assert_str_eq(g->complaint->assigned_agent_id, a[winner].agent);
        call_free(g);
        char ids[24];
        snprintf(ids, sizeof(ids), "%lld", id);
        const char *p[] = { t, ids };
        cr_assert_eq(tc_sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND"
                                " complaint_id = $2 AND version = 2",
                                2, p),
                     1);
    }
}
