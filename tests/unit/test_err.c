/* err: the one mapping from tally errors to gRPC codes, and back. */
#include "err.h"

#include <criterion/criterion.h>
#include <string.h>

Test(err, each_error_has_a_name_and_a_grpc_code)
{
    cr_assert_eq(tally_err_grpc_code(TALLY_OK), 0);
    for (int e = TALLY_EINVAL; e >= TALLY_EDATALOSS; e--) {
        int code = tally_err_grpc_code(e);
        cr_assert(code >= 1 && code <= 16, "err %d maps to %d", e, code);
        cr_assert_str_neq(tally_err_str(e), "unknown error", "err %d has no name", e);
    }
    cr_assert_eq(tally_err_grpc_code(TALLY_EINVAL), 3);
    cr_assert_eq(tally_err_grpc_code(TALLY_ECONFLICT), 10);
    cr_assert_eq(tally_err_grpc_code(TALLY_EPRECOND), 9);
    cr_assert_eq(tally_err_grpc_code(TALLY_EUNAVAIL), 14);
}

Test(err, every_grpc_code_round_trips)
{
    for (int code = 0; code <= 16; code++)
        cr_assert_eq(tally_err_grpc_code(tally_err_from_grpc_code(code)), code, "code %d", code);
}

/* grpc-go's codes.Code.String(), as go-grpc-prometheus labels grpc_server_handled_total. */
Test(err, metric_labels_are_grpc_go_code_names)
{
    static const char *const want[] = {
        "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
        "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
        "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
        "DataLoss", "Unauthenticated"
    };
    for (int code = 0; code <= 16; code++)
        cr_assert_str_eq(tally_grpc_code_label(code), want[code], "code %d", code);
    cr_assert_str_eq(tally_grpc_code_label(17), "Unknown");
}

Test(err, unknown_values_are_safe)
{
    cr_assert_eq(tally_err_grpc_code(-1000), 2);
    cr_assert_eq(tally_err_grpc_code(5), 2);
    cr_assert_str_eq(tally_err_str(-1000), "unknown error");
    cr_assert_str_eq(tally_grpc_code_name(3), "INVALID_ARGUMENT");
    cr_assert_str_eq(tally_grpc_code_name(17), "UNKNOWN");
    cr_assert_str_eq(tally_grpc_code_name(-1), "UNKNOWN");
}
