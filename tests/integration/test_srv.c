/*
 * The gRPC runtime end to end: echo-svc in its own process, called by a real C-core client.
 * Each test starts its own server on free ports.
 */
#include "echo.pb-c.h"
#include "err.h"
#include "gclient.h"
#include "proc.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ECHO  "/tally.test.v1.Echo/Echo"
#define SLEEP "/tally.test.v1.Echo/Sleep"
#define FAIL  "/tally.test.v1.Echo/Fail"

static proc svc;
static gc_client *client;

static void start_with(const char *const *env)
{
    cr_assert_eq(proc_start(&svc, ECHO_SVC_PATH, env), 0, "echo-svc did not start:\n%s",
                 svc.log ? svc.log : "");
    client = gc_new_port(svc.grpc_port);
}

static void start(void)
{
    start_with(NULL);
}

static void stop(void)
{
    gc_free(client);
    int rc = proc_stop(&svc, SIGTERM, 15000);
    cr_expect_eq(rc, 0, "echo-svc exited with %d", rc);
    proc_release(&svc);
}

static Tally__Test__V1__EchoReply *echo_reply(gc_result *r)
{
    cr_assert_eq(r->code, TALLY_GRPC_OK, "status %d: %s", r->code, r->details);
    Tally__Test__V1__EchoReply *rep = tally__test__v1__echo_reply__unpack(NULL, r->len, r->data);
    cr_assert_not_null(rep);
    return rep;
}

Test(srv, unary_call_round_trips, .init = start, .fini = stop)
{
    static uint8_t payload[100000];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.text = "hello";
    req.payload.data = payload;
    req.payload.len = sizeof(payload);
    gc_result r;
    cr_assert_eq(gc_call(client, ECHO, &req.base, NULL, 5000, &r), 0);
    Tally__Test__V1__EchoReply *rep = echo_reply(&r);
    cr_assert_str_eq(rep->text, "hello");
    cr_assert_eq(rep->payload.len, sizeof(payload));
    cr_assert_arr_eq(rep->payload.data, payload, sizeof(payload));
    tally__test__v1__echo_reply__free_unpacked(rep, NULL);
    gc_result_release(&r);
}

Test(srv, request_metadata_reaches_the_handler, .init = start, .fini = stop)
{
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.metadata_key = "x-tally-test";
    const char *md[] = { "x-tally-test", "abc 123", "x-other", "no", NULL };
    gc_result r;
    gc_call(client, ECHO, &req.base, md, 5000, &r);
    Tally__Test__V1__EchoReply *rep = echo_reply(&r);
    cr_assert_str_eq(rep->metadata_value, "abc 123");
    tally__test__v1__echo_reply__free_unpacked(rep, NULL);
    gc_result_release(&r);

    req.metadata_key = "x-absent";
    gc_call(client, ECHO, &req.base, md, 5000, &r);
    rep = echo_reply(&r);
    cr_assert_str_eq(rep->metadata_value, "");
    tally__test__v1__echo_reply__free_unpacked(rep, NULL);
    gc_result_release(&r);
}

Test(srv, status_code_and_details_reach_the_client, .init = start, .fini = stop)
{
    Tally__Test__V1__FailRequest req = TALLY__TEST__V1__FAIL_REQUEST__INIT;
    gc_result r;
    char msg[64];
    for (uint32_t code = 1; code <= 16; code++) {
        snprintf(msg, sizeof(msg), "failure %u: ünïcode \"quoted\"", code);
        req.code = code;
        req.message = msg;
        gc_call(client, FAIL, &req.base, NULL, 5000, &r);
        cr_assert_eq(r.code, (int)code);
        cr_assert_str_eq(r.details, msg);
        cr_assert_null(r.data, "a failed call carried a message");
        gc_result_release(&r);
    }
    req.code = 99;
    gc_call(client, FAIL, &req.base, NULL, 5000, &r);
    cr_assert_eq(r.code, TALLY_GRPC_INVALID_ARGUMENT);
    cr_assert_str_eq(r.details, "code: must be 1 to 16, got 99");
}

Test(srv, malformed_or_missing_request_is_invalid_argument, .init = start, .fini = stop)
{
    static const uint8_t garbage[] = { 0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01 };
    gc_result r;
    gc_call_raw(client, ECHO, garbage, sizeof(garbage), true, NULL, 5000, &r);
    cr_assert_eq(r.code, TALLY_GRPC_INVALID_ARGUMENT, "%d %s", r.code, r.details);
    cr_assert_str_eq(r.details, "malformed request: not a valid tally.test.v1.EchoRequest message");

    gc_call_raw(client, ECHO, NULL, 0, false, NULL, 5000, &r);
    cr_assert_eq(r.code, TALLY_GRPC_INVALID_ARGUMENT, "%d %s", r.code, r.details);
    cr_assert_str_eq(r.details, "missing request message (tally.test.v1.EchoRequest)");

    /* And the server is fine afterwards. */
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    gc_call(client, ECHO, &req.base, NULL, 5000, &r);
    cr_assert_eq(r.code, TALLY_GRPC_OK);
    gc_result_release(&r);
}

/* ---- gc_call_msg: the typed call of common/gclient -------------------------------------- */

Test(srv, typed_call_decodes_the_reply, .init = start, .fini = stop)
{
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    const char *md[] = { "x-tally-test", "typed", NULL };
    ProtobufCMessage *m = NULL;
    gc_status st;
    req.text = "hello, typed";
    req.metadata_key = "x-tally-test";
    cr_assert_eq(gc_call_msg(client, ECHO, &req.base, &tally__test__v1__echo_reply__descriptor, md,
                             5000, &m, &st),
                 0, "%d %s", st.code, st.message);
    cr_assert_eq(st.code, TALLY_GRPC_OK);
    cr_assert_str_eq(st.details, "");
    cr_assert_str_eq(st.message, "", "OK has no message, got \"%s\"", st.message);
    cr_assert_gt(st.seconds, 0);
    cr_assert_not_null(m);
    cr_assert_eq(m->descriptor, &tally__test__v1__echo_reply__descriptor);
    Tally__Test__V1__EchoReply *rep = (Tally__Test__V1__EchoReply *)m;
    cr_assert_str_eq(rep->text, "hello, typed");
    cr_assert_str_eq(rep->metadata_value, "typed");
    protobuf_c_message_free_unpacked(m, NULL);

    /* Only the status: no reply wanted, no status kept. */
    cr_assert_eq(gc_call_msg(client, ECHO, &req.base, NULL, NULL, 5000, NULL, NULL), 0);
}

/*
 * A gc_call_msg that must fail with code: -1, no reply (even one set before), and st filled in
 * with a wall time.
 */
static void typed_fails(const char *method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *desc, int deadline_ms, int code,
                        gc_status *st)
{
    ProtobufCMessage *m = (ProtobufCMessage *)req;
    cr_assert_eq(gc_call_msg(client, method, req, desc, NULL, deadline_ms, &m, st), -1);
    cr_assert_null(m, "a failed call left a reply");
    cr_assert_eq(st->code, code, "%s: %d %s", method, st->code, st->message);
    cr_assert_gt(st->seconds, 0);
}

Test(srv, typed_call_error_gives_code_details_and_message, .init = start, .fini = stop)
{
    const ProtobufCMessageDescriptor *rd = &tally__test__v1__echo_reply__descriptor;
    Tally__Test__V1__FailRequest req = TALLY__TEST__V1__FAIL_REQUEST__INIT;
    gc_status st;
    req.code = TALLY_GRPC_NOT_FOUND;
    req.message = "tenant_id: no tenant \"acme\"";
    typed_fails(FAIL, &req.base, rd, 5000, TALLY_GRPC_NOT_FOUND, &st);
    cr_assert_str_eq(st.details, "tenant_id: no tenant \"acme\"");
    cr_assert_str_eq(st.message, "NOT_FOUND: tenant_id: no tenant \"acme\"");
    cr_assert(!gc_transient(st.code));

    req.code = TALLY_GRPC_UNAVAILABLE;
    req.message = "the database is down";
    typed_fails(FAIL, &req.base, rd, 5000, TALLY_GRPC_UNAVAILABLE, &st);
    cr_assert_str_eq(st.message, "UNAVAILABLE: the database is down");
    cr_assert(gc_transient(st.code));

    /* The deadline is the caller's. */
    Tally__Test__V1__EchoRequest slow = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    slow.sleep_ms = 3000;
    typed_fails(SLEEP, &slow.base, rd, 200, TALLY_GRPC_DEADLINE_EXCEEDED, &st);
    cr_assert_lt(st.seconds, 1.0);
    cr_assert_eq(strncmp(st.message, "DEADLINE_EXCEEDED: ", 19), 0, "%s", st.message);
    cr_assert(gc_transient(st.code));
}

Test(srv, typed_call_reply_that_does_not_decode_is_internal, .init = start, .fini = stop)
{
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    gc_status st;
    req.text = "hello";
    /* An EchoReply read as a FailRequest: field 1 is a string there, a uint32 here. */
    typed_fails(ECHO, &req.base, &tally__test__v1__fail_request__descriptor, 5000,
                TALLY_GRPC_INTERNAL, &st);
    cr_assert_str_eq(st.message, "INTERNAL: /tally.test.v1.Echo/Echo: the reply does not decode as "
                                 "tally.test.v1.FailRequest");
    cr_assert(!gc_transient(st.code));
}

Test(srv, typed_call_reply_over_the_limit_is_internal, .fini = stop)
{
    const char *env[] = { "TALLY_GRPC_MAX_MESSAGE_BYTES=8388608", NULL };
    start_with(env);
    static uint8_t payload[GC_REPLY_MAX + 1];
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    ProtobufCMessage *m;
    gc_status st;
    req.payload.data = payload;
    req.payload.len = sizeof(payload);
    typed_fails(ECHO, &req.base, &tally__test__v1__echo_reply__descriptor, 10000,
                TALLY_GRPC_INTERNAL, &st);
    cr_assert_not_null(strstr(st.message, "INTERNAL: /tally.test.v1.Echo/Echo: a reply of "), "%s",
                       st.message);

    /* Just under it: decoded. */
    req.payload.len = GC_REPLY_MAX - 64;
    cr_assert_eq(gc_call_msg(client, ECHO, &req.base, &tally__test__v1__echo_reply__descriptor,
                             NULL, 10000, &m, &st),
                 0, "%d %s", st.code, st.message);
    cr_assert_eq(((Tally__Test__V1__EchoReply *)m)->payload.len, GC_REPLY_MAX - 64);
    protobuf_c_message_free_unpacked(m, NULL);
}

Test(srv, unknown_method_is_unimplemented_at_once, .init = start, .fini = stop)
{
    gc_result r;
    const char *methods[] = { "/tally.test.v1.Echo/Nope", "/no.such.Service/Call",
                              "/grpc.health.v1.Health/List", NULL };
    for (int i = 0; methods[i]; i++) {
        gc_call_raw(client, methods[i], "", 0, true, NULL, 10000, &r);
        cr_assert_eq(r.code, TALLY_GRPC_UNIMPLEMENTED, "%s: %d %s", methods[i], r.code, r.details);
        cr_assert_lt(r.seconds, 1.0, "%s took %.3f s of a 10 s deadline", methods[i], r.seconds);
        cr_assert_not_null(strstr(r.details, methods[i]), "%s", r.details);
        gc_result_release(&r);
    }
}

Test(srv, oversize_message_is_resource_exhausted, .fini = stop)
{
    const char *env[] = { "TALLY_GRPC_MAX_MESSAGE_BYTES=65536", NULL };
    start_with(env);
    static uint8_t payload[70000];
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.payload.data = payload;
    req.payload.len = sizeof(payload);
    gc_result r;
    gc_call(client, ECHO, &req.base, NULL, 5000, &r);
    cr_assert_eq(r.code, TALLY_GRPC_RESOURCE_EXHAUSTED, "%d %s", r.code, r.details);
    gc_result_release(&r);

    req.payload.len = 60000; /* under the limit: fine */
    gc_call(client, ECHO, &req.base, NULL, 5000, &r);
    cr_assert_eq(r.code, TALLY_GRPC_OK, "%d %s", r.code, r.details);
    gc_result_release(&r);
}

Test(srv, slow_handler_past_deadline_leaves_server_healthy, .init = start, .fini = stop)
{
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.sleep_ms = 3000;
    gc_result r;
    gc_call(client, SLEEP, &req.base, NULL, 200, &r);
    cr_assert_eq(r.code, TALLY_GRPC_DEADLINE_EXCEEDED, "%d %s", r.code, r.details);
    cr_assert_lt(r.seconds, 1.0, "the deadline was not kept: %.3f s", r.seconds);

    req.sleep_ms = 0;
    gc_call(client, ECHO, &req.base, NULL, 5000, &r);
    cr_assert_eq(r.code, TALLY_GRPC_OK);
    gc_result_release(&r);
    char body[256];
    cr_assert_eq(proc_http_get(svc.http_port, "/healthz", body, sizeof(body)), 200, "%s", body);
}

Test(srv, concurrent_calls_on_one_connection_use_every_worker, .fini = stop)
{
    enum { N = 1000, WORKERS = 4 };
    const char *env[] = { "TALLY_WORKERS=4", NULL };
    start_with(env);
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.sleep_ms = 2; /* a worker that sleeps leaves the queue to the others */
    gc_result *rs = calloc(N, sizeof(gc_result));
    int served[WORKERS] = { 0 };
    cr_assert_eq(gc_call_many(client, SLEEP, &req.base, N, 60000, rs), 0);
    for (int i = 0; i < N; i++) {
        Tally__Test__V1__EchoReply *rep = echo_reply(&rs[i]);
        cr_assert_lt(rep->worker, (uint32_t)WORKERS);
        served[rep->worker]++;
        tally__test__v1__echo_reply__free_unpacked(rep, NULL);
        gc_result_release(&rs[i]);
    }
    for (int w = 0; w < WORKERS; w++)
        cr_assert_gt(served[w], 0, "worker %d served nothing (%d/%d/%d/%d)", w, served[0],
                     served[1], served[2], served[3]);
    free(rs);
}

static int health(const char *service)
{
    /* HealthCheckRequest { string service = 1; } encoded by hand: a client nobody shares. */
    uint8_t buf[128];
    size_t n = strlen(service), len = 0;
    if (n) {
        buf[len++] = 0x0a;
        buf[len++] = (uint8_t)n;
        memcpy(buf + len, service, n);
        len += n;
    }
    gc_result r;
    gc_call_raw(client, "/grpc.health.v1.Health/Check", buf, len, true, NULL, 5000, &r);
    int status = -r.code; /* an error: minus its code */
    if (r.code == TALLY_GRPC_OK)
        status = r.len == 2 && r.data[0] == 0x08 ? r.data[1] : 0;
    gc_result_release(&r);
    return status;
}

Test(srv, health_check_answers_for_served_services, .init = start, .fini = stop)
{
    cr_assert_eq(health(""), 1, "SERVING");
    cr_assert_eq(health("tally.test.v1.Echo"), 1);
    cr_assert_eq(health("grpc.health.v1.Health"), 1);
    cr_assert_eq(health("tally.v1.Nope"), -TALLY_GRPC_NOT_FOUND);
}

/* The value of the series whose line starts with prefix, or -1. */
static long long metric(const char *text, const char *prefix)
{
    for (const char *at = text; (at = strstr(at, prefix)) != NULL; at++)
        if (at == text || at[-1] == '\n')
            return atoll(at + strlen(prefix));
    return -1;
}

Test(srv, metrics_count_calls_by_method_and_code, .init = start, .fini = stop)
{
    static char text[1 << 20];
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    Tally__Test__V1__FailRequest fail = TALLY__TEST__V1__FAIL_REQUEST__INIT;
    gc_result r;
    for (int i = 0; i < 3; i++) {
        gc_call(client, ECHO, &req.base, NULL, 5000, &r);
        gc_result_release(&r);
    }
    fail.code = TALLY_GRPC_NOT_FOUND;
    fail.message = "nope";
    gc_call(client, FAIL, &fail.base, NULL, 5000, &r);
    gc_call_raw(client, "/x.Y/Z", "", 0, true, NULL, 5000, &r);

    cr_assert_eq(proc_http_get(svc.http_port, "/metrics", text, sizeof(text)), 200);
    const char *m = "grpc_method=\"Echo\",grpc_service=\"tally.test.v1.Echo\",grpc_type=\"unary\"";
    char key[512];
    snprintf(key, sizeof(key), "grpc_server_started_total{%s} ", m);
    cr_assert_eq(metric(text, key), 3, "%s", text);
    snprintf(key, sizeof(key), "grpc_server_handled_total{grpc_code=\"OK\",%s} ", m);
    cr_assert_eq(metric(text, key), 3, "%s", text);
    snprintf(key, sizeof(key), "grpc_server_handling_seconds_count{%s} ", m);
    cr_assert_eq(metric(text, key), 3, "%s", text);
    cr_assert_eq(metric(text, "grpc_server_handled_total{grpc_code=\"NotFound\",grpc_method="
                              "\"Fail\",grpc_service=\"tally.test.v1.Echo\",grpc_type=\"unary\"} "),
                 1, "%s", text);
    cr_assert_eq(metric(text, "grpc_server_unknown_method_total "), 1, "%s", text);
    cr_assert_not_null(strstr(text, "# TYPE grpc_server_handling_seconds histogram\n"));
}

Test(srv, healthz_and_readyz_answer, .init = start, .fini = stop)
{
    char body[1024];
    cr_assert_eq(proc_http_get(svc.http_port, "/healthz", body, sizeof(body)), 200);
    cr_assert_str_eq(body, "{\"alive\":true}\n");
    cr_assert_eq(proc_http_get(svc.http_port, "/readyz", body, sizeof(body)), 200);
    cr_assert_str_eq(body, "{\"checks\":{},\"ready\":true}\n");
    cr_assert_eq(proc_http_get(svc.http_port, "/nope", body, sizeof(body)), 404);
}

/* What the flooding client got: its calls' codes. */
typedef struct flood {
    int port, n, ok, refused, other;
    bool started; /* the calls could be made (checked by the test, not by this thread) */
    char refusal[1024];
} flood;

static void *flood_main(void *arg)
{
    flood *f = arg;
    gc_client *c = gc_new_port(f->port);
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.sleep_ms = 1500;
    gc_result *rs = calloc((size_t)f->n, sizeof(gc_result));
    f->started = rs && gc_call_many(c, SLEEP, &req.base, f->n, 30000, rs) == 0;
    for (int i = 0; f->started && i < f->n; i++) {
        if (rs[i].code == TALLY_GRPC_OK)
            f->ok++;
        else if (rs[i].code == TALLY_GRPC_RESOURCE_EXHAUSTED) {
            f->refused++;
            snprintf(f->refusal, sizeof(f->refusal), "%s", rs[i].details);
        } else
            f->other++;
        gc_result_release(&rs[i]);
    }
    free(rs);
    gc_free(c);
    return NULL;
}

/*
 * A client that floods slow calls (50 at once, 1.5 s each, on one connection) holds at most
 * TALLY_GRPC_MAX_CALLS_PER_CONNECTION (2) of the 4 workers; the rest of its calls are refused
 * at once with RESOURCE_EXHAUSTED, and another client's calls meanwhile are all served within
 * their 1 s deadline. Without the limit the flood takes every worker, and they time out.
 */
Test(srv, a_flood_of_slow_calls_from_one_client_leaves_workers_to_others, .fini = stop)
{
    const char *env[] = { "TALLY_WORKERS=4", "TALLY_GRPC_MAX_CALLS_PER_CONNECTION=2", NULL };
    start_with(env);
    flood f = { .port = svc.grpc_port, .n = 50 };
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, flood_main, &f), 0);
    struct timespec settle = { 0, 300 * 1000000L }; /* the flood is in */
    nanosleep(&settle, NULL);
    Tally__Test__V1__EchoRequest req = TALLY__TEST__V1__ECHO_REQUEST__INIT;
    req.text = "still here";
    int served = 0;
    for (int i = 0; i < 20; i++) {
        gc_result r;
        cr_assert_eq(gc_call(client, ECHO, &req.base, NULL, 1000, &r), 0);
        served += r.code == TALLY_GRPC_OK;
        if (r.code != TALLY_GRPC_OK)
            cr_log_error("call %d of the other client: %d %s", i, r.code, r.details);
        gc_result_release(&r);
    }
    pthread_join(t, NULL);
    cr_assert(f.started, "the flood's calls could not be made");
    cr_expect_eq(served, 20, "the other client's calls served during the flood: %d of 20", served);
    cr_expect(f.ok > 0 && f.ok <= 4, "the flood's own calls: a few served (%d)", f.ok);
    cr_expect_gt(f.refused, 0, "the flood's own calls: the excess refused (%d ok)", f.ok);
    cr_expect_eq(f.other, 0, "the flood's calls: %d neither OK nor RESOURCE_EXHAUSTED", f.other);
    cr_expect(strstr(f.refusal, "at most 2"), "the refusal says the limit: %s", f.refusal);
    static char body[1 << 20];
    cr_assert_eq(proc_http_get(svc.http_port, "/metrics", body, sizeof(body)), 200);
    const char *m = strstr(body, "\ntally_grpc_refused_busy_connection_total ");
    cr_assert(m, "no tally_grpc_refused_busy_connection_total in /metrics");
    cr_expect_eq(atoi(m + strlen("\ntally_grpc_refused_busy_connection_total ")), f.refused,
                 "the refusals are counted");
}
