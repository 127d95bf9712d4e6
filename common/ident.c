#include "ident.h"

#include <string.h>

enum ident_problem ident_check(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return IDENT_EMPTY;
    if (n > IDENT_MAX)
        return IDENT_TOO_LONG;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return IDENT_BAD_CHAR;
    }
    return IDENT_OK;
}

const char *ident_problem_text(enum ident_problem p)
{
    switch (p) {
    case IDENT_EMPTY:
        return "required";
    case IDENT_TOO_LONG:
        return "longer than 64 bytes";
    case IDENT_BAD_CHAR:
        return "may only contain A-Z a-z 0-9 _ . -";
    default:
        return "";
    }
}
