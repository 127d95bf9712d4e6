/*
 * `tally dlq` against a real Redis and the real projector: parked events are listed with their
 * reasons, a replay after the cause is fixed applies them in version order and once (the read
 * model then equals the oracle's for the whole history, and a second replay changes nothing),
 * an event that fails again is parked again once without a loop, and a drop keeps what it
 * removes, with its reason, while the complaint stays marked parked (docs/operations.md).
 *
 * Each test has a redis-server of its own and one projector with short gap waits (pjfix.h);
 * `tally` runs as a child whose stdout is sent to the captured stderr.
 */
#include "pjfix.h"
#include "proxy.h"
#include "tclock.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pjf_rig R;

static void init(void)
{
    pjf_redis_start(&R, NULL);
}

static void fini(void)
{
    pjf_release(&R);
}

TestSuite(dlq, .init = init, .fini = fini, .timeout = 120);

/* Gaps park after half a second; a refused apply after two tries. */
static const char *const short_waits[] = { "TALLY_PROJECTOR_GAP_TIMEOUT_MS=500",
                                           "TALLY_PROJECTOR_CLAIM_IDLE_MS=1000",
                                           "TALLY_PROJECTOR_BLOCK_MS=100",
                                           "TALLY_PROJECTOR_MAX_ATTEMPTS=2", NULL };

/*
 * Runs `tally dlq <sub> --redis-url <ours> args...` (NULL-terminated) to completion; its
 * stdout and stderr together in *out (malloc'd). Returns the exit status.
 */
static int tally_dlq(char **out, const char *sub, ...)
{
    const char *head[] = { "dlq", sub, NULL };
    va_list ap;
    va_start(ap, sub);
    int rc = proc_run_tally(out, R.redis.port, 30000, head, ap);
    va_end(ap);
    return rc;
}

static long long num(const char *fmt, const char *key)
{
    redisReply *r = redisCommand(R.rc, fmt, key);
    cr_assert(r && r->type == REDIS_REPLY_INTEGER, "%s %s failed", fmt, key);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

/* Waits until tally:dead:0 holds n entries and the group has acked everything. */
static void wait_dead(long long n)
{
    int64_t until = now_mono_ms() + PJF_WAIT_MS;
    while (now_mono_ms() < until &&
           !(num("XLEN %s", EV_DEAD) == n && ev_group_idle(R.rc, EV_STREAM))) {
        pjf_check_alive(&R);
        tclock_sleep_ms(50);
    }
    cr_assert_eq(num("XLEN %s", EV_DEAD), n, "%lld dead entries, expected %lld",
                 num("XLEN %s", EV_DEAD), n);
    cr_assert(ev_group_idle(R.rc, EV_STREAM), "the group never acked everything");
}

/* A complaint of tenant 0 with at least n versions. */
static int64_t complaint_of(int64_t n)
{
    for (size_t i = 0; i < R.hist.n; i++)
        if (R.hist.v[i].version == 1 && strcmp(R.hist.v[i].tenant_id, R.hist.tenants[0]) == 0 &&
            ev_find(&R.hist, R.hist.v[i].complaint, n) >= 0)
            return R.hist.v[i].complaint;
    cr_assert_fail("no complaint with %lld versions", (long long)n);
    return 0;
}

/* The number of versions of complaint c from v on. */
static long long versions_from(int64_t c, int64_t v)
{
    long long n = 0;
    while (ev_find(&R.hist, c, v + n) >= 0)
        n++;
    return n;
}

/* Every event of the history but the one at index except, in order, to the stream. */
static void add_all_but(long except)
{
    size_t n, *order = pjf_order(&R, EV_IN_ORDER, 0, &n);
    size_t from = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || (long)order[i] == except) {
            if (i > from)
                pjf_add_range(&R, order, from, i);
            from = i + 1;
        }
}

static void add_one(long i)
{
    size_t order[1] = { (size_t)i };
    pjf_add_range(&R, order, 0, 1);
}

static char *tenant_key(const char *suffix)
{
    static char key[128];
    snprintf(key, sizeof(key), "{t:%s}:%s", R.hist.tenants[0], suffix);
    return key;
}

/* The e bytes of the stream's last n entries equal complaint c's versions v.. in order. */
static void expect_stream_tail(int64_t c, int64_t v, long long n)
{
    redisReply *r = redisCommand(R.rc, "XREVRANGE %s + - COUNT %lld", EV_STREAM, n);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == (size_t)n);
    for (long long k = 0; k < n; k++) {
        const redisReply *f = r->element[n - 1 - k]->element[1];
        const ev_event *e = &R.hist.v[ev_find(&R.hist, c, v + k)];
        cr_expect(f->elements == 2 && f->element[1]->len == e->len &&
                      memcmp(f->element[1]->str, e->bytes, e->len) == 0,
                  "replayed entry %lld is not version %lld of complaint %lld", k,
                  (long long)(v + k), (long long)c);
    }
    freeReplyObject(r);
}

/* "\"version\":V," of complaint c's JSON line, with its reason, is in out. */
static void expect_listed(const char *out, int64_t c, int64_t v, const char *reason)
{
    char want[96];
    snprintf(want, sizeof(want), "\"complaint\":%lld,\"version\":%lld,", (long long)c,
             (long long)v);
    const char *at = strstr(out, want);
    cr_assert(at, "tally dlq list does not show v%lld of %lld:\n%s", (long long)v, (long long)c,
              out);
    const char *eol = strchr(at, '\n');
    const char *r = strstr(at, reason);
    cr_expect(r && (!eol || r < eol), "v%lld of %lld is not listed with \"%s\":\n%s", (long long)v,
              (long long)c, reason, out);
}

/* A history of seed and a complaint of it with at least 4 versions, in *cp and id (24 bytes). */
static int64_t history_with(uint64_t seed, int64_t *cp, char *id)
{
    pjf_generate(&R, seed, 1, 600, 120);
    int64_t c = *cp = complaint_of(4);
    snprintf(id, 24, "%lld", (long long)c);
    return c;
}

/* The parked complaint c of tenant 0: v3.. parked after a gap, then v2 parked behind them. */
static long long park_with_a_gap(int64_t *cp, char *id)
{
    int64_t c = history_with(21, cp, id);
    pjf_start(&R, 0, 0, short_waits);
    add_all_but(ev_find(&R.hist, c, 2));
    wait_dead(versions_from(c, 3));
    add_one(ev_find(&R.hist, c, 2));
    long long n = versions_from(c, 2);
    wait_dead(n);
    return n;
}

Test(dlq, a_replay_after_the_gap_is_filled_applies_the_parked_events_in_order_once)
{
    int64_t c;
    char *out, id[24];
    long long n = park_with_a_gap(&c, id);

    cr_assert_eq(tally_dlq(&out, "list", "--json", NULL), 0, "list failed:\n%s", out);
    expect_listed(out, c, 2, "behind a parked event");
    expect_listed(out, c, 3, "gap");
    cr_expect(strstr(out, "\"summary\":true,\"dead_entries\":") &&
                  strstr(out, "\"complaints\":1,\"marked\":1"),
              "list's summary:\n%s", out);
    free(out);
    cr_assert_eq(tally_dlq(&out, "list", "--tenant", R.hist.tenants[0], NULL), 0);
    cr_expect(strstr(out, "v2 COMPLAINT_ASSIGNED") || strstr(out, "v2 STATUS_CHANGED"),
              "list's text does not name v2 and its type:\n%s", out);
    free(out);

    long long before = num("XLEN %s", EV_STREAM);
    cr_assert_eq(tally_dlq(&out, "replay", "--tenant", R.hist.tenants[0], NULL), 0,
                 "replay failed:\n%s", out);
    cr_expect(strstr(out, "of 1 complaint back on their streams in version order"), "%s", out);
    free(out);
    cr_expect_eq(num("XLEN %s", EV_STREAM), before + n, "replay did not add %lld entries", n);
    expect_stream_tail(c, 2, n);
    R.model = ev_model_new(&R.hist, NULL);
    pjf_expect_model(&R); /* the whole history, v2 and later of c included, applied once */
    cr_expect_eq(num("XLEN %s", EV_DEAD), 0, "dead entries left after the replay");
    cr_expect_eq(num("HLEN %s", tenant_key("parked")), 0, "complaint still marked parked");
    cr_expect_eq(pjf_metric(&R, 0, "tally_projector_parked_total"), (double)n,
                 "the replayed events were parked again");

    /* A second replay: nothing, and the same Redis. */
    long long len = num("XLEN %s", EV_STREAM);
    cr_assert_eq(tally_dlq(&out, "replay", NULL), 0, "second replay failed:\n%s", out);
    cr_expect(strstr(out, "nothing to replay"), "second replay said:\n%s", out);
    free(out);
    cr_expect_eq(num("XLEN %s", EV_STREAM), len, "the second replay added entries");
    pjf_expect_model(&R);
    cr_expect_eq(pjf_metric(&R, 0, "tally_projector_duplicates_total"), 0,
                 "something was delivered twice");
}

/* v2 of c refused by the projector (priority 9): it and c's later events are parked. */
static long long park_a_refused_event(int64_t *cp, char *id)
{
    int64_t c = history_with(22, cp, id);
    R.hist.v[ev_find(&R.hist, c, 2)].priority = 9;
    cr_assert_eq(ev_pack(&R.hist.v[ev_find(&R.hist, c, 2)]), 0);
    pjf_start(&R, 0, 0, short_waits);
    add_all_but(-1);
    long long n = versions_from(c, 2);
    wait_dead(n);
    return n;
}

/* The dead entry ids, joined by spaces (malloc'd). */
static char *dead_ids(void)
{
    redisReply *r = redisCommand(R.rc, "XRANGE %s - +", EV_DEAD);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    char *s = calloc(r->elements + 1, 48);
    for (size_t i = 0; i < r->elements; i++) {
        strcat(s, r->element[i]->element[0]->str);
        strcat(s, " ");
    }
    freeReplyObject(r);
    return s;
}

Test(dlq, an_event_that_fails_again_is_parked_again_once_and_replay_returns)
{
    int64_t c;
    char *out, id[24];
    long long n = park_a_refused_event(&c, id);
    cr_assert_eq(tally_dlq(&out, "show", "--tenant", R.hist.tenants[0], "--complaint", id, NULL), 0,
                 "show failed:\n%s", out);
    cr_expect(strstr(out, "priority=9") && strstr(out, "reason: priority"),
              "show does not decode the refused body and its reason:\n%s", out);
    free(out);

    char *old = dead_ids();
    cr_assert_eq(tally_dlq(&out, "replay", "--tenant", R.hist.tenants[0], "--complaint", id, NULL),
                 0, "replay failed:\n%s", out);
    free(out);
    wait_dead(n);          /* parked again: as many entries as before */
    tclock_sleep_ms(1500); /* a loop would keep adding them */
    wait_dead(n);
    char *now = dead_ids();
    for (char *tok = strtok(old, " "); tok; tok = strtok(NULL, " "))
        cr_expect(!strstr(now, tok), "dead entry %s was not removed by the replay", tok);
    cr_expect_eq(pjf_metric(&R, 0, "tally_projector_parked_total"), (double)(2 * n),
                 "each event should be parked exactly twice");
    redisReply *r = redisCommand(R.rc, "HEXISTS %s %s", tenant_key("parked"), id);
    cr_expect(r && r->integer == 1, "complaint not marked parked again");
    freeReplyObject(r);
    free(old);
    free(now);
}

/* A field of the newest entry of stream key ("" when absent), malloc'd. */
static char *newest_field(const char *key, const char *field)
{
    redisReply *r = redisCommand(R.rc, "XREVRANGE %s + - COUNT 1", key);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1, "%s is empty", key);
    const redisReply *f = r->element[0]->element[1];
    char *v = NULL;
    for (size_t k = 0; k + 1 < f->elements && !v; k += 2)
        if (strcmp(f->element[k]->str, field) == 0)
            v = strdup(f->element[k + 1]->str);
    freeReplyObject(r);
    return v ? v : strdup("");
}

Test(dlq, a_drop_keeps_the_entries_with_its_reason_and_the_complaint_stays_parked)
{
    int64_t c;
    char *out, id[24];
    long long n = park_a_refused_event(&c, id);
    cr_expect_eq(tally_dlq(&out, "drop", "--tenant", R.hist.tenants[0], "--complaint", id, NULL), 2,
                 "a drop without --reason must be a usage error:\n%s", out);
    free(out);
    cr_expect_eq(num("XLEN %s", EV_DEAD), n, "a refused drop removed entries");

    cr_assert_eq(tally_dlq(&out, "drop", "--tenant", R.hist.tenants[0], "--complaint", id,
                           "--reason", "written by a broken build", NULL),
                 0, "drop failed:\n%s", out);
    cr_expect(strstr(out, "\"msg\":\"dead letter dropped\"") &&
                  strstr(out, "\"drop_reason\":\"written by a broken build\""),
              "drop logged no JSON line with its reason:\n%s", out);
    free(out);
    cr_expect_eq(num("XLEN %s", EV_DEAD), 0, "dead entries left after the drop");
    cr_expect_eq(num("XLEN %s", "tally:dlq:dropped"), n, "not every dropped entry is kept");
    char *why = newest_field("tally:dlq:dropped", "drop_reason");
    char *orig = newest_field("tally:dlq:dropped", "reason");
    char *e = newest_field("tally:dlq:dropped", "e");
    cr_expect_str_eq(why, "written by a broken build");
    cr_expect(orig[0] != '\0', "the original reason is not kept");
    cr_expect(e[0] != '\0', "the envelope is not kept");
    free(why);
    free(orig);
    free(e);

    redisReply *r = redisCommand(R.rc, "HEXISTS %s %s", tenant_key("parked"), id);
    cr_expect(r && r->integer == 1, "the dropped complaint is no longer marked parked");
    freeReplyObject(r);
    cr_assert_eq(tally_dlq(&out, "list", "--tenant", R.hist.tenants[0], NULL), 0);
    cr_expect(strstr(out, "marked parked") && strstr(out, "without dead entries"),
              "list does not show the dropped complaint's mark:\n%s", out);
    free(out);
    cr_assert_eq(tally_dlq(&out, "replay", NULL), 0);
    cr_expect(strstr(out, "nothing to replay"), "replay after the drop said:\n%s", out);
    free(out);
    r = redisCommand(R.rc, "HEXISTS %s %s", tenant_key("parked"), id);
    cr_expect(r && r->integer == 1, "a replay with nothing to replay unmarked the complaint");
    freeReplyObject(r);
}

/*
 * A replay that stopped after its XADDs, before its XDELs (done here by hand: the mark
 * deleted, the events put back in version order, the dead entries left): the next replay puts
 * them back again and the projector drops the copies by version, so nothing is applied twice.
 */
Test(dlq, a_replay_after_one_that_stopped_before_its_xdel_applies_nothing_twice)
{
    int64_t c;
    char *out, id[24];
    long long n = park_with_a_gap(&c, id);
    redisReply *r = redisCommand(R.rc, "HDEL %s %s", tenant_key("parked"), id);
    freeReplyObject(r);
    for (int64_t v = 2; v < 2 + n; v++)
        add_one(ev_find(&R.hist, c, v));
    R.model = ev_model_new(&R.hist, NULL);
    pjf_expect_model(&R);
    cr_assert_eq(num("XLEN %s", EV_DEAD), n, "the dead entries should still be there");

    cr_assert_eq(tally_dlq(&out, "replay", NULL), 0, "replay failed:\n%s", out);
    free(out);
    cr_expect_eq(num("XLEN %s", EV_DEAD), 0, "dead entries left after the replay");
    for (int64_t until = now_mono_ms() + PJF_WAIT_MS;
         now_mono_ms() < until && pjf_metric(&R, 0, "tally_projector_duplicates_total") < n;)
        tclock_sleep_ms(50);
    cr_expect_eq(pjf_metric(&R, 0, "tally_projector_duplicates_total"), (double)n,
                 "the replayed copies were not all dropped as duplicates");
    pjf_expect_model(&R);
    cr_expect_eq(num("HLEN %s", tenant_key("parked")), 0, "complaint marked parked again");
}

/* Usage errors exit 2 and change nothing; a Redis that does not answer exits 1. */
Test(dlq, usage_errors_exit_2_and_a_redis_down_exits_1)
{
    char *out;
    cr_expect_eq(tally_dlq(&out, "show", "--complaint", "3", NULL), 2, "%s", out);
    cr_expect(strstr(out, "--complaint needs --tenant"), "%s", out);
    free(out);
    cr_expect_eq(tally_dlq(&out, "show", "--id", "not-an-id", NULL), 2, "%s", out);
    free(out);
    cr_expect_eq(tally_dlq(&out, "drop", "--id", "1-0", "--reason", "", NULL), 2, "%s", out);
    free(out);
    cr_expect_eq(tally_dlq(&out, "show", "--id", "1-0", NULL), 1, "no such entry: %s", out);
    free(out);
    cr_expect_eq(tally_dlq(&out, "list", "--redis-url", "redis://127.0.0.1:1/0", NULL), 1, "%s",
                 out);
    cr_expect(strstr(out, "Redis:"), "%s", out);
    free(out);
    cr_expect_eq(tally_dlq(&out, "list", NULL), 0, "%s", out);
    cr_expect(strstr(out, "dlq: no dead entries"), "%s", out);
    free(out);
}

/*
 * A complaint whose lowest dead version has no event bytes (nothing to replay it from): its
 * later versions would only be parked again behind the gap, so the replay leaves the whole
 * complaint alone, marked, and says why (no projector runs: nothing is applied).
 */
Test(dlq, a_complaint_with_an_entry_without_bytes_is_left_alone_and_marked)
{
    char *out, id[24];
    pjf_generate(&R, 23, 1, 600, 120);
    int64_t c = complaint_of(3);
    const ev_event *v3 = &R.hist.v[ev_find(&R.hist, c, 3)];
    snprintf(id, sizeof(id), "%lld", (long long)c);
    const char *t = R.hist.tenants[0];
    freeReplyObject(redisCommand(R.rc, "XADD %s * reason gap tenant %s complaint %s version 2",
                                 EV_DEAD, t, id));
    freeReplyObject(redisCommand(R.rc,
                                 "XADD %s * e %b reason behind tenant %s complaint %s "
                                 "version 3",
                                 EV_DEAD, v3->bytes, v3->len, t, id));
    freeReplyObject(redisCommand(R.rc, "HSET %s %s gap", tenant_key("parked"), id));

    cr_assert_eq(tally_dlq(&out, "replay", NULL), 0, "replay failed:\n%s", out);
    cr_expect(strstr(out, "nothing to replay") && strstr(out, "1 complaint left alone") &&
                  strstr(out, "no event bytes") && !strstr(out, "without a valid tenant"),
              "replay said:\n%s", out);
    free(out);
    cr_expect_eq(num("EXISTS %s", EV_STREAM), 0, "replay put events back");
    cr_expect_eq(num("XLEN %s", EV_DEAD), 2, "replay removed dead entries");
    redisReply *r = redisCommand(R.rc, "HEXISTS %s %s", tenant_key("parked"), id);
    cr_expect(r && r->integer == 1, "the complaint is no longer marked parked");
    freeReplyObject(r);
}

/*
 * list --tenant with many marks and no dead entries (read with HSCAN in pages): each of the
 * 3,000 is listed once, in complaint order, and counted in the summary.
 */
Test(dlq, list_shows_every_one_of_many_marks_once_in_order)
{
    enum { MARKS = 3000 };
    char *out;
    const char *t = "acme";
    for (int k = 1; k <= MARKS; k++)
        redisAppendCommand(R.rc, "HSET {t:%s}:parked %d gap", t, k);
    for (int k = 1; k <= MARKS; k++) {
        redisReply *r = NULL;
        cr_assert_eq(redisGetReply(R.rc, (void **)&r), REDIS_OK);
        freeReplyObject(r);
    }
    cr_assert_eq(tally_dlq(&out, "list", "--tenant", t, "--json", NULL), 0, "list failed");
    const char *at = out;
    for (int k = 1; k <= MARKS; k++) {
        char want[64];
        snprintf(want, sizeof(want), "\"complaint\":%d,\"marked\":true", k);
        const char *next = strstr(at, want);
        cr_assert(next, "mark %d is not listed after mark %d", k, k - 1);
        at = next + strlen(want);
    }
    cr_expect(strstr(out, "\"marked_without_entries\":3000,"), "the summary does not count them");
    free(out);
}

/* A line too long to build (a reason of more than 1 MiB) is an error exit, not a silent gap. */
Test(dlq, a_line_too_long_to_print_is_an_error_exit)
{
    char *out;
    size_t n = (1u << 20) + 16;
    char *reason = malloc(n + 1);
    memset(reason, 'r', n);
    reason[n] = '\0';
    freeReplyObject(redisCommand(R.rc, "XADD %s * reason %s tenant acme complaint 7 version 2",
                                 EV_DEAD, reason));
    free(reason);
    cr_expect_eq(tally_dlq(&out, "list", NULL), 1, "list of a line it could not build");
    free(out);
    cr_expect_eq(tally_dlq(&out, "show", "--tenant", "acme", "--complaint", "7", NULL), 1,
                 "show of a line it could not build");
    free(out);
}

/*
 * The projector's side of a race, played while tally's XDEL (after its second read) is held
 * by the proxy: the dead entry that the projector adds when its HSETNX of the mark came before
 * replay's HDEL and its XADD to the dead stream after replay's second read.
 */
typedef struct late_park {
    proxy px;
    const ev_event *what;
    const char *tenant, *complaint;
    pthread_t th;
} late_park;

static void *late_park_run(void *arg)
{
    late_park *lp = arg;
    for (int64_t until = now_mono_ms() + 20000; now_mono_ms() < until && !proxy_held(&lp->px);)
        tclock_sleep_ms(5);
    redisContext *rc = redisConnect("127.0.0.1", R.redis.port);
    freeReplyObject(redisCommand(
        rc, "XADD %s * e %b reason behind tenant %s complaint %s version %lld", EV_DEAD,
        lp->what->bytes, lp->what->len, lp->tenant, lp->complaint, (long long)lp->what->version));
    redisFree(rc);
    return NULL;
}

/*
 * The projector parks v3 of a complaint during its replay, its mark set before the replay's
 * HDEL and its dead entry added after the replay's second read (late_park): the
 * replay marks the complaint again, so that freshness keeps counting it.
 */
Test(dlq, a_park_during_the_replay_leaves_the_complaint_marked)
{
    char *out, id[24], url[64];
    pjf_generate(&R, 24, 1, 600, 120);
    int64_t c = complaint_of(3);
    const ev_event *v2 = &R.hist.v[ev_find(&R.hist, c, 2)];
    late_park lp = { .what = &R.hist.v[ev_find(&R.hist, c, 3)],
                     .tenant = R.hist.tenants[0],
                     .complaint = id };
    snprintf(id, sizeof(id), "%lld", (long long)c);
    freeReplyObject(redisCommand(R.rc, "XADD %s * e %b reason gap tenant %s complaint %s version 2",
                                 EV_DEAD, v2->bytes, v2->len, lp.tenant, id));
    freeReplyObject(redisCommand(R.rc, "HSET %s %s gap", tenant_key("parked"), id));
    proxy_start(&lp.px, "127.0.0.1", R.redis.port);
    proxy_hold(&lp.px, "XDEL", 1000);
    cr_assert_eq(pthread_create(&lp.th, NULL, late_park_run, &lp), 0);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", lp.px.port);

    cr_assert_eq(tally_dlq(&out, "replay", "--redis-url", url, NULL), 0, "replay failed:\n%s", out);
    pthread_join(lp.th, NULL);
    proxy_stop(&lp.px);
    cr_expect(strstr(out, "1 complaint marked parked again"), "replay said:\n%s", out);
    free(out);
    cr_expect_eq(num("XLEN %s", EV_STREAM), 1, "v2 is not back on the stream");
    cr_expect_eq(num("XLEN %s", EV_DEAD), 1, "v3 is not left dead");
    redisReply *r = redisCommand(R.rc, "HGET %s %s", tenant_key("parked"), id);
    cr_expect(r && r->type == REDIS_REPLY_STRING &&
                  strcmp(r->str, "dead entries left after a replay") == 0,
              "the complaint with a dead entry left is not marked parked");
    freeReplyObject(r);
}
