/*
 * fuzz_tzif: the TZif reader (common/tz.c), whose files come from the host's zoneinfo; and a
 * property of every zone it accepts: tz_offset stays within -89999..93599 s at any instant.
 */
#include "tz.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why;
    tz_zone *z = tz_parse(data, size, &why);
    if (!z)
        return 0;
    int64_t at[] = { INT64_MIN, -2208988800LL, 0, 1800000000LL, 4102444800LL, INT64_MAX, 0 };
    if (size >= 8)
        memcpy(&at[6], data + size - 8, 8);
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        int64_t off = tz_offset(z, at[i]);
        if (off < -89999 || off > 93599)
            abort();
    }
    free(z);
    return 0;
}
