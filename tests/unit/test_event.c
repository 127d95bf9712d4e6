/*
 * event: EventEnvelope bytes from an events row plus its body bytes. Every packed envelope is
 * decoded again with protobuf-c, and compared byte for byte with what packing the whole
 * envelope message gives. Also the hash (hash.h) and the stream names and partition of a tenant
 * (stream.h) that the relay publishes them under.
 */
#include "err.h"
#include "event.h"
#include "hash.h"
#include "stream.h"
#include "tally/v1/events.pb-c.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP (EVENT_BODY_MAX + 1024)

/* Packs msg into a malloc'd buffer; *len is its size. */
static uint8_t *pack_body(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *b = malloc(*len ? *len : 1);
    cr_assert(b);
    cr_assert_eq(protobuf_c_message_pack(msg, b), *len);
    return b;
}

static event_row complaint_row(int type, const uint8_t *body, size_t len)
{
    event_row r = { .seq = 123456789012LL,
                    .tenant_id = "tenant-\xc3\xa9-1",
                    .complaint_id = 987654321,
                    .version = 7,
                    .type = type,
                    .occurred_at_ms = 1718000000123LL,
                    .local_day = "2024-06-10",
                    .recorded_at_ms = 1718000000456LL,
                    .imported = true,
                    .body = body,
                    .body_len = len };
    return r;
}

/*
 * Packs row with event_pack, decodes the result, asserts the header fields and the body case,
 * and that the bytes equal protobuf-c packing the decoded envelope (the whole message). The
 * caller frees the envelope with tally__v1__event_envelope__free_unpacked.
 */
static Tally__V1__EventEnvelope *pack_and_decode(const event_row *row, int body_case)
{
    uint8_t *buf = malloc(CAP);
    cr_assert(buf);
    long n = event_pack(row, buf, CAP);
    cr_assert_gt(n, 0, "event_pack: %ld", n);
    Tally__V1__EventEnvelope *env = tally__v1__event_envelope__unpack(NULL, (size_t)n, buf);
    cr_assert(env, "the envelope does not decode");
    cr_assert_eq(env->seq, row->seq);
    cr_assert_str_eq(env->tenant_id, row->tenant_id);
    cr_assert_eq(env->complaint_id, row->complaint_id);
    cr_assert_eq(env->version, row->version);
    cr_assert_eq((int)env->type, row->type);
    cr_assert_eq(env->occurred_at_ms, row->occurred_at_ms);
    cr_assert_str_eq(env->local_day, row->local_day);
    cr_assert_eq(env->recorded_at_ms, row->recorded_at_ms);
    cr_assert_eq(env->imported, row->imported);
    cr_assert_eq((int)env->body_case, body_case);
    cr_assert_eq(event_body_field(row->type), body_case);

    /* Packing the decoded message as a whole gives the very same bytes. */
    size_t whole = tally__v1__event_envelope__get_packed_size(env);
    cr_assert_eq(whole, (size_t)n, "whole envelope %zu bytes, event_pack %ld", whole, n);
    uint8_t *again = malloc(whole ? whole : 1);
    cr_assert(again);
    tally__v1__event_envelope__pack(env, again);
    cr_assert(memcmp(again, buf, whole) == 0, "the bytes differ from packing the envelope");
    free(again);
    free(buf);
    return env;
}

Test(event_pack, complaint_created_round_trips, .timeout = 10)
{
    Tally__V1__ComplaintCreated b = TALLY__V1__COMPLAINT_CREATED__INIT;
    b.category_id = "c1";
    b.priority = TALLY__V1__PRIORITY__PRIORITY_URGENT;
    b.customer_id = "cust-9";
    b.title = "It broke \xe2\x82\xac '; DROP TABLE x; --";
    b.status = TALLY__V1__STATUS__STATUS_OPEN;
    size_t len;
    uint8_t *body = pack_body(&b.base, &len);
    event_row row = complaint_row(TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED, body, len);
    Tally__V1__EventEnvelope *env =
        pack_and_decode(&row, TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_CREATED);
    Tally__V1__ComplaintCreated *got = env->complaint_created;
    cr_assert(got);
    cr_assert_str_eq(got->category_id, "c1");
    cr_assert_eq(got->priority, TALLY__V1__PRIORITY__PRIORITY_URGENT);
    cr_assert_str_eq(got->customer_id, "cust-9");
    cr_assert_str_eq(got->title, b.title);
    cr_assert_eq(got->status, TALLY__V1__STATUS__STATUS_OPEN);
    cr_assert_str_eq(got->agent_id, "");
    tally__v1__event_envelope__free_unpacked(env, NULL);
    free(body);
}

Test(event_pack, complaint_assigned_round_trips, .timeout = 10)
{
    Tally__V1__ComplaintAssigned b = TALLY__V1__COMPLAINT_ASSIGNED__INIT;
    b.previous_agent_id = "a1";
    b.agent_id = "a2";
    b.category_id = "c2";
    b.priority = TALLY__V1__PRIORITY__PRIORITY_LOW;
    b.status = TALLY__V1__STATUS__STATUS_IN_PROGRESS;
    b.created_at_ms = 1700000000000LL;
    size_t len;
    uint8_t *body = pack_body(&b.base, &len);
    event_row row = complaint_row(TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED, body, len);
    Tally__V1__EventEnvelope *env =
        pack_and_decode(&row, TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_ASSIGNED);
    Tally__V1__ComplaintAssigned *got = env->complaint_assigned;
    cr_assert(got);
    cr_assert_str_eq(got->previous_agent_id, "a1");
    cr_assert_str_eq(got->agent_id, "a2");
    cr_assert_str_eq(got->category_id, "c2");
    cr_assert_eq(got->priority, TALLY__V1__PRIORITY__PRIORITY_LOW);
    cr_assert_eq(got->status, TALLY__V1__STATUS__STATUS_IN_PROGRESS);
    cr_assert_eq(got->created_at_ms, 1700000000000LL);
    tally__v1__event_envelope__free_unpacked(env, NULL);
    free(body);
}

Test(event_pack, status_changed_round_trips, .timeout = 10)
{
    Tally__V1__StatusChanged b = TALLY__V1__STATUS_CHANGED__INIT;
    b.from_status = TALLY__V1__STATUS__STATUS_IN_PROGRESS;
    b.to_status = TALLY__V1__STATUS__STATUS_RESOLVED;
    b.category_id = "c1";
    b.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    b.agent_id = "a1";
    b.actor = "auto-close";
    b.created_at_ms = 1700000000000LL;
    b.created_local_day = "2023-11-14";
    b.resolution_seconds = 18000000;
    size_t len;
    uint8_t *body = pack_body(&b.base, &len);
    event_row row = complaint_row(TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED, body, len);
    Tally__V1__EventEnvelope *env =
        pack_and_decode(&row, TALLY__V1__EVENT_ENVELOPE__BODY_STATUS_CHANGED);
    Tally__V1__StatusChanged *got = env->status_changed;
    cr_assert(got);
    cr_assert_eq(got->from_status, TALLY__V1__STATUS__STATUS_IN_PROGRESS);
    cr_assert_eq(got->to_status, TALLY__V1__STATUS__STATUS_RESOLVED);
    cr_assert_str_eq(got->category_id, "c1");
    cr_assert_eq(got->priority, TALLY__V1__PRIORITY__PRIORITY_HIGH);
    cr_assert_str_eq(got->agent_id, "a1");
    cr_assert_str_eq(got->actor, "auto-close");
    cr_assert_eq(got->created_at_ms, 1700000000000LL);
    cr_assert_str_eq(got->created_local_day, "2023-11-14");
    cr_assert_eq(got->resolution_seconds, 18000000);
    tally__v1__event_envelope__free_unpacked(env, NULL);
    free(body);
}

/* Reference events carry complaint_id 0 and version 0: those fields are simply absent. */
Test(event_pack, reference_events_round_trip, .timeout = 10)
{
    Tally__V1__TenantPut t = TALLY__V1__TENANT_PUT__INIT;
    Tally__V1__CategoryPut c = TALLY__V1__CATEGORY_PUT__INIT;
    Tally__V1__AgentPut a = TALLY__V1__AGENT_PUT__INIT;
    t.name = "ACME \"Ltd\"";
    t.time_zone = "Pacific/Auckland";
    c.category_id = "billing";
    c.name = "Billing";
    a.agent_id = "ann";
    a.name = "Ann O'Neil";
    struct {
        const ProtobufCMessage *msg;
        int type, body_case;
    } cases[] = {
        { &t.base, TALLY__V1__EVENT_TYPE__EVENT_TYPE_TENANT_PUT,
          TALLY__V1__EVENT_ENVELOPE__BODY_TENANT_PUT },
        { &c.base, TALLY__V1__EVENT_TYPE__EVENT_TYPE_CATEGORY_PUT,
          TALLY__V1__EVENT_ENVELOPE__BODY_CATEGORY_PUT },
        { &a.base, TALLY__V1__EVENT_TYPE__EVENT_TYPE_AGENT_PUT,
          TALLY__V1__EVENT_ENVELOPE__BODY_AGENT_PUT },
    };
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        uint8_t *body = pack_body(cases[i].msg, &len);
        event_row row = complaint_row(cases[i].type, body, len);
        row.complaint_id = 0;
        row.version = 0;
        row.imported = false;
        Tally__V1__EventEnvelope *env = pack_and_decode(&row, cases[i].body_case);
        switch (cases[i].body_case) {
        case TALLY__V1__EVENT_ENVELOPE__BODY_TENANT_PUT:
            cr_assert_str_eq(env->tenant_put->name, "ACME \"Ltd\"");
            cr_assert_str_eq(env->tenant_put->time_zone, "Pacific/Auckland");
            break;
        case TALLY__V1__EVENT_ENVELOPE__BODY_CATEGORY_PUT:
            cr_assert_str_eq(env->category_put->category_id, "billing");
            cr_assert_str_eq(env->category_put->name, "Billing");
            break;
        default:
            cr_assert_str_eq(env->agent_put->agent_id, "ann");
            cr_assert_str_eq(env->agent_put->name, "Ann O'Neil");
        }
        tally__v1__event_envelope__free_unpacked(env, NULL);
        free(body);
    }
}

/* An empty body (every field at its default) still sets the oneof member. */
Test(event_pack, an_empty_body_still_selects_the_member, .timeout = 10)
{
    event_row row = complaint_row(TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED, NULL, 0);
    Tally__V1__EventEnvelope *env =
        pack_and_decode(&row, TALLY__V1__EVENT_ENVELOPE__BODY_STATUS_CHANGED);
    cr_assert(env->status_changed);
    cr_assert_eq(env->status_changed->to_status, 0);
    tally__v1__event_envelope__free_unpacked(env, NULL);
}

/* The largest body needs a 3-byte length prefix; it must still decode. */
Test(event_pack, the_largest_body_round_trips, .timeout = 10)
{
    Tally__V1__ComplaintCreated b = TALLY__V1__COMPLAINT_CREATED__INIT;
    char *title = malloc(EVENT_BODY_MAX);
    cr_assert(title);
    memset(title, 'x', EVENT_BODY_MAX - 16);
    title[EVENT_BODY_MAX - 16] = '\0';
    b.title = title;
    size_t len;
    uint8_t *body = pack_body(&b.base, &len);
    cr_assert_leq(len, EVENT_BODY_MAX);
    cr_assert_gt(len, 16384);
    event_row row = complaint_row(TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED, body, len);
    Tally__V1__EventEnvelope *env =
        pack_and_decode(&row, TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_CREATED);
    cr_assert_str_eq(env->complaint_created->title, title);
    tally__v1__event_envelope__free_unpacked(env, NULL);
    free(body);
    free(title);
}

Test(event_pack, unknown_types_are_einval, .timeout = 10)
{
    uint8_t buf[256], body[1] = { 0 };
    const int bad[] = { 0, 4, 9, 13, 20, 99, -1 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        event_row row = complaint_row(bad[i], body, 0);
        cr_assert_eq(event_body_field(bad[i]), 0, "type %d", bad[i]);
        cr_assert_eq(event_pack(&row, buf, sizeof(buf)), TALLY_EINVAL, "type %d", bad[i]);
    }
}

Test(event_pack, a_short_buffer_is_etoobig_and_never_overrun, .timeout = 10)
{
    Tally__V1__AgentPut a = TALLY__V1__AGENT_PUT__INIT;
    a.agent_id = "ann";
    a.name = "Ann";
    size_t len;
    uint8_t *body = pack_body(&a.base, &len);
    event_row row = complaint_row(TALLY__V1__EVENT_TYPE__EVENT_TYPE_AGENT_PUT, body, len);
    uint8_t buf[512];
    long need = event_pack(&row, buf, sizeof(buf));
    cr_assert_gt(need, 0);
    cr_assert_lt(need, 256);
    /* Exactly enough room works; one byte less (and less still) fails without writing past. */
    memset(buf, 0xAA, sizeof(buf));
    cr_assert_eq(event_pack(&row, buf, (size_t)need), need);
    cr_assert_eq(buf[need], 0xAA, "wrote past the end");
    for (long cap = need - 1; cap >= 0; cap--) {
        memset(buf, 0xAA, sizeof(buf));
        cr_assert_eq(event_pack(&row, buf, (size_t)cap), TALLY_ETOOBIG, "cap %ld", cap);
        for (size_t k = (size_t)cap; k < sizeof(buf); k++)
            cr_assert_eq(buf[k], 0xAA, "cap %ld: byte %zu written", cap, k);
    }
    free(body);
}

Test(event_pack, a_body_over_the_limit_is_etoobig, .timeout = 10)
{
    uint8_t *big = calloc(1, EVENT_BODY_MAX + 1), *buf = malloc(2 * EVENT_BODY_MAX);
    cr_assert(big && buf);
    event_row row =
        complaint_row(TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED, big, EVENT_BODY_MAX + 1);
    cr_assert_eq(event_pack(&row, buf, 2 * EVENT_BODY_MAX), TALLY_ETOOBIG);
    free(big);
    free(buf);
}

/* ---- hash, stream names and partitions -------------------------------------------------- */

Test(hash_fnv1a, known_vectors_and_chaining, .timeout = 10)
{
    /* The published FNV-1a 64-bit test vectors. */
    cr_assert_eq(hash_fnv1a("", 0, 0), 0xcbf29ce484222325ULL);
    cr_assert_eq(hash_fnv1a("a", 1, 0), 0xaf63dc4c8601ec8cULL);
    cr_assert_eq(hash_fnv1a("foobar", 6, 0), 0x85944171f73967e8ULL);
    /* A seed continues a digest: hashing in pieces equals hashing the whole. */
    uint64_t h = hash_fnv1a("foo", 3, 0);
    cr_assert_eq(hash_fnv1a("bar", 3, h), 0x85944171f73967e8ULL);
    /* Bytes above 0x7f count as unsigned. */
    cr_assert_neq(hash_fnv1a("\xff", 1, 0), hash_fnv1a("\x7f", 1, 0));
}

Test(stream_partition, single_partition_is_zero, .timeout = 10)
{
    char id[32];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "tenant-%d", i);
        cr_assert_eq(stream_partition(id, 1), 0);
    }
    cr_assert_eq(stream_partition("", 1), 0);
}

Test(stream_partition, stable_in_range_and_the_fnv_of_the_id, .timeout = 10)
{
    char id[32];
    const int counts[] = { 2, 3, 4, 7, 16, 256 };
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++)
        for (int i = 0; i < 1000; i++) {
            snprintf(id, sizeof(id), "t%dx%d", 4242, i);
            int p = stream_partition(id, counts[k]);
            cr_assert(p >= 0 && p < counts[k], "%s over %d: %d", id, counts[k], p);
            cr_assert_eq(stream_partition(id, counts[k]), p, "not stable");
            cr_assert_eq((uint64_t)p, hash_fnv1a(id, strlen(id), 0) % (uint64_t)counts[k]);
        }
    /* A fixed value, so that a change of the function (which would move tenants) shows. */
    cr_assert_eq(stream_partition("a", 4), (int)(0xaf63dc4c8601ec8cULL % 4));
}

Test(stream_partition, spreads_1000_tenants_over_4_partitions, .timeout = 10)
{
    int n[4] = { 0 };
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "tenant-%d", i);
        n[stream_partition(id, 4)]++;
    }
    /* 250 expected each; 150 is about seven standard deviations below. */
    for (int p = 0; p < 4; p++)
        cr_assert_geq(n[p], 150, "partition %d got %d of 1000 (%d %d %d %d)", p, n[p], n[0], n[1],
                      n[2], n[3]);
}

Test(stream_key, names_the_event_and_dead_letter_streams, .timeout = 10)
{
    char key[STREAM_KEY_MAX];
    stream_key(0, key, sizeof(key));
    cr_assert_str_eq(key, "tally:events:0");
    stream_key(STREAM_PARTITIONS_MAX - 1, key, sizeof(key));
    cr_assert_str_eq(key, "tally:events:255");
    stream_dead_key(STREAM_PARTITIONS_MAX - 1, key, sizeof(key));
    cr_assert_str_eq(key, "tally:dead:255");
}
