/*
 * view: the versioned tally.lua (view.h). Every `register_function('<name>'` of the source is
 * renamed `<name>_<h>` and the library `tally_<h>`, h = FNV-1a of the source.
 */
#include "view.h"

#include "embedded.h"
#include "err.h"
#include "hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* tally.lua, compiled in (cmake/EmbedFiles.cmake). */
extern const embedded_file projector_lua[];

#define LUA_HEAD "#!lua name=tally\n"
#define LUA_REG  "redis.register_function('"

int proj_view_init(proj_view *v)
{
    const char *src = projector_lua[0].data;
    size_t n = strlen(src), regs = 0;
    memset(v, 0, sizeof(*v));
    if (strncmp(src, LUA_HEAD, strlen(LUA_HEAD)) != 0)
        return TALLY_EINTERNAL;
    for (const char *at = strstr(src, LUA_REG); at; at = strstr(at + 1, LUA_REG))
        regs++;
    if (!regs)
        return TALLY_EINTERNAL;
    unsigned h = (unsigned)hash_fnv1a(src, n, 0);
    snprintf(v->lib, sizeof(v->lib), "tally_%08x", h);
    snprintf(v->suffix, sizeof(v->suffix), "_%08x", h);
    size_t cap = n + strlen(v->lib) + regs * strlen(v->suffix) + 32;
    char *out = malloc(cap);
    if (!out)
        return TALLY_ENOMEM;
    size_t len = (size_t)snprintf(out, cap, "#!lua name=%s\n", v->lib);
    const char *from = src + strlen(LUA_HEAD);
    for (const char *at = strstr(from, LUA_REG); at; at = strstr(from, LUA_REG)) {
        const char *name = at + strlen(LUA_REG), *end = strchr(name, '\'');
        if (!end) {
            free(out);
            return TALLY_EINTERNAL;
        }
        len += (size_t)snprintf(out + len, cap - len, "%.*s%s", (int)(end - from), from, v->suffix);
        from = end;
    }
    snprintf(out + len, cap - len, "%s", from);
    v->lua = out;
    return 0;
}

void proj_view_free(proj_view *v)
{
    free(v->lua);
    v->lua = NULL;
}

void proj_view_fn(const proj_view *v, const char *base, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s", base, v->suffix);
}
