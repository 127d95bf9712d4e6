/*
 * The SQL oracle: every panel's answer computed independently with SQL over PostgreSQL's tables
 * (the file comment of query_int.h says how), and the checks that compare a reply with it.
 */
#include "pgdb.h"
#include "query_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- SQL ----------------------------------------------------------------------------------- */

PGresult *tq_sql(const char *q, int n, const char *const *params)
{
    return pgdb_sql(tq_sys.pg, q, n, params);
}

static void sql_exec(const char *q)
{
    PQclear(tq_sql(q, 0, NULL));
}

/* The one value of a one-row query, into out. */
char *tq_sql_str(char *out, size_t len, const char *q, int n, const char *const *params)
{
    PGresult *r = tq_sql(q, n, params);
    cr_assert_eq(PQntuples(r), 1, "%s: %d rows", q, PQntuples(r));
    snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

int64_t tq_sql_int(const char *q, int n, const char *const *params)
{
    char v[64];
    return strtoll(tq_sql_str(v, sizeof(v), q, n, params), NULL, 10);
}

int64_t tq_num(const PGresult *r, int row, int col)
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

void tq_sql_setup(void)
{
    for (size_t i = 0; i < sizeof(oracle_sql) / sizeof(oracle_sql[0]); i++)
        sql_exec(oracle_sql[i]);
    tq_sql_dirty = true;
}

/* Takes the snapshots again if a command ran since. */
void tq_sql_snapshot(void)
{
    if (!tq_sql_dirty)
        return;
    sql_exec("DROP TABLE IF EXISTS cre_m, res_m");
    sql_exec("CREATE TEMP TABLE cre_m AS SELECT * FROM cre");
    sql_exec("CREATE TEMP TABLE res_m AS SELECT * FROM res");
    sql_exec("ANALYZE cre_m, res_m");
    tq_sql_dirty = false;
}

/* day + n days, by PostgreSQL. */
char *tq_day_add(char out[11], const char *day, int n)
{
    char nb[16];
    snprintf(nb, sizeof(nb), "%d", n);
    const char *p[] = { day, nb };
    return tq_sql_str(out, 11, "SELECT ($1::date + $2::int)::text", 2, p);
}

/* The tenant-local day of a Unix ms time. */
static char *local_day(char out[11], const char *tenant, int64_t ms)
{
    char mb[24];
    snprintf(mb, sizeof(mb), "%" PRId64, ms);
    const char *p[] = { tenant, mb };
    return tq_sql_str(
        out, 11,
        "SELECT (to_timestamp($2::bigint / 1000.0) AT TIME ZONE time_zone)::date::text"
        " FROM tenants WHERE tenant_id = $1",
        2, p);
}

int64_t tq_events_of(const char *tenant)
{
    const char *p[] = { tenant };
    return tq_sql_int("SELECT count(*) FROM events WHERE tenant_id = $1", 1, p);
}

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
    tq_day_add(out->from, out->to, -29);
}

/* Whether the reply's range is the one asked for (when not, the panel's numbers are not
   compared: they are another range's). */
static bool check_range(const char *what, const Tally__V1__DateRange *got, const qrange *want)
{
    if (!got) {
        tq_bad("%s: no range in the reply", what);
        return false;
    }
    if (strcmp(got->from_day, want->from) != 0 || strcmp(got->to_day, want->to) != 0) {
        tq_bad("%s: range %s..%s, want %s..%s", what, got->from_day, got->to_day, want->from,
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
void tq_check_fresh_tok(const char *what, const char *tenant, const Tally__V1__Freshness *f,
                        const Tally__V1__ConsistencyToken *tok)
{
    const char *p[] = { tenant };
    if (!f) {
        tq_bad("%s: no freshness", what);
        return;
    }
    PGresult *r = tq_sql("SELECT count(*), coalesce(max(" RECORDED_MS "), 0) FROM events"
                         " WHERE tenant_id = $1",
                         1, p);
    int64_t n = tq_num(r, 0, 0), as_of = tq_num(r, 0, 1);
    PQclear(r);
    if (f->events_applied != n)
        tq_bad("%s: freshness.events_applied %" PRId64 ", PostgreSQL has %" PRId64 " events", what,
               f->events_applied, n);
    if (f->as_of_ms != as_of)
        tq_bad("%s: freshness.as_of_ms %" PRId64 ", the newest recorded_at is %" PRId64, what,
               f->as_of_ms, as_of);
    if (f->as_of_ms > f->server_time_ms)
        tq_bad("%s: freshness.as_of_ms %" PRId64 " is after server_time_ms %" PRId64
               " (a negative lag)",
               what, f->as_of_ms, f->server_time_ms);
    if (f->lag_ms != (f->as_of_ms ? f->server_time_ms - f->as_of_ms : 0))
        tq_bad("%s: freshness.lag_ms %" PRId64 " is not server_time_ms %" PRId64
               " - as_of_ms %" PRId64,
               what, f->lag_ms, f->server_time_ms, f->as_of_ms);
    if (f->rebuilding)
        tq_bad("%s: freshness.rebuilding without a rebuild", what);
    if (!tok && (f->stale || f->token_applied_version))
        tq_bad("%s: freshness says stale %d, token_applied_version %" PRId64 " without a token",
               what, f->stale, f->token_applied_version);
    if (tok && (f->stale || f->token_applied_version != tok->version))
        tq_bad("%s: freshness says stale %d, token_applied_version %" PRId64
               " for a token of complaint %" PRId64 " version %" PRId64,
               what, f->stale, f->token_applied_version, tok->complaint_id, tok->version);
    if (n > 0 && (f->apply_lag_ms < 0 || f->apply_lag_ms > 10 * 60 * 1000))
        tq_bad("%s: freshness.apply_lag_ms %" PRId64, what, f->apply_lag_ms);
    if (llabs(f->server_time_ms - now_wall_ms()) > 60000)
        tq_bad("%s: freshness.server_time_ms %" PRId64 " is far from now", what, f->server_time_ms);
}

void tq_check_fresh(const char *what, const char *tenant, const Tally__V1__Freshness *f)
{
    tq_check_fresh_tok(what, tenant, f, NULL);
}

/* A percentile estimate within the stated relative error of the exact nearest-rank value. */
static void check_pct(const char *what, const char *name, double got, const char *exact, double err)
{
    double want = exact && exact[0] ? strtod(exact, NULL) : 0.0;
    if (!tq_near(got, want, err))
        tq_bad("%s: %s %.3f, percentile_disc says %.0f (allowed relative error %.4f)", what, name,
               got, want, err);
}

static void check_err_bound(const char *what, double err)
{
    if (!(err > 0 && err <= 0.05))
        tq_bad("%s: relative error %.5f is not a useful bound (0 < e <= 0.05)", what, err);
}

void tq_check_overview(const char *what, const char *tenant, int limit,
                       const Tally__V1__Overview *o, int64_t server_ms)
{
    char today[11], tz[80], lb[16];
    if (!o) {
        tq_bad("%s: no overview", what);
        return;
    }
    tq_sql_snapshot();
    local_day(today, tenant, server_ms);
    if (strcmp(o->today, today) != 0)
        tq_bad("%s: today %s, want %s", what, o->today, today);
    const char *p[] = { tenant, today };
    tq_sql_str(tz, sizeof(tz), "SELECT time_zone FROM tenants WHERE tenant_id = $1", 1, p);
    if (strcmp(o->time_zone, tz) != 0)
        tq_bad("%s: time_zone %s, want %s", what, o->time_zone, tz);
    PGresult *r =
        tq_sql("SELECT count(*) FILTER (WHERE status = 1), count(*) FILTER (WHERE status = 2),"
               " count(*) FILTER (WHERE status = 3), count(*) FILTER (WHERE status = 4),"
               " (SELECT count(*) FROM cre_m x WHERE x.tenant_id = $1 AND x.day = $2),"
               " (SELECT count(*) FROM res_m x WHERE x.tenant_id = $1 AND x.day = $2),"
               " (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY secs) FROM res_m x"
               "  WHERE x.tenant_id = $1 AND x.day = $2)"
               " FROM complaints WHERE tenant_id = $1",
               2, p);
    const Tally__V1__StatusCounts *sc = o->status_counts;
    int64_t want[4] = { tq_num(r, 0, 0), tq_num(r, 0, 1), tq_num(r, 0, 2), tq_num(r, 0, 3) };
    if (!sc || sc->open != want[0] || sc->in_progress != want[1] || sc->resolved != want[2] ||
        sc->closed != want[3])
        tq_bad("%s: status counts %" PRId64 "/%" PRId64 "/%" PRId64 "/%" PRId64
               " (open/in progress/resolved/closed), want %" PRId64 "/%" PRId64 "/%" PRId64
               "/%" PRId64,
               what, sc ? sc->open : -1, sc ? sc->in_progress : -1, sc ? sc->resolved : -1,
               sc ? sc->closed : -1, want[0], want[1], want[2], want[3]);
    if (o->backlog != want[0] + want[1])
        tq_bad("%s: backlog %" PRId64 ", want %" PRId64, what, o->backlog, want[0] + want[1]);
    if (o->created_today != tq_num(r, 0, 4))
        tq_bad("%s: created_today %" PRId64 ", want %" PRId64 " (today %s)", what, o->created_today,
               tq_num(r, 0, 4), today);
    if (o->resolved_today != tq_num(r, 0, 5))
        tq_bad("%s: resolved_today %" PRId64 ", want %" PRId64 " (today %s)", what,
               o->resolved_today, tq_num(r, 0, 5), today);
    check_err_bound(what, o->resolution_relative_error);
    check_pct(what, "median_resolution_seconds_today", o->median_resolution_seconds_today,
              PQgetvalue(r, 0, 6), o->resolution_relative_error);
    PQclear(r);
    /* The oldest open complaints, oldest first, ties by id. */
    snprintf(lb, sizeof(lb), "%d", limit ? limit : 10);
    const char *q[] = { tenant, lb };
    r = tq_sql("SELECT complaint_id, " CREATED_MS ", status, priority, category_id,"
               " coalesce(assigned_agent_id, '') FROM complaints"
               " WHERE tenant_id = $1 AND status IN (1, 2) ORDER BY 2, 1 LIMIT $2::int",
               2, q);
    size_t n = (size_t)PQntuples(r);
    if (o->n_oldest_open != n)
        tq_bad("%s: %zu oldest open complaints, want %zu", what, o->n_oldest_open, n);
    for (size_t i = 0; i < n && i < o->n_oldest_open; i++) {
        const Tally__V1__OpenComplaint *c = o->oldest_open[i];
        int64_t id = tq_num(r, (int)i, 0), created = tq_num(r, (int)i, 1);
        int status = (int)tq_num(r, (int)i, 2), prio = (int)tq_num(r, (int)i, 3);
        const char *cat = PQgetvalue(r, (int)i, 4), *agent = PQgetvalue(r, (int)i, 5);
        if (c->complaint_id != id || c->created_at_ms != created || (int)c->status != status ||
            (int)c->priority != prio || strcmp(c->category_id, cat) != 0 ||
            strcmp(c->assigned_agent_id, agent) != 0)
            tq_bad("%s: oldest_open[%zu] is %" PRId64 " created %" PRId64
                   " status %d priority %d category %s agent \"%s\"; want %" PRId64
                   " created %" PRId64 " status %d priority %d category %s agent \"%s\"",
                   what, i, c->complaint_id, c->created_at_ms, c->status, c->priority,
                   c->category_id, c->assigned_agent_id, id, created, status, prio, cat, agent);
        else if (c->age_seconds != (server_ms - created) / 1000)
            tq_bad("%s: oldest_open[%zu] age_seconds %" PRId64 ", want %" PRId64, what, i,
                   c->age_seconds, (server_ms - created) / 1000);
    }
    PQclear(r);
}

const char *tq_gran_name(int g)
{
    return g == G_WEEK ? "WEEK" : g == G_MONTH ? "MONTH" : g == G_DAY ? "DAY" : "UNSPECIFIED";
}

void tq_check_trend(const char *what, const char *tenant, const qrange *req, int gran, const flt *f,
                    const Tally__V1__VolumeTrend *t, int64_t server_ms)
{
    qrange rg;
    fparams fp;
    char gb[8];
    if (!t) {
        tq_bad("%s: no trend", what);
        return;
    }
    tq_sql_snapshot();
    resolve_range(tenant, req, server_ms, &rg);
    if (!check_range(what, t->range, &rg))
        return;
    int g = gran ? gran : G_DAY;
    if ((int)t->granularity != g)
        tq_bad("%s: granularity %d, want %d", what, t->granularity, g);
    filter_params(f, &fp);
    snprintf(gb, sizeof(gb), "%d", g);
    const char *p[] = { tenant, fp.c, fp.p, rg.from, rg.to, gb };
    PGresult *r = tq_sql(
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
        tq_bad("%s: %zu buckets, want %zu", what, t->n_buckets, n);
    for (size_t i = 0; i < n; i++) {
        const char *label = PQgetvalue(r, (int)i, 0), *first = PQgetvalue(r, (int)i, 1),
                   *last = PQgetvalue(r, (int)i, 2);
        int64_t c = tq_num(r, (int)i, 3), rs = tq_num(r, (int)i, 4);
        tc += c;
        tr += rs;
        if (i >= t->n_buckets)
            continue;
        const Tally__V1__VolumeBucket *b = t->buckets[i];
        bool same = strcmp(b->label, label) == 0 && strcmp(b->first_day, first) == 0 &&
                    strcmp(b->last_day, last) == 0 && b->created == c && b->resolved == rs;
        if (!same && ++wrong <= 3) /* the first few wrong buckets of a call */
            tq_bad("%s: bucket %zu is %s %s..%s created %" PRId64 " resolved %" PRId64
                   "; want %s %s..%s created %" PRId64 " resolved %" PRId64,
                   what, i, b->label, b->first_day, b->last_day, b->created, b->resolved, label,
                   first, last, c, rs);
    }
    if (t->total_created != tc || t->total_resolved != tr)
        tq_bad("%s: totals created %" PRId64 " resolved %" PRId64 ", want %" PRId64 " and %" PRId64,
               what, t->total_created, t->total_resolved, tc, tr);
    PQclear(r);
}

static void check_summary(const char *what, const Tally__V1__ResolutionSummary *s,
                          const PGresult *r, int row, int col, double err)
{
    int64_t n = tq_num(r, row, col), sum = tq_num(r, row, col + 1);
    if (!s) {
        tq_bad("%s: no summary", what);
        return;
    }
    if (s->count != n)
        tq_bad("%s: count %" PRId64 ", want %" PRId64, what, s->count, n);
    double mean = n ? (double)sum / (double)n : 0.0;
    if (!tq_near(s->mean_seconds, mean, 1e-9))
        tq_bad("%s: mean_seconds %.6f, want %.6f (%" PRId64 " s / %" PRId64 ")", what,
               s->mean_seconds, mean, sum, n);
    check_pct(what, "p50_seconds", s->p50_seconds, PQgetvalue(r, row, col + 2), err);
    check_pct(what, "p90_seconds", s->p90_seconds, PQgetvalue(r, row, col + 3), err);
    check_pct(what, "p99_seconds", s->p99_seconds, PQgetvalue(r, row, col + 4), err);
}

#define STATS_SQL                                                                           \
    " count(*), coalesce(sum(secs), 0), percentile_disc(0.5) WITHIN GROUP (ORDER BY secs)," \
    " percentile_disc(0.9) WITHIN GROUP (ORDER BY secs),"                                   \
    " percentile_disc(0.99) WITHIN GROUP (ORDER BY secs)"                                   \
    " FROM res_m x WHERE x.tenant_id = $1 AND x.day BETWEEN $4::date AND $5::date AND" FILTER_SQL

void tq_check_stats(const char *what, const char *tenant, const qrange *req, int group_by,
                    const flt *f, const Tally__V1__ResolutionStats *s, int64_t server_ms)
{
    qrange rg;
    fparams fp;
    char q[1024], w[256];
    if (!s) {
        tq_bad("%s: no stats", what);
        return;
    }
    tq_sql_snapshot();
    resolve_range(tenant, req, server_ms, &rg);
    if (!check_range(what, s->range, &rg))
        return;
    int g = group_by ? group_by : BY_NONE;
    if ((int)s->group_by != g)
        tq_bad("%s: group_by %d, want %d", what, s->group_by, g);
    check_err_bound(what, s->percentile_relative_error);
    double err = s->percentile_relative_error;
    filter_params(f, &fp);
    const char *p[] = { tenant, fp.c, fp.p, rg.from, rg.to };
    PGresult *r = tq_sql("SELECT" STATS_SQL, 5, p);
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
        r = tq_sql(q, 5, p);
        n = (size_t)PQntuples(r);
        for (size_t i = 0; i < n && i < s->n_groups; i++) {
            const Tally__V1__ResolutionGroup *gr = s->groups[i];
            const char *k = PQgetvalue(r, (int)i, 0), *name = PQgetvalue(r, (int)i, 7);
            int pr = (int)tq_num(r, (int)i, 1);
            snprintf(w, sizeof(w), "%s group %zu (%s/%d)", what, i, k, pr);
            if (strcmp(gr->category_id, k) != 0 || (int)gr->priority != pr) {
                tq_bad("%s: is category \"%s\" priority %d", w, gr->category_id, gr->priority);
                continue;
            }
            if (strcmp(gr->category_name, by_k ? name : "") != 0)
                tq_bad("%s: category_name \"%s\", want \"%s\"", w, gr->category_name,
                       by_k ? name : "");
            check_summary(w, gr->summary, r, (int)i, 2, err);
        }
        PQclear(r);
    }
    if (s->n_groups != n)
        tq_bad("%s: %zu groups, want %zu", what, s->n_groups, n);
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
    tq_sql_snapshot();
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
    PGresult *r = tq_sql(q, 3, p);
    size_t n = (size_t)PQntuples(r);
    cr_assert_leq(n, max);
    for (size_t i = 0; i < n; i++) {
        snprintf(out[i].id, sizeof(out[i].id), "%s", PQgetvalue(r, (int)i, 0));
        snprintf(out[i].name, sizeof(out[i].name), "%s", PQgetvalue(r, (int)i, 1));
        out[i].n = tq_num(r, (int)i, 2);
        out[i].s = tq_num(r, (int)i, 3);
        out[i].open = tq_num(r, (int)i, 4);
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
        tq_bad("%s: no agent performance", what);
        return false;
    }
    if (!check_range(what, ap->range, rg))
        return false;
    if ((int)ap->sort_by != sort_by || ap->ascending != asc)
        tq_bad("%s: sort_by %d ascending %d, want %d %d", what, ap->sort_by, ap->ascending, sort_by,
               asc);
    if (ap->total_agents != (int32_t)nwant)
        tq_bad("%s: total_agents %d, want %zu", what, ap->total_agents, nwant);
    size_t end = offset + (size_t)limit < nwant ? offset + (size_t)limit : nwant;
    size_t n = end > offset ? end - offset : 0;
    if (ap->n_agents != n)
        tq_bad("%s: %zu agents on the page at %zu, want %zu", what, ap->n_agents, offset, n);
    for (size_t i = 0; i < n && i < ap->n_agents; i++) {
        const Tally__V1__AgentStats *a = ap->agents[i];
        const arow *w = &want[offset + i];
        double mean = w->n ? (double)w->s / (double)w->n : 0.0;
        if (strcmp(a->agent_id, w->id) != 0)
            tq_bad("%s: position %zu is agent %s (resolved %" PRId64 ", open %" PRId64
                   "), want %s (resolved %" PRId64 " mean %.3f open %" PRId64 ")",
                   what, offset + i, a->agent_id, a->resolved, a->open_assigned, w->id, w->n, mean,
                   w->open);
        else if (strcmp(a->agent_name, w->name) != 0 || a->resolved != w->n ||
                 !tq_near(a->mean_resolution_seconds, mean, 1e-9) || a->open_assigned != w->open)
            tq_bad("%s: agent %s has name \"%s\" resolved %" PRId64 " mean %.6f open %" PRId64
                   ", want \"%s\" %" PRId64 " %.6f %" PRId64,
                   what, w->id, a->agent_name, a->resolved, a->mean_resolution_seconds,
                   a->open_assigned, w->name, w->n, mean, w->open);
    }
    bool more = end < nwant;
    if (more != (ap->next_page_token[0] != '\0'))
        tq_bad("%s: next_page_token \"%s\" at %zu of %zu agents", what, ap->next_page_token, end,
               nwant);
    return true;
}

Tally__V1__GetAgentPerformanceReply *tq_agents_page(const char *tenant, const qrange *r,
                                                    int sort_by, bool asc, int limit,
                                                    const char *token, const char *what)
{
    Tally__V1__GetAgentPerformanceRequest q = TALLY__V1__GET_AGENT_PERFORMANCE_REQUEST__INIT;
    Tally__V1__DateRange dr;
    q.tenant_id = (char *)tenant;
    q.range = tq_range_msg(&dr, r, false);
    q.sort_by = (Tally__V1__AgentSortBy)sort_by;
    q.ascending = asc;
    q.limit = limit;
    q.page_token = (char *)(token ? token : "");
    return tq_call_ok(tq_sys.q, GC_DASHBOARD("GetAgentPerformance"), &q.base,
                      &tally__v1__get_agent_performance_reply__descriptor, what);
}

/*
 * Follows next_page_token from a first page to the end: every agent exactly once, in order.
 * first: the first page's panel (from GetAgentPerformance or GetDashboard).
 */
void tq_check_agent_pages(const char *what, const char *tenant, const qrange *req, int sort_by,
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
            tq_agents_page(tenant, req, sort_by, asc, limit, token, w);
        if (!rep || !rep->performance)
            break;
        check_agent_page(w, rep->performance, &rg, s, asc, want, nwant, offset, lim);
        offset += rep->performance->n_agents;
        snprintf(token, sizeof(token), "%s", rep->performance->next_page_token);
        call_free(rep);
    }
    if (offset != nwant)
        tq_bad("%s: the pages listed %zu agents, the tenant has %zu", what, offset, nwant);
}

void tq_check_distribution(const char *what, const char *tenant, const qrange *req, const flt *f,
                           int top_n, const Tally__V1__CategoryDistribution *d, int64_t server_ms)
{
    qrange rg;
    fparams fp;
    if (!d) {
        tq_bad("%s: no distribution", what);
        return;
    }
    tq_sql_snapshot();
    resolve_range(tenant, req, server_ms, &rg);
    if (!check_range(what, d->range, &rg))
        return;
    filter_params(f, &fp);
    const char *p[] = { tenant, fp.c, fp.p, rg.from, rg.to };
    PGresult *r =
        tq_sql("SELECT category_id, count(*) AS n, coalesce((SELECT name FROM categories y"
               " WHERE y.tenant_id = $1 AND y.category_id = x.category_id), '')"
               " FROM cre_m x WHERE x.tenant_id = $1 AND x.day BETWEEN $4::date AND"
               " $5::date AND" FILTER_SQL
               " GROUP BY category_id ORDER BY n DESC, category_id COLLATE \"C\"",
               5, p);
    size_t n = (size_t)PQntuples(r), top = (size_t)(top_n ? top_n : 10);
    size_t shown = n < top ? n : top;
    int64_t total = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        total += tq_num(r, (int)i, 1);
        if (i >= shown)
            other += tq_num(r, (int)i, 1);
    }
    if (d->total != total)
        tq_bad("%s: total %" PRId64 ", want %" PRId64, what, d->total, total);
    size_t rows = shown + (n > shown);
    if (d->n_categories != rows)
        tq_bad("%s: %zu rows, want %zu (%zu categories, top %zu)", what, d->n_categories, rows, n,
               top);
    for (size_t i = 0; i < shown && i < d->n_categories; i++) {
        const Tally__V1__CategoryShare *c = d->categories[i];
        int64_t cnt = tq_num(r, (int)i, 1);
        double share = total ? (double)cnt / (double)total : 0.0;
        if (strcmp(c->category_id, PQgetvalue(r, (int)i, 0)) != 0 || c->count != cnt ||
            c->is_other || strcmp(c->category_name, PQgetvalue(r, (int)i, 2)) != 0 ||
            !tq_near(c->share, share, 1e-9))
            tq_bad("%s: row %zu is %s \"%s\" %" PRId64
                   " share %.6f other %d; want %s \"%s\" %" PRId64 " share %.6f",
                   what, i, c->category_id, c->category_name, c->count, c->share, c->is_other,
                   PQgetvalue(r, (int)i, 0), PQgetvalue(r, (int)i, 2), cnt, share);
    }
    if (n > shown && d->n_categories == rows) {
        const Tally__V1__CategoryShare *c = d->categories[shown];
        double share = total ? (double)other / (double)total : 0.0;
        if (!c->is_other || c->category_id[0] || c->category_name[0] || c->count != other ||
            !tq_near(c->share, share, 1e-9))
            tq_bad("%s: the other row is \"%s\" \"%s\" %" PRId64
                   " share %.6f is_other %d; want %" PRId64 " share %.6f",
                   what, c->category_id, c->category_name, c->count, c->share, c->is_other, other,
                   share);
    }
    if (d->other_category_count != (int32_t)(n - shown))
        tq_bad("%s: other_category_count %d, want %zu", what, d->other_category_count, n - shown);
    PQclear(r);
}
