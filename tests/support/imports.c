/* imports: hand-built ImportComplaints requests (imports.h). */
#include "imports.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

void imp_entry_init(imp_entry *x, const char *key, const char *category, int priority,
                    int64_t created_ms)
{
    tally__v1__imported_complaint__init(&x->c);
    snprintf(x->key, sizeof(x->key), "%s", key);
    x->c.idempotency_key = x->key;
    x->c.category_id = (char *)category;
    x->c.priority = (Tally__V1__Priority)priority;
    x->c.title = "Printer on fire";
    x->c.description = "It was fine yesterday.";
    x->c.customer_id = "cust-42";
    x->c.created_at_ms = created_ms;
    x->c.history = x->ptrs;
}

static Tally__V1__ImportedStep *next_step(imp_entry *x, int64_t at_ms)
{
    size_t i = x->c.n_history++;
    cr_assert_lt(i, IMP_STEPS_MAX);
    tally__v1__imported_step__init(&x->steps[i]);
    x->steps[i].at_ms = at_ms;
    x->ptrs[i] = &x->steps[i];
    return &x->steps[i];
}

void imp_add_assign(imp_entry *x, int64_t at_ms, const char *agent)
{
    Tally__V1__ImportedStep *s = next_step(x, at_ms);
    Tally__V1__ImportedAssignment *a = &x->assign[x->c.n_history - 1];
    tally__v1__imported_assignment__init(a);
    a->agent_id = (char *)agent;
    s->change_case = TALLY__V1__IMPORTED_STEP__CHANGE_ASSIGNMENT;
    s->assignment = a;
}

void imp_add_move(imp_entry *x, int64_t at_ms, int status, const char *actor, const char *note)
{
    Tally__V1__ImportedStep *s = next_step(x, at_ms);
    Tally__V1__ImportedStatusChange *m = &x->move[x->c.n_history - 1];
    tally__v1__imported_status_change__init(m);
    m->status = (Tally__V1__Status)status;
    m->actor = (char *)actor;
    m->note = (char *)note;
    s->change_case = TALLY__V1__IMPORTED_STEP__CHANGE_STATUS_CHANGE;
    s->status_change = m;
}

void imp_batch_init(imp_batch *b, const char *tenant, size_t n)
{
    tally__v1__import_complaints_request__init(&b->req);
    b->x = calloc(n ? n : 1, sizeof(imp_entry));
    b->ptrs = calloc(n ? n : 1, sizeof(*b->ptrs));
    cr_assert(b->x && b->ptrs);
    for (size_t i = 0; i < n; i++)
        b->ptrs[i] = &b->x[i].c;
    b->req.tenant_id = (char *)tenant;
    b->req.n_complaints = n;
    b->req.complaints = b->ptrs;
}

void imp_batch_release(imp_batch *b)
{
    free(b->x);
    free(b->ptrs);
}
