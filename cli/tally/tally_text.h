/*
 * tally_text: the text toolkit of the tally command-line client: a growable string with a
 * hard size limit, terminal display widths of UTF-8 text, cells padded or cut to a number of
 * columns, and the human forms of counts, durations, times and JSON strings.
 *
 * Everything here is pure (no I/O, no clock, no locale) so that the page renderer built on it
 * can be tested byte for byte.
 *
 * Text that comes from a server (names, ids, titles) is never trusted to be printable: every
 * function that copies such text into a tx_buf for the terminal replaces control characters
 * (C0, DEL, C1) and invalid UTF-8 with '?', so a name cannot carry an escape sequence to the
 * terminal.
 */
#ifndef TALLY_CLI_TEXT_H
#define TALLY_CLI_TEXT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A growable NUL-terminated string. Appends past the limit are dropped and set `full`, so a
 * writer can append without checking each call and look once at the end; so are appends after
 * an allocation failure (which also sets `full`).
 */
typedef struct tx_buf {
    char *s; /* NUL-terminated; NULL until the first append */
    size_t len, cap, limit;
    bool full;
} tx_buf;

void tx_init(tx_buf *b, size_t limit);
void tx_release(tx_buf *b);
/* The string, which the caller frees with free() ("" when nothing was appended); b is empty
 * afterwards, with the same limit. NULL when out of memory. */
char *tx_detach(tx_buf *b);
void tx_reset(tx_buf *b);

void tx_putn(tx_buf *b, const char *s, size_t n);
void tx_puts(tx_buf *b, const char *s);
void tx_putc(tx_buf *b, char c);
void tx_printf(tx_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void tx_vprintf(tx_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Appends s n times. */
void tx_repeat(tx_buf *b, const char *s, int n);

/* The terminal columns that s takes (after the '?' replacement described above). */
int tx_width(const char *s);
int tx_width_n(const char *s, size_t n);

/*
 * Appends s cut to at most cols columns: when it is wider, it ends in an ellipsis ("…", or
 * "~" with ascii) within the limit. With pad, spaces follow up to exactly cols columns; with
 * right, they come first instead (right-aligned). cols <= 0 appends nothing. Unprintable bytes
 * become '?'.
 */
void tx_cell(tx_buf *b, const char *s, int cols, bool right, bool pad, bool ascii);

/* "12,345", "-7". out holds at least 32 bytes. */
const char *tx_count(int64_t n, char *out, size_t outlen);

/*
 * A duration for people, from seconds: the two largest units, rounded to the smaller one:
 * "45s", "12m 5s", "3h 12m", "2d 4h"; a zero second unit is left out ("3h", "2d"). Rounding
 * may carry: 86399 s is "1d". Negative, NaN or infinite: "-". out holds at least 32 bytes.
 */
const char *tx_duration(double seconds, char *out, size_t outlen);

/* Unix ms UTC as "2025-03-14T09:05:03Z"; "-" for 0. out holds at least 32 bytes. */
const char *tx_time_utc(int64_t ms, char *out, size_t outlen);

/* Appends s as a JSON string (quoted and escaped; invalid UTF-8 becomes U+FFFD). */
void tx_json_str(tx_buf *b, const char *s);

#endif
