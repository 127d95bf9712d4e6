/*
 * system: a whole Tally of a test's own: a fresh PostgreSQL database on the test stack's server,
 * a private redis-server, and command-svc (with its outbox relay), the projector and query-svc,
 * all on free loopback ports.
 *
 * Why: command-svc's relay is a single leader per database (an advisory lock) and the read
 * model lives in one Redis, so two tests sharing storage would see each other's events and
 * fight over the relay. Criterion runs a file's tests in parallel; each builds a system.
 *
 * sys_start() creates and migrates a database of its own (pgdb.h), starts a redis-server of its
 * own (redis.h: no persistence, a private temporary directory) and the three services, and connects
 * gRPC clients and a libpq connection. Every child dies with the test (PR_SET_PDEATHSIG). The
 * children get the environment without any inherited TALLY_* variable, plus what the system sets
 * and the caller's extra variables. sys_stop() stops the services with SIGTERM and expects each to
 * exit 0 (under ASan a leak shows as a non-zero exit), kills Redis, and drops the database.
 *
 * Options for the fault tests (tests/chaos): several replicas of command-svc (so that the relay's
 * leadership can move) and of the projector (sharing the consumer group), each of which can be
 * killed and started again (a command-svc replica comes back on its gRPC port, so clients keep
 * their target); and a Redis with an append-only file, which can be restarted empty or from an
 * older snapshot on the same port with rsv_restart and rsv_snapshot on s->redis (the services
 * keep their URL).
 *
 * Functions assert (Criterion) instead of returning errors. A system is used by one thread.
 */
#ifndef TALLY_TEST_SYSTEM_H
#define TALLY_TEST_SYSTEM_H

#include "gclient.h"
#include "pgdb.h"
#include "proc.h"
#include "redis.h"
#include "tclock.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SYS_REPLICAS_MAX 4

typedef struct sys_options {
    /* "KEY=value" strings ended by NULL, or NULL, for each service. */
    const char *const *command_env;
    const char *const *projector_env;
    const char *const *query_env;
    /* Replicas of command-svc and of the projector: 0 means 1, at most SYS_REPLICAS_MAX. */
    int commands, projectors;
    /* Redis persists with an append-only file (appendonly yes, appendfsync everysec) instead of
     * not at all. */
    bool redis_aof;
    /* Each service connects as its own ACL user of deploy/redis-users.acl (password
     * "pw-<user>"); the default user stays open for the test's own connections. */
    bool redis_acl;
} sys_options;

/* The replicated services. */
typedef enum sys_service { SYS_COMMAND, SYS_PROJECTOR } sys_service;

typedef struct sys_system {
    pgdb db;            /* the system's database (db.dsn, db.pg_var) */
    rsv_server redis;   /* its redis-server (redis.port, redis.dir) */
    char redis_var[64]; /* "TALLY_REDIS_URL=..." of it */
    /* With redis_acl: each service's own URL (command-svc, projector, query-svc). */
    char redis_vars[3][128];
    sys_options opt;
    proc command, projector, query; /* command and projector: replica 0 */
    bool command_on, projector_on, query_on;
    /* Replicas 1.. (sys_options.commands, .projectors); command_ports[i] is replica i's gRPC
     * port, kept when it is started again (unless someone took it meanwhile: other threads
     * read it with __atomic_load_n). */
    int ncommands, nprojectors;
    proc command_more[SYS_REPLICAS_MAX - 1], projector_more[SYS_REPLICAS_MAX - 1];
    bool command_more_on[SYS_REPLICAS_MAX - 1], projector_more_on[SYS_REPLICAS_MAX - 1];
    int command_ports[SYS_REPLICAS_MAX];
    gc_client *cmd; /* to command-svc */
    gc_client *q;   /* to query-svc */
    PGconn *pg;     /* to the system's database */
} sys_system;

/* Builds and starts everything (see the file comment). opt may be NULL; it is copied. */
void sys_start(sys_system *s, const sys_options *opt);

/*
 * Stops what still runs: SIGTERM to query-svc, the projector and command-svc (expecting exit 0
 * from each), then Redis; drops the database. Safe on a partly started or zeroed system.
 */
void sys_stop(sys_system *s);

/* Stops the projector with SIGTERM and asserts it exited 0. */
void sys_projector_stop(sys_system *s);

/* Starts the projector (again). */
void sys_projector_start(sys_system *s);

/*
 * Stops command-svc (and with it the outbox relay) with SIGTERM and asserts it exited 0; s->cmd
 * stays usable but its calls fail. For tests that write pipeline state themselves.
 */
void sys_command_stop(sys_system *s);

/*
 * Stops query-svc with SIGTERM (asserting exit 0) and starts a new one, which knows nothing of
 * any tenant yet (a rolling restart, or another replica); s->q then calls the new one.
 */
void sys_query_restart(sys_system *s);

/*
 * Starts one more query-svc replica on the system's Redis (with sys_options.query_env), e.g. for
 * a client that balances over replicas; the caller stops it (proc_stop, proc_release).
 */
void sys_query_more(sys_system *s, proc *p);

/* A new connection to the system's Redis (asserts it connects); caller frees with redisFree. */
redisContext *sys_redis_connect(sys_system *s);

/* Kills redis-server (SIGKILL) and waits for it. Snapshots and restarts: rsv_* on s->redis. */
void sys_redis_kill(sys_system *s);

/* The number of replicas of k. */
int sys_replicas(const sys_system *s, sys_service k);

/* Replica i of k while it runs (borrowed until it is stopped or killed), else NULL. */
proc *sys_replica(sys_system *s, sys_service k, int i);

/* Starts replica i of k (again: a command-svc replica on its former gRPC port). */
void sys_replica_start(sys_system *s, sys_service k, int i);

/* Kills replica i of k with SIGKILL, waits for it and releases it (also when it is stopped). */
void sys_replica_kill(sys_system *s, sys_service k, int i);

/*
 * Imports histories with the real simulator: `tally-sim seed --tenants <tenants> --complaints
 * <complaints> --days <days>` against command-svc (replica 0); asserts it exits 0.
 */
void sys_import_history(sys_system *s, const char *tenants, int complaints, int days);

/*
 * Waits until the pipeline is idle: no events row unpublished and the projector's group has
 * read and acknowledged all of tally:events:0 (one partition, the system's default). Asserts
 * within timeout_ms (a cap for a broken pipeline, not a timing assertion).
 */
void sys_wait_idle(sys_system *s, int timeout_ms);

#endif
