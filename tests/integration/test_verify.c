/*
 * verify (common/verify.h, `tally verify`, the projector's periodic run) against a real system
 * (tests/support/system.h): the real command-svc writes, its relay publishes, the real projector
 * builds the read model, and verify recomputes it from PostgreSQL.
 *
 * The history is a mix: three tenants in New York, Kathmandu (+5:45) and Kiritimati (+14) with
 * live creates, assignments, reassignments, unassignments, IN_PROGRESS, resolutions (assigned
 * and not), reopens and re-resolutions, an assignment of a resolved complaint, closes and a
 * rename; and a fourth tenant (Adelaide) imported by `tally-sim seed` with 50 days of histories.
 *
 * - a_clean_system_verifies_clean: no difference; the comparison is not vacuous (hundreds of
 *   fields, resolutions and reopens in the data); `tally verify` exits 0, and 2 for an unknown
 *   tenant or a bad option.
 * - each_corruption_is_found: a counter changed, a key deleted, a day field HINCRBY'd, zset
 *   members removed, a name changed, a histogram bucket and an applied version altered, a key of
 *   the wrong type, the applied versions of a tenant deleted (a lost read model): each is
 *   reported, naming its view, key and field with the expected and found values, and
 *   `tally verify` exits 1; restored, the system verifies clean again.
 * - events_in_flight_are_not_drift: with the projector stopped, new commands leave the views
 *   exact (compared as of the applied versions): only the lagging applied versions (view cv)
 *   differ; the projector back, it is clean. A parked complaint is counted as parked, not as
 *   drift.
 * - the_projector_reports_drift_in_its_metrics: TALLY_PROJECTOR_VERIFY_EVERY_S=1; drift 0 with
 *   runs counted, then > 0 after a corruption, and the difference is in its log.
 */
#include "calls.h"
#include "cfg.h"
#include "events.h"
#include "fixture.h"
#include "kv.h"
#include "pgdb.h"
#include "pgx.h"
#include "system.h"
#include "tally/v1/commands.pb-c.h"
#include "verify.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDLE_MS   180000 /* a cap, not a timing assertion: the pipeline drains long before */
#define MAX_DIFFS 512

static sys_system S;
static int64_t versions[4096]; /* complaint id -> its version (ids of the test are small) */

static void teardown(void)
{
    sys_stop(&S);
}

/* ---- commands ------------------------------------------------------------------------------ */

static int64_t create(const char *tenant, const char *cat, int prio)
{
    static int n;
    char key[32];
    int64_t id;
    snprintf(key, sizeof(key), "k%d", ++n);
    int64_t version = call_create(S.cmd, tenant, key, cat, prio, &id);
    cr_assert_lt(id, 4096);
    versions[id] = version;
    return id;
}

static void assign(const char *tenant, int64_t id, const char *agent)
{
    versions[id] = call_assign(S.cmd, tenant, id, versions[id], agent);
}

static void move(const char *tenant, int64_t id, int to)
{
    versions[id] = call_move(S.cmd, tenant, id, versions[id], to, "test");
}

enum { OPEN = 1, IN_PROGRESS = 2, RESOLVED = 3, CLOSED = 4 };

/* Twelve lives of complaints, each kind twice, in the two categories and all priorities. */
static void live_mix(const char *tenant)
{
    for (int i = 0; i < 12; i++) {
        int64_t id = create(tenant, i % 2 ? "c2" : "c1", i % 4 + 1);
        switch (i % 6) {
        case 0: /* left open */
            break;
        case 1: /* assigned, in progress, resolved */
            assign(tenant, id, "a1");
            move(tenant, id, IN_PROGRESS);
            move(tenant, id, RESOLVED);
            break;
        case 2: /* resolved, reopened, reassigned, resolved again */
            assign(tenant, id, "a2");
            move(tenant, id, RESOLVED);
            move(tenant, id, OPEN);
            assign(tenant, id, "a1");
            move(tenant, id, RESOLVED);
            break;
        case 3: /* resolved unassigned, closed */
            move(tenant, id, RESOLVED);
            move(tenant, id, CLOSED);
            break;
        case 4: /* assigned, unassigned, in progress */
            assign(tenant, id, "a2");
            assign(tenant, id, "");
            move(tenant, id, IN_PROGRESS);
            break;
        default: /* resolved by a1, assigned to a2 while resolved, reopened */
            assign(tenant, id, "a1");
            move(tenant, id, RESOLVED);
            assign(tenant, id, "a2");
            move(tenant, id, OPEN);
            break;
        }
    }
}

static void rename_category(const char *tenant, const char *id, const char *name)
{
    Tally__V1__PutCategoryRequest q = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    q.tenant_id = (char *)tenant;
    q.category_id = (char *)id;
    q.name = (char *)name;
    call_free(call_ok(S.cmd, GC_COMMANDS("PutCategory"), &q.base,
                      &tally__v1__put_category_reply__descriptor, 10000));
}

static void mix(void)
{
    const char *const tenants[][2] = { { "ny", "America/New_York" },
                                       { "ktm", "Asia/Kathmandu" },
                                       { "kir", "Pacific/Kiritimati" } };
    for (int i = 0; i < 3; i++) {
        fx_seed_tenant(S.cmd, tenants[i][0], tenants[i][1]);
        live_mix(tenants[i][0]);
    }
    rename_category("ny", "c1", "Renamed");
    sys_import_history(&S, "imp:Australia/Adelaide", 400, 50); /* 50 days of histories */
}

/* ---- the pipeline and verify ---------------------------------------------------------------- */

static redisContext *redis(void)
{
    return sys_redis_connect(&S);
}

static int64_t sql_int(const char *q)
{
    return pgdb_int(S.pg, q, 0, NULL);
}

static void wait_idle(void)
{
    sys_wait_idle(&S, IDLE_MS);
}

typedef struct found_diff {
    char tenant[16], view[16], key[96], field[64], expected[64], found[64];
    bool has_expected, has_found;
} found_diff;

typedef struct diffs {
    found_diff d[MAX_DIFFS];
    int n;
} diffs;

static void collect(const verify_diff *d, void *arg)
{
    diffs *ds = arg;
    if (ds->n == MAX_DIFFS)
        return;
    found_diff *f = &ds->d[ds->n++];
    snprintf(f->tenant, sizeof(f->tenant), "%s", d->tenant);
    snprintf(f->view, sizeof(f->view), "%s", d->view);
    snprintf(f->key, sizeof(f->key), "%s", d->key);
    snprintf(f->field, sizeof(f->field), "%s", d->field);
    snprintf(f->expected, sizeof(f->expected), "%s", d->expected ? d->expected : "");
    snprintf(f->found, sizeof(f->found), "%s", d->found ? d->found : "");
    f->has_expected = d->expected != NULL;
    f->has_found = d->found != NULL;
}

/* Runs the engine over every tenant; the differences into *ds (allocated), stats into *st. */
static diffs *run_verify(int settle_ms, verify_stats *st)
{
    cfg_redis rc = { .host = "127.0.0.1", .port = S.redis.port };
    pgx_conn *pg = pgx_new(S.db.dsn, "test-verify", NULL, 0, 0);
    kv_conn *kv = kv_new(&rc, 10000);
    diffs *ds = calloc(1, sizeof(*ds));
    cr_assert(pg && kv && ds);
    verify_options o = { .days = VERIFY_DEFAULT_DAYS, .settle_ms = settle_ms };
    char err[512];
    int r = verify_run(pg, kv, &o, collect, ds, st, err, sizeof(err));
    pgx_free(pg);
    kv_free(kv);
    cr_assert_eq(r, 0, "verify_run: %s", err);
    cr_assert_eq(st->diffs, ds->n < MAX_DIFFS ? ds->n : st->diffs, "every difference reported");
    return ds;
}

static void print_diffs(const diffs *ds)
{
    for (int i = 0; i < ds->n && i < 20; i++)
        fprintf(stderr, "  %s %s %s %s: expected %s, found %s\n", ds->d[i].view, ds->d[i].tenant,
                ds->d[i].key, ds->d[i].field, ds->d[i].has_expected ? ds->d[i].expected : "-",
                ds->d[i].has_found ? ds->d[i].found : "-");
}

/* A verify that must find no difference; its statistics. */
static verify_stats expect_clean(void)
{
    verify_stats st;
    diffs *ds = run_verify(2000, &st);
    if (ds->n)
        print_diffs(ds);
    cr_assert_eq(ds->n, 0, "%d differences on a clean system (the first are above)", ds->n);
    free(ds);
    return st;
}

/* The `tally` client's exit status for verify with extra arguments (up to 4). */
static int tally_verify(const char *a1, const char *a2, const char *a3, const char *a4)
{
    char redis_url[64];
    snprintf(redis_url, sizeof(redis_url), "redis://127.0.0.1:%d/0", S.redis.port);
    char *argv[] = { TALLY_BIN_DIR "/tally",
                     "verify",
                     "--pg-dsn",
                     S.db.dsn,
                     "--redis-url",
                     redis_url,
                     "--settle-ms",
                     "100",
                     (char *)a1,
                     (char *)a2,
                     (char *)a3,
                     (char *)a4,
                     NULL };
    proc p;
    cr_assert_eq(proc_spawn(&p, argv, NULL, true), 0, "cannot start tally");
    int rc = proc_wait(&p, 120000);
    if (rc == -1)
        proc_stop(&p, SIGKILL, 5000);
    proc_release(&p);
    return rc;
}

/* ---- Redis helpers ------------------------------------------------------------------------- */

static redisReply *cmd(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", fmt, r ? r->str : c->errstr);
    return r;
}

static void cmd_do(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    cr_assert(r && r->type != REDIS_REPLY_ERROR, "%s: %s", fmt, r ? r->str : c->errstr);
    freeReplyObject(r);
}

/* A key's DUMP, to put it back after a corruption. */
typedef struct saved {
    char key[96];
    char *bytes;
    size_t len;
} saved;

static void save(redisContext *c, saved *s, const char *key)
{
    snprintf(s->key, sizeof(s->key), "%s", key);
    redisReply *r = cmd(c, "DUMP %s", key);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "%s does not exist", key);
    s->bytes = malloc(r->len);
    cr_assert(s->bytes);
    memcpy(s->bytes, r->str, r->len);
    s->len = r->len;
    freeReplyObject(r);
}

static void restore(redisContext *c, saved *s)
{
    cmd_do(c, "RESTORE %s 0 %b REPLACE", s->key, s->bytes, s->len);
    free(s->bytes);
}

/* key replaced by a string: verify reports one difference, for view as a whole; key restored. */
static void expect_wrong_type(redisContext *c, saved *s, const char *key, const char *view)
{
    save(c, s, key);
    cmd_do(c, "DEL %s", key);
    cmd_do(c, "SET %s x", key);
    verify_stats st;
    diffs *w = run_verify(200, &st);
    cr_assert_eq(w->n, 1, "%d differences", w->n);
    cr_expect_str_eq(w->d[0].view, view);
    cr_expect_str_eq(w->d[0].field, "");
    cr_expect(strstr(w->d[0].found, "WRONGTYPE"), "found: %s", w->d[0].found);
    free(w);
    restore(c, s);
}

/* The tenant's local today as YYYY-MM-DD (PostgreSQL's view of its time zone). */
static void today_of(const char *tenant, char out[11])
{
    char q[160];
    snprintf(q, sizeof(q),
             "SELECT (now() AT TIME ZONE time_zone)::date::text FROM tenants WHERE tenant_id = "
             "'%s'",
             tenant);
    PGresult *r = pgdb_sql(S.pg, q, 0, NULL);
    cr_assert_eq(PQntuples(r), 1);
    snprintf(out, 11, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* Exactly one difference, (view, key, field), with these values (NULL: absent). */
static void expect_one(const char *view, const char *key, const char *field, const char *expected,
                       const char *found)
{
    verify_stats st;
    diffs *ds = run_verify(200, &st);
    if (ds->n != 1)
        print_diffs(ds);
    cr_assert_eq(ds->n, 1, "%s %s %s: %d differences, want 1", view, key, field, ds->n);
    found_diff *d = &ds->d[0];
    cr_expect_str_eq(d->view, view);
    cr_expect_str_eq(d->key, key);
    cr_expect_str_eq(d->field, field);
    cr_expect_eq(d->has_expected, expected != NULL, "%s: expected present?", key);
    if (expected)
        cr_expect_str_eq(d->expected, expected, "%s %s expected", key, field);
    cr_expect_eq(d->has_found, found != NULL, "%s: found present?", key);
    if (found)
        cr_expect_str_eq(d->found, found, "%s %s found", key, field);
    free(ds);
}

/* ---- the tests ----------------------------------------------------------------------------- */

Test(verify, a_clean_system_verifies_clean, .fini = teardown)
{
    sys_start(&S, NULL);
    mix();
    wait_idle();
    /* The data is what the test claims: resolutions, reopens, imports, open complaints. */
    cr_assert_geq(sql_int("SELECT count(*) FROM status_history WHERE to_status = 3"), 100);
    cr_assert_geq(sql_int("SELECT count(*) FROM status_history WHERE from_status = 3"
                          " AND to_status = 1"),
                  6);
    cr_assert_geq(sql_int("SELECT count(*) FROM events WHERE imported"), 400);
    cr_assert_geq(sql_int("SELECT count(*) FROM complaints WHERE status IN (1, 2)"), 12);
    verify_stats st = expect_clean();
    cr_expect_eq(st.tenants, 4);
    cr_expect_gt(st.fields, 1000, "only %lld fields compared", (long long)st.fields);
    cr_expect_eq(st.parked, 0);
    cr_expect_eq(tally_verify(NULL, NULL, NULL, NULL), 0);
    cr_expect_eq(tally_verify("--tenant", "ktm", "--json", NULL), 0);
    cr_expect_eq(tally_verify("--tenant", "nobody", NULL, NULL), 2, "an unknown tenant");
    cr_expect_eq(tally_verify("--days", "0", NULL, NULL), 2, "a bad --days");
}

Test(verify, each_corruption_is_found, .fini = teardown)
{
    sys_start(&S, NULL);
    mix();
    wait_idle();
    expect_clean();
    redisContext *c = redis();
    char today[11], key[96], field[64], v[32];
    saved s;
    today_of("ny", today);

    /* A counter changed. */
    redisReply *r = cmd(c, "HGET {t:ny}:1:st 1");
    cr_assert_eq(r->type, REDIS_REPLY_STRING);
    snprintf(v, sizeof(v), "%s", r->str);
    freeReplyObject(r);
    save(c, &s, "{t:ny}:1:st");
    cmd_do(c, "HSET {t:ny}:1:st 1 999");
    expect_one("st", "{t:ny}:1:st", "1", v, "999");
    cr_expect_eq(tally_verify(NULL, NULL, NULL, NULL), 1, "drift exits 1");
    restore(c, &s);

    /* A day field HINCRBY'd: today's creations. */
    snprintf(key, sizeof(key), "{t:ny}:1:d:%.7s", today);
    snprintf(field, sizeof(field), "%.2s:c", today + 8);
    r = cmd(c, "HINCRBY %s %s 1", key, field);
    char want[32], got[32];
    snprintf(want, sizeof(want), "%lld", r->integer - 1);
    snprintf(got, sizeof(got), "%lld", r->integer);
    cr_assert_eq(r->integer, 13, "twelve live creations today in ny, and the one added");
    freeReplyObject(r);
    expect_one("d", key, field, want, got);
    cmd_do(c, "HINCRBY %s %s -1", key, field);

    /* A zset member removed: a1 from this month's leaderboard. */
    today_of("ktm", today);
    snprintf(key, sizeof(key), "{t:ktm}:1:lb:%.7s", today);
    r = cmd(c, "ZSCORE %s a1", key);
    cr_assert_eq(r->type, REDIS_REPLY_STRING, "a1 resolved in ktm this month");
    snprintf(v, sizeof(v), "%s", r->str);
    freeReplyObject(r);
    save(c, &s, key);
    cmd_do(c, "ZREM %s a1", key);
    expect_one("lb", key, "a1", v, NULL);
    restore(c, &s);

    /* A name changed (it persists past the settle delay). */
    save(c, &s, "{t:kir}:1:agents");
    cmd_do(c, "HSET {t:kir}:1:agents a1 Mallory");
    expect_one("agents", "{t:kir}:1:agents", "a1", "Agent", "Mallory");
    restore(c, &s);
    save(c, &s, "{t:ny}:1:cats");
    cmd_do(c, "HSET {t:ny}:1:cats c1 Category");
    expect_one("cats", "{t:ny}:1:cats", "c1", "Renamed", "Category");
    restore(c, &s);

    /* A histogram bucket HINCRBY'd (a bucket no resolution of today has: 239). */
    today_of("ny", today);
    snprintf(key, sizeof(key), "{t:ny}:1:hd:%s:a", today);
    cmd_do(c, "HINCRBY %s 239 1", key);
    expect_one("hd", key, "239", "0", "1");
    cmd_do(c, "HDEL %s 239", key);

    /* An agent's open assignments changed. */
    save(c, &s, "{t:ny}:1:ao");
    r = cmd(c, "HINCRBY {t:ny}:1:ao a2 5");
    snprintf(want, sizeof(want), "%lld", r->integer - 5);
    snprintf(got, sizeof(got), "%lld", r->integer);
    freeReplyObject(r);
    expect_one("ao", "{t:ny}:1:ao", "a2", want, got);
    restore(c, &s);

    /* A key of the wrong type: one difference for the key as a whole. */
    expect_wrong_type(c, &s, "{t:ny}:1:ao", "ao");
    /* reference data, which is re-read after the settle delay */
    expect_wrong_type(c, &s, "{t:kir}:1:cats", "cats");

    /* A key deleted: the open backlog of ktm; every open complaint is named. */
    int64_t open = sql_int("SELECT count(*) FROM complaints WHERE tenant_id = 'ktm'"
                           " AND status IN (1, 2)");
    save(c, &s, "{t:ktm}:1:open");
    cmd_do(c, "DEL {t:ktm}:1:open");
    verify_stats st;
    diffs *ds = run_verify(200, &st);
    cr_expect_eq(ds->n, open, "%d differences for %lld open complaints", ds->n, (long long)open);
    for (int i = 0; i < ds->n; i++) {
        cr_expect_str_eq(ds->d[i].view, "open");
        cr_expect_str_eq(ds->d[i].key, "{t:ktm}:1:open");
        cr_expect(ds->d[i].has_expected && !ds->d[i].has_found);
    }
    free(ds);
    restore(c, &s);

    /* An open complaint's detail removed. */
    r = cmd(c, "ZRANGE {t:kir}:1:open 0 0");
    cr_assert_eq(r->elements, 1);
    snprintf(field, sizeof(field), "%s", r->element[0]->str);
    freeReplyObject(r);
    r = cmd(c, "HGET {t:kir}:1:od %s", field);
    snprintf(v, sizeof(v), "%s", r->str);
    freeReplyObject(r);
    cmd_do(c, "HDEL {t:kir}:1:od %s", field);
    expect_one("od", "{t:kir}:1:od", field, v, NULL);
    cmd_do(c, "HSET {t:kir}:1:od %s %s", field, v);

    /* An applied version raised past PostgreSQL's: reported at once. */
    r = cmd(c, "HGET {t:kir}:1:cv %s", field);
    snprintf(v, sizeof(v), "%s", r->str);
    snprintf(got, sizeof(got), "%lld", strtoll(r->str, NULL, 10) + 1);
    freeReplyObject(r);
    cmd_do(c, "HSET {t:kir}:1:cv %s %s", field, got);
    expect_one("cv", "{t:kir}:1:cv", field, v, got);
    cmd_do(c, "HSET {t:kir}:1:cv %s %s", field, v);

    /* The applied versions of a tenant deleted (a lost read model): every complaint lags. */
    int64_t n = sql_int("SELECT count(*) FROM complaints WHERE tenant_id = 'imp'");
    save(c, &s, "{t:imp}:1:cv");
    cmd_do(c, "DEL {t:imp}:1:cv");
    ds = run_verify(200, &st);
    /* Every complaint lags (view cv), and the figures, as of nothing applied, all differ. */
    cr_expect_gt(st.diffs, n, "%lld differences for %lld complaints", (long long)st.diffs,
                 (long long)n);
    free(ds);
    restore(c, &s);

    expect_clean();
    redisFree(c);
}

Test(verify, events_in_flight_are_not_drift, .fini = teardown)
{
    sys_start(&S, NULL);
    fx_seed_tenant(S.cmd, "ny", "America/New_York");
    live_mix("ny");
    wait_idle();
    expect_clean();
    sys_projector_stop(&S);
    int64_t a = create("ny", "c1", 2), b = create("ny", "c2", 4);
    move("ny", a, RESOLVED);
    assign("ny", 2, "a2"); /* complaint 2 (resolved) gets a new assignee */
    verify_stats st;
    diffs *ds = run_verify(0, &st);
    cr_expect_eq(ds->n, 3, "the three complaints behind");
    for (int i = 0; i < ds->n; i++) {
        cr_expect_str_eq(ds->d[i].view, "cv", "a view compared as of the applied versions");
        int64_t id = strtoll(ds->d[i].field, NULL, 10);
        cr_expect(id == a || id == b || id == 2, "complaint %s", ds->d[i].field);
    }
    free(ds);
    sys_projector_start(&S);
    wait_idle();
    expect_clean();
    /* A parked complaint lags for good: counted as parked, not as drift. */
    redisContext *c = redis();
    cmd_do(c, "HSET {t:ny}:parked %lld test", (long long)b);
    move("ny", b, RESOLVED);
    wait_idle();
    ds = run_verify(0, &st);
    cr_expect_eq(ds->n, 0, "%d differences", ds->n);
    cr_expect_eq(st.parked, 1);
    free(ds);
    redisFree(c);
}

static double metric(const char *name)
{
    return ev_metric(S.projector.http_port, name);
}

/* Waits until the projector completed two more verify runs than now: one begun after now. */
static void wait_two_runs(void)
{
    double runs = metric("tally_projector_verify_runs_total");
    int64_t until = now_mono_ms() + IDLE_MS;
    while (metric("tally_projector_verify_runs_total") < runs + 2) {
        cr_assert_lt(now_mono_ms(), until, "the projector did not verify (errors: %g)",
                     metric("tally_projector_verify_errors_total"));
        tclock_sleep_ms(50);
    }
}

Test(verify, the_projector_reports_drift_in_its_metrics, .fini = teardown)
{
    static const char *const env[] = { "TALLY_PROJECTOR_VERIFY_EVERY_S=1",
                                       "TALLY_PROJECTOR_VERIFY_SETTLE_MS=200", NULL };
    sys_options o = { .projector_env = env };
    sys_start(&S, &o);
    fx_seed_tenant(S.cmd, "ny", "America/New_York");
    live_mix("ny");
    wait_idle();
    wait_two_runs();
    cr_expect_eq(metric("tally_projector_verify_drift"), 0);
    cr_expect_gt(metric("tally_projector_verify_last_run_timestamp_seconds"), 1.7e9);
    cr_expect_eq(metric("tally_projector_verify_errors_total"), 0);
    redisContext *c = redis();
    cmd_do(c, "HINCRBY {t:ny}:1:st 2 1");
    wait_two_runs();
    cr_expect_eq(metric("tally_projector_verify_drift"), 1);
    cr_expect(proc_log_has(&S.projector, "\"msg\":\"verify drift\""));
    cr_expect(proc_log_has(&S.projector, "\"view\":\"st\""));
    cmd_do(c, "HINCRBY {t:ny}:1:st 2 -1");
    wait_two_runs();
    cr_expect_eq(metric("tally_projector_verify_drift"), 0);
    redisFree(c);
}
