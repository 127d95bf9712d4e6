/* imports: hand-built ImportComplaints requests (imports.h). */
#include "imports.h"

#include "sim_gen.h"

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

/* x's steps, written by sim_gen's appending. */
static gen_slots slots_of(imp_entry *x)
{
    return (gen_slots){ x->steps, x->ptrs, x->assign, x->move, IMP_STEPS_MAX };
}

void imp_add_assign(imp_entry *x, int64_t at_ms, const char *agent)
{
    gen_slots s = slots_of(x);
    cr_assert(gen_add_assignment(&x->c, &s, at_ms, agent), "more than %d steps", IMP_STEPS_MAX);
}

void imp_add_move(imp_entry *x, int64_t at_ms, int status, const char *actor, const char *note)
{
    gen_slots s = slots_of(x);
    cr_assert(gen_add_move(&x->c, &s, at_ms, status, actor, note), "more than %d steps",
              IMP_STEPS_MAX);
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
