/*
 * reflect: gRPC server reflection (grpc.reflection.v1 and v1alpha: the same messages) over the
 * descriptor set compiled into the binary (proto/CMakeLists.txt: tally.protoset, every file of
 * the API with its imports), so grpcurl, grpcui, Postman and Kreya list the services and call
 * them with no .proto files. srv serves it; this is the pure part: the set's index and the
 * answer to one request.
 */
#ifndef TALLY_REFLECT_H
#define TALLY_REFLECT_H

#include "grpc/reflection/v1/reflection.pb-c.h"

#include <stddef.h>
#include <stdint.h>

typedef struct reflect_index reflect_index;

/*
 * Indexes a serialized FileDescriptorSet (borrowed for the index's life): each file's name,
 * imports and symbols (package-qualified messages, nested ones, enums, services, methods).
 * NULL when the bytes are not one, or out of memory.
 */
reflect_index *reflect_index_new(const uint8_t *set, size_t len);
void reflect_index_free(reflect_index *x);

/*
 * Answers req: list_services (services[0..n), the names the server serves), file_by_filename
 * and file_containing_symbol (the file and every file it imports, transitively),
 * file_containing_extension and all_extension_numbers_of_type (the API has no extensions), or
 * an error_response (NOT_FOUND, INVALID_ARGUMENT) naming what was not found. Packs the response
 * into *out (malloc'd) and *len. 0, or TALLY_ENOMEM.
 */
int reflect_answer(const reflect_index *x, const char *const *services, size_t n,
                   const Grpc__Reflection__V1__ServerReflectionRequest *req, uint8_t **out,
                   size_t *len);

#endif
