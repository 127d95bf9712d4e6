/*
 * with_the_projector_stopped_answers_say_how_stale: answers keep coming; events_applied is short
 * of PostgreSQL's events, lag grows, a token for an unapplied version gives stale=true or
 * FAILED_PRECONDITION with fail_if_stale; the projector back, all is fresh again.
 */
#include "query_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Tally__V1__Freshness *fresh_of(Tally__V1__GetOverviewReply *rep)
{
    cr_assert(rep && rep->freshness, "GetOverview failed with the projector stopped");
    return rep->freshness;
}

Test(query, with_the_projector_stopped_answers_say_how_stale)
{
    tq_seed_rng("with_the_projector_stopped_answers_say_how_stale");
    const tdef *t = &tq_solo;
    gc_status r;
    tq_put_tenant(t);
    tq_import_history(t);
    tq_wait_caught_up(t->id);
    int64_t before = tq_events_of(t->id), c, cv, nv;
    cr_assert(tq_pick(t->id, "status IN (1, 2)", &c, &cv), "no open complaint to resolve");

    sys_projector_stop(&tq_sys);
    int64_t nid = tq_create(t->id, "billing", HIGH, &nv);
    int64_t c2v = tq_move(t->id, c, cv, RESOLVED);
    int64_t after = tq_events_of(t->id);
    cr_assert_eq(after, before + 2);

    /* Answers keep coming; events_applied is short of PostgreSQL's count. */
    Tally__V1__GetOverviewReply *o1 = tq_overview(t->id, 0, NULL, false, "projector stopped");
    Tally__V1__Freshness *f1 = fresh_of(o1);
    if (f1->events_applied != before)
        tq_bad("projector stopped: events_applied %" PRId64 ", want the %" PRId64
               " applied before (PostgreSQL has %" PRId64 ")",
               f1->events_applied, before, after);
    if (f1->stale || f1->token_applied_version)
        tq_bad("projector stopped, no token: stale %d token_applied_version %" PRId64, f1->stale,
               f1->token_applied_version);
    /* The numbers are those of before the two commands. */
    if (o1->overview) {
        const char *p[] = { t->id, o1->overview->today };
        int64_t created =
            tq_sql_int("SELECT count(*) FROM cre WHERE tenant_id = $1 AND day = $2", 2, p);
        if (o1->overview->created_today != created - 1)
            tq_bad("projector stopped: created_today %" PRId64 ", want %" PRId64
                   " (SQL's without the unapplied one)",
                   o1->overview->created_today, created - 1);
    }

    /* The lag grows while nothing is applied. */
    tclock_sleep_ms(300);
    Tally__V1__GetDashboardRequest dq = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    dq.tenant_id = (char *)t->id;
    Tally__V1__GetDashboardReply *d2 = tq_call_ok(tq_sys.q, GC_DASHBOARD("GetDashboard"), &dq.base,
                                                  &tally__v1__get_dashboard_reply__descriptor,
                                                  "GetDashboard with the projector stopped");
    cr_assert(d2 && d2->freshness);
    Tally__V1__Freshness *f2 = d2->freshness;
    if (f2->as_of_ms != f1->as_of_ms || f2->events_applied != before)
        tq_bad("projector stopped: as_of_ms %" PRId64 " -> %" PRId64 ", events_applied %" PRId64
               " -> %" PRId64 " although nothing was applied",
               f1->as_of_ms, f2->as_of_ms, f1->events_applied, f2->events_applied);
    if (!(f2->lag_ms > f1->lag_ms && f2->apply_lag_ms > f1->apply_lag_ms))
        tq_bad("projector stopped: lag_ms %" PRId64 " -> %" PRId64 ", apply_lag_ms %" PRId64
               " -> %" PRId64 " over 300 ms: not growing",
               f1->lag_ms, f2->lag_ms, f1->apply_lag_ms, f2->apply_lag_ms);
    if (f2->lag_ms != f2->server_time_ms - f2->as_of_ms)
        tq_bad("projector stopped: lag_ms %" PRId64 " is not server_time_ms - as_of_ms",
               f2->lag_ms);

    /* Tokens of the unapplied commands: stale, or FAILED_PRECONDITION with fail_if_stale. */
    Tally__V1__ConsistencyToken tnew = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    Tally__V1__ConsistencyToken tmove = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    Tally__V1__ConsistencyToken told = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    tnew.complaint_id = nid;
    tnew.version = nv;
    tmove.complaint_id = c;
    tmove.version = c2v;
    told.complaint_id = c;
    told.version = cv;
    Tally__V1__GetOverviewRequest oq = TALLY__V1__GET_OVERVIEW_REQUEST__INIT;
    oq.tenant_id = (char *)t->id;
    oq.consistency = &tnew;
    Tally__V1__GetOverviewReply *o3;
    gc_call_msg(tq_sys.q, GC_DASHBOARD("GetOverview"), &oq.base,
                &tally__v1__get_overview_reply__descriptor, NULL, 1500, (ProtobufCMessage **)&o3,
                &r);
    if (!o3 || !o3->freshness->stale || o3->freshness->token_applied_version != 0)
        tq_bad("token of a complaint created with the projector stopped: %s, stale %d, "
               "token_applied_version %" PRId64 " (want OK, stale, 0)",
               tally_grpc_code_name(r.code), o3 ? o3->freshness->stale : -1,
               o3 ? o3->freshness->token_applied_version : -1);
    call_free(o3);
    /* A long deadline does not hold the worker past TALLY_QUERY_TOKEN_WAIT_MS (2 s): the stale
       answer comes long before the 30 s deadline would. */
    gc_call_msg(tq_sys.q, GC_DASHBOARD("GetOverview"), &oq.base,
                &tally__v1__get_overview_reply__descriptor, NULL, 30000, (ProtobufCMessage **)&o3,
                &r);
    if (!o3 || !o3->freshness->stale || r.seconds > 15)
        tq_bad("an unapplied token with a 30 s deadline: %s, stale %d after %.1f s (want OK, "
               "stale, within the 2 s wait cap)",
               tally_grpc_code_name(r.code), o3 ? o3->freshness->stale : -1, r.seconds);
    call_free(o3);

    Tally__V1__GetVolumeTrendRequest tq = TALLY__V1__GET_VOLUME_TREND_REQUEST__INIT;
    tq.tenant_id = (char *)t->id;
    tq.consistency = &tmove;
    Tally__V1__GetVolumeTrendReply *t3;
    gc_call_msg(tq_sys.q, GC_DASHBOARD("GetVolumeTrend"), &tq.base,
                &tally__v1__get_volume_trend_reply__descriptor, NULL, 1500,
                (ProtobufCMessage **)&t3, &r);
    if (!t3 || !t3->freshness->stale || t3->freshness->token_applied_version != cv)
        tq_bad("token of a move made with the projector stopped: %s, stale %d, "
               "token_applied_version %" PRId64 " (want OK, stale, %" PRId64 ")",
               tally_grpc_code_name(r.code), t3 ? t3->freshness->stale : -1,
               t3 ? t3->freshness->token_applied_version : -1, cv);
    call_free(t3);

    oq.consistency = &tnew;
    oq.fail_if_stale = true;
    tq_call_code("fail_if_stale, new complaint's token", GC_DASHBOARD("GetOverview"), &oq.base,
                 1500, TALLY_GRPC_FAILED_PRECONDITION, &r);
    if (r.code == TALLY_GRPC_FAILED_PRECONDITION && strncmp(r.details, "consistency", 11) != 0)
        tq_bad("FAILED_PRECONDITION's message \"%s\" does not name consistency", r.details);
    dq.consistency = &tmove;
    dq.fail_if_stale = true;
    tq_call_code("fail_if_stale, the move's token", GC_DASHBOARD("GetDashboard"), &dq.base, 1500,
                 TALLY_GRPC_FAILED_PRECONDITION, &r);

    /* A token that was applied before the stop is not stale, even with fail_if_stale. */
    Tally__V1__GetOverviewReply *o4 = tq_overview(t->id, 0, &told, true, "an applied token");
    if (o4 && (o4->freshness->stale || o4->freshness->token_applied_version != cv))
        tq_bad("applied token (%" PRId64 ", %" PRId64 "): stale %d token_applied_version %" PRId64,
               c, cv, o4->freshness->stale, o4->freshness->token_applied_version);
    call_free(o4);

    /* The projector back: it catches up, and the tokens are fresh. */
    sys_projector_start(&tq_sys);
    tq_wait_caught_up(t->id);
    Tally__V1__GetOverviewReply *o5 = tq_overview(t->id, 100, &tmove, true, "projector restarted");
    if (o5) {
        tq_check_fresh_tok("projector restarted", t->id, o5->freshness, &tmove);
        tq_check_overview("projector restarted", t->id, 100, o5->overview,
                          o5->freshness->server_time_ms);
    }
    call_free(o5);
    call_free(o1);
    call_free(d2);
}
