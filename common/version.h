/*
 * version: which build this is. tally_version is the project's VERSION (CMakeLists.txt);
 * tally_commit the git commit it was built from, with "-dirty" when the tree had changes, or
 * TALLY_COMMIT given at configure, or "unknown" (cmake/Version.cmake writes both at every
 * build). Every binary answers `--version`; the services also export tally_build_info.
 */
#ifndef TALLY_VERSION_H
#define TALLY_VERSION_H

#include <stdbool.h>

extern const char tally_version[];
extern const char tally_commit[];

/*
 * True (after printing "<prog> <version> (commit <commit>)" on stdout) when argv[1] is
 * --version: the caller exits 0. False otherwise.
 */
bool version_asked(int argc, char **argv, const char *prog);

/*
 * The arguments of a service configured only by TALLY_* variables: -1 to go on (none given);
 * else the exit status: 0 after --version, 2 after a usage line on stderr for anything else.
 */
int version_only_args(int argc, char **argv, const char *prog);

#endif
