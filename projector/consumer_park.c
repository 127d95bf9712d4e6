/*
 * consumer_park: what ends a message without an apply (consumer_int.h): the dead-letter
 * streams tally:dead:<p> and the parked complaints, the report of lost entries to the relay,
 * and the XACK.
 */
#include "consumer_int.h"
#include "stream.h"

#include "err.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Ends a command whose reply only says whether it worked, and frees r: 0, or TALLY_EUNAVAIL
 * after an I/O error (r NULL) or an error reply, which is logged as what unless it is systemic
 * (proj_systemic, while doing).
 */
static int reply_status(proj *p, redisReply *r, const char *doing, const char *what)
{
    bool failed = !r || r->type == REDIS_REPLY_ERROR;
    if (r && failed && !proj_systemic(p, r, doing))
        log_error(what, LOG_STR("error", r->str));
    if (r)
        freeReplyObject(r);
    return failed ? TALLY_EUNAVAIL : 0;
}

/*
 * Whether m is still pending with this consumer: another projector may have reclaimed it
 * (XAUTOCLAIM takes entries that wait long in a retry queue) and parked or applied it. 1 yes,
 * 0 no, or TALLY_EUNAVAIL.
 */
static int still_ours(proj *p, const proj_msg *m)
{
    redisReply *r =
        proj_command(p, "XPENDING %s %s %s %s 1", p->streams[m->part], STREAM_GROUP, m->id, m->id);
    if (!r)
        return TALLY_EUNAVAIL;
    int rc = r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
             r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements >= 2 &&
             strcmp(r->element[0]->element[1]->str, p->conf->consumer) == 0;
    if (r->type == REDIS_REPLY_ERROR)
        rc = TALLY_EUNAVAIL;
    freeReplyObject(r);
    return rc;
}

int proj_park(proj *p, proj_msg *m, const char *reason)
{
    char stream[STREAM_KEY_MAX], complaint[24] = "", version[24] = "";
    const Tally__V1__EventEnvelope *env = m->ev.env; /* also set for most refused events */
    const char *tenant = env ? env->tenant_id : "";
    int rc = still_ours(p, m);
    if (rc != 1)
        return rc == 0 ? 1 : rc;
    stream_dead_key(m->part, stream, sizeof(stream));
    if (env) {
        snprintf(complaint, sizeof(complaint), "%" PRId64, env->complaint_id);
        snprintf(version, sizeof(version), "%" PRId64, env->version);
    }
    /* The complaint first: once it is marked, its later events are parked behind it, so a
       failure between the two leaves nothing applied out of order. */
    if (env && proj_is_complaint_event(&m->ev) && env->complaint_id > 0 && proj_tenant_ok(tenant)) {
        char key[96], fn[64];
        /* A rebuild running reads the complaint again before its flip may unmark it. */
        snprintf(key, sizeof(key), STREAM_TENANT "rebuild", tenant);
        proj_view_fn(&p->view, "tally_rebuild_note", fn, sizeof(fn));
        redisReply *r = proj_command(p, "FCALL %s 1 %s %s %s", fn, key, complaint, version);
        if (reply_status(p, r, "parking", "cannot note the complaint for a running rebuild") != 0)
            return TALLY_EUNAVAIL;
        snprintf(key, sizeof(key), STREAM_TENANT "parked", tenant);
        r = proj_command(p, "HSETNX %s %s %s", key, complaint, reason);
        if (reply_status(p, r, "parking", "cannot mark a complaint parked") != 0)
            return TALLY_EUNAVAIL;
    }
    const char *raw = (const char *)m->raw; /* bytes, not a string: see lens */
    const char *argv[] = { "XADD",    stream,    "*",    STREAM_FIELD_EVENT, raw,    "reason",
                           reason,    "id",      m->id,  "tenant",           tenant, "complaint",
                           complaint, "version", version };
    size_t lens[15];
    for (int i = 0; i < 15; i++)
        lens[i] = i == 4 ? m->rawlen : strlen(argv[i]);
    redisReply *r = proj_command_argv(p, 15, argv, lens);
    if (reply_status(p, r, "parking", "cannot add to the dead-letter stream") != 0)
        return TALLY_EUNAVAIL;
    metrics_inc(p->parked, 1);
    log_warn("event parked", LOG_STR("tenant", tenant), LOG_STR("complaint", complaint),
             LOG_STR("version", version), LOG_STR("id", m->id), LOG_STR("reason", reason));
    return 0;
}

void proj_lost(proj *p, int part, const char *id)
{
    kv_id pid = { 0, 0 };
    kv_id_parse(id, &pid);
    metrics_inc(p->lost, 1);
    log_error("a stream entry was trimmed before it was applied; asking the relay to republish",
              LOG_STR("stream", p->streams[part]), LOG_STR("id", id));
    if (pid.ms > 0 && (p->lost_ms == 0 || (int64_t)pid.ms < p->lost_ms))
        p->lost_ms = (int64_t)pid.ms;
}

int proj_report_lost(proj *p)
{
    static const char *script =
        "local v = tonumber(redis.call('GET', KEYS[1]))\n"
        "if not v or v > tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end\n"
        "return 0";
    if (p->lost_ms == 0)
        return 0;
    redisReply *r = proj_command(p, "EVAL %s 1 %s %lld", script, STREAM_REPAIR_REQUEST_KEY,
                                 (long long)p->lost_ms);
    if (reply_status(p, r, "reporting lost entries", "cannot report lost entries") != 0)
        return TALLY_EUNAVAIL;
    p->lost_ms = 0;
    return 0;
}

void proj_ack(proj *p, proj_msg **v, size_t n)
{
    for (int part = 0; part < p->conf->partitions && kv_ctx(p->kv); part++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += v[i]->part == part;
        if (k == 0)
            continue;
        const char **argv = malloc((k + 3) * sizeof(*argv));
        size_t *lens = malloc((k + 3) * sizeof(*lens));
        if (!argv || !lens) {
            free(argv);
            free(lens);
            continue; /* left pending: reclaimed and applied again as duplicates */
        }
        argv[0] = "XACK";
        argv[1] = p->streams[part];
        argv[2] = STREAM_GROUP;
        k = 3;
        for (size_t i = 0; i < n; i++)
            if (v[i]->part == part)
                argv[k++] = v[i]->id;
        for (size_t i = 0; i < k; i++)
            lens[i] = strlen(argv[i]);
        redisReply *r = proj_command_argv(p, (int)k, argv, lens);
        if (r)
            freeReplyObject(r);
        free(argv);
        free(lens);
    }
}
