/*
 * cmd.c: the small commands of the tally client, for trying the system by hand. Each one
 * makes one call to command-svc (assign and move make two when they look the version up) and
 * prints one line: a sentence for people, or with --json one JSON object. Writes end with the
 * consistency token ("token 42:3") that `tally dashboard --after 42:3` takes.
 */
#include "tally/v1/commands.pb-c.h"
#include "tally_int.h"
#include "tally_text.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define OUT_LIMIT     (1u << 20)
#define HISTORY_LIMIT 100000 /* entries; a complaint with more is cut, saying so */
#define HISTORY_PAGES 1000   /* pages, against a server that never says "last page" */

static const char *const priority_names[] = { "unspecified", "low", "medium", "high", "urgent" };
static const char *const status_names[] = { "unspecified", "open", "in_progress", "resolved",
                                            "closed" };

static const char *priority_name(int p)
{
    return p >= 0 && p <= 4 ? priority_names[p] : "unknown";
}

static const char *status_name(int s)
{
    return s >= 0 && s <= 4 ? status_names[s] : "unknown";
}

/* Prints b and a newline to stdout; EXIT_FAIL when the line was too long to build. */
static int print_line(tx_buf *b)
{
    int rc = EXIT_OK;
    if (b->full) {
        fprintf(stderr, "tally: out of memory\n");
        rc = EXIT_FAIL;
    } else {
        printf("%s\n", b->s ? b->s : "");
    }
    tx_release(b);
    return rc;
}

/* Prints text that came from the server with unprintable characters replaced. */
static void put_safe(tx_buf *b, const char *s)
{
    tx_cell(b, s ? s : "", tx_width(s ? s : ""), false, false, true);
}

/* ---------------------------------------------------------------------------------------------
 * The Put commands */

/* The reply's bool field name (created, changed: every Put reply has both). */
static bool reply_flag(const ProtobufCMessage *rep, const char *name)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(rep->descriptor, name);
    return f && *(const protobuf_c_boolean *)((const char *)rep + f->offset);
}

static int print_put(const cli *c, const char *what, const char *id, const ProtobufCMessage *rep)
{
    bool created = reply_flag(rep, "created"), changed = reply_flag(rep, "changed");
    tx_buf b;
    tx_init(&b, OUT_LIMIT);
    if (cli_has(c, OPT_JSON)) {
        tx_puts(&b, "{\"tenant_id\":");
        tx_json_str(&b, cli_get(c, OPT_TENANT));
        if (id) {
            tx_printf(&b, ",\"%s_id\":", what);
            tx_json_str(&b, id);
        }
        tx_printf(&b, ",\"created\":%s,\"changed\":%s}", created ? "true" : "false",
                  changed ? "true" : "false");
    } else {
        tx_printf(&b, "%s ", what);
        put_safe(&b, id ? id : cli_get(c, OPT_TENANT));
        if (id) {
            tx_puts(&b, " of tenant ");
            put_safe(&b, cli_get(c, OPT_TENANT));
        }
        tx_printf(&b, ": %s", created ? "created" : changed ? "updated" : "unchanged");
    }
    return print_line(&b);
}

/*
 * The Put commands, all alike: PutTenant, PutCategory and PutAgent (Put + the kind, capitalised)
 * take string fields from required options, asked for in this order, and reply with created and
 * changed. Their messages are looked up in the service's descriptor.
 */
typedef struct put_def {
    const char *what; /* "tenant", "category", "agent" */
    struct {
        int opt;
        const char *field; /* of the request, a string */
    } fields[3];
} put_def;

static const put_def put_tenant = {
    "tenant", { { OPT_TENANT, "tenant_id" }, { OPT_NAME, "name" }, { OPT_TIME_ZONE, "time_zone" } }
};
static const put_def put_category = {
    "category", { { OPT_TENANT, "tenant_id" }, { OPT_ID, "category_id" }, { OPT_NAME, "name" } }
};
static const put_def put_agent = {
    "agent", { { OPT_TENANT, "tenant_id" }, { OPT_ID, "agent_id" }, { OPT_NAME, "name" } }
};

/*
 * Fills d's request from the options, sends it to command-svc and prints what it did (to the
 * --id of a category or agent; tenant put takes no --id).
 */
static int run_put(const cli *c, const put_def *d)
{
    union { /* room for any Put request */
        ProtobufCMessage base;
        Tally__V1__PutTenantRequest tenant;
        Tally__V1__PutCategoryRequest category;
        Tally__V1__PutAgentRequest agent;
    } req;
    char name[32], method[96];
    ProtobufCMessage *rep;
    snprintf(name, sizeof(name), "Put%c%s", toupper((unsigned char)d->what[0]), d->what + 1);
    snprintf(method, sizeof(method), GC_COMMANDS("%s"), name);
    const ProtobufCMethodDescriptor *m = protobuf_c_service_descriptor_get_method_by_name(
        &tally__v1__complaint_commands__descriptor, name);
    if (!m || m->input->sizeof_message > sizeof(req)) {
        fprintf(stderr, "tally: internal error: no method %s\n", name);
        return EXIT_FAIL;
    }
    protobuf_c_message_init(m->input, &req);
    for (int i = 0; i < 3; i++) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(m->input, d->fields[i].field);
        const char *v = cli_need(c, d->fields[i].opt);
        if (!v)
            return EXIT_USAGE;
        if (!f || f->type != PROTOBUF_C_TYPE_STRING) {
            fprintf(stderr, "tally: internal error: %s has no field %s\n", name,
                    d->fields[i].field);
            return EXIT_FAIL;
        }
        *(char **)((char *)&req + f->offset) = (char *)v;
    }
    int rc = cli_call_command(c, method, &req.base, m->output, &rep);
    if (rc == EXIT_OK) {
        rc = print_put(c, d->what, cli_get(c, OPT_ID), rep);
        protobuf_c_message_free_unpacked(rep, NULL);
    }
    return rc;
}

int cli_run_tenant_put(const cli *c)
{
    return run_put(c, &put_tenant);
}

int cli_run_category_put(const cli *c)
{
    return run_put(c, &put_category);
}

int cli_run_agent_put(const cli *c)
{
    return run_put(c, &put_agent);
}

/* ---------------------------------------------------------------------------------------------
 * Complaint commands */

/* A fresh idempotency key, "cli-" and 32 hex digits; -1 when the system has no randomness. */
static int random_key(char *out, size_t outlen)
{
    unsigned char raw[16];
    size_t o;
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -1;
    o = (size_t)snprintf(out, outlen, "cli-");
    for (size_t i = 0; i < sizeof(raw) && o + 2 < outlen; i++, o += 2)
        snprintf(out + o, outlen - o, "%02x", raw[i]);
    return 0;
}

/* The one line every complaint write ends with. */
static int print_write(const cli *c, const char *sentence, int64_t id, int64_t version,
                       const char *at_field, int64_t at_ms, const char *key)
{
    char when[32];
    tx_buf b;
    tx_init(&b, OUT_LIMIT);
    if (cli_has(c, OPT_JSON)) {
        tx_printf(&b,
                  "{\"complaint_id\":%" PRId64 ",\"version\":%" PRId64 ",\"token\":\"%" PRId64
                  ":%" PRId64 "\"",
                  id, version, id, version);
        if (at_ms)
            tx_printf(&b, ",\"%s\":%" PRId64, at_field, at_ms);
        if (key) {
            tx_puts(&b, ",\"idempotency_key\":");
            tx_json_str(&b, key);
        }
        tx_putc(&b, '}');
    } else {
        tx_printf(&b, "complaint %" PRId64 " ", id);
        put_safe(&b, sentence);
        tx_printf(&b, ", version %" PRId64, version);
        if (at_ms)
            tx_printf(&b, " at %s", tx_time_utc(at_ms, when, sizeof(when)));
        if (key) {
            tx_puts(&b, " (idempotency key ");
            put_safe(&b, key);
            tx_putc(&b, ')');
        }
        tx_printf(&b, "; token %" PRId64 ":%" PRId64, id, version);
    }
    return print_line(&b);
}

int cli_run_create(const cli *c)
{
    Tally__V1__CreateComplaintRequest req = TALLY__V1__CREATE_COMPLAINT_REQUEST__INIT;
    Tally__V1__CreateComplaintReply *rep;
    char key[64];
    int prio, rc;
    if (!(req.tenant_id = (char *)cli_need(c, OPT_TENANT)) ||
        !(req.category_id = (char *)cli_need(c, OPT_CATEGORY)) || !cli_need(c, OPT_PRIORITY) ||
        !(req.title = (char *)cli_need(c, OPT_TITLE)))
        return EXIT_USAGE;
    if ((rc = cli_priority(c, cli_name(c, OPT_PRIORITY), cli_get(c, OPT_PRIORITY), &prio)))
        return rc;
    req.priority = (Tally__V1__Priority)prio;
    req.description = (char *)cli_get_or(c, OPT_DESCRIPTION, req.description);
    req.customer_id = (char *)cli_get_or(c, OPT_CUSTOMER, "tally-cli");
    if (cli_get(c, OPT_KEY)) {
        req.idempotency_key = (char *)cli_get(c, OPT_KEY);
    } else if (random_key(key, sizeof(key)) == 0) {
        req.idempotency_key = key;
    } else {
        fprintf(stderr, "tally: no randomness for an idempotency key; give --idempotency-key\n");
        return EXIT_FAIL;
    }
    rc =
        cli_call_command(c, GC_COMMANDS("CreateComplaint"), &req.base,
                         &tally__v1__create_complaint_reply__descriptor, (ProtobufCMessage **)&rep);
    if (rc == EXIT_OK) {
        rc = print_write(c, "created", rep->complaint_id, rep->version, "created_at_ms",
                         rep->created_at_ms, req.idempotency_key);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    return rc;
}

/* The complaint's current version, for writes given no --expected-version. */
static int current_version(const cli *c, gc_client *gc, const char *tenant, int64_t id,
                           int64_t *version)
{
    Tally__V1__GetComplaintRequest req = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    Tally__V1__GetComplaintReply *rep;
    int rc;
    req.tenant_id = (char *)tenant;
    req.complaint_id = id;
    rc = cli_call(c, gc, GC_COMMANDS("GetComplaint"), &req.base,
                  &tally__v1__get_complaint_reply__descriptor, (ProtobufCMessage **)&rep);
    if (rc != EXIT_OK)
        return rc;
    *version = rep->complaint ? rep->complaint->version : 0;
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return EXIT_OK;
}

/* The options of every command on one complaint: tenant, complaint. */
static int complaint_id_args(const cli *c, char **tenant, int64_t *id)
{
    if (!(*tenant = (char *)cli_need(c, OPT_TENANT)) || !cli_need(c, OPT_COMPLAINT))
        return EXIT_USAGE;
    return cli_int(c, OPT_COMPLAINT, 1, INT64_MAX, id);
}

/* The options assign and move share: tenant, complaint, expected version (0 = look it up). */
static int complaint_args(const cli *c, char **tenant, int64_t *id, int64_t *expected)
{
    int rc;
    *expected = 0;
    if ((rc = complaint_id_args(c, tenant, id)))
        return rc;
    if (cli_has(c, OPT_EXPECTED) && (rc = cli_int(c, OPT_EXPECTED, 1, INT64_MAX, expected)))
        return rc;
    return EXIT_OK;
}

/*
 * Sends the write req (assign, move) of complaint id of tenant, at version *expected: the
 * version it is at now when the command was given none (*expected 0, looked up first, into
 * req). EXIT_OK with the reply in *rep (free it with protobuf_c_message_free_unpacked), or
 * EXIT_FAIL after printing why.
 */
static int send_write(const cli *c, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *rd, const char *tenant, int64_t id,
                      int64_t *expected, ProtobufCMessage **rep)
{
    gc_client *gc = cli_connect(c, c->command, 0);
    int rc = EXIT_OK;
    if (!gc)
        return EXIT_FAIL;
    if (!*expected)
        rc = current_version(c, gc, tenant, id, expected);
    if (rc == EXIT_OK)
        rc = cli_call(c, gc, method, req, rd, rep);
    gc_free(gc);
    return rc;
}

int cli_run_assign(const cli *c)
{
    Tally__V1__AssignComplaintRequest req = TALLY__V1__ASSIGN_COMPLAINT_REQUEST__INIT;
    Tally__V1__AssignComplaintReply *rep;
    char sentence[160];
    int rc = complaint_args(c, &req.tenant_id, &req.complaint_id, &req.expected_version);
    if (rc)
        return rc;
    if (!(req.agent_id = (char *)cli_need(c, OPT_AGENT)))
        return EXIT_USAGE;
    rc = send_write(c, GC_COMMANDS("AssignComplaint"), &req.base,
                    &tally__v1__assign_complaint_reply__descriptor, req.tenant_id, req.complaint_id,
                    &req.expected_version, (ProtobufCMessage **)&rep);
    if (rc != EXIT_OK)
        return rc;
    snprintf(sentence, sizeof(sentence), "%s%s%s",
             rep->version == req.expected_version ? "already " : "",
             req.agent_id[0] ? "assigned to " : "unassigned", req.agent_id);
    rc = print_write(c, sentence, rep->complaint_id, rep->version, "updated_at_ms",
                     rep->updated_at_ms, NULL);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return rc;
}

/* $USER when it is a valid actor id, else "tally-cli". */
static const char *default_actor(void)
{
    const char *u = getenv("USER");
    size_t n = u ? strlen(u) : 0;
    if (n == 0 || n > 64 ||
        strspn(u, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n)
        return "tally-cli";
    return u;
}

int cli_run_move(const cli *c)
{
    Tally__V1__ChangeStatusRequest req = TALLY__V1__CHANGE_STATUS_REQUEST__INIT;
    Tally__V1__ChangeStatusReply *rep;
    char sentence[64];
    int status, rc = complaint_args(c, &req.tenant_id, &req.complaint_id, &req.expected_version);
    if (rc)
        return rc;
    if (!cli_need(c, OPT_TO))
        return EXIT_USAGE;
    if ((rc = cli_status(c, cli_name(c, OPT_TO), cli_get(c, OPT_TO), &status)))
        return rc;
    req.status = (Tally__V1__Status)status;
    req.note = (char *)cli_get_or(c, OPT_NOTE, req.note);
    req.actor = (char *)cli_get_or(c, OPT_ACTOR, default_actor());
    rc = send_write(c, GC_COMMANDS("ChangeStatus"), &req.base,
                    &tally__v1__change_status_reply__descriptor, req.tenant_id, req.complaint_id,
                    &req.expected_version, (ProtobufCMessage **)&rep);
    if (rc != EXIT_OK)
        return rc;
    snprintf(sentence, sizeof(sentence), "moved to %s", status_name(status));
    rc = print_write(c, sentence, rep->complaint_id, rep->version, "updated_at_ms",
                     rep->updated_at_ms, NULL);
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Reads */

static void complaint_json(tx_buf *b, const Tally__V1__Complaint *k)
{
    tx_printf(b, "{\"complaint_id\":%" PRId64 ",\"tenant_id\":", k->complaint_id);
    tx_json_str(b, k->tenant_id);
    tx_puts(b, ",\"category_id\":");
    tx_json_str(b, k->category_id);
    tx_printf(b, ",\"priority\":\"%s\",\"status\":\"%s\",\"assigned_agent_id\":",
              priority_name(k->priority), status_name(k->status));
    tx_json_str(b, k->assigned_agent_id);
    tx_puts(b, ",\"title\":");
    tx_json_str(b, k->title);
    tx_puts(b, ",\"description\":");
    tx_json_str(b, k->description);
    tx_puts(b, ",\"customer_id\":");
    tx_json_str(b, k->customer_id);
    tx_printf(b,
              ",\"created_at_ms\":%" PRId64 ",\"updated_at_ms\":%" PRId64
              ",\"resolved_at_ms\":%" PRId64 ",\"version\":%" PRId64 ",\"idempotency_key\":",
              k->created_at_ms, k->updated_at_ms, k->resolved_at_ms, k->version);
    tx_json_str(b, k->idempotency_key);
    tx_putc(b, '}');
}

static void complaint_text(tx_buf *b, const Tally__V1__Complaint *k)
{
    char t[32];
    tx_printf(b, "complaint %" PRId64 ": %s, %s, category ", k->complaint_id,
              status_name(k->status), priority_name(k->priority));
    put_safe(b, k->category_id);
    if (k->assigned_agent_id[0]) {
        tx_puts(b, ", assigned to ");
        put_safe(b, k->assigned_agent_id);
    } else {
        tx_puts(b, ", unassigned");
    }
    tx_puts(b, ", customer ");
    put_safe(b, k->customer_id);
    tx_printf(b, ", version %" PRId64 ", created %s", k->version,
              tx_time_utc(k->created_at_ms, t, sizeof(t)));
    tx_printf(b, ", updated %s", tx_time_utc(k->updated_at_ms, t, sizeof(t)));
    if (k->resolved_at_ms)
        tx_printf(b, ", resolved %s", tx_time_utc(k->resolved_at_ms, t, sizeof(t)));
    tx_puts(b, ": ");
    put_safe(b, k->title);
}

int cli_run_get(const cli *c)
{
    Tally__V1__GetComplaintRequest req = TALLY__V1__GET_COMPLAINT_REQUEST__INIT;
    Tally__V1__GetComplaintReply *rep;
    tx_buf b;
    int rc;
    if ((rc = complaint_id_args(c, &req.tenant_id, &req.complaint_id)))
        return rc;
    rc = cli_call_command(c, GC_COMMANDS("GetComplaint"), &req.base,
                          &tally__v1__get_complaint_reply__descriptor, (ProtobufCMessage **)&rep);
    if (rc == EXIT_OK) {
        tx_init(&b, OUT_LIMIT);
        if (!rep->complaint)
            tx_puts(&b, "no complaint in the reply");
        else if (cli_has(c, OPT_JSON))
            complaint_json(&b, rep->complaint);
        else
            complaint_text(&b, rep->complaint);
        rc = print_line(&b);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    }
    return rc;
}

static void entry_json(tx_buf *b, const Tally__V1__StatusHistoryEntry *e)
{
    tx_printf(b, "{\"version\":%" PRId64 ",\"from_status\":\"%s\",\"to_status\":\"%s\",\"actor\":",
              e->version, status_name(e->from_status), status_name(e->to_status));
    tx_json_str(b, e->actor);
    tx_puts(b, ",\"note\":");
    tx_json_str(b, e->note);
    tx_printf(b, ",\"changed_at_ms\":%" PRId64 "}", e->changed_at_ms);
}

static void entry_text(tx_buf *b, const Tally__V1__StatusHistoryEntry *e)
{
    char t[32];
    tx_printf(b, "v%-3" PRId64 " %s  ", e->version, tx_time_utc(e->changed_at_ms, t, sizeof(t)));
    if (e->from_status == TALLY__V1__STATUS__STATUS_UNSPECIFIED)
        tx_printf(b, "created (%s)", status_name(e->to_status));
    else
        tx_printf(b, "%s -> %s", status_name(e->from_status), status_name(e->to_status));
    if (e->actor[0]) {
        tx_puts(b, " by ");
        put_safe(b, e->actor);
    }
    if (e->note[0]) {
        tx_puts(b, ": ");
        put_safe(b, e->note);
    }
}

int cli_run_history(const cli *c)
{
    Tally__V1__ListStatusHistoryRequest req = TALLY__V1__LIST_STATUS_HISTORY_REQUEST__INIT;
    Tally__V1__ListStatusHistoryReply *rep;
    char *token = NULL;
    bool json = cli_has(c, OPT_JSON), first = true;
    long shown = 0, pages = 0;
    gc_client *gc;
    tx_buf b;
    int rc;
    if ((rc = complaint_id_args(c, &req.tenant_id, &req.complaint_id)))
        return rc;
    req.page_size = 500;
    if (!(gc = cli_connect(c, c->command, 0)))
        return EXIT_FAIL;
    tx_init(&b, 64u << 20);
    if (json)
        tx_printf(&b, "{\"complaint_id\":%" PRId64 ",\"entries\":[", req.complaint_id);
    do {
        req.page_token = token ? token : (char *)"";
        rc = cli_call(c, gc, GC_COMMANDS("ListStatusHistory"), &req.base,
                      &tally__v1__list_status_history_reply__descriptor, (ProtobufCMessage **)&rep);
        free(token);
        token = NULL;
        if (rc != EXIT_OK)
            break;
        for (size_t i = 0; i < rep->n_entries && shown < HISTORY_LIMIT; i++, shown++) {
            if (json) {
                if (!first)
                    tx_putc(&b, ',');
                entry_json(&b, rep->entries[i]);
            } else {
                tx_reset(&b);
                entry_text(&b, rep->entries[i]);
                printf("%s\n", b.s ? b.s : "");
            }
            first = false;
        }
        if (rep->next_page_token[0] && shown < HISTORY_LIMIT && ++pages < HISTORY_PAGES)
            token = strdup(rep->next_page_token);
        protobuf_c_message_free_unpacked(&rep->base, NULL);
    } while (token);
    if (rc == EXIT_OK && shown >= HISTORY_LIMIT)
        fprintf(stderr, "tally: the history was cut after %d entries\n", HISTORY_LIMIT);
    if (rc == EXIT_OK && json) {
        tx_puts(&b, "]}");
        rc = print_line(&b);
    } else {
        if (rc == EXIT_OK && first)
            printf("no status history\n");
        tx_release(&b);
    }
    gc_free(gc);
    return rc;
}
