/*
 * gclient: a small unary gRPC client over the C core, for the tests, the benchmarks and the
 * command-line tools (never the services).
 *
 * Each gc_client has its own channel (a private subchannel pool, so its own TCP connection)
 * and its own completion queue. Calls are unary; results carry the status code, the details,
 * and the reply bytes. A client is used by one thread at a time.
 */
#ifndef TALLY_GCLIENT_H
#define TALLY_GCLIENT_H

#include "err.h"
#include "rpcstatus.h"

#include <protobuf-c/protobuf-c.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gc_client gc_client;

/* The method paths of Tally's two services: GC_COMMANDS("CreateComplaint"). */
#define GC_COMMANDS(m)  "/tally.v1.ComplaintCommands/" m
#define GC_DASHBOARD(m) "/tally.v1.Dashboard/" m

typedef struct gc_result {
    int code;
    char details[1024];
    uint8_t *data; /* reply message bytes, malloc'd; NULL if none */
    size_t len;
    double seconds; /* wall time of the call */
    /* The grpc-status-details-bin trailer (a google.rpc.Status, see rpcstatus.h), or none. */
    uint8_t status_bin[RPC_STATUS_MAX];
    size_t status_bin_len;
} gc_result;

/* How gc_new_ex connects; a zeroed struct (or NULL) is gc_new's plaintext channel. */
typedef struct gc_options {
    /* PEM file of the root CAs to trust: non-empty = TLS, empty or NULL = plaintext. */
    const char *tls_ca_path;
    /* PEM files of a client certificate chain and its key for mutual TLS; both or neither. */
    const char *tls_cert_path;
    const char *tls_key_path;
    /* The longest wait between reconnection attempts, in ms; 0 = gRPC's default (120 s). A
     * client that polls a server which may come back should keep it short. */
    int max_reconnect_backoff_ms;
    /* The bearer token sent as `authorization: Bearer TOKEN` on every call (unless a call's own
     * metadata has an authorization): NULL = $TALLY_TOKEN when set, "" = none. */
    const char *token;
} gc_options;

/* target: "127.0.0.1:port"; $TALLY_TOKEN, if set, is the bearer token (gc_options.token).
 * Calls grpc_init; gc_free shuts it down. */
gc_client *gc_new(const char *target);
gc_client *gc_new_port(int port);

/*
 * As gc_new, with options. NULL with the reason in err (a file that cannot be read, a key
 * without a certificate); nothing is left initialized then.
 */
gc_client *gc_new_ex(const char *target, const gc_options *opt, char *err, size_t errlen);

/* Accepts NULL. */
void gc_free(gc_client *c);

/*
 * Calls in progress on c end with CANCELLED soon (within about 100 ms) after *flag becomes
 * non-zero, e.g. from a signal handler; calls started while it is set end at once. flag is
 * borrowed until gc_free or the next gc_set_cancel; NULL turns this off.
 */
void gc_set_cancel(gc_client *c, const volatile sig_atomic_t *flag);

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

/* ---- typed calls: pack, call, check the status, decode ------------------------------------ */

#define GC_REPLY_MAX (4 << 20) /* the largest reply gc_call_msg decodes */

/* The outcome of a gc_call_msg. */
typedef struct gc_status {
    int code;           /* the gRPC status code (enum tally_grpc_code of err.h); UNKNOWN (2) when
                           no call was made */
    char details[1024]; /* the server's details ("" when it sent none) */
    char message[1100]; /* "CODE: details", one line to print; "" on OK */
    double seconds;     /* the call's wall time */
    bool has_rich;      /* the server sent a google.rpc.Status, decoded into rich */
    rpc_status_view rich;
} gc_status;

/*
 * Packs req, calls method, and on OK decodes the reply with reply_desc into *reply (caller frees
 * with protobuf_c_message_free_unpacked(*reply, NULL)); md and deadline_ms as for gc_call.
 * Returns 0 on OK; otherwise -1 with *reply NULL and st saying why: the server's status, or
 * INTERNAL for a call that could not start or a reply that does not decode (or is over
 * GC_REPLY_MAX). reply may be NULL when only the status matters; st may be NULL.
 */
int gc_call_msg(gc_client *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *reply_desc, const char *const *md,
                int deadline_ms, ProtobufCMessage **reply, gc_status *st);

/* The status of a completed call (code, details, message, the decoded google.rpc.Status). */
void gc_status_of(const gc_result *res, gc_status *st);

/* Whether a call that failed with code may work when tried again later (the server restarts,
 * is overloaded, or went away mid-call): CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE. */
bool gc_transient(int code);

/*
 * A server-streaming call (WatchDashboard, Health/Watch): gc_stream_open sends req and
 * half-closes; NULL if the call could not start. Each stream has its own completion queue, on
 * the client's connection; a stream is used by one thread at a time.
 */
typedef struct gc_stream gc_stream;
gc_stream *gc_stream_open(gc_client *c, const char *method, const ProtobufCMessage *req,
                          const char *const *md, int deadline_ms);

/*
 * Waits up to wait_ms (-1: forever) for the next message: 1 with its bytes in *data (malloc'd,
 * the caller frees) and *len; 0 when none came in time (the read stays posted); -1 when the
 * stream is over, with its status in st.
 */
int gc_stream_next(gc_stream *s, int wait_ms, uint8_t **data, size_t *len, gc_status *st);

/* Cancels the stream if it is still open, and frees it. Accepts NULL. */
void gc_stream_free(gc_stream *s);

/* Silences the gRPC core's own log lines (a command-line tool's terminal is not a log). */
void gc_quiet(void);

#endif
