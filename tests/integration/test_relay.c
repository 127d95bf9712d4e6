/*
 * The outbox relay of command-svc publishes: every committed event reaches the stream (in
 * version order per complaint, with the envelope the row describes), across kill -9 of the
 * service, a Redis outage, a takeover between two replicas, and rows that commit out of seq
 * order. Issue 8 (review of the pipeline, #4-#7): the relay never wedges (a slow backlog count,
 * a leader cut off from Redis, an orphaned leader session; faults from tests/support/proxy),
 * and an unpackable row holds back its complaint.
 *
 * test_relay_repair.c (the same binary and suite) covers the read model when Redis loses data.
 * The fixture (a database and a redis-server per test, the events table as the oracle) is
 * tests/support/relayfix.h.
 */
#include "proxy.h"
#include "relayfix.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/events.pb-c.h"
#include "tclock.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(relay, .init = rl_setup, .fini = rl_teardown, .timeout = 90);

static double leader_gauge(const proc *p)
{
    return rl_metric(p, "tally_relay_leader");
}

Test(relay, every_committed_event_reaches_the_stream_in_version_order)
{
    char tenant[32];
    rl_events seen = { 0 };
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    rl_svc_start(0, env);
    gc_client *c = rl_tenant(0, tenant, "America/New_York");
    rl_lifecycles(c, tenant, "life", 10);

    size_t n = rl_expect_all_published(tenant, &seen);
    cr_assert_eq(n, 5 + 10 * 4, "tenant, 2 categories, 2 agents, 10 x 4 complaint events");
    cr_assert_eq(seen.n, n, "no duplicates without a crash");
    gc_free(c);
    rl_svc_stop_clean(0);
    free(seen.v);
}

Test(relay, events_committed_before_a_kill_9_are_published_after_restart)
{
    char tenant[32];
    rl_events seen = { 0 };
    const char *off[] = { "TALLY_RELAY=false", NULL };
    const char *on[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    rl_svc_start(0, off);
    gc_client *c = rl_tenant(0, tenant, "Europe/Berlin");
    rl_lifecycles(c, tenant, "before", 10);
    gc_free(c);
    rl_svc_kill(0);

    redisContext *rc = rl_redis_open();
    rl_stream_read(rc, tenant, &seen);
    redisFree(rc);
    cr_assert_eq(seen.n, 0, "nothing is published while no relay runs");

    rl_svc_start(1, on);
    c = gc_new_port(rl.svc[1].grpc_port);
    rl_lifecycles(c, tenant, "after", 2);
    cr_assert_eq(rl_expect_all_published(tenant, &seen), 5 + 12 * 4);
    gc_free(c);
    free(seen.v);
}

typedef struct creator {
    int port, first, n, failed;
    const char *tenant;
} creator;

static void *create_many(void *arg)
{
    creator *w = arg;
    gc_client *c = gc_new_port(w->port);
    for (int i = w->first; i < w->first + w->n; i++) {
        Tally__V1__CreateComplaintRequest req = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
        char key[32];
        gc_result r;
        snprintf(key, sizeof(key), "many-%d", i);
        req.tenant_id = (char *)w->tenant;
        req.idempotency_key = key;
        req.category_id = i % 2 ? "c1" : "c2";
        req.priority = TALLY__V1__PRIORITY__PRIORITY_LOW;
        req.title = "Slow response";
        req.customer_id = "cust-2";
        if (gc_call(c, GC_COMMANDS("CreateComplaint"), &req.base, NULL, 10000, &r) != 0 ||
            r.code != 0)
            w->failed++;
        gc_result_release(&r);
    }
    gc_free(c);
    return NULL;
}

/* Creates n complaints over 4 concurrent connections; returns how many failed. */
static int create_concurrently(int port, const char *tenant, int first, int n)
{
    creator w[4];
    pthread_t t[4];
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        w[i] =
            (creator){ .port = port, .first = first + i * (n / 4), .n = n / 4, .tenant = tenant };
        pthread_create(&t[i], NULL, create_many, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        failed += w[i].failed;
    }
    return failed;
}

Test(relay, a_redis_outage_delays_events_but_loses_none)
{
    char tenant[32], dsn[1200], var[1300];
    rl_events seen = { 0 };
    proxy px;
    proxy_start_pg(&px, rl.db.dsn, dsn, sizeof(dsn));
    snprintf(var, sizeof(var), "TALLY_PG_DSN=%s", dsn);
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", var, NULL };
    rl_svc_start(0, env);
    gc_client *c = rl_tenant(0, tenant, "Asia/Tokyo");
    rl_expect_all_published(tenant, &seen);
    int64_t seeded = rl_max_seq(&seen);

    /* Without persistence a restart empties Redis: stop it before the commands, so that no
     * event it took is lost with it; the 1,000 events all wait for its return. */
    rsv_stop(&rl.redis, SIGTERM);
    /* Each mark from now on is held 1 s (a loaded machine's slow pass, made certain): the
     * events are on the stream a second before the pass that published them ends, and with
     * it the outage in the relay's log. */
    proxy_hold(&px, "relay_mark", 1000);
    cr_assert_eq(create_concurrently(rl.svc[0].grpc_port, tenant, 0, 1000), 0,
                 "commands must not depend on Redis");
    rl_expect_log(0, "relay: Redis is unavailable");
    /* The gauge drops to 0 while the relay gives its lock up and takes it again (the commands
     * outlast TALLY_RELAY_REDIS_GIVEUP_MS on a loaded machine): the value waited for is the
     * one checked. */
    double backlog = 0;
    for (int64_t end = now_mono_ms() + WAIT_MS; now_mono_ms() < end && backlog < 1000;
         tclock_sleep_ms(50))
        backlog = rl_metric(&rl.svc[0], "tally_relay_backlog");
    cr_assert_geq(backlog, 1000, "the backlog is visible");
    rsv_run(&rl.redis, -1);

    free(seen.v);
    memset(&seen, 0, sizeof(seen));
    cr_assert_eq(rl_expect_published_after(tenant, seeded, &seen), 1000);
    int created = 0;
    for (size_t i = 0; i < seen.n; i++)
        created += seen.v[i].type == TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED;
    cr_assert_geq(created, 1000, "duplicates are allowed, losses are not");
    rl_expect_log(0, "relay: Redis is available again");
    gc_free(c);
    rsv_stop(&rl.redis, SIGTERM); /* stopping while the relay backs off is quick too */
    rl_svc_stop_clean(0);
    proxy_stop(&px);
    free(seen.v);
}

/* Waits until replica i reports leader 1 (and the other, when running, 0). */
static void wait_leader(int i)
{
    for (int64_t end = now_mono_ms() + WAIT_MS; now_mono_ms() < end; tclock_sleep_ms(100))
        if (leader_gauge(&rl.svc[i]) == 1 &&
            (!rl.svc_started[!i] || leader_gauge(&rl.svc[!i]) == 0))
            return;
    cr_assert_fail("replica %d never became the only leader", i);
}

typedef struct lifer {
    int port, failed;
    const char *tenant;
    char why[1200];
} lifer;

static void *run_lifecycles(void *arg)
{
    lifer *l = arg;
    gc_client *c = gc_new_port(l->port);
    for (int i = 0; i < 25; i++) {
        char key[32];
        snprintf(key, sizeof(key), "during-%d", i);
        l->failed += rl_lifecycle(c, l->tenant, key, l->why, sizeof(l->why)) != 0;
    }
    gc_free(c);
    return NULL;
}

Test(relay, a_standby_takes_over_when_the_leader_is_killed)
{
    char tenant[32];
    rl_events seen = { 0 };
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    rl_svc_start(0, env);
    wait_leader(0); /* the first one up leads */
    rl_svc_start(1, env);
    wait_leader(0);
    cr_assert_eq(leader_gauge(&rl.svc[1]), 0);

    gc_client *c = rl_tenant(1, tenant, "UTC");
    rl_lifecycles(c, tenant, "first", 5);
    rl_expect_all_published(tenant, &seen);

    /* Commands keep going through the standby while the leader dies under them. */
    lifer l = { .port = rl.svc[1].grpc_port, .tenant = tenant };
    pthread_t t;
    pthread_create(&t, NULL, run_lifecycles, &l);
    tclock_sleep_ms(200);
    rl_svc_kill(0);
    wait_leader(1);
    pthread_join(t, NULL);
    cr_assert_eq(l.failed, 0, "commands through the standby: %s", l.why);
    rl_lifecycles(c, tenant, "last", 5);
    cr_assert_eq(rl_expect_all_published(tenant, &seen), 5 + 35 * 4);
    rl_expect_log(1, "relay: became the leader");
    gc_free(c);
    free(seen.v);
}

Test(relay, a_row_that_commits_after_higher_seqs_are_published_is_not_skipped)
{
    char tenant[32], sql[256];
    rl_events seen = { 0 };
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    rl_svc_start(0, env);
    gc_client *c = rl_tenant(0, tenant, "UTC");

    /* A CategoryPut row whose transaction stays open: its seq is taken now. */
    PGconn *held = pgdb_connect(&rl.db);
    rl_pg_ok(held, "BEGIN");
    snprintf(sql, sizeof(sql),
             "INSERT INTO events (tenant_id, type, occurred_at, local_day, payload)"
             " VALUES ('%s', 11, now(), current_date, ''::bytea) RETURNING seq",
             tenant);
    PGresult *r = PQexec(held, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    int64_t held_seq = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);

    rl_lifecycles(c, tenant, "later", 3);
    rl_expect_all_published(tenant, &seen); /* the held row is not visible yet */
    cr_assert_gt(rl_max_seq(&seen), held_seq, "later rows were published past the held one");

    rl_pg_ok(held, "COMMIT");
    PQfinish(held);
    cr_assert_eq(rl_expect_all_published(tenant, &seen), 5 + 1 + 3 * 4);
    bool found = false;
    for (size_t i = 0; i < seen.n; i++)
        found |= seen.v[i].seq == held_seq;
    cr_assert(found, "the row committed late (seq %lld) was published", (long long)held_seq);
    gc_free(c);
    free(seen.v);
}

/*
 * Review #4: counting the backlog is slow (every message naming relay_backlog is held 4 s on
 * the way to PostgreSQL): events still reach the stream within 10 s.
 */
Test(relay, a_slow_backlog_count_never_holds_back_events)
{
    char tenant[32], dsn[1200], var[1300];
    rl_events seen = { 0 };
    proxy px;
    proxy_start_pg(&px, rl.db.dsn, dsn, sizeof(dsn));
    proxy_hold(&px, "relay_backlog", 4000);
    snprintf(var, sizeof(var), "TALLY_PG_DSN=%s", dsn);
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", var, NULL };
    rl_svc_start(0, env);
    gc_client *c = rl_tenant(0, tenant, "UTC");
    rl_expect_all_published(tenant, &seen);
    int64_t seeded = rl_max_seq(&seen);
    for (int64_t end = now_mono_ms() + WAIT_MS; now_mono_ms() < end && proxy_held(&px) == 0;)
        tclock_sleep_ms(50);
    cr_assert_gt(proxy_held(&px), 0, "the relay counts its backlog");
    rl_lifecycles(c, tenant, "slow", 1);
    int64_t t0 = now_mono_ms();
    free(seen.v);
    memset(&seen, 0, sizeof(seen));
    cr_assert_eq(rl_expect_published_after(tenant, seeded, &seen), 4);
    cr_assert_lt(now_mono_ms() - t0, 10000, "the events waited for the count");
    cr_log_info("published %lld ms after the commands", (long long)(now_mono_ms() - t0));
    gc_free(c);
    rl_svc_stop_clean(0);
    proxy_stop(&px);
    free(seen.v);
}

/*
 * Review #5: the leader loses Redis (its connection black-holed, never closed) while the
 * standby reaches it: the leader gives up the lock and the standby publishes within 30 s.
 */
Test(relay, a_leader_that_cannot_reach_redis_hands_over_to_the_standby)
{
    char tenant[32], url[2][64];
    rl_events seen = { 0 };
    proxy px[2];
    for (int i = 0; i < 2; i++) {
        proxy_start(&px[i], "127.0.0.1", rl.redis.port);
        snprintf(url[i], sizeof(url[i]), "TALLY_REDIS_URL=redis://127.0.0.1:%d/0", px[i].port);
    }
    const char *env0[] = { "TALLY_RELAY_POLL_MS=200", url[0], NULL };
    const char *env1[] = { "TALLY_RELAY_POLL_MS=200", url[1], NULL };
    rl_svc_start(0, env0);
    wait_leader(0);
    rl_svc_start(1, env1);
    wait_leader(0);
    gc_client *c = rl_tenant(1, tenant, "UTC");
    rl_expect_all_published(tenant, &seen);
    int64_t seeded = rl_max_seq(&seen);

    proxy_stall(&px[0]);
    int64_t t0 = now_mono_ms();
    rl_lifecycles(c, tenant, "stranded", 1);
    free(seen.v);
    memset(&seen, 0, sizeof(seen));
    cr_assert_eq(rl_expect_published_after(tenant, seeded, &seen), 4);
    cr_log_info("published through the standby %lld ms after the leader lost Redis",
                (long long)(now_mono_ms() - t0));
    wait_leader(1);
    rl_expect_log(0, "relay: giving up the leadership");
    gc_free(c);
    proxy_stop(&px[0]);
    proxy_stop(&px[1]);
    free(seen.v);
}

/*
 * Review #6: the leader's host vanishes without closing its PostgreSQL connection (the proxy
 * stops forwarding both ways): the server ends the orphaned session and the standby leads
 * within 30 s.
 */
Test(relay, an_orphaned_leader_session_frees_the_lock)
{
    char dsn[1200], var[1300];
    proxy px;
    proxy_start_pg(&px, rl.db.dsn, dsn, sizeof(dsn));
    snprintf(var, sizeof(var), "TALLY_PG_DSN=%s", dsn);
    const char *env0[] = { "TALLY_RELAY_POLL_MS=200", var, NULL };
    const char *env1[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    rl_svc_start(0, env0);
    wait_leader(0);
    rl_svc_start(1, env1);
    wait_leader(0);
    proxy_stall(&px);
    int64_t t0 = now_mono_ms();
    wait_leader(1);
    cr_log_info("the standby led %lld ms after the leader's connection went silent",
                (long long)(now_mono_ms() - t0));
    rl_svc_kill(0);
    proxy_stop(&px);
}

/*
 * Review #7: a row this build cannot pack (an unknown type, as a newer writer leaves it) holds
 * back the later events of its complaint; other complaints keep flowing.
 */
Test(relay, an_unpackable_row_holds_back_its_complaint)
{
    char tenant[32], sql[512], dsn[1200], var[1300];
    rl_events seen = { 0 };
    proxy px;
    proxy_start_pg(&px, rl.db.dsn, dsn, sizeof(dsn));
    snprintf(var, sizeof(var), "TALLY_PG_DSN=%s", dsn);
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", var, NULL };
    rl_svc_start(0, env);
    gc_client *c = rl_tenant(0, tenant, "UTC");
    Tally__V1__CreateComplaintRequest cr = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    cr.tenant_id = tenant;
    cr.idempotency_key = "x";
    cr.category_id = "c1";
    cr.priority = TALLY__V1__PRIORITY__PRIORITY_LOW;
    cr.title = "Broken";
    cr.customer_id = "cust-9";
    gc_result r;
    cr_assert_eq(rl_call(c, GC_COMMANDS("CreateComplaint"), &cr.base, &r), 0, "%s", r.details);
    Tally__V1__CreateComplaintReply *rep =
        tally__v1__create_complaint_reply__unpack(NULL, r.len, r.data);
    gc_result_release(&r);
    cr_assert(rep);
    int64_t x = rep->complaint_id;
    tally__v1__create_complaint_reply__free_unpacked(rep, NULL);
    rl_expect_all_published(tenant, &seen);

    PGconn *pg = pgdb_connect(&rl.db);
    snprintf(sql, sizeof(sql),
             "INSERT INTO events (tenant_id, complaint_id, version, type, occurred_at, local_day,"
             " payload) VALUES ('%s', %lld, 2, 99, now(), current_date, ''::bytea)",
             tenant, (long long)x);
    rl_pg_ok(pg, sql);
    snprintf(sql, sizeof(sql), "UPDATE complaints SET version = 2 WHERE complaint_id = %lld",
             (long long)x);
    rl_pg_ok(pg, sql);
    Tally__V1__ChangeStatusRequest ch = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    ch.tenant_id = tenant;
    ch.complaint_id = x;
    ch.actor = "a1";
    ch.status = TALLY__V1__STATUS__STATUS_RESOLVED;
    ch.expected_version = 2;
    cr_assert_eq(rl_call(c, GC_COMMANDS("ChangeStatus"), &ch.base, &r), 0, "%s", r.details);
    gc_result_release(&r);
    /* The marks of the others' rows are held 1 s (a loaded machine's slow pass, made certain):
     * their entries are on the stream a second before their rows are marked. */
    proxy_hold(&px, "relay_mark", 1000);
    rl_lifecycles(c, tenant, "others", 2); /* committed after X's v3: published past it */

    /* Every row but X's v2 and v3 arrives; the relay says two rows are held. */
    redisContext *rc = rl_redis_open();
    rl_events table = { 0 };
    rl_table_events(tenant, 0, &table);
    int64_t others_last = table.v[table.n - 1].seq;
    for (int64_t end = now_mono_ms() + WAIT_MS;
         now_mono_ms() < end && rl_max_seq(&seen) < others_last;)
        rl_stream_read(rc, tenant, &seen), tclock_sleep_ms(100);
    cr_assert_eq(rl_max_seq(&seen), others_last, "other complaints flow");
    for (size_t i = 0; i < seen.n; i++)
        cr_assert(seen.v[i].complaint != x || seen.v[i].version == 1,
                  "complaint %lld: version %lld published while version 2 is not", (long long)x,
                  (long long)seen.v[i].version);
    cr_assert_eq(rl_metric(&rl.svc[0], "tally_relay_unpublishable_rows"), 2);
    /* The pass that XADDed the others' rows marks them after: the count falls to 2 then. */
    long long waiting = -1;
    for (int64_t end = now_mono_ms() + WAIT_MS; now_mono_ms() < end && waiting != 2;
         tclock_sleep_ms(50))
        waiting = pgdb_int(pg, "SELECT count(*) FROM outbox", 0, NULL);
    cr_assert_eq(waiting, 2, "v2 and v3 wait");
    PQfinish(pg);
    redisFree(rc);
    free(table.v);
    gc_free(c);
    rl_svc_stop_clean(0);
    proxy_stop(&px);
    free(seen.v);
}

/* tally:wm's field of partition 0 (0 while absent). */

/* n_tup_upd + n_tup_del of events (a session of its own, which writes nothing). */
static long long event_rows_rewritten(void)
{
    PGconn *pg = pgdb_connect(&rl.db);
    long long n = pgdb_int(pg,
                           "SELECT n_tup_upd + n_tup_del FROM pg_stat_user_tables"
                           " WHERE relname = 'events'",
                           0, NULL);
    PQfinish(pg);
    return n;
}

/*
 * A bulk import while the relay runs, before anything has analysed events: the relay reads
 * each batch by seq and marks it in the outbox, and never writes an events row. Until
 * migration 0006 it marked every row with UPDATE events SET published_at: a new heap tuple,
 * four index entries and about 820 bytes of WAL per event, three quarters of PostgreSQL's time
 * in the relay (bench/README.md); this test counted 100,009 updates of events then. Before
 * 3557f0f, with statistics from when the table was empty, that mark was planned as a scan of
 * every unpublished row for each batch (300 events/s until autoanalyze ran): the suite's 90 s
 * timeout still catches a plan of that kind. Every session that wrote the table has ended when
 * the counts are read, so its counts are in.
 */
Test(relay, publishing_a_bulk_import_writes_no_event_row)
{
    char tenant[32];
    const char *off[] = { "TALLY_RELAY=false", NULL };
    const char *on[] = { "TALLY_RELAY_POLL_MS=100", NULL };
    rl_svc_start(0, off); /* migrates */
    rl_svc_stop(0);
    PGconn *pg = pgdb_connect(&rl.db);
    rl_pg_ok(pg, "ALTER TABLE events SET (autovacuum_enabled = false)");
    PQfinish(pg);
    rl_svc_start(0, on);
    gc_client *c = rl_tenant(0, tenant, "UTC");
    rl_lifecycles(c, tenant, "bulk", 1); /* one complaint, whose first event is copied */
    gc_free(c);
    while (rl_metric(&rl.svc[0], "tally_relay_published_total") < 9)
        tclock_sleep_ms(50);
    pg = pgdb_connect(&rl.db);
    rl_pg_ok(pg, "INSERT INTO events (tenant_id, complaint_id, version, type, occurred_at,"
                 " local_day, imported, payload)"
                 " SELECT e.tenant_id, 1000000 + g, 1, e.type, e.occurred_at, e.local_day, true,"
                 " e.payload FROM (SELECT * FROM events WHERE version = 1 ORDER BY seq LIMIT 1) e,"
                 " generate_series(1, 100000) g");
    PQfinish(pg);
    for (int64_t end = now_mono_ms() + 300000;; tclock_sleep_ms(200)) {
        if (rl_metric(&rl.svc[0], "tally_relay_published_total") >= 100009 &&
            rl_metric(&rl.svc[0], "tally_relay_backlog") == 0)
            break;
        cr_assert_lt(now_mono_ms(), end, "the relay did not publish the 100,000 rows in 300 s");
    }
    rl_svc_stop_clean(0); /* its sessions end: their counts are in */
    long long rewritten = event_rows_rewritten();
    cr_expect_eq(rewritten, 0, "%lld events rows were updated or deleted", rewritten);
    pg = pgdb_connect(&rl.db);
    cr_expect_eq(pgdb_int(pg, "SELECT count(*) FROM outbox", 0, NULL), 0, "the outbox is empty");
    PQfinish(pg);
}

/* Runs migration file name of TALLY_MIGRATIONS_DIR on pg and records it, as migrate.c does. */
static void run_migration(PGconn *pg, const char *name)
{
    char path[512], sql[256];
    snprintf(path, sizeof(path), "%s/%s", TALLY_MIGRATIONS_DIR, name);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    cr_assert_lt(n, sizeof(text) - 1, "%s is larger than the buffer", path);
    text[n] = '\0';
    PGresult *r = PQexec(pg, text); /* several statements: the simple protocol */
    cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", name, PQresultErrorMessage(r));
    PQclear(r);
    snprintf(sql, sizeof(sql), "INSERT INTO schema_migrations (version, name) VALUES (%d, '%s')",
             atoi(name), name);
    rl_pg_ok(pg, sql);
}

/*
 * Migration 0006 on a database of schema 5 with published and unpublished rows: every row
 * that was unpublished is in the outbox and no other, every pass is in relay_passes with its
 * seqs (a range when contiguous, else the list), and the events of a writer after it reach
 * the outbox.
 */
Test(relay, migration_0006_keeps_every_unpublished_row_and_every_pass)
{
    static const char *const before[] = { "0001_schema.sql", "0002_events_published_at.sql",
                                          "0003_events_published_at_partial.sql",
                                          "0005_service_checked_fks.sql" };
    pgdb d;
    pgdb_create(&d, "mig6");
    PGconn *pg = pgdb_connect(&d);
    rl_pg_ok(pg, "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
                 " applied_at timestamptz NOT NULL DEFAULT now())");
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++)
        run_migration(pg, before[i]);
    /* seqs 1, 2: pass 1700000000000001 (contiguous); 3 and 5: pass 1700000000000002 (not);
       4 and 6 unpublished. */
    rl_pg_ok(pg, "INSERT INTO events (tenant_id, type, occurred_at, local_day, payload,"
                 " published_at) SELECT 't', 11, now(), current_date, ''::bytea,"
                 " CASE WHEN i <= 2 THEN to_timestamp(1700000000000001::float8 / 1e6)"
                 " WHEN i IN (3, 5) THEN to_timestamp(1700000000000002::float8 / 1e6) END"
                 " FROM generate_series(1, 6) i ORDER BY i");
    PQfinish(pg);

    pgdb_migrate(&d); /* 0006, by command-svc */
    pg = pgdb_connect(&d);
    PGresult *r =
        pgdb_sql(pg, "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM outbox", 0, NULL);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "4,6", "the unpublished rows, and only they");
    PQclear(r);
    r = pgdb_sql(pg,
                 "SELECT string_agg(id || ':' || lo || '-' || hi || ':' || coalesce(seqs::text,"
                 " 'range'), ' ' ORDER BY id) FROM relay_passes",
                 0, NULL);
    cr_expect_str_eq(PQgetvalue(r, 0, 0), "1700000000000001:1-2:range 1700000000000002:3-5:{3,5}",
                     "the passes");
    PQclear(r);
    cr_expect_eq(pgdb_int(pg,
                          "SELECT count(*) FROM information_schema.columns"
                          " WHERE table_name = 'events' AND column_name = 'published_at'",
                          0, NULL),
                 0, "events.published_at is gone");
    rl_pg_ok(pg, "INSERT INTO events (tenant_id, type, occurred_at, local_day, payload)"
                 " VALUES ('t', 11, now(), current_date, ''::bytea)");
    cr_expect_eq(pgdb_int(pg, "SELECT max(seq) FROM outbox", 0, NULL), 7, "a new row is in it");
    PQfinish(pg);
    pgdb_drop(&d);
}
