/*
 * srv: a gRPC server over the gRPC C core: unary calls, and server streams (below).
 *
 * A service is a table of methods (name, request descriptor, handler). srv_new() binds the
 * port and registers every method plus grpc.health.v1.Health/Check and Watch; srv_start() starts N
 * worker threads that poll ONE shared completion queue, so the calls of a single HTTP/2
 * connection spread over every thread. The worker that takes a call serves it start to end
 * with its own state (its database connections: neither libpq nor hiredis is thread-safe).
 *
 * For each call the runtime skips calls whose deadline has already passed, checks the bearer
 * token (srv_config.auth), reads and decodes the request (a missing or undecodable message is
 * INVALID_ARGUMENT before any handler runs), checks the request's tenant against the token,
 * calls the handler, and sends reply and status in one batch. Unknown methods get
 * UNIMPLEMENTED at once. Every call is counted in the grpc_server_* metrics.
 *
 * Handlers never see grpc.h: they get a srv_call to ask for the deadline and metadata and to
 * answer. A handler returns 0 after srv_reply(), or a negative tally_err, usually through
 * srv_fail() with a message naming the problem ("title: longer than 200 bytes").
 *
 * Lifecycle: block SIGTERM/SIGINT in every thread before srv_new() (the core starts threads
 * that inherit the mask); srv_new, srv_start, then srv_shutdown from the thread that waited
 * for the signal, then srv_free. srv_new/srv_free bracket grpc_init/grpc_shutdown_blocking.
 */
#ifndef TALLY_SRV_H
#define TALLY_SRV_H

#include "cfg.h"
#include "metrics.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct srv_server srv_server;
typedef struct srv_call srv_call;
typedef struct srv_tls srv_tls;

/*
 * Serves one call. req is the decoded request (borrowed until return); worker is the state
 * the worker_init hook made for this thread (NULL without one).
 */
typedef int (*srv_handler)(srv_call *call, const ProtobufCMessage *req, void *worker);

/*
 * Server streaming. A stream method (srv_method.stream instead of .handler) is checked like a
 * unary one (deadline, token, request, tenant); then open runs on a worker: it returns 0 to
 * keep the stream open, having kept st where the application sends on it (srv_stream_send,
 * from any thread, without blocking), or fails like a handler (srv_fail on call) to end the
 * call with that status at once. The worker is free again as soon as open returns: open
 * streams hold no thread.
 *
 * closed(st) runs once, on a worker, when a stream open kept is over: the client cancelled or
 * went away, its deadline passed, srv_stream_end's status went out, or the server shut down.
 * After closed returns, nothing may use st: an application that sends from other threads
 * unlinks st from its registry in closed, under the lock it holds while sending.
 *
 * Flow control: one message is in flight at a time; a message sent while one is in flight
 * waits, and a newer one replaces it (the newest wins). A client that reads slowly sees fewer
 * messages, never a backlog, and the server's memory per stream stays bounded.
 * On SIGTERM (srv_shutdown) every stream ends with UNAVAILABLE, so clients reconnect to another
 * replica. TALLY_GRPC_MAX_STREAMS bounds the streams open in the process (RESOURCE_EXHAUSTED
 * past it).
 */
typedef struct srv_stream srv_stream;
typedef int (*srv_stream_open)(srv_call *call, srv_stream *st, const ProtobufCMessage *req,
                               void *worker);
typedef void (*srv_stream_closed)(srv_stream *st);

/*
 * A bidirectional method (srv_method.bidi, e.g. server reflection): the call is checked like a
 * unary one but without a request (so its roles need SRV_NO_TENANT); then each message the
 * client sends is decoded with .request and handed to bidi on a worker, one at a time: the
 * next is read only after the replies bidi sent went out, so every reply is delivered, in
 * order (no newest-wins here). bidi returns 0 to go on, or fails (srv_fail on call) to end
 * the stream with that status; when the client half-closes, the stream ends with OK.
 */
typedef int (*srv_stream_msg)(srv_call *call, srv_stream *st, const ProtobufCMessage *msg,
                              void *worker);

typedef struct srv_method {
    const char *name; /* "CreateComplaint" */
    const ProtobufCMessageDescriptor *request;
    srv_handler handler;
    unsigned roles;           /* the enum auth_role bits that may call it (never none), and flags */
    srv_stream_open stream;   /* a server-streaming method: set this and closed, no handler */
    srv_stream_closed closed; /* may be NULL when open keeps nothing */
    srv_stream_msg bidi;      /* a bidirectional method: set this alone */
} srv_method;

/*
 * In srv_method.roles: the request has no string field tenant_id, on purpose (the runtime's
 * test service). Without it, a method whose request lacks one is not registered: the runtime's
 * tenant check must never pass by default.
 */
#define SRV_NO_TENANT 0x100u

typedef struct srv_service {
    const char *name; /* the full service name, "tally.v1.ComplaintCommands" */
    const srv_method *methods;
    size_t nmethods;
} srv_service;

typedef struct srv_config {
    const srv_service *services; /* borrowed until srv_free */
    size_t nservices;
    const cfg_common *cfg;     /* listen address, workers, limits, keepalive, TLS; copied */
    metrics_registry *metrics; /* borrowed until srv_free */
    /*
     * Bearer tokens (borrowed until srv_free), or NULL to trust every caller (TALLY_AUTH=off).
     * With one, every call but Health/Check needs a valid token whose role is one of the
     * method's roles (else UNAUTHENTICATED, PERMISSION_DENIED), and when the request has a
     * string field tenant_id, a token that grants that tenant (else PERMISSION_DENIED, with the
     * same message whether or not the tenant exists). Handlers only ever see authorized calls.
     */
    const struct auth_verifier *auth; /* borrowed until srv_free */
    /*
     * Optional per-worker state, made on the worker's thread before it serves. It may be NULL
     * (a failed allocation); handlers must then answer UNAVAILABLE.
     */
    void *(*worker_init)(int index, void *arg);
    void (*worker_free)(void *state, void *arg);
    /*
     * Optional: called on the worker's state before each handler runs (not for health
     * checks), e.g. to forget what the previous call scoped (command-svc's tenant).
     */
    void (*call_begin)(void *state, void *arg);
    void *arg;
} srv_config;

/* Registers, binds and prepares; nothing is served yet. NULL with the reason in err. */
srv_server *srv_new(const srv_config *conf, char *err, size_t errlen);

/* Starts the server and the worker threads. 0, or TALLY_EINTERNAL with the reason in err. */
int srv_start(srv_server *s, char *err, size_t errlen);

/* The bound gRPC port (useful with port 0). */
int srv_port(const srv_server *s);

/*
 * With TLS (TALLY_TLS_CERT, TALLY_TLS_KEY, TALLY_TLS_CLIENT_CA): the certificate, key and
 * client CA files are read again at the first handshake after any of them changed (size,
 * mtime, inode), so a rotation needs no restart; a pair that does not match (a rotation half
 * done) keeps the previous certificate, logged once. srv_reload_tls makes the next handshake
 * read them even when they look unchanged (svc_main calls it on SIGHUP).
 */
void srv_reload_tls(srv_server *s);

/*
 * Replaces the token verifier (new keys) of a server that verifies tokens: calls from now on
 * are checked with v, and the workers forget the tokens they verified before. The server owns
 * v from now on (the first verifier stays the caller's). 0, or TALLY_EINVAL (a server without
 * auth, or NULL).
 */
struct auth_verifier;
int srv_set_auth(srv_server *s, struct auth_verifier *v);

/* What Health/Check answers: SERVING (true, the state after srv_start) or NOT_SERVING. */
void srv_set_serving(srv_server *s, bool serving);

/*
 * Stops taking calls, lets in-flight calls finish for up to grace_ms, cancels the rest, and
 * joins the workers. Call once, from the main thread. 0; or TALLY_ETIMEOUT when handlers still
 * hold calls 5 s after the cancel: the workers cannot be joined, and the only safe way on is
 * _exit (svc_main does that).
 */
int srv_shutdown(srv_server *s, long long grace_ms);

/* Frees everything and shuts the gRPC core down (shutting the server down first if needed). */
void srv_free(srv_server *s);

/* Milliseconds left before the call's deadline; INT64_MAX when the client set none. */
int64_t srv_remaining_ms(const srv_call *call);

/*
 * The first value of request metadata key (lower-case, e.g. "authorization"): a pointer
 * borrowed until the handler returns, not NUL-terminated, with its length. NULL if absent.
 */
const char *srv_metadata(const srv_call *call, const char *key, size_t *len);

/* The index (0..workers-1) of the worker thread serving the call. */
int srv_worker_index(const srv_call *call);

/*
 * Sends msg on an open stream (see srv_stream_open): now, or when the message in flight has
 * gone, replacing any message still waiting. 0; TALLY_ECANCELLED when the stream is over or
 * ending; TALLY_ETOOBIG over the message size limit; TALLY_ENOMEM.
 */
int srv_stream_send(srv_stream *st, const ProtobufCMessage *msg);

/* Ends the stream with err's status and message (after the message waiting, if any); once. */
void srv_stream_end(srv_stream *st, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * A call of the stream's server that came from no client, to run a unary handler's logic for
 * streams off the network (WatchDashboard computes a page once for every stream that asked
 * the same): no deadline, no metadata; srv_fail and srv_reply work as in a handler. Free it
 * with srv_call_local_free. NULL when out of memory.
 */
srv_call *srv_call_local(srv_stream *st);
void srv_call_local_free(srv_call *call);

/* The status message a failed handler left in call. */
const char *srv_call_message(const srv_call *call);

/* Sends the reply srv_reply left in call (which keeps it) on st, as srv_stream_send. */
int srv_stream_send_reply(srv_stream *st, const srv_call *call);

/* The application's pointer for the stream (NULL until set). */
void srv_stream_set_data(srv_stream *st, void *data);
void *srv_stream_data(const srv_stream *st);

/* Sets the reply. 0, or TALLY_ETOOBIG if it is over the message size limit. */
int srv_reply(srv_call *call, const ProtobufCMessage *msg);

/*
 * What a failure says to a program, beside its message: every failed call carries a
 * google.rpc.Status (grpc-status-details-bin) with an ErrorInfo, a BadRequest on
 * INVALID_ARGUMENT (the field path the message starts with) and a RetryInfo on UNAVAILABLE and
 * RESOURCE_EXHAUSTED (see rpcstatus.h). A handler may set, before it fails: the ErrorInfo's
 * reason (UPPER_SNAKE, e.g. "VERSION_CONFLICT"; else one for the code), metadata entries
 * (e.g. "current_version"), and the RetryInfo's delay (else 1 s). Ignored on success.
 */
void srv_error_reason(srv_call *call, const char *reason);
void srv_error_meta(srv_call *call, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void srv_retry_after(srv_call *call, int64_t ms);

/* Sets the status message for a failure and returns err, so: return srv_fail(call, ...). */
int srv_fail(srv_call *call, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
