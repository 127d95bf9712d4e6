/* tally_table: tables laid out for a width (see tally_table.h). */
#include "tally_table.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

tbl *tbl_new(int flex)
{
    tbl *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->flex = flex;
    tx_init(&t->arena, TBL_TEXT_LIMIT);
    return t;
}

void tbl_free(tbl *t)
{
    if (!t)
        return;
    tx_release(&t->arena);
    free(t);
}

void tbl_add_col(tbl *t, const char *head, bool right, int drop, int maxw, bool bar)
{
    if (t->ncols < TBL_COLS)
        t->col[t->ncols++] = (tbl_col){ head, right, drop, maxw, bar };
}

bool tbl_row(tbl *t)
{
    if (t->nrows >= TBL_ROWS)
        return false;
    t->nrows++;
    return true;
}

void tbl_set(tbl *t, int col, const char *fmt, ...)
{
    va_list ap;
    size_t at = t->arena.len;
    if (col < 0 || col >= t->ncols || t->nrows == 0)
        return;
    va_start(ap, fmt);
    tx_vprintf(&t->arena, fmt, ap);
    va_end(ap);
    tx_putc(&t->arena, '\0');
    if (!t->arena.full)
        t->off[t->nrows - 1][col] = at + 1;
}

/* The text of a cell; row -1 is the header. */
static const char *tbl_cell(const tbl *t, int row, int col)
{
    size_t off;
    if (row < 0)
        return t->col[col].head;
    off = t->off[row][col];
    return off && t->arena.s ? t->arena.s + off - 1 : "";
}

/* Appends a share bar of frac (0..1) that is cols columns long at most; a share above zero
 * always shows. */
static void put_bar(tx_buf *b, double frac, int cols, bool ascii)
{
    static const char *const eighths[] = { "",       "\u258F", "\u258E", "\u258D",
                                           "\u258C", "\u258B", "\u258A", "\u2589" };
    long units;
    if (!(frac > 0) || cols <= 0)
        return;
    if (frac > 1)
        frac = 1;
    units = lround(frac * cols * (ascii ? 1 : 8));
    if (units == 0)
        units = 1; /* a non-zero share never looks like zero */
    if (ascii) {
        tx_repeat(b, "#", (int)units);
        return;
    }
    tx_repeat(b, "\u2588", (int)(units / 8));
    tx_puts(b, eighths[units % 8]);
}

void tbl_emit(const tbl *t, int width, int indent, bool ascii, tx_buf *out)
{
    bool on[TBL_COLS];
    int w[TBL_COLS] = { 0 }, flex_natural = 0, flex_min, used, active, barw = 0;
    int bar = -1;
    tx_buf line;
    for (int c = 0; c < t->ncols; c++) {
        on[c] = true;
        if (t->col[c].bar) {
            bar = c;
            continue;
        }
        for (int r = -1; r < t->nrows; r++) {
            int cw = tx_width(tbl_cell(t, r, c));
            if (cw > w[c])
                w[c] = cw;
        }
        if (t->col[c].maxw && w[c] > t->col[c].maxw)
            w[c] = t->col[c].maxw;
    }
    flex_natural = w[t->flex];
    flex_min = flex_natural < 10 ? flex_natural : 10;
    for (;;) {
        int worst = -1;
        used = indent;
        active = 0;
        for (int c = 0; c < t->ncols; c++) {
            if (!on[c])
                continue;
            active++;
            if (c == bar)
                used += 4; /* the shortest useful bar */
            else if (c != t->flex)
                used += w[c];
        }
        used += 2 * (active - 1);
        if (used + flex_min <= width)
            break;
        for (int c = 0; c < t->ncols; c++)
            if (on[c] && t->col[c].drop > 0 && (worst < 0 || t->col[c].drop > t->col[worst].drop))
                worst = c;
        if (worst < 0)
            break;
        on[worst] = false;
    }
    if (bar >= 0 && on[bar])
        used -= 4;
    w[t->flex] = width - used - (bar >= 0 && on[bar] ? 4 : 0);
    if (w[t->flex] > flex_natural)
        w[t->flex] = flex_natural;
    if (w[t->flex] < 1)
        w[t->flex] = 1;
    if (bar >= 0 && on[bar]) {
        barw = width - used - w[t->flex];
        if (t->col[bar].maxw && barw > t->col[bar].maxw)
            barw = t->col[bar].maxw;
    }
    tx_init(&line, TBL_TEXT_LIMIT);
    for (int r = -1; r < t->nrows; r++) {
        bool first = true;
        tx_reset(&line);
        tx_repeat(&line, " ", indent);
        for (int c = 0; c < t->ncols; c++) {
            if (!on[c])
                continue;
            if (!first)
                tx_puts(&line, "  ");
            first = false;
            if (c == bar) {
                if (r >= 0)
                    put_bar(&line, t->frac[r], barw, ascii);
                continue;
            }
            tx_cell(&line, tbl_cell(t, r, c), w[c], t->col[c].right, true, ascii);
        }
        tx_puts(out, line.s ? line.s : "");
        tx_putc(out, '\n');
    }
    tx_release(&line);
}
