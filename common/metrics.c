#include "metrics.h"

#include "err.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_COUNTER, K_GAUGE, K_GAUGE_FN, K_HISTOGRAM, K_COUNTER_FN };

typedef struct series {
    char *labels; /* "" when none */
    union {
        metrics_counter counter;
        metrics_gauge gauge;
        metrics_histogram hist;
        struct {
            metrics_gauge_fn fn;
            void *arg;
        } fn;
    } u;
    struct series *next;
} series;

typedef struct family {
    char *name, *help;
    enum kind kind;
    series *first, *last;
    struct family *next;
} family;

struct metrics_registry {
    pthread_mutex_t mu;
    family *first, *last;
};

const double metrics_latency_buckets[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                           0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                           1,      2.5,     5,      10 };
const int metrics_latency_nbuckets =
    (int)(sizeof(metrics_latency_buckets) / sizeof(metrics_latency_buckets[0]));

metrics_registry *metrics_new(void)
{
    metrics_registry *reg = calloc(1, sizeof(*reg));
    if (reg)
        pthread_mutex_init(&reg->mu, NULL);
    return reg;
}

void metrics_free(metrics_registry *reg)
{
    if (!reg)
        return;
    for (family *f = reg->first, *fn; f; f = fn) {
        fn = f->next;
        for (series *s = f->first, *sn; s; s = sn) {
            sn = s->next;
            if (f->kind == K_HISTOGRAM)
                free(s->u.hist.buckets);
            free(s->labels);
            free(s);
        }
        free(f->name);
        free(f->help);
        free(f);
    }
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

/* Finds or creates the family and appends a zeroed series. Called with reg->mu held. */
static series *add_series(metrics_registry *reg, const char *name, const char *help, enum kind kind,
                          const char *labels)
{
    family *f;
    series *s;
    for (f = reg->first; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            break;
    if (f && f->kind != kind)
        return NULL;
    if (!f) {
        f = calloc(1, sizeof(*f));
        if (!f)
            return NULL;
        f->name = strdup(name);
        f->help = strdup(help ? help : "");
        f->kind = kind;
        if (!f->name || !f->help) {
            free(f->name);
            free(f->help);
            free(f);
            return NULL;
        }
        if (reg->last)
            reg->last->next = f;
        else
            reg->first = f;
        reg->last = f;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->labels = strdup(labels ? labels : "");
    if (!s->labels) {
        free(s);
        return NULL;
    }
    if (f->last)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    return s;
}

metrics_counter *metrics_counter_add(metrics_registry *reg, const char *name, const char *help,
                                     const char *labels)
{
    pthread_mutex_lock(&reg->mu);
    series *s = add_series(reg, name, help, K_COUNTER, labels);
    pthread_mutex_unlock(&reg->mu);
    return s ? &s->u.counter : NULL;
}

metrics_gauge *metrics_gauge_add(metrics_registry *reg, const char *name, const char *help,
                                 const char *labels)
{
    pthread_mutex_lock(&reg->mu);
    series *s = add_series(reg, name, help, K_GAUGE, labels);
    pthread_mutex_unlock(&reg->mu);
    return s ? &s->u.gauge : NULL;
}

static int fn_add(metrics_registry *reg, const char *name, const char *help, const char *labels,
                  metrics_gauge_fn fn, void *arg, enum kind kind)
{
    pthread_mutex_lock(&reg->mu);
    series *s = add_series(reg, name, help, kind, labels);
    if (s) {
        s->u.fn.fn = fn;
        s->u.fn.arg = arg;
    }
    pthread_mutex_unlock(&reg->mu);
    return s ? 0 : TALLY_ENOMEM;
}

int metrics_gauge_fn_add(metrics_registry *reg, const char *name, const char *help,
                         const char *labels, metrics_gauge_fn fn, void *arg)
{
    return fn_add(reg, name, help, labels, fn, arg, K_GAUGE_FN);
}

int metrics_counter_fn_add(metrics_registry *reg, const char *name, const char *help,
                           const char *labels, metrics_gauge_fn fn, void *arg)
{
    return fn_add(reg, name, help, labels, fn, arg, K_COUNTER_FN);
}

metrics_histogram *metrics_histogram_add(metrics_registry *reg, const char *name, const char *help,
                                         const char *labels, const double *bounds, int nbounds)
{
    _Atomic uint64_t *buckets = calloc((size_t)nbounds + 1, sizeof(*buckets));
    if (!buckets)
        return NULL;
    pthread_mutex_lock(&reg->mu);
    series *s = add_series(reg, name, help, K_HISTOGRAM, labels);
    if (s) {
        s->u.hist.bounds = bounds;
        s->u.hist.nbounds = nbounds;
        s->u.hist.buckets = buckets;
    }
    pthread_mutex_unlock(&reg->mu);
    if (!s)
        free(buckets);
    return s ? &s->u.hist : NULL;
}

void metrics_observe(metrics_histogram *h, double v)
{
    int lo = 0, hi = h->nbounds; /* first bound >= v, or nbounds for +Inf */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v <= h->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit(&h->buckets[lo], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed), next;
    do {
        double sum;
        memcpy(&sum, &old, sizeof(sum));
        sum += v;
        memcpy(&next, &sum, sizeof(next));
    } while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

int metrics_labels(char *buf, size_t len, ...)
{
    va_list ap;
    size_t n = 0;
    const char *key;
    int rc = 0;
    if (len == 0)
        return TALLY_ETOOBIG;
    buf[0] = '\0';
    va_start(ap, len);
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *val = va_arg(ap, const char *);
        int w = snprintf(buf + n, len - n, "%s%s=\"", n ? "," : "", key);
        if (w < 0 || (size_t)w >= len - n) {
            rc = TALLY_ETOOBIG;
            break;
        }
        n += (size_t)w;
        for (const char *p = val ? val : ""; *p; p++) {
            const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
            size_t el = esc ? 2 : 1;
            if (n + el + 2 > len) { /* the bytes, the closing quote, the NUL */
                rc = TALLY_ETOOBIG;
                goto out;
            }
            if (esc)
                memcpy(buf + n, esc, 2);
            else
                buf[n] = *p;
            n += el;
        }
        if (n + 2 > len) { /* the closing quote and the NUL */
            rc = TALLY_ETOOBIG;
            break;
        }
        buf[n++] = '"';
        buf[n] = '\0';
    }
out:
    va_end(ap);
    if (rc)
        buf[0] = '\0';
    return rc;
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        if (b->oom)
            return;
        va_start(ap, fmt);
        int w = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (w >= 0 && (size_t)w < b->cap - b->len) {
            b->len += (size_t)w;
            return;
        }
        size_t cap = b->cap * 2 + (w > 0 ? (size_t)w : 0);
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* Prometheus wants +Inf/-Inf/NaN spelled so, and enough digits to round-trip. */
static void sb_value(sbuf *b, double v)
{
    if (isnan(v))
        sb_printf(b, "NaN\n");
    else if (isinf(v))
        sb_printf(b, v > 0 ? "+Inf\n" : "-Inf\n");
    else
        sb_printf(b, "%.17g\n", v);
}

static void render_hist(sbuf *b, const char *name, const series *s)
{
    const metrics_histogram *h = &s->u.hist;
    const char *sep = s->labels[0] ? "," : "";
    uint64_t cum = 0, bits;
    double sum;
    for (int i = 0; i <= h->nbounds; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->nbounds)
            sb_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, s->labels, sep, h->bounds[i],
                      (unsigned long long)cum);
        else
            sb_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, s->labels, sep,
                      (unsigned long long)cum);
    }
    bits = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    memcpy(&sum, &bits, sizeof(sum));
    if (s->labels[0])
        sb_printf(b, "%s_sum{%s} ", name, s->labels);
    else
        sb_printf(b, "%s_sum ", name);
    sb_value(b, sum);
    if (s->labels[0])
        sb_printf(b, "%s_count{%s} %llu\n", name, s->labels, (unsigned long long)cum);
    else
        sb_printf(b, "%s_count %llu\n", name, (unsigned long long)cum);
}

int metrics_render(metrics_registry *reg, char **out, size_t *outlen)
{
    static const char *const types[] = { "counter", "gauge", "gauge", "histogram", "counter" };
    sbuf b = { .p = malloc(4096), .cap = 4096 };
    if (!b.p)
        return TALLY_ENOMEM;
    b.p[0] = '\0';
    pthread_mutex_lock(&reg->mu);
    for (const family *f = reg->first; f; f = f->next) {
        sb_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, types[f->kind]);
        for (const series *s = f->first; s; s = s->next) {
            if (f->kind == K_HISTOGRAM) {
                render_hist(&b, f->name, s);
                continue;
            }
            if (s->labels[0])
                sb_printf(&b, "%s{%s} ", f->name, s->labels);
            else
                sb_printf(&b, "%s ", f->name);
            if (f->kind == K_COUNTER)
                sb_printf(&b, "%llu\n",
                          (unsigned long long)atomic_load_explicit(&s->u.counter.v,
                                                                   memory_order_relaxed));
            else if (f->kind == K_GAUGE)
                sb_printf(&b, "%lld\n",
                          (long long)atomic_load_explicit(&s->u.gauge.v, memory_order_relaxed));
            else
                sb_value(&b, s->u.fn.fn(s->u.fn.arg));
        }
    }
    pthread_mutex_unlock(&reg->mu);
    if (b.oom) {
        free(b.p);
        return TALLY_ENOMEM;
    }
    *out = b.p;
    *outlen = b.len;
    return 0;
}
