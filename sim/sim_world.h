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
 * Local times come from common/tz (the system's zoneinfo files). A parsed world is read only:
 * every function here is thread-safe.
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

/* One entry of the category catalogue: the texts complaints of that kind are made of. */
typedef struct world_category {
    const char *id, *name;
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

typedef struct world_tenant {
    char id[WORLD_ID_MAX + 1];
    char name[WORLD_ID_MAX + 32];
    char zone[WORLD_ZONE_MAX + 1];
    uint64_t key;  /* world_hash(id) */
    double share;  /* of the complaints, by position in the list */
    int64_t count; /* complaints to seed (world_split) */

    int ncategories;
    const world_category *categories[WORLD_CATEGORIES_MAX]; /* most used first */
    double category_cum[WORLD_CATEGORIES_MAX];

    int nagents;
    char agent_ids[WORLD_AGENTS_MAX][WORLD_ID_MAX + 1];
    char agent_names[WORLD_AGENTS_MAX][64];
    double agent_cum[WORLD_AGENTS_MAX];

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

/* Splits total complaints between the tenants by their shares (50/30/20 for three). */
void world_split(world *w, int64_t total);

/* Sets t's seed window to the days days ending at end_ms, and its incidents for seed. */
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

/* An index of t's categories (by their frequencies) and of its agents (by their workloads). */
int world_pick_category(const world_tenant *t, world_rng *r);
int world_pick_agent(const world_tenant *t, world_rng *r);

#endif
