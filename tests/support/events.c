#include "events.h"

#include "event.h"
#include "hist.h"
#include "proc.h"
#include "tally/v1/events.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { T_CREATED = 1, T_ASSIGNED = 2, T_STATUS = 3, T_TENANT = 10, T_CATEGORY = 11, T_AGENT = 12 };
enum { S_OPEN = 1, S_IN_PROGRESS = 2, S_RESOLVED = 3, S_CLOSED = 4 };

#define START_MS    1704067200000LL /* 2024-01-01T00:00:00Z */
#define TARGET_LIVE 150             /* complaints not yet closed, in the steady state */

void ev_sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int64_t ev_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Test support: running out of memory ends the test at once. */
static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    return strcpy(xrealloc(NULL, strlen(s) + 1), s);
}

/* ---- the generator ------------------------------------------------------------------------- */

static const struct {
    const char *id, *name, *tz;
    int offset_min; /* the zone's UTC offset (none of these has daylight saving time) */
} tenant_defs[EV_MAX_TENANTS] = {
    { "acme", "Acme Corp", "UTC", 0 },
    { "globex", "Globex", "Asia/Tokyo", 540 },
    { "initech", "Initech", "America/Sao_Paulo", -180 },
    { "umbrella", "Umbrella", "Asia/Kolkata", 330 },
    { "hooli", "Hooli", "Africa/Lagos", 60 },
    { "wonka", "Wonka Industries", "Asia/Dubai", 240 },
};
static const char *const cat_ids[] = { "billing", "delivery", "quality", "service", "returns" };
static const char *const cat_names[] = { "Billing", "Delivery", "Product quality", "Service",
                                         "Returns" };
static const char *const agent_ids[] = { "ana", "ben", "chen", "dita", "emeka", "farah" };
static const char *const agent_names[] = { "Ana Silva",   "Ben Okafor", "Chen Wei",
                                           "Dita Kusuma", "Emeka Obi",  "Farah Haddad" };
#define NCATS   5
#define NAGENTS 6

typedef struct cstate {
    int tenant;
    int64_t version, created_ms;
    int status, cat, prio;
    char agent[16], created_day[11];
} cstate;

typedef struct gen {
    ev_history *h;
    uint64_t rng;
    int64_t now, seq;
    cstate *c;     /* by complaint id - 1 */
    int64_t *live; /* complaints not closed */
    size_t nlive;
} gen;

static uint64_t rnd(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int rnd_int(uint64_t *s, int n)
{
    return (int)(rnd(s) % (uint64_t)n);
}

static double rnd_unit(uint64_t *s)
{
    return (double)(rnd(s) >> 11) / 9007199254740992.0;
}

static void local_day(int64_t ms, int offset_min, char out[11])
{
    time_t t = (time_t)(ms / 1000) + (time_t)offset_min * 60;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

int ev_pack(ev_event *e)
{
    Tally__V1__ComplaintCreated cc = TALLY__V1__COMPLAINT_CREATED__INIT;
    Tally__V1__ComplaintAssigned ca = TALLY__V1__COMPLAINT_ASSIGNED__INIT;
    Tally__V1__StatusChanged sc = TALLY__V1__STATUS_CHANGED__INIT;
    Tally__V1__TenantPut tp = TALLY__V1__TENANT_PUT__INIT;
    Tally__V1__CategoryPut cp = TALLY__V1__CATEGORY_PUT__INIT;
    Tally__V1__AgentPut ap = TALLY__V1__AGENT_PUT__INIT;
    const ProtobufCMessage *body = e->type == T_CREATED    ? &cc.base
                                   : e->type == T_ASSIGNED ? &ca.base
                                   : e->type == T_STATUS   ? &sc.base
                                   : e->type == T_TENANT   ? &tp.base
                                   : e->type == T_CATEGORY ? &cp.base
                                   : e->type == T_AGENT    ? &ap.base
                                                           : NULL;
    uint8_t bytes[1024], buf[2048];
    char customer[32], title[64];
    snprintf(customer, sizeof(customer), "cust-%" PRId64, e->complaint % 997);
    snprintf(title, sizeof(title), "Complaint %" PRId64 " about %s", e->complaint, e->category);
    cc.category_id = ca.category_id = sc.category_id = e->category;
    cc.priority = ca.priority = sc.priority = (Tally__V1__Priority)e->priority;
    cc.status = ca.status = (Tally__V1__Status)e->status;
    cc.agent_id = ca.agent_id = sc.agent_id = e->agent;
    cc.customer_id = customer;
    cc.title = title;
    ca.previous_agent_id = e->prev_agent;
    ca.created_at_ms = sc.created_at_ms = e->created_ms;
    sc.from_status = (Tally__V1__Status)e->from;
    sc.to_status = (Tally__V1__Status)e->to;
    sc.actor = e->agent[0] ? e->agent : "manager";
    sc.created_local_day = e->created_day;
    sc.resolution_seconds = e->resolution_s;
    tp.name = cp.name = ap.name = e->name;
    tp.time_zone = e->tz;
    cp.category_id = ap.agent_id = e->ref_id;
    if (!body || protobuf_c_message_get_packed_size(body) > sizeof(bytes))
        return -1;
    event_row row = { .seq = e->seq,
                      .tenant_id = e->tenant_id,
                      .complaint_id = e->complaint,
                      .version = e->version,
                      .type = e->type,
                      .occurred_at_ms = e->occurred_ms,
                      .local_day = e->day,
                      .recorded_at_ms = e->recorded_ms,
                      .body = bytes,
                      .body_len = protobuf_c_message_pack(body, bytes) };
    long n = event_pack(&row, buf, sizeof(buf));
    if (n <= 0)
        return -1;
    e->bytes = memcpy(xrealloc(e->bytes, (size_t)n), buf, (size_t)n);
    e->len = (size_t)n;
    return 0;
}

/* A new event of tenant t at the current time; the caller fills the body and packs it. */
static ev_event *push(gen *g, int t, int type)
{
    ev_history *h = g->h;
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 1024;
        h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
    }
    ev_event *e = memset(&h->v[h->n++], 0, sizeof(ev_event));
    snprintf(e->tenant_id, sizeof(e->tenant_id), "%s", tenant_defs[t].id);
    e->seq = ++g->seq;
    e->type = type;
    e->occurred_ms = e->recorded_ms = g->now;
    local_day(g->now, tenant_defs[t].offset_min, e->day);
    return e;
}

static void reference(gen *g, int t, int type, int i, const char *suffix)
{
    ev_event *e = push(g, t, type);
    if (type == T_TENANT) {
        snprintf(e->name, sizeof(e->name), "%s%s", tenant_defs[t].name, suffix);
        snprintf(e->tz, sizeof(e->tz), "%s", tenant_defs[t].tz);
    } else {
        snprintf(e->ref_id, sizeof(e->ref_id), "%s",
                 type == T_CATEGORY ? cat_ids[i] : agent_ids[i]);
        snprintf(e->name, sizeof(e->name), "%s%s",
                 type == T_CATEGORY ? cat_names[i] : agent_names[i], suffix);
    }
    ev_pack(e);
}

/* A complaint event of c (its version moves on), with its category, priority and agent. */
static ev_event *complaint_event(gen *g, int64_t id, int type)
{
    cstate *c = &g->c[id - 1];
    ev_event *e = push(g, c->tenant, type);
    e->complaint = id;
    e->version = ++c->version;
    snprintf(e->category, sizeof(e->category), "%s", cat_ids[c->cat]);
    snprintf(e->agent, sizeof(e->agent), "%s", c->agent);
    e->priority = c->prio;
    e->status = c->status;
    e->created_ms = c->created_ms;
    return e;
}

static int64_t create(gen *g, int t)
{
    static const int prio_of[10] = { 1, 1, 1, 2, 2, 2, 2, 3, 3, 4 };
    int64_t id = ++g->h->complaints;
    g->c = xrealloc(g->c, (size_t)id * sizeof(*g->c));
    g->live = xrealloc(g->live, (g->nlive + 1) * sizeof(*g->live));
    cstate *c = memset(&g->c[id - 1], 0, sizeof(cstate));
    c->tenant = t;
    c->status = S_OPEN;
    c->cat = rnd_int(&g->rng, NCATS);
    c->prio = prio_of[rnd_int(&g->rng, 10)];
    c->created_ms = g->now;
    local_day(g->now, tenant_defs[t].offset_min, c->created_day);
    g->live[g->nlive++] = id;
    ev_pack(complaint_event(g, id, T_CREATED));
    return id;
}

static void assign(gen *g, int64_t id)
{
    cstate *c = &g->c[id - 1];
    char agent[16] = "";
    if (!c->agent[0] || rnd_unit(&g->rng) >= 0.15) /* now and then unassigned */
        do
            snprintf(agent, sizeof(agent), "%s", agent_ids[rnd_int(&g->rng, NAGENTS)]);
        while (strcmp(agent, c->agent) == 0);
    ev_event *e = complaint_event(g, id, T_ASSIGNED);
    snprintf(e->prev_agent, sizeof(e->prev_agent), "%s", c->agent);
    snprintf(e->agent, sizeof(e->agent), "%s", agent);
    snprintf(c->agent, sizeof(c->agent), "%s", agent);
    ev_pack(e);
}

static void move(gen *g, int64_t id, int to)
{
    cstate *c = &g->c[id - 1];
    ev_event *e = complaint_event(g, id, T_STATUS);
    e->status = 0;
    e->from = c->status;
    e->to = to;
    snprintf(e->created_day, sizeof(e->created_day), "%s", c->created_day);
    if (to == S_RESOLVED)
        e->resolution_s = (g->now - c->created_ms) / 1000;
    c->status = to;
    for (size_t i = 0; to == S_CLOSED && i < g->nlive; i++)
        if (g->live[i] == id)
            g->live[i] = g->live[--g->nlive];
    ev_pack(e);
}

/* One step of the help desk's day: a rename, a new complaint, or a change to a live one. */
static void step(gen *g, int ntenants)
{
    double u = rnd_unit(&g->rng), a;
    int t = rnd_int(&g->rng, ntenants);
    if (u < 0.002)
        return reference(g, t, T_CATEGORY, rnd_int(&g->rng, NCATS), " (renamed)");
    if (u < 0.004)
        return reference(g, t, T_AGENT, rnd_int(&g->rng, NAGENTS), " (team lead)");
    if (u < 0.0045)
        return reference(g, t, T_TENANT, 0, " Ltd");
    if (g->nlive < 30 || rnd_unit(&g->rng) < (g->nlive < TARGET_LIVE ? 0.32 : 0.18)) {
        int64_t id = create(g, t);
        if (rnd_unit(&g->rng) >= 0.03)
            return;
        g->now += rnd_int(&g->rng, 2500); /* solved at once: a resolution of 0..2 s */
        return move(g, id, S_RESOLVED);
    }
    int64_t id = g->live[rnd_int(&g->rng, (int)g->nlive)];
    switch (a = rnd_unit(&g->rng), g->c[id - 1].status) {
    case S_OPEN:
        return a < 0.4 ? assign(g, id) : move(g, id, a < 0.65 ? S_IN_PROGRESS : S_RESOLVED);
    case S_IN_PROGRESS:
        return a < 0.2 ? assign(g, id) : move(g, id, S_RESOLVED);
    default: /* RESOLVED: closed, reopened, or (rarely) reassigned */
        return a < 0.6 ? move(g, id, S_CLOSED) : a < 0.85 ? move(g, id, S_OPEN) : assign(g, id);
    }
}

void ev_generate(ev_history *h, const ev_options *o)
{
    gen g = { .h = h, .rng = o->seed, .now = START_MS };
    int64_t avg = (int64_t)o->days * 86400000LL / (int64_t)(o->events ? o->events : 1);
    h->ntenants = o->tenants < 1 ? 1 : o->tenants > EV_MAX_TENANTS ? EV_MAX_TENANTS : o->tenants;
    for (int t = 0; t < h->ntenants; t++) {
        snprintf(h->tenants[t], sizeof(h->tenants[t]), "%s", tenant_defs[t].id);
        reference(&g, t, T_TENANT, 0, "");
        for (int i = 0; i < NCATS; i++)
            reference(&g, t, T_CATEGORY, i, "");
        for (int i = 0; i < NAGENTS; i++)
            reference(&g, t, T_AGENT, i, "");
    }
    while (h->n < o->events) {
        g.now += rnd_unit(&g.rng) < 0.05 ? rnd_int(&g.rng, 1000)
                                         : (int64_t)(rnd_unit(&g.rng) * 2.0 * (double)avg);
        step(&g, h->ntenants);
    }
    free(g.c);
    free(g.live);
}

void ev_history_release(ev_history *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].bytes);
    free(h->v);
    memset(h, 0, sizeof(*h));
}

long ev_find(const ev_history *h, int64_t complaint, int64_t version)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->v[i].complaint == complaint && h->v[i].version == version)
            return (long)i;
    return -1;
}

/* ---- stream orders ------------------------------------------------------------------------- */

typedef struct keyed {
    uint64_t key;
    size_t idx;
} keyed;

static int by_key(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}

size_t *ev_order(const ev_history *h, enum ev_order how, uint64_t seed, size_t *n)
{
    *n = how == EV_TWICE ? 2 * h->n : h->n;
    size_t *v = xrealloc(NULL, *n * sizeof(*v));
    for (size_t i = 0; i < h->n; i++)
        v[i] = i;
    if (how == EV_TWICE) { /* the copy of event i goes before event i + 0..15 */
        keyed *k = xrealloc(NULL, *n * sizeof(*k));
        for (size_t i = 0; i < h->n; i++) {
            k[2 * i] = (keyed){ 2 * (uint64_t)i, i };
            k[2 * i + 1] = (keyed){ 2 * ((uint64_t)i + (uint64_t)rnd_int(&seed, 16)) + 1, i };
        }
        qsort(k, *n, sizeof(*k), by_key);
        for (size_t i = 0; i < *n; i++)
            v[i] = k[i].idx;
        free(k);
    } else if (how == EV_REORDERED) {
        long *last = xrealloc(NULL, (size_t)(h->complaints + 1) * sizeof(*last));
        bool *used = calloc(h->n + 1, sizeof(*used));
        if (!used)
            abort();
        for (int64_t c = 0; c <= h->complaints; c++)
            last[c] = -1;
        for (size_t i = 0; i < h->n; i++) {
            const ev_event *e = &h->v[i];
            if (!e->complaint)
                continue;
            long j = last[e->complaint];
            last[e->complaint] = (long)i;
            if (j < 0 || used[i] || used[j] || rnd_unit(&seed) >= 0.25)
                continue;
            v[i] = (size_t)j; /* v(k+1) takes v(k)'s place and the other way round */
            v[j] = i;
            used[i] = used[j] = true;
        }
        free(last);
        free(used);
    }
    return v;
}

int ev_xadd(redisContext *c, const char *stream, const ev_history *h, const size_t *order, size_t n,
            char *err, size_t errlen)
{
    for (size_t done = 0; done < n;) {
        size_t chunk = n - done < 512 ? n - done : 512;
        for (size_t i = done; i < done + chunk; i++)
            redisAppendCommand(c, "XADD %s * e %b", stream, h->v[order[i]].bytes,
                               h->v[order[i]].len);
        for (size_t i = 0; i < chunk; i++) {
            redisReply *r = NULL;
            bool ok =
                redisGetReply(c, (void **)&r) == REDIS_OK && r && r->type != REDIS_REPLY_ERROR;
            if (!ok)
                snprintf(err, errlen, "XADD: %s", r ? r->str : c->errstr);
            if (r)
                freeReplyObject(r);
            if (!ok)
                return -1;
        }
        done += chunk;
    }
    return 0;
}

/* ---- the independent calculation ----------------------------------------------------------- */

/* One field of one key: a counter (kind 'c'), text ('s'), a zset member ('z'), ... */
typedef struct mrec {
    char *key, *field, *s;
    int64_t n;
    char kind;
} mrec;

struct ev_model {
    mrec *v;
    size_t n, cap;
    size_t *slots, nslots; /* open addressing over v: index + 1, 0 = empty */
    int ntenants;
    char tenants[EV_MAX_TENANTS][72];
    int64_t renames[EV_MAX_TENANTS]; /* reference events after the entity's first */
    int64_t slack[EV_MAX_TENANTS];   /* how many fewer fresh.events are accepted */
};

static uint64_t hash2(const char *a, const char *b)
{
    return event_fnv1a(b, strlen(b), event_fnv1a(a, strlen(a) + 1, 0));
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
    char cat[16], agent[16];
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
    char key[160], groups[4][40], M[8], dd[3];
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
    char P[96], key[160], f[64], M[8], dd[3];
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
        char P[96], key[160], f[24], s[96];
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

static bool parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return *s && !*end && errno == 0;
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
        if (!parse_i64(rv[i].v, &b[i]))
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
        if (got && !parse_i64(got, &g))
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
            rc = (g && !parse_i64(g->v, &got)) || got != (w ? w->n : 0);
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

/* ---- waiting for the projector ------------------------------------------------------------ */

double ev_metric(int http_port, const char *name)
{
    size_t cap = 1 << 16, nlen = strlen(name);
    char *body = xrealloc(NULL, cap);
    double v = -1;
    if (http_get(http_port, "/metrics", body, cap) == 200)
        for (const char *l = body; *l && v < 0; l += strcspn(l, "\n"), l += *l == '\n')
            if (!strncmp(l, name, nlen) && l[nlen] == ' ')
                v = strtod(l + nlen + 1, NULL);
    free(body);
    return v;
}

/* The value of field name in a flat [name, value, ...] reply, or NULL. */
static const redisReply *field_of(const redisReply *r, const char *name)
{
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        if (r->element[i]->str && !strcmp(r->element[i]->str, name))
            return r->element[i + 1];
    return NULL;
}

int ev_group_state(redisContext *c, const char *stream, int64_t *pending, int64_t *undelivered)
{
    redisReply *s = redisCommand(c, "XINFO STREAM %s", stream);
    redisReply *g =
        s && s->type == REDIS_REPLY_ARRAY ? redisCommand(c, "XINFO GROUPS %s", stream) : NULL;
    const redisReply *last = field_of(s, "last-generated-id");
    int rc = -1;
    *pending = *undelivered = 0;
    if (s && s->type == REDIS_REPLY_ERROR && strstr(s->str, "no such key"))
        rc = 1;
    for (size_t i = 0; last && g && g->type == REDIS_REPLY_ARRAY && i < g->elements; i++) {
        const redisReply *name = field_of(g->element[i], "name");
        const redisReply *pend = field_of(g->element[i], "pending");
        const redisReply *lag = field_of(g->element[i], "lag");
        const redisReply *delivered = field_of(g->element[i], "last-delivered-id");
        if (!name || strcmp(name->str, "projector") != 0 || !pend || !delivered)
            continue;
        rc = 0;
        *pending = pend->integer;
        /* at the stream's end, or behind by lag (unknown after deletions: at least 1) */
        if (strcmp(delivered->str, last->str) == 0)
            *undelivered = 0;
        else
            *undelivered =
                lag && lag->type == REDIS_REPLY_INTEGER && lag->integer > 0 ? lag->integer : 1;
    }
    if (s)
        freeReplyObject(s);
    if (g)
        freeReplyObject(g);
    return rc;
}

bool ev_group_idle(redisContext *c, const char *stream)
{
    int64_t pending, undelivered;
    return ev_group_state(c, stream, &pending, &undelivered) == 0 && pending == 0 &&
           undelivered == 0;
}

int ev_wait_applied(int redis_port, const ev_model *m, int timeout_ms)
{
    int64_t idle_since = 0;
    for (int64_t until = ev_mono_ms() + timeout_ms; ev_mono_ms() < until; ev_sleep_ms(50)) {
        redisContext *c =
            redisConnectWithTimeout("127.0.0.1", redis_port, (struct timeval){ .tv_sec = 2 });
        if (c && c->err) {
            redisFree(c);
            c = NULL;
        }
        bool idle = c && ev_group_idle(c, EV_STREAM), done = idle; /* idle first: then final */
        for (int t = 0; done && t < m->ntenants; t++) {
            redisReply *e = redisCommand(c, "HGET {t:%s}:1:fresh events", m->tenants[t]);
            int64_t want = ev_model_events(m, m->tenants[t]), got = 0;
            done = e && (e->type == REDIS_REPLY_STRING
                             ? parse_i64(e->str, &got) && got <= want && got >= want - m->slack[t]
                             : want == 0);
            if (e)
                freeReplyObject(e);
        }
        if (c)
            redisFree(c);
        if (done)
            return 0;
        /* Everything read and acked, yet other counts: they will not change any more. */
        idle_since = idle ? (idle_since ? idle_since : ev_mono_ms()) : 0;
        if (idle_since && ev_mono_ms() - idle_since > 1000)
            return -2;
    }
    return -1;
}
