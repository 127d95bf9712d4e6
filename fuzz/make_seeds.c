/*
 * make_seeds DIR: writes the seed corpus of the fuzz targets into DIR/<target>/ (the committed
 * fuzz/corpus/ was made with it): a valid request of every kind, events of every type,
 * tokens (valid, expired, for several tenants), page tokens. The TZif seeds are copies of
 * zoneinfo files (scripts/fuzz adds the host's). Run: build-fuzz/fuzz/make_seeds fuzz/corpus
 */
#include "auth.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "panels.h"
#include "read.h"
#include "tally/v1/commands.pb-c.h"
#include "tally/v1/dashboard.pb-c.h"
#include "tally/v1/events.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FUZZ_NOW    1800000000LL
#define FUZZ_SECRET "fuzz-secret-of-more-than-32-bytes-0123"

static const char *root;

static void put(const char *target, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, target);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
}

/* The request seed: the selector byte, then the packed message. */
static void put_request(int index, const char *name, const ProtobufCMessage *m)
{
    uint8_t buf[4096];
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n + 1 > sizeof(buf))
        exit(1);
    buf[0] = (uint8_t)index;
    protobuf_c_message_pack(m, buf + 1);
    put("request", name, buf, n + 1);
}

static void put_event(const char *name, const Tally__V1__EventEnvelope *e)
{
    uint8_t buf[4096];
    size_t n = protobuf_c_message_get_packed_size(&e->base);
    protobuf_c_message_pack(&e->base, buf);
    put("event", name, buf, n);
}

static void requests(void)
{
    Tally__V1__PutTenantRequest t = TALLY__V1__PUT_TENANT_REQUEST__INIT;
    t.tenant_id = "acme";
    t.name = "Acme";
    t.time_zone = "Europe/Berlin";
    put_request(0, "put_tenant", &t.base);
    Tally__V1__PutCategoryRequest c = TALLY__V1__PUT_CATEGORY_REQUEST__INIT;
    c.tenant_id = "acme";
    c.category_id = "billing";
    c.name = "Billing";
    put_request(1, "put_category", &c.base);
    Tally__V1__CreateComplaintRequest cr = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    cr.tenant_id = "acme";
    cr.idempotency_key = "k-1";
    cr.category_id = "billing";
    cr.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    cr.title = "Printer on fire \xc3\xa9";
    cr.description = "It burns.";
    cr.customer_id = "cust-42";
    put_request(3, "create", &cr.base);
    Tally__V1__ChangeStatusRequest mv = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    mv.tenant_id = "acme";
    mv.complaint_id = 7;
    mv.status = TALLY__V1__STATUS__STATUS_RESOLVED;
    mv.expected_version = 3;
    mv.actor = "alice";
    mv.note = "done";
    put_request(5, "move", &mv.base);
    Tally__V1__ListStatusHistoryRequest h = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
    h.tenant_id = "acme";
    h.complaint_id = 7;
    h.page_size = 10;
    h.page_token = "h7.3";
    put_request(7, "history", &h.base);
    Tally__V1__ImportedComplaint ic = TALLY__V1__IMPORTED_COMPLAINT__INIT;
    Tally__V1__ImportedComplaint *ics[] = { &ic };
    ic.idempotency_key = "imp-1";
    ic.category_id = "billing";
    ic.priority = TALLY__V1__PRIORITY__PRIORITY_LOW;
    ic.title = "Old one";
    ic.customer_id = "cust-1";
    ic.created_at_ms = 1700000000000LL;
    Tally__V1__ImportComplaintsRequest im = TALLY__V1__IMPORT_COMPLAINTS_REQUEST__INIT;
    im.tenant_id = "acme";
    im.n_complaints = 1;
    im.complaints = ics;
    put_request(8, "import", &im.base);
    Tally__V1__DateRange range = TALLY__V1__DATE_RANGE__INIT;
    range.from_day = "2026-11-01";
    range.to_day = "2026-11-30";
    Tally__V1__GetDashboardRequest d = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    d.tenant_id = "acme";
    d.range = &range;
    put_request(14, "dashboard", &d.base);
}

static void events(void)
{
    Tally__V1__EventEnvelope e = TALLY__V1__EVENT_ENVELOPE__INIT;
    e.seq = 1;
    e.tenant_id = "acme";
    e.complaint_id = 7;
    e.version = 1;
    e.occurred_at_ms = 1796000000000LL;
    e.local_day = "2026-12-01";
    e.recorded_at_ms = 1796000000001LL;
    Tally__V1__ComplaintCreated cc = TALLY__V1__COMPLAINT_CREATED__INIT;
    cc.category_id = "billing";
    cc.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    cc.customer_id = "cust-42";
    cc.title = "Printer on fire";
    cc.status = TALLY__V1__STATUS__STATUS_OPEN;
    e.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_CREATED;
    e.body_case = TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_CREATED;
    e.complaint_created = &cc;
    put_event("created", &e);
    Tally__V1__ComplaintAssigned ca = TALLY__V1__COMPLAINT_ASSIGNED__INIT;
    ca.agent_id = "alice";
    ca.category_id = "billing";
    ca.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    ca.status = TALLY__V1__STATUS__STATUS_OPEN;
    ca.created_at_ms = 1796000000000LL;
    e.version = 2;
    e.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_COMPLAINT_ASSIGNED;
    e.body_case = TALLY__V1__EVENT_ENVELOPE__BODY_COMPLAINT_ASSIGNED;
    e.complaint_assigned = &ca;
    put_event("assigned", &e);
    Tally__V1__StatusChanged sc = TALLY__V1__STATUS_CHANGED__INIT;
    sc.from_status = TALLY__V1__STATUS__STATUS_OPEN;
    sc.to_status = TALLY__V1__STATUS__STATUS_RESOLVED;
    sc.category_id = "billing";
    sc.priority = TALLY__V1__PRIORITY__PRIORITY_HIGH;
    sc.agent_id = "alice";
    sc.actor = "alice";
    sc.created_at_ms = 1796000000000LL;
    sc.created_local_day = "2026-12-01";
    sc.resolution_seconds = 3600;
    e.version = 3;
    e.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_STATUS_CHANGED;
    e.body_case = TALLY__V1__EVENT_ENVELOPE__BODY_STATUS_CHANGED;
    e.status_changed = &sc;
    put_event("status_changed", &e);
    Tally__V1__TenantPut tp = TALLY__V1__TENANT_PUT__INIT;
    tp.name = "Acme";
    tp.time_zone = "Europe/Berlin";
    e.complaint_id = 0;
    e.version = 0;
    e.type = TALLY__V1__EVENT_TYPE__EVENT_TYPE_TENANT_PUT;
    e.body_case = TALLY__V1__EVENT_ENVELOPE__BODY_TENANT_PUT;
    e.tenant_put = &tp;
    put_event("tenant_put", &e);
}

static void tokens(void)
{
    struct {
        const char *name, *role, *tenants;
        int64_t ttl, nbf;
        bool bearer;
    } t[] = {
        { "writer", "writer", "acme", 3600, 0, false },
        { "manager_two", "manager", "acme,globex", 3600, 0, true },
        { "admin_all", "admin", "*", 3600, 0, true },
        { "expired", "writer", "acme", -3600, 0, false },
        { "not_yet", "writer", "acme", 7200, 3600, false },
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char tok[2048], buf[2100], err[256];
        auth_mint_opts o = { .key = FUZZ_SECRET,
                             .role = t[i].role,
                             .tenants = t[i].tenants,
                             .subject = "fuzz",
                             .issuer = "https://id.example",
                             .now_s = FUZZ_NOW - 60,
                             .ttl_s = t[i].ttl,
                             .nbf_s = t[i].nbf };
        if (auth_mint(&o, tok, sizeof(tok), err, sizeof(err)) != 0) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
        int n = snprintf(buf, sizeof(buf), "%c%s%s", t[i].bearer ? 1 : 0,
                         t[i].bearer ? "Bearer " : "", tok);
        put("auth", t[i].name, buf, (size_t)n);
    }
}

/* Reflection requests as grpcurl sends them: list, a service's file, a file by name. */
static void reflections(void)
{
    Grpc__Reflection__V1__ServerReflectionRequest r =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    uint8_t buf[512];
    r.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    r.list_services = "";
    put("reflect", "list", buf, protobuf_c_message_pack(&r.base, buf));
    r.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    r.file_containing_symbol = "tally.v1.Dashboard.WatchDashboard";
    put("reflect", "symbol", buf, protobuf_c_message_pack(&r.base, buf));
    r.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    r.file_by_filename = "tally/v1/types.proto";
    put("reflect", "file", buf, protobuf_c_message_pack(&r.base, buf));
}

static void page_tokens(void)
{
    arena ar = { 0 };
    qrange r = { .from = 20000 + 5, .to = 20000 + 5 + 30 };
    char buf[128];
    char *tok = ag_token(&ar, r, 1, false, 20);
    int n = snprintf(buf, sizeof(buf), "%c%c%c%s", 5, 30, 1, tok);
    put("token", "agents", buf, (size_t)n);
    n = snprintf(buf, sizeof(buf), "%c%c%c%s", 5, 30, 1, "h42.17");
    put("token", "history", buf, (size_t)n);
    ar_free(&ar);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR\n");
        return 2;
    }
    root = argv[1];
    mkdir(root, 0755);
    requests();
    events();
    tokens();
    page_tokens();
    reflections();
    return 0;
}
