/*
 * verify_model: the expected read model of one tenant, folded from facts, and the comparison
 * of one key with its Redis reply (verify_int.h). Pure: no I/O.
 */
#include "stream.h"
#include "verify_int.h"

#include "civil.h"
#include "err.h"
#include "hist.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VM_MAX_ENTRIES (16u << 20) /* a hard cap: about 2 GB of expectations is a bug */

static uint64_t fnv(uint32_t key, const char *s)
{
    uint64_t h = 1469598103934665603ULL ^ key;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static int add_key(verify_model *m, const char *prefix, const char *suffix, const char *view,
                   int kind)
{
    vm_key *k = &m->keys[m->nkeys];
    size_t len = strlen(prefix) + strlen(suffix) + 1;
    k->name = malloc(len);
    if (!k->name)
        return TALLY_ENOMEM;
    snprintf(k->name, len, "%s%s", prefix, suffix);
    k->view = view;
    k->kind = kind;
    k->head = -1;
    m->nkeys++;
    return 0;
}

int vm_init(verify_model *m, const char *tenant, const char *gen, int64_t first, int64_t last)
{
    static const struct {
        const char *suffix, *view;
        int kind;
    } fixed[VM_FIXED] = {
        [VM_ST] = { "st", "st", VK_COUNT_HASH },
        [VM_OPEN] = { "open", "open", VK_SCORE_ZSET },
        [VM_OD] = { "od", "od", VK_STR_HASH },
        [VM_AO] = { "ao", "ao", VK_COUNT_HASH },
        [VM_TENANT] = { "tenant", "tenant", VK_STR_HASH },
        [VM_CATS] = { "cats", "cats", VK_STR_HASH },
        [VM_AGENTS] = { "agents", "agents", VK_STR_HASH },
    };
    char prefix[160], suffix[48];
    int y, mo, d, y2, mo2;
    memset(m, 0, sizeof(*m));
    if (last < first || last - first > 2 * VERIFY_MAX_DAYS + 62 || strlen(tenant) >= 72)
        return TALLY_EINVAL;
    snprintf(m->tenant, sizeof(m->tenant), "%s", tenant);
    snprintf(prefix, sizeof(prefix), STREAM_TENANT "%s:", tenant, gen);
    m->first = first;
    m->last = last;
    civil_date(first, &y, &mo, &d);
    civil_date(last, &y2, &mo2, &d);
    m->first_month = y * 12 + mo - 1;
    m->nmonths = y2 * 12 + mo2 - 1 - m->first_month + 1;
    m->ndays = (int)(last - first + 1);
    size_t nkeys = VM_FIXED + (size_t)m->nmonths * VM_PER_MONTH + (size_t)m->ndays * VM_PER_DAY;
    m->keys = calloc(nkeys, sizeof(*m->keys));
    m->nslots = 1024;
    m->slots = calloc(m->nslots, sizeof(*m->slots));
    if (!m->keys || !m->slots)
        goto out_nomem;
    for (int i = 0; i < VM_FIXED; i++)
        if (add_key(m, prefix, fixed[i].suffix, fixed[i].view, fixed[i].kind))
            goto out_nomem;
    for (int i = 0; i < m->nmonths; i++) {
        static const struct {
            const char *fmt, *view;
            int kind;
        } per[VM_PER_MONTH] = {
            [VM_M_D] = { "d:%04d-%02d", "d", VK_COUNT_HASH },
            [VM_M_KC] = { "kc:%04d-%02d", "kc", VK_COUNT_ZSET },
            [VM_M_LB] = { "lb:%04d-%02d", "lb", VK_COUNT_ZSET },
            [VM_M_HMA] = { "hm:%04d-%02d:a", "hm", VK_COUNT_HASH },
            [VM_M_HMK] = { "hm:%04d-%02d:k", "hm", VK_COUNT_HASH },
            [VM_M_HMP] = { "hm:%04d-%02d:p", "hm", VK_COUNT_HASH },
            [VM_M_HMKP] = { "hm:%04d-%02d:kp", "hm", VK_COUNT_HASH },
            [VM_M_AD] = { "ad:%04d-%02d", "ad", VK_COUNT_HASH },
        };
        int ym = m->first_month + i;
        for (int j = 0; j < VM_PER_MONTH; j++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
            snprintf(suffix, sizeof(suffix), per[j].fmt, ym / 12, ym % 12 + 1);
#pragma GCC diagnostic pop
            if (add_key(m, prefix, suffix, per[j].view, per[j].kind))
                goto out_nomem;
        }
    }
    for (int i = 0; i < m->ndays; i++) {
        static const char *const sfx[VM_PER_DAY] = { ":a", ":k", ":p", ":kp", "" };
        char day[CIVIL_DAY_LEN];
        civil_format(first + i, day);
        for (int j = 0; j < VM_PER_DAY; j++) {
            snprintf(suffix, sizeof(suffix), "%s:%s%s", j == VM_D_AD ? "ad" : "hd", day, sfx[j]);
            if (add_key(m, prefix, suffix, j == VM_D_AD ? "ad" : "hd", VK_COUNT_HASH))
                goto out_nomem;
        }
    }
    return 0;
out_nomem:
    vm_release(m);
    return TALLY_ENOMEM;
}

void vm_release(verify_model *m)
{
    for (size_t i = 0; i < m->nkeys; i++)
        free(m->keys[i].name);
    for (size_t i = 0; i < m->ne; i++) {
        free(m->e[i].field);
        free(m->e[i].s);
    }
    free(m->keys);
    free(m->e);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

long vm_find_key(const verify_model *m, const char *name)
{
    for (size_t i = 0; i < m->nkeys; i++)
        if (strcmp(m->keys[i].name, name) == 0)
            return (long)i;
    return -1;
}

static int grow_slots(verify_model *m)
{
    size_t n = m->nslots * 2;
    uint32_t *s = calloc(n, sizeof(*s));
    if (!s)
        return TALLY_ENOMEM;
    for (size_t i = 0; i < m->ne; i++) {
        size_t j = fnv(m->e[i].key, m->e[i].field) & (n - 1);
        while (s[j])
            j = (j + 1) & (n - 1);
        s[j] = (uint32_t)i + 1;
    }
    free(m->slots);
    m->slots = s;
    m->nslots = n;
    return 0;
}

/* The entry of (key, field), created (n = 0, s = NULL) when create; NULL when absent or OOM. */
static vm_entry *entry(verify_model *m, uint32_t key, const char *field, bool create)
{
    if (m->err)
        return NULL;
    size_t j = fnv(key, field) & (m->nslots - 1);
    for (; m->slots[j]; j = (j + 1) & (m->nslots - 1)) {
        vm_entry *e = &m->e[m->slots[j] - 1];
        if (e->key == key && strcmp(e->field, field) == 0)
            return e;
    }
    if (!create)
        return NULL;
    if (m->ne >= VM_MAX_ENTRIES)
        goto out_nomem;
    if (m->ne == m->cape) {
        size_t cap = m->cape ? m->cape * 2 : 1024;
        vm_entry *v = realloc(m->e, cap * sizeof(*v));
        if (!v)
            goto out_nomem;
        m->e = v;
        m->cape = cap;
    }
    vm_entry *e = &m->e[m->ne];
    *e = (vm_entry){ .key = key, .field = strdup(field), .next = m->keys[key].head };
    if (!e->field)
        goto out_nomem;
    m->keys[key].head = (int32_t)m->ne;
    m->slots[j] = (uint32_t)++m->ne;
    if (m->ne * 2 > m->nslots && grow_slots(m))
        goto out_nomem;
    return &m->e[m->ne - 1];
out_nomem:
    m->err = TALLY_ENOMEM;
    return NULL;
}

static void count(verify_model *m, size_t key, const char *field, int64_t by)
{
    vm_entry *e = entry(m, (uint32_t)key, field, true);
    if (e)
        e->n += by;
}

static void set_str(verify_model *m, size_t key, const char *field, const char *value)
{
    vm_entry *e = entry(m, (uint32_t)key, field, true);
    if (!e)
        return;
    free(e->s);
    if (!(e->s = strdup(value)))
        m->err = TALLY_ENOMEM;
}

static size_t month_key(const verify_model *m, int64_t day, int j)
{
    int y, mo, d;
    civil_date(day, &y, &mo, &d);
    return VM_FIXED + (size_t)(y * 12 + mo - 1 - m->first_month) * VM_PER_MONTH + (size_t)j;
}

static size_t day_key(const verify_model *m, int64_t day, int j)
{
    return VM_FIXED + (size_t)m->nmonths * VM_PER_MONTH + (size_t)(day - m->first) * VM_PER_DAY +
           (size_t)j;
}

/* DD<kind>, DD<kind>:k:<k>, DD<kind>:p:<p>, DD<kind>:kp:<k>:<p> of d:M, by `by`. */
static void count4(verify_model *m, size_t key, int dd, char kind, const char *k, int p, int64_t by)
{
    char f[160];
    snprintf(f, sizeof(f), "%02d:%c", dd, kind);
    count(m, key, f, by);
    snprintf(f, sizeof(f), "%02d:%c:k:%s", dd, kind, k);
    count(m, key, f, by);
    snprintf(f, sizeof(f), "%02d:%c:p:%d", dd, kind, p);
    count(m, key, f, by);
    snprintf(f, sizeof(f), "%02d:%c:kp:%s:%d", dd, kind, k, p);
    count(m, key, f, by);
}

int vm_complaint(verify_model *m, const verify_complaint *c)
{
    char f[160];
    snprintf(f, sizeof(f), "%d", c->status);
    count(m, VM_ST, f, 1);
    if (c->status == 1 || c->status == 2) {
        char id[24];
        snprintf(id, sizeof(id), "%" PRId64, c->id);
        vm_entry *e = entry(m, VM_OPEN, id, true);
        if (e)
            e->n = c->created_ms;
        snprintf(f, sizeof(f), "%d|%d|%s|%s", c->status, c->priority, c->category, c->agent);
        set_str(m, VM_OD, id, f);
        if (c->agent[0])
            count(m, VM_AO, c->agent, 1);
    }
    if (c->day >= m->first && c->day <= m->last) {
        int y, mo, dd;
        civil_date(c->day, &y, &mo, &dd);
        count4(m, month_key(m, c->day, VM_M_D), dd, 'c', c->category, c->priority, 1);
        count(m, month_key(m, c->day, VM_M_KC), c->category, 1);
    }
    return m->err;
}

int vm_resolution(verify_model *m, const verify_resolution *r)
{
    if (r->day < m->first || r->day > m->last)
        return m->err;
    char f[480];
    int y, mo, dd, b = hist_bucket(r->secs);
    civil_date(r->day, &y, &mo, &dd);
    size_t d = month_key(m, r->day, VM_M_D);
    count4(m, d, dd, 'r', r->category, r->priority, 1);
    count4(m, d, dd, 's', r->category, r->priority, r->secs);
    /* by day: <b>, <k>:<b>, <p>:<b>, <k>:<p>:<b> */
    snprintf(f, sizeof(f), "%d", b);
    count(m, day_key(m, r->day, VM_D_HDA), f, 1);
    snprintf(f, sizeof(f), "%s:%d", r->category, b);
    count(m, day_key(m, r->day, VM_D_HDK), f, 1);
    snprintf(f, sizeof(f), "%d:%d", r->priority, b);
    count(m, day_key(m, r->day, VM_D_HDP), f, 1);
    snprintf(f, sizeof(f), "%s:%d:%d", r->category, r->priority, b);
    count(m, day_key(m, r->day, VM_D_HDKP), f, 1);
    /* by month: <g>:<b>, <g>:n, <g>:s (the all-group without the "<g>:") */
    size_t hma = month_key(m, r->day, VM_M_HMA);
    snprintf(f, sizeof(f), "%d", b);
    count(m, hma, f, 1);
    count(m, hma, "n", 1);
    count(m, hma, "s", r->secs);
    char g[3][140];
    snprintf(g[0], sizeof(g[0]), "%s", r->category);
    snprintf(g[1], sizeof(g[1]), "%d", r->priority);
    snprintf(g[2], sizeof(g[2]), "%s:%d", r->category, r->priority);
    for (int i = 0; i < 3; i++) {
        size_t key = month_key(m, r->day, VM_M_HMK + i);
        snprintf(f, sizeof(f), "%s:%d", g[i], b);
        count(m, key, f, 1);
        snprintf(f, sizeof(f), "%s:n", g[i]);
        count(m, key, f, 1);
        snprintf(f, sizeof(f), "%s:s", g[i]);
        count(m, key, f, r->secs);
    }
    if (r->agent[0]) {
        size_t keys[2] = { day_key(m, r->day, VM_D_AD), month_key(m, r->day, VM_M_AD) };
        for (int i = 0; i < 2; i++) {
            snprintf(f, sizeof(f), "%s:n", r->agent);
            count(m, keys[i], f, 1);
            snprintf(f, sizeof(f), "%s:s", r->agent);
            count(m, keys[i], f, r->secs);
        }
        count(m, month_key(m, r->day, VM_M_LB), r->agent, 1);
    }
    return m->err;
}

int vm_ref(verify_model *m, int key, const char *field, const char *value)
{
    if (key != VM_TENANT && key != VM_CATS && key != VM_AGENTS)
        return TALLY_EINVAL;
    set_str(m, (size_t)key, field, value);
    return m->err;
}

/* ---- comparison ---------------------------------------------------------------------------- */

static bool parse_int(const char *s, int64_t *out)
{
    char *end;
    if (!s || !*s)
        return false;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return false;
    *out = v;
    return true;
}

/* A zset score as an integer (scores the read model writes are integers). */
static bool parse_score(const char *s, int64_t *out)
{
    char *end;
    if (!s || !*s)
        return false;
    double v = strtod(s, &end);
    if (*end || !isfinite(v) || v != floor(v) || fabs(v) > 9007199254740992.0)
        return false;
    *out = (int64_t)v;
    return true;
}

static void report(verify_model *m, const vm_key *k, const char *field, const char *expected,
                   const char *found, verify_diff_fn fn, void *arg)
{
    verify_diff d = { .tenant = m->tenant,
                      .view = k->view,
                      .key = k->name,
                      .field = field,
                      .expected = expected,
                      .found = found };
    if (fn)
        fn(&d, arg);
}

/* Compares one found field (found NULL = absent) with its expectation e (NULL = none). */
static int64_t compare_field(verify_model *m, const vm_key *k, const char *field, const vm_entry *e,
                             const char *found, verify_diff_fn fn, void *arg)
{
    char want[32];
    int64_t v = 0;
    switch (k->kind) {
    case VK_COUNT_HASH:
    case VK_COUNT_ZSET: {
        int64_t n = e ? e->n : 0;
        bool ok = found ? (k->kind == VK_COUNT_HASH ? parse_int(found, &v) : parse_score(found, &v))
                        : true;
        if (ok && v == n)
            return 0;
        snprintf(want, sizeof(want), "%" PRId64, n);
        report(m, k, field, want, found, fn, arg);
        return 1;
    }
    case VK_SCORE_ZSET:
        if (e && found && parse_score(found, &v) && v == e->n)
            return 0;
        if (e)
            snprintf(want, sizeof(want), "%" PRId64, e->n);
        report(m, k, field, e ? want : NULL, found, fn, arg);
        return 1;
    default: /* VK_STR_HASH */
        if (e && found && strcmp(e->s ? e->s : "", found) == 0)
            return 0;
        if (!e && !found)
            return 0;
        report(m, k, field, e ? (e->s ? e->s : "") : NULL, found, fn, arg);
        return 1;
    }
}

int64_t vm_compare(verify_model *m, size_t i, const redisReply *r, verify_diff_fn fn, void *arg,
                   int64_t *fields)
{
    vm_key *k = &m->keys[i];
    int64_t diffs = 0;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
        char what[160];
        snprintf(what, sizeof(what), "%s",
                 !r                                       ? "no reply"
                 : r->type == REDIS_REPLY_ERROR && r->str ? r->str
                                                          : "an unexpected reply");
        report(m, k, "", k->kind == VK_COUNT_ZSET || k->kind == VK_SCORE_ZSET ? "a zset" : "a hash",
               what, fn, arg);
        return 1;
    }
    for (int32_t j = k->head; j >= 0; j = m->e[j].next)
        m->e[j].seen = false;
    for (size_t j = 0; j + 1 < r->elements; j += 2) {
        const redisReply *f = r->element[j], *v = r->element[j + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        vm_entry *e = entry(m, (uint32_t)i, f->str, false);
        if (e)
            e->seen = true;
        diffs += compare_field(m, k, f->str, e, v->str, fn, arg);
        (*fields)++;
    }
    for (int32_t j = k->head; j >= 0; j = m->e[j].next)
        if (!m->e[j].seen) {
            diffs += compare_field(m, k, m->e[j].field, &m->e[j], NULL, fn, arg);
            (*fields)++;
        }
    return diffs;
}

void verify_window(int64_t today, int days, int64_t *first, int64_t *last)
{
    int y, m, d;
    civil_date(today - days + 1, &y, &m, &d);
    *first = civil_days(y, m, 1);
    civil_date(today + 1, &y, &m, &d);
    *last = civil_days(y, m, civil_month_days(y, m));
}
