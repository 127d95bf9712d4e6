/*
 * call.c: how the tally client talks to the services: one unary call at a time over
 * common/gclient, with TLS and a bearer token from the global options.
 */
#include "tally_int.h"

#include <stdio.h>

gc_client *cli_connect(const cli *c, const char *target, int max_reconnect_backoff_ms)
{
    gc_options opt = { .tls_ca_path = c->tls_ca,
                       .tls_cert_path = c->tls_cert,
                       .tls_key_path = c->tls_key,
                       .max_reconnect_backoff_ms = max_reconnect_backoff_ms,
                       .token = c->token ? c->token : "" };
    char err[256];
    gc_client *gc;
    gc = gc_new_ex(target, &opt, err, sizeof(err));
    if (!gc)
        fprintf(stderr, "tally: %s\n", err);
    return gc;
}

/* gc_call_msg with the deadline of --timeout (the bearer token is the client's, cli_connect). */
static int invoke(const cli *c, gc_client *gc, const char *method, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply, gc_status *st)
{
    return gc_call_msg(gc, method, req, rd, NULL, c->timeout_ms, reply, st);
}

int cli_invoke(const cli *c, gc_client *gc, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply, char *err,
               size_t errlen)
{
    gc_status st;
    if (invoke(c, gc, method, req, rd, reply, &st) == 0)
        return 0;
    snprintf(err, errlen, "%s", st.message);
    return -1;
}

int cli_call(const cli *c, gc_client *gc, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply)
{
    gc_status st;
    if (invoke(c, gc, method, req, rd, reply, &st) == 0)
        return EXIT_OK;
    fprintf(stderr, "tally: %s\n", st.message);
    return EXIT_FAIL;
}

int cli_call_command(const cli *c, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply)
{
    gc_client *gc = cli_connect(c, c->command, 0);
    if (!gc)
        return EXIT_FAIL;
    int rc = cli_call(c, gc, method, req, rd, reply);
    gc_free(gc);
    return rc;
}
