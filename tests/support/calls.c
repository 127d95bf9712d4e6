/* calls: the tests' typed unary calls (calls.h). */
#include "calls.h"

#include <criterion/criterion.h>
#include <string.h>

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

void call_check_refusal(const char *what, int got, const char *details, int code, const char *field)
{
    cr_assert_eq(got, code, "%s: want %s, got %s \"%s\"", what, tally_grpc_code_name(code),
                 tally_grpc_code_name(got), details);
    if (field)
        cr_assert(call_names_field(details, field, ":"),
                  "%s: message \"%s\" does not start with \"%s:\"", what, details, field);
}

void call_expect(gc_client *c, const char *what, const char *method, const ProtobufCMessage *req,
                 int code, const char *field, int deadline_ms)
{
    gc_status st;
    call_code(c, method, req, deadline_ms, &st);
    call_check_refusal(what, st.code, st.details, code, field);
}
