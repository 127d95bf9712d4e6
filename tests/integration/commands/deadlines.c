/*
 * Deadlines: a tiny deadline is DEADLINE_EXCEEDED and a retry is safe; a blocked statement is
 * cancelled.
 */
#include "cmd_int.h"
#include "pgdb.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * 1 ms deadlines: every call ends (OK if it was that fast, else DEADLINE_EXCEEDED; nothing
 * else, never a hang), and a retry with a normal deadline makes each key exactly one complaint
 * whatever the timed-out call committed. A call that must wait (its key is locked by an open
 * transaction) is always DEADLINE_EXCEEDED.
 */
Test(commands, a_tiny_deadline_is_deadline_exceeded_and_a_retry_is_safe)
{
    char t[32], key[16];
    tc_seeded(t, sizeof(t), "UTC");
    int timed_out = 0;
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k-dl-%d", i);
        Tally__V1__CreateComplaintRequest req = tc_create_req(t, key);
        gc_result r;
        cr_assert_eq(gc_call(tc_cli, GC_COMMANDS("CreateComplaint"), &req.base, NULL, 1, &r), 0);
        cr_assert(r.code == TALLY_GRPC_DEADLINE_EXCEEDED || r.code == TALLY_GRPC_OK,
                  "1 ms deadline: %s \"%s\"", tally_grpc_code_name(r.code), r.details);
        timed_out += r.code == TALLY_GRPC_DEADLINE_EXCEEDED;
        gc_result_release(&r);
    }
    cr_log_info("%d of 20 calls with a 1 ms deadline timed out", timed_out);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k-dl-%d", i);
        Tally__V1__CreateComplaintRequest req = tc_create_req(t, key);
        Tally__V1__CreateComplaintReply *rep = tc_create_rep(&req);
        cr_assert_eq(rep->version, 1);
        call_free(rep);
    }
    const char *p[] = { t };
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1", 1, p), 20);
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM events WHERE tenant_id = $1 AND type = 1", 1, p),
                 20);

    /* The key is taken by a transaction that has not committed: the call has to wait. */
    PGconn *locker = pgdb_connect_dsn(pgdb_owner_dsn());
    PQclear(PQexec(locker, "BEGIN"));
    const char *lp[] = { t };
    PQclear(pgdb_sql(locker,
                     "INSERT INTO idempotency_keys (tenant_id, idempotency_key,"
                     " request_hash, complaint_id, version, created_at)"
                     " VALUES ($1, 'k-locked', '\\x00', 1, 1, now())",
                     1, lp));
    Tally__V1__CreateComplaintRequest req = tc_create_req(t, "k-locked");
    for (int i = 0; i < 3; i++) {
        gc_result g;
        cr_assert_eq(gc_call(tc_cli, GC_COMMANDS("CreateComplaint"), &req.base, NULL, 1, &g), 0);
        cr_assert_eq(g.code, TALLY_GRPC_DEADLINE_EXCEEDED, "a waiting call: %s \"%s\"",
                     tally_grpc_code_name(g.code), g.details);
        gc_result_release(&g);
    }
    PQclear(PQexec(locker, "ROLLBACK"));
    PQfinish(locker);
    Tally__V1__CreateComplaintReply *rep = tc_create_rep(&req);
    cr_assert_eq(rep->version, 1);
    call_free(rep);
    cr_assert_eq(tc_sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1", 1, p), 21);
}

typedef struct bg_move {
    const char *tenant;
    long long id;
    int deadline_ms;
    gc_result r;
} bg_move;

static void *run_move(void *arg)
{
    bg_move *m = arg;
    Tally__V1__ChangeStatusRequest req = tc_move_req(m->tenant, m->id, IN_PROGRESS, 1);
    gc_call(tc_cli, GC_COMMANDS("ChangeStatus"), &req.base, NULL, m->deadline_ms, &m->r);
    return NULL;
}

/* Backends waiting for a lock that pid holds. */
static long long waiting_on(int pid)
{
    char s[16];
    snprintf(s, sizeof(s), "%d", pid);
    const char *p[] = { s };
    return tc_sql_int("SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY"
                      " (pg_blocking_pids(pid))",
                      1, p);
}

/*
 * A statement blocked on a row lock is cancelled on the server when the call's deadline passes:
 * after the lock is released the complaint is unchanged (an uncancelled UPDATE would commit).
 */
Test(commands, a_blocked_statement_is_cancelled_at_the_deadline)
{
    char t[32], ids[24];
    tc_seeded(t, sizeof(t), "UTC");
    long long id = tc_create_ok(t, "k1");
    snprintf(ids, sizeof(ids), "%lld", id);
    PGconn *locker = pgdb_connect_dsn(pgdb_owner_dsn());
    PQclear(PQexec(locker, "BEGIN"));
    const char *p[] = { ids };
    cr_assert_eq(
        pgdb_int(locker, "SELECT 1 FROM complaints WHERE complaint_id = $1 FOR UPDATE", 1, p), 1);
    int pid = PQbackendPID(locker);

    bg_move m = { .tenant = t, .id = id, .deadline_ms = 1500 };
    pthread_t th;
    pthread_create(&th, NULL, run_move, &m);
    bool blocked = false;
    for (int i = 0; i < 100 && !blocked; i++) {
        blocked = waiting_on(pid) > 0;
        if (!blocked)
            tc_sleep_ms(10);
    }
    pthread_join(th, NULL);
    cr_assert(blocked, "the ChangeStatus never waited for the row lock (test is void)");
    cr_assert_eq(m.r.code, TALLY_GRPC_DEADLINE_EXCEEDED, "%s \"%s\"",
                 tally_grpc_code_name(m.r.code), m.r.details);
    gc_result_release(&m.r);
    /* The server must stop waiting on its own; give it the cancel round trip. */
    long long still = 1;
    for (int i = 0; i < 50 && still; i++) {
        still = waiting_on(pid);
        if (still)
            tc_sleep_ms(100);
    }
    cr_assert_eq(still, 0, "the blocked statement outlived the call's deadline by 5 s");
    PQclear(PQexec(locker, "ROLLBACK"));
    PQfinish(locker);

    Tally__V1__GetComplaintReply *g = tc_get_rep(t, id);
    cr_assert_eq(g->complaint->version, 1, "the timed-out ChangeStatus committed after all");
    cr_assert_eq(g->complaint->status, OPEN);
    call_free(g);
    cr_assert_eq(tc_move_ok(t, id, IN_PROGRESS, 1, NULL), 2, "the service is fine afterwards");
}
