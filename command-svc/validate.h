/*
 * validate: the rules of command requests, as pure functions (no I/O), shared by every
 * handler and ImportComplaints. Each check writes a message that starts with the field's path
 * ("title: longer than 200 bytes") into err and returns TALLY_EINVAL, or returns 0.
 * path is the field's name or full path ("complaints[3].history[1].status").
 */
#ifndef TALLY_VALIDATE_H
#define TALLY_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VAL_ID_MAX          64
#define VAL_NAME_MAX        200
#define VAL_TITLE_MAX       200
#define VAL_DESCRIPTION_MAX 4000
#define VAL_NOTE_MAX        2000
#define VAL_TIME_ZONE_MAX   64

/* A client-chosen id: 1..64 bytes of [A-Za-z0-9_.-]. With optional, "" is allowed too. */
int val_id(const char *path, const char *s, bool optional, char *err, size_t errlen);

/* Free text: valid UTF-8 (no overlongs, no surrogates), min..max bytes. */
int val_text(const char *path, const char *s, size_t min, size_t max, char *err, size_t errlen);

/* An IANA-looking time zone name (form only; PostgreSQL decides whether it exists). */
int val_time_zone(const char *path, const char *s, char *err, size_t errlen);

/* Priority LOW..URGENT (1..4), Status OPEN..CLOSED (1..4); UNSPECIFIED and unknown refused. */
int val_priority(const char *path, int p, char *err, size_t errlen);
int val_status(const char *path, int s, char *err, size_t errlen);

/* A complaint id (>= 1) and an expected version (>= 1). */
int val_positive(const char *path, int64_t v, char *err, size_t errlen);

/* Whether the state machine allows from -> to. */
bool val_move_allowed(int from, int to);

/*
 * FAILED_PRECONDITION text for a refused move: "cannot move from RESOLVED to IN_PROGRESS;
 * allowed from RESOLVED: CLOSED, OPEN" (or "... CLOSED is final").
 */
void val_move_error(int from, int to, char *err, size_t errlen);

/* The statuses a complaint may move to from status from, as the enum names them,
   "STATUS_IN_PROGRESS,STATUS_RESOLVED" ("" if none). */
void val_allowed_moves(int from, char *list, size_t len);

/* "OPEN", "IN_PROGRESS", ...; "UNSPECIFIED" for anything else. */
const char *val_status_name(int s);

/*
 * ListStatusHistory's page token, "h<complaint>.<version>" (the last version of the previous
 * page), for complaint_id: 0 with *after set ("" is the first page: 0), or TALLY_EINVAL.
 */
int val_history_token(const char *token, int64_t complaint_id, int64_t *after);

#endif
