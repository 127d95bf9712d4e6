/*
 * Bearer tokens end to end (common/auth, the runtime's checks in common/srv), against a real
 * system whose command-svc and query-svc verify HS256 tokens with the test stack's secret
 * (TALLY_AUTH_JWT_SECRET_FILE, from scripts/test).
 *
 * - the_matrix: every RPC of both services x (no token, expired, not yet valid, bad signature,
 *   wrong algorithm, another tenant, an unknown tenant, wrong role, the right role, admin): the
 *   first five are UNAUTHENTICATED, the next three PERMISSION_DENIED (the unknown tenant's
 *   message the same as the other tenant's: nothing says whether a tenant exists), the last two
 *   OK. Health/Check needs no token.
 * - hostile_authorization_values: not Bearer, empty, a long token, binary junk, a token of
 *   nine parts, a forged payload, alg none: UNAUTHENTICATED (metadata over the core's 8 KiB:
 *   RESOURCE_EXHAUSTED from the transport), and the service still serves.
 * - services_refuse_to_start_without_auth: command-svc and query-svc without a key exit 2
 *   naming the variables; TALLY_AUTH=off starts and warns; a short secret is refused.
 * - keys_are_read_again_on_sighup: after SIGHUP the old secret's tokens (cached) are refused
 *   and the new secret's taken; keys that do not load leave the current ones.
 */
#include "auth.h"
#include "calls.h"
#include "cfg.h"
#include "imports.h"
#include "proc.h"
#include "system.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/dashboard.pb-c.h"

#include "grpc/health/v1/health.pb-c.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TENANT  "t-auth"
#define OTHER   "t-other"
#define NOWHERE "t-nowhere"

enum tcase {
    T_NONE,
    T_EXPIRED,
    T_NOT_YET,
    T_BAD_SIGNATURE,
    T_WRONG_ALG,
    T_OTHER_TENANT,
    T_UNKNOWN_TENANT,
    T_WRONG_ROLE,
    T_GOOD,
    T_ADMIN,
    T_NCASES
};

static const char *const case_names[T_NCASES] = {
    "no token",     "expired",        "not yet valid", "bad signature", "wrong algorithm",
    "other tenant", "unknown tenant", "wrong role",    "right role",    "admin",
};

static sys_system sys;
static char secret[600];
static int64_t complaint; /* of TENANT, version 1, never changed by the matrix */
static int serial;

static void mint(char *out, size_t len, const char *alg, const char *key, const char *role,
                 const char *tenants, int64_t ttl_s, int64_t nbf_s)
{
    char err[256];
    auth_mint_opts o = { .alg = alg,
                         .key = key,
                         .role = role,
                         .tenants = tenants,
                         .subject = "test-auth",
                         .now_s = (int64_t)time(NULL),
                         .ttl_s = ttl_s,
                         .nbf_s = nbf_s };
    cr_assert_eq(auth_mint(&o, out, len, err, sizeof(err)), 0, "mint: %s", err);
}

static void setup(void)
{
    char why[256];
    const char *file = getenv("TALLY_AUTH_JWT_SECRET_FILE");
    cr_assert(file && getenv("TALLY_TOKEN"),
              "TALLY_AUTH_JWT_SECRET_FILE and TALLY_TOKEN are not set: run with scripts/test");
    cr_assert_eq(cfg_read_secret(file, secret, sizeof(secret), why, sizeof(why)), 0, "%s", why);
    sys_start(&sys, NULL);
    Tally__V1__PutTenantRequest t = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    t.name = "Auth";
    t.time_zone = "UTC";
    const char *tenants[] = { TENANT, OTHER };
    for (int i = 0; i < 2; i++) {
        t.tenant_id = (char *)tenants[i];
        call_free(call_ok(sys.cmd, GC_COMMANDS("PutTenant"), &t.base,
                          &tally__v1__put_tenant_reply__descriptor, 5000));
        Tally__V1__PutCategoryRequest c = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        c.tenant_id = (char *)tenants[i];
        c.category_id = "billing";
        c.name = "Billing";
        call_free(call_ok(sys.cmd, GC_COMMANDS("PutCategory"), &c.base,
                          &tally__v1__put_category_reply__descriptor, 5000));
        Tally__V1__PutAgentRequest a = TALLY__V1__PUT_AGENT_REQUEST__INIT;
        a.tenant_id = (char *)tenants[i];
        a.agent_id = "a1";
        a.name = "Ann";
        call_free(call_ok(sys.cmd, GC_COMMANDS("PutAgent"), &a.base,
                          &tally__v1__put_agent_reply__descriptor, 5000));
    }
    call_create(sys.cmd, TENANT, "auth-setup", "billing", TALLY__V1__PRIORITY__PRIORITY_HIGH,
                &complaint);
    sys_wait_idle(&sys, 30000);
}

static void teardown(void)
{
    sys_stop(&sys);
}

/* ---- the requests: one valid request per RPC ----------------------------------------------- */

typedef union req_u {
    Tally__V1__PutTenantRequest put_tenant;
    Tally__V1__PutCategoryRequest put_category;
    Tally__V1__PutAgentRequest put_agent;
    Tally__V1__CreateComplaintRequest create;
    Tally__V1__AssignComplaintRequest assign;
    Tally__V1__ChangeStatusRequest move;
    Tally__V1__GetComplaintRequest get;
    Tally__V1__FindComplaintByKeyRequest find;
    Tally__V1__ListStatusHistoryRequest history;
    Tally__V1__GetOverviewRequest overview;
    Tally__V1__GetVolumeTrendRequest trend;
    Tally__V1__GetResolutionStatsRequest resolution;
    Tally__V1__GetAgentPerformanceRequest agents;
    Tally__V1__GetCategoryDistributionRequest categories;
    Tally__V1__GetDashboardRequest dashboard;
} req_u;

typedef struct rpc {
    const char *path;
    bool query;       /* on query-svc */
    const char *good; /* the role that may call it (admin may call everything) */
    const char *bad;  /* a role that may not */
    bool stream;      /* server streaming: OK is its first message */
} rpc;

static const rpc rpcs[] = {
    { GC_COMMANDS("PutTenant"), false, "admin", "writer", false },
    { GC_COMMANDS("PutCategory"), false, "writer", "manager", false },
    { GC_COMMANDS("PutAgent"), false, "writer", "manager", false },
    { GC_COMMANDS("CreateComplaint"), false, "writer", "manager", false },
    { GC_COMMANDS("FindComplaintByKey"), false, "writer", "manager", false },
    { GC_COMMANDS("AssignComplaint"), false, "writer", "manager", false },
    { GC_COMMANDS("ChangeStatus"), false, "writer", "manager", false },
    { GC_COMMANDS("GetComplaint"), false, "writer", "manager", false },
    { GC_COMMANDS("ListStatusHistory"), false, "writer", "manager", false },
    { GC_COMMANDS("ImportComplaints"), false, "writer", "manager", false },
    { GC_DASHBOARD("GetOverview"), true, "manager", "writer", false },
    { GC_DASHBOARD("GetVolumeTrend"), true, "manager", "writer", false },
    { GC_DASHBOARD("GetResolutionStats"), true, "manager", "writer", false },
    { GC_DASHBOARD("GetAgentPerformance"), true, "manager", "writer", false },
    { GC_DASHBOARD("GetCategoryDistribution"), true, "manager", "writer", false },
    { GC_DASHBOARD("GetDashboard"), true, "manager", "writer", false },
    { GC_DASHBOARD("WatchDashboard"), true, "manager", "writer", true },
};
#define NRPCS (sizeof(rpcs) / sizeof(rpcs[0]))

/*
 * The request of rpc i for tenant. fresh: it will be served, so it must succeed: assignments
 * and moves get a complaint of their own at version 1 (made with the admin token).
 */
static ProtobufCMessage *build(size_t i, const char *tenant, bool fresh, req_u *u, char *key,
                               imp_batch *imp)
{
    int64_t id = complaint;
    const char *m = strrchr(rpcs[i].path, '/') + 1;
    snprintf(key, 64, "auth-%d", ++serial);
    if (fresh && (strcmp(m, "AssignComplaint") == 0 || strcmp(m, "ChangeStatus") == 0 ||
                  strcmp(m, "FindComplaintByKey") == 0))
        call_create(sys.cmd, TENANT, key, "billing", TALLY__V1__PRIORITY__PRIORITY_LOW, &id);
    memset(u, 0, sizeof(*u));
#define INIT(member, type, upper)              \
    do {                                       \
        tally__v1__##type##__init(&u->member); \
        u->member.tenant_id = (char *)tenant;  \
    } while (0)
    if (strcmp(m, "PutTenant") == 0) {
        INIT(put_tenant, put_tenant_request, PUT_TENANT);
        u->put_tenant.name = "Auth";
        u->put_tenant.time_zone = "UTC";
        return &u->put_tenant.base;
    }
    if (strcmp(m, "PutCategory") == 0) {
        INIT(put_category, put_category_request, PUT_CATEGORY);
        u->put_category.category_id = "billing";
        u->put_category.name = "Billing";
        return &u->put_category.base;
    }
    if (strcmp(m, "PutAgent") == 0) {
        INIT(put_agent, put_agent_request, PUT_AGENT);
        u->put_agent.agent_id = "a1";
        u->put_agent.name = "Ann";
        return &u->put_agent.base;
    }
    if (strcmp(m, "CreateComplaint") == 0) {
        INIT(create, create_complaint_request, CREATE);
        u->create.idempotency_key = key;
        u->create.category_id = "billing";
        u->create.priority = TALLY__V1__PRIORITY__PRIORITY_MEDIUM;
        u->create.title = "Auth matrix";
        u->create.customer_id = "cust-1";
        return &u->create.base;
    }
    if (strcmp(m, "AssignComplaint") == 0) {
        INIT(assign, assign_complaint_request, ASSIGN);
        u->assign.complaint_id = id;
        u->assign.agent_id = "a1";
        u->assign.expected_version = 1;
        return &u->assign.base;
    }
    if (strcmp(m, "ChangeStatus") == 0) {
        INIT(move, change_status_request, MOVE);
        u->move.complaint_id = id;
        u->move.status = TALLY__V1__STATUS__STATUS_IN_PROGRESS;
        u->move.expected_version = 1;
        u->move.actor = "a1";
        return &u->move.base;
    }
    if (strcmp(m, "FindComplaintByKey") == 0) {
        INIT(find, find_complaint_by_key_request, FIND);
        u->find.idempotency_key = key;
        return &u->find.base;
    }
    if (strcmp(m, "GetComplaint") == 0) {
        INIT(get, get_complaint_request, GET);
        u->get.complaint_id = id;
        return &u->get.base;
    }
    if (strcmp(m, "ListStatusHistory") == 0) {
        INIT(history, list_status_history_request, HISTORY);
        u->history.complaint_id = id;
        return &u->history.base;
    }
    if (strcmp(m, "ImportComplaints") == 0) {
        imp_batch_init(imp, tenant, 1);
        imp_entry_init(&imp->x[0], key, "billing", TALLY__V1__PRIORITY__PRIORITY_LOW,
                       (int64_t)time(NULL) * 1000 - 86400000);
        return &imp->req.base;
    }
    if (strcmp(m, "GetOverview") == 0) {
        INIT(overview, get_overview_request, OVERVIEW);
        return &u->overview.base;
    }
    if (strcmp(m, "GetVolumeTrend") == 0) {
        INIT(trend, get_volume_trend_request, TREND);
        return &u->trend.base;
    }
    if (strcmp(m, "GetResolutionStats") == 0) {
        INIT(resolution, get_resolution_stats_request, RESOLUTION);
        return &u->resolution.base;
    }
    if (strcmp(m, "GetAgentPerformance") == 0) {
        INIT(agents, get_agent_performance_request, AGENTS);
        return &u->agents.base;
    }
    if (strcmp(m, "GetCategoryDistribution") == 0) {
        INIT(categories, get_category_distribution_request, CATEGORIES);
        return &u->categories.base;
    }
    INIT(dashboard, get_dashboard_request, DASHBOARD);
    return &u->dashboard.base;
#undef INIT
}

/* The token of case k for rpc r ("" for none). */
static void case_token(enum tcase k, const rpc *r, char *tok, size_t len)
{
    static const char other_secret[] = "not-the-services-secret-0123456789abcdef";
    tok[0] = '\0';
    switch (k) {
    case T_NONE:
        break;
    case T_EXPIRED: /* past the 30 s leeway */
        mint(tok, len, "HS256", secret, r->good, TENANT, -120, 0);
        break;
    case T_NOT_YET:
        mint(tok, len, "HS256", secret, r->good, TENANT, 3600, 600);
        break;
    case T_BAD_SIGNATURE:
        mint(tok, len, "HS256", other_secret, r->good, TENANT, 3600, 0);
        break;
    case T_WRONG_ALG: /* the right secret, an algorithm the services do not accept */
        mint(tok, len, "HS512", secret, r->good, TENANT, 3600, 0);
        break;
    case T_OTHER_TENANT:
        mint(tok, len, "HS256", secret, r->good, OTHER, 3600, 0);
        break;
    case T_UNKNOWN_TENANT: /* the request names NOWHERE */
        mint(tok, len, "HS256", secret, r->good, TENANT, 3600, 0);
        break;
    case T_WRONG_ROLE:
        mint(tok, len, "HS256", secret, r->bad, TENANT, 3600, 0);
        break;
    case T_GOOD:
        mint(tok, len, "HS256", secret, r->good, TENANT, 3600, 0);
        break;
    case T_ADMIN:
        mint(tok, len, "HS256", secret, "admin", TENANT "," OTHER, 3600, 0);
        break;
    case T_NCASES:
        break;
    }
}

static int expected_code(enum tcase k)
{
    if (k <= T_WRONG_ALG)
        return TALLY_GRPC_UNAUTHENTICATED;
    if (k <= T_WRONG_ROLE)
        return TALLY_GRPC_PERMISSION_DENIED;
    return TALLY_GRPC_OK;
}

/* Calls r (a stream: until its first message, which counts as OK) and fills st. */
static void call_rpc(gc_client *c, const rpc *r, const ProtobufCMessage *req, const char *const *md,
                     gc_status *st)
{
    if (!r->stream) {
        gc_call_msg(c, r->path, req, NULL, md, 10000, NULL, st);
        return;
    }
    gc_stream *s = gc_stream_open(c, r->path, req, md, 10000);
    uint8_t *data = NULL;
    size_t len;
    cr_assert_not_null(s);
    if (gc_stream_next(s, 10000, &data, &len, st) == 1) {
        st->code = TALLY_GRPC_OK;
        st->details[0] = st->message[0] = '\0';
    }
    free(data);
    gc_stream_free(s);
}

TestSuite(auth, .init = setup, .fini = teardown, .timeout = 120);

Test(auth, the_matrix)
{
    gc_options none = { .token = "" }; /* no TALLY_TOKEN: each call says its own */
    char err[256], tok[AUTH_TOKEN_MAX], bearer[AUTH_TOKEN_MAX + 16], key[64];
    char cmd_target[64], q_target[64];
    snprintf(cmd_target, sizeof(cmd_target), "127.0.0.1:%d", sys.command.grpc_port);
    snprintf(q_target, sizeof(q_target), "127.0.0.1:%d", sys.query.grpc_port);
    gc_client *cmd = gc_new_ex(cmd_target, &none, err, sizeof(err));
    gc_client *q = gc_new_ex(q_target, &none, err, sizeof(err));
    cr_assert(cmd && q, "%s", err);
    int cells = 0, wrong = 0;

    for (size_t i = 0; i < NRPCS; i++) {
        char other_msg[1024] = "";
        for (int k = 0; k < T_NCASES; k++) {
            req_u u;
            imp_batch imp = { 0 };
            gc_status st;
            const char *tenant = k == T_UNKNOWN_TENANT ? NOWHERE : TENANT;
            ProtobufCMessage *req =
                build(i, tenant, expected_code(k) == TALLY_GRPC_OK, &u, key, &imp);
            case_token((enum tcase)k, &rpcs[i], tok, sizeof(tok));
            snprintf(bearer, sizeof(bearer), "Bearer %s", tok);
            const char *md[] = { "authorization", bearer, NULL };
            call_rpc(rpcs[i].query ? q : cmd, &rpcs[i], req, tok[0] ? md : NULL, &st);
            if (imp.ptrs)
                imp_batch_release(&imp);
            cells++;
            if (st.code != expected_code(k)) {
                wrong++;
                cr_log_error("%s, %s: %s, want %s", rpcs[i].path, case_names[k],
                             st.code ? st.message : "OK", tally_grpc_code_name(expected_code(k)));
            }
            if (k == T_OTHER_TENANT)
                snprintf(other_msg, sizeof(other_msg), "%s", st.details);
            if (k == T_UNKNOWN_TENANT && strcmp(st.details, other_msg) != 0) {
                wrong++;
                cr_log_error("%s: an unknown tenant says \"%s\", another tenant \"%s\"",
                             rpcs[i].path, st.details, other_msg);
            }
        }
    }
    cr_log_info("auth matrix: %d cells (%zu RPCs x %d cases), %d wrong", cells, NRPCS, T_NCASES,
                wrong);
    cr_expect_eq(wrong, 0, "%d of %d cells wrong (see the log)", wrong, cells);

    /* Health/Check is open: load balancers and kubelets carry no token. */
    Grpc__Health__V1__HealthCheckRequest h = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    cr_expect_eq(call_code(cmd, "/grpc.health.v1.Health/Check", &h.base, 5000, NULL),
                 TALLY_GRPC_OK);
    cr_expect_eq(call_code(q, "/grpc.health.v1.Health/Check", &h.base, 5000, NULL), TALLY_GRPC_OK);
    gc_free(cmd);
    gc_free(q);
}

Test(auth, hostile_authorization_values)
{
    gc_options none = { .token = "" };
    char err[256], target[64], tok[AUTH_TOKEN_MAX];
    static char big[AUTH_TOKEN_MAX + 64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", sys.query.grpc_port);
    gc_client *q = gc_new_ex(target, &none, err, sizeof(err));
    cr_assert(q, "%s", err);
    mint(tok, sizeof(tok), "HS256", secret, "manager", TENANT, 3600, 0);
    memcpy(big, "Bearer ", 7);
    memset(big + 7, 'a', sizeof(big) - 8);
    char nine[128], tampered[AUTH_TOKEN_MAX + 8], nosig[AUTH_TOKEN_MAX + 8];
    snprintf(nine, sizeof(nine), "Bearer a.b.c.d.e.f.g.h.i");
    /* The payload of a valid token swapped for one that grants every tenant. */
    snprintf(tampered, sizeof(tampered), "Bearer %.*s.%s.%s", (int)strcspn(tok, "."), tok,
             "eyJleHAiOjk5OTk5OTk5OTksInJvbGUiOiJhZG1pbiIsInRlbmFudHMiOlsiKiJdfQ",
             strrchr(tok, '.') + 1);
    /* alg none, unsigned: {"alg":"none","typ":"JWT"} */
    snprintf(nosig, sizeof(nosig), "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.%.*s.",
             (int)(strrchr(tok, '.') - strchr(tok, '.') - 1), strchr(tok, '.') + 1);
    static char junk[6000];
    memcpy(junk, "Bearer ", 7);
    memset(junk + 7, 'Z', sizeof(junk) - 8);
    /* big last: the core closes the connection after metadata over its limit */
    const char *values[] = { "Basic dXNlcjpwYXNz",  "Bearer", "Bearer    ", junk, nine,
                             "Bearer \x01\x02\xff", tampered, nosig,        big };
    Tally__V1__GetOverviewRequest o = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    o.tenant_id = TENANT;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        const char *md[] = { "authorization", values[i], NULL };
        gc_status st;
        gc_call_msg(q, GC_DASHBOARD("GetOverview"), &o.base, NULL, md, 5000, NULL, &st);
        /* The core itself may refuse a value that is not valid metadata (the binary one): then
           the call never reaches us, and UNAVAILABLE or INTERNAL is the transport's answer. */
        if (i == 5 && st.code != TALLY_GRPC_UNAUTHENTICATED)
            continue;
        /* Over the core's 8 KiB of metadata: refused by the transport before us. */
        if (i == 8) {
            cr_expect_eq(st.code, TALLY_GRPC_RESOURCE_EXHAUSTED, "value %zu: %s", i, st.message);
            continue;
        }
        cr_expect_eq(st.code, TALLY_GRPC_UNAUTHENTICATED, "value %zu: %s", i, st.message);
    }
    gc_free(q);
    q = gc_new_ex(target, &none, err, sizeof(err));
    cr_assert(q, "%s", err);
    char bearer[AUTH_TOKEN_MAX + 16];
    snprintf(bearer, sizeof(bearer), "bearer  %s ", tok); /* the scheme in any case */
    const char *md[] = { "authorization", bearer, NULL };
    gc_status st;
    gc_call_msg(q, GC_DASHBOARD("GetOverview"), &o.base, NULL, md, 5000, NULL, &st);
    cr_expect_eq(st.code, TALLY_GRPC_OK, "a good token after the hostile ones: %s", st.message);
    gc_free(q);
}

Test(auth, services_refuse_to_start_without_auth)
{
    const char *bins[] = { COMMAND_SVC_PATH, QUERY_SVC_PATH };
    for (int i = 0; i < 2; i++) {
        proc p;
        const char *none[] = { "TALLY_AUTH_JWT_SECRET_FILE=",
                               "TALLY_AUTH_JWT_SECRET=",
                               "TALLY_GRPC_LISTEN=127.0.0.1:0",
                               "TALLY_HTTP_LISTEN=127.0.0.1:0",
                               sys.db.pg_var,
                               sys.redis_var,
                               NULL };
        cr_expect_eq(proc_run(&p, bins[i], none, 10000), 2, "%s without a key", bins[i]);
        cr_expect(proc_log_has(&p, "TALLY_AUTH_JWT_SECRET or TALLY_AUTH_JWT_SECRET_FILE"),
                  "%s: the refusal names the variables:\n%s", bins[i], p.log);
        proc_release(&p);

        const char *short_secret[] = { "TALLY_AUTH_JWT_SECRET_FILE=", "TALLY_AUTH_JWT_SECRET=short",
                                       sys.db.pg_var, sys.redis_var, NULL };
        cr_expect_eq(proc_run(&p, bins[i], short_secret, 10000), 2, "%s with a short secret",
                     bins[i]);
        cr_expect(proc_log_has(&p, "shorter than 32 bytes"), "%s:\n%s", bins[i], p.log);
        proc_release(&p);

        const char *es[] = { "TALLY_AUTH_JWT_SECRET_FILE=", "TALLY_AUTH_JWT_ALG=ES256",
                             sys.db.pg_var, sys.redis_var, NULL };
        cr_expect_eq(proc_run(&p, bins[i], es, 10000), 2, "%s: ES256 without keys", bins[i]);
        cr_expect(proc_log_has(&p, "TALLY_AUTH_JWT_KEYS_FILE: required for ES256"), "%s:\n%s",
                  bins[i], p.log);
        proc_release(&p);

        const char *off[] = { "TALLY_AUTH=off", "TALLY_AUTH_JWT_SECRET_FILE=", sys.db.pg_var,
                              sys.redis_var, NULL };
        cr_assert_eq(proc_start(&p, bins[i], off), 0, "%s with TALLY_AUTH=off:\n%s", bins[i],
                     p.log);
        cr_expect(proc_log_has(&p, "authentication is off"), "%s warns:\n%s", bins[i], p.log);
        cr_expect_eq(proc_stop(&p, SIGTERM, 10000), 0);
        proc_release(&p);
    }
}

/* Writes text to path through a temporary file and a rename. */
static void write_secret(const char *path, const char *text)
{
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    cr_assert(f);
    fprintf(f, "%s\n", text);
    fclose(f);
    cr_assert_eq(rename(tmp, path), 0);
}

static int overview_with(int port, const char *token)
{
    gc_options o = { .token = token };
    char target[64], err[256];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    gc_client *c = gc_new_ex(target, &o, err, sizeof(err));
    cr_assert(c, "%s", err);
    Tally__V1__GetOverviewRequest q = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    q.tenant_id = TENANT;
    int code = call_code(c, GC_DASHBOARD("GetOverview"), &q.base, 5000, NULL);
    gc_free(c);
    return code;
}

/*
 * SIGHUP reads the token keys again: a token of the old secret (verified and cached before) is
 * refused from then on, one of the new secret is taken; keys that do not load (a secret too
 * short) leave the current ones.
 */
Test(auth, keys_are_read_again_on_sighup)
{
    static const char s1[] = "first-secret-of-the-reload-test-0123456789";
    static const char s2[] = "second-secret-of-the-reload-test-987654321";
    char dir[] = "/tmp/test-auth-keys-XXXXXX", file[96], var[128];
    cr_assert(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/secret", dir);
    snprintf(var, sizeof(var), "TALLY_AUTH_JWT_SECRET_FILE=%s", file);
    write_secret(file, s1);
    /* One worker: the one whose cache holds the old key's token serves the call after. */
    const char *env[] = { var, sys.redis_var, "TALLY_WORKERS=1", NULL };
    proc p;
    cr_assert_eq(proc_start(&p, QUERY_SVC_PATH, env), 0, "query-svc did not start:\n%s", p.log);
    char t1[AUTH_TOKEN_MAX], t2[AUTH_TOKEN_MAX];
    mint(t1, sizeof(t1), "HS256", s1, "manager", TENANT, 3600, 0);
    mint(t2, sizeof(t2), "HS256", s2, "manager", TENANT, 3600, 0);
    cr_expect_eq(overview_with(p.grpc_port, t1), TALLY_GRPC_OK, "the first key's token");
    cr_expect_eq(overview_with(p.grpc_port, t2), TALLY_GRPC_UNAUTHENTICATED);

    write_secret(file, s2);
    cr_assert_eq(kill(p.pid, SIGHUP), 0);
    cr_expect(proc_log_wait(&p, "token keys reloaded", 5000), "%s", p.log);
    cr_expect_eq(overview_with(p.grpc_port, t1), TALLY_GRPC_UNAUTHENTICATED,
                 "the old key's token, cached before, is refused after the reload");
    cr_expect_eq(overview_with(p.grpc_port, t2), TALLY_GRPC_OK, "the new key's token");

    write_secret(file, "too-short");
    cr_assert_eq(kill(p.pid, SIGHUP), 0);
    cr_expect(proc_log_wait(&p, "token keys not reloaded", 5000), "%s", p.log);
    cr_expect_eq(overview_with(p.grpc_port, t2), TALLY_GRPC_OK, "a bad reload keeps the keys");
    cr_expect_eq(proc_stop(&p, SIGTERM, 10000), 0);
    proc_release(&p);
    unlink(file);
    rmdir(dir);
}
