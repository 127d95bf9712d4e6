/*
 * bench-queryload: a gRPC load generator for the tally.v1.Dashboard RPCs (query-bench.sh,
 * bench/run), and for grpc.health.v1.Health/Check on the same port (--method Check: the
 * runtime's cost of a call without the query, the reference for GetOverview).
 *
 * Two ways to load the server, over --connections HTTP/2 connections (each channel has its own
 * subchannel pool, so its own TCP connection), both bench/load.h's loops:
 *
 * - Closed loop (--concurrency C): C calls always outstanding, slot i on connection i % N; each
 *   completion at once starts the next call in its slot. Calls that complete during the --duration
 * window after the
 *   --warmup are measured, latency from start to completion. This finds the saturation rate.
 * - Open loop (--rate R): calls are due at fixed intervals of 1/R s whatever the server does,
 *   and a call's latency is measured from the moment it was due, not from the moment it went
 *   out, so a server (or client) that falls behind shows it in the latency instead of slowing
 *   the load down (no coordinated omission); call k goes on connection k % N. Calls due during the
 * window are measured; every one of them is awaited. The client polls its queue without sleeping
 * for the last --spin-us before each due time, because the queue's timed wait wakes up to a
 * millisecond late.
 *
 * All calls go through one completion queue driven by this one thread (gRPC's own threads do
 * the rest). The request is built once from the flags and sent unchanged (one request per
 * tenant with a comma-separated --tenant, used in turn). Percentiles are nearest-rank over
 * every measured call, exact. Client CPU is this process's user + system time (all threads)
 * over the window.
 *
 * Prints one line on stdout, "key=value" words, e.g.
 *   bench-queryload: method=GetDashboard mode=closed concurrency=4 connections=1 duration_s=10
 *   requests=12345 errors=0 rate=1234.5 p50_ms=1.234 p90_ms=1.5 p99_ms=2.1 p999_ms=4.2 max_ms=9.8
 *   client_cpu_pct=35.1 client_us_per_req=284.3
 * (one line; open loop adds target_rate and send_lag_p99_ms, the lateness of the sends
 * themselves). errors counts the failed calls of every phase, warm-up included, also by status
 * code ("errors=3 UNAVAILABLE=2 ..."); the first message of each code goes to stderr, and any
 * error makes the exit code 1.
 *
 * --samples FILE also writes every measured latency (ms, sorted, one a line), for charts.
 *
 * --once makes a single call and prints the reply's main figures, one "name=value" per line
 * (the benchmark checks them for a sane, non-empty read model); exit 1 if the call fails.
 * Exit 2: bad usage or a setup failure.
 */
#define _GNU_SOURCE /* strptime */
#include "args.h"
#include "err.h"
#include "gclient.h"
#include "load.h"
#include "tally/v1/dashboard.pb-c.h"

#include <grpc/byte_buffer_reader.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SERVICE         GC_DASHBOARD("")
#define MAX_CONCURRENCY 10000
#define MAX_CONNECTIONS LOAD_CONNECTIONS_MAX
#define MAX_TENANTS     64
#define MAX_FILTER      16
#define MAX_REQUEST     4096

enum method { M_DASHBOARD, M_OVERVIEW, M_TREND, M_RESOLUTION, M_AGENTS, M_CATEGORIES, M_HEALTH };

static const char *const method_names[] = { "GetDashboard",
                                            "GetOverview",
                                            "GetVolumeTrend",
                                            "GetResolutionStats",
                                            "GetAgentPerformance",
                                            "GetCategoryDistribution",
                                            "Check" };
#define METHODS      7
#define HEALTH_CHECK "/grpc.health.v1.Health/Check" /* the runtime's own, on the same port */

/* What the flags ask for. */
typedef struct options {
    const char *target;
    enum method method;
    char *tenants[MAX_TENANTS];
    int ntenants;
    double rate;     /* > 0: open loop */
    int concurrency; /* closed loop */
    int connections;
    double duration, warmup, timeout;
    double spin_us;
    bool once;
    const char *samples; /* --samples: the measured latencies go there */
    /* request options; 0 / empty = the server's default */
    char from_day[11], to_day[11];
    int range_days, granularity, group_by, sort_by, limit, top_n, oldest_limit;
    bool ascending;
    char *categories[MAX_FILTER];
    int ncategories;
    int priorities[MAX_FILTER];
    int npriorities;
} options;

static options opt;
static grpc_slice requests[MAX_TENANTS];

static void die(const char *what)
{
    fprintf(stderr, "bench-queryload: %s\n", what);
    exit(2);
}

/* ---- the request --------------------------------------------------------------------------- */

/* "YYYY-MM-DD" of the UTC day days_back days before today. */
static void utc_day(int days_back, char out[11])
{
    time_t t = time(NULL) - (time_t)days_back * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

/* Packs the request of opt.method for tenant into a new slice. */
static grpc_slice pack_request(const char *tenant)
{
    Tally__V1__DateRange range = TALLY__V1__DATE_RANGE__INIT;
    Tally__V1__Filter filter = TALLY__V1__FILTER__INIT;
    Tally__V1__Priority prios[MAX_FILTER];
    bool has_range = opt.from_day[0] != '\0', has_filter = opt.ncategories || opt.npriorities;
    range.from_day = opt.from_day;
    range.to_day = opt.to_day;
    for (int i = 0; i < opt.npriorities; i++)
        prios[i] = (Tally__V1__Priority)opt.priorities[i];
    filter.n_category_ids = (size_t)opt.ncategories;
    filter.category_ids = opt.categories;
    filter.n_priorities = (size_t)opt.npriorities;
    filter.priorities = prios;
    Tally__V1__DateRange *r = has_range ? &range : NULL;
    Tally__V1__Filter *f = has_filter ? &filter : NULL;
    char *t = (char *)tenant;

    Tally__V1__GetDashboardRequest dash = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    Tally__V1__GetOverviewRequest ov = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    Tally__V1__GetVolumeTrendRequest tr = TALLY__V1__GET_VOLUME_TREND_REQUEST__INIT;
    Tally__V1__GetResolutionStatsRequest rs = TALLY__V1__GET_RESOLUTION_STATS_REQUEST__INIT;
    Tally__V1__GetAgentPerformanceRequest ag = TALLY__V1__GET_AGENT_PERFORMANCE_REQUEST__INIT;
    Tally__V1__GetCategoryDistributionRequest cd =
        TALLY__V1__GET_CATEGORY_DISTRIBUTION_REQUEST__INIT;
    ProtobufCMessage *msg = NULL;
    switch (opt.method) {
    case M_HEALTH: /* grpc.health.v1.HealthCheckRequest { service: "" }: no bytes */
        return grpc_empty_slice();
    case M_DASHBOARD:
        dash.tenant_id = t;
        dash.range = r;
        dash.filter = f;
        dash.granularity = (Tally__V1__Granularity)opt.granularity;
        dash.group_by = (Tally__V1__ResolutionGroupBy)opt.group_by;
        dash.agent_sort_by = (Tally__V1__AgentSortBy)opt.sort_by;
        dash.agent_ascending = opt.ascending;
        dash.agent_limit = opt.limit;
        dash.category_top_n = opt.top_n;
        dash.oldest_open_limit = opt.oldest_limit;
        msg = &dash.base;
        break;
    case M_OVERVIEW:
        ov.tenant_id = t;
        ov.oldest_open_limit = opt.oldest_limit;
        msg = &ov.base;
        break;
    case M_TREND:
        tr.tenant_id = t;
        tr.range = r;
        tr.filter = f;
        tr.granularity = (Tally__V1__Granularity)opt.granularity;
        msg = &tr.base;
        break;
    case M_RESOLUTION:
        rs.tenant_id = t;
        rs.range = r;
        rs.filter = f;
        rs.group_by = (Tally__V1__ResolutionGroupBy)opt.group_by;
        msg = &rs.base;
        break;
    case M_AGENTS:
        ag.tenant_id = t;
        ag.range = r;
        ag.sort_by = (Tally__V1__AgentSortBy)opt.sort_by;
        ag.ascending = opt.ascending;
        ag.limit = opt.limit;
        msg = &ag.base;
        break;
    case M_CATEGORIES:
        cd.tenant_id = t;
        cd.range = r;
        cd.filter = f;
        cd.top_n = opt.top_n;
        msg = &cd.base;
        break;
    }
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > MAX_REQUEST)
        die("the request is too large");
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    return s;
}

/* ---- the reply of --once ------------------------------------------------------------------- */

static void print_freshness(const Tally__V1__Freshness *f)
{
    if (!f)
        return;
    printf("freshness.as_of_ms=%" PRId64 "\nfreshness.lag_ms=%" PRId64
           "\nfreshness.events_applied=%" PRId64 "\n",
           f->as_of_ms, f->lag_ms, f->events_applied);
}

static void print_overview(const Tally__V1__Overview *o)
{
    if (!o)
        return;
    const Tally__V1__StatusCounts *c = o->status_counts;
    printf("overview.today=%s\noverview.time_zone=%s\n", o->today, o->time_zone);
    if (c)
        printf("overview.open=%" PRId64 "\noverview.in_progress=%" PRId64
               "\noverview.resolved=%" PRId64 "\noverview.closed=%" PRId64 "\n",
               c->open, c->in_progress, c->resolved, c->closed);
    printf("overview.created_today=%" PRId64 "\noverview.resolved_today=%" PRId64
           "\noverview.backlog=%" PRId64 "\noverview.oldest_open=%zu\n",
           o->created_today, o->resolved_today, o->backlog, o->n_oldest_open);
    if (o->n_oldest_open)
        printf("overview.oldest_age_s=%" PRId64 "\n", o->oldest_open[0]->age_seconds);
    printf("overview.median_resolution_s_today=%.0f\n", o->median_resolution_seconds_today);
}

static void print_trend(const Tally__V1__VolumeTrend *t)
{
    if (!t)
        return;
    printf("trend.range=%s..%s\ntrend.buckets=%zu\ntrend.created=%" PRId64
           "\ntrend.resolved=%" PRId64 "\n",
           t->range ? t->range->from_day : "", t->range ? t->range->to_day : "", t->n_buckets,
           t->total_created, t->total_resolved);
}

static void print_resolution(const Tally__V1__ResolutionStats *s)
{
    if (!s || !s->overall)
        return;
    printf("resolution.count=%" PRId64 "\nresolution.mean_s=%.0f\nresolution.p50_s=%.0f\n"
           "resolution.p90_s=%.0f\nresolution.p99_s=%.0f\nresolution.groups=%zu\n",
           s->overall->count, s->overall->mean_seconds, s->overall->p50_seconds,
           s->overall->p90_seconds, s->overall->p99_seconds, s->n_groups);
}

static void print_agents(const Tally__V1__AgentPerformance *a)
{
    if (!a)
        return;
    int64_t resolved = 0, open = 0;
    for (size_t i = 0; i < a->n_agents; i++) {
        resolved += a->agents[i]->resolved;
        open += a->agents[i]->open_assigned;
    }
    printf("agents.listed=%zu\nagents.total=%d\nagents.resolved=%" PRId64
           "\nagents.open_assigned=%" PRId64 "\n",
           a->n_agents, a->total_agents, resolved, open);
}

static void print_categories(const Tally__V1__CategoryDistribution *d)
{
    if (!d)
        return;
    printf("categories.rows=%zu\ncategories.total=%" PRId64 "\n", d->n_categories, d->total);
    if (d->n_categories)
        printf("categories.top=%s %.3f\n", d->categories[0]->category_id, d->categories[0]->share);
}

/* Prints the main figures of a reply of opt.method; 0, or -1 when it does not parse. */
static int print_reply(grpc_byte_buffer *reply)
{
    grpc_byte_buffer_reader rd;
    if (!grpc_byte_buffer_reader_init(&rd, reply))
        return -1;
    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    const uint8_t *p = GRPC_SLICE_START_PTR(all);
    size_t n = GRPC_SLICE_LENGTH(all);
    int rc = 0;
    printf("reply_bytes=%zu\n", n);
    switch (opt.method) {
    case M_HEALTH: /* HealthCheckResponse { status = 1 }: SERVING */
        printf("health.serving=%d\n", n == 2 && p[0] == 0x08 && p[1] == 0x01);
        break;
    case M_DASHBOARD: {
        Tally__V1__GetDashboardReply *r = tally__v1__get_dashboard_reply__unpack(NULL, n, p);
        if (!r) {
            rc = -1;
            break;
        }
        print_freshness(r->freshness);
        print_overview(r->overview);
        print_trend(r->volume_trend);
        print_resolution(r->resolution_stats);
        print_agents(r->agent_performance);
        print_categories(r->category_distribution);
        tally__v1__get_dashboard_reply__free_unpacked(r, NULL);
        break;
    }
    case M_OVERVIEW: {
        Tally__V1__GetOverviewReply *r = tally__v1__get_overview_reply__unpack(NULL, n, p);
        if (!r) {
            rc = -1;
            break;
        }
        print_freshness(r->freshness);
        print_overview(r->overview);
        tally__v1__get_overview_reply__free_unpacked(r, NULL);
        break;
    }
    case M_TREND: {
        Tally__V1__GetVolumeTrendReply *r = tally__v1__get_volume_trend_reply__unpack(NULL, n, p);
        if (!r) {
            rc = -1;
            break;
        }
        print_freshness(r->freshness);
        print_trend(r->trend);
        tally__v1__get_volume_trend_reply__free_unpacked(r, NULL);
        break;
    }
    case M_RESOLUTION: {
        Tally__V1__GetResolutionStatsReply *r =
            tally__v1__get_resolution_stats_reply__unpack(NULL, n, p);
        if (!r) {
            rc = -1;
            break;
        }
        print_freshness(r->freshness);
        print_resolution(r->stats);
        tally__v1__get_resolution_stats_reply__free_unpacked(r, NULL);
        break;
    }
    case M_AGENTS: {
        Tally__V1__GetAgentPerformanceReply *r =
            tally__v1__get_agent_performance_reply__unpack(NULL, n, p);
        if (!r) {
            rc = -1;
            break;
        }
        print_freshness(r->freshness);
        print_agents(r->performance);
        tally__v1__get_agent_performance_reply__free_unpacked(r, NULL);
        break;
    }
    case M_CATEGORIES: {
        Tally__V1__GetCategoryDistributionReply *r =
            tally__v1__get_category_distribution_reply__unpack(NULL, n, p);
        if (!r) {
            rc = -1;
            break;
        }
        print_freshness(r->freshness);
        print_categories(r->distribution);
        tally__v1__get_category_distribution_reply__free_unpacked(r, NULL);
        break;
    }
    }
    grpc_slice_unref(all);
    return rc;
}

/* ---- the runs ------------------------------------------------------------------------------ */

/* The request of call n: the one of the tenants in turn. */
static grpc_slice request(void *arg, uint64_t n)
{
    (void)arg;
    return grpc_slice_ref(requests[n % (uint64_t)opt.ntenants]);
}

/* --once: one call, its figures. */
static int run_once(load *l)
{
    grpc_byte_buffer *reply;
    double latency;
    int rc = 1;
    if (load_once(l, &reply, &latency)) {
        printf("method=%s\nlatency_ms=%.3f\n", method_names[opt.method], latency * 1e3);
        rc = print_reply(reply) == 0 ? 0 : 1;
        if (rc)
            fprintf(stderr, "bench-queryload: the reply does not parse\n");
        grpc_byte_buffer_destroy(reply);
    }
    return rc;
}

/* ---- options ------------------------------------------------------------------------------- */

static const char usage[] =
    "usage: bench-queryload --target HOST:PORT --tenant T[,T...] [--method M]\n"
    "         (--concurrency C | --rate R) [--duration S] [--warmup S] [--connections N]\n"
    "         [--timeout S] [--spin-us US] [--once] [--samples FILE]\n"
    "         [--range-days N | --from YYYY-MM-DD --to YYYY-MM-DD] [--granularity G]\n"
    "         [--group-by B] [--sort-by K] [--ascending] [--limit N] [--top-n N]\n"
    "         [--oldest-limit N] [--category ID]... [--priority P]...\n"
    "Loads tally.v1.Dashboard; see bench/README.md.\n"
    "  --method       GetDashboard (default), GetOverview, GetVolumeTrend,\n"
    "                 GetResolutionStats, GetAgentPerformance, GetCategoryDistribution,\n"
    "                 Check (grpc.health.v1.Health/Check on the same port: the runtime alone)\n"
    "  --concurrency  closed loop: calls always in flight (default 1)\n"
    "  --rate         open loop: calls per second, latency from the due time\n"
    "  --concurrency with --rate: the most calls in flight (default 1000)\n"
    "  --duration     measured seconds (10); --warmup: seconds before, unmeasured (2)\n"
    "  --connections  HTTP/2 connections, calls spread round-robin (1)\n"
    "  --timeout      deadline of each call in seconds (10)\n"
    "  --spin-us      open loop: poll without sleeping this long before a due time (1500)\n"
    "  --once         one call; print the reply's main figures, one per line\n"
    "  --samples      write every measured latency (ms, sorted, one a line) to FILE\n"
    "  --range-days   the N UTC days ending today (default: the server's, 30 days in\n"
    "                 the tenant's zone)\n"
    "  --granularity  day | week | month;  --group-by none | category | priority |\n"
    "                 category_and_priority;  --sort-by resolved | mean_resolution |\n"
    "                 open_assigned | agent_id\n"
    "  --limit        agents per page; --top-n categories; --oldest-limit open list\n"
    "  --category, --priority (1..4 or LOW..URGENT): the filter, repeatable\n";

static bool number(const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

/* The index of s in names[0..n) (case-insensitive), or -1. */
static int lookup(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcasecmp(s, names[i]) == 0)
            return i;
    return -1;
}

static bool valid_day(const char *s)
{
    struct tm tm = { 0 };
    const char *end = strlen(s) == 10 ? strptime(s, "%Y-%m-%d", &tm) : NULL;
    return end && *end == '\0';
}

/* The options, and the names of their values. */
enum {
    OPT_TARGET = 256,
    OPT_METHOD,
    OPT_TENANT,
    OPT_RATE,
    OPT_CONC,
    OPT_CONNS,
    OPT_DURATION,
    OPT_WARMUP,
    OPT_TIMEOUT,
    OPT_SPIN,
    OPT_ONCE,
    OPT_SAMPLES,
    OPT_RANGE_DAYS,
    OPT_FROM,
    OPT_TO,
    OPT_GRAN,
    OPT_GROUP,
    OPT_SORT,
    OPT_ASC,
    OPT_LIMIT,
    OPT_TOPN,
    OPT_OLDEST,
    OPT_CAT,
    OPT_PRIO,
    OPT_HELP
};
static const struct option opts[] = { { "target", required_argument, NULL, OPT_TARGET },
                                      { "method", required_argument, NULL, OPT_METHOD },
                                      { "tenant", required_argument, NULL, OPT_TENANT },
                                      { "rate", required_argument, NULL, OPT_RATE },
                                      { "concurrency", required_argument, NULL, OPT_CONC },
                                      { "connections", required_argument, NULL, OPT_CONNS },
                                      { "duration", required_argument, NULL, OPT_DURATION },
                                      { "warmup", required_argument, NULL, OPT_WARMUP },
                                      { "timeout", required_argument, NULL, OPT_TIMEOUT },
                                      { "spin-us", required_argument, NULL, OPT_SPIN },
                                      { "once", no_argument, NULL, OPT_ONCE },
                                      { "samples", required_argument, NULL, OPT_SAMPLES },
                                      { "range-days", required_argument, NULL, OPT_RANGE_DAYS },
                                      { "from", required_argument, NULL, OPT_FROM },
                                      { "to", required_argument, NULL, OPT_TO },
                                      { "granularity", required_argument, NULL, OPT_GRAN },
                                      { "group-by", required_argument, NULL, OPT_GROUP },
                                      { "sort-by", required_argument, NULL, OPT_SORT },
                                      { "ascending", no_argument, NULL, OPT_ASC },
                                      { "limit", required_argument, NULL, OPT_LIMIT },
                                      { "top-n", required_argument, NULL, OPT_TOPN },
                                      { "oldest-limit", required_argument, NULL, OPT_OLDEST },
                                      { "category", required_argument, NULL, OPT_CAT },
                                      { "priority", required_argument, NULL, OPT_PRIO },
                                      { "help", no_argument, NULL, OPT_HELP },
                                      { NULL, 0, NULL, 0 } };
static const char *const grans[] = { "unspecified", "day", "week", "month" };
static const char *const groups[] = { "unspecified", "none", "category", "priority",
                                      "category_and_priority" };
static const char *const sorts[] = { "unspecified", "resolved", "mean_resolution", "open_assigned",
                                     "agent_id" };
static const char *const prios[] = { "unspecified", "LOW", "MEDIUM", "HIGH", "URGENT" };

/* Takes one option (args_fn), saying which value is bad. */
static int take_opt(void *arg, int o, char *value)
{
    double v = 0;
    bool good = true;
    (void)arg;
    switch (o) {
    case OPT_TARGET:
        opt.target = value;
        break;
    case OPT_METHOD:
        good = (v = lookup(value, method_names, METHODS)) >= 0;
        opt.method = (enum method)v;
        break;
    case OPT_TENANT:
        for (char *t = strtok(value, ","); t && good; t = strtok(NULL, ","))
            if ((good = opt.ntenants < MAX_TENANTS))
                opt.tenants[opt.ntenants++] = t;
        break;
    case OPT_RATE:
        good = number(value, 0.001, 1e6, &opt.rate);
        break;
    case OPT_CONC:
        good = number(value, 1, MAX_CONCURRENCY, &v);
        opt.concurrency = (int)v;
        break;
    case OPT_CONNS:
        good = number(value, 1, MAX_CONNECTIONS, &v);
        opt.connections = (int)v;
        break;
    case OPT_DURATION:
        good = number(value, 0.001, 1e6, &opt.duration);
        break;
    case OPT_WARMUP:
        good = number(value, 0, 1e6, &opt.warmup);
        break;
    case OPT_TIMEOUT:
        good = number(value, 0.001, 3600, &opt.timeout);
        break;
    case OPT_SPIN:
        good = number(value, 0, 1e6, &opt.spin_us);
        break;
    case OPT_ONCE:
        opt.once = true;
        break;
    case OPT_SAMPLES:
        opt.samples = value;
        break;
    case OPT_RANGE_DAYS:
        good = number(value, 1, 1827, &v);
        opt.range_days = (int)v;
        break;
    case OPT_FROM:
        good = valid_day(value);
        snprintf(opt.from_day, sizeof(opt.from_day), "%s", value);
        break;
    case OPT_TO:
        good = valid_day(value);
        snprintf(opt.to_day, sizeof(opt.to_day), "%s", value);
        break;
    case OPT_GRAN:
        good = (opt.granularity = lookup(value, grans, 4)) >= 0;
        break;
    case OPT_GROUP:
        good = (opt.group_by = lookup(value, groups, 5)) >= 0;
        break;
    case OPT_SORT:
        good = (opt.sort_by = lookup(value, sorts, 5)) >= 0;
        break;
    case OPT_ASC:
        opt.ascending = true;
        break;
    case OPT_LIMIT:
        good = number(value, 0, 1e6, &v);
        opt.limit = (int)v;
        break;
    case OPT_TOPN:
        good = number(value, 0, 1e6, &v);
        opt.top_n = (int)v;
        break;
    case OPT_OLDEST:
        good = number(value, 0, 1e6, &v);
        opt.oldest_limit = (int)v;
        break;
    case OPT_CAT:
        if ((good = opt.ncategories < MAX_FILTER))
            opt.categories[opt.ncategories++] = value;
        break;
    case OPT_PRIO: {
        int p = lookup(value, prios, 5);
        if (p < 0 && number(value, 1, 4, &v))
            p = (int)v;
        if ((good = p > 0 && opt.npriorities < MAX_FILTER))
            opt.priorities[opt.npriorities++] = p;
        break;
    }
    default:
        return -1;
    }
    if (!good)
        fprintf(stderr, "bench-queryload: bad value for --%s: \"%s\"\n", opts[o - OPT_TARGET].name,
                value ? value : "");
    return good ? 0 : -1;
}

/* What the options say together, once all are taken: 0, or -1 (saying why, unless a required
 * option is missing: the usage says that). */
static int check_opts(void)
{
    if (!opt.target || opt.ntenants == 0)
        return -1;
    if (opt.range_days && opt.from_day[0]) {
        fprintf(stderr, "bench-queryload: --range-days and --from/--to exclude each other\n");
        return -1;
    }
    if (!opt.from_day[0] != !opt.to_day[0]) {
        fprintf(stderr, "bench-queryload: --from and --to go together\n");
        return -1;
    }
    if (opt.range_days) {
        utc_day(opt.range_days - 1, opt.from_day);
        utc_day(0, opt.to_day);
    }
    if (!opt.concurrency)
        opt.concurrency = opt.rate > 0 ? 1000 : 1;
    if (opt.connections > opt.concurrency)
        opt.connections = opt.concurrency;
    return 0;
}

/* The options into opt: ARGS_OK, ARGS_HELP or ARGS_BAD (args.h). */
static int parse_args(int argc, char **argv)
{
    const args_spec spec = { "bench-queryload", usage, "", opts, OPT_HELP, take_opt, NULL };
    opt = (options){ .method = M_DASHBOARD,
                     .connections = 1,
                     .duration = 10,
                     .warmup = 2,
                     .timeout = 10,
                     .spin_us = 1500 };
    int rc = args_parse(&spec, argc, argv);
    if (rc == ARGS_OK && check_opts() != 0) {
        fputs(usage, stderr);
        rc = ARGS_BAD;
    }
    return rc;
}

/* The one line of a run: see the top of this file. */
static void report(load_window *w, const load_stats *st)
{
    load_samples_sort(&w->lat);
    load_samples_sort(&w->lag);
    /* Open loop: the rate over the time the measured calls took to be served (the due window,
     * longer when they finished late); closed loop: completions per second. */
    double span = opt.duration;
    if (opt.rate > 0 && w->last_done > w->to)
        span = w->last_done - w->from;
    double cpu = w->cpu_to - w->cpu_from;
    printf("bench-queryload: method=%s mode=%s", method_names[opt.method],
           opt.rate > 0 ? "open" : "closed");
    if (opt.rate > 0)
        printf(" target_rate=%g max_in_flight=%d", opt.rate, opt.concurrency);
    else
        printf(" concurrency=%d", opt.concurrency);
    printf(" connections=%d duration_s=%g requests=%" PRIu64 " errors=%" PRIu64, opt.connections,
           opt.duration, w->measured, st->failed);
    for (int c = 1; c < LOAD_CODES; c++)
        if (st->errors[c])
            printf(" %s=%" PRIu64, tally_grpc_code_name(c), st->errors[c]);
    printf(" rate=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f",
           (double)w->measured / span, load_samples_pct_ms(&w->lat, 50),
           load_samples_pct_ms(&w->lat, 90), load_samples_pct_ms(&w->lat, 99),
           load_samples_pct_ms(&w->lat, 99.9), load_samples_pct_ms(&w->lat, 100));
    if (opt.rate > 0)
        printf(" send_lag_p99_ms=%.3f", load_samples_pct_ms(&w->lag, 99));
    printf(" client_cpu_pct=%.1f client_us_per_req=%.1f\n", 100 * cpu / opt.duration,
           w->measured ? cpu * 1e6 / (double)w->measured : 0);
}

int main(int argc, char **argv)
{
    int parsed = parse_args(argc, argv);
    if (parsed != ARGS_OK)
        return parsed == ARGS_HELP ? 0 : 2;
    char path[128];
    if (opt.method == M_HEALTH)
        snprintf(path, sizeof(path), "%s", HEALTH_CHECK);
    else
        snprintf(path, sizeof(path), "%s%s", SERVICE, method_names[opt.method]);
    load_config cfg = { .target = opt.target,
                        .method = path,
                        .connections = opt.connections,
                        .timeout_s = opt.timeout,
                        .request = request };
    load *l = load_new(&cfg);
    if (!l)
        die("out of memory");
    for (int i = 0; i < opt.ntenants; i++)
        requests[i] = pack_request(opt.tenants[i]);
    if (load_connect(l, 10) != 0) {
        fprintf(stderr, "bench-queryload: cannot connect to %s\n", opt.target);
        exit(2);
    }

    int rc;
    load_window w;
    double start = load_now_s();
    load_window_init(&w, start + opt.warmup, opt.duration, 0);
    if (opt.once) {
        rc = run_once(l);
    } else {
        int run = opt.rate > 0
                      ? load_run_open(l, opt.rate, opt.concurrency, opt.spin_us / 1e6, start, &w)
                      : load_run_closed(l, opt.concurrency, &w);
        if (run != 0)
            die("a call could not be started");
        if (w.lat.dropped || w.lag.dropped)
            die("out of memory for the latency samples");
        rc = load_stats_of(l)->failed ? 1 : 0;
    }
    for (int i = 0; i < opt.ntenants; i++)
        grpc_slice_unref(requests[i]);

    const load_stats *st = load_stats_of(l);
    for (int c = 1; c < LOAD_CODES; c++)
        if (st->errors[c])
            fprintf(stderr, "bench-queryload: %" PRIu64 " x %s, first: %s\n", st->errors[c],
                    tally_grpc_code_name(c), st->first_error[c]);
    if (!opt.once) {
        report(&w, st);
        if (opt.samples && load_samples_write(&w.lat, opt.samples) != 0)
            die("cannot write --samples");
    }
    load_window_release(&w);
    load_free(l);
    return rc;
}
