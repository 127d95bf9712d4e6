/*
 * rebuild: a tenant's read model rebuilt into a new generation (rebuild.h). The Redis side of
 * every step is a function of tally.lua (tally_rebuild_*), so each is atomic with the progress
 * it records; this file reads PostgreSQL, turns rows into the fields the functions take (the
 * envelope the relay would publish, decoded as the projector decodes it) and keeps one call in
 * flight while it reads the next rows.
 */
#include "rebuild.h"

#include "decode.h"
#include "err.h"
#include "event.h"
#include "kv.h"
#include "now.h"
#include "pgx.h"
#include "plan.h"
#include "stream.h"
#include "view.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GAP_IDS        500  /* complaints per read of step 3 */
#define GAP_ROUNDS_MAX 1000 /* reads of step 3 before giving up */
#define GC_GRACE_MS    1000 /* between the flip and the deletion of the old generation */
#define GC_SCAN        1000 /* SCAN COUNT while deleting an old generation */
#define PG_WAIT_MS     60000
#define REDIS_BUSY_S   "BUSY"

enum { S_KNOWN, S_BOUNDS, S_READ, S_DONE, S_HISTORY, S_REFS, S_TENANTS };
static const pgx_stmt stmts[] = {
    [S_KNOWN] = { "rebuild_known", "SELECT EXISTS (SELECT 1 FROM tenants WHERE tenant_id = $1)",
                  1 },
    [S_BOUNDS] = { "rebuild_bounds",
                   "SELECT coalesce(max(seq), 0), count(*) FROM events WHERE tenant_id = $1", 1 },
    [S_READ] = { "rebuild_read",
                 "SELECT " EVENT_COLUMNS " FROM events WHERE tenant_id = $1 AND seq > $2"
                 " AND seq <= $3 ORDER BY seq LIMIT $4",
                 4 },
    [S_DONE] = { "rebuild_done", "SELECT count(*) FROM events WHERE tenant_id = $1 AND seq <= $2",
                 2 },
    [S_HISTORY] = { "rebuild_history",
                    "SELECT " EVENT_COLUMNS " FROM events WHERE complaint_id = ANY ($1::bigint[])"
                    " AND tenant_id = $2 ORDER BY seq",
                    2 },
    [S_REFS] = { "rebuild_refs",
                 "SELECT " EVENT_COLUMNS
                 " FROM events WHERE tenant_id = $1 AND complaint_id IS NULL"
                 " ORDER BY seq",
                 1 },
    [S_TENANTS] = { "rebuild_tenants", "SELECT tenant_id FROM tenants ORDER BY tenant_id", 0 },
};

/*
 * The events of one apply call, decoded and counted: the call in flight keeps them until its
 * reply (a refused merged call is sent again event by event) while the next one is prepared
 * in the other slot, so the rebuilder decodes and counts while Redis applies.
 */
typedef struct slot {
    proj_event *evs;
    size_t nev;
    proj_plan *plan;           /* plan.h: the events counted, when merged */
    bool merged;               /* they go (went) as one tally_rebuild_apply_merged */
    char cursor[24], read[24]; /* the call's cursor ("" to keep) and read events */
} slot;

/* One rebuild's state. */
typedef struct rb {
    redisContext *rc;
    const rebuild_opts *o;
    pgx_conn *pg;
    proj_view view;
    char fn_begin[64], fn_set[64], fn_apply[64], fn_merged[64], fn_gaps[64], fn_flip[64],
        fn_abort[64];
    char key[160]; /* {t:T}:rebuild */
    char lease[24];
    rebuild_progress pr;
    int64_t started_mono, done_at_start, last_report;
    int64_t up_to, cursor;
    bool in_flight; /* the call of s[cur] sent, its reply not read */
    bool ahead;     /* the next window's read is in flight on pg (read_log) */
    int batch;      /* events per call */
    int window;     /* rows per read of the log */
    slot s[2];
    int cur;
    char *err;
    size_t errlen;
    /* the call being built */
    const char **argv;
    size_t *lens, argc, cap;
    uint8_t body[EVENT_BODY_MAX], env[EVENT_BODY_MAX + 1024];
} rb;

static int fail(rb *b, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(rb *b, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->err, b->errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* An error reply (or none, after an I/O error) of a rebuild function, as a tally_err. */
static int redis_fail(rb *b, redisReply *r, const char *doing)
{
    int rc = TALLY_EUNAVAIL;
    if (!r)
        rc = fail(b, TALLY_EUNAVAIL, "Redis failed while %s: %s", doing,
                  b->rc->errstr[0] ? b->rc->errstr : "connection lost");
    else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, REDIS_BUSY_S " ", 5) == 0)
        rc = fail(b, TALLY_EPRECOND, "%s", r->str + 5);
    else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOTOWNER", 8) == 0)
        rc = fail(b, TALLY_EPRECOND, "lost the rebuild while %s: %s", doing, r->str + 9);
    else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOREBUILD", 9) == 0)
        rc = fail(b, TALLY_EPRECOND, "the rebuild was aborted while %s", doing);
    else if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "VIEW ", 5) == 0)
        rc = fail(b, TALLY_EPRECOND, "%s", r->str + 5);
    else
        rc = fail(b, TALLY_EUNAVAIL, "Redis refused %s: %s", doing,
                  r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    if (r)
        freeReplyObject(r);
    return rc;
}

static int64_t elem_int(const redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return 0;
    const redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    return e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10) : 0;
}

/* Makes sure this build's functions are loaded ("already exists" is success). */
static int load_view(rb *b)
{
    redisReply *r = redisCommand(b->rc, "FUNCTION LOAD %s", b->view.lua);
    if (r && (r->type != REDIS_REPLY_ERROR || strstr(r->str, "already exists"))) {
        freeReplyObject(r);
        return 0;
    }
    return redis_fail(b, r, "loading the read model's functions");
}

static void report(rb *b, bool force)
{
    int64_t now = now_mono_ms();
    rebuild_progress *pr = &b->pr;
    double secs = (double)(now - b->started_mono) / 1000.0;
    int64_t read = pr->done - b->done_at_start;
    pr->rate = secs > 0.05 ? (double)read / secs : 0;
    pr->eta_ms = pr->rate > 0 && pr->total >= pr->done
                     ? (int64_t)((double)(pr->total - pr->done) / pr->rate * 1000.0)
                     : -1;
    if (!b->o->progress || (!force && now - b->last_report < b->o->progress_every_ms))
        return;
    b->last_report = now;
    b->o->progress(pr, b->o->arg);
}

/* Room for argc arguments. */
static int args_reserve(rb *b, size_t argc)
{
    if (argc <= b->cap)
        return 0;
    const char **v = realloc(b->argv, argc * sizeof(*v));
    if (!v)
        return TALLY_ENOMEM;
    b->argv = v;
    size_t *l = realloc(b->lens, argc * sizeof(*l));
    if (!l)
        return TALLY_ENOMEM;
    b->lens = l;
    b->cap = argc;
    return 0;
}

static void release_events(slot *s)
{
    for (size_t i = 0; i < s->nev; i++)
        proj_event_release(&s->evs[i]);
    s->nev = 0;
}

/*
 * A row that cannot be decoded goes as an event the function refuses (type 0) with its seq,
 * complaint and version: the complaint stops before it in the new generation, as it would be
 * parked live, instead of silently missing a version.
 */
static void placeholder(proj_event *ev, const PGresult *res, int i)
{
    memset(ev, 0, sizeof(*ev));
    static const int cols[] = { EVENT_C_SEQ, EVENT_C_COMPLAINT, EVENT_C_VERSION };
    for (int f = 0; f < STREAM_APPLY_NFIELDS; f++) {
        ev->argv[f] = ev->nums[f];
        if (f < 3)
            snprintf(ev->nums[f], sizeof(ev->nums[f]), "%" PRId64, pgx_int(res, i, cols[f]));
        else if (f == 3)
            snprintf(ev->nums[f], sizeof(ev->nums[f]), "0");
        ev->argvlen[f] = strlen(ev->nums[f]);
    }
}

/* Appends tally_rebuild_apply of the decoded events of s, with its cursor and read. */
static int send_events(rb *b, const slot *s, const char *now)
{
    char cnt[24], nf[8];
    snprintf(cnt, sizeof(cnt), "%zu", s->nev);
    snprintf(nf, sizeof(nf), "%d", STREAM_APPLY_NFIELDS);
    const char *h[] = { "FCALL",  b->fn_apply, "1",     b->key, b->o->owner, now,
                        b->lease, s->cursor,   s->read, cnt,    nf };
    b->argc = 0;
    if (args_reserve(b, sizeof(h) / sizeof(h[0]) + s->nev * STREAM_APPLY_NFIELDS) != 0)
        return fail(b, TALLY_ENOMEM, "out of memory");
    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) {
        b->argv[b->argc] = h[i];
        b->lens[b->argc++] = strlen(h[i]);
    }
    for (size_t i = 0; i < s->nev; i++)
        for (int f = 0; f < STREAM_APPLY_NFIELDS; f++) {
            b->argv[b->argc] = s->evs[i].argv[f];
            b->lens[b->argc++] = s->evs[i].argvlen[f];
        }
    if (redisAppendCommandArgv(b->rc, (int)b->argc, b->argv, b->lens) != REDIS_OK)
        return fail(b, TALLY_ENOMEM, "out of memory");
    return 0;
}

/* Whether the decoded events of s make a plan (all complaint events plan.h can merge). */
static bool plan_events(slot *s)
{
    if (s->nev == 0 || (!s->plan && !(s->plan = proj_plan_new())))
        return false;
    proj_plan_reset(s->plan);
    for (size_t i = 0; i < s->nev; i++)
        if (!proj_is_complaint_event(&s->evs[i]) || !proj_plan_add(s->plan, &s->evs[i]))
            return false;
    return true;
}

/*
 * Decodes the rows of res into s and counts them (while the call of the other slot may be in
 * flight), with cursor ("" to keep) and read events for the call.
 */
static void prepare(rb *b, slot *s, const PGresult *res, const int *rows, int nrows,
                    const char *cursor, int64_t read)
{
    size_t n = 0;
    for (int k = 0; k < nrows; k++) {
        int i = rows[k];
        char why[160];
        long len = event_pack_row(res, i, b->body, b->env, sizeof(b->env));
        if (len < 0 || proj_decode(b->env, (size_t)len, &s->evs[n], why, sizeof(why)) != 0) {
            if (len >= 0)
                proj_event_release(&s->evs[n]); /* a refused event may keep its envelope */
            placeholder(&s->evs[n], res, i);
        }
        n++;
    }
    s->nev = n;
    snprintf(s->cursor, sizeof(s->cursor), "%s", cursor);
    snprintf(s->read, sizeof(s->read), "%" PRId64, read);
    s->merged = plan_events(s);
}

/* Writes what is appended to Redis now, so that it applies while we prepare the next call. */
static int flush(rb *b)
{
    int done = 0;
    while (!done)
        if (redisBufferWrite(b->rc, &done) != REDIS_OK)
            return redis_fail(b, NULL, "applying events to the new generation");
    return 0;
}

/*
 * Sends the call of s (prepared), which becomes the one in flight: one tally_rebuild_apply_merged
 * when its events make a plan (they are kept: a refused one is sent again event by event),
 * else tally_rebuild_apply.
 */
static int send_apply(rb *b, slot *s)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, now_wall_ms());
    int rc;
    /* Once the view refused an event, tally_rebuild_apply_merged refuses every batch (checked
       here, not in prepare: the reply of the call before may have just told so). */
    s->merged = s->merged && b->pr.invalid == 0;
    if (s->merged) {
        const char *h[] = { "FCALL", b->fn_merged, "1",       b->key, b->o->owner,
                            now,     b->lease,     s->cursor, s->read };
        rc = proj_plan_append(s->plan, b->rc, h, sizeof(h) / sizeof(h[0]), now) == 0
                 ? 0
                 : fail(b, TALLY_ENOMEM, "out of memory");
    } else {
        rc = send_events(b, s, now);
    }
    if (rc != 0 || !s->merged) /* formatted (or failed): the fields are no longer needed */
        release_events(s);
    s->merged = s->merged && rc == 0;
    b->cur = (int)(s - b->s);
    b->in_flight = rc == 0;
    return rc == 0 ? flush(b) : rc;
}

/* Reads the reply of the call in flight, counting what the view refused. */
static int finish_apply(rb *b)
{
    if (!b->in_flight)
        return 0;
    b->in_flight = false;
    slot *s = &b->s[b->cur];
    redisReply *r = NULL;
    if (s->merged) {
        s->merged = false;
        /* An error other than a systemic one (a plan of another view, a key of the wrong
           type...) is the per-event call's to decide, as on the live path. */
        bool sent = redisGetReply(b->rc, (void **)&r) == REDIS_OK && r;
        if (!sent || (r->type != REDIS_REPLY_INTEGER &&
                      (r->type != REDIS_REPLY_ERROR || kv_systemic_kind(r->str)))) {
            release_events(s);
            return redis_fail(b, r, "applying events to the new generation");
        }
        bool refused = r->type != REDIS_REPLY_INTEGER || r->integer != 0;
        freeReplyObject(r);
        r = NULL;
        if (!refused) {
            b->pr.merged++;
            release_events(s);
            return 0;
        }
        b->pr.split++;
        char now[24]; /* refused, nothing written: the same events one by one */
        snprintf(now, sizeof(now), "%" PRId64, now_wall_ms());
        int rc = send_events(b, s, now);
        release_events(s);
        if (rc != 0)
            return rc;
    }
    if (redisGetReply(b->rc, (void **)&r) != REDIS_OK || !r || r->type != REDIS_REPLY_ARRAY)
        return redis_fail(b, r, "applying events to the new generation");
    for (size_t i = 0; i < r->elements; i++)
        if (r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer == 4)
            b->pr.invalid++;
    freeReplyObject(r);
    return 0;
}

/* A local day "YYYY-MM-DD" as YYYYMMDD, or 0 when it is not one. */
static int32_t day_num(const char *d)
{
    int32_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (i == 4 || i == 7) {
            if (d[i] != '-')
                return 0;
            continue;
        }
        if (d[i] < '0' || d[i] > '9')
            return 0;
        v = v * 10 + (d[i] - '0');
    }
    return d[10] == '\0' ? v : 0;
}

typedef struct {
    int64_t key;
    int row;
} keyed_row;

static int by_key(const void *a, const void *b)
{
    const keyed_row *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/*
 * The order in which the rows of a window of the log (in seq order) are applied: by local day,
 * then by seq. An import writes whole lives complaint by complaint, so in seq order a call of
 * 2,000 events touches nearly every day of the year, and each day's keys cost a TYPE, an HMGET
 * and an HSET in Redis (about 1,060 keys a call); by day, a call touches a few days. A
 * complaint's events keep their order: each sorts at the latest day of its complaint so far in
 * the window (a day that goes back, which zones and clocks allow, does not overtake). Reference
 * events (no complaint) come first: no complaint event reads what they write. rows[] gets the
 * row numbers. 0, or TALLY_ENOMEM.
 */
static int day_order(const PGresult *res, int *rows)
{
    int n = PQntuples(res);
    size_t cap = 64;
    while (cap < 2 * (size_t)n)
        cap *= 2;
    keyed_row *key = malloc((size_t)(n ? n : 1) * sizeof(*key));
    int64_t *ids = calloc(cap, sizeof(*ids));
    int32_t *last = malloc(cap * sizeof(*last));
    if (!key || !ids || !last) {
        free(key);
        free(ids);
        free(last);
        return TALLY_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        key[i].row = i;
        int64_t id = pgx_int(res, i, EVENT_C_COMPLAINT);
        int32_t day = day_num(PQgetvalue(res, i, EVENT_C_DAY));
        if (id <= 0) {
            key[i].key = 0;
            continue;
        }
        size_t h = (size_t)(((uint64_t)id * 0x9e3779b97f4a7c15u) >> 20) & (cap - 1);
        while (ids[h] && ids[h] != id)
            h = (h + 1) & (cap - 1);
        if (!ids[h]) {
            ids[h] = id;
            last[h] = day;
        } else if (day < last[h]) {
            day = last[h];
        }
        last[h] = day;
        key[i].key = day;
    }
    qsort(key, (size_t)n, sizeof(*key), by_key);
    for (int i = 0; i < n; i++)
        rows[i] = key[i].row;
    free(key);
    free(ids);
    free(last);
    return 0;
}

/*
 * Applies every row of res in calls of o->batch events; the last call stays in flight. The
 * log's main pass goes in day_order, and records as its cursor the highest seq below which
 * every row of the window is sent (a resumed rebuild reads the rest of the window again: its
 * duplicates are dropped by version); step 3 keeps seq order.
 */
static int apply_rows(rb *b, const PGresult *res, bool main_pass)
{
    int rows = PQntuples(res), per = b->batch;
    int *order = malloc((size_t)(rows ? rows : 1) * sizeof(*order));
    bool *sent = calloc((size_t)(rows ? rows : 1), sizeof(*sent));
    int rc = order && sent ? 0 : fail(b, TALLY_ENOMEM, "out of memory");
    if (rc == 0 && main_pass && day_order(res, order) != 0)
        rc = fail(b, TALLY_ENOMEM, "out of memory");
    for (int i = 0; rc == 0 && !main_pass && i < rows; i++)
        order[i] = i;
    int low = 0; /* rows [0, low) are all sent */
    for (int from = 0; rc == 0 && from < rows; from += per) {
        int to = from + per < rows ? from + per : rows;
        for (int k = from; k < to; k++)
            sent[order[k]] = true;
        int was = low;
        while (low < rows && sent[low])
            low++;
        char cursor[24] = "";
        if (main_pass && low > was)
            snprintf(cursor, sizeof(cursor), "%" PRId64, pgx_int(res, low - 1, EVENT_C_SEQ));
        slot *next = &b->s[!b->cur];
        prepare(b, next, res, order + from, to - from, cursor, main_pass ? to - from : 0);
        if (b->ahead)
            pgx_take_input(b->pg);
        rc = finish_apply(b);
        if (rc == 0)
            rc = send_apply(b, next);
        else
            release_events(next);
        if (rc != 0)
            break;
        if (main_pass) {
            b->pr.done += to - from;
            if (low > was)
                b->cursor = pgx_int(res, low - 1, EVENT_C_SEQ);
        }
        report(b, false);
        if (b->o->stop && b->o->stop()) {
            finish_apply(b);
            rc = fail(b, TALLY_ECANCELLED, "stopped (shutting down)");
        } else if (b->o->stop_after && b->pr.done >= b->o->stop_after) {
            finish_apply(b);
            rc = fail(b, TALLY_ECANCELLED, "stopped after %" PRId64 " events (as asked)",
                      b->pr.done);
        }
    }
    free(order);
    free(sent);
    return rc;
}

/* Step 1, or the takeover of a rebuild whose owner's lease expired. */
static int begin(rb *b, const char *tenant)
{
    const char *v[] = { tenant };
    PGresult *res = NULL;
    if (pgx_exec(b->pg, S_KNOWN, 1, v, NULL, NULL, PG_WAIT_MS, &res) != 0)
        return fail(b, TALLY_EUNAVAIL, "PostgreSQL: %s", pgx_errstr(b->pg));
    bool known = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!known)
        return fail(b, TALLY_ENOTFOUND, "PostgreSQL has no tenant \"%s\"", tenant);
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, now_wall_ms());
    /* Listed first: a rebuild begun is always found by the gauges and the runners. */
    redisReply *l = redisCommand(b->rc, "SADD %s %s", REBUILD_REGISTRY_KEY, tenant);
    if (!l || l->type == REDIS_REPLY_ERROR)
        return redis_fail(b, l, "listing the rebuild in " REBUILD_REGISTRY_KEY);
    freeReplyObject(l);
    const char *argv[] = { "FCALL", b->fn_begin, "1", b->key, b->o->owner, now, b->lease };
    redisReply *r = redisCommandArgv(b->rc, 7, argv, NULL);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 8)
        return redis_fail(b, r, "starting the rebuild");
    b->pr.generation = elem_int(r, 0);
    b->pr.resumed = elem_int(r, 1) != 0;
    b->cursor = elem_int(r, 2);
    b->up_to = elem_int(r, 3);
    b->pr.total = elem_int(r, 4);
    b->pr.done = b->done_at_start = elem_int(r, 5);
    bool have_bounds = r->element[3]->type == REDIS_REPLY_STRING && r->element[3]->len > 0;
    freeReplyObject(r);
    if (have_bounds)
        return 0;
    /* After the mark: every event committed before it is at most this seq. */
    if (pgx_exec(b->pg, S_BOUNDS, 1, v, NULL, NULL, PG_WAIT_MS, &res) != 0)
        return fail(b, TALLY_EUNAVAIL, "PostgreSQL: %s", pgx_errstr(b->pg));
    b->up_to = pgx_int(res, 0, 0);
    b->pr.total = pgx_int(res, 0, 1);
    PQclear(res);
    snprintf(now, sizeof(now), "%" PRId64, now_wall_ms());
    char up[24], total[24];
    snprintf(up, sizeof(up), "%" PRId64, b->up_to);
    snprintf(total, sizeof(total), "%" PRId64, b->pr.total);
    const char *s[] = { "FCALL",  b->fn_set,   "1", b->key,  b->o->owner, now,
                        b->lease, "up_to_seq", up,  "total", total };
    r = redisCommandArgv(b->rc, 11, s, NULL);
    if (!r || r->type == REDIS_REPLY_ERROR)
        return redis_fail(b, r, "recording the rebuild's bounds");
    freeReplyObject(r);
    return 0;
}

static int set_fields(rb *b, const char *f1, const char *v1, const char *f2, const char *v2)
{
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, now_wall_ms());
    const char *s[] = {
        "FCALL", b->fn_set, "1", b->key, b->o->owner, now, b->lease, f1, v1, f2, v2
    };
    redisReply *r = redisCommandArgv(b->rc, f2 ? 11 : 9, s, NULL);
    if (!r || r->type == REDIS_REPLY_ERROR)
        return redis_fail(b, r, "recording the rebuild's progress");
    freeReplyObject(r);
    return 0;
}

/*
 * A resumed rebuild's done: the events up to its cursor. The dead rebuilder counted the rows it
 * sent, which in day_order include rows past the cursor; those are read again, and counted
 * again, from the cursor on.
 */
static int resume_done(rb *b, const char *tenant)
{
    char cur[24];
    snprintf(cur, sizeof(cur), "%" PRId64, b->cursor);
    const char *v[] = { tenant, cur };
    PGresult *res = NULL;
    if (pgx_exec(b->pg, S_DONE, 2, v, NULL, NULL, PG_WAIT_MS, &res) != 0)
        return fail(b, TALLY_EUNAVAIL, "PostgreSQL: %s", pgx_errstr(b->pg));
    b->pr.done = pgx_int(res, 0, 0);
    PQclear(res);
    char done[24];
    snprintf(done, sizeof(done), "%" PRId64, b->pr.done);
    return set_fields(b, "done", done, NULL, NULL);
}

/* Gives the lease up (a failure of ours): another rebuilder may take over at once. */
static void release(rb *b)
{
    if (b->in_flight) { /* a call's reply is unread (PostgreSQL failed meanwhile): read it first */
        redisReply *r = NULL;
        if (redisGetReply(b->rc, (void **)&r) == REDIS_OK && r)
            freeReplyObject(r);
        b->in_flight = false;
    }
    char now[24];
    snprintf(now, sizeof(now), "%" PRId64, now_wall_ms() - 1);
    const char *s[] = { "FCALL", b->fn_set, "1", b->key, b->o->owner, now, "0" };
    redisReply *r = redisCommandArgv(b->rc, 7, s, NULL);
    if (r)
        freeReplyObject(r);
}

/* Records the rate, so that query replies can give an ETA. */
static int record_rate(rb *b)
{
    char rate[32];
    snprintf(rate, sizeof(rate), "%.0f", b->pr.rate);
    return set_fields(b, "rate", rate, NULL, NULL);
}

/* Sends the read of the window of the log after seq from (up to up to). */
static int send_window(rb *b, const char *tenant, int64_t from, const char *up)
{
    char f[24], n[16];
    snprintf(f, sizeof(f), "%" PRId64, from);
    snprintf(n, sizeof(n), "%d", b->window);
    const char *v[] = { tenant, f, up, n };
    if (pgx_send(b->pg, S_READ, 4, v, NULL, NULL) != 0)
        return fail(b, TALLY_EUNAVAIL, "PostgreSQL: %s", pgx_errstr(b->pg));
    return 0;
}

/*
 * Step 2: the log up to up_to, from the cursor. The next window is read while this one is
 * applied: its query goes out before the window's first call, and apply_rows takes in what
 * PostgreSQL has sent between calls, so PostgreSQL never waits for room in the socket and
 * its reading overlaps Redis's applying (PostgreSQL was a fifth of the rebuild's time, serial
 * with the rest: bench/README.md, the rebuild benchmark).
 */
static int read_log(rb *b, const char *tenant)
{
    char up[24];
    snprintf(up, sizeof(up), "%" PRId64, b->up_to);
    int64_t last_rate = now_mono_ms();
    int rc = b->cursor < b->up_to ? send_window(b, tenant, b->cursor, up) : 0;
    bool more = rc == 0 && b->cursor < b->up_to;
    while (more) {
        PGresult *res = NULL;
        if (pgx_recv(b->pg, PG_WAIT_MS, &res) != 0)
            return fail(b, TALLY_EUNAVAIL, "PostgreSQL: %s", pgx_errstr(b->pg));
        int rows = PQntuples(res);
        int64_t last = rows ? pgx_int(res, rows - 1, EVENT_C_SEQ) : b->up_to;
        more = rows == b->window && last < b->up_to; /* else nothing is left up to up_to */
        rc = more ? send_window(b, tenant, last, up) : 0;
        b->ahead = more;
        if (rc == 0 && rows)
            rc = apply_rows(b, res, true);
        PQclear(res);
        if (rc != 0)
            return rc; /* a read ahead in flight ends with the connection (rb_free) */
        if (more && now_mono_ms() - last_rate > 1000) {
            if ((rc = finish_apply(b)) != 0 || (rc = record_rate(b)) != 0)
                return rc;
            last_rate = now_mono_ms();
        }
    }
    b->ahead = false;
    rc = finish_apply(b);
    if (rc == 0)
        rc = record_rate(b);
    return rc;
}

/* Step 3: the complaints live events found incomplete, read again, until none is left. */
static int fill_gaps(rb *b, const char *tenant)
{
    char count[16];
    snprintf(count, sizeof(count), "%d", GAP_IDS);
    for (int round = 0;; round++) {
        if (round == GAP_ROUNDS_MAX)
            return fail(b, TALLY_EINTERNAL,
                        "%" PRId64 " complaints stay incomplete after %d reads of their history",
                        b->pr.gaps, round);
        const char *argv[] = { "FCALL", b->fn_gaps, "1", b->key, b->o->owner, count };
        redisReply *r = redisCommandArgv(b->rc, 6, argv, NULL);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1)
            return redis_fail(b, r, "reading the complaints live events found incomplete");
        b->pr.gaps = elem_int(r, 0);
        if (r->elements == 1) {
            freeReplyObject(r);
            return 0;
        }
        if (round == 0) {
            b->pr.phase = "gaps";
            set_fields(b, "phase", "gaps", NULL, NULL);
        }
        /* {id,id,...} as a bigint[] literal; "ref" (the reference events) read apart */
        size_t cap = r->elements * 24 + 4, len = 0;
        bool refs = false;
        char *arr = malloc(cap);
        if (!arr) {
            freeReplyObject(r);
            return fail(b, TALLY_ENOMEM, "out of memory");
        }
        arr[len++] = '{';
        for (size_t i = 1; i < r->elements; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_STRING || strcmp(e->str, "ref") == 0) {
                refs = true;
                continue;
            }
            len += (size_t)snprintf(arr + len, cap - len, "%s%.20s", len > 1 ? "," : "", e->str);
        }
        snprintf(arr + len, cap - len, "}");
        freeReplyObject(r);
        int rc = 0;
        for (int q = 0; q < 2 && rc == 0; q++) {
            if ((q == 0 && len == 1) || (q == 1 && !refs))
                continue;
            const char *v[] = { arr, tenant }, *vr[] = { tenant };
            PGresult *res = NULL;
            if ((q == 0 ? pgx_exec(b->pg, S_HISTORY, 2, v, NULL, NULL, PG_WAIT_MS, &res)
                        : pgx_exec(b->pg, S_REFS, 1, vr, NULL, NULL, PG_WAIT_MS, &res)) != 0) {
                rc = fail(b, TALLY_EUNAVAIL, "PostgreSQL: %s", pgx_errstr(b->pg));
                break;
            }
            rc = apply_rows(b, res, false);
            PQclear(res);
            if (rc == 0)
                rc = finish_apply(b);
        }
        free(arr);
        if (rc != 0)
            return rc;
        report(b, false);
    }
}

/* The rebuild has ended: out of the registry (a failure is left to rebuild_sample). */
static void unlist(rb *b)
{
    redisReply *r = redisCommand(b->rc, "SREM %s %s", REBUILD_REGISTRY_KEY, b->pr.tenant);
    if (r)
        freeReplyObject(r);
}

/* Step 4. 0 when flipped, 1 when live events wait again (back to step 3). */
static int flip(rb *b)
{
    b->pr.phase = "flipping";
    redisReply *r = redisCommand(b->rc, "FCALL %s 1 %s %s", b->fn_flip, b->key, b->o->owner);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "GAPS", 4) == 0) {
        freeReplyObject(r);
        return 1;
    }
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return redis_fail(b, r, "making the new generation current");
    freeReplyObject(r);
    return 0;
}

static void nap_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Escapes the glob characters of s into buf (for SCAN MATCH). */
static void glob_escape(const char *s, char *buf, size_t len)
{
    size_t k = 0;
    for (; *s && k + 2 < len; s++) {
        if (strchr("*?[]\\", *s))
            buf[k++] = '\\';
        buf[k++] = *s;
    }
    buf[k] = '\0';
}

/* Step 5: every generation in {t:T}:gc, UNLINKed a SCAN page at a time. */
static int delete_old(rb *b, const char *tenant)
{
    char gc[160];
    snprintf(gc, sizeof(gc), STREAM_TENANT "gc", tenant);
    redisReply *g = redisCommand(b->rc, "SMEMBERS %s", gc);
    if (!g || g->type != REDIS_REPLY_ARRAY)
        return redis_fail(b, g, "listing old generations");
    b->pr.phase = "deleting";
    redisReply *cur = redisCommand(b->rc, "GET " STREAM_TENANT "gen", tenant);
    if (!cur || (cur->type != REDIS_REPLY_STRING && cur->type != REDIS_REPLY_NIL)) {
        freeReplyObject(g);
        return redis_fail(b, cur, "reading the current generation");
    }
    char current[32];
    snprintf(current, sizeof(current), "%s", cur->type == REDIS_REPLY_STRING ? cur->str : "1");
    freeReplyObject(cur);
    int rc = 0;
    for (size_t i = 0; i < g->elements && rc == 0; i++) {
        if (strcmp(g->element[i]->str, current) == 0) { /* never the one being read */
            redisReply *x = redisCommand(b->rc, "SREM %s %s", gc, current);
            if (x)
                freeReplyObject(x);
            continue;
        }
        char esc[160], match[200], cursor[32] = "0";
        glob_escape(tenant, esc, sizeof(esc));
        snprintf(match, sizeof(match), "{t:%s}:%s:*", esc, g->element[i]->str);
        do {
            redisReply *s =
                redisCommand(b->rc, "SCAN %s MATCH %s COUNT %d", cursor, match, GC_SCAN);
            if (!s || s->type != REDIS_REPLY_ARRAY || s->elements != 2) {
                rc = redis_fail(b, s, "scanning an old generation");
                break;
            }
            snprintf(cursor, sizeof(cursor), "%s", s->element[0]->str);
            redisReply *keys = s->element[1];
            if (keys->elements) {
                size_t n = keys->elements + 1;
                const char **argv = malloc(n * sizeof(*argv));
                size_t *lens = malloc(n * sizeof(*lens));
                if (!argv || !lens) {
                    free(argv);
                    free(lens);
                    freeReplyObject(s);
                    rc = fail(b, TALLY_ENOMEM, "out of memory");
                    break;
                }
                argv[0] = "UNLINK";
                lens[0] = 6;
                for (size_t k = 0; k < keys->elements; k++) {
                    argv[k + 1] = keys->element[k]->str;
                    lens[k + 1] = keys->element[k]->len;
                }
                redisReply *u = redisCommandArgv(b->rc, (int)n, argv, lens);
                free(argv);
                free(lens);
                if (!u || u->type != REDIS_REPLY_INTEGER) {
                    freeReplyObject(s);
                    rc = redis_fail(b, u, "deleting an old generation");
                    break;
                }
                b->pr.deleted += u->integer;
                freeReplyObject(u);
            }
            freeReplyObject(s);
            report(b, false);
        } while (strcmp(cursor, "0") != 0);
        if (rc == 0) {
            redisReply *x = redisCommand(b->rc, "SREM %s %s", gc, g->element[i]->str);
            if (!x || x->type != REDIS_REPLY_INTEGER)
                rc = redis_fail(b, x, "forgetting a deleted generation");
            else
                freeReplyObject(x);
        }
    }
    freeReplyObject(g);
    return rc;
}

static void names(rb *b, const char *tenant)
{
    proj_view_fn(&b->view, "tally_rebuild_begin", b->fn_begin, sizeof(b->fn_begin));
    proj_view_fn(&b->view, "tally_rebuild_set", b->fn_set, sizeof(b->fn_set));
    proj_view_fn(&b->view, "tally_rebuild_apply", b->fn_apply, sizeof(b->fn_apply));
    proj_view_fn(&b->view, "tally_rebuild_apply_merged", b->fn_merged, sizeof(b->fn_merged));
    proj_view_fn(&b->view, "tally_rebuild_gaps", b->fn_gaps, sizeof(b->fn_gaps));
    proj_view_fn(&b->view, "tally_rebuild_flip", b->fn_flip, sizeof(b->fn_flip));
    proj_view_fn(&b->view, "tally_rebuild_abort", b->fn_abort, sizeof(b->fn_abort));
    snprintf(b->key, sizeof(b->key), STREAM_TENANT "rebuild", tenant);
}

static void rb_free(rb *b)
{
    for (int i = 0; i < 2; i++) {
        release_events(&b->s[i]);
        proj_plan_free(b->s[i].plan);
        free(b->s[i].evs);
    }
    free(b->argv);
    free(b->lens);
    pgx_free(b->pg);
    proj_view_free(&b->view);
    free(b);
}

static int rb_new(redisContext *rc, const rebuild_opts *o, const char *tenant, char *err,
                  size_t errlen, rb **out)
{
    rb *b = calloc(1, sizeof(*b));
    if (!b)
        return TALLY_ENOMEM;
    b->rc = rc;
    b->o = o;
    b->batch = o->batch > 0 ? o->batch : REBUILD_BATCH;
    b->window = o->window > 0 ? o->window : REBUILD_WINDOW;
    b->err = err;
    b->errlen = errlen;
    b->pr.tenant = tenant;
    b->pr.phase = "reading";
    b->pr.eta_ms = -1;
    snprintf(b->lease, sizeof(b->lease), "%" PRId64, o->lease_ms > 0 ? o->lease_ms : 15000);
    int rc_ = proj_view_init(&b->view);
    for (int i = 0; i < 2 && rc_ == 0; i++)
        if (!(b->s[i].evs = calloc((size_t)b->batch, sizeof(*b->s[i].evs))))
            rc_ = TALLY_ENOMEM;
    if (rc_ == 0 &&
        !(b->pg = pgx_new(o->pg_dsn, "tally-rebuild", stmts, sizeof(stmts) / sizeof(stmts[0]), 0)))
        rc_ = TALLY_ENOMEM;
    if (rc_ == 0 && pgx_set_tenant(b->pg, tenant) != 0) /* the tenant's rows only */
        rc_ = TALLY_EINVAL;
    if (rc_ != 0) {
        rb_free(b);
        snprintf(err, errlen, "cannot set up the rebuild (%s)", tally_err_str(rc_));
        return rc_;
    }
    names(b, tenant);
    *out = b;
    return 0;
}

int rebuild_tenant(redisContext *redis, const rebuild_opts *o, const char *tenant,
                   rebuild_progress *out, char *err, size_t errlen)
{
    if (!proj_tenant_ok(tenant)) {
        snprintf(err, errlen, "\"%.80s\" is not a valid tenant id", tenant);
        return TALLY_EINVAL;
    }
    rb *b = NULL;
    int rc = rb_new(redis, o, tenant, err, errlen, &b);
    if (rc != 0)
        return rc;
    b->started_mono = b->last_report = now_mono_ms();
    rc = load_view(b);
    if (rc == 0)
        rc = begin(b, tenant);
    if (rc == 0 && b->pr.resumed && b->cursor < b->up_to)
        rc = resume_done(b, tenant);
    if (rc == 0) {
        b->done_at_start = b->pr.done;
        report(b, true);
        rc = read_log(b, tenant);
    }
    while (rc == 0) {
        if ((rc = fill_gaps(b, tenant)) != 0)
            break;
        int f = flip(b);
        if (f <= 0) {
            rc = f;
            break;
        }
    }
    if (rc == 0) {
        report(b, true);
        /* A query that read the old pointer a moment ago may still be reading its keys. */
        nap_ms(GC_GRACE_MS);
        rc = delete_old(b, tenant);
    }
    if (rc == 0)
        unlist(b); /* after the deletion: a deletion cut short is resumed from the registry */
    if (rc == 0) {
        b->pr.phase = "done";
        b->pr.eta_ms = 0;
        report(b, true);
    }
    if (rc != 0 && rc != TALLY_ECANCELLED && rc != TALLY_EPRECOND && rc != TALLY_ENOTFOUND)
        release(b); /* failed, not killed: the same command may resume at once */
    if (out)
        *out = b->pr;
    rb_free(b);
    return rc;
}

int rebuild_abort(redisContext *rc, const char *tenant, char *err, size_t errlen)
{
    if (!proj_tenant_ok(tenant)) {
        snprintf(err, errlen, "\"%.80s\" is not a valid tenant id", tenant);
        return TALLY_EINVAL;
    }
    rebuild_opts o = { .pg_dsn = "", .owner = "abort" };
    rb *b = NULL;
    int r_ = rb_new(rc, &o, tenant, err, errlen, &b);
    if (r_ != 0)
        return r_;
    int ret = load_view(b);
    if (ret == 0) {
        redisReply *r = redisCommand(rc, "FCALL %s 1 %s", b->fn_abort, b->key);
        if (!r || r->type == REDIS_REPLY_ERROR)
            ret = redis_fail(b, r, "aborting the rebuild");
        else {
            ret = r->type == REDIS_REPLY_STRING ? 1 : 0;
            freeReplyObject(r);
        }
    }
    /* Also what an earlier abort or rebuild left to delete. */
    if (ret >= 0 && delete_old(b, tenant) != 0)
        ret = TALLY_EUNAVAIL;
    if (ret >= 0)
        unlist(b);
    rb_free(b);
    return ret;
}

int rebuild_gc(redisContext *rc, const char *tenant, int64_t *deleted, char *err, size_t errlen)
{
    if (!proj_tenant_ok(tenant)) {
        snprintf(err, errlen, "\"%.80s\" is not a valid tenant id", tenant);
        return TALLY_EINVAL;
    }
    rebuild_opts o = { .pg_dsn = "", .owner = "gc" };
    rb *b = NULL;
    int ret = rb_new(rc, &o, tenant, err, errlen, &b);
    if (ret != 0)
        return ret;
    ret = delete_old(b, tenant);
    if (ret == 0)
        unlist(b);
    if (deleted)
        *deleted = b->pr.deleted;
    rb_free(b);
    return ret;
}

int rebuild_tenants(const char *pg_dsn, char ***ids, size_t *n, char *err, size_t errlen)
{
    *ids = NULL;
    *n = 0;
    pgx_conn *pg = pgx_new(pg_dsn, "tally-rebuild", stmts, sizeof(stmts) / sizeof(stmts[0]), 0);
    PGresult *res = NULL;
    if (!pg || pgx_set_tenant(pg, "*") != 0) {
        pgx_free(pg);
        return TALLY_ENOMEM;
    }
    if (pgx_exec(pg, S_TENANTS, 0, NULL, NULL, NULL, PG_WAIT_MS, &res) != 0) {
        snprintf(err, errlen, "PostgreSQL: %s", pgx_errstr(pg));
        pgx_free(pg);
        return TALLY_EUNAVAIL;
    }
    int rows = PQntuples(res);
    char **v = calloc((size_t)rows + 1, sizeof(*v));
    bool oom = !v;
    for (int i = 0; v && i < rows; i++)
        oom |= !(v[i] = strdup(PQgetvalue(res, i, 0)));
    PQclear(res);
    pgx_free(pg);
    if (oom) {
        for (int i = 0; v && i < rows; i++)
            free(v[i]);
        free(v);
        return TALLY_ENOMEM;
    }
    *ids = v;
    *n = (size_t)rows;
    return 0;
}

int rebuild_sample(redisContext *rc, int64_t now_ms, rebuild_summary *out)
{
    redisReply *m = redisCommand(rc, "SMEMBERS %s", REBUILD_REGISTRY_KEY);
    if (!m || m->type != REDIS_REPLY_ARRAY) {
        if (m)
            freeReplyObject(m);
        return TALLY_EUNAVAIL;
    }
    rebuild_summary s = { 0 };
    int rc_ = 0;
    for (size_t i = 0; i < m->elements && rc_ == 0; i++) {
        const char *t = m->element[i]->str;
        redisReply *r =
            redisCommand(rc, "HMGET " STREAM_TENANT "rebuild gen done total rate lease_until", t);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 5) {
            rc_ = TALLY_EUNAVAIL;
        } else if (r->element[0]->type != REDIS_REPLY_STRING) {
            /* ended: forgotten once nothing is left to delete either (rebuild_gc) */
            redisReply *gcn = redisCommand(rc, "SCARD " STREAM_TENANT "gc", t);
            if (gcn && gcn->type == REDIS_REPLY_INTEGER && gcn->integer == 0) {
                redisReply *x = redisCommand(rc, "SREM %s %s", REBUILD_REGISTRY_KEY, t);
                if (x)
                    freeReplyObject(x);
            }
            if (gcn)
                freeReplyObject(gcn);
        } else {
            int64_t done = elem_int(r, 1), total = elem_int(r, 2), rate = elem_int(r, 3);
            s.running++;
            s.stalled += elem_int(r, 4) < now_ms;
            s.done += done;
            s.total += total;
            int64_t eta = rate > 0 && total > done ? (total - done + rate - 1) / rate : 0;
            if (eta > s.eta_s)
                s.eta_s = eta;
        }
        if (r)
            freeReplyObject(r);
    }
    freeReplyObject(m);
    if (rc_ == 0)
        *out = s;
    return rc_;
}
