#include "pbcheck.h"

#include "err.h"
#include "utf8.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH  16 /* deeper nesting than the API has */
#define MAX_FIELDS 64

static size_t varint(const uint8_t *p, size_t len, uint64_t *v)
{
    uint64_t r = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        r |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = r;
            return i + 1;
        }
    }
    return 0;
}

/* Where check is: a field of the message its parent (up) is in; NULL at the top. */
typedef struct where {
    const struct where *up;
    const ProtobufCFieldDescriptor *f;
    unsigned nth; /* of a repeated field */
} where;

/* The path of w ("complaints[3].history[1].note") into buf at at; returns the new length. */
static size_t path_of(const where *w, char *buf, size_t len)
{
    if (!w || len == 0)
        return 0;
    size_t at = path_of(w->up, buf, len);
    if (at >= len)
        return at;
    int k = w->f->label == PROTOBUF_C_LABEL_REPEATED
                ? snprintf(buf + at, len - at, "%s%s[%u]", at ? "." : "", w->f->name, w->nth)
                : snprintf(buf + at, len - at, "%s%s", at ? "." : "", w->f->name);
    return k < 0 ? at : at + (size_t)k;
}

/* Checks one message, the field at is in (the path is only written for an error). */
static int check(const ProtobufCMessageDescriptor *desc, const uint8_t *p, size_t len,
                 const where *at, int depth, char *err, size_t errlen)
{
    unsigned counts[MAX_FIELDS] = { 0 };
    size_t i = 0;
    if (depth > MAX_DEPTH)
        return 0;
    while (i < len) {
        uint64_t tag, n;
        size_t k = varint(p + i, len - i, &tag);
        if (k == 0)
            return 0;
        i += k;
        switch (tag & 7) {
        case 0:
            if ((k = varint(p + i, len - i, &n)) == 0)
                return 0;
            i += k;
            continue;
        case 1:
            i += 8;
            continue;
        case 5:
            i += 4;
            continue;
        case 2:
            break;
        default:
            return 0; /* groups: protobuf-c's business */
        }
        if ((k = varint(p + i, len - i, &n)) == 0 || n > len - i - k)
            return 0;
        i += k;
        const uint8_t *v = p + i;
        i += n;
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3));
        if (!f || (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE))
            continue;
        unsigned idx = (unsigned)(f - desc->fields);
        where here = { .up = at, .f = f, .nth = idx < MAX_FIELDS ? counts[idx]++ : 0 };
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
            int rc = check(f->descriptor, v, (size_t)n, &here, depth + 1, err, errlen);
            if (rc != 0)
                return rc;
            continue;
        }
        size_t bad = 0;
        bool nul = memchr(v, 0, (size_t)n) != NULL;
        if (nul || !utf8_valid((const char *)v, (size_t)n, &bad)) {
            char path[512];
            path_of(&here, path, sizeof(path));
            if (nul)
                snprintf(err, errlen, "%s: contains a NUL byte", path);
            else
                snprintf(err, errlen, "%s: not valid UTF-8 (at byte %zu)", path, bad);
            return TALLY_EINVAL;
        }
    }
    return 0;
}

int pbcheck_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len,
                    char *err, size_t errlen)
{
    return check(desc, data, len, NULL, 0, err, errlen);
}
