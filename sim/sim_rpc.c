/* sim_rpc: what tally-sim calls on tally.v1.ComplaintCommands. See sim_rpc.h. */
#include "sim_rpc.h"

#include "tally/v1/commands.pb-c.h"

#define PUT_DEADLINE_MS 10000

int rpc_put_tenant(gc_client *c, const world_tenant *t, int *changed, gc_status *st)
{
    Tally__V1__PutTenantRequest tenant = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    ProtobufCMessage *reply;
    int rc;
    tenant.tenant_id = (char *)t->id;
    tenant.name = (char *)t->name;
    tenant.time_zone = (char *)t->zone;
    rc = gc_call_msg(c, GC_COMMANDS("PutTenant"), &tenant.base,
                     &tally__v1__put_tenant_reply__descriptor, NULL, PUT_DEADLINE_MS, &reply, st);
    if (rc != 0)
        return rc;
    *changed += ((Tally__V1__PutTenantReply *)reply)->changed;
    protobuf_c_message_free_unpacked(reply, NULL);
    for (int i = 0; i < t->ncategories; i++) {
        Tally__V1__PutCategoryRequest cat = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        cat.tenant_id = (char *)t->id;
        cat.category_id = (char *)t->categories[i]->id;
        cat.name = (char *)t->categories[i]->name;
        rc = gc_call_msg(c, GC_COMMANDS("PutCategory"), &cat.base,
                         &tally__v1__put_category_reply__descriptor, NULL, PUT_DEADLINE_MS, &reply,
                         st);
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
        rc =
            gc_call_msg(c, GC_COMMANDS("PutAgent"), &agent.base,
                        &tally__v1__put_agent_reply__descriptor, NULL, PUT_DEADLINE_MS, &reply, st);
        if (rc != 0)
            return rc;
        *changed += ((Tally__V1__PutAgentReply *)reply)->changed;
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    return 0;
}
