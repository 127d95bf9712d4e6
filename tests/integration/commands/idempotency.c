/* Idempotency: a retry returns the first reply; other content under the key is ALREADY_EXISTS. */
#include "cmd_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(commands, a_retry_returns_the_first_reply_and_other_content_is_already_exists)
{
    char t[32], t2[32];
    tc_seeded(t, sizeof(t), "UTC");
    Tally__V1__CreateComplaintRequest req = tc_create_req(t, "retry-key");
    Tally__V1__CreateComplaintReply *first = tc_create_rep(&req);
    counts before = tc_count_rows(t);
    for (int i = 0; i < 3; i++) {
        Tally__V1__CreateComplaintReply *again = tc_create_rep(&req);
        cr_assert_eq(again->complaint_id, first->complaint_id);
        cr_assert_eq(again->version, 1);
        cr_assert_eq(again->created_at_ms, first->created_at_ms);
        call_free(again);
    }
    /* Even after the complaint moved on, the retry answers the first reply. */
    tc_move_ok(t, first->complaint_id, IN_PROGRESS, 1, NULL);
    before = tc_count_rows(t);
    Tally__V1__CreateComplaintReply *again = tc_create_rep(&req);
    cr_assert_eq(again->complaint_id, first->complaint_id);
    cr_assert_eq(again->version, 1);
    call_free(again);
    tc_assert_unchanged(&before, t, "retries");

    const char *fields[] = { "title", "description", "category_id", "priority", "customer_id" };
    for (size_t i = 0; i < 5; i++) {
        Tally__V1__CreateComplaintRequest other = tc_create_req(t, "retry-key");
        switch (i) {
        case 0:
            other.title = "Another title";
            break;
        case 1:
            other.description = "Another description";
            break;
        case 2:
            other.category_id = "c2";
            break;
        case 3:
            other.priority = TALLY__V1__PRIORITY__PRIORITY_LOW;
            break;
        default:
            other.customer_id = "cust-2";
        }
        gc_status r = tc_call(GC_COMMANDS("CreateComplaint"), &other.base);
        call_check_refusal(fields[i], &r, TALLY_GRPC_ALREADY_EXISTS, "idempotency_key");
    }
    tc_assert_unchanged(&before, t, "ALREADY_EXISTS refusals");

    /* Keys are per tenant: the same key in another tenant makes another complaint. */
    tc_seeded(t2, sizeof(t2), "UTC");
    req.tenant_id = t2;
    Tally__V1__CreateComplaintReply *theirs = tc_create_rep(&req);
    cr_assert_neq(theirs->complaint_id, first->complaint_id);
    call_free(theirs);
    call_free(first);
}
