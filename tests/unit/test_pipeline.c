/*
 * Redis facts (kv.h) and the projector's watermark (pipeline.h): which Redis error replies are
 * systemic (never an event's fault, never an ack), the order of stream ids, and the watermark's
 * candidates: a watermark holds only once every entry before it is acknowledged, and the
 * newest one that holds wins.
 */
#include "pipeline.h"

#include <criterion/criterion.h>

Test(pipeline, systemic_errors_are_named_by_their_first_word)
{
    cr_expect_str_eq(kv_systemic_kind("OOM command not allowed when used memory > 'maxmemory'."),
                     "OOM");
    cr_expect_str_eq(kv_systemic_kind("READONLY You can't write against a read only replica."),
                     "READONLY");
    cr_expect_str_eq(kv_systemic_kind("LOADING Redis is loading the dataset in memory"), "LOADING");
    cr_expect_str_eq(kv_systemic_kind("BUSY Redis is busy running a script."), "BUSY");
    cr_expect_str_eq(kv_systemic_kind("MISCONF Redis is configured to save RDB snapshots"),
                     "MISCONF");
    cr_expect_str_eq(kv_systemic_kind("NOREPLICAS Not enough good replicas to write."),
                     "NOREPLICAS");
    cr_expect_null(kv_systemic_kind("WRONGTYPE Operation against a key holding the wrong kind"));
    cr_expect_null(kv_systemic_kind("ERR user_function:12: attempt to index a nil value"));
    cr_expect_null(kv_systemic_kind("BUSYGROUP Consumer Group name already exists"));
    cr_expect_null(kv_systemic_kind("OOMPH"));
    cr_expect_null(kv_systemic_kind(NULL));
    cr_expect(kv_reconnect_on("READONLY You can't write against a read only replica."));
    cr_expect(kv_reconnect_on("MASTERDOWN Link with MASTER is down"));
    cr_expect_not(kv_reconnect_on("OOM command not allowed"));
}

Test(pipeline, stream_ids_order_by_time_then_sequence)
{
    kv_id a, b, c, bad;
    cr_assert(kv_id_parse("1700000000000-5", &a));
    cr_assert(kv_id_parse("1700000000000-12", &b));
    cr_assert(kv_id_parse("1700000000001", &c));
    cr_expect_eq(c.seq, 0);
    cr_expect_lt(kv_id_cmp(a, b), 0, "5 orders before 12 (not as text)");
    cr_expect_lt(kv_id_cmp(b, c), 0);
    cr_expect_gt(kv_id_cmp(c, a), 0);
    cr_expect_eq(kv_id_cmp(a, a), 0);
    cr_expect_not(kv_id_parse("", &bad));
    cr_expect_not(kv_id_parse("12-", &bad));
    cr_expect_not(kv_id_parse("x-1", &bad));
    cr_expect_not(kv_id_parse("1-2-3", &bad));
}

static kv_id id(uint64_t ms, uint64_t seq)
{
    return (kv_id){ ms, seq };
}

Test(pipeline, a_watermark_holds_once_nothing_before_it_is_pending)
{
    pl_marks m = { 0 };
    pl_marks_add(&m, id(100, 0), 1000);
    pl_marks_add(&m, id(200, 0), 2000);
    pl_marks_add(&m, id(300, 0), 3000);
    cr_expect_eq(pl_marks_settle(&m, true, id(50, 0)), 0, "an entry before all is pending");
    cr_expect_eq(m.n, 3, "candidates are kept for later");
    cr_expect_eq(pl_marks_settle(&m, true, id(200, 0)), 1000,
                 "the entry at 200 itself is pending: only the first holds");
    cr_expect_eq(m.n, 2);
    cr_expect_eq(pl_marks_settle(&m, true, id(250, 1)), 2000);
    cr_expect_eq(pl_marks_settle(&m, false, id(0, 0)), 3000, "nothing pending: the newest");
    cr_expect_eq(m.n, 0);
    cr_expect_eq(pl_marks_settle(&m, false, id(0, 0)), 0, "no candidates: nothing new");
}

Test(pipeline, candidates_keep_stream_order_and_the_newest_when_full)
{
    pl_marks m = { 0 };
    pl_marks_add(&m, id(300, 0), 3000);
    pl_marks_add(&m, id(100, 0), 1000); /* acked later than 300 by a slower batch */
    cr_expect_eq(pl_marks_settle(&m, true, id(200, 0)), 1000);
    for (int i = 0; i < PL_CANDIDATES + 10; i++)
        pl_marks_add(&m, id(1000 + (uint64_t)i, 0), 10000 + i);
    cr_expect_eq(m.n, PL_CANDIDATES);
    cr_expect_eq(pl_marks_settle(&m, false, id(0, 0)), 10000 + PL_CANDIDATES + 9);
}
