/* rpcstatus: google.rpc.Status as every client's standard decoder reads it. */
#include "err.h"
#include "rpcstatus.h"

#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static rpc_status_view round_trip(int code, const char *msg, const rpc_error *e)
{
    uint8_t buf[RPC_STATUS_MAX];
    rpc_status_view v;
    size_t n = rpc_status_pack(code, msg, e, buf, sizeof(buf));
    cr_assert_gt(n, 0, "%s: nothing packed", msg);
    cr_assert_eq(rpc_status_read(buf, n, &v), 0);
    return v;
}

Test(rpcstatus, field_paths_are_read_off_the_message)
{
    char f[64];
    cr_assert(rpc_field_path("title: longer than 200 bytes", f, sizeof(f)));
    cr_assert_str_eq(f, "title");
    cr_assert(rpc_field_path("range.from_ms: after range.to_ms", f, sizeof(f)));
    cr_assert_str_eq(f, "range.from_ms");
    cr_assert(rpc_field_path("complaints[3].title: empty", f, sizeof(f)));
    cr_assert_str_eq(f, "complaints[3].title");
    cr_assert_not(rpc_field_path("malformed request: not a valid X", f, sizeof(f)));
    cr_assert_str_eq(f, "");
    cr_assert_not(rpc_field_path("missing request message (X)", f, sizeof(f)));
    cr_assert_not(rpc_field_path(": nothing", f, sizeof(f)));
    cr_assert_not(rpc_field_path("3d: no", f, sizeof(f)));
    cr_assert_not(rpc_field_path("a_rather_long_field_name: x", f, 8), "a path that does not fit");
}

Test(rpcstatus, invalid_argument_has_a_bad_request_naming_the_field)
{
    rpc_status_view v =
        round_trip(TALLY_GRPC_INVALID_ARGUMENT, "title: longer than 200 bytes", NULL);
    cr_assert_eq(v.code, TALLY_GRPC_INVALID_ARGUMENT);
    cr_assert_str_eq(v.message, "title: longer than 200 bytes");
    cr_assert(v.has_bad_request);
    cr_assert_str_eq(v.field, "title");
    cr_assert_str_eq(v.description, "longer than 200 bytes");
    cr_assert_str_eq(v.info.reason, "INVALID_FIELD");
    cr_assert_str_eq(v.domain, "tally.v1");
    cr_assert_not(v.has_retry);

    v = round_trip(TALLY_GRPC_INVALID_ARGUMENT, "malformed request: not a valid Foo message", NULL);
    cr_assert(v.has_bad_request);
    cr_assert_str_eq(v.field, "");
    cr_assert_str_eq(v.description, "malformed request: not a valid Foo message");
    cr_assert_str_eq(v.info.reason, "MALFORMED_REQUEST");
}

Test(rpcstatus, the_handler_sets_reason_metadata_and_retry_delay)
{
    rpc_error e;
    rpc_error_clear(&e);
    rpc_error_reason(&e, "version-conflict");
    rpc_error_meta(&e, "current_version", "7");
    rpc_error_meta(&e, "expected_version", "5");
    rpc_error_meta(&e, "current_version", "8"); /* replaces */
    rpc_status_view v = round_trip(TALLY_GRPC_ABORTED, "expected_version: 5, but ...", &e);
    cr_assert_str_eq(v.info.reason, "VERSION_CONFLICT", "upper-cased, other characters become _");
    cr_assert_eq(v.info.nmeta, 2);
    cr_assert_str_eq(rpc_status_meta(&v, "current_version"), "8");
    cr_assert_str_eq(rpc_status_meta(&v, "expected_version"), "5");
    cr_assert_null(rpc_status_meta(&v, "nothing"));
    cr_assert_not(v.has_bad_request, "only INVALID_ARGUMENT has a BadRequest");
    cr_assert_not(v.has_retry);

    for (int i = 0; i < 10; i++) { /* past RPC_META_MAX: dropped, never overflowing */
        char k[8];
        snprintf(k, sizeof(k), "k%d", i);
        rpc_error_meta(&e, k, "v");
    }
    cr_assert_eq(e.nmeta, RPC_META_MAX);
}

Test(rpcstatus, unavailable_and_resource_exhausted_say_when_to_retry)
{
    rpc_status_view v = round_trip(TALLY_GRPC_UNAVAILABLE, "the read model is unavailable", NULL);
    cr_assert(v.has_retry);
    cr_assert_eq(v.retry_ms, RPC_RETRY_MS);
    cr_assert_str_eq(v.info.reason, "UNAVAILABLE");
    rpc_error e;
    rpc_error_clear(&e);
    e.retry_ms = 2500;
    v = round_trip(TALLY_GRPC_RESOURCE_EXHAUSTED, "too many calls", &e);
    cr_assert(v.has_retry);
    cr_assert_eq(v.retry_ms, 2500);
    v = round_trip(TALLY_GRPC_NOT_FOUND, "complaint_id: no complaint 5", NULL);
    cr_assert_not(v.has_retry);
    cr_assert_not(v.has_bad_request);
    cr_assert_str_eq(v.info.reason, "NOT_FOUND");
}

/* The bytes are google.rpc.Status with Any details named type.googleapis.com/<full name>. */
Test(rpcstatus, the_wire_form_is_the_published_one)
{
    uint8_t buf[RPC_STATUS_MAX];
    size_t n = rpc_status_pack(TALLY_GRPC_UNAVAILABLE, "down", NULL, buf, sizeof(buf));
    Google__Rpc__Status *st = google__rpc__status__unpack(NULL, n, buf);
    cr_assert_not_null(st);
    cr_assert_eq(st->code, 14);
    cr_assert_eq(st->n_details, 2);
    cr_assert_str_eq(st->details[0]->type_url, "type.googleapis.com/google.rpc.ErrorInfo");
    cr_assert_str_eq(st->details[1]->type_url, "type.googleapis.com/google.rpc.RetryInfo");
    /* Status: code = field 1 varint (0x08), message = field 2 (0x12) */
    cr_assert_eq(buf[0], 0x08);
    cr_assert_eq(buf[1], 14);
    cr_assert_eq(buf[2], 0x12);
    google__rpc__status__free_unpacked(st, NULL);
    cr_assert_eq(rpc_status_pack(TALLY_GRPC_OK, "", NULL, buf, sizeof(buf)), 0, "no Status on OK");
    cr_assert_eq(rpc_status_pack(TALLY_GRPC_UNAVAILABLE, "down", NULL, buf, 8), 0,
                 "0 when it does not fit");
    cr_assert_neq(rpc_status_read((const uint8_t *)"\xff\xff", 2, &(rpc_status_view){ 0 }), 0);
}

/* A message cut inside a character, or quoting a client's bytes, is made valid UTF-8: a proto3
   string that is not would make grpc-go and Python refuse the whole Status. */
Test(rpcstatus, messages_are_made_valid_utf8)
{
    char cut[] = "name: caf\xc3"; /* "café" cut after the first byte of "é" */
    rpc_utf8_clean(cut);
    cr_assert_str_eq(cut, "name: caf?");
    char mixed[] = "t\xffx \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \x80";
    rpc_utf8_clean(mixed);
    cr_assert_str_eq(mixed, "t?x \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 ?", "%s", mixed);
}
