/*
 * call.c: how the tally client talks to the services: one unary call at a time over
 * common/gclient, with TLS and a bearer token from the global options.
 */
#include "err.h"
#include "tally_int.h"

#include <stdio.h>

#define REPLY_LIMIT (64u << 20) /* gclient's receive limit; nothing larger is ever unpacked */

gc_client *cli_connect(const cli *c, const char *target, int max_reconnect_backoff_ms)
{
    gc_options opt = { .tls_ca_path = c->tls_ca,
                       .tls_cert_path = c->tls_cert,
                       .tls_key_path = c->tls_key,
                       .max_reconnect_backoff_ms = max_reconnect_backoff_ms };
    char err[256];
    gc_client *gc;
    gc = gc_new_ex(target, &opt, err, sizeof(err));
    if (!gc)
        fprintf(stderr, "tally: %s\n", err);
    return gc;
}

int cli_invoke(const cli *c, gc_client *gc, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply, char *err,
               size_t errlen)
{
    char bearer[2048];
    const char *md[3] = { NULL };
    gc_result r;
    *reply = NULL;
    if (c->token && c->token[0]) {
        snprintf(bearer, sizeof(bearer), "Bearer %s", c->token);
        md[0] = "authorization";
        md[1] = bearer;
    }
    if (gc_call(gc, method, req, md[0] ? md : NULL, c->timeout_ms, &r) != 0) {
        snprintf(err, errlen, "INTERNAL: could not start the call %s", method);
        return -1;
    }
    if (r.code != 0) {
        snprintf(err, errlen, "%s: %s", tally_grpc_code_name(r.code),
                 r.details[0] ? r.details : "(no details)");
        gc_result_release(&r);
        return -1;
    }
    if (r.len <= REPLY_LIMIT)
        *reply = protobuf_c_message_unpack(rd, NULL, r.len, r.data ? r.data : (uint8_t *)"");
    gc_result_release(&r);
    if (!*reply) {
        snprintf(err, errlen, "INTERNAL: the reply of %s does not decode as %s", method, rd->name);
        return -1;
    }
    return 0;
}

int cli_call(const cli *c, gc_client *gc, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply)
{
    char err[1200];
    if (cli_invoke(c, gc, method, req, rd, reply, err, sizeof(err)) == 0)
        return EXIT_OK;
    fprintf(stderr, "tally: %s\n", err);
    return EXIT_FAIL;
}
