#include "err.h"

#include <stddef.h>

/* Indexed by -err. */
static const struct {
    const char *str;
    int grpc;
} errs[] = {
    [0] = { "ok", 0 },
    [-TALLY_EINVAL] = { "invalid argument", 3 },
    [-TALLY_ENOTFOUND] = { "not found", 5 },
    [-TALLY_EEXIST] = { "already exists", 6 },
    [-TALLY_ECONFLICT] = { "conflict", 10 },
    [-TALLY_EPRECOND] = { "failed precondition", 9 },
    [-TALLY_EUNAVAIL] = { "unavailable", 14 },
    [-TALLY_ETIMEOUT] = { "deadline exceeded", 4 },
    [-TALLY_ETOOBIG] = { "too big", 8 },
    [-TALLY_ENOMEM] = { "out of memory", 8 },
    [-TALLY_EDENIED] = { "permission denied", 7 },
    [-TALLY_EUNAUTH] = { "unauthenticated", 16 },
    [-TALLY_EUNIMPL] = { "unimplemented", 12 },
    [-TALLY_ECANCELLED] = { "cancelled", 1 },
    [-TALLY_ERANGE] = { "out of range", 11 },
    [-TALLY_EINTERNAL] = { "internal error", 13 },
    [-TALLY_EUNKNOWN] = { "unknown", 2 },
    [-TALLY_EDATALOSS] = { "data loss", 15 },
};

static const char *const grpc_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

#define NERRS  (sizeof(errs) / sizeof(errs[0]))
#define NCODES (sizeof(grpc_names) / sizeof(grpc_names[0]))

const char *tally_err_str(int err)
{
    if (err > 0 || (size_t)-err >= NERRS)
        return "unknown error";
    return errs[-err].str;
}

int tally_err_grpc_code(int err)
{
    if (err > 0 || (size_t)-err >= NERRS)
        return 2;
    return errs[-err].grpc;
}

int tally_err_from_grpc_code(int code)
{
    if (code == 0)
        return TALLY_OK;
    if (code == 8)
        return TALLY_ETOOBIG;
    for (size_t i = 1; i < NERRS; i++)
        if (errs[i].grpc == code)
            return -(int)i;
    return TALLY_EINTERNAL;
}

const char *tally_grpc_code_name(int code)
{
    if (code < 0 || (size_t)code >= NCODES)
        return "UNKNOWN";
    return grpc_names[code];
}

/* grpc-go's codes.Code.String(), which go-grpc-prometheus puts in grpc_code. */
static const char *const grpc_labels[] = {
    "OK",       "Canceled",        "Unknown",          "InvalidArgument",   "DeadlineExceeded",
    "NotFound", "AlreadyExists",   "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted",  "OutOfRange",      "Unimplemented",    "Internal",          "Unavailable",
    "DataLoss", "Unauthenticated",
};

const char *tally_grpc_code_label(int code)
{
    _Static_assert(sizeof(grpc_labels) == sizeof(grpc_names), "one label per code");
    if (code < 0 || (size_t)code >= NCODES)
        return "Unknown";
    return grpc_labels[code];
}
