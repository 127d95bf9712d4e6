/*
 * Clients from other ecosystems against the real system (issue 13): Python grpcio
 * (tests/clients/tally_client.py) and a gateway-shaped Node client with @grpc/grpc-js
 * (tests/clients/node/gateway.mjs), each checking reflection or round-robin, commands, the
 * rich error details, GetDashboard and a WatchDashboard stream. This file starts the system,
 * seeds a tenant of each client's own, runs the client and asserts that it passed every check;
 * for Node, also that both query-svc replicas served its GetDashboard calls.
 */
#include "ev_wait.h"
#include "fixture.h"
#include "proc.h"
#include "system.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIENT_MS 120000 /* a cap for the client's run, not a timing assertion */

static sys_system S;

static void start(void)
{
    sys_start(&S, NULL);
}

static void stop(void)
{
    sys_stop(&S);
}

static void run_client(const char *const *argv)
{
    char *out = NULL;
    int rc = proc_run_output(&out, argv, CLIENT_MS);
    cr_log_info("%s", out);
    cr_assert_eq(rc, 0, "%s exited %d:\n%s", argv[1], rc, out);
    cr_assert(strstr(out, "all checks passed"), "%s:\n%s", argv[1], out);
    free(out);
}

/* The GetDashboard calls a query-svc counted as OK. */
static double dashboards_served(int http_port)
{
    double v = ev_metric(http_port, "grpc_server_handled_total{grpc_code=\"OK\",grpc_method="
                                    "\"GetDashboard\",grpc_service=\"tally.v1.Dashboard\","
                                    "grpc_type=\"unary\"}");
    return v < 0 ? 0 : v;
}

Test(clients, python_grpcio_calls_tally_v1, .init = start, .fini = stop, .timeout = 180)
{
    char tenant[32], cmd[64], query[64];
    fx_tenant(tenant, sizeof(tenant));
    fx_seed_tenant(S.cmd, tenant, "UTC");
    sys_wait_idle(&S, 60000); /* the tenant in the read model: else NOT_FOUND ends a watch */
    snprintf(cmd, sizeof(cmd), "127.0.0.1:%d", S.command.grpc_port);
    snprintf(query, sizeof(query), "127.0.0.1:%d", S.query.grpc_port);
    const char *argv[] = { "/usr/bin/python3",
                           TALLY_SOURCE_DIR "/tests/clients/tally_client.py",
                           "--gen",
                           TALLY_PYTHON_STUBS,
                           "--commands",
                           cmd,
                           "--query",
                           query,
                           "--tenant",
                           tenant,
                           NULL };
    run_client(argv);
}

Test(clients, node_gateway_balances_follows_a_watch_and_reads_error_details, .init = start,
     .fini = stop, .timeout = 180)
{
    char tenant[32], cmd[64], query[96];
    proc q2;
    fx_tenant(tenant, sizeof(tenant));
    fx_seed_tenant(S.cmd, tenant, "UTC");
    sys_wait_idle(&S, 60000);
    sys_query_more(&S, &q2);
    snprintf(cmd, sizeof(cmd), "127.0.0.1:%d", S.command.grpc_port);
    snprintf(query, sizeof(query), "127.0.0.1:%d,127.0.0.1:%d", S.query.grpc_port, q2.grpc_port);
    const char *argv[] = { "node",       TALLY_SOURCE_DIR "/tests/clients/node/gateway.mjs",
                           "--proto",    TALLY_SOURCE_DIR "/proto",
                           "--commands", cmd,
                           "--query",    query,
                           "--tenant",   tenant,
                           "--calls",    "20",
                           NULL };
    run_client(argv);
    double a = dashboards_served(S.query.http_port), b = dashboards_served(q2.http_port);
    cr_assert(a >= 5 && b >= 5, "round robin: the replicas served %.0f and %.0f of 20", a, b);
    cr_assert_eq(proc_stop(&q2, SIGTERM, 15000), 0);
    proc_release(&q2);
}
