/* bench-loadgen: a closed-loop gRPC load generator for tally.v1.ComplaintCommands/CreateComplaint.
 *
 * It keeps --concurrency calls outstanding over --connections HTTP/2 connections (every channel
 * has its own subchannel pool, so they are distinct TCP connections): each completion at once
 * starts the next call in its slot. Every request carries a unique idempotency key, a title of
 * about 40 bytes, a description of about 300 bytes, and a priority cycling LOW..URGENT.
 *
 * Calls that complete during the first --warmup seconds are not measured; every call that
 * completes during the next --duration seconds is (its latency from start to completion, on the
 * monotonic clock). No call starts after that; the ones in flight are awaited and checked.
 * Prints the counts, errors by status code, QPS, latency percentiles and the client's own CPU
 * time per call, then one line "RESULT key=value ..." for scripts. Exits 1 if any call failed
 * (in any phase, including a reply without a complaint id), 2 on bad usage or setup failure.
 */
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
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tally/v1/commands.pb-c.h"

#define METHOD          "/tally.v1.ComplaintCommands/CreateComplaint"
#define CALL_TIMEOUT_S  30
#define MAX_CONCURRENCY 10000
#define MAX_SAMPLES     (64u << 20) /* latencies kept; beyond that calls are counted only */
#define NCODES          17

/* One outstanding call; the slot is the call's tag and is reused by the next call. */
struct slot {
    grpc_channel *channel;
    void *method;
    grpc_call *call;
    grpc_byte_buffer *request, *reply;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    double started;
};

static const char *const code_names[NCODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"
};

static const char description[] =
    "The self-service kiosk in the main hall rejected my card three times this morning and "
    "then charged it twice for a single ticket. The receipt shows only one purchase, but my "
    "bank statement lists two identical amounts a minute apart. Please refund the duplicate "
    "charge and check whether the kiosk is faulty, because other customers had the same issue.";

static const char *target, *tenant, *category = "c1";
static int concurrency = 8, connections = 1;
static double duration = 10, warmup = 2;
static grpc_completion_queue *cq;
static char key_prefix[48];
static uint64_t next_key;
static uint32_t *samples; /* latencies in microseconds of the measured calls */
static size_t nsamples, samples_cap;
static uint64_t measured, ok_total, failed_total, bad_replies, errors[NCODES];
static char *first_error[NCODES];

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

static void usage(FILE *out)
{
    fprintf(out, "usage: bench-loadgen --target HOST:PORT --tenant T [--category C]\n"
                 "         [--concurrency N] [--duration S] [--warmup S] [--connections K]\n"
                 "Closed-loop CreateComplaint calls; see bench/README.md. Defaults: category c1,\n"
                 "concurrency 8, duration 10 s, warm-up 2 s, 1 connection.\n");
}

/* Builds the next request and starts its one batch on the slot. */
static void call_start(struct slot *s)
{
    Tally__V1__CreateComplaintRequest req = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    char key[96], title[64], customer[32];
    uint64_t n = next_key++;
    snprintf(key, sizeof(key), "%s-%" PRIu64, key_prefix, n);
    snprintf(title, sizeof(title), "Kiosk %02u charged my card twice, ref %07" PRIu64,
             (unsigned)(n % 97), n % 10000000);
    snprintf(customer, sizeof(customer), "customer-%05u", (unsigned)(n * 7919 % 50000));
    req.tenant_id = (char *)tenant;
    req.idempotency_key = key;
    req.category_id = (char *)category;
    req.priority = (Tally__V1__Priority)(1 + n % 4);
    req.title = title;
    req.description = (char *)description;
    req.customer_id = customer;

    grpc_slice body = grpc_slice_malloc(tally__v1__create_complaint_request__get_packed_size(&req));
    tally__v1__create_complaint_request__pack(&req, GRPC_SLICE_START_PTR(body));
    s->request = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_seconds(CALL_TIMEOUT_S, GPR_TIMESPAN));
    s->call = grpc_channel_create_registered_call(s->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                                  s->method, deadline, NULL);

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
    s->started = now_s();
    grpc_call_error err = grpc_call_start_batch(s->call, ops, 6, s, NULL);
    if (err != GRPC_CALL_OK) { /* a bug here, not a server's answer */
        fprintf(stderr, "bench-loadgen: grpc_call_start_batch failed (%d)\n", (int)err);
        exit(2);
    }
}

/* True when an OK call's reply parses and names a complaint at version 1. */
static bool reply_valid(grpc_byte_buffer *reply)
{
    grpc_byte_buffer_reader rd;
    bool valid = false;
    if (reply == NULL || !grpc_byte_buffer_reader_init(&rd, reply))
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

static void sample_add(double latency_s)
{
    if (nsamples == samples_cap) {
        size_t cap = samples_cap ? samples_cap * 2 : 65536;
        uint32_t *grown = cap <= MAX_SAMPLES ? realloc(samples, cap * sizeof(*grown)) : NULL;
        if (grown == NULL)
            return;
        samples = grown;
        samples_cap = cap;
    }
    samples[nsamples++] = (uint32_t)(latency_s * 1e6 + 0.5);
}

/* Accounts a finished call (batch ok or not) and releases what it held. */
static void call_finish(struct slot *s, int ok, double t, bool in_window)
{
    grpc_status_code code = ok ? s->status : GRPC_STATUS_UNKNOWN;
    if (code == GRPC_STATUS_OK && !reply_valid(s->reply)) {
        bad_replies++;
        failed_total++;
    } else if (code == GRPC_STATUS_OK) {
        ok_total++;
    } else {
        int c = code > 0 && code < NCODES ? (int)code : GRPC_STATUS_UNKNOWN;
        errors[c]++;
        failed_total++;
        if (first_error[c] == NULL)
            first_error[c] = ok ? grpc_slice_to_c_string(s->details) : gpr_strdup("batch failed");
    }
    if (in_window) {
        measured++;
        sample_add(t - s->started);
    }
    grpc_call_unref(s->call);
    grpc_byte_buffer_destroy(s->request);
    if (s->reply != NULL)
        grpc_byte_buffer_destroy(s->reply);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->details);
    s->call = NULL;
    s->request = s->reply = NULL;
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (nearest rank) of the sorted samples, in milliseconds. */
static double pct_ms(double p)
{
    if (nsamples == 0)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)nsamples + 0.999999);
    return samples[(rank ? rank : 1) - 1] / 1000.0;
}

static int parse_args(int argc, char **argv)
{
    static const struct option opts[] = { { "target", required_argument, NULL, 't' },
                                          { "tenant", required_argument, NULL, 'T' },
                                          { "category", required_argument, NULL, 'c' },
                                          { "concurrency", required_argument, NULL, 'n' },
                                          { "duration", required_argument, NULL, 'd' },
                                          { "warmup", required_argument, NULL, 'w' },
                                          { "connections", required_argument, NULL, 'k' },
                                          { "help", no_argument, NULL, 'h' },
                                          { NULL, 0, NULL, 0 } };
    int opt;
    char *end;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 't':
            target = optarg;
            break;
        case 'T':
            tenant = optarg;
            break;
        case 'c':
            category = optarg;
            break;
        case 'n':
            concurrency = (int)strtol(optarg, &end, 10);
            break;
        case 'k':
            connections = (int)strtol(optarg, &end, 10);
            break;
        case 'd':
            duration = strtod(optarg, &end);
            break;
        case 'w':
            warmup = strtod(optarg, &end);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
        if (strchr("nkdw", opt) && (end == optarg || *end != '\0'))
            return -1;
    }
    if (optind != argc || !target || !tenant || concurrency < 1 || concurrency > MAX_CONCURRENCY ||
        connections < 1 || connections > concurrency || !(duration > 0) || !(warmup >= 0))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) != 0) {
        usage(stderr);
        return 2;
    }
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    snprintf(key_prefix, sizeof(key_prefix), "lg-%lx%09lx-%ld", (unsigned long)wall.tv_sec,
             (unsigned long)wall.tv_nsec, (long)getpid());

    grpc_init();
    cq = grpc_completion_queue_create_for_next(NULL);
    grpc_arg arg = { .type = GRPC_ARG_INTEGER,
                     .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL,
                     .value.integer = 1 };
    grpc_channel_args args = { .num_args = 1, .args = &arg };
    grpc_channel **channels = calloc((size_t)connections, sizeof(*channels));
    void **methods = calloc((size_t)connections, sizeof(*methods));
    struct slot *slots = calloc((size_t)concurrency, sizeof(*slots));
    if (!channels || !methods || !slots) {
        fprintf(stderr, "bench-loadgen: out of memory\n");
        return 2;
    }
    for (int i = 0; i < connections; i++) {
        grpc_channel_credentials *creds = grpc_insecure_credentials_create();
        channels[i] = grpc_channel_create(target, creds, &args);
        grpc_channel_credentials_release(creds);
        methods[i] = grpc_channel_register_call(channels[i], METHOD, NULL, NULL);
    }

    printf("bench-loadgen: %s%s, tenant \"%s\", category \"%s\"\n", target, METHOD, tenant,
           category);
    printf("%d calls in flight over %d connection(s); warm-up %g s, measured %g s\n", concurrency,
           connections, warmup, duration);
    fflush(stdout);

    double t0 = now_s(), measure_from = t0 + warmup, measure_to = measure_from + duration;
    double cpu_from = -1, cpu_to = -1;
    int outstanding = 0;
    for (int i = 0; i < concurrency; i++) {
        slots[i].channel = channels[i % connections];
        slots[i].method = methods[i % connections];
        slots[i].details = grpc_empty_slice();
        grpc_metadata_array_init(&slots[i].initial_md);
        grpc_metadata_array_init(&slots[i].trailing_md);
        call_start(&slots[i]);
        outstanding++;
    }
    while (outstanding > 0) {
        gpr_timespec tick =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(50, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(cq, tick, NULL);
        double t = now_s();
        if (cpu_from < 0 && t >= measure_from)
            cpu_from = cpu_s();
        if (cpu_to < 0 && t >= measure_to)
            cpu_to = cpu_s();
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        struct slot *s = ev.tag;
        call_finish(s, ev.success, t, t >= measure_from && t < measure_to);
        if (t < measure_to)
            call_start(s);
        else
            outstanding--;
    }
    if (cpu_to < 0)
        cpu_to = cpu_s();

    for (int i = 0; i < connections; i++)
        grpc_channel_destroy(channels[i]);
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    for (int i = 0; i < concurrency; i++) {
        grpc_metadata_array_destroy(&slots[i].initial_md);
        grpc_metadata_array_destroy(&slots[i].trailing_md);
    }
    grpc_shutdown_blocking();

    qsort(samples, nsamples, sizeof(*samples), cmp_u32);
    double qps = (double)measured / duration;
    double cpu_us = measured ? (cpu_to - cpu_from) * 1e6 / (double)measured : 0;
    printf("calls     %" PRIu64 " measured; %" PRIu64 " in all phases, %" PRIu64 " failed\n",
           measured, ok_total + failed_total, failed_total);
    for (int c = 1; c < NCODES; c++)
        if (errors[c])
            printf("errors    %s %" PRIu64 " (first: %s)\n", code_names[c], errors[c],
                   first_error[c]);
    if (bad_replies)
        printf("errors    %" PRIu64 " OK replies without a complaint id at version 1\n",
               bad_replies);
    printf("QPS       %.1f\n", qps);
    printf("latency   p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms\n", pct_ms(50), pct_ms(90),
           pct_ms(99), pct_ms(100));
    printf("client    %.1f us CPU per call\n", cpu_us);
    printf("RESULT calls=%" PRIu64 " qps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f "
           "errors=%" PRIu64 " ok_total=%" PRIu64 " client_cpu_us=%.1f\n",
           measured, qps, pct_ms(50), pct_ms(90), pct_ms(99), pct_ms(100), failed_total, ok_total,
           cpu_us);
    for (int c = 0; c < NCODES; c++)
        gpr_free(first_error[c]);
    free(samples);
    free(slots);
    free(methods);
    free(channels);
    return failed_total ? 1 : 0;
}
