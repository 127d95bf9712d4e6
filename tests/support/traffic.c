/* traffic: write traffic with a ledger of what got OK, and its checks. See traffic.h. */
#include "traffic.h"

#include "now.h"
#include "sim_gen.h"
#include "sim_rpc.h"
#include "tally/v1/commands.pb-c.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WORKING_MAX   2000  /* complaints of the run followed at once */
#define ATTEMPTS      4     /* decisions of one step (re-reading in between) */
#define PUT_WITHIN_MS 60000 /* reference data: failures in transit retried this long */
#define REPORT_MAX    10    /* missing entries printed by a check */
#define CHUNK         500   /* ids per check query */

#define OPEN        TALLY__V1__STATUS__STATUS_OPEN
#define IN_PROGRESS TALLY__V1__STATUS__STATUS_IN_PROGRESS
#define RESOLVED    TALLY__V1__STATUS__STATUS_RESOLVED
#define CLOSED      TALLY__V1__STATUS__STATUS_CLOSED

/* A complaint of the working set, as the last reply left it. */
typedef struct item {
    int tenant, category, agent; /* agent: an index of the tenant's agents, -1 = none */
    int64_t id, version;
    int status;
} item;

/* One OK'd command of the ledger. */
typedef struct entry {
    int tenant;
    int kind;   /* traffic_kind */
    int status; /* the status a ChangeStatus moved to; 0 otherwise */
    int64_t id, version;
    char key[GEN_KEY_MAX + 32]; /* creations and imports */
} entry;

typedef struct worker {
    traffic *t;
    int index;
    pthread_t thread;
    gc_client *c[TRAFFIC_PORTS_MAX];
    int replica; /* the one this worker calls */
    world_rng r;
    int64_t commands; /* sent by this worker */
    int64_t keys;     /* creation keys used */
    int64_t imported; /* import indices used */
} worker;

struct traffic {
    traffic_config conf;
    world w;
    char key_prefix[48];
    volatile int stop;
    int nworkers;
    worker workers[TRAFFIC_WORKERS_MAX];

    pthread_mutex_t mu; /* guards everything below */
    item items[WORKING_MAX];
    int nitems;
    entry *ledger;
    size_t nledger, capledger;
    traffic_stats st;
};

static bool stopping(const traffic *t)
{
    return __atomic_load_n(&t->stop, __ATOMIC_RELAXED) != 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int port_of(const traffic *t, int replica)
{
    return __atomic_load_n(&t->conf.ports[replica], __ATOMIC_RELAXED);
}

static gc_client *client(int port)
{
    char target[32];
    gc_options o = { .max_reconnect_backoff_ms = 200 };
    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    return gc_new_ex(target, &o, NULL, 0);
}

/* ---- the ledger and the counts ------------------------------------------------------------- */

static void count(traffic *t, int64_t *field, int64_t n)
{
    pthread_mutex_lock(&t->mu);
    *field += n;
    pthread_mutex_unlock(&t->mu);
}

static void record(traffic *t, const entry *e)
{
    pthread_mutex_lock(&t->mu);
    if (t->nledger == t->capledger) {
        size_t cap = t->capledger ? 2 * t->capledger : 4096;
        entry *grown = realloc(t->ledger, cap * sizeof(*grown));
        if (!grown) { /* a lost ledger entry would only weaken the checks: say so */
            snprintf(t->st.first_unexpected, sizeof(t->st.first_unexpected),
                     "out of memory for the ledger");
            t->st.unexpected++;
            pthread_mutex_unlock(&t->mu);
            return;
        }
        t->ledger = grown;
        t->capledger = cap;
    }
    t->ledger[t->nledger++] = *e;
    t->st.ok++;
    t->st.ok_by_kind[e->kind]++;
    pthread_mutex_unlock(&t->mu);
}

/* ---- calls --------------------------------------------------------------------------------- */

enum { C_OK, C_REFUSED, C_TRANSIENT, C_OTHER };

/*
 * One call on the worker's replica. C_OK with *reply set; C_REFUSED (ABORTED,
 * FAILED_PRECONDITION); C_TRANSIENT (the worker moves to the next replica, with a new
 * channel); C_OTHER (counted as unexpected).
 */
static int call(worker *w, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply)
{
    traffic *t = w->t;
    gc_status st;
    int rc =
        gc_call_msg(w->c[w->replica], method, req, desc, NULL, t->conf.deadline_ms, reply, &st);
    count(t, &t->st.calls, 1);
    if (rc == 0)
        return C_OK;
    if (st.code == TALLY_GRPC_ABORTED || st.code == TALLY_GRPC_FAILED_PRECONDITION) {
        count(t, &t->st.conflicts, 1);
        return C_REFUSED;
    }
    if (gc_transient(st.code)) {
        count(t, &t->st.transient, 1);
        gc_free(w->c[w->replica]);
        w->c[w->replica] = client(port_of(t, w->replica));
        w->replica = (w->replica + 1) % t->conf.nports;
        return C_TRANSIENT;
    }
    pthread_mutex_lock(&t->mu);
    if (!t->st.unexpected++)
        snprintf(t->st.first_unexpected, sizeof(t->st.first_unexpected), "%.60s: %.1100s", method,
                 st.message);
    pthread_mutex_unlock(&t->mu);
    return C_OTHER;
}

/* Pause after a failure in transit: the replica restarts, PostgreSQL reconnects. */
#define RETRY_PAUSE_MS 200

/* ---- the working set ----------------------------------------------------------------------- */

static void item_put(traffic *t, const item *it)
{
    pthread_mutex_lock(&t->mu);
    int i = 0;
    while (i < t->nitems && t->items[i].id != it->id)
        i++;
    if (i == t->nitems && it->status != CLOSED && t->nitems < WORKING_MAX)
        t->items[t->nitems++] = *it;
    else if (i < t->nitems && it->status == CLOSED)
        t->items[i] = t->items[--t->nitems];
    else if (i < t->nitems && it->version >= t->items[i].version)
        t->items[i] = *it;
    pthread_mutex_unlock(&t->mu);
}

/* A copy of a random item of the working set; false when it is empty. */
static bool item_pick(worker *w, item *out)
{
    traffic *t = w->t;
    pthread_mutex_lock(&t->mu);
    bool any = t->nitems > 0;
    if (any)
        *out = t->items[world_rng_below(&w->r, t->nitems)];
    pthread_mutex_unlock(&t->mu);
    return any;
}

static int working_size(traffic *t)
{
    pthread_mutex_lock(&t->mu);
    int n = t->nitems;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* ---- commands ------------------------------------------------------------------------------ */

static void create(worker *w)
{
    traffic *t = w->t;
    Tally__V1__CreateComplaintRequest req = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    ProtobufCMessage *msg;
    gen_new g;
    char key[GEN_KEY_MAX + 32];
    int tenant = world_rng_below(&w->r, t->w.ntenants);
    const world_tenant *wt = &t->w.tenants[tenant];
    gen_new_complaint(&g, wt, &w->r);
    snprintf(key, sizeof(key), "%s-w%d-%06" PRId64, t->key_prefix, w->index, ++w->keys);
    req.tenant_id = (char *)wt->id;
    req.idempotency_key = key;
    req.category_id = (char *)wt->categories[g.category]->id;
    req.priority = (Tally__V1__Priority)g.priority;
    req.title = g.title;
    req.description = g.description;
    req.customer_id = g.customer;
    count(t, &t->st.sent, 1);
    for (int tries = 0; !stopping(t); tries++) { /* the same request, the same key */
        if (tries)
            count(t, &t->st.retried, 1);
        int rc = call(w, GC_COMMANDS("CreateComplaint"), &req.base,
                      &tally__v1__create_complaint_reply__descriptor, &msg);
        if (rc == C_TRANSIENT) {
            sleep_ms(RETRY_PAUSE_MS);
            continue;
        }
        if (rc != C_OK)
            return;
        const Tally__V1__CreateComplaintReply *rep = (Tally__V1__CreateComplaintReply *)msg;
        entry e = { .tenant = tenant,
                    .kind = TRAFFIC_CREATE,
                    .id = rep->complaint_id,
                    .version = rep->version };
        snprintf(e.key, sizeof(e.key), "%s", key);
        record(t, &e);
        item it = { .tenant = tenant,
                    .category = g.category,
                    .agent = -1,
                    .id = rep->complaint_id,
                    .version = rep->version,
                    .status = OPEN };
        item_put(t, &it);
        protobuf_c_message_free_unpacked(msg, NULL);
        return;
    }
}

/* Re-reads it (its version, status and agent); false when that did not work out. */
static bool reread(worker *w, item *it)
{
    traffic *t = w->t;
    const world_tenant *wt = &t->w.tenants[it->tenant];
    Tally__V1__GetComplaintRequest req = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    ProtobufCMessage *msg;
    req.tenant_id = (char *)wt->id;
    req.complaint_id = it->id;
    for (int tries = 0; !stopping(t); tries++) {
        if (tries)
            count(t, &t->st.retried, 1);
        count(t, &t->st.rereads, 1);
        int rc = call(w, GC_COMMANDS("GetComplaint"), &req.base,
                      &tally__v1__get_complaint_reply__descriptor, &msg);
        if (rc == C_TRANSIENT) {
            sleep_ms(RETRY_PAUSE_MS);
            continue;
        }
        if (rc != C_OK)
            return false;
        const Tally__V1__Complaint *cp = ((Tally__V1__GetComplaintReply *)msg)->complaint;
        bool ok = cp != NULL;
        if (cp) {
            it->version = cp->version;
            it->status = cp->status;
            it->agent = world_agent_index(wt, cp->assigned_agent_id);
        }
        protobuf_c_message_free_unpacked(msg, NULL);
        return ok;
    }
    return false;
}

/*
 * The next step of it, decided from its status: an assignment (agent >= 0) or a status move.
 * Returns the call's outcome; on C_OK it and the ledger are updated.
 */
static int step(worker *w, item *it)
{
    traffic *t = w->t;
    const world_tenant *wt = &t->w.tenants[it->tenant];
    world_rng *r = &w->r;
    ProtobufCMessage *msg;
    int agent = -1, status = 0;
    switch (it->status) {
    case OPEN:
        if (it->agent < 0 || world_rng_unit(r) < 0.1)
            agent = world_pick_agent(wt, r);
        else
            status = IN_PROGRESS;
        break;
    case IN_PROGRESS:
        if (world_rng_unit(r) < 0.08)
            agent = world_pick_agent(wt, r);
        else
            status = RESOLVED;
        break;
    case RESOLVED:
        status = world_rng_unit(r) < 0.1 ? OPEN : CLOSED;
        break;
    default:
        return C_OK; /* closed meanwhile: nothing to do */
    }
    int rc;
    int64_t version = 0;
    if (agent >= 0) {
        Tally__V1__AssignComplaintRequest req = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
        req.tenant_id = (char *)wt->id;
        req.complaint_id = it->id;
        req.agent_id = (char *)wt->agent_ids[agent];
        req.expected_version = it->version;
        rc = call(w, GC_COMMANDS("AssignComplaint"), &req.base,
                  &tally__v1__assign_complaint_reply__descriptor, &msg);
        if (rc == C_OK)
            version = ((Tally__V1__AssignComplaintReply *)msg)->version;
    } else {
        Tally__V1__ChangeStatusRequest req = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
        req.tenant_id = (char *)wt->id;
        req.complaint_id = it->id;
        req.status = (Tally__V1__Status)status;
        req.expected_version = it->version;
        req.actor = it->agent >= 0 ? (char *)wt->agent_ids[it->agent] : "support-desk";
        req.note = status == RESOLVED ? (char *)gen_fix_note(wt, it->category, r) : "";
        rc = call(w, GC_COMMANDS("ChangeStatus"), &req.base,
                  &tally__v1__change_status_reply__descriptor, &msg);
        if (rc == C_OK)
            version = ((Tally__V1__ChangeStatusReply *)msg)->version;
    }
    if (rc != C_OK)
        return rc;
    protobuf_c_message_free_unpacked(msg, NULL);
    entry e = { .tenant = it->tenant,
                .kind = agent >= 0 ? TRAFFIC_ASSIGN : TRAFFIC_STATUS,
                .status = status,
                .id = it->id,
                .version = version };
    record(t, &e);
    it->version = version;
    if (agent >= 0)
        it->agent = agent;
    else
        it->status = status;
    item_put(t, it);
    return C_OK;
}

/* One step of a complaint of the working set, deciding again after a refusal or a failure. */
static void advance(worker *w)
{
    traffic *t = w->t;
    item it;
    if (!item_pick(w, &it))
        return;
    count(t, &t->st.sent, 1);
    for (int attempt = 0; attempt < ATTEMPTS && !stopping(t); attempt++) {
        int rc = step(w, &it);
        if (rc == C_OK || rc == C_OTHER)
            return;
        if (rc == C_TRANSIENT) {
            count(t, &t->st.retried, 1);
            sleep_ms(RETRY_PAUSE_MS);
        }
        if (!reread(w, &it))
            return;
        item_put(t, &it);
    }
}

/* An ImportComplaints batch of historical complaints of one tenant. */
static void import(worker *w)
{
    traffic *t = w->t;
    int n = t->conf.import_batch, tenant = world_rng_below(&w->r, t->w.ntenants);
    const world_tenant *wt = &t->w.tenants[tenant];
    gen_complaint *cs = calloc((size_t)n, sizeof(*cs));
    Tally__V1__ImportedComplaint **ptrs = calloc((size_t)n, sizeof(*ptrs));
    Tally__V1__ImportComplaintsRequest req = TALLY__V1__IMPORT_COMPLAINTS_REQUEST__INIT;
    ProtobufCMessage *msg;
    if (!cs || !ptrs)
        goto out_free;
    for (int i = 0; i < n; i++) {
        /* Indices of their own per worker; 0 is the window's first complaint (sim_gen.h). */
        int64_t index = 1 + (int64_t)w->index * 100000000 + w->imported++;
        gen_imported(&cs[i], wt, t->conf.seed, index);
        ptrs[i] = &cs[i].msg;
    }
    req.tenant_id = (char *)wt->id;
    req.n_complaints = (size_t)n;
    req.complaints = ptrs;
    count(t, &t->st.sent, 1);
    for (int tries = 0; !stopping(t); tries++) { /* the same batch: its keys make it a no-op */
        if (tries)
            count(t, &t->st.retried, 1);
        int rc = call(w, GC_COMMANDS("ImportComplaints"), &req.base,
                      &tally__v1__import_complaints_reply__descriptor, &msg);
        if (rc == C_TRANSIENT) {
            sleep_ms(RETRY_PAUSE_MS);
            continue;
        }
        if (rc != C_OK)
            break;
        const Tally__V1__ImportComplaintsReply *rep = (Tally__V1__ImportComplaintsReply *)msg;
        for (size_t i = 0; i < rep->n_results; i++) {
            entry e = { .tenant = tenant,
                        .kind = TRAFFIC_IMPORT,
                        .id = rep->results[i]->complaint_id,
                        .version = rep->results[i]->version };
            snprintf(e.key, sizeof(e.key), "%s", rep->results[i]->idempotency_key);
            record(t, &e);
        }
        protobuf_c_message_free_unpacked(msg, NULL);
        break;
    }
out_free:
    free(ptrs);
    free(cs);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    traffic *t = w->t;
    while (!stopping(t)) {
        w->commands++;
        int n = working_size(t);
        if (t->conf.import_every && w->commands % t->conf.import_every == 0)
            import(w);
        else if (n < 20 || world_rng_unit(&w->r) < (n < WORKING_MAX / 2 ? 0.25 : 0.05))
            create(w);
        else
            advance(w);
        if (t->conf.pause_ms)
            sleep_ms(t->conf.pause_ms);
    }
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------------ */

static int put_reference(traffic *t, char *err, size_t errlen)
{
    gc_client *c = client(port_of(t, 0));
    int64_t until = now_mono_ms() + PUT_WITHIN_MS;
    int rc = 0;
    for (int i = 0; i < t->w.ntenants; i++) {
        gc_status st;
        int changed = 0;
        while ((rc = rpc_put_tenant(c, &t->w.tenants[i], &changed, &st)) != 0 &&
               gc_transient(st.code) && now_mono_ms() < until)
            sleep_ms(RETRY_PAUSE_MS);
        if (rc) {
            snprintf(err, errlen, "putting tenant %s: %s", t->w.tenants[i].id, st.message);
            break;
        }
    }
    gc_free(c);
    return rc;
}

traffic *traffic_start(const traffic_config *conf, char *err, size_t errlen)
{
    if (conf->nports < 1 || conf->nports > TRAFFIC_PORTS_MAX || conf->workers < 1 ||
        conf->workers > TRAFFIC_WORKERS_MAX || conf->import_batch < 0 || conf->import_batch > 100 ||
        conf->import_days < 0 || conf->import_days > 365) {
        snprintf(err, errlen, "traffic: a configuration out of range");
        return NULL;
    }
    traffic *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->conf = *conf;
    if (t->conf.deadline_ms <= 0)
        t->conf.deadline_ms = 10000;
    if (!t->conf.import_batch || !t->conf.import_days)
        t->conf.import_every = 0;
    pthread_mutex_init(&t->mu, NULL);
    if (world_parse_tenants(&t->w, conf->tenants, err, errlen) != 0)
        goto out_free;
    int64_t now = now_wall_ms();
    for (int i = 0; i < t->w.ntenants; i++)
        world_set_window(&t->w.tenants[i], conf->seed, now,
                         t->conf.import_days ? t->conf.import_days : 1);
    snprintf(t->key_prefix, sizeof(t->key_prefix), "traffic%" PRIu64 "-%" PRId64, conf->seed, now);
    if (put_reference(t, err, errlen) != 0)
        goto out_free;
    for (int i = 0; i < conf->workers; i++) {
        worker *w = &t->workers[i];
        w->t = t;
        w->index = i;
        w->replica = i % conf->nports;
        world_rng_init(&w->r, conf->seed, (uint64_t)i, 11);
        for (int p = 0; p < conf->nports; p++)
            w->c[p] = client(port_of(t, p));
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            snprintf(err, errlen, "cannot start a traffic thread");
            for (int p = 0; p < conf->nports; p++)
                gc_free(w->c[p]);
            traffic_free(t);
            return NULL;
        }
        t->nworkers++;
    }
    return t;
out_free:
    pthread_mutex_destroy(&t->mu);
    free(t);
    return NULL;
}

void traffic_stop(traffic *t)
{
    __atomic_store_n(&t->stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < t->nworkers; i++) {
        worker *w = &t->workers[i];
        pthread_join(w->thread, NULL);
        for (int p = 0; p < t->conf.nports; p++) {
            gc_free(w->c[p]);
            w->c[p] = NULL;
        }
    }
    t->nworkers = 0;
}

void traffic_free(traffic *t)
{
    if (!t)
        return;
    traffic_stop(t);
    free(t->ledger);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void traffic_stats_get(traffic *t, traffic_stats *out)
{
    pthread_mutex_lock(&t->mu);
    *out = t->st;
    pthread_mutex_unlock(&t->mu);
}

const world *traffic_world(const traffic *t)
{
    return &t->w;
}

/* ---- checks -------------------------------------------------------------------------------- */

/* A PostgreSQL array literal being built. Its elements are ids ([A-Za-z0-9_.-]) and numbers:
 * nothing to quote. */
typedef struct lit {
    char *s;
    size_t len, cap;
} lit;

static void lit_put(lit *l, const char *v)
{
    size_t n = strlen(v);
    if (l->len + n + 3 > l->cap) { /* room for a separator, v, '}' and NUL */
        size_t cap = 2 * (l->cap + n + 3);
        char *g = realloc(l->s, cap);
        if (!g)
            abort();
        l->s = g;
        l->cap = cap;
    }
    char sep = l->len ? ',' : '{';
    l->s[l->len++] = sep;
    memcpy(l->s + l->len, v, n);
    l->len += n;
}

static void lit_put_int(lit *l, int64_t v)
{
    char b[24];
    snprintf(b, sizeof(b), "%" PRId64, v);
    lit_put(l, b);
}

/* The literal, closed; valid until lit_free. */
static const char *lit_end(lit *l)
{
    if (!l->len)
        return "{}";
    l->s[l->len] = '}';
    l->s[l->len + 1] = '\0';
    return l->s;
}

static void lit_free(lit *l)
{
    free(l->s);
    *l = (lit){ 0 };
}

static const char SQL_CREATED[] =
    "SELECT l.t, l.k, l.c FROM unnest($1::text[], $2::text[], $3::bigint[]) AS l(t, k, c) "
    "WHERE NOT EXISTS (SELECT 1 FROM idempotency_keys i JOIN complaints c "
    "ON c.complaint_id = i.complaint_id WHERE i.tenant_id = l.t AND i.idempotency_key = l.k "
    "AND i.complaint_id = l.c AND c.idempotency_key = l.k AND c.tenant_id = l.t) "
    "OR NOT EXISTS (SELECT 1 FROM events e WHERE e.complaint_id = l.c AND e.version = 1)";

static const char SQL_CHANGED[] =
    "SELECT l.c, l.v, l.s FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS l(c, v, s) "
    "WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.complaint_id = l.c AND e.version = l.v) "
    "OR (l.s > 0 AND NOT EXISTS (SELECT 1 FROM status_history h WHERE h.complaint_id = l.c "
    "AND h.version = l.v AND h.to_status = l.s))";

/* Runs sql over a, b, c; adds its rows to *missing, printing the first ones. -1 on failure. */
static int check_query(PGconn *pg, const char *sql, lit *a, lit *b, lit *c, const char *what,
                       FILE *out, int64_t *missing)
{
    const char *params[3] = { lit_end(a), lit_end(b), lit_end(c) };
    PGresult *r = PQexecParams(pg, sql, 3, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(out, "check: %s: %s", what, PQresultErrorMessage(r));
        rc = -1;
    } else {
        for (int i = 0; i < PQntuples(r); i++, (*missing)++)
            if (*missing < REPORT_MAX)
                fprintf(out, "  missing in PostgreSQL: %s %s %s %s\n", what, PQgetvalue(r, i, 0),
                        PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
    }
    PQclear(r);
    lit_free(a);
    lit_free(b);
    lit_free(c);
    return rc;
}

int64_t traffic_check_postgres(traffic *t, PGconn *pg, FILE *out)
{
    int64_t missing = 0;
    lit a = { 0 }, b = { 0 }, c = { 0 }, x = { 0 }, y = { 0 }, z = { 0 };
    size_t na = 0, nx = 0;
    for (size_t i = 0; i < t->nledger; i++) {
        const entry *e = &t->ledger[i];
        if (e->kind == TRAFFIC_CREATE || e->kind == TRAFFIC_IMPORT) {
            lit_put(&a, t->w.tenants[e->tenant].id);
            lit_put(&b, e->key);
            lit_put_int(&c, e->id);
            na++;
        }
        if (e->kind != TRAFFIC_CREATE) { /* an import's last version too */
            lit_put_int(&x, e->id);
            lit_put_int(&y, e->version);
            lit_put_int(&z, e->status);
            nx++;
        }
        bool last = i + 1 == t->nledger;
        if ((na == CHUNK || (last && na)) &&
            check_query(pg, SQL_CREATED, &a, &b, &c, "creation", out, &missing) != 0)
            goto out_fail;
        if (na == CHUNK || last)
            na = 0;
        if ((nx == CHUNK || (last && nx)) &&
            check_query(pg, SQL_CHANGED, &x, &y, &z, "change", out, &missing) != 0)
            goto out_fail;
        if (nx == CHUNK || last)
            nx = 0;
    }
    return missing;
out_fail:
    lit_free(&a), lit_free(&b), lit_free(&c), lit_free(&x), lit_free(&y), lit_free(&z);
    return -1;
}

/* complaint id -> the last OK'd version, per tenant: sorted (tenant, id, version) triples. */
static int by_complaint(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    if (a->tenant != b->tenant)
        return a->tenant < b->tenant ? -1 : 1;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    return (a->version > b->version) - (a->version < b->version);
}

static redisReply *must(redisContext *c, FILE *out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static redisReply *must(redisContext *c, FILE *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        fprintf(out, "check: Redis: %s\n", r ? r->str : c->errstr);
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    return r;
}

int64_t traffic_check_read_model(traffic *t, redisContext *c, FILE *out, int64_t *parked)
{
    int64_t behind = 0;
    *parked = 0;
    entry *s = malloc((t->nledger + 1) * sizeof(*s));
    if (!s) {
        fprintf(out, "check: out of memory\n");
        return -1;
    }
    memcpy(s, t->ledger, t->nledger * sizeof(*s));
    qsort(s, t->nledger, sizeof(*s), by_complaint);
    /* keep the last (highest) version of each complaint */
    size_t n = 0;
    for (size_t i = 0; i < t->nledger; i++) {
        if (n && s[n - 1].tenant == s[i].tenant && s[n - 1].id == s[i].id)
            s[n - 1] = s[i];
        else
            s[n++] = s[i];
    }
    for (size_t i = 0; i < n;) {
        const char *tenant = t->w.tenants[s[i].tenant].id;
        redisReply *g = must(c, out, "GET {t:%s}:gen", tenant);
        if (!g)
            goto out_fail;
        char gen[32];
        snprintf(gen, sizeof(gen), "%s", g->type == REDIS_REPLY_STRING ? g->str : "1");
        freeReplyObject(g);
        size_t j = i;
        while (j < n && s[j].tenant == s[i].tenant && j - i < CHUNK)
            j++;
        for (size_t k = i; k < j; k++)
            redisAppendCommand(c, "HGET {t:%s}:%s:cv %" PRId64, tenant, gen, s[k].id);
        for (size_t k = i; k < j; k++) {
            redisReply *r = NULL;
            if (redisGetReply(c, (void **)&r) != REDIS_OK || !r || r->type == REDIS_REPLY_ERROR) {
                fprintf(out, "check: Redis: %s\n", r ? r->str : c->errstr);
                if (r)
                    freeReplyObject(r);
                goto out_fail;
            }
            int64_t cv = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
            freeReplyObject(r);
            if (cv >= s[k].version)
                continue;
            redisReply *p = must(c, out, "HEXISTS {t:%s}:parked %" PRId64, tenant, s[k].id);
            if (!p)
                goto out_fail;
            bool is_parked = p->type == REDIS_REPLY_INTEGER && p->integer == 1;
            freeReplyObject(p);
            *parked += is_parked;
            if (behind++ < REPORT_MAX)
                fprintf(out,
                        "  not in the read model: tenant %s complaint %" PRId64 " version %" PRId64
                        " (applied: %" PRId64 ")%s\n",
                        tenant, s[k].id, s[k].version, cv, is_parked ? " [parked]" : "");
        }
        i = j;
    }
    free(s);
    return behind;
out_fail:
    free(s);
    return -1;
}
