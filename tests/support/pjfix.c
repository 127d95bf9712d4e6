/* pjfix: the projector tests' rig. See pjfix.h. */
#include "pjfix.h"

#include "tclock.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pjf_redis_start(pjf_rig *r, const rsv_options *opt)
{
    rsv_start(&r->redis, opt);
    r->rc = rsv_open(&r->redis);
    cr_assert(r->rc, "cannot reach our redis-server on %d", r->redis.port);
}

void pjf_release(pjf_rig *r)
{
    for (int i = 0; i < PJF_PROJECTORS; i++)
        if (r->pj_on[i])
            proc_release(&r->pj[i]);
    if (r->rc)
        redisFree(r->rc);
    r->rc = NULL;
    rsv_release(&r->redis);
    ev_model_free(r->model);
    r->model = NULL;
    ev_history_release(&r->hist);
    free(r->order);
    free(r->skip);
    r->order = NULL;
    r->skip = NULL;
}

void pjf_start(pjf_rig *r, int i, int redis_port, const char *const *env)
{
    r->pj_on[i] = true;
    cr_assert_eq(proc_start_projector(&r->pj[i], redis_port ? redis_port : r->redis.port, env), 0,
                 "the projector did not start (its log is above)");
}

void pjf_stop(pjf_rig *r, int i, int sig)
{
    proc_stop(&r->pj[i], sig, 15000);
    proc_release(&r->pj[i]);
    r->pj_on[i] = false;
}

void pjf_check_alive(pjf_rig *r)
{
    for (int i = 0; i < PJF_PROJECTORS; i++)
        if (r->pj_on[i] && r->pj[i].pid > 0) {
            int code = proc_wait(&r->pj[i], 0);
            cr_assert_eq(code, -1, "projector %d died (exit %d): see its log above", i, code);
        }
}

void pjf_generate(pjf_rig *r, uint64_t seed, int tenants, size_t events, int days)
{
    ev_options o = { .seed = seed, .tenants = tenants, .events = events, .days = days };
    ev_generate(&r->hist, &o);
}

size_t *pjf_order(pjf_rig *r, enum ev_order how, uint64_t seed, size_t *n)
{
    free(r->order);
    return r->order = ev_order(&r->hist, how, seed, n);
}

bool *pjf_new_skip(pjf_rig *r)
{
    free(r->skip);
    r->skip = calloc(r->hist.n, sizeof(bool));
    cr_assert(r->skip);
    return r->skip;
}

void pjf_add_range(pjf_rig *r, const size_t *order, size_t from, size_t to)
{
    char err[256];
    cr_assert_eq(ev_xadd(r->rc, EV_STREAM, &r->hist, order + from, to - from, err, sizeof(err)), 0,
                 "%s", err);
}

int pjf_wait_applied(pjf_rig *r)
{
    int rc = -1;
    for (int64_t until = now_mono_ms() + PJF_WAIT_MS; rc == -1 && now_mono_ms() < until;
         pjf_check_alive(r))
        rc = ev_wait_applied(r->redis.port, r->model, 3000);
    return rc;
}

void pjf_expect_model(pjf_rig *r)
{
    char diff[1024];
    int caught_up = pjf_wait_applied(r);
    if (r->rc)
        redisFree(r->rc);
    r->rc = rsv_open(&r->redis); /* Redis may have restarted */
    cr_assert(r->rc);
    int same = ev_model_check_all(r->rc, r->model, diff, sizeof(diff));
    cr_assert_eq(same, 0, "the read model differs from the calculation%s: %s",
                 caught_up == 0 ? "" : " (and the projector never caught up)", diff);
    cr_assert_eq(caught_up, 0, "the projector did not catch up (%s)",
                 caught_up == -1 ? "timeout" : "everything acked, other event counts");
}

long long pjf_events_short(pjf_rig *r)
{
    long long n = 0;
    for (int t = 0; t < r->hist.ntenants; t++) {
        redisReply *e = redisCommand(r->rc, "HGET {t:%s}:1:fresh events", r->hist.tenants[t]);
        cr_assert(e && e->type == REDIS_REPLY_STRING);
        n += ev_model_events(r->model, r->hist.tenants[t]) - atoll(e->str);
        freeReplyObject(e);
    }
    return n;
}

long long pjf_xlen(pjf_rig *r, const char *stream)
{
    redisReply *x = redisCommand(r->rc, "XLEN %s", stream);
    cr_assert(x && x->type == REDIS_REPLY_INTEGER, "XLEN %s failed", stream);
    long long n = x->integer;
    freeReplyObject(x);
    return n;
}

long long pjf_xpending(pjf_rig *r, const char *consumer)
{
    redisReply *x =
        consumer ? redisCommand(r->rc, "XPENDING %s projector - + 100000 %s", EV_STREAM, consumer)
                 : redisCommand(r->rc, "XPENDING %s projector", EV_STREAM);
    cr_assert(x && x->type == REDIS_REPLY_ARRAY && (consumer || x->elements >= 1),
              "XPENDING failed");
    long long n = consumer ? (long long)x->elements : x->element[0]->integer;
    freeReplyObject(x);
    return n;
}

double pjf_metric(pjf_rig *r, int i, const char *name)
{
    return ev_metric(r->pj[i].http_port, name);
}
