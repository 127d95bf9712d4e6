/*
 * plan: a run of one tenant's complaint events merged, in C, into the one write they make
 * together: what tally.lua's tally_apply_merged takes.
 *
 * The per-event path (tally_apply) reads, checks and counts every event inside Redis, in Lua:
 * about 11 us of Redis's CPU per event, most of it building counter names and summing them.
 * A plan does that counting here instead, with the same rules as tally.lua's apply_created,
 * apply_assigned and apply_status (tests/support/ev_model.c is the oracle both are held to):
 * the counters' deltas summed per key and field, the last state of each complaint in the open
 * set and the overview's details, and per complaint the version the run starts after and the
 * one it ends at. tally_apply_merged then only checks those versions and writes; when any
 * check fails (a redelivered or out-of-order event, a rebuild, a parked complaint, a
 * generation whose view is not recorded) it writes nothing and the projector applies the run
 * through tally_apply, event by event, as before.
 *
 * A run is mergeable only while every event is a complaint event whose fields tally_apply's
 * checks would accept and whose version follows its complaint's last one in the run; the
 * first that is not makes proj_plan_add return false, and the run goes the per-event way.
 */
#ifndef TALLY_PLAN_H
#define TALLY_PLAN_H

#include "decode.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

/* What the plan counts: tally.lua's VIEW_VERSION (tests/unit/test_plan.c holds them
   equal). */
#define PROJ_PLAN_VIEW 1

typedef struct proj_plan proj_plan;

/* An empty plan, or NULL. Free with proj_plan_free. */
proj_plan *proj_plan_new(void);

void proj_plan_free(proj_plan *pl);

/* Empties pl for another run (keeps its memory). */
void proj_plan_reset(proj_plan *pl);

/*
 * Adds decoded event ev (borrowed until the plan is appended or reset) to the run. false when
 * it cannot be merged (see above) or memory ran out: the plan must then be reset.
 */
bool proj_plan_add(proj_plan *pl, const proj_event *ev);

/* Events in the plan. */
size_t proj_plan_events(const proj_plan *pl);

/*
 * Appends the nhead arguments of head ("FCALL", the function, its keys and arguments before the
 * plan), then the plan "<view> <now> ..." as tally.lua's tally_apply_merged takes it, to c's
 * output buffer, without waiting for the reply. 0, TALLY_ENOMEM, or TALLY_EUNAVAIL.
 */
int proj_plan_append(const proj_plan *pl, redisContext *c, const char *const *head, size_t nhead,
                     const char *now);

#endif
