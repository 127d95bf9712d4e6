/*
 * tz: a reader for compiled zoneinfo files (TZif, RFC 8536 and its successor RFC 9636) and an
 * evaluator for the POSIX TZ rule in their footer.
 *
 * A loaded zone is immutable: its transitions (ascending Unix seconds, each with the index of
 * the local time type that starts there), its types' offsets and, for version 2+ files with a
 * non-empty footer, the rule that holds after the last transition. Every count and size in a
 * file is checked against the file's length before it is used, and every offset a zone can
 * return lies in [TZ_UTOFF_MIN, TZ_UTOFF_MAX].
 *
 * Zones live in a process-wide table keyed by file path, filled under a mutex and never freed,
 * so a pointer from tz_get() stays valid for the life of the process and tz_offset() needs no
 * lock.
 */
#include "tz.h"
#include "civil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TZ_DEFAULT_DIR "/usr/share/zoneinfo"
#define TZ_NAME_MAX    255
#define TZ_FILE_MAX    (256 * 1024) /* real zone files are under 4 KiB */
#define TZ_CACHE_MAX   512
#define TZ_CACHE_SLOTS 1024 /* open addressing, at most half full */
#define TZ_HEADER_LEN  44
/* RFC 8536's interoperable range of offsets (about -25 h to +26 h). */
#define TZ_UTOFF_MIN (-89999)
#define TZ_UTOFF_MAX 93599
/* 400 Gregorian years, a whole number of weeks: a POSIX rule repeats with this period. */
#define TZ_CYCLE_S (146097 * (int64_t)86400)

/* When a POSIX rule switches, as a day of the year and a local time of that day. */
typedef struct {
    char kind;    /* 'J': Julian day 1..365, Feb 29 never counted; 'N': day 0..365; 'M': Mm.w.d */
    int day;      /* J and N: the day; M: the weekday, 0 (Sunday) .. 6 */
    int month;    /* M: 1..12 */
    int week;     /* M: 1..5, 5 meaning the last */
    int32_t secs; /* local time of day, -167 h .. +167 h (RFC 8536 version 3) */
} tz_when;

/* A footer rule: one standard offset, and possibly a DST offset with its two switches. */
typedef struct {
    int32_t std_off, dst_off; /* seconds east */
    bool has_dst;
    tz_when start, end; /* start in standard local time, end in DST local time */
} tz_rule;

struct tz_zone {
    const char *path;     /* the file read: the cache key */
    const int64_t *trans; /* ntrans ascending instants */
    const uint8_t *idx;   /* the type starting at each instant, a valid index into utoff */
    uint32_t ntrans;
    bool has_rule; /* a footer rule holds after the last transition */
    tz_rule rule;
    int32_t utoff[256]; /* each local time type's offset, seconds east */
};

/* The six counts of a TZif header, in file order. */
typedef struct {
    char version;
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
} tz_header;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static tz_zone *cache[TZ_CACHE_SLOTS];
static int cache_count;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
    uint64_t u = (uint64_t)be32(p) << 32 | be32(p + 4);
    return u <= INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}

static int32_t be32s(const uint8_t *p)
{
    uint32_t u = be32(p);
    return u <= INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

/* Reads the header at b[off..]; false when fewer than 44 bytes remain or it is not TZif. */
static bool read_header(const uint8_t *b, size_t len, size_t off, tz_header *h)
{
    if (len - off < TZ_HEADER_LEN || memcmp(b + off, "TZif", 4) != 0)
        return false;
    const uint8_t *p = b + off;
    h->version = (char)p[4];
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    return true;
}

/* The size of the data block after header h, with tsize-byte times (4 in v1, 8 in v2+). */
static uint64_t block_size(const tz_header *h, unsigned tsize)
{
    return (uint64_t)h->timecnt * (tsize + 1) + (uint64_t)h->typecnt * 6 + h->charcnt +
           (uint64_t)h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

/* A cursor over the footer's TZ string. */
typedef struct {
    const char *p, *e;
} tz_cursor;

static bool at(const tz_cursor *c, char ch)
{
    return c->p < c->e && *c->p == ch;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

/* A decimal number in [lo, hi]. */
static bool parse_num(tz_cursor *c, int lo, int hi, int *out)
{
    int v = 0;
    const char *start = c->p;
    while (c->p < c->e && is_digit(*c->p)) {
        v = v * 10 + (*c->p++ - '0');
        if (v > hi)
            return false;
    }
    if (c->p == start || v < lo)
        return false;
    *out = v;
    return true;
}

/* A zone abbreviation: three or more letters, or <...> around three or more of [A-Za-z0-9+-]. */
static bool parse_abbr(tz_cursor *c)
{
    const char *start;
    if (at(c, '<')) {
        start = ++c->p;
        while (c->p < c->e && (is_alpha(*c->p) || is_digit(*c->p) || *c->p == '+' || *c->p == '-'))
            c->p++;
        if (!at(c, '>') || c->p - start < 3)
            return false;
        c->p++;
        return true;
    }
    start = c->p;
    while (c->p < c->e && is_alpha(*c->p))
        c->p++;
    return c->p - start >= 3;
}

/* [+|-]hh[:mm[:ss]] with hh <= max_h, as signed seconds. */
static bool parse_hms(tz_cursor *c, int max_h, int32_t *out)
{
    int sign = 1, h, m = 0, s = 0;
    if (at(c, '+') || at(c, '-'))
        sign = *c->p++ == '-' ? -1 : 1;
    if (!parse_num(c, 0, max_h, &h))
        return false;
    if (at(c, ':')) {
        c->p++;
        if (!parse_num(c, 0, 59, &m))
            return false;
        if (at(c, ':')) {
            c->p++;
            if (!parse_num(c, 0, 59, &s))
                return false;
        }
    }
    *out = sign * (h * 3600 + m * 60 + s);
    return true;
}

/* A POSIX offset (hours west, 0..24) as seconds east within the supported range. */
static bool parse_offset(tz_cursor *c, int32_t *east)
{
    int32_t west;
    if (!parse_hms(c, 24, &west) || -west < TZ_UTOFF_MIN || -west > TZ_UTOFF_MAX)
        return false;
    *east = -west;
    return true;
}

/* Jn, n or Mm.w.d, then an optional /time (02:00 by default). */
static bool parse_when(tz_cursor *c, tz_when *w)
{
    w->month = w->week = 0;
    if (at(c, 'J')) {
        c->p++;
        w->kind = 'J';
        if (!parse_num(c, 1, 365, &w->day))
            return false;
    } else if (at(c, 'M')) {
        c->p++;
        w->kind = 'M';
        if (!parse_num(c, 1, 12, &w->month) || !at(c, '.'))
            return false;
        c->p++;
        if (!parse_num(c, 1, 5, &w->week) || !at(c, '.'))
            return false;
        c->p++;
        if (!parse_num(c, 0, 6, &w->day))
            return false;
    } else {
        w->kind = 'N';
        if (!parse_num(c, 0, 365, &w->day))
            return false;
    }
    w->secs = 2 * 3600;
    if (at(c, '/')) {
        c->p++;
        return parse_hms(c, 167, &w->secs);
    }
    return true;
}

/*
 * Parses a footer TZ string "std offset [dst [offset] ,start[/time],end[/time]]". A DST part
 * without its rule is refused rather than given an implementation-defined default.
 */
static bool parse_rule(const char *s, size_t n, tz_rule *r)
{
    tz_cursor c = { s, s + n };
    memset(r, 0, sizeof(*r));
    if (!parse_abbr(&c) || !parse_offset(&c, &r->std_off))
        return false;
    if (c.p == c.e)
        return true;
    if (!parse_abbr(&c))
        return false;
    r->has_dst = true;
    r->dst_off = r->std_off + 3600;
    if (!at(&c, ',') && !parse_offset(&c, &r->dst_off))
        return false;
    if (!at(&c, ','))
        return false;
    c.p++;
    if (!parse_when(&c, &r->start) || !at(&c, ','))
        return false;
    c.p++;
    return parse_when(&c, &r->end) && c.p == c.e;
}

/* The instant w names in year y, as seconds of local time counted as if it were UTC. */
static int64_t when_local(const tz_when *w, int y)
{
    int64_t day;
    if (w->kind == 'J') {
        day = civil_days(y, 1, 1) + w->day - 1 + (civil_leap(y) && w->day >= 60);
    } else if (w->kind == 'N') {
        day = civil_days(y, 1, 1) + w->day;
    } else {
        int64_t first = civil_days(y, w->month, 1);
        int sunday0 = civil_weekday(first) % 7;
        day = first + (w->day - sunday0 + 7) % 7 + 7 * (w->week - 1);
        while (day >= first + civil_month_days(y, w->month))
            day -= 7;
    }
    return day * 86400 + w->secs;
}

/*
 * The offset r gives at t. The rule is evaluated on t moved into 1970..2369 (the calendar
 * repeats every 400 years), so no year overflows. The switch in effect is the latest one at or
 * before t among the years around t's, which also covers rules whose switch times run past
 * the end of a year or DST all year round (an end and a start at the same instant: the start
 * wins).
 */
static int32_t rule_offset(const tz_rule *r, int64_t t)
{
    if (!r->has_dst)
        return r->std_off;
    int64_t rem = t % TZ_CYCLE_S;
    if (rem < 0)
        rem += TZ_CYCLE_S;
    int y, m, d;
    civil_date(rem / 86400, &y, &m, &d);
    int64_t best = INT64_MIN;
    bool dst = false;
    for (int yy = y - 2; yy <= y + 1; yy++) {
        int64_t end = when_local(&r->end, yy) - r->dst_off;
        int64_t start = when_local(&r->start, yy) - r->std_off;
        if (end <= rem && end > best) {
            best = end;
            dst = false;
        }
        if (start <= rem && start >= best) {
            best = start;
            dst = true;
        }
    }
    return dst ? r->dst_off : r->std_off;
}

int64_t tz_offset(const tz_zone *z, int64_t utc_s)
{
    uint32_t n = z->ntrans;
    if (n == 0)
        return z->has_rule ? rule_offset(&z->rule, utc_s) : z->utoff[0];
    if (utc_s < z->trans[0])
        return z->utoff[0];
    if (utc_s > z->trans[n - 1] && z->has_rule)
        return rule_offset(&z->rule, utc_s);
    uint32_t lo = 0, hi = n; /* trans[lo] <= utc_s, and hi == n or trans[hi] > utc_s */
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (z->trans[mid] <= utc_s)
            lo = mid;
        else
            hi = mid;
    }
    return z->utoff[z->idx[lo]];
}

/*
 * Decodes the TZif bytes b[0..len) read from path into a new zone (caller frees with free()),
 * or NULL with the reason in *why. Files with leap-second records (the "right/" zones, which
 * count time in TAI-like seconds rather than Unix seconds) are refused.
 */
static tz_zone *parse_tzif(const uint8_t *b, size_t len, const char *path, const char **why)
{
    tz_header h;
    if (memcmp(b, "TZif", len < 4 ? len : 4) != 0) {
        *why = "not a TZif file";
        return NULL;
    }
    *why = "truncated TZif file";
    if (!read_header(b, len, 0, &h))
        return NULL;
    /* Version 4 (RFC 9636) differs from 3 only in leap-second records, which are refused. */
    if (h.version != 0 && h.version != '2' && h.version != '3' && h.version != '4') {
        *why = "unsupported TZif version";
        return NULL;
    }
    size_t off = TZ_HEADER_LEN;
    unsigned tsize = 4;
    if (h.version != 0) {
        uint64_t v1 = block_size(&h, 4);
        char version = h.version;
        if (v1 > len - off || len - off - v1 < TZ_HEADER_LEN)
            return NULL;
        off += (size_t)v1;
        if (!read_header(b, len, off, &h) || h.version != version) {
            *why = "invalid second TZif header";
            return NULL;
        }
        off += TZ_HEADER_LEN;
        tsize = 8;
    }
    uint64_t need = block_size(&h, tsize);
    if (need > len - off)
        return NULL;
    *why = "invalid TZif counts";
    if (h.typecnt == 0 || h.typecnt > 256 || h.charcnt == 0 ||
        (h.isstdcnt != 0 && h.isstdcnt != h.typecnt) || (h.isutcnt != 0 && h.isutcnt != h.typecnt))
        return NULL;
    if (h.leapcnt != 0) {
        *why = "leap-second zones are not supported";
        return NULL;
    }
    const uint8_t *times = b + off;
    const uint8_t *idx = times + (size_t)h.timecnt * tsize;
    const uint8_t *types = idx + h.timecnt;

    const char *footer = NULL;
    size_t footer_len = 0;
    if (h.version != 0) {
        size_t pos = off + (size_t)need;
        const uint8_t *nl = pos < len ? memchr(b + pos + 1, '\n', len - pos - 1) : NULL;
        if (!nl || b[pos] != '\n') {
            *why = pos < len && b[pos] != '\n' ? "invalid TZif footer" : "truncated TZif file";
            return NULL;
        }
        footer = (const char *)b + pos + 1;
        footer_len = (size_t)(nl - (b + pos + 1));
    }

    size_t path_len = strlen(path);
    tz_zone *z = malloc(sizeof(*z) + (size_t)h.timecnt * 9 + path_len + 1);
    if (!z) {
        *why = "out of memory";
        return NULL;
    }
    int64_t *trans = (int64_t *)(z + 1);
    uint8_t *tidx = (uint8_t *)(trans + h.timecnt);
    char *zpath = (char *)(tidx + h.timecnt);
    memcpy(zpath, path, path_len + 1);
    z->path = zpath;
    z->trans = trans;
    z->idx = tidx;
    z->ntrans = h.timecnt;
    z->has_rule = false;

    for (uint32_t i = 0; i < h.typecnt; i++) {
        const uint8_t *t = types + 6 * (size_t)i;
        int32_t utoff = be32s(t);
        if (utoff < TZ_UTOFF_MIN || utoff > TZ_UTOFF_MAX || t[4] > 1 || t[5] >= h.charcnt) {
            *why = "invalid TZif time type";
            goto out_free_zone;
        }
        z->utoff[i] = utoff;
    }
    for (uint32_t i = 0; i < h.timecnt; i++) {
        trans[i] = tsize == 8 ? be64(times + 8 * (size_t)i) : be32s(times + 4 * (size_t)i);
        tidx[i] = idx[i];
        if ((i > 0 && trans[i] <= trans[i - 1]) || tidx[i] >= h.typecnt) {
            *why = "invalid TZif transitions";
            goto out_free_zone;
        }
    }
    if (footer_len > 0) {
        if (!parse_rule(footer, footer_len, &z->rule)) {
            *why = "invalid TZif footer rule";
            goto out_free_zone;
        }
        z->has_rule = true;
    }
    return z;

out_free_zone:
    free(z);
    return NULL;
}

/* Names are relative paths of [A-Za-z0-9_+-] components: no "..", no empty component. */
static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > TZ_NAME_MAX || name[0] == '/' || name[n - 1] == '/' || strstr(name, "..") ||
        strstr(name, "//"))
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!is_alpha(ch) && !is_digit(ch) && ch != '/' && ch != '_' && ch != '+' && ch != '-')
            return false;
    }
    return true;
}

/* Copies up to 64 bytes of name for an error message, other than printable ASCII as '?'. */
static void printable(const char *name, char out[68])
{
    size_t i = 0;
    for (; name[i] && i < 64; i++)
        out[i] = name[i] >= 0x20 && name[i] < 0x7f && name[i] != '"' ? name[i] : '?';
    if (name[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

tz_zone *tz_parse(const uint8_t *b, size_t len, const char **why)
{
    return parse_tzif(b, len, "(bytes)", why);
}

/* Reads and decodes the zone file at path; NULL with the reason in err. */
static tz_zone *load(const char *name, const char *path, char *err, size_t errlen)
{
    tz_zone *z = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            set_err(err, errlen, "unknown time zone \"%s\" (no %s)", name, path);
        else
            set_err(err, errlen, "time zone \"%s\": cannot open %s: %s", name, path,
                    strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > TZ_FILE_MAX) {
        set_err(err, errlen, "unknown time zone \"%s\" (%s is not a zone file)", name, path);
        goto out_close;
    }
    size_t cap = (size_t)st.st_size, len = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) {
        set_err(err, errlen, "time zone \"%s\": out of memory", name);
        goto out_close;
    }
    while (len < cap) {
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_err(err, errlen, "time zone \"%s\": cannot read %s: %s", name, path,
                    strerror(errno));
            goto out_free_buf;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    const char *why;
    z = parse_tzif(buf, len, path, &why);
    if (!z)
        set_err(err, errlen, "time zone \"%s\": %s: %s", name, path, why);
out_free_buf:
    free(buf);
out_close:
    close(fd);
    return z;
}

/* FNV-1a. */
static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

const tz_zone *tz_get(const char *name, char *err, size_t errlen)
{
    if (!name || !name_ok(name)) {
        char shown[68];
        printable(name ? name : "", shown);
        set_err(err, errlen, "invalid time zone name \"%s\"", shown);
        return NULL;
    }
    const char *dir = getenv("TZDIR");
    if (!dir || !*dir)
        dir = TZ_DEFAULT_DIR;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        set_err(err, errlen, "time zone \"%s\": path too long", name);
        return NULL;
    }

    pthread_mutex_lock(&cache_lock);
    uint32_t slot = hash(path) % TZ_CACHE_SLOTS;
    while (cache[slot] && strcmp(cache[slot]->path, path) != 0)
        slot = (slot + 1) % TZ_CACHE_SLOTS;
    tz_zone *z = cache[slot];
    if (!z) {
        if (cache_count >= TZ_CACHE_MAX) {
            set_err(err, errlen, "time zone \"%s\": too many zones loaded (limit %d)", name,
                    TZ_CACHE_MAX);
        } else {
            z = load(name, path, err, errlen);
            if (z) {
                cache[slot] = z;
                cache_count++;
            }
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return z;
}
