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

/* dlq_run() of NUL-terminated arguments. */
redisReply *dlq_run_str(dlq *d, int argc, const char **argv)
{
    size_t lens[16];
    for (int i = 0; i < argc && i < 16; i++)
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

int dlq_by_complaint(const void *x, const void *y)
{
    const dlq_entry *a = x, *b = y;
    int c = strcmp(a->tenant, b->tenant);
    if (c)
        return c;
    if (a->complaint != b->complaint)
        return a->complaint < b->complaint ? -1 : 1;
    if (a->version != b->version)
        return a->version < b->version ? -1 : 1;
    kv_id i = { 0, 0 }, j = { 0, 0 };
    kv_id_parse(a->dead_id, &i);
    kv_id_parse(b->dead_id, &j);
    return kv_id_cmp(i, j);
}

/*
 * The tenant's marked complaints that have no dead entry in l (dropped, or a park in progress),
 * printed after the entries: their figures stay frozen. Only with --tenant (finding every
 * tenant's mark would take a SCAN). Returns how many, or -1 on a Redis error.
 */
static long list_marks_without_entries(dlq *d, const dlq_filter *f, const dlq_list *l, bool json)
{
    char key[IDENT_MAX + 16];
    snprintf(key, sizeof(key), STREAM_TENANT "parked", f->tenant);
    const char *argv[] = { "HGETALL", key };
    redisReply *r = dlq_run_str(d, 2, argv);
    if (!r)
        return -1;
    long n = 0;
    for (size_t k = 0; r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements; k += 2) {
        int64_t c = to_i64(r->element[k]->str);
        bool has = false;
        for (size_t i = 0; i < l->n && !has; i++)
            has = l->v[i].complaint == c;
        if (has || (f->complaint && f->complaint != c))
            continue;
        n++;
        tx_buf b;
        tx_init(&b, DLQ_LINE_LIMIT);
        if (json) {
            tx_puts(&b, "{\"tenant\":");
            tx_json_str(&b, f->tenant);
            tx_printf(&b, ",\"complaint\":%" PRId64 ",\"marked\":true,\"parked_reason\":", c);
            tx_json_str(&b, r->element[k + 1]->str);
            tx_puts(&b, ",\"dead_entries\":0}");
        } else {
            tx_puts(&b, f->tenant);
            tx_printf(&b, " complaint %" PRId64 ": marked parked (", c);
            put_safe(&b, r->element[k + 1]->str);
            tx_puts(&b, ") without dead entries: dropped, or a park in progress; its figures "
                        "stay frozen until a rebuild");
        }
        dlq_print_line(&b);
    }
    freeReplyObject(r);
    return n;
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
            tx_printf(&b, ",\"marked\":%s,\"parked_reason\":", mark ? "true" : "false");
            if (mark)
                tx_json_str(&b, mark);
            else
                tx_puts(&b, "null");
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
        dlq_print_line(&b);
    }
    free(mark);
    if (!failed && f.tenant && !f.dead_id &&
        (bare = list_marks_without_entries(&d, &f, &l, json)) < 0)
        failed = true;
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

static void show_entry(const dlq_entry *e, const char *mark, bool json, int64_t now)
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
        tx_printf(&b, ",\"bytes\":%zu,\"marked\":%s,\"parked_reason\":", e->elen,
                  mark ? "true" : "false");
        if (mark)
            tx_json_str(&b, mark);
        else
            tx_puts(&b, "null");
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
        dlq_print_line(&b);
        return;
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
    dlq_print_line(&b);
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
        show_entry(&l.v[i], mark, json, now);
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
