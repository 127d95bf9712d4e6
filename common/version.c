#include "version.h"

#include <stdio.h>
#include <string.h>

bool version_asked(int argc, char **argv, const char *prog)
{
    if (argc < 2 || strcmp(argv[1], "--version") != 0)
        return false;
    printf("%s %s (commit %s)\n", prog, tally_version, tally_commit);
    return true;
}

int version_only_args(int argc, char **argv, const char *prog)
{
    if (version_asked(argc, argv, prog))
        return 0;
    if (argc <= 1)
        return -1;
    fprintf(stderr, "usage: %s [--version] (configuration: TALLY_* variables)\n", prog);
    return 2;
}
