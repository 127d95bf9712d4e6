/*
 * event: the bytes of a tally.v1.EventEnvelope for one row of the events table.
 *
 * The events table stores each event's body (ComplaintCreated, StatusChanged, ...) as
 * protobuf bytes in `payload`, and the envelope's fields as columns (seq is only known once
 * the row is inserted, local_day is computed by PostgreSQL). event_pack() joins them: it packs
 * the header fields and appends the body as the oneof member that the type selects, which is
 * what packing the whole envelope would give (protobuf fields may be concatenated). The relay
 * publishes these bytes; a rebuild from the table produces the very same bytes.
 */
#ifndef TALLY_EVENT_H
#define TALLY_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct event_row {
    int64_t seq;
    const char *tenant_id;
    int64_t complaint_id; /* 0 for reference data */
    int64_t version;      /* 0 for reference data */
    int type;             /* tally.v1.EventType */
    int64_t occurred_at_ms;
    const char *local_day; /* "YYYY-MM-DD" */
    int64_t recorded_at_ms;
    bool imported;
    const uint8_t *body;
    size_t body_len;
} event_row;

/* Largest body accepted, and so the largest envelope is a little more. */
#define EVENT_BODY_MAX (64 * 1024)

/* The envelope field number that carries the body of type; 0 for an unknown type. */
int event_body_field(int type);

/*
 * Packs the envelope into buf (cap bytes). Returns the length, or a negative tally_err:
 * TALLY_EINVAL for an unknown type, TALLY_ETOOBIG if it does not fit.
 */
long event_pack(const event_row *row, uint8_t *buf, size_t cap);

#endif
