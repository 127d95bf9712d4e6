/*
 * verify_loop: the periodic verify run of the projector (verify_loop.h).
 */
#include "verify_loop.h"

#include "err.h"
#include "kv.h"
#include "log.h"
#include "now.h"
#include "pgx.h"
#include "svc.h"
#include "verify.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define REDIS_TIMEOUT_MS 30000
#define SQL_TIMEOUT_MS   300000

static vloop_config conf;
static pthread_t thread;
static bool started;
static atomic_bool quit;
static metrics_gauge *g_drift, *g_last;
static metrics_counter *c_runs, *c_errors;

static bool stopping(void)
{
    return atomic_load(&quit) || svc_stopping();
}

static void nap(int64_t ms)
{
    svc_nap_ms(ms, stopping);
}

typedef struct run_log {
    int64_t logged;
} run_log;

static void log_diff(const verify_diff *d, void *arg)
{
    run_log *l = arg;
    if (++l->logged > VLOOP_MAX_LOGGED)
        return;
    log_warn("verify drift", LOG_STR("tenant", d->tenant), LOG_STR("view", d->view),
             LOG_STR("key", d->key), LOG_STR("field", d->field),
             LOG_STR("expected", d->expected ? d->expected : "(none)"),
             LOG_STR("found", d->found ? d->found : "(none)"));
}

static void *loop(void *arg)
{
    (void)arg;
    pgx_conn *pg = pgx_new(conf.pg_dsn, "projector-verify", NULL, 0, SQL_TIMEOUT_MS);
    kv_conn *kv = kv_new(&conf.redis, REDIS_TIMEOUT_MS);
    verify_options o = { .days = conf.days,
                         .settle_ms = conf.settle_ms,
                         .timeout_ms = SQL_TIMEOUT_MS,
                         .stop = stopping };
    if (!pg || !kv) {
        log_error("verify: out of memory; periodic verify is off");
        goto out;
    }
    for (nap((int64_t)conf.every_s * 1000); !stopping(); nap((int64_t)conf.every_s * 1000)) {
        verify_stats st;
        run_log l = { 0 };
        char err[1024];
        int rc = verify_run(pg, kv, &o, log_diff, &l, &st, err, sizeof(err));
        if (stopping())
            break;
        if (rc) {
            metrics_inc(c_errors, 1);
            log_warn("verify failed", LOG_STR("error", err), LOG_INT("tenants", st.tenants));
            continue;
        }
        metrics_set(g_drift, st.diffs);
        metrics_set(g_last, now_wall_ms() / 1000);
        metrics_inc(c_runs, 1);
        if (st.diffs)
            log_warn("verify found drift", LOG_INT("differences", st.diffs),
                     LOG_INT("logged", st.diffs < VLOOP_MAX_LOGGED ? st.diffs : VLOOP_MAX_LOGGED),
                     LOG_INT("tenants", st.tenants), LOG_INT("total_ms", st.total_ms));
        else
            log_info("verify clean", LOG_INT("tenants", st.tenants), LOG_INT("keys", st.keys),
                     LOG_INT("fields", st.fields), LOG_INT("settled", st.settled),
                     LOG_INT("parked", st.parked), LOG_INT("total_ms", st.total_ms));
    }
out:
    pgx_free(pg);
    kv_free(kv);
    return NULL;
}

int vloop_start(const vloop_config *c)
{
    conf = *c;
    g_drift = metrics_gauge_add(c->metrics, "tally_projector_verify_drift",
                                "Differences between the read model and PostgreSQL found by the "
                                "last verify run (0 = none)",
                                NULL);
    g_last = metrics_gauge_add(c->metrics, "tally_projector_verify_last_run_timestamp_seconds",
                               "When the last verify run completed, Unix seconds", NULL);
    c_runs = metrics_counter_add(c->metrics, "tally_projector_verify_runs_total",
                                 "Verify runs completed", NULL);
    c_errors = metrics_counter_add(c->metrics, "tally_projector_verify_errors_total",
                                   "Verify runs that failed (PostgreSQL or Redis)", NULL);
    if (!g_drift || !g_last || !c_runs || !c_errors)
        return TALLY_ENOMEM;
    atomic_store(&quit, false);
    if (pthread_create(&thread, NULL, loop, NULL) != 0)
        return TALLY_ENOMEM;
    started = true;
    return 0;
}

void vloop_stop(void)
{
    if (!started)
        return;
    atomic_store(&quit, true);
    pthread_join(thread, NULL);
    started = false;
}
