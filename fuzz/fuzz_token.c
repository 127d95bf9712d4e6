/*
 * fuzz_token: the page tokens clients hand back (opaque strings from anyone): query-svc's
 * agent-table token (ag_token_offset, against a token it made itself for the same page) and
 * command-svc's history token (val_history_token). The first bytes set the page's range and
 * order; the rest is the token.
 */
#include "panels.h"
#include "read.h"
#include "validate.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    qrange r = { .from = 20000 + data[0], .to = 20000 + data[0] + data[1] };
    int sort_by = data[2] % 4;
    bool ascending = data[2] & 0x80;
    char *s = malloc(size - 2);
    if (!s)
        return 0;
    memcpy(s, data + 3, size - 3);
    s[size - 3] = '\0';
    int64_t off = ag_token_offset(s, r, sort_by, ascending), after;
    if (off >= 0) { /* a token it accepts must be one it could have made */
        arena ar = { 0 };
        char *again = ag_token(&ar, r, sort_by, ascending, off);
        if (!again || ag_token_offset(again, r, sort_by, ascending) != off)
            abort();
        ar_free(&ar);
    }
    val_history_token(s, 42, &after);
    free(s);
    return 0;
}
