#define _GNU_SOURCE /* memrchr, qsort_r */
#include "panels.h"

#include "civil.h"
#include "hash.h"
#include "hist.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEW(q, T, INIT)                        \
    ({                                         \
        T *_m = ar_alloc(&(q)->ar, sizeof(T)); \
        if (_m)                                \
            *_m = (T)INIT;                     \
        _m;                                    \
    })
#define NEWV(q, T, n) ((T *)ar_alloc(&(q)->ar, ((n) ? (n) : 1) * sizeof(T)))

/* The read script of the overview's oldest open complaints: KEYS open zset, od hash; ARGV n.
 * Returns id, created ms, detail, ... for the n oldest and every member tied with the n-th
 * (up to 1000 more): the caller orders ties by numeric id. Read-only, so replicas run it. */
const char panels_oldest_lua[] =
    "#!lua flags=no-writes\n"
    "local n = tonumber(ARGV[1])\n"
    "local v = redis.call('ZRANGE', KEYS[1], 0, n - 1, 'WITHSCORES')\n"
    "if #v == 0 then return {} end\n"
    "local seen, ids, scores = {}, {}, {}\n"
    "for i = 1, #v, 2 do seen[v[i]] = true; ids[#ids + 1] = v[i]; scores[#scores + 1] = v[i + 1] "
    "end\n"
    "local last = v[#v]\n"
    "local t = redis.call('ZRANGE', KEYS[1], last, last, 'BYSCORE', 'LIMIT', 0, 1000, "
    "'WITHSCORES')\n"
    "for i = 1, #t, 2 do if not seen[t[i]] then ids[#ids + 1] = t[i]; scores[#scores + 1] = "
    "t[i + 1] end end\n"
    "local d = redis.call('HMGET', KEYS[2], unpack(ids))\n"
    "local out = {}\n"
    "for i = 1, #ids do out[#out + 1] = ids[i]; out[#out + 1] = scores[i]; out[#out + 1] = d[i] "
    "or '' end\n"
    "return out\n";

/* ---- small tools --------------------------------------------------------------------------- */

/* A string -> index map (open addressing), for cells, categories and agents. */
typedef struct smap {
    const char **keys;
    int *vals;
    size_t cap;
} smap;

static int smap_init(qreq *q, smap *m, size_t n)
{
    m->cap = 16;
    while (m->cap < 2 * n + 1)
        m->cap *= 2;
    m->keys = NEWV(q, const char *, m->cap);
    m->vals = NEWV(q, int, m->cap);
    return m->keys && m->vals ? 0 : -1;
}

static void smap_put(smap *m, const char *k, int v)
{
    size_t i = hash_fnv1a(k, strlen(k), 0) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], k) != 0)
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = k;
    m->vals[i] = v;
}

/* The value of the key s[0..n), or -1. */
static int smap_get(const smap *m, const char *s, size_t n)
{
    if (!m->cap)
        return -1;
    size_t i = hash_fnv1a(s, n, 0) & (m->cap - 1);
    for (; m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (strncmp(m->keys[i], s, n) == 0 && m->keys[i][n] == '\0')
            return m->vals[i];
    return -1;
}

static char *day_str(qreq *q, int64_t day)
{
    char *s = ar_alloc(&q->ar, CIVIL_DAY_LEN);
    if (s)
        civil_format(day, s);
    return s;
}

static Tally__V1__DateRange *range_msg(qreq *q, qrange r)
{
    Tally__V1__DateRange *m = NEW(q, Tally__V1__DateRange, TALLY__V1__DATE_RANGE__INIT);
    if (m) {
        m->from_day = day_str(q, r.from);
        m->to_day = day_str(q, r.to);
    }
    return m;
}

/* The months a range touches, each with the days of it in the range. */
typedef struct mseg {
    int y, m, d1, d2;
    bool full; /* the whole month is in the range */
} mseg;

static mseg *months_of(qreq *q, qrange r, size_t *n)
{
    int y1, m1, d1, y2, m2, d2;
    civil_date(r.from, &y1, &m1, &d1);
    civil_date(r.to, &y2, &m2, &d2);
    size_t count = (size_t)((y2 * 12 + m2) - (y1 * 12 + m1) + 1);
    mseg *v = NEWV(q, mseg, count);
    if (!v)
        return NULL;
    int y = y1, m = m1;
    for (size_t i = 0; i < count; i++) {
        int last = civil_month_days(y, m);
        v[i] = (mseg){ y, m, i == 0 ? d1 : 1, i == count - 1 ? d2 : last, false };
        v[i].full = v[i].d1 == 1 && v[i].d2 == last;
        if (++m == 13) {
            m = 1;
            y++;
        }
    }
    *n = count;
    return v;
}

/* Appends "<cmd> <P><name>:YYYY-MM". */
static size_t month_cmd(qreq *q, const char *cmd, const char *name, const mseg *s)
{
    size_t i = rd_cmd(&q->b, cmd);
    rd_argf(&q->b, "%s%s:%04d-%02d", q->P, name, s->y, s->m);
    return i;
}

/* The name of id in a HGETALL reply of id -> name (P cats, P agents); "" if absent. */
static const char *name_in(const redisReply *r, const char *id)
{
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return "";
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, id) == 0)
            return r->element[i + 1]->type == REDIS_REPLY_STRING ? r->element[i + 1]->str : "";
    return "";
}

static int64_t parse_i64(const char *s, size_t n)
{
    int64_t v = 0;
    bool neg = n > 0 && s[0] == '-';
    for (size_t i = neg; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        v = v * 10 + (s[i] - '0');
    return neg ? -v : v;
}

double panels_percentile(const int64_t *buckets, int nbuckets, int64_t n, double p)
{
    if (n <= 0)
        return 0.0;
    int64_t rank = (int64_t)ceil(p / 100.0 * (double)n - 1e-9);
    if (rank < 1)
        rank = 1;
    int64_t seen = 0;
    for (int b = 0; b < nbuckets; b++) {
        seen += buckets[b];
        if (seen >= rank)
            return hist_value(b);
    }
    return hist_value(nbuckets - 1);
}

/* ---- cells: the counters a filter and a grouping read ---------------------------------------- */

/*
 * A cell is one (category, priority) combination a panel sums: k NULL = all categories, p 0 =
 * all priorities. Its counter fields end with sfx (":kp:<k>:<p>", ":k:<k>", ":p:<p>" or "");
 * in the histogram hashes of its dims ("kp", "k", "p", "a") its group is hg ("<k>:<p>", ...).
 */
typedef struct cell {
    const char *k;
    int p;
    char sfx[96];
    char hg[80];
    int group; /* the panel's group it adds to, -1 for none */
} cell;

typedef struct cells {
    cell *v;
    size_t n;
    const char *dims;
    smap by_hg;
} cells;

static int make_cells(qreq *q, const qfilter *f, bool need_k, bool need_p, cells *c)
{
    static const int all_p[] = { 1, 2, 3, 4 };
    need_k = need_k || f->ncats > 0;
    need_p = need_p || f->nprios > 0;
    const char *const *ks = f->ncats ? f->cats : (const char *const *)q->meta->cats;
    size_t nk = need_k ? (f->ncats ? f->ncats : q->meta->ncats) : 1;
    const int *ps = f->nprios ? f->prios : all_p;
    size_t np = need_p ? (f->nprios ? f->nprios : 4) : 1;
    c->n = nk * np;
    c->v = NEWV(q, cell, c->n);
    c->dims = need_k && need_p ? "kp" : need_k ? "k" : need_p ? "p" : "a";
    if (!c->v || smap_init(q, &c->by_hg, c->n) != 0)
        return -1;
    for (size_t i = 0; i < nk; i++)
        for (size_t j = 0; j < np; j++) {
            cell *x = &c->v[i * np + j];
            x->k = need_k ? ks[i] : NULL;
            x->p = need_p ? ps[j] : 0;
            x->group = -1;
            if (x->k && x->p) {
                snprintf(x->sfx, sizeof(x->sfx), ":kp:%s:%d", x->k, x->p);
                snprintf(x->hg, sizeof(x->hg), "%s:%d", x->k, x->p);
            } else if (x->k) {
                snprintf(x->sfx, sizeof(x->sfx), ":k:%s", x->k);
                snprintf(x->hg, sizeof(x->hg), "%s", x->k);
            } else if (x->p) {
                snprintf(x->sfx, sizeof(x->sfx), ":p:%d", x->p);
                snprintf(x->hg, sizeof(x->hg), "%d", x->p);
            }
            smap_put(&c->by_hg, x->hg, (int)(i * np + j));
        }
    return 0;
}

/*
 * HMGET P d:M of "-" (HMGET needs a field, and a panel may have no cells) and then the fields
 * DD:<what><sfx> for days d1..d2 of s and each cell, day-major: the values start at element 1.
 */
static void day_fields(qreq *q, const mseg *s, int d1, int d2, const cells *c,
                       const char *const *what, size_t nw)
{
    month_cmd(q, "HMGET", "d", s);
    rd_arg_static(&q->b, "-");
    for (int d = d1; d <= d2; d++)
        for (size_t i = 0; i < c->n; i++)
            for (size_t w = 0; w < nw; w++)
                rd_argf(&q->b, "%02d:%s%s", d, what[w], c->v[i].sfx);
}

/* ---- overview ------------------------------------------------------------------------------ */

struct ov_plan {
    size_t st, today, hist, oldest;
    int limit;
};

ov_plan *ov_plan_read(qreq *q, int limit)
{
    ov_plan *p = ar_alloc(&q->ar, sizeof(*p));
    int y, m, d;
    if (!p)
        return NULL;
    civil_date(q->today, &y, &m, &d);
    mseg s = { y, m, d, d, false };
    p->limit = limit;
    p->st = rd_cmd(&q->b, "HMGET");
    rd_argf(&q->b, "%sst", q->P);
    for (int i = 1; i <= 4; i++)
        rd_argf(&q->b, "%d", i);
    p->today = month_cmd(q, "HMGET", "d", &s);
    rd_argf(&q->b, "%02d:c", d);
    rd_argf(&q->b, "%02d:r", d);
    p->hist = rd_cmd(&q->b, "HGETALL"); /* today's histogram of all resolutions */
    rd_argf(&q->b, "%shd:%04d-%02d-%02d:a", q->P, y, m, d);
    p->oldest = rd_cmd(&q->b, "EVALSHA_RO");
    rd_arg_static(&q->b, q->oldest_sha);
    rd_arg_static(&q->b, "2");
    rd_argf(&q->b, "%sopen", q->P);
    rd_argf(&q->b, "%sod", q->P);
    rd_argf(&q->b, "%d", limit);
    return p;
}

typedef struct oldest_row {
    int64_t id, created;
    const char *detail;
} oldest_row;

static int by_age(const void *a, const void *b)
{
    const oldest_row *x = a, *y = b;
    if (x->created != y->created)
        return x->created < y->created ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* "status|priority|category|agent" into the message (category and agent copied). */
static void open_detail(qreq *q, const char *d, Tally__V1__OpenComplaint *o)
{
    const char *f[4] = { "", "", "", "" };
    size_t len[4] = { 0 };
    for (int i = 0; i < 4 && d; i++) {
        const char *bar = i < 3 ? strchr(d, '|') : NULL;
        f[i] = d;
        len[i] = bar ? (size_t)(bar - d) : strlen(d);
        d = bar ? bar + 1 : NULL;
    }
    o->status = (Tally__V1__Status)parse_i64(f[0], len[0]);
    o->priority = (Tally__V1__Priority)parse_i64(f[1], len[1]);
    o->category_id = ar_printf(&q->ar, "%.*s", (int)len[2], f[2]);
    o->assigned_agent_id = ar_printf(&q->ar, "%.*s", (int)len[3], f[3]);
}

Tally__V1__Overview *ov_build(qreq *q, const ov_plan *p)
{
    Tally__V1__Overview *o = NEW(q, Tally__V1__Overview, TALLY__V1__OVERVIEW__INIT);
    Tally__V1__StatusCounts *sc = NEW(q, Tally__V1__StatusCounts, TALLY__V1__STATUS_COUNTS__INIT);
    if (!o || !sc)
        return NULL;
    const redisReply *st = rd_reply(&q->b, p->st), *today = rd_reply(&q->b, p->today);
    sc->open = rd_elem_int(st, 0);
    sc->in_progress = rd_elem_int(st, 1);
    sc->resolved = rd_elem_int(st, 2);
    sc->closed = rd_elem_int(st, 3);
    o->status_counts = sc;
    o->backlog = sc->open + sc->in_progress;
    o->today = day_str(q, q->today);
    o->time_zone = (char *)q->meta->tz;
    o->created_today = rd_elem_int(today, 0);
    o->resolved_today = rd_elem_int(today, 1);
    int64_t buckets[HIST_BUCKETS] = { 0 }, n = 0;
    const redisReply *h = rd_reply(&q->b, p->hist);
    for (size_t e = 0; h && h->type == REDIS_REPLY_ARRAY && e + 1 < h->elements; e += 2) {
        int64_t b = rd_int(h->element[e]), v = rd_int(h->element[e + 1]);
        b = b < 0 ? 0 : b >= HIST_BUCKETS ? HIST_BUCKETS - 1 : b;
        buckets[b] += v;
        n += v;
    }
    o->median_resolution_seconds_today = panels_percentile(buckets, HIST_BUCKETS, n, 50);
    o->resolution_relative_error = HIST_RELATIVE_ERROR;
    const redisReply *r = rd_reply(&q->b, p->oldest);
    size_t rows = r && r->type == REDIS_REPLY_ARRAY ? r->elements / 3 : 0;
    oldest_row *v = NEWV(q, oldest_row, rows);
    if (!v)
        return NULL;
    for (size_t i = 0; i < rows; i++)
        v[i] = (oldest_row){ rd_int(r->element[3 * i]), rd_int(r->element[3 * i + 1]),
                             rd_str(r->element[3 * i + 2]) };
    qsort(v, rows, sizeof(*v), by_age);
    o->n_oldest_open = rows < (size_t)p->limit ? rows : (size_t)p->limit;
    o->oldest_open = NEWV(q, Tally__V1__OpenComplaint *, o->n_oldest_open);
    if (!o->oldest_open)
        return NULL;
    for (size_t i = 0; i < o->n_oldest_open; i++) {
        Tally__V1__OpenComplaint *c =
            NEW(q, Tally__V1__OpenComplaint, TALLY__V1__OPEN_COMPLAINT__INIT);
        if (!c)
            return NULL;
        c->complaint_id = v[i].id;
        c->created_at_ms = v[i].created;
        c->age_seconds = (q->now_ms - v[i].created) / 1000;
        if (c->age_seconds < 0)
            c->age_seconds = 0;
        open_detail(q, v[i].detail, c);
        o->oldest_open[i] = c;
    }
    return q->ar.failed ? NULL : o;
}

/* ---- volume trend -------------------------------------------------------------------------- */

struct tr_plan {
    qrange r;
    int gran;
    cells c;
    mseg *segs;
    size_t nsegs, first;
};

tr_plan *tr_plan_read(qreq *q, qrange r, int granularity, const qfilter *f)
{
    static const char *const what[] = { "c", "r" };
    tr_plan *p = ar_alloc(&q->ar, sizeof(*p));
    if (!p || make_cells(q, f, false, false, &p->c) != 0)
        return NULL;
    p->r = r;
    p->gran = granularity;
    p->segs = months_of(q, r, &p->nsegs);
    if (!p->segs)
        return NULL;
    p->first = q->b.ncmds;
    for (size_t i = 0; i < p->nsegs; i++)
        day_fields(q, &p->segs[i], p->segs[i].d1, p->segs[i].d2, &p->c, what, 2);
    return p;
}

/* The first day of day z's bucket. */
static int64_t bucket_start(int gran, int64_t z)
{
    int y, m, d;
    if (gran == TALLY__V1__GRANULARITY__GRANULARITY_WEEK)
        return civil_week_start(z);
    if (gran == TALLY__V1__GRANULARITY__GRANULARITY_MONTH) {
        civil_date(z, &y, &m, &d);
        return civil_days(y, m, 1);
    }
    return z;
}

static int64_t bucket_end(int gran, int64_t start)
{
    int y, m, d;
    if (gran == TALLY__V1__GRANULARITY__GRANULARITY_WEEK)
        return start + 6;
    if (gran == TALLY__V1__GRANULARITY__GRANULARITY_MONTH) {
        civil_date(start, &y, &m, &d);
        return start + civil_month_days(y, m) - 1;
    }
    return start;
}

static char *bucket_label(qreq *q, int gran, int64_t start)
{
    int y, m, d;
    if (gran == TALLY__V1__GRANULARITY__GRANULARITY_WEEK) {
        civil_iso_week(start, &y, &m);
        return ar_printf(&q->ar, "%04d-W%02d", y, m);
    }
    if (gran == TALLY__V1__GRANULARITY__GRANULARITY_MONTH) {
        civil_date(start, &y, &m, &d);
        return ar_printf(&q->ar, "%04d-%02d", y, m);
    }
    return day_str(q, start);
}

Tally__V1__VolumeTrend *tr_build(qreq *q, const tr_plan *p)
{
    Tally__V1__VolumeTrend *t = NEW(q, Tally__V1__VolumeTrend, TALLY__V1__VOLUME_TREND__INIT);
    size_t ndays = (size_t)(p->r.to - p->r.from + 1);
    int64_t *created = NEWV(q, int64_t, ndays), *resolved = NEWV(q, int64_t, ndays);
    if (!t || !created || !resolved)
        return NULL;
    size_t day = 0;
    for (size_t i = 0; i < p->nsegs; i++) {
        const redisReply *r = rd_reply(&q->b, p->first + i);
        size_t k = 1;
        for (int d = p->segs[i].d1; d <= p->segs[i].d2; d++, day++)
            for (size_t c = 0; c < p->c.n; c++) {
                created[day] += rd_elem_int(r, k++);
                resolved[day] += rd_elem_int(r, k++);
            }
    }
    size_t nb = 0;
    for (int64_t z = bucket_start(p->gran, p->r.from); z <= p->r.to; z = bucket_end(p->gran, z) + 1)
        nb++;
    t->granularity = (Tally__V1__Granularity)p->gran;
    t->range = range_msg(q, p->r);
    t->n_buckets = nb;
    t->buckets = NEWV(q, Tally__V1__VolumeBucket *, nb);
    if (!t->buckets)
        return NULL;
    size_t b = 0;
    for (int64_t z = bucket_start(p->gran, p->r.from); z <= p->r.to;
         z = bucket_end(p->gran, z) + 1, b++) {
        Tally__V1__VolumeBucket *v =
            NEW(q, Tally__V1__VolumeBucket, TALLY__V1__VOLUME_BUCKET__INIT);
        if (!v)
            return NULL;
        int64_t first = z < p->r.from ? p->r.from : z, end = bucket_end(p->gran, z);
        int64_t last = end > p->r.to ? p->r.to : end;
        v->label = bucket_label(q, p->gran, z);
        v->first_day = day_str(q, first);
        v->last_day = day_str(q, last);
        for (int64_t d = first; d <= last; d++) {
            v->created += created[d - p->r.from];
            v->resolved += resolved[d - p->r.from];
        }
        t->total_created += v->created;
        t->total_resolved += v->resolved;
        t->buckets[b] = v;
    }
    return q->ar.failed ? NULL : t;
}

/*
 * A month cut by the range is read either day by day (the days in the range) or as the whole
 * month less the days outside the range, whichever reads fewer days. A part is one such read:
 * days d1..d2 of the month with a sign (+1 in, -1 out), or the whole month (d1 = 0).
 * Days after the last day that can hold data (FUTURE_DAYS after today: local days come from
 * the write side's clock, and a tenant may have moved time zone) are empty and never read.
 */
typedef struct mpart {
    int d1, d2, sign;
} mpart;

#define FUTURE_DAYS 2

/* The parts of segment s: up to three, none when all its days are still to come. */
static size_t month_parts(const qreq *q, const mseg *s, mpart *out)
{
    int len = civil_month_days(s->y, s->m);
    int64_t first = civil_days(s->y, s->m, 1), last = q->today + FUTURE_DAYS;
    int lim = last < first ? 0 : last - first + 1 >= len ? len : (int)(last - first + 1);
    int d2 = s->d2 < lim ? s->d2 : lim;
    if (s->d1 > d2)
        return 0;
    int in = d2 - s->d1 + 1, before = s->d1 - 1, after = lim - d2;
    size_t n = 0;
    if (in <= before + after) {
        out[n++] = (mpart){ s->d1, d2, 1 };
        return n;
    }
    out[n++] = (mpart){ 0, 0, 1 };
    if (before > 0)
        out[n++] = (mpart){ 1, s->d1 - 1, -1 };
    if (after > 0)
        out[n++] = (mpart){ d2 + 1, lim, -1 };
    return n;
}

/* ---- resolution stats ---------------------------------------------------------------------- */

typedef struct rgroup {
    const char *k;
    int p;
    int64_t n, s;
    int64_t b[HIST_BUCKETS];
} rgroup;

/* One read of the resolution panel: a histogram hash (a month's "m", a day's "h") or the
 * daily counters of days d1..d2 ("d"), added with sign. */
typedef struct rs_read {
    size_t idx;
    char kind;
    int d1, d2, sign;
} rs_read;

struct rs_plan {
    qrange r;
    int group_by;
    cells c;
    rs_read *reads;
    size_t nreads;
    rgroup *groups; /* one per distinct group of the cells (group_by != NONE) */
    size_t ngroups;
};

rs_plan *rs_plan_read(qreq *q, qrange r, int group_by, const qfilter *f)
{
    static const char *const what[] = { "r", "s" };
    rs_plan *p = ar_alloc(&q->ar, sizeof(*p));
    bool by_k =
        group_by == TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_CATEGORY ||
        group_by == TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_CATEGORY_AND_PRIORITY;
    bool by_p =
        group_by == TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_PRIORITY ||
        group_by == TALLY__V1__RESOLUTION_GROUP_BY__RESOLUTION_GROUP_BY_CATEGORY_AND_PRIORITY;
    if (!p || make_cells(q, f, by_k, by_p, &p->c) != 0)
        return NULL;
    p->r = r;
    p->group_by = group_by;
    /* Groups: the cells projected on the grouping. */
    if (by_k || by_p) {
        smap seen;
        if (smap_init(q, &seen, p->c.n) != 0 || !(p->groups = NEWV(q, rgroup, p->c.n)))
            return NULL;
        for (size_t i = 0; i < p->c.n; i++) {
            cell *x = &p->c.v[i];
            char *key = ar_printf(&q->ar, "%s|%d", by_k ? x->k : "", by_p ? x->p : 0);
            if (!key)
                return NULL;
            int g = smap_get(&seen, key, strlen(key));
            if (g < 0) {
                g = (int)p->ngroups++;
                smap_put(&seen, key, g);
                p->groups[g].k = by_k ? x->k : NULL;
                p->groups[g].p = by_p ? x->p : 0;
            }
            x->group = g;
        }
    }
    size_t nsegs = 0;
    mseg *segs = months_of(q, r, &nsegs);
    /* At most: per month the month, 31 days and two counter reads. */
    size_t most = nsegs * 34;
    p->reads = segs ? NEWV(q, rs_read, most) : NULL;
    if (!p->reads)
        return NULL;
    for (size_t i = 0; i < nsegs; i++) {
        const mseg *s = &segs[i];
        mpart parts[3];
        size_t np = month_parts(q, s, parts);
        for (size_t j = 0; j < np; j++) {
            const mpart *t = &parts[j];
            if (t->d1 == 0) {
                p->reads[p->nreads++] = (rs_read){ rd_cmd(&q->b, "HGETALL"), 'm', 0, 0, t->sign };
                rd_argf(&q->b, "%shm:%04d-%02d:%s", q->P, s->y, s->m, p->c.dims);
                continue;
            }
            for (int d = t->d1; d <= t->d2; d++) {
                p->reads[p->nreads++] = (rs_read){ rd_cmd(&q->b, "HGETALL"), 'h', d, d, t->sign };
                rd_argf(&q->b, "%shd:%04d-%02d-%02d:%s", q->P, s->y, s->m, d, p->c.dims);
            }
            p->reads[p->nreads++] = (rs_read){ q->b.ncmds, 'd', t->d1, t->d2, t->sign };
            day_fields(q, s, t->d1, t->d2, &p->c, what, 2);
        }
    }
    return p;
}

/* Adds one histogram field times sign to the cell it belongs to. rest = "<hg>:<b>",
 * "<hg>:n", "<hg>:s" or, for dims "a", "<b>", "n", "s". */
static void rs_field(const rs_plan *p, rgroup *all, rgroup *groups, const char *rest, size_t len,
                     int64_t v)
{
    const char *colon = memrchr(rest, ':', len);
    size_t hglen = colon ? (size_t)(colon - rest) : 0;
    const char *last = colon ? colon + 1 : rest;
    size_t lastlen = len - (size_t)(last - rest);
    int ci = smap_get(&p->c.by_hg, rest, hglen);
    if (ci < 0)
        return; /* a cell outside the filter */
    rgroup *g = p->c.v[ci].group >= 0 ? &groups[p->c.v[ci].group] : NULL;
    if (lastlen == 1 && (last[0] == 'n' || last[0] == 's')) {
        *(last[0] == 'n' ? &all->n : &all->s) += v;
        if (g)
            *(last[0] == 'n' ? &g->n : &g->s) += v;
        return;
    }
    int64_t b = parse_i64(last, lastlen);
    if (b < 0 || b >= HIST_BUCKETS)
        b = HIST_BUCKETS - 1;
    all->b[b] += v;
    if (g)
        g->b[b] += v;
}

static Tally__V1__ResolutionSummary *summary(qreq *q, const rgroup *g)
{
    Tally__V1__ResolutionSummary *s =
        NEW(q, Tally__V1__ResolutionSummary, TALLY__V1__RESOLUTION_SUMMARY__INIT);
    if (!s)
        return NULL;
    int64_t n = 0;
    for (int b = 0; b < HIST_BUCKETS; b++)
        n += g->b[b];
    s->count = g->n;
    if (g->n > 0) {
        s->mean_seconds = (double)g->s / (double)g->n;
        s->p50_seconds = panels_percentile(g->b, HIST_BUCKETS, n, 50);
        s->p90_seconds = panels_percentile(g->b, HIST_BUCKETS, n, 90);
        s->p99_seconds = panels_percentile(g->b, HIST_BUCKETS, n, 99);
    }
    return s;
}

static int by_group(const void *a, const void *b)
{
    const rgroup *x = a, *y = b;
    int c = strcmp(x->k ? x->k : "", y->k ? y->k : "");
    return c ? c : y->p - x->p; /* URGENT (4) to LOW (1) */
}

Tally__V1__ResolutionStats *rs_build(qreq *q, const rs_plan *p)
{
    Tally__V1__ResolutionStats *st =
        NEW(q, Tally__V1__ResolutionStats, TALLY__V1__RESOLUTION_STATS__INIT);
    rgroup *all = ar_alloc(&q->ar, sizeof(*all));
    rgroup *groups = NEWV(q, rgroup, p->ngroups);
    if (!st || !all || !groups)
        return NULL;
    for (size_t g = 0; g < p->ngroups; g++)
        groups[g] = (rgroup){ .k = p->groups[g].k, .p = p->groups[g].p };
    for (size_t i = 0; i < p->nreads; i++) {
        const rs_read *rd = &p->reads[i];
        const redisReply *r = rd_reply(&q->b, rd->idx);
        if (rd->kind != 'd') {
            for (size_t e = 0; r && r->type == REDIS_REPLY_ARRAY && e + 1 < r->elements; e += 2) {
                const redisReply *f = r->element[e];
                if (f->type == REDIS_REPLY_STRING)
                    rs_field(p, all, groups, f->str, f->len, rd->sign * rd_int(r->element[e + 1]));
            }
            continue;
        }
        size_t k = 1; /* the days' counters: count and sum per day and cell */
        for (int day = rd->d1; day <= rd->d2; day++)
            for (size_t c = 0; c < p->c.n; c++) {
                int64_t n = rd->sign * rd_elem_int(r, k++), sum = rd->sign * rd_elem_int(r, k++);
                all->n += n;
                all->s += sum;
                if (p->c.v[c].group >= 0) {
                    groups[p->c.v[c].group].n += n;
                    groups[p->c.v[c].group].s += sum;
                }
            }
    }
    st->range = range_msg(q, p->r);
    st->group_by = (Tally__V1__ResolutionGroupBy)p->group_by;
    st->overall = summary(q, all);
    st->percentile_relative_error = HIST_RELATIVE_ERROR;
    qsort(groups, p->ngroups, sizeof(*groups), by_group);
    st->groups = NEWV(q, Tally__V1__ResolutionGroup *, p->ngroups);
    if (!st->groups)
        return NULL;
    for (size_t g = 0; g < p->ngroups; g++) {
        if (groups[g].n <= 0)
            continue;
        Tally__V1__ResolutionGroup *m =
            NEW(q, Tally__V1__ResolutionGroup, TALLY__V1__RESOLUTION_GROUP__INIT);
        if (!m)
            return NULL;
        m->category_id = (char *)(groups[g].k ? groups[g].k : "");
        m->category_name =
            (char *)(groups[g].k ? name_in(rd_reply(&q->b, q->i_cats), groups[g].k) : "");
        m->priority = (Tally__V1__Priority)groups[g].p;
        m->summary = summary(q, &groups[g]);
        st->groups[st->n_groups++] = m;
    }
    return q->ar.failed ? NULL : st;
}

/* ---- agent performance --------------------------------------------------------------------- */

/* One read of the agent panel: <a>:n and <a>:s of every agent in a month's or a day's key,
 * added with sign. */
typedef struct ag_read {
    size_t idx;
    int sign;
} ag_read;

struct ag_plan {
    qrange r;
    int sort_by;
    bool ascending;
    int limit;
    int64_t offset;
    size_t ao;
    ag_read *reads;
    size_t nreads;
};

ag_plan *ag_plan_read(qreq *q, qrange r, int sort_by, bool ascending, int limit, int64_t offset)
{
    ag_plan *p = ar_alloc(&q->ar, sizeof(*p));
    size_t nsegs = 0;
    mseg *segs;
    if (!p || !(segs = months_of(q, r, &nsegs)))
        return NULL;
    *p = (ag_plan){
        .r = r, .sort_by = sort_by, .ascending = ascending, .limit = limit, .offset = offset
    };
    size_t most = nsegs * 32; /* per month: the month and up to 31 days */
    if (!(p->reads = NEWV(q, ag_read, most)))
        return NULL;
    p->ao = rd_cmd(&q->b, "HGETALL");
    rd_argf(&q->b, "%sao", q->P);
    for (size_t i = 0; i < nsegs; i++) {
        const mseg *s = &segs[i];
        mpart parts[3];
        size_t np = month_parts(q, s, parts);
        for (size_t j = 0; j < np; j++)
            for (int d = parts[j].d1; d <= parts[j].d2; d++) {
                p->reads[p->nreads++] = (ag_read){ rd_cmd(&q->b, "HMGET"), parts[j].sign };
                if (d == 0)
                    rd_argf(&q->b, "%sad:%04d-%02d", q->P, s->y, s->m);
                else
                    rd_argf(&q->b, "%sad:%04d-%02d-%02d", q->P, s->y, s->m, d);
                rd_arg_static(&q->b, "-"); /* HMGET needs a field even without agents */
                for (size_t a = 0; a < q->meta->nagents; a++) {
                    rd_argf(&q->b, "%s:n", q->meta->agents[a]);
                    rd_argf(&q->b, "%s:s", q->meta->agents[a]);
                }
            }
    }
    return p;
}

typedef struct arow {
    const char *id;
    int64_t n, s, open;
} arow;

static int by_metric(const void *a, const void *b, void *plan)
{
    const arow *x = a, *y = b;
    const ag_plan *p = plan;
    int c = 0;
    switch (p->sort_by) {
    case TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_MEAN_RESOLUTION:
        if ((x->n == 0) != (y->n == 0))
            return x->n == 0 ? 1 : -1; /* no resolution: last either way */
        if (x->n && y->n) {
            /* compare s/n exactly: x->s * y->n vs y->s * x->n */
            __int128 l = (__int128)x->s * y->n, r = (__int128)y->s * x->n;
            c = (l > r) - (l < r);
        }
        break;
    case TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_OPEN_ASSIGNED:
        c = (x->open > y->open) - (x->open < y->open);
        break;
    case TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_AGENT_ID:
        c = strcmp(x->id, y->id);
        break;
    default:
        c = (x->n > y->n) - (x->n < y->n);
    }
    if (c)
        return p->ascending ? c : -c;
    return strcmp(x->id, y->id);
}

Tally__V1__AgentPerformance *ag_build(qreq *q, const ag_plan *p)
{
    Tally__V1__AgentPerformance *ap =
        NEW(q, Tally__V1__AgentPerformance, TALLY__V1__AGENT_PERFORMANCE__INIT);
    size_t na = q->meta->nagents;
    arow *rows = NEWV(q, arow, na);
    smap idx;
    if (!ap || !rows || smap_init(q, &idx, na) != 0)
        return NULL;
    for (size_t a = 0; a < na; a++) {
        rows[a].id = q->meta->agents[a];
        smap_put(&idx, rows[a].id, (int)a);
    }
    const redisReply *ao = rd_reply(&q->b, p->ao);
    for (size_t e = 0; ao && ao->type == REDIS_REPLY_ARRAY && e + 1 < ao->elements; e += 2) {
        const redisReply *f = ao->element[e];
        int a = f->type == REDIS_REPLY_STRING ? smap_get(&idx, f->str, f->len) : -1;
        if (a >= 0)
            rows[a].open = rd_int(ao->element[e + 1]);
    }
    for (size_t i = 0; i < p->nreads; i++) {
        const redisReply *r = rd_reply(&q->b, p->reads[i].idx);
        for (size_t a = 0, k = 1; a < na; a++) {
            rows[a].n += p->reads[i].sign * rd_elem_int(r, k++);
            rows[a].s += p->reads[i].sign * rd_elem_int(r, k++);
        }
    }
    qsort_r(rows, na, sizeof(*rows), by_metric, (void *)p);
    ap->range = range_msg(q, p->r);
    ap->sort_by = (Tally__V1__AgentSortBy)p->sort_by;
    ap->ascending = p->ascending;
    ap->total_agents = (int32_t)na;
    size_t from = (size_t)p->offset < na ? (size_t)p->offset : na;
    size_t to = from + (size_t)p->limit < na ? from + (size_t)p->limit : na;
    ap->n_agents = to - from;
    ap->agents = NEWV(q, Tally__V1__AgentStats *, ap->n_agents);
    if (!ap->agents)
        return NULL;
    for (size_t i = from; i < to; i++) {
        Tally__V1__AgentStats *s = NEW(q, Tally__V1__AgentStats, TALLY__V1__AGENT_STATS__INIT);
        if (!s)
            return NULL;
        s->agent_id = (char *)rows[i].id;
        s->agent_name = (char *)name_in(rd_reply(&q->b, q->i_agents), rows[i].id);
        s->resolved = rows[i].n;
        s->mean_resolution_seconds = rows[i].n ? (double)rows[i].s / (double)rows[i].n : 0.0;
        s->open_assigned = rows[i].open;
        ap->agents[i - from] = s;
    }
    ap->next_page_token =
        to < na ? ag_token(&q->ar, p->r, p->sort_by, p->ascending, (int64_t)to) : (char *)"";
    return q->ar.failed ? NULL : ap;
}

static uint32_t token_check(qrange r, int sort_by, bool ascending, int64_t offset)
{
    char buf[96];
    int n = snprintf(buf, sizeof(buf), "%" PRId64 "|%" PRId64 "|%d|%d|%" PRId64, r.from, r.to,
                     sort_by, ascending, offset);
    return (uint32_t)hash_fnv1a(buf, (size_t)n, 0);
}

char *ag_token(arena *ar, qrange r, int sort_by, bool ascending, int64_t offset)
{
    return ar_printf(ar, "%" PRId64 ".%08x", offset, token_check(r, sort_by, ascending, offset));
}

int64_t ag_token_offset(const char *token, qrange r, int sort_by, bool ascending)
{
    char *end;
    if (!token || token[0] < '0' || token[0] > '9')
        return -1;
    long long off = strtoll(token, &end, 10);
    if (*end != '.' || off < 0 || off > 1000000 || strlen(end + 1) != 8)
        return -1;
    char *hex_end;
    unsigned long check = strtoul(end + 1, &hex_end, 16);
    if (*hex_end || check != token_check(r, sort_by, ascending, off))
        return -1;
    return off;
}

/* ---- category distribution ----------------------------------------------------------------- */

struct cd_plan {
    qrange r;
    int top_n;
    bool by_kc; /* whole months read the month's ranking P kc:M (no priority filter) */
    cells c;    /* (category x priority) or (category) cells */
    mseg *segs;
    size_t nsegs, first;
};

cd_plan *cd_plan_read(qreq *q, qrange r, const qfilter *f, int top_n)
{
    static const char *const what[] = { "c" };
    cd_plan *p = ar_alloc(&q->ar, sizeof(*p));
    if (!p || make_cells(q, f, true, false, &p->c) != 0)
        return NULL;
    p->r = r;
    p->top_n = top_n;
    p->by_kc = f->nprios == 0;
    p->segs = months_of(q, r, &p->nsegs);
    if (!p->segs)
        return NULL;
    p->first = q->b.ncmds;
    for (size_t i = 0; i < p->nsegs; i++) {
        const mseg *s = &p->segs[i];
        if (s->full && p->by_kc) {
            month_cmd(q, "ZRANGE", "kc", s);
            rd_arg_static(&q->b, "0");
            rd_arg_static(&q->b, "-1");
            rd_arg_static(&q->b, "WITHSCORES");
        } else {
            day_fields(q, s, s->d1, s->d2, &p->c, what, 1);
        }
    }
    return p;
}

typedef struct crow {
    const char *k;
    int64_t n;
} crow;

static int by_count(const void *a, const void *b)
{
    const crow *x = a, *y = b;
    if (x->n != y->n)
        return x->n > y->n ? -1 : 1;
    return strcmp(x->k, y->k);
}

Tally__V1__CategoryDistribution *cd_build(qreq *q, const cd_plan *p)
{
    Tally__V1__CategoryDistribution *cd =
        NEW(q, Tally__V1__CategoryDistribution, TALLY__V1__CATEGORY_DISTRIBUTION__INIT);
    /* Rows per category: cells are category-major, priorities adjacent. */
    size_t per = 1;
    while (per < p->c.n && p->c.v[per].k == p->c.v[0].k)
        per++;
    size_t nk = p->c.n / (per ? per : 1);
    crow *rows = NEWV(q, crow, nk);
    smap idx;
    if (!cd || !rows || smap_init(q, &idx, nk) != 0)
        return NULL;
    for (size_t i = 0; i < nk; i++) {
        rows[i].k = p->c.v[i * per].k;
        smap_put(&idx, rows[i].k, (int)i);
    }
    for (size_t i = 0; i < p->nsegs; i++) {
        const redisReply *r = rd_reply(&q->b, p->first + i);
        const mseg *s = &p->segs[i];
        if (s->full && p->by_kc) {
            for (size_t e = 0; r && r->type == REDIS_REPLY_ARRAY && e + 1 < r->elements; e += 2) {
                const redisReply *m = r->element[e];
                int k = m->type == REDIS_REPLY_STRING ? smap_get(&idx, m->str, m->len) : -1;
                if (k >= 0)
                    rows[k].n += rd_int(r->element[e + 1]);
            }
            continue;
        }
        size_t e = 1;
        for (int d = s->d1; d <= s->d2; d++)
            for (size_t c = 0; c < p->c.n; c++)
                rows[c / per].n += rd_elem_int(r, e++);
    }
    qsort(rows, nk, sizeof(*rows), by_count);
    size_t nonzero = 0;
    for (size_t i = 0; i < nk; i++) {
        cd->total += rows[i].n;
        nonzero += rows[i].n > 0;
    }
    size_t shown = nonzero < (size_t)p->top_n ? nonzero : (size_t)p->top_n;
    bool other = nonzero > shown;
    cd->range = range_msg(q, p->r);
    cd->categories = NEWV(q, Tally__V1__CategoryShare *, shown + 1);
    if (!cd->categories)
        return NULL;
    for (size_t i = 0; i < shown; i++) {
        Tally__V1__CategoryShare *s =
            NEW(q, Tally__V1__CategoryShare, TALLY__V1__CATEGORY_SHARE__INIT);
        if (!s)
            return NULL;
        s->category_id = (char *)rows[i].k;
        s->category_name = (char *)name_in(rd_reply(&q->b, q->i_cats), rows[i].k);
        s->count = rows[i].n;
        s->share = cd->total ? (double)rows[i].n / (double)cd->total : 0.0;
        cd->categories[cd->n_categories++] = s;
    }
    if (other) {
        Tally__V1__CategoryShare *s =
            NEW(q, Tally__V1__CategoryShare, TALLY__V1__CATEGORY_SHARE__INIT);
        if (!s)
            return NULL;
        for (size_t i = shown; i < nonzero; i++)
            s->count += rows[i].n;
        s->share = cd->total ? (double)s->count / (double)cd->total : 0.0;
        s->is_other = true;
        cd->other_category_count = (int32_t)(nonzero - shown);
        cd->categories[cd->n_categories++] = s;
    }
    return q->ar.failed ? NULL : cd;
}
