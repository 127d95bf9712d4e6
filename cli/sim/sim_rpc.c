/* sim_rpc: typed unary calls of tally.v1.ComplaintCommands. See sim_rpc.h. */
#include "sim_rpc.h"

#include "err.h"
#include "tally/v1/commands.pb-c.h"

#include <stdio.h>
#include <string.h>

#define PUT_DEADLINE_MS 10000

bool rpc_transient(int code)
{
    return code == RPC_CANCELLED || code == RPC_DEADLINE_EXCEEDED || code == RPC_UNAVAILABLE;
}

int rpc_call(gc_client *c, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *reply_desc, int deadline_ms, rpc_status *st,
             ProtobufCMessage **reply)
{
    gc_result res;
    int rc = 0;
    if (reply)
        *reply = NULL;
    st->code = 2;
    st->seconds = 0;
    if (gc_call(c, method, req, NULL, deadline_ms, &res) != 0) {
        snprintf(st->message, sizeof(st->message), "UNKNOWN: %s: the call could not be started",
                 method);
        return TALLY_EUNKNOWN;
    }
    st->code = res.code;
    st->seconds = res.seconds;
    if (res.code != 0) {
        snprintf(st->message, sizeof(st->message), "%s: %s", tally_grpc_code_name(res.code),
                 res.details[0] ? res.details : "(no details)");
        rc = tally_err_from_grpc_code(res.code);
        if (rc == 0) /* never for a code other than OK; keeps "0 means *reply is set" */
            rc = TALLY_EUNKNOWN;
        goto out_release;
    }
    snprintf(st->message, sizeof(st->message), "OK");
    if (!reply)
        goto out_release;
    if (res.len > RPC_REPLY_MAX) {
        snprintf(st->message, sizeof(st->message), "INTERNAL: %s: a reply of %zu bytes (over %d)",
                 method, res.len, RPC_REPLY_MAX);
        rc = TALLY_EINTERNAL;
        goto out_release;
    }
    *reply = protobuf_c_message_unpack(reply_desc, NULL, res.len, res.data);
    if (!*reply) {
        snprintf(st->message, sizeof(st->message), "INTERNAL: %s: the reply does not decode",
                 method);
        rc = TALLY_EINTERNAL;
    }
out_release:
    gc_result_release(&res);
    return rc;
}

int rpc_put_tenant(gc_client *c, const world_tenant *t, int *changed, rpc_status *st)
{
    Tally__V1__PutTenantRequest tenant = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    ProtobufCMessage *reply;
    int rc;
    tenant.tenant_id = (char *)t->id;
    tenant.name = (char *)t->name;
    tenant.time_zone = (char *)t->zone;
    rc = rpc_call(c, RPC_PUT_TENANT, &tenant.base, &tally__v1__put_tenant_reply__descriptor,
                  PUT_DEADLINE_MS, st, &reply);
    if (rc != 0)
        return rc;
    *changed += ((Tally__V1__PutTenantReply *)reply)->changed;
    protobuf_c_message_free_unpacked(reply, NULL);
    for (int i = 0; i < t->ncategories; i++) {
        Tally__V1__PutCategoryRequest cat = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        cat.tenant_id = (char *)t->id;
        cat.category_id = (char *)t->categories[i]->id;
        cat.name = (char *)t->categories[i]->name;
        rc = rpc_call(c, RPC_PUT_CATEGORY, &cat.base, &tally__v1__put_category_reply__descriptor,
                      PUT_DEADLINE_MS, st, &reply);
        if (rc != 0)
            return rc;
        *changed += ((Tally__V1__PutCategoryReply *)reply)->changed;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    for (int i = 0; i < t->nagents; i++) {
        Tally__V1__PutAgentRequest agent = TALLY__V1__PUT_AGENT_REQUEST__INIT;
        agent.tenant_id = (char *)t->id;
        agent.agent_id = (char *)t->agent_ids[i];
        agent.name = (char *)t->agent_names[i];
        rc = rpc_call(c, RPC_PUT_AGENT, &agent.base, &tally__v1__put_agent_reply__descriptor,
                      PUT_DEADLINE_MS, st, &reply);
        if (rc != 0)
            return rc;
        *changed += ((Tally__V1__PutAgentReply *)reply)->changed;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    return 0;
}
