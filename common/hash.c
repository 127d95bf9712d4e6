#include "hash.h"

#include "err.h"

#include <protobuf-c/protobuf-c.h>
#include <stdlib.h>

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME  0x100000001b3ULL

uint64_t hash_fnv1a(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t h = seed ? seed : FNV_OFFSET;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

int hash_fingerprint(const ProtobufCMessage *msg, uint8_t out[8])
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *packed = malloc(n ? n : 1);
    if (!packed)
        return TALLY_ENOMEM;
    protobuf_c_message_pack(msg, packed);
    uint64_t h = hash_fnv1a(packed, n, 0);
    free(packed);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(h >> (56 - 8 * i));
    return 0;
}
