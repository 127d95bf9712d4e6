/* AssignComplaint: assign, reassign, unassign, the no-op, and refusals. */
#include "cmd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(commands, assign_assigns_reassigns_unassigns_and_the_same_agent_is_a_no_op)
{
    char t[32];
    ev e[16];
    tc_seeded(t, sizeof(t), "UTC");
    long long id = tc_create_ok(t, "k1");

    Tally__V1__AssignComplaintReply *rep = tc_assign_rep(t, id, "a1", 1);
    cr_assert_eq(rep->version, 2);
    Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
    cr_assert_str_eq(g->complaint->assigned_agent_id, "a1");
    cr_assert_eq(g->complaint->version, 2);
    cr_assert_eq(g->complaint->updated_at_ms, rep->updated_at_ms);
    cr_assert_eq(g->complaint->status, OPEN, "assigning does not move the status");
    call_free(g);
    call_free(rep);

    counts before = tc_count_rows(t);
    cr_assert_eq(tc_assign_ok(t, id, "a1", 2), 2, "the same agent: OK with the same version");
    tc_assert_unchanged(&before, t, "a no-op assignment");

    cr_assert_eq(tc_assign_ok(t, id, "a2", 2), 3);
    cr_assert_eq(tc_assign_ok(t, id, "", 3), 4, "unassign");
    g = tc_get_rep(t, id);
    cr_assert_str_eq(g->complaint->assigned_agent_id, "");
    cr_assert_eq(g->complaint->version, 4);
    call_free(g);
    before = tc_count_rows(t);
    cr_assert_eq(tc_assign_ok(t, id, "", 4), 4, "unassigning an unassigned complaint: no-op");
    tc_assert_unchanged(&before, t, "a no-op unassignment");

    int n = tc_load_events(t, "UTC", id, e, 16);
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
        call_free(b);
    }
    tc_free_events(e, n);
}

/* AssignComplaintReply.updated_at_ms is "the complaint's updated_at_ms after the command". */
Test(commands, a_no_op_assignment_reports_the_current_updated_at)
{
    char t[32];
    tc_seeded(t, sizeof(t), "UTC");
    long long id = tc_create_ok(t, "k1");
    tc_assign_ok(t, id, "a1", 1);
    Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
    Tally__V1__AssignComplaintReply *rep = tc_assign_rep(t, id, "a1", 2);
    long long version = rep->version, replied = rep->updated_at_ms;
    long long stored = g->complaint->updated_at_ms;
    call_free(rep);
    call_free(g);
    cr_assert_eq(version, 2);
    cr_assert_eq(replied, stored,
                 "no-op assignment replied updated_at_ms %lld, the complaint's is %lld", replied,
                 stored);
}

Test(commands, assign_refusals)
{
    char t[32], other[32], long_id[80];
    tc_seeded(t, sizeof(t), "UTC");
    tc_seeded(other, sizeof(other), "UTC");
    Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
    pa.tenant_id = other;
    pa.agent_id = "theirs";
    pa.name = "Not ours";
    call_free(
        tc_call_ok(GC_COMMANDS("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor));
    tc_repeat(long_id, 'a', 65);
    long long id = tc_create_ok(t, "k1");
    counts before = tc_count_rows(t);

    struct {
        const char *tenant, *agent;
        long long id, expected;
        int code;
        const char *field;
    } cases[] = {
        { "", "a1", id, 1, TALLY_GRPC_INVALID_ARGUMENT, "tenant_id" },
        { "t 1", "a1", id, 1, TALLY_GRPC_INVALID_ARGUMENT, "tenant_id" },
        { t, "a1", 0, 1, TALLY_GRPC_INVALID_ARGUMENT, "complaint_id" },
        { t, "a1", -5, 1, TALLY_GRPC_INVALID_ARGUMENT, "complaint_id" },
        { t, "a 1", id, 1, TALLY_GRPC_INVALID_ARGUMENT, "agent_id" },
        { t, long_id, id, 1, TALLY_GRPC_INVALID_ARGUMENT, "agent_id" },
        { t, "a1", id, 0, TALLY_GRPC_INVALID_ARGUMENT, "expected_version" },
        { t, "a1", id, -1, TALLY_GRPC_INVALID_ARGUMENT, "expected_version" },
        { t, "nobody", id, 1, TALLY_GRPC_NOT_FOUND, "agent_id" },
        { t, "theirs", id, 1, TALLY_GRPC_NOT_FOUND, "agent_id" },
        { t, "a1", 999999999999LL, 1, TALLY_GRPC_NOT_FOUND, "complaint_id" },
        { t, "a1", id, 2, TALLY_GRPC_ABORTED, "expected_version" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Tally__V1__AssignComplaintRequest req =
            tc_assign_req(cases[i].tenant, cases[i].id, cases[i].agent, cases[i].expected);
        char what[64];
        snprintf(what, sizeof(what), "AssignComplaint case %zu", i);
        gc_status r = tc_call(GC_COMMANDS("AssignComplaint"), &req.base);
        call_check_refusal(what, &r, cases[i].code, cases[i].field);
        if (cases[i].code == TALLY_GRPC_ABORTED) {
            cr_assert(strstr(r.details, "version 1"), "ABORTED must say the current version: %s",
                      r.details);
            /* and say it to a program: ErrorInfo's reason and the versions */
            cr_assert_str_eq(r.rich.info.reason, "VERSION_CONFLICT");
            cr_assert_str_eq(rpc_status_meta(&r.rich, "current_version"), "1");
            cr_assert_str_eq(rpc_status_meta(&r.rich, "expected_version"), "2");
        }
    }
    tc_assert_unchanged(&before, t, "refused assignments");

    /* A CLOSED complaint can no longer be assigned, nor unassigned. */
    long long v = tc_assign_ok(t, id, "a1", 1);
    v = tc_move_ok(t, id, RESOLVED, v, NULL);
    v = tc_move_ok(t, id, CLOSED, v, NULL);
    before = tc_count_rows(t);
    const char *agents[] = { "a2", "", "a1" };
    for (int i = 0; i < 3; i++) {
        Tally__V1__AssignComplaintRequest req = tc_assign_req(t, id, agents[i], v);
        tc_expect("assigning a CLOSED complaint", GC_COMMANDS("AssignComplaint"), &req.base,
                  TALLY_GRPC_FAILED_PRECONDITION, NULL);
    }
    tc_assert_unchanged(&before, t, "assignments of a CLOSED complaint");
}
