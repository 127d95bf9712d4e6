/* pipeline: the watermark's candidates (contract in pipeline.h). */
#include "pipeline.h"

#include <string.h>

void pl_marks_add(pl_marks *m, kv_id id, int64_t w)
{
    int at = m->n;
    if (m->n == PL_CANDIDATES) {
        memmove(m->id, m->id + 1, (PL_CANDIDATES - 1) * sizeof(m->id[0]));
        memmove(m->w, m->w + 1, (PL_CANDIDATES - 1) * sizeof(m->w[0]));
        at = PL_CANDIDATES - 1;
    } else {
        m->n++;
    }
    /* Acks of several consumers arrive in any order: keep the list in stream order. */
    while (at > 0 && kv_id_cmp(m->id[at - 1], id) > 0) {
        m->id[at] = m->id[at - 1];
        m->w[at] = m->w[at - 1];
        at--;
    }
    m->id[at] = id;
    m->w[at] = w;
}

int64_t pl_marks_settle(pl_marks *m, bool has_pending, kv_id oldest)
{
    int k = 0;
    int64_t w = 0;
    while (k < m->n && (!has_pending || kv_id_cmp(m->id[k], oldest) < 0)) {
        if (m->w[k] > w)
            w = m->w[k];
        k++;
    }
    memmove(m->id, m->id + k, (size_t)(m->n - k) * sizeof(m->id[0]));
    memmove(m->w, m->w + k, (size_t)(m->n - k) * sizeof(m->w[0]));
    m->n -= k;
    return w;
}
