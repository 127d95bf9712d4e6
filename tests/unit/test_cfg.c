/* cfg: parsing of each type, and every problem reported at once naming its variable. */
#include "cfg.h"
#include "err.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

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
    const char *bad[] = { "http://x:1/0",   "redis://",      "redis://:6379",   "redis://h:0",
                          "redis://h:1/16", "redis://h:1/x", "redis://h:99999", NULL };
    for (int i = 0; bad[i]; i++)
        cr_assert_eq(cfg_parse_redis_url(bad[i], &r), TALLY_EINVAL, "accepted \"%s\"", bad[i]);
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
    cfg_common_vars(&c, vars, 50051, 9090);
    for (int i = 0; i < CFG_COMMON_NVARS; i++)
        unsetenv(vars[i].name);
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
