#include "gclient.h"

#include "err.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define GC_PEM_LIMIT (1 << 20) /* the largest PEM file gc_new_ex reads */
#define GC_POLL_MS   100       /* how often a call in progress looks at the cancel flag */

struct gc_client {
    grpc_channel *ch;
    grpc_completion_queue *cq;
    const volatile sig_atomic_t *cancel; /* borrowed; NULL = never cancel */
    char *authorization;                 /* "Bearer TOKEN", or NULL */
};

typedef struct pending {
    grpc_call *call;
    grpc_metadata md[8];
    size_t nmd;
    grpc_metadata_array initial, trailing;
    grpc_byte_buffer *send, *recv;
    grpc_status_code status;
    grpc_slice details;
    struct timespec t0;
    gc_result *out;
} pending;

/* Reads a whole PEM file into a NUL-terminated buffer; the caller frees it. */
static char *read_pem(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    if (!f) {
        snprintf(err, errlen, "%s: cannot open %s", what, path);
        return NULL;
    }
    buf = malloc(GC_PEM_LIMIT + 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", what);
        goto out_close;
    }
    len = fread(buf, 1, GC_PEM_LIMIT + 1, f);
    if (ferror(f) || len == 0 || len > GC_PEM_LIMIT) {
        snprintf(err, errlen, "%s: %s is %s", what, path,
                 ferror(f) ? "unreadable"
                 : len     ? "larger than 1 MiB"
                           : "empty");
        free(buf);
        buf = NULL;
        goto out_close;
    }
    buf[len] = '\0';
out_close:
    fclose(f);
    return buf;
}

/* TLS credentials from the options' files; NULL with the reason in err. */
static grpc_channel_credentials *tls_creds(const gc_options *opt, char *err, size_t errlen)
{
    grpc_channel_credentials *creds = NULL;
    grpc_ssl_pem_key_cert_pair pair;
    char *ca, *cert = NULL, *key = NULL;
    bool want_cert = opt->tls_cert_path && opt->tls_cert_path[0];
    bool want_key = opt->tls_key_path && opt->tls_key_path[0];
    if (want_cert != want_key) {
        snprintf(err, errlen, "TLS client certificate: give both the certificate and the key");
        return NULL;
    }
    ca = read_pem("TLS root CA", opt->tls_ca_path, err, errlen);
    if (!ca)
        return NULL;
    if (!strstr(ca, "-----BEGIN CERTIFICATE-----")) {
        /* gRPC would only log this and fail every call with "empty address list" */
        snprintf(err, errlen, "TLS root CA: %s holds no PEM certificate", opt->tls_ca_path);
        goto out_free_ca;
    }
    if (want_cert) {
        cert = read_pem("TLS client certificate", opt->tls_cert_path, err, errlen);
        if (!cert)
            goto out_free_ca;
        key = read_pem("TLS client key", opt->tls_key_path, err, errlen);
        if (!key)
            goto out_free_cert;
        pair.cert_chain = cert;
        pair.private_key = key;
    }
    creds = grpc_ssl_credentials_create(ca, want_cert ? &pair : NULL, NULL, NULL);
    if (!creds)
        snprintf(err, errlen, "TLS: cannot make credentials from these files");
    if (key) {
        memset(key, 0, strlen(key));
        free(key);
    }
out_free_cert:
    free(cert);
out_free_ca:
    free(ca);
    return creds;
}

gc_client *gc_new_ex(const char *target, const gc_options *opt, char *err, size_t errlen)
{
    static const gc_options none;
    grpc_channel_credentials *creds;
    gc_client *c;
    grpc_arg args[5] = {
        { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1 },
        { .type = GRPC_ARG_INTEGER,
          .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
          .value.integer = 64 << 20 },
    };
    grpc_channel_args chargs = { .num_args = 2, .args = args };
    if (!opt)
        opt = &none;
    if (opt->max_reconnect_backoff_ms > 0) {
        int ms = opt->max_reconnect_backoff_ms;
        args[chargs.num_args++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
                                              .key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                                              .value.integer = ms };
        args[chargs.num_args++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
                                              .key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                                              .value.integer = ms < 1000 ? ms : 1000 };
        args[chargs.num_args++] = (grpc_arg){ .type = GRPC_ARG_INTEGER,
                                              .key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
                                              .value.integer = ms < 1000 ? ms : 1000 };
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    const char *token = opt->token ? opt->token : getenv("TALLY_TOKEN");
    if (token && token[0]) {
        size_t n = strlen(token) + sizeof("Bearer ");
        if (!(c->authorization = malloc(n))) {
            snprintf(err, errlen, "out of memory");
            free(c);
            return NULL;
        }
        snprintf(c->authorization, n, "Bearer %s", token);
    }
    grpc_init();
    if (opt->tls_ca_path && opt->tls_ca_path[0])
        creds = tls_creds(opt, err, errlen);
    else
        creds = grpc_insecure_credentials_create();
    if (!creds)
        goto out_shutdown;
    c->ch = grpc_channel_create(target, creds, &chargs);
    grpc_channel_credentials_release(creds);
    c->cq = grpc_completion_queue_create_for_next(NULL);
    return c;
out_shutdown:
    grpc_shutdown_blocking();
    free(c->authorization);
    free(c);
    return NULL;
}

gc_client *gc_new(const char *target)
{
    char err[256];
    return gc_new_ex(target, NULL, err, sizeof(err));
}

gc_client *gc_new_port(int port)
{
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    return gc_new(target);
}

void gc_free(gc_client *c)
{
    if (!c)
        return;
    grpc_channel_destroy(c->ch);
    grpc_completion_queue_shutdown(c->cq);
    while (grpc_completion_queue_next(c->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(c->cq);
    free(c->authorization);
    free(c);
    grpc_shutdown_blocking();
}

void gc_set_cancel(gc_client *c, const volatile sig_atomic_t *flag)
{
    c->cancel = flag;
}

/*
 * The next event of c's queue. With a cancel flag, waits in steps of GC_POLL_MS and cancels
 * each of the n calls of ps once when the flag is set; returns only completions.
 */
static grpc_event next_event(gc_client *c, pending *ps, int n, bool *cancelled)
{
    for (;;) {
        if (c->cancel && *c->cancel && !*cancelled) {
            for (int i = 0; i < n; i++)
                if (ps[i].call)
                    grpc_call_cancel(ps[i].call, NULL);
            *cancelled = true;
        }
        gpr_timespec until = c->cancel
                                 ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                gpr_time_from_millis(GC_POLL_MS, GPR_TIMESPAN))
                                 : gpr_inf_future(GPR_CLOCK_MONOTONIC);
        grpc_event ev = grpc_completion_queue_next(c->cq, until, NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            return ev;
    }
}

/* Frees what a call of p holds (after its completion, or when it could not start). */
static void release(pending *p)
{
    if (p->recv)
        grpc_byte_buffer_destroy(p->recv);
    if (p->send)
        grpc_byte_buffer_destroy(p->send);
    for (size_t i = 0; i < p->nmd; i++) {
        grpc_slice_unref(p->md[i].key);
        grpc_slice_unref(p->md[i].value);
    }
    grpc_slice_unref(p->details);
    grpc_metadata_array_destroy(&p->initial);
    grpc_metadata_array_destroy(&p->trailing);
    grpc_call_unref(p->call);
    p->recv = p->send = NULL;
    p->nmd = 0;
    p->call = NULL;
}

/* The call's metadata: md's pairs (7 at most), and the client's token unless md has one. */
static size_t set_md(gc_client *c, pending *p, const char *const *md)
{
    size_t nmd = 0;
    bool own_auth = false;
    for (; md && md[2 * nmd] && nmd < 7; nmd++) {
        p->md[nmd].key = grpc_slice_from_copied_string(md[2 * nmd]);
        p->md[nmd].value = grpc_slice_from_copied_string(md[2 * nmd + 1]);
        own_auth |= strcmp(md[2 * nmd], "authorization") == 0;
    }
    if (c->authorization && !own_auth) {
        p->md[nmd].key = grpc_slice_from_static_string("authorization");
        p->md[nmd++].value = grpc_slice_from_copied_string(c->authorization);
    }
    p->nmd = nmd;
    return nmd;
}

static int start(gc_client *c, pending *p, const char *method, const void *data, size_t len,
                 bool send, const char *const *md, int deadline_ms)
{
    grpc_op ops[6];
    size_t n = 0, nmd = 0;
    gpr_timespec deadline = deadline_ms > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                               gpr_time_from_millis(deadline_ms, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_slice m = grpc_slice_from_copied_string(method);
    clock_gettime(CLOCK_MONOTONIC, &p->t0);
    p->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m, NULL,
                                       deadline, NULL);
    grpc_slice_unref(m);
    grpc_metadata_array_init(&p->initial);
    grpc_metadata_array_init(&p->trailing);
    nmd = set_md(c, p, md);
    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = nmd;
    ops[n++].data.send_initial_metadata.metadata = p->md;
    if (send) {
        grpc_slice s = grpc_slice_from_copied_buffer(data, len);
        p->send = grpc_raw_byte_buffer_create(&s, 1);
        grpc_slice_unref(s);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = p->send;
    }
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n++].data.recv_initial_metadata.recv_initial_metadata = &p->initial;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &p->recv;
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &p->trailing;
    ops[n].data.recv_status_on_client.status = &p->status;
    ops[n++].data.recv_status_on_client.status_details = &p->details;
    p->nmd = nmd;
    if (grpc_call_start_batch(p->call, ops, n, p, NULL) == GRPC_CALL_OK)
        return 0;
    release(p); /* e.g. metadata the core refuses: nothing was sent */
    return -1;
}

/* The grpc-status-details-bin trailer (a google.rpc.Status), when there is one, into out. */
static void status_bin(const grpc_metadata_array *trailing, gc_result *out)
{
    for (size_t i = 0; i < trailing->count; i++) {
        const grpc_metadata *m = &trailing->metadata[i];
        size_t n = GRPC_SLICE_LENGTH(m->value);
        if (grpc_slice_str_cmp(m->key, "grpc-status-details-bin") == 0 &&
            n <= sizeof(out->status_bin)) {
            memcpy(out->status_bin, GRPC_SLICE_START_PTR(m->value), n);
            out->status_bin_len = n;
        }
    }
}

static void complete(pending *p)
{
    gc_result *out = p->out;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    memset(out, 0, sizeof(*out));
    out->code = (int)p->status;
    out->seconds = (double)(t1.tv_sec - p->t0.tv_sec) + (double)(t1.tv_nsec - p->t0.tv_nsec) / 1e9;
    snprintf(out->details, sizeof(out->details), "%.*s", (int)GRPC_SLICE_LENGTH(p->details),
             (const char *)GRPC_SLICE_START_PTR(p->details));
    status_bin(&p->trailing, out);
    if (p->recv) {
        grpc_byte_buffer_reader r;
        grpc_byte_buffer_reader_init(&r, p->recv);
        grpc_slice s = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
        out->len = GRPC_SLICE_LENGTH(s);
        out->data = malloc(out->len ? out->len : 1);
        memcpy(out->data, GRPC_SLICE_START_PTR(s), out->len);
        grpc_slice_unref(s);
    }
    release(p);
}

int gc_call_raw(gc_client *c, const char *method, const void *data, size_t len, bool send,
                const char *const *md, int deadline_ms, gc_result *out)
{
    pending p;
    bool cancelled = false;
    memset(&p, 0, sizeof(p));
    p.out = out;
    if (start(c, &p, method, data, len, send, md, deadline_ms) != 0)
        return -1;
    grpc_event ev;
    do
        ev = next_event(c, &p, 1, &cancelled);
    while (ev.tag != &p);
    complete(&p);
    return 0;
}

static void *pack(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    void *buf = malloc(*len ? *len : 1);
    protobuf_c_message_pack(msg, buf);
    return buf;
}

int gc_call(gc_client *c, const char *method, const ProtobufCMessage *msg, const char *const *md,
            int deadline_ms, gc_result *out)
{
    size_t len;
    void *buf = pack(msg, &len);
    int rc = gc_call_raw(c, method, buf, len, true, md, deadline_ms, out);
    free(buf);
    return rc;
}

int gc_call_many(gc_client *c, const char *method, const ProtobufCMessage *msg, int n,
                 int deadline_ms, gc_result *outs)
{
    size_t len;
    void *buf = pack(msg, &len);
    pending *ps = calloc((size_t)n, sizeof(pending));
    int started = 0, rc = 0;
    bool cancelled = false;
    memset(outs, 0, (size_t)n * sizeof(*outs));
    for (int i = 0; i < n; i++) {
        ps[i].out = &outs[i];
        if (start(c, &ps[i], method, buf, len, true, NULL, deadline_ms) != 0) {
            rc = -1;
            break;
        }
        started++;
    }
    for (int done = 0; done < started;) {
        grpc_event ev = next_event(c, ps, started, &cancelled);
        complete(ev.tag);
        done++;
    }
    free(ps);
    free(buf);
    return rc;
}

void gc_result_release(gc_result *r)
{
    free(r->data);
    r->data = NULL;
}

void gc_status_of(const gc_result *res, gc_status *st)
{
    st->code = res->code;
    st->seconds = res->seconds;
    st->has_rich = res->status_bin_len > 0 &&
                   rpc_status_read(res->status_bin, res->status_bin_len, &st->rich) == 0;
    snprintf(st->details, sizeof(st->details), "%s", res->details);
    st->message[0] = '\0';
    if (res->code != TALLY_GRPC_OK)
        snprintf(st->message, sizeof(st->message), "%s: %s", tally_grpc_code_name(res->code),
                 res->details[0] ? res->details : "(no details)");
}

int gc_call_msg(gc_client *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *reply_desc, const char *const *md,
                int deadline_ms, ProtobufCMessage **reply, gc_status *st)
{
    gc_status local;
    gc_result res;
    int rc = -1;
    if (!st)
        st = &local;
    if (reply)
        *reply = NULL;
    st->code = TALLY_GRPC_UNKNOWN;
    st->details[0] = st->message[0] = '\0';
    st->seconds = 0;
    st->has_rich = false;
    if (gc_call(c, method, req, md, deadline_ms, &res) != 0) {
        st->code = TALLY_GRPC_INTERNAL;
        snprintf(st->message, sizeof(st->message), "INTERNAL: %s: the call could not be started",
                 method);
        return -1;
    }
    gc_status_of(&res, st);
    if (res.code != TALLY_GRPC_OK)
        goto out_release;
    if (reply && res.len > GC_REPLY_MAX) {
        st->code = TALLY_GRPC_INTERNAL;
        snprintf(st->message, sizeof(st->message), "INTERNAL: %s: a reply of %zu bytes (over %d)",
                 method, res.len, GC_REPLY_MAX);
        goto out_release;
    }
    if (reply) {
        *reply = protobuf_c_message_unpack(reply_desc, NULL, res.len,
                                           res.data ? res.data : (const uint8_t *)"");
        if (!*reply) {
            st->code = TALLY_GRPC_INTERNAL;
            snprintf(st->message, sizeof(st->message),
                     "INTERNAL: %s: the reply does not decode as %s", method, reply_desc->name);
            goto out_release;
        }
    }
    rc = 0;
out_release:
    gc_result_release(&res);
    return rc;
}

bool gc_transient(int code)
{
    return code == TALLY_GRPC_CANCELLED || code == TALLY_GRPC_DEADLINE_EXCEEDED ||
           code == TALLY_GRPC_UNAVAILABLE;
}

static void drop_log(gpr_log_func_args *args)
{
    (void)args;
}

void gc_quiet(void)
{
    gpr_set_log_function(drop_log);
}

/* ---- server streams ---------------------------------------------------------------------- */

#define GC_STREAM_OPEN_MS 30000 /* the longest a stream's request may wait to be sent */

struct gc_stream {
    pending p;                 /* the call, its metadata, the message read, the status */
    grpc_completion_queue *cq; /* the stream's own, plucked */
    bool reading;              /* a RECV_MESSAGE in flight */
    bool got_initial;          /* RECV_INITIAL_METADATA was asked for */
    bool over;                 /* the status arrived */
    int tags[3];               /* the addresses are the tags: send, read, status */
};

static bool pluck(gc_stream *s, void *tag, int wait_ms)
{
    gpr_timespec until = wait_ms < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                                     : gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                    gpr_time_from_millis(wait_ms, GPR_TIMESPAN));
    grpc_event ev = grpc_completion_queue_pluck(s->cq, tag, until, NULL);
    return ev.type == GRPC_OP_COMPLETE;
}

gc_stream *gc_stream_open(gc_client *c, const char *method, const ProtobufCMessage *req,
                          const char *const *md, int deadline_ms)
{
    gc_stream *s = calloc(1, sizeof(*s));
    grpc_op ops[3];
    size_t n = 0, len;
    if (!s)
        return NULL;
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    gpr_timespec deadline = deadline_ms > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                               gpr_time_from_millis(deadline_ms, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_MONOTONIC);
    grpc_slice m = grpc_slice_from_copied_string(method);
    s->p.call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
                                         deadline, NULL);
    grpc_slice_unref(m);
    grpc_metadata_array_init(&s->p.initial);
    grpc_metadata_array_init(&s->p.trailing);
    set_md(c, &s->p, md);
    void *buf = pack(req, &len);
    grpc_slice body = grpc_slice_from_copied_buffer(buf, len);
    free(buf);
    grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    memset(ops, 0, sizeof(ops));
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = s->p.nmd;
    ops[n++].data.send_initial_metadata.metadata = s->p.md;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = send;
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    bool ok = grpc_call_start_batch(s->p.call, ops, n, &s->tags[0], NULL) == GRPC_CALL_OK;
    /* Written (or failed: the status says). A connection out of stream slots
       (SETTINGS_MAX_CONCURRENT_STREAMS) holds it: then the open fails, after GC_STREAM_OPEN_MS. */
    if (ok && !pluck(s, &s->tags[0], GC_STREAM_OPEN_MS)) {
        grpc_call_cancel(s->p.call, NULL);
        pluck(s, &s->tags[0], -1);
        ok = false;
    }
    grpc_byte_buffer_destroy(send);
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &s->p.trailing;
    ops[0].data.recv_status_on_client.status = &s->p.status;
    ops[0].data.recv_status_on_client.status_details = &s->p.details;
    if (!ok || grpc_call_start_batch(s->p.call, ops, 1, &s->tags[2], NULL) != GRPC_CALL_OK) {
        s->over = true; /* gc_stream_free frees it without waiting for anything */
        s->p.status = GRPC_STATUS_INTERNAL;
        gc_stream_free(s);
        return NULL;
    }
    return s;
}

/* The status, once the status op completed. */
static void stream_status(gc_stream *s, gc_status *st)
{
    gc_result r;
    memset(&r, 0, sizeof(r));
    r.code = (int)s->p.status;
    snprintf(r.details, sizeof(r.details), "%.*s", (int)GRPC_SLICE_LENGTH(s->p.details),
             (const char *)GRPC_SLICE_START_PTR(s->p.details));
    status_bin(&s->p.trailing, &r);
    gc_status_of(&r, st);
}

int gc_stream_next(gc_stream *s, int wait_ms, uint8_t **data, size_t *len, gc_status *st)
{
    *data = NULL;
    *len = 0;
    if (s->over) {
        stream_status(s, st);
        return -1;
    }
    if (!s->reading) {
        grpc_op ops[2];
        size_t n = 0;
        memset(ops, 0, sizeof(ops));
        if (!s->got_initial) {
            ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
            ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->p.initial;
            s->got_initial = true;
        }
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n++].data.recv_message.recv_message = &s->p.recv;
        if (grpc_call_start_batch(s->p.call, ops, n, &s->tags[1], NULL) != GRPC_CALL_OK) {
            memset(st, 0, sizeof(*st));
            st->code = TALLY_GRPC_INTERNAL;
            snprintf(st->message, sizeof(st->message), "INTERNAL: cannot read the stream");
            return -1;
        }
        s->reading = true;
    }
    if (!pluck(s, &s->tags[1], wait_ms))
        return 0;
    s->reading = false;
    if (!s->p.recv) { /* the end: the status follows */
        pluck(s, &s->tags[2], -1);
        s->over = true;
        stream_status(s, st);
        return -1;
    }
    grpc_byte_buffer_reader r;
    grpc_byte_buffer_reader_init(&r, s->p.recv);
    grpc_slice sl = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    *len = GRPC_SLICE_LENGTH(sl);
    *data = malloc(*len ? *len : 1);
    if (*data)
        memcpy(*data, GRPC_SLICE_START_PTR(sl), *len);
    grpc_slice_unref(sl);
    grpc_byte_buffer_destroy(s->p.recv);
    s->p.recv = NULL;
    if (!*data) {
        memset(st, 0, sizeof(*st));
        st->code = TALLY_GRPC_RESOURCE_EXHAUSTED;
        snprintf(st->message, sizeof(st->message), "RESOURCE_EXHAUSTED: out of memory");
        return -1;
    }
    return 1;
}

void gc_stream_free(gc_stream *s)
{
    if (!s)
        return;
    if (!s->over) {
        grpc_call_cancel(s->p.call, NULL);
        if (s->reading)
            pluck(s, &s->tags[1], -1);
        pluck(s, &s->tags[2], -1);
    }
    release(&s->p);
    grpc_completion_queue_shutdown(s->cq);
    while (
        grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
        GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
    free(s);
}
