/*
 * tally-sim seed: sample tenants and a year of complaint history, through command-svc.
 *
 * First, on one connection: each tenant's reference data (PutTenant, PutCategory, PutAgent),
 * then the tenant's seed window. Then --clients threads, each with its own connection (its own
 * gc_client), take batches of up to 1,000 complaints of one tenant from a shared counter,
 * generate them (sim_gen.h) and send them with ImportComplaints; a batch whose request would
 * pass the server's 4 MiB message limit is split in halves. The main thread prints progress
 * and takes SIGINT/SIGTERM: the workers then finish the batches in flight and stop.
 *
 * Reruns. Idempotency keys are "sim<seed>-<index>" per tenant, and a complaint's content
 * depends only on (seed, tenant, index) and the tenant's window, so a rerun sends the same
 * entries and the server reports them already_existed. The window ends a few minutes before
 * the first run; a later run must find that end again rather than use its own clock. Complaint
 * 0 of each tenant is created exactly at the window's start and is always imported first, on
 * its own (import_first): when that gets ALREADY_EXISTS, the key was imported by an earlier
 * run, and FindComplaintByKey gives that complaint's creation time, hence the window. That import
 * is then repeated with that window and must report already_existed; if it does not, the tenant
 * holds data of this seed made with other options, which is an error.
 * --complaints may change between runs: complaint i is the same whatever the total, so a
 * larger run adds to a smaller one. A rerun sends every batch again; the server writes nothing
 * for keys it has (a 20,000-complaint rerun takes 0.6 s).
 */
#include "args.h"
#include "civil.h"
#include "err.h"
#include "gclient.h"
#include "now.h"
#include "sim_gen.h"
#include "sim_int.h"
#include "sim_rpc.h"
#include "sim_world.h"
#include "tally/v1/commands.pb-c.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEED_BATCH         1000              /* ImportComplaints takes at most 1,000 */
#define SEED_REQUEST_MAX   (4194304 - 65536) /* the server's 4 MiB limit, with room to spare */
#define SEED_DEADLINE_MS   120000
#define SEED_PROBE_MS      30000
#define SEED_RETRIES       5 /* of an ABORTED import (a concurrent import) */
#define SEED_PROGRESS_MS   2000
#define SEED_CLIENTS_MAX   64
#define SEED_END_MARGIN_MS (5 * WORLD_MINUTE_MS) /* the window ends this long before now */

static const char seed_usage[] =
    "Usage: tally-sim seed [options]\n"
    "\n"
    "Creates each tenant with its categories and agents, then imports --complaints complaints\n"
    "in total, split unevenly between the tenants, created over the last --days days with\n"
    "their histories (assignments, status moves, reopens), using ImportComplaints. Running it\n"
    "again with the same --seed imports nothing twice. Progress goes to stderr, a summary line\n"
    "to stdout. Exits 0 when done, 1 on any error (a gRPC error included), 2 on bad usage,\n"
    "128 + the signal's number when interrupted (run it again to import the rest).\n"
    "\n"
    "Options:\n"
    "  --command HOST:PORT   command-svc's gRPC address (default " SIM_DEFAULT_TARGET ")\n"
    "  --tenants LIST        id:Time/Zone,... (default " SIM_DEFAULT_TENANTS ")\n"
    "  --complaints N        complaints in total, all tenants together (default 200000)\n"
    "  --days N              the days of history, ending a few minutes ago (default 365)\n"
    "  --seed N              the random seed; it also names the idempotency keys (default 1)\n"
    "  --clients N           concurrent connections, one thread each (default 2)\n";

typedef struct seed_opts {
    const char *target, *tenants;
    int64_t complaints, days, seed, clients;
} seed_opts;

/* Complaints [first, first + count) of one tenant: one ImportComplaints call (or two halves). */
typedef struct seed_batch {
    int tenant;
    int64_t first, count;
} seed_batch;

typedef struct seed_run {
    world w;
    seed_opts o;
    uint64_t seed;
    seed_batch *batches;
    size_t nbatches;
    atomic_size_t next; /* the next batch to take */
    atomic_int running; /* workers not finished */
    atomic_bool stop;
    atomic_int_fast64_t sent, imported, events, reopens;
    pthread_mutex_t lock;
    bool failed;
    int fail_code;
    char error[1400];
} seed_run;

static void seed_fail(seed_run *run, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error (code: its gRPC status code, 0 if none) and stops the workers. */
static void seed_fail(seed_run *run, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&run->lock);
    if (!run->failed) {
        run->fail_code = code;
        vsnprintf(run->error, sizeof(run->error), fmt, ap);
        run->failed = true;
    }
    pthread_mutex_unlock(&run->lock);
    va_end(ap);
    atomic_store(&run->stop, true);
}

/* "2025-11-23 06:35 UTC" */
static const char *fmt_time(char *buf, size_t len, int64_t ms)
{
    int64_t day = civil_day_of_ms(ms, 0);
    char date[CIVIL_DAY_LEN];
    civil_format(day, date);
    int64_t min = (ms - day * WORLD_DAY_MS) / WORLD_MINUTE_MS;
    snprintf(buf, len, "%s %02d:%02d UTC", date, (int)(min / 60), (int)(min % 60));
    return buf;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ---- importing ----------------------------------------------------------------------------- */

/*
 * Imports complaints[0..n) of t, split in halves while the request is too large. 0, or -1
 * after seed_fail.
 */
static int import(seed_run *run, gc_client *c, const world_tenant *t,
                  Tally__V1__ImportedComplaint **complaints, size_t n)
{
    Tally__V1__ImportComplaintsRequest req = TALLY__V1__IMPORT_COMPLAINTS_REQUEST__INIT;
    req.tenant_id = (char *)t->id;
    req.complaints = complaints;
    req.n_complaints = n;
    size_t size = protobuf_c_message_get_packed_size(&req.base);
    if (size > SEED_REQUEST_MAX) {
        if (n == 1) {
            seed_fail(run, 0, "complaint %s of tenant %s alone is %zu bytes, over %d",
                      complaints[0]->idempotency_key, t->id, size, SEED_REQUEST_MAX);
            return -1;
        }
        if (import(run, c, t, complaints, n / 2) != 0)
            return -1;
        return import(run, c, t, complaints + n / 2, n - n / 2);
    }

    ProtobufCMessage *msg = NULL;
    gc_status st;
    for (int attempt = 0;; attempt++) {
        if (gc_call_msg(c, GC_COMMANDS("ImportComplaints"), &req.base,
                        &tally__v1__import_complaints_reply__descriptor, NULL, SEED_DEADLINE_MS,
                        &msg, &st) == 0)
            break;
        if (st.code == TALLY_GRPC_ABORTED &&
            attempt < SEED_RETRIES) { /* "retry", says the server */
            sleep_ms(200 * (attempt + 1));
            continue;
        }
        seed_fail(run, st.code, "ImportComplaints of tenant %s, keys %s to %s: %s%s", t->id,
                  complaints[0]->idempotency_key, complaints[n - 1]->idempotency_key, st.message,
                  st.code == TALLY_GRPC_ALREADY_EXISTS
                      ? " (the tenant holds data of this --seed made "
                        "with other options: use another --seed, or "
                        "start from an empty database)"
                      : "");
        return -1;
    }
    Tally__V1__ImportComplaintsReply *rep = (Tally__V1__ImportComplaintsReply *)msg;
    if (rep->n_results != n) {
        seed_fail(run, 0, "ImportComplaints of tenant %s: %zu results for %zu complaints", t->id,
                  rep->n_results, n);
        protobuf_c_message_free_unpacked(msg, NULL);
        return -1;
    }
    int64_t reopens = 0;
    for (size_t i = 0; i < n; i++)
        if (!rep->results[i]->already_existed) /* msg is gen_complaint's first member */
            reopens += ((const gen_complaint *)(const void *)complaints[i])->reopens;
    atomic_fetch_add(&run->sent, (int64_t)n);
    atomic_fetch_add(&run->imported, rep->imported);
    atomic_fetch_add(&run->events, rep->events_written);
    atomic_fetch_add(&run->reopens, reopens);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}

/* A worker thread: its own connection; takes batches until none is left or the run stops. */
static void *worker(void *arg)
{
    seed_run *run = arg;
    gen_complaint *slots = calloc(SEED_BATCH, sizeof(*slots));
    Tally__V1__ImportedComplaint **ptrs = calloc(SEED_BATCH, sizeof(*ptrs));
    gc_client *c = NULL;
    if (!slots || !ptrs) {
        seed_fail(run, 0, "out of memory");
        goto out_free;
    }
    c = gc_new(run->o.target);
    while (!atomic_load(&run->stop)) {
        size_t i = atomic_fetch_add(&run->next, 1);
        if (i >= run->nbatches)
            break;
        const seed_batch *b = &run->batches[i];
        const world_tenant *t = &run->w.tenants[b->tenant];
        for (int64_t k = 0; k < b->count; k++) {
            gen_imported(&slots[k], t, run->seed, b->first + k);
            ptrs[k] = &slots[k].msg;
        }
        if (import(run, c, t, ptrs, (size_t)b->count) != 0)
            break;
    }
out_free:
    gc_free(c);
    free(ptrs);
    free(slots);
    atomic_fetch_sub(&run->running, 1);
    return NULL;
}

/* ---- the window ---------------------------------------------------------------------------- */

/*
 * Imports complaint 0 of t alone. 0 with *existed; otherwise -1 with st saying why
 * (ALREADY_EXISTS when the key holds other content).
 */
static int import_first(seed_run *run, gc_client *c, const world_tenant *t, bool *existed,
                        gc_status *st)
{
    gen_complaint *g = malloc(sizeof(*g));
    Tally__V1__ImportedComplaint *one[1];
    Tally__V1__ImportComplaintsRequest req = TALLY__V1__IMPORT_COMPLAINTS_REQUEST__INIT;
    ProtobufCMessage *msg;
    if (!g) {
        st->code = TALLY_GRPC_RESOURCE_EXHAUSTED;
        snprintf(st->message, sizeof(st->message), "out of memory");
        return -1;
    }
    gen_imported(g, t, run->seed, 0);
    one[0] = &g->msg;
    req.tenant_id = (char *)t->id;
    req.complaints = one;
    req.n_complaints = 1;
    int rc =
        gc_call_msg(c, GC_COMMANDS("ImportComplaints"), &req.base,
                    &tally__v1__import_complaints_reply__descriptor, NULL, SEED_PROBE_MS, &msg, st);
    if (rc == 0) {
        Tally__V1__ImportComplaintsReply *rep = (Tally__V1__ImportComplaintsReply *)msg;
        *existed = rep->n_results == 1 && rep->results[0]->already_existed;
        atomic_fetch_add(&run->imported, rep->imported);
        atomic_fetch_add(&run->events, rep->events_written);
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    free(g);
    return rc;
}

/* The creation time of the complaint key created (FindComplaintByKey): 0, or -1 with st. */
static int created_of(gc_client *c, const world_tenant *t, const char *key, int64_t *created_ms,
                      gc_status *st)
{
    Tally__V1__FindComplaintByKeyRequest req = TALLY__V1__FIND_COMPLAINT_BY_KEY_REQUEST__INIT;
    ProtobufCMessage *msg;
    req.tenant_id = (char *)t->id;
    req.idempotency_key = (char *)key;
    int rc = gc_call_msg(c, GC_COMMANDS("FindComplaintByKey"), &req.base,
                         &tally__v1__find_complaint_by_key_reply__descriptor, NULL, SEED_PROBE_MS,
                         &msg, st);
    if (rc != 0)
        return rc;
    *created_ms = ((Tally__V1__FindComplaintByKeyReply *)msg)->created_at_ms;
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}

/*
 * Sets t's window: the one ending at end_ms for a tenant not seeded with this seed yet, else
 * the window of the run that first seeded it. 0, or -1 after saying why.
 */
static int seed_window(seed_run *run, gc_client *c, world_tenant *t, int64_t end_ms)
{
    gc_status st;
    bool existed = false;
    char when[40], key[GEN_KEY_MAX];
    world_set_window(t, run->seed, end_ms, (int)run->o.days);
    if (import_first(run, c, t, &existed, &st) == 0)
        return 0;
    if (st.code != TALLY_GRPC_ALREADY_EXISTS) {
        sim_say("error: tenant %s: %s", t->id, st.message);
        return -1;
    }
    int64_t created;
    gen_key(key, sizeof(key), run->seed, 0);
    int found = created_of(c, t, key, &created, &st);
    if (found != 0 && st.code != TALLY_GRPC_NOT_FOUND) {
        sim_say("error: tenant %s: looking up the first complaint's key: %s", t->id, st.message);
        return -1;
    }
    if (found == 0) {
        world_set_window(t, run->seed, created + run->o.days * WORLD_DAY_MS, (int)run->o.days);
        if (import_first(run, c, t, &existed, &st) == 0 && existed) {
            sim_say("%s: seeded before with --seed %" PRIu64 "; continuing that history, which "
                    "ends at %s",
                    t->id, run->seed, fmt_time(when, sizeof(when), t->end_ms));
            return 0;
        }
    }
    sim_say("error: tenant %s already holds sample data of --seed %" PRIu64 " made with other "
            "options (--days, or the tenant's time zone): use another --seed, or start from an "
            "empty database (scripts/stack clean)",
            t->id, run->seed);
    return -1;
}

/* ---- the run ------------------------------------------------------------------------------- */

/* Takes one of seed's options (args_fn). */
static int take_opt(void *arg, int opt, char *value)
{
    seed_opts *o = arg;
    switch (opt) {
    case 'c':
        o->target = value;
        return 0;
    case 't':
        o->tenants = value;
        return 0;
    case 'n':
        return sim_parse_int("--complaints", value, 1, 100000000, &o->complaints);
    case 'd':
        return sim_parse_int("--days", value, 1, 3650, &o->days);
    case 's':
        return sim_parse_int("--seed", value, 0, INT64_MAX, &o->seed);
    case 'k':
        return sim_parse_int("--clients", value, 1, SEED_CLIENTS_MAX, &o->clients);
    default:
        return -1;
    }
}

/* The options into o: ARGS_OK, ARGS_HELP or ARGS_BAD (args.h; the usage is printed). */
static int parse_opts(int argc, char **argv, seed_opts *o)
{
    static const struct option longopts[] = {
        { "command", required_argument, NULL, 'c' },
        { "tenants", required_argument, NULL, 't' },
        { "complaints", required_argument, NULL, 'n' },
        { "days", required_argument, NULL, 'd' },
        { "seed", required_argument, NULL, 's' },
        { "clients", required_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const args_spec spec = { "tally-sim: seed", seed_usage, "h", longopts, 'h', take_opt, o };
    *o = (seed_opts){ SIM_DEFAULT_TARGET, SIM_DEFAULT_TENANTS, 200000, 365, 1, 2 };
    return args_parse(&spec, argc, argv);
}

/* Batches of every tenant, interleaved so that all tenants fill up together. */
static int plan(seed_run *run)
{
    size_t n = 0;
    for (int i = 0; i < run->w.ntenants; i++)
        n += (size_t)((run->w.tenants[i].count + SEED_BATCH - 1) / SEED_BATCH);
    run->batches = calloc(n ? n : 1, sizeof(*run->batches));
    if (!run->batches)
        return -1;
    for (int64_t first = 0; run->nbatches < n; first += SEED_BATCH)
        for (int i = 0; i < run->w.ntenants; i++) {
            int64_t count = run->w.tenants[i].count - first;
            if (count > 0)
                run->batches[run->nbatches++] =
                    (seed_batch){ i, first, count < SEED_BATCH ? count : SEED_BATCH };
        }
    return 0;
}

/* Prints progress every SEED_PROGRESS_MS until the workers are done; takes the signals. */
static int watch(seed_run *run, int64_t total, int64_t t0)
{
    int sig = 0;
    int64_t last = t0;
    char a[32], b[32];
    while (atomic_load(&run->running) > 0) {
        int s = sim_wait_signal(200);
        if (s && !sig) {
            sig = s;
            sim_say("%s: stopping after the batches in flight", strsignal(s));
            atomic_store(&run->stop, true);
        }
        int64_t now = now_mono_ms();
        if (now - last >= SEED_PROGRESS_MS && atomic_load(&run->running) > 0) {
            int64_t sent = atomic_load(&run->sent);
            double secs = (double)(now - t0) / 1000, rate = secs > 0 ? (double)sent / secs : 0;
            fprintf(stderr, "tally-sim: seed: %s of %s complaints (%d%%), %.0f complaints/s\n",
                    sim_count(a, sizeof(a), sent), sim_count(b, sizeof(b), total),
                    (int)(100 * sent / (total ? total : 1)), rate);
            last = now;
        }
    }
    return sig;
}

int sim_seed(int argc, char **argv)
{
    seed_run *run = calloc(1, sizeof(*run));
    pthread_t threads[SEED_CLIENTS_MAX];
    int nthreads = 0, rc = SIM_EXIT_FAILED, sig = 0;
    char err[512], when[40], a[32], b[32], c3[32], d[32];
    gc_client *c = NULL;
    if (!run) {
        sim_say("out of memory");
        return SIM_EXIT_FAILED;
    }
    pthread_mutex_init(&run->lock, NULL);
    int parsed = parse_opts(argc, argv, &run->o);
    if (parsed != ARGS_OK) {
        rc = parsed == ARGS_HELP ? SIM_EXIT_OK : SIM_EXIT_USAGE;
        goto out_free;
    }
    run->seed = (uint64_t)run->o.seed;
    if (world_parse_tenants(&run->w, run->o.tenants, err, sizeof(err)) != 0) {
        sim_say("%s", err);
        rc = SIM_EXIT_USAGE;
        goto out_free;
    }
    world_split(&run->w, run->o.complaints);
    int64_t now = now_wall_ms();
    int64_t end = now / WORLD_MINUTE_MS * WORLD_MINUTE_MS - SEED_END_MARGIN_MS;
    /* Before gRPC starts its threads, so that the signals wait for sim_wait_signal. */
    sim_block_signals();
    c = gc_new(run->o.target);
    int64_t t_setup = now_mono_ms();
    for (int i = 0; i < run->w.ntenants; i++) {
        world_tenant *t = &run->w.tenants[i];
        gc_status st;
        int changed = 0;
        if ((sig = sim_wait_signal(0)) != 0) {
            sim_say("%s: stopped before importing anything", strsignal(sig));
            goto out_free;
        }
        if (rpc_put_tenant(c, t, &changed, &st) != 0) {
            sim_say("error: writing tenant %s to command-svc at %s: %s%s", t->id, run->o.target,
                    st.message,
                    st.code == TALLY_GRPC_UNAVAILABLE ? " (is command-svc running there?)" : "");
            goto out_free;
        }
        if (t->count > 0 && seed_window(run, c, t, end) != 0)
            goto out_free;
        fprintf(stderr,
                "tally-sim: %s (%s, %s): %d categories, %d agents%s; %s complaints up to %s\n",
                t->id, t->name, t->zone, t->ncategories, t->nagents, changed ? "" : " (unchanged)",
                sim_count(a, sizeof(a), t->count),
                t->count > 0 ? fmt_time(when, sizeof(when), t->end_ms) : "-");
    }
    int64_t setup_ms = now_mono_ms() - t_setup;
    if (plan(run) != 0) {
        sim_say("out of memory");
        goto out_free;
    }

    int64_t t0 = now_mono_ms();
    atomic_store(&run->running, (int)run->o.clients);
    for (; nthreads < run->o.clients; nthreads++)
        if (pthread_create(&threads[nthreads], NULL, worker, run) != 0) {
            atomic_fetch_sub(&run->running, (int)(run->o.clients - nthreads));
            seed_fail(run, 0, "cannot start a thread");
            break;
        }
    sig = watch(run, run->o.complaints, t0);
    for (int i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    double secs = (double)(now_mono_ms() - t0) / 1000;
    int64_t sent = atomic_load(&run->sent), imported = atomic_load(&run->imported);

    if (run->failed) {
        sim_say("error: %s", run->error);
        if (gc_transient(run->fail_code))
            sim_say("%s of %s complaints were sent before the error; a rerun continues",
                    sim_count(a, sizeof(a), sent), sim_count(b, sizeof(b), run->o.complaints));
        goto out_free;
    }
    if (sig) {
        sim_say("interrupted after %s of %s complaints; run the same command again to import "
                "the rest",
                sim_count(a, sizeof(a), sent), sim_count(b, sizeof(b), run->o.complaints));
        goto out_free;
    }
    if (imported == 0) {
        printf("already seeded: %s complaints for %d tenant(s) with --seed %" PRIu64
               ", nothing to import (checked in %.1f s)\n",
               sim_count(a, sizeof(a), sent), run->w.ntenants, run->seed,
               secs + (double)setup_ms / 1000);
        fflush(stdout);
        rc = SIM_EXIT_OK;
        goto out_free;
    }
    printf("seeded %s complaints for %d tenant(s) in %.1f s (%.0f imported/s; setup %.1f s): "
           "%s imported, %s already there, %s events, %s reopened complaints\n",
           sim_count(a, sizeof(a), sent), run->w.ntenants, secs,
           secs > 0 ? (double)imported / secs : 0, (double)setup_ms / 1000,
           sim_count(b, sizeof(b), imported),
           sim_count(c3, sizeof(c3), sent - imported > 0 ? sent - imported : 0),
           sim_count(d, sizeof(d), atomic_load(&run->events)),
           sim_count(when, sizeof(when), atomic_load(&run->reopens)));
    fflush(stdout);
    rc = SIM_EXIT_OK;
out_free:
    gc_free(c);
    free(run->batches);
    pthread_mutex_destroy(&run->lock);
    free(run);
    return sig ? 128 + sig : rc;
}
