/*
 * log: JSON log lines on stderr, one object per line.
 *
 *   {"ts":"2026-11-23T03:28:49.123Z","level":"info","service":"command-svc",
 *    "msg":"grpc server listening","port":50051}
 *
 * Fields are typed (LOG_STR, LOG_INT, LOG_DBL, LOG_BOOL) and escaped; a line is written with
 * one write(2) of at most PIPE_BUF bytes, so lines of concurrent threads never interleave, even
 * through a pipe. A line longer than
 * LOG_LINE_MAX is cut at a field boundary and marked "truncated":true. Messages below the
 * current level cost one atomic load. Thread-safe; log_init() is called once at start.
 */
#ifndef TALLY_LOG_H
#define TALLY_LOG_H

#include <stdbool.h>
#include <stddef.h>

/* PIPE_BUF: a write of at most this many bytes to a pipe is atomic. */
#define LOG_LINE_MAX 4096

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

enum log_type { LOG_T_NONE, LOG_T_STR, LOG_T_INT, LOG_T_DBL, LOG_T_BOOL };

typedef struct log_field {
    const char *key;
    enum log_type type;
    union {
        const char *s;
        long long i;
        double d;
        bool b;
    } v;
} log_field;

#define LOG_STR(k, val)  ((log_field){ .key = (k), .type = LOG_T_STR, .v.s = (val) })
#define LOG_INT(k, val)  ((log_field){ .key = (k), .type = LOG_T_INT, .v.i = (long long)(val) })
#define LOG_DBL(k, val)  ((log_field){ .key = (k), .type = LOG_T_DBL, .v.d = (double)(val) })
#define LOG_BOOL(k, val) ((log_field){ .key = (k), .type = LOG_T_BOOL, .v.b = (bool)(val) })

/* Sets the service name of every line and the lowest level written. The name is copied. */
void log_init(const char *service, enum log_level level);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* "debug", "info", "warn" (or "warning"), "error" to a level; -1 for anything else. */
int log_level_parse(const char *s);

/* Writes one line; fields[0] is ignored (see LOG_FIELDS), fields[1..n-1] are written. */
void log_emit(enum log_level level, const char *msg, const log_field *fields, int n);

#define LOG_FIELDS(...)                          \
    (const log_field[]){ { 0 }, ##__VA_ARGS__ }, \
        (int)(sizeof((const log_field[]){ { 0 }, ##__VA_ARGS__ }) / sizeof(log_field))

#define log_at(level, msg, ...)                                \
    do {                                                       \
        if (log_enabled(level))                                \
            log_emit((level), (msg), LOG_FIELDS(__VA_ARGS__)); \
    } while (0)

#define log_debug(msg, ...) log_at(LOG_DEBUG, msg, ##__VA_ARGS__)
#define log_info(msg, ...)  log_at(LOG_INFO, msg, ##__VA_ARGS__)
#define log_warn(msg, ...)  log_at(LOG_WARN, msg, ##__VA_ARGS__)
#define log_error(msg, ...) log_at(LOG_ERROR, msg, ##__VA_ARGS__)

/*
 * Appends s to buf[*len..cap) as a JSON string body (no quotes), escaping as JSON requires and
 * replacing invalid UTF-8 with U+FFFD. Returns false (and appends nothing) if it does not fit.
 * Shared by the metrics and HTTP code.
 */
bool log_json_escape(char *buf, size_t *len, size_t cap, const char *s);

#endif
