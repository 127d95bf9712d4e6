/* load: the load generators' driver, samples and CPU time. See load.h. */
#include "load.h"

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/string_util.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define TICK_S 0.02 /* longest wait on the queue, so that the window's edges are seen on time */

/* One outstanding call; its address is the call's tag, and the slot is reused. */
typedef struct load_call {
    grpc_call *call;
    grpc_byte_buffer *request, *reply;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    double due;  /* when the call was due (open loop) or started (closed loop) */
    double done; /* a follow-up's: when the first call completed */
    bool in_window;
    bool then_phase; /* the call in flight is the follow-up */
    struct load_call *next_free;
} load_call;

struct load {
    load_config cfg;
    grpc_completion_queue *cq;
    grpc_channel *channels[LOAD_CONNECTIONS_MAX];
    void *registered[LOAD_CONNECTIONS_MAX];
    grpc_channel *then_channels[LOAD_CONNECTIONS_MAX]; /* to cfg.then_target, when set */
    void *then_registered[LOAD_CONNECTIONS_MAX];
    uint64_t sent; /* calls started */
    load_stats st, then_st;
    char *authorization; /* "Bearer $TALLY_TOKEN" on every call, or NULL when it is unset */
    grpc_metadata auth_md;
};

/* ---- samples and clocks -------------------------------------------------------------------- */

int load_samples_add(load_samples *s, double v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 65536;
        if (s->max && cap > s->max)
            cap = s->max;
        double *grown = cap > s->cap ? realloc(s->v, cap * sizeof(*grown)) : NULL;
        if (!grown) {
            s->dropped++;
            return -1;
        }
        s->v = grown;
        s->cap = cap;
    }
    s->v[s->n++] = v;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void load_samples_sort(load_samples *s)
{
    if (s->n)
        qsort(s->v, s->n, sizeof(*s->v), cmp_double);
}

double load_samples_pct_ms(const load_samples *s, double p)
{
    if (s->n == 0)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    return s->v[(rank ? rank : 1) - 1] * 1e3;
}

int load_samples_write(const load_samples *s, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%.4f\n", s->v[i] * 1e3);
    return fclose(f) == 0 ? 0 : -1;
}

void load_samples_release(load_samples *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

double load_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double load_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void load_window_init(load_window *w, double from, double duration, size_t max_samples)
{
    memset(w, 0, sizeof(*w));
    w->from = from;
    w->to = from + duration;
    w->cpu_from = w->cpu_to = -1;
    w->lat.max = w->lag.max = w->then_lat.max = max_samples;
}

void load_window_release(load_window *w)
{
    load_samples_release(&w->lat);
    load_samples_release(&w->lag);
    load_samples_release(&w->then_lat);
}

/* Notes the CPU time at the window's edges, the first time the loop sees each. */
static void window_edges(load_window *w, double t)
{
    if (w->cpu_from < 0 && t >= w->from)
        w->cpu_from = load_cpu_s();
    if (w->cpu_to < 0 && t >= w->to)
        w->cpu_to = load_cpu_s();
}

/* After a run: edges the loop never saw are now (a window of no CPU if it saw neither). */
static void window_close(load_window *w)
{
    if (w->cpu_to < 0)
        w->cpu_to = load_cpu_s();
    if (w->cpu_from < 0)
        w->cpu_from = w->cpu_to;
}

/* A deadline t (monotonic seconds) for the completion queue. */
static gpr_timespec mono_at(double t)
{
    double left = t - load_now_s();
    if (left <= 0)
        return gpr_time_0(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_micros((int64_t)(left * 1e6), GPR_TIMESPAN));
}

/* ---- the driver ---------------------------------------------------------------------------- */

/* An integer channel argument. */
static grpc_arg int_arg(const char *key, int value)
{
    return (grpc_arg){ .type = GRPC_ARG_INTEGER, .key = (char *)key, .value.integer = value };
}

load *load_new(const load_config *cfg)
{
    load *l = calloc(1, sizeof(*l));
    grpc_arg args[2] = { int_arg(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1),
                         int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 << 20) };
    grpc_channel_args chargs = { .num_args = 2, .args = args };
    if (!l)
        return NULL;
    l->cfg = *cfg;
    if (l->cfg.connections < 1)
        l->cfg.connections = 1;
    if (l->cfg.connections > LOAD_CONNECTIONS_MAX)
        l->cfg.connections = LOAD_CONNECTIONS_MAX;
    grpc_init();
    l->cq = grpc_completion_queue_create_for_next(NULL);
    /* The services verify bearer tokens (common/auth.h); the benches export TALLY_TOKEN. */
    const char *token = getenv("TALLY_TOKEN");
    if (token && token[0]) {
        size_t n = strlen(token) + sizeof("Bearer ");
        if ((l->authorization = malloc(n))) {
            snprintf(l->authorization, n, "Bearer %s", token);
            l->auth_md.key = grpc_slice_from_static_string("authorization");
            l->auth_md.value = grpc_slice_from_static_string(l->authorization);
        }
    }
    for (int i = 0; i < l->cfg.connections; i++) {
        grpc_channel_credentials *creds = grpc_insecure_credentials_create();
        l->channels[i] = grpc_channel_create(cfg->target, creds, &chargs);
        grpc_channel_credentials_release(creds);
        l->registered[i] = grpc_channel_register_call(l->channels[i], cfg->method, NULL, NULL);
        if (cfg->then_target) {
            creds = grpc_insecure_credentials_create();
            l->then_channels[i] = grpc_channel_create(cfg->then_target, creds, &chargs);
            grpc_channel_credentials_release(creds);
            l->then_registered[i] =
                grpc_channel_register_call(l->then_channels[i], cfg->then_method, NULL, NULL);
        }
    }
    return l;
}

void load_free(load *l)
{
    if (!l)
        return;
    for (int i = 0; i < l->cfg.connections; i++) {
        grpc_channel_destroy(l->channels[i]);
        if (l->then_channels[i])
            grpc_channel_destroy(l->then_channels[i]);
    }
    grpc_completion_queue_shutdown(l->cq);
    while (grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(l->cq);
    grpc_shutdown_blocking();
    for (int c = 0; c < LOAD_CODES; c++) {
        gpr_free(l->st.first_error[c]);
        gpr_free(l->then_st.first_error[c]);
    }
    free(l->authorization);
    free(l);
}

int load_connect(load *l, double timeout_s)
{
    double until = load_now_s() + timeout_s;
    for (int i = 0; i < 2 * l->cfg.connections; i++) {
        grpc_channel *ch =
            i < l->cfg.connections ? l->channels[i] : l->then_channels[i - l->cfg.connections];
        grpc_connectivity_state st;
        while (ch && (st = grpc_channel_check_connectivity_state(ch, 1)) != GRPC_CHANNEL_READY) {
            if (load_now_s() > until)
                return -1;
            grpc_channel_watch_connectivity_state(ch, st, mono_at(load_now_s() + 0.2), l->cq, NULL);
            grpc_event ev;
            do
                ev = grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
            while (ev.type == GRPC_OP_COMPLETE && ev.tag != NULL);
        }
    }
    return 0;
}

const load_stats *load_stats_of(const load *l)
{
    return &l->st;
}

const load_stats *load_then_stats_of(const load *l)
{
    return &l->then_st;
}

static void call_init(load_call *s)
{
    memset(s, 0, sizeof(*s));
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
}

static void call_release(load_call *s)
{
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
}

/*
 * Sends body (taken over) as a call of the registered method reg on channel ch, tagged s.
 * 0, or -1 when the batch did not start.
 */
static int call_send(load *l, load_call *s, grpc_channel *ch, void *reg, grpc_slice body)
{
    s->request = grpc_raw_byte_buffer_create(&body, 1);
    grpc_slice_unref(body);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                     gpr_time_from_millis((int64_t)(l->cfg.timeout_s * 1e3), GPR_TIMESPAN));
    s->call = grpc_channel_create_registered_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, l->cq, reg,
                                                  deadline, NULL);
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (l->authorization) {
        ops[0].data.send_initial_metadata.count = 1;
        ops[0].data.send_initial_metadata.metadata = &l->auth_md;
    }
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &s->reply;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &s->trailing_md;
    ops[5].data.recv_status_on_client.status = &s->status;
    ops[5].data.recv_status_on_client.status_details = &s->details;
    if (grpc_call_start_batch(s->call, ops, 6, s, NULL) == GRPC_CALL_OK)
        return 0;
    grpc_call_unref(s->call);
    grpc_byte_buffer_destroy(s->request);
    s->call = NULL;
    s->request = NULL;
    return -1;
}

/*
 * Starts the next call on s over connection conn; due is when it was due (open loop), or < 0
 * for now, once the request is built (closed loop). 0, or -1 when the batch did not start.
 */
static int call_start(load *l, load_call *s, int conn, double due, bool in_window)
{
    grpc_slice body = l->cfg.request(l->cfg.arg, l->sent++);
    s->due = due < 0 ? load_now_s() : due;
    s->in_window = in_window;
    s->then_phase = false;
    return call_send(l, s, l->channels[conn], l->registered[conn], body);
}

/* Counts a failed call of code in st (details: the first one of its code is kept). */
static void count_error(load_stats *st, int code, char *details)
{
    int c = code > 0 && code < LOAD_CODES ? code : GRPC_STATUS_UNKNOWN;
    st->errors[c]++;
    st->failed++;
    if (!st->first_error[c])
        st->first_error[c] = details;
    else
        gpr_free(details);
}

/*
 * Accounts a finished call (its batch ok or not) and releases what it held. With reply
 * non-NULL the reply (or NULL) is handed over there instead: the caller frees it with
 * grpc_byte_buffer_destroy. True when the call succeeded.
 */
static bool call_finish(load *l, load_call *s, int ok, grpc_byte_buffer **reply)
{
    grpc_status_code code = ok ? s->status : GRPC_STATUS_UNKNOWN;
    load_stats *st = s->then_phase ? &l->then_st : &l->st;
    load_check_fn check = s->then_phase ? NULL : l->cfg.check;
    bool good = false;
    if (code == GRPC_STATUS_OK && s->reply == NULL) {
        count_error(st, GRPC_STATUS_INTERNAL, gpr_strdup("status OK without a reply message"));
    } else if (code == GRPC_STATUS_OK && check && !check(l->cfg.arg, s->reply)) {
        st->bad++;
        st->failed++;
    } else if (code == GRPC_STATUS_OK) {
        st->ok++;
        good = true;
    } else {
        count_error(st, (int)code,
                    ok ? grpc_slice_to_c_string(s->details) : gpr_strdup("batch failed"));
    }
    grpc_call_unref(s->call);
    grpc_byte_buffer_destroy(s->request);
    if (reply)
        *reply = s->reply;
    else if (s->reply)
        grpc_byte_buffer_destroy(s->reply);
    grpc_metadata_array_destroy(&s->initial_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->details);
    s->call = NULL;
    s->request = s->reply = NULL;
    s->details = grpc_empty_slice();
    grpc_metadata_array_init(&s->initial_md);
    grpc_metadata_array_init(&s->trailing_md);
    return good;
}

/* The slots of a run, initialized; NULL when out of memory. */
static load_call *calls_new(int n)
{
    load_call *calls = calloc((size_t)n, sizeof(*calls));
    for (int i = 0; calls && i < n; i++)
        call_init(&calls[i]);
    return calls;
}

static void calls_free(load_call *calls, int n)
{
    for (int i = 0; i < n; i++)
        call_release(&calls[i]);
    free(calls);
}

int load_run_closed(load *l, int concurrency, load_window *w)
{
    load_call *calls = calls_new(concurrency);
    int outstanding = 0, rc = 0;
    if (!calls)
        return -1;
    for (int i = 0; i < concurrency && rc == 0; i++) {
        if ((rc = call_start(l, &calls[i], i % l->cfg.connections, -1, false)) == 0)
            outstanding++;
    }
    while (outstanding > 0) {
        grpc_event ev = grpc_completion_queue_next(l->cq, mono_at(load_now_s() + TICK_S), NULL);
        double t = load_now_s();
        window_edges(w, t);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        load_call *s = ev.tag;
        double started = s->due;
        call_finish(l, s, ev.success, NULL);
        if (t >= w->from && t < w->to) {
            w->measured++;
            w->last_done = t;
            load_samples_add(&w->lat, t - started);
        }
        if (t < w->to && rc == 0 &&
            (rc = call_start(l, s, (int)(s - calls) % l->cfg.connections, -1, false)) == 0)
            continue;
        outstanding--;
    }
    window_close(w);
    calls_free(calls, concurrency);
    return rc;
}

/*
 * A first call of the open loop completed at t: accounted, and when it was measured, OK and a
 * follow-up is configured, the follow-up started on the same slot. True when it was (the slot
 * stays busy); *rc becomes -1 when it could not be started.
 */
static bool then_step(load *l, load_call *s, int ok, double t, load_window *w, int *rc)
{
    grpc_byte_buffer *reply = NULL;
    bool then = l->cfg.then_target && s->in_window;
    bool good = call_finish(l, s, ok, then ? &reply : NULL);
    bool started = false;
    if (s->in_window) {
        w->measured++;
        w->last_done = t;
        load_samples_add(&w->lat, t - s->due);
    }
    if (then && good && *rc == 0) {
        grpc_slice body;
        int conn = (int)(l->sent % (uint64_t)l->cfg.connections);
        if (!l->cfg.then_request(l->cfg.arg, reply, &body)) {
            count_error(&l->then_st, GRPC_STATUS_INTERNAL,
                        gpr_strdup("the reply gives no follow-up request"));
        } else {
            s->then_phase = true;
            s->done = t;
            started = call_send(l, s, l->then_channels[conn], l->then_registered[conn], body) == 0;
            if (!started)
                *rc = -1;
        }
    }
    if (reply)
        grpc_byte_buffer_destroy(reply);
    return started;
}

int load_run_open(load *l, double rate, int max_in_flight, double spin_s, double start,
                  load_window *w)
{
    load_call *calls = calls_new(max_in_flight), *free_list = NULL;
    uint64_t k = 0;
    int outstanding = 0, rc = 0;
    if (!calls)
        return -1;
    for (int i = max_in_flight - 1; i >= 0; i--) {
        calls[i].next_free = free_list;
        free_list = &calls[i];
    }
    for (;;) {
        double due = start + (double)k / rate;
        bool more = due < w->to && rc == 0;
        if (!more && outstanding == 0)
            break;
        double t = load_now_s();
        if (more && t >= due && free_list) {
            load_call *s = free_list;
            bool in = due >= w->from;
            if ((rc = call_start(l, s, (int)(l->sent % (uint64_t)l->cfg.connections), due, in)))
                continue;
            free_list = s->next_free;
            if (in)
                load_samples_add(&w->lag, load_now_s() - due);
            outstanding++;
            k++;
            continue;
        }
        /* Wait for a completion, the next due time (polling for its last spin seconds), or a
         * tick. */
        double until = t + TICK_S;
        if (more && free_list && due - spin_s < until)
            until = due - spin_s;
        grpc_event ev = grpc_completion_queue_next(
            l->cq, until <= t ? gpr_inf_past(GPR_CLOCK_MONOTONIC) : mono_at(until), NULL);
        t = load_now_s();
        window_edges(w, t);
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        load_call *s = ev.tag;
        if (s->then_phase) {
            if (call_finish(l, s, ev.success, NULL))
                load_samples_add(&w->then_lat, t - s->done);
        } else if (then_step(l, s, ev.success, t, w, &rc)) {
            continue; /* the slot makes its follow-up */
        }
        s->next_free = free_list;
        free_list = s;
        outstanding--;
    }
    window_close(w);
    calls_free(calls, max_in_flight);
    return rc;
}

bool load_once(load *l, grpc_byte_buffer **reply, double *latency_s)
{
    load_call s;
    bool good = false;
    *reply = NULL;
    *latency_s = 0;
    call_init(&s);
    if (call_start(l, &s, 0, -1, true) == 0) {
        grpc_event ev =
            grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        double t = load_now_s();
        good = ev.type == GRPC_OP_COMPLETE && call_finish(l, &s, ev.success, reply);
        *latency_s = t - s.due;
        if (!good && *reply) {
            grpc_byte_buffer_destroy(*reply);
            *reply = NULL;
        }
    }
    call_release(&s);
    return good;
}
