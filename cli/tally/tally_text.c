/* tally_text: strings, widths and human formats for the tally client (see tally_text.h). */
#include "tally_text.h"

#include "civil.h"
#include "utf8.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tx_init(tx_buf *b, size_t limit)
{
    memset(b, 0, sizeof(*b));
    b->limit = limit;
}

void tx_release(tx_buf *b)
{
    free(b->s);
    tx_init(b, b->limit);
}

char *tx_detach(tx_buf *b)
{
    char *s = b->s ? b->s : strdup("");
    tx_init(b, b->limit);
    return s;
}

void tx_reset(tx_buf *b)
{
    b->len = 0;
    b->full = false;
    if (b->s)
        b->s[0] = '\0';
}

/* Makes room for n more bytes and the NUL; false (and full) when that breaks the limit. */
static bool grow(tx_buf *b, size_t n)
{
    size_t cap;
    char *s;
    if (b->full || n > b->limit || b->len > b->limit - n) {
        b->full = true;
        return false;
    }
    if (b->s && b->len + n < b->cap)
        return true;
    cap = b->cap ? b->cap : 256;
    while (cap <= b->len + n)
        cap *= 2;
    s = realloc(b->s, cap);
    if (!s) {
        b->full = true;
        return false;
    }
    b->s = s;
    b->cap = cap;
    return true;
}

void tx_putn(tx_buf *b, const char *s, size_t n)
{
    if (!grow(b, n))
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void tx_puts(tx_buf *b, const char *s)
{
    tx_putn(b, s, strlen(s));
}

void tx_putc(tx_buf *b, char c)
{
    tx_putn(b, &c, 1);
}

void tx_vprintf(tx_buf *b, const char *fmt, va_list ap)
{
    va_list copy;
    int n;
    va_copy(copy, ap);
    n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0 || !grow(b, (size_t)n))
        return;
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void tx_printf(tx_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tx_vprintf(b, fmt, ap);
    va_end(ap);
}

void tx_repeat(tx_buf *b, const char *s, int n)
{
    for (int i = 0; i < n; i++)
        tx_puts(b, s);
}

/* ---------------------------------------------------------------------------------------------
 * Display widths */

typedef struct cp_range {
    uint32_t lo, hi;
} cp_range;

/* Combining marks and invisible format characters: no column of their own. */
static const cp_range zero_width[] = {
    { 0x0300, 0x036F }, { 0x0483, 0x0489 },   { 0x0591, 0x05BD }, { 0x0610, 0x061A },
    { 0x064B, 0x065F }, { 0x0E31, 0x0E31 },   { 0x0E34, 0x0E3A }, { 0x0E47, 0x0E4E },
    { 0x1AB0, 0x1AFF }, { 0x1DC0, 0x1DFF },   { 0x200B, 0x200F }, { 0x202A, 0x202E },
    { 0x2060, 0x2064 }, { 0x20D0, 0x20FF },   { 0xFE00, 0xFE0F }, { 0xFE20, 0xFE2F },
    { 0xFEFF, 0xFEFF }, { 0xE0100, 0xE01EF },
};

/* East Asian wide and fullwidth characters and emoji: two columns. */
static const cp_range wide[] = {
    { 0x1100, 0x115F },   { 0x231A, 0x231B },   { 0x2329, 0x232A },   { 0x23E9, 0x23EC },
    { 0x2E80, 0x303E },   { 0x3041, 0x33FF },   { 0x3400, 0x4DBF },   { 0x4E00, 0x9FFF },
    { 0xA000, 0xA4CF },   { 0xA960, 0xA97F },   { 0xAC00, 0xD7A3 },   { 0xF900, 0xFAFF },
    { 0xFE10, 0xFE19 },   { 0xFE30, 0xFE6F },   { 0xFF00, 0xFF60 },   { 0xFFE0, 0xFFE6 },
    { 0x1F300, 0x1F64F }, { 0x1F900, 0x1F9FF }, { 0x20000, 0x2FFFD }, { 0x30000, 0x3FFFD },
};

static bool in_ranges(uint32_t cp, const cp_range *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i].lo && cp <= r[i].hi)
            return true;
    return false;
}

/* The code point of a valid sequence of len bytes. */
static uint32_t decode(const unsigned char *s, size_t len)
{
    static const unsigned char lead_mask[5] = { 0, 0x7F, 0x1F, 0x0F, 0x07 };
    uint32_t cp = s[0] & lead_mask[len];
    for (size_t i = 1; i < len; i++)
        cp = (cp << 6) | (s[i] & 0x3F);
    return cp;
}

/*
 * The next printable unit of s[0..avail): its byte length in *len, its columns as the result,
 * and whether it must be shown as '?' in *bad (a control character or invalid UTF-8).
 */
static int next_unit(const unsigned char *s, size_t avail, size_t *len, bool *bad)
{
    size_t n = utf8_seq(s, avail);
    uint32_t cp;
    if (n == 0) {
        *len = 1;
        *bad = true;
        return 1;
    }
    *len = n;
    cp = decode(s, n);
    *bad = cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0);
    if (*bad)
        return 1;
    if (in_ranges(cp, zero_width, sizeof(zero_width) / sizeof(zero_width[0])))
        return 0;
    if (in_ranges(cp, wide, sizeof(wide) / sizeof(wide[0])))
        return 2;
    return 1;
}

int tx_width_n(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    int w = 0;
    size_t len;
    bool bad;
    for (size_t i = 0; i < n; i += len)
        w += next_unit(p + i, n - i, &len, &bad);
    return w;
}

int tx_width(const char *s)
{
    return tx_width_n(s, strlen(s));
}

void tx_cell(tx_buf *b, const char *s, int cols, bool right, bool pad, bool ascii)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i, len;
    int w = tx_width_n(s, n), used = 0, room;
    bool bad, cut = w > cols;
    if (cols <= 0)
        return;
    room = cut ? cols - 1 : cols;
    if (right && pad && !cut)
        tx_repeat(b, " ", cols - w);
    for (i = 0; i < n; i += len) {
        int uw = next_unit(p + i, n - i, &len, &bad);
        if (used + uw > room)
            break;
        if (bad)
            tx_putc(b, '?');
        else
            tx_putn(b, s + i, len);
        used += uw;
    }
    if (cut) {
        tx_puts(b, ascii ? "~" : "\u2026");
        used++;
    }
    if (pad && (!right || cut))
        tx_repeat(b, " ", cols - used);
}

/* ---------------------------------------------------------------------------------------------
 * Human formats */

const char *tx_count(int64_t n, char *out, size_t outlen)
{
    char digits[24];
    size_t nd, o = 0;
    uint64_t u = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
    snprintf(digits, sizeof(digits), "%" PRIu64, u);
    nd = strlen(digits);
    if (outlen < 32) {
        if (outlen)
            out[0] = '\0';
        return out;
    }
    if (n < 0)
        out[o++] = '-';
    for (size_t i = 0; i < nd; i++) {
        if (i > 0 && (nd - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
    return out;
}

/* seconds rounded to the smallest unit shown at level i (0 days .. 3 seconds) */
static int64_t round_at(double seconds, size_t i)
{
    static const int64_t step[] = { 3600, 60, 1, 1 };
    return (int64_t)llround(seconds / (double)step[i]) * step[i];
}

const char *tx_duration(double seconds, char *out, size_t outlen)
{
    static const struct {
        int64_t size;
        const char *name;
    } units[] = { { 86400, "d" }, { 3600, "h" }, { 60, "m" }, { 1, "s" } };
    size_t i = 0;
    int64_t r;
    if (isnan(seconds) || isinf(seconds) || seconds < 0) {
        snprintf(out, outlen, "-");
        return out;
    }
    if (seconds > 1e15)
        seconds = 1e15;
    /* the largest unit the value reaches, or the next larger one when rounding carries */
    while (i < 3 && seconds < (double)units[i].size)
        i++;
    r = round_at(seconds, i);
    if (i > 0 && r >= units[i - 1].size)
        r = round_at(seconds, --i);
    if (i == 3 || r % units[i].size == 0)
        snprintf(out, outlen, "%" PRId64 "%s", r / units[i].size, units[i].name);
    else
        snprintf(out, outlen, "%" PRId64 "%s %" PRId64 "%s", r / units[i].size, units[i].name,
                 r % units[i].size / units[i + 1].size, units[i + 1].name);
    return out;
}

const char *tx_time_utc(int64_t ms, char *out, size_t outlen)
{
    int64_t day, tod;
    int y, m, d;
    if (ms == 0) {
        snprintf(out, outlen, "-");
        return out;
    }
    day = civil_day_of_ms(ms, 0);
    tod = (ms - day * 86400000) / 1000;
    civil_date(day, &y, &m, &d);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, (int)(tod / 3600),
             (int)(tod / 60 % 60), (int)(tod % 60));
    return out;
}

void tx_json_str(tx_buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), len;
    tx_putc(b, '"');
    for (size_t i = 0; i < n; i += len) {
        len = utf8_seq(p + i, n - i);
        if (len == 0) {
            tx_puts(b, "\\ufffd");
            len = 1;
        } else if (p[i] == '"' || p[i] == '\\') {
            tx_putc(b, '\\');
            tx_putc(b, (char)p[i]);
        } else if (p[i] == '\n') {
            tx_puts(b, "\\n");
        } else if (p[i] == '\t') {
            tx_puts(b, "\\t");
        } else if (p[i] == '\r') {
            tx_puts(b, "\\r");
        } else if (p[i] < 0x20) {
            tx_printf(b, "\\u%04x", p[i]);
        } else {
            tx_putn(b, s + i, len);
        }
    }
    tx_putc(b, '"');
}
