/*
 * validate: the request rules of command-svc as pure functions. Each rule is checked at its
 * edges (the last accepted and the first refused value), every message is checked to start
 * with the field's path (the contract of types.proto), and the status state machine is checked
 * over every pair of statuses.
 */
#include "err.h"
#include "validate.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define ERRLEN 256

/* Asserts rc is a refusal whose message starts with "path: ". */
static void assert_refused(int rc, const char *err, const char *path, const char *what)
{
    char prefix[96];
    snprintf(prefix, sizeof(prefix), "%s: ", path);
    cr_assert_eq(rc, TALLY_EINVAL, "%s: expected TALLY_EINVAL, got %d", what, rc);
    cr_assert(strncmp(err, prefix, strlen(prefix)) == 0,
              "%s: message \"%s\" does not start with \"%s\"", what, err, prefix);
}

static void repeat(char *buf, const char *unit, size_t times)
{
    size_t n = strlen(unit);
    for (size_t i = 0; i < times; i++)
        memcpy(buf + i * n, unit, n);
    buf[times * n] = '\0';
}

/* ---- val_id ---------------------------------------------------------------------------- */

Test(val_id, accepts_1_to_64_bytes_of_the_id_alphabet, .timeout = 10)
{
    char err[ERRLEN] = "", s[80];
    const char *ok[] = {
        "a",          "Z",
        "0",          "_",
        ".",          "-",
        "tenant-1",   "A.b_c-9",
        "0123456789", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
    }; /* 64 */
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(val_id("tenant_id", ok[i], false, err, sizeof(err)), 0, "\"%s\": %s", ok[i],
                     err);
    repeat(s, "x", 64);
    cr_assert_eq(val_id("tenant_id", s, false, err, sizeof(err)), 0, "64 bytes: %s", err);
}

Test(val_id, refuses_65_bytes_naming_the_field, .timeout = 10)
{
    char err[ERRLEN] = "", s[80];
    repeat(s, "x", 65);
    int rc = val_id("idempotency_key", s, false, err, sizeof(err));
    assert_refused(rc, err, "idempotency_key", "65 bytes");
    cr_assert(strstr(err, "64"), "the message should say the limit: %s", err);
    rc = val_id("idempotency_key", s, true, err, sizeof(err));
    assert_refused(rc, err, "idempotency_key", "65 bytes, optional");
}

Test(val_id, empty_is_required_unless_optional, .timeout = 10)
{
    char err[ERRLEN] = "";
    assert_refused(val_id("category_id", "", false, err, sizeof(err)), err, "category_id", "empty");
    cr_assert(strstr(err, "required"), "%s", err);
    cr_assert_eq(val_id("agent_id", "", true, err, sizeof(err)), 0);
}

Test(val_id, refuses_every_character_outside_the_alphabet, .timeout = 10)
{
    char err[ERRLEN], s[8];
    int refused = 0;
    /* Every byte value except NUL, in the middle of an otherwise valid id. */
    for (int b = 1; b < 256; b++) {
        bool allowed = (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') ||
                       b == '_' || b == '.' || b == '-';
        snprintf(s, sizeof(s), "a%cb", (char)b);
        err[0] = '\0';
        int rc = val_id("customer_id", s, false, err, sizeof(err));
        if (allowed) {
            cr_assert_eq(rc, 0, "byte 0x%02x should be allowed: %s", b, err);
        } else {
            assert_refused(rc, err, "customer_id", "forbidden byte");
            refused++;
        }
    }
    cr_assert_eq(refused, 255 - 65);
}

Test(val_id, refuses_sql_metacharacters_and_non_ascii, .timeout = 10)
{
    char err[ERRLEN];
    const char *bad[] = { "'; DROP TABLE complaints; --",
                          "a'b",
                          "a\"b",
                          "a\\b",
                          "$1",
                          "%s",
                          "a b",
                          "a/b",
                          "a\tb",
                          "a\nb",
                          "caf\xc3\xa9",
                          "\xf0\x9f\x98\x80",
                          "a;b",
                          "a*b",
                          "a+b",
                          "a:b",
                          "a@b",
                          "a\x7f" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_refused(val_id("actor", bad[i], false, err, sizeof(err)), err, "actor", bad[i]);
        assert_refused(val_id("actor", bad[i], true, err, sizeof(err)), err, "actor", bad[i]);
    }
}

Test(val_id, a_small_error_buffer_is_truncated_not_overrun, .timeout = 10)
{
    char err[8 + 1];
    memset(err, 'Z', sizeof(err));
    cr_assert_eq(val_id("tenant_id", "a b", false, err, 8), TALLY_EINVAL);
    cr_assert_eq(err[7], '\0');
    cr_assert_eq(err[8], 'Z', "wrote past errlen");
    cr_assert_str_eq(err, "tenant_");
}

/* ---- val_text ------------------------------------------------------------------------- */

Test(val_text, limits_are_in_bytes_not_characters, .timeout = 10)
{
    char err[ERRLEN] = "", s[4100];
    repeat(s, "x", 200);
    cr_assert_eq(val_text("title", s, 1, VAL_TITLE_MAX, err, sizeof(err)), 0, "%s", err);
    repeat(s, "x", 201);
    assert_refused(val_text("title", s, 1, VAL_TITLE_MAX, err, sizeof(err)), err, "title",
                   "201 bytes");
    cr_assert(strstr(err, "200 bytes"), "%s", err);

    /* 100 two-byte characters are 200 bytes: accepted. */
    repeat(s, "\xc3\xa9", 100);
    cr_assert_eq(val_text("title", s, 1, VAL_TITLE_MAX, err, sizeof(err)), 0, "%s", err);
    /* 67 three-byte characters are only 67 characters but 201 bytes: refused. */
    repeat(s, "\xe2\x82\xac", 67);
    cr_assert_eq(strlen(s), 201);
    assert_refused(val_text("title", s, 1, VAL_TITLE_MAX, err, sizeof(err)), err, "title",
                   "67 euro signs");
    /* 50 four-byte characters are 200 bytes: accepted. */
    repeat(s, "\xf0\x9f\x98\x80", 50);
    cr_assert_eq(val_text("title", s, 1, VAL_TITLE_MAX, err, sizeof(err)), 0, "%s", err);

    repeat(s, "d", VAL_DESCRIPTION_MAX);
    cr_assert_eq(val_text("description", s, 0, VAL_DESCRIPTION_MAX, err, sizeof(err)), 0);
    repeat(s, "d", VAL_DESCRIPTION_MAX + 1);
    assert_refused(val_text("description", s, 0, VAL_DESCRIPTION_MAX, err, sizeof(err)), err,
                   "description", "4001 bytes");
    repeat(s, "n", VAL_NOTE_MAX + 1);
    assert_refused(val_text("note", s, 0, VAL_NOTE_MAX, err, sizeof(err)), err, "note",
                   "2001 bytes");
    cr_assert_eq(VAL_TITLE_MAX, 200);
    cr_assert_eq(VAL_NAME_MAX, 200);
    cr_assert_eq(VAL_DESCRIPTION_MAX, 4000);
    cr_assert_eq(VAL_NOTE_MAX, 2000);
}

Test(val_text, empty_depends_on_min, .timeout = 10)
{
    char err[ERRLEN] = "";
    cr_assert_eq(val_text("description", "", 0, VAL_DESCRIPTION_MAX, err, sizeof(err)), 0);
    assert_refused(val_text("name", "", 1, VAL_NAME_MAX, err, sizeof(err)), err, "name", "empty");
    cr_assert(strstr(err, "required"), "%s", err);
}

Test(val_text, accepts_valid_utf8_of_every_length, .timeout = 10)
{
    char err[ERRLEN] = "";
    const char *ok[] = {
        "plain ascii with 'quotes' and \\ and ; --",
        "\xc2\x80",         /* U+0080, the first 2-byte */
        "\xdf\xbf",         /* U+07FF, the last 2-byte */
        "\xe0\xa0\x80",     /* U+0800, the first 3-byte */
        "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",     /* U+E000, just above them */
        "\xef\xbf\xbf",     /* U+FFFF */
        "\xf0\x90\x80\x80", /* U+10000, the first 4-byte */
        "\xf0\x9f\x98\x80", /* U+1F600 */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
        "Gr\xc3\xbc\xc3\x9f"
        "e \xe2\x82\xac \xf0\x9f\x98\x80!",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(val_text("note", ok[i], 0, VAL_NOTE_MAX, err, sizeof(err)), 0, "case %zu: %s",
                     i, err);
}

Test(val_text, refuses_overlongs_surrogates_truncations_and_stray_bytes, .timeout = 10)
{
    char err[ERRLEN];
    struct {
        const char *s, *what;
    } bad[] = {
        { "\xc0\x80", "overlong NUL (2 bytes)" },
        { "\xc1\xbf", "overlong 2-byte" },
        { "\xe0\x80\x80", "overlong 3-byte" },
        { "\xe0\x9f\xbf", "overlong 3-byte, U+07FF" },
        { "\xf0\x80\x80\x80", "overlong 4-byte" },
        { "\xf0\x8f\xbf\xbf", "overlong 4-byte, U+FFFF" },
        { "\xed\xa0\x80", "surrogate U+D800" },
        { "\xed\xbf\xbf", "surrogate U+DFFF" },
        { "\xed\xa0\xbd\xed\xb8\x80", "CESU-8 surrogate pair" },
        { "\xf4\x90\x80\x80", "above U+10FFFF" },
        { "\xf5\x80\x80\x80", "lead byte F5" },
        { "\xff", "byte FF" },
        { "\xfe", "byte FE" },
        { "\x80", "lone continuation" },
        { "a\xbf", "continuation after ASCII" },
        { "\xc3", "truncated 2-byte at the end" },
        { "\xc3"
          "A",
          "2-byte lead then ASCII" },
        { "\xe2\x82", "truncated 3-byte at the end" },
        { "\xe2"
          "A\xac",
          "3-byte broken in the middle" },
        { "\xf0\x9f\x98", "truncated 4-byte at the end" },
        { "\xf0\x9f"
          "A\x80",
          "4-byte broken in the middle" },
        { "ok so far \xe2\x82", "truncated after valid text" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_refused(val_text("description", bad[i].s, 0, VAL_DESCRIPTION_MAX, err, sizeof(err)),
                       err, "description", bad[i].what);
        cr_assert(strstr(err, "UTF-8"), "%s: %s", bad[i].what, err);
    }
}

Test(val_text, the_message_names_the_offending_byte, .timeout = 10)
{
    char err[ERRLEN] = "";
    assert_refused(val_text("title", "abc\xff", 1, VAL_TITLE_MAX, err, sizeof(err)), err, "title",
                   "bad byte at 3");
    cr_assert(strstr(err, "byte 3"), "%s", err);
}

/* ---- val_time_zone -------------------------------------------------------------------- */

Test(val_time_zone, accepts_iana_shaped_names, .timeout = 10)
{
    char err[ERRLEN] = "", s[80];
    const char *ok[] = { "UTC",
                         "Europe/Berlin",
                         "America/New_York",
                         "Etc/GMT+12",
                         "Etc/GMT-14",
                         "America/Argentina/Buenos_Aires",
                         "America/Port-au-Prince" };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_assert_eq(val_time_zone("time_zone", ok[i], err, sizeof(err)), 0, "%s: %s", ok[i], err);
    repeat(s, "A", 64);
    cr_assert_eq(val_time_zone("time_zone", s, err, sizeof(err)), 0, "64 bytes: %s", err);
}

Test(val_time_zone, refuses_empty_long_and_odd_characters, .timeout = 10)
{
    char err[ERRLEN], s[80];
    repeat(s, "A", 65);
    const char *bad[] = { "",
                          s,
                          "Europe/Ber lin",
                          "Europe/Berlin'",
                          "UTC;",
                          "..\\etc",
                          "a.b",
                          "Europe/Z\xc3\xbcrich",
                          "$1",
                          "%s" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_refused(val_time_zone("time_zone", bad[i], err, sizeof(err)), err, "time_zone",
                       bad[i]);
    }
}

/* ---- enums and positives ---------------------------------------------------------------- */

Test(val_enum, priority_is_1_to_4, .timeout = 10)
{
    char err[ERRLEN];
    for (int p = 1; p <= 4; p++)
        cr_assert_eq(val_priority("priority", p, err, sizeof(err)), 0, "%d", p);
    const int bad[] = { 0, 5, 99, -1, INT32_MIN, INT32_MAX };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_refused(val_priority("priority", bad[i], err, sizeof(err)), err, "priority",
                       "bad priority");
    }
}

Test(val_enum, status_is_1_to_4, .timeout = 10)
{
    char err[ERRLEN];
    for (int s = 1; s <= 4; s++)
        cr_assert_eq(val_status("status", s, err, sizeof(err)), 0, "%d", s);
    const int bad[] = { 0, 5, 99, -1, INT32_MIN, INT32_MAX };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_refused(val_status("status", bad[i], err, sizeof(err)), err, "status", "bad status");
    }
}

Test(val_enum, positive_is_1_or_more, .timeout = 10)
{
    char err[ERRLEN];
    cr_assert_eq(val_positive("complaint_id", 1, err, sizeof(err)), 0);
    cr_assert_eq(val_positive("complaint_id", INT64_MAX, err, sizeof(err)), 0);
    const int64_t bad[] = { 0, -1, INT64_MIN };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_refused(val_positive("expected_version", bad[i], err, sizeof(err)), err,
                       "expected_version", "not positive");
    }
}

Test(val_enum, status_names, .timeout = 10)
{
    cr_assert_str_eq(val_status_name(0), "UNSPECIFIED");
    cr_assert_str_eq(val_status_name(1), "OPEN");
    cr_assert_str_eq(val_status_name(2), "IN_PROGRESS");
    cr_assert_str_eq(val_status_name(3), "RESOLVED");
    cr_assert_str_eq(val_status_name(4), "CLOSED");
    cr_assert_str_eq(val_status_name(5), "UNSPECIFIED");
    cr_assert_str_eq(val_status_name(-1), "UNSPECIFIED");
}

/* ---- the state machine ------------------------------------------------------------------ */

/* The moves of types.proto, and nothing else. */
static bool spec_allows(int from, int to)
{
    return (from == 1 && to == 2) || (from == 1 && to == 3) || (from == 2 && to == 3) ||
           (from == 3 && to == 4) || (from == 3 && to == 1);
}

Test(state_machine, exactly_the_five_moves_are_allowed, .timeout = 10)
{
    int allowed = 0;
    for (int from = 0; from <= 4; from++)
        for (int to = 0; to <= 4; to++) {
            cr_assert_eq(val_move_allowed(from, to), spec_allows(from, to), "%s -> %s",
                         val_status_name(from), val_status_name(to));
            allowed += val_move_allowed(from, to);
        }
    cr_assert_eq(allowed, 5);
    const int odd[] = { -1, 5, 99, INT32_MIN, INT32_MAX };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
        for (int s = 0; s <= 4; s++) {
            cr_assert_not(val_move_allowed(odd[i], s), "%d -> %d", odd[i], s);
            cr_assert_not(val_move_allowed(s, odd[i]), "%d -> %d", s, odd[i]);
        }
}

/*
 * The message of a refused move from an active status says the move and lists exactly the
 * allowed targets ("allowed from RESOLVED: ..."), in any order.
 */
Test(state_machine, the_refusal_names_the_allowed_moves, .timeout = 10)
{
    char err[ERRLEN], head[128], want[64];
    for (int from = 1; from <= 3; from++)
        for (int to = 0; to <= 4; to++) {
            if (spec_allows(from, to))
                continue;
            val_move_error(from, to, err, sizeof(err));
            cr_assert(strncmp(err, "status: ", 8) == 0, "%s", err);
            snprintf(head, sizeof(head), "cannot move from %s to %s", val_status_name(from),
                     val_status_name(to));
            cr_assert(strstr(err, head), "\"%s\" lacks \"%s\"", err, head);
            snprintf(want, sizeof(want), "allowed from %s: ", val_status_name(from));
            const char *list = strstr(err, want);
            cr_assert(list, "\"%s\" lacks \"%s\"", err, want);
            list += strlen(want);
            /* Split the list on ", " and compare it with the spec as a set. */
            int named = 0;
            char copy[128];
            snprintf(copy, sizeof(copy), "%s", list);
            for (char *save = NULL, *tok = strtok_r(copy, ", ", &save); tok;
                 tok = strtok_r(NULL, ", ", &save)) {
                int s = 0;
                for (int k = 1; k <= 4; k++)
                    if (strcmp(tok, val_status_name(k)) == 0)
                        s = k;
                cr_assert(s != 0, "unknown status \"%s\" in \"%s\"", tok, err);
                cr_assert(spec_allows(from, s), "\"%s\" lists a refused move to %s", err, tok);
                named++;
            }
            int expected = 0;
            for (int k = 1; k <= 4; k++)
                expected += spec_allows(from, k);
            cr_assert_eq(named, expected, "\"%s\" should name %d moves", err, expected);
        }
}

Test(state_machine, closed_is_final, .timeout = 10)
{
    char err[ERRLEN];
    for (int to = 0; to <= 4; to++) {
        val_move_error(4, to, err, sizeof(err));
        cr_assert(strncmp(err, "status: ", 8) == 0, "%s", err);
        cr_assert(strstr(err, "cannot move from CLOSED"), "%s", err);
        cr_assert(strstr(err, "CLOSED is final"), "%s", err);
    }
}

Test(state_machine, move_error_respects_a_small_buffer, .timeout = 10)
{
    char err[17];
    memset(err, 'Z', sizeof(err));
    val_move_error(3, 2, err, 16);
    cr_assert_eq(err[15], '\0');
    cr_assert_eq(err[16], 'Z', "wrote past errlen");
}
