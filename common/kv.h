/*
 * kv: one Redis connection for one thread (hiredis, blocking with timeouts), reconnected on
 * demand. Commands are the caller's (redisCommand / redisAppendCommand on kv_ctx()); after a
 * reply of NULL the context is unusable: call kv_reset() and the next kv_connect() dials again.
 */
#ifndef TALLY_KV_H
#define TALLY_KV_H

#include "cfg.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct kv_conn kv_conn;

/* r is copied; timeout_ms bounds connecting and every reply. Caller frees with kv_free. */
kv_conn *kv_new(const cfg_redis *r, int timeout_ms);
void kv_free(kv_conn *c);

/*
 * Connects, AUTHs when r has a password, and SELECTs the db, if not connected. 0, or
 * TALLY_EUNAVAIL (see kv_errstr: a refused AUTH names the user, never the password).
 */
int kv_connect(kv_conn *c);

/*
 * On a new connection c: AUTH [user] password when r has a password, then SELECT r->db when it
 * is not 0. 0, or TALLY_EUNAVAIL with err set ("AUTH as user: WRONGPASS ..."); the connection
 * is then the caller's to free.
 */
int kv_hello(redisContext *c, const cfg_redis *r, char *err, size_t errlen);

/* The live context; NULL when not connected. */
redisContext *kv_ctx(kv_conn *c);

/* Drops the connection (after an I/O error); keeps the reason for kv_errstr. */
void kv_reset(kv_conn *c);

const char *kv_errstr(const kv_conn *c);

/*
 * Redis facts every Redis user here needs. A systemic error reply (OOM, READONLY, MISCONF,
 * LOADING, BUSY, NOREPLICAS, MASTERDOWN, CLUSTERDOWN, TRYAGAIN; NOPERM, an ACL user without a
 * command or key it needs) says that Redis cannot take writes now, whatever the command: never
 * the command's own fault, never to be taken as done.
 * kv_systemic_kind names it by its first word, or returns NULL for any other error.
 */
#define KV_SYSTEMIC_KINDS 10
extern const char *const kv_systemic_kinds[KV_SYSTEMIC_KINDS];
const char *kv_systemic_kind(const char *error);

/* Whether an error reply should also drop the connection (READONLY, MASTERDOWN, LOADING: a
   connection pinned to a demoted primary or a restarting server is dialled again). */
bool kv_reconnect_on(const char *error);

/* A stream entry id "ms-seq". */
typedef struct kv_id {
    uint64_t ms, seq;
} kv_id;

/* Parses "ms-seq" (or "ms"). false if malformed. */
bool kv_id_parse(const char *s, kv_id *out);

/* <0, 0, >0 as a orders before, equal to, after b. */
int kv_id_cmp(kv_id a, kv_id b);

/*
 * How many connections kv_connect() has made so far: a caller that sets up state per
 * connection (or per Redis that may have restarted) compares it with the value it last saw.
 */
unsigned long kv_connects(const kv_conn *c);

#endif
