/* cfg: parsing of each type, and every problem reported at once naming its variable. */
#include "cfg.h"
#include "err.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The common variables (ports 50051 and 9090) into c, none of them set in the environment. */
static void common_vars_unset(cfg_common *c, cfg_var *vars)
{
    cfg_common_vars(c, vars, 50051, 9090);
    for (int i = 0; i < CFG_COMMON_NVARS; i++)
        unsetenv(vars[i].name);
}

Test(cfg, parses_host_and_port)
{
    cfg_hostport hp;
    cr_assert_eq(cfg_parse_hostport("127.0.0.1:50051", &hp), 0);
    cr_assert_str_eq(hp.host, "127.0.0.1");
    cr_assert_eq(hp.port, 50051);
    cr_assert_eq(cfg_parse_hostport(":8080", &hp), 0);
    cr_assert_str_eq(hp.host, "");
    cr_assert_eq(hp.port, 8080);
    cr_assert_eq(cfg_parse_hostport("[::1]:0", &hp), 0);
    cr_assert_str_eq(hp.host, "[::1]");
    cr_assert_eq(hp.port, 0);
    const char *bad[] = { "",         "localhost", "host:",   "host:65536", "host:-1",
                          "host:80x", "::1:80",    "[::1]80", "a b:80",     NULL };
    for (int i = 0; bad[i]; i++)
        cr_assert_eq(cfg_parse_hostport(bad[i], &hp), TALLY_EINVAL, "accepted \"%s\"", bad[i]);
}

Test(cfg, parses_redis_urls)
{
    cfg_redis r;
    cr_assert_eq(cfg_parse_redis_url("redis://127.0.0.1:16379/3", &r), 0);
    cr_assert_str_eq(r.host, "127.0.0.1");
    cr_assert_eq(r.port, 16379);
    cr_assert_eq(r.db, 3);
    cr_assert_eq(cfg_parse_redis_url("redis://cache", &r), 0);
    cr_assert_eq(r.port, 6379);
    cr_assert_eq(r.db, 0);
    cr_assert_eq(cfg_parse_redis_url("redis://[::1]:6380/2", &r), 0);
    cr_assert_str_eq(r.host, "::1", "an IPv6 address, without brackets for hiredis");
    cr_assert_eq(r.port, 6380);
    cr_assert_eq(r.db, 2);
    cr_assert_eq(cfg_parse_redis_url("redis://u:p@[fd00::5]", &r), 0);
    cr_assert_str_eq(r.host, "fd00::5");
    cr_assert_eq(r.port, 6379);
    const char *bad[] = { "http://x:1/0",
                          "redis://",
                          "redis://:6379",
                          "redis://h:0",
                          "redis://h:1/16",
                          "redis://h:1/x",
                          "redis://h:99999",
                          "redis://[::1",
                          "redis://[]:1",
                          "redis://[::1]x:1",
                          NULL };
    for (int i = 0; bad[i]; i++)
        cr_assert_eq(cfg_parse_redis_url(bad[i], &r), TALLY_EINVAL, "accepted \"%s\"", bad[i]);
}

Test(cfg, parses_redis_urls_with_a_user_and_password)
{
    cfg_redis r;
    cr_assert_eq(cfg_parse_redis_url("redis://tally-projector:s%40cr%3At@10.0.0.5:6380/2", &r), 0);
    cr_assert_str_eq(r.user, "tally-projector");
    cr_assert_str_eq(r.password, "s@cr:t");
    cr_assert_str_eq(r.host, "10.0.0.5");
    cr_assert_eq(r.port, 6380);
    cr_assert_eq(r.db, 2);
    cr_assert_eq(cfg_parse_redis_url("redis://:only-a-password@cache", &r), 0);
    cr_assert_str_eq(r.user, "");
    cr_assert_str_eq(r.password, "only-a-password");
    cr_assert_str_eq(r.host, "cache");
    /* The userinfo ends at the last '@' before the path. */
    cr_assert_eq(cfg_parse_redis_url("redis://u:a@b@h:1", &r), 0);
    cr_assert_str_eq(r.password, "a@b");
    cr_assert_str_eq(r.host, "h");
    /* ... and so does an unencoded '/' (base64, say): the userinfo ends at the last '@'. */
    cr_assert_eq(cfg_parse_redis_url("redis://tally:Zm9v/YmFy@10.0.0.5:6379/1", &r), 0);
    cr_assert_str_eq(r.password, "Zm9v/YmFy");
    cr_assert_str_eq(r.host, "10.0.0.5");
    cr_assert_eq(r.db, 1);
    cr_assert_eq(cfg_parse_redis_url("redis://h:1/0", &r), 0);
    cr_assert_str_eq(r.user, "", "nothing is left of an earlier parse");
    cr_assert_str_eq(r.password, "");
    const char *bad[] = { "redis://u:p%zz@h", "redis://u:p%4@h",   "redis://u:p%00@h",
                          "redis://u:p@",     "redis://u:p@:6379", NULL };
    for (int i = 0; bad[i]; i++)
        cr_assert_eq(cfg_parse_redis_url(bad[i], &r), TALLY_EINVAL, "accepted \"%s\"", bad[i]);
}

Test(cfg, a_redis_password_is_never_shown)
{
    char out[128];
    cfg_redis_url_redact("redis://u:topsecret@h:1/0", out, sizeof(out));
    cr_assert_str_eq(out, "redis://u:***@h:1/0");
    cfg_redis_url_redact("redis://:topsecret@h", out, sizeof(out));
    cr_assert_str_eq(out, "redis://:***@h");
    cfg_redis_url_redact("redis://h:1/0", out, sizeof(out));
    cr_assert_str_eq(out, "redis://h:1/0");
    cfg_redis_url_redact("redis://tally:Zm9v/YmFy@h:x/0", out, sizeof(out));
    cr_assert_str_eq(out, "redis://tally:***@h:x/0");

    cfg_common c;
    cfg_var vars[CFG_COMMON_NVARS];
    char err[2048], warn[512];
    common_vars_unset(&c, vars);
    setenv("TALLY_REDIS_URL", "redis://u:topsecret@h:99999", 1);
    cr_assert_eq(cfg_load(vars, CFG_COMMON_NVARS, err, sizeof(err), warn, sizeof(warn)),
                 TALLY_EINVAL);
    unsetenv("TALLY_REDIS_URL");
    cr_assert_not_null(strstr(err, "TALLY_REDIS_URL: must be redis://"), "%s", err);
    cr_assert_not_null(strstr(err, "redis://u:***@h:99999"), "%s", err);
    cr_assert_null(strstr(err, "topsecret"), "the password is echoed:\n%s", err);
}

/* A file with content (NULL: none) under a fresh temporary name, written to path. */
static void secret_file(char *path, size_t len, const char *content)
{
    snprintf(path, len, "/tmp/tally-test-secret-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
}

Test(cfg, reads_the_redis_password_from_a_file)
{
    char path[64], why[256];
    cfg_redis r;
    char longest[257]; /* the longest password, 255 bytes, with its newline */
    memset(longest, 'p', 255);
    longest[255] = '\n';
    longest[256] = '\0';
    secret_file(path, sizeof(path), longest);
    cr_assert_eq(cfg_parse_redis_url("redis://h:1", &r), 0);
    cr_assert_eq(cfg_redis_password_file(&r, path, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(strlen(r.password), 255);
    unlink(path);
    secret_file(path, sizeof(path), "pa ss\n");
    cr_assert_eq(cfg_parse_redis_url("redis://tally-query@h:1", &r), 0);
    cr_assert_eq(cfg_redis_password_file(&r, NULL, why, sizeof(why)), TALLY_EINVAL,
                 "a user without a password");
    cr_assert_not_null(strstr(why, "tally-query has no password"), "%s", why);
    cr_assert_eq(cfg_redis_password_file(&r, path, why, sizeof(why)), 0, "%s", why);
    cr_assert_str_eq(r.user, "tally-query");
    cr_assert_str_eq(r.password, "pa ss", "the final newline is not part of it");
    cr_assert_eq(cfg_redis_password_file(&r, path, why, sizeof(why)), TALLY_EINVAL,
                 "two sources of one password");
    cr_assert_not_null(strstr(why, "one place"), "%s", why);
    unlink(path);

    char too_long[300];
    memset(too_long, 'p', 256);
    too_long[256] = '\0';
    const char *bad[] = { "", "\n", "one\ntwo\n", too_long, NULL };
    for (int i = 0; bad[i]; i++) {
        cr_assert_eq(cfg_parse_redis_url("redis://h:1", &r), 0);
        secret_file(path, sizeof(path), bad[i]);
        cr_assert_eq(cfg_redis_password_file(&r, path, why, sizeof(why)), TALLY_EINVAL,
                     "accepted \"%s\"", bad[i]);
        cr_assert_str_eq(r.password, "");
        unlink(path);
    }
    cr_assert_eq(cfg_redis_password_file(&r, "/nonexistent/pw", why, sizeof(why)), TALLY_EINVAL);
    cr_assert_eq(cfg_redis_password_file(&r, "", why, sizeof(why)), 0, "none: nothing to do");
}

Test(cfg, parses_bools)
{
    bool b;
    cr_assert(cfg_parse_bool("TRUE", &b) == 0 && b);
    cr_assert(cfg_parse_bool("off", &b) == 0 && !b);
    cr_assert_eq(cfg_parse_bool("maybe", &b), TALLY_EINVAL);
}

Test(cfg, defaults_load_clean)
{
    cfg_common c;
    cfg_var vars[CFG_COMMON_NVARS];
    char err[2048], warn[512];
    common_vars_unset(&c, vars);
    cr_assert_eq(cfg_load(vars, CFG_COMMON_NVARS, err, sizeof(err), warn, sizeof(warn)), 0, "%s",
                 err);
    cr_assert_eq(c.grpc_listen.port, 50051);
    cr_assert_eq(c.http_listen.port, 9090);
    cr_assert_eq(c.workers, 2);
    cr_assert_eq(c.max_message_bytes, 4194304);
    cr_assert_str_eq(c.tls_cert, "");
}

Test(cfg, reports_every_bad_variable_in_one_go)
{
    cfg_common c;
    cfg_var vars[CFG_COMMON_NVARS];
    char err[4096], warn[512];
    cfg_common_vars(&c, vars, 50051, 9090);
    setenv("TALLY_WORKERS", "many", 1);
    setenv("TALLY_REDIS_URL", "http://localhost", 1);
    setenv("TALLY_PG_DSN", "host=x port", 1);
    setenv("TALLY_GRPC_LISTEN", "nope", 1);
    setenv("TALLY_LOG_LEVEL", "loud", 1);
    setenv("TALLY_TLS_CERT", "/nonexistent/cert.pem", 1);
    setenv("TALLY_GRPC_MAX_MESSAGE_BYTES", "10", 1);
    setenv("TALLY_WROKERS", "4", 1);
    cr_assert_eq(cfg_load(vars, CFG_COMMON_NVARS, err, sizeof(err), warn, sizeof(warn)),
                 TALLY_EINVAL);
    const char *named[] = { "TALLY_WORKERS: must be an integer from 1 to 256, got \"many\"\n",
                            "TALLY_REDIS_URL: must be redis://",
                            "TALLY_PG_DSN: is not a valid libpq connection string",
                            "TALLY_GRPC_LISTEN: must be host:port",
                            "TALLY_LOG_LEVEL: must be debug, info, warn or error",
                            "TALLY_TLS_CERT: names a file that cannot be read",
                            "TALLY_GRPC_MAX_MESSAGE_BYTES: must be an integer from 1024",
                            NULL };
    for (int i = 0; named[i]; i++)
        cr_assert_not_null(strstr(err, named[i]), "missing \"%s\" in:\n%s", named[i], err);
    int lines = 0;
    for (const char *p = err; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, 7, "one line per problem:\n%s", err);
    cr_assert_null(strstr(err, "host=x port"), "a secret DSN is echoed:\n%s", err);
    cr_assert_not_null(strstr(warn, "TALLY_WROKERS\n"), "%s", warn);
}

Test(cfg, a_required_variable_must_be_set)
{
    const char *token = NULL;
    cfg_var vars[] = { { "TALLY_TEST_TOKEN", CFG_STR, NULL, 0, 0, CFG_REQUIRED, &token, "" } };
    char err[256], warn[256];
    unsetenv("TALLY_TEST_TOKEN");
    cr_assert_eq(cfg_load(vars, 1, err, sizeof(err), warn, sizeof(warn)), TALLY_EINVAL);
    cr_assert_str_eq(err, "TALLY_TEST_TOKEN: is required and not set\n");
    setenv("TALLY_TEST_TOKEN", "s3cret", 1);
    cr_assert_eq(cfg_load(vars, 1, err, sizeof(err), warn, sizeof(warn)), 0);
    cr_assert_str_eq(token, "s3cret");
}
