/*
 * pgx: one PostgreSQL connection for one thread, with prepared statements and deadlines.
 *
 * A pgx_conn connects lazily and again after the connection is lost, preparing the caller's
 * statements each time. Sessions carry TCP keepalives and tcp_user_timeout on both ends, so a
 * peer that vanished is noticed within about 25 s. Every wait is bounded: pgx_exec() sends a
 * prepared statement and waits for its result at most timeout_ms; at the deadline it cancels the
 * statement on the server (so the server stops working for a client that has gone) and returns
 * TALLY_ETIMEOUT. A server that does not answer the cancel either has its connection dropped.
 * PostgreSQL down is TALLY_EUNAVAIL at once (connection refused) or within the connect timeout,
 * never a hang.
 *
 * Errors are mapped from SQLSTATE to tally_err in one place (pgx_err_from_sqlstate); the
 * server's message, SQLSTATE and violated constraint of the last failure stay readable
 * (pgx_errstr, pgx_sqlstate, pgx_constraint) until the next call. Not thread-safe: one
 * pgx_conn per thread, like the PGconn inside it.
 */
#ifndef TALLY_PGX_H
#define TALLY_PGX_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pgx_conn pgx_conn;

/* A statement prepared on every (re)connect. param_types may be NULL (inferred). */
typedef struct pgx_stmt {
    const char *name;
    const char *sql;
    int nparams;
} pgx_stmt;

/*
 * dsn is copied; stmts is borrowed until pgx_free (a static table). statement_timeout_ms caps
 * every statement on the server side too (0: no cap). Caller frees with pgx_free. NULL when
 * out of memory; connecting happens on first use.
 */
pgx_conn *pgx_new(const char *dsn, const char *application_name, const pgx_stmt *stmts,
                  size_t nstmts, int64_t statement_timeout_ms);
void pgx_free(pgx_conn *c);

/*
 * Adds a server setting (`-c name=value` in the startup options) for the sessions to come, such
 * as idle_session_timeout for a session that must not outlive a silent client. 0, or
 * TALLY_ETOOBIG when the options are full.
 */
int pgx_add_setting(pgx_conn *c, const char *name, const char *value);

/*
 * The tenant whose rows the session may see and write from the next statement on: PostgreSQL's
 * row-level security (migration 0007) filters every tenant table by the setting tally.tenant,
 * "*" for all tenants (the relay, verify, the operator tools), NULL for none (every tenant table
 * looks empty: a worker between calls, so that a handler that forgot to scope fails closed). It
 * is set only when it changes (one set_config, within the statement's deadline) and in the
 * startup options of a new session; a change inside a transaction is made again after it (a
 * rollback may have undone it). Without any call the session is left as the server has it (the
 * service role sees no row). Keep one tenant across a pgx_send/pgx_recv pair. 0, or TALLY_EINVAL
 * for "" or a value too long or with whitespace, a control character, a quote or a backslash.
 */
int pgx_set_tenant(pgx_conn *c, const char *tenant);

/* Connects (and prepares) if not connected. 0, or TALLY_EUNAVAIL. */
int pgx_connect(pgx_conn *c);

/* The live connection, for LISTEN and other direct use; NULL when not connected. */
PGconn *pgx_pg(pgx_conn *c);

/* Forgets the connection (after an error that leaves it unusable); the next call reconnects. */
void pgx_reset(pgx_conn *c);

/*
 * Runs prepared statement number stmt with parameters: values[i] is text, or binary bytes
 * when lengths/formats say so (formats[i] = 1, lengths[i] = size; both may be NULL for all
 * text). On success *out (when out is not NULL) is the result, caller frees with PQclear,
 * and the return is 0. On failure the return is a tally_err and *out is NULL.
 */
int pgx_exec(pgx_conn *c, int stmt, int nparams, const char *const *values, const int *lengths,
             const int *formats, int64_t timeout_ms, PGresult **out);

/*
 * pgx_exec in two halves, so that the caller works while the server runs the statement:
 * pgx_send sends it (0, or a tally_err with the failure noted), pgx_recv waits at most
 * timeout_ms for its result (as pgx_exec). Nothing else may run on the connection in between.
 */
int pgx_send(pgx_conn *c, int stmt, int nparams, const char *const *values, const int *lengths,
             const int *formats);
int pgx_recv(pgx_conn *c, int64_t timeout_ms, PGresult **out);

/*
 * Between pgx_send and pgx_recv: takes in what the server has sent so far, without waiting,
 * so that a large result never waits for room in the socket while the caller works. A failure
 * shows in pgx_recv.
 */
void pgx_take_input(pgx_conn *c);

/* As pgx_exec for a plain SQL text without parameters (BEGIN, COMMIT, LISTEN, ...). */
int pgx_exec_sql(pgx_conn *c, const char *sql, int64_t timeout_ms, PGresult **out);

/*
 * Runs an unprepared statement with parameters (types may be NULL; formats[i] = 1 for binary)
 * within timeout_ms, as pgx_exec. Unlike pgx_exec it never (re)connects: it is meant for the
 * statements of a transaction the caller opened, which must not silently continue on a new
 * session. TALLY_EUNAVAIL when not connected.
 */
int pgx_exec_params(pgx_conn *c, const char *sql, int nparams, const Oid *types,
                    const char *const *values, const int *lengths, const int *formats,
                    int64_t timeout_ms, PGresult **out);

const char *pgx_errstr(const pgx_conn *c);
const char *pgx_sqlstate(const pgx_conn *c);   /* "" when the failure had none */
const char *pgx_constraint(const pgx_conn *c); /* "" when no constraint was named */

/* SQLSTATE to tally_err: 23505 EEXIST, 23503 ENOTFOUND, 40001 ECONFLICT, 57014 ETIMEOUT, ... */
int pgx_err_from_sqlstate(const char *sqlstate);

/* Sends the server's notices on pg to the JSON log (pgx_connect does it for its own). */
void pgx_log_notices(PGconn *pg);

/* Helpers for result values (text format): integer, or 0 if NULL or not a number. */
int64_t pgx_int(const PGresult *r, int row, int col);
bool pgx_null(const PGresult *r, int row, int col);

/*
 * An array parameter in PostgreSQL's binary format (for INSERT ... SELECT FROM unnest($1::...)):
 * one dimension, no NULLs. Appends never fail on the spot: the first failure (over
 * PGX_ARRAY_MAX bytes, out of memory) sticks in err, to be checked once before sending.
 */
#define PGX_OID_BYTEA       17
#define PGX_OID_INT8        20
#define PGX_OID_TEXT        25
#define PGX_OID_BYTEA_ARRAY 1001
#define PGX_OID_TEXT_ARRAY  1009
#define PGX_OID_INT8_ARRAY  1016
#define PGX_ARRAY_MAX       ((size_t)256 << 20)

typedef struct pgx_array {
    uint8_t *buf;
    size_t len, cap;
    Oid elem;
    uint32_t n;
    int err;
} pgx_array;

void pgx_array_init(pgx_array *a, Oid elem);
void pgx_array_release(pgx_array *a);
/* Room for one element of n bytes (its length prefix written); NULL once err is set. */
uint8_t *pgx_array_append(pgx_array *a, size_t n);
void pgx_array_bytes(pgx_array *a, const void *data, size_t n);
void pgx_array_text(pgx_array *a, const char *s);
void pgx_array_int(pgx_array *a, int64_t v);
/* Writes the header; then buf/len are the parameter's bytes. */
void pgx_array_finish(pgx_array *a);
/* The array type of an element type (int8[], text[], bytea[]). */
Oid pgx_array_oid(Oid elem);

#endif
