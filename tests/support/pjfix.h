/*
 * pjfix: what the projector's tests (test_projector.c, test_projector_faults.c) share: a
 * redis-server of the test's own (redis.h), up to PJF_PROJECTORS real projector binaries
 * against it (or against a proxy in front of it), an event history with its stream order and
 * the events to skip, and the oracle's model (ev_model.h) with the wait and the comparison.
 *
 * A test's rig is a static pjf_rig (zeroed); pjf_release() in the suite's .fini frees whatever
 * was set up. Functions assert (Criterion) where the harness or the expectation fails.
 */
#ifndef TALLY_TEST_PJFIX_H
#define TALLY_TEST_PJFIX_H

#include "events.h"
#include "proc.h"
#include "redis.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PJF_PROJECTORS 2
#define PJF_WAIT_MS    60000 /* longest wait for the projector to catch up */

typedef struct pjf_rig {
    rsv_server redis;
    redisContext *rc; /* to redis (NULL while the test has it down) */
    proc pj[PJF_PROJECTORS];
    bool pj_on[PJF_PROJECTORS];
    ev_history hist;
    ev_model *model;
    size_t *order; /* the stream order in use */
    bool *skip;    /* the events not to be applied */
} pjf_rig;

/* Starts the rig's redis-server (opt: NULL for no persistence) and connects r->rc. */
void pjf_redis_start(pjf_rig *r, const rsv_options *opt);

/* Frees everything: projectors (killed), the connection, Redis, history, model, order, skip. */
void pjf_release(pjf_rig *r);

/* Starts projector i against the rig's Redis (port 0) or another port (a proxy to it). */
void pjf_start(pjf_rig *r, int i, int redis_port, const char *const *env);

/* Stops projector i with sig (waiting up to 15 s) and releases it. */
void pjf_stop(pjf_rig *r, int i, int sig);

/* Fails the test at once if a projector died (a crash would otherwise look like a hang). */
void pjf_check_alive(pjf_rig *r);

/* ev_generate into r->hist (zeroed first: call once per test). */
void pjf_generate(pjf_rig *r, uint64_t seed, int tenants, size_t events, int days);

/* The stream order of r->hist (kept in r->order until the next call or pjf_release). */
size_t *pjf_order(pjf_rig *r, enum ev_order how, uint64_t seed, size_t *n);

/* A skip[] for r->hist, all false (kept in r->skip). */
bool *pjf_new_skip(pjf_rig *r);

/* XADDs r->hist.v[order[i]] for from <= i < to to EV_STREAM; asserts it worked. */
void pjf_add_range(pjf_rig *r, const size_t *order, size_t from, size_t to);

/* ev_wait_applied against r->model while the projectors live: 0, -1 or -2 as it. */
int pjf_wait_applied(pjf_rig *r);

/*
 * Waits until the model's event counts are reached and the group is idle, reconnects r->rc
 * (Redis may have restarted) and asserts the read model equals r->model, then that it caught up.
 */
void pjf_expect_model(pjf_rig *r);

/* The sum over the tenants of the model's fresh.events minus Redis's. */
long long pjf_events_short(pjf_rig *r);

/* XLEN of stream. */
long long pjf_xlen(pjf_rig *r, const char *stream);

/* Entries of EV_STREAM's group pending with consumer (NULL: with any). */
long long pjf_xpending(pjf_rig *r, const char *consumer);

/* An unlabelled series of projector i's /metrics (ev_metric). */
double pjf_metric(pjf_rig *r, int i, const char *name);

#endif
