#include "srv.h"

#include "auth.h"
#include "embedded.h"
#include "err.h"
#include "hash.h"
#include "log.h"
#include "now.h"
#include "pbcheck.h"
#include "reflect.h"
#include "rpcstatus.h"

#include "grpc/health/v1/health.pb-c.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define NCODES         17
#define GENERIC_POSTS  4   /* pre-posted requests for unknown methods */
#define POLL_MS        200 /* how often an idle worker checks for shutdown */
#define MSG_MAX        512 /* status message length */
#define HEALTH_SERVICE "grpc.health.v1.Health"
#define REFLECT_V1     "grpc.reflection.v1.ServerReflection"
#define REFLECT_V1A    "grpc.reflection.v1alpha.ServerReflection"

#define STUCK_MS       5000 /* after cancelling, how long calls may still take */
#define TOKEN_SLOTS    256  /* verified tokens each worker remembers */
#define PEER_BUCKETS   256  /* of the table of connections with calls being served */
#define HEALTH_WATCHES 256  /* Health/Watch streams (no token needed) open at once */

extern const embedded_file tally_protoset[]; /* proto/CMakeLists.txt */

enum tag_kind {
    TAG_REQUEST,
    TAG_GENERIC,
    TAG_DONE,
    TAG_ST_CLOSED, /* a stream's RECV_CLOSE_ON_SERVER: the call is over */
    TAG_ST_SENT,   /* a stream's message went out */
    TAG_ST_ENDED,  /* a stream's status went out */
    TAG_ST_RECV,   /* a bidirectional stream's message came in (or the client half-closed) */
};

/* One registered method, with its metrics. */
typedef struct method {
    char path[256]; /* "/tally.v1.Dashboard/GetOverview" */
    const char *service;
    const srv_method *m;
    bool health; /* grpc.health.v1.Health/Check and Watch, served by the runtime itself */
    const ProtobufCFieldDescriptor *tenant; /* the request's tenant_id, or NULL */
    void *handle;                           /* from grpc_server_register_method */
    metrics_counter *started;
    metrics_counter *handled[NCODES];
    metrics_histogram *seconds;
} method;

typedef struct worker {
    srv_server *srv;
    int index;
    void *state;
    auth_cache *tokens; /* the tokens this worker verified (with auth on) */
    unsigned auth_gen;  /* the keys' generation the cache holds tokens of */
    pthread_t thread;
} worker;

/* A call from request to completion. The tag of every event is a srv_call. */
struct srv_call {
    enum tag_kind kind; /* first: what the event is */
    srv_server *srv;
    method *method; /* NULL for a generic (unknown method) call */
    worker *worker; /* while a handler runs */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details; /* generic calls only */
    struct peer *peer;         /* counted in the server's peers while served (or NULL) */
    grpc_byte_buffer *reply;
    grpc_slice status_details;
    grpc_metadata trailer; /* grpc-status-details-bin, on a failure (value empty otherwise) */
    int cancelled;
    char msg[MSG_MAX];
    rpc_error error; /* what the handler added to a failure (srv_error_reason, ...) */
};

/* The tag of one kind of a stream's events. */
typedef struct stag {
    enum tag_kind kind; /* first, as in srv_call */
    srv_stream *st;
} stag;

/* A server-streaming call once open (srv.h): the call, its ops in flight, its messages. */
struct srv_stream {
    srv_call *c; /* metadata, deadline, status message; freed with the stream */
    method *m;
    pthread_mutex_t mu; /* what follows, to the list links */
    stag closed_tag, sent_tag, ended_tag, recv_tag;
    grpc_byte_buffer *recv;    /* bidi: the message read (NULL: the client half-closed) */
    bool bidi, reading;        /* a bidirectional stream; its RECV_MESSAGE in flight */
    grpc_byte_buffer *sending; /* in flight */
    grpc_byte_buffer *pending; /* waiting: the newest message sent meanwhile */
    bool initial_sent, end_wanted, ended, closed;
    bool opening;        /* open is running: a close meanwhile waits for it */
    bool close_deferred; /* the close came while opening */
    bool opened;         /* open kept the stream: closed() is owed */
    bool handling;       /* bidi: a message is being handled: the next is not read meanwhile */
    bool health_counted; /* a Health/Watch, counted in the server's health_watches */
    int end_code;
    char end_msg[MSG_MAX]; /* the status to end with (own: handlers write c->msg unlocked) */
    rpc_error end_error;
    int refs;      /* ops in flight (the close op among them) */
    int cancelled; /* RECV_CLOSE_ON_SERVER's */
    double t0;
    void *data;
    int health_watch;        /* grpc.health.v1.Health/Watch: 1 a known service, -1 an unknown one */
    srv_stream *prev, *next; /* in the server's open streams (under streams_mu) */
};

struct srv_server {
    grpc_server *server;
    grpc_completion_queue *cq;          /* polled by every worker */
    grpc_completion_queue *shutdown_cq; /* only the shutdown notification */
    method *methods;
    size_t nmethods;
    const srv_service *services;
    size_t nservices;
    worker *workers;
    int nworkers; /* threads running */
    int want_workers;
    int posts; /* pre-posted requests per method */
    long long max_message;
    int port;
    const auth_verifier *_Atomic auth; /* NULL: every caller trusted; swapped by srv_set_auth */
    _Atomic unsigned auth_gen;         /* bumped by srv_set_auth: the workers clear caches */
    struct retired *retired;           /* verifiers replaced by srv_set_auth, freed at the end */
    pthread_mutex_t auth_mu;
    void *(*worker_init)(int index, void *arg);
    void (*worker_free)(void *state, void *arg);
    void (*call_begin)(void *state, void *arg);
    void *arg;
    metrics_counter *unknown;
    _Atomic bool serving;
    _Atomic bool shutting_down; /* no more re-posts */
    _Atomic bool stopping;      /* server shut down: workers leave once live is 0 */
    _Atomic long live;          /* calls taken and not yet completed */
    srv_tls *tls;               /* the TLS files, or NULL for plaintext */
    /* TALLY_GRPC_MAX_CALLS_PER_CONNECTION: the connections with calls being served. */
    long long per_conn_max; /* 0: no limit */
    pthread_mutex_t peers_mu;
    struct peer *peers[PEER_BUCKETS];
    metrics_counter *refused_busy;
    /* Streams open (TALLY_GRPC_MAX_STREAMS), ended with UNAVAILABLE at shutdown. */
    pthread_mutex_t streams_mu;
    srv_stream *streams;
    long long nstreams, max_streams;
    long long health_watches; /* Health/Watch streams among them: open to all, capped apart */
    bool streams_closing;
    metrics_counter *streams_refused, *stream_msgs, *stream_replaced;
    reflect_index *reflect; /* the API's descriptor set, for server reflection (or NULL) */
    const char **names;     /* the services reflection lists */
    size_t nnames;
};

/* A connection (its peer address, "ipv4:10.0.0.7:51234") with calls being served. */
typedef struct peer {
    struct peer *next;
    uint64_t hash;
    long calls;
    char addr[];
} peer;

static int health_watch(srv_call *c, srv_stream *st, const ProtobufCMessage *msg, void *state);

static int reflect_info(srv_call *c, srv_stream *st, const ProtobufCMessage *msg, void *state);

/* Server reflection: v1alpha has the same messages as v1 (what grpcurl 1.8 and Postman ask). */
static const srv_method reflect_method = {
    .name = "ServerReflectionInfo",
    .request = &grpc__reflection__v1__server_reflection_request__descriptor,
    .roles = AUTH_ANY | SRV_NO_TENANT,
    .bidi = reflect_info,
};

static const srv_method health_methods[] = {
    /* open to all */
    { .name = "Check", .request = &grpc__health__v1__health_check_request__descriptor },
    { .name = "Watch",
      .request = &grpc__health__v1__health_check_request__descriptor,
      .stream = health_watch },
};

/*
 * Routes the core's own log lines through ours. Its INFO lines are start-up chatter ("grpc
 * epoll fd: 3"), so they go out at debug; its errors stay errors.
 */
static void core_log(gpr_log_func_args *a)
{
    enum log_level lv = a->severity == GPR_LOG_SEVERITY_ERROR ? LOG_ERROR : LOG_DEBUG;
    log_at(lv, a->message, LOG_STR("component", "grpc"), LOG_STR("file", a->file),
           LOG_INT("line", a->line));
}

/* ---- calls ---------------------------------------------------------------------------- */

static srv_call *call_new(srv_server *s, enum tag_kind kind, method *m)
{
    srv_call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->kind = kind;
    c->srv = s;
    c->method = m;
    grpc_metadata_array_init(&c->md);
    if (kind == TAG_GENERIC)
        grpc_call_details_init(&c->details);
    return c;
}

static void call_free(srv_call *c)
{
    grpc_metadata_array_destroy(&c->md);
    if (c->method == NULL)
        grpc_call_details_destroy(&c->details);
    if (c->payload)
        grpc_byte_buffer_destroy(c->payload);
    if (c->reply)
        grpc_byte_buffer_destroy(c->reply);
    if (c->kind == TAG_DONE) {
        grpc_slice_unref(c->status_details);
        grpc_slice_unref(c->trailer.value);
    }
    if (c->call)
        grpc_call_unref(c->call);
    free(c);
}

/* Posts one request for method m (NULL: an unknown-method request). */
static int post(srv_server *s, method *m)
{
    srv_call *c = call_new(s, m ? TAG_REQUEST : TAG_GENERIC, m);
    grpc_call_error e;
    if (!c)
        return TALLY_ENOMEM;
    if (m)
        e = grpc_server_request_registered_call(s->server, m->handle, &c->call, &c->deadline,
                                                &c->md, m->m->bidi ? NULL : &c->payload, s->cq,
                                                s->cq, c);
    else
        e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq, c);
    if (e != GRPC_CALL_OK) {
        log_error("cannot request a call", LOG_INT("grpc_call_error", e));
        call_free(c);
        return TALLY_EINTERNAL;
    }
    return 0;
}

/*
 * The trailer of a failure: google.rpc.Status with the code, the message and the details
 * (rpcstatus.h). Its slices live in c until the call is freed; 0 when there is none.
 */
static size_t status_trailer(srv_call *c, int code, const char *msg, const rpc_error *e)
{
    uint8_t buf[RPC_STATUS_MAX];
    size_t len = code != 0 ? rpc_status_pack(code, msg, e, buf, sizeof(buf)) : 0;
    c->trailer.key = grpc_slice_from_static_string("grpc-status-details-bin");
    c->trailer.value =
        len ? grpc_slice_from_copied_buffer((const char *)buf, len) : grpc_empty_slice();
    return len ? 1 : 0;
}

/* Sends status (and the reply when code is OK) in one batch; the DONE event frees the call. */
static void finish(srv_call *c, int code)
{
    grpc_op ops[4];
    size_t n = 0;
    memset(ops, 0, sizeof(ops));
    c->kind = TAG_DONE;
    rpc_utf8_clean(c->msg); /* the same text in grpc-message and in the Status */
    c->status_details = grpc_slice_from_copied_string(c->msg);
    size_t ntrailer = status_trailer(c, code, c->msg, &c->error);
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n++].data.send_initial_metadata.count = 0;
    if (code == 0 && c->reply) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->reply;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n].data.send_status_from_server.status_details = c->msg[0] ? &c->status_details : NULL;
    ops[n].data.send_status_from_server.trailing_metadata_count = ntrailer;
    ops[n++].data.send_status_from_server.trailing_metadata = &c->trailer;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
    srv_server *s = c->srv;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, c, NULL);
    if (e != GRPC_CALL_OK) {
        log_error("cannot send a reply", LOG_INT("grpc_call_error", e));
        call_free(c);
        atomic_fetch_sub(&s->live, 1);
    }
}

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* msg packed into a byte buffer; NULL with *size its size when that is over max. */
static grpc_byte_buffer *pack(const ProtobufCMessage *msg, long long max, size_t *size)
{
    *size = protobuf_c_message_get_packed_size(msg);
    if ((long long)*size > max)
        return NULL;
    grpc_slice slice = grpc_slice_malloc(*size);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return bb;
}

/* Reads the payload and decodes it with the method's descriptor; NULL with c->msg set. */
static ProtobufCMessage *decode(srv_call *c)
{
    grpc_byte_buffer_reader reader;
    grpc_slice slice;
    ProtobufCMessage *req;
    if (!c->payload) {
        snprintf(c->msg, sizeof(c->msg), "missing request message (%s)",
                 c->method->m->request->name);
        return NULL;
    }
    if (!grpc_byte_buffer_reader_init(&reader, c->payload)) {
        snprintf(c->msg, sizeof(c->msg), "cannot read the request (unsupported compression)");
        return NULL;
    }
    slice = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    req = protobuf_c_message_unpack(c->method->m->request, NULL, GRPC_SLICE_LENGTH(slice),
                                    GRPC_SLICE_START_PTR(slice));
    if (!req) {
        snprintf(c->msg, sizeof(c->msg), "malformed request: not a valid %s message",
                 c->method->m->request->name);
    } else if (pbcheck_strings(c->method->m->request, GRPC_SLICE_START_PTR(slice),
                               GRPC_SLICE_LENGTH(slice), c->msg, sizeof(c->msg)) != 0) {
        protobuf_c_message_free_unpacked(req, NULL);
        req = NULL;
    }
    grpc_slice_unref(slice);
    return req;
}

/* Whether the health service answers for service ("" is the whole server). */
static bool health_known(const srv_server *s, const char *service)
{
    bool known = service[0] == '\0' || strcmp(service, HEALTH_SERVICE) == 0;
    for (size_t i = 0; !known && i < s->nservices; i++)
        known = strcmp(service, s->services[i].name) == 0;
    return known;
}

static Grpc__Health__V1__HealthCheckResponse__ServingStatus health_status(const srv_server *s)
{
    return atomic_load(&s->serving)
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static int health_check(srv_call *c, const ProtobufCMessage *msg)
{
    const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    if (!health_known(c->srv, req->service))
        return srv_fail(c, TALLY_ENOTFOUND, "unknown service \"%.200s\"", req->service);
    resp.status = health_status(c->srv);
    return srv_reply(c, &resp.base);
}

/*
 * The bearer token of the call: its claims must be valid and hold one of the method's roles.
 * 0, TALLY_EUNAUTH or TALLY_EDENIED with c->msg set.
 */
static int authenticate(srv_call *c, auth_claims *claims)
{
    size_t len = 0, toklen = 0;
    const char *value = srv_metadata(c, "authorization", &len), *tok = NULL;
    char why[200];
    worker *w = c->worker;
    unsigned gen = atomic_load(&c->srv->auth_gen);
    if (w->auth_gen != gen) { /* new keys: nothing the old ones verified counts */
        auth_cache_clear(w->tokens);
        w->auth_gen = gen;
    }
    if (auth_bearer(value, len, &tok, &toklen, why, sizeof(why)) != 0 ||
        auth_verify_cached(atomic_load(&c->srv->auth), w->tokens, tok, toklen, now_wall_ms() / 1000,
                           claims, why, sizeof(why)) != 0)
        return srv_fail(c, TALLY_EUNAUTH, "%s", why);
    if (!(claims->role & c->method->m->roles)) {
        srv_error_reason(c, "ROLE_NOT_ALLOWED");
        srv_error_meta(c, "role", "%s", auth_role_name(claims->role));
        return srv_fail(c, TALLY_EDENIED, "role %s may not call %s", auth_role_name(claims->role),
                        c->method->m->name);
    }
    return 0;
}

/* The request's tenant_id must be one the token grants. 0 or TALLY_EDENIED. */
static int authorize_tenant(srv_call *c, const ProtobufCMessage *req, const auth_claims *claims)
{
    const ProtobufCFieldDescriptor *f = c->method->tenant;
    const char *tenant = f ? *(const char *const *)((const char *)req + f->offset) : NULL;
    if (!f || auth_tenant_granted(claims, tenant ? tenant : ""))
        return 0;
    /* One message for a tenant that exists and one that does not: nothing to learn from it. */
    srv_error_reason(c, "TENANT_NOT_GRANTED");
    return srv_fail(c, TALLY_EDENIED, "tenant_id: the token does not grant this tenant");
}

/*
 * Counts the call against its connection's limit: 0, or TALLY_ETOOBIG with c->msg set when the
 * connection already has per_conn_max calls being served (so no one caller holds every
 * worker; the refusal is immediate, costing the worker microseconds).
 */
static int peer_enter(srv_call *c)
{
    srv_server *s = c->srv;
    char *addr = grpc_call_get_peer(c->call);
    int rc = 0;
    if (!addr)
        return 0;
    uint64_t h = hash_fnv1a(addr, strlen(addr), 0);
    pthread_mutex_lock(&s->peers_mu);
    peer **slot = &s->peers[h % PEER_BUCKETS], *p = *slot;
    while (p && (p->hash != h || strcmp(p->addr, addr) != 0))
        p = p->next;
    if (!p && (p = malloc(sizeof(*p) + strlen(addr) + 1)) != NULL) {
        p->hash = h;
        p->calls = 0;
        memcpy(p->addr, addr, strlen(addr) + 1);
        p->next = *slot;
        *slot = p;
    }
    if (p && p->calls >= s->per_conn_max) {
        srv_error_reason(c, "CONNECTION_BUSY");
        rc = srv_fail(c, TALLY_ETOOBIG,
                      "too many calls at once on this connection: at most %lld are served at "
                      "a time; retry later",
                      s->per_conn_max);
    } else if (p) {
        p->calls++;
        c->peer = p;
    }
    pthread_mutex_unlock(&s->peers_mu);
    gpr_free(addr);
    if (rc)
        metrics_inc(s->refused_busy, 1);
    return rc;
}

static void peer_leave(srv_call *c)
{
    srv_server *s = c->srv;
    peer *p = c->peer;
    if (!p)
        return;
    pthread_mutex_lock(&s->peers_mu);
    if (--p->calls == 0) { /* the last call of the connection: forget it */
        peer **slot = &s->peers[p->hash % PEER_BUCKETS];
        while (*slot != p)
            slot = &(*slot)->next;
        *slot = p->next;
        free(p);
    }
    pthread_mutex_unlock(&s->peers_mu);
    c->peer = NULL;
}

/* ---- streams ---------------------------------------------------------------------------- */

static int st_send(srv_stream *st, grpc_byte_buffer *bb);

/* Starts a batch of the stream's ops (under st->mu). 0, or -1 (logged) when the core refuses. */
static int st_start(srv_stream *st, const grpc_op *ops, size_t n, stag *tag)
{
    grpc_call_error e = grpc_call_start_batch(st->c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        log_error("cannot start a stream operation", LOG_STR("method", st->m->path),
                  LOG_INT("grpc_call_error", e));
        return -1;
    }
    st->refs++;
    return 0;
}

/* An op the core refused: the call is ended from the side, so the close op still comes. */
static void st_abort(srv_stream *st)
{
    st->ended = true;
    grpc_call_cancel_with_status(st->c->call, GRPC_STATUS_INTERNAL,
                                 "the server could not go on with the stream", NULL);
}

/*
 * Under st->mu: starts what can go now that nothing is in flight: the waiting message, else
 * the status once it is wanted. The first batch carries the initial metadata.
 */
static void st_pump(srv_stream *st)
{
    grpc_op ops[2];
    size_t n = 0;
    srv_call *c = st->c;
    if (st->sending || st->ended)
        return;
    memset(ops, 0, sizeof(ops));
    if (!st->initial_sent && !st->closed) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n++].data.send_initial_metadata.count = 0;
    }
    if (st->pending && !st->closed) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = st->pending;
        if (st_start(st, ops, n, &st->sent_tag) == 0) {
            st->sending = st->pending;
            st->initial_sent = true;
        } else {
            grpc_byte_buffer_destroy(st->pending);
            st_abort(st);
        }
        st->pending = NULL;
        return;
    }
    if (!st->end_wanted)
        return;
    st->ended = true;
    if (st->closed) /* nobody to tell */
        return;
    c->kind = TAG_DONE; /* call_free releases the status slices */
    c->status_details = grpc_slice_from_copied_string(st->end_msg);
    size_t ntrailer = status_trailer(c, st->end_code, st->end_msg, &st->end_error);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)st->end_code;
    ops[n].data.send_status_from_server.status_details = st->end_msg[0] ? &c->status_details : NULL;
    ops[n].data.send_status_from_server.trailing_metadata_count = ntrailer;
    ops[n++].data.send_status_from_server.trailing_metadata = &c->trailer;
    if (st_start(st, ops, n, &st->ended_tag) != 0)
        st_abort(st);
}

/* Under st->mu: the stream is to end with code and msg (and e's details), once. */
static void st_want_end(srv_stream *st, int code, const char *msg, const rpc_error *e)
{
    if (st->end_wanted || st->closed)
        return;
    snprintf(st->end_msg, sizeof(st->end_msg), "%s", msg);
    rpc_utf8_clean(st->end_msg);
    if (e)
        st->end_error = *e;
    else
        rpc_error_clear(&st->end_error);
    st->end_code = code;
    st->end_wanted = true;
    st_pump(st);
}

/* Under st->mu: a bidirectional stream reads its next message once its replies are out. */
static void st_read(srv_stream *st)
{
    grpc_op ops[2];
    size_t n = 0;
    if (!st->bidi || st->reading || st->handling || st->sending || st->pending || st->end_wanted ||
        st->closed)
        return;
    memset(ops, 0, sizeof(ops));
    if (!st->initial_sent) /* grpcurl and others wait for the headers before they send */
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &st->recv;
    if (st_start(st, ops, n, &st->recv_tag) == 0) {
        st->initial_sent = true;
        st->reading = true;
    } else {
        st_abort(st);
    }
}

/* Under st->mu: ends the stream with the failure a handler left in c. */
static void st_end_call(srv_stream *st, int rc)
{
    srv_call *c = st->c;
    st_want_end(st, tally_err_grpc_code(rc), c->msg[0] ? c->msg : tally_err_str(rc), &c->error);
}

/* A bidirectional stream's message (on worker w): decoded and handed to the method, alone. */
static void st_received(worker *w, srv_stream *st, bool ok)
{
    srv_call *c = st->c;
    pthread_mutex_lock(&st->mu);
    grpc_byte_buffer *bb = st->recv;
    st->recv = NULL;
    st->reading = false;
    st->handling = ok && bb;
    if (ok && !bb) /* the client half-closed: done */
        st_want_end(st, GRPC_STATUS_OK, "", NULL);
    pthread_mutex_unlock(&st->mu);
    if (!ok || !bb) { /* a failed read (the call is over): the close op tells the rest */
        if (bb)
            grpc_byte_buffer_destroy(bb);
        return;
    }
    c->payload = bb; /* handling: no other thread touches c's handler fields now */
    c->msg[0] = '\0';
    rpc_error_clear(&c->error);
    ProtobufCMessage *req = decode(c);
    int rc = req ? st->m->m->bidi(c, st, req, w->state) : TALLY_EINVAL;
    if (req)
        protobuf_c_message_free_unpacked(req, NULL);
    c->payload = NULL;
    grpc_byte_buffer_destroy(bb);
    pthread_mutex_lock(&st->mu);
    st->handling = false;
    if (rc != 0)
        st_end_call(st, rc);
    else
        st_read(st);
    pthread_mutex_unlock(&st->mu);
}

/* Frees the stream once nothing is in flight (called without st->mu, refs 0). */
static void st_free(srv_stream *st)
{
    srv_server *s = st->c->srv;
    if (st->sending)
        grpc_byte_buffer_destroy(st->sending);
    if (st->pending)
        grpc_byte_buffer_destroy(st->pending);
    if (st->recv)
        grpc_byte_buffer_destroy(st->recv);
    pthread_mutex_destroy(&st->mu);
    call_free(st->c);
    free(st);
    atomic_fetch_sub(&s->live, 1);
}

/* Drops one reference (an op's, or the opener's); frees the stream after the last. */
static void st_unref(srv_stream *st)
{
    pthread_mutex_lock(&st->mu);
    bool last = --st->refs == 0;
    pthread_mutex_unlock(&st->mu);
    if (last)
        st_free(st);
}

/* Takes st off the server's open streams. */
static void streams_unlink(srv_server *s, srv_stream *st)
{
    pthread_mutex_lock(&s->streams_mu);
    if (st->prev)
        st->prev->next = st->next;
    else
        s->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
    s->nstreams--;
    if (st->health_counted)
        s->health_watches--;
    pthread_mutex_unlock(&s->streams_mu);
}

/* The call is over: the application hears of it, the server forgets it, it is counted. */
static void st_closed(srv_stream *st)
{
    pthread_mutex_lock(&st->mu);
    bool opened = st->opened;
    int code = st->ended ? st->end_code : GRPC_STATUS_CANCELLED;
    pthread_mutex_unlock(&st->mu);
    if (opened && st->m->m->closed)
        st->m->m->closed(st);
    streams_unlink(st->c->srv, st);
    metrics_inc(st->m->handled[code], 1);
    metrics_observe(st->m->seconds, mono_seconds() - st->t0);
    log_debug("stream over", LOG_STR("method", st->m->path),
              LOG_STR("code", tally_grpc_code_name(code)), LOG_INT("cancelled", st->cancelled));
    st_unref(st); /* the close op's */
}

/* A stream's event, on worker w. */
static void st_event(worker *w, stag *tag, bool ok)
{
    srv_stream *st = tag->st;
    switch (tag->kind) {
    case TAG_ST_SENT:
        pthread_mutex_lock(&st->mu);
        grpc_byte_buffer_destroy(st->sending);
        st->sending = NULL;
        st_pump(st);
        st_read(st);
        pthread_mutex_unlock(&st->mu);
        st_unref(st);
        return;
    case TAG_ST_RECV:
        st_received(w, st, ok);
        st_unref(st);
        return;
    case TAG_ST_ENDED:
        st_unref(st);
        return;
    case TAG_ST_CLOSED:
        pthread_mutex_lock(&st->mu);
        st->closed = true;
        if (st->pending) {
            grpc_byte_buffer_destroy(st->pending);
            st->pending = NULL;
        }
        bool wait = st->opening;
        st->close_deferred = wait;
        pthread_mutex_unlock(&st->mu);
        if (!wait)
            st_closed(st);
        return;
    default:
        return;
    }
}

/*
 * Opens a stream for call c: registers it (within TALLY_GRPC_MAX_STREAMS; Health/Watch within
 * HEALTH_WATCHES, as it needs no token), starts the op that says when the call is over, and
 * runs the method's open (a bidi method reads instead). 0 when the stream owns c from now on
 * (open may still have refused it: the stream then ends with its status), and the caller must
 * not touch c again; else a tally_err with c->msg set, and c is the caller's to finish.
 */
static int stream_serve(worker *w, srv_call *c, const ProtobufCMessage *req)
{
    srv_server *s = c->srv;
    method *m = c->method;
    srv_stream *st = calloc(1, sizeof(*st));
    grpc_op op;
    if (!st)
        return srv_fail(c, TALLY_ENOMEM, "out of memory opening a stream");
    st->c = c;
    st->m = m;
    st->t0 = mono_seconds();
    st->closed_tag = (stag){ TAG_ST_CLOSED, st };
    st->sent_tag = (stag){ TAG_ST_SENT, st };
    st->ended_tag = (stag){ TAG_ST_ENDED, st };
    st->recv_tag = (stag){ TAG_ST_RECV, st };
    st->bidi = m->m->bidi != NULL;
    st->opening = true;
    st->refs = 1; /* the opener's, until the end of this function */
    pthread_mutex_init(&st->mu, NULL);
    bool health = m->health;
    pthread_mutex_lock(&s->streams_mu);
    int rc = 0;
    if (s->streams_closing)
        rc = TALLY_EUNAVAIL;
    else if (health ? s->health_watches >= HEALTH_WATCHES
                    : s->nstreams - s->health_watches >= s->max_streams)
        rc = TALLY_ETOOBIG;
    if (rc == 0) {
        st->next = s->streams;
        if (s->streams)
            s->streams->prev = st;
        s->streams = st;
        s->nstreams++;
        s->health_watches += health;
        st->health_counted = health;
    }
    pthread_mutex_unlock(&s->streams_mu);
    if (rc != 0) {
        pthread_mutex_destroy(&st->mu);
        free(st);
        if (rc == TALLY_EUNAVAIL)
            return srv_fail(c, rc, "the server is shutting down; reconnect to another replica");
        metrics_inc(s->streams_refused, 1);
        srv_error_reason(c, "TOO_MANY_STREAMS");
        return srv_fail(c, rc,
                        "too many streams open on this server (at most %lld%s); retry later "
                        "or on another replica",
                        health ? (long long)HEALTH_WATCHES : s->max_streams,
                        health ? " health watches" : ", TALLY_GRPC_MAX_STREAMS");
    }
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &st->cancelled;
    pthread_mutex_lock(&st->mu);
    rc = st_start(st, &op, 1, &st->closed_tag);
    pthread_mutex_unlock(&st->mu);
    if (rc != 0) { /* nothing in flight: undo */
        streams_unlink(s, st);
        pthread_mutex_destroy(&st->mu);
        free(st);
        return srv_fail(c, TALLY_EINTERNAL, "cannot start the stream");
    }
    rc = st->bidi ? 0 : m->m->stream(c, st, req, w->state);
    c->worker = NULL; /* from here on c is the stream's */
    pthread_mutex_lock(&st->mu);
    st->opening = false;
    st->opened = rc == 0;
    if (rc != 0)
        st_end_call(st, rc);
    st_read(st);
    bool closed = st->close_deferred;
    pthread_mutex_unlock(&st->mu);
    if (closed)
        st_closed(st);
    st_unref(st); /* the opener's: the stream may be gone after this */
    return 0;
}

/* Queues bb (taken) on st: sent now, or when the message in flight has gone. */
static int st_send(srv_stream *st, grpc_byte_buffer *bb)
{
    srv_server *s = st->c->srv;
    if (!bb)
        return TALLY_ENOMEM;
    pthread_mutex_lock(&st->mu);
    if (st->closed || st->end_wanted) {
        pthread_mutex_unlock(&st->mu);
        grpc_byte_buffer_destroy(bb);
        return TALLY_ECANCELLED;
    }
    if (st->pending) { /* the client has not taken the one before: the newest wins */
        grpc_byte_buffer_destroy(st->pending);
        metrics_inc(s->stream_replaced, 1);
    }
    st->pending = bb;
    metrics_inc(s->stream_msgs, 1);
    st_pump(st);
    pthread_mutex_unlock(&st->mu);
    return 0;
}

int srv_stream_send(srv_stream *st, const ProtobufCMessage *msg)
{
    size_t size;
    grpc_byte_buffer *bb = pack(msg, st->c->srv->max_message, &size);
    return bb ? st_send(st, bb) : TALLY_ETOOBIG;
}

int srv_stream_send_reply(srv_stream *st, const srv_call *call)
{
    if (!call->reply)
        return TALLY_EINVAL;
    return st_send(st, grpc_byte_buffer_copy(call->reply)); /* shares the slices */
}

srv_call *srv_call_local(srv_stream *st)
{
    srv_call *c = call_new(st->c->srv, TAG_REQUEST, st->m);
    if (c)
        c->deadline = gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return c;
}

void srv_call_local_free(srv_call *call)
{
    if (call)
        call_free(call);
}

const char *srv_call_message(const srv_call *call)
{
    return call->msg;
}

void srv_stream_end(srv_stream *st, int err, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&st->mu);
    st_want_end(st, tally_err_grpc_code(err), msg, NULL);
    pthread_mutex_unlock(&st->mu);
}

void srv_stream_set_data(srv_stream *st, void *data)
{
    st->data = data;
}

void *srv_stream_data(const srv_stream *st)
{
    return st->data;
}

/*
 * Ends every open stream (srv_shutdown): UNAVAILABLE, so their clients go elsewhere. A stream
 * whose client does not read (a message stuck in flight) is cancelled with that status at once:
 * trailers are not held back by flow control, and the shutdown does not wait for it.
 */
static void streams_end_all(srv_server *s)
{
    static const char why[] = "the server is shutting down; reconnect to another replica";
    pthread_mutex_lock(&s->streams_mu);
    s->streams_closing = true;
    for (srv_stream *st = s->streams; st; st = st->next) {
        pthread_mutex_lock(&st->mu);
        bool stuck = st->sending != NULL && !st->closed && !st->ended;
        st_want_end(st, GRPC_STATUS_UNAVAILABLE, why, NULL);
        if (stuck) {
            st->ended = true;
            grpc_call_cancel_with_status(st->c->call, GRPC_STATUS_UNAVAILABLE, why, NULL);
        }
        pthread_mutex_unlock(&st->mu);
    }
    pthread_mutex_unlock(&s->streams_mu);
}

/* grpc.health.v1.Health/Watch: the status now, then at each change (srv_set_serving). */
static int health_watch(srv_call *c, srv_stream *st, const ProtobufCMessage *msg, void *state)
{
    const Grpc__Health__V1__HealthCheckRequest *req = (const void *)msg;
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    srv_server *s = c->srv;
    (void)state;
    /* Unknown services stay watched as SERVICE_UNKNOWN (the protocol's rule for Watch). */
    pthread_mutex_lock(&s->streams_mu); /* against a concurrent srv_set_serving */
    st->health_watch = health_known(s, req->service) ? 1 : -1;
    resp.status = st->health_watch > 0
                      ? health_status(s)
                      : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    srv_stream_send(st, &resp.base);
    pthread_mutex_unlock(&s->streams_mu);
    return 0;
}

/* grpc.reflection.v1(alpha).ServerReflection/ServerReflectionInfo: one answer per request. */
static int reflect_info(srv_call *c, srv_stream *st, const ProtobufCMessage *msg, void *state)
{
    srv_server *s = c->srv;
    uint8_t *out;
    size_t len;
    (void)state;
    if (!s->reflect)
        return srv_fail(c, TALLY_EUNIMPL, "server reflection: no descriptor set in this build");
    if (reflect_answer(s->reflect, s->names, s->nnames, (const void *)msg, &out, &len) != 0)
        return srv_fail(c, TALLY_ENOMEM, "out of memory answering a reflection request");
    if ((long long)len > s->max_message) {
        free(out);
        return srv_fail(c, TALLY_ETOOBIG,
                        "the reflection answer of %zu bytes is over the message limit of %lld "
                        "(TALLY_GRPC_MAX_MESSAGE_BYTES); use build/proto/tally.protoset",
                        len, s->max_message);
    }
    grpc_slice slice = grpc_slice_new(out, len, free);
    int rc = st_send(st, grpc_raw_byte_buffer_create(&slice, 1));
    grpc_slice_unref(slice);
    return rc == 0 ? 0 : srv_fail(c, rc, "cannot send the reflection answer");
}

/* Serves a call of a registered method on the worker w. */
static void serve(worker *w, srv_call *c)
{
    method *m = c->method;
    double t0 = mono_seconds();
    ProtobufCMessage *req = NULL;
    auth_claims claims;
    bool auth = atomic_load(&c->srv->auth) && !m->health, streamed = false;
    int rc, code;

    metrics_inc(m->started, 1);
    c->worker = w;
    if (srv_remaining_ms(c) <= 0) {
        rc = TALLY_ETIMEOUT;
        srv_error_reason(c, "DEADLINE_PASSED_BEFORE_SERVED");
        snprintf(c->msg, sizeof(c->msg), "deadline exceeded before the call was served");
    } else if (c->srv->per_conn_max > 0 && !m->health && (rc = peer_enter(c)) != 0) {
        /* rc and c->msg say why */
    } else if (auth && (rc = authenticate(c, &claims)) != 0) {
        /* rc and c->msg say why */
    } else if (m->m->bidi) {
        peer_leave(c); /* an open stream holds no worker: the connection's limit is for those */
        rc = stream_serve(w, c, NULL);
        streamed = rc == 0;
    } else if ((req = decode(c)) == NULL) {
        rc = TALLY_EINVAL;
    } else if (auth && (rc = authorize_tenant(c, req, &claims)) != 0) {
        /* rc and c->msg say why */
    } else if (m->m->stream) {
        if (c->srv->call_begin && w->state && !m->health)
            c->srv->call_begin(w->state, c->srv->arg);
        peer_leave(c);
        rc = stream_serve(w, c, req);
        streamed = rc == 0;
    } else if (m->health) {
        rc = health_check(c, req);
    } else {
        if (c->srv->call_begin && w->state)
            c->srv->call_begin(w->state, c->srv->arg);
        rc = m->m->handler(c, req, w->state);
    }
    if (req)
        protobuf_c_message_free_unpacked(req, NULL);
    if (streamed) /* the stream owns c now (it may be gone already) and counts it at its end */
        return;
    peer_leave(c);
    if (rc == 0 && !c->reply) {
        rc = TALLY_EINTERNAL;
        snprintf(c->msg, sizeof(c->msg), "handler %s returned no reply", m->path);
    }
    if (rc != 0 && c->reply) {
        grpc_byte_buffer_destroy(c->reply);
        c->reply = NULL;
    }
    if (rc != 0 && !c->msg[0])
        snprintf(c->msg, sizeof(c->msg), "%s", tally_err_str(rc));
    code = tally_err_grpc_code(rc);
    metrics_inc(m->handled[code], 1);
    metrics_observe(m->seconds, mono_seconds() - t0);
    if (code == GRPC_STATUS_INTERNAL || code == GRPC_STATUS_UNKNOWN)
        log_error("call failed", LOG_STR("method", m->path),
                  LOG_STR("code", tally_grpc_code_name(code)), LOG_STR("error", c->msg));
    else
        log_debug("call", LOG_STR("method", m->path), LOG_STR("code", tally_grpc_code_name(code)),
                  LOG_DBL("seconds", mono_seconds() - t0));
    c->worker = NULL;
    finish(c, code);
}

static void dispatch(worker *w, srv_call *c, bool ok)
{
    srv_server *s = w->srv;
    switch (c->kind) {
    case TAG_REQUEST:
    case TAG_GENERIC:
        if (!ok) { /* the server is shutting down */
            call_free(c);
            return;
        }
        atomic_fetch_add(&s->live, 1);
        if (!atomic_load(&s->shutting_down))
            post(s, c->method);
        if (c->kind == TAG_REQUEST) {
            serve(w, c);
            return;
        }
        metrics_inc(s->unknown, 1);
        snprintf(c->msg, sizeof(c->msg), "unknown method %.*s",
                 (int)GRPC_SLICE_LENGTH(c->details.method),
                 (const char *)GRPC_SLICE_START_PTR(c->details.method));
        log_debug("unknown method", LOG_STR("error", c->msg));
        finish(c, GRPC_STATUS_UNIMPLEMENTED);
        return;
    case TAG_DONE:
        call_free(c);
        atomic_fetch_sub(&s->live, 1);
        return;
    case TAG_ST_CLOSED:
    case TAG_ST_SENT:
    case TAG_ST_ENDED:
    case TAG_ST_RECV:
        st_event(w, (stag *)(void *)c, ok);
        return;
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    srv_server *s = w->srv;
    if (s->worker_init)
        w->state = s->worker_init(w->index, s->arg);
    if (atomic_load(&s->auth))
        w->tokens = auth_cache_new(TOKEN_SLOTS); /* NULL: every call verifies in full */
    for (;;) {
        gpr_timespec until =
            gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(POLL_MS, GPR_TIMESPAN));
        grpc_event ev = grpc_completion_queue_next(s->cq, until, NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            dispatch(w, ev.tag, ev.success != 0);
        else if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (atomic_load(&s->stopping) && atomic_load(&s->live) == 0)
            break;
    }
    return NULL;
}

/* ---- handler API ------------------------------------------------------------------------ */

int64_t srv_remaining_ms(const srv_call *c)
{
    gpr_timespec dl = gpr_convert_clock_type(c->deadline, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(dl, gpr_now(GPR_CLOCK_MONOTONIC));
    return (int64_t)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

const char *srv_metadata(const srv_call *c, const char *key, size_t *len)
{
    for (size_t i = 0; i < c->md.count; i++) {
        if (grpc_slice_str_cmp(c->md.metadata[i].key, key) == 0) {
            *len = GRPC_SLICE_LENGTH(c->md.metadata[i].value);
            return (const char *)GRPC_SLICE_START_PTR(c->md.metadata[i].value);
        }
    }
    return NULL;
}

int srv_worker_index(const srv_call *c)
{
    return c->worker ? c->worker->index : -1;
}

int srv_reply(srv_call *c, const ProtobufCMessage *msg)
{
    size_t size;
    grpc_byte_buffer *bb = pack(msg, c->srv->max_message, &size);
    if (!bb)
        return srv_fail(c, TALLY_ETOOBIG, "reply of %zu bytes is over the limit of %lld", size,
                        c->srv->max_message);
    if (c->reply)
        grpc_byte_buffer_destroy(c->reply);
    c->reply = bb;
    return 0;
}

void srv_error_reason(srv_call *c, const char *reason)
{
    rpc_error_reason(&c->error, reason);
}

void srv_error_meta(srv_call *c, const char *key, const char *fmt, ...)
{
    char value[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    rpc_error_meta(&c->error, key, value);
}

void srv_retry_after(srv_call *c, int64_t ms)
{
    c->error.retry_ms = ms;
}

int srv_fail(srv_call *c, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
    return err;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

/* What a file was when it was last read: a change of any of these means read it again. */
typedef struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_id;

/*
 * The TLS files of a server, re-read by the core's certificate fetcher at a handshake after
 * they changed (a Kubernetes Secret update swaps the files) or after srv_reload_tls (SIGHUP).
 */
struct srv_tls {
    char cert[512], key[512], ca[512]; /* paths; ca "" without mTLS */
    file_id ids[3];
    pthread_mutex_t mu;
    bool force;  /* srv_reload_tls: read them at the next handshake */
    bool warned; /* the current files were refused once: say it once */
};

static void file_ids(const srv_tls *t, file_id ids[3])
{
    const char *paths[3] = { t->cert, t->key, t->ca };
    memset(ids, 0, 3 * sizeof(file_id));
    for (int i = 0; i < 3; i++) {
        struct stat st;
        if (paths[i][0] && stat(paths[i], &st) == 0)
            ids[i] = (file_id){ st.st_dev, st.st_ino, st.st_size, st.st_mtim };
    }
}

/* An encrypted key is refused, not prompted for on a terminal from a handshake thread. */
static int no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf, (void)size, (void)rwflag, (void)arg;
    return 0;
}

/* Whether the key is the certificate's (a rotation may have replaced only one of them yet). */
static bool key_matches(const char *cert_pem, const char *key_pem)
{
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, no_passphrase, NULL) : NULL;
    EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL) : NULL;
    bool ok = x && k && X509_check_private_key(x, k) == 1;
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    return ok;
}

/* Reads the files into a certificate config; NULL with err set. */
static grpc_ssl_server_certificate_config *tls_read(const srv_tls *t, char *err, size_t errlen)
{
    grpc_ssl_server_certificate_config *conf = NULL;
    char *cert = cfg_read_file(t->cert, 1 << 20, err, errlen);
    char *key = cert ? cfg_read_file(t->key, 1 << 20, err, errlen) : NULL;
    char *ca = key && t->ca[0] ? cfg_read_file(t->ca, 1 << 20, err, errlen) : NULL;
    if (key && (ca || !t->ca[0])) {
        if (!strstr(cert, "-----BEGIN CERTIFICATE-----") || (ca && !strstr(ca, "-----BEGIN")))
            snprintf(err, errlen, "%s: no PEM certificate",
                     !strstr(cert, "-----BEGIN") ? t->cert : t->ca);
        else if (!key_matches(cert, key))
            snprintf(err, errlen, "%s is not the key of %s", t->key, t->cert);
        else {
            grpc_ssl_pem_key_cert_pair pair = { .private_key = key, .cert_chain = cert };
            /* The core (1.51) asserts root certificates in a fetched config even when it asks
               for no client certificate: without mTLS they are the server's own chain, unused. */
            conf = grpc_ssl_server_certificate_config_create(ca ? ca : cert, &pair, 1);
            if (!conf)
                snprintf(err, errlen, "cannot make a TLS configuration of %s", t->cert);
        }
    }
    if (key)
        memset(key, 0, strlen(key));
    free(cert);
    free(key);
    free(ca);
    return conf;
}

/* The core's fetcher: at the first handshake, and at each one after the files changed. */
static grpc_ssl_certificate_config_reload_status tls_fetch(void *arg,
                                                           grpc_ssl_server_certificate_config **out)
{
    srv_tls *t = arg;
    file_id ids[3];
    char err[600];
    grpc_ssl_certificate_config_reload_status st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    pthread_mutex_lock(&t->mu);
    file_ids(t, ids); /* under the lock: two handshakes never store older snapshots */
    bool first = t->ids[0].ino == 0 && !t->warned;
    if (first || t->force || memcmp(ids, t->ids, sizeof(ids)) != 0) {
        grpc_ssl_server_certificate_config *conf = tls_read(t, err, sizeof(err));
        bool changed = memcmp(ids, t->ids, sizeof(ids)) != 0;
        if (conf) {
            *out = conf;
            st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
            if (!first)
                log_info("TLS certificate reloaded", LOG_STR("cert", t->cert));
            t->warned = false;
            memcpy(t->ids, ids, sizeof(ids));
        } else {
            st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL; /* the core keeps what it has */
            if (!t->warned || changed || t->force)
                log_error("TLS files not reloaded; serving the previous certificate",
                          LOG_STR("error", err));
            t->warned = true;
            memcpy(t->ids, ids, sizeof(ids)); /* retried when they change again */
        }
        t->force = false;
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

/* A verifier srv_set_auth replaced: kept until srv_free, as workers may still hold it. */
struct retired {
    struct retired *next;
    auth_verifier *v;
};

int srv_set_auth(srv_server *s, auth_verifier *v)
{
    struct retired *r = calloc(1, sizeof(*r));
    if (!r || !v || !atomic_load(&s->auth)) {
        free(r);
        return TALLY_EINVAL;
    }
    r->v = v; /* owned from now on; the one it replaces is the caller's or an older entry */
    pthread_mutex_lock(&s->auth_mu);
    r->next = s->retired;
    s->retired = r;
    atomic_store(&s->auth, v);
    atomic_fetch_add(&s->auth_gen, 1);
    pthread_mutex_unlock(&s->auth_mu);
    return 0;
}

void srv_reload_tls(srv_server *s)
{
    if (!s->tls)
        return;
    pthread_mutex_lock(&s->tls->mu);
    s->tls->force = true;
    pthread_mutex_unlock(&s->tls->mu);
    log_info("TLS files will be read again at the next handshake", LOG_STR("cert", s->tls->cert));
}

static grpc_server_credentials *credentials(srv_server *s, const cfg_common *cfg, char *err,
                                            size_t errlen)
{
    grpc_ssl_server_certificate_config *conf;
    if (!cfg->tls_cert[0] && !cfg->tls_key[0]) {
        if (cfg->tls_client_ca[0]) { /* never fall back to plaintext when mTLS was asked for */
            snprintf(err, errlen, "TALLY_TLS_CLIENT_CA: needs TALLY_TLS_CERT and TALLY_TLS_KEY");
            return NULL;
        }
        return grpc_insecure_server_credentials_create();
    }
    if (!cfg->tls_cert[0] || !cfg->tls_key[0]) {
        snprintf(err, errlen, "TALLY_TLS_CERT and TALLY_TLS_KEY: set both or neither");
        return NULL;
    }
    srv_tls *t = calloc(1, sizeof(*t));
    if (!t || (size_t)snprintf(t->cert, sizeof(t->cert), "%s", cfg->tls_cert) >= sizeof(t->cert) ||
        (size_t)snprintf(t->key, sizeof(t->key), "%s", cfg->tls_key) >= sizeof(t->key) ||
        (size_t)snprintf(t->ca, sizeof(t->ca), "%s", cfg->tls_client_ca) >= sizeof(t->ca)) {
        snprintf(err, errlen, "TALLY_TLS_CERT, TALLY_TLS_KEY, TALLY_TLS_CLIENT_CA: paths too long");
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    s->tls = t;
    /* Read once now, so that a bad file stops the start instead of every handshake. */
    if (!(conf = tls_read(t, err, errlen))) {
        char why[600];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, errlen, "TALLY_TLS_CERT, TALLY_TLS_KEY%s: %s",
                 t->ca[0] ? ", TALLY_TLS_CLIENT_CA" : "", why);
        return NULL;
    }
    grpc_ssl_server_certificate_config_destroy(conf);
    grpc_server_credentials *creds = grpc_ssl_server_credentials_create_with_options(
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            t->ca[0] ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                     : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            tls_fetch, t));
    if (!creds)
        snprintf(err, errlen, "TALLY_TLS_CERT, TALLY_TLS_KEY: cannot make TLS credentials");
    return creds;
}

static int add_method(srv_server *s, const char *service, const srv_method *sm, bool health,
                      metrics_registry *reg)
{
    method *m = &s->methods[s->nmethods++];
    char labels[512];
    if (!sm->name || !sm->request ||
        (!health && ((sm->handler != NULL) + (sm->stream != NULL) + (sm->bidi != NULL) != 1 ||
                     !(sm->roles & (unsigned)AUTH_ANY))) ||
        (sm->bidi && !(sm->roles & SRV_NO_TENANT)) ||
        (size_t)snprintf(m->path, sizeof(m->path), "/%s/%s", service, sm->name) >= sizeof(m->path))
        return TALLY_EINVAL;
    m->service = service;
    m->m = sm;
    m->health = health;
    m->tenant = protobuf_c_message_descriptor_get_field_by_name(sm->request, "tenant_id");
    if (m->tenant && (m->tenant->type != PROTOBUF_C_TYPE_STRING ||
                      m->tenant->label == PROTOBUF_C_LABEL_REPEATED))
        return TALLY_EINVAL; /* a tenant_id the runtime cannot check */
    if (!health && !m->tenant && !(sm->roles & SRV_NO_TENANT))
        return TALLY_EINVAL; /* no tenant to check, and not said so */
    m->handle = grpc_server_register_method(
        s->server, m->path, NULL,
        sm->bidi ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    if (!m->handle)
        return TALLY_EINVAL;
    const char *type = sm->bidi ? "bidi_stream" : sm->stream ? "server_stream" : "unary";
    metrics_labels(labels, sizeof(labels), "grpc_method", sm->name, "grpc_service", service,
                   "grpc_type", type, NULL);
    m->started = metrics_counter_add(reg, "grpc_server_started_total",
                                     "Total number of RPCs started on the server.", labels);
    m->seconds = metrics_histogram_add(
        reg, "grpc_server_handling_seconds",
        "Histogram of response latency (seconds) of gRPC that had been application-level "
        "handled by the server.",
        labels, metrics_latency_buckets, metrics_latency_nbuckets);
    for (int code = 0; code < NCODES; code++) {
        char codelabels[600];
        metrics_labels(codelabels, sizeof(codelabels), "grpc_code", tally_grpc_code_label(code),
                       "grpc_method", sm->name, "grpc_service", service, "grpc_type", type, NULL);
        m->handled[code] = metrics_counter_add(
            reg, "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            codelabels);
        if (!m->handled[code])
            return TALLY_ENOMEM;
    }
    return m->started && m->seconds ? 0 : TALLY_ENOMEM;
}

static double live_calls(void *arg)
{
    return (double)atomic_load(&((srv_server *)arg)->live);
}

static double open_streams(void *arg)
{
    srv_server *s = arg;
    pthread_mutex_lock(&s->streams_mu);
    double n = (double)s->nstreams;
    pthread_mutex_unlock(&s->streams_mu);
    return n;
}

static grpc_arg int_arg(const char *key, long long v)
{
    grpc_arg a = { .type = GRPC_ARG_INTEGER, .key = (char *)key };
    a.value.integer = v > INT32_MAX ? INT32_MAX : (int)v;
    return a;
}

srv_server *srv_new(const srv_config *conf, char *err, size_t errlen)
{
    const cfg_common *cfg = conf->cfg;
    srv_server *s;
    grpc_server_credentials *creds;
    grpc_arg args[14];
    size_t nargs = 0, total = 1;
    char addr[300];

    gpr_set_log_function(core_log);
    gpr_set_log_verbosity(log_enabled(LOG_DEBUG) ? GPR_LOG_SEVERITY_DEBUG : GPR_LOG_SEVERITY_ERROR);
    grpc_init();
    s = calloc(1, sizeof(*s));
    for (size_t i = 0; i < conf->nservices; i++)
        total += conf->services[i].nmethods;
    total += 3; /* the health service's second method, reflection v1 and v1alpha */
    if (!s || !(s->methods = calloc(total, sizeof(method)))) {
        snprintf(err, errlen, "out of memory");
        goto out_free;
    }
    s->services = conf->services;
    s->nservices = conf->nservices;
    s->want_workers = (int)cfg->workers;
    s->posts = s->want_workers * 4 < 16 ? 16 : s->want_workers * 4;
    s->max_message = cfg->max_message_bytes;
    atomic_store(&s->auth, conf->auth);
    pthread_mutex_init(&s->auth_mu, NULL);
    s->per_conn_max = cfg->max_calls_per_connection;
    pthread_mutex_init(&s->peers_mu, NULL);
    s->max_streams = cfg->max_streams > 0 ? cfg->max_streams : 10000;
    pthread_mutex_init(&s->streams_mu, NULL);
    s->worker_init = conf->worker_init;
    s->worker_free = conf->worker_free;
    s->call_begin = conf->call_begin;
    s->arg = conf->arg;

    args[nargs++] = int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, cfg->max_message_bytes);
    args[nargs++] = int_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS, cfg->max_concurrent_streams);
    args[nargs++] = int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, cfg->max_message_bytes);
    args[nargs++] = int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, cfg->keepalive_ms);
    args[nargs++] = int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, cfg->keepalive_timeout_ms);
    /* Let clients keep idle connections alive with pings every 10 s or more. */
    args[nargs++] = int_arg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
    args[nargs++] = int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    /* A second process on the same port must fail, not silently share it. */
    args[nargs++] = int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0);
    if (cfg->max_connection_age_ms > 0) {
        args[nargs++] = int_arg(GRPC_ARG_MAX_CONNECTION_AGE_MS, cfg->max_connection_age_ms);
        /* Calls on an aged connection get at least a second to finish. */
        args[nargs++] = int_arg(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                                cfg->shutdown_grace_ms > 1000 ? cfg->shutdown_grace_ms : 1000);
    }
    if (cfg->max_connection_idle_ms > 0)
        args[nargs++] = int_arg(GRPC_ARG_MAX_CONNECTION_IDLE_MS, cfg->max_connection_idle_ms);
    grpc_channel_args chargs = { .num_args = nargs, .args = args };

    s->server = grpc_server_create(&chargs, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    for (size_t i = 0; i < conf->nservices; i++)
        for (size_t j = 0; j < conf->services[i].nmethods; j++)
            if (add_method(s, conf->services[i].name, &conf->services[i].methods[j], false,
                           conf->metrics) != 0) {
                snprintf(err, errlen,
                         "cannot register /%s/%s (a name, descriptor, handler or roles "
                         "missing, a tenant_id that is not one string or none without "
                         "SRV_NO_TENANT, or out of memory)",
                         conf->services[i].name, conf->services[i].methods[j].name);
                goto out_free;
            }
    if (add_method(s, HEALTH_SERVICE, &health_methods[0], true, conf->metrics) != 0 ||
        add_method(s, HEALTH_SERVICE, &health_methods[1], true, conf->metrics) != 0 ||
        add_method(s, REFLECT_V1, &reflect_method, false, conf->metrics) != 0 ||
        add_method(s, REFLECT_V1A, &reflect_method, false, conf->metrics) != 0) {
        snprintf(err, errlen, "cannot register the health service");
        goto out_free;
    }
    s->reflect = reflect_index_new((const uint8_t *)tally_protoset[0].data, tally_protoset[0].size);
    if (!s->reflect)
        log_error("server reflection is off: the descriptor set does not parse");
    s->names = calloc(conf->nservices + 3, sizeof(*s->names));
    if (!s->names) {
        snprintf(err, errlen, "out of memory");
        goto out_free;
    }
    for (size_t i = 0; i < conf->nservices; i++)
        s->names[s->nnames++] = conf->services[i].name;
    s->names[s->nnames++] = HEALTH_SERVICE;
    s->names[s->nnames++] = REFLECT_V1;
    s->names[s->nnames++] = REFLECT_V1A;
    s->unknown = metrics_counter_add(conf->metrics, "grpc_server_unknown_method_total",
                                     "Calls of methods this server does not serve.", NULL);
    s->refused_busy =
        metrics_counter_add(conf->metrics, "tally_grpc_refused_busy_connection_total",
                            "Calls refused with RESOURCE_EXHAUSTED because their connection had "
                            "TALLY_GRPC_MAX_CALLS_PER_CONNECTION calls being served.",
                            NULL);
    metrics_gauge_fn_add(conf->metrics, "grpc_server_calls_in_flight",
                         "Calls being served right now (open streams among them).", NULL,
                         live_calls, s);
    metrics_gauge_fn_add(conf->metrics, "tally_grpc_streams_open",
                         "Server-streaming calls open (WatchDashboard, Health/Watch).", NULL,
                         open_streams, s);
    s->streams_refused =
        metrics_counter_add(conf->metrics, "tally_grpc_streams_refused_total",
                            "Streams refused with RESOURCE_EXHAUSTED: TALLY_GRPC_MAX_STREAMS were "
                            "open.",
                            NULL);
    s->stream_msgs = metrics_counter_add(conf->metrics, "tally_grpc_stream_messages_total",
                                         "Messages sent on server streams.", NULL);
    s->stream_replaced = metrics_counter_add(
        conf->metrics, "tally_grpc_stream_messages_replaced_total",
        "Stream messages replaced by a newer one before the client took them (slow readers).",
        NULL);

    creds = credentials(s, cfg, err, errlen);
    if (!creds)
        goto out_free;
    cfg_hostport_str(&cfg->grpc_listen, addr, sizeof(addr));
    s->port = grpc_server_add_http2_port(s->server, addr, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0) {
        snprintf(err, errlen,
                 "TALLY_GRPC_LISTEN: cannot listen on %s (in use, or not an address "
                 "of this host)",
                 addr);
        goto out_free;
    }
    return s;

out_free:
    srv_free(s);
    if (!s)
        grpc_shutdown_blocking();
    return NULL;
}

int srv_start(srv_server *s, char *err, size_t errlen)
{
    grpc_server_start(s->server);
    atomic_store(&s->serving, true);
    for (size_t i = 0; i < s->nmethods; i++)
        for (int k = 0; k < s->posts; k++)
            if (post(s, &s->methods[i]) != 0)
                goto out_fail;
    for (int k = 0; k < GENERIC_POSTS; k++)
        if (post(s, NULL) != 0)
            goto out_fail;
    s->workers = calloc((size_t)s->want_workers, sizeof(worker));
    if (!s->workers)
        goto out_fail;
    for (int i = 0; i < s->want_workers; i++) {
        worker *w = &s->workers[i];
        w->srv = s;
        w->index = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            goto out_fail;
        s->nworkers++;
    }
    return 0;
out_fail:
    snprintf(err, errlen, "cannot start the gRPC workers");
    return TALLY_EINTERNAL;
}

int srv_port(const srv_server *s)
{
    return s->port;
}

void srv_set_serving(srv_server *s, bool serving)
{
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    pthread_mutex_lock(&s->streams_mu);
    bool was = atomic_exchange(&s->serving, serving);
    resp.status = health_status(s);
    for (srv_stream *st = s->streams; st && was != serving; st = st->next)
        if (st->health_watch > 0)
            srv_stream_send(st, &resp.base);
    pthread_mutex_unlock(&s->streams_mu);
}

int srv_shutdown(srv_server *s, long long grace_ms)
{
    static int shutdown_tag;
    gpr_timespec until =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(grace_ms, GPR_TIMESPAN));
    grpc_event ev;
    srv_set_serving(s, false);
    atomic_store(&s->shutting_down, true);
    streams_end_all(s);
    grpc_server_shutdown_and_notify(s->server, s->shutdown_cq, &shutdown_tag);
    ev = grpc_completion_queue_pluck(s->shutdown_cq, &shutdown_tag, until, NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        if (atomic_load(&s->live) > 0)
            log_warn("grace period over, cancelling calls", LOG_INT("calls", atomic_load(&s->live)),
                     LOG_INT("grace_ms", grace_ms));
        grpc_server_cancel_all_calls(s->server);
        grpc_completion_queue_pluck(s->shutdown_cq, &shutdown_tag,
                                    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    }
    atomic_store(&s->stopping, true);
    /* A handler stuck past the cancel (a blocking call without a timeout) must not keep the
       process alive forever: after STUCK_MS the caller gives up and exits. */
    for (int waited = 0; atomic_load(&s->live) > 0; waited += 10) {
        if (waited >= STUCK_MS) {
            log_error("calls still running after cancel", LOG_INT("calls", atomic_load(&s->live)),
                      LOG_INT("waited_ms", STUCK_MS));
            return TALLY_ETIMEOUT;
        }
        struct timespec ts = { .tv_nsec = 10 * 1000000 };
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < s->nworkers; i++) {
        pthread_join(s->workers[i].thread, NULL);
        auth_cache_free(s->workers[i].tokens);
        if (s->worker_free && s->workers[i].state)
            s->worker_free(s->workers[i].state, s->arg);
    }
    s->nworkers = 0;
    return 0;
}

/* Shuts a queue down and frees the tags still in it (requests that never became calls). */
static void drain(grpc_completion_queue *cq, bool calls)
{
    grpc_event ev;
    grpc_completion_queue_shutdown(cq);
    do {
        ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (calls && ev.type == GRPC_OP_COMPLETE)
            call_free(ev.tag);
    } while (ev.type != GRPC_QUEUE_SHUTDOWN);
    grpc_completion_queue_destroy(cq);
}

void srv_free(srv_server *s)
{
    if (!s)
        return;
    if (s->server) {
        /* also fine for a server that never started; with calls still stuck in handlers the
           server is left as it is (they would use it after the free): the process exits. */
        if (!atomic_load(&s->stopping) && srv_shutdown(s, 0) != 0)
            return;
        grpc_server_destroy(s->server);
    }
    if (s->cq)
        drain(s->cq, true);
    if (s->shutdown_cq) {
        grpc_completion_queue_shutdown(s->shutdown_cq);
        grpc_completion_queue_destroy(s->shutdown_cq);
    }
    free(s->workers);
    free(s->methods);
    if (s->tls)
        pthread_mutex_destroy(&s->tls->mu);
    for (int i = 0; i < PEER_BUCKETS; i++)
        while (s->peers[i]) {
            peer *p = s->peers[i];
            s->peers[i] = p->next;
            free(p);
        }
    pthread_mutex_destroy(&s->peers_mu);
    pthread_mutex_destroy(&s->streams_mu);
    reflect_index_free(s->reflect);
    free(s->names);
    while (s->retired) {
        struct retired *r = s->retired;
        s->retired = r->next;
        auth_free(r->v);
        free(r);
    }
    pthread_mutex_destroy(&s->auth_mu);
    free(s->tls);
    free(s);
    grpc_shutdown_blocking();
}
