/*
 * query-svc: the read side. Serves tally.v1.Dashboard from the Redis read model that the
 * projector keeps; stateless, so it scales out behind a load balancer. Reads may go to a Redis
 * replica (TALLY_REDIS_READ_URL).
 */
#include "err.h"
#include "log.h"
#include "probe.h"
#include "query.h"
#include "svc.h"
#include "version.h"
#include "watch.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static query_config conf;
static cfg_redis read_url;
static long long redis_timeout_ms, token_wait_ms, watch_floor_ms;

static int setup(const svc_env *env, void *arg)
{
    (void)arg;
    conf.redis = env->cfg->redis;
    if (read_url.host[0]) {
        conf.redis = read_url;
        char why[300];
        if (!read_url.user[0] && !read_url.password[0]) { /* a replica: the same user */
            snprintf(conf.redis.user, sizeof(conf.redis.user), "%s", env->cfg->redis.user);
            snprintf(conf.redis.password, sizeof(conf.redis.password), "%s",
                     env->cfg->redis.password);
        } else if (cfg_redis_password_file(&conf.redis, NULL, why, sizeof(why)) != 0) {
            log_error("bad configuration", LOG_STR("problem", "TALLY_REDIS_READ_URL"),
                      LOG_STR("error", why));
            return TALLY_EINVAL;
        }
    }
    conf.redis_timeout_ms = redis_timeout_ms;
    conf.token_wait_ms = token_wait_ms;
    log_info("reading the read model",
             LOG_STR("from", read_url.host[0] ? "TALLY_REDIS_READ_URL" : "TALLY_REDIS_URL"),
             LOG_STR("host", conf.redis.host), LOG_INT("port", conf.redis.port));
    if (watch_start(&conf, watch_floor_ms, env->metrics) != 0) {
        log_error("cannot start the WatchDashboard hub");
        return TALLY_ENOMEM;
    }
    if (query_metrics(&conf, env->metrics) != 0 ||
        http_add_ready_check(env->http, "redis", probe_redis, (void *)&conf.redis))
        return TALLY_ENOMEM;
    return 0;
}

static void teardown(void *arg)
{
    (void)arg;
    watch_stop();
}

int main(int argc, char **argv)
{
    int args = version_only_args(argc, argv, "query-svc");
    if (args >= 0)
        return args;
    static const cfg_var vars[] = {
        { "TALLY_REDIS_READ_URL", CFG_REDIS_URL, "", 0, 0, 0, &read_url,
          "Redis to read the model from, e.g. a replica (empty: TALLY_REDIS_URL); without a "
          "user and password of its own it AUTHs as TALLY_REDIS_URL's user" },
        { "TALLY_QUERY_REDIS_TIMEOUT_MS", CFG_INT, "1000", 10, 60000, 0, &redis_timeout_ms,
          "Redis connect and reply timeout" },
        { "TALLY_QUERY_TOKEN_WAIT_MS", CFG_INT, "2000", 0, 60000, 0, &token_wait_ms,
          "longest wait for a consistency token (within the call's deadline)" },
        { "TALLY_QUERY_WATCH_FLOOR_MS", CFG_INT, "100", 10, 60000, 0, &watch_floor_ms,
          "the least time between two WatchDashboard pages of a stream, whatever it asks" },
    };
    svc_def def = { .name = "query-svc",
                    .grpc_port = 50052,
                    .http_port = 9093,
                    .services = &query_service,
                    .nservices = 1,
                    .vars = vars,
                    .nvars = sizeof(vars) / sizeof(vars[0]),
                    .setup = setup,
                    .teardown = teardown,
                    .worker_init = query_worker_new,
                    .worker_free = query_worker_free,
                    .arg = &conf };
    return svc_main(&def);
}
