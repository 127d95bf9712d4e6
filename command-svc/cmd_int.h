/* Internals shared by the command handlers (cmd.c) and ImportComplaints (import.c). */
#ifndef TALLY_CMD_INT_H
#define TALLY_CMD_INT_H

#include "cmd.h"
#include "pgx.h"

#include <protobuf-c/protobuf-c.h>

typedef struct cmd_worker {
    pgx_conn *pg;
    int64_t statement_timeout_ms;
    char err[512]; /* validation messages */
} cmd_worker;

/* The statements prepared on every connection, by index into cmd_stmts. */
enum cmd_stmt {
    S_PUT_TENANT,
    S_PUT_CATEGORY,
    S_PUT_AGENT,
    S_CREATE,
    S_IDEM_LOOKUP,
    S_IDEM_FIND,
    S_READ_FOR_CHANGE,
    S_ASSIGN,
    S_CHANGE_STATUS,
    S_CURRENT_VERSION,
    S_GET,
    S_HISTORY,
    S_COUNT
};

/*
 * Checks a request's tenant_id (as val_id: 0, or nonzero with the message in err) and scopes
 * the worker's connection to it: row-level security (migration 0007) then shows and accepts
 * only that tenant's rows, whatever a statement's own WHERE says. Every handler calls it
 * before its first statement.
 */
int cmd_tenant(cmd_worker *w, const char *tenant_id, char *err, size_t errlen);

/* How long the next statement of this call may take: the deadline, capped. */
int64_t cmd_timeout(const cmd_worker *w, const srv_call *call);

/*
 * Fails the call for a database error rc while doing what ("creating the complaint"):
 * UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED for serialization failures, else INTERNAL (logged).
 */
int cmd_db_fail(srv_call *call, cmd_worker *w, int rc, const char *what);

/* Packs msg into buf (cap bytes); returns the length, or TALLY_ETOOBIG if it does not fit. */
__attribute__((warn_unused_result)) int cmd_pack(const ProtobufCMessage *msg, uint8_t *buf,
                                                 size_t cap);

/* The ImportComplaints handler (import.c). */
int cmd_import(srv_call *call, const ProtobufCMessage *msg, void *worker);

#endif
