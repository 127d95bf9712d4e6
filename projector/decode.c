#include "decode.h"

#include "err.h"
#include "event.h"
#include "hist.h"
#include "ident.h"
#include "pbcheck.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int refuse(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return TALLY_EINVAL;
}

/* Ids of the API (ident.h); empty allowed if optional. */
static int good_id(const char *s, int optional)
{
    enum ident_problem p = ident_check(s);
    return p == IDENT_OK || (p == IDENT_EMPTY && optional);
}

int proj_tenant_ok(const char *tenant_id)
{
    return good_id(tenant_id, 0);
}

static int good_day(const char *s)
{
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return 0;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return 0;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[5] - '0') * 10 + (s[6] - '0'), d = (s[8] - '0') * 10 + (s[9] - '0');
    if (m < 1 || m > 12 || d < 1)
        return 0;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= days[m - 1] + (m == 2 && leap);
}

static int good_status(int s)
{
    return s >= TALLY__V1__STATUS__STATUS_OPEN && s <= TALLY__V1__STATUS__STATUS_CLOSED;
}

static void str(proj_event *ev, int f, const char *s)
{
    ev->argv[f] = s ? s : "";
    ev->argvlen[f] = strlen(ev->argv[f]);
}

size_t proj_i64(char out[24], int64_t v)
{
    char tmp[24];
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    size_t n = 0, len = 0;
    do
        tmp[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        out[len++] = '-';
    while (n)
        out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

static void num(proj_event *ev, int f, int64_t v)
{
    ev->argvlen[f] = proj_i64(ev->nums[f], v);
    ev->argv[f] = ev->nums[f];
}

int proj_is_complaint_event(const proj_event *ev)
{
    return ev->env && ev->env->type >= TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED &&
           ev->env->type <= TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED;
}

static void *arena_alloc(void *data, size_t size)
{
    proj_event *ev = data;
    size_t at = (ev->used + 15) & ~(size_t)15;
    if (size <= sizeof(ev->arena) && at <= sizeof(ev->arena) - size) {
        ev->used = at + size;
        return ev->arena + at;
    }
    ev->spilled++;
    return malloc(size);
}

static void arena_free(void *data, void *ptr)
{
    proj_event *ev = data;
    const unsigned char *p = ptr;
    if (p < ev->arena || p >= ev->arena + sizeof(ev->arena))
        free(ptr);
}

void proj_event_release(proj_event *ev)
{
    /* Only what spilled out of the arena needs protobuf-c's walk through the message. */
    if (ev->env && ev->spilled)
        tally__v1__event_envelope__free_unpacked(ev->env, &ev->alloc);
    ev->env = NULL;
    ev->used = ev->spilled = 0;
}

int proj_decode(const uint8_t *data, size_t len, proj_event *ev, char *why, size_t whylen)
{
    memset(ev, 0, offsetof(proj_event, arena)); /* the arena need not be zeroed */
    ev->alloc =
        (ProtobufCAllocator){ .alloc = arena_alloc, .free = arena_free, .allocator_data = ev };
    Tally__V1__EventEnvelope *e = tally__v1__event_envelope__unpack(&ev->alloc, len, data);
    if (!e)
        return refuse(why, whylen, "not a tally.v1.EventEnvelope");
    ev->env = e;
    /* protobuf-c cuts strings at a NUL: "acme\0}x" would pass as "acme". */
    if (pbcheck_strings(&tally__v1__event_envelope__descriptor, data, len, why, whylen) != 0)
        return TALLY_EINVAL;
    for (int f = 0; f < STREAM_APPLY_NFIELDS; f++)
        str(ev, f, "");
    if (!good_id(e->tenant_id, 0))
        return refuse(why, whylen, "tenant_id \"%.80s\" is not a valid id", e->tenant_id);
    num(ev, PF_SEQ, e->seq);
    num(ev, PF_TYPE, e->type);
    num(ev, PF_OCCURRED, e->occurred_at_ms);
    num(ev, PF_RECORDED, e->recorded_at_ms ? e->recorded_at_ms : e->occurred_at_ms);
    str(ev, PF_DAY, e->local_day);
    num(ev, PF_ID, e->complaint_id);
    num(ev, PF_VERSION, e->version);

    switch (e->body_case) {
    case TALLY__V1__EVENT_ENVELOPE__BODY_TENANT_PUT:
        str(ev, PF_NAME, e->tenant_put->name);
        str(ev, PF_TZ, e->tenant_put->time_zone);
        break;
    case TALLY__V1__EVENT_ENVELOPE__BODY_CATEGORY_PUT:
        if (!good_id(e->category_put->category_id, 0))
            return refuse(why, whylen, "category_put: bad category_id");
        str(ev, PF_REF, e->category_put->category_id);
        str(ev, PF_NAME, e->category_put->name);
        break;
    case TALLY__V1__EVENT_ENVELOPE__BODY_AGENT_PUT:
        if (!good_id(e->agent_put->agent_id, 0))
            return refuse(why, whylen, "agent_put: bad agent_id");
        str(ev, PF_REF, e->agent_put->agent_id);
        str(ev, PF_NAME, e->agent_put->name);
        break;
    case TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_CREATED: {
        const Tally__V1__ComplaintCreated *b = e->complaint_created;
        str(ev, PF_CAT, b->category_id);
        num(ev, PF_PRIO, b->priority);
        str(ev, PF_AGENT, b->agent_id);
        num(ev, PF_TO, b->status ? b->status : TALLY__V1__STATUS__STATUS_OPEN);
        num(ev, PF_CREATED, e->occurred_at_ms);
        if (b->status && !good_status(b->status))
            return refuse(why, whylen, "complaint_created: status out of range");
        break;
    }
    case TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_ASSIGNED: {
        const Tally__V1__ComplaintAssigned *b = e->complaint_assigned;
        str(ev, PF_CAT, b->category_id);
        num(ev, PF_PRIO, b->priority);
        str(ev, PF_AGENT, b->agent_id);
        str(ev, PF_PREV, b->previous_agent_id);
        num(ev, PF_TO, b->status);
        num(ev, PF_CREATED, b->created_at_ms);
        if (!good_id(b->previous_agent_id, 1))
            return refuse(why, whylen, "complaint_assigned: bad previous_agent_id");
        if (!good_status(b->status))
            return refuse(why, whylen, "complaint_assigned: status out of range");
        break;
    }
    case TALLY__V1__EVENT_ENVELOPE__BODY_STATUS_CHANGED: {
        const Tally__V1__StatusChanged *b = e->status_changed;
        str(ev, PF_CAT, b->category_id);
        num(ev, PF_PRIO, b->priority);
        str(ev, PF_AGENT, b->agent_id);
        num(ev, PF_FROM, b->from_status);
        num(ev, PF_TO, b->to_status);
        num(ev, PF_CREATED, b->created_at_ms);
        if (b->resolution_seconds < 0 || b->resolution_seconds > HIST_MAX_SECONDS)
            return refuse(why, whylen, "status_changed: resolution_seconds %lld out of range",
                          (long long)b->resolution_seconds);
        num(ev, PF_SECS, b->resolution_seconds);
        num(ev, PF_BUCKET, hist_bucket(b->resolution_seconds));
        if (!good_status(b->from_status) || !good_status(b->to_status))
            return refuse(why, whylen, "status_changed: status out of range");
        break;
    }
    default:
        return refuse(why, whylen, "no body, or a body this projector does not know");
    }
    if (event_body_field(e->type) != (int)e->body_case)
        return refuse(why, whylen, "the body does not match the event type");
    if (!proj_is_complaint_event(ev))
        return 0;
    if (e->complaint_id < 1 || e->version < 1)
        return refuse(why, whylen, "complaint event without complaint_id and version");
    if (!good_day(e->local_day))
        return refuse(why, whylen, "local_day \"%.20s\" is not YYYY-MM-DD", e->local_day);
    if (!good_id(ev->argv[PF_CAT], 0) || !good_id(ev->argv[PF_AGENT], 1))
        return refuse(why, whylen, "bad category_id or agent_id");
    int64_t prio = ev->argv[PF_PRIO][0] - '0';
    if (ev->argvlen[PF_PRIO] != 1 || prio < 1 || prio > 4)
        return refuse(why, whylen, "priority out of range");
    return 0;
}
