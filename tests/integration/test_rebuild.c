/*
 * `tally rebuild` (projector/rebuild.h, the tally_rebuild_* functions of tally.lua) against a
 * real system (tests/support/system.h): history imported by tally-sim, live write traffic from
 * tests/support/traffic.h, the real projector applying it meanwhile.
 *
 * - a_rebuild_under_live_traffic_never_goes_backwards_and_verifies_clean: while traffic writes
 *   to the tenant, a reader calls GetOverview over and over; no reply has fewer complaints than
 *   the one before it (nothing partial, nothing going backwards across the flip), replies said
 *   rebuilding with progress while it ran and stop saying it after; at the end the generation
 *   is 2, the old generation's keys are gone, every OK'd command is in the read model and
 *   `tally verify` is clean. The other tenant is not touched.
 * - a_killed_rebuilder_resumes_and_a_second_is_refused: a rebuilder that dies halfway
 *   (TALLY_REBUILD_STOP_AFTER) leaves the rebuild with its progress, which query replies show;
 *   a second rebuild while its lease lives is refused, naming it; live commands meanwhile, one
 *   of them on a complaint marked parked (parked behind the mark, and made whole by the
 *   rebuild, which deletes the mark); once
 *   the lease has expired the projector's gauges say it is stalled, the same command resumes it
 *   from where it stopped, the gauges go back to 0, and the read model verifies clean.
 * - a_generation_of_an_older_view_is_rebuilt_by_the_projector_without_mixing: a tenant whose
 *   generation an older view built ({t:T}:view below tally.lua's VIEW_VERSION) gets live events:
 *   the projector applies them only to a new generation, begins its rebuild and, having
 *   PostgreSQL, finishes it itself; the new generation has every event and verifies clean.
 * - a_flip_writes_nothing_while_a_key_is_damaged_and_a_newer_view_is_never_rebuilt_back: a key
 *   of the wrong type fails the flip before it writes anything (the pointer stays, nothing is
 *   listed for deletion); repaired, the same rebuild ends with the new generation whole. A
 *   build refuses to rebuild a generation of a newer view.
 * - abort_unknown_tenants_and_usage: --abort gives a rebuild up and deletes its generation;
 *   an unknown tenant fails (exit 1) naming it, usage errors exit 2.
 */
#include "calls.h"
#include "ev_wait.h"
#include "fixture.h"
#include "gclient.h"
#include "proc.h"
#include "system.h"
#include "tally/v1/dashboard.pb-c.h"
#include "tclock.h"
#include "traffic.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDLE_MS 180000 /* caps, not timing assertions */
#define TOOL_MS 240000
#define BIG     "big"
#define OTHER   "oth"

static sys_system S;

static void teardown(void)
{
    sys_stop(&S);
}

TestSuite(rebuild, .fini = teardown, .timeout = 600);

/*
 * A system (options o, may be NULL) with history imported for tenants, idle; a Redis connection
 * to it (caller frees).
 */
static redisContext *start_with(const sys_options *o, const char *tenants, int complaints, int days)
{
    sys_start(&S, o);
    sys_import_history(&S, tenants, complaints, days);
    sys_wait_idle(&S, IDLE_MS);
    return sys_redis_connect(&S);
}

static redisContext *start(const char *tenants, int complaints, int days)
{
    return start_with(NULL, tenants, complaints, days);
}

/*
 * Runs bin/tally with the words up to NULL, then --pg-dsn and --redis-url of the system, with
 * env added (may be NULL); its output in *out (caller frees). The exit status.
 */
static int tally(char **out, const char *const *env, ...)
{
    char url[64];
    const char *argv[32] = { TALLY_BIN_DIR "/tally" };
    int n = 1;
    va_list ap;
    va_start(ap, env);
    for (const char *a; n < 26 && (a = va_arg(ap, const char *));)
        argv[n++] = a;
    va_end(ap);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", S.redis.port);
    argv[n++] = "--pg-dsn";
    argv[n++] = S.db.dsn;
    argv[n++] = "--redis-url";
    argv[n++] = url;
    argv[n] = NULL;
    return proc_run_output_env(out, argv, env, TOOL_MS);
}

/* A reply of a Redis command as an integer (a number string, or an integer; 0 otherwise). */
static long long rint_(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert(r, "Redis: %s", c->errstr);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10)
                                                  : 0;
    freeReplyObject(r);
    return v;
}

/* Keys of generation gen of tenant (a SCAN to the end). */
static long long generation_keys(redisContext *c, const char *tenant, int gen)
{
    long long n = 0;
    char cursor[32] = "0";
    do {
        redisReply *r =
            redisCommand(c, "SCAN %s MATCH {t:%s}:%d:* COUNT 1000", cursor, tenant, gen);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        n += (long long)r->element[1]->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return n;
}

static Tally__V1__GetOverviewReply *overview(gc_client *q, const char *tenant)
{
    Tally__V1__GetOverviewRequest req = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    req.tenant_id = (char *)tenant;
    return call_ok(q, GC_DASHBOARD("GetOverview"), &req.base,
                   &tally__v1__get_overview_reply__descriptor, 10000);
}

static int64_t complaints_of(const Tally__V1__GetOverviewReply *r)
{
    const Tally__V1__StatusCounts *s = r->overview->status_counts;
    return s->open + s->in_progress + s->resolved + s->closed;
}

/* Waits (up to 30 s: the projector samples every 5 s) until its gauge name reads want. */
static void expect_gauge(const char *name, double want)
{
    double got = -1;
    for (int64_t t0 = now_mono_ms(); now_mono_ms() - t0 < 30000; tclock_sleep_ms(200))
        if ((got = ev_metric(S.projector.http_port, name)) == want)
            return;
    cr_expect_eq(got, want, "%s: %g, not %g", name, got, want);
}

/* The first category id of tenant (the simulator's names them) into buf. */
static void first_category(const char *tenant, char *buf, size_t len)
{
    const char *v[] = { tenant };
    PGresult *r = PQexecParams(S.pg,
                               "SELECT category_id FROM categories WHERE tenant_id = $1"
                               " ORDER BY category_id LIMIT 1",
                               1, NULL, v, NULL, NULL, 0);
    cr_assert_eq(PQntuples(r), 1, "%s has a category", tenant);
    snprintf(buf, len, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

static void expect_verify_clean(const char *tenant)
{
    char *out;
    int rc = tally(&out, NULL, "verify", "--tenant", tenant, "--settle-ms", "2000", NULL);
    cr_expect_eq(rc, 0, "tally verify --tenant %s exited %d:\n%s", tenant, rc, out);
    free(out);
}

/* ---- the reader: every reply compared with the one before ---------------------------------- */

typedef struct reader {
    pthread_t th;
    gc_client *q;
    atomic_bool stop;
    int64_t replies, rebuilding, with_progress, backwards, last;
    int64_t max_done, first_back_prev, first_back_got;
    bool progress_bad;
} reader;

static void *read_loop(void *arg)
{
    reader *r = arg;
    while (!atomic_load(&r->stop)) {
        Tally__V1__GetOverviewRequest req = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
        req.tenant_id = BIG;
        Tally__V1__GetOverviewReply *rep = NULL;
        gc_status st;
        int code = gc_call_msg(r->q, GC_DASHBOARD("GetOverview"), &req.base,
                               &tally__v1__get_overview_reply__descriptor, NULL, 10000,
                               (ProtobufCMessage **)&rep, &st);
        if (code != 0 || !rep) {
            call_free(rep);
            continue;
        }
        int64_t n = complaints_of(rep);
        if (n < r->last && !r->backwards++) {
            r->first_back_prev = r->last;
            r->first_back_got = n;
        }
        if (n > r->last)
            r->last = n;
        const Tally__V1__Freshness *f = rep->freshness;
        if (f->rebuilding)
            r->rebuilding++;
        if (f->rebuild) {
            r->with_progress++;
            if (f->rebuild->events_done > r->max_done)
                r->max_done = f->rebuild->events_done;
            if (!f->rebuilding || f->rebuild->events_total < 0 || f->rebuild->events_done < 0)
                r->progress_bad = true;
        }
        r->replies++;
        call_free(rep);
        tclock_sleep_ms(2);
    }
    return NULL;
}

Test(rebuild, a_rebuild_under_live_traffic_never_goes_backwards_and_verifies_clean)
{
    redisContext *c = start(BIG ":Europe/Berlin," OTHER ":Asia/Tokyo", 3000, 60);
    long long other_keys = generation_keys(c, OTHER, 1);
    cr_assert_gt(other_keys, 10);

    traffic_config tc = { .ports = &S.command.grpc_port,
                          .nports = 1,
                          .tenants = BIG ":Europe/Berlin",
                          .seed = 7,
                          .workers = 2,
                          .pause_ms = 5,
                          .deadline_ms = 10000 };
    char err[512];
    traffic *t = traffic_start(&tc, err, sizeof(err));
    cr_assert(t, "%s", err);
    reader rd = { .q = S.q };
    cr_assert_eq(pthread_create(&rd.th, NULL, read_loop, &rd), 0);
    tclock_sleep_ms(500);

    char *out;
    /* About 14,000 events in windows of 1,000 rows: each read ahead while one is applied. */
    int rc = tally(&out, NULL, "rebuild", "--tenant", BIG, "--batch", "200", "--window", "1000",
                   "--json", NULL);
    cr_expect_eq(rc, 0, "tally rebuild exited %d:\n%s", rc, out);
    cr_expect(strstr(out, "\"generation\":2"), "the result names generation 2:\n%s", out);
    cr_expect(strstr(out, "\"phase\":\"reading\""), "progress lines:\n%s", out);
    /* Most calls were counted by the rebuilder and written merged (plan.h). */
    const char *mc = strstr(out, "\"merged_calls\":");
    cr_expect(mc && strtol(mc + strlen("\"merged_calls\":"), NULL, 10) > 0,
              "no call was merged:\n%s", out);
    free(out);
    int64_t seen_during = rd.rebuilding;
    tclock_sleep_ms(1000); /* replies after the flip, while the traffic goes on */
    traffic_stop(t);
    atomic_store(&rd.stop, true);
    pthread_join(rd.th, NULL);

    cr_expect_eq(rd.backwards, 0,
                 "%" PRId64 " of %" PRId64 " replies had fewer complaints than one before (first:"
                 " %" PRId64 " after %" PRId64 ")",
                 rd.backwards, rd.replies, rd.first_back_got, rd.first_back_prev);
    cr_expect_gt(seen_during, 0, "replies said rebuilding while the rebuild ran");
    cr_expect_gt(rd.with_progress, 0, "replies carried the rebuild's progress");
    cr_expect_gt(rd.max_done, 0, "the progress moved");
    cr_expect_not(rd.progress_bad, "progress only while rebuilding, never negative");
    Tally__V1__GetOverviewReply *last = overview(S.q, BIG);
    cr_expect_not(last->freshness->rebuilding, "after the rebuild");
    cr_expect_null(last->freshness->rebuild);
    call_free(last);

    traffic_stats ts;
    traffic_stats_get(t, &ts);
    cr_expect_gt(ts.ok, 50, "live traffic during the rebuild: %" PRId64 " commands", ts.ok);
    cr_expect_eq(ts.unexpected, 0, "%s", ts.first_unexpected);
    sys_wait_idle(&S, IDLE_MS);
    int64_t parked = 0;
    cr_expect_eq(traffic_check_read_model(t, c, stderr, &parked), 0,
                 "every OK'd command is in the rebuilt read model");
    traffic_free(t);

    cr_expect_eq(rint_(c, "GET {t:%s}:gen", BIG), 2);
    cr_expect_eq(rint_(c, "EXISTS {t:%s}:rebuild {t:%s}:rebuild:gaps", BIG, BIG), 0);
    cr_expect_eq(rint_(c, "SCARD {t:%s}:gc", BIG), 0, "the old generation is deleted");
    cr_expect_eq(generation_keys(c, BIG, 1), 0, "no key of generation 1 is left");
    cr_expect_gt(generation_keys(c, BIG, 2), 10);
    cr_expect_eq(rint_(c, "EXISTS {t:%s}:gen", OTHER), 0, "the other tenant is not rebuilt");
    cr_expect_eq(generation_keys(c, OTHER, 1), other_keys);
    expect_verify_clean(BIG);
    expect_verify_clean(OTHER);
    redisFree(c);
}

Test(rebuild, a_killed_rebuilder_resumes_and_a_second_is_refused)
{
    /* The projector's own rebuild runner would take the dead one over: this test resumes it. */
    static const char *const no_runner[] = { "TALLY_PROJECTOR_REBUILDS=false", NULL };
    sys_options o = { .projector_env = no_runner };
    redisContext *c = start_with(&o, BIG ":America/Chicago", 1500, 40);

    const char *crash[] = { "TALLY_REBUILD_STOP_AFTER=1000", NULL };
    char *out;
    /* Stopped in its fourth window of 300 rows (read ahead), resumed in the window it left. */
    int rc = tally(&out, crash, "rebuild", "--tenant", BIG, "--batch", "100", "--window", "300",
                   "--lease-ms", "3000", NULL);
    cr_assert_eq(rc, 1, "a rebuilder stopped halfway exits 1 (got %d):\n%s", rc, out);
    free(out);
    int64_t t_dead = now_mono_ms();
    long long done = rint_(c, "HGET {t:%s}:rebuild done", BIG);
    long long total = rint_(c, "HGET {t:%s}:rebuild total", BIG);
    cr_expect_geq(done, 1000);
    cr_expect_lt(done, total, "stopped halfway: %lld of %lld", done, total);

    Tally__V1__GetOverviewReply *r = overview(S.q, BIG);
    cr_expect(r->freshness->rebuilding, "a rebuild in progress (its rebuilder dead)");
    cr_assert_not_null(r->freshness->rebuild);
    cr_expect_eq(r->freshness->rebuild->events_done, done);
    cr_expect_eq(r->freshness->rebuild->events_total, total);
    int64_t before = complaints_of(r);
    call_free(r);

    /* Live commands while it waits: applied to both generations. */
    char category[80];
    first_category(BIG, category, sizeof(category));
    for (int i = 0; i < 5; i++) {
        char key[32];
        int64_t id;
        snprintf(key, sizeof(key), "during-%d", i);
        int64_t v = call_create(S.cmd, BIG, key, category, 2, &id);
        call_move(S.cmd, BIG, id, v, 2, "agent");
    }

    /* A parked complaint (as if a poison event had parked it) gets a live event meanwhile:
       parked behind the mark, and read again by the rebuilder, which makes it whole. */
    PGresult *open = PQexec(S.pg, "SELECT complaint_id, version FROM complaints WHERE tenant_id"
                                  " = '" BIG "' AND status = 1 ORDER BY complaint_id LIMIT 1");
    cr_assert_eq(PQntuples(open), 1);
    int64_t pid = strtoll(PQgetvalue(open, 0, 0), NULL, 10),
            pver = strtoll(PQgetvalue(open, 0, 1), NULL, 10);
    PQclear(open);
    cr_assert_eq(rint_(c, "HSET {t:%s}:parked %lld test", BIG, (long long)pid), 1);
    call_move(S.cmd, BIG, pid, pver, 2, "agent");
    for (int64_t t0 = now_mono_ms(); rint_(c, "XLEN tally:dead:0") < 1; tclock_sleep_ms(50))
        cr_assert_lt(now_mono_ms() - t0, 30000, "the event of the marked complaint is parked");

    rc = tally(&out, NULL, "rebuild", "--tenant", BIG, NULL);
    cr_expect_eq(rc, 1, "a second rebuild while the lease lives is refused (got %d):\n%s", rc, out);
    cr_expect(strstr(out, "a rebuild of this tenant runs"), "names the running one:\n%s", out);
    free(out);

    while (now_mono_ms() - t_dead < 3200)
        tclock_sleep_ms(50);
    expect_gauge("tally_projector_rebuilds_running", 1);
    expect_gauge("tally_projector_rebuilds_stalled", 1); /* its lease has expired */
    cr_expect_eq(ev_metric(S.projector.http_port, "tally_projector_rebuild_events_done"),
                 (double)done);
    cr_expect_eq(ev_metric(S.projector.http_port, "tally_projector_rebuild_events_planned"),
                 (double)total);
    rc = tally(&out, NULL, "rebuild", "--tenant", BIG, "--window", "300", "--json", NULL);
    cr_expect_eq(rc, 0, "the resumed rebuild exited %d:\n%s", rc, out);
    cr_expect(strstr(out, "\"resumed\":true"), "it resumed:\n%s", out);
    free(out);
    sys_wait_idle(&S, IDLE_MS);
    r = overview(S.q, BIG);
    cr_expect_not(r->freshness->rebuilding);
    cr_expect_eq(complaints_of(r), before + 5);
    call_free(r);
    expect_gauge("tally_projector_rebuilds_running", 0);
    expect_gauge("tally_projector_rebuilds_stalled", 0);
    cr_expect_eq(rint_(c, "GET {t:%s}:gen", BIG), 2);
    cr_expect_eq(generation_keys(c, BIG, 1), 0);
    cr_expect_eq(rint_(c, "HEXISTS {t:%s}:parked %lld", BIG, (long long)pid), 0,
                 "the parked complaint is whole in the new generation: no longer marked");
    cr_expect_eq(rint_(c, "HGET {t:%s}:2:cv %lld", BIG, (long long)pid), pver + 1,
                 "its parked event is applied");
    expect_verify_clean(BIG);
    redisFree(c);
}

Test(rebuild, abort_unknown_tenants_and_usage)
{
    static const char *const no_runner[] = { "TALLY_PROJECTOR_REBUILDS=false", NULL };
    sys_options o = { .projector_env = no_runner };
    redisContext *c = start_with(&o, BIG ":Asia/Kathmandu", 300, 10);
    const char *crash[] = { "TALLY_REBUILD_STOP_AFTER=100", NULL };
    char *out;
    int rc = tally(&out, crash, "rebuild", "--tenant", BIG, "--batch", "50", NULL);
    cr_assert_eq(rc, 1, "%s", out);
    free(out);
    cr_assert_gt(generation_keys(c, BIG, 2), 0, "the stopped rebuild wrote generation 2");

    rc = tally(&out, NULL, "rebuild", "--tenant", BIG, "--abort", NULL);
    cr_expect_eq(rc, 0, "--abort exited %d:\n%s", rc, out);
    free(out);
    cr_expect_eq(rint_(c, "EXISTS {t:%s}:rebuild", BIG), 0);
    cr_expect_eq(generation_keys(c, BIG, 2), 0, "the aborted generation is deleted");
    cr_expect_gt(generation_keys(c, BIG, 1), 0, "the current one stays");
    Tally__V1__GetOverviewReply *r = overview(S.q, BIG);
    cr_expect_not(r->freshness->rebuilding);
    call_free(r);
    rc = tally(&out, NULL, "rebuild", "--tenant", BIG, "--abort", NULL);
    cr_expect_eq(rc, 0);
    cr_expect(strstr(out, "no rebuild runs"), "%s", out);
    free(out);

    rc = tally(&out, NULL, "rebuild", "--tenant", "nobody", NULL);
    cr_expect_eq(rc, 1, "an unknown tenant (got %d):\n%s", rc, out);
    cr_expect(strstr(out, "no tenant \"nobody\""), "%s", out);
    free(out);
    cr_expect_eq(rint_(c, "EXISTS {t:nobody}:rebuild {t:nobody}:gc"), 0, "nothing is left of it");
    const char *bad[][4] = { { "rebuild", NULL },
                             { "rebuild", "--all", "--tenant", BIG },
                             { "rebuild", "--tenant", "a}b", NULL },
                             { "rebuild", "--tenant", BIG, "--batch" } };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rc = tally(&out, NULL, bad[i][0], bad[i][1], bad[i][2], bad[i][3], NULL);
        cr_expect_eq(rc, 2, "usage error %zu exits 2 (got %d):\n%s", i, rc, out);
        free(out);
    }
    /* After all that the tenant rebuilds cleanly. */
    rc = tally(&out, NULL, "rebuild", "--all", NULL);
    cr_expect_eq(rc, 0, "%s", out);
    free(out);
    cr_expect_eq(rint_(c, "GET {t:%s}:gen", BIG), 2,
                 "the aborted generation's number is free again");
    expect_verify_clean(BIG);
    redisFree(c);
}

Test(rebuild, a_generation_of_an_older_view_is_rebuilt_by_the_projector_without_mixing)
{
    redisContext *c = start(BIG ":Europe/Lisbon," OTHER ":Asia/Tokyo", 800, 30);
    cr_assert_eq(rint_(c, "GET {t:%s}:view", BIG), 1, "the first projector recorded its view");
    Tally__V1__GetOverviewReply *r = overview(S.q, BIG);
    int64_t before = complaints_of(r);
    call_free(r);

    /* As if an older build of tally.lua had built the tenant's generation. */
    sys_projector_stop(&S);
    cr_assert_eq(rint_(c, "SET {t:%s}:view 0", BIG), 0);
    long long applied_old = rint_(c, "HGET {t:%s}:1:fresh events", BIG);
    char category[80];
    first_category(BIG, category, sizeof(category));
    for (int i = 0; i < 4; i++) {
        char key[32];
        int64_t id;
        snprintf(key, sizeof(key), "new-view-%d", i);
        call_create(S.cmd, BIG, key, category, 3, &id);
    }
    sys_projector_start(&S); /* this build's view, 1, meets view 0: a rebuild, finished by it */

    for (int64_t t0 = now_mono_ms(); rint_(c, "GET {t:%s}:gen", BIG) != 2; tclock_sleep_ms(100))
        cr_assert_lt(now_mono_ms() - t0, 60000, "the projector rebuilt the tenant by itself");
    sys_wait_idle(&S, IDLE_MS);
    cr_expect(proc_log_has(&S.projector, "is of an older view"), "it said why");
    /* It flips, then deletes the old generation, then says so. */
    for (int64_t t0 = now_mono_ms();
         !proc_log_has(&S.projector, "\"msg\":\"rebuild done\"") && now_mono_ms() - t0 < 30000;)
        tclock_sleep_ms(50);
    cr_expect(proc_log_has(&S.projector, "\"msg\":\"rebuild done\""), "and that it ended");
    cr_expect_eq(rint_(c, "GET {t:%s}:view", BIG), 1);
    cr_expect_eq(generation_keys(c, BIG, 1), 0, "the old view's generation is deleted");
    r = overview(S.q, BIG);
    cr_expect_eq(complaints_of(r), before + 4, "the new generation has the live events too");
    cr_expect_not(r->freshness->rebuilding);
    call_free(r);
    cr_expect_gt(applied_old, 0);
    cr_expect_eq(rint_(c, "EXISTS {t:%s}:gen", OTHER), 0, "the other tenant's view was current");
    cr_expect_eq(rint_(c, "SCARD tally:rebuilds"), 0);
    expect_verify_clean(BIG);
    expect_verify_clean(OTHER);
    redisFree(c);
}

Test(rebuild, a_flip_writes_nothing_while_a_key_is_damaged_and_a_newer_view_is_never_rebuilt_back)
{
    static const char *const no_runner[] = { "TALLY_PROJECTOR_REBUILDS=false", NULL };
    sys_options o = { .projector_env = no_runner };
    redisContext *c = start_with(&o, BIG ":Europe/Paris", 200, 10);
    cr_assert_eq(rint_(c, "SET {t:%s}:parked damaged", BIG), 0); /* a key of the wrong type */
    char *out;
    int rc = tally(&out, NULL, "rebuild", "--tenant", BIG, NULL);
    cr_expect_eq(rc, 1, "the flip fails on the damaged key (got %d):\n%s", rc, out);
    cr_expect(strstr(out, "WRONGTYPE"), "naming it:\n%s", out);
    free(out);
    cr_expect_eq(rint_(c, "EXISTS {t:%s}:gen", BIG), 0, "the pointer did not move");
    cr_expect_eq(rint_(c, "SCARD {t:%s}:gc", BIG), 0, "nothing is to be deleted");
    cr_assert_eq(rint_(c, "DEL {t:%s}:parked", BIG), 1);
    rc = tally(&out, NULL, "rebuild", "--tenant", BIG, NULL);
    cr_expect_eq(rc, 0, "repaired, the same rebuild ends (got %d):\n%s", rc, out);
    free(out);
    cr_expect_eq(rint_(c, "GET {t:%s}:gen", BIG), 2);
    cr_expect_gt(generation_keys(c, BIG, 2), 10, "the current generation is whole");
    cr_expect_eq(generation_keys(c, BIG, 1), 0);
    expect_verify_clean(BIG);

    /* A generation of a newer view than this build's is never rebuilt back by it. */
    cr_assert_eq(rint_(c, "SET {t:%s}:view 99", BIG), 0);
    rc = tally(&out, NULL, "rebuild", "--tenant", BIG, NULL);
    cr_expect_eq(rc, 1, "(got %d):\n%s", rc, out);
    cr_expect(strstr(out, "newer than this build"), "%s", out);
    free(out);
    cr_expect_eq(rint_(c, "GET {t:%s}:gen", BIG), 2);
    cr_expect_eq(rint_(c, "EXISTS {t:%s}:rebuild", BIG), 0, "and no rebuild is left behind");
    cr_assert_eq(rint_(c, "SET {t:%s}:view 1", BIG), 0);
    redisFree(c);
}
