#include "fixture.h"

#include "tally/v1/commands.pb-c.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void fx_need_stack(void)
{
    cr_assert(getenv("TALLY_PG_DSN") && getenv("TALLY_REDIS_URL"),
              "TALLY_PG_DSN and TALLY_REDIS_URL are not set: run the tests with scripts/test");
}

void fx_migrate(void)
{
    proc p;
    fx_need_stack();
    int rc = proc_run_args(&p, COMMAND_SVC_PATH, "migrate", NULL, 30000);
    cr_assert_eq(rc, 0, "command-svc migrate exited %d:\n%s", rc, p.log ? p.log : "");
    proc_release(&p);
}

void fx_start_command_svc(proc *p, const char *const *env)
{
    fx_migrate();
    cr_assert_eq(proc_start(p, COMMAND_SVC_PATH, env), 0, "command-svc did not start:\n%s",
                 p->log ? p->log : "");
}

const char *fx_tenant(char *buf, size_t len)
{
    static int n;
    snprintf(buf, len, "t%dx%d", (int)getpid(), ++n);
    return buf;
}

static void ok(gc_client *c, const char *method, const ProtobufCMessage *msg)
{
    gc_result r;
    cr_assert_eq(gc_call(c, method, msg, NULL, 10000, &r), 0);
    cr_assert_eq(r.code, 0, "%s: %d %s", method, r.code, r.details);
    gc_result_release(&r);
}

void fx_seed_tenant(gc_client *c, const char *tenant, const char *tz)
{
    Tally__V1__PutTenantRequest t = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    t.tenant_id = (char *)tenant;
    t.name = "Test tenant";
    t.time_zone = (char *)tz;
    ok(c, GC_COMMANDS("PutTenant"), &t.base);
    const char *ids[] = { "c1", "c2" };
    for (int i = 0; i < 2; i++) {
        Tally__V1__PutCategoryRequest cat = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        Tally__V1__PutAgentRequest ag = TALLY__V1__PUT_AGENT_REQUEST__INIT;
        char agent[8];
        snprintf(agent, sizeof(agent), "a%d", i + 1);
        cat.tenant_id = (char *)tenant;
        cat.category_id = (char *)ids[i];
        cat.name = "Category";
        ok(c, GC_COMMANDS("PutCategory"), &cat.base);
        ag.tenant_id = (char *)tenant;
        ag.agent_id = agent;
        ag.name = "Agent";
        ok(c, GC_COMMANDS("PutAgent"), &ag.base);
    }
}
