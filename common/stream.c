#include "stream.h"

#include "hash.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

void stream_key(int p, char *buf, size_t len)
{
    snprintf(buf, len, "tally:events:%d", p);
}

void stream_dead_key(int p, char *buf, size_t len)
{
    snprintf(buf, len, "tally:dead:%d", p);
}

int stream_partition(const char *tenant_id, int partitions)
{
    if (partitions <= 1)
        return 0;
    return (int)(hash_fnv1a(tenant_id, strlen(tenant_id), 0) % (uint64_t)partitions);
}
