/*
 * gclient: a small unary gRPC client over the C core, for the tests, the benchmarks and the
 * command-line tools (never the services).
 *
 * Each gc_client has its own channel (a private subchannel pool, so its own TCP connection)
 * and its own completion queue. Calls are unary; results carry the status code, the details,
 * and the reply bytes.
 */
#ifndef TALLY_GCLIENT_H
#define TALLY_GCLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gc_client gc_client;

typedef struct gc_result {
    int code;
    char details[1024];
    uint8_t *data; /* reply message bytes, malloc'd; NULL if none */
    size_t len;
    double seconds; /* wall time of the call */
} gc_result;

/* target: "127.0.0.1:port". Calls grpc_init; gc_free shuts it down. */
gc_client *gc_new(const char *target);
gc_client *gc_new_port(int port);
void gc_free(gc_client *c);

/*
 * One unary call. msg NULL with send == false sends no message at all (a half-close only).
 * md: NULL, or key, value, key, value, ..., NULL. Returns 0 when the call completed (whatever
 * its status), -1 when it could not be started.
 */
int gc_call_raw(gc_client *c, const char *method, const void *data, size_t len, bool send,
                const char *const *md, int deadline_ms, gc_result *out);
int gc_call(gc_client *c, const char *method, const ProtobufCMessage *msg, const char *const *md,
            int deadline_ms, gc_result *out);

/* n identical calls started at once on the one connection; outs has n entries. */
int gc_call_many(gc_client *c, const char *method, const ProtobufCMessage *msg, int n,
                 int deadline_ms, gc_result *outs);

void gc_result_release(gc_result *r);

#endif
