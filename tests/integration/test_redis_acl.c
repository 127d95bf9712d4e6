/*
 * The Redis ACL users of deploy/redis-users.acl, one per service, in a whole system
 * (sys_options.redis_acl: command-svc as tally-command, the projector as tally-projector,
 * query-svc as tally-query; the default user stays for the test's own reads).
 *
 * - each_service_works_under_its_acl_user: live commands and an imported history go through
 *   the relay, the projector and query-svc; the dashboard counts them; `tally verify` finds the
 *   read model exact; and Redis's ACL LOG holds no denial of any service's command or key.
 * - a_service_without_its_rights_fails_clearly: a projector and a command-svc given
 *   tally-query's read-only user apply and publish nothing, and say NOPERM (the projector on
 *   /readyz too).
 */
#include "calls.h"
#include "proc.h"
#include "system.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/dashboard.pb-c.h"
#include "tclock.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sys_system S;

static void setup(void)
{
    sys_options o = { .redis_acl = true };
    sys_start(&S, &o);
}

static void teardown(void)
{
    sys_stop(&S);
}

TestSuite(acl, .init = setup, .fini = teardown, .timeout = 180);

/* The entries of ACL LOG, printed; their number. */
static size_t acl_denials(void)
{
    redisContext *c = sys_redis_connect(&S);
    redisReply *r = rsv_must(c, "ACL LOG");
    size_t n = r->elements;
    for (size_t i = 0; i < n; i++) {
        redisReply *e = r->element[i];
        char line[512] = "";
        for (size_t k = 0; k + 1 < e->elements; k += 2)
            if (e->element[k + 1]->type == REDIS_REPLY_STRING)
                snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s=%s ",
                         e->element[k]->str, e->element[k + 1]->str);
        cr_log_error("ACL LOG: %s", line);
    }
    freeReplyObject(r);
    redisFree(c);
    return n;
}

static void put_tenant(const char *tenant)
{
    Tally__V1__PutTenantRequest t = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    t.tenant_id = (char *)tenant;
    t.name = "Acl";
    t.time_zone = "Europe/Berlin";
    call_free(call_ok(S.cmd, GC_COMMANDS("PutTenant"), &t.base,
                      &tally__v1__put_tenant_reply__descriptor, 5000));
    Tally__V1__PutCategoryRequest c = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    c.tenant_id = (char *)tenant;
    c.category_id = "billing";
    c.name = "Billing";
    call_free(call_ok(S.cmd, GC_COMMANDS("PutCategory"), &c.base,
                      &tally__v1__put_category_reply__descriptor, 5000));
}

Test(acl, each_service_works_under_its_acl_user)
{
    put_tenant("acl");
    int64_t ids[5];
    for (int i = 0; i < 5; i++) {
        char key[32];
        snprintf(key, sizeof(key), "acl-%d", i);
        call_create(S.cmd, "acl", key, "billing", TALLY__V1__PRIORITY__PRIORITY_HIGH, &ids[i]);
    }
    call_move(S.cmd, "acl", ids[0], 1, TALLY__V1__STATUS__STATUS_RESOLVED, "alice");
    sys_import_history(&S, "acl-imp:Asia/Tokyo", 300, 20);
    sys_wait_idle(&S, 60000);

    Tally__V1__GetOverviewRequest q = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    q.tenant_id = "acl";
    Tally__V1__GetOverviewReply *o = call_ok(S.q, GC_DASHBOARD("GetOverview"), &q.base,
                                             &tally__v1__get_overview_reply__descriptor, 5000);
    cr_expect_eq(o->freshness->events_applied, 8, "2 reference events, 5 creates, 1 move");
    cr_expect_eq(o->overview->backlog, 4);
    cr_expect_eq(o->overview->resolved_today, 1);
    call_free(o);

    char *out = NULL, port[16];
    snprintf(port, sizeof(port), "%d", S.redis.port);
    const char *argv[] = { TALLY_BIN_DIR "/tally", "verify", "--pg-dsn", S.db.dsn,
                           "--redis-url",          NULL,     NULL };
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%s/0", port);
    argv[5] = url;
    int rc = proc_run_output(&out, argv, 60000);
    cr_expect_eq(rc, 0, "tally verify under the ACL users: %s", out);
    free(out);
    cr_expect_eq(acl_denials(), 0, "no service was refused a command or a key (ACL LOG above)");
}

Test(acl, a_service_without_its_rights_fails_clearly)
{
    put_tenant("acl");
    int64_t id;
    /* The real projector applies this; then a projector and a command-svc that are given the
       read-only user of query-svc. */
    call_create(S.cmd, "acl", "acl-0", "billing", TALLY__V1__PRIORITY__PRIORITY_LOW, &id);
    sys_wait_idle(&S, 30000);
    sys_projector_stop(&S);
    sys_command_stop(&S);
    redisContext *rc = sys_redis_connect(&S);
    redisReply *r = rsv_must(rc, "XLEN tally:events:0");
    long long before = r->integer;
    freeReplyObject(r);
    char url[160];
    snprintf(url, sizeof(url), "TALLY_REDIS_URL=redis://tally-query:pw-tally-query@127.0.0.1:%d/0",
             S.redis.port);
    proc p;
    const char *penv[] = { url, NULL };
    cr_assert_eq(proc_start_projector(&p, S.redis.port, penv), 0, "%s", p.log);
    char body[4096] = "";
    int code = 0;
    for (int64_t until = now_mono_ms() + 15000; now_mono_ms() < until; tclock_sleep_ms(100)) {
        code = proc_http_get(p.http_port, "/readyz", body, sizeof(body));
        if (code == 503 && strstr(body, "NOPERM"))
            break;
    }
    cr_expect_eq(code, 503, "the projector without its rights is not ready: %s", body);
    cr_expect(strstr(body, "NOPERM"), "its /readyz says why: %s", body);
    cr_expect_eq(proc_stop(&p, SIGTERM, 20000), 0);
    proc_release(&p);

    const char *cenv[] = { url, S.db.pg_var, "TALLY_GRPC_LISTEN=127.0.0.1:0",
                           "TALLY_HTTP_LISTEN=127.0.0.1:0", NULL };
    cr_assert_eq(proc_start(&p, COMMAND_SVC_PATH, cenv), 0, "%s", p.log);
    gc_client *c = gc_new_port(p.grpc_port);
    call_create(c, "acl", "acl-1", "billing", TALLY__V1__PRIORITY__PRIORITY_LOW, &id);
    bool said = false;
    for (int64_t until = now_mono_ms() + 15000; now_mono_ms() < until && !said;
         tclock_sleep_ms(100))
        said = proc_log_has(&p, "NOPERM");
    cr_expect(said, "the relay without its rights says NOPERM in its log:\n%s", p.log);
    r = rsv_must(rc, "XLEN tally:events:0");
    cr_expect_eq(r->integer, before,
                 "nothing published by the relay without its rights: %lld, "
                 "was %lld",
                 r->integer, before);
    freeReplyObject(r);
    redisFree(rc);
    gc_free(c);
    cr_expect_eq(proc_stop(&p, SIGTERM, 20000), 0);
    proc_release(&p);
}
