/*
 * bench-queryload: a gRPC load generator for the tally.v1.Dashboard RPCs (query-bench.sh).
 *
 * Two ways to load the server, over --connections HTTP/2 connections (each channel has its own
 * subchannel pool, so its own TCP connection; calls are spread round-robin):
 *
 * - Closed loop (--concurrency C): C calls always outstanding; each completion at once starts
 *   the next call in its slot. Calls that complete during the --duration window after the
 *   --warmup are measured, latency from start to completion. This finds the saturation rate.
 * - Open loop (--rate R): calls are due at fixed intervals of 1/R s whatever the server does,
 *   and a call's latency is measured from the moment it was due, not from the moment it went
 *   out, so a server (or client) that falls behind shows it in the latency instead of slowing
 *   the load down (no coordinated omission). Calls due during the window are measured; every
 *   one of them is awaited. The client polls its queue without sleeping for the last --spin-us
 *   before each due time, because the queue's timed wait wakes up to a millisecond late.
 *
 * All calls go through one completion queue driven by this one thread (gRPC's own threads do
 * the rest). The request is built once from the flags and sent unchanged (one request per
 * tenant with a comma-separated --tenant, used in turn). Percentiles are nearest-rank over
 * every measured call, exact. Client CPU is this process's user + system time (all threads)
 * over the window.
 *
 * Prints one line on stdout, "key=value" words, e.g.
 *   bench-queryload: method=GetDashboard mode=closed concurrency=4 connections=1 duration_s=10
 *   requests=12345 errors=0 rate=1234.5 p50_ms=1.234 p90_ms=1.5 p99_ms=2.1 max_ms=9.8
 *   client_cpu_pct=35.1 client_us_per_req=284.3
 * (one line; open loop adds target_rate and send_lag_p99_ms, the lateness of the sends
 * themselves). errors counts the failed calls of every phase, warm-up included, also by status
 * code ("errors=3 UNAVAILABLE=2 ..."); the first message of each code goes to stderr, and any
 * error makes the exit code 1.
 *
 * --once makes a single call and prints the reply's main figures, one "name=value" per line
 * (the benchmark checks them for a sane, non-empty read model); exit 1 if the call fails.
 * Exit 2: bad usage or a setup failure.
 */
#define _GNU_SOURCE /* strptime */
#include <getopt.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/string_util.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include "tally/v1/dashboard.pb-c.h"

#define SERVICE         "/tally.v1.Dashboard/"
#define MAX_CONCURRENCY 10000
#define MAX_CONNECTIONS 64
#define MAX_TENANTS     64
#define MAX_FILTER      16
#define MAX_REQUEST     4096
#define NCODES          17
#define TICK_MS         20 /* longest wait on the queue, so the window edges are seen on time */

enum method { M_DASHBOARD, M_OVERVIEW, M_TREND, M_RESOLUTION, M_AGENTS, M_CATEGORIES };

static const char *const method_names[] = { "GetDashboard",        "GetOverview",
                                            "GetVolumeTrend",      "GetResolutionStats",
                                            "GetAgentPerformance", "GetCategoryDistribution" };

static const char *const code_names[NCODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"
};

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
    /* request options; 0 / empty = the server's default */
    char from_day[11], to_day[11];
    int range_days, granularity, group_by, sort_by, limit, top_n, oldest_limit;
    bool ascending;
    char *categories[MAX_FILTER];
    int ncategories;
    int priorities[MAX_FILTER];
    int npriorities;
} options;

/* One outstanding call; a slot is the call's tag and is reused. */
typedef struct slot {
    grpc_call *call;
    grpc_byte_buffer *request, *reply;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    double due; /* when the call was due (open loop) or started (closed loop) */
    bool in_window;
    struct slot *next_free;
} slot;

/* Growable array of samples, in seconds. */
typedef struct samples {
    double *v;
    size_t n, cap;
} samples;

static options opt;
static grpc_completion_queue *cq;
static grpc_channel *channels[MAX_CONNECTIONS];
static void *registered[MAX_CONNECTIONS];
static grpc_slice requests[MAX_TENANTS];
static uint64_t sent;
static uint64_t ok_total, failed_total, errors[NCODES];
static char *first_error[NCODES];

static void die(const char *what)
{
    fprintf(stderr, "bench-queryload: %s\n", what);
    exit(2);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static gpr_timespec mono_at(double t)
{
    double left = t - now_s();
    if (left <= 0)
        return gpr_time_0(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_micros((int64_t)(left * 1e6), GPR_TIMESPAN));
}

static void sample_add(samples *s, double v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        double *grown = realloc(s->v, cap * sizeof(*grown));
        if (!grown)
            die("out of memory for the latency samples");
        s->v = grown;
        s->cap = cap;
    }
    s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (nearest rank) of the sorted samples, in milliseconds. */
static double pct_ms(const samples *s, double p)
{
    if (s->n == 0)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    return s->v[(rank ? rank : 1) - 1] * 1e3;
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

/* ---- calls --------------------------------------------------------------------------------- */

static void slot_init(slot *s)
{
    memset(s, 0, sizeof(*s));
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
}

static void slot_release(slot *s)
{
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
}

/* Starts the next call on s; due is when it was due (open loop) or now (closed loop). */
static void call_start(slot *s, double due, bool in_window)
{
    uint64_t n = sent++;
    int conn = (int)(n % (uint64_t)opt.connections);
    s->request = grpc_raw_byte_buffer_create(&requests[n % (uint64_t)opt.ntenants], 1);
    s->due = due;
    s->in_window = in_window;
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis((int64_t)(opt.timeout * 1e3), GPR_TIMESPAN));
    s->call = grpc_channel_create_registered_call(channels[conn], NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                  registered[conn], deadline, NULL);
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->reply;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    ops[5].data.recv_status_on_client.status = &s->status;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    grpc_call_error err = grpc_call_start_batch(s->call, ops, 6, s, NULL);
    if (err != GRPC_CALL_OK) {
        fprintf(stderr, "bench-queryload: grpc_call_start_batch failed (%d)\n", (int)err);
        exit(2);
    }
}

/*
 * Accounts a finished call and releases what it held. With reply non-NULL the reply (or NULL)
 * is handed over there instead: the caller frees it with grpc_byte_buffer_destroy. True when
 * the call succeeded.
 */
static bool call_finish(slot *s, int ok, grpc_byte_buffer **reply)
{
    grpc_status_code code = ok ? s->status : GRPC_STATUS_UNKNOWN;
    if (code == GRPC_STATUS_OK && s->reply == NULL) {
        code = GRPC_STATUS_INTERNAL; /* OK without a message: the server broke the contract */
        if (!first_error[code])
            first_error[code] = gpr_strdup("status OK without a reply message");
    }
    if (code == GRPC_STATUS_OK) {
        ok_total++;
    } else {
        int c = code > 0 && code < NCODES ? (int)code : GRPC_STATUS_UNKNOWN;
        errors[c]++;
        failed_total++;
        if (!first_error[c])
            first_error[c] = ok ? grpc_slice_to_c_string(s->details) : gpr_strdup("batch failed");
    }
    grpc_call_unref(s->call);
    grpc_byte_buffer_destroy(s->request);
    if (reply)
        *reply = s->reply;
    else if (s->reply)
        grpc_byte_buffer_destroy(s->reply);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->details);
    s->call = NULL;
    s->request = s->reply = NULL;
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    return code == GRPC_STATUS_OK;
}

/* Waits (up to 10 s) until every channel is connected, so the first calls do not pay for it. */
static void connect_all(void)
{
    double until = now_s() + 10;
    for (int i = 0; i < opt.connections; i++) {
        grpc_connectivity_state st;
        while ((st = grpc_channel_check_connectivity_state(channels[i], 1)) != GRPC_CHANNEL_READY) {
            if (now_s() > until) {
                fprintf(stderr, "bench-queryload: cannot connect to %s\n", opt.target);
                exit(2);
            }
            grpc_channel_watch_connectivity_state(channels[i], st, mono_at(now_s() + 0.2), cq,
                                                  NULL);
            grpc_event ev;
            do
                ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
            while (ev.type == GRPC_OP_COMPLETE && ev.tag != NULL);
        }
    }
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

/* --once: one call, its figures. */
static int run_once(void)
{
    slot s;
    slot_init(&s);
    double t0 = now_s();
    call_start(&s, t0, true);
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    double t = now_s();
    grpc_byte_buffer *reply = NULL;
    int rc = 1;
    if (ev.type == GRPC_OP_COMPLETE && call_finish(&s, ev.success, &reply)) {
        printf("method=%s\nlatency_ms=%.3f\n", method_names[opt.method], (t - t0) * 1e3);
        rc = print_reply(reply) == 0 ? 0 : 1;
        if (rc)
            fprintf(stderr, "bench-queryload: the reply does not parse\n");
    }
    if (reply)
        grpc_byte_buffer_destroy(reply);
    slot_release(&s);
    return rc;
}

typedef struct window {
    double from, to;         /* the measured window, monotonic seconds */
    double cpu_from, cpu_to; /* process CPU seconds at its edges, -1 before */
    uint64_t measured;       /* calls measured */
    double last_done;        /* completion time of the last measured call */
    samples lat, lag;        /* latencies; open loop: lateness of the sends */
} window;

static void window_edges(window *w, double t)
{
    if (w->cpu_from < 0 && t >= w->from)
        w->cpu_from = cpu_s();
    if (w->cpu_to < 0 && t >= w->to)
        w->cpu_to = cpu_s();
}

/* Closed loop: opt.concurrency calls always in flight until the window ends. */
static void run_closed(window *w, slot *slots)
{
    int outstanding = 0;
    for (int i = 0; i < opt.concurrency; i++, outstanding++)
        call_start(&slots[i], now_s(), false);
    while (outstanding > 0) {
        grpc_event ev = grpc_completion_queue_next(cq, mono_at(now_s() + TICK_MS / 1e3), NULL);
        double t = now_s();
        window_edges(w, t);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        slot *s = ev.tag;
        double started = s->due;
        call_finish(s, ev.success, NULL);
        if (t >= w->from && t < w->to) {
            w->measured++;
            w->last_done = t;
            sample_add(&w->lat, t - started);
        }
        if (t < w->to)
            call_start(s, t, false);
        else
            outstanding--;
    }
}

/*
 * Open loop: call k is due at start + k / rate; calls due in the window are measured from the
 * moment they were due. When every slot is busy, due calls wait for one (and their latency
 * shows it).
 */
static void run_open(window *w, slot *slots, double start)
{
    slot *free_list = NULL;
    for (int i = opt.concurrency - 1; i >= 0; i--) {
        slots[i].next_free = free_list;
        free_list = &slots[i];
    }
    uint64_t k = 0;
    int outstanding = 0;
    double spin = opt.spin_us / 1e6;
    for (;;) {
        double due = start + (double)k / opt.rate;
        bool more = due < w->to;
        if (!more && outstanding == 0)
            break;
        double t = now_s();
        if (more && t >= due && free_list) {
            slot *s = free_list;
            free_list = s->next_free;
            bool in = due >= w->from;
            call_start(s, due, in);
            if (in)
                sample_add(&w->lag, now_s() - due);
            outstanding++;
            k++;
            continue;
        }
        /* Wait for a completion, the next due time (polling for its last spin seconds), or a
         * tick. */
        double until = t + TICK_MS / 1e3;
        if (more && free_list && due - spin < until)
            until = due - spin;
        grpc_event ev = grpc_completion_queue_next(
            cq, until <= t ? gpr_inf_past(GPR_CLOCK_MONOTONIC) : mono_at(until), NULL);
        t = now_s();
        window_edges(w, t);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        slot *s = ev.tag;
        call_finish(s, ev.success, NULL);
        if (s->in_window) {
            w->measured++;
            w->last_done = t;
            sample_add(&w->lat, t - s->due);
        }
        s->next_free = free_list;
        free_list = s;
        outstanding--;
    }
}

/* ---- options ------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench-queryload --target HOST:PORT --tenant T[,T...] [--method M]\n"
            "         (--concurrency C | --rate R) [--duration S] [--warmup S] [--connections N]\n"
            "         [--timeout S] [--spin-us US] [--once]\n"
            "         [--range-days N | --from YYYY-MM-DD --to YYYY-MM-DD] [--granularity G]\n"
            "         [--group-by B] [--sort-by K] [--ascending] [--limit N] [--top-n N]\n"
            "         [--oldest-limit N] [--category ID]... [--priority P]...\n"
            "Loads tally.v1.Dashboard; see bench/README.md.\n"
            "  --method       GetDashboard (default), GetOverview, GetVolumeTrend,\n"
            "                 GetResolutionStats, GetAgentPerformance, GetCategoryDistribution\n"
            "  --concurrency  closed loop: calls always in flight (default 1)\n"
            "  --rate         open loop: calls per second, latency from the due time\n"
            "  --concurrency with --rate: the most calls in flight (default 1000)\n"
            "  --duration     measured seconds (10); --warmup: seconds before, unmeasured (2)\n"
            "  --connections  HTTP/2 connections, calls spread round-robin (1)\n"
            "  --timeout      deadline of each call in seconds (10)\n"
            "  --spin-us      open loop: poll without sleeping this long before a due time (1500)\n"
            "  --once         one call; print the reply's main figures, one per line\n"
            "  --range-days   the N UTC days ending today (default: the server's, 30 days in\n"
            "                 the tenant's zone)\n"
            "  --granularity  day | week | month;  --group-by none | category | priority |\n"
            "                 category_and_priority;  --sort-by resolved | mean_resolution |\n"
            "                 open_assigned | agent_id\n"
            "  --limit        agents per page; --top-n categories; --oldest-limit open list\n"
            "  --category, --priority (1..4 or LOW..URGENT): the filter, repeatable\n");
}

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

static int parse_args(int argc, char **argv)
{
    enum {
        O_TARGET = 256,
        O_METHOD,
        O_TENANT,
        O_RATE,
        O_CONC,
        O_CONNS,
        O_DURATION,
        O_WARMUP,
        O_TIMEOUT,
        O_SPIN,
        O_ONCE,
        O_RANGE_DAYS,
        O_FROM,
        O_TO,
        O_GRAN,
        O_GROUP,
        O_SORT,
        O_ASC,
        O_LIMIT,
        O_TOPN,
        O_OLDEST,
        O_CAT,
        O_PRIO,
        O_HELP
    };
    static const struct option opts[] = { { "target", required_argument, NULL, O_TARGET },
                                          { "method", required_argument, NULL, O_METHOD },
                                          { "tenant", required_argument, NULL, O_TENANT },
                                          { "rate", required_argument, NULL, O_RATE },
                                          { "concurrency", required_argument, NULL, O_CONC },
                                          { "connections", required_argument, NULL, O_CONNS },
                                          { "duration", required_argument, NULL, O_DURATION },
                                          { "warmup", required_argument, NULL, O_WARMUP },
                                          { "timeout", required_argument, NULL, O_TIMEOUT },
                                          { "spin-us", required_argument, NULL, O_SPIN },
                                          { "once", no_argument, NULL, O_ONCE },
                                          { "range-days", required_argument, NULL, O_RANGE_DAYS },
                                          { "from", required_argument, NULL, O_FROM },
                                          { "to", required_argument, NULL, O_TO },
                                          { "granularity", required_argument, NULL, O_GRAN },
                                          { "group-by", required_argument, NULL, O_GROUP },
                                          { "sort-by", required_argument, NULL, O_SORT },
                                          { "ascending", no_argument, NULL, O_ASC },
                                          { "limit", required_argument, NULL, O_LIMIT },
                                          { "top-n", required_argument, NULL, O_TOPN },
                                          { "oldest-limit", required_argument, NULL, O_OLDEST },
                                          { "category", required_argument, NULL, O_CAT },
                                          { "priority", required_argument, NULL, O_PRIO },
                                          { "help", no_argument, NULL, O_HELP },
                                          { NULL, 0, NULL, 0 } };
    static const char *const grans[] = { "unspecified", "day", "week", "month" };
    static const char *const groups[] = { "unspecified", "none", "category", "priority",
                                          "category_and_priority" };
    static const char *const sorts[] = { "unspecified", "resolved", "mean_resolution",
                                         "open_assigned", "agent_id" };
    static const char *const prios[] = { "unspecified", "LOW", "MEDIUM", "HIGH", "URGENT" };
    opt = (options){ .method = M_DASHBOARD,
                     .connections = 1,
                     .duration = 10,
                     .warmup = 2,
                     .timeout = 10,
                     .spin_us = 1500 };
    int o, concurrency = 0;
    double v = 0;
    bool good = true;
    while (good && (o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case O_TARGET:
            opt.target = optarg;
            break;
        case O_METHOD:
            good = (v = lookup(optarg, method_names, 6)) >= 0;
            opt.method = (enum method)v;
            break;
        case O_TENANT:
            for (char *t = strtok(optarg, ","); t && good; t = strtok(NULL, ","))
                if ((good = opt.ntenants < MAX_TENANTS))
                    opt.tenants[opt.ntenants++] = t;
            break;
        case O_RATE:
            good = number(optarg, 0.001, 1e6, &opt.rate);
            break;
        case O_CONC:
            good = number(optarg, 1, MAX_CONCURRENCY, &v);
            concurrency = (int)v;
            break;
        case O_CONNS:
            good = number(optarg, 1, MAX_CONNECTIONS, &v);
            opt.connections = (int)v;
            break;
        case O_DURATION:
            good = number(optarg, 0.001, 1e6, &opt.duration);
            break;
        case O_WARMUP:
            good = number(optarg, 0, 1e6, &opt.warmup);
            break;
        case O_TIMEOUT:
            good = number(optarg, 0.001, 3600, &opt.timeout);
            break;
        case O_SPIN:
            good = number(optarg, 0, 1e6, &opt.spin_us);
            break;
        case O_ONCE:
            opt.once = true;
            break;
        case O_RANGE_DAYS:
            good = number(optarg, 1, 1827, &v);
            opt.range_days = (int)v;
            break;
        case O_FROM:
            good = valid_day(optarg);
            snprintf(opt.from_day, sizeof(opt.from_day), "%s", optarg);
            break;
        case O_TO:
            good = valid_day(optarg);
            snprintf(opt.to_day, sizeof(opt.to_day), "%s", optarg);
            break;
        case O_GRAN:
            good = (opt.granularity = lookup(optarg, grans, 4)) >= 0;
            break;
        case O_GROUP:
            good = (opt.group_by = lookup(optarg, groups, 5)) >= 0;
            break;
        case O_SORT:
            good = (opt.sort_by = lookup(optarg, sorts, 5)) >= 0;
            break;
        case O_ASC:
            opt.ascending = true;
            break;
        case O_LIMIT:
            good = number(optarg, 0, 1e6, &v);
            opt.limit = (int)v;
            break;
        case O_TOPN:
            good = number(optarg, 0, 1e6, &v);
            opt.top_n = (int)v;
            break;
        case O_OLDEST:
            good = number(optarg, 0, 1e6, &v);
            opt.oldest_limit = (int)v;
            break;
        case O_CAT:
            if ((good = opt.ncategories < MAX_FILTER))
                opt.categories[opt.ncategories++] = optarg;
            break;
        case O_PRIO: {
            int p = lookup(optarg, prios, 5);
            if (p < 0 && number(optarg, 1, 4, &v))
                p = (int)v;
            if ((good = p > 0 && opt.npriorities < MAX_FILTER))
                opt.priorities[opt.npriorities++] = p;
            break;
        }
        case O_HELP:
            usage(stdout);
            exit(0);
        default:
            good = false;
        }
        if (!good && o > 0 && o != '?')
            fprintf(stderr, "bench-queryload: bad value for --%s: \"%s\"\n",
                    opts[o - O_TARGET].name, optarg ? optarg : "");
    }
    if (!good || optind != argc || !opt.target || opt.ntenants == 0)
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
    opt.concurrency = concurrency ? concurrency : opt.rate > 0 ? 1000 : 1;
    if (opt.connections > opt.concurrency)
        opt.connections = opt.concurrency;
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    grpc_init();
    cq = grpc_completion_queue_create_for_next(NULL);
    grpc_arg args[2] = {
        { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1 },
        { .type = GRPC_ARG_INTEGER,
          .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
          .value.integer = 64 << 20 }
    };
    grpc_channel_args chargs = { .num_args = 2, .args = args };
    char path[128];
    snprintf(path, sizeof(path), "%s%s", SERVICE, method_names[opt.method]);
    for (int i = 0; i < opt.connections; i++) {
        grpc_channel_credentials *creds = grpc_insecure_credentials_create();
        channels[i] = grpc_channel_create(opt.target, creds, &chargs);
        grpc_channel_credentials_release(creds);
        registered[i] = grpc_channel_register_call(channels[i], path, NULL, NULL);
    }
    for (int i = 0; i < opt.ntenants; i++)
        requests[i] = pack_request(opt.tenants[i]);
    connect_all();

    int rc;
    window w = { .cpu_from = -1, .cpu_to = -1 };
    if (opt.once) {
        rc = run_once();
    } else {
        slot *slots = calloc((size_t)opt.concurrency, sizeof(*slots));
        if (!slots)
            die("out of memory");
        for (int i = 0; i < opt.concurrency; i++)
            slot_init(&slots[i]);
        double start = now_s();
        w.from = start + opt.warmup;
        w.to = w.from + opt.duration;
        if (opt.rate > 0)
            run_open(&w, slots, start);
        else
            run_closed(&w, slots);
        if (w.cpu_to < 0)
            w.cpu_to = cpu_s();
        if (w.cpu_from < 0)
            w.cpu_from = w.cpu_to;
        for (int i = 0; i < opt.concurrency; i++)
            slot_release(&slots[i]);
        free(slots);
        rc = failed_total ? 1 : 0;
    }

    for (int i = 0; i < opt.connections; i++)
        grpc_channel_destroy(channels[i]);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    for (int i = 0; i < opt.ntenants; i++)
        grpc_slice_unref(requests[i]);
    grpc_shutdown_blocking();

    for (int c = 1; c < NCODES; c++)
        if (errors[c])
            fprintf(stderr, "bench-queryload: %" PRIu64 " x %s, first: %s\n", errors[c],
                    code_names[c], first_error[c]);
    if (!opt.once) {
        if (w.lat.n)
            qsort(w.lat.v, w.lat.n, sizeof(double), cmp_double);
        if (w.lag.n)
            qsort(w.lag.v, w.lag.n, sizeof(double), cmp_double);
        /* Open loop: the rate over the time the measured calls took to be served (the due
         * window, longer when they finished late); closed loop: completions per second. */
        double span = opt.duration;
        if (opt.rate > 0 && w.last_done > w.to)
            span = w.last_done - w.from;
        double cpu = w.cpu_to - w.cpu_from;
        printf("bench-queryload: method=%s mode=%s", method_names[opt.method],
               opt.rate > 0 ? "open" : "closed");
        if (opt.rate > 0)
            printf(" target_rate=%g max_in_flight=%d", opt.rate, opt.concurrency);
        else
            printf(" concurrency=%d", opt.concurrency);
        printf(" connections=%d duration_s=%g requests=%" PRIu64 " errors=%" PRIu64,
               opt.connections, opt.duration, w.measured, failed_total);
        for (int c = 1; c < NCODES; c++)
            if (errors[c])
                printf(" %s=%" PRIu64, code_names[c], errors[c]);
        printf(" rate=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f",
               (double)w.measured / span, pct_ms(&w.lat, 50), pct_ms(&w.lat, 90),
               pct_ms(&w.lat, 99), pct_ms(&w.lat, 100));
        if (opt.rate > 0)
            printf(" send_lag_p99_ms=%.3f", pct_ms(&w.lag, 99));
        printf(" client_cpu_pct=%.1f client_us_per_req=%.1f\n", 100 * cpu / opt.duration,
               w.measured ? cpu * 1e6 / (double)w.measured : 0);
    }
    for (int c = 0; c < NCODES; c++)
        gpr_free(first_error[c]);
    free(w.lat.v);
    free(w.lag.v);
    return rc;
}
