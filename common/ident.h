/*
 * ident: the API's client-chosen ids (tenant, category, agent, customer, idempotency key):
 * 1..64 bytes of [A-Za-z0-9_.-] (types.proto). Safe inside Redis keys and log lines.
 */
#ifndef TALLY_IDENT_H
#define TALLY_IDENT_H

#define IDENT_MAX 64

enum ident_problem { IDENT_OK = 0, IDENT_EMPTY, IDENT_TOO_LONG, IDENT_BAD_CHAR };

enum ident_problem ident_check(const char *s);

/* "required", "longer than 64 bytes", "may only contain A-Z a-z 0-9 _ . -" ("" for IDENT_OK). */
const char *ident_problem_text(enum ident_problem p);

#endif
