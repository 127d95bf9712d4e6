/*
 * WatchDashboard (issue 13): GetDashboard kept live over a whole private system. A command's
 * change reaches an open stream as a new page, pushed (the projector publishes the tenant on
 * tally:changes, query-svc's hub reads the page once per distinct request); other tenants'
 * changes push nothing; bad requests end the stream with the status GetDashboard would give;
 * a client that goes away is forgotten.
 */
#include "calls.h"
#include "ev_wait.h"
#include "fixture.h"
#include "now.h"
#include "system.h"
#include "tally/v1/dashboard.pb-c.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_MS  20000 /* the longest wait for a page that must come (not a timing assertion) */
#define QUIET_MS 700   /* a stream with no page for this long has caught up */

static sys_system S;
static char T[32], U[32];

static void start(void)
{
    sys_start(&S, NULL);
    fx_tenant(T, sizeof(T));
    fx_seed_tenant(S.cmd, T, "UTC");
    fx_tenant(U, sizeof(U));
    fx_seed_tenant(S.cmd, U, "UTC");
    sys_wait_idle(&S, 60000); /* both tenants in the read model: else NOT_FOUND ends a watch */
}

static void stop(void)
{
    sys_stop(&S);
}

static gc_stream *watch(const char *tenant, int interval_ms)
{
    Tally__V1__GetDashboardRequest req = TALLY__V1__GET_DASHBOARD_REQUEST__INIT;
    req.tenant_id = (char *)tenant;
    req.min_interval_ms = interval_ms;
    gc_stream *w = gc_stream_open(S.q, GC_DASHBOARD("WatchDashboard"), &req.base, NULL, 120000);
    cr_assert_not_null(w);
    return w;
}

/* The next page within wait_ms (NULL if none came; the stream must not end). */
static Tally__V1__GetDashboardReply *page(gc_stream *w, int wait_ms)
{
    uint8_t *data;
    size_t len;
    gc_status st;
    int rc = gc_stream_next(w, wait_ms, &data, &len, &st);
    cr_assert_geq(rc, 0, "the stream ended: %s", st.message);
    if (rc == 0)
        return NULL;
    Tally__V1__GetDashboardReply *p = tally__v1__get_dashboard_reply__unpack(NULL, len, data);
    free(data);
    cr_assert(p && p->freshness && p->overview, "a page without freshness or overview");
    return p;
}

/* Reads pages until none comes for QUIET_MS; returns the last one (caller frees). */
static Tally__V1__GetDashboardReply *settle(gc_stream *w)
{
    Tally__V1__GetDashboardReply *last = page(w, PAGE_MS), *p;
    cr_assert_not_null(last, "no first page");
    while ((p = page(w, QUIET_MS)) != NULL) {
        call_free(last);
        last = p;
    }
    return last;
}

static double metric(const char *name)
{
    return ev_metric(S.query.http_port, name);
}

Test(watch, a_change_is_pushed_as_a_new_page_once_per_request, .init = start, .fini = stop,
     .timeout = 120)
{
    gc_stream *a = watch(T, 100), *b = watch(T, 100), *other = watch(U, 100);
    Tally__V1__GetDashboardReply *pa = settle(a), *pb = settle(b), *po = settle(other);
    cr_assert_eq(metric("tally_query_watch_streams"), 3);
    int64_t created = pa->overview->created_today, applied = pa->freshness->events_applied;
    cr_assert_eq(pb->overview->created_today, created);
    double pages = metric("tally_query_watch_pages_total");

    int64_t id;
    int64_t t0 = now_mono_ms();
    call_create(S.cmd, T, "watch-1", "c1", 2, &id);
    Tally__V1__GetDashboardReply *na = page(a, PAGE_MS), *nb = page(b, PAGE_MS);
    int64_t ms = now_mono_ms() - t0;
    cr_assert(na && nb, "no page pushed after a command");
    cr_assert_eq(na->overview->created_today, created + 1, "the new page holds the change");
    cr_assert_eq(na->freshness->events_applied, applied + 1);
    cr_assert_eq(nb->overview->created_today, created + 1);
    cr_assert_eq(metric("tally_query_watch_pages_total"), pages + 1,
                 "one read for the two streams of the same request");
    cr_assert_null(page(other, QUIET_MS), "another tenant's change pushes nothing");
    cr_log_info("command OK to pushed page: %lld ms", (long long)ms);

    gc_stream_free(a); /* a client that goes away is forgotten */
    for (int i = 0; i < 100 && metric("tally_query_watch_streams") != 2; i++)
        tclock_sleep_ms(50);
    cr_assert_eq(metric("tally_query_watch_streams"), 2);
    call_free(pa);
    call_free(pb);
    call_free(po);
    call_free(na);
    call_free(nb);
    gc_stream_free(b);
    gc_stream_free(other);
}

Test(watch, bad_requests_end_the_stream_as_get_dashboard_would, .init = start, .fini = stop)
{
    struct {
        const char *tenant;
        int interval;
        int code;
        const char *field;
    } cases[] = {
        { T, -1, TALLY_GRPC_INVALID_ARGUMENT, "min_interval_ms" },
        { T, 3600001, TALLY_GRPC_INVALID_ARGUMENT, "min_interval_ms" },
        { "no such tenant", 0, TALLY_GRPC_INVALID_ARGUMENT, "tenant_id" },
        { "nobody", 0, TALLY_GRPC_NOT_FOUND, "tenant_id" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        gc_stream *w = watch(cases[i].tenant, cases[i].interval);
        uint8_t *data;
        size_t len;
        gc_status st;
        cr_assert_eq(gc_stream_next(w, PAGE_MS, &data, &len, &st), -1, "case %zu: a page", i);
        char what[32];
        snprintf(what, sizeof(what), "case %zu", i);
        call_check_refusal(what, &st, cases[i].code, cases[i].field);
        gc_stream_free(w);
    }
    cr_assert_eq(metric("tally_query_watch_streams"), 0);
}
