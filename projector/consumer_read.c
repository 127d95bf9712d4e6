/*
 * consumer_read: messages, and where they come from (consumer_int.h): the group's new entries
 * or this consumer's own pending ones (XREADGROUP), entries reclaimed from a dead consumer
 * (XAUTOCLAIM), and the retry queue.
 */
#include "consumer_int.h"

#include "err.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void proj_msg_free(proj_msg *m)
{
    if (!m)
        return;
    proj_event_release(&m->ev);
    free(m->raw);
    free(m);
}

int proj_msgs_push(proj_msgs *l, proj_msg *m)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        proj_msg **v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return TALLY_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = m;
    return 0;
}

void proj_msgs_move(proj_msgs *to, proj_msgs *from)
{
    if (to->n == 0) {
        proj_msgs t = *to;
        *to = *from;
        *from = t;
        return;
    }
    size_t k = 0;
    while (k < from->n && proj_msgs_push(to, from->v[k]) == 0)
        k++;
    memmove(from->v, from->v + k, (from->n - k) * sizeof(*from->v));
    from->n -= k;
}

void proj_msgs_clear(proj_msgs *l)
{
    for (size_t i = 0; i < l->n; i++)
        proj_msg_free(l->v[i]);
    l->n = 0;
}

/* Whether one of the first n messages of l is entry id of partition part. */
static bool msgs_has(const proj_msgs *l, size_t n, int part, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (l->v[i]->part == part && strcmp(l->v[i]->id, id) == 0)
            return true;
    return false;
}

/* Whether the field name r of a stream entry is name. */
static bool field_is(const redisReply *r, const char *name)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(name) &&
           memcmp(r->str, name, r->len) == 0;
}

/*
 * Makes messages of the entries of one stream's reply (an array of [id, [field, value...]]).
 * The entries of one reply are distinct, so only the messages into held before are looked
 * through for a duplicate (a batch of 2000 looked through itself: 2 million compares).
 */
static void collect(proj *p, int part, const redisReply *entries, proj_msgs *into)
{
    size_t before = into->n;
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1)
            continue;
        const char *id = e->element[0]->str;
        if (msgs_has(&p->retry, p->retry.n, part, id) || msgs_has(into, before, part, id) ||
            (into != &p->ahead && msgs_has(&p->ahead, p->ahead.n, part, id)))
            continue; /* already here (a reclaim of our own gap, due for retry, or of the batch
                         read ahead after a stall of claim_idle_ms) */
        proj_msg *m = calloc(1, sizeof(*m));
        if (!m)
            continue;
        m->part = part;
        size_t idlen =
            e->element[0]->len < sizeof(m->id) - 1 ? e->element[0]->len : sizeof(m->id) - 1;
        memcpy(m->id, id, idlen); /* m is zeroed: the id ends there */
        const redisReply *f = e->elements > 1 ? e->element[1] : NULL;
        const redisReply *val = NULL, *w = NULL;
        for (size_t k = 0; f && f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2) {
            if (field_is(f->element[k], STREAM_FIELD_EVENT))
                val = f->element[k + 1];
            if (field_is(f->element[k], STREAM_FIELD_WATERMARK))
                w = f->element[k + 1];
        }
        if (!f || f->type != REDIS_REPLY_ARRAY) { /* trimmed or deleted: nothing to apply */
            m->gone = true;
        } else if (!val && w) { /* the relay's watermark entry */
            m->wm = true;
            m->wm_ms = strtoll(w->str, NULL, 10);
        } else {
            m->rawlen = val ? val->len : 0;
            m->raw = malloc(m->rawlen + 1);
            if (m->raw && val) {
                memcpy(m->raw, val->str, m->rawlen);
                m->raw[m->rawlen] = 0;
            }
            m->ok = m->raw && val &&
                    proj_decode((const uint8_t *)m->raw, m->rawlen, &m->ev, m->why,
                                sizeof(m->why)) == 0;
            if (!m->raw || !val)
                snprintf(m->why, sizeof(m->why), "%s",
                         val ? "out of memory" : "no field " STREAM_FIELD_EVENT);
        }
        if (proj_msgs_push(into, m) != 0)
            proj_msg_free(m);
    }
}

/* The XREADGROUP of a read over every partition: argv points into p, literals, count, block. */
typedef struct read_cmd {
    const char *argv[9 + 2 * STREAM_PARTITIONS_MAX];
    size_t lens[9 + 2 * STREAM_PARTITIONS_MAX];
    char count[16], block[16];
    int argc;
} read_cmd;

/* Fills cmd: it blocks when may_block and not reading our own pending entries. */
static void read_cmd_init(read_cmd *cmd, const proj *p, bool may_block)
{
    int np = p->conf->partitions, argc = 0;
    snprintf(cmd->count, sizeof(cmd->count), "%d", p->conf->batch);
    snprintf(cmd->block, sizeof(cmd->block), "%d", p->read_pending ? 0 : p->conf->block_ms);
    const char *head[] = { "XREADGROUP",      "GROUP", STREAM_GROUP,
                           p->conf->consumer, "COUNT", cmd->count };
    for (int i = 0; i < 6; i++)
        cmd->argv[argc++] = head[i];
    if (!p->read_pending && may_block) {
        cmd->argv[argc++] = "BLOCK";
        cmd->argv[argc++] = cmd->block;
    }
    cmd->argv[argc++] = "STREAMS";
    for (int i = 0; i < np; i++)
        cmd->argv[argc++] = p->streams[i];
    for (int i = 0; i < np; i++)
        cmd->argv[argc++] = p->read_pending ? "0" : ">";
    for (int i = 0; i < argc; i++)
        cmd->lens[i] = strlen(cmd->argv[i]);
    cmd->argc = argc;
}

/* The reply r of a read (read_cmd) into messages of into; sets p->backlog. r stays ours. */
static int take_read(proj *p, const redisReply *r, proj_msgs *into)
{
    int np = p->conf->partitions;
    p->backlog = false;
    if (r->type == REDIS_REPLY_ERROR) {
        log_warn("XREADGROUP failed", LOG_STR("error", r->str));
        if (strncmp(r->str, "NOGROUP", 7) == 0) /* Redis lost the stream: start over */
            kv_reset(p->kv);
        return TALLY_EUNAVAIL;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        p->read_pending = false;
        return 0;
    }
    size_t before = into->n;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *s = r->element[i];
        if (s->type != REDIS_REPLY_ARRAY || s->elements != 2)
            continue;
        int part = -1;
        for (int k = 0; k < np; k++)
            if (strcmp(s->element[0]->str, p->streams[k]) == 0)
                part = k;
        if (part < 0)
            continue;
        collect(p, part, s->element[1], into);
        /* A partition gave all it was asked for: more are likely waiting. */
        if (s->element[1]->type == REDIS_REPLY_ARRAY &&
            s->element[1]->elements >= (size_t)p->conf->batch)
            p->backlog = true;
    }
    if (p->read_pending && into->n == before)
        p->read_pending = false; /* our pending list is done: new entries from now on */
    return 0;
}

int proj_read_batch(proj *p, proj_msgs *into, bool may_block)
{
    read_cmd cmd;
    read_cmd_init(&cmd, p, may_block);
    redisReply *r = proj_command_argv(p, cmd.argc, cmd.argv, cmd.lens);
    if (!r)
        return TALLY_EUNAVAIL;
    int rc = take_read(p, r, into);
    freeReplyObject(r);
    return rc;
}

int proj_read_ahead_send(proj *p)
{
    read_cmd cmd;
    read_cmd_init(&cmd, p, false); /* never blocking: it would hold up the commands behind it */
    if (redisAppendCommandArgv(kv_ctx(p->kv), cmd.argc, cmd.argv, cmd.lens) != REDIS_OK)
        return TALLY_EUNAVAIL;
    return proj_flush(p);
}

int proj_read_ahead_recv(proj *p, redisReply **out)
{
    redisContext *c = kv_ctx(p->kv);
    *out = NULL;
    for (;;) { /* as redisGetReply, but never writing what the caller has appended since */
        if (redisGetReplyFromReader(c, (void **)out) != REDIS_OK)
            return TALLY_EUNAVAIL;
        if (*out)
            return 0;
        if (redisBufferRead(c) != REDIS_OK)
            return TALLY_EUNAVAIL;
    }
}

int proj_read_ahead_take(proj *p, redisReply *r)
{
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) { /* the next turn's own read meets it and deals with it */
        log_warn("XREADGROUP (read ahead) failed", LOG_STR("error", r->str));
        p->backlog = false;
    } else {
        rc = take_read(p, r, &p->ahead);
        if (p->ahead.n > 0)
            metrics_inc(p->read_ahead, 1);
    }
    freeReplyObject(r);
    return rc;
}

int proj_claim(proj *p, proj_msgs *into)
{
    char idle[24];
    snprintf(idle, sizeof(idle), "%d", p->conf->claim_idle_ms);
    for (int part = 0; part < p->conf->partitions; part++) {
        char start[48] = "0-0";
        for (int round = 0; round < 100; round++) {
            char count[16];
            snprintf(count, sizeof(count), "%d", p->conf->batch);
            const char *argv[] = { "XAUTOCLAIM", p->streams[part],
                                   STREAM_GROUP, p->conf->consumer,
                                   idle,         start,
                                   "COUNT",      count };
            size_t lens[8];
            for (int i = 0; i < 8; i++)
                lens[i] = strlen(argv[i]);
            redisReply *r = proj_command_argv(p, 8, argv, lens);
            if (!r)
                return TALLY_EUNAVAIL;
            bool more = false;
            if (r->type == REDIS_REPLY_ERROR) {
                bool sys = proj_systemic(p, r, "reclaiming entries");
                freeReplyObject(r);
                return sys ? TALLY_EUNAVAIL : 0;
            }
            if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2) {
                size_t before = into->n;
                collect(p, part, r->element[1], into);
                /* Redis 7 drops entries trimmed from the stream out of the pending list itself
                   and names them here: each is a loss. */
                const redisReply *deleted = r->elements >= 3 ? r->element[2] : NULL;
                for (size_t k = 0;
                     deleted && deleted->type == REDIS_REPLY_ARRAY && k < deleted->elements; k++)
                    proj_lost(p, part, deleted->element[k]->str);
                snprintf(start, sizeof(start), "%s", r->element[0]->str);
                more = strcmp(start, "0-0") != 0;
                if (into->n > before)
                    log_info("reclaimed pending events", LOG_STR("stream", p->streams[part]),
                             LOG_INT("count", (long long)(into->n - before)));
            }
            freeReplyObject(r);
            if (!more)
                break;
        }
    }
    return 0;
}

void proj_due_retries(proj *p, proj_msgs *into, int64_t now)
{
    size_t keep = 0;
    for (size_t i = 0; i < p->retry.n; i++) {
        proj_msg *m = p->retry.v[i];
        if (m->next_ms <= now && proj_msgs_push(into, m) == 0)
            continue;
        p->retry.v[keep++] = m;
    }
    p->retry.n = keep;
}
