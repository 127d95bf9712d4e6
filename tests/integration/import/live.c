/*
 * An import equals the same history done live; text with metacharacters is stored verbatim; the
 * rules of the foreign keys migration 0005 dropped hold for imports and live commands.
 */
#include "import_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- equivalence with the live commands ---------------------------------------------------- */

/* A live command that must succeed; returns the reply's version (field 2 of every reply). */
static int64_t live(env *e, const char *method, const ProtobufCMessage *msg)
{
    Tally__V1__AssignComplaintReply *rep =
        call_ok(e->c, method, msg, &tally__v1__assign_complaint_reply__descriptor, 10000);
    int64_t version = rep->version;
    tally__v1__assign_complaint_reply__free_unpacked(rep, NULL);
    return version;
}

static int64_t live_assign(env *e, int64_t id, int64_t version, const char *agent)
{
    Tally__V1__AssignComplaintRequest req = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
    req.tenant_id = e->tenant;
    req.complaint_id = id;
    req.agent_id = (char *)agent;
    req.expected_version = version;
    return live(e, GC_COMMANDS("AssignComplaint"), &req.base);
}

static int64_t live_move(env *e, int64_t id, int64_t version, int status, const char *actor,
                         const char *note)
{
    Tally__V1__ChangeStatusRequest req = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    req.tenant_id = e->tenant;
    req.complaint_id = id;
    req.status = (Tally__V1__Status)status;
    req.expected_version = version;
    req.actor = (char *)actor;
    req.note = (char *)note;
    return live(e, GC_COMMANDS("ChangeStatus"), &req.base);
}

/* The body packed with its time-dependent fields cleared (restored after), for comparison. */
static size_t timeless_body(const ev *v, uint8_t *buf, size_t cap)
{
    size_t n;
    if (v->created) {
        cr_assert_leq(protobuf_c_message_get_packed_size(&v->created->base), cap);
        return protobuf_c_message_pack(&v->created->base, buf);
    }
    if (v->assigned) {
        Tally__V1__ComplaintAssigned a = *v->assigned;
        a.created_at_ms = 0;
        cr_assert_leq(protobuf_c_message_get_packed_size(&a.base), cap);
        return protobuf_c_message_pack(&a.base, buf);
    }
    Tally__V1__StatusChanged c = *v->changed;
    c.created_at_ms = 0;
    c.created_local_day = "";
    c.resolution_seconds = 0;
    n = protobuf_c_message_get_packed_size(&c.base);
    cr_assert_leq(n, cap);
    return protobuf_c_message_pack(&c.base, buf);
}

Test(import, an_imported_history_equals_the_same_history_done_live, .timeout = 60)
{
    env e;
    imp_batch b;
    ev v[32];
    int64_t t0 = T0;
    ti_env_start(&e, "UTC");

    Tally__V1__CreateComplaintRequest cr = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    cr.tenant_id = e.tenant;
    cr.idempotency_key = "live-A";
    cr.category_id = "c1";
    cr.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    cr.title = "Printer on fire";
    cr.description = "It was fine yesterday.";
    cr.customer_id = "cust-42";
    Tally__V1__CreateComplaintReply *created =
        call_ok(e.c, GC_COMMANDS("CreateComplaint"), &cr.base,
                &tally__v1__create_complaint_reply__descriptor, 10000);
    int64_t id = created->complaint_id, ver = created->version;
    tally__v1__create_complaint_reply__free_unpacked(created, NULL);
    /* The same steps as legacy-A of history_batch, live. */
    ver = live_assign(&e, id, ver, "a1");
    ver = live_move(&e, id, ver, IN_PROGRESS, "a1", "looking into it");
    ver = live_move(&e, id, ver, RESOLVED, "a1", "replaced the fuser");
    ver = live_move(&e, id, ver, OPEN, "cust-portal", "on fire again");
    ver = live_assign(&e, id, ver, "a2");
    ver = live_assign(&e, id, ver, "a2");
    ver = live_move(&e, id, ver, RESOLVED, "a2", "");
    ver = live_move(&e, id, ver, CLOSED, "auto-close", "");
    cr_assert_eq(ver, 8);

    ti_history_batch(&b, e.tenant);
    b.req.n_complaints = 1;
    Tally__V1__ImportComplaintsReply *rep = ti_import_ok(&e, &b);
    int64_t imported_id = rep->results[0]->complaint_id;
    cr_assert_eq(rep->results[0]->version, ver);

    int n = ti_load_events(&e, e.tenant, v, 32);
    cr_assert_eq(n, 16);
    for (int i = 0; i < 8; i++) {
        ev *l = &v[i], *m = &v[8 + i];
        uint8_t lb[1024], mb[1024];
        cr_assert_eq(l->complaint, id);
        cr_assert_eq(m->complaint, imported_id);
        cr_assert_eq(l->version, m->version);
        cr_assert_eq(l->type, m->type, "v%" PRId64 " type", l->version);
        cr_assert_not(l->imported);
        cr_assert(m->imported);
        size_t ln = timeless_body(l, lb, sizeof(lb)), mn = timeless_body(m, mb, sizeof(mb));
        cr_assert(ln == mn && memcmp(lb, mb, ln) == 0, "v%" PRId64 ": bodies differ", l->version);
    }
    cr_assert_eq(v[8 + 3].changed->resolution_seconds, 5 * 3600);
    cr_assert_eq(v[8 + 3].changed->created_at_ms, t0);

    /* The audit log and the final row agree too, apart from the times. */
    PGresult *q = ti_query(&e, e.tenant,
                           "SELECT string_agg(format('%s:%s>%s:%s:%s', version, from_status,"
                           " to_status, actor, note), ',' ORDER BY version) FROM status_history"
                           " WHERE tenant_id = $1 GROUP BY complaint_id ORDER BY complaint_id");
    cr_assert_eq(PQntuples(q), 2);
    cr_assert_str_eq(PQgetvalue(q, 0, 0), PQgetvalue(q, 1, 0));
    PQclear(q);
    q = ti_query(&e, e.tenant,
                 "SELECT format('%s/%s/%s/%s/%s/%s/%s', category_id, priority, status,"
                 " assigned_agent_id, title, version, resolved_at IS NOT NULL) FROM complaints"
                 " WHERE tenant_id = $1 ORDER BY complaint_id");
    cr_assert_eq(PQntuples(q), 2);
    cr_assert_str_eq(PQgetvalue(q, 0, 0), PQgetvalue(q, 1, 0));
    cr_assert_str_eq(PQgetvalue(q, 1, 0), "c1/3/4/a2/Printer on fire/8/t");
    PQclear(q);

    ti_free_events(v, n);
    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    ti_env_stop(&e);
}

Test(import, text_with_sql_and_array_metacharacters_is_stored_verbatim, .timeout = 60)
{
    env e;
    imp_batch b;
    static const char *title = "Robert'); DROP TABLE complaints;-- {\"a\",NULL} \\x00 \xc3\xa9";
    static const char *note = "NULL";
    ti_env_start(&e, "UTC");
    imp_batch_init(&b, e.tenant, 2);
    imp_entry_init(&b.x[0], "meta-1", "c1", 1, T0);
    b.x[0].c.title = (char *)title;
    b.x[0].c.description = "";
    imp_add_move(&b.x[0], T0 + HOUR, RESOLVED, "a.b-c_d", note);
    imp_entry_init(&b.x[1], "meta-2", "c2", 2, T0);
    b.x[1].c.description = "line one\nline two\t,{}\\";
    Tally__V1__ImportComplaintsReply *rep = ti_import_ok(&e, &b);

    Tally__V1__GetComplaintReply *own;
    Tally__V1__Complaint *c = ti_get_complaint(&e, rep->results[0]->complaint_id, &own);
    cr_assert_str_eq(c->title, title);
    cr_assert_str_eq(c->description, "");
    tally__v1__get_complaint_reply__free_unpacked(own, NULL);
    c = ti_get_complaint(&e, rep->results[1]->complaint_id, &own);
    cr_assert_str_eq(c->description, "line one\nline two\t,{}\\");
    tally__v1__get_complaint_reply__free_unpacked(own, NULL);
    Tally__V1__ListStatusHistoryReply *h = ti_history(&e, rep->results[0]->complaint_id);
    cr_assert_eq(h->n_entries, 2);
    cr_assert_str_eq(h->entries[1]->note, "NULL");
    cr_assert_str_eq(h->entries[1]->actor, "a.b-c_d");
    tally__v1__list_status_history_reply__free_unpacked(h, NULL);

    tally__v1__import_complaints_reply__free_unpacked(rep, NULL);
    imp_batch_release(&b);
    ti_env_stop(&e);
}

/* ---- the rules of the foreign keys migration 0005 dropped --------------------------------- */

/* The count of sql's rows ($1 = tenant). */
static long long count_of(env *e, const char *tenant, const char *sql)
{
    PGresult *r = ti_query(e, tenant, sql);
    long long n = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

/*
 * Migration 0005 dropped three foreign keys whose rules the writers keep: a history row's
 * complaint exists, an idempotency key's and a complaint's tenant exists. Checked for imports
 * and the live commands alike, refusals included (an unknown tenant, a stale version), so that
 * a writer that stops keeping them fails here rather than leaving orphans.
 */
Test(import, the_rules_of_the_dropped_foreign_keys_hold_for_imports_and_live_commands,
     .timeout = 60)
{
    env e;
    imp_batch b;
    int64_t id;
    gc_status st;
    ti_env_start(&e, "UTC");
    cr_assert_eq(count_of(&e, e.tenant,
                          "SELECT count(*) FROM pg_constraint WHERE $1 <> '' AND conname IN"
                          " ('status_history_complaint_id_fkey', 'idempotency_keys_tenant_id_fkey',"
                          " 'complaints_tenant_fk')"),
                 0, "the rules below are the service's, not the database's");

    ti_history_batch(&b, e.tenant);
    tally__v1__import_complaints_reply__free_unpacked(ti_import_ok(&e, &b), NULL);
    imp_batch_release(&b);
    ti_history_batch(&b, "fk-no-tenant");
    call_code(e.c, GC_COMMANDS("ImportComplaints"), &b.req.base, 60000, &st);
    cr_assert_eq(st.code, TALLY_GRPC_NOT_FOUND, "%s", st.details);
    imp_batch_release(&b);

    int64_t v = call_create(e.c, e.tenant, "fk-live", "c1", 2, &id);
    v = call_assign(e.c, e.tenant, id, v, "a1");
    call_move(e.c, e.tenant, id, v, IN_PROGRESS, "a1");
    Tally__V1__ChangeStatusRequest stale = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    stale.tenant_id = e.tenant;
    stale.complaint_id = id;
    stale.status = RESOLVED;
    stale.expected_version = v; /* one behind */
    stale.actor = "a1";
    cr_assert_eq(call_code(e.c, GC_COMMANDS("ChangeStatus"), &stale.base, 10000, NULL),
                 TALLY_GRPC_ABORTED);
    stale.complaint_id = id + 1000000; /* no such complaint */
    cr_assert_eq(call_code(e.c, GC_COMMANDS("ChangeStatus"), &stale.base, 10000, NULL),
                 TALLY_GRPC_NOT_FOUND);
    Tally__V1__CreateComplaintRequest cr = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    cr.tenant_id = "fk-no-tenant";
    cr.idempotency_key = "fk-live";
    cr.category_id = "c1";
    cr.priority = TALLY__V1__PRIORITY__PRIORITY_LOW;
    cr.title = "Nobody's";
    cr.customer_id = "cust-1";
    cr_assert_eq(call_code(e.c, GC_COMMANDS("CreateComplaint"), &cr.base, 10000, NULL),
                 TALLY_GRPC_NOT_FOUND);

    cr_assert_eq(count_of(&e, e.tenant,
                          "SELECT count(*) FROM status_history h WHERE h.tenant_id = $1 AND NOT"
                          " EXISTS (SELECT 1 FROM complaints c WHERE c.complaint_id ="
                          " h.complaint_id AND c.tenant_id = h.tenant_id)"),
                 0, "every history row's complaint exists");
    cr_assert_eq(count_of(&e, "fk-no-tenant",
                          "SELECT (SELECT count(*) FROM idempotency_keys WHERE tenant_id = $1) +"
                          " (SELECT count(*) FROM complaints WHERE tenant_id = $1) +"
                          " (SELECT count(*) FROM status_history WHERE tenant_id = $1) +"
                          " (SELECT count(*) FROM events WHERE tenant_id = $1)"),
                 0, "nothing of a tenant that does not exist");
    ti_env_stop(&e);
}
