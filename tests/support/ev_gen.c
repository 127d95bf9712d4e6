/*
 * ev_gen: the projector tests' event histories, an adapter over the simulator (sim/), and the
 * stream orders. See ev_gen.h.
 */
#include "ev_gen.h"

#include "ev_int.h"
#include "event.h"
#include "sim_emit.h"
#include "tally/v1/events.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define START_MS 1704067200000LL /* 2024-01-01T00:00:00Z */

/* ---- the histories, from sim_emit ---------------------------------------------------------- */

/* The tenants in order, in zones without daylight saving time, half an hour off included. */
static const struct {
    const char *id, *zone;
} tenant_defs[EV_MAX_TENANTS] = {
    { "acme", "UTC" },
    { "globex", "Asia/Tokyo" },
    { "initech", "America/Sao_Paulo" },
    { "umbrella", "Asia/Kolkata" },
    { "hooli", "Africa/Lagos" },
    { "wonka", "Asia/Dubai" },
};

/*
 * The lives with what the projector must handle turned up: reassignments (also of resolved
 * complaints), unassignments picked up again, resolutions of 0..2 s, reopens and second
 * resolutions (closes, IN_PROGRESS and unassigned self-service resolutions are in the default
 * lives already).
 */
static const world_mix test_mix = { .reassign = 0.15,
                                    .unassign = 0.12,
                                    .resolved_reassign = 0.05,
                                    .instant = 0.03,
                                    .instant_ms = 2500,
                                    .reopen_first = 0.15,
                                    .reopen_again = 0.2,
                                    .reopens_max = 3,
                                    .ties = 1 };
#define RENAMES 0.005 /* of the entries: a category, agent or tenant renamed */

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
    char customer[32], title[EV_ID_MAX + 48];
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

/* Copies s into a field of n bytes; the simulator's ids and names always fit. */
static void field(char *dst, size_t n, const char *s)
{
    if (strlen(s) >= n)
        abort();
    memcpy(dst, s, strlen(s) + 1);
}

/* e's fields from the envelope bytes of ev, as a reader of the stream sees them. */
static void decode(ev_event *e, const emit_event *ev)
{
    Tally__V1__EventEnvelope *env = tally__v1__event_envelope__unpack(NULL, ev->len, ev->bytes);
    if (!env)
        abort();
    memset(e, 0, sizeof(*e));
    field(e->tenant_id, sizeof(e->tenant_id), env->tenant_id);
    e->seq = env->seq;
    e->complaint = env->complaint_id;
    e->version = env->version;
    e->type = (int)env->type;
    e->occurred_ms = env->occurred_at_ms;
    e->recorded_ms = env->recorded_at_ms;
    field(e->day, sizeof(e->day), env->local_day);
    switch (env->body_case) {
    case TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_CREATED: {
        const Tally__V1__ComplaintCreated *b = env->complaint_created;
        field(e->category, sizeof(e->category), b->category_id);
        field(e->agent, sizeof(e->agent), b->agent_id);
        e->priority = b->priority;
        e->status = b->status;
        e->created_ms = e->occurred_ms;
        break;
    }
    case TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_ASSIGNED: {
        const Tally__V1__ComplaintAssigned *b = env->complaint_assigned;
        field(e->category, sizeof(e->category), b->category_id);
        field(e->agent, sizeof(e->agent), b->agent_id);
        field(e->prev_agent, sizeof(e->prev_agent), b->previous_agent_id);
        e->priority = b->priority;
        e->status = b->status;
        e->created_ms = b->created_at_ms;
        break;
    }
    case TALLY__V1__EVENT_ENVELOPE__BODY_STATUS_CHANGED: {
        const Tally__V1__StatusChanged *b = env->status_changed;
        field(e->category, sizeof(e->category), b->category_id);
        field(e->agent, sizeof(e->agent), b->agent_id);
        field(e->created_day, sizeof(e->created_day), b->created_local_day);
        e->priority = b->priority;
        e->from = b->from_status;
        e->to = b->to_status;
        e->created_ms = b->created_at_ms;
        e->resolution_s = b->resolution_seconds;
        break;
    }
    case TALLY__V1__EVENT_ENVELOPE__BODY_TENANT_PUT:
        field(e->name, sizeof(e->name), env->tenant_put->name);
        field(e->tz, sizeof(e->tz), env->tenant_put->time_zone);
        break;
    case TALLY__V1__EVENT_ENVELOPE__BODY_CATEGORY_PUT:
        field(e->ref_id, sizeof(e->ref_id), env->category_put->category_id);
        field(e->name, sizeof(e->name), env->category_put->name);
        break;
    case TALLY__V1__EVENT_ENVELOPE__BODY_AGENT_PUT:
        field(e->ref_id, sizeof(e->ref_id), env->agent_put->agent_id);
        field(e->name, sizeof(e->name), env->agent_put->name);
        break;
    default:
        abort();
    }
    tally__v1__event_envelope__free_unpacked(env, NULL);
    e->bytes = memcpy(xrealloc(NULL, ev->len), ev->bytes, ev->len);
    e->len = ev->len;
}

void ev_generate(ev_history *h, const ev_options *o)
{
    world *w = calloc(1, sizeof(*w));
    emit_event *ev = malloc(sizeof(*ev));
    char err[256];
    if (!w || !ev)
        abort();
    h->ntenants = o->tenants < 1 ? 1 : o->tenants > EV_MAX_TENANTS ? EV_MAX_TENANTS : o->tenants;
    for (int t = 0; t < h->ntenants; t++) {
        world_tenant_def d = { .id = tenant_defs[t].id, .zone = tenant_defs[t].zone };
        if (world_add_tenant(w, &d, err, sizeof(err)) != 0) {
            fprintf(stderr, "ev_generate: %s\n", err);
            abort();
        }
        world_set_window(&w->tenants[t], o->seed, START_MS + (int64_t)o->days * WORLD_DAY_MS,
                         o->days);
        field(h->tenants[t], sizeof(h->tenants[t]), tenant_defs[t].id);
    }
    world_set_mix(w, &test_mix);
    emit_options eo = { .seed = o->seed, .events = (int64_t)o->events, .renames = RENAMES };
    emit_stream *s = emit_new(w, &eo);
    if (!s)
        abort();
    int rc;
    while ((rc = emit_next(s, ev)) == 1) {
        if (h->n == h->cap) {
            h->cap = h->cap ? h->cap * 2 : 1024;
            h->v = xrealloc(h->v, h->cap * sizeof(*h->v));
        }
        decode(&h->v[h->n++], ev);
    }
    if (rc < 0)
        abort();
    h->complaints = emit_complaints(s);
    emit_free(s);
    free(ev);
    free(w);
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
    world_rng r;
    world_rng_init(&r, seed, 0x6f72646572ULL /* "order" */, (uint64_t)how);
    *n = how == EV_TWICE ? 2 * h->n : h->n;
    size_t *v = xrealloc(NULL, *n * sizeof(*v));
    for (size_t i = 0; i < h->n; i++)
        v[i] = i;
    if (how == EV_TWICE) { /* the copy of event i goes before event i + 0..15 */
        keyed *k = xrealloc(NULL, *n * sizeof(*k));
        for (size_t i = 0; i < h->n; i++) {
            k[2 * i] = (keyed){ 2 * (uint64_t)i, i };
            k[2 * i + 1] = (keyed){ 2 * ((uint64_t)i + (uint64_t)world_rng_below(&r, 16)) + 1, i };
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
            if (j < 0 || used[i] || used[j] || world_rng_unit(&r) >= 0.25)
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
