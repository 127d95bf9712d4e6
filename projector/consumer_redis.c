/*
 * consumer_redis: the projector's Redis connection (consumer_int.h): commands that reset the
 * connection after an I/O error, the systemic error replies, and what a new connection sets up
 * before the loop reads (the maxmemory-policy check, the versioned apply function, the groups).
 */
#include "consumer_int.h"

#include "err.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

redisReply *proj_command_argv(proj *p, int argc, const char **argv, const size_t *lens)
{
    redisContext *c = kv_ctx(p->kv);
    redisReply *r = c ? redisCommandArgv(c, argc, argv, lens) : NULL;
    if (!r)
        kv_reset(p->kv);
    return r;
}

redisReply *proj_command(proj *p, const char *fmt, ...)
{
    redisContext *c = kv_ctx(p->kv);
    redisReply *r = NULL;
    if (c) {
        va_list ap;
        va_start(ap, fmt);
        r = redisvCommand(c, fmt, ap);
        va_end(ap);
    }
    if (!r)
        kv_reset(p->kv);
    return r;
}

bool proj_systemic(proj *p, const redisReply *r, const char *doing)
{
    const char *err = r && r->type == REDIS_REPLY_ERROR ? r->str : NULL;
    const char *kind = kv_systemic_kind(err);
    if (!kind)
        return false;
    for (int i = 0; i < KV_SYSTEMIC_KINDS; i++)
        if (strcmp(kind, kv_systemic_kinds[i]) == 0)
            metrics_inc(p->systemic[i], 1);
    metrics_inc(p->unavailable, 1);
    if (!p->refusing) /* once per episode; the metric counts every refusal */
        log_warn("Redis refuses writes; not reading until it takes them again",
                 LOG_STR("while", doing), LOG_STR("error", err));
    p->refusing = true;
    snprintf(p->sys_err, sizeof(p->sys_err), "%s", err);
    if (kv_reconnect_on(err))
        kv_reset(p->kv);
    return true;
}

int proj_flush(proj *p)
{
    int done = 0;
    while (!done)
        if (redisBufferWrite(kv_ctx(p->kv), &done) != REDIS_OK)
            return TALLY_EUNAVAIL;
    return 0;
}

int proj_load_function(proj *p)
{
    const char *argv[] = { "FUNCTION", "LOAD", p->view.lua };
    size_t lens[] = { 8, 4, strlen(p->view.lua) };
    redisReply *r = proj_command_argv(p, 3, argv, lens);
    int rc = r ? 0 : TALLY_EUNAVAIL;
    if (r && r->type == REDIS_REPLY_ERROR && !strstr(r->str, "already exists")) {
        if (!proj_systemic(p, r, "loading the apply function"))
            log_error("cannot load the apply function", LOG_STR("error", r->str));
        rc = TALLY_EUNAVAIL;
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

/*
 * An evicting maxmemory-policy would drop keys of the read model (a complaint's applied version
 * among them: its events would then be applied twice): refused. volatile-* policies evict only
 * keys with a TTL, which Tally never sets: allowed. A Redis that hides CONFIG (some managed
 * services) is used with a warning.
 */
static int check_policy(proj *p)
{
    redisReply *r = proj_command(p, "CONFIG GET maxmemory-policy");
    int rc = r ? 0 : TALLY_EUNAVAIL;
    p->refused = NULL;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        strncmp(r->element[1]->str, "allkeys-", 8) == 0) {
        static char why[96];
        snprintf(why, sizeof(why), "Redis evicts keys (maxmemory-policy %.40s)",
                 r->element[1]->str);
        p->refused = why;
        log_error("Redis would evict read-model keys; refusing to apply events: set "
                  "maxmemory-policy noeviction",
                  LOG_STR("maxmemory_policy", r->element[1]->str));
        rc = TALLY_EPRECOND;
    } else if (r && r->type == REDIS_REPLY_ERROR && !p->started) {
        log_warn("cannot read Redis's maxmemory-policy; make sure it is noeviction",
                 LOG_STR("error", r->str));
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

static int create_groups(proj *p)
{
    for (int i = 0; i < p->conf->partitions; i++) {
        redisReply *r =
            proj_command(p, "XGROUP CREATE %s %s 0 MKSTREAM", p->streams[i], STREAM_GROUP);
        if (!r)
            return TALLY_EUNAVAIL;
        bool ok = r->type != REDIS_REPLY_ERROR || strncmp(r->str, "BUSYGROUP", 9) == 0;
        if (!ok && !proj_systemic(p, r, "creating the consumer group"))
            log_error("cannot create the consumer group", LOG_STR("stream", p->streams[i]),
                      LOG_STR("error", r->str));
        freeReplyObject(r);
        if (!ok)
            return TALLY_EUNAVAIL;
    }
    return 0;
}

int proj_prepare(proj *p)
{
    if (kv_ctx(p->kv))
        return 0;
    int rc = kv_connect(p->kv);
    if (rc == 0)
        rc = check_policy(p);
    if (rc == 0)
        rc = proj_load_function(p);
    if (rc == 0)
        rc = create_groups(p);
    if (rc != 0) {
        kv_reset(p->kv);
        return rc;
    }
    /* Whatever we read before and did not ack is in our pending list: start there. */
    proj_msgs_clear(&p->retry);
    proj_msgs_clear(&p->ahead);
    /* This may be another Redis (restarted empty, restored from a snapshot, a promoted
       replica): watermark candidates of the old one prove nothing here. */
    memset(p->marks, 0, sizeof(p->marks));
    memset(p->wm, 0, sizeof(p->wm));
    /* Every partition has a field, "0" (unknown) until its first watermark: query-svc takes the
       lowest, so a partition no watermark reached yet is never left out. */
    for (int i = 0; i < p->conf->partitions; i++) {
        redisReply *r = proj_command(p, "HSETNX %s %d 0", STREAM_WM_KEY, i);
        if (r)
            freeReplyObject(r);
    }
    p->read_pending = true;
    p->next_claim_ms = 0;
    p->started = true;
    log_info("projector connected to Redis", LOG_STR("consumer", p->conf->consumer),
             LOG_STR("function", p->fn));
    return 0;
}
