/*
 * svc: the life of a service process, the same for every Tally service.
 *
 *   configuration from the environment (checked; each problem one line, exit 2)
 *   -> authentication (a gRPC service: bearer tokens, TALLY_AUTH_*; without keys it refuses to
 *   start unless TALLY_AUTH=off, which it warns about at every start) -> JSON logging -> metrics
 * registry -> the HTTP operations port -> the gRPC server
 *   -> serve until SIGTERM or SIGINT -> drain: health NOT_SERVING and /readyz 503, wait
 *   TALLY_SHUTDOWN_DRAIN_MS, stop accepting, let in-flight calls finish within
 *   TALLY_SHUTDOWN_GRACE_MS -> teardown -> exit 0. SIGHUP meanwhile makes the gRPC server read
 *   its TLS files again at the next handshake (srv_reload_tls) and its token keys now
 *   (srv_set_auth; keys that do not load leave the current ones); it never stops the process.
 *
 * A service's main() fills a svc_def and returns svc_main(&def). A worker without a gRPC API
 * (the projector) names no services and gives a run function instead: it runs on a thread of
 * its own until svc_stopping() turns true (SIGTERM), and returning early ends the process.
 */
#ifndef TALLY_SVC_H
#define TALLY_SVC_H

#include "cfg.h"
#include "http.h"
#include "metrics.h"
#include "srv.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct svc_env {
    const cfg_common *cfg;
    metrics_registry *metrics;
    http_server *http; /* add readiness checks here, before serving starts */
} svc_env;

/* True once SIGTERM or SIGINT arrived: a run function finishes its step and returns. */
bool svc_stopping(void);

/*
 * Sleeps ms milliseconds in slices of 100 ms, returning early once svc_stopping() or stop()
 * (may be NULL) is true: the pause of a background thread that must not delay a shutdown.
 */
void svc_nap_ms(int64_t ms, bool (*stop)(void));

typedef struct svc_def {
    const char *name; /* the "service" of every log line: "command-svc" */
    int grpc_port;    /* default ports on 127.0.0.1 */
    int http_port;
    const srv_service *services; /* none: no gRPC server */
    size_t nservices;
    const cfg_var *vars; /* the service's own variables, beside the common ones */
    size_t nvars;
    /* Called once configuration is loaded, before serving. 0, or non-zero to exit 1. */
    int (*setup)(const svc_env *env, void *arg);
    /*
     * The main loop of a worker, on its own thread after setup, until svc_stopping(). Its
     * return value is the exit code when it returns before a signal (0 otherwise).
     */
    int (*run)(const svc_env *env, void *arg);
    /* Called after the server has stopped serving (every call and stream over), before it is
       freed. */
    void (*teardown)(void *arg);
    void *(*worker_init)(int index, void *arg);
    void (*worker_free)(void *state, void *arg);
    void (*call_begin)(void *state, void *arg); /* srv_config.call_begin */
    void *arg;
    /*
     * TALLY_AUTH's default for a gRPC service: NULL is "jwt" (a service refuses to start
     * without its keys); only the runtime's test service says "off".
     */
    const char *auth_default;
} svc_def;

/* Runs the service; returns the process exit code (0 after a clean shutdown). */
int svc_main(const svc_def *def);

#endif
