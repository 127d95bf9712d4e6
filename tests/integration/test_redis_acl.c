/*
 * The Redis ACL users of deploy/redis-users.acl, one per service, in a whole system
 * (sys_options.redis_acl: command-svc as tally-command, the projector as tally-projector,
 * query-svc as tally-query; the default user stays for the test's own reads).
 *
 * - each_service_works_under_its_acl_user: live commands and an imported history go through
 *   the relay, the projector and query-svc; the dashboard counts them; `tally verify` finds the
 *   read model exact; and Redis's ACL LOG holds no denial of any service's command or key.
 *   Then ACL DRYRUN: what each user must not do (load or flush functions but the projector,
 *   write as query-svc, touch a tenant key as the relay, anything @dangerous) is refused.
 * - a_service_without_its_rights_fails_clearly: a projector that may read the streams but not
 *   write the read model parks nothing and acknowledges nothing (NOPERM is systemic) and says
 *   NOPERM on /readyz, and the real projector then applies what it left; a projector and a
 *   command-svc given tally-query's read-only user apply and publish nothing, and say NOPERM.
 */
#include "calls.h"
#include "proc.h"
#include "stream.h"
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
    /* Entries another consumer left pending are claimed after 1 s, not 30. */
    static const char *const penv[] = { "TALLY_PROJECTOR_CLAIM_IDLE_MS=1000", NULL };
    sys_options o = { .redis_acl = true, .projector_env = penv };
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

    /* And what each must not do: nobody loads or flushes functions but the projector (a loaded
       function runs with the caller's rights: tally-query's would write as the projector),
       query-svc writes nothing, the relay touches no tenant key, nobody is @dangerous. */
    static const char *const denied[][6] = {
        { "tally-query", "FUNCTION", "LOAD",
          "#!lua name=tally\nredis.register_function('f', "
          "function() return 1 end)" },
        { "tally-query", "FUNCTION", "FLUSH" },
        { "tally-query", "SCRIPT", "FLUSH" },
        { "tally-query", "SET", "{t:acl}:x", "1" },
        { "tally-query", "EVAL", "return 1", "1", "{t:acl}:x" },
        { "tally-command", "FUNCTION", "LOAD",
          "#!lua name=tally\nredis.register_function('f', "
          "function() return 1 end)" },
        { "tally-command", "FUNCTION", "DELETE", "tally" },
        { "tally-command", "SET", "{t:acl}:x", "1" },
        { "tally-command", "FLUSHALL" },
        { "tally-projector", "FUNCTION", "FLUSH" },
        { "tally-projector", "FLUSHALL" },
        { "tally-projector", "CONFIG", "SET", "maxmemory", "1" },
        { "tally-projector", "KEYS", "*" },
    };
    redisContext *c = sys_redis_connect(&S);
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        const char *dry[8] = { "ACL", "DRYRUN" };
        int argc = 2;
        for (int k = 0; k < 6 && denied[i][k]; k++)
            dry[argc++] = denied[i][k];
        redisReply *r = redisCommandArgv(c, argc, dry, NULL);
        cr_assert(r, "ACL DRYRUN: %s", c->errstr);
        bool allowed = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
        cr_expect_not(allowed, "%s may run %s %s", denied[i][0], denied[i][1],
                      denied[i][2] ? denied[i][2] : "");
        freeReplyObject(r);
    }
    redisFree(c);
}

/* Waits up to 15 s for /readyz of the HTTP port to be 503 and name NOPERM; its body. */
static bool not_ready_noperm(int http_port, char *body, size_t len)
{
    for (int64_t until = now_mono_ms() + 15000; now_mono_ms() < until; tclock_sleep_ms(100))
        if (proc_http_get(http_port, "/readyz", body, len) == 503 && strstr(body, "NOPERM"))
            return true;
    return false;
}

/* A number Redis answers (rsv_must of fmt). */
static long long redis_int(const char *fmt)
{
    redisContext *c = sys_redis_connect(&S);
    redisReply *r = rsv_must(c, fmt);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer
                  : r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                          r->element[0]->type == REDIS_REPLY_INTEGER
                      ? r->element[0]->integer
                      : -1;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

Test(acl, a_service_without_its_rights_fails_clearly)
{
    put_tenant("acl");
    int64_t id;
    char body[4096] = "";
    /* The real projector applies this; then a projector and a command-svc that are given the
       read-only user of query-svc. */
    call_create(S.cmd, "acl", "acl-0", "billing", TALLY__V1__PRIORITY__PRIORITY_LOW, &id);
    sys_wait_idle(&S, 30000);
    sys_projector_stop(&S);

    /* A projector that may read and ack the streams but not write a tenant's keys: the entry
       it cannot apply is a NOPERM, systemic: neither parked nor acknowledged, and /readyz says
       so. The real projector, back, applies it: nothing lost. */
    redisContext *ac = sys_redis_connect(&S);
    freeReplyObject(rsv_must(ac, "ACL SETUSER narrow on >pw-narrow resetchannels ~tally:* -@all "
                                 "+@connection +@read +@write +@stream +@transaction -@dangerous "
                                 "-function +function|load +fcall +eval +info +config|get +time"));
    redisFree(ac);
    call_create(S.cmd, "acl", "acl-narrow", "billing", TALLY__V1__PRIORITY__PRIORITY_LOW, &id);
    char narrow[160];
    snprintf(narrow, sizeof(narrow), "TALLY_REDIS_URL=redis://narrow:pw-narrow@127.0.0.1:%d/0",
             S.redis.port);
    proc np;
    const char *nenv[] = { narrow, NULL };
    cr_assert_eq(proc_start_projector(&np, S.redis.port, nenv), 0, "%s", np.log);
    cr_expect(not_ready_noperm(np.http_port, body, sizeof(body)),
              "a projector that may not write the read model is not ready, and says NOPERM: %s",
              body);
    cr_expect_eq(proc_stop(&np, SIGTERM, 20000), 0);
    proc_release(&np);
    cr_expect_eq(redis_int("EXISTS tally:dead:0"), 0, "nothing parked for a NOPERM");
    cr_expect_gt(redis_int("XPENDING tally:events:0 " STREAM_GROUP), 0,
                 "the entry it could not apply is still pending, not acknowledged");
    sys_projector_start(&S);
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
    cr_expect(not_ready_noperm(p.http_port, body, sizeof(body)),
              "the projector with a read-only user is not ready, and says NOPERM: %s", body);
    cr_expect_eq(proc_stop(&p, SIGTERM, 20000), 0);
    proc_release(&p);

    const char *cenv[] = { url, S.db.pg_var, "TALLY_GRPC_LISTEN=127.0.0.1:0",
                           "TALLY_HTTP_LISTEN=127.0.0.1:0", NULL };
    cr_assert_eq(proc_start(&p, COMMAND_SVC_PATH, cenv), 0, "%s", p.log);
    gc_client *c = gc_new_port(p.grpc_port);
    call_create(c, "acl", "acl-1", "billing", TALLY__V1__PRIORITY__PRIORITY_LOW, &id);
    cr_expect(proc_log_wait(&p, "NOPERM", 15000),
              "the relay without its rights says NOPERM in its log:\n%s", p.log);
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
