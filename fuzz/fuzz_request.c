/*
 * fuzz_request: the bytes of a gRPC request as the runtime decodes them (common/srv.c decode):
 * protobuf-c's unpack with the method's descriptor and pbcheck_strings over the same bytes,
 * then every string field of a decoded request through the API's id and text rules
 * (command-svc/validate.h, common/ident.h), as the handlers apply them. The first byte picks
 * the message (every request of tally.v1, grpc.health.v1 and grpc.reflection.v1); the rest is
 * its bytes.
 */
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "ident.h"
#include "pbcheck.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/dashboard.pb-c.h"
#include "validate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *const requests[] = {
    &tally__v1__put_tenant_request__descriptor,
    &tally__v1__put_category_request__descriptor,
    &tally__v1__put_agent_request__descriptor,
    &tally__v1__create_complaint_request__descriptor,
    &tally__v1__assign_complaint_request__descriptor,
    &tally__v1__change_status_request__descriptor,
    &tally__v1__get_complaint_request__descriptor,
    &tally__v1__list_status_history_request__descriptor,
    &tally__v1__import_complaints_request__descriptor,
    &tally__v1__get_overview_request__descriptor,
    &tally__v1__get_volume_trend_request__descriptor,
    &tally__v1__get_resolution_stats_request__descriptor,
    &tally__v1__get_agent_performance_request__descriptor,
    &tally__v1__get_category_distribution_request__descriptor,
    &tally__v1__get_dashboard_request__descriptor,
    &grpc__health__v1__health_check_request__descriptor,
    &tally__v1__find_complaint_by_key_request__descriptor, /* new ones at the end: the seeds */
    &grpc__reflection__v1__server_reflection_request__descriptor, /* keep their selectors */
};
#define NREQUESTS (sizeof(requests) / sizeof(requests[0]))

/* Every string field of m (and of the messages inside it) through the validators. */
static void check_strings(const ProtobufCMessage *m, int depth)
{
    char err[512];
    if (depth > 8)
        return;
    for (unsigned i = 0; i < m->descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &m->descriptor->fields[i];
        const char *base = (const char *)m + f->offset;
        /* A oneof's members share one slot: only the member its case names is there. */
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)((const char *)m + f->quantifier_offset) != f->id)
            continue;
        size_t n = f->label == PROTOBUF_C_LABEL_REPEATED
                       ? *(const size_t *)((const char *)m + f->quantifier_offset)
                       : 1;
        for (size_t k = 0; k < n; k++) {
            const void *slot = f->label == PROTOBUF_C_LABEL_REPEATED
                                   ? (const char *)*(void *const *)base + k * sizeof(void *)
                                   : base;
            if (f->type == PROTOBUF_C_TYPE_STRING) {
                const char *s = *(const char *const *)slot;
                if (!s)
                    continue;
                ident_check(s);
                val_id(f->name, s, true, err, sizeof(err));
                val_text(f->name, s, 0, 4000, err, sizeof(err));
                int64_t after;
                val_history_token(s, 1, &after);
            } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)slot;
                if (sub)
                    check_strings(sub, depth + 1);
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[512];
    if (size < 1)
        return 0;
    const ProtobufCMessageDescriptor *d = requests[data[0] % NREQUESTS];
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size - 1, data + 1);
    int bad = pbcheck_strings(d, data + 1, size - 1, msg, sizeof(msg));
    if (m) {
        if (bad == 0)
            check_strings(m, 0);
        size_t len = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(len ? len : 1);
        if (buf)
            protobuf_c_message_pack(m, buf);
        free(buf);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return 0;
}
