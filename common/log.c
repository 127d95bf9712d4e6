#include "log.h"

#include "utf8.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int min_level = LOG_INFO;
static char service_name[64] = "tally";

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_init(const char *service, enum log_level level)
{
    snprintf(service_name, sizeof(service_name), "%s", service ? service : "tally");
    log_set_level(level);
}

void log_set_level(enum log_level level)
{
    atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
}

bool log_enabled(enum log_level level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

int log_level_parse(const char *s)
{
    if (!s)
        return -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return LOG_WARN;
    return -1;
}

bool log_json_escape(char *buf, size_t *len, size_t cap, const char *str)
{
    size_t n = *len;
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        char tmp[8];
        const char *out = tmp;
        size_t outlen = 0, adv = 1;
        if (*s == '"' || *s == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*s;
            outlen = 2;
        } else if (*s == '\n') {
            out = "\\n", outlen = 2;
        } else if (*s == '\t') {
            out = "\\t", outlen = 2;
        } else if (*s == '\r') {
            out = "\\r", outlen = 2;
        } else if (*s < 0x20 || *s == 0x7f) {
            outlen = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", *s);
        } else if (*s < 0x80) {
            tmp[0] = (char)*s;
            outlen = 1;
        } else if ((adv = utf8_seq(s, 4)) != 0) { /* a NUL stops it before the end */
            out = (const char *)s, outlen = adv;
        } else {
            out = "\xef\xbf\xbd", outlen = 3, adv = 1;
        }
        if (n + outlen >= cap)
            return false;
        memcpy(buf + n, out, outlen);
        n += outlen;
        s += adv;
    }
    *len = n;
    return true;
}

static bool put(char *buf, size_t *len, size_t cap, const char *s)
{
    size_t l = strlen(s);
    if (*len + l >= cap)
        return false;
    memcpy(buf + *len, s, l);
    *len += l;
    return true;
}

static bool put_field(char *buf, size_t *len, size_t cap, const log_field *f)
{
    char num[64];
    size_t start = *len;
    bool ok = put(buf, len, cap, ",\"") && log_json_escape(buf, len, cap, f->key) &&
              put(buf, len, cap, "\":");
    switch (f->type) {
    case LOG_T_STR:
        if (!f->v.s) {
            ok = ok && put(buf, len, cap, "null");
            break;
        }
        ok = ok && put(buf, len, cap, "\"") && log_json_escape(buf, len, cap, f->v.s) &&
             put(buf, len, cap, "\"");
        break;
    case LOG_T_INT:
        snprintf(num, sizeof(num), "%lld", f->v.i);
        ok = ok && put(buf, len, cap, num);
        break;
    case LOG_T_DBL:
        if (f->v.d != f->v.d || f->v.d > 1e308 || f->v.d < -1e308)
            snprintf(num, sizeof(num), "null");
        else
            snprintf(num, sizeof(num), "%.6g", f->v.d);
        ok = ok && put(buf, len, cap, num);
        break;
    case LOG_T_BOOL:
        ok = ok && put(buf, len, cap, f->v.b ? "true" : "false");
        break;
    case LOG_T_NONE:
        ok = ok && put(buf, len, cap, "null");
        break;
    }
    if (!ok)
        *len = start;
    return ok;
}

void log_emit(enum log_level level, const char *msg, const log_field *fields, int n)
{
    char buf[LOG_LINE_MAX];
    size_t len = 0, cap = sizeof(buf) - 32; /* room for the truncation mark and "}\n" */
    struct timespec ts;
    struct tm tm;
    char when[64];
    int lv = level < LOG_DEBUG || level > LOG_ERROR ? LOG_ERROR : (int)level;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000) % 1000);

    put(buf, &len, cap, "{\"ts\":\"");
    put(buf, &len, cap, when);
    put(buf, &len, cap, "\",\"level\":\"");
    put(buf, &len, cap, level_names[lv]);
    put(buf, &len, cap, "\",\"service\":\"");
    log_json_escape(buf, &len, cap, service_name);
    put(buf, &len, cap, "\",\"msg\":\"");
    bool whole = log_json_escape(buf, &len, cap - 2, msg ? msg : "");
    put(buf, &len, cap, "\"");
    for (int i = 1; whole && i < n; i++)
        whole = put_field(buf, &len, cap, &fields[i]);
    if (!whole)
        put(buf, &len, sizeof(buf), ",\"truncated\":true");
    put(buf, &len, sizeof(buf), "}\n");

    for (size_t off = 0; off < len;) {
        ssize_t w = write(STDERR_FILENO, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}
