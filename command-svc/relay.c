/*
 * relay: the outbox relay of command-svc (contract in relay.h; one pass in relay_pass.c; the
 * Redis side kept between passes, the groups, the trim and the repair of a Redis that lost
 * data, in relay_stream.c).
 *
 * One thread, a PostgreSQL session (pgx) and a Redis connection (kv) of its own, plus a second
 * session only for counting the backlog. The thread is either a standby or the leader:
 *
 *   standby  tries pg_try_advisory_lock(RELAY_LOCK_KEY) every poll_ms (at most 5 s apart). On
 *            success it LISTENs on tally_events, reads max(id) of relay_passes (its passes'
 *            ids start above it) and becomes the leader.
 *   leader   runs passes. A pass reads the oldest unpublished rows (the first batch of seqs
 *            of the outbox table, each row then by the events pkey), checks
 *            Redis (tally:relay:pos, a repair request, each stream's length: relay_stream.c),
 *            packs each row as an EventEnvelope (event_pack) and pipelines one XADD per row to
 *            tally:events:<partition> (one field "e" holding the envelope bytes), then
 *            SET tally:relay:pos <pass id>, and marks the rows that Redis took: deletes them
 *            from the outbox and inserts the pass (its id and seqs) into relay_passes, in one
 *            statement; the events rows are never written. After a full batch the next pass
 *            starts at once;
 *            otherwise the thread sleeps until a NOTIFY on tally_events, the poll timeout (at
 *            most 5 s, so that the session is never idle for long), or relay_stop().
 *
 * Leadership is the session lock, so it ends with the session: when the leader's connection
 * breaks it is no longer the leader, whatever pgx would reconnect to. The thread therefore
 * checks the connection before every statement it runs as leader and never lets pgx reconnect
 * silently under it; a broken connection makes it a standby again, which reconnects and
 * competes for the lock like any other replica. The session carries idle_session_timeout
 * (IDLE_SESSION_MS): the leader runs a statement every few seconds, so only a session whose
 * client is gone without a word (a host lost, a partition) hits it, and the server then frees
 * the lock for a standby instead of holding it for the hours of the OS's TCP keepalive.
 *
 * Nothing remembers a position in the log: every pass asks PostgreSQL for what is still
 * unpublished, so a row whose transaction commits after higher seqs were published is found
 * by the next pass. Within a pass only the prefix of rows whose XADD succeeded is marked (and
 * nothing unless the pass's SET of tally:relay:pos succeeded too), so a failure in the middle
 * of a pipeline republishes the rest in seq order (some as duplicates, with their seq, which
 * the projector drops). A crash between XADD and the mark does the same.
 *
 * Failures never end the thread: Redis or PostgreSQL errors are counted, logged once when the
 * dependency goes down and once when it is back, and retried after an exponential backoff with
 * jitter (50 ms .. 5 s); the rows wait in the table. An error reply saying that this Redis
 * cannot serve writes (READONLY, MASTERDOWN, LOADING, OOM...) also drops the connection, so a
 * connection pinned to a demoted primary finds the new one. A leader whose passes have failed
 * on Redis for redis_giveup_ms in a row gives the lock up and waits two poll intervals before
 * competing again, so a standby that reaches Redis leads instead.
 *
 * Backpressure: a pass publishes at most as many rows as leave every stream below maxlen
 * entries (the trim removes only what every group acknowledged); at the bound it publishes
 * nothing and the rows wait in PostgreSQL (tally_relay_backpressure = 1).
 *
 * A row that cannot be packed (an event type this build does not know, a body over
 * EVENT_BODY_MAX: a newer writer or a corrupted row) is left unpublished and logged once, and
 * the later rows of its complaint in the pass are held back with it, so that the projector
 * never sees a version after a missing one; other complaints and reference data keep flowing
 * (as long as fewer than a batch of such rows wait at the head of the log).
 *
 * The backlog gauge is counted after the pass, at most once a second, with a cap (LIMIT
 * 100001: the gauge reads 100001 for "more than 100,000") on its own session: the count is
 * sent and a later pass reads its result, so no pass waits for it; one that takes longer than
 * a few seconds is given up, and after a failure it is not counted for a minute.
 */
#include "relay_int.h"

#include "err.h"
#include "event.h"
#include "log.h"
#include "now.h"
#include "stream.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* The advisory lock of the active relay (the migrations hold 7411001 while they run). */
#define RELAY_LOCK_KEY   "7411002"
#define PG_STMT_CAP_MS   5000 /* server-side statement_timeout of the relay's session */
#define IDLE_SESSION_MS  "20000"
#define QUIET_MAX_MS     5000 /* longest the leader's or a standby's session stays idle */
#define REDIS_TIMEOUT_MS 1000
#define BACKOFF_MIN_MS   50
#define BACKOFF_MAX_MS   5000

/*
 * The outbox (migration 0006): a row per unpublished event, which the writers' statement
 * trigger inserts; relay_passes: a row per pass Redis took, its id (Unix microseconds) and its
 * seqs. The events themselves are never updated.
 */
static const pgx_stmt stmts[S_COUNT] = {
    /* The oldest unpublished seqs but those of $2..$3 (the pass in flight while relay_pass.c
     * reads the next batch ahead; 0, 0 leaves none out: seqs start at 1), two index ranges
     * merged in order, then each row by the pkey: the OFFSET 0 keeps the lookup a subquery run
     * once per seq, whatever the statistics say (a bulk import before autoanalyze once had a
     * batch planned as a scan of every unpublished row). */
    [S_SELECT] = { "relay_select",
                   "SELECT e.* FROM (SELECT s FROM ((SELECT seq AS s FROM outbox WHERE seq < $2"
                   " ORDER BY seq LIMIT $1) UNION ALL (SELECT seq FROM outbox WHERE seq > $3"
                   " ORDER BY seq LIMIT $1)) u ORDER BY s LIMIT $1) o,"
                   " LATERAL (SELECT " EVENT_COLUMNS " FROM events WHERE seq = o.s OFFSET 0) e"
                   " ORDER BY o.s",
                   3 },
    /* Marks a pass: its rows leave the outbox and the pass is recorded, in one statement. */
    [S_MARK] = { "relay_mark",
                 "WITH d AS (DELETE FROM outbox WHERE seq = ANY($1::bigint[]))"
                 " INSERT INTO relay_passes (id, lo, hi, seqs) VALUES ($2, $3, $4, $1::bigint[])",
                 4 },
    /* The same for a pass whose seqs are contiguous (a backlog, mostly): one range of the
     * outbox's pkey, and no list kept. */
    [S_MARK_RANGE] = { "relay_mark_range",
                       "WITH d AS (DELETE FROM outbox WHERE seq >= $1 AND seq <= $2)"
                       " INSERT INTO relay_passes (id, lo, hi) VALUES ($3, $1, $2)",
                       3 },
    [S_LOCK] = { "relay_lock", "SELECT pg_try_advisory_lock(" RELAY_LOCK_KEY ")", 0 },
    [S_MAXPUB] = { "relay_max_published", "SELECT coalesce(max(id), 0) FROM relay_passes", 0 },
    [S_MAXSEQ] = { "relay_max_seq", "SELECT coalesce(max(seq), 0) FROM events", 0 },
    /* Puts the rows of the passes after $1, up to $2, back into the outbox, $3 passes at a
     * time from the oldest: the last pass id done (NULL: none left) and the rows put back. */
    [S_UNMARK] = { "relay_unmark",
                   "WITH p AS (SELECT id, lo, hi, seqs FROM relay_passes WHERE id > $1 AND id <= $2"
                   " ORDER BY id LIMIT $3),"
                   " i AS (INSERT INTO outbox (seq) SELECT DISTINCT s FROM p,"
                   " LATERAL unnest(coalesce(p.seqs, ARRAY(SELECT generate_series(p.lo, p.hi)))) s"
                   " ON CONFLICT DO NOTHING RETURNING 1)"
                   " SELECT (SELECT max(id) FROM p), (SELECT count(*) FROM i)",
                   3 },
    [S_LEFT] = { "relay_repair_left", "SELECT EXISTS (SELECT 1 FROM outbox WHERE seq <= $1)", 1 },
};

/* Publish lag: sub-second when the relay keeps up, minutes after an outage. */
static const double lag_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,
    2.5,   5,      10,    30,   60,    120,  300, 600,  1800, 3600
};

bool relay_stopping(relay *r)
{
    return atomic_load_explicit(&r->stop, memory_order_acquire);
}

static int quiet_ms(relay *r)
{
    return r->conf.poll_ms < QUIET_MAX_MS ? r->conf.poll_ms : QUIET_MAX_MS;
}

/* ---- state changes, logged once each ----------------------------------------------------- */

static void pg_failed(relay *r, const char *what)
{
    metrics_inc(r->m_err_pg, 1);
    if (!r->pg_down)
        log_warn("relay: PostgreSQL is unavailable; retrying with backoff", LOG_STR("while", what),
                 LOG_STR("error", pgx_errstr(r->pg)));
    r->pg_down = true;
}

void relay_pg_ok(relay *r)
{
    if (r->pg_down)
        log_info("relay: PostgreSQL is available again");
    r->pg_down = false;
}

void relay_redis_failed(relay *r, const char *error)
{
    metrics_inc(r->m_err_redis, 1);
    if (!r->redis_down)
        log_warn("relay: Redis is unavailable; events wait in PostgreSQL", LOG_STR("error", error));
    r->redis_down = true;
    if (!r->redis_failing_ms)
        r->redis_failing_ms = now_mono_ms();
}

void relay_redis_ok(relay *r)
{
    if (r->redis_down)
        log_info("relay: Redis is available again");
    r->redis_down = false;
    r->redis_failing_ms = 0;
}

void relay_lose_leadership(relay *r, const char *why)
{
    if (r->leader)
        log_warn("relay: lost the leadership", LOG_STR("reason", why),
                 LOG_STR("error", pgx_errstr(r->pg)));
    r->leader = false;
    metrics_set(r->m_leader, 0);
    metrics_set(r->m_backlog, 0);
    metrics_set(r->m_unpublishable, 0);
    PQclear(r->next);
    r->next = NULL;
    relay_stream_reset(r);
    if (r->count_sent_ms) { /* a count in flight belongs to the last term */
        pgx_reset(r->stats);
        r->count_sent_ms = 0;
    }
    pgx_reset(r->pg); /* the next attempt starts a fresh session */
}

bool relay_session_alive(relay *r)
{
    PGconn *pg = pgx_pg(r->pg);
    return pg && PQstatus(pg) == CONNECTION_OK;
}

enum relay_outcome relay_leader_pg_error(relay *r, const char *what)
{
    pg_failed(r, what);
    if (!relay_session_alive(r)) {
        relay_lose_leadership(r, "the PostgreSQL session ended");
        return RELAY_LOST;
    }
    return RELAY_PG_DOWN;
}

/* ---- waiting ----------------------------------------------------------------------------- */

/* Reads what the leader's session received; true if a NOTIFY was among it. */
static bool drain_notifies(relay *r, bool *broken)
{
    PGconn *pg = pgx_pg(r->pg);
    PGnotify *n;
    bool any = false;
    if (!PQconsumeInput(pg)) {
        *broken = true;
        return false;
    }
    while ((n = PQnotifies(pg)) != NULL) {
        any = true;
        PQfreemem(n);
    }
    return any;
}

/*
 * Sleeps up to ms, returning early on relay_stop() and, when on_notify, on a NOTIFY. As the
 * leader it keeps consuming the session's input meanwhile (so that notifications never pile
 * up) and returns RELAY_LOST when the session breaks. Otherwise RELAY_IDLE, or RELAY_MORE for a
 * NOTIFY.
 */
static enum relay_outcome wait_for(relay *r, int64_t ms, bool on_notify)
{
    int64_t deadline = now_mono_ms() + ms;
    bool broken = false;
    for (;;) {
        if (r->leader && !relay_session_alive(r)) {
            relay_lose_leadership(r, "the PostgreSQL session ended");
            return RELAY_LOST;
        }
        if (r->leader && drain_notifies(r, &broken) && on_notify)
            return RELAY_MORE;
        if (broken) {
            relay_lose_leadership(r, PQerrorMessage(pgx_pg(r->pg)));
            return RELAY_LOST;
        }
        int64_t left = deadline - now_mono_ms();
        if (relay_stopping(r) || left <= 0)
            return RELAY_IDLE;
        struct pollfd p[2] = { { .fd = r->wake_fd, .events = POLLIN } };
        nfds_t n = 1;
        if (r->leader) {
            p[1] = (struct pollfd){ .fd = PQsocket(pgx_pg(r->pg)), .events = POLLIN };
            n = 2;
        }
        if (poll(p, n, (int)(left > 60000 ? 60000 : left)) < 0 && errno != EINTR)
            backoff_sleep_ms(10); /* cannot happen with valid fds; never spin */
    }
}

/* ---- the thread -------------------------------------------------------------------------- */

/* A standby's attempt at the lock: 1 now leader, 0 someone else is, or a tally_err. */
static int try_lead(relay *r)
{
    PGresult *res;
    int rc = pgx_exec(r->pg, S_LOCK, 0, NULL, NULL, NULL, RELAY_PG_WAIT_MS, &res);
    if (rc != 0)
        return rc;
    bool got = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!got)
        return 0;
    if ((rc = pgx_exec_sql(r->pg, "LISTEN tally_events", RELAY_PG_WAIT_MS, NULL)) != 0 ||
        (rc = pgx_exec(r->pg, S_MAXPUB, 0, NULL, NULL, NULL, RELAY_PG_WAIT_MS, &res)) != 0) {
        pgx_reset(r->pg); /* releases the lock with the session */
        return rc;
    }
    r->last_pass_us = pgx_int(res, 0, 0);
    PQclear(res);
    r->leader = true;
    r->count_at_ms = 0;
    relay_stream_reset(r);
    metrics_set(r->m_leader, 1);
    log_info("relay: became the leader; publishing events", LOG_INT("marked_us", r->last_pass_us));
    return 1;
}

static void *relay_main(void *arg)
{
    relay *r = arg;
    while (!relay_stopping(r)) {
        enum relay_outcome out;
        if (!r->leader) {
            int64_t until = r->compete_at_ms - now_mono_ms();
            if (until > 0) {
                wait_for(r, until, false);
                continue;
            }
            int rc = try_lead(r);
            if (rc < 0) {
                pg_failed(r, "competing for the relay lock");
                wait_for(r, backoff_next(&r->bo), false);
                continue;
            }
            relay_pg_ok(r);
            backoff_reset(&r->bo);
            if (rc == 0) {
                wait_for(r, quiet_ms(r), false);
                continue;
            }
        }
        out = relay_pass(r);
        if (out == RELAY_IDLE)
            out = wait_for(r, quiet_ms(r), true);
        if (out == RELAY_PG_DOWN || out == RELAY_REDIS_DOWN)
            wait_for(r, backoff_next(&r->bo), false);
        else
            backoff_reset(&r->bo);
    }
    return NULL;
}

static bool group_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* Splits groups into names[]: projector first, then each other name once. n, or -1 with err. */
static int parse_groups(const char *groups, char names[][65], char *err, size_t errlen)
{
    int n = 1;
    snprintf(names[0], 65, "%s", STREAM_GROUP);
    for (const char *s = groups ? groups : ""; *s;) {
        size_t len = strcspn(s, ",");
        bool dup = false;
        for (size_t i = 0; i < len; i++)
            if (!group_char(s[i])) {
                snprintf(err, errlen, "TALLY_STREAM_GROUPS: \"%.*s\" is not a group name", (int)len,
                         s);
                return -1;
            }
        if (len == 0 || len > 64) {
            snprintf(err, errlen, "TALLY_STREAM_GROUPS: names are 1 to 64 of [A-Za-z0-9_.-]");
            return -1;
        }
        for (int k = 0; k < n; k++)
            dup |= strlen(names[k]) == len && strncmp(names[k], s, len) == 0;
        if (!dup) {
            if (n == RELAY_GROUPS_MAX) {
                snprintf(err, errlen, "TALLY_STREAM_GROUPS: at most %d groups", RELAY_GROUPS_MAX);
                return -1;
            }
            snprintf(names[n++], 65, "%.*s", (int)len, s);
        }
        s += len;
        if (*s == ',')
            s++;
    }
    return n;
}

int relay_groups_check(const char *groups, char *err, size_t errlen)
{
    char names[RELAY_GROUPS_MAX][65];
    return parse_groups(groups, names, err, errlen) < 0 ? TALLY_EINVAL : 0;
}

static void free_relay(relay *r)
{
    PQclear(r->next);
    kv_free(r->kv);
    pgx_free(r->stats);
    pgx_free(r->pg);
    free(r->m_xlen);
    free(r->xlen);
    free(r->last_id);
    free(r->seq_list);
    free(r->held);
    free(r->part);
    free(r->recorded);
    free(r->seqs);
    free(r);
}

/* Registers the metrics; false if one cannot be. */
static bool add_metrics(relay *r, metrics_registry *m)
{
    static const char *const reasons[R_COUNT] = { "missing", "behind", "trimmed" };
    r->m_leader = metrics_gauge_add(m, "tally_relay_leader",
                                    "1 while this process runs the active outbox relay", NULL);
    r->m_backlog = metrics_gauge_add(m, "tally_relay_backlog",
                                     "Unpublished event rows, counted up to 100001 by the active "
                                     "relay (0 on standby replicas)",
                                     NULL);
    r->m_published = metrics_counter_add(m, "tally_relay_published_total",
                                         "Events XADDed to the event streams", NULL);
    r->m_lag = metrics_histogram_add(
        m, "tally_relay_publish_lag_seconds", "From an event's commit (recorded_at) to its XADD",
        NULL, lag_buckets, (int)(sizeof(lag_buckets) / sizeof(lag_buckets[0])));
    const char *help = "Failed relay operations, by dependency";
    r->m_err_redis =
        metrics_counter_add(m, "tally_relay_errors_total", help, "dependency=\"redis\"");
    r->m_err_pg =
        metrics_counter_add(m, "tally_relay_errors_total", help, "dependency=\"postgres\"");
    r->m_backpressure = metrics_gauge_add(
        m, "tally_relay_backpressure",
        "1 while the relay holds events back because a stream is at TALLY_STREAM_MAXLEN", NULL);
    r->m_unpublishable = metrics_gauge_add(
        m, "tally_relay_unpublishable_rows",
        "Rows the last pass could not publish (unpackable, or held behind one)", NULL);
    r->m_repair_rows = metrics_gauge_add(m, "tally_relay_repair_rows",
                                         "Rows still to republish to a Redis that lost data", NULL);
    r->m_giveups =
        metrics_counter_add(m, "tally_relay_giveups_total",
                            "Times this relay gave up the leadership because Redis failed", NULL);
    bool ok = r->m_leader && r->m_backlog && r->m_published && r->m_lag && r->m_err_redis &&
              r->m_err_pg && r->m_backpressure && r->m_unpublishable && r->m_repair_rows &&
              r->m_giveups;
    for (int k = 0; k < R_COUNT && ok; k++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "reason=\"%s\"", reasons[k]);
        r->m_repairs[k] =
            metrics_counter_add(m, "tally_relay_repairs_total",
                                "Repairs of a Redis that lost data, by how it was noticed", labels);
        ok = r->m_repairs[k] != NULL;
    }
    for (int p = 0; p < r->conf.partitions && ok; p++) {
        char labels[48];
        snprintf(labels, sizeof(labels), "partition=\"%d\"", p);
        r->m_xlen[p] =
            metrics_gauge_add(m, "tally_relay_stream_length",
                              "Entries in the stream (XLEN), as the leader last read it", labels);
        ok = r->m_xlen[p] != NULL;
    }
    return ok;
}

relay *relay_start(const relay_config *conf, char *err, size_t errlen)
{
    relay *r;
    if (!conf->pg_dsn || !conf->metrics || conf->partitions < 1 ||
        conf->partitions > STREAM_PARTITIONS_MAX || conf->batch < 1 || conf->poll_ms < 1 ||
        conf->maxlen < 1 || conf->redis_giveup_ms < 1) {
        snprintf(err, errlen, "relay: invalid configuration");
        return NULL;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        snprintf(err, errlen, "relay: out of memory");
        return NULL;
    }
    r->conf = *conf;
    r->conf.groups = NULL; /* parsed into r->groups */
    r->wake_fd = -1;
    if ((r->ngroups = parse_groups(conf->groups, r->groups, err, errlen)) < 0) {
        free(r);
        return NULL;
    }
    backoff_init(&r->bo, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    size_t parts = (size_t)conf->partitions, batch = (size_t)conf->batch;
    r->seq_list_cap = batch * 21 + 3;
    r->seqs = calloc(batch, sizeof(int64_t));
    r->recorded = calloc(batch, sizeof(int64_t));
    r->part = calloc(batch, sizeof(int));
    r->held = calloc(batch, sizeof(int64_t));
    r->seq_list = malloc(r->seq_list_cap);
    r->last_id = calloc(parts, sizeof(*r->last_id));
    r->xlen = calloc(parts, sizeof(long long));
    r->m_xlen = calloc(parts, sizeof(metrics_gauge *));
    r->pg = pgx_new(conf->pg_dsn, "command-svc/relay", stmts, S_COUNT, PG_STMT_CAP_MS);
    r->stats = pgx_new(conf->pg_dsn, "command-svc/relay-stats", NULL, 0, PG_STMT_CAP_MS);
    r->conf.pg_dsn = NULL; /* pgx keeps its own copy */
    r->kv = kv_new(&conf->redis, REDIS_TIMEOUT_MS);
    if (!r->seqs || !r->recorded || !r->part || !r->held || !r->seq_list || !r->last_id ||
        !r->xlen || !r->m_xlen || !r->pg || !r->stats || !r->kv ||
        pgx_add_setting(r->pg, "idle_session_timeout", IDLE_SESSION_MS) != 0 ||
        pgx_set_tenant(r->pg, "*") != 0 || pgx_set_tenant(r->stats, "*") != 0) {
        snprintf(err, errlen, "relay: out of memory");
        goto out_free;
    }
    if (!add_metrics(r, conf->metrics)) {
        snprintf(err, errlen, "relay: cannot register the metrics");
        goto out_free;
    }
    if ((r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        snprintf(err, errlen, "relay: eventfd: %s", strerror(errno));
        goto out_free;
    }
    int rc = pthread_create(&r->thread, NULL, relay_main, r);
    if (rc != 0) {
        snprintf(err, errlen, "relay: cannot start the thread: %s", strerror(rc));
        goto out_close;
    }
    log_info("relay started", LOG_INT("partitions", conf->partitions),
             LOG_INT("batch", conf->batch), LOG_INT("poll_ms", conf->poll_ms),
             LOG_INT("maxlen", conf->maxlen), LOG_INT("groups", r->ngroups),
             LOG_INT("redis_giveup_ms", conf->redis_giveup_ms));
    return r;
out_close:
    close(r->wake_fd);
out_free:
    free_relay(r);
    return NULL;
}

void relay_stop(relay *r)
{
    uint64_t one = 1;
    if (!r)
        return;
    atomic_store_explicit(&r->stop, true, memory_order_release);
    if (write(r->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        log_warn("relay: cannot wake the thread", LOG_STR("error", strerror(errno)));
    pthread_join(r->thread, NULL);
    metrics_set(r->m_leader, 0);
    close(r->wake_fd);
    free_relay(r); /* ends the session, and so releases the lock */
    log_info("relay stopped");
}
