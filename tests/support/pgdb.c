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

/* out := base's parameters (a conninfo or URI) with dbname = db, as a key='value' conninfo. */
static void dsn_with_db(const char *base, const char *db, char *out, size_t size)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &err);
    cr_assert(opts, "%s: %s", base, err ? err : "out of memory");
    size_t len = 0;
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *v = strcmp(o->keyword, "dbname") == 0 ? db : o->val;
        if (!v || !v[0])
            continue;
        len += (size_t)snprintf(out + len, size - len, "%s%s='", len ? " " : "", o->keyword);
        for (const char *c = v; *c && len + 4 < size; c++) {
            if (*c == '\'' || *c == '\\')
                out[len++] = '\\';
            out[len++] = *c;
        }
        cr_assert_lt(len + 2, size, "%s is too long", base);
        out[len++] = '\'';
        out[len] = '\0';
    }
    PQconninfoFree(opts);
}

const char *pgdb_owner_dsn(void)
{
    fx_need_stack();
    const char *owner = getenv("TALLY_PG_MIGRATE_DSN");
    return owner && owner[0] ? owner : getenv("TALLY_PG_DSN");
}

void pgdb_create(pgdb *d, const char *prefix)
{
    static int n;
    char sql[128];
    struct timespec ts;
    memset(d, 0, sizeof(*d));
    fx_need_stack();
    snprintf(d->admin, sizeof(d->admin), "%s", pgdb_owner_dsn());
    cr_assert_lt(strlen(pgdb_owner_dsn()), sizeof(d->admin), "the owner's DSN is too long");
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(d->name, sizeof(d->name), "%s_%d_%d_%ld", prefix, (int)getpid(), ++n,
             (long)(ts.tv_nsec / 1000));
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", d->name);
    admin_exec(d->admin, sql);
    dsn_with_db(getenv("TALLY_PG_DSN"), d->name, d->dsn, sizeof(d->dsn));
    dsn_with_db(d->admin, d->name, d->owner_dsn, sizeof(d->owner_dsn));
    snprintf(d->pg_var, sizeof(d->pg_var), "TALLY_PG_DSN=%s", d->dsn);
}

void pgdb_migrate(const pgdb *d)
{
    proc p;
    char owner[sizeof(d->owner_dsn) + 32];
    snprintf(owner, sizeof(owner), "TALLY_PG_MIGRATE_DSN=%s", d->owner_dsn);
    const char *vars[] = { d->pg_var, owner, NULL };
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

PGconn *pgdb_connect_dsn(const char *dsn)
{
    PGconn *pg = PQconnectdb(dsn);
    cr_assert_eq(PQstatus(pg), CONNECTION_OK, "%s", PQerrorMessage(pg));
    return pg;
}

PGconn *pgdb_connect(const pgdb *d)
{
    return pgdb_connect_dsn(d->owner_dsn);
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
