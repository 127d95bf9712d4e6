#include "civil.h"

#include <string.h>

/* After Howard Hinnant's days_from_civil and civil_from_days (public domain algorithms). */
int64_t civil_days(int y, int m, int d)
{
    int64_t yy = (int64_t)y - (m <= 2);
    int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void civil_date(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

bool civil_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int civil_month_days(int y, int m)
{
    static const int n[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return m == 2 && civil_leap(y) ? 29 : n[m - 1];
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int civil_parse(const char *s, int64_t *days)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return -1;
    int y = digits(s, 4), m = digits(s + 5, 2), d = digits(s + 8, 2);
    if (y < 1000 || m < 1 || m > 12 || d < 1 || d > civil_month_days(y, m))
        return -1;
    *days = civil_days(y, m, d);
    return 0;
}

void civil_format(int64_t z, char *out)
{
    int y, m, d;
    civil_date(z, &y, &m, &d);
    y = y < 0 ? 0 : y % 10000;
    const int v[] = { y / 1000, y / 100 % 10, y / 10 % 10, y % 10, -1,
                      m / 10,   m % 10,       -1,          d / 10, d % 10 };
    for (int i = 0; i < 10; i++)
        out[i] = v[i] < 0 ? '-' : (char)('0' + v[i]);
    out[10] = '\0';
}

int civil_weekday(int64_t z)
{
    /* 1970-01-01 was a Thursday (4). */
    int64_t w = (z + 3) % 7;
    return (int)(w < 0 ? w + 7 : w) + 1;
}

int64_t civil_week_start(int64_t z)
{
    return z - (civil_weekday(z) - 1);
}

void civil_iso_week(int64_t z, int *year, int *week)
{
    int64_t thursday = civil_week_start(z) + 3; /* the week belongs to its Thursday's year */
    int y, m, d;
    civil_date(thursday, &y, &m, &d);
    *year = y;
    *week = (int)((thursday - civil_days(y, 1, 1)) / 7) + 1;
}

/* Floor division by b > 0 that cannot overflow, unlike (a - (b - 1)) / b near INT64_MIN. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

int64_t civil_day_of_ms(int64_t ms, int64_t offset_s)
{
    return floor_div(floor_div(ms, 1000) + offset_s, 86400);
}
