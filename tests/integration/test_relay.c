/*
 * The outbox relay of command-svc against real servers: every committed event reaches the
 * stream (in version order per complaint, with the envelope the row describes), across kill -9
 * of the service, a Redis outage, a takeover between two replicas, and rows that commit out of
 * seq order. Issue 8 (review of the pipeline, #2-#7): a stream is never trimmed unread (the
 * rest waits in PostgreSQL), a Redis that lost data is repaired (an older snapshot, FLUSHALL),
 * the relay never wedges (a slow backlog count, a leader cut off from Redis, an orphaned
 * leader session; faults from tests/support/proxy), an unpackable row holds back its complaint,
 * and watermark entries. The read model is compared with PostgreSQL (model_diff: the tenant's
 * name, every complaint's applied version, the status counts; then common/verify, every view)
 * with the projector running.
 *
 * Isolation: the relay's leadership is a PostgreSQL advisory lock, which is per database, and
 * other test binaries run command-svc against the stack's database at the same time. So each
 * test here creates a database of its own on the stack's PostgreSQL server (migrated by the
 * fixture) and starts a redis-server of its own on a free loopback port; both go in .fini. The
 * oracle is the events table of that database: every row of the test's tenant must appear on
 * the stream with the same seq (duplicates are allowed and must carry the same seq).
 */
#include "event.h"
#include "fixture.h"
#include "proxy.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/events.pb-c.h"
#include "verify.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 30000 /* longest wait for events to arrive or a replica to take over */

static void sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a private database and redis-server per test ---------------------------------------- */

static struct {
    char base_dsn[512], dsn[1024], db[64];
    char dir[64];
    int redis_port;
    pid_t redis_pid;
    proc svc[2];
    bool svc_started[2];
} fx;

static PGconn *pg_open(const char *dsn)
{
    PGconn *pg = PQconnectdb(dsn);
    cr_assert_eq(PQstatus(pg), CONNECTION_OK, "%s", PQerrorMessage(pg));
    return pg;
}

static void pg_ok(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    cr_assert(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", sql,
              PQresultErrorMessage(r));
    PQclear(r);
}

/* base with dbname replaced by db, as a key=value conninfo string. */
static void dsn_with_db(const char *base, const char *db, char *out, size_t len)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(base, &err);
    cr_assert(opts, "TALLY_PG_DSN: %s", err ? err : "cannot parse");
    size_t n = (size_t)snprintf(out, len, "dbname='%s'", db);
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && o->val[0] && strcmp(o->keyword, "dbname") != 0)
            n += (size_t)snprintf(out + n, len - n, " %s='%s'", o->keyword, o->val);
    PQconninfoFree(opts);
}

static int free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd);
    return ntohs(sa.sin_port);
}

static redisContext *redis_open(void)
{
    struct timeval tv = { .tv_sec = 2 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", fx.redis_port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Starts redis-server on fx.redis_port (no persistence) and waits until it answers. */
static void redis_start(void)
{
    char port[16], log[128];
    snprintf(port, sizeof(port), "%d", fx.redis_port);
    snprintf(log, sizeof(log), "%s/redis.log", fx.dir);
    fx.redis_pid = fork();
    if (fx.redis_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* dies with the test, whatever happens */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", fx.dir, (char *)NULL);
        _exit(127);
    }
    cr_assert_gt(fx.redis_pid, 0);
    for (int i = 0; i < 500; i++) {
        redisContext *c = redis_open();
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            bool up = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            redisFree(c);
            if (up)
                return;
        }
        sleep_ms(10);
    }
    cr_assert_fail("redis-server did not start on port %d (see %s)", fx.redis_port, log);
}

static void redis_stop(void)
{
    if (fx.redis_pid <= 0)
        return;
    kill(fx.redis_pid, SIGTERM);
    waitpid(fx.redis_pid, NULL, 0);
    fx.redis_pid = 0;
}

static void setup(void)
{
    static int n;
    char url[64];
    fx_need_stack();
    snprintf(fx.base_dsn, sizeof(fx.base_dsn), "%s", getenv("TALLY_PG_DSN"));
    snprintf(fx.db, sizeof(fx.db), "tally_relay_%d_%d", (int)getpid(), ++n);
    PGconn *pg = pg_open(fx.base_dsn);
    char sql[128];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", fx.db);
    pg_ok(pg, sql);
    PQfinish(pg);
    dsn_with_db(fx.base_dsn, fx.db, fx.dsn, sizeof(fx.dsn));

    snprintf(fx.dir, sizeof(fx.dir), "/tmp/tally-relay-XXXXXX");
    cr_assert(mkdtemp(fx.dir));
    fx.redis_port = free_port();
    redis_start();
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", fx.redis_port);
    /* fx_start_command_svc migrates and starts with the inherited environment. */
    setenv("TALLY_PG_DSN", fx.dsn, 1);
    setenv("TALLY_REDIS_URL", url, 1);
}

static void teardown(void)
{
    char sql[128], cmd[128];
    for (int i = 0; i < 2; i++)
        if (fx.svc_started[i])
            proc_release(&fx.svc[i]);
    redis_stop();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx.dir);
    if (fx.dir[0] && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", fx.dir);
    PGconn *pg = PQconnectdb(fx.base_dsn);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", fx.db);
    PQclear(PQexec(pg, sql));
    PQfinish(pg);
}

static void svc_start(int i, const char *const *env)
{
    fx_start_command_svc(&fx.svc[i], env);
    fx.svc_started[i] = true;
}

/* SIGTERM: the relay stops with the service, which exits 0 (and leak-free under ASan). */
static void svc_stop_clean(int i)
{
    int rc = proc_stop(&fx.svc[i], SIGTERM, 15000);
    cr_assert_eq(rc, 0, "command-svc exited with %d on SIGTERM", rc);
    cr_assert(proc_log_has(&fx.svc[i], "\"msg\":\"relay stopped\""));
}

static void svc_kill(int i)
{
    proc_stop(&fx.svc[i], SIGKILL, 5000);
    proc_release(&fx.svc[i]);
    fx.svc_started[i] = false;
}

/* ---- commands (no asserts: also called from threads) ---------------------------------- */

/* One call; its status code, or -1 when it could not be made. The reply goes to out. */
static int call(gc_client *c, const char *method, const ProtobufCMessage *msg, gc_result *out)
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
static int lifecycle(gc_client *c, const char *tenant, const char *key, char *why, size_t len)
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
    if ((rc = call(c, CMD("CreateComplaint"), &cr.base, &r)) != 0)
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
    if ((rc = call(c, CMD("AssignComplaint"), &as.base, &r)) != 0)
        goto out_fail;
    gc_result_release(&r);
    ch.actor = "a1";
    ch.status = TALLY__V1__STATUS__STATUS_IN_PROGRESS;
    ch.expected_version = 2;
    if ((rc = call(c, CMD("ChangeStatus"), &ch.base, &r)) != 0)
        goto out_fail;
    gc_result_release(&r);
    ch.status = TALLY__V1__STATUS__STATUS_RESOLVED;
    ch.expected_version = 3;
    if ((rc = call(c, CMD("ChangeStatus"), &ch.base, &r)) != 0)
        goto out_fail;
    gc_result_release(&r);
    return 0;
out_fail:
    snprintf(why, len, "%s: %d %s", key, rc, r.details);
    gc_result_release(&r);
    return rc;
}

/* n lifecycles with keys prefix-0 .. prefix-(n-1); asserts each succeeds. */
static void lifecycles(gc_client *c, const char *tenant, const char *prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char key[64], why[1200];
        snprintf(key, sizeof(key), "%s-%d", prefix, i);
        cr_assert_eq(lifecycle(c, tenant, key, why, sizeof(why)), 0, "%s", why);
    }
}

/* ---- what the stream holds, against the events table ------------------------------------ */

typedef struct ev {
    int64_t seq, complaint, version;
    int type;
    char day[16];
} ev;

typedef struct evlist {
    ev *v;
    size_t n, cap;
    char last_id[64]; /* stream entries read so far end here */
} evlist;

static void push(evlist *l, const ev *e)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, l->cap * sizeof(ev));
    }
    l->v[l->n++] = *e;
}

static int by_seq(const void *a, const void *b)
{
    const ev *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The tenant's rows of the events table with a seq above after_seq, by seq. */
static void table_events(const char *tenant, int64_t after_seq, evlist *out)
{
    char after[24];
    snprintf(after, sizeof(after), "%lld", (long long)after_seq);
    const char *params[] = { tenant, after };
    PGconn *pg = pg_open(fx.dsn);
    PGresult *r = PQexecParams(pg,
                               "SELECT seq, coalesce(complaint_id, 0), coalesce(version, 0), type,"
                               " local_day::text FROM events WHERE tenant_id = $1 AND seq > $2"
                               " ORDER BY seq",
                               2, NULL, params, NULL, NULL, 0);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < PQntuples(r); i++) {
        ev e = { .seq = atoll(PQgetvalue(r, i, 0)),
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
static bool decode(const redisReply *entry, const char *tenant, ev *out)
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
        *out = (ev){ .seq = env->seq,
                     .complaint = env->complaint_id,
                     .version = env->version,
                     .type = (int)env->type };
        snprintf(out->day, sizeof(out->day), "%s", env->local_day);
    }
    tally__v1__event_envelope__free_unpacked(env, NULL);
    return mine;
}

/* Appends the tenant's stream entries past l->last_id, in stream order. */
static void stream_read(redisContext *c, const char *tenant, evlist *l)
{
    char key[48], start[80];
    snprintf(key, sizeof(key), "tally:events:%d", event_partition(tenant, 1));
    for (;;) {
        snprintf(start, sizeof(start), "(%s", l->last_id[0] ? l->last_id : "0-0");
        redisReply *r = redisCommand(c, "XRANGE %s %s + COUNT 500", key, start);
        cr_assert(r && r->type == REDIS_REPLY_ARRAY, "XRANGE: %s", r ? r->str : c->errstr);
        for (size_t i = 0; i < r->elements; i++) {
            ev e;
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

static const ev *find(const evlist *sorted, int64_t seq)
{
    ev key = { .seq = seq };
    if (!sorted->n)
        return NULL;
    return bsearch(&key, sorted->v, sorted->n, sizeof(ev), by_seq);
}

/* How many rows of table (sorted by seq) are in seen. */
static size_t arrived(const evlist *table, const evlist *seen)
{
    evlist s = { .v = malloc((seen->n + 1) * sizeof(ev)), .n = seen->n };
    if (seen->n) {
        memcpy(s.v, seen->v, seen->n * sizeof(ev));
        qsort(s.v, s.n, sizeof(ev), by_seq);
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
static size_t expect_published_after(const char *tenant, int64_t after_seq, evlist *seen)
{
    evlist table = { 0 };
    redisContext *c = redis_open();
    cr_assert(c, "cannot reach redis-server on %d", fx.redis_port);
    for (int64_t end = mono_ms() + WAIT_MS;; sleep_ms(100)) {
        free(table.v);
        table_events(tenant, after_seq, &table);
        stream_read(c, tenant, seen);
        if (arrived(&table, seen) == table.n || mono_ms() > end)
            break;
    }
    redisFree(c);
    cr_assert_eq(arrived(&table, seen), table.n, "%zu of %zu events arrived", arrived(&table, seen),
                 table.n);

    /* Each entry is its row (a duplicate carries the same seq); versions in order. */
    int64_t *last = calloc(table.n + 1, sizeof(int64_t)); /* per complaint: by its first row */
    for (size_t i = 0; i < seen->n; i++) {
        const ev *e = &seen->v[i], *row = find(&table, e->seq);
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

static size_t expect_all_published(const char *tenant, evlist *seen)
{
    return expect_published_after(tenant, 0, seen);
}

static int64_t max_seq(const evlist *l)
{
    int64_t m = 0;
    for (size_t i = 0; i < l->n; i++)
        m = l->v[i].seq > m ? l->v[i].seq : m;
    return m;
}

/* The value of an unlabelled series of a command-svc's /metrics; -1 if unreadable. */
static long metric(const proc *p, const char *name)
{
    static char text[65536];
    char needle[128];
    if (http_get(p->http_port, "/metrics", text, sizeof(text)) != 200)
        return -1;
    snprintf(needle, sizeof(needle), "\n%s ", name);
    const char *at = strstr(text, needle);
    return at ? atol(at + strlen(needle)) : -1;
}

static long leader_gauge(const proc *p)
{
    return metric(p, "tally_relay_leader");
}

/* ---- the tests --------------------------------------------------------------------------- */

TestSuite(relay, .init = setup, .fini = teardown, .timeout = 90);

Test(relay, every_committed_event_reaches_the_stream_in_version_order)
{
    char tenant[32];
    evlist seen = { 0 };
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    svc_start(0, env);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "America/New_York");
    lifecycles(c, tenant, "life", 10);

    size_t n = expect_all_published(tenant, &seen);
    cr_assert_eq(n, 5 + 10 * 4, "tenant, 2 categories, 2 agents, 10 x 4 complaint events");
    cr_assert_eq(seen.n, n, "no duplicates without a crash");
    gc_free(c);
    svc_stop_clean(0);
    free(seen.v);
}

Test(relay, events_committed_before_a_kill_9_are_published_after_restart)
{
    char tenant[32];
    evlist seen = { 0 };
    const char *off[] = { "TALLY_RELAY=false", NULL };
    const char *on[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    svc_start(0, off);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "Europe/Berlin");
    lifecycles(c, tenant, "before", 10);
    gc_free(c);
    svc_kill(0);

    redisContext *rc = redis_open();
    stream_read(rc, tenant, &seen);
    redisFree(rc);
    cr_assert_eq(seen.n, 0, "nothing is published while no relay runs");

    svc_start(1, on);
    c = gc_new_port(fx.svc[1].grpc_port);
    lifecycles(c, tenant, "after", 2);
    cr_assert_eq(expect_all_published(tenant, &seen), 5 + 12 * 4);
    gc_free(c);
    free(seen.v);
}

typedef struct creator {
    int port, first, n, failed;
    const char *tenant;
} creator;

static void *create_many(void *arg)
{
    creator *w = arg;
    gc_client *c = gc_new_port(w->port);
    for (int i = w->first; i < w->first + w->n; i++) {
        Tally__V1__CreateComplaintRequest req = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
        char key[32];
        gc_result r;
        snprintf(key, sizeof(key), "many-%d", i);
        req.tenant_id = (char *)w->tenant;
        req.idempotency_key = key;
        req.category_id = i % 2 ? "c1" : "c2";
        req.priority = TALLY__V1__PRIORITY__PRIORITY_LOW;
        req.title = "Slow response";
        req.customer_id = "cust-2";
        if (gc_call(c, CMD("CreateComplaint"), &req.base, NULL, 10000, &r) != 0 || r.code != 0)
            w->failed++;
        gc_result_release(&r);
    }
    gc_free(c);
    return NULL;
}

/* Creates n complaints over 4 concurrent connections; returns how many failed. */
static int create_concurrently(int port, const char *tenant, int first, int n)
{
    creator w[4];
    pthread_t t[4];
    int failed = 0;
    for (int i = 0; i < 4; i++) {
        w[i] =
            (creator){ .port = port, .first = first + i * (n / 4), .n = n / 4, .tenant = tenant };
        pthread_create(&t[i], NULL, create_many, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        failed += w[i].failed;
    }
    return failed;
}

Test(relay, a_redis_outage_delays_events_but_loses_none)
{
    char tenant[32];
    evlist seen = { 0 };
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    svc_start(0, env);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "Asia/Tokyo");
    expect_all_published(tenant, &seen);
    int64_t seeded = max_seq(&seen);

    /* Without persistence a restart empties Redis: stop it before the commands, so that no
     * event it took is lost with it; the 1,000 events all wait for its return. */
    redis_stop();
    cr_assert_eq(create_concurrently(fx.svc[0].grpc_port, tenant, 0, 1000), 0,
                 "commands must not depend on Redis");
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end; sleep_ms(50))
        if (proc_log_has(&fx.svc[0], "relay: Redis is unavailable"))
            break;
    cr_assert(proc_log_has(&fx.svc[0], "relay: Redis is unavailable"));
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end; sleep_ms(50))
        if (metric(&fx.svc[0], "tally_relay_backlog") >= 1000)
            break;
    cr_assert_geq(metric(&fx.svc[0], "tally_relay_backlog"), 1000, "the backlog is visible");
    redis_start();

    free(seen.v);
    memset(&seen, 0, sizeof(seen));
    cr_assert_eq(expect_published_after(tenant, seeded, &seen), 1000);
    int created = 0;
    for (size_t i = 0; i < seen.n; i++)
        created += seen.v[i].type == TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED;
    cr_assert_geq(created, 1000, "duplicates are allowed, losses are not");
    cr_assert(proc_log_has(&fx.svc[0], "relay: Redis is available again"));
    gc_free(c);
    redis_stop(); /* stopping while the relay backs off is quick too */
    svc_stop_clean(0);
    free(seen.v);
}

/* Waits until replica i reports leader 1 (and the other, when running, 0). */
static void wait_leader(int i)
{
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end; sleep_ms(100))
        if (leader_gauge(&fx.svc[i]) == 1 &&
            (!fx.svc_started[!i] || leader_gauge(&fx.svc[!i]) == 0))
            return;
    cr_assert_fail("replica %d never became the only leader", i);
}

typedef struct lifer {
    int port, failed;
    const char *tenant;
    char why[1200];
} lifer;

static void *run_lifecycles(void *arg)
{
    lifer *l = arg;
    gc_client *c = gc_new_port(l->port);
    for (int i = 0; i < 25; i++) {
        char key[32];
        snprintf(key, sizeof(key), "during-%d", i);
        l->failed += lifecycle(c, l->tenant, key, l->why, sizeof(l->why)) != 0;
    }
    gc_free(c);
    return NULL;
}

Test(relay, a_standby_takes_over_when_the_leader_is_killed)
{
    char tenant[32];
    evlist seen = { 0 };
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    svc_start(0, env);
    wait_leader(0); /* the first one up leads */
    svc_start(1, env);
    wait_leader(0);
    cr_assert_eq(leader_gauge(&fx.svc[1]), 0);

    gc_client *c = gc_new_port(fx.svc[1].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "UTC");
    lifecycles(c, tenant, "first", 5);
    expect_all_published(tenant, &seen);

    /* Commands keep going through the standby while the leader dies under them. */
    lifer l = { .port = fx.svc[1].grpc_port, .tenant = tenant };
    pthread_t t;
    pthread_create(&t, NULL, run_lifecycles, &l);
    sleep_ms(200);
    svc_kill(0);
    wait_leader(1);
    pthread_join(t, NULL);
    cr_assert_eq(l.failed, 0, "commands through the standby: %s", l.why);
    lifecycles(c, tenant, "last", 5);
    cr_assert_eq(expect_all_published(tenant, &seen), 5 + 35 * 4);
    cr_assert(proc_log_has(&fx.svc[1], "relay: became the leader"));
    gc_free(c);
    free(seen.v);
}

Test(relay, a_row_that_commits_after_higher_seqs_are_published_is_not_skipped)
{
    char tenant[32], sql[256];
    evlist seen = { 0 };
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    svc_start(0, env);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "UTC");

    /* A CategoryPut row whose transaction stays open: its seq is taken now. */
    PGconn *held = pg_open(fx.dsn);
    pg_ok(held, "BEGIN");
    snprintf(sql, sizeof(sql),
             "INSERT INTO events (tenant_id, type, occurred_at, local_day, payload)"
             " VALUES ('%s', 11, now(), current_date, ''::bytea) RETURNING seq",
             tenant);
    PGresult *r = PQexec(held, sql);
    cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
    int64_t held_seq = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);

    lifecycles(c, tenant, "later", 3);
    expect_all_published(tenant, &seen); /* the held row is not visible yet */
    cr_assert_gt(max_seq(&seen), held_seq, "later rows were published past the held one");

    pg_ok(held, "COMMIT");
    PQfinish(held);
    cr_assert_eq(expect_all_published(tenant, &seen), 5 + 1 + 3 * 4);
    bool found = false;
    for (size_t i = 0; i < seen.n; i++)
        found |= seen.v[i].seq == held_seq;
    cr_assert(found, "the row committed late (seq %lld) was published", (long long)held_seq);
    gc_free(c);
    free(seen.v);
}

/* ---- the stream, the read model and Redis that loses data (issue 8) ---------------------- */

/* A command on the test's Redis; asserts it answered (an error reply is an answer). */
static redisReply *rcmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert(r, "Redis: %s", c->errstr);
    return r;
}

static long long rint_of(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = rcmd(c, fmt, arg);
    long long v = r->type == REDIS_REPLY_INTEGER  ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : -1;
    freeReplyObject(r);
    return v;
}

static long long xlen(redisContext *c, const char *stream)
{
    return rint_of(c, "XLEN %s", stream);
}

static bool rexists(redisContext *c, const char *key)
{
    return rint_of(c, "EXISTS %s", key) == 1;
}

/*
 * Compares the tenant's read model with what PostgreSQL has: the tenant's name, every
 * complaint's last applied version (P cv, exactly the complaints of the table), and the
 * current status counts (P st). 0, or -1 with the first difference in diff.
 */
static int model_diff(redisContext *c, const char *tenant, char *diff, size_t len)
{
    char p[96], key[160];
    const char *params[] = { tenant };
    int rc = -1;
    snprintf(key, sizeof(key), "{t:%s}:gen", tenant);
    redisReply *g = rcmd(c, "GET %s", key);
    snprintf(p, sizeof(p), "{t:%s}:%s:", tenant, g->type == REDIS_REPLY_STRING ? g->str : "1");
    freeReplyObject(g);
    PGconn *pg = pg_open(fx.dsn);
    PGresult *t = PQexecParams(pg, "SELECT name FROM tenants WHERE tenant_id = $1", 1, NULL, params,
                               NULL, NULL, 0);
    PGresult *s = PQexecParams(pg,
                               "SELECT complaint_id, version, status FROM complaints"
                               " WHERE tenant_id = $1 ORDER BY complaint_id",
                               1, NULL, params, NULL, NULL, 0);
    cr_assert(PQresultStatus(t) == PGRES_TUPLES_OK && PQntuples(t) == 1);
    cr_assert_eq(PQresultStatus(s), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(s));
    snprintf(key, sizeof(key), "%stenant", p);
    redisReply *name = rcmd(c, "HGET %s name", key);
    bool same = name->type == REDIS_REPLY_STRING && strcmp(name->str, PQgetvalue(t, 0, 0)) == 0;
    freeReplyObject(name);
    if (!same) {
        snprintf(diff, len, "%s has no name %s", key, PQgetvalue(t, 0, 0));
        goto out;
    }
    long long st[5] = { 0 };
    snprintf(key, sizeof(key), "%scv", p);
    long long known = rint_of(c, "HLEN %s", key);
    if (known != PQntuples(s)) {
        snprintf(diff, len, "%s has %lld complaints, PostgreSQL %d", key, known, PQntuples(s));
        goto out;
    }
    for (int i = 0; i < PQntuples(s); i++) {
        redisReply *v = rcmd(c, "HGET %s %s", key, PQgetvalue(s, i, 0));
        same = v->type == REDIS_REPLY_STRING && strcmp(v->str, PQgetvalue(s, i, 1)) == 0;
        freeReplyObject(v);
        if (!same) {
            snprintf(diff, len, "complaint %s: version %s not applied", PQgetvalue(s, i, 0),
                     PQgetvalue(s, i, 1));
            goto out;
        }
        st[atoi(PQgetvalue(s, i, 2)) % 5]++;
    }
    snprintf(key, sizeof(key), "%sst", p);
    for (int k = 1; k <= 4; k++) {
        char f[4];
        snprintf(f, sizeof(f), "%d", k);
        redisReply *v = rcmd(c, "HGET %s %s", key, f);
        long long got = v->type == REDIS_REPLY_STRING ? atoll(v->str) : 0;
        freeReplyObject(v);
        if (got != st[k]) {
            snprintf(diff, len, "status %d: %lld in Redis, %lld in PostgreSQL", k, got, st[k]);
            goto out;
        }
    }
    rc = 0;
out:
    PQclear(t);
    PQclear(s);
    PQfinish(pg);
    return rc;
}

/* verify's first difference into the buffer it is given (a char[512]). */
static void first_diff(const verify_diff *d, void *arg)
{
    char *buf = arg;
    if (!buf[0])
        snprintf(buf, 512, "verify: %s %s %s: expected %s, found %s", d->view, d->key, d->field,
                 d->expected ? d->expected : "-", d->found ? d->found : "-");
}

/* Runs common/verify over the tenant (every view, the default window): 0, or -1 with diff. */
static int verify_diff_of(const char *tenant, char *diff, size_t len)
{
    char found[512] = "", err[256];
    cfg_redis rd = { .host = "127.0.0.1", .port = fx.redis_port };
    pgx_conn *pg = pgx_new(fx.dsn, "test-relay-verify", NULL, 0, 0);
    kv_conn *kv = kv_new(&rd, 10000);
    cr_assert(pg && kv);
    verify_options o = { .tenant = tenant, .days = VERIFY_DEFAULT_DAYS, .settle_ms = 0 };
    verify_stats st;
    int rc = verify_run(pg, kv, &o, first_diff, found, &st, err, sizeof(err));
    pgx_free(pg);
    kv_free(kv);
    if (rc != 0)
        snprintf(diff, len, "verify_run: %s", err);
    else if (st.diffs || st.parked)
        snprintf(diff, len, "%lld differences, %lld parked; %s", (long long)st.diffs,
                 (long long)st.parked, found);
    return rc == 0 && !st.diffs && !st.parked ? 0 : -1;
}

/*
 * Waits up to ms until the read model equals PostgreSQL (reconnecting each time): model_diff,
 * then verify (every view) on top.
 */
static void expect_model(const char *tenant, int ms)
{
    char diff[512] = "never compared";
    for (int64_t end = mono_ms() + ms; mono_ms() < end; sleep_ms(200)) {
        redisContext *c = redis_open();
        int rc = c ? model_diff(c, tenant, diff, sizeof(diff)) : -1;
        if (c)
            redisFree(c);
        if (rc == 0 && verify_diff_of(tenant, diff, sizeof(diff)) == 0)
            return;
    }
    cr_assert_fail("the read model of %s never matched PostgreSQL: %s", tenant, diff);
}

/* The value of a labelled series line ("name{labels} v") of a command-svc; -1 if absent. */
static long metric_line(const proc *p, const char *series)
{
    static char text[65536];
    char needle[160];
    if (http_get(p->http_port, "/metrics", text, sizeof(text)) != 200)
        return -1;
    snprintf(needle, sizeof(needle), "\n%s ", series);
    const char *at = strstr(text, needle);
    return at ? atol(at + strlen(needle)) : -1;
}

static void projector_start(proc *p)
{
    const char *env[] = { "TALLY_PROJECTOR_BLOCK_MS=100", NULL };
    cr_assert_eq(proc_start_projector(p, fx.redis_port, env), 0, "the projector did not start:\n%s",
                 p->log ? p->log : "");
}

static void projector_stop(proc *p)
{
    int rc = proc_stop(p, SIGTERM, 15000);
    proc_release(p);
    cr_assert_eq(rc, 0, "the projector exited %d", rc);
}

/* Waits until no row of the database is unpublished. */
static void wait_all_marked(void)
{
    PGconn *pg = pg_open(fx.dsn);
    for (int64_t end = mono_ms() + WAIT_MS;; sleep_ms(100)) {
        PGresult *r = PQexec(pg, "SELECT count(*) FROM events WHERE published_at IS NULL");
        long n = atol(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (n == 0)
            break;
        cr_assert_lt(mono_ms(), end, "%ld rows stay unpublished", n);
    }
    PQfinish(pg);
}

/*
 * Review #2(a): with a bound of 1,000 unacknowledged entries and no projector yet, 2,800 events
 * wait partly in PostgreSQL instead of being trimmed unread; once a projector runs, the read
 * model is exactly what PostgreSQL has and nothing is parked.
 */
Test(relay, an_unread_stream_is_never_trimmed_and_the_rest_waits_in_postgres, .timeout = 150)
{
    char tenant[32];
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", "TALLY_STREAM_MAXLEN=1000", NULL };
    proc pj;
    svc_start(0, env);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "UTC");
    lifecycles(c, tenant, "bulk", 700);

    redisContext *rc = redis_open();
    cr_assert(rc);
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end; sleep_ms(100))
        if (metric(&fx.svc[0], "tally_relay_backpressure") == 1)
            break;
    cr_assert_eq(metric(&fx.svc[0], "tally_relay_backpressure"), 1, "the relay holds back");
    cr_assert_leq(xlen(rc, "tally:events:0"), 1000, "the bound holds");
    cr_assert_eq(metric_line(&fx.svc[0], "tally_relay_stream_length{partition=\"0\"}"),
                 xlen(rc, "tally:events:0"));

    int64_t t0 = mono_ms();
    projector_start(&pj);
    expect_model(tenant, 60000);
    cr_log_info("caught up %lld ms after the projector started", (long long)(mono_ms() - t0));
    wait_all_marked();
    cr_assert_eq(xlen(rc, "tally:dead:0"), 0, "nothing parked");
    redisFree(rc);
    projector_stop(&pj);
    gc_free(c);
    svc_stop_clean(0);
}

/* Closes the complaints created by lifecycles(prefix, n) (RESOLVED -> CLOSED, version 5). */
static void close_all(gc_client *c, const char *tenant, const char *prefix, int n)
{
    PGconn *pg = pg_open(fx.dsn);
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof(key), "%s-%d", prefix, i);
        const char *params[] = { tenant, key };
        PGresult *r = PQexecParams(pg,
                                   "SELECT complaint_id FROM complaints WHERE tenant_id = $1"
                                   " AND idempotency_key = $2",
                                   2, NULL, params, NULL, NULL, 0);
        cr_assert_eq(PQntuples(r), 1, "%s", key);
        Tally__V1__ChangeStatusRequest ch = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
        ch.tenant_id = (char *)tenant;
        ch.complaint_id = atoll(PQgetvalue(r, 0, 0));
        ch.actor = "a1";
        ch.status = TALLY__V1__STATUS__STATUS_CLOSED;
        ch.expected_version = 4;
        PQclear(r);
        gc_result res;
        cr_assert_eq(call(c, CMD("ChangeStatus"), &ch.base, &res), 0, "closing %s: %s", key,
                     res.details);
        gc_result_release(&res);
    }
    PQfinish(pg);
}

/*
 * Review #3 (scenario B): Redis comes back from an older snapshot. Everything after the
 * snapshot (events already marked published, and the projector's work) is gone; the relay
 * notices, republishes, and the read model equals PostgreSQL again, old complaints touched
 * after the restart included.
 */
Test(relay, a_redis_restored_from_an_older_snapshot_is_repaired, .timeout = 150)
{
    char tenant[32];
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    proc pj;
    svc_start(0, env);
    projector_start(&pj);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "Europe/Paris");
    lifecycles(c, tenant, "saved", 10);
    expect_model(tenant, WAIT_MS);
    redisContext *rc = redis_open();
    freeReplyObject(rcmd(rc, "SAVE"));
    lifecycles(c, tenant, "lost", 10);
    wait_all_marked();
    expect_model(tenant, WAIT_MS);
    redisReply *r = redisCommand(rc, "SHUTDOWN NOSAVE"); /* no reply: the server is gone */
    if (r)
        freeReplyObject(r);
    redisFree(rc);
    waitpid(fx.redis_pid, NULL, 0);
    fx.redis_pid = 0;
    redis_start(); /* loads the snapshot */
    int64_t t0 = mono_ms();

    close_all(c, tenant, "lost", 5);
    close_all(c, tenant, "saved", 5);
    expect_model(tenant, 60000);
    cr_log_info("the read model equals PostgreSQL %lld ms after the restart",
                (long long)(mono_ms() - t0));
    rc = redis_open();
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end && rexists(rc, "tally:repair");)
        sleep_ms(100);
    cr_assert(!rexists(rc, "tally:repair"), "the repair ends once the projector has it all");
    cr_assert_eq(xlen(rc, "tally:dead:0"), 0, "nothing parked");
    redisFree(rc);
    cr_assert(proc_log_has(&fx.svc[0], "relay: Redis lost data"));
    cr_assert(proc_log_has(&fx.svc[0], "relay: the repair is complete"));
    cr_assert_geq(metric_line(&fx.svc[0], "tally_relay_repairs_total{reason=\"behind\"}"), 1);
    projector_stop(&pj);
    gc_free(c);
    svc_stop_clean(0);
}

/*
 * Review #3 (scenario A, FLUSHALL): everything comes back, the tenant's reference data too;
 * tally:repair exists while the relay republishes and is gone once the projector has it all.
 */
Test(relay, a_flushed_redis_gets_every_event_back, .timeout = 150)
{
    char tenant[32];
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    proc pj;
    svc_start(0, env);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "Asia/Tokyo");
    lifecycles(c, tenant, "old", 20);
    wait_all_marked();
    redisContext *rc = redis_open();
    freeReplyObject(rcmd(rc, "FLUSHALL"));
    /* The projector starts after the flush, so the repair waits for it: it is visible. */
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end && !rexists(rc, "tally:repair");)
        sleep_ms(50);
    cr_assert(rexists(rc, "tally:repair"), "the repair is announced");
    projector_start(&pj);
    lifecycles(c, tenant, "new", 3);
    expect_model(tenant, 60000);
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end && rexists(rc, "tally:repair");)
        sleep_ms(100);
    cr_assert(!rexists(rc, "tally:repair"), "the repair ends");
    cr_assert_eq(xlen(rc, "tally:dead:0"), 0, "nothing parked");
    redisFree(rc);
    cr_assert_geq(metric_line(&fx.svc[0], "tally_relay_repairs_total{reason=\"missing\"}"), 1);
    cr_assert_eq(metric(&fx.svc[0], "tally_relay_repair_rows"), 0);
    projector_stop(&pj);
    gc_free(c);
    svc_stop_clean(0);
}

/*
 * Review #4: counting the backlog is slow (every message naming relay_backlog is held 4 s on
 * the way to PostgreSQL): events still reach the stream within 10 s.
 */
Test(relay, a_slow_backlog_count_never_holds_back_events)
{
    char tenant[32], dsn[1200], var[1300];
    evlist seen = { 0 };
    proxy px;
    proxy_start_pg(&px, fx.dsn, dsn, sizeof(dsn));
    proxy_hold(&px, "relay_backlog", 4000);
    snprintf(var, sizeof(var), "TALLY_PG_DSN=%s", dsn);
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", var, NULL };
    svc_start(0, env);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "UTC");
    expect_all_published(tenant, &seen);
    int64_t seeded = max_seq(&seen);
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end && proxy_held(&px) == 0;)
        sleep_ms(50);
    cr_assert_gt(proxy_held(&px), 0, "the relay counts its backlog");
    lifecycles(c, tenant, "slow", 1);
    int64_t t0 = mono_ms();
    free(seen.v);
    memset(&seen, 0, sizeof(seen));
    cr_assert_eq(expect_published_after(tenant, seeded, &seen), 4);
    cr_assert_lt(mono_ms() - t0, 10000, "the events waited for the count");
    cr_log_info("published %lld ms after the commands", (long long)(mono_ms() - t0));
    gc_free(c);
    svc_stop_clean(0);
    proxy_stop(&px);
    free(seen.v);
}

/*
 * Review #5: the leader loses Redis (its connection black-holed, never closed) while the
 * standby reaches it: the leader gives up the lock and the standby publishes within 30 s.
 */
Test(relay, a_leader_that_cannot_reach_redis_hands_over_to_the_standby)
{
    char tenant[32], url[2][64];
    evlist seen = { 0 };
    proxy px[2];
    for (int i = 0; i < 2; i++) {
        proxy_start(&px[i], "127.0.0.1", fx.redis_port);
        snprintf(url[i], sizeof(url[i]), "TALLY_REDIS_URL=redis://127.0.0.1:%d/0", px[i].port);
    }
    const char *env0[] = { "TALLY_RELAY_POLL_MS=200", url[0], NULL };
    const char *env1[] = { "TALLY_RELAY_POLL_MS=200", url[1], NULL };
    svc_start(0, env0);
    wait_leader(0);
    svc_start(1, env1);
    wait_leader(0);
    gc_client *c = gc_new_port(fx.svc[1].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "UTC");
    expect_all_published(tenant, &seen);
    int64_t seeded = max_seq(&seen);

    proxy_stall(&px[0]);
    int64_t t0 = mono_ms();
    lifecycles(c, tenant, "stranded", 1);
    free(seen.v);
    memset(&seen, 0, sizeof(seen));
    cr_assert_eq(expect_published_after(tenant, seeded, &seen), 4);
    cr_log_info("published through the standby %lld ms after the leader lost Redis",
                (long long)(mono_ms() - t0));
    wait_leader(1);
    cr_assert(proc_log_has(&fx.svc[0], "relay: giving up the leadership"));
    gc_free(c);
    proxy_stop(&px[0]);
    proxy_stop(&px[1]);
    free(seen.v);
}

/*
 * Review #6: the leader's host vanishes without closing its PostgreSQL connection (the proxy
 * stops forwarding both ways): the server ends the orphaned session and the standby leads
 * within 30 s.
 */
Test(relay, an_orphaned_leader_session_frees_the_lock)
{
    char dsn[1200], var[1300];
    proxy px;
    proxy_start_pg(&px, fx.dsn, dsn, sizeof(dsn));
    snprintf(var, sizeof(var), "TALLY_PG_DSN=%s", dsn);
    const char *env0[] = { "TALLY_RELAY_POLL_MS=200", var, NULL };
    const char *env1[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    svc_start(0, env0);
    wait_leader(0);
    svc_start(1, env1);
    wait_leader(0);
    proxy_stall(&px);
    int64_t t0 = mono_ms();
    wait_leader(1);
    cr_log_info("the standby led %lld ms after the leader's connection went silent",
                (long long)(mono_ms() - t0));
    svc_kill(0);
    proxy_stop(&px);
}

/*
 * Review #7: a row this build cannot pack (an unknown type, as a newer writer leaves it) holds
 * back the later events of its complaint; other complaints keep flowing.
 */
Test(relay, an_unpackable_row_holds_back_its_complaint)
{
    char tenant[32], sql[512];
    evlist seen = { 0 };
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    svc_start(0, env);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "UTC");
    Tally__V1__CreateComplaintRequest cr = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    cr.tenant_id = tenant;
    cr.idempotency_key = "x";
    cr.category_id = "c1";
    cr.priority = TALLY__V1__PRIORITY__PRIORITY_LOW;
    cr.title = "Broken";
    cr.customer_id = "cust-9";
    gc_result r;
    cr_assert_eq(call(c, CMD("CreateComplaint"), &cr.base, &r), 0, "%s", r.details);
    Tally__V1__CreateComplaintReply *rep =
        tally__v1__create_complaint_reply__unpack(NULL, r.len, r.data);
    gc_result_release(&r);
    cr_assert(rep);
    int64_t x = rep->complaint_id;
    tally__v1__create_complaint_reply__free_unpacked(rep, NULL);
    expect_all_published(tenant, &seen);

    PGconn *pg = pg_open(fx.dsn);
    snprintf(sql, sizeof(sql),
             "INSERT INTO events (tenant_id, complaint_id, version, type, occurred_at, local_day,"
             " payload) VALUES ('%s', %lld, 2, 99, now(), current_date, ''::bytea)",
             tenant, (long long)x);
    pg_ok(pg, sql);
    snprintf(sql, sizeof(sql), "UPDATE complaints SET version = 2 WHERE complaint_id = %lld",
             (long long)x);
    pg_ok(pg, sql);
    Tally__V1__ChangeStatusRequest ch = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    ch.tenant_id = tenant;
    ch.complaint_id = x;
    ch.actor = "a1";
    ch.status = TALLY__V1__STATUS__STATUS_RESOLVED;
    ch.expected_version = 2;
    cr_assert_eq(call(c, CMD("ChangeStatus"), &ch.base, &r), 0, "%s", r.details);
    gc_result_release(&r);
    lifecycles(c, tenant, "others", 2); /* committed after X's v3: published past it */

    /* Every row but X's v2 and v3 arrives; the relay says two rows are held. */
    redisContext *rc = redis_open();
    evlist table = { 0 };
    table_events(tenant, 0, &table);
    int64_t others_last = table.v[table.n - 1].seq;
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end && max_seq(&seen) < others_last;)
        stream_read(rc, tenant, &seen), sleep_ms(100);
    cr_assert_eq(max_seq(&seen), others_last, "other complaints flow");
    for (size_t i = 0; i < seen.n; i++)
        cr_assert(seen.v[i].complaint != x || seen.v[i].version == 1,
                  "complaint %lld: version %lld published while version 2 is not", (long long)x,
                  (long long)seen.v[i].version);
    cr_assert_eq(metric(&fx.svc[0], "tally_relay_unpublishable_rows"), 2);
    PGresult *res = PQexec(pg, "SELECT count(*) FROM events WHERE published_at IS NULL");
    cr_assert_eq(atol(PQgetvalue(res, 0, 0)), 2, "v2 and v3 wait");
    PQclear(res);
    PQfinish(pg);
    redisFree(rc);
    free(table.v);
    gc_free(c);
    svc_stop_clean(0);
    free(seen.v);
}

/* tally:wm's field of partition 0 (0 while absent). */
static long long watermark(redisContext *c)
{
    redisReply *r = rcmd(c, "HGET tally:wm 0");
    long long w = r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return w;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Watermark entries: once tally:wm passes a time taken after a command returned, that command's
 * events are in the read model; on an idle system the watermark keeps advancing; a watermark
 * entry follows the events committed before its time on the stream.
 */
Test(relay, the_watermark_passes_every_event_committed_before_it)
{
    char tenant[32];
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    proc pj;
    svc_start(0, env);
    projector_start(&pj);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "UTC");
    lifecycles(c, tenant, "wm", 5);
    int64_t committed = wall_ms(); /* every event above committed before this */
    redisContext *rc = redis_open();
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end && watermark(rc) < committed;)
        sleep_ms(50);
    cr_assert_geq(watermark(rc), committed, "the watermark passes the commits");
    char diff[512];
    cr_assert_eq(model_diff(rc, tenant, diff, sizeof(diff)), 0, "complete up to it: %s", diff);

    /* Idle: it keeps moving. */
    int64_t later = wall_ms() + 1000;
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end && watermark(rc) < later;)
        sleep_ms(50);
    cr_assert_geq(watermark(rc), later, "an idle system's watermark advances");

    /* On the stream: the last event entry comes before a watermark entry later than its commit. */
    redisReply *r = rcmd(rc, "XREVRANGE tally:events:0 + - COUNT 1000");
    cr_assert_eq(r->type, REDIS_REPLY_ARRAY);
    bool wm_seen = false;
    for (size_t i = 0; i < r->elements && !wm_seen; i++)
        wm_seen = strcmp(r->element[i]->element[1]->element[0]->str, "w") == 0;
    cr_assert(wm_seen, "watermark entries are on the stream");
    freeReplyObject(r);
    cr_assert_eq(xlen(rc, "tally:dead:0"), 0, "watermark entries are not parked");
    redisFree(rc);
    projector_stop(&pj);
    gc_free(c);
    svc_stop_clean(0);
}

/*
 * The projector's report of entries trimmed before it applied them (tally:repair:request, Unix
 * ms): the relay takes it and republishes what it published since then, less a margin; the
 * read model stays equal to PostgreSQL (duplicates are dropped by version).
 */
Test(relay, a_report_of_trimmed_entries_republishes_them)
{
    char tenant[32], ms[24];
    const char *env[] = { "TALLY_RELAY_POLL_MS=200", NULL };
    proc pj;
    svc_start(0, env);
    projector_start(&pj);
    gc_client *c = gc_new_port(fx.svc[0].grpc_port);
    fx_seed_tenant(c, fx_tenant(tenant, sizeof(tenant)), "UTC");
    lifecycles(c, tenant, "trimmed", 5);
    expect_model(tenant, WAIT_MS);
    long before = metric(&fx.svc[0], "tally_relay_published_total");
    redisContext *rc = redis_open();
    snprintf(ms, sizeof(ms), "%lld", (long long)wall_ms());
    freeReplyObject(rcmd(rc, "SET tally:repair:request %s", ms));
    for (int64_t end = mono_ms() + WAIT_MS; mono_ms() < end && rexists(rc, "tally:repair:request");)
        sleep_ms(50);
    cr_assert(!rexists(rc, "tally:repair:request"), "the relay takes the request");
    for (int64_t end = mono_ms() + WAIT_MS;; sleep_ms(100)) {
        if (metric_line(&fx.svc[0], "tally_relay_repairs_total{reason=\"trimmed\"}") >= 1 &&
            !rexists(rc, "tally:repair"))
            break;
        cr_assert_lt(mono_ms(), end, "the repair never ended");
    }
    /* Everything of the last minute and more went out again: 5 + 20 rows at least. */
    cr_assert_geq(metric(&fx.svc[0], "tally_relay_published_total"), before + 25);
    lifecycles(c, tenant, "after", 1);
    expect_model(tenant, WAIT_MS);
    cr_assert_eq(xlen(rc, "tally:dead:0"), 0, "nothing parked");
    redisFree(rc);
    projector_stop(&pj);
    gc_free(c);
    svc_stop_clean(0);
}
