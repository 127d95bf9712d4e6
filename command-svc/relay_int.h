/*
 * relay internals shared by relay.c (the thread: election, waits, the state changes logged
 * once), relay_pass.c (one pass: select, pack, XADD, mark, watermark) and relay_stream.c (the
 * Redis side kept between passes: consumer groups, trimming, backpressure, the repair of a
 * Redis that lost data). Not a contract: only these three files include it.
 */
#ifndef TALLY_RELAY_INT_H
#define TALLY_RELAY_INT_H

#include "backoff.h"
#include "event.h"
#include "kv.h"
#include "pgx.h"
#include "relay.h"
#include "stream.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RELAY_PG_WAIT_MS   3000 /* longest wait for one statement; bounds relay_stop too */
#define RELAY_ENVELOPE_MAX (EVENT_BODY_MAX + 1024)
#define RELAY_ID_MAX       48 /* a stream id "ms-seq" */

/* The prepared statements of the leader's session. */
enum { S_SELECT, S_MARK, S_MARK_RANGE, S_LOCK, S_MAXPUB, S_MAXSEQ, S_UNMARK, S_LEFT, S_COUNT };

/* What a pass or a wait ended with. */
enum relay_outcome { RELAY_IDLE, RELAY_MORE, RELAY_PG_DOWN, RELAY_REDIS_DOWN, RELAY_LOST };

/* Why Redis is being repaired; the label of tally_relay_repairs_total. */
enum repair_reason { R_MISSING, R_BEHIND, R_TRIMMED, R_COUNT };

struct relay {
    relay_config conf;
    char groups[RELAY_GROUPS_MAX][65];
    int ngroups;
    pthread_t thread;
    int wake_fd; /* eventfd: written by relay_stop */
    atomic_bool stop;

    pgx_conn *pg;    /* the leader's session: it holds the lock */
    pgx_conn *stats; /* the backlog count's own session, so that it never costs the lock */
    kv_conn *kv;
    bool leader, pg_down, redis_down, count_down;
    backoff bo;
    int64_t compete_at_ms;         /* monotonic: a relay that gave up competes again from then */
    int64_t redis_failing_ms;      /* monotonic start of the current run of Redis failures, or 0 */
    int64_t count_at_ms;           /* monotonic time of the next backlog count */
    int64_t count_sent_ms;         /* monotonic time the count in flight was sent, 0: none */
    int64_t maintain_at_ms;        /* monotonic time of the next trim and repair check */
    int64_t watermark_at_ms;       /* monotonic time of the last watermark entries */
    unsigned long groups_made;     /* kv_connects() when the groups were last created, 0: never */
    int64_t last_pass_us;          /* the newest pass id this leader knows marked (0: none) */
    int64_t poison_logged;         /* highest seq reported as unpublishable (for logging only) */
    char (*last_id)[RELAY_ID_MAX]; /* per partition: the last id XADDed there ("" none yet) */
    long long *xlen;               /* per partition: XLEN before the last pass */

    /* The repair in progress (docs/keyspace.md, tally:repair). */
    struct {
        bool on, unmarked, applying;
        enum repair_reason reason;
        int64_t since_us;   /* rows published after this are republished */
        int64_t bound_us;   /* ... up to this pass id (what had been marked at detection) */
        int64_t max_seq;    /* the newest row at detection */
        int64_t started_ms; /* wall clock */
        int64_t rows, done; /* rows un-marked; of them, republished so far */
        char request[24];   /* the tally:repair:request value this repair answers ("" none) */
        char target[STREAM_PARTITIONS_MAX][RELAY_ID_MAX]; /* frozen when state=applying */
    } rep;

    uint8_t body[EVENT_BODY_MAX];
    uint8_t envelope[RELAY_ENVELOPE_MAX];
    bool ahead;         /* a read of the next pass's rows is in flight on pg */
    PGresult *next;     /* the next pass's rows, read while this one was published, or NULL */
    int64_t next_at_ms; /* wall clock just before that read */
    int64_t *seqs;      /* batch entries: seqs of the rows sent in this pass */
    int64_t *recorded;  /* batch entries: their recorded_at, Unix ms */
    int *part;          /* batch entries: their partition */
    int64_t *held;      /* complaints whose rows this pass holds back */
    char *seq_list;     /* "{1,2,3}" for the mark */
    size_t seq_list_cap;

    metrics_gauge *m_leader, *m_backlog, *m_backpressure, *m_unpublishable, *m_repair_rows;
    metrics_gauge **m_xlen; /* per partition */
    metrics_counter *m_published, *m_err_redis, *m_err_pg, *m_giveups, *m_repairs[R_COUNT];
    metrics_histogram *m_lag;
};

/* relay.c: failures of the leader, logged once per outage. */
void relay_redis_failed(relay *r, const char *error);
enum relay_outcome relay_leader_pg_error(relay *r, const char *what);

/* relay.c: the ends of an outage, logged once. */
void relay_pg_ok(relay *r);
void relay_redis_ok(relay *r);

/* relay.c: true once relay_stop() was called. */
bool relay_stopping(relay *r);

/* relay.c: back to standby (why is logged); the next attempt starts a fresh session. */
void relay_lose_leadership(relay *r, const char *why);

/*
 * relay.c: true while the session that holds the lock is alive. pgx reconnects by itself when
 * its connection is gone, which would run the leader's statements on a session without the
 * lock: this check comes before each of them.
 */
bool relay_session_alive(relay *r);

/* relay_pass.c */

/*
 * One pass of the leader: publishes the oldest unpublished rows and marks them, then counts
 * the backlog (also while Redis is down). What it ended with: RELAY_MORE to pass again at once,
 * RELAY_IDLE to wait, RELAY_PG_DOWN or RELAY_REDIS_DOWN to back off, RELAY_LOST when it is no
 * longer the leader.
 */
enum relay_outcome relay_pass(relay *r);

/* relay_stream.c */

/*
 * Creates every group on every partition (at 0, MKSTREAM; BUSYGROUP is fine) when this is a
 * new Redis connection or the last check found one missing, and picks up a repair another
 * leader announced. 0, or -1 with the Redis failure reported.
 */
int relay_setup_redis(relay *r);

/*
 * Reads the pipeline state before a pass (tally:relay:pos, tally:repair:request, each
 * stream's length) and starts or extends a repair when Redis lost data. 0, or -1 with the
 * Redis failure reported.
 */
int relay_check_redis(relay *r);

/*
 * Un-marks the rows of a repair just started (in chunks), announces it in tally:repair and
 * sets tally:relay:pos to what is now true. 0 when there was nothing to do, 1 when it did (the
 * pass must select again, in seq order), -1 on a failure with the outcome in *out.
 */
int relay_repair_unmark(relay *r, enum relay_outcome *out);

/*
 * The SET of tally:relay:pos in a pass replaced pos_before (-1: none), older than what this
 * leader had marked: Redis lost data since the check before the pass. Starts a repair.
 */
void relay_repair_lost_at_pass(relay *r, int64_t pos_before);

/* The rows of a pass published: counts those a repair waited for. */
void relay_repair_published(relay *r, const int64_t *seqs, int n);

/*
 * About once a second: trims each stream below its slowest group, advances the repair
 * (republished, then acknowledged). 0, or -1 with the failure reported (PostgreSQL failures
 * through *out).
 */
int relay_maintain(relay *r, enum relay_outcome *out);

/* The leader changed: forget what belongs to the last term. */
void relay_stream_reset(relay *r);

#endif
