/*
 * tally-sim live: a live trickle of commands against command-svc, at about --rate per second.
 *
 * Each tick is one command: a new complaint (CreateComplaint) or the next step of a complaint
 * this run created and that is not closed yet (its "working set"): assign it, start work on
 * it, resolve it, close it, now and then reassign or reopen it. A complaint waits between its
 * steps (seconds to a minute or two, shorter for urgent ones); a tick that finds nothing due
 * files a new complaint while the working set is small, else sends nothing (the rate is then
 * a little below --rate). Every change passes the
 * version the last reply gave as expected_version. A command refused with ABORTED (another
 * writer changed the complaint) or FAILED_PRECONDITION (its status moved meanwhile) is
 * answered by re-reading the complaint with GetComplaint and deciding again, up to
 * LIVE_ATTEMPTS times. Transient failures (gc_transient: UNAVAILABLE, DEADLINE_EXCEEDED, and
 * CANCELLED, which a server shutting down answers) are counted, waited out with a pause, and
 * fatal only after LIVE_DOWN_MS without a successful call; a CreateComplaint that failed that
 * way is sent again with the same idempotency key. Any other error is a bug somewhere and ends
 * the run.
 *
 * The tenants must exist: tally-sim seed with the same --tenants creates them with the same
 * categories and agents (sim_world.h). One line of counts every LIVE_REPORT_MS on
 * stdout; SIGINT or SIGTERM ends the run after the command in flight, with exit code 0.
 */
#include "args.h"
#include "err.h"
#include "gclient.h"
#include "now.h"
#include "sim_gen.h"
#include "sim_int.h"
#include "sim_rpc.h"
#include "sim_world.h"
#include "tally/v1/commands.pb-c.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIVE_WORKING_MAX 4096 /* complaints followed at once */
#define LIVE_DEADLINE_MS 10000
#define LIVE_ATTEMPTS    3 /* of one step, re-reading the complaint in between */
#define LIVE_REPORT_MS   5000
#define LIVE_DOWN_MS     60000 /* command-svc unreachable this long: give up */
#define LIVE_PAUSE_MS    1000  /* after an UNAVAILABLE or DEADLINE_EXCEEDED */

#define OPEN        TALLY__V1__STATUS__STATUS_OPEN
#define IN_PROGRESS TALLY__V1__STATUS__STATUS_IN_PROGRESS
#define RESOLVED    TALLY__V1__STATUS__STATUS_RESOLVED
#define CLOSED      TALLY__V1__STATUS__STATUS_CLOSED

static const char live_usage[] =
    "Usage: tally-sim live [options]\n"
    "\n"
    "Sends about --rate commands per second to command-svc: new complaints, assignments and\n"
    "status moves (in progress, resolved, closed, now and then reopened) of the complaints it\n"
    "created. The tenants must exist (tally-sim seed). One line of counts every 5 s on stdout;\n"
    "SIGINT or SIGTERM stops it (exit 0). Exits 1 on an unexpected gRPC error, or when\n"
    "command-svc stays unreachable for 60 s.\n"
    "\n"
    "Options:\n"
    "  --command HOST:PORT   command-svc's gRPC address (default " SIM_DEFAULT_TARGET ")\n"
    "  --tenants LIST        id:Time/Zone,... as for seed (default " SIM_DEFAULT_TENANTS ")\n"
    "  --rate N              commands per second (default 5)\n"
    "  --seconds N           stop after N seconds; 0 = until stopped (default 0)\n"
    "  --seed N              the random seed (default 2)\n";

/* A complaint of the working set, as the last reply left it. */
typedef struct live_item {
    int tenant, category, priority, agent; /* agent: an index of the tenant's agents, -1 = none */
    int64_t id, version;
    int status;
    int64_t due_ms; /* monotonic: its next step is not taken before */
} live_item;

/*
 * How long a complaint waits for its next step (median seconds, log-normal), by status and
 * priority (index 1 LOW .. 4 URGENT): a demo's minutes instead of a help desk's hours, so that
 * complaints created during a demo are also resolved during it.
 */
static const double wait_assign_s[5] = { 0, 12, 10, 6, 3 };
static const double wait_start_s[5] = { 0, 15, 12, 8, 3 };
static const double wait_resolve_s[5] = { 0, 75, 50, 30, 15 };
#define WAIT_CLOSE_S 30
/* Working-set sizes per command per second of --rate: below BUSY a tick that finds nothing
 * due files a new complaint; above LARGE new complaints become rarer. */
#define BUSY_PER_RATE  12
#define LARGE_PER_RATE 30

typedef enum {
    N_CREATED,
    N_ASSIGNED,
    N_REASSIGNED,
    N_STARTED,
    N_RESOLVED,
    N_CLOSED,
    N_REOPENED,
    N_CONFLICTS,
    N_ERRORS,
    N_COUNTS
} live_count;

static const char *const count_names[N_COUNTS] = {
    "created", "assigned", "reassigned", "in_progress", "resolved",
    "closed",  "reopened", "conflicts",  "errors",
};

typedef struct live_run {
    world w;
    const char *target, *tenants; /* the options --command and --tenants */
    double rate;
    int64_t seconds, seed;
    gc_client *c;
    world_rng r;
    char key_prefix[48];
    int64_t next_key;
    bool create_pending; /* the last CreateComplaint failed in transit: send it again */
    gen_new pending;     /* the last CreateComplaint's content, and its tenant */
    int pending_tenant;
    live_item items[LIVE_WORKING_MAX];
    int nitems;
    int64_t counts[N_COUNTS], ops;
    int64_t last_ok_ms;
    bool reconnect; /* a transient failure: a new channel before the next call */
    bool fatal;
} live_run;

/* ---- calls --------------------------------------------------------------------------------- */

/*
 * The outcome of a call for the run: 0 on OK; 1 for a refusal to decide again on (ABORTED,
 * FAILED_PRECONDITION); 2 for a transient failure (counted, paused); -1 fatal (said why).
 */
static int outcome(live_run *run, int rc, const gc_status *st, const char *what)
{
    int64_t now = now_mono_ms();
    if (rc == 0) {
        run->last_ok_ms = now;
        return 0;
    }
    if (st->code == TALLY_GRPC_ABORTED || st->code == TALLY_GRPC_FAILED_PRECONDITION) {
        run->counts[N_CONFLICTS]++;
        return 1;
    }
    if (gc_transient(st->code)) {
        run->counts[N_ERRORS]++;
        if (now - run->last_ok_ms > LIVE_DOWN_MS) {
            sim_say("error: %s: %s; command-svc at %s has not answered for %d s, giving up", what,
                    st->message, run->target, LIVE_DOWN_MS / 1000);
            run->fatal = true;
            return -1;
        }
        if (run->counts[N_ERRORS] == 1 || run->counts[N_ERRORS] % 10 == 0)
            sim_say("%s: %s (retrying)", what, st->message);
        run->reconnect = true;
        return 2;
    }
    sim_say("error: %s: %s%s", what, st->message,
            st->code == TALLY_GRPC_NOT_FOUND ? " (run tally-sim seed with the same --tenants first)"
                                             : "");
    run->fatal = true;
    return -1;
}

/*
 * One call of the run (gc_call_msg on its channel, with its deadline): as outcome() says, with
 * the reply in *msg on 0 (free it with protobuf_c_message_free_unpacked).
 */
static int call(live_run *run, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **msg)
{
    gc_status st;
    int rc = gc_call_msg(run->c, method, req, reply_desc, NULL, LIVE_DEADLINE_MS, msg, &st);
    return outcome(run, rc, &st, strrchr(method, '/') + 1);
}

/* Sets when the complaint it may take its next step, from its status now. */
static void schedule(live_run *run, live_item *it)
{
    double median = it->status == RESOLVED      ? WAIT_CLOSE_S
                    : it->status == IN_PROGRESS ? wait_resolve_s[it->priority]
                    : it->agent < 0             ? wait_assign_s[it->priority]
                                                : wait_start_s[it->priority];
    it->due_ms = now_mono_ms() + (int64_t)(1000 * world_rng_lognormal(&run->r, median, 0.6));
}

static void forget(live_run *run, int i)
{
    run->items[i] = run->items[--run->nitems];
}

/* Re-reads it (a complaint of tenant t) after a refusal: its version, status and agent. */
static int reread(live_run *run, live_item *it, const world_tenant *t)
{
    Tally__V1__GetComplaintRequest req = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    ProtobufCMessage *msg;
    req.tenant_id = (char *)t->id;
    req.complaint_id = it->id;
    int rc = call(run, GC_COMMANDS("GetComplaint"), &req.base,
                  &tally__v1__get_complaint_reply__descriptor, &msg);
    if (rc != 0)
        return rc;
    const Tally__V1__Complaint *cp = ((Tally__V1__GetComplaintReply *)msg)->complaint;
    if (cp) {
        it->version = cp->version;
        it->status = cp->status;
        it->agent = world_agent_index(t, cp->assigned_agent_id);
    }
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}

static int create(live_run *run)
{
    Tally__V1__CreateComplaintRequest req = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    ProtobufCMessage *msg;
    char key[GEN_KEY_MAX + 32];
    gen_new *g = &run->pending;
    if (run->nitems == LIVE_WORKING_MAX)
        return 0;
    if (!run->create_pending) { /* else: the same request again, with its idempotency key */
        double u = world_rng_unit(&run->r);
        int tenant = 0;
        for (; tenant < run->w.ntenants - 1 && u >= run->w.tenants[tenant].share; tenant++)
            u -= run->w.tenants[tenant].share;
        run->pending_tenant = tenant;
        gen_new_complaint(g, &run->w.tenants[tenant], &run->r);
        run->next_key++;
    }
    int tenant = run->pending_tenant;
    const world_tenant *t = &run->w.tenants[tenant];
    snprintf(key, sizeof(key), "%s-%06" PRId64, run->key_prefix, run->next_key);
    req.tenant_id = (char *)t->id;
    req.idempotency_key = key;
    req.category_id = (char *)t->categories[g->category]->id;
    req.priority = (Tally__V1__Priority)g->priority;
    req.title = g->title;
    req.description = g->description;
    req.customer_id = g->customer;
    int rc = call(run, GC_COMMANDS("CreateComplaint"), &req.base,
                  &tally__v1__create_complaint_reply__descriptor, &msg);
    run->create_pending = rc == 2;
    if (rc != 0)
        return rc;
    live_item *it = &run->items[run->nitems++];
    *it = (live_item){ .tenant = tenant,
                       .category = g->category,
                       .priority = g->priority,
                       .agent = -1,
                       .id = ((Tally__V1__CreateComplaintReply *)msg)->complaint_id,
                       .version = 1,
                       .status = OPEN };
    schedule(run, it);
    run->counts[N_CREATED]++;
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}

static int assign(live_run *run, live_item *it, const world_tenant *t, int agent)
{
    Tally__V1__AssignComplaintRequest req = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
    ProtobufCMessage *msg;
    req.tenant_id = (char *)t->id;
    req.complaint_id = it->id;
    req.agent_id = (char *)t->agent_ids[agent];
    req.expected_version = it->version;
    int rc = call(run, GC_COMMANDS("AssignComplaint"), &req.base,
                  &tally__v1__assign_complaint_reply__descriptor, &msg);
    if (rc != 0)
        return rc;
    run->counts[it->agent < 0 ? N_ASSIGNED : N_REASSIGNED]++;
    it->version = ((Tally__V1__AssignComplaintReply *)msg)->version;
    it->agent = agent;
    schedule(run, it);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}

static int change(live_run *run, live_item *it, const world_tenant *t, int status,
                  const char *actor, const char *note)
{
    Tally__V1__ChangeStatusRequest req = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    ProtobufCMessage *msg;
    req.tenant_id = (char *)t->id;
    req.complaint_id = it->id;
    req.status = (Tally__V1__Status)status;
    req.expected_version = it->version;
    req.actor = (char *)actor;
    req.note = (char *)note;
    int rc = call(run, GC_COMMANDS("ChangeStatus"), &req.base,
                  &tally__v1__change_status_reply__descriptor, &msg);
    if (rc != 0)
        return rc;
    static const live_count counted[5] = { N_COUNTS, N_REOPENED, N_STARTED, N_RESOLVED, N_CLOSED };
    run->counts[counted[status]]++;
    it->version = ((Tally__V1__ChangeStatusReply *)msg)->version;
    it->status = status;
    schedule(run, it);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 0;
}

/* The next step of it (a complaint of tenant t), chosen from its status. */
static int advance(live_run *run, live_item *it, const world_tenant *t)
{
    world_rng *r = &run->r;
    const char *agent = it->agent >= 0 ? t->agent_ids[it->agent] : "support-desk";
    switch (it->status) {
    case OPEN:
        if (it->agent < 0 || world_rng_unit(r) < 0.1)
            return assign(run, it, t, world_pick_agent(t, r));
        return change(run, it, t, IN_PROGRESS, agent, "");
    case IN_PROGRESS:
        if (world_rng_unit(r) < 0.08)
            return assign(run, it, t, world_pick_agent(t, r));
        return change(run, it, t, RESOLVED, agent, gen_fix_note(t, it->category, r));
    case RESOLVED:
        if (world_rng_unit(r) < 0.08)
            return change(run, it, t, OPEN, "customer-portal",
                          "Customer replied: the problem is not solved.");
        return change(run, it, t, CLOSED, world_rng_unit(r) < 0.5 ? "auto-close" : agent, "");
    default:
        return 0;
    }
}

/* An item whose next step is due, from a random starting point; -1 if none is. */
static int pick_due(live_run *run)
{
    int64_t now = now_mono_ms();
    int start = world_rng_below(&run->r, run->nitems);
    for (int k = 0; k < run->nitems; k++) {
        int i = (start + k) % run->nitems;
        if (run->items[i].due_ms <= now)
            return i;
    }
    return -1;
}

/*
 * One tick: a new complaint, or one step of a complaint that is due (deciding again after a
 * refusal). Returns as outcome() does, or 3 when nothing was due.
 */
static int tick(live_run *run)
{
    /* A complaint takes about five steps: one new complaint per five steps keeps the working
     * set steady; fill it up first, and let it shrink when it grew large. */
    double n = run->nitems;
    double p_create = n < 10 ? 0.5 : n < LARGE_PER_RATE * run->rate ? 0.2 : 0.08;
    if (run->nitems == 0 || world_rng_unit(&run->r) < p_create)
        return create(run);
    int i = pick_due(run), rc = 0;
    if (i < 0)
        return n < BUSY_PER_RATE * run->rate ? create(run) : 3;
    live_item *it = &run->items[i];
    const world_tenant *t = &run->w.tenants[it->tenant];
    for (int attempt = 0; attempt < LIVE_ATTEMPTS; attempt++) {
        if ((rc = advance(run, it, t)) != 1 || (rc = reread(run, it, t)) != 0)
            break;
    }
    if (rc == 0 && it->status == CLOSED)
        forget(run, i);
    return rc;
}

static void report(live_run *run, int64_t elapsed_ms)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "live %" PRId64 ":%02" PRId64 "  ops %" PRId64 " (%.1f/s)",
                     elapsed_ms / 60000, elapsed_ms / 1000 % 60, run->ops,
                     elapsed_ms > 0 ? (double)run->ops * 1000 / (double)elapsed_ms : 0.0);
    for (int k = 0; k < N_COUNTS && n > 0 && (size_t)n < sizeof(line); k++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "  %s %" PRId64, count_names[k],
                      run->counts[k]);
    if (n > 0 && (size_t)n < sizeof(line))
        snprintf(line + n, sizeof(line) - (size_t)n, "  open %d", run->nitems);
    printf("%s\n", line);
    fflush(stdout);
}

/* ---- the run ------------------------------------------------------------------------------- */

/* Takes one of live's options (args_fn). */
static int take_opt(void *arg, int opt, char *value)
{
    live_run *run = arg;
    switch (opt) {
    case 'c':
        run->target = value;
        return 0;
    case 't':
        run->tenants = value;
        return 0;
    case 'r':
        return sim_parse_double("--rate", value, 0.01, 10000, &run->rate);
    case 'n':
        return sim_parse_int("--seconds", value, 0, INT64_MAX / 1000, &run->seconds);
    case 's':
        return sim_parse_int("--seed", value, 0, INT64_MAX, &run->seed);
    default:
        return -1;
    }
}

/* The options into run: ARGS_OK, ARGS_HELP or ARGS_BAD (args.h; the usage is printed). */
static int parse_opts(int argc, char **argv, live_run *run)
{
    static const struct option longopts[] = {
        { "command", required_argument, NULL, 'c' },
        { "tenants", required_argument, NULL, 't' },
        { "rate", required_argument, NULL, 'r' },
        { "seconds", required_argument, NULL, 'n' },
        { "seed", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const args_spec spec = { "tally-sim: live", live_usage, "h", longopts, 'h', take_opt, run };
    run->target = SIM_DEFAULT_TARGET;
    run->tenants = SIM_DEFAULT_TENANTS;
    run->rate = 5;
    run->seed = 2;
    return args_parse(&spec, argc, argv);
}

int sim_live(int argc, char **argv)
{
    live_run *run = calloc(1, sizeof(*run));
    char err[512];
    int rc = SIM_EXIT_FAILED, sig = 0;
    if (!run) {
        sim_say("out of memory");
        return SIM_EXIT_FAILED;
    }
    int parsed = parse_opts(argc, argv, run);
    if (parsed != ARGS_OK) {
        rc = parsed == ARGS_HELP ? SIM_EXIT_OK : SIM_EXIT_USAGE;
        goto out_free;
    }
    if (world_parse_tenants(&run->w, run->tenants, err, sizeof(err)) != 0) {
        sim_say("%s", err);
        rc = SIM_EXIT_USAGE;
        goto out_free;
    }
    int64_t start_wall = now_wall_ms();
    /* New keys on every run: the run's start time is part of them. */
    snprintf(run->key_prefix, sizeof(run->key_prefix), "live%" PRId64 "-%" PRId64, run->seed,
             start_wall);
    world_rng_init(&run->r, (uint64_t)run->seed, (uint64_t)start_wall, 7);

    sim_block_signals();
    run->c = gc_new(run->target);
    int64_t t0 = now_mono_ms(), period_ms = (int64_t)(1000 / run->rate), due = t0,
            next_report = t0 + LIVE_REPORT_MS;
    if (period_ms < 1)
        period_ms = 1;
    run->last_ok_ms = t0;
    fprintf(stderr, "tally-sim: live: about %.1f commands/s to %s for %d tenant(s)%s\n", run->rate,
            run->target, run->w.ntenants, run->seconds ? "" : " until stopped (Ctrl-C)");
    for (;;) {
        int64_t now = now_mono_ms();
        if (run->seconds && now - t0 >= run->seconds * 1000)
            break;
        if (now >= next_report) {
            report(run, now - t0);
            next_report += LIVE_REPORT_MS;
        }
        if (now < due) {
            int64_t wait = due - now;
            if (next_report - now < wait)
                wait = next_report - now;
            if (run->seconds && t0 + run->seconds * 1000 - now < wait)
                wait = t0 + run->seconds * 1000 - now;
            if ((sig = sim_wait_signal(wait)) != 0)
                break;
            continue;
        }
        if (run->reconnect) { /* else the channel's reconnect backoff grows to minutes */
            gc_free(run->c);
            run->c = gc_new(run->target);
            run->reconnect = false;
        }
        int r = tick(run);
        run->ops += r != 3;
        if (r < 0)
            break;
        due += r == 2 ? LIVE_PAUSE_MS : period_ms;
        if (due < now - 1000) /* fell behind (slow calls): do not burst to catch up */
            due = now;
        if ((sig = sim_wait_signal(0)) != 0)
            break;
    }
    report(run, now_mono_ms() - t0);
    if (sig)
        fprintf(stderr, "tally-sim: live: %s, stopped\n", strsignal(sig));
    rc = run->fatal ? SIM_EXIT_FAILED : SIM_EXIT_OK;
out_free:
    gc_free(run->c);
    free(run);
    return rc;
}
