/*
 * tally_render: the dashboard page (see tally_render.h).
 *
 * The page is built line by line: every line goes through emit(), which cuts it to the page
 * width, so the width invariant holds whatever a section does. Sections lay themselves out with
 * three helpers that degrade on narrow pages: flows (figures that wrap onto more lines), tables
 * (tally_table.h: they drop their least useful columns, then cut their flexible one) and
 * left/right lines (which stack when both halves do not fit).
 */
#include "tally_render.h"

#include "tally_table.h"
#include "tally_text.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_LIMIT (4u << 20) /* the largest page; the biggest reply renders in far less */
#define INDENT     2

typedef Tally__V1__GetDashboardReply Reply;

typedef struct page {
    tx_buf out;
    int width;
    bool ascii;
    int64_t extra_ms; /* time since the server built the reply, >= 0 */
    /* the current flow (see flow_*) */
    tx_buf flow;
    int flow_indent, flow_lines;
    const char *flow_sep;
    char flow_mark; /* when not 0, replaces the first space of the flow's first line */
} page;

static const char *str(const char *s)
{
    return s ? s : "";
}

/* a + b, held at the int64 limits: figures come from a server and are not trusted to be sane */
static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return a > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* Appends s as one line of the page, cut to the width, without trailing spaces. */
static void emit(page *p, const char *s)
{
    size_t start = p->out.len;
    tx_cell(&p->out, s, p->width, false, false, p->ascii);
    while (p->out.len > start && p->out.s[p->out.len - 1] == ' ')
        p->out.len--;
    if (p->out.s)
        p->out.s[p->out.len] = '\0';
    tx_putc(&p->out, '\n');
}

static void emitf(page *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emitf(page *p, const char *fmt, ...)
{
    tx_buf line;
    va_list ap;
    tx_init(&line, PAGE_LIMIT);
    va_start(ap, fmt);
    tx_vprintf(&line, fmt, ap);
    va_end(ap);
    emit(p, line.s ? line.s : "");
    tx_release(&line);
}

/* left and right on one line, right-aligned, when they fit; otherwise one under the other. */
static void emit_lr(page *p, const char *left, const char *right)
{
    int lw = tx_width(left), rw = tx_width(right);
    if (lw + 2 + rw <= p->width) {
        emitf(p, "%s%*s%s", left, p->width - lw - rw, "", right);
    } else {
        emit(p, left);
        emitf(p, "%*s%s", INDENT, "", right);
    }
}

static void rule(page *p)
{
    tx_buf line;
    tx_init(&line, PAGE_LIMIT);
    tx_repeat(&line, p->ascii ? "-" : "\u2500", p->width);
    emit(p, line.s ? line.s : "");
    tx_release(&line);
}

static void heading(page *p, const char *title, const char *detail)
{
    emit(p, "");
    if (detail && detail[0])
        emitf(p, "%s  %s", title, detail);
    else
        emit(p, title);
}

/* ---------------------------------------------------------------------------------------------
 * Flows: items joined by a separator, wrapped onto new lines (indented) at the page width. */

static void flow_begin(page *p, int indent, const char *sep)
{
    tx_reset(&p->flow);
    p->flow_indent = indent;
    p->flow_sep = sep;
    p->flow_lines = 0;
    p->flow_mark = 0;
}

static void flow_end(page *p)
{
    if (p->flow.len > (size_t)p->flow_indent) {
        emit(p, p->flow.s);
        p->flow_lines++;
    }
    tx_reset(&p->flow);
}

static void flow_item(page *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void flow_item(page *p, const char *fmt, ...)
{
    tx_buf item;
    va_list ap;
    int used;
    tx_init(&item, PAGE_LIMIT);
    va_start(ap, fmt);
    tx_vprintf(&item, fmt, ap);
    va_end(ap);
    if (!item.s)
        goto out;
    used = p->flow.s ? tx_width(p->flow.s) : 0;
    if (used > p->flow_indent && used + tx_width(p->flow_sep) + tx_width(item.s) > p->width) {
        flow_end(p);
        used = 0;
    }
    if (used == 0 && p->flow_mark && p->flow_lines == 0 && p->flow_indent > 0) {
        tx_putc(&p->flow, p->flow_mark);
        tx_repeat(&p->flow, " ", p->flow_indent - 1);
    } else if (used == 0) {
        tx_repeat(&p->flow, " ", p->flow_indent);
    } else if (used > p->flow_indent)
        tx_puts(&p->flow, p->flow_sep);
    tx_puts(&p->flow, item.s);
out:
    tx_release(&item);
}

/* Appends text word by word to the current flow (separator " "), so long text wraps. */
static void flow_words(page *p, const char *text)
{
    const char *s = text;
    while (*s) {
        size_t n;
        while (*s == ' ')
            s++;
        n = strcspn(s, " ");
        if (n)
            flow_item(p, "%.*s", (int)n, s);
        s += n;
    }
}

/* Appends table t as lines of the page. */
static void table(page *p, const tbl *t)
{
    tx_buf lines;
    tx_init(&lines, PAGE_LIMIT);
    tbl_emit(t, p->width, INDENT, p->ascii, &lines);
    for (const char *l = lines.s; l && *l;) {
        size_t n = strcspn(l, "\n");
        emitf(p, "%.*s", (int)n, l);
        l += n + (l[n] == '\n');
    }
    tx_release(&lines);
}

/* ---------------------------------------------------------------------------------------------
 * Names of things */

static const char *priority_name(int p)
{
    static const char *const names[] = { "-", "low", "medium", "high", "urgent" };
    return p >= 0 && p <= 4 ? names[p] : "?";
}

static const char *status_name(int s)
{
    static const char *const names[] = { "-", "open", "in progress", "resolved", "closed" };
    return s >= 0 && s <= 4 ? names[s] : "?";
}

/* "Name (id)", or the id alone when the name is empty or the same. */
static void name_and_id(char *out, size_t outlen, const char *name, const char *id)
{
    name = str(name);
    id = str(id);
    if (name[0] && strcmp(name, id) != 0)
        snprintf(out, outlen, "%s (%s)", name, id);
    else
        snprintf(out, outlen, "%s", id[0] ? id : "?");
}

static const char *range_text(const Tally__V1__DateRange *r, char *out, size_t outlen)
{
    if (!r || !str(r->from_day)[0])
        snprintf(out, outlen, "the last 30 days");
    else
        snprintf(out, outlen, "%s to %s", r->from_day, str(r->to_day));
    return out;
}

/* An age in ms as "N s ago" under two minutes, otherwise as a duration ("2m 5s ago"). */
static const char *age_text(int64_t ms, char *out, size_t outlen)
{
    char d[32];
    if (ms < 120000)
        snprintf(out, outlen, "%" PRId64 " s ago", ms / 1000);
    else
        snprintf(out, outlen, "%s ago", tx_duration((double)ms / 1000.0, d, sizeof(d)));
    return out;
}

/* A banner under the header: the word marked '!' in the margin, then text that wraps. */
static void flag(page *p, const char *word, const char *text)
{
    flow_begin(p, INDENT, " ");
    p->flow_mark = '!';
    flow_item(p, "%s", word);
    flow_words(p, text);
    flow_end(p);
}

/* ---------------------------------------------------------------------------------------------
 * Sections */

/*
 * "last updated" is the age of the completeness watermark (every event committed before it is
 * in the figures), never of the newest event alone: a quiet tenant is not stale, and a reply
 * without a watermark says "not complete" rather than "0 s ago".
 */
static void header(page *p, const Reply *r, const render_opts *o)
{
    const Tally__V1__Freshness *f = r ? r->freshness : NULL;
    const Tally__V1__Overview *ov = r ? r->overview : NULL;
    char left[160], right[160], d[32], n[32];
    size_t len;
    snprintf(left, sizeof(left), "TALLY  %s", o->tenant && o->tenant[0] ? o->tenant : "?");
    if (!r)
        snprintf(right, sizeof(right), "no answer yet");
    else if (!f)
        snprintf(right, sizeof(right), "freshness unknown");
    else if (f->complete_until_ms == 0)
        snprintf(right, sizeof(right), "not complete");
    else
        snprintf(right, sizeof(right), "last updated %s",
                 age_text(sat_add(f->complete_lag_ms, p->extra_ms), d, sizeof(d)));
    len = strlen(right);
    if (f && f->parked_complaints && len < sizeof(right))
        len += (size_t)snprintf(right + len, sizeof(right) - len, ", %s parked",
                                tx_count(f->parked_complaints, n, sizeof(n)));
    if (f && f->rebuilding && len < sizeof(right))
        len += (size_t)snprintf(right + len, sizeof(right) - len, ", rebuilding");
    if (f && f->rebuilding && f->rebuild && f->rebuild->events_total > 0 && len < sizeof(right)) {
        int64_t pct = f->rebuild->events_done * 100 / f->rebuild->events_total;
        snprintf(right + len, sizeof(right) - len, " %" PRId64 "%%", pct > 100 ? 100 : pct);
    }
    emit_lr(p, left, right);

    flow_begin(p, 0, " \xc2\xb7 ");
    if (p->ascii)
        p->flow_sep = " | ";
    if (ov && str(ov->today)[0])
        flow_item(p, "today %s (%s)", ov->today, str(ov->time_zone)[0] ? ov->time_zone : "?");
    if (r && r->volume_trend)
        flow_item(p, "range %s", range_text(r->volume_trend->range, left, sizeof(left)));
    if (f && f->as_of_ms == 0)
        flow_item(p, "no events applied yet");
    else if (f && f->complete_until_ms == 0)
        flow_item(p, "newest event %s", age_text(sat_add(f->lag_ms, p->extra_ms), d, sizeof(d)));
    if (f && (f->apply_lag_ms || f->events_applied)) {
        if (f->apply_lag_ms < 1000)
            flow_item(p, "apply lag %" PRId64 " ms", f->apply_lag_ms);
        else if (f->apply_lag_ms < 60000)
            flow_item(p, "apply lag %.1f s", (double)f->apply_lag_ms / 1000.0);
        else
            flow_item(p, "apply lag %s",
                      tx_duration((double)f->apply_lag_ms / 1000.0, d, sizeof(d)));
    }
    if (f && f->as_of_ms)
        flow_item(p, "%s events applied", tx_count(f->events_applied, n, sizeof(n)));
    flow_end(p);

    if (f && f->complete_until_ms == 0)
        flag(p, "NOT COMPLETE:",
             "the read model does not say up to when it holds every event (no completeness "
             "watermark yet); the figures may miss events.");
    if (f && f->parked_complaints) {
        flow_begin(p, INDENT, " ");
        p->flow_mark = '!';
        flow_item(p, "PARKED:");
        flow_item(p, "%s", tx_count(f->parked_complaints, n, sizeof(n)));
        flow_words(p, f->parked_complaints == 1
                          ? "complaint is held back (an event of it failed to apply); its figures "
                            "are frozen until an operator replays it."
                          : "complaints are held back (an event of each failed to apply); their "
                            "figures are frozen until an operator replays them.");
        flow_end(p);
    }
    if (f && f->stale) {
        flow_begin(p, INDENT, " ");
        p->flow_mark = '!';
        flow_item(p, "STALE:");
        flow_words(p, "the figures may not include your change yet");
        if (f->token_applied_version)
            flow_words(p, "(the read model has its complaint at version");
        if (f->token_applied_version)
            flow_item(p, "%" PRId64 ")", f->token_applied_version);
        flow_end(p);
    }
    if (f && f->rebuilding && f->rebuild) {
        const Tally__V1__RebuildProgress *rb = f->rebuild;
        flow_begin(p, INDENT, " ");
        p->flow_mark = '!';
        flow_item(p, "REBUILDING:");
        flow_words(p, "a new generation of this tenant's read model is being built from the "
                      "event log;");
        flow_item(p, "%s", tx_count(rb->events_done, n, sizeof(n)));
        flow_words(p, "of");
        flow_item(p, "%s", tx_count(rb->events_total, n, sizeof(n)));
        if (rb->eta_ms >= 0) {
            flow_words(p, "events read");
            flow_item(p, "(about %s left);",
                      tx_duration((double)((rb->eta_ms + 999) / 1000), d, sizeof(d)));
        } else {
            flow_words(p, "events read;");
        }
        flow_words(p, "meanwhile the figures are the current generation's, whole.");
        flow_end(p);
    } else if (f && f->rebuilding)
        flag(p, "REBUILDING:",
             "the read model is being rebuilt (a rebuild, or a repair after Redis lost data); "
             "until it ends the figures may be partial or from the previous generation.");
    if (o->error && o->error[0])
        flag(p, "ERROR:", o->error);
    rule(p);
}

static void overview(page *p, const Tally__V1__Overview *ov)
{
    const Tally__V1__StatusCounts *sc = ov ? ov->status_counts : NULL;
    const char *sep = p->ascii ? " | " : " \xc2\xb7 ";
    char n[32], d[32];
    heading(p, "NOW", NULL);
    if (!ov) {
        emitf(p, "%*sno overview in the reply", INDENT, "");
        return;
    }
    flow_begin(p, INDENT, sep);
    if (sc) {
        flow_item(p, "open %s", tx_count(sc->open, n, sizeof(n)));
        flow_item(p, "in progress %s", tx_count(sc->in_progress, n, sizeof(n)));
        flow_item(p, "resolved %s", tx_count(sc->resolved, n, sizeof(n)));
        flow_item(p, "closed %s", tx_count(sc->closed, n, sizeof(n)));
    }
    flow_item(p, "backlog %s", tx_count(ov->backlog, n, sizeof(n)));
    flow_end(p);
    flow_begin(p, INDENT, sep);
    flow_item(p, "today: %s created", tx_count(ov->created_today, n, sizeof(n)));
    flow_item(p, "%s resolved", tx_count(ov->resolved_today, n, sizeof(n)));
    if (ov->resolved_today > 0 && ov->resolution_relative_error > 0)
        flow_item(p, "median resolution %s (%s%.0f%%)",
                  tx_duration(ov->median_resolution_seconds_today, d, sizeof(d)),
                  p->ascii ? "+-" : "\xc2\xb1", ov->resolution_relative_error * 100);
    else if (ov->resolved_today > 0)
        flow_item(p, "median resolution %s",
                  tx_duration(ov->median_resolution_seconds_today, d, sizeof(d)));
    else
        flow_item(p, "median resolution -");
    flow_end(p);
}

static const char *granularity_unit(int g)
{
    switch (g) {
    case TALLY__V1__GRANULARITY__GRANULARITY_WEEK:
        return "week";
    case TALLY__V1__GRANULARITY__GRANULARITY_MONTH:
        return "month";
    default:
        return "day";
    }
}

/* One sparkline row: label, marks (each the sum of k buckets), total. */
static void spark_row(page *p, const char *label, int labelw, const int64_t *v, int marks,
                      int64_t max, const char *total)
{
    static const char *const blocks[] = { "\u2581", "\u2582", "\u2583", "\u2584",
                                          "\u2585", "\u2586", "\u2587", "\u2588" };
    static const char ascii_levels[] = "_.:-=+*#";
    tx_buf line;
    tx_init(&line, PAGE_LIMIT);
    tx_repeat(&line, " ", INDENT);
    tx_cell(&line, label, labelw, false, true, p->ascii);
    tx_putc(&line, ' ');
    for (int i = 0; i < marks; i++) {
        /* 0 is the baseline; any other count is at least one level above it */
        int level = v[i] <= 0 || max <= 0 ? 0 : (int)ceil((double)v[i] * 7.0 / (double)max);
        if (level > 7)
            level = 7;
        if (p->ascii)
            tx_putc(&line, ascii_levels[level]);
        else
            tx_puts(&line, blocks[level]);
    }
    tx_printf(&line, "  %s", total);
    emit(p, line.s ? line.s : "");
    tx_release(&line);
}

static void volume(page *p, const Tally__V1__VolumeTrend *vt)
{
    char detail[160], tc[48], tr[48], n[32], m[32];
    const char *unit;
    int64_t *created = NULL, *resolved = NULL, max = 0;
    int avail, k, marks, labelw = 8, totalw;
    size_t nb;
    if (!vt) {
        heading(p, "VOLUME", NULL);
        emitf(p, "%*sno volume trend in the reply", INDENT, "");
        return;
    }
    unit = granularity_unit(vt->granularity);
    nb = vt->n_buckets;
    snprintf(tc, sizeof(tc), "%s total", tx_count(vt->total_created, n, sizeof(n)));
    snprintf(tr, sizeof(tr), "%s total", tx_count(vt->total_resolved, m, sizeof(m)));
    totalw = tx_width(tc) > tx_width(tr) ? tx_width(tc) : tx_width(tr);
    /* room for the marks: indent, label, space, marks, two spaces, total */
    avail = p->width - INDENT - labelw - 1 - 2 - totalw;
    if (avail > 0 && nb > 0) {
        k = (int)((nb + (size_t)avail - 1) / (size_t)avail);
        marks = (int)((nb + (size_t)k - 1) / (size_t)k);
    } else {
        k = 1;
        marks = 0;
    }
    if (k > 1)
        snprintf(detail, sizeof(detail), "created and resolved per %s, %d %ss a mark", unit, k,
                 unit);
    else
        snprintf(detail, sizeof(detail), "created and resolved per %s", unit);
    heading(p, "VOLUME", detail);
    if (nb == 0) {
        emitf(p, "%*sno buckets in the reply", INDENT, "");
        return;
    }
    if (marks > 0) {
        created = calloc((size_t)marks, sizeof(*created));
        resolved = calloc((size_t)marks, sizeof(*resolved));
    }
    if (!created || !resolved) {
        /* too narrow for marks (or out of memory): the totals alone */
        emitf(p, "%*screated %s", INDENT, "", tc);
        emitf(p, "%*sresolved %s", INDENT, "", tr);
        goto out;
    }
    for (size_t i = 0; i < nb; i++) {
        const Tally__V1__VolumeBucket *b = vt->buckets[i];
        if (!b)
            continue;
        created[i / (size_t)k] = sat_add(created[i / (size_t)k], b->created);
        resolved[i / (size_t)k] = sat_add(resolved[i / (size_t)k], b->resolved);
    }
    for (int i = 0; i < marks; i++) {
        if (created[i] > max)
            max = created[i];
        if (resolved[i] > max)
            max = resolved[i];
    }
    spark_row(p, "created", labelw, created, marks, max, tc);
    spark_row(p, "resolved", labelw, resolved, marks, max, tr);
    {
        const char *first = vt->buckets[0] ? str(vt->buckets[0]->label) : "";
        const char *last = vt->buckets[nb - 1] ? str(vt->buckets[nb - 1]->label) : "";
        int fw = tx_width(first), lw = tx_width(last);
        if (k > 1)
            snprintf(detail, sizeof(detail), "peak %s a mark", tx_count(max, n, sizeof(n)));
        else
            snprintf(detail, sizeof(detail), "peak %s a %s", tx_count(max, n, sizeof(n)), unit);
        if (nb > 1 && fw + 2 + lw <= marks)
            emitf(p, "%*s%s%*s%s   %s", INDENT + labelw + 1, "", first, marks - fw - lw, "", last,
                  detail);
        else if (fw <= marks)
            emitf(p, "%*s%s   %s", INDENT + labelw + 1, "", first, detail);
        else
            emitf(p, "%*s%s", INDENT + labelw + 1, "", detail);
    }
out:
    free(created);
    free(resolved);
}

static void summary_flow(page *p, const Tally__V1__ResolutionSummary *s, double err)
{
    char n[32], d[32];
    flow_begin(p, INDENT, p->ascii ? " | " : " \xc2\xb7 ");
    flow_item(p, "%s resolved", tx_count(s->count, n, sizeof(n)));
    flow_item(p, "mean %s", tx_duration(s->mean_seconds, d, sizeof(d)));
    flow_item(p, "p50 %s", tx_duration(s->p50_seconds, d, sizeof(d)));
    flow_item(p, "p90 %s", tx_duration(s->p90_seconds, d, sizeof(d)));
    flow_item(p, "p99 %s", tx_duration(s->p99_seconds, d, sizeof(d)));
    if (err > 0)
        flow_item(p, "percentiles %s%.0f%%", p->ascii ? "+-" : "\xc2\xb1", err * 100);
    flow_end(p);
}

static void resolution(page *p, const Tally__V1__ResolutionStats *rs)
{
    char label[300], name[280], d[32], n[32];
    tbl *t;
    heading(p, "RESOLUTION TIMES", "from creation to resolved");
    if (!rs) {
        emitf(p, "%*sno resolution statistics in the reply", INDENT, "");
        return;
    }
    if (!rs->overall || rs->overall->count == 0) {
        emitf(p, "%*sno resolutions in the range", INDENT, "");
        return;
    }
    summary_flow(p, rs->overall, rs->percentile_relative_error);
    if (rs->n_groups == 0)
        return;
    t = tbl_new(0);
    if (!t)
        return;
    tbl_add_col(t, "group", false, 0, 0, false);
    tbl_add_col(t, "count", true, 1, 0, false);
    tbl_add_col(t, "mean", true, 4, 0, false);
    tbl_add_col(t, "p50", true, 0, 0, false);
    tbl_add_col(t, "p90", true, 2, 0, false);
    tbl_add_col(t, "p99", true, 3, 0, false);
    for (size_t i = 0; i < rs->n_groups; i++) {
        const Tally__V1__ResolutionGroup *g = rs->groups[i];
        const Tally__V1__ResolutionSummary *s = g ? g->summary : NULL;
        if (!g || !tbl_row(t))
            continue;
        name[0] = '\0';
        if (str(g->category_id)[0])
            name_and_id(name, sizeof(name), g->category_name, g->category_id);
        if (g->priority && name[0])
            snprintf(label, sizeof(label), "%s, %s", name, priority_name(g->priority));
        else if (g->priority)
            snprintf(label, sizeof(label), "%s", priority_name(g->priority));
        else
            snprintf(label, sizeof(label), "%s", name[0] ? name : "?");
        tbl_set(t, 0, "%s", label);
        if (!s)
            continue;
        tbl_set(t, 1, "%s", tx_count(s->count, n, sizeof(n)));
        tbl_set(t, 2, "%s", tx_duration(s->mean_seconds, d, sizeof(d)));
        tbl_set(t, 3, "%s", tx_duration(s->p50_seconds, d, sizeof(d)));
        tbl_set(t, 4, "%s", tx_duration(s->p90_seconds, d, sizeof(d)));
        tbl_set(t, 5, "%s", tx_duration(s->p99_seconds, d, sizeof(d)));
    }
    table(p, t);
    if (rs->n_groups > (size_t)t->nrows)
        emitf(p, "%*s... and %zu more groups", INDENT, "", rs->n_groups - (size_t)t->nrows);
    tbl_free(t);
}

static const char *sort_name(int s)
{
    switch (s) {
    case TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_MEAN_RESOLUTION:
        return "mean resolution";
    case TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_OPEN_ASSIGNED:
        return "open now";
    case TALLY__V1__AGENT_SORT_BY__AGENT_SORT_BY_AGENT_ID:
        return "id";
    default:
        return "resolved";
    }
}

static void agents(page *p, const Tally__V1__AgentPerformance *ap)
{
    char detail[128], label[300], d[32], n[32];
    tbl *t;
    if (!ap) {
        heading(p, "AGENTS", NULL);
        emitf(p, "%*sno agent figures in the reply", INDENT, "");
        return;
    }
    if ((int64_t)ap->n_agents < ap->total_agents)
        snprintf(detail, sizeof(detail), "top %zu of %d by %s%s", ap->n_agents, ap->total_agents,
                 sort_name(ap->sort_by), ap->ascending ? ", smallest first" : "");
    else
        snprintf(detail, sizeof(detail), "%zu by %s%s", ap->n_agents, sort_name(ap->sort_by),
                 ap->ascending ? ", smallest first" : "");
    heading(p, "AGENTS", detail);
    if (ap->n_agents == 0) {
        emitf(p, "%*sno agents yet", INDENT, "");
        return;
    }
    t = tbl_new(0);
    if (!t)
        return;
    tbl_add_col(t, "agent", false, 0, 0, false);
    tbl_add_col(t, "resolved", true, 0, 0, false);
    tbl_add_col(t, "mean resolution", true, 2, 0, false);
    tbl_add_col(t, "open now", true, 1, 0, false);
    for (size_t i = 0; i < ap->n_agents; i++) {
        const Tally__V1__AgentStats *a = ap->agents[i];
        if (!a || !tbl_row(t))
            continue;
        name_and_id(label, sizeof(label), a->agent_name, a->agent_id);
        tbl_set(t, 0, "%s", label);
        tbl_set(t, 1, "%s", tx_count(a->resolved, n, sizeof(n)));
        tbl_set(t, 2, "%s",
                a->resolved ? tx_duration(a->mean_resolution_seconds, d, sizeof(d)) : "-");
        tbl_set(t, 3, "%s", tx_count(a->open_assigned, n, sizeof(n)));
    }
    table(p, t);
    tbl_free(t);
}

static void categories(page *p, const Tally__V1__CategoryDistribution *cd)
{
    char detail[96], label[300], n[32];
    tbl *t;
    if (!cd) {
        heading(p, "CATEGORIES", NULL);
        emitf(p, "%*sno category distribution in the reply", INDENT, "");
        return;
    }
    snprintf(detail, sizeof(detail), "%s complaints created in the range",
             tx_count(cd->total, n, sizeof(n)));
    heading(p, "CATEGORIES", detail);
    if (cd->n_categories == 0) {
        emitf(p, "%*sno complaints in the range", INDENT, "");
        return;
    }
    t = tbl_new(0);
    if (!t)
        return;
    tbl_add_col(t, "category", false, 0, 0, false);
    tbl_add_col(t, "count", true, 1, 0, false);
    tbl_add_col(t, "share", true, 0, 0, false);
    tbl_add_col(t, "", false, 2, 40, true);
    for (size_t i = 0; i < cd->n_categories; i++) {
        const Tally__V1__CategoryShare *c = cd->categories[i];
        if (!c || !tbl_row(t))
            continue;
        if (c->is_other)
            snprintf(label, sizeof(label), "other (%d categories)", cd->other_category_count);
        else
            name_and_id(label, sizeof(label), c->category_name, c->category_id);
        tbl_set(t, 0, "%s", label);
        tbl_set(t, 1, "%s", tx_count(c->count, n, sizeof(n)));
        tbl_set(t, 2, "%.1f%%", c->share * 100);
        t->frac[t->nrows - 1] = c->share;
    }
    table(p, t);
    tbl_free(t);
}

static void oldest(page *p, const Tally__V1__Overview *ov)
{
    char detail[64], d[32], n[32];
    tbl *t;
    if (!ov)
        return;
    snprintf(detail, sizeof(detail), "%zu of the backlog of %s", ov->n_oldest_open,
             tx_count(ov->backlog, n, sizeof(n)));
    heading(p, "OLDEST OPEN", ov->n_oldest_open ? detail : NULL);
    if (ov->n_oldest_open == 0) {
        emitf(p, "%*snothing open", INDENT, "");
        return;
    }
    t = tbl_new(4);
    if (!t)
        return;
    tbl_add_col(t, "complaint", true, 0, 0, false);
    tbl_add_col(t, "age", true, 0, 0, false);
    tbl_add_col(t, "status", false, 2, 0, false);
    tbl_add_col(t, "priority", false, 1, 0, false);
    tbl_add_col(t, "category", false, 0, 0, false);
    tbl_add_col(t, "agent", false, 3, 24, false);
    for (size_t i = 0; i < ov->n_oldest_open; i++) {
        const Tally__V1__OpenComplaint *c = ov->oldest_open[i];
        if (!c || !tbl_row(t))
            continue;
        tbl_set(t, 0, "#%" PRId64, c->complaint_id);
        tbl_set(t, 1, "%s",
                tx_duration((double)c->age_seconds + (double)(p->extra_ms / 1000), d, sizeof(d)));
        tbl_set(t, 2, "%s", status_name(c->status));
        tbl_set(t, 3, "%s", priority_name(c->priority));
        tbl_set(t, 4, "%s", str(c->category_id));
        tbl_set(t, 5, "%s", str(c->assigned_agent_id)[0] ? c->assigned_agent_id : "unassigned");
    }
    table(p, t);
    tbl_free(t);
}

char *render_dashboard(const Reply *r, const render_opts *o)
{
    page p;
    char *s;
    memset(&p, 0, sizeof(p));
    tx_init(&p.out, PAGE_LIMIT);
    tx_init(&p.flow, PAGE_LIMIT);
    p.width = o->width < 1 ? 1 : o->width > RENDER_MAX_WIDTH ? RENDER_MAX_WIDTH : o->width;
    p.ascii = o->ascii;
    if (r && r->freshness && o->now_ms && r->freshness->server_time_ms &&
        (__builtin_sub_overflow(o->now_ms, r->freshness->server_time_ms, &p.extra_ms) ||
         p.extra_ms < 0))
        p.extra_ms = 0;
    header(&p, r, o);
    if (r) {
        overview(&p, r->overview);
        volume(&p, r->volume_trend);
        resolution(&p, r->resolution_stats);
        agents(&p, r->agent_performance);
        categories(&p, r->category_distribution);
        oldest(&p, r->overview);
    }
    if (o->footer && o->footer[0]) {
        emit(&p, "");
        emit(&p, o->footer);
    }
    tx_release(&p.flow);
    if (p.out.full) {
        tx_release(&p.out);
        return NULL;
    }
    s = tx_detach(&p.out);
    return s;
}
