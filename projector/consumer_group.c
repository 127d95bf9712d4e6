/*
 * consumer_group: the group's housekeeping between batches (consumer_int.h): the sample of the
 * streams' lag (common/lag.h: lengths, undelivered and pending entries, ages, dead letters), the
 * watermark that holds, and the removal of consumers that are gone.
 */
#include "consumer_int.h"
#include "rebuild.h"

#include "err.h"
#include "lag.h"
#include "log.h"
#include "now.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void proj_sample_pending(proj *p)
{
    lag_sample *s = malloc(sizeof(*s));
    char err[200];
    long long total = 0, dead = 0;
    if (!s || !kv_ctx(p->kv)) {
        free(s);
        return;
    }
    int rc = lag_read(kv_ctx(p->kv), p->conf->partitions, s, err, sizeof(err));
    if (rc == TALLY_EUNAVAIL)
        kv_reset(p->kv);
    else if (rc != 0) /* a damaged stream: its gauges stay as they were */
        log_warn("cannot sample the streams' lag", LOG_STR("error", err));
    for (int part = 0; rc == 0 && part < p->conf->partitions; part++) {
        const lag_part *lp = &s->part[part];
        const proj_part_gauges *g = &p->part_gauges[part];
        total += lp->pending;
        dead += lp->dead;
        metrics_set(g->g[PG_LENGTH], lp->length);
        metrics_set(g->g[PG_UNDELIVERED], lp->undelivered);
        metrics_set(g->g[PG_PENDING], lp->pending);
        metrics_set(g->g[PG_DEAD], lp->dead);
        metrics_set(g->g[PG_OLDEST_AGE], lag_age_ms(s->now_ms, lp->oldest_ms) / 1000);
        /* An unknown watermark is complete since 1970 only, as query-svc reports it. */
        metrics_set(g->g[PG_WM_AGE],
                    (lp->wm_ms ? lag_age_ms(s->now_ms, lp->wm_ms) : s->now_ms) / 1000);
        /* tally:wm's field, "0" (unknown) if a flush took it while we stayed connected. */
        redisReply *r = lp->wm_set ? NULL : proj_command(p, "HSETNX %s %d 0", STREAM_WM_KEY, part);
        if (r)
            freeReplyObject(r);
    }
    free(s);
    if (rc != 0)
        return;
    metrics_set(p->pending, total);
    metrics_set(p->dead, dead);
    rebuild_summary rs;
    if (rebuild_sample(kv_ctx(p->kv), now_wall_ms(), &rs) != 0) {
        kv_reset(p->kv);
        return;
    }
    metrics_set(p->rb_running, rs.running);
    metrics_set(p->rb_stalled, rs.stalled);
    metrics_set(p->rb_done, rs.done);
    metrics_set(p->rb_total, rs.total);
    metrics_set(p->rb_eta, rs.eta_s);
}

void proj_settle_watermarks(proj *p)
{
    static const char *script =
        "local c = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')\n"
        "if tonumber(ARGV[2]) > c then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end\n"
        "return 0";
    int64_t low = 0;
    bool any = false;
    for (int part = 0; part < p->conf->partitions; part++)
        any |= p->marks[part].n > 0;
    if (any) {
        /* A loss reported and not yet repaired, or a repair running: the group's
           acknowledgements prove nothing now (a lost entry was acked too). Candidates wait. */
        redisReply *r =
            proj_command(p, "EXISTS %s %s", STREAM_REPAIR_REQUEST_KEY, STREAM_REPAIR_KEY);
        bool hold = !r || r->type != REDIS_REPLY_INTEGER || r->integer > 0;
        if (r)
            freeReplyObject(r);
        if (hold)
            return;
    }
    for (int part = 0; part < p->conf->partitions; part++) {
        if (p->marks[part].n > 0) {
            redisReply *r = proj_command(p, "XPENDING %s %s", p->streams[part], STREAM_GROUP);
            if (!r)
                return;
            kv_id oldest = { 0, 0 };
            bool ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 2;
            bool has = ok && r->element[0]->integer > 0;
            if (has)
                ok = r->element[1]->type == REDIS_REPLY_STRING &&
                     kv_id_parse(r->element[1]->str, &oldest);
            freeReplyObject(r);
            int64_t w = ok ? pl_marks_settle(&p->marks[part], has, oldest) : 0;
            if (w > p->wm[part]) {
                r = proj_command(p, "EVAL %s 1 %s %d %lld", script, STREAM_WM_KEY, part,
                                 (long long)w);
                if (r && r->type != REDIS_REPLY_ERROR)
                    p->wm[part] = w;
                if (r)
                    freeReplyObject(r);
            }
        }
        if (part == 0 || p->wm[part] < low)
            low = p->wm[part];
    }
    metrics_set(p->wm_gauge, low / 1000);
}

void proj_forget_dead_consumers(proj *p)
{
    long long idle_max = 10LL * p->conf->claim_idle_ms;
    for (int part = 0; part < p->conf->partitions; part++) {
        redisReply *r = proj_command(p, "XINFO CONSUMERS %s %s", p->streams[part], STREAM_GROUP);
        if (!r)
            return;
        for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
            const redisReply *c = r->element[i];
            const char *name = NULL;
            long long pending = -1, idle = -1;
            for (size_t k = 0; c->type == REDIS_REPLY_ARRAY && k + 1 < c->elements; k += 2) {
                const char *f = c->element[k]->str;
                if (strcmp(f, "name") == 0)
                    name = c->element[k + 1]->str;
                else if (strcmp(f, "pending") == 0)
                    pending = c->element[k + 1]->integer;
                else if (strcmp(f, "idle") == 0)
                    idle = c->element[k + 1]->integer;
            }
            if (!name || pending != 0 || idle <= idle_max || strcmp(name, p->conf->consumer) == 0)
                continue;
            /* Atomic with the check that it holds nothing: it may have read since XINFO. */
            static const char *del =
                "if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then "
                "return -1 end "
                "return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])";
            redisReply *d =
                proj_command(p, "EVAL %s 1 %s %s %s", del, p->streams[part], STREAM_GROUP, name);
            if (d && d->type == REDIS_REPLY_INTEGER && d->integer >= 0)
                log_info("removed a dead consumer from the group", LOG_STR("consumer", name),
                         LOG_INT("idle_ms", idle));
            if (d)
                freeReplyObject(d);
        }
        freeReplyObject(r);
    }
}
