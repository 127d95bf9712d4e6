/*
 * bench-watch: what WatchDashboard streams cost query-svc, and how soon a change reaches them.
 * Against a running command-svc, projector and query-svc (bench/watch-bench.sh starts them):
 *
 *  1. Seeds a tenant (PutTenant, a category, an agent) and one complaint.
 *  2. Opens --streams WatchDashboard streams of that tenant (the same request, as the
 *     managers of one help desk load the same page), over --connections connections, and waits
 *     until each has its first page.
 *  3. idle: --seconds s with nothing changing; query-svc's CPU (utime + stime of --query-pid).
 *  4. changing: CreateComplaint at --rate/s for --seconds s; query-svc's CPU, pages received,
 *     and per command the time from its OK to the first page on stream 0 that holds it
 *     (created_today counts it): p50, p99, max.
 * One reader thread takes every stream's pages. Prints "key value" lines.
 */
#include "args.h"
#include "gclient.h"
#include "load.h"

#include "tally/v1/commands.pb-c.h"
#include "tally/v1/dashboard.pb-c.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_STREAMS 20000
#define MAX_CMDS    100000

enum {
    OPT_CMD = 1,
    OPT_QUERY,
    OPT_PID,
    OPT_STREAMS,
    OPT_CONNS,
    OPT_SECONDS,
    OPT_RATE,
    OPT_TENANT,
    OPT_INTERVAL,
    OPT_HELP
};

static const char usage[] =
    "usage: bench-watch --commands HOST:PORT --query HOST:PORT --query-pid PID [--streams N]\n"
    "                   [--connections N] [--seconds S] [--rate R] [--tenant T] [--interval MS]\n";

static struct {
    const char *cmd, *query, *tenant;
    long pid;
    int streams, conns, interval;
    double seconds, rate;
} opt = {
    .tenant = "watch-bench", .streams = 1000, .conns = 4, .seconds = 10, .rate = 10, .interval = 100
};

static gc_stream *streams[MAX_STREAMS];
static _Atomic long pages;                /* pages received on all streams */
static _Atomic int64_t seen_created;      /* the highest created_today seen on stream 0 */
static int64_t ok_ms[MAX_CMDS];           /* command k's OK, monotonic ms */
static _Atomic int64_t page_ms[MAX_CMDS]; /* the first page on stream 0 holding command k */
static int64_t base_created;              /* created_today before the first command */
static _Atomic bool reading = true;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double cpu_seconds(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int take(void *arg, int o, char *v)
{
    (void)arg;
    switch (o) {
    case OPT_CMD:
        opt.cmd = v;
        return 0;
    case OPT_QUERY:
        opt.query = v;
        return 0;
    case OPT_TENANT:
        opt.tenant = v;
        return 0;
    case OPT_PID:
        opt.pid = atol(v);
        return opt.pid > 0 ? 0 : -1;
    case OPT_STREAMS:
        opt.streams = atoi(v);
        return opt.streams >= 1 && opt.streams <= MAX_STREAMS ? 0 : -1;
    case OPT_CONNS:
        opt.conns = atoi(v);
        return opt.conns >= 1 && opt.conns <= 64 ? 0 : -1;
    case OPT_SECONDS:
        opt.seconds = atof(v);
        return opt.seconds > 0 ? 0 : -1;
    case OPT_RATE:
        opt.rate = atof(v);
        return opt.rate > 0 && opt.rate <= 1000 ? 0 : -1;
    case OPT_INTERVAL:
        opt.interval = atoi(v);
        return opt.interval >= 0 ? 0 : -1;
    default:
        return -1;
    }
}

static void must(gc_client *c, const char *method, const ProtobufCMessage *m)
{
    gc_status st;
    if (gc_call_msg(c, method, m, NULL, NULL, 10000, NULL, &st) != 0 &&
        st.code != TALLY_GRPC_ALREADY_EXISTS) {
        fprintf(stderr, "bench-watch: %s: %s\n", method, st.message);
        exit(1);
    }
}

static void seed(gc_client *c)
{
    Tally__V1__PutTenantRequest t = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    t.tenant_id = (char *)opt.tenant;
    t.name = "Watch bench";
    t.time_zone = "UTC";
    must(c, GC_COMMANDS("PutTenant"), &t.base);
    Tally__V1__PutCategoryRequest cat = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    cat.tenant_id = (char *)opt.tenant;
    cat.category_id = "c1";
    cat.name = "Category";
    must(c, GC_COMMANDS("PutCategory"), &cat.base);
}

static int64_t create(gc_client *c, int k)
{
    char key[48];
    Tally__V1__CreateComplaintRequest r = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    snprintf(key, sizeof(key), "watch-%d-%ld", k, (long)getpid());
    r.tenant_id = (char *)opt.tenant;
    r.idempotency_key = key;
    r.category_id = "c1";
    r.priority = TALLY__V1__PRIORITY__PRIORITY_MEDIUM;
    r.title = "Watched";
    r.customer_id = "cust";
    must(c, GC_COMMANDS("CreateComplaint"), &r.base);
    return mono_ms();
}

/* Takes every stream's pages; stream 0's created_today dates the commands' arrivals. */
static void *reader(void *arg)
{
    (void)arg;
    while (atomic_load(&reading)) {
        bool any = false;
        for (int i = 0; i < opt.streams; i++) {
            uint8_t *data;
            size_t len;
            gc_status st;
            int rc = gc_stream_next(streams[i], 0, &data, &len, &st);
            if (rc < 0) {
                fprintf(stderr, "bench-watch: stream %d ended: %s\n", i, st.message);
                exit(1);
            }
            if (rc == 0)
                continue;
            any = true;
            atomic_fetch_add(&pages, 1);
            if (i == 0) {
                int64_t now = mono_ms();
                Tally__V1__GetDashboardReply *p =
                    tally__v1__get_dashboard_reply__unpack(NULL, len, data);
                if (p && p->overview) {
                    int64_t c = p->overview->created_today;
                    for (int64_t k = atomic_load(&seen_created); k < c; k++)
                        if (k - base_created >= 0 && k - base_created < MAX_CMDS)
                            atomic_store(&page_ms[k - base_created], now);
                    if (c > atomic_load(&seen_created))
                        atomic_store(&seen_created, c);
                }
                if (p)
                    tally__v1__get_dashboard_reply__free_unpacked(p, NULL);
            }
            free(data);
        }
        if (!any) {
            struct timespec ts = { 0, 2 * 1000000 };
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = { { "commands", required_argument, NULL, OPT_CMD },
                                          { "query", required_argument, NULL, OPT_QUERY },
                                          { "query-pid", required_argument, NULL, OPT_PID },
                                          { "streams", required_argument, NULL, OPT_STREAMS },
                                          { "connections", required_argument, NULL, OPT_CONNS },
                                          { "seconds", required_argument, NULL, OPT_SECONDS },
                                          { "rate", required_argument, NULL, OPT_RATE },
                                          { "tenant", required_argument, NULL, OPT_TENANT },
                                          { "interval", required_argument, NULL, OPT_INTERVAL },
                                          { "help", no_argument, NULL, OPT_HELP },
                                          { NULL, 0, NULL, 0 } };
    const args_spec spec = { "bench-watch", usage, "", opts, OPT_HELP, take, NULL };
    int rc = args_parse(&spec, argc, argv);
    if (rc != ARGS_OK)
        return rc == ARGS_HELP ? 0 : 2;
    if (!opt.cmd || !opt.query || !opt.pid) {
        fputs(usage, stderr);
        return 2;
    }
    gc_quiet();
    gc_client *cmd = gc_new(opt.cmd), *q[64];
    seed(cmd);
    create(cmd, -1);
    sleep(1);
    Tally__V1__GetDashboardRequest req = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    req.tenant_id = (char *)opt.tenant;
    req.min_interval_ms = opt.interval;
    for (int i = 0; i < opt.conns; i++)
        q[i] = gc_new(opt.query);
    for (int i = 0; i < opt.streams; i++) {
        streams[i] =
            gc_stream_open(q[i % opt.conns], GC_DASHBOARD("WatchDashboard"), &req.base, NULL, 0);
        uint8_t *data;
        size_t len;
        gc_status st = { .message = "the stream could not start" };
        if (!streams[i] || gc_stream_next(streams[i], 10000, &data, &len, &st) != 1) {
            fprintf(stderr, "bench-watch: stream %d: no first page: %s\n", i, st.message);
            return 1;
        }
        if (i == 0) {
            Tally__V1__GetDashboardReply *p =
                tally__v1__get_dashboard_reply__unpack(NULL, len, data);
            base_created = p && p->overview ? p->overview->created_today : 0;
            atomic_store(&seen_created, base_created);
            if (p)
                tally__v1__get_dashboard_reply__free_unpacked(p, NULL);
        }
        free(data);
    }
    printf("streams %d\nconnections %d\ninterval_ms %d\n", opt.streams, opt.conns, opt.interval);
    pthread_t rt;
    pthread_create(&rt, NULL, reader, NULL);

    double c0 = cpu_seconds(opt.pid);
    int64_t t0 = mono_ms();
    usleep((useconds_t)(opt.seconds * 1e6));
    double idle = (cpu_seconds(opt.pid) - c0) / ((double)(mono_ms() - t0) / 1000.0);
    printf("idle_cpu_pct %.2f\nidle_pages %ld\n", idle * 100, atomic_load(&pages));

    long pages0 = atomic_load(&pages);
    int n = (int)(opt.seconds * opt.rate);
    if (n > MAX_CMDS)
        n = MAX_CMDS;
    c0 = cpu_seconds(opt.pid);
    t0 = mono_ms();
    for (int k = 0; k < n; k++) {
        int64_t due = t0 + (int64_t)((double)k * 1000.0 / opt.rate);
        while (mono_ms() < due)
            usleep(500);
        ok_ms[k] = create(cmd, k);
    }
    int64_t t1 = mono_ms();
    double busy = (cpu_seconds(opt.pid) - c0) / ((double)(t1 - t0) / 1000.0);
    for (int64_t until = mono_ms() + 10000; mono_ms() < until;) { /* the last ones arrive */
        if (atomic_load(&seen_created) >= base_created + n)
            break;
        usleep(10000);
    }
    atomic_store(&reading, false);
    pthread_join(rt, NULL);
    load_samples lat = { 0 };
    int missing = 0;
    for (int k = 0; k < n; k++) {
        int64_t at = atomic_load(&page_ms[k]);
        if (!at) {
            missing++;
            continue;
        }
        load_samples_add(&lat, (double)(at > ok_ms[k] ? at - ok_ms[k] : 0) / 1000.0);
    }
    load_samples_sort(&lat);
    printf("changing_rate %.1f\nchanging_cpu_pct %.2f\nchanging_pages %ld\n", opt.rate, busy * 100,
           atomic_load(&pages) - pages0);
    printf("ok_to_page_p50_ms %.1f\nok_to_page_p99_ms %.1f\nok_to_page_max_ms %.1f\n",
           load_samples_pct_ms(&lat, 50), load_samples_pct_ms(&lat, 99),
           load_samples_pct_ms(&lat, 100));
    printf("commands %d\nmissing %d\n", n, missing);
    load_samples_release(&lat);
    for (int i = 0; i < opt.streams; i++)
        gc_stream_free(streams[i]);
    for (int i = 0; i < opt.conns; i++)
        gc_free(q[i]);
    gc_free(cmd);
    return missing ? 1 : 0;
}
