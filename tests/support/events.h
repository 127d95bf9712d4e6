/*
 * events: the projector tests' events harness, in three parts: ev_gen.h (realistic histories,
 * stream orders, XADD), ev_model.h (the read model they must give, and its comparison with
 * Redis) and ev_wait.h (waiting for the projector, its metrics). Including this includes all
 * three.
 */
#ifndef TALLY_TEST_EVENTS_H
#define TALLY_TEST_EVENTS_H

#include "ev_gen.h"
#include "ev_model.h"
#include "ev_wait.h"

#endif
