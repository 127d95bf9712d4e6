/* ev_model: the read model calculated from the events alone, and its comparison with Redis.
 * See ev_model.h. */
#include "ev_model.h"

#include "ev_int.h"
#include "event.h"
#include "hash.h"
#include "hist.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the independent calculation ----------------------------------------------------------- */

static uint64_t hash2(const char *a, const char *b)
{
    return hash_fnv1a(b, strlen(b), hash_fnv1a(a, strlen(a) + 1, 0));
}

static size_t *slot_of(ev_model *m, const char *key, const char *field)
{
    size_t s = hash2(key, field) & (m->nslots - 1);
    for (; m->slots[s]; s = (s + 1) & (m->nslots - 1)) {
        const mrec *r = &m->v[m->slots[s] - 1];
        if (strcmp(r->key, key) == 0 && strcmp(r->field, field) == 0)
            break;
    }
    return &m->slots[s];
}

/* The record of key/field, created empty with kind if new. */
static mrec *mget(ev_model *m, char kind, const char *key, const char *field)
{
    if (2 * (m->n + 1) > m->nslots) { /* grow the table and place every record again */
        free(m->slots);
        m->nslots = m->nslots ? 2 * m->nslots : 4096;
        m->slots = calloc(m->nslots, sizeof(*m->slots));
        if (!m->slots)
            abort();
        for (size_t i = 0; i < m->n; i++)
            *slot_of(m, m->v[i].key, m->v[i].field) = i + 1;
    }
    size_t *slot = slot_of(m, key, field);
    if (*slot)
        return &m->v[*slot - 1];
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 4096;
        m->v = xrealloc(m->v, m->cap * sizeof(*m->v));
    }
    m->v[m->n] = (mrec){ .key = xstrdup(key), .field = xstrdup(field), .kind = kind };
    *slot = ++m->n;
    return &m->v[m->n - 1];
}

/* Adds by to the counter key/field (field from a printf format). */
static void count(ev_model *m, char kind, const char *key, int64_t by, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void count(ev_model *m, char kind, const char *key, int64_t by, const char *fmt, ...)
{
    char field[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(field, sizeof(field), fmt, ap);
    va_end(ap);
    mget(m, kind, key, field)->n += by;
}

static void mset(ev_model *m, char kind, const char *key, const char *field, const char *s,
                 int64_t n)
{
    mrec *r = mget(m, kind, key, field);
    free(r->s);
    r->s = s ? xstrdup(s) : NULL;
    r->n = n;
}

/* Per complaint: where it stands after the applied events. */
typedef struct mstate {
    bool created;
    int tenant, status, prio;
    int64_t created_ms;
    char cat[EV_ID_MAX], agent[EV_ID_MAX];
} mstate;

/*
 * The counters of one group set in d:M for what ("c", "r" or "s"): all, by category, by
 * priority, by both.
 */
static void count4(ev_model *m, const char *key, const char *dd, const char *what, const mstate *c,
                   int64_t by)
{
    count(m, 'c', key, by, "%s:%s", dd, what);
    count(m, 'c', key, by, "%s:%s:k:%s", dd, what, c->cat);
    count(m, 'c', key, by, "%s:%s:p:%d", dd, what, c->prio);
    count(m, 'c', key, by, "%s:%s:kp:%s:%d", dd, what, c->cat, c->prio);
}

/* Counts one resolution of c by the event e (docs/keyspace.md, "a move to RESOLVED"). */
static void resolution(ev_model *m, const char *P, const mstate *c, const ev_event *e)
{
    static const char *const names[4] = { "a", "k", "p", "kp" };
    char key[160], groups[4][EV_ID_MAX + 16], M[8], dd[3];
    int64_t secs = (e->occurred_ms - c->created_ms) / 1000; /* always from creation */
    int b = hist_bucket(secs);
    snprintf(M, sizeof(M), "%.7s", e->day);
    snprintf(dd, sizeof(dd), "%.2s", e->day + 8);
    snprintf(key, sizeof(key), "%sd:%s", P, M);
    count4(m, key, dd, "r", c, 1);
    count4(m, key, dd, "s", c, secs);
    /* groups: "" (all), "<k>:", "<p>:", "<k>:<p>:" */
    snprintf(groups[0], sizeof(groups[0]), "%s", "");
    snprintf(groups[1], sizeof(groups[1]), "%s:", c->cat);
    snprintf(groups[2], sizeof(groups[2]), "%d:", c->prio);
    snprintf(groups[3], sizeof(groups[3]), "%s:%d:", c->cat, c->prio);
    for (int g = 0; g < 4; g++) {
        snprintf(key, sizeof(key), "%shd:%.10s:%s", P, e->day, names[g]);
        count(m, 'c', key, 1, "%s%d", groups[g], b);
        snprintf(key, sizeof(key), "%shm:%s:%s", P, M, names[g]);
        count(m, 'c', key, 1, "%s%d", groups[g], b);
        count(m, 'c', key, 1, "%sn", groups[g]);
        count(m, 'c', key, secs, "%ss", groups[g]);
    }
    if (!c->agent[0]) /* unassigned: in the totals, for no agent */
        return;
    snprintf(key, sizeof(key), "%sad:%.10s", P, e->day);
    count(m, 'c', key, 1, "%s:n", c->agent);
    count(m, 'c', key, secs, "%s:s", c->agent);
    snprintf(key, sizeof(key), "%sad:%s", P, M);
    count(m, 'c', key, 1, "%s:n", c->agent);
    count(m, 'c', key, secs, "%s:s", c->agent);
    snprintf(key, sizeof(key), "%slb:%s", P, M);
    count(m, 'z', key, 1, "%s", c->agent);
}

static int tenant_index(ev_model *m, const char *tenant)
{
    for (int t = 0; t < m->ntenants; t++)
        if (strcmp(m->tenants[t], tenant) == 0)
            return t;
    if (m->ntenants == EV_MAX_TENANTS)
        abort();
    snprintf(m->tenants[m->ntenants], sizeof(m->tenants[0]), "%s", tenant);
    return m->ntenants++;
}

/* One applied event: the counters it adds and the complaint state it moves. */
static void apply_event(ev_model *m, mstate *cs, const ev_event *e, int64_t *events, int64_t *as_of)
{
    char P[96], key[160], f[EV_ID_MAX + 16], M[8], dd[3];
    int t = tenant_index(m, e->tenant_id);
    snprintf(P, sizeof(P), "{t:%s}:1:", e->tenant_id);
    events[t]++;
    if (e->recorded_ms > as_of[t])
        as_of[t] = e->recorded_ms;
    if (e->type >= T_TENANT) { /* reference data: the newest (here: the last) wins */
        snprintf(key, sizeof(key), "%srefseq", P);
        snprintf(f, sizeof(f), "%d:%s", e->type, e->ref_id);
        m->renames[t] += mget(m, 'r', key, f)->n != 0;
        mset(m, 'r', key, f, NULL, e->seq);
        snprintf(key, sizeof(key), "%s%s", P,
                 e->type == T_TENANT     ? "tenant"
                 : e->type == T_CATEGORY ? "cats"
                                         : "agents");
        if (e->type == T_TENANT) {
            mset(m, 's', key, "name", e->name, 0);
            mset(m, 's', key, "time_zone", e->tz, 0);
        } else {
            mset(m, 's', key, e->ref_id, e->name, 0);
        }
        return;
    }
    mstate *c = &cs[e->complaint - 1];
    snprintf(key, sizeof(key), "%scv", P);
    snprintf(f, sizeof(f), "%" PRId64, e->complaint);
    char v[24];
    snprintf(v, sizeof(v), "%" PRId64, e->version);
    mset(m, 's', key, f, v, 0);
    if (e->type == T_CREATED) { /* counted on its day, in its category and priority */
        *c = (mstate){ .created = true,
                       .tenant = t,
                       .status = e->status,
                       .prio = e->priority,
                       .created_ms = e->occurred_ms };
        snprintf(c->cat, sizeof(c->cat), "%s", e->category);
        snprintf(c->agent, sizeof(c->agent), "%s", e->agent);
        snprintf(M, sizeof(M), "%.7s", e->day);
        snprintf(dd, sizeof(dd), "%.2s", e->day + 8);
        snprintf(key, sizeof(key), "%sd:%s", P, M);
        count4(m, key, dd, "c", c, 1);
        snprintf(key, sizeof(key), "%skc:%s", P, M);
        count(m, 'z', key, 1, "%s", c->cat);
    } else if (e->type == T_ASSIGNED) {
        snprintf(c->agent, sizeof(c->agent), "%s", e->agent);
    } else {
        c->status = e->to;
        if (e->to == S_RESOLVED)
            resolution(m, P, c, e);
    }
}

static int by_key_field(const void *a, const void *b)
{
    const mrec *x = a, *y = b;
    int k = strcmp(x->key, y->key);
    return k ? k : strcmp(x->field, y->field);
}

ev_model *ev_model_new(const ev_history *h, const bool *skip)
{
    ev_model *m = calloc(1, sizeof(*m));
    mstate *cs = calloc((size_t)h->complaints + 1, sizeof(*cs));
    int64_t events[EV_MAX_TENANTS] = { 0 }, as_of[EV_MAX_TENANTS] = { 0 };
    if (!m || !cs)
        abort();
    for (int t = 0; t < h->ntenants; t++)
        tenant_index(m, h->tenants[t]);
    for (size_t i = 0; i < h->n; i++)
        if (!skip || !skip[i])
            apply_event(m, cs, &h->v[i], events, as_of);
    /* "Right now": each complaint's status, and the open ones' backlog entries. */
    for (int64_t id = 1; id <= h->complaints; id++) {
        const mstate *c = &cs[id - 1];
        char P[96], key[160], f[24], s[2 * EV_ID_MAX + 32];
        if (!c->created)
            continue;
        snprintf(P, sizeof(P), "{t:%s}:1:", m->tenants[c->tenant]);
        snprintf(key, sizeof(key), "%sst", P);
        count(m, 'c', key, 1, "%d", c->status);
        if (c->status != S_OPEN && c->status != S_IN_PROGRESS)
            continue;
        snprintf(f, sizeof(f), "%" PRId64, id);
        snprintf(key, sizeof(key), "%sopen", P);
        mset(m, 'z', key, f, NULL, c->created_ms);
        snprintf(key, sizeof(key), "%sod", P);
        snprintf(s, sizeof(s), "%d|%d|%s|%s", c->status, c->prio, c->cat, c->agent);
        mset(m, 's', key, f, s, 0);
        snprintf(key, sizeof(key), "%sao", P);
        if (c->agent[0])
            count(m, 'c', key, 1, "%s", c->agent);
    }
    for (int t = 0; t < m->ntenants; t++) {
        char key[96];
        snprintf(key, sizeof(key), "{t:%s}:1:fresh", m->tenants[t]);
        if (events[t]) {
            mset(m, 'f', key, "events", NULL, events[t]);
            mset(m, 'f', key, "as_of_ms", NULL, as_of[t]);
        }
    }
    free(cs);
    free(m->slots); /* sorted from here on: no more lookups */
    m->slots = NULL;
    qsort(m->v, m->n, sizeof(*m->v), by_key_field);
    return m;
}

void ev_model_free(ev_model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].key);
        free(m->v[i].field);
        free(m->v[i].s);
    }
    free(m->v);
    free(m->slots);
    free(m);
}

void ev_model_allow_superseded(ev_model *m)
{
    memcpy(m->slack, m->renames, sizeof(m->slack));
}

int64_t ev_model_events(const ev_model *m, const char *tenant)
{
    char key[96];
    snprintf(key, sizeof(key), "{t:%s}:1:fresh", tenant);
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->v[i].key, key) == 0 && strcmp(m->v[i].field, "events") == 0)
            return m->v[i].n;
    return 0;
}

/* ---- comparing with Redis ------------------------------------------------------------------ */

typedef struct kvpair {
    const char *f, *v;
} kvpair;

static int by_field(const void *a, const void *b)
{
    return strcmp(((const kvpair *)a)->f, ((const kvpair *)b)->f);
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int by_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* "kc:2024-03" for pre "kc:" */
static bool month_key(const char *s, const char *pre)
{
    size_t n = strlen(pre);
    return strncmp(s, pre, n) == 0 && strlen(s + n) == 7 && s[n + 4] == '-';
}

/* Whether s is pre followed by a day "YYYY-MM-DD". */
static bool day_key(const char *s, const char *pre)
{
    size_t n = strlen(pre);
    return strncmp(s, pre, n) == 0 && strlen(s + n) == 10 && s[n + 4] == '-' && s[n + 7] == '-';
}

/* A histogram grouping: "a", "k", "p" or "kp". */
static bool grouping(const char *s)
{
    return !strcmp(s, "a") || !strcmp(s, "k") || !strcmp(s, "p") || !strcmp(s, "kp");
}

/* What the key named s (after "{t:T}:1:") holds, by docs/keyspace.md; 'u' = not named there. */
static char classify(const char *s)
{
    if (!strcmp(s, "cv") || !strcmp(s, "od") || !strcmp(s, "tenant") || !strcmp(s, "cats") ||
        !strcmp(s, "agents"))
        return 's';
    if (!strcmp(s, "refseq") || !strcmp(s, "fresh"))
        return s[0];
    if (!strcmp(s, "open") || month_key(s, "kc:") || month_key(s, "lb:"))
        return 'z';
    if (!strcmp(s, "st") || !strcmp(s, "ao") || month_key(s, "d:") || month_key(s, "ad:") ||
        day_key(s, "ad:"))
        return 'c';
    if (!strncmp(s, "hm:", 3) && strlen(s) > 11 && s[10] == ':' && grouping(s + 11))
        return 'c';
    if (!strncmp(s, "hd:", 3) && strlen(s) > 14 && s[13] == ':' && grouping(s + 14))
        return 'c';
    return 'u';
}

static int differ(char *diff, size_t len, const char *key, const char *field, const char *got,
                  const char *want)
{
    snprintf(diff, len, "%s field \"%s\": redis %s, expected %s", key, field,
             got ? got : "(absent)", want ? want : "(absent)");
    return -1;
}

/* refseq: the seq of the newest reference event per entity, compared as a sorted list. */
static int compare_refseq(const char *key, const mrec *mv, size_t mn, const kvpair *rv, size_t rn,
                          char *diff, size_t len)
{
    int64_t *a = xrealloc(NULL, (mn + rn) * sizeof(*a)), *b = a + mn;
    int rc = mn == rn ? 0 : -1;
    for (size_t i = 0; i < mn; i++)
        a[i] = mv[i].n;
    for (size_t i = 0; i < rn; i++)
        if (!ev_parse_i64(rv[i].v, &b[i]))
            rc = -1;
    qsort(a, mn, sizeof(*a), by_i64);
    qsort(b, rn, sizeof(*b), by_i64);
    for (size_t i = 0; rc == 0 && i < mn; i++)
        rc = a[i] == b[i] ? 0 : -1;
    if (rc)
        snprintf(diff, len, "%s: %zu entries, expected %zu with the newest seq of each entity", key,
                 rn, mn);
    free(a);
    return rc;
}

/* fresh: events (within the slack) and as_of_ms exactly, applied_ms set; nothing else. */
static int compare_fresh(const char *key, const mrec *mv, size_t mn, const kvpair *rv, size_t rn,
                         int64_t slack, char *diff, size_t len)
{
    static const char *const names[] = { "applied_ms", "as_of_ms", "events" };
    for (size_t i = 0; i < rn; i++)
        if (strcmp(rv[i].f, names[0]) && strcmp(rv[i].f, names[1]) && strcmp(rv[i].f, names[2]))
            return differ(diff, len, key, rv[i].f, rv[i].v, NULL);
    for (int k = 0; k < 3; k++) {
        const char *got = NULL;
        const mrec *w = NULL;
        char want[48];
        int64_t g = 0;
        for (size_t i = 0; i < rn; i++)
            if (!strcmp(rv[i].f, names[k]))
                got = rv[i].v;
        for (size_t i = 0; i < mn; i++)
            if (!strcmp(mv[i].field, names[k]))
                w = &mv[i];
        if (got && !ev_parse_i64(got, &g))
            return differ(diff, len, key, names[k], got, "an integer");
        if (k == 0) { /* applied_ms: a wall time, once anything was applied */
            if ((mn > 0) != (got && g > 0))
                return differ(diff, len, key, names[k], got, mn ? "a wall time" : NULL);
            continue;
        }
        int64_t hi = w ? w->n : 0, lo = hi - (k == 2 ? slack : 0);
        if (lo == hi)
            snprintf(want, sizeof(want), "%" PRId64, hi);
        else
            snprintf(want, sizeof(want), "%" PRId64 "..%" PRId64, lo, hi);
        if ((w == NULL) != (got == NULL) || g < lo || g > hi)
            return differ(diff, len, key, names[k], got, w ? want : NULL);
    }
    return 0;
}

/* Compares one key (mv: the model's fields of it, sorted) with Redis. */
static int compare_key(redisContext *c, const char *key, char kind, const mrec *mv, size_t mn,
                       int64_t slack, char *diff, size_t len)
{
    redisReply *r = kind == 'z' ? redisCommand(c, "ZRANGE %s 0 -1 WITHSCORES", key)
                                : redisCommand(c, "HGETALL %s", key);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        snprintf(diff, len, "%s: cannot read it: %s", key,
                 r ? (r->str ? r->str : "not an array") : c->errstr);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    size_t rn = r->elements / 2;
    kvpair *rv = xrealloc(NULL, rn * sizeof(*rv));
    for (size_t i = 0; i < rn; i++)
        rv[i] = (kvpair){ r->element[2 * i]->str, r->element[2 * i + 1]->str };
    qsort(rv, rn, sizeof(*rv), by_field);
    int rc = kind == 'r'   ? compare_refseq(key, mv, mn, rv, rn, diff, len)
             : kind == 'f' ? compare_fresh(key, mv, mn, rv, rn, slack, diff, len)
                           : 0;
    for (size_t i = 0, j = 0; rc == 0 && kind != 'r' && kind != 'f' && (i < mn || j < rn);) {
        int cmp = i == mn ? 1 : j == rn ? -1 : strcmp(mv[i].field, rv[j].f);
        const mrec *w = cmp <= 0 ? &mv[i] : NULL;
        const kvpair *g = cmp >= 0 ? &rv[j] : NULL;
        char num[32];
        snprintf(num, sizeof(num), "%" PRId64, w ? w->n : 0);
        const char *field = w ? w->field : g->f, *want = w && w->s ? w->s : w ? num : NULL;
        int64_t got = 0;
        if (kind == 'c') /* a counter: absent is 0 */
            rc = (g && !ev_parse_i64(g->v, &got)) || got != (w ? w->n : 0);
        else if (kind == 's')
            rc = !w || !g || strcmp(w->s, g->v) != 0;
        else
            rc = !w || !g || strtod(g->v, NULL) != (double)w->n;
        if (rc)
            rc = differ(diff, len, key, field, g ? g->v : NULL, kind == 'c' ? num : want);
        i += cmp <= 0;
        j += cmp >= 0;
    }
    free(rv);
    freeReplyObject(r);
    return rc;
}

int ev_model_check(redisContext *c, const ev_model *m, const char *tenant, char *diff, size_t len)
{
    char P[96], cursor[32] = "0";
    char **rk = NULL;
    size_t rkn = 0, plen, lo = 0, hi;
    int rc = 0;
    int64_t slack = 0;
    for (int t = 0; t < m->ntenants; t++)
        if (!strcmp(m->tenants[t], tenant))
            slack = m->slack[t];
    plen = (size_t)snprintf(P, sizeof(P), "{t:%s}:1:", tenant);
    do { /* every key of the tenant's generation, to find those the model does not have */
        redisReply *r = redisCommand(c, "SCAN %s MATCH %s* COUNT 1000", cursor, P);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            snprintf(diff, len, "SCAN: %s", r && r->str ? r->str : c->errstr);
            rc = -1;
        } else {
            snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
            rk = xrealloc(rk, (rkn + r->element[1]->elements) * sizeof(*rk));
            for (size_t i = 0; i < r->element[1]->elements; i++)
                rk[rkn++] = xstrdup(r->element[1]->element[i]->str);
        }
        if (r)
            freeReplyObject(r);
    } while (rc == 0 && strcmp(cursor, "0") != 0);
    qsort(rk, rkn, sizeof(*rk), by_str);
    while (lo < m->n && strncmp(m->v[lo].key, P, plen) != 0)
        lo++;
    for (hi = lo; hi < m->n && strncmp(m->v[hi].key, P, plen) == 0;)
        hi++;
    for (size_t i = lo, j = 0; rc == 0 && (i < hi || j < rkn);) {
        int cmp = i == hi ? 1 : j == rkn ? -1 : strcmp(m->v[i].key, rk[j]);
        const char *key = cmp <= 0 ? m->v[i].key : rk[j];
        size_t e = i;
        while (cmp <= 0 && e < hi && strcmp(m->v[e].key, key) == 0)
            e++;
        char kind = classify(key + plen);
        if (kind == 'u')
            rc = (snprintf(diff, len, "%s: a key docs/keyspace.md does not name", key), -1);
        else
            rc = compare_key(c, key, kind, &m->v[i], e - i, slack, diff, len);
        i = e;
        j += cmp >= 0;
    }
    for (size_t i = 0; i < rkn; i++)
        free(rk[i]);
    free(rk);
    return rc;
}

int ev_model_check_all(redisContext *c, const ev_model *m, char *diff, size_t len)
{
    for (int t = 0; t < m->ntenants; t++)
        if (ev_model_check(c, m, m->tenants[t], diff, len) != 0)
            return -1;
    return 0;
}
