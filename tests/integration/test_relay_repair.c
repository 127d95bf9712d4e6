/*
 * The outbox relay of command-svc and a Redis that loses data (issue 8, review of the pipeline
 * #2, #3): a stream is never trimmed unread (the rest waits in PostgreSQL), a Redis that lost
 * data is repaired (an older snapshot, FLUSHALL, the projector's report of trimmed entries), and
 * watermark entries tell when a command's events are in the read model. The read model is
 * compared with PostgreSQL (model_diff: the tenant's name, every complaint's applied version,
 * the status counts; then common/verify, every view) with the projector running.
 *
 * Part of the test_relay binary: the suite "relay" (its .init and .fini) is declared in
 * test_relay.c; the fixture is tests/support/relayfix.h.
 */
#include "cfg.h"
#include "kv.h"
#include "pgx.h"
#include "relayfix.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/events.pb-c.h"
#include "tclock.h"
#include "verify.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the stream, the read model and Redis that loses data (issue 8) ---------------------- */

static long long rint_of(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = rsv_must(c, fmt, arg);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

static long long xlen(redisContext *c, const char *stream)
{
    return rint_of(c, "XLEN %s", stream);
}

static bool rexists(redisContext *c, const char *key)
{
    return rint_of(c, "EXISTS %s", key) == 1;
}

/*
 * Compares the tenant's read model with what PostgreSQL has: the tenant's name, every
 * complaint's last applied version (P cv, exactly the complaints of the table), and the
 * current status counts (P st). 0, or -1 with the first difference in diff.
 */
static int model_diff(redisContext *c, const char *tenant, char *diff, size_t len)
{
    char p[96], key[160];
    const char *params[] = { tenant };
    int rc = -1;
    snprintf(key, sizeof(key), "{t:%s}:gen", tenant);
    redisReply *g = rsv_must(c, "GET %s", key);
    snprintf(p, sizeof(p), "{t:%s}:%s:", tenant, g->type == REDIS_REPLY_STRING ? g->str : "1");
    freeReplyObject(g);
    PGconn *pg = pgdb_connect(&rl.db);
    PGresult *t = pgdb_sql(pg, "SELECT name FROM tenants WHERE tenant_id = $1", 1, params);
    PGresult *s = pgdb_sql(pg,
                           "SELECT complaint_id, version, status FROM complaints"
                           " WHERE tenant_id = $1 ORDER BY complaint_id",
                           1, params);
    cr_assert_eq(PQntuples(t), 1);
    snprintf(key, sizeof(key), "%stenant", p);
    redisReply *name = rsv_must(c, "HGET %s name", key);
    bool same = name->type == REDIS_REPLY_STRING && strcmp(name->str, PQgetvalue(t, 0, 0)) == 0;
    freeReplyObject(name);
    if (!same) {
        snprintf(diff, len, "%s has no name %s", key, PQgetvalue(t, 0, 0));
        goto out;
    }
    long long st[5] = { 0 };
    snprintf(key, sizeof(key), "%scv", p);
    long long known = rint_of(c, "HLEN %s", key);
    if (known != PQntuples(s)) {
        snprintf(diff, len, "%s has %lld complaints, PostgreSQL %d", key, known, PQntuples(s));
        goto out;
    }
    for (int i = 0; i < PQntuples(s); i++) {
        redisReply *v = rsv_must(c, "HGET %s %s", key, PQgetvalue(s, i, 0));
        same = v->type == REDIS_REPLY_STRING && strcmp(v->str, PQgetvalue(s, i, 1)) == 0;
        freeReplyObject(v);
        if (!same) {
            snprintf(diff, len, "complaint %s: version %s not applied", PQgetvalue(s, i, 0),
                     PQgetvalue(s, i, 1));
            goto out;
        }
        st[atoi(PQgetvalue(s, i, 2)) % 5]++;
    }
    snprintf(key, sizeof(key), "%sst", p);
    for (int k = 1; k <= 4; k++) {
        char f[4];
        snprintf(f, sizeof(f), "%d", k);
        redisReply *v = rsv_must(c, "HGET %s %s", key, f);
        long long got = v->type == REDIS_REPLY_STRING ? atoll(v->str) : 0;
        freeReplyObject(v);
        if (got != st[k]) {
            snprintf(diff, len, "status %d: %lld in Redis, %lld in PostgreSQL", k, got, st[k]);
            goto out;
        }
    }
    rc = 0;
out:
    PQclear(t);
    PQclear(s);
    PQfinish(pg);
    return rc;
}

/* verify's first difference into the buffer it is given (a char[512]). */
static void first_diff(const verify_diff *d, void *arg)
{
    char *buf = arg;
    if (!buf[0])
        snprintf(buf, 512, "verify: %s %s %s: expected %s, found %s", d->view, d->key, d->field,
                 d->expected ? d->expected : "-", d->found ? d->found : "-");
}

/* Runs common/verify over the tenant (every view, the default window): 0, or -1 with diff. */
static int verify_diff_of(const char *tenant, char *diff, size_t len)
{
    char found[512] = "", err[256];
    cfg_redis rd = { .host = "127.0.0.1", .port = rl.redis.port };
    pgx_conn *pg = pgx_new(rl.db.dsn, "test-relay-verify", NULL, 0, 0);
    kv_conn *kv = kv_new(&rd, 10000);
    cr_assert(pg && kv);
    verify_options o = { .tenant = tenant, .days = VERIFY_DEFAULT_DAYS, .settle_ms = 0 };
    verify_stats st;
    int rc = verify_run(pg, kv, &o, first_diff, found, &st, err, sizeof(err));
    pgx_free(pg);
    kv_free(kv);
    if (rc != 0)
        snprintf(diff, len, "verify_run: %s", err);
    else if (st.diffs || st.parked)
        snprintf(diff, len, "%lld differences, %lld parked; %s", (long long)st.diffs,
                 (long long)st.parked, found);
    return rc == 0 && !st.diffs && !st.parked ? 0 : -1;
}

/*
 * Waits up to ms until the read model equals PostgreSQL (reconnecting each time): model_diff,
 * then verify (every view) on top.
 */
static void expect_model(const char *tenant, int ms)
{
    char diff[512] = "never compared";
    for (int64_t end = now_mono_ms() + ms; now_mono_ms() < end; tclock_sleep_ms(200)) {
        redisContext *c = rl_redis_open();
        int rc = c ? model_diff(c, tenant, diff, sizeof(diff)) : -1;
        if (c)
            redisFree(c);
        if (rc == 0 && verify_diff_of(tenant, diff, sizeof(diff)) == 0)
            return;
    }
    cr_assert_fail("the read model of %s never matched PostgreSQL: %s", tenant, diff);
}

static void projector_start(proc *p)
{
    const char *env[] = { "TALLY_PROJECTOR_BLOCK_MS=100", NULL };
    cr_assert_eq(proc_start_projector(p, rl.redis.port, env), 0, "the projector did not start:\n%s",
                 p->log ? p->log : "");
}

static void projector_stop(proc *p)
{
    int rc = proc_stop(p, SIGTERM, 15000);
    proc_release(p);
    cr_assert_eq(rc, 0, "the projector exited %d", rc);
}

/*
 * Starts command-svc replica 0 (polling every 200 ms) and the projector into pj, then seeds a
 * new tenant (into tenant, 32 bytes) in time zone tz through a client it returns (gc_free).
 */
/* command-svc (with extra, a variable or NULL) and a projector; a tenant of the test's own. */
static gc_client *start_with_projector_env(proc *pj, char *tenant, const char *tz,
                                           const char *extra)
{
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", extra, NULL };
    rl_svc_start(0, env);
    projector_start(pj);
    gc_client *c = rl_tenant(0, tenant, tz);
    return c;
}

static gc_client *start_with_projector(proc *pj, char *tenant, const char *tz)
{
    return start_with_projector_env(pj, tenant, tz, NULL);
}

/* Waits until no row of the database is unpublished. */
static void wait_all_marked(void)
{
    PGconn *pg = pgdb_connect(&rl.db);
    for (int64_t end = now_mono_ms() + WAIT_MS;; tclock_sleep_ms(100)) {
        long long n = pgdb_int(pg, "SELECT count(*) FROM outbox", 0, NULL);
        if (n == 0)
            break;
        cr_assert_lt(now_mono_ms(), end, "%lld rows stay unpublished", n);
    }
    PQfinish(pg);
}

/*
 * Review #2(a): with a bound of 1,000 unacknowledged entries and no projector yet, 2,800 events
 * wait partly in PostgreSQL instead of being trimmed unread; once a projector runs, the read
 * model is exactly what PostgreSQL has and nothing is parked.
 */
Test(relay, an_unread_stream_is_never_trimmed_and_the_rest_waits_in_postgres, .timeout = 150)
{
    char tenant[32];
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", "TALLY_STREAM_MAXLEN=1000", NULL };
    proc pj;
    rl_svc_start(0, env);
    gc_client *c = rl_tenant(0, tenant, "UTC");
    rl_lifecycles(c, tenant, "bulk", 700);

    redisContext *rc = rl_redis_open();
    cr_assert(rc);
    for (int64_t end = now_mono_ms() + WAIT_MS; now_mono_ms() < end; tclock_sleep_ms(100))
        if (rl_metric(&rl.svc[0], "tally_relay_backpressure") == 1)
            break;
    cr_assert_eq(rl_metric(&rl.svc[0], "tally_relay_backpressure"), 1, "the relay holds back");
    cr_assert_leq(xlen(rc, "tally:events:0"), 1000, "the bound holds");
    cr_assert_eq(rl_metric(&rl.svc[0], "tally_relay_stream_length{partition=\"0\"}"),
                 xlen(rc, "tally:events:0"));

    int64_t t0 = now_mono_ms();
    projector_start(&pj);
    expect_model(tenant, 60000);
    cr_log_info("caught up %lld ms after the projector started", (long long)(now_mono_ms() - t0));
    wait_all_marked();
    cr_assert_eq(xlen(rc, "tally:dead:0"), 0, "nothing parked");
    redisFree(rc);
    projector_stop(&pj);
    gc_free(c);
    rl_svc_stop_clean(0);
}

/*
 * Entries every group acknowledged leave the stream at the next trim, however many. XTRIM
 * MINID ~ without LIMIT removes at most 100 * stream-node-max-entries entries a call (10,000
 * by default, once a second): at the bound the relay then published at 10,000 events/s, a
 * tenth of what it does alone, whatever the projector did (bench/run's catch-up, 10,545
 * events/s). Here nodes of one entry make that limit 100 a call: of 2,800 events applied,
 * more than 1,000 were still on the stream three trims after the last (the trims while they
 * were written took 100 a second).
 */
Test(relay, what_every_group_acknowledged_is_trimmed_at_once, .timeout = 150)
{
    char tenant[32];
    proc pj;
    redisContext *rc = rl_redis_open();
    cr_assert(rc);
    redisReply *cfg = redisCommand(rc, "CONFIG SET stream-node-max-entries 1");
    cr_assert(cfg && cfg->type == REDIS_REPLY_STATUS);
    freeReplyObject(cfg);
    gc_client *c = start_with_projector(&pj, tenant, "UTC");
    rl_lifecycles(c, tenant, "bulk", 700);
    expect_model(tenant, 60000);
    long long n = -1;
    for (int64_t end = now_mono_ms() + 3500; now_mono_ms() < end; tclock_sleep_ms(100))
        n = xlen(rc, "tally:events:0");
    cr_expect_lt(n, 100, "%lld acknowledged entries are still on the stream", n);
    cfg = redisCommand(rc, "CONFIG SET stream-node-max-entries 100");
    freeReplyObject(cfg);
    redisFree(rc);
    projector_stop(&pj);
    gc_free(c);
    rl_svc_stop_clean(0);
}

/* Inserts a CategoryPut row of tenant tw straight into the outbox. */
static void insert_reference_row(void)
{
    PGconn *pg = pgdb_connect(&rl.db);
    rl_pg_ok(pg, "INSERT INTO events (tenant_id, type, occurred_at, local_day, payload)"
                 " VALUES ('tw', 11, now(), current_date, ''::bytea)");
    PQfinish(pg);
}

/* Waits up to WAIT_MS until replica 0's series reaches at least min; its last value. */
static double wait_metric(const char *series, double min)
{
    double v = -1;
    for (int64_t end = now_mono_ms() + WAIT_MS; now_mono_ms() < end && v < min; tclock_sleep_ms(50))
        v = rl_metric(&rl.svc[0], series);
    return v;
}

/*
 * A pass that fills a stream to TALLY_STREAM_MAXLEN exactly and drains the backlog writes no
 * watermark entry after its rows: the bound holds for them too. Set up so: 998 entries of
 * another writer, the first pass's watermark (999), then one row more than 200 ms later.
 * (Should the idle poll, 5 s, come first, its watermark takes the last place and the row
 * waits: the bound is checked all the same.)
 */
Test(relay, a_watermark_never_takes_a_stream_past_its_bound)
{
    const char *env[] = { "TALLY_RELAY_POLL_MS=5000", "TALLY_STREAM_MAXLEN=1000", NULL };
    redisContext *rc = rl_redis_open();
    cr_assert(rc);
    freeReplyObject(rsv_must(rc, "EVAL %s 1 tally:events:0",
                             "for i = 1, 998 do redis.call('XADD', KEYS[1], '*', 'x', i) end"));
    rl_svc_start(0, env);
    for (int64_t end = now_mono_ms() + WAIT_MS;
         now_mono_ms() < end && xlen(rc, "tally:events:0") < 999;)
        tclock_sleep_ms(20);
    cr_assert_eq(xlen(rc, "tally:events:0"), 999, "the first pass leaves a watermark entry");
    tclock_sleep_ms(300); /* past the 200 ms between watermarks */
    insert_reference_row();
    cr_assert(wait_metric("tally_relay_published_total", 1) >= 1 ||
                  rl_metric(&rl.svc[0], "tally_relay_backpressure") == 1,
              "the row is published");
    /* The next pass finds the stream full: the one that published the row has ended. */
    insert_reference_row();
    cr_assert_eq(wait_metric("tally_relay_backpressure", 1), 1, "the relay holds back");
    cr_assert_leq(xlen(rc, "tally:events:0"), 1000, "the bound holds");
    redisFree(rc);
    rl_svc_stop_clean(0);
}

/* Closes the complaints created by rl_lifecycles(prefix, n) (RESOLVED -> CLOSED, version 5). */

static void close_all(gc_client *c, const char *tenant, const char *prefix, int n)
{
    PGconn *pg = pgdb_connect(&rl.db);
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof(key), "%s-%d", prefix, i);
        const char *params[] = { tenant, key };
        PGresult *r = pgdb_sql(pg,
                               "SELECT complaint_id FROM complaints WHERE tenant_id = $1"
                               " AND idempotency_key = $2",
                               2, params);
        cr_assert_eq(PQntuples(r), 1, "%s", key);
        Tally__V1__ChangeStatusRequest ch = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
        ch.tenant_id = (char *)tenant;
        ch.complaint_id = atoll(PQgetvalue(r, 0, 0));
        ch.actor = "a1";
        ch.status = TALLY__V1__STATUS__STATUS_CLOSED;
        ch.expected_version = 4;
        PQclear(r);
        gc_result res;
        cr_assert_eq(rl_call(c, GC_COMMANDS("ChangeStatus"), &ch.base, &res), 0, "closing %s: %s",
                     key, res.details);
        gc_result_release(&res);
    }
    PQfinish(pg);
}

/*
 * Review #3 (scenario B): Redis comes back from an older snapshot. Everything after the
 * snapshot (events already marked published, and the projector's work) is gone; the relay
 * notices, republishes, and the read model equals PostgreSQL again, old complaints touched
 * after the restart included.
 */
Test(relay, a_redis_restored_from_an_older_snapshot_is_repaired, .timeout = 150)
{
    char tenant[32];
    proc pj;
    gc_client *c = start_with_projector(&pj, tenant, "Europe/Paris");
    rl_lifecycles(c, tenant, "saved", 10);
    expect_model(tenant, WAIT_MS);
    redisContext *rc = rl_redis_open();
    freeReplyObject(rsv_must(rc, "SAVE"));
    rl_lifecycles(c, tenant, "lost", 10);
    wait_all_marked();
    expect_model(tenant, WAIT_MS);
    redisFree(rc);
    rsv_shutdown_nosave(&rl.redis);
    rsv_run(&rl.redis, -1); /* loads the snapshot */
    int64_t t0 = now_mono_ms();

    close_all(c, tenant, "lost", 5);
    close_all(c, tenant, "saved", 5);
    expect_model(tenant, 60000);
    cr_log_info("the read model equals PostgreSQL %lld ms after the restart",
                (long long)(now_mono_ms() - t0));
    rc = rl_redis_open();
    for (int64_t end = now_mono_ms() + WAIT_MS; now_mono_ms() < end && rexists(rc, "tally:repair");)
        tclock_sleep_ms(100);
    cr_assert(!rexists(rc, "tally:repair"), "the repair ends once the projector has it all");
    cr_assert_eq(xlen(rc, "tally:dead:0"), 0, "nothing parked");
    redisFree(rc);
    rl_expect_log(0, "relay: Redis lost data");
    rl_expect_log(0, "relay: the repair is complete");
    cr_assert_geq(rl_metric(&rl.svc[0], "tally_relay_repairs_total{reason=\"behind\"}"), 1);
    projector_stop(&pj);
    gc_free(c);
    rl_svc_stop_clean(0);
}

/*
 * Review #3 (scenario A, FLUSHALL): everything comes back, the tenant's reference data too;
 * tally:repair exists while the relay republishes and is gone once the projector has it all.
 */
Test(relay, a_flushed_redis_gets_every_event_back, .timeout = 150)
{
    char tenant[32];
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    proc pj;
    rl_svc_start(0, env);
    gc_client *c = rl_tenant(0, tenant, "Asia/Tokyo");
    rl_lifecycles(c, tenant, "old", 20);
    wait_all_marked();
    redisContext *rc = rl_redis_open();
    freeReplyObject(rsv_must(rc, "FLUSHALL"));
    /* The projector starts after the flush, so the repair waits for it: it is visible. */
    for (int64_t end = now_mono_ms() + WAIT_MS;
         now_mono_ms() < end && !rexists(rc, "tally:repair");)
        tclock_sleep_ms(50);
    cr_assert(rexists(rc, "tally:repair"), "the repair is announced");
    projector_start(&pj);
    rl_lifecycles(c, tenant, "new", 3);
    expect_model(tenant, 60000);
    for (int64_t end = now_mono_ms() + WAIT_MS; now_mono_ms() < end && rexists(rc, "tally:repair");)
        tclock_sleep_ms(100);
    cr_assert(!rexists(rc, "tally:repair"), "the repair ends");
    cr_assert_eq(xlen(rc, "tally:dead:0"), 0, "nothing parked");
    redisFree(rc);
    cr_assert_geq(rl_metric(&rl.svc[0], "tally_relay_repairs_total{reason=\"missing\"}"), 1);
    cr_assert_eq(rl_metric(&rl.svc[0], "tally_relay_repair_rows"), 0);
    projector_stop(&pj);
    gc_free(c);
    rl_svc_stop_clean(0);
}

static long long watermark(redisContext *c)
{
    redisReply *r = rsv_must(c, "HGET tally:wm 0");
    long long w = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return w;
}

/*
 * Watermark entries: once tally:wm passes a time taken after a command returned, that command's
 * events are in the read model; on an idle system the watermark keeps advancing; a watermark
 * entry follows the events committed before its time on the stream.
 */
Test(relay, the_watermark_passes_every_event_committed_before_it)
{
    char tenant[32];
    proc pj;
    /* A second group that never reads keeps the stream untrimmed (the relay trims below the
     * slowest group of TALLY_STREAM_GROUPS), so the entries can be looked at afterwards. */
    gc_client *c =
        start_with_projector_env(&pj, tenant, "UTC", "TALLY_STREAM_GROUPS=projector,looker");
    rl_lifecycles(c, tenant, "wm", 5);
    int64_t committed = now_wall_ms(); /* every event above committed before this */
    redisContext *rc = rl_redis_open();
    for (int64_t end = now_mono_ms() + WAIT_MS; now_mono_ms() < end && watermark(rc) < committed;)
        tclock_sleep_ms(50);
    cr_assert_geq(watermark(rc), committed, "the watermark passes the commits");
    char diff[512];
    cr_assert_eq(model_diff(rc, tenant, diff, sizeof(diff)), 0, "complete up to it: %s", diff);

    /* Idle: it keeps moving. */
    int64_t later = now_wall_ms() + 1000;
    for (int64_t end = now_mono_ms() + WAIT_MS; now_mono_ms() < end && watermark(rc) < later;)
        tclock_sleep_ms(50);
    cr_assert_geq(watermark(rc), later, "an idle system's watermark advances");

    /* On the stream: the last event entry comes before a watermark entry later than its commit. */
    redisReply *r = rsv_must(rc, "XREVRANGE tally:events:0 + - COUNT 1000");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    bool wm_seen = false;
    for (size_t i = 0; i < r->elements && !wm_seen; i++)
        wm_seen = strcmp(r->element[i]->element[1]->element[0]->str, "w") == 0;
    cr_assert(wm_seen, "watermark entries are on the stream");
    freeReplyObject(r);
    cr_assert_eq(xlen(rc, "tally:dead:0"), 0, "watermark entries are not parked");
    redisFree(rc);
    projector_stop(&pj);
    gc_free(c);
    rl_svc_stop_clean(0);
}

/*
 * The projector's report of entries trimmed before it applied them (tally:repair:request, Unix
 * ms): the relay takes it and republishes what it published since then, less a margin; the
 * read model stays equal to PostgreSQL (duplicates are dropped by version).
 */
Test(relay, a_report_of_trimmed_entries_republishes_them)
{
    char tenant[32], ms[24];
    proc pj;
    gc_client *c = start_with_projector(&pj, tenant, "UTC");
    rl_lifecycles(c, tenant, "trimmed", 5);
    expect_model(tenant, WAIT_MS);
    double before = rl_metric(&rl.svc[0], "tally_relay_published_total");
    redisContext *rc = rl_redis_open();
    snprintf(ms, sizeof(ms), "%lld", (long long)now_wall_ms());
    freeReplyObject(rsv_must(rc, "SET tally:repair:request %s", ms));
    for (int64_t end = now_mono_ms() + WAIT_MS;
         now_mono_ms() < end && rexists(rc, "tally:repair:request");)
        tclock_sleep_ms(50);
    cr_assert(!rexists(rc, "tally:repair:request"), "the relay takes the request");
    for (int64_t end = now_mono_ms() + WAIT_MS;; tclock_sleep_ms(100)) {
        if (rl_metric(&rl.svc[0], "tally_relay_repairs_total{reason=\"trimmed\"}") >= 1 &&
            !rexists(rc, "tally:repair"))
            break;
        cr_assert_lt(now_mono_ms(), end, "the repair never ended");
    }
    /* Everything of the last minute and more went out again: 5 + 20 rows at least. */
    cr_assert_geq(rl_metric(&rl.svc[0], "tally_relay_published_total"), before + 25);
    rl_lifecycles(c, tenant, "after", 1);
    expect_model(tenant, WAIT_MS);
    cr_assert_eq(xlen(rc, "tally:dead:0"), 0, "nothing parked");
    redisFree(rc);
    projector_stop(&pj);
    gc_free(c);
    rl_svc_stop_clean(0);
}
