/*
 * sim_world: the sample world of tally-sim, a pure and deterministic model (no I/O besides
 * reading the tenants' zoneinfo files once, through common/tz).
 *
 * A world is a list of tenants, each with an IANA time zone. A tenant's reference data (its
 * display name, its 8 to 12 categories ranked by how often they are used, its 20 to 40 agents
 * and how much work each gets) depends on the tenant id alone (and the agents' names on the
 * zone's continent), so every run of tally-sim, seed or live, whatever its --seed, names the
 * same categories and agents. What happens over time
 * depends on the seed as well: complaints arrive at a rate that grows gently over the window,
 * follows the tenant's local weekday and hour of day (busy on weekday business hours, quiet at
 * night and on weekends) and the retail year (a year-end peak), and jumps during two incidents
 * per tenant, each of which floods one category.
 *
 * Random numbers come from world_rng (xoshiro256** seeded through splitmix64): one stream per
 * purpose and key, so that any complaint can be generated on its own, in any thread, in any
 * order, and always comes out the same.
 *
 * Tests define tenants of their own (world_add_tenant): explicit category and agent ids (any
 * bytes, up to 64), their weights (0: never used) and names, any zone, and a mix of lives
 * (world_mix) that turns up what is rare in the realistic default (unassignments, no-op
 * re-assignments, instant resolutions, reopens, creation-time ties, lives left unfinished). The
 * default mix and the reference data of world_parse_tenants are exactly tally-sim's. Times may lie
 * anywhere, before 1970 too (negative ms): every division of a time floors.
 *
 * Local times come from common/tz (the system's zoneinfo files). A world is filled in place and
 * never copied by assignment (a tenant's categories may point into the tenant itself). Once
 * filled it is read only: every function here is thread-safe.
 */
#ifndef TALLY_SIM_WORLD_H
#define TALLY_SIM_WORLD_H

#include "tz.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WORLD_TENANTS_MAX    16
#define WORLD_CATEGORIES_MAX 12
#define WORLD_AGENTS_MAX     40
#define WORLD_INCIDENTS      2
#define WORLD_ID_MAX         64
#define WORLD_ZONE_MAX       64
#define WORLD_NAME_MAX       95
#define WORLD_DAY_MS         86400000LL
#define WORLD_HOUR_MS        3600000LL
#define WORLD_MINUTE_MS      60000LL

/* A random stream: xoshiro256**. */
typedef struct world_rng {
    uint64_t s[4];
} world_rng;

/* The stream for (a, b, c): distinct triples give independent streams. */
void world_rng_init(world_rng *r, uint64_t a, uint64_t b, uint64_t c);
uint64_t world_rng_next(world_rng *r);
/* Uniform in [0, 1). */
double world_rng_unit(world_rng *r);
/* Uniform integer in [0, n) (n >= 1). */
int world_rng_below(world_rng *r, int n);
/* Log-normal with the given median and sigma (of the underlying normal). */
double world_rng_lognormal(world_rng *r, double median, double sigma);
/* An index of cum, a cumulative weight table of n entries ending at 1.0. */
int world_rng_pick(world_rng *r, const double *cum, int n);

/* FNV-1a 64 of a string: the key of a tenant's random streams. */
uint64_t world_hash(const char *s);

/*
 * A category: its id and name, and the texts complaints of that kind are made of (the
 * catalogue's own, or generic ones for a category the caller defined).
 */
typedef struct world_category {
    char id[WORLD_ID_MAX + 1];
    char name[WORLD_NAME_MAX + 1];
    const char *titles[4];
    const char *details[3];
    const char *fixes[3]; /* notes of the resolution */
} world_category;

/* An incident: from start_ms the tenant's rate gains peak * exp(-(t - start) / tau). */
typedef struct world_incident {
    int64_t start_ms;
    double peak, tau_ms;
    int category; /* an index of the tenant's categories */
} world_incident;

/*
 * How the lives of a tenant's complaints go (gen_imported): the chances, per complaint, of what
 * a help desk does now and then. world_mix_default is tally-sim's realistic mix; a test turns
 * parts of it up. A chance of 0 draws no random number, so the default stream is unchanged.
 */
typedef struct world_mix {
    double reassign;   /* another agent takes over before the resolution (0.10) */
    double unassign;   /* handed back to the queue (agent ""), picked up by an agent later (0) */
    double same_agent; /* an assignment of the agent already assigned: a step, no event (0) */
    double resolved_reassign; /* assigned to another agent while RESOLVED, for the follow-up (0) */
    double instant;           /* assigned at creation and resolved within instant_ms (0) */
    int64_t instant_ms;       /* 1000: the instant resolutions have resolution_seconds 0 */
    double reopen_first;      /* reopened after the first resolution (0.05) */
    double reopen_again;      /* reopened once more after a reopen (0.15) */
    int reopens_max;          /* 3 */
    int ties; /* complaints per creation time: i is created when i - i % ties is (1) */
    /* nobody looks at it again from a random moment on (a median 6 h after the creation): the
     * same life, cut there, left open or resolved (0) */
    double abandon;
} world_mix;

extern const world_mix world_mix_default;

typedef struct world_tenant {
    char id[WORLD_ID_MAX + 1];
    char name[WORLD_NAME_MAX + 1];
    char zone[WORLD_ZONE_MAX + 1];
    uint64_t key;  /* world_hash(id) */
    double share;  /* of the complaints, by position in the list */
    int64_t count; /* complaints to seed (world_split) */

    /* cum: cumulative weights ending at 1.0; an entry as wide as its predecessor is never used */
    int ncategories;
    const world_category *categories[WORLD_CATEGORIES_MAX]; /* most used first */
    double category_cum[WORLD_CATEGORIES_MAX];
    world_category own[WORLD_CATEGORIES_MAX]; /* categories the caller defined point here */

    int nagents;
    char agent_ids[WORLD_AGENTS_MAX][WORLD_ID_MAX + 1];
    char agent_names[WORLD_AGENTS_MAX][WORLD_NAME_MAX + 1];
    double agent_cum[WORLD_AGENTS_MAX];

    world_mix mix; /* world_mix_default unless the caller changes it */

    /* The seed window (world_set_window): complaints are created in [start_ms, end_ms]. */
    int64_t start_ms, end_ms;
    world_incident incidents[WORLD_INCIDENTS];

    const tz_zone *tz; /* borrowed for the life of the process (tz_get) */
} world_tenant;

typedef struct world {
    int ntenants;
    world_tenant tenants[WORLD_TENANTS_MAX];
} world;

/*
 * Parses "id:Zone/Name,id:Zone/Name,..." (a missing zone is "UTC") into w, with each tenant's
 * reference data and time zone. 0, or -1 with the reason in err.
 */
int world_parse_tenants(world *w, const char *spec, char *err, size_t errlen);

/* A category or an agent the caller defines (world_tenant_def). */
typedef struct world_ref {
    const char *id;   /* 1 to WORLD_ID_MAX bytes, any but NUL ("Web", "web", "b.x", "b_x") */
    const char *name; /* NULL: derived from the id ("b-x" is "B x") */
    double weight;    /* relative frequency (categories) or workload (agents); 0: never used */
} world_ref;

/*
 * A tenant as the caller defines it. Borrowed for the call only: world_add_tenant copies every
 * string. Categories or agents left out (n 0) are world_parse_tenants's for the id.
 */
typedef struct world_tenant_def {
    const char *id;   /* a tenant id (ident_check) */
    const char *zone; /* an IANA zone; NULL: "UTC" */
    const char *name; /* NULL: as world_parse_tenants names it */
    const world_ref *categories;
    int ncategories; /* 0..WORLD_CATEGORIES_MAX */
    const world_ref *agents;
    int nagents; /* 0..WORLD_AGENTS_MAX */
} world_tenant_def;

/*
 * Appends the tenant d to w (zeroed by the caller, or filled by world_parse_tenants before),
 * with world_mix_default, and gives every tenant its share by position as world_parse_tenants
 * does. At least one category and one agent must have a weight above 0, ids must be distinct
 * within their kind. 0, or -1 with the reason in err (w unchanged).
 */
int world_add_tenant(world *w, const world_tenant_def *d, char *err, size_t errlen);

/* Sets the tenants' shares of the complaints to shares[0..ntenants) (relative, >= 0, not all 0). */
void world_set_shares(world *w, const double *shares);

/* Sets every tenant's mix of lives to *m (or set one tenant's t->mix). */
void world_set_mix(world *w, const world_mix *m);

/*
 * Splits total complaints between the tenants by their shares (50/30/20 for three); what the
 * rounding leaves goes to the first tenant with a share.
 */
void world_split(world *w, int64_t total);

/*
 * Sets t's seed window to the days days ending at end_ms (anywhere in time, before 1970 too),
 * and its incidents for seed.
 */
void world_set_window(world_tenant *t, uint64_t seed, int64_t end_ms, int days);

/* t's offset from UTC, in seconds east, at utc_ms. */
int64_t world_offset_s(const world_tenant *t, int64_t utc_ms);

/*
 * A creation time in t's window, drawn from the arrival rate. *incident is the index of a
 * tenant category when the complaint belongs to an incident, else -1.
 */
int64_t world_sample_time(const world_tenant *t, world_rng *r, int *incident);

/*
 * The first moment at or after ms when agents of t work (weekdays 08:00 to 18:00 local time),
 * plus a short random delay when ms was outside those hours.
 */
int64_t world_work_time(const world_tenant *t, int64_t ms, world_rng *r);

/*
 * An index of t's categories (by their frequencies) and of its agents (by their workloads): never
 * one of weight 0.
 */
int world_pick_category(const world_tenant *t, world_rng *r);
int world_pick_agent(const world_tenant *t, world_rng *r);

/* Whether t's agent (an index) ever works: its weight is above 0. */
bool world_agent_works(const world_tenant *t, int agent);

/* The index of t's agent whose id is id (a GetComplaint's assigned_agent_id), or -1. */
int world_agent_index(const world_tenant *t, const char *id);

#endif
