/*
 * metrics: Prometheus counters, gauges and histograms, rendered as the text exposition format.
 *
 * Series are registered at start (under a mutex) and updated on hot paths with relaxed
 * atomics only: no lock, no allocation. A series is a metric family name plus a fixed label
 * set, e.g. grpc_server_handled_total{grpc_service="tally.v1.Dashboard",grpc_method=
 * "GetOverview",grpc_type="unary",grpc_code="OK"}. Series of one family are rendered together
 * under one HELP and TYPE line, in registration order. Series live as long as the registry.
 */
#ifndef TALLY_METRICS_H
#define TALLY_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct metrics_registry metrics_registry;

typedef struct metrics_counter {
    _Atomic uint64_t v;
} metrics_counter;

typedef struct metrics_gauge {
    _Atomic int64_t v;
} metrics_gauge;

typedef struct metrics_histogram {
    const double *bounds; /* upper bounds, ascending; +Inf is implied */
    int nbounds;
    _Atomic uint64_t *buckets; /* nbounds + 1 non-cumulative counts */
    _Atomic uint64_t sum_bits; /* a double, updated by compare-and-swap */
} metrics_histogram;

/* Gauge whose value is computed at scrape time, e.g. a queue length. */
typedef double (*metrics_gauge_fn)(void *arg);

/* Standard latency buckets in seconds, 100 us to 10 s. */
extern const double metrics_latency_buckets[];
extern const int metrics_latency_nbuckets;

/* Caller frees with metrics_free. */
metrics_registry *metrics_new(void);
void metrics_free(metrics_registry *reg);

/*
 * Register a series. labels is the inside of the braces, already escaped (see
 * metrics_labels), or NULL; it is copied. The returned series is owned by the registry.
 * NULL when out of memory, or when name is already registered with another type.
 */
metrics_counter *metrics_counter_add(metrics_registry *reg, const char *name, const char *help,
                                     const char *labels);
metrics_gauge *metrics_gauge_add(metrics_registry *reg, const char *name, const char *help,
                                 const char *labels);
int metrics_gauge_fn_add(metrics_registry *reg, const char *name, const char *help,
                         const char *labels, metrics_gauge_fn fn, void *arg);
/* A counter computed at scrape time (it must never decrease), e.g. process_cpu_seconds_total. */
int metrics_counter_fn_add(metrics_registry *reg, const char *name, const char *help,
                           const char *labels, metrics_gauge_fn fn, void *arg);
/* bounds must outlive the registry (a static array). */
metrics_histogram *metrics_histogram_add(metrics_registry *reg, const char *name, const char *help,
                                         const char *labels, const double *bounds, int nbounds);

static inline void metrics_inc(metrics_counter *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

static inline void metrics_set(metrics_gauge *g, int64_t v)
{
    atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

static inline void metrics_add(metrics_gauge *g, int64_t d)
{
    atomic_fetch_add_explicit(&g->v, d, memory_order_relaxed);
}

void metrics_observe(metrics_histogram *h, double v);

/*
 * Builds a label string: pairs of name and value, ended by NULL, e.g.
 * metrics_labels(buf, sizeof buf, "grpc_method", "Echo", NULL). Values are escaped.
 * Returns 0, or TALLY_ETOOBIG if buf is too small.
 */
int metrics_labels(char *buf, size_t len, ...);

/* Renders every series. *out is malloc'd, caller frees. 0 or TALLY_ENOMEM. */
int metrics_render(metrics_registry *reg, char **out, size_t *outlen);

#endif
