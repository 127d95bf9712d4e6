/*
 * relayfix: what the outbox relay's tests (test_relay.c, test_relay_repair.c) share.
 *
 * Isolation: the relay's leadership is a PostgreSQL advisory lock, which is per database, and
 * other test binaries run command-svc against the stack's database at the same time. So each
 * test creates a database of its own on the stack's PostgreSQL server (pgdb.h, migrated by
 * fx_start_command_svc) and starts a redis-server of its own (redis.h); rl_setup() points
 * TALLY_PG_DSN and TALLY_REDIS_URL at them for the services the test starts, rl_teardown() ends
 * both. Up to two command-svc replicas run (rl.svc).
 *
 * The oracle is the events table of that database: every row of the test's tenant must appear
 * on the stream with the same seq (duplicates are allowed and must carry the same seq), each
 * entry as its row describes it, versions in order per complaint (rl_expect_published_after).
 *
 * Functions assert (Criterion), except the command calls, which threads use too.
 */
#ifndef TALLY_TEST_RELAYFIX_H
#define TALLY_TEST_RELAYFIX_H

#include "fixture.h"
#include "gclient.h"
#include "pgdb.h"
#include "proc.h"
#include "redis.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WAIT_MS 30000 /* longest wait for events to arrive or a replica to take over */

typedef struct rl_fixture {
    pgdb db;
    rsv_server redis;
    proc svc[2];
    bool svc_started[2];
} rl_fixture;

/* The test's fixture (one per test process). */
extern rl_fixture rl;

/* The suite's .init and .fini (see the file comment). */
void rl_setup(void);
void rl_teardown(void);

/* A statement on pg that must succeed (command or rows). */
void rl_pg_ok(PGconn *pg, const char *sql);

/* rsv_open on the test's Redis: a connection, or NULL while it is down. */
redisContext *rl_redis_open(void);

/* Migrates and starts command-svc replica i with env overrides. */
void rl_svc_start(int i, const char *const *env);

/* SIGTERM: replica i exits 0 (and leak-free under ASan), and is released. */
void rl_svc_stop(int i);

/* rl_svc_stop of a replica whose relay ran: it also logged "relay stopped". */
void rl_svc_stop_clean(int i);

/* A client of replica i (gc_free) with a new tenant (into tenant, 32 bytes) seeded in zone tz. */
gc_client *rl_tenant(int i, char *tenant, const char *tz);

/* kill -9 of replica i, and releases it. */
void rl_svc_kill(int i);

/* ---- commands (no asserts: also called from threads) ---------------------------------- */

/* One call; its status code, or -1 when it could not be made. The reply goes to out. */
int rl_call(gc_client *c, const char *method, const ProtobufCMessage *msg, gc_result *out);

/*
 * A complaint created, assigned, moved to in progress, then resolved: 4 events. 0, or the
 * failing step's status code (with the step in why).
 */
int rl_lifecycle(gc_client *c, const char *tenant, const char *key, char *why, size_t len);

/* n lifecycles with keys prefix-0 .. prefix-(n-1); asserts each succeeds. */
void rl_lifecycles(gc_client *c, const char *tenant, const char *prefix, int n);

/* ---- what the stream holds, against the events table ------------------------------------ */

typedef struct rl_event {
    int64_t seq, complaint, version;
    int type;
    char day[16];
} rl_event;

typedef struct rl_events {
    rl_event *v; /* malloc'd: the caller frees v */
    size_t n, cap;
    char last_id[64]; /* stream entries read so far end here */
} rl_events;

/* The tenant's rows of the events table with a seq above after_seq, by seq (out zeroed first). */
void rl_table_events(const char *tenant, int64_t after_seq, rl_events *out);

/* Appends the tenant's stream entries past l->last_id, in stream order. */
void rl_stream_read(redisContext *c, const char *tenant, rl_events *l);

/*
 * Waits until every row of the tenant in the events table with a seq above after_seq is on
 * the stream, then checks each entry against its row and the version order per complaint.
 * seen keeps the stream entries read so far. Returns the number of rows required.
 */
size_t rl_expect_published_after(const char *tenant, int64_t after_seq, rl_events *seen);

/* rl_expect_published_after from the tenant's first row. */
size_t rl_expect_all_published(const char *tenant, rl_events *seen);

/* The highest seq of l (0 when empty). */
int64_t rl_max_seq(const rl_events *l);

/* The value of a series ("name" or "name{labels}") of a command-svc's /metrics; -1 if absent. */
double rl_metric(const proc *p, const char *series);

/*
 * Waits up to WAIT_MS until replica i's log has needle; asserts it does. A line says what the
 * relay did after it, on its own thread: it may come later than what a test saw in Redis or
 * PostgreSQL (the line that ends an outage follows the pass's mark), and it reaches the log
 * through a pipe the test reads on a thread of its own.
 */
void rl_expect_log(int i, const char *needle);

#endif
