/*
 * sim_rpc: typed unary calls of tally.v1.ComplaintCommands for tally-sim, over gclient.
 *
 * rpc_call packs a request, makes the call and decodes the reply; a failure leaves the gRPC
 * status code and a one-line message in an rpc_status ("NOT_FOUND: tenant_id: no tenant
 * \"acme\""), which the caller prints. Nothing here prints.
 *
 * rpc_put_tenant writes a tenant's reference data (the tenant, its categories, its agents) with
 * the Put* upserts, which change nothing (and write no event) when the data is already there.
 */
#ifndef TALLY_SIM_RPC_H
#define TALLY_SIM_RPC_H

#include "gclient.h"
#include "sim_world.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#define RPC_REPLY_MAX (4 << 20) /* the largest reply decoded */

/* Method paths of tally.v1.ComplaintCommands. */
#define RPC_PUT_TENANT    "/tally.v1.ComplaintCommands/PutTenant"
#define RPC_PUT_CATEGORY  "/tally.v1.ComplaintCommands/PutCategory"
#define RPC_PUT_AGENT     "/tally.v1.ComplaintCommands/PutAgent"
#define RPC_CREATE        "/tally.v1.ComplaintCommands/CreateComplaint"
#define RPC_ASSIGN        "/tally.v1.ComplaintCommands/AssignComplaint"
#define RPC_CHANGE_STATUS "/tally.v1.ComplaintCommands/ChangeStatus"
#define RPC_GET_COMPLAINT "/tally.v1.ComplaintCommands/GetComplaint"
#define RPC_IMPORT        "/tally.v1.ComplaintCommands/ImportComplaints"

/* gRPC status codes tally-sim acts on. */
enum {
    RPC_OK = 0,
    RPC_CANCELLED = 1,
    RPC_DEADLINE_EXCEEDED = 4,
    RPC_NOT_FOUND = 5,
    RPC_ALREADY_EXISTS = 6,
    RPC_FAILED_PRECONDITION = 9,
    RPC_ABORTED = 10,
    RPC_UNAVAILABLE = 14,
};

typedef struct rpc_status {
    int code;           /* the gRPC status code; 2 (UNKNOWN) when no call was made */
    char message[1100]; /* "CODE: details" */
    double seconds;     /* the call's wall time */
} rpc_status;

/*
 * Calls method with req and decodes its reply with reply_desc into *reply (caller frees with
 * protobuf_c_message_free_unpacked(*reply, NULL)). 0 on OK; otherwise a negative TALLY_E* (the
 * gRPC code's, or TALLY_EINTERNAL for a reply that does not decode) with st filled in and
 * *reply NULL. reply may be NULL when the caller needs only the status.
 */
/* Whether a call that failed with code may work when tried again later (the server restarts,
 * is overloaded, or went away mid-call): CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE. */
bool rpc_transient(int code);

int rpc_call(gc_client *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *reply_desc, int deadline_ms, rpc_status *st,
             ProtobufCMessage **reply);

/* Puts t, its categories and its agents. changed counts the puts that changed something. */
int rpc_put_tenant(gc_client *c, const world_tenant *t, int *changed, rpc_status *st);

#endif
