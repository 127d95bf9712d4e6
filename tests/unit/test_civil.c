/*
 * civil: every day from 1600-01-01 to 2400-12-31 against a reference that only counts days by
 * month lengths and weekdays by sevens from a known Saturday; parsing of good and bad dates;
 * ISO weeks against known values and glibc's strftime("%G %V"); days of Unix milliseconds,
 * negative ones included, against plain floor division.
 */
#include "civil.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static bool ref_leap(int y)
{
    if (y % 400 == 0)
        return true;
    if (y % 100 == 0)
        return false;
    return y % 4 == 0;
}

static int ref_month_days(int y, int m)
{
    static const int n[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return m == 2 && ref_leap(y) ? 29 : n[m - 1];
}

/* Calls fn for every day of [y0-01-01, y1-12-31] with its day number, weekday and yday. */
typedef void (*day_fn)(int64_t z, int y, int m, int d, int wday1, int yday);

static void each_day(int y0, int y1, day_fn fn)
{
    /* The day number of y0-01-01, by year lengths from 1970. */
    int64_t z = 0;
    for (int y = y0; y < 1970; y++)
        z -= ref_leap(y) ? 366 : 365;
    for (int y = 1970; y < y0; y++)
        z += ref_leap(y) ? 366 : 365;
    /* 2000-01-01 was a Saturday, and 400 Gregorian years are a whole number of weeks. */
    int64_t from2000 = 0;
    for (int y = y0; y < 2000; y++)
        from2000 -= ref_leap(y) ? 366 : 365;
    for (int y = 2000; y < y0; y++)
        from2000 += ref_leap(y) ? 366 : 365;
    int wday1 = (int)(((6 - 1 + from2000) % 7 + 7) % 7) + 1; /* 1 Monday .. 7 Sunday */
    for (int y = y0; y <= y1; y++) {
        int yday = 0;
        for (int m = 1; m <= 12; m++)
            for (int d = 1; d <= ref_month_days(y, m); d++) {
                fn(z, y, m, d, wday1, yday);
                z++;
                yday++;
                wday1 = wday1 % 7 + 1;
            }
    }
}

static void check_day(int64_t z, int y, int m, int d, int wday1, int yday)
{
    (void)yday;
    cr_assert_eq(civil_days(y, m, d), z, "civil_days(%d-%02d-%02d)", y, m, d);
    int gy, gm, gd;
    civil_date(z, &gy, &gm, &gd);
    cr_assert(gy == y && gm == m && gd == d, "civil_date(%lld) = %d-%02d-%02d, want %d-%02d-%02d",
              (long long)z, gy, gm, gd, y, m, d);
    cr_assert_eq(civil_weekday(z), wday1, "%d-%02d-%02d", y, m, d);
    int64_t monday = civil_week_start(z);
    cr_assert(civil_weekday(monday) == 1 && monday <= z && z - monday < 7, "%d-%02d-%02d", y, m, d);
    char want[32], got[CIVIL_DAY_LEN];
    snprintf(want, sizeof(want), "%04d-%02d-%02d", y, m, d);
    civil_format(z, got);
    cr_assert_str_eq(got, want);
    int64_t parsed = 12345;
    cr_assert_eq(civil_parse(want, &parsed), 0, "%s", want);
    cr_assert_eq(parsed, z, "%s", want);
}

Test(civil, every_day_1600_to_2400)
{
    each_day(1600, 2400, check_day);
    cr_assert_eq(civil_days(1970, 1, 1), 0);
    cr_assert_eq(civil_weekday(0), 4, "1970-01-01 was a Thursday");
    cr_assert_eq(civil_days(2000, 3, 1), 11017);
    cr_assert_eq(civil_days(1969, 12, 31), -1);
}

Test(civil, leap_years_and_month_lengths)
{
    for (int y = 1; y <= 10000; y++) {
        cr_assert_eq(civil_leap(y), ref_leap(y), "%d", y);
        for (int m = 1; m <= 12; m++)
            cr_assert_eq(civil_month_days(y, m), ref_month_days(y, m), "%d-%02d", y, m);
    }
    cr_assert(civil_leap(2000) && civil_leap(2024) && !civil_leap(1900) && !civil_leap(2100));
}

Test(civil, parse_accepts_exactly_real_dates)
{
    int64_t z;
    const char *good[] = { "2024-02-29", "2000-02-29", "1000-01-01", "9999-12-31",
                           "1970-01-01", "2023-12-31", NULL };
    for (int i = 0; good[i]; i++)
        cr_assert_eq(civil_parse(good[i], &z), 0, "refused \"%s\"", good[i]);
    cr_assert(civil_parse("9999-12-31", &z) == 0 && z == civil_days(9999, 12, 31));
    const char *bad[] = { "2025-02-29",  "2100-02-29",  "2024-13-01", "2024-00-10", "2024-01-00",
                          "2024-01-32",  "2024-04-31",  "2024-1-01",  "2024-01-1",  " 2024-01-01",
                          "2024-01-01x", "2024-01-01 ", "0999-01-01", "0000-01-01", "",
                          "2024/01/01",  "+024-01-01",  "2024-+1-01", "2024-01--1", "10000-01-01",
                          "20240101",    "2024-01-0a",  "2024-01",    "abcd-ef-gh", NULL };
    for (int i = 0; bad[i]; i++)
        cr_assert_eq(civil_parse(bad[i], &z), -1, "accepted \"%s\"", bad[i]);
    cr_assert_eq(civil_parse(NULL, &z), -1);
}

Test(civil, format_pads)
{
    char out[CIVIL_DAY_LEN];
    civil_format(civil_days(1000, 1, 1), out);
    cr_assert_str_eq(out, "1000-01-01");
    civil_format(civil_days(2024, 3, 9), out);
    cr_assert_str_eq(out, "2024-03-09");
    civil_format(-1, out);
    cr_assert_str_eq(out, "1969-12-31");
}

Test(civil, iso_weeks_known)
{
    struct {
        int y, m, d, wy, w;
    } known[] = {
        { 2021, 1, 3, 2020, 53 },   { 2021, 1, 4, 2021, 1 },  { 2024, 12, 30, 2025, 1 },
        { 2026, 12, 31, 2026, 53 }, { 2027, 1, 1, 2026, 53 }, { 2027, 1, 4, 2027, 1 },
        { 2008, 12, 29, 2009, 1 },  { 2010, 1, 3, 2009, 53 }, { 2005, 1, 1, 2004, 53 },
        { 2024, 1, 1, 2024, 1 },    { 2023, 1, 1, 2022, 52 }, { 1970, 1, 1, 1970, 1 },
        { 1969, 12, 29, 1970, 1 },  { 1600, 1, 1, 1599, 52 }, { 2020, 12, 31, 2020, 53 },
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        int wy, w;
        civil_iso_week(civil_days(known[i].y, known[i].m, known[i].d), &wy, &w);
        cr_assert(wy == known[i].wy && w == known[i].w, "%d-%02d-%02d: %d-W%02d, want %d-W%02d",
                  known[i].y, known[i].m, known[i].d, wy, w, known[i].wy, known[i].w);
    }
}

static void check_iso_week(int64_t z, int y, int m, int d, int wday1, int yday)
{
    struct tm tm = { 0 };
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_wday = wday1 % 7;
    tm.tm_yday = yday;
    char want[32], got[32];
    cr_assert_gt(strftime(want, sizeof(want), "%G %V", &tm), 0);
    int wy, w;
    civil_iso_week(z, &wy, &w);
    snprintf(got, sizeof(got), "%d %02d", wy, w);
    cr_assert_str_eq(got, want, "%d-%02d-%02d", y, m, d);
}

Test(civil, iso_weeks_match_strftime_1990_to_2040)
{
    each_day(1990, 2040, check_iso_week);
}

/* floor(a / b) for b > 0, written independently of civil.c. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return q * b > a ? q - 1 : q;
}

Test(civil, day_of_ms)
{
    struct {
        int64_t ms, off, day;
    } known[] = {
        { 0, 0, 0 },
        { 86399999, 0, 0 },
        { 86400000, 0, 1 },
        { -1, 0, -1 },
        { -86400000, 0, -1 },
        { -86400001, 0, -2 },
        { -999, 1, 0 }, /* -0.999 s floors to -1 s, then one second east: day 0 */
        { -1000, 1, 0 },
        { -1001, 1, -1 },
        { 0, -1, -1 },
        { 0, 86399, 0 },
        { 0, 86400, 1 },
        { 23 * 3600000, 3600, 1 },
        { 1700000000000, -5 * 3600, 19675 },
        { 1700000000000, 14 * 3600, 19676 },
        { -1700000000000, 3600, -19676 },
        { INT64_MIN, 0, -106751991168 },
        { INT64_MAX, 0, 106751991167 },
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        cr_assert_eq(civil_day_of_ms(known[i].ms, known[i].off), known[i].day,
                     "ms %lld offset %lld: %lld", (long long)known[i].ms, (long long)known[i].off,
                     (long long)civil_day_of_ms(known[i].ms, known[i].off));
    const int64_t offs[] = { -50400, -43200, -18000, -1, 0, 1, 3600, 19800, 45900, 50400 };
    for (int64_t ms = -5 * 86400000LL - 1234; ms < 5 * 86400000LL; ms += 997 * 61)
        for (size_t j = 0; j < sizeof(offs) / sizeof(offs[0]); j++)
            cr_assert_eq(civil_day_of_ms(ms, offs[j]),
                         floor_div(floor_div(ms, 1000) + offs[j], 86400), "ms %lld offset %lld",
                         (long long)ms, (long long)offs[j]);
}
