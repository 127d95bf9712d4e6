/* bench-loadgen: a gRPC load generator for tally.v1.ComplaintCommands/CreateComplaint.
 *
 * Closed loop (the default): it keeps --concurrency calls outstanding over --connections HTTP/2
 * connections (every channel has its own subchannel pool, so they are distinct TCP
 * connections): each completion at once starts the next call in its slot. Every request carries a
 * unique idempotency key, a title of about 40 bytes, a description of about 300 bytes, and a
 * priority cycling LOW..URGENT.
 *
 * Calls that complete during the first --warmup seconds are not measured; every call that
 * completes during the next --duration seconds is (its latency from start to completion, on the
 * monotonic clock). No call starts after that; the ones in flight are awaited and checked.
 * Prints the counts, errors by status code, QPS, latency percentiles and the client's own CPU
 * time per call, then one line "RESULT key=value ..." for scripts. Exits 1 if any call failed
 * (in any phase, including a reply without a complaint id), 2 on bad usage or setup failure.
 * The loop, the samples and the CPU time are bench/load.h's; this file is the request, the
 * check of the reply and the report.
 *
 * Open loop (--rate R): call k is due at k / R s (at most --concurrency in flight, default
 * 1000), its latency measured from its due time (load.h). With --then-query HOST:PORT each
 * measured call that succeeds is followed at once by GetOverview on query-svc with the reply's
 * consistency token and fail_if_stale: the time from the OK to that reply is the command's
 * freshness, how long until its effect is visible on the dashboards (query-svc polls the read
 * model for the token's version, from 0.5 ms doubling to 8 ms between reads). The RESULT line
 * then adds fresh_* figures; a follow-up that fails (FAILED_PRECONDITION: not visible within
 * the call's deadline) counts as an error.
 *
 * --samples FILE (and --then-samples FILE) write the measured latencies (and freshnesses) in
 * ms, sorted, one a line, for charts.
 */
#include "args.h"
#include "err.h"
#include "gclient.h"
#include "load.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/dashboard.pb-c.h"

#include <grpc/byte_buffer_reader.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define METHOD          GC_COMMANDS("CreateComplaint")
#define CALL_TIMEOUT_S  30
#define MAX_CONCURRENCY 10000
#define MAX_SAMPLES     (64u << 20) /* latencies kept; beyond that calls are counted only */

static const char description[] =
    "The self-service kiosk in the main hall rejected my card three times this morning and "
    "then charged it twice for a single ticket. The receipt shows only one purchase, but my "
    "bank statement lists two identical amounts a minute apart. Please refund the duplicate "
    "charge and check whether the kiosk is faulty, because other customers had the same issue.";

static const char *target, *tenant, *category = "c1", *then_query, *samples, *then_samples;
/* --tenant T1,T2,...: call n goes to tenants[n % ntenants], so that a worker's consecutive
 * calls change tenant (row-level security's set_config in command-svc). */
#define TENANTS_MAX 64
static char tenant_list[TENANTS_MAX * 68], *tenants[TENANTS_MAX];
static size_t ntenants;
static int concurrency = 0, connections = 1; /* concurrency 0: 8, or 1000 with --rate */
static double duration = 10, warmup = 2, rate = 0, spin_us = 0;
static char key_prefix[48];

static const char usage[] =
    "usage: bench-loadgen --target HOST:PORT --tenant T[,T2...] [--category C]\n"
    "         [--concurrency N] [--duration S] [--warmup S] [--connections K]\n"
    "         [--rate R [--spin-us US] [--then-query HOST:PORT]] [--samples FILE]\n"
    "         [--then-samples FILE]\n"
    "CreateComplaint calls; see bench/README.md. Defaults: category c1, closed loop at\n"
    "concurrency 8, duration 10 s, warm-up 2 s, 1 connection. --rate R: open loop at R calls/s\n"
    "(--concurrency: the most in flight, default 1000); --then-query: each OK call's token is\n"
    "then awaited by GetOverview on that query-svc (freshness); --samples, --then-samples:\n"
    "the latencies (ms, sorted) to a file. Several tenants (a comma list, up to 64, each with\n"
    "the category) take the calls in turn; --then-query needs one.\n";

/* The request of call n: a unique idempotency key, and a title and customer that vary. */
static grpc_slice request(void *arg, uint64_t n)
{
    Tally__V1__CreateComplaintRequest req = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    char key[96], title[64], customer[32];
    (void)arg;
    snprintf(key, sizeof(key), "%s-%" PRIu64, key_prefix, n);
    snprintf(title, sizeof(title), "Kiosk %02u charged my card twice, ref %07" PRIu64,
             (unsigned)(n % 97), n % 10000000);
    snprintf(customer, sizeof(customer), "customer-%05u", (unsigned)(n * 7919 % 50000));
    req.tenant_id = tenants[n % ntenants];
    req.idempotency_key = key;
    req.category_id = (char *)category;
    req.priority = (Tally__V1__Priority)(1 + n % 4);
    req.title = title;
    req.description = (char *)description;
    req.customer_id = customer;
    grpc_slice body = grpc_slice_malloc(tally__v1__create_complaint_request__get_packed_size(&req));
    tally__v1__create_complaint_request__pack(&req, GRPC_SLICE_START_PTR(body));
    return body;
}

/* True when an OK call's reply parses and names a complaint at version 1. */
static bool reply_valid(void *arg, grpc_byte_buffer *reply)
{
    grpc_byte_buffer_reader rd;
    bool valid = false;
    (void)arg;
    if (!grpc_byte_buffer_reader_init(&rd, reply))
        return false;
    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    Tally__V1__CreateComplaintReply *rep = tally__v1__create_complaint_reply__unpack(
        NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    if (rep != NULL) {
        valid = rep->complaint_id > 0 && rep->version == 1;
        tally__v1__create_complaint_reply__free_unpacked(rep, NULL);
    }
    grpc_slice_unref(all);
    return valid;
}

/*
 * The follow-up of an OK CreateComplaint (load_then_fn): GetOverview of the tenant with the
 * reply's consistency token, failing instead of answering stale.
 */
static bool then_request(void *arg, grpc_byte_buffer *reply, grpc_slice *out)
{
    grpc_byte_buffer_reader rd;
    bool made = false;
    (void)arg;
    if (!grpc_byte_buffer_reader_init(&rd, reply))
        return false;
    grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
    grpc_byte_buffer_reader_destroy(&rd);
    Tally__V1__CreateComplaintReply *rep = tally__v1__create_complaint_reply__unpack(
        NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
    if (rep != NULL && rep->complaint_id > 0) {
        Tally__V1__ConsistencyToken tok = TALLY__V1__CONSISTENCY_TOKEN__INIT;
        Tally__V1__GetOverviewRequest req = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
        tok.complaint_id = rep->complaint_id;
        tok.version = rep->version;
        req.tenant_id = (char *)tenant;
        req.consistency = &tok;
        req.fail_if_stale = true;
        *out = grpc_slice_malloc(tally__v1__get_overview_request__get_packed_size(&req));
        tally__v1__get_overview_request__pack(&req, GRPC_SLICE_START_PTR(*out));
        made = true;
    }
    if (rep != NULL)
        tally__v1__create_complaint_reply__free_unpacked(rep, NULL);
    grpc_slice_unref(all);
    return made;
}

/* Takes one option (args_fn), saying which value is not a number; ranges are checked after. */
static int take_opt(void *arg, int opt, char *value)
{
    char *end = value;
    (void)arg;
    switch (opt) {
    case 't':
        target = value;
        return 0;
    case 'T':
        tenant = value;
        snprintf(tenant_list, sizeof(tenant_list), "%s", value);
        ntenants = 0;
        for (char *save = NULL, *t = strtok_r(tenant_list, ",", &save); t;
             t = strtok_r(NULL, ",", &save))
            if (ntenants < TENANTS_MAX)
                tenants[ntenants++] = t;
        return 0;
    case 'c':
        category = value;
        return 0;
    case 'q':
        then_query = value;
        return 0;
    case 's':
        samples = value;
        return 0;
    case 'S':
        then_samples = value;
        return 0;
    case 'r':
        rate = strtod(value, &end);
        break;
    case 'u':
        spin_us = strtod(value, &end);
        break;
    case 'n':
        concurrency = (int)strtol(value, &end, 10);
        break;
    case 'k':
        connections = (int)strtol(value, &end, 10);
        break;
    case 'd':
        duration = strtod(value, &end);
        break;
    case 'w':
        warmup = strtod(value, &end);
        break;
    default:
        return -1;
    }
    if (end == value || *end != '\0') {
        fprintf(stderr, "bench-loadgen: not a number: \"%s\"\n", value);
        return -1;
    }
    return 0;
}

/* The options into the globals: ARGS_OK, ARGS_HELP or ARGS_BAD (args.h). */
static int parse_args(int argc, char **argv)
{
    static const struct option opts[] = { { "target", required_argument, NULL, 't' },
                                          { "tenant", required_argument, NULL, 'T' },
                                          { "category", required_argument, NULL, 'c' },
                                          { "concurrency", required_argument, NULL, 'n' },
                                          { "duration", required_argument, NULL, 'd' },
                                          { "warmup", required_argument, NULL, 'w' },
                                          { "connections", required_argument, NULL, 'k' },
                                          { "rate", required_argument, NULL, 'r' },
                                          { "spin-us", required_argument, NULL, 'u' },
                                          { "then-query", required_argument, NULL, 'q' },
                                          { "samples", required_argument, NULL, 's' },
                                          { "then-samples", required_argument, NULL, 'S' },
                                          { "help", no_argument, NULL, 'h' },
                                          { NULL, 0, NULL, 0 } };
    const args_spec spec = { "bench-loadgen", usage, "", opts, 'h', take_opt, NULL };
    int rc = args_parse(&spec, argc, argv);
    if (concurrency == 0)
        concurrency = rate > 0 ? 1000 : 8;
    if (rc == ARGS_OK &&
        (!target || !ntenants || (ntenants > 1 && then_query) || concurrency < 1 ||
         concurrency > MAX_CONCURRENCY || connections < 1 || connections > concurrency ||
         !(duration > 0) || !(warmup >= 0) || !(rate >= 0 && rate <= 1e6) || !(spin_us >= 0) ||
         ((then_query || then_samples) && !(rate > 0)))) {
        fputs(usage, stderr);
        rc = ARGS_BAD;
    }
    return rc;
}

int main(int argc, char **argv)
{
    int parsed = parse_args(argc, argv);
    if (parsed != ARGS_OK)
        return parsed == ARGS_HELP ? 0 : 2;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    snprintf(key_prefix, sizeof(key_prefix), "lg-%lx%09lx-%ld", (unsigned long)wall.tv_sec,
             (unsigned long)wall.tv_nsec, (long)getpid());

    load_config cfg = { .target = target,
                        .method = METHOD,
                        .connections = connections,
                        .timeout_s = CALL_TIMEOUT_S,
                        .request = request,
                        .check = reply_valid,
                        .then_target = then_query,
                        .then_method = GC_DASHBOARD("GetOverview"),
                        .then_request = then_request };
    load *l = load_new(&cfg);
    if (!l) {
        fprintf(stderr, "bench-loadgen: out of memory\n");
        return 2;
    }

    printf("bench-loadgen: %s%s, tenant \"%s\", category \"%s\"\n", target, METHOD, tenant,
           category);
    if (rate > 0)
        printf("open loop at %g calls/s, at most %d in flight", rate, concurrency);
    else
        printf("%d calls in flight", concurrency);
    printf(" over %d connection(s); warm-up %g s, measured %g s%s%s\n", connections, warmup,
           duration, then_query ? "; then GetOverview with the token on " : "",
           then_query ? then_query : "");
    fflush(stdout);
    if (then_query && load_connect(l, 10) != 0) {
        fprintf(stderr, "bench-loadgen: cannot connect to %s and %s\n", target, then_query);
        return 2;
    }

    load_window w;
    double start = load_now_s();
    load_window_init(&w, start + warmup, duration, MAX_SAMPLES);
    int run = rate > 0 ? load_run_open(l, rate, concurrency, spin_us / 1e6, start, &w)
                       : load_run_closed(l, concurrency, &w);
    if (run != 0) { /* a bug here, not a server's answer */
        fprintf(stderr, "bench-loadgen: a call could not be started\n");
        return 2;
    }

    const load_stats *st = load_stats_of(l), *tst = load_then_stats_of(l);
    load_samples_sort(&w.lat);
    load_samples_sort(&w.then_lat);
    /* Open loop: the calls due in the window over the time they took (longer when late). */
    double span = rate > 0 && w.last_done > w.to ? w.last_done - w.from : duration;
    double qps = (double)w.measured / span;
    double cpu_us = w.measured ? (w.cpu_to - w.cpu_from) * 1e6 / (double)w.measured : 0;
    double p50 = load_samples_pct_ms(&w.lat, 50), p90 = load_samples_pct_ms(&w.lat, 90),
           p99 = load_samples_pct_ms(&w.lat, 99), max = load_samples_pct_ms(&w.lat, 100);
    printf("calls     %" PRIu64 " measured; %" PRIu64 " in all phases, %" PRIu64 " failed\n",
           w.measured, st->ok + st->failed, st->failed);
    for (int c = 1; c < LOAD_CODES; c++)
        if (st->errors[c])
            printf("errors    %s %" PRIu64 " (first: %s)\n", tally_grpc_code_name(c), st->errors[c],
                   st->first_error[c]);
    if (st->bad)
        printf("errors    %" PRIu64 " OK replies without a complaint id at version 1\n", st->bad);
    printf("QPS       %.1f\n", qps);
    printf("latency   p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms\n", p50, p90, p99, max);
    printf("client    %.1f us CPU per call\n", cpu_us);
    if (then_query) {
        printf("fresh     %" PRIu64 " visible; p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms; "
               "%" PRIu64 " failed\n",
               (uint64_t)w.then_lat.n, load_samples_pct_ms(&w.then_lat, 50),
               load_samples_pct_ms(&w.then_lat, 90), load_samples_pct_ms(&w.then_lat, 99),
               load_samples_pct_ms(&w.then_lat, 100), tst->failed);
        for (int c = 1; c < LOAD_CODES; c++)
            if (tst->errors[c])
                printf("errors    follow-up %s %" PRIu64 " (first: %s)\n", tally_grpc_code_name(c),
                       tst->errors[c], tst->first_error[c]);
    }
    printf("RESULT calls=%" PRIu64 " qps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f "
           "max_ms=%.3f errors=%" PRIu64 " ok_total=%" PRIu64 " client_cpu_us=%.1f",
           w.measured, qps, p50, p90, p99, load_samples_pct_ms(&w.lat, 99.9), max, st->failed,
           st->ok, cpu_us);
    if (then_query)
        printf(" fresh_n=%zu fresh_p50_ms=%.3f fresh_p90_ms=%.3f fresh_p99_ms=%.3f "
               "fresh_p999_ms=%.3f fresh_max_ms=%.3f fresh_errors=%" PRIu64,
               w.then_lat.n, load_samples_pct_ms(&w.then_lat, 50),
               load_samples_pct_ms(&w.then_lat, 90), load_samples_pct_ms(&w.then_lat, 99),
               load_samples_pct_ms(&w.then_lat, 99.9), load_samples_pct_ms(&w.then_lat, 100),
               tst->failed);
    printf("\n");
    if ((samples && load_samples_write(&w.lat, samples) != 0) ||
        (then_samples && load_samples_write(&w.then_lat, then_samples) != 0)) {
        fprintf(stderr, "bench-loadgen: cannot write the samples\n");
        return 2;
    }
    int rc = st->failed || tst->failed ? 1 : 0;
    load_window_release(&w);
    load_free(l);
    return rc;
}
