/*
 * tally_render and tally_text: the dashboard page of `tally dashboard` from a hand-built
 * GetDashboardReply. The figures appear, durations read as people write them, no line is ever
 * wider than asked, an empty tenant renders, the freshness flags show, "last updated" is the age
 * of the completeness watermark (an unknown one reads "not complete", never "0 s ago"), and text
 * from the server cannot reach the terminal as control codes.
 */
#include "tally_render.h"
#include "tally_text.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERVER_MS 1741943103000 /* 2025-03-14T09:05:03Z */
#define NBUCKETS  30

/* A reply of a busy tenant, built from structs that live as long as the fixture. */
typedef struct fixture {
    Tally__V1__GetDashboardReply reply;
    Tally__V1__Freshness fresh;
    Tally__V1__Overview ov;
    Tally__V1__StatusCounts sc;
    Tally__V1__OpenComplaint open[2], *open_p[2];
    Tally__V1__VolumeTrend trend;
    Tally__V1__DateRange range;
    Tally__V1__VolumeBucket buckets[NBUCKETS], *buckets_p[NBUCKETS];
    char labels[NBUCKETS][11];
    Tally__V1__ResolutionStats rs;
    Tally__V1__ResolutionSummary overall, gsum[2];
    Tally__V1__ResolutionGroup groups[2], *groups_p[2];
    Tally__V1__AgentPerformance ap;
    Tally__V1__AgentStats agents[2], *agents_p[2];
    Tally__V1__CategoryDistribution cd;
    Tally__V1__CategoryShare cats[3], *cats_p[3];
} fixture;

static void build(fixture *f)
{
    memset(f, 0, sizeof(*f));
    tally__v1__get_dashboard_reply__init(&f->reply);
    tally__v1__freshness__init(&f->fresh);
    f->fresh.server_time_ms = SERVER_MS;
    f->fresh.as_of_ms = SERVER_MS - 3000;
    f->fresh.lag_ms = 3000;
    f->fresh.complete_until_ms = SERVER_MS - 3000;
    f->fresh.complete_lag_ms = 3000;
    f->fresh.apply_lag_ms = 120;
    f->fresh.events_applied = 12345;
    f->reply.freshness = &f->fresh;

    tally__v1__overview__init(&f->ov);
    tally__v1__status_counts__init(&f->sc);
    f->sc.open = 12;
    f->sc.in_progress = 7;
    f->sc.resolved = 30;
    f->sc.closed = 2104;
    f->ov.status_counts = &f->sc;
    f->ov.today = "2025-03-14";
    f->ov.time_zone = "Europe/Berlin";
    f->ov.created_today = 5;
    f->ov.resolved_today = 4;
    f->ov.backlog = 19;
    f->ov.median_resolution_seconds_today = 3 * 3600 + 12 * 60 + 59; /* 3h 13m */
    f->ov.resolution_relative_error = 0.05;
    for (int i = 0; i < 2; i++) {
        tally__v1__open_complaint__init(&f->open[i]);
        f->open_p[i] = &f->open[i];
    }
    f->open[0].complaint_id = 1042;
    f->open[0].age_seconds = 2 * 86400 + 4 * 3600 + 59; /* 2d 4h */
    f->open[0].status = TALLY__V1__STATUS__STATUS_OPEN;
    f->open[0].priority = TALLY__V1__PRIORITY__PRIORITY_URGENT;
    f->open[0].category_id = "billing";
    f->open[1].complaint_id = 1077;
    f->open[1].age_seconds = 45;
    f->open[1].status = TALLY__V1__STATUS__STATUS_IN_PROGRESS;
    f->open[1].priority = TALLY__V1__PRIORITY__PRIORITY_LOW;
    f->open[1].category_id = "shipping";
    f->open[1].assigned_agent_id = "alice";
    f->ov.n_oldest_open = 2;
    f->ov.oldest_open = f->open_p;
    f->reply.overview = &f->ov;

    tally__v1__volume_trend__init(&f->trend);
    tally__v1__date_range__init(&f->range);
    f->range.from_day = "2025-02-13";
    f->range.to_day = "2025-03-14";
    f->trend.granularity = TALLY__V1__GRANULARITY__GRANULARITY_DAY;
    f->trend.range = &f->range;
    for (int i = 0; i < NBUCKETS; i++) {
        tally__v1__volume_bucket__init(&f->buckets[i]);
        snprintf(f->labels[i], sizeof(f->labels[i]), "2025-%02d-%02d", i < 16 ? 2 : 3,
                 i < 16 ? 13 + i : i - 15);
        f->buckets[i].label = f->buckets[i].first_day = f->buckets[i].last_day = f->labels[i];
        f->buckets[i].created = i % 7 + 10;
        f->buckets[i].resolved = i % 5 + 8;
        f->trend.total_created += f->buckets[i].created;
        f->trend.total_resolved += f->buckets[i].resolved;
        f->buckets_p[i] = &f->buckets[i];
    }
    f->trend.n_buckets = NBUCKETS;
    f->trend.buckets = f->buckets_p;
    f->reply.volume_trend = &f->trend;

    tally__v1__resolution_stats__init(&f->rs);
    tally__v1__resolution_summary__init(&f->overall);
    f->overall.count = 401;
    f->overall.mean_seconds = 93784;      /* 1d 2h 3m 4s */
    f->overall.p50_seconds = 11520;       /* 3h 12m */
    f->overall.p90_seconds = 187200;      /* 2d 4h */
    f->overall.p99_seconds = 6 * 86400.5; /* 6d */
    f->rs.overall = &f->overall;
    f->rs.percentile_relative_error = 0.05;
    f->rs.range = &f->range;
    for (int i = 0; i < 2; i++) {
        tally__v1__resolution_group__init(&f->groups[i]);
        tally__v1__resolution_summary__init(&f->gsum[i]);
        f->groups[i].summary = &f->gsum[i];
        f->groups_p[i] = &f->groups[i];
    }
    f->groups[0].category_id = "billing";
    f->groups[0].category_name = "Billing and invoices";
    f->gsum[0].count = 250;
    f->gsum[0].p50_seconds = 65; /* 1m 5s */
    f->groups[1].category_id = "shipping";
    f->gsum[1].count = 151;
    f->gsum[1].p50_seconds = 7200; /* 2h */
    f->rs.n_groups = 2;
    f->rs.groups = f->groups_p;
    f->reply.resolution_stats = &f->rs;

    tally__v1__agent_performance__init(&f->ap);
    for (int i = 0; i < 2; i++) {
        tally__v1__agent_stats__init(&f->agents[i]);
        f->agents_p[i] = &f->agents[i];
    }
    f->agents[0].agent_id = "alice";
    f->agents[0].agent_name = "Alice Example";
    f->agents[0].resolved = 42;
    f->agents[0].mean_resolution_seconds = 18600; /* 5h 10m */
    f->agents[0].open_assigned = 3;
    f->agents[1].agent_id = "bob";
    f->agents[1].resolved = 0;
    f->agents[1].open_assigned = 9;
    f->ap.n_agents = 2;
    f->ap.agents = f->agents_p;
    f->ap.total_agents = 24;
    f->ap.sort_by = TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_RESOLVED;
    f->reply.agent_performance = &f->ap;

    tally__v1__category_distribution__init(&f->cd);
    for (int i = 0; i < 3; i++) {
        tally__v1__category_share__init(&f->cats[i]);
        f->cats_p[i] = &f->cats[i];
    }
    f->cats[0].category_id = "billing";
    f->cats[0].category_name = "Billing and invoices";
    f->cats[0].count = 300;
    f->cats[0].share = 300.0 / 456;
    f->cats[1].category_id = "shipping";
    f->cats[1].count = 144;
    f->cats[1].share = 144.0 / 456;
    f->cats[2].is_other = true;
    f->cats[2].count = 12;
    f->cats[2].share = 12.0 / 456;
    f->cd.n_categories = 3;
    f->cd.categories = f->cats_p;
    f->cd.total = 456;
    f->cd.other_category_count = 3;
    f->reply.category_distribution = &f->cd;
}

static char *render(const Tally__V1__GetDashboardReply *r, int width)
{
    render_opts o = { .tenant = "acme", .now_ms = SERVER_MS, .width = width };
    char *page = render_dashboard(r, &o);
    cr_assert_not_null(page);
    return page;
}

/* The widest line of page, in terminal columns; fails unless every line ends in '\n'. */
static int widest(const char *page)
{
    int max = 0;
    for (const char *s = page; *s;) {
        size_t n = strcspn(s, "\n");
        int w = tx_width_n(s, n);
        cr_assert_eq(s[n], '\n', "the last line has no newline");
        if (w > max)
            max = w;
        s += n + 1;
    }
    return max;
}

static void assert_has(const char *page, const char *what)
{
    cr_assert_not_null(strstr(page, what), "\"%s\" is not on the page:\n%s", what, page);
}

Test(cli_render, durations_read_as_people_write_them)
{
    char b[32];
    cr_assert_str_eq(tx_duration(0, b, sizeof(b)), "0s");
    cr_assert_str_eq(tx_duration(0.4, b, sizeof(b)), "0s");
    cr_assert_str_eq(tx_duration(45, b, sizeof(b)), "45s");
    cr_assert_str_eq(tx_duration(65, b, sizeof(b)), "1m 5s");
    cr_assert_str_eq(tx_duration(600, b, sizeof(b)), "10m");
    cr_assert_str_eq(tx_duration(2.989, b, sizeof(b)), "3s"); /* an estimate of 3 s */
    cr_assert_str_eq(tx_duration(59.6, b, sizeof(b)), "1m");
    cr_assert_str_eq(tx_duration(3600, b, sizeof(b)), "1h");
    cr_assert_str_eq(tx_duration(3599.7, b, sizeof(b)), "1h");
    cr_assert_str_eq(tx_duration(86400 - 1799, b, sizeof(b)), "23h 30m");
    cr_assert_str_eq(tx_duration(11520, b, sizeof(b)), "3h 12m");
    cr_assert_str_eq(tx_duration(11579.9, b, sizeof(b)), "3h 13m"); /* rounded */
    cr_assert_str_eq(tx_duration(86399, b, sizeof(b)), "1d");
    cr_assert_str_eq(tx_duration(86400, b, sizeof(b)), "1d");
    cr_assert_str_eq(tx_duration(187200, b, sizeof(b)), "2d 4h");
    cr_assert_str_eq(tx_duration(400 * 86400.0 + 3600, b, sizeof(b)), "400d 1h");
    cr_assert_str_eq(tx_duration(-1, b, sizeof(b)), "-");
    cr_assert_str_eq(tx_duration(NAN, b, sizeof(b)), "-");
    cr_assert_str_eq(tx_duration(INFINITY, b, sizeof(b)), "-");
}

Test(cli_render, counts_times_and_cells)
{
    char b[32];
    tx_buf t;
    cr_assert_str_eq(tx_count(0, b, sizeof(b)), "0");
    cr_assert_str_eq(tx_count(999, b, sizeof(b)), "999");
    cr_assert_str_eq(tx_count(1234567, b, sizeof(b)), "1,234,567");
    cr_assert_str_eq(tx_count(-1000, b, sizeof(b)), "-1,000");
    cr_assert_str_eq(tx_count(INT64_MIN, b, sizeof(b)), "-9,223,372,036,854,775,808");
    cr_assert_str_eq(tx_time_utc(SERVER_MS, b, sizeof(b)), "2025-03-14T09:05:03Z");
    cr_assert_eq(tx_width("caf\xc3\xa9"), 4);
    cr_assert_eq(tx_width("\xe6\x97\xa5\xe6\x9c\xac"), 4); /* two wide CJK characters */
    tx_init(&t, 1024);
    tx_cell(&t, "abcdef", 4, false, true, false);
    cr_assert_str_eq(t.s, "abc\xe2\x80\xa6");
    tx_reset(&t);
    tx_cell(&t, "ab", 4, true, true, false);
    cr_assert_str_eq(t.s, "  ab");
    tx_reset(&t);
    tx_cell(&t, "\xe6\x97\xa5\xe6\x9c\xac\xe6\x97\xa5", 4, false, true, true);
    cr_assert_eq(tx_width(t.s), 4, "\"%s\"", t.s);
    tx_reset(&t);
    tx_json_str(&t, "a\"b\\c\n\x01\xff");
    cr_assert_str_eq(t.s, "\"a\\\"b\\\\c\\n\\u0001\\ufffd\"");
    tx_release(&t);
}

Test(cli_render, the_figures_are_on_the_page)
{
    fixture f;
    char *page;
    build(&f);
    page = render(&f.reply, 100);
    assert_has(page, "acme");
    assert_has(page, "today 2025-03-14 (Europe/Berlin)");
    assert_has(page, "last updated 3 s ago");
    assert_has(page, "apply lag 120 ms");
    assert_has(page, "12,345 events applied");
    assert_has(page, "open 12");
    assert_has(page, "in progress 7");
    assert_has(page, "closed 2,104");
    assert_has(page, "backlog 19");
    assert_has(page, "5 created");
    assert_has(page, "median resolution 3h 13m");
    assert_has(page, "range 2025-02-13 to 2025-03-14");
    assert_has(page, "385 total"); /* created: the sum of i % 7 + 10 over 30 days */
    /* 10..16 a day on a scale from 0 to 16: the marks ▆▆▇▇███ */
    assert_has(page, "created  \xe2\x96\x86\xe2\x96\x86\xe2\x96\x87\xe2\x96\x87\xe2\x96\x88"
                     "\xe2\x96\x88\xe2\x96\x88");
    assert_has(page, "401 resolved");
    assert_has(page, "mean 1d 2h");
    assert_has(page, "p50 3h 12m");
    assert_has(page, "p90 2d 4h");
    assert_has(page, "p99 6d");
    assert_has(page, "Billing and invoices (billing)");
    assert_has(page, "1m 5s");
    assert_has(page, "Alice Example (alice)");
    assert_has(page, "5h 10m");
    assert_has(page, "top 2 of 24");
    assert_has(page, "65.8%");
    assert_has(page, "other (3 categories)");
    assert_has(page, "#1042");
    assert_has(page, "2d 4h");
    assert_has(page, "urgent");
    assert_has(page, "unassigned");
    cr_assert_null(strstr(page, "STALE"), "%s", page);
    cr_assert_null(strstr(page, "REBUILDING"), "%s", page);
    cr_assert_null(strstr(page, "rebuilding"), "%s", page);
    cr_assert_null(strstr(page, "PARKED"), "%s", page);
    cr_assert_null(strstr(page, "parked"), "%s", page);
    cr_assert_null(strstr(page, "NOT COMPLETE"), "%s", page);
    cr_assert_null(strstr(page, "not complete"), "%s", page);
    cr_assert_null(strstr(page, "newest event"), "%s", page);
    cr_assert_eq(widest(page), 100, "%s", page);
    free(page);
}

Test(cli_render, no_line_is_wider_than_asked)
{
    fixture f;
    build(&f);
    f.agents[0].agent_name = "A name far longer than any table column could ever hold, really";
    for (int width = 1; width <= 140; width++) {
        char *page = render(&f.reply, width);
        int max = widest(page);
        cr_assert_leq(max, width < 100 ? width : 100, "width %d:\n%s", width, page);
        free(page);
    }
}

Test(cli_render, narrow_pages_keep_what_matters)
{
    fixture f;
    char *page;
    build(&f);
    page = render(&f.reply, 50);
    assert_has(page, "last updated 3 s ago");
    assert_has(page, "backlog 19");
    assert_has(page, "p50 3h 12m");
    assert_has(page, "#1042");
    assert_has(page, "65.8%");
    free(page);
}

Test(cli_render, a_long_trend_folds_days_into_marks)
{
    fixture f;
    static Tally__V1__VolumeBucket b[400], *bp[400];
    char *page;
    build(&f);
    for (int i = 0; i < 400; i++) {
        tally__v1__volume_bucket__init(&b[i]);
        b[i].label = "2024-01-01";
        b[i].created = i;
        bp[i] = &b[i];
    }
    f.trend.n_buckets = 400;
    f.trend.buckets = bp;
    page = render(&f.reply, 100);
    assert_has(page, "days a mark");
    cr_assert_leq(widest(page), 100);
    free(page);
}

Test(cli_render, an_empty_tenant_renders)
{
    Tally__V1__GetDashboardReply r = TALLY__V1__GET_DASHBOARD_REPLY__INIT;
    Tally__V1__Freshness fr = TALLY__V1__FRESHNESS__INIT;
    Tally__V1__Overview ov = TALLY__V1__OVERVIEW__INIT;
    Tally__V1__StatusCounts sc = TALLY__V1__STATUS_COUNTS__INIT;
    Tally__V1__VolumeTrend vt = TALLY__V1__VOLUME_TREND__INIT;
    Tally__V1__ResolutionStats rs = TALLY__V1__RESOLUTION_STATS__INIT;
    Tally__V1__ResolutionSummary sum = TALLY__V1__RESOLUTION_SUMMARY__INIT;
    Tally__V1__AgentPerformance ap = TALLY__V1__AGENT_PERFORMANCE__INIT;
    Tally__V1__CategoryDistribution cd = TALLY__V1__CATEGORY_DISTRIBUTION__INIT;
    char *page;
    fr.server_time_ms = SERVER_MS;
    ov.status_counts = &sc;
    rs.overall = &sum;
    r.freshness = &fr;
    r.overview = &ov;
    r.volume_trend = &vt;
    r.resolution_stats = &rs;
    r.agent_performance = &ap;
    r.category_distribution = &cd;
    page = render(&r, 100);
    assert_has(page, "no events applied yet");
    assert_has(page, "open 0");
    assert_has(page, "median resolution -");
    assert_has(page, "no buckets");
    assert_has(page, "no resolutions in the range");
    assert_has(page, "no agents yet");
    assert_has(page, "no complaints in the range");
    assert_has(page, "nothing open");
    free(page);

    /* panels missing altogether, and no reply at all */
    memset(&r, 0, sizeof(r));
    tally__v1__get_dashboard_reply__init(&r);
    page = render(&r, 80);
    assert_has(page, "freshness unknown");
    assert_has(page, "no overview in the reply");
    free(page);
    page = render(NULL, 80);
    assert_has(page, "no answer yet");
    free(page);
}

Test(cli_render, stale_and_rebuilding_show_even_when_narrow)
{
    fixture f;
    build(&f);
    f.fresh.stale = true;
    f.fresh.token_applied_version = 2;
    f.fresh.rebuilding = true;
    for (int width = 20; width <= 100; width += 40) {
        char *page = render(&f.reply, width);
        assert_has(page, "! STALE:");
        assert_has(page, "! REBUILDING:");
        free(page);
    }
}

static void assert_lacks(const char *page, const char *what)
{
    cr_assert_null(strstr(page, what), "\"%s\" is on the page:\n%s", what, page);
}

Test(cli_render, last_updated_is_the_completeness_watermark_not_the_newest_event)
{
    fixture f;
    char *page;
    build(&f);
    /* A quiet tenant: its newest event is two hours old, but the read model is complete. */
    f.fresh.as_of_ms = SERVER_MS - 2 * 3600 * 1000;
    f.fresh.lag_ms = 2 * 3600 * 1000;
    f.fresh.apply_lag_ms = 2 * 3600 * 1000;
    f.fresh.complete_until_ms = SERVER_MS - 1500;
    f.fresh.complete_lag_ms = 1500;
    page = render(&f.reply, 100);
    assert_has(page, "last updated 1 s ago");
    assert_lacks(page, "last updated 2h");
    assert_lacks(page, "NOT COMPLETE");
    free(page);

    /* A busy tenant whose watermark is behind its newest event (a slow partition). */
    build(&f);
    f.fresh.complete_until_ms = SERVER_MS - 185000;
    f.fresh.complete_lag_ms = 185000;
    page = render(&f.reply, 100);
    assert_has(page, "last updated 3m 5s ago");
    free(page);
}

Test(cli_render, no_watermark_reads_not_complete_never_0_s_ago)
{
    fixture f;
    build(&f);
    /* What query-svc sends without a watermark, and what a server older than the field sends. */
    for (int older = 0; older <= 1; older++) {
        f.fresh.complete_until_ms = 0;
        f.fresh.complete_lag_ms = older ? 0 : SERVER_MS;
        for (int width = 20; width <= 100; width += 80) {
            char *page = render(&f.reply, width);
            assert_has(page, "not complete");
            assert_has(page, "! NOT COMPLETE:");
            assert_has(page, "newest event 3 s ago");
            assert_lacks(page, "last updated");
            assert_lacks(page, "0 s ago");
            cr_assert_leq(widest(page), width);
            free(page);
        }
    }
}

Test(cli_render, parked_complaints_and_rebuilding_are_said_beside_last_updated)
{
    fixture f;
    char *page;
    build(&f);
    f.fresh.parked_complaints = 2;
    page = render(&f.reply, 100);
    assert_has(page, "last updated 3 s ago, 2 parked");
    assert_has(page, "! PARKED: 2 complaints are held back");
    assert_lacks(page, "rebuilding");
    free(page);

    f.fresh.parked_complaints = 1;
    f.fresh.rebuilding = true;
    page = render(&f.reply, 100);
    assert_has(page, "last updated 3 s ago, 1 parked, rebuilding");
    assert_has(page, "! PARKED: 1 complaint is held back");
    assert_has(page, "! REBUILDING:");
    free(page);

    Tally__V1__RebuildProgress rb = TALLY__V1__REBUILD_PROGRESS__INIT;
    rb.events_done = 400000;
    rb.events_total = 1000000;
    rb.eta_ms = 12000;
    f.fresh.rebuild = &rb;
    page = render(&f.reply, 100);
    assert_has(page, "1 parked, rebuilding 40%");
    assert_has(page, "! REBUILDING: a new generation");
    assert_has(page, "400,000 of 1,000,000 events read (about 12s left);");
    free(page);
    rb.eta_ms = -1;
    page = render(&f.reply, 100);
    assert_lacks(page, "left)");
    assert_has(page, "events read; meanwhile");
    free(page);
    f.fresh.rebuild = NULL;

    f.fresh.parked_complaints = 1234;
    f.fresh.complete_until_ms = 0;
    page = render(&f.reply, 100);
    assert_has(page, "not complete, 1,234 parked, rebuilding");
    free(page);
    for (int width = 1; width <= 100; width += 11) {
        page = render(&f.reply, width);
        cr_assert_leq(widest(page), width, "width %d:\n%s", width, page);
        free(page);
    }
}

Test(cli_render, an_error_banner_and_ageing_figures)
{
    fixture f;
    render_opts o = { .tenant = "acme",
                      .now_ms = SERVER_MS + 60000,
                      .width = 100,
                      .error = "UNAVAILABLE: failed to connect to all addresses" };
    char *page;
    build(&f);
    page = render_dashboard(&f.reply, &o);
    cr_assert_not_null(page);
    assert_has(page, "! ERROR: UNAVAILABLE: failed to connect to all addresses");
    assert_has(page, "last updated 63 s ago");
    assert_has(page, "1m 45s"); /* complaint 1077, 45 s old a minute ago */
    free(page);
}

Test(cli_render, server_text_cannot_reach_the_terminal_as_control_codes)
{
    fixture f;
    char *page;
    build(&f);
    f.agents[0].agent_name = "Eve\x1b[2J\x1b]0;owned\x07";
    f.cats[0].category_name = "bad\xff\xfeutf8\r";
    page = render(&f.reply, 100);
    for (const char *s = page; *s; s++)
        cr_assert((unsigned char)*s >= 0x20 || *s == '\n', "control byte 0x%02x on the page",
                  (unsigned char)*s);
    assert_has(page, "Eve?[2J?]0;owned?");
    free(page);
}

Test(cli_render, ascii_pages_are_ascii)
{
    fixture f;
    render_opts o = { .tenant = "acme", .now_ms = SERVER_MS, .width = 100, .ascii = true };
    char *page;
    build(&f);
    f.fresh.stale = true;
    page = render_dashboard(&f.reply, &o);
    cr_assert_not_null(page);
    for (const char *s = page; *s; s++)
        cr_assert((unsigned char)*s < 0x80, "a non-ASCII byte on the page:\n%s", page);
    assert_has(page, "p50 3h 12m");
    free(page);
}

Test(cli_render, absurd_figures_from_a_server_do_not_break_the_page)
{
    fixture f;
    char *page;
    build(&f);
    f.fresh.lag_ms = INT64_MAX;
    f.fresh.complete_lag_ms = INT64_MAX;
    f.fresh.parked_complaints = INT64_MIN;
    f.fresh.apply_lag_ms = INT64_MAX;
    f.fresh.server_time_ms = INT64_MIN;
    f.buckets[0].created = INT64_MAX;
    f.buckets[1].created = INT64_MAX;
    f.buckets[2].resolved = INT64_MIN;
    f.overall.mean_seconds = NAN;
    f.overall.p50_seconds = INFINITY;
    f.overall.p90_seconds = -5;
    f.overall.p99_seconds = 1e300;
    f.cats[0].share = NAN;
    f.cats[1].share = 7;
    f.open[0].age_seconds = INT64_MAX;
    f.ov.today = "not a day \x1b[31m";
    for (int width = 1; width <= 100; width += 33) {
        page = render(&f.reply, width);
        cr_assert_leq(widest(page), width);
        free(page);
    }
    page = render(&f.reply, 100);
    assert_has(page, "mean -");
    free(page);
}
