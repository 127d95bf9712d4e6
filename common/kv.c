#include "kv.h"

#include "err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kv_conn {
    cfg_redis addr;
    struct timeval timeout;
    redisContext *ctx;
    unsigned long connects;
    char err[512];
};

kv_conn *kv_new(const cfg_redis *r, int timeout_ms)
{
    kv_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->addr = *r;
    c->timeout.tv_sec = timeout_ms / 1000;
    c->timeout.tv_usec = (timeout_ms % 1000) * 1000;
    return c;
}

void kv_free(kv_conn *c)
{
    if (!c)
        return;
    if (c->ctx)
        redisFree(c->ctx);
    free(c);
}

void kv_reset(kv_conn *c)
{
    if (c->ctx) {
        if (c->ctx->err)
            snprintf(c->err, sizeof(c->err), "%.255s:%d: %.128s", c->addr.host, c->addr.port,
                     c->ctx->errstr);
        redisFree(c->ctx);
    }
    c->ctx = NULL;
}

int kv_connect(kv_conn *c)
{
    if (c->ctx && !c->ctx->err)
        return 0;
    kv_reset(c);
    c->ctx = redisConnectWithTimeout(c->addr.host, c->addr.port, c->timeout);
    if (!c->ctx || c->ctx->err) {
        if (!c->ctx)
            snprintf(c->err, sizeof(c->err), "out of memory");
        kv_reset(c);
        return TALLY_EUNAVAIL;
    }
    redisSetTimeout(c->ctx, c->timeout);
    redisEnableKeepAlive(c->ctx);
    if (kv_hello(c->ctx, &c->addr, c->err, sizeof(c->err)) != 0) {
        char why[sizeof(c->err)];
        snprintf(why, sizeof(why), "%s", c->err);
        kv_reset(c);
        snprintf(c->err, sizeof(c->err), "%s", why);
        return TALLY_EUNAVAIL;
    }
    c->err[0] = '\0';
    c->connects++;
    return 0;
}

int kv_hello(redisContext *c, const cfg_redis *r, char *err, size_t errlen)
{
    redisReply *rep = NULL;
    if (r->password[0]) {
        rep = r->user[0] ? redisCommand(c, "AUTH %s %s", r->user, r->password)
                         : redisCommand(c, "AUTH %s", r->password);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "AUTH as %s: %s", r->user[0] ? r->user : "default",
                     rep ? rep->str : c->errstr);
            if (rep)
                freeReplyObject(rep);
            return TALLY_EUNAVAIL;
        }
        freeReplyObject(rep);
    }
    if (r->db != 0) {
        rep = redisCommand(c, "SELECT %d", r->db);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            snprintf(err, errlen, "SELECT %d: %s", r->db, rep ? rep->str : c->errstr);
            if (rep)
                freeReplyObject(rep);
            return TALLY_EUNAVAIL;
        }
        freeReplyObject(rep);
    }
    return 0;
}

unsigned long kv_connects(const kv_conn *c)
{
    return c->connects;
}

redisContext *kv_ctx(kv_conn *c)
{
    return c->ctx;
}

const char *kv_errstr(const kv_conn *c)
{
    return c->err;
}

/* ---- Redis facts (kv.h) ------------------------------------------------------------------- */

const char *const kv_systemic_kinds[KV_SYSTEMIC_KINDS] = {
    "OOM",        "READONLY",   "MISCONF",     "LOADING",  "BUSY",
    "NOREPLICAS", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOPERM"
};

static bool has_prefix(const char *s, const char *word)
{
    size_t n = strlen(word);
    return strncmp(s, word, n) == 0 && (s[n] == ' ' || s[n] == '\0');
}

const char *kv_systemic_kind(const char *error)
{
    for (int i = 0; error && i < KV_SYSTEMIC_KINDS; i++)
        if (has_prefix(error, kv_systemic_kinds[i]))
            return kv_systemic_kinds[i];
    return NULL;
}

bool kv_reconnect_on(const char *error)
{
    return error && (has_prefix(error, "READONLY") || has_prefix(error, "MASTERDOWN") ||
                     has_prefix(error, "LOADING"));
}

bool kv_id_parse(const char *s, kv_id *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return false;
    out->ms = strtoull(s, &end, 10);
    out->seq = 0;
    if (*end == '\0')
        return true;
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return false;
    out->seq = strtoull(end + 1, &end, 10);
    return *end == '\0';
}

int kv_id_cmp(kv_id a, kv_id b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    return a.seq < b.seq ? -1 : a.seq > b.seq;
}
