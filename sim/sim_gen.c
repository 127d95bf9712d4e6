/*
 * sim_gen: sample complaints and their histories. See sim_gen.h.
 *
 * Times are in milliseconds. Medians by priority (index 1 LOW .. 4 URGENT): first assignment
 * 5 h, 2 h, 30 min, 7 min; work started 60, 40, 15, 5 min after that; resolution 72, 36, 12
 * and 3 h after creation. Agents act during their working hours except on URGENT complaints;
 * customers and the auto-close job act at any time.
 */
#include "sim_gen.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define OPEN        TALLY__V1__STATUS__STATUS_OPEN
#define IN_PROGRESS TALLY__V1__STATUS__STATUS_IN_PROGRESS
#define RESOLVED    TALLY__V1__STATUS__STATUS_RESOLVED
#define CLOSED      TALLY__V1__STATUS__STATUS_CLOSED
#define URGENT      TALLY__V1__PRIORITY__PRIORITY_URGENT

#define H WORLD_HOUR_MS
#define M WORLD_MINUTE_MS

/* LOW 40%, MEDIUM 35%, HIGH 20%, URGENT 5%; complaints of an incident are more urgent. */
static const double priority_cum[4] = { 0.40, 0.75, 0.95, 1.0 };
static const double incident_priority_cum[4] = { 0.20, 0.50, 0.88, 1.0 };

static const double assign_median_ms[5] = { 0, 5 * H, 2 * H, 30 * M, 7 * M };
static const double start_median_ms[5] = { 0, 60 * M, 40 * M, 15 * M, 5 * M };
static const double resolve_median_ms[5] = { 0, 72 * H, 36 * H, 12 * H, 3 * H };

/* The rest of the chances are the tenant's world_mix (world_mix_default: sim_world.c). */
#define SELF_SERVICE 0.06 /* answered by the help centre, never assigned */
#define STARTED      0.88 /* moved to IN_PROGRESS before the resolution */
#define AUTO_CLOSED  0.55 /* closed by the auto-close job 3 days after the resolution */
#define AGENT_CLOSED 0.30 /* closed by the agent; the rest stay RESOLVED */

/* An abandoned complaint (world_mix.abandon) is left as it is this long after its creation. */
#define ABANDONED_MEDIAN_MS (6 * H)

static const char *const closings[] = {
    "Please help.",
    "I would like this sorted out quickly.",
    "This is the second time this has happened.",
    "Thank you in advance.",
    "I have been a customer for years and this is disappointing.",
    "Please call me back.",
    "",
};
#define NCLOSINGS ((int)(sizeof(closings) / sizeof(closings[0])))

void gen_key(char *buf, size_t len, uint64_t seed, int64_t index)
{
    snprintf(buf, len, "sim%" PRIu64 "-%07" PRId64, seed, index);
}

/* Title, description and customer of a complaint of category (an index of t's categories). */
static void texts(const world_tenant *t, int category, world_rng *r, char *title, char *description,
                  char *customer)
{
    const world_category *c = t->categories[category];
    int nt = 0, nd = 0;
    while (nt < 4 && c->titles[nt])
        nt++;
    while (nd < 3 && c->details[nd])
        nd++;
    snprintf(title, GEN_TITLE_MAX, "%s", c->titles[world_rng_below(r, nt)]);
    const char *closing = closings[world_rng_below(r, NCLOSINGS)];
    snprintf(description, GEN_TEXT_MAX, "%s Order %c%c-%06d.%s%s",
             c->details[world_rng_below(r, nd)], 'A' + world_rng_below(r, 26),
             'A' + world_rng_below(r, 26), world_rng_below(r, 1000000), closing[0] ? " " : "",
             closing);
    /* Repeat customers: low numbers come up far more often. */
    double u = world_rng_unit(r);
    snprintf(customer, GEN_CUST_MAX, "cust-%06d", (int)(u * u * 40000));
}

const char *gen_fix_note(const world_tenant *t, int category, world_rng *r)
{
    return t->categories[category]->fixes[world_rng_below(r, 3)];
}

void gen_new_complaint(gen_new *n, const world_tenant *t, world_rng *r)
{
    n->category = world_pick_category(t, r);
    n->priority = 1 + world_rng_pick(r, priority_cum, 4);
    texts(t, n->category, r, n->title, n->description, n->customer);
}

/* ---- histories ----------------------------------------------------------------------------- */

/* The next slot of m's history at at_ms, or NULL when s is full. */
static Tally__V1__ImportedStep *next_step(Tally__V1__ImportedComplaint *m, const gen_slots *s,
                                          int64_t at_ms)
{
    size_t n = m->n_history;
    if (n == s->max)
        return NULL;
    Tally__V1__ImportedStep *step = &s->steps[n];
    tally__v1__imported_step__init(step);
    step->at_ms = at_ms;
    s->ptrs[n] = step;
    m->n_history = n + 1;
    return step;
}

bool gen_add_assignment(Tally__V1__ImportedComplaint *m, const gen_slots *s, int64_t at_ms,
                        const char *agent)
{
    Tally__V1__ImportedStep *step = next_step(m, s, at_ms);
    if (!step)
        return false;
    Tally__V1__ImportedAssignment *a = &s->assignments[m->n_history - 1];
    tally__v1__imported_assignment__init(a);
    a->agent_id = (char *)agent;
    step->change_case = TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT;
    step->assignment = a;
    return true;
}

bool gen_add_move(Tally__V1__ImportedComplaint *m, const gen_slots *s, int64_t at_ms, int status,
                  const char *actor, const char *note)
{
    Tally__V1__ImportedStep *step = next_step(m, s, at_ms);
    if (!step)
        return false;
    Tally__V1__ImportedStatusChange *c = &s->moves[m->n_history - 1];
    tally__v1__imported_status_change__init(c);
    c->status = (Tally__V1__Status)status;
    c->actor = (char *)actor;
    c->note = (char *)note;
    step->change_case = TALLY__V1__IMPORTED_STEP__CHANGE_STATUS_CHANGE;
    step->status_change = c;
    return true;
}

/* A history being written: steps are appended in time order until one would pass the cutoff. */
typedef struct hist {
    gen_complaint *c;
    gen_slots slots;
    int64_t last, cutoff;
    bool cut;
} hist;

/* Whether a step at *at (moved up to the last one's time) still belongs to the history. */
static bool admit(hist *h, int64_t *at)
{
    if (h->cut)
        return false;
    if (*at < h->last)
        *at = h->last;
    if (*at > h->cutoff) {
        h->cut = true;
        return false;
    }
    h->last = *at;
    return true;
}

static void assign(hist *h, int64_t at, const char *agent)
{
    if (admit(h, &at))
        gen_add_assignment(&h->c->msg, &h->slots, at, agent);
}

static void move(hist *h, int64_t at, int status, const char *actor, const char *note)
{
    if (admit(h, &at) && gen_add_move(&h->c->msg, &h->slots, at, status, actor, note) &&
        status == OPEN)
        h->c->reopens++;
}

static int64_t lognormal_ms(world_rng *r, double median_ms, double sigma)
{
    return (int64_t)world_rng_lognormal(r, median_ms, sigma);
}

/* x rounded up to a multiple of unit (unit > 0), before 1970 too. */
static int64_t ceil_to(int64_t x, int64_t unit)
{
    int64_t q = x / unit;
    return (q + (x % unit > 0)) * unit;
}

/* An agent other than the one at index current who works (current when there is none). */
static int other_agent(const world_tenant *t, world_rng *r, int current)
{
    int a = world_pick_agent(t, r);
    a = a != current ? a : (a + 1 + world_rng_below(r, t->nagents - 1)) % t->nagents;
    for (int k = 0; k < t->nagents && (a == current || !world_agent_works(t, a)); k++)
        a = (a + 1) % t->nagents;
    return world_agent_works(t, a) ? a : current;
}

/* The creation time of complaint index of t, drawn from r, its life's stream. */
static int64_t creation_of(const world_tenant *t, world_rng *r, int64_t index, int *incident)
{
    *incident = -1;
    return index == 0 ? t->start_ms : world_sample_time(t, r, incident);
}

/* The random streams of a complaint, plus its index: its life, and when it is abandoned. */
#define STREAM_LIFE    1000ULL
#define STREAM_ABANDON (1ULL << 40)

/* The random stream of complaint index of t for seed, for purpose (STREAM_*). */
static void life_rng(world_rng *r, const world_tenant *t, uint64_t seed, int64_t index,
                     uint64_t purpose)
{
    /* The window's length and the zone shape every complaint, complaint 0 included: a rerun
     * with another --days or zone is told apart by its complaint 0 (seed.c). */
    uint64_t days = (uint64_t)((t->end_ms - t->start_ms) / WORLD_DAY_MS);
    world_rng_init(r, seed, t->key ^ world_hash(t->zone) ^ (days << 40), purpose + (uint64_t)index);
}

void gen_imported(gen_complaint *c, const world_tenant *t, uint64_t seed, int64_t index)
{
    world_rng r;
    int incident;
    const world_mix *mix = &t->mix;
    life_rng(&r, t, seed, index, STREAM_LIFE);

    tally__v1__imported_complaint__init(&c->msg);
    c->reopens = 0;
    gen_key(c->key, sizeof(c->key), seed, index);
    int64_t created = creation_of(t, &r, index, &incident);
    if (mix->ties > 1 && index % mix->ties != 0) { /* the time of the first of its group */
        world_rng first;
        int ignored;
        life_rng(&first, t, seed, index - index % mix->ties, STREAM_LIFE);
        created = creation_of(t, &first, index - index % mix->ties, &ignored);
    }
    int category = incident >= 0 ? incident : world_pick_category(t, &r);
    int priority = 1 + world_rng_pick(&r, incident >= 0 ? incident_priority_cum : priority_cum, 4);
    texts(t, category, &r, c->title, c->description, c->customer);
    c->msg.idempotency_key = c->key;
    c->msg.category_id = (char *)t->categories[category]->id;
    c->msg.priority = (Tally__V1__Priority)priority;
    c->msg.title = c->title;
    c->msg.description = c->description;
    c->msg.customer_id = c->customer;
    c->msg.created_at_ms = created;
    c->msg.history = c->step_ptrs;

    int64_t cutoff = t->end_ms;
    if (mix->abandon > 0) { /* a stream of its own: an abandoned life is the same life, cut */
        world_rng a;
        life_rng(&a, t, seed, index, STREAM_ABANDON);
        int64_t left = created + lognormal_ms(&a, ABANDONED_MEDIAN_MS, 1.2);
        if (world_rng_unit(&a) < mix->abandon && left < cutoff)
            cutoff = left;
    }
    hist h = { .c = c,
               .slots = { c->steps, c->step_ptrs, c->assignments, c->moves, GEN_STEPS_MAX },
               .last = created,
               .cutoff = cutoff };
    bool urgent = priority == URGENT;
    int agent = -1;
    int64_t at = created;
#define WORK(ms) (urgent ? (ms) : world_work_time(t, (ms), &r))
    if (mix->instant > 0 && world_rng_unit(&r) < mix->instant) {
        agent = world_pick_agent(t, &r);
        assign(&h, at, t->agent_ids[agent]);
        at += (int64_t)(world_rng_unit(&r) * (double)mix->instant_ms);
        move(&h, at, RESOLVED, t->agent_ids[agent], gen_fix_note(t, category, &r));
    } else if (world_rng_unit(&r) < SELF_SERVICE) {
        at += lognormal_ms(&r, 8 * H, 1.0);
        move(&h, at, RESOLVED, "self-service", "Answered with a help centre article.");
    } else {
        agent = world_pick_agent(t, &r);
        at = WORK(at + lognormal_ms(&r, assign_median_ms[priority], 0.9));
        assign(&h, at, t->agent_ids[agent]);
        int64_t due = created + lognormal_ms(&r, resolve_median_ms[priority], 0.8);
        if (world_rng_unit(&r) < STARTED) {
            at = WORK(at + lognormal_ms(&r, start_median_ms[priority], 0.8));
            move(&h, at, IN_PROGRESS, t->agent_ids[agent], "");
        }
        int64_t resolved = at + lognormal_ms(&r, 20 * M, 0.7);
        resolved = WORK(resolved > due ? resolved : due);
        if (world_rng_unit(&r) < mix->reassign) {
            int64_t when =
                at + (int64_t)((double)(resolved - at) * (0.2 + 0.6 * world_rng_unit(&r)));
            agent = other_agent(t, &r, agent);
            assign(&h, when, t->agent_ids[agent]);
        }
        if (mix->same_agent > 0 && world_rng_unit(&r) < mix->same_agent)
            assign(&h, at + (int64_t)((double)(resolved - at) * 0.5 * world_rng_unit(&r)),
                   t->agent_ids[agent]);
        if (mix->unassign > 0 && world_rng_unit(&r) < mix->unassign) { /* back to the queue */
            int64_t back =
                h.last + (int64_t)((double)(resolved - h.last) * 0.5 * world_rng_unit(&r));
            assign(&h, back, "");
            agent = other_agent(t, &r, agent);
            assign(&h, back + (int64_t)((double)(resolved - back) * world_rng_unit(&r)),
                   t->agent_ids[agent]);
        }
        at = resolved;
        move(&h, at, RESOLVED, t->agent_ids[agent], gen_fix_note(t, category, &r));
    }
    if (mix->resolved_reassign > 0 && world_rng_unit(&r) < mix->resolved_reassign) {
        agent = agent < 0 ? world_pick_agent(t, &r) : other_agent(t, &r, agent);
        at = WORK(at + lognormal_ms(&r, 2 * H, 0.8)); /* the follow-up goes to someone else */
        assign(&h, at, t->agent_ids[agent]);
    }
    for (int cycle = 0; cycle < mix->reopens_max &&
                        world_rng_unit(&r) < (cycle == 0 ? mix->reopen_first : mix->reopen_again);
         cycle++) {
        at += lognormal_ms(&r, 20 * H, 0.8);
        move(&h, at, OPEN, "customer-portal", "Customer replied: the problem is not solved.");
        if (agent < 0 || world_rng_unit(&r) < 0.3) { /* to a (more senior) colleague */
            agent = agent < 0 ? world_pick_agent(t, &r) : other_agent(t, &r, agent);
            at = WORK(at + lognormal_ms(&r, 40 * M, 0.8));
            assign(&h, at, t->agent_ids[agent]);
        }
        at = WORK(at + lognormal_ms(&r, start_median_ms[priority], 0.8));
        move(&h, at, IN_PROGRESS, t->agent_ids[agent], "");
        at = WORK(at + lognormal_ms(&r, 0.4 * resolve_median_ms[priority], 0.8));
        move(&h, at, RESOLVED, t->agent_ids[agent], gen_fix_note(t, category, &r));
    }
    double u = world_rng_unit(&r);
    if (u < AUTO_CLOSED) { /* the job runs at the top of every hour */
        at = ceil_to(at + 72 * H, H) + (int64_t)(world_rng_unit(&r) * 5 * M);
        move(&h, at, CLOSED, "auto-close", "Closed automatically: no reply for 3 days.");
    } else if (u < AUTO_CLOSED + AGENT_CLOSED) {
        at = WORK(at + lognormal_ms(&r, 6 * H, 1.0));
        move(&h, at, CLOSED, agent >= 0 ? t->agent_ids[agent] : "support-desk", "");
    }
#undef WORK
}
