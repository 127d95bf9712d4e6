/*
 * tz: UTC offsets of IANA time zones, read from the system's compiled zoneinfo files (TZif,
 * RFC 8536), for code that must not touch the process-wide TZ (localtime_r and friends are
 * neither per-zone nor thread-safe to switch).
 *
 * tz_get() loads a zone once and keeps it for the life of the process (a handful of zones in
 * practice); it is thread-safe. Offsets after the file's last transition follow the file's
 * POSIX TZ footer rule (e.g. "EST5EDT,M3.2.0,M11.1.0"), so any date works.
 *
 * Files are TZif versions 1 to 4 (RFC 8536, RFC 9636); a truncated or inconsistent file, or
 * one with leap-second records (the "right/" zones), is refused. Before a zone's first
 * transition its time type 0 holds, and in a file without transitions the footer rule holds at
 * all times (RFC 9636 section 3.2; older glibc picks the first non-DST type instead, which
 * differs only when type 0 is a DST type).
 */
#ifndef TALLY_TZ_H
#define TALLY_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct tz_zone tz_zone;

/*
 * The zone named name ("Europe/Berlin", "UTC"), from $TZDIR or /usr/share/zoneinfo. NULL with
 * the reason in err when the name is not a zone (names that are empty, longer than 255 bytes,
 * with "..", an empty path component or a leading '/', or with characters outside
 * [A-Za-z0-9/_+-] are refused without touching the file system).
 *
 * The returned zone is borrowed for the life of the process; the same file (same $TZDIR and
 * name) always gives the same pointer. At most 512 zones are kept: after that, new names are
 * refused. $TZDIR is read on each call. err may be NULL when errlen is 0.
 */
const tz_zone *tz_get(const char *name, char *err, size_t errlen);

/*
 * The zone of the TZif bytes b[0..len) (untrusted: the fuzz target's way in), not cached:
 * caller frees it with free(). NULL with the reason in *why.
 */
tz_zone *tz_parse(const uint8_t *b, size_t len, const char **why);

/*
 * The zone's offset from UTC, in seconds east, at the instant utc_s (Unix seconds). Any utc_s
 * works, and the result is always within -89999..93599 (about -25 h to +26 h). z must come
 * from tz_get() or tz_parse(). Lock-free and allocation-free.
 */
int64_t tz_offset(const tz_zone *z, int64_t utc_s);

#endif
