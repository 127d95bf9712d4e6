/*
 * cmd: tally.v1.ComplaintCommands over PostgreSQL.
 *
 * Every command is one transaction that writes the row changes and the event row (the
 * outbox) together, so a command that returned OK has its event durably queued. Reads
 * (GetComplaint, ListStatusHistory) come from PostgreSQL too: the current state and the audit
 * log are never answered from the read model. Each worker thread owns one connection.
 */
#ifndef TALLY_CMD_H
#define TALLY_CMD_H

#include "srv.h"

#include <stdint.h>

typedef struct cmd_config {
    const char *pg_dsn;
    int64_t statement_timeout_ms; /* cap of every statement, whatever the deadline */
} cmd_config;

extern const srv_service cmd_service;

/* srv worker hooks; arg is a const cmd_config * that outlives the server. */
void *cmd_worker_new(int index, void *arg);
void cmd_worker_free(void *worker, void *arg);
/*
 * Before each call: the worker's connection is scoped to no tenant, so that a handler that
 * forgot cmd_tenant reads and writes nothing rather than the previous caller's rows.
 */
void cmd_call_begin(void *worker, void *arg);

#endif
