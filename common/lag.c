#include "lag.h"

#include "err.h"
#include "kv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMDS_PER_PART 5 /* XLEN, XINFO GROUPS, XPENDING, XLEN dead, HGET tally:wm */

int64_t lag_age_ms(int64_t now_ms, int64_t t_ms)
{
    return t_ms > 0 && now_ms > t_ms ? now_ms - t_ms : 0;
}

/* The value of field name in a flat [name, value, ...] reply, or NULL. */
static const redisReply *field_of(const redisReply *r, const char *name)
{
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, name) == 0)
            return r->element[i + 1];
    return NULL;
}

bool lag_parse_groups(const redisReply *r, lag_part *p, char *last_delivered, size_t len)
{
    p->group = false;
    p->undelivered = 0;
    last_delivered[0] = '\0';
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *name = field_of(r->element[i], "name");
        if (!name || name->type != REDIS_REPLY_STRING || strcmp(name->str, STREAM_GROUP) != 0)
            continue;
        const redisReply *ld = field_of(r->element[i], "last-delivered-id");
        const redisReply *lag = field_of(r->element[i], "lag");
        p->group = true;
        if (ld && ld->type == REDIS_REPLY_STRING)
            snprintf(last_delivered, len, "%s", ld->str);
        if (lag && lag->type == REDIS_REPLY_INTEGER && lag->integer >= 0) {
            p->undelivered = lag->integer;
            return true;
        }
        return false;
    }
    return false;
}

/* A value of tally:wm: a decimal integer >= 1 (Unix ms), or 0 when it is anything else. */
static int64_t wm_value(const redisReply *r)
{
    kv_id k;
    bool ok = r && r->type == REDIS_REPLY_STRING && !strchr(r->str, '-') && kv_id_parse(r->str, &k);
    return ok && k.ms >= 1 && k.ms <= INT64_MAX ? (int64_t)k.ms : 0;
}

/* Whether an error reply only says that the stream or its group does not exist. */
static bool missing(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR &&
           (strstr(r->str, "no such key") || strncmp(r->str, "NOGROUP", 7) == 0);
}

static void set_oldest(lag_part *p, const char *id)
{
    kv_id k;
    snprintf(p->oldest_id, sizeof(p->oldest_id), "%s", id);
    p->oldest_ms = kv_id_parse(id, &k) ? (int64_t)k.ms : 0;
}

/* Reads n replies of c into v (NULL-filled first). 0, or TALLY_EUNAVAIL with err. */
static int read_replies(redisContext *c, redisReply **v, size_t n, char *err, size_t errlen)
{
    memset(v, 0, n * sizeof(*v));
    for (size_t i = 0; i < n; i++)
        if (redisGetReply(c, (void **)&v[i]) != REDIS_OK || !v[i]) {
            snprintf(err, errlen, "Redis: %s", c->errstr[0] ? c->errstr : "connection lost");
            return TALLY_EUNAVAIL;
        }
    return 0;
}

static void free_replies(redisReply **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i])
            freeReplyObject(v[i]);
}

/* The partition's replies r[0..CMDS_PER_PART) into p. 0, or TALLY_EINTERNAL with err. */
static int take_part(int part, redisReply **r, lag_part *p, char *ld, size_t ldlen, bool *known,
                     char *err, size_t errlen)
{
    /* A damaged tally:wm (not a hash) leaves the watermark unknown, as query-svc reads it. */
    for (int k = 0; k < CMDS_PER_PART - 1; k++)
        if (r[k]->type == REDIS_REPLY_ERROR && !missing(r[k])) {
            snprintf(err, errlen, "Redis, partition %d: %s", part, r[k]->str);
            return TALLY_EINTERNAL;
        }
    p->length = r[0]->type == REDIS_REPLY_INTEGER ? r[0]->integer : 0;
    p->stream = r[1]->type == REDIS_REPLY_ARRAY;
    *known = lag_parse_groups(r[1], p, ld, ldlen);
    if (r[2]->type == REDIS_REPLY_ARRAY && r[2]->elements >= 2 &&
        r[2]->element[0]->type == REDIS_REPLY_INTEGER) {
        p->pending = r[2]->element[0]->integer;
        if (p->pending > 0 && r[2]->element[1]->type == REDIS_REPLY_STRING)
            set_oldest(p, r[2]->element[1]->str);
    }
    p->dead = r[3]->type == REDIS_REPLY_INTEGER ? r[3]->integer : 0;
    p->wm_set = r[4]->type != REDIS_REPLY_NIL;
    p->wm_ms = wm_value(r[4]);
    return 0;
}

/*
 * The second pipeline: for each partition whose lag Redis did not know, the undelivered
 * entries counted (bounded); for each with nothing pending and entries undelivered, the first
 * of them. 0 or TALLY_EUNAVAIL.
 */
static int read_undelivered(redisContext *c, lag_sample *out, char (*ld)[LAG_ID_MAX],
                            const bool *known, char *err, size_t errlen)
{
    int want[STREAM_PARTITIONS_MAX], n = 0;
    for (int p = 0; p < out->partitions; p++) {
        lag_part *lp = &out->part[p];
        if (!lp->group || !ld[p][0] || (known[p] && (lp->pending > 0 || lp->undelivered == 0)))
            continue;
        char key[STREAM_KEY_MAX], from[LAG_ID_MAX + 1], count[16];
        stream_key(p, key, sizeof(key));
        snprintf(from, sizeof(from), "(%s", ld[p]);
        snprintf(count, sizeof(count), "%d", known[p] ? 1 : LAG_COUNT_MAX);
        const char *argv[] = { "XRANGE", key, from, "+", "COUNT", count };
        redisAppendCommandArgv(c, 6, argv, NULL);
        want[n++] = p;
    }
    redisReply *r[STREAM_PARTITIONS_MAX];
    int rc = read_replies(c, r, (size_t)n, err, errlen);
    for (int i = 0; rc == 0 && i < n; i++) {
        lag_part *lp = &out->part[want[i]];
        if (r[i]->type != REDIS_REPLY_ARRAY)
            continue; /* the stream went away meanwhile: what the first read saw stands */
        if (!known[want[i]]) {
            lp->undelivered = (int64_t)r[i]->elements;
            lp->undelivered_counted = true;
            lp->undelivered_capped = r[i]->elements >= LAG_COUNT_MAX;
        }
        const redisReply *e = r[i]->elements ? r[i]->element[0] : NULL;
        if (lp->pending == 0 && e && e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
            e->element[0]->type == REDIS_REPLY_STRING)
            set_oldest(lp, e->element[0]->str);
    }
    free_replies(r, (size_t)n);
    return rc;
}

int lag_read(redisContext *c, int partitions, lag_sample *out, char *err, size_t errlen)
{
    enum { NR = 1 + CMDS_PER_PART * STREAM_PARTITIONS_MAX };
    redisReply **r;
    char(*ld)[LAG_ID_MAX];
    bool known[STREAM_PARTITIONS_MAX];
    int rc;
    if (partitions < 1 || partitions > STREAM_PARTITIONS_MAX) {
        snprintf(err, errlen, "partitions: %d is out of range 1..%d", partitions,
                 STREAM_PARTITIONS_MAX);
        return TALLY_EINVAL;
    }
    memset(out, 0, sizeof(*out));
    out->partitions = partitions;
    r = calloc(NR, sizeof(*r));
    ld = calloc(STREAM_PARTITIONS_MAX, sizeof(*ld));
    if (!r || !ld) {
        free(r);
        free(ld);
        snprintf(err, errlen, "out of memory");
        return TALLY_ENOMEM;
    }
    redisAppendCommand(c, "TIME");
    for (int p = 0; p < partitions; p++) {
        char key[STREAM_KEY_MAX], dead[STREAM_KEY_MAX];
        stream_key(p, key, sizeof(key));
        stream_dead_key(p, dead, sizeof(dead));
        redisAppendCommand(c, "XLEN %s", key);
        redisAppendCommand(c, "XINFO GROUPS %s", key);
        redisAppendCommand(c, "XPENDING %s %s", key, STREAM_GROUP);
        redisAppendCommand(c, "XLEN %s", dead);
        redisAppendCommand(c, "HGET %s %d", STREAM_WM_KEY, p);
    }
    size_t n = 1 + (size_t)CMDS_PER_PART * (size_t)partitions;
    rc = read_replies(c, r, n, err, errlen);
    if (rc == 0 && (r[0]->type != REDIS_REPLY_ARRAY || r[0]->elements != 2)) {
        snprintf(err, errlen, "Redis: TIME: %s",
                 r[0]->type == REDIS_REPLY_ERROR ? r[0]->str : "an unexpected reply");
        rc = TALLY_EINTERNAL;
    }
    if (rc == 0)
        out->now_ms = strtoll(r[0]->element[0]->str, NULL, 10) * 1000 +
                      strtoll(r[0]->element[1]->str, NULL, 10) / 1000;
    for (int p = 0; rc == 0 && p < partitions; p++)
        rc = take_part(p, r + 1 + CMDS_PER_PART * p, &out->part[p], ld[p], LAG_ID_MAX, &known[p],
                       err, errlen);
    free_replies(r, n);
    if (rc == 0)
        rc = read_undelivered(c, out, ld, known, err, errlen);
    free(r);
    free(ld);
    return rc;
}
