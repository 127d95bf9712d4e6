/* metrics: exposition text, label escaping, histograms, and lock-free updates from threads. */
#include "err.h"
#include "metrics.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static char *render(metrics_registry *reg)
{
    char *text;
    size_t len;
    cr_assert_eq(metrics_render(reg, &text, &len), 0);
    cr_assert_eq(strlen(text), len);
    return text;
}

Test(metrics, renders_families_once_with_their_series)
{
    metrics_registry *reg = metrics_new();
    char l1[128], l2[128];
    metrics_labels(l1, sizeof(l1), "method", "A", NULL);
    metrics_labels(l2, sizeof(l2), "method", "B", NULL);
    metrics_counter *a = metrics_counter_add(reg, "calls_total", "Calls.", l1);
    metrics_counter *b = metrics_counter_add(reg, "calls_total", "Calls.", l2);
    metrics_gauge *g = metrics_gauge_add(reg, "queue", "Queue length.", NULL);
    metrics_inc(a, 2);
    metrics_inc(b, 5);
    metrics_set(g, 7);
    metrics_add(g, -2);
    char *text = render(reg);
    cr_assert_str_eq(text, "# HELP calls_total Calls.\n# TYPE calls_total counter\n"
                           "calls_total{method=\"A\"} 2\ncalls_total{method=\"B\"} 5\n"
                           "# HELP queue Queue length.\n# TYPE queue gauge\nqueue 5\n");
    free(text);
    cr_assert_null(metrics_gauge_add(reg, "calls_total", "", NULL), "type clash accepted");
    metrics_free(reg);
}

Test(metrics, escapes_label_values)
{
    char buf[128];
    cr_assert_eq(metrics_labels(buf, sizeof(buf), "a", "x\"y\\z\n", "b", "", NULL), 0);
    cr_assert_str_eq(buf, "a=\"x\\\"y\\\\z\\n\",b=\"\"");
    cr_assert_eq(metrics_labels(buf, 8, "long", "value", NULL), TALLY_ETOOBIG);
    cr_assert_str_eq(buf, "", "a failed build leaves an empty string");
}

Test(metrics, label_buffers_are_never_overrun)
{
    /* ab="" needs 5 bytes and the NUL: 6 fit exactly, 5 do not (ASan checks the writes). */
    char *exact = malloc(6), *small = malloc(5);
    cr_assert_eq(metrics_labels(exact, 6, "ab", "", NULL), 0);
    cr_assert_str_eq(exact, "ab=\"\"");
    cr_assert_eq(metrics_labels(small, 5, "ab", "", NULL), TALLY_ETOOBIG);
    cr_assert_eq(metrics_labels(small, 5, "ab", "x", NULL), TALLY_ETOOBIG);
    free(exact);
    free(small);
}

Test(metrics, histograms_are_cumulative_with_sum_and_count)
{
    static const double bounds[] = { 0.1, 1, 10 };
    metrics_registry *reg = metrics_new();
    metrics_histogram *h =
        metrics_histogram_add(reg, "lat_seconds", "Latency.", "m=\"x\"", bounds, 3);
    metrics_observe(h, 0.05);
    metrics_observe(h, 0.1); /* on a bound: counted in that bucket (le) */
    metrics_observe(h, 5);
    metrics_observe(h, 100);
    char *text = render(reg);
    cr_assert_not_null(strstr(text, "lat_seconds_bucket{m=\"x\",le=\"0.1\"} 2\n"
                                    "lat_seconds_bucket{m=\"x\",le=\"1\"} 2\n"
                                    "lat_seconds_bucket{m=\"x\",le=\"10\"} 3\n"
                                    "lat_seconds_bucket{m=\"x\",le=\"+Inf\"} 4\n"
                                    "lat_seconds_sum{m=\"x\"} 105.15000000000001\n"
                                    "lat_seconds_count{m=\"x\"} 4\n"),
                       "%s", text);
    free(text);
    metrics_free(reg);
}

static double seven(void *arg)
{
    (void)arg;
    return 7.25;
}

Test(metrics, gauge_functions_are_read_at_scrape_time)
{
    metrics_registry *reg = metrics_new();
    cr_assert_eq(metrics_gauge_fn_add(reg, "backlog", "Rows.", NULL, seven, NULL), 0);
    char *text = render(reg);
    cr_assert_not_null(strstr(text, "backlog 7.25\n"), "%s", text);
    free(text);
    metrics_free(reg);
}

#define THREADS    4
#define PER_THREAD 100000

static metrics_counter *shared_counter;
static metrics_histogram *shared_hist;

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_inc(shared_counter, 1);
        metrics_observe(shared_hist, 1.0);
    }
    return NULL;
}

Test(metrics, concurrent_updates_are_not_lost)
{
    static const double bounds[] = { 0.5, 2 };
    metrics_registry *reg = metrics_new();
    pthread_t t[THREADS];
    shared_counter = metrics_counter_add(reg, "n_total", "N.", NULL);
    shared_hist = metrics_histogram_add(reg, "h", "H.", NULL, bounds, 2);
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, hammer, NULL);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *text = render(reg);
    cr_assert_not_null(strstr(text, "n_total 400000\n"), "%s", text);
    cr_assert_not_null(strstr(text, "h_sum 400000\nh_count 400000\n"), "%s", text);
    free(text);
    metrics_free(reg);
}
