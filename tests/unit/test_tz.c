/*
 * tz: offsets of real zones against glibc's own reading of the same files (TZ, tzset and
 * localtime_r's tm_gmtoff: fine in a test process, never in tz.c), at instants spread over
 * 1970..2045 and at the second before, of and after every change 2020..2040 (Debian's files
 * list transitions up to 2037, so later years come from the footer rule); footer rules of
 * synthetic files against glibc's parser of the same POSIX TZ strings; a few offsets known
 * independently of both; and refusals: bad names, unknown zones, truncated and corrupted files,
 * a full cache.
 */
#define _GNU_SOURCE /* memmem, nftw */
#include "civil.h"
#include "tz.h"

#include <criterion/criterion.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HOUR      3600
#define OFF_MIN   (-89999) /* RFC 8536's range, which tz.c enforces */
#define OFF_MAX   93599
#define YEAR_S(y) (civil_days((y), 1, 1) * 86400)

static char tzdir[64];
static char sysdir[256] = "/usr/share/zoneinfo"; /* or $TZDIR as the test started */

/* Points TZDIR at a fresh private directory (removed by drop_tzdir). */
static void make_tzdir(void)
{
    const char *dir = getenv("TZDIR");
    if (dir && *dir)
        snprintf(sysdir, sizeof(sysdir), "%s", dir);
    strcpy(tzdir, "/tmp/tally-tz-XXXXXX");
    cr_assert_not_null(mkdtemp(tzdir));
    setenv("TZDIR", tzdir, 1);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void drop_tzdir(void)
{
    nftw(tzdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *name, const void *bytes, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tzdir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(bytes, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* Reads the system's file for zone name into buf; its length. */
static size_t read_system_zone(const char *name, uint8_t *buf, size_t cap)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", sysdir, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    size_t n = fread(buf, 1, cap, f);
    cr_assert(feof(f), "%s is larger than %zu bytes", path, cap);
    fclose(f);
    return n;
}

static void glibc_zone(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static int64_t glibc_offset(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    cr_assert_not_null(localtime_r(&tt, &tm));
    return tm.tm_gmtoff;
}

/* "YYYY-MM-DD hh:mm:ss" (UTC) for messages. */
static const char *utc_str(int64_t t, char *buf)
{
    int64_t day = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t sec = t - day * 86400;
    civil_format(day, buf);
    snprintf(buf + 10, 20, " %02d:%02d:%02d", (int)(sec / 3600), (int)(sec / 60 % 60),
             (int)(sec % 60));
    return buf;
}

static void expect_same(const tz_zone *z, const char *what, int64_t t)
{
    char when[32];
    int64_t got = tz_offset(z, t), want = glibc_offset(t);
    cr_assert_eq(got, want, "%s at %s UTC (%lld): tz_offset %lld, glibc %lld", what,
                 utc_str(t, when), (long long)t, (long long)got, (long long)want);
}

/*
 * Compares z with glibc's current TZ every ~3.3 hours (drifting through the times of day) over
 * [from_year, to_year), then every hour of [change_from, change_to), bisecting each change of
 * glibc's offset to the second and comparing the seconds before, of and after it. Returns the
 * number of changes found.
 */
static int compare_with_glibc(const tz_zone *z, const char *what, int from_year, int to_year,
                              int change_from, int change_to)
{
    for (int64_t t = YEAR_S(from_year); t < YEAR_S(to_year); t += 3 * HOUR + 1237)
        expect_same(z, what, t);
    int changes = 0;
    int64_t prev_t = YEAR_S(change_from), prev = glibc_offset(prev_t);
    for (int64_t t = prev_t + HOUR; t <= YEAR_S(change_to); t += HOUR) {
        int64_t off = glibc_offset(t);
        expect_same(z, what, t);
        if (off != prev) {
            int64_t lo = prev_t, hi = t; /* glibc: prev at lo, something else at hi */
            while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                if (glibc_offset(mid) == prev)
                    lo = mid;
                else
                    hi = mid;
            }
            for (int64_t s = hi - 1; s <= hi + 1; s++)
                expect_same(z, what, s);
            changes++;
        }
        prev = off;
        prev_t = t;
    }
    return changes;
}

/* A real zone against glibc; at least min_changes changes 2020..2040. */
static void compare_zone(const char *name, int min_changes)
{
    char err[256] = "";
    const tz_zone *z = tz_get(name, err, sizeof(err));
    cr_assert_not_null(z, "%s", err);
    glibc_zone(name);
    int changes = compare_with_glibc(z, name, 1970, 2046, 2020, 2041);
    cr_assert_geq(changes, min_changes, "%s: only %d changes in 2020..2040", name, changes);
}

Test(tz, new_york_matches_glibc)
{
    compare_zone("America/New_York", 42);
}

Test(tz, berlin_matches_glibc)
{
    compare_zone("Europe/Berlin", 42);
}

Test(tz, tokyo_matches_glibc)
{
    compare_zone("Asia/Tokyo", 0);
}

Test(tz, lord_howe_matches_glibc)
{
    compare_zone("Australia/Lord_Howe", 42); /* half-hour DST */
}

Test(tz, kolkata_matches_glibc)
{
    compare_zone("Asia/Kolkata", 0);
}

Test(tz, sao_paulo_matches_glibc)
{
    compare_zone("America/Sao_Paulo", 0); /* DST until 2019 */
}

Test(tz, chatham_matches_glibc)
{
    compare_zone("Pacific/Chatham", 42); /* +12:45/+13:45, switching at 2:45 and 3:45 */
}

Test(tz, utc_matches_glibc)
{
    compare_zone("UTC", 0);
}

Test(tz, dublin_matches_glibc)
{
    compare_zone("Europe/Dublin", 42); /* negative DST: winter is the "DST" type */
}

Test(tz, casablanca_matches_glibc)
{
    compare_zone("Africa/Casablanca", 10); /* listed transitions around Ramadan until 2087 */
}

/* Offsets and change instants known from the rules themselves, not from either reader. */
Test(tz, known_offsets)
{
    char err[256] = "";
    struct {
        const char *zone;
        int y, mo, d, h, mi;
        int64_t before, after; /* at the instant - 1 s and at it */
    } known[] = {
        { "America/New_York", 2024, 3, 10, 7, 0, -5 * HOUR, -4 * HOUR },
        { "America/New_York", 2024, 11, 3, 6, 0, -4 * HOUR, -5 * HOUR },
        { "America/New_York", 2044, 3, 13, 7, 0, -5 * HOUR, -4 * HOUR },
        { "Europe/Berlin", 2024, 3, 31, 1, 0, HOUR, 2 * HOUR },
        { "Europe/Berlin", 2042, 10, 26, 1, 0, 2 * HOUR, HOUR },
        { "Europe/Dublin", 2039, 3, 27, 1, 0, 0, HOUR },
        { "Europe/Dublin", 2039, 10, 30, 1, 0, HOUR, 0 },
        { "Australia/Lord_Howe", 2040, 10, 6, 15, 30, 37800, 39600 },
        { "Australia/Lord_Howe", 2040, 3, 31, 15, 0, 39600, 37800 },
        { "Pacific/Chatham", 2045, 9, 23, 14, 0, 45900, 49500 },
        { "Asia/Kolkata", 2045, 6, 1, 0, 0, 19800, 19800 },
        { "Asia/Tokyo", 1970, 1, 1, 0, 0, 9 * HOUR, 9 * HOUR },
        { "America/Sao_Paulo", 2019, 2, 17, 2, 0, -2 * HOUR, -3 * HOUR },
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        const tz_zone *z = tz_get(known[i].zone, err, sizeof(err));
        cr_assert_not_null(z, "%s", err);
        int64_t t = civil_days(known[i].y, known[i].mo, known[i].d) * 86400 + known[i].h * HOUR +
                    known[i].mi * 60;
        cr_assert_eq(tz_offset(z, t - 1), known[i].before, "%s %d-%02d-%02d, before", known[i].zone,
                     known[i].y, known[i].mo, known[i].d);
        cr_assert_eq(tz_offset(z, t), known[i].after, "%s %d-%02d-%02d, at", known[i].zone,
                     known[i].y, known[i].mo, known[i].d);
    }
}

/* Extreme instants stay in range (UBSan would catch an overflow), and the rule repeats. */
Test(tz, extreme_instants_and_the_400_year_cycle)
{
    const char *zones[] = {
        "America/New_York", "Australia/Lord_Howe", "Europe/Dublin", "Pacific/Chatham", "UTC",
        "Asia/Tokyo"
    };
    const int64_t cycle = 146097 * (int64_t)86400;
    char err[256] = "";
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        const tz_zone *z = tz_get(zones[i], err, sizeof(err));
        cr_assert_not_null(z, "%s", err);
        const int64_t edge[] = { INT64_MIN, INT64_MIN + 1, -cycle, INT64_MAX - 1, INT64_MAX };
        for (size_t j = 0; j < sizeof(edge) / sizeof(edge[0]); j++) {
            int64_t off = tz_offset(z, edge[j]);
            cr_assert(off >= OFF_MIN && off <= OFF_MAX, "%s at %lld: %lld", zones[i],
                      (long long)edge[j], (long long)off);
        }
        for (int64_t t = YEAR_S(2090); t < YEAR_S(2092); t += 5 * HOUR + 17) {
            cr_assert_eq(tz_offset(z, t), tz_offset(z, t + cycle), "%s", zones[i]);
            cr_assert_eq(tz_offset(z, t), tz_offset(z, t + 1000 * cycle), "%s", zones[i]);
        }
    }
    const tz_zone *ny = tz_get("America/New_York", err, sizeof(err));
    cr_assert_eq(tz_offset(ny, INT64_MIN), -17762, "before the first transition: LMT");
}

Test(tz, same_zone_same_pointer)
{
    char err[256] = "";
    const tz_zone *a = tz_get("Europe/Berlin", err, sizeof(err));
    cr_assert_not_null(a, "%s", err);
    cr_assert_eq(tz_get("Europe/Berlin", err, sizeof(err)), a);
    cr_assert_neq(tz_get("Asia/Tokyo", err, sizeof(err)), a);
}

static const char *const thread_zones[] = { "Europe/Berlin", "Asia/Tokyo", "America/New_York",
                                            "UTC", "Pacific/Chatham" };
#define NTHREAD_ZONES (sizeof(thread_zones) / sizeof(thread_zones[0]))

static void *get_zones(void *arg)
{
    const tz_zone **seen = arg;
    char err[256];
    for (int round = 0; round < 200; round++)
        for (size_t i = 0; i < NTHREAD_ZONES; i++) {
            const tz_zone *z = tz_get(thread_zones[i], err, sizeof(err));
            if (!z || (round > 0 && z != seen[i]))
                return (void *)1;
            seen[i] = z;
        }
    return NULL;
}

Test(tz, concurrent_first_use_loads_each_zone_once)
{
    enum { N = 8 };
    pthread_t th[N];
    const tz_zone *seen[N][NTHREAD_ZONES];
    for (int i = 0; i < N; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, get_zones, seen[i]), 0);
    for (int i = 0; i < N; i++) {
        void *rc;
        cr_assert_eq(pthread_join(th[i], &rc), 0);
        cr_assert_null(rc, "thread %d saw a failure or a second pointer", i);
    }
    for (int i = 1; i < N; i++)
        for (size_t j = 0; j < NTHREAD_ZONES; j++)
            cr_assert_eq(seen[i][j], seen[0][j], "%s", thread_zones[j]);
}

/* The names are refused by their spelling: files of those names exist in TZDIR. */
Test(tz, bad_names_refused, .init = make_tzdir, .fini = drop_tzdir)
{
    uint8_t utc[4096];
    size_t n = read_system_zone("UTC", utc, sizeof(utc));
    char long_name[300];
    memset(long_name, 'A', 256);
    long_name[256] = '\0';
    const char *bad[] = { "",       "..",       "../UTC", "/UTC",          "UTC/",
                          "a//UTC", "a/../UTC", "U.TC",   "U TC",          "UTC\n",
                          "UTC;x",  "U\\TC",    "U*",     "Z\xc3\xbcrich", long_name };
    const char *present[] = { "U.TC", "U TC", "U*", "U\\TC", "Z\xc3\xbcrich" };
    for (size_t i = 0; i < sizeof(present) / sizeof(present[0]); i++)
        write_file(present[i], utc, n);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        cr_assert_null(tz_get(bad[i], err, sizeof(err)), "accepted \"%s\"", bad[i]);
        cr_assert(strstr(err, "invalid time zone name"), "\"%s\": %s", bad[i], err);
    }
    /* 255 bytes is a valid name, just not a zone. */
    long_name[255] = '\0';
    char err[512] = "";
    cr_assert_null(tz_get(long_name, err, sizeof(err)));
    cr_assert(strstr(err, "unknown time zone"), "%s", err);
    cr_assert_null(tz_get(NULL, err, sizeof(err)));
    cr_assert_null(tz_get("..", NULL, 0), "no room for the reason is fine");
    /* The same bytes under a good name load. */
    write_file("Good_Name-1+2", utc, n);
    cr_assert_not_null(tz_get("Good_Name-1+2", err, sizeof(err)), "%s", err);
}

Test(tz, unknown_zone_named_in_error)
{
    char err[256] = "";
    cr_assert_null(tz_get("Mars/Olympus_Mons", err, sizeof(err)));
    cr_assert(strstr(err, "unknown time zone") && strstr(err, "\"Mars/Olympus_Mons\""), "%s", err);
    cr_assert_null(tz_get("Europe", err, sizeof(err)), "a directory is not a zone");
    cr_assert(strstr(err, "\"Europe\""), "%s", err);
    char tiny[8];
    cr_assert_null(tz_get("Mars/Olympus_Mons", tiny, sizeof(tiny)));
    cr_assert_eq(strlen(tiny), sizeof(tiny) - 1, "truncated, terminated");
}

/* Every proper prefix of real files is refused as truncated, naming the zone. */
Test(tz, truncated_files_refused, .init = make_tzdir, .fini = drop_tzdir)
{
    const char *zones[] = { "Europe/Berlin", "Asia/Tokyo" };
    static uint8_t buf[65536];
    for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        size_t n = read_system_zone(zones[i], buf, sizeof(buf));
        for (size_t len = 0; len < n; len++) {
            char err[512] = "";
            write_file("Cut", buf, len);
            cr_assert_null(tz_get("Cut", err, sizeof(err)), "%s cut to %zu bytes loaded", zones[i],
                           len);
            cr_assert(strstr(err, "\"Cut\"") && strstr(err, "truncated"), "%s cut to %zu: %s",
                      zones[i], len, err);
        }
        char name[16], err[512] = "";
        snprintf(name, sizeof(name), "Whole%zu", i);
        write_file(name, buf, n);
        const tz_zone *whole = tz_get(name, err, sizeof(err));
        cr_assert_not_null(whole, "%s", err);
        setenv("TZDIR", sysdir, 1); /* for glibc */
        glibc_zone(zones[i]);
        for (int64_t t = YEAR_S(1900); t < YEAR_S(2050); t += 86400 + 3 * HOUR)
            expect_same(whole, zones[i], t);
        setenv("TZDIR", tzdir, 1);
    }
}

/*
 * Flipping one byte at a time (every header byte, the footer, and a spread of the rest) never
 * reads out of bounds (ASan) and either is refused or gives offsets in range.
 */
Test(tz, corrupted_files_never_misread, .init = make_tzdir, .fini = drop_tzdir)
{
    static uint8_t orig[65536], buf[65536];
    size_t n = read_system_zone("America/New_York", orig, sizeof(orig));
    const uint8_t *second = memmem(orig + 4, n - 4, "TZif", 4);
    cr_assert_not_null(second);
    size_t h2 = (size_t)(second - orig);
    int loaded = 0, tried = 0;
    for (size_t pos = 0; pos < n; pos++) {
        /* The version 1 block is only skipped, so fewer of its bytes are worth a try. */
        bool header = pos < 44 || (pos >= h2 && pos < h2 + 44);
        if (!header && pos < n - 40 && pos % (pos < h2 ? 61 : 11) != 0)
            continue;
        for (int k = 0; k < 2; k++) {
            char name[32], err[512] = "";
            memcpy(buf, orig, n);
            buf[pos] = k == 0 ? buf[pos] ^ 0x80 : (uint8_t)(buf[pos] + 1);
            snprintf(name, sizeof(name), "M%zu_%d", pos, k);
            write_file(name, buf, n);
            tried++;
            const tz_zone *z = tz_get(name, err, sizeof(err));
            if (!z) {
                cr_assert(strstr(err, name) && !strstr(err, "too many"), "%s", err);
                continue;
            }
            loaded++;
            for (int64_t t = -(INT64_C(1) << 40); t < INT64_C(1) << 40; t += INT64_C(1) << 33) {
                int64_t off = tz_offset(z, t);
                cr_assert(off >= OFF_MIN && off <= OFF_MAX, "%s: %lld", name, (long long)off);
            }
        }
    }
    cr_assert_lt(loaded, tried, "some corruption must be noticed");
    cr_log_info("corrupted copies: %d loaded (harmless bytes), %d refused", loaded, tried - loaded);
}

Test(tz, cache_is_bounded, .init = make_tzdir, .fini = drop_tzdir)
{
    uint8_t utc[4096];
    size_t n = read_system_zone("UTC", utc, sizeof(utc));
    char name[16], err[256] = "";
    const tz_zone *first = NULL;
    for (int i = 0; i <= 512; i++) {
        snprintf(name, sizeof(name), "Z%d", i);
        write_file(name, utc, n);
        const tz_zone *z = tz_get(name, err, sizeof(err));
        if (i < 512) {
            cr_assert_not_null(z, "%s: %s", name, err);
            first = first ? first : z;
        } else {
            cr_assert_null(z, "zone 513 loaded");
            cr_assert(strstr(err, "too many") && strstr(err, name), "%s", err);
        }
    }
    cr_assert_eq(tz_get("Z0", err, sizeof(err)), first, "cached zones still served");
}

/* A TZif file to write: one data block's contents and a footer (versions 2 and 3). */
typedef struct {
    char version; /* 0, '2', '3' */
    int ntrans;
    const int64_t *times;
    const uint8_t *idx;
    int ntypes;
    const int32_t *utoff;
    const uint8_t *isdst;
    int nleap;
    const char *footer;
} tzif_spec;

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static uint8_t *put_block(uint8_t *p, const tzif_spec *s, int tsize)
{
    memcpy(p, "TZif", 4);
    p[4] = (uint8_t)s->version;
    memset(p + 5, 0, 15);
    p += 20;
    const uint32_t counts[] = { 0, 0, (uint32_t)s->nleap, (uint32_t)s->ntrans, (uint32_t)s->ntypes,
                                4 };
    for (int i = 0; i < 6; i++)
        p = put32(p, counts[i]);
    for (int i = 0; i < s->ntrans; i++) {
        if (tsize == 8)
            p = put32(p, (uint32_t)((uint64_t)s->times[i] >> 32));
        p = put32(p, (uint32_t)s->times[i]);
    }
    for (int i = 0; i < s->ntrans; i++)
        *p++ = s->idx[i];
    for (int i = 0; i < s->ntypes; i++) {
        p = put32(p, (uint32_t)s->utoff[i]);
        *p++ = s->isdst[i];
        *p++ = 0;
    }
    memcpy(p, "ABC", 4);
    p += 4;
    for (int i = 0; i < s->nleap; i++) {
        memset(p, 0, (size_t)tsize);
        p = put32(p + tsize, (uint32_t)(i + 1));
    }
    return p;
}

static void write_tzif(const char *name, const tzif_spec *s)
{
    static uint8_t buf[65536];
    uint8_t *p = put_block(buf, s, 4);
    if (s->version) {
        p = put_block(p, s, 8);
        p += sprintf((char *)p, "\n%s\n", s->footer);
    }
    write_file(name, buf, (size_t)(p - buf));
}

/* A version 3 file with no transitions and a footer rule: the rule holds at all times. */
static const tz_zone *rule_only(const char *name, const char *footer, int32_t std)
{
    const uint8_t dst0 = 0;
    tzif_spec s = { '3', 0, NULL, NULL, 1, &std, &dst0, 0, footer };
    write_tzif(name, &s);
    char err[512] = "";
    const tz_zone *z = tz_get(name, err, sizeof(err));
    cr_assert_not_null(z, "%s: %s", footer, err);
    return z;
}

/*
 * Footer rules in every form (Mm.w.d, Jn, n, times negative or past 24 h, quoted names,
 * seconds in offsets, negative DST) against glibc's parser of the same string. glibc decides
 * by the UTC year alone, so none of these rules switches near New Year.
 */
Test(tz, footer_rules_match_glibc, .init = make_tzdir, .fini = drop_tzdir)
{
    struct {
        const char *rule;
        int32_t std;
    } rules[] = {
        { "EST5EDT,M3.2.0,M11.1.0", -5 * HOUR },
        { "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", -2 * HOUR },
        { "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", 37800 },
        { "IST-1GMT0,M10.5.0,M3.5.0/1", HOUR },
        { "<+1245>-12:45<+1345>,M9.5.0/2:45,M4.1.0/3:45", 45900 },
        { "AAA3BBB,J60/1,J300/23:59:59", -3 * HOUR },
        { "CCC-5DDD-6:30,59/3:30,300/26", 5 * HOUR },
        { "<-03>3<-02>,M3.2.0/-22,M11.1.0/-23:30", -3 * HOUR },
        { "EEE+4FFF+3:15:30,M4.5.6/167,M9.1.1/-167", -4 * HOUR },
        { "GGG-2HHH,M2.1.3/+0:30,M12.2.4", 2 * HOUR },
        { "JST-9", 9 * HOUR },
        { "<+0545>-5:45", 20700 },
    };
    for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        char name[16];
        snprintf(name, sizeof(name), "R%zu", i);
        const tz_zone *z = rule_only(name, rules[i].rule, rules[i].std);
        glibc_zone(rules[i].rule);
        int changes = compare_with_glibc(z, rules[i].rule, 1995, 2060, 2020, 2041);
        /* Proof that glibc parsed the string rather than falling back to UTC. */
        if (strchr(rules[i].rule, ','))
            cr_assert_eq(changes, 42, "%s: %d changes", rules[i].rule, changes);
        else
            cr_assert_eq(glibc_offset(0), rules[i].std, "%s", rules[i].rule);
    }
}

/* RFC 8536's example of DST all year: an end and the next start at the same instant. */
Test(tz, footer_dst_all_year, .init = make_tzdir, .fini = drop_tzdir)
{
    const tz_zone *z = rule_only("AllYear", "EST5EDT4,0/0,J365/25", -5 * HOUR);
    for (int y = 1999; y <= 2031; y++)
        for (int64_t t = YEAR_S(y) - 6 * HOUR; t < YEAR_S(y) + 6 * HOUR; t += 59)
            cr_assert_eq(tz_offset(z, t), -4 * HOUR, "%lld", (long long)t);
    for (int64_t t = YEAR_S(2000); t < YEAR_S(2030); t += 4 * HOUR + 7)
        cr_assert_eq(tz_offset(z, t), -4 * HOUR, "%lld", (long long)t);
}

Test(tz, version_1_and_transition_edges, .init = make_tzdir, .fini = drop_tzdir)
{
    const int64_t times[] = { 1000000, 2000000 };
    const uint8_t idx[] = { 1, 2 };
    const int32_t utoff[] = { 7200, 3600, -1800 };
    const uint8_t isdst[] = { 1, 0, 0 }; /* type 0 is DST: still the one before the first */
    char err[512] = "";

    tzif_spec v1 = { 0, 2, times, idx, 3, utoff, isdst, 0, NULL };
    write_tzif("V1", &v1);
    tzif_spec v2 = { '2', 2, times, idx, 3, utoff, isdst, 0, "" };
    write_tzif("V2", &v2);
    tzif_spec v3 = { '3', 2, times, idx, 3, utoff, isdst, 0, "<+05>-5" };
    write_tzif("V3", &v3);
    const tz_zone *z1 = tz_get("V1", err, sizeof(err));
    cr_assert_not_null(z1, "%s", err);
    const tz_zone *z2 = tz_get("V2", err, sizeof(err));
    cr_assert_not_null(z2, "%s", err);
    const tz_zone *z3 = tz_get("V3", err, sizeof(err));
    cr_assert_not_null(z3, "%s", err);
    const tz_zone *zs[] = { z1, z2, z3 };
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(tz_offset(zs[i], INT64_MIN), 7200);
        cr_assert_eq(tz_offset(zs[i], 999999), 7200);
        cr_assert_eq(tz_offset(zs[i], 1000000), 3600);
        cr_assert_eq(tz_offset(zs[i], 1999999), 3600);
        cr_assert_eq(tz_offset(zs[i], 2000000), -1800);
    }
    /* Without a footer (or with an empty one) the last type holds for ever. */
    cr_assert_eq(tz_offset(z1, INT64_MAX), -1800);
    cr_assert_eq(tz_offset(z2, INT64_MAX), -1800);
    cr_assert_eq(tz_offset(z3, 2000001), 5 * HOUR);
    cr_assert_eq(tz_offset(z3, INT64_MAX), 5 * HOUR);

    /* No transitions and no rule: type 0 at all times. */
    tzif_spec fixed = { '2', 0, NULL, NULL, 1, &utoff[1], &isdst[1], 0, "" };
    write_tzif("Fixed", &fixed);
    const tz_zone *zf = tz_get("Fixed", err, sizeof(err));
    cr_assert_not_null(zf, "%s", err);
    cr_assert_eq(tz_offset(zf, INT64_MIN), 3600);
    cr_assert_eq(tz_offset(zf, 0), 3600);
    cr_assert_eq(tz_offset(zf, INT64_MAX), 3600);
}

Test(tz, invalid_files_refused, .init = make_tzdir, .fini = drop_tzdir)
{
    const int64_t times[] = { 1000000, 2000000 };
    const int64_t unsorted[] = { 2000000, 1000000 };
    const uint8_t idx[] = { 0, 1 };
    const uint8_t bad_idx[] = { 0, 2 };
    const int32_t utoff[] = { 3600, 7200 };
    const int32_t huge[] = { 3600, 26 * HOUR };
    const uint8_t isdst[] = { 0, 1 };
    const uint8_t bad_dst[] = { 0, 2 };
    struct {
        tzif_spec spec;
        const char *why;
    } bad[] = {
        { { '2', 2, unsorted, idx, 2, utoff, isdst, 0, "" }, "transitions" },
        { { '2', 2, times, bad_idx, 2, utoff, isdst, 0, "" }, "transitions" },
        { { '2', 2, times, idx, 2, huge, isdst, 0, "" }, "time type" },
        { { '2', 2, times, idx, 2, utoff, bad_dst, 0, "" }, "time type" },
        { { '2', 2, times, idx, 0, utoff, isdst, 0, "" }, "counts" },
        { { '2', 2, times, idx, 2, utoff, isdst, 1, "" }, "leap" },
        { { '5', 2, times, idx, 2, utoff, isdst, 0, "" }, "version" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST5EDT" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST5EDT,M13.1.0,M11.1.0" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST5EDT,M3.6.0,M11.1.0" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST5EDT,M3.2.7,M11.1.0" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST5EDT,M3.2.0/168,M11.1.0" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST5EDT,J0,J365" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST5EDT,0,366" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST5EDT,M3.2.0,M11.1.0x" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST25" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "<AB>5" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "<ABC5" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "ES5" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST5:60" }, "footer" },
        { { '2', 2, times, idx, 2, utoff, isdst, 0, "EST+" }, "footer" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char name[16], err[512] = "";
        snprintf(name, sizeof(name), "B%zu", i);
        write_tzif(name, &bad[i].spec);
        cr_assert_null(tz_get(name, err, sizeof(err)), "case %zu loaded", i);
        cr_assert(strstr(err, bad[i].why) && strstr(err, name), "case %zu: %s", i, err);
    }
    char err[512] = "";
    write_file("Text", "# not a zone\n", 13);
    cr_assert_null(tz_get("Text", err, sizeof(err)));
    cr_assert(strstr(err, "not a TZif file"), "%s", err);
    write_file("Empty", "", 0);
    cr_assert_null(tz_get("Empty", err, sizeof(err)));
}
