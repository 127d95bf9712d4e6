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

/*
 * Puts t, its categories and its agents, stopping at the first failure. changed counts the
 * puts that changed something. 0, or -1 with st saying why.
 */
int rpc_put_tenant(gc_client *c, const world_tenant *t, int *changed, gc_status *st);

#endif
