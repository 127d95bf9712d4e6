/*
 * faults: the failures a Tally must survive, injected into a running system (system.h), and
 * the settling that follows them.
 *
 *   kill -9 a projector (it comes back after a pause), kill -9 the relay leader (the
 *   command-svc replica whose /metrics says tally_relay_leader 1; it comes back on its port),
 *   restart Redis empty, restart Redis from an older snapshot, terminate the services'
 *   PostgreSQL sessions (pg_terminate_backend, chosen by application_name), hold Redis at its
 *   maxmemory for a while (CONFIG SET maxmemory to used_memory, then 0), freeze a process
 *   (SIGSTOP, then SIGCONT).
 *
 * Each function does the whole fault (including the restart) before it returns, and says what
 * it did in a line of its own in out (for the run's log). They run on the system's thread and
 * assert (Criterion) where the harness itself fails; what the system does is for the caller to
 * check (fault_settle, then the checks).
 */
#ifndef TALLY_TEST_FAULTS_H
#define TALLY_TEST_FAULTS_H

#include "system.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef enum fault_kind {
    FAULT_PROJECTOR_KILL,
    FAULT_LEADER_KILL,
    FAULT_PG_TERMINATE,
    FAULT_REDIS_OOM,
    FAULT_PROJECTOR_FREEZE,
    FAULT_REDIS_WIPE,     /* restart empty */
    FAULT_REDIS_ROLLBACK, /* restart from an older snapshot */
    FAULT_KINDS
} fault_kind;

/* "kill -9 projector", ... : the kind's name for reports. */
const char *fault_name(fault_kind k);

/* The command-svc replica whose relay leads (tally_relay_leader 1), or -1. */
int fault_relay_leader(sys_system *s);

/* Kills projector i with SIGKILL and starts it again down_ms later. */
void fault_projector_kill(sys_system *s, int i, int down_ms, FILE *out);

/*
 * Kills the relay leader with SIGKILL and starts it again down_ms later. Waits up to wait_ms
 * for a leader first; false (and nothing done) when none led in that time.
 */
bool fault_leader_kill(sys_system *s, int down_ms, int wait_ms, FILE *out);

/*
 * pg_terminate_backend of every session of the system's database whose application_name is
 * LIKE app_like ("command-svc/relay", "command-svc/%"). Returns how many were terminated.
 */
int fault_pg_terminate(sys_system *s, const char *app_like, FILE *out);

/* Sets Redis's maxmemory to its used_memory for hold_ms, then back to 0 (no limit). */
void fault_redis_oom(sys_system *s, int hold_ms, FILE *out);

/* SIGSTOP to replica i of k, SIGCONT hold_ms later. */
void fault_freeze(sys_system *s, sys_service k, int i, int hold_ms, FILE *out);

/* Restarts Redis without its data (rsv_restart). */
void fault_redis_wipe(sys_system *s, FILE *out);

/* Restarts Redis from snapshot (rsv_snapshot taken earlier). */
void fault_redis_rollback(sys_system *s, const char *snapshot, FILE *out);

/* What fault_settle waited for, when it returns. */
typedef struct fault_settled {
    bool settled;
    int64_t ms;          /* how long it took (or the bound) */
    int64_t unpublished; /* rows of the outbox (events not published yet) */
    int64_t pending;     /* entries of the projector group not acknowledged, all partitions */
    int64_t undelivered; /* entries not delivered to the group yet, all partitions */
    bool repairing;      /* tally:repair or tally:repair:request exists */
} fault_settled;

/*
 * Waits up to bound_ms until the pipeline has nothing in flight, twice in a row 500 ms apart:
 * no unpublished events row, nothing pending or undelivered in the projector group of each of
 * the partitions streams, no tally:repair nor tally:repair:request.
 */
fault_settled fault_settle(sys_system *s, int partitions, int64_t bound_ms);

#endif
