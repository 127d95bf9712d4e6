/*
 * err: the one error vocabulary of Tally.
 *
 * Every action in Tally returns int: 0 (TALLY_OK) or one of the negative codes below. A
 * predicate returns bool and a constructor returns NULL instead. The codes describe what went
 * wrong in the terms a caller can act on; exactly one function, tally_err_grpc_code(), turns
 * them into gRPC status codes, so that a handler never picks a gRPC number by hand.
 */
#ifndef TALLY_ERR_H
#define TALLY_ERR_H

enum tally_err {
    TALLY_OK = 0,
    TALLY_EINVAL = -1,      /* the caller's input is wrong: INVALID_ARGUMENT */
    TALLY_ENOTFOUND = -2,   /* the named thing does not exist: NOT_FOUND */
    TALLY_EEXIST = -3,      /* it exists already, with other content: ALREADY_EXISTS */
    TALLY_ECONFLICT = -4,   /* a concurrent change won (stale version): ABORTED */
    TALLY_EPRECOND = -5,    /* not allowed in the current state: FAILED_PRECONDITION */
    TALLY_EUNAVAIL = -6,    /* a dependency is down; retrying may work: UNAVAILABLE */
    TALLY_ETIMEOUT = -7,    /* the deadline passed: DEADLINE_EXCEEDED */
    TALLY_ETOOBIG = -8,     /* over a size or count limit: RESOURCE_EXHAUSTED */
    TALLY_ENOMEM = -9,      /* out of memory: RESOURCE_EXHAUSTED */
    TALLY_EDENIED = -10,    /* authenticated but not allowed: PERMISSION_DENIED */
    TALLY_EUNAUTH = -11,    /* no valid credentials: UNAUTHENTICATED */
    TALLY_EUNIMPL = -12,    /* not implemented: UNIMPLEMENTED */
    TALLY_ECANCELLED = -13, /* the caller went away: CANCELLED */
    TALLY_ERANGE = -14,     /* valid but past the end of the data: OUT_OF_RANGE */
    TALLY_EINTERNAL = -15,  /* a bug or broken invariant: INTERNAL */
    TALLY_EUNKNOWN = -16,   /* an error of unknown kind from elsewhere: UNKNOWN */
    TALLY_EDATALOSS = -17,  /* unrecoverable loss or corruption of data: DATA_LOSS */
};

/*
 * The gRPC status codes (0..16), for the code that reads them off a reply (clients, tests,
 * benchmarks) without including grpc.h. The services never pick one: tally_err_grpc_code does.
 */
enum tally_grpc_code {
    TALLY_GRPC_OK = 0,
    TALLY_GRPC_CANCELLED = 1,
    TALLY_GRPC_UNKNOWN = 2,
    TALLY_GRPC_INVALID_ARGUMENT = 3,
    TALLY_GRPC_DEADLINE_EXCEEDED = 4,
    TALLY_GRPC_NOT_FOUND = 5,
    TALLY_GRPC_ALREADY_EXISTS = 6,
    TALLY_GRPC_PERMISSION_DENIED = 7,
    TALLY_GRPC_RESOURCE_EXHAUSTED = 8,
    TALLY_GRPC_FAILED_PRECONDITION = 9,
    TALLY_GRPC_ABORTED = 10,
    TALLY_GRPC_OUT_OF_RANGE = 11,
    TALLY_GRPC_UNIMPLEMENTED = 12,
    TALLY_GRPC_INTERNAL = 13,
    TALLY_GRPC_UNAVAILABLE = 14,
    TALLY_GRPC_DATA_LOSS = 15,
    TALLY_GRPC_UNAUTHENTICATED = 16,
};

/* A short lower-case name for err ("invalid argument"); "unknown error" for anything else. */
const char *tally_err_str(int err);

/* The gRPC status code (0..16) for err; 0 for TALLY_OK, 2 (UNKNOWN) for anything unknown. */
int tally_err_grpc_code(int err);

/* The inverse, for errors a gRPC peer returned: a gRPC code (0..16) to a tally_err. */
int tally_err_from_grpc_code(int code);

/* The canonical upper-case name of a gRPC status code ("NOT_FOUND"); "UNKNOWN" if out of range. */
const char *tally_grpc_code_name(int code);

/*
 * The code as the grpc_code label of the grpc_server_* metrics: grpc-go's codes.Code.String()
 * ("NotFound", "Canceled", "DeadlineExceeded"), which go-grpc-prometheus emits and stock
 * dashboards and alert rules match; "Unknown" if out of range.
 */
const char *tally_grpc_code_label(int code);

#endif
