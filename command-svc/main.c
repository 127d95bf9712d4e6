/*
 * command-svc: the write side. Serves tally.v1.ComplaintCommands over PostgreSQL and runs the
 * outbox relay to Redis Streams. `command-svc migrate` applies the schema migrations and exits
 * (a Kubernetes Job runs it); the service itself refuses a schema it was not built for.
 */
#include "cmd.h"
#include "err.h"
#include "log.h"
#include "migrate.h"
#include "probe.h"
#include "relay.h"
#include "stream.h"
#include "svc.h"
#include "version.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static cmd_config cmds;
static relay_config relay_conf;
static relay *active_relay;
static long long partitions, maxlen, batch, poll_ms, giveup_ms, statement_timeout_ms;
static const char *groups;
static bool relay_on;

static int setup(const svc_env *env, void *arg)
{
    char err[512];
    (void)arg;
    int rc = migrate_check(env->cfg->pg_dsn, err, sizeof(err));
    if (rc != 0) {
        log_error("cannot start: schema check failed", LOG_STR("error", err));
        return rc;
    }
    cmds.pg_dsn = env->cfg->pg_dsn;
    cmds.statement_timeout_ms = statement_timeout_ms;
    if (http_add_ready_check(env->http, "postgres", probe_postgres, (void *)env->cfg->pg_dsn) ||
        http_add_ready_check(env->http, "redis", probe_redis, (void *)&env->cfg->redis))
        return TALLY_ENOMEM;
    if (relay_groups_check(groups, err, sizeof(err)) != 0) {
        log_error("bad configuration", LOG_STR("problem", err));
        return TALLY_EINVAL;
    }
    if (!relay_on) {
        log_info("relay disabled (TALLY_RELAY=false)");
        return 0;
    }
    relay_conf = (relay_config){ .pg_dsn = env->cfg->pg_dsn,
                                 .redis = env->cfg->redis,
                                 .partitions = (int)partitions,
                                 .maxlen = maxlen,
                                 .groups = groups,
                                 .redis_giveup_ms = (int)giveup_ms,
                                 .batch = (int)batch,
                                 .poll_ms = (int)poll_ms,
                                 .metrics = env->metrics };
    active_relay = relay_start(&relay_conf, err, sizeof(err));
    if (!active_relay) {
        log_error("cannot start the relay", LOG_STR("error", err));
        return TALLY_EINTERNAL;
    }
    return 0;
}

static void teardown(void *arg)
{
    (void)arg;
    relay_stop(active_relay);
    active_relay = NULL;
}

/*
 * `command-svc migrate`: only the database variables matter. It runs as the tables' owner
 * (TALLY_PG_MIGRATE_DSN), the services as a member of tally_service (TALLY_PG_DSN), which may
 * not change the schema; one DSN serves both where they are the same role.
 */
static int run_migrate(void)
{
    const char *dsn = NULL, *owner = NULL;
    int level = LOG_INFO;
    char err[1024], warn[1024];
    const cfg_var vars[] = {
        { "TALLY_PG_DSN", CFG_PG_DSN, "postgresql://tally@127.0.0.1:15432/tally", 0, 0, CFG_SECRET,
          &dsn, "PostgreSQL" },
        { "TALLY_PG_MIGRATE_DSN", CFG_STR, "", 0, 0, CFG_SECRET, &owner,
          "PostgreSQL as the tables' owner, for the migrations; \"\": TALLY_PG_DSN" },
        { "TALLY_LOG_LEVEL", CFG_LOG_LEVEL, "info", 0, 0, 0, &level, "log level" },
    };
    log_init("command-svc", LOG_INFO);
    if (cfg_load(vars, 3, err, sizeof(err), warn, sizeof(warn)) != 0) {
        err[strcspn(err, "\n")] = '\0';
        log_error("bad configuration", LOG_STR("problem", err));
        return 2;
    }
    log_set_level(level);
    if (migrate_apply(owner[0] ? owner : dsn, err, sizeof(err)) != 0) {
        log_error("migration failed", LOG_STR("error", err));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const cfg_var vars[] = {
        { "TALLY_STREAM_PARTITIONS", CFG_INT, "1", 1, 256, 0, &partitions,
          "number of event streams tally:events:<p>; a tenant's events go to one" },
        { "TALLY_STREAM_MAXLEN", CFG_INT, "1000000", 1000, 1000000000, 0, &maxlen,
          "entries a stream may hold that some consumer group has not acknowledged; at this "
          "length the relay stops publishing and events wait in PostgreSQL" },
        { "TALLY_STREAM_GROUPS", CFG_STR, STREAM_GROUP, 0, 0, 0, &groups,
          "consumer groups (comma list) the relay creates on every stream and never trims "
          "below; projector is always one" },
        { "TALLY_RELAY_REDIS_GIVEUP_MS", CFG_INT, "15000", 1000, 3600000, 0, &giveup_ms,
          "a relay leader that fails to publish to Redis this long gives up the leadership" },
        { "TALLY_RELAY", CFG_BOOL, "true", 0, 0, 0, &relay_on,
          "run the outbox relay in this process (one replica is active at a time)" },
        { "TALLY_RELAY_BATCH", CFG_INT, "5000", 1, 10000, 0, &batch, "events per relay pass" },
        { "TALLY_RELAY_POLL_MS", CFG_INT, "1000", 10, 60000, 0, &poll_ms,
          "relay fallback poll; also how often a standby relay tries to take over" },
        { "TALLY_PG_STATEMENT_TIMEOUT_MS", CFG_INT, "10000", 100, 600000, 0, &statement_timeout_ms,
          "longest a statement may run, whatever the call's deadline" },
    };
    if (version_asked(argc, argv, "command-svc"))
        return 0;
    if (argc > 1 && strcmp(argv[1], "migrate") == 0)
        return run_migrate();
    if (argc > 1) {
        fprintf(stderr, "usage: command-svc [migrate | --version]\n");
        return 2;
    }
    svc_def def = { .name = "command-svc",
                    .grpc_port = 50051,
                    .http_port = 9091,
                    .services = &cmd_service,
                    .nservices = 1,
                    .vars = vars,
                    .nvars = sizeof(vars) / sizeof(vars[0]),
                    .setup = setup,
                    .teardown = teardown,
                    .worker_init = cmd_worker_new,
                    .worker_free = cmd_worker_free,
                    .call_begin = cmd_call_begin,
                    .arg = &cmds };
    return svc_main(&def);
}
