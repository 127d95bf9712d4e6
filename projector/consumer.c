/*
 * consumer: the projector's loop (contract in consumer.h; what each turn calls is in the
 * consumer_*.c files beside it, listed in consumer_int.h). Each turn connects if it must,
 * reclaims, takes the due retries, reads, handles the batch, reports losses, settles the
 * watermark and, now and then, samples the group and forgets dead consumers; a failed turn
 * backs off and says why on /readyz.
 */
#include "consumer_int.h"
#include "plan.h"

#include "err.h"
#include "log.h"
#include "now.h"
#include "svc.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PENDING_EVERY_MS 5000
#define REDIS_TIMEOUT_MS 10000

/* Readiness, as the loop last saw it (read by the HTTP thread). */
static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static char not_ready[200] = "not connected to Redis yet";

static _Atomic int64_t heartbeat;

static const double lag_buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1,     2.5,    5,     10,   30,    60,   300, 900,  3600 };

int64_t proj_heartbeat_ms(void)
{
    return atomic_load(&heartbeat);
}

int proj_ready(void *arg, char *why, size_t whylen)
{
    (void)arg;
    pthread_mutex_lock(&ready_lock);
    int rc = not_ready[0] ? TALLY_EUNAVAIL : 0;
    if (rc)
        snprintf(why, whylen, "%s", not_ready);
    pthread_mutex_unlock(&ready_lock);
    return rc;
}

/* The loop's state for /readyz: "" when it applies events, else why not. */
static void set_ready(proj *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_ready(proj *p, const char *fmt, ...)
{
    char buf[sizeof(not_ready)] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
    }
    pthread_mutex_lock(&ready_lock);
    snprintf(not_ready, sizeof(not_ready), "%s", buf);
    pthread_mutex_unlock(&ready_lock);
    metrics_set(p->ready_gauge, buf[0] == '\0');
}

/* The lag sample's gauges (common/lag.h), by PG_* index; one series per partition. */
static const struct {
    const char *name, *help;
} part_series[PG_COUNT] = {
    [PG_LENGTH] = { "tally_projector_partition_stream_length",
                    "Entries in the stream tally:events:<p> (XLEN)." },
    [PG_UNDELIVERED] = { "tally_projector_partition_undelivered",
                         "Entries of the stream the group has not read yet (XINFO GROUPS lag; "
                         "counted up to 1000 when Redis does not know it)." },
    [PG_PENDING] = { "tally_projector_partition_pending",
                     "Entries read by the group and not yet acked." },
    [PG_DEAD] = { "tally_projector_partition_dead_letters",
                  "Entries in the dead-letter stream tally:dead:<p>." },
    [PG_OLDEST_AGE] = { "tally_projector_partition_oldest_unapplied_age_seconds",
                        "Age of the oldest entry not applied yet (the smallest pending id, else "
                        "the first undelivered one), on Redis's clock; 0 when all is applied." },
    [PG_WM_AGE] = { "tally_projector_partition_watermark_age_seconds",
                    "Age of the partition's completeness watermark (tally:wm), on Redis's clock; "
                    "an unknown watermark is as old as 1970." },
};

static void register_partition_metrics(proj *p, metrics_registry *reg)
{
    for (int k = 0; k < PG_COUNT; k++)
        for (int part = 0; part < p->conf->partitions; part++) {
            char label[32], num[12];
            snprintf(num, sizeof(num), "%d", part);
            metrics_labels(label, sizeof(label), "partition", num, NULL);
            p->part_gauges[part].g[k] =
                metrics_gauge_add(reg, part_series[k].name, part_series[k].help, label);
        }
}

static void register_metrics(proj *p, metrics_registry *reg)
{
    p->applied = metrics_counter_add(reg, "tally_projector_events_applied_total",
                                     "Events applied to the read model.", NULL);
    p->dups = metrics_counter_add(reg, "tally_projector_duplicates_total",
                                  "Events skipped as duplicates (version already applied).", NULL);
    p->merged = metrics_counter_add(reg, "tally_projector_merged_writes_total",
                                    "Runs of one tenant's events applied as one merged write "
                                    "(counted in the projector, plan.h).",
                                    NULL);
    p->unmerged = metrics_counter_add(
        reg, "tally_projector_merge_fallbacks_total",
        "Merged writes refused with nothing written (a redelivery or gap, a rebuild, a parked "
        "complaint): their events went through tally_apply instead (one call, split per event "
        "if it fails).",
        NULL);
    p->read_ahead = metrics_counter_add(
        reg, "tally_projector_reads_ahead_total",
        "Batches read while the batch before them was applied (with a backlog), so that they are "
        "decoded while Redis applies.",
        NULL);
    p->gaps = metrics_counter_add(reg, "tally_projector_gaps_total",
                                  "Applies refused because an earlier version was missing.", NULL);
    p->notified = metrics_counter_add(reg, "tally_projector_changes_published_total",
                                      "Tenants announced on " STREAM_CHANGES_CHANNEL
                                      " after a batch changed their read model "
                                      "(what WatchDashboard streams follow).",
                                      NULL);
    p->parked = metrics_counter_add(reg, "tally_projector_parked_total",
                                    "Events moved to the dead-letter streams.", NULL);
    p->failures = metrics_counter_add(reg, "tally_projector_apply_failures_total",
                                      "FCALLs that failed (Redis errors in the function).", NULL);
    p->batch_seconds = metrics_histogram_add(reg, "tally_projector_batch_seconds",
                                             "Time to apply and ack one batch.", NULL,
                                             metrics_latency_buckets, metrics_latency_nbuckets);
    p->lag_seconds = metrics_histogram_add(
        reg, "tally_projector_lag_seconds",
        "Apply time minus the event's commit time, for live (not imported) events.", NULL,
        lag_buckets, (int)(sizeof(lag_buckets) / sizeof(lag_buckets[0])));
    p->rb_running = metrics_gauge_add(reg, "tally_projector_rebuilds_running",
                                      "Tenant rebuilds begun and not ended (tally rebuild).", NULL);
    p->rb_stalled = metrics_gauge_add(
        reg, "tally_projector_rebuilds_stalled",
        "Running rebuilds whose rebuilder's lease has expired: it died; run tally rebuild again "
        "to resume.",
        NULL);
    p->rb_done =
        metrics_gauge_add(reg, "tally_projector_rebuild_events_done",
                          "Events read into new generations by the running rebuilds.", NULL);
    p->rb_total = metrics_gauge_add(reg, "tally_projector_rebuild_events_planned",
                                    "Events the running rebuilds read in all.", NULL);
    p->rb_eta = metrics_gauge_add(reg, "tally_projector_rebuild_eta_seconds",
                                  "The longest estimated time left of a running rebuild.", NULL);
    p->pending = metrics_gauge_add(reg, "tally_projector_stream_pending",
                                   "Entries read by the group and not yet acked.", NULL);
    p->retrying = metrics_gauge_add(reg, "tally_projector_retry_queue",
                                    "Events waiting for a retry (gaps, failures).", NULL);
    p->lost = metrics_counter_add(
        reg, "tally_projector_events_lost_total",
        "Stream entries found trimmed or deleted before they were applied (each reported to the "
        "relay, which republishes them from PostgreSQL).",
        NULL);
    p->spilled = metrics_counter_add(
        reg, "tally_projector_retry_spilled_total",
        "Events left in the pending list because the retry queue was full (reclaimed later).",
        NULL);
    p->unavailable = metrics_counter_add(
        reg, "tally_projector_redis_refusals_total",
        "Systemic Redis error replies (OOM, READONLY, ...): the projector backed off.", NULL);
    for (int i = 0; i < KV_SYSTEMIC_KINDS; i++) {
        char label[40];
        snprintf(label, sizeof(label), "kind=\"%s\"", kv_systemic_kinds[i]);
        p->systemic[i] = metrics_counter_add(reg, "tally_projector_redis_errors_total",
                                             "Systemic Redis error replies, by kind.", label);
    }
    p->dead = metrics_gauge_add(reg, "tally_projector_dead_letters",
                                "Entries in the dead-letter streams tally:dead:<p> (alert when "
                                "above 0: parked events wait for an operator).",
                                NULL);
    p->wm_gauge = metrics_gauge_add(
        reg, "tally_projector_watermark_timestamp_seconds",
        "The read model is complete up to this time (every event committed before it is applied "
        "or parked); the lowest over the partitions. 0 until the relay's first watermark.",
        NULL);
    register_partition_metrics(p, reg);
    p->ready_gauge = metrics_gauge_add(reg, "tally_projector_ready",
                                       "1 while the projector applies events (its /readyz).", NULL);
    p->beat = metrics_gauge_add(reg, "tally_projector_heartbeat_timestamp_seconds",
                                "Wall time of the consume loop's last turn (it turns at least "
                                "every TALLY_PROJECTOR_BLOCK_MS, traffic or not).",
                                NULL);
}

int proj_run(const proj_config *conf)
{
    proj p = { .conf = conf };
    proj_msgs batch = { 0 };
    bool down = false;
    if (conf->partitions < 1 || conf->partitions > STREAM_PARTITIONS_MAX)
        return TALLY_EINVAL;
    for (int i = 0; i < conf->partitions; i++)
        stream_key(i, p.streams[i], sizeof(p.streams[i]));
    p.kv = kv_new(&conf->redis,
                  REDIS_TIMEOUT_MS > conf->block_ms * 2 ? REDIS_TIMEOUT_MS : conf->block_ms * 2);
    if (!p.kv)
        return TALLY_ENOMEM;
    backoff_init(&p.bo, 50, 5000);
    /* A gap's missing event may sit in a dead consumer's unacked batch: it becomes claimable
       claim_idle_ms after that read and is claimed at a later claim round (one may just miss
       it), so a gap is never parked before three claim periods have passed. */
    p.gap_wait_ms = conf->gap_timeout_ms;
    if (p.gap_wait_ms < 3 * (int64_t)conf->claim_idle_ms + conf->block_ms)
        p.gap_wait_ms = 3 * (int64_t)conf->claim_idle_ms + conf->block_ms;
    register_metrics(&p, conf->metrics);
    if (proj_view_init(&p.view) != 0) {
        kv_free(p.kv);
        return TALLY_EINTERNAL;
    }
    proj_view_fn(&p.view, "tally_apply", p.fn, sizeof(p.fn));
    proj_view_fn(&p.view, "tally_apply_merged", p.merged_fn, sizeof(p.merged_fn));

    /* On SIGTERM the batch read ahead is applied too (nothing is read ahead once stopping). */
    while (!svc_stopping() || p.ahead.n > 0) {
        int64_t now = now_mono_ms();
        atomic_store(&heartbeat, now);
        metrics_set(p.beat, now_wall_ms() / 1000);
        p.sys_err[0] = '\0';
        int rc = proj_prepare(&p);
        if (rc == TALLY_EPRECOND && !p.started)
            break; /* refused at start: the process exits non-zero, the log says why */
        if (rc == 0) {
            if (down)
                log_info("Redis is back");
            down = false;
            /* Claimed entries first: a retry due now may be waiting for one of them. */
            if (now >= p.next_claim_ms) {
                rc = proj_claim(&p, &batch);
                p.next_claim_ms = now + conf->claim_idle_ms;
            }
            proj_due_retries(&p, &batch, now);
            if (rc == 0 && p.ahead.n > 0) /* read ahead during the last batch: the read */
                proj_msgs_move(&batch, &p.ahead);
            else if (rc == 0) /* new entries too: retries must not starve them */
                rc = proj_read_batch(&p, &batch, batch.n == 0);
            if (rc == 0 && batch.n > 0) {
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                rc = proj_handle(&p, batch.v, batch.n);
                batch.n = 0; /* handle took the messages over */
                clock_gettime(CLOCK_MONOTONIC, &t1);
                metrics_observe(p.batch_seconds, (double)(t1.tv_sec - t0.tv_sec) +
                                                     (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
            }
            proj_msgs_clear(&batch);
            if (rc == 0 && p.lost_ms)
                rc = proj_report_lost(&p);
            if (rc == 0)
                proj_settle_watermarks(&p);
            if (rc == 0 && now >= p.next_pending_ms) {
                proj_sample_pending(&p);
                p.next_pending_ms = now + PENDING_EVERY_MS;
            }
            if (rc == 0 && now >= p.next_consumers_ms) {
                proj_forget_dead_consumers(&p);
                p.next_consumers_ms = now + conf->claim_idle_ms;
            }
            metrics_set(p.retrying, (int64_t)p.retry.n);
        }
        if (rc == 0) {
            if (p.refusing)
                log_info("Redis takes writes again");
            p.refusing = false;
            set_ready(&p, NULL);
            backoff_reset(&p.bo);
            continue;
        }
        if (p.refused)
            set_ready(&p, "%s", p.refused);
        else if (p.sys_err[0])
            set_ready(&p, "Redis refuses writes (%.150s)", p.sys_err);
        else
            set_ready(&p, "Redis unavailable: %.150s", kv_errstr(p.kv));
        if (!down && !p.sys_err[0] && !p.refused)
            log_warn("Redis unavailable, retrying", LOG_STR("error", kv_errstr(p.kv)));
        down = true;
        if (rc != TALLY_ENOMEM) {
            proj_msgs_clear(&p.ahead); /* pending: read again after the reconnect */
            kv_reset(p.kv); /* the next turn reconnects and reads our pending entries again */
        }
        backoff_sleep_ms(backoff_next(&p.bo));
    }
    proj_msgs_clear(&p.retry);
    free(p.retry.v);
    proj_msgs_clear(&p.ahead);
    free(p.ahead.v);
    free(batch.v);
    kv_free(p.kv);
    proj_plan_free(p.plan);
    proj_view_free(&p.view);
    if (p.refused && !p.started)
        return TALLY_EPRECOND;
    log_info("projector stopped", LOG_STR("consumer", conf->consumer));
    return 0;
}
