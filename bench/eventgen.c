/*
 * bench-eventgen: fills the event stream tally:events:0 with a realistic, reproducible mix of
 * events for the projector benchmark (projector-bench.sh).
 *
 * It simulates a help desk: T tenants (skewed: tenant i gets a share proportional to
 * 1/(i+1)), each with 8 categories and 20 agents, and complaints arriving evenly over 12
 * months (from 2024-07-01 UTC), about one per 4.8 events. Each complaint lives its life in
 * simulated time: created OPEN in a skewed category and priority, usually assigned, often
 * moved IN_PROGRESS, sometimes reassigned (or unassigned), resolved after a log-normal time
 * whose median depends on the priority, sometimes reopened and resolved again, often closed;
 * a few stay open for good. Events of all complaints are written in simulated-time order, so
 * per complaint the versions run 1, 2, 3, ... in stream order and seq grows by one per entry.
 * Each tenant first gets its reference events (TenantPut, CategoryPut, AgentPut). Everything
 * the projector reads is set as command-svc sets it: StatusChanged carries category, priority,
 * agent, created_at_ms, created_local_day and resolution_seconds; ComplaintAssigned carries the
 * previous agent, the status and created_at_ms. Local days use a fixed offset per tenant
 * (UTC, -5 h, +9 h, ...; no daylight saving time).
 *
 * The same seed gives the same events. Live events (the default) carry recorded_at_ms =
 * occurred_at_ms; --imported marks them imported, recorded a day after the simulated year.
 * With --until-now the simulated year ends at the wall clock when the program starts, so that
 * a dashboard's default range (the 30 days ending today) and "today" have data and the
 * complaints in progress are recent ones; the simulation then also stops at that moment, so no
 * event lies in the future (a little before --events entries: the summary line says how many;
 * imported events are then recorded at that moment). The same seed gives the same sequence of
 * changes, shifted in time.
 * With --rate the events are paced in real time and stamped with the wall clock when they are
 * sent (the sequence of changes stays the simulated one; resolution times are then the
 * compressed real ones), which is what a lag measurement needs.
 *
 * Entries are added with pipelined XADD tally:events:0 * e <EventEnvelope bytes>, packed with
 * event_pack as command-svc's relay packs them. Prints one summary line on stdout.
 *
 * Usage: bench-eventgen [--redis host:port] [--events N] [--tenants T] [--seed S]
 *                       [--rate R [--duration S] | --until-now] [--imported]
 */
#include "event.h"
#include "tally/v1/events.pb-c.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STREAM          "tally:events:0"
#define NCATEGORIES     8
#define NPRIORITIES     4
#define NAGENTS         20
#define MAX_TENANTS     64
#define PIPELINE        1000 /* XADDs in flight before their replies are read */
#define EVENTS_PER_ONE  4.8  /* events per complaint on average (sets the arrival rate) */
#define SIM_START_MS    1719792000000LL /* 2024-07-01T00:00:00Z (without --until-now) */
#define SIM_SPAN_MS     (365LL * 86400 * 1000)
#define MINUTE_MS       (60LL * 1000)
#define HOUR_MS         (60 * MINUTE_MS)
#define DAY_MS          (24 * HOUR_MS)
#define BODY_MAX        512
#define ID_LEN          24 /* room for the ids below, with any int */
#define ENVELOPE_MAX    (BODY_MAX + 256)
#define STATUS_OPEN     TALLY__V1__STATUS__STATUS_OPEN
#define STATUS_PROGRESS TALLY__V1__STATUS__STATUS_IN_PROGRESS
#define STATUS_RESOLVED TALLY__V1__STATUS__STATUS_RESOLVED
#define STATUS_CLOSED   TALLY__V1__STATUS__STATUS_CLOSED

/* Skews: category k, priority p (LOW..URGENT) and agent a are picked with these weights. */
static const double category_weights[NCATEGORIES] = { 30, 20, 15, 10, 8, 7, 6, 4 };
static const double priority_weights[NPRIORITIES] = { 30, 45, 18, 7 };
/* Median resolution time by priority (LOW..URGENT), in hours; log-normal with sigma 1. */
static const double resolve_median_h[NPRIORITIES] = { 72, 24, 8, 2 };

static const struct {
    const char *name;
    int offset_min;
} zones[] = { { "UTC", 0 },
              { "America/New_York", -300 },
              { "Asia/Tokyo", 540 },
              { "Europe/Berlin", 60 },
              { "America/Los_Angeles", -480 },
              { "Asia/Kolkata", 330 } };

/* What a complaint does next. */
enum step { S_CREATE, S_ASSIGN, S_PROGRESS, S_RESOLVE, S_REOPEN, S_CLOSE };

typedef struct complaint {
    int64_t id, version;
    int tenant, category, priority;
    int agent; /* -1: unassigned */
    int status;
    int64_t created_sim; /* simulated creation time */
    int64_t created_ms;  /* the creation time written in the events */
    char created_day[11];
    bool reassigned, reopened;
    enum step next;
} complaint;

/* The simulation's agenda: complaints by the time of their next step; NULL = an arrival. */
typedef struct agenda_item {
    int64_t at;
    uint64_t order; /* ties go in insertion order, so a seed always gives the same stream */
    complaint *c;
} agenda_item;

typedef struct agenda {
    agenda_item *v;
    size_t n, cap;
    uint64_t next_order;
} agenda;

typedef struct options {
    const char *host;
    int port;
    long long events;
    int tenants;
    uint64_t seed;
    double rate;
    double duration;
    bool imported;
    bool until_now;
} options;

typedef struct gen {
    options opt;
    redisContext *redis;
    uint64_t rng;
    agenda ag;
    double tenant_cum[MAX_TENANTS], category_cum[NCATEGORIES], priority_cum[NPRIORITIES],
        agent_cum[NAGENTS];
    int64_t seq, next_id, arrival_mean_ms, t0_ns;
    int64_t start_ms, end_ms; /* the simulated year; with --until-now nothing after end_ms */
    long long in_flight, written, complaints, created, assigned, changed, reference;
} gen;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench-eventgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static int64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- randomness: splitmix64, so the stream depends on the seed alone ------------------------ */

static uint64_t rnd_next(gen *g)
{
    uint64_t z = (g->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rnd_unit(gen *g)
{
    return (double)(rnd_next(g) >> 11) * 0x1.0p-53;
}

static bool rnd_chance(gen *g, double p)
{
    return rnd_unit(g) < p;
}

static int64_t rnd_exp_ms(gen *g, int64_t mean_ms)
{
    return (int64_t)(-(double)mean_ms * log(1.0 - rnd_unit(g))) + 1;
}

static int64_t rnd_between_ms(gen *g, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rnd_unit(g) * (double)(hi - lo));
}

/* Log-normal with the given median and sigma 1 (Box-Muller). */
static int64_t rnd_lognormal_ms(gen *g, double median_ms)
{
    double u = 1.0 - rnd_unit(g), v = rnd_unit(g);
    double z = sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
    return (int64_t)(median_ms * exp(z)) + 1;
}

/* An index picked with the weights whose running sums are cum[0..n-1]. */
static int rnd_pick(gen *g, const double *cum, int n)
{
    double x = rnd_unit(g) * cum[n - 1];
    for (int i = 0; i < n - 1; i++)
        if (x < cum[i])
            return i;
    return n - 1;
}

static void cumulate(double *cum, const double *w, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        cum[i] = (s += w[i]);
}

/* ---- the agenda: a binary min-heap on (at, order) ------------------------------------------ */

static bool item_before(const agenda_item *a, const agenda_item *b)
{
    return a->at < b->at || (a->at == b->at && a->order < b->order);
}

static void agenda_push(agenda *a, int64_t at, complaint *c)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 1024;
        agenda_item *v = realloc(a->v, cap * sizeof(*v));
        if (!v)
            die("out of memory");
        a->v = v;
        a->cap = cap;
    }
    size_t i = a->n++;
    agenda_item it = { at, a->next_order++, c };
    while (i > 0 && item_before(&it, &a->v[(i - 1) / 2])) {
        a->v[i] = a->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    a->v[i] = it;
}

static agenda_item agenda_pop(agenda *a)
{
    agenda_item top = a->v[0], last = a->v[--a->n];
    size_t i = 0;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= a->n)
            break;
        if (k + 1 < a->n && item_before(&a->v[k + 1], &a->v[k]))
            k++;
        if (!item_before(&a->v[k], &last))
            break;
        a->v[i] = a->v[k];
        i = k;
    }
    if (a->n > 0)
        a->v[i] = last;
    return top;
}

/* ---- writing ------------------------------------------------------------------------------- */

/* Reads the replies of every XADD in flight; any error ends the program. */
static void drain(gen *g)
{
    for (; g->in_flight > 0; g->in_flight--) {
        redisReply *r = NULL;
        if (redisGetReply(g->redis, (void **)&r) != REDIS_OK || !r)
            die("redis: %s", g->redis->errstr[0] ? g->redis->errstr : "no reply");
        if (r->type == REDIS_REPLY_ERROR)
            die("XADD failed: %s", r->str);
        freeReplyObject(r);
    }
}

/* The tenant-local day "YYYY-MM-DD" of a Unix ms time. */
static void local_day(int tenant, int64_t ms, char out[11])
{
    time_t s = (time_t)((ms + (int64_t)zones[tenant % 6].offset_min * MINUTE_MS) / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    if (strftime(out, 11, "%Y-%m-%d", &tm) != 10)
        die("time %" PRId64 " ms has no 4-digit year", ms);
}

static void tenant_id(int tenant, char out[ID_LEN])
{
    snprintf(out, ID_LEN, "tenant-%d", tenant);
}

static void category_id(int category, char out[ID_LEN])
{
    snprintf(out, ID_LEN, "cat-%d", category);
}

static void agent_id(int agent, char out[ID_LEN])
{
    if (agent < 0)
        out[0] = '\0';
    else
        snprintf(out, ID_LEN, "agent-%02d", agent);
}

/*
 * Sends one event: packs the envelope around body (the packed body message of type) and
 * appends its XADD to the pipeline. In paced mode it first waits for the event's turn.
 */
static void emit(gen *g, int tenant, const complaint *c, int type, int64_t occurred_ms,
                 const uint8_t *body, size_t body_len)
{
    uint8_t buf[ENVELOPE_MAX];
    char tenant_s[ID_LEN], day[11];
    tenant_id(tenant, tenant_s);
    local_day(tenant, occurred_ms, day);
    event_row row = { .seq = ++g->seq,
                      .tenant_id = tenant_s,
                      .complaint_id = c ? c->id : 0,
                      .version = c ? c->version : 0,
                      .type = type,
                      .occurred_at_ms = occurred_ms,
                      .local_day = day,
                      .recorded_at_ms = occurred_ms,
                      .imported = g->opt.imported,
                      .body = body,
                      .body_len = body_len };
    if (g->opt.imported)
        row.recorded_at_ms = g->opt.until_now ? g->end_ms : g->end_ms + DAY_MS;
    long n = event_pack(&row, buf, sizeof(buf));
    if (n < 0)
        die("event_pack failed (%ld) for seq %" PRId64, n, row.seq);
    const char *argv[] = { "XADD", STREAM, "*", "e", (const char *)buf };
    size_t lens[] = { 4, strlen(STREAM), 1, 1, (size_t)n };
    if (redisAppendCommandArgv(g->redis, 5, argv, lens) != REDIS_OK)
        die("redis: %s", g->redis->errstr);
    g->written++;
    if (++g->in_flight >= PIPELINE)
        drain(g);
}

/*
 * The time written in the next event: the simulated time, or in paced mode the wall clock once
 * the event's turn has come (the pipeline is flushed before waiting, so nothing sent lingers).
 */
static int64_t stamp(gen *g, int64_t sim_ms)
{
    if (g->opt.rate <= 0)
        return sim_ms;
    int64_t due = g->t0_ns + (int64_t)((double)g->written * 1e9 / g->opt.rate);
    int64_t now = clock_ns(CLOCK_MONOTONIC);
    if (due > now) {
        drain(g);
        struct timespec ts = { (time_t)(due / 1000000000), (long)(due % 1000000000) };
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
    }
    return clock_ns(CLOCK_REALTIME) / 1000000;
}

static size_t pack_checked(size_t size, size_t packed)
{
    if (size > BODY_MAX || packed != size)
        die("event body of %zu bytes does not fit", size);
    return packed;
}

/* Each tenant's TenantPut, CategoryPuts and AgentPuts. */
static void emit_reference(gen *g)
{
    uint8_t body[BODY_MAX];
    char id[ID_LEN], name[48];
    for (int t = 0; t < g->opt.tenants && g->written < g->opt.events; t++) {
        Tally__V1__TenantPut tp = TALLY__V1__TENANT_PUT__INIT;
        snprintf(name, sizeof(name), "Benchmark tenant %d", t);
        tp.name = name;
        tp.time_zone = (char *)zones[t % 6].name;
        size_t n = pack_checked(tally__v1__tenant_put__get_packed_size(&tp),
                                tally__v1__tenant_put__pack(&tp, body));
        emit(g, t, NULL, TALLY__V1__EVENT_TYPE__EVENT_TYPE_TENANT_PUT, stamp(g, g->start_ms), body,
             n);
        g->reference++;
        for (int k = 0; k < NCATEGORIES && g->written < g->opt.events; k++) {
            Tally__V1__CategoryPut cp = TALLY__V1__CATEGORY_PUT__INIT;
            category_id(k, id);
            snprintf(name, sizeof(name), "Category %d", k);
            cp.category_id = id;
            cp.name = name;
            n = pack_checked(tally__v1__category_put__get_packed_size(&cp),
                             tally__v1__category_put__pack(&cp, body));
            emit(g, t, NULL, TALLY__V1__EVENT_TYPE__EVENT_TYPE_CATEGORY_PUT, stamp(g, g->start_ms),
                 body, n);
            g->reference++;
        }
        for (int a = 0; a < NAGENTS && g->written < g->opt.events; a++) {
            Tally__V1__AgentPut ap = TALLY__V1__AGENT_PUT__INIT;
            agent_id(a, id);
            snprintf(name, sizeof(name), "Agent %d", a);
            ap.agent_id = id;
            ap.name = name;
            n = pack_checked(tally__v1__agent_put__get_packed_size(&ap),
                             tally__v1__agent_put__pack(&ap, body));
            emit(g, t, NULL, TALLY__V1__EVENT_TYPE__EVENT_TYPE_AGENT_PUT, stamp(g, g->start_ms),
                 body, n);
            g->reference++;
        }
    }
}

/* ---- the complaints' lives ----------------------------------------------------------------- */

/* When c gets resolved, from now (its next step becomes S_RESOLVE); -1: it stays open. */
static int64_t plan_resolve(gen *g, complaint *c, int64_t now)
{
    if (rnd_chance(g, 0.05))
        return -1;
    double median = resolve_median_h[c->priority - 1] * (double)HOUR_MS;
    int64_t at = c->reopened ? now + rnd_lognormal_ms(g, median / 2)
                             : c->created_sim + rnd_lognormal_ms(g, median);
    c->next = S_RESOLVE;
    return at > now ? at : now + rnd_exp_ms(g, 10 * MINUTE_MS);
}

/*
 * The time of c's next step after the step just taken (S_CREATE for its creation), with
 * c->next set; -1 when c has nothing more to do.
 */
static int64_t plan(gen *g, complaint *c, enum step taken, int64_t now)
{
    switch (taken) {
    case S_CREATE:
        if (rnd_chance(g, 0.9)) {
            c->next = S_ASSIGN;
            return now + rnd_exp_ms(g, 30 * MINUTE_MS);
        }
        if (rnd_chance(g, 0.5)) {
            c->next = S_PROGRESS;
            return now + rnd_exp_ms(g, 2 * HOUR_MS);
        }
        return plan_resolve(g, c, now);
    case S_ASSIGN:
        if (c->status == STATUS_OPEN && rnd_chance(g, 0.8)) {
            c->next = S_PROGRESS;
            return now + rnd_exp_ms(g, 90 * MINUTE_MS);
        }
        return plan_resolve(g, c, now);
    case S_PROGRESS:
        if (c->agent >= 0 && !c->reassigned && rnd_chance(g, 0.35)) {
            c->next = S_ASSIGN;
            c->reassigned = true;
            return now + rnd_exp_ms(g, 4 * HOUR_MS);
        }
        return plan_resolve(g, c, now);
    case S_REOPEN:
        if (rnd_chance(g, 0.5)) {
            c->next = S_PROGRESS;
            return now + rnd_exp_ms(g, 2 * HOUR_MS);
        }
        return plan_resolve(g, c, now);
    case S_RESOLVE:
        if (!c->reopened && rnd_chance(g, 0.15)) {
            c->next = S_REOPEN;
            return now + rnd_between_ms(g, DAY_MS, 3 * DAY_MS);
        }
        if (rnd_chance(g, 0.6)) {
            c->next = S_CLOSE;
            return now + rnd_between_ms(g, 3 * DAY_MS, 7 * DAY_MS);
        }
        return -1;
    case S_CLOSE:
        return -1;
    }
    return -1;
}

static void emit_created(gen *g, complaint *c, int64_t ms)
{
    uint8_t body[BODY_MAX];
    char cat[ID_LEN], customer[24], title[48];
    Tally__V1__ComplaintCreated b = TALLY__V1__COMPLAINT_CREATED__INIT;
    category_id(c->category, cat);
    snprintf(customer, sizeof(customer), "cust-%" PRId64, (c->id * 7919) % 50000);
    snprintf(title, sizeof(title), "Complaint %" PRId64 " about category %d", c->id, c->category);
    b.category_id = cat;
    b.priority = (Tally__V1__Priority)c->priority;
    b.customer_id = customer;
    b.title = title;
    b.status = STATUS_OPEN;
    b.agent_id = "";
    size_t n = pack_checked(tally__v1__complaint_created__get_packed_size(&b),
                            tally__v1__complaint_created__pack(&b, body));
    emit(g, c->tenant, c, TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED, ms, body, n);
    g->created++;
}

static void emit_assigned(gen *g, complaint *c, int previous, int64_t ms)
{
    uint8_t body[BODY_MAX];
    char prev[ID_LEN], agent[ID_LEN], cat[ID_LEN];
    Tally__V1__ComplaintAssigned b = TALLY__V1__COMPLAINT_ASSIGNED__INIT;
    agent_id(previous, prev);
    agent_id(c->agent, agent);
    category_id(c->category, cat);
    b.previous_agent_id = prev;
    b.agent_id = agent;
    b.category_id = cat;
    b.priority = (Tally__V1__Priority)c->priority;
    b.status = (Tally__V1__Status)c->status;
    b.created_at_ms = c->created_ms;
    size_t n = pack_checked(tally__v1__complaint_assigned__get_packed_size(&b),
                            tally__v1__complaint_assigned__pack(&b, body));
    emit(g, c->tenant, c, TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED, ms, body, n);
    g->assigned++;
}

static void emit_status(gen *g, complaint *c, int from, int64_t ms)
{
    uint8_t body[BODY_MAX];
    char agent[ID_LEN], cat[ID_LEN];
    Tally__V1__StatusChanged b = TALLY__V1__STATUS_CHANGED__INIT;
    agent_id(c->agent, agent);
    category_id(c->category, cat);
    b.from_status = (Tally__V1__Status)from;
    b.to_status = (Tally__V1__Status)c->status;
    b.category_id = cat;
    b.priority = (Tally__V1__Priority)c->priority;
    b.agent_id = agent;
    b.actor = c->agent >= 0 ? agent : "supervisor";
    b.created_at_ms = c->created_ms;
    b.created_local_day = c->created_day;
    if (c->status == STATUS_RESOLVED)
        b.resolution_seconds = (ms - c->created_ms) / 1000;
    size_t n = pack_checked(tally__v1__status_changed__get_packed_size(&b),
                            tally__v1__status_changed__pack(&b, body));
    emit(g, c->tenant, c, TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED, ms, body, n);
    g->changed++;
}

/* A new complaint arrives at simulated time now: its ComplaintCreated, then its plan. */
static void arrive(gen *g, int64_t now)
{
    complaint *c = calloc(1, sizeof(*c));
    if (!c)
        die("out of memory");
    c->id = g->next_id++;
    c->version = 1;
    c->tenant = rnd_pick(g, g->tenant_cum, g->opt.tenants);
    c->category = rnd_pick(g, g->category_cum, NCATEGORIES);
    c->priority = 1 + rnd_pick(g, g->priority_cum, NPRIORITIES);
    c->agent = -1;
    c->status = STATUS_OPEN;
    c->created_sim = now;
    c->created_ms = stamp(g, now);
    local_day(c->tenant, c->created_ms, c->created_day);
    emit_created(g, c, c->created_ms);
    g->complaints++;
    int64_t at = plan(g, c, S_CREATE, now);
    if (at < 0)
        free(c);
    else
        agenda_push(&g->ag, at, c);
}

/* c takes its planned step at simulated time now. */
static void step(gen *g, complaint *c, int64_t now)
{
    int64_t ms = stamp(g, now);
    int from = c->status, previous = c->agent;
    enum step taken = c->next;
    c->version++;
    switch (taken) {
    case S_CREATE:
        die("complaint %" PRId64 " planned to be created twice", c->id);
    case S_ASSIGN:
        if (c->agent < 0)
            c->agent = rnd_pick(g, g->agent_cum, NAGENTS);
        else if (rnd_chance(g, 0.1))
            c->agent = -1; /* unassigned */
        else
            c->agent = (c->agent + 1 + (int)(rnd_next(g) % (NAGENTS - 1))) % NAGENTS;
        emit_assigned(g, c, previous, ms);
        break;
    case S_PROGRESS:
        c->status = STATUS_PROGRESS;
        emit_status(g, c, from, ms);
        break;
    case S_RESOLVE:
        c->status = STATUS_RESOLVED;
        emit_status(g, c, from, ms);
        break;
    case S_REOPEN:
        c->status = STATUS_OPEN;
        c->reopened = true;
        emit_status(g, c, from, ms);
        break;
    case S_CLOSE:
        c->status = STATUS_CLOSED;
        emit_status(g, c, from, ms);
        break;
    }
    int64_t at = plan(g, c, taken, now);
    if (at < 0)
        free(c);
    else
        agenda_push(&g->ag, at, c);
}

static void run(gen *g)
{
    g->t0_ns = clock_ns(CLOCK_MONOTONIC);
    emit_reference(g);
    agenda_push(&g->ag, g->start_ms, NULL);
    while (g->written < g->opt.events) {
        if (g->opt.until_now && g->ag.v[0].at > g->end_ms)
            break; /* the next step would lie in the future */
        agenda_item it = agenda_pop(&g->ag);
        if (it.c) {
            step(g, it.c, it.at);
            continue;
        }
        arrive(g, it.at);
        agenda_push(&g->ag, it.at + rnd_exp_ms(g, g->arrival_mean_ms), NULL);
    }
    drain(g);
    while (g->ag.n > 0) {
        agenda_item it = agenda_pop(&g->ag);
        free(it.c);
    }
    free(g->ag.v);
}

/* ---- options ------------------------------------------------------------------------------- */

static void usage(void)
{
    fputs("usage: bench-eventgen [--redis host:port] [--events N] [--tenants T] [--seed S]\n"
          "                      [--rate R [--duration S] | --until-now] [--imported]\n"
          "  --redis     Redis address (127.0.0.1:6379)\n"
          "  --events    stream entries to write, reference events included (1000000)\n"
          "  --tenants   tenants, 1..64 (3)\n"
          "  --seed      the simulation's seed: the same seed gives the same events (1)\n"
          "  --rate      events per second, paced and stamped with the wall clock (0: as fast\n"
          "              as possible, stamped with the simulated time)\n"
          "  --duration  seconds to run at --rate: sets --events to rate x duration\n"
          "  --until-now the simulated year ends now (not 2024-07-01 + 1 year); stops there,\n"
          "              so a little before --events entries\n"
          "  --imported  mark the events imported (recorded a day after the simulated year)\n",
          stderr);
    exit(2);
}

static double number(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi)
        die("%s: expected a number from %g to %g, got \"%s\"", opt, lo, hi, s ? s : "");
    return v;
}

static void parse(options *o, int argc, char **argv)
{
    *o = (options){ .host = "127.0.0.1", .port = 6379, .events = 1000000, .tenants = 3, .seed = 1 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--imported") == 0) {
            o->imported = true;
            continue;
        }
        if (strcmp(a, "--until-now") == 0) {
            o->until_now = true;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || !v)
            usage();
        i++;
        if (strcmp(a, "--redis") == 0) {
            static char host[256];
            const char *colon = strrchr(v, ':');
            if (!colon || colon == v || (size_t)(colon - v) >= sizeof(host))
                die("--redis: expected host:port, got \"%s\"", v);
            memcpy(host, v, (size_t)(colon - v));
            host[colon - v] = '\0';
            o->host = host;
            o->port = (int)number(a, colon + 1, 1, 65535);
        } else if (strcmp(a, "--events") == 0) {
            o->events = (long long)number(a, v, 1, 1e10);
        } else if (strcmp(a, "--tenants") == 0) {
            o->tenants = (int)number(a, v, 1, MAX_TENANTS);
        } else if (strcmp(a, "--seed") == 0) {
            o->seed = (uint64_t)number(a, v, 0, 1e18);
        } else if (strcmp(a, "--rate") == 0) {
            o->rate = number(a, v, 0, 1e7);
        } else if (strcmp(a, "--duration") == 0) {
            o->duration = number(a, v, 0, 1e6);
        } else {
            usage();
        }
    }
    if (o->until_now && o->rate > 0)
        die("--until-now and --rate exclude each other (--rate stamps with the wall clock)");
    if (o->duration > 0) {
        if (o->rate <= 0)
            die("--duration needs --rate");
        o->events = (long long)(o->rate * o->duration);
        if (o->events < 1)
            die("--rate x --duration is less than one event");
    }
}

int main(int argc, char **argv)
{
    static gen g;
    parse(&g.opt, argc, argv);
    g.rng = g.opt.seed;
    g.next_id = 1;
    double tenant_w[MAX_TENANTS], agent_w[NAGENTS];
    for (int t = 0; t < g.opt.tenants; t++)
        tenant_w[t] = 1.0 / (t + 1);
    for (int a = 0; a < NAGENTS; a++)
        agent_w[a] = 1.0 / (1.0 + 0.15 * a);
    cumulate(g.tenant_cum, tenant_w, g.opt.tenants);
    cumulate(g.category_cum, category_weights, NCATEGORIES);
    cumulate(g.priority_cum, priority_weights, NPRIORITIES);
    cumulate(g.agent_cum, agent_w, NAGENTS);
    g.start_ms = SIM_START_MS;
    if (g.opt.until_now)
        g.start_ms = clock_ns(CLOCK_REALTIME) / 1000000 - SIM_SPAN_MS;
    g.end_ms = g.start_ms + SIM_SPAN_MS;
    g.arrival_mean_ms = (int64_t)((double)SIM_SPAN_MS * EVENTS_PER_ONE / (double)g.opt.events);
    if (g.arrival_mean_ms < 1)
        g.arrival_mean_ms = 1;

    struct timeval tv = { 10, 0 };
    g.redis = redisConnectWithTimeout(g.opt.host, g.opt.port, tv);
    if (!g.redis || g.redis->err)
        die("cannot connect to %s:%d: %s", g.opt.host, g.opt.port,
            g.redis ? g.redis->errstr : "out of memory");
    redisSetTimeout(g.redis, tv);

    int64_t t0 = clock_ns(CLOCK_MONOTONIC);
    run(&g);
    double secs = (double)(clock_ns(CLOCK_MONOTONIC) - t0) / 1e9;
    char span[64] = "";
    if (g.opt.until_now) {
        char from[11], to[11];
        local_day(0, g.start_ms, from);
        local_day(0, g.end_ms, to);
        snprintf(span, sizeof(span), ", %s to %s (until now)", from, to);
    }
    printf("bench-eventgen: %lld events to %s:%d %s in %.2f s (%.0f events/s): %lld complaints; "
           "%lld created, %lld assigned, %lld status changes, %lld reference; seed %" PRIu64
           "%s%s\n",
           g.written, g.opt.host, g.opt.port, STREAM, secs, (double)g.written / secs, g.complaints,
           g.created, g.assigned, g.changed, g.reference, g.opt.seed,
           g.opt.imported ? ", imported" : "", span);
    redisFree(g.redis);
    return 0;
}
