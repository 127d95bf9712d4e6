/*
 * projector: keeps the Redis read model. Consumes tally:events:<p> in the consumer group
 * "projector" and applies every event exactly once, in order per complaint (consumer.h).
 * No gRPC API: an HTTP port for /metrics, /healthz (the loop turns) and /readyz (Redis answers).
 * With TALLY_PG_DSN set it also verifies the read model against PostgreSQL every
 * TALLY_PROJECTOR_VERIFY_EVERY_S seconds, on a thread of its own (verify_loop.h); otherwise
 * the projector never touches PostgreSQL.
 */
#include "consumer.h"
#include "err.h"
#include "log.h"
#include "now.h"
#include "probe.h"
#include "rebuild_loop.h"
#include "svc.h"
#include "verify.h"
#include "verify_loop.h"
#include "version.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STUCK_MS       30000 /* a loop that has not turned for this long is not alive */
#define VERIFY_DEFAULT 300   /* seconds between verify runs when TALLY_PG_DSN is set */

static proj_config conf;
static long long partitions, batch, block_ms, claim_idle_ms, gap_timeout_ms, max_attempts;
static long long verify_every_s, verify_days, verify_settle_ms;
static bool rebuilds;
static const char *consumer;
static char default_consumer[128];

/* Liveness: the loop turned recently (it does at least every block_ms when idle). */
static int loop_alive(void *arg, char *why, size_t whylen)
{
    (void)arg;
    int64_t beat = proj_heartbeat_ms(), age = now_mono_ms() - beat;
    if (beat == 0 || age < STUCK_MS)
        return 0;
    snprintf(why, whylen, "the consume loop has not turned for %lld ms", (long long)age);
    return TALLY_ETIMEOUT;
}

static int setup(const svc_env *env, void *arg)
{
    (void)arg;
    conf = (proj_config){ .redis = env->cfg->redis,
                          .partitions = (int)partitions,
                          .batch = (int)batch,
                          .block_ms = (int)block_ms,
                          .claim_idle_ms = (int)claim_idle_ms,
                          .gap_timeout_ms = (int)gap_timeout_ms,
                          .max_attempts = (int)max_attempts,
                          .consumer = consumer[0] ? consumer : default_consumer,
                          .metrics = env->metrics };
    http_set_live_check(env->http, loop_alive, NULL);
    int rc = http_add_ready_check(env->http, "redis", probe_redis, (void *)&env->cfg->redis);
    if (!rc)
        rc = http_add_ready_check(env->http, "projector", proj_ready, NULL);
    if (rc)
        return rc;
    /* -1, the default: on when the projector was given PostgreSQL, off otherwise. */
    const char *dsn = getenv("TALLY_PG_DSN");
    if (verify_every_s < 0)
        verify_every_s = dsn && dsn[0] ? VERIFY_DEFAULT : 0;
    if (verify_every_s > 0) {
        vloop_config vc = { .pg_dsn = env->cfg->pg_dsn,
                            .redis = env->cfg->redis,
                            .every_s = (int)verify_every_s,
                            .days = (int)verify_days,
                            .settle_ms = (int)verify_settle_ms,
                            .metrics = env->metrics };
        if ((rc = vloop_start(&vc))) {
            log_error("cannot start the verify thread", LOG_STR("error", tally_err_str(rc)));
            return rc;
        }
        log_info("periodic verify on", LOG_INT("every_s", verify_every_s),
                 LOG_INT("days", verify_days), LOG_INT("settle_ms", verify_settle_ms));
    }
    /* With PostgreSQL it also finishes rebuilds nobody holds (a changed view's, a dead one's). */
    if (dsn && dsn[0] && rebuilds) {
        rloop_config rc_ = { .pg_dsn = env->cfg->pg_dsn,
                             .redis = env->cfg->redis,
                             .consumer = conf.consumer };
        if ((rc = rloop_start(&rc_))) {
            log_error("cannot start the rebuild thread", LOG_STR("error", tally_err_str(rc)));
            return rc;
        }
    }
    return 0;
}

static void teardown(void *arg)
{
    (void)arg;
    rloop_stop();
    vloop_stop();
}

static int run(const svc_env *env, void *arg)
{
    (void)env;
    (void)arg;
    log_info("projector consuming", LOG_STR("consumer", conf.consumer),
             LOG_INT("partitions", conf.partitions), LOG_INT("batch", conf.batch));
    return proj_run(&conf) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    int args = version_only_args(argc, argv, "projector");
    if (args >= 0)
        return args;
    /* A batch's buffers (its replies, hiredis's output buffer, the merged write's arguments) are
       megabytes, freed and allocated again every batch: glibc gave them back to the kernel and
       faulted them in again, a fifth of the projector's CPU. Keep them in the heap instead. */
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    static const cfg_var vars[] = {
        { "TALLY_STREAM_PARTITIONS", CFG_INT, "1", 1, 256, 0, &partitions,
          "number of event streams tally:events:<p> (as command-svc)" },
        { "TALLY_PROJECTOR_BATCH", CFG_INT, "2000", 1, 10000, 0, &batch,
          "stream entries read per batch" },
        { "TALLY_PROJECTOR_BLOCK_MS", CFG_INT, "1000", 10, 10000, 0, &block_ms,
          "how long a read waits for new entries" },
        { "TALLY_PROJECTOR_CLAIM_IDLE_MS", CFG_INT, "30000", 1000, 3600000, 0, &claim_idle_ms,
          "entries pending this long with another consumer (a dead one) are reclaimed" },
        { "TALLY_PROJECTOR_GAP_TIMEOUT_MS", CFG_INT, "30000", 100, 3600000, 0, &gap_timeout_ms,
          "how long an event waits for its complaint's previous version before it is parked" },
        { "TALLY_PROJECTOR_MAX_ATTEMPTS", CFG_INT, "5", 1, 100, 0, &max_attempts,
          "failed applies of one event before it is parked" },
        { "TALLY_PROJECTOR_CONSUMER", CFG_STR, "", 0, 0, 0, &consumer,
          "this process's name in the consumer group (default: host name and pid)" },
        { "TALLY_PROJECTOR_VERIFY_EVERY_S", CFG_INT, "-1", -1, 86400, 0, &verify_every_s,
          "seconds between verify runs against PostgreSQL; 0 off, -1 300 if TALLY_PG_DSN is set" },
        { "TALLY_PROJECTOR_VERIFY_DAYS", CFG_INT, "35", 1, VERIFY_MAX_DAYS, 0, &verify_days,
          "the verify window: the last N tenant-local days (and their whole months)" },
        { "TALLY_PROJECTOR_REBUILDS", CFG_BOOL, "true", 0, 0, 0, &rebuilds,
          "with TALLY_PG_DSN: finish rebuilds nobody holds (a newer view's, a dead rebuilder's)" },
        { "TALLY_PROJECTOR_VERIFY_SETTLE_MS", CFG_INT, "5000", 0, VERIFY_MAX_SETTLE_MS, 0,
          &verify_settle_ms, "how long verify waits before re-reading what lags (in flight)" },
    };
    char host[64] = "projector";
    gethostname(host, sizeof(host) - 1);
    snprintf(default_consumer, sizeof(default_consumer), "%s-%d", host, (int)getpid());
    svc_def def = { .name = "projector",
                    .http_port = 9092,
                    .vars = vars,
                    .nvars = sizeof(vars) / sizeof(vars[0]),
                    .setup = setup,
                    .run = run,
                    .teardown = teardown };
    return svc_main(&def);
}
