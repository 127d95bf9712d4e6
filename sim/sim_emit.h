/*
 * sim_emit: the event emitter of the simulator, the stream entries command-svc would write for
 * the complaint lives of sim_gen.
 *
 * The lives are gen_imported's, the very ImportedComplaint messages tally-sim imports, so the
 * import emitter and this one are two outputs of one generator. Each life is translated as
 * command-svc's import replays a history (command-svc/import.c): a ComplaintCreated, then one
 * ComplaintAssigned per assignment that changes the agent (an assignment of the agent already
 * assigned writes nothing) and one StatusChanged per status move, with the bodies cmd.c writes
 * (ComplaintAssigned: the previous agent, category, priority, status, created_at_ms;
 * StatusChanged: category, priority, the current agent, the actor, created_at_ms,
 * created_local_day and resolution_seconds on RESOLVED). First come each tenant's reference
 * events (TenantPut, CategoryPut per category, AgentPut per agent), as PutTenant and friends
 * write them.
 *
 * The stream is in simulated-time order across complaints, as a live help desk would have
 * written it: seq runs 1, 2, 3, ..., complaint ids 1, 2, 3, ... in order of creation, and each
 * complaint's versions 1, 2, ... in stream order. Local days are those of the tenant's zone
 * (common/tz). Envelopes are packed with event_pack, as the relay publishes them.
 *
 * The complaints: emit_options.complaints split between the tenants by their shares
 * (world_split), each tenant's complaints 0, 1, ... of the seed. With emit_options.events, more
 * complaints are added (the next indices) until their events reach that many, and the stream
 * stops at exactly that many entries. Every life is cut at its tenant's window end
 * (world_set_window), so nothing lies after it. The same world and options give the same bytes.
 *
 * With emit_options.renames, reference data is renamed mid-stream, as a PutCategory, PutAgent
 * or PutTenant with a new name would: after the first reference events, each entry is such a
 * rename with that chance (an entity of a tenant drawn from the seed, its name followed by
 * " (renamed N)", N counting the renames of the stream), at the time of the entry before it.
 */
#ifndef TALLY_SIM_EMIT_H
#define TALLY_SIM_EMIT_H

#include "sim_world.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EMIT_ENVELOPE_MAX 1024

typedef struct emit_options {
    uint64_t seed;
    int64_t complaints; /* to start with, split by world_split */
    int64_t events;     /* 0: every event of those complaints; else exactly this many */
    bool imported;      /* marks the events imported, recorded at recorded_at_ms */
    int64_t recorded_at_ms;
    /*
     * The time written for an event simulated at sim_ms, called once per event in stream
     * order (a pacing program sleeps here and returns the wall clock). NULL: sim_ms.
     * Creation times and resolution_seconds follow the written times.
     */
    int64_t (*stamp)(void *ctx, int64_t sim_ms);
    void *stamp_ctx;
    double renames; /* the chance that an entry after the first reference events is a rename */
} emit_options;

/* One stream entry. */
typedef struct emit_event {
    int64_t seq, complaint_id, version; /* complaint_id and version 0 for reference events */
    int type;                           /* tally.v1.EventType */
    int tenant;                         /* an index of the world's tenants */
    int64_t index;                      /* the life's gen_imported index; -1 for reference */
    int64_t occurred_at_ms;
    uint8_t bytes[EMIT_ENVELOPE_MAX]; /* the EventEnvelope */
    size_t len;
} emit_event;

typedef struct emit_stream emit_stream;

/*
 * A stream over w, whose tenants' windows must be set; w is borrowed until emit_free, and its
 * tenants' counts are overwritten (world_split of the complaints generated; with
 * emit_options.events the last of them may be cut off: emit_complaints says how many were
 * created). This generates every life once, to order them by creation time. NULL when memory
 * runs out.
 */
emit_stream *emit_new(world *w, const emit_options *o);

/* The next entry into ev: 1, 0 at the end of the stream, or a negative tally_err. */
int emit_next(emit_stream *s, emit_event *ev);

/* Complaints created so far (ComplaintCreated entries returned). */
int64_t emit_complaints(const emit_stream *s);

void emit_free(emit_stream *s);

#endif
