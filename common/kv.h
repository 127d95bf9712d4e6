/*
 * kv: one Redis connection for one thread (hiredis, blocking with timeouts), reconnected on
 * demand. Commands are the caller's (redisCommand / redisAppendCommand on kv_ctx()); after a
 * reply of NULL the context is unusable: call kv_reset() and the next kv_connect() dials again.
 */
#ifndef TALLY_KV_H
#define TALLY_KV_H

#include "cfg.h"

#include <hiredis/hiredis.h>

typedef struct kv_conn kv_conn;

/* r is copied; timeout_ms bounds connecting and every reply. Caller frees with kv_free. */
kv_conn *kv_new(const cfg_redis *r, int timeout_ms);
void kv_free(kv_conn *c);

/* Connects and SELECTs the db if not connected. 0, or TALLY_EUNAVAIL (see kv_errstr). */
int kv_connect(kv_conn *c);

/* The live context; NULL when not connected. */
redisContext *kv_ctx(kv_conn *c);

/* Drops the connection (after an I/O error); keeps the reason for kv_errstr. */
void kv_reset(kv_conn *c);

const char *kv_errstr(const kv_conn *c);

/*
 * How many connections kv_connect() has made so far: a caller that sets up state per
 * connection (or per Redis that may have restarted) compares it with the value it last saw.
 */
unsigned long kv_connects(const kv_conn *c);

#endif
