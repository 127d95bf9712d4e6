/*
 * The suite's shared state (query_int.h): each test's whole system, its seeded randomness and
 * its count of mismatches; the calls that judge a reply as a mismatch and carry on.
 */
#include "query_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

sys_system tq_sys;
uint64_t tq_seed;
int tq_nbad;
int tq_ncalls;
bool tq_sql_dirty;
static bool up;
static uint64_t rng;

/* ---- mismatches, randomness ---------------------------------------------------------------- */

/* Records a mismatch (the test fails) and reports the first MAX_REPORTED. */
void tq_bad(const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (++tq_nbad <= MAX_REPORTED)
        cr_expect_fail("%s [seed %" PRIu64 "]", msg, tq_seed);
    else if (tq_nbad <= 20 * MAX_REPORTED)
        fprintf(stderr, "test_query: mismatch: %s\n", msg);
}

static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int64_t tq_rnd_below(int64_t n)
{
    return n > 0 ? (int64_t)(rnd() % (uint64_t)n) : 0;
}

/* The run's seed: TALLY_TEST_SEED, or a fresh one; printed so that a failure can be repeated. */
void tq_seed_rng(const char *test)
{
    const char *env = getenv("TALLY_TEST_SEED");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    tq_seed = env && env[0]
                  ? strtoull(env, NULL, 10)
                  : ((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid());
    rng = tq_seed;
    fprintf(stderr, "test_query %s: seed %" PRIu64 " (TALLY_TEST_SEED=%" PRIu64 " repeats it)\n",
            test, tq_seed, tq_seed);
}

bool tq_near(double got, double want, double rel)
{
    return fabs(got - want) <= rel * fabs(want) + 1e-9;
}

/* ---- calls ---------------------------------------------------------------------------------- */

/*
 * A call that must succeed: the decoded reply (free with call_free), or NULL after recording the
 * failure as a mismatch.
 */
void *tq_call_ok(gc_client *c, const char *method, const ProtobufCMessage *msg,
                 const ProtobufCMessageDescriptor *reply, const char *what)
{
    ProtobufCMessage *m = NULL;
    gc_status st;
    gc_call_msg(c, method, msg, reply, NULL, DEADLINE_MS, &m, &st);
    tq_ncalls++;
    if (!m)
        tq_bad("%s: %s gave %s", what, method, st.message);
    return m;
}

/* A command (to command-svc) that must succeed; it dirties the SQL snapshot. */
void *tq_cmd_ok(const char *method, const ProtobufCMessage *msg,
                const ProtobufCMessageDescriptor *reply)
{
    void *m = call_ok(tq_sys.cmd, method, msg, reply, 60000);
    tq_sql_dirty = true;
    return m;
}

/* A call that must fail with code; its status (details, seconds) into out. */
void tq_call_code(const char *what, const char *method, const ProtobufCMessage *msg,
                  int deadline_ms, int code, gc_status *out)
{
    call_code(tq_sys.q, method, msg, deadline_ms, out);
    if (out->code != code)
        tq_bad("%s: %s gave %s \"%s\", want %s", what, method, tally_grpc_code_name(out->code),
               out->details, tally_grpc_code_name(code));
}

/* The reply's code must be code and its message must start with the field's path. */
void tq_expect_refusal(const char *what, const char *method, const ProtobufCMessage *msg, int code,
                       const char *field)
{
    gc_status st;
    call_code(tq_sys.q, method, msg, DEADLINE_MS, &st);
    if (st.code != code) {
        tq_bad("%s: %s gave %s \"%s\", want %s naming %s", what, method,
               tally_grpc_code_name(st.code), st.details, tally_grpc_code_name(code), field);
        return;
    }
    if (!call_names_field(st.details, field, ":.["))
        tq_bad("%s: %s's message \"%s\" does not start with the field %s", what, method, st.details,
               field);
    /* and a program reads the field off BadRequest, without parsing the message */
    if (code == TALLY_GRPC_INVALID_ARGUMENT &&
        (!st.has_rich || !st.rich.has_bad_request ||
         (strcmp(st.rich.field, field) != 0 && !call_names_field(st.rich.field, field, ".["))))
        tq_bad("%s: %s's google.rpc.BadRequest does not name %s (has %s, field \"%s\")", what,
               method, field, st.has_rich ? "a Status" : "none", st.rich.field);
}

/* ---- the suite ------------------------------------------------------------------------------ */

static void init(void)
{
    static const char *const query_env[] = { "TALLY_WORKERS=4", NULL };
    sys_options opt = { .query_env = query_env };
    tq_nbad = 0;
    sys_start(&tq_sys, &opt);
    up = true;
    tq_sql_setup();
}

static void fini(void)
{
    fprintf(stderr, "test_query: %d calls, %d mismatches [seed %" PRIu64 "]\n", tq_ncalls, tq_nbad,
            tq_seed);
    if (tq_nbad > MAX_REPORTED)
        cr_expect_fail("... and %d more mismatches [seed %" PRIu64 "]", tq_nbad - MAX_REPORTED,
                       tq_seed);
    if (up)
        sys_stop(&tq_sys);
    up = false;
}

TestSuite(query, .init = init, .fini = fini, .timeout = 175);
