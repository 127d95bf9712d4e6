/* ImportComplaints (import.c): what tests reach besides the RPC. */
#ifndef TALLY_IMPORT_H
#define TALLY_IMPORT_H

/*
 * The validation query of a batch: $1 tenant, $2 categories (text[]), $3 agents (text[]), $4
 * idempotency keys (text[]), $5 their request hashes (bytea[]). Rows: ('t', time zone) if the
 * tenant exists; ('c', id) per category of $2 the tenant lacks; ('a', id) likewise per agent
 * of $3; ('k', key, index, same hash, complaint, version) per key of $4 already used.
 */
extern const char import_check_sql[];

#endif
