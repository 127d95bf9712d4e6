#include "cmd_int.h"

#include "auth.h"
#include "err.h"
#include "hash.h"
#include "log.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/events.pb-c.h"
#include "validate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Milliseconds since the epoch of a timestamptz, as SQL. */
#define MS(x) "(extract(epoch FROM " x ") * 1000)::bigint"
/* An event body's buffer. Validation caps every field a body carries (VAL_*_MAX: a note of
   2,000 bytes is the largest), so a body never comes near it: cmd_pack failing is a bug. */
#define BODY_MAX             8192
#define HISTORY_PAGE_DEFAULT 50
#define HISTORY_PAGE_MAX     500

/*
 * Reference data: an upsert that writes (and emits an event) only when something changed.
 * $1 tenant, $2 id, $3 name, $4 event body. Answers (tenant exists, row existed, row written).
 */
#define PUT_REF(table, key, type)                                                                \
    "WITH t AS (SELECT time_zone FROM tenants WHERE tenant_id = $1),"                            \
    " old AS (SELECT 1 FROM " table " WHERE tenant_id = $1 AND " key " = $2),"                   \
    " up AS (INSERT INTO " table " (tenant_id, " key ", name) SELECT $1, $2, $3 FROM t"          \
    "  ON CONFLICT (tenant_id, " key ") DO UPDATE SET name = EXCLUDED.name, updated_at = now()"  \
    "  WHERE " table ".name IS DISTINCT FROM EXCLUDED.name RETURNING updated_at),"               \
    " ev AS (INSERT INTO events (tenant_id, type, occurred_at, recorded_at, local_day, payload)" \
    "  SELECT $1, " type ", up.updated_at, up.updated_at,"                                       \
    "  (up.updated_at AT TIME ZONE t.time_zone)::date, $4 FROM up, t)"                           \
    " SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM old), (SELECT count(*) FROM up)"

/*
 * The complaint as the change commands need it, with the time of the change (now). Its
 * creation's local day is the one its creation event recorded: the tenant's time zone may
 * have changed since.
 */
#define READ_COLUMNS                                                                          \
    "c.version, c.status, coalesce(c.assigned_agent_id, ''), c.category_id, c.priority, " MS( \
        "c.created_at") ", t.time_zone, (SELECT e.local_day::text FROM events e"              \
                        " WHERE e.complaint_id = c.complaint_id AND e.version = 1), " MS(     \
                            "now()") ", " MS("c.updated_at")
enum {
    R_VERSION,
    R_STATUS,
    R_AGENT,
    R_CATEGORY,
    R_PRIORITY,
    R_CREATED,
    R_TZ,
    R_CREATED_DAY,
    R_NOW,
    R_UPDATED
};

static const pgx_stmt stmts[S_COUNT] = {
    [S_PUT_TENANT] = { "put_tenant",
                       "WITH valid AS (SELECT EXISTS (SELECT 1 FROM pg_timezone_names"
                       "  WHERE name = $3) AS ok),"
                       " old AS (SELECT 1 FROM tenants WHERE tenant_id = $1),"
                       " up AS (INSERT INTO tenants (tenant_id, name, time_zone)"
                       "  SELECT $1, $2, $3 FROM valid WHERE ok"
                       "  ON CONFLICT (tenant_id) DO UPDATE SET name = EXCLUDED.name,"
                       "  time_zone = EXCLUDED.time_zone, updated_at = now()"
                       "  WHERE (tenants.name, tenants.time_zone)"
                       "  IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.time_zone)"
                       "  RETURNING updated_at),"
                       " ev AS (INSERT INTO events (tenant_id, type, occurred_at, recorded_at,"
                       "  local_day, payload) SELECT $1, 10, up.updated_at, up.updated_at,"
                       "  (up.updated_at AT TIME ZONE $3)::date, $4 FROM up)"
                       " SELECT (SELECT ok::int FROM valid), (SELECT count(*) FROM old),"
                       " (SELECT count(*) FROM up)",
                       4 },
    [S_PUT_CATEGORY] = { "put_category", PUT_REF("categories", "category_id", "11"), 4 },
    [S_PUT_AGENT] = { "put_agent", PUT_REF("agents", "agent_id", "12"), 4 },
    /*
     * One statement, one round trip: the idempotency key, the complaint, its first history row
     * and its event. A retry (the key exists) writes nothing and answers a NULL id.
     * $1 tenant $2 key $3 hash $4 category $5 priority $6 title $7 description $8 customer
     * $9 event body.
     */
    [S_CREATE] = { "create_complaint",
                   "WITH t AS (SELECT time_zone FROM tenants WHERE tenant_id = $1),"
                   " id AS (SELECT nextval('complaints_complaint_id_seq') AS id, now() AS at"
                   "  FROM t),"
                   " k AS (INSERT INTO idempotency_keys (tenant_id, idempotency_key,"
                   "  request_hash, complaint_id, version, created_at)"
                   "  SELECT $1, $2, $3, id.id, 1, id.at FROM id"
                   "  ON CONFLICT DO NOTHING RETURNING complaint_id, created_at),"
                   " c AS (INSERT INTO complaints (complaint_id, tenant_id, category_id,"
                   "  priority, status, title, description, customer_id, idempotency_key,"
                   "  created_at, updated_at, version)"
                   "  SELECT k.complaint_id, $1, $4, $5, 1, $6, $7, $8, $2, k.created_at,"
                   "  k.created_at, 1 FROM k RETURNING complaint_id, created_at),"
                   " h AS (INSERT INTO status_history (complaint_id, version, tenant_id,"
                   "  from_status, to_status, actor, note, changed_at)"
                   "  SELECT complaint_id, 1, $1, 0, 1, '', '', created_at FROM c),"
                   " e AS (INSERT INTO events (tenant_id, complaint_id, version, type,"
                   "  occurred_at, recorded_at, local_day, payload) SELECT $1, c.complaint_id,"
                   "  1, 1, c.created_at, c.created_at,"
                   "  (c.created_at AT TIME ZONE t.time_zone)::date, $9"
                   "  FROM c, t)"
                   " SELECT (SELECT count(*) FROM t), (SELECT complaint_id FROM c),"
                   " (SELECT " MS("created_at") " FROM c)",
                   9 },
    [S_IDEM_LOOKUP] = { "idempotency_lookup",
                        "SELECT request_hash = $3, complaint_id, version, " MS(
                            "created_at") " FROM idempotency_keys WHERE tenant_id = $1 AND "
                                          "idempotency_key = $2",
                        3 },
    [S_IDEM_FIND] = { "idempotency_find",
                      "SELECT complaint_id, version, " MS(
                          "created_at") " FROM idempotency_keys WHERE tenant_id = $1 AND "
                                        "idempotency_key = $2",
                      2 },
    [S_READ_FOR_CHANGE] = { "read_for_change",
                            "SELECT " READ_COLUMNS " FROM complaints c JOIN tenants t"
                            " USING (tenant_id) WHERE c.complaint_id = $2 AND c.tenant_id = $1",
                            2 },
    /*
     * Optimistic: the update only happens at the expected version, so of two writers with
     * the same expected version exactly one gets a row back. $1 tenant $2 complaint $3 agent
     * ('' = none) $4 expected version $5 time (ms) $6 time zone $7 event body.
     */
    [S_ASSIGN] = { "assign_complaint",
                   "WITH u AS (UPDATE complaints SET assigned_agent_id = NULLIF($3, ''),"
                   "  version = version + 1, updated_at = to_timestamp($5::bigint / 1000.0)"
                   "  WHERE complaint_id = $2 AND tenant_id = $1 AND version = $4"
                   "  RETURNING version, updated_at),"
                   " e AS (INSERT INTO events (tenant_id, complaint_id, version, type,"
                   "  occurred_at, recorded_at, local_day, payload) SELECT $1, $2, u.version,"
                   "  2, u.updated_at, u.updated_at, (u.updated_at AT TIME ZONE $6)::date, $7"
                   "  FROM u)"
                   " SELECT version, " MS("updated_at") " FROM u",
                   7 },
    /*
     * $1 tenant $2 complaint $3 new status $4 expected version $5 time (ms) $6 time zone
     * $7 event body $8 from status $9 actor $10 note.
     */
    [S_CHANGE_STATUS] = { "change_status",
                          "WITH u AS (UPDATE complaints SET status = $3::smallint,"
                          "  version = version + 1, updated_at = to_timestamp($5::bigint / 1000.0),"
                          "  resolved_at = CASE WHEN $3::smallint = 3"
                          "  THEN to_timestamp($5::bigint / 1000.0)"
                          "  WHEN $3::smallint = 1 THEN NULL ELSE resolved_at END"
                          "  WHERE complaint_id = $2 AND tenant_id = $1 AND version = $4"
                          "  RETURNING version, updated_at),"
                          " h AS (INSERT INTO status_history (complaint_id, version, tenant_id,"
                          "  from_status, to_status, actor, note, changed_at)"
                          "  SELECT $2, u.version, $1, $8::smallint, $3::smallint, $9, $10, "
                          "u.updated_at"
                          "  FROM u),"
                          " e AS (INSERT INTO events (tenant_id, complaint_id, version, type,"
                          "  occurred_at, recorded_at, local_day, payload) SELECT $1, $2,"
                          "  u.version, 3, u.updated_at, u.updated_at,"
                          "  (u.updated_at AT TIME ZONE $6)::date, $7 FROM u)"
                          " SELECT version, " MS("updated_at") " FROM u",
                          10 },
    [S_CURRENT_VERSION] = { "current_version",
                            "SELECT version FROM complaints WHERE complaint_id = $2"
                            " AND tenant_id = $1",
                            2 },
    [S_GET] = { "get_complaint",
                "SELECT complaint_id, tenant_id, category_id, priority, status,"
                " coalesce(assigned_agent_id, ''), title, description, customer_id,"
                " " MS("created_at") ", " MS("updated_at") ", coalesce(" MS(
                    "resolved_at") ", 0), version, idempotency_key FROM complaints"
                                   " WHERE complaint_id = $2 AND tenant_id = $1",
                2 },
    /* $3 after version, $4 limit (one more than the page, to know whether another follows). */
    [S_HISTORY] = { "status_history",
                    "SELECT version, from_status, to_status, actor, note, " MS(
                        "changed_at") " FROM status_history WHERE complaint_id = $2 AND tenant_id "
                                      "= $1"
                                      " AND version > $3 ORDER BY version LIMIT $4",
                    4 },
};

/* ---- shared helpers ---------------------------------------------------------------------- */

int64_t cmd_timeout(const cmd_worker *w, const srv_call *call)
{
    int64_t left = srv_remaining_ms(call);
    return left < w->statement_timeout_ms ? left : w->statement_timeout_ms;
}

int cmd_db_fail(srv_call *call, cmd_worker *w, int rc, const char *what)
{
    switch (rc) {
    case TALLY_EUNAVAIL:
        srv_error_reason(call, "DATABASE_UNAVAILABLE");
        return srv_fail(call, rc, "PostgreSQL is unavailable (%s): %s", what, pgx_errstr(w->pg));
    case TALLY_ETIMEOUT:
        return srv_fail(call, rc, "deadline exceeded while %s", what);
    case TALLY_ECONFLICT:
        srv_error_reason(call, "CONCURRENT_CHANGE");
        return srv_fail(call, rc, "a concurrent change won while %s; retry", what);
    default:
        log_error("database error", LOG_STR("while", what),
                  LOG_STR("sqlstate", pgx_sqlstate(w->pg)), LOG_STR("error", pgx_errstr(w->pg)));
        return srv_fail(call, TALLY_EINTERNAL, "database error while %s", what);
    }
}

int cmd_pack(const ProtobufCMessage *msg, uint8_t *buf, size_t cap)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > cap)
        return TALLY_ETOOBIG;
    return (int)protobuf_c_message_pack(msg, buf);
}

/* The answer to a body that cmd_pack could not pack: validation let through what it must not. */
static int body_too_big(srv_call *call, const ProtobufCMessage *body)
{
    log_error("an event body does not fit its buffer", LOG_STR("type", body->descriptor->name),
              LOG_INT("max", BODY_MAX));
    return srv_fail(call, TALLY_EINTERNAL, "event body over %d bytes", BODY_MAX);
}

void *cmd_worker_new(int index, void *arg)
{
    const cmd_config *conf = arg;
    char app[32];
    cmd_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    snprintf(app, sizeof(app), "command-svc/%d", index);
    w->statement_timeout_ms = conf->statement_timeout_ms;
    w->pg = pgx_new(conf->pg_dsn, app, stmts, S_COUNT, conf->statement_timeout_ms);
    if (!w->pg) {
        free(w);
        return NULL;
    }
    pgx_connect(w->pg); /* early, so the first call is fast; failures retry on use */
    return w;
}

void cmd_worker_free(void *worker, void *arg)
{
    cmd_worker *w = worker;
    (void)arg;
    if (!w)
        return;
    pgx_free(w->pg);
    free(w);
}

void cmd_call_begin(void *worker, void *arg)
{
    cmd_worker *w = worker;
    (void)arg;
    pgx_set_tenant(w->pg, NULL); /* costs nothing until a statement runs */
}

/* A worker without state could not allocate: every call gets UNAVAILABLE. */
static int worker_missing(srv_call *call)
{
    return srv_fail(call, TALLY_EUNAVAIL, "worker has no database connection (out of memory)");
}

int cmd_tenant(cmd_worker *w, const char *tenant_id, char *err, size_t errlen)
{
    int rc = val_id("tenant_id", tenant_id, false, err, errlen);
    if (rc == 0 && (rc = pgx_set_tenant(w->pg, tenant_id)) != 0)
        snprintf(err, errlen, "tenant_id: cannot be used as a tenant");
    return rc;
}

/* The complaint a request names: 0, or nonzero with the message in w->err (as val_*). */
static int val_complaint(cmd_worker *w, const char *tenant_id, int64_t complaint_id)
{
    int rc = cmd_tenant(w, tenant_id, w->err, sizeof(w->err));
    return rc ? rc : val_positive("complaint_id", complaint_id, w->err, sizeof(w->err));
}

/* A request that failed validation: INVALID_ARGUMENT with the validator's message. */
static int invalid(srv_call *call, const cmd_worker *w)
{
    return srv_fail(call, TALLY_EINVAL, "%s", w->err);
}

/* ---- reference data ---------------------------------------------------------------------- */

/* Answers a Put*: created/changed from the (tenant ok, existed, written) row. */
static int put_reply(srv_call *call, const PGresult *r, const char *tenant_id)
{
    Tally__V1__PutTenantReply rep = TALLY__V1__PUT_TENANT_REPLY__INIT;
    bool existed = pgx_int(r, 0, 1) > 0, written = pgx_int(r, 0, 2) > 0;
    if (pgx_int(r, 0, 0) == 0)
        return srv_fail(call, TALLY_ENOTFOUND, "tenant_id: no tenant \"%s\"", tenant_id);
    rep.created = written && !existed;
    rep.changed = written; /* created or changed: an event was written */
    /* PutCategoryReply and PutAgentReply have the same fields and numbers. */
    return srv_reply(call, &rep.base);
}

static int put_tenant(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__V1__PutTenantRequest *req = (const void *)msg;
    Tally__V1__TenantPut body = TALLY__V1__TENANT_PUT__INIT;
    uint8_t buf[BODY_MAX];
    PGresult *r;
    cmd_worker *w = worker;
    if (!w)
        return worker_missing(call);
    if (cmd_tenant(w, req->tenant_id, w->err, sizeof(w->err)) ||
        val_text("name", req->name, 1, VAL_NAME_MAX, w->err, sizeof(w->err)) ||
        val_time_zone("time_zone", req->time_zone, w->err, sizeof(w->err)))
        return invalid(call, w);
    body.name = req->name;
    body.time_zone = req->time_zone;
    int len = cmd_pack(&body.base, buf, sizeof(buf));
    if (len < 0)
        return body_too_big(call, &body.base);
    const char *vals[] = { req->tenant_id, req->name, req->time_zone, (const char *)buf };
    const int lens[] = { 0, 0, 0, len }, fmts[] = { 0, 0, 0, 1 };
    int rc = pgx_exec(w->pg, S_PUT_TENANT, 4, vals, lens, fmts, cmd_timeout(w, call), &r);
    if (rc != 0)
        return cmd_db_fail(call, w, rc, "writing the tenant");
    if (pgx_int(r, 0, 0) == 0) {
        PQclear(r);
        return srv_fail(call, TALLY_EINVAL, "time_zone: unknown time zone \"%s\"", req->time_zone);
    }
    Tally__V1__PutTenantReply rep = TALLY__V1__PUT_TENANT_REPLY__INIT;
    rep.created = pgx_int(r, 0, 2) > 0 && pgx_int(r, 0, 1) == 0;
    rep.changed = pgx_int(r, 0, 2) > 0; /* created or changed: an event was written */
    PQclear(r);
    return srv_reply(call, &rep.base);
}

/* PutCategory and PutAgent: the same shape, another table. */
static int put_ref(srv_call *call, cmd_worker *w, int stmt, const char *tenant_id,
                   const char *id_field, const char *id, const char *name,
                   const ProtobufCMessage *body)
{
    uint8_t buf[BODY_MAX];
    PGresult *r;
    if (cmd_tenant(w, tenant_id, w->err, sizeof(w->err)) ||
        val_id(id_field, id, false, w->err, sizeof(w->err)) ||
        val_text("name", name, 1, VAL_NAME_MAX, w->err, sizeof(w->err)))
        return invalid(call, w);
    int len = cmd_pack(body, buf, sizeof(buf));
    if (len < 0)
        return body_too_big(call, body);
    const char *vals[] = { tenant_id, id, name, (const char *)buf };
    const int lens[] = { 0, 0, 0, len }, fmts[] = { 0, 0, 0, 1 };
    int rc = pgx_exec(w->pg, stmt, 4, vals, lens, fmts, cmd_timeout(w, call), &r);
    if (rc != 0)
        return cmd_db_fail(call, w, rc, "writing reference data");
    rc = put_reply(call, r, tenant_id);
    PQclear(r);
    return rc;
}

static int put_category(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__V1__PutCategoryRequest *req = (const void *)msg;
    Tally__V1__CategoryPut body = TALLY__V1__CATEGORY_PUT__INIT;
    cmd_worker *w = worker;
    if (!w)
        return worker_missing(call);
    body.category_id = req->category_id;
    body.name = req->name;
    return put_ref(call, w, S_PUT_CATEGORY, req->tenant_id, "category_id", req->category_id,
                   req->name, &body.base);
}

static int put_agent(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__V1__PutAgentRequest *req = (const void *)msg;
    Tally__V1__AgentPut body = TALLY__V1__AGENT_PUT__INIT;
    cmd_worker *w = worker;
    if (!w)
        return worker_missing(call);
    body.agent_id = req->agent_id;
    body.name = req->name;
    return put_ref(call, w, S_PUT_AGENT, req->tenant_id, "agent_id", req->agent_id, req->name,
                   &body.base);
}

/* ---- complaints -------------------------------------------------------------------------- */

static int create_complaint(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__V1__CreateComplaintRequest *req = (const void *)msg;
    Tally__V1__ComplaintCreated body = TALLY__V1__COMPLAINT_CREATED__INIT;
    Tally__V1__CreateComplaintReply rep = TALLY__V1__CREATE_COMPLAINT_REPLY__INIT;
    uint8_t buf[BODY_MAX], hash[8];
    char prio[8];
    PGresult *r;
    cmd_worker *w = worker;
    if (!w)
        return worker_missing(call);
    if (cmd_tenant(w, req->tenant_id, w->err, sizeof(w->err)) ||
        val_id("idempotency_key", req->idempotency_key, false, w->err, sizeof(w->err)) ||
        val_id("category_id", req->category_id, false, w->err, sizeof(w->err)) ||
        val_priority("priority", req->priority, w->err, sizeof(w->err)) ||
        val_text("title", req->title, 1, VAL_TITLE_MAX, w->err, sizeof(w->err)) ||
        val_text("description", req->description, 0, VAL_DESCRIPTION_MAX, w->err, sizeof(w->err)) ||
        val_id("customer_id", req->customer_id, false, w->err, sizeof(w->err)))
        return invalid(call, w);

    if (hash_fingerprint(msg, hash) != 0)
        return srv_fail(call, TALLY_ENOMEM, "out of memory");

    body.category_id = req->category_id;
    body.priority = req->priority;
    body.customer_id = req->customer_id;
    body.title = req->title;
    body.status = TALLY__V1__STATUS__STATUS_OPEN;
    int len = cmd_pack(&body.base, buf, sizeof(buf));
    if (len < 0)
        return body_too_big(call, &body.base);
    snprintf(prio, sizeof(prio), "%d", (int)req->priority);
    const char *vals[] = {
        req->tenant_id, req->idempotency_key, (const char *)hash, req->category_id, prio,
        req->title,     req->description,     req->customer_id,   (const char *)buf
    };
    const int lens[] = { 0, 0, 8, 0, 0, 0, 0, 0, len }, fmts[] = { 0, 0, 1, 0, 0, 0, 0, 0, 1 };
    int rc = pgx_exec(w->pg, S_CREATE, 9, vals, lens, fmts, cmd_timeout(w, call), &r);
    if (rc == TALLY_ENOTFOUND && strcmp(pgx_constraint(w->pg), "complaints_category_fk") == 0)
        return srv_fail(call, rc, "category_id: no category \"%s\" in tenant \"%s\"",
                        req->category_id, req->tenant_id);
    if (rc != 0)
        return cmd_db_fail(call, w, rc, "creating the complaint");
    if (pgx_int(r, 0, 0) == 0) {
        PQclear(r);
        return srv_fail(call, TALLY_ENOTFOUND, "tenant_id: no tenant \"%s\"", req->tenant_id);
    }
    if (!pgx_null(r, 0, 1)) {
        rep.complaint_id = pgx_int(r, 0, 1);
        rep.version = 1;
        rep.created_at_ms = pgx_int(r, 0, 2);
        PQclear(r);
        return srv_reply(call, &rep.base);
    }
    PQclear(r);

    /* A retry: the key exists. Same content: the first reply; other content: refused. */
    rc = pgx_exec(w->pg, S_IDEM_LOOKUP, 3, vals, lens, fmts, cmd_timeout(w, call), &r);
    if (rc != 0)
        return cmd_db_fail(call, w, rc, "looking up the idempotency key");
    if (PQntuples(r) != 1) { /* cannot happen: keys are never deleted */
        PQclear(r);
        srv_error_reason(call, "IDEMPOTENCY_KEY_IN_USE");
        return srv_fail(call, TALLY_ECONFLICT, "idempotency_key: in use concurrently; retry");
    }
    bool same = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    rep.complaint_id = pgx_int(r, 0, 1);
    rep.version = pgx_int(r, 0, 2);
    rep.created_at_ms = pgx_int(r, 0, 3);
    PQclear(r);
    if (!same) {
        srv_error_reason(call, "IDEMPOTENCY_KEY_REUSED");
        srv_error_meta(call, "complaint_id", "%" PRId64, rep.complaint_id);
        return srv_fail(call, TALLY_EEXIST,
                        "idempotency_key: \"%s\" was already used for another request "
                        "(complaint %" PRId64 ")",
                        req->idempotency_key, rep.complaint_id);
    }
    return srv_reply(call, &rep.base);
}

static int find_complaint_by_key(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__V1__FindComplaintByKeyRequest *req = (const void *)msg;
    Tally__V1__FindComplaintByKeyReply rep = TALLY__V1__FIND_COMPLAINT_BY_KEY_REPLY__INIT;
    PGresult *r;
    cmd_worker *w = worker;
    if (!w)
        return worker_missing(call);
    if (cmd_tenant(w, req->tenant_id, w->err, sizeof(w->err)) ||
        val_id("idempotency_key", req->idempotency_key, false, w->err, sizeof(w->err)))
        return invalid(call, w);
    const char *vals[] = { req->tenant_id, req->idempotency_key };
    int rc = pgx_exec(w->pg, S_IDEM_FIND, 2, vals, NULL, NULL, cmd_timeout(w, call), &r);
    if (rc != 0)
        return cmd_db_fail(call, w, rc, "looking up the idempotency key");
    if (PQntuples(r) == 0) {
        PQclear(r);
        srv_error_reason(call, "IDEMPOTENCY_KEY_UNUSED");
        return srv_fail(call, TALLY_ENOTFOUND,
                        "idempotency_key: no complaint was created with \"%s\" in tenant \"%s\"",
                        req->idempotency_key, req->tenant_id);
    }
    rep.complaint_id = pgx_int(r, 0, 0);
    rep.version = pgx_int(r, 0, 1);
    rep.created_at_ms = pgx_int(r, 0, 2);
    PQclear(r);
    return srv_reply(call, &rep.base);
}

/* The details of an ABORTED for a stale expected_version: what a client re-reads and retries. */
static void version_conflict(srv_call *call, int64_t complaint_id, int64_t expected, int64_t now)
{
    srv_error_reason(call, "VERSION_CONFLICT");
    srv_error_meta(call, "complaint_id", "%" PRId64, complaint_id);
    srv_error_meta(call, "expected_version", "%" PRId64, expected);
    srv_error_meta(call, "current_version", "%" PRId64, now);
}

/* The details of a FAILED_PRECONDITION for a status move the workflow does not allow. */
static void move_refused(srv_call *call, int from, int to)
{
    char list[96];
    val_allowed_moves(from, list, sizeof(list));
    srv_error_reason(call, "STATUS_MOVE_NOT_ALLOWED");
    srv_error_meta(call, "from_status", "STATUS_%s", val_status_name(from));
    srv_error_meta(call, "to_status", "STATUS_%s", val_status_name(to));
    srv_error_meta(call, "allowed", "%s", list);
}

/* The complaint read before a change; fails the call (NOT_FOUND, ABORTED) when it must. */
static int read_for_change(srv_call *call, cmd_worker *w, const char *tenant_id,
                           int64_t complaint_id, int64_t expected, PGresult **out)
{
    char id[24];
    snprintf(id, sizeof(id), "%" PRId64, complaint_id);
    const char *vals[] = { tenant_id, id };
    int rc = pgx_exec(w->pg, S_READ_FOR_CHANGE, 2, vals, NULL, NULL, cmd_timeout(w, call), out);
    if (rc != 0)
        return cmd_db_fail(call, w, rc, "reading the complaint");
    if (PQntuples(*out) == 0) {
        PQclear(*out);
        return srv_fail(call, TALLY_ENOTFOUND,
                        "complaint_id: no complaint %" PRId64 " in tenant \"%s\"", complaint_id,
                        tenant_id);
    }
    int64_t version = pgx_int(*out, 0, R_VERSION);
    if (version != expected) {
        PQclear(*out);
        version_conflict(call, complaint_id, expected, version);
        return srv_fail(call, TALLY_ECONFLICT,
                        "expected_version: %" PRId64 ", but complaint %" PRId64
                        " is at version %" PRId64 "; re-read it and decide again",
                        expected, complaint_id, version);
    }
    return 0;
}

/* The change statement found another version (a concurrent writer won): ABORTED. */
static int lost_race(srv_call *call, cmd_worker *w, const char *tenant_id, int64_t complaint_id,
                     int64_t expected)
{
    char id[24];
    PGresult *r;
    snprintf(id, sizeof(id), "%" PRId64, complaint_id);
    const char *vals[] = { tenant_id, id };
    int rc = pgx_exec(w->pg, S_CURRENT_VERSION, 2, vals, NULL, NULL, cmd_timeout(w, call), &r);
    int64_t now = rc == 0 && PQntuples(r) == 1 ? pgx_int(r, 0, 0) : 0;
    if (rc == 0)
        PQclear(r);
    version_conflict(call, complaint_id, expected, now);
    return srv_fail(call, TALLY_ECONFLICT,
                    "expected_version: %" PRId64 ", but complaint %" PRId64
                    " is at version %" PRId64 "; re-read it and decide again",
                    expected, complaint_id, now);
}

static int assign_complaint(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__V1__AssignComplaintRequest *req = (const void *)msg;
    Tally__V1__ComplaintAssigned body = TALLY__V1__COMPLAINT_ASSIGNED__INIT;
    Tally__V1__AssignComplaintReply rep = TALLY__V1__ASSIGN_COMPLAINT_REPLY__INIT;
    uint8_t buf[BODY_MAX];
    char id[24], expected[24];
    PGresult *r, *u;
    cmd_worker *w = worker;
    if (!w)
        return worker_missing(call);
    if (val_complaint(w, req->tenant_id, req->complaint_id) ||
        val_id("agent_id", req->agent_id, true, w->err, sizeof(w->err)) ||
        val_positive("expected_version", req->expected_version, w->err, sizeof(w->err)))
        return invalid(call, w);
    int rc = read_for_change(call, w, req->tenant_id, req->complaint_id, req->expected_version, &r);
    if (rc != 0)
        return rc;
    int status = (int)pgx_int(r, 0, R_STATUS);
    rep.complaint_id = req->complaint_id;
    if (status == TALLY__V1__STATUS__STATUS_CLOSED) {
        PQclear(r);
        srv_error_reason(call, "COMPLAINT_CLOSED");
        return srv_fail(call, TALLY_EPRECOND,
                        "complaint %" PRId64 " is CLOSED: it can no longer be assigned",
                        req->complaint_id);
    }
    if (strcmp(PQgetvalue(r, 0, R_AGENT), req->agent_id) == 0) { /* nothing to change */
        rep.version = req->expected_version;
        rep.updated_at_ms = pgx_int(r, 0, R_UPDATED);
        PQclear(r);
        return srv_reply(call, &rep.base);
    }
    body.previous_agent_id = PQgetvalue(r, 0, R_AGENT);
    body.agent_id = req->agent_id;
    body.category_id = PQgetvalue(r, 0, R_CATEGORY);
    body.priority = (Tally__V1__Priority)pgx_int(r, 0, R_PRIORITY);
    body.status = (Tally__V1__Status)status;
    body.created_at_ms = pgx_int(r, 0, R_CREATED);
    int len = cmd_pack(&body.base, buf, sizeof(buf));
    if (len < 0) {
        PQclear(r);
        return body_too_big(call, &body.base);
    }
    snprintf(id, sizeof(id), "%" PRId64, req->complaint_id);
    snprintf(expected, sizeof(expected), "%" PRId64, req->expected_version);
    const char *vals[] = { req->tenant_id,          id,
                           req->agent_id,           expected,
                           PQgetvalue(r, 0, R_NOW), PQgetvalue(r, 0, R_TZ),
                           (const char *)buf };
    const int lens[] = { 0, 0, 0, 0, 0, 0, len }, fmts[] = { 0, 0, 0, 0, 0, 0, 1 };
    rc = pgx_exec(w->pg, S_ASSIGN, 7, vals, lens, fmts, cmd_timeout(w, call), &u);
    PQclear(r);
    if (rc == TALLY_ENOTFOUND && strcmp(pgx_constraint(w->pg), "complaints_agent_fk") == 0)
        return srv_fail(call, rc, "agent_id: no agent \"%s\" in tenant \"%s\"", req->agent_id,
                        req->tenant_id);
    if (rc != 0)
        return cmd_db_fail(call, w, rc, "assigning the complaint");
    if (PQntuples(u) == 0) {
        PQclear(u);
        return lost_race(call, w, req->tenant_id, req->complaint_id, req->expected_version);
    }
    rep.version = pgx_int(u, 0, 0);
    rep.updated_at_ms = pgx_int(u, 0, 1);
    PQclear(u);
    return srv_reply(call, &rep.base);
}

static int change_status(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__V1__ChangeStatusRequest *req = (const void *)msg;
    Tally__V1__StatusChanged body = TALLY__V1__STATUS_CHANGED__INIT;
    Tally__V1__ChangeStatusReply rep = TALLY__V1__CHANGE_STATUS_REPLY__INIT;
    uint8_t buf[BODY_MAX];
    char id[24], expected[24], to[8], from[8];
    PGresult *r, *u;
    cmd_worker *w = worker;
    if (!w)
        return worker_missing(call);
    if (val_complaint(w, req->tenant_id, req->complaint_id) ||
        val_status("status", req->status, w->err, sizeof(w->err)) ||
        val_positive("expected_version", req->expected_version, w->err, sizeof(w->err)) ||
        val_text("note", req->note, 0, VAL_NOTE_MAX, w->err, sizeof(w->err)) ||
        val_id("actor", req->actor, false, w->err, sizeof(w->err)))
        return invalid(call, w);
    int rc = read_for_change(call, w, req->tenant_id, req->complaint_id, req->expected_version, &r);
    if (rc != 0)
        return rc;
    int status = (int)pgx_int(r, 0, R_STATUS);
    if (!val_move_allowed(status, req->status)) {
        PQclear(r);
        val_move_error(status, req->status, w->err, sizeof(w->err));
        move_refused(call, status, req->status);
        return srv_fail(call, TALLY_EPRECOND, "%s", w->err);
    }
    int64_t now = pgx_int(r, 0, R_NOW), created = pgx_int(r, 0, R_CREATED);
    body.from_status = (Tally__V1__Status)status;
    body.to_status = req->status;
    body.category_id = PQgetvalue(r, 0, R_CATEGORY);
    body.priority = (Tally__V1__Priority)pgx_int(r, 0, R_PRIORITY);
    body.agent_id = PQgetvalue(r, 0, R_AGENT);
    body.actor = req->actor;
    body.created_at_ms = created;
    body.created_local_day = PQgetvalue(r, 0, R_CREATED_DAY);
    if (req->status == TALLY__V1__STATUS__STATUS_RESOLVED)
        body.resolution_seconds = (now - created) / 1000;
    int len = cmd_pack(&body.base, buf, sizeof(buf));
    if (len < 0) {
        PQclear(r);
        return body_too_big(call, &body.base);
    }
    snprintf(id, sizeof(id), "%" PRId64, req->complaint_id);
    snprintf(expected, sizeof(expected), "%" PRId64, req->expected_version);
    snprintf(to, sizeof(to), "%d", (int)req->status);
    snprintf(from, sizeof(from), "%d", status);
    const char *vals[] = { req->tenant_id,
                           id,
                           to,
                           expected,
                           PQgetvalue(r, 0, R_NOW),
                           PQgetvalue(r, 0, R_TZ),
                           (const char *)buf,
                           from,
                           req->actor,
                           req->note };
    const int lens[] = { 0, 0, 0, 0, 0, 0, len, 0, 0, 0 };
    const int fmts[] = { 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 };
    rc = pgx_exec(w->pg, S_CHANGE_STATUS, 10, vals, lens, fmts, cmd_timeout(w, call), &u);
    PQclear(r);
    if (rc != 0)
        return cmd_db_fail(call, w, rc, "changing the status");
    if (PQntuples(u) == 0) {
        PQclear(u);
        return lost_race(call, w, req->tenant_id, req->complaint_id, req->expected_version);
    }
    rep.complaint_id = req->complaint_id;
    rep.version = pgx_int(u, 0, 0);
    rep.updated_at_ms = pgx_int(u, 0, 1);
    PQclear(u);
    return srv_reply(call, &rep.base);
}

/* ---- reads ------------------------------------------------------------------------------- */

static int get_complaint(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__V1__GetComplaintRequest *req = (const void *)msg;
    Tally__V1__GetComplaintReply rep = TALLY__V1__GET_COMPLAINT_REPLY__INIT;
    Tally__V1__Complaint c = TALLY__V1__COMPLAINT__INIT;
    char id[24];
    PGresult *r;
    cmd_worker *w = worker;
    if (!w)
        return worker_missing(call);
    if (val_complaint(w, req->tenant_id, req->complaint_id))
        return invalid(call, w);
    snprintf(id, sizeof(id), "%" PRId64, req->complaint_id);
    const char *vals[] = { req->tenant_id, id };
    int rc = pgx_exec(w->pg, S_GET, 2, vals, NULL, NULL, cmd_timeout(w, call), &r);
    if (rc != 0)
        return cmd_db_fail(call, w, rc, "reading the complaint");
    if (PQntuples(r) == 0) {
        PQclear(r);
        return srv_fail(call, TALLY_ENOTFOUND,
                        "complaint_id: no complaint %" PRId64 " in tenant \"%s\"",
                        req->complaint_id, req->tenant_id);
    }
    c.complaint_id = pgx_int(r, 0, 0);
    c.tenant_id = PQgetvalue(r, 0, 1);
    c.category_id = PQgetvalue(r, 0, 2);
    c.priority = (Tally__V1__Priority)pgx_int(r, 0, 3);
    c.status = (Tally__V1__Status)pgx_int(r, 0, 4);
    c.assigned_agent_id = PQgetvalue(r, 0, 5);
    c.title = PQgetvalue(r, 0, 6);
    c.description = PQgetvalue(r, 0, 7);
    c.customer_id = PQgetvalue(r, 0, 8);
    c.created_at_ms = pgx_int(r, 0, 9);
    c.updated_at_ms = pgx_int(r, 0, 10);
    c.resolved_at_ms = pgx_int(r, 0, 11);
    c.version = pgx_int(r, 0, 12);
    c.idempotency_key = PQgetvalue(r, 0, 13);
    rep.complaint = &c;
    rc = srv_reply(call, &rep.base);
    PQclear(r);
    return rc;
}

static int list_status_history(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__V1__ListStatusHistoryRequest *req = (const void *)msg;
    Tally__V1__ListStatusHistoryReply rep = TALLY__V1__LIST_STATUS_HISTORY_REPLY__INIT;
    char id[24], after_s[24], limit_s[16], token[64];
    int64_t after;
    PGresult *r;
    cmd_worker *w = worker;
    if (!w)
        return worker_missing(call);
    if (val_complaint(w, req->tenant_id, req->complaint_id))
        return invalid(call, w);
    if (req->page_size < 0 || req->page_size > HISTORY_PAGE_MAX)
        return srv_fail(call, TALLY_EINVAL, "page_size: must be 0 to %d, got %d", HISTORY_PAGE_MAX,
                        req->page_size);
    if (val_history_token(req->page_token, req->complaint_id, &after) != 0)
        return srv_fail(call, TALLY_EINVAL, "page_token: not a token of this complaint's history");
    int size = req->page_size ? req->page_size : HISTORY_PAGE_DEFAULT;
    snprintf(id, sizeof(id), "%" PRId64, req->complaint_id);
    snprintf(after_s, sizeof(after_s), "%" PRId64, after);
    snprintf(limit_s, sizeof(limit_s), "%d", size + 1);
    const char *vals[] = { req->tenant_id, id, after_s, limit_s };
    int rc = pgx_exec(w->pg, S_HISTORY, 4, vals, NULL, NULL, cmd_timeout(w, call), &r);
    if (rc != 0)
        return cmd_db_fail(call, w, rc, "reading the status history");
    int rows = PQntuples(r);
    if (rows == 0) { /* past the end, or no such complaint in this tenant (whatever the token) */
        PGresult *v;
        PQclear(r);
        rc = pgx_exec(w->pg, S_CURRENT_VERSION, 2, vals, NULL, NULL, cmd_timeout(w, call), &v);
        if (rc != 0)
            return cmd_db_fail(call, w, rc, "reading the complaint");
        bool exists = PQntuples(v) == 1;
        PQclear(v);
        if (!exists)
            return srv_fail(call, TALLY_ENOTFOUND,
                            "complaint_id: no complaint %" PRId64 " in tenant \"%s\"",
                            req->complaint_id, req->tenant_id);
        return srv_reply(call, &rep.base);
    }
    int n = rows > size ? size : rows;
    Tally__V1__StatusHistoryEntry *entries = calloc((size_t)n + 1, sizeof(*entries));
    Tally__V1__StatusHistoryEntry **ptrs = calloc((size_t)n + 1, sizeof(*ptrs));
    if (!entries || !ptrs) {
        free(entries);
        free(ptrs);
        PQclear(r);
        return srv_fail(call, TALLY_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        Tally__V1__StatusHistoryEntry *e = &entries[i];
        tally__v1__status_history_entry__init(e);
        e->version = pgx_int(r, i, 0);
        e->from_status = (Tally__V1__Status)pgx_int(r, i, 1);
        e->to_status = (Tally__V1__Status)pgx_int(r, i, 2);
        e->actor = PQgetvalue(r, i, 3);
        e->note = PQgetvalue(r, i, 4);
        e->changed_at_ms = pgx_int(r, i, 5);
        ptrs[i] = e;
    }
    rep.n_entries = (size_t)n;
    rep.entries = ptrs;
    if (rows > size) {
        snprintf(token, sizeof(token), "h%" PRId64 ".%" PRId64, req->complaint_id,
                 entries[n - 1].version);
        rep.next_page_token = token;
    }
    rc = srv_reply(call, &rep.base);
    free(entries);
    free(ptrs);
    PQclear(r);
    return rc;
}

/* Who may call what (docs/security.md): writers change complaints and read them back (a
   manager reads dashboards, on query-svc); the tenant itself is an operator's (admin's). */
#define WRITE_ROLES (AUTH_WRITER | AUTH_ADMIN)

static const srv_method methods[] = {
    { .name = "PutTenant",
      .request = &tally__v1__put_tenant_request__descriptor,
      .handler = put_tenant,
      .roles = AUTH_ADMIN },
    { .name = "PutCategory",
      .request = &tally__v1__put_category_request__descriptor,
      .handler = put_category,
      .roles = WRITE_ROLES },
    { .name = "PutAgent",
      .request = &tally__v1__put_agent_request__descriptor,
      .handler = put_agent,
      .roles = WRITE_ROLES },
    { .name = "CreateComplaint",
      .request = &tally__v1__create_complaint_request__descriptor,
      .handler = create_complaint,
      .roles = WRITE_ROLES },
    { .name = "FindComplaintByKey",
      .request = &tally__v1__find_complaint_by_key_request__descriptor,
      .handler = find_complaint_by_key,
      .roles = WRITE_ROLES },
    { .name = "AssignComplaint",
      .request = &tally__v1__assign_complaint_request__descriptor,
      .handler = assign_complaint,
      .roles = WRITE_ROLES },
    { .name = "ChangeStatus",
      .request = &tally__v1__change_status_request__descriptor,
      .handler = change_status,
      .roles = WRITE_ROLES },
    { .name = "GetComplaint",
      .request = &tally__v1__get_complaint_request__descriptor,
      .handler = get_complaint,
      .roles = WRITE_ROLES },
    { .name = "ListStatusHistory",
      .request = &tally__v1__list_status_history_request__descriptor,
      .handler = list_status_history,
      .roles = WRITE_ROLES },
    { .name = "ImportComplaints",
      .request = &tally__v1__import_complaints_request__descriptor,
      .handler = cmd_import,
      .roles = WRITE_ROLES },
};

const srv_service cmd_service = { "tally.v1.ComplaintCommands", methods,
                                  sizeof(methods) / sizeof(methods[0]) };
