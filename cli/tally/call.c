/*
 * call.c: how the tally client talks to the services (one unary call at a time over
 * common/gclient, TLS and a bearer token from the global options) and parses option values.
 */
#include "err.h"
#include "tally_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

int cli_int(const cli *c, int id, int64_t lo, int64_t hi, int64_t *out)
{
    const char *v = cli_get(c, id);
    char *end;
    long long n;
    errno = 0;
    n = v ? strtoll(v, &end, 10) : 0;
    if (!v || end == v || *end || errno || n < lo || n > hi)
        return cli_usage_error(c, "%s: want a whole number, %lld..%lld, not \"%s\"",
                               cli_name(c, id), (long long)lo, (long long)hi, v ? v : "");
    *out = n;
    return EXIT_OK;
}

int cli_seconds(const cli *c, int id, double lo, double hi, double *out)
{
    const char *v = cli_get(c, id);
    char *end;
    double s = v ? strtod(v, &end) : NAN;
    if (!v || end == v || *end || !(s >= lo && s <= hi))
        return cli_usage_error(c, "%s: want seconds, %g..%g, not \"%s\"", cli_name(c, id), lo, hi,
                               v ? v : "");
    *out = s;
    return EXIT_OK;
}

int cli_priority(const cli *c, const char *name, const char *value, int *out)
{
    static const char *const names[] = { "low", "medium", "high", "urgent" };
    for (int i = 0; i < 4; i++)
        if (strcasecmp(value, names[i]) == 0) {
            *out = i + 1;
            return EXIT_OK;
        }
    return cli_usage_error(c, "%s: want low, medium, high or urgent, not \"%s\"", name, value);
}

int cli_status(const cli *c, const char *name, const char *value, int *out)
{
    static const char *const names[] = { "open", "in_progress", "resolved", "closed" };
    for (int i = 0; i < 4; i++)
        if (strcasecmp(value, names[i]) == 0 || (i == 1 && strcasecmp(value, "in-progress") == 0)) {
            *out = i + 1;
            return EXIT_OK;
        }
    return cli_usage_error(c, "%s: want open, in_progress, resolved or closed, not \"%s\"", name,
                           value);
}

int cli_token(const cli *c, int id, int64_t *complaint, int64_t *version)
{
    const char *v = cli_get(c, id);
    char *end, *end2;
    long long cid, ver;
    errno = 0;
    cid = v ? strtoll(v, &end, 10) : 0;
    if (!v || end == v || *end != ':' || errno || cid < 1)
        goto bad;
    ver = strtoll(end + 1, &end2, 10);
    if (end2 == end + 1 || *end2 || errno || ver < 1)
        goto bad;
    *complaint = cid;
    *version = ver;
    return EXIT_OK;
bad:
    return cli_usage_error(c,
                           "%s: want COMPLAINT:VERSION (e.g. 42:3, as a write command "
                           "prints it), not \"%s\"",
                           cli_name(c, id), v ? v : "");
}
