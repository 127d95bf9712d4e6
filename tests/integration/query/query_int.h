/*
 * tally.v1.Dashboard end to end: query-svc over the read model that the real projector builds
 * from the events that the real command-svc writes and relays, checked against answers computed
 * independently with SQL over the PostgreSQL tables (complaints, status_history, events,
 * tenants, categories, agents).
 *
 * Each test runs a whole system of its own (tests/support/system.h: a fresh database, a private
 * redis-server, the three services), so the tests of the one binary test_query run in parallel.
 *
 * This header is the suite's inside, shared by its files (prefix tq_):
 * - suite.c: the system, the seed, the count of mismatches (tq_bad), the calls;
 * - oracle_sql.c: the SQL oracle, one check per panel;
 * - history.c: the tenants, their histories (the simulator's lives, sim/), today's live commands;
 * - requests.c: waiting for the read model, and the requests' ranges, filters and builders;
 * - the tests by behaviour: panels.c (every panel equals SQL), tokens.c (consistency tokens),
 *   stale.c (the projector stopped), validation.c, page_token.c, redis_down.c.
 *
 * - every_panel_equals_sql_over_random_histories: seeded random histories (TALLY_TEST_SEED
 *   repeats a run) of tenants in five time zones (-8, -3:30, +1, +5:45, +14) that share
 *   category and agent ids, imported with ImportComplaints over about 400 days (assignments,
 *   reassignments, unassignments, no-op assignments, IN_PROGRESS, resolutions, reopen cycles,
 *   closes, some left open, creation-time ties), live commands today, renames; then every
 *   panel over many ranges (the default, cut months, a new year, the future, a leap day,
 *   before 1970, the years 1000 and 9999, five years), granularities, groupings, sorts (paged
 *   3 by 3) and filters equals SQL: counts and means exactly, percentiles within the reply's
 *   stated relative error of PostgreSQL's percentile_disc; GetDashboard equals the single
 *   panels, also under 24 concurrent calls. A tenant with the same ids and no complaints sees
 *   only zeros, and a token of another tenant's complaint stays stale: tenants never see each
 *   other's numbers. One tenant has ids of the maximal 64 bytes.
 * - a_token_sees_its_commands_effect: a query carrying a command's consistency token (sent at
 *   once, fail_if_stale) answers with that command in (and with new categories and agents).
 * - with_the_projector_stopped_answers_say_how_stale: answers keep coming; events_applied is
 *   short of PostgreSQL's events, lag grows, a token for an unapplied version gives stale=true
 *   (within the token wait cap, also with a 30 s deadline) or FAILED_PRECONDITION with
 *   fail_if_stale; the projector back, all is fresh again.
 * - invalid_requests_name_the_field: each validation error's code and field, and the limits'
 *   largest valid values accepted (the largest request included).
 * - a_page_token_holds_on_a_query_svc_new_to_the_tenant: a next-page token from one query-svc
 *   is taken by a new one, in time zones whose day is not UTC's.
 * - redis_down_is_unavailable_quickly: UNAVAILABLE within 2 s, /readyz not 200.
 *
 * Every answer's freshness is checked too: events_applied and as_of_ms equal PostgreSQL's count
 * and newest recorded_at, lag_ms and apply_lag_ms are not negative.
 *
 * The SQL oracle: a resolution is a status_history row with to_status 3; its local day is
 * changed_at in the tenant's time zone; its time is floor((changed_at - created_at) in ms /
 * 1000) seconds (StatusChanged.resolution_seconds); it is credited to the agent of the latest
 * ComplaintAssigned event of the complaint before the resolution's version (decoded from the
 * event's payload by pg_temp.assigned_agent, VERIFY_SQL_ASSIGNED_AGENT of common/verify.h).
 */
#ifndef TALLY_TEST_QUERY_INT_H
#define TALLY_TEST_QUERY_INT_H

#include "calls.h"
#include "err.h"
#include "now.h"
#include "system.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/dashboard.pb-c.h"
#include "verify.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#define SEC  1000LL
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

#define DEADLINE_MS  10000
#define CATCH_UP_MS  120000
#define MAX_REPORTED 40 /* mismatches reported one by one; the rest are counted */
#define MS(x)        "(extract(epoch FROM " x ") * 1000)::bigint" /* as command-svc */
/* A resolution's time: floor((changed_at - created_at) in ms / 1000), both >= 0. */
#define RES_SECONDS "(" MS("h.changed_at") " - " MS("c.created_at") ") / 1000"
#define CREATED_MS  MS("created_at")
#define RECORDED_MS MS("recorded_at")

#define OPEN        TALLY__V1__STATUS__STATUS_OPEN
#define IN_PROGRESS TALLY__V1__STATUS__STATUS_IN_PROGRESS
#define RESOLVED    TALLY__V1__STATUS__STATUS_RESOLVED
#define CLOSED      TALLY__V1__STATUS__STATUS_CLOSED

#define LOW    TALLY__V1__PRIORITY__PRIORITY_LOW
#define MEDIUM TALLY__V1__PRIORITY__PRIORITY_MEDIUM
#define HIGH   TALLY__V1__PRIORITY__PRIORITY_HIGH
#define URGENT TALLY__V1__PRIORITY__PRIORITY_URGENT

#define G_DAY   TALLY__V1__GRANULARITY__GRANULARITY_DAY
#define G_WEEK  TALLY__V1__GRANULARITY__GRANULARITY_WEEK
#define G_MONTH TALLY__V1__GRANULARITY__GRANULARITY_MONTH

#define BY_NONE TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_NONE
#define BY_CAT  TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_CATEGORY
#define BY_PRIO TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_PRIORITY
#define BY_BOTH TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_CATEGORY_AND_PRIORITY

#define SORT_RESOLVED TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_RESOLVED
#define SORT_MEAN     TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_MEAN_RESOLUTION
#define SORT_OPEN     TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_OPEN_ASSIGNED
#define SORT_ID       TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_AGENT_ID

#define NTENANTS 5

/* A tenant: its id, time zone, categories and agents, and how many complaints it imports. */
typedef struct tdef {
    const char *id, *tz;
    const char *cats[8];
    const char *agents[12];
    int complaints;    /* imported complaints; 0: none at all (not even live ones) */
    const char *empty; /* a category that gets no complaint, or NULL */
} tdef;

/* A request's range of local days. */
typedef struct qrange {
    char from[11], to[11]; /* both "": the default */
} qrange;

/* A request's filter, with a name for messages. */
typedef struct flt {
    const char *name;
    const char *cats[4];
    size_t ncats;
    Tally__V1__Priority prios[4];
    size_t nprios;
} flt;

/* ---- suite.c: the state of the test running in this process -------------------------------- */

extern sys_system tq_sys;
extern uint64_t tq_seed;
extern int tq_nbad;       /* mismatches found so far */
extern int tq_ncalls;     /* Dashboard calls made */
extern bool tq_sql_dirty; /* a command ran since the SQL snapshot (cre_m, res_m) was taken */

/* Records a mismatch (the test fails) and reports the first MAX_REPORTED. */
void tq_bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The run's seed: TALLY_TEST_SEED, or a fresh one; printed so that a failure can be repeated. */
void tq_seed_rng(const char *test);
int64_t tq_rnd_below(int64_t n);
bool tq_near(double got, double want, double rel);

/*
 * A call that must succeed: the decoded reply (free with call_free), or NULL after recording the
 * failure as a mismatch.
 */
void *tq_call_ok(gc_client *c, const char *method, const ProtobufCMessage *msg,
                 const ProtobufCMessageDescriptor *reply, const char *what);
/* A command (to command-svc) that must succeed (asserted); it dirties the SQL snapshot. */
void *tq_cmd_ok(const char *method, const ProtobufCMessage *msg,
                const ProtobufCMessageDescriptor *reply);
/* A query that must fail with code (a mismatch if not); its status (details, seconds) into out. */
void tq_call_code(const char *what, const char *method, const ProtobufCMessage *msg,
                  int deadline_ms, int code, gc_status *out);
/* A query whose reply's code must be code and whose message must start with the field's path. */
void tq_expect_refusal(const char *what, const char *method, const ProtobufCMessage *msg, int code,
                       const char *field);

/* ---- oracle_sql.c: the answers computed with SQL, and the checks of each panel ------------- */

PGresult *tq_sql(const char *q, int n, const char *const *params);
/* The one value of a one-row query, into out. */
char *tq_sql_str(char *out, size_t len, const char *q, int n, const char *const *params);
int64_t tq_sql_int(const char *q, int n, const char *const *params);
int64_t tq_num(const PGresult *r, int row, int col);
/* The oracle's temporary views, in the suite's session (once per test). */
void tq_sql_setup(void);
/* Takes the snapshots again if a command ran since. */
void tq_sql_snapshot(void);
/* day + n days, by PostgreSQL. */
char *tq_day_add(char out[11], const char *day, int n);
int64_t tq_events_of(const char *tenant);
const char *tq_gran_name(int g);

/* Freshness once the projector caught up; with a token, its version applied and not stale. */
void tq_check_fresh_tok(const char *what, const char *tenant, const Tally__V1__Freshness *f,
                        const Tally__V1__ConsistencyToken *tok);
void tq_check_fresh(const char *what, const char *tenant, const Tally__V1__Freshness *f);
void tq_check_overview(const char *what, const char *tenant, int limit,
                       const Tally__V1__Overview *o, int64_t server_ms);
void tq_check_trend(const char *what, const char *tenant, const qrange *req, int gran, const flt *f,
                    const Tally__V1__VolumeTrend *t, int64_t server_ms);
void tq_check_stats(const char *what, const char *tenant, const qrange *req, int group_by,
                    const flt *f, const Tally__V1__ResolutionStats *s, int64_t server_ms);
Tally__V1__GetAgentPerformanceReply *tq_agents_page(const char *tenant, const qrange *r,
                                                    int sort_by, bool asc, int limit,
                                                    const char *token, const char *what);
void tq_check_agent_pages(const char *what, const char *tenant, const qrange *req, int sort_by,
                          bool asc, int limit, const Tally__V1__AgentPerformance *first,
                          int64_t server_ms);
void tq_check_distribution(const char *what, const char *tenant, const qrange *req, const flt *f,
                           int top_n, const Tally__V1__CategoryDistribution *d, int64_t server_ms);

/* ---- history.c: tenants, histories, live commands ------------------------------------------ */

extern const tdef tq_tenants[NTENANTS];
extern const tdef tq_solo; /* one tenant for the smaller tests */
size_t tq_ncats(const tdef *t);
/* PutTenant, PutCategory and PutAgent; names carry the tenant, so a leaked name would show. */
void tq_put_tenant(const tdef *t);
/* An agent of t that does work ("idle" never does), other than except (NULL: any). */
const char *tq_busy_agent(const tdef *t, const char *except);
int tq_pick_priority(void);
/* Imports t->complaints complaints of the simulator's seeded lives, in one batch. */
void tq_import_history(const tdef *t);
int64_t tq_create(const char *tenant, const char *category, int priority, int64_t *version);
/* Assigns (agent "" unassigns); returns the new version. */
int64_t tq_assign(const char *tenant, int64_t id, int64_t version, const char *agent);
int64_t tq_move(const char *tenant, int64_t id, int64_t version, int status);
/* A random complaint of the tenant matching cond (SQL over c); false when there is none. */
bool tq_pick(const char *tenant, const char *cond, int64_t *id, int64_t *version);
void tq_live_commands(const tdef *t);

/* ---- requests.c: waiting, and the requests ------------------------------------------------- */

Tally__V1__GetOverviewReply *tq_overview(const char *tenant, int limit,
                                         const Tally__V1__ConsistencyToken *token,
                                         bool fail_if_stale, const char *what);
/* The tenant's events_applied as query-svc says; -1 while the tenant is unknown to it. */
int64_t tq_events_applied(const char *tenant);
/* Waits until freshness.events_applied equals the tenant's rows in events. */
void tq_wait_caught_up(const char *tenant);

extern const flt F_CATS, F_PRIOS, F_BOTH, F_EMPTY;
Tally__V1__DateRange *tq_range_msg(Tally__V1__DateRange *m, const qrange *r, bool absent);
Tally__V1__Filter *tq_filter_msg(Tally__V1__Filter *m, const flt *f);

/* Request builders for the tenant "plain" (ids but no complaints, enough for the limits). */
extern const tdef tq_plain;
Tally__V1__DateRange *tq_days(const char *from, const char *to);
Tally__V1__GetVolumeTrendRequest tq_trend_req(Tally__V1__DateRange *r, int gran);
Tally__V1__GetResolutionStatsRequest tq_stats_req(Tally__V1__DateRange *r, int group_by);
Tally__V1__GetAgentPerformanceRequest tq_agents_req(Tally__V1__DateRange *r, int sort_by, int limit,
                                                    const char *token);
Tally__V1__GetCategoryDistributionRequest tq_dist_req(Tally__V1__DateRange *r, int top_n);
Tally__V1__GetDashboardRequest tq_dash_req(Tally__V1__DateRange *r, int gran);
Tally__V1__Filter *tq_filter_of(size_t ncats, const char *const *cats, size_t nprios,
                                Tally__V1__Priority *prios);

#endif
