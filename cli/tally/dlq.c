/*
 * tally dlq: the parked events (dead letters, docs/operations.md) for an operator: list them,
 * show one decoded, replay a complaint's parked events once its cause is fixed, or drop them
 * with a reason that is kept. Talks to Redis directly (--redis-url), like `tally verify`.
 *
 * What the projector leaves (projector/consumer_park.c): each parked event is an entry of
 * tally:dead:<p> (the envelope bytes `e`, `reason`, the original entry `id`, `tenant`,
 * `complaint`, `version`), and its complaint is marked in {t:T}:parked (complaint -> the first
 * reason), so that the complaint's later events are parked behind it and its order holds.
 *
 * The dead streams are read in pages (XRANGE ... COUNT), never with KEYS or SCAN; what a command
 * works on is at most DLQ_MAX_ENTRIES entries. No command runs a script: the dead stream, the
 * event stream and the tenant's mark live in different cluster slots, so each step is a command
 * of its own, ordered so that a crash or a concurrent park loses nothing (see cli_run_dlq_replay in
 * dlq_act.c). This file reads: the pages, the options, list and show.
 */
#include "dlq_int.h"

#include "cfg.h"
#include "ident.h"
#include "now.h"
#include "stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void dlq_entry_release(dlq_entry *e)
{
    free(e->tenant);
    free(e->reason);
    free(e->e);
    if (e->env)
        tally__v1__event_envelope__free_unpacked(e->env, NULL);
}

void dlq_list_release(dlq_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        dlq_entry_release(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* Appends e, which l then owns; false (e released) when memory runs out. */
static bool list_push(dlq_list *l, dlq_entry *e)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        dlq_entry *v = realloc(l->v, cap * sizeof(*v));
        if (!v) {
            dlq_entry_release(e);
            return false;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *e;
    return true;
}

/* A command's reply, or NULL with d->err set (an I/O error, or an error reply). */
redisReply *dlq_run(dlq *d, int argc, const char **argv, const size_t *lens)
{
    redisContext *ctx = kv_ctx(d->kv);
    redisReply *r = ctx ? redisCommandArgv(ctx, argc, argv, lens) : NULL;
    if (!r) {
        snprintf(d->err, sizeof(d->err), "%s: %s", argv[0],
                 ctx && ctx->err ? ctx->errstr : "not connected");
        kv_reset(d->kv);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(d->err, sizeof(d->err), "%s %s: %s", argv[0], argc > 1 ? argv[1] : "", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* dlq_run() of NUL-terminated arguments; more than DLQ_STR_ARGS is a bug of the caller. */
redisReply *dlq_run_str(dlq *d, int argc, const char **argv)
{
    size_t lens[DLQ_STR_ARGS];
    if (argc < 1 || argc > DLQ_STR_ARGS) {
        snprintf(d->err, sizeof(d->err), "%s: %d arguments (at most %d)", argc > 0 ? argv[0] : "?",
                 argc, DLQ_STR_ARGS);
        return NULL;
    }
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    return dlq_run(d, argc, argv, lens);
}

static int64_t to_i64(const char *s)
{
    return s && *s ? strtoll(s, NULL, 10) : 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return out;
}

/* Fills e from one XRANGE element; false when it is not an entry or memory runs out. */
static bool parse_entry(const redisReply *x, int part, dlq_entry *e)
{
    memset(e, 0, sizeof(*e));
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
        x->element[0]->type != REDIS_REPLY_STRING || x->element[1]->type != REDIS_REPLY_ARRAY)
        return false;
    e->part = part;
    snprintf(e->dead_id, sizeof(e->dead_id), "%s", x->element[0]->str);
    const redisReply *f = x->element[1];
    const char *tenant = "", *reason = "";
    size_t tlen = 0, rlen = 0;
    for (size_t k = 0; k + 1 < f->elements; k += 2) {
        const char *name = f->element[k]->str;
        const redisReply *v = f->element[k + 1];
        if (!name || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(name, STREAM_FIELD_EVENT) == 0) {
            free(e->e);
            e->e = (uint8_t *)dup_n(v->str, v->len);
            e->elen = v->len;
        } else if (strcmp(name, "reason") == 0) {
            reason = v->str;
            rlen = v->len;
        } else if (strcmp(name, "id") == 0) {
            snprintf(e->orig_id, sizeof(e->orig_id), "%s", v->str);
        } else if (strcmp(name, "tenant") == 0) {
            tenant = v->str;
            tlen = v->len;
        } else if (strcmp(name, "complaint") == 0) {
            e->complaint = to_i64(v->str);
        } else if (strcmp(name, "version") == 0) {
            e->version = to_i64(v->str);
        }
    }
    e->tenant = dup_n(tenant, tlen);
    e->reason = dup_n(reason, rlen);
    if (e->e)
        e->env = tally__v1__event_envelope__unpack(NULL, e->elen, e->e);
    return e->tenant && e->reason;
}

static bool wanted(const dlq_filter *f, const dlq_entry *e)
{
    return (!f->tenant || strcmp(f->tenant, e->tenant) == 0) &&
           (!f->complaint || f->complaint == e->complaint) &&
           (!f->dead_id || strcmp(f->dead_id, e->dead_id) == 0);
}

/*
 * Appends the dead entries that f selects, partition by partition in dead-stream order, paging
 * with XRANGE (an exclusive start after the first page). 0, or -1 with d->err.
 */
int dlq_scan(dlq *d, const dlq_filter *f, dlq_list *out)
{
    for (int p = f->part_lo; p <= f->part_hi; p++) {
        char key[STREAM_KEY_MAX], start[64] = "-", count[16];
        stream_dead_key(p, key, sizeof(key));
        snprintf(count, sizeof(count), "%d", DLQ_PAGE);
        if (f->dead_id)
            snprintf(start, sizeof(start), "%s", f->dead_id);
        for (;;) {
            const char *argv[] = { "XRANGE", key,  start, f->dead_id ? f->dead_id : "+",
                                   "COUNT",  count };
            redisReply *r = dlq_run_str(d, 6, argv);
            if (!r)
                return -1;
            size_t got = r->type == REDIS_REPLY_ARRAY ? r->elements : 0;
            for (size_t i = 0; i < got; i++) {
                dlq_entry e;
                bool ok = parse_entry(r->element[i], p, &e);
                if (i + 1 == got && r->element[i]->type == REDIS_REPLY_ARRAY &&
                    r->element[i]->elements == 2)
                    snprintf(start, sizeof(start), "(%s", r->element[i]->element[0]->str);
                if (!ok || !wanted(f, &e)) {
                    dlq_entry_release(&e);
                    continue;
                }
                if (out->n >= DLQ_MAX_ENTRIES || !list_push(out, &e)) {
                    if (out->n >= DLQ_MAX_ENTRIES)
                        dlq_entry_release(&e);
                    freeReplyObject(r);
                    snprintf(d->err, sizeof(d->err),
                             "more than %d dead entries selected (or out of memory): narrow it "
                             "with --tenant and --complaint",
                             DLQ_MAX_ENTRIES);
                    return -1;
                }
            }
            freeReplyObject(r);
            if (got < DLQ_PAGE || f->dead_id)
                break;
        }
    }
    return 0;
}

/* ---- the setup every subcommand shares ------------------------------------------------------ */

/*
 * Reads the options: Redis, the partition count, and the filter (--tenant, --complaint,
 * --partition, --id). need_target: --tenant with --complaint, or --id, is required. EXIT_OK,
 * or a usage error (printed).
 */
static int setup(const cli *c, dlq *d, dlq_filter *f, bool need_target)
{
    cfg_redis redis;
    int64_t n;
    int rc;
    memset(d, 0, sizeof(*d));
    memset(f, 0, sizeof(*f));
    d->c = c;
    d->partitions = 1;
    if ((rc = cli_redis(c, &redis)))
        return rc;
    if ((rc = cli_partitions(c, &d->partitions)))
        return rc;
    f->tenant = cli_get(c, OPT_TENANT);
    if (f->tenant && ident_check(f->tenant) != IDENT_OK)
        return cli_usage_error(c, "%s: \"%s\" is not a tenant id (%s)", cli_name(c, OPT_TENANT),
                               f->tenant, ident_problem_text(ident_check(f->tenant)));
    if (cli_has(c, OPT_COMPLAINT)) {
        if ((rc = cli_int(c, OPT_COMPLAINT, 1, INT64_MAX, &f->complaint)))
            return rc;
        if (!f->tenant)
            return cli_usage_error(c, "%s needs --tenant", cli_name(c, OPT_COMPLAINT));
    }
    f->dead_id = cli_get(c, OPT_ID);
    kv_id id;
    if (f->dead_id && !kv_id_parse(f->dead_id, &id))
        return cli_usage_error(c, "%s: want a dead entry id MS-SEQ, not \"%s\"",
                               cli_name(c, OPT_ID), f->dead_id);
    if (need_target && !f->dead_id && !f->complaint)
        return cli_usage_error(c, "give --tenant T --complaint N, or --id DEAD-ENTRY-ID");
    f->part_lo = 0;
    f->part_hi = d->partitions - 1;
    if (cli_has(c, OPT_PARTITION)) {
        if ((rc = cli_int(c, OPT_PARTITION, 0, d->partitions - 1, &n)))
            return rc;
        f->part_lo = f->part_hi = (int)n;
    } else if (f->tenant) {
        f->part_lo = f->part_hi = stream_partition(f->tenant, d->partitions);
    }
    d->kv = kv_new(&redis, DLQ_REDIS_MS);
    if (!d->kv) {
        fprintf(stderr, "%s: out of memory\n", c->prog);
        return EXIT_FAIL;
    }
    if (kv_connect(d->kv) != 0) {
        fprintf(stderr, "%s: Redis: %s\n", c->prog, kv_errstr(d->kv));
        kv_free(d->kv);
        d->kv = NULL;
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

int dlq_fail(dlq *d)
{
    fprintf(stderr, "%s: Redis: %s\n", d->c->prog, d->err);
    return EXIT_FAIL;
}

/* The event type's name without its prefix ("STATUS_CHANGED"), or "undecodable". */
static const char *type_name(const dlq_entry *e)
{
    if (!e->env)
        return "undecodable";
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&tally__v1__event_type__descriptor, e->env->type);
    if (!v)
        return "unknown";
    return strncmp(v->name, "EVENT_TYPE_", 11) == 0 ? v->name + 11 : v->name;
}

/* When the entry was parked: its dead entry id's time (Redis's clock), Unix ms. */
static int64_t parked_ms(const dlq_entry *e)
{
    kv_id id = { 0, 0 };
    kv_id_parse(e->dead_id, &id);
    return (int64_t)id.ms;
}

static void put_safe(tx_buf *b, const char *s)
{
    tx_cell(b, s, tx_width(s), false, false, true);
}

/* Prints b and a newline; EXIT_FAIL when it was too long to build. */
int dlq_print_line(tx_buf *b)
{
    int rc = b->full ? EXIT_FAIL : EXIT_OK;
    if (b->full)
        fprintf(stderr, "tally: out of memory\n");
    else
        printf("%s\n", b->s ? b->s : "");
    tx_release(b);
    return rc;
}

/* {t:T}:parked's reason for complaint c of tenant t: malloc'd, NULL when not marked (or
   when t cannot name a key). *failed on a Redis error. */
static char *mark_of(dlq *d, const char *tenant, int64_t complaint, bool *failed)
{
    char key[IDENT_MAX + 16], field[24];
    if (ident_check(tenant) != IDENT_OK || complaint < 1)
        return NULL;
    snprintf(key, sizeof(key), STREAM_TENANT "parked", tenant);
    snprintf(field, sizeof(field), "%" PRId64, complaint);
    const char *argv[] = { "HGET", key, field };
    redisReply *r = dlq_run_str(d, 3, argv);
    if (!r) {
        *failed = true;
        return NULL;
    }
    char *out = r->type == REDIS_REPLY_STRING ? dup_n(r->str, r->len) : NULL;
    freeReplyObject(r);
    return out;
}

/* The "marked" and "parked_reason" members (after a member) of mark, NULL when not marked. */
static void put_mark_json(tx_buf *b, const char *mark)
{
    tx_printf(b, ",\"marked\":%s,\"parked_reason\":", mark ? "true" : "false");
    if (mark)
        tx_json_str(b, mark);
    else
        tx_puts(b, "null");
}

/* The common fields of an entry as JSON members (after "{"). */
void dlq_json_entry_head(tx_buf *b, const dlq_entry *e, int64_t now)
{
    tx_printf(b, "\"partition\":%d,\"dead_id\":", e->part);
    tx_json_str(b, e->dead_id);
    tx_puts(b, ",\"id\":");
    tx_json_str(b, e->orig_id);
    tx_puts(b, ",\"tenant\":");
    tx_json_str(b, e->tenant);
    tx_printf(b, ",\"complaint\":%" PRId64 ",\"version\":%" PRId64 ",\"type\":\"%s\",\"reason\":",
              e->complaint, e->version, type_name(e));
    tx_json_str(b, e->reason);
    tx_printf(b, ",\"parked_ms\":%" PRId64 ",\"age_ms\":%" PRId64, parked_ms(e),
              now - parked_ms(e));
}

/* ---- tally dlq list ----------------------------------------------------------------------- */

/* Whether a and b are of one complaint (reference and undecodable entries are each alone). */
bool dlq_same_complaint(const dlq_entry *a, const dlq_entry *b)
{
    return a->complaint > 0 && a->complaint == b->complaint && strcmp(a->tenant, b->tenant) == 0;
}

int dlq_by_tenant_complaint(const void *x, const void *y)
{
    const dlq_entry *a = x, *b = y;
    int c = strcmp(a->tenant, b->tenant);
    return c ? c : (a->complaint > b->complaint) - (a->complaint < b->complaint);
}

int dlq_by_complaint(const void *x, const void *y)
{
    const dlq_entry *a = x, *b = y;
    int c = dlq_by_tenant_complaint(a, b);
    if (c)
        return c;
    if (a->version != b->version)
        return a->version < b->version ? -1 : 1;
    kv_id i = { 0, 0 }, j = { 0, 0 };
    kv_id_parse(a->dead_id, &i);
    kv_id_parse(b->dead_id, &j);
    return kv_id_cmp(i, j);
}

/* One complaint's mark in {t:T}:parked. */
typedef struct dlq_mark {
    int64_t complaint;
    char *reason; /* owned */
} dlq_mark;

static int by_mark(const void *x, const void *y)
{
    const dlq_mark *a = x, *b = y;
    return (a->complaint > b->complaint) - (a->complaint < b->complaint);
}

static void marks_free(dlq_mark *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].reason);
    free(v);
}

/*
 * Reads the tenant's marks in pages (HSCAN ... COUNT DLQ_MARK_PAGE), at most DLQ_MAX_ENTRIES,
 * into *out sorted by complaint, each once (HSCAN may return a field twice). The caller frees
 * them with marks_free. 0, or -1 with d->err.
 */
static int read_marks(dlq *d, const char *tenant, dlq_mark **out, size_t *np)
{
    char key[IDENT_MAX + 16], cursor[32] = "0", count[16];
    dlq_mark *v = NULL;
    size_t n = 0, cap = 0;
    snprintf(key, sizeof(key), STREAM_TENANT "parked", tenant);
    snprintf(count, sizeof(count), "%d", DLQ_MARK_PAGE);
    do {
        const char *argv[] = { "HSCAN", key, cursor, "COUNT", count };
        redisReply *r = dlq_run_str(d, 5, argv);
        if (!r)
            goto out_fail;
        const redisReply *kv = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                                       r->element[0]->type == REDIS_REPLY_STRING &&
                                       r->element[1]->type == REDIS_REPLY_ARRAY
                                   ? r->element[1]
                                   : NULL;
        if (!kv) {
            freeReplyObject(r);
            snprintf(d->err, sizeof(d->err), "HSCAN %s: not a cursor and a page", key);
            goto out_fail;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        for (size_t k = 0; k + 1 < kv->elements; k += 2) {
            if (n == cap) {
                size_t ncap = cap ? 2 * cap : 256;
                dlq_mark *nv = ncap <= DLQ_MAX_ENTRIES ? realloc(v, ncap * sizeof(*nv)) : NULL;
                if (!nv) {
                    freeReplyObject(r);
                    snprintf(d->err, sizeof(d->err),
                             "more than %d marks in %s (or out of memory): narrow it with "
                             "--complaint",
                             DLQ_MAX_ENTRIES, key);
                    goto out_fail;
                }
                v = nv;
                cap = ncap;
            }
            const redisReply *val = kv->element[k + 1];
            v[n].complaint = to_i64(kv->element[k]->str);
            v[n].reason = dup_n(val->str ? val->str : "", val->str ? val->len : 0);
            if (!v[n].reason) {
                freeReplyObject(r);
                snprintf(d->err, sizeof(d->err), "HSCAN %s: out of memory", key);
                goto out_fail;
            }
            n++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    if (n > 1)
        qsort(v, n, sizeof(*v), by_mark);
    size_t keep = 0;
    for (size_t i = 0; i < n; i++) {
        if (keep && v[keep - 1].complaint == v[i].complaint)
            free(v[i].reason);
        else
            v[keep++] = v[i];
    }
    *out = v;
    *np = keep;
    return 0;
out_fail:
    marks_free(v, n);
    return -1;
}

/*
 * The tenant's marked complaints that have no dead entry in l (dropped, or a park in progress),
 * printed after the entries in complaint order: their figures stay frozen. Only with --tenant
 * (finding every tenant's mark would take a SCAN). Returns how many, -1 on a Redis error (with
 * d->err), or -2 when a line could not be printed.
 */
static long list_marks_without_entries(dlq *d, const dlq_filter *f, const dlq_list *l, bool json)
{
    dlq_mark *v;
    size_t nv;
    long n = 0;
    bool lost = false;
    if (read_marks(d, f->tenant, &v, &nv) != 0)
        return -1;
    for (size_t k = 0; k < nv; k++) {
        dlq_entry key = { .tenant = (char *)f->tenant, .complaint = v[k].complaint };
        if ((f->complaint && f->complaint != v[k].complaint) ||
            (l->n && bsearch(&key, l->v, l->n, sizeof(*l->v), dlq_by_tenant_complaint)))
            continue;
        n++;
        tx_buf b;
        tx_init(&b, DLQ_LINE_LIMIT);
        if (json) {
            tx_puts(&b, "{\"tenant\":");
            tx_json_str(&b, f->tenant);
            tx_printf(&b, ",\"complaint\":%" PRId64, v[k].complaint);
            put_mark_json(&b, v[k].reason);
            tx_puts(&b, ",\"dead_entries\":0}");
        } else {
            tx_puts(&b, f->tenant);
            tx_printf(&b, " complaint %" PRId64 ": marked parked (", v[k].complaint);
            put_safe(&b, v[k].reason);
            tx_puts(&b, ") without dead entries: dropped, or a park in progress; its figures "
                        "stay frozen until a rebuild");
        }
        lost |= dlq_print_line(&b) != EXIT_OK;
    }
    marks_free(v, nv);
    return lost ? -2 : n;
}

int dlq_open(const cli *c, dlq *d, dlq_filter *f, dlq_list *l, bool need_target)
{
    int rc = setup(c, d, f, need_target);
    if (rc)
        return rc;
    if (dlq_scan(d, f, l) != 0) {
        rc = dlq_fail(d);
        dlq_list_release(l);
        kv_free(d->kv);
        return rc;
    }
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), dlq_by_complaint);
    return EXIT_OK;
}

int cli_run_dlq_list(const cli *c)
{
    dlq d;
    dlq_filter f;
    dlq_list l = { 0 };
    bool json = cli_has(c, OPT_JSON), failed = false;
    int rc = dlq_open(c, &d, &f, &l, false);
    if (rc)
        return rc;
    int64_t now = now_wall_ms(), oldest = 0;
    long complaints = 0, marked = 0, bare = 0;
    char *mark = NULL;
    for (size_t i = 0; i < l.n && !failed; i++) {
        const dlq_entry *e = &l.v[i];
        if (i == 0 || !dlq_same_complaint(&l.v[i - 1], e)) {
            free(mark);
            mark = mark_of(&d, e->tenant, e->complaint, &failed);
            complaints++;
            marked += mark != NULL;
        }
        if (!oldest || parked_ms(e) < oldest)
            oldest = parked_ms(e);
        tx_buf b;
        char age[32];
        tx_init(&b, DLQ_LINE_LIMIT);
        if (json) {
            tx_putc(&b, '{');
            dlq_json_entry_head(&b, e, now);
            put_mark_json(&b, mark);
            tx_putc(&b, '}');
        } else {
            put_safe(&b, e->tenant[0] ? e->tenant : "(no tenant)");
            tx_printf(&b, " complaint %" PRId64 " v%" PRId64 " %s, parked %s ago%s: ", e->complaint,
                      e->version, type_name(e),
                      tx_duration((double)(now - parked_ms(e)) / 1000.0, age, sizeof(age)),
                      e->complaint > 0 && !mark ? " (not marked)" : "");
            put_safe(&b, e->reason);
            tx_printf(&b, " [dead entry %s of tally:dead:%d]", e->dead_id, e->part);
        }
        if (dlq_print_line(&b) != EXIT_OK)
            rc = EXIT_FAIL;
    }
    free(mark);
    if (!failed && f.tenant && !f.dead_id) {
        bare = list_marks_without_entries(&d, &f, &l, json);
        failed = bare == -1;
        if (bare == -2) {
            rc = EXIT_FAIL;
            bare = 0;
        }
    }
    if (failed) {
        rc = dlq_fail(&d);
        goto out_free;
    }
    char age[32];
    if (json)
        printf("{\"summary\":true,\"dead_entries\":%zu,\"complaints\":%ld,\"marked\":%ld,"
               "\"marked_without_entries\":%ld,\"oldest_parked_ms\":%" PRId64 "}\n",
               l.n, complaints, marked, bare, oldest);
    else if (l.n == 0)
        printf("dlq: no dead entries%s\n",
               bare ? "; marked complaints without dead entries are listed above" : "");
    else
        printf("dlq: %zu dead entr%s of %ld complaint%s (%ld marked parked), oldest parked %s "
               "ago; %ld marked complaint%s without dead entries\n",
               l.n, l.n == 1 ? "y" : "ies", complaints, complaints == 1 ? "" : "s", marked,
               l.n ? tx_duration((double)(now - oldest) / 1000.0, age, sizeof(age)) : "-", bare,
               bare == 1 ? "" : "s");
out_free:
    dlq_list_release(&l);
    kv_free(d.kv);
    return rc;
}

/* ---- tally dlq show ----------------------------------------------------------------------- */

/*
 * The scalar fields of message m, as " name=value" (text) or ",\"name\":value" (JSON; the
 * first without its comma when *first). Oneof members and repeated fields are left out: the
 * envelope's body is printed on its own, and no event has repeated fields.
 */
static void put_fields(tx_buf *b, const ProtobufCMessage *m, bool json, bool *first)
{
    const ProtobufCMessageDescriptor *desc = m->descriptor;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &desc->fields[i];
        const void *at = (const char *)m + fd->offset;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED || (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        tx_buf v;
        tx_init(&v, DLQ_LINE_LIMIT);
        switch (fd->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
            tx_printf(&v, "%" PRId32, *(const int32_t *)at);
            break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
            tx_printf(&v, "%" PRId64, *(const int64_t *)at);
            break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
            tx_printf(&v, "%" PRIu32, *(const uint32_t *)at);
            break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
            tx_printf(&v, "%" PRIu64, *(const uint64_t *)at);
            break;
        case PROTOBUF_C_TYPE_BOOL:
            tx_puts(&v, *(const protobuf_c_boolean *)at ? "true" : "false");
            break;
        case PROTOBUF_C_TYPE_ENUM: {
            const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
                (const ProtobufCEnumDescriptor *)fd->descriptor, *(const int *)at);
            if (ev && json)
                tx_json_str(&v, ev->name);
            else if (ev)
                tx_puts(&v, ev->name);
            else
                tx_printf(&v, "%d", *(const int *)at);
            break;
        }
        case PROTOBUF_C_TYPE_STRING: {
            const char *s = *(char *const *)at ? *(char *const *)at : "";
            if (json)
                tx_json_str(&v, s);
            else
                put_safe(&v, s[0] ? s : "\"\"");
            break;
        }
        default: /* bytes, floats, messages: no event has them */
            tx_puts(&v, json ? "null" : "?");
            break;
        }
        if (json)
            tx_printf(b, "%s\"%s\":%s", *first ? "" : ",", fd->name, v.s ? v.s : "");
        else
            tx_printf(b, " %s=%s", fd->name, v.s ? v.s : "");
        *first = false;
        tx_release(&v);
    }
}

/* The envelope's body: its oneof member's name, and the message. */
static const ProtobufCMessage *body_of(const Tally__V1__EventEnvelope *env, const char **name)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(
        &tally__v1__event_envelope__descriptor, (unsigned)env->body_case);
    if (!fd || fd->type != PROTOBUF_C_TYPE_MESSAGE)
        return NULL;
    *name = fd->name;
    return *(ProtobufCMessage *const *)((const char *)env + fd->offset);
}

/* Prints entry e of show; EXIT_OK, or EXIT_FAIL when its line could not be built. */
static int show_entry(const dlq_entry *e, const char *mark, bool json, int64_t now)
{
    const char *body_name = NULL;
    const ProtobufCMessage *body = e->env ? body_of(e->env, &body_name) : NULL;
    bool first = true;
    char t[32], age[32];
    tx_buf b;
    tx_init(&b, DLQ_LINE_LIMIT);
    if (json) {
        tx_putc(&b, '{');
        dlq_json_entry_head(&b, e, now);
        tx_printf(&b, ",\"bytes\":%zu", e->elen);
        put_mark_json(&b, mark);
        tx_puts(&b, ",\"envelope\":");
        if (e->env) {
            tx_putc(&b, '{');
            put_fields(&b, &e->env->base, true, &first);
            tx_putc(&b, '}');
        } else {
            tx_puts(&b, "null");
        }
        tx_puts(&b, ",\"body_type\":");
        if (body) {
            tx_json_str(&b, body_name);
            tx_puts(&b, ",\"body\":{");
            first = true;
            put_fields(&b, body, true, &first);
            tx_putc(&b, '}');
        } else {
            tx_puts(&b, "null,\"body\":null");
        }
        tx_putc(&b, '}');
        return dlq_print_line(&b);
    }
    tx_printf(&b,
              "dead entry %s of tally:dead:%d, parked %s (%s ago), from entry %s of "
              "tally:events:%d\n  reason: ",
              e->dead_id, e->part, tx_time_utc(parked_ms(e), t, sizeof(t)),
              tx_duration((double)(now - parked_ms(e)) / 1000.0, age, sizeof(age)),
              e->orig_id[0] ? e->orig_id : "?", e->part);
    put_safe(&b, e->reason);
    tx_puts(&b, "\n  complaint: ");
    put_safe(&b, e->tenant[0] ? e->tenant : "(no tenant)");
    tx_printf(&b, " %" PRId64 " v%" PRId64 ", ", e->complaint, e->version);
    if (mark) {
        tx_puts(&b, "marked parked: ");
        put_safe(&b, mark);
    } else {
        tx_puts(&b, "not marked parked");
    }
    if (e->env) {
        tx_printf(&b, "\n  envelope (%zu bytes):", e->elen);
        put_fields(&b, &e->env->base, false, &first);
    } else {
        tx_printf(&b, "\n  envelope: %zu bytes that are not a tally.v1.EventEnvelope", e->elen);
    }
    if (body) {
        tx_printf(&b, "\n  %s:", body_name);
        put_fields(&b, body, false, &first);
    } else if (e->env) {
        tx_puts(&b, "\n  body: none, or one this build does not know");
    }
    return dlq_print_line(&b);
}

int cli_run_dlq_show(const cli *c)
{
    dlq d;
    dlq_filter f;
    dlq_list l = { 0 };
    bool json = cli_has(c, OPT_JSON), failed = false;
    int rc = dlq_open(c, &d, &f, &l, true);
    if (rc)
        return rc;
    int64_t now = now_wall_ms();
    for (size_t i = 0; i < l.n && !failed; i++) {
        char *mark = mark_of(&d, l.v[i].tenant, l.v[i].complaint, &failed);
        if (show_entry(&l.v[i], mark, json, now) != EXIT_OK)
            rc = EXIT_FAIL;
        free(mark);
    }
    if (failed) {
        rc = dlq_fail(&d);
    } else if (l.n == 0) {
        fprintf(stderr, "%s: no dead entry %s%s\n", c->prog, f.dead_id ? f.dead_id : "of ",
                f.dead_id ? "" : "that complaint");
        rc = EXIT_FAIL;
    }
    dlq_list_release(&l);
    kv_free(d.kv);
    return rc;
}
