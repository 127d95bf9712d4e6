/*
 * The pure parts of query-svc's panels: nearest-rank percentiles read from the log-bucket
 * histogram (within the stated relative error of the exact percentile), and agent page tokens
 * (bound to the range, sort and direction they were made for).
 */
#include "hist.h"
#include "panels.h"

#include <criterion/criterion.h>
#include <math.h>
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
