/*
 * bench-eventgen: fills the event stream tally:events:0 with a realistic, reproducible mix of
 * events for the projector and query benchmarks (projector-bench.sh, query-bench.sh).
 *
 * The events are the simulator's (sim/sim_emit.h): the help desk of tally-sim, whose lives
 * tally-sim imports, written as command-svc would write them. T tenants tenant-0, tenant-1, ...
 * in the zones UTC, America/New_York, Asia/Tokyo, Europe/Berlin, America/Los_Angeles,
 * Asia/Kolkata (then again), with the world's categories, agents, arrival pattern and
 * incidents, over a simulated year from 2024-07-01 UTC. The stream holds exactly --events
 * entries: each tenant's reference events first, then the complaints' events in simulated-time
 * order (seq grows by one per entry, versions 1, 2, ... per complaint); complaints are added
 * until their events fill it.
 *
 * The same seed gives the same events. Live events (the default) carry recorded_at_ms =
 * occurred_at_ms; --imported marks them imported, recorded a day after the simulated year.
 * With --until-now the simulated year ends at the wall clock when the program starts, so that
 * a dashboard's default range (the 30 days ending today) and "today" have data; no event lies
 * in the future (imported events are then recorded at that moment). With --rate the events are
 * paced in real time and stamped with the wall clock when they are sent (the sequence of
 * changes stays the simulated one; resolution times are then the compressed real ones), which
 * is what a lag measurement needs.
 *
 * Entries are added with pipelined XADD tally:events:0 * e <EventEnvelope bytes>. Prints one
 * summary line on stdout.
 *
 * Usage: bench-eventgen [--redis host:port] [--events N] [--tenants T] [--seed S]
 *                       [--rate R [--duration S] | --until-now] [--imported]
 */
#include "sim_emit.h"
#include "tally/v1/events.pb-c.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STREAM       "tally:events:0"
#define PIPELINE     1000            /* XADDs in flight before their replies are read */
#define SIM_START_MS 1719792000000LL /* 2024-07-01T00:00:00Z (without --until-now) */
#define SIM_DAYS     365

static const char *const zones[] = { "UTC",           "America/New_York",    "Asia/Tokyo",
                                     "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata" };

typedef struct options {
    const char *host;
    int port;
    long long events;
    int tenants;
    uint64_t seed;
    double rate, duration;
    bool imported, until_now;
} options;

typedef struct gen {
    options opt;
    redisContext *redis;
    int64_t t0_ns;
    long long in_flight, written, counts[16]; /* by tally.v1.EventType (all below 16) */
} gen;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench-eventgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static int64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Reads the replies of every XADD in flight; any error ends the program. */
static void drain(gen *g)
{
    for (; g->in_flight > 0; g->in_flight--) {
        redisReply *r = NULL;
        if (redisGetReply(g->redis, (void **)&r) != REDIS_OK || !r)
            die("redis: %s", g->redis->errstr[0] ? g->redis->errstr : "no reply");
        if (r->type == REDIS_REPLY_ERROR)
            die("XADD failed: %s", r->str);
        freeReplyObject(r);
    }
}

/*
 * --rate: the emitter's stamp. Waits for the next event's turn (flushing the pipeline first,
 * so nothing sent lingers) and returns the wall clock.
 */
static int64_t paced(void *ctx, int64_t sim_ms)
{
    gen *g = ctx;
    (void)sim_ms;
    int64_t due = g->t0_ns + (int64_t)((double)g->written * 1e9 / g->opt.rate);
    if (due > clock_ns(CLOCK_MONOTONIC)) {
        drain(g);
        struct timespec ts = { (time_t)(due / 1000000000), (long)(due % 1000000000) };
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
    }
    return clock_ns(CLOCK_REALTIME) / 1000000;
}

static void run(gen *g, emit_stream *s)
{
    static emit_event ev;
    int rc;
    g->t0_ns = clock_ns(CLOCK_MONOTONIC);
    while ((rc = emit_next(s, &ev)) == 1) {
        const char *argv[] = { "XADD", STREAM, "*", "e", (const char *)ev.bytes };
        size_t lens[] = { 4, strlen(STREAM), 1, 1, ev.len };
        if (redisAppendCommandArgv(g->redis, 5, argv, lens) != REDIS_OK)
            die("redis: %s", g->redis->errstr);
        g->written++;
        g->counts[ev.type & 15]++;
        if (++g->in_flight >= PIPELINE)
            drain(g);
    }
    if (rc < 0)
        die("the emitter failed (%d) after %lld events", rc, g->written);
    drain(g);
}

static void usage(void)
{
    fputs("usage: bench-eventgen [--redis host:port] [--events N] [--tenants T] [--seed S]\n"
          "                      [--rate R [--duration S] | --until-now] [--imported]\n"
          "  --redis     Redis address (127.0.0.1:6379)\n"
          "  --events    stream entries to write, reference events included (1000000)\n"
          "  --tenants   tenants, 1..16 (3)\n"
          "  --seed      the simulation's seed: the same seed gives the same events (1)\n"
          "  --rate      events per second, paced and stamped with the wall clock (0: as fast\n"
          "              as possible, stamped with the simulated time)\n"
          "  --duration  seconds to run at --rate: sets --events to rate x duration\n"
          "  --until-now the simulated year ends now (not 2024-07-01 + 1 year)\n"
          "  --imported  mark the events imported (recorded a day after the simulated year)\n",
          stderr);
    exit(2);
}

static double number(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi)
        die("%s: expected a number from %g to %g, got \"%s\"", opt, lo, hi, s ? s : "");
    return v;
}

static void parse(options *o, int argc, char **argv)
{
    *o = (options){ .host = "127.0.0.1", .port = 6379, .events = 1000000, .tenants = 3, .seed = 1 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--imported") == 0 || strcmp(a, "--until-now") == 0) {
            *(a[2] == 'i' ? &o->imported : &o->until_now) = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || !v)
            usage();
        i++;
        if (strcmp(a, "--redis") == 0) {
            static char host[256];
            const char *colon = strrchr(v, ':');
            if (!colon || colon == v || (size_t)(colon - v) >= sizeof(host))
                die("--redis: expected host:port, got \"%s\"", v);
            memcpy(host, v, (size_t)(colon - v));
            host[colon - v] = '\0';
            o->host = host;
            o->port = (int)number(a, colon + 1, 1, 65535);
        } else if (strcmp(a, "--events") == 0) {
            o->events = (long long)number(a, v, 1, 1e10);
        } else if (strcmp(a, "--tenants") == 0) {
            o->tenants = (int)number(a, v, 1, WORLD_TENANTS_MAX);
        } else if (strcmp(a, "--seed") == 0) {
            o->seed = (uint64_t)number(a, v, 0, 1e18);
        } else if (strcmp(a, "--rate") == 0) {
            o->rate = number(a, v, 0, 1e7);
        } else if (strcmp(a, "--duration") == 0) {
            o->duration = number(a, v, 0, 1e6);
        } else {
            usage();
        }
    }
    if (o->until_now && o->rate > 0)
        die("--until-now and --rate exclude each other (--rate stamps with the wall clock)");
    if (o->duration > 0) {
        if (o->rate <= 0)
            die("--duration needs --rate");
        o->events = (long long)(o->rate * o->duration);
        if (o->events < 1)
            die("--rate x --duration is less than one event");
    }
}

int main(int argc, char **argv)
{
    static gen g;
    static world w;
    char spec[WORLD_TENANTS_MAX * 32] = "", err[256];
    parse(&g.opt, argc, argv);
    for (int t = 0; t < g.opt.tenants; t++)
        snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec), "%stenant-%d:%s", t ? "," : "",
                 t, zones[t % 6]);
    if (world_parse_tenants(&w, spec, err, sizeof(err)) != 0)
        die("%s", err);
    int64_t end_ms = SIM_START_MS + SIM_DAYS * WORLD_DAY_MS;
    if (g.opt.until_now)
        end_ms = clock_ns(CLOCK_REALTIME) / 1000000;
    for (int t = 0; t < w.ntenants; t++)
        world_set_window(&w.tenants[t], g.opt.seed, end_ms, SIM_DAYS);
    emit_options eo = { .seed = g.opt.seed, .events = g.opt.events, .imported = g.opt.imported };
    eo.recorded_at_ms = g.opt.until_now ? end_ms : end_ms + WORLD_DAY_MS;
    if (g.opt.rate > 0) {
        eo.stamp = paced;
        eo.stamp_ctx = &g;
    }

    struct timeval tv = { 10, 0 };
    g.redis = redisConnectWithTimeout(g.opt.host, g.opt.port, tv);
    if (!g.redis || g.redis->err)
        die("cannot connect to %s:%d: %s", g.opt.host, g.opt.port,
            g.redis ? g.redis->errstr : "out of memory");
    redisSetTimeout(g.redis, tv);

    int64_t t0 = clock_ns(CLOCK_MONOTONIC);
    emit_stream *s = emit_new(&w, &eo);
    if (!s)
        die("out of memory");
    run(&g, s);
    double secs = (double)(clock_ns(CLOCK_MONOTONIC) - t0) / 1e9;
    char span[64] = "";
    if (g.opt.until_now) {
        time_t a = (time_t)((end_ms - SIM_DAYS * WORLD_DAY_MS) / 1000), b = (time_t)(end_ms / 1000);
        char from[16], to[16];
        strftime(from, sizeof(from), "%Y-%m-%d", gmtime(&a));
        strftime(to, sizeof(to), "%Y-%m-%d", gmtime(&b));
        snprintf(span, sizeof(span), ", %s to %s (until now)", from, to);
    }
    long long *n = g.counts;
    printf("bench-eventgen: %lld events to %s:%d %s in %.2f s (%.0f events/s): %" PRId64
           " complaints; %lld created, %lld assigned, %lld status changes, %lld reference; "
           "seed %" PRIu64 "%s%s\n",
           g.written, g.opt.host, g.opt.port, STREAM, secs, (double)g.written / secs,
           emit_complaints(s), n[TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED],
           n[TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED],
           n[TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED],
           n[TALLY__V1__EVENT_TYPE__EVENT_TYPE_TENANT_PUT] +
               n[TALLY__V1__EVENT_TYPE__EVENT_TYPE_CATEGORY_PUT] +
               n[TALLY__V1__EVENT_TYPE__EVENT_TYPE_AGENT_PUT],
           g.opt.seed, g.opt.imported ? ", imported" : "", span);
    emit_free(s);
    redisFree(g.redis);
    return 0;
}
