/*
 * sim_gen: sample complaints as protobuf-c messages, from the world model (sim_world.h).
 *
 * gen_imported builds one historical complaint for ImportComplaints: its creation and the
 * history a help desk would have recorded (assignment, work started, resolution after a
 * log-normal time that depends on the priority, sometimes a reassignment, sometimes a reopen
 * and a second resolution, usually a close), cut at the window's end so that recent complaints
 * are still open. How often the rarer turns happen (reassignments, unassignments, no-op
 * re-assignments, instant resolutions, reopens, abandoned complaints, cut at a moment of their
 * own) and whether creation times are shared is the tenant's world_mix (sim_world.h). The complaint
 * depends only on (seed, tenant, index) and the tenant's window: generating it twice gives the same
 * bytes, which is what makes a rerun of `tally-sim seed` a no-op on the server (idempotency keys
 * with the same content).
 *
 * Messages point into the gen_complaint that holds them and into the world_tenant (agent ids):
 * both must outlive the packing of the message. Nothing here allocates.
 */
#ifndef TALLY_SIM_GEN_H
#define TALLY_SIM_GEN_H

#include "sim_world.h"
#include "tally/v1/commands.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GEN_STEPS_MAX 32
#define GEN_KEY_MAX   40
#define GEN_TITLE_MAX 128
#define GEN_TEXT_MAX  512
#define GEN_CUST_MAX  24

/* One imported complaint and the storage its message points into. */
typedef struct gen_complaint {
    Tally__V1__ImportedComplaint msg;
    Tally__V1__ImportedStep *step_ptrs[GEN_STEPS_MAX];
    Tally__V1__ImportedStep steps[GEN_STEPS_MAX];
    Tally__V1__ImportedAssignment assignments[GEN_STEPS_MAX];
    Tally__V1__ImportedStatusChange moves[GEN_STEPS_MAX];
    char key[GEN_KEY_MAX];
    char title[GEN_TITLE_MAX];
    char description[GEN_TEXT_MAX];
    char customer[GEN_CUST_MAX];
    int reopens; /* moves back to OPEN in the history */
} gen_complaint;

/*
 * The storage of one ImportedComplaint's steps, the caller's: max entries in each array, the
 * complaint's history pointing at ptrs. gen_imported writes its lives through it, and so do the
 * tests' hand-built histories (tests/support/imports.c).
 */
typedef struct gen_slots {
    Tally__V1__ImportedStep *steps;
    Tally__V1__ImportedStep **ptrs;
    Tally__V1__ImportedAssignment *assignments;
    Tally__V1__ImportedStatusChange *moves;
    size_t max;
} gen_slots;

/*
 * Appends to m's history (m->history is s->ptrs) an assignment to agent ("" unassigns) or a
 * move to status by actor with note, at at_ms as given: true, or false when s is full. The
 * strings are borrowed until m is packed.
 */
bool gen_add_assignment(Tally__V1__ImportedComplaint *m, const gen_slots *s, int64_t at_ms,
                        const char *agent);
bool gen_add_move(Tally__V1__ImportedComplaint *m, const gen_slots *s, int64_t at_ms, int status,
                  const char *actor, const char *note);

/* The idempotency key of complaint index of seed: "sim<seed>-<index, 7 digits>". */
void gen_key(char *buf, size_t len, uint64_t seed, int64_t index);

/*
 * Complaint index of tenant t, whose window must be set (world_set_window), for seed, into c.
 * Complaint 0 is created exactly at the window's start (so the window can be found again from
 * it); the others at times drawn from the arrival rate. No step is later than t->end_ms.
 */
void gen_imported(gen_complaint *c, const world_tenant *t, uint64_t seed, int64_t index);

/* A new complaint's content for CreateComplaint (tally-sim live). */
typedef struct gen_new {
    int category; /* an index of the tenant's categories */
    int priority; /* tally.v1.Priority, LOW..URGENT */
    char title[GEN_TITLE_MAX];
    char description[GEN_TEXT_MAX];
    char customer[GEN_CUST_MAX];
} gen_new;

void gen_new_complaint(gen_new *n, const world_tenant *t, world_rng *r);

/* A resolution note for a complaint of category (an index of t's categories). */
const char *gen_fix_note(const world_tenant *t, int category, world_rng *r);

#endif
