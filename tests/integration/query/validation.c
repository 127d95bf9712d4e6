/*
 * invalid_requests_name_the_field: each validation error's code and field, and the limits'
 * largest valid values accepted (the largest request included).
 */
#include "query_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V_OK(what, M, m, msg)                                     \
    call_free(tq_call_ok(tq_sys.q, GC_DASHBOARD(#M), &(msg).base, \
                         &tally__v1__##m##_reply__descriptor, what))

#define REFUSE(what, m, msg, code, field) \
    tq_expect_refusal(what, GC_DASHBOARD(#m), &(msg).base, code, field)

/* A request of each panel with a range: the kind, its method and its reply. */
enum { K_TREND, K_STATS, K_AGENTS, K_DIST, K_DASH };
static const char *const kind_method[] = {
    GC_DASHBOARD("GetVolumeTrend"),      GC_DASHBOARD("GetResolutionStats"),
    GC_DASHBOARD("GetAgentPerformance"), GC_DASHBOARD("GetCategoryDistribution"),
    GC_DASHBOARD("GetDashboard"),
};
static const ProtobufCMessageDescriptor *const kind_reply[] = {
    &tally__v1__get_volume_trend_reply__descriptor,
    &tally__v1__get_resolution_stats_reply__descriptor,
    &tally__v1__get_agent_performance_reply__descriptor,
    &tally__v1__get_category_distribution_reply__descriptor,
    &tally__v1__get_dashboard_reply__descriptor,
};

/* A range to send to one panel (otherwise the defaults), and the field its refusal names. */
typedef struct range_case {
    const char *what;
    int kind;
    const char *from, *to;
    int gran;          /* of a trend or a dashboard */
    const char *field; /* INVALID_ARGUMENT naming this field; NULL: the request is valid */
} range_case;

static void run_range_case(const range_case *c)
{
    union {
        Tally__V1__GetVolumeTrendRequest trend;
        Tally__V1__GetResolutionStatsRequest stats;
        Tally__V1__GetAgentPerformanceRequest agents;
        Tally__V1__GetCategoryDistributionRequest dist;
        Tally__V1__GetDashboardRequest dash;
    } q;
    const ProtobufCMessage *m = NULL;
    Tally__V1__DateRange *r = tq_days(c->from, c->to);
    switch (c->kind) {
    case K_TREND:
        q.trend = tq_trend_req(r, c->gran);
        m = &q.trend.base;
        break;
    case K_STATS:
        q.stats = tq_stats_req(r, 0);
        m = &q.stats.base;
        break;
    case K_AGENTS:
        q.agents = tq_agents_req(r, 0, 0, "");
        m = &q.agents.base;
        break;
    case K_DIST:
        q.dist = tq_dist_req(r, 0);
        m = &q.dist.base;
        break;
    case K_DASH:
        q.dash = tq_dash_req(r, c->gran);
        m = &q.dash.base;
        break;
    }
    cr_assert(m, "%s: kind %d", c->what, c->kind);
    if (c->field)
        tq_expect_refusal(c->what, kind_method[c->kind], m, TALLY_GRPC_INVALID_ARGUMENT, c->field);
    else
        call_free(tq_call_ok(tq_sys.q, kind_method[c->kind], m, kind_reply[c->kind], c->what));
}

Test(query, invalid_requests_name_the_field)
{
    char d399[11], d400[11], d1826[11], d1827[11], ids[101][8];
    const char *cats[101];
    const char *from = "2025-01-01";
    tq_seed_rng("invalid_requests_name_the_field");
    tq_put_tenant(&tq_plain);
    tq_wait_caught_up(tq_plain.id);
    tq_day_add(d399, from, 399);
    tq_day_add(d400, from, 400);
    tq_day_add(d1826, from, 1826);
    tq_day_add(d1827, from, 1827);
    for (int i = 0; i < 101; i++) {
        snprintf(ids[i], sizeof(ids[i]), "k%03d", i);
        cats[i] = ids[i];
    }

    /* The tenant. */
    Tally__V1__GetOverviewRequest ov = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    ov.tenant_id = "nobody";
    REFUSE("unknown tenant", GetOverview, ov, TALLY_GRPC_NOT_FOUND, "tenant_id");
    Tally__V1__GetDashboardRequest dq = tq_dash_req(NULL, 0);
    dq.tenant_id = "nobody";
    REFUSE("unknown tenant", GetDashboard, dq, TALLY_GRPC_NOT_FOUND, "tenant_id");
    Tally__V1__GetVolumeTrendRequest tq = tq_trend_req(NULL, 0);
    tq.tenant_id = "bad tenant";
    REFUSE("malformed tenant", GetVolumeTrend, tq, TALLY_GRPC_INVALID_ARGUMENT, "tenant_id");
    tq.tenant_id = "";
    REFUSE("empty tenant", GetVolumeTrend, tq, TALLY_GRPC_INVALID_ARGUMENT, "tenant_id");

    /* Ranges, and their lengths: 400 days by day, 1827 otherwise. */
    const range_case ranges[] = {
        { "inverted range", K_TREND, "2026-03-10", "2026-03-09", G_DAY, "range" },
        { "inverted range", K_STATS, "2026-03-10", "2026-02-09", 0, "range" },
        { "only from_day", K_TREND, "2026-03-10", "", G_DAY, "range" },
        { "only to_day", K_DIST, "", "2026-03-10", 0, "range" },
        { "only from_day", K_AGENTS, "2026-03-10", "", 0, "range" },
        { "month 13", K_TREND, "2026-13-01", "2026-12-31", G_DAY, "range.from_day" },
        { "February 30", K_TREND, "2026-02-01", "2026-02-30", G_DAY, "range.to_day" },
        { "unpadded month", K_STATS, "2026-2-01", "2026-02-10", 0, "range.from_day" },
        { "no dashes", K_DIST, "2026-02-01", "20260210", 0, "range.to_day" },
        { "a word", K_AGENTS, "yesterday", "2026-02-10", 0, "range.from_day" },
        { "a trailing space", K_DASH, "2026-02-01", "2026-02-10 ", 0, "range.to_day" },
        { "400 days by day", K_TREND, from, d399, G_DAY, NULL },
        { "401 days by day", K_TREND, from, d400, G_DAY, "range" },
        { "401 days, granularity unset", K_TREND, from, d400, 0, "range" },
        { "1827 days by week or month", K_TREND, from, d1826, G_WEEK, NULL },
        { "1828 days by week or month", K_TREND, from, d1827, G_WEEK, "range" },
        { "1827 days by week or month", K_TREND, from, d1826, G_MONTH, NULL },
        { "1828 days by week or month", K_TREND, from, d1827, G_MONTH, "range" },
        { "1827 days", K_STATS, from, d1826, 0, NULL },
        { "1828 days", K_STATS, from, d1827, 0, "range" },
        { "1827 days", K_AGENTS, from, d1826, 0, NULL },
        { "1828 days", K_AGENTS, from, d1827, 0, "range" },
        { "1827 days", K_DIST, from, d1826, 0, NULL },
        { "1828 days", K_DIST, from, d1827, 0, "range" },
        { "401 days, dashboard by day", K_DASH, from, d400, G_DAY, "range" },
        { "401 days, dashboard granularity unset", K_DASH, from, d400, 0, "range" },
        { "1827 days, dashboard by month", K_DASH, from, d1826, G_MONTH, NULL },
        { "1828 days, dashboard by week", K_DASH, from, d1827, G_WEEK, "range" },
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
        run_range_case(&ranges[i]);
    Tally__V1__GetResolutionStatsRequest sq;
    Tally__V1__GetCategoryDistributionRequest cq;
    Tally__V1__GetAgentPerformanceRequest aq;

    /* Enums. */
    int unknown[] = { 9, 5, -1 };
    for (int i = 0; i < 3; i++) {
        char what[64];
        snprintf(what, sizeof(what), "enum value %d", unknown[i]);
        if (unknown[i] != 5) {
            tq = tq_trend_req(NULL, unknown[i]);
            REFUSE(what, GetVolumeTrend, tq, TALLY_GRPC_INVALID_ARGUMENT, "granularity");
            dq = tq_dash_req(NULL, unknown[i]);
            REFUSE(what, GetDashboard, dq, TALLY_GRPC_INVALID_ARGUMENT, "granularity");
        }
        sq = tq_stats_req(NULL, unknown[i]);
        REFUSE(what, GetResolutionStats, sq, TALLY_GRPC_INVALID_ARGUMENT, "group_by");
        aq = tq_agents_req(NULL, unknown[i], 0, "");
        REFUSE(what, GetAgentPerformance, aq, TALLY_GRPC_INVALID_ARGUMENT, "sort_by");
        dq = tq_dash_req(NULL, 0);
        dq.group_by = (Tally__V1__ResolutionGroupBy)unknown[i];
        REFUSE(what, GetDashboard, dq, TALLY_GRPC_INVALID_ARGUMENT, "group_by");
        dq = tq_dash_req(NULL, 0);
        dq.agent_sort_by = (Tally__V1__AgentSortBy)unknown[i];
        REFUSE(what, GetDashboard, dq, TALLY_GRPC_INVALID_ARGUMENT, "agent_sort_by");
    }
    tq = tq_trend_req(NULL, 4);
    REFUSE("granularity 4", GetVolumeTrend, tq, TALLY_GRPC_INVALID_ARGUMENT, "granularity");

    /* Limits: the largest valid values pass, one more is refused. */
    aq = tq_agents_req(NULL, 0, 500, "");
    V_OK("limit 500", GetAgentPerformance, get_agent_performance, aq);
    aq = tq_agents_req(NULL, 0, 501, "");
    REFUSE("limit 501", GetAgentPerformance, aq, TALLY_GRPC_INVALID_ARGUMENT, "limit");
    aq = tq_agents_req(NULL, 0, -1, "");
    REFUSE("limit -1", GetAgentPerformance, aq, TALLY_GRPC_INVALID_ARGUMENT, "limit");
    /* page_size, the AIP-158 name of limit: the same rules; both and different is refused. */
    aq = tq_agents_req(NULL, 0, 0, "");
    aq.page_size = 500;
    V_OK("page_size 500", GetAgentPerformance, get_agent_performance, aq);
    aq.page_size = 501;
    REFUSE("page_size 501", GetAgentPerformance, aq, TALLY_GRPC_INVALID_ARGUMENT, "page_size");
    aq.limit = aq.page_size = 20;
    V_OK("page_size and limit alike", GetAgentPerformance, get_agent_performance, aq);
    aq.limit = 10;
    REFUSE("page_size and limit differ", GetAgentPerformance, aq, TALLY_GRPC_INVALID_ARGUMENT,
           "page_size");
    cq = tq_dist_req(NULL, 100);
    V_OK("top_n 100", GetCategoryDistribution, get_category_distribution, cq);
    cq = tq_dist_req(NULL, 101);
    REFUSE("top_n 101", GetCategoryDistribution, cq, TALLY_GRPC_INVALID_ARGUMENT, "top_n");
    ov.tenant_id = (char *)tq_plain.id;
    ov.oldest_open_limit = 100;
    V_OK("oldest_open_limit 100", GetOverview, get_overview, ov);
    ov.oldest_open_limit = 101;
    REFUSE("oldest_open_limit 101", GetOverview, ov, TALLY_GRPC_INVALID_ARGUMENT,
           "oldest_open_limit");
    ov.oldest_open_limit = 0;
    dq = tq_dash_req(NULL, 0);
    dq.agent_limit = 501;
    REFUSE("agent_limit 501", GetDashboard, dq, TALLY_GRPC_INVALID_ARGUMENT, "agent_limit");
    dq = tq_dash_req(NULL, 0);
    dq.category_top_n = 101;
    REFUSE("category_top_n 101", GetDashboard, dq, TALLY_GRPC_INVALID_ARGUMENT, "category_top_n");
    dq = tq_dash_req(NULL, 0);
    dq.oldest_open_limit = 101;
    REFUSE("oldest_open_limit 101", GetDashboard, dq, TALLY_GRPC_INVALID_ARGUMENT,
           "oldest_open_limit");
    dq = tq_dash_req(NULL, 0);
    dq.agent_limit = 500;
    dq.category_top_n = 100;
    dq.oldest_open_limit = 100;
    V_OK("the dashboard's largest limits", GetDashboard, get_dashboard, dq);

    /* Page tokens: malformed, or made for another range, sort or direction. */
    aq = tq_agents_req(NULL, SORT_RESOLVED, 3, "");
    Tally__V1__GetAgentPerformanceReply *page =
        tq_call_ok(tq_sys.q, GC_DASHBOARD("GetAgentPerformance"), &aq.base,
                   &tally__v1__get_agent_performance_reply__descriptor, "a first page");
    cr_assert(page && page->performance && page->performance->next_page_token[0],
              "10 agents, 3 per page, and no next_page_token");
    const char *tok = page->performance->next_page_token;
    aq = tq_agents_req(NULL, SORT_RESOLVED, 3, tok);
    V_OK("the next page", GetAgentPerformance, get_agent_performance, aq);
    static const char *const garbage[] = { "garbage", "-1", "3.", "99999999999999999999.0",
                                           "\xff\xfe" };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        aq = tq_agents_req(NULL, SORT_RESOLVED, 3, garbage[i]);
        REFUSE("malformed page_token", GetAgentPerformance, aq, TALLY_GRPC_INVALID_ARGUMENT,
               "page_token");
    }
    aq = tq_agents_req(NULL, SORT_MEAN, 3, tok);
    REFUSE("page_token of another sort", GetAgentPerformance, aq, TALLY_GRPC_INVALID_ARGUMENT,
           "page_token");
    aq = tq_agents_req(NULL, SORT_RESOLVED, 3, tok);
    aq.ascending = true;
    REFUSE("page_token of another direction", GetAgentPerformance, aq, TALLY_GRPC_INVALID_ARGUMENT,
           "page_token");
    aq = tq_agents_req(tq_days("2026-01-01", "2026-01-31"), SORT_RESOLVED, 3, tok);
    REFUSE("page_token of another range", GetAgentPerformance, aq, TALLY_GRPC_INVALID_ARGUMENT,
           "page_token");
    call_free(page);

    /* Filters. */
    Tally__V1__Priority p0[] = { MEDIUM, 0 }, p9[] = { 9 }, pall[] = { LOW, MEDIUM, HIGH, URGENT };
    tq = tq_trend_req(NULL, 0);
    tq.filter = tq_filter_of(0, NULL, 2, p0);
    REFUSE("priority 0", GetVolumeTrend, tq, TALLY_GRPC_INVALID_ARGUMENT, "filter.priorities");
    sq = tq_stats_req(NULL, 0);
    sq.filter = tq_filter_of(0, NULL, 1, p9);
    REFUSE("priority 9", GetResolutionStats, sq, TALLY_GRPC_INVALID_ARGUMENT, "filter.priorities");
    cq = tq_dist_req(NULL, 0);
    cq.filter = tq_filter_of(0, NULL, 1, p9);
    REFUSE("priority 9", GetCategoryDistribution, cq, TALLY_GRPC_INVALID_ARGUMENT,
           "filter.priorities");
    dq = tq_dash_req(NULL, 0);
    dq.filter = tq_filter_of(0, NULL, 2, p0);
    REFUSE("priority 0", GetDashboard, dq, TALLY_GRPC_INVALID_ARGUMENT, "filter.priorities");
    tq.filter = tq_filter_of(101, cats, 0, NULL);
    REFUSE("101 categories", GetVolumeTrend, tq, TALLY_GRPC_INVALID_ARGUMENT,
           "filter.category_ids");
    cq.filter = tq_filter_of(101, cats, 0, NULL);
    REFUSE("101 categories", GetCategoryDistribution, cq, TALLY_GRPC_INVALID_ARGUMENT,
           "filter.category_ids");
    dq.filter = tq_filter_of(101, cats, 0, NULL);
    REFUSE("101 categories", GetDashboard, dq, TALLY_GRPC_INVALID_ARGUMENT, "filter.category_ids");
    sq.filter = tq_filter_of(100, cats, 4, pall);
    V_OK("100 categories and every priority", GetResolutionStats, get_resolution_stats, sq);
    /* The largest request: 5 years by week, 100 categories, every priority. */
    tq = tq_trend_req(tq_days(from, d1826), G_WEEK);
    tq.filter = tq_filter_of(100, cats, 4, pall);
    V_OK("5 years by week, 100 categories, 4 priorities", GetVolumeTrend, get_volume_trend, tq);
    sq = tq_stats_req(tq_days(from, d1826), BY_BOTH);
    sq.filter = tq_filter_of(100, cats, 4, pall);
    V_OK("5 years, 100 categories, 4 priorities, by both", GetResolutionStats, get_resolution_stats,
         sq);
    dq = tq_dash_req(tq_days(from, d1826), G_MONTH);
    dq.filter = tq_filter_of(100, cats, 4, pall);
    dq.group_by = BY_BOTH;
    V_OK("5 years, 100 categories, 4 priorities, dashboard", GetDashboard, get_dashboard, dq);
    const char *badcat[] = { "billing", "no spaces" };
    sq.filter = tq_filter_of(2, badcat, 0, NULL);
    REFUSE("a malformed category id", GetResolutionStats, sq, TALLY_GRPC_INVALID_ARGUMENT,
           "filter.category_ids");

    /* Consistency tokens. */
    Tally__V1__ConsistencyToken ct = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    ct.complaint_id = 5;
    ct.version = 0;
    ov.consistency = &ct;
    REFUSE("version 0 with a complaint", GetOverview, ov, TALLY_GRPC_INVALID_ARGUMENT,
           "consistency.version");
    tq = tq_trend_req(NULL, 0);
    tq.consistency = &ct;
    REFUSE("version 0 with a complaint", GetVolumeTrend, tq, TALLY_GRPC_INVALID_ARGUMENT,
           "consistency.version");
    dq = tq_dash_req(NULL, 0);
    dq.consistency = &ct;
    REFUSE("version 0 with a complaint", GetDashboard, dq, TALLY_GRPC_INVALID_ARGUMENT,
           "consistency.version");
    ct.version = -2;
    aq = tq_agents_req(NULL, 0, 0, "");
    aq.consistency = &ct;
    REFUSE("version -2 with a complaint", GetAgentPerformance, aq, TALLY_GRPC_INVALID_ARGUMENT,
           "consistency.version");
    ct.complaint_id = -3;
    ct.version = 1;
    cq = tq_dist_req(NULL, 0);
    cq.consistency = &ct;
    REFUSE("complaint_id -3", GetCategoryDistribution, cq, TALLY_GRPC_INVALID_ARGUMENT,
           "consistency.complaint_id");
    ct.complaint_id = 0;
    ct.version = 7;
    ov.consistency = &ct;
    V_OK("complaint_id 0: no token (version ignored)", GetOverview, get_overview, ov);
    ov.consistency = NULL;
    ov.fail_if_stale = true;
    V_OK("fail_if_stale without a token", GetOverview, get_overview, ov);
}
