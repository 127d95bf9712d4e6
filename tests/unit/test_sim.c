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
#include <stdio.h>
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

/* Every entry of the stream of the current world w, malloc'd; count in *n. */
static emit_event *stream_of(const emit_options *o, size_t *n)
{
    emit_stream *s = emit_new(&w, o);
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

/* Every entry of the stream of seed with those options over the TENANTS world. */
static emit_event *stream(uint64_t seed, int64_t complaints, int64_t events, size_t *n)
{
    emit_options o = { .seed = seed, .complaints = complaints, .events = events };
    world_at(seed);
    return stream_of(&o, n);
}

static void day_of(const world_tenant *t, int64_t ms, char out[CIVIL_DAY_LEN])
{
    civil_format(civil_day_of_ms(ms, world_offset_s(t, ms)), out);
}

/*
 * What holds for every stream of w: seq 1, 2, ...; each envelope decodes, says what the emitter
 * says and is accepted by proj_decode; local days are the zone's; complaint events go forward
 * in time, ids by creation, versions 1..n without gaps; an assignment changes the agent; a
 * StatusChanged carries the creation's local day and, on RESOLVED, resolution_seconds.
 */
static void expect_stream_well_formed(const emit_event *v, size_t n)
{
    int64_t complaints = 0, last_ms = INT64_MIN;
    int64_t *next = calloc(n + 1, sizeof(*next));
    cr_assert_not_null(next);
    for (size_t i = 0; i < n; i++) {
        const emit_event *e = &v[i];
        char why[256], day[CIVIL_DAY_LEN];
        cr_assert_eq(e->seq, (int64_t)i + 1);
        Tally__V1__EventEnvelope *env = tally__v1__event_envelope__unpack(NULL, e->len, e->bytes);
        cr_assert_not_null(env, "entry %zu does not decode", i);
        const world_tenant *t = &w.tenants[e->tenant];
        int64_t ms = env->occurred_at_ms;
        cr_assert(strcmp(env->tenant_id, t->id) == 0 && env->seq == e->seq &&
                      env->complaint_id == e->complaint_id && env->version == e->version &&
                      (int)env->type == e->type && env->recorded_at_ms == ms,
                  "entry %zu: the envelope says other than the emitter", i);
        day_of(t, ms, day);
        cr_assert_str_eq(env->local_day, day, "entry %zu", i);
        proj_event pe = { 0 };
        cr_assert_eq(proj_decode(e->bytes, e->len, &pe, why, sizeof(why)), 0, "entry %zu: %s", i,
                     why);
        proj_event_release(&pe);
        if (e->complaint_id != 0) {
            cr_assert_geq(ms, last_ms, "entry %zu goes back in time", i);
            last_ms = ms;
            if (e->type == CREATED)
                cr_assert_eq(e->complaint_id, ++complaints, "ids by creation");
            cr_assert_leq(e->complaint_id, complaints, "an event before its creation");
            cr_assert_eq(e->version, ++next[e->complaint_id], "complaint %ld",
                         (long)e->complaint_id);
            if (e->type == TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED)
                cr_assert_str_neq(env->complaint_assigned->agent_id,
                                  env->complaint_assigned->previous_agent_id);
            if (e->type == CHANGED) {
                const Tally__V1__StatusChanged *b = env->status_changed;
                day_of(t, b->created_at_ms, day);
                cr_assert_str_eq(b->created_local_day, day);
                if (b->to_status == TALLY__V1__STATUS__STATUS_RESOLVED)
                    cr_assert_eq(b->resolution_seconds, (ms - b->created_at_ms) / 1000);
            }
        }
        tally__v1__event_envelope__free_unpacked(env, NULL);
    }
    free(next);
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
    int64_t index, assigned, changed;
    int last_to;
} seen;

Test(sim_emit, the_stream_is_what_command_svc_writes_for_the_lives)
{
    size_t n;
    emit_event *v = stream(11, 600, 0, &n);
    seen *c = calloc(700, sizeof(*c));
    int64_t complaints = 0;
    expect_stream_well_formed(v, n);
    for (size_t i = 0; i < n; i++) {
        const emit_event *e = &v[i];
        if (e->complaint_id == 0) {
            cr_assert_eq(e->version, 0);
            cr_assert_eq(complaints, 0, "reference events come first");
            continue;
        }
        if (e->type == CREATED) {
            cr_assert_lt(++complaints, 700);
            c[complaints] = (seen){ e->tenant, e->index, 0, 0, 0 };
        }
        seen *s = &c[e->complaint_id];
        if (e->type == TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED) {
            s->assigned++;
        } else if (e->type == CHANGED) {
            Tally__V1__EventEnvelope *env =
                tally__v1__event_envelope__unpack(NULL, e->len, e->bytes);
            s->changed++;
            s->last_to = env->status_changed->to_status;
            tally__v1__event_envelope__free_unpacked(env, NULL);
        }
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

/* ---- the knobs: tenants, mixes, ties, windows and renames of the caller's choosing ---------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

/*
 * tally-sim's default lives are fixed: a rerun of `tally-sim seed` must send the bytes an older
 * build sent (the idempotency keys' content). The hashes were taken before the knobs existed.
 */
Test(sim_knobs, the_default_world_and_mix_give_the_lives_and_stream_of_before)
{
    static gen_complaint c;
    static uint8_t buf[1 << 16];
    static emit_event ev;
    uint64_t h = 0xcbf29ce484222325ULL;
    world_at(7);
    for (int t = 0; t < w.ntenants; t++)
        for (int i = 0; i < 1000; i++) {
            gen_imported(&c, &w.tenants[t], 7, i);
            h = fnv(h, buf, tally__v1__imported_complaint__pack(&c.msg, buf));
        }
    cr_expect_eq(h, 0x6db9865bacc14d44ULL, "gen_imported's default lives changed: %016llx",
                 (unsigned long long)h);
    emit_options o = { .seed = 7, .events = 20000 };
    emit_stream *s = emit_new(&w, &o);
    cr_assert_not_null(s);
    h = 0xcbf29ce484222325ULL;
    while (emit_next(s, &ev) == 1)
        h = fnv(h, ev.bytes, ev.len);
    emit_free(s);
    cr_expect_eq(h, 0x0b0614c43202672fULL, "the default event stream changed: %016llx",
                 (unsigned long long)h);
}

/* The test tenant: ids unlike any collation's, two of weight 0, in Kathmandu time. */
static const world_ref test_categories[] = {
    { "Web", NULL, 3 },   { "web", "Web shop", 1 }, { "b-x", NULL, 1 },
    { "never", NULL, 0 }, { "Zed", NULL, 1 },
};
static const world_ref test_agents[] = {
    { "b-x", NULL, 1 }, { "b.x", "Bea X", 1 }, { "idle", NULL, 0 },
    { "b_x", NULL, 3 }, { "Zed", NULL, 1 },
};

static void world_custom(const char *zone, int64_t end_ms, int days, uint64_t seed)
{
    char err[256];
    world_tenant_def d = { .id = "solo",
                           .zone = zone,
                           .categories = test_categories,
                           .ncategories = 5,
                           .agents = test_agents,
                           .nagents = 5 };
    memset(&w, 0, sizeof(w));
    cr_assert_eq(world_add_tenant(&w, &d, err, sizeof(err)), 0, "%s", err);
    world_set_window(&w.tenants[0], seed, end_ms, days);
}

Test(sim_knobs, a_tenant_of_the_callers_ids_uses_them_by_weight_and_never_one_of_weight_0)
{
    static gen_complaint c;
    int64_t cats[5] = { 0 }, works[5] = { 0 };
    world_mix m = world_mix_default;
    m.reassign = m.unassign = 0.5; /* every way an agent is picked */
    m.instant = 0.2;
    world_custom("Asia/Kathmandu", END_MS, 365, 5);
    world_tenant *t = &w.tenants[0];
    t->mix = m;
    cr_assert_str_eq(t->categories[1]->id, "web");
    cr_expect_str_eq(t->categories[1]->name, "Web shop");
    cr_expect_str_eq(t->categories[2]->name, "B x", "a name derived from the id");
    cr_expect_str_eq(t->agent_names[1], "Bea X");
    cr_expect_str_eq(t->agent_names[3], "B x");
    cr_expect_str_eq(t->name, "Solo");
    for (int i = 0; i < 4000; i++) {
        gen_imported(&c, t, 5, i);
        int k = 0;
        while (k < 5 && strcmp(t->categories[k]->id, c.msg.category_id) != 0)
            k++;
        cr_assert_lt(k, 5, "complaint %d: category \"%s\" is not the tenant's", i,
                     c.msg.category_id);
        cats[k]++;
        for (size_t j = 0; j < c.msg.n_history; j++) {
            const Tally__V1__ImportedStep *s = c.msg.history[j];
            const char *who = s->change_case == TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT
                                  ? s->assignment->agent_id
                                  : s->status_change->actor;
            int a = world_agent_index(t, who);
            if (a >= 0)
                works[a]++;
        }
    }
    cr_expect_eq(cats[3], 0, "the category of weight 0 was used %ld times", (long)cats[3]);
    cr_expect_eq(works[2], 0, "the agent of weight 0 worked %ld times", (long)works[2]);
    /* Web (3) against web (1), b_x (3) against b-x (1): about three times as often. */
    double rc = (double)cats[0] / (double)cats[1], ra = (double)works[3] / (double)works[0];
    cr_expect(rc > 2.4 && rc < 3.7, "Web / web = %.2f, expected about 3", rc);
    cr_expect(ra > 2.4 && ra < 3.7, "b_x / b-x = %.2f, expected about 3", ra);
    char err[256];
    world_ref none[] = { { "a", NULL, 0 } }, twice[] = { { "a", NULL, 1 }, { "a", NULL, 1 } };
    world_tenant_def bad = { .id = "bad", .agents = none, .nagents = 1 };
    cr_expect_neq(world_add_tenant(&w, &bad, err, sizeof(err)), 0, "no agent who works");
    bad = (world_tenant_def){ .id = "bad", .categories = twice, .ncategories = 2 };
    cr_expect_neq(world_add_tenant(&w, &bad, err, sizeof(err)), 0, "a category id twice");
    bad = (world_tenant_def){ .id = "solo" };
    cr_expect_neq(world_add_tenant(&w, &bad, err, sizeof(err)), 0, "a tenant id twice");
    cr_expect_eq(w.ntenants, 1);
    /* A tenant without complaints: the split gives it none, the first with a share the rest. */
    world_tenant_def hollow = { .id = "hollow", .agents = test_agents, .nagents = 5 };
    cr_assert_eq(world_add_tenant(&w, &hollow, err, sizeof(err)), 0, "%s", err);
    cr_expect_gt(w.tenants[1].ncategories, 7, "no categories given: the catalogue's");
    world_set_shares(&w, (const double[]){ 0, 1 });
    world_split(&w, 101);
    cr_expect(w.tenants[0].count == 0 && w.tenants[1].count == 101, "%ld and %ld",
              (long)w.tenants[0].count, (long)w.tenants[1].count);
}

/* The seconds east of UTC of zone at utc_ms, through a world tenant. */
static int64_t offset_in(const char *zone, int64_t utc_ms)
{
    static world z;
    char err[256];
    world_tenant_def d = { .id = "z", .zone = zone };
    memset(&z, 0, sizeof(z));
    cr_assert_eq(world_add_tenant(&z, &d, err, sizeof(err)), 0, "%s", err);
    return world_offset_s(&z.tenants[0], utc_ms);
}

Test(sim_knobs, any_iana_zone_gives_its_offsets_and_local_days)
{
    cr_expect_eq(offset_in("Pacific/Kiritimati", END_MS), 14 * 3600);
    cr_expect_eq(offset_in("Asia/Kathmandu", END_MS), 5 * 3600 + 45 * 60);
    cr_expect_eq(offset_in("America/Los_Angeles", END_MS), -7 * 3600, "summer time");
    cr_expect_eq(offset_in("America/Los_Angeles", 1704067200000LL), -8 * 3600, "winter");
    /* Every event's local day is the zone's, across the change to summer time. */
    static const char *const zones[] = { "Pacific/Kiritimati", "Asia/Kathmandu",
                                         "America/Los_Angeles" };
    for (int z = 0; z < 3; z++) {
        static emit_event ev;
        world_custom(zones[z], 1712000000000LL /* 2024-04-01 */, 60, 9);
        emit_options o = { .seed = 9, .events = 3000 };
        emit_stream *s = emit_new(&w, &o);
        cr_assert_not_null(s);
        while (emit_next(s, &ev) == 1) {
            char day[CIVIL_DAY_LEN];
            Tally__V1__EventEnvelope *env =
                tally__v1__event_envelope__unpack(NULL, ev.len, ev.bytes);
            cr_assert_not_null(env);
            day_of(&w.tenants[0], env->occurred_at_ms, day);
            cr_assert_str_eq(env->local_day, day, "%s: entry %ld", zones[z], (long)ev.seq);
            tally__v1__event_envelope__free_unpacked(env, NULL);
        }
        emit_free(s);
    }
}

/* What the lives of the test tenant hold, under mix m, over n complaints. */
typedef struct mix_counts {
    int64_t reached;    /* assigned by an agent at once, and resolved: every chance was taken */
    int64_t unassigned; /* of those: handed back ("") and picked up again before the resolution */
    int64_t same;       /* of those: an assignment of the agent already assigned */
    int64_t instant;    /* of all: resolved first within 999 ms of the creation */
    int64_t reopened;   /* of all: reopened at least once */
    int64_t follow_up;  /* of all: assigned to an agent while RESOLVED */
    int64_t resolved;   /* of all: resolved at least once */
    int64_t n;
} mix_counts;

static mix_counts lives_under(const world_mix *m, int n)
{
    static gen_complaint c;
    mix_counts k = { .n = n };
    world_custom("UTC", END_MS, 365, 3);
    w.tenants[0].mix = *m;
    for (int i = 0; i < n; i++) {
        gen_imported(&c, &w.tenants[0], 3, i);
        const char *agent = "";
        bool back = false, again = false, same = false, assigned_first = false, resolved = false;
        bool follow_up = false;
        int status = TALLY__V1__STATUS__STATUS_OPEN;
        for (size_t j = 0; j < c.msg.n_history; j++) {
            const Tally__V1__ImportedStep *s = c.msg.history[j];
            if (s->change_case == TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT) {
                const char *to = s->assignment->agent_id;
                assigned_first |= j == 0;
                follow_up |= status == TALLY__V1__STATUS__STATUS_RESOLVED && to[0];
                if (!resolved) {
                    same |= agent[0] && strcmp(to, agent) == 0;
                    again |= back && to[0];
                    back |= agent[0] && !to[0];
                }
                agent = to;
                continue;
            }
            status = s->status_change->status;
            if (status == TALLY__V1__STATUS__STATUS_RESOLVED) {
                bool instant = !resolved && s->at_ms - c.msg.created_at_ms < 1000;
                k.instant += instant;
                if (!resolved && !instant && assigned_first) {
                    k.reached++;
                    k.unassigned += back && again;
                    k.same += same;
                }
                resolved = true;
            }
        }
        k.resolved += resolved;
        k.reopened += c.reopens > 0;
        k.follow_up += follow_up;
    }
    return k;
}

static void expect_share(int64_t part, int64_t of, double p, const char *what)
{
    double got = (double)part / (double)of;
    cr_expect(got > p - 0.04 && got < p + 0.04, "%s: %.3f of %ld, expected about %.2f", what, got,
              (long)of, p);
}

Test(sim_knobs, the_mix_at_0_gives_none_and_at_p_about_p)
{
    world_mix m = world_mix_default;
    m.reopen_first = 0;
    mix_counts z = lives_under(&m, 3000);
    cr_assert_gt(z.reached, 2000);
    cr_expect_eq(z.unassigned, 0);
    cr_expect_eq(z.same, 0);
    cr_expect_eq(z.instant, 0);
    cr_expect_eq(z.reopened, 0);
    cr_expect_eq(z.follow_up, 0);
    m.unassign = 0.3;
    m.same_agent = 0.2;
    m.instant = 0.25;
    m.reopen_first = 0.5;
    m.reopen_again = 0;
    m.resolved_reassign = 0.3;
    mix_counts k = lives_under(&m, 3000);
    expect_share(k.unassigned, k.reached, 0.3, "handed back and picked up again");
    expect_share(k.same, k.reached, 0.2, "re-assigned to the same agent");
    expect_share(k.instant, k.n, 0.25, "resolved within the second");
    expect_share(k.reopened, k.resolved, 0.5, "reopened");
    expect_share(k.follow_up, k.resolved, 0.3, "assigned while resolved");
}

/* Whether the history of a is the start of b's, step for step. */
static bool history_starts(const Tally__V1__ImportedComplaint *a,
                           const Tally__V1__ImportedComplaint *b)
{
    static uint8_t pa[1024], pb[1024];
    if (a->n_history > b->n_history)
        return false;
    for (size_t j = 0; j < a->n_history; j++) {
        size_t la = tally__v1__imported_step__get_packed_size(a->history[j]);
        size_t lb = tally__v1__imported_step__get_packed_size(b->history[j]);
        if (la != lb || la > sizeof(pa) ||
            tally__v1__imported_step__pack(a->history[j], pa) != la ||
            tally__v1__imported_step__pack(b->history[j], pb) != lb || memcmp(pa, pb, la) != 0)
            return false;
    }
    return true;
}

Test(sim_knobs, an_abandoned_life_is_the_same_life_cut_and_left_open_or_resolved)
{
    static gen_complaint whole, left;
    int64_t cut = 0, ended[5] = { 0 }, unassigned = 0;
    world_mix m = world_mix_default;
    m.abandon = 0.4;
    world_custom("UTC", END_MS, 365, 8);
    world_tenant *t = &w.tenants[0];
    for (int i = 0; i < 3000; i++) {
        t->mix = world_mix_default;
        gen_imported(&whole, t, 8, i);
        t->mix = m;
        gen_imported(&left, t, 8, i);
        cr_assert_eq(left.msg.created_at_ms, whole.msg.created_at_ms);
        cr_assert_str_eq(left.msg.title, whole.msg.title);
        cr_assert(history_starts(&left.msg, &whole.msg),
                  "complaint %d: the abandoned history is not the start of its life", i);
        if (left.msg.n_history == whole.msg.n_history)
            continue;
        const char *agent = "";
        int status = TALLY__V1__STATUS__STATUS_OPEN;
        for (size_t j = 0; j < left.msg.n_history; j++)
            if (left.msg.history[j]->change_case == TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT)
                agent = left.msg.history[j]->assignment->agent_id;
            else
                status = left.msg.history[j]->status_change->status;
        cut++;
        ended[status]++;
        unassigned += status == TALLY__V1__STATUS__STATUS_OPEN && !agent[0];
    }
    expect_share(cut, 3000, 0.37, "abandoned before the end of the life");
    cr_expect_eq(ended[TALLY__V1__STATUS__STATUS_CLOSED], 0, "a close is always the last step");
    cr_expect_gt(unassigned, 50, "%ld left open before any assignment", (long)unassigned);
    cr_expect_gt(ended[TALLY__V1__STATUS__STATUS_OPEN] - unassigned, 50, "%ld left open, assigned",
                 (long)(ended[TALLY__V1__STATUS__STATUS_OPEN] - unassigned));
    cr_expect_gt(ended[TALLY__V1__STATUS__STATUS_IN_PROGRESS], 50, "%ld left in progress",
                 (long)ended[TALLY__V1__STATUS__STATUS_IN_PROGRESS]);
    cr_expect_gt(ended[TALLY__V1__STATUS__STATUS_RESOLVED], 50, "%ld left resolved",
                 (long)ended[TALLY__V1__STATUS__STATUS_RESOLVED]);
}

Test(sim_knobs, a_stream_with_the_mix_turned_up_is_still_what_command_svc_writes)
{
    size_t n, unassigned = 0, instant = 0, follow_ups = 0;
    world_mix m = { .reassign = 0.3,
                    .unassign = 0.3,
                    .resolved_reassign = 0.2,
                    .same_agent = 0.3,
                    .instant = 0.2,
                    .instant_ms = 2500,
                    .reopen_first = 0.4,
                    .reopen_again = 0.4,
                    .reopens_max = 3,
                    .ties = 3 };
    world_custom("America/Los_Angeles", END_MS, 200, 4);
    world_set_mix(&w, &m);
    emit_options o = { .seed = 4, .events = 8000 };
    emit_event *v = stream_of(&o, &n);
    cr_assert_eq(n, 8000);
    expect_stream_well_formed(v, n);
    for (size_t i = 0; i < n; i++) {
        Tally__V1__EventEnvelope *env =
            tally__v1__event_envelope__unpack(NULL, v[i].len, v[i].bytes);
        if (env->body_case == TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_ASSIGNED &&
            !env->complaint_assigned->agent_id[0])
            unassigned++;
        if (env->body_case == TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_ASSIGNED &&
            env->complaint_assigned->status == TALLY__V1__STATUS__STATUS_RESOLVED)
            follow_ups++;
        if (env->body_case == TALLY__V1__EVENT_ENVELOPE__BODY_STATUS_CHANGED &&
            env->status_changed->to_status == TALLY__V1__STATUS__STATUS_RESOLVED &&
            env->status_changed->resolution_seconds <= 2)
            instant++;
        tally__v1__event_envelope__free_unpacked(env, NULL);
    }
    cr_expect_gt(unassigned, 100, "%zu unassignments", unassigned);
    cr_expect_gt(instant, 100, "%zu resolutions within 2 s", instant);
    cr_expect_gt(follow_ups, 50, "%zu assignments of resolved complaints", follow_ups);
    free(v);
}

Test(sim_knobs, complaints_of_a_tie_group_share_exactly_one_creation_time)
{
    static gen_complaint c;
    world_mix m = world_mix_default;
    m.ties = 4;
    world_custom("Europe/Berlin", END_MS, 90, 6);
    w.tenants[0].mix = m;
    int64_t first = 0, groups = 0, previous = INT64_MIN;
    for (int i = 0; i < 2000; i++) {
        gen_imported(&c, &w.tenants[0], 6, i);
        if (i % 4 == 0) {
            first = c.msg.created_at_ms;
            groups += first != previous;
            previous = first;
        }
        cr_assert_eq(c.msg.created_at_ms, first, "complaint %d is not created with %d", i,
                     i - i % 4);
    }
    cr_expect_eq(groups, 500, "groups share their times with each other");
    /* In the stream, a group's creations follow one another, by index. */
    size_t n, together = 0;
    emit_options o = { .seed = 6, .complaints = 400 };
    emit_event *v = stream_of(&o, &n);
    for (size_t i = 1; i < n; i++)
        if (v[i].type == CREATED && v[i - 1].type == CREATED &&
            v[i].occurred_at_ms == v[i - 1].occurred_at_ms) {
            together++;
            cr_expect_eq(v[i].index, v[i - 1].index + 1);
        }
    cr_expect_eq(together, 300, "%zu creations right after one of their group", together);
    free(v);
    m.ties = 1;
    w.tenants[0].mix = m;
    gen_imported(&c, &w.tenants[0], 6, 1);
    int64_t one = c.msg.created_at_ms;
    gen_imported(&c, &w.tenants[0], 6, 2);
    cr_expect_neq(one, c.msg.created_at_ms, "without ties, no shared times");
}

Test(sim_knobs, a_window_before_1970_keeps_local_days_and_working_hours)
{
    static gen_complaint c;
    size_t n;
    const int64_t end = -1 * 365 * WORLD_DAY_MS * 10; /* 1960 */
    world_custom("America/Los_Angeles", end, 120, 8);
    const world_tenant *t = &w.tenants[0];
    cr_expect_eq(t->start_ms, end - 120 * WORLD_DAY_MS);
    cr_expect_eq(world_offset_s(t, end), -8 * 3600, "Pacific Standard Time in December 1959");
    int64_t day_hours = 0, night_hours = 0;
    for (int i = 0; i < 2000; i++) {
        gen_imported(&c, t, 8, i);
        int64_t created = c.msg.created_at_ms;
        cr_assert(created >= t->start_ms && created <= end, "complaint %d outside its window", i);
        int64_t local = created / 1000 - (created % 1000 < 0) + world_offset_s(t, created);
        int64_t hour = ((local % 86400) + 86400) % 86400 / 3600;
        day_hours += hour >= 9 && hour < 17;
        night_hours += hour < 6;
        int64_t resolved = 0;
        for (size_t j = 0; j < c.msg.n_history; j++) {
            const Tally__V1__ImportedStep *s = c.msg.history[j];
            cr_assert_leq(s->at_ms, end);
            if (s->change_case != TALLY__V1__IMPORTED_STEP__CHANGE_STATUS_CHANGE)
                continue;
            if (s->status_change->status == TALLY__V1__STATUS__STATUS_RESOLVED)
                resolved = s->at_ms;
            if (strcmp(s->status_change->actor, "auto-close") == 0) /* the next full hour */
                cr_assert(s->at_ms >= resolved + 72 * WORLD_HOUR_MS &&
                              s->at_ms < resolved + 73 * WORLD_HOUR_MS + 5 * WORLD_MINUTE_MS,
                          "complaint %d: closed %ld ms after its resolution, not in the first "
                          "5 minutes of the hour after 72 h",
                          i, (long)(s->at_ms - resolved));
        }
    }
    cr_expect_gt(day_hours, 4 * night_hours,
                 "the local day's rhythm is lost (%ld by day, %ld "
                 "at night)",
                 (long)day_hours, (long)night_hours);
    emit_options o = { .seed = 8, .events = 3000 };
    emit_event *v = stream_of(&o, &n);
    cr_assert_eq(n, 3000);
    cr_expect_lt(v[n - 1].occurred_at_ms, 0);
    expect_stream_well_formed(v, n);
    free(v);
}

Test(sim_knobs, renames_appear_at_their_rate_in_seq_order_with_new_names)
{
    size_t n, refs = 0, renames = 0;
    int64_t next_n = 1;
    world_at(12);
    emit_options o = { .seed = 12, .events = 20000, .renames = 0.01 };
    emit_event *v = stream_of(&o, &n);
    cr_assert_eq(n, 20000);
    expect_stream_well_formed(v, n);
    while (refs < n && v[refs].complaint_id == 0)
        refs++;
    int64_t last_ms = v[refs].occurred_at_ms;
    for (size_t i = refs; i < n; i++) {
        cr_assert_geq(v[i].occurred_at_ms, last_ms, "entry %zu goes back in time", i);
        last_ms = v[i].occurred_at_ms;
        if (v[i].complaint_id != 0)
            continue;
        renames++;
        Tally__V1__EventEnvelope *env =
            tally__v1__event_envelope__unpack(NULL, v[i].len, v[i].bytes);
        int body = env->body_case;
        const char *name =
            body == TALLY__V1__EVENT_ENVELOPE__BODY_TENANT_PUT     ? env->tenant_put->name
            : body == TALLY__V1__EVENT_ENVELOPE__BODY_CATEGORY_PUT ? env->category_put->name
                                                                   : env->agent_put->name;
        char tail[40];
        snprintf(tail, sizeof(tail), " (renamed %ld)", (long)next_n++);
        cr_expect(strlen(name) > strlen(tail) &&
                      strcmp(name + strlen(name) - strlen(tail), tail) == 0,
                  "rename %zu is \"%s\", expected a name ending in \"%s\"", i, name, tail);
        tally__v1__event_envelope__free_unpacked(env, NULL);
    }
    expect_share((int64_t)renames * 10, (int64_t)(n - refs), 0.1, "renames (times 10)");
    emit_event *again = stream_of(&o, &n);
    for (size_t i = 0; i < n; i++)
        cr_assert(again[i].len == v[i].len && memcmp(again[i].bytes, v[i].bytes, v[i].len) == 0,
                  "entry %zu differs in a second stream of the seed", i);
    free(again);
    free(v);
    o.renames = 0;
    v = stream_of(&o, &n);
    for (size_t i = refs; i < n; i++)
        cr_assert_neq(v[i].complaint_id, 0, "a rename at entry %zu with renames 0", i);
    free(v);
}
