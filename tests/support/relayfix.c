/* relayfix: the relay tests' fixture. See relayfix.h. */
#include "relayfix.h"

#include "ev_wait.h"
#include "event.h"
#include "stream.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/events.pb-c.h"
#include "tclock.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a private database and redis-server per test ---------------------------------------- */

rl_fixture rl;

void rl_pg_ok(PGconn *pg, const char *sql)
{
    PQclear(pgdb_sql(pg, sql, 0, NULL));
}

redisContext *rl_redis_open(void)
{
    return rsv_open(&rl.redis);
}

void rl_setup(void)
{
    char url[64];
    pgdb_create(&rl.db, "tally_relay");
    rsv_start(&rl.redis, NULL);
    /* fx_start_command_svc migrates and starts with the inherited environment. */
    setenv("TALLY_PG_DSN", rl.db.dsn, 1);
    setenv("TALLY_PG_MIGRATE_DSN", rl.db.owner_dsn, 1);
    setenv("TALLY_REDIS_URL", rsv_url(&rl.redis, url, sizeof(url)), 1);
}

void rl_teardown(void)
{
    for (int i = 0; i < 2; i++)
        if (rl.svc_started[i])
            proc_release(&rl.svc[i]);
    rsv_release(&rl.redis);
    pgdb_drop(&rl.db);
}

void rl_svc_start(int i, const char *const *env)
{
    fx_start_command_svc(&rl.svc[i], env);
    rl.svc_started[i] = true;
}

/* SIGTERM: the relay stops with the service, which exits 0 (and leak-free under ASan). */
/* SIGTERM to replica i: it must exit 0 (and, when its relay ran, log "relay stopped"). */
static void stop_term(int i, bool relay_ran)
{
    int rc = proc_stop(&rl.svc[i], SIGTERM, 15000);
    cr_assert_eq(rc, 0, "command-svc exited with %d on SIGTERM (its log is above)", rc);
    if (relay_ran)
        cr_assert(proc_log_has(&rl.svc[i], "\"msg\":\"relay stopped\""));
    proc_release(&rl.svc[i]);
    rl.svc_started[i] = false;
}

void rl_svc_stop(int i)
{
    stop_term(i, false);
}

void rl_svc_stop_clean(int i)
{
    stop_term(i, true);
}

gc_client *rl_tenant(int i, char *tenant, const char *tz)
{
    gc_client *c = gc_new_port(rl.svc[i].grpc_port);
    cr_assert(c);
    fx_seed_tenant(c, fx_tenant(tenant, 32), tz);
    return c;
}

void rl_svc_kill(int i)
{
    proc_stop(&rl.svc[i], SIGKILL, 5000);
    proc_release(&rl.svc[i]);
    rl.svc_started[i] = false;
}

/* ---- commands (no asserts: also called from threads) ---------------------------------- */

/* One call; its status code, or -1 when it could not be made. The reply goes to out. */
int rl_call(gc_client *c, const char *method, const ProtobufCMessage *msg, gc_result *out)
{
    memset(out, 0, sizeof(*out));
    if (gc_call(c, method, msg, NULL, 10000, out) != 0)
        return -1;
    return out->code;
}

/*
 * A complaint created, assigned, moved to in progress, then resolved: 4 events. 0, or the
 * failing step's status code (with the step in why).
 */
int rl_lifecycle(gc_client *c, const char *tenant, const char *key, char *why, size_t len)
{
    Tally__V1__CreateComplaintRequest cr = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    Tally__V1__AssignComplaintRequest as = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
    Tally__V1__ChangeStatusRequest ch = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    gc_result r;
    int rc;
    cr.tenant_id = as.tenant_id = ch.tenant_id = (char *)tenant;
    cr.idempotency_key = (char *)key;
    cr.category_id = "c1";
    cr.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    cr.title = "The printer is on fire";
    cr.customer_id = "cust-1";
    if ((rc = rl_call(c, GC_COMMANDS("CreateComplaint"), &cr.base, &r)) != 0)
        goto out_fail;
    Tally__V1__CreateComplaintReply *rep =
        tally__v1__create_complaint_reply__unpack(NULL, r.len, r.data);
    gc_result_release(&r);
    if (!rep) {
        snprintf(why, len, "%s: the CreateComplaint reply does not decode", key);
        return -1;
    }
    as.complaint_id = ch.complaint_id = rep->complaint_id;
    tally__v1__create_complaint_reply__free_unpacked(rep, NULL);
    as.agent_id = "a1";
    as.expected_version = 1;
    if ((rc = rl_call(c, GC_COMMANDS("AssignComplaint"), &as.base, &r)) != 0)
        goto out_fail;
    gc_result_release(&r);
    ch.actor = "a1";
    ch.status = TALLY__V1__STATUS__STATUS_IN_PROGRESS;
    ch.expected_version = 2;
    if ((rc = rl_call(c, GC_COMMANDS("ChangeStatus"), &ch.base, &r)) != 0)
        goto out_fail;
    gc_result_release(&r);
    ch.status = TALLY__V1__STATUS__STATUS_RESOLVED;
    ch.expected_version = 3;
    if ((rc = rl_call(c, GC_COMMANDS("ChangeStatus"), &ch.base, &r)) != 0)
        goto out_fail;
    gc_result_release(&r);
    return 0;
out_fail:
    snprintf(why, len, "%s: %d %s", key, rc, r.details);
    gc_result_release(&r);
    return rc;
}

/* n lifecycles with keys prefix-0 .. prefix-(n-1); asserts each succeeds. */
void rl_lifecycles(gc_client *c, const char *tenant, const char *prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char key[64], why[1200];
        snprintf(key, sizeof(key), "%s-%d", prefix, i);
        cr_assert_eq(rl_lifecycle(c, tenant, key, why, sizeof(why)), 0, "%s", why);
    }
}

/* ---- what the stream holds, against the events table ------------------------------------ */

static void push(rl_events *l, const rl_event *e)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, l->cap * sizeof(rl_event));
    }
    l->v[l->n++] = *e;
}

static int by_seq(const void *a, const void *b)
{
    const rl_event *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The tenant's rows of the events table with a seq above after_seq, by seq. */
void rl_table_events(const char *tenant, int64_t after_seq, rl_events *out)
{
    char after[24];
    snprintf(after, sizeof(after), "%lld", (long long)after_seq);
    const char *params[] = { tenant, after };
    PGconn *pg = pgdb_connect(&rl.db);
    PGresult *r = pgdb_sql(pg,
                           "SELECT seq, coalesce(complaint_id, 0), coalesce(version, 0), type,"
                           " local_day::text FROM events WHERE tenant_id = $1 AND seq > $2"
                           " ORDER BY seq",
                           2, params);
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < PQntuples(r); i++) {
        rl_event e = { .seq = atoll(PQgetvalue(r, i, 0)),
                       .complaint = atoll(PQgetvalue(r, i, 1)),
                       .version = atoll(PQgetvalue(r, i, 2)),
                       .type = atoi(PQgetvalue(r, i, 3)) };
        snprintf(e.day, sizeof(e.day), "%s", PQgetvalue(r, i, 4));
        push(out, &e);
    }
    PQclear(r);
    PQfinish(pg);
}

/* Decodes one stream entry (field "e"); asserts the envelope is whole. */
static bool decode(const redisReply *entry, const char *tenant, rl_event *out)
{
    const redisReply *fields = entry->element[1];
    cr_assert_eq(fields->elements, 2, "one field per entry");
    if (strcmp(fields->element[0]->str, "w") == 0) {
        cr_assert_gt(atoll(fields->element[1]->str), 0, "a watermark is Unix ms");
        return false; /* a watermark entry: no event */
    }
    cr_assert_str_eq(fields->element[0]->str, "e");
    Tally__V1__EventEnvelope *env = tally__v1__event_envelope__unpack(
        NULL, fields->element[1]->len, (const uint8_t *)fields->element[1]->str);
    cr_assert(env, "stream entry %s is not an EventEnvelope", entry->element[0]->str);
    bool mine = strcmp(env->tenant_id, tenant) == 0;
    if (mine) {
        cr_assert_gt(env->seq, 0);
        cr_assert_neq(env->body_case, TALLY__V1__EVENT_ENVELOPE__BODY__NOT_SET,
                      "seq %lld has no body", (long long)env->seq);
        cr_assert_eq((int)env->body_case, event_body_field((int)env->type));
        cr_assert_gt(env->occurred_at_ms, 0);
        cr_assert_gt(env->recorded_at_ms, 0);
        *out = (rl_event){ .seq = env->seq,
                           .complaint = env->complaint_id,
                           .version = env->version,
                           .type = (int)env->type };
        snprintf(out->day, sizeof(out->day), "%s", env->local_day);
    }
    tally__v1__event_envelope__free_unpacked(env, NULL);
    return mine;
}

/* Appends the tenant's stream entries past l->last_id, in stream order. */
void rl_stream_read(redisContext *c, const char *tenant, rl_events *l)
{
    char key[48], start[80];
    snprintf(key, sizeof(key), "tally:events:%d", stream_partition(tenant, 1));
    for (;;) {
        snprintf(start, sizeof(start), "(%s", l->last_id[0] ? l->last_id : "0-0");
        redisReply *r = redisCommand(c, "XRANGE %s %s + COUNT 500", key, start);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY, "XRANGE: %s", r ? r->str : c->errstr);
        for (size_t i = 0; i < r->elements; i++) {
            rl_event e;
            if (decode(r->element[i], tenant, &e))
                push(l, &e);
            snprintf(l->last_id, sizeof(l->last_id), "%s", r->element[i]->element[0]->str);
        }
        size_t got = r->elements;
        freeReplyObject(r);
        if (got < 500)
            return;
    }
}

static const rl_event *find(const rl_events *sorted, int64_t seq)
{
    rl_event key = { .seq = seq };
    if (!sorted->n)
        return NULL;
    return bsearch(&key, sorted->v, sorted->n, sizeof(rl_event), by_seq);
}

/* How many rows of table (sorted by seq) are in seen. */
static size_t arrived(const rl_events *table, const rl_events *seen)
{
    rl_events s = { .v = malloc((seen->n + 1) * sizeof(rl_event)), .n = seen->n };
    if (seen->n) {
        memcpy(s.v, seen->v, seen->n * sizeof(rl_event));
        qsort(s.v, s.n, sizeof(rl_event), by_seq);
    }
    size_t n = 0;
    for (size_t i = 0; i < table->n; i++)
        n += find(&s, table->v[i].seq) != NULL;
    free(s.v);
    return n;
}

/*
 * Waits until every row of the tenant in the events table with a seq above after_seq is on
 * the stream, then checks each entry against its row and the version order per complaint.
 * seen keeps the stream entries read so far. Returns the number of rows required.
 */
size_t rl_expect_published_after(const char *tenant, int64_t after_seq, rl_events *seen)
{
    rl_events table = { 0 };
    redisContext *c = rl_redis_open();
    cr_assert(c, "cannot reach redis-server on %d", rl.redis.port);
    for (int64_t end = now_mono_ms() + WAIT_MS;; tclock_sleep_ms(100)) {
        free(table.v);
        rl_table_events(tenant, after_seq, &table);
        rl_stream_read(c, tenant, seen);
        if (arrived(&table, seen) == table.n || now_mono_ms() > end)
            break;
    }
    redisFree(c);
    cr_assert_eq(arrived(&table, seen), table.n, "%zu of %zu events arrived", arrived(&table, seen),
                 table.n);

    /* Each entry is its row (a duplicate carries the same seq); versions in order. */
    int64_t *last = calloc(table.n + 1, sizeof(int64_t)); /* per complaint: by its first row */
    for (size_t i = 0; i < seen->n; i++) {
        const rl_event *e = &seen->v[i], *row = find(&table, e->seq);
        if (e->seq <= after_seq)
            continue;
        cr_assert(row, "seq %lld on the stream is not a row of the tenant", (long long)e->seq);
        cr_assert_eq(e->complaint, row->complaint, "seq %lld", (long long)e->seq);
        cr_assert_eq(e->version, row->version, "seq %lld", (long long)e->seq);
        cr_assert_eq(e->type, row->type, "seq %lld", (long long)e->seq);
        cr_assert_str_eq(e->day, row->day, "seq %lld", (long long)e->seq);
        cr_assert_eq(strlen(e->day), 10);
        if (!e->complaint)
            continue;
        size_t slot = 0; /* the complaint's first row in the table */
        while (table.v[slot].complaint != e->complaint)
            slot++;
        if (e->version <= last[slot])
            continue; /* a duplicate of a version already seen */
        cr_assert_eq(e->version, last[slot] + 1, "complaint %lld: version %lld after %lld",
                     (long long)e->complaint, (long long)e->version, (long long)last[slot]);
        last[slot] = e->version;
    }
    free(last);
    size_t n = table.n;
    free(table.v);
    return n;
}

size_t rl_expect_all_published(const char *tenant, rl_events *seen)
{
    return rl_expect_published_after(tenant, 0, seen);
}

int64_t rl_max_seq(const rl_events *l)
{
    int64_t m = 0;
    for (size_t i = 0; i < l->n; i++)
        m = l->v[i].seq > m ? l->v[i].seq : m;
    return m;
}

/* The value of a series ("name" or "name{labels}") of a command-svc's /metrics; -1 if absent. */
double rl_metric(const proc *p, const char *series)
{
    return ev_metric(p->http_port, series);
}

void rl_expect_log(int i, const char *needle)
{
    cr_assert(proc_log_wait(&rl.svc[i], needle, WAIT_MS), "replica %d never logged \"%s\"", i,
              needle);
}
