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
#include <stdarg.h>
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
 * Starts a service with the system's storage and free ports (gRPC on grpc_port unless 0), plus
 * the caller's variables; waits until it listens (gRPC when grpc, HTTP always) and, if
 * ready_msg is set, until it logged that. False when it exited at start on a given grpc_port
 * (someone took the port meanwhile: the caller tries a free one).
 */
static bool start_service_on(sys_system *s, proc *p, const char *path, const char *const *extra,
                             bool grpc, int grpc_port, const char *ready_msg)
{
    const char *vars[64];
    char listen[64];
    size_t n = 0;
    for (size_t i = 0; extra && extra[i] && n < 56; i++)
        vars[n++] = extra[i];
    snprintf(listen, sizeof(listen), "TALLY_GRPC_LISTEN=127.0.0.1:%d", grpc_port);
    vars[n++] = s->pg_var;
    vars[n++] = s->redis_var;
    vars[n++] = listen;
    vars[n++] = "TALLY_HTTP_LISTEN=127.0.0.1:0";
    vars[n] = NULL;
    char *argv[] = { (char *)path, NULL };
    cr_assert_eq(proc_spawn(p, argv, vars, true), 0, "cannot start %s", path);
    for (int64_t until = sys_mono_ms() + START_MS; sys_mono_ms() < until; sys_sleep_ms(10)) {
        p->grpc_port = grpc ? proc_logged_port(p, "grpc server listening") : 0;
        p->http_port = proc_logged_port(p, "http server listening");
        bool ready = !ready_msg || proc_log_has(p, ready_msg);
        if ((!grpc || p->grpc_port) && p->http_port && ready)
            return true;
        int code = proc_wait(p, 0);
        if (code != -1 && grpc_port) {
            proc_release(p);
            return false;
        }
        cr_assert_eq(code, -1, "%s exited %d at start", path, code);
    }
    cr_assert_fail("%s did not start within %d ms", path, START_MS);
    return false;
}

static void start_service(sys_system *s, proc *p, const char *path, const char *const *extra,
                          bool grpc, const char *ready_msg)
{
    start_service_on(s, p, path, extra, grpc, 0, ready_msg);
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

/*
 * Starts redis-server on s->redis_port, with an append-only file when aof, else without
 * persistence (it still loads a dump.rdb it finds), and waits until it answers; false when it
 * exited (the port was taken meanwhile).
 */
static bool redis_spawn(sys_system *s, bool aof)
{
    char port[16], log[96];
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
               "--appendonly", aof ? "yes" : "no", "--appendfsync", "everysec", "--dir",
               s->redis_dir, (char *)NULL);
        _exit(127);
    }
    for (int64_t until = sys_mono_ms() + 30000; sys_mono_ms() < until; sys_sleep_ms(10)) {
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

/* One attempt on a free port; false when the server exited (the port was taken meanwhile). */
static bool redis_try(sys_system *s)
{
    s->redis_port = proc_free_port();
    return redis_spawn(s, s->opt.redis_aof);
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

/* The server's reply to one command (asserts it is not an error); caller frees. */
static redisReply *redis_must(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert(r, "Redis: %s", c->errstr);
    cr_assert_neq(r->type, REDIS_REPLY_ERROR, "Redis %s: %s", fmt, r->str);
    return r;
}

static void copy_file(const char *from, const char *to)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

void sys_redis_snapshot(sys_system *s, const char *path)
{
    char rdb[128];
    redisContext *c = sys_redis_connect(s);
    freeReplyObject(redis_must(c, "SAVE"));
    redisFree(c);
    snprintf(rdb, sizeof(rdb), "%s/dump.rdb", s->redis_dir);
    copy_file(rdb, path);
}

/* Waits until Redis wrote the base of its append-only file (after CONFIG SET appendonly). */
static void wait_aof_rewritten(redisContext *c)
{
    for (int64_t until = sys_mono_ms() + 60000; sys_mono_ms() < until; sys_sleep_ms(50)) {
        redisReply *r = redis_must(c, "INFO persistence");
        bool done = strstr(r->str, "aof_rewrite_in_progress:0") &&
                    strstr(r->str, "aof_rewrite_scheduled:0") && strstr(r->str, "aof_enabled:1");
        freeReplyObject(r);
        if (done)
            return;
    }
    cr_assert_fail("Redis did not write its append-only file within 60 s");
}

void sys_redis_restart(sys_system *s, const char *snapshot)
{
    char cmd[400], rdb[128];
    redisContext *c =
        redisConnectWithTimeout("127.0.0.1", s->redis_port, (struct timeval){ .tv_sec = 2 });
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "SHUTDOWN NOSAVE"); /* no reply when it worked */
        if (r)
            freeReplyObject(r);
    }
    if (c)
        redisFree(c);
    for (int64_t until = sys_mono_ms() + 5000; sys_mono_ms() < until; sys_sleep_ms(10))
        if (waitpid(s->redis_pid, NULL, WNOHANG) == s->redis_pid) {
            s->redis_pid = 0;
            break;
        }
    sys_redis_kill(s);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/appendonlydir' '%s/dump.rdb'", s->redis_dir,
             s->redis_dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    if (snapshot) {
        snprintf(rdb, sizeof(rdb), "%s/dump.rdb", s->redis_dir);
        copy_file(snapshot, rdb);
    }
    bool up = false;
    for (int i = 0; i < 50 && !up; i++) { /* the port is ours; a moment's retry at most */
        up = redis_spawn(s, s->opt.redis_aof && !snapshot);
        if (!up)
            sys_sleep_ms(100);
    }
    cr_assert(up, "redis-server would not start again on port %d (see %s/redis.log)", s->redis_port,
              s->redis_dir);
    if (snapshot && s->opt.redis_aof) {
        c = sys_redis_connect(s);
        freeReplyObject(redis_must(c, "CONFIG SET appendonly yes"));
        wait_aof_rewritten(c);
        redisFree(c);
    }
}

/* ---- replicas ------------------------------------------------------------------------------ */

int sys_replicas(const sys_system *s, sys_service k)
{
    return k == SYS_COMMAND ? s->ncommands : s->nprojectors;
}

/* Replica i's process and its "running" flag. */
static proc *replica(sys_system *s, sys_service k, int i, bool **on)
{
    cr_assert(i >= 0 && i < sys_replicas(s, k), "no replica %d", i);
    if (k == SYS_COMMAND) {
        *on = i ? &s->command_more_on[i - 1] : &s->command_on;
        return i ? &s->command_more[i - 1] : &s->command;
    }
    *on = i ? &s->projector_more_on[i - 1] : &s->projector_on;
    return i ? &s->projector_more[i - 1] : &s->projector;
}

proc *sys_replica(sys_system *s, sys_service k, int i)
{
    bool *on;
    proc *p = replica(s, k, i, &on);
    return *on ? p : NULL;
}

void sys_replica_start(sys_system *s, sys_service k, int i)
{
    bool *on;
    proc *p = replica(s, k, i, &on);
    cr_assert(!*on, "replica %d runs already", i);
    if (k == SYS_COMMAND) {
        if (!start_service_on(s, p, COMMAND_SVC_PATH, s->opt.command_env, true, s->command_ports[i],
                              NULL))
            start_service(s, p, COMMAND_SVC_PATH, s->opt.command_env, true, NULL);
        /* read by other threads (tests/support/traffic.h) */
        __atomic_store_n(&s->command_ports[i], p->grpc_port, __ATOMIC_RELAXED);
    } else {
        start_service(s, p, PROJECTOR_PATH, s->opt.projector_env, false,
                      "\"msg\":\"projector consuming\"");
    }
    *on = true;
}

void sys_replica_kill(sys_system *s, sys_service k, int i)
{
    bool *on;
    proc *p = replica(s, k, i, &on);
    if (!*on)
        return;
    *on = false;
    proc_stop(p, SIGKILL, STOP_MS);
    proc_release(p);
}

/* ---- the system ---------------------------------------------------------------------------- */

void sys_projector_start(sys_system *s)
{
    cr_assert(!s->projector_on, "the projector runs already");
    sys_replica_start(s, SYS_PROJECTOR, 0);
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

void sys_query_restart(sys_system *s)
{
    int rc = stop_service(&s->query, &s->query_on);
    cr_assert_eq(rc, 0, "query-svc exited %d on SIGTERM (its log is above)", rc);
    start_service(s, &s->query, QUERY_SVC_PATH, s->opt.query_env, true, NULL);
    s->query_on = true;
    gc_free(s->q);
    s->q = gc_new_port(s->query.grpc_port);
    cr_assert(s->q);
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
    s->ncommands = s->opt.commands > 0 ? s->opt.commands : 1;
    s->nprojectors = s->opt.projectors > 0 ? s->opt.projectors : 1;
    cr_assert(s->ncommands <= SYS_REPLICAS_MAX && s->nprojectors <= SYS_REPLICAS_MAX,
              "at most %d replicas", SYS_REPLICAS_MAX);
    create_database(s);
    migrate(s);
    start_redis(s);
    for (int i = 0; i < s->ncommands; i++)
        sys_replica_start(s, SYS_COMMAND, i);
    for (int i = 0; i < s->nprojectors; i++)
        sys_replica_start(s, SYS_PROJECTOR, i);
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
    for (int i = 0; i + 1 < s->nprojectors; i++) {
        int r = stop_service(&s->projector_more[i], &s->projector_more_on[i]);
        rp = rp ? rp : r;
    }
    int rc = stop_service(&s->command, &s->command_on);
    for (int i = 0; i + 1 < s->ncommands; i++) {
        int r = stop_service(&s->command_more[i], &s->command_more_on[i]);
        rc = rc ? rc : r;
    }
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
