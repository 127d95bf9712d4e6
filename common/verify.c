/*
 * verify: the runner (verify.h): one consistent read of a tenant's keys from Redis, the SQL
 * that computes the same figures as of the versions that read says are applied, the
 * comparison (verify_model.c), and the re-check after the settle delay of what may be in
 * flight.
 */
#include "verify.h"
#include "stream.h"

#include "civil.h"
#include "err.h"
#include "now.h"
#include "verify_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GEN_RETRIES    3
#define RECHECK_CHUNK  500
#define DEFAULT_SQL_MS 60000

const char VERIFY_SQL_ASSIGNED_AGENT[] =
    /* agent_id (field 2, tag 0x12) of a serialized ComplaintAssigned; field 1 (tag 0x0a)
       previous_agent_id may come first; ids are <= 64 bytes, so lengths are one byte; an
       absent field 2 means unassigned. A ComplaintAssigned always carries category_id, so
       the byte after field 1 exists. */
    "CREATE OR REPLACE FUNCTION pg_temp.assigned_agent(p bytea) RETURNS text LANGUAGE sql"
    " IMMUTABLE AS $$"
    " SELECT CASE WHEN get_byte(p, o) = 18"
    "  THEN convert_from(substring(p FROM o + 3 FOR get_byte(p, o + 1)), 'UTF8') ELSE '' END"
    " FROM (SELECT CASE WHEN get_byte(p, 0) = 10 THEN 2 + get_byte(p, 1) ELSE 0 END AS o) x $$";

/*
 * Every complaint of the tenant, with its state as of the applied version cv.v (NULL: none).
 * The creation day (of the version-1 event) is looked up only for complaints created within
 * two days of the window (a margin wider than any time zone): the rest count in no day key.
 * Times in ms as command-svc computes them: (extract(epoch FROM t) * 1000)::bigint.
 */
static const char SQL_COMPLAINTS[] =
    "SELECT c.complaint_id, c.version, cv.v,"
    " (extract(epoch FROM c.created_at) * 1000)::bigint, c.category_id, c.priority,"
    " CASE WHEN cv.v IS NULL THEN 0 WHEN cv.v = c.version THEN c.status"
    "  ELSE (SELECT h.to_status FROM status_history h"
    "   WHERE h.complaint_id = c.complaint_id AND h.version <= cv.v"
    "   ORDER BY h.version DESC LIMIT 1) END,"
    " CASE WHEN cv.v IS NULL THEN ''"
    "  WHEN cv.v = c.version THEN coalesce(c.assigned_agent_id, '')"
    "  ELSE coalesce((SELECT pg_temp.assigned_agent(a.payload) FROM events a"
    "   WHERE a.complaint_id = c.complaint_id AND a.type = 2 AND a.version <= cv.v"
    "   ORDER BY a.version DESC LIMIT 1), '') END,"
    " CASE WHEN c.created_at >= $2::date - interval '2 days'"
    "  THEN (SELECT e.local_day - DATE '1970-01-01' FROM events e"
    "   WHERE e.complaint_id = c.complaint_id AND e.version = 1) END"
    " FROM complaints c LEFT JOIN verify_cv cv ON cv.complaint_id = c.complaint_id"
    " WHERE c.tenant_id = $1";
enum { C_ID, C_VERSION, C_CV, C_CREATED, C_CAT, C_PRIO, C_STATUS, C_AGENT, C_DAY };

/* Applied versions of complaints the tenant does not have. */
static const char SQL_UNKNOWN[] =
    "SELECT cv.complaint_id, cv.v FROM verify_cv cv WHERE NOT EXISTS (SELECT 1 FROM complaints c"
    " WHERE c.complaint_id = cv.complaint_id AND c.tenant_id = $1) ORDER BY 1";

/*
 * The applied resolutions of the window: day number, category, priority, seconds, agent.
 * changed_at is the event's occurred_at; the margin of two days only narrows the rows whose
 * local_day is looked up.
 */
static const char SQL_RESOLUTIONS[] =
    "SELECT e.local_day - DATE '1970-01-01', c.category_id, c.priority,"
    " ((extract(epoch FROM h.changed_at) * 1000)::bigint"
    "  - (extract(epoch FROM c.created_at) * 1000)::bigint) / 1000,"
    " coalesce((SELECT pg_temp.assigned_agent(a.payload) FROM events a"
    "  WHERE a.complaint_id = h.complaint_id AND a.type = 2 AND a.version < h.version"
    "  ORDER BY a.version DESC LIMIT 1), '')"
    " FROM status_history h"
    " JOIN verify_cv cv ON cv.complaint_id = h.complaint_id AND h.version <= cv.v"
    " JOIN complaints c ON c.complaint_id = h.complaint_id"
    " JOIN events e ON e.complaint_id = h.complaint_id AND e.version = h.version"
    " WHERE h.tenant_id = $1 AND h.to_status = 3"
    " AND h.changed_at >= $2::date - interval '2 days'"
    " AND e.local_day BETWEEN $2::date AND $3::date";

/* Reference data: (key, field, value) with key VM_TENANT (4), VM_CATS (5), VM_AGENTS (6). */
_Static_assert(VM_TENANT == 4 && VM_CATS == 5 && VM_AGENTS == 6, "SQL_REFS names the keys");
static const char SQL_REFS[] =
    "SELECT 4, 'name', name FROM tenants WHERE tenant_id = $1"
    " UNION ALL SELECT 4, 'time_zone', time_zone FROM tenants WHERE tenant_id = $1"
    " UNION ALL SELECT 5, category_id, name FROM categories WHERE tenant_id = $1"
    " UNION ALL SELECT 6, agent_id, name FROM agents WHERE tenant_id = $1";

/* The tenants, each with its local today as a day number. */
static const char SQL_TENANTS[] =
    "SELECT tenant_id, (now() AT TIME ZONE time_zone)::date - DATE '1970-01-01' FROM tenants"
    " WHERE $1 = '' OR tenant_id = $1 ORDER BY 1";

/* What may be in flight, re-checked after the settle delay. */
typedef struct pending {
    char *tenant, *key, *field, *expected, *found;
    const char *view;
    int kind;   /* VM_TENANT, VM_CATS, VM_AGENTS, or -1 for a cv lag */
    int64_t id; /* cv: the complaint and the version PostgreSQL had */
    int64_t want;
} pending;

typedef struct vrun {
    pgx_conn *pg;
    kv_conn *kv;
    const verify_options *o;
    verify_diff_fn fn;
    void *arg;
    verify_stats *st;
    char *err;
    size_t errlen;
    int64_t sql_timeout;
    pending *p;
    size_t np, capp;
    int oom;
} vrun;

static int fail(vrun *v, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(vrun *v, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->err, v->errlen, fmt, ap);
    va_end(ap);
    return code;
}

static void emit(vrun *v, const verify_diff *d)
{
    v->st->diffs++;
    if (v->fn)
        v->fn(d, v->arg);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void add_pending(vrun *v, const pending *p)
{
    if (v->np == v->capp) {
        size_t cap = v->capp ? v->capp * 2 : 64;
        pending *n = realloc(v->p, cap * sizeof(*n));
        if (!n) {
            v->oom = 1;
            return;
        }
        v->p = n;
        v->capp = cap;
    }
    pending *q = &v->p[v->np++];
    *q = *p;
    q->tenant = strdup(p->tenant);
    q->key = strdup(p->key);
    q->field = strdup(p->field);
    q->expected = dup_or_null(p->expected);
    q->found = dup_or_null(p->found);
    if (!q->tenant || !q->key || !q->field || (p->expected && !q->expected) ||
        (p->found && !q->found))
        v->oom = 1;
}

static void pending_release(vrun *v)
{
    for (size_t i = 0; i < v->np; i++) {
        free(v->p[i].tenant);
        free(v->p[i].key);
        free(v->p[i].field);
        free(v->p[i].expected);
        free(v->p[i].found);
    }
    free(v->p);
    v->p = NULL;
    v->np = v->capp = 0;
}

/* A reference-data difference: re-checked later (a rename may be in flight). */
typedef struct ref_ctx {
    vrun *v;
    int kind;
} ref_ctx;

static void ref_diff(const verify_diff *d, void *arg)
{
    ref_ctx *c = arg;
    pending p = { .tenant = (char *)d->tenant,
                  .key = (char *)d->key,
                  .field = (char *)d->field,
                  .expected = (char *)d->expected,
                  .found = (char *)d->found,
                  .view = d->view,
                  .kind = c->kind };
    add_pending(c->v, &p);
}

static void view_diff(const verify_diff *d, void *arg)
{
    emit(arg, d);
}

/* ---- Redis --------------------------------------------------------------------------------- */

static redisContext *redis(vrun *v)
{
    if (kv_connect(v->kv) != 0)
        return NULL;
    return kv_ctx(v->kv);
}

static int redis_fail(vrun *v, const char *what)
{
    int rc = fail(v, TALLY_EUNAVAIL, "redis: %s: %s", what, kv_errstr(v->kv));
    kv_reset(v->kv);
    return rc;
}

/* The tenant's current generation into gen ("1" when unset). */
static int read_gen(vrun *v, const char *tenant, char *gen, size_t len)
{
    redisContext *c = redis(v);
    if (!c)
        return fail(v, TALLY_EUNAVAIL, "redis: %s", kv_errstr(v->kv));
    redisReply *r = redisCommand(c, "GET " STREAM_TENANT "gen", tenant);
    if (!r)
        return redis_fail(v, "GET gen");
    int rc = 0;
    if (r->type == REDIS_REPLY_NIL)
        snprintf(gen, len, "1");
    else if (r->type == REDIS_REPLY_STRING && r->len > 0 && r->len < len &&
             strspn(r->str, "0123456789") == r->len)
        snprintf(gen, len, "%s", r->str);
    else
        rc = fail(v, TALLY_EDATALOSS, "{t:%s}:gen is not a generation number", tenant);
    freeReplyObject(r);
    return rc;
}

/*
 * One MULTI/EXEC of GET gen, HGETALL P cv and every key of the model: a consistent cut of the
 * read model. *exec is the EXEC reply (caller frees); its element 0 is the generation.
 */
static int snapshot(vrun *v, const verify_model *m, const char *tenant, const char *gen,
                    redisReply **exec)
{
    redisContext *c = redis(v);
    *exec = NULL;
    if (!c)
        return fail(v, TALLY_EUNAVAIL, "redis: %s", kv_errstr(v->kv));
    redisAppendCommand(c, "MULTI");
    redisAppendCommand(c, "GET " STREAM_TENANT "gen", tenant);
    redisAppendCommand(c, "HGETALL " STREAM_TENANT "%s:cv", tenant, gen);
    for (size_t i = 0; i < m->nkeys; i++) {
        int k = m->keys[i].kind;
        if (k == VK_COUNT_ZSET || k == VK_SCORE_ZSET)
            redisAppendCommand(c, "ZRANGE %s 0 -1 WITHSCORES", m->keys[i].name);
        else
            redisAppendCommand(c, "HGETALL %s", m->keys[i].name);
    }
    redisAppendCommand(c, "EXEC");
    size_t n = m->nkeys + 4;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
            return redis_fail(v, "MULTI/EXEC of the tenant's keys");
        if (i + 1 < n) {
            if (r->type == REDIS_REPLY_ERROR && !rc)
                rc = fail(v, TALLY_EUNAVAIL, "redis: %s", r->str);
            freeReplyObject(r);
            continue;
        }
        if (!rc && (r->type != REDIS_REPLY_ARRAY || r->elements != n - 2))
            rc = fail(v, TALLY_EUNAVAIL, "redis: EXEC: %s",
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        if (rc)
            freeReplyObject(r);
        else
            *exec = r;
    }
    return rc;
}

/* ---- PostgreSQL ---------------------------------------------------------------------------- */

static int pg_fail(vrun *v, const char *what)
{
    return fail(v, TALLY_EUNAVAIL, "postgresql: %s: %s", what, pgx_errstr(v->pg));
}

static int sql(vrun *v, const char *q, int n, const Oid *types, const char *const *vals,
               const int *lens, const int *fmts, PGresult **out, const char *what)
{
    if (pgx_exec_params(v->pg, q, n, types, vals, lens, fmts, v->sql_timeout, out) != 0)
        return pg_fail(v, what);
    return 0;
}

static int64_t num(const PGresult *r, int row, int col)
{
    return pgx_int(r, row, col);
}

/* ---- one tenant ---------------------------------------------------------------------------- */

static void cv_diff(vrun *v, const char *tenant, const char *key, int64_t id, const char *want,
                    const char *found)
{
    char f[24];
    snprintf(f, sizeof(f), "%" PRId64, id);
    verify_diff d = {
        .tenant = tenant, .view = "cv", .key = key, .field = f, .expected = want, .found = found
    };
    emit(v, &d);
}

/*
 * The applied versions of the snapshot (EXEC element 1) as two int8 arrays for verify_cv.
 * A field that is not a complaint id with an integer version is a difference at once.
 */
static int cv_arrays(vrun *v, const char *tenant, const char *cvkey, const redisReply *cv,
                     pgx_array *ids, pgx_array *vers)
{
    pgx_array_init(ids, PGX_OID_INT8);
    pgx_array_init(vers, PGX_OID_INT8);
    if (cv->type != REDIS_REPLY_ARRAY) {
        verify_diff d = {
            tenant, "cv",     cvkey,
            "",     "a hash", cv->type == REDIS_REPLY_ERROR ? cv->str : "not a hash"
        };
        emit(v, &d);
        goto out;
    }
    for (size_t i = 0; i + 1 < cv->elements; i += 2) {
        const char *f = cv->element[i]->str, *val = cv->element[i + 1]->str;
        char *e1, *e2;
        long long id = f ? strtoll(f, &e1, 10) : 0, ver = val ? strtoll(val, &e2, 10) : 0;
        if (!f || !val || *e1 || *e2 || id < 1 || ver < 1) {
            verify_diff d = { tenant, "cv", cvkey, f ? f : "", NULL, val };
            emit(v, &d);
            continue;
        }
        pgx_array_int(ids, id);
        pgx_array_int(vers, ver);
    }
out:
    pgx_array_finish(ids);
    pgx_array_finish(vers);
    return ids->err || vers->err ? fail(v, TALLY_ENOMEM, "the applied versions are too many") : 0;
}

/* Loads verify_cv and runs the queries, in one REPEATABLE READ transaction. */
static int tenant_sql(vrun *v, const char *tenant, const verify_model *m, pgx_array *ids,
                      pgx_array *vers, PGresult **cres, PGresult **unk, PGresult **res,
                      PGresult **refs)
{
    char first[CIVIL_DAY_LEN], last[CIVIL_DAY_LEN];
    civil_format(m->first, first);
    civil_format(m->last, last);
    const char *t1[] = { tenant }, *t2[] = { tenant, first }, *t3[] = { tenant, first, last };
    const char *arr[] = { (const char *)ids->buf, (const char *)vers->buf };
    const int lens[] = { (int)ids->len, (int)vers->len }, fmts[] = { 1, 1 };
    const Oid types[] = { PGX_OID_INT8_ARRAY, PGX_OID_INT8_ARRAY };
    PGresult *r = NULL;
    int rc;
    if (pgx_set_tenant(v->pg, tenant) != 0) /* row-level security: this tenant's rows only */
        return fail(v, TALLY_EINVAL, "not a tenant id: \"%.70s\"", tenant);
    if (pgx_connect(v->pg) != 0)
        return pg_fail(v, "connect");
    if (pgx_exec_sql(v->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ", v->sql_timeout, &r) != 0)
        return pg_fail(v, "BEGIN");
    PQclear(r);
    if ((rc = sql(v,
                  "CREATE TEMP TABLE verify_cv (complaint_id bigint PRIMARY KEY, v bigint"
                  " NOT NULL) ON COMMIT DROP",
                  0, NULL, NULL, NULL, NULL, &r, "CREATE TEMP TABLE verify_cv")))
        goto out_rollback;
    PQclear(r);
    if ((rc = sql(v, "INSERT INTO verify_cv SELECT * FROM unnest($1::int8[], $2::int8[])", 2, types,
                  arr, lens, fmts, &r, "INSERT INTO verify_cv")))
        goto out_rollback;
    PQclear(r);
    if ((rc = sql(v, "ANALYZE verify_cv", 0, NULL, NULL, NULL, NULL, &r, "ANALYZE")))
        goto out_rollback;
    PQclear(r);
    if ((rc = sql(v, VERIFY_SQL_ASSIGNED_AGENT, 0, NULL, NULL, NULL, NULL, &r,
                  "CREATE FUNCTION pg_temp.assigned_agent")))
        goto out_rollback;
    PQclear(r);
    if ((rc = sql(v, SQL_COMPLAINTS, 2, NULL, t2, NULL, NULL, cres, "the complaints")) ||
        (rc = sql(v, SQL_UNKNOWN, 1, NULL, t1, NULL, NULL, unk, "the unknown complaints")) ||
        (rc = sql(v, SQL_RESOLUTIONS, 3, NULL, t3, NULL, NULL, res, "the resolutions")) ||
        (rc = sql(v, SQL_REFS, 1, NULL, t1, NULL, NULL, refs, "the reference data")))
        goto out_rollback;
    if (pgx_exec_sql(v->pg, "COMMIT", v->sql_timeout, &r) != 0)
        return pg_fail(v, "COMMIT");
    PQclear(r);
    return 0;
out_rollback:
    if (pgx_exec_sql(v->pg, "ROLLBACK", v->sql_timeout, &r) == 0)
        PQclear(r);
    else
        pgx_reset(v->pg);
    return rc;
}

/* Folds the SQL results into m; queues cv lags; reports cv drift that cannot be in flight. */
static int fold(vrun *v, verify_model *m, const char *tenant, const char *cvkey,
                const PGresult *cres, const PGresult *unk, const PGresult *res,
                const PGresult *refs)
{
    char want[24], found[24];
    for (int i = 0; i < PQntuples(cres); i++) {
        int64_t id = num(cres, i, C_ID), ver = num(cres, i, C_VERSION);
        if (pgx_null(cres, i, C_CV) || num(cres, i, C_CV) < ver) {
            snprintf(want, sizeof(want), "%" PRId64, ver);
            snprintf(found, sizeof(found), "%" PRId64, num(cres, i, C_CV));
            pending p = { .tenant = (char *)tenant,
                          .key = (char *)cvkey,
                          .field = "",
                          .expected = want,
                          .found = pgx_null(cres, i, C_CV) ? NULL : found,
                          .view = "cv",
                          .kind = -1,
                          .id = id,
                          .want = ver };
            add_pending(v, &p);
        } else if (num(cres, i, C_CV) > ver) {
            snprintf(want, sizeof(want), "%" PRId64, ver);
            snprintf(found, sizeof(found), "%" PRId64, num(cres, i, C_CV));
            cv_diff(v, tenant, cvkey, id, want, found);
        }
        v->st->fields++;
        if (pgx_null(cres, i, C_CV))
            continue;
        verify_complaint c = { .id = id,
                               .status = (int)num(cres, i, C_STATUS),
                               .priority = (int)num(cres, i, C_PRIO),
                               .category = PQgetvalue(cres, i, C_CAT),
                               .agent = PQgetvalue(cres, i, C_AGENT),
                               .created_ms = num(cres, i, C_CREATED),
                               .day = pgx_null(cres, i, C_DAY) ? INT64_MIN : num(cres, i, C_DAY) };
        vm_complaint(m, &c);
    }
    for (int i = 0; i < PQntuples(unk); i++)
        cv_diff(v, tenant, cvkey, num(unk, i, 0), NULL, PQgetvalue(unk, i, 1));
    for (int i = 0; i < PQntuples(res); i++) {
        verify_resolution r = { .day = num(res, i, 0),
                                .category = PQgetvalue(res, i, 1),
                                .priority = (int)num(res, i, 2),
                                .secs = num(res, i, 3),
                                .agent = PQgetvalue(res, i, 4) };
        vm_resolution(m, &r);
    }
    for (int i = 0; i < PQntuples(refs); i++)
        vm_ref(m, (int)num(refs, i, 0), PQgetvalue(refs, i, 1), PQgetvalue(refs, i, 2));
    return m->err || v->oom ? fail(v, TALLY_ENOMEM, "out of memory") : 0;
}

static int tenant_run(vrun *v, const char *tenant, int64_t today)
{
    char gen[24], cvkey[128];
    int64_t first, last, t0;
    verify_model m;
    redisReply *exec = NULL;
    PGresult *cres = NULL, *unk = NULL, *res = NULL, *refs = NULL;
    pgx_array ids, vers;
    int rc;
    verify_window(today, v->o->days, &first, &last);
    for (int attempt = 0;; attempt++) {
        if ((rc = read_gen(v, tenant, gen, sizeof(gen))))
            return rc;
        if ((rc = vm_init(&m, tenant, gen, first, last)))
            return fail(v, rc, "cannot lay out the keys of tenant %s", tenant);
        t0 = now_mono_ms();
        rc = snapshot(v, &m, tenant, gen, &exec);
        v->st->redis_ms += now_mono_ms() - t0;
        if (rc)
            goto out_model;
        const redisReply *g = exec->element[0];
        bool same = g->type == REDIS_REPLY_NIL
                        ? strcmp(gen, "1") == 0
                        : g->type == REDIS_REPLY_STRING && strcmp(g->str, gen) == 0;
        if (same)
            break;
        freeReplyObject(exec);
        vm_release(&m);
        if (attempt + 1 == GEN_RETRIES)
            return fail(v, TALLY_EUNAVAIL, "tenant %s: the generation keeps changing", tenant);
    }
    snprintf(cvkey, sizeof(cvkey), STREAM_TENANT "%s:cv", tenant, gen);
    if ((rc = cv_arrays(v, tenant, cvkey, exec->element[1], &ids, &vers)))
        goto out_arrays;
    t0 = now_mono_ms();
    rc = tenant_sql(v, tenant, &m, &ids, &vers, &cres, &unk, &res, &refs);
    v->st->sql_ms += now_mono_ms() - t0;
    if (rc)
        goto out_results;
    if ((rc = fold(v, &m, tenant, cvkey, cres, unk, res, refs)))
        goto out_results;
    for (size_t i = 0; i < m.nkeys; i++) {
        ref_ctx rc_ = { v, (int)i };
        bool ref = i == VM_TENANT || i == VM_CATS || i == VM_AGENTS;
        vm_compare(&m, i, exec->element[i + 2], ref ? ref_diff : view_diff, ref ? (void *)&rc_ : v,
                   &v->st->fields);
    }
    v->st->keys += (int64_t)m.nkeys + 1;
    v->st->tenants++;
    rc = v->oom ? fail(v, TALLY_ENOMEM, "out of memory") : 0;
out_results:
    PQclear(cres);
    PQclear(unk);
    PQclear(res);
    PQclear(refs);
out_arrays:
    pgx_array_release(&ids);
    pgx_array_release(&vers);
    freeReplyObject(exec);
out_model:
    vm_release(&m);
    return rc;
}

/* ---- the settle re-check ------------------------------------------------------------------- */

static void sleep_ms(int ms, bool (*stop)(void))
{
    for (int left = ms; left > 0 && !(stop && stop()); left -= 100) {
        struct timespec ts = { 0, (left < 100 ? left : 100) * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
}

/* Re-reads pending cv lags p[0..n) (one tenant): HGET cv and HEXISTS parked for each. */
static int recheck_cv(vrun *v, pending *p, size_t n)
{
    char gen[24], key[128], want[24];
    int rc = read_gen(v, p[0].tenant, gen, sizeof(gen));
    if (rc)
        return rc;
    snprintf(key, sizeof(key), STREAM_TENANT "%s:cv", p[0].tenant, gen);
    redisContext *c = redis(v);
    if (!c)
        return fail(v, TALLY_EUNAVAIL, "redis: %s", kv_errstr(v->kv));
    for (size_t i = 0; i < n; i++) {
        redisAppendCommand(c, "HGET %s %" PRId64, key, p[i].id);
        redisAppendCommand(c, "HEXISTS " STREAM_TENANT "parked %" PRId64, p[i].tenant, p[i].id);
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *r = NULL, *pk = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r ||
            redisGetReply(c, (void **)&pk) != REDIS_OK || !pk) {
            if (r)
                freeReplyObject(r);
            return redis_fail(v, "re-reading the applied versions");
        }
        const char *now = r->type == REDIS_REPLY_STRING ? r->str : NULL;
        char *end;
        long long got = now ? strtoll(now, &end, 10) : 0;
        if (now && !*end && got >= p[i].want) {
            v->st->settled++;
        } else if (pk->type == REDIS_REPLY_INTEGER && pk->integer == 1) {
            v->st->parked++;
        } else {
            snprintf(want, sizeof(want), "%" PRId64, p[i].want);
            cv_diff(v, p[i].tenant, key, p[i].id, want, now);
        }
        freeReplyObject(r);
        freeReplyObject(pk);
    }
    return 0;
}

/* Re-reads a pending reference-data difference from both sides. */
static int recheck_ref(vrun *v, pending *p)
{
    static const char *const q[] = {
        [VM_TENANT] = "SELECT CASE $2 WHEN 'name' THEN name WHEN 'time_zone' THEN time_zone END"
                      " FROM tenants WHERE tenant_id = $1",
        [VM_CATS] = "SELECT name FROM categories WHERE tenant_id = $1 AND category_id = $2",
        [VM_AGENTS] = "SELECT name FROM agents WHERE tenant_id = $1 AND agent_id = $2",
    };
    const char *params[] = { p->tenant, p->field };
    PGresult *r = NULL;
    if (pgx_set_tenant(v->pg, p->tenant) != 0)
        return fail(v, TALLY_EINVAL, "not a tenant id: \"%.70s\"", p->tenant);
    if (pgx_connect(v->pg) != 0 ||
        pgx_exec_params(v->pg, q[p->kind], 2, NULL, params, NULL, NULL, v->sql_timeout, &r) != 0)
        return pg_fail(v, "re-reading reference data");
    const char *want = PQntuples(r) == 1 && !pgx_null(r, 0, 0) ? PQgetvalue(r, 0, 0) : NULL;
    redisContext *c = redis(v);
    if (!c) {
        PQclear(r);
        return fail(v, TALLY_EUNAVAIL, "redis: %s", kv_errstr(v->kv));
    }
    redisReply *x = redisCommand(c, "HGET %s %s", p->key, p->field);
    if (!x) {
        PQclear(r);
        return redis_fail(v, "re-reading reference data");
    }
    /* An error reply (a key of the wrong type) is a difference of the whole key. */
    bool wrong_type = x->type == REDIS_REPLY_ERROR;
    const char *found = x->type == REDIS_REPLY_STRING || wrong_type ? x->str : NULL;
    bool same = !wrong_type && (want && found ? strcmp(want, found) == 0 : want == found);
    if (same) {
        v->st->settled++;
    } else {
        verify_diff d = { p->tenant, p->view, p->key, p->field, wrong_type ? p->expected : want,
                          found };
        emit(v, &d);
    }
    freeReplyObject(x);
    PQclear(r);
    return 0;
}

static int recheck(vrun *v)
{
    if (v->np == 0)
        return 0;
    sleep_ms(v->o->settle_ms, v->o->stop);
    for (size_t i = 0; i < v->np;) {
        size_t j = i + 1;
        int rc;
        if (v->p[i].kind < 0) {
            while (j < v->np && j - i < RECHECK_CHUNK && v->p[j].kind < 0 &&
                   strcmp(v->p[j].tenant, v->p[i].tenant) == 0)
                j++;
            rc = recheck_cv(v, &v->p[i], j - i);
        } else {
            rc = recheck_ref(v, &v->p[i]);
        }
        if (rc)
            return rc;
        i = j;
    }
    return 0;
}

/* ---- the run ------------------------------------------------------------------------------- */

int verify_run(pgx_conn *pg, kv_conn *kv, const verify_options *o, verify_diff_fn fn, void *arg,
               verify_stats *st, char *err, size_t errlen)
{
    vrun v = { .pg = pg,
               .kv = kv,
               .o = o,
               .fn = fn,
               .arg = arg,
               .st = st,
               .err = err,
               .errlen = errlen,
               .sql_timeout = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_SQL_MS };
    const char *tenant = o->tenant ? o->tenant : "";
    const char *params[] = { tenant };
    PGresult *tr = NULL;
    int64_t t0 = now_mono_ms();
    int rc = 0;
    memset(st, 0, sizeof(*st));
    if (errlen)
        err[0] = '\0';
    if (o->days < 1 || o->days > VERIFY_MAX_DAYS)
        return fail(&v, TALLY_EINVAL, "days must be 1..%d, not %d", VERIFY_MAX_DAYS, o->days);
    if (o->settle_ms < 0 || o->settle_ms > VERIFY_MAX_SETTLE_MS)
        return fail(&v, TALLY_EINVAL, "settle must be 0..%d ms, not %d", VERIFY_MAX_SETTLE_MS,
                    o->settle_ms);
    if (strlen(tenant) > 64 || strpbrk(tenant, "{}"))
        return fail(&v, TALLY_EINVAL, "not a tenant id: \"%.70s\"", tenant);
    if (pgx_set_tenant(pg, "*") != 0) /* the list of tenants; then each one's rows only */
        return fail(&v, TALLY_EINVAL, "cannot scope the session");
    if (pgx_connect(pg) != 0)
        return pg_fail(&v, "connect");
    if (pgx_exec_params(pg, SQL_TENANTS, 1, NULL, params, NULL, NULL, v.sql_timeout, &tr) != 0)
        return pg_fail(&v, "the tenants");
    if (tenant[0] && PQntuples(tr) == 0)
        rc = fail(&v, TALLY_ENOTFOUND, "tenant %s is not in PostgreSQL", tenant);
    for (int i = 0; !rc && i < PQntuples(tr); i++) {
        if (o->stop && o->stop())
            break;
        rc = tenant_run(&v, PQgetvalue(tr, i, 0), pgx_int(tr, i, 1));
    }
    PQclear(tr);
    if (!rc)
        rc = recheck(&v);
    pending_release(&v);
    st->total_ms = now_mono_ms() - t0;
    return rc;
}
