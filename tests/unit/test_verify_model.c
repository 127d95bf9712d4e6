/*
 * The pure part of verify (common/verify_int.h): the window, the keys a model lays out, the
 * fields facts fold into (docs/keyspace.md), and the comparison rules against canned Redis
 * replies (counters: absent = 0; strings: absent differs; the open backlog: exact scores; an
 * error reply: the whole key).
 */
#include "civil.h"
#include "hist.h"
#include "verify_int.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static int64_t day(const char *s)
{
    int64_t d;
    cr_assert_eq(civil_parse(s, &d), 0, "%s", s);
    return d;
}

Test(verify_window, whole_months_from_the_first_day_to_tomorrows_month)
{
    int64_t first, last;
    verify_window(day("2024-03-05"), 35, &first, &last);
    cr_expect_eq(first, day("2024-01-01"), "35 days before 2024-03-05 is in January");
    cr_expect_eq(last, day("2024-03-31"));
    verify_window(day("2024-12-31"), 1, &first, &last);
    cr_expect_eq(first, day("2024-12-01"));
    cr_expect_eq(last, day("2025-01-31"), "tomorrow is in the next year");
    verify_window(day("2024-02-29"), 29, &first, &last);
    cr_expect_eq(first, day("2024-02-01"));
    cr_expect_eq(last, day("2024-03-31"));
}

Test(verify_model, lays_out_fixed_month_and_day_keys)
{
    verify_model m;
    cr_assert_eq(vm_init(&m, "acme", "3", day("2024-01-01"), day("2024-02-29")), 0);
    cr_expect_eq(m.nmonths, 2);
    cr_expect_eq(m.ndays, 60);
    cr_expect_eq(m.nkeys, (size_t)(VM_FIXED + 2 * VM_PER_MONTH + 60 * VM_PER_DAY));
    cr_expect_str_eq(m.keys[VM_ST].name, "{t:acme}:3:st");
    cr_expect_geq(vm_find_key(&m, "{t:acme}:3:d:2024-02"), 0);
    cr_expect_geq(vm_find_key(&m, "{t:acme}:3:hm:2024-01:kp"), 0);
    cr_expect_geq(vm_find_key(&m, "{t:acme}:3:hd:2024-02-29:k"), 0);
    cr_expect_geq(vm_find_key(&m, "{t:acme}:3:ad:2024-01-31"), 0);
    cr_expect_eq(vm_find_key(&m, "{t:acme}:3:hd:2024-03-01:a"), -1, "outside the window");
    vm_release(&m);
}

/* A reply of n field/value pairs (strings), as HGETALL or ZRANGE WITHSCORES gives. */
static redisReply *pairs(size_t n, const char *const *kv)
{
    redisReply *r = calloc(1, sizeof(*r));
    r->type = REDIS_REPLY_ARRAY;
    r->elements = 2 * n;
    r->element = calloc(2 * n + 1, sizeof(*r->element));
    for (size_t i = 0; i < 2 * n; i++) {
        redisReply *e = calloc(1, sizeof(*e));
        e->type = REDIS_REPLY_STRING;
        e->str = strdup(kv[i]);
        e->len = strlen(kv[i]);
        r->element[i] = e;
    }
    return r;
}

static void free_pairs(redisReply *r)
{
    for (size_t i = 0; i < r->elements; i++) {
        free(r->element[i]->str);
        free(r->element[i]);
    }
    free(r->element);
    free(r);
}

typedef struct seen {
    int n;
    char field[8][64], expected[8][64], found[8][64], view[8][16];
} seen;

static void note(const verify_diff *d, void *arg)
{
    seen *s = arg;
    if (s->n == 8)
        return;
    snprintf(s->view[s->n], 16, "%s", d->view);
    snprintf(s->field[s->n], 64, "%s", d->field);
    snprintf(s->expected[s->n], 64, "%s", d->expected ? d->expected : "(none)");
    snprintf(s->found[s->n], 64, "%s", d->found ? d->found : "(none)");
    s->n++;
}

static int64_t compare(verify_model *m, const char *key, size_t n, const char *const *kv, seen *s)
{
    long i = vm_find_key(m, key);
    cr_assert_geq(i, 0, "%s", key);
    redisReply *r = pairs(n, kv);
    int64_t fields = 0;
    memset(s, 0, sizeof(*s));
    int64_t d = vm_compare(m, (size_t)i, r, note, s, &fields);
    free_pairs(r);
    return d;
}

Test(verify_model, a_resolution_counts_where_the_keyspace_says)
{
    verify_model m;
    seen s;
    cr_assert_eq(vm_init(&m, "t", "1", day("2024-05-01"), day("2024-05-31")), 0);
    verify_resolution r = {
        .day = day("2024-05-07"), .category = "k1", .priority = 3, .secs = 125, .agent = "a1"
    };
    cr_assert_eq(vm_resolution(&m, &r), 0);
    char b[8], kb[16], pb[16], kpb[24];
    snprintf(b, sizeof(b), "%d", hist_bucket(125));
    snprintf(kb, sizeof(kb), "k1:%s", b);
    snprintf(pb, sizeof(pb), "3:%s", b);
    snprintf(kpb, sizeof(kpb), "k1:3:%s", b);
    const char *d[] = {
        "07:r", "1",   "07:r:k:k1", "1",   "07:r:p:3", "1",   "07:r:kp:k1:3", "1",
        "07:s", "125", "07:s:k:k1", "125", "07:s:p:3", "125", "07:s:kp:k1:3", "125"
    };
    cr_expect_eq(compare(&m, "{t:t}:1:d:2024-05", 8, d, &s), 0, "%s %s %s", s.field[0],
                 s.expected[0], s.found[0]);
    const char *hma[] = { b, "1", "n", "1", "s", "125" };
    cr_expect_eq(compare(&m, "{t:t}:1:hm:2024-05:a", 3, hma, &s), 0);
    const char *hmkp[] = { kpb, "1", "k1:3:n", "1", "k1:3:s", "125" };
    cr_expect_eq(compare(&m, "{t:t}:1:hm:2024-05:kp", 3, hmkp, &s), 0);
    const char *hdk[] = { kb, "1" }, *hdp[] = { pb, "1" };
    cr_expect_eq(compare(&m, "{t:t}:1:hd:2024-05-07:k", 1, hdk, &s), 0);
    cr_expect_eq(compare(&m, "{t:t}:1:hd:2024-05-07:p", 1, hdp, &s), 0);
    const char *ad[] = { "a1:n", "1", "a1:s", "125" };
    cr_expect_eq(compare(&m, "{t:t}:1:ad:2024-05-07", 2, ad, &s), 0);
    cr_expect_eq(compare(&m, "{t:t}:1:ad:2024-05", 2, ad, &s), 0);
    const char *lb[] = { "a1", "1" };
    cr_expect_eq(compare(&m, "{t:t}:1:lb:2024-05", 1, lb, &s), 0);
    /* Another day's keys stay empty. */
    cr_expect_eq(compare(&m, "{t:t}:1:hd:2024-05-08:a", 0, NULL, &s), 0);
    vm_release(&m);
}

Test(verify_model, counters_treat_absent_as_zero_and_name_each_difference)
{
    verify_model m;
    seen s;
    cr_assert_eq(vm_init(&m, "t", "1", day("2024-05-01"), day("2024-05-31")), 0);
    verify_complaint c = { .id = 7,
                           .status = 2,
                           .priority = 1,
                           .category = "k",
                           .agent = "a9",
                           .created_ms = 1715000000123,
                           .day = day("2024-05-06") };
    cr_assert_eq(vm_complaint(&m, &c), 0);
    const char *st_ok[] = { "1", "0", "2", "1" };
    cr_expect_eq(compare(&m, "{t:t}:1:st", 2, st_ok, &s), 0, "a zero field is an absent one");
    const char *st_bad[] = { "2", "2", "3", "1" };
    cr_expect_eq(compare(&m, "{t:t}:1:st", 2, st_bad, &s), 2);
    cr_expect_str_eq(s.view[0], "st");
    cr_expect_str_eq(s.field[0], "2");
    cr_expect_str_eq(s.expected[0], "1");
    cr_expect_str_eq(s.found[0], "2");
    cr_expect_str_eq(s.field[1], "3");
    cr_expect_str_eq(s.expected[1], "0");
    cr_expect_eq(compare(&m, "{t:t}:1:st", 0, NULL, &s), 1, "a deleted key");
    cr_expect_str_eq(s.found[0], "(none)");
    const char *st_junk[] = { "2", "1.5" };
    cr_expect_eq(compare(&m, "{t:t}:1:st", 1, st_junk, &s), 1, "not an integer");
    /* The backlog: exact scores, absent differs. */
    const char *open_ok[] = { "7", "1715000000123" };
    cr_expect_eq(compare(&m, "{t:t}:1:open", 1, open_ok, &s), 0);
    const char *open_bad[] = { "7", "1715000000124", "8", "1" };
    cr_expect_eq(compare(&m, "{t:t}:1:open", 2, open_bad, &s), 2);
    cr_expect_str_eq(s.expected[1], "(none)", "member 8 is not expected at all");
    /* Strings: the open detail. */
    const char *od_ok[] = { "7", "2|1|k|a9" };
    cr_expect_eq(compare(&m, "{t:t}:1:od", 1, od_ok, &s), 0);
    const char *od_bad[] = { "7", "1|1|k|a9" };
    cr_expect_eq(compare(&m, "{t:t}:1:od", 1, od_bad, &s), 1);
    cr_expect_str_eq(s.expected[0], "2|1|k|a9");
    const char *ao[] = { "a9", "1" };
    cr_expect_eq(compare(&m, "{t:t}:1:ao", 1, ao, &s), 0);
    const char *kc[] = { "k", "1" };
    cr_expect_eq(compare(&m, "{t:t}:1:kc:2024-05", 1, kc, &s), 0);
    const char *d[] = { "06:c", "1", "06:c:k:k", "1", "06:c:p:1", "1", "06:c:kp:k:1", "2" };
    cr_expect_eq(compare(&m, "{t:t}:1:d:2024-05", 4, d, &s), 1);
    cr_expect_str_eq(s.field[0], "06:c:kp:k:1");
    vm_release(&m);
}

Test(verify_model, reference_strings_and_error_replies)
{
    verify_model m;
    seen s;
    cr_assert_eq(vm_init(&m, "t", "1", day("2024-05-01"), day("2024-05-31")), 0);
    cr_assert_eq(vm_ref(&m, VM_CATS, "k", "Billing"), 0);
    cr_expect_neq(vm_ref(&m, VM_ST, "k", "x"), 0, "only reference keys");
    const char *ok[] = { "k", "Billing" }, *bad[] = { "k", "" },
               *extra[] = { "k", "Billing", "z", "Zed" };
    cr_expect_eq(compare(&m, "{t:t}:1:cats", 1, ok, &s), 0);
    cr_expect_eq(compare(&m, "{t:t}:1:cats", 1, bad, &s), 1, "an empty name differs");
    cr_expect_eq(compare(&m, "{t:t}:1:cats", 2, extra, &s), 1);
    cr_expect_str_eq(s.field[0], "z");
    cr_expect_str_eq(s.expected[0], "(none)");
    redisReply err = { .type = REDIS_REPLY_ERROR, .str = "WRONGTYPE Operation against a key" };
    int64_t fields = 0;
    memset(&s, 0, sizeof(s));
    cr_expect_eq(vm_compare(&m, VM_CATS, &err, note, &s, &fields), 1);
    cr_expect_str_eq(s.field[0], "");
    cr_expect_str_eq(s.found[0], "WRONGTYPE Operation against a key");
    vm_release(&m);
}
