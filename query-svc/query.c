#include "query.h"
#include "watch.h"

#include "auth.h"
#include "civil.h"
#include "err.h"
#include "fresh.h"
#include "hash.h"
#include "ident.h"
#include "log.h"
#include "now.h"
#include "panels.h"
#include "stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE_SLOTS     256 /* tenants a worker remembers (direct-mapped) */
#define MAX_READS       4   /* reads of one request when what it knew turned out stale */
#define MAX_FILTER_CATS 100
#define DEFAULT_DAYS    30
#define MAX_DAYS_BY_DAY 400
#define MAX_DAYS        1827
#define TOKEN_MARGIN_MS 20 /* of the deadline, kept for answering after a token wait */

typedef struct qworker {
    const query_config *conf;
    kv_conn *kv;
    char sha[48]; /* the read script's SHA1 once loaded, "" before */
    tmeta cache[CACHE_SLOTS];
    qreq q; /* the request being served: its memory is kept from call to call */
    char err[512];
} qworker;

void *query_worker_new(int index, void *arg)
{
    (void)index;
    const query_config *conf = arg;
    qworker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->conf = conf;
    rd_init(&w->q.b, &w->q.ar);
    w->kv = kv_new(&conf->redis, (int)conf->redis_timeout_ms);
    if (!w->kv) {
        free(w);
        return NULL;
    }
    return w;
}

static void meta_clear(tmeta *m)
{
    for (size_t i = 0; i < m->ncats; i++)
        free(m->cats[i]);
    for (size_t i = 0; i < m->nagents; i++)
        free(m->agents[i]);
    free(m->cats);
    free(m->agents);
    memset(m, 0, sizeof(*m));
}

void query_worker_free(void *worker, void *arg)
{
    (void)arg;
    qworker *w = worker;
    if (!w)
        return;
    for (int i = 0; i < CACHE_SLOTS; i++)
        meta_clear(&w->cache[i]);
    rd_free(&w->q.b);
    ar_free(&w->q.ar);
    kv_free(w->kv);
    free(w);
}

int query_metrics(query_config *conf, metrics_registry *reg)
{
    conf->token_waits = metrics_counter_add(
        reg, "tally_query_token_waits_total",
        "Requests whose consistency token was not applied yet when first read (they waited).",
        NULL);
    conf->stale = metrics_counter_add(
        reg, "tally_query_stale_total",
        "Requests answered stale or refused: their token's version did not arrive in time.", NULL);
    conf->rereads = metrics_counter_add(
        reg, "tally_query_rereads_total",
        "Reads made again because what a worker knew about the tenant had changed.", NULL);
    return conf->token_waits && conf->stale && conf->rereads ? 0 : TALLY_ENOMEM;
}

/* ---- what one request asks for ------------------------------------------------------------- */

/* A request's options, checked, in the terms of any of the six RPCs. */
typedef struct qspec {
    const char *tenant;
    const Tally__V1__ConsistencyToken *token; /* NULL: none */
    bool fail_if_stale;
    bool ov, tr, rs, ag, cd; /* the panels wanted */
    bool has_range;          /* false: the default range */
    int64_t range_from, range_to;
    int oldest_limit, granularity, group_by, sort_by, ag_limit, top_n;
    bool ascending;
    const char *page_token;
    const char *page_token_field;
    qfilter f;
} qspec;

typedef struct qresult {
    Tally__V1__Freshness *fresh;
    Tally__V1__Overview *ov;
    Tally__V1__VolumeTrend *tr;
    Tally__V1__ResolutionStats *rs;
    Tally__V1__AgentPerformance *ag;
    Tally__V1__CategoryDistribution *cd;
} qresult;

static int check_common(srv_call *call, qspec *s, const char *tenant,
                        const Tally__V1__ConsistencyToken *token, bool fail_if_stale)
{
    enum ident_problem p = ident_check(tenant);
    if (p != IDENT_OK)
        return srv_fail(call, TALLY_EINVAL, "tenant_id: %s", ident_problem_text(p));
    s->tenant = tenant;
    s->fail_if_stale = fail_if_stale;
    if (token && token->complaint_id != 0) {
        if (token->complaint_id < 0)
            return srv_fail(call, TALLY_EINVAL, "consistency.complaint_id: must be >= 1");
        if (token->version < 1)
            return srv_fail(call, TALLY_EINVAL,
                            "consistency.version: must be >= 1 when complaint_id is set");
        s->token = token;
    }
    return 0;
}

static int check_range(srv_call *call, qspec *s, const Tally__V1__DateRange *r, int max_days,
                       const char *why_max)
{
    const char *from = r ? r->from_day : "", *to = r ? r->to_day : "";
    if (!from[0] && !to[0])
        return 0; /* the default, DEFAULT_DAYS ending today: always within limits */
    if (!from[0] || !to[0])
        return srv_fail(call, TALLY_EINVAL,
                        "range: from_day and to_day must both be set or both be empty");
    if (civil_parse(from, &s->range_from) != 0)
        return srv_fail(call, TALLY_EINVAL, "range.from_day: \"%s\" is not a YYYY-MM-DD day", from);
    if (civil_parse(to, &s->range_to) != 0)
        return srv_fail(call, TALLY_EINVAL, "range.to_day: \"%s\" is not a YYYY-MM-DD day", to);
    s->has_range = true;
    if (s->range_to < s->range_from)
        return srv_fail(call, TALLY_EINVAL, "range: to_day %s is before from_day %s", to, from);
    int64_t days = s->range_to - s->range_from + 1;
    if (days > max_days)
        return srv_fail(call, TALLY_EINVAL, "range: %" PRId64 " days, longer than the %d allowed%s",
                        days, max_days, why_max);
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static int check_filter(srv_call *call, qspec *s, const Tally__V1__Filter *f, arena *ar)
{
    if (!f)
        return 0;
    if (f->n_category_ids > MAX_FILTER_CATS)
        return srv_fail(call, TALLY_EINVAL, "filter.category_ids: %zu ids, more than %d",
                        f->n_category_ids, MAX_FILTER_CATS);
    s->f.cats = ar_alloc(ar, (f->n_category_ids + 1) * sizeof(*s->f.cats));
    if (!s->f.cats)
        return srv_fail(call, TALLY_ENOMEM, "out of memory");
    for (size_t i = 0; i < f->n_category_ids; i++) {
        enum ident_problem p = ident_check(f->category_ids[i]);
        if (p != IDENT_OK)
            return srv_fail(call, TALLY_EINVAL, "filter.category_ids[%zu]: %s", i,
                            ident_problem_text(p));
        bool dup = false;
        for (size_t j = 0; j < s->f.ncats && !dup; j++)
            dup = strcmp(s->f.cats[j], f->category_ids[i]) == 0;
        if (!dup)
            s->f.cats[s->f.ncats++] = f->category_ids[i];
    }
    for (size_t i = 0; i < f->n_priorities; i++) {
        int p = (int)f->priorities[i];
        if (p < 1 || p > 4)
            return srv_fail(call, TALLY_EINVAL,
                            "filter.priorities[%zu]: %d is not a priority (LOW..URGENT)", i, p);
        bool dup = false;
        for (size_t j = 0; j < s->f.nprios && !dup; j++)
            dup = s->f.prios[j] == p;
        if (!dup)
            s->f.prios[s->f.nprios++] = p;
    }
    qsort(s->f.prios, s->f.nprios, sizeof(int), cmp_int);
    return 0;
}

/* An enum or a bounded number: 0 takes def; values outside [lo, hi] name the field. */
static int check_enum(srv_call *call, const char *field, int v, int hi, int *out, int def)
{
    if (v < 0 || v > hi)
        return srv_fail(call, TALLY_EINVAL, "%s: unknown value %d", field, v);
    *out = v ? v : def;
    return 0;
}

static int check_limit(srv_call *call, const char *field, int v, int hi, int *out, int def)
{
    if (v < 0 || v > hi)
        return srv_fail(call, TALLY_EINVAL, "%s: %d is out of range 0..%d", field, v, hi);
    *out = v ? v : def;
    return 0;
}

static int check_granularity(srv_call *call, qspec *s, int g, const Tally__V1__DateRange *r)
{
    int rc = check_enum(call, "granularity", g, 3, &s->granularity,
                        TALLY__V1__GRANULARITY__GRANULARITY_DAY);
    if (rc == 0)
        rc = s->granularity == TALLY__V1__GRANULARITY__GRANULARITY_DAY
                 ? check_range(call, s, r, MAX_DAYS_BY_DAY, " with GRANULARITY_DAY")
                 : check_range(call, s, r, MAX_DAYS, "");
    return rc;
}

/* ---- the read ------------------------------------------------------------------------------ */

static tmeta *meta_slot(qworker *w, const char *tenant)
{
    tmeta *m = &w->cache[hash_fnv1a(tenant, strlen(tenant), 0) % CACHE_SLOTS];
    if (strcmp(m->tenant, tenant) != 0) {
        meta_clear(m);
        snprintf(m->tenant, sizeof(m->tenant), "%s", tenant);
        snprintf(m->gen, sizeof(m->gen), "1");
    }
    return m;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether the ids of a HGETALL reply (id -> name) are exactly ids[0..n) (sorted). */
static bool same_ids(const redisReply *r, char *const *ids, size_t n)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 * n)
        return false;
    for (size_t i = 0; i < r->elements; i += 2) {
        const char *id = r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str : "";
        if (!bsearch(&id, ids, n, sizeof(*ids), cmp_str))
            return false;
    }
    return true;
}

/* ids := the ids of a HGETALL reply, sorted. */
static int take_ids(const redisReply *r, char ***ids, size_t *n)
{
    size_t k = r && r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
    char **v = calloc(k ? k : 1, sizeof(*v));
    if (!v)
        return TALLY_ENOMEM;
    for (size_t i = 0; i < k; i++)
        if (!(v[i] = strdup(r->element[2 * i]->type == REDIS_REPLY_STRING ? r->element[2 * i]->str
                                                                          : ""))) {
            while (i--)
                free(v[i]);
            free(v);
            return TALLY_ENOMEM;
        }
    qsort(v, k, sizeof(*v), cmp_str);
    for (size_t i = 0; i < *n; i++)
        free((*ids)[i]);
    free(*ids);
    *ids = v;
    *n = k;
    return 0;
}

/* The indexes of the reads every request makes. */
typedef struct common_reads {
    size_t gen, tenant, cats, agents, fresh, rebuild, repair, pos, wm, parked, token;
} common_reads;

static void plan_common(qreq *q, const qspec *s, common_reads *c)
{
    c->gen = rd_cmd(&q->b, "GET");
    rd_argf(&q->b, "%sgen", q->T);
    c->tenant = rd_cmd(&q->b, "HMGET");
    rd_argf(&q->b, "%stenant", q->P);
    rd_arg_static(&q->b, "time_zone");
    c->cats = q->i_cats = rd_cmd(&q->b, "HGETALL");
    rd_argf(&q->b, "%scats", q->P);
    c->agents = q->i_agents = rd_cmd(&q->b, "HGETALL");
    rd_argf(&q->b, "%sagents", q->P);
    c->fresh = rd_cmd(&q->b, "HMGET");
    rd_argf(&q->b, "%sfresh", q->P);
    rd_arg_static(&q->b, "as_of_ms");
    rd_arg_static(&q->b, "applied_ms");
    rd_arg_static(&q->b, "events");
    c->rebuild = rd_cmd(&q->b, "HMGET");
    rd_argf(&q->b, "%srebuild", q->T);
    rd_arg_static(&q->b, "gen");
    rd_arg_static(&q->b, "done");
    rd_arg_static(&q->b, "total");
    rd_arg_static(&q->b, "rate");
    rd_arg_static(&q->b, "phase");
    rd_arg_static(&q->b, "started_ms");
    rd_arg_static(&q->b, "frozen");
    c->parked = rd_cmd(&q->b, "HLEN");
    rd_argf(&q->b, "%sparked", q->T);
    /* The pipeline's state, not the tenant's (docs/keyspace.md, "Streams and pipeline state"). */
    c->repair = rd_cmd(&q->b, "EXISTS");
    rd_arg_static(&q->b, STREAM_REPAIR_KEY);
    c->pos = rd_cmd(&q->b, "EXISTS");
    rd_arg_static(&q->b, STREAM_POS_KEY);
    c->wm = rd_cmd(&q->b, "HVALS");
    rd_arg_static(&q->b, STREAM_WM_KEY);
    c->token = SIZE_MAX;
    if (s->token) {
        c->token = rd_cmd(&q->b, "HGET");
        rd_argf(&q->b, "%scv", q->P);
        rd_argf(&q->b, "%" PRId64, s->token->complaint_id);
    }
}

/*
 * Brings m up to what the read saw: *same tells whether it already matched (the read stands)
 * or the read must be made again. 0, or TALLY_ENOMEM.
 */
static int meta_check(tmeta *m, const qreq *q, const common_reads *c, bool *same)
{
    const char *gen = rd_str(rd_reply(&q->b, c->gen));
    const redisReply *t = rd_reply(&q->b, c->tenant);
    const char *tz =
        t && t->type == REDIS_REPLY_ARRAY && t->elements == 1 ? rd_str(t->element[0]) : NULL;
    const redisReply *cats = rd_reply(&q->b, c->cats), *agents = rd_reply(&q->b, c->agents);
    if (!gen)
        gen = "1";
    if (!tz)
        tz = "";
    *same = strcmp(gen, m->gen) == 0 && strcmp(tz, m->tz) == 0 &&
            same_ids(cats, m->cats, m->ncats) && same_ids(agents, m->agents, m->nagents);
    if (*same)
        return 0;
    bool gen_changed = strcmp(gen, m->gen) != 0;
    snprintf(m->gen, sizeof(m->gen), "%s", gen);
    if (gen_changed)
        return 0; /* the rest was read from the old generation: read again first */
    if (strcmp(tz, m->tz) != 0) {
        char err[160];
        snprintf(m->tz, sizeof(m->tz), "%s", tz);
        m->zone = tz[0] ? tz_get(tz, err, sizeof(err)) : NULL;
        if (tz[0] && !m->zone)
            log_warn("tenant time zone unknown here: days are UTC days",
                     LOG_STR("tenant", m->tenant), LOG_STR("error", err));
    }
    int rc = take_ids(cats, &m->cats, &m->ncats);
    return rc ? rc : take_ids(agents, &m->agents, &m->nagents);
}

static int load_script(qworker *w)
{
    redisReply *r = redisCommand(kv_ctx(w->kv), "SCRIPT LOAD %s", panels_oldest_lua);
    int rc = r && r->type == REDIS_REPLY_STRING ? 0 : TALLY_EUNAVAIL;
    if (rc == 0)
        snprintf(w->sha, sizeof(w->sha), "%s", r->str);
    else
        snprintf(w->err, sizeof(w->err), "loading the read script: %s",
                 r && r->type == REDIS_REPLY_ERROR ? r->str : kv_errstr(w->kv));
    if (r)
        freeReplyObject(r);
    else
        kv_reset(w->kv);
    return rc;
}

/* Waits until the token's version is applied or the wait ends. The version applied then. */
static int64_t wait_token(qworker *w, srv_call *call, const qreq *q, const qspec *s,
                          int64_t applied)
{
    /* Within the deadline, and never longer than the cap: a caller with a token that is never
       reached and a long deadline must not hold a worker thread for it. */
    int64_t left = srv_remaining_ms(call);
    left = left == INT64_MAX ? w->conf->token_wait_ms : left - TOKEN_MARGIN_MS - left / 10;
    if (left > w->conf->token_wait_ms)
        left = w->conf->token_wait_ms;
    int64_t until = now_mono_ms() + left, pause_us = 500;
    while (applied < s->token->version && now_mono_ms() < until) {
        struct timespec ts = { 0, pause_us * 1000 };
        nanosleep(&ts, NULL);
        pause_us = pause_us < 8000 ? pause_us * 2 : pause_us;
        redisReply *r =
            redisCommand(kv_ctx(w->kv), "HGET %scv %" PRId64, q->P, s->token->complaint_id);
        if (!r) {
            kv_reset(w->kv);
            break;
        }
        applied = rd_int(r);
        freeReplyObject(r);
    }
    return applied;
}

/*
 * Whether the read model is being repaired: tally:repair exists, or tally:relay:pos does not
 * (the relay records it at every pass, so a Redis without it lost its data moments ago and the
 * relay has not noticed yet, or no relay has published to it since it started).
 */
static bool repairing(qreq *q, const common_reads *c)
{
    return rd_int(rd_reply(&q->b, c->repair)) > 0 || rd_int(rd_reply(&q->b, c->pos)) == 0;
}

static Tally__V1__Freshness *freshness(qreq *q, const common_reads *c, const qspec *s,
                                       int64_t token_applied)
{
    Tally__V1__Freshness *f = ar_alloc(&q->ar, sizeof(*f));
    if (!f)
        return NULL;
    *f = (Tally__V1__Freshness)TALLY__V1__FRESHNESS__INIT;
    const redisReply *r = rd_reply(&q->b, c->fresh);
    const redisReply *rb = rd_reply(&q->b, c->rebuild);
    Tally__V1__RebuildProgress *rp = ar_alloc(&q->ar, sizeof(*rp));
    if (!rp)
        return NULL;
    *rp = (Tally__V1__RebuildProgress)TALLY__V1__REBUILD_PROGRESS__INIT;
    fresh_seen seen = {
        .now_ms = q->now_ms,
        .as_of_ms = rd_elem_int(r, 0),
        .applied_ms = rd_elem_int(r, 1),
        .events = rd_elem_int(r, 2),
        .watermark_ms = fresh_watermark(rd_reply(&q->b, c->wm)),
        .parked = rd_int(rd_reply(&q->b, c->parked)),
        .rebuild = rb && rb->type == REDIS_REPLY_ARRAY && rb->elements == 7 &&
                   rb->element[0]->type == REDIS_REPLY_STRING,
        .rb_done = rd_elem_int(rb, 1),
        .rb_total = rd_elem_int(rb, 2),
        .rb_rate = rd_elem_int(rb, 3),
        .rb_phase = rb && rb->type == REDIS_REPLY_ARRAY && rb->elements == 7
                        ? rd_str(rb->element[4])
                        : NULL,
        .rb_started_ms = rd_elem_int(rb, 5),
        .rb_frozen = rd_elem_int(rb, 6) == 1,
        .repair = repairing(q, c),
    };
    fresh_fill(f, rp, &seen);
    if (s->token) {
        f->token_applied_version = token_applied;
        f->stale = token_applied < s->token->version;
    }
    return f;
}

static int read_fail(srv_call *call, qworker *w, int rc)
{
    if (rc == TALLY_ENOMEM)
        return srv_fail(call, TALLY_ENOMEM, "out of memory building the read");
    srv_error_reason(call, "READ_MODEL_UNAVAILABLE");
    return srv_fail(call, TALLY_EUNAVAIL, "the read model (Redis) is unavailable: %s",
                    kv_errstr(w->kv));
}

/*
 * The request's one round trip (more only when what the worker knew about the tenant was out
 * of date, the read script had to be loaded, or a consistency token had to be waited for), and
 * the panels built from it.
 */
static int run(srv_call *call, qworker *w, qreq *q, const qspec *s, qresult *out)
{
    tmeta *m = meta_slot(w, s->tenant);
    bool waited = false;
    int64_t token_applied = 0;
    snprintf(q->T, sizeof(q->T), STREAM_TENANT, s->tenant);
    for (int attempt = 0;; attempt++) {
        if (attempt == MAX_READS)
            return srv_fail(call, TALLY_EUNAVAIL,
                            "the read model of tenant \"%s\" kept changing under the read",
                            s->tenant);
        if (!w->sha[0] && (kv_connect(w->kv) != 0 || load_script(w) != 0)) {
            srv_error_reason(call, "READ_MODEL_UNAVAILABLE");
            return srv_fail(call, TALLY_EUNAVAIL, "the read model (Redis) is unavailable: %s",
                            w->sha[0] ? kv_errstr(w->kv) : w->err);
        }
        rd_reset(&q->b);
        q->meta = m;
        q->oldest_sha = w->sha;
        snprintf(q->P, sizeof(q->P), "%s%s:", q->T, m->gen);
        q->now_ms = now_wall_ms();
        int64_t offset = m->zone ? tz_offset(m->zone, q->now_ms / 1000) : 0;
        q->today = civil_day_of_ms(q->now_ms, offset);
        qrange r = { s->range_from, s->range_to };
        if (!s->has_range)
            r = (qrange){ q->today - (DEFAULT_DAYS - 1), q->today };
        /*
         * A page token names its range, which by default is the tenant's local days: it is
         * judged only once the read has confirmed the time zone used here (a worker new to the
         * tenant computes UTC's days on its first attempt).
         */
        int64_t page_offset = 0;
        if (s->ag && s->page_token && s->page_token[0])
            page_offset = ag_token_offset(s->page_token, r, s->sort_by, s->ascending);
        common_reads c;
        plan_common(q, s, &c);
        ov_plan *ov = s->ov ? ov_plan_read(q, s->oldest_limit) : NULL;
        tr_plan *tr = s->tr ? tr_plan_read(q, r, s->granularity, &s->f) : NULL;
        rs_plan *rs = s->rs ? rs_plan_read(q, r, s->group_by, &s->f) : NULL;
        ag_plan *ag = s->ag ? ag_plan_read(q, r, s->sort_by, s->ascending, s->ag_limit,
                                           page_offset < 0 ? 0 : page_offset)
                            : NULL;
        cd_plan *cd = s->cd ? cd_plan_read(q, r, &s->f, s->top_n) : NULL;
        if (q->ar.failed)
            return read_fail(call, w, TALLY_ENOMEM);
        int rc = rd_exec(&q->b, w->kv);
        if (rc != 0)
            return read_fail(call, w, rc);
        q->now_ms = now_wall_ms(); /* ages and lags: not older than what was read */
        /*
         * A damaged tally:wm (not a hash) is not the tenant's damage: it leaves the watermark
         * unknown (fresh_watermark) rather than failing every tenant's calls.
         */
        const char *bad = NULL;
        for (size_t i = 0; i < q->b.ncmds && !bad; i++)
            if (q->b.replies[i]->type == REDIS_REPLY_ERROR && i != c.wm)
                bad = q->b.replies[i]->str;
        if (bad && strncmp(bad, "NOSCRIPT", 8) == 0) {
            w->sha[0] = '\0'; /* Redis lost its scripts (a restart): load it again */
            continue;
        }
        if (bad)
            return srv_fail(call, TALLY_EINTERNAL, "the read model of tenant \"%s\" is damaged: %s",
                            s->tenant, bad);
        bool same;
        if ((rc = meta_check(m, q, &c, &same)) != 0)
            return read_fail(call, w, rc);
        if (!same) {
            metrics_inc(w->conf->rereads, 1);
            continue;
        }
        if (!m->tz[0] && repairing(q, &c)) {
            srv_error_reason(call, "READ_MODEL_REPAIRING");
            srv_retry_after(call, 5000);
            return srv_fail(call, TALLY_EUNAVAIL,
                            "tenant_id: tenant \"%s\" is not in the read model yet: the read model "
                            "is being rebuilt (Redis lost data; its events are being republished "
                            "from PostgreSQL); retry later",
                            s->tenant);
        }
        if (!m->tz[0])
            return srv_fail(call, TALLY_ENOTFOUND,
                            "tenant_id: tenant \"%s\" is not known to the read model", s->tenant);
        if (page_offset < 0)
            return srv_fail(call, TALLY_EINVAL,
                            "%s: malformed, or made for another range, sort or direction",
                            s->page_token_field);
        if (s->token) {
            token_applied = rd_int(rd_reply(&q->b, c.token));
            if (token_applied < s->token->version && !waited) {
                waited = true;
                metrics_inc(w->conf->token_waits, 1);
                int64_t now = wait_token(w, call, q, s, token_applied);
                if (now > token_applied)
                    continue; /* read again, with the command's effect in */
            }
            if (token_applied < s->token->version)
                metrics_inc(w->conf->stale, 1);
            if (token_applied < s->token->version && s->fail_if_stale) {
                srv_error_reason(call, "CONSISTENCY_TOKEN_NOT_APPLIED");
                srv_error_meta(call, "complaint_id", "%" PRId64, s->token->complaint_id);
                srv_error_meta(call, "applied_version", "%" PRId64, token_applied);
                srv_error_meta(call, "token_version", "%" PRId64, s->token->version);
                return srv_fail(call, TALLY_EPRECOND,
                                "consistency: complaint %" PRId64 " is at version %" PRId64
                                " in the read model, version %" PRId64 " was not applied in time",
                                s->token->complaint_id, token_applied, s->token->version);
            }
        }
        out->fresh = freshness(q, &c, s, token_applied);
        out->ov = ov ? ov_build(q, ov) : NULL;
        out->tr = tr ? tr_build(q, tr) : NULL;
        out->rs = rs ? rs_build(q, rs) : NULL;
        out->ag = ag ? ag_build(q, ag) : NULL;
        out->cd = cd ? cd_build(q, cd) : NULL;
        if (q->ar.failed)
            return read_fail(call, w, TALLY_ENOMEM);
        return 0;
    }
}

/* ---- the RPCs ------------------------------------------------------------------------------ */

/*
 * An RPC is its checks (the request into a qspec; the arena is the request's, for what the
 * checks keep) and its reply (the panels it asked for, from the qresult); serve() does the rest
 * for all of them.
 */
typedef struct rpc {
    int (*spec)(srv_call *call, const ProtobufCMessage *msg, qspec *s, arena *ar);
    int (*reply)(srv_call *call, const qresult *res);
} rpc;

static int serve(srv_call *call, const ProtobufCMessage *msg, void *worker, const rpc *r)
{
    qworker *w = worker;
    qspec s = { 0 };
    qresult res = { 0 };
    if (!w)
        return srv_fail(call, TALLY_EUNAVAIL, "worker not initialised (out of memory)");
    int rc = r->spec(call, msg, &s, &w->q.ar);
    if (rc == 0)
        rc = run(call, w, &w->q, &s, &res);
    if (rc == 0)
        rc = r->reply(call, &res);
    rd_reset(&w->q.b); /* the worker keeps the request's memory for the next call */
    ar_reset(&w->q.ar);
    return rc;
}

/* The handler NAME, serving with NAME_spec and NAME_reply. */
#define RPC(name)                                                              \
    static int name(srv_call *call, const ProtobufCMessage *msg, void *worker) \
    {                                                                          \
        static const rpc r = { name##_spec, name##_reply };                    \
        return serve(call, msg, worker, &r);                                   \
    }

static int get_overview_spec(srv_call *call, const ProtobufCMessage *msg, qspec *s, arena *ar)
{
    const Tally__V1__GetOverviewRequest *req = (const void *)msg;
    (void)ar;
    s->ov = true;
    int rc = check_common(call, s, req->tenant_id, req->consistency, req->fail_if_stale);
    return rc ? rc
              : check_limit(call, "oldest_open_limit", req->oldest_open_limit, 100,
                            &s->oldest_limit, 10);
}

static int get_overview_reply(srv_call *call, const qresult *res)
{
    Tally__V1__GetOverviewReply rep = TALLY__V1__GET_OVERVIEW_REPLY__INIT;
    rep.freshness = res->fresh;
    rep.overview = res->ov;
    return srv_reply(call, &rep.base);
}

static int get_volume_trend_spec(srv_call *call, const ProtobufCMessage *msg, qspec *s, arena *ar)
{
    const Tally__V1__GetVolumeTrendRequest *req = (const void *)msg;
    s->tr = true;
    int rc = check_common(call, s, req->tenant_id, req->consistency, req->fail_if_stale);
    if (rc == 0)
        rc = check_granularity(call, s, (int)req->granularity, req->range);
    return rc ? rc : check_filter(call, s, req->filter, ar);
}

static int get_volume_trend_reply(srv_call *call, const qresult *res)
{
    Tally__V1__GetVolumeTrendReply rep = TALLY__V1__GET_VOLUME_TREND_REPLY__INIT;
    rep.freshness = res->fresh;
    rep.trend = res->tr;
    return srv_reply(call, &rep.base);
}

static int get_resolution_stats_spec(srv_call *call, const ProtobufCMessage *msg, qspec *s,
                                     arena *ar)
{
    const Tally__V1__GetResolutionStatsRequest *req = (const void *)msg;
    s->rs = true;
    int rc = check_common(call, s, req->tenant_id, req->consistency, req->fail_if_stale);
    if (rc == 0)
        rc = check_enum(call, "group_by", (int)req->group_by, 4, &s->group_by,
                        TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_NONE);
    if (rc == 0)
        rc = check_range(call, s, req->range, MAX_DAYS, "");
    return rc ? rc : check_filter(call, s, req->filter, ar);
}

static int get_resolution_stats_reply(srv_call *call, const qresult *res)
{
    Tally__V1__GetResolutionStatsReply rep = TALLY__V1__GET_RESOLUTION_STATS_REPLY__INIT;
    rep.freshness = res->fresh;
    rep.stats = res->rs;
    return srv_reply(call, &rep.base);
}

static int get_agent_performance_spec(srv_call *call, const ProtobufCMessage *msg, qspec *s,
                                      arena *ar)
{
    const Tally__V1__GetAgentPerformanceRequest *req = (const void *)msg;
    (void)ar;
    s->ag = true;
    s->ascending = req->ascending;
    s->page_token = req->page_token;
    s->page_token_field = "page_token";
    int rc = check_common(call, s, req->tenant_id, req->consistency, req->fail_if_stale);
    if (rc == 0)
        rc = check_enum(call, "sort_by", (int)req->sort_by, 4, &s->sort_by,
                        TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_RESOLVED);
    if (rc == 0 && req->page_size && req->limit && req->page_size != req->limit)
        rc = srv_fail(call, TALLY_EINVAL, "page_size: %d, but limit (its older name) is %d",
                      (int)req->page_size, (int)req->limit);
    if (rc == 0)
        rc = req->page_size ? check_limit(call, "page_size", req->page_size, 500, &s->ag_limit, 50)
                            : check_limit(call, "limit", req->limit, 500, &s->ag_limit, 50);
    return rc ? rc : check_range(call, s, req->range, MAX_DAYS, "");
}

static int get_agent_performance_reply(srv_call *call, const qresult *res)
{
    Tally__V1__GetAgentPerformanceReply rep = TALLY__V1__GET_AGENT_PERFORMANCE_REPLY__INIT;
    rep.freshness = res->fresh;
    rep.performance = res->ag;
    return srv_reply(call, &rep.base);
}

static int get_category_distribution_spec(srv_call *call, const ProtobufCMessage *msg, qspec *s,
                                          arena *ar)
{
    const Tally__V1__GetCategoryDistributionRequest *req = (const void *)msg;
    s->cd = true;
    int rc = check_common(call, s, req->tenant_id, req->consistency, req->fail_if_stale);
    if (rc == 0)
        rc = check_limit(call, "top_n", req->top_n, 100, &s->top_n, 10);
    if (rc == 0)
        rc = check_range(call, s, req->range, MAX_DAYS, "");
    return rc ? rc : check_filter(call, s, req->filter, ar);
}

static int get_category_distribution_reply(srv_call *call, const qresult *res)
{
    Tally__V1__GetCategoryDistributionReply rep = TALLY__V1__GET_CATEGORY_DISTRIBUTION_REPLY__INIT;
    rep.freshness = res->fresh;
    rep.distribution = res->cd;
    return srv_reply(call, &rep.base);
}

static int get_dashboard_spec(srv_call *call, const ProtobufCMessage *msg, qspec *s, arena *ar)
{
    const Tally__V1__GetDashboardRequest *req = (const void *)msg;
    s->ov = s->tr = s->rs = s->ag = s->cd = true;
    s->ascending = req->agent_ascending;
    int rc = check_common(call, s, req->tenant_id, req->consistency, req->fail_if_stale);
    if (rc == 0)
        rc = check_granularity(call, s, (int)req->granularity, req->range);
    if (rc == 0)
        rc = check_enum(call, "group_by", (int)req->group_by, 4, &s->group_by,
                        TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_NONE);
    if (rc == 0)
        rc = check_enum(call, "agent_sort_by", (int)req->agent_sort_by, 4, &s->sort_by,
                        TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_RESOLVED);
    if (rc == 0)
        rc = check_limit(call, "agent_limit", req->agent_limit, 500, &s->ag_limit, 50);
    if (rc == 0)
        rc = check_limit(call, "category_top_n", req->category_top_n, 100, &s->top_n, 10);
    if (rc == 0)
        rc = check_limit(call, "oldest_open_limit", req->oldest_open_limit, 100, &s->oldest_limit,
                         10);
    return rc ? rc : check_filter(call, s, req->filter, ar);
}

static int get_dashboard_reply(srv_call *call, const qresult *res)
{
    Tally__V1__GetDashboardReply rep = TALLY__V1__GET_DASHBOARD_REPLY__INIT;
    rep.freshness = res->fresh;
    rep.overview = res->ov;
    rep.volume_trend = res->tr;
    rep.resolution_stats = res->rs;
    rep.agent_performance = res->ag;
    rep.category_distribution = res->cd;
    return srv_reply(call, &rep.base);
}

RPC(get_overview)
RPC(get_volume_trend)
RPC(get_resolution_stats)
RPC(get_agent_performance)
RPC(get_category_distribution)
RPC(get_dashboard)

int query_dashboard(srv_call *call, const ProtobufCMessage *req, void *worker)
{
    return get_dashboard(call, req, worker);
}

/* Dashboards are for managers (and admins); docs/security.md. */
#define DASHBOARD_ROLES (AUTH_MANAGER | AUTH_ADMIN)

static const srv_method methods[] = {
    { .name = "GetOverview",
      .request = &tally__v1__get_overview_request__descriptor,
      .handler = get_overview,
      .roles = DASHBOARD_ROLES },
    { .name = "GetVolumeTrend",
      .request = &tally__v1__get_volume_trend_request__descriptor,
      .handler = get_volume_trend,
      .roles = DASHBOARD_ROLES },
    { .name = "GetResolutionStats",
      .request = &tally__v1__get_resolution_stats_request__descriptor,
      .handler = get_resolution_stats,
      .roles = DASHBOARD_ROLES },
    { .name = "GetAgentPerformance",
      .request = &tally__v1__get_agent_performance_request__descriptor,
      .handler = get_agent_performance,
      .roles = DASHBOARD_ROLES },
    { .name = "GetCategoryDistribution",
      .request = &tally__v1__get_category_distribution_request__descriptor,
      .handler = get_category_distribution,
      .roles = DASHBOARD_ROLES },
    { .name = "GetDashboard",
      .request = &tally__v1__get_dashboard_request__descriptor,
      .handler = get_dashboard,
      .roles = DASHBOARD_ROLES },
    { .name = "WatchDashboard",
      .request = &tally__v1__get_dashboard_request__descriptor,
      .roles = DASHBOARD_ROLES,
      .stream = watch_open,
      .closed = watch_closed },
};

const srv_service query_service = { "tally.v1.Dashboard", methods,
                                    sizeof(methods) / sizeof(methods[0]) };
