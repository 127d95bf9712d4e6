/* PutTenant, PutCategory and PutAgent: created, unchanged, changed; refusals name the field. */
#include "cmd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(commands, put_tenant_created_then_unchanged_then_changed)
{
    char t[32];
    ev e[8];
    fx_tenant(t, sizeof(t));
    Tally__V1__PutTenantRequest req = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    req.tenant_id = t;
    req.name = "Acme";
    req.time_zone = "Europe/Berlin";
    const ProtobufCMessageDescriptor *d = &tally__v1__put_tenant_reply__descriptor;

    put_flags f = tc_put(GC_COMMANDS("PutTenant"), &req.base, d);
    cr_assert(f.created, "first put: created");
    const char *p[] = { t };
    PGresult *r = tc_sql("SELECT name, time_zone FROM tenants WHERE tenant_id = $1", 1, p);
    cr_assert_eq(PQntuples(r), 1);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "Acme");
    cr_assert_str_eq(PQgetvalue(r, 0, 1), "Europe/Berlin");
    PQclear(r);
    cr_assert_eq(tc_load_events(t, "Europe/Berlin", 0, e, 8), 1, "creation writes one TenantPut");

    f = tc_put(GC_COMMANDS("PutTenant"), &req.base, d);
    cr_assert_not(f.created, "identical put: created");
    cr_assert_not(f.changed, "identical put: changed");
    tc_free_events(e, 1);
    cr_assert_eq(tc_load_events(t, "Europe/Berlin", 0, e, 8), 1,
                 "an identical put writes no event");
    tc_free_events(e, 1);

    req.name = "Acme Ltd";
    f = tc_put(GC_COMMANDS("PutTenant"), &req.base, d);
    cr_assert_not(f.created);
    cr_assert(f.changed, "renamed: changed");
    req.time_zone = "Pacific/Auckland";
    f = tc_put(GC_COMMANDS("PutTenant"), &req.base, d);
    cr_assert_not(f.created);
    cr_assert(f.changed, "new time zone: changed");

    int n = tc_load_events(t, "Pacific/Auckland", 0, e, 8);
    cr_assert_eq(n, 3, "one TenantPut per change, got %d", n);
    const char *names[] = { "Acme", "Acme Ltd", "Acme Ltd" };
    const char *zones[] = { "Europe/Berlin", "Europe/Berlin", "Pacific/Auckland" };
    for (int i = 0; i < n; i++) {
        cr_assert_eq(e[i].type, TALLY__V1__EVENT_TYPE__EVENT_TYPE_TENANT_PUT);
        cr_assert_eq(e[i].version, 0);
        cr_assert_not(e[i].imported);
        Tally__V1__TenantPut *b = tally__v1__tenant_put__unpack(NULL, e[i].len, e[i].payload);
        cr_assert(b, "event %d: payload is not a TenantPut", i);
        cr_assert_str_eq(b->name, names[i]);
        cr_assert_str_eq(b->time_zone, zones[i]);
        call_free(b);
    }
    /* The last event's day is in the zone it set. */
    cr_assert_str_eq(e[2].local_day, e[2].zone_day);
    tc_free_events(e, n);
}

/* PutTenantReply.changed: "True when the call created the tenant or changed ..." (same wording
 * for PutCategoryReply and PutAgentReply). */
Test(commands, a_creating_put_reports_changed)
{
    char t[32];
    fx_tenant(t, sizeof(t));
    Tally__V1__PutTenantRequest pt = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    pt.tenant_id = t;
    pt.name = "New";
    pt.time_zone = "UTC";
    bool tenant_changed =
        tc_put(GC_COMMANDS("PutTenant"), &pt.base, &tally__v1__put_tenant_reply__descriptor)
            .changed;
    Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    pc.tenant_id = t;
    pc.category_id = "new-cat";
    pc.name = "New";
    bool category_changed =
        tc_put(GC_COMMANDS("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor)
            .changed;
    Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
    pa.tenant_id = t;
    pa.agent_id = "new-agent";
    pa.name = "New";
    bool agent_changed =
        tc_put(GC_COMMANDS("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor).changed;
    cr_assert(tenant_changed && category_changed && agent_changed,
              "a put that creates must say changed=true (an event was written): tenant %d, "
              "category %d, agent %d",
              tenant_changed, category_changed, agent_changed);
}

Test(commands, put_category_and_put_agent_upsert_and_emit_events)
{
    char t[32];
    ev e[16];
    tc_seeded(t, sizeof(t), "UTC");
    int before = tc_load_events(t, "UTC", 0, e, 16);
    tc_free_events(e, before);
    cr_assert_eq(before, 5, "seeding writes 1 TenantPut, 2 CategoryPut, 2 AgentPut");

    Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    pc.tenant_id = t;
    pc.category_id = "billing";
    pc.name = "Billing";
    const ProtobufCMessageDescriptor *cd = &tally__v1__put_category_reply__descriptor;
    put_flags f = tc_put(GC_COMMANDS("PutCategory"), &pc.base, cd);
    cr_assert(f.created);
    f = tc_put(GC_COMMANDS("PutCategory"), &pc.base, cd);
    cr_assert_not(f.created);
    cr_assert_not(f.changed);
    pc.name = "Billing & Payments";
    f = tc_put(GC_COMMANDS("PutCategory"), &pc.base, cd);
    cr_assert_not(f.created);
    cr_assert(f.changed);

    Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
    pa.tenant_id = t;
    pa.agent_id = "ann";
    pa.name = "Ann";
    const ProtobufCMessageDescriptor *ad = &tally__v1__put_agent_reply__descriptor;
    f = tc_put(GC_COMMANDS("PutAgent"), &pa.base, ad);
    cr_assert(f.created);
    f = tc_put(GC_COMMANDS("PutAgent"), &pa.base, ad);
    cr_assert_not(f.created);
    cr_assert_not(f.changed);
    pa.name = "Ann Smith";
    f = tc_put(GC_COMMANDS("PutAgent"), &pa.base, ad);
    cr_assert_not(f.created);
    cr_assert(f.changed);

    /* The same id in another tenant is another category. */
    char t2[32];
    tc_seeded(t2, sizeof(t2), "UTC");
    pc.tenant_id = t2;
    cr_assert(tc_put(GC_COMMANDS("PutCategory"), &pc.base, cd).created,
              "category ids are per tenant");

    int n = tc_load_events(t, "UTC", 0, e, 16);
    cr_assert_eq(n, 9, "4 events after seeding (2 creations, 2 renames), got %d", n - 5);
    const int types[] = { 11, 11, 12, 12 };
    const char *names[] = { "Billing", "Billing & Payments", "Ann", "Ann Smith" };
    for (int i = 0; i < 4; i++) {
        ev *x = &e[5 + i];
        cr_assert_eq(x->type, types[i]);
        cr_assert_eq(x->complaint_id, 0);
        cr_assert_str_eq(x->local_day, x->zone_day);
        if (types[i] == 11) {
            Tally__V1__CategoryPut *b = tally__v1__category_put__unpack(NULL, x->len, x->payload);
            cr_assert(b);
            cr_assert_str_eq(b->category_id, "billing");
            cr_assert_str_eq(b->name, names[i]);
            call_free(b);
        } else {
            Tally__V1__AgentPut *b = tally__v1__agent_put__unpack(NULL, x->len, x->payload);
            cr_assert(b);
            cr_assert_str_eq(b->agent_id, "ann");
            cr_assert_str_eq(b->name, names[i]);
            call_free(b);
        }
    }
    tc_free_events(e, n);
    const char *p[] = { t };
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM categories WHERE tenant_id = $1 AND category_id ="
                            " 'billing' AND name = 'Billing & Payments'",
                            1, p),
                 1);
}

Test(commands, put_validation_errors_name_the_field_and_write_nothing)
{
    char t[32], t_new[32], long_id[80], long_name[256], long_tz[80];
    tc_seeded(t, sizeof(t), "UTC");
    fx_tenant(t_new, sizeof(t_new));
    tc_repeat(long_id, 'x', 65);
    tc_repeat(long_name, 'n', 201);
    tc_repeat(long_tz, 'Z', 65);
    counts before = tc_count_rows(t);

    struct {
        const char *tenant, *name, *tz;
        int code;
        const char *field;
    } tenants[] = {
        { "", "N", "UTC", TALLY_GRPC_INVALID_ARGUMENT, "tenant_id" },
        { long_id, "N", "UTC", TALLY_GRPC_INVALID_ARGUMENT, "tenant_id" },
        { "a b", "N", "UTC", TALLY_GRPC_INVALID_ARGUMENT, "tenant_id" },
        { t_new, "", "UTC", TALLY_GRPC_INVALID_ARGUMENT, "name" },
        { t_new, long_name, "UTC", TALLY_GRPC_INVALID_ARGUMENT, "name" },
        { t_new, "N", "", TALLY_GRPC_INVALID_ARGUMENT, "time_zone" },
        { t_new, "N", long_tz, TALLY_GRPC_INVALID_ARGUMENT, "time_zone" },
        { t_new, "N", "Europe/Ber lin", TALLY_GRPC_INVALID_ARGUMENT, "time_zone" },
        { t_new, "N", "Mars/Olympus_Mons", TALLY_GRPC_INVALID_ARGUMENT, "time_zone" },
        { t, "Test tenant", "Mars/Olympus_Mons", TALLY_GRPC_INVALID_ARGUMENT, "time_zone" },
    };
    for (size_t i = 0; i < sizeof(tenants) / sizeof(tenants[0]); i++) {
        Tally__V1__PutTenantRequest req = TALLY__V1__PUT_TENANT_REQUEST__INIT;
        req.tenant_id = (char *)tenants[i].tenant;
        req.name = (char *)tenants[i].name;
        req.time_zone = (char *)tenants[i].tz;
        char what[64];
        snprintf(what, sizeof(what), "PutTenant case %zu", i);
        tc_expect(what, GC_COMMANDS("PutTenant"), &req.base, tenants[i].code, tenants[i].field);
    }
    const char *p[] = { t };
    PGresult *r = tc_sql("SELECT time_zone FROM tenants WHERE tenant_id = $1", 1, p);
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "UTC", "a refused time zone must not be stored");
    PQclear(r);

    struct {
        const char *tenant, *id, *name;
        int code;
        const char *field;
    } refs[] = {
        { "", "x", "N", TALLY_GRPC_INVALID_ARGUMENT, "tenant_id" },
        { long_id, "x", "N", TALLY_GRPC_INVALID_ARGUMENT, "tenant_id" },
        { t, "", "N", TALLY_GRPC_INVALID_ARGUMENT, NULL /* category_id or agent_id */ },
        { t, long_id, "N", TALLY_GRPC_INVALID_ARGUMENT, NULL },
        { t, "x/y", "N", TALLY_GRPC_INVALID_ARGUMENT, NULL },
        { t, "x", "", TALLY_GRPC_INVALID_ARGUMENT, "name" },
        { t, "x", long_name, TALLY_GRPC_INVALID_ARGUMENT, "name" },
        { t_new, "x", "N", TALLY_GRPC_NOT_FOUND, "tenant_id" },
    };
    for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
        char what[64];
        Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        pc.tenant_id = (char *)refs[i].tenant;
        pc.category_id = (char *)refs[i].id;
        pc.name = (char *)refs[i].name;
        snprintf(what, sizeof(what), "PutCategory case %zu", i);
        tc_expect(what, GC_COMMANDS("PutCategory"), &pc.base, refs[i].code,
                  refs[i].field ? refs[i].field : "category_id");
        Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
        pa.tenant_id = (char *)refs[i].tenant;
        pa.agent_id = (char *)refs[i].id;
        pa.name = (char *)refs[i].name;
        snprintf(what, sizeof(what), "PutAgent case %zu", i);
        tc_expect(what, GC_COMMANDS("PutAgent"), &pa.base, refs[i].code,
                  refs[i].field ? refs[i].field : "agent_id");
    }
    tc_assert_unchanged(&before, t, "refused puts");
    tc_assert_nothing_for(t_new, "refused puts");
}
