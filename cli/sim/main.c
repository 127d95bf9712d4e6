/*
 * tally-sim: the entry point. Picks the subcommand (seed.c, live.c) and says how to use it.
 */
#include "sim_int.h"
#include "version.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "Usage: tally-sim seed|live [options]   (tally-sim seed --help, tally-sim live --help)\n"
    "       tally-sim --version\n"
    "\n"
    "Sample traffic against command-svc (tally.v1.ComplaintCommands):\n"
    "  seed   creates sample tenants with their categories and agents, then imports a year of\n"
    "         complaint history with ImportComplaints; a rerun imports nothing twice\n"
    "  live   a live trickle of commands: new complaints, assignments, status moves\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return SIM_EXIT_USAGE;
    }
    if (version_asked(argc, argv, "tally-sim"))
        return 0;
    if (strcmp(argv[1], "seed") == 0)
        return sim_seed(argc - 1, argv + 1);
    if (strcmp(argv[1], "live") == 0)
        return sim_live(argc - 1, argv + 1);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(usage, stdout);
        return SIM_EXIT_OK;
    }
    sim_say("unknown subcommand \"%s\"", argv[1]);
    fputs(usage, stderr);
    return SIM_EXIT_USAGE;
}
