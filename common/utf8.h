/*
 * utf8: the one UTF-8 validator (RFC 3629: no overlong forms, no UTF-16 surrogates, nothing
 * above U+10FFFF), shared by the logger, the request checks and the field validation.
 */
#ifndef TALLY_UTF8_H
#define TALLY_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length (1-4) of the valid sequence at s, which has avail bytes; 0 if it is not valid. */
size_t utf8_seq(const unsigned char *s, size_t avail);

/* Whether s[0..len) is valid UTF-8; if not, *bad (when not NULL) is the offset of the error. */
bool utf8_valid(const char *s, size_t len, size_t *bad);

#endif
