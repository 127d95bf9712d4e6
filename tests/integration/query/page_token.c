/*
 * a_page_token_holds_on_a_query_svc_new_to_the_tenant: a next-page token from one query-svc is
 * taken by a new one, in time zones whose day is not UTC's.
 */
#include "query_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * A next-page token used on a query-svc that has not seen the tenant yet (another replica
 * behind the gateway's balancer, or one just restarted). Such a query-svc learns the tenant's
 * time zone from its first read, so until then its default range is the UTC one: a token was
 * refused as "made for another range" whenever the tenant's day was not UTC's. At any hour one
 * of these two tenants (UTC+14 from 10:00 UTC, UTC-11 before 11:00 UTC) has another day than
 * UTC.
 */
static const tdef east = { "east", "Pacific/Kiritimati", { "web" }, { "a1", "a2", "a3", "a4" }, 0,
                           NULL };
static const tdef west = { "west", "Pacific/Pago_Pago", { "web" }, { "a1", "a2", "a3", "a4" }, 0,
                           NULL };

Test(query, a_page_token_holds_on_a_query_svc_new_to_the_tenant)
{
    const tdef *both[] = { &east, &west };
    tq_seed_rng("a_page_token_holds_on_a_query_svc_new_to_the_tenant");
    for (int i = 0; i < 2; i++) {
        tq_put_tenant(both[i]);
        tq_wait_caught_up(both[i]->id);
    }
    char *tok[2];
    for (int i = 0; i < 2; i++) {
        Tally__V1__GetAgentPerformanceRequest aq = tq_agents_req(NULL, SORT_ID, 2, "");
        aq.tenant_id = (char *)both[i]->id;
        Tally__V1__GetAgentPerformanceReply *page =
            tq_call_ok(tq_sys.q, GC_DASHBOARD("GetAgentPerformance"), &aq.base,
                       &tally__v1__get_agent_performance_reply__descriptor, "a first page");
        cr_assert(page && page->performance && page->performance->next_page_token[0],
                  "%s: 4 agents, 2 per page, and no next_page_token", both[i]->id);
        tok[i] = strdup(page->performance->next_page_token);
        call_free(page);
    }
    sys_query_restart(&tq_sys);
    for (int i = 0; i < 2; i++) {
        /* page_size, limit's AIP-158 name, pages the same */
        Tally__V1__GetAgentPerformanceRequest aq = tq_agents_req(NULL, SORT_ID, 0, tok[i]);
        aq.page_size = 2;
        aq.tenant_id = (char *)both[i]->id;
        Tally__V1__GetAgentPerformanceReply *page =
            tq_call_ok(tq_sys.q, GC_DASHBOARD("GetAgentPerformance"), &aq.base,
                       &tally__v1__get_agent_performance_reply__descriptor,
                       i ? "the next page, UTC-11, on a new query-svc"
                         : "the next page, UTC+14, on a new query-svc");
        cr_expect(page && page->performance && page->performance->n_agents == 2 &&
                      !page->performance->next_page_token[0],
                  "%s: the second page is not the last 2 agents", both[i]->id);
        call_free(page);
        free(tok[i]);
    }
}
