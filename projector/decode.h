/*
 * decode: one stream entry (an EventEnvelope) to the fields tally_apply takes.
 *
 * Pure: no I/O. An entry that cannot be applied however often it is retried (undecodable, an
 * unknown type, a body that does not match the type, a malformed tenant id or local day) is
 * refused with a reason: the projector parks it. The tenant id is checked strictly because
 * it becomes a Redis hash tag: "{t:a}b" must never address another tenant's slot.
 */
#ifndef TALLY_DECODE_H
#define TALLY_DECODE_H

#include "stream.h"
#include "tally/v1/events.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/* The fields of an event as tally_apply takes them, in order (tally.lua's header). */
enum proj_field {
    PF_SEQ,
    PF_ID,
    PF_VERSION,
    PF_TYPE,
    PF_OCCURRED,
    PF_DAY,
    PF_RECORDED,
    PF_CAT,
    PF_PRIO,
    PF_AGENT,
    PF_PREV,
    PF_FROM,
    PF_TO,
    PF_CREATED,
    PF_SECS,
    PF_BUCKET,
    PF_NAME,
    PF_REF,
    PF_TZ
};
_Static_assert(PF_TZ + 1 == STREAM_APPLY_NFIELDS, "one proj_field per field of tally_apply");

#define PROJ_ARENA 1024 /* bytes: an envelope and its strings fit, nearly always */

/*
 * A decoded event. The envelope is unpacked into the event's own arena (what does not fit
 * comes from malloc), so a batch's thousands of small allocations and frees are not made: a
 * decoded proj_event must therefore never be copied or moved, only released.
 */
typedef struct proj_event {
    Tally__V1__EventEnvelope *env; /* owned: proj_event_release frees it */
    const char *argv[STREAM_APPLY_NFIELDS];
    size_t argvlen[STREAM_APPLY_NFIELDS];
    char nums[STREAM_APPLY_NFIELDS][24]; /* the numeric fields as text */
    ProtobufCAllocator alloc;            /* over arena, for env */
    size_t used, spilled;                /* arena bytes taken; allocations past it */
    _Alignas(16) unsigned char arena[PROJ_ARENA];
} proj_event;

/* v in decimal into out, NUL-terminated (snprintf's "%" PRId64, a tenth of its cost): the
   length. */
size_t proj_i64(char out[24], int64_t v);

/* Decodes data into ev. 0, or TALLY_EINVAL with the reason in why. */
int proj_decode(const uint8_t *data, size_t len, proj_event *ev, char *why, size_t whylen);

/* Frees what proj_decode allocated. NULL-safe on ev->env. */
void proj_event_release(proj_event *ev);

/*
 * A refused event keeps ev->env when its bytes did decode, so its tenant, complaint and
 * version can name it when it is parked; proj_tenant_ok says whether the tenant id is safe to
 * use in a key.
 */
int proj_tenant_ok(const char *tenant_id);

/* Whether the event belongs to a complaint (types 1..3), so parking it parks the complaint. */
int proj_is_complaint_event(const proj_event *ev);

#endif
