/*
 * rebuild_loop: the projector's rebuild runner (rebuild_loop.h).
 */
#include "rebuild_loop.h"

#include "err.h"
#include "kv.h"
#include "log.h"
#include "now.h"
#include "rebuild.h"
#include "svc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REDIS_TIMEOUT_MS 30000
#define EVERY_MS         2000

static rloop_config conf;
static pthread_t thread;
static bool started;
static atomic_bool quit;

static bool stopping(void)
{
    return atomic_load(&quit) || svc_stopping();
}

static void on_progress(const rebuild_progress *p, void *arg)
{
    (void)arg;
    log_info("rebuild progress", LOG_STR("tenant", p->tenant), LOG_STR("phase", p->phase),
             LOG_INT("generation", p->generation), LOG_INT("done", p->done),
             LOG_INT("total", p->total), LOG_INT("rate", (int64_t)p->rate),
             LOG_INT("eta_ms", p->eta_ms));
}

/* The registered tenants whose rebuild nobody holds now (caller frees each and the array). */
static size_t orphans(redisContext *c, char ***out)
{
    *out = NULL;
    redisReply *m = redisCommand(c, "SMEMBERS %s", REBUILD_REGISTRY_KEY);
    if (!m || m->type != REDIS_REPLY_ARRAY || !m->elements) {
        if (m)
            freeReplyObject(m);
        return 0;
    }
    char **v = calloc(m->elements, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; v && i < m->elements; i++) {
        redisReply *r = redisCommand(c, "HMGET {t:%s}:rebuild gen lease_until", m->element[i]->str);
        if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[0]->type == REDIS_REPLY_STRING &&
            (r->element[1]->type != REDIS_REPLY_STRING ||
             strtoll(r->element[1]->str, NULL, 10) < now_wall_ms()) &&
            (v[n] = strdup(m->element[i]->str)))
            n++;
        if (r)
            freeReplyObject(r);
    }
    freeReplyObject(m);
    *out = v;
    return n;
}

static void *loop(void *arg)
{
    (void)arg;
    kv_conn *kv = kv_new(&conf.redis, REDIS_TIMEOUT_MS);
    char owner[160], host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(owner, sizeof(owner), "projector:%.60s:%.40s:%ld", host, conf.consumer,
             (long)getpid());
    rebuild_opts o = { .pg_dsn = conf.pg_dsn,
                       .owner = owner,
                       .progress_every_ms = 10000,
                       .progress = on_progress,
                       .stop = stopping };
    if (!kv) {
        log_error("rebuild: out of memory; the projector runs no rebuilds");
        return NULL;
    }
    for (; !stopping(); svc_nap_ms(EVERY_MS, stopping)) {
        if (kv_connect(kv) != 0)
            continue;
        char **ts;
        size_t n = orphans(kv_ctx(kv), &ts);
        for (size_t i = 0; i < n; i++) {
            char err[512];
            rebuild_progress p;
            if (!stopping()) {
                log_info("rebuild: taking over", LOG_STR("tenant", ts[i]));
                int rc = rebuild_tenant(kv_ctx(kv), &o, ts[i], &p, err, sizeof(err));
                if (rc == 0)
                    log_info("rebuild done", LOG_STR("tenant", ts[i]),
                             LOG_INT("generation", p.generation), LOG_INT("events", p.done),
                             LOG_INT("invalid", p.invalid), LOG_INT("deleted_keys", p.deleted));
                else if (rc != TALLY_ECANCELLED && rc != TALLY_EPRECOND)
                    log_warn("rebuild failed; retrying later", LOG_STR("tenant", ts[i]),
                             LOG_STR("error", err));
                else if (rc == TALLY_EPRECOND)
                    log_info("rebuild not taken", LOG_STR("tenant", ts[i]), LOG_STR("why", err));
                if (rc == TALLY_EUNAVAIL)
                    kv_reset(kv);
            }
            free(ts[i]);
        }
        free(ts);
    }
    kv_free(kv);
    return NULL;
}

int rloop_start(const rloop_config *c)
{
    conf = *c;
    atomic_store(&quit, false);
    if (pthread_create(&thread, NULL, loop, NULL) != 0)
        return TALLY_ENOMEM;
    started = true;
    return 0;
}

void rloop_stop(void)
{
    if (!started)
        return;
    atomic_store(&quit, true);
    pthread_join(thread, NULL);
    started = false;
}
