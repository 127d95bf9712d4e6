/* reflect: server reflection's answers over the API's real descriptor set. */
#include "embedded.h"
#include "err.h"
#include "reflect.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

extern const embedded_file tally_protoset[];

static reflect_index *x;
static const char *const services[] = { "tally.v1.Dashboard", "grpc.health.v1.Health" };

static void setup(void)
{
    x = reflect_index_new((const uint8_t *)tally_protoset[0].data, tally_protoset[0].size);
    cr_assert_not_null(x, "the compiled-in descriptor set does not index");
}

static void teardown(void)
{
    reflect_index_free(x);
}

/* The answer to req, decoded (caller frees). */
static Grpc__Reflection__V1__ServerReflectionResponse *
ask(const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
    uint8_t *out;
    size_t len;
    cr_assert_eq(reflect_answer(x, services, 2, req, &out, &len), 0);
    Grpc__Reflection__V1__ServerReflectionResponse *r =
        grpc__reflection__v1__server_reflection_response__unpack(NULL, len, out);
    free(out);
    cr_assert_not_null(r, "the answer does not decode");
    return r;
}

/* Whether the file set of r holds a file named name. */
static bool has_file(const Grpc__Reflection__V1__ServerReflectionResponse *r, const char *name)
{
    const Grpc__Reflection__V1__FileDescriptorResponse *f = r->file_descriptor_response;
    for (size_t i = 0; f && i < f->n_file_descriptor_proto; i++) {
        /* FileDescriptorProto.name is field 1, first: 0x0a, its length, the name */
        const ProtobufCBinaryData *b = &f->file_descriptor_proto[i];
        if (b->len > 2 && b->data[0] == 0x0a && b->data[1] == strlen(name) &&
            memcmp(b->data + 2, name, strlen(name)) == 0)
            return true;
    }
    return false;
}

TestSuite(reflect, .init = setup, .fini = teardown);

Test(reflect, lists_the_services_it_is_given)
{
    Grpc__Reflection__V1__ServerReflectionRequest q =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    q.list_services = "";
    q.host = "h";
    Grpc__Reflection__V1__ServerReflectionResponse *r = ask(&q);
    cr_assert_str_eq(r->valid_host, "h");
    cr_assert_not_null(r->list_services_response);
    cr_assert_eq(r->list_services_response->n_service, 2);
    cr_assert_str_eq(r->list_services_response->service[0]->name, "tally.v1.Dashboard");
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
}

Test(reflect, a_symbol_gives_its_file_and_every_import)
{
    const char *symbols[] = { "tally.v1.Dashboard", "tally.v1.Dashboard.WatchDashboard",
                              "tally.v1.GetDashboardRequest",
                              "tally.v1.GetDashboardRequest.min_interval_ms",
                              "tally.v1.Freshness" };
    for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
        Grpc__Reflection__V1__ServerReflectionRequest q =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
        q.message_request_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
        q.file_containing_symbol = (char *)symbols[i];
        Grpc__Reflection__V1__ServerReflectionResponse *r = ask(&q);
        cr_assert(has_file(r, i == 4 ? "tally/v1/types.proto" : "tally/v1/dashboard.proto"),
                  "%s: not in its file", symbols[i]);
        cr_assert(has_file(r, "tally/v1/types.proto"), "%s: without its import", symbols[i]);
        grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    }
}

Test(reflect, what_is_not_there_is_not_found)
{
    Grpc__Reflection__V1__ServerReflectionRequest q =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    q.file_containing_symbol = "no.such.Thing";
    Grpc__Reflection__V1__ServerReflectionResponse *r = ask(&q);
    cr_assert_not_null(r->error_response);
    cr_assert_eq(r->error_response->error_code, TALLY_GRPC_NOT_FOUND);
    cr_assert(strstr(r->error_response->error_message, "no.such.Thing"));
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    q.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET;
    r = ask(&q);
    cr_assert_eq(r->error_response->error_code, TALLY_GRPC_INVALID_ARGUMENT);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
}

/* A request with a field protobuf-c keeps unknown (field number 0: fuzz_reflect found it) is
   answered, and the echoed request leaves it out, so the answer still decodes. */
Test(reflect, unknown_fields_are_not_echoed)
{
    static const uint8_t bytes[] = { 0x81, 0x00, 0x21, 0xff, 0xff, 0x01, 0x00, 0x00, 0x21, 0xff };
    Grpc__Reflection__V1__ServerReflectionRequest *q =
        grpc__reflection__v1__server_reflection_request__unpack(NULL, sizeof(bytes), bytes);
    if (!q)
        return; /* not a request at all: nothing to answer */
    Grpc__Reflection__V1__ServerReflectionResponse *r = ask(q);
    cr_assert_not_null(r->original_request);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    grpc__reflection__v1__server_reflection_request__free_unpacked(q, NULL);
    /* and inside the request's one message (file_containing_extension): fuzz_reflect again */
    static const uint8_t nested[] = { 0x2a, 0x03, 0x80, 0x00, 0x00 };
    q = grpc__reflection__v1__server_reflection_request__unpack(NULL, sizeof(nested), nested);
    cr_assert_not_null(q);
    r = ask(q);
    cr_assert_not_null(r->error_response);
    grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
    grpc__reflection__v1__server_reflection_request__free_unpacked(q, NULL);
}

Test(reflect, bytes_that_are_not_a_descriptor_set_are_refused)
{
    cr_assert_null(reflect_index_new((const uint8_t *)"\x0a\x05xx", 4));
    cr_assert_null(reflect_index_new((const uint8_t *)"", 0));
}
