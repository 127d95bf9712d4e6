/*
 * The tenants of the suite and their histories: reference data put through the API, about 400
 * days of seeded history imported with ImportComplaints, the lives of the simulator (sim/, with
 * the rare turns turned up), and today's live commands (query_int.h).
 */
#include "query_int.h"
#include "sim_gen.h"
#include "sim_world.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- tenants and their histories ------------------------------------------------------------ */

/* Ids shared between tenants (so a leak would show), byte order unlike any collation's. */
const tdef tq_tenants[] = {
    { "acme",
      "America/Los_Angeles",
      { "billing", "delivery", "quality", "returns", "Web", "web", "x-misc" },
      { "a01", "a02", "a03", "a04", "a05", "Zed", "b-x", "b.x", "b_x", "idle" },
      300,
      "x-misc" },
    { "globex",
      "Asia/Kathmandu",
      { "billing", "delivery", "quality", "web", "x-misc" },
      { "a01", "a02", "a03", "a04", "a05", "idle" },
      240,
      NULL },
    { "initech",
      "Pacific/Kiritimati",
      { "billing", "delivery", "returns", "Web", "quality", "x-misc" },
      { "a03", "a04", "a05", "Zed", "b-x", "b.x", "b_x", "idle" },
      260,
      "returns" },
    { "umbrella",
      "Europe/Berlin",
      { "billing", "delivery", "quality", "returns", "Web", "web", "x-misc" },
      { "a01", "a02", "Zed", "b.x", "idle" },
      200,
      NULL },
    { "hollow",
      "UTC",
      { "billing", "delivery", "quality", "returns", "Web", "web", "x-misc" },
      { "a01", "a02", "a03", "a04", "a05", "Zed", "b-x", "b.x", "b_x", "idle" },
      0,
      NULL },
};
_Static_assert(sizeof(tq_tenants) / sizeof(tq_tenants[0]) == NTENANTS, "NTENANTS tenants");

/* One tenant for the smaller tests. */
const tdef tq_solo = { "solo",
                       "Europe/Berlin",
                       { "billing", "delivery", "quality", "web" },
                       { "a01", "a02", "a03", "a04", "Zed", "idle" },
                       40,
                       NULL };

size_t tq_ncats(const tdef *t)
{
    size_t n = 0;
    while (n < 8 && t->cats[n])
        n++;
    return n;
}

static size_t nagents(const tdef *t)
{
    size_t n = 0;
    while (n < 12 && t->agents[n])
        n++;
    return n;
}

/* PutTenant, PutCategory and PutAgent; names carry the tenant, so a leaked name would show. */
void tq_put_tenant(const tdef *t)
{
    char name[128];
    Tally__V1__PutTenantRequest pt = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    pt.tenant_id = (char *)t->id;
    pt.name = (char *)t->id;
    pt.time_zone = (char *)t->tz;
    call_free(
        tq_cmd_ok(GC_COMMANDS("PutTenant"), &pt.base, &tally__v1__put_tenant_reply__descriptor));
    for (size_t i = 0; i < tq_ncats(t); i++) {
        Tally__V1__PutCategoryRequest pc = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
        snprintf(name, sizeof(name), "%s of %s", t->cats[i], t->id);
        pc.tenant_id = (char *)t->id;
        pc.category_id = (char *)t->cats[i];
        pc.name = name;
        call_free(tq_cmd_ok(GC_COMMANDS("PutCategory"), &pc.base,
                            &tally__v1__put_category_reply__descriptor));
    }
    for (size_t i = 0; i < nagents(t); i++) {
        Tally__V1__PutAgentRequest pa = TALLY__V1__PUT_AGENT_REQUEST__INIT;
        snprintf(name, sizeof(name), "agent %s of %s", t->agents[i], t->id);
        pa.tenant_id = (char *)t->id;
        pa.agent_id = (char *)t->agents[i];
        pa.name = name;
        call_free(
            tq_cmd_ok(GC_COMMANDS("PutAgent"), &pa.base, &tally__v1__put_agent_reply__descriptor));
    }
}

/* An agent of t that does work ("idle" never does), other than except (NULL: any). */
const char *tq_busy_agent(const tdef *t, const char *except)
{
    size_t n = nagents(t);
    for (;;) {
        const char *a = t->agents[tq_rnd_below((int64_t)n)];
        if (strcmp(a, "idle") != 0 && (!except || strcmp(a, except) != 0))
            return a;
    }
}

int tq_pick_priority(void)
{
    static const int p[] = { LOW, LOW, LOW, MEDIUM, MEDIUM, MEDIUM, MEDIUM, HIGH, HIGH, URGENT };
    return p[tq_rnd_below(10)];
}

/*
 * The lives of the imported complaints: sim_gen's, with every rare turn turned up. Most are
 * closed in the end, some stay resolved.
 */
static const world_mix history_mix = {
    .reassign = 0.3,          /* another agent before the resolution */
    .unassign = 0.25,         /* back to the queue (no agent), picked up again */
    .same_agent = 0.15,       /* a no-op re-assignment: a step without an event */
    .resolved_reassign = 0.2, /* the follow-up of a resolved one to another agent */
    .instant = 0.2,           /* resolved within instant_ms: resolution_seconds 0 */
    .instant_ms = 1000,
    .reopen_first = 0.5, /* RESOLVED -> OPEN and resolved again, up to 3 times */
    .reopen_again = 0.4,
    .reopens_max = 3,
    .ties = 1,
    .abandon = 0.4, /* left open (assigned or not, started or not) or resolved, at any age */
};

/*
 * When they are created: windows ending 2 minutes ago, where the lives are cut (the recent ones
 * are still open), each with its share of a tenant's complaints, the next indices: a tail over
 * 400 days (complaint 0 opens it), most in the last 120 days, some in the last day.
 */
static const struct era {
    int days;
    double share;
} eras[] = { { 400, 0.15 }, { 120, 0.80 }, { 1, 0.05 } };
#define NERAS ((int)(sizeof(eras) / sizeof(eras[0])))

/*
 * t as the one tenant of the simulator's world w: its ids and zone, its categories and agents at
 * random weights, t->empty and "idle" at 0 (never used), the mix above.
 */
static void sim_tenant(world *w, const tdef *t)
{
    world_ref cats[8], agents[12];
    char err[256];
    int ncats = (int)tq_ncats(t), nagent = (int)nagents(t);
    for (int i = 0; i < ncats; i++)
        cats[i] = (world_ref){ t->cats[i], NULL,
                               t->empty && strcmp(t->cats[i], t->empty) == 0
                                   ? 0
                                   : (double)(1 + tq_rnd_below(9)) };
    for (int i = 0; i < nagent; i++)
        agents[i] =
            (world_ref){ t->agents[i], NULL,
                         strcmp(t->agents[i], "idle") == 0 ? 0 : (double)(1 + tq_rnd_below(4)) };
    world_tenant_def d = { .id = t->id,
                           .zone = t->tz,
                           .categories = cats,
                           .ncategories = ncats,
                           .agents = agents,
                           .nagents = nagent };
    memset(w, 0, sizeof(*w));
    cr_assert_eq(world_add_tenant(w, &d, err, sizeof(err)), 0, "%s", err);
    w->tenants[0].mix = history_mix;
}

/* Two groups of three entries of a tenant's import, each created at one time: 8-10, 97-99. */
static const int ties[] = { 8, 97 };
#define NTIES ((int)(sizeof(ties) / sizeof(ties[0])))

static bool in_tie(int i)
{
    for (int k = 0; k < NTIES; k++)
        if (i >= ties[k] && i < ties[k] + 3)
            return true;
    return false;
}

static int64_t tie_time(int i, int64_t now)
{
    return now - (i < 50 ? 118 : 117) * DAY + 777;
}

/*
 * Entry i of a tie group: the simulator's complaint i, created at the group's time, with a
 * history of the test's own that leaves it open (the last of the group assigned and started).
 */
static void make_tie(gen_complaint *c, const tdef *t, int i, int64_t now)
{
    gen_slots s = { c->steps, c->step_ptrs, c->assignments, c->moves, GEN_STEPS_MAX };
    int64_t created = tie_time(i, now);
    c->msg.created_at_ms = created;
    c->msg.n_history = 0;
    if (i == 10 || i == 99) {
        gen_add_assignment(&c->msg, &s, created + HOUR, tq_busy_agent(t, NULL));
        gen_add_move(&c->msg, &s, created + 2 * HOUR, IN_PROGRESS, "legacy-import", "");
    }
}

/*
 * Imports t->complaints complaints created up to 400 days ago (most in the last 120, some in the
 * last day), in one batch. Two groups of three (entries 8-10 and 97-99; for the first tenant
 * imported into the fresh database they are ids 9-11 and 98-100, and "10" < "9" as strings)
 * share a creation time and stay open, to test the order of ties in the backlog list.
 */
void tq_import_history(const tdef *t)
{
    static world w;
    int n = t->complaints;
    int64_t now = now_wall_ms();
    sim_tenant(&w, t);
    world_tenant *wt = &w.tenants[0];
    gen_complaint *lives = calloc((size_t)n, sizeof(*lives));
    Tally__V1__ImportedComplaint **ptrs = calloc((size_t)n, sizeof(*ptrs));
    cr_assert(lives && ptrs);
    for (int e = 0, i = 0; e < NERAS; e++) {
        int end = e == NERAS - 1 ? n : i + (int)(eras[e].share * n + 0.5);
        world_set_window(wt, tq_seed, now - 2 * MIN, eras[e].days);
        for (; i < end && i < n; i++) {
            gen_imported(&lives[i], wt, tq_seed, i);
            if (in_tie(i))
                make_tie(&lives[i], t, i, now);
            ptrs[i] = &lives[i].msg;
        }
    }
    Tally__V1__ImportComplaintsRequest req = TALLY__V1__IMPORT_COMPLAINTS_REQUEST__INIT;
    req.tenant_id = (char *)t->id;
    req.n_complaints = (size_t)n;
    req.complaints = ptrs;
    Tally__V1__ImportComplaintsReply *rep =
        tq_cmd_ok(GC_COMMANDS("ImportComplaints"), &req.base,
                  &tally__v1__import_complaints_reply__descriptor);
    cr_assert_eq(rep->imported, n);
    call_free(rep);
    for (int k = 0; k < NTIES && ties[k] + 3 <= n; k++) { /* there, open, for the backlog */
        char created[24];
        snprintf(created, sizeof(created), "%" PRId64, tie_time(ties[k], now));
        const char *p[] = { t->id, created };
        int64_t open = tq_sql_int("SELECT count(*) FROM complaints WHERE tenant_id = $1"
                                  " AND status IN (1, 2) AND " CREATED_MS " = $2::bigint",
                                  2, p);
        cr_assert_eq(open, 3, "%s: %" PRId64 " open complaints created at %s, want a tie of 3",
                     t->id, open, created);
    }
    free(ptrs);
    free(lives);
}

/* ---- live commands -------------------------------------------------------------------------- */

/* The live commands (calls.h) on the suite's command-svc; each dirties the SQL snapshot. */
int64_t tq_create(const char *tenant, const char *category, int priority, int64_t *version)
{
    static int n;
    char key[48];
    int64_t id;
    snprintf(key, sizeof(key), "live-%d-%d", (int)getpid(), ++n);
    *version = call_create(tq_sys.cmd, tenant, key, category, priority, &id);
    tq_sql_dirty = true;
    return id;
}

/* Assigns (agent "" unassigns); returns the new version. */
int64_t tq_assign(const char *tenant, int64_t id, int64_t version, const char *agent)
{
    tq_sql_dirty = true;
    return call_assign(tq_sys.cmd, tenant, id, version, agent);
}

int64_t tq_move(const char *tenant, int64_t id, int64_t version, int status)
{
    tq_sql_dirty = true;
    return call_move(tq_sys.cmd, tenant, id, version, status, "live-agent");
}

/* A random complaint of the tenant matching cond (SQL over c); false when there is none. */
bool tq_pick(const char *tenant, const char *cond, int64_t *id, int64_t *version)
{
    char q[512];
    const char *p[] = { tenant };
    snprintf(q, sizeof(q),
             "SELECT complaint_id, version FROM complaints c WHERE tenant_id = $1 AND %s"
             " ORDER BY complaint_id",
             cond);
    PGresult *r = tq_sql(q, 1, p);
    int n = PQntuples(r);
    if (n > 0) {
        int i = (int)tq_rnd_below(n);
        *id = tq_num(r, i, 0);
        *version = tq_num(r, i, 1);
    }
    PQclear(r);
    return n > 0;
}

/*
 * Today's commands: creations, assignments, a reassignment, an unassignment, IN_PROGRESS,
 * resolutions (of a new complaint, of an old open one, of a reopened one), a close.
 */
void tq_live_commands(const tdef *t)
{
    int64_t id[3], v[3], c, cv;
    const char *first = tq_busy_agent(t, NULL);
    for (int i = 0; i < 3; i++)
        id[i] = tq_create(t->id, t->cats[tq_rnd_below((int64_t)tq_ncats(t))], tq_pick_priority(),
                          &v[i]);
    v[0] = tq_assign(t->id, id[0], v[0], first);
    v[1] = tq_assign(t->id, id[1], v[1], tq_busy_agent(t, NULL));
    v[0] = tq_assign(t->id, id[0], v[0], tq_busy_agent(t, first));
    v[0] = tq_move(t->id, id[0], v[0], IN_PROGRESS);
    v[0] = tq_move(t->id, id[0], v[0], RESOLVED);
    v[1] = tq_assign(t->id, id[1], v[1], "");
    if (tq_pick(t->id, "status IN (1, 2) AND idempotency_key LIKE 'sim%'", &c, &cv)) {
        cv = tq_assign(t->id, c, cv, tq_busy_agent(t, NULL));
        tq_move(t->id, c, cv, RESOLVED);
    }
    if (tq_pick(t->id, "status = 3", &c, &cv)) {
        cv = tq_move(t->id, c, cv, OPEN);
        tq_move(t->id, c, cv, RESOLVED);
    }
    if (tq_pick(t->id, "status = 3", &c, &cv))
        tq_move(t->id, c, cv, CLOSED);
    if (tq_pick(t->id, "status = 1 AND assigned_agent_id IS NULL", &c, &cv))
        tq_move(t->id, c, cv, IN_PROGRESS);
}
