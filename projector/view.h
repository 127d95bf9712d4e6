/*
 * view: tally.lua (the read model's functions) as one library whose names carry a hash of the
 * source: library tally_<h>, functions tally_apply_<h>, tally_rebuild_begin_<h>, ... So replicas
 * of two builds never replace each other's functions during a rolling upgrade: each loads its
 * own (FUNCTION LOAD without REPLACE; "already exists" is success) and calls it, and a
 * generation of the read model can say which view built it (docs/keyspace.md `{t:T}:view`).
 */
#ifndef TALLY_VIEW_H
#define TALLY_VIEW_H

#include <stddef.h>

typedef struct proj_view {
    char lib[40];    /* tally_<h> */
    char suffix[16]; /* _<h> */
    char *lua;       /* the library's source with those names; owned */
} proj_view;

/* Fills v from the compiled-in tally.lua. 0, TALLY_ENOMEM, or TALLY_EINTERNAL (malformed). */
int proj_view_init(proj_view *v);

void proj_view_free(proj_view *v);

/* The versioned name of function base ("tally_apply") into buf. */
void proj_view_fn(const proj_view *v, const char *base, char *buf, size_t len);

#endif
