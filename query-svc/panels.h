/*
 * panels: each dashboard panel as a plan (the Redis commands it needs, appended to the
 * request's one batch) and a build (the panel's message, from those commands' replies). The
 * keyspace they read is docs/keyspace.md; the request plumbing (tenant knowledge, freshness,
 * consistency tokens) is query.c's.
 */
#ifndef TALLY_PANELS_H
#define TALLY_PANELS_H

#include "read.h"
#include "tally/v1/dashboard.pb-c.h"
#include "tz.h"

#include <stdbool.h>
#include <stdint.h>

/* What a worker knows about a tenant: checked against every read that uses it. */
typedef struct tmeta {
    char tenant[72];
    char gen[24]; /* the current generation, "1" when {t:T}:gen is absent */
    char tz[80];  /* the tenant's time zone; "" = the tenant is not (yet) known */
    const tz_zone *zone;
    char **cats; /* category ids, sorted */
    size_t ncats;
    char **agents; /* agent ids, sorted */
    size_t nagents;
} tmeta;

/* One request: its memory, its batch, and what its panels share. */
typedef struct qreq {
    arena ar;
    rd_batch b;
    const tmeta *meta;
    char T[96];  /* "{t:<tenant>}:" */
    char P[128]; /* "{t:<tenant>}:<gen>:" */
    int64_t now_ms;
    int64_t today;           /* the tenant-local day number */
    size_t i_cats, i_agents; /* HGETALL P cats / P agents in this batch (names) */
    const char *oldest_sha;  /* the read script's SHA1 (EVALSHA_RO) */
} qreq;

/* Inclusive tenant-local day numbers. */
typedef struct qrange {
    int64_t from, to;
} qrange;

/* A parsed Filter: ids deduplicated, priorities 1..4 deduplicated and sorted. */
typedef struct qfilter {
    const char **cats;
    size_t ncats;
    int prios[4];
    size_t nprios;
} qfilter;

/*
 * Each panel: X_plan() appends its commands to q->b and returns its plan (in q->ar; NULL when
 * out of memory); X_build() makes the panel from the replies once the batch ran (NULL when out
 * of memory). Plans are made again when a read has to be repeated.
 */
typedef struct ov_plan ov_plan;
ov_plan *ov_plan_read(qreq *q, int limit);
Tally__V1__Overview *ov_build(qreq *q, const ov_plan *p);

typedef struct tr_plan tr_plan;
tr_plan *tr_plan_read(qreq *q, qrange r, int granularity, const qfilter *f);
Tally__V1__VolumeTrend *tr_build(qreq *q, const tr_plan *p);

typedef struct rs_plan rs_plan;
rs_plan *rs_plan_read(qreq *q, qrange r, int group_by, const qfilter *f);
Tally__V1__ResolutionStats *rs_build(qreq *q, const rs_plan *p);

typedef struct ag_plan ag_plan;
/* offset: where the page starts (from the page token; query.c checks the token first). */
ag_plan *ag_plan_read(qreq *q, qrange r, int sort_by, bool ascending, int limit, int64_t offset);
Tally__V1__AgentPerformance *ag_build(qreq *q, const ag_plan *p);
/*
 * Page tokens: "<offset>.<check>", where check binds the token to the range, sort and
 * direction. ag_token_offset: the offset, or -1 when the token is malformed or does not match.
 */
char *ag_token(arena *ar, qrange r, int sort_by, bool ascending, int64_t offset);
int64_t ag_token_offset(const char *token, qrange r, int sort_by, bool ascending);

typedef struct cd_plan cd_plan;
cd_plan *cd_plan_read(qreq *q, qrange r, const qfilter *f, int top_n);
Tally__V1__CategoryDistribution *cd_build(qreq *q, const cd_plan *p);

/* Nearest-rank percentile p (0..100) of a histogram of total count n. */
double panels_percentile(const int64_t *buckets, int nbuckets, int64_t n, double p);

/* The read script (oldest open complaints), loaded with SCRIPT LOAD. */
extern const char panels_oldest_lua[];

#endif
