/*
 * A service process as operators see it: configuration checked at start, readiness of its
 * dependencies, and a clean drain on SIGTERM.
 */
#include "echo.pb-c.h"
#include "ev_wait.h"
#include "fixture.h"
#include "gclient.h"
#include "grpc/health/v1/health.pb-c.h"
#include "proc.h"
#include "tclock.h"
#include "version.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct batch {
    int port, n, sleep_ms;
    gc_result *rs;
} batch;

static void *run_batch(void *arg)
{
    batch *b = arg;
    gc_client *c = gc_new_port(b->port);
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.sleep_ms = (uint32_t)b->sleep_ms;
    gc_call_many(c, "/tally.test.v1.Echo/Sleep", &req.base, b->n, 30000, b->rs);
    gc_free(c);
    return NULL;
}

static long in_flight(int http_port)
{
    return (long)ev_metric(http_port, "grpc_server_calls_in_flight");
}

static void wait_in_flight(int http_port, long n)
{
    for (int i = 0; i < 500 && in_flight(http_port) < n; i++)
        tclock_sleep_ms(10);
    cr_assert_geq(in_flight(http_port), n, "calls never got in flight");
}

Test(svc, sigterm_lets_in_flight_calls_finish_then_exits_0)
{
    proc p;
    const char *env[] = { "TALLY_WORKERS=8", NULL };
    cr_assert_eq(proc_start(&p, ECHO_SVC_PATH, env), 0);
    batch b = { .port = p.grpc_port, .n = 8, .sleep_ms = 1000 };
    b.rs = calloc(8, sizeof(gc_result));
    pthread_t t;
    pthread_create(&t, NULL, run_batch, &b);
    wait_in_flight(p.http_port, 8);

    int rc = proc_stop(&p, SIGTERM, 10000);
    pthread_join(t, NULL);
    cr_assert_eq(rc, 0, "exit status %d", rc);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(b.rs[i].code, 0, "call %d: %d %s", i, b.rs[i].code, b.rs[i].details);
        gc_result_release(&b.rs[i]);
    }
    cr_assert(proc_log_has(&p, "\"msg\":\"shutting down\",\"signal\":\"SIGTERM\""));
    cr_assert(proc_log_has(&p, "\"msg\":\"stopped\""));
    free(b.rs);
    proc_release(&p);
}

Test(svc, calls_past_the_grace_period_are_cancelled_and_the_exit_is_still_clean)
{
    proc p;
    const char *env[] = { "TALLY_SHUTDOWN_GRACE_MS=300", NULL };
    cr_assert_eq(proc_start(&p, ECHO_SVC_PATH, env), 0);
    batch b = { .port = p.grpc_port, .n = 1, .sleep_ms = 2500 };
    b.rs = calloc(1, sizeof(gc_result));
    pthread_t t;
    pthread_create(&t, NULL, run_batch, &b);
    wait_in_flight(p.http_port, 1);

    int rc = proc_stop(&p, SIGTERM, 10000);
    pthread_join(t, NULL);
    cr_assert_eq(rc, 0, "exit status %d", rc);
    cr_assert_neq(b.rs[0].code, 0, "a call past the grace period succeeded");
    cr_assert_lt(b.rs[0].seconds, 2.0, "the call was not cut at the grace period");
    cr_assert(proc_log_has(&p, "grace period over, cancelling calls"));
    gc_result_release(&b.rs[0]);
    free(b.rs);
    proc_release(&p);
}

Test(svc, draining_turns_health_and_readiness_off_before_refusing_calls)
{
    proc p;
    const char *env[] = { "TALLY_SHUTDOWN_DRAIN_MS=1500", NULL };
    char body[512];
    cr_assert_eq(proc_start(&p, ECHO_SVC_PATH, env), 0);
    gc_client *c = gc_new_port(p.grpc_port);
    kill(p.pid, SIGTERM);
    tclock_sleep_ms(300);
    cr_assert_eq(proc_http_get(p.http_port, "/readyz", body, sizeof(body)), 503);
    cr_assert_not_null(strstr(body, "\"server\":\"draining\""), "%s", body);
    cr_assert_eq(proc_http_get(p.http_port, "/healthz", body, sizeof(body)), 200, "liveness stays");
    gc_result r;
    gc_call_raw(c, "/grpc.health.v1.Health/Check", "", 0, true, NULL, 2000, &r);
    cr_assert_eq(r.code, 0, "%d %s", r.code, r.details);
    cr_assert(r.len == 2 && r.data[1] == 2, "health is not NOT_SERVING while draining");
    gc_result_release(&r);
    gc_free(c);
    cr_assert_eq(proc_wait(&p, 10000), 0);
    proc_release(&p);
}

/* The next message of a Health/Watch stream: its status (1 SERVING, 2 NOT_SERVING, 3
   SERVICE_UNKNOWN), 0 when none came within wait_ms, -1 when the stream is over (st says). */
static int watch_next(gc_stream *w, int wait_ms, gc_status *st)
{
    uint8_t *data;
    size_t len;
    int rc = gc_stream_next(w, wait_ms, &data, &len, st);
    if (rc <= 0)
        return rc;
    Grpc__Health__V1__HealthCheckResponse *r =
        grpc__health__v1__health_check_response__unpack(NULL, len, data);
    free(data);
    cr_assert_not_null(r, "a Watch message that does not decode");
    int status = (int)r->status;
    grpc__health__v1__health_check_response__free_unpacked(r, NULL);
    return status;
}

/*
 * Health/Watch (client-side health checking): the status at once, NOT_SERVING when SIGTERM
 * starts the drain, then UNAVAILABLE at shutdown so the client reconnects elsewhere. Open
 * streams hold no worker: with 2 workers and 40 streams open, unary calls are still served.
 */
Test(svc, health_watch_follows_the_drain_and_ends_unavailable)
{
    proc p;
    const char *env[] = { "TALLY_WORKERS=2", "TALLY_SHUTDOWN_DRAIN_MS=1500", NULL };
    gc_status st;
    cr_assert_eq(proc_start(&p, ECHO_SVC_PATH, env), 0);
    gc_client *c = gc_new_port(p.grpc_port);
    Grpc__Health__V1__HealthCheckRequest all = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckRequest nope = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    nope.service = "tally.v1.Nope";
    gc_stream *ws[40];
    for (int i = 0; i < 40; i++) {
        ws[i] = gc_stream_open(c, "/grpc.health.v1.Health/Watch", &all.base, NULL, 30000);
        cr_assert_not_null(ws[i]);
        cr_assert_eq(watch_next(ws[i], 5000, &st), 1, "stream %d: SERVING at once", i);
    }
    gc_stream *unknown = gc_stream_open(c, "/grpc.health.v1.Health/Watch", &nope.base, NULL, 30000);
    cr_assert_eq(watch_next(unknown, 5000, &st), 3, "an unknown service: SERVICE_UNKNOWN");
    cr_assert_eq(watch_next(ws[0], 300, &st), 0, "nothing more while nothing changes");
    gc_result r;
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    cr_assert_eq(gc_call(c, "/tally.test.v1.Echo/Echo", &req.base, NULL, 5000, &r), 0);
    cr_assert_eq(r.code, 0, "a unary call beside 41 open streams and 2 workers: %s", r.details);
    gc_result_release(&r);
    gc_stream_free(ws[39]); /* a client that goes away: the server forgets its stream */

    kill(p.pid, SIGTERM);
    for (int i = 0; i < 39; i++)
        cr_assert_eq(watch_next(ws[i], 1000, &st), 2, "stream %d: NOT_SERVING while draining", i);
    for (int i = 0; i < 39; i++) {
        cr_assert_eq(watch_next(ws[i], 10000, &st), -1, "stream %d: ended at shutdown", i);
        cr_assert_eq(st.code, TALLY_GRPC_UNAVAILABLE, "stream %d: %s", i, st.message);
        cr_assert(st.has_rich && st.rich.has_retry, "UNAVAILABLE says when to retry");
        gc_stream_free(ws[i]);
    }
    cr_assert_eq(watch_next(unknown, 10000, &st), -1);
    gc_stream_free(unknown);
    gc_free(c);
    cr_assert_eq(proc_wait(&p, 10000), 0);
    proc_release(&p);
}

static long streams_open(int http_port)
{
    return (long)ev_metric(http_port, "tally_grpc_streams_open");
}

/*
 * A client that goes away while the stream's open still runs (its deadline passes during the
 * open's sleep): the close waits for the open, then the stream is freed and forgotten; the
 * server goes on and exits 0 (under ASan: nothing used after it was freed, nothing leaked).
 */
Test(svc, a_stream_whose_client_goes_away_while_it_opens_is_forgotten)
{
    proc p;
    const char *env[] = { "TALLY_WORKERS=2", NULL };
    gc_status st;
    uint8_t *data;
    size_t len;
    cr_assert_eq(proc_start(&p, ECHO_SVC_PATH, env), 0);
    gc_client *c = gc_new_port(p.grpc_port);
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.sleep_ms = 600;
    req.text = "late";
    for (int i = 0; i < 4; i++) {
        gc_stream *s = gc_stream_open(c, "/tally.test.v1.Echo/Stream", &req.base, NULL, 200);
        cr_assert_not_null(s);
        cr_assert_eq(gc_stream_next(s, 5000, &data, &len, &st), -1);
        cr_assert_eq(st.code, TALLY_GRPC_DEADLINE_EXCEEDED, "%s", st.message);
        gc_stream_free(s);
    }
    long n = -1;
    for (int i = 0; i < 100 && (n = streams_open(p.http_port)) != 0; i++)
        tclock_sleep_ms(50);
    cr_assert_eq(n, 0, "streams still counted open: %ld", n);
    gc_result r;
    cr_assert_eq(gc_call(c, "/tally.test.v1.Echo/Echo", &req.base, NULL, 5000, &r), 0);
    cr_assert_eq(r.code, 0, "%s", r.details);
    gc_result_release(&r);
    gc_free(c);
    cr_assert_eq(proc_stop(&p, SIGTERM, 10000), 0);
    proc_release(&p);
}

/*
 * A client that does not read: its 1 MiB message stays in flight (HTTP/2 flow control). On
 * SIGTERM the server does not wait out the grace period for it: the stream is cancelled with
 * UNAVAILABLE at once, so the process exits long before TALLY_SHUTDOWN_GRACE_MS (30 s).
 */
Test(svc, sigterm_ends_a_stream_whose_client_does_not_read)
{
    proc p;
    const char *env[] = { "TALLY_WORKERS=2", "TALLY_SHUTDOWN_GRACE_MS=30000", NULL };
    static uint8_t big[1 << 20];
    gc_status st;
    uint8_t *data = NULL;
    size_t len;
    cr_assert_eq(proc_start(&p, ECHO_SVC_PATH, env), 0);
    gc_client *c = gc_new_port(p.grpc_port);
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.payload.data = big;
    req.payload.len = sizeof(big);
    gc_stream *s = gc_stream_open(c, "/tally.test.v1.Echo/Stream", &req.base, NULL, 60000);
    cr_assert_not_null(s);
    for (int i = 0; i < 100 && streams_open(p.http_port) != 1; i++)
        tclock_sleep_ms(50);
    tclock_sleep_ms(300); /* the reply is in flight, stuck: the client reads nothing */
    kill(p.pid, SIGTERM);
    cr_assert_eq(proc_wait(&p, 15000), 0, "the server waited for a client that does not read");
    int rc = gc_stream_next(s, 10000, &data, &len, &st);
    free(data);
    if (rc == 1) /* what got through before the cancel, at most: then the status */
        rc = gc_stream_next(s, 10000, &data, &len, &st);
    cr_assert_eq(rc, -1);
    cr_assert_eq(st.code, TALLY_GRPC_UNAVAILABLE, "%s", st.message);
    gc_stream_free(s);
    gc_free(c);
    proc_release(&p);
}

Test(svc, each_bad_variable_is_named_and_the_exit_is_non_zero)
{
    proc p;
    const char *env[] = { "TALLY_WORKERS=0",
                          "TALLY_REDIS_URL=http://localhost:6379",
                          "TALLY_PG_DSN=host=x port",
                          "TALLY_HTTP_LISTEN=localhost",
                          "TALLY_ECHO_CHECK_DEPS=perhaps",
                          NULL };
    int rc = proc_run(&p, ECHO_SVC_PATH, env, 10000);
    cr_assert_eq(rc, 2, "exit status %d", rc);
    const char *named[] = {
        "\"variable\":\"TALLY_WORKERS\"",         "\"variable\":\"TALLY_REDIS_URL\"",
        "\"variable\":\"TALLY_PG_DSN\"",          "\"variable\":\"TALLY_HTTP_LISTEN\"",
        "\"variable\":\"TALLY_ECHO_CHECK_DEPS\"", NULL
    };
    for (int i = 0; named[i]; i++)
        cr_assert(proc_log_has(&p, named[i]), "no line with %s in:\n%s", named[i], p.log);
    cr_assert(!proc_log_has(&p, "grpc server listening"));
    proc_release(&p);
}

Test(svc, a_port_in_use_is_an_error_naming_the_variable)
{
    proc first, second;
    char env_grpc[64];
    cr_assert_eq(proc_start(&first, ECHO_SVC_PATH, NULL), 0);
    snprintf(env_grpc, sizeof(env_grpc), "TALLY_GRPC_LISTEN=127.0.0.1:%d", first.grpc_port);
    const char *env[] = { env_grpc, "TALLY_HTTP_LISTEN=127.0.0.1:0", NULL };
    int rc = proc_run(&second, ECHO_SVC_PATH, env, 10000);
    cr_assert_eq(rc, 1, "exit status %d", rc);
    cr_assert(proc_log_has(&second, "TALLY_GRPC_LISTEN: cannot listen on 127.0.0.1:"), "%s",
              second.log);
    proc_release(&second);
    cr_assert_eq(proc_stop(&first, SIGTERM, 10000), 0);
    proc_release(&first);
}

Test(svc, mutual_tls_without_a_server_certificate_is_refused_not_plaintext)
{
    proc p;
    const char *env[] = { "TALLY_TLS_CLIENT_CA=/etc/hostname", "TALLY_GRPC_LISTEN=127.0.0.1:0",
                          "TALLY_HTTP_LISTEN=127.0.0.1:0", NULL };
    int rc = proc_run(&p, ECHO_SVC_PATH, env, 10000);
    cr_assert_eq(rc, 1, "exit status %d", rc);
    cr_assert(proc_log_has(&p, "TALLY_TLS_CLIENT_CA: needs TALLY_TLS_CERT and TALLY_TLS_KEY"), "%s",
              p.log);
    cr_assert(!proc_log_has(&p, "grpc server listening"));
    proc_release(&p);
}

Test(svc, readyz_checks_postgres_and_redis, .init = fx_need_stack)
{
    proc p;
    char body[1024];
    const char *env[] = { "TALLY_ECHO_CHECK_DEPS=true", NULL };
    cr_assert_eq(proc_start(&p, ECHO_SVC_PATH, env), 0);
    cr_assert_eq(proc_http_get(p.http_port, "/readyz", body, sizeof(body)), 200, "%s", body);
    cr_assert_str_eq(body, "{\"checks\":{\"postgres\":\"ok\",\"redis\":\"ok\"},\"ready\":true}\n");
    cr_assert_eq(proc_stop(&p, SIGTERM, 10000), 0);
    proc_release(&p);
}

Test(svc, readyz_fails_naming_a_dependency_that_is_down, .init = fx_need_stack)
{
    proc p;
    char body[1024];
    /* Port 1 on loopback: nothing listens there. */
    const char *env[] = { "TALLY_ECHO_CHECK_DEPS=true", "TALLY_REDIS_URL=redis://127.0.0.1:1/0",
                          NULL };
    cr_assert_eq(proc_start(&p, ECHO_SVC_PATH, env), 0);
    cr_assert_eq(proc_http_get(p.http_port, "/readyz", body, sizeof(body)), 503, "%s", body);
    cr_assert_not_null(strstr(body, "\"postgres\":\"ok\""), "%s", body);
    cr_assert_not_null(strstr(body, "\"redis\":\"127.0.0.1:1: Connection refused\""), "%s", body);
    cr_assert_not_null(strstr(body, "\"ready\":false"), "%s", body);
    cr_assert_eq(proc_http_get(p.http_port, "/healthz", body, sizeof(body)), 200,
                 "liveness must not depend on Redis");
    cr_assert_eq(proc_stop(&p, SIGTERM, 10000), 0);
    proc_release(&p);
}

/* The value of the series whose line starts with prefix (name and labels), or -1. */
static double series(const char *text, const char *prefix)
{
    for (const char *at = text; (at = strstr(at, prefix)) != NULL; at++)
        if (at == text || at[-1] == '\n')
            return atof(at + strlen(prefix));
    return -1;
}

/*
 * What stock dashboards read of any process (client libraries' process_* names and types), and
 * which build runs: tally_build_info with the version and commit --version prints.
 */
Test(svc, metrics_say_what_the_process_uses_and_which_build_it_is)
{
    static char text[1 << 20];
    char want[256];
    proc p;
    cr_assert_eq(proc_start(&p, ECHO_SVC_PATH, NULL), 0);
    cr_assert_eq(proc_http_get(p.http_port, "/metrics", text, sizeof(text)), 200);
    proc_stop(&p, SIGTERM, 10000);
    proc_release(&p);
    cr_assert(strstr(text, "# TYPE process_cpu_seconds_total counter\n"), "%s", text);
    cr_assert_geq(series(text, "process_cpu_seconds_total "), 0);
    cr_assert_gt(series(text, "process_resident_memory_bytes "), 1 << 20);
    cr_assert_gt(series(text, "process_virtual_memory_bytes "),
                 series(text, "process_resident_memory_bytes "));
    double fds = series(text, "process_open_fds "), max = series(text, "process_max_fds ");
    cr_assert(fds >= 3 && fds < max, "open fds %g of %g", fds, max);
    cr_assert_gt(series(text, "process_start_time_seconds "), 1.7e9);
    snprintf(want, sizeof(want),
             "tally_build_info{service=\"echo-svc\",version=\"%s\",commit=\"%s\"} ", tally_version,
             tally_commit);
    cr_assert_eq(series(text, want), 1, "no %s in:\n%s", want, text);
}

/* Every binary answers --version with the same version and commit, and exits 0. */
Test(svc, every_binary_says_its_version)
{
    static const char *const bins[][2] = {
        { COMMAND_SVC_PATH, "command-svc" },
        { PROJECTOR_PATH, "projector" },
        { QUERY_SVC_PATH, "query-svc" },
        { TALLY_BIN_DIR "/tally", "tally" },
        { TALLY_BIN_DIR "/tally-sim", "tally-sim" },
    };
    char want[256];
    for (size_t i = 0; i < sizeof(bins) / sizeof(bins[0]); i++) {
        char cmd[600], out[256] = "";
        snprintf(cmd, sizeof(cmd), "%s --version", bins[i][0]);
        FILE *f = popen(cmd, "r");
        cr_assert(f);
        size_t n = fread(out, 1, sizeof(out) - 1, f);
        out[n] = '\0';
        int rc = pclose(f);
        snprintf(want, sizeof(want), "%s %s (commit %s)\n", bins[i][1], tally_version,
                 tally_commit);
        cr_assert_eq(rc, 0, "%s", cmd);
        cr_assert_str_eq(out, want, "%s", cmd);
    }
}

/*
 * TALLY_GRPC_MAX_CONCURRENT_STREAMS bounds what one connection has open in the server: a client
 * that starts 8 slow calls at once on one connection, with 8 workers free, has at most 2 in the
 * server at any time; the others wait on the client's side and all succeed in turn (so no
 * connection can queue an unbounded number of calls in the process).
 */
Test(svc, one_connection_has_at_most_max_concurrent_streams_calls_in_the_server)
{
    proc p;
    const char *env[] = { "TALLY_WORKERS=8", "TALLY_GRPC_MAX_CONCURRENT_STREAMS=2", NULL };
    cr_assert_eq(proc_start(&p, ECHO_SVC_PATH, env), 0);
    batch b = { .port = p.grpc_port, .n = 8, .sleep_ms = 300 };
    b.rs = calloc(8, sizeof(gc_result));
    pthread_t t;
    pthread_create(&t, NULL, run_batch, &b);
    long most = 0;
    for (int i = 0; i < 150; i++) { /* 8 calls of 300 ms, 2 at a time: about 1.2 s */
        long n = in_flight(p.http_port);
        most = n > most ? n : most;
        tclock_sleep_ms(10);
    }
    pthread_join(t, NULL);
    for (int i = 0; i < 8; i++) {
        cr_expect_eq(b.rs[i].code, TALLY_GRPC_OK, "call %d: %s", i, b.rs[i].details);
        gc_result_release(&b.rs[i]);
    }
    free(b.rs);
    cr_assert_eq(proc_stop(&p, SIGTERM, 10000), 0);
    proc_release(&p);
    cr_assert_eq(most, 2, "calls of one connection in the server at once: at most %ld", most);
}
