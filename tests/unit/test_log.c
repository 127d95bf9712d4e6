/* log: JSON lines on stderr, escaped, typed, filtered by level, cut safely. */
#include "log.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int saved = -1, pipefd[2];

/* Redirects stderr into a pipe; capture_end returns what was written. */
static void capture_begin(void)
{
    cr_assert_eq(pipe(pipefd), 0);
    saved = dup(STDERR_FILENO);
    dup2(pipefd[1], STDERR_FILENO);
    close(pipefd[1]);
}

static char *capture_end(char *buf, size_t len)
{
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = read(pipefd[0], buf, len - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(pipefd[0]);
    return buf;
}

Test(log, writes_one_json_object_per_line_with_typed_fields)
{
    char out[LOG_LINE_MAX * 2];
    log_init("unit-svc", LOG_INFO);
    capture_begin();
    log_info("hello \"world\"", LOG_STR("addr", "a\nb\\c"), LOG_INT("port", 50051),
             LOG_BOOL("tls", false), LOG_DBL("ratio", 0.5), LOG_STR("none", NULL));
    capture_end(out, sizeof(out));
    cr_assert(strncmp(out, "{\"ts\":\"", 7) == 0, "%s", out);
    cr_assert(strstr(out, "\"level\":\"info\",\"service\":\"unit-svc\","
                          "\"msg\":\"hello \\\"world\\\"\",\"addr\":\"a\\nb\\\\c\","
                          "\"port\":50051,\"tls\":false,\"ratio\":0.5,\"none\":null}\n"),
              "%s", out);
    cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "exactly one line: %s", out);
}

Test(log, filters_by_level)
{
    char out[LOG_LINE_MAX];
    log_init("unit-svc", LOG_WARN);
    capture_begin();
    log_info("quiet");
    log_debug("quieter");
    log_warn("loud");
    capture_end(out, sizeof(out));
    cr_assert_null(strstr(out, "quiet"), "%s", out);
    cr_assert_not_null(strstr(out, "\"level\":\"warn\""), "%s", out);
    cr_assert(!log_enabled(LOG_INFO));
    cr_assert(log_enabled(LOG_ERROR));
}

Test(log, escapes_control_bytes_and_invalid_utf8)
{
    char out[LOG_LINE_MAX];
    log_init("unit-svc", LOG_DEBUG);
    capture_begin();
    log_error("x", LOG_STR("v", "\x01\xff\xc3\xa9\xed\xa0\x80"));
    capture_end(out, sizeof(out));
    /* \x01 escaped; \xff and the surrogate bytes replaced; the valid e-acute kept. */
    cr_assert_not_null(strstr(out, "\"v\":\"\\u0001\xef\xbf\xbd\xc3\xa9\xef\xbf\xbd"), "%s", out);
}

Test(log, a_long_field_is_dropped_not_cut_mid_value)
{
    static char big[LOG_LINE_MAX * 2];
    char out[LOG_LINE_MAX * 2];
    memset(big, 'x', sizeof(big) - 1);
    log_init("unit-svc", LOG_INFO);
    capture_begin();
    log_info("big", LOG_INT("before", 1), LOG_STR("huge", big));
    capture_end(out, sizeof(out));
    cr_assert_lt(strlen(out), (size_t)LOG_LINE_MAX);
    cr_assert_not_null(strstr(out, "\"before\":1,\"truncated\":true}\n"), "%.200s", out);
}

Test(log, parses_level_names)
{
    cr_assert_eq(log_level_parse("debug"), LOG_DEBUG);
    cr_assert_eq(log_level_parse("INFO"), LOG_INFO);
    cr_assert_eq(log_level_parse("warning"), LOG_WARN);
    cr_assert_eq(log_level_parse("error"), LOG_ERROR);
    cr_assert_eq(log_level_parse("loud"), -1);
    cr_assert_eq(log_level_parse(NULL), -1);
}
