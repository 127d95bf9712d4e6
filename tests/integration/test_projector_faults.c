/*
 * The projector under faults, against a redis-server of each test's own: kill -9 in the middle
 * of a large backlog and a restart lose nothing and apply nothing twice; entries a dead
 * consumer left pending are reclaimed (also before the gaps waiting for them time out); Redis
 * restarted under load (with an append-only file, so its data survives) is reconnected to and
 * caught up with; /healthz stays 200 while Redis is down, /readyz is 503 and names redis; a
 * connection lost right after a command was sent (a proxy between the projector and Redis
 * drops it) is survived. The oracle is the read model calculated from the same events
 * (tests/support/ev_model.c).
 */
#define _GNU_SOURCE /* accept4, memmem */
#include "pjfix.h"
#include "proxy.h"
#include "tclock.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS PJF_WAIT_MS

static pjf_rig R;

/* ---- a redis-server and a projector of the test's own -------------------------------------- */

/* Starts the test's redis-server; persist: appendonly yes, appendfsync always (its data
 * survives a restart). */
static void redis_up(bool persist)
{
    rsv_options o = { .appendonly = persist, .appendfsync = "always" };
    pjf_redis_start(&R, &o);
}

static void fini(void)
{
    pjf_release(&R);
}

TestSuite(faults, .fini = fini, .timeout = 120);

/* ---- helpers ------------------------------------------------------------------------------- */

static void start(const char *const *env)
{
    pjf_start(&R, 0, 0, env);
}

/* Whether the projector still runs; once it has exited, how is in pj_exit (128 + signal). */
static int pj_exit = -1;
static bool alive(void)
{
    if (R.pj_on[0] && R.pj[0].pid > 0)
        pj_exit = proc_wait(&R.pj[0], 0);
    return R.pj_on[0] && R.pj[0].pid > 0;
}

static void generate(uint64_t seed, size_t events)
{
    pjf_generate(&R, seed, 3, events, 300);
    R.model = ev_model_new(&R.hist, NULL);
}

static void add_all(void)
{
    size_t n, *order = pjf_order(&R, EV_IN_ORDER, 0, &n);
    pjf_add_range(&R, order, 0, n);
}

/* fresh.events over all tenants. */
static long long applied_events(void)
{
    long long n = 0;
    for (int t = 0; t < R.hist.ntenants; t++) {
        redisReply *r = redisCommand(R.rc, "HGET {t:%s}:1:fresh events", R.hist.tenants[t]);
        if (r && r->type == REDIS_REPLY_STRING)
            n += atoll(r->str);
        if (r)
            freeReplyObject(r);
    }
    return n;
}

static void wait_applied_at_least(long long n)
{
    for (int64_t until = now_mono_ms() + WAIT_MS; now_mono_ms() < until; tclock_sleep_ms(2)) {
        if (applied_events() >= n)
            return;
        pjf_check_alive(&R);
    }
    cr_assert_fail("fewer than %lld events applied within %d ms", n, WAIT_MS);
}

static long long xpending(const char *consumer)
{
    return pjf_xpending(&R, consumer);
}

/* ---- (1) kill -9 mid-batch ----------------------------------------------------------------- */

/*
 * kill -9 while a batch is read and not acked, then the same consumer again: it reads its own
 * pending entries first. To land the kill mid-batch whatever the timing (a batch may be acked
 * between our look at the pending list and the kill), the projector is frozen with SIGSTOP
 * while it has entries pending, checked again, and only then killed. The freeze makes the
 * landing certain, so a few batches between kills are enough: 40,000 events, a kill every
 * 4,000 applied, up to six kills, the last well before the end (the loop waits for a pending
 * batch, which a caught-up projector never has).
 */
Test(faults, kill_9_mid_batch_and_restart_lose_nothing_and_apply_nothing_twice)
{
    /* Batches of 500: many batches, so a kill can land while one is pending. */
    const char *env[] = { "TALLY_PROJECTOR_CONSUMER=k1", "TALLY_PROJECTOR_BATCH=500", NULL };
    int mid_batch = 0;
    redis_up(false);
    generate(21, 40000);
    add_all();
    for (int k = 0; k < 6 && mid_batch < 2 && applied_events() < 28000; k++) {
        start(env);
        wait_applied_at_least(applied_events() + 4000);
        bool frozen_mid = false;
        for (int tries = 0; tries < 1000 && !frozen_mid; tries++) {
            while (xpending("k1") == 0)
                pjf_check_alive(&R);
            cr_assert_eq(proc_freeze(&R.pj[0]), 0, "the projector did not stop");
            frozen_mid = xpending("k1") > 0;
            if (!frozen_mid)
                kill(R.pj[0].pid, SIGCONT);
        }
        pjf_stop(&R, 0, SIGKILL); /* a stopped process dies of SIGKILL too */
        mid_batch += frozen_mid && xpending("k1") > 0;
    }
    cr_expect_gt(mid_batch, 0, "no kill landed while a batch was pending");
    start(env);
    pjf_expect_model(&R); /* fresh.events equals the number of distinct events */
    cr_expect_eq(xpending(NULL), 0);
    cr_expect_eq(ev_metric(R.pj[0].http_port, "tally_projector_parked_total"), 0);
}

/* ---- (2) a dead consumer's pending entries are reclaimed ----------------------------------- */

Test(faults, a_dead_consumers_pending_entries_are_reclaimed)
{
    const char *env[] = { "TALLY_PROJECTOR_CLAIM_IDLE_MS=1000", NULL };
    redis_up(false);
    generate(22, 3000);
    add_all();
    redisReply *r = redisCommand(R.rc, "XGROUP CREATE %s projector 0 MKSTREAM", EV_STREAM);
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = redisCommand(R.rc, "XREADGROUP GROUP projector ghost COUNT 700 STREAMS %s >", EV_STREAM);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY, "the ghost could not read");
    freeReplyObject(r);
    cr_assert_eq(xpending("ghost"), 700);
    start(env);
    /* The ghost's entries come last: renames read meanwhile supersede its older ones. */
    ev_model_allow_superseded(R.model);
    pjf_expect_model(&R);
    long long short_by = pjf_events_short(&R);
    cr_expect_eq(ev_metric(R.pj[0].http_port, "tally_projector_duplicates_total"), (double)short_by,
                 "duplicates other than superseded renames (%lld)", short_by);
    cr_expect_eq(xpending("ghost"), 0, "the ghost still holds entries");
    cr_expect_eq(xpending(NULL), 0);
    cr_expect(proc_log_has(&R.pj[0], "reclaimed pending events"));
    cr_expect_eq(ev_metric(R.pj[0].http_port, "tally_projector_parked_total"), 0);
}

/* ---- (3) Redis restarted under load -------------------------------------------------------- */

/*
 * Adds the history under load, event i with the id (i+1)-1, through any outage: after each
 * (re)connect it waits until Redis answers PING (not LOADING: a pipeline must not straddle the
 * end of loading) and resumes after the stream's last entry. Exactly once on the stream.
 */
typedef struct loader {
    atomic_size_t added;
    atomic_bool failed;
} loader;

static redisContext *ready_conn(size_t *top)
{
    redisContext *c = rsv_open(&R.redis);
    redisReply *r = c ? redisCommand(c, "PING") : NULL;
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    r = ok ? redisCommand(c, "XREVRANGE %s + - COUNT 1", EV_STREAM) : NULL;
    ok = r && r->type == REDIS_REPLY_ARRAY;
    *top = ok && r->elements ? strtoull(r->element[0]->element[0]->str, NULL, 10) : 0;
    if (r)
        freeReplyObject(r);
    if (!ok && c)
        redisFree(c);
    return ok ? c : NULL;
}

static void *load(void *arg)
{
    loader *l = arg;
    redisContext *c = NULL;
    int64_t give_up = now_mono_ms() + WAIT_MS;
    for (size_t done = 0; done < R.hist.n && now_mono_ms() < give_up;) {
        if (!c && !(c = ready_conn(&done))) {
            tclock_sleep_ms(20);
            continue;
        }
        size_t chunk = R.hist.n - done < 200 ? R.hist.n - done : 200;
        bool ok = true;
        for (size_t i = done; i < done + chunk; i++) {
            char id[32];
            snprintf(id, sizeof(id), "%zu-1", i + 1);
            redisAppendCommand(c, "XADD %s %s e %b", EV_STREAM, id, R.hist.v[i].bytes,
                               R.hist.v[i].len);
        }
        for (size_t i = 0; i < chunk && ok; i++) {
            redisReply *rep = NULL;
            ok = redisGetReply(c, (void **)&rep) == REDIS_OK && rep &&
                 rep->type != REDIS_REPLY_ERROR;
            if (rep)
                freeReplyObject(rep);
        }
        if (!ok) { /* reconnect, and go on after what Redis has */
            redisFree(c);
            c = NULL;
            continue;
        }
        done += chunk;
        atomic_store(&l->added, done);
        tclock_sleep_ms(2);
    }
    atomic_store(&l->failed, atomic_load(&l->added) < R.hist.n);
    if (c)
        redisFree(c);
    return NULL;
}

Test(faults, redis_restarted_under_load_is_reconnected_and_caught_up)
{
    pthread_t t;
    redis_up(true);
    generate(23, 60000);
    start(NULL);
    loader l = { 0 };
    cr_assert_eq(pthread_create(&t, NULL, load, &l), 0);
    while (atomic_load(&l.added) < 20000 && !atomic_load(&l.failed))
        tclock_sleep_ms(5);
    wait_applied_at_least(10000);
    redisFree(R.rc);
    R.rc = NULL;
    rsv_stop(&R.redis, SIGTERM); /* under load: the loader and the projector both lose it */
    tclock_sleep_ms(300);
    rsv_run(&R.redis, -1); /* on the same port, from its append-only file */
    pthread_join(t, NULL);
    cr_assert(!atomic_load(&l.failed), "the loader could not add every event");
    redisReply *r = redisCommand(R.rc ? R.rc : (R.rc = rsv_open(&R.redis)), "XLEN %s", EV_STREAM);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER && r->integer == (long long)R.hist.n,
              "the stream does not hold each event once");
    freeReplyObject(r);
    pjf_expect_model(&R);
    cr_expect_eq(xpending(NULL), 0);
    cr_expect(proc_log_has(&R.pj[0], "Redis is back") ||
                  proc_log_has(&R.pj[0], "Redis unavailable"),
              "the projector never noticed the restart");
    cr_expect(alive(), "the projector exited (%d)", pj_exit);
}

/* ---- (4) health while Redis is down -------------------------------------------------------- */

static int get(const char *path, char *body, size_t len)
{
    return proc_http_get(R.pj[0].http_port, path, body, len);
}

static int wait_status(const char *path, int want, char *body, size_t len)
{
    int got = -1;
    for (int64_t until = now_mono_ms() + 15000; now_mono_ms() < until; tclock_sleep_ms(100))
        if ((got = get(path, body, len)) == want)
            break;
    return got;
}

Test(faults, healthz_stays_200_while_redis_is_down_and_readyz_names_redis)
{
    char body[4096];
    redis_up(false);
    generate(24, 500);
    start(NULL);
    cr_assert_eq(wait_status("/readyz", 200, body, sizeof(body)), 200, "not ready: %s", body);
    cr_assert_eq(get("/healthz", body, sizeof(body)), 200);
    redisFree(R.rc);
    R.rc = NULL;
    rsv_stop(&R.redis, SIGTERM);
    cr_assert_eq(wait_status("/readyz", 503, body, sizeof(body)), 503,
                 "/readyz did not fail with Redis down: %s", body);
    cr_expect(strstr(body, "redis"), "/readyz does not name redis: %s", body);
    for (int64_t until = now_mono_ms() + 8000; now_mono_ms() < until; tclock_sleep_ms(200)) {
        int h = get("/healthz", body, sizeof(body));
        cr_assert_eq(h, 200, "/healthz %d with Redis down: %s", h, body);
    }
    /* Redis comes back empty (no persistence): the projector sets up again and applies. */
    rsv_run(&R.redis, -1);
    R.rc = rsv_open(&R.redis);
    cr_assert(R.rc);
    cr_assert_eq(wait_status("/readyz", 200, body, sizeof(body)), 200, "not ready: %s", body);
    add_all();
    pjf_expect_model(&R);
}

/* ---- (5) connections lost at the worst moments --------------------------------------------- */

/* The one fault proxy (tests/support/proxy.h) between the projector and Redis. */
static proxy px;

static void proxy_to_redis(void)
{
    proxy_start(&px, "127.0.0.1", R.redis.port);
}

/* The projector through the proxy: it sees the connection drop after its command was sent. */
static void start_proxied(const char *const *env)
{
    pjf_start(&R, 0, px.port, env);
}

/*
 * Every XACK for 9 s loses the connection (the FCALLs before it went through), while events
 * keep coming. The projector samples the pending count every 5 s in the same turn.
 */
Test(faults, connections_lost_at_xack_are_survived_and_caught_up)
{
    const char *env[] = { "TALLY_PROJECTOR_BATCH=100", NULL };
    char err[256];
    size_t n, added = 0, *order;
    redis_up(false);
    generate(25, 20000);
    order = pjf_order(&R, EV_IN_ORDER, 0, &n);
    proxy_to_redis();
    int64_t from = now_mono_ms() + 1000;
    proxy_drop(&px, "\r\nXACK\r\n", 1000000, from, from + 9000);
    start_proxied(env);
    for (; added < n && alive(); added += 100, tclock_sleep_ms(50)) /* about 2,000 events/s */
        cr_assert_eq(ev_xadd(R.rc, EV_STREAM, &R.hist, order + added,
                             n - added < 100 ? n - added : 100, err, sizeof(err)),
                     0, "%s", err);
    cr_expect_gt(proxy_dropped(&px), 0, "no connection was dropped");
    cr_assert(alive(), "the projector died (exit %d) after a connection lost at XACK", pj_exit);
    pjf_expect_model(&R);
    cr_expect_gt(ev_metric(R.pj[0].http_port, "tally_projector_duplicates_total"), 0,
                 "no batch was applied again after its XACK was lost");
    proxy_stop(&px);
}

/*
 * With a backlog the next batch is read while the current one is applied (consumer_int.h): the
 * read of new entries that does not block, written alone before the first FCALL of the batch.
 * Losing the connection there, three times, leaves both batches pending, read again after the
 * reconnect: nothing is lost, nothing counted twice.
 */
Test(faults, connections_lost_at_the_read_ahead_are_survived)
{
    const char *env[] = { "TALLY_PROJECTOR_BATCH=100", NULL };
    redis_up(false);
    generate(27, 20000);
    add_all(); /* all at once: a backlog from the start */
    proxy_to_redis();
    /* COUNT 100 then STREAMS: no BLOCK; and ">": new entries, not our pending list. (A read
       with retries or claims in the batch does not block either: none here, in order and with
       claims after 30 s.) */
    proxy_drop(&px, "COUNT\r\n$3\r\n100\r\n$7\r\nSTREAMS\r\n$14\r\n" EV_STREAM "\r\n$1\r\n>", 3, 0,
               INT64_MAX);
    start_proxied(env);
    pjf_expect_model(&R);
    cr_expect_eq(proxy_dropped(&px), 3, "%d connections dropped at the read ahead, not 3",
                 proxy_dropped(&px));
    cr_assert(alive(), "the projector died (exit %d) after a connection lost at its read ahead",
              pj_exit);
    cr_expect_gt(ev_metric(R.pj[0].http_port, "tally_projector_reads_ahead_total"), 100,
                 "the batches were not read ahead");
    cr_expect_eq(xpending(NULL), 0);
    cr_expect_eq(ev_metric(R.pj[0].http_port, "tally_projector_parked_total"), 0);
    proxy_stop(&px);
}

/*
 * The connection lost at an XACK while the next batch was read ahead and decoded already: the
 * applied batch and the one read ahead are both pending, read again after the reconnect (the
 * first as duplicates), and nothing is lost. (The test above drops the read itself, before
 * Redis delivered anything.)
 */
Test(faults, a_batch_read_ahead_and_lost_with_the_connection_is_read_again)
{
    const char *env[] = { "TALLY_PROJECTOR_BATCH=100", NULL };
    redis_up(false);
    generate(28, 20000);
    add_all();
    proxy_to_redis();
    proxy_drop(&px, "\r\nXACK\r\n", 3, 0, INT64_MAX);
    start_proxied(env);
    pjf_expect_model(&R);
    cr_expect_eq(proxy_dropped(&px), 3, "%d connections dropped at XACK, not 3",
                 proxy_dropped(&px));
    cr_assert(alive(), "the projector died (exit %d)", pj_exit);
    cr_expect_gt(ev_metric(R.pj[0].http_port, "tally_projector_reads_ahead_total"), 100,
                 "the batches were not read ahead");
    cr_expect_gt(ev_metric(R.pj[0].http_port, "tally_projector_duplicates_total"), 0,
                 "no batch was applied again after its XACK was lost");
    cr_expect_eq(xpending(NULL), 0);
    proxy_stop(&px);
}

Test(faults, a_connection_lost_while_parking_is_survived)
{
    const char *env[] = { "TALLY_PROJECTOR_GAP_TIMEOUT_MS=500",
                          "TALLY_PROJECTOR_CLAIM_IDLE_MS=1000", "TALLY_PROJECTOR_BLOCK_MS=100",
                          NULL };
    redis_up(false);
    generate(26, 1000);
    int64_t c = 0; /* a complaint whose version 2 never arrives: v3 and later are parked */
    for (size_t i = 0; i < R.hist.n && !c; i++)
        if (R.hist.v[i].version == 1 && ev_find(&R.hist, R.hist.v[i].complaint, 3) >= 0)
            c = R.hist.v[i].complaint;
    bool *skip = pjf_new_skip(&R);
    for (size_t i = 0; i < R.hist.n; i++)
        skip[i] = R.hist.v[i].complaint == c && R.hist.v[i].version >= 2;
    ev_model_free(R.model);
    R.model = ev_model_new(&R.hist, skip);
    char err[256];
    for (size_t i = 0; i < R.hist.n; i++)
        if (!(R.hist.v[i].complaint == c && R.hist.v[i].version == 2))
            cr_assert_eq(ev_xadd(R.rc, EV_STREAM, &R.hist, &i, 1, err, sizeof(err)), 0, "%s", err);
    proxy_to_redis();
    proxy_drop(&px, "\r\nXADD\r\n", 1, 0, INT64_MAX); /* it XADDs only to tally:dead:0 */
    start_proxied(env);
    for (int64_t until = now_mono_ms() + 10000; now_mono_ms() < until; tclock_sleep_ms(50))
        if (proxy_dropped(&px) > 0 || !alive())
            break;
    tclock_sleep_ms(500);
    cr_expect_eq(proxy_dropped(&px), 1, "the XADD to the dead letters was not dropped");
    cr_assert(alive(), "the projector died (exit %d) after a connection lost while parking",
              pj_exit);
    pjf_expect_model(&R);
    proxy_stop(&px);
}

/*
 * A projector that dies right after reading a batch, a moment after the survivor's periodic
 * XAUTOCLAIM: the survivor gets the later events of that batch's complaints (gaps) and must
 * reclaim the batch before it gives up on them. The dead consumer is the test itself (it reads
 * the batch and never acks), 500 ms after the survivor's claim round, with the defaults' ratio
 * of gap timeout to claim idle time (30 s each; 2 s each here): the batch is claimable at the
 * survivor's claim round after next, up to twice the claim idle time after the death.
 */
Test(faults, a_batch_left_by_a_dead_consumer_is_reclaimed_before_its_gaps_are_parked)
{
    const char *env[] = { "TALLY_PROJECTOR_CONSUMER=survivor", "TALLY_PROJECTOR_BATCH=100",
                          "TALLY_PROJECTOR_CLAIM_IDLE_MS=2000",
                          "TALLY_PROJECTOR_GAP_TIMEOUT_MS=2000", NULL };
    redis_up(false);
    generate(27, 50000);
    add_all();
    proxy_to_redis();
    proxy_watch(&px, "\r\nXAUTOCLAIM\r\n");
    start_proxied(env); /* through the proxy: its claim rounds are seen */
    int64_t claimed_ms = 0;
    while (proxy_watched(&px, &claimed_ms) == 0)
        tclock_sleep_ms(1);
    tclock_sleep_ms((int)(claimed_ms + 500 - now_mono_ms()));
    redisReply *r =
        redisCommand(R.rc, "XREADGROUP GROUP projector dead COUNT 200 STREAMS %s >", EV_STREAM);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY, "the dying consumer could not read");
    freeReplyObject(r);
    cr_assert_eq(xpending("dead"), 200, "the dying consumer holds nothing");
    ev_model_allow_superseded(R.model); /* its batch comes last: renames in it may be overtaken */
    int caught_up = pjf_wait_applied(&R);
    r = redisCommand(R.rc, "XLEN %s", EV_DEAD);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long parked = r->integer;
    freeReplyObject(r);
    cr_expect_eq(parked, 0,
                 "%lld events parked as gaps behind a dead consumer's batch: the gap timeout "
                 "(2000 ms) ran out before the survivor reclaimed the batch (claim idle 2000 ms)",
                 parked);
    cr_expect_eq(caught_up, 0, "the survivor did not catch up");
    cr_expect_eq(xpending("dead"), 0, "the dead consumer's batch was never reclaimed");
    char diff[1024];
    cr_expect_eq(ev_model_check_all(R.rc, R.model, diff, sizeof(diff)), 0, "%s", diff);
    proxy_stop(&px);
}

/* ---- (8) Redis pressure, trimming, the watermark (issue 8) --------------------------------- */

static long long xlen(const char *stream)
{
    return pjf_xlen(&R, stream);
}

static void redis_ok(const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(R.rc, fmt, arg);
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", fmt, r ? r->str : "no reply");
    freeReplyObject(r);
}

/* The body of the projector's /readyz, and whether it answered 200. */
static bool ready(char *body, size_t len)
{
    return proc_http_get(R.pj[0].http_port, "/readyz", body, len) == 200;
}

/*
 * Redis at maxmemory (noeviction, the default) answers -OOM to the apply function, to the
 * dead-letter XADD and to HSETNX, but still serves XREADGROUP and XACK. A projector that took
 * an error reply for success would read the whole stream and ack it, applying and parking
 * nothing. Each event may be tried once only (MAX_ATTEMPTS=1): OOM must not count as a try.
 */
Test(faults, redis_out_of_memory_loses_no_event_and_parks_none)
{
    const char *env[] = { "TALLY_PROJECTOR_MAX_ATTEMPTS=1", "TALLY_PROJECTOR_BATCH=200", NULL };
    char body[512];
    redis_up(false);
    generate(31, 1000);
    start(env);
    while (!proc_log_has(&R.pj[0], "projector connected to Redis"))
        tclock_sleep_ms(10);
    cr_assert_eq(proc_freeze(&R.pj[0]), 0, "the projector did not stop"); /* before the adds */
    add_all();
    redis_ok("CONFIG SET maxmemory %s", "1");
    kill(R.pj[0].pid, SIGCONT);
    bool refused = false;
    for (int64_t until = now_mono_ms() + 15000; now_mono_ms() < until && !refused;
         tclock_sleep_ms(50))
        refused = !ready(body, sizeof(body)) && strstr(body, "OOM");
    cr_assert(refused, "/readyz never said that Redis refuses writes: %s", body);
    cr_expect_gt(ev_metric(R.pj[0].http_port, "tally_projector_redis_refusals_total"), 0);
    tclock_sleep_ms(2000); /* the loop backs off meanwhile; nothing may be acked */
    cr_expect_eq(applied_events(), 0);
    redis_ok("CONFIG SET maxmemory %s", "0");
    pjf_expect_model(&R);
    cr_expect_eq(xlen(EV_DEAD), 0, "events were parked while Redis was out of memory");
    bool back = false;
    for (int64_t until = now_mono_ms() + 5000; now_mono_ms() < until && !back; tclock_sleep_ms(20))
        back = ready(body, sizeof(body));
    cr_expect(back, "/readyz is not 200 after Redis took writes again: %s", body);
    cr_expect_eq(ev_metric(R.pj[0].http_port, "tally_projector_parked_total"), 0);
}

/*
 * More gaps than the retry queue holds (10,000): the version 2 of 10,001 complaints arrives
 * before their version 1. The queue overflows into the pending list (reclaimed later); no
 * legitimate event is parked as "retry queue full".
 */
Test(faults, a_full_retry_queue_parks_no_legitimate_event, .timeout = 180)
{
    /* Gaps wait for their version 1 as long as the test runs (30 s, the default, is too short
     * for 80,000 entries under ASan on a loaded machine), so what this test catches is a full
     * queue that parks ("retry queue full"), not gaps left in it until their timeout. */
    const char *env[] = { "TALLY_PROJECTOR_CLAIM_IDLE_MS=5000",
                          "TALLY_PROJECTOR_GAP_TIMEOUT_MS=600000", NULL };
    redis_up(false);
    generate(32, 80000);
    size_t n = 0, k = 0, twos = 0;
    size_t *order = malloc(R.hist.n * sizeof(*order));
    bool *placed = calloc(R.hist.n, sizeof(bool));
    cr_assert(order && placed);
    for (size_t i = 0; i < R.hist.n; i++) /* reference data first */
        if (R.hist.v[i].complaint == 0)
            order[n++] = i, placed[i] = true;
    for (size_t i = 0; i < R.hist.n; i++)
        if (R.hist.v[i].complaint && R.hist.v[i].version == 2)
            order[n++] = i, placed[i] = true, twos++;
    cr_assert_gt(twos, 10000, "the history has only %zu complaints with a version 2", twos);
    for (k = 0; k < R.hist.n; k++)
        if (!placed[k])
            order[n++] = k;
    char err[256];
    cr_assert_eq(ev_xadd(R.rc, EV_STREAM, &R.hist, order, n, err, sizeof(err)), 0, "%s", err);
    free(order);
    free(placed);
    start(env);
    pjf_expect_model(&R);
    cr_expect_eq(xlen(EV_DEAD), 0, "legitimate events were parked");
    cr_expect_gt(ev_metric(R.pj[0].http_port, "tally_projector_retry_spilled_total"), 0,
                 "the retry queue never filled: the test proves nothing");
}

/*
 * Entries trimmed from the stream while pending with a consumer are lost: XAUTOCLAIM names
 * them (Redis 7), XREADGROUP of a consumer's own pending list returns them as nil entries.
 * Either way the loss is counted and reported to the relay (tally:repair:request, the time
 * part of the earliest lost id), never acked in silence.
 */
static void trimmed_while_pending(const char *holder, const char *const *env)
{
    redis_up(false);
    generate(33, 2000);
    add_all();
    redisReply *r = redisCommand(R.rc, "XRANGE %s - + COUNT 1", EV_STREAM);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
    long long first_ms = atoll(r->element[0]->element[0]->str);
    freeReplyObject(r);
    redis_ok("XGROUP CREATE %s projector 0", EV_STREAM);
    r = redisCommand(R.rc, "XREADGROUP GROUP projector %s COUNT 100 STREAMS %s >", holder,
                     EV_STREAM);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY, "the holder could not read");
    freeReplyObject(r);
    redis_ok("XTRIM %s MAXLEN 0", EV_STREAM);
    start(env);
    double lost = 0;
    for (int64_t until = now_mono_ms() + 20000; now_mono_ms() < until && lost < 100;
         tclock_sleep_ms(50))
        lost = ev_metric(R.pj[0].http_port, "tally_projector_events_lost_total");
    cr_expect_eq(lost, 100, "%g of 100 trimmed entries were reported lost", lost);
    r = redisCommand(R.rc, "GET tally:repair:request");
    cr_assert(r && r->type == REDIS_REPLY_STRING, "no repair request for the relay");
    cr_expect_eq(atoll(r->str), first_ms, "the repair request does not start at the first loss");
    freeReplyObject(r);
    cr_expect_eq(xpending(NULL), 0, "the lost entries stay pending");
    cr_expect(proc_log_has(&R.pj[0], "trimmed before it was applied"));
}

Test(faults, entries_trimmed_while_a_dead_consumer_held_them_are_reported_lost)
{
    const char *env[] = { "TALLY_PROJECTOR_CLAIM_IDLE_MS=1000", NULL };
    trimmed_while_pending("ghost", env);
}

Test(faults, entries_trimmed_from_its_own_pending_list_are_reported_lost)
{
    const char *env[] = { "TALLY_PROJECTOR_CONSUMER=k1", NULL };
    trimmed_while_pending("k1", env);
}

/* The group's lag (XINFO GROUPS): entries not yet delivered to any consumer; -1 if unknown. */
static long long group_lag(void)
{
    redisReply *r = redisCommand(R.rc, "XINFO GROUPS %s", EV_STREAM);
    long long lag = -1;
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1, "XINFO GROUPS failed");
    const redisReply *g = r->element[0];
    for (size_t k = 0; k + 1 < g->elements; k += 2)
        if (strcmp(g->element[k]->str, "lag") == 0 &&
            g->element[k + 1]->type == REDIS_REPLY_INTEGER)
            lag = g->element[k + 1]->integer;
    freeReplyObject(r);
    return lag;
}

/* tally:wm field 0 as an integer; 0 when absent. */
static long long watermark(void)
{
    redisReply *r = redisCommand(R.rc, "HGET tally:wm 0");
    cr_assert(r, "HGET tally:wm failed");
    long long w = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return w;
}

/*
 * The relay's watermark entries (field w only) are acked, not parked, and become tally:wm once
 * every entry before them is acknowledged by the group: not while another consumer still holds
 * an earlier one, even though this projector has applied everything it read.
 */
Test(faults, the_watermark_waits_for_every_earlier_entry)
{
    const char *hold[] = { "TALLY_PROJECTOR_CLAIM_IDLE_MS=3600000", NULL };
    const char *take[] = { "TALLY_PROJECTOR_CLAIM_IDLE_MS=1000", NULL };
    redis_up(false);
    generate(34, 3000);
    add_all();
    redis_ok("XGROUP CREATE %s projector 0", EV_STREAM);
    redisReply *r =
        redisCommand(R.rc, "XREADGROUP GROUP projector ghost COUNT 10 STREAMS %s >", EV_STREAM);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY, "the ghost could not read");
    freeReplyObject(r);
    redis_ok("XADD %s * w 1700000000123", EV_STREAM);
    start(hold);
    for (int64_t until = now_mono_ms() + 20000; now_mono_ms() < until; tclock_sleep_ms(20))
        if (group_lag() == 0 && xpending(NULL) == 10 && xpending("ghost") == 10)
            break;
    tclock_sleep_ms(1500); /* a few turns: the watermark would be written by now */
    cr_expect_eq(watermark(), 0, "the watermark moved past an entry another consumer holds");
    cr_expect_eq(xlen(EV_DEAD), 0, "the watermark entry was parked");
    pjf_stop(&R, 0, SIGTERM);
    start(take); /* reclaims the ghost's entries */
    ev_model_allow_superseded(R.model);
    pjf_expect_model(&R);
    /* Candidates live in the projector that acked them: the relay's next watermark counts. */
    redis_ok("XADD %s * w 1700000000456", EV_STREAM);
    for (int64_t until = now_mono_ms() + 10000; now_mono_ms() < until && !watermark();
         tclock_sleep_ms(20))
        ;
    cr_expect_eq(watermark(), 1700000000456LL);
    cr_expect_eq(xlen(EV_DEAD), 0);
}

/* maxmemory-policy allkeys-lru could evict a complaint's applied version: refused at start. */
Test(faults, a_redis_that_evicts_keys_is_refused)
{
    redis_up(false);
    redis_ok("CONFIG SET maxmemory-policy %s", "allkeys-lru");
    start(NULL);
    int code = proc_wait(&R.pj[0], 10000);
    cr_expect_eq(code, 1, "the projector did not exit 1 (%d)", code);
    cr_expect(proc_log_has(&R.pj[0], "evict"), "the log does not say why");
    R.pj_on[0] = false;
    proc_release(&R.pj[0]);
}

/*
 * A rolling upgrade runs two builds of the apply function at once: each loads a library named
 * by its source's hash and never replaces the other's (an older build's "tally" stays).
 */
Test(faults, the_apply_function_of_another_build_is_not_replaced)
{
    redis_up(false);
    redis_ok("FUNCTION LOAD %s",
             "#!lua name=tally\nredis.register_function('tally_apply', function() return 1 end)");
    generate(35, 500);
    add_all();
    start(NULL);
    pjf_expect_model(&R);
    redisReply *r = redisCommand(R.rc, "FUNCTION LIST");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    cr_expect_eq(r->elements, 2, "%zu libraries, not the old one and ours", r->elements);
    freeReplyObject(r);
}

/* A consumer with nothing pending and no contact for ten claim periods leaves the group. */
Test(faults, dead_consumers_with_nothing_pending_leave_the_group)
{
    const char *env[] = { "TALLY_PROJECTOR_CLAIM_IDLE_MS=1000", "TALLY_PROJECTOR_CONSUMER=live",
                          NULL };
    redis_up(false);
    redis_ok("XGROUP CREATE %s projector 0 MKSTREAM", EV_STREAM);
    redis_ok("XGROUP CREATECONSUMER %s projector gone", EV_STREAM);
    start(env);
    bool left = false;
    for (int64_t until = now_mono_ms() + 30000; now_mono_ms() < until && !left;
         tclock_sleep_ms(200)) {
        redisReply *r = redisCommand(R.rc, "XINFO CONSUMERS %s projector", EV_STREAM);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY);
        bool gone = false, live = false;
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *c = r->element[i];
            gone |= strcmp(c->element[1]->str, "gone") == 0;
            live |= strcmp(c->element[1]->str, "live") == 0;
        }
        left = live && !gone;
        freeReplyObject(r);
    }
    cr_expect(left, "the dead consumer is still in the group");
    cr_expect(proc_log_has(&R.pj[0], "removed a dead consumer"));
}

/* ---- (9) Redis with AUTH (issue 11) -------------------------------------------------------- */

/*
 * A Redis that wants a password: the projector AUTHs as the ACL user of its URL, with the
 * password from TALLY_REDIS_PASSWORD_FILE, and applies everything. With a wrong password it
 * applies nothing and /readyz says why, naming the user and never the password; a user with no
 * password at all is a configuration error at start (exit 2).
 */
Test(faults, redis_auth_as_an_acl_user_with_the_password_from_a_file)
{
    char url[128], file_var[128], body[512], path[64] = "/tmp/tally-test-redis-pw-XXXXXX";
    redis_up(false);
    redisReply *r = redisCommand(R.rc, "ACL SETUSER tally-projector on >pj-s3cret-9 ~* &* +@all");
    cr_assert(r && r->type == REDIS_REPLY_STATUS, "ACL SETUSER: %s", r ? r->str : "no reply");
    freeReplyObject(r);
    /* The default user wants a password too (the test's own connection has logged in
       already): a connection of the projector that skipped AUTH would fail. */
    redis_ok("CONFIG SET requirepass %s", "dflt-pw-3");
    generate(33, 2000);
    add_all();

    snprintf(url, sizeof(url), "TALLY_REDIS_URL=redis://tally-projector:wr0ng-pw-7@127.0.0.1:%d/0",
             R.redis.port);
    const char *wrong[] = { url, NULL };
    start(wrong);
    bool said = false;
    for (int64_t until = now_mono_ms() + 10000; now_mono_ms() < until && !said; tclock_sleep_ms(50))
        said = !ready(body, sizeof(body)) && strstr(body, "WRONGPASS") &&
               strstr(body, "AUTH as tally-projector");
    cr_expect(said, "/readyz does not say the AUTH was refused: %s", body);
    cr_expect_eq(applied_events(), 0);
    cr_expect_not(proc_log_has(&R.pj[0], "wr0ng-pw-7"), "the password is in the log");
    pjf_stop(&R, 0, SIGTERM);

    snprintf(url, sizeof(url), "TALLY_REDIS_URL=redis://tally-projector@127.0.0.1:%d/0",
             R.redis.port);
    const char *no_password[] = { url, "TALLY_HTTP_LISTEN=127.0.0.1:0", NULL };
    char *argv[] = { (char *)PROJECTOR_PATH, NULL };
    proc p = { 0 };
    cr_expect_eq(proc_run_argv(&p, argv, no_password, true, 10000), 2,
                 "a user without a password: not exit 2");
    cr_expect(proc_log_has(&p, "tally-projector has no password"), "the log does not say why");
    proc_release(&p);

    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "pj-s3cret-9\n", 12), 12);
    close(fd);
    snprintf(file_var, sizeof(file_var), "TALLY_REDIS_PASSWORD_FILE=%s", path);
    const char *right[] = { url, file_var, NULL };
    start(right);
    bool up = false; /* ready: its probe and its loop are logged in, and a turn has ended */
    for (int64_t until = now_mono_ms() + 10000; now_mono_ms() < until && !up; tclock_sleep_ms(20))
        up = ready(body, sizeof(body));
    cr_expect(up, "/readyz: %s", body);
    redis_ok("CONFIG SET requirepass %s", ""); /* for the model's own connections */
    pjf_expect_model(&R);
    cr_expect_not(proc_log_has(&R.pj[0], "pj-s3cret-9"), "the password is in the log");
    unlink(path);
}
