#define _GNU_SOURCE /* pipe2, mkdtemp */
#include "system.h"

#include "events.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_MS 30000 /* longest wait for a service to listen (ASan builds start slowly) */
#define STOP_MS  20000 /* longest wait for a service to exit after SIGTERM */

int64_t sys_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sys_sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- children ------------------------------------------------------------------------------ */

/*
 * Starts a service with the system's storage and free ports, plus the caller's variables; waits
 * until it listens (gRPC when grpc, HTTP always) and, if ready_msg is set, until it logged that.
 */
static void start_service(sys_system *s, proc *p, const char *path, const char *const *extra,
                          bool grpc, const char *ready_msg)
{
    const char *vars[64];
    size_t n = 0;
    for (size_t i = 0; extra && extra[i] && n < 56; i++)
        vars[n++] = extra[i];
    vars[n++] = s->pg_var;
    vars[n++] = s->redis_var;
    vars[n++] = "TALLY_GRPC_LISTEN=127.0.0.1:0";
    vars[n++] = "TALLY_HTTP_LISTEN=127.0.0.1:0";
    vars[n] = NULL;
    char *argv[] = { (char *)path, NULL };
    cr_assert_eq(proc_spawn(p, argv, vars, true), 0, "cannot start %s", path);
    for (int64_t until = sys_mono_ms() + START_MS; sys_mono_ms() < until; sys_sleep_ms(10)) {
        p->grpc_port = grpc ? proc_logged_port(p, "grpc server listening") : 0;
        p->http_port = proc_logged_port(p, "http server listening");
        bool ready = !ready_msg || proc_log_has(p, ready_msg);
        if ((!grpc || p->grpc_port) && p->http_port && ready)
            return;
        int code = proc_wait(p, 0);
        cr_assert_eq(code, -1, "%s exited %d at start", path, code);
    }
    cr_assert_fail("%s did not start within %d ms", path, START_MS);
}

/* SIGTERM, wait, release; the exit code (-1: it had to be killed). */
static int stop_service(proc *p, bool *on)
{
    if (!*on)
        return 0;
    *on = false;
    int rc = proc_stop(p, SIGTERM, STOP_MS);
    proc_release(p);
    return rc;
}

/* ---- PostgreSQL ---------------------------------------------------------------------------- */

static PGconn *admin_conn(void)
{
    const char *dsn = getenv("TALLY_PG_DSN");
    cr_assert(dsn && getenv("TALLY_REDIS_URL"),
              "TALLY_PG_DSN and TALLY_REDIS_URL are not set: run the tests with scripts/test");
    PGconn *c = PQconnectdb(dsn);
    cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

static void admin_exec(const char *sql)
{
    PGconn *c = admin_conn();
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    char err[512];
    snprintf(err, sizeof(err), "%s", PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    cr_assert(ok, "%s: %s", sql, err);
}

/* s->dsn := TALLY_PG_DSN's parameters with dbname = s->db, as a key='value' conninfo. */
static void make_dsn(sys_system *s)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(getenv("TALLY_PG_DSN"), &err);
    cr_assert(opts, "TALLY_PG_DSN: %s", err ? err : "out of memory");
    size_t len = 0;
    s->dsn[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        const char *v = strcmp(o->keyword, "dbname") == 0 ? s->db : o->val;
        if (!v || !v[0])
            continue;
        len += (size_t)snprintf(s->dsn + len, sizeof(s->dsn) - len, "%s%s='", len ? " " : "",
                                o->keyword);
        for (const char *c = v; *c && len + 4 < sizeof(s->dsn); c++) {
            if (*c == '\'' || *c == '\\')
                s->dsn[len++] = '\\';
            s->dsn[len++] = *c;
        }
        cr_assert_lt(len + 2, sizeof(s->dsn), "TALLY_PG_DSN is too long");
        s->dsn[len++] = '\'';
        s->dsn[len] = '\0';
    }
    PQconninfoFree(opts);
    snprintf(s->pg_var, sizeof(s->pg_var), "TALLY_PG_DSN=%s", s->dsn);
}

static void create_database(sys_system *s)
{
    static int n;
    char sql[128];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(s->db, sizeof(s->db), "tally_sys_%d_%d_%ld", (int)getpid(), ++n,
             (long)(ts.tv_nsec / 1000));
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", s->db);
    admin_exec(sql);
    make_dsn(s);
}

static void migrate(sys_system *s)
{
    proc p;
    const char *vars[] = { s->pg_var, NULL };
    char *argv[] = { (char *)COMMAND_SVC_PATH, "migrate", NULL };
    cr_assert_eq(proc_spawn(&p, argv, vars, true), 0, "cannot start command-svc migrate");
    int rc = proc_wait(&p, 60000);
    if (rc == -1)
        proc_stop(&p, SIGKILL, 5000);
    proc_release(&p);
    cr_assert_eq(rc, 0, "command-svc migrate exited %d", rc);
}

/* ---- Redis --------------------------------------------------------------------------------- */

static bool redis_answers(int port)
{
    redisContext *c =
        redisConnectWithTimeout("127.0.0.1", port, (struct timeval){ .tv_usec = 500000 });
    bool ok = false;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    return ok;
}

/* One attempt on a free port; false when the server exited (the port was taken meanwhile). */
static bool redis_try(sys_system *s)
{
    char port[16], log[96];
    s->redis_port = proc_free_port();
    snprintf(port, sizeof(port), "%d", s->redis_port);
    snprintf(log, sizeof(log), "%s/redis.log", s->redis_dir);
    s->redis_pid = fork();
    cr_assert_geq(s->redis_pid, 0);
    if (s->redis_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", s->redis_dir, (char *)NULL);
        _exit(127);
    }
    for (int64_t until = sys_mono_ms() + 10000; sys_mono_ms() < until; sys_sleep_ms(10)) {
        if (redis_answers(s->redis_port))
            return true;
        if (waitpid(s->redis_pid, NULL, WNOHANG) == s->redis_pid) {
            s->redis_pid = 0;
            return false;
        }
    }
    cr_assert_fail("redis-server did not answer on port %d (see %s)", s->redis_port, log);
    return false;
}

static void start_redis(sys_system *s)
{
    snprintf(s->redis_dir, sizeof(s->redis_dir), "/tmp/tally-sys-XXXXXX");
    cr_assert(mkdtemp(s->redis_dir), "mkdtemp: %s", strerror(errno));
    bool up = false;
    for (int i = 0; i < 5 && !up; i++)
        up = redis_try(s);
    cr_assert(up, "redis-server would not start (see %s/redis.log)", s->redis_dir);
    snprintf(s->redis_var, sizeof(s->redis_var), "TALLY_REDIS_URL=redis://127.0.0.1:%d/0",
             s->redis_port);
}

void sys_redis_kill(sys_system *s)
{
    if (s->redis_pid <= 0)
        return;
    kill(s->redis_pid, SIGKILL);
    waitpid(s->redis_pid, NULL, 0);
    s->redis_pid = 0;
}

/* ---- the system ---------------------------------------------------------------------------- */

void sys_projector_start(sys_system *s)
{
    cr_assert(!s->projector_on, "the projector runs already");
    start_service(s, &s->projector, PROJECTOR_PATH, s->opt.projector_env, false,
                  "\"msg\":\"projector consuming\"");
    s->projector_on = true;
}

void sys_projector_stop(sys_system *s)
{
    int rc = stop_service(&s->projector, &s->projector_on);
    cr_assert_eq(rc, 0, "the projector exited %d on SIGTERM (its log is above)", rc);
}

void sys_command_stop(sys_system *s)
{
    int rc = stop_service(&s->command, &s->command_on);
    cr_assert_eq(rc, 0, "command-svc exited %d on SIGTERM (its log is above)", rc);
}

redisContext *sys_redis_connect(sys_system *s)
{
    redisContext *c =
        redisConnectWithTimeout("127.0.0.1", s->redis_port, (struct timeval){ .tv_sec = 5 });
    cr_assert(c && !c->err, "cannot connect to the system's Redis on port %d: %s", s->redis_port,
              c ? c->errstr : "out of memory");
    return c;
}

void sys_start(sys_system *s, const sys_options *opt)
{
    memset(s, 0, sizeof(*s));
    if (opt)
        s->opt = *opt;
    create_database(s);
    migrate(s);
    start_redis(s);
    start_service(s, &s->command, COMMAND_SVC_PATH, s->opt.command_env, true, NULL);
    s->command_on = true;
    sys_projector_start(s);
    start_service(s, &s->query, QUERY_SVC_PATH, s->opt.query_env, true, NULL);
    s->query_on = true;
    s->cmd = gc_new_port(s->command.grpc_port);
    s->q = gc_new_port(s->query.grpc_port);
    cr_assert(s->cmd && s->q);
    s->pg = PQconnectdb(s->dsn);
    cr_assert_eq(PQstatus(s->pg), CONNECTION_OK, "%s", PQerrorMessage(s->pg));
}

void sys_stop(sys_system *s)
{
    char sql[128], cmd[128];
    gc_free(s->q);
    gc_free(s->cmd);
    s->q = s->cmd = NULL;
    if (s->pg)
        PQfinish(s->pg);
    s->pg = NULL;
    int rq = stop_service(&s->query, &s->query_on);
    int rp = stop_service(&s->projector, &s->projector_on);
    int rc = stop_service(&s->command, &s->command_on);
    sys_redis_kill(s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->redis_dir);
    if (s->redis_dir[0] && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s->redis_dir);
    s->redis_dir[0] = '\0';
    if (s->db[0]) {
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", s->db);
        s->db[0] = '\0';
        admin_exec(sql);
    }
    cr_expect_eq(rq, 0, "query-svc exited %d on SIGTERM (its log is above)", rq);
    cr_expect_eq(rp, 0, "the projector exited %d on SIGTERM (its log is above)", rp);
    cr_expect_eq(rc, 0, "command-svc exited %d on SIGTERM (its log is above)", rc);
}

void sys_wait_idle(sys_system *s, int timeout_ms)
{
    redisContext *c = sys_redis_connect(s);
    for (int64_t until = sys_mono_ms() + timeout_ms;; sys_sleep_ms(20)) {
        PGresult *r = PQexec(s->pg, "SELECT count(*) FROM events WHERE published_at IS NULL");
        cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
        bool published = strcmp(PQgetvalue(r, 0, 0), "0") == 0;
        PQclear(r);
        if (published && ev_group_idle(c, EV_STREAM))
            break;
        cr_assert_lt(sys_mono_ms(), until, "the pipeline did not drain within %d ms", timeout_ms);
    }
    redisFree(c);
}
