/*
 * opts.c: the options of the tally client, and what a command reads of them: their names, the
 * values given (the last one wins), and the parsers of values. A bad value is a usage error,
 * printed here with the pointer to --help.
 */
#include "tally_int.h"

#include "cfg.h"
#include "stream.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const cli_opt_def opt_defs[] = {
    { "--help", 'h', OPT_HELP, false },
    { "--command", 0, OPT_COMMAND, true },
    { "--query", 0, OPT_QUERY, true },
    { "--tls-ca", 0, OPT_TLS_CA, true },
    { "--tls-cert", 0, OPT_TLS_CERT, true },
    { "--tls-key", 0, OPT_TLS_KEY, true },
    { "--token", 0, OPT_TOKEN, true },
    { "--timeout", 0, OPT_TIMEOUT, true },
    { "--json", 0, OPT_JSON, false },
    { "--tenant", 0, OPT_TENANT, true },
    { "--name", 0, OPT_NAME, true },
    { "--time-zone", 0, OPT_TIME_ZONE, true },
    { "--id", 0, OPT_ID, true },
    { "--category", 0, OPT_CATEGORY, true },
    { "--priority", 0, OPT_PRIORITY, true },
    { "--title", 0, OPT_TITLE, true },
    { "--description", 0, OPT_DESCRIPTION, true },
    { "--customer", 0, OPT_CUSTOMER, true },
    { "--idempotency-key", 0, OPT_KEY, true },
    { "--complaint", 0, OPT_COMPLAINT, true },
    { "--agent", 0, OPT_AGENT, true },
    { "--expected-version", 0, OPT_EXPECTED, true },
    { "--to", 0, OPT_TO, true },
    { "--note", 0, OPT_NOTE, true },
    { "--actor", 0, OPT_ACTOR, true },
    { "--days", 0, OPT_DAYS, true },
    { "--from", 0, OPT_FROM, true },
    { "--granularity", 0, OPT_GRANULARITY, true },
    { "--group-by", 0, OPT_GROUP_BY, true },
    { "--limit", 0, OPT_LIMIT, true },
    { "--after", 0, OPT_AFTER, true },
    { "--fail-if-stale", 0, OPT_FAIL_IF_STALE, false },
    { "--watch", 'w', OPT_WATCH, false },
    { "--interval", 0, OPT_INTERVAL, true },
    { "--once", 0, OPT_ONCE, false },
    { "--ascii", 0, OPT_ASCII, false },
    { "--settle-ms", 0, OPT_SETTLE_MS, true },
    { "--pg-dsn", 0, OPT_PG_DSN, true },
    { "--redis-url", 0, OPT_REDIS_URL, true },
    { "--partition", 0, OPT_PARTITION, true },
    { "--partitions", 0, OPT_PARTITIONS, true },
    { "--reason", 0, OPT_REASON, true },
    { "--all", 0, OPT_ALL, false },
    { "--abort", 0, OPT_ABORT, false },
    { "--batch", 0, OPT_BATCH, true },
    { "--lease-ms", 0, OPT_LEASE_MS, true },
    { "--window", 0, OPT_WINDOW, true },
    { "--role", 0, OPT_ROLE, true },
    { "--ttl", 0, OPT_TTL, true },
    { "--subject", 0, OPT_SUBJECT, true },
    { "--kid", 0, OPT_KID, true },
    { "--alg", 0, OPT_ALG, true },
    { "--key-file", 0, OPT_KEY_FILE, true },
    { "--issuer", 0, OPT_ISSUER, true },
    { "--audience", 0, OPT_AUDIENCE, true },
};
#define N_OPTS (sizeof(opt_defs) / sizeof(opt_defs[0]))

const cli_opt_def *cli_find_opt(const char *arg, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        const cli_opt_def *d = &opt_defs[i];
        if (len == 2 && arg[0] == '-' && arg[1] == d->short_name && d->short_name)
            return d;
        if (strlen(d->name) == len && memcmp(d->name, arg, len) == 0)
            return d;
    }
    return NULL;
}

bool cli_is_global(int id)
{
    return id >= OPT_HELP && id <= OPT_TIMEOUT;
}

int cli_usage_error(const cli *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", c->prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun '%s --help' for usage.\n", c->prog);
    return EXIT_USAGE;
}

const char *cli_get(const cli *c, int id)
{
    for (int i = c->nhits - 1; i >= 0; i--)
        if (c->hits[i].id == id)
            return c->hits[i].value;
    return NULL;
}

const char *cli_get_or(const cli *c, int id, const char *fallback)
{
    const char *v = cli_get(c, id);
    return v ? v : fallback;
}

bool cli_has(const cli *c, int id)
{
    for (int i = 0; i < c->nhits; i++)
        if (c->hits[i].id == id)
            return true;
    return false;
}

const char *cli_name(const cli *c, int id)
{
    for (int i = c->nhits - 1; i >= 0; i--)
        if (c->hits[i].id == id)
            return c->hits[i].name;
    for (size_t i = 0; i < N_OPTS; i++)
        if (opt_defs[i].id == id)
            return opt_defs[i].name;
    return "?";
}

const char *cli_need(const cli *c, int id)
{
    const char *v = cli_get(c, id);
    if (!v)
        cli_usage_error(c, "%s is required", cli_name(c, id));
    return v;
}

int cli_int(const cli *c, int id, int64_t lo, int64_t hi, int64_t *out)
{
    const char *v = cli_get(c, id);
    char *end;
    long long n;
    errno = 0;
    n = v ? strtoll(v, &end, 10) : 0;
    if (!v || end == v || *end || errno || n < lo || n > hi)
        return cli_usage_error(c, "%s: want a whole number, %lld..%lld, not \"%s\"",
                               cli_name(c, id), (long long)lo, (long long)hi, v ? v : "");
    *out = n;
    return EXIT_OK;
}

int cli_seconds(const cli *c, int id, double lo, double hi, double *out)
{
    const char *v = cli_get(c, id);
    char *end;
    double s = v ? strtod(v, &end) : NAN;
    if (!v || end == v || *end || !(s >= lo && s <= hi))
        return cli_usage_error(c, "%s: want seconds, %g..%g, not \"%s\"", cli_name(c, id), lo, hi,
                               v ? v : "");
    *out = s;
    return EXIT_OK;
}

int cli_priority(const cli *c, const char *name, const char *value, int *out)
{
    static const char *const names[] = { "low", "medium", "high", "urgent" };
    for (int i = 0; i < 4; i++)
        if (strcasecmp(value, names[i]) == 0) {
            *out = i + 1;
            return EXIT_OK;
        }
    return cli_usage_error(c, "%s: want low, medium, high or urgent, not \"%s\"", name, value);
}

int cli_status(const cli *c, const char *name, const char *value, int *out)
{
    static const char *const names[] = { "open", "in_progress", "resolved", "closed" };
    for (int i = 0; i < 4; i++)
        if (strcasecmp(value, names[i]) == 0 || (i == 1 && strcasecmp(value, "in-progress") == 0)) {
            *out = i + 1;
            return EXIT_OK;
        }
    return cli_usage_error(c, "%s: want open, in_progress, resolved or closed, not \"%s\"", name,
                           value);
}

int cli_token(const cli *c, int id, int64_t *complaint, int64_t *version)
{
    const char *v = cli_get(c, id);
    char *end, *end2;
    long long cid, ver;
    errno = 0;
    cid = v ? strtoll(v, &end, 10) : 0;
    if (!v || end == v || *end != ':' || errno || cid < 1)
        goto bad;
    ver = strtoll(end + 1, &end2, 10);
    if (end2 == end + 1 || *end2 || errno || ver < 1)
        goto bad;
    *complaint = cid;
    *version = ver;
    return EXIT_OK;
bad:
    return cli_usage_error(c,
                           "%s: want COMPLAINT:VERSION (e.g. 42:3, as a write command "
                           "prints it), not \"%s\"",
                           cli_name(c, id), v ? v : "");
}

const char *cli_env(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

int cli_redis(const cli *c, cfg_redis *out)
{
    const char *url = cli_get(c, OPT_REDIS_URL);
    if (!url && !(url = cli_env("TALLY_REDIS_URL")))
        return cli_usage_error(c, "Redis: give --redis-url or set TALLY_REDIS_URL");
    if (cfg_parse_redis_url(url, out) != 0) {
        char shown[300];
        cfg_redis_url_redact(url, shown, sizeof(shown));
        return cli_usage_error(
            c, "%s: want redis://[user[:password]@]host[:port][/db], not \"%s\"",
            cli_has(c, OPT_REDIS_URL) ? cli_name(c, OPT_REDIS_URL) : "TALLY_REDIS_URL", shown);
    }
    char why[300];
    if (cfg_redis_password_file(out, cli_env("TALLY_REDIS_PASSWORD_FILE"), why, sizeof(why)) != 0)
        return cli_usage_error(c, "TALLY_REDIS_PASSWORD_FILE: %s", why);
    return EXIT_OK;
}

int cli_stores(const cli *c, bool need_pg, const char **dsn, cfg_redis *redis)
{
    *dsn = cli_get(c, OPT_PG_DSN);
    if (!*dsn)
        *dsn = cli_env("TALLY_PG_DSN");
    if (*dsn && !(*dsn)[0])
        *dsn = NULL;
    if (!*dsn && need_pg)
        return cli_usage_error(c, "PostgreSQL: give --pg-dsn or set TALLY_PG_DSN");
    return cli_redis(c, redis);
}

int cli_partitions(const cli *c, int *out)
{
    int64_t n = 1;
    const char *env = cli_env("TALLY_STREAM_PARTITIONS");
    int rc = EXIT_OK;
    if (cli_has(c, OPT_PARTITIONS)) {
        rc = cli_int(c, OPT_PARTITIONS, 1, STREAM_PARTITIONS_MAX, &n);
    } else if (env) {
        char *end;
        n = strtoll(env, &end, 10);
        if (*end || n < 1 || n > STREAM_PARTITIONS_MAX)
            rc = cli_usage_error(c, "TALLY_STREAM_PARTITIONS: want 1..%d, not \"%s\"",
                                 STREAM_PARTITIONS_MAX, env);
    }
    *out = (int)n;
    return rc;
}
