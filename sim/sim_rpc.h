/*
 * sim_rpc: what tally-sim (and the tests' traffic, tests/support/traffic.c) call on
 * tally.v1.ComplaintCommands: the method paths, for gc_call_msg (common/gclient.h), and
 * rpc_put_tenant.
 *
 * rpc_put_tenant writes a tenant's reference data (the tenant, its categories, its agents) with
 * the Put* upserts, which change nothing (and write no event) when the data is already there.
 * Nothing here prints: a failure leaves the status in a gc_status ("NOT_FOUND: tenant_id: no
 * tenant \"acme\""), which the caller prints.
 */
#ifndef TALLY_SIM_RPC_H
#define TALLY_SIM_RPC_H

#include "gclient.h"
#include "sim_world.h"

/* Method paths of tally.v1.ComplaintCommands. */
#define RPC_PUT_TENANT    "/tally.v1.ComplaintCommands/PutTenant"
#define RPC_PUT_CATEGORY  "/tally.v1.ComplaintCommands/PutCategory"
#define RPC_PUT_AGENT     "/tally.v1.ComplaintCommands/PutAgent"
#define RPC_CREATE        "/tally.v1.ComplaintCommands/CreateComplaint"
#define RPC_ASSIGN        "/tally.v1.ComplaintCommands/AssignComplaint"
#define RPC_CHANGE_STATUS "/tally.v1.ComplaintCommands/ChangeStatus"
#define RPC_GET_COMPLAINT "/tally.v1.ComplaintCommands/GetComplaint"
#define RPC_IMPORT        "/tally.v1.ComplaintCommands/ImportComplaints"

/*
 * Puts t, its categories and its agents, stopping at the first failure. changed counts the
 * puts that changed something. 0, or -1 with st saying why.
 */
int rpc_put_tenant(gc_client *c, const world_tenant *t, int *changed, gc_status *st);

#endif
