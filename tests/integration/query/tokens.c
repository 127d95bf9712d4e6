/*
 * a_token_sees_its_commands_effect: a query carrying a command's consistency token (sent at once,
 * fail_if_stale) answers with that command in (and with new categories and agents).
 */
#include "query_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Puts a category and an agent the query workers have not seen yet, and waits for them. */
static void put_late_ones(const tdef *t)
{
    Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    pc.tenant_id = (char *)t->id;
    pc.category_id = "late-cat";
    pc.name = "a late category";
    call_free(tq_cmd_ok(GC_COMMANDS("PutCategory"), &pc.base,
                        &tally__v1__put_category_reply__descriptor));
    Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
    pa.tenant_id = (char *)t->id;
    pa.agent_id = "late-agent";
    pa.name = "a late agent";
    call_free(
        tq_cmd_ok(GC_COMMANDS("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor));
    tq_wait_caught_up(t->id);
}

/*
 * Command kind 0..6 on a random complaint in a state that allows it (late: use the late
 * category and agent): its token, or complaint_id 0 when no complaint was in that state.
 */
static Tally__V1__ConsistencyToken token_command(const tdef *t, int kind, bool late)
{
    Tally__V1__ConsistencyToken tok = TALLY__V1__CONSISTENCY_TOKEN__INIT;
    int64_t id = 0, v = 0;
    switch (kind) {
    case 0:
    case 6:
        id = tq_create(t->id, late && kind == 6 ? "late-cat" : t->cats[tq_rnd_below(4)],
                       tq_pick_priority(), &v);
        break;
    case 1:
        if (tq_pick(t->id, "status IN (1, 2, 3)", &id, &v))
            v = tq_assign(t->id, id, v, late ? "late-agent" : tq_busy_agent(t, NULL));
        break;
    case 2:
        if (tq_pick(t->id, "status = 1", &id, &v))
            v = tq_move(t->id, id, v, IN_PROGRESS);
        break;
    case 3:
        if (tq_pick(t->id, "status IN (1, 2)", &id, &v))
            v = tq_move(t->id, id, v, RESOLVED);
        break;
    case 4:
        if (tq_pick(t->id, "status = 3", &id, &v))
            v = tq_move(t->id, id, v, OPEN);
        break;
    case 5:
        if (tq_pick(t->id, "status = 3", &id, &v))
            v = tq_move(t->id, id, v, CLOSED);
        break;
    }
    tok.complaint_id = id;
    tok.version = v;
    return tok;
}

/* The panel that shows command kind's effect, asked at once with its token (fail_if_stale). */
static void token_query(const char *what, const tdef *t, int kind, Tally__V1__ConsistencyToken *tok)
{
    qrange dflt = { "", "" };
    if (kind == 0 || kind == 2 || kind == 5) {
        Tally__V1__GetOverviewReply *rep = tq_overview(t->id, 100, tok, true, what);
        if (rep) {
            tq_check_fresh_tok(what, t->id, rep->freshness, tok);
            tq_check_overview(what, t->id, 100, rep->overview, rep->freshness->server_time_ms);
        }
        call_free(rep);
    } else if (kind == 1) {
        Tally__V1__GetAgentPerformanceRequest q = TALLY__V1__GET_AGENT_PERFORMANCE_REQUEST__INIT;
        q.tenant_id = (char *)t->id;
        q.consistency = tok;
        q.fail_if_stale = true;
        q.sort_by = SORT_OPEN;
        q.limit = 3;
        Tally__V1__GetAgentPerformanceReply *rep =
            tq_call_ok(tq_sys.q, GC_DASHBOARD("GetAgentPerformance"), &q.base,
                       &tally__v1__get_agent_performance_reply__descriptor, what);
        if (rep) {
            tq_check_fresh_tok(what, t->id, rep->freshness, tok);
            tq_check_agent_pages(what, t->id, &dflt, SORT_OPEN, false, 3, rep->performance,
                                 rep->freshness->server_time_ms);
        }
        call_free(rep);
    } else if (kind == 3) {
        Tally__V1__GetResolutionStatsRequest q = TALLY__V1__GET_RESOLUTION_STATS_REQUEST__INIT;
        q.tenant_id = (char *)t->id;
        q.consistency = tok;
        q.fail_if_stale = true;
        q.group_by = BY_BOTH;
        Tally__V1__GetResolutionStatsReply *rep =
            tq_call_ok(tq_sys.q, GC_DASHBOARD("GetResolutionStats"), &q.base,
                       &tally__v1__get_resolution_stats_reply__descriptor, what);
        if (rep) {
            tq_check_fresh_tok(what, t->id, rep->freshness, tok);
            tq_check_stats(what, t->id, &dflt, BY_BOTH, NULL, rep->stats,
                           rep->freshness->server_time_ms);
        }
        call_free(rep);
    } else if (kind == 4) {
        Tally__V1__GetDashboardRequest q = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
        q.tenant_id = (char *)t->id;
        q.consistency = tok;
        q.fail_if_stale = true;
        q.oldest_open_limit = 100;
        Tally__V1__GetDashboardReply *rep =
            tq_call_ok(tq_sys.q, GC_DASHBOARD("GetDashboard"), &q.base,
                       &tally__v1__get_dashboard_reply__descriptor, what);
        if (rep) {
            int64_t now = rep->freshness->server_time_ms;
            tq_check_fresh_tok(what, t->id, rep->freshness, tok);
            tq_check_overview(what, t->id, 100, rep->overview, now);
            tq_check_trend(what, t->id, &dflt, 0, NULL, rep->volume_trend, now);
            tq_check_stats(what, t->id, &dflt, 0, NULL, rep->resolution_stats, now);
            tq_check_agent_pages(what, t->id, &dflt, 0, false, 0, rep->agent_performance, now);
            tq_check_distribution(what, t->id, &dflt, NULL, 0, rep->category_distribution, now);
        }
        call_free(rep);
    } else {
        Tally__V1__GetCategoryDistributionRequest q =
            TALLY__V1__GET_CATEGORY_DISTRIBUTION_REQUEST__INIT;
        q.tenant_id = (char *)t->id;
        q.consistency = tok;
        q.fail_if_stale = true;
        Tally__V1__GetCategoryDistributionReply *rep =
            tq_call_ok(tq_sys.q, GC_DASHBOARD("GetCategoryDistribution"), &q.base,
                       &tally__v1__get_category_distribution_reply__descriptor, what);
        if (rep) {
            tq_check_fresh_tok(what, t->id, rep->freshness, tok);
            tq_check_distribution(what, t->id, &dflt, NULL, 0, rep->distribution,
                                  rep->freshness->server_time_ms);
        }
        call_free(rep);
    }
}

/*
 * Each command is followed at once by a query carrying its token (fail_if_stale): the answer
 * includes the command, so it equals SQL (everything before it was applied already).
 */
Test(query, a_token_sees_its_commands_effect)
{
    tq_seed_rng("a_token_sees_its_commands_effect");
    const tdef *t = &tq_solo;
    tq_put_tenant(t);
    tq_import_history(t);
    tq_wait_caught_up(t->id);
    for (int i = 0; i < 28; i++) {
        char what[160];
        int kind = i % 7;
        if (i == 10)
            put_late_ones(t);
        Tally__V1__ConsistencyToken tok = token_command(t, kind, i > 10);
        if (!tok.complaint_id)
            continue; /* no complaint was in the state this command needs */
        snprintf(what, sizeof(what), "command %d (kind %d), then a query with its token", i, kind);
        token_query(what, t, kind, &tok);
    }

    /* Many quick pairs: each answer includes its creation, and its freshness is consistent. */
    for (int i = 0; i < 150; i++) {
        char what[96];
        int64_t v, id = tq_create(t->id, t->cats[tq_rnd_below(4)], tq_pick_priority(), &v);
        Tally__V1__ConsistencyToken tok = TALLY__V1__CONSISTENCY_TOKEN__INIT;
        tok.complaint_id = id;
        tok.version = v;
        snprintf(what, sizeof(what), "creation %d, then GetOverview with its token", i);
        Tally__V1__GetOverviewReply *rep = tq_overview(t->id, 1, &tok, true, what);
        if (rep) {
            const char *p[] = { t->id, rep->overview->today };
            tq_check_fresh_tok(what, t->id, rep->freshness, &tok);
            int64_t created =
                tq_sql_int("SELECT count(*) FROM cre WHERE tenant_id = $1 AND day = $2", 2, p);
            if (rep->overview->created_today != created)
                tq_bad("%s: created_today %" PRId64 ", want %" PRId64, what,
                       rep->overview->created_today, created);
        }
        call_free(rep);
    }
}
