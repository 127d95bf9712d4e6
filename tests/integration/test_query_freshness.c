/*
 * query-svc's Freshness tells the truth (issue 8, point 5), on a whole private system.
 *
 * Each test seeds one tenant through command-svc, waits until the projector applied it, then
 * stops the projector and command-svc (with its relay), so that nothing but the test writes the
 * pipeline's state. It then writes `tally:wm`, `tally:repair` and `{t:T}:parked` (and the
 * tenant's `P fresh`) directly into the system's Redis, as the projector and the relay would
 * (docs/keyspace.md, "Streams and pipeline state"), and asserts every Freshness field of every
 * Dashboard RPC's reply, and the status of a tenant the read model does not hold.
 *
 * Exact values are asserted against the reply's own server_time_ms, never against the test's
 * clock, so no assertion depends on timing.
 */
#include "fixture.h"
#include "now.h"
#include "pgdb.h"
#include "system.h"
#include "tally/v1/dashboard.pb-c.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEADLINE_MS 10000
#define APPLY_MS    120000 /* the longest wait for the projector to apply the seeded tenant */
#define HOUR_MS     3600000LL

/* The codes this file expects (grpc/status.h values). */
#define OK          0
#define NOT_FOUND   5
#define UNAVAILABLE 14

/* Every RPC of tally.v1.Dashboard: each request has tenant_id, each reply freshness. */
typedef struct rpc {
    const char *method;
    const ProtobufCMessageDescriptor *req, *rep;
} rpc;

static const rpc rpcs[] = {
    { GC_DASHBOARD("GetDashboard"), &tally__v1__get_dashboard_request__descriptor,
      &tally__v1__get_dashboard_reply__descriptor },
    { GC_DASHBOARD("GetOverview"), &tally__v1__get_overview_request__descriptor,
      &tally__v1__get_overview_reply__descriptor },
    { GC_DASHBOARD("GetVolumeTrend"), &tally__v1__get_volume_trend_request__descriptor,
      &tally__v1__get_volume_trend_reply__descriptor },
    { GC_DASHBOARD("GetResolutionStats"), &tally__v1__get_resolution_stats_request__descriptor,
      &tally__v1__get_resolution_stats_reply__descriptor },
    { GC_DASHBOARD("GetAgentPerformance"), &tally__v1__get_agent_performance_request__descriptor,
      &tally__v1__get_agent_performance_reply__descriptor },
    { GC_DASHBOARD("GetCategoryDistribution"),
      &tally__v1__get_category_distribution_request__descriptor,
      &tally__v1__get_category_distribution_reply__descriptor },
};
#define NRPCS (sizeof(rpcs) / sizeof(rpcs[0]))

static sys_system S;
static redisContext *R; /* to the system's Redis */
static char T[32];      /* the seeded tenant */
static char P[64];      /* its read-model prefix, "{t:T}:<gen>:" */
static int64_t events;  /* its events (all applied) */

/* ---- calls ---------------------------------------------------------------------------------- */

/*
 * Calls r with only tenant_id set. Returns the status code; on OK *f is the reply's freshness
 * (which must be there); details gets the status message.
 */
static int ask(const rpc *r, const char *tenant, Tally__V1__Freshness *f, char *details, size_t len)
{
    ProtobufCMessage *req = calloc(1, r->req->sizeof_message);
    const ProtobufCFieldDescriptor *tf =
        protobuf_c_message_descriptor_get_field_by_name(r->req, "tenant_id");
    const ProtobufCFieldDescriptor *ff =
        protobuf_c_message_descriptor_get_field_by_name(r->rep, "freshness");
    cr_assert(req && tf && ff);
    r->req->message_init(req);
    *(const char **)((char *)req + tf->offset) = tenant;
    gc_result res;
    cr_assert_eq(gc_call(S.q, r->method, req, NULL, DEADLINE_MS, &res), 0, "%s did not start",
                 r->method);
    free(req);
    snprintf(details, len, "%s", res.details);
    int code = res.code;
    if (code == OK) {
        ProtobufCMessage *rep = protobuf_c_message_unpack(r->rep, NULL, res.len, res.data);
        cr_assert(rep, "%s: the reply does not decode", r->method);
        const Tally__V1__Freshness *got = *(Tally__V1__Freshness **)((char *)rep + ff->offset);
        cr_assert(got, "%s: the reply has no freshness", r->method);
        *f = *got; /* scalars only */
        f->base.unknown_fields = NULL;
        f->base.n_unknown_fields = 0;
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    gc_result_release(&res);
    return code;
}

/* Calls r for the seeded tenant, which must answer OK. */
static Tally__V1__Freshness fresh(const rpc *r)
{
    Tally__V1__Freshness f;
    char details[1024];
    int code = ask(r, T, &f, details, sizeof(details));
    cr_assert_eq(code, OK, "%s(%s): code %d \"%s\"", r->method, T, code, details);
    return f;
}

/* ---- Redis ---------------------------------------------------------------------------------- */

/* A command on the system's Redis that must not fail; its integer reply. */
static long long rcmd(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = rsv_vmust(R, fmt, ap);
    va_end(ap);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return v;
}

/* ---- the system ----------------------------------------------------------------------------- */

/* The tenant's events_applied as query-svc reports it; -1 while the tenant is unknown. */
static int64_t applied_now(void)
{
    Tally__V1__Freshness f;
    char details[1024];
    int code = ask(&rpcs[1], T, &f, details, sizeof(details));
    if (code == NOT_FOUND)
        return -1;
    cr_assert_eq(code, OK, "GetOverview while waiting: code %d \"%s\"", code, details);
    return f.events_applied;
}

/*
 * A system with one tenant, fully applied, then only query-svc and Redis left running, and no
 * pipeline state but what the read model holds.
 */
static void start(void)
{
    sys_start(&S, NULL);
    fx_tenant(T, sizeof(T));
    fx_seed_tenant(S.cmd, T, "Europe/Berlin");
    const char *p[] = { T };
    PGresult *res = pgdb_sql(S.pg, "SELECT count(*) FROM events WHERE tenant_id = $1", 1, p);
    events = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    cr_assert_gt(events, 0);
    int64_t got = -1;
    for (int64_t until = now_mono_ms() + APPLY_MS; got != events && now_mono_ms() < until;
         tclock_sleep_ms(50))
        got = applied_now();
    cr_assert_eq(got, events,
                 "the projector applied %" PRId64 " of the tenant's %" PRId64 " events", got,
                 events);
    sys_projector_stop(&S);
    sys_command_stop(&S);
    R = sys_redis_connect(&S);
    redisReply *g = redisCommand(R, "GET {t:%s}:gen", T);
    cr_assert(g);
    snprintf(P, sizeof(P), "{t:%s}:%s:", T, g->type == REDIS_REPLY_STRING ? g->str : "1");
    freeReplyObject(g);
    rcmd("DEL tally:wm tally:repair"); /* whatever the pipeline wrote: the test writes them */
}

static void stop(void)
{
    if (R)
        redisFree(R);
    R = NULL;
    sys_stop(&S);
}

/* ---- the tests ------------------------------------------------------------------------------ */

/* The fields that do not depend on the watermark, for the seeded tenant at rest. */
static void expect_at_rest(const char *m, const Tally__V1__Freshness *f)
{
    cr_expect_eq(f->events_applied, events, "%s: events_applied", m);
    cr_expect_gt(f->as_of_ms, 0, "%s: as_of_ms", m);
    cr_expect_gt(f->server_time_ms, 0, "%s: server_time_ms", m);
    cr_expect_eq(f->lag_ms, f->server_time_ms > f->as_of_ms ? f->server_time_ms - f->as_of_ms : 0,
                 "%s: lag_ms", m);
    cr_expect_not(f->stale, "%s: stale without a token", m);
    cr_expect_eq(f->token_applied_version, 0, "%s: token_applied_version without a token", m);
}

Test(query_freshness, replies_say_up_to_when_the_read_model_is_complete, .init = start,
     .fini = stop)
{
    /* No watermark in the read model: completeness unknown, and never "0 s ago". */
    for (size_t i = 0; i < NRPCS; i++) {
        const char *m = rpcs[i].method;
        Tally__V1__Freshness f = fresh(&rpcs[i]);
        expect_at_rest(m, &f);
        cr_expect_eq(f.complete_until_ms, 0, "%s: complete_until_ms without tally:wm", m);
        cr_expect_eq(f.complete_lag_ms, f.server_time_ms,
                     "%s: complete_lag_ms %" PRId64 " without a watermark, want server_time_ms", m,
                     f.complete_lag_ms);
        cr_expect_eq(f.parked_complaints, 0, "%s: parked_complaints", m);
        cr_expect_not(f.rebuilding, "%s: rebuilding", m);
    }

    /*
     * An idle but complete tenant: its newest event an hour old, the watermark (the lowest of
     * three partitions) two seconds old. The completeness lag is the watermark's, not the hour.
     */
    int64_t now = now_wall_ms(), as_of = now - HOUR_MS, wm = now - 2000;
    rcmd("HSET %sfresh as_of_ms %" PRId64 " applied_ms %" PRId64, P, as_of, as_of);
    rcmd("HSET tally:wm 0 %" PRId64 " 1 %" PRId64 " 2 %" PRId64, now - 700, wm, now - 1500);
    for (size_t i = 0; i < NRPCS; i++) {
        const char *m = rpcs[i].method;
        Tally__V1__Freshness f = fresh(&rpcs[i]);
        expect_at_rest(m, &f);
        cr_expect_eq(f.as_of_ms, as_of, "%s: as_of_ms", m);
        cr_expect_eq(f.apply_lag_ms, f.server_time_ms - as_of, "%s: apply_lag_ms", m);
        cr_expect_eq(f.complete_until_ms, wm,
                     "%s: complete_until_ms %" PRId64 ", want the lowest "
                     "partition's %" PRId64,
                     m, f.complete_until_ms, wm);
        cr_expect_eq(f.complete_lag_ms, f.server_time_ms - wm, "%s: complete_lag_ms", m);
        cr_expect_eq(f.lag_ms - f.complete_lag_ms, wm - as_of,
                     "%s: an idle complete tenant: lag_ms %" PRId64 ", complete_lag_ms %" PRId64, m,
                     f.lag_ms, f.complete_lag_ms);
        cr_expect_not(f.rebuilding, "%s: rebuilding", m);
    }

    /* One partition whose watermark cannot be read could be the slowest: unknown again. */
    rcmd("HSET tally:wm 3 soon");
    for (size_t i = 0; i < NRPCS; i++) {
        Tally__V1__Freshness f = fresh(&rpcs[i]);
        cr_expect_eq(f.complete_until_ms, 0, "%s: a partition's watermark is \"soon\"",
                     rpcs[i].method);
        cr_expect_eq(f.complete_lag_ms, f.server_time_ms, "%s: complete_lag_ms", rpcs[i].method);
    }

    /* A damaged tally:wm (not a hash) is not the tenant's: unknown, and the call answers. */
    rcmd("DEL tally:wm");
    rcmd("SET tally:wm broken");
    for (size_t i = 0; i < NRPCS; i++) {
        Tally__V1__Freshness f = fresh(&rpcs[i]);
        cr_expect_eq(f.complete_until_ms, 0, "%s: tally:wm is a string", rpcs[i].method);
    }

    /* A watermark ahead of query-svc's clock (skew): a lag of 0, never negative. */
    rcmd("DEL tally:wm");
    rcmd("HSET tally:wm 0 %" PRId64, now + 10 * 60 * 1000);
    for (size_t i = 0; i < NRPCS; i++) {
        Tally__V1__Freshness f = fresh(&rpcs[i]);
        cr_expect_eq(f.complete_until_ms, now + 10 * 60 * 1000, "%s: complete_until_ms",
                     rpcs[i].method);
        cr_expect_eq(f.complete_lag_ms, 0, "%s: complete_lag_ms %" PRId64 " ahead of the clock",
                     rpcs[i].method, f.complete_lag_ms);
    }
}

Test(query_freshness, parked_complaints_of_the_tenant_are_counted, .init = start, .fini = stop)
{
    rcmd("HSET tally:wm 0 %" PRId64, now_wall_ms());
    rcmd("HSET {t:%s}:parked 101 gap 102 gap 103 poison", T);
    rcmd("HSET {t:%s-other}:parked 901 gap", T); /* another tenant's: not counted */
    for (size_t i = 0; i < NRPCS; i++) {
        Tally__V1__Freshness f = fresh(&rpcs[i]);
        expect_at_rest(rpcs[i].method, &f);
        cr_expect_eq(f.parked_complaints, 3, "%s: parked_complaints %" PRId64, rpcs[i].method,
                     f.parked_complaints);
        cr_expect_gt(f.complete_until_ms, 0, "%s: parking leaves the watermark", rpcs[i].method);
    }
    rcmd("HDEL {t:%s}:parked 101", T);
    cr_expect_eq(fresh(&rpcs[0]).parked_complaints, 2, "after one was replayed");
    rcmd("DEL {t:%s}:parked", T);
    cr_expect_eq(fresh(&rpcs[0]).parked_complaints, 0, "after all were replayed");
}

Test(query_freshness, a_repair_says_rebuilding_and_unknown_tenants_get_unavailable, .init = start,
     .fini = stop)
{
    char nobody[40], details[1024], want[128];
    Tally__V1__Freshness f;
    snprintf(nobody, sizeof(nobody), "%s-nobody", T);

    /* Without tally:repair, as before: an unknown tenant is NOT_FOUND. */
    snprintf(want, sizeof(want), "tenant_id: tenant \"%s\" is not known to the read model", nobody);
    for (size_t i = 0; i < NRPCS; i++) {
        int code = ask(&rpcs[i], nobody, &f, details, sizeof(details));
        cr_expect_eq(code, NOT_FOUND, "%s(unknown tenant): code %d \"%s\"", rpcs[i].method, code,
                     details);
        cr_expect_str_eq(details, want, "%s", rpcs[i].method);
        cr_expect_not(fresh(&rpcs[i]).rebuilding, "%s: rebuilding without a repair",
                      rpcs[i].method);
    }

    /* Redis lost data and the relay republishes it: the relay's tally:repair exists. */
    int64_t now = now_wall_ms();
    rcmd("HSET tally:repair since_us %" PRId64 " reason test started_ms %" PRId64
         " rows 12 state republishing",
         (now - 60000) * 1000, now);
    for (size_t i = 0; i < NRPCS; i++) {
        const char *m = rpcs[i].method;
        f = fresh(&rpcs[i]);
        expect_at_rest(m, &f);
        cr_expect(f.rebuilding, "%s: a present tenant during a repair is rebuilding", m);
        int code = ask(&rpcs[i], nobody, &f, details, sizeof(details));
        cr_expect_eq(code, UNAVAILABLE, "%s(unknown tenant) during a repair: code %d \"%s\"", m,
                     code, details);
        snprintf(want, sizeof(want), "tenant_id: tenant \"%s\" is not in the read model yet",
                 nobody);
        cr_expect_eq(strncmp(details, want, strlen(want)), 0, "%s: message \"%s\"", m, details);
        cr_expect(strstr(details, "being rebuilt") && strstr(details, "retry"),
                  "%s: message \"%s\" does not say rebuilt and retry", m, details);
    }

    /* The repair ends: back to NOT_FOUND and not rebuilding. */
    rcmd("DEL tally:repair");
    cr_expect_eq(ask(&rpcs[0], nobody, &f, details, sizeof(details)), NOT_FOUND, "\"%s\"", details);
    cr_expect_not(fresh(&rpcs[0]).rebuilding, "after the repair");

    /* Redis lost data a moment ago and the relay has not noticed yet: tally:relay:pos, which
       the relay writes at every pass, is gone. Not NOT_FOUND for a tenant that may exist. */
    rcmd("RENAME tally:relay:pos tally:relay:pos-saved");
    for (size_t i = 0; i < NRPCS; i++) {
        const char *m = rpcs[i].method;
        cr_expect(fresh(&rpcs[i]).rebuilding, "%s: no tally:relay:pos is rebuilding", m);
        int code = ask(&rpcs[i], nobody, &f, details, sizeof(details));
        cr_expect_eq(code, UNAVAILABLE, "%s(unknown tenant) without tally:relay:pos: %d \"%s\"", m,
                     code, details);
    }
    rcmd("RENAME tally:relay:pos-saved tally:relay:pos");
    cr_expect_eq(ask(&rpcs[0], nobody, &f, details, sizeof(details)), NOT_FOUND, "\"%s\"", details);

    /* A rebuild of the tenant alone: rebuilding, but an unknown tenant stays NOT_FOUND. */
    rcmd("HSET {t:%s}:rebuild gen 2", T);
    cr_expect(fresh(&rpcs[1]).rebuilding, "{t:T}:rebuild");
    cr_expect_eq(ask(&rpcs[1], nobody, &f, details, sizeof(details)), NOT_FOUND, "\"%s\"", details);
}
