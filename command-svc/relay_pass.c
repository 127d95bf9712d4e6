/*
 * relay_pass: one pass of the leader (relay.c runs them; the state kept in Redis between passes
 * is relay_stream.c's). A pass selects the oldest unpublished rows, checks Redis, packs each
 * row as an EventEnvelope and pipelines one XADD per row to its partition's stream under
 * backpressure, then SET tally:relay:pos <pass id>, marks what Redis took, follows a drained
 * backlog with watermark entries, and runs the periodic trim and repair. Its invariants are in
 * relay.c's header.
 */
#include "relay_int.h"

#include "err.h"
#include "event.h"
#include "log.h"
#include "now.h"
#include "stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKLOG_EVERY_MS 1000
#define BACKLOG_WAIT_MS  4000  /* under the session's 5 s statement cap */
#define BACKLOG_PAUSE_MS 60000 /* no count for this long after one failed */
#define WATERMARK_MIN_MS 200
#define DRAIN_EVERY      256

/* On the statistics session, unprepared: its text names it for logs and pg_stat_activity. */
#define BACKLOG_SQL                                                   \
    "SELECT /* relay_backlog */ count(*) FROM (SELECT 1 FROM outbox " \
    "LIMIT " STREAM_BACKLOG_LIMIT_SQL ") s"

static int64_t now_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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
    relay_lose_leadership(r, "Redis failed for longer than TALLY_RELAY_REDIS_GIVEUP_MS");
    kv_reset(r->kv);
    r->redis_failing_ms = 0;
    r->compete_at_ms = now_mono_ms() + 2 * (int64_t)r->conf.poll_ms;
    return RELAY_LOST;
}

/*
 * Every DRAIN_EVERY rows while a read ahead is in flight: takes in what the server sent, so
 * that it never waits for room in the socket (its result is over a megabyte).
 */
static void drain_ahead(relay *r, int i)
{
    if (r->ahead && i % DRAIN_EVERY == DRAIN_EVERY - 1)
        pgx_take_input(r->pg);
}

/* Packs row i of res into r->envelope: the length, or a negative tally_err. */
static long pack_row(relay *r, const PGresult *res, int i)
{
    return event_pack_row(res, i, r->body, r->envelope, sizeof(r->envelope));
}

static void report_poison(relay *r, const PGresult *res, int i, long err)
{
    int64_t seq = pgx_int(res, i, EVENT_C_SEQ);
    if (seq <= r->poison_logged)
        return;
    r->poison_logged = seq;
    log_error("relay: an event row cannot be published; it stays unpublished and is skipped",
              LOG_INT("seq", seq), LOG_INT("type", pgx_int(res, i, EVENT_C_TYPE)),
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
        drain_ahead(r, i);
        int64_t complaint = pgx_int(res, i, EVENT_C_COMPLAINT);
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
        int part = stream_partition(PQgetvalue(res, i, EVENT_C_TENANT), r->conf.partitions);
        stream_key(part, key, sizeof(key));
        const char *argv[] = { "XADD", key, "*", STREAM_FIELD_EVENT, (const char *)r->envelope };
        size_t lens[] = { 4, strlen(key), 1, strlen(STREAM_FIELD_EVENT), (size_t)len };
        if (redisAppendCommandArgv(ctx, 5, argv, lens) != REDIS_OK)
            break; /* out of memory: send what is appended, the rest waits */
        r->seqs[sent] = pgx_int(res, i, EVENT_C_SEQ);
        r->recorded[sent] = pgx_int(res, i, EVENT_C_RECORDED);
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
        drain_ahead(r, j);
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

/*
 * Marks the first n sent rows published by pass id: deletes them from the outbox and records
 * the pass, by their seq range when the rows are contiguous (every seq between the first and
 * the last was sent), else with the list of seqs.
 */
static int mark(relay *r, int n, int64_t id)
{
    char pass[24], lo[24], hi[24];
    size_t len = 0;
    snprintf(pass, sizeof(pass), "%" PRId64, id);
    snprintf(lo, sizeof(lo), "%" PRId64, r->seqs[0]);
    snprintf(hi, sizeof(hi), "%" PRId64, r->seqs[n - 1]);
    if (r->seqs[n - 1] - r->seqs[0] == n - 1) {
        const char *values[] = { lo, hi, pass };
        return pgx_exec(r->pg, S_MARK_RANGE, 3, values, NULL, NULL, RELAY_PG_WAIT_MS, NULL);
    }
    r->seq_list[len++] = '{';
    for (int j = 0; j < n; j++)
        len += (size_t)snprintf(r->seq_list + len, r->seq_list_cap - len, "%s%" PRId64,
                                j ? "," : "", r->seqs[j]);
    snprintf(r->seq_list + len, r->seq_list_cap - len, "}");
    const char *values[] = { r->seq_list, pass, lo, hi };
    return pgx_exec(r->pg, S_MARK, 4, values, NULL, NULL, RELAY_PG_WAIT_MS, NULL);
}

/*
 * Before a pass publishes its n rows (contiguous seqs), sends the read of the next batch: the
 * pass's SELECT, leaving out those seqs, which stay in the outbox until the mark. The
 * server runs it while the pass packs and Redis takes the XADDs (drain_ahead keeps its rows
 * flowing meanwhile). True if sent.
 */
static bool read_ahead(relay *r, const PGresult *res, int n)
{
    char limit[16], lo[24], hi[24];
    int64_t first = pgx_int(res, 0, EVENT_C_SEQ), last = pgx_int(res, n - 1, EVENT_C_SEQ);
    if (last - first != n - 1 || !relay_session_alive(r))
        return false;
    snprintf(limit, sizeof(limit), "%d", r->conf.batch);
    snprintf(lo, sizeof(lo), "%" PRId64, first);
    snprintf(hi, sizeof(hi), "%" PRId64, last);
    const char *values[] = { limit, lo, hi };
    r->next_at_ms = now_wall_ms(); /* before its snapshot */
    return pgx_send(r->pg, S_SELECT, 3, values, NULL, NULL) == 0;
}

/* The backlog count failed: not counted for a minute (logged once). */
static void count_failed(relay *r, const char *error)
{
    if (!r->count_down)
        log_warn("relay: cannot count the backlog; not counting for a minute",
                 LOG_STR("error", error));
    r->count_down = true;
    r->count_sent_ms = 0;
    pgx_reset(r->stats);
    r->count_at_ms = now_mono_ms() + BACKLOG_PAUSE_MS;
}

/*
 * Refreshes the backlog gauge, at most once a second, on its own session (never a wedge). The
 * count is sent and the pass goes on: a later call takes its result once it is in (the count
 * of a large backlog takes 100 ms or more, a tenth of the relay's time when it waited for it),
 * and gives up on it after BACKLOG_WAIT_MS.
 */
static void count_backlog(relay *r)
{
    PGconn *pg;
    if (r->count_sent_ms) {
        pg = pgx_pg(r->stats);
        if (!pg || !PQconsumeInput(pg)) {
            count_failed(r, pg ? PQerrorMessage(pg) : "the connection was lost");
            return;
        }
        if (PQisBusy(pg)) {
            if (now_mono_ms() - r->count_sent_ms > BACKLOG_WAIT_MS)
                count_failed(r, "the count took longer than BACKLOG_WAIT_MS");
            return;
        }
        PGresult *res, *last = NULL;
        while ((res = PQgetResult(pg)) != NULL) {
            PQclear(last);
            last = res;
        }
        r->count_sent_ms = 0;
        if (!last || PQresultStatus(last) != PGRES_TUPLES_OK) {
            count_failed(r, last ? PQresultErrorMessage(last) : "no result");
            PQclear(last);
            return;
        }
        r->count_down = false;
        metrics_set(r->m_backlog, pgx_int(last, 0, 0));
        PQclear(last);
        r->count_at_ms = now_mono_ms() + BACKLOG_EVERY_MS;
        return;
    }
    if (now_mono_ms() < r->count_at_ms)
        return;
    if (pgx_connect(r->stats) != 0) {
        count_failed(r, pgx_errstr(r->stats));
        return;
    }
    pg = pgx_pg(r->stats);
    if (!PQsendQuery(pg, BACKLOG_SQL)) {
        count_failed(r, PQerrorMessage(pg));
        return;
    }
    r->count_sent_ms = now_mono_ms();
}

/* True if every stream has room for one entry more after the first sent rows of the pass. */
static bool room_after(const relay *r, int sent)
{
    for (int p = 0; p < r->conf.partitions; p++) {
        long long n = r->xlen[p];
        for (int j = 0; j < sent; j++)
            n += r->part[j] == p;
        if (n >= r->conf.maxlen)
            return false;
    }
    return true;
}

/*
 * After a pass that drained the backlog and published its first sent rows: XADDs to every
 * partition a watermark entry, field w = at_ms (the wall clock just before the pass's SELECT:
 * every row committed before it was visible to that SELECT, so it is at an earlier position of
 * its stream now). At most every WATERMARK_MIN_MS, and only while every stream has room for it
 * below maxlen (a watermark is an entry like the others). 0, or -1 with the failure reported.
 */
static int watermark(relay *r, int64_t at_ms, int sent)
{
    char w[24];
    int rc = 0;
    if (now_mono_ms() - r->watermark_at_ms < WATERMARK_MIN_MS || !room_after(r, sent))
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
    if (!relay_session_alive(r)) {
        relay_lose_leadership(r, "the PostgreSQL session ended");
        return RELAY_LOST;
    }
    snprintf(limit, sizeof(limit), "%d", r->conf.batch);
    const char *values[] = { limit, "0", "0" }; /* none left out */
    int64_t selected_at_ms = now_wall_ms();     /* before the SELECT's snapshot */
    if (r->next) {                              /* read during the last pass */
        res = r->next;
        r->next = NULL;
        selected_at_ms = r->next_at_ms;
    } else if (pgx_exec(r->pg, S_SELECT, 3, values, NULL, NULL, RELAY_PG_WAIT_MS, &res) != 0) {
        return relay_leader_pg_error(r, "reading unpublished events");
    }
    relay_pg_ok(r);
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
        /* A full batch of a backlog: the next one is read while this one is published. */
        r->ahead = rows == r->conf.batch && room == rows && read_ahead(r, res, rows);
        int sent = append_xadds(r, ctx, res, room, &unpublishable);
        redisAppendCommand(ctx, "SET " STREAM_POS_KEY " %lld GET", (long long)id);
        int64_t pos_before = 0, marked_before = r->last_pass_us;
        ok = read_replies(r, sent, error, sizeof(error), &pos_before);
        PGresult *next = NULL;
        bool ahead = r->ahead;
        r->ahead = false;
        /* A failed read ahead costs only its rows (counted; the next pass selects them): the
           pass is marked unless the session itself is gone. */
        if (ahead && pgx_recv(r->pg, RELAY_PG_WAIT_MS, &next) != 0) {
            metrics_inc(r->m_err_pg, 1);
            if (!relay_session_alive(r))
                out = relay_leader_pg_error(r, "reading unpublished events ahead");
        }
        metrics_set(r->m_unpublishable, unpublishable);
        metrics_inc(r->m_published, (uint64_t)ok);
        if (!error[0] || ok > 0)
            r->last_pass_us = id; /* SET succeeded: pos is id */
        /* Redis lost data between the check before this pass and its SET (a flush, a failover
           behind a proxy that kept the connection): what the SET replaced says so. */
        if ((!error[0] || ok > 0) && marked_before > 0 && pos_before < marked_before)
            relay_repair_lost_at_pass(r, pos_before);
        if (out != RELAY_LOST)
            out = rows == r->conf.batch && ok > 0 && room == rows ? RELAY_MORE : RELAY_IDLE;
        bool marked = false;
        if (out != RELAY_LOST && ok > 0 && (!relay_session_alive(r) || mark(r, ok, id) != 0)) {
            out = relay_leader_pg_error(r, "marking events published"); /* sent again later */
        } else if (out != RELAY_LOST) {
            marked = true;
            relay_repair_published(r, r->seqs, ok);
        }
        /* The rows read ahead follow this pass's only when all of it is published (a row held
           back is in the range they leave out, and so would be a later version of its
           complaint that is not). */
        if (next && marked && ok == rows && !error[0]) /* ok <= sent <= rows */
            r->next = next;
        else
            PQclear(next);
        if (error[0]) {
            PQclear(res);
            relay_redis_failed(r, error);
            return out == RELAY_LOST ? RELAY_LOST : redis_pass_failed(r);
        }
        if (rows < r->conf.batch && room == rows && ok == rows && out != RELAY_LOST &&
            watermark(r, selected_at_ms, ok) != 0) {
            PQclear(res);
            return redis_pass_failed(r);
        }
    }
    PQclear(res);
    if (out == RELAY_LOST)
        return out;
    if (relay_maintain(r, &out) != 0)
        return out == RELAY_LOST || out == RELAY_PG_DOWN ? out : redis_pass_failed(r);
    relay_redis_ok(r);
    return out;
}

enum relay_outcome relay_pass(relay *r)
{
    enum relay_outcome out = publish(r);
    if (r->leader)
        count_backlog(r);
    return out;
}
