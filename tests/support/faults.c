/* faults: failures injected into a running system, and the settling after them. See faults.h. */
#include "faults.h"

#include "ev_wait.h"
#include "pgdb.h"
#include "tclock.h"

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MAX (256 << 10)

static const char *const names[FAULT_KINDS] = {
    [FAULT_PROJECTOR_KILL] = "kill -9 projector",    [FAULT_LEADER_KILL] = "kill -9 relay leader",
    [FAULT_PG_TERMINATE] = "pg_terminate_backend",   [FAULT_REDIS_OOM] = "Redis at maxmemory",
    [FAULT_PROJECTOR_FREEZE] = "SIGSTOP projector",  [FAULT_REDIS_WIPE] = "Redis restarted empty",
    [FAULT_REDIS_ROLLBACK] = "Redis from older RDB",
};

const char *fault_name(fault_kind k)
{
    return k >= 0 && k < FAULT_KINDS ? names[k] : "?";
}

/* The value of a metric line "name value" (no labels) in a /metrics page, or -1. */
static double metric(const char *page, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = page; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
        if (strncmp(l, name, n) == 0 && l[n] == ' ')
            return strtod(l + n + 1, NULL);
    return -1;
}

int fault_relay_leader(sys_system *s)
{
    char *page = malloc(METRICS_MAX);
    int leader = -1;
    cr_assert(page);
    for (int i = 0; i < sys_replicas(s, SYS_COMMAND) && leader < 0; i++) {
        proc *p = sys_replica(s, SYS_COMMAND, i);
        if (p && proc_http_get(p->http_port, "/metrics", page, METRICS_MAX) == 200 &&
            metric(page, "tally_relay_leader") == 1)
            leader = i;
    }
    free(page);
    return leader;
}

void fault_projector_kill(sys_system *s, int i, int down_ms, FILE *out)
{
    sys_replica_kill(s, SYS_PROJECTOR, i);
    tclock_sleep_ms(down_ms);
    sys_replica_start(s, SYS_PROJECTOR, i);
    fprintf(out, "kill -9 projector %d, started again after %d ms\n", i, down_ms);
}

bool fault_leader_kill(sys_system *s, int down_ms, int wait_ms, FILE *out)
{
    int leader = -1;
    int64_t t0 = now_mono_ms();
    while ((leader = fault_relay_leader(s)) < 0 && now_mono_ms() - t0 < wait_ms)
        tclock_sleep_ms(100);
    if (leader < 0) {
        fprintf(out, "no relay leader among the command-svc replicas for %d ms\n", wait_ms);
        return false;
    }
    sys_replica_kill(s, SYS_COMMAND, leader);
    tclock_sleep_ms(down_ms);
    sys_replica_start(s, SYS_COMMAND, leader);
    fprintf(out, "kill -9 command-svc %d (the relay leader), started again after %d ms\n", leader,
            down_ms);
    return true;
}

int fault_pg_terminate(sys_system *s, const char *app_like, FILE *out)
{
    const char *params[] = { app_like };
    PGresult *r = pgdb_sql(s->pg,
                           "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                           "AND application_name LIKE $1",
                           1, params);
    int n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    fprintf(out, "pg_terminate_backend of %d session(s) named like %s\n", n, app_like);
    return n;
}

static redisReply *must(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    cr_assert(r, "Redis %s: %s", cmd, c->errstr);
    cr_assert_neq(r->type, REDIS_REPLY_ERROR, "Redis %s: %s", cmd, r->str);
    return r;
}

void fault_redis_oom(sys_system *s, int hold_ms, FILE *out)
{
    redisContext *c = sys_redis_connect(s);
    redisReply *r = must(c, "INFO memory");
    const char *u = strstr(r->str, "used_memory:");
    cr_assert(u, "INFO memory has no used_memory");
    long long used = atoll(u + strlen("used_memory:"));
    freeReplyObject(r);
    r = redisCommand(c, "CONFIG SET maxmemory %lld", used);
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "CONFIG SET maxmemory: %s",
              r ? r->str : c->errstr);
    freeReplyObject(r);
    tclock_sleep_ms(hold_ms);
    freeReplyObject(must(c, "CONFIG SET maxmemory 0"));
    redisFree(c);
    fprintf(out, "Redis maxmemory %lld (its used_memory) for %d ms, then 0\n", used, hold_ms);
}

void fault_freeze(sys_system *s, sys_service k, int i, int hold_ms, FILE *out)
{
    proc *p = sys_replica(s, k, i);
    cr_assert(p, "replica %d does not run", i);
    kill(p->pid, SIGSTOP);
    tclock_sleep_ms(hold_ms);
    kill(p->pid, SIGCONT);
    fprintf(out, "SIGSTOP %s %d for %d ms, then SIGCONT\n",
            k == SYS_COMMAND ? "command-svc" : "projector", i, hold_ms);
}

void fault_redis_wipe(sys_system *s, FILE *out)
{
    rsv_restart(&s->redis, NULL);
    fprintf(out, "Redis stopped without saving, its files deleted, started again empty\n");
}

void fault_redis_rollback(sys_system *s, const char *snapshot, FILE *out)
{
    rsv_restart(&s->redis, snapshot);
    fprintf(out, "Redis stopped without saving, started again from the older snapshot %s\n",
            snapshot);
}

/* ---- settling ------------------------------------------------------------------------------ */

static bool settled_once(sys_system *s, int partitions, fault_settled *f)
{
    f->unpublished = f->pending = f->undelivered = 0;
    f->repairing = false;
    PGresult *r = PQexec(s->pg, "SELECT count(*) FROM outbox");
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        f->unpublished = atoll(PQgetvalue(r, 0, 0));
    else
        f->unpublished = -1;
    PQclear(r);
    if (f->unpublished < 0) {
        PQreset(s->pg);
        return false;
    }
    redisContext *c = rsv_open(&s->redis);
    if (!c) {
        f->undelivered = 1;
        return false;
    }
    for (int p = 0; p < partitions; p++) {
        char stream[32];
        int64_t pending, undelivered;
        snprintf(stream, sizeof(stream), "tally:events:%d", p);
        if (ev_group_state(c, stream, &pending, &undelivered) < 0)
            undelivered = 1; /* no group yet, or Redis failing: not settled */
        f->pending += pending;
        f->undelivered += undelivered;
    }
    redisReply *e = redisCommand(c, "EXISTS tally:repair tally:repair:request");
    f->repairing = !e || e->type != REDIS_REPLY_INTEGER || e->integer != 0;
    if (e)
        freeReplyObject(e);
    redisFree(c);
    return f->unpublished == 0 && f->pending == 0 && f->undelivered == 0 && !f->repairing;
}

fault_settled fault_settle(sys_system *s, int partitions, int64_t bound_ms)
{
    fault_settled f = { 0 };
    int64_t t0 = now_mono_ms();
    int in_row = 0;
    while (now_mono_ms() - t0 < bound_ms) {
        in_row = settled_once(s, partitions, &f) ? in_row + 1 : 0;
        if (in_row == 2) {
            f.settled = true;
            break;
        }
        tclock_sleep_ms(500);
    }
    f.ms = now_mono_ms() - t0;
    return f;
}
