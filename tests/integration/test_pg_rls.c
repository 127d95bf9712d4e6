/*
 * Row-level security and the service role (migration 0007, issue 11): a connection as the
 * services' role (tally_app, a member of tally_service) sees and writes only the rows of the
 * tenant in its tally.tenant setting, whatever its statements say, and cannot change the schema.
 * The owner (who ran the migrations) fills two tenants' rows in every table first.
 */
#include "err.h"
#include "fixture.h"
#include "pgdb.h"
#include "pgx.h"
#include "proc.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pgdb D;

/* Every table with a tenant_id column: all of them must be filtered. */
static const char *const tenant_tables[] = { "tenants",    "categories",       "agents",
                                             "complaints", "idempotency_keys", "status_history",
                                             "events" };
#define NTABLES (sizeof(tenant_tables) / sizeof(tenant_tables[0]))

static void seed(PGconn *owner, const char *t)
{
    const char *p[] = { t };
    PQclear(pgdb_sql(
        owner, "INSERT INTO tenants (tenant_id, name, time_zone) VALUES ($1, $1, 'UTC')", 1, p));
    PQclear(pgdb_sql(owner, "INSERT INTO categories VALUES ($1, 'c', 'C')", 1, p));
    PQclear(pgdb_sql(owner, "INSERT INTO agents VALUES ($1, 'a', 'A')", 1, p));
    PQclear(pgdb_sql(owner,
                     "WITH c AS (INSERT INTO complaints (tenant_id, category_id, priority, status,"
                     "  title, description, customer_id, idempotency_key, created_at, updated_at,"
                     "  version) VALUES ($1, 'c', 1, 1, 'x', 'y', 'z', 'k', now(), now(), 1)"
                     "  RETURNING complaint_id),"
                     " h AS (INSERT INTO status_history SELECT complaint_id, 1, $1, 0, 1, 'me',"
                     "  '', now() FROM c),"
                     " k AS (INSERT INTO idempotency_keys SELECT $1, 'k', '\\x00', complaint_id,"
                     "  1, now() FROM c)"
                     " INSERT INTO events (tenant_id, complaint_id, version, type, occurred_at,"
                     "  local_day, payload) SELECT $1, complaint_id, 1, 1, now(), current_date,"
                     "  '\\x00' FROM c",
                     1, p));
}

static void setup(void)
{
    pgdb_create(&D, "tally_rls");
    pgdb_migrate(&D);
    PGconn *owner = pgdb_connect(&D);
    seed(owner, "ta");
    seed(owner, "tb");
    PQfinish(owner);
}

static void teardown(void)
{
    pgdb_drop(&D);
}

TestSuite(pg_rls, .init = setup, .fini = teardown, .timeout = 60);

/* The SQLSTATE sql fails with on pg, or "" when it succeeds. */
static const char *sqlstate(PGconn *pg, const char *sql, char *buf, size_t len)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(buf, len, "%s", st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? "" : s ? s : "?");
    PQclear(r);
    return buf;
}

static long long count(PGconn *pg, const char *table, const char *where)
{
    char q[160];
    snprintf(q, sizeof(q), "SELECT count(*) FROM %s%s", table, where);
    return pgdb_int(pg, q, 0, NULL);
}

static void set_tenant(PGconn *pg, const char *t)
{
    const char *p[] = { t };
    PQclear(pgdb_sql(pg, "SELECT set_config('tally.tenant', $1, false)", 1, p));
}

Test(pg_rls, a_service_connection_reads_only_the_tenant_it_is_set_to)
{
    PGconn *owner = pgdb_connect(&D), *app = pgdb_connect_dsn(D.dsn);
    cr_assert_eq(pgdb_int(app, "SELECT (current_user = 'tally_app')::int", 0, NULL), 1);
    for (size_t i = 0; i < NTABLES; i++) {
        const char *t = tenant_tables[i];
        long long all = count(owner, t, ""), ta = count(owner, t, " WHERE tenant_id = 'ta'");
        cr_assert(ta > 0 && all > ta, "%s: the owner sees %lld rows, %lld of ta", t, all, ta);
        cr_assert_eq(count(app, t, ""), 0, "%s: rows with no tenant set", t);
        set_tenant(app, "nobody");
        cr_assert_eq(count(app, t, ""), 0, "%s: rows for an unknown tenant", t);
        /* A statement that forgets its tenant scoping still reads one tenant's rows only. */
        set_tenant(app, "ta");
        cr_assert_eq(count(app, t, ""), ta, "%s", t);
        cr_assert_eq(count(app, t, " WHERE tenant_id = 'tb'"), 0, "%s: another tenant's rows", t);
        set_tenant(app, "*");
        cr_assert_eq(count(app, t, ""), all, "%s: every tenant with *", t);
        PQclear(pgdb_sql(app, "RESET tally.tenant", 0, NULL));
    }
    PQfinish(app);
    PQfinish(owner);
}

Test(pg_rls, a_service_connection_cannot_write_another_tenants_rows)
{
    char s[8];
    PGconn *app = pgdb_connect_dsn(D.dsn);
    set_tenant(app, "ta");
    cr_assert_str_eq(sqlstate(app, "INSERT INTO categories VALUES ('tb', 'd', 'D')", s, 8),
                     "42501");
    cr_assert_str_eq(sqlstate(app, "INSERT INTO categories VALUES ('ta', 'd', 'D')", s, 8), "");
    cr_assert_str_eq(
        sqlstate(app, "UPDATE complaints SET tenant_id = 'tb' WHERE tenant_id = 'ta'", s, 8),
        "42501");
    PGresult *r =
        pgdb_sql(app, "UPDATE complaints SET title = 'taken' WHERE tenant_id = 'tb'", 0, NULL);
    cr_assert_str_eq(PQcmdTuples(r), "0", "another tenant's complaint was updated");
    PQclear(r);
    /* The event log and the audit trail are append-only for the services. */
    cr_assert_str_eq(sqlstate(app, "DELETE FROM events", s, 8), "42501");
    cr_assert_str_eq(sqlstate(app, "UPDATE events SET type = 2", s, 8), "42501");
    cr_assert_str_eq(sqlstate(app, "DELETE FROM status_history", s, 8), "42501");
    PQfinish(app);
    PGconn *owner = pgdb_connect(&D);
    cr_assert_eq(pgdb_int(owner, "SELECT count(*) FROM complaints WHERE title = 'taken'", 0, NULL),
                 0);
    PQfinish(owner);
}

Test(pg_rls, the_service_role_cannot_change_the_schema_or_lift_the_policies)
{
    static const char *const ddl[] = {
        "CREATE TABLE mine (i int)",
        "ALTER TABLE events ADD COLUMN z int",
        "DROP TABLE complaints",
        "TRUNCATE events",
        "ALTER TABLE complaints DISABLE ROW LEVEL SECURITY",
        "DROP POLICY tenant_rows ON complaints",
        "CREATE POLICY everything ON complaints USING (true)",
        "CREATE INDEX mine ON events (type)",
        "ALTER TABLE events OWNER TO tally_app",
        "SET ROLE tally",
    };
    char s[8];
    PGconn *app = pgdb_connect_dsn(D.dsn);
    for (size_t i = 0; i < sizeof(ddl) / sizeof(ddl[0]); i++)
        cr_assert_str_eq(sqlstate(app, ddl[i], s, sizeof(s)), "42501", "%s", ddl[i]);
    /* Asking for no row security is refused rather than honoured. */
    PQclear(pgdb_sql(app, "SET row_security = off", 0, NULL));
    cr_assert_str_eq(sqlstate(app, "SELECT count(*) FROM complaints", s, sizeof(s)), "42501");
    PQfinish(app);
}

/* A later migration's table with a tenant_id column must get the policy too. */
Test(pg_rls, every_table_with_a_tenant_id_has_the_policy)
{
    PGconn *owner = pgdb_connect(&D);
    PGresult *r =
        pgdb_sql(owner,
                 "SELECT c.relname FROM pg_class c JOIN pg_attribute a"
                 " ON a.attrelid = c.oid AND a.attname = 'tenant_id'"
                 " WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace"
                 " AND (NOT c.relrowsecurity OR NOT EXISTS (SELECT 1 FROM pg_policy p"
                 "  WHERE p.polrelid = c.oid AND 'tally_service'::regrole = ANY"
                 "  (p.polroles)))",
                 0, NULL);
    cr_assert_eq(PQntuples(r), 0, "%s has no row-level security policy",
                 PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    /* ... and the policies say what they should: reads and writes, both by the tenant setting. */
    r = pgdb_sql(owner,
                 "SELECT c.relname, p.polcmd, pg_get_expr(p.polqual, p.polrelid),"
                 " pg_get_expr(p.polwithcheck, p.polrelid) FROM pg_policy p"
                 " JOIN pg_class c ON c.oid = p.polrelid",
                 0, NULL);
    cr_assert_eq(PQntuples(r), (int)NTABLES);
    for (int i = 0; i < PQntuples(r); i++) {
        const char *t = PQgetvalue(r, i, 0), *using = PQgetvalue(r, i, 2);
        cr_assert_str_eq(PQgetvalue(r, i, 1), "*", "%s: the policy is not for every command", t);
        cr_assert_str_eq(using, PQgetvalue(r, i, 3), "%s: USING and WITH CHECK differ", t);
        cr_assert_str_eq(using,
                         "((tenant_id = current_setting('tally.tenant'::text, true)) OR "
                         "(current_setting('tally.tenant'::text, true) = '*'::text))",
                         "%s", t);
    }
    PQclear(r);
    r = pgdb_sql(owner,
                 "SELECT count(*) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid"
                 " AND a.attname = 'tenant_id' WHERE c.relkind = 'r'"
                 " AND c.relnamespace = current_schema()::regnamespace",
                 0, NULL);
    cr_assert_eq(atoi(PQgetvalue(r, 0, 0)), (int)NTABLES, "tables with tenant_id: %s",
                 PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(owner);
}

/* command-svc says so at start when its role is not held to the policies (here: the owner). */
Test(pg_rls, command_svc_warns_when_its_role_bypasses_row_security)
{
    char owner_var[sizeof(D.owner_dsn) + 16];
    snprintf(owner_var, sizeof(owner_var), "TALLY_PG_DSN=%s", D.owner_dsn);
    const char *warning = "bypasses row-level security";
    for (int as_owner = 0; as_owner < 2; as_owner++) {
        proc p;
        const char *env[] = { as_owner ? owner_var : D.pg_var, "TALLY_RELAY=false",
                              "TALLY_GRPC_LISTEN=127.0.0.1:0", "TALLY_HTTP_LISTEN=127.0.0.1:0",
                              NULL };
        cr_assert_eq(proc_start(&p, COMMAND_SVC_PATH, env), 0, "command-svc did not start:\n%s",
                     p.log ? p.log : "");
        bool warned = proc_log_has(&p, warning);
        cr_assert_eq(proc_stop(&p, SIGTERM, 10000), 0);
        proc_release(&p);
        cr_assert_eq(warned, as_owner == 1, "as %s: warned %d", as_owner ? "owner" : "tally_app",
                     warned);
    }
}

/* The complaints a pgx session sees: one per tenant it may read (seed() gives each one). */
static long long pgx_count(pgx_conn *c)
{
    PGresult *r = NULL;
    cr_assert_eq(pgx_exec_sql(c, "SELECT count(*) FROM complaints", 5000, &r), 0, "%s",
                 pgx_errstr(c));
    long long n = pgx_int(r, 0, 0);
    PQclear(r);
    return n;
}

static char *tenant_seen(pgx_conn *c, char *buf, size_t len)
{
    PGresult *r = NULL;
    cr_assert_eq(pgx_exec_sql(c, "SELECT string_agg(tenant_id, ',') FROM complaints", 5000, &r), 0);
    snprintf(buf, len, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return buf;
}

/*
 * pgx_set_tenant: set once per change, kept across a reconnect (startup options), and set again
 * after a transaction that changed it was rolled back (which took the change back with it).
 */
Test(pg_rls, pgx_keeps_the_session_on_the_tenant_it_was_given)
{
    char seen[64];
    pgx_conn *c = pgx_new(D.dsn, "test-rls", NULL, 0, 0);
    cr_assert_eq(pgx_count(c), 0, "no tenant set: no row");
    cr_assert_eq(pgx_set_tenant(c, "ta"), 0);
    cr_assert_str_eq(tenant_seen(c, seen, sizeof(seen)), "ta");
    pgx_reset(c); /* a new session starts with it, before any statement of pgx's */
    cr_assert_eq(pgx_connect(c), 0);
    PGresult *r = PQexec(pgx_pg(c), "SELECT current_setting('tally.tenant', true)");
    cr_assert_str_eq(PQgetvalue(r, 0, 0), "ta", "the startup options did not carry the tenant");
    PQclear(r);
    cr_assert_str_eq(tenant_seen(c, seen, sizeof(seen)), "ta");
    /* Scoped to no tenant (a command-svc worker between calls): nothing is visible. */
    cr_assert_eq(pgx_set_tenant(c, NULL), 0);
    cr_assert_eq(pgx_count(c), 0, "a session scoped to no tenant sees rows");
    cr_assert_eq(pgx_set_tenant(c, "ta"), 0);
    cr_assert_eq(pgx_exec_sql(c, "BEGIN", 5000, NULL), 0);
    cr_assert_eq(pgx_set_tenant(c, "tb"), 0);
    cr_assert_str_eq(tenant_seen(c, seen, sizeof(seen)), "tb");
    cr_assert_eq(pgx_exec_sql(c, "ROLLBACK", 5000, NULL), 0); /* takes "tb" back to "ta" */
    cr_assert_str_eq(tenant_seen(c, seen, sizeof(seen)), "tb", "after the rollback");
    cr_assert_eq(pgx_set_tenant(c, "*"), 0);
    cr_assert_eq(pgx_count(c), 2);
    cr_assert_eq(pgx_set_tenant(c, ""), TALLY_EINVAL);
    cr_assert_eq(pgx_set_tenant(c, "a' OR true"), TALLY_EINVAL);
    cr_assert_eq(pgx_set_tenant(c, "a\tb"), TALLY_EINVAL);
    pgx_free(c);
}
