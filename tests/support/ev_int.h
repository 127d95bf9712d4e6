/*
 * ev_int: what the parts of the events harness (ev_gen.c, ev_model.c, ev_wait.c) share and the
 * tests do not see: the event type and status numbers, allocation that ends the test when memory
 * runs out, and the model's layout.
 */
#ifndef TALLY_TEST_EV_INT_H
#define TALLY_TEST_EV_INT_H

#include "ev_model.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { T_CREATED = 1, T_ASSIGNED = 2, T_STATUS = 3, T_TENANT = 10, T_CATEGORY = 11, T_AGENT = 12 };
enum { S_OPEN = 1, S_IN_PROGRESS = 2, S_RESOLVED = 3, S_CLOSED = 4 };

/* Test support: running out of memory ends the test at once. */
static inline void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();
    return p;
}

static inline char *xstrdup(const char *s)
{
    return strcpy(xrealloc(NULL, strlen(s) + 1), s);
}

/* One field of one key: a counter (kind 'c'), text ('s'), a zset member ('z'), ... */
typedef struct mrec {
    char *key, *field, *s;
    int64_t n;
    char kind;
} mrec;

struct ev_model {
    mrec *v;
    size_t n, cap;
    size_t *slots, nslots; /* open addressing over v: index + 1, 0 = empty */
    int ntenants;
    char tenants[EV_MAX_TENANTS][72];
    int64_t renames[EV_MAX_TENANTS]; /* reference events after the entity's first */
    int64_t slack[EV_MAX_TENANTS];   /* how many fewer fresh.events are accepted */
};

/* s as a whole decimal int64. */
static inline bool ev_parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    *out = strtoll(s, &end, 10);
    return *s && !*end && errno == 0;
}

#endif
