/*
 * ev_model: the read model that an event history must give.
 *
 * ev_model_new() is the oracle: it calculates, from the events alone and following
 * docs/keyspace.md (not the projector's code), every read-model key of generation 1 of each
 * tenant. ev_model_check() reads a tenant's keys from Redis and reports the first difference.
 * Comparison rules: counter hashes (st, ao, d:M, hd:*, hm:*, ad:M) treat an absent field as 0;
 * fresh.applied_ms (a wall time) only has to be set; refseq's field names are not specified by
 * the document, so only its values are compared. Any other key under the tenant's generation
 * is reported as unexpected.
 */
#ifndef TALLY_TEST_EV_MODEL_H
#define TALLY_TEST_EV_MODEL_H

#include "ev_gen.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ev_model ev_model;

/*
 * The read model after applying the events of h, skipping those with skip[i] (NULL: none; a
 * skipped complaint event must be followed only by skipped events of its complaint, as when
 * it is parked). Free with ev_model_free.
 */
ev_model *ev_model_new(const ev_history *h, const bool *skip);

void ev_model_free(ev_model *m);

/*
 * Several projectors may apply two renames of one entity out of seq order: the older one is
 * then skipped as a duplicate, and fresh.events is short by it. This accepts fresh.events down
 * to the expected count minus the renames (the caller checks the shortfall against
 * tally_projector_duplicates_total).
 */
void ev_model_allow_superseded(ev_model *m);

/* The expected fresh.events of tenant (events applied). */
int64_t ev_model_events(const ev_model *m, const char *tenant);

/* Compares the model with Redis for tenant: 0, or -1 with the first difference in diff. */
int ev_model_check(redisContext *c, const ev_model *m, const char *tenant, char *diff, size_t len);

/* ev_model_check for every tenant of the model. */
int ev_model_check_all(redisContext *c, const ev_model *m, char *diff, size_t len);

#endif
