/*
 * fuzz_reflect: a ServerReflectionRequest's bytes as any client (grpcurl, Postman, a hostile
 * one) sends them on grpc.reflection.v1(alpha).ServerReflection/ServerReflectionInfo, decoded
 * with protobuf-c and answered from the API's real descriptor set (common/reflect.c, the set
 * compiled into every service). Checks: the answer packs and decodes again, and names the
 * request it answers.
 */
#include "embedded.h"
#include "reflect.h"

#include <stdint.h>
#include <stdlib.h>

extern const embedded_file tally_protoset[];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static reflect_index *x;
    static const char *const services[] = { "tally.v1.Dashboard", "grpc.health.v1.Health" };
    if (!x &&
        !(x = reflect_index_new((const uint8_t *)tally_protoset[0].data, tally_protoset[0].size)))
        abort(); /* the compiled-in set must index */
    Grpc__Reflection__V1__ServerReflectionRequest *req =
        grpc__reflection__v1__server_reflection_request__unpack(NULL, size, data);
    if (!req)
        return 0;
    uint8_t *out = NULL;
    size_t len = 0;
    if (reflect_answer(x, services, 2, req, &out, &len) == 0) {
        Grpc__Reflection__V1__ServerReflectionResponse *resp =
            grpc__reflection__v1__server_reflection_response__unpack(NULL, len, out);
        if (!resp || !resp->original_request ||
            resp->message_response_case ==
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET)
            abort();
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
        free(out);
    }
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
    return 0;
}
