/*
 * hash: the one non-cryptographic hash of the house, 64-bit FNV-1a, and what is built on it.
 *
 * Its values are part of contracts, so they never change: the stream partition of a tenant
 * (stream.h), the idempotency fingerprint stored with imported complaints and retried
 * commands, query-svc's page tokens, the versioned name of the projector's Redis function.
 * Nothing here is safe against an adversary choosing inputs to collide; none of those uses
 * needs that.
 */
#ifndef TALLY_HASH_H
#define TALLY_HASH_H

#include <stddef.h>
#include <stdint.h>

/*
 * The 64-bit FNV-1a digest of data (len bytes). A seed of 0 starts from the standard offset
 * basis; passing the digest of a first part as the seed of the next chains the parts, giving
 * the digest of their concatenation.
 */
uint64_t hash_fnv1a(const void *data, size_t len, uint64_t seed);

/*
 * The fingerprint of a message for idempotency: FNV-1a of its packed bytes (protobuf-c packs
 * equal content to equal bytes), big-endian in out. 0, or TALLY_ENOMEM.
 */
struct ProtobufCMessage;
int hash_fingerprint(const struct ProtobufCMessage *msg, uint8_t out[8]);

#endif
