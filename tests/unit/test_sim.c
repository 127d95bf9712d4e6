/*
 * sim_emit: the simulator's event emitter. Its stream must be what command-svc would have
 * written for the lives gen_imported generates: the same bytes from the same seed; seq 1, 2,
 * ...; complaint ids 1, 2, ... in order of creation, each complaint's versions 1..n in stream
 * order without gaps; every envelope decodes (protobuf-c) and is accepted by the projector's
 * proj_decode; local days are the tenant zone's; and the counts agree with the lives (one
 * ComplaintCreated per complaint, one ComplaintAssigned per assignment that changes the agent,
 * one StatusChanged per status move).
 */
#include "civil.h"
#include "decode.h"
#include "sim_emit.h"
#include "sim_gen.h"
#include "tally/v1/events.pb-c.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#define TENANTS "acme:Europe/Berlin,globex:America/New_York,initech:Asia/Kolkata"
#define END_MS  1719792000000LL /* 2024-07-01T00:00:00Z */
#define DAYS    90
#define CREATED TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED
#define CHANGED TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED

static world w;

static void world_at(uint64_t seed)
{
    char err[256];
    cr_assert_eq(world_parse_tenants(&w, TENANTS, err, sizeof(err)), 0, "%s", err);
    for (int t = 0; t < w.ntenants; t++)
        world_set_window(&w.tenants[t], seed, END_MS, DAYS);
}

/* Every entry of the stream of seed with those options, malloc'd; count in *n. */
static emit_event *stream(uint64_t seed, int64_t complaints, int64_t events, size_t *n)
{
    emit_options o = { .seed = seed, .complaints = complaints, .events = events };
    world_at(seed);
    emit_stream *s = emit_new(&w, &o);
    cr_assert_not_null(s);
    size_t cap = 1024;
    emit_event *v = malloc(cap * sizeof(*v));
    int rc;
    *n = 0;
    while ((rc = emit_next(s, &v[*n])) == 1)
        if (++*n == cap)
            cr_assert_not_null(v = realloc(v, (cap *= 2) * sizeof(*v)));
    cr_assert_eq(rc, 0, "emit_next: %d after %zu entries", rc, *n);
    emit_free(s);
    return v;
}

static void day_of(const world_tenant *t, int64_t ms, char out[CIVIL_DAY_LEN])
{
    civil_format((ms / 1000 + world_offset_s(t, ms)) / 86400, out); /* times after 1970 */
}

Test(sim_emit, the_same_seed_gives_the_same_bytes)
{
    size_t n1, n2, n3;
    emit_event *a = stream(7, 0, 3000, &n1), *b = stream(7, 0, 3000, &n2),
               *c = stream(8, 0, 3000, &n3);
    cr_assert_eq(n1, n2);
    bool differs = n1 != n3;
    for (size_t i = 0; i < n1; i++) {
        cr_assert_eq(a[i].len, b[i].len, "entry %zu", i);
        cr_assert_eq(memcmp(a[i].bytes, b[i].bytes, a[i].len), 0, "entry %zu", i);
        differs = differs || i >= n3 || a[i].len != c[i].len ||
                  memcmp(a[i].bytes, c[i].bytes, a[i].len) != 0;
    }
    cr_assert(differs, "seeds 7 and 8 gave the same stream");
    free(a);
    free(b);
    free(c);
}

Test(sim_emit, stops_at_exactly_the_events_asked_for_and_never_after_the_window)
{
    size_t n;
    emit_event *v = stream(3, 0, 5000, &n);
    cr_assert_eq(n, 5000);
    for (size_t i = 0; i < n; i++)
        cr_assert_leq(v[i].occurred_at_ms, END_MS, "entry %zu", i);
    free(v);
}

/* Per complaint: what its lives say (from gen_imported) and what the stream held. */
typedef struct seen {
    int tenant;
    int64_t index, next_version, assigned, changed;
    int last_to;
} seen;

Test(sim_emit, the_stream_is_what_command_svc_writes_for_the_lives)
{
    size_t n;
    emit_event *v = stream(11, 600, 0, &n);
    seen *c = calloc(700, sizeof(*c));
    int64_t complaints = 0, last_ms = 0;
    for (size_t i = 0; i < n; i++) {
        const emit_event *e = &v[i];
        char why[256], day[CIVIL_DAY_LEN];
        cr_assert_eq(e->seq, (int64_t)i + 1);
        Tally__V1__EventEnvelope *env = tally__v1__event_envelope__unpack(NULL, e->len, e->bytes);
        cr_assert_not_null(env, "entry %zu does not decode", i);
        const world_tenant *t = &w.tenants[e->tenant];
        cr_assert(strcmp(env->tenant_id, t->id) == 0 && env->seq == e->seq &&
                      env->complaint_id == e->complaint_id && env->version == e->version &&
                      (int)env->type == e->type && env->recorded_at_ms == env->occurred_at_ms,
                  "entry %zu: the envelope says other than the emitter", i);
        day_of(t, env->occurred_at_ms, day);
        cr_assert_str_eq(env->local_day, day, "entry %zu", i);
        proj_event pe = { 0 };
        cr_assert_eq(proj_decode(e->bytes, e->len, &pe, why, sizeof(why)), 0, "entry %zu: %s", i,
                     why);
        proj_event_release(&pe);

        if (e->complaint_id == 0) {
            cr_assert_eq(e->version, 0);
            cr_assert_eq(complaints, 0, "reference events come first");
        } else {
            cr_assert_geq(e->occurred_at_ms, last_ms, "entry %zu goes back in time", i);
            last_ms = e->occurred_at_ms;
            if (e->type == CREATED) {
                cr_assert_eq(e->complaint_id, ++complaints, "ids by creation");
                cr_assert_lt(complaints, 700);
                c[complaints] = (seen){ e->tenant, e->index, 1, 0, 0, 0 };
            }
            seen *s = &c[e->complaint_id];
            cr_assert_leq(e->complaint_id, complaints, "an event before its creation");
            cr_assert_eq(e->version, s->next_version++, "complaint %ld", (long)e->complaint_id);
            if (e->type == TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED) {
                s->assigned++;
                cr_assert_str_neq(env->complaint_assigned->agent_id,
                                  env->complaint_assigned->previous_agent_id);
            } else if (e->type == CHANGED) {
                const Tally__V1__StatusChanged *b = env->status_changed;
                s->changed++;
                s->last_to = b->to_status;
                day_of(t, b->created_at_ms, day);
                cr_assert_str_eq(b->created_local_day, day);
                if (b->to_status == TALLY__V1__STATUS__STATUS_RESOLVED)
                    cr_assert_eq(b->resolution_seconds,
                                 (env->occurred_at_ms - b->created_at_ms) / 1000);
            }
        }
        tally__v1__event_envelope__free_unpacked(env, NULL);
    }

    /* The counts, against the lives generated again. */
    int64_t expected = 0;
    for (int t = 0; t < w.ntenants; t++)
        expected += w.tenants[t].count;
    cr_assert_eq(complaints, expected);
    cr_assert_eq(expected, 600);
    static gen_complaint life;
    for (int64_t id = 1; id <= complaints; id++) {
        const seen *s = &c[id];
        const world_tenant *t = &w.tenants[s->tenant];
        gen_imported(&life, t, 11, s->index);
        const char *agent = "";
        int64_t assigned = 0, changed = 0;
        int last = 0;
        for (size_t j = 0; j < life.msg.n_history; j++) {
            const Tally__V1__ImportedStep *h = life.msg.history[j];
            if (h->change_case == TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT) {
                assigned += strcmp(h->assignment->agent_id, agent) != 0;
                agent = h->assignment->agent_id;
            } else {
                changed++;
                last = h->status_change->status;
            }
        }
        cr_assert_eq(s->assigned, assigned, "complaint %ld", (long)id);
        cr_assert_eq(s->changed, changed, "complaint %ld", (long)id);
        cr_assert_eq(s->last_to, last, "complaint %ld", (long)id);
    }
    free(c);
    free(v);
}
