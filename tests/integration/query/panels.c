/*
 * every_panel_equals_sql_over_random_histories: seeded random histories (TALLY_TEST_SEED repeats
 * a run) of tenants in five time zones, imported over about 400 days, live commands today,
 * renames; then every panel over many ranges, granularities, groupings, sorts (paged 3 by 3) and
 * filters equals the SQL oracle (oracle_sql.c); GetDashboard equals the single panels, also under
 * 24 concurrent calls. A tenant with the same ids and no complaints sees only zeros, and a token
 * of another tenant's complaint stays stale. One tenant has ids of the maximal 64 bytes.
 */
#include "query_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the panels, requested ------------------------------------------------------------------ */

static void run_trend(const char *tenant, const qrange *r, const char *rname, int gran,
                      const flt *f)
{
    char what[256];
    Tally__V1__GetVolumeTrendRequest q = TALLY__V1__GET_VOLUME_TREND_REQUEST__INIT;
    Tally__V1__DateRange dr;
    Tally__V1__Filter fm;
    snprintf(what, sizeof(what), "%s GetVolumeTrend %s %s, %s", tenant, tq_gran_name(gran), rname,
             f ? f->name : "no filter");
    q.tenant_id = (char *)tenant;
    q.range = tq_range_msg(&dr, r, true);
    q.filter = tq_filter_msg(&fm, f);
    q.granularity = (Tally__V1__Granularity)gran;
    Tally__V1__GetVolumeTrendReply *rep =
        tq_call_ok(tq_sys.q, GC_DASHBOARD("GetVolumeTrend"), &q.base,
                   &tally__v1__get_volume_trend_reply__descriptor, what);
    if (rep) {
        tq_check_fresh(what, tenant, rep->freshness);
        tq_check_trend(what, tenant, r, gran, f, rep->trend, rep->freshness->server_time_ms);
    }
    call_free(rep);
}

static void run_stats(const char *tenant, const qrange *r, const char *rname, int group_by,
                      const flt *f)
{
    char what[256];
    Tally__V1__GetResolutionStatsRequest q = TALLY__V1__GET_RESOLUTION_STATS_REQUEST__INIT;
    Tally__V1__DateRange dr;
    Tally__V1__Filter fm;
    snprintf(what, sizeof(what), "%s GetResolutionStats group_by %d %s, %s", tenant, group_by,
             rname, f ? f->name : "no filter");
    q.tenant_id = (char *)tenant;
    q.range = tq_range_msg(&dr, r, false);
    q.filter = tq_filter_msg(&fm, f);
    q.group_by = (Tally__V1__ResolutionGroupBy)group_by;
    Tally__V1__GetResolutionStatsReply *rep =
        tq_call_ok(tq_sys.q, GC_DASHBOARD("GetResolutionStats"), &q.base,
                   &tally__v1__get_resolution_stats_reply__descriptor, what);
    if (rep) {
        tq_check_fresh(what, tenant, rep->freshness);
        tq_check_stats(what, tenant, r, group_by, f, rep->stats, rep->freshness->server_time_ms);
    }
    call_free(rep);
}

static void run_agents(const char *tenant, const qrange *r, const char *rname, int sort_by,
                       bool asc, int limit)
{
    char what[256];
    snprintf(what, sizeof(what), "%s GetAgentPerformance sort_by %d %s limit %d %s", tenant,
             sort_by, asc ? "ascending" : "descending", limit, rname);
    Tally__V1__GetAgentPerformanceReply *rep =
        tq_agents_page(tenant, r, sort_by, asc, limit, NULL, what);
    if (rep) {
        tq_check_fresh(what, tenant, rep->freshness);
        tq_check_agent_pages(what, tenant, r, sort_by, asc, limit, rep->performance,
                             rep->freshness->server_time_ms);
    }
    call_free(rep);
}

static void run_distribution(const char *tenant, const qrange *r, const char *rname, const flt *f,
                             int top_n)
{
    char what[256];
    Tally__V1__GetCategoryDistributionRequest q =
        TALLY__V1__GET_CATEGORY_DISTRIBUTION_REQUEST__INIT;
    Tally__V1__DateRange dr;
    Tally__V1__Filter fm;
    snprintf(what, sizeof(what), "%s GetCategoryDistribution top_n %d %s, %s", tenant, top_n, rname,
             f ? f->name : "no filter");
    q.tenant_id = (char *)tenant;
    q.range = tq_range_msg(&dr, r, true);
    q.filter = tq_filter_msg(&fm, f);
    q.top_n = top_n;
    Tally__V1__GetCategoryDistributionReply *rep =
        tq_call_ok(tq_sys.q, GC_DASHBOARD("GetCategoryDistribution"), &q.base,
                   &tally__v1__get_category_distribution_reply__descriptor, what);
    if (rep) {
        tq_check_fresh(what, tenant, rep->freshness);
        tq_check_distribution(what, tenant, r, f, top_n, rep->distribution,
                              rep->freshness->server_time_ms);
    }
    call_free(rep);
}

static void run_overview(const char *tenant, int limit)
{
    char what[128];
    snprintf(what, sizeof(what), "%s GetOverview oldest_open_limit %d", tenant, limit);
    Tally__V1__GetOverviewReply *rep = tq_overview(tenant, limit, NULL, false, what);
    if (rep) {
        tq_check_fresh(what, tenant, rep->freshness);
        tq_check_overview(what, tenant, limit, rep->overview, rep->freshness->server_time_ms);
    }
    call_free(rep);
}

/* A limit that cuts through a group of open complaints created in the same millisecond, or 0. */
static int limit_inside_a_tie(const char *tenant)
{
    const char *p[] = { tenant };
    PGresult *r = tq_sql("SELECT " CREATED_MS " FROM complaints WHERE tenant_id = $1"
                         " AND status IN (1, 2) ORDER BY 1, complaint_id LIMIT 100",
                         1, p);
    int limit = 0;
    for (int i = 0; i + 1 < PQntuples(r) && !limit; i++)
        if (tq_num(r, i, 0) == tq_num(r, i + 1, 0))
            limit = i + 1;
    PQclear(r);
    return limit;
}

/* Panel a (from the first answer) and b (from another) encode to the same bytes. */
static void pack_cmp(const char *what, const char *panel, const ProtobufCMessage *a,
                     const ProtobufCMessage *b)
{
    if (!a || !b) {
        tq_bad("%s: %s missing", what, panel);
        return;
    }
    size_t la = protobuf_c_message_get_packed_size(a), lb = protobuf_c_message_get_packed_size(b);
    uint8_t *ba = malloc(la + 1), *bb = malloc(lb + 1);
    cr_assert(ba && bb);
    protobuf_c_message_pack(a, ba);
    protobuf_c_message_pack(b, bb);
    if (la != lb || memcmp(ba, bb, la) != 0)
        tq_bad("%s: %s differs between the answers", what, panel);
    free(ba);
    free(bb);
}

/* The overview's ages follow each answer's own clock: zeroed before comparing answers. */
static void zero_ages(Tally__V1__Overview *o)
{
    for (size_t i = 0; o && i < o->n_oldest_open; i++)
        o->oldest_open[i]->age_seconds = 0;
}

typedef struct dash_opts {
    const qrange *r;
    const char *rname;
    const flt *f;
    int gran, group_by, sort_by, limit, top_n, oldest;
    bool asc;
} dash_opts;

/*
 * GetDashboard: every panel equals SQL, and the single panels asked with the same options
 * right after give the same numbers (nothing is written in between).
 */
static void run_dashboard(const char *tenant, const dash_opts *o)
{
    char what[256];
    Tally__V1__GetDashboardRequest q = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    Tally__V1__DateRange dr;
    Tally__V1__Filter fm;
    snprintf(what, sizeof(what),
             "%s GetDashboard %s %s, group_by %d, sort_by %d %s limit %d, top_n %d, oldest %d, "
             "%s (and the single panels)",
             tenant, tq_gran_name(o->gran), o->rname, o->group_by, o->sort_by,
             o->asc ? "ascending" : "descending", o->limit, o->top_n, o->oldest,
             o->f ? o->f->name : "no filter");
    q.tenant_id = (char *)tenant;
    q.range = tq_range_msg(&dr, o->r, false);
    q.filter = tq_filter_msg(&fm, o->f);
    q.granularity = (Tally__V1__Granularity)o->gran;
    q.group_by = (Tally__V1__ResolutionGroupBy)o->group_by;
    q.agent_sort_by = (Tally__V1__AgentSortBy)o->sort_by;
    q.agent_ascending = o->asc;
    q.agent_limit = o->limit;
    q.category_top_n = o->top_n;
    q.oldest_open_limit = o->oldest;
    Tally__V1__GetDashboardReply *rep =
        tq_call_ok(tq_sys.q, GC_DASHBOARD("GetDashboard"), &q.base,
                   &tally__v1__get_dashboard_reply__descriptor, what);
    if (!rep)
        return;
    int64_t now = rep->freshness->server_time_ms;
    tq_check_fresh(what, tenant, rep->freshness);
    tq_check_overview(what, tenant, o->oldest, rep->overview, now);
    tq_check_trend(what, tenant, o->r, o->gran, o->f, rep->volume_trend, now);
    tq_check_stats(what, tenant, o->r, o->group_by, o->f, rep->resolution_stats, now);
    tq_check_agent_pages(what, tenant, o->r, o->sort_by, o->asc, o->limit, rep->agent_performance,
                         now);
    tq_check_distribution(what, tenant, o->r, o->f, o->top_n, rep->category_distribution, now);

    /* The same options, panel by panel. */
    Tally__V1__GetOverviewReply *ov = tq_overview(tenant, o->oldest, NULL, false, what);
    Tally__V1__GetVolumeTrendRequest tq = TALLY__V1__GET_VOLUME_TREND_REQUEST__INIT;
    tq.tenant_id = q.tenant_id;
    tq.range = q.range;
    tq.filter = q.filter;
    tq.granularity = q.granularity;
    Tally__V1__GetVolumeTrendReply *tr =
        tq_call_ok(tq_sys.q, GC_DASHBOARD("GetVolumeTrend"), &tq.base,
                   &tally__v1__get_volume_trend_reply__descriptor, what);
    Tally__V1__GetResolutionStatsRequest sq = TALLY__V1__GET_RESOLUTION_STATS_REQUEST__INIT;
    sq.tenant_id = q.tenant_id;
    sq.range = q.range;
    sq.filter = q.filter;
    sq.group_by = q.group_by;
    Tally__V1__GetResolutionStatsReply *st =
        tq_call_ok(tq_sys.q, GC_DASHBOARD("GetResolutionStats"), &sq.base,
                   &tally__v1__get_resolution_stats_reply__descriptor, what);
    Tally__V1__GetAgentPerformanceReply *ag =
        tq_agents_page(tenant, o->r, o->sort_by, o->asc, o->limit, NULL, what);
    Tally__V1__GetCategoryDistributionRequest cq =
        TALLY__V1__GET_CATEGORY_DISTRIBUTION_REQUEST__INIT;
    cq.tenant_id = q.tenant_id;
    cq.range = q.range;
    cq.filter = q.filter;
    cq.top_n = q.category_top_n;
    Tally__V1__GetCategoryDistributionReply *cd =
        tq_call_ok(tq_sys.q, GC_DASHBOARD("GetCategoryDistribution"), &cq.base,
                   &tally__v1__get_category_distribution_reply__descriptor, what);
    bool same_day = ov && rep->overview && ov->overview &&
                    strcmp(rep->overview->today, ov->overview->today) == 0;
    if (same_day) { /* (a local midnight between the calls would change the default range) */
        zero_ages(rep->overview);
        zero_ages(ov->overview);
        pack_cmp(what, "overview", &rep->overview->base, &ov->overview->base);
        if (tr)
            pack_cmp(what, "volume_trend", &rep->volume_trend->base, &tr->trend->base);
        if (st)
            pack_cmp(what, "resolution_stats", &rep->resolution_stats->base, &st->stats->base);
        if (ag)
            pack_cmp(what, "agent_performance", &rep->agent_performance->base,
                     &ag->performance->base);
        if (cd)
            pack_cmp(what, "category_distribution", &rep->category_distribution->base,
                     &cd->distribution->base);
    }
    call_free(ov);
    call_free(tr);
    call_free(st);
    call_free(ag);
    call_free(cd);
    call_free(rep);
}

/* The tenant-local ranges asked for, around the tenant's today T. */
enum {
    R_DEFAULT,
    R_FULL,
    R_CUT,
    R_INSIDE,
    R_TODAY,
    R_FUTURE,
    R_NEWYEAR,
    R_LEAP,
    R_EPOCH,
    R_Y1000,
    R_Y9999,
    R_5Y,
    R_N
};
static const char *const range_names[R_N] = {
    "the default range",
    "T-399..T",
    "T-75..T-20",
    "T-45..T-41",
    "T..T",
    "T+1..T+40",
    "Dec 20..Jan 15 of the last new year",
    "2028-02-20..2028-03-05",
    "1969-12-20..1970-01-12",
    "1000-01-01..1000-02-10",
    "9999-11-20..9999-12-31",
    "T-1826..T",
};

static void make_ranges(const char *tenant, qrange *r)
{
    char today[11];
    const char *p[] = { tenant };
    tq_sql_str(
        today, sizeof(today),
        "SELECT (now() AT TIME ZONE time_zone)::date::text FROM tenants WHERE tenant_id = $1", 1,
        p);
    static const int off[R_N][2] = {
        [R_FULL] = { -399, 0 }, [R_CUT] = { -75, -20 }, [R_INSIDE] = { -45, -41 },
        [R_TODAY] = { 0, 0 },   [R_FUTURE] = { 1, 40 }, [R_5Y] = { -1826, 0 },
    };
    static const char *const fixed[R_N][2] = {
        [R_LEAP] = { "2028-02-20", "2028-03-05" },
        [R_EPOCH] = { "1969-12-20", "1970-01-12" },
        [R_Y1000] = { "1000-01-01", "1000-02-10" },
        [R_Y9999] = { "9999-11-20", "9999-12-31" },
    };
    memset(r, 0, sizeof(qrange) * R_N);
    for (int i = R_FULL; i < R_N; i++) {
        if (fixed[i][0]) {
            snprintf(r[i].from, 11, "%s", fixed[i][0]);
            snprintf(r[i].to, 11, "%s", fixed[i][1]);
        } else if (i != R_NEWYEAR) {
            tq_day_add(r[i].from, today, off[i][0]);
            tq_day_add(r[i].to, today, off[i][1]);
        }
    }
    /* The last new year inside the imported history (which reaches back about 395 days). */
    const char *t[] = { today };
    tq_sql_str(r[R_NEWYEAR].from, 11,
               "SELECT make_date(extract(year FROM $1::date - 30)::int - 1, 12, 20)::text", 1, t);
    tq_sql_str(r[R_NEWYEAR].to, 11,
               "SELECT make_date(extract(year FROM $1::date - 30)::int, 1, 15)::text", 1, t);
}

/* Everything asked of one tenant; light: the empty tenant gets a smaller set. */
static void compare_tenant(const tdef *t, bool light)
{
    qrange r[R_N];
    const flt *filters[] = { &F_CATS, &F_PRIOS, &F_BOTH };
    make_ranges(t->id, r);

    /* Overview: the default limit, 1, 100, and a limit inside a tie of creation times. */
    run_overview(t->id, 0);
    run_overview(t->id, 100);
    if (!light) {
        run_overview(t->id, 1);
        int cut = limit_inside_a_tie(t->id);
        if (cut)
            run_overview(t->id, cut);
    }

    /* Trend: every range by day (except 5 years), week and month; filters on some. */
    for (int i = 0; i < R_N; i++) {
        if (light && i != R_FULL && i != R_DEFAULT && i != R_EPOCH)
            continue;
        if (i != R_5Y)
            run_trend(t->id, &r[i], range_names[i], G_DAY, NULL);
        run_trend(t->id, &r[i], range_names[i], G_WEEK, NULL);
        run_trend(t->id, &r[i], range_names[i], G_MONTH, NULL);
    }
    run_trend(t->id, &r[R_CUT], range_names[R_CUT], 0, NULL);
    run_trend(t->id, &r[R_FULL], range_names[R_FULL], G_WEEK, &F_EMPTY);
    for (size_t k = 0; k < 3 && !light; k++) {
        run_trend(t->id, &r[R_DEFAULT], range_names[R_DEFAULT], G_DAY, filters[k]);
        run_trend(t->id, &r[R_FULL], range_names[R_FULL], G_WEEK, filters[k]);
        run_trend(t->id, &r[R_CUT], range_names[R_CUT], G_MONTH, filters[k]);
        run_trend(t->id, &r[R_NEWYEAR], range_names[R_NEWYEAR], G_DAY, filters[k]);
    }

    /* Resolution statistics: every grouping over several ranges; filters on some. */
    static const int sranges[] = { R_DEFAULT, R_FULL, R_CUT,   R_INSIDE,
                                   R_TODAY,   R_5Y,   R_EPOCH, R_Y9999 };
    for (size_t i = 0; i < sizeof(sranges) / sizeof(sranges[0]); i++)
        for (int g = 0; g <= BY_BOTH; g++)
            if (!light || (sranges[i] == R_FULL && (g == BY_NONE || g == BY_BOTH)))
                run_stats(t->id, &r[sranges[i]], range_names[sranges[i]], g, NULL);
    for (size_t k = 0; k < 3 && !light; k++) {
        run_stats(t->id, &r[R_FULL], range_names[R_FULL], BY_BOTH, filters[k]);
        run_stats(t->id, &r[R_CUT], range_names[R_CUT], BY_PRIO, filters[k]);
        run_stats(t->id, &r[R_DEFAULT], range_names[R_DEFAULT], BY_CAT, filters[k]);
        run_stats(t->id, &r[R_INSIDE], range_names[R_INSIDE], BY_NONE, filters[k]);
    }

    /* Agents: every sort both ways, 3 per page. */
    static const int aranges[] = { R_FULL, R_DEFAULT, R_CUT };
    run_agents(t->id, &r[R_EPOCH], range_names[R_EPOCH], SORT_MEAN, true, 4);
    run_agents(t->id, &r[R_Y1000], range_names[R_Y1000], SORT_OPEN, false, 4);
    for (size_t i = 0; i < (light ? 1 : sizeof(aranges) / sizeof(aranges[0])); i++)
        for (int s = 0; s <= SORT_ID; s++)
            for (int asc = 0; asc < 2; asc++)
                run_agents(t->id, &r[aranges[i]], range_names[aranges[i]], s, asc, 3);
    run_agents(t->id, &r[R_FULL], range_names[R_FULL], SORT_MEAN, false, 0);

    /* Categories: top_n below the number of categories ("other"), the default, 100; filters. */
    static const int cranges[] = { R_DEFAULT, R_FULL, R_CUT, R_5Y, R_EPOCH, R_Y9999 };
    static const int tops[] = { 0, 1, 3, 100 };
    for (size_t i = 0; i < sizeof(cranges) / sizeof(cranges[0]); i++)
        for (size_t k = 0; k < 4; k++)
            if (!light || (cranges[i] == R_FULL && tops[k] == 3))
                run_distribution(t->id, &r[cranges[i]], range_names[cranges[i]], NULL, tops[k]);
    for (size_t k = 0; k < 3 && !light; k++) {
        run_distribution(t->id, &r[R_FULL], range_names[R_FULL], filters[k], 2);
        run_distribution(t->id, &r[R_CUT], range_names[R_CUT], filters[k], 0);
    }

    /* The dashboard, with defaults and with every option set. */
    dash_opts d1 = { &r[R_DEFAULT], range_names[R_DEFAULT], NULL, 0, 0, 0, 0, 0, 0, false };
    dash_opts d2 = { &r[R_CUT], range_names[R_CUT], &F_BOTH, G_WEEK, BY_CAT, SORT_MEAN, 3, 2, 5,
                     true };
    dash_opts d3 = {
        &r[R_FULL], range_names[R_FULL], &F_CATS, G_MONTH, BY_BOTH, SORT_OPEN, 4, 3, 100, false
    };
    run_dashboard(t->id, &d1);
    if (!light) {
        run_dashboard(t->id, &d2);
        run_dashboard(t->id, &d3);
    }
}

/* A tenant without complaints: zeros everywhere, whatever the other tenants (same ids) did. */
static void expect_nothing(const tdef *t)
{
    qrange r[R_N];
    make_ranges(t->id, r);
    Tally__V1__GetDashboardRequest q = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    Tally__V1__DateRange dr;
    q.tenant_id = (char *)t->id;
    q.range = tq_range_msg(&dr, &r[R_FULL], false);
    q.granularity = G_MONTH;
    q.group_by = BY_BOTH;
    Tally__V1__GetDashboardReply *rep =
        tq_call_ok(tq_sys.q, GC_DASHBOARD("GetDashboard"), &q.base,
                   &tally__v1__get_dashboard_reply__descriptor, "the empty tenant's dashboard");
    if (!rep)
        return;
    const Tally__V1__Overview *o = rep->overview;
    const Tally__V1__AgentPerformance *ap = rep->agent_performance;
    int64_t sum = 0;
    for (size_t i = 0; ap && i < ap->n_agents; i++)
        sum += ap->agents[i]->resolved + ap->agents[i]->open_assigned;
    if (!o || !o->status_counts || o->backlog || o->created_today || o->resolved_today ||
        o->n_oldest_open || o->status_counts->resolved || o->status_counts->closed ||
        rep->volume_trend->total_created || rep->volume_trend->total_resolved ||
        rep->resolution_stats->overall->count || rep->resolution_stats->n_groups ||
        rep->category_distribution->total || rep->category_distribution->n_categories || sum)
        tq_bad("tenant %s has no complaints, yet its dashboard shows some (another tenant's)",
               t->id);
    call_free(rep);
}

/* Renames a category and an agent: the panels show the names as they are now. */
static void rename_some(const tdef *t)
{
    char name[128];
    Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    snprintf(name, sizeof(name), "%s of %s, renamed", t->cats[0], t->id);
    pc.tenant_id = (char *)t->id;
    pc.category_id = (char *)t->cats[0];
    pc.name = name;
    call_free(tq_cmd_ok(GC_COMMANDS("PutCategory"), &pc.base,
                        &tally__v1__put_category_reply__descriptor));
    Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
    snprintf(name, sizeof(name), "agent %s of %s, renamed", t->agents[0], t->id);
    pa.tenant_id = (char *)t->id;
    pa.agent_id = (char *)t->agents[0];
    pa.name = name;
    call_free(
        tq_cmd_ok(GC_COMMANDS("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor));
}

/* A tenant whose ids (tenant, categories, agents) are all 64 bytes long, the longest allowed. */
static char long_ids[8][65];
static tdef longest = { NULL, "America/St_Johns", { NULL }, { NULL }, 60, NULL };

static void make_longest(void)
{
    static const char *const stem[8] = { "tenant",  "cat-a",   "cat-b",   "cat-c",
                                         "agent-a", "agent-b", "agent-c", "agent-d" };
    for (int i = 0; i < 8; i++) {
        snprintf(long_ids[i], sizeof(long_ids[i]), "%s.", stem[i]);
        for (size_t n = strlen(long_ids[i]); n < 64; n++)
            long_ids[i][n] = (char)('a' + (n + (size_t)i) % 26);
        long_ids[i][64] = '\0';
    }
    longest.id = long_ids[0];
    for (int i = 0; i < 3; i++)
        longest.cats[i] = long_ids[1 + i];
    for (int i = 0; i < 4; i++)
        longest.agents[i] = long_ids[4 + i];
}

/*
 * The same dashboard asked 24 times at once (spread over query-svc's workers): every answer has
 * the panels of the one asked alone.
 */
static void expect_same_under_concurrency(const tdef *t)
{
    enum { N = 24 };
    char what[128];
    qrange r[R_N];
    gc_result outs[N];
    make_ranges(t->id, r);
    snprintf(what, sizeof(what), "%s: %d GetDashboard calls at once", t->id, N);
    Tally__V1__GetDashboardRequest q = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    Tally__V1__DateRange dr;
    Tally__V1__Filter fm;
    q.tenant_id = (char *)t->id;
    q.range = tq_range_msg(&dr, &r[R_CUT], false);
    q.filter = tq_filter_msg(&fm, &F_PRIOS);
    q.granularity = G_WEEK;
    q.group_by = BY_BOTH;
    q.agent_sort_by = SORT_MEAN;
    q.agent_limit = 4;
    q.category_top_n = 2;
    q.oldest_open_limit = 20;
    Tally__V1__GetDashboardReply *one =
        tq_call_ok(tq_sys.q, GC_DASHBOARD("GetDashboard"), &q.base,
                   &tally__v1__get_dashboard_reply__descriptor, what);
    if (!one)
        return;
    zero_ages(one->overview);
    cr_assert_eq(
        gc_call_many(tq_sys.q, GC_DASHBOARD("GetDashboard"), &q.base, N, DEADLINE_MS, outs), 0);
    tq_ncalls += N;
    for (int i = 0; i < N; i++) {
        Tally__V1__GetDashboardReply *rep =
            outs[i].code == TALLY_GRPC_OK
                ? tally__v1__get_dashboard_reply__unpack(NULL, outs[i].len, outs[i].data)
                : NULL;
        if (!rep) {
            tq_bad("%s: call %d gave %s \"%s\"", what, i, tally_grpc_code_name(outs[i].code),
                   outs[i].details);
        } else if (rep->overview && strcmp(rep->overview->today, one->overview->today) == 0) {
            zero_ages(rep->overview);
            pack_cmp(what, "overview", &one->overview->base, &rep->overview->base);
            pack_cmp(what, "volume_trend", &one->volume_trend->base, &rep->volume_trend->base);
            pack_cmp(what, "resolution_stats", &one->resolution_stats->base,
                     &rep->resolution_stats->base);
            pack_cmp(what, "agent_performance", &one->agent_performance->base,
                     &rep->agent_performance->base);
            pack_cmp(what, "category_distribution", &one->category_distribution->base,
                     &rep->category_distribution->base);
        }
        call_free(rep);
        gc_result_release(&outs[i]);
    }
    call_free(one);
}

/* A token of a complaint of tenant a, used with tenant b: never applied in b's read model. */
static void expect_foreign_token_stale(const tdef *a, const tdef *b)
{
    Tally__V1__ConsistencyToken tok = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    gc_result r;
    cr_assert(tq_pick(a->id, "true", &tok.complaint_id, &tok.version));
    Tally__V1__GetOverviewRequest q = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    q.tenant_id = (char *)b->id;
    q.consistency = &tok;
    cr_assert_eq(gc_call(tq_sys.q, GC_DASHBOARD("GetOverview"), &q.base, NULL, 1000, &r), 0);
    Tally__V1__GetOverviewReply *rep =
        r.code == TALLY_GRPC_OK ? tally__v1__get_overview_reply__unpack(NULL, r.len, r.data) : NULL;
    if (!rep || !rep->freshness->stale || rep->freshness->token_applied_version != 0)
        tq_bad("tenant %s with a token of tenant %s's complaint %" PRId64 " version %" PRId64
               ": %s, stale %d, token_applied_version %" PRId64 " (want OK, stale, 0)",
               b->id, a->id, tok.complaint_id, tok.version, tally_grpc_code_name(r.code),
               rep ? rep->freshness->stale : -1, rep ? rep->freshness->token_applied_version : -1);
    gc_result_release(&r);
    call_free(rep);
}

Test(query, every_panel_equals_sql_over_random_histories)
{
    tq_seed_rng("every_panel_equals_sql_over_random_histories");
    make_longest();
    for (size_t i = 0; i < NTENANTS; i++)
        tq_put_tenant(&tq_tenants[i]);
    tq_put_tenant(&longest);
    for (size_t i = 0; i < NTENANTS; i++)
        if (tq_tenants[i].complaints)
            tq_import_history(&tq_tenants[i]);
    tq_import_history(&longest);
    for (size_t i = 0; i < NTENANTS; i++)
        if (tq_tenants[i].complaints)
            tq_live_commands(&tq_tenants[i]);
    tq_live_commands(&longest);
    rename_some(&tq_tenants[0]);
    rename_some(&tq_tenants[2]);
    for (size_t i = 0; i < NTENANTS; i++)
        tq_wait_caught_up(tq_tenants[i].id);
    tq_wait_caught_up(longest.id);
    tq_sql_snapshot();
    for (size_t i = 0; i < NTENANTS; i++) {
        const char *p[] = { tq_tenants[i].id };
        PGresult *r = tq_sql("SELECT (SELECT count(*) FROM complaints WHERE tenant_id = $1),"
                             " (SELECT count(*) FROM events WHERE tenant_id = $1),"
                             " (SELECT count(*) FROM res_m WHERE tenant_id = $1),"
                             " (SELECT count(*) FROM res_m WHERE tenant_id = $1 AND agent <> ''),"
                             " (SELECT count(*) FROM complaints WHERE tenant_id = $1"
                             "  AND status IN (1, 2))",
                             1, p);
        fprintf(stderr,
                "test_query: tenant %s (%s): %s complaints, %s events, %s resolutions (%s by "
                "an agent), %s open; a limit inside a tie: %d\n",
                tq_tenants[i].id, tq_tenants[i].tz, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
                PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4),
                limit_inside_a_tie(tq_tenants[i].id));
        PQclear(r);
    }
    for (size_t i = 0; i < NTENANTS; i++)
        compare_tenant(&tq_tenants[i], tq_tenants[i].complaints == 0);
    compare_tenant(&longest, true);
    expect_nothing(&tq_tenants[NTENANTS - 1]);
    expect_foreign_token_stale(&tq_tenants[0], &tq_tenants[1]);
    for (size_t i = 0; i < NTENANTS; i++)
        expect_same_under_concurrency(&tq_tenants[i]);
}
