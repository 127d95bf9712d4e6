/*
 * tally-sim: sample traffic for the demo and the benchmarks, against command-svc.
 *
 *   tally-sim seed   a year of history for sample tenants, imported with ImportComplaints
 *   tally-sim live   a live trickle of commands: new complaints, assignments, status moves
 *
 * This header is what the parts of the program share: main.c picks the subcommand, seed.c and
 * live.c are the subcommands, opts.c holds what both use (messages, option values, signals,
 * counts); nothing calls back into main.c. Signals: sim_block_signals blocks SIGINT and
 * SIGTERM before any thread exists, so that every thread (gRPC's included) inherits the mask and
 * the signals are only ever taken by sim_wait_signal, which doubles as the main thread's sleep.
 */
#ifndef TALLY_SIM_INT_H
#define TALLY_SIM_INT_H

#include <stdint.h>

#define SIM_DEFAULT_TARGET  "127.0.0.1:50051"
#define SIM_DEFAULT_TENANTS "acme:America/New_York,globex:Europe/Berlin,initech:Asia/Tokyo"

/* Exit codes. A signal ends a subcommand with 128 + the signal's number. */
enum { SIM_EXIT_OK = 0, SIM_EXIT_FAILED = 1, SIM_EXIT_USAGE = 2 };

/* The subcommands (seed.c, live.c): argv[0] is the subcommand's name. They return the
 * process's exit code. */
int sim_seed(int argc, char **argv);
int sim_live(int argc, char **argv);

/* ---- opts.c ---- */

/* "tally-sim: " + the message + a newline, on stderr. */
void sim_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses an integer option in [min, max]; 0, or -1 after saying why. */
int sim_parse_int(const char *opt, const char *s, int64_t min, int64_t max, int64_t *out);
/* Parses a number option in [min, max]; 0, or -1 after saying why. */
int sim_parse_double(const char *opt, const char *s, double min, double max, double *out);

/* Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts later). */
void sim_block_signals(void);

/* Waits up to ms milliseconds for SIGINT or SIGTERM: the signal's number, or 0 at the timeout. */
int sim_wait_signal(int64_t ms);

/* A count with thousands separators ("200,000") into buf. */
const char *sim_count(char *buf, int len, int64_t n);

#endif
