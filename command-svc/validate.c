#include "validate.h"

#include "err.h"
#include "ident.h"
#include "utf8.h"

#include <stdio.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *path, const char *what)
{
    snprintf(err, errlen, "%s: %s", path, what);
    return TALLY_EINVAL;
}

int val_id(const char *path, const char *s, bool optional, char *err, size_t errlen)
{
    enum ident_problem p = ident_check(s);
    if (p == IDENT_OK || (p == IDENT_EMPTY && optional))
        return 0;
    return fail(err, errlen, path, ident_problem_text(p));
}

int val_text(const char *path, const char *s, size_t min, size_t max, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n < min)
        return fail(err, errlen, path, min == 1 ? "required" : "too short");
    if (n > max) {
        snprintf(err, errlen, "%s: longer than %zu bytes", path, max);
        return TALLY_EINVAL;
    }
    size_t bad;
    if (!utf8_valid(s, n, &bad)) {
        snprintf(err, errlen, "%s: not valid UTF-8 (at byte %zu)", path, bad);
        return TALLY_EINVAL;
    }
    return 0;
}

int val_time_zone(const char *path, const char *s, char *err, size_t errlen)
{
    size_t n = strlen(s);
    if (n == 0)
        return fail(err, errlen, path, "required");
    if (n > VAL_TIME_ZONE_MAX)
        return fail(err, errlen, path, "longer than 64 bytes");
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '/' || c == '-' || c == '+'))
            return fail(err, errlen, path, "not an IANA time zone name (like Europe/Berlin)");
    }
    return 0;
}

int val_priority(const char *path, int p, char *err, size_t errlen)
{
    if (p >= 1 && p <= 4)
        return 0;
    snprintf(err, errlen, "%s: must be LOW, MEDIUM, HIGH or URGENT (1-4), got %d", path, p);
    return TALLY_EINVAL;
}

int val_status(const char *path, int s, char *err, size_t errlen)
{
    if (s >= 1 && s <= 4)
        return 0;
    snprintf(err, errlen, "%s: must be OPEN, IN_PROGRESS, RESOLVED or CLOSED (1-4), got %d", path,
             s);
    return TALLY_EINVAL;
}

int val_positive(const char *path, int64_t v, char *err, size_t errlen)
{
    if (v >= 1)
        return 0;
    snprintf(err, errlen, "%s: must be 1 or more, got %lld", path, (long long)v);
    return TALLY_EINVAL;
}

/* allowed[from] lists the statuses one may move to, ascending. */
static const int allowed[5][3] = {
    [1] = { 2, 3, 0 }, /* OPEN -> IN_PROGRESS, RESOLVED */
    [2] = { 3, 0, 0 }, /* IN_PROGRESS -> RESOLVED */
    [3] = { 1, 4, 0 }, /* RESOLVED -> OPEN (reopen), CLOSED */
    [4] = { 0, 0, 0 }, /* CLOSED is final */
};

bool val_move_allowed(int from, int to)
{
    if (from < 1 || from > 4)
        return false;
    for (int i = 0; i < 3 && allowed[from][i]; i++)
        if (allowed[from][i] == to)
            return true;
    return false;
}

const char *val_status_name(int s)
{
    static const char *const names[] = { "UNSPECIFIED", "OPEN", "IN_PROGRESS", "RESOLVED",
                                         "CLOSED" };
    return s >= 0 && s <= 4 ? names[s] : "UNSPECIFIED";
}

void val_allowed_moves(int from, char *list, size_t len)
{
    size_t used = 0;
    list[0] = '\0';
    for (int i = 0; from >= 1 && from <= 4 && i < 3 && allowed[from][i] && used < len; i++)
        used += (size_t)snprintf(list + used, len - used, "%sSTATUS_%s", i ? "," : "",
                                 val_status_name(allowed[from][i]));
}

void val_move_error(int from, int to, char *err, size_t errlen)
{
    char list[64] = "";
    for (int i = 0; from >= 1 && from <= 4 && i < 3 && allowed[from][i]; i++) {
        if (i)
            strcat(list, ", ");
        strcat(list, val_status_name(allowed[from][i]));
    }
    if (!list[0]) {
        snprintf(err, errlen, "status: cannot move from %s to %s; %s is final",
                 val_status_name(from), val_status_name(to), val_status_name(from));
        return;
    }
    snprintf(err, errlen, "status: cannot move from %s to %s; allowed from %s: %s",
             val_status_name(from), val_status_name(to), val_status_name(from), list);
}

int val_history_token(const char *token, int64_t complaint_id, int64_t *after)
{
    long long cid, v;
    int used = 0;
    if (!*token) {
        *after = 0;
        return 0;
    }
    if (strlen(token) > 256 || sscanf(token, "h%lld.%lld%n", &cid, &v, &used) != 2 ||
        token[used] != '\0' || cid != complaint_id || v < 0)
        return TALLY_EINVAL;
    *after = v;
    return 0;
}
