/*
 * rpcstatus: the error details a program can read, as google.rpc.Status.
 *
 * Every failed call carries, besides its code and message, a serialized google.rpc.Status in
 * the grpc-status-details-bin trailer (the standard every gRPC client library decodes:
 * grpc-go's status.FromError, Python's grpc_status.rpc_status.from_call, grpc-js with
 * google-proto-files). Status.code and .message equal the call's; its details hold:
 *  - ErrorInfo, always: domain "tally.v1", a reason (UPPER_SNAKE, stable: programs branch on
 *    it) and metadata (e.g. current_version on a VERSION_CONFLICT);
 *  - BadRequest, on INVALID_ARGUMENT: one field violation, the field path the message starts
 *    with ("range.from_ms: after range.to_ms" gives field "range.from_ms"), "" when the
 *    message names none (an undecodable request);
 *  - RetryInfo, on UNAVAILABLE and RESOURCE_EXHAUSTED: how long to wait before retrying.
 * Pure logic: packing and reading back, no gRPC.
 */
#ifndef TALLY_RPCSTATUS_H
#define TALLY_RPCSTATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RPC_DOMAIN     "tally.v1"
#define RPC_META_MAX   6    /* metadata entries of one ErrorInfo */
#define RPC_RETRY_MS   1000 /* RetryInfo's delay when the handler set none */
#define RPC_STATUS_MAX 4096 /* the largest Status packed (worst case about 2.4 KiB) */

/* What a handler adds to a failure; zeroed means "the defaults for the code". */
typedef struct rpc_error {
    char reason[64];
    int nmeta;
    struct {
        char key[32];
        char value[160];
    } meta[RPC_META_MAX];
    int64_t retry_ms; /* 0: RPC_RETRY_MS */
} rpc_error;

/* Forgets everything set (a call's state between uses). */
void rpc_error_clear(rpc_error *e);

/* Sets the reason, upper-cased (truncated to fit; characters outside [A-Z0-9_] become '_'). */
void rpc_error_reason(rpc_error *e, const char *reason);

/* Adds or replaces one metadata entry; entries past RPC_META_MAX are dropped. */
void rpc_error_meta(rpc_error *e, const char *key, const char *value);

/*
 * The field path a status message starts with: the text before the first ": " when it is a
 * path (letters, digits, '_', '.', '[' and ']', starting with a letter). Copies it into field
 * and returns true; false (and field "") otherwise.
 */
bool rpc_field_path(const char *msg, char *field, size_t len);

/*
 * Makes s valid UTF-8 in place: each byte that does not start a whole sequence becomes '?'
 * (a message cut at its buffer's end, a client's bytes quoted in it). A proto3 string must be
 * UTF-8: grpc-go and Python refuse a Status whose message is not.
 */
void rpc_utf8_clean(char *s);

/* The reason a failure gets when the handler set none ("INVALID_FIELD", "UNAVAILABLE", ...). */
const char *rpc_default_reason(int code, const char *msg);

/*
 * Packs the google.rpc.Status of a failure with gRPC code (1..16) and message into buf.
 * Returns its length, or 0 when it does not fit (not below RPC_STATUS_MAX with the limits
 * above: a 511-byte message twice and six full metadata entries take about 2.4 KiB) or code
 * is OK.
 */
size_t rpc_status_pack(int code, const char *msg, const rpc_error *e, uint8_t *buf, size_t cap);

/* What a client reads back from a grpc-status-details-bin value (tests, the CLI). */
typedef struct rpc_status_view {
    int code;
    char message[512];
    char domain[32];
    rpc_error info; /* the ErrorInfo's reason and metadata ("" without one) */
    bool has_bad_request;
    char field[128];       /* the first field violation's field */
    char description[512]; /* and its description */
    bool has_retry;
    int64_t retry_ms;
} rpc_status_view;

/* Decodes a Status. 0, or -1 when the bytes are not one. */
int rpc_status_read(const uint8_t *buf, size_t len, rpc_status_view *out);

/* The value of metadata key in v->info, or NULL. */
const char *rpc_status_meta(const rpc_status_view *v, const char *key);

#endif
