/*
 * cfg: configuration from TALLY_* environment variables, checked at start.
 *
 * A service describes its variables in a table of cfg_var (name, type, default, bounds,
 * destination). cfg_load() reads them all and reports every problem at once, one line per
 * variable ("TALLY_WORKERS: must be an integer from 1 to 256, got \"abc\""), so an operator
 * fixes a manifest in one go; the caller prints the lines and exits non-zero. Values are
 * checked for form only (a DSN parses, a port is in range): whether PostgreSQL answers is the
 * readiness probe's business, not the configuration's.
 *
 * String destinations point into the environment or at the table's default: they live as long
 * as the process and must not be freed.
 */
#ifndef TALLY_CFG_H
#define TALLY_CFG_H

#include <stdbool.h>
#include <stddef.h>

enum cfg_type {
    CFG_STR,       /* const char **; any text (may be empty unless CFG_REQUIRED) */
    CFG_INT,       /* long long *; an integer within [min, max] */
    CFG_BOOL,      /* bool *; true/false/1/0/yes/no/on/off */
    CFG_HOSTPORT,  /* cfg_hostport *; "host:port", "[v6]:port" or ":port"; port 0..65535 */
    CFG_PG_DSN,    /* const char **; a libpq conninfo string or postgresql:// URI */
    CFG_REDIS_URL, /* cfg_redis *; redis://[user[:password]@]host[:port][/db] (user and
                      password percent-encoded; an IPv6 host in brackets, stored without);
                      empty (if allowed): host ""; the password is never shown in an error */
    CFG_LOG_LEVEL, /* int *; debug|info|warn|error */
    CFG_FILE,      /* const char **; empty, or a readable file */
};

#define CFG_REQUIRED 0x1 /* an empty value is a problem */
#define CFG_SECRET   0x2 /* never logged */

typedef struct cfg_hostport {
    char host[256]; /* "" means every interface */
    int port;
} cfg_hostport;

/*
 * A Redis to use: redis://[user[:password]@]host[:port][/db]. With a password, every connection
 * begins with AUTH (as user, or as the default user when none is given: requirepass).
 */
typedef struct cfg_redis {
    char host[256];
    int port;
    int db;
    char user[128];     /* "" when none; a user needs a password (cfg_redis_password_file) */
    char password[256]; /* "" when none; never logged */
} cfg_redis;

typedef struct cfg_var {
    const char *name; /* the full variable name, TALLY_... */
    enum cfg_type type;
    const char *def;    /* used when the variable is unset or empty */
    long long min, max; /* CFG_INT bounds, inclusive */
    int flags;
    void *dest;
    const char *help; /* one line for docs and --help */
} cfg_var;

/* Settings every service has. */
typedef struct cfg_common {
    cfg_hostport grpc_listen;
    cfg_hostport http_listen;
    const char *pg_dsn;
    cfg_redis redis;
    long long workers;
    int log_level;
    long long max_message_bytes;
    long long keepalive_ms;
    long long keepalive_timeout_ms;
    long long max_connection_age_ms;
    long long max_connection_idle_ms;
    long long max_calls_per_connection;
    long long max_concurrent_streams;
    long long max_streams;
    long long shutdown_grace_ms;
    long long drain_ms;
    const char *tls_cert;
    const char *tls_key;
    const char *tls_client_ca;
    const char *redis_password_file;
} cfg_common;

#define CFG_COMMON_NVARS 20

/*
 * Fills out[0..CFG_COMMON_NVARS) with the common variables writing into c; grpc_port and
 * http_port are the service's default ports on 127.0.0.1.
 */
void cfg_common_vars(cfg_common *c, cfg_var *out, int grpc_port, int http_port);

/*
 * Reads every variable of vars into its destination. Returns 0, or TALLY_EINVAL with one line
 * per problem in err (NUL-terminated, cut to errlen). Unknown TALLY_* variables in the
 * environment are listed in warn (one per line) but are not an error, so that one ConfigMap
 * can serve several services.
 */
int cfg_load(const cfg_var *vars, size_t n, char *err, size_t errlen, char *warn, size_t warnlen);

/* Parsers, exposed for the tests and for flags of command-line tools. 0 or TALLY_EINVAL. */
int cfg_parse_hostport(const char *s, cfg_hostport *out);
int cfg_parse_redis_url(const char *s, cfg_redis *out);
int cfg_parse_bool(const char *s, bool *out);

/*
 * The secret in file path: its content without a final newline (and CR). 0, or TALLY_EINVAL
 * with why set (unreadable, empty, longer than outlen - 1, or more than one line).
 */
int cfg_read_secret(const char *path, char *out, size_t outlen, char *why, size_t whylen);

/*
 * The whole of the file at path (at most max bytes), NUL-terminated, malloc'd: the caller frees
 * it. NULL with why set ("cannot read PATH", "PATH is larger than MAX bytes").
 */
char *cfg_read_file(const char *path, size_t max, char *why, size_t whylen);

/*
 * Applies TALLY_REDIS_PASSWORD_FILE (path; "" or NULL for none) to r: its content becomes the
 * password, unless r's URL gave one (an error: two sources of one secret); then a user must
 * have a password. 0 or TALLY_EINVAL with why set.
 */
int cfg_redis_password_file(cfg_redis *r, const char *path, char *why, size_t whylen);

/* url with its password, if any, replaced by "***" (for messages). */
void cfg_redis_url_redact(const char *url, char *out, size_t len);

/* "host:port" as gRPC and humans want it ("0.0.0.0:50051", "[::1]:50051"). */
void cfg_hostport_str(const cfg_hostport *hp, char *buf, size_t len);

#endif
