/*
 * relay_stream: what the relay keeps true of Redis between passes (docs/keyspace.md, "Streams
 * and pipeline state"; the thread is relay.c).
 *
 * Groups. Every configured group exists on every stream, created at 0, so a consumer that has
 * not started yet still holds the stream: after each new Redis connection, and whenever the
 * trim finds one missing (a FLUSHALL).
 *
 * Trimming. Redis 7.0 has no trim "up to what every group acknowledged", so about once a
 * second the leader asks each stream's groups where they are and trims with XTRIM MINID ~ (LIMIT 0:
 * no cap per call) the lowest id still needed: per group, its oldest pending entry if any is
 * pending, else the entry after its last delivered one. Backpressure is in relay.c: no publishing
 * while a stream holds maxlen entries.
 *
 * Loss. Each pass of the leader has an id (Unix microseconds, increasing; a new leader starts
 * above the newest in relay_passes); its pipeline ends with SET tally:relay:pos <id>, and its
 * mark records the id with its seqs in relay_passes. So every row of a pass at or below pos is
 * in this Redis.
 * A pos that is missing while rows were marked, or older than the last pass this leader
 * marked, means Redis lost what came after it (a restart without persistence, a FLUSHALL, an
 * older snapshot, a failover to a lagging replica). The projector reports entries it found
 * trimmed before applying them in tally:repair:request (Unix ms). Either way the leader repairs:
 * it announces tally:repair, puts the rows of the passes after the loss point back into the
 * outbox (un-marks them, in chunks of about UNMARK_ROWS rows, each well under the session's
 * statement cap), sets pos to what it marked, and
 * lets the ordinary passes publish them again, in seq order (the projector drops duplicates by
 * version; reference data comes back the same way). Once no row up to the newest seq at
 * detection is unpublished, it records per partition the last id it XADDed (target:<p>) and
 * state=applying; once the projector group has acknowledged every target, tally:repair goes.
 */
#include "relay_int.h"

#include "err.h"
#include "log.h"
#include "now.h"
#include "stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAINTAIN_EVERY_MS 1000
#define UNMARK_ROWS       50000 /* rows per statement, about: well under its 5 s cap */
#define UNMARK_PASSES_MAX 100000
#define REQUEST_MARGIN_MS 60000 /* clock skew between the projector's Redis and this host */

static const char *const reason_names[R_COUNT] = { "missing", "behind", "trimmed" };

/* ---- Redis round trips --------------------------------------------------------------------- */

/*
 * Reads n replies of appended commands into out (caller frees each). 0, or -1 after an I/O
 * failure (the connection reset, the failure reported, out freed).
 */
static int replies(relay *r, int n, redisReply **out)
{
    redisContext *ctx = kv_ctx(r->kv);
    for (int i = 0; i < n; i++) {
        out[i] = NULL;
        if (redisGetReply(ctx, (void **)&out[i]) != REDIS_OK || !out[i]) {
            char error[256];
            snprintf(error, sizeof(error), "%s", ctx->errstr[0] ? ctx->errstr : "connection lost");
            for (int j = 0; j < i; j++)
                freeReplyObject(out[j]);
            kv_reset(r->kv);
            relay_redis_failed(r, error);
            return -1;
        }
    }
    return 0;
}

static void free_replies(redisReply **rep, int n)
{
    for (int i = 0; i < n; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
}

/* Reports an error reply (resetting the connection if Redis cannot serve): -1. */
static int reply_failed(relay *r, const char *what, const redisReply *rep)
{
    char error[256];
    snprintf(error, sizeof(error), "%s: %s", what, rep->str);
    if (kv_systemic_kind(rep->str))
        kv_reset(r->kv);
    relay_redis_failed(r, error);
    return -1;
}

/* ---- groups -------------------------------------------------------------------------------- */

static void repair_resume(relay *r, const redisReply *h);

int relay_setup_redis(relay *r)
{
    int parts = r->conf.partitions, n = parts * r->ngroups + 1, rc = 0;
    if (r->groups_made == kv_connects(r->kv))
        return 0;
    redisContext *ctx = kv_ctx(r->kv);
    redisReply **rep = calloc((size_t)n, sizeof(*rep));
    if (!rep)
        return -1;
    for (int p = 0; p < parts; p++) {
        char key[STREAM_KEY_MAX];
        stream_key(p, key, sizeof(key));
        for (int g = 0; g < r->ngroups; g++)
            redisAppendCommand(ctx, "XGROUP CREATE %s %s 0 MKSTREAM", key, r->groups[g]);
    }
    redisAppendCommand(ctx, "HGETALL " STREAM_REPAIR_KEY);
    if (replies(r, n, rep) != 0) {
        free(rep);
        return -1;
    }
    for (int i = 0; i < n - 1 && rc == 0; i++)
        if (rep[i]->type == REDIS_REPLY_ERROR && strncmp(rep[i]->str, "BUSYGROUP", 9) != 0)
            rc = reply_failed(r, "XGROUP CREATE", rep[i]);
    if (rc == 0) {
        if (rep[n - 1]->type == REDIS_REPLY_ARRAY && rep[n - 1]->elements && !r->rep.on)
            repair_resume(r, rep[n - 1]);
        r->groups_made = kv_connects(r->kv);
    }
    free_replies(rep, n);
    free(rep);
    return rc;
}

/* ---- detecting a loss ---------------------------------------------------------------------- */

static void repair_start(relay *r, enum repair_reason why, int64_t since_us, const char *pos)
{
    metrics_inc(r->m_repairs[why], 1);
    log_warn("relay: Redis lost data; republishing from PostgreSQL",
             LOG_STR("reason", reason_names[why]), LOG_INT("since_us", since_us),
             LOG_STR("pos", pos ? pos : "none"), LOG_INT("marked_us", r->last_pass_us));
    if (!r->rep.on) {
        r->rep.on = true;
        r->rep.started_ms = now_wall_ms();
        r->rep.since_us = since_us;
        r->rep.rows = r->rep.done = 0;
    } else if (since_us < r->rep.since_us) {
        r->rep.since_us = since_us;
    }
    r->rep.reason = why;
    r->rep.unmarked = r->rep.applying = false;
    r->rep.bound_us = r->last_pass_us;
    r->rep.max_seq = 0;
    /* The targets are what this repair XADDs: ids from before the loss may be gone. */
    for (int p = 0; p < r->conf.partitions; p++)
        r->last_id[p][0] = '\0';
}

/* A repair announced by an earlier leader (its tally:repair hash): this leader carries it on. */
static void repair_resume(relay *r, const redisReply *h)
{
    int64_t since = 0, started = now_wall_ms();
    enum repair_reason why = R_MISSING;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const char *f = h->element[i]->str, *v = h->element[i + 1]->str;
        if (strcmp(f, "since_us") == 0)
            since = strtoll(v, NULL, 10);
        else if (strcmp(f, "started_ms") == 0)
            started = strtoll(v, NULL, 10);
        else if (strcmp(f, "reason") == 0)
            for (int k = 0; k < R_COUNT; k++)
                if (strcmp(v, reason_names[k]) == 0)
                    why = (enum repair_reason)k;
    }
    log_info("relay: carrying on the repair an earlier leader started", LOG_INT("since_us", since));
    memset(&r->rep, 0, sizeof(r->rep));
    r->rep.on = true;
    r->rep.reason = why;
    r->rep.since_us = since;
    r->rep.started_ms = started;
    r->rep.bound_us = r->last_pass_us;
}

void relay_repair_lost_at_pass(relay *r, int64_t pos_before)
{
    char pos[24];
    snprintf(pos, sizeof(pos), "%lld", (long long)pos_before);
    if (pos_before < 0)
        repair_start(r, R_MISSING, 0, NULL);
    else
        repair_start(r, R_BEHIND, pos_before, pos);
}

int relay_check_redis(relay *r)
{
    int parts = r->conf.partitions, n = parts + 2, rc = 0;
    redisContext *ctx = kv_ctx(r->kv);
    redisReply **rep = calloc((size_t)n, sizeof(*rep));
    if (!rep)
        return -1;
    redisAppendCommand(ctx, "GET " STREAM_POS_KEY);
    redisAppendCommand(ctx, "GET " STREAM_REPAIR_REQUEST_KEY);
    for (int p = 0; p < parts; p++) {
        char key[STREAM_KEY_MAX];
        stream_key(p, key, sizeof(key));
        redisAppendCommand(ctx, "XLEN %s", key);
    }
    if (replies(r, n, rep) != 0) {
        free(rep);
        return -1;
    }
    /* The request stays in Redis until the repair it starts is announced (announce deletes
       it if unchanged), so a leader that dies in between leaves it to the next one. */
    const redisReply *pos = rep[0], *req = rep[1];
    if (req->type == REDIS_REPLY_STRING && strcmp(req->str, r->rep.request) != 0) {
        int64_t ms = strtoll(req->str, NULL, 10) - REQUEST_MARGIN_MS;
        repair_start(r, R_TRIMMED, (ms > 0 ? ms * 1000 : 0) - 1, NULL);
        snprintf(r->rep.request, sizeof(r->rep.request), "%s", req->str);
    }
    for (int i = 0; i < n && rc == 0; i++)
        if (rep[i]->type == REDIS_REPLY_ERROR)
            rc = reply_failed(r, i == 0 ? "GET" : i == 1 ? "GET request" : "XLEN", rep[i]);
    if (rc == 0) {
        if (pos->type != REDIS_REPLY_STRING && r->last_pass_us > 0)
            repair_start(r, R_MISSING, 0, NULL);
        else if (pos->type == REDIS_REPLY_STRING && strtoll(pos->str, NULL, 10) < r->last_pass_us)
            repair_start(r, R_BEHIND, strtoll(pos->str, NULL, 10), pos->str);
        for (int p = 0; p < parts; p++) {
            r->xlen[p] = rep[2 + p]->integer;
            metrics_set(r->m_xlen[p], rep[2 + p]->integer);
        }
    }
    free_replies(rep, n);
    free(rep);
    return rc;
}

/* ---- repairing ----------------------------------------------------------------------------- */

/*
 * Before the un-marking (unmarked false): writes tally:repair afresh (state republishing, no
 * targets yet), so that readers know at once. After it: records the rows, and sets
 * tally:relay:pos to the detection's bound, which is true again now (what was marked up to
 * it is either in this Redis or unpublished). 0 or -1.
 */
static int announce(relay *r, bool unmarked)
{
    static const char *del_if_same = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                     "redis.call('DEL', KEYS[1]) end return 0";
    redisContext *ctx = kv_ctx(r->kv);
    redisReply *rep[5];
    int rc = 0, n = 4;
    redisAppendCommand(ctx, "MULTI");
    if (!unmarked && r->rep.request[0]) { /* the request this repair answers is done with */
        redisAppendCommand(ctx, "EVAL %s 1 " STREAM_REPAIR_REQUEST_KEY " %s", del_if_same,
                           r->rep.request);
        n = 5;
    }
    if (!unmarked) {
        redisAppendCommand(ctx, "DEL " STREAM_REPAIR_KEY);
        redisAppendCommand(ctx,
                           "HSET " STREAM_REPAIR_KEY " since_us %lld reason %s started_ms %lld"
                           " rows 0 state republishing",
                           (long long)r->rep.since_us, reason_names[r->rep.reason],
                           (long long)r->rep.started_ms);
    } else {
        redisAppendCommand(ctx, "HSET " STREAM_REPAIR_KEY " rows %lld", (long long)r->rep.rows);
        redisAppendCommand(ctx, "SET " STREAM_POS_KEY " %lld", (long long)r->rep.bound_us);
    }
    redisAppendCommand(ctx, "EXEC");
    if (replies(r, n, rep) != 0)
        return -1;
    if (rep[n - 1]->type != REDIS_REPLY_ARRAY)
        rc = reply_failed(r, "announcing the repair",
                          rep[n - 1]->type == REDIS_REPLY_ERROR ? rep[n - 1] : rep[0]);
    free_replies(rep, n);
    return rc;
}

int relay_repair_unmark(relay *r, enum relay_outcome *out)
{
    char since[24], bound[24], chunk[24];
    if (!r->rep.on || r->rep.unmarked)
        return 0;
    PGresult *res;
    if (pgx_exec(r->pg, S_MAXSEQ, 0, NULL, NULL, NULL, RELAY_PG_WAIT_MS, &res) != 0) {
        *out = relay_leader_pg_error(r, "reading the newest seq");
        return -1;
    }
    r->rep.max_seq = pgx_int(res, 0, 0);
    PQclear(res);
    if (announce(r, false) != 0) {
        *out = RELAY_REDIS_DOWN;
        return -1;
    }
    /* Chunks of about UNMARK_ROWS rows: as many passes as that many rows took the last time
       (a pass holds up to a batch; under live traffic, a few rows). */
    long long passes = r->conf.batch < UNMARK_ROWS ? UNMARK_ROWS / r->conf.batch : 1;
    snprintf(since, sizeof(since), "%lld", (long long)r->rep.since_us);
    snprintf(bound, sizeof(bound), "%lld", (long long)r->rep.bound_us);
    for (;;) {
        if (relay_stopping(r)) {
            *out = RELAY_IDLE; /* the next leader starts this repair over */
            return -1;
        }
        snprintf(chunk, sizeof(chunk), "%lld", passes);
        const char *values[] = { since, bound, chunk };
        if (pgx_exec(r->pg, S_UNMARK, 3, values, NULL, NULL, RELAY_PG_WAIT_MS, &res) != 0) {
            *out = relay_leader_pg_error(r, "putting events back into the outbox");
            return -1;
        }
        bool done = PQgetisnull(res, 0, 0);
        int64_t n = pgx_int(res, 0, 1);
        if (!done)
            snprintf(since, sizeof(since), "%s", PQgetvalue(res, 0, 0));
        r->rep.rows += n;
        PQclear(res);
        if (done)
            break;
        passes = n > 0 ? passes * UNMARK_ROWS / n : passes * 2;
        passes = passes < 1 ? 1 : passes > UNMARK_PASSES_MAX ? UNMARK_PASSES_MAX : passes;
    }
    /* Rows marked up to bound are now either in Redis (up to since) or unpublished. */
    if (announce(r, true) != 0) {
        *out = RELAY_REDIS_DOWN;
        return -1;
    }
    r->rep.unmarked = true;
    metrics_set(r->m_repair_rows, r->rep.rows - r->rep.done);
    log_info("relay: events to republish", LOG_INT("rows", r->rep.rows),
             LOG_INT("up_to_seq", r->rep.max_seq));
    return 1;
}

void relay_repair_published(relay *r, const int64_t *seqs, int n)
{
    if (!r->rep.on || !r->rep.unmarked || r->rep.applying)
        return;
    for (int i = 0; i < n; i++)
        r->rep.done += seqs[i] <= r->rep.max_seq;
    int64_t left = r->rep.rows - r->rep.done;
    metrics_set(r->m_repair_rows, left > 0 ? left : 0);
}

/* Every row up to the newest seq at detection is on the stream again: state=applying. */
static int repair_applying(relay *r, enum relay_outcome *out)
{
    char max_seq[24];
    PGresult *res;
    snprintf(max_seq, sizeof(max_seq), "%lld", (long long)r->rep.max_seq);
    const char *values[] = { max_seq };
    if (pgx_exec(r->pg, S_LEFT, 1, values, NULL, NULL, RELAY_PG_WAIT_MS, &res) != 0) {
        *out = relay_leader_pg_error(r, "checking the repair");
        return -1;
    }
    bool left = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (left)
        return 0;
    redisContext *ctx = kv_ctx(r->kv);
    int n = 1;
    redisAppendCommand(ctx, "HSET " STREAM_REPAIR_KEY " state applying");
    /* The targets are frozen here: later passes XADD more, which the repair need not wait for. */
    for (int p = 0; p < r->conf.partitions; p++) {
        snprintf(r->rep.target[p], RELAY_ID_MAX, "%s", r->last_id[p]);
        if (r->last_id[p][0]) {
            redisAppendCommand(ctx, "HSET " STREAM_REPAIR_KEY " target:%d %s", p, r->last_id[p]);
            n++;
        }
    }
    redisReply **rep = calloc((size_t)n, sizeof(*rep));
    if (!rep || replies(r, n, rep) != 0) {
        free(rep);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        if (rep[i]->type == REDIS_REPLY_ERROR)
            rc = reply_failed(r, "recording the repair's targets", rep[i]);
    free_replies(rep, n);
    free(rep);
    if (rc != 0)
        return -1;
    r->rep.applying = true;
    metrics_set(r->m_repair_rows, 0);
    log_info("relay: every event to repair is on the stream again; waiting for the projector",
             LOG_INT("rows", r->rep.rows));
    return 0;
}

/* ---- once a second ------------------------------------------------------------------------- */

/* What one group of a stream still needs, from XINFO GROUPS and XPENDING. */
typedef struct group_pos {
    bool found;
    kv_id delivered; /* last-delivered-id */
    bool pending;
    kv_id oldest; /* the oldest pending id */
} group_pos;

static void read_group(const redisReply *info, const redisReply *pend, const char *name,
                       group_pos *g)
{
    memset(g, 0, sizeof(*g));
    for (size_t i = 0; info->type == REDIS_REPLY_ARRAY && i < info->elements; i++) {
        const redisReply *e = info->element[i];
        bool mine = false;
        const char *last = NULL;
        for (size_t k = 0; e->type == REDIS_REPLY_ARRAY && k + 1 < e->elements; k += 2) {
            const char *f = e->element[k]->str, *v = e->element[k + 1]->str;
            if (!f || !v)
                continue;
            if (strcmp(f, "name") == 0)
                mine = strcmp(v, name) == 0;
            else if (strcmp(f, "last-delivered-id") == 0)
                last = v;
        }
        if (mine && last && kv_id_parse(last, &g->delivered))
            g->found = true;
    }
    if (g->found && pend->type == REDIS_REPLY_ARRAY && pend->elements >= 2 &&
        pend->element[0]->integer > 0 && pend->element[1]->type == REDIS_REPLY_STRING)
        g->pending = kv_id_parse(pend->element[1]->str, &g->oldest);
}

/* True once the projector group acknowledged everything up to target. */
static bool acknowledged(const group_pos *g, const char *target)
{
    kv_id t;
    if (!g->found || !kv_id_parse(target, &t))
        return false;
    return kv_id_cmp(g->delivered, t) >= 0 && (!g->pending || kv_id_cmp(g->oldest, t) > 0);
}

int relay_maintain(relay *r, enum relay_outcome *out)
{
    int parts = r->conf.partitions, per = 1 + r->ngroups, n = parts * per, rc = 0;
    if (now_mono_ms() < r->maintain_at_ms)
        return 0;
    r->maintain_at_ms = now_mono_ms() + MAINTAIN_EVERY_MS;
    if (r->rep.on && r->rep.unmarked && !r->rep.applying && repair_applying(r, out) != 0)
        return -1;
    redisContext *ctx = kv_ctx(r->kv);
    redisReply **rep = calloc((size_t)n, sizeof(*rep));
    if (!rep)
        return -1;
    for (int p = 0; p < parts; p++) {
        char key[STREAM_KEY_MAX];
        stream_key(p, key, sizeof(key));
        redisAppendCommand(ctx, "XINFO GROUPS %s", key);
        for (int g = 0; g < r->ngroups; g++)
            redisAppendCommand(ctx, "XPENDING %s %s", key, r->groups[g]);
    }
    if (replies(r, n, rep) != 0) {
        free(rep);
        return -1;
    }
    bool acked = r->rep.on && r->rep.applying;
    for (int p = 0; p < parts && rc == 0; p++) {
        redisReply **pr = rep + p * per;
        char key[STREAM_KEY_MAX], min[64];
        bool all = true;
        kv_id safe = { UINT64_MAX, UINT64_MAX };
        stream_key(p, key, sizeof(key));
        for (int g = 0; g < r->ngroups; g++) {
            group_pos gp;
            read_group(pr[0], pr[1 + g], r->groups[g], &gp);
            all &= gp.found;
            if (!gp.found)
                continue;
            kv_id need = gp.pending ? gp.oldest : (kv_id){ gp.delivered.ms, gp.delivered.seq + 1 };
            if (kv_id_cmp(need, safe) < 0)
                safe = need;
            if (acked && r->rep.target[p][0] && strcmp(r->groups[g], STREAM_GROUP) == 0)
                acked = acknowledged(&gp, r->rep.target[p]);
        }
        if (!all) {
            r->groups_made = 0; /* a group is missing (a flush): create them at the next pass */
            acked = false;
            continue;
        }
        snprintf(min, sizeof(min), "%" PRIu64 "-%" PRIu64, safe.ms, safe.seq);
        /* LIMIT 0: with ~ alone Redis removes at most 100 * stream-node-max-entries (10,000)
           entries a call, so at the bound the relay published at 10,000 events/s whatever the
           consumers did; backpressure keeps a stream near maxlen entries, so this is bounded. */
        redisReply *t = redisCommand(ctx, "XTRIM %s MINID ~ %s LIMIT 0", key, min);
        if (!t) {
            kv_reset(r->kv);
            relay_redis_failed(r, "XTRIM: connection lost");
            rc = -1;
        } else {
            if (t->type == REDIS_REPLY_ERROR)
                rc = reply_failed(r, "XTRIM", t);
            freeReplyObject(t);
        }
    }
    free_replies(rep, n);
    free(rep);
    if (rc == 0 && acked) {
        redisReply *d = redisCommand(ctx, "DEL " STREAM_REPAIR_KEY);
        if (!d) {
            kv_reset(r->kv);
            relay_redis_failed(r, "ending the repair: connection lost");
            return -1;
        }
        freeReplyObject(d);
        log_info("relay: the repair is complete; the projector has every event again",
                 LOG_STR("reason", reason_names[r->rep.reason]), LOG_INT("rows", r->rep.rows),
                 LOG_INT("seconds", (now_wall_ms() - r->rep.started_ms) / 1000));
        memset(&r->rep, 0, sizeof(r->rep));
        metrics_set(r->m_repair_rows, 0);
    }
    return rc;
}

void relay_stream_reset(relay *r)
{
    r->groups_made = 0;
    r->maintain_at_ms = 0;
    memset(&r->rep, 0, sizeof(r->rep));
    for (int p = 0; p < r->conf.partitions; p++)
        r->last_id[p][0] = '\0';
    metrics_set(r->m_repair_rows, 0);
    metrics_set(r->m_backpressure, 0);
}
