/*
 * query-svc's freshness logic, from canned Redis replies: the completeness watermark is the
 * lowest over tally:wm's partitions and unknown when any of them cannot be read; lags are never
 * negative; an unknown watermark never reads as "0 s ago"; parked complaints are counted and
 * either rebuild marker makes the reply say rebuilding.
 */
#include "fresh.h"

#include <criterion/criterion.h>
#include <string.h>

#define NOW 1795416514576LL

/* A string reply, as hiredis makes them (str is borrowed from the test). */
static redisReply str(char *s)
{
    redisReply r = { .type = REDIS_REPLY_STRING };
    r.str = s;
    r.len = strlen(s);
    return r;
}

/* The watermark of an HVALS reply holding values v[0..n). */
static int64_t wm_of(char **v, size_t n)
{
    redisReply el[8], *els[8];
    redisReply arr = { .type = REDIS_REPLY_ARRAY, .elements = n, .element = els };
    cr_assert_leq(n, 8);
    for (size_t i = 0; i < n; i++) {
        el[i] = str(v[i]);
        els[i] = &el[i];
    }
    return fresh_watermark(&arr);
}

Test(fresh, the_watermark_is_the_lowest_partition)
{
    char *one[] = { "1795416514000" };
    char *three[] = { "1795416514000", "1795416500000", "1795416513999" };
    cr_expect_eq(wm_of(one, 1), 1795416514000LL);
    cr_expect_eq(wm_of(three, 3), 1795416500000LL);
    char *big[] = { "9223372036854775807", "1" };
    cr_expect_eq(wm_of(big, 2), 1);
}

Test(fresh, a_partition_that_cannot_be_read_makes_the_watermark_unknown)
{
    char *junk[][2] = {
        { "1795416514000", "" },
        { "1795416514000", "0" },
        { "1795416514000", "-5" },
        { "1795416514000", "12x" },
        { "1795416514000", " 7" },
        { "1795416514000", "+7" },
        { "99999999999999999999", "1795416514000" }, /* out of range */
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        cr_expect_eq(wm_of(junk[i], 2), 0, "values \"%s\", \"%s\"", junk[i][0], junk[i][1]);
    /* no hash at all (HVALS of a missing key is an empty array), no reply, a nil, an integer */
    cr_expect_eq(wm_of(NULL, 0), 0);
    cr_expect_eq(fresh_watermark(NULL), 0);
    redisReply nil = { .type = REDIS_REPLY_NIL },
               num = { .type = REDIS_REPLY_INTEGER, .integer = 5 };
    cr_expect_eq(fresh_watermark(&nil), 0);
    cr_expect_eq(fresh_watermark(&num), 0);
    redisReply wrong = { .type = REDIS_REPLY_ERROR, .str = "WRONGTYPE Operation against a key" };
    cr_expect_eq(fresh_watermark(&wrong), 0, "tally:wm of the wrong type");
    redisReply *els[] = { &num };
    redisReply arr = { .type = REDIS_REPLY_ARRAY, .elements = 1, .element = els };
    cr_expect_eq(fresh_watermark(&arr), 0, "an integer element is not a watermark");
}

static Tally__V1__Freshness fill(const fresh_seen *s)
{
    static Tally__V1__RebuildProgress rp;
    rp = (Tally__V1__RebuildProgress)TALLY__V1__REBUILD_PROGRESS__INIT;
    Tally__V1__Freshness f = TALLY__V1__FRESHNESS__INIT;
    fresh_fill(&f, &rp, s);
    return f;
}

Test(fresh, an_idle_complete_tenant_has_a_small_completeness_lag)
{
    fresh_seen s = { .now_ms = NOW,
                     .as_of_ms = NOW - 3600000,
                     .applied_ms = NOW - 3599000,
                     .events = 42,
                     .watermark_ms = NOW - 800 };
    Tally__V1__Freshness f = fill(&s);
    cr_expect_eq(f.server_time_ms, NOW);
    cr_expect_eq(f.as_of_ms, NOW - 3600000);
    cr_expect_eq(f.lag_ms, 3600000);
    cr_expect_eq(f.apply_lag_ms, 3599000);
    cr_expect_eq(f.events_applied, 42);
    cr_expect_eq(f.complete_until_ms, NOW - 800);
    cr_expect_eq(f.complete_lag_ms, 800);
    cr_expect_eq(f.parked_complaints, 0);
    cr_expect_not(f.rebuilding);
    cr_expect_not(f.stale);
    cr_expect_eq(f.token_applied_version, 0);
}

Test(fresh, an_unknown_watermark_never_reads_as_0_s_ago)
{
    fresh_seen s = { .now_ms = NOW, .as_of_ms = NOW, .applied_ms = NOW, .events = 3 };
    Tally__V1__Freshness f = fill(&s);
    cr_expect_eq(f.complete_until_ms, 0);
    cr_expect_eq(f.complete_lag_ms, NOW, "complete since the epoch only");
    cr_expect_eq(f.lag_ms, 0, "the newest event is this instant's");
    s.watermark_ms = -5;
    f = fill(&s);
    cr_expect_eq(f.complete_until_ms, 0);
    cr_expect_eq(f.complete_lag_ms, NOW);
}

Test(fresh, lags_are_never_negative_whatever_the_clock_skew)
{
    /* The projector's clock ahead of query-svc's. */
    fresh_seen s = {
        .now_ms = NOW, .as_of_ms = NOW + 5000, .applied_ms = NOW + 5000, .watermark_ms = NOW + 5000
    };
    Tally__V1__Freshness f = fill(&s);
    cr_expect_eq(f.lag_ms, 0);
    cr_expect_eq(f.apply_lag_ms, 0);
    cr_expect_eq(f.complete_until_ms, NOW + 5000);
    cr_expect_eq(f.complete_lag_ms, 0);
    /* Nothing applied yet: as before, 0 lags with 0 times. */
    s = (fresh_seen){ .now_ms = NOW, .watermark_ms = NOW - 10 };
    f = fill(&s);
    cr_expect_eq(f.as_of_ms, 0);
    cr_expect_eq(f.lag_ms, 0);
    cr_expect_eq(f.apply_lag_ms, 0);
    cr_expect_eq(f.complete_lag_ms, 10);
}

Test(fresh, parked_complaints_and_either_rebuild_marker)
{
    fresh_seen s = { .now_ms = NOW, .watermark_ms = NOW - 1, .parked = 7 };
    Tally__V1__Freshness f = fill(&s);
    cr_expect_eq(f.parked_complaints, 7);
    cr_expect_not(f.rebuilding);
    s.rebuild = true;
    cr_expect(fill(&s).rebuilding, "{t:T}:rebuild");
    s.rebuild = false;
    s.repair = true;
    cr_expect(fill(&s).rebuilding, "tally:repair");
    s.watermark_ms = s.now_ms - 1000;
    cr_expect_eq(fill(&s).complete_until_ms, 0, "a repair: nothing is known complete");
    s.parked = -1;
    cr_expect_eq(fill(&s).parked_complaints, 0);
}

Test(fresh, a_rebuild_gives_its_progress_and_an_eta)
{
    fresh_seen s = { .now_ms = NOW, .watermark_ms = NOW - 1 };
    cr_expect_null(fill(&s).rebuild, "no rebuild, no progress");
    s.repair = true;
    cr_expect_null(fill(&s).rebuild, "a repair has no per-tenant progress");
    s.repair = false;
    s.rebuild = true;
    Tally__V1__Freshness f = fill(&s);
    cr_assert_not_null(f.rebuild, "a rebuild that has recorded nothing yet");
    cr_expect_eq(f.rebuild->eta_ms, -1, "no rate yet: the ETA is unknown");
    cr_expect_str_eq(f.rebuild->phase, "reading");
    s.rb_done = 250000;
    s.rb_total = 1000000;
    s.rb_rate = 150000;
    s.rb_phase = "gaps";
    s.rb_started_ms = NOW - 2000;
    f = fill(&s);
    cr_expect_eq(f.rebuild->events_done, 250000);
    cr_expect_eq(f.rebuild->events_total, 1000000);
    cr_expect_eq(f.rebuild->events_per_second, 150000);
    cr_expect_eq(f.rebuild->eta_ms, 5000, "750,000 events left at 150,000/s");
    cr_expect_str_eq(f.rebuild->phase, "gaps");
    cr_expect_eq(f.rebuild->started_ms, NOW - 2000);
    s.rb_done = 1000007; /* live events counted on top of the total */
    cr_expect_eq(fill(&s).rebuild->eta_ms, 0, "never negative");
    s.rb_rate = -5;
    cr_expect_eq(fill(&s).rebuild->eta_ms, -1, "a bad rate is unknown, not an ETA");
    cr_expect_eq(fill(&s).complete_until_ms, NOW - 1, "the old generation still gets events");
    s.rb_frozen = true;
    cr_expect_eq(fill(&s).complete_until_ms, NOW - 2000,
                 "a newer view's rebuild: the old generation is complete up to its start only");
    cr_expect_eq(fill(&s).complete_lag_ms, 2000);
    s.rb_started_ms = 0;
    cr_expect_eq(fill(&s).complete_until_ms, 0, "an unknown start: unknown");
}
