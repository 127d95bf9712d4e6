#include "http.h"

#include "err.h"
#include "log.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CHECKS        8
#define CHECK_INTERVAL_MS 2000

typedef struct check {
    char *name;
    http_check_fn fn;
    void *arg;
    bool ok;       /* the latest result, under mu */
    char why[256]; /* under mu */
} check;

struct http_server {
    metrics_registry *reg;
    struct MHD_Daemon *d;
    check ready[MAX_CHECKS];
    int nready;
    check live;
    _Atomic bool draining;
    int port;
    /* Readiness checks run on their own thread; /readyz answers their latest results, so a
       slow dependency never holds an HTTP thread (and never delays /healthz or /metrics). */
    pthread_t checker;
    bool checker_running;
    bool stop; /* under mu */
    pthread_mutex_t mu;
    pthread_cond_t wake;
};

http_server *http_new(metrics_registry *reg)
{
    http_server *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->reg = reg;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->wake, NULL);
    return h;
}

/* Runs every readiness check once and stores the results. */
static void run_checks(http_server *h)
{
    for (int i = 0; i < h->nready; i++) {
        char why[256] = "";
        bool ok = h->ready[i].fn(h->ready[i].arg, why, sizeof(why)) == 0;
        pthread_mutex_lock(&h->mu);
        h->ready[i].ok = ok;
        snprintf(h->ready[i].why, sizeof(h->ready[i].why), "%s",
                 ok       ? "ok"
                 : why[0] ? why
                          : "failed");
        pthread_mutex_unlock(&h->mu);
    }
}

static void *checker_main(void *arg)
{
    http_server *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += CHECK_INTERVAL_MS / 1000;
        pthread_cond_timedwait(&h->wake, &h->mu, &until);
        if (h->stop || atomic_load(&h->draining))
            continue;
        pthread_mutex_unlock(&h->mu);
        run_checks(h);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

int http_add_ready_check(http_server *h, const char *name, http_check_fn fn, void *arg)
{
    if (h->nready == MAX_CHECKS)
        return TALLY_ETOOBIG;
    h->ready[h->nready].name = strdup(name);
    if (!h->ready[h->nready].name)
        return TALLY_ENOMEM;
    h->ready[h->nready].fn = fn;
    h->ready[h->nready].arg = arg;
    h->nready++;
    return 0;
}

void http_set_live_check(http_server *h, http_check_fn fn, void *arg)
{
    h->live.fn = fn;
    h->live.arg = arg;
}

void http_set_draining(http_server *h, bool draining)
{
    atomic_store(&h->draining, draining);
}

int http_port(const http_server *h)
{
    return h->port;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned int status, const char *type,
                             char *body, size_t len)
{
    /* MHD frees body with free() once sent. */
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_str(struct MHD_Connection *conn, unsigned int status, const char *json)
{
    char *body = strdup(json);
    return body ? reply(conn, status, "application/json", body, strlen(body)) : MHD_NO;
}

/* Appends "name":"why" to a JSON object body under construction. */
static void add_result(char *buf, size_t *len, size_t cap, bool *first, const char *name,
                       const char *why)
{
    if (*len + 8 >= cap)
        return;
    if (!*first)
        buf[(*len)++] = ',';
    *first = false;
    buf[(*len)++] = '"';
    log_json_escape(buf, len, cap - 4, name);
    memcpy(buf + *len, "\":\"", 3);
    *len += 3;
    log_json_escape(buf, len, cap - 4, why);
    buf[(*len)++] = '"';
    buf[*len] = '\0';
}

static enum MHD_Result serve_readyz(http_server *h, struct MHD_Connection *conn)
{
    char buf[4096];
    size_t len, cap = sizeof(buf) - 16;
    bool first = true, ok = true;

    len = (size_t)snprintf(buf, sizeof(buf), "{\"checks\":{");
    if (atomic_load(&h->draining)) {
        add_result(buf, &len, cap, &first, "server", "draining");
        ok = false;
    }
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->nready; i++) {
        ok = ok && h->ready[i].ok;
        add_result(buf, &len, cap, &first, h->ready[i].name, h->ready[i].why);
    }
    pthread_mutex_unlock(&h->mu);
    snprintf(buf + len, sizeof(buf) - len, "},\"ready\":%s}\n", ok ? "true" : "false");
    return reply_str(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, buf);
}

static enum MHD_Result serve_healthz(http_server *h, struct MHD_Connection *conn)
{
    char buf[512], why[256] = "";
    size_t len = 0;
    if (!h->live.fn || h->live.fn(h->live.arg, why, sizeof(why)) == 0)
        return reply_str(conn, MHD_HTTP_OK, "{\"alive\":true}\n");
    len = (size_t)snprintf(buf, sizeof(buf), "{\"alive\":false,\"why\":\"");
    log_json_escape(buf, &len, sizeof(buf) - 8, why);
    snprintf(buf + len, sizeof(buf) - len, "\"}\n");
    return reply_str(conn, MHD_HTTP_SERVICE_UNAVAILABLE, buf);
}

static enum MHD_Result serve_metrics(http_server *h, struct MHD_Connection *conn)
{
    char *text;
    size_t len;
    if (metrics_render(h->reg, &text, &len) != 0)
        return reply_str(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "{\"error\":\"out of memory\"}\n");
    return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    http_server *h = cls;
    (void)version;
    (void)upload;
    (void)upload_size;
    if (*state == NULL) { /* first call: headers only; answer on the second */
        *state = h;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_str(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "{\"error\":\"use GET\"}\n");
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(h, conn);
    if (strcmp(url, "/healthz") == 0)
        return serve_healthz(h, conn);
    if (strcmp(url, "/readyz") == 0)
        return serve_readyz(h, conn);
    return reply_str(
        conn, MHD_HTTP_NOT_FOUND,
        "{\"error\":\"not found\",\"paths\":[\"/metrics\",\"/healthz\",\"/readyz\"]}\n");
}

/* libmicrohttpd's log callback: its format comes from the library. */
static void mhd_log(void *arg, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *arg, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;
    (void)arg;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    log_warn("http server", LOG_STR("error", msg));
}

int http_start(http_server *h, const cfg_hostport *listen, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    char host[256], port[8];
    /* AUTO picks epoll: select() would drop connections whose fd is past FD_SETSIZE. */
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    int gai;

    snprintf(port, sizeof(port), "%d", listen->port);
    snprintf(host, sizeof(host), "%s", listen->host);
    if (host[0] == '[') { /* [::1] */
        memmove(host, host + 1, strlen(host));
        host[strcspn(host, "]")] = '\0';
    }
    gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
        return TALLY_EUNAVAIL;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* The logger must be the first option, or MHD logs the earlier ones itself. */
    h->d = MHD_start_daemon(
        flags, (uint16_t)listen->port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_THREAD_POOL_SIZE, 2u,
        MHD_OPTION_CONNECTION_LIMIT, 128u, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        snprintf(err, errlen, "cannot listen on %s:%s (in use, or not an address of this host)",
                 host[0] ? host : "*", port);
        return TALLY_EUNAVAIL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : listen->port;
    /* The first round runs now, so /readyz is right from the first request. */
    run_checks(h);
    if (h->nready > 0) {
        if (pthread_create(&h->checker, NULL, checker_main, h) != 0) {
            snprintf(err, errlen, "cannot start the readiness checker thread");
            return TALLY_EINTERNAL;
        }
        h->checker_running = true;
    }
    return 0;
}

void http_free(http_server *h)
{
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d);
    if (h->checker_running) {
        pthread_mutex_lock(&h->mu);
        h->stop = true;
        pthread_cond_signal(&h->wake);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->checker, NULL);
    }
    for (int i = 0; i < h->nready; i++)
        free(h->ready[i].name);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->wake);
    free(h);
}
