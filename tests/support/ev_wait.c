/* ev_wait: waiting for the projector, and reading its metrics. See ev_wait.h. */
#include "ev_wait.h"

#include "ev_int.h"
#include "proc.h"
#include "tclock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- waiting for the projector ------------------------------------------------------------ */

double ev_metric(int http_port, const char *name)
{
    size_t cap = 1 << 20, nlen = strlen(name);
    char *body = xrealloc(NULL, cap);
    double v = -1;
    if (proc_http_get(http_port, "/metrics", body, cap) == 200)
        for (const char *l = body; *l && v < 0; l += strcspn(l, "\n"), l += *l == '\n')
            if (!strncmp(l, name, nlen) && l[nlen] == ' ')
                v = strtod(l + nlen + 1, NULL);
    free(body);
    return v;
}

/* The value of field name in a flat [name, value, ...] reply, or NULL. */
static const redisReply *field_of(const redisReply *r, const char *name)
{
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        if (r->element[i]->str && !strcmp(r->element[i]->str, name))
            return r->element[i + 1];
    return NULL;
}

int ev_group_state(redisContext *c, const char *stream, int64_t *pending, int64_t *undelivered)
{
    redisReply *s = redisCommand(c, "XINFO STREAM %s", stream);
    redisReply *g =
        s && s->type == REDIS_REPLY_ARRAY ? redisCommand(c, "XINFO GROUPS %s", stream) : NULL;
    const redisReply *last = field_of(s, "last-generated-id");
    int rc = -1;
    *pending = *undelivered = 0;
    if (s && s->type == REDIS_REPLY_ERROR && strstr(s->str, "no such key"))
        rc = 1;
    for (size_t i = 0; last && g && g->type == REDIS_REPLY_ARRAY && i < g->elements; i++) {
        const redisReply *name = field_of(g->element[i], "name");
        const redisReply *pend = field_of(g->element[i], "pending");
        const redisReply *lag = field_of(g->element[i], "lag");
        const redisReply *delivered = field_of(g->element[i], "last-delivered-id");
        if (!name || strcmp(name->str, "projector") != 0 || !pend || !delivered)
            continue;
        rc = 0;
        *pending = pend->integer;
        /* at the stream's end, or behind by lag (unknown after deletions: at least 1) */
        if (strcmp(delivered->str, last->str) == 0)
            *undelivered = 0;
        else
            *undelivered =
                lag && lag->type == REDIS_REPLY_INTEGER && lag->integer > 0 ? lag->integer : 1;
    }
    if (s)
        freeReplyObject(s);
    if (g)
        freeReplyObject(g);
    return rc;
}

bool ev_group_idle(redisContext *c, const char *stream)
{
    int64_t pending, undelivered;
    return ev_group_state(c, stream, &pending, &undelivered) == 0 && pending == 0 &&
           undelivered == 0;
}

int ev_wait_applied(int redis_port, const ev_model *m, int timeout_ms)
{
    int64_t idle_since = 0;
    for (int64_t until = now_mono_ms() + timeout_ms; now_mono_ms() < until; tclock_sleep_ms(50)) {
        redisContext *c =
            redisConnectWithTimeout("127.0.0.1", redis_port, (struct timeval){ .tv_sec = 2 });
        if (c && c->err) {
            redisFree(c);
            c = NULL;
        }
        bool idle = c && ev_group_idle(c, EV_STREAM), done = idle; /* idle first: then final */
        for (int t = 0; done && t < m->ntenants; t++) {
            redisReply *e = redisCommand(c, "HGET {t:%s}:1:fresh events", m->tenants[t]);
            int64_t want = ev_model_events(m, m->tenants[t]), got = 0;
            done =
                e && (e->type == REDIS_REPLY_STRING
                          ? ev_parse_i64(e->str, &got) && got <= want && got >= want - m->slack[t]
                          : want == 0);
            if (e)
                freeReplyObject(e);
        }
        if (c)
            redisFree(c);
        if (done)
            return 0;
        /* Everything read and acked, yet other counts: they will not change any more. */
        idle_since = idle ? (idle_since ? idle_since : now_mono_ms()) : 0;
        if (idle_since && now_mono_ms() - idle_since > 1000)
            return -2;
    }
    return -1;
}
