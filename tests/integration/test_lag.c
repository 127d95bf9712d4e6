/*
 * `tally lag` and the projector's per-partition lag gauges (common/lag.h) against a real Redis
 * (and PostgreSQL): what they report must be exactly what the test put on the streams.
 *
 * - lag_reports_the_stream_and_the_metrics_agree: with no projector running, a stream of K
 *   entries held by a consumer of the test's own (pending), N recorded events and two more
 *   entries (undelivered), three dead letters, a tenant with two parked complaints and a
 *   watermark a minute old: `tally lag --json` gives the exact length, undelivered and pending
 *   counts, the first held entry as the oldest unapplied (as old as the test waited), the
 *   watermark and its age, the dead letters and the parked count; with an undelivered entry
 *   deleted (Redis's lag is then null) the undelivered entries are counted instead. The
 *   projector started, it applies every event (each tenant's events_applied is the model's),
 *   nothing is undelivered, the K held entries still pending, and its gauges agree with
 *   `tally lag`; once they are acked, both say 0 pending and nothing unapplied.
 * - lag_reads_the_relay_backlog_and_the_tenants_from_postgresql: unpublished rows of the
 *   events table are the relay backlog, in all, per tenant and per partition, with the oldest
 *   row's time; the tenants come from the tenants table (also those without a key in Redis);
 *   --tenant limits the rows.
 * - lag_fails_clearly_without_its_stores: Redis or PostgreSQL unreachable exits 1 naming it;
 *   usage errors exit 2.
 * - damaged_keys_are_said_where_they_are: a tally:wm of the wrong type is an unknown watermark,
 *   a tenant's key of the wrong type is in that tenant's row (exit 0); a stream of the wrong
 *   type fails the read (exit 1), naming the partition and the error.
 */
#include "kv.h"
#include "lag.h"
#include "pgdb.h"
#include "pjfix.h"
#include "stream.h"
#include "tclock.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELD       4   /* entries read by the test's own consumer and never acked by it */
#define EVENTS     300 /* recorded events after them */
#define EXTRA      2   /* entries after the events (one is deleted later) */
#define DEAD       3
#define WAITED_MS  1500
#define SAMPLE_MS  5000 /* the projector's sampling period (consumer.c) */
#define TALLY_WAIT 30000

static pjf_rig R;
static pgdb D;

static void init(void)
{
    pjf_redis_start(&R, NULL);
}

static void fini(void)
{
    pjf_release(&R);
    pgdb_drop(&D);
}

TestSuite(lag, .init = init, .fini = fini, .timeout = 150);

/* ---- running tally ------------------------------------------------------------------------- */

/*
 * Runs `tally lag` with the arguments up to NULL against the rig's Redis, with no inherited
 * TALLY_* variable; its stdout (sent to stderr, which proc captures) in *out (caller frees).
 * Returns the exit status.
 */
static int tally_lag(char **out, ...)
{
    const char *head[] = { "lag", NULL };
    va_list ap;
    va_start(ap, out);
    int rc = proc_run_tally(out, R.redis.port, TALLY_WAIT, head, ap);
    va_end(ap);
    return rc;
}

/* `tally lag --json` with more arguments (up to 4), asserting it exits 0. */
static char *lag_json(const char *a1, const char *a2, const char *a3, const char *a4)
{
    char *out;
    int rc = tally_lag(&out, "--json", a1, a2, a3, a4, NULL);
    cr_assert_eq(rc, 0, "tally lag --json exited %d: %s", rc, out);
    cr_assert_eq(out[0], '{', "not a JSON object: %s", out);
    return out;
}

/*
 * The flat JSON object of json that starts with marker (e.g. {"partition":0,), as a malloc'd
 * string; asserts it is there.
 */
static char *object(const char *json, const char *marker)
{
    const char *at = strstr(json, marker);
    cr_assert(at, "no %s in %s", marker, json);
    size_t n = strcspn(at, "}");
    char *o = strndup(at, n + 1);
    cr_assert(o);
    return o;
}

/* The integer field name of object o; INT64_MIN for null. Asserts it is there. */
static int64_t field(const char *o, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":", name);
    const char *at = strstr(o, key);
    cr_assert(at, "no field %s in %s", name, o);
    at += strlen(key);
    return strncmp(at, "null", 4) == 0 ? INT64_MIN : strtoll(at, NULL, 10);
}

static bool flag(const char *o, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":true", name);
    return strstr(o, key) != NULL;
}

/* Field name of the object of partition 0 in `tally lag --json`'s output json. */
static int64_t part0(const char *json, const char *name)
{
    char *o = object(json, "{\"partition\":0,");
    int64_t v = field(o, name);
    free(o);
    return v;
}

static int64_t tenant_field(const char *json, const char *tenant, const char *name)
{
    char marker[96];
    snprintf(marker, sizeof(marker), "{\"tenant\":\"%s\"", tenant);
    char *o = object(json, marker);
    int64_t v = field(o, name);
    free(o);
    return v;
}

/* ---- Redis --------------------------------------------------------------------------------- */

static void run(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    freeReplyObject(rsv_vmust(R.rc, fmt, ap));
    va_end(ap);
}

/* XADDs an entry that is no event (field w, as the relay's watermark entries); its id. */
static char *add_marker(void)
{
    redisReply *r = rsv_must(R.rc, "XADD %s * w 1", EV_STREAM);
    char *id = strdup(r->str);
    freeReplyObject(r);
    return id;
}

static double metric0(const char *name)
{
    char series[128];
    snprintf(series, sizeof(series), "%s{partition=\"0\"}", name);
    return pjf_metric(&R, 0, series);
}

/* ---- the stream and the metrics ------------------------------------------------------------ */

Test(lag, lag_reports_the_stream_and_the_metrics_agree)
{
    pjf_generate(&R, 77, 2, EVENTS, 60);
    R.model = ev_model_new(&R.hist, NULL);
    run("XGROUP CREATE %s %s 0 MKSTREAM", EV_STREAM, STREAM_GROUP);
    char *first = add_marker();
    int64_t t0 = now_mono_ms(); /* after the XADD, which a loaded machine may delay */
    for (int i = 1; i < HELD; i++)
        free(add_marker());
    run("XREADGROUP GROUP %s held COUNT %d STREAMS %s >", STREAM_GROUP, HELD, EV_STREAM);
    size_t n;
    size_t *order = pjf_order(&R, EV_IN_ORDER, 1, &n);
    cr_assert_eq(n, EVENTS);
    pjf_add_range(&R, order, 0, n);
    char *extra = add_marker();
    free(add_marker());
    for (int i = 0; i < DEAD; i++)
        run("XADD %s * e x reason test id 0-%d tenant nobody complaint 1 version 1", EV_DEAD,
            i + 1);
    run("HSET {t:parkonly}:parked 11 gap 12 gap");
    int64_t wm = now_wall_ms() - 60000;
    run("HSET %s 0 %" PRId64, STREAM_WM_KEY, wm);
    tclock_sleep_ms(WAITED_MS);
    int64_t waited = now_mono_ms() - t0;

    char *j = lag_json(NULL, NULL, NULL, NULL);
    cr_expect_eq(part0(j, "length"), HELD + EVENTS + EXTRA);
    cr_expect_eq(part0(j, "undelivered"), EVENTS + EXTRA);
    cr_expect_eq(part0(j, "pending"), HELD);
    kv_id id;
    cr_assert(kv_id_parse(first, &id));
    cr_expect_eq(part0(j, "oldest_unapplied_ms"), (int64_t)id.ms, "the first held entry");
    cr_expect_geq(part0(j, "oldest_unapplied_age_ms"), waited - 50,
                  "as old as the test waited (%" PRId64 " ms; Redis's clock)", waited);
    cr_expect_eq(part0(j, "watermark_ms"), wm);
    cr_expect_geq(part0(j, "watermark_age_ms"), 60000);
    cr_expect_eq(part0(j, "dead_letters"), DEAD);
    cr_expect_eq(part0(j, "relay_backlog"), INT64_MIN, "unknown without PostgreSQL");
    cr_expect(strstr(j, "\"relay_backlog\":null,\"tenants_from\":\"scan\""), "%s", j);
    cr_expect_eq(tenant_field(j, "parkonly", "parked"), 2);
    cr_expect_eq(tenant_field(j, "parkonly", "partition"), 0);
    cr_expect_eq(tenant_field(j, "parkonly", "events_applied"), 0);
    char *o = object(j, "{\"partition\":0,");
    cr_expect(!flag(o, "undelivered_counted"), "Redis knew the lag: %s", o);
    free(o);
    free(j);

    /* Two partitions: the second has no stream; the tenant's partition is FNV-1a's. */
    j = lag_json("--partitions", "2", NULL, NULL);
    o = object(j, "{\"partition\":1,");
    cr_expect(!flag(o, "stream") && field(o, "length") == 0, "%s", o);
    free(o);
    cr_expect_eq(tenant_field(j, "parkonly", "partition"), stream_partition("parkonly", 2));
    free(j);

    /* An undelivered entry deleted: Redis's lag is null, the entries are counted. */
    run("XDEL %s %s", EV_STREAM, extra);
    j = lag_json(NULL, NULL, NULL, NULL);
    o = object(j, "{\"partition\":0,");
    cr_expect(flag(o, "undelivered_counted"), "%s", o);
    cr_expect_eq(field(o, "undelivered"), EVENTS + EXTRA - 1, "%s", o);
    cr_expect(!flag(o, "undelivered_at_least"), "%s", o);
    cr_expect_eq(field(o, "length"), HELD + EVENTS + EXTRA - 1);
    free(o);
    free(j);

    /* The projector applies everything but the held entries (never reclaimed here). */
    static const char *const env[] = { "TALLY_PROJECTOR_CLAIM_IDLE_MS=3600000",
                                       "TALLY_PROJECTOR_BLOCK_MS=100", NULL };
    pjf_start(&R, 0, 0, env);
    for (int64_t until = now_mono_ms() + PJF_WAIT_MS;; tclock_sleep_ms(200)) {
        pjf_check_alive(&R);
        j = lag_json(NULL, NULL, NULL, NULL);
        bool done = part0(j, "undelivered") == 0;
        for (int t = 0; done && t < R.hist.ntenants; t++)
            done = tenant_field(j, R.hist.tenants[t], "events_applied") ==
                   ev_model_events(R.model, R.hist.tenants[t]);
        free(j);
        if (done)
            break;
        cr_assert_lt(now_mono_ms(), until, "the projector did not apply the events");
    }
    /* Its next sample sees the same stream (within SAMPLE_MS). */
    for (int64_t until = now_mono_ms() + 4 * SAMPLE_MS;
         metric0("tally_projector_partition_undelivered") != 0 ||
         metric0("tally_projector_partition_pending") != HELD;
         tclock_sleep_ms(200))
        cr_assert_lt(now_mono_ms(), until, "the projector's gauges did not reach the stream");
    j = lag_json(NULL, NULL, NULL, NULL);
    cr_expect_eq(part0(j, "undelivered"), 0);
    cr_expect_eq(part0(j, "pending"), HELD);
    cr_expect_eq(part0(j, "oldest_unapplied_ms"), (int64_t)id.ms);
    cr_expect_eq(metric0("tally_projector_partition_stream_length"), part0(j, "length"));
    cr_expect_eq(metric0("tally_projector_partition_pending"), part0(j, "pending"));
    cr_expect_eq(metric0("tally_projector_partition_dead_letters"), part0(j, "dead_letters"));
    cr_expect_eq(pjf_metric(&R, 0, "tally_projector_stream_pending"), HELD, "the old total");
    cr_expect_eq(pjf_metric(&R, 0, "tally_projector_dead_letters"), DEAD, "the old total");
    /* Ages: the gauge was set at the sample, up to SAMPLE_MS before tally lag read. */
    double age = metric0("tally_projector_partition_oldest_unapplied_age_seconds");
    int64_t lag_age = part0(j, "oldest_unapplied_age_ms") / 1000;
    cr_expect(age <= lag_age && age >= lag_age - SAMPLE_MS / 1000 - 1,
              "oldest unapplied: the gauge says %g s, tally lag %" PRId64 " s", age, lag_age);
    cr_expect_geq(age, 1, "the held entries are older than a second");
    age = metric0("tally_projector_partition_watermark_age_seconds");
    lag_age = part0(j, "watermark_age_ms") / 1000;
    cr_expect(age <= lag_age && age >= lag_age - SAMPLE_MS / 1000 - 1,
              "watermark: the gauge says %g s, tally lag %" PRId64 " s", age, lag_age);
    free(j);

    /* The held entries acked: nothing is left to apply, and both say so. */
    redisReply *p = rsv_must(R.rc, "XPENDING %s %s - + %d held", EV_STREAM, STREAM_GROUP, HELD);
    cr_assert_eq(p->elements, HELD);
    for (size_t i = 0; i < p->elements; i++)
        run("XACK %s %s %s", EV_STREAM, STREAM_GROUP, p->element[i]->element[0]->str);
    freeReplyObject(p);
    for (int64_t until = now_mono_ms() + 4 * SAMPLE_MS;
         metric0("tally_projector_partition_pending") != 0; tclock_sleep_ms(200))
        cr_assert_lt(now_mono_ms(), until, "the projector's pending gauge stayed above 0");
    j = lag_json(NULL, NULL, NULL, NULL);
    cr_expect_eq(part0(j, "undelivered"), 0);
    cr_expect_eq(part0(j, "pending"), 0);
    cr_expect_eq(part0(j, "oldest_unapplied_ms"), INT64_MIN, "nothing unapplied: %s", j);
    cr_expect_eq(part0(j, "oldest_unapplied_age_ms"), 0);
    cr_expect_eq(metric0("tally_projector_partition_oldest_unapplied_age_seconds"), 0);
    cr_expect_eq(metric0("tally_projector_partition_undelivered"), 0);
    cr_expect_eq(metric0("tally_projector_partition_stream_length"), part0(j, "length"));
    for (int t = 0; t < R.hist.ntenants; t++)
        cr_expect_gt(tenant_field(j, R.hist.tenants[t], "applied_ms"), 0);
    free(j);

    /* The table says the same to a person. */
    char *text;
    cr_expect_eq(tally_lag(&text, "--tenant", "parkonly", NULL), 0);
    cr_expect(strstr(text, "partition  length  undelivered  pending") && strstr(text, "parkonly"),
              "%s", text);
    free(text);
    free(first);
    free(extra);
    pjf_stop(&R, 0, SIGTERM);
}

/* ---- PostgreSQL ---------------------------------------------------------------------------- */

Test(lag, lag_reads_the_relay_backlog_and_the_tenants_from_postgresql)
{
    pgdb_create(&D, "lag");
    pgdb_migrate(&D);
    PGconn *pg = pgdb_connect(&D);
    PQclear(pgdb_sql(pg,
                     "INSERT INTO tenants (tenant_id, name, time_zone) VALUES"
                     " ('t1', 'T1', 'UTC'), ('t2', 'T2', 'UTC'), ('t3', 'T3', 'UTC')",
                     0, NULL));
    /* t1: 5 unpublished, 3 published; t2: 2 unpublished, the oldest of all recorded at a known
       time; t3: none. */
    PQclear(pgdb_sql(pg,
                     "INSERT INTO events (tenant_id, type, occurred_at, local_day, payload)"
                     " SELECT 't1', 1, now(), current_date, '\\x00' FROM generate_series(1, 8)",
                     0, NULL));
    PQclear(pgdb_sql(pg, "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox LIMIT 3)", 0,
                     NULL)); /* as the relay marks rows published */
    PQclear(pgdb_sql(pg,
                     "INSERT INTO events (tenant_id, type, occurred_at, local_day, payload,"
                     " recorded_at) SELECT 't2', 1, now(), current_date, '\\x00',"
                     " CASE WHEN i = 1 THEN timestamptz '2026-01-02 03:04:05.678+00'"
                     " ELSE now() END FROM generate_series(1, 2) i",
                     0, NULL));
    PQfinish(pg);
    run("HSET {t:t1}:parked 5 gap");

    char *j = lag_json("--pg-dsn", D.dsn, "--partitions", "2");
    cr_expect(
        strstr(j, "\"relay_backlog\":{\"rows\":7,\"more\":false,\"oldest_ms\":1767323045678}"),
        "%s", j);
    cr_expect(strstr(j, "\"tenants_from\":\"postgresql\",\"tenants_complete\":true"), "%s", j);
    cr_expect_eq(tenant_field(j, "t1", "relay_backlog"), 5);
    cr_expect_eq(tenant_field(j, "t2", "relay_backlog"), 2);
    cr_expect_eq(tenant_field(j, "t3", "relay_backlog"), 0,
                 "a tenant without Redis keys is listed");
    cr_expect_eq(tenant_field(j, "t1", "parked"), 1);
    int64_t per[2] = { 0, 0 };
    per[stream_partition("t1", 2)] += 5;
    per[stream_partition("t2", 2)] += 2;
    char *o = object(j, "{\"partition\":1,");
    cr_expect_eq(field(o, "relay_backlog"), per[1], "%s", o);
    free(o);
    cr_expect_eq(part0(j, "relay_backlog"), per[0]);
    free(j);

    j = lag_json("--pg-dsn", D.dsn, "--tenant", "t2");
    cr_expect(strstr(j, "\"tenants\":[{\"tenant\":\"t2\"") && !strstr(j, "\"t1\""), "%s", j);
    cr_expect_eq(tenant_field(j, "t2", "relay_backlog"), 2);
    free(j);
}

/* ---- failures ------------------------------------------------------------------------------ */

Test(lag, lag_fails_clearly_without_its_stores)
{
    char *out, url[64], dsn[128];
    int port = proc_free_port();
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    cr_expect_eq(tally_lag(&out, "--redis-url", url, NULL), 1, "Redis unreachable");
    cr_expect(strstr(out, "tally lag: Redis: ") && strstr(out, "Connection refused"), "%s", out);
    free(out);

    snprintf(dsn, sizeof(dsn), "host=127.0.0.1 port=%d dbname=x connect_timeout=2", port);
    cr_expect_eq(tally_lag(&out, "--pg-dsn", dsn, NULL), 1, "PostgreSQL unreachable");
    cr_expect(strstr(out, "tally lag: PostgreSQL: "), "%s", out);
    free(out);

    cr_expect_eq(tally_lag(&out, "--partitions", "0", NULL), 2);
    cr_expect(strstr(out, "--partitions"), "%s", out);
    free(out);
    cr_expect_eq(tally_lag(&out, "--tenant", "no spaces", NULL), 2);
    free(out);
}

Test(lag, damaged_keys_are_said_where_they_are)
{
    char *out;
    run("XGROUP CREATE %s %s 0 MKSTREAM", EV_STREAM, STREAM_GROUP);
    run("SET %s not-a-hash", STREAM_WM_KEY);
    run("SET {t:bad}:parked not-a-hash");
    char *j = lag_json(NULL, NULL, NULL, NULL);
    cr_expect_eq(part0(j, "watermark_ms"), INT64_MIN, "a damaged tally:wm is unknown: %s", j);
    char *o = object(j, "{\"tenant\":\"bad\"");
    cr_expect(strstr(o, "\"error\":\"WRONGTYPE"), "the tenant's row names its damage: %s", o);
    free(o);
    free(j);
    run("DEL %s", EV_STREAM);
    run("SET %s not-a-stream", EV_STREAM);
    cr_expect_eq(tally_lag(&out, NULL), 1, "a damaged stream fails the read");
    cr_expect(strstr(out, "tally lag: Redis, partition 0: WRONGTYPE"), "%s", out);
    free(out);
}
