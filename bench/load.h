/*
 * load: what the gRPC load generators (bench-loadgen, bench-queryload) share: the driver of
 * unary calls, the latency samples and their percentiles, and the client's CPU time.
 *
 * One thread drives the calls of one method over --connections HTTP/2 connections (each channel
 * has its own subchannel pool, so its own TCP connection) through one completion queue; gRPC's
 * own threads do the rest. Two loops:
 *
 * - Closed (load_run_closed): C calls always in flight, slot i on connection i % K; each
 *   completion at once starts the next call in its slot, until the window ends. A call that
 *   completes inside the window is measured, latency from its start to its completion.
 * - Open (load_run_open): call k is due at start + k / rate whatever the server does (on
 *   connection k % K), and a call due inside the window is measured from the moment it was due,
 *   not from the moment it went out, so a server (or client) that falls behind shows it in the
 *   latency instead of slowing the load down (no coordinated omission). When all C slots are
 *   busy, due calls wait for one. The loop polls without sleeping for the last spin seconds
 *   before each due time, because the queue's timed wait wakes up to a millisecond late.
 *
 * A follow-up (load_config.then_*, open loop only): when a measured call succeeds, its slot
 * at once makes a second call, built from the first one's reply, to another target (bench-
 * loadgen's freshness: CreateComplaint's token, then GetOverview waiting for it on query-svc).
 * The slot is busy until the follow-up ends; its time, from the first call's completion to its
 * own, goes to load_window.then_lat, its outcome to load_then_stats_of.
 *
 * Every call started is awaited. The bench gives each call's request (load_config.request)
 * and may check each OK reply (load_config.check). The driver counts the outcomes by status
 * code (an OK without a reply message is INTERNAL: the server broke the contract) and keeps the
 * first details of each code. The window notes the process's CPU time (user + system, all
 * threads) when the loop first sees its edges. Percentiles are nearest-rank over every stored
 * sample, exact.
 *
 * Nothing here prints; the bench reads load_stats and the window after the run.
 */
#ifndef TALLY_LOAD_H
#define TALLY_LOAD_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOAD_CONNECTIONS_MAX 64
#define LOAD_CODES           17 /* gRPC status codes 0..16 */

/* Latency samples in seconds. A zeroed struct is empty and unlimited. */
typedef struct load_samples {
    double *v; /* malloc'd */
    size_t n, cap;
    size_t max;       /* the most kept (0 = no limit); beyond it samples are only counted */
    uint64_t dropped; /* samples not kept: over max, or out of memory */
} load_samples;

/* Adds v; 0, or -1 when it was dropped (counted in dropped). */
int load_samples_add(load_samples *s, double v);
void load_samples_sort(load_samples *s);
/* The p-th percentile (nearest rank) of the sorted samples, in milliseconds; 0 when empty. */
double load_samples_pct_ms(const load_samples *s, double p);
void load_samples_release(load_samples *s);
/* Writes the sorted samples to path, in milliseconds, one a line (a chart's input): 0, or -1. */
int load_samples_write(const load_samples *s, const char *path);

/* The monotonic clock, in seconds. */
double load_now_s(void);
/* This process's user + system CPU time (all threads), in seconds. */
double load_cpu_s(void);

/* The measured window of a run, and what was measured in it. */
typedef struct load_window {
    double from, to;         /* monotonic seconds */
    double cpu_from, cpu_to; /* load_cpu_s at the edges; after a run both are set */
    uint64_t measured;       /* calls measured */
    double last_done;        /* completion time of the last measured call */
    load_samples lat;        /* latencies of the measured calls */
    load_samples lag;        /* open loop: how late the measured calls went out */
    load_samples then_lat;   /* follow-ups: first call's completion to the follow-up's */
} load_window;

/* The window [from, from + duration); max_samples bounds lat and lag (0 = no limit). */
void load_window_init(load_window *w, double from, double duration, size_t max_samples);
void load_window_release(load_window *w);

/*
 * The request of call n (0, 1, ...): a slice the driver takes over (it drops the reference).
 * arg is load_config.arg.
 */
typedef grpc_slice (*load_request_fn)(void *arg, uint64_t n);
/* Whether an OK call's reply (never NULL) is what the bench expects. */
typedef bool (*load_check_fn)(void *arg, grpc_byte_buffer *reply);
/*
 * The follow-up's request, from the first call's OK reply (never NULL, borrowed): true with
 * *out set (a slice the driver takes over), or false when the reply gives none (counted as a
 * failed follow-up, INTERNAL).
 */
typedef bool (*load_then_fn)(void *arg, grpc_byte_buffer *reply, grpc_slice *out);

typedef struct load_config {
    const char *target; /* "host:port" */
    const char *method; /* "/package.Service/Method" */
    int connections;    /* 1..LOAD_CONNECTIONS_MAX */
    double timeout_s;   /* each call's deadline */
    load_request_fn request;
    load_check_fn check; /* NULL: every OK reply is good */
    void *arg;
    const char *then_target; /* NULL: no follow-up calls; else "host:port" (open loop only) */
    const char *then_method; /* the follow-up's "/package.Service/Method" */
    load_then_fn then_request;
} load_config;

/* What the calls of every phase (warm-up included) came to. */
typedef struct load_stats {
    uint64_t ok;                   /* OK, and the reply passed the check */
    uint64_t failed;               /* every other call */
    uint64_t bad;                  /* of failed: OK replies that the check refused */
    uint64_t errors[LOAD_CODES];   /* of failed: by status code (a code out of range: UNKNOWN) */
    char *first_error[LOAD_CODES]; /* the details of the first call failing with each code */
} load_stats;

typedef struct load load;

/*
 * Starts gRPC and opens cfg->connections channels to cfg->target (cfg is copied; its strings
 * are borrowed until load_free). NULL when out of memory.
 */
load *load_new(const load_config *cfg);
/* Closes the channels and shuts gRPC down; load_stats' strings go with it. Accepts NULL. */
void load_free(load *l);

/* Waits until every connection is up, for at most timeout_s: 0, or -1. */
int load_connect(load *l, double timeout_s);

/*
 * The closed loop: concurrency calls in flight until w->to (see above). 0, or -1 when out of
 * memory or when a call could not be started (a bug, not an answer of the server); the run
 * stops starting calls then, and awaits those in flight.
 */
int load_run_closed(load *l, int concurrency, load_window *w);

/* The open loop from start, at rate calls per second, at most max_in_flight at once; as above. */
int load_run_open(load *l, double rate, int max_in_flight, double spin_s, double start,
                  load_window *w);

/*
 * One call, counted like the others. true when it succeeded; then *reply holds its reply
 * (caller frees with grpc_byte_buffer_destroy) and *latency_s its time.
 */
bool load_once(load *l, grpc_byte_buffer **reply, double *latency_s);

/* Borrowed until load_free. */
const load_stats *load_stats_of(const load *l);
/* The follow-ups' outcomes (all zero without them); borrowed until load_free. */
const load_stats *load_then_stats_of(const load *l);

#endif
