/*
 * sim_emit: the stream events of the simulated lives. See sim_emit.h.
 *
 * emit_new generates every life once (gen_imported), keeping only its creation time, to sort
 * the creations. emit_next then walks them in order and generates each life again when it is
 * created: its ComplaintCreated goes out at once, its later events wait in a min-heap on
 * (time, insertion order) with the events of the other open complaints, so only the lives in
 * progress are held in memory.
 */
#include "sim_emit.h"

#include "civil.h"
#include "err.h"
#include "event.h"
#include "sim_gen.h"
#include "tally/v1/events.pb-c.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPEN     TALLY__V1__STATUS__STATUS_OPEN
#define RESOLVED TALLY__V1__STATUS__STATUS_RESOLVED
#define BODY_MAX (EMIT_ENVELOPE_MAX - 256)

/* A complaint to create: its tenant, its gen_imported index and its creation time. */
typedef struct birth {
    int64_t at, index;
    int tenant;
} birth;

/* What a created complaint's later events carry; freed with its last event. */
typedef struct life {
    int64_t id;
    int tenant;
    int64_t index;
    const char *category;
    int priority;
    int64_t created_ms; /* as written */
    char created_day[CIVIL_DAY_LEN];
    int pending; /* events still in the heap */
} life;

/* One event of a life after its creation. */
typedef struct step {
    int64_t at;
    uint64_t order;
    life *l;
    int64_t version;
    int type;     /* ComplaintAssigned or StatusChanged */
    int from, to; /* the status before and after (equal for an assignment) */
    const char *agent, *previous, *actor;
} step;

struct emit_stream {
    world *w;
    emit_options o;
    birth *births;
    size_t nbirths, next_birth;
    step *heap;
    size_t nheap, capheap;
    uint64_t order;
    int ref_tenant, ref_item; /* the reference event to write next */
    int64_t seq, next_id, written, created;
    int64_t last_ms, renamed; /* the simulated time of the last entry; renames written */
    world_rng renames;
    gen_complaint scratch;
};

/* The stream of the renames (not one of sim_world's or sim_gen's: keys "ren", 0). */
#define STREAM_RENAMES 0x72656eULL

static int64_t stamp(const emit_stream *s, int64_t sim_ms)
{
    return s->o.stamp ? s->o.stamp(s->o.stamp_ctx, sim_ms) : sim_ms;
}

static void local_day(const world_tenant *t, int64_t ms, char out[CIVIL_DAY_LEN])
{
    int64_t local_s = (ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000)) + world_offset_s(t, ms);
    civil_format(local_s >= 0 ? local_s / 86400 : -((-local_s + 86399) / 86400), out);
}

/* ---- the lives, as command-svc's import replays them --------------------------------------- */

static bool step_before(const step *a, const step *b)
{
    return a->at < b->at || (a->at == b->at && a->order < b->order);
}

/* Room for one more of the n items of size bytes at *v (doubling *cap): 0 or TALLY_ENOMEM. */
static int grow(void **v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t want = *cap ? *cap * 2 : 1024;
    void *p = realloc(*v, want * size);
    if (!p)
        return TALLY_ENOMEM;
    *v = p;
    *cap = want;
    return 0;
}

static int heap_push(emit_stream *s, step st)
{
    void *heap = s->heap;
    int rc = grow(&heap, &s->capheap, s->nheap, sizeof(step));
    s->heap = heap;
    if (rc != 0)
        return rc;
    st.order = s->order++;
    size_t i = s->nheap++;
    while (i > 0 && step_before(&st, &s->heap[(i - 1) / 2])) {
        s->heap[i] = s->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->heap[i] = st;
    return 0;
}

static step heap_pop(emit_stream *s)
{
    step top = s->heap[0], last = s->heap[--s->nheap];
    size_t i = 0;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= s->nheap)
            break;
        if (k + 1 < s->nheap && step_before(&s->heap[k + 1], &s->heap[k]))
            k++;
        if (!step_before(&s->heap[k], &last))
            break;
        s->heap[i] = s->heap[k];
        i = k;
    }
    if (s->nheap > 0)
        s->heap[i] = last;
    return top;
}

/*
 * Walks c's history as command-svc/import.c's replay does: an assignment of the agent already
 * assigned is no event; any other step is the next version. With s, pushes each event for l.
 * Returns the complaint's events (its final version), or a negative tally_err.
 */
static int64_t replay(const gen_complaint *c, emit_stream *s, life *l)
{
    int status = OPEN;
    const char *agent = "";
    int64_t version = 1;
    for (size_t j = 0; j < c->msg.n_history; j++) {
        const Tally__V1__ImportedStep *h = c->msg.history[j];
        step st = { .at = h->at_ms, .l = l, .from = status, .to = status, .previous = agent };
        if (h->change_case == TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT) {
            if (strcmp(h->assignment->agent_id, agent) == 0)
                continue;
            agent = h->assignment->agent_id;
            st.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED;
        } else {
            status = h->status_change->status;
            st.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED;
            st.to = status;
            st.actor = h->status_change->actor;
        }
        st.version = ++version;
        st.agent = agent;
        if (s) {
            int rc = heap_push(s, st);
            if (rc != 0)
                return rc;
            l->pending++;
        }
    }
    return version;
}

static int birth_cmp(const void *a, const void *b)
{
    const birth *x = a, *y = b;
    int by_time = (x->at > y->at) - (x->at < y->at);
    int by_tenant = (x->tenant > y->tenant) - (x->tenant < y->tenant);
    return by_time     ? by_time
           : by_tenant ? by_tenant
                       : (x->index > y->index) - (x->index < y->index);
}

emit_stream *emit_new(world *w, const emit_options *o)
{
    emit_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->w = w;
    s->o = *o;
    world_rng_init(&s->renames, o->seed, STREAM_RENAMES, 0);
    int64_t refs = 0, events = 0, have[WORLD_TENANTS_MAX] = { 0 }, total = o->complaints;
    size_t cap = 0;
    for (int t = 0; t < w->ntenants; t++)
        refs += 1 + w->tenants[t].ncategories + w->tenants[t].nagents;
    if (total <= 0)
        total = o->events / 5 + 1;
    for (;;) {
        world_split(w, total);
        for (int t = 0; t < w->ntenants; t++)
            for (; have[t] < w->tenants[t].count; have[t]++) {
                void *births = s->births;
                int rc = grow(&births, &cap, s->nbirths, sizeof(birth));
                s->births = births;
                if (rc != 0)
                    goto out_free;
                gen_imported(&s->scratch, &w->tenants[t], o->seed, have[t]);
                s->births[s->nbirths++] = (birth){ s->scratch.msg.created_at_ms, have[t], t };
                events += replay(&s->scratch, NULL, NULL);
            }
        if (o->events <= 0 || refs + events >= o->events)
            break;
        double per = s->nbirths ? (double)events / (double)s->nbirths : 5;
        total += (int64_t)((double)(o->events - refs - events) / per) + 1;
    }
    qsort(s->births, s->nbirths, sizeof(*s->births), birth_cmp);
    return s;

out_free:
    emit_free(s);
    return NULL;
}

void emit_free(emit_stream *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nheap; i++)
        if (--s->heap[i].l->pending == 0)
            free(s->heap[i].l);
    free(s->heap);
    free(s->births);
    free(s);
}

int64_t emit_complaints(const emit_stream *s)
{
    return s->created;
}

/* ---- packing ------------------------------------------------------------------------------- */

/* Packs body into ev's envelope as the next entry, of tenant and (for complaint events) l. */
static int pack(emit_stream *s, emit_event *ev, int tenant, const life *l, int64_t version,
                int type, int64_t at_ms, const ProtobufCMessage *body)
{
    uint8_t buf[BODY_MAX];
    char day[CIVIL_DAY_LEN];
    const world_tenant *t = &s->w->tenants[tenant];
    size_t n = protobuf_c_message_get_packed_size(body);
    if (n > sizeof(buf))
        return TALLY_ETOOBIG;
    protobuf_c_message_pack(body, buf);
    local_day(t, at_ms, day);
    event_row row = { .seq = s->seq + 1,
                      .tenant_id = t->id,
                      .complaint_id = l ? l->id : 0,
                      .version = version,
                      .type = type,
                      .occurred_at_ms = at_ms,
                      .local_day = day,
                      .recorded_at_ms = s->o.imported ? s->o.recorded_at_ms : at_ms,
                      .imported = s->o.imported,
                      .body = buf,
                      .body_len = n };
    long len = event_pack(&row, ev->bytes, sizeof(ev->bytes));
    if (len < 0)
        return (int)len;
    ev->seq = ++s->seq;
    ev->complaint_id = row.complaint_id;
    ev->version = version;
    ev->type = type;
    ev->tenant = tenant;
    ev->index = l ? l->index : -1;
    ev->occurred_at_ms = at_ms;
    ev->len = (size_t)len;
    s->written++;
    return 1;
}

/* The next reference event: each tenant's TenantPut, then its CategoryPuts and AgentPuts. */
static int reference(emit_stream *s, emit_event *ev)
{
    const world_tenant *t = &s->w->tenants[s->ref_tenant];
    int i = s->ref_item++, rc;
    int64_t at = stamp(s, t->start_ms);
    s->last_ms = t->start_ms;
    if (i == 0) {
        Tally__V1__TenantPut b = TALLY__V1__TENANT_PUT__INIT;
        b.name = (char *)t->name;
        b.time_zone = (char *)t->zone;
        rc = pack(s, ev, s->ref_tenant, NULL, 0, TALLY__V1__EVENT_TYPE__EVENT_TYPE_TENANT_PUT, at,
                  &b.base);
    } else if (i <= t->ncategories) {
        Tally__V1__CategoryPut b = TALLY__V1__CATEGORY_PUT__INIT;
        b.category_id = (char *)t->categories[i - 1]->id;
        b.name = (char *)t->categories[i - 1]->name;
        rc = pack(s, ev, s->ref_tenant, NULL, 0, TALLY__V1__EVENT_TYPE__EVENT_TYPE_CATEGORY_PUT, at,
                  &b.base);
    } else {
        Tally__V1__AgentPut b = TALLY__V1__AGENT_PUT__INIT;
        b.agent_id = (char *)t->agent_ids[i - 1 - t->ncategories];
        b.name = (char *)t->agent_names[i - 1 - t->ncategories];
        rc = pack(s, ev, s->ref_tenant, NULL, 0, TALLY__V1__EVENT_TYPE__EVENT_TYPE_AGENT_PUT, at,
                  &b.base);
    }
    if (s->ref_item > t->ncategories + t->nagents) {
        s->ref_tenant++;
        s->ref_item = 0;
    }
    return rc;
}

/* A rename: an entity drawn from the seed, with a new name, at the time of the last entry. */
static int rename_one(emit_stream *s, emit_event *ev)
{
    world_rng *r = &s->renames;
    int tenant = world_rng_below(r, s->w->ntenants), rc;
    const world_tenant *t = &s->w->tenants[tenant];
    double u = world_rng_unit(r);
    char name[WORLD_NAME_MAX + 32];
    int64_t at = stamp(s, s->last_ms), n = ++s->renamed;
    if (u < 0.45) {
        const world_category *c = t->categories[world_rng_below(r, t->ncategories)];
        Tally__V1__CategoryPut b = TALLY__V1__CATEGORY_PUT__INIT;
        snprintf(name, sizeof(name), "%s (renamed %" PRId64 ")", c->name, n);
        b.category_id = (char *)c->id;
        b.name = name;
        rc = pack(s, ev, tenant, NULL, 0, TALLY__V1__EVENT_TYPE__EVENT_TYPE_CATEGORY_PUT, at,
                  &b.base);
    } else if (u < 0.9) {
        int a = world_rng_below(r, t->nagents);
        Tally__V1__AgentPut b = TALLY__V1__AGENT_PUT__INIT;
        snprintf(name, sizeof(name), "%s (renamed %" PRId64 ")", t->agent_names[a], n);
        b.agent_id = (char *)t->agent_ids[a];
        b.name = name;
        rc = pack(s, ev, tenant, NULL, 0, TALLY__V1__EVENT_TYPE__EVENT_TYPE_AGENT_PUT, at, &b.base);
    } else {
        Tally__V1__TenantPut b = TALLY__V1__TENANT_PUT__INIT;
        snprintf(name, sizeof(name), "%s (renamed %" PRId64 ")", t->name, n);
        b.name = name;
        b.time_zone = (char *)t->zone;
        rc =
            pack(s, ev, tenant, NULL, 0, TALLY__V1__EVENT_TYPE__EVENT_TYPE_TENANT_PUT, at, &b.base);
    }
    return rc;
}

/* The next birth: generates the life again, writes its ComplaintCreated, queues the rest. */
static int create(emit_stream *s, emit_event *ev)
{
    const birth *b = &s->births[s->next_birth++];
    const world_tenant *t = &s->w->tenants[b->tenant];
    gen_complaint *c = &s->scratch;
    life *l = calloc(1, sizeof(*l));
    if (!l)
        return TALLY_ENOMEM;
    gen_imported(c, t, s->o.seed, b->index);
    s->last_ms = c->msg.created_at_ms;
    l->id = ++s->next_id;
    l->tenant = b->tenant;
    l->index = b->index;
    l->category = c->msg.category_id;
    l->priority = c->msg.priority;
    l->created_ms = stamp(s, c->msg.created_at_ms);
    local_day(t, l->created_ms, l->created_day);

    Tally__V1__ComplaintCreated body = TALLY__V1__COMPLAINT_CREATED__INIT;
    body.category_id = c->msg.category_id;
    body.priority = c->msg.priority;
    body.customer_id = c->msg.customer_id;
    body.title = c->msg.title;
    body.status = OPEN;
    int rc = pack(s, ev, b->tenant, l, 1, TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED,
                  l->created_ms, &body.base);
    if (rc >= 0) {
        int64_t n = replay(c, s, l);
        if (n < 0)
            rc = (int)n;
        s->created++;
    }
    if (l->pending == 0)
        free(l);
    return rc;
}

/* The next queued event of a created complaint. */
static int later(emit_stream *s, emit_event *ev)
{
    step st = heap_pop(s);
    life *l = st.l;
    int64_t at = stamp(s, st.at);
    s->last_ms = st.at;
    int rc;
    if (st.type == TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED) {
        Tally__V1__ComplaintAssigned b = TALLY__V1__COMPLAINT_ASSIGNED__INIT;
        b.previous_agent_id = (char *)st.previous;
        b.agent_id = (char *)st.agent;
        b.category_id = (char *)l->category;
        b.priority = (Tally__V1__Priority)l->priority;
        b.status = (Tally__V1__Status)st.from;
        b.created_at_ms = l->created_ms;
        rc = pack(s, ev, l->tenant, l, st.version, st.type, at, &b.base);
    } else {
        Tally__V1__StatusChanged b = TALLY__V1__STATUS_CHANGED__INIT;
        b.from_status = (Tally__V1__Status)st.from;
        b.to_status = (Tally__V1__Status)st.to;
        b.category_id = (char *)l->category;
        b.priority = (Tally__V1__Priority)l->priority;
        b.agent_id = (char *)st.agent;
        b.actor = (char *)st.actor;
        b.created_at_ms = l->created_ms;
        b.created_local_day = l->created_day;
        if (st.to == RESOLVED)
            b.resolution_seconds = (at - l->created_ms) / 1000;
        rc = pack(s, ev, l->tenant, l, st.version, st.type, at, &b.base);
    }
    if (--l->pending == 0)
        free(l);
    return rc;
}

int emit_next(emit_stream *s, emit_event *ev)
{
    if (s->o.events > 0 && s->written >= s->o.events)
        return 0;
    if (s->ref_tenant < s->w->ntenants)
        return reference(s, ev);
    bool births = s->next_birth < s->nbirths;
    if (!births && s->nheap == 0)
        return 0;
    if (s->o.renames > 0 && world_rng_unit(&s->renames) < s->o.renames)
        return rename_one(s, ev);
    if (s->nheap > 0 && (!births || s->heap[0].at <= s->births[s->next_birth].at))
        return later(s, ev);
    return births ? create(s, ev) : 0;
}
