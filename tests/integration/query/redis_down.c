/* redis_down_is_unavailable_quickly: UNAVAILABLE within 2 s, and /readyz not 200. */
#include "query_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(query, redis_down_is_unavailable_quickly)
{
    char body[4096];
    tq_seed_rng("redis_down_is_unavailable_quickly");
    tq_put_tenant(&tq_plain);
    tq_wait_caught_up(tq_plain.id);
    cr_assert_eq(proc_http_get(tq_sys.query.http_port, "/readyz", body, sizeof(body)), 200,
                 "/readyz before Redis went down: %s", body);
    Tally__V1__GetDashboardRequest dq = tq_dash_req(NULL, 0);
    call_free(tq_call_ok(tq_sys.q, GC_DASHBOARD("GetDashboard"), &dq.base,
                         &tally__v1__get_dashboard_reply__descriptor, "Redis up"));
    sys_projector_stop(&tq_sys);
    sys_redis_kill(&tq_sys);
    Tally__V1__GetOverviewRequest oq = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    oq.tenant_id = (char *)tq_plain.id;
    Tally__V1__GetVolumeTrendRequest tq = tq_trend_req(NULL, 0);
    Tally__V1__GetResolutionStatsRequest sq = tq_stats_req(NULL, 0);
    Tally__V1__GetAgentPerformanceRequest aq = tq_agents_req(NULL, 0, 0, "");
    Tally__V1__GetCategoryDistributionRequest cq = tq_dist_req(NULL, 0);
    struct {
        const char *method;
        const ProtobufCMessage *msg;
    } calls[] = {
        { GC_DASHBOARD("GetOverview"), &oq.base },
        { GC_DASHBOARD("GetVolumeTrend"), &tq.base },
        { GC_DASHBOARD("GetResolutionStats"), &sq.base },
        { GC_DASHBOARD("GetAgentPerformance"), &aq.base },
        { GC_DASHBOARD("GetCategoryDistribution"), &cq.base },
        { GC_DASHBOARD("GetDashboard"), &dq.base },
    };
    for (int round = 0; round < 2; round++) /* every worker, connected before or not */
        for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
            gc_status r;
            tq_call_code("Redis down", calls[i].method, calls[i].msg, DEADLINE_MS,
                         TALLY_GRPC_UNAVAILABLE, &r);
            if (!r.has_rich || !r.rich.has_retry ||
                strcmp(r.rich.info.reason, "READ_MODEL_UNAVAILABLE") != 0)
                tq_bad("Redis down: %s: no RetryInfo and READ_MODEL_UNAVAILABLE in the status "
                       "details (reason \"%s\")",
                       calls[i].method, r.rich.info.reason);
            if (r.seconds > 2.0)
                tq_bad("Redis down: %s took %.2f s to answer %s (want within 2 s)", calls[i].method,
                       r.seconds, tally_grpc_code_name(r.code));
        }
    /* The readiness checks run every few seconds: /readyz turns within a couple of rounds. */
    int st = 200;
    for (int64_t until = now_mono_ms() + 10000; st == 200 && now_mono_ms() < until;
         tclock_sleep_ms(100))
        st = proc_http_get(tq_sys.query.http_port, "/readyz", body, sizeof(body));
    if (st == 200)
        tq_bad("Redis down: /readyz is still 200 after 10 s: %s", body);
}
