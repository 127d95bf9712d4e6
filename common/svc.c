#include "svc.h"

#include "auth.h"
#include "err.h"
#include "log.h"
#include "now.h"
#include "version.h"

#include <dirent.h>
#include <sys/resource.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_VARS 64

static _Atomic bool stopping;

bool svc_stopping(void)
{
    return atomic_load(&stopping);
}

void svc_nap_ms(int64_t ms, bool (*stop)(void))
{
    for (int64_t until = now_mono_ms() + ms;
         !svc_stopping() && !(stop && stop()) && now_mono_ms() < until;) {
        struct timespec ts = { 0, 100 * 1000000L };
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
    }
}

/* The run function's thread: its result, and a signal to main when it returns early. */
typedef struct runner {
    const svc_def *def;
    const svc_env *env;
    pthread_t thread;
    int rc;
} runner;

static void *run_main(void *arg)
{
    runner *r = arg;
    r->rc = r->def->run(r->env, r->def->arg);
    if (!svc_stopping())
        kill(getpid(), SIGUSR1); /* wakes sigwait in svc_main */
    return NULL;
}

/* Prints each "VAR: problem" line of text as its own JSON log line. */
static void log_lines(enum log_level level, const char *msg, const char *text, const char *key)
{
    for (const char *p = text; *p;) {
        size_t n = strcspn(p, "\n");
        char line[512];
        char var[128];
        snprintf(line, sizeof(line), "%.*s", (int)n, p);
        snprintf(var, sizeof(var), "%.*s", (int)strcspn(line, ":"), line);
        log_at(level, msg, LOG_STR("variable", var), LOG_STR(key, line));
        p += n + (p[n] == '\n');
    }
}

/*
 * TALLY_AUTH: "jwt" makes the verifier (its keys checked now, not at the first call); "off"
 * trusts every caller and says so at every start. 0, or non-zero after logging why.
 */
static int setup_auth(const auth_settings *a, auth_verifier **out)
{
    char err[512];
    *out = NULL;
    if (strcmp(a->mode, "off") == 0) {
        log_warn("authentication is off: every caller may call every method for every tenant",
                 LOG_STR("variable", "TALLY_AUTH"));
        return 0;
    }
    if (strcmp(a->mode, "jwt") != 0) {
        log_error("bad configuration", LOG_STR("variable", "TALLY_AUTH"),
                  LOG_STR("problem", "TALLY_AUTH: jwt or off"));
        return 1;
    }
    *out = auth_new(a, err, sizeof(err));
    if (!*out) {
        char var[64];
        snprintf(var, sizeof(var), "%.*s", (int)strcspn(err, ": "), err);
        log_error("bad configuration", LOG_STR("variable", var), LOG_STR("problem", err));
        return 1;
    }
    return 0;
}

/* SIGHUP: the token keys read again (TALLY_AUTH_JWT_SECRET_FILE, TALLY_AUTH_JWT_KEYS_FILE);
   keys that do not load leave the current ones in place. */
static void reload_auth(srv_server *srv, const auth_settings *a)
{
    char err[512];
    auth_verifier *v = auth_new(a, err, sizeof(err));
    if (!v) {
        log_error("token keys not reloaded; the current ones stay", LOG_STR("error", err));
        return;
    }
    if (srv_set_auth(srv, v) != 0) {
        auth_free(v);
        return;
    }
    log_info("token keys reloaded", LOG_STR("alg", a->alg));
}

static double start_time(void *arg)
{
    return *(const double *)arg;
}

/* ---- the standard process_* metrics (Prometheus client libraries' names), from /proc ------- */

static double cpu_seconds(void *arg)
{
    struct rusage u;
    (void)arg;
    if (getrusage(RUSAGE_SELF, &u) != 0)
        return 0;
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* Field 0 (virtual) or 1 (resident) of /proc/self/statm, in bytes. */
static double statm_bytes(void *arg)
{
    long pages[2] = { 0, 0 };
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages[0], &pages[1]) != 2)
        pages[0] = pages[1] = 0;
    fclose(f);
    return (double)pages[*(const int *)arg] * (double)sysconf(_SC_PAGESIZE);
}

static double open_fds(void *arg)
{
    DIR *d = opendir("/proc/self/fd");
    double n = 0;
    (void)arg;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static double max_fds(void *arg)
{
    struct rlimit l;
    (void)arg;
    return getrlimit(RLIMIT_NOFILE, &l) == 0 && l.rlim_cur != RLIM_INFINITY ? (double)l.rlim_cur
                                                                            : 0;
}

static double one(void *arg)
{
    (void)arg;
    return 1;
}

/* process_*, and tally_build_info{service,version,commit} 1. 0, or TALLY_ENOMEM. */
static int add_process_metrics(metrics_registry *reg, const char *service, double *started_at)
{
    static const int virt = 0, res = 1;
    char labels[256];
    metrics_labels(labels, sizeof(labels), "service", service, "version", tally_version, "commit",
                   tally_commit, NULL);
    return metrics_gauge_fn_add(reg, "process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.", NULL,
                                start_time, started_at) ||
                   metrics_counter_fn_add(reg, "process_cpu_seconds_total",
                                          "Total user and system CPU time spent in seconds.", NULL,
                                          cpu_seconds, NULL) ||
                   metrics_gauge_fn_add(reg, "process_resident_memory_bytes",
                                        "Resident memory size in bytes.", NULL, statm_bytes,
                                        (void *)&res) ||
                   metrics_gauge_fn_add(reg, "process_virtual_memory_bytes",
                                        "Virtual memory size in bytes.", NULL, statm_bytes,
                                        (void *)&virt) ||
                   metrics_gauge_fn_add(reg, "process_open_fds", "Number of open file descriptors.",
                                        NULL, open_fds, NULL) ||
                   metrics_gauge_fn_add(reg, "process_max_fds",
                                        "Maximum number of open file descriptors.", NULL, max_fds,
                                        NULL) ||
                   metrics_gauge_fn_add(reg, "tally_build_info",
                                        "Always 1: the service, version and commit of this build.",
                                        labels, one, NULL)
               ? TALLY_ENOMEM
               : 0;
}

int svc_main(const svc_def *def)
{
    static double started_at;
    cfg_common cfg;
    cfg_var vars[MAX_VARS];
    size_t nvars = CFG_COMMON_NVARS;
    char err[4096], warn[1024], addr[300];
    sigset_t sigs;
    int sig = 0, rc = 1;
    metrics_registry *reg = NULL;
    auth_settings auth_cfg;
    auth_verifier *auth = NULL;
    http_server *http = NULL;
    srv_server *srv = NULL;
    struct timespec now;

    /* Before any thread exists (gRPC starts its own in srv_new): they all inherit the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1); /* the run function returned */
    sigaddset(&sigs, SIGHUP);  /* read the TLS files and the token keys again */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    log_init(def->name, LOG_INFO);
    memset(&cfg, 0, sizeof(cfg));
    cfg_common_vars(&cfg, vars, def->grpc_port, def->http_port);
    if (def->nvars > MAX_VARS - CFG_COMMON_NVARS - AUTH_NVARS) {
        log_error("too many configuration variables");
        return 2;
    }
    if (def->nvars)
        memcpy(vars + nvars, def->vars, def->nvars * sizeof(cfg_var));
    nvars += def->nvars;
    /* Known to every service, so that one ConfigMap serves all; used by the gRPC ones. */
    auth_vars(&auth_cfg, vars + nvars, def->auth_default ? def->auth_default : "jwt");
    nvars += AUTH_NVARS;
    if (cfg_load(vars, nvars, err, sizeof(err), warn, sizeof(warn)) != 0) {
        log_lines(LOG_ERROR, "bad configuration", err, "problem");
        return 2;
    }
    if (cfg_redis_password_file(&cfg.redis, cfg.redis_password_file, err, sizeof(err)) != 0) {
        log_error("bad configuration",
                  LOG_STR("problem", cfg.redis_password_file[0] ? "TALLY_REDIS_PASSWORD_FILE"
                                                                : "TALLY_REDIS_URL"),
                  LOG_STR("error", err));
        return 2;
    }
    log_set_level(cfg.log_level);
    log_lines(LOG_WARN, "unknown variable (ignored)", warn, "name");
    if (def->nservices > 0 && setup_auth(&auth_cfg, &auth) != 0)
        return 2;

    clock_gettime(CLOCK_REALTIME, &now);
    started_at = (double)now.tv_sec + (double)now.tv_nsec / 1e9;
    reg = metrics_new();
    http = reg ? http_new(reg) : NULL;
    if (!http) {
        log_error("out of memory");
        goto out_free;
    }
    log_info("starting", LOG_STR("version", tally_version), LOG_STR("commit", tally_commit));
    if (add_process_metrics(reg, def->name, &started_at) != 0) {
        log_error("out of memory");
        goto out_free;
    }

    svc_env env = { .cfg = &cfg, .metrics = reg, .http = http };
    if (def->setup && def->setup(&env, def->arg) != 0)
        goto out_free;

    srv_config sc = { .services = def->services,
                      .nservices = def->nservices,
                      .cfg = &cfg,
                      .metrics = reg,
                      .auth = auth,
                      .worker_init = def->worker_init,
                      .worker_free = def->worker_free,
                      .call_begin = def->call_begin,
                      .arg = def->arg };
    if (def->nservices > 0 && !(srv = srv_new(&sc, err, sizeof(err)))) {
        log_error("cannot start the gRPC server", LOG_STR("error", err));
        goto out_teardown;
    }
    if (http_start(http, &cfg.http_listen, err, sizeof(err)) != 0) {
        log_error("cannot start the HTTP server", LOG_STR("variable", "TALLY_HTTP_LISTEN"),
                  LOG_STR("error", err));
        goto out_teardown;
    }
    if (srv && srv_start(srv, err, sizeof(err)) != 0) {
        log_error("cannot start the gRPC server", LOG_STR("error", err));
        goto out_teardown;
    }
    if (srv) {
        cfg_hostport_str(&cfg.grpc_listen, addr, sizeof(addr));
        log_info("grpc server listening", LOG_STR("addr", addr), LOG_INT("port", srv_port(srv)),
                 LOG_INT("workers", cfg.workers), LOG_BOOL("tls", cfg.tls_cert[0] != '\0'),
                 LOG_STR("auth", auth ? auth_cfg.alg : "off"));
    }
    cfg_hostport_str(&cfg.http_listen, addr, sizeof(addr));
    log_info("http server listening", LOG_STR("addr", addr), LOG_INT("port", http_port(http)));
    runner run = { .def = def, .env = &env, .rc = 0 };
    if (def->run && pthread_create(&run.thread, NULL, run_main, &run) != 0) {
        log_error("cannot start the main loop");
        goto out_teardown;
    }

    for (;;) {
        if (sigwait(&sigs, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            break;
        if (srv)
            srv_reload_tls(srv);
        if (srv && auth)
            reload_auth(srv, &auth_cfg);
    }
    atomic_store(&stopping, true);
    if (sig == SIGUSR1) {
        log_error("main loop ended", LOG_INT("exit_code", run.rc));
    } else {
        log_info("shutting down", LOG_STR("signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"),
                 LOG_INT("drain_ms", cfg.drain_ms), LOG_INT("grace_ms", cfg.shutdown_grace_ms));
    }
    if (srv)
        srv_set_serving(srv, false);
    http_set_draining(http, true);
    if (srv && cfg.drain_ms > 0) {
        struct timespec d = { .tv_sec = cfg.drain_ms / 1000,
                              .tv_nsec = (cfg.drain_ms % 1000) * 1000000 };
        nanosleep(&d, NULL);
    }
    if (def->run)
        pthread_join(run.thread, NULL);
    if (srv && srv_shutdown(srv, cfg.shutdown_grace_ms) != 0) {
        log_error("exiting with calls still running");
        _exit(1);
    }
    rc = sig == SIGUSR1 ? (run.rc ? run.rc : 1) : 0;

out_teardown:
    /* HTTP first: its checks and gauges read the server's and the service's state. */
    http_free(http);
    http = NULL;
    /* Before srv_free: a service's threads may still hold what the server made (query-svc's
       WatchDashboard hub: its last page's buffers), and need the gRPC core alive. */
    if (def->teardown)
        def->teardown(def->arg);
    srv_free(srv);
out_free:
    http_free(http);
    metrics_free(reg);
    auth_free(auth);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
