/*
 * tz: UTC offsets of IANA time zones, read from the system's compiled zoneinfo files (TZif,
 * RFC 8536), for code that must not touch the process-wide TZ (localtime_r and friends are
 * neither per-zone nor thread-safe to switch).
 *
 * tz_get() loads a zone once and keeps it for the life of the process (a handful of zones in
 * practice); it is thread-safe. Offsets after the file's last transition follow the file's
 * POSIX TZ footer rule (e.g. "EST5EDT,M3.2.0,M11.1.0"), so any date works.
 */
#ifndef TALLY_TZ_H
#define TALLY_TZ_H

#include <stddef.h>
#include <stdint.h>

typedef struct tz_zone tz_zone;

/*
 * The zone named name ("Europe/Berlin", "UTC"), from $TZDIR or /usr/share/zoneinfo. NULL with
 * the reason in err when the name is not a zone (names with "..", a leading '/', or characters
 * outside [A-Za-z0-9/_+-] are refused without touching the file system).
 */
const tz_zone *tz_get(const char *name, char *err, size_t errlen);

/* The zone's offset from UTC, in seconds east, at the instant utc_s (Unix seconds). */
int64_t tz_offset(const tz_zone *z, int64_t utc_s);

#endif
