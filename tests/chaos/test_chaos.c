/*
 * The chaos scenario (issue 8): the whole system under write traffic while faults are injected
 * at random (seeded) moments; then the traffic stops, the pipeline settles, and the checks say
 * whether anything that got OK was lost or applied twice.
 *
 * The system (tests/support/system.h): two command-svc replicas (the relay's leadership
 * moves between them), two projectors (sharing the consumer group), query-svc, a database of
 * its own on the test stack's PostgreSQL, and a private Redis with an append-only file. The
 * services run with the settings that make faults resolve quickly (a short claim time, a short
 * relay poll, a short relay give-up), two stream partitions.
 *
 * The traffic (tests/support/traffic.h) and the faults (tests/support/faults.h) are the
 * reusable parts; this file is the schedule and the checks:
 *   1. every OK'd command is in PostgreSQL (creations with their idempotency key, changes with
 *      their version in events and status_history);
 *   2. the read model applied every OK'd version (P cv), none is lost;
 *   3. `tally verify` is clean for every tenant (nothing applied twice, no figure off);
 *   4. the dead letters: each has a reason (their count is reported; parked complaints are
 *      also behind in 2);
 *   5. no command got an unexpected status, every scheduled fault could be injected (a relay
 *      leader was found each time), and the pipeline settled within its bound.
 *
 * Parameters come from the environment (tests/chaos/run sets them): TALLY_CHAOS_MINUTES (of
 * traffic, default 2), TALLY_CHAOS_SEED (default: from the clock; printed either way: the same
 * seed gives the same schedule of faults; the traffic draws from it too, but how it interleaves
 * with the faults depends on timing), TALLY_CHAOS_REPORT (a file that also receives the
 * summary). Waits are for conditions, with generous bounds; a watchdog (alarm) ends a run that
 * would hang.
 */
#include "faults.h"
#include "system.h"
#include "traffic.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PARTITIONS  2
#define SETTLE_MS   (600 * 1000) /* a bound, not an expectation: ASan on a loaded machine */
#define VERIFY_MS   (300 * 1000)
#define LEADER_MS   60000 /* a relay leader must exist again within this */
#define IMPORT_DAYS 30
#define TENANTS     "acme:America/New_York,globex:Europe/Berlin,initech:Asia/Tokyo,hooli:Asia/Kathmandu"

static const char *const command_env[] = {
    "TALLY_STREAM_PARTITIONS=2",
    "TALLY_RELAY_POLL_MS=100",
    "TALLY_RELAY_REDIS_GIVEUP_MS=3000",
    "TALLY_WORKERS=4",
    NULL,
};
static const char *const projector_env[] = {
    "TALLY_STREAM_PARTITIONS=2",
    "TALLY_PROJECTOR_CLAIM_IDLE_MS=1500",
    "TALLY_PROJECTOR_BLOCK_MS=200",
    /* well above 3 x claim idle + block: a gap waits for its reclaimed predecessor, and
     * Redis restarts mid-run make repairs that take seconds */
    "TALLY_PROJECTOR_GAP_TIMEOUT_MS=30000",
    "TALLY_PROJECTOR_VERIFY_EVERY_S=0", /* the run verifies at its end */
    NULL,
};
#define CLAIM_IDLE_MS 1500

/* ---- output: stdout and the report file ------------------------------------------------------ */

static FILE *report;
static int64_t t_start;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (report) {
        va_start(ap, fmt);
        vfprintf(report, fmt, ap);
        va_end(ap);
        fflush(report);
    }
}

/* A fault's own line (the fault functions write it), said with the run's clock. */
static char fault_line[1024];

static FILE *fault_out(void)
{
    memset(fault_line, 0, sizeof(fault_line));
    FILE *f = fmemopen(fault_line, sizeof(fault_line) - 1, "w");
    cr_assert(f, "fmemopen");
    return f;
}

static void fault_done(FILE *f)
{
    fclose(f);
    say("chaos %7.1f s  %s", (double)(now_mono_ms() - t_start) / 1000, fault_line);
}

/* ---- the schedule --------------------------------------------------------------------------- */

/* splitmix64: the schedule's random numbers (the traffic has its own streams). */
static uint64_t rnd_state;
static uint64_t rnd(void)
{
    uint64_t z = (rnd_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int rnd_below(int n)
{
    return (int)(rnd() % (uint64_t)n);
}

typedef struct planned {
    int64_t at_ms; /* from the start of the traffic */
    fault_kind kind;
} planned;

#define PLAN_MAX 512

/*
 * Faults for a run of total_ms: every kind once (Redis's restarts only once), then more of the
 * repeatable kinds, about 5 a minute, in a random order at random moments, one per slot of
 * [10%, 90%] of the run. The snapshot for the rollback is taken at 5%.
 */
static int plan(planned *p, int64_t total_ms)
{
    int n = (int)(total_ms / 12000);
    if (n < FAULT_KINDS)
        n = FAULT_KINDS;
    if (n > PLAN_MAX)
        n = PLAN_MAX;
    for (int i = 0; i < n; i++)
        p[i].kind = i < FAULT_KINDS ? (fault_kind)i : (fault_kind)rnd_below(FAULT_REDIS_WIPE);
    for (int i = n - 1; i > 0; i--) {
        int j = rnd_below(i + 1);
        fault_kind k = p[i].kind;
        p[i].kind = p[j].kind;
        p[j].kind = k;
    }
    int64_t from = total_ms / 10, slot = (total_ms * 8 / 10) / n;
    for (int i = 0; i < n; i++)
        p[i].at_ms = from + slot * i + slot / 5 + (int64_t)(rnd() % (uint64_t)(slot * 3 / 5 + 1));
    return n;
}

/* ---- the checks ----------------------------------------------------------------------------- */

static int failures;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    say("FAILED: %s\n", line);
    failures++;
}

/* tally verify of one tenant; 0 clean, 1 drift, else a failure to run. Prints its output. */
static int verify_tenant(sys_system *s, const char *tenant)
{
    char days[16];
    proc p;
    snprintf(days, sizeof(days), "%d", IMPORT_DAYS + 5);
    char *argv[] = {
        TALLY_BIN_DIR "/tally", "verify", "--tenant", (char *)tenant, "--days", days, NULL
    };
    const char *env[] = { s->db.pg_var, s->redis_var, NULL };
    cr_assert_eq(proc_spawn(&p, argv, env, true), 0, "cannot start tally verify");
    int rc = proc_wait(&p, VERIFY_MS);
    if (rc == -1)
        proc_stop(&p, SIGKILL, 5000);
    proc_release(&p);
    return rc;
}

/* Dead letters of every partition; *unreasoned counts those without a reason. */
static int64_t dead_letters(sys_system *s, int64_t *unreasoned)
{
    redisContext *c = sys_redis_connect(s);
    int64_t n = 0;
    *unreasoned = 0;
    for (int p = 0; p < PARTITIONS; p++) {
        redisReply *r = redisCommand(c, "XRANGE tally:dead:%d - +", p);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY, "XRANGE tally:dead:%d failed", p);
        for (size_t i = 0; i < r->elements; i++, n++) {
            const redisReply *fields = r->element[i]->element[1];
            bool reason = false;
            for (size_t f = 0; f + 1 < fields->elements; f += 2)
                reason |= strcmp(fields->element[f]->str, "reason") == 0 &&
                          fields->element[f + 1]->len > 0;
            if (!reason)
                (*unreasoned)++;
            if (n < 5)
                say("  dead letter %s of tally:dead:%d%s\n", r->element[i]->element[0]->str, p,
                    reason ? "" : " has no reason");
        }
        freeReplyObject(r);
    }
    redisFree(c);
    return n;
}

/* ---- the scenario --------------------------------------------------------------------------- */

static double env_double(const char *name, double def)
{
    const char *v = getenv(name);
    return v && v[0] ? strtod(v, NULL) : def;
}

Test(chaos, scenario)
{
    double minutes = env_double("TALLY_CHAOS_MINUTES", 2);
    const char *seed_s = getenv("TALLY_CHAOS_SEED");
    uint64_t seed =
        seed_s && seed_s[0] ? strtoull(seed_s, NULL, 10) : (uint64_t)time(NULL) % 1000000;
    const char *report_path = getenv("TALLY_CHAOS_REPORT");
    cr_assert(minutes > 0 && minutes <= 600, "TALLY_CHAOS_MINUTES: from 0 to 600, not %g", minutes);
    if (report_path && report_path[0])
        report = fopen(report_path, "w");
    int64_t total_ms = (int64_t)(minutes * 60000);
    /* the watchdog: traffic, settling and verifying, generously */
    alarm((unsigned)(total_ms / 1000 + (SETTLE_MS + 4 * VERIFY_MS) / 1000 + 600));
    rnd_state = seed;

    planned faults[PLAN_MAX];
    int nfaults = plan(faults, total_ms);
    say("chaos: seed %" PRIu64 " (TALLY_CHAOS_SEED=%" PRIu64 " repeats this schedule), %.1f "
        "minutes of traffic, %d faults\n",
        seed, seed, minutes, nfaults);

    sys_system s;
    sys_options opt = { .command_env = command_env,
                        .projector_env = projector_env,
                        .commands = 2,
                        .projectors = 2,
                        .redis_aof = true };
    sys_start(&s, &opt);
    char snapshot[128];
    snprintf(snapshot, sizeof(snapshot), "%s/older.rdb", s.redis.dir);

    traffic_config tc = { .nports = 2,
                          .tenants = TENANTS,
                          .seed = seed,
                          .workers = 3,
                          .pause_ms = 20,
                          .deadline_ms = 10000,
                          .import_every = 40,
                          .import_batch = 10,
                          .import_days = IMPORT_DAYS };
    tc.ports = s.command_ports;
    char err[512];
    traffic *t = traffic_start(&tc, err, sizeof(err));
    cr_assert(t, "%s", err);
    t_start = now_mono_ms();
    say("chaos: traffic from 3 workers to 2 command-svc replicas, tenants %s\n", TENANTS);

    int injected[FAULT_KINDS] = { 0 }, planned_n[FAULT_KINDS] = { 0 };
    bool snapshot_taken = false;
    for (int i = 0; i < nfaults; i++)
        planned_n[faults[i].kind]++;
    for (int i = 0; i <= nfaults; i++) {
        int64_t at = i < nfaults ? faults[i].at_ms : total_ms;
        if (!snapshot_taken && at > total_ms / 20) {
            while (now_mono_ms() - t_start < total_ms / 20)
                tclock_sleep_ms(50);
            rsv_snapshot(&s.redis, snapshot);
            snapshot_taken = true;
            FILE *f = fault_out();
            fprintf(f, "snapshot of Redis taken (%s) for the rollback later\n", snapshot);
            fault_done(f);
        }
        while (now_mono_ms() - t_start < at)
            tclock_sleep_ms(50);
        if (i == nfaults)
            break;
        FILE *f = fault_out();
        bool done = true;
        switch (faults[i].kind) {
        case FAULT_PROJECTOR_KILL:
            fault_projector_kill(&s, rnd_below(2), 200 + rnd_below(2000), f);
            break;
        case FAULT_LEADER_KILL:
            done = fault_leader_kill(&s, 300 + rnd_below(2000), LEADER_MS, f);
            break;
        case FAULT_PG_TERMINATE:
            fault_pg_terminate(&s, rnd_below(2) ? "command-svc/%" : "command-svc/relay", f);
            break;
        case FAULT_REDIS_OOM:
            fault_redis_oom(&s, 2000 + rnd_below(3000), f);
            break;
        case FAULT_PROJECTOR_FREEZE:
            fault_freeze(&s, SYS_PROJECTOR, rnd_below(2), 2 * CLAIM_IDLE_MS + rnd_below(3000), f);
            break;
        case FAULT_REDIS_WIPE:
            fault_redis_wipe(&s, f);
            break;
        case FAULT_REDIS_ROLLBACK:
            fault_redis_rollback(&s, snapshot, f);
            break;
        default:
            done = false;
        }
        fault_done(f);
        injected[faults[i].kind] += done;
    }
    traffic_stop(t);
    traffic_stats ts;
    traffic_stats_get(t, &ts);
    say("chaos %7.1f s  traffic stopped; settling (bound %d s)\n",
        (double)(now_mono_ms() - t_start) / 1000, SETTLE_MS / 1000);

    fault_settled st = fault_settle(&s, PARTITIONS, SETTLE_MS);
    if (!st.settled)
        fail("not settled within %d s: %" PRId64 " unpublished rows, %" PRId64
             " pending and %" PRId64 " undelivered entries, repair %s",
             SETTLE_MS / 1000, st.unpublished, st.pending, st.undelivered,
             st.repairing ? "still running" : "done");
    else
        say("chaos %7.1f s  settled in %.1f s\n", (double)(now_mono_ms() - t_start) / 1000,
            (double)st.ms / 1000);

    /* the checks (what they print is said once they are done) */
    char *details = NULL;
    size_t details_len = 0;
    FILE *out = open_memstream(&details, &details_len);
    cr_assert(out, "open_memstream");
    int64_t lost_pg = traffic_check_postgres(t, s.pg, out);
    redisContext *rc = sys_redis_connect(&s);
    int64_t parked_behind = 0;
    int64_t lost_rm = traffic_check_read_model(t, rc, out, &parked_behind);
    redisFree(rc);
    fclose(out);
    if (details_len)
        say("%s", details);
    free(details);
    if (lost_pg != 0)
        fail("%" PRId64 " OK'd command(s) not in PostgreSQL", lost_pg);
    if (lost_rm != 0)
        fail("%" PRId64 " OK'd complaint version(s) not applied to the read model (%" PRId64
             " of them parked)",
             lost_rm, parked_behind);
    int64_t unreasoned = 0, dead = dead_letters(&s, &unreasoned);
    if (unreasoned)
        fail("%" PRId64 " dead letter(s) without a reason", unreasoned);
    const world *w = traffic_world(t);
    int drift = 0, verify_failed = 0;
    for (int i = 0; i < w->ntenants; i++) {
        int v = verify_tenant(&s, w->tenants[i].id);
        if (v == 1)
            drift++;
        else if (v != 0)
            verify_failed++;
        if (v)
            fail("tally verify --tenant %s exited %d (%s; its lines are in the log)",
                 w->tenants[i].id, v, v == 1 ? "drift" : "could not run");
    }
    if (ts.unexpected)
        fail("%" PRId64 " call(s) got an unexpected status; the first: %s", ts.unexpected,
             ts.first_unexpected);
    for (int k = 0; k < FAULT_KINDS; k++)
        if (injected[k] != planned_n[k])
            fail("%s: %d of %d injected", fault_name(k), injected[k], planned_n[k]);

    /* the summary */
    say("\n%-34s %8s\n", "fault", "injected");
    for (int k = 0; k < FAULT_KINDS; k++)
        say("%-34s %8d\n", fault_name(k), injected[k]);
    say("\n%-34s %8" PRId64 "\n", "commands sent", ts.sent);
    say("%-34s %8" PRId64 " (create %" PRId64 ", import %" PRId64 " complaints, assign %" PRId64
        ", status %" PRId64 ")\n",
        "commands OK'd", ts.ok, ts.ok_by_kind[TRAFFIC_CREATE], ts.ok_by_kind[TRAFFIC_IMPORT],
        ts.ok_by_kind[TRAFFIC_ASSIGN], ts.ok_by_kind[TRAFFIC_STATUS]);
    say("%-34s %8" PRId64 " (after %" PRId64 " failures in transit)\n", "calls retried", ts.retried,
        ts.transient);
    say("%-34s %8" PRId64 " (re-read: %" PRId64 " GetComplaint)\n", "conflicts", ts.conflicts,
        ts.rereads);
    say("%-34s %8" PRId64 "\n", "unexpected statuses", ts.unexpected);
    say("%-34s %8" PRId64 "\n", "lost: not in PostgreSQL", lost_pg);
    say("%-34s %8" PRId64 "\n", "lost: not in the read model", lost_rm);
    say("%-34s %8" PRId64 " (without a reason: %" PRId64 ")\n", "dead letters", dead, unreasoned);
    say("%-34s %8s (%d tenants; drift in %d, failed in %d)\n", "verify (applied twice: 0)",
        drift || verify_failed ? "FAILED" : "clean", w->ntenants, drift, verify_failed);
    say("%-34s %8.1f s\n", "settled in", (double)st.ms / 1000);
    say("\nchaos: %s (seed %" PRIu64 ")\n", failures ? "FAILED" : "passed", seed);

    traffic_free(t);
    sys_stop(&s);
    if (report)
        fclose(report);
    alarm(0);
    cr_assert_eq(failures, 0, "%d chaos check(s) failed (see FAILED above)", failures);
}
