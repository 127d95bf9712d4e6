/*
 * The tenants of the suite and their histories: reference data put through the API, about 400
 * days of seeded random history imported with ImportComplaints (imports.h), and today's live
 * commands (query_int.h).
 */
#include "query_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEPS_MAX 40 /* the longest generated history, in steps */

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

/* A status change as the legacy import writes them: no actor of its own, no note. */
static void add_move(imp_entry *x, int64_t at_ms, int status)
{
    imp_add_move(x, at_ms, status, "legacy-import", "");
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

static int64_t pick_gap(void)
{
    double u = tq_rnd01();
    if (u < 0.25)
        return tq_rnd_below(1000); /* within the second: a 0 s resolution */
    if (u < 0.6)
        return MIN + tq_rnd_below(6 * HOUR);
    return 6 * HOUR + tq_rnd_below(12 * DAY);
}

/*
 * A history from created on: assignments (new, re-, un-, and no-op), IN_PROGRESS, RESOLVED,
 * reopen (RESOLVED -> OPEN), CLOSED; it may stop anywhere, and never goes past horizon.
 */
static void gen_history(imp_entry *x, const tdef *t, int64_t created, int64_t horizon)
{
    int status = OPEN;
    const char *agent = "";
    int64_t at = created;
    while (x->c.n_history < STEPS_MAX - 1 && status != CLOSED) {
        int64_t gap = pick_gap();
        if (at + gap > horizon)
            return;
        at += gap;
        double u = tq_rnd01();
        bool assignment = false;
        if (status == OPEN || status == IN_PROGRESS) {
            if (u < 0.06)
                return; /* stays open */
            if (u < 0.36)
                assignment = true;
            else if (u < 0.55 && status == OPEN)
                add_move(x, at, status = IN_PROGRESS);
            else
                add_move(x, at, status = RESOLVED);
        } else { /* RESOLVED */
            if (u < 0.12)
                return; /* stays resolved */
            if (u < 0.45)
                add_move(x, at, status = OPEN);
            else if (u < 0.55)
                assignment = true;
            else
                add_move(x, at, status = CLOSED);
        }
        if (assignment) {
            double v = tq_rnd01();
            if (!agent[0] || v < 0.6)
                agent = tq_busy_agent(t, agent);
            else if (v < 0.85)
                agent = "";
            /* else the same agent again: a no-op that writes nothing */
            imp_add_assign(x, at, agent);
        }
    }
}

static const char *pick_category(const tdef *t, const int *weight)
{
    int total = 0;
    for (size_t i = 0; i < tq_ncats(t); i++)
        total += weight[i];
    int64_t u = tq_rnd_below(total);
    for (size_t i = 0; i < tq_ncats(t); i++)
        if ((u -= weight[i]) < 0)
            return t->cats[i];
    return t->cats[0];
}

int tq_pick_priority(void)
{
    static const int p[] = { LOW, LOW, LOW, MEDIUM, MEDIUM, MEDIUM, MEDIUM, HIGH, HIGH, URGENT };
    return p[tq_rnd_below(10)];
}

/*
 * Imports t->complaints complaints created up to about 400 days ago (most in the last 120,
 * some in the last day), in one batch. Two groups of three (entries 8-10 and 97-99; for the
 * first tenant imported into the fresh database they are ids 9-11 and 98-100, and "10" < "9" as
 * strings) share a creation time and stay open, to test the order of ties in the backlog list.
 */
void tq_import_history(const tdef *t)
{
    int n = t->complaints;
    int weight[8];
    int64_t now = now_wall_ms(), horizon = now - 2 * MIN;
    imp_batch b;
    imp_batch_init(&b, t->id, (size_t)n);
    for (size_t i = 0; i < tq_ncats(t); i++)
        weight[i] = t->empty && strcmp(t->cats[i], t->empty) == 0 ? 0 : 1 + (int)tq_rnd_below(9);
    for (int i = 0; i < n; i++) {
        imp_entry *e = &b.x[i];
        char key[32];
        snprintf(key, sizeof(key), "imp-%d", i);
        snprintf(e->customer, sizeof(e->customer), "cust-%d", (int)tq_rnd_below(50));
        const char *category = pick_category(t, weight);
        imp_entry_init(e, key, category, tq_pick_priority(), 0);
        e->c.title = "It does not work";
        e->c.description = "";
        e->c.customer_id = e->customer;
        double u = tq_rnd01();
        int64_t created = u < 0.05   ? now - 30 * MIN - tq_rnd_below(20 * HOUR)
                          : u < 0.15 ? now - 120 * DAY - tq_rnd_below(275 * DAY)
                                     : now - HOUR - tq_rnd_below(119 * DAY);
        bool tie = (i >= 8 && i <= 10) || (i >= 97 && i <= 99);
        if (tie) {
            created = now - (i < 50 ? 118 : 117) * DAY + 777;
            if (i == 10 || i == 99) {
                imp_add_assign(e, created + HOUR, tq_busy_agent(t, NULL));
                add_move(e, created + 2 * HOUR, IN_PROGRESS);
            }
        }
        e->c.created_at_ms = created;
        if (!tie)
            gen_history(e, t, created, horizon);
    }
    Tally__V1__ImportComplaintsReply *rep =
        tq_cmd_ok(GC_COMMANDS("ImportComplaints"), &b.req.base,
                  &tally__v1__import_complaints_reply__descriptor);
    cr_assert_eq(rep->imported, n);
    call_free(rep);
    imp_batch_release(&b);
}

/* ---- live commands -------------------------------------------------------------------------- */

int64_t tq_create(const char *tenant, const char *category, int priority, int64_t *version)
{
    static int n;
    char key[48];
    snprintf(key, sizeof(key), "live-%d-%d", (int)getpid(), ++n);
    Tally__V1__CreateComplaintRequest r = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.idempotency_key = key;
    r.category_id = (char *)category;
    r.priority = (Tally__V1__Priority)priority;
    r.title = "Live one";
    r.customer_id = "cust-live";
    Tally__V1__CreateComplaintReply *rep = tq_cmd_ok(
        GC_COMMANDS("CreateComplaint"), &r.base, &tally__v1__create_complaint_reply__descriptor);
    int64_t id = rep->complaint_id;
    *version = rep->version;
    call_free(rep);
    return id;
}

/* Assigns (agent "" unassigns); returns the new version. */
int64_t tq_assign(const char *tenant, int64_t id, int64_t version, const char *agent)
{
    Tally__V1__AssignComplaintRequest r = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.complaint_id = id;
    r.agent_id = (char *)agent;
    r.expected_version = version;
    Tally__V1__AssignComplaintReply *rep = tq_cmd_ok(
        GC_COMMANDS("AssignComplaint"), &r.base, &tally__v1__assign_complaint_reply__descriptor);
    int64_t v = rep->version;
    call_free(rep);
    return v;
}

int64_t tq_move(const char *tenant, int64_t id, int64_t version, int status)
{
    Tally__V1__ChangeStatusRequest r = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    r.tenant_id = (char *)tenant;
    r.complaint_id = id;
    r.status = (Tally__V1__Status)status;
    r.expected_version = version;
    r.actor = "live-agent";
    r.note = "";
    Tally__V1__ChangeStatusReply *rep = tq_cmd_ok(GC_COMMANDS("ChangeStatus"), &r.base,
                                                  &tally__v1__change_status_reply__descriptor);
    int64_t v = rep->version;
    call_free(rep);
    return v;
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
    if (tq_pick(t->id, "status IN (1, 2) AND idempotency_key LIKE 'imp-%'", &c, &cv)) {
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
