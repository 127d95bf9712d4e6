/* calls: the tests' typed unary calls (calls.h). */
#include "calls.h"

#include "tally/v1/commands.pb-c.h"

#include <criterion/criterion.h>
#include <string.h>

#define COMMAND_MS 60000 /* a cap for the live commands, not a timing assertion */

void *call_ok(gc_client *c, const char *method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *reply_desc, int deadline_ms)
{
    ProtobufCMessage *rep = NULL;
    gc_status st;
    int rc = gc_call_msg(c, method, req, reply_desc, NULL, deadline_ms, &rep, &st);
    cr_assert_eq(rc, 0, "%s: %s", method, st.message);
    return rep;
}

void call_free(void *reply)
{
    if (reply)
        protobuf_c_message_free_unpacked(reply, NULL);
}

int call_code(gc_client *c, const char *method, const ProtobufCMessage *req, int deadline_ms,
              gc_status *st)
{
    gc_status local;
    if (!st)
        st = &local;
    gc_call_msg(c, method, req, NULL, NULL, deadline_ms, NULL, st);
    return st->code;
}

bool call_names_field(const char *details, const char *field, const char *next)
{
    size_t n = strlen(field);
    return strncmp(details, field, n) == 0 && details[n] && strchr(next, details[n]);
}

void call_check_refusal(const char *what, const gc_status *st, int code, const char *field)
{
    const rpc_status_view *v = &st->rich;
    cr_assert_eq(st->code, code, "%s: want %s, got %s \"%s\"", what, tally_grpc_code_name(code),
                 tally_grpc_code_name(st->code), st->details);
    if (field)
        cr_assert(call_names_field(st->details, field, ":"),
                  "%s: message \"%s\" does not start with \"%s:\"", what, st->details, field);
    cr_assert(st->has_rich, "%s: no google.rpc.Status in grpc-status-details-bin", what);
    cr_assert_eq(v->code, code, "%s: google.rpc.Status.code %d", what, v->code);
    cr_assert_str_eq(v->message, st->details, "%s: google.rpc.Status.message", what);
    cr_assert_str_eq(v->domain, RPC_DOMAIN, "%s: ErrorInfo.domain", what);
    cr_assert(v->info.reason[0], "%s: ErrorInfo without a reason", what);
    cr_assert_eq(v->has_bad_request, code == TALLY_GRPC_INVALID_ARGUMENT, "%s: BadRequest", what);
    if (code == TALLY_GRPC_INVALID_ARGUMENT && field)
        cr_assert(call_names_field(v->field, field, ":.[") || strcmp(v->field, field) == 0,
                  "%s: BadRequest names field \"%s\", not %s", what, v->field, field);
    cr_assert_eq(v->has_retry,
                 code == TALLY_GRPC_UNAVAILABLE || code == TALLY_GRPC_RESOURCE_EXHAUSTED,
                 "%s: RetryInfo", what);
    if (v->has_retry)
        cr_assert_gt(v->retry_ms, 0, "%s: RetryInfo without a delay", what);
}

void call_expect(gc_client *c, const char *what, const char *method, const ProtobufCMessage *req,
                 int code, const char *field, int deadline_ms)
{
    gc_status st;
    call_code(c, method, req, deadline_ms, &st);
    call_check_refusal(what, &st, code, field);
}

int64_t call_create(gc_client *c, const char *tenant, const char *key, const char *category,
                    int priority, int64_t *id)
{
    Tally__V1__CreateComplaintRequest r = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.idempotency_key = (char *)key;
    r.category_id = (char *)category;
    r.priority = (Tally__V1__Priority)priority;
    r.title = "Live one";
    r.customer_id = "cust-live";
    Tally__V1__CreateComplaintReply *rep =
        call_ok(c, GC_COMMANDS("CreateComplaint"), &r.base,
                &tally__v1__create_complaint_reply__descriptor, COMMAND_MS);
    *id = rep->complaint_id;
    int64_t version = rep->version;
    call_free(rep);
    return version;
}

int64_t call_assign(gc_client *c, const char *tenant, int64_t id, int64_t expected,
                    const char *agent)
{
    Tally__V1__AssignComplaintRequest r = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.complaint_id = id;
    r.agent_id = (char *)agent;
    r.expected_version = expected;
    Tally__V1__AssignComplaintReply *rep =
        call_ok(c, GC_COMMANDS("AssignComplaint"), &r.base,
                &tally__v1__assign_complaint_reply__descriptor, COMMAND_MS);
    int64_t version = rep->version;
    call_free(rep);
    return version;
}

int64_t call_move(gc_client *c, const char *tenant, int64_t id, int64_t expected, int status,
                  const char *actor)
{
    Tally__V1__ChangeStatusRequest r = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.complaint_id = id;
    r.status = (Tally__V1__Status)status;
    r.expected_version = expected;
    r.actor = (char *)actor;
    r.note = "";
    Tally__V1__ChangeStatusReply *rep =
        call_ok(c, GC_COMMANDS("ChangeStatus"), &r.base,
                &tally__v1__change_status_reply__descriptor, COMMAND_MS);
    int64_t version = rep->version;
    call_free(rep);
    return version;
}
