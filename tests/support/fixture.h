/*
 * fixture: what tests of the real services share. Storage is scripts/test's private stack
 * (TALLY_PG_DSN, TALLY_REDIS_URL); each test isolates itself with a tenant id of its own, so
 * tests can run in parallel against one database.
 */
#ifndef TALLY_TEST_FIXTURE_H
#define TALLY_TEST_FIXTURE_H

#include "gclient.h"
#include "proc.h"

#include <stddef.h>

/* Asserts the stack's variables are set (run the tests through scripts/test). */
void fx_need_stack(void);

/* Runs `command-svc migrate` against TALLY_PG_DSN and asserts it exits 0. */
void fx_migrate(void);

/* Migrates, then starts command-svc on free ports with env overrides; asserts it started. */
void fx_start_command_svc(proc *p, const char *const *env);

/* A tenant id unique to this process and call: "t<pid>x<n>". buf needs 32 bytes. */
const char *fx_tenant(char *buf, size_t len);

/*
 * Creates the tenant (time zone tz) with categories "c1", "c2" and agents "a1", "a2" through
 * the API, asserting each call succeeds.
 */
void fx_seed_tenant(gc_client *c, const char *tenant, const char *tz);

#endif
