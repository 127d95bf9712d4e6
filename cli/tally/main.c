/*
 * tally: the command-line client of Tally for people. This file is the command line itself:
 * the commands, their help, and the parser that turns argv into a cli for the
 * command to run. Global options may come before or after the command; a command's own
 * options come after it. `--name=value` and `--name value` both work; `--` ends the options.
 */
#include "tally_int.h"
#include "version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cmd_def {
    const char *group; /* "tenant" for "tenant put"; NULL for a one-word command */
    const char *name;
    int (*run)(const cli *c);
    int opts[16]; /* the options it takes besides the global ones; 0-terminated */
    const char *summary;
    const char *help; /* usage line(s), blank line, description, options */
} cmd_def;

/* The options every dlq subcommand takes (its help's common part). */
#define DLQ_COMMON_HELP                                                                    \
    "  --tenant ID             only this tenant (its partition)\n"                         \
    "  --complaint N           only this complaint (with --tenant)\n"                      \
    "  --partition P           only tally:dead:<P>\n"                                      \
    "  --partitions N          the partition count (default $TALLY_STREAM_PARTITIONS or\n" \
    "                          1), as command-svc and the projector have it\n"             \
    "  --redis-url URL         Redis, redis://[user:pass@]host[:port][/db] (default "      \
    "$TALLY_REDIS_URL)\n"                                                                  \
    "\n"                                                                                   \
    "Exit status: 0 done, 1 Redis failing (or, for show, no such entry), 2 a usage error.\n"

static const cmd_def cmds[] = {
    { NULL,
      "dashboard",
      cli_run_dashboard,
      { OPT_TENANT, OPT_DAYS, OPT_FROM, OPT_TO, OPT_GRANULARITY, OPT_CATEGORY, OPT_PRIORITY,
        OPT_GROUP_BY, OPT_LIMIT, OPT_AFTER, OPT_FAIL_IF_STALE, OPT_WATCH, OPT_INTERVAL, OPT_ONCE,
        OPT_ASCII },
      "a tenant's dashboard, once or live",
      "usage: tally dashboard --tenant ID [--days N | --from DAY --to DAY] [options]\n"
      "\n"
      "Calls tally.v1.Dashboard/GetDashboard on query-svc and prints the page: freshness, the\n"
      "status counts and today, the volume trend, resolution times, agents, categories and the\n"
      "oldest open complaints. Days are the tenant's local days, YYYY-MM-DD.\n"
      "\n"
      "  --tenant ID             the tenant (required)\n"
      "  --days N                the N days ending today (default 30)\n"
      "  --from DAY --to DAY     an explicit range instead, both included\n"
      "  --granularity G         day (default), week or month buckets for the trend\n"
      "  --category C            only this category (repeat for several)\n"
      "  --priority P            only low, medium, high or urgent (repeat for several)\n"
      "  --group-by G            resolution times by none (default), category, priority or\n"
      "                          category,priority\n"
      "  --limit N               rows in the agent, category and oldest-open tables (1..100,\n"
      "                          default 10)\n"
      "  --after ID:VERSION      wait until that command's effect is in the answer (the token a\n"
      "                          write command prints); the page says STALE if it was not\n"
      "  --fail-if-stale         with --after: fail instead of showing a stale page\n"
      "  -w, --watch             redraw every interval until Ctrl-C\n"
      "  --interval SECONDS      time between redraws (default 2; fractions allowed)\n"
      "  --once                  one page and exit (the default; overrides an earlier --watch)\n"
      "  --ascii                 draw with ASCII only\n"
      "\n"
      "The page is 100 columns wide at most and fits narrower terminals (the terminal's width,\n"
      "or $COLUMNS when the output is not a terminal).\n" },
    { "tenant",
      "put",
      cli_run_tenant_put,
      { OPT_TENANT, OPT_NAME, OPT_TIME_ZONE, OPT_JSON },
      "create or update a tenant",
      "usage: tally tenant put --tenant ID --name NAME --time-zone TZ [--json]\n"
      "\n"
      "Creates the tenant or updates its name and IANA time zone (e.g. Europe/Berlin, UTC).\n"
      "\n"
      "  --json                  print the result as one JSON line\n" },
    { "category",
      "put",
      cli_run_category_put,
      { OPT_TENANT, OPT_ID, OPT_NAME, OPT_JSON },
      "create or rename a category",
      "usage: tally category put --tenant ID --id CATEGORY --name NAME [--json]\n"
      "\n"
      "Creates a category of the tenant or renames it.\n"
      "\n"
      "  --json                  print the result as one JSON line\n" },
    { "agent",
      "put",
      cli_run_agent_put,
      { OPT_TENANT, OPT_ID, OPT_NAME, OPT_JSON },
      "create or rename an agent",
      "usage: tally agent put --tenant ID --id AGENT --name NAME [--json]\n"
      "\n"
      "Creates an agent of the tenant or renames it.\n"
      "\n"
      "  --json                  print the result as one JSON line\n" },
    { NULL,
      "create",
      cli_run_create,
      { OPT_TENANT, OPT_CATEGORY, OPT_PRIORITY, OPT_TITLE, OPT_DESCRIPTION, OPT_CUSTOMER, OPT_KEY,
        OPT_JSON },
      "file a complaint",
      "usage: tally create --tenant ID --category C --priority P --title TEXT [options]\n"
      "\n"
      "Files a complaint (status open, unassigned) and prints its id, version and consistency\n"
      "token. Repeating a call with the same --idempotency-key and content files nothing new\n"
      "and prints the first complaint again.\n"
      "\n"
      "  --priority P            low, medium, high or urgent\n"
      "  --description TEXT      the full text (default empty)\n"
      "  --customer ID           who complains (default tally-cli)\n"
      "  --idempotency-key K     default: a new random key (printed)\n"
      "  --json                  print the result as one JSON line\n" },
    { NULL,
      "assign",
      cli_run_assign,
      { OPT_TENANT, OPT_COMPLAINT, OPT_AGENT, OPT_EXPECTED, OPT_JSON },
      "assign a complaint to an agent",
      "usage: tally assign --tenant ID --complaint N --agent AGENT [--expected-version V]\n"
      "\n"
      "Assigns the complaint to the agent; --agent '' unassigns it.\n"
      "\n"
      "  --expected-version V    fail with ABORTED unless the complaint is at version V\n"
      "                          (default: whatever version it is at now)\n"
      "  --json                  print the result as one JSON line\n" },
    { NULL,
      "move",
      cli_run_move,
      { OPT_TENANT, OPT_COMPLAINT, OPT_TO, OPT_NOTE, OPT_ACTOR, OPT_EXPECTED, OPT_JSON },
      "move a complaint to another status",
      "usage: tally move --tenant ID --complaint N --to STATUS [options]\n"
      "\n"
      "Moves the complaint to open, in_progress, resolved or closed. Allowed moves:\n"
      "open -> in_progress, open -> resolved, in_progress -> resolved, resolved -> closed,\n"
      "resolved -> open (a reopen).\n"
      "\n"
      "  --note TEXT             why, kept in the history\n"
      "  --actor ID              who (default $USER, or tally-cli)\n"
      "  --expected-version V    fail with ABORTED unless the complaint is at version V\n"
      "                          (default: whatever version it is at now)\n"
      "  --json                  print the result as one JSON line\n" },
    { NULL,
      "get",
      cli_run_get,
      { OPT_TENANT, OPT_COMPLAINT, OPT_JSON },
      "show one complaint",
      "usage: tally get --tenant ID --complaint N [--json]\n"
      "\n"
      "Prints the complaint as command-svc has it now (strongly consistent) on one line; the\n"
      "description only with --json.\n"
      "\n"
      "  --json                  print it as one JSON line\n" },
    { NULL,
      "history",
      cli_run_history,
      { OPT_TENANT, OPT_COMPLAINT, OPT_JSON },
      "show a complaint's status history",
      "usage: tally history --tenant ID --complaint N [--json]\n"
      "\n"
      "Prints every status move of the complaint, oldest first, one per line.\n"
      "\n"
      "  --json                  print them as one JSON line\n" },
    { NULL,
      "verify",
      cli_run_verify,
      { OPT_TENANT, OPT_DAYS, OPT_SETTLE_MS, OPT_PG_DSN, OPT_REDIS_URL, OPT_JSON },
      "check the read model against PostgreSQL",
      "usage: tally verify [--tenant ID] [--days N] [--settle-ms MS] [--json]\n"
      "\n"
      "Recomputes the read model's figures from PostgreSQL (the source of truth) and compares\n"
      "them with Redis: the current state (status counts, open backlog, agents' open\n"
      "assignments, applied versions, names) and every day and month key of the whole months\n"
      "holding the last N tenant-local days. Prints each difference (view, key, field,\n"
      "expected, found), then a summary. Figures are compared as of the versions the read model\n"
      "has applied; what lags behind PostgreSQL is re-read after the settle delay and counts\n"
      "only if it still lags (events in flight are not drift). Talks to the stores directly,\n"
      "not to the services.\n"
      "\n"
      "  --tenant ID             only this tenant (default: every tenant)\n"
      "  --days N                the window: the last N local days (default 35, at most 3660)\n"
      "  --settle-ms MS          wait before re-reading what lags (default 5000; 0..600000)\n"
      "  --pg-dsn DSN            PostgreSQL (default $TALLY_PG_DSN)\n"
      "  --redis-url URL         Redis, redis://[user:pass@]host[:port][/db] (default "
      "$TALLY_REDIS_URL)\n"
      "  --json                  one JSON object per difference, then a summary object\n"
      "\n"
      "Exit status: 0 no difference, 1 drift found, 2 a usage error or a store failing.\n" },
    { NULL,
      "lag",
      cli_run_lag,
      { OPT_TENANT, OPT_PARTITIONS, OPT_PG_DSN, OPT_REDIS_URL, OPT_JSON },
      "where the read side is behind: streams, relay, tenants",
      "usage: tally lag [--tenant ID] [--partitions N] [--json]\n"
      "\n"
      "Per partition: the stream's length, the entries the projector group has not read\n"
      "(undelivered) and has not acknowledged (pending), the age of the oldest entry not applied,\n"
      "the completeness watermark and its age, the dead letters. With PostgreSQL: the relay's\n"
      "backlog (unpublished rows, counted up to 100,001) and the tenants of the tenants table;\n"
      "without it the backlog is unknown and the tenants come from a bounded SCAN of Redis. Per\n"
      "tenant: its partition, parked complaints, events applied and the last apply. Read-only;\n"
      "talks to the stores directly, not to the services.\n"
      "\n"
      "  --tenant ID             only this tenant's row\n"
      "  --partitions N          the streams tally:events:0..N-1 (default\n"
      "                          $TALLY_STREAM_PARTITIONS, else 1)\n"
      "  --pg-dsn DSN            PostgreSQL (default $TALLY_PG_DSN; '' for none)\n"
      "  --redis-url URL         Redis, redis://[user:pass@]host[:port][/db] (default "
      "$TALLY_REDIS_URL)\n"
      "  --json                  one JSON object\n"
      "\n"
      "Exit status: 0 read, 1 Redis or PostgreSQL failed, 2 a usage error.\n" },
    { NULL,
      "token",
      cli_run_token,
      { OPT_ROLE, OPT_TENANT, OPT_TTL, OPT_SUBJECT, OPT_ALG, OPT_KID, OPT_KEY_FILE, OPT_ISSUER,
        OPT_AUDIENCE },
      "mint a bearer token (development and tests)",
      "usage: tally token --role ROLE --tenant ID[,ID...] [--ttl SECONDS] [--subject NAME]\n"
      "                   [--alg ALG] [--key-file FILE] [--kid KID] [--issuer ISS]\n"
      "                   [--audience AUD]\n"
      "\n"
      "Signs a JWT that command-svc and query-svc accept, and prints it on stdout: use it as\n"
      "TALLY_TOKEN or --token. The key and the algorithm are the services' own variables, so\n"
      "with the same environment (scripts/stack env) the token fits. In production an identity\n"
      "provider issues tokens; this is for development, tests and the demo.\n"
      "\n"
      "  --role ROLE             writer (commands), manager (dashboards) or admin (everything)\n"
      "  --tenant ID[,ID...]     the tenants it grants; * for all\n"
      "  --ttl SECONDS           lifetime (1..31536000, default 3600)\n"
      "  --subject NAME          its sub claim (default tally-cli)\n"
      "  --alg ALG               HS256, RS256 or ES256 (default $TALLY_AUTH_JWT_ALG or HS256)\n"
      "  --key-file FILE         RS256/ES256: the PEM private key; HS256: a file holding the\n"
      "                          secret (default $TALLY_AUTH_JWT_SECRET_FILE, else\n"
      "                          $TALLY_AUTH_JWT_SECRET)\n"
      "  --kid KID               the key id header (the kid: line of the services' keys file)\n"
      "  --issuer ISS            its iss claim (default $TALLY_AUTH_JWT_ISSUER)\n"
      "  --audience AUD          its aud claim (default $TALLY_AUTH_JWT_AUDIENCE)\n"
      "\n"
      "Exit status: 0 printed, 1 the key cannot be read or used, 2 a usage error.\n" },
    { NULL,
      "rebuild",
      cli_run_rebuild,
      { OPT_TENANT, OPT_ALL, OPT_ABORT, OPT_BATCH, OPT_WINDOW, OPT_LEASE_MS, OPT_PG_DSN,
        OPT_REDIS_URL, OPT_JSON },
      "rebuild a tenant's read model from PostgreSQL, with no downtime",
      "usage: tally rebuild (--tenant ID | --all) [--batch N] [--window N] [--lease-ms MS]\n"
      "                     [--json]\n"
      "       tally rebuild --tenant ID --abort\n"
      "\n"
      "Builds a new generation of the tenant's read model from the PostgreSQL event log while\n"
      "the current one keeps serving; the projector applies live events to both meanwhile.\n"
      "Then the tenant's generation pointer flips in one step and the old generation is\n"
      "deleted in small batches (UNLINK). Query replies of the tenant say rebuilding, with\n"
      "this progress, until the flip. A rebuild whose rebuilder died is resumed by running the\n"
      "same command again (once its lease has expired); a second rebuild of a tenant while\n"
      "one runs is refused. Progress goes to stderr (a bar on a terminal), the result to stdout.\n"
      "\n"
      "  --tenant ID             the tenant\n"
      "  --all                   every tenant of PostgreSQL, one after another\n"
      "  --abort                 give up the tenant's running rebuild (its generation is deleted)\n"
      "  --batch N               events per Redis function call (1..10000, default 500)\n"
      "  --window N              rows of the event log read at once, applied by local day\n"
      "                          (100..1000000, default 20000)\n"
      "  --lease-ms MS           how long a rebuilder that stops answering holds the rebuild\n"
      "                          before another may resume it (1000..3600000, default 15000)\n"
      "  --pg-dsn DSN            PostgreSQL (default $TALLY_PG_DSN)\n"
      "  --redis-url URL         Redis, redis://[user:pass@]host[:port][/db] (default "
      "$TALLY_REDIS_URL)\n"
      "  --json                  progress as JSON lines on stderr, the result as JSON\n"
      "\n"
      "Exit status: 0 rebuilt, 1 failed (another rebuild runs, a store failed: run it again\n"
      "to resume), 2 a usage error.\n" },
    { "dlq",
      "list",
      cli_run_dlq_list,
      { OPT_TENANT, OPT_COMPLAINT, OPT_PARTITION, OPT_PARTITIONS, OPT_REDIS_URL, OPT_JSON },
      "list the parked events (dead letters)",
      "usage: tally dlq list [--tenant ID [--complaint N]] [--partition P] [--json]\n"
      "\n"
      "Lists the dead entries of tally:dead:<p> (every partition, or the tenant's), grouped by\n"
      "complaint in version order: tenant, complaint, version, type, how long ago it was\n"
      "parked, the reason and the dead entry id; whether the complaint is marked parked. With\n"
      "--tenant, also the tenant's marked complaints without dead entries. Then a summary.\n"
      "\n"
      "  --json                  one JSON object per entry, then a summary "
      "object\n" DLQ_COMMON_HELP },
    { "dlq",
      "show",
      cli_run_dlq_show,
      { OPT_TENANT, OPT_COMPLAINT, OPT_ID, OPT_PARTITION, OPT_PARTITIONS, OPT_REDIS_URL, OPT_JSON },
      "show parked events decoded",
      "usage: tally dlq show (--tenant ID --complaint N | --id DEAD-ID) [--json]\n"
      "\n"
      "Prints each dead entry of the complaint (or the one entry) decoded: the reason, the\n"
      "original entry, the envelope's fields and its body's fields.\n"
      "\n"
      "  --id DEAD-ID            one dead entry, by its id in tally:dead:<p>\n"
      "  --json                  one JSON object per entry\n" DLQ_COMMON_HELP },
    { "dlq",
      "replay",
      cli_run_dlq_replay,
      { OPT_TENANT, OPT_COMPLAINT, OPT_PARTITION, OPT_PARTITIONS, OPT_REDIS_URL, OPT_JSON },
      "put parked events back on their streams, once",
      "usage: tally dlq replay [--tenant ID [--complaint N]] [--json]\n"
      "\n"
      "After the cause is fixed: unmarks each complaint that has dead entries (all, the\n"
      "tenant's, or one), puts its parked events back on tally:events:<p> in version order and\n"
      "removes their dead entries. The projector applies them; one that fails again is parked\n"
      "again (a new dead entry), never replayed twice by one run. A second replay finds\n"
      "nothing and does nothing.\n"
      "\n"
      "  --json                  one JSON object per replayed event, then a summary "
      "object\n" DLQ_COMMON_HELP },
    { "dlq",
      "drop",
      cli_run_dlq_drop,
      { OPT_TENANT, OPT_COMPLAINT, OPT_ID, OPT_REASON, OPT_PARTITION, OPT_PARTITIONS, OPT_REDIS_URL,
        OPT_JSON },
      "give up parked events, keeping them with a reason",
      "usage: tally dlq drop (--tenant ID --complaint N | --id DEAD-ID) --reason TEXT [--json]\n"
      "\n"
      "Removes the complaint's dead entries (or one) after copying each, with the reason, the\n"
      "time and $USER, to tally:dlq:dropped; logs each as a JSON line on stderr. The complaint\n"
      "stays marked parked: its figures miss the dropped events until a rebuild.\n"
      "\n"
      "  --reason TEXT           why (required; kept with the entries)\n"
      "  --id DEAD-ID            one dead entry, by its id in tally:dead:<p>\n"
      "  --json                  one JSON object per dropped entry, then a summary "
      "object\n" DLQ_COMMON_HELP },
};
#define N_CMDS (sizeof(cmds) / sizeof(cmds[0]))

static const char global_help[] =
    "global options (before or after the command):\n"
    "  --command HOST:PORT     command-svc (default $TALLY_COMMAND_ADDR or 127.0.0.1:50051)\n"
    "  --query HOST:PORT       query-svc (default $TALLY_QUERY_ADDR or 127.0.0.1:50052)\n"
    "  --tls-ca FILE           use TLS, trusting the root CAs in this PEM file\n"
    "  --tls-cert FILE         with --tls-key: a client certificate for mutual TLS\n"
    "  --tls-key FILE          the client certificate's key\n"
    "  --token TOKEN           send it as a bearer token (default $TALLY_TOKEN)\n"
    "  --timeout MS            deadline of each call (default 5000)\n"
    "  -h, --help              help, for tally or for a command\n"
    "  --version               the version and commit (as the first argument)\n";

static void print_top_help(FILE *f)
{
    fprintf(f, "usage: tally [global options] COMMAND [options]\n"
               "\n"
               "The command-line client of Tally: a terminal dashboard of one tenant, and small\n"
               "commands to write and read complaints by hand.\n"
               "\n"
               "commands:\n");
    for (size_t i = 0; i < N_CMDS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "%s%s%s", cmds[i].group ? cmds[i].group : "",
                 cmds[i].group ? " " : "", cmds[i].name);
        fprintf(f, "  %-22s  %s\n", name, cmds[i].summary);
    }
    fprintf(f,
            "\n%s\nRun 'tally COMMAND --help' for a command's options. Exit status: 0 done, 1 "
            "the call\nfailed, 2 a usage error.\n",
            global_help);
}

static void print_cmd_help(const cmd_def *d)
{
    printf("%s\n%s", d->help, global_help);
}

/* ---------------------------------------------------------------------------------------------
 * Parsing */

static bool takes(const cmd_def *d, int id)
{
    for (int i = 0; d->opts[i]; i++)
        if (d->opts[i] == id)
            return true;
    return false;
}

static const cmd_def *find_cmd(const char *group, const char *name)
{
    for (size_t i = 0; i < N_CMDS; i++) {
        bool same_group =
            group ? cmds[i].group && strcmp(cmds[i].group, group) == 0 : cmds[i].group == NULL;
        if (same_group && strcmp(cmds[i].name, name) == 0)
            return &cmds[i];
    }
    return NULL;
}

static bool is_group(const char *word)
{
    for (size_t i = 0; i < N_CMDS; i++)
        if (cmds[i].group && strcmp(cmds[i].group, word) == 0)
            return true;
    return false;
}

/* Sets the global option of hit h in c; EXIT_OK or a usage error. */
static int set_global(cli *c, const cli_hit *h)
{
    switch (h->id) {
    case OPT_COMMAND:
        c->command = h->value;
        break;
    case OPT_QUERY:
        c->query = h->value;
        break;
    case OPT_TLS_CA:
        c->tls_ca = h->value;
        break;
    case OPT_TLS_CERT:
        c->tls_cert = h->value;
        break;
    case OPT_TLS_KEY:
        c->tls_key = h->value;
        break;
    case OPT_TOKEN:
        c->token = h->value;
        break;
    case OPT_TIMEOUT: {
        char *end;
        long long ms = strtoll(h->value, &end, 10);
        if (end == h->value || *end || ms < 1 || ms > 3600000)
            return cli_usage_error(c, "%s: want milliseconds, 1..3600000, not \"%s\"", h->name,
                                   h->value);
        c->timeout_ms = (int)ms;
        break;
    }
    default:
        break;
    }
    return EXIT_OK;
}

static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && v[0] ? v : fallback;
}

int main(int argc, char **argv)
{
    static char prog[64] = "tally";
    cli c = { .prog = prog, .timeout_ms = 5000 };
    const cmd_def *cmd = NULL;
    const char *group = NULL;
    bool help = false, options_done = false;
    int rc = EXIT_USAGE;
    if (version_asked(argc, argv, "tally"))
        return 0;
    /* gRPC's own log lines would garble the page; GRPC_VERBOSITY=debug (or info, error) shows
     * them. */
    if (!getenv("GRPC_VERBOSITY"))
        gc_quiet();
    c.command = env_or("TALLY_COMMAND_ADDR", "127.0.0.1:50051");
    c.query = env_or("TALLY_QUERY_ADDR", "127.0.0.1:50052");
    c.token = env_or("TALLY_TOKEN", NULL);
    c.hits = calloc((size_t)argc + 1, sizeof(*c.hits));
    if (!c.hits) {
        fprintf(stderr, "tally: out of memory\n");
        return EXIT_FAIL;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = NULL, *value = NULL;
        const cli_opt_def *d;
        size_t len;
        if (!options_done && strcmp(a, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || a[0] != '-' || a[1] == '\0') {
            if (cmd) {
                rc = cli_usage_error(&c, "unexpected argument \"%s\"", a);
                goto out;
            }
            if (group) {
                cmd = find_cmd(group, a);
                if (!cmd) {
                    rc = cli_usage_error(&c, "unknown subcommand \"%s\" (try put)", a);
                    goto out;
                }
            } else if (is_group(a)) {
                group = a;
            } else if (!(cmd = find_cmd(NULL, a))) {
                rc = cli_usage_error(&c, "unknown command \"%s\"", a);
                goto out;
            }
            snprintf(prog, sizeof(prog), "tally%s%s%s%s", group ? " " : "", group ? group : "",
                     cmd ? " " : "", cmd ? cmd->name : "");
            continue;
        }
        eq = a[1] == '-' ? strchr(a, '=') : NULL;
        len = eq ? (size_t)(eq - a) : strlen(a);
        d = cli_find_opt(a, len);
        if (!d) {
            rc = cli_usage_error(&c, "unknown option %.*s", (int)len, a);
            goto out;
        }
        if (!cli_is_global(d->id) && !cmd) {
            rc = cli_usage_error(&c, "%s: give the command first (tally COMMAND %s ...)", d->name,
                                 d->name);
            goto out;
        }
        if (!cli_is_global(d->id) && !takes(cmd, d->id)) {
            rc = cli_usage_error(&c, "unknown option %s", d->name);
            goto out;
        }
        if (d->value && eq) {
            value = eq + 1;
        } else if (d->value) {
            if (i + 1 >= argc) {
                rc = cli_usage_error(&c, "%s needs a value", d->name);
                goto out;
            }
            value = argv[++i];
        } else if (eq) {
            rc = cli_usage_error(&c, "%s takes no value", d->name);
            goto out;
        }
        c.hits[c.nhits++] = (cli_hit){ d->id, d->name, value };
        if (d->id == OPT_HELP)
            help = true;
        else if (cli_is_global(d->id) && (rc = set_global(&c, &c.hits[c.nhits - 1])) != EXIT_OK)
            goto out;
    }
    if (help) {
        if (cmd)
            print_cmd_help(cmd);
        else if (group)
            for (size_t i = 0; i < N_CMDS; i++) {
                if (cmds[i].group && strcmp(cmds[i].group, group) == 0)
                    print_cmd_help(&cmds[i]);
            }
        else {
            print_top_help(stdout);
        }
        rc = EXIT_OK;
        goto out;
    }
    if (!cmd && group) {
        rc = cli_usage_error(&c, "missing the subcommand (put)");
        goto out;
    }
    if (!cmd) {
        print_top_help(stderr);
        rc = EXIT_USAGE;
        goto out;
    }
    if (!c.tls_cert != !c.tls_key) {
        rc = cli_usage_error(&c, "--tls-cert and --tls-key go together");
        goto out;
    }
    if (c.tls_cert && !(c.tls_ca && c.tls_ca[0])) {
        rc = cli_usage_error(&c, "--tls-cert and --tls-key need --tls-ca");
        goto out;
    }
    rc = cmd->run(&c);
out:
    free(c.hits);
    return rc;
}
