/*
 * args: the command line of the tools (tally-sim, bench/; never the services): one pass of
 * getopt_long that treats, the same way in every program, all that is not an option's value.
 *
 * The program keeps its table of long options, its usage text and a handler that stores each
 * value (and may refuse it); args_parse does the rest. --help (and -h where shortopts has it)
 * prints the usage on stdout. A usage error prints what is wrong, then the usage, on stderr:
 * an unknown option, a missing or unwanted value or an ambiguous abbreviation is said by
 * getopt_long itself ("seed: unrecognized option '--x'", after argv[0]), a value the handler
 * refuses by the handler, an argument that is not an option by args_parse ("<prog>: unexpected
 * argument "x""). The pass stops at the first problem; the caller turns the result into its
 * exit code (0 after help, its usage code after an error). getopt_long's globals (optind,
 * optarg) are reset and used, so it is for the main thread, once per command line.
 */
#ifndef TALLY_ARGS_H
#define TALLY_ARGS_H

#include <getopt.h>

/* What args_parse found. */
enum {
    ARGS_OK = 0,   /* every option was taken and there is no other argument */
    ARGS_HELP = 1, /* the help option was given: the usage is printed on stdout */
    ARGS_BAD = -1, /* a usage error: it and the usage are printed on stderr */
};

/*
 * Takes option opt (a val of the table) and its value (borrowed from argv, which it may cut up;
 * NULL for an option without one): 0, or nonzero to refuse it after saying why.
 */
typedef int args_fn(void *arg, int opt, char *value);

typedef struct args_spec {
    const char *prog;              /* the prefix of args_parse's own message: "bench-loadgen" */
    const char *usage;             /* printed after --help and after a usage error */
    const char *shortopts;         /* for getopt_long: "h", or "" for long options only */
    const struct option *longopts; /* the program's table, ending in a row of zeros */
    int help;                      /* the val of --help in the table */
    args_fn *fn;                   /* called for every other option, in order */
    void *arg;                     /* passed to fn */
} args_spec;

/* Parses argv[1..argc) with spec: ARGS_OK, ARGS_HELP or ARGS_BAD, as above. */
int args_parse(const args_spec *spec, int argc, char **argv);

#endif
