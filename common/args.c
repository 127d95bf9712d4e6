/* args: one getopt_long pass for the tools. See args.h. */
#include "args.h"

#include <stdio.h>

/* The pass itself: ARGS_BAD once the problem is said, before the usage. */
static int parse(const args_spec *spec, int argc, char **argv)
{
    int opt;
    optind = 1;
    opterr = 1;
    while ((opt = getopt_long(argc, argv, spec->shortopts, spec->longopts, NULL)) != -1) {
        if (opt == spec->help)
            return ARGS_HELP;
        if (opt == '?' || opt == ':' || spec->fn(spec->arg, opt, optarg) != 0)
            return ARGS_BAD;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\"\n", spec->prog, argv[optind]);
        return ARGS_BAD;
    }
    return ARGS_OK;
}

int args_parse(const args_spec *spec, int argc, char **argv)
{
    int rc = parse(spec, argc, argv);
    if (rc == ARGS_HELP)
        fputs(spec->usage, stdout);
    else if (rc == ARGS_BAD)
        fputs(spec->usage, stderr);
    return rc;
}
