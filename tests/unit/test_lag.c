/*
 * common/lag's pure parts, from canned replies: the group's lag is taken from XINFO GROUPS only
 * for the group "projector" and only when Redis gives it (a null lag is unknown, to be counted);
 * an age is never negative and 0 for nothing.
 */
#include "lag.h"

#include <criterion/criterion.h>
#include <string.h>

static redisReply str(char *s)
{
    redisReply r = { .type = REDIS_REPLY_STRING };
    r.str = s;
    r.len = strlen(s);
    return r;
}

static redisReply num(long long v)
{
    redisReply r = { .type = REDIS_REPLY_INTEGER };
    r.integer = v;
    return r;
}

/* One group's flat reply: name, last-delivered-id, lag (nil when lag < 0). */
typedef struct group {
    redisReply el[6], *els[6], arr;
} group;

static void group_init(group *g, char *name, char *ld, long long lag)
{
    g->el[0] = str("name");
    g->el[1] = str(name);
    g->el[2] = str("last-delivered-id");
    g->el[3] = str(ld);
    g->el[4] = str("lag");
    g->el[5] = lag < 0 ? (redisReply){ .type = REDIS_REPLY_NIL } : num(lag);
    for (int i = 0; i < 6; i++)
        g->els[i] = &g->el[i];
    g->arr = (redisReply){ .type = REDIS_REPLY_ARRAY, .elements = 6, .element = g->els };
}

Test(lag, the_projector_groups_lag_is_read)
{
    group other, mine;
    group_init(&other, "analytics", "5-0", 99);
    group_init(&mine, "projector", "1700000000000-3", 42);
    redisReply *els[] = { &other.arr, &mine.arr };
    redisReply r = { .type = REDIS_REPLY_ARRAY, .elements = 2, .element = els };
    lag_part p = { 0 };
    char ld[LAG_ID_MAX];
    cr_expect(lag_parse_groups(&r, &p, ld, sizeof(ld)));
    cr_expect(p.group);
    cr_expect_eq(p.undelivered, 42);
    cr_expect_str_eq(ld, "1700000000000-3");
}

Test(lag, a_null_lag_is_unknown_and_a_missing_group_is_said)
{
    group mine;
    group_init(&mine, "projector", "7-0", -1);
    redisReply *els[] = { &mine.arr };
    redisReply r = { .type = REDIS_REPLY_ARRAY, .elements = 1, .element = els };
    lag_part p = { .undelivered = 5 };
    char ld[LAG_ID_MAX];
    cr_expect(!lag_parse_groups(&r, &p, ld, sizeof(ld)), "a null lag is not known");
    cr_expect(p.group);
    cr_expect_eq(p.undelivered, 0);
    cr_expect_str_eq(ld, "7-0");

    group other;
    group_init(&other, "analytics", "5-0", 3);
    els[0] = &other.arr;
    cr_expect(!lag_parse_groups(&r, &p, ld, sizeof(ld)));
    cr_expect(!p.group, "only the projector's group counts");
    cr_expect_str_eq(ld, "");
    redisReply err = { .type = REDIS_REPLY_ERROR, .str = "ERR no such key" };
    cr_expect(!lag_parse_groups(&err, &p, ld, sizeof(ld)));
    cr_expect(!p.group);
}

Test(lag, ages_are_never_negative)
{
    cr_expect_eq(lag_age_ms(10000, 4000), 6000);
    cr_expect_eq(lag_age_ms(10000, 0), 0, "nothing there");
    cr_expect_eq(lag_age_ms(10000, 12000), 0, "a clock behind");
}
