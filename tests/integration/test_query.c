/*
 * tally.v1.Dashboard end to end: query-svc over the read model that the real projector builds
 * from the events that the real command-svc writes and relays, checked against answers computed
 * independently with SQL over the PostgreSQL tables (complaints, status_history, events,
 * tenants, categories, agents).
 *
 * Each test runs a whole system of its own (tests/support/system.h: a fresh database, a private
 * redis-server, the three services), so the tests of this file run in parallel.
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
 *   or FAILED_PRECONDITION with fail_if_stale; the projector back, all is fresh again.
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
#include "err.h"
#include "system.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/dashboard.pb-c.h"
#include "verify.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEC  1000LL
#define MIN  (60 * SEC)
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

#define DEADLINE_MS  10000
#define CATCH_UP_MS  120000
#define MAX_REPORTED 40 /* mismatches reported one by one; the rest are counted */
#define STEPS_MAX    40
#define MS(x)        "(extract(epoch FROM " x ") * 1000)::bigint" /* as command-svc */
/* A resolution's time: floor((changed_at - created_at) in ms / 1000), both >= 0. */
#define RES_SECONDS "(" MS("h.changed_at") " - " MS("c.created_at") ") / 1000"
#define CREATED_MS  MS("created_at")
#define RECORDED_MS MS("recorded_at")

#define OK                  0
#define INVALID_ARGUMENT    3
#define NOT_FOUND           5
#define FAILED_PRECONDITION 9
#define UNAVAILABLE         14

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

#define CMD(m)  "/tally.v1.ComplaintCommands/" m
#define DASH(m) "/tally.v1.Dashboard/" m

static sys_system S;
static bool up;
static uint64_t seed, rng;
static int nbad;       /* mismatches found so far */
static int ncalls;     /* Dashboard calls made */
static bool sql_dirty; /* a command ran since the SQL snapshot (cre_m, res_m) was taken */

/* ---- mismatches, randomness ---------------------------------------------------------------- */

/* Records a mismatch (the test fails) and reports the first MAX_REPORTED. */
static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (++nbad <= MAX_REPORTED)
        cr_expect_fail("%s [seed %" PRIu64 "]", msg, seed);
    else if (nbad <= 20 * MAX_REPORTED)
        fprintf(stderr, "test_query: mismatch: %s\n", msg);
}

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int64_t rnd_below(int64_t n)
{
    return n > 0 ? (int64_t)(rnd() % (uint64_t)n) : 0;
}

static double rnd01(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

/* The run's seed: TALLY_TEST_SEED, or a fresh one; printed so that a failure can be repeated. */
static void seed_rng(const char *test)
{
    const char *env = getenv("TALLY_TEST_SEED");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed = env && env[0]
               ? strtoull(env, NULL, 10)
               : ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid());
    rng = seed;
    fprintf(stderr, "test_query %s: seed %" PRIu64 " (TALLY_TEST_SEED=%" PRIu64 " repeats it)\n",
            test, seed, seed);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool near(double got, double want, double rel)
{
    return fabs(got - want) <= rel * fabs(want) + 1e-9;
}

/* ---- SQL ----------------------------------------------------------------------------------- */

static PGresult *sql(const char *q, int n, const char *const *params)
{
    PGresult *r = PQexecParams(S.pg, q, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", q,
              PQresultErrorMessage(r));
    return r;
}

static void sql_exec(const char *q)
{
    PQclear(sql(q, 0, NULL));
}

/* The one value of a one-row query, into out. */
static char *sql_str(char *out, size_t len, const char *q, int n, const char *const *params)
{
    PGresult *r = sql(q, n, params);
    cr_assert_eq(PQntuples(r), 1, "%s: %d rows", q, PQntuples(r));
    snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

static int64_t sql_int(const char *q, int n, const char *const *params)
{
    char v[64];
    return strtoll(sql_str(v, sizeof(v), q, n, params), NULL, 10);
}

static int64_t num(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/*
 * The oracle's building blocks, in this session only (pg_temp). cre: complaints with their
 * local day of creation. res: resolutions (see the file comment). cre_m and res_m are
 * snapshots of them (sql_snapshot), so that the many panel queries do not recompute the agent
 * of every resolution.
 */
static const char *const oracle_sql[] = {
    /* pg_temp.assigned_agent(payload): the agent of a ComplaintAssigned (shared with verify) */
    VERIFY_SQL_ASSIGNED_AGENT,
    "CREATE TEMP VIEW cre AS"
    " SELECT c.tenant_id, c.complaint_id, c.category_id, c.priority,"
    " (c.created_at AT TIME ZONE t.time_zone)::date AS day"
    " FROM complaints c JOIN tenants t ON t.tenant_id = c.tenant_id",
    "CREATE TEMP VIEW res AS"
    " SELECT h.tenant_id, h.complaint_id, h.version, c.category_id, c.priority,"
    " (h.changed_at AT TIME ZONE t.time_zone)::date AS day, " RES_SECONDS " AS secs,"
    " coalesce((SELECT pg_temp.assigned_agent(e.payload) FROM events e"
    "  WHERE e.complaint_id = h.complaint_id AND e.type = 2 AND e.version < h.version"
    "  ORDER BY e.version DESC LIMIT 1), '') AS agent"
    " FROM status_history h JOIN complaints c ON c.complaint_id = h.complaint_id"
    " JOIN tenants t ON t.tenant_id = h.tenant_id WHERE h.to_status = 3",
};

static void sql_setup(void)
{
    for (size_t i = 0; i < sizeof(oracle_sql) / sizeof(oracle_sql[0]); i++)
        sql_exec(oracle_sql[i]);
    sql_dirty = true;
}

/* Takes the snapshots again if a command ran since. */
static void sql_snapshot(void)
{
    if (!sql_dirty)
        return;
    sql_exec("DROP TABLE IF EXISTS cre_m, res_m");
    sql_exec("CREATE TEMP TABLE cre_m AS SELECT * FROM cre");
    sql_exec("CREATE TEMP TABLE res_m AS SELECT * FROM res");
    sql_exec("ANALYZE cre_m, res_m");
    sql_dirty = false;
}

/* day + n days, by PostgreSQL. */
static char *day_add(char out[11], const char *day, int n)
{
    char nb[16];
    snprintf(nb, sizeof(nb), "%d", n);
    const char *p[] = { day, nb };
    return sql_str(out, 11, "SELECT ($1::date + $2::int)::text", 2, p);
}

/* The tenant-local day of a Unix ms time. */
static char *local_day(char out[11], const char *tenant, int64_t ms)
{
    char mb[24];
    snprintf(mb, sizeof(mb), "%" PRId64, ms);
    const char *p[] = { tenant, mb };
    return sql_str(out, 11,
                   "SELECT (to_timestamp($2::bigint / 1000.0) AT TIME ZONE time_zone)::date::text"
                   " FROM tenants WHERE tenant_id = $1",
                   2, p);
}

static int64_t events_of(const char *tenant)
{
    const char *p[] = { tenant };
    return sql_int("SELECT count(*) FROM events WHERE tenant_id = $1", 1, p);
}

/* ---- calls ---------------------------------------------------------------------------------- */

/*
 * A call that must succeed: the decoded reply (free with free_msg), or NULL after recording the
 * failure as a mismatch.
 */
static void *call_ok(gc_client *c, const char *method, const ProtobufCMessage *msg,
                     const ProtobufCMessageDescriptor *reply, const char *what)
{
    gc_result r;
    cr_assert_eq(gc_call(c, method, msg, NULL, DEADLINE_MS, &r), 0, "%s did not start", method);
    ncalls++;
    if (r.code != OK) {
        bad("%s: %s gave %s \"%s\"", what, method, tally_grpc_code_name(r.code), r.details);
        gc_result_release(&r);
        return NULL;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(reply, NULL, r.len, r.data);
    gc_result_release(&r);
    if (!m)
        bad("%s: the reply of %s does not decode", what, method);
    return m;
}

static void free_msg(void *m)
{
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
}

/* A command (to command-svc) that must succeed; it dirties the SQL snapshot. */
static void *cmd_ok(const char *method, const ProtobufCMessage *msg,
                    const ProtobufCMessageDescriptor *reply)
{
    gc_result r;
    cr_assert_eq(gc_call(S.cmd, method, msg, NULL, 60000, &r), 0, "%s did not start", method);
    cr_assert_eq(r.code, OK, "%s: %s \"%s\"", method, tally_grpc_code_name(r.code), r.details);
    ProtobufCMessage *m = protobuf_c_message_unpack(reply, NULL, r.len, r.data);
    cr_assert(m, "%s: the reply does not decode", method);
    gc_result_release(&r);
    sql_dirty = true;
    return m;
}

/* The reply's code must be code and its message must start with the field's path. */
static void expect_refusal(const char *what, const char *method, const ProtobufCMessage *msg,
                           int code, const char *field)
{
    gc_result r;
    cr_assert_eq(gc_call(S.q, method, msg, NULL, DEADLINE_MS, &r), 0, "%s did not start", method);
    gc_result_release(&r);
    if (r.code != code) {
        bad("%s: %s gave %s \"%s\", want %s naming %s", what, method, tally_grpc_code_name(r.code),
            r.details, tally_grpc_code_name(code), field);
        return;
    }
    size_t n = strlen(field);
    char next = r.details[n];
    if (strncmp(r.details, field, n) != 0 || (next != ':' && next != '.' && next != '['))
        bad("%s: %s's message \"%s\" does not start with the field %s", what, method, r.details,
            field);
}

/* ---- tenants and their histories ------------------------------------------------------------ */

typedef struct tdef {
    const char *id, *tz;
    const char *cats[8];
    const char *agents[12];
    int complaints;    /* imported complaints; 0: none at all (not even live ones) */
    const char *empty; /* a category that gets no complaint, or NULL */
} tdef;

/* Ids shared between tenants (so a leak would show), byte order unlike any collation's. */
static const tdef tenants[] = {
    { "acme",
      "America/Los_Angeles",
      { "billing", "delivery", "quality", "returns", "Web", "web", "x-misc" },
      { "a01", "a02", "a03", "a04", "a05", "Zed", "b-x", "b.x", "b_x", "idle" },
      300,
      "x-misc" },
    { "globex",
      "Asia/Kathmandu",
      { "billing", "delivery", "quality", "web", "x-misc" },
      { "a01", "a02", "a03", "a04", "a05", "idle" },
      240,
      NULL },
    { "initech",
      "Pacific/Kiritimati",
      { "billing", "delivery", "returns", "Web", "quality", "x-misc" },
      { "a03", "a04", "a05", "Zed", "b-x", "b.x", "b_x", "idle" },
      260,
      "returns" },
    { "umbrella",
      "Europe/Berlin",
      { "billing", "delivery", "quality", "returns", "Web", "web", "x-misc" },
      { "a01", "a02", "Zed", "b.x", "idle" },
      200,
      NULL },
    { "hollow",
      "UTC",
      { "billing", "delivery", "quality", "returns", "Web", "web", "x-misc" },
      { "a01", "a02", "a03", "a04", "a05", "Zed", "b-x", "b.x", "b_x", "idle" },
      0,
      NULL },
};
#define NTENANTS (sizeof(tenants) / sizeof(tenants[0]))

static size_t ncats(const tdef *t)
{
    size_t n = 0;
    while (n < 8 && t->cats[n])
        n++;
    return n;
}

static size_t nagents(const tdef *t)
{
    size_t n = 0;
    while (n < 12 && t->agents[n])
        n++;
    return n;
}

/* PutTenant, PutCategory and PutAgent; names carry the tenant, so a leaked name would show. */
static void put_tenant(const tdef *t)
{
    char name[128];
    Tally__V1__PutTenantRequest pt = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    pt.tenant_id = (char *)t->id;
    pt.name = (char *)t->id;
    pt.time_zone = (char *)t->tz;
    free_msg(cmd_ok(CMD("PutTenant"), &pt.base, &tally__v1__put_tenant_reply__descriptor));
    for (size_t i = 0; i < ncats(t); i++) {
        Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        snprintf(name, sizeof(name), "%s of %s", t->cats[i], t->id);
        pc.tenant_id = (char *)t->id;
        pc.category_id = (char *)t->cats[i];
        pc.name = name;
        free_msg(cmd_ok(CMD("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor));
    }
    for (size_t i = 0; i < nagents(t); i++) {
        Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
        snprintf(name, sizeof(name), "agent %s of %s", t->agents[i], t->id);
        pa.tenant_id = (char *)t->id;
        pa.agent_id = (char *)t->agents[i];
        pa.name = name;
        free_msg(cmd_ok(CMD("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor));
    }
}

/* One ImportedComplaint with room for its steps. */
typedef struct entry {
    Tally__V1__ImportedComplaint c;
    Tally__V1__ImportedStep steps[STEPS_MAX];
    Tally__V1__ImportedStep *ptrs[STEPS_MAX];
    Tally__V1__ImportedAssignment assign[STEPS_MAX];
    Tally__V1__ImportedStatusChange move[STEPS_MAX];
    char key[32], customer[32];
} entry;

static Tally__V1__ImportedStep *next_step(entry *x, int64_t at_ms)
{
    size_t i = x->c.n_history++;
    cr_assert_lt(i, STEPS_MAX);
    tally__v1__imported_step__init(&x->steps[i]);
    x->steps[i].at_ms = at_ms;
    x->ptrs[i] = &x->steps[i];
    return &x->steps[i];
}

static void add_assign(entry *x, int64_t at_ms, const char *agent)
{
    Tally__V1__ImportedStep *s = next_step(x, at_ms);
    Tally__V1__ImportedAssignment *a = &x->assign[x->c.n_history - 1];
    tally__v1__imported_assignment__init(a);
    a->agent_id = (char *)agent;
    s->change_case = TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT;
    s->assignment = a;
}

static void add_move(entry *x, int64_t at_ms, int status)
{
    Tally__V1__ImportedStep *s = next_step(x, at_ms);
    Tally__V1__ImportedStatusChange *m = &x->move[x->c.n_history - 1];
    tally__v1__imported_status_change__init(m);
    m->status = (Tally__V1__Status)status;
    m->actor = "legacy-import";
    m->note = "";
    s->change_case = TALLY__V1__IMPORTED_STEP__CHANGE_STATUS_CHANGE;
    s->status_change = m;
}

/* An agent of t that does work ("idle" never does), other than except (NULL: any). */
static const char *busy_agent(const tdef *t, const char *except)
{
    size_t n = nagents(t);
    for (;;) {
        const char *a = t->agents[rnd_below((int64_t)n)];
        if (strcmp(a, "idle") != 0 && (!except || strcmp(a, except) != 0))
            return a;
    }
}

static int64_t pick_gap(void)
{
    double u = rnd01();
    if (u < 0.25)
        return rnd_below(1000); /* within the second: a 0 s resolution */
    if (u < 0.6)
        return MIN + rnd_below(6 * HOUR);
    return 6 * HOUR + rnd_below(12 * DAY);
}

/*
 * A history from created on: assignments (new, re-, un-, and no-op), IN_PROGRESS, RESOLVED,
 * reopen (RESOLVED -> OPEN), CLOSED; it may stop anywhere, and never goes past horizon.
 */
static void gen_history(entry *x, const tdef *t, int64_t created, int64_t horizon)
{
    int status = OPEN;
    const char *agent = "";
    int64_t at = created;
    while (x->c.n_history < STEPS_MAX - 1 && status != CLOSED) {
        int64_t gap = pick_gap();
        if (at + gap > horizon)
            return;
        at += gap;
        double u = rnd01();
        bool assignment = false;
        if (status == OPEN || status == IN_PROGRESS) {
            if (u < 0.06)
                return; /* stays open */
            if (u < 0.36)
                assignment = true;
            else if (u < 0.55 && status == OPEN)
                add_move(x, at, status = IN_PROGRESS);
            else
                add_move(x, at, status = RESOLVED);
        } else { /* RESOLVED */
            if (u < 0.12)
                return; /* stays resolved */
            if (u < 0.45)
                add_move(x, at, status = OPEN);
            else if (u < 0.55)
                assignment = true;
            else
                add_move(x, at, status = CLOSED);
        }
        if (assignment) {
            double v = rnd01();
            if (!agent[0] || v < 0.6)
                agent = busy_agent(t, agent);
            else if (v < 0.85)
                agent = "";
            /* else the same agent again: a no-op that writes nothing */
            add_assign(x, at, agent);
        }
    }
}

static const char *pick_category(const tdef *t, const int *weight)
{
    int total = 0;
    for (size_t i = 0; i < ncats(t); i++)
        total += weight[i];
    int64_t u = rnd_below(total);
    for (size_t i = 0; i < ncats(t); i++)
        if ((u -= weight[i]) < 0)
            return t->cats[i];
    return t->cats[0];
}

static int pick_priority(void)
{
    static const int p[] = { LOW, LOW, LOW, MEDIUM, MEDIUM, MEDIUM, MEDIUM, HIGH, HIGH, URGENT };
    return p[rnd_below(10)];
}

/*
 * Imports t->complaints complaints created up to about 400 days ago (most in the last 120,
 * some in the last day), in one batch. Two groups of three (entries 8-10 and 97-99; for the
 * first tenant imported into the fresh database they are ids 9-11 and 98-100, and "10" < "9" as
 * strings) share a creation time and stay open, to test the order of ties in the backlog list.
 */
static void import_history(const tdef *t)
{
    int n = t->complaints;
    int weight[8];
    int64_t now = wall_ms(), horizon = now - 2 * MIN;
    entry *x = calloc((size_t)n, sizeof(entry));
    Tally__V1__ImportedComplaint **ptrs = calloc((size_t)n, sizeof(*ptrs));
    cr_assert(x && ptrs);
    for (size_t i = 0; i < ncats(t); i++)
        weight[i] = t->empty && strcmp(t->cats[i], t->empty) == 0 ? 0 : 1 + (int)rnd_below(9);
    for (int i = 0; i < n; i++) {
        entry *e = &x[i];
        tally__v1__imported_complaint__init(&e->c);
        snprintf(e->key, sizeof(e->key), "imp-%d", i);
        snprintf(e->customer, sizeof(e->customer), "cust-%d", (int)rnd_below(50));
        e->c.idempotency_key = e->key;
        e->c.category_id = (char *)pick_category(t, weight);
        e->c.priority = (Tally__V1__Priority)pick_priority();
        e->c.title = "It does not work";
        e->c.description = "";
        e->c.customer_id = e->customer;
        e->c.history = e->ptrs;
        double u = rnd01();
        int64_t created = u < 0.05   ? now - 30 * MIN - rnd_below(20 * HOUR)
                          : u < 0.15 ? now - 120 * DAY - rnd_below(275 * DAY)
                                     : now - HOUR - rnd_below(119 * DAY);
        bool tie = (i >= 8 && i <= 10) || (i >= 97 && i <= 99);
        if (tie) {
            created = now - (i < 50 ? 118 : 117) * DAY + 777;
            if (i == 10 || i == 99) {
                add_assign(e, created + HOUR, busy_agent(t, NULL));
                add_move(e, created + 2 * HOUR, IN_PROGRESS);
            }
        }
        e->c.created_at_ms = created;
        if (!tie)
            gen_history(e, t, created, horizon);
        ptrs[i] = &e->c;
    }
    Tally__V1__ImportComplaintsRequest req = TALLY__V1__IMPORT_COMPLAINTS_REQUEST__INIT;
    req.tenant_id = (char *)t->id;
    req.n_complaints = (size_t)n;
    req.complaints = ptrs;
    Tally__V1__ImportComplaintsReply *rep =
        cmd_ok(CMD("ImportComplaints"), &req.base, &tally__v1__import_complaints_reply__descriptor);
    cr_assert_eq(rep->imported, n);
    free_msg(rep);
    free(ptrs);
    free(x);
}

/* ---- live commands -------------------------------------------------------------------------- */

static int64_t create(const char *tenant, const char *category, int priority, int64_t *version)
{
    static int n;
    char key[48];
    snprintf(key, sizeof(key), "live-%d-%d", (int)getpid(), ++n);
    Tally__V1__CreateComplaintRequest r = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.idempotency_key = key;
    r.category_id = (char *)category;
    r.priority = (Tally__V1__Priority)priority;
    r.title = "Live one";
    r.customer_id = "cust-live";
    Tally__V1__CreateComplaintReply *rep =
        cmd_ok(CMD("CreateComplaint"), &r.base, &tally__v1__create_complaint_reply__descriptor);
    int64_t id = rep->complaint_id;
    *version = rep->version;
    free_msg(rep);
    return id;
}

/* Assigns (agent "" unassigns); returns the new version. */
static int64_t assign(const char *tenant, int64_t id, int64_t version, const char *agent)
{
    Tally__V1__AssignComplaintRequest r = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.complaint_id = id;
    r.agent_id = (char *)agent;
    r.expected_version = version;
    Tally__V1__AssignComplaintReply *rep =
        cmd_ok(CMD("AssignComplaint"), &r.base, &tally__v1__assign_complaint_reply__descriptor);
    int64_t v = rep->version;
    free_msg(rep);
    return v;
}

static int64_t move(const char *tenant, int64_t id, int64_t version, int status)
{
    Tally__V1__ChangeStatusRequest r = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.complaint_id = id;
    r.status = (Tally__V1__Status)status;
    r.expected_version = version;
    r.actor = "live-agent";
    r.note = "";
    Tally__V1__ChangeStatusReply *rep =
        cmd_ok(CMD("ChangeStatus"), &r.base, &tally__v1__change_status_reply__descriptor);
    int64_t v = rep->version;
    free_msg(rep);
    return v;
}

/* A random complaint of the tenant matching cond (SQL over c); false when there is none. */
static bool pick(const char *tenant, const char *cond, int64_t *id, int64_t *version)
{
    char q[512];
    const char *p[] = { tenant };
    snprintf(q, sizeof(q),
             "SELECT complaint_id, version FROM complaints c WHERE tenant_id = $1 AND %s"
             " ORDER BY complaint_id",
             cond);
    PGresult *r = sql(q, 1, p);
    int n = PQntuples(r);
    if (n > 0) {
        int i = (int)rnd_below(n);
        *id = num(r, i, 0);
        *version = num(r, i, 1);
    }
    PQclear(r);
    return n > 0;
}

/*
 * Today's commands: creations, assignments, a reassignment, an unassignment, IN_PROGRESS,
 * resolutions (of a new complaint, of an old open one, of a reopened one), a close.
 */
static void live_commands(const tdef *t)
{
    int64_t id[3], v[3], c, cv;
    const char *first = busy_agent(t, NULL);
    for (int i = 0; i < 3; i++)
        id[i] = create(t->id, t->cats[rnd_below((int64_t)ncats(t))], pick_priority(), &v[i]);
    v[0] = assign(t->id, id[0], v[0], first);
    v[1] = assign(t->id, id[1], v[1], busy_agent(t, NULL));
    v[0] = assign(t->id, id[0], v[0], busy_agent(t, first));
    v[0] = move(t->id, id[0], v[0], IN_PROGRESS);
    v[0] = move(t->id, id[0], v[0], RESOLVED);
    v[1] = assign(t->id, id[1], v[1], "");
    if (pick(t->id, "status IN (1, 2) AND idempotency_key LIKE 'imp-%'", &c, &cv)) {
        cv = assign(t->id, c, cv, busy_agent(t, NULL));
        move(t->id, c, cv, RESOLVED);
    }
    if (pick(t->id, "status = 3", &c, &cv)) {
        cv = move(t->id, c, cv, OPEN);
        move(t->id, c, cv, RESOLVED);
    }
    if (pick(t->id, "status = 3", &c, &cv))
        move(t->id, c, cv, CLOSED);
    if (pick(t->id, "status = 1 AND assigned_agent_id IS NULL", &c, &cv))
        move(t->id, c, cv, IN_PROGRESS);
}

/* ---- waiting for the read model ------------------------------------------------------------- */

static Tally__V1__GetOverviewReply *overview(const char *tenant, int limit,
                                             const Tally__V1__ConsistencyToken *token,
                                             bool fail_if_stale, const char *what)
{
    Tally__V1__GetOverviewRequest r = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.oldest_open_limit = limit;
    r.consistency = (Tally__V1__ConsistencyToken *)token;
    r.fail_if_stale = fail_if_stale;
    return call_ok(S.q, DASH("GetOverview"), &r.base, &tally__v1__get_overview_reply__descriptor,
                   what);
}

/* The tenant's events_applied as query-svc says; -1 while the tenant is unknown to it. */
static int64_t events_applied(const char *tenant)
{
    Tally__V1__GetOverviewRequest r = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    gc_result res;
    r.tenant_id = (char *)tenant;
    cr_assert_eq(gc_call(S.q, DASH("GetOverview"), &r.base, NULL, DEADLINE_MS, &res), 0);
    int64_t n = -1;
    if (res.code == OK) {
        Tally__V1__GetOverviewReply *rep =
            tally__v1__get_overview_reply__unpack(NULL, res.len, res.data);
        cr_assert(rep && rep->freshness);
        n = rep->freshness->events_applied;
        tally__v1__get_overview_reply__free_unpacked(rep, NULL);
    } else {
        cr_assert_eq(res.code, NOT_FOUND, "GetOverview while waiting: %s \"%s\"",
                     tally_grpc_code_name(res.code), res.details);
    }
    gc_result_release(&res);
    return n;
}

/* Waits until freshness.events_applied equals the tenant's rows in events. */
static void wait_caught_up(const char *tenant)
{
    int64_t want = events_of(tenant), got = -1;
    for (int64_t until = sys_mono_ms() + CATCH_UP_MS; sys_mono_ms() < until; sys_sleep_ms(50)) {
        if ((got = events_applied(tenant)) == want)
            return;
        cr_assert(S.projector_on && proc_wait(&S.projector, 0) == -1, "the projector died");
    }
    cr_assert_fail("tenant %s: events_applied is %" PRId64 " after %d ms, PostgreSQL has %" PRId64
                   " events",
                   tenant, got, CATCH_UP_MS, want);
}

/* ---- requests' options ---------------------------------------------------------------------- */

typedef struct qrange {
    char from[11], to[11]; /* both "": the default */
} qrange;

typedef struct flt {
    const char *name;
    const char *cats[4];
    size_t ncats;
    Tally__V1__Priority prios[4];
    size_t nprios;
} flt;

static const flt F_CATS = {
    "categories billing,web,nope,billing", { "billing", "web", "nope", "billing" }, 4, { 0 }, 0
};
static const flt F_PRIOS = { "priorities URGENT,LOW,LOW", { NULL }, 0, { URGENT, LOW, LOW }, 3 };
static const flt F_BOTH = { "categories delivery,Web and priorities MEDIUM,HIGH",
                            { "delivery", "Web" },
                            2,
                            { MEDIUM, HIGH },
                            2 };
static const flt F_EMPTY = { "an empty filter", { NULL }, 0, { 0 }, 0 };

static Tally__V1__DateRange *range_msg(Tally__V1__DateRange *m, const qrange *r, bool absent)
{
    if (absent && !r->from[0])
        return NULL;
    tally__v1__date_range__init(m);
    m->from_day = (char *)r->from;
    m->to_day = (char *)r->to;
    return m;
}

static Tally__V1__Filter *filter_msg(Tally__V1__Filter *m, const flt *f)
{
    if (!f)
        return NULL;
    tally__v1__filter__init(m);
    m->n_category_ids = f->ncats;
    m->category_ids = (char **)f->cats;
    m->n_priorities = f->nprios;
    m->priorities = (Tally__V1__Priority *)f->prios;
    return m;
}

/* The filter as SQL array parameters (NULL = all). */
typedef struct fparams {
    char cats[256], prios[32];
    const char *c, *p;
} fparams;

static void filter_params(const flt *f, fparams *fp)
{
    size_t n = 0;
    fp->c = fp->p = NULL;
    if (f && f->ncats) {
        n = (size_t)snprintf(fp->cats, sizeof(fp->cats), "{");
        for (size_t i = 0; i < f->ncats; i++)
            n += (size_t)snprintf(fp->cats + n, sizeof(fp->cats) - n, "%s\"%s\"", i ? "," : "",
                                  f->cats[i]);
        snprintf(fp->cats + n, sizeof(fp->cats) - n, "}");
        fp->c = fp->cats;
    }
    if (f && f->nprios) {
        n = (size_t)snprintf(fp->prios, sizeof(fp->prios), "{");
        for (size_t i = 0; i < f->nprios; i++)
            n += (size_t)snprintf(fp->prios + n, sizeof(fp->prios) - n, "%s%d", i ? "," : "",
                                  (int)f->prios[i]);
        snprintf(fp->prios + n, sizeof(fp->prios) - n, "}");
        fp->p = fp->prios;
    }
}

#define FILTER_SQL                                             \
    " ($2::text[] IS NULL OR x.category_id = ANY($2::text[]))" \
    " AND ($3::int[] IS NULL OR x.priority = ANY($3::int[]))"

/* The range a request means: r itself, or the 30 days ending on the reply's local today. */
static void resolve_range(const char *tenant, const qrange *r, int64_t server_ms, qrange *out)
{
    if (r->from[0] || r->to[0]) {
        *out = *r;
        return;
    }
    local_day(out->to, tenant, server_ms);
    day_add(out->from, out->to, -29);
}

/* Whether the reply's range is the one asked for (when not, the panel's numbers are not
   compared: they are another range's). */
static bool check_range(const char *what, const Tally__V1__DateRange *got, const qrange *want)
{
    if (!got) {
        bad("%s: no range in the reply", what);
        return false;
    }
    if (strcmp(got->from_day, want->from) != 0 || strcmp(got->to_day, want->to) != 0) {
        bad("%s: range %s..%s, want %s..%s", what, got->from_day, got->to_day, want->from,
            want->to);
        return false;
    }
    return true;
}

/* ---- the oracle per panel ------------------------------------------------------------------- */

/*
 * Freshness once the projector caught up with everything; with a token (of the last command),
 * its version applied and not stale.
 */
static void check_fresh_tok(const char *what, const char *tenant, const Tally__V1__Freshness *f,
                            const Tally__V1__ConsistencyToken *tok)
{
    const char *p[] = { tenant };
    if (!f) {
        bad("%s: no freshness", what);
        return;
    }
    PGresult *r = sql("SELECT count(*), coalesce(max(" RECORDED_MS "), 0) FROM events"
                      " WHERE tenant_id = $1",
                      1, p);
    int64_t n = num(r, 0, 0), as_of = num(r, 0, 1);
    PQclear(r);
    if (f->events_applied != n)
        bad("%s: freshness.events_applied %" PRId64 ", PostgreSQL has %" PRId64 " events", what,
            f->events_applied, n);
    if (f->as_of_ms != as_of)
        bad("%s: freshness.as_of_ms %" PRId64 ", the newest recorded_at is %" PRId64, what,
            f->as_of_ms, as_of);
    if (f->as_of_ms > f->server_time_ms)
        bad("%s: freshness.as_of_ms %" PRId64 " is after server_time_ms %" PRId64
            " (a negative lag)",
            what, f->as_of_ms, f->server_time_ms);
    if (f->lag_ms != (f->as_of_ms ? f->server_time_ms - f->as_of_ms : 0))
        bad("%s: freshness.lag_ms %" PRId64 " is not server_time_ms %" PRId64
            " - as_of_ms %" PRId64,
            what, f->lag_ms, f->server_time_ms, f->as_of_ms);
    if (f->rebuilding)
        bad("%s: freshness.rebuilding without a rebuild", what);
    if (!tok && (f->stale || f->token_applied_version))
        bad("%s: freshness says stale %d, token_applied_version %" PRId64 " without a token", what,
            f->stale, f->token_applied_version);
    if (tok && (f->stale || f->token_applied_version != tok->version))
        bad("%s: freshness says stale %d, token_applied_version %" PRId64
            " for a token of complaint %" PRId64 " version %" PRId64,
            what, f->stale, f->token_applied_version, tok->complaint_id, tok->version);
    if (n > 0 && (f->apply_lag_ms < 0 || f->apply_lag_ms > 10 * 60 * 1000))
        bad("%s: freshness.apply_lag_ms %" PRId64, what, f->apply_lag_ms);
    if (llabs(f->server_time_ms - wall_ms()) > 60000)
        bad("%s: freshness.server_time_ms %" PRId64 " is far from now", what, f->server_time_ms);
}

static void check_fresh(const char *what, const char *tenant, const Tally__V1__Freshness *f)
{
    check_fresh_tok(what, tenant, f, NULL);
}

/* A percentile estimate within the stated relative error of the exact nearest-rank value. */
static void check_pct(const char *what, const char *name, double got, const char *exact, double err)
{
    double want = exact && exact[0] ? strtod(exact, NULL) : 0.0;
    if (!near(got, want, err))
        bad("%s: %s %.3f, percentile_disc says %.0f (allowed relative error %.4f)", what, name, got,
            want, err);
}

static void check_err_bound(const char *what, double err)
{
    if (!(err > 0 && err <= 0.05))
        bad("%s: relative error %.5f is not a useful bound (0 < e <= 0.05)", what, err);
}

static void check_overview(const char *what, const char *tenant, int limit,
                           const Tally__V1__Overview *o, int64_t server_ms)
{
    char today[11], tz[80], lb[16];
    if (!o) {
        bad("%s: no overview", what);
        return;
    }
    sql_snapshot();
    local_day(today, tenant, server_ms);
    if (strcmp(o->today, today) != 0)
        bad("%s: today %s, want %s", what, o->today, today);
    const char *p[] = { tenant, today };
    sql_str(tz, sizeof(tz), "SELECT time_zone FROM tenants WHERE tenant_id = $1", 1, p);
    if (strcmp(o->time_zone, tz) != 0)
        bad("%s: time_zone %s, want %s", what, o->time_zone, tz);
    PGresult *r =
        sql("SELECT count(*) FILTER (WHERE status = 1), count(*) FILTER (WHERE status = 2),"
            " count(*) FILTER (WHERE status = 3), count(*) FILTER (WHERE status = 4),"
            " (SELECT count(*) FROM cre_m x WHERE x.tenant_id = $1 AND x.day = $2),"
            " (SELECT count(*) FROM res_m x WHERE x.tenant_id = $1 AND x.day = $2),"
            " (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY secs) FROM res_m x"
            "  WHERE x.tenant_id = $1 AND x.day = $2)"
            " FROM complaints WHERE tenant_id = $1",
            2, p);
    const Tally__V1__StatusCounts *sc = o->status_counts;
    int64_t want[4] = { num(r, 0, 0), num(r, 0, 1), num(r, 0, 2), num(r, 0, 3) };
    if (!sc || sc->open != want[0] || sc->in_progress != want[1] || sc->resolved != want[2] ||
        sc->closed != want[3])
        bad("%s: status counts %" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64
            " (open/in progress/resolved/closed), want %" PRId64 "/%" PRId64 "/%" PRId64
            "/%" PRId64,
            what, sc ? sc->open : -1, sc ? sc->in_progress : -1, sc ? sc->resolved : -1,
            sc ? sc->closed : -1, want[0], want[1], want[2], want[3]);
    if (o->backlog != want[0] + want[1])
        bad("%s: backlog %" PRId64 ", want %" PRId64, what, o->backlog, want[0] + want[1]);
    if (o->created_today != num(r, 0, 4))
        bad("%s: created_today %" PRId64 ", want %" PRId64 " (today %s)", what, o->created_today,
            num(r, 0, 4), today);
    if (o->resolved_today != num(r, 0, 5))
        bad("%s: resolved_today %" PRId64 ", want %" PRId64 " (today %s)", what, o->resolved_today,
            num(r, 0, 5), today);
    check_err_bound(what, o->resolution_relative_error);
    check_pct(what, "median_resolution_seconds_today", o->median_resolution_seconds_today,
              PQgetvalue(r, 0, 6), o->resolution_relative_error);
    PQclear(r);
    /* The oldest open complaints, oldest first, ties by id. */
    snprintf(lb, sizeof(lb), "%d", limit ? limit : 10);
    const char *q[] = { tenant, lb };
    r = sql("SELECT complaint_id, " CREATED_MS ", status, priority, category_id,"
            " coalesce(assigned_agent_id, '') FROM complaints"
            " WHERE tenant_id = $1 AND status IN (1, 2) ORDER BY 2, 1 LIMIT $2::int",
            2, q);
    size_t n = (size_t)PQntuples(r);
    if (o->n_oldest_open != n)
        bad("%s: %zu oldest open complaints, want %zu", what, o->n_oldest_open, n);
    for (size_t i = 0; i < n && i < o->n_oldest_open; i++) {
        const Tally__V1__OpenComplaint *c = o->oldest_open[i];
        int64_t id = num(r, (int)i, 0), created = num(r, (int)i, 1);
        int status = (int)num(r, (int)i, 2), prio = (int)num(r, (int)i, 3);
        const char *cat = PQgetvalue(r, (int)i, 4), *agent = PQgetvalue(r, (int)i, 5);
        if (c->complaint_id != id || c->created_at_ms != created || (int)c->status != status ||
            (int)c->priority != prio || strcmp(c->category_id, cat) != 0 ||
            strcmp(c->assigned_agent_id, agent) != 0)
            bad("%s: oldest_open[%zu] is %" PRId64 " created %" PRId64
                " status %d priority %d category %s agent \"%s\"; want %" PRId64 " created %" PRId64
                " status %d priority %d category %s agent \"%s\"",
                what, i, c->complaint_id, c->created_at_ms, c->status, c->priority, c->category_id,
                c->assigned_agent_id, id, created, status, prio, cat, agent);
        else if (c->age_seconds != (server_ms - created) / 1000)
            bad("%s: oldest_open[%zu] age_seconds %" PRId64 ", want %" PRId64, what, i,
                c->age_seconds, (server_ms - created) / 1000);
    }
    PQclear(r);
}

static const char *gran_name(int g)
{
    return g == G_WEEK ? "WEEK" : g == G_MONTH ? "MONTH" : g == G_DAY ? "DAY" : "UNSPECIFIED";
}

static void check_trend(const char *what, const char *tenant, const qrange *req, int gran,
                        const flt *f, const Tally__V1__VolumeTrend *t, int64_t server_ms)
{
    qrange rg;
    fparams fp;
    char gb[8];
    if (!t) {
        bad("%s: no trend", what);
        return;
    }
    sql_snapshot();
    resolve_range(tenant, req, server_ms, &rg);
    if (!check_range(what, t->range, &rg))
        return;
    int g = gran ? gran : G_DAY;
    if ((int)t->granularity != g)
        bad("%s: granularity %d, want %d", what, t->granularity, g);
    filter_params(f, &fp);
    snprintf(gb, sizeof(gb), "%d", g);
    const char *p[] = { tenant, fp.c, fp.p, rg.from, rg.to, gb };
    PGresult *r = sql(
        "WITH b AS (SELECT $4::date + i AS d FROM generate_series(0, $5::date - $4::date) i),"
        " l AS (SELECT d, CASE $6::int WHEN 2 THEN to_char(d, 'IYYY-\"W\"IW')"
        "  WHEN 3 THEN to_char(d, 'YYYY-MM') ELSE to_char(d, 'YYYY-MM-DD') END AS label FROM b),"
        " c AS (SELECT day AS d, count(*) AS n FROM cre_m x WHERE x.tenant_id = $1 AND" FILTER_SQL
        "  GROUP BY day),"
        " r AS (SELECT day AS d, count(*) AS n FROM res_m x WHERE x.tenant_id = $1 AND" FILTER_SQL
        "  GROUP BY day)"
        " SELECT l.label, min(l.d)::text, max(l.d)::text, coalesce(sum(c.n), 0),"
        " coalesce(sum(r.n), 0) FROM l LEFT JOIN c ON c.d = l.d LEFT JOIN r ON r.d = l.d"
        " GROUP BY l.label ORDER BY min(l.d)",
        6, p);
    size_t n = (size_t)PQntuples(r);
    int64_t tc = 0, tr = 0;
    int wrong = 0;
    if (t->n_buckets != n)
        bad("%s: %zu buckets, want %zu", what, t->n_buckets, n);
    for (size_t i = 0; i < n; i++) {
        const char *label = PQgetvalue(r, (int)i, 0), *first = PQgetvalue(r, (int)i, 1),
                   *last = PQgetvalue(r, (int)i, 2);
        int64_t c = num(r, (int)i, 3), rs = num(r, (int)i, 4);
        tc += c;
        tr += rs;
        if (i >= t->n_buckets)
            continue;
        const Tally__V1__VolumeBucket *b = t->buckets[i];
        bool same = strcmp(b->label, label) == 0 && strcmp(b->first_day, first) == 0 &&
                    strcmp(b->last_day, last) == 0 && b->created == c && b->resolved == rs;
        if (!same && ++wrong <= 3) /* the first few wrong buckets of a call */
            bad("%s: bucket %zu is %s %s..%s created %" PRId64 " resolved %" PRId64
                "; want %s %s..%s created %" PRId64 " resolved %" PRId64,
                what, i, b->label, b->first_day, b->last_day, b->created, b->resolved, label, first,
                last, c, rs);
    }
    if (t->total_created != tc || t->total_resolved != tr)
        bad("%s: totals created %" PRId64 " resolved %" PRId64 ", want %" PRId64 " and %" PRId64,
            what, t->total_created, t->total_resolved, tc, tr);
    PQclear(r);
}

static void check_summary(const char *what, const Tally__V1__ResolutionSummary *s,
                          const PGresult *r, int row, int col, double err)
{
    int64_t n = num(r, row, col), sum = num(r, row, col + 1);
    if (!s) {
        bad("%s: no summary", what);
        return;
    }
    if (s->count != n)
        bad("%s: count %" PRId64 ", want %" PRId64, what, s->count, n);
    double mean = n ? (double)sum / (double)n : 0.0;
    if (!near(s->mean_seconds, mean, 1e-9))
        bad("%s: mean_seconds %.6f, want %.6f (%" PRId64 " s / %" PRId64 ")", what, s->mean_seconds,
            mean, sum, n);
    check_pct(what, "p50_seconds", s->p50_seconds, PQgetvalue(r, row, col + 2), err);
    check_pct(what, "p90_seconds", s->p90_seconds, PQgetvalue(r, row, col + 3), err);
    check_pct(what, "p99_seconds", s->p99_seconds, PQgetvalue(r, row, col + 4), err);
}

#define STATS_SQL                                                                           \
    " count(*), coalesce(sum(secs), 0), percentile_disc(0.5) WITHIN GROUP (ORDER BY secs)," \
    " percentile_disc(0.9) WITHIN GROUP (ORDER BY secs),"                                   \
    " percentile_disc(0.99) WITHIN GROUP (ORDER BY secs)"                                   \
    " FROM res_m x WHERE x.tenant_id = $1 AND x.day BETWEEN $4::date AND $5::date AND" FILTER_SQL

static void check_stats(const char *what, const char *tenant, const qrange *req, int group_by,
                        const flt *f, const Tally__V1__ResolutionStats *s, int64_t server_ms)
{
    qrange rg;
    fparams fp;
    char q[1024], w[256];
    if (!s) {
        bad("%s: no stats", what);
        return;
    }
    sql_snapshot();
    resolve_range(tenant, req, server_ms, &rg);
    if (!check_range(what, s->range, &rg))
        return;
    int g = group_by ? group_by : BY_NONE;
    if ((int)s->group_by != g)
        bad("%s: group_by %d, want %d", what, s->group_by, g);
    check_err_bound(what, s->percentile_relative_error);
    double err = s->percentile_relative_error;
    filter_params(f, &fp);
    const char *p[] = { tenant, fp.c, fp.p, rg.from, rg.to };
    PGresult *r = sql("SELECT" STATS_SQL, 5, p);
    snprintf(w, sizeof(w), "%s overall", what);
    check_summary(w, s->overall, r, 0, 0, err);
    PQclear(r);
    bool by_k = g == BY_CAT || g == BY_BOTH, by_p = g == BY_PRIO || g == BY_BOTH;
    size_t n = 0;
    if (by_k || by_p) {
        snprintf(q, sizeof(q),
                 "SELECT g.*, coalesce((SELECT name FROM categories y WHERE y.tenant_id = $1"
                 " AND y.category_id = g.k), '') FROM (SELECT %s AS k, %s AS p," STATS_SQL
                 " GROUP BY 1, 2) g ORDER BY k COLLATE \"C\", p DESC",
                 by_k ? "category_id" : "''::text", by_p ? "priority" : "0");
        r = sql(q, 5, p);
        n = (size_t)PQntuples(r);
        for (size_t i = 0; i < n && i < s->n_groups; i++) {
            const Tally__V1__ResolutionGroup *gr = s->groups[i];
            const char *k = PQgetvalue(r, (int)i, 0), *name = PQgetvalue(r, (int)i, 7);
            int pr = (int)num(r, (int)i, 1);
            snprintf(w, sizeof(w), "%s group %zu (%s/%d)", what, i, k, pr);
            if (strcmp(gr->category_id, k) != 0 || (int)gr->priority != pr) {
                bad("%s: is category \"%s\" priority %d", w, gr->category_id, gr->priority);
                continue;
            }
            if (strcmp(gr->category_name, by_k ? name : "") != 0)
                bad("%s: category_name \"%s\", want \"%s\"", w, gr->category_name,
                    by_k ? name : "");
            check_summary(w, gr->summary, r, (int)i, 2, err);
        }
        PQclear(r);
    }
    if (s->n_groups != n)
        bad("%s: %zu groups, want %zu", what, s->n_groups, n);
}

typedef struct arow {
    char id[72], name[160];
    int64_t n, s, open;
} arow;

/* Every agent of the tenant in the order asked for; returns how many (at most max). */
static size_t expected_agents(const char *tenant, const qrange *rg, int sort_by, bool asc,
                              arow *out, size_t max)
{
    char q[1536], order[256];
    const char *dir = asc ? "ASC" : "DESC";
    sql_snapshot();
    switch (sort_by) {
    case SORT_MEAN:
        snprintf(order, sizeof(order),
                 "(n = 0), CASE WHEN n > 0 THEN s::numeric / n END %s, agent_id COLLATE \"C\"",
                 dir);
        break;
    case SORT_OPEN:
        snprintf(order, sizeof(order), "open %s, agent_id COLLATE \"C\"", dir);
        break;
    case SORT_ID:
        snprintf(order, sizeof(order), "agent_id COLLATE \"C\" %s", dir);
        break;
    default:
        snprintf(order, sizeof(order), "n %s, agent_id COLLATE \"C\"", dir);
    }
    snprintf(q, sizeof(q),
             "SELECT * FROM (SELECT a.agent_id, a.name,"
             " (SELECT count(*) FROM res_m x WHERE x.tenant_id = $1 AND x.agent = a.agent_id"
             "  AND x.day BETWEEN $2::date AND $3::date) AS n,"
             " (SELECT coalesce(sum(secs), 0) FROM res_m x WHERE x.tenant_id = $1"
             "  AND x.agent = a.agent_id AND x.day BETWEEN $2::date AND $3::date) AS s,"
             " (SELECT count(*) FROM complaints c WHERE c.tenant_id = $1"
             "  AND c.assigned_agent_id = a.agent_id AND c.status IN (1, 2)) AS open"
             " FROM agents a WHERE a.tenant_id = $1) z ORDER BY %s",
             order);
    const char *p[] = { tenant, rg->from, rg->to };
    PGresult *r = sql(q, 3, p);
    size_t n = (size_t)PQntuples(r);
    cr_assert_leq(n, max);
    for (size_t i = 0; i < n; i++) {
        snprintf(out[i].id, sizeof(out[i].id), "%s", PQgetvalue(r, (int)i, 0));
        snprintf(out[i].name, sizeof(out[i].name), "%s", PQgetvalue(r, (int)i, 1));
        out[i].n = num(r, (int)i, 2);
        out[i].s = num(r, (int)i, 3);
        out[i].open = num(r, (int)i, 4);
    }
    PQclear(r);
    return n;
}

/* One page (starting at offset, limit long) against the expected order; false when it is not
   about the range asked for. */
static bool check_agent_page(const char *what, const Tally__V1__AgentPerformance *ap,
                             const qrange *rg, int sort_by, bool asc, const arow *want,
                             size_t nwant, size_t offset, int limit)
{
    if (!ap) {
        bad("%s: no agent performance", what);
        return false;
    }
    if (!check_range(what, ap->range, rg))
        return false;
    if ((int)ap->sort_by != sort_by || ap->ascending != asc)
        bad("%s: sort_by %d ascending %d, want %d %d", what, ap->sort_by, ap->ascending, sort_by,
            asc);
    if (ap->total_agents != (int32_t)nwant)
        bad("%s: total_agents %d, want %zu", what, ap->total_agents, nwant);
    size_t end = offset + (size_t)limit < nwant ? offset + (size_t)limit : nwant;
    size_t n = end > offset ? end - offset : 0;
    if (ap->n_agents != n)
        bad("%s: %zu agents on the page at %zu, want %zu", what, ap->n_agents, offset, n);
    for (size_t i = 0; i < n && i < ap->n_agents; i++) {
        const Tally__V1__AgentStats *a = ap->agents[i];
        const arow *w = &want[offset + i];
        double mean = w->n ? (double)w->s / (double)w->n : 0.0;
        if (strcmp(a->agent_id, w->id) != 0)
            bad("%s: position %zu is agent %s (resolved %" PRId64 ", open %" PRId64
                "), want %s (resolved %" PRId64 " mean %.3f open %" PRId64 ")",
                what, offset + i, a->agent_id, a->resolved, a->open_assigned, w->id, w->n, mean,
                w->open);
        else if (strcmp(a->agent_name, w->name) != 0 || a->resolved != w->n ||
                 !near(a->mean_resolution_seconds, mean, 1e-9) || a->open_assigned != w->open)
            bad("%s: agent %s has name \"%s\" resolved %" PRId64 " mean %.6f open %" PRId64
                ", want \"%s\" %" PRId64 " %.6f %" PRId64,
                what, w->id, a->agent_name, a->resolved, a->mean_resolution_seconds,
                a->open_assigned, w->name, w->n, mean, w->open);
    }
    bool more = end < nwant;
    if (more != (ap->next_page_token[0] != '\0'))
        bad("%s: next_page_token \"%s\" at %zu of %zu agents", what, ap->next_page_token, end,
            nwant);
    return true;
}

static Tally__V1__GetAgentPerformanceReply *agents_page(const char *tenant, const qrange *r,
                                                        int sort_by, bool asc, int limit,
                                                        const char *token, const char *what)
{
    Tally__V1__GetAgentPerformanceRequest q = TALLY__V1__GET_AGENT_PERFORMANCE_REQUEST__INIT;
    Tally__V1__DateRange dr;
    q.tenant_id = (char *)tenant;
    q.range = range_msg(&dr, r, false);
    q.sort_by = (Tally__V1__AgentSortBy)sort_by;
    q.ascending = asc;
    q.limit = limit;
    q.page_token = (char *)(token ? token : "");
    return call_ok(S.q, DASH("GetAgentPerformance"), &q.base,
                   &tally__v1__get_agent_performance_reply__descriptor, what);
}

/*
 * Follows next_page_token from a first page to the end: every agent exactly once, in order.
 * first: the first page's panel (from GetAgentPerformance or GetDashboard).
 */
static void check_agent_pages(const char *what, const char *tenant, const qrange *req, int sort_by,
                              bool asc, int limit, const Tally__V1__AgentPerformance *first,
                              int64_t server_ms)
{
    arow want[32];
    qrange rg;
    char w[256], token[512];
    int s = sort_by ? sort_by : SORT_RESOLVED, lim = limit ? limit : 50;
    resolve_range(tenant, req, server_ms, &rg);
    size_t nwant = expected_agents(tenant, &rg, s, asc, want, 32);
    if (!check_agent_page(what, first, &rg, s, asc, want, nwant, 0, lim))
        return;
    size_t offset = first->n_agents;
    snprintf(token, sizeof(token), "%s", first->next_page_token);
    for (int page = 2; token[0] && page < 40; page++) {
        snprintf(w, sizeof(w), "%s page %d", what, page);
        /* The first page's request again, with the token. */
        Tally__V1__GetAgentPerformanceReply *rep =
            agents_page(tenant, req, sort_by, asc, limit, token, w);
        if (!rep || !rep->performance)
            break;
        check_agent_page(w, rep->performance, &rg, s, asc, want, nwant, offset, lim);
        offset += rep->performance->n_agents;
        snprintf(token, sizeof(token), "%s", rep->performance->next_page_token);
        free_msg(rep);
    }
    if (offset != nwant)
        bad("%s: the pages listed %zu agents, the tenant has %zu", what, offset, nwant);
}

static void check_distribution(const char *what, const char *tenant, const qrange *req,
                               const flt *f, int top_n, const Tally__V1__CategoryDistribution *d,
                               int64_t server_ms)
{
    qrange rg;
    fparams fp;
    if (!d) {
        bad("%s: no distribution", what);
        return;
    }
    sql_snapshot();
    resolve_range(tenant, req, server_ms, &rg);
    if (!check_range(what, d->range, &rg))
        return;
    filter_params(f, &fp);
    const char *p[] = { tenant, fp.c, fp.p, rg.from, rg.to };
    PGresult *r = sql("SELECT category_id, count(*) AS n, coalesce((SELECT name FROM categories y"
                      " WHERE y.tenant_id = $1 AND y.category_id = x.category_id), '')"
                      " FROM cre_m x WHERE x.tenant_id = $1 AND x.day BETWEEN $4::date AND"
                      " $5::date AND" FILTER_SQL
                      " GROUP BY category_id ORDER BY n DESC, category_id COLLATE \"C\"",
                      5, p);
    size_t n = (size_t)PQntuples(r), top = (size_t)(top_n ? top_n : 10);
    size_t shown = n < top ? n : top;
    int64_t total = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        total += num(r, (int)i, 1);
        if (i >= shown)
            other += num(r, (int)i, 1);
    }
    if (d->total != total)
        bad("%s: total %" PRId64 ", want %" PRId64, what, d->total, total);
    size_t rows = shown + (n > shown);
    if (d->n_categories != rows)
        bad("%s: %zu rows, want %zu (%zu categories, top %zu)", what, d->n_categories, rows, n,
            top);
    for (size_t i = 0; i < shown && i < d->n_categories; i++) {
        const Tally__V1__CategoryShare *c = d->categories[i];
        int64_t cnt = num(r, (int)i, 1);
        double share = total ? (double)cnt / (double)total : 0.0;
        if (strcmp(c->category_id, PQgetvalue(r, (int)i, 0)) != 0 || c->count != cnt ||
            c->is_other || strcmp(c->category_name, PQgetvalue(r, (int)i, 2)) != 0 ||
            !near(c->share, share, 1e-9))
            bad("%s: row %zu is %s \"%s\" %" PRId64 " share %.6f other %d; want %s \"%s\" %" PRId64
                " share %.6f",
                what, i, c->category_id, c->category_name, c->count, c->share, c->is_other,
                PQgetvalue(r, (int)i, 0), PQgetvalue(r, (int)i, 2), cnt, share);
    }
    if (n > shown && d->n_categories == rows) {
        const Tally__V1__CategoryShare *c = d->categories[shown];
        double share = total ? (double)other / (double)total : 0.0;
        if (!c->is_other || c->category_id[0] || c->category_name[0] || c->count != other ||
            !near(c->share, share, 1e-9))
            bad("%s: the other row is \"%s\" \"%s\" %" PRId64
                " share %.6f is_other %d; want %" PRId64 " share %.6f",
                what, c->category_id, c->category_name, c->count, c->share, c->is_other, other,
                share);
    }
    if (d->other_category_count != (int32_t)(n - shown))
        bad("%s: other_category_count %d, want %zu", what, d->other_category_count, n - shown);
    PQclear(r);
}

/* ---- the panels, requested ------------------------------------------------------------------ */

static void run_trend(const char *tenant, const qrange *r, const char *rname, int gran,
                      const flt *f)
{
    char what[256];
    Tally__V1__GetVolumeTrendRequest q = TALLY__V1__GET_VOLUME_TREND_REQUEST__INIT;
    Tally__V1__DateRange dr;
    Tally__V1__Filter fm;
    snprintf(what, sizeof(what), "%s GetVolumeTrend %s %s, %s", tenant, gran_name(gran), rname,
             f ? f->name : "no filter");
    q.tenant_id = (char *)tenant;
    q.range = range_msg(&dr, r, true);
    q.filter = filter_msg(&fm, f);
    q.granularity = (Tally__V1__Granularity)gran;
    Tally__V1__GetVolumeTrendReply *rep = call_ok(
        S.q, DASH("GetVolumeTrend"), &q.base, &tally__v1__get_volume_trend_reply__descriptor, what);
    if (rep) {
        check_fresh(what, tenant, rep->freshness);
        check_trend(what, tenant, r, gran, f, rep->trend, rep->freshness->server_time_ms);
    }
    free_msg(rep);
}

static void run_stats(const char *tenant, const qrange *r, const char *rname, int group_by,
                      const flt *f)
{
    char what[256];
    Tally__V1__GetResolutionStatsRequest q = TALLY__V1__GET_RESOLUTION_STATS_REQUEST__INIT;
    Tally__V1__DateRange dr;
    Tally__V1__Filter fm;
    snprintf(what, sizeof(what), "%s GetResolutionStats group_by %d %s, %s", tenant, group_by,
             rname, f ? f->name : "no filter");
    q.tenant_id = (char *)tenant;
    q.range = range_msg(&dr, r, false);
    q.filter = filter_msg(&fm, f);
    q.group_by = (Tally__V1__ResolutionGroupBy)group_by;
    Tally__V1__GetResolutionStatsReply *rep =
        call_ok(S.q, DASH("GetResolutionStats"), &q.base,
                &tally__v1__get_resolution_stats_reply__descriptor, what);
    if (rep) {
        check_fresh(what, tenant, rep->freshness);
        check_stats(what, tenant, r, group_by, f, rep->stats, rep->freshness->server_time_ms);
    }
    free_msg(rep);
}

static void run_agents(const char *tenant, const qrange *r, const char *rname, int sort_by,
                       bool asc, int limit)
{
    char what[256];
    snprintf(what, sizeof(what), "%s GetAgentPerformance sort_by %d %s limit %d %s", tenant,
             sort_by, asc ? "ascending" : "descending", limit, rname);
    Tally__V1__GetAgentPerformanceReply *rep =
        agents_page(tenant, r, sort_by, asc, limit, NULL, what);
    if (rep) {
        check_fresh(what, tenant, rep->freshness);
        check_agent_pages(what, tenant, r, sort_by, asc, limit, rep->performance,
                          rep->freshness->server_time_ms);
    }
    free_msg(rep);
}

static void run_distribution(const char *tenant, const qrange *r, const char *rname, const flt *f,
                             int top_n)
{
    char what[256];
    Tally__V1__GetCategoryDistributionRequest q =
        TALLY__V1__GET_CATEGORY_DISTRIBUTION_REQUEST__INIT;
    Tally__V1__DateRange dr;
    Tally__V1__Filter fm;
    snprintf(what, sizeof(what), "%s GetCategoryDistribution top_n %d %s, %s", tenant, top_n, rname,
             f ? f->name : "no filter");
    q.tenant_id = (char *)tenant;
    q.range = range_msg(&dr, r, true);
    q.filter = filter_msg(&fm, f);
    q.top_n = top_n;
    Tally__V1__GetCategoryDistributionReply *rep =
        call_ok(S.q, DASH("GetCategoryDistribution"), &q.base,
                &tally__v1__get_category_distribution_reply__descriptor, what);
    if (rep) {
        check_fresh(what, tenant, rep->freshness);
        check_distribution(what, tenant, r, f, top_n, rep->distribution,
                           rep->freshness->server_time_ms);
    }
    free_msg(rep);
}

static void run_overview(const char *tenant, int limit)
{
    char what[128];
    snprintf(what, sizeof(what), "%s GetOverview oldest_open_limit %d", tenant, limit);
    Tally__V1__GetOverviewReply *rep = overview(tenant, limit, NULL, false, what);
    if (rep) {
        check_fresh(what, tenant, rep->freshness);
        check_overview(what, tenant, limit, rep->overview, rep->freshness->server_time_ms);
    }
    free_msg(rep);
}

/* A limit that cuts through a group of open complaints created in the same millisecond, or 0. */
static int limit_inside_a_tie(const char *tenant)
{
    const char *p[] = { tenant };
    PGresult *r = sql("SELECT " CREATED_MS " FROM complaints WHERE tenant_id = $1"
                      " AND status IN (1, 2) ORDER BY 1, complaint_id LIMIT 100",
                      1, p);
    int limit = 0;
    for (int i = 0; i + 1 < PQntuples(r) && !limit; i++)
        if (num(r, i, 0) == num(r, i + 1, 0))
            limit = i + 1;
    PQclear(r);
    return limit;
}

/* Panel a (from the first answer) and b (from another) encode to the same bytes. */
static void pack_cmp(const char *what, const char *panel, const ProtobufCMessage *a,
                     const ProtobufCMessage *b)
{
    if (!a || !b) {
        bad("%s: %s missing", what, panel);
        return;
    }
    size_t la = protobuf_c_message_get_packed_size(a), lb = protobuf_c_message_get_packed_size(b);
    uint8_t *ba = malloc(la + 1), *bb = malloc(lb + 1);
    cr_assert(ba && bb);
    protobuf_c_message_pack(a, ba);
    protobuf_c_message_pack(b, bb);
    if (la != lb || memcmp(ba, bb, la) != 0)
        bad("%s: %s differs between the answers", what, panel);
    free(ba);
    free(bb);
}

/* The overview's ages follow each answer's own clock: zeroed before comparing answers. */
static void zero_ages(Tally__V1__Overview *o)
{
    for (size_t i = 0; o && i < o->n_oldest_open; i++)
        o->oldest_open[i]->age_seconds = 0;
}

typedef struct dash_opts {
    const qrange *r;
    const char *rname;
    const flt *f;
    int gran, group_by, sort_by, limit, top_n, oldest;
    bool asc;
} dash_opts;

/*
 * GetDashboard: every panel equals SQL, and the single panels asked with the same options
 * right after give the same numbers (nothing is written in between).
 */
static void run_dashboard(const char *tenant, const dash_opts *o)
{
    char what[256];
    Tally__V1__GetDashboardRequest q = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    Tally__V1__DateRange dr;
    Tally__V1__Filter fm;
    snprintf(what, sizeof(what),
             "%s GetDashboard %s %s, group_by %d, sort_by %d %s limit %d, top_n %d, oldest %d, "
             "%s (and the single panels)",
             tenant, gran_name(o->gran), o->rname, o->group_by, o->sort_by,
             o->asc ? "ascending" : "descending", o->limit, o->top_n, o->oldest,
             o->f ? o->f->name : "no filter");
    q.tenant_id = (char *)tenant;
    q.range = range_msg(&dr, o->r, false);
    q.filter = filter_msg(&fm, o->f);
    q.granularity = (Tally__V1__Granularity)o->gran;
    q.group_by = (Tally__V1__ResolutionGroupBy)o->group_by;
    q.agent_sort_by = (Tally__V1__AgentSortBy)o->sort_by;
    q.agent_ascending = o->asc;
    q.agent_limit = o->limit;
    q.category_top_n = o->top_n;
    q.oldest_open_limit = o->oldest;
    Tally__V1__GetDashboardReply *rep = call_ok(S.q, DASH("GetDashboard"), &q.base,
                                                &tally__v1__get_dashboard_reply__descriptor, what);
    if (!rep)
        return;
    int64_t now = rep->freshness->server_time_ms;
    check_fresh(what, tenant, rep->freshness);
    check_overview(what, tenant, o->oldest, rep->overview, now);
    check_trend(what, tenant, o->r, o->gran, o->f, rep->volume_trend, now);
    check_stats(what, tenant, o->r, o->group_by, o->f, rep->resolution_stats, now);
    check_agent_pages(what, tenant, o->r, o->sort_by, o->asc, o->limit, rep->agent_performance,
                      now);
    check_distribution(what, tenant, o->r, o->f, o->top_n, rep->category_distribution, now);

    /* The same options, panel by panel. */
    Tally__V1__GetOverviewReply *ov = overview(tenant, o->oldest, NULL, false, what);
    Tally__V1__GetVolumeTrendRequest tq = TALLY__V1__GET_VOLUME_TREND_REQUEST__INIT;
    tq.tenant_id = q.tenant_id;
    tq.range = q.range;
    tq.filter = q.filter;
    tq.granularity = q.granularity;
    Tally__V1__GetVolumeTrendReply *tr =
        call_ok(S.q, DASH("GetVolumeTrend"), &tq.base,
                &tally__v1__get_volume_trend_reply__descriptor, what);
    Tally__V1__GetResolutionStatsRequest sq = TALLY__V1__GET_RESOLUTION_STATS_REQUEST__INIT;
    sq.tenant_id = q.tenant_id;
    sq.range = q.range;
    sq.filter = q.filter;
    sq.group_by = q.group_by;
    Tally__V1__GetResolutionStatsReply *st =
        call_ok(S.q, DASH("GetResolutionStats"), &sq.base,
                &tally__v1__get_resolution_stats_reply__descriptor, what);
    Tally__V1__GetAgentPerformanceReply *ag =
        agents_page(tenant, o->r, o->sort_by, o->asc, o->limit, NULL, what);
    Tally__V1__GetCategoryDistributionRequest cq =
        TALLY__V1__GET_CATEGORY_DISTRIBUTION_REQUEST__INIT;
    cq.tenant_id = q.tenant_id;
    cq.range = q.range;
    cq.filter = q.filter;
    cq.top_n = q.category_top_n;
    Tally__V1__GetCategoryDistributionReply *cd =
        call_ok(S.q, DASH("GetCategoryDistribution"), &cq.base,
                &tally__v1__get_category_distribution_reply__descriptor, what);
    bool same_day = ov && rep->overview && ov->overview &&
                    strcmp(rep->overview->today, ov->overview->today) == 0;
    if (same_day) { /* (a local midnight between the calls would change the default range) */
        zero_ages(rep->overview);
        zero_ages(ov->overview);
        pack_cmp(what, "overview", &rep->overview->base, &ov->overview->base);
        if (tr)
            pack_cmp(what, "volume_trend", &rep->volume_trend->base, &tr->trend->base);
        if (st)
            pack_cmp(what, "resolution_stats", &rep->resolution_stats->base, &st->stats->base);
        if (ag)
            pack_cmp(what, "agent_performance", &rep->agent_performance->base,
                     &ag->performance->base);
        if (cd)
            pack_cmp(what, "category_distribution", &rep->category_distribution->base,
                     &cd->distribution->base);
    }
    free_msg(ov);
    free_msg(tr);
    free_msg(st);
    free_msg(ag);
    free_msg(cd);
    free_msg(rep);
}

/* ---- the suite ------------------------------------------------------------------------------ */

static void init(void)
{
    static const char *const query_env[] = { "TALLY_WORKERS=4", NULL };
    sys_options opt = { .query_env = query_env };
    nbad = 0;
    sys_start(&S, &opt);
    up = true;
    sql_setup();
}

static void fini(void)
{
    fprintf(stderr, "test_query: %d calls, %d mismatches [seed %" PRIu64 "]\n", ncalls, nbad, seed);
    if (nbad > MAX_REPORTED)
        cr_expect_fail("... and %d more mismatches [seed %" PRIu64 "]", nbad - MAX_REPORTED, seed);
    if (up)
        sys_stop(&S);
    up = false;
}

TestSuite(query, .init = init, .fini = fini, .timeout = 175);

/* ---- (1) every panel equals SQL ------------------------------------------------------------- */

/* The tenant-local ranges asked for, around the tenant's today T. */
enum {
    R_DEFAULT,
    R_FULL,
    R_CUT,
    R_INSIDE,
    R_TODAY,
    R_FUTURE,
    R_NEWYEAR,
    R_LEAP,
    R_EPOCH,
    R_Y1000,
    R_Y9999,
    R_5Y,
    R_N
};
static const char *const range_names[R_N] = {
    "the default range",
    "T-399..T",
    "T-75..T-20",
    "T-45..T-41",
    "T..T",
    "T+1..T+40",
    "Dec 20..Jan 15 of the last new year",
    "2028-02-20..2028-03-05",
    "1969-12-20..1970-01-12",
    "1000-01-01..1000-02-10",
    "9999-11-20..9999-12-31",
    "T-1826..T",
};

static void make_ranges(const char *tenant, qrange *r)
{
    char today[11];
    const char *p[] = { tenant };
    sql_str(today, sizeof(today),
            "SELECT (now() AT TIME ZONE time_zone)::date::text FROM tenants WHERE tenant_id = $1",
            1, p);
    static const int off[R_N][2] = {
        [R_FULL] = { -399, 0 }, [R_CUT] = { -75, -20 }, [R_INSIDE] = { -45, -41 },
        [R_TODAY] = { 0, 0 },   [R_FUTURE] = { 1, 40 }, [R_5Y] = { -1826, 0 },
    };
    static const char *const fixed[R_N][2] = {
        [R_LEAP] = { "2028-02-20", "2028-03-05" },
        [R_EPOCH] = { "1969-12-20", "1970-01-12" },
        [R_Y1000] = { "1000-01-01", "1000-02-10" },
        [R_Y9999] = { "9999-11-20", "9999-12-31" },
    };
    memset(r, 0, sizeof(qrange) * R_N);
    for (int i = R_FULL; i < R_N; i++) {
        if (fixed[i][0]) {
            snprintf(r[i].from, 11, "%s", fixed[i][0]);
            snprintf(r[i].to, 11, "%s", fixed[i][1]);
        } else if (i != R_NEWYEAR) {
            day_add(r[i].from, today, off[i][0]);
            day_add(r[i].to, today, off[i][1]);
        }
    }
    /* The last new year inside the imported history (which reaches back about 395 days). */
    const char *t[] = { today };
    sql_str(r[R_NEWYEAR].from, 11,
            "SELECT make_date(extract(year FROM $1::date - 30)::int - 1, 12, 20)::text", 1, t);
    sql_str(r[R_NEWYEAR].to, 11,
            "SELECT make_date(extract(year FROM $1::date - 30)::int, 1, 15)::text", 1, t);
}

/* Everything asked of one tenant; light: the empty tenant gets a smaller set. */
static void compare_tenant(const tdef *t, bool light)
{
    qrange r[R_N];
    const flt *filters[] = { &F_CATS, &F_PRIOS, &F_BOTH };
    make_ranges(t->id, r);

    /* Overview: the default limit, 1, 100, and a limit inside a tie of creation times. */
    run_overview(t->id, 0);
    run_overview(t->id, 100);
    if (!light) {
        run_overview(t->id, 1);
        int cut = limit_inside_a_tie(t->id);
        if (cut)
            run_overview(t->id, cut);
    }

    /* Trend: every range by day (except 5 years), week and month; filters on some. */
    for (int i = 0; i < R_N; i++) {
        if (light && i != R_FULL && i != R_DEFAULT && i != R_EPOCH)
            continue;
        if (i != R_5Y)
            run_trend(t->id, &r[i], range_names[i], G_DAY, NULL);
        run_trend(t->id, &r[i], range_names[i], G_WEEK, NULL);
        run_trend(t->id, &r[i], range_names[i], G_MONTH, NULL);
    }
    run_trend(t->id, &r[R_CUT], range_names[R_CUT], 0, NULL);
    run_trend(t->id, &r[R_FULL], range_names[R_FULL], G_WEEK, &F_EMPTY);
    for (size_t k = 0; k < 3 && !light; k++) {
        run_trend(t->id, &r[R_DEFAULT], range_names[R_DEFAULT], G_DAY, filters[k]);
        run_trend(t->id, &r[R_FULL], range_names[R_FULL], G_WEEK, filters[k]);
        run_trend(t->id, &r[R_CUT], range_names[R_CUT], G_MONTH, filters[k]);
        run_trend(t->id, &r[R_NEWYEAR], range_names[R_NEWYEAR], G_DAY, filters[k]);
    }

    /* Resolution statistics: every grouping over several ranges; filters on some. */
    static const int sranges[] = { R_DEFAULT, R_FULL, R_CUT,   R_INSIDE,
                                   R_TODAY,   R_5Y,   R_EPOCH, R_Y9999 };
    for (size_t i = 0; i < sizeof(sranges) / sizeof(sranges[0]); i++)
        for (int g = 0; g <= BY_BOTH; g++)
            if (!light || (sranges[i] == R_FULL && (g == BY_NONE || g == BY_BOTH)))
                run_stats(t->id, &r[sranges[i]], range_names[sranges[i]], g, NULL);
    for (size_t k = 0; k < 3 && !light; k++) {
        run_stats(t->id, &r[R_FULL], range_names[R_FULL], BY_BOTH, filters[k]);
        run_stats(t->id, &r[R_CUT], range_names[R_CUT], BY_PRIO, filters[k]);
        run_stats(t->id, &r[R_DEFAULT], range_names[R_DEFAULT], BY_CAT, filters[k]);
        run_stats(t->id, &r[R_INSIDE], range_names[R_INSIDE], BY_NONE, filters[k]);
    }

    /* Agents: every sort both ways, 3 per page. */
    static const int aranges[] = { R_FULL, R_DEFAULT, R_CUT };
    run_agents(t->id, &r[R_EPOCH], range_names[R_EPOCH], SORT_MEAN, true, 4);
    run_agents(t->id, &r[R_Y1000], range_names[R_Y1000], SORT_OPEN, false, 4);
    for (size_t i = 0; i < (light ? 1 : sizeof(aranges) / sizeof(aranges[0])); i++)
        for (int s = 0; s <= SORT_ID; s++)
            for (int asc = 0; asc < 2; asc++)
                run_agents(t->id, &r[aranges[i]], range_names[aranges[i]], s, asc, 3);
    run_agents(t->id, &r[R_FULL], range_names[R_FULL], SORT_MEAN, false, 0);

    /* Categories: top_n below the number of categories ("other"), the default, 100; filters. */
    static const int cranges[] = { R_DEFAULT, R_FULL, R_CUT, R_5Y, R_EPOCH, R_Y9999 };
    static const int tops[] = { 0, 1, 3, 100 };
    for (size_t i = 0; i < sizeof(cranges) / sizeof(cranges[0]); i++)
        for (size_t k = 0; k < 4; k++)
            if (!light || (cranges[i] == R_FULL && tops[k] == 3))
                run_distribution(t->id, &r[cranges[i]], range_names[cranges[i]], NULL, tops[k]);
    for (size_t k = 0; k < 3 && !light; k++) {
        run_distribution(t->id, &r[R_FULL], range_names[R_FULL], filters[k], 2);
        run_distribution(t->id, &r[R_CUT], range_names[R_CUT], filters[k], 0);
    }

    /* The dashboard, with defaults and with every option set. */
    dash_opts d1 = { &r[R_DEFAULT], range_names[R_DEFAULT], NULL, 0, 0, 0, 0, 0, 0, false };
    dash_opts d2 = { &r[R_CUT], range_names[R_CUT], &F_BOTH, G_WEEK, BY_CAT, SORT_MEAN, 3, 2, 5,
                     true };
    dash_opts d3 = {
        &r[R_FULL], range_names[R_FULL], &F_CATS, G_MONTH, BY_BOTH, SORT_OPEN, 4, 3, 100, false
    };
    run_dashboard(t->id, &d1);
    if (!light) {
        run_dashboard(t->id, &d2);
        run_dashboard(t->id, &d3);
    }
}

/* A tenant without complaints: zeros everywhere, whatever the other tenants (same ids) did. */
static void expect_nothing(const tdef *t)
{
    qrange r[R_N];
    make_ranges(t->id, r);
    Tally__V1__GetDashboardRequest q = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    Tally__V1__DateRange dr;
    q.tenant_id = (char *)t->id;
    q.range = range_msg(&dr, &r[R_FULL], false);
    q.granularity = G_MONTH;
    q.group_by = BY_BOTH;
    Tally__V1__GetDashboardReply *rep =
        call_ok(S.q, DASH("GetDashboard"), &q.base, &tally__v1__get_dashboard_reply__descriptor,
                "the empty tenant's dashboard");
    if (!rep)
        return;
    const Tally__V1__Overview *o = rep->overview;
    const Tally__V1__AgentPerformance *ap = rep->agent_performance;
    int64_t sum = 0;
    for (size_t i = 0; ap && i < ap->n_agents; i++)
        sum += ap->agents[i]->resolved + ap->agents[i]->open_assigned;
    if (!o || !o->status_counts || o->backlog || o->created_today || o->resolved_today ||
        o->n_oldest_open || o->status_counts->resolved || o->status_counts->closed ||
        rep->volume_trend->total_created || rep->volume_trend->total_resolved ||
        rep->resolution_stats->overall->count || rep->resolution_stats->n_groups ||
        rep->category_distribution->total || rep->category_distribution->n_categories || sum)
        bad("tenant %s has no complaints, yet its dashboard shows some (another tenant's)", t->id);
    free_msg(rep);
}

/* Renames a category and an agent: the panels show the names as they are now. */
static void rename_some(const tdef *t)
{
    char name[128];
    Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    snprintf(name, sizeof(name), "%s of %s, renamed", t->cats[0], t->id);
    pc.tenant_id = (char *)t->id;
    pc.category_id = (char *)t->cats[0];
    pc.name = name;
    free_msg(cmd_ok(CMD("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor));
    Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
    snprintf(name, sizeof(name), "agent %s of %s, renamed", t->agents[0], t->id);
    pa.tenant_id = (char *)t->id;
    pa.agent_id = (char *)t->agents[0];
    pa.name = name;
    free_msg(cmd_ok(CMD("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor));
}

/* A tenant whose ids (tenant, categories, agents) are all 64 bytes long, the longest allowed. */
static char long_ids[8][65];
static tdef longest = { NULL, "America/St_Johns", { NULL }, { NULL }, 60, NULL };

static void make_longest(void)
{
    static const char *const stem[8] = { "tenant",  "cat-a",   "cat-b",   "cat-c",
                                         "agent-a", "agent-b", "agent-c", "agent-d" };
    for (int i = 0; i < 8; i++) {
        snprintf(long_ids[i], sizeof(long_ids[i]), "%s.", stem[i]);
        for (size_t n = strlen(long_ids[i]); n < 64; n++)
            long_ids[i][n] = (char)('a' + (n + (size_t)i) % 26);
        long_ids[i][64] = '\0';
    }
    longest.id = long_ids[0];
    for (int i = 0; i < 3; i++)
        longest.cats[i] = long_ids[1 + i];
    for (int i = 0; i < 4; i++)
        longest.agents[i] = long_ids[4 + i];
}

/*
 * The same dashboard asked 24 times at once (spread over query-svc's workers): every answer has
 * the panels of the one asked alone.
 */
static void expect_same_under_concurrency(const tdef *t)
{
    enum { N = 24 };
    char what[128];
    qrange r[R_N];
    gc_result outs[N];
    make_ranges(t->id, r);
    snprintf(what, sizeof(what), "%s: %d GetDashboard calls at once", t->id, N);
    Tally__V1__GetDashboardRequest q = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    Tally__V1__DateRange dr;
    Tally__V1__Filter fm;
    q.tenant_id = (char *)t->id;
    q.range = range_msg(&dr, &r[R_CUT], false);
    q.filter = filter_msg(&fm, &F_PRIOS);
    q.granularity = G_WEEK;
    q.group_by = BY_BOTH;
    q.agent_sort_by = SORT_MEAN;
    q.agent_limit = 4;
    q.category_top_n = 2;
    q.oldest_open_limit = 20;
    Tally__V1__GetDashboardReply *one = call_ok(S.q, DASH("GetDashboard"), &q.base,
                                                &tally__v1__get_dashboard_reply__descriptor, what);
    if (!one)
        return;
    zero_ages(one->overview);
    cr_assert_eq(gc_call_many(S.q, DASH("GetDashboard"), &q.base, N, DEADLINE_MS, outs), 0);
    ncalls += N;
    for (int i = 0; i < N; i++) {
        Tally__V1__GetDashboardReply *rep =
            outs[i].code == OK
                ? tally__v1__get_dashboard_reply__unpack(NULL, outs[i].len, outs[i].data)
                : NULL;
        if (!rep) {
            bad("%s: call %d gave %s \"%s\"", what, i, tally_grpc_code_name(outs[i].code),
                outs[i].details);
        } else if (rep->overview && strcmp(rep->overview->today, one->overview->today) == 0) {
            zero_ages(rep->overview);
            pack_cmp(what, "overview", &one->overview->base, &rep->overview->base);
            pack_cmp(what, "volume_trend", &one->volume_trend->base, &rep->volume_trend->base);
            pack_cmp(what, "resolution_stats", &one->resolution_stats->base,
                     &rep->resolution_stats->base);
            pack_cmp(what, "agent_performance", &one->agent_performance->base,
                     &rep->agent_performance->base);
            pack_cmp(what, "category_distribution", &one->category_distribution->base,
                     &rep->category_distribution->base);
        }
        free_msg(rep);
        gc_result_release(&outs[i]);
    }
    free_msg(one);
}

/* A token of a complaint of tenant a, used with tenant b: never applied in b's read model. */
static void expect_foreign_token_stale(const tdef *a, const tdef *b)
{
    Tally__V1__ConsistencyToken tok = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    gc_result r;
    cr_assert(pick(a->id, "true", &tok.complaint_id, &tok.version));
    Tally__V1__GetOverviewRequest q = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    q.tenant_id = (char *)b->id;
    q.consistency = &tok;
    cr_assert_eq(gc_call(S.q, DASH("GetOverview"), &q.base, NULL, 1000, &r), 0);
    Tally__V1__GetOverviewReply *rep =
        r.code == OK ? tally__v1__get_overview_reply__unpack(NULL, r.len, r.data) : NULL;
    if (!rep || !rep->freshness->stale || rep->freshness->token_applied_version != 0)
        bad("tenant %s with a token of tenant %s's complaint %" PRId64 " version %" PRId64
            ": %s, stale %d, token_applied_version %" PRId64 " (want OK, stale, 0)",
            b->id, a->id, tok.complaint_id, tok.version, tally_grpc_code_name(r.code),
            rep ? rep->freshness->stale : -1, rep ? rep->freshness->token_applied_version : -1);
    gc_result_release(&r);
    free_msg(rep);
}

Test(query, every_panel_equals_sql_over_random_histories)
{
    seed_rng("every_panel_equals_sql_over_random_histories");
    make_longest();
    for (size_t i = 0; i < NTENANTS; i++)
        put_tenant(&tenants[i]);
    put_tenant(&longest);
    for (size_t i = 0; i < NTENANTS; i++)
        if (tenants[i].complaints)
            import_history(&tenants[i]);
    import_history(&longest);
    for (size_t i = 0; i < NTENANTS; i++)
        if (tenants[i].complaints)
            live_commands(&tenants[i]);
    live_commands(&longest);
    rename_some(&tenants[0]);
    rename_some(&tenants[2]);
    for (size_t i = 0; i < NTENANTS; i++)
        wait_caught_up(tenants[i].id);
    wait_caught_up(longest.id);
    sql_snapshot();
    for (size_t i = 0; i < NTENANTS; i++) {
        const char *p[] = { tenants[i].id };
        PGresult *r = sql("SELECT (SELECT count(*) FROM complaints WHERE tenant_id = $1),"
                          " (SELECT count(*) FROM events WHERE tenant_id = $1),"
                          " (SELECT count(*) FROM res_m WHERE tenant_id = $1),"
                          " (SELECT count(*) FROM res_m WHERE tenant_id = $1 AND agent <> ''),"
                          " (SELECT count(*) FROM complaints WHERE tenant_id = $1"
                          "  AND status IN (1, 2))",
                          1, p);
        fprintf(stderr,
                "test_query: tenant %s (%s): %s complaints, %s events, %s resolutions (%s by "
                "an agent), %s open; a limit inside a tie: %d\n",
                tenants[i].id, tenants[i].tz, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
                PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4),
                limit_inside_a_tie(tenants[i].id));
        PQclear(r);
    }
    for (size_t i = 0; i < NTENANTS; i++)
        compare_tenant(&tenants[i], tenants[i].complaints == 0);
    compare_tenant(&longest, true);
    expect_nothing(&tenants[NTENANTS - 1]);
    expect_foreign_token_stale(&tenants[0], &tenants[1]);
    for (size_t i = 0; i < NTENANTS; i++)
        expect_same_under_concurrency(&tenants[i]);
}

/* ---- (2) consistency tokens ----------------------------------------------------------------- */

/* One tenant for the smaller tests. */
static const tdef solo = { "solo",
                           "Europe/Berlin",
                           { "billing", "delivery", "quality", "web" },
                           { "a01", "a02", "a03", "a04", "Zed", "idle" },
                           40,
                           NULL };

/* A call that must fail with code; its gc_result (details, seconds) into out. */
static void call_code(const char *what, const char *method, const ProtobufCMessage *msg,
                      int deadline_ms, int code, gc_result *out)
{
    cr_assert_eq(gc_call(S.q, method, msg, NULL, deadline_ms, out), 0, "%s did not start", method);
    gc_result_release(out);
    if (out->code != code)
        bad("%s: %s gave %s \"%s\", want %s", what, method, tally_grpc_code_name(out->code),
            out->details, tally_grpc_code_name(code));
}

/* Puts a category and an agent the query workers have not seen yet, and waits for them. */
static void put_late_ones(const tdef *t)
{
    Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    pc.tenant_id = (char *)t->id;
    pc.category_id = "late-cat";
    pc.name = "a late category";
    free_msg(cmd_ok(CMD("PutCategory"), &pc.base, &tally__v1__put_category_reply__descriptor));
    Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
    pa.tenant_id = (char *)t->id;
    pa.agent_id = "late-agent";
    pa.name = "a late agent";
    free_msg(cmd_ok(CMD("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor));
    wait_caught_up(t->id);
}

/*
 * Command kind 0..6 on a random complaint in a state that allows it (late: use the late
 * category and agent): its token, or complaint_id 0 when no complaint was in that state.
 */
static Tally__V1__ConsistencyToken token_command(const tdef *t, int kind, bool late)
{
    Tally__V1__ConsistencyToken tok = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    int64_t id = 0, v = 0;
    switch (kind) {
    case 0:
    case 6:
        id = create(t->id, late && kind == 6 ? "late-cat" : t->cats[rnd_below(4)], pick_priority(),
                    &v);
        break;
    case 1:
        if (pick(t->id, "status IN (1, 2, 3)", &id, &v))
            v = assign(t->id, id, v, late ? "late-agent" : busy_agent(t, NULL));
        break;
    case 2:
        if (pick(t->id, "status = 1", &id, &v))
            v = move(t->id, id, v, IN_PROGRESS);
        break;
    case 3:
        if (pick(t->id, "status IN (1, 2)", &id, &v))
            v = move(t->id, id, v, RESOLVED);
        break;
    case 4:
        if (pick(t->id, "status = 3", &id, &v))
            v = move(t->id, id, v, OPEN);
        break;
    case 5:
        if (pick(t->id, "status = 3", &id, &v))
            v = move(t->id, id, v, CLOSED);
        break;
    }
    tok.complaint_id = id;
    tok.version = v;
    return tok;
}

/* The panel that shows command kind's effect, asked at once with its token (fail_if_stale). */
static void token_query(const char *what, const tdef *t, int kind, Tally__V1__ConsistencyToken *tok)
{
    qrange dflt = { "", "" };
    if (kind == 0 || kind == 2 || kind == 5) {
        Tally__V1__GetOverviewReply *rep = overview(t->id, 100, tok, true, what);
        if (rep) {
            check_fresh_tok(what, t->id, rep->freshness, tok);
            check_overview(what, t->id, 100, rep->overview, rep->freshness->server_time_ms);
        }
        free_msg(rep);
    } else if (kind == 1) {
        Tally__V1__GetAgentPerformanceRequest q = TALLY__V1__GET_AGENT_PERFORMANCE_REQUEST__INIT;
        q.tenant_id = (char *)t->id;
        q.consistency = tok;
        q.fail_if_stale = true;
        q.sort_by = SORT_OPEN;
        q.limit = 3;
        Tally__V1__GetAgentPerformanceReply *rep =
            call_ok(S.q, DASH("GetAgentPerformance"), &q.base,
                    &tally__v1__get_agent_performance_reply__descriptor, what);
        if (rep) {
            check_fresh_tok(what, t->id, rep->freshness, tok);
            check_agent_pages(what, t->id, &dflt, SORT_OPEN, false, 3, rep->performance,
                              rep->freshness->server_time_ms);
        }
        free_msg(rep);
    } else if (kind == 3) {
        Tally__V1__GetResolutionStatsRequest q = TALLY__V1__GET_RESOLUTION_STATS_REQUEST__INIT;
        q.tenant_id = (char *)t->id;
        q.consistency = tok;
        q.fail_if_stale = true;
        q.group_by = BY_BOTH;
        Tally__V1__GetResolutionStatsReply *rep =
            call_ok(S.q, DASH("GetResolutionStats"), &q.base,
                    &tally__v1__get_resolution_stats_reply__descriptor, what);
        if (rep) {
            check_fresh_tok(what, t->id, rep->freshness, tok);
            check_stats(what, t->id, &dflt, BY_BOTH, NULL, rep->stats,
                        rep->freshness->server_time_ms);
        }
        free_msg(rep);
    } else if (kind == 4) {
        Tally__V1__GetDashboardRequest q = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
        q.tenant_id = (char *)t->id;
        q.consistency = tok;
        q.fail_if_stale = true;
        q.oldest_open_limit = 100;
        Tally__V1__GetDashboardReply *rep = call_ok(
            S.q, DASH("GetDashboard"), &q.base, &tally__v1__get_dashboard_reply__descriptor, what);
        if (rep) {
            int64_t now = rep->freshness->server_time_ms;
            check_fresh_tok(what, t->id, rep->freshness, tok);
            check_overview(what, t->id, 100, rep->overview, now);
            check_trend(what, t->id, &dflt, 0, NULL, rep->volume_trend, now);
            check_stats(what, t->id, &dflt, 0, NULL, rep->resolution_stats, now);
            check_agent_pages(what, t->id, &dflt, 0, false, 0, rep->agent_performance, now);
            check_distribution(what, t->id, &dflt, NULL, 0, rep->category_distribution, now);
        }
        free_msg(rep);
    } else {
        Tally__V1__GetCategoryDistributionRequest q =
            TALLY__V1__GET_CATEGORY_DISTRIBUTION_REQUEST__INIT;
        q.tenant_id = (char *)t->id;
        q.consistency = tok;
        q.fail_if_stale = true;
        Tally__V1__GetCategoryDistributionReply *rep =
            call_ok(S.q, DASH("GetCategoryDistribution"), &q.base,
                    &tally__v1__get_category_distribution_reply__descriptor, what);
        if (rep) {
            check_fresh_tok(what, t->id, rep->freshness, tok);
            check_distribution(what, t->id, &dflt, NULL, 0, rep->distribution,
                               rep->freshness->server_time_ms);
        }
        free_msg(rep);
    }
}

/*
 * Each command is followed at once by a query carrying its token (fail_if_stale): the answer
 * includes the command, so it equals SQL (everything before it was applied already).
 */
Test(query, a_token_sees_its_commands_effect)
{
    seed_rng("a_token_sees_its_commands_effect");
    const tdef *t = &solo;
    put_tenant(t);
    import_history(t);
    wait_caught_up(t->id);
    for (int i = 0; i < 28; i++) {
        char what[160];
        int kind = i % 7;
        if (i == 10)
            put_late_ones(t);
        Tally__V1__ConsistencyToken tok = token_command(t, kind, i > 10);
        if (!tok.complaint_id)
            continue; /* no complaint was in the state this command needs */
        snprintf(what, sizeof(what), "command %d (kind %d), then a query with its token", i, kind);
        token_query(what, t, kind, &tok);
    }

    /* Many quick pairs: each answer includes its creation, and its freshness is consistent. */
    for (int i = 0; i < 150; i++) {
        char what[96];
        int64_t v, id = create(t->id, t->cats[rnd_below(4)], pick_priority(), &v);
        Tally__V1__ConsistencyToken tok = TALLY__V1__CONSISTENCY_TOKEN__INIT;
        tok.complaint_id = id;
        tok.version = v;
        snprintf(what, sizeof(what), "creation %d, then GetOverview with its token", i);
        Tally__V1__GetOverviewReply *rep = overview(t->id, 1, &tok, true, what);
        if (rep) {
            const char *p[] = { t->id, rep->overview->today };
            check_fresh_tok(what, t->id, rep->freshness, &tok);
            int64_t created =
                sql_int("SELECT count(*) FROM cre WHERE tenant_id = $1 AND day = $2", 2, p);
            if (rep->overview->created_today != created)
                bad("%s: created_today %" PRId64 ", want %" PRId64, what,
                    rep->overview->created_today, created);
        }
        free_msg(rep);
    }
}

/* ---- (3) freshness with the projector stopped ----------------------------------------------- */

static Tally__V1__Freshness *fresh_of(Tally__V1__GetOverviewReply *rep)
{
    cr_assert(rep && rep->freshness, "GetOverview failed with the projector stopped");
    return rep->freshness;
}

Test(query, with_the_projector_stopped_answers_say_how_stale)
{
    seed_rng("with_the_projector_stopped_answers_say_how_stale");
    const tdef *t = &solo;
    gc_result r;
    put_tenant(t);
    import_history(t);
    wait_caught_up(t->id);
    int64_t before = events_of(t->id), c, cv, nv;
    cr_assert(pick(t->id, "status IN (1, 2)", &c, &cv), "no open complaint to resolve");

    sys_projector_stop(&S);
    int64_t nid = create(t->id, "billing", HIGH, &nv);
    int64_t c2v = move(t->id, c, cv, RESOLVED);
    int64_t after = events_of(t->id);
    cr_assert_eq(after, before + 2);

    /* Answers keep coming; events_applied is short of PostgreSQL's count. */
    Tally__V1__GetOverviewReply *o1 = overview(t->id, 0, NULL, false, "projector stopped");
    Tally__V1__Freshness *f1 = fresh_of(o1);
    if (f1->events_applied != before)
        bad("projector stopped: events_applied %" PRId64 ", want the %" PRId64
            " applied before (PostgreSQL has %" PRId64 ")",
            f1->events_applied, before, after);
    if (f1->stale || f1->token_applied_version)
        bad("projector stopped, no token: stale %d token_applied_version %" PRId64, f1->stale,
            f1->token_applied_version);
    /* The numbers are those of before the two commands. */
    if (o1->overview) {
        const char *p[] = { t->id, o1->overview->today };
        int64_t created =
            sql_int("SELECT count(*) FROM cre WHERE tenant_id = $1 AND day = $2", 2, p);
        if (o1->overview->created_today != created - 1)
            bad("projector stopped: created_today %" PRId64 ", want %" PRId64
                " (SQL's without the unapplied one)",
                o1->overview->created_today, created - 1);
    }

    /* The lag grows while nothing is applied. */
    sys_sleep_ms(300);
    Tally__V1__GetDashboardRequest dq = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    dq.tenant_id = (char *)t->id;
    Tally__V1__GetDashboardReply *d2 =
        call_ok(S.q, DASH("GetDashboard"), &dq.base, &tally__v1__get_dashboard_reply__descriptor,
                "GetDashboard with the projector stopped");
    cr_assert(d2 && d2->freshness);
    Tally__V1__Freshness *f2 = d2->freshness;
    if (f2->as_of_ms != f1->as_of_ms || f2->events_applied != before)
        bad("projector stopped: as_of_ms %" PRId64 " -> %" PRId64 ", events_applied %" PRId64
            " -> %" PRId64 " although nothing was applied",
            f1->as_of_ms, f2->as_of_ms, f1->events_applied, f2->events_applied);
    if (!(f2->lag_ms > f1->lag_ms && f2->apply_lag_ms > f1->apply_lag_ms))
        bad("projector stopped: lag_ms %" PRId64 " -> %" PRId64 ", apply_lag_ms %" PRId64
            " -> %" PRId64 " over 300 ms: not growing",
            f1->lag_ms, f2->lag_ms, f1->apply_lag_ms, f2->apply_lag_ms);
    if (f2->lag_ms != f2->server_time_ms - f2->as_of_ms)
        bad("projector stopped: lag_ms %" PRId64 " is not server_time_ms - as_of_ms", f2->lag_ms);

    /* Tokens of the unapplied commands: stale, or FAILED_PRECONDITION with fail_if_stale. */
    Tally__V1__ConsistencyToken tnew = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    Tally__V1__ConsistencyToken tmove = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    Tally__V1__ConsistencyToken told = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    tnew.complaint_id = nid;
    tnew.version = nv;
    tmove.complaint_id = c;
    tmove.version = c2v;
    told.complaint_id = c;
    told.version = cv;
    Tally__V1__GetOverviewRequest oq = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    oq.tenant_id = (char *)t->id;
    oq.consistency = &tnew;
    cr_assert_eq(gc_call(S.q, DASH("GetOverview"), &oq.base, NULL, 1500, &r), 0);
    Tally__V1__GetOverviewReply *o3 =
        r.code == OK ? tally__v1__get_overview_reply__unpack(NULL, r.len, r.data) : NULL;
    if (!o3 || !o3->freshness->stale || o3->freshness->token_applied_version != 0)
        bad("token of a complaint created with the projector stopped: %s, stale %d, "
            "token_applied_version %" PRId64 " (want OK, stale, 0)",
            tally_grpc_code_name(r.code), o3 ? o3->freshness->stale : -1,
            o3 ? o3->freshness->token_applied_version : -1);
    gc_result_release(&r);
    free_msg(o3);

    Tally__V1__GetVolumeTrendRequest tq = TALLY__V1__GET_VOLUME_TREND_REQUEST__INIT;
    tq.tenant_id = (char *)t->id;
    tq.consistency = &tmove;
    cr_assert_eq(gc_call(S.q, DASH("GetVolumeTrend"), &tq.base, NULL, 1500, &r), 0);
    Tally__V1__GetVolumeTrendReply *t3 =
        r.code == OK ? tally__v1__get_volume_trend_reply__unpack(NULL, r.len, r.data) : NULL;
    if (!t3 || !t3->freshness->stale || t3->freshness->token_applied_version != cv)
        bad("token of a move made with the projector stopped: %s, stale %d, "
            "token_applied_version %" PRId64 " (want OK, stale, %" PRId64 ")",
            tally_grpc_code_name(r.code), t3 ? t3->freshness->stale : -1,
            t3 ? t3->freshness->token_applied_version : -1, cv);
    gc_result_release(&r);
    free_msg(t3);

    oq.consistency = &tnew;
    oq.fail_if_stale = true;
    call_code("fail_if_stale, new complaint's token", DASH("GetOverview"), &oq.base, 1500,
              FAILED_PRECONDITION, &r);
    if (r.code == FAILED_PRECONDITION && strncmp(r.details, "consistency", 11) != 0)
        bad("FAILED_PRECONDITION's message \"%s\" does not name consistency", r.details);
    dq.consistency = &tmove;
    dq.fail_if_stale = true;
    call_code("fail_if_stale, the move's token", DASH("GetDashboard"), &dq.base, 1500,
              FAILED_PRECONDITION, &r);

    /* A token that was applied before the stop is not stale, even with fail_if_stale. */
    Tally__V1__GetOverviewReply *o4 = overview(t->id, 0, &told, true, "an applied token");
    if (o4 && (o4->freshness->stale || o4->freshness->token_applied_version != cv))
        bad("applied token (%" PRId64 ", %" PRId64 "): stale %d token_applied_version %" PRId64, c,
            cv, o4->freshness->stale, o4->freshness->token_applied_version);
    free_msg(o4);

    /* The projector back: it catches up, and the tokens are fresh. */
    sys_projector_start(&S);
    wait_caught_up(t->id);
    Tally__V1__GetOverviewReply *o5 = overview(t->id, 100, &tmove, true, "projector restarted");
    if (o5) {
        check_fresh_tok("projector restarted", t->id, o5->freshness, &tmove);
        check_overview("projector restarted", t->id, 100, o5->overview,
                       o5->freshness->server_time_ms);
    }
    free_msg(o5);
    free_msg(o1);
    free_msg(d2);
}

/* ---- (4) validation ---------------------------------------------------------------------------
 */

/* A tenant with ids but no complaints, enough for the limits (10 agents). */
static const tdef plain = { "plain",
                            "Asia/Kathmandu",
                            { "billing", "web" },
                            { "a01", "a02", "a03", "a04", "a05", "Zed", "b-x", "b.x", "b_x",
                              "idle" },
                            0,
                            NULL };

#define V_OK(what, M, m, msg) \
    free_msg(call_ok(S.q, DASH(#M), &(msg).base, &tally__v1__##m##_reply__descriptor, what))

/* Request builders: the tenant "plain" and the given options. */
static Tally__V1__DateRange vr;
static Tally__V1__Filter vf;

static Tally__V1__DateRange *days(const char *from, const char *to)
{
    tally__v1__date_range__init(&vr);
    vr.from_day = (char *)from;
    vr.to_day = (char *)to;
    return &vr;
}

static Tally__V1__GetVolumeTrendRequest trend_req(Tally__V1__DateRange *r, int gran)
{
    Tally__V1__GetVolumeTrendRequest q = TALLY__V1__GET_VOLUME_TREND_REQUEST__INIT;
    q.tenant_id = (char *)plain.id;
    q.range = r;
    q.granularity = (Tally__V1__Granularity)gran;
    return q;
}

static Tally__V1__GetResolutionStatsRequest stats_req(Tally__V1__DateRange *r, int group_by)
{
    Tally__V1__GetResolutionStatsRequest q = TALLY__V1__GET_RESOLUTION_STATS_REQUEST__INIT;
    q.tenant_id = (char *)plain.id;
    q.range = r;
    q.group_by = (Tally__V1__ResolutionGroupBy)group_by;
    return q;
}

static Tally__V1__GetAgentPerformanceRequest agents_req(Tally__V1__DateRange *r, int sort_by,
                                                        int limit, const char *token)
{
    Tally__V1__GetAgentPerformanceRequest q = TALLY__V1__GET_AGENT_PERFORMANCE_REQUEST__INIT;
    q.tenant_id = (char *)plain.id;
    q.range = r;
    q.sort_by = (Tally__V1__AgentSortBy)sort_by;
    q.limit = limit;
    q.page_token = (char *)token;
    return q;
}

static Tally__V1__GetCategoryDistributionRequest dist_req(Tally__V1__DateRange *r, int top_n)
{
    Tally__V1__GetCategoryDistributionRequest q =
        TALLY__V1__GET_CATEGORY_DISTRIBUTION_REQUEST__INIT;
    q.tenant_id = (char *)plain.id;
    q.range = r;
    q.top_n = top_n;
    return q;
}

static Tally__V1__GetDashboardRequest dash_req(Tally__V1__DateRange *r, int gran)
{
    Tally__V1__GetDashboardRequest q = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    q.tenant_id = (char *)plain.id;
    q.range = r;
    q.granularity = (Tally__V1__Granularity)gran;
    return q;
}

static Tally__V1__Filter *filter_of(size_t ncats, const char *const *cats, size_t nprios,
                                    Tally__V1__Priority *prios)
{
    tally__v1__filter__init(&vf);
    vf.n_category_ids = ncats;
    vf.category_ids = (char **)cats;
    vf.n_priorities = nprios;
    vf.priorities = prios;
    return &vf;
}

#define REFUSE(what, m, msg, code, field) expect_refusal(what, DASH(#m), &(msg).base, code, field)

Test(query, invalid_requests_name_the_field)
{
    char d399[11], d400[11], d1826[11], d1827[11], ids[101][8];
    const char *cats[101];
    const char *from = "2025-01-01";
    seed_rng("invalid_requests_name_the_field");
    put_tenant(&plain);
    wait_caught_up(plain.id);
    day_add(d399, from, 399);
    day_add(d400, from, 400);
    day_add(d1826, from, 1826);
    day_add(d1827, from, 1827);
    for (int i = 0; i < 101; i++) {
        snprintf(ids[i], sizeof(ids[i]), "k%03d", i);
        cats[i] = ids[i];
    }

    /* The tenant. */
    Tally__V1__GetOverviewRequest ov = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    ov.tenant_id = "nobody";
    REFUSE("unknown tenant", GetOverview, ov, NOT_FOUND, "tenant_id");
    Tally__V1__GetDashboardRequest dq = dash_req(NULL, 0);
    dq.tenant_id = "nobody";
    REFUSE("unknown tenant", GetDashboard, dq, NOT_FOUND, "tenant_id");
    Tally__V1__GetVolumeTrendRequest tq = trend_req(NULL, 0);
    tq.tenant_id = "bad tenant";
    REFUSE("malformed tenant", GetVolumeTrend, tq, INVALID_ARGUMENT, "tenant_id");
    tq.tenant_id = "";
    REFUSE("empty tenant", GetVolumeTrend, tq, INVALID_ARGUMENT, "tenant_id");

    /* Ranges. */
    tq = trend_req(days("2026-03-10", "2026-03-09"), G_DAY);
    REFUSE("inverted range", GetVolumeTrend, tq, INVALID_ARGUMENT, "range");
    Tally__V1__GetResolutionStatsRequest sq = stats_req(days("2026-03-10", "2026-02-09"), 0);
    REFUSE("inverted range", GetResolutionStats, sq, INVALID_ARGUMENT, "range");
    tq = trend_req(days("2026-03-10", ""), G_DAY);
    REFUSE("only from_day", GetVolumeTrend, tq, INVALID_ARGUMENT, "range");
    Tally__V1__GetCategoryDistributionRequest cq = dist_req(days("", "2026-03-10"), 0);
    REFUSE("only to_day", GetCategoryDistribution, cq, INVALID_ARGUMENT, "range");
    Tally__V1__GetAgentPerformanceRequest aq = agents_req(days("2026-03-10", ""), 0, 0, "");
    REFUSE("only from_day", GetAgentPerformance, aq, INVALID_ARGUMENT, "range");
    tq = trend_req(days("2026-13-01", "2026-12-31"), G_DAY);
    REFUSE("month 13", GetVolumeTrend, tq, INVALID_ARGUMENT, "range.from_day");
    tq = trend_req(days("2026-02-01", "2026-02-30"), G_DAY);
    REFUSE("February 30", GetVolumeTrend, tq, INVALID_ARGUMENT, "range.to_day");
    sq = stats_req(days("2026-2-01", "2026-02-10"), 0);
    REFUSE("unpadded month", GetResolutionStats, sq, INVALID_ARGUMENT, "range.from_day");
    cq = dist_req(days("2026-02-01", "20260210"), 0);
    REFUSE("no dashes", GetCategoryDistribution, cq, INVALID_ARGUMENT, "range.to_day");
    aq = agents_req(days("yesterday", "2026-02-10"), 0, 0, "");
    REFUSE("a word", GetAgentPerformance, aq, INVALID_ARGUMENT, "range.from_day");
    dq = dash_req(days("2026-02-01", "2026-02-10 "), 0);
    REFUSE("a trailing space", GetDashboard, dq, INVALID_ARGUMENT, "range.to_day");

    /* Range lengths: 400 days by day, 1827 otherwise. */
    tq = trend_req(days(from, d399), G_DAY);
    V_OK("400 days by day", GetVolumeTrend, get_volume_trend, tq);
    tq = trend_req(days(from, d400), G_DAY);
    REFUSE("401 days by day", GetVolumeTrend, tq, INVALID_ARGUMENT, "range");
    tq = trend_req(days(from, d400), 0);
    REFUSE("401 days, granularity unset", GetVolumeTrend, tq, INVALID_ARGUMENT, "range");
    for (int g = G_WEEK; g <= G_MONTH; g++) {
        tq = trend_req(days(from, d1826), g);
        V_OK("1827 days by week or month", GetVolumeTrend, get_volume_trend, tq);
        tq = trend_req(days(from, d1827), g);
        REFUSE("1828 days by week or month", GetVolumeTrend, tq, INVALID_ARGUMENT, "range");
    }
    sq = stats_req(days(from, d1826), 0);
    V_OK("1827 days", GetResolutionStats, get_resolution_stats, sq);
    sq = stats_req(days(from, d1827), 0);
    REFUSE("1828 days", GetResolutionStats, sq, INVALID_ARGUMENT, "range");
    aq = agents_req(days(from, d1826), 0, 0, "");
    V_OK("1827 days", GetAgentPerformance, get_agent_performance, aq);
    aq = agents_req(days(from, d1827), 0, 0, "");
    REFUSE("1828 days", GetAgentPerformance, aq, INVALID_ARGUMENT, "range");
    cq = dist_req(days(from, d1826), 0);
    V_OK("1827 days", GetCategoryDistribution, get_category_distribution, cq);
    cq = dist_req(days(from, d1827), 0);
    REFUSE("1828 days", GetCategoryDistribution, cq, INVALID_ARGUMENT, "range");
    dq = dash_req(days(from, d400), G_DAY);
    REFUSE("401 days, dashboard by day", GetDashboard, dq, INVALID_ARGUMENT, "range");
    dq = dash_req(days(from, d400), 0);
    REFUSE("401 days, dashboard granularity unset", GetDashboard, dq, INVALID_ARGUMENT, "range");
    dq = dash_req(days(from, d1826), G_MONTH);
    V_OK("1827 days, dashboard by month", GetDashboard, get_dashboard, dq);
    dq = dash_req(days(from, d1827), G_WEEK);
    REFUSE("1828 days, dashboard by week", GetDashboard, dq, INVALID_ARGUMENT, "range");

    /* Enums. */
    int unknown[] = { 9, 5, -1 };
    for (int i = 0; i < 3; i++) {
        char what[64];
        snprintf(what, sizeof(what), "enum value %d", unknown[i]);
        if (unknown[i] != 5) {
            tq = trend_req(NULL, unknown[i]);
            REFUSE(what, GetVolumeTrend, tq, INVALID_ARGUMENT, "granularity");
            dq = dash_req(NULL, unknown[i]);
            REFUSE(what, GetDashboard, dq, INVALID_ARGUMENT, "granularity");
        }
        sq = stats_req(NULL, unknown[i]);
        REFUSE(what, GetResolutionStats, sq, INVALID_ARGUMENT, "group_by");
        aq = agents_req(NULL, unknown[i], 0, "");
        REFUSE(what, GetAgentPerformance, aq, INVALID_ARGUMENT, "sort_by");
        dq = dash_req(NULL, 0);
        dq.group_by = (Tally__V1__ResolutionGroupBy)unknown[i];
        REFUSE(what, GetDashboard, dq, INVALID_ARGUMENT, "group_by");
        dq = dash_req(NULL, 0);
        dq.agent_sort_by = (Tally__V1__AgentSortBy)unknown[i];
        REFUSE(what, GetDashboard, dq, INVALID_ARGUMENT, "agent_sort_by");
    }
    tq = trend_req(NULL, 4);
    REFUSE("granularity 4", GetVolumeTrend, tq, INVALID_ARGUMENT, "granularity");

    /* Limits: the largest valid values pass, one more is refused. */
    aq = agents_req(NULL, 0, 500, "");
    V_OK("limit 500", GetAgentPerformance, get_agent_performance, aq);
    aq = agents_req(NULL, 0, 501, "");
    REFUSE("limit 501", GetAgentPerformance, aq, INVALID_ARGUMENT, "limit");
    aq = agents_req(NULL, 0, -1, "");
    REFUSE("limit -1", GetAgentPerformance, aq, INVALID_ARGUMENT, "limit");
    cq = dist_req(NULL, 100);
    V_OK("top_n 100", GetCategoryDistribution, get_category_distribution, cq);
    cq = dist_req(NULL, 101);
    REFUSE("top_n 101", GetCategoryDistribution, cq, INVALID_ARGUMENT, "top_n");
    ov.tenant_id = (char *)plain.id;
    ov.oldest_open_limit = 100;
    V_OK("oldest_open_limit 100", GetOverview, get_overview, ov);
    ov.oldest_open_limit = 101;
    REFUSE("oldest_open_limit 101", GetOverview, ov, INVALID_ARGUMENT, "oldest_open_limit");
    ov.oldest_open_limit = 0;
    dq = dash_req(NULL, 0);
    dq.agent_limit = 501;
    REFUSE("agent_limit 501", GetDashboard, dq, INVALID_ARGUMENT, "agent_limit");
    dq = dash_req(NULL, 0);
    dq.category_top_n = 101;
    REFUSE("category_top_n 101", GetDashboard, dq, INVALID_ARGUMENT, "category_top_n");
    dq = dash_req(NULL, 0);
    dq.oldest_open_limit = 101;
    REFUSE("oldest_open_limit 101", GetDashboard, dq, INVALID_ARGUMENT, "oldest_open_limit");
    dq = dash_req(NULL, 0);
    dq.agent_limit = 500;
    dq.category_top_n = 100;
    dq.oldest_open_limit = 100;
    V_OK("the dashboard's largest limits", GetDashboard, get_dashboard, dq);

    /* Page tokens: malformed, or made for another range, sort or direction. */
    aq = agents_req(NULL, SORT_RESOLVED, 3, "");
    Tally__V1__GetAgentPerformanceReply *page =
        call_ok(S.q, DASH("GetAgentPerformance"), &aq.base,
                &tally__v1__get_agent_performance_reply__descriptor, "a first page");
    cr_assert(page && page->performance && page->performance->next_page_token[0],
              "10 agents, 3 per page, and no next_page_token");
    const char *tok = page->performance->next_page_token;
    aq = agents_req(NULL, SORT_RESOLVED, 3, tok);
    V_OK("the next page", GetAgentPerformance, get_agent_performance, aq);
    static const char *const garbage[] = { "garbage", "-1", "3.", "99999999999999999999.0",
                                           "\xff\xfe" };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        aq = agents_req(NULL, SORT_RESOLVED, 3, garbage[i]);
        REFUSE("malformed page_token", GetAgentPerformance, aq, INVALID_ARGUMENT, "page_token");
    }
    aq = agents_req(NULL, SORT_MEAN, 3, tok);
    REFUSE("page_token of another sort", GetAgentPerformance, aq, INVALID_ARGUMENT, "page_token");
    aq = agents_req(NULL, SORT_RESOLVED, 3, tok);
    aq.ascending = true;
    REFUSE("page_token of another direction", GetAgentPerformance, aq, INVALID_ARGUMENT,
           "page_token");
    aq = agents_req(days("2026-01-01", "2026-01-31"), SORT_RESOLVED, 3, tok);
    REFUSE("page_token of another range", GetAgentPerformance, aq, INVALID_ARGUMENT, "page_token");
    free_msg(page);

    /* Filters. */
    Tally__V1__Priority p0[] = { MEDIUM, 0 }, p9[] = { 9 }, pall[] = { LOW, MEDIUM, HIGH, URGENT };
    tq = trend_req(NULL, 0);
    tq.filter = filter_of(0, NULL, 2, p0);
    REFUSE("priority 0", GetVolumeTrend, tq, INVALID_ARGUMENT, "filter.priorities");
    sq = stats_req(NULL, 0);
    sq.filter = filter_of(0, NULL, 1, p9);
    REFUSE("priority 9", GetResolutionStats, sq, INVALID_ARGUMENT, "filter.priorities");
    cq = dist_req(NULL, 0);
    cq.filter = filter_of(0, NULL, 1, p9);
    REFUSE("priority 9", GetCategoryDistribution, cq, INVALID_ARGUMENT, "filter.priorities");
    dq = dash_req(NULL, 0);
    dq.filter = filter_of(0, NULL, 2, p0);
    REFUSE("priority 0", GetDashboard, dq, INVALID_ARGUMENT, "filter.priorities");
    tq.filter = filter_of(101, cats, 0, NULL);
    REFUSE("101 categories", GetVolumeTrend, tq, INVALID_ARGUMENT, "filter.category_ids");
    cq.filter = filter_of(101, cats, 0, NULL);
    REFUSE("101 categories", GetCategoryDistribution, cq, INVALID_ARGUMENT, "filter.category_ids");
    dq.filter = filter_of(101, cats, 0, NULL);
    REFUSE("101 categories", GetDashboard, dq, INVALID_ARGUMENT, "filter.category_ids");
    sq.filter = filter_of(100, cats, 4, pall);
    V_OK("100 categories and every priority", GetResolutionStats, get_resolution_stats, sq);
    /* The largest request: 5 years by week, 100 categories, every priority. */
    tq = trend_req(days(from, d1826), G_WEEK);
    tq.filter = filter_of(100, cats, 4, pall);
    V_OK("5 years by week, 100 categories, 4 priorities", GetVolumeTrend, get_volume_trend, tq);
    sq = stats_req(days(from, d1826), BY_BOTH);
    sq.filter = filter_of(100, cats, 4, pall);
    V_OK("5 years, 100 categories, 4 priorities, by both", GetResolutionStats, get_resolution_stats,
         sq);
    dq = dash_req(days(from, d1826), G_MONTH);
    dq.filter = filter_of(100, cats, 4, pall);
    dq.group_by = BY_BOTH;
    V_OK("5 years, 100 categories, 4 priorities, dashboard", GetDashboard, get_dashboard, dq);
    const char *badcat[] = { "billing", "no spaces" };
    sq.filter = filter_of(2, badcat, 0, NULL);
    REFUSE("a malformed category id", GetResolutionStats, sq, INVALID_ARGUMENT,
           "filter.category_ids");

    /* Consistency tokens. */
    Tally__V1__ConsistencyToken ct = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    ct.complaint_id = 5;
    ct.version = 0;
    ov.consistency = &ct;
    REFUSE("version 0 with a complaint", GetOverview, ov, INVALID_ARGUMENT, "consistency.version");
    tq = trend_req(NULL, 0);
    tq.consistency = &ct;
    REFUSE("version 0 with a complaint", GetVolumeTrend, tq, INVALID_ARGUMENT,
           "consistency.version");
    dq = dash_req(NULL, 0);
    dq.consistency = &ct;
    REFUSE("version 0 with a complaint", GetDashboard, dq, INVALID_ARGUMENT, "consistency.version");
    ct.version = -2;
    aq = agents_req(NULL, 0, 0, "");
    aq.consistency = &ct;
    REFUSE("version -2 with a complaint", GetAgentPerformance, aq, INVALID_ARGUMENT,
           "consistency.version");
    ct.complaint_id = -3;
    ct.version = 1;
    cq = dist_req(NULL, 0);
    cq.consistency = &ct;
    REFUSE("complaint_id -3", GetCategoryDistribution, cq, INVALID_ARGUMENT,
           "consistency.complaint_id");
    ct.complaint_id = 0;
    ct.version = 7;
    ov.consistency = &ct;
    V_OK("complaint_id 0: no token (version ignored)", GetOverview, get_overview, ov);
    ov.consistency = NULL;
    ov.fail_if_stale = true;
    V_OK("fail_if_stale without a token", GetOverview, get_overview, ov);
}

/* ---- (5) Redis down ---------------------------------------------------------------------------
 */

/*
 * A next-page token used on a query-svc that has not seen the tenant yet (another replica
 * behind the gateway's balancer, or one just restarted). Such a query-svc learns the tenant's
 * time zone from its first read, so until then its default range is the UTC one: a token was
 * refused as "made for another range" whenever the tenant's day was not UTC's. At any hour one
 * of these two tenants (UTC+14 from 10:00 UTC, UTC-11 before 11:00 UTC) has another day than
 * UTC.
 */
static const tdef east = { "east", "Pacific/Kiritimati", { "web" }, { "a1", "a2", "a3", "a4" }, 0,
                           NULL };
static const tdef west = { "west", "Pacific/Pago_Pago", { "web" }, { "a1", "a2", "a3", "a4" }, 0,
                           NULL };

Test(query, a_page_token_holds_on_a_query_svc_new_to_the_tenant)
{
    const tdef *both[] = { &east, &west };
    seed_rng("a_page_token_holds_on_a_query_svc_new_to_the_tenant");
    for (int i = 0; i < 2; i++) {
        put_tenant(both[i]);
        wait_caught_up(both[i]->id);
    }
    char *tok[2];
    for (int i = 0; i < 2; i++) {
        Tally__V1__GetAgentPerformanceRequest aq = agents_req(NULL, SORT_ID, 2, "");
        aq.tenant_id = (char *)both[i]->id;
        Tally__V1__GetAgentPerformanceReply *page =
            call_ok(S.q, DASH("GetAgentPerformance"), &aq.base,
                    &tally__v1__get_agent_performance_reply__descriptor, "a first page");
        cr_assert(page && page->performance && page->performance->next_page_token[0],
                  "%s: 4 agents, 2 per page, and no next_page_token", both[i]->id);
        tok[i] = strdup(page->performance->next_page_token);
        free_msg(page);
    }
    sys_query_restart(&S);
    for (int i = 0; i < 2; i++) {
        Tally__V1__GetAgentPerformanceRequest aq = agents_req(NULL, SORT_ID, 2, tok[i]);
        aq.tenant_id = (char *)both[i]->id;
        Tally__V1__GetAgentPerformanceReply *page =
            call_ok(S.q, DASH("GetAgentPerformance"), &aq.base,
                    &tally__v1__get_agent_performance_reply__descriptor,
                    i ? "the next page, UTC-11, on a new query-svc"
                      : "the next page, UTC+14, on a new query-svc");
        cr_expect(page && page->performance && page->performance->n_agents == 2 &&
                      !page->performance->next_page_token[0],
                  "%s: the second page is not the last 2 agents", both[i]->id);
        free_msg(page);
        free(tok[i]);
    }
}

Test(query, redis_down_is_unavailable_quickly)
{
    char body[4096];
    seed_rng("redis_down_is_unavailable_quickly");
    put_tenant(&plain);
    wait_caught_up(plain.id);
    cr_assert_eq(http_get(S.query.http_port, "/readyz", body, sizeof(body)), 200,
                 "/readyz before Redis went down: %s", body);
    Tally__V1__GetDashboardRequest dq = dash_req(NULL, 0);
    free_msg(call_ok(S.q, DASH("GetDashboard"), &dq.base,
                     &tally__v1__get_dashboard_reply__descriptor, "Redis up"));
    sys_projector_stop(&S);
    sys_redis_kill(&S);
    Tally__V1__GetOverviewRequest oq = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    oq.tenant_id = (char *)plain.id;
    Tally__V1__GetVolumeTrendRequest tq = trend_req(NULL, 0);
    Tally__V1__GetResolutionStatsRequest sq = stats_req(NULL, 0);
    Tally__V1__GetAgentPerformanceRequest aq = agents_req(NULL, 0, 0, "");
    Tally__V1__GetCategoryDistributionRequest cq = dist_req(NULL, 0);
    struct {
        const char *method;
        const ProtobufCMessage *msg;
    } calls[] = {
        { DASH("GetOverview"), &oq.base },
        { DASH("GetVolumeTrend"), &tq.base },
        { DASH("GetResolutionStats"), &sq.base },
        { DASH("GetAgentPerformance"), &aq.base },
        { DASH("GetCategoryDistribution"), &cq.base },
        { DASH("GetDashboard"), &dq.base },
    };
    for (int round = 0; round < 2; round++) /* every worker, connected before or not */
        for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
            gc_result r;
            call_code("Redis down", calls[i].method, calls[i].msg, DEADLINE_MS, UNAVAILABLE, &r);
            if (r.seconds > 2.0)
                bad("Redis down: %s took %.2f s to answer %s (want within 2 s)", calls[i].method,
                    r.seconds, tally_grpc_code_name(r.code));
        }
    /* The readiness checks run every few seconds: /readyz turns within a couple of rounds. */
    int st = 200;
    for (int64_t until = sys_mono_ms() + 10000; st == 200 && sys_mono_ms() < until;
         sys_sleep_ms(100))
        st = http_get(S.query.http_port, "/readyz", body, sizeof(body));
    if (st == 200)
        bad("Redis down: /readyz is still 200 after 10 s: %s", body);
}
