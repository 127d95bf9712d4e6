#include "event.h"

#include "err.h"
#include "tally/v1/events.pb-c.h"

#include <string.h>

int event_body_field(int type)
{
    switch (type) {
    case TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED:
        return TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_CREATED;
    case TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED:
        return TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_ASSIGNED;
    case TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED:
        return TALLY__V1__EVENT_ENVELOPE__BODY_STATUS_CHANGED;
    case TALLY__V1__EVENT_TYPE__EVENT_TYPE_TENANT_PUT:
        return TALLY__V1__EVENT_ENVELOPE__BODY_TENANT_PUT;
    case TALLY__V1__EVENT_TYPE__EVENT_TYPE_CATEGORY_PUT:
        return TALLY__V1__EVENT_ENVELOPE__BODY_CATEGORY_PUT;
    case TALLY__V1__EVENT_TYPE__EVENT_TYPE_AGENT_PUT:
        return TALLY__V1__EVENT_ENVELOPE__BODY_AGENT_PUT;
    default:
        return 0;
    }
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

long event_pack(const event_row *row, uint8_t *buf, size_t cap)
{
    Tally__V1__EventEnvelope env = TALLY__V1__EVENT_ENVELOPE__INIT;
    int field = event_body_field(row->type);
    uint8_t head[20];
    size_t n, hn;
    if (field == 0)
        return TALLY_EINVAL;
    if (row->body_len > EVENT_BODY_MAX)
        return TALLY_ETOOBIG;
    env.seq = row->seq;
    env.tenant_id = (char *)row->tenant_id;
    env.complaint_id = row->complaint_id;
    env.version = row->version;
    env.type = (Tally__V1__EventType)row->type;
    env.occurred_at_ms = row->occurred_at_ms;
    env.local_day = (char *)row->local_day;
    env.recorded_at_ms = row->recorded_at_ms;
    env.imported = row->imported;
    n = protobuf_c_message_get_packed_size(&env.base);
    hn = put_varint(head, ((uint64_t)field << 3) | 2); /* length-delimited */
    hn += put_varint(head + hn, row->body_len);
    if (n + hn + row->body_len > cap)
        return TALLY_ETOOBIG;
    protobuf_c_message_pack(&env.base, buf);
    memcpy(buf + n, head, hn);
    if (row->body_len)
        memcpy(buf + n + hn, row->body, row->body_len);
    return (long)(n + hn + row->body_len);
}
