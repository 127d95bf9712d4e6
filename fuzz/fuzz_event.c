/*
 * fuzz_event: the projector's decoder of stream entries (projector/decode.h): an EventEnvelope's
 * bytes as they come from Redis, from anyone who can write to the stream.
 */
#include "decode.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proj_event ev;
    char why[256];
    if (proj_decode(data, size, &ev, why, sizeof(why)) == 0)
        proj_is_complaint_event(&ev);
    proj_event_release(&ev); /* a refused event may keep its envelope (decode.h) */
    return 0;
}
