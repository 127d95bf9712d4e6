/*
 * proj_decode: a stream entry's envelope bytes to the 19 fields of tally_apply (tally.lua's
 * header gives their order), refusing every event that could never be applied: undecodable
 * bytes, unknown types, a body that does not match the type, tenant ids that are not ids (they
 * become Redis hash tags), local days that are not dates, complaint events without complaint
 * or version, priorities and statuses out of range. Envelopes are built as command-svc builds
 * them (event_pack of a packed body, through tests/support/ev_gen.c) or, for the malformed
 * ones, with protobuf-c directly.
 */
#define _GNU_SOURCE /* memmem */
#include "decode.h"
#include "embedded.h"
#include "events.h"
#include "hist.h"
#include "tally/v1/events.pb-c.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    SEQ,
    ID,
    VERSION,
    TYPE,
    OCCURRED,
    DAY,
    RECORDED,
    CAT,
    PRIO,
    AGENT,
    PREV,
    FROM,
    TO,
    CREATED,
    SECS,
    BUCKET,
    NAME,
    REF,
    TZ
};

/* tally.lua as the projector loads it (projector/CMakeLists.txt embeds it). */
extern const embedded_file projector_lua[];

static proj_event ev;
static char why[256];

static void fini(void)
{
    proj_event_release(&ev);
}

TestSuite(decode, .fini = fini, .timeout = 10);

/* A valid event of each type, as command-svc writes it. */
static ev_event base(int type)
{
    ev_event e = {
        .seq = 4711, .type = type, .occurred_ms = 1709629200123, .recorded_ms = 1709629200456
    };
    snprintf(e.tenant_id, sizeof(e.tenant_id), "acme");
    snprintf(e.day, sizeof(e.day), "2024-03-05");
    if (type >= 10) {
        snprintf(e.ref_id, sizeof(e.ref_id), "%s",
                 type == 10   ? ""
                 : type == 11 ? "billing"
                              : "ana");
        snprintf(e.name, sizeof(e.name), "Some name");
        if (type == 10)
            snprintf(e.tz, sizeof(e.tz), "Asia/Tokyo");
        return e;
    }
    e.complaint = 42;
    e.version = type == 1 ? 1 : 3;
    e.priority = 3;
    e.status = type == 1 ? 1 : 2;
    e.created_ms = 1709000000999;
    snprintf(e.category, sizeof(e.category), "billing");
    snprintf(e.created_day, sizeof(e.created_day), "2024-02-27");
    if (type == 2) {
        snprintf(e.prev_agent, sizeof(e.prev_agent), "ben");
        snprintf(e.agent, sizeof(e.agent), "ana");
    } else if (type == 3) {
        snprintf(e.agent, sizeof(e.agent), "ana");
        e.from = 2;
        e.to = 3;
        e.resolution_s = (e.occurred_ms - e.created_ms) / 1000;
    }
    return e;
}

/* Packs e and decodes it into ev. */
static int decode_event(ev_event *e)
{
    cr_assert_eq(ev_pack(e), 0, "cannot pack the test event");
    proj_event_release(&ev);
    int rc = proj_decode(e->bytes, e->len, &ev, why, sizeof(why));
    free(e->bytes);
    e->bytes = NULL;
    return rc;
}

static int decode_bytes(const void *data, size_t len)
{
    proj_event_release(&ev);
    why[0] = '\0';
    return proj_decode(data, len, &ev, why, sizeof(why));
}

/* Packs an envelope built with protobuf-c and decodes it. */
static int decode_envelope(const Tally__V1__EventEnvelope *env)
{
    uint8_t buf[4096];
    size_t n = tally__v1__event_envelope__get_packed_size(env);
    cr_assert_lt(n, sizeof(buf));
    tally__v1__event_envelope__pack(env, buf);
    return decode_bytes(buf, n);
}

static void expect_field(int f, const char *want)
{
    cr_expect_str_eq(ev.argv[f], want, "field %d is \"%s\", expected \"%s\"", f + 1, ev.argv[f],
                     want);
    cr_expect_eq(ev.argvlen[f], strlen(ev.argv[f]), "field %d: length does not match", f + 1);
}

/* A field the type does not use: "" or 0 (tally.lua's header). */
static void expect_unused(int f)
{
    cr_expect(strcmp(ev.argv[f], "") == 0 || strcmp(ev.argv[f], "0") == 0,
              "field %d is \"%s\", expected \"\" or 0", f + 1, ev.argv[f]);
}

static void refused(int rc, const char *what)
{
    cr_expect_neq(rc, 0, "%s was accepted", what);
    if (rc != 0)
        cr_expect_neq(why[0], '\0', "%s: refused without a reason", what);
}

Test(decode, complaint_created_fills_the_fields_in_order)
{
    ev_event e = base(1);
    cr_assert_eq(decode_event(&e), 0, "refused: %s", why);
    const char *want[] = { "4711",          "42",      "1", "1", "1709629200123", "2024-03-05",
                           "1709629200456", "billing", "3", "" };
    for (int f = SEQ; f <= AGENT; f++)
        expect_field(f, want[f]);
    expect_field(TO, "1");
    expect_field(CREATED, "1709629200123"); /* a creation's time is its occurred_at */
    for (int f = PREV; f <= TZ; f++)
        if (f != TO && f != CREATED)
            expect_unused(f);
    cr_expect(proj_is_complaint_event(&ev));
}

Test(decode, complaint_assigned_fills_the_fields_in_order)
{
    ev_event e = base(2);
    cr_assert_eq(decode_event(&e), 0, "refused: %s", why);
    expect_field(ID, "42");
    expect_field(VERSION, "3");
    expect_field(TYPE, "2");
    expect_field(CAT, "billing");
    expect_field(PRIO, "3");
    expect_field(AGENT, "ana"); /* the new assignee */
    expect_field(PREV, "ben");
    expect_field(TO, "2"); /* the current status */
    expect_field(CREATED, "1709000000999");
    expect_unused(FROM);
    expect_unused(NAME);
    cr_expect(proj_is_complaint_event(&ev));
}

Test(decode, status_changed_fills_the_fields_in_order)
{
    ev_event e = base(3);
    char secs[24], bucket[16];
    cr_assert_eq(decode_event(&e), 0, "refused: %s", why);
    snprintf(secs, sizeof(secs), "%lld", (long long)e.resolution_s);
    snprintf(bucket, sizeof(bucket), "%d", hist_bucket(e.resolution_s));
    expect_field(SEQ, "4711");
    expect_field(TYPE, "3");
    expect_field(OCCURRED, "1709629200123");
    expect_field(DAY, "2024-03-05");
    expect_field(RECORDED, "1709629200456");
    expect_field(AGENT, "ana");
    expect_field(FROM, "2");
    expect_field(TO, "3");
    expect_field(CREATED, "1709000000999");
    expect_field(SECS, secs);
    expect_field(BUCKET, bucket);
}

Test(decode, a_resolution_in_the_first_second_is_bucket_0)
{
    ev_event e = base(3);
    e.resolution_s = 0;
    cr_assert_eq(decode_event(&e), 0, "refused: %s", why);
    expect_field(SECS, "0");
    expect_field(BUCKET, "0");
}

Test(decode, reference_events_fill_ref_id_name_and_time_zone)
{
    for (int type = 10; type <= 12; type++) {
        ev_event e = base(type);
        cr_assert_eq(decode_event(&e), 0, "type %d refused: %s", type, why);
        expect_field(TYPE, type == 10 ? "10" : type == 11 ? "11" : "12");
        expect_field(SEQ, "4711");
        expect_field(NAME, "Some name");
        expect_field(REF, type == 10 ? "" : type == 11 ? "billing" : "ana");
        if (type == 10)
            expect_field(TZ, "Asia/Tokyo");
        cr_expect(!proj_is_complaint_event(&ev), "type %d is no complaint event", type);
    }
}

Test(decode, recorded_at_defaults_to_occurred_at)
{
    ev_event e = base(3);
    e.recorded_ms = 0;
    cr_assert_eq(decode_event(&e), 0, "refused: %s", why);
    expect_field(RECORDED, "1709629200123");
}

Test(decode, a_tenant_id_of_64_bytes_and_every_allowed_character_is_accepted)
{
    ev_event e = base(1);
    snprintf(e.tenant_id, sizeof(e.tenant_id), "%s",
             "Az09_.-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    cr_assert_eq(strlen(e.tenant_id), 64);
    cr_expect_eq(decode_event(&e), 0, "refused: %s", why);
}

/* The envelope is unpacked into the event's arena; one larger than it spills to malloc. */
Test(decode, an_envelope_larger_than_the_arena_decodes_and_is_released)
{
    char name[3 * PROJ_ARENA];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    Tally__V1__TenantPut put = TALLY__V1__TENANT_PUT__INIT;
    put.name = name;
    put.time_zone = "Asia/Tokyo";
    Tally__V1__EventEnvelope env = TALLY__V1__EVENT_ENVELOPE__INIT;
    env.seq = 9;
    env.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_TENANT_PUT;
    env.tenant_id = "acme";
    env.local_day = "2024-03-05";
    env.body_case = TALLY__V1__EVENT_ENVELOPE__BODY_TENANT_PUT;
    env.tenant_put = &put;
    size_t n = tally__v1__event_envelope__get_packed_size(&env);
    uint8_t *buf = malloc(n);
    cr_assert(buf);
    tally__v1__event_envelope__pack(&env, buf);
    cr_expect_eq(decode_bytes(buf, n), 0, "refused: %s", why);
    free(buf); /* the event keeps nothing of the bytes */
    cr_expect_gt(ev.spilled, 0, "a name of %zu bytes fit the arena of %d", strlen(name),
                 PROJ_ARENA);
    expect_field(NAME, name);
    expect_field(TZ, "Asia/Tokyo");
    expect_field(SEQ, "9");
    /* released by fini: AddressSanitizer reports what it would leak */
}

Test(decode, unknown_fields_are_ignored)
{
    ev_event e = base(3);
    uint8_t buf[4096];
    cr_assert_eq(ev_pack(&e), 0);
    memcpy(buf, e.bytes, e.len);
    /* field 99 (varint 5) and field 100 (bytes "xy"): added by a newer writer */
    static const uint8_t extra[] = { 0x98, 0x06, 0x05, 0xa2, 0x06, 0x02, 'x', 'y' };
    memcpy(buf + e.len, extra, sizeof(extra));
    cr_expect_eq(decode_bytes(buf, e.len + sizeof(extra)), 0, "refused: %s", why);
    free(e.bytes);
}

Test(decode, refuses_undecodable_bytes)
{
    static const uint8_t garbage[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
    static const uint8_t truncated[] = { 0x12, 0x04, 'a', 'c' };
    refused(decode_bytes(garbage, sizeof(garbage)), "a length beyond the end");
    refused(decode_bytes(truncated, sizeof(truncated)), "a truncated string");
    refused(decode_bytes("\xff\xff\xff", 3), "an invalid tag");
    refused(decode_bytes("", 0), "an empty entry (no type, no body)");
    ev_event e = base(3);
    cr_assert_eq(ev_pack(&e), 0);
    refused(decode_bytes(e.bytes, e.len - 3), "an envelope cut short");
    free(e.bytes);
}

Test(decode, refuses_unknown_type_missing_body_and_body_type_mismatch)
{
    Tally__V1__EventEnvelope env = TALLY__V1__EVENT_ENVELOPE__INIT;
    Tally__V1__ComplaintCreated body = TALLY__V1__COMPLAINT_CREATED__INIT;
    body.category_id = "billing";
    body.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    body.status = TALLY__V1__STATUS__STATUS_OPEN;
    env.seq = 7;
    env.tenant_id = "acme";
    env.complaint_id = 42;
    env.version = 1;
    env.occurred_at_ms = 1709629200123;
    env.local_day = "2024-03-05";
    env.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED;
    env.body_case = TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_CREATED;
    env.complaint_created = &body;
    cr_assert_eq(decode_envelope(&env), 0, "the valid one refused: %s", why);
    env.type = (Tally__V1__EventType)99;
    refused(decode_envelope(&env), "type 99");
    env.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_UNSPECIFIED;
    refused(decode_envelope(&env), "type 0 with a ComplaintCreated body");
    env.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED;
    refused(decode_envelope(&env), "type COMPLAINT_ASSIGNED with a ComplaintCreated body");
    env.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_AGENT_PUT;
    refused(decode_envelope(&env), "type AGENT_PUT with a ComplaintCreated body");
    env.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED;
    env.body_case = TALLY__V1__EVENT_ENVELOPE__BODY__NOT_SET;
    env.complaint_created = NULL;
    refused(decode_envelope(&env), "a COMPLAINT_CREATED without a body");
}

Test(decode, refuses_bad_tenant_ids)
{
    static const char *const bad[] = {
        "",
        "a}b",
        "a{b",
        "{t:acme}",
        "a:b",
        "a b",
        "acme\n",
        "a/b",
        "a*b",
        "caf\xc3\xa9",
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", /* 65 bytes */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        for (int type = 1; type <= 12; type += type == 3 ? 7 : 1) {
            ev_event e = base(type);
            snprintf(e.tenant_id, sizeof(e.tenant_id), "%s", bad[i]);
            char what[128];
            snprintf(what, sizeof(what), "type %d with tenant \"%s\"", type, bad[i]);
            refused(decode_event(&e), what);
        }
}

/* The id on the wire is "acme\0}x": not an id, though C sees "acme" (an event smuggled in). */
Test(decode, refuses_a_tenant_id_with_an_embedded_nul)
{
    ev_event e = base(3);
    snprintf(e.tenant_id, sizeof(e.tenant_id), "acmeZ}x");
    cr_assert_eq(ev_pack(&e), 0);
    uint8_t *at = memmem(e.bytes, e.len, "acmeZ}x", 7);
    cr_assert(at);
    at[4] = '\0';
    refused(decode_bytes(e.bytes, e.len), "tenant_id \"acme\\0}x\" (7 bytes on the wire)");
    free(e.bytes);
}

Test(decode, refuses_local_days_that_are_not_yyyy_mm_dd)
{
    static const char *const bad[] = { "",           "2024-3-05",   "2024-03-5",  "2024/03/05",
                                       "2024-13-01", "2024-00-10",  "2024-03-00", "2024-03-32",
                                       "24-03-05",   "2024-03-05x", "20240305",   "2024-03-05 " };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        for (int type = 1; type <= 3; type++) {
            ev_event e = base(type);
            snprintf(e.day, sizeof(e.day), "%s", bad[i]);
            char what[96];
            snprintf(what, sizeof(what), "type %d with local_day \"%s\"", type, bad[i]);
            refused(decode_event(&e), what);
        }
}

/* Signs and blanks that sscanf's %d lets through: "2024-+3-05" would address month "2024-+3". */
Test(decode, refuses_local_days_with_signs_or_blanks)
{
    static const char *const bad[] = { "2024-+3-05", "2024-03-+5", "+024-03-05", " 024-03-05",
                                       "2024- 3-05", "2024-03- 5", "-024-03-05" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ev_event e = base(3);
        memcpy(e.day, bad[i], 11);
        char what[96];
        snprintf(what, sizeof(what), "local_day \"%s\"", bad[i]);
        refused(decode_event(&e), what);
    }
}

/* PostgreSQL never computes these; counted, they would land on days no query reads. */
Test(decode, refuses_local_days_that_do_not_exist)
{
    static const char *const bad[] = { "2024-02-30", "2023-02-29", "2024-04-31", "2024-06-31" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ev_event e = base(1);
        memcpy(e.day, bad[i], 11);
        char what[96];
        snprintf(what, sizeof(what), "local_day \"%s\"", bad[i]);
        refused(decode_event(&e), what);
    }
    ev_event leap = base(1);
    memcpy(leap.day, "2024-02-29", 11);
    cr_expect_eq(decode_event(&leap), 0, "2024-02-29 (a leap day) refused: %s", why);
}

Test(decode, refuses_complaint_events_without_complaint_id_or_version)
{
    for (int type = 1; type <= 3; type++) {
        ev_event e = base(type);
        e.complaint = 0;
        refused(decode_event(&e), "complaint_id 0");
        e = base(type);
        e.complaint = -5;
        refused(decode_event(&e), "complaint_id -5");
        e = base(type);
        e.version = 0;
        refused(decode_event(&e), "version 0");
        e = base(type);
        e.version = -1;
        refused(decode_event(&e), "version -1");
    }
}

Test(decode, refuses_bad_priorities)
{
    static const int bad[] = { 0, 5, 9, -1, 12 };
    for (int type = 1; type <= 3; type++)
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            ev_event e = base(type);
            e.priority = bad[i];
            char what[64];
            snprintf(what, sizeof(what), "type %d with priority %d", type, bad[i]);
            refused(decode_event(&e), what);
        }
}

Test(decode, refuses_status_changes_with_statuses_out_of_range)
{
    static const int bad[] = { 0, 5, 9, -1 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ev_event e = base(3);
        e.to = bad[i];
        refused(decode_event(&e), "to_status out of range");
        e = base(3);
        e.from = bad[i];
        refused(decode_event(&e), "from_status out of range");
    }
}

/* A status the read model does not know would be counted under "st" field "7" or skipped. */
Test(decode, refuses_created_and_assigned_events_with_statuses_out_of_range)
{
    static const int bad[] = { 5, 7, -1 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char what[64];
        ev_event e = base(1);
        e.status = bad[i];
        snprintf(what, sizeof(what), "ComplaintCreated with status %d", bad[i]);
        refused(decode_event(&e), what);
        e = base(2);
        e.status = bad[i];
        snprintf(what, sizeof(what), "ComplaintAssigned with status %d", bad[i]);
        refused(decode_event(&e), what);
    }
    ev_event e = base(2);
    e.status = 0;
    refused(decode_event(&e), "ComplaintAssigned with status UNSPECIFIED");
}

Test(decode, refuses_bad_category_and_agent_ids)
{
    static const char *const bad[] = { "a}b", "a b", "a:b", "{x" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (int type = 1; type <= 3; type++) {
            ev_event e = base(type);
            snprintf(e.category, sizeof(e.category), "%s", bad[i]);
            refused(decode_event(&e), "a bad category_id");
        }
        for (int type = 2; type <= 3; type++) {
            ev_event e = base(type);
            snprintf(e.agent, sizeof(e.agent), "%s", bad[i]);
            refused(decode_event(&e), "a bad agent_id");
        }
        ev_event e = base(2);
        snprintf(e.prev_agent, sizeof(e.prev_agent), "%s", bad[i]);
        refused(decode_event(&e), "a bad previous_agent_id");
        for (int type = 11; type <= 12; type++) {
            e = base(type);
            snprintf(e.ref_id, sizeof(e.ref_id), "%s", bad[i]);
            refused(decode_event(&e), "a bad reference id");
        }
    }
    ev_event e = base(1);
    e.category[0] = '\0';
    refused(decode_event(&e), "an empty category_id");
}

/*
 * The Lua function cannot include stream.h, so its own constant is held to the C one here:
 * were they to drift, every FCALL would be refused ("expected 19 fields per event").
 */
Test(decode, the_apply_function_takes_as_many_fields_as_decode_fills)
{
    const char *src = projector_lua[0].data;
    const char *at = strstr(src, "\nlocal NFIELDS = ");
    cr_assert_not_null(at, "tally.lua no longer declares local NFIELDS");
    cr_expect_eq(strtol(at + strlen("\nlocal NFIELDS = "), NULL, 10), STREAM_APPLY_NFIELDS,
                 "tally.lua's NFIELDS differs from STREAM_APPLY_NFIELDS (%d)",
                 STREAM_APPLY_NFIELDS);
    cr_expect_eq(TZ + 1, STREAM_APPLY_NFIELDS, "this test's field list is out of date");
    cr_expect_str_eq(projector_lua[0].name, "tally.lua");
}

/* The numbers of the fields are written by proj_i64, not snprintf: the same text. */
Test(decode, numbers_are_written_as_snprintf_writes_them)
{
    static const int64_t v[] = { 0, 7, -1, 10, 1764500000000, INT64_MAX, INT64_MIN };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char want[24], got[24];
        snprintf(want, sizeof(want), "%" PRId64, v[i]);
        cr_expect_eq(proj_i64(got, v[i]), strlen(want));
        cr_expect_str_eq(got, want);
    }
}
