/*
 * tally verify: the read model against PostgreSQL (common/verify.h). Prints each persisting
 * difference on a line of its own (or one JSON object per line with --json), then a summary
 * line. Exit status: 0 no difference, 1 drift, 2 a usage error or PostgreSQL / Redis failing.
 */
#include "tally_int.h"
#include "tally_text.h"

#include "cfg.h"
#include "kv.h"
#include "pgx.h"
#include "verify.h"

#include <stdio.h>
#include <stdlib.h>

#define LINE_LIMIT     (64u << 10)
#define REDIS_TIMEOUT  30000 /* a tenant's MULTI/EXEC of ~100k open complaints takes < 1 s */
#define SQL_TIMEOUT_MS 300000

static void put_safe(tx_buf *b, const char *s)
{
    tx_cell(b, s, tx_width(s), false, false, true);
}

static void put_text_value(tx_buf *b, const char *s)
{
    if (s)
        put_safe(b, s);
    else
        tx_puts(b, "(none)");
}

static void put_json_value(tx_buf *b, const char *s)
{
    if (s)
        tx_json_str(b, s);
    else
        tx_puts(b, "null");
}

static void print_diff(const verify_diff *d, void *arg)
{
    const cli *c = arg;
    tx_buf b;
    tx_init(&b, LINE_LIMIT);
    if (cli_has(c, OPT_JSON)) {
        tx_puts(&b, "{\"tenant\":");
        tx_json_str(&b, d->tenant);
        tx_puts(&b, ",\"view\":");
        tx_json_str(&b, d->view);
        tx_puts(&b, ",\"key\":");
        tx_json_str(&b, d->key);
        tx_puts(&b, ",\"field\":");
        tx_json_str(&b, d->field);
        tx_puts(&b, ",\"expected\":");
        put_json_value(&b, d->expected);
        tx_puts(&b, ",\"found\":");
        put_json_value(&b, d->found);
        tx_putc(&b, '}');
    } else {
        tx_puts(&b, "DRIFT ");
        put_safe(&b, d->view);
        tx_putc(&b, ' ');
        put_safe(&b, d->key);
        tx_puts(&b, d->field[0] ? " " : "");
        put_safe(&b, d->field);
        tx_puts(&b, ": expected ");
        put_text_value(&b, d->expected);
        tx_puts(&b, ", found ");
        put_text_value(&b, d->found);
    }
    if (!b.full)
        printf("%s\n", b.s ? b.s : "");
    tx_release(&b);
}

int cli_run_verify(const cli *c)
{
    verify_options o = { .tenant = cli_get(c, OPT_TENANT),
                         .days = VERIFY_DEFAULT_DAYS,
                         .settle_ms = VERIFY_DEFAULT_SETTLE_MS,
                         .timeout_ms = SQL_TIMEOUT_MS };
    const char *dsn = cli_get(c, OPT_PG_DSN);
    cfg_redis redis;
    int64_t n;
    int rc;
    if (cli_has(c, OPT_DAYS)) {
        if ((rc = cli_int(c, OPT_DAYS, 1, VERIFY_MAX_DAYS, &n)))
            return rc;
        o.days = (int)n;
    }
    if (cli_has(c, OPT_SETTLE_MS)) {
        if ((rc = cli_int(c, OPT_SETTLE_MS, 0, VERIFY_MAX_SETTLE_MS, &n)))
            return rc;
        o.settle_ms = (int)n;
    }
    if (o.tenant && !o.tenant[0])
        return cli_usage_error(c, "--tenant: want a tenant id, not \"\"");
    if (!dsn && !(dsn = cli_env("TALLY_PG_DSN")))
        return cli_usage_error(c, "PostgreSQL: give --pg-dsn or set TALLY_PG_DSN");
    if ((rc = cli_redis(c, &redis)))
        return rc;
    pgx_conn *pg = pgx_new(dsn, "tally-verify", NULL, 0, 0);
    kv_conn *kv = kv_new(&redis, REDIS_TIMEOUT);
    if (!pg || !kv) {
        pgx_free(pg);
        kv_free(kv);
        fprintf(stderr, "%s: out of memory\n", c->prog);
        return EXIT_USAGE;
    }
    verify_stats st;
    char err[1024];
    rc = verify_run(pg, kv, &o, print_diff, (void *)c, &st, err, sizeof(err));
    pgx_free(pg);
    kv_free(kv);
    if (rc) {
        fprintf(stderr, "%s: %s\n", c->prog, err);
        return EXIT_USAGE;
    }
    if (cli_has(c, OPT_JSON))
        printf("{\"summary\":true,\"tenants\":%d,\"days\":%d,\"keys\":%lld,\"fields\":%lld,"
               "\"differences\":%lld,\"settled\":%lld,\"parked\":%lld,\"sql_ms\":%lld,"
               "\"redis_ms\":%lld,\"total_ms\":%lld}\n",
               st.tenants, o.days, (long long)st.keys, (long long)st.fields, (long long)st.diffs,
               (long long)st.settled, (long long)st.parked, (long long)st.sql_ms,
               (long long)st.redis_ms, (long long)st.total_ms);
    else
        printf("verify: %d tenant%s, %lld keys, %lld fields: %lld difference%s (%lld settled in "
               "flight, %lld parked complaints) in %lld ms (PostgreSQL %lld ms, Redis %lld ms)\n",
               st.tenants, st.tenants == 1 ? "" : "s", (long long)st.keys, (long long)st.fields,
               (long long)st.diffs, st.diffs == 1 ? "" : "s", (long long)st.settled,
               (long long)st.parked, (long long)st.total_ms, (long long)st.sql_ms,
               (long long)st.redis_ms);
    return st.diffs ? EXIT_FAIL : EXIT_OK;
}
