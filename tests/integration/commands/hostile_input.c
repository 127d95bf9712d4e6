/* Hostile input: invalid UTF-8, NUL bytes, undecodable bytes, SQL metacharacters, unknown enums. */
#include "cmd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    tc_seeded(t, sizeof(t), "UTC");
    fx_tenant(t_new, sizeof(t_new));
    long long id = tc_create_ok(t, "k1");
    snprintf(ids, sizeof(ids), "%lld", id);
    counts before = tc_count_rows(t);
    for (size_t i = 0; i < NBAD; i++) {
        const char *s = bad_utf8[i];
        char what[64];
        pbw w;

        w.n = 0;
        tc_pb_str(&w, 1, t_new);
        tc_pb_str(&w, 2, s);
        tc_pb_str(&w, 3, "UTC");
        snprintf(what, sizeof(what), "PutTenant.name #%zu", i);
        tc_expect_raw(what, GC_COMMANDS("PutTenant"), &w, TALLY_GRPC_INVALID_ARGUMENT, "name");

        w.n = 0;
        tc_pb_str(&w, 1, t);
        tc_pb_str(&w, 2, "c-new");
        tc_pb_str(&w, 3, s);
        snprintf(what, sizeof(what), "PutCategory.name #%zu", i);
        tc_expect_raw(what, GC_COMMANDS("PutCategory"), &w, TALLY_GRPC_INVALID_ARGUMENT, "name");
        snprintf(what, sizeof(what), "PutAgent.name #%zu", i);
        tc_expect_raw(what, GC_COMMANDS("PutAgent"), &w, TALLY_GRPC_INVALID_ARGUMENT, "name");
        /* Renaming an existing one is refused the same way. */
        w.n = 0;
        tc_pb_str(&w, 1, t);
        tc_pb_str(&w, 2, "c1");
        tc_pb_str(&w, 3, s);
        tc_expect_raw(what, GC_COMMANDS("PutCategory"), &w, TALLY_GRPC_INVALID_ARGUMENT, "name");

        for (int f = 5; f <= 6; f++) {
            w.n = 0;
            tc_pb_str(&w, 1, t);
            tc_pb_str(&w, 2, "k-utf8");
            tc_pb_str(&w, 3, "c1");
            tc_pb_int(&w, 4, 2);
            tc_pb_str(&w, 5, f == 5 ? s : "Fine title");
            tc_pb_str(&w, 6, f == 6 ? s : "Fine description");
            tc_pb_str(&w, 7, "cust-1");
            snprintf(what, sizeof(what), "CreateComplaint.%s #%zu",
                     f == 5 ? "title" : "description", i);
            tc_expect_raw(what, GC_COMMANDS("CreateComplaint"), &w, TALLY_GRPC_INVALID_ARGUMENT,
                          f == 5 ? "title" : "description");
        }

        w.n = 0;
        tc_pb_str(&w, 1, t);
        tc_pb_int(&w, 2, id);
        tc_pb_int(&w, 3, IN_PROGRESS);
        tc_pb_int(&w, 4, 1);
        tc_pb_str(&w, 5, s);
        tc_pb_str(&w, 6, "agent-7");
        snprintf(what, sizeof(what), "ChangeStatus.note #%zu", i);
        tc_expect_raw(what, GC_COMMANDS("ChangeStatus"), &w, TALLY_GRPC_INVALID_ARGUMENT, "note");
    }
    tc_assert_unchanged(&before, t, "requests with invalid UTF-8");
    tc_assert_nothing_for(t_new, "PutTenant with invalid UTF-8");
    const char *p[] = { t };
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM categories WHERE tenant_id = $1 AND category_id ="
                            " 'c1' AND name = 'Category'",
                            1, p),
                 1, "the refused rename changed the category");
    /* The idempotency key of the refused creations is still free. */
    tc_create_ok(t, "k-utf8");
}

/* types.proto: free text is "valid UTF-8 without NUL bytes"; an id is [A-Za-z0-9_.-]. A NUL
 * inside a protobuf string must be refused, not silently cut off. */
Test(commands, a_nul_byte_inside_a_string_is_refused)
{
    char t[32];
    tc_seeded(t, sizeof(t), "UTC");
    counts before = tc_count_rows(t);
    pbw w;
    w.n = 0;
    tc_pb_str(&w, 1, t);
    tc_pb_str(&w, 2, "k-nul");
    tc_pb_str(&w, 3, "c1");
    tc_pb_int(&w, 4, 2);
    tc_pb_bytes(&w, 5, "Visible\0hidden", 14);
    tc_pb_str(&w, 6, "d");
    tc_pb_str(&w, 7, "cust-1");
    tc_expect_raw("CreateComplaint.title with a NUL", GC_COMMANDS("CreateComplaint"), &w,
                  TALLY_GRPC_INVALID_ARGUMENT, "title");
    tc_assert_unchanged(&before, t, "a title with a NUL byte");

    char id_with_nul[48];
    int n = snprintf(id_with_nul, sizeof(id_with_nul), "%s", t);
    memcpy(id_with_nul + n, "\0evil", 5);
    w.n = 0;
    tc_pb_bytes(&w, 1, id_with_nul, (size_t)n + 5);
    tc_pb_str(&w, 2, "c-nul");
    tc_pb_str(&w, 3, "Name");
    tc_expect_raw("PutCategory.tenant_id with a NUL", GC_COMMANDS("PutCategory"), &w,
                  TALLY_GRPC_INVALID_ARGUMENT, "tenant_id");
    tc_assert_unchanged(&before, t, "a tenant id with a NUL byte");
}

Test(commands, undecodable_requests_are_invalid_argument)
{
    char t[32];
    tc_seeded(t, sizeof(t), "UTC");
    counts before = tc_count_rows(t);
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
    const char *methods[] = { GC_COMMANDS("PutTenant"), GC_COMMANDS("CreateComplaint"),
                              GC_COMMANDS("ChangeStatus"), GC_COMMANDS("GetComplaint") };
    for (size_t m = 0; m < 4; m++)
        for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
            gc_result r;
            cr_assert_eq(
                gc_call_raw(tc_cli, methods[m], junk[i].b, junk[i].n, true, NULL, DEADLINE_MS, &r),
                0);
            cr_assert_eq(r.code, TALLY_GRPC_INVALID_ARGUMENT, "%s junk %zu: %s \"%s\"", methods[m],
                         i, tally_grpc_code_name(r.code), r.details);
            gc_result_release(&r);
        }
    tc_assert_unchanged(&before, t, "undecodable requests");
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
    tc_seeded(t, sizeof(t), "UTC");
    const char *p[] = { t };
    for (size_t i = 0; i < NHOSTILE; i++) {
        const char *h = hostile_text[i];
        Tally__V1__PutTenantRequest pt = TALLY__V1__PUT_TENANT_REQUEST__INIT;
        pt.tenant_id = t;
        pt.name = (char *)h;
        pt.time_zone = "UTC";
        call_free(tc_call_ok(GC_COMMANDS("PutTenant"), &pt.base,
                             &tally__v1__put_tenant_reply__descriptor));
        Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        pc.tenant_id = t;
        pc.category_id = "c1";
        pc.name = (char *)h;
        call_free(tc_call_ok(GC_COMMANDS("PutCategory"), &pc.base,
                             &tally__v1__put_category_reply__descriptor));
        Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
        pa.tenant_id = t;
        pa.agent_id = "a1";
        pa.name = (char *)h;
        call_free(
            tc_call_ok(GC_COMMANDS("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor));
        PGresult *r = tc_sql("SELECT (SELECT name FROM tenants WHERE tenant_id = $1),"
                             " (SELECT name FROM categories WHERE tenant_id = $1 AND"
                             "  category_id = 'c1'),"
                             " (SELECT name FROM agents WHERE tenant_id = $1 AND agent_id = 'a1')",
                             1, p);
        for (int k = 0; k < 3; k++)
            cr_assert_str_eq(PQgetvalue(r, 0, k), h, "name %d of case %zu", k, i);
        PQclear(r);

        snprintf(key, sizeof(key), "k%zu", i);
        snprintf(desc, sizeof(desc), "%s\n%s\t%s", h, h, h);
        Tally__V1__CreateComplaintRequest req = tc_create_req(t, key);
        req.title = (char *)h;
        req.description = desc;
        Tally__V1__CreateComplaintReply *rep = tc_create_rep(&req);
        long long id = rep->complaint_id;
        call_free(rep);
        Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
        cr_assert_str_eq(g->complaint->title, h);
        cr_assert_str_eq(g->complaint->description, desc);
        call_free(g);

        Tally__V1__ChangeStatusRequest cs = tc_move_req(t, id, IN_PROGRESS, 1);
        cs.note = (char *)h;
        call_free(tc_call_ok(GC_COMMANDS("ChangeStatus"), &cs.base,
                             &tally__v1__change_status_reply__descriptor));
        Tally__V1__ListStatusHistoryReply *hist = tc_history_rep(t, id, 0, "");
        cr_assert_eq(hist->n_entries, 2);
        cr_assert_str_eq(hist->entries[1]->note, h);
        call_free(hist);

        ev e[4];
        int n = tc_load_events(t, "UTC", id, e, 4);
        cr_assert_eq(n, 2);
        Tally__V1__ComplaintCreated *b =
            tally__v1__complaint_created__unpack(NULL, e[0].len, e[0].payload);
        cr_assert(b);
        cr_assert_str_eq(b->title, h, "the event carries the title byte-exact");
        call_free(b);
        tc_free_events(e, n);
    }
    /* The tables are all still there and hold what was written. */
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1", 1, p),
                 (long long)NHOSTILE);
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM status_history WHERE tenant_id = $1", 1, p),
                 2 * (long long)NHOSTILE);
}

static const char *const hostile_ids[] = {
    "'; DROP TABLE complaints; --", "a'b", "a\\b", "$1", "%s%n", "a b", "t1;--", "\"x\"", "a/b",
};
#define NHOSTILE_IDS (sizeof(hostile_ids) / sizeof(hostile_ids[0]))

Test(commands, sql_metacharacters_in_ids_are_refused_and_write_nothing)
{
    char t[32];
    tc_seeded(t, sizeof(t), "UTC");
    long long id = tc_create_ok(t, "k1");
    counts before = tc_count_rows(t);
    for (size_t i = 0; i < NHOSTILE_IDS; i++) {
        char *h = (char *)hostile_ids[i];
        char what[96];
#define REFUSED(method, msg, field)                                                            \
    do {                                                                                       \
        snprintf(what, sizeof(what), "%s.%s = %s", method, field, h);                          \
        tc_expect(what, GC_COMMANDS(method), &(msg).base, TALLY_GRPC_INVALID_ARGUMENT, field); \
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

        Tally__V1__CreateComplaintRequest cc = tc_create_req(h, "k-new");
        REFUSED("CreateComplaint", cc, "tenant_id");
        cc = tc_create_req(t, h);
        REFUSED("CreateComplaint", cc, "idempotency_key");
        cc = tc_create_req(t, "k-new");
        cc.category_id = h;
        REFUSED("CreateComplaint", cc, "category_id");
        cc = tc_create_req(t, "k-new");
        cc.customer_id = h;
        REFUSED("CreateComplaint", cc, "customer_id");

        Tally__V1__AssignComplaintRequest as = tc_assign_req(h, id, "a1", 1);
        REFUSED("AssignComplaint", as, "tenant_id");
        as = tc_assign_req(t, id, h, 1);
        REFUSED("AssignComplaint", as, "agent_id");

        Tally__V1__ChangeStatusRequest cs = tc_move_req(h, id, IN_PROGRESS, 1);
        REFUSED("ChangeStatus", cs, "tenant_id");
        cs = tc_move_req(t, id, IN_PROGRESS, 1);
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
        tc_assert_nothing_for(h, "requests with a hostile tenant id");
    }
    tc_assert_unchanged(&before, t, "requests with hostile ids");
    Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
    cr_assert_eq(g->complaint->version, 1);
    cr_assert_str_eq(g->complaint->assigned_agent_id, "");
    call_free(g);
}

/* Enum numbers no version of the contract defines, sent as raw varints. */
Test(commands, unknown_enum_numbers_are_refused_and_write_nothing)
{
    char t[32];
    tc_seeded(t, sizeof(t), "UTC");
    long long id = tc_create_ok(t, "k1");
    counts before = tc_count_rows(t);
    const int64_t bad[] = { 0, 5, 99, 1000000, -1, INT32_MAX };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char what[64];
        pbw w;
        w.n = 0;
        tc_pb_str(&w, 1, t);
        tc_pb_str(&w, 2, "k-enum");
        tc_pb_str(&w, 3, "c1");
        tc_pb_int(&w, 4, bad[i]);
        tc_pb_str(&w, 5, "Title");
        tc_pb_str(&w, 7, "cust-1");
        snprintf(what, sizeof(what), "priority %lld", (long long)bad[i]);
        tc_expect_raw(what, GC_COMMANDS("CreateComplaint"), &w, TALLY_GRPC_INVALID_ARGUMENT,
                      "priority");
        w.n = 0;
        tc_pb_str(&w, 1, t);
        tc_pb_int(&w, 2, id);
        tc_pb_int(&w, 3, bad[i]);
        tc_pb_int(&w, 4, 1);
        tc_pb_str(&w, 6, "agent-7");
        snprintf(what, sizeof(what), "status %lld", (long long)bad[i]);
        tc_expect_raw(what, GC_COMMANDS("ChangeStatus"), &w, TALLY_GRPC_INVALID_ARGUMENT, "status");
    }
    tc_assert_unchanged(&before, t, "unknown enum numbers");
}
