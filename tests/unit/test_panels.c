/*
 * query-svc's panels without a Redis server. The pure parts: nearest-rank percentiles read from
 * the log-bucket histogram (within the stated relative error of the exact percentile), and agent
 * page tokens (bound to the range, sort and direction they were made for). Then each panel's
 * plan (the commands it appends: the keys and fields docs/keyspace.md names for a range, a
 * granularity and a filter) and its build (the message made from canned replies, answered as
 * Redis would from a small canned read model), as hiredis's test_reply_reader feeds its reader.
 */
#include "civil.h"
#include "hist.h"
#include "panels.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(hist, the_longest_kept_time_fits_the_buckets)
{
    cr_expect_lt(hist_bucket(HIST_MAX_SECONDS), HIST_BUCKETS);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The exact nearest-rank percentile of sorted v[0..n). */
static int64_t exact(const int64_t *v, size_t n, double p)
{
    size_t rank = (size_t)ceil(p / 100.0 * (double)n);
    return v[(rank ? rank : 1) - 1];
}

Test(percentile, is_within_the_relative_error_of_the_exact_nearest_rank)
{
    static int64_t buckets[HIST_BUCKETS];
    const double ps[] = { 1, 25, 50, 90, 99, 99.9, 100 };
    srand(7);
    for (int round = 0; round < 200; round++) {
        size_t n = 1 + (size_t)(rand() % 500);
        int64_t *v = malloc(n * sizeof(*v));
        memset(buckets, 0, sizeof(buckets));
        for (size_t i = 0; i < n; i++) {
            /* log-uniform over 0 s .. 30 days, some exact zeros */
            v[i] = rand() % 20 == 0 ? 0 : (int64_t)exp((double)(rand() % 1500) / 100.0);
            buckets[hist_bucket(v[i])]++;
        }
        qsort(v, n, sizeof(*v), cmp_i64);
        for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
            double want = (double)exact(v, n, ps[k]);
            double got = panels_percentile(buckets, HIST_BUCKETS, (int64_t)n, ps[k]);
            cr_assert_leq(fabs(got - want), HIST_RELATIVE_ERROR * want + 1e-9,
                          "p%.1f of %zu values: %.3f, exact %.0f", ps[k], n, got, want);
        }
        free(v);
    }
}

Test(percentile, of_nothing_is_zero)
{
    static int64_t buckets[HIST_BUCKETS];
    cr_expect_eq(panels_percentile(buckets, HIST_BUCKETS, 0, 50), 0.0);
}

Test(page_token, round_trips_and_is_bound_to_its_request)
{
    arena ar = { 0 };
    qrange r = { 20000, 20029 }, other = { 20001, 20030 };
    char *t = ag_token(&ar, r, 1, false, 150);
    cr_assert(t);
    cr_expect_eq(ag_token_offset(t, r, 1, false), 150);
    cr_expect_eq(ag_token_offset(t, other, 1, false), -1, "another range");
    cr_expect_eq(ag_token_offset(t, r, 2, false), -1, "another sort");
    cr_expect_eq(ag_token_offset(t, r, 1, true), -1, "another direction");
    char *forged = ar_strdup(&ar, t);
    forged[0] = forged[0] == '1' ? '2' : '1'; /* another offset with the old check */
    cr_expect_eq(ag_token_offset(forged, r, 1, false), -1);
    const char *bad[] = { "", "x", "150", "150.", "150.zz", "-1.00000000", "150.123456789" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(ag_token_offset(bad[i], r, 1, false), -1, "\"%s\"", bad[i]);
    ar_free(&ar);
}

/* ---- a request against a canned read model ------------------------------------------------- */

#define DAY    TALLY__V1__GRANULARITY__GRANULARITY_DAY
#define WEEK   TALLY__V1__GRANULARITY__GRANULARITY_WEEK
#define MONTH  TALLY__V1__GRANULARITY__GRANULARITY_MONTH
#define BY_NO  TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_NONE
#define BY_K   TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_CATEGORY
#define BY_P   TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_PRIORITY
#define BY_KP  TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_CATEGORY_AND_PRIORITY
#define S_RES  TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_RESOLVED
#define S_MEAN TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_MEAN_RESOLUTION
#define S_OPEN TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_OPEN_ASSIGNED
#define S_ID   TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_AGENT_ID

static char *cat_ids[] = { "k1", "k2", "k3", "k4", "k5" };
static char *agent_ids[] = { "a1", "a2", "a3", "a4" };
static const qfilter none = { 0 };

typedef struct fx {
    tmeta m;
    qreq q;
    size_t first; /* the panel's first command, after HGETALL P cats and P agents */
} fx;

/*
 * A request of tenant acme at generation 1 (P = "{t:acme}:1:") knowing its first ncats
 * categories and nagents agents, at noon UTC of day today; its batch starts as query.c's does
 * with the names of categories and agents.
 */
static void fx_init(fx *x, const char *today, size_t ncats, size_t nagents)
{
    x->m = (tmeta){ .tenant = "acme",
                    .gen = "1",
                    .tz = "UTC",
                    .cats = cat_ids,
                    .ncats = ncats,
                    .agents = agent_ids,
                    .nagents = nagents };
    x->q = (qreq){ .meta = &x->m, .T = "{t:acme}:", .P = "{t:acme}:1:", .oldest_sha = "0123abcd" };
    rd_init(&x->q.b, &x->q.ar);
    cr_assert_eq(civil_parse(today, &x->q.today), 0);
    x->q.now_ms = (x->q.today * 86400 + 43200) * 1000;
    x->q.i_cats = rd_cmd(&x->q.b, "HGETALL");
    rd_argf(&x->q.b, "%scats", x->q.P);
    x->q.i_agents = rd_cmd(&x->q.b, "HGETALL");
    rd_argf(&x->q.b, "%sagents", x->q.P);
    x->first = x->q.b.ncmds;
}

static void fx_release(fx *x)
{
    x->q.b.replies = NULL; /* the canned replies live in the arena */
    rd_free(&x->q.b);
    ar_free(&x->q.ar);
}

static qrange rng(const char *from, const char *to)
{
    qrange r;
    cr_assert_eq(civil_parse(from, &r.from), 0);
    cr_assert_eq(civil_parse(to, &r.to), 0);
    return r;
}

static size_t cmd_end(const rd_batch *b, size_t i)
{
    return i + 1 < b->ncmds ? b->first[i + 1] : b->nargs;
}

/* The panel's commands, one a line, P left out of the keys: "HMGET d:2024-03 - 05:c 05:r". */
static char *plan_text(fx *x)
{
    static char buf[16384];
    const rd_batch *b = &x->q.b;
    size_t n = 0, plen = strlen(x->q.P);
    buf[0] = '\0';
    for (size_t i = x->first; i < b->ncmds; i++)
        for (size_t a = b->first[i]; a < cmd_end(b, i); a++) {
            const char *s = b->args[a].s;
            s += strncmp(s, x->q.P, plen) == 0 ? plen : 0;
            const char *sep = a > b->first[i] ? " " : i > x->first ? "\n" : "";
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", sep, s);
            cr_assert_lt(n, sizeof(buf));
        }
    return buf;
}

static redisReply *rep(fx *x, int type, const char *s)
{
    redisReply *r = ar_alloc(&x->q.ar, sizeof(*r));
    cr_assert(r);
    r->type = type;
    r->str = (char *)s;
    r->len = s ? strlen(s) : 0;
    return r;
}

/* An array of the strings v[0..n). */
static redisReply *strs(fx *x, const char *const *v, size_t n)
{
    redisReply *r = rep(x, REDIS_REPLY_ARRAY, NULL);
    r->elements = n;
    r->element = ar_alloc(&x->q.ar, (n ? n : 1) * sizeof(*r->element));
    for (size_t i = 0; i < n; i++)
        r->element[i] = rep(x, REDIS_REPLY_STRING, v[i]);
    return r;
}

/* A key of the canned read model: its name after P, its fields and values (a hash) or members
 * and scores (a zset). */
typedef struct ckey {
    const char *key;
    const char *fv[33];
} ckey;

/*
 * Answers every command of the batch from keys (ending with { NULL }) as Redis does: HMGET gives
 * a nil for each absent field, HGETALL and ZRANGE 0 -1 WITHSCORES the pairs, an absent key reads
 * as empty; the read script answers script (NULL: a nil).
 */
static void answer(fx *x, const ckey *keys, redisReply *script)
{
    rd_batch *b = &x->q.b;
    size_t plen = strlen(x->q.P);
    b->replies = ar_alloc(&x->q.ar, (b->ncmds ? b->ncmds : 1) * sizeof(*b->replies));
    for (size_t i = 0; i < b->ncmds; i++) {
        const char *cmd = b->args[b->first[i]].s, *key = b->args[b->first[i] + 1].s;
        if (strcmp(cmd, "EVALSHA_RO") == 0) {
            b->replies[i] = script ? script : rep(x, REDIS_REPLY_NIL, NULL);
            continue;
        }
        cr_assert(strncmp(key, x->q.P, plen) == 0, "%s of %s: not the generation's key", cmd, key);
        const ckey *k = keys;
        while (k->key && strcmp(k->key, key + plen) != 0)
            k++;
        size_t n = 0;
        while (k->key && k->fv[n])
            n++;
        if (strcmp(cmd, "HMGET") == 0) {
            size_t f = b->first[i] + 2, nf = cmd_end(b, i) - f;
            redisReply *r = b->replies[i] = strs(x, NULL, 0);
            r->elements = nf;
            r->element = ar_alloc(&x->q.ar, nf * sizeof(*r->element));
            for (size_t a = 0; a < nf; a++) {
                const char *v = NULL;
                for (size_t j = 0; j + 1 < n && !v; j += 2)
                    v = strcmp(k->fv[j], b->args[f + a].s) == 0 ? k->fv[j + 1] : NULL;
                r->element[a] = rep(x, v ? REDIS_REPLY_STRING : REDIS_REPLY_NIL, v);
            }
        } else {
            cr_assert(strcmp(cmd, "HGETALL") == 0 || strcmp(cmd, "ZRANGE") == 0, "%s", cmd);
            b->replies[i] = strs(x, k->fv, n);
        }
    }
}

/* ---- overview ------------------------------------------------------------------------------ */

Test(overview_plan, reads_today_in_its_month_and_the_oldest_open)
{
    fx x;
    fx_init(&x, "2024-03-01", 1, 1);
    cr_assert(ov_plan_read(&x.q, 5));
    cr_expect_str_eq(plan_text(&x), "HMGET st 1 2 3 4\nHMGET d:2024-03 01:c 01:r\n"
                                    "HGETALL hd:2024-03-01:a\nEVALSHA_RO 0123abcd 2 open od 5");
    fx_release(&x);
    fx_init(&x, "2024-02-29", 1, 1);
    cr_assert(ov_plan_read(&x.q, 5));
    cr_expect_str_eq(plan_text(&x), "HMGET st 1 2 3 4\nHMGET d:2024-02 29:c 29:r\n"
                                    "HGETALL hd:2024-02-29:a\nEVALSHA_RO 0123abcd 2 open od 5");
    fx_release(&x);
}

Test(overview_build, counts_the_median_today_and_the_oldest_by_age_then_id)
{
    fx x;
    fx_init(&x, "2024-03-01", 1, 1);
    ov_plan *p = ov_plan_read(&x.q, 3);
    int64_t t0 = x.q.now_ms - 172800500, t1 = x.q.now_ms + 5000; /* t1: a clock ahead */
    char c0[24], c1[24];
    snprintf(c0, sizeof(c0), "%lld", (long long)t0);
    snprintf(c1, sizeof(c1), "%lld", (long long)t1);
    const ckey keys[] = {
        { "st", { "1", "4", "2", "3", "3", "10" } }, /* no CLOSED field */
        { "d:2024-03", { "01:c", "6", "01:r", "5", "02:c", "99" } },
        { "hd:2024-03-01:a", { "0", "1", "20", "3", "30", "1" } },
        { NULL },
    };
    /* The script returns the tie with the 3rd oldest too; ids order numerically. */
    const char *rows[] = { "100", c1, "1|2|k3|a1", "12", c1, "2|4|k1|a2",
                           "3",   c0, "1|3||",     "7",  c1, "1|1|k2|" };
    answer(&x, keys, strs(&x, rows, 12));
    Tally__V1__Overview *o = ov_build(&x.q, p);
    cr_assert(o);
    cr_expect_eq(o->status_counts->open, 4);
    cr_expect_eq(o->status_counts->in_progress, 3);
    cr_expect_eq(o->status_counts->resolved, 10);
    cr_expect_eq(o->status_counts->closed, 0);
    cr_expect_eq(o->backlog, 7);
    cr_expect_str_eq(o->today, "2024-03-01");
    cr_expect_str_eq(o->time_zone, "UTC");
    cr_expect_eq(o->created_today, 6);
    cr_expect_eq(o->resolved_today, 5);
    cr_expect_eq(o->median_resolution_seconds_today, hist_value(20), "3rd of 5 is in bucket 20");
    cr_expect_eq(o->resolution_relative_error, HIST_RELATIVE_ERROR);
    cr_assert_eq(o->n_oldest_open, 3);
    const int64_t ids[] = { 3, 7, 12 };
    for (size_t i = 0; i < 3; i++)
        cr_expect_eq(o->oldest_open[i]->complaint_id, ids[i], "row %zu", i);
    Tally__V1__OpenComplaint *a = o->oldest_open[0], *c = o->oldest_open[2];
    cr_expect_eq(a->created_at_ms, t0);
    cr_expect_eq(a->age_seconds, 172800, "rounded down");
    cr_expect_eq(a->status, TALLY__V1__STATUS__STATUS_OPEN);
    cr_expect_eq(a->priority, 3);
    cr_expect_str_eq(a->category_id, "");
    cr_expect_str_eq(a->assigned_agent_id, "");
    cr_expect_eq(c->age_seconds, 0, "created after now: age 0, not negative");
    cr_expect_eq(c->status, TALLY__V1__STATUS__STATUS_IN_PROGRESS);
    cr_expect_eq(c->priority, TALLY__V1__PRIORITY__PRIORITY_URGENT);
    cr_expect_str_eq(c->category_id, "k1");
    cr_expect_str_eq(c->assigned_agent_id, "a2");
    cr_expect_str_eq(o->oldest_open[1]->category_id, "k2");
    fx_release(&x);
}

/* ---- volume trend -------------------------------------------------------------------------- */

/* The plan of the trend panel for range from..to and filter f. */
static void expect_tr_plan(const char *from, const char *to, const qfilter *f, const char *want)
{
    fx x;
    fx_init(&x, "2025-06-01", 3, 0);
    cr_assert(tr_plan_read(&x.q, rng(from, to), DAY, f));
    cr_expect_str_eq(plan_text(&x), want, "%s..%s", from, to);
    fx_release(&x);
}

Test(trend_plan, reads_the_days_in_range_of_each_month)
{
    expect_tr_plan("2024-02-27", "2024-03-02", &none, /* a leap February */
                   "HMGET d:2024-02 - 27:c 27:r 28:c 28:r 29:c 29:r\n"
                   "HMGET d:2024-03 - 01:c 01:r 02:c 02:r");
    expect_tr_plan("2023-02-28", "2023-03-01", &none,
                   "HMGET d:2023-02 - 28:c 28:r\nHMGET d:2023-03 - 01:c 01:r");
    expect_tr_plan("2024-12-31", "2025-01-01", &none,
                   "HMGET d:2024-12 - 31:c 31:r\nHMGET d:2025-01 - 01:c 01:r");
}

Test(trend_plan, a_filter_reads_its_finest_counters)
{
    const qfilter kp = {
        .cats = (const char *[]){ "k2" }, .ncats = 1, .prios = { 1, 4 }, .nprios = 2
    };
    const qfilter k = { .cats = (const char *[]){ "k1", "k3" }, .ncats = 2 };
    const qfilter p = { .prios = { 2 }, .nprios = 1 };
    expect_tr_plan("2024-03-05", "2024-03-05", &kp,
                   "HMGET d:2024-03 - 05:c:kp:k2:1 05:r:kp:k2:1 05:c:kp:k2:4 05:r:kp:k2:4");
    expect_tr_plan("2024-03-05", "2024-03-05", &k,
                   "HMGET d:2024-03 - 05:c:k:k1 05:r:k:k1 05:c:k:k3 05:r:k:k3");
    expect_tr_plan("2024-03-05", "2024-03-05", &p, "HMGET d:2024-03 - 05:c:p:2 05:r:p:2");
}

static void expect_bucket(const Tally__V1__VolumeBucket *b, const char *label, const char *first,
                          const char *last, int64_t created, int64_t resolved)
{
    cr_expect_str_eq(b->label, label);
    cr_expect_str_eq(b->first_day, first, "%s", label);
    cr_expect_str_eq(b->last_day, last, "%s", label);
    cr_expect_eq(b->created, created, "%s", label);
    cr_expect_eq(b->resolved, resolved, "%s", label);
}

Test(trend_build, iso_weeks_are_clipped_to_the_range)
{
    fx x;
    fx_init(&x, "2025-06-01", 3, 0);
    tr_plan *p = tr_plan_read(&x.q, rng("2024-02-27", "2024-03-12"), WEEK, &none);
    tr_plan *p2 = tr_plan_read(&x.q, rng("2024-12-28", "2025-01-01"), WEEK, &none);
    const ckey keys[] = {
        { "d:2024-02", { "26:c", "50", "27:c", "1", "29:c", "2", "29:r", "1" } },
        { "d:2024-03",
          { "03:c", "4", "04:r", "3", "10:c", "5", "11:c", "6", "12:r", "7", "13:c", "80" } },
        { "d:2024-12", { "28:c", "1", "30:c", "2" } },
        { "d:2025-01", { "01:r", "3" } },
        { NULL },
    };
    answer(&x, keys, NULL);
    Tally__V1__VolumeTrend *t = tr_build(&x.q, p);
    cr_assert(t);
    cr_expect_eq(t->granularity, WEEK);
    cr_expect_str_eq(t->range->from_day, "2024-02-27");
    cr_expect_str_eq(t->range->to_day, "2024-03-12");
    cr_assert_eq(t->n_buckets, 3);
    expect_bucket(t->buckets[0], "2024-W09", "2024-02-27", "2024-03-03", 7, 1);
    expect_bucket(t->buckets[1], "2024-W10", "2024-03-04", "2024-03-10", 5, 3);
    expect_bucket(t->buckets[2], "2024-W11", "2024-03-11", "2024-03-12", 6, 7);
    cr_expect_eq(t->total_created, 18);
    cr_expect_eq(t->total_resolved, 11);
    t = tr_build(&x.q, p2); /* the ISO week-year is not the calendar year */
    cr_assert(t);
    cr_assert_eq(t->n_buckets, 2);
    expect_bucket(t->buckets[0], "2024-W52", "2024-12-28", "2024-12-29", 1, 0);
    expect_bucket(t->buckets[1], "2025-W01", "2024-12-30", "2025-01-01", 2, 3);
    fx_release(&x);
}

Test(trend_build, months_and_days_sum_the_cells_of_the_filter)
{
    fx x;
    fx_init(&x, "2025-06-01", 3, 0);
    const qfilter f = { .prios = { 1, 3 }, .nprios = 2 };
    tr_plan *p = tr_plan_read(&x.q, rng("2024-01-30", "2024-03-01"), MONTH, &f);
    tr_plan *d = tr_plan_read(&x.q, rng("2024-02-28", "2024-03-01"), DAY, &none);
    const ckey keys[] = {
        { "d:2024-01", { "30:c:p:1", "1", "31:c:p:3", "2", "31:c:p:2", "100", "31:c", "1000" } },
        { "d:2024-02", { "01:r:p:1", "3", "29:c:p:3", "4", "29:c", "2", "28:r", "1" } },
        { "d:2024-03", { "01:c:p:1", "5", "02:c:p:1", "60" } },
        { NULL },
    };
    answer(&x, keys, NULL);
    Tally__V1__VolumeTrend *t = tr_build(&x.q, p);
    cr_assert(t);
    cr_assert_eq(t->n_buckets, 3);
    expect_bucket(t->buckets[0], "2024-01", "2024-01-30", "2024-01-31", 3, 0);
    expect_bucket(t->buckets[1], "2024-02", "2024-02-01", "2024-02-29", 4, 3);
    expect_bucket(t->buckets[2], "2024-03", "2024-03-01", "2024-03-01", 5, 0);
    cr_expect_eq(t->total_created, 12);
    cr_expect_eq(t->total_resolved, 3);
    t = tr_build(&x.q, d);
    cr_assert(t);
    cr_assert_eq(t->n_buckets, 3);
    expect_bucket(t->buckets[0], "2024-02-28", "2024-02-28", "2024-02-28", 0, 1);
    expect_bucket(t->buckets[1], "2024-02-29", "2024-02-29", "2024-02-29", 2, 0);
    expect_bucket(t->buckets[2], "2024-03-01", "2024-03-01", "2024-03-01", 0, 0);
    fx_release(&x);
}

/* ---- resolution stats ---------------------------------------------------------------------- */

/* The plan of the resolution panel for range from..to, today 2024-03-10 (data up to 03-12). */
static void expect_rs_plan(const char *from, const char *to, int group_by, const qfilter *f,
                           const char *want)
{
    fx x;
    fx_init(&x, "2024-03-10", 2, 0);
    cr_assert(rs_plan_read(&x.q, rng(from, to), group_by, f));
    cr_expect_str_eq(plan_text(&x), want, "%s..%s", from, to);
    fx_release(&x);
}

Test(resolution_plan, whole_months_read_their_histograms_future_days_nothing)
{
    expect_rs_plan("2024-01-01", "2024-02-29", BY_NO, &none,
                   "HGETALL hm:2024-01:a\nHGETALL hm:2024-02:a");
    /* March's days after today + 2 are empty: the month less nothing */
    expect_rs_plan("2024-03-01", "2024-03-31", BY_NO, &none, "HGETALL hm:2024-03:a");
    expect_rs_plan("2024-03-12", "2024-03-31", BY_NO, &none,
                   "HGETALL hd:2024-03-12:a\nHMGET d:2024-03 - 12:r 12:s");
    expect_rs_plan("2024-03-13", "2024-04-30", BY_NO, &none, "");
}

Test(resolution_plan, a_cut_month_reads_its_days_or_the_month_less_the_others)
{
    expect_rs_plan("2024-01-29", "2024-02-02", BY_NO, &none,
                   "HGETALL hd:2024-01-29:a\nHGETALL hd:2024-01-30:a\nHGETALL hd:2024-01-31:a\n"
                   "HMGET d:2024-01 - 29:r 29:s 30:r 30:s 31:r 31:s\n"
                   "HGETALL hd:2024-02-01:a\nHGETALL hd:2024-02-02:a\n"
                   "HMGET d:2024-02 - 01:r 01:s 02:r 02:s");
    expect_rs_plan("2024-02-04", "2024-03-10", BY_NO, &none,
                   "HGETALL hm:2024-02:a\nHGETALL hd:2024-02-01:a\nHGETALL hd:2024-02-02:a\n"
                   "HGETALL hd:2024-02-03:a\nHMGET d:2024-02 - 01:r 01:s 02:r 02:s 03:r 03:s\n"
                   "HGETALL hm:2024-03:a\nHGETALL hd:2024-03-11:a\nHGETALL hd:2024-03-12:a\n"
                   "HMGET d:2024-03 - 11:r 11:s 12:r 12:s");
}

Test(resolution_plan, the_grouping_and_filter_pick_the_histograms_and_counters)
{
    const qfilter p2 = { .prios = { 2 }, .nprios = 1 };
    const qfilter k2 = { .cats = (const char *[]){ "k2" }, .ncats = 1 };
    expect_rs_plan("2024-03-05", "2024-03-05", BY_K, &p2,
                   "HGETALL hd:2024-03-05:kp\n"
                   "HMGET d:2024-03 - 05:r:kp:k1:2 05:s:kp:k1:2 05:r:kp:k2:2 05:s:kp:k2:2");
    expect_rs_plan("2024-03-05", "2024-03-05", BY_P, &none,
                   "HGETALL hd:2024-03-05:p\nHMGET d:2024-03 - 05:r:p:1 05:s:p:1 05:r:p:2 "
                   "05:s:p:2 05:r:p:3 05:s:p:3 05:r:p:4 05:s:p:4");
    expect_rs_plan("2024-03-05", "2024-03-05", BY_NO, &k2,
                   "HGETALL hd:2024-03-05:k\nHMGET d:2024-03 - 05:r:k:k2 05:s:k:k2");
    expect_rs_plan("2024-02-01", "2024-02-29", BY_KP, &none, "HGETALL hm:2024-02:kp");
}

static void expect_summary(const Tally__V1__ResolutionSummary *s, int64_t n, double mean, int b50,
                           int b90, int b99)
{
    cr_assert(s);
    cr_expect_eq(s->count, n);
    cr_expect_float_eq(s->mean_seconds, mean, 1e-9);
    cr_expect_eq(s->p50_seconds, hist_value(b50), "p50 %f", s->p50_seconds);
    cr_expect_eq(s->p90_seconds, hist_value(b90), "p90 %f", s->p90_seconds);
    cr_expect_eq(s->p99_seconds, hist_value(b99), "p99 %f", s->p99_seconds);
}

Test(resolution_build, the_month_less_its_days_outside_the_range)
{
    fx x;
    fx_init(&x, "2024-03-10", 2, 0);
    rs_plan *p = rs_plan_read(&x.q, rng("2024-02-04", "2024-02-29"), BY_NO, &none);
    const ckey keys[] = {
        { "hm:2024-02:a", { "n", "12", "s", "2400", "30", "7", "40", "5" } },
        { "hd:2024-02-02:a", { "30", "2" } },
        { "hd:2024-02-03:a", { "40", "1" } },
        { "hd:2024-02-04:a", { "40", "100" } }, /* in the range: not subtracted */
        { "d:2024-02", { "02:r", "2", "02:s", "100", "03:r", "1", "03:s", "300", "04:r", "9" } },
        { NULL },
    };
    answer(&x, keys, NULL);
    Tally__V1__ResolutionStats *st = rs_build(&x.q, p);
    cr_assert(st);
    cr_expect_str_eq(st->range->from_day, "2024-02-04");
    cr_expect_eq(st->group_by, BY_NO);
    /* 9 resolutions, 2000 s; buckets 30: 5, 40: 4 (rank 5 of 9 in 30, ranks 9 in 40) */
    expect_summary(st->overall, 9, 2000.0 / 9, 30, 40, 40);
    cr_expect_eq(st->percentile_relative_error, HIST_RELATIVE_ERROR);
    cr_expect_eq(st->n_groups, 0);
    fx_release(&x);
}

Test(resolution_build, groups_urgent_first_or_by_category_empty_ones_left_out)
{
    fx x;
    fx_init(&x, "2024-03-10", 3, 0);
    rs_plan *p = rs_plan_read(&x.q, rng("2024-01-01", "2024-01-31"), BY_P, &none);
    const qfilter f = { .cats = (const char *[]){ "k1", "k2" }, .ncats = 2 };
    rs_plan *k = rs_plan_read(&x.q, rng("2024-01-01", "2024-01-31"), BY_K, &f);
    const ckey keys[] = {
        { "cats", { "k1", "Billing", "k3", "Returns" } },
        { "hm:2024-01:p",
          { "1:n", "2", "1:s", "20", "1:3", "2", "4:n", "1", "4:s", "5", "4:2", "1", "9:n", "5",
            "9:s", "50" } },
        { "hm:2024-01:k",
          { "k2:n", "3", "k2:s", "30", "k2:5", "3", "k1:n", "1", "k1:s", "1", "k1:1", "1", "k3:n",
            "2", "k3:s", "4", "k3:0", "2" } },
        { NULL },
    };
    answer(&x, keys, NULL);
    Tally__V1__ResolutionStats *st = rs_build(&x.q, p);
    cr_assert(st);
    expect_summary(st->overall, 3, 25.0 / 3, 3, 3, 3);
    cr_assert_eq(st->n_groups, 2, "priorities 2 and 3 resolved nothing");
    cr_expect_eq(st->groups[0]->priority, TALLY__V1__PRIORITY__PRIORITY_URGENT);
    cr_expect_str_eq(st->groups[0]->category_id, "");
    expect_summary(st->groups[0]->summary, 1, 5, 2, 2, 2);
    cr_expect_eq(st->groups[1]->priority, TALLY__V1__PRIORITY__PRIORITY_LOW);
    expect_summary(st->groups[1]->summary, 2, 10, 3, 3, 3);
    st = rs_build(&x.q, k);
    cr_assert(st);
    expect_summary(st->overall, 4, 31.0 / 4, 5, 5, 5); /* k3 is outside the filter */
    cr_assert_eq(st->n_groups, 2);
    cr_expect_str_eq(st->groups[0]->category_id, "k1");
    cr_expect_str_eq(st->groups[0]->category_name, "Billing");
    cr_expect_eq(st->groups[0]->priority, 0);
    expect_summary(st->groups[0]->summary, 1, 1, 1, 1, 1);
    cr_expect_str_eq(st->groups[1]->category_id, "k2");
    cr_expect_str_eq(st->groups[1]->category_name, "", "no name known");
    expect_summary(st->groups[1]->summary, 3, 10, 5, 5, 5);
    fx_release(&x);
}

/* ---- agent performance --------------------------------------------------------------------- */

Test(agent_plan, reads_whole_months_and_the_days_of_cut_months)
{
    fx x;
    fx_init(&x, "2024-03-10", 0, 2);
    cr_assert(ag_plan_read(&x.q, rng("2024-01-30", "2024-03-10"), S_RES, false, 10, 0));
    cr_expect_str_eq(plan_text(&x), "HGETALL ao\n"
                                    "HMGET ad:2024-01-30 - a1:n a1:s a2:n a2:s\n"
                                    "HMGET ad:2024-01-31 - a1:n a1:s a2:n a2:s\n"
                                    "HMGET ad:2024-02 - a1:n a1:s a2:n a2:s\n"
                                    "HMGET ad:2024-03 - a1:n a1:s a2:n a2:s\n"
                                    "HMGET ad:2024-03-11 - a1:n a1:s a2:n a2:s\n"
                                    "HMGET ad:2024-03-12 - a1:n a1:s a2:n a2:s");
    fx_release(&x);
    fx_init(&x, "2024-03-10", 0, 0);
    cr_assert(ag_plan_read(&x.q, rng("2024-02-01", "2024-02-29"), S_RES, false, 10, 0));
    cr_expect_str_eq(plan_text(&x), "HGETALL ao\nHMGET ad:2024-02 -", "no agents known");
    fx_release(&x);
}

/*
 * The agent panel over 2024-02-04..29 (February less its days 1..3): a1 5 resolved in 500 s,
 * a2 7 - 2 in 350 - 50 s, a3 6 in 120 s, a4 none; open assigned a3 4, a1 1.
 */
static Tally__V1__AgentPerformance *ag_page(fx *x, int sort_by, bool asc, int limit, int64_t off)
{
    fx_init(x, "2024-03-10", 0, 4);
    ag_plan *p = ag_plan_read(&x->q, rng("2024-02-04", "2024-02-29"), sort_by, asc, limit, off);
    const ckey keys[] = {
        { "agents", { "a1", "Ann", "a2", "Bob", "a3", "Cy" } },
        { "ao", { "a3", "4", "zz", "9", "a1", "1" } },
        { "ad:2024-02",
          { "a1:n", "5", "a1:s", "500", "a2:n", "7", "a2:s", "350", "a3:n", "6", "a3:s", "120" } },
        { "ad:2024-02-02", { "a2:n", "2", "a2:s", "50" } },
        { "ad:2024-02-04", { "a1:n", "9", "a1:s", "9" } }, /* in the range: not subtracted */
        { NULL },
    };
    answer(x, keys, NULL);
    Tally__V1__AgentPerformance *ap = ag_build(&x->q, p);
    cr_assert(ap);
    cr_expect(ap->total_agents == 4 && (int)ap->sort_by == sort_by && ap->ascending == asc);
    return ap;
}

/* The page's agents, in order, as "id,id,...". */
static char *ids_of(fx *x, const Tally__V1__AgentPerformance *ap)
{
    char *s = "";
    for (size_t i = 0; i < ap->n_agents; i++)
        s = ar_printf(&x->q.ar, "%s%s%s", s, i ? "," : "", ap->agents[i]->agent_id);
    return s;
}

static void expect_agent(const Tally__V1__AgentStats *s, const char *name, int64_t n, double mean,
                         int64_t open)
{
    cr_expect_str_eq(s->agent_name, name, "%s", s->agent_id);
    cr_expect_eq(s->resolved, n, "%s", s->agent_id);
    cr_expect_float_eq(s->mean_resolution_seconds, mean, 1e-9, "%s", s->agent_id);
    cr_expect_eq(s->open_assigned, open, "%s", s->agent_id);
}

Test(agent_build, most_resolved_first_ties_by_id_in_pages)
{
    fx x;
    Tally__V1__AgentPerformance *ap = ag_page(&x, S_RES, false, 2, 0);
    cr_expect_str_eq(ids_of(&x, ap), "a3,a1");
    expect_agent(ap->agents[0], "Cy", 6, 20.0, 4);
    expect_agent(ap->agents[1], "Ann", 5, 100.0, 1);
    qrange r = rng("2024-02-04", "2024-02-29");
    cr_expect_eq(ag_token_offset(ap->next_page_token, r, S_RES, false), 2);
    fx_release(&x);
    ap = ag_page(&x, S_RES, false, 2, 2);
    cr_expect_str_eq(ids_of(&x, ap), "a2,a4");
    expect_agent(ap->agents[0], "Bob", 5, 60.0, 0); /* 7 in the month less 2 on Feb 2 */
    expect_agent(ap->agents[1], "", 0, 0.0, 0);
    cr_expect_str_eq(ap->next_page_token, "", "the last page");
    fx_release(&x);
    ap = ag_page(&x, S_RES, true, 10, 10);
    cr_expect_eq(ap->n_agents, 0, "past the end");
    cr_expect_str_eq(ap->next_page_token, "");
    fx_release(&x);
}

Test(agent_build, every_sort_and_direction)
{
    const struct {
        int sort;
        bool asc;
        const char *want;
    } cases[] = {
        { S_RES, true, "a4,a1,a2,a3" },   { S_MEAN, true, "a3,a2,a1,a4" },
        { S_MEAN, false, "a1,a2,a3,a4" }, /* no resolution: last both ways */
        { S_OPEN, false, "a3,a1,a2,a4" }, { S_OPEN, true, "a2,a4,a1,a3" },
        { S_ID, false, "a4,a3,a2,a1" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fx x;
        Tally__V1__AgentPerformance *ap = ag_page(&x, cases[i].sort, cases[i].asc, 10, 0);
        cr_expect_str_eq(ids_of(&x, ap), cases[i].want, "sort %d asc %d", cases[i].sort,
                         cases[i].asc);
        cr_expect_str_eq(ap->next_page_token, "");
        fx_release(&x);
    }
}

/* ---- category distribution ----------------------------------------------------------------- */

Test(category_plan, whole_months_read_the_ranking_unless_a_priority_is_asked)
{
    const qfilter k2 = { .cats = (const char *[]){ "k2" }, .ncats = 1 };
    const qfilter p3 = { .prios = { 3 }, .nprios = 1 };
    fx x;
    fx_init(&x, "2024-03-10", 2, 0);
    cr_assert(cd_plan_read(&x.q, rng("2024-01-30", "2024-03-01"), &none, 5));
    cr_expect_str_eq(plan_text(&x), "HMGET d:2024-01 - 30:c:k:k1 30:c:k:k2 31:c:k:k1 31:c:k:k2\n"
                                    "ZRANGE kc:2024-02 0 -1 WITHSCORES\n"
                                    "HMGET d:2024-03 - 01:c:k:k1 01:c:k:k2");
    fx_release(&x);
    fx_init(&x, "2024-03-10", 2, 0);
    cr_assert(cd_plan_read(&x.q, rng("2024-01-31", "2024-02-29"), &k2, 5));
    cr_expect_str_eq(plan_text(&x),
                     "HMGET d:2024-01 - 31:c:k:k2\nZRANGE kc:2024-02 0 -1 WITHSCORES");
    fx_release(&x);
    fx_init(&x, "2024-03-10", 1, 0);
    cr_assert(cd_plan_read(&x.q, rng("2024-02-01", "2024-02-29"), &p3, 5));
    char want[1024] = "HMGET d:2024-02 -";
    for (int d = 1; d <= 29; d++)
        snprintf(want + strlen(want), sizeof(want) - strlen(want), " %02d:c:kp:k1:3", d);
    cr_expect_str_eq(plan_text(&x), want);
    fx_release(&x);
}

static void expect_share(const Tally__V1__CategoryShare *s, const char *id, const char *name,
                         int64_t n, int64_t total)
{
    cr_expect_str_eq(s->category_id, id);
    cr_expect_str_eq(s->category_name, name, "%s", id);
    cr_expect_eq(s->count, n, "%s", id);
    cr_expect_float_eq(s->share, (double)n / (double)total, 1e-12, "%s", id);
    cr_expect_not(s->is_other, "%s", id);
}

Test(category_build, the_top_n_by_count_then_the_others_as_one)
{
    const ckey keys[] = {
        { "cats", { "k1", "Billing", "k2", "Delivery", "k3", "Returns" } },
        { "d:2024-01", { "31:c:k:k1", "2", "31:c:k:k4", "1", "30:c:k:k5", "50" } },
        { "kc:2024-02", { "k5", "0", "k1", "3", "k3", "5", "k2", "6", "zz", "100" } },
        { NULL },
    };
    fx x;
    fx_init(&x, "2024-03-10", 5, 0);
    cd_plan *p = cd_plan_read(&x.q, rng("2024-01-31", "2024-02-29"), &none, 2);
    cd_plan *all = cd_plan_read(&x.q, rng("2024-01-31", "2024-02-29"), &none, 4);
    answer(&x, keys, NULL);
    Tally__V1__CategoryDistribution *cd = cd_build(&x.q, p);
    cr_assert(cd);
    cr_expect_eq(cd->total, 17, "k2 6, k1 5, k3 5, k4 1; zz is not a category");
    cr_assert_eq(cd->n_categories, 3);
    expect_share(cd->categories[0], "k2", "Delivery", 6, 17);
    expect_share(cd->categories[1], "k1", "Billing", 5, 17); /* before k3, its tie */
    Tally__V1__CategoryShare *o = cd->categories[2];
    cr_expect(o->is_other);
    cr_expect_eq(o->count, 6);
    cr_expect_float_eq(o->share, 6.0 / 17, 1e-12);
    cr_expect_eq(cd->other_category_count, 2, "k3 and k4; k5 counted nothing");
    cd = cd_build(&x.q, all);
    cr_assert(cd);
    cr_assert_eq(cd->n_categories, 4, "no other when every nonzero category fits");
    expect_share(cd->categories[2], "k3", "Returns", 5, 17);
    expect_share(cd->categories[3], "k4", "", 1, 17);
    cr_expect_eq(cd->other_category_count, 0);
    fx_release(&x);
}

Test(category_build, a_priority_filter_counts_the_days_of_its_cells)
{
    const qfilter f = {
        .cats = (const char *[]){ "k1", "k3" }, .ncats = 2, .prios = { 2, 4 }, .nprios = 2
    };
    const ckey keys[] = {
        { "d:2024-02",
          { "28:c:kp:k1:2", "1", "29:c:kp:k1:4", "2", "29:c:kp:k3:2", "4", "29:c:kp:k3:3", "50",
            "29:c:k:k3", "70" } },
        { "d:2024-03", { "01:c:kp:k1:4", "1" } },
        { "kc:2024-02", { "k1", "999" } },
        { NULL },
    };
    fx x;
    fx_init(&x, "2024-03-10", 5, 0);
    cd_plan *p = cd_plan_read(&x.q, rng("2024-02-01", "2024-03-01"), &f, 10);
    answer(&x, keys, NULL);
    Tally__V1__CategoryDistribution *cd = cd_build(&x.q, p);
    cr_assert(cd);
    cr_expect_eq(cd->total, 8);
    cr_assert_eq(cd->n_categories, 2);
    expect_share(cd->categories[0], "k1", "", 4, 8);
    expect_share(cd->categories[1], "k3", "", 4, 8);
    cr_expect_eq(cd->other_category_count, 0);
    fx_release(&x);
}

/* ---- every panel: an empty read model, nil replies ----------------------------------------- */

Test(panels, an_empty_read_model_and_nil_replies_read_as_zero)
{
    for (int nil = 0; nil < 2; nil++) {
        fx x;
        fx_init(&x, "2024-03-10", 2, 2);
        qrange r = rng("2024-02-04", "2024-03-10");
        ov_plan *ov = ov_plan_read(&x.q, 10);
        tr_plan *tr = tr_plan_read(&x.q, r, WEEK, &none);
        rs_plan *rs = rs_plan_read(&x.q, r, BY_KP, &none);
        ag_plan *ag = ag_plan_read(&x.q, r, S_MEAN, false, 10, 0);
        cd_plan *cd = cd_plan_read(&x.q, r, &none, 3);
        const ckey keys[] = { { NULL } };
        answer(&x, keys, strs(&x, NULL, 0));
        for (size_t i = 0; nil && i < x.q.b.ncmds; i++)
            x.q.b.replies[i] = rep(&x, REDIS_REPLY_NIL, NULL);
        Tally__V1__Overview *o = ov_build(&x.q, ov);
        cr_assert(o);
        cr_expect_eq(o->backlog + o->status_counts->resolved + o->status_counts->closed, 0);
        cr_expect_eq(o->created_today + o->resolved_today, 0);
        cr_expect_eq(o->median_resolution_seconds_today, 0.0);
        cr_expect_eq(o->n_oldest_open, 0);
        Tally__V1__VolumeTrend *t = tr_build(&x.q, tr);
        cr_assert(t);
        cr_expect_eq(t->n_buckets, 6, "zero-filled: weeks 05 to 10");
        cr_expect_eq(t->total_created + t->total_resolved, 0);
        Tally__V1__ResolutionStats *st = rs_build(&x.q, rs);
        cr_assert(st);
        cr_expect_eq(st->overall->count + st->overall->p50_seconds + st->overall->p99_seconds, 0);
        cr_expect_eq(st->n_groups, 0);
        Tally__V1__AgentPerformance *ap = ag_build(&x.q, ag);
        cr_assert(ap);
        cr_expect_str_eq(ids_of(&x, ap), "a1,a2");
        cr_expect_eq(ap->agents[0]->resolved + ap->agents[1]->open_assigned, 0);
        Tally__V1__CategoryDistribution *c = cd_build(&x.q, cd);
        cr_assert(c);
        cr_expect_eq(c->total, 0);
        cr_expect_eq(c->n_categories, 0);
        fx_release(&x);
    }
}
