/*
 * plan: a tenant's run of complaint events merged into one write (plan.h). The counting below
 * follows tally.lua's apply_created, apply_assigned and apply_status line by line; a change to
 * what a view counts changes both (and VIEW_VERSION with PROJ_PLAN_VIEW).
 */
#include "plan.h"

#include "err.h"
#include "hash.h"
#include "ident.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INT     9007199254740992LL /* 2^53, as tally.lua's MAX_INT */
#define MAX_SECONDS 4000000000LL       /* tally.lua's MAX_SECONDS */
#define PLAN_MAX    (1u << 22)         /* counters or complaints in one plan */
#define FIELD_MAX   320 /* a built key, field or detail: ids are at most IDENT_MAX (64) here */

/* A counter: field of hash key (or member of sorted set key), by delta. Strings in the arena. */
typedef struct counter {
    size_t key, field; /* arena offsets of NUL-terminated strings */
    uint64_t hash;
    int64_t delta;
    bool zset;
} counter;

enum { OP_NONE, OP_ADD, OP_REMOVE };

/* A complaint of the run: its versions and its last state in open and od. */
typedef struct complaint {
    int64_t id, first, last;
    int open; /* OP_ADD (score: created) or OP_REMOVE */
    int64_t created;
    int od;        /* OP_ADD (value at od_val) or OP_REMOVE */
    size_t od_val; /* arena offset */
} complaint;

/* An open-addressing index of entries: slots hold entry + 1, 0 is free. */
typedef struct index {
    uint32_t *slot;
    size_t cap; /* a power of two, or 0 */
} index_t;

struct proj_plan {
    char *arena;
    size_t alen, acap;
    counter *ctr;
    size_t nctr, ctrcap;
    complaint *cpl;
    size_t ncpl, cplcap;
    index_t ctr_ix, cpl_ix;
    size_t events;
    int64_t as_of;
    bool broken; /* a failed add: unusable until reset */
};

proj_plan *proj_plan_new(void)
{
    return calloc(1, sizeof(proj_plan));
}

void proj_plan_free(proj_plan *pl)
{
    if (!pl)
        return;
    free(pl->arena);
    free(pl->ctr);
    free(pl->cpl);
    free(pl->ctr_ix.slot);
    free(pl->cpl_ix.slot);
    free(pl);
}

void proj_plan_reset(proj_plan *pl)
{
    pl->alen = pl->nctr = pl->ncpl = pl->events = 0;
    pl->as_of = 0;
    pl->broken = false;
    if (pl->ctr_ix.slot)
        memset(pl->ctr_ix.slot, 0, pl->ctr_ix.cap * sizeof(uint32_t));
    if (pl->cpl_ix.slot)
        memset(pl->cpl_ix.slot, 0, pl->cpl_ix.cap * sizeof(uint32_t));
}

size_t proj_plan_events(const proj_plan *pl)
{
    return pl->events;
}

static bool grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    void *w = realloc(*v, n * size);
    if (!w)
        return false;
    *v = w;
    *cap = n;
    return true;
}

/* Copies s (n bytes) into the arena, NUL-terminated: its offset, or SIZE_MAX. */
static size_t keep(proj_plan *pl, const char *s, size_t n)
{
    if (!grow((void **)&pl->arena, &pl->acap, pl->alen + n + 1, 1))
        return SIZE_MAX;
    size_t at = pl->alen;
    memcpy(pl->arena + at, s, n);
    pl->arena[at + n] = '\0';
    pl->alen += n + 1;
    return at;
}

/* The slot of the index where hash h's entry is or would go; eq says whether entry i is it. */
static uint32_t *probe(index_t *ix, uint64_t h, bool (*eq)(const proj_plan *, size_t, const void *),
                       const proj_plan *pl, const void *want)
{
    size_t mask = ix->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask)
        if (!ix->slot[i] || eq(pl, ix->slot[i] - 1, want))
            return &ix->slot[i];
}

/* Makes room for one more entry (n now) in ix: rehashes at half full, hash_of giving the hash
   of entry e. */
static bool index_room(index_t *ix, size_t n, uint64_t (*hash_of)(const proj_plan *, size_t),
                       const proj_plan *pl)
{
    if ((n + 1) * 2 <= ix->cap)
        return true;
    size_t cap = ix->cap ? ix->cap * 2 : 1024;
    uint32_t *slot = calloc(cap, sizeof(*slot));
    if (!slot)
        return false;
    for (size_t e = 0; e < n; e++) {
        size_t i = (size_t)hash_of(pl, e) & (cap - 1);
        while (slot[i])
            i = (i + 1) & (cap - 1);
        slot[i] = (uint32_t)e + 1;
    }
    free(ix->slot);
    ix->slot = slot;
    ix->cap = cap;
    return true;
}

typedef struct ctr_want {
    const char *key, *field;
    bool zset;
} ctr_want;

static uint64_t ctr_hash(const proj_plan *pl, size_t e)
{
    return pl->ctr[e].hash;
}

static bool ctr_eq(const proj_plan *pl, size_t e, const void *w)
{
    const ctr_want *want = w;
    const counter *c = &pl->ctr[e];
    return c->zset == want->zset && strcmp(pl->arena + c->key, want->key) == 0 &&
           strcmp(pl->arena + c->field, want->field) == 0;
}

/* Adds by to field of key (a hash, or a sorted set's member when zset). */
static bool add(proj_plan *pl, bool zset, const char *key, const char *field, int64_t by)
{
    size_t kl = strlen(key), fl = strlen(field);
    uint64_t h = hash_fnv1a(field, fl, hash_fnv1a(key, kl + 1, zset));
    ctr_want want = { key, field, zset };
    if (pl->nctr >= PLAN_MAX || !index_room(&pl->ctr_ix, pl->nctr, ctr_hash, pl))
        return false;
    uint32_t *s = probe(&pl->ctr_ix, h, ctr_eq, pl, &want);
    if (*s) {
        pl->ctr[*s - 1].delta += by;
        return true;
    }
    if (!grow((void **)&pl->ctr, &pl->ctrcap, pl->nctr + 1, sizeof(counter)))
        return false;
    size_t k = keep(pl, key, kl), f = keep(pl, field, fl);
    if (k == SIZE_MAX || f == SIZE_MAX)
        return false;
    pl->ctr[pl->nctr] = (counter){ .key = k, .field = f, .hash = h, .delta = by, .zset = zset };
    *s = (uint32_t)++pl->nctr;
    return true;
}

/*
 * The NULL-terminated strings after out, joined into out (FIELD_MAX bytes: the ids in them are
 * at most IDENT_MAX, proj_plan_add, so nothing is cut). snprintf was a third of the plan's time.
 */
static const char *join(char *out, ...)
{
    va_list ap;
    size_t n = 0;
    va_start(ap, out);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) {
        size_t l = strlen(s);
        if (n + l >= FIELD_MAX)
            l = FIELD_MAX - 1 - n;
        memcpy(out + n, s, l);
        n += l;
    }
    va_end(ap);
    out[n] = '\0';
    return out;
}

/* The counters of one group set: all, by category, by priority, by both (tally.lua's add4). */
static bool add4(proj_plan *pl, const char *key, const char *prefix, const char *k, const char *p,
                 int64_t by)
{
    char f[3][FIELD_MAX];
    join(f[0], prefix, ":k:", k, NULL);
    join(f[1], prefix, ":p:", p, NULL);
    join(f[2], prefix, ":kp:", k, ":", p, NULL);
    return add(pl, false, key, prefix, by) && add(pl, false, key, f[0], by) &&
           add(pl, false, key, f[1], by) && add(pl, false, key, f[2], by);
}

static uint64_t id_hash(int64_t id)
{
    return (uint64_t)id * 0x9e3779b97f4a7c15ULL;
}

static uint64_t cpl_hash(const proj_plan *pl, size_t e)
{
    return id_hash(pl->cpl[e].id);
}

static bool cpl_eq(const proj_plan *pl, size_t e, const void *w)
{
    return pl->cpl[e].id == *(const int64_t *)w;
}

/* The complaint's entry, created when new (versions 0): NULL when memory ran out. */
static complaint *complaint_of(proj_plan *pl, int64_t id)
{
    if (pl->ncpl >= PLAN_MAX || !index_room(&pl->cpl_ix, pl->ncpl, cpl_hash, pl))
        return NULL;
    uint32_t *s = probe(&pl->cpl_ix, id_hash(id), cpl_eq, pl, &id);
    if (*s)
        return &pl->cpl[*s - 1];
    if (!grow((void **)&pl->cpl, &pl->cplcap, pl->ncpl + 1, sizeof(complaint)))
        return NULL;
    pl->cpl[pl->ncpl] = (complaint){ .id = id };
    *s = (uint32_t)++pl->ncpl;
    return &pl->cpl[*s - 1];
}

/* A decimal integer (digits only) within [lo, hi], as tally.lua's int_in accepts it. */
static bool int_in(const proj_event *ev, int f, int64_t lo, int64_t hi, int64_t *out)
{
    const char *s = ev->argv[f];
    size_t n = ev->argvlen[f];
    int64_t v = 0;
    if (n == 0 || n > 18 || (s[0] == '0' && n > 1))
        return false; /* only the canonical form: tally.lua compares some fields as text */
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return v >= lo && v <= hi;
}

static bool good_day(const proj_event *ev)
{
    const char *d = ev->argv[PF_DAY];
    if (ev->argvlen[PF_DAY] != 10 || d[4] != '-' || d[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (d[i] < '0' || d[i] > '9'))
            return false;
    return true;
}

static bool is_open(int64_t status)
{
    return status == 1 || status == 2;
}

/* The overview's detail of an open complaint: status|priority|category|agent. */
static bool set_detail(proj_plan *pl, complaint *c, const proj_event *ev)
{
    char v[FIELD_MAX];
    join(v, ev->argv[PF_TO], "|", ev->argv[PF_PRIO], "|", ev->argv[PF_CAT], "|", ev->argv[PF_AGENT],
         NULL);
    size_t at = keep(pl, v, strlen(v));
    if (at == SIZE_MAX)
        return false;
    c->od = OP_ADD;
    c->od_val = at;
    return true;
}

static bool plan_created(proj_plan *pl, complaint *c, const proj_event *ev, const char *month,
                         const char *dd, int64_t to, int64_t created)
{
    const char *k = ev->argv[PF_CAT], *p = ev->argv[PF_PRIO], *agent = ev->argv[PF_AGENT];
    char d[FIELD_MAX], kc[FIELD_MAX], ddc[FIELD_MAX];
    join(d, "d:", month, NULL);
    join(kc, "kc:", month, NULL);
    join(ddc, dd, ":c", NULL);
    if (!add4(pl, d, ddc, k, p, 1) || !add(pl, true, kc, k, 1) ||
        !add(pl, false, "st", ev->argv[PF_TO], 1))
        return false;
    if (is_open(to)) {
        c->open = OP_ADD;
        c->created = created;
        if (!set_detail(pl, c, ev))
            return false;
        if (agent[0] && !add(pl, false, "ao", agent, 1))
            return false;
    }
    return true;
}

static bool plan_assigned(proj_plan *pl, complaint *c, const proj_event *ev, int64_t to)
{
    if (!is_open(to))
        return true; /* a resolved complaint's assignee counts nowhere "now" */
    if (ev->argv[PF_PREV][0] && !add(pl, false, "ao", ev->argv[PF_PREV], -1))
        return false;
    if (ev->argv[PF_AGENT][0] && !add(pl, false, "ao", ev->argv[PF_AGENT], 1))
        return false;
    return set_detail(pl, c, ev);
}

/* A resolution, counted on the day it happened. */
static bool plan_resolved(proj_plan *pl, const proj_event *ev, const char *month, const char *dd,
                          int64_t secs)
{
    const char *day = ev->argv[PF_DAY], *k = ev->argv[PF_CAT], *p = ev->argv[PF_PRIO];
    const char *agent = ev->argv[PF_AGENT], *bk = ev->argv[PF_BUCKET];
    char d[FIELD_MAX], r[FIELD_MAX], s[FIELD_MAX], key[FIELD_MAX], f[FIELD_MAX], kp[FIELD_MAX];
    join(d, "d:", month, NULL);
    join(r, dd, ":r", NULL);
    join(s, dd, ":s", NULL);
    join(kp, k, ":", p, NULL);
    bool ok = add4(pl, d, r, k, p, 1) && add4(pl, d, s, k, p, secs);
    /* Histograms: by day and by month, one key per grouping. */
    join(key, "hd:", day, ":a", NULL);
    ok = ok && add(pl, false, key, bk, 1);
    const char *groups[3][2] = { { "k", k }, { "p", p }, { "kp", kp } };
    for (int g = 0; g < 3 && ok; g++) {
        join(key, "hd:", day, ":", groups[g][0], NULL);
        ok = add(pl, false, key, join(f, groups[g][1], ":", bk, NULL), 1);
    }
    join(key, "hm:", month, ":a", NULL);
    ok = ok && add(pl, false, key, bk, 1) && add(pl, false, key, "n", 1) &&
         add(pl, false, key, "s", secs);
    for (int g = 0; g < 3 && ok; g++) {
        join(key, "hm:", month, ":", groups[g][0], NULL);
        ok = add(pl, false, key, join(f, groups[g][1], ":", bk, NULL), 1) &&
             add(pl, false, key, join(f, groups[g][1], ":n", NULL), 1) &&
             add(pl, false, key, join(f, groups[g][1], ":s", NULL), secs);
    }
    if (ok && agent[0]) {
        char n[FIELD_MAX], sf[FIELD_MAX];
        join(n, agent, ":n", NULL);
        join(sf, agent, ":s", NULL);
        join(key, "ad:", day, NULL);
        ok = add(pl, false, key, n, 1) && add(pl, false, key, sf, secs);
        join(key, "ad:", month, NULL);
        ok = ok && add(pl, false, key, n, 1) && add(pl, false, key, sf, secs);
        ok = ok && add(pl, true, join(key, "lb:", month, NULL), agent, 1);
    }
    return ok;
}

static bool plan_status(proj_plan *pl, complaint *c, const proj_event *ev, const char *month,
                        const char *dd, int64_t from, int64_t to, int64_t created, int64_t secs)
{
    const char *agent = ev->argv[PF_AGENT];
    if (!add(pl, false, "st", ev->argv[PF_FROM], -1) || !add(pl, false, "st", ev->argv[PF_TO], 1))
        return false;
    bool was = is_open(from), now = is_open(to);
    if (was && !now) {
        c->open = OP_REMOVE;
        c->od = OP_REMOVE;
        if (agent[0] && !add(pl, false, "ao", agent, -1))
            return false;
    } else if (now) {
        if (!was) { /* a reopen */
            c->open = OP_ADD;
            c->created = created;
            if (agent[0] && !add(pl, false, "ao", agent, 1))
                return false;
        }
        if (!set_detail(pl, c, ev))
            return false;
    }
    return to != 3 || plan_resolved(pl, ev, month, dd, secs);
}

bool proj_plan_add(proj_plan *pl, const proj_event *ev)
{
    int64_t type, id, version, rec, created, prio, to, from = 0, secs = 0, bucket;
    if (pl->broken)
        return false;
    pl->broken = true; /* until this event is in */
    /* tally.lua's valid(): what it would refuse goes the per-event way, to be refused there. */
    if (!int_in(ev, PF_TYPE, 1, 3, &type) || !int_in(ev, PF_ID, 1, MAX_INT, &id) ||
        !int_in(ev, PF_VERSION, 1, MAX_INT, &version) ||
        !int_in(ev, PF_RECORDED, 0, MAX_INT, &rec) ||
        !int_in(ev, PF_CREATED, 0, MAX_INT, &created) || !int_in(ev, PF_PRIO, 1, 4, &prio) ||
        !int_in(ev, PF_TO, 1, 4, &to) || !good_day(ev) || !ev->argv[PF_CAT][0])
        return false;
    if (type == 3 &&
        (!int_in(ev, PF_FROM, 1, 4, &from) || !int_in(ev, PF_SECS, 0, MAX_SECONDS, &secs) ||
         !int_in(ev, PF_BUCKET, 0, 10000, &bucket)))
        return false;
    if (ev->argvlen[PF_CAT] > IDENT_MAX || ev->argvlen[PF_AGENT] > IDENT_MAX ||
        ev->argvlen[PF_PREV] > IDENT_MAX)
        return false; /* longer than any id: the per-event path decides */
    complaint *c = complaint_of(pl, id);
    if (!c)
        return false;
    if (c->last && version != c->last + 1)
        return false; /* a duplicate or a gap within the run: the per-event path sorts it out */
    if (!c->last)
        c->first = version;
    c->last = version;
    char month[8], dd[3]; /* of the local day YYYY-MM-DD */
    memcpy(month, ev->argv[PF_DAY], 7);
    month[7] = '\0';
    memcpy(dd, ev->argv[PF_DAY] + 8, 2);
    dd[2] = '\0';
    bool ok = type == 1   ? plan_created(pl, c, ev, month, dd, to, created)
              : type == 2 ? plan_assigned(pl, c, ev, to)
                          : plan_status(pl, c, ev, month, dd, from, to, created, secs);
    if (!ok)
        return false;
    pl->events++;
    if (rec > pl->as_of)
        pl->as_of = rec;
    pl->broken = false;
    return true;
}

/* A counter in the order it is sent: by kind, then key, so each key's fields are together. */
typedef struct ord {
    const char *key;
    const counter *c;
} ord;

static int by_key(const void *a, const void *b)
{
    const ord *x = a, *y = b;
    if (x->c->zset != y->c->zset)
        return x->c->zset - y->c->zset;
    return strcmp(x->key, y->key);
}

/* The argument list being built: argv/lens point into the plan's arena or into num. */
typedef struct args {
    const char **argv;
    size_t *lens;
    char (*num)[24];
    size_t n;
} args;

static void arg(args *a, const char *s)
{
    a->argv[a->n] = s;
    a->lens[a->n] = strlen(s);
    a->n++;
}

static void arg_int(args *a, int64_t v)
{
    a->argv[a->n] = a->num[a->n];
    a->lens[a->n] = proj_i64(a->num[a->n], v);
    a->n++;
}

int proj_plan_append(const proj_plan *pl, redisContext *c, const char *const *head, size_t nhead,
                     const char *now)
{
    size_t nadd = 0, nrem = 0, nset = 0, ndel = 0, nfields = 0, nkeys = 0;
    for (size_t i = 0; i < pl->ncpl; i++) {
        nadd += pl->cpl[i].open == OP_ADD;
        nrem += pl->cpl[i].open == OP_REMOVE;
        nset += pl->cpl[i].od == OP_ADD;
        ndel += pl->cpl[i].od == OP_REMOVE;
    }
    /* The counters with a delta, sorted (qsort needs no state: a rebuild runs on a thread of
       its own beside the consume loop). */
    ord *order = malloc((pl->nctr ? pl->nctr : 1) * sizeof(*order));
    if (!order)
        return TALLY_ENOMEM;
    for (size_t i = 0; i < pl->nctr; i++)
        if (pl->ctr[i].delta)
            order[nfields++] = (ord){ pl->arena + pl->ctr[i].key, &pl->ctr[i] };
    qsort(order, nfields, sizeof(*order), by_key);
    for (size_t i = 0; i < nfields; i++)
        nkeys += i == 0 || by_key(&order[i - 1], &order[i]) != 0;
    /* The head, view, now, events, as_of and 6 counts, 3 per complaint, 1 or 2 per open/od
       entry, 3 per key, 2 per field. */
    size_t cap =
        nhead + 10 + 3 * pl->ncpl + 2 * (nadd + nset) + nrem + ndel + 3 * nkeys + 2 * nfields;
    args a = { malloc(cap * sizeof(*a.argv)), malloc(cap * sizeof(*a.lens)),
               malloc(cap * sizeof(*a.num)), 0 };
    int rc = 0;
    if (!a.argv || !a.lens || !a.num) {
        rc = TALLY_ENOMEM;
        goto out_free;
    }
    for (size_t i = 0; i < nhead; i++)
        arg(&a, head[i]);
    arg_int(&a, PROJ_PLAN_VIEW);
    arg(&a, now);
    arg_int(&a, (int64_t)pl->events);
    arg_int(&a, pl->as_of);
    arg_int(&a, (int64_t)pl->ncpl);
    for (size_t i = 0; i < pl->ncpl; i++) {
        arg_int(&a, pl->cpl[i].id);
        arg_int(&a, pl->cpl[i].first - 1);
        arg_int(&a, pl->cpl[i].last);
    }
    arg_int(&a, (int64_t)nadd);
    for (size_t i = 0; i < pl->ncpl; i++)
        if (pl->cpl[i].open == OP_ADD) {
            arg_int(&a, pl->cpl[i].created);
            arg_int(&a, pl->cpl[i].id);
        }
    arg_int(&a, (int64_t)nrem);
    for (size_t i = 0; i < pl->ncpl; i++)
        if (pl->cpl[i].open == OP_REMOVE)
            arg_int(&a, pl->cpl[i].id);
    arg_int(&a, (int64_t)nset);
    for (size_t i = 0; i < pl->ncpl; i++)
        if (pl->cpl[i].od == OP_ADD) {
            arg_int(&a, pl->cpl[i].id);
            arg(&a, pl->arena + pl->cpl[i].od_val);
        }
    arg_int(&a, (int64_t)ndel);
    for (size_t i = 0; i < pl->ncpl; i++)
        if (pl->cpl[i].od == OP_REMOVE)
            arg_int(&a, pl->cpl[i].id);
    /* Per key: kind ("h" a hash, "z" a sorted set), the key under the generation, the count of
       fields, the fields, then their deltas (so the function hands the fields to HMGET as
       they are). Fields whose deltas summed to 0 are left out. */
    arg_int(&a, (int64_t)nkeys);
    for (size_t i = 0, j; i < nfields; i = j) {
        for (j = i + 1; j < nfields && by_key(&order[j - 1], &order[j]) == 0; j++)
            ;
        arg(&a, order[i].c->zset ? "z" : "h");
        arg(&a, order[i].key);
        arg_int(&a, (int64_t)(j - i));
        for (size_t k = i; k < j; k++)
            arg(&a, pl->arena + order[k].c->field);
        for (size_t k = i; k < j; k++)
            arg_int(&a, order[k].c->delta);
    }
    if (redisAppendCommandArgv(c, (int)a.n, a.argv, a.lens) != REDIS_OK)
        rc = TALLY_EUNAVAIL;
out_free:
    free(a.argv);
    free(a.lens);
    free(a.num);
    free(order);
    return rc;
}
