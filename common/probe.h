/*
 * probe: readiness checks of the dependencies, for /readyz.
 *
 * Each opens a short-lived connection with a small timeout and closes it again, so a probe
 * never shares or disturbs the workers' connections, and never blocks an HTTP thread for
 * more than about two seconds. They fit http_check_fn.
 */
#ifndef TALLY_PROBE_H
#define TALLY_PROBE_H

#include <stddef.h>

/* arg is the libpq conninfo (const char *): connects and runs SELECT 1. */
int probe_postgres(void *arg, char *why, size_t whylen);

/* arg is a const cfg_redis *: connects, SELECTs the db and PINGs. */
int probe_redis(void *arg, char *why, size_t whylen);

#endif
