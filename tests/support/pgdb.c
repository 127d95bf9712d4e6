/* pgdb: a private PostgreSQL database for a test. See pgdb.h. */
#include "pgdb.h"

#include "fixture.h"
#include "proc.h"

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One statement on the stack's own database (admin_dsn); asserts it succeeds. */
static void admin_exec(const char *admin_dsn, const char *sql)
{
    PGconn *c = PQconnectdb(admin_dsn);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    char err[512];
    snprintf(err, sizeof(err), "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    cr_assert(ok, "%s: %s", sql, err);
}

/* d->dsn := TALLY_PG_DSN's parameters with dbname = d->name, as a key='value' conninfo. */
static void make_dsn(pgdb *d)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(d->admin, &err);
    cr_assert(opts, "TALLY_PG_DSN: %s", err ? err : "out of memory");
    size_t len = 0;
    d->dsn[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *v = strcmp(o->keyword, "dbname") == 0 ? d->name : o->val;
        if (!v || !v[0])
            continue;
        len += (size_t)snprintf(d->dsn + len, sizeof(d->dsn) - len, "%s%s='", len ? " " : "",
                                o->keyword);
        for (const char *c = v; *c && len + 4 < sizeof(d->dsn); c++) {
            if (*c == '\'' || *c == '\\')
                d->dsn[len++] = '\\';
            d->dsn[len++] = *c;
        }
        cr_assert_lt(len + 2, sizeof(d->dsn), "TALLY_PG_DSN is too long");
        d->dsn[len++] = '\'';
        d->dsn[len] = '\0';
    }
    PQconninfoFree(opts);
    snprintf(d->pg_var, sizeof(d->pg_var), "TALLY_PG_DSN=%s", d->dsn);
}

void pgdb_create(pgdb *d, const char *prefix)
{
    static int n;
    char sql[128];
    struct timespec ts;
    memset(d, 0, sizeof(*d));
    fx_need_stack();
    snprintf(d->admin, sizeof(d->admin), "%s", getenv("TALLY_PG_DSN"));
    cr_assert_lt(strlen(getenv("TALLY_PG_DSN")), sizeof(d->admin), "TALLY_PG_DSN is too long");
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(d->name, sizeof(d->name), "%s_%d_%d_%ld", prefix, (int)getpid(), ++n,
             (long)(ts.tv_nsec / 1000));
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", d->name);
    admin_exec(d->admin, sql);
    make_dsn(d);
}

void pgdb_migrate(const pgdb *d)
{
    proc p;
    const char *vars[] = { d->pg_var, NULL };
    char *argv[] = { (char *)COMMAND_SVC_PATH, "migrate", NULL };
    int rc = proc_run_argv(&p, argv, vars, true, 60000);
    proc_release(&p);
    cr_assert_eq(rc, 0, "command-svc migrate exited %d", rc);
}

void pgdb_drop(pgdb *d)
{
    char sql[128];
    if (!d->name[0])
        return;
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", d->name);
    d->name[0] = '\0';
    admin_exec(d->admin, sql);
}

PGconn *pgdb_connect(const pgdb *d)
{
    PGconn *pg = PQconnectdb(d->dsn);
    cr_assert_eq(PQstatus(pg), CONNECTION_OK, "%s", PQerrorMessage(pg));
    return pg;
}

PGresult *pgdb_sql(PGconn *pg, const char *q, int n, const char *const *params)
{
    PGresult *r = PQexecParams(pg, q, n, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK, "%s: %s", q,
              PQresultErrorMessage(r));
    return r;
}

long long pgdb_int(PGconn *pg, const char *q, int n, const char *const *params)
{
    PGresult *r = pgdb_sql(pg, q, n, params);
    cr_assert_eq(PQntuples(r), 1, "%s: %d rows", q, PQntuples(r));
    long long v = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}
