/*
 * imports: ImportComplaints requests built by hand. An imp_entry is one ImportedComplaint with
 * room for IMP_STEPS_MAX steps, each an assignment or a status change (appended by sim_gen's
 * gen_add_assignment and gen_add_move, as the simulator's lives are); an imp_batch is a request
 * over n entries, on the heap (entries are large). Strings are borrowed: the caller keeps
 * category, agent, actor and note alive until the request is sent.
 */
#ifndef TALLY_TEST_IMPORTS_H
#define TALLY_TEST_IMPORTS_H

#include "tally/v1/commands.pb-c.h"

#include <stddef.h>
#include <stdint.h>

#define IMP_STEPS_MAX 210

typedef struct imp_entry {
    Tally__V1__ImportedComplaint c;
    Tally__V1__ImportedStep steps[IMP_STEPS_MAX];
    Tally__V1__ImportedStep *ptrs[IMP_STEPS_MAX];
    Tally__V1__ImportedAssignment assign[IMP_STEPS_MAX];
    Tally__V1__ImportedStatusChange move[IMP_STEPS_MAX];
    char key[64], customer[32];
} imp_entry;

/*
 * A complaint with no history yet, keyed key (copied), titled "Printer on fire" for customer
 * "cust-42"; the caller may set other fields of x->c afterwards.
 */
void imp_entry_init(imp_entry *x, const char *key, const char *category, int priority,
                    int64_t created_ms);

/* Appends an assignment to agent ("" unassigns) at at_ms; asserts there is room. */
void imp_add_assign(imp_entry *x, int64_t at_ms, const char *agent);

/* Appends a move to status at at_ms by actor with note; asserts there is room. */
void imp_add_move(imp_entry *x, int64_t at_ms, int status, const char *actor, const char *note);

typedef struct imp_batch {
    Tally__V1__ImportComplaintsRequest req;
    imp_entry *x; /* n entries, zeroed: initialise each with imp_entry_init */
    Tally__V1__ImportedComplaint **ptrs;
} imp_batch;

/* A request for tenant (borrowed) over n entries; release with imp_batch_release. */
void imp_batch_init(imp_batch *b, const char *tenant, size_t n);
void imp_batch_release(imp_batch *b);

#endif
