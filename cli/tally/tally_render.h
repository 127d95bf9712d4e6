/*
 * tally_render: the terminal page of `tally dashboard`, as a pure function of a
 * GetDashboardReply, the client's clock and a width (no I/O, no terminal codes, no locale).
 *
 * The page has a header (tenant, today and time zone, up to when the answer is complete, and the
 * flags NOT COMPLETE, PARKED, STALE and REBUILDING), then one section per panel: now (status
 * counts, backlog, today), volume (a sparkline per series), resolution times, agents, categories
 * (share bars) and the oldest open complaints. It is laid out for RENDER_MAX_WIDTH columns and
 * degrades below that: tables drop their least useful columns and cut long names, flows of figures
 * wrap, and as a last resort every line is cut. Invariant: no line of the page is wider than
 * max(width, 1) terminal columns (as tx_width counts them), whatever the reply holds; every line
 * ends in '\n'.
 *
 * Absent panels and fields render as "no data" lines rather than failing, so a reply of an
 * empty tenant (or an empty reply) gives a sensible page.
 */
#ifndef TALLY_CLI_RENDER_H
#define TALLY_CLI_RENDER_H

#include "tally/v1/dashboard.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

#define RENDER_MAX_WIDTH 100

typedef struct render_opts {
    /* The tenant the page is about (the reply does not name it); borrowed. */
    const char *tenant;
    /*
     * The client's clock, Unix ms UTC. Ages and "last updated" are the server's figures plus
     * the time since the server built the reply (now_ms - freshness.server_time_ms, never
     * negative), so a page redrawn from an old reply keeps ageing. 0 = exactly the server's.
     */
    int64_t now_ms;
    /* Terminal columns; the page is at most RENDER_MAX_WIDTH wide. */
    int width;
    /* ASCII only: no sparkline blocks, bars, rules or ellipses from outside ASCII. */
    bool ascii;
    /* NULL, or a problem to show in a banner at the top (e.g. the last refresh failed, so the
     * page shows an older reply); borrowed. */
    const char *error;
    /* NULL, or a line to end the page with (e.g. how to quit); borrowed. */
    const char *footer;
} render_opts;

/*
 * The page for reply (NULL = no answer yet: the header and the error banner only). The caller
 * frees the result with free(); NULL when out of memory.
 */
char *render_dashboard(const Tally__V1__GetDashboardReply *reply, const render_opts *o);

#endif
