/*
 * relay: the outbox relay of command-svc (contract in relay.h).
 *
 * One thread, one PostgreSQL session (pgx) and one Redis connection (kv), all its own. The
 * thread is either a standby or the leader:
 *
 *   standby  tries pg_try_advisory_lock(RELAY_LOCK_KEY) every poll_ms. On success it LISTENs
 *            on tally_events and becomes the leader.
 *   leader   runs passes. A pass reads the oldest unpublished rows (WHERE published_at IS
 *            NULL ORDER BY seq LIMIT batch, the partial index events_unpublished), packs each
 *            as an EventEnvelope (event_pack), pipelines one XADD per row to
 *            tally:events:<partition> (MAXLEN ~ maxlen, one field "e" holding the envelope
 *            bytes), and marks the rows that Redis took with UPDATE ... WHERE seq = ANY($1).
 *            After a full batch the next pass starts at once; otherwise the thread sleeps
 *            until a NOTIFY on tally_events, the poll timeout, or relay_stop().
 *
 * Leadership is the session lock, so it ends with the session: when the leader's connection
 * breaks it is no longer the leader, whatever pgx would reconnect to. The thread therefore
 * checks the connection before every statement it runs as leader and never lets pgx reconnect
 * silently under it; a broken connection makes it a standby again, which reconnects and
 * competes for the lock like any other replica.
 *
 * Nothing remembers a position in the log: every pass asks PostgreSQL for what is still
 * unpublished, so a row whose transaction commits after higher seqs were published is found
 * by the next pass. Within a pass only the prefix of rows whose XADD succeeded is marked, so a
 * failure in the middle of a pipeline republishes the rest in seq order (some as duplicates,
 * with their seq, which the projector drops). A crash between XADD and the mark does the same.
 *
 * Failures never end the thread: Redis or PostgreSQL errors are counted, logged once when the
 * dependency goes down and once when it is back, and retried after an exponential backoff with
 * jitter (50 ms .. 5 s); the rows wait in the table. While it waits the leader keeps reading
 * its notifications, so PostgreSQL's NOTIFY queue never fills behind a long Redis outage.
 *
 * A row that cannot be packed (an event type this build does not know, a body over
 * EVENT_BODY_MAX: a newer writer or a corrupted row) is left unpublished, logged once and
 * skipped, so that one bad row does not stop every tenant's events; the rows after it are
 * still published (as long as fewer than a batch of such rows wait at the head of the log).
 *
 * Metrics: tally_relay_leader (0/1), tally_relay_backlog (unpublished rows, counted by the
 * leader at the start of a pass, at most once a second, also while Redis is down; a standby
 * reports 0, so the sum over replicas is the backlog),
 * tally_relay_published_total, tally_relay_publish_lag_seconds (wall clock at XADD minus the
 * row's recorded_at), tally_relay_errors_total{dependency="redis"|"postgres"}.
 */
#include "relay.h"

#include "backoff.h"
#include "err.h"
#include "event.h"
#include "kv.h"
#include "log.h"
#include "now.h"
#include "pgx.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* The advisory lock of the active relay (the migrations hold 7411001 while they run). */
#define RELAY_LOCK_KEY   "7411002"
#define PG_WAIT_MS       3000 /* longest wait for one statement; bounds relay_stop too */
#define PG_STMT_CAP_MS   5000 /* server-side statement_timeout of the relay's session */
#define REDIS_TIMEOUT_MS 1000
#define BACKOFF_MIN_MS   50
#define BACKOFF_MAX_MS   5000
#define BACKLOG_EVERY_MS 1000
#define ENVELOPE_MAX     (EVENT_BODY_MAX + 1024)

/* The columns of an envelope, in the order of the C_ names below; times in Unix ms. */
#define RELAY_COLUMNS                                                                      \
    "seq, tenant_id, coalesce(complaint_id, 0), coalesce(version, 0), type,"               \
    " (extract(epoch FROM occurred_at) * 1000)::bigint, to_char(local_day, 'YYYY-MM-DD')," \
    " (extract(epoch FROM recorded_at) * 1000)::bigint, imported::int, encode(payload, 'hex')"

enum { S_SELECT, S_MARK, S_BACKLOG, S_LOCK, S_COUNT };
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

static const pgx_stmt stmts[S_COUNT] = {
    [S_SELECT] = { "relay_select",
                   "SELECT " RELAY_COLUMNS " FROM events WHERE published_at IS NULL"
                   " ORDER BY seq LIMIT $1",
                   1 },
    [S_MARK] = { "relay_mark",
                 "UPDATE events SET published_at = now()"
                 " WHERE seq = ANY($1::bigint[]) AND published_at IS NULL",
                 1 },
    [S_BACKLOG] = { "relay_backlog", "SELECT count(*) FROM events WHERE published_at IS NULL", 0 },
    [S_LOCK] = { "relay_lock", "SELECT pg_try_advisory_lock(" RELAY_LOCK_KEY ")", 0 },
};

/* What a pass or a wait ended with. */
enum outcome { O_IDLE, O_MORE, O_PG_DOWN, O_REDIS_DOWN, O_LOST };

struct relay {
    relay_config conf;
    char maxlen[24];
    pthread_t thread;
    int wake_fd; /* eventfd: written by relay_stop */
    atomic_bool stop;

    pgx_conn *pg;
    kv_conn *kv;
    bool leader, pg_down, redis_down;
    backoff bo;
    int64_t backlog_at_ms; /* monotonic time of the last backlog count */
    int64_t poison_logged; /* highest seq reported as unpublishable (for logging only) */
    uint8_t body[EVENT_BODY_MAX];
    uint8_t envelope[ENVELOPE_MAX];
    int64_t *seqs;     /* batch entries: seqs of the rows sent in this pass */
    int64_t *recorded; /* batch entries: their recorded_at, Unix ms */
    char *seq_list;    /* "{1,2,3}" for the mark */
    size_t seq_list_cap;

    metrics_gauge *m_leader, *m_backlog;
    metrics_counter *m_published, *m_err_redis, *m_err_pg;
    metrics_histogram *m_lag;
};

/* Publish lag: sub-second when the relay keeps up, minutes after an outage. */
static const double lag_buckets[] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,
    2.5,   5,      10,    30,   60,    120,  300, 600,  1800, 3600
};

static bool stopping(relay *r)
{
    return atomic_load_explicit(&r->stop, memory_order_acquire);
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

static void redis_failed(relay *r, const char *error)
{
    metrics_inc(r->m_err_redis, 1);
    if (!r->redis_down)
        log_warn("relay: Redis is unavailable; events wait in PostgreSQL", LOG_STR("error", error));
    r->redis_down = true;
}

static void redis_ok(relay *r)
{
    if (r->redis_down)
        log_info("relay: Redis is available again");
    r->redis_down = false;
}

static void lose_leadership(relay *r, const char *why)
{
    if (r->leader)
        log_warn("relay: lost the leadership", LOG_STR("reason", why),
                 LOG_STR("error", pgx_errstr(r->pg)));
    r->leader = false;
    metrics_set(r->m_leader, 0);
    metrics_set(r->m_backlog, 0);
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

/* A statement of the leader failed: O_LOST if the session went with it, else O_PG_DOWN. */
static enum outcome leader_pg_error(relay *r, const char *what)
{
    pg_failed(r, what);
    if (!session_alive(r)) {
        lose_leadership(r, "the PostgreSQL session ended");
        return O_LOST;
    }
    return O_PG_DOWN;
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
 * up) and returns O_LOST when the session breaks. Otherwise O_IDLE, or O_MORE for a NOTIFY.
 */
static enum outcome wait_for(relay *r, int64_t ms, bool on_notify)
{
    int64_t deadline = now_mono_ms() + ms;
    bool broken = false;
    for (;;) {
        if (r->leader && !session_alive(r)) {
            lose_leadership(r, "the PostgreSQL session ended");
            return O_LOST;
        }
        if (r->leader && drain_notifies(r, &broken) && on_notify)
            return O_MORE;
        if (broken) {
            lose_leadership(r, PQerrorMessage(pgx_pg(r->pg)));
            return O_LOST;
        }
        int64_t left = deadline - now_mono_ms();
        if (stopping(r) || left <= 0)
            return O_IDLE;
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

/* Appends one XADD per packable row to the pipeline; the number of rows appended. */
static int append_xadds(relay *r, redisContext *ctx, const PGresult *res)
{
    int sent = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        long len = pack_row(r, res, i);
        if (len < 0) {
            report_poison(r, res, i, len);
            continue;
        }
        char key[48];
        snprintf(key, sizeof(key), "tally:events:%d",
                 event_partition(PQgetvalue(res, i, C_TENANT), r->conf.partitions));
        const char *argv[] = { "XADD",    key, "MAXLEN", "~",
                               r->maxlen, "*", "e",      (const char *)r->envelope };
        size_t lens[] = { 4, strlen(key), 6, 1, strlen(r->maxlen), 1, 1, (size_t)len };
        if (redisAppendCommandArgv(ctx, 8, argv, lens) != REDIS_OK)
            break; /* out of memory: send what is appended, the rest waits */
        r->seqs[sent] = pgx_int(res, i, C_SEQ);
        r->recorded[sent] = pgx_int(res, i, C_RECORDED);
        sent++;
    }
    return sent;
}

/*
 * Reads the replies of sent XADDs. Returns how many succeeded before the first failure (the
 * rows that may be marked); error gets the first failure, "" if none.
 */
static int read_replies(relay *r, int sent, char *error, size_t errlen)
{
    redisContext *ctx = kv_ctx(r->kv);
    int ok = 0;
    error[0] = '\0';
    for (int j = 0; j < sent; j++) {
        redisReply *rep = NULL;
        if (redisGetReply(ctx, (void **)&rep) != REDIS_OK || !rep) {
            if (!error[0])
                snprintf(error, errlen, "%s", ctx->errstr[0] ? ctx->errstr : "connection lost");
            kv_reset(r->kv);
            return ok;
        }
        if (rep->type == REDIS_REPLY_ERROR && !error[0])
            snprintf(error, errlen, "XADD: %s", rep->str);
        else if (rep->type != REDIS_REPLY_ERROR && !error[0]) {
            double lag = (double)(now_wall_ms() - r->recorded[j]) / 1000.0;
            metrics_observe(r->m_lag, lag < 0 ? 0 : lag);
            ok++;
        }
        freeReplyObject(rep);
    }
    return ok;
}

/* Marks the first n sent rows published. */
static int mark(relay *r, int n)
{
    size_t len = 0;
    r->seq_list[len++] = '{';
    for (int j = 0; j < n; j++)
        len += (size_t)snprintf(r->seq_list + len, r->seq_list_cap - len, "%s%" PRId64,
                                j ? "," : "", r->seqs[j]);
    snprintf(r->seq_list + len, r->seq_list_cap - len, "}");
    const char *values[] = { r->seq_list };
    return pgx_exec(r->pg, S_MARK, 1, values, NULL, NULL, PG_WAIT_MS, NULL);
}

/* Refreshes the backlog gauge, at most once a second. */
static int count_backlog(relay *r)
{
    PGresult *res;
    if (now_mono_ms() - r->backlog_at_ms < BACKLOG_EVERY_MS)
        return 0;
    int rc = pgx_exec(r->pg, S_BACKLOG, 0, NULL, NULL, NULL, PG_WAIT_MS, &res);
    if (rc != 0)
        return rc;
    metrics_set(r->m_backlog, pgx_int(res, 0, 0));
    PQclear(res);
    r->backlog_at_ms = now_mono_ms();
    return 0;
}

/* One pass of the leader: publish the oldest unpublished rows, mark them. */
static enum outcome pass(relay *r)
{
    PGresult *res = NULL;
    char limit[16], error[256];
    enum outcome out;
    if (!session_alive(r)) {
        lose_leadership(r, "the PostgreSQL session ended");
        return O_LOST;
    }
    if (count_backlog(r) != 0) /* also while Redis is down, when it matters most */
        return leader_pg_error(r, "counting the backlog");
    if (kv_connect(r->kv) != 0) {
        redis_failed(r, kv_errstr(r->kv));
        return O_REDIS_DOWN;
    }
    snprintf(limit, sizeof(limit), "%d", r->conf.batch);
    const char *values[] = { limit };
    if (pgx_exec(r->pg, S_SELECT, 1, values, NULL, NULL, PG_WAIT_MS, &res) != 0)
        return leader_pg_error(r, "reading unpublished events");
    int rows = PQntuples(res);
    int sent = append_xadds(r, kv_ctx(r->kv), res);
    PQclear(res);
    int ok = read_replies(r, sent, error, sizeof(error));
    metrics_inc(r->m_published, (uint64_t)ok);
    out = rows == r->conf.batch && ok > 0 ? O_MORE : O_IDLE;
    if (ok > 0 && (!session_alive(r) || mark(r, ok) != 0))
        out = leader_pg_error(r, "marking events published"); /* they will be sent again */
    if (error[0]) {
        redis_failed(r, error);
        return out == O_LOST ? O_LOST : O_REDIS_DOWN;
    }
    redis_ok(r);
    if (out == O_IDLE || out == O_MORE)
        pg_ok(r);
    return out;
}

/* ---- the thread -------------------------------------------------------------------------- */

/* A standby's attempt at the lock: 1 now leader, 0 someone else is, or a tally_err. */
static int try_lead(relay *r)
{
    PGresult *res;
    int rc = pgx_exec(r->pg, S_LOCK, 0, NULL, NULL, NULL, PG_WAIT_MS, &res);
    if (rc != 0)
        return rc;
    bool got = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!got)
        return 0;
    if ((rc = pgx_exec_sql(r->pg, "LISTEN tally_events", PG_WAIT_MS, NULL)) != 0) {
        pgx_reset(r->pg); /* releases the lock with the session */
        return rc;
    }
    r->leader = true;
    r->backlog_at_ms = 0;
    metrics_set(r->m_leader, 1);
    log_info("relay: became the leader; publishing events");
    return 1;
}

static void *relay_main(void *arg)
{
    relay *r = arg;
    while (!stopping(r)) {
        enum outcome out;
        if (!r->leader) {
            int rc = try_lead(r);
            if (rc < 0) {
                pg_failed(r, "competing for the relay lock");
                wait_for(r, backoff_next(&r->bo), false);
                continue;
            }
            pg_ok(r);
            backoff_reset(&r->bo);
            if (rc == 0) {
                wait_for(r, r->conf.poll_ms, false);
                continue;
            }
        }
        out = pass(r);
        if (out == O_IDLE)
            out = wait_for(r, r->conf.poll_ms, true);
        if (out == O_PG_DOWN || out == O_REDIS_DOWN)
            wait_for(r, backoff_next(&r->bo), false);
        else
            backoff_reset(&r->bo);
    }
    return NULL;
}

relay *relay_start(const relay_config *conf, char *err, size_t errlen)
{
    relay *r;
    if (!conf->pg_dsn || !conf->metrics || conf->partitions < 1 || conf->batch < 1 ||
        conf->poll_ms < 1 || conf->maxlen < 1) {
        snprintf(err, errlen, "relay: invalid configuration");
        return NULL;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        snprintf(err, errlen, "relay: out of memory");
        return NULL;
    }
    r->conf = *conf;
    r->wake_fd = -1;
    snprintf(r->maxlen, sizeof(r->maxlen), "%lld", conf->maxlen);
    backoff_init(&r->bo, BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    r->seq_list_cap = (size_t)conf->batch * 21 + 3;
    r->seqs = calloc((size_t)conf->batch, sizeof(int64_t));
    r->recorded = calloc((size_t)conf->batch, sizeof(int64_t));
    r->seq_list = malloc(r->seq_list_cap);
    r->pg = pgx_new(conf->pg_dsn, "command-svc/relay", stmts, S_COUNT, PG_STMT_CAP_MS);
    r->conf.pg_dsn = NULL; /* pgx keeps its own copy */
    r->kv = kv_new(&conf->redis, REDIS_TIMEOUT_MS);
    if (!r->seqs || !r->recorded || !r->seq_list || !r->pg || !r->kv) {
        snprintf(err, errlen, "relay: out of memory");
        goto out_free;
    }
    metrics_registry *m = conf->metrics;
    r->m_leader = metrics_gauge_add(m, "tally_relay_leader",
                                    "1 while this process runs the active outbox relay", NULL);
    r->m_backlog = metrics_gauge_add(
        m, "tally_relay_backlog",
        "Unpublished event rows, as counted by the active relay (0 on standby replicas)", NULL);
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
    if (!r->m_leader || !r->m_backlog || !r->m_published || !r->m_lag || !r->m_err_redis ||
        !r->m_err_pg) {
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
             LOG_INT("maxlen", conf->maxlen));
    return r;
out_close:
    close(r->wake_fd);
out_free:
    kv_free(r->kv);
    pgx_free(r->pg);
    free(r->seq_list);
    free(r->recorded);
    free(r->seqs);
    free(r);
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
    kv_free(r->kv);
    pgx_free(r->pg); /* ends the session, and so releases the lock */
    free(r->seq_list);
    free(r->recorded);
    free(r->seqs);
    free(r);
    log_info("relay stopped");
}
