/*
 * event_pg: an events row of PostgreSQL to its envelope (event.h, EVENT_COLUMNS).
 */
#include "event.h"

#include "err.h"
#include "pgx.h"

#include <libpq-fe.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

long event_pack_row(const PGresult *res, int i, uint8_t *body, uint8_t *buf, size_t cap)
{
    const char *hex = PQgetvalue(res, i, EVENT_C_PAYLOAD);
    size_t len = (size_t)PQgetlength(res, i, EVENT_C_PAYLOAD);
    if (len % 2 || len / 2 > EVENT_BODY_MAX)
        return TALLY_ETOOBIG;
    for (size_t k = 0; k < len / 2; k++) {
        int hi = hex_value(hex[2 * k]), lo = hex_value(hex[2 * k + 1]);
        if (hi < 0 || lo < 0)
            return TALLY_ETOOBIG;
        body[k] = (uint8_t)(hi << 4 | lo);
    }
    event_row row = { .seq = pgx_int(res, i, EVENT_C_SEQ),
                      .tenant_id = PQgetvalue(res, i, EVENT_C_TENANT),
                      .complaint_id = pgx_int(res, i, EVENT_C_COMPLAINT),
                      .version = pgx_int(res, i, EVENT_C_VERSION),
                      .type = (int)pgx_int(res, i, EVENT_C_TYPE),
                      .occurred_at_ms = pgx_int(res, i, EVENT_C_OCCURRED),
                      .local_day = PQgetvalue(res, i, EVENT_C_DAY),
                      .recorded_at_ms = pgx_int(res, i, EVENT_C_RECORDED),
                      .imported = pgx_int(res, i, EVENT_C_IMPORTED) != 0,
                      .body = body,
                      .body_len = len / 2 };
    return event_pack(&row, buf, cap);
}
