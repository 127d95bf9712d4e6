/* system: a whole private Tally for a test. See system.h. */
#include "system.h"

#include "ev_wait.h"
#include "pgdb.h"
#include "tclock.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define START_MS 30000 /* longest wait for a service to listen (ASan builds start slowly) */
#define STOP_MS  20000 /* longest wait for a service to exit after SIGTERM */

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
    const char *redis = s->redis_var;
    if (s->opt.redis_acl)
        redis = s->redis_vars[strcmp(path, COMMAND_SVC_PATH) == 0 ? 0
                              : strcmp(path, PROJECTOR_PATH) == 0 ? 1
                                                                  : 2];
    snprintf(listen, sizeof(listen), "TALLY_GRPC_LISTEN=127.0.0.1:%d", grpc_port);
    proc_env_join(vars, 64, extra, s->db.pg_var, redis, listen, "TALLY_HTTP_LISTEN=127.0.0.1:0",
                  (const char *)NULL);
    char *argv[] = { (char *)path, NULL };
    cr_assert_eq(proc_spawn(p, argv, vars, true), 0, "cannot start %s", path);
    for (int64_t until = now_mono_ms() + START_MS; now_mono_ms() < until; tclock_sleep_ms(10)) {
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

void sys_query_more(sys_system *s, proc *p)
{
    start_service(s, p, QUERY_SVC_PATH, s->opt.query_env, true, NULL);
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
    return rsv_connect(&s->redis);
}

void sys_redis_kill(sys_system *s)
{
    rsv_stop(&s->redis, SIGKILL);
}

/*
 * Creates the users of deploy/redis-users.acl in the system's Redis, each with the password
 * "pw-<user>", and the services' URLs for them.
 */
static void load_acl(sys_system *s)
{
    static const char *const users[3] = { "tally-command", "tally-projector", "tally-query" };
    FILE *f = fopen(TALLY_SOURCE_DIR "/deploy/redis-users.acl", "r");
    cr_assert(f, "cannot read deploy/redis-users.acl");
    redisContext *c = rsv_connect(&s->redis);
    char line[2048];
    int loaded = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "user ", 5) != 0)
            continue;
        const char *argv[64];
        char pw[80], *save = NULL;
        int argc = 0;
        argv[argc++] = "ACL";
        argv[argc++] = "SETUSER";
        strtok_r(line, " \t\n", &save); /* "user" */
        char *name = strtok_r(NULL, " \t\n", &save);
        argv[argc++] = name;
        for (char *w; (w = strtok_r(NULL, " \t\n", &save)) && argc < 64;) {
            if (strcmp(w, ">CHANGE-ME") == 0) {
                snprintf(pw, sizeof(pw), ">pw-%s", name);
                w = pw;
            }
            argv[argc++] = w;
        }
        redisReply *r = redisCommandArgv(c, argc, argv, NULL);
        cr_assert(r && r->type == REDIS_REPLY_STATUS, "ACL SETUSER %s: %s", name,
                  r && r->str ? r->str : "no reply");
        freeReplyObject(r);
        loaded++;
    }
    fclose(f);
    redisFree(c);
    cr_assert_eq(loaded, 3, "deploy/redis-users.acl: %d users, want 3", loaded);
    for (int i = 0; i < 3; i++)
        snprintf(s->redis_vars[i], sizeof(s->redis_vars[i]),
                 "TALLY_REDIS_URL=redis://%s:pw-%s@127.0.0.1:%d/0", users[i], users[i],
                 s->redis.port);
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
    pgdb_create(&s->db, "tally_sys");
    pgdb_migrate(&s->db);
    rsv_options ro = { .appendonly = s->opt.redis_aof };
    rsv_start(&s->redis, &ro);
    snprintf(s->redis_var, sizeof(s->redis_var), "TALLY_REDIS_URL=redis://127.0.0.1:%d/0",
             s->redis.port);
    if (s->opt.redis_acl)
        load_acl(s);
    for (int i = 0; i < s->ncommands; i++)
        sys_replica_start(s, SYS_COMMAND, i);
    for (int i = 0; i < s->nprojectors; i++)
        sys_replica_start(s, SYS_PROJECTOR, i);
    start_service(s, &s->query, QUERY_SVC_PATH, s->opt.query_env, true, NULL);
    s->query_on = true;
    s->cmd = gc_new_port(s->command.grpc_port);
    s->q = gc_new_port(s->query.grpc_port);
    cr_assert(s->cmd && s->q);
    s->pg = pgdb_connect(&s->db);
}

void sys_stop(sys_system *s)
{
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
    rsv_release(&s->redis);
    pgdb_drop(&s->db);
    cr_expect_eq(rq, 0, "query-svc exited %d on SIGTERM (its log is above)", rq);
    cr_expect_eq(rp, 0, "the projector exited %d on SIGTERM (its log is above)", rp);
    cr_expect_eq(rc, 0, "command-svc exited %d on SIGTERM (its log is above)", rc);
}

void sys_import_history(sys_system *s, const char *tenants, int complaints, int days)
{
    char target[32], n[16], d[16];
    snprintf(target, sizeof(target), "127.0.0.1:%d", s->command.grpc_port);
    snprintf(n, sizeof(n), "%d", complaints);
    snprintf(d, sizeof(d), "%d", days);
    char *argv[] = { TALLY_BIN_DIR "/tally-sim",
                     "seed",
                     "--command",
                     target,
                     "--tenants",
                     (char *)tenants,
                     "--complaints",
                     n,
                     "--days",
                     d,
                     NULL };
    proc p;
    int rc = proc_run_argv(&p, argv, NULL, true, 240000);
    proc_release(&p);
    cr_assert_eq(rc, 0, "tally-sim seed --tenants %s exited %d", tenants, rc);
}

void sys_wait_idle(sys_system *s, int timeout_ms)
{
    redisContext *c = sys_redis_connect(s);
    for (int64_t until = now_mono_ms() + timeout_ms;; tclock_sleep_ms(20)) {
        bool published = pgdb_int(s->pg, "SELECT count(*) FROM outbox", 0, NULL) == 0;
        if (published && ev_group_idle(c, EV_STREAM))
            break;
        cr_assert_lt(now_mono_ms(), until, "the pipeline did not drain within %d ms", timeout_ms);
    }
    redisFree(c);
}
