#include "fresh.h"

#include <errno.h>
#include <stdlib.h>

/* A value of tally:wm: a decimal integer >= 1, or 0 when it is anything else. */
static int64_t wm_value(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_STRING || r->len == 0 || r->str[0] < '0' || r->str[0] > '9')
        return 0;
    char *end;
    errno = 0;
    long long v = strtoll(r->str, &end, 10);
    if (errno || end != r->str + r->len || v < 1)
        return 0;
    return v;
}

int64_t fresh_watermark(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return 0;
    int64_t low = INT64_MAX;
    for (size_t i = 0; i < r->elements; i++) {
        int64_t v = wm_value(r->element[i]);
        if (v == 0)
            return 0;
        if (v < low)
            low = v;
    }
    return low;
}

/* now - t, never negative; 0 when t is 0 (not set). */
static int64_t age(int64_t now, int64_t t)
{
    return t && now > t ? now - t : 0;
}

void fresh_fill(Tally__V1__Freshness *f, Tally__V1__RebuildProgress *rp, const fresh_seen *s)
{
    f->server_time_ms = s->now_ms;
    f->as_of_ms = s->as_of_ms;
    f->lag_ms = age(s->now_ms, s->as_of_ms);
    f->apply_lag_ms = age(s->now_ms, s->applied_ms);
    f->events_applied = s->events;
    f->rebuilding = s->rebuild || s->repair;
    /* While the relay repairs a Redis that lost data, nothing is known complete. */
    f->complete_until_ms = s->watermark_ms > 0 && !s->repair ? s->watermark_ms : 0;
    if (s->rebuild && s->rb_frozen && f->complete_until_ms > s->rb_started_ms)
        f->complete_until_ms = s->rb_started_ms > 0 ? s->rb_started_ms : 0;
    f->complete_lag_ms = f->complete_until_ms ? age(s->now_ms, f->complete_until_ms)
                                              : (s->now_ms > 0 ? s->now_ms : 0);
    f->parked_complaints = s->parked > 0 ? s->parked : 0;
    if (!s->rebuild || !rp)
        return;
    int64_t done = s->rb_done > 0 ? s->rb_done : 0, total = s->rb_total > 0 ? s->rb_total : 0;
    rp->events_done = done;
    rp->events_total = total;
    rp->events_per_second = s->rb_rate > 0 ? s->rb_rate : 0;
    rp->eta_ms = -1;
    if (rp->events_per_second > 0)
        rp->eta_ms = total > done ? (total - done) * 1000 / rp->events_per_second : 0;
    rp->phase = (char *)(s->rb_phase ? s->rb_phase : "reading");
    rp->started_ms = s->rb_started_ms > 0 ? s->rb_started_ms : 0;
    f->rebuild = rp;
}
