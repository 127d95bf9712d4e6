/*
 * dlq_act: `tally dlq replay` and `tally dlq drop`, the subcommands that change Redis
 * (dlq_int.h). Each step is one command: the tenant's mark, the dead stream and the event
 * stream are in three cluster slots, so no script may span them; the order of the steps is
 * what makes a crash or a concurrent park lose nothing (replay's and drop's comments).
 */
#include "dlq_int.h"

#include "ident.h"
#include "log.h"
#include "now.h"
#include "stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DLQ_XDEL_BATCH  100 /* ids per XDEL */
#define DLQ_DROPPED_KEY "tally:dlq:dropped"

/* ---- tally dlq replay --------------------------------------------------------------------- */

/* Whether e can go back on its stream: its envelope bytes and a tenant id that can name keys
   (an entry without one, undecodable or of a malformed tenant, would only be parked again:
   drop it with --id). */
static bool replayable(const dlq_entry *e)
{
    return e->e && ident_check(e->tenant) == IDENT_OK;
}

/* What select_replay() left out of a replay. */
typedef struct dlq_held {
    size_t no_tenant;           /* entries without a tenant that can name keys */
    size_t no_bytes;            /* entries of no complaint (reference data) without event bytes */
    size_t complaints, entries; /* complaints left alone, marked, and their entries */
} dlq_held;

/*
 * Keeps in a (sorted by dlq_by_complaint) only what a replay puts back, releasing the rest:
 * the replayable entries of no complaint, and every entry of the complaints whose entries are
 * all replayable. A complaint with an entry without event bytes is left alone, whole and
 * marked: its versions after that one would only be parked again behind the gap it leaves,
 * and the ones before it are frozen with it until it is dropped and the complaint rebuilt.
 */
static void select_replay(dlq_list *a, dlq_held *h)
{
    size_t keep = 0;
    memset(h, 0, sizeof(*h));
    for (size_t i = 0, j; i < a->n; i = j) {
        bool whole = true;
        for (j = i; j < a->n && (j == i || dlq_same_complaint(&a->v[i], &a->v[j])); j++)
            whole = whole && replayable(&a->v[j]);
        bool hold = !whole && a->v[i].complaint > 0 && ident_check(a->v[i].tenant) == IDENT_OK;
        h->complaints += hold;
        for (size_t k = i; k < j; k++) {
            dlq_entry *e = &a->v[k];
            if (!hold && replayable(e)) {
                a->v[keep++] = *e;
                continue;
            }
            if (hold)
                h->entries++;
            else if (ident_check(e->tenant) != IDENT_OK)
                h->no_tenant++;
            else
                h->no_bytes++;
            dlq_entry_release(e);
        }
    }
    a->n = keep;
}

/* Whether e is of a complaint that a (sorted by dlq_by_complaint) has. */
static bool complaint_in(const dlq_list *a, const dlq_entry *e)
{
    return e->complaint > 0 && a->n &&
           bsearch(e, a->v, a->n, sizeof(*a->v), dlq_by_tenant_complaint) != NULL;
}

/*
 * Marks again, with HSETNX, each complaint of a (the replayed ones) that still has a dead entry
 * in what f selects: one the projector parked after replay's second read, behind a mark that
 * the HDEL removed (the projector marks, then adds the dead entry). Without this its figures
 * would stop before that entry while freshness no longer counted it. Returns how many it
 * marked, or -1 with d->err.
 */
static long mark_left_behind(dlq *d, const dlq_filter *f, const dlq_list *a)
{
    dlq_list c = { 0 };
    long marked = 0;
    if (dlq_scan(d, f, &c) != 0) {
        dlq_list_release(&c);
        return -1;
    }
    if (c.n > 1)
        qsort(c.v, c.n, sizeof(*c.v), dlq_by_complaint);
    for (size_t i = 0; i < c.n; i++) {
        const dlq_entry *e = &c.v[i];
        if ((i > 0 && dlq_same_complaint(&c.v[i - 1], e)) || !complaint_in(a, e) ||
            ident_check(e->tenant) != IDENT_OK)
            continue;
        char key[IDENT_MAX + 16], field[24];
        snprintf(key, sizeof(key), STREAM_TENANT "parked", e->tenant);
        snprintf(field, sizeof(field), "%" PRId64, e->complaint);
        const char *argv[] = { "HSETNX", key, field, "dead entries left after a replay" };
        redisReply *r = dlq_run_str(d, 4, argv);
        if (!r) {
            dlq_list_release(&c);
            return -1;
        }
        marked += r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
    }
    dlq_list_release(&c);
    return marked;
}

/* XDELs the dead entries of l (from partition part) in batches. 0, or -1 with d->err. */
static int xdel_part(dlq *d, const dlq_list *l, int part)
{
    char key[STREAM_KEY_MAX];
    const char *argv[DLQ_XDEL_BATCH + 2] = { "XDEL", key };
    int n = 2;
    stream_dead_key(part, key, sizeof(key));
    for (size_t i = 0; i <= l->n; i++) {
        if (i < l->n && l->v[i].part == part)
            argv[n++] = l->v[i].dead_id;
        if (n > 2 && (n == DLQ_XDEL_BATCH + 2 || i == l->n)) {
            size_t lens[DLQ_XDEL_BATCH + 2];
            for (int k = 0; k < n; k++)
                lens[k] = strlen(argv[k]);
            redisReply *r = dlq_run(d, n, argv, lens);
            if (!r)
                return -1;
            freeReplyObject(r);
            n = 2;
        }
    }
    return 0;
}

static int xdel_all(dlq *d, const dlq_list *l, const dlq_filter *f)
{
    for (int p = f->part_lo; p <= f->part_hi; p++)
        if (xdel_part(d, l, p) != 0)
            return -1;
    return 0;
}

/*
 * Replays the selected complaints' parked events. The steps, each one command (the mark, the
 * dead stream and the event stream are in three cluster slots, so no script can span them):
 *
 *   1. read the dead entries (A): the complaints to replay are those A names whose entries can
 *      all be replayed (select_replay: one with an entry without event bytes stays whole and
 *      marked; a tenant's reference events, complaint 0, have no mark and go back as they are);
 *   2. HDEL each of them from {t:T}:parked, so that the projector applies their events again;
 *   3. read the dead entries again (B), keeping those of the complaints unmarked in 2: this
 *      takes in what the projector parked between 1 and 2 (an event it had found marked);
 *   4. XADD B's envelopes to tally:events:<p> in each complaint's version order (not the dead
 *      stream's), one entry per version;
 *   5. XDEL B's dead entries, and only those;
 *   6. read the dead entries once more and HSETNX a mark for each complaint of 2 that still
 *      has one (mark_left_behind).
 *
 * Once: a second replay reads no entry and does nothing. No loop: an event that fails again is
 * parked again by the projector as a new dead entry (and marks its complaint again), which
 * this run never replays, having read B before. What a crash or a concurrent park leaves:
 *   - after 2, before 4: the complaint is unmarked with its events still dead; its next event
 *     is a gap, parked again after the gap timeout (marking it again, visible in
 *     freshness.parked_complaints and in `tally dlq list`); the next replay takes them all.
 *   - after 4, before or during 5: events both on the stream and dead; the next replay adds
 *     them again and the projector drops the copies by version. Nothing is applied twice.
 *   - the projector parks an event of the complaint across 2 (it marks, then adds the dead
 *     entry): when its mark comes after the HDEL, the replayed events are parked behind it as
 *     new dead entries; when the mark came before the HDEL (and was deleted by it) and the
 *     dead entry after B, step 6 finds that entry and marks the complaint again. Either way
 *     the complaint is marked with a dead entry: `tally dlq list` shows it, a replay fixes it.
 *     Only a park whose two commands span all of 2 to 6 leaves it unmarked (its next event
 *     is then a gap and parks it again, marked, after the gap timeout).
 * Nothing is ever deleted before it is on the stream.
 */
int cli_run_dlq_replay(const cli *c)
{
    dlq d;
    dlq_filter f;
    dlq_list a = { 0 }, b = { 0 };
    dlq_held h;
    bool json = cli_has(c, OPT_JSON);
    size_t added = 0, complaints = 0;
    long remarked = 0;
    int rc = dlq_open(c, &d, &f, &a, false);
    if (rc)
        return rc;
    select_replay(&a, &h);
    for (size_t i = 0; i < a.n; i++) {
        const dlq_entry *e = &a.v[i];
        if (e->complaint < 1 || (i > 0 && dlq_same_complaint(&a.v[i - 1], e)))
            continue;
        char key[IDENT_MAX + 16], field[24];
        snprintf(key, sizeof(key), STREAM_TENANT "parked", e->tenant);
        snprintf(field, sizeof(field), "%" PRId64, e->complaint);
        const char *argv[] = { "HDEL", key, field };
        redisReply *r = dlq_run_str(&d, 3, argv);
        if (!r)
            goto out_fail;
        freeReplyObject(r);
    }
    if (a.n && dlq_scan(&d, &f, &b) != 0)
        goto out_fail;
    size_t keep = 0;
    for (size_t i = 0; i < b.n; i++) {
        dlq_entry *e = &b.v[i];
        if (replayable(e) && (e->complaint < 1 || complaint_in(&a, e)))
            b.v[keep++] = *e;
        else
            dlq_entry_release(e);
    }
    b.n = keep;
    if (b.n > 1)
        qsort(b.v, b.n, sizeof(*b.v), dlq_by_complaint);
    for (size_t i = 0; i < b.n; i++) {
        const dlq_entry *e = &b.v[i];
        bool first = i == 0 || !dlq_same_complaint(&b.v[i - 1], e);
        complaints += first && e->complaint > 0;
        if (!first && b.v[i - 1].version == e->version)
            continue; /* the same version parked twice (a republish): once is enough */
        char key[STREAM_KEY_MAX];
        stream_key(e->part, key, sizeof(key));
        const char *argv[] = { "XADD", key, "*", STREAM_FIELD_EVENT, (const char *)e->e };
        size_t lens[] = { 4, strlen(key), 1, strlen(STREAM_FIELD_EVENT), e->elen };
        redisReply *r = dlq_run(&d, 5, argv, lens);
        if (!r)
            goto out_fail;
        freeReplyObject(r);
        added++;
        if (!json)
            continue;
        tx_buf t;
        tx_init(&t, DLQ_LINE_LIMIT);
        tx_puts(&t, "{\"replayed\":true,");
        dlq_json_entry_head(&t, e, now_wall_ms());
        tx_putc(&t, '}');
        if (dlq_print_line(&t) != EXIT_OK)
            rc = EXIT_FAIL;
    }
    if (xdel_all(&d, &b, &f) != 0)
        goto out_fail;
    if (a.n && (remarked = mark_left_behind(&d, &f, &a)) < 0)
        goto out_fail;
    if (json)
        printf("{\"summary\":true,\"replayed\":%zu,\"complaints\":%zu,\"dead_entries_removed\":%zu,"
               "\"not_replayable\":%zu,\"complaints_left_alone\":%zu,\"marked_again\":%ld}\n",
               added, complaints, b.n, h.no_tenant + h.no_bytes + h.entries, h.complaints,
               remarked);
    else if (b.n == 0)
        printf("dlq replay: nothing to replay\n");
    else
        printf("dlq replay: %zu event%s of %zu complaint%s back on their streams in version order, "
               "%zu dead entr%s removed; the projector applies them (an event that fails again "
               "is parked again: tally dlq list)\n",
               added, added == 1 ? "" : "s", complaints, complaints == 1 ? "" : "s", b.n,
               b.n == 1 ? "y" : "ies");
    if (json)
        goto out_free;
    if (h.complaints)
        printf("dlq replay: %zu complaint%s left alone, %zu dead entr%s and the mark kept: a "
               "dead entry of each has no event bytes, so its later versions would only be "
               "parked again; drop that entry with --id (its figures stay frozen until a "
               "rebuild)\n",
               h.complaints, h.complaints == 1 ? "" : "s", h.entries, h.entries == 1 ? "y" : "ies");
    if (h.no_tenant)
        printf("dlq replay: %zu dead entr%s without a valid tenant left alone (drop them with "
               "--id)\n",
               h.no_tenant, h.no_tenant == 1 ? "y" : "ies");
    if (h.no_bytes)
        printf("dlq replay: %zu dead entr%s of no complaint without event bytes left alone (drop "
               "them with --id)\n",
               h.no_bytes, h.no_bytes == 1 ? "y" : "ies");
    if (remarked)
        printf("dlq replay: %ld complaint%s marked parked again: the projector parked an event "
               "of it during the replay (tally dlq list; replay again)\n",
               remarked, remarked == 1 ? "" : "s");
    goto out_free;
out_fail:
    rc = dlq_fail(&d);
out_free:
    dlq_list_release(&a);
    dlq_list_release(&b);
    kv_free(d.kv);
    return rc;
}

/* ---- tally dlq drop ----------------------------------------------------------------------- */

/* Copies e into DLQ_DROPPED_KEY with why, who and when. 0, or -1 with d->err. */
static int keep_dropped(dlq *d, const dlq_entry *e, const char *why, const char *who, int64_t now)
{
    char part[16], complaint[24], version[24], when[24];
    snprintf(part, sizeof(part), "%d", e->part);
    snprintf(complaint, sizeof(complaint), "%" PRId64, e->complaint);
    snprintf(version, sizeof(version), "%" PRId64, e->version);
    snprintf(when, sizeof(when), "%" PRId64, now);
    const char *argv[] = { "XADD",
                           DLQ_DROPPED_KEY,
                           "*",
                           STREAM_FIELD_EVENT,
                           (const char *)(e->e ? e->e : (const uint8_t *)""),
                           "dead_id",
                           e->dead_id,
                           "partition",
                           part,
                           "id",
                           e->orig_id,
                           "tenant",
                           e->tenant,
                           "complaint",
                           complaint,
                           "version",
                           version,
                           "reason",
                           e->reason,
                           "drop_reason",
                           why,
                           "operator",
                           who,
                           "dropped_ms",
                           when };
    enum { N = sizeof(argv) / sizeof(argv[0]) };
    size_t lens[N];
    for (int i = 0; i < N; i++)
        lens[i] = i == 4 ? e->elen : strlen(argv[i]);
    redisReply *r = dlq_run(d, N, argv, lens);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

/*
 * Drops the selected dead entries: each is first copied, with the drop's reason, operator and
 * time, into tally:dlq:dropped (kept: nothing trims it), then XDELed from its dead stream, and
 * logged as a JSON line on stderr. A crash between the two leaves the entry in both: a second
 * drop copies it again (the copies name the same dead_id). The complaint's mark in
 * {t:T}:parked stays: its read model is frozen at the event before the parked one and misses
 * the dropped events, so freshness.parked_complaints keeps saying so (and its later events are
 * parked behind it, not applied over the hole) until a rebuild from PostgreSQL makes it whole.
 */
int cli_run_dlq_drop(const cli *c)
{
    dlq d;
    dlq_filter f;
    dlq_list l = { 0 };
    bool json = cli_has(c, OPT_JSON);
    const char *why = cli_get(c, OPT_REASON), *who = cli_env("USER");
    if (!why || !why[0])
        return cli_usage_error(c, "--reason is required: why these events are dropped (it is "
                                  "kept with them)");
    int rc = dlq_open(c, &d, &f, &l, true);
    if (rc)
        return rc;
    if (!who)
        who = "unknown";
    log_init("tally", LOG_INFO);
    int64_t now = now_wall_ms();
    for (size_t i = 0; i < l.n; i++) {
        const dlq_entry *e = &l.v[i];
        dlq_list one = { (dlq_entry *)e, 1, 1 };
        if (keep_dropped(&d, e, why, who, now) != 0 || xdel_part(&d, &one, e->part) != 0)
            goto out_fail;
        log_warn("dead letter dropped", LOG_STR("tenant", e->tenant),
                 LOG_INT("complaint", e->complaint), LOG_INT("version", e->version),
                 LOG_STR("dead_id", e->dead_id), LOG_INT("partition", e->part),
                 LOG_STR("id", e->orig_id), LOG_STR("reason", e->reason),
                 LOG_STR("drop_reason", why), LOG_STR("operator", who),
                 LOG_STR("kept_in", DLQ_DROPPED_KEY));
        if (json) {
            tx_buf t;
            tx_init(&t, DLQ_LINE_LIMIT);
            tx_puts(&t, "{\"dropped\":true,");
            dlq_json_entry_head(&t, e, now);
            tx_puts(&t, ",\"drop_reason\":");
            tx_json_str(&t, why);
            tx_puts(&t, ",\"operator\":");
            tx_json_str(&t, who);
            tx_putc(&t, '}');
            dlq_print_line(&t);
        }
    }
    if (json)
        printf("{\"summary\":true,\"dropped\":%zu,\"kept_in\":\"%s\"}\n", l.n, DLQ_DROPPED_KEY);
    else if (l.n == 0)
        printf("dlq drop: nothing to drop\n");
    else
        printf("dlq drop: %zu dead entr%s dropped, kept in %s with the reason; the complaint "
               "stays marked parked (its figures are incomplete until a rebuild)\n",
               l.n, l.n == 1 ? "y" : "ies", DLQ_DROPPED_KEY);
    goto out_free;
out_fail:
    rc = dlq_fail(&d);
out_free:
    dlq_list_release(&l);
    kv_free(d.kv);
    return rc;
}
