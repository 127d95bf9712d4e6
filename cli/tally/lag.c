/*
 * tally lag: where the read side is behind, for an operator at a terminal (docs/cli.md). Per
 * partition, one lag sample (common/lag.h, the same reading the projector's metrics make): the
 * stream's length, the group's undelivered and pending entries, the oldest unapplied entry's
 * age, the completeness watermark and its age, the dead letters. From PostgreSQL when a DSN is
 * given: the relay backlog (the outbox's rows, counted up to BACKLOG_LIMIT + 1 as the relay
 * counts them) and the tenants. Per tenant: its partition,
 * parked complaints, and the events applied and the last apply time of its freshness hash in
 * its current generation.
 *
 * Read-only and bounded: Redis sees only O(1) or bounded commands (no KEYS; without
 * PostgreSQL the tenants come from a SCAN of at most SCAN_CALLS calls), and the PostgreSQL
 * session is read-only with a statement timeout of --timeout. Exit status: 0 read, 1 Redis or
 * PostgreSQL failed (the message says which), 2 a usage error.
 */
#include "tally_int.h"
#include "tally_table.h"
#include "tally_text.h"

#include "ident.h"
#include "kv.h"
#include "lag.h"
#include "pgx.h"
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKLOG_LIMIT \
    STREAM_BACKLOG_MAX /* rows counted at most (+1: "more than"), as the relay does */
#define TENANTS_MAX 10000
#define SCAN_CALLS  200 /* SCAN ... COUNT SCAN_COUNT calls at most: 200,000 keys visited */
#define SCAN_COUNT  1000
#define CHUNK       256 /* tenants per pipeline */
#define OUT_LIMIT   (64u << 20)
#define TABLE_WIDTH 200

/* Each row by the pkey (the OFFSET 0 keeps it a lookup per seq), as the relay reads them. */
#define BACKLOG_SQL                                                                          \
    "SELECT /* tally_lag_backlog */ tenant_id, count(*),"                                    \
    " (extract(epoch FROM min(recorded_at)) * 1000)::bigint"                                 \
    " FROM (SELECT seq AS s FROM outbox ORDER BY seq LIMIT " STREAM_BACKLOG_LIMIT_SQL ") o," \
    " LATERAL (SELECT tenant_id, recorded_at FROM events WHERE seq = o.s OFFSET 0) e"        \
    " GROUP BY tenant_id"
#define TENANTS_SQL "SELECT tenant_id FROM tenants ORDER BY tenant_id LIMIT 10001"

typedef struct trow {
    char id[IDENT_MAX + 1];
    int part;
    char gen[24];
    int64_t parked, events, applied_ms, as_of_ms, backlog;
    char err[160]; /* a damaged key of the tenant's, or "" */
} trow;

typedef struct report {
    lag_sample s;
    bool pg;                   /* PostgreSQL was asked: the backlog is known */
    int64_t backlog;           /* rows, at most BACKLOG_LIMIT + 1 */
    int64_t backlog_oldest_ms; /* recorded_at of the oldest counted row; 0 none */
    int64_t part_backlog[STREAM_PARTITIONS_MAX];
    trow *t;
    size_t nt;
    const char *tenants_from; /* "option", "postgresql" or "scan" */
    bool tenants_complete;    /* false: the list stopped at TENANTS_MAX or SCAN_CALLS */
} report;

static int cmp_row(const void *a, const void *b)
{
    return strcmp(((const trow *)a)->id, ((const trow *)b)->id);
}

/* Adds tenant id (len bytes) unless it is there or not an id; false when the list is full. */
static bool add_tenant(report *r, const char *id, size_t len)
{
    trow key = { 0 };
    if (len == 0 || len > IDENT_MAX)
        return true;
    memcpy(key.id, id, len);
    if (ident_check(key.id) != IDENT_OK || bsearch(&key, r->t, r->nt, sizeof(*r->t), cmp_row))
        return true;
    if (r->nt == TENANTS_MAX)
        return false;
    size_t at = 0;
    while (at < r->nt && strcmp(r->t[at].id, key.id) < 0)
        at++;
    memmove(&r->t[at + 1], &r->t[at], (r->nt - at) * sizeof(*r->t));
    r->t[at] = key;
    r->nt++;
    return true;
}

/* Tenants from the keys {t:<id>}:... of a bounded SCAN. 0 or TALLY_EUNAVAIL. */
static int scan_tenants(kv_conn *kv, report *r, char *err, size_t errlen)
{
    char cursor[32] = "0";
    r->tenants_from = "scan";
    r->tenants_complete = false;
    for (int call = 0; call < SCAN_CALLS; call++) {
        redisReply *rep =
            redisCommand(kv_ctx(kv), "SCAN %s MATCH {t:*}:* COUNT %d", cursor, SCAN_COUNT);
        if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            snprintf(err, errlen, "Redis: SCAN: %s",
                     !rep                             ? kv_ctx(kv)->errstr
                     : rep->type == REDIS_REPLY_ERROR ? rep->str
                                                      : "?");
            if (rep)
                freeReplyObject(rep);
            return TALLY_EUNAVAIL;
        }
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        bool room = true;
        const redisReply *keys = rep->element[1];
        for (size_t i = 0; room && i < keys->elements; i++) {
            const char *k = keys->element[i]->str + 3, *end = strstr(k, "}:");
            if (end)
                room = add_tenant(r, k, (size_t)(end - k));
        }
        freeReplyObject(rep);
        if (!room)
            return 0;
        if (strcmp(cursor, "0") == 0) {
            r->tenants_complete = true;
            return 0;
        }
    }
    return 0;
}

/* Tenants from the tenants table. 0 or TALLY_EUNAVAIL. */
static int pg_tenants(pgx_conn *pg, report *r, int64_t timeout_ms, char *err, size_t errlen)
{
    PGresult *res;
    if (pgx_exec_sql(pg, TENANTS_SQL, timeout_ms, &res) != 0) {
        snprintf(err, errlen, "PostgreSQL: the tenants: %s", pgx_errstr(pg));
        return TALLY_EUNAVAIL;
    }
    r->tenants_from = "postgresql";
    r->tenants_complete = true;
    for (int i = 0; i < PQntuples(res); i++)
        if (!add_tenant(r, PQgetvalue(res, i, 0), strlen(PQgetvalue(res, i, 0))))
            r->tenants_complete = false;
    PQclear(res);
    return 0;
}

static trow *find_row(report *r, const char *id)
{
    trow key = { 0 };
    snprintf(key.id, sizeof(key.id), "%s", id);
    return bsearch(&key, r->t, r->nt, sizeof(*r->t), cmp_row);
}

/* The relay backlog, in all, per partition and per listed tenant. 0 or TALLY_EUNAVAIL. */
static int pg_backlog(pgx_conn *pg, report *r, int64_t timeout_ms, char *err, size_t errlen)
{
    PGresult *res;
    if (pgx_exec_sql(pg, BACKLOG_SQL, timeout_ms, &res) != 0) {
        snprintf(err, errlen, "PostgreSQL: the relay backlog: %s", pgx_errstr(pg));
        return TALLY_EUNAVAIL;
    }
    r->pg = true;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        int64_t n = pgx_int(res, i, 1), oldest = pgx_int(res, i, 2);
        trow *t = find_row(r, id);
        r->backlog += n;
        r->part_backlog[stream_partition(id, r->s.partitions)] += n;
        if (oldest && (!r->backlog_oldest_ms || oldest < r->backlog_oldest_ms))
            r->backlog_oldest_ms = oldest;
        if (t)
            t->backlog = n;
    }
    PQclear(res);
    return 0;
}

/* Whether reply v is an error; then it is the row's error (the first one kept). */
static bool damaged(trow *t, const redisReply *v)
{
    if (v->type != REDIS_REPLY_ERROR)
        return false;
    if (!t->err[0])
        snprintf(t->err, sizeof(t->err), "%s", v->str);
    return true;
}

/*
 * Rows t[0..n): GET {t:T}:gen and HLEN {t:T}:parked, then HMGET of the current generation's
 * fresh hash (absent generation = "1", as query-svc and the projector read it). 0 or
 * TALLY_EUNAVAIL.
 */
static int read_chunk(redisContext *c, trow *t, size_t n, char *err, size_t errlen)
{
    redisReply *v;
    for (size_t i = 0; i < n; i++) {
        redisAppendCommand(c, "GET " STREAM_TENANT "gen", t[i].id);
        redisAppendCommand(c, "HLEN " STREAM_TENANT "parked", t[i].id);
    }
    for (size_t i = 0; i < 2 * n; i++) {
        trow *row = &t[i / 2];
        if (redisGetReply(c, (void **)&v) != REDIS_OK || !v)
            goto out_io;
        if (i % 2 == 0)
            snprintf(row->gen, sizeof(row->gen), "%s",
                     v->type == REDIS_REPLY_STRING ? v->str : "1");
        else if (!damaged(row, v))
            row->parked = v->type == REDIS_REPLY_INTEGER ? v->integer : 0;
        if (i % 2 == 0)
            damaged(row, v);
        freeReplyObject(v);
    }
    for (size_t i = 0; i < n; i++)
        redisAppendCommand(c, "HMGET " STREAM_TENANT "%s:fresh as_of_ms applied_ms events", t[i].id,
                           t[i].gen);
    for (size_t i = 0; i < n; i++) {
        if (redisGetReply(c, (void **)&v) != REDIS_OK || !v)
            goto out_io;
        if (!damaged(&t[i], v) && v->type == REDIS_REPLY_ARRAY && v->elements == 3) {
            int64_t *dst[] = { &t[i].as_of_ms, &t[i].applied_ms, &t[i].events };
            for (int k = 0; k < 3; k++)
                *dst[k] = v->element[k]->type == REDIS_REPLY_STRING
                              ? strtoll(v->element[k]->str, NULL, 10)
                              : 0;
        }
        freeReplyObject(v);
    }
    return 0;
out_io:
    snprintf(err, errlen, "Redis: %s", c->errstr[0] ? c->errstr : "connection lost");
    return TALLY_EUNAVAIL;
}

/* ---- output -------------------------------------------------------------------------------- */

static void json_opt(tx_buf *b, const char *name, bool known, int64_t v)
{
    if (known)
        tx_printf(b, ",\"%s\":%lld", name, (long long)v);
    else
        tx_printf(b, ",\"%s\":null", name);
}

static void print_json(const report *r)
{
    tx_buf b;
    tx_init(&b, OUT_LIMIT);
    tx_printf(&b, "{\"now_ms\":%lld,\"partitions\":[", (long long)r->s.now_ms);
    for (int p = 0; p < r->s.partitions; p++) {
        const lag_part *lp = &r->s.part[p];
        tx_printf(&b,
                  "%s{\"partition\":%d,\"stream\":%s,\"group\":%s,\"length\":%lld,"
                  "\"undelivered\":%lld,\"undelivered_counted\":%s,\"undelivered_at_least\":%s,"
                  "\"pending\":%lld,"
                  "\"oldest_unapplied_id\":",
                  p ? "," : "", p, lp->stream ? "true" : "false", lp->group ? "true" : "false",
                  (long long)lp->length, (long long)lp->undelivered,
                  lp->undelivered_counted ? "true" : "false",
                  lp->undelivered_capped ? "true" : "false", (long long)lp->pending);
        if (lp->oldest_id[0])
            tx_json_str(&b, lp->oldest_id);
        else
            tx_puts(&b, "null");
        json_opt(&b, "oldest_unapplied_ms", lp->oldest_ms > 0, lp->oldest_ms);
        tx_printf(&b, ",\"oldest_unapplied_age_ms\":%lld",
                  (long long)lag_age_ms(r->s.now_ms, lp->oldest_ms));
        json_opt(&b, "watermark_ms", lp->wm_ms > 0, lp->wm_ms);
        json_opt(&b, "watermark_age_ms", lp->wm_ms > 0, lag_age_ms(r->s.now_ms, lp->wm_ms));
        tx_printf(&b, ",\"dead_letters\":%lld", (long long)lp->dead);
        json_opt(&b, "relay_backlog", r->pg, r->part_backlog[p]);
        tx_putc(&b, '}');
    }
    tx_puts(&b, "],\"relay_backlog\":");
    if (r->pg) {
        tx_printf(&b, "{\"rows\":%lld,\"more\":%s", (long long)r->backlog,
                  r->backlog > BACKLOG_LIMIT ? "true" : "false");
        json_opt(&b, "oldest_ms", r->backlog_oldest_ms > 0, r->backlog_oldest_ms);
        tx_putc(&b, '}');
    } else {
        tx_puts(&b, "null");
    }
    tx_printf(&b, ",\"tenants_from\":\"%s\",\"tenants_complete\":%s,\"tenants\":[", r->tenants_from,
              r->tenants_complete ? "true" : "false");
    for (size_t i = 0; i < r->nt; i++) {
        const trow *t = &r->t[i];
        tx_puts(&b, i ? ",{\"tenant\":" : "{\"tenant\":");
        tx_json_str(&b, t->id);
        tx_printf(&b, ",\"partition\":%d,\"generation\":", t->part);
        tx_json_str(&b, t->gen);
        tx_printf(&b, ",\"parked\":%lld,\"events_applied\":%lld", (long long)t->parked,
                  (long long)t->events);
        json_opt(&b, "applied_ms", t->applied_ms > 0, t->applied_ms);
        json_opt(&b, "apply_age_ms", t->applied_ms > 0, lag_age_ms(r->s.now_ms, t->applied_ms));
        json_opt(&b, "as_of_ms", t->as_of_ms > 0, t->as_of_ms);
        json_opt(&b, "relay_backlog", r->pg, t->backlog);
        tx_puts(&b, ",\"error\":");
        if (t->err[0])
            tx_json_str(&b, t->err);
        else
            tx_puts(&b, "null");
        tx_putc(&b, '}');
    }
    tx_puts(&b, "]}");
    printf("%s\n", b.s);
    tx_release(&b);
}

/* An age for a cell: "-" for none. */
static const char *age_cell(int64_t now_ms, int64_t t_ms, char *out, size_t len)
{
    return t_ms > 0 ? tx_duration((double)lag_age_ms(now_ms, t_ms) / 1000.0, out, len) : "-";
}

static void print_text(const report *r)
{
    char a[32], b2[32], c[32], d[32], e[32];
    tx_buf out;
    tx_init(&out, OUT_LIMIT);
    tx_printf(&out, "lag at %s (Redis's clock), %d partition%s; relay backlog ",
              tx_time_utc(r->s.now_ms, a, sizeof(a)), r->s.partitions,
              r->s.partitions == 1 ? "" : "s");
    if (!r->pg)
        tx_puts(&out, "unknown (no PostgreSQL: give --pg-dsn or set TALLY_PG_DSN)\n\n");
    else
        tx_printf(&out, "%s%s rows%s%s%s\n\n", r->backlog > BACKLOG_LIMIT ? "more than " : "",
                  tx_count(r->backlog > BACKLOG_LIMIT ? BACKLOG_LIMIT : r->backlog, a, sizeof(a)),
                  r->backlog_oldest_ms ? " (oldest " : "",
                  r->backlog_oldest_ms ? age_cell(r->s.now_ms, r->backlog_oldest_ms, b2, 32) : "",
                  r->backlog_oldest_ms ? ")" : "");
    tbl *t = tbl_new(0);
    if (!t)
        goto out;
    static const char *const heads[] = { "partition",        "length",
                                         "undelivered",      "pending",
                                         "oldest unapplied", "watermark",
                                         "watermark age",    "dead" };
    for (int i = 0; i < 8; i++)
        tbl_add_col(t, heads[i], i > 0 && i != 5, 0, 0, false);
    for (int p = 0; p < r->s.partitions && tbl_row(t); p++) {
        const lag_part *lp = &r->s.part[p];
        tbl_set(t, 0, "%d%s", p, !lp->stream ? " (no stream)" : !lp->group ? " (no group)" : "");
        tbl_set(t, 1, "%s", tx_count(lp->length, a, sizeof(a)));
        tbl_set(t, 2, "%s%s", lp->undelivered_capped ? ">=" : "",
                tx_count(lp->undelivered, b2, sizeof(b2)));
        tbl_set(t, 3, "%s", tx_count(lp->pending, c, sizeof(c)));
        tbl_set(t, 4, "%s", age_cell(r->s.now_ms, lp->oldest_ms, d, sizeof(d)));
        tbl_set(t, 5, "%s", lp->wm_ms ? tx_time_utc(lp->wm_ms, e, sizeof(e)) : "unknown");
        tbl_set(t, 6, "%s", age_cell(r->s.now_ms, lp->wm_ms, a, sizeof(a)));
        tbl_set(t, 7, "%s", tx_count(lp->dead, b2, sizeof(b2)));
    }
    tbl_emit(t, TABLE_WIDTH, 0, false, &out);
    tbl_free(t);
    tx_printf(&out, "\n%zu tenant%s (from %s%s)\n", r->nt, r->nt == 1 ? "" : "s", r->tenants_from,
              r->tenants_complete ? "" : ", incomplete");
    if (r->nt == 0 || !(t = tbl_new(0)))
        goto out;
    static const char *const theads[] = { "tenant",     "partition", "parked", "events applied",
                                          "last apply", "backlog",   "error" };
    bool errors = false;
    for (size_t i = 0; i < r->nt; i++)
        errors |= r->t[i].err[0] != '\0';
    for (int i = 0; i < (errors ? 7 : 6); i++)
        tbl_add_col(t, theads[i], i > 0 && i < 6, 0, i == 6 ? 60 : 0, false);
    for (size_t i = 0; i < r->nt && tbl_row(t); i++) {
        const trow *row = &r->t[i];
        tbl_set(t, 0, "%s", row->id);
        tbl_set(t, 1, "%d", row->part);
        tbl_set(t, 2, "%s", tx_count(row->parked, a, sizeof(a)));
        tbl_set(t, 3, "%s", tx_count(row->events, b2, sizeof(b2)));
        tbl_set(t, 4, "%s%s", age_cell(r->s.now_ms, row->applied_ms, c, sizeof(c)),
                row->applied_ms ? " ago" : "");
        tbl_set(t, 5, "%s", r->pg ? tx_count(row->backlog, d, sizeof(d)) : "?");
        if (errors)
            tbl_set(t, 6, "%s", row->err);
    }
    tbl_emit(t, TABLE_WIDTH, 0, false, &out);
    tbl_free(t);
out:
    fputs(out.s ? out.s : "", stdout);
    tx_release(&out);
}

/* ---- the command --------------------------------------------------------------------------- */

/* Reads everything into r. 0, or an error with err. */
static int gather(const cli *c, kv_conn *kv, pgx_conn *pg, report *r, char *err, size_t errlen)
{
    const char *tenant = cli_get(c, OPT_TENANT);
    int rc;
    if (kv_connect(kv) != 0) {
        snprintf(err, errlen, "Redis: %s", kv_errstr(kv));
        return TALLY_EUNAVAIL;
    }
    if ((rc = lag_read(kv_ctx(kv), r->s.partitions, &r->s, err, errlen)))
        return rc;
    if (tenant) {
        r->tenants_from = "option";
        r->tenants_complete = true;
        add_tenant(r, tenant, strlen(tenant));
    } else if (pg) {
        rc = pg_tenants(pg, r, c->timeout_ms, err, errlen);
    } else {
        rc = scan_tenants(kv, r, err, errlen);
    }
    if (rc == 0 && pg)
        rc = pg_backlog(pg, r, c->timeout_ms, err, errlen);
    for (size_t i = 0; i < r->nt; i++)
        r->t[i].part = stream_partition(r->t[i].id, r->s.partitions);
    for (size_t i = 0; rc == 0 && i < r->nt; i += CHUNK)
        rc = read_chunk(kv_ctx(kv), r->t + i, r->nt - i < CHUNK ? r->nt - i : CHUNK, err, errlen);
    return rc;
}

int cli_run_lag(const cli *c)
{
    const char *dsn, *tenant = cli_get(c, OPT_TENANT);
    cfg_redis redis;
    int partitions, rc;
    char err[1024];
    if (tenant && ident_check(tenant) != IDENT_OK)
        return cli_usage_error(c, "--tenant: %s, not \"%s\"",
                               ident_problem_text(ident_check(tenant)), tenant);
    if ((rc = cli_partitions(c, &partitions)) || (rc = cli_stores(c, false, &dsn, &redis)))
        return rc;
    report *r = calloc(1, sizeof(*r));
    kv_conn *kv = kv_new(&redis, c->timeout_ms);
    pgx_conn *pg = dsn ? pgx_new(dsn, "tally-lag", NULL, 0, c->timeout_ms) : NULL;
    if (!r || !kv || (dsn && !pg) || !(r->t = calloc(TENANTS_MAX, sizeof(*r->t))) ||
        (pg && (pgx_add_setting(pg, "default_transaction_read_only", "on") != 0 ||
                pgx_set_tenant(pg, "*") != 0))) {
        fprintf(stderr, "%s: out of memory\n", c->prog);
        rc = EXIT_FAIL;
        goto out;
    }
    r->s.partitions = partitions;
    if (gather(c, kv, pg, r, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", c->prog, err);
        rc = EXIT_FAIL;
        goto out;
    }
    if (cli_has(c, OPT_JSON))
        print_json(r);
    else
        print_text(r);
    rc = EXIT_OK;
out:
    pgx_free(pg);
    kv_free(kv);
    if (r)
        free(r->t);
    free(r);
    return rc;
}
