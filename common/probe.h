/*
 * probe: readiness checks of the dependencies, for /readyz.
 *
 * Each opens a short-lived connection with 2 s timeouts (connect, statement or reply) and
 * closes it again, so a probe never shares or disturbs the workers' connections. They fit
 * http_check_fn and run on the HTTP server's checker thread.
 */
#ifndef TALLY_PROBE_H
#define TALLY_PROBE_H

#include <stddef.h>

/* arg is the libpq conninfo (const char *): connects and runs SELECT 1. */
int probe_postgres(void *arg, char *why, size_t whylen);

/* arg is a const cfg_redis *: connects, SELECTs the db and PINGs. */
int probe_redis(void *arg, char *why, size_t whylen);

#endif
