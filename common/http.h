/*
 * http: the operations port of every service (libmicrohttpd, its own threads).
 *
 *   GET /metrics  Prometheus text of the service's metrics registry.
 *   GET /healthz  200 while the process is alive: the liveness probe. It never touches
 *                 PostgreSQL or Redis; a service may add a check of its own main loop (a
 *                 projector whose loop is stuck is not alive).
 *   GET /readyz   200 when every readiness check passed (PostgreSQL and Redis answer) and the
 *                 service is not draining; otherwise 503 naming the failing checks.
 *
 * /healthz and /readyz answer a small JSON object. Readiness checks are added before
 * http_start(), which runs them once; then a thread of their own runs them every 2 s and
 * /readyz answers the latest results, so a slow dependency never holds an HTTP thread. The
 * liveness check runs on the request and must be cheap (no I/O).
 */
#ifndef TALLY_HTTP_H
#define TALLY_HTTP_H

#include "cfg.h"
#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct http_server http_server;

/* A check: 0 when it passes; otherwise non-zero with a short reason in why. */
typedef int (*http_check_fn)(void *arg, char *why, size_t whylen);

/* reg is borrowed until http_free. Caller frees with http_free. NULL when out of memory. */
http_server *http_new(metrics_registry *reg);

/* Adds a readiness check named name (copied), or the liveness check. Before http_start only. */
int http_add_ready_check(http_server *h, const char *name, http_check_fn fn, void *arg);
void http_set_live_check(http_server *h, http_check_fn fn, void *arg);

/* Binds and starts serving. 0, or TALLY_EUNAVAIL with the reason in err. */
int http_start(http_server *h, const cfg_hostport *listen, char *err, size_t errlen);

/* The bound port (useful with port 0). */
int http_port(const http_server *h);

/* While draining, /readyz answers 503 "draining" so load balancers stop sending traffic. */
void http_set_draining(http_server *h, bool draining);

/* Stops the threads and frees. NULL-safe. */
void http_free(http_server *h);

#endif
