/*
 * relay: the outbox relay of command-svc (contract in relay.h; the Redis side kept between
 * passes, the groups, the trim and the repair of a Redis that lost data, in relay_stream.c).
 *
 * One thread, a PostgreSQL session (pgx) and a Redis connection (kv) of its own, plus a second
 * session only for counting the backlog. The thread is either a standby or the leader:
 *
 *   standby  tries pg_try_advisory_lock(RELAY_LOCK_KEY) every poll_ms (at most 5 s apart). On
 *            success it LISTENs on tally_events, reads max(published_at) (its passes' ids start
 *            above it) and becomes the leader.
 *   leader   runs passes. A pass reads the oldest unpublished rows (WHERE published_at IS
 *            NULL ORDER BY seq LIMIT batch, the partial index events_unpublished), checks
 *            Redis (tally:relay:pos, a repair request, each stream's length: relay_stream.c),
 *            packs each row as an EventEnvelope (event_pack) and pipelines one XADD per row to
 *            tally:events:<partition> (one field "e" holding the envelope bytes), then
 *            SET tally:relay:pos <pass id>, and marks the rows that Redis took with
 *            published_at = the pass id. After a full batch the next pass starts at once;
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
 * 100001: the gauge reads 100001 for "more than 100,000") under a short timeout on its own
 * session; after a failure it is not counted for a minute. No pass waits for it.
 */
#include "relay_int.h"

#include "err.h"
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
#define BACKLOG_EVERY_MS 1000
#define BACKLOG_WAIT_MS  1000
#define BACKLOG_PAUSE_MS 60000 /* no count for this long after one failed */
#define WATERMARK_MIN_MS 200

/* The columns of an envelope, in the order of the C_ names below; times in Unix ms. */
#define RELAY_COLUMNS                                                                      \
    "seq, tenant_id, coalesce(complaint_id, 0), coalesce(version, 0), type,"               \
    " (extract(epoch FROM occurred_at) * 1000)::bigint, to_char(local_day, 'YYYY-MM-DD')," \
    " (extract(epoch FROM recorded_at) * 1000)::bigint, imported::int, encode(payload, 'hex')"

enum {
    C_SEQ,
    C_TENANT,
    C_COMPLAINT,
    C_VERSION,
    C_TYPE,
    C_OCCURRED,
    C_DAY,
    C_RECORDED,
    C_IMPORTED,
    C_PAYLOAD
};

/* Pass ids are Unix microseconds; published_at holds exactly that value. */
#define US_TO_TS(p) "to_timestamp(" p "::float8 / 1e6)"

static const pgx_stmt stmts[S_COUNT] = {
    [S_SELECT] = { "relay_select",
                   "SELECT " RELAY_COLUMNS " FROM events WHERE published_at IS NULL"
                   " ORDER BY seq LIMIT $1",
                   1 },
    [S_MARK] = { "relay_mark",
                 "UPDATE events SET published_at = " US_TO_TS(
                     "$2") " WHERE seq = ANY($1::bigint[]) AND published_at IS NULL",
                 2 },
    [S_LOCK] = { "relay_lock", "SELECT pg_try_advisory_lock(" RELAY_LOCK_KEY ")", 0 },
    [S_MAXPUB] = { "relay_max_published",
                   "SELECT coalesce((extract(epoch FROM max(published_at)) * 1000000)::bigint, 0)"
                   " FROM events",
                   0 },
    [S_MAXSEQ] = { "relay_max_seq", "SELECT coalesce(max(seq), 0) FROM events", 0 },
    [S_UNMARK] = { "relay_unmark",
                   "UPDATE events SET published_at = NULL WHERE seq IN (SELECT seq FROM events"
                   " WHERE published_at > " US_TO_TS("$1") " AND published_at <= " US_TO_TS(
                       "$2") " LIMIT $3)",
                   3 },
    [S_LEFT] = { "relay_repair_left",
                 "SELECT EXISTS (SELECT 1 FROM events WHERE published_at IS NULL AND seq <= $1)",
                 1 },
};

/* On the statistics session, unprepared: its text names it for logs and pg_stat_activity. */
#define BACKLOG_SQL                                                                             \
    "SELECT /* relay_backlog */ count(*) FROM (SELECT 1 FROM events WHERE published_at IS NULL" \
    " LIMIT 100001) s"

/* Publish lag: sub-second when the relay keeps up, minutes after an outage. */
static const double lag_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,
    2.5,   5,      10,    30,   60,    120,  300, 600,  1800, 3600
};

static bool stopping(relay *r)
{
    return atomic_load_explicit(&r->stop, memory_order_acquire);
}

static int64_t now_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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

static void pg_ok(relay *r)
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

static void redis_ok(relay *r)
{
    if (r->redis_down)
        log_info("relay: Redis is available again");
    r->redis_down = false;
    r->redis_failing_ms = 0;
}

static void lose_leadership(relay *r, const char *why)
{
    if (r->leader)
        log_warn("relay: lost the leadership", LOG_STR("reason", why),
                 LOG_STR("error", pgx_errstr(r->pg)));
    r->leader = false;
    metrics_set(r->m_leader, 0);
    metrics_set(r->m_backlog, 0);
    metrics_set(r->m_unpublishable, 0);
    relay_stream_reset(r);
    pgx_reset(r->pg); /* the next attempt starts a fresh session */
}

/*
 * True while the session that holds the lock is alive. pgx reconnects by itself when its
 * connection is gone, which would run the leader's statements on a session without the lock:
 * this check comes before each of them.
 */
static bool session_alive(relay *r)
{
    PGconn *pg = pgx_pg(r->pg);
    return pg && PQstatus(pg) == CONNECTION_OK;
}

enum relay_outcome relay_leader_pg_error(relay *r, const char *what)
{
    pg_failed(r, what);
    if (!session_alive(r)) {
        lose_leadership(r, "the PostgreSQL session ended");
        return RELAY_LOST;
    }
    return RELAY_PG_DOWN;
}

/*
 * A pass failed on Redis. After redis_giveup_ms of nothing but failures the leader hands the
 * lock over (RELAY_LOST); otherwise RELAY_REDIS_DOWN (back off and retry).
 */
static enum relay_outcome redis_pass_failed(relay *r)
{
    int64_t failing = r->redis_failing_ms ? now_mono_ms() - r->redis_failing_ms : 0;
    if (!r->leader || failing < r->conf.redis_giveup_ms)
        return RELAY_REDIS_DOWN;
    metrics_inc(r->m_giveups, 1);
    log_warn("relay: giving up the leadership: publishing to Redis has failed for too long",
             LOG_INT("failing_ms", failing), LOG_STR("error", kv_errstr(r->kv)));
    lose_leadership(r, "Redis failed for longer than TALLY_RELAY_REDIS_GIVEUP_MS");
    kv_reset(r->kv);
    r->redis_failing_ms = 0;
    r->compete_at_ms = now_mono_ms() + 2 * (int64_t)r->conf.poll_ms;
    return RELAY_LOST;
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
        if (r->leader && !session_alive(r)) {
            lose_leadership(r, "the PostgreSQL session ended");
            return RELAY_LOST;
        }
        if (r->leader && drain_notifies(r, &broken) && on_notify)
            return RELAY_MORE;
        if (broken) {
            lose_leadership(r, PQerrorMessage(pgx_pg(r->pg)));
            return RELAY_LOST;
        }
        int64_t left = deadline - now_mono_ms();
        if (stopping(r) || left <= 0)
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

/* ---- one pass ---------------------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes encode(payload, 'hex') into r->body. The length, or -1 if too big or malformed. */
static long decode_body(relay *r, const char *hex, size_t len)
{
    if (len % 2 || len / 2 > sizeof(r->body))
        return -1;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        r->body[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(len / 2);
}

/* Packs row i of res into r->envelope: the length, or a negative tally_err. */
static long pack_row(relay *r, const PGresult *res, int i)
{
    long body_len = decode_body(r, PQgetvalue(res, i, C_PAYLOAD), PQgetlength(res, i, C_PAYLOAD));
    if (body_len < 0)
        return TALLY_ETOOBIG;
    event_row row = { .seq = pgx_int(res, i, C_SEQ),
                      .tenant_id = PQgetvalue(res, i, C_TENANT),
                      .complaint_id = pgx_int(res, i, C_COMPLAINT),
                      .version = pgx_int(res, i, C_VERSION),
                      .type = (int)pgx_int(res, i, C_TYPE),
                      .occurred_at_ms = pgx_int(res, i, C_OCCURRED),
                      .local_day = PQgetvalue(res, i, C_DAY),
                      .recorded_at_ms = pgx_int(res, i, C_RECORDED),
                      .imported = pgx_int(res, i, C_IMPORTED) != 0,
                      .body = r->body,
                      .body_len = (size_t)body_len };
    return event_pack(&row, r->envelope, sizeof(r->envelope));
}

static void report_poison(relay *r, const PGresult *res, int i, long err)
{
    int64_t seq = pgx_int(res, i, C_SEQ);
    if (seq <= r->poison_logged)
        return;
    r->poison_logged = seq;
    log_error("relay: an event row cannot be published; it stays unpublished and is skipped",
              LOG_INT("seq", seq), LOG_INT("type", pgx_int(res, i, C_TYPE)),
              LOG_STR("error", tally_err_str((int)err)));
}

static bool is_held(const relay *r, int nheld, int64_t complaint)
{
    for (int k = 0; k < nheld; k++)
        if (r->held[k] == complaint)
            return true;
    return false;
}

/*
 * Appends one XADD per packable row among the first n of res to the pipeline, holding back
 * the later rows of a complaint whose row cannot be packed. The number of rows appended; in
 * *unpublishable the rows left out.
 */
static int append_xadds(relay *r, redisContext *ctx, const PGresult *res, int n, int *unpublishable)
{
    int sent = 0, nheld = 0;
    *unpublishable = 0;
    for (int i = 0; i < n; i++) {
        int64_t complaint = pgx_int(res, i, C_COMPLAINT);
        if (complaint && is_held(r, nheld, complaint)) {
            (*unpublishable)++;
            continue;
        }
        long len = pack_row(r, res, i);
        if (len < 0) {
            report_poison(r, res, i, len);
            (*unpublishable)++;
            if (complaint)
                r->held[nheld++] = complaint;
            continue;
        }
        char key[STREAM_KEY_MAX];
        int part = stream_partition(PQgetvalue(res, i, C_TENANT), r->conf.partitions);
        stream_key(part, key, sizeof(key));
        const char *argv[] = { "XADD", key, "*", STREAM_FIELD_EVENT, (const char *)r->envelope };
        size_t lens[] = { 4, strlen(key), 1, strlen(STREAM_FIELD_EVENT), (size_t)len };
        if (redisAppendCommandArgv(ctx, 5, argv, lens) != REDIS_OK)
            break; /* out of memory: send what is appended, the rest waits */
        r->seqs[sent] = pgx_int(res, i, C_SEQ);
        r->recorded[sent] = pgx_int(res, i, C_RECORDED);
        r->part[sent] = part;
        sent++;
    }
    return sent;
}

/*
 * Reads the replies of sent XADDs and of the SET of tally:relay:pos after them (SET ... GET:
 * *pos_before gets the value it replaced, -1 when there was none). Returns how many XADDs
 * succeeded before the first failure (the rows that may be marked), 0 when the SET failed;
 * error gets the first failure, "" if none.
 */
static int read_replies(relay *r, int sent, char *error, size_t errlen, int64_t *pos_before)
{
    redisContext *ctx = kv_ctx(r->kv);
    int ok = 0;
    bool reset = false;
    error[0] = '\0';
    for (int j = 0; j <= sent; j++) {
        redisReply *rep = NULL;
        if (redisGetReply(ctx, (void **)&rep) != REDIS_OK || !rep) {
            if (!error[0])
                snprintf(error, errlen, "%s", ctx->errstr[0] ? ctx->errstr : "connection lost");
            kv_reset(r->kv);
            return 0;
        }
        if (rep->type == REDIS_REPLY_ERROR && !error[0]) {
            snprintf(error, errlen, "%s: %s", j < sent ? "XADD" : "SET", rep->str);
            reset = kv_systemic_kind(rep->str) != NULL;
        } else if (rep->type != REDIS_REPLY_ERROR && !error[0] && j < sent) {
            double lag = (double)(now_wall_ms() - r->recorded[j]) / 1000.0;
            metrics_observe(r->m_lag, lag < 0 ? 0 : lag);
            if (rep->type == REDIS_REPLY_STRING)
                snprintf(r->last_id[r->part[j]], RELAY_ID_MAX, "%s", rep->str);
            ok++;
        }
        if (j == sent && rep->type == REDIS_REPLY_ERROR)
            ok = 0; /* pos was not recorded: the rows must not be marked with this pass's id */
        else if (j == sent)
            *pos_before = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : -1;
        freeReplyObject(rep);
    }
    if (reset)
        kv_reset(r->kv); /* this Redis cannot take writes now: find the one that can */
    return ok;
}

/* Marks the first n sent rows published by pass id. */
static int mark(relay *r, int n, int64_t id)
{
    char pass[24];
    size_t len = 0;
    r->seq_list[len++] = '{';
    for (int j = 0; j < n; j++)
        len += (size_t)snprintf(r->seq_list + len, r->seq_list_cap - len, "%s%" PRId64,
                                j ? "," : "", r->seqs[j]);
    snprintf(r->seq_list + len, r->seq_list_cap - len, "}");
    snprintf(pass, sizeof(pass), "%" PRId64, id);
    const char *values[] = { r->seq_list, pass };
    return pgx_exec(r->pg, S_MARK, 2, values, NULL, NULL, RELAY_PG_WAIT_MS, NULL);
}

/* Refreshes the backlog gauge, at most once a second, on its own session (never a wedge). */
static void count_backlog(relay *r)
{
    PGresult *res;
    if (now_mono_ms() < r->count_at_ms)
        return;
    int rc = pgx_connect(r->stats);
    if (rc == 0)
        rc = pgx_exec_params(r->stats, BACKLOG_SQL, 0, NULL, NULL, NULL, NULL, BACKLOG_WAIT_MS,
                             &res);
    if (rc != 0) {
        if (!r->count_down)
            log_warn("relay: cannot count the backlog; not counting for a minute",
                     LOG_STR("error", pgx_errstr(r->stats)));
        r->count_down = true;
        pgx_reset(r->stats);
        r->count_at_ms = now_mono_ms() + BACKLOG_PAUSE_MS;
        return;
    }
    r->count_down = false;
    metrics_set(r->m_backlog, pgx_int(res, 0, 0));
    PQclear(res);
    r->count_at_ms = now_mono_ms() + BACKLOG_EVERY_MS;
}

/*
 * After a pass that drained the backlog: XADDs to every partition a watermark entry, field w
 * = at_ms (the wall clock just before the pass's SELECT: every row committed before it was
 * visible to that SELECT, so it is at an earlier position of its stream now). At most every
 * WATERMARK_MIN_MS. 0, or -1 with the failure reported.
 */
static int watermark(relay *r, int64_t at_ms)
{
    char w[24];
    int rc = 0;
    if (now_mono_ms() - r->watermark_at_ms < WATERMARK_MIN_MS)
        return 0;
    redisContext *ctx = kv_ctx(r->kv);
    snprintf(w, sizeof(w), "%lld", (long long)at_ms);
    for (int p = 0; p < r->conf.partitions; p++) {
        char key[STREAM_KEY_MAX];
        stream_key(p, key, sizeof(key));
        redisAppendCommand(ctx, "XADD %s * " STREAM_FIELD_WATERMARK " %s", key, w);
    }
    for (int p = 0; p < r->conf.partitions; p++) {
        redisReply *rep = NULL;
        if (redisGetReply(ctx, (void **)&rep) != REDIS_OK || !rep) {
            relay_redis_failed(r, ctx->errstr[0] ? ctx->errstr : "connection lost");
            kv_reset(r->kv);
            return -1;
        }
        if (rep->type == REDIS_REPLY_STRING)
            snprintf(r->last_id[p], RELAY_ID_MAX, "%s", rep->str);
        else if (rc == 0 && rep->type == REDIS_REPLY_ERROR) {
            char error[256];
            snprintf(error, sizeof(error), "XADD (watermark): %s", rep->str);
            relay_redis_failed(r, error);
            rc = -1;
        }
        freeReplyObject(rep);
    }
    if (rc == 0)
        r->watermark_at_ms = now_mono_ms();
    return rc;
}

/* Publishes the oldest unpublished rows and marks them. */
static enum relay_outcome publish(relay *r)
{
    PGresult *res = NULL;
    char limit[16], error[256];
    enum relay_outcome out = RELAY_IDLE;
    if (!session_alive(r)) {
        lose_leadership(r, "the PostgreSQL session ended");
        return RELAY_LOST;
    }
    snprintf(limit, sizeof(limit), "%d", r->conf.batch);
    const char *values[] = { limit };
    int64_t selected_at_ms = now_wall_ms(); /* before the SELECT's snapshot */
    if (pgx_exec(r->pg, S_SELECT, 1, values, NULL, NULL, RELAY_PG_WAIT_MS, &res) != 0)
        return relay_leader_pg_error(r, "reading unpublished events");
    pg_ok(r);
    if (kv_connect(r->kv) != 0) {
        PQclear(res);
        relay_redis_failed(r, kv_errstr(r->kv));
        return redis_pass_failed(r);
    }
    if (relay_setup_redis(r) != 0 || relay_check_redis(r) != 0) {
        PQclear(res);
        return redis_pass_failed(r);
    }
    int unmarked = relay_repair_unmark(r, &out);
    if (unmarked != 0) {
        PQclear(res);
        if (unmarked < 0)
            return out == RELAY_REDIS_DOWN ? redis_pass_failed(r) : out;
        return RELAY_MORE; /* select again: the un-marked rows come first */
    }

    /* Backpressure: room is what every stream can still take below maxlen. */
    int rows = PQntuples(res), room = rows, ok = 0, unpublishable = 0;
    bool full = false;
    for (int p = 0; p < r->conf.partitions; p++) {
        long long left = r->conf.maxlen - r->xlen[p];
        full |= left <= 0;
        if (left < room)
            room = left > 0 ? (int)left : 0;
    }
    metrics_set(r->m_backpressure, full || room < rows);
    if (!full) {
        int64_t id = now_wall_us();
        if (id <= r->last_pass_us)
            id = r->last_pass_us + 1;
        redisContext *ctx = kv_ctx(r->kv);
        int sent = append_xadds(r, ctx, res, room, &unpublishable);
        redisAppendCommand(ctx, "SET " STREAM_POS_KEY " %lld GET", (long long)id);
        int64_t pos_before = 0, marked_before = r->last_pass_us;
        ok = read_replies(r, sent, error, sizeof(error), &pos_before);
        metrics_set(r->m_unpublishable, unpublishable);
        metrics_inc(r->m_published, (uint64_t)ok);
        if (!error[0] || ok > 0)
            r->last_pass_us = id; /* SET succeeded: pos is id */
        /* Redis lost data between the check before this pass and its SET (a flush, a failover
           behind a proxy that kept the connection): what the SET replaced says so. */
        if ((!error[0] || ok > 0) && marked_before > 0 && pos_before < marked_before)
            relay_repair_lost_at_pass(r, pos_before);
        out = rows == r->conf.batch && ok > 0 && room == rows ? RELAY_MORE : RELAY_IDLE;
        if (ok > 0 && (!session_alive(r) || mark(r, ok, id) != 0))
            out = relay_leader_pg_error(r, "marking events published"); /* sent again later */
        else
            relay_repair_published(r, r->seqs, ok);
        if (error[0]) {
            PQclear(res);
            relay_redis_failed(r, error);
            return out == RELAY_LOST ? RELAY_LOST : redis_pass_failed(r);
        }
        if (rows < r->conf.batch && room == rows && ok == rows && out != RELAY_LOST &&
            watermark(r, selected_at_ms) != 0) {
            PQclear(res);
            return redis_pass_failed(r);
        }
    }
    PQclear(res);
    if (out == RELAY_LOST)
        return out;
    if (relay_maintain(r, &out) != 0)
        return out == RELAY_LOST || out == RELAY_PG_DOWN ? out : redis_pass_failed(r);
    redis_ok(r);
    return out;
}

/* One pass of the leader; the backlog is counted after it, also while Redis is down. */
static enum relay_outcome pass(relay *r)
{
    enum relay_outcome out = publish(r);
    if (r->leader)
        count_backlog(r);
    return out;
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
    while (!stopping(r)) {
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
            pg_ok(r);
            backoff_reset(&r->bo);
            if (rc == 0) {
                wait_for(r, quiet_ms(r), false);
                continue;
            }
        }
        out = pass(r);
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
        pgx_add_setting(r->pg, "idle_session_timeout", IDLE_SESSION_MS) != 0) {
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
