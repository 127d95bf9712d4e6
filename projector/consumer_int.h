/*
 * consumer internals shared by the files of the projector's loop (contract in consumer.h). Not
 * a contract: only these files include it.
 *
 *   consumer.c         the loop (proj_run), its readiness and heartbeat, its metrics
 *   consumer_redis.c   the connection: commands, systemic errors, the versioned function, the
 *                      maxmemory-policy check, the groups
 *   consumer_read.c    messages, reading (XREADGROUP), reclaiming (XAUTOCLAIM), the retry queue
 *   consumer_apply.c   applying a batch (pipelined FCALLs) and each message's fate: acked,
 *                      queued for a retry, or parked
 *   consumer_park.c    what ends a message without an apply: the dead letters, the report of
 *                      lost entries to the relay, the XACK
 *   consumer_group.c   the group's housekeeping: the pending sample, the watermark, dead consumers
 *
 * A message's life (each arrow names the functions that move it):
 *
 *   read       -> decoded, refused, watermark or gone      [collect: proj_read_batch, proj_claim]
 *   decoded    -> applied or duplicate -> acked            [apply, proj_handle, proj_ack]
 *   decoded    -> gap or failure -> retry queue            [apply, proj_handle]
 *   decoded    -> parked -> acked (behind a parked event   [apply, proj_park, proj_ack]
 *                 of its complaint, or invalid)
 *   retry      -> decoded again, when due                  [proj_due_retries]
 *   retry      -> parked (a gap older than gap_wait_ms,    [proj_handle, proj_park]
 *                 or max_attempts failures)
 *   retry full -> left pending, reclaimed later            [proj_handle, proj_claim]
 *   refused    -> parked -> acked                          [proj_park, proj_ack]
 *   watermark  -> acked, a candidate of tally:wm           [proj_handle, proj_settle_watermarks]
 *   gone       -> reported to the relay -> acked           [proj_lost, proj_report_lost, proj_ack]
 * A message another projector reclaimed meanwhile is forgotten unacked (proj_park says 1), and
 * an error of Redis leaves the rest of the batch pending, read again after the reconnect.
 *
 * Everything runs on the loop's one thread, with one Redis connection (kv is not thread-safe).
 */
#ifndef TALLY_CONSUMER_INT_H
#define TALLY_CONSUMER_INT_H

#include "backoff.h"
#include "consumer.h"
#include "decode.h"
#include "kv.h"
#include "metrics.h"
#include "pipeline.h"
#include "stream.h"
#include "view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RETRY_MAX      10000 /* gaps and failures kept in memory for another try */
#define RETRY_EVERY_MS 200   /* first retry of a gap; later ones back off to 2 s */

/* One stream entry read and not yet acked. */
typedef struct proj_msg {
    int part;
    char id[48];
    uint8_t *raw; /* the envelope bytes, kept for parking */
    size_t rawlen;
    proj_event ev;
    bool ok;   /* decoded */
    bool gone; /* trimmed or deleted from the stream: a loss to report, then acked */
    bool wm;   /* a watermark entry (field w, no e): acked, remembered as a candidate */
    int64_t wm_ms;
    char why[160]; /* why it was refused, when not ok */
    bool solo;     /* failed alone: retried alone */
    int attempts;  /* failed applies */
    int64_t first_ms, next_ms;
} proj_msg;

/* A growable list of messages; it owns those it holds. */
typedef struct proj_msgs {
    proj_msg **v;
    size_t n, cap;
} proj_msgs;

/* The per-partition gauges of the lag sample (label partition="<p>"), by PG_* index. */
enum { PG_LENGTH, PG_UNDELIVERED, PG_PENDING, PG_DEAD, PG_OLDEST_AGE, PG_WM_AGE, PG_COUNT };
typedef struct proj_part_gauges {
    metrics_gauge *g[PG_COUNT];
} proj_part_gauges;

/* The loop's state. */
typedef struct proj {
    const proj_config *conf;
    kv_conn *kv;
    char streams[STREAM_PARTITIONS_MAX][STREAM_KEY_MAX];
    bool read_pending;      /* after a (re)connect: our own pending entries first */
    bool backlog;           /* the last read gave a partition all it asked for */
    proj_msgs ahead;        /* the next batch, read while the current one was applied */
    bool reload;            /* the function is gone (Redis restarted): load it again */
    proj_msgs retry;        /* gaps and failures, in arrival order */
    proj_view view;         /* tally.lua, versioned (view.h) */
    char fn[48];            /* its tally_apply */
    char merged_fn[48];     /* and its tally_apply_merged */
    struct proj_plan *plan; /* a group's merged write, reused (plan.h); owned */
    bool started;           /* connected once: a refusal now ends proj_run instead */
    const char *refused;    /* why Redis cannot be used as it is configured, or NULL */
    int64_t lost_ms;        /* earliest lost entry not yet reported to the relay (0: none) */
    pl_marks marks[STREAM_PARTITIONS_MAX];
    int64_t wm[STREAM_PARTITIONS_MAX]; /* watermark published per partition */
    int64_t next_consumers_ms;
    char sys_err[160]; /* the systemic error of this turn, if any */
    bool refusing;     /* Redis refused writes at the last attempt (logged once) */
    int64_t next_claim_ms, next_pending_ms;
    int64_t gap_wait_ms; /* how long a gap waits before it is parked (see proj_run) */
    backoff bo;
    metrics_counter *applied, *dups, *gaps, *parked, *failures, *lost, *spilled, *unavailable;
    metrics_counter *merged, *unmerged; /* groups applied merged; merged writes refused */
    metrics_counter *read_ahead;        /* batches read while the one before was applied */
    metrics_counter *notified;          /* tenants published on STREAM_CHANGES_CHANNEL */
    metrics_counter *systemic[KV_SYSTEMIC_KINDS];
    metrics_histogram *batch_seconds, *lag_seconds;
    metrics_gauge *pending, *retrying, *beat, *dead, *wm_gauge, *ready_gauge;
    metrics_gauge *rb_running, *rb_stalled, *rb_done, *rb_total, *rb_eta; /* rebuild_sample */
    /* Tenants whose reply said a rebuild nobody holds runs: listed once the replies are read. */
    char unheld[16][72];
    int nunheld;
    proj_part_gauges part_gauges[STREAM_PARTITIONS_MAX]; /* partitions 0..conf->partitions-1 */
} proj;

/* consumer_redis.c */

/* A command's reply (caller frees), or NULL after an I/O error (the connection is then reset). */
redisReply *proj_command_argv(proj *p, int argc, const char **argv, const size_t *lens);

/* As proj_command_argv, with a format (redisCommand). */
redisReply *proj_command(proj *p, const char *fmt, ...);

/*
 * An error reply r (or NULL for an I/O error) to something the projector needs: true when it is
 * systemic (Redis cannot take writes now: see kv.h), which is counted, logged and makes
 * the loop back off; the connection is dropped where a new one may fare better. r stays the
 * caller's.
 */
bool proj_systemic(proj *p, const redisReply *r, const char *doing);

/* Writes the commands appended so far (their replies are read later). 0 or TALLY_EUNAVAIL. */
int proj_flush(proj *p);

/* Loads p->view.lua. 0, or TALLY_EUNAVAIL (the failure logged). */
int proj_load_function(proj *p);

/*
 * Connects, checks the maxmemory-policy, loads the function and makes sure the groups exist,
 * unless connected already; a new connection starts again from this consumer's pending list.
 * 0, TALLY_EPRECOND (Redis evicts keys), or TALLY_EUNAVAIL.
 */
int proj_prepare(proj *p);

/* consumer_read.c */

/* Frees m and what it owns. NULL-safe. */
void proj_msg_free(proj_msg *m);

/* Appends m, which l then owns. 0, or TALLY_ENOMEM (m stays the caller's). */
int proj_msgs_push(proj_msgs *l, proj_msg *m);

/*
 * Moves the messages of from to the end of to, which then owns them (the arrays swap when to
 * is empty); what does not fit (out of memory) stays in from.
 */
void proj_msgs_move(proj_msgs *to, proj_msgs *from);

/* Frees every message of l and empties it (its array stays). */
void proj_msgs_clear(proj_msgs *l);

/* One XREADGROUP over every partition: new entries, or ours still pending after a restart. */
int proj_read_batch(proj *p, proj_msgs *into, bool may_block);

/*
 * The read ahead: while a batch is applied, the next one is read in the same pipeline and
 * decoded while Redis applies. Redis writes a big reply 64 KiB per turn of its event loop, in
 * between the commands behind it, so the read is sent alone and its reply received before the
 * first FCALL goes out (that FCALL may be appended meanwhile: it is counted while Redis reads).
 *   proj_read_ahead_send  appends and writes a read of new entries that never blocks (only
 *                         when not reading our pending list);
 *   proj_read_ahead_recv  receives its reply (the next one) without writing what was appended,
 *                         into *out (for proj_read_ahead_take, which frees it);
 *   proj_read_ahead_take  makes messages of it into p->ahead, sets p->backlog and frees it; an
 *                         error reply is logged and leaves p->ahead as it was (the next turn
 *                         reads as usual).
 * Each: 0 or TALLY_EUNAVAIL.
 */
int proj_read_ahead_send(proj *p);
int proj_read_ahead_recv(proj *p, redisReply **out);
int proj_read_ahead_take(proj *p, redisReply *r);

/* XAUTOCLAIM: entries pending too long with any consumer (a dead one) become ours. */
int proj_claim(proj *p, proj_msgs *into);

/* The messages whose retry time has come, moved from the retry queue into into. */
void proj_due_retries(proj *p, proj_msgs *into, int64_t now);

/* consumer_apply.c */

/*
 * Applies, acks, parks and queues for retry the messages in v, which this call takes over
 * (each is acked and freed, kept in the retry queue, or freed unacked: left in the pending
 * list, from where it is read or reclaimed again). Nothing is acked that was not applied,
 * durably parked, or (for a lost entry) reported. An error (Redis down or refusing writes)
 * stops the batch: what is not acked yet is read again later.
 */
int proj_handle(proj *p, proj_msg **v, size_t n);

/* consumer_park.c */

/*
 * Moves m to the dead-letter stream (and parks its complaint). 0: parked, the caller acks it;
 * 1: not ours any more (another projector has it), the caller forgets it without an ack;
 * TALLY_EUNAVAIL: not parked (an I/O error or an error reply: never acked then).
 */
int proj_park(proj *p, proj_msg *m, const char *reason);

/*
 * An entry trimmed or deleted from the stream before it was applied: a loss. Counted, logged,
 * and remembered for proj_report_lost (the earliest such time).
 */
void proj_lost(proj *p, int part, const char *id);

/*
 * Writes the pending loss report to tally:repair:request, keeping the earliest time already
 * there: the relay republishes from PostgreSQL what it published since then. 0 or an error.
 */
int proj_report_lost(proj *p);

/* XACKs the given entries, one command per partition. v stays the caller's. */
void proj_ack(proj *p, proj_msg **v, size_t n);

/* consumer_group.c */

/*
 * One lag sample (common/lag.h, one pipeline): the per-partition gauges, the pending list's
 * size and the dead letters (alert on them: nothing trims them).
 */
void proj_sample_pending(proj *p);

/*
 * Publishes the watermarks that hold now (pipeline.h): per partition with candidates, the
 * group's oldest pending entry decides, and tally:wm's field only ever moves forward (several
 * projectors write it).
 */
void proj_settle_watermarks(proj *p);

/*
 * Consumers of the group with nothing pending and no contact for ten claim periods are gone
 * (a replica that died or was scaled away: its entries were reclaimed): XGROUP DELCONSUMER, so
 * the group does not pile them up. A live one that was only paused is re-created by its next
 * read, having lost nothing.
 */
void proj_forget_dead_consumers(proj *p);

#endif
