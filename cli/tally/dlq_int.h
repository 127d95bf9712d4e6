/*
 * dlq_int: what the two files of `tally dlq` share (dlq.c: reading the dead streams, list and
 * show; dlq_act.c: replay and drop, the subcommands that change Redis). Not a contract: only
 * these files include it. The design (what the projector leaves, why no script) is at the top
 * of dlq.c.
 */
#ifndef TALLY_DLQ_INT_H
#define TALLY_DLQ_INT_H

#include "tally_int.h"
#include "tally_text.h"

#include "kv.h"
#include "tally/v1/events.pb-c.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DLQ_PAGE        200    /* entries per XRANGE */
#define DLQ_MAX_ENTRIES 100000 /* entries one command holds in memory */
#define DLQ_REDIS_MS    10000  /* connect and reply timeout */
#define DLQ_LINE_LIMIT  (1u << 20)
#define DLQ_MARK_PAGE   1000 /* marks per HSCAN */
#define DLQ_STR_ARGS    16   /* arguments of dlq_run_str */

/* One dead entry as read from tally:dead:<p>. */
typedef struct dlq_entry {
    int part;
    char dead_id[48], orig_id[48];
    char *tenant, *reason;      /* "" when absent; owned */
    int64_t complaint, version; /* 0 when absent (reference data, undecodable bytes) */
    uint8_t *e;                 /* the envelope bytes; owned */
    size_t elen;
    Tally__V1__EventEnvelope *env; /* e decoded, or NULL; owned */
} dlq_entry;

typedef struct dlq_list {
    dlq_entry *v;
    size_t n, cap;
} dlq_list;

/* Which dead entries a command works on. */
typedef struct dlq_filter {
    const char *tenant;  /* NULL: any */
    int64_t complaint;   /* 0: any */
    const char *dead_id; /* NULL: any */
    int part_lo, part_hi;
} dlq_filter;

/* A command's Redis and what it says when it fails. */
typedef struct dlq {
    const cli *c;
    kv_conn *kv;
    int partitions;
    char err[512];
} dlq;

/* Frees what e owns (not e). */
void dlq_entry_release(dlq_entry *e);
/* Frees every entry of l and its array; l is empty after. */
void dlq_list_release(dlq_list *l);

/* A command's reply (caller frees), or NULL with d->err set (an I/O error, or an error reply). */
redisReply *dlq_run(dlq *d, int argc, const char **argv, const size_t *lens);
/* dlq_run() of NUL-terminated arguments; more than DLQ_STR_ARGS is refused (NULL, d->err). */
redisReply *dlq_run_str(dlq *d, int argc, const char **argv);

/* Prints d->err as the command's failure; returns EXIT_FAIL. */
int dlq_fail(dlq *d);

/*
 * Appends the dead entries that f selects, partition by partition in dead-stream order, in
 * pages (XRANGE ... COUNT DLQ_PAGE). 0, or -1 with d->err (also beyond DLQ_MAX_ENTRIES).
 */
int dlq_scan(dlq *d, const dlq_filter *f, dlq_list *out);

/*
 * Reads the options into d and f (need_target: --tenant with --complaint, or --id, is
 * required), connects d->kv (free it with kv_free), and reads the dead entries f selects into
 * l (dlq_scan) sorted by dlq_by_complaint. EXIT_OK, or the exit code
 * (printed; nothing left to free).
 */
int dlq_open(const cli *c, dlq *d, dlq_filter *f, dlq_list *l, bool need_target);

/* qsort order of complaints: tenant, then complaint (dlq_by_complaint's first keys). */
int dlq_by_tenant_complaint(const void *x, const void *y);
/* qsort order: tenant, complaint, version, then dead entry id. */
int dlq_by_complaint(const void *x, const void *y);
/* Whether a and b are of one complaint (reference and undecodable entries are each alone). */
bool dlq_same_complaint(const dlq_entry *a, const dlq_entry *b);

/* The fields every JSON object of an entry has, as members (after "{"). */
void dlq_json_entry_head(tx_buf *b, const dlq_entry *e, int64_t now);
/* Prints b and a newline to stdout and releases b; EXIT_FAIL when it was too long to build. */
int dlq_print_line(tx_buf *b);

#endif
