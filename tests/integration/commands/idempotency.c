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

/* FindComplaintByKey of a key answers the create's reply again, the same after the complaint
   moved on; a key never used is NOT_FOUND (IDEMPOTENCY_KEY_UNUSED), and so is another
   tenant's key. */
Test(commands, find_complaint_by_key_answers_the_create_again)
{
    char t[32], t2[32];
    tc_seeded(t, sizeof(t), "UTC");
    tc_seeded(t2, sizeof(t2), "UTC");
    Tally__V1__CreateComplaintRequest req = tc_create_req(t, "find-me");
    Tally__V1__CreateComplaintReply *first = tc_create_rep(&req);
    tc_move_ok(t, first->complaint_id, IN_PROGRESS, 1, NULL);
    Tally__V1__FindComplaintByKeyRequest find = TALLY__V1__FIND_COMPLAINT_BY_KEY_REQUEST__INIT;
    find.tenant_id = t;
    find.idempotency_key = "find-me";
    Tally__V1__FindComplaintByKeyReply *got =
        call_ok(tc_cli, GC_COMMANDS("FindComplaintByKey"), &find.base,
                &tally__v1__find_complaint_by_key_reply__descriptor, 10000);
    cr_assert_eq(got->complaint_id, first->complaint_id);
    cr_assert_eq(got->version, 1, "the create's reply: version 1, whatever happened since");
    cr_assert_eq(got->created_at_ms, first->created_at_ms);
    call_free(got);

    find.idempotency_key = "never-used";
    gc_status r = tc_call(GC_COMMANDS("FindComplaintByKey"), &find.base);
    call_check_refusal("a key never used", &r, TALLY_GRPC_NOT_FOUND, "idempotency_key");
    cr_assert_str_eq(r.rich.info.reason, "IDEMPOTENCY_KEY_UNUSED");
    find.tenant_id = t2; /* another tenant's key: nothing to learn about it */
    find.idempotency_key = "find-me";
    r = tc_call(GC_COMMANDS("FindComplaintByKey"), &find.base);
    call_check_refusal("another tenant's key", &r, TALLY_GRPC_NOT_FOUND, "idempotency_key");
    find.idempotency_key = "not a key";
    r = tc_call(GC_COMMANDS("FindComplaintByKey"), &find.base);
    call_check_refusal("a malformed key", &r, TALLY_GRPC_INVALID_ARGUMENT, "idempotency_key");
    call_free(first);
}
