/*
 * ev_wait: waiting for the projector (its consumer group idle, the model's event counts reached)
 * and reading its /metrics.
 */
#ifndef TALLY_TEST_EV_WAIT_H
#define TALLY_TEST_EV_WAIT_H

#include "ev_model.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

/* The value of an unlabelled series (or a histogram's _count) on /metrics; -1 if absent. */
double ev_metric(int http_port, const char *name);

/* True when the group "projector" has read all of stream and nothing is pending. */
bool ev_group_idle(redisContext *c, const char *stream);

/*
 * The group "projector" of stream: *pending entries read and not acknowledged, *undelivered
 * entries not read yet (at least 1 while its last-delivered-id is not the stream's last id).
 * 0; 1 when the stream does not exist (both 0); -1 when the group does not exist or Redis
 * failed.
 */
int ev_group_state(redisContext *c, const char *stream, int64_t *pending, int64_t *undelivered);

/*
 * Polls (opening a connection each time, so a Redis restart is fine) until every tenant of m
 * has fresh.events as expected and the group is idle: 0. -1 after timeout_ms; -2 once the
 * group has been idle for a second with other counts (nothing will change any more).
 */
int ev_wait_applied(int redis_port, const ev_model *m, int timeout_ms);

#endif
