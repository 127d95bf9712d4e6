/*
 * tally_int: what the parts of the `tally` command-line client share.
 *
 * main.c holds the commands and their help, and parses the command line into a cli (global
 * options, the subcommand, and every option given, in order) for the command to run; opts.c
 * the options and what a command reads of them; call.c the calls to the services; cmd.c the
 * small commands; dash.c the dashboard and its watch loop; verify.c `tally verify`; lag.c
 * `tally lag`; dlq.c and dlq_act.c `tally dlq`; rebuild.c `tally rebuild`. Nothing calls back into
 * main.c.
 *
 * Exit codes: 0 done, 1 the call failed (printed as "tally: <CODE>: <details>"), 2 a usage
 * error (printed with a pointer to --help). A command returns its exit code.
 */
#ifndef TALLY_TALLY_INT_H
#define TALLY_TALLY_INT_H

#include "cfg.h"
#include "gclient.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* Every option of every command; their names are in opts.c, which command takes which in
 * main.c. */
enum cli_opt {
    OPT_NONE,
    /* global */
    OPT_HELP,
    OPT_COMMAND,
    OPT_QUERY,
    OPT_TLS_CA,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_TOKEN,
    OPT_TIMEOUT,
    /* commands */
    OPT_JSON,
    OPT_TENANT,
    OPT_NAME,
    OPT_TIME_ZONE,
    OPT_ID,
    OPT_CATEGORY,
    OPT_PRIORITY,
    OPT_TITLE,
    OPT_DESCRIPTION,
    OPT_CUSTOMER,
    OPT_KEY,
    OPT_COMPLAINT,
    OPT_AGENT,
    OPT_EXPECTED,
    OPT_TO,
    OPT_NOTE,
    OPT_ACTOR,
    /* dashboard */
    OPT_DAYS,
    OPT_FROM,
    OPT_GRANULARITY,
    OPT_GROUP_BY,
    OPT_LIMIT,
    OPT_AFTER,
    OPT_FAIL_IF_STALE,
    OPT_WATCH,
    OPT_INTERVAL,
    OPT_ONCE,
    OPT_ASCII,
    /* verify */
    OPT_SETTLE_MS,
    OPT_PG_DSN,
    OPT_REDIS_URL,
    /* lag, dlq */
    OPT_PARTITION,
    OPT_PARTITIONS,
    OPT_REASON,
    /* rebuild */
    OPT_ALL,
    OPT_ABORT,
    OPT_BATCH,
    OPT_LEASE_MS,
    OPT_WINDOW,
    /* token */
    OPT_ROLE,
    OPT_TTL,
    OPT_SUBJECT,
    OPT_KID,
    OPT_ALG,
    OPT_KEY_FILE,
    OPT_ISSUER,
    OPT_AUDIENCE,
    OPT_COUNT
};

typedef struct cli_hit {
    int id;
    const char *name;  /* as typed, e.g. "--tenant" */
    const char *value; /* NULL for a switch; borrowed from argv */
} cli_hit;

typedef struct cli {
    const char *prog;    /* the command path for messages: "tally tenant put" */
    const char *command; /* target of command-svc */
    const char *query;   /* target of query-svc */
    const char *tls_ca, *tls_cert, *tls_key, *token;
    int timeout_ms;
    cli_hit *hits; /* the command's options in the order given; owned by main */
    int nhits;
} cli;

/* ---- opts.c ---- */

/* An option's name as typed ("--tenant", short_name 'h' for "-h"), and whether it takes a value. */
typedef struct cli_opt_def {
    const char *name;
    char short_name;
    int id;
    bool value;
} cli_opt_def;

/* The option arg[0..len) names ("--tenant", "-h"), or NULL. */
const cli_opt_def *cli_find_opt(const char *arg, size_t len);
/* Whether option id is a global one (it may come before the command). */
bool cli_is_global(int id);

/* Prints "tally: <what>" and the --help hint to stderr; returns EXIT_USAGE. */
int cli_usage_error(const cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last value given for option id, or NULL. */
const char *cli_get(const cli *c, int id);
/* The last value given for option id, or fallback. */
const char *cli_get_or(const cli *c, int id, const char *fallback);
/* Whether switch or option id was given. */
bool cli_has(const cli *c, int id);
/* The name the option was given as (for messages); a canonical name if it was not given. */
const char *cli_name(const cli *c, int id);
/* The value of a required option; NULL after printing a usage error (then return EXIT_USAGE). */
const char *cli_need(const cli *c, int id);

/* Parsers of option values: 0, or a usage error printed and EXIT_USAGE returned. */
int cli_int(const cli *c, int id, int64_t lo, int64_t hi, int64_t *out);
int cli_seconds(const cli *c, int id, double lo, double hi, double *out);
int cli_priority(const cli *c, const char *name, const char *value, int *out);
int cli_status(const cli *c, const char *name, const char *value, int *out);
/* "ID:VERSION", both >= 1. */
int cli_token(const cli *c, int id, int64_t *complaint, int64_t *version);

/* The environment variable name, or NULL when it is unset or empty. */
const char *cli_env(const char *name);

/* The Redis of --redis-url, else $TALLY_REDIS_URL, into out (commands that read Redis). */
int cli_redis(const cli *c, cfg_redis *out);

/*
 * The stores of the commands that read them directly (verify, lag): *dsn from --pg-dsn, else
 * $TALLY_PG_DSN (NULL when neither is set or it is empty: then a usage error if need_pg), and
 * *redis from --redis-url, else $TALLY_REDIS_URL (required). EXIT_OK or a usage error.
 */
int cli_stores(const cli *c, bool need_pg, const char **dsn, cfg_redis *redis);

/* The stream partitions: --partitions, else $TALLY_STREAM_PARTITIONS, else 1. */
int cli_partitions(const cli *c, int *out);

/* ---- call.c ---- */

/* A client for target (command or query) with the TLS options; NULL after printing why. */
gc_client *cli_connect(const cli *c, const char *target, int max_reconnect_backoff_ms);

/*
 * One unary call (gc_call_msg with the bearer token and the --timeout): packs req, calls method,
 * and unpacks the reply with rd into *reply (free it with protobuf_c_message_free_unpacked). 0
 * on OK; otherwise -1 with "CODE: details" in err.
 */
int cli_invoke(const cli *c, gc_client *gc, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply, char *err,
               size_t errlen);

/* As cli_invoke, printing "tally: CODE: details" on failure; returns EXIT_OK or EXIT_FAIL. */
int cli_call(const cli *c, gc_client *gc, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply);

/* As cli_call, over a connection to command-svc of its own (for a command of one call). */
int cli_call_command(const cli *c, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply);

/* ---- the commands (cmd.c, dash.c, verify.c, lag.c) ---- */

int cli_run_tenant_put(const cli *c);
int cli_run_category_put(const cli *c);
int cli_run_agent_put(const cli *c);
int cli_run_create(const cli *c);
int cli_run_assign(const cli *c);
int cli_run_move(const cli *c);
int cli_run_get(const cli *c);
int cli_run_history(const cli *c);
int cli_run_dashboard(const cli *c);
int cli_run_verify(const cli *c);
int cli_run_lag(const cli *c);
int cli_run_dlq_list(const cli *c);
int cli_run_dlq_show(const cli *c);
int cli_run_dlq_replay(const cli *c);
int cli_run_dlq_drop(const cli *c);
int cli_run_rebuild(const cli *c);
int cli_run_token(const cli *c);

#endif
