/* PostgreSQL unreachable or silent: UNAVAILABLE, never a hang, then recovery. */
#include "cmd_int.h"
#include "proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * PostgreSQL going away, without touching the shared server: command-svc reaches it through a
 * TCP proxy in this process. "Down" resets every proxied connection and then closes each new
 * one at once (a server that is not there). "Stall" freezes every proxied connection for good
 * and accepts new ones without ever answering (a server or network that went silent). "Up"
 * proxies new connections again; frozen ones stay frozen, as after a partition
 * (tests/support/proxy).
 */
Test(pg_down, unreachable_postgres_is_unavailable_never_a_hang_then_recovers, .fini = tc_teardown,
     .timeout = 90)
{
    proxy px;
    char dsn[1024], env_dsn[1100], t[32], key[16];
    proxy_start_pg(&px, getenv("TALLY_PG_DSN"), dsn, sizeof(dsn));
    snprintf(env_dsn, sizeof(env_dsn), "TALLY_PG_DSN=%s", dsn);
    tc_start_svc(env_dsn, "TALLY_WORKERS=2");
    tc_seeded(t, sizeof(t), "UTC");
    long long id = tc_create_ok(t, "before");

    proxy_down(&px);
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof(key), "down-%d", i);
        Tally__V1__CreateComplaintRequest req = tc_create_req(t, key);
        gc_status r = tc_call(GC_COMMANDS("CreateComplaint"), &req.base);
        call_check_refusal("CreateComplaint without PostgreSQL", &r, TALLY_GRPC_UNAVAILABLE, NULL);
        cr_assert(strstr(r.details, "PostgreSQL"), "\"%s\"", r.details);
        Tally__V1__GetComplaintRequest g = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
        g.tenant_id = t;
        g.complaint_id = id;
        tc_expect("GetComplaint without PostgreSQL", GC_COMMANDS("GetComplaint"), &g.base,
                  TALLY_GRPC_UNAVAILABLE, NULL);
    }

    proxy_up(&px);
    Tally__V1__CreateComplaintRequest req = tc_create_req(t, "after");
    int code = -1, tries = 0;
    for (; tries < 100 && code != TALLY_GRPC_OK; tries++) {
        gc_status r = tc_call(GC_COMMANDS("CreateComplaint"), &req.base);
        code = r.code;
        cr_assert(code == TALLY_GRPC_OK || code == TALLY_GRPC_UNAVAILABLE,
                  "while reconnecting: %s \"%s\"", tally_grpc_code_name(code), r.details);
        if (code != TALLY_GRPC_OK)
            tc_sleep_ms(100);
    }
    cr_assert_eq(code, TALLY_GRPC_OK, "no recovery after PostgreSQL came back");
    /* Both workers reconnect: a run of calls all succeed. */
    for (int i = 0; i < 6; i++) {
        Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
        call_free(g);
    }
    const char *p[] = { t };
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1", 1, p), 2,
                 "only \"before\" and \"after\" exist");
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1 AND"
                            " idempotency_key LIKE 'down-%'",
                            1, p),
                 0);
    tc_teardown();
    proxy_stop(&px);
}

/*
 * A PostgreSQL that goes silent (no reset, no answer, not even to a cancel request) must not
 * hold a worker forever: once a reachable server is back, calls succeed again. Each worker's
 * statement times out at its call's deadline; what it does then (cancel, drop the connection)
 * must be bounded too.
 */
Test(pg_down, a_silent_postgres_does_not_hold_workers_forever, .fini = tc_teardown, .timeout = 90)
{
    proxy px;
    char dsn[1024], env_dsn[1100], t[32];
    proxy_start_pg(&px, getenv("TALLY_PG_DSN"), dsn, sizeof(dsn));
    snprintf(env_dsn, sizeof(env_dsn), "TALLY_PG_DSN=%s", dsn);
    tc_start_svc(env_dsn, "TALLY_WORKERS=2");
    tc_seeded(t, sizeof(t), "UTC");
    long long id = tc_create_ok(t, "before");
    Tally__V1__GetComplaintRequest g = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    g.tenant_id = t;
    g.complaint_id = id;

    proxy_stall(&px);
    /* Enough calls to reach both workers; each ends by its deadline on the client anyway. */
    gc_result rs[4];
    cr_assert_eq(gc_call_many(tc_cli, GC_COMMANDS("GetComplaint"), &g.base, 4, 1000, rs), 0);
    for (int i = 0; i < 4; i++) {
        cr_assert(rs[i].code == TALLY_GRPC_DEADLINE_EXCEEDED ||
                      rs[i].code == TALLY_GRPC_UNAVAILABLE,
                  "a call while PostgreSQL is silent: %s \"%s\"", tally_grpc_code_name(rs[i].code),
                  rs[i].details);
        gc_result_release(&rs[i]);
    }

    /* Let the workers act on their deadlines (a cancel request, say) while still silent. */
    for (int i = 0; i < 30; i++) {
        if (proxy_silent(&px) >= 2)
            break;
        tc_sleep_ms(100);
    }
    proxy_up(&px);
    int code = -1, tries = 0;
    char last[1100] = "";
    for (; tries < 10 && code != TALLY_GRPC_OK; tries++) {
        gc_result r;
        cr_assert_eq(gc_call(tc_cli, GC_COMMANDS("GetComplaint"), &g.base, NULL, 2000, &r), 0);
        code = r.code;
        snprintf(last, sizeof(last), "%s \"%s\"", tally_grpc_code_name(r.code), r.details);
        gc_result_release(&r);
        if (code != TALLY_GRPC_OK)
            tc_sleep_ms(500);
    }
    int ok_after = 0;
    for (int i = 0; code == TALLY_GRPC_OK && i < 6; i++) {
        gc_result r;
        cr_assert_eq(gc_call(tc_cli, GC_COMMANDS("GetComplaint"), &g.base, NULL, 2000, &r), 0);
        ok_after += r.code == TALLY_GRPC_OK;
        gc_result_release(&r);
    }
    /* Release whatever is still stuck before judging, so that the service can stop. */
    proxy_stop(&px);
    cr_assert_eq(code, TALLY_GRPC_OK,
                 "no call succeeded in %d tries (about 25 s) after PostgreSQL answered again; "
                 "last: %s. Workers are stuck on the silent connections.",
                 tries, last);
    cr_assert_eq(ok_after, 6, "only %d of 6 calls succeeded afterwards: a worker is stuck",
                 ok_after);
}
