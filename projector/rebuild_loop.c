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

/*
 * The registered tenants with work nobody does now, each prefixed with what: 'r' a rebuild
 * nobody holds, 'g' old generations left to delete (caller frees each and the array).
 */
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
        bool take = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                    r->element[0]->type == REDIS_REPLY_STRING &&
                    (r->element[1]->type != REDIS_REPLY_STRING ||
                     strtoll(r->element[1]->str, NULL, 10) < now_wall_ms());
        if (r)
            freeReplyObject(r);
        /* no rebuild, but old generations left to delete (a deletion cut short) */
        bool gc = false;
        if (!take && (r = redisCommand(c, "EXISTS {t:%s}:rebuild", m->element[i]->str))) {
            if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
                redisReply *g = redisCommand(c, "SCARD {t:%s}:gc", m->element[i]->str);
                gc = g && g->type == REDIS_REPLY_INTEGER && g->integer > 0;
                if (g)
                    freeReplyObject(g);
            }
            freeReplyObject(r);
        }
        if ((take || gc) && (v[n] = malloc(strlen(m->element[i]->str) + 2))) {
            v[n][0] = take ? 'r' : 'g'; /* what to do with it */
            strcpy(v[n] + 1, m->element[i]->str);
            n++;
        }
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
            const char *t = ts[i] + 1;
            if (!stopping() && ts[i][0] == 'g') {
                int64_t deleted = 0;
                if (rebuild_gc(kv_ctx(kv), t, &deleted, err, sizeof(err)) == 0)
                    log_info("rebuild: old generations deleted", LOG_STR("tenant", t),
                             LOG_INT("deleted_keys", deleted));
                else
                    log_warn("rebuild: deleting old generations failed; retrying later",
                             LOG_STR("tenant", t), LOG_STR("error", err));
            } else if (!stopping()) {
                log_info("rebuild: taking over", LOG_STR("tenant", t));
                int rc = rebuild_tenant(kv_ctx(kv), &o, t, &p, err, sizeof(err));
                if (rc == 0)
                    log_info("rebuild done", LOG_STR("tenant", t),
                             LOG_INT("generation", p.generation), LOG_INT("events", p.done),
                             LOG_INT("invalid", p.invalid), LOG_INT("deleted_keys", p.deleted));
                else if (rc != TALLY_ECANCELLED && rc != TALLY_EPRECOND)
                    log_warn("rebuild failed; retrying later", LOG_STR("tenant", t),
                             LOG_STR("error", err));
                else if (rc == TALLY_EPRECOND)
                    log_info("rebuild not taken", LOG_STR("tenant", t), LOG_STR("why", err));
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
