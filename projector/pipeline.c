/* pipeline: systemic errors, stream ids, the watermark (contract in pipeline.h). */
#include "pipeline.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static bool has_prefix(const char *s, const char *word)
{
    size_t n = strlen(word);
    return strncmp(s, word, n) == 0 && (s[n] == ' ' || s[n] == '\0');
}

const char *pl_systemic_kind(const char *error)
{
    static const char *const kinds[] = { "OOM",        "READONLY",    "MISCONF",
                                         "LOADING",    "BUSY",        "NOREPLICAS",
                                         "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN" };
    if (!error)
        return NULL;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (has_prefix(error, kinds[i]))
            return kinds[i];
    return NULL;
}

bool pl_reconnect_on(const char *error)
{
    return error && (has_prefix(error, "READONLY") || has_prefix(error, "MASTERDOWN") ||
                     has_prefix(error, "LOADING"));
}

bool pl_id_parse(const char *s, pl_id *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return false;
    out->ms = strtoull(s, &end, 10);
    out->seq = 0;
    if (*end == '\0')
        return true;
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return false;
    out->seq = strtoull(end + 1, &end, 10);
    return *end == '\0';
}

int pl_id_cmp(pl_id a, pl_id b)
{
    if (a.ms != b.ms)
        return a.ms < b.ms ? -1 : 1;
    return a.seq < b.seq ? -1 : a.seq > b.seq;
}

void pl_marks_add(pl_marks *m, pl_id id, int64_t w)
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
    while (at > 0 && pl_id_cmp(m->id[at - 1], id) > 0) {
        m->id[at] = m->id[at - 1];
        m->w[at] = m->w[at - 1];
        at--;
    }
    m->id[at] = id;
    m->w[at] = w;
}

int64_t pl_marks_settle(pl_marks *m, bool has_pending, pl_id oldest)
{
    int k = 0;
    int64_t w = 0;
    while (k < m->n && (!has_pending || pl_id_cmp(m->id[k], oldest) < 0)) {
        if (m->w[k] > w)
            w = m->w[k];
        k++;
    }
    memmove(m->id, m->id + k, (size_t)(m->n - k) * sizeof(m->id[0]));
    memmove(m->w, m->w + k, (size_t)(m->n - k) * sizeof(m->w[0]));
    m->n -= k;
    return w;
}
