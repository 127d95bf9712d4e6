#include "cfg.h"

#include "err.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

extern char **environ;

static int parse_int(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return TALLY_EINVAL;
    *out = v;
    return 0;
}

static int parse_port(const char *s, int *out)
{
    long long v;
    if (!*s || parse_int(s, &v) || v < 0 || v > 65535)
        return TALLY_EINVAL;
    *out = (int)v;
    return 0;
}

int cfg_parse_hostport(const char *s, cfg_hostport *out)
{
    const char *colon;
    size_t hostlen;
    if (!s)
        return TALLY_EINVAL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return TALLY_EINVAL;
        hostlen = (size_t)(close - s + 1);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s)))
            return TALLY_EINVAL;
        hostlen = (size_t)(colon - s);
    }
    if (hostlen >= sizeof(out->host) || parse_port(colon + 1, &out->port))
        return TALLY_EINVAL;
    for (size_t i = 0; i < hostlen; i++)
        if (s[i] == ' ' || s[i] == '/')
            return TALLY_EINVAL;
    memcpy(out->host, s, hostlen);
    out->host[hostlen] = '\0';
    return 0;
}

void cfg_hostport_str(const cfg_hostport *hp, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%d", hp->host[0] ? hp->host : "0.0.0.0", hp->port);
}

/* Percent-decodes s[0..n) into out (outlen with the NUL). 0, or TALLY_EINVAL. */
static int url_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            unsigned v;
            char hex[3] = { 0 };
            if (i + 2 >= n)
                return TALLY_EINVAL;
            memcpy(hex, s + i + 1, 2);
            if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]) ||
                sscanf(hex, "%2x", &v) != 1 || v == 0)
                return TALLY_EINVAL;
            c = (int)v;
            i += 2;
        }
        if (k + 1 >= outlen)
            return TALLY_EINVAL;
        out[k++] = (char)c;
    }
    out[k] = '\0';
    return 0;
}

int cfg_parse_redis_url(const char *s, cfg_redis *out)
{
    static const char scheme[] = "redis://";
    const char *p, *end;
    size_t hostlen;
    char port[8];
    if (!s || strncmp(s, scheme, sizeof(scheme) - 1) != 0)
        return TALLY_EINVAL;
    p = s + sizeof(scheme) - 1;
    out->user[0] = out->password[0] = '\0';
    /* The userinfo ends at the last '@' (the path has none): a password with an unencoded '/'
       or '@' still parses. */
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        size_t ulen = colon ? (size_t)(colon - p) : (size_t)(at - p);
        if (url_decode(p, ulen, out->user, sizeof(out->user)) != 0)
            return TALLY_EINVAL;
        if (colon && url_decode(colon + 1, (size_t)(at - colon - 1), out->password,
                                sizeof(out->password)) != 0)
            return TALLY_EINVAL;
        p = at + 1;
    }
    if (*p == '[') { /* an IPv6 address, kept without its brackets (hiredis wants none) */
        const char *close = strchr(p, ']');
        if (!close || (close[1] != '\0' && close[1] != ':' && close[1] != '/'))
            return TALLY_EINVAL;
        p++;
        hostlen = (size_t)(close - p);
        end = close + 1;
    } else {
        end = p + strcspn(p, ":/");
        hostlen = (size_t)(end - p);
    }
    if (hostlen == 0 || hostlen >= sizeof(out->host))
        return TALLY_EINVAL;
    memcpy(out->host, p, hostlen);
    out->host[hostlen] = '\0';
    out->port = 6379;
    out->db = 0;
    if (*end == ':') {
        size_t n = strcspn(end + 1, "/");
        if (n == 0 || n >= sizeof(port))
            return TALLY_EINVAL;
        memcpy(port, end + 1, n);
        port[n] = '\0';
        if (parse_port(port, &out->port) || out->port == 0)
            return TALLY_EINVAL;
        end += 1 + n;
    }
    if (*end == '/' && end[1]) {
        long long db;
        if (parse_int(end + 1, &db) || db < 0 || db > 15)
            return TALLY_EINVAL;
        out->db = (int)db;
    } else if (*end == '/' || *end == '\0') {
        /* no db: 0 */
    } else {
        return TALLY_EINVAL;
    }
    return 0;
}

void cfg_redis_url_redact(const char *url, char *out, size_t len)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *at = strrchr(p, '@'); /* as the parser: everything before it may be secret */
    const char *colon = at ? memchr(p, ':', (size_t)(at - p)) : NULL;
    if (!colon)
        snprintf(out, len, "%s", url);
    else
        snprintf(out, len, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

char *cfg_read_file(const char *path, size_t max, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    char *buf = f ? malloc(max + 1) : NULL;
    size_t n = buf ? fread(buf, 1, max + 1, f) : 0;
    bool failed = !f || !buf || ferror(f);
    if (f)
        fclose(f);
    if (failed || n > max) {
        if (failed)
            snprintf(why, whylen, "cannot read %s", path);
        else
            snprintf(why, whylen, "%s is larger than %zu bytes", path, max);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int cfg_read_secret(const char *path, char *out, size_t outlen, char *why, size_t whylen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(why, whylen, "cannot read %s (%s)", path, strerror(errno));
        return TALLY_EINVAL;
    }
    char buf[1024]; /* the secret, its line end, and one byte more to see a longer file */
    size_t cap = outlen + 2 < sizeof(buf) ? outlen + 2 : sizeof(buf);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    buf[n < cap ? n : cap - 1] = '\0';
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    int rc = 0;
    out[0] = '\0';
    if (n >= outlen || n == cap) {
        snprintf(why, whylen, "%s holds more than %zu bytes", path, outlen - 1);
        rc = TALLY_EINVAL;
    } else if (n == 0 || strlen(buf) != n || strpbrk(buf, "\r\n")) {
        snprintf(why, whylen, "%s must hold one line, the secret", path);
        rc = TALLY_EINVAL;
    } else {
        memcpy(out, buf, n + 1);
    }
    memset(buf, 0, sizeof(buf));
    return rc;
}

int cfg_redis_password_file(cfg_redis *r, const char *path, char *why, size_t whylen)
{
    if (path && path[0]) {
        if (r->password[0]) {
            snprintf(why, whylen, "the Redis URL has a password already: give it in one place");
            return TALLY_EINVAL;
        }
        if (cfg_read_secret(path, r->password, sizeof(r->password), why, whylen) != 0)
            return TALLY_EINVAL;
    }
    if (r->user[0] && !r->password[0]) {
        snprintf(why, whylen,
                 "the Redis user %s has no password: give it in the URL or in "
                 "TALLY_REDIS_PASSWORD_FILE",
                 r->user);
        return TALLY_EINVAL;
    }
    return 0;
}

int cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "1", "true", "yes", "on" };
    static const char *const no[] = { "0", "false", "no", "off" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return TALLY_EINVAL;
}

/* Appends one formatted line to buf, keeping it NUL-terminated and cut at len. */
static void addline(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void addline(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list ap;
    if (used + 1 >= len)
        return;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
    used = strlen(buf);
    if (used + 1 < len) {
        buf[used] = '\n';
        buf[used + 1] = '\0';
    }
}

/* Checks and stores one value; on a problem writes why (a phrase) and returns TALLY_EINVAL. */
static int load_one(const cfg_var *v, const char *val, char *why, size_t whylen)
{
    int rc = 0;
    switch (v->type) {
    case CFG_STR:
        *(const char **)v->dest = val;
        break;
    case CFG_INT: {
        long long x;
        if (parse_int(val, &x) || x < v->min || x > v->max) {
            snprintf(why, whylen, "must be an integer from %lld to %lld", v->min, v->max);
            return TALLY_EINVAL;
        }
        *(long long *)v->dest = x;
        break;
    }
    case CFG_BOOL:
        if (cfg_parse_bool(val, (bool *)v->dest)) {
            snprintf(why, whylen, "must be true or false");
            return TALLY_EINVAL;
        }
        break;
    case CFG_HOSTPORT:
        if (cfg_parse_hostport(val, (cfg_hostport *)v->dest)) {
            snprintf(why, whylen, "must be host:port (port 0-65535)");
            return TALLY_EINVAL;
        }
        break;
    case CFG_PG_DSN: {
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(val, &perr);
        if (!opts) {
            size_t n;
            snprintf(why, whylen, "is not a valid libpq connection string: %s",
                     perr ? perr : "out of memory");
            n = strlen(why);
            while (n && (why[n - 1] == '\n' || why[n - 1] == ' '))
                why[--n] = '\0';
            PQfreemem(perr);
            return TALLY_EINVAL;
        }
        PQconninfoFree(opts);
        *(const char **)v->dest = val;
        break;
    }
    case CFG_REDIS_URL: /* empty, when allowed: host stays "" (unset) */
        if (!val[0] && !(v->flags & CFG_REQUIRED))
            memset(v->dest, 0, sizeof(cfg_redis));
        else if (cfg_parse_redis_url(val, (cfg_redis *)v->dest)) {
            snprintf(why, whylen,
                     "must be redis://[user[:password]@]host[:port][/db] (db 0-15; user and "
                     "password percent-encoded)");
            return TALLY_EINVAL;
        }
        break;
    case CFG_LOG_LEVEL:
        rc = log_level_parse(val);
        if (rc < 0) {
            snprintf(why, whylen, "must be debug, info, warn or error");
            return TALLY_EINVAL;
        }
        *(int *)v->dest = rc;
        rc = 0;
        break;
    case CFG_FILE:
        if (*val && access(val, R_OK) != 0) {
            snprintf(why, whylen, "names a file that cannot be read (%s)", strerror(errno));
            return TALLY_EINVAL;
        }
        *(const char **)v->dest = val;
        break;
    }
    return rc;
}

static bool known(const cfg_var *vars, size_t n, const char *env)
{
    /* The tools' variables, beside a service in the same environment: the CLI's bearer token
     * and the owner's DSN of `command-svc migrate`. */
    static const char *const tools[] = { "TALLY_TOKEN", "TALLY_PG_MIGRATE_DSN" };
    size_t len = strcspn(env, "=");
    for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
        if (strlen(tools[i]) == len && strncmp(tools[i], env, len) == 0)
            return true;
    for (size_t i = 0; i < n; i++)
        if (strlen(vars[i].name) == len && strncmp(vars[i].name, env, len) == 0)
            return true;
    return false;
}

int cfg_load(const cfg_var *vars, size_t n, char *err, size_t errlen, char *warn, size_t warnlen)
{
    int rc = 0;
    if (errlen)
        err[0] = '\0';
    if (warnlen)
        warn[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const cfg_var *v = &vars[i];
        const char *val = getenv(v->name);
        bool from_env = val && *val;
        char why[256];
        if (!from_env)
            val = v->def ? v->def : "";
        if (!*val && (v->flags & CFG_REQUIRED)) {
            addline(err, errlen, "%s: is required and not set", v->name);
            rc = TALLY_EINVAL;
            continue;
        }
        if (!*val && v->type != CFG_STR && v->type != CFG_FILE && v->type != CFG_REDIS_URL) {
            addline(err, errlen, "%s: must not be empty", v->name);
            rc = TALLY_EINVAL;
            continue;
        }
        if (load_one(v, val, why, sizeof(why)) != 0) {
            char shown[300];
            if (v->type == CFG_REDIS_URL)
                cfg_redis_url_redact(val, shown, sizeof(shown));
            else
                snprintf(shown, sizeof(shown), "%s", val);
            if (v->flags & CFG_SECRET)
                addline(err, errlen, "%s: %s", v->name, why);
            else
                addline(err, errlen, "%s: %s, got \"%.80s\"", v->name, why, shown);
            rc = TALLY_EINVAL;
        }
    }
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, "TALLY_", 6) == 0 && !known(vars, n, *e))
            addline(warn, warnlen, "%.*s", (int)strcspn(*e, "="), *e);
    return rc;
}

void cfg_common_vars(cfg_common *c, cfg_var *out, int grpc_port, int http_port)
{
    static char grpc_def[32], http_def[32];
    snprintf(grpc_def, sizeof(grpc_def), "127.0.0.1:%d", grpc_port);
    snprintf(http_def, sizeof(http_def), "127.0.0.1:%d", http_port);
    const cfg_var vars[CFG_COMMON_NVARS] = {
        { "TALLY_GRPC_LISTEN", CFG_HOSTPORT, grpc_def, 0, 0, 0, &c->grpc_listen,
          "gRPC address, host:port (0.0.0.0:port in a container; port 0 picks a free one)" },
        { "TALLY_HTTP_LISTEN", CFG_HOSTPORT, http_def, 0, 0, 0, &c->http_listen,
          "metrics and health HTTP address, host:port" },
        { "TALLY_PG_DSN", CFG_PG_DSN, "postgresql://tally@127.0.0.1:15432/tally", 0, 0, CFG_SECRET,
          &c->pg_dsn, "PostgreSQL, a libpq conninfo string or URI" },
        { "TALLY_REDIS_URL", CFG_REDIS_URL, "redis://127.0.0.1:16379/0", 0, 0, 0, &c->redis,
          "Redis, redis://[user[:password]@]host:port/db" },
        { "TALLY_REDIS_PASSWORD_FILE", CFG_FILE, "", 0, 0, 0, &c->redis_password_file,
          "a file holding the Redis password (instead of one in TALLY_REDIS_URL)" },
        { "TALLY_WORKERS", CFG_INT, "2", 1, 256, 0, &c->workers,
          "gRPC worker threads (each owns its database connections)" },
        { "TALLY_LOG_LEVEL", CFG_LOG_LEVEL, "info", 0, 0, 0, &c->log_level,
          "debug, info, warn or error" },
        { "TALLY_GRPC_MAX_MESSAGE_BYTES", CFG_INT, "4194304", 1024, 64 << 20, 0,
          &c->max_message_bytes, "largest request or reply message" },
        { "TALLY_GRPC_KEEPALIVE_MS", CFG_INT, "60000", 1000, 86400000, 0, &c->keepalive_ms,
          "server keepalive ping interval" },
        { "TALLY_GRPC_KEEPALIVE_TIMEOUT_MS", CFG_INT, "20000", 1000, 600000, 0,
          &c->keepalive_timeout_ms, "how long a keepalive ping may go unanswered" },
        { "TALLY_GRPC_MAX_CONNECTION_AGE_MS", CFG_INT, "0", 0, 86400000, 0,
          &c->max_connection_age_ms,
          "close connections after this age so clients rebalance across replicas (0 = never)" },
        { "TALLY_GRPC_MAX_CONNECTION_IDLE_MS", CFG_INT, "0", 0, 86400000, 0,
          &c->max_connection_idle_ms, "close idle connections after this long (0 = never)" },
        { "TALLY_GRPC_MAX_CALLS_PER_CONNECTION", CFG_INT, "0", 0, 100000, 0,
          &c->max_calls_per_connection,
          "calls one connection may have served at once; more get RESOURCE_EXHAUSTED at once "
          "(0 = no limit; below TALLY_WORKERS, no caller holds every worker)" },
        { "TALLY_GRPC_MAX_CONCURRENT_STREAMS", CFG_INT, "1000", 1, 100000, 0,
          &c->max_concurrent_streams,
          "calls one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): "
          "a client's further calls wait on its side, so no connection queues more in the server" },
        { "TALLY_GRPC_MAX_STREAMS", CFG_INT, "10000", 1, 1000000, 0, &c->max_streams,
          "streaming calls (WatchDashboard, Health/Watch) open at once in the process; more get "
          "RESOURCE_EXHAUSTED" },
        { "TALLY_SHUTDOWN_GRACE_MS", CFG_INT, "10000", 0, 600000, 0, &c->shutdown_grace_ms,
          "on SIGTERM, how long in-flight calls may take before they are cancelled" },
        { "TALLY_SHUTDOWN_DRAIN_MS", CFG_INT, "0", 0, 600000, 0, &c->drain_ms,
          "on SIGTERM, how long to answer NOT_SERVING before refusing new calls" },
        { "TALLY_TLS_CERT", CFG_FILE, "", 0, 0, 0, &c->tls_cert,
          "server certificate chain (PEM); set with TALLY_TLS_KEY to serve TLS" },
        { "TALLY_TLS_KEY", CFG_FILE, "", 0, 0, CFG_SECRET, &c->tls_key,
          "server private key (PEM)" },
        { "TALLY_TLS_CLIENT_CA", CFG_FILE, "", 0, 0, 0, &c->tls_client_ca,
          "CA bundle (PEM) that client certificates must chain to: mutual TLS" },
    };
    memcpy(out, vars, sizeof(vars));
}
