/*
 * verify_int: the pure part of verify (verify_model.c), exposed for verify.c and the unit tests.
 *
 * A verify_model is the expected content of one tenant's read-model keys (docs/keyspace.md):
 * the keys to read (fixed ones, then per month and per day of the window), and for each the
 * expected fields, folded from facts (an applied complaint as of its applied version, a
 * resolution in the window, a reference-data value). vm_compare() compares one key with its
 * Redis reply by the key's kind:
 *   VK_COUNT_HASH, VK_COUNT_ZSET  counters: an absent field is 0;
 *   VK_STR_HASH                   strings: absent differs from any value;
 *   VK_SCORE_ZSET                 the open backlog: each member present, with its exact score.
 */
#ifndef TALLY_VERIFY_INT_H
#define TALLY_VERIFY_INT_H

#include "verify.h"

#include <hiredis/hiredis.h>

enum vm_kind { VK_COUNT_HASH, VK_COUNT_ZSET, VK_STR_HASH, VK_SCORE_ZSET };

/* The fixed keys, then VM_PER_MONTH keys per month and VM_PER_DAY keys per day. */
enum { VM_ST, VM_OPEN, VM_OD, VM_AO, VM_TENANT, VM_CATS, VM_AGENTS, VM_FIXED };
enum { VM_M_D, VM_M_KC, VM_M_LB, VM_M_HMA, VM_M_HMK, VM_M_HMP, VM_M_HMKP, VM_M_AD, VM_PER_MONTH };
enum { VM_D_HDA, VM_D_HDK, VM_D_HDP, VM_D_HDKP, VM_D_AD, VM_PER_DAY };

typedef struct vm_key {
    char *name;       /* the full Redis key */
    const char *view; /* static */
    int kind;
    int32_t head; /* first expected entry of this key, -1 for none */
} vm_key;

typedef struct vm_entry {
    uint32_t key;
    char *field;
    int64_t n; /* counters and scores */
    char *s;   /* VK_STR_HASH */
    int32_t next;
    bool seen;
} vm_entry;

typedef struct verify_model {
    char tenant[72];
    int64_t first, last; /* the window, day numbers */
    int first_month;     /* y * 12 + m - 1 of first */
    int nmonths, ndays;
    vm_key *keys;
    size_t nkeys;
    vm_entry *e;
    size_t ne, cape;
    uint32_t *slots; /* open addressing: entry index + 1, 0 = empty */
    size_t nslots;
    int err; /* the first TALLY_ENOMEM, sticky */
} verify_model;

/* An applied complaint as of the version the read model applied. */
typedef struct verify_complaint {
    int64_t id;
    int status, priority;
    const char *category;
    const char *agent; /* "" unassigned */
    int64_t created_ms;
    int64_t day; /* the local day of its creation (day number) */
} verify_complaint;

/* A resolution the read model applied. */
typedef struct verify_resolution {
    int64_t day;
    const char *category;
    int priority;
    int64_t secs;
    const char *agent; /* "" unassigned */
} verify_resolution;

/* P = "{t:<tenant>}:<gen>:"; window [first, last]. 0 or TALLY_ENOMEM / TALLY_EINVAL. */
int vm_init(verify_model *m, const char *tenant, const char *gen, int64_t first, int64_t last);
void vm_release(verify_model *m);

/* Fold facts in; 0 or TALLY_ENOMEM (sticky in m->err). */
int vm_complaint(verify_model *m, const verify_complaint *c);
int vm_resolution(verify_model *m, const verify_resolution *r);
/* key is VM_TENANT, VM_CATS or VM_AGENTS. */
int vm_ref(verify_model *m, int key, const char *field, const char *value);

/* The index of the key named name, or -1. */
long vm_find_key(const verify_model *m, const char *name);

/*
 * Compares key i with its reply (of HGETALL, or ZRANGE 0 -1 WITHSCORES for zsets; an error
 * reply is a difference of the whole key). Calls fn for each difference; returns how many,
 * and adds the fields compared to *fields.
 */
int64_t vm_compare(verify_model *m, size_t i, const redisReply *r, verify_diff_fn fn, void *arg,
                   int64_t *fields);

#endif
