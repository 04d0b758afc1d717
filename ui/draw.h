/* draw: small curses helpers shared by the views: strings cropped to a
 * width in terminal columns, loss shades and colours (with a NO_COLOR
 * fallback to an ASCII ramp), and plots in Unicode block and braille
 * characters (with ASCII fallbacks when the locale is not UTF-8).
 *
 * Every helper draws into stdscr at (y, x) and never past x + w, so views
 * can compute a layout from LINES/COLS each frame and call these blindly. */
#ifndef A3_UI_DRAW_H
#define A3_UI_DRAW_H

#include "state.h"

#define UI_MIN_COLS 72 /* below this the dispatcher shows only a message */
#define UI_MIN_ROWS 20
#define UI_HEADER_ROWS 4
#define UI_LOSS_LEVELS 10
#define UI_TICK_MS 200 /* getch timeout: how often the loop checks for signals */

/* Colour pairs (used only when ui_state.color). */
enum {
    UI_PAIR_LOSS = 1, /* .. UI_PAIR_LOSS + 9: loss levels */
    UI_PAIR_TITLE = UI_PAIR_LOSS + UI_LOSS_LEVELS,
    UI_PAIR_ERROR,
    UI_PAIR_GOOD,
    UI_PAIR_CUR,
    UI_PAIR_OPT,
    UI_PAIR_DIM,
    UI_PAIR_COUNT
};

/* Set up colours unless NO_COLOR is set (non-empty) or the terminal has
 * none; sets s->color. */
void ui_colors_init(ui_state *s);
/* Attribute for a role: colour when s->color, else a plain attribute
 * (bold, reverse, dim) so NO_COLOR still reads. */
int ui_attr(const ui_state *s, int pair);

/* Text, cropped to w columns (UTF-8 aware). Returns columns written. */
int ui_put(int y, int x, int w, const char *text);
int ui_putf(int y, int x, int w, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Terminal columns of a UTF-8 string. */
int ui_cols(const char *text);
/* text shortened to at most w columns by cutting its middle ("…", or "~"
 * without UTF-8): names give way so that markers and numbers stay. */
char *ui_shorten(const ui_state *s, char *buf, size_t n, const char *text, int w);
/* The first of n alternatives (longest first) that fits w columns, else
 * the last. */
const char *ui_fit(int w, int n, const char *const *alts);
/* Word-wrapped text in rows y .. y + max_rows - 1 from column x, w wide;
 * returns the rows used (a word longer than w is cut). */
int ui_wrap(int y, int x, int w, int max_rows, const char *text);
/* Spaces from x to x + w (clears under an overlay). */
void ui_blank(int y, int x, int w);
/* A horizontal rule (─ or -). */
void ui_rule(const ui_state *s, int y, int x, int w);

/* Loss level 0..9 of a relative loss (thresholds in draw.c, logarithmic:
 * 0 below 0.1%, 9 at 70% and above). */
int ui_loss_level(double rel);
/* The level's ASCII shade, from " .:-=+*#%@". */
char ui_shade_char(int level);
/* A bar of w columns, frac of it filled, shaded by loss level: a
 * coloured block with colours, else the ASCII shade of the level. */
void ui_bar(const ui_state *s, int y, int x, int w, double frac, int level);

/* One-row sparkline of n = w values scaled to [0, vmax]. */
void ui_spark(const ui_state *s, int y, int x, int w, const double *v, double vmax);
/* Line plot of n = 2 * w values (braille: 2 x 4 dots a cell; ASCII: one
 * mark a column) in a w x h box, y from 0 (bottom) to vmax (top). */
int ui_plot(const ui_state *s, int y, int x, int w, int h, const double *v, double vmax);
/* Vertical bars of n = w values in a w x h box (eighths with blocks),
 * heights already scaled to [0, 1]. */
void ui_vbars(const ui_state *s, int y, int x, int w, int h, const double *v);

/* Glyphs with ASCII fallbacks. */
const char *ui_glyph_cur(const ui_state *s); /* ▲ or ^ */
const char *ui_glyph_opt(const ui_state *s); /* ◆ or o */

#endif
