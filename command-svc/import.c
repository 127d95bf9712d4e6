/*
 * ImportComplaints: historical complaints with their histories, one transaction per call.
 *
 * An import leaves exactly the rows the live commands (cmd.c) would have left had the history
 * happened through them, at the historical times: the complaint in its final state (status,
 * assignee of the last assignment, updated_at of its last change, resolved_at of its latest
 * move to RESOLVED unless reopened since, version 1 + its changes), a status_history row for
 * the creation and one per status move, and one events row per creation, assignment and status
 * move, with the bodies cmd.c writes and events.imported = true. One walk over a complaint's
 * history (replay) both validates it and produces its rows, so the rules and the rows cannot
 * disagree. An assignment of the agent already assigned is a no-op, as live: no event.
 *
 * The batch is validated as a whole before anything is written: first every rule that needs
 * no database (fields, times, the state machine, repeated keys), then, in one query, the
 * tenant, every distinct category and agent named, and the idempotency keys already used. A
 * history the state machine refuses is INVALID_ARGUMENT, not FAILED_PRECONDITION as in
 * ChangeStatus: the batch itself is malformed whatever the database holds, and resending it
 * can never succeed.
 *
 * Writing is set-based, a handful of statements whatever the batch size: one query reserves
 * the new complaints' ids and computes their creation local days (the StatusChanged bodies
 * carry them), then complaints with their idempotency keys, the status history and the events
 * are each one INSERT ... SELECT FROM unnest() over array parameters in PostgreSQL's binary
 * format (no quoting, no escaping). Event local days are computed by PostgreSQL from the
 * tenant's time zone with the expression the live commands use.
 *
 * Idempotency: an entry's content hash is FNV-1a (hash_fnv1a, seed 0) over its packed
 * ImportedComplaint message, stored as 8 bytes big-endian in idempotency_keys.request_hash as
 * CreateComplaint stores the hash of its packed request. They are hashes of different
 * messages, so a key used by CreateComplaint and then by an import (or the other way round)
 * gets ALREADY_EXISTS. A key found with the same hash reports the stored complaint and version
 * (already_existed) and writes nothing. Two imports racing with an overlapping new key: the
 * later insert waits on the idempotency_keys primary key and fails with a unique violation
 * once the first commits; that call gets ABORTED ("retry"), and its retry reports those
 * entries as already_existed.
 *
 * PostgreSQL: the statements run with pgx_exec_params on the worker's connection inside one
 * transaction (bounded by the call's deadline, never silently reconnected), with SET LOCAL
 * statement_timeout for the transaction.
 */
#include "cmd_int.h"

#include "err.h"
#include "hash.h"
#include "import.h"
#include "log.h"
#include "now.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/events.pb-c.h"
#include "validate.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMP_COMPLAINTS_MAX 1000
#define IMP_STEPS_MAX      200
#define IMP_CREATED_MIN_MS 946684800000LL /* 2000-01-01T00:00:00Z */
#define IMP_ROLLBACK_MS    2000
#define IMP_PARAMS_MAX     16 /* the most parameters of one statement: 2 + C_COLS */

#define STATUS_OPEN     TALLY__V1__STATUS__STATUS_OPEN
#define STATUS_RESOLVED TALLY__V1__STATUS__STATUS_RESOLVED
#define STATUS_CLOSED   TALLY__V1__STATUS__STATUS_CLOSED

/*
 * See import.h. Each key is looked up by itself in the primary key (LATERAL ... OFFSET 0 keeps
 * the planner from joining instead): a join read every key the tenant has ever used into a
 * hash table, so the check grew with the tenant's history (26 ms a batch at 94,000 keys, an
 * eighth of PostgreSQL's time in an import of 200,000 complaints: bench/README.md).
 */
const char import_check_sql[] =
    "SELECT 't', time_zone, 0::bigint, false, 0::bigint, 0::bigint FROM tenants"
    " WHERE tenant_id = $1"
    " UNION ALL SELECT 'c', x, 0, false, 0, 0 FROM unnest($2::text[]) AS x WHERE NOT EXISTS"
    "  (SELECT 1 FROM categories c WHERE c.tenant_id = $1 AND c.category_id = x)"
    " UNION ALL SELECT 'a', x, 0, false, 0, 0 FROM unnest($3::text[]) AS x WHERE NOT EXISTS"
    "  (SELECT 1 FROM agents a WHERE a.tenant_id = $1 AND a.agent_id = x)"
    " UNION ALL SELECT 'k', u.key, u.o - 1, k.request_hash = u.hash, k.complaint_id, k.version"
    "  FROM unnest($4::text[], $5::bytea[]) WITH ORDINALITY AS u(key, hash, o),"
    "  LATERAL (SELECT request_hash, complaint_id, version FROM idempotency_keys"
    "   WHERE tenant_id = $1 AND idempotency_key = u.key OFFSET 0) k";
enum { K_KIND, K_NAME, K_INDEX, K_SAME, K_ID, K_VERSION };

/* The new complaints' ids, in request order, and their creation local days ($1 zone). */
static const char reserve_sql[] =
    "SELECT nextval('complaints_complaint_id_seq'),"
    " (to_timestamp(m::float8 / 1000) AT TIME ZONE $1)::date::text"
    " FROM unnest($2::bigint[]) WITH ORDINALITY AS u(m, o) ORDER BY o";

/*
 * The inserts: $1 tenant, $2 time zone, then one array per column (the enums below). An
 * idempotency key's created_at is its complaint's (historical) created_at, as CreateComplaint
 * stores it.
 */
static const char complaints_sql[] =
    "WITH u AS (SELECT * FROM unnest($3::bigint[], $4::text[], $5::bytea[], $6::text[],"
    "  $7::bigint[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[],"
    "  $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[]) AS u(id, key, hash,"
    "  category, priority, status, agent, title, description, customer, created, updated,"
    "  resolved, version)),"
    " k AS (INSERT INTO idempotency_keys (tenant_id, idempotency_key, request_hash,"
    "  complaint_id, version, created_at)"
    "  SELECT $1, key, hash, id, version, to_timestamp(created::float8 / 1000) FROM u)"
    " INSERT INTO complaints (complaint_id, tenant_id, category_id, priority, status,"
    "  assigned_agent_id, title, description, customer_id, idempotency_key, created_at,"
    "  updated_at, resolved_at, version)"
    " SELECT id, $1, category, priority, status, NULLIF(agent, ''), title, description,"
    "  customer, key, to_timestamp(created::float8 / 1000), to_timestamp(updated::float8 / 1000),"
    "  to_timestamp(NULLIF(resolved, 0)::float8 / 1000), version FROM u";
enum {
    C_ID,
    C_KEY,
    C_HASH,
    C_CATEGORY,
    C_PRIORITY,
    C_STATUS,
    C_AGENT,
    C_TITLE,
    C_DESCRIPTION,
    C_CUSTOMER,
    C_CREATED,
    C_UPDATED,
    C_RESOLVED,
    C_VERSION,
    C_COLS
};
static const Oid complaint_cols[C_COLS] = { PGX_OID_INT8, PGX_OID_TEXT, PGX_OID_BYTEA, PGX_OID_TEXT,
                                            PGX_OID_INT8, PGX_OID_INT8, PGX_OID_TEXT,  PGX_OID_TEXT,
                                            PGX_OID_TEXT, PGX_OID_TEXT, PGX_OID_INT8,  PGX_OID_INT8,
                                            PGX_OID_INT8, PGX_OID_INT8 };

static const char history_sql[] =
    "INSERT INTO status_history (complaint_id, version, tenant_id, from_status, to_status,"
    "  actor, note, changed_at)"
    " SELECT id, v, $1, f, t, actor, note, to_timestamp(at::float8 / 1000)"
    " FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[],"
    "  $8::text[], $9::bigint[]) AS u(id, v, f, t, actor, note, at)";
enum { H_ID, H_VERSION, H_FROM, H_TO, H_ACTOR, H_NOTE, H_AT, H_COLS };
static const Oid history_cols[H_COLS] = { PGX_OID_INT8, PGX_OID_INT8, PGX_OID_INT8, PGX_OID_INT8,
                                          PGX_OID_TEXT, PGX_OID_TEXT, PGX_OID_INT8 };

static const char events_sql[] =
    "INSERT INTO events (tenant_id, complaint_id, version, type, occurred_at, local_day,"
    "  imported, payload)"
    " SELECT $1, id, v, type, x.at, (x.at AT TIME ZONE $2)::date, true, payload"
    " FROM unnest($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bytea[])"
    "  WITH ORDINALITY AS u(id, v, type, ms, payload, o),"
    "  LATERAL (SELECT to_timestamp(u.ms::float8 / 1000) AS at) x ORDER BY o";
enum { E_ID, E_VERSION, E_TYPE, E_AT, E_PAYLOAD, E_COLS };
static const Oid event_cols[E_COLS] = { PGX_OID_INT8, PGX_OID_INT8, PGX_OID_INT8, PGX_OID_INT8,
                                        PGX_OID_BYTEA };

/* ---- statements on the worker's connection ------------------------------------------------ */

/* The worker and call of the batch in progress. */
typedef struct imp_db {
    cmd_worker *w;
    srv_call *call;
} imp_db;

/* Appends msg packed, as a bytea element. */
static void arr_msg(pgx_array *a, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *p = pgx_array_append(a, n);
    if (p)
        protobuf_c_message_pack(msg, p);
}

/*
 * Runs sql inside the batch's transaction with parameters (values[i] of lengths[i] bytes in
 * binary; text when lengths[i] is 0) within the call's deadline.
 */
static int db_exec(imp_db *db, const char *sql, int nparams, const Oid *types,
                   const char *const *values, const int *lengths, PGresult **out)
{
    int formats[IMP_PARAMS_MAX];
    if (nparams > IMP_PARAMS_MAX)
        return TALLY_EINTERNAL;
    for (int i = 0; i < nparams; i++)
        formats[i] = lengths[i] > 0;
    return pgx_exec_params(db->w->pg, sql, nparams, types, values, lengths, formats,
                           cmd_timeout(db->w, db->call), out);
}

/* Ends the open transaction, if the connection is still there; drops it if that fails. */
static void db_rollback(cmd_worker *w)
{
    if (pgx_pg(w->pg) && pgx_exec_sql(w->pg, "ROLLBACK", IMP_ROLLBACK_MS, NULL) != 0)
        pgx_reset(w->pg);
}

/* Rolls back and fails the call for the db_exec failure rc while doing what. */
static int db_fail(imp_db *db, int rc, const char *what)
{
    char sqlstate[8], constraint[64], errstr[256];
    snprintf(sqlstate, sizeof(sqlstate), "%s", pgx_sqlstate(db->w->pg));
    snprintf(constraint, sizeof(constraint), "%s", pgx_constraint(db->w->pg));
    snprintf(errstr, sizeof(errstr), "%s", pgx_errstr(db->w->pg));
    db_rollback(db->w); /* overwrites the connection's last error */
    switch (rc) {
    case TALLY_EUNAVAIL:
        srv_error_reason(db->call, "DATABASE_UNAVAILABLE");
        return srv_fail(db->call, rc, "PostgreSQL is unavailable (%s): %s", what, errstr);
    case TALLY_ETIMEOUT:
        return srv_fail(db->call, rc, "deadline exceeded while %s; nothing was imported", what);
    case TALLY_ECONFLICT:
        srv_error_reason(db->call, "CONCURRENT_CHANGE");
        return srv_fail(db->call, rc, "a concurrent change won while %s; retry", what);
    case TALLY_EEXIST:
        srv_error_reason(db->call, "CONCURRENT_CHANGE");
        if (strcmp(constraint, "idempotency_keys_pkey") == 0)
            return srv_fail(db->call, TALLY_ECONFLICT,
                            "complaints: a concurrent call imported or created one of these "
                            "idempotency keys first; retry (those entries then report "
                            "already_existed)");
        break;
    default:
        break;
    }
    log_error("database error", LOG_STR("while", what), LOG_STR("sqlstate", sqlstate),
              LOG_STR("error", errstr));
    return srv_fail(db->call, TALLY_EINTERNAL, "database error while %s", what);
}

/* ---- validation and replay ---------------------------------------------------------------- */

/* What one request entry became. */
typedef struct imp_entry {
    uint8_t hash[8];
    int64_t id, version;
    bool existed;
    const char *created_day; /* new entries: borrowed from the reservation's result */
} imp_entry;

/* The rows of the new complaints, one array per column. */
typedef struct imp_rows {
    pgx_array c[C_COLS], h[H_COLS], e[E_COLS];
    int64_t events;
} imp_rows;

static int invalid(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int invalid(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return TALLY_EINVAL;
}

/* "complaints[i].field" into buf. */
static const char *entry_path(char *buf, size_t len, size_t i, const char *field)
{
    snprintf(buf, len, "complaints[%zu].%s", i, field);
    return buf;
}

/* "complaints[i].history[j]" plus field (which starts with '.' or is empty) into buf. */
static const char *step_path(char *buf, size_t len, size_t i, size_t j, const char *field)
{
    snprintf(buf, len, "complaints[%zu].history[%zu]%s", i, j, field);
    return buf;
}

static void emit_event(imp_rows *rows, int64_t id, int64_t version, int type, int64_t at_ms,
                       const ProtobufCMessage *body)
{
    pgx_array_int(&rows->e[E_ID], id);
    pgx_array_int(&rows->e[E_VERSION], version);
    pgx_array_int(&rows->e[E_TYPE], type);
    pgx_array_int(&rows->e[E_AT], at_ms);
    arr_msg(&rows->e[E_PAYLOAD], body);
    rows->events++;
}

static void emit_history(imp_rows *rows, int64_t id, int64_t version, int from, int to,
                         const char *actor, const char *note, int64_t at_ms)
{
    pgx_array_int(&rows->h[H_ID], id);
    pgx_array_int(&rows->h[H_VERSION], version);
    pgx_array_int(&rows->h[H_FROM], from);
    pgx_array_int(&rows->h[H_TO], to);
    pgx_array_text(&rows->h[H_ACTOR], actor);
    pgx_array_text(&rows->h[H_NOTE], note);
    pgx_array_int(&rows->h[H_AT], at_ms);
}

static void emit_created(imp_rows *rows, const Tally__V1__ImportedComplaint *c, int64_t id)
{
    Tally__V1__ComplaintCreated body = TALLY__V1__COMPLAINT_CREATED__INIT;
    body.category_id = c->category_id;
    body.priority = c->priority;
    body.customer_id = c->customer_id;
    body.title = c->title;
    body.status = STATUS_OPEN;
    emit_event(rows, id, 1, TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED, c->created_at_ms,
               &body.base);
    emit_history(rows, id, 1, 0, STATUS_OPEN, "", "", c->created_at_ms);
}

/*
 * Walks entry i's history as the live commands would apply it. Without rows it validates
 * (INVALID_ARGUMENT naming the step, message in err); with rows it appends the complaint's
 * rows, for an entry that was validated, and stores its final version in e.
 */
static int replay(char *err, size_t errlen, size_t i, const Tally__V1__ImportedComplaint *c,
                  int64_t now_ms, imp_entry *e, imp_rows *rows)
{
    char path[96], move[256];
    int status = STATUS_OPEN;
    char *agent = "";
    int64_t version = 1, updated = c->created_at_ms, resolved = 0;
    if (rows)
        emit_created(rows, c, e->id);
    for (size_t j = 0; j < c->n_history; j++) {
        const Tally__V1__ImportedStep *s = c->history[j];
        int64_t at = s->at_ms;
        if (at < c->created_at_ms)
            return invalid(err, errlen, "%s: before created_at_ms",
                           step_path(path, sizeof(path), i, j, ".at_ms"));
        if (j > 0 && at < c->history[j - 1]->at_ms)
            return invalid(err, errlen, "%s: before the previous step's at_ms",
                           step_path(path, sizeof(path), i, j, ".at_ms"));
        if (at > now_ms)
            return invalid(err, errlen, "%s: in the future",
                           step_path(path, sizeof(path), i, j, ".at_ms"));
        if (s->change_case == TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT) {
            const Tally__V1__ImportedAssignment *a = s->assignment;
            int rc = val_id(step_path(path, sizeof(path), i, j, ".assignment.agent_id"),
                            a->agent_id, true, err, errlen);
            if (rc != 0)
                return rc;
            if (status == STATUS_CLOSED)
                return invalid(err, errlen,
                               "%s: the complaint is CLOSED at this step and can "
                               "no longer be assigned",
                               step_path(path, sizeof(path), i, j, ".assignment"));
            if (strcmp(a->agent_id, agent) == 0)
                continue; /* as live: no change, no event */
            version++;
            updated = at;
            if (rows) {
                Tally__V1__ComplaintAssigned body = TALLY__V1__COMPLAINT_ASSIGNED__INIT;
                body.previous_agent_id = agent;
                body.agent_id = a->agent_id;
                body.category_id = c->category_id;
                body.priority = c->priority;
                body.status = (Tally__V1__Status)status;
                body.created_at_ms = c->created_at_ms;
                emit_event(rows, e->id, version,
                           TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED, at, &body.base);
            }
            agent = a->agent_id;
        } else if (s->change_case == TALLY__V1__IMPORTED_STEP__CHANGE_STATUS_CHANGE) {
            const Tally__V1__ImportedStatusChange *m = s->status_change;
            int rc = val_status(step_path(path, sizeof(path), i, j, ".status_change.status"),
                                m->status, err, errlen);
            if (rc == 0)
                rc = val_id(step_path(path, sizeof(path), i, j, ".status_change.actor"), m->actor,
                            false, err, errlen);
            if (rc == 0)
                rc = val_text(step_path(path, sizeof(path), i, j, ".status_change.note"), m->note,
                              0, VAL_NOTE_MAX, err, errlen);
            if (rc != 0)
                return rc;
            if (!val_move_allowed(status, m->status)) {
                val_move_error(status, m->status, move, sizeof(move));
                const char *why = strncmp(move, "status: ", 8) == 0 ? move + 8 : move;
                return invalid(err, errlen, "%s: %s",
                               step_path(path, sizeof(path), i, j, ".status_change.status"), why);
            }
            version++;
            updated = at;
            if (rows) {
                Tally__V1__StatusChanged body = TALLY__V1__STATUS_CHANGED__INIT;
                body.from_status = (Tally__V1__Status)status;
                body.to_status = m->status;
                body.category_id = c->category_id;
                body.priority = c->priority;
                body.agent_id = agent;
                body.actor = m->actor;
                body.created_at_ms = c->created_at_ms;
                body.created_local_day = (char *)e->created_day;
                if (m->status == STATUS_RESOLVED)
                    body.resolution_seconds = (at - c->created_at_ms) / 1000;
                emit_event(rows, e->id, version, TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED,
                           at, &body.base);
                emit_history(rows, e->id, version, status, m->status, m->actor, m->note, at);
            }
            /* resolved_at as ChangeStatus keeps it: set on RESOLVED, cleared on a reopen. */
            if (m->status == STATUS_RESOLVED)
                resolved = at;
            else if (m->status == STATUS_OPEN)
                resolved = 0;
            status = m->status;
        } else {
            return invalid(err, errlen, "%s: one of assignment or status_change is required",
                           step_path(path, sizeof(path), i, j, ""));
        }
    }
    if (!rows)
        return 0;
    pgx_array *col = rows->c;
    pgx_array_int(&col[C_ID], e->id);
    pgx_array_text(&col[C_KEY], c->idempotency_key);
    pgx_array_bytes(&col[C_HASH], e->hash, sizeof(e->hash));
    pgx_array_text(&col[C_CATEGORY], c->category_id);
    pgx_array_int(&col[C_PRIORITY], c->priority);
    pgx_array_int(&col[C_STATUS], status);
    pgx_array_text(&col[C_AGENT], agent);
    pgx_array_text(&col[C_TITLE], c->title);
    pgx_array_text(&col[C_DESCRIPTION], c->description);
    pgx_array_text(&col[C_CUSTOMER], c->customer_id);
    pgx_array_int(&col[C_CREATED], c->created_at_ms);
    pgx_array_int(&col[C_UPDATED], updated);
    pgx_array_int(&col[C_RESOLVED], resolved);
    pgx_array_int(&col[C_VERSION], version);
    e->version = version;
    return 0;
}

/* The rules of one entry that need no database, its history included. */
static int validate_entry(char *err, size_t errlen, size_t i, const Tally__V1__ImportedComplaint *c,
                          int64_t now_ms)
{
    char path[64];
    int rc;
    if ((rc = val_id(entry_path(path, sizeof(path), i, "idempotency_key"), c->idempotency_key,
                     false, err, errlen)) ||
        (rc = val_id(entry_path(path, sizeof(path), i, "category_id"), c->category_id, false, err,
                     errlen)) ||
        (rc = val_priority(entry_path(path, sizeof(path), i, "priority"), c->priority, err,
                           errlen)) ||
        (rc = val_text(entry_path(path, sizeof(path), i, "title"), c->title, 1, VAL_TITLE_MAX, err,
                       errlen)) ||
        (rc = val_text(entry_path(path, sizeof(path), i, "description"), c->description, 0,
                       VAL_DESCRIPTION_MAX, err, errlen)) ||
        (rc = val_id(entry_path(path, sizeof(path), i, "customer_id"), c->customer_id, false, err,
                     errlen)))
        return rc;
    if (c->created_at_ms < IMP_CREATED_MIN_MS)
        return invalid(err, errlen, "%s: before 2000-01-01T00:00:00Z (%lld), got %" PRId64,
                       entry_path(path, sizeof(path), i, "created_at_ms"),
                       (long long)IMP_CREATED_MIN_MS, c->created_at_ms);
    if (c->created_at_ms > now_ms)
        return invalid(err, errlen, "%s: in the future",
                       entry_path(path, sizeof(path), i, "created_at_ms"));
    if (c->n_history > IMP_STEPS_MAX)
        return invalid(err, errlen, "%s: more than %d steps",
                       entry_path(path, sizeof(path), i, "history"), IMP_STEPS_MAX);
    return replay(err, errlen, i, c, now_ms, NULL, NULL);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts names and drops repeats; returns how many remain. */
static size_t sort_unique(const char **names, size_t n)
{
    size_t k = 0;
    qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(names[k - 1], names[i]) != 0)
            names[k++] = names[i];
    return k;
}

static bool has_name(const char *const *sorted, size_t n, const char *name)
{
    return n && bsearch(&name, sorted, n, sizeof(*sorted), cmp_str) != NULL;
}

/* ---- the batch ----------------------------------------------------------------------------- */

typedef struct imp_batch {
    const Tally__V1__ImportComplaintsRequest *req;
    imp_db db;
    imp_entry *entries;      /* one per request entry */
    const char **categories; /* distinct, sorted */
    const char **agents;     /* distinct non-empty assignment agents, sorted */
    const char **unknown;    /* scratch: names the check found missing */
    size_t ncategories, nagents, nnew;
    char time_zone[128];
    PGresult *reserved; /* the new entries' ids and creation days */
    int64_t events;
} imp_batch;

static void batch_release(imp_batch *b)
{
    free(b->entries);
    free(b->categories);
    free(b->agents);
    free(b->unknown);
    PQclear(b->reserved);
}

/* Entries sorted by key, ties by position, to find repeated keys. */
typedef struct key_pos {
    const char *key;
    size_t pos;
} key_pos;

static int cmp_key_pos(const void *a, const void *b)
{
    const key_pos *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* INVALID_ARGUMENT for the first entry (by position) whose key an earlier entry has. */
static int check_repeated_keys(imp_batch *b, char *err, size_t errlen)
{
    size_t n = b->req->n_complaints, first = n, of = 0;
    key_pos *kp = malloc(n * sizeof(*kp));
    if (!kp)
        return TALLY_ENOMEM;
    for (size_t i = 0; i < n; i++)
        kp[i] = (key_pos){ b->req->complaints[i]->idempotency_key, i };
    qsort(kp, n, sizeof(*kp), cmp_key_pos);
    for (size_t i = 1; i < n; i++)
        if (strcmp(kp[i].key, kp[i - 1].key) == 0 && kp[i].pos < first) {
            first = kp[i].pos;
            of = kp[i - 1].pos;
        }
    free(kp);
    if (first == n)
        return 0;
    char path[64];
    return invalid(err, errlen, "%s: \"%s\" repeats complaints[%zu].idempotency_key",
                   entry_path(path, sizeof(path), first, "idempotency_key"),
                   b->req->complaints[first]->idempotency_key, of);
}

/* Everything that needs no database; also the content hashes and the distinct names. */
static int batch_validate(imp_batch *b, srv_call *call, char *err, size_t errlen)
{
    const Tally__V1__ImportComplaintsRequest *req = b->req;
    size_t steps = 0, n = req->n_complaints;
    int rc;
    if ((rc = cmd_tenant(b->db.w, req->tenant_id, err, errlen)) != 0)
        return srv_fail(call, rc, "%s", err);
    if (n == 0)
        return srv_fail(call, TALLY_EINVAL, "complaints: required (1 to %d entries)",
                        IMP_COMPLAINTS_MAX);
    if (n > IMP_COMPLAINTS_MAX)
        return srv_fail(call, TALLY_EINVAL, "complaints: more than %d (got %zu); split the batch",
                        IMP_COMPLAINTS_MAX, n);
    int64_t now_ms = now_wall_ms();
    for (size_t i = 0; i < n; i++) {
        if ((rc = validate_entry(err, errlen, i, req->complaints[i], now_ms)) != 0)
            return srv_fail(call, rc, "%s", err);
        steps += req->complaints[i]->n_history;
    }
    if ((rc = check_repeated_keys(b, err, errlen)) != 0)
        return rc == TALLY_EINVAL ? srv_fail(call, rc, "%s", err)
                                  : srv_fail(call, rc, "out of memory");

    b->entries = calloc(n, sizeof(*b->entries));
    b->categories = malloc(n * sizeof(*b->categories));
    b->agents = malloc((steps ? steps : 1) * sizeof(*b->agents));
    b->unknown = malloc((n + steps) * sizeof(*b->unknown)); /* categories, then agents */
    if (!b->entries || !b->categories || !b->agents || !b->unknown)
        return srv_fail(call, TALLY_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const Tally__V1__ImportedComplaint *c = req->complaints[i];
        if (hash_fingerprint(&c->base, b->entries[i].hash) != 0)
            return srv_fail(call, TALLY_ENOMEM, "out of memory");
        b->categories[b->ncategories++] = c->category_id;
        for (size_t j = 0; j < c->n_history; j++)
            if (c->history[j]->change_case == TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT &&
                c->history[j]->assignment->agent_id[0])
                b->agents[b->nagents++] = c->history[j]->assignment->agent_id;
    }
    b->ncategories = sort_unique(b->categories, b->ncategories);
    b->nagents = sort_unique(b->agents, b->nagents);
    return 0;
}

/* NOT_FOUND naming the first use (in request order) of a missing category or agent. */
static int fail_unknown(imp_batch *b, bool agents, size_t nunknown)
{
    const Tally__V1__ImportComplaintsRequest *req = b->req;
    char path[96];
    qsort(b->unknown, nunknown, sizeof(*b->unknown), cmp_str);
    for (size_t i = 0; i < req->n_complaints; i++) {
        const Tally__V1__ImportedComplaint *c = req->complaints[i];
        if (!agents && has_name(b->unknown, nunknown, c->category_id))
            return srv_fail(b->db.call, TALLY_ENOTFOUND, "%s: no category \"%s\" in tenant \"%s\"",
                            entry_path(path, sizeof(path), i, "category_id"), c->category_id,
                            req->tenant_id);
        for (size_t j = 0; agents && j < c->n_history; j++) {
            const Tally__V1__ImportedStep *s = c->history[j];
            if (s->change_case == TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT &&
                has_name(b->unknown, nunknown, s->assignment->agent_id))
                return srv_fail(b->db.call, TALLY_ENOTFOUND, "%s: no agent \"%s\" in tenant \"%s\"",
                                step_path(path, sizeof(path), i, j, ".assignment.agent_id"),
                                s->assignment->agent_id, req->tenant_id);
        }
    }
    return srv_fail(b->db.call, TALLY_EINTERNAL, "a missing %s was not found in the request",
                    agents ? "agent" : "category");
}

/*
 * The checks against the database, in the open transaction: the tenant (and its time zone),
 * the categories and agents, and the keys already used. Fails the call (and rolls back) or
 * returns 0 with entries[].existed and nnew set.
 */
static int batch_check(imp_batch *b)
{
    const Tally__V1__ImportComplaintsRequest *req = b->req;
    size_t n = req->n_complaints, ncat = 0, nag = 0;
    pgx_array a[4];
    const Oid types[5] = { PGX_OID_TEXT, PGX_OID_TEXT_ARRAY, PGX_OID_TEXT_ARRAY, PGX_OID_TEXT_ARRAY,
                           PGX_OID_BYTEA_ARRAY };
    const char *vals[5] = { req->tenant_id };
    int lens[5] = { 0 }, rc = 0;
    PGresult *r;
    pgx_array_init(&a[0], PGX_OID_TEXT);
    pgx_array_init(&a[1], PGX_OID_TEXT);
    pgx_array_init(&a[2], PGX_OID_TEXT);
    pgx_array_init(&a[3], PGX_OID_BYTEA);
    for (size_t i = 0; i < b->ncategories; i++)
        pgx_array_text(&a[0], b->categories[i]);
    for (size_t i = 0; i < b->nagents; i++)
        pgx_array_text(&a[1], b->agents[i]);
    for (size_t i = 0; i < n; i++) {
        pgx_array_text(&a[2], req->complaints[i]->idempotency_key);
        pgx_array_bytes(&a[3], b->entries[i].hash, sizeof(b->entries[i].hash));
    }
    for (int k = 0; k < 4; k++) {
        pgx_array_finish(&a[k]);
        rc = rc ? rc : a[k].err;
        vals[k + 1] = (const char *)a[k].buf;
        lens[k + 1] = (int)a[k].len;
    }
    if (rc == 0)
        rc = db_exec(&b->db, import_check_sql, 5, types, vals, lens, &r);
    for (int k = 0; k < 4; k++)
        pgx_array_release(&a[k]);
    if (rc == TALLY_ENOMEM || rc == TALLY_ETOOBIG) {
        db_rollback(b->db.w);
        return srv_fail(b->db.call, rc, "out of memory");
    }
    if (rc != 0)
        return db_fail(&b->db, rc, "checking the batch");

    bool tenant = false;
    size_t clash = n;
    for (int row = 0; row < PQntuples(r); row++) {
        const char *kind = PQgetvalue(r, row, K_KIND), *name = PQgetvalue(r, row, K_NAME);
        if (*kind == 't') {
            tenant = true;
            snprintf(b->time_zone, sizeof(b->time_zone), "%s", name);
        } else if (*kind == 'c') {
            b->unknown[ncat++] = name;
        } else if (*kind == 'a') {
            b->unknown[n + nag++] = name;
        } else {
            size_t i = (size_t)pgx_int(r, row, K_INDEX);
            imp_entry *e = &b->entries[i];
            e->existed = true;
            e->id = pgx_int(r, row, K_ID);
            e->version = pgx_int(r, row, K_VERSION);
            if (strcmp(PQgetvalue(r, row, K_SAME), "t") != 0 && i < clash)
                clash = i;
        }
    }
    rc = 0;
    if (!tenant)
        rc = srv_fail(b->db.call, TALLY_ENOTFOUND, "tenant_id: no tenant \"%s\"", req->tenant_id);
    else if (ncat)
        rc = fail_unknown(b, false, ncat);
    else if (nag) {
        memmove(b->unknown, b->unknown + n, nag * sizeof(*b->unknown));
        rc = fail_unknown(b, true, nag);
    } else if (clash < n) {
        char path[64];
        rc = srv_fail(b->db.call, TALLY_EEXIST,
                      "%s: \"%s\" was already used for other content (complaint %" PRId64 ")",
                      entry_path(path, sizeof(path), clash, "idempotency_key"),
                      req->complaints[clash]->idempotency_key, b->entries[clash].id);
    }
    PQclear(r);
    if (rc != 0) {
        db_rollback(b->db.w);
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        b->nnew += !b->entries[i].existed;
    return 0;
}

/* Reserves the new complaints' ids and computes their creation local days, in request order. */
static int batch_reserve(imp_batch *b)
{
    const Tally__V1__ImportComplaintsRequest *req = b->req;
    const Oid types[2] = { PGX_OID_TEXT, PGX_OID_INT8_ARRAY };
    pgx_array created;
    int rc;
    pgx_array_init(&created, PGX_OID_INT8);
    for (size_t i = 0; i < req->n_complaints; i++)
        if (!b->entries[i].existed)
            pgx_array_int(&created, req->complaints[i]->created_at_ms);
    pgx_array_finish(&created);
    const char *vals[2] = { b->time_zone, (const char *)created.buf };
    const int lens[2] = { 0, (int)created.len };
    rc = created.err ? created.err
                     : db_exec(&b->db, reserve_sql, 2, types, vals, lens, &b->reserved);
    pgx_array_release(&created);
    if (rc == TALLY_ENOMEM || rc == TALLY_ETOOBIG) {
        db_rollback(b->db.w);
        return srv_fail(b->db.call, rc, "out of memory");
    }
    if (rc != 0)
        return db_fail(&b->db, rc, "reserving complaint ids");
    if ((size_t)PQntuples(b->reserved) != b->nnew) {
        db_rollback(b->db.w);
        return srv_fail(b->db.call, TALLY_EINTERNAL, "reserved %d ids for %zu complaints",
                        PQntuples(b->reserved), b->nnew);
    }
    for (size_t i = 0, k = 0; i < req->n_complaints; i++) {
        imp_entry *e = &b->entries[i];
        if (e->existed)
            continue;
        e->id = pgx_int(b->reserved, (int)k, 0);
        e->created_day = PQgetvalue(b->reserved, (int)k, 1);
        k++;
    }
    return 0;
}

/* Sends one INSERT: $1 tenant, $2 time zone, then the columns. */
static int insert(imp_batch *b, const char *sql, pgx_array *cols, const Oid *elems, int ncols,
                  const char *what)
{
    Oid types[IMP_PARAMS_MAX] = { PGX_OID_TEXT, PGX_OID_TEXT };
    const char *vals[IMP_PARAMS_MAX] = { b->req->tenant_id, b->time_zone };
    int lens[IMP_PARAMS_MAX] = { 0, 0 };
    PGresult *r;
    for (int k = 0; k < ncols; k++) {
        pgx_array_finish(&cols[k]);
        if (cols[k].err) {
            db_rollback(b->db.w);
            return srv_fail(b->db.call, cols[k].err,
                            cols[k].err == TALLY_ETOOBIG ? "complaints: the batch is too large; "
                                                           "split it"
                                                         : "out of memory");
        }
        types[2 + k] = pgx_array_oid(elems[k]);
        vals[2 + k] = (const char *)cols[k].buf;
        lens[2 + k] = (int)cols[k].len;
    }
    int rc = db_exec(&b->db, sql, 2 + ncols, types, vals, lens, &r);
    if (rc != 0) {
        if (rc == TALLY_ENOTFOUND) { /* a foreign key: only a concurrent change can do this */
            db_rollback(b->db.w);
            return srv_fail(b->db.call, TALLY_ECONFLICT,
                            "complaints: a category or agent changed while %s; retry", what);
        }
        return db_fail(&b->db, rc, what);
    }
    PQclear(r);
    return 0;
}

/* Replays the new entries into rows and inserts them: complaints and keys, history, events. */
static int batch_write(imp_batch *b)
{
    const Tally__V1__ImportComplaintsRequest *req = b->req;
    imp_rows rows;
    int rc = 0;
    for (int k = 0; k < C_COLS; k++)
        pgx_array_init(&rows.c[k], complaint_cols[k]);
    for (int k = 0; k < H_COLS; k++)
        pgx_array_init(&rows.h[k], history_cols[k]);
    for (int k = 0; k < E_COLS; k++)
        pgx_array_init(&rows.e[k], event_cols[k]);
    rows.events = 0;
    for (size_t i = 0; i < req->n_complaints && rc == 0; i++)
        if (!b->entries[i].existed)
            rc = replay(b->db.w->err, sizeof(b->db.w->err), i, req->complaints[i], INT64_MAX,
                        &b->entries[i], &rows);
    if (rc != 0) { /* validated before: cannot happen */
        db_rollback(b->db.w);
        rc = srv_fail(b->db.call, TALLY_EINTERNAL, "replay: %s", b->db.w->err);
    }
    if (rc == 0)
        rc = insert(b, complaints_sql, rows.c, complaint_cols, C_COLS, "inserting complaints");
    if (rc == 0)
        rc = insert(b, history_sql, rows.h, history_cols, H_COLS, "inserting status history");
    if (rc == 0)
        rc = insert(b, events_sql, rows.e, event_cols, E_COLS, "inserting events");
    b->events = rows.events;
    for (int k = 0; k < C_COLS; k++)
        pgx_array_release(&rows.c[k]);
    for (int k = 0; k < H_COLS; k++)
        pgx_array_release(&rows.h[k]);
    for (int k = 0; k < E_COLS; k++)
        pgx_array_release(&rows.e[k]);
    return rc;
}

static int batch_reply(imp_batch *b)
{
    const Tally__V1__ImportComplaintsRequest *req = b->req;
    Tally__V1__ImportComplaintsReply rep = TALLY__V1__IMPORT_COMPLAINTS_REPLY__INIT;
    size_t n = req->n_complaints;
    Tally__V1__ImportedComplaintResult *res = calloc(n, sizeof(*res));
    Tally__V1__ImportedComplaintResult **ptrs = calloc(n, sizeof(*ptrs));
    int rc;
    if (!res || !ptrs) {
        free(res);
        free(ptrs);
        return srv_fail(b->db.call, TALLY_ENOMEM, "imported, but out of memory for the reply");
    }
    for (size_t i = 0; i < n; i++) {
        tally__v1__imported_complaint_result__init(&res[i]);
        res[i].idempotency_key = req->complaints[i]->idempotency_key;
        res[i].complaint_id = b->entries[i].id;
        res[i].version = b->entries[i].version;
        res[i].already_existed = b->entries[i].existed;
        ptrs[i] = &res[i];
    }
    rep.n_results = n;
    rep.results = ptrs;
    rep.imported = (int32_t)b->nnew;
    rep.events_written = (int32_t)b->events;
    rc = srv_reply(b->db.call, &rep.base);
    free(res);
    free(ptrs);
    return rc;
}

int cmd_import(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    cmd_worker *w = worker;
    imp_batch b = { .req = (const void *)msg, .db = { .w = w, .call = call } };
    char begin[96];
    int rc;
    if (!w)
        return srv_fail(call, TALLY_EUNAVAIL, "worker has no database connection (out of memory)");
    if ((rc = batch_validate(&b, call, w->err, sizeof(w->err))) != 0)
        goto out_release;

    int64_t timeout = cmd_timeout(w, call);
    snprintf(begin, sizeof(begin), "BEGIN; SET LOCAL statement_timeout = %lld",
             (long long)(timeout > 0 ? timeout : 1));
    if ((rc = pgx_exec_sql(w->pg, begin, timeout, NULL)) != 0) {
        rc = cmd_db_fail(call, w, rc, "starting the import");
        db_rollback(w);
        goto out_release;
    }
    if ((rc = batch_check(&b)) != 0)
        goto out_release;
    if (b.nnew == 0) { /* every entry was imported before: nothing to write */
        db_rollback(w);
        rc = batch_reply(&b);
        goto out_release;
    }
    if ((rc = batch_reserve(&b)) != 0 || (rc = batch_write(&b)) != 0)
        goto out_release;
    if ((rc = pgx_exec_sql(w->pg, "COMMIT", cmd_timeout(w, call), NULL)) != 0) {
        rc = cmd_db_fail(call, w, rc, "committing the import");
        db_rollback(w);
        goto out_release;
    }
    rc = batch_reply(&b);
out_release:
    batch_release(&b);
    return rc;
}
