#include "pgx.h"

#include "err.h"
#include "log.h"
#include "now.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONNECT_TIMEOUT_S     "2"
#define CANCEL_WAIT_MS        1000 /* how long a cancelled statement may take to stop */
#define RECONNECT_PAUSE_MS    100  /* after a failed connect, fail fast for this long */
#define CANCELS_MAX           16   /* cancel requests in flight at once, process-wide */
#define SET_TENANT_TIMEOUT_MS 5000 /* pgx_send's set_config of the tenant (it has no deadline) */

/*
 * Dead peers are noticed on both ends within about 25 s, even on a connection that is idle or
 * whose host vanished without a FIN or RST (a power loss, a partition): TCP keepalives after
 * 10 s idle, every 5 s, 3 probes; unacknowledged data for 25 s ends the connection. libpq sets
 * them on the client's socket; the same values go to the server as settings, so a backend
 * whose client is gone ends too (and with it the client's session locks). The DSN's own
 * keepalive parameters win over these.
 */
#define KEEPALIVE_IDLE_S     "10"
#define KEEPALIVE_INTERVAL_S "5"
#define KEEPALIVE_COUNT      "3"
#define TCP_USER_TIMEOUT_MS  "25000"

struct pgx_conn {
    PGconn *pg;
    char *dsn;
    char appname[64];
    char options[512];
    const pgx_stmt *stmts;
    size_t nstmts;
    int64_t failed_at_ms; /* monotonic time of the last failed connect */
    char err[512];
    char sqlstate[6];
    char constraint[64];
    bool scoped;        /* pgx_set_tenant was called: the session's rows are kept to tenant */
    char tenant[128];   /* the rows the session may see; "" none (every tenant table empty) */
    bool applied_known; /* the session's tally.tenant is known to be applied */
    char applied[128];  /* ... and this is it ("" none) */
    bool applied_in_tx; /* applied inside a transaction, which may yet be rolled back */
};

static void set_err(pgx_conn *c, const char *msg, const char *sqlstate, const char *constraint)
{
    snprintf(c->err, sizeof(c->err), "%s", msg ? msg : "");
    c->err[strcspn(c->err, "\n")] = '\0';
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate ? sqlstate : "");
    snprintf(c->constraint, sizeof(c->constraint), "%s", constraint ? constraint : "");
}

pgx_conn *pgx_new(const char *dsn, const char *application_name, const pgx_stmt *stmts,
                  size_t nstmts, int64_t statement_timeout_ms)
{
    pgx_conn *c = calloc(1, sizeof(*c));
    if (!c || !(c->dsn = strdup(dsn))) {
        free(c);
        return NULL;
    }
    snprintf(c->appname, sizeof(c->appname), "%s", application_name);
    snprintf(c->options, sizeof(c->options),
             "-c statement_timeout=%lld -c tcp_keepalives_idle=" KEEPALIVE_IDLE_S
             " -c tcp_keepalives_interval=" KEEPALIVE_INTERVAL_S
             " -c tcp_keepalives_count=" KEEPALIVE_COUNT
             " -c tcp_user_timeout=" TCP_USER_TIMEOUT_MS,
             (long long)statement_timeout_ms);
    c->stmts = stmts;
    c->nstmts = nstmts;
    return c;
}

int pgx_add_setting(pgx_conn *c, const char *name, const char *value)
{
    size_t len = strlen(c->options);
    int n = snprintf(c->options + len, sizeof(c->options) - len, " -c %s=%s", name, value);
    if (n < 0 || (size_t)n >= sizeof(c->options) - len) {
        c->options[len] = '\0';
        return TALLY_ETOOBIG;
    }
    return 0;
}

int pgx_set_tenant(pgx_conn *c, const char *tenant)
{
    size_t n = tenant ? strlen(tenant) : 0;
    if (tenant && (n == 0 || n >= sizeof(c->tenant)))
        return TALLY_EINVAL;
    for (size_t i = 0; i < n; i++) /* startup options split on whitespace; quotes, escapes */
        if ((unsigned char)tenant[i] <= ' ' || tenant[i] == 0x7f || tenant[i] == '\'' ||
            tenant[i] == '\\')
            return TALLY_EINVAL;
    memcpy(c->tenant, tenant ? tenant : "", n + 1);
    c->scoped = true;
    return 0;
}

void pgx_free(pgx_conn *c)
{
    if (!c)
        return;
    if (c->pg)
        PQfinish(c->pg);
    free(c->dsn);
    free(c);
}

void pgx_reset(pgx_conn *c)
{
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    c->applied_known = false;
}

PGconn *pgx_pg(pgx_conn *c)
{
    return c->pg;
}

/* libpq prints notices (and a FATAL arriving on an idle session) as plain text on stderr. */
static void notice(void *arg, const char *message)
{
    char line[512];
    (void)arg;
    snprintf(line, sizeof(line), "%s", message);
    line[strcspn(line, "\n")] = '\0';
    log_info("PostgreSQL notice", LOG_STR("message", line));
}

void pgx_log_notices(PGconn *pg)
{
    if (pg)
        PQsetNoticeProcessor(pg, notice, NULL);
}

int pgx_connect(pgx_conn *c)
{
    /* Before dbname, so that the DSN's own values win; after it, ours. */
    const char *keys[] = { "keepalives",
                           "keepalives_idle",
                           "keepalives_interval",
                           "keepalives_count",
                           "tcp_user_timeout",
                           "dbname",
                           "connect_timeout",
                           "application_name",
                           "options",
                           NULL };
    /* A new session starts with the tenant already set: no statement for it. */
    char options[sizeof(c->options) + sizeof(c->tenant) + 32];
    snprintf(options, sizeof(options), "%s%s%s", c->options,
             c->tenant[0] ? " -c tally.tenant=" : "", c->tenant);
    const char *vals[] = {
        "1",    KEEPALIVE_IDLE_S,  KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT, TCP_USER_TIMEOUT_MS,
        c->dsn, CONNECT_TIMEOUT_S, c->appname,           options,         NULL
    };
    if (c->pg && PQstatus(c->pg) == CONNECTION_OK)
        return 0;
    pgx_reset(c);
    if (c->failed_at_ms && now_mono_ms() - c->failed_at_ms < RECONNECT_PAUSE_MS)
        return TALLY_EUNAVAIL; /* keep the last error; do not hammer a server that is down */
    c->pg = PQconnectdbParams(keys, vals, 1);
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        set_err(c, c->pg ? PQerrorMessage(c->pg) : "out of memory", "08006", NULL);
        goto out_fail;
    }
    for (size_t i = 0; i < c->nstmts; i++) {
        PGresult *r =
            PQprepare(c->pg, c->stmts[i].name, c->stmts[i].sql, c->stmts[i].nparams, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            char msg[512];
            snprintf(msg, sizeof(msg), "preparing %s: %s", c->stmts[i].name,
                     PQresultErrorMessage(r));
            set_err(c, msg, PQresultErrorField(r, PG_DIAG_SQLSTATE), NULL);
            log_error("cannot prepare a statement", LOG_STR("statement", c->stmts[i].name),
                      LOG_STR("error", c->err));
            PQclear(r);
            goto out_fail;
        }
        PQclear(r);
    }
    c->failed_at_ms = 0;
    /* A new session has the startup options' tenant, or none at all. */
    memcpy(c->applied, c->tenant, sizeof(c->applied));
    c->applied_known = true;
    c->applied_in_tx = false;
    return 0;
out_fail:
    pgx_reset(c);
    c->failed_at_ms = now_mono_ms();
    return TALLY_EUNAVAIL;
}

int pgx_err_from_sqlstate(const char *s)
{
    if (!s || strlen(s) != 5)
        return TALLY_EINTERNAL;
    if (strcmp(s, "23505") == 0)
        return TALLY_EEXIST;
    if (strcmp(s, "23503") == 0)
        return TALLY_ENOTFOUND;
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0)
        return TALLY_ECONFLICT;
    if (strcmp(s, "57014") == 0)
        return TALLY_ETIMEOUT;
    if (strncmp(s, "08", 2) == 0 || strncmp(s, "53", 2) == 0 || strcmp(s, "57P01") == 0 ||
        strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0 || strcmp(s, "25006") == 0)
        return TALLY_EUNAVAIL;
    if (strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0)
        return TALLY_EINVAL;
    return TALLY_EINTERNAL;
}

/* Waits for the socket to be readable until deadline_ms (monotonic). 1 ready, 0 timeout. */
static int wait_readable(PGconn *pg, int64_t deadline_ms)
{
    struct pollfd p = { .fd = PQsocket(pg), .events = POLLIN };
    for (;;) {
        int64_t left = deadline_ms - now_mono_ms();
        if (left <= 0)
            return 0;
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 1; /* let PQconsumeInput report the error */
    }
}

/*
 * libpq 15's PQcancel connects to the server and waits for it to close the connection, with
 * no timeout: against a server that accepts but never answers (stopped, or a black-holing
 * proxy) it would hold the worker forever. So the cancel goes out from a detached thread.
 * A cancel hits whatever the session runs when it arrives, so the worker does not reuse the
 * connection before its cancel was delivered: it waits for that (within the cancel window)
 * and drops the connection if it was not. At most CANCELS_MAX cancels are in flight at once;
 * beyond that the statement is left to finish or the connection dropped.
 */
typedef struct cancel_req {
    PGcancel *cn;
    _Atomic int refs; /* the worker's and the thread's */
    _Atomic bool done;
} cancel_req;

static _Atomic int cancels_in_flight;

static void cancel_put(cancel_req *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        PQfreeCancel(r->cn);
        free(r);
    }
}

static void *cancel_main(void *arg)
{
    cancel_req *r = arg;
    char buf[256];
    PQcancel(r->cn, buf, sizeof(buf));
    atomic_store(&r->done, true);
    atomic_fetch_sub(&cancels_in_flight, 1);
    cancel_put(r);
    return NULL;
}

static cancel_req *send_cancel(PGconn *pg)
{
    pthread_attr_t attr;
    pthread_t t;
    cancel_req *r = NULL;
    if (atomic_fetch_add(&cancels_in_flight, 1) >= CANCELS_MAX || !(r = calloc(1, sizeof(*r))) ||
        !(r->cn = PQgetCancel(pg))) {
        atomic_fetch_sub(&cancels_in_flight, 1);
        free(r);
        return NULL;
    }
    atomic_store(&r->refs, 2);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, cancel_main, r) != 0) {
        atomic_fetch_sub(&cancels_in_flight, 1);
        PQfreeCancel(r->cn);
        free(r);
        r = NULL;
    }
    pthread_attr_destroy(&attr);
    return r;
}

/*
 * After a cancel: waits until it was delivered, at most until deadline_ms; drops the
 * connection if it was not (or could not be sent), so it cannot cancel a later statement.
 */
static void settle_cancel(pgx_conn *c, cancel_req *r, int64_t deadline_ms)
{
    while (r && !atomic_load(&r->done) && now_mono_ms() < deadline_ms) {
        struct timespec ts = { .tv_nsec = 1000000 };
        nanosleep(&ts, NULL);
    }
    if (!r || !atomic_load(&r->done))
        pgx_reset(c);
    cancel_put(r);
}

/*
 * Reads the results of the statement in flight into *last (the statement's is the last one).
 * At *deadline it sends a cancel and gives the server CANCEL_WAIT_MS more; a server that does
 * not answer even then loses the connection.
 */
static int collect_results(pgx_conn *c, int64_t *deadline, bool *cancelled, cancel_req **cancel,
                           PGresult **last)
{
    for (;;) {
        while (PQisBusy(c->pg)) {
            if (!wait_readable(c->pg, *deadline)) {
                if (*cancelled) {
                    set_err(c, "PostgreSQL did not answer a cancel", "57014", NULL);
                    pgx_reset(c);
                    return TALLY_ETIMEOUT;
                }
                *cancel = send_cancel(c->pg);
                *cancelled = true;
                *deadline = now_mono_ms() + CANCEL_WAIT_MS;
                continue;
            }
            if (!PQconsumeInput(c->pg)) {
                set_err(c, PQerrorMessage(c->pg), "08006", NULL);
                pgx_reset(c);
                return TALLY_EUNAVAIL;
            }
        }
        PGresult *r = PQgetResult(c->pg);
        if (!r)
            return 0;
        PQclear(*last);
        *last = r;
    }
}

/* Collects the statement's result: 0 with *out, or a tally_err with the failure noted. */
static int collect(pgx_conn *c, int64_t timeout_ms, PGresult **out)
{
    int64_t deadline = now_mono_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
    bool cancelled = false;
    cancel_req *cancel = NULL;
    PGresult *last = NULL;
    int rc = collect_results(c, &deadline, &cancelled, &cancel, &last);
    if (cancelled)
        settle_cancel(c, cancel, deadline);
    if (rc != 0) {
        PQclear(last);
        return rc;
    }
    if (!last) {
        set_err(c, c->pg ? PQerrorMessage(c->pg) : "no result", "08006", NULL);
        pgx_reset(c);
        return TALLY_EUNAVAIL;
    }
    ExecStatusType st = PQresultStatus(last);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (out)
            *out = last;
        else
            PQclear(last);
        return 0;
    }
    set_err(c, PQresultErrorMessage(last), PQresultErrorField(last, PG_DIAG_SQLSTATE),
            PQresultErrorField(last, PG_DIAG_CONSTRAINT_NAME));
    PQclear(last);
    if (cancelled)
        return TALLY_ETIMEOUT;
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
        pgx_reset(c);
        return TALLY_EUNAVAIL;
    }
    return pgx_err_from_sqlstate(c->sqlstate);
}

/*
 * Brings the session's tally.tenant to c->tenant before a statement: nothing when it is known
 * to be that already (the common case: a worker serves one tenant after another), else one
 * set_config. A value set inside a transaction may be rolled back with it, so it is set again
 * after the transaction ends.
 */
static int sync_tenant(pgx_conn *c, int64_t timeout_ms)
{
    PGTransactionStatusType st = PQtransactionStatus(c->pg);
    bool in_tx = st != PQTRANS_IDLE;
    if (c->applied_in_tx && !in_tx)
        c->applied_known = false;
    if (!c->scoped || (c->applied_known && strcmp(c->applied, c->tenant) == 0))
        return 0;
    if (st == PQTRANS_INERROR) { /* only ROLLBACK can run: it does; the next one sets it */
        c->applied_known = false;
        return 0;
    }
    const char *vals[] = { c->tenant };
    if (!PQsendQueryParams(c->pg, "SELECT set_config('tally.tenant', $1, false)", 1, NULL, vals,
                           NULL, NULL, 0)) {
        set_err(c, PQerrorMessage(c->pg), "08006", NULL);
        pgx_reset(c);
        return TALLY_EUNAVAIL;
    }
    int rc = collect(c, timeout_ms, NULL);
    if (rc != 0)
        return rc;
    memcpy(c->applied, c->tenant, sizeof(c->applied));
    c->applied_known = true;
    c->applied_in_tx = in_tx;
    return 0;
}

/* pgx_send, the tenant's set_config (if any) bounded by timeout_ms. */
static int send_stmt(pgx_conn *c, int stmt, int nparams, const char *const *values,
                     const int *lengths, const int *formats, int64_t timeout_ms)
{
    int rc;
    if ((rc = pgx_connect(c)) != 0 || (rc = sync_tenant(c, timeout_ms)) != 0)
        return rc;
    if (!PQsendQueryPrepared(c->pg, c->stmts[stmt].name, nparams, values, lengths, formats, 0)) {
        set_err(c, PQerrorMessage(c->pg), "08006", NULL);
        pgx_reset(c);
        return TALLY_EUNAVAIL;
    }
    return 0;
}

int pgx_send(pgx_conn *c, int stmt, int nparams, const char *const *values, const int *lengths,
             const int *formats)
{
    return send_stmt(c, stmt, nparams, values, lengths, formats, SET_TENANT_TIMEOUT_MS);
}

int pgx_recv(pgx_conn *c, int64_t timeout_ms, PGresult **out)
{
    if (out)
        *out = NULL;
    if (!c->pg) {
        set_err(c, "the connection was lost", "08006", NULL);
        return TALLY_EUNAVAIL;
    }
    return collect(c, timeout_ms, out);
}

void pgx_take_input(pgx_conn *c)
{
    if (c->pg)
        PQconsumeInput(c->pg);
}

int pgx_exec(pgx_conn *c, int stmt, int nparams, const char *const *values, const int *lengths,
             const int *formats, int64_t timeout_ms, PGresult **out)
{
    int rc;
    if (out)
        *out = NULL;
    if (timeout_ms <= 0) {
        set_err(c, "deadline exceeded before the statement was sent", "57014", NULL);
        return TALLY_ETIMEOUT;
    }
    int64_t deadline = now_mono_ms() + timeout_ms;
    if ((rc = send_stmt(c, stmt, nparams, values, lengths, formats, timeout_ms)) != 0)
        return rc;
    return collect(c, deadline - now_mono_ms(), out);
}

int pgx_exec_sql(pgx_conn *c, const char *sql, int64_t timeout_ms, PGresult **out)
{
    int rc;
    if (out)
        *out = NULL;
    if (timeout_ms <= 0) {
        set_err(c, "deadline exceeded before the statement was sent", "57014", NULL);
        return TALLY_ETIMEOUT;
    }
    int64_t deadline = now_mono_ms() + timeout_ms;
    if ((rc = pgx_connect(c)) != 0 || (rc = sync_tenant(c, timeout_ms)) != 0)
        return rc;
    if (!PQsendQuery(c->pg, sql)) {
        set_err(c, PQerrorMessage(c->pg), "08006", NULL);
        pgx_reset(c);
        return TALLY_EUNAVAIL;
    }
    return collect(c, deadline - now_mono_ms(), out);
}

int pgx_exec_params(pgx_conn *c, const char *sql, int nparams, const Oid *types,
                    const char *const *values, const int *lengths, const int *formats,
                    int64_t timeout_ms, PGresult **out)
{
    if (out)
        *out = NULL;
    if (!c->pg) {
        set_err(c, "the connection was lost", "08006", NULL);
        return TALLY_EUNAVAIL;
    }
    if (timeout_ms <= 0) {
        set_err(c, "deadline exceeded before the statement was sent", "57014", NULL);
        return TALLY_ETIMEOUT;
    }
    int64_t deadline = now_mono_ms() + timeout_ms;
    int rc = sync_tenant(c, timeout_ms);
    if (rc != 0)
        return rc;
    if (!PQsendQueryParams(c->pg, sql, nparams, types, values, lengths, formats, 0)) {
        set_err(c, PQerrorMessage(c->pg), "08006", NULL);
        pgx_reset(c);
        return TALLY_EUNAVAIL;
    }
    return collect(c, deadline - now_mono_ms(), out);
}

/* ---- binary array parameters ------------------------------------------------------------- */

#define ARRAY_HEADER 20

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* n more bytes at the end, or NULL (and err set) when over PGX_ARRAY_MAX or out of memory. */
static uint8_t *grow(pgx_array *a, size_t n)
{
    if (a->err)
        return NULL;
    if (n > PGX_ARRAY_MAX - a->len) {
        a->err = TALLY_ETOOBIG;
        return NULL;
    }
    if (a->len + n > a->cap) {
        size_t cap = a->cap ? a->cap : 4096;
        while (cap < a->len + n)
            cap *= 2;
        uint8_t *buf = realloc(a->buf, cap);
        if (!buf) {
            a->err = TALLY_ENOMEM;
            return NULL;
        }
        a->buf = buf;
        a->cap = cap;
    }
    a->len += n;
    return a->buf + a->len - n;
}

void pgx_array_init(pgx_array *a, Oid elem)
{
    memset(a, 0, sizeof(*a));
    a->elem = elem;
    grow(a, ARRAY_HEADER);
}

void pgx_array_release(pgx_array *a)
{
    free(a->buf);
    a->buf = NULL;
}

uint8_t *pgx_array_append(pgx_array *a, size_t n)
{
    uint8_t *p = n <= INT32_MAX ? grow(a, 4 + n) : NULL;
    if (!p) {
        if (!a->err)
            a->err = TALLY_ETOOBIG;
        return NULL;
    }
    put_be32(p, (uint32_t)n);
    a->n++;
    return p + 4;
}

void pgx_array_bytes(pgx_array *a, const void *data, size_t n)
{
    uint8_t *p = pgx_array_append(a, n);
    if (p && n)
        memcpy(p, data, n);
}

void pgx_array_text(pgx_array *a, const char *s)
{
    pgx_array_bytes(a, s, strlen(s));
}

void pgx_array_int(pgx_array *a, int64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
    pgx_array_bytes(a, b, sizeof(b));
}

void pgx_array_finish(pgx_array *a)
{
    if (a->err)
        return;
    put_be32(a->buf, a->n ? 1 : 0); /* dimensions */
    put_be32(a->buf + 4, 0);        /* no NULLs */
    put_be32(a->buf + 8, a->elem);
    if (!a->n) {
        a->len = 12;
        return;
    }
    put_be32(a->buf + 12, a->n);
    put_be32(a->buf + 16, 1); /* lower bound */
}

Oid pgx_array_oid(Oid elem)
{
    return elem == PGX_OID_INT8   ? PGX_OID_INT8_ARRAY
           : elem == PGX_OID_TEXT ? PGX_OID_TEXT_ARRAY
                                  : PGX_OID_BYTEA_ARRAY;
}

const char *pgx_errstr(const pgx_conn *c)
{
    return c->err;
}

const char *pgx_sqlstate(const pgx_conn *c)
{
    return c->sqlstate;
}

const char *pgx_constraint(const pgx_conn *c)
{
    return c->constraint;
}

int64_t pgx_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

bool pgx_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) != 0;
}
