#include "read.h"

#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena --------------------------------------------------------------------------------- */

struct arena_block {
    arena_block *next;
    size_t used, cap;
    max_align_t data[];
};

#define ARENA_BLOCK (64 * 1024)

void *ar_alloc(arena *a, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    arena_block *h = a->head;
    if (!h || h->cap - h->used < n) {
        if (a->spare && a->spare->cap >= n) {
            h = a->spare;
            a->spare = h->next;
        } else {
            size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
            if (!(h = malloc(sizeof(*h) + cap))) {
                a->failed = 1;
                return NULL;
            }
            h->cap = cap;
        }
        h->used = 0;
        h->next = a->head;
        a->head = h;
    }
    void *p = (char *)h->data + h->used;
    h->used += n;
    memset(p, 0, n);
    return p;
}

char *ar_strdup(arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = ar_alloc(a, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

char *ar_printf(arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n >= 0 ? ar_alloc(a, (size_t)n + 1) : NULL;
    if (p) {
        va_start(ap, fmt);
        vsnprintf(p, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return p;
}

void ar_reset(arena *a)
{
    while (a->head) {
        arena_block *n = a->head->next;
        a->head->next = a->spare;
        a->spare = a->head;
        a->head = n;
    }
    a->failed = 0;
}

void ar_free(arena *a)
{
    ar_reset(a);
    while (a->spare) {
        arena_block *n = a->spare->next;
        free(a->spare);
        a->spare = n;
    }
}

/* ---- batch --------------------------------------------------------------------------------- */

void rd_init(rd_batch *b, arena *ar)
{
    memset(b, 0, sizeof(*b));
    b->ar = ar;
}

static void push_arg(rd_batch *b, const char *s, size_t len)
{
    if (b->nargs == b->capargs) {
        size_t cap = b->capargs ? b->capargs * 2 : 1024;
        rd_arg *v = realloc(b->args, cap * sizeof(*v));
        if (!v) {
            b->ar->failed = 1;
            return;
        }
        b->args = v;
        b->capargs = cap;
    }
    b->args[b->nargs++] = (rd_arg){ s, len };
}

size_t rd_cmd(rd_batch *b, const char *name)
{
    if (b->ncmds + 1 >= b->capcmds) {
        size_t cap = b->capcmds ? b->capcmds * 2 : 64;
        size_t *v = realloc(b->first, cap * sizeof(*v));
        if (!v) {
            b->ar->failed = 1;
            return b->ncmds ? b->ncmds - 1 : 0;
        }
        b->first = v;
        b->capcmds = cap;
    }
    b->first[b->ncmds] = b->nargs;
    push_arg(b, name, strlen(name));
    return b->ncmds++;
}

void rd_arg_static(rd_batch *b, const char *s)
{
    push_arg(b, s, strlen(s));
}

void rd_argf(rd_batch *b, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        b->ar->failed = 1;
        return;
    }
    char *s = ar_alloc(b->ar, (size_t)n + 1);
    if (!s)
        return;
    memcpy(s, buf, (size_t)n + 1);
    push_arg(b, s, (size_t)n);
}

int rd_exec(rd_batch *b, kv_conn *kv)
{
    if (b->ar->failed)
        return TALLY_ENOMEM;
    if (kv_connect(kv) != 0)
        return TALLY_EUNAVAIL;
    redisContext *c = kv_ctx(kv);
    c->reader->maxbuf = 0; /* keep the reply buffer between requests (hiredis frees it at 16 KiB) */
    if (b->nargs > b->capv) {
        const char **v = realloc(b->argv, b->nargs * sizeof(*v));
        if (v)
            b->argv = v;
        size_t *l = v ? realloc(b->lens, b->nargs * sizeof(*l)) : NULL;
        if (!l)
            return TALLY_ENOMEM;
        b->lens = l;
        b->capv = b->nargs;
    }
    const char **argv = b->argv;
    size_t *lens = b->lens;
    b->replies = calloc(b->ncmds ? b->ncmds : 1, sizeof(*b->replies));
    if (!b->replies)
        return TALLY_ENOMEM;
    for (size_t i = 0; i < b->nargs; i++) {
        argv[i] = b->args[i].s;
        lens[i] = b->args[i].len;
    }
    b->first[b->ncmds] = b->nargs;
    int rc = 0;
    for (size_t i = 0; i < b->ncmds && rc == 0; i++) {
        size_t f = b->first[i];
        if (redisAppendCommandArgv(c, (int)(b->first[i + 1] - f), argv + f, lens + f) != REDIS_OK)
            rc = TALLY_EUNAVAIL;
    }
    for (size_t i = 0; i < b->ncmds && rc == 0; i++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK || !r)
            rc = TALLY_EUNAVAIL;
        b->replies[i] = r;
    }
    if (rc != 0)
        kv_reset(kv);
    return rc;
}

void rd_reset(rd_batch *b)
{
    for (size_t i = 0; b->replies && i < b->ncmds; i++)
        if (b->replies[i])
            freeReplyObject(b->replies[i]);
    free(b->replies);
    b->replies = NULL;
    b->nargs = 0;
    b->ncmds = 0;
}

void rd_free(rd_batch *b)
{
    rd_reset(b);
    free(b->args);
    free(b->first);
    free(b->argv);
    free(b->lens);
    memset(b, 0, sizeof(*b));
}

const redisReply *rd_reply(const rd_batch *b, size_t i)
{
    return b->replies && i < b->ncmds ? b->replies[i] : NULL;
}

int64_t rd_int(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

int64_t rd_elem_int(const redisReply *r, size_t i)
{
    return r && r->type == REDIS_REPLY_ARRAY && i < r->elements ? rd_int(r->element[i]) : 0;
}

const char *rd_str(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING ? r->str : NULL;
}
