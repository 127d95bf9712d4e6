/*
 * traffic: continuous write traffic against command-svc replicas, with a ledger of every
 * command that got OK, and the checks of that ledger against PostgreSQL and the read model.
 *
 * The complaints come from tally-sim's world and generator (sim/sim_world.h, sim/sim_gen.h:
 * tenants in their time zones with their categories and agents); the tenants' reference data
 * is put first. Worker threads, each with a connection to every replica, then send:
 *   - CreateComplaint with an idempotency key; a call that failed in transit (UNAVAILABLE,
 *     DEADLINE_EXCEEDED, CANCELLED: gc_transient) is sent again with the same key;
 *   - AssignComplaint and ChangeStatus of complaints created by the run (a working set shared
 *     by the workers, so two may race for one complaint), with the version last seen as
 *     expected_version; ABORTED or FAILED_PRECONDITION, and a failure in transit (whose outcome
 *     is unknown), are answered by re-reading the complaint (GetComplaint) and deciding again;
 *   - now and then an ImportComplaints batch of historical complaints (sent again as it was
 *     after a failure in transit: its keys make that a no-op).
 * A worker sticks to one replica and moves to another after a failure in transit. Any other
 * status is unexpected: it is counted and the first one kept for the report.
 *
 * The ledger holds each OK'd creation (tenant, key, complaint id) and each OK'd change (the
 * complaint, the version the reply gave, the status it moved to). traffic_check_postgres and
 * traffic_check_read_model say which of them PostgreSQL or the read model does not have.
 *
 * A traffic is started and stopped by one thread; its workers are its own. Nothing here
 * asserts or exits: errors are returned with a message.
 */
#ifndef TALLY_TEST_TRAFFIC_H
#define TALLY_TEST_TRAFFIC_H

#include "sim_world.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define TRAFFIC_WORKERS_MAX 8
#define TRAFFIC_PORTS_MAX   8

typedef struct traffic traffic;

typedef struct traffic_config {
    /* gRPC ports of the command-svc replicas on 127.0.0.1, borrowed for the traffic's life; a
     * port may change while it runs (a replica restarted elsewhere: sys_system.command_ports),
     * read atomically when a worker reconnects. */
    const int *ports;
    int nports;
    const char *tenants; /* "id:Area/Zone,..." as tally-sim's --tenants */
    uint64_t seed;
    int workers;      /* threads, 1..TRAFFIC_WORKERS_MAX */
    int pause_ms;     /* between two commands of a worker */
    int deadline_ms;  /* of each call */
    int import_every; /* one ImportComplaints batch per this many commands of a worker; 0: none */
    int import_batch; /* complaints per batch (1..100) */
    int import_days;  /* imported histories lie within the last days (1..365) */
} traffic_config;

/* Kinds of commands, for the counts. */
typedef enum traffic_kind {
    TRAFFIC_CREATE,
    TRAFFIC_IMPORT, /* counted per imported complaint */
    TRAFFIC_ASSIGN,
    TRAFFIC_STATUS,
    TRAFFIC_KINDS
} traffic_kind;

typedef struct traffic_stats {
    int64_t calls; /* calls made, retries and re-reads included */
    int64_t sent;  /* commands sent (each counted once, however often tried) */
    int64_t ok;    /* commands that got OK */
    int64_t ok_by_kind[TRAFFIC_KINDS];
    int64_t retried;             /* calls made again after a failure in transit */
    int64_t transient;           /* failures in transit */
    int64_t conflicts;           /* ABORTED and FAILED_PRECONDITION (re-read, decided again) */
    int64_t rereads;             /* GetComplaint calls */
    int64_t unexpected;          /* any other status */
    char first_unexpected[1200]; /* "method: CODE: details" of the first one */
} traffic_stats;

/*
 * Puts the tenants' reference data (retrying failures in transit for up to 60 s) and starts the
 * workers. NULL with the reason in err.
 */
traffic *traffic_start(const traffic_config *conf, char *err, size_t errlen);

/* Stops the workers after the calls in flight (a pending retry is abandoned) and joins them. */
void traffic_stop(traffic *t);

/* Stops (if needed) and frees. NULL-safe. */
void traffic_free(traffic *t);

/* The counts so far. */
void traffic_stats_get(traffic *t, traffic_stats *out);

/* The world the traffic writes (its tenants), borrowed for the traffic's life. */
const world *traffic_world(const traffic *t);

/*
 * After traffic_stop: checks that every OK'd creation's complaint exists with its idempotency
 * key and every OK'd change's version is in events (and a status change in status_history).
 * Prints up to 10 missing ones on out. Returns how many are missing, or -1 (the query failed,
 * said on out).
 */
int64_t traffic_check_postgres(traffic *t, PGconn *pg, FILE *out);

/*
 * After traffic_stop: checks that the read model applied every OK'd version (the complaint's
 * P cv at least the last OK'd version; docs/keyspace.md). Prints up to 10 missing ones on out;
 * *parked counts those whose complaint is parked ({t:T}:parked). Returns how many complaints
 * are behind (parked ones included), or -1 (Redis failed, said on out).
 */
int64_t traffic_check_read_model(traffic *t, redisContext *c, FILE *out, int64_t *parked);

#endif
