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

/*
 * The columns of an events row in the order event_pack_row reads them (text results):
 * `SELECT EVENT_COLUMNS FROM events ...`. The relay publishes from them and a rebuild reads
 * them, so both make the very same envelope of a row.
 */
#define EVENT_COLUMNS                                                                      \
    "seq, tenant_id, coalesce(complaint_id, 0), coalesce(version, 0), type,"               \
    " (extract(epoch FROM occurred_at) * 1000)::bigint, to_char(local_day, 'YYYY-MM-DD')," \
    " (extract(epoch FROM recorded_at) * 1000)::bigint, imported::int, encode(payload, 'hex')"

enum event_column {
    EVENT_C_SEQ,
    EVENT_C_TENANT,
    EVENT_C_COMPLAINT,
    EVENT_C_VERSION,
    EVENT_C_TYPE,
    EVENT_C_OCCURRED,
    EVENT_C_DAY,
    EVENT_C_RECORDED,
    EVENT_C_IMPORTED,
    EVENT_C_PAYLOAD,
    EVENT_NCOLUMNS
};

struct pg_result;

/*
 * Packs row i of res (EVENT_COLUMNS first, as text) into buf (cap bytes), its body decoded into
 * body (EVENT_BODY_MAX bytes). The length, or a negative tally_err: TALLY_ETOOBIG for a body
 * that is too big or not hex, as event_pack otherwise.
 */
long event_pack_row(const struct pg_result *res, int i, uint8_t *body, uint8_t *buf, size_t cap);

#endif
