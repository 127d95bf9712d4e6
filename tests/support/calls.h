/*
 * calls: the typed unary calls the integration tests make, over gc_call_msg of common/gclient.h
 * (pack, call, status, decode). A test says what it expects of a call in one line: that it
 * succeeds and replies with a message, or that it is refused with a status code and a message
 * that starts with the offending field's path (the contract of types.proto). Codes are
 * enum tally_grpc_code of common/err.h, the one table of them.
 *
 * The asserting helpers stop the test at the first surprise (cr_assert); a test that wants to
 * count mismatches and carry on calls gc_call_msg itself and judges with call_names_field.
 */
#ifndef TALLY_TEST_CALLS_H
#define TALLY_TEST_CALLS_H

#include "err.h"
#include "gclient.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * Calls method on c and asserts the reply is OK and decodes with reply_desc; the message of a
 * failure names method and "CODE: details". Returns the reply: caller frees with call_free.
 */
void *call_ok(gc_client *c, const char *method, const ProtobufCMessage *req,
              const ProtobufCMessageDescriptor *reply_desc, int deadline_ms);

/* Frees a reply of call_ok or gc_call_msg; NULL is fine. */
void call_free(void *reply);

/* Calls method on c for its status only: the code, and st (may be NULL) filled as gc_call_msg. */
int call_code(gc_client *c, const char *method, const ProtobufCMessage *req, int deadline_ms,
              gc_status *st);

/*
 * Whether details starts with the path field followed by one of the characters of next (":"
 * for "field: reason"; ":.[" also takes a path into the field, "field.sub: …", "field[2]: …").
 */
bool call_names_field(const char *details, const char *field, const char *next);

/*
 * Asserts that a call that ended with st was refused with code and, when field is not NULL,
 * that its message starts with "field:". And that it says so to a program: a google.rpc.Status
 * with the same code and message, an ErrorInfo of domain tally.v1 with a reason, a BadRequest
 * naming the field on INVALID_ARGUMENT, a RetryInfo on UNAVAILABLE and RESOURCE_EXHAUSTED.
 * what names the case in the failure's message.
 */
void call_check_refusal(const char *what, const gc_status *st, int code, const char *field);

/* Calls method on c and asserts its refusal as call_check_refusal. */
void call_expect(gc_client *c, const char *what, const char *method, const ProtobufCMessage *req,
                 int code, const char *field, int deadline_ms);

/*
 * Live commands a test needs done (not tested): each asserts the call succeeds and returns the
 * complaint's new version. call_create's complaint has the title "Live one" for customer
 * "cust-live", its id goes to *id; call_assign's agent "" unassigns; expected is the version the
 * command expects.
 */
int64_t call_create(gc_client *c, const char *tenant, const char *key, const char *category,
                    int priority, int64_t *id);
int64_t call_assign(gc_client *c, const char *tenant, int64_t id, int64_t expected,
                    const char *agent);
int64_t call_move(gc_client *c, const char *tenant, int64_t id, int64_t expected, int status,
                  const char *actor);

#endif
