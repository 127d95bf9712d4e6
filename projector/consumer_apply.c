/*
 * consumer_apply: a batch to the read model (consumer_int.h). The decoded messages are grouped
 * by tenant and applied with one pipelined FCALL per tenant, counted here and merged when it
 * can be (plan.h), else per event in Lua (a failed one is split into one FCALL per event);
 * then each message is acked, queued for a retry, or parked.
 */
#include "consumer_int.h"
#include "plan.h"
#include "rebuild.h"
#include "stream.h"

#include "err.h"
#include "hash.h"
#include "log.h"
#include "now.h"
#include "svc.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Outcome of one event's apply, recorded on the message. */
enum proj_outcome { PROJ_DONE, PROJ_PARK, PROJ_RETRY };

/*
 * Orders events by tenant, its complaint events before its reference events (neither reads
 * what the other writes, so a tenant's complaint events can be merged in one run), then by
 * position: each kind keeps its order. The key of v[i] is computed once: the tenant's hash
 * with the kind in its lowest bit (strcmp in the sort was a tenth of the projector's time).
 * Tenants whose hashes collide interleave: they are split into more groups, each in order.
 */
typedef struct keyed {
    uint64_t key;
    size_t i;
} keyed;

/* The FCALL of a run of events of one tenant, appended to the pipeline. */
static int append_fcall(proj *p, proj_msg **v, size_t n, const char *now)
{
    size_t argc = 7 + n * STREAM_APPLY_NFIELDS;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *lens = malloc(argc * sizeof(*lens));
    char key[96], count[24], nfields[8];
    int rc = 0;
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return TALLY_ENOMEM;
    }
    snprintf(key, sizeof(key), STREAM_TENANT "gen", v[0]->ev.env->tenant_id);
    snprintf(count, sizeof(count), "%zu", n);
    snprintf(nfields, sizeof(nfields), "%d", STREAM_APPLY_NFIELDS);
    const char *head[] = { "FCALL", p->fn, "1", key, now, count, nfields };
    for (size_t i = 0; i < 7; i++) {
        argv[i] = head[i];
        lens[i] = strlen(head[i]);
    }
    for (size_t i = 0; i < n; i++)
        for (int f = 0; f < STREAM_APPLY_NFIELDS; f++) {
            argv[7 + i * STREAM_APPLY_NFIELDS + (size_t)f] = v[i]->ev.argv[f];
            lens[7 + i * STREAM_APPLY_NFIELDS + (size_t)f] = v[i]->ev.argvlen[f];
        }
    if (redisAppendCommandArgv(kv_ctx(p->kv), (int)argc, argv, lens) != REDIS_OK)
        rc = TALLY_EUNAVAIL;
    free(argv);
    free(lens);
    return rc;
}

static void observe_applied(proj *p, const proj_msg *m, int64_t now)
{
    metrics_inc(p->applied, 1);
    int64_t rec = m->ev.env->recorded_at_ms ? m->ev.env->recorded_at_ms : m->ev.env->occurred_at_ms;
    if (!m->ev.env->imported && rec > 0)
        metrics_observe(p->lag_seconds, (double)(now - rec) / 1000.0);
}

static int by_tenant(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* A reply said tenant has a rebuild nobody holds: noted, to be listed by list_unheld. */
static void note_unheld(proj *p, const char *tenant)
{
    for (int i = 0; i < p->nunheld; i++)
        if (strcmp(p->unheld[i], tenant) == 0)
            return;
    if (p->nunheld < (int)(sizeof(p->unheld) / sizeof(p->unheld[0])))
        snprintf(p->unheld[p->nunheld++], sizeof(p->unheld[0]), "%s", tenant);
}

/*
 * After every reply of the pipeline was read: the noted tenants go into tally:rebuilds, where
 * the gauges and the rebuild runners (rebuild_loop.h) find them. Such a rebuild is begun by
 * tally_apply when the tenant's generation is of an older view; it is said the first time.
 */
static void list_unheld(proj *p)
{
    for (int i = 0; i < p->nunheld; i++) {
        redisReply *r = proj_command(p, "SADD %s %s", REBUILD_REGISTRY_KEY, p->unheld[i]);
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
            log_warn("a rebuild of the tenant nobody holds runs (its read model is of an older "
                     "view): the projector finishes it when it has TALLY_PG_DSN; else run "
                     "tally rebuild --all",
                     LOG_STR("tenant", p->unheld[i]));
        if (r)
            freeReplyObject(r);
    }
    p->nunheld = 0;
}

/*
 * Reads the reply of one FCALL over sorted[a..b) into out[]/why[] (indexed as v, via order).
 * 0, 1 for a systemic error reply (nothing recorded against the events), or TALLY_EUNAVAIL.
 */
static int read_reply(proj *p, proj_msg **v, const size_t *order, size_t a, size_t b, int64_t wall,
                      enum proj_outcome *out, char (*why)[160], bool *failed)
{
    redisReply *r = NULL;
    if (redisGetReply(kv_ctx(p->kv), (void **)&r) != REDIS_OK || !r)
        return TALLY_EUNAVAIL;
    /* The statuses, and a generation while a rebuild nobody holds runs (tally_apply). */
    *failed = !(r->type == REDIS_REPLY_ARRAY && (r->elements == b - a || r->elements == b - a + 1));
    if (!*failed && r->elements == b - a + 1)
        note_unheld(p, v[order[a]]->ev.env->tenant_id);
    if (!*failed) {
        for (size_t k = a; k < b; k++) {
            size_t i = order[k];
            long long s = r->element[k - a]->integer;
            out[i] = s == 2 ? PROJ_RETRY : s == 3 || s == 4 ? PROJ_PARK : PROJ_DONE;
            if (s == 0)
                observe_applied(p, v[i], wall);
            else if (s == 1)
                metrics_inc(p->dups, 1);
            else if (s == 2)
                metrics_inc(p->gaps, 1);
            snprintf(why[i], sizeof(why[i]), "%s",
                     s == 2   ? "gap: an earlier version was never applied"
                     : s == 3 ? "behind a parked event of the same complaint"
                     : s == 4 ? "invalid fields: refused by the apply function"
                              : "");
        }
    } else if (proj_systemic(p, r, "applying events")) {
        *failed = false; /* nothing is the events' fault: no attempt counted, nothing split */
        for (size_t k = a; k < b; k++)
            out[order[k]] = PROJ_RETRY;
        freeReplyObject(r);
        return 1;
    } else {
        const char *err = r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply";
        if (strstr(err, "Function not found")) /* Redis restarted without it: after the replies */
            p->reload = true;
        metrics_inc(p->failures, 1);
        for (size_t k = a; k < b; k++) {
            size_t i = order[k];
            out[i] = PROJ_RETRY;
            snprintf(why[i], sizeof(why[i]), "apply failed: %.140s", err);
        }
    }
    freeReplyObject(r);
    return 0;
}

/* How a group (a run of one tenant's events) is applied at the next round of apply. */
enum group_way {
    WAY_MERGED, /* counted here, one tally_apply_merged (plan.h) */
    WAY_BATCH,  /* one tally_apply with all its events */
    WAY_SPLIT,  /* one tally_apply per event */
    WAY_DONE
};

/*
 * Appends group sorted[a..b)'s FCALL: merged when its events make a plan (else the way becomes
 * WAY_BATCH), or the batch, or one per event.
 */
static int append_group(proj *p, proj_msg **sorted, size_t a, size_t b, const char *now,
                        enum group_way *way)
{
    if (*way == WAY_MERGED) {
        if (!p->plan && !(p->plan = proj_plan_new()))
            return TALLY_ENOMEM;
        proj_plan_reset(p->plan);
        bool ok = true;
        for (size_t k = a; k < b && ok; k++)
            ok = proj_plan_add(p->plan, &sorted[k]->ev);
        if (ok) {
            char key[96];
            snprintf(key, sizeof(key), STREAM_TENANT "gen", sorted[a]->ev.env->tenant_id);
            const char *head[] = { "FCALL", p->merged_fn, "1", key };
            return proj_plan_append(p->plan, kv_ctx(p->kv), head, 4, now);
        }
        *way = WAY_BATCH;
    }
    if (*way == WAY_BATCH)
        return append_fcall(p, sorted + a, b - a, now);
    int rc = 0;
    for (size_t k = a; k < b && rc == 0; k++)
        rc = append_fcall(p, sorted + k, 1, now);
    return rc;
}

/*
 * Reads the reply of a merged group sorted[a..b): 0 with the way WAY_DONE (applied) or
 * WAY_BATCH (refused: a conflict, or an error the per-event way sorts out), 1 for a systemic
 * error reply (every event to be retried), or TALLY_EUNAVAIL.
 */
static int read_merged(proj *p, proj_msg **v, const size_t *order, size_t a, size_t b, int64_t wall,
                       enum proj_outcome *out, enum group_way *way)
{
    redisReply *r = NULL;
    if (redisGetReply(kv_ctx(p->kv), (void **)&r) != REDIS_OK || !r)
        return TALLY_EUNAVAIL;
    int rc = 0;
    *way = WAY_BATCH;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        *way = WAY_DONE;
        metrics_inc(p->merged, 1);
        for (size_t k = a; k < b; k++) {
            out[order[k]] = PROJ_DONE;
            observe_applied(p, v[order[k]], wall);
        }
    } else if (proj_systemic(p, r, "applying events")) {
        *way = WAY_DONE;
        for (size_t k = a; k < b; k++)
            out[order[k]] = PROJ_RETRY;
        rc = 1;
    } else {
        metrics_inc(p->unmerged, 1);
        if (r->type == REDIS_REPLY_ERROR) {
            if (strstr(r->str, "Function not found"))
                p->reload = true;
            log_warn("a merged apply failed; applying its events one by one",
                     LOG_STR("error", r->str));
        }
    }
    freeReplyObject(r);
    return rc;
}

/*
 * Tells the watchers (query-svc's WatchDashboard) which tenants this batch changed: one PUBLISH
 * per tenant with an event applied, pipelined, after the FCALLs' replies, so a subscriber that
 * reads on the message sees the change. A refused PUBLISH (an ACL without it) is logged once
 * and costs nothing else: the dashboards still serve, only without pushes. 0 or TALLY_EUNAVAIL.
 */
static int notify_changed(proj *p, proj_msg **sorted, const size_t *order, size_t n,
                          const enum proj_outcome *out)
{
    static _Atomic bool warned;
    size_t sent = 0;
    for (size_t k = 0; k < n; k++) {
        const char *t = sorted[k]->ev.env->tenant_id;
        if (out[order[k]] != PROJ_DONE)
            continue;
        bool seen = false; /* groups of one tenant are adjacent: look back to its first */
        for (size_t j = k; j-- > 0 && !seen && strcmp(sorted[j]->ev.env->tenant_id, t) == 0;)
            seen = out[order[j]] == PROJ_DONE;
        if (seen)
            continue;
        if (redisAppendCommand(kv_ctx(p->kv), "PUBLISH %s %s", STREAM_CHANGES_CHANNEL, t) !=
            REDIS_OK)
            return TALLY_EUNAVAIL;
        sent++;
    }
    if (sent && proj_flush(p) != 0)
        return TALLY_EUNAVAIL;
    for (size_t i = 0; i < sent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(kv_ctx(p->kv), (void **)&r) != REDIS_OK || !r)
            return TALLY_EUNAVAIL;
        if (r->type == REDIS_REPLY_ERROR && !atomic_exchange(&warned, true))
            log_warn("cannot publish changes: WatchDashboard streams get no pushes",
                     LOG_STR("channel", STREAM_CHANGES_CHANNEL), LOG_STR("error", r->str));
        freeReplyObject(r);
    }
    metrics_inc(p->notified, (double)sent);
    return 0;
}

/*
 * Applies the decoded messages of v (several tenants), each tenant's events as a group in
 * their order (tenants are independent: their keys are disjoint; its reference events are a
 * group of their own; a message marked solo is a group alone). Round by round, every group's FCALLs
 * are pipelined, then their replies read: a group goes merged first (counted here, plan.h); one the
 * merged apply refuses goes as one tally_apply with all its events; a failed one of several events
 * is split into one tally_apply per event, in order, so that the good ones are applied in their
 * tenant's order and only the failing one waits for a retry (counted as an attempt, and alone from
 * then on). Fills out[i] and why[i] for v[i]. TALLY_EUNAVAIL on an I/O error.
 */
static int apply(proj *p, proj_msg **v, size_t n, enum proj_outcome *out, char (*why)[160])
{
    size_t *order = malloc((n ? n : 1) * sizeof(*order));
    keyed *key = malloc((n ? n : 1) * sizeof(*key));
    size_t *start = malloc((n + 1) * sizeof(*start)), ngroups = 0;
    proj_msg **sorted = malloc((n ? n : 1) * sizeof(*sorted));
    enum group_way *way = malloc((n + 1) * sizeof(*way)), *sent = malloc((n + 1) * sizeof(*sent));
    bool failed = false;
    char now[24];
    int64_t wall = now_wall_ms();
    int rc = 0;
    if (!order || !key || !start || !sorted || !way || !sent) {
        free(order);
        free(key);
        free(start);
        free(sorted);
        free(way);
        free(sent);
        return TALLY_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *t = v[i]->ev.env->tenant_id;
        key[i].key =
            (hash_fnv1a(t, strlen(t), 0) & ~(uint64_t)1) | !proj_is_complaint_event(&v[i]->ev);
        key[i].i = i;
    }
    qsort(key, n, sizeof(*key), by_tenant);
    for (size_t k = 0; k < n; k++) {
        order[k] = key[k].i;
        sorted[k] = v[order[k]];
    }
    snprintf(now, sizeof(now), "%" PRId64, wall);
    for (size_t k = 0; k < n; k++)
        if (k == 0 || sorted[k]->solo || sorted[k - 1]->solo ||
            strcmp(sorted[k]->ev.env->tenant_id, sorted[k - 1]->ev.env->tenant_id) != 0 ||
            proj_is_complaint_event(&sorted[k]->ev) !=
                proj_is_complaint_event(&sorted[k - 1]->ev)) {
            /* Reference events are few: they go to tally_apply as they are. */
            way[ngroups] = sorted[k]->solo || !proj_is_complaint_event(&sorted[k]->ev) ? WAY_BATCH
                                                                                       : WAY_MERGED;
            start[ngroups++] = k;
        }
    start[ngroups] = n;
    bool refused = false; /* a systemic error: the round's replies are read, then we stop */
    /* With a backlog, the next batch is read (consumer_int.h) while the first group is
       counted, and decoded while Redis applies the groups. */
    bool ahead = !p->read_pending && p->backlog && p->ahead.n == 0 && !svc_stopping();
    redisReply *next = NULL;
    if (ahead)
        rc = proj_read_ahead_send(p);
    for (int round = 0; round < 3 && rc == 0 && !refused; round++) {
        for (size_t g = 0; g < ngroups && rc == 0; g++) {
            if (way[g] != WAY_DONE)
                rc = append_group(p, sorted, start[g], start[g + 1], now, &way[g]);
            sent[g] = way[g];
            if (ahead && round == 0 && g == 0 && rc == 0)
                rc = proj_read_ahead_recv(p, &next); /* before this group goes out */
            /* Sent at once: Redis applies this group while the next one is counted. */
            if (rc == 0 && way[g] != WAY_DONE)
                rc = proj_flush(p);
            if (next && rc == 0) { /* decoded while Redis applies the group */
                rc = proj_read_ahead_take(p, next);
                next = NULL;
            }
        }
        for (size_t g = 0; g < ngroups && rc == 0; g++) {
            size_t a = start[g], b = start[g + 1];
            if (sent[g] == WAY_MERGED) {
                rc = read_merged(p, v, order, a, b, wall, out, &way[g]);
            } else if (sent[g] == WAY_BATCH) {
                rc = read_reply(p, v, order, a, b, wall, out, why, &failed);
                way[g] = failed && b - a > 1 ? WAY_SPLIT : WAY_DONE;
                for (size_t k = a; k < b && failed && b - a == 1; k++) {
                    sorted[k]->attempts++;
                    sorted[k]->solo = true; /* alone next time */
                }
            } else if (sent[g] == WAY_SPLIT) {
                /* After a systemic reply the rest are read too, unless it reset the
                   connection (READONLY, LOADING...): then nothing is left to read. */
                for (size_t k = a; k < b && (rc == 0 || (rc == 1 && kv_ctx(p->kv))); k++) {
                    int r1 = read_reply(p, v, order, k, k + 1, wall, out, why, &failed);
                    if (r1 == 0 && failed) {
                        sorted[k]->attempts++;
                        sorted[k]->solo = true;
                    }
                    rc = r1 == 0 ? rc : r1; /* a systemic reply: the others are still read */
                }
                way[g] = WAY_DONE;
            }
            if (rc == 1) {
                refused = true;
                way[g] = WAY_DONE;
                rc = kv_ctx(p->kv) ? 0 : TALLY_EUNAVAIL;
            }
        }
        if (rc == 0 && p->reload) {
            p->reload = false;
            proj_load_function(p);
        }
    }
    if (next)
        freeReplyObject(next);
    if (rc == 0 && refused)
        rc = TALLY_EUNAVAIL;
    if (rc == 0)
        rc = notify_changed(p, sorted, order, n, out);
    if (rc == 0)
        list_unheld(p);
    p->nunheld = 0;
    free(order);
    free(key);
    free(start);
    free(sorted);
    free(way);
    free(sent);
    if (rc != 0)
        kv_reset(p->kv);
    return rc;
}

int proj_handle(proj *p, proj_msg **v, size_t n)
{
    enum proj_outcome *out = calloc(n ? n : 1, sizeof(*out));
    char(*why)[160] = calloc(n ? n : 1, sizeof(*why));
    proj_msg **decoded = malloc((n ? n : 1) * sizeof(*decoded));
    proj_msg **done = malloc((n ? n : 1) * sizeof(*done));
    size_t nd = 0, ndone = 0, i = 0;
    int64_t now = now_mono_ms();
    int rc = 0;
    if (!out || !why || !decoded || !done) {
        rc = TALLY_ENOMEM;
        goto out_free;
    }
    for (size_t k = 0; k < n; k++)
        if (v[k]->ok)
            decoded[nd++] = v[k];
    /* apply() fills results in the order of decoded; map them back. */
    enum proj_outcome *dout = calloc(nd ? nd : 1, sizeof(*dout));
    char(*dwhy)[160] = calloc(nd ? nd : 1, sizeof(*dwhy));
    if (!dout || !dwhy) {
        free(dout);
        free(dwhy);
        rc = TALLY_ENOMEM;
        goto out_free;
    }
    rc = nd ? apply(p, decoded, nd, dout, dwhy) : 0;
    for (size_t j = 0; i < n && rc == 0; i++) {
        proj_msg *m = v[i];
        const char *reason = m->why;
        if (m->wm || m->gone) {
            if (m->gone)
                proj_lost(p, m->part, m->id);
            done[ndone++] = m;
            continue;
        }
        if (m->ok) {
            enum proj_outcome o = dout[j];
            reason = dwhy[j++];
            if (o == PROJ_DONE) {
                done[ndone++] = m;
                continue;
            }
            bool gap = strncmp(reason, "gap", 3) == 0;
            if (!m->first_ms)
                m->first_ms = now;
            bool give_up = (gap && now - m->first_ms >= p->gap_wait_ms) ||
                           (!gap && m->attempts >= p->conf->max_attempts);
            if (o == PROJ_RETRY && !give_up) {
                int64_t wait = RETRY_EVERY_MS << (m->attempts < 4 ? m->attempts : 4);
                m->next_ms = now + (wait > 2000 ? 2000 : wait);
                /* A full queue spills to the pending list, never to the dead letters: the
                   entry is reclaimed (XAUTOCLAIM) after claim_idle_ms and tried again. */
                if (p->retry.n >= RETRY_MAX || proj_msgs_push(&p->retry, m) != 0) {
                    metrics_inc(p->spilled, 1);
                    proj_msg_free(m);
                }
                continue;
            }
        }
        int parked = proj_park(p, m, reason);
        if (parked < 0) {
            rc = parked;
            break; /* m and the rest are freed unacked below */
        }
        if (parked == 0)
            done[ndone++] = m;
        else
            proj_msg_free(m);
    }
    free(dout);
    free(dwhy);
    if (kv_ctx(p->kv) && proj_report_lost(p) != 0) {
        size_t keep = 0; /* a lost entry is acked only once the relay knows of it */
        for (size_t k = 0; k < ndone; k++)
            if (done[k]->gone)
                proj_msg_free(done[k]);
            else
                done[keep++] = done[k];
        ndone = keep;
        rc = TALLY_EUNAVAIL;
    }
    if (kv_ctx(p->kv)) { /* what is done is acked, even when Redis refuses writes now */
        proj_ack(p, done, ndone);
        for (size_t k = 0; k < ndone; k++)
            if (done[k]->wm) {
                kv_id id;
                if (kv_id_parse(done[k]->id, &id))
                    pl_marks_add(&p->marks[done[k]->part], id, done[k]->wm_ms);
            }
    }
    for (size_t k = 0; k < ndone; k++)
        proj_msg_free(done[k]);
    for (; i < n; i++) /* not handled (an error stopped the batch): read again later */
        proj_msg_free(v[i]);
out_free:
    free(out);
    free(why);
    free(decoded);
    free(done);
    return rc;
}
