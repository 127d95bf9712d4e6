/* ev_gen: event histories of a simulated help desk, and the stream orders. See ev_gen.h. */
#include "ev_gen.h"

#include "ev_int.h"
#include "event.h"
#include "tally/v1/events.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define START_MS    1704067200000LL /* 2024-01-01T00:00:00Z */
#define TARGET_LIVE 150             /* complaints not yet closed, in the steady state */

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
