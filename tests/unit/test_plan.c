/*
 * proj_plan: which runs of events the projector may count itself and apply as one merged
 * write (plan.h). What a plan counts is held to the oracle by the projector's integration
 * tests (tests/support/ev_model.c); here, the runs it must refuse, so that tally_apply's own
 * checks and ordering decide them: reference events, versions that do not follow each other
 * within the run, and fields tally.lua's valid() refuses.
 */
#include "decode.h"
#include "embedded.h"
#include "plan.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tally.lua as the projector loads it (projector/CMakeLists.txt embeds it). */
extern const embedded_file projector_lua[];

static proj_plan *pl;

static void init(void)
{
    pl = proj_plan_new();
    cr_assert_not_null(pl);
}

static void fini(void)
{
    proj_plan_free(pl);
}

TestSuite(plan, .init = init, .fini = fini, .timeout = 10);

/* Fills ev with a valid event of complaint id at version, of type 1..3 (3: a resolution). */
static proj_event *event(proj_event *e, int type, int64_t id, int64_t version)
{
    proj_event ev = { 0 };
    for (int f = 0; f < STREAM_APPLY_NFIELDS; f++)
        ev.argv[f] = "";
    snprintf(ev.nums[PF_TYPE], sizeof(ev.nums[0]), "%d", type);
    snprintf(ev.nums[PF_ID], sizeof(ev.nums[0]), "%" PRId64, id);
    snprintf(ev.nums[PF_VERSION], sizeof(ev.nums[0]), "%" PRId64, version);
    ev.argv[PF_TYPE] = ev.nums[PF_TYPE];
    ev.argv[PF_ID] = ev.nums[PF_ID];
    ev.argv[PF_VERSION] = ev.nums[PF_VERSION];
    ev.argv[PF_SEQ] = "7";
    ev.argv[PF_DAY] = "2026-11-30";
    ev.argv[PF_RECORDED] = "1764500000000";
    ev.argv[PF_CREATED] = "1764400000000";
    ev.argv[PF_CAT] = "billing";
    ev.argv[PF_PRIO] = "2";
    ev.argv[PF_AGENT] = "ann";
    ev.argv[PF_TO] = type == 3 ? "3" : "1";
    ev.argv[PF_FROM] = type == 3 ? "1" : "0";
    ev.argv[PF_SECS] = type == 3 ? "3600" : "0";
    ev.argv[PF_BUCKET] = type == 3 ? "42" : "0";
    for (int f = 0; f < STREAM_APPLY_NFIELDS; f++)
        ev.argvlen[f] = strlen(ev.argv[f]);
    *e = ev;
    for (int f = PF_ID; f <= PF_TYPE; f++) /* the numbers point into e's own buffers */
        e->argv[f] = e->nums[f];
    return e;
}

static void set(proj_event *ev, int f, const char *v)
{
    ev->argv[f] = v;
    ev->argvlen[f] = strlen(v);
}

Test(plan, counts_a_run_of_consecutive_versions_of_several_complaints)
{
    proj_event a1, b1, a2, a3;
    cr_assert(proj_plan_add(pl, event(&a1, 1, 10, 1)));
    cr_assert(proj_plan_add(pl, event(&b1, 1, 11, 1)));
    cr_assert(proj_plan_add(pl, event(&a2, 2, 10, 2)));
    cr_assert(proj_plan_add(pl, event(&a3, 3, 10, 3)));
    cr_expect_eq(proj_plan_events(pl), 4);
    /* A run may begin at any version: the merged write checks it follows what is applied. */
    proj_plan_reset(pl);
    proj_event c7;
    cr_expect(proj_plan_add(pl, event(&c7, 3, 12, 7)));
    cr_expect_eq(proj_plan_events(pl), 1);
}

Test(plan, refuses_a_duplicate_or_a_gap_within_the_run)
{
    proj_event a1, again, a3, a2;
    event(&a1, 1, 10, 1);
    event(&again, 1, 10, 1);
    event(&a3, 3, 10, 3);
    cr_assert(proj_plan_add(pl, &a1));
    cr_expect_not(proj_plan_add(pl, &again), "a duplicate within the run was merged");
    cr_expect_not(proj_plan_add(pl, &a3), "a refused plan took another event");
    proj_plan_reset(pl);
    cr_assert(proj_plan_add(pl, &a1));
    cr_expect_not(proj_plan_add(pl, &a3), "a gap (version 1, then 3) was merged");
    proj_plan_reset(pl);
    cr_expect(proj_plan_add(pl, event(&a2, 2, 10, 2)), "reset did not empty the plan");
}

Test(plan, refuses_reference_events_and_fields_tally_lua_would_refuse)
{
    struct {
        int field;
        const char *value;
    } bad[] = {
        { PF_TYPE, "10" },
        { PF_TYPE, "4" },
        { PF_VERSION, "0" },
        { PF_ID, "-3" },
        { PF_ID, "1e3" },
        { PF_RECORDED, "" },
        { PF_PRIO, "5" },
        { PF_TO, "0" },
        { PF_FROM, "9" },
        { PF_SECS, "4000000001" },
        { PF_BUCKET, "10001" },
        { PF_DAY, "2026-1-30" },
        { PF_CAT, "" },
        { PF_VERSION, "9007199254740993" },
        /* only the canonical form: tally.lua compares some fields as text */
        { PF_TYPE, "03" },
        { PF_ID, "0010" },
        /* longer than any id (IDENT_MAX) */
        { PF_CAT, "c234567890123456789012345678901234567890123456789012345678901234x" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        proj_event ev;
        event(&ev, 3, 10, 1);
        set(&ev, bad[i].field, bad[i].value);
        proj_plan_reset(pl);
        cr_expect_not(proj_plan_add(pl, &ev), "field %d = \"%s\" was merged", bad[i].field,
                      bad[i].value);
    }
}

/* The Lua function checks that the plan counts its view: were they to drift, every merged
   write would be refused and the projector would run at the per-event speed. */
Test(plan, counts_the_view_tally_lua_counts)
{
    const char *src = projector_lua[0].data;
    const char *at = strstr(src, "\nlocal VIEW_VERSION = ");
    cr_assert_not_null(at, "tally.lua no longer declares local VIEW_VERSION");
    cr_expect_eq(strtol(at + strlen("\nlocal VIEW_VERSION = "), NULL, 10), PROJ_PLAN_VIEW,
                 "tally.lua's VIEW_VERSION differs from PROJ_PLAN_VIEW (%d): count the new view "
                 "in projector/plan.c too",
                 PROJ_PLAN_VIEW);
}
