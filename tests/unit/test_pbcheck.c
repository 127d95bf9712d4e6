/* pbcheck and utf8: strings in request bytes must be valid UTF-8 without NUL bytes. */
#include "err.h"
#include "pbcheck.h"
#include "tally/v1/commands.pb-c.h"
#include "utf8.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

Test(utf8, accepts_valid_and_refuses_invalid_sequences)
{
    size_t bad = 99;
    cr_assert(utf8_valid("", 0, NULL));
    const char *ok = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";
    cr_assert(utf8_valid(ok, strlen(ok), NULL));
    const struct {
        const char *s;
        size_t len, at;
    } invalid[] = {
        { "ab\xff", 3, 2 },           /* never valid */
        { "\xc0\xaf", 2, 0 },         /* overlong */
        { "x\xed\xa0\x80", 4, 1 },    /* surrogate */
        { "\xf4\x90\x80\x80", 4, 0 }, /* above U+10FFFF */
        { "ok\xe2\x82", 4, 2 },       /* truncated at the end */
        { "\x80", 1, 0 },             /* stray continuation */
    };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        cr_assert(!utf8_valid(invalid[i].s, invalid[i].len, &bad), "case %zu accepted", i);
        cr_assert_eq(bad, invalid[i].at, "case %zu: error at %zu", i, bad);
    }
}

/* Packs msg into a malloc'd buffer. */
static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(*len + 1);
    protobuf_c_message_pack(msg, buf);
    return buf;
}

/* Replaces the first occurrence of marker in buf with bytes of the same length. */
static void patch(uint8_t *buf, size_t len, const char *marker, const char *bytes)
{
    size_t m = strlen(marker);
    for (size_t i = 0; i + m <= len; i++)
        if (memcmp(buf + i, marker, m) == 0) {
            memcpy(buf + i, bytes, m);
            return;
        }
    cr_assert_fail("marker %s not found", marker);
}

/* An import request of 3 complaints, the last with 2 history steps. */
static uint8_t *import_request(size_t *len)
{
    Tally__V1__ImportComplaintsRequest req = TALLY__V1__IMPORT_COMPLAINTS_REQUEST__INIT;
    Tally__V1__ImportedComplaint c[3], *cp[3];
    Tally__V1__ImportedStep s[2], *sp[2];
    Tally__V1__ImportedStatusChange sc[2];
    for (int i = 0; i < 3; i++) {
        tally__v1__imported_complaint__init(&c[i]);
        c[i].title = "title";
        c[i].description = "description";
        cp[i] = &c[i];
    }
    for (int j = 0; j < 2; j++) {
        tally__v1__imported_step__init(&s[j]);
        tally__v1__imported_status_change__init(&sc[j]);
        sc[j].actor = "ann";
        sc[j].note = j ? "NOTE2" : "note1";
        s[j].change_case = TALLY__V1__IMPORTED_STEP__CHANGE_STATUS_CHANGE;
        s[j].status_change = &sc[j];
        sp[j] = &s[j];
    }
    c[2].n_history = 2;
    c[2].history = sp;
    req.tenant_id = "acme";
    req.n_complaints = 3;
    req.complaints = cp;
    return pack(&req.base, len);
}

Test(pbcheck, valid_requests_pass)
{
    char err[256] = "";
    size_t len;
    uint8_t *buf = import_request(&len);
    cr_assert_eq(pbcheck_strings(&tally__v1__import_complaints_request__descriptor, buf, len, err,
                                 sizeof(err)),
                 0, "%s", err);
    free(buf);
}

Test(pbcheck, names_the_path_of_a_nested_repeated_field)
{
    char err[256] = "";
    size_t len;
    uint8_t *buf = import_request(&len);
    patch(buf, len, "NOTE2", "NO\xffT2");
    cr_assert_eq(pbcheck_strings(&tally__v1__import_complaints_request__descriptor, buf, len, err,
                                 sizeof(err)),
                 TALLY_EINVAL);
    cr_assert_str_eq(err,
                     "complaints[2].history[1].status_change.note: not valid UTF-8 (at byte 2)");
    free(buf);
}

Test(pbcheck, refuses_a_nul_byte_inside_a_string)
{
    Tally__V1__CreateComplaintRequest req = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    char err[256] = "";
    size_t len;
    req.tenant_id = "acmeXevil";
    req.title = "Visible";
    uint8_t *buf = pack(&req.base, &len);
    patch(buf, len, "acmeXevil", "acme\0evil");
    cr_assert_eq(pbcheck_strings(&tally__v1__create_complaint_request__descriptor, buf, len, err,
                                 sizeof(err)),
                 TALLY_EINVAL);
    cr_assert_str_eq(err, "tenant_id: contains a NUL byte");
    free(buf);
}

Test(pbcheck, truncated_or_garbage_bytes_do_not_crash)
{
    char err[256];
    size_t len;
    uint8_t *buf = import_request(&len);
    for (size_t cut = 0; cut <= len; cut++) /* every prefix; ASan watches the reads */
        pbcheck_strings(&tally__v1__import_complaints_request__descriptor, buf, cut, err,
                        sizeof(err));
    const uint8_t garbage[] = { 0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x80 };
    cr_assert_eq(pbcheck_strings(&tally__v1__import_complaints_request__descriptor, garbage,
                                 sizeof(garbage), err, sizeof(err)),
                 0, "bytes it cannot follow are left to protobuf-c");
    free(buf);
}
