/*
 * read: the pieces of one query's Redis round trip.
 *
 * arena: a request's memory (reply messages, strings), freed at once when the call ends.
 * rd_batch: the commands of one round trip, built argument by argument, sent as one pipeline;
 * replies[i] answers command i. Nothing here knows the keyspace.
 */
#ifndef TALLY_READ_H
#define TALLY_READ_H

#include "kv.h"

#include <stddef.h>
#include <stdint.h>

typedef struct arena_block arena_block;
typedef struct arena {
    arena_block *head;
    arena_block *spare; /* blocks of earlier requests, kept for the next (see ar_reset) */
    int failed;         /* an allocation failed: the request answers RESOURCE_EXHAUSTED */
} arena;

/* Zeroed memory that lives until ar_free; NULL (and failed set) when out of memory. */
void *ar_alloc(arena *a, size_t n);
char *ar_strdup(arena *a, const char *s);
char *ar_printf(arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Forgets everything allocated but keeps the memory for the next request. */
void ar_reset(arena *a);
void ar_free(arena *a);

typedef struct rd_arg {
    const char *s;
    size_t len;
} rd_arg;

typedef struct rd_batch {
    arena *ar;
    rd_arg *args;
    size_t nargs, capargs;
    size_t *first; /* command i's arguments: args[first[i] .. first[i + 1]) */
    size_t ncmds, capcmds;
    redisReply **replies; /* after rd_exec: one per command */
    const char **argv;    /* rd_exec's argument vectors, kept between requests */
    size_t *lens, capv;
} rd_batch;

void rd_init(rd_batch *b, arena *ar);
/* Starts command i (returned) with its name. */
size_t rd_cmd(rd_batch *b, const char *name);
/* Appends an argument to the last command (copied when volatile). */
void rd_arg_static(rd_batch *b, const char *s);
void rd_argf(rd_batch *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Sends every command in one pipeline and reads every reply. 0, TALLY_ENOMEM, or
 * TALLY_EUNAVAIL (the connection is reset; see kv_errstr).
 */
int rd_exec(rd_batch *b, kv_conn *kv);
/* Frees the replies and forgets the commands; keeps its arrays for the next request. */
void rd_reset(rd_batch *b);
void rd_free(rd_batch *b);

/* Reply helpers: NULL-safe; a missing or non-numeric value is 0. */
const redisReply *rd_reply(const rd_batch *b, size_t i);
int64_t rd_int(const redisReply *r);                /* an integer or a numeric string */
int64_t rd_elem_int(const redisReply *r, size_t i); /* element i of an array reply */
const char *rd_str(const redisReply *r);            /* a string reply, or NULL */

#endif
