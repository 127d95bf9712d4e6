/*
 * tally_table: the tables of the dashboard page, laid out for a width.
 *
 * A table has up to TBL_COLS columns and TBL_ROWS rows of text cells (one column may instead be
 * a share bar drawn from a fraction). Laid out for a width, it gives each column the width of
 * its widest cell (or its maxw), then, while the table does not fit, drops the column with the
 * highest `drop`; the `flex` column takes what is left, up to its widest cell, and its cells
 * are cut with an ellipsis; a bar column takes the rest, up to its maxw. Cells are cut or
 * padded to their column with tx_cell, so text from a server cannot carry control codes.
 */
#ifndef TALLY_CLI_TABLE_H
#define TALLY_CLI_TABLE_H

#include "tally_text.h"

#include <stdbool.h>
#include <stddef.h>

#define TBL_COLS       8
#define TBL_ROWS       500        /* rows beyond this are left out (tbl_row says so) */
#define TBL_TEXT_LIMIT (4u << 20) /* all cell text of one table */

typedef struct tbl_col {
    const char *head; /* borrowed */
    bool right;       /* right-aligned (numbers) */
    int drop;         /* 0 = always shown; on a narrow page the highest is dropped first */
    int maxw;         /* cells are cut to this many columns; 0 = no limit */
    bool bar;         /* a share bar drawn from frac, as wide as the page allows (up to maxw) */
} tbl_col;

typedef struct tbl {
    int ncols, flex; /* flex: the column that takes the remaining width and is cut first */
    tbl_col col[TBL_COLS];
    int nrows;
    size_t off[TBL_ROWS][TBL_COLS]; /* cell text: offsets into arena, + 1 (0 = empty) */
    double frac[TBL_ROWS];          /* the bar column's value per row, 0..1 */
    tx_buf arena;
} tbl;

/* A table whose column flex is the flexible one; free with tbl_free. NULL when out of memory. */
tbl *tbl_new(int flex);
/* Accepts NULL. */
void tbl_free(tbl *t);

/* Adds a column (ignored past TBL_COLS); head is borrowed until tbl_free. */
void tbl_add_col(tbl *t, const char *head, bool right, int drop, int maxw, bool bar);

/* Starts a row; false when the table is full (then the row is not shown: set nothing). */
bool tbl_row(tbl *t);

/* Sets a cell of the row started last. */
void tbl_set(tbl *t, int col, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * Appends the header line and one line per row to out, each indented by indent spaces and
 * ending in '\n', laid out for width columns (see the top of this file). A line can still be
 * wider than width when even the narrowest layout does not fit; the caller cuts it.
 */
void tbl_emit(const tbl *t, int width, int indent, bool ascii, tx_buf *out);

#endif
