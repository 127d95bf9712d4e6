#include "consumer.h"

#include "backoff.h"
#include "decode.h"
#include "embedded.h"
#include "err.h"
#include "hash.h"
#include "kv.h"
#include "log.h"
#include "now.h"
#include "pipeline.h"
#include "stream.h"
#include "svc.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RETRY_MAX        10000 /* gaps and failures kept in memory for another try */
#define RETRY_EVERY_MS   200   /* first retry of a gap; later ones back off to 2 s */
#define PENDING_EVERY_MS 5000
#define REDIS_TIMEOUT_MS 10000

/* tally.lua, compiled in (cmake/EmbedFiles.cmake). */
extern const embedded_file projector_lua[];

/* One stream entry read and not yet acked. */
typedef struct msg {
    int part;
    char id[48];
    uint8_t *raw; /* the envelope bytes, kept for parking */
    size_t rawlen;
    proj_event ev;
    bool ok;   /* decoded */
    bool gone; /* trimmed or deleted from the stream: a loss to report, then acked */
    bool wm;   /* a watermark entry (field w, no e): acked, remembered as a candidate */
    int64_t wm_ms;
    char why[160]; /* why it was refused, when not ok */
    bool solo;     /* failed alone: retried alone */
    int attempts;  /* failed applies */
    int64_t first_ms, next_ms;
} msg;

typedef struct msgs {
    msg **v;
    size_t n, cap;
} msgs;

typedef struct proj {
    const proj_config *conf;
    kv_conn *kv;
    char streams[STREAM_PARTITIONS_MAX][STREAM_KEY_MAX];
    bool read_pending;    /* after a (re)connect: our own pending entries first */
    bool reload;          /* the function is gone (Redis restarted): load it again */
    msgs retry;           /* gaps and failures, in arrival order */
    char lib[40], fn[48]; /* the versioned function library and function (see load_function) */
    char *lua;            /* tally.lua with those names */
    bool started;         /* connected once: a refusal now ends proj_run instead */
    const char *refused;  /* why Redis cannot be used as it is configured, or NULL */
    int64_t lost_ms;      /* earliest lost entry not yet reported to the relay (0: none) */
    pl_marks marks[STREAM_PARTITIONS_MAX];
    int64_t wm[STREAM_PARTITIONS_MAX]; /* watermark published per partition */
    int64_t next_consumers_ms;
    char sys_err[160]; /* the systemic error of this turn, if any */
    bool refusing;     /* Redis refused writes at the last attempt (logged once) */
    int64_t next_claim_ms, next_pending_ms;
    int64_t gap_wait_ms; /* how long a gap waits before it is parked (see proj_run) */
    backoff bo;
    metrics_counter *applied, *dups, *gaps, *parked, *failures, *lost, *spilled, *unavailable;
    metrics_counter *systemic[KV_SYSTEMIC_KINDS];
    metrics_histogram *batch_seconds, *lag_seconds;
    metrics_gauge *pending, *retrying, *beat, *dead, *wm_gauge, *ready_gauge;
} proj;

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

/* ---- messages ------------------------------------------------------------------------------ */

static void msg_free(msg *m)
{
    if (!m)
        return;
    proj_event_release(&m->ev);
    free(m->raw);
    free(m);
}

static int msgs_push(msgs *l, msg *m)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        msg **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return TALLY_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = m;
    return 0;
}

static void msgs_clear(msgs *l)
{
    for (size_t i = 0; i < l->n; i++)
        msg_free(l->v[i]);
    l->n = 0;
}

static bool msgs_has(const msgs *l, int part, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i]->part == part && strcmp(l->v[i]->id, id) == 0)
            return true;
    return false;
}

/* ---- Redis helpers ------------------------------------------------------------------------- */

/* A command's reply, or NULL after an I/O error (the connection is then reset). */
static redisReply *command_argv(proj *p, int argc, const char **argv, const size_t *lens)
{
    redisContext *c = kv_ctx(p->kv);
    redisReply *r = c ? redisCommandArgv(c, argc, argv, lens) : NULL;
    if (!r)
        kv_reset(p->kv);
    return r;
}

/* As command_argv, with a format (redisCommand). */
static redisReply *command(proj *p, const char *fmt, ...)
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

/*
 * An error reply r (or NULL for an I/O error) to something the projector needs: true when it is
 * systemic (Redis cannot take writes now: see kv.h), which is counted, logged and makes
 * the loop back off; the connection is dropped where a new one may fare better.
 */
static bool systemic(proj *p, const redisReply *r, const char *doing)
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

/*
 * The library's name and its function's carry a hash of the source (tally_<h>, tally_apply_<h>),
 * so replicas of two builds never replace each other's function during a rolling upgrade: each
 * loads its own (FUNCTION LOAD without REPLACE; "already exists" is success) and calls it.
 */
static int version_function(proj *p)
{
    const char *src = projector_lua[0].data, *head = "#!lua name=tally\n";
    const char *reg = "register_function('tally_apply'";
    const char *at = strstr(src, reg);
    size_t n = strlen(src);
    if (strncmp(src, head, strlen(head)) != 0 || !at)
        return TALLY_EINTERNAL;
    unsigned h = (unsigned)hash_fnv1a(src, n, 0);
    snprintf(p->lib, sizeof(p->lib), "tally_%08x", h);
    snprintf(p->fn, sizeof(p->fn), "tally_apply_%08x", h);
    if (!(p->lua = malloc(n + 64)))
        return TALLY_ENOMEM;
    int len = snprintf(p->lua, n + 64, "#!lua name=%s\n%.*s", p->lib,
                       (int)(at - src - strlen(head)), src + strlen(head));
    snprintf(p->lua + len, n + 64 - (size_t)len, "register_function('%s'%s", p->fn,
             at + strlen(reg));
    return 0;
}

static int load_function(proj *p)
{
    const char *argv[] = { "FUNCTION", "LOAD", p->lua };
    size_t lens[] = { 8, 4, strlen(p->lua) };
    redisReply *r = command_argv(p, 3, argv, lens);
    int rc = r ? 0 : TALLY_EUNAVAIL;
    if (r && r->type == REDIS_REPLY_ERROR && !strstr(r->str, "already exists")) {
        if (!systemic(p, r, "loading the apply function"))
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
    redisReply *r = command(p, "CONFIG GET maxmemory-policy");
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
        redisReply *r = command(p, "XGROUP CREATE %s %s 0 MKSTREAM", p->streams[i], STREAM_GROUP);
        if (!r)
            return TALLY_EUNAVAIL;
        bool ok = r->type != REDIS_REPLY_ERROR || strncmp(r->str, "BUSYGROUP", 9) == 0;
        if (!ok && !systemic(p, r, "creating the consumer group"))
            log_error("cannot create the consumer group", LOG_STR("stream", p->streams[i]),
                      LOG_STR("error", r->str));
        freeReplyObject(r);
        if (!ok)
            return TALLY_EUNAVAIL;
    }
    return 0;
}

/* Connects, loads the function and makes sure the groups exist. */
static int prepare(proj *p)
{
    if (kv_ctx(p->kv))
        return 0;
    int rc = kv_connect(p->kv);
    if (rc == 0)
        rc = check_policy(p);
    if (rc == 0)
        rc = load_function(p);
    if (rc == 0)
        rc = create_groups(p);
    if (rc != 0) {
        kv_reset(p->kv);
        return rc;
    }
    /* Whatever we read before and did not ack is in our pending list: start there. */
    msgs_clear(&p->retry);
    /* This may be another Redis (restarted empty, restored from a snapshot, a promoted
       replica): watermark candidates of the old one prove nothing here. */
    memset(p->marks, 0, sizeof(p->marks));
    memset(p->wm, 0, sizeof(p->wm));
    /* Every partition has a field, "0" (unknown) until its first watermark: query-svc takes the
       lowest, so a partition no watermark reached yet is never left out. */
    for (int i = 0; i < p->conf->partitions; i++) {
        redisReply *r = command(p, "HSETNX %s %d 0", STREAM_WM_KEY, i);
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

/* ---- parking and acking -------------------------------------------------------------------- */

/*
 * Whether m is still pending with this consumer: another projector may have reclaimed it
 * (XAUTOCLAIM takes entries that wait long in a retry queue) and parked or applied it. 1 yes,
 * 0 no, or TALLY_EUNAVAIL.
 */
static int still_ours(proj *p, const msg *m)
{
    redisReply *r =
        command(p, "XPENDING %s %s %s %s 1", p->streams[m->part], STREAM_GROUP, m->id, m->id);
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

/*
 * Moves m to the dead-letter stream (and parks its complaint). 0: parked, the caller acks it;
 * 1: not ours any more (another projector has it), the caller forgets it without an ack;
 * TALLY_EUNAVAIL: not parked (an I/O error or an error reply: never acked then).
 */
static int park(proj *p, msg *m, const char *reason)
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
        char key[96];
        snprintf(key, sizeof(key), "{t:%s}:parked", tenant);
        redisReply *r = command(p, "HSETNX %s %s %s", key, complaint, reason);
        bool failed = !r || r->type == REDIS_REPLY_ERROR;
        if (r && failed && !systemic(p, r, "parking"))
            log_error("cannot mark a complaint parked", LOG_STR("error", r->str));
        if (r)
            freeReplyObject(r);
        if (failed)
            return TALLY_EUNAVAIL;
    }
    const char *argv[] = { "XADD",
                           stream,
                           "*",
                           STREAM_FIELD_EVENT,
                           (const char *)m->raw,
                           "reason",
                           reason,
                           "id",
                           m->id,
                           "tenant",
                           tenant,
                           "complaint",
                           complaint,
                           "version",
                           version };
    size_t lens[15];
    for (int i = 0; i < 15; i++)
        lens[i] = i == 4 ? m->rawlen : strlen(argv[i]); /* the envelope is bytes, not a string */
    redisReply *r = command_argv(p, 15, argv, lens);
    bool failed = !r || r->type == REDIS_REPLY_ERROR;
    if (r && failed && !systemic(p, r, "parking"))
        log_error("cannot add to the dead-letter stream", LOG_STR("error", r->str));
    if (r)
        freeReplyObject(r);
    if (failed)
        return TALLY_EUNAVAIL;
    metrics_inc(p->parked, 1);
    log_warn("event parked", LOG_STR("tenant", tenant), LOG_STR("complaint", complaint),
             LOG_STR("version", version), LOG_STR("id", m->id), LOG_STR("reason", reason));
    return 0;
}

/*
 * An entry trimmed or deleted from the stream before it was applied: a loss. Counted, logged,
 * and reported to the relay (tally:repair:request, the earliest such time), which republishes
 * from PostgreSQL what it published since then.
 */
static void lost(proj *p, int part, const char *id)
{
    kv_id pid = { 0, 0 };
    kv_id_parse(id, &pid);
    metrics_inc(p->lost, 1);
    log_error("a stream entry was trimmed before it was applied; asking the relay to republish",
              LOG_STR("stream", p->streams[part]), LOG_STR("id", id));
    if (pid.ms > 0 && (p->lost_ms == 0 || (int64_t)pid.ms < p->lost_ms))
        p->lost_ms = (int64_t)pid.ms;
}

/* Writes the pending loss report, keeping the earliest time already there. 0 or an error. */
static int report_lost(proj *p)
{
    static const char *script =
        "local v = tonumber(redis.call('GET', KEYS[1]))\n"
        "if not v or v > tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end\n"
        "return 0";
    if (p->lost_ms == 0)
        return 0;
    redisReply *r =
        command(p, "EVAL %s 1 %s %lld", script, STREAM_REPAIR_REQUEST_KEY, (long long)p->lost_ms);
    bool failed = !r || r->type == REDIS_REPLY_ERROR;
    if (r && failed && !systemic(p, r, "reporting lost entries"))
        log_error("cannot report lost entries", LOG_STR("error", r->str));
    if (r)
        freeReplyObject(r);
    if (failed)
        return TALLY_EUNAVAIL;
    p->lost_ms = 0;
    return 0;
}

/* XACKs the given entries, one command per partition. */
static void ack(proj *p, msg **v, size_t n)
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
        redisReply *r = command_argv(p, (int)k, argv, lens);
        if (r)
            freeReplyObject(r);
        free(argv);
        free(lens);
    }
}

/* ---- applying ------------------------------------------------------------------------------ */

/* The FCALL of a run of events of one tenant, appended to the pipeline. */
static int append_fcall(proj *p, msg **v, size_t n, const char *now)
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
    snprintf(key, sizeof(key), "{t:%s}:gen", v[0]->ev.env->tenant_id);
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

/* Outcome of one event's apply, recorded on the message. */
enum proj_outcome { PROJ_DONE, PROJ_PARK, PROJ_RETRY };

static void observe_applied(proj *p, const msg *m, int64_t now)
{
    metrics_inc(p->applied, 1);
    int64_t rec = m->ev.env->recorded_at_ms ? m->ev.env->recorded_at_ms : m->ev.env->occurred_at_ms;
    if (!m->ev.env->imported && rec > 0)
        metrics_observe(p->lag_seconds, (double)(now - rec) / 1000.0);
}

/* Orders events by tenant, then by position: a tenant's events keep their order. */
static msg **sort_base;

static int by_tenant(const void *a, const void *b)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(sort_base[i]->ev.env->tenant_id, sort_base[j]->ev.env->tenant_id);
    return c ? c : (i > j) - (i < j);
}

/*
 * Reads the reply of one FCALL over sorted[a..b) into out[]/why[] (indexed as v, via order).
 * 0, 1 for a systemic error reply (nothing recorded against the events), or TALLY_EUNAVAIL.
 */
static int read_reply(proj *p, msg **v, const size_t *order, size_t a, size_t b, int64_t wall,
                      enum proj_outcome *out, char (*why)[160], bool *failed)
{
    redisReply *r = NULL;
    if (redisGetReply(kv_ctx(p->kv), (void **)&r) != REDIS_OK || !r)
        return TALLY_EUNAVAIL;
    *failed = !(r->type == REDIS_REPLY_ARRAY && r->elements == b - a);
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
    } else if (systemic(p, r, "applying events")) {
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

/*
 * Applies the decoded messages of v (several tenants): one pipelined FCALL per tenant with
 * all its events of the batch, in their order (tenants are independent: their keys are
 * disjoint), and one FCALL alone for a message marked solo. A failed FCALL of several events
 * is split at once into one FCALL per event, in order, so that the good ones are applied in
 * their tenant's order and only the failing one waits for a retry (counted as an attempt, and
 * alone from then on). Fills out[i] and why[i] for v[i]. TALLY_EUNAVAIL on an I/O error.
 */
static int apply(proj *p, msg **v, size_t n, enum proj_outcome *out, char (*why)[160])
{
    size_t *order = malloc((n ? n : 1) * sizeof(*order));
    size_t *start = malloc((n + 1) * sizeof(*start)), ngroups = 0;
    msg **sorted = malloc((n ? n : 1) * sizeof(*sorted));
    bool *split = calloc(n + 1, sizeof(*split)), failed = false;
    char now[24];
    int64_t wall = now_wall_ms();
    int rc = 0;
    if (!order || !start || !sorted || !split) {
        free(order);
        free(start);
        free(sorted);
        free(split);
        return TALLY_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    sort_base = v; /* the loop runs on one thread */
    qsort(order, n, sizeof(*order), by_tenant);
    for (size_t k = 0; k < n; k++)
        sorted[k] = v[order[k]];
    snprintf(now, sizeof(now), "%" PRId64, wall);
    for (size_t k = 0; k < n; k++)
        if (k == 0 || sorted[k]->solo || sorted[k - 1]->solo ||
            strcmp(sorted[k]->ev.env->tenant_id, sorted[k - 1]->ev.env->tenant_id) != 0)
            start[ngroups++] = k;
    start[ngroups] = n;
    for (size_t g = 0; g < ngroups && rc == 0; g++)
        rc = append_fcall(p, sorted + start[g], start[g + 1] - start[g], now);
    bool refused = false; /* a systemic error: the rest of the replies are read, then we stop */
    for (size_t g = 0; g < ngroups && rc == 0; g++) {
        rc = read_reply(p, v, order, start[g], start[g + 1], wall, out, why, &failed);
        if (rc == 1) {
            refused = true;
            rc = kv_ctx(p->kv) ? 0 : TALLY_EUNAVAIL;
            continue;
        }
        split[g] = failed && start[g + 1] - start[g] > 1;
        for (size_t k = start[g]; k < start[g + 1] && failed && !split[g]; k++) {
            sorted[k]->attempts++;
            sorted[k]->solo = true;
        }
    }
    if (rc == 0 && refused)
        rc = TALLY_EUNAVAIL;
    if (rc == 0 && p->reload) {
        p->reload = false;
        load_function(p);
    }
    /* The failed groups again, one event per FCALL. */
    for (size_t g = 0; g < ngroups && rc == 0; g++)
        for (size_t k = start[g]; split[g] && k < start[g + 1] && rc == 0; k++)
            rc = append_fcall(p, sorted + k, 1, now);
    for (size_t g = 0; g < ngroups && rc == 0; g++)
        for (size_t k = start[g]; split[g] && k < start[g + 1] && rc == 0; k++) {
            rc = read_reply(p, v, order, k, k + 1, wall, out, why, &failed);
            if (rc == 1) {
                refused = true;
                rc = kv_ctx(p->kv) ? 0 : TALLY_EUNAVAIL;
                continue;
            }
            if (failed) {
                sorted[k]->attempts++;
                sorted[k]->solo = true; /* alone next time */
            }
        }
    if (rc == 0 && refused)
        rc = TALLY_EUNAVAIL;
    free(order);
    free(start);
    free(sorted);
    free(split);
    if (rc != 0)
        kv_reset(p->kv);
    return rc;
}

/*
 * Applies, acks, parks and queues for retry the messages in v, which this call takes over
 * (each is acked and freed, kept in the retry queue, or freed unacked: left in the pending
 * list, from where it is read or reclaimed again). Nothing is acked that was not applied,
 * durably parked, or (for a lost entry) reported. An error (Redis down or refusing writes)
 * stops the batch: what is not acked yet is read again later.
 */
static int handle(proj *p, msg **v, size_t n)
{
    enum proj_outcome *out = calloc(n ? n : 1, sizeof(*out));
    char(*why)[160] = calloc(n ? n : 1, sizeof(*why));
    msg **decoded = malloc((n ? n : 1) * sizeof(*decoded));
    msg **done = malloc((n ? n : 1) * sizeof(*done));
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
        msg *m = v[i];
        const char *reason = m->why;
        if (m->wm || m->gone) {
            if (m->gone)
                lost(p, m->part, m->id);
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
                if (p->retry.n >= RETRY_MAX || msgs_push(&p->retry, m) != 0) {
                    metrics_inc(p->spilled, 1);
                    msg_free(m);
                }
                continue;
            }
        }
        int parked = park(p, m, reason);
        if (parked < 0) {
            rc = parked;
            break; /* m and the rest are freed unacked below */
        }
        if (parked == 0)
            done[ndone++] = m;
        else
            msg_free(m);
    }
    free(dout);
    free(dwhy);
    if (kv_ctx(p->kv) && report_lost(p) != 0) {
        size_t keep = 0; /* a lost entry is acked only once the relay knows of it */
        for (size_t k = 0; k < ndone; k++)
            if (done[k]->gone)
                msg_free(done[k]);
            else
                done[keep++] = done[k];
        ndone = keep;
        rc = TALLY_EUNAVAIL;
    }
    if (kv_ctx(p->kv)) { /* what is done is acked, even when Redis refuses writes now */
        ack(p, done, ndone);
        for (size_t k = 0; k < ndone; k++)
            if (done[k]->wm) {
                kv_id id;
                if (kv_id_parse(done[k]->id, &id))
                    pl_marks_add(&p->marks[done[k]->part], id, done[k]->wm_ms);
            }
    }
    for (size_t k = 0; k < ndone; k++)
        msg_free(done[k]);
    for (; i < n; i++) /* not handled (an error stopped the batch): read again later */
        msg_free(v[i]);
out_free:
    free(out);
    free(why);
    free(decoded);
    free(done);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------------- */

/* Whether the field name r of a stream entry is name. */
static bool field_is(const redisReply *r, const char *name)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(name) &&
           memcmp(r->str, name, r->len) == 0;
}

/* Makes messages of the entries of one stream's reply (an array of [id, [field, value...]]). */
static void collect(proj *p, int part, const redisReply *entries, msgs *into)
{
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1)
            continue;
        const char *id = e->element[0]->str;
        if (msgs_has(&p->retry, part, id) || msgs_has(into, part, id))
            continue; /* already here (a reclaim of our own gap, due for retry) */
        msg *m = calloc(1, sizeof(*m));
        if (!m)
            continue;
        m->part = part;
        snprintf(m->id, sizeof(m->id), "%s", id);
        const redisReply *f = e->elements > 1 ? e->element[1] : NULL;
        const redisReply *val = NULL, *w = NULL;
        for (size_t k = 0; f && f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2) {
            if (field_is(f->element[k], STREAM_FIELD_EVENT))
                val = f->element[k + 1];
            if (field_is(f->element[k], STREAM_FIELD_WATERMARK))
                w = f->element[k + 1];
        }
        if (!f || f->type != REDIS_REPLY_ARRAY) { /* trimmed or deleted: nothing to apply */
            m->gone = true;
        } else if (!val && w) { /* the relay's watermark entry */
            m->wm = true;
            m->wm_ms = strtoll(w->str, NULL, 10);
        } else {
            m->rawlen = val ? val->len : 0;
            m->raw = malloc(m->rawlen + 1);
            if (m->raw && val) {
                memcpy(m->raw, val->str, m->rawlen);
                m->raw[m->rawlen] = 0;
            }
            snprintf(m->why, sizeof(m->why), "%s",
                     val ? "out of memory" : "no field " STREAM_FIELD_EVENT);
            m->ok = m->raw && val &&
                    proj_decode((const uint8_t *)m->raw, m->rawlen, &m->ev, m->why,
                                sizeof(m->why)) == 0;
        }
        if (msgs_push(into, m) != 0)
            msg_free(m);
    }
}

/* One XREADGROUP over every partition: new entries, or ours still pending after a restart. */
static int read_batch(proj *p, msgs *into, bool may_block)
{
    int np = p->conf->partitions;
    const char **argv = malloc((size_t)(9 + 2 * np) * sizeof(*argv));
    size_t *lens = malloc((size_t)(9 + 2 * np) * sizeof(*lens));
    char count[16], block[16];
    int argc = 0, rc = 0;
    if (!argv || !lens) {
        free(argv);
        free(lens);
        return TALLY_ENOMEM;
    }
    snprintf(count, sizeof(count), "%d", p->conf->batch);
    snprintf(block, sizeof(block), "%d", p->read_pending ? 0 : p->conf->block_ms);
    const char *head[] = { "XREADGROUP", "GROUP", STREAM_GROUP, p->conf->consumer, "COUNT", count };
    for (int i = 0; i < 6; i++)
        argv[argc++] = head[i];
    if (!p->read_pending && may_block) {
        argv[argc++] = "BLOCK";
        argv[argc++] = block;
    }
    argv[argc++] = "STREAMS";
    for (int i = 0; i < np; i++)
        argv[argc++] = p->streams[i];
    for (int i = 0; i < np; i++)
        argv[argc++] = p->read_pending ? "0" : ">";
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = command_argv(p, argc, argv, lens);
    free(argv);
    free(lens);
    if (!r)
        return TALLY_EUNAVAIL;
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("XREADGROUP failed", LOG_STR("error", r->str));
        if (strncmp(r->str, "NOGROUP", 7) == 0) /* Redis lost the stream: start over */
            kv_reset(p->kv);
        rc = TALLY_EUNAVAIL;
    } else if (r->type == REDIS_REPLY_ARRAY) {
        size_t before = into->n;
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *s = r->element[i];
            if (s->type != REDIS_REPLY_ARRAY || s->elements != 2)
                continue;
            int part = -1;
            for (int k = 0; k < np; k++)
                if (strcmp(s->element[0]->str, p->streams[k]) == 0)
                    part = k;
            if (part >= 0)
                collect(p, part, s->element[1], into);
        }
        if (p->read_pending && into->n == before)
            p->read_pending = false; /* our pending list is done: new entries from now on */
    } else if (p->read_pending) {
        p->read_pending = false;
    }
    freeReplyObject(r);
    return rc;
}

/* XAUTOCLAIM: entries pending too long with any consumer (a dead one) become ours. */
static int claim(proj *p, msgs *into)
{
    char idle[24];
    snprintf(idle, sizeof(idle), "%d", p->conf->claim_idle_ms);
    for (int part = 0; part < p->conf->partitions; part++) {
        char start[48] = "0-0";
        for (int round = 0; round < 100; round++) {
            char count[16];
            snprintf(count, sizeof(count), "%d", p->conf->batch);
            const char *argv[] = { "XAUTOCLAIM", p->streams[part],
                                   STREAM_GROUP, p->conf->consumer,
                                   idle,         start,
                                   "COUNT",      count };
            size_t lens[8];
            for (int i = 0; i < 8; i++)
                lens[i] = strlen(argv[i]);
            redisReply *r = command_argv(p, 8, argv, lens);
            if (!r)
                return TALLY_EUNAVAIL;
            bool more = false;
            if (r->type == REDIS_REPLY_ERROR) {
                bool sys = systemic(p, r, "reclaiming entries");
                freeReplyObject(r);
                return sys ? TALLY_EUNAVAIL : 0;
            }
            if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
                size_t before = into->n;
                collect(p, part, r->element[1], into);
                /* Redis 7 drops entries trimmed from the stream out of the pending list itself
                   and names them here: each is a loss. */
                const redisReply *deleted = r->elements >= 3 ? r->element[2] : NULL;
                for (size_t k = 0;
                     deleted && deleted->type == REDIS_REPLY_ARRAY && k < deleted->elements; k++)
                    lost(p, part, deleted->element[k]->str);
                snprintf(start, sizeof(start), "%s", r->element[0]->str);
                more = strcmp(start, "0-0") != 0;
                if (into->n > before)
                    log_info("reclaimed pending events", LOG_STR("stream", p->streams[part]),
                             LOG_INT("count", (long long)(into->n - before)));
            }
            freeReplyObject(r);
            if (!more)
                break;
        }
    }
    return 0;
}

/* The pending list's size and the dead letters (alert on them: nothing trims them). */
static void sample_pending(proj *p)
{
    long long total = 0, dead = 0;
    for (int part = 0; part < p->conf->partitions; part++) {
        redisReply *r = command(p, "XPENDING %s %s", p->streams[part], STREAM_GROUP);
        if (!r)
            return;
        if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1)
            total += r->element[0]->integer;
        freeReplyObject(r);
        char dead_key[STREAM_KEY_MAX];
        stream_dead_key(part, dead_key, sizeof(dead_key));
        if (!(r = command(p, "XLEN %s", dead_key)))
            return;
        if (r->type == REDIS_REPLY_INTEGER)
            dead += r->integer;
        freeReplyObject(r);
        /* tally:wm's field, "0" (unknown) if a flush took it while we stayed connected. */
        if ((r = command(p, "HSETNX %s %d 0", STREAM_WM_KEY, part)))
            freeReplyObject(r);
    }
    metrics_set(p->pending, total);
    metrics_set(p->dead, dead);
}

/*
 * Publishes the watermarks that hold now (pipeline.h): per partition with candidates, the
 * group's oldest pending entry decides, and tally:wm's field only ever moves forward (several
 * projectors write it).
 */
static void settle_watermarks(proj *p)
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
        redisReply *r = command(p, "EXISTS %s %s", STREAM_REPAIR_REQUEST_KEY, STREAM_REPAIR_KEY);
        bool hold = !r || r->type != REDIS_REPLY_INTEGER || r->integer > 0;
        if (r)
            freeReplyObject(r);
        if (hold)
            return;
    }
    for (int part = 0; part < p->conf->partitions; part++) {
        if (p->marks[part].n > 0) {
            redisReply *r = command(p, "XPENDING %s %s", p->streams[part], STREAM_GROUP);
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
                r = command(p, "EVAL %s 1 %s %d %lld", script, STREAM_WM_KEY, part, (long long)w);
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

/*
 * Consumers of the group with nothing pending and no contact for ten claim periods are gone
 * (a replica that died or was scaled away: its entries were reclaimed): XGROUP DELCONSUMER, so
 * the group does not pile them up. A live one that was only paused is re-created by its next
 * read, having lost nothing.
 */
static void forget_dead_consumers(proj *p)
{
    long long idle_max = 10LL * p->conf->claim_idle_ms;
    for (int part = 0; part < p->conf->partitions; part++) {
        redisReply *r = command(p, "XINFO CONSUMERS %s %s", p->streams[part], STREAM_GROUP);
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
                command(p, "EVAL %s 1 %s %s %s", del, p->streams[part], STREAM_GROUP, name);
            if (d && d->type == REDIS_REPLY_INTEGER && d->integer >= 0)
                log_info("removed a dead consumer from the group", LOG_STR("consumer", name),
                         LOG_INT("idle_ms", idle));
            if (d)
                freeReplyObject(d);
        }
        freeReplyObject(r);
    }
}

/* The messages whose retry time has come, taken out of the retry queue. */
static void due_retries(proj *p, msgs *into, int64_t now)
{
    size_t keep = 0;
    for (size_t i = 0; i < p->retry.n; i++) {
        msg *m = p->retry.v[i];
        if (m->next_ms <= now && msgs_push(into, m) == 0)
            continue;
        p->retry.v[keep++] = m;
    }
    p->retry.n = keep;
}

static void register_metrics(proj *p, metrics_registry *reg)
{
    p->applied = metrics_counter_add(reg, "tally_projector_events_applied_total",
                                     "Events applied to the read model.", NULL);
    p->dups = metrics_counter_add(reg, "tally_projector_duplicates_total",
                                  "Events skipped as duplicates (version already applied).", NULL);
    p->gaps = metrics_counter_add(reg, "tally_projector_gaps_total",
                                  "Applies refused because an earlier version was missing.", NULL);
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
    msgs batch = { 0 };
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
    if (version_function(&p) != 0) {
        kv_free(p.kv);
        return TALLY_EINTERNAL;
    }

    while (!svc_stopping()) {
        int64_t now = now_mono_ms();
        atomic_store(&heartbeat, now);
        metrics_set(p.beat, now_wall_ms() / 1000);
        p.sys_err[0] = '\0';
        int rc = prepare(&p);
        if (rc == TALLY_EPRECOND && !p.started)
            break; /* refused at start: the process exits non-zero, the log says why */
        if (rc == 0) {
            if (down)
                log_info("Redis is back");
            down = false;
            /* Claimed entries first: a retry due now may be waiting for one of them. */
            if (now >= p.next_claim_ms) {
                rc = claim(&p, &batch);
                p.next_claim_ms = now + conf->claim_idle_ms;
            }
            due_retries(&p, &batch, now);
            if (rc == 0) /* new entries too: retries must not starve them */
                rc = read_batch(&p, &batch, batch.n == 0);
            if (rc == 0 && batch.n > 0) {
                struct timespec t0, t1;
                clock_gettime(CLOCK_MONOTONIC, &t0);
                rc = handle(&p, batch.v, batch.n);
                batch.n = 0; /* handle took the messages over */
                clock_gettime(CLOCK_MONOTONIC, &t1);
                metrics_observe(p.batch_seconds, (double)(t1.tv_sec - t0.tv_sec) +
                                                     (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
            }
            msgs_clear(&batch);
            if (rc == 0 && p.lost_ms)
                rc = report_lost(&p);
            if (rc == 0)
                settle_watermarks(&p);
            if (rc == 0 && now >= p.next_pending_ms) {
                sample_pending(&p);
                p.next_pending_ms = now + PENDING_EVERY_MS;
            }
            if (rc == 0 && now >= p.next_consumers_ms) {
                forget_dead_consumers(&p);
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
        if (rc != TALLY_ENOMEM)
            kv_reset(p.kv); /* the next turn reconnects and reads our pending entries again */
        backoff_sleep_ms(backoff_next(&p.bo));
    }
    msgs_clear(&p.retry);
    free(p.retry.v);
    free(batch.v);
    kv_free(p.kv);
    free(p.lua);
    if (p.refused && !p.started)
        return TALLY_EPRECOND;
    log_info("projector stopped", LOG_STR("consumer", conf->consumer));
    return 0;
}
