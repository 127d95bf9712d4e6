/* ChangeStatus: the whole state machine, moves outside it, refusals. */
#include "cmd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(commands, change_status_walks_the_whole_state_machine)
{
    char t[32];
    long long at, resolved_at;
    tc_seeded(t, sizeof(t), "UTC");
    long long id = tc_create_ok(t, "k1");
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
        v = tc_move_ok(t, id, path[i].to, v, &at);
        if (path[i].to == RESOLVED)
            resolved_at = at;
        else if (path[i].to == OPEN)
            resolved_at = 0;
        Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
        Tally__V1__Complaint *c = g->complaint;
        cr_assert_eq(c->status, path[i].to, "step %zu", i);
        cr_assert_eq(c->version, v);
        cr_assert_eq(c->updated_at_ms, at);
        cr_assert_eq(c->resolved_at_ms, resolved_at,
                     "step %zu: resolved_at_ms %lld, want %lld (0 after a reopen, kept when "
                     "CLOSED)",
                     i, (long long)c->resolved_at_ms, resolved_at);
        cr_assert_geq(c->updated_at_ms, c->created_at_ms);
        call_free(g);
    }
    cr_assert_eq(v, 6);
    cr_assert_neq(resolved_at, 0, "CLOSED keeps resolved_at_ms");

    /* OPEN -> RESOLVED directly is allowed too. */
    long long id2 = tc_create_ok(t, "k2");
    cr_assert_eq(tc_move_ok(t, id2, RESOLVED, 1, NULL), 2);

    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = { t, ids };
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM status_history WHERE tenant_id = $1 AND"
                            " complaint_id = $2",
                            2, p),
                 6, "one audit row per move plus the creation");
}

/* Every refused move, from every status: FAILED_PRECONDITION naming the allowed moves. */
Test(commands, change_status_refuses_moves_outside_the_state_machine)
{
    char t[32];
    tc_seeded(t, sizeof(t), "UTC");
    /* A complaint in each status, and its version. */
    long long id[5] = { 0 }, ver[5] = { 0 };
    id[OPEN] = tc_create_ok(t, "open");
    ver[OPEN] = 1;
    id[IN_PROGRESS] = tc_create_ok(t, "in-progress");
    ver[IN_PROGRESS] = tc_move_ok(t, id[IN_PROGRESS], IN_PROGRESS, 1, NULL);
    id[RESOLVED] = tc_create_ok(t, "resolved");
    ver[RESOLVED] = tc_move_ok(t, id[RESOLVED], RESOLVED, 1, NULL);
    id[CLOSED] = tc_create_ok(t, "closed");
    ver[CLOSED] =
        tc_move_ok(t, id[CLOSED], CLOSED, tc_move_ok(t, id[CLOSED], RESOLVED, 1, NULL), NULL);
    const char *allowed[5][2] = { { NULL, NULL },
                                  { "IN_PROGRESS", "RESOLVED" },
                                  { "RESOLVED", NULL },
                                  { "OPEN", "CLOSED" },
                                  { NULL, NULL } };
    const bool ok[5][5] = { [OPEN] = { [IN_PROGRESS] = true, [RESOLVED] = true },
                            [IN_PROGRESS] = { [RESOLVED] = true },
                            [RESOLVED] = { [OPEN] = true, [CLOSED] = true } };
    counts before = tc_count_rows(t);
    int refused = 0;
    for (int from = OPEN; from <= CLOSED; from++)
        for (int to = OPEN; to <= CLOSED; to++) {
            if (ok[from][to])
                continue;
            Tally__V1__ChangeStatusRequest req = tc_move_req(t, id[from], to, ver[from]);
            gc_status r = tc_call(GC_COMMANDS("ChangeStatus"), &req.base);
            char what[64];
            snprintf(what, sizeof(what), "move %d -> %d", from, to);
            call_check_refusal(what, &r, TALLY_GRPC_FAILED_PRECONDITION, NULL);
            /* ErrorInfo: the reason and the allowed moves, for a program to offer them */
            const char *moves = rpc_status_meta(&r.rich, "allowed");
            cr_assert_str_eq(r.rich.info.reason, "STATUS_MOVE_NOT_ALLOWED", "%s", what);
            cr_assert(moves, "%s: no allowed moves in the ErrorInfo", what);
            for (int k = 0; k < 2 && allowed[from][k]; k++)
                cr_assert(strstr(moves, allowed[from][k]), "%s: allowed=\"%s\" lacks %s", what,
                          moves, allowed[from][k]);
            if (from == CLOSED)
                cr_assert_str_eq(moves, "", "%s: CLOSED is final", what);
            const char *list = strstr(r.details, "allowed");
            if (from == CLOSED) {
                cr_assert(strstr(r.details, "final"), "%s: \"%s\"", what, r.details);
            } else {
                cr_assert(list, "%s: \"%s\" does not name the allowed moves", what, r.details);
                for (int k = 0; k < 2 && allowed[from][k]; k++)
                    cr_assert(strstr(list, allowed[from][k]), "%s: \"%s\" lacks %s", what,
                              r.details, allowed[from][k]);
            }
            refused++;
        }
    cr_assert_eq(refused, 11);
    tc_assert_unchanged(&before, t, "refused moves");
    for (int s = OPEN; s <= CLOSED; s++) {
        Tally__V1__GetComplaintReply *g = tc_get_rep(t, id[s]);
        cr_assert_eq(g->complaint->status, s);
        cr_assert_eq(g->complaint->version, ver[s]);
        call_free(g);
    }
}

Test(commands, change_status_refusals_name_the_field_and_write_nothing)
{
    char t[32], long_id[80], note[2100];
    tc_seeded(t, sizeof(t), "UTC");
    tc_repeat(long_id, 'x', 65);
    tc_repeat(note, 'n', 2001);
    long long id = tc_create_ok(t, "k1");
    counts before = tc_count_rows(t);
    struct {
        const char *tenant, *actor, *note;
        long long id, expected;
        int status, code;
        const char *field;
    } cases[] = {
        { "", "agent-7", "", id, 1, IN_PROGRESS, TALLY_GRPC_INVALID_ARGUMENT, "tenant_id" },
        { t, "agent-7", "", 0, 1, IN_PROGRESS, TALLY_GRPC_INVALID_ARGUMENT, "complaint_id" },
        { t, "agent-7", "", id, 1, 0, TALLY_GRPC_INVALID_ARGUMENT, "status" },
        { t, "agent-7", "", id, 1, 5, TALLY_GRPC_INVALID_ARGUMENT, "status" },
        { t, "agent-7", "", id, 1, 99, TALLY_GRPC_INVALID_ARGUMENT, "status" },
        { t, "agent-7", "", id, 1, -1, TALLY_GRPC_INVALID_ARGUMENT, "status" },
        { t, "agent-7", "", id, 0, IN_PROGRESS, TALLY_GRPC_INVALID_ARGUMENT, "expected_version" },
        { t, "agent-7", note, id, 1, IN_PROGRESS, TALLY_GRPC_INVALID_ARGUMENT, "note" },
        { t, "", "", id, 1, IN_PROGRESS, TALLY_GRPC_INVALID_ARGUMENT, "actor" },
        { t, "auto close", "", id, 1, IN_PROGRESS, TALLY_GRPC_INVALID_ARGUMENT, "actor" },
        { t, long_id, "", id, 1, IN_PROGRESS, TALLY_GRPC_INVALID_ARGUMENT, "actor" },
        { t, "agent-7", "", 999999999999LL, 1, IN_PROGRESS, TALLY_GRPC_NOT_FOUND, "complaint_id" },
        { t, "agent-7", "", id, 7, IN_PROGRESS, TALLY_GRPC_ABORTED, "expected_version" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Tally__V1__ChangeStatusRequest req =
            tc_move_req(cases[i].tenant, cases[i].id, cases[i].status, cases[i].expected);
        req.actor = (char *)cases[i].actor;
        req.note = (char *)cases[i].note;
        gc_status r = tc_call(GC_COMMANDS("ChangeStatus"), &req.base);
        char what[64];
        snprintf(what, sizeof(what), "ChangeStatus case %zu", i);
        call_check_refusal(what, &r, cases[i].code, cases[i].field);
        if (cases[i].code == TALLY_GRPC_ABORTED)
            cr_assert(strstr(r.details, "version 1"), "ABORTED must say the current version: %s",
                      r.details);
    }
    tc_assert_unchanged(&before, t, "refused status changes");
    /* A 2000-byte note is fine. */
    note[2000] = '\0';
    Tally__V1__ChangeStatusRequest req = tc_move_req(t, id, IN_PROGRESS, 1);
    req.note = note;
    call_free(tc_call_ok(GC_COMMANDS("ChangeStatus"), &req.base,
                         &tally__v1__change_status_reply__descriptor));
}
