/*
 * civil: calendar arithmetic on proleptic Gregorian dates, as day numbers (days since
 * 1970-01-01; negative before). Pure functions, no time zones (see tz.h for those).
 *
 * Dates in the API are "YYYY-MM-DD"; civil_parse accepts exactly that (years 1000..9999, a day
 * that exists in its month) and nothing else.
 */
#ifndef TALLY_CIVIL_H
#define TALLY_CIVIL_H

#include <stdbool.h>
#include <stdint.h>

#define CIVIL_DAY_LEN 11 /* "YYYY-MM-DD" and its NUL */

/* The day number of y-m-d (m 1..12, d 1..31; not checked). */
int64_t civil_days(int y, int m, int d);

/* The date of day number z. */
void civil_date(int64_t z, int *y, int *m, int *d);

/* Parses "YYYY-MM-DD" into a day number. 0, or -1 when s is anything else. */
int civil_parse(const char *s, int64_t *days);

/* Formats day number z as "YYYY-MM-DD" into out (CIVIL_DAY_LEN bytes). */
void civil_format(int64_t z, char *out);

/* 1 (Monday) .. 7 (Sunday). */
int civil_weekday(int64_t z);

/* The ISO 8601 week-year and week (1..53) of day z. */
void civil_iso_week(int64_t z, int *year, int *week);

/* The Monday of day z's ISO week. */
int64_t civil_week_start(int64_t z);

bool civil_leap(int y);

/* 28..31. */
int civil_month_days(int y, int m);

/* The day number of the floor of ms (Unix ms UTC) shifted by offset_s seconds. */
int64_t civil_day_of_ms(int64_t ms, int64_t offset_s);

#endif
