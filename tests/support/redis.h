/*
 * redis: a redis-server of a test's own, as hiredis's test.sh starts one: on a free loopback
 * port, in a private temporary directory (its data files and redis.log), killed with the test
 * (PR_SET_PDEATHSIG) whatever happens.
 *
 * rsv_start() picks a free port and starts the server (trying another port when someone took
 * it meanwhile); rsv_stop() ends it with a signal and keeps its directory, so that rsv_run()
 * starts it again on the same port from the data it left (an append-only file, or a dump.rdb
 * written by SAVE); rsv_restart() is a Redis that lost data: restarted empty, or from a
 * snapshot taken with rsv_snapshot(). rsv_release() kills it and removes its directory.
 *
 * Persistence is off unless asked for (--save "", no append-only file), so a stop loses
 * everything. Other settings (maxmemory, a policy) are the test's own CONFIG SET.
 *
 * Functions assert (Criterion) where the harness fails; rsv_open() is the exception, for
 * callers that poll a server that may be down. A server is used by one thread.
 */
#ifndef TALLY_TEST_REDIS_H
#define TALLY_TEST_REDIS_H

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct rsv_options {
    bool appendonly;         /* appendonly yes: its data survives a stop */
    const char *appendfsync; /* "always", "everysec" (NULL) or "no" */
} rsv_options;

typedef struct rsv_server {
    int port;     /* on 127.0.0.1 */
    pid_t pid;    /* 0 while it does not run */
    char dir[64]; /* its working directory: data files and redis.log */
    rsv_options opt;
} rsv_server;

/* Starts a server (opt may be NULL: no persistence) and waits until it answers PING. */
void rsv_start(rsv_server *r, const rsv_options *opt);

/*
 * Starts it again on its port and in its directory (loading what is there) with its options,
 * or with appendonly as given when appendonly is 0 or 1 (-1: its own); waits until it answers
 * PING (not LOADING any more).
 */
void rsv_run(rsv_server *r, int appendonly);

/* Sends sig (SIGTERM, SIGKILL) and waits until it exited; no-op when it does not run. */
void rsv_stop(rsv_server *r, int sig);

/*
 * SHUTDOWN NOSAVE (SIGKILL after 5 s), then waits until it exited: a stop that writes nothing,
 * whatever its persistence.
 */
void rsv_shutdown_nosave(rsv_server *r);

/* Saves its data (SAVE) and copies the RDB file to path, to restart from later. */
void rsv_snapshot(rsv_server *r, const char *path);

/*
 * Stops it without saving, deletes its data (RDB and append-only files) and starts it again on
 * its port: empty when snapshot is NULL, else with the data of that file. Redis 7.0 with
 * appendonly yes ignores an RDB file when it finds no append-only file (it starts empty), so a
 * snapshot is loaded with appendonly no, and the append-only file is then turned on (CONFIG SET
 * appendonly yes, which writes its base from the loaded data) when the server uses one.
 */
void rsv_restart(rsv_server *r, const char *snapshot);

/* Kills it (SIGKILL) and removes its directory. Safe on a zeroed or released server. */
void rsv_release(rsv_server *r);

/*
 * A connection (2 s to connect, 10 s per command), or NULL when the server does not answer.
 * Caller frees with redisFree.
 */
redisContext *rsv_open(const rsv_server *r);

/* As rsv_open, asserting it connects. */
redisContext *rsv_connect(const rsv_server *r);

/* "redis://127.0.0.1:<port>/0" into buf; returns buf. */
const char *rsv_url(const rsv_server *r, char *buf, size_t len);

/* One command's reply, asserting one arrived and is not an error; caller frees. */
redisReply *rsv_must(redisContext *c, const char *fmt, ...);

/* rsv_must with a va_list, for the callers' own variadic helpers. */
redisReply *rsv_vmust(redisContext *c, const char *fmt, va_list ap);

#endif
