/*
 * echo-svc: the runtime's test service. It serves tally.test.v1.Echo through common/'s
 * runtime with no storage behind it, so the tests, the interop test and the benchmark
 * measure the runtime alone. With TALLY_ECHO_CHECK_DEPS=true its /readyz also checks
 * PostgreSQL and Redis, like a real service.
 */
#include "auth.h"
#include "echo.pb-c.h"
#include "err.h"
#include "probe.h"
#include "svc.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define SLEEP_MAX_MS 60000
#define META_MAX     1024

static bool check_deps;

static void fill(srv_call *call, const Tally__Test__V1__EchoRequest *req,
                 Tally__Test__V1__EchoReply *rep, char *meta)
{
    size_t len = 0;
    const char *val = req->metadata_key[0] ? srv_metadata(call, req->metadata_key, &len) : NULL;
    if (val)
        snprintf(meta, META_MAX, "%.*s", (int)(len < META_MAX ? len : META_MAX - 1), val);
    rep->text = req->text;
    rep->payload = req->payload;
    rep->metadata_value = meta;
    rep->worker = (uint32_t)srv_worker_index(call);
}

static int echo(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__Test__V1__EchoRequest *req = (const void *)msg;
    Tally__Test__V1__EchoReply rep = TALLY__TEST__V1__ECHO_REPLY__INIT;
    char meta[META_MAX] = "";
    (void)worker;
    fill(call, req, &rep, meta);
    return srv_reply(call, &rep.base);
}

/* Sleeps in small steps and gives up at the deadline, as a real handler should. */
static int sleep_then_echo(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__Test__V1__EchoRequest *req = (const void *)msg;
    uint32_t ms = req->sleep_ms;
    if (ms > SLEEP_MAX_MS)
        return srv_fail(call, TALLY_EINVAL, "sleep_ms: at most %d", SLEEP_MAX_MS);
    for (uint32_t slept = 0; slept < ms; slept += 10) {
        struct timespec step = { .tv_nsec = 10 * 1000000 };
        if (srv_remaining_ms(call) <= 0)
            return srv_fail(call, TALLY_ETIMEOUT, "deadline passed after %u ms of sleep", slept);
        nanosleep(&step, NULL);
    }
    return echo(call, msg, worker);
}

static int stream_open(srv_call *call, srv_stream *st, const ProtobufCMessage *msg, void *worker)
{
    const Tally__Test__V1__EchoRequest *req = (const void *)msg;
    Tally__Test__V1__EchoReply rep = TALLY__TEST__V1__ECHO_REPLY__INIT;
    struct timespec t = { .tv_sec = req->sleep_ms / 1000,
                          .tv_nsec = (long)(req->sleep_ms % 1000) * 1000000 };
    (void)worker;
    if (req->sleep_ms > SLEEP_MAX_MS)
        return srv_fail(call, TALLY_EINVAL, "sleep_ms: at most %d", SLEEP_MAX_MS);
    nanosleep(&t, NULL);
    rep.text = req->text;
    rep.payload = req->payload;
    int rc = srv_stream_send(st, &rep.base);
    return rc == 0 || rc == TALLY_ECANCELLED ? 0 : srv_fail(call, rc, "cannot send");
}

static int fail(srv_call *call, const ProtobufCMessage *msg, void *worker)
{
    const Tally__Test__V1__FailRequest *req = (const void *)msg;
    (void)worker;
    if (req->code < 1 || req->code > 16)
        return srv_fail(call, TALLY_EINVAL, "code: must be 1 to 16, got %u", req->code);
    return srv_fail(call, tally_err_from_grpc_code((int)req->code), "%s", req->message);
}

static int setup(const svc_env *env, void *arg)
{
    (void)arg;
    if (!check_deps)
        return 0;
    return http_add_ready_check(env->http, "postgres", probe_postgres, (void *)env->cfg->pg_dsn) ||
           http_add_ready_check(env->http, "redis", probe_redis, (void *)&env->cfg->redis);
}

int main(void)
{
    static const srv_method methods[] = {
        { .name = "Echo",
          .request = &tally__test__v1__echo_request__descriptor,
          .handler = echo,
          .roles = AUTH_ANY | SRV_NO_TENANT },
        { .name = "Sleep",
          .request = &tally__test__v1__echo_request__descriptor,
          .handler = sleep_then_echo,
          .roles = AUTH_ANY | SRV_NO_TENANT },
        { .name = "Stream",
          .request = &tally__test__v1__echo_request__descriptor,
          .roles = AUTH_ANY | SRV_NO_TENANT,
          .stream = stream_open },
        { .name = "Fail",
          .request = &tally__test__v1__fail_request__descriptor,
          .handler = fail,
          .roles = AUTH_ANY | SRV_NO_TENANT },
    };
    static const srv_service services[] = {
        { "tally.test.v1.Echo", methods, sizeof(methods) / sizeof(methods[0]) },
    };
    static const cfg_var vars[] = {
        { "TALLY_ECHO_CHECK_DEPS", CFG_BOOL, "false", 0, 0, 0, &check_deps,
          "make /readyz check PostgreSQL and Redis" },
    };
    svc_def def = { .name = "echo-svc",
                    .grpc_port = 50050,
                    .http_port = 9080,
                    .services = services,
                    .nservices = 1,
                    .vars = vars,
                    .nvars = 1,
                    .setup = setup,
                    .auth_default = "off" };
    return svc_main(&def);
}
