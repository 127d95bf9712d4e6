/*
 * ev_gen: realistic event histories for the projector's tests, from the one simulator (sim/).
 *
 * ev_generate() runs sim_emit over a world of a few tenants (acme, globex, initech, umbrella,
 * hooli, wonka in their time zones, with tally-sim's reference data) for months from
 * 2024-01-01, deterministic from a seed, with the life mix turned up (world_mix): complaints
 * created in several categories and priorities, assigned, reassigned, unassigned and picked up
 * again, moved to IN_PROGRESS, resolved (some within 0..2 s), reopened and resolved again,
 * closed; categories, agents and tenants renamed now and then. The events are what command-svc
 * writes (seq 1, 2, ...; versions 1.. per complaint; StatusChanged with category, priority, the
 * current agent, created_at and resolution_seconds; ComplaintAssigned with the previous agent,
 * the status and created_at), with the envelope bytes sim_emit packed (event_pack, as the relay
 * publishes them); each ev_event's fields are read back from those bytes. This file is an
 * adapter: what happens in a history is the simulator's.
 *
 * ev_pack() packs an event again from its fields (after a test altered them), ev_order() gives
 * the orders a stream may deliver them in (in order, every event twice, versions swapped), and
 * ev_xadd() writes them to a stream as the relay does (field "e").
 */
#ifndef TALLY_TEST_EV_GEN_H
#define TALLY_TEST_EV_GEN_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EV_MAX_TENANTS 6
#define EV_ID_MAX      72               /* an id of 64 bytes, and room for a bad one of 65 */
#define EV_STREAM      "tally:events:0" /* the one partition the tests use */
#define EV_DEAD        "tally:dead:0"

/* One event: its fields (what the body carries) and its envelope bytes. */
typedef struct ev_event {
    char tenant_id[EV_ID_MAX];
    int64_t seq, complaint, version;
    int type; /* tally.v1.EventType */
    int64_t occurred_ms, recorded_ms;
    char day[16]; /* local_day: "YYYY-MM-DD" (room for malformed ones) */
    /* ComplaintCreated, ComplaintAssigned, StatusChanged */
    char category[EV_ID_MAX], agent[EV_ID_MAX], prev_agent[EV_ID_MAX], created_day[11];
    int priority, status, from, to; /* status: ComplaintCreated/ComplaintAssigned */
    int64_t created_ms, resolution_s;
    /* TenantPut, CategoryPut, AgentPut */
    char ref_id[EV_ID_MAX], name[128], tz[72];
    uint8_t *bytes; /* the envelope; owned, set by ev_pack */
    size_t len;
} ev_event;

typedef struct ev_history {
    ev_event *v; /* in seq order, which is each complaint's version order */
    size_t n, cap;
    int ntenants;
    char tenants[EV_MAX_TENANTS][EV_ID_MAX];
    int64_t complaints; /* complaint ids run 1..complaints, across tenants */
} ev_history;

typedef struct ev_options {
    uint64_t seed;
    int tenants;   /* 1..EV_MAX_TENANTS */
    size_t events; /* exactly this many (reference data included) */
    int days;      /* the window: this many days from 2024-01-01 */
} ev_options;

/*
 * Fills h (zeroed by the caller); free with ev_history_release. Like everything here, it
 * aborts the test if memory runs out.
 */
void ev_generate(ev_history *h, const ev_options *o);

void ev_history_release(ev_history *h);

/* (Re)packs e->bytes from e's fields, e.g. after a test altered them. 0, or -1 (bad type). */
int ev_pack(ev_event *e);

/* Index of the event of complaint id with version v, or -1. */
long ev_find(const ev_history *h, int64_t complaint, int64_t version);

/* Stream orders of a history: indexes into h->v, malloc'd (caller frees), count in *n. */
enum ev_order {
    EV_IN_ORDER,  /* seq order */
    EV_TWICE,     /* every event twice, the copy a few places after the original */
    EV_REORDERED, /* in order, but about a quarter of the events of each complaint swapped
                     with their predecessor version (v3 before v2) */
};
size_t *ev_order(const ev_history *h, enum ev_order how, uint64_t seed, size_t *n);

/* XADDs h->v[order[i]] for i < n to stream (field "e"), pipelined. 0, or -1 with err. */
int ev_xadd(redisContext *c, const char *stream, const ev_history *h, const size_t *order, size_t n,
            char *err, size_t errlen);

#endif
