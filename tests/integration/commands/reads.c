/* ListStatusHistory paging, and tenant isolation of the reads and of page tokens. */
#include "cmd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(commands, list_status_history_pages_one_by_one)
{
    char t[32], notes[8][16];
    long long at[8];
    tc_seeded(t, sizeof(t), "UTC");
    Tally__V1__CreateComplaintRequest creq = tc_create_req(t, "k1");
    Tally__V1__CreateComplaintReply *crep = tc_create_rep(&creq);
    long long id = crep->complaint_id;
    at[1] = crep->created_at_ms;
    call_free(crep);
    long long v = tc_assign_ok(t, id, "a1", 1); /* version 2, no audit row */
    const int moves[] = { IN_PROGRESS, RESOLVED, OPEN, RESOLVED, CLOSED };
    const int from[] = { 0, OPEN, IN_PROGRESS, RESOLVED, OPEN, RESOLVED };
    const int to[] = { OPEN, IN_PROGRESS, RESOLVED, OPEN, RESOLVED, CLOSED };
    const long long want_version[] = { 1, 3, 4, 5, 6, 7 };
    for (int i = 0; i < 5; i++) {
        Tally__V1__ChangeStatusRequest req = tc_move_req(t, id, moves[i], v);
        snprintf(notes[i + 1], sizeof(notes[i + 1]), "note %d", i + 1);
        req.note = notes[i + 1];
        Tally__V1__ChangeStatusReply *rep = tc_call_ok(GC_COMMANDS("ChangeStatus"), &req.base,
                                                       &tally__v1__change_status_reply__descriptor);
        v = rep->version;
        at[i + 2] = rep->updated_at_ms;
        call_free(rep);
    }

    char token[512] = "", seen[8][512];
    int pages = 0;
    for (;;) {
        Tally__V1__ListStatusHistoryReply *rep = tc_history_rep(t, id, 1, token);
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
        call_free(rep);
        if (!token[0])
            break;
        for (int k = 0; k < pages - 1; k++)
            cr_assert_str_neq(seen[k], token, "a token repeats");
    }
    cr_assert_eq(pages, 6);

    /* Default page size: everything, no token. Exact fit: no token either. */
    Tally__V1__ListStatusHistoryReply *all = tc_history_rep(t, id, 0, "");
    cr_assert_eq(all->n_entries, 6);
    cr_assert_str_eq(all->next_page_token, "");
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(all->entries[i]->version, want_version[i]);
    call_free(all);
    all = tc_history_rep(t, id, 6, "");
    cr_assert_eq(all->n_entries, 6);
    cr_assert_str_eq(all->next_page_token, "");
    call_free(all);
    all = tc_history_rep(t, id, 4, "");
    cr_assert_eq(all->n_entries, 4);
    cr_assert_str_neq(all->next_page_token, "");
    Tally__V1__ListStatusHistoryReply *rest = tc_history_rep(t, id, 500, all->next_page_token);
    cr_assert_eq(rest->n_entries, 2);
    cr_assert_eq(rest->entries[0]->version, 6);
    cr_assert_eq(rest->entries[1]->version, 7);
    cr_assert_str_eq(rest->next_page_token, "");
    call_free(rest);
    call_free(all);
}

Test(commands, list_status_history_refusals)
{
    char t[32], long_token[300];
    tc_seeded(t, sizeof(t), "UTC");
    long long id = tc_create_ok(t, "k1");
    long long other = tc_create_ok(t, "k2");
    tc_move_ok(t, other, IN_PROGRESS, 1, NULL);
    Tally__V1__ListStatusHistoryReply *o = tc_history_rep(t, other, 1, "");
    char other_token[128];
    snprintf(other_token, sizeof(other_token), "%s", o->next_page_token);
    cr_assert_str_neq(other_token, "");
    call_free(o);
    Tally__V1__ListStatusHistoryReply *mine = tc_history_rep(t, id, 1, "");
    cr_assert_str_eq(mine->next_page_token, "", "one entry only: no next page");
    call_free(mine);
    tc_move_ok(t, id, IN_PROGRESS, 1, NULL);
    mine = tc_history_rep(t, id, 1, "");
    char good[128], junk[160];
    snprintf(good, sizeof(good), "%s", mine->next_page_token);
    call_free(mine);
    snprintf(junk, sizeof(junk), "%sx", good);
    tc_repeat(long_token, 'h', 257);

    struct {
        const char *tenant;
        long long id;
        int size;
        const char *token;
        int code;
        const char *field;
    } cases[] = {
        { "", id, 1, "", TALLY_GRPC_INVALID_ARGUMENT, "tenant_id" },
        { t, 0, 1, "", TALLY_GRPC_INVALID_ARGUMENT, "complaint_id" },
        { t, id, 501, "", TALLY_GRPC_INVALID_ARGUMENT, "page_size" },
        { t, id, -1, "", TALLY_GRPC_INVALID_ARGUMENT, "page_size" },
        { t, id, 1, "garbage", TALLY_GRPC_INVALID_ARGUMENT, "page_token" },
        { t, id, 1, junk, TALLY_GRPC_INVALID_ARGUMENT, "page_token" },
        { t, id, 1, other_token, TALLY_GRPC_INVALID_ARGUMENT, "page_token" },
        { t, id, 1, long_token, TALLY_GRPC_INVALID_ARGUMENT, "page_token" },
        { t, 999999999999LL, 1, "", TALLY_GRPC_NOT_FOUND, "complaint_id" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Tally__V1__ListStatusHistoryRequest req = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
        req.tenant_id = (char *)cases[i].tenant;
        req.complaint_id = cases[i].id;
        req.page_size = cases[i].size;
        req.page_token = (char *)cases[i].token;
        char what[64];
        snprintf(what, sizeof(what), "ListStatusHistory case %zu", i);
        tc_expect(what, GC_COMMANDS("ListStatusHistory"), &req.base, cases[i].code, cases[i].field);
    }
    /* The good token still works. */
    Tally__V1__ListStatusHistoryReply *next = tc_history_rep(t, id, 1, good);
    cr_assert_eq(next->n_entries, 1);
    cr_assert_eq(next->entries[0]->version, 2);
    call_free(next);
}

Test(commands, a_complaint_of_another_tenant_is_not_found)
{
    char a[32], b[32];
    tc_seeded(a, sizeof(a), "UTC");
    tc_seeded(b, sizeof(b), "UTC");
    long long id = tc_create_ok(a, "k1");
    counts before_a = tc_count_rows(a), before_b = tc_count_rows(b);

    Tally__V1__GetComplaintRequest g = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    g.tenant_id = b;
    g.complaint_id = id;
    tc_expect("GetComplaint", GC_COMMANDS("GetComplaint"), &g.base, TALLY_GRPC_NOT_FOUND,
              "complaint_id");
    Tally__V1__AssignComplaintRequest as = tc_assign_req(b, id, "a1", 1);
    tc_expect("AssignComplaint", GC_COMMANDS("AssignComplaint"), &as.base, TALLY_GRPC_NOT_FOUND,
              "complaint_id");
    Tally__V1__ChangeStatusRequest cs = tc_move_req(b, id, IN_PROGRESS, 1);
    tc_expect("ChangeStatus", GC_COMMANDS("ChangeStatus"), &cs.base, TALLY_GRPC_NOT_FOUND,
              "complaint_id");
    Tally__V1__ListStatusHistoryRequest ls = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
    ls.tenant_id = b;
    ls.complaint_id = id;
    tc_expect("ListStatusHistory", GC_COMMANDS("ListStatusHistory"), &ls.base, TALLY_GRPC_NOT_FOUND,
              "complaint_id");
    tc_assert_unchanged(&before_a, a, "another tenant's commands");
    tc_assert_unchanged(&before_b, b, "commands on another tenant's complaint");

    /* A tenant that does not exist at all: NOT_FOUND naming the tenant or the complaint. */
    char ghost[32];
    fx_tenant(ghost, sizeof(ghost));
    g.tenant_id = ghost;
    as.tenant_id = ghost;
    cs.tenant_id = ghost;
    ls.tenant_id = ghost;
    const ProtobufCMessage *msgs[] = { &g.base, &as.base, &cs.base, &ls.base };
    const char *methods[] = { GC_COMMANDS("GetComplaint"), GC_COMMANDS("AssignComplaint"),
                              GC_COMMANDS("ChangeStatus"), GC_COMMANDS("ListStatusHistory") };
    for (int i = 0; i < 4; i++) {
        gc_status r = tc_call(methods[i], msgs[i]);
        call_check_refusal(methods[i], &r, TALLY_GRPC_NOT_FOUND, NULL);
        cr_assert(strncmp(r.details, "tenant_id:", 10) == 0 ||
                      strncmp(r.details, "complaint_id:", 13) == 0,
                  "%s: \"%s\" names neither tenant_id nor complaint_id", methods[i], r.details);
    }
    tc_assert_nothing_for(ghost, "commands for an unknown tenant");
    Tally__V1__GetComplaintReply *mine = tc_get_rep(a, id);
    cr_assert_eq(mine->complaint->version, 1);
    call_free(mine);
}

/* A page token of tenant A's complaint must not turn tenant B's NOT_FOUND into an answer. */
Test(commands, a_page_token_does_not_bypass_tenant_isolation)
{
    char a[32], b[32];
    tc_seeded(a, sizeof(a), "UTC");
    tc_seeded(b, sizeof(b), "UTC");
    long long id = tc_create_ok(a, "k1");
    tc_move_ok(a, id, IN_PROGRESS, 1, NULL);
    Tally__V1__ListStatusHistoryReply *first = tc_history_rep(a, id, 1, "");
    char token[128];
    snprintf(token, sizeof(token), "%s", first->next_page_token);
    call_free(first);
    cr_assert_str_neq(token, "");
    Tally__V1__ListStatusHistoryRequest ls = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
    ls.tenant_id = b;
    ls.complaint_id = id;
    ls.page_size = 1;
    ls.page_token = token;
    tc_expect("ListStatusHistory of another tenant's complaint with its token",
              GC_COMMANDS("ListStatusHistory"), &ls.base, TALLY_GRPC_NOT_FOUND, "complaint_id");
}
