/* redis: a private redis-server for a test. See redis.h. */
#define _GNU_SOURCE /* mkdtemp */
#include "redis.h"

#include "proc.h"
#include "tclock.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define ANSWER_MS 30000 /* longest wait for a started server to answer (it may load data) */

redisContext *rsv_open(const rsv_server *r)
{
    redisContext *c =
        redisConnectWithTimeout("127.0.0.1", r->port, (struct timeval){ .tv_sec = 2 });
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c)
        redisSetTimeout(c, (struct timeval){ .tv_sec = 10 });
    return c;
}

redisContext *rsv_connect(const rsv_server *r)
{
    redisContext *c =
        redisConnectWithTimeout("127.0.0.1", r->port, (struct timeval){ .tv_sec = 5 });
    cr_assert(c && !c->err, "cannot connect to the test's Redis on port %d: %s", r->port,
              c ? c->errstr : "out of memory");
    return c;
}

const char *rsv_url(const rsv_server *r, char *buf, size_t len)
{
    snprintf(buf, len, "redis://127.0.0.1:%d/0", r->port);
    return buf;
}

redisReply *rsv_vmust(redisContext *c, const char *fmt, va_list ap)
{
    redisReply *r = redisvCommand(c, fmt, ap);
    cr_assert(r, "Redis: %s", c->errstr);
    cr_assert_neq(r->type, REDIS_REPLY_ERROR, "Redis %s: %s", fmt, r->str);
    return r;
}

redisReply *rsv_must(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = rsv_vmust(c, fmt, ap);
    va_end(ap);
    return r;
}

/* PING answered with a status (not -LOADING, not an error). */
static bool answers(const rsv_server *r)
{
    redisContext *c = rsv_open(r);
    redisReply *p = c ? redisCommand(c, "PING") : NULL;
    bool ok = p && p->type == REDIS_REPLY_STATUS;
    if (p)
        freeReplyObject(p);
    if (c)
        redisFree(c);
    return ok;
}

/*
 * Starts redis-server on r->port in r->dir and waits until it answers; false when it exited
 * (the port was taken meanwhile).
 */
static bool spawn(rsv_server *r, bool appendonly)
{
    char port[16], log[96];
    snprintf(port, sizeof(port), "%d", r->port);
    snprintf(log, sizeof(log), "%s/redis.log", r->dir);
    r->pid = fork();
    cr_assert_geq(r->pid, 0, "fork: %s", strerror(errno));
    if (r->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the test, whatever happens */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", appendonly ? "yes" : "no", "--appendfsync",
               r->opt.appendfsync ? r->opt.appendfsync : "everysec", "--dir", r->dir, (char *)NULL);
        _exit(127);
    }
    for (int64_t until = now_mono_ms() + ANSWER_MS; now_mono_ms() < until; tclock_sleep_ms(10)) {
        if (answers(r))
            return true;
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return false;
        }
    }
    cr_assert_fail("redis-server did not answer on port %d (see %s)", r->port, log);
    return false;
}

void rsv_start(rsv_server *r, const rsv_options *opt)
{
    memset(r, 0, sizeof(*r));
    if (opt)
        r->opt = *opt;
    snprintf(r->dir, sizeof(r->dir), "/tmp/tally-redis-XXXXXX");
    cr_assert(mkdtemp(r->dir), "mkdtemp: %s", strerror(errno));
    bool up = false;
    for (int i = 0; i < 5 && !up; i++) {
        r->port = proc_free_port();
        up = spawn(r, r->opt.appendonly);
    }
    cr_assert(up, "redis-server would not start (see %s/redis.log)", r->dir);
}

void rsv_run(rsv_server *r, int appendonly)
{
    bool aof = appendonly < 0 ? r->opt.appendonly : appendonly != 0;
    bool up = false;
    for (int i = 0; i < 50 && !up; i++) { /* the port is ours; a moment's retry at most */
        up = spawn(r, aof);
        if (!up)
            tclock_sleep_ms(100);
    }
    cr_assert(up, "redis-server would not start again on port %d (see %s/redis.log)", r->port,
              r->dir);
}

void rsv_stop(rsv_server *r, int sig)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, sig);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

void rsv_shutdown_nosave(rsv_server *r)
{
    if (r->pid <= 0)
        return;
    redisContext *c =
        redisConnectWithTimeout("127.0.0.1", r->port, (struct timeval){ .tv_sec = 2 });
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "SHUTDOWN NOSAVE"); /* no reply when it worked */
        if (rep)
            freeReplyObject(rep);
    }
    if (c)
        redisFree(c);
    for (int64_t until = now_mono_ms() + 5000; now_mono_ms() < until; tclock_sleep_ms(10))
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return;
        }
    rsv_stop(r, SIGKILL);
}

static void copy_file(const char *from, const char *to)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", from, to);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

void rsv_snapshot(rsv_server *r, const char *path)
{
    char rdb[128];
    redisContext *c = rsv_connect(r);
    freeReplyObject(rsv_must(c, "SAVE"));
    redisFree(c);
    snprintf(rdb, sizeof(rdb), "%s/dump.rdb", r->dir);
    copy_file(rdb, path);
}

/* Waits until Redis wrote the base of its append-only file (after CONFIG SET appendonly). */
static void wait_aof_rewritten(redisContext *c)
{
    for (int64_t until = now_mono_ms() + 60000; now_mono_ms() < until; tclock_sleep_ms(50)) {
        redisReply *r = rsv_must(c, "INFO persistence");
        bool done = strstr(r->str, "aof_rewrite_in_progress:0") &&
                    strstr(r->str, "aof_rewrite_scheduled:0") && strstr(r->str, "aof_enabled:1");
        freeReplyObject(r);
        if (done)
            return;
    }
    cr_assert_fail("Redis did not write its append-only file within 60 s");
}

void rsv_restart(rsv_server *r, const char *snapshot)
{
    char cmd[400], rdb[128];
    rsv_shutdown_nosave(r);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/appendonlydir' '%s/dump.rdb'", r->dir, r->dir);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    if (snapshot) {
        snprintf(rdb, sizeof(rdb), "%s/dump.rdb", r->dir);
        copy_file(snapshot, rdb);
    }
    rsv_run(r, r->opt.appendonly && !snapshot);
    if (snapshot && r->opt.appendonly) {
        redisContext *c = rsv_connect(r);
        freeReplyObject(rsv_must(c, "CONFIG SET appendonly yes"));
        wait_aof_rewritten(c);
        redisFree(c);
    }
}

void rsv_release(rsv_server *r)
{
    char cmd[128];
    rsv_stop(r, SIGKILL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
    if (r->dir[0] && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", r->dir);
    r->dir[0] = '\0';
}
