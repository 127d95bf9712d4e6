/*
 * The projector against a real Redis: the read model it builds from recorded event histories
 * must equal, key by key, the model calculated independently from docs/keyspace.md
 * (tests/support/ev_model.c), whatever the delivery: in order, every event twice, batches
 * replayed, events of a complaint out of order, two projectors in one group. Poison events and
 * gaps that never fill are parked with their complaint's later events while the other
 * complaints' counters stay exact; SIGTERM finishes the batch, acks and exits 0.
 *
 * Each test starts a redis-server of its own (no persistence) on a free loopback port and the
 * real projector binary against it, so tests are isolated from each other and from the stack.
 */
#include "pjfix.h"
#include "tclock.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS PJF_WAIT_MS

static pjf_rig R;

static void init(void)
{
    pjf_redis_start(&R, NULL);
}

static void fini(void)
{
    pjf_release(&R);
}

TestSuite(projector, .init = init, .fini = fini, .timeout = 90);

/* ---- helpers ------------------------------------------------------------------------------- */

/* Runs projector i against our Redis (proc_start_projector). */
static void start(int i, const char *const *env)
{
    pjf_start(&R, i, 0, env);
}

static void generate(uint64_t seed, int tenants, size_t events)
{
    pjf_generate(&R, seed, tenants, events, 240);
}

/* XADDs order[from..to) of hist. */
static void add_range(const size_t *order, size_t from, size_t to)
{
    pjf_add_range(&R, order, from, to);
}

/* XADDs the whole history in the given order; returns the number of entries. */
static size_t add(enum ev_order how, uint64_t seed)
{
    size_t n;
    size_t *order = pjf_order(&R, how, seed, &n);
    add_range(order, 0, n);
    return n;
}

static void add_event(const ev_event *e)
{
    redisReply *r = redisCommand(R.rc, "XADD %s * e %b", EV_STREAM, e->bytes, e->len);
    cr_assert(r && r->type == REDIS_REPLY_STRING, "XADD failed");
    freeReplyObject(r);
}

/*
 * Waits until the model's event counts are reached and the group is idle, then compares.
 * superseded: several projectors ran (see ev_model_allow_superseded).
 */
static void expect_model_of(const bool *skip, bool superseded)
{
    ev_model_free(R.model);
    R.model = ev_model_new(&R.hist, skip);
    if (superseded)
        ev_model_allow_superseded(R.model);
    pjf_expect_model(&R);
}

static void expect_model(const bool *skip)
{
    expect_model_of(skip, false);
}

static long long events_short(void)
{
    return pjf_events_short(&R);
}

static double metric(int i, const char *name)
{
    return pjf_metric(&R, i, name);
}

static long long xpending(void)
{
    return pjf_xpending(&R, NULL);
}

static long long xlen(const char *stream)
{
    return pjf_xlen(&R, stream);
}

/* A string reply as a malloc'd string ("" for nil). */
static char *get_str(const char *fmt, const char *a, const char *b)
{
    redisReply *r = redisCommand(R.rc, fmt, a, b);
    cr_assert(r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL), "%s failed", fmt);
    char *s = strdup(r->type == REDIS_REPLY_STRING ? r->str : "");
    freeReplyObject(r);
    return s;
}

static void expect_version(const char *tenant, int64_t complaint, const char *want)
{
    char key[96], id[24];
    snprintf(key, sizeof(key), "{t:%s}:1:cv", tenant);
    snprintf(id, sizeof(id), "%lld", (long long)complaint);
    char *v = get_str("HGET %s %s", key, id);
    cr_expect_str_eq(v, want, "complaint %s of %s is at version \"%s\", expected %s", id, tenant, v,
                     want);
    free(v);
}

/* A complaint of tenant 0 with at least n events, the first from index from on. */
static int64_t complaint_with(size_t n, size_t from)
{
    for (size_t i = from; i < R.hist.n; i++) {
        const ev_event *e = &R.hist.v[i];
        if (e->version == 1 && strcmp(e->tenant_id, R.hist.tenants[0]) == 0 &&
            ev_find(&R.hist, e->complaint, (int64_t)n) >= 0)
            return e->complaint;
    }
    cr_assert_fail("no complaint with %zu events", n);
    return 0;
}

/* skip[] for every event of complaint c from version v on; returns how many. */
static size_t skip_from(bool *skip, int64_t c, int64_t v)
{
    size_t n = 0;
    for (size_t i = 0; i < R.hist.n; i++)
        if (R.hist.v[i].complaint == c && R.hist.v[i].version >= v) {
            skip[i] = true;
            n++;
        }
    return n;
}

/*
 * Waits until the dead-letter stream has n entries and the group is idle (or idle for 1 s);
 * returns how many entries it has.
 */
static long long wait_parked(long long n)
{
    int64_t idle_since = 0;
    for (int64_t until = now_mono_ms() + WAIT_MS; now_mono_ms() < until; tclock_sleep_ms(50)) {
        pjf_check_alive(&R);
        bool idle = ev_group_idle(R.rc, EV_STREAM);
        if (idle && xlen(EV_DEAD) >= n)
            break;
        idle_since = idle ? (idle_since ? idle_since : now_mono_ms()) : 0;
        if (idle_since && now_mono_ms() - idle_since > 1000)
            break; /* everything read and acked: nothing more will be parked */
    }
    cr_expect(ev_group_idle(R.rc, EV_STREAM), "the group never read everything and acked");
    return xlen(EV_DEAD);
}

/* Field name of dead-letter entry i (0 = oldest), malloc'd ("" when absent). */
static char *dead_field(long long i, const char *name, size_t *len)
{
    redisReply *r = redisCommand(R.rc, "XRANGE %s - +", EV_DEAD);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY && (size_t)i < r->elements);
    const redisReply *f = r->element[i]->element[1];
    char *out = NULL;
    for (size_t k = 0; k + 1 < f->elements && !out; k += 2)
        if (strcmp(f->element[k]->str, name) == 0) {
            out = malloc(f->element[k + 1]->len + 1);
            memcpy(out, f->element[k + 1]->str, f->element[k + 1]->len + 1);
            if (len)
                *len = f->element[k + 1]->len;
        }
    freeReplyObject(r);
    if (!out && len)
        *len = 0;
    return out ? out : strdup("");
}

/* The dead entry of complaint c version v (tenant and complaint fields filled), or -1. */
static long long dead_index(int64_t c, int64_t v)
{
    long long n = xlen(EV_DEAD);
    char id[24], ver[24];
    snprintf(id, sizeof(id), "%lld", (long long)c);
    snprintf(ver, sizeof(ver), "%lld", (long long)v);
    for (long long i = 0; i < n; i++) {
        char *fc = dead_field(i, "complaint", NULL), *fv = dead_field(i, "version", NULL);
        bool hit = strcmp(fc, id) == 0 && strcmp(fv, ver) == 0;
        free(fc);
        free(fv);
        if (hit)
            return i;
    }
    return -1;
}

/* {t:tenant}:parked's reason for complaint c ("" when it is not there). */
static char *parked_reason(const char *tenant, int64_t c)
{
    char key[96], id[24];
    snprintf(key, sizeof(key), "{t:%s}:parked", tenant);
    snprintf(id, sizeof(id), "%lld", (long long)c);
    return get_str("HGET %s %s", key, id);
}

/* The dead entry i's original entry (field id) holds exactly its e bytes. */
static void expect_dead_entry_intact(long long i)
{
    size_t elen, olen = 0;
    char *e = dead_field(i, "e", &elen), *id = dead_field(i, "id", NULL);
    char *reason = dead_field(i, "reason", NULL);
    cr_expect_neq(reason[0], '\0', "dead entry %lld has no reason", i);
    redisReply *r = redisCommand(R.rc, "XRANGE %s %s %s", EV_STREAM, id, id);
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    cr_expect_eq(r->elements, 1, "dead entry %lld: id \"%s\" names no entry of the stream", i, id);
    if (r->elements == 1) {
        const redisReply *f = r->element[0]->element[1];
        olen = f->element[1]->len;
        cr_expect(olen == elen && memcmp(f->element[1]->str, e, elen) == 0,
                  "dead entry %lld: its e is not the original entry's", i);
    }
    freeReplyObject(r);
    free(e);
    free(id);
    free(reason);
}

/* Each stream entry is parked once: no two dead entries name the same original id. */
static void expect_dead_ids_unique(void)
{
    long long n = xlen(EV_DEAD);
    for (long long i = 0; i < n; i++) {
        char *a = dead_field(i, "id", NULL);
        for (long long j = i + 1; j < n; j++) {
            char *b = dead_field(j, "id", NULL);
            cr_expect_str_neq(a, b, "entry %s is parked twice (dead entries %lld and %lld)", a, i,
                              j);
            free(b);
        }
        free(a);
    }
}

/* ---- (1) a recorded sequence gives the calculated model ----------------------------------- */

Test(projector, five_thousand_events_of_three_tenants_give_the_calculated_model)
{
    size_t n;
    generate(1, 3, 5000);
    size_t *order = pjf_order(&R, EV_IN_ORDER, 0, &n);
    add_range(order, 0, n / 2); /* a backlog, then live traffic */
    start(0, NULL);
    add_range(order, n / 2, n);
    expect_model(NULL);
    cr_expect_eq(metric(0, "tally_projector_events_applied_total"), (double)R.hist.n);
    cr_expect_eq(metric(0, "tally_projector_duplicates_total"), 0);
    cr_expect_eq(metric(0, "tally_projector_parked_total"), 0);
    cr_expect_eq(xlen(EV_DEAD), 0);
    /* The model above came (mostly) from writes the projector counted itself (plan.h). */
    cr_expect_gt(metric(0, "tally_projector_merged_writes_total"), 0, "nothing was merged");
}

Test(projector, metrics_name_every_series_the_issue_asks_for)
{
    static const char *const series[] = {
        "tally_projector_events_applied_total", "tally_projector_duplicates_total",
        "tally_projector_gaps_total",           "tally_projector_parked_total",
        "tally_projector_batch_seconds_count",  "tally_projector_lag_seconds_count",
        "tally_projector_stream_pending",
    };
    static char body[1 << 20];
    generate(11, 1, 200);
    start(0, NULL);
    add(EV_IN_ORDER, 0);
    expect_model(NULL);
    for (size_t i = 0; i < sizeof(series) / sizeof(series[0]); i++)
        cr_expect_geq(metric(0, series[i]), 0, "/metrics has no %s", series[i]);
    cr_expect_gt(metric(0, "tally_projector_lag_seconds_count"), 0, "no lag observed");
    cr_assert_eq(proc_http_get(R.pj[0].http_port, "/metrics", body, sizeof(body)), 200);
    /* The issue: "a heartbeat (last loop time), so liveness does not depend on traffic". */
    bool beat = false;
    for (const char *l = body; *l; l += strcspn(l, "\n"), l += *l == '\n') {
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(l, " {\n"), l);
        beat |= strncmp(name, "tally_projector_", 16) == 0 &&
                (strstr(name, "heartbeat") || strstr(name, "last_loop"));
    }
    cr_expect(beat, "/metrics has no tally_projector_* heartbeat series (last loop time)");
}

/* ---- (2) duplicates ------------------------------------------------------------------------ */

Test(projector, every_event_twice_and_a_replayed_batch_change_no_counter)
{
    generate(2, 3, 3000);
    start(0, NULL);
    size_t sent = add(EV_TWICE, 2);
    expect_model(NULL);
    cr_expect_eq(metric(0, "tally_projector_duplicates_total"), (double)(sent - R.hist.n));
    cr_expect_eq(metric(0, "tally_projector_events_applied_total"), (double)R.hist.n);
    /* A batch replayed: the relay republishing after a crash, the first 500 events again. */
    size_t n, *order = pjf_order(&R, EV_IN_ORDER, 0, &n);
    add_range(order, 0, 500);
    add_range(order, 1500, 1800);
    expect_model(NULL);
    cr_expect_eq(metric(0, "tally_projector_duplicates_total"), (double)(sent - R.hist.n + 800));
    cr_expect_eq(metric(0, "tally_projector_events_applied_total"), (double)R.hist.n);
    cr_expect_eq(xlen(EV_DEAD), 0);
    /* A merged write of replayed events is refused whole, and they go one by one. */
    cr_expect_gt(metric(0, "tally_projector_merge_fallbacks_total"), 0, "no merged write refused");
}

/* ---- (3) out of order ---------------------------------------------------------------------- */

Test(projector, reordered_versions_are_applied_in_order_and_once)
{
    const char *env[] = { "TALLY_PROJECTOR_BATCH=64", NULL };
    generate(3, 3, 3000);
    start(0, env);
    add(EV_REORDERED, 3);
    expect_model(NULL);
    /* A later version applied first would have made its predecessor a "duplicate". */
    cr_expect_eq(metric(0, "tally_projector_duplicates_total"), 0);
    cr_expect_eq(metric(0, "tally_projector_events_applied_total"), (double)R.hist.n);
    cr_expect_gt(metric(0, "tally_projector_gaps_total"), 0, "no gap was ever seen: no reorder");
    cr_expect_eq(xlen(EV_DEAD), 0);
}

Test(projector, a_later_version_waits_for_the_missing_one)
{
    generate(4, 2, 600);
    int64_t c = complaint_with(4, 0);
    long v2 = ev_find(&R.hist, c, 2);
    bool *skip = pjf_new_skip(&R);
    skip_from(skip, c, 2);
    size_t n, *order = pjf_order(&R, EV_IN_ORDER, 0, &n);
    for (size_t i = 0; i < n; i++)
        if ((long)order[i] != v2)
            add_range(order, i, i + 1);
    start(0, NULL);
    for (int64_t until = now_mono_ms() + WAIT_MS; now_mono_ms() < until; tclock_sleep_ms(50))
        if (metric(0, "tally_projector_gaps_total") >= 6)
            break; /* v3 and later refused at least twice each */
    cr_assert_geq(metric(0, "tally_projector_gaps_total"), 6);
    expect_version(R.hist.tenants[0], c, "1");
    ev_model *without = ev_model_new(&R.hist, skip);
    char diff[1024];
    cr_expect_eq(ev_model_check_all(R.rc, without, diff, sizeof(diff)), 0, "before v2: %s", diff);
    ev_model_free(without);
    add_event(&R.hist.v[v2]); /* v2 arrives at last */
    expect_model(NULL);
    cr_expect_eq(metric(0, "tally_projector_duplicates_total"), 0);
    cr_expect_eq(xlen(EV_DEAD), 0);
}

/* ---- (4) two projectors in one group ------------------------------------------------------- */

Test(projector, two_projectors_over_100000_events_give_the_calculated_model, .timeout = 150)
{
    const char *env1[] = { "TALLY_PROJECTOR_CONSUMER=p1", NULL };
    const char *env2[] = { "TALLY_PROJECTOR_CONSUMER=p2", NULL };
    generate(5, 3, 100000);
    size_t n, *order = pjf_order(&R, EV_IN_ORDER, 0, &n);
    add_range(order, 0, n / 2);
    start(0, env1);
    start(1, env2);
    add_range(order, n / 2, n);
    expect_model_of(NULL, true);
    double a = metric(0, "tally_projector_events_applied_total");
    double b = metric(1, "tally_projector_events_applied_total");
    double dups = metric(0, "tally_projector_duplicates_total") +
                  metric(1, "tally_projector_duplicates_total");
    /* Only renames overtaken by a newer one of the same entity may be skipped. */
    cr_expect_eq(dups, (double)events_short(), "%.0f duplicates, %lld events short", dups,
                 events_short());
    cr_expect_eq(a + b + dups, (double)R.hist.n, "applied %.0f + %.0f of %zu", a, b, R.hist.n);
    cr_expect(a > 0 && b > 0, "one projector did all the work (%.0f, %.0f)", a, b);
    cr_expect_eq(
        metric(0, "tally_projector_parked_total") + metric(1, "tally_projector_parked_total"), 0);
    cr_expect_eq(xlen(EV_DEAD), 0);
}

/* The same 100,000 events through one projector: the same model (equal to the calculation). */
Test(projector, one_projector_over_the_same_100000_events_gives_the_same_model, .timeout = 150)
{
    generate(5, 3, 100000);
    add(EV_IN_ORDER, 0);
    start(0, NULL);
    expect_model(NULL);
    cr_expect_eq(metric(0, "tally_projector_events_applied_total"), (double)R.hist.n);
    cr_expect_eq(metric(0, "tally_projector_duplicates_total"), 0);
}

/* ---- (5) poison ---------------------------------------------------------------------------- */

/*
 * Short gap waits (a gap may also wait for a dead consumer's batch to be reclaimed, so the
 * claim idle time is short too) and few attempts.
 */
static const char *const poison_env[] = { "TALLY_PROJECTOR_GAP_TIMEOUT_MS=500",
                                          "TALLY_PROJECTOR_CLAIM_IDLE_MS=1000",
                                          "TALLY_PROJECTOR_BLOCK_MS=100",
                                          "TALLY_PROJECTOR_MAX_ATTEMPTS=2", NULL };

/*
 * Replaces the event of complaint c with version v by bad (bytes, or NULL to re-pack the
 * altered event), sends everything, and checks what must hold: the bad event and every later
 * event of c parked, c in {t:T}:parked, c frozen at v - 1, every other counter exact.
 */
static long long run_poison(int64_t c, int64_t v, const void *bad, size_t badlen)
{
    bool *skip = pjf_new_skip(&R);
    long i = ev_find(&R.hist, c, v);
    cr_assert(skip && i >= 0);
    size_t later = skip_from(skip, c, v);
    if (bad) {
        free(R.hist.v[i].bytes);
        R.hist.v[i].bytes = malloc(badlen);
        memcpy(R.hist.v[i].bytes, bad, badlen);
        R.hist.v[i].len = badlen;
    } else {
        cr_assert_eq(ev_pack(&R.hist.v[i]), 0);
    }
    start(0, poison_env);
    add(EV_IN_ORDER, 0);
    long long parked = wait_parked((long long)later);
    expect_dead_ids_unique();
    expect_model(skip);
    cr_expect_eq(parked, (long long)later, "%lld entries parked, expected %zu", parked, later);
    char want[24];
    snprintf(want, sizeof(want), "%lld", (long long)v - 1);
    expect_version(R.hist.tenants[0], c, want);
    char *reason = parked_reason(R.hist.tenants[0], c);
    cr_expect_neq(reason[0], '\0', "{t:%s}:parked does not list complaint %lld", R.hist.tenants[0],
                  (long long)c);
    free(reason);
    for (long long k = 0; k < parked; k++)
        expect_dead_entry_intact(k);
    cr_expect_eq(metric(0, "tally_projector_parked_total"), (double)later);
    return (long long)later;
}

Test(projector, undecodable_bytes_are_parked_with_the_complaints_later_events)
{
    static const uint8_t garbage[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
    generate(6, 2, 1500);
    int64_t c = complaint_with(4, 0);
    run_poison(c, 2, garbage, sizeof(garbage));
    for (int64_t v = 3; ev_find(&R.hist, c, v) >= 0; v++)
        cr_expect_geq(dead_index(c, v), 0, "version %lld of %lld was not parked", (long long)v,
                      (long long)c);
}

/* Decodable but refused (priority 9): its own reason, and its complaint parked at once. */
Test(projector, a_refused_event_parks_its_complaint_with_its_reason)
{
    generate(7, 2, 1500);
    int64_t c = complaint_with(4, 0);
    R.hist.v[ev_find(&R.hist, c, 2)].priority = 9;
    run_poison(c, 2, NULL, 0);
    long long d = dead_index(c, 2);
    cr_expect_geq(d, 0, "the dead entry of the refused event lacks tenant/complaint/version");
    char *reason = dead_field(d >= 0 ? d : 0, "reason", NULL);
    cr_expect(strstr(reason, "priority"), "dead entry's reason \"%s\" does not say priority",
              reason);
    free(reason);
    reason = parked_reason(R.hist.tenants[0], c);
    cr_expect(strstr(reason, "priority"),
              "{t:%s}:parked gives \"%s\" for %lld, not the first parked event's reason",
              R.hist.tenants[0], reason, (long long)c);
    free(reason);
}

Test(projector, events_of_a_bad_tenant_are_parked_and_write_nothing)
{
    generate(8, 2, 1500);
    start(0, poison_env);
    size_t n, *order = pjf_order(&R, EV_IN_ORDER, 0, &n);
    for (int v = 1; v <= 3; v++) {
        ev_event bad = R.hist.v[ev_find(&R.hist, complaint_with(3, 0), v)];
        bad.bytes = NULL;
        snprintf(bad.tenant_id, sizeof(bad.tenant_id), "evil}x");
        bad.complaint = 1000000;
        cr_assert_eq(ev_pack(&bad), 0);
        add_range(order, (size_t)(v - 1) * n / 3, (size_t)v * n / 3);
        add_event(&bad);
        free(bad.bytes);
    }
    cr_assert_eq(wait_parked(3), 3, "not the 3 events of the bad tenant parked");
    expect_model(NULL);
    for (long long k = 0; k < 3; k++) {
        char *reason = dead_field(k, "reason", NULL);
        cr_expect(strstr(reason, "tenant"), "dead entry %lld: reason \"%s\"", k, reason);
        free(reason);
        expect_dead_entry_intact(k);
    }
    redisReply *r = redisCommand(R.rc, "KEYS *evil*");
    cr_assert(r && r->type == REDIS_REPLY_ARRAY);
    cr_expect_eq(r->elements, 0, "a key of the bad tenant exists: %s",
                 r->elements ? r->element[0]->str : "");
    freeReplyObject(r);
}

/*
 * A resolution of 2e17 s: its sums would overflow Redis's integers (the projector may refuse
 * it when decoding or when applying). One tenant, so the poison shares its FCALL with the
 * whole batch, whose other events must be applied exactly.
 */
Test(projector, an_absurd_resolution_time_is_parked_and_the_batch_stays_exact)
{
    generate(9, 1, 2000);
    long p = -1;
    for (size_t i = 500; i < R.hist.n && p < 0; i++)
        if (R.hist.v[i].type == 3 && R.hist.v[i].to == 3 && R.hist.v[i].version >= 2 &&
            ev_find(&R.hist, R.hist.v[i].complaint, R.hist.v[i].version + 1) >= 0)
            p = (long)i;
    cr_assert_geq(p, 0);
    int64_t c = R.hist.v[p].complaint, v = R.hist.v[p].version;
    R.hist.v[p].resolution_s = 200000000000000000LL;
    run_poison(c, v, NULL, 0);
    long long d = dead_index(c, v);
    cr_expect_geq(d, 0, "version %lld of %lld was not parked", (long long)v, (long long)c);
    char *reason = dead_field(d >= 0 ? d : 0, "reason", NULL);
    cr_expect(strstr(reason, "resolution") || strstr(reason, "apply failed"), "reason \"%s\"",
              reason);
    free(reason);
}

/*
 * A damaged key ({t:acme}:1:lb:<M> holding a string) makes the apply of every resolution
 * credited to an agent in month M fail in Redis (WRONGTYPE), however often it is retried:
 * poison events, each to be parked after TALLY_PROJECTOR_MAX_ATTEMPTS with its complaint's
 * later events, while nothing else changes (a Redis function keeps what it wrote before an
 * error: the events sharing the failed FCALL must still be applied exactly once).
 */
Test(projector, events_whose_apply_keeps_failing_are_parked_and_nothing_else_changes)
{
    char M[8], key[EV_ID_MAX + 24];
    size_t skipped = 0;
    generate(13, 1, 2000);
    snprintf(M, sizeof(M), "%.7s", R.hist.v[R.hist.n / 2].day);
    bool *skip = pjf_new_skip(&R);
    for (size_t i = 0; i < R.hist.n; i++) {
        const ev_event *e = &R.hist.v[i];
        if (e->type == 3 && e->to == 3 && e->agent[0] && !strncmp(e->day, M, 7) && !skip[i])
            skipped += skip_from(skip, e->complaint, e->version);
    }
    snprintf(key, sizeof(key), "{t:%s}:1:lb:%s", R.hist.tenants[0], M);
    redisReply *r = redisCommand(R.rc, "SET %s damaged", key);
    cr_assert(r && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    start(0, poison_env);
    add(EV_IN_ORDER, 0);
    long long parked = wait_parked((long long)skipped);
    freeReplyObject(redisCommand(R.rc, "DEL %s", key)); /* the damage itself is no difference */
    cr_expect_gt(metric(0, "tally_projector_apply_failures_total"), 0);
    cr_expect_eq(parked, (long long)skipped, "%lld events parked, expected %zu", parked, skipped);
    expect_model(skip);
}

/* ---- (6) a gap that never fills ------------------------------------------------------------ */

Test(projector, a_gap_that_never_fills_is_parked_after_the_timeout)
{
    generate(10, 2, 1500);
    int64_t c = complaint_with(4, 0);
    long v2 = ev_find(&R.hist, c, 2);
    bool *skip = pjf_new_skip(&R);
    size_t later = skip_from(skip, c, 2) - 1; /* v3 and after */
    size_t n, *order = pjf_order(&R, EV_IN_ORDER, 0, &n);
    for (size_t i = 0; i < n; i++)
        if ((long)order[i] != v2)
            add_range(order, i, i + 1);
    start(0, poison_env);
    long long parked = wait_parked((long long)later);
    expect_dead_ids_unique();
    cr_assert_eq(parked, (long long)later, "not v3 and later parked");
    expect_model(skip);
    expect_version(R.hist.tenants[0], c, "1");
    long long d = dead_index(c, 3);
    cr_assert_geq(d, 0, "version 3 of %lld was not parked", (long long)c);
    char *reason = dead_field(d, "reason", NULL);
    cr_expect(strncmp(reason, "gap", 3) == 0, "reason \"%s\" does not start with gap", reason);
    free(reason);
    reason = parked_reason(R.hist.tenants[0], c);
    cr_expect_neq(reason[0], '\0', "{t:%s}:parked does not list %lld", R.hist.tenants[0],
                  (long long)c);
    free(reason);
    /* The missing version turns up late: parked behind, the complaint stays frozen. */
    add_event(&R.hist.v[v2]);
    cr_assert_eq(wait_parked((long long)later + 1), (long long)later + 1,
                 "the late version 2 was not parked");
    cr_expect_geq(dead_index(c, 2), 0, "the late version 2 was not parked behind");
    expect_version(R.hist.tenants[0], c, "1");
    expect_model(skip);
}

/* ---- (7) SIGTERM --------------------------------------------------------------------------- */

Test(projector, sigterm_finishes_the_batch_acks_and_exits_0)
{
    generate(12, 3, 30000);
    add(EV_IN_ORDER, 0);
    start(0, NULL);
    for (int64_t until = now_mono_ms() + WAIT_MS; now_mono_ms() < until; tclock_sleep_ms(5))
        if (metric(0, "tally_projector_events_applied_total") >= 3000)
            break;
    cr_assert_eq(proc_stop(&R.pj[0], SIGTERM, 15000), 0, "SIGTERM under load: not exit 0");
    cr_expect(proc_log_has(&R.pj[0], "projector stopped"));
    cr_expect_eq(xpending(), 0, "entries read and not acked after SIGTERM");
    proc_release(&R.pj[0]);
    R.pj_on[0] = false;
    start(0, NULL); /* nothing was lost: the rest is applied by the next one */
    expect_model(NULL);
    cr_assert_eq(proc_stop(&R.pj[0], SIGTERM, 15000), 0, "SIGTERM when idle: not exit 0");
    cr_expect_eq(xpending(), 0);
}
