/* CreateComplaint and GetComplaint: every field, refusals, unknown references. */
#include "cmd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(commands, create_complaint_replies_and_get_complaint_returns_every_field)
{
    char t[32];
    tc_seeded(t, sizeof(t), "America/New_York");
    Tally__V1__CreateComplaintRequest req =
        tc_create_req(t, "9b2f0c1e-1f0a-4c8e-9a55-0d9e1f2a3b4c");
    req.category_id = "c2";
    req.priority = TALLY__V1__PRIORITY__PRIORITY_URGENT;
    req.description = "";
    Tally__V1__CreateComplaintReply *rep = tc_create_rep(&req);
    cr_assert_geq(rep->complaint_id, 1);
    cr_assert_eq(rep->version, 1);
    cr_assert_gt(rep->created_at_ms, 1600000000000LL);
    long long id = rep->complaint_id, created = rep->created_at_ms;
    call_free(rep);

    Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
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
    call_free(g);

    /* A second complaint gets another id; limits at their edges are accepted. */
    char title[256], desc[4096];
    tc_repeat(title, 't', 200);
    tc_repeat(desc, 'd', 4000);
    req = tc_create_req(t, "second");
    req.title = title;
    req.description = desc;
    rep = tc_create_rep(&req);
    cr_assert_neq(rep->complaint_id, id);
    long long id2 = rep->complaint_id;
    call_free(rep);
    g = tc_get_rep(t, id2);
    cr_assert_eq(strlen(g->complaint->title), 200);
    cr_assert_eq(strlen(g->complaint->description), 4000);
    call_free(g);

    /* The creation's audit row and event. */
    char ids[24];
    snprintf(ids, sizeof(ids), "%lld", id);
    const char *p[] = { t, ids };
    cr_assert_eq(
        tc_sql_int("SELECT count(*) FROM status_history WHERE tenant_id = $1 AND"
                   " complaint_id = $2 AND version = 1 AND from_status = 0 AND to_status = 1",
                   2, p),
        1);
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND complaint_id = $2"
                            " AND version = 1 AND type = 1",
                            2, p),
                 1);
}

Test(commands, create_complaint_validation_errors_name_the_field_and_write_nothing)
{
    char t[32], long_id[80], title201[256], desc4001[4100], euro[256];
    tc_seeded(t, sizeof(t), "UTC");
    tc_repeat(long_id, 'k', 65);
    tc_repeat(title201, 't', 201);
    tc_repeat(desc4001, 'd', 4001);
    /* 67 euro signs: 67 characters, 201 bytes. */
    euro[0] = '\0';
    for (int i = 0; i < 67; i++)
        strcat(euro, "\xe2\x82\xac");
    counts before = tc_count_rows(t);

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
        Tally__V1__CreateComplaintRequest req = tc_create_req(t, "k-valid");
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
        tc_expect(what, GC_COMMANDS("CreateComplaint"), &req.base, TALLY_GRPC_INVALID_ARGUMENT,
                  cases[i].field);
    }
    tc_assert_unchanged(&before, t, "refused CreateComplaint requests");
    /* The key of the refused requests is still free. */
    tc_create_ok(t, "k-valid");
}

Test(commands, create_complaint_unknown_references_are_not_found)
{
    char t[32], other[32], ghost[32];
    tc_seeded(t, sizeof(t), "UTC");
    fx_tenant(other, sizeof(other));
    fx_seed_tenant(tc_cli, other, "UTC");
    Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    pc.tenant_id = other;
    pc.category_id = "only-other";
    pc.name = "Theirs";
    call_free(tc_call_ok(GC_COMMANDS("PutCategory"), &pc.base,
                         &tally__v1__put_category_reply__descriptor));
    fx_tenant(ghost, sizeof(ghost));
    counts before = tc_count_rows(t);

    Tally__V1__CreateComplaintRequest req = tc_create_req(ghost, "k1");
    tc_expect("unknown tenant", GC_COMMANDS("CreateComplaint"), &req.base, TALLY_GRPC_NOT_FOUND,
              "tenant_id");
    req = tc_create_req(t, "k1");
    req.category_id = "nope";
    tc_expect("unknown category", GC_COMMANDS("CreateComplaint"), &req.base, TALLY_GRPC_NOT_FOUND,
              "category_id");
    req.category_id = "only-other";
    tc_expect("category of another tenant", GC_COMMANDS("CreateComplaint"), &req.base,
              TALLY_GRPC_NOT_FOUND, "category_id");
    tc_assert_unchanged(&before, t, "CreateComplaint with unknown references");
    tc_assert_nothing_for(ghost, "CreateComplaint for an unknown tenant");
    /* The key stays usable once the category exists. */
    req.category_id = "c2";
    Tally__V1__CreateComplaintReply *rep = tc_create_rep(&req);
    call_free(rep);
}
