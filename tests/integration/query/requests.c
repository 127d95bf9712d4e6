/* Waiting for the read model, and the requests' ranges, filters and builders (query_int.h). */
#include "query_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- waiting for the read model ------------------------------------------------------------- */

Tally__V1__GetOverviewReply *tq_overview(const char *tenant, int limit,
                                         const Tally__V1__ConsistencyToken *token,
                                         bool fail_if_stale, const char *what)
{
    Tally__V1__GetOverviewRequest r = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.oldest_open_limit = limit;
    r.consistency = (Tally__V1__ConsistencyToken *)token;
    r.fail_if_stale = fail_if_stale;
    return tq_call_ok(tq_sys.q, GC_DASHBOARD("GetOverview"), &r.base,
                      &tally__v1__get_overview_reply__descriptor, what);
}

/* The tenant's events_applied as query-svc says; -1 while the tenant is unknown to it. */
int64_t tq_events_applied(const char *tenant)
{
    Tally__V1__GetOverviewRequest r = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    Tally__V1__GetOverviewReply *rep = NULL;
    gc_status st;
    r.tenant_id = (char *)tenant;
    gc_call_msg(tq_sys.q, GC_DASHBOARD("GetOverview"), &r.base,
                &tally__v1__get_overview_reply__descriptor, NULL, DEADLINE_MS,
                (ProtobufCMessage **)&rep, &st);
    int64_t n = -1;
    if (st.code == TALLY_GRPC_OK) {
        cr_assert(rep && rep->freshness);
        n = rep->freshness->events_applied;
        tally__v1__get_overview_reply__free_unpacked(rep, NULL);
    } else {
        cr_assert_eq(st.code, TALLY_GRPC_NOT_FOUND, "GetOverview while waiting: %s", st.message);
    }
    return n;
}

/* Waits until freshness.events_applied equals the tenant's rows in events. */
void tq_wait_caught_up(const char *tenant)
{
    int64_t want = tq_events_of(tenant), got = -1;
    for (int64_t until = now_mono_ms() + CATCH_UP_MS; now_mono_ms() < until; tclock_sleep_ms(50)) {
        if ((got = tq_events_applied(tenant)) == want)
            return;
        cr_assert(tq_sys.projector_on && proc_wait(&tq_sys.projector, 0) == -1,
                  "the projector died");
    }
    cr_assert_fail("tenant %s: events_applied is %" PRId64 " after %d ms, PostgreSQL has %" PRId64
                   " events",
                   tenant, got, CATCH_UP_MS, want);
}

/* ---- requests' options ---------------------------------------------------------------------- */

const flt F_CATS = {
    "categories billing,web,nope,billing", { "billing", "web", "nope", "billing" }, 4, { 0 }, 0
};
const flt F_PRIOS = { "priorities URGENT,LOW,LOW", { NULL }, 0, { URGENT, LOW, LOW }, 3 };
const flt F_BOTH = { "categories delivery,Web and priorities MEDIUM,HIGH",
                     { "delivery", "Web" },
                     2,
                     { MEDIUM, HIGH },
                     2 };
const flt F_EMPTY = { "an empty filter", { NULL }, 0, { 0 }, 0 };

Tally__V1__DateRange *tq_range_msg(Tally__V1__DateRange *m, const qrange *r, bool absent)
{
    if (absent && !r->from[0])
        return NULL;
    tally__v1__date_range__init(m);
    m->from_day = (char *)r->from;
    m->to_day = (char *)r->to;
    return m;
}

Tally__V1__Filter *tq_filter_msg(Tally__V1__Filter *m, const flt *f)
{
    if (!f)
        return NULL;
    tally__v1__filter__init(m);
    m->n_category_ids = f->ncats;
    m->category_ids = (char **)f->cats;
    m->n_priorities = f->nprios;
    m->priorities = (Tally__V1__Priority *)f->prios;
    return m;
}

/* A tenant with ids but no complaints, enough for the limits (10 agents). */
const tdef tq_plain = { "plain",
                        "Asia/Kathmandu",
                        { "billing", "web" },
                        { "a01", "a02", "a03", "a04", "a05", "Zed", "b-x", "b.x", "b_x", "idle" },
                        0,
                        NULL };

/* Request builders: the tenant "plain" and the given options. */
static Tally__V1__DateRange vr;
static Tally__V1__Filter vf;

Tally__V1__DateRange *tq_days(const char *from, const char *to)
{
    tally__v1__date_range__init(&vr);
    vr.from_day = (char *)from;
    vr.to_day = (char *)to;
    return &vr;
}

Tally__V1__GetVolumeTrendRequest tq_trend_req(Tally__V1__DateRange *r, int gran)
{
    Tally__V1__GetVolumeTrendRequest q = TALLY__V1__GET_VOLUME_TREND_REQUEST__INIT;
    q.tenant_id = (char *)tq_plain.id;
    q.range = r;
    q.granularity = (Tally__V1__Granularity)gran;
    return q;
}

Tally__V1__GetResolutionStatsRequest tq_stats_req(Tally__V1__DateRange *r, int group_by)
{
    Tally__V1__GetResolutionStatsRequest q = TALLY__V1__GET_RESOLUTION_STATS_REQUEST__INIT;
    q.tenant_id = (char *)tq_plain.id;
    q.range = r;
    q.group_by = (Tally__V1__ResolutionGroupBy)group_by;
    return q;
}

Tally__V1__GetAgentPerformanceRequest tq_agents_req(Tally__V1__DateRange *r, int sort_by, int limit,
                                                    const char *token)
{
    Tally__V1__GetAgentPerformanceRequest q = TALLY__V1__GET_AGENT_PERFORMANCE_REQUEST__INIT;
    q.tenant_id = (char *)tq_plain.id;
    q.range = r;
    q.sort_by = (Tally__V1__AgentSortBy)sort_by;
    q.limit = limit;
    q.page_token = (char *)token;
    return q;
}

Tally__V1__GetCategoryDistributionRequest tq_dist_req(Tally__V1__DateRange *r, int top_n)
{
    Tally__V1__GetCategoryDistributionRequest q =
        TALLY__V1__GET_CATEGORY_DISTRIBUTION_REQUEST__INIT;
    q.tenant_id = (char *)tq_plain.id;
    q.range = r;
    q.top_n = top_n;
    return q;
}

Tally__V1__GetDashboardRequest tq_dash_req(Tally__V1__DateRange *r, int gran)
{
    Tally__V1__GetDashboardRequest q = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    q.tenant_id = (char *)tq_plain.id;
    q.range = r;
    q.granularity = (Tally__V1__Granularity)gran;
    return q;
}

Tally__V1__Filter *tq_filter_of(size_t ncats, const char *const *cats, size_t nprios,
                                Tally__V1__Priority *prios)
{
    tally__v1__filter__init(&vf);
    vf.n_category_ids = ncats;
    vf.category_ids = (char **)cats;
    vf.n_priorities = nprios;
    vf.priorities = prios;
    return &vf;
}
