#include "query.h"

#include "err.h"

#include <stdlib.h>

static const srv_method methods[] = { { 0 } };

const srv_service query_service = { "tally.v1.Dashboard", methods, 0 };

void *query_worker_new(int index, void *arg)
{
    (void)index;
    (void)arg;
    return NULL;
}

void query_worker_free(void *worker, void *arg)
{
    (void)worker;
    (void)arg;
}
