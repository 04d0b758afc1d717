/* draw: cropped text, shades, colours and plots (see draw.h). */
#include "draw.h"

#include <curses.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* ---- colours --------------------------------------------------------------- */

/* Loss levels from cool to hot: 256-colour ramp and an 8-colour fallback. */
static const short LOSS_256[UI_LOSS_LEVELS] = {-1, 22, 28, 64, 100, 142, 178, 208, 196, 163};
static const short LOSS_8[UI_LOSS_LEVELS] = {-1, COLOR_GREEN, COLOR_GREEN, COLOR_GREEN, COLOR_YELLOW,
                                             COLOR_YELLOW, COLOR_YELLOW, COLOR_RED, COLOR_RED, COLOR_MAGENTA};

void ui_colors_init(ui_state *s)
{
    const char *nc = getenv("NO_COLOR"); /* no-color.org: set and non-empty */
    s->color = 0;
    if ((nc && *nc) || !has_colors() || start_color() == ERR) return;
    use_default_colors();
    const short *ramp = COLORS >= 256 ? LOSS_256 : LOSS_8;
    for (int i = 0; i < UI_LOSS_LEVELS; i++) init_pair((short)(UI_PAIR_LOSS + i), ramp[i], -1);
    init_pair(UI_PAIR_TITLE, COLOR_BLACK, COLOR_CYAN);
    init_pair(UI_PAIR_ERROR, COLOR_RED, -1);
    init_pair(UI_PAIR_GOOD, COLOR_GREEN, -1);
    init_pair(UI_PAIR_CUR, COLOR_CYAN, -1);
    init_pair(UI_PAIR_OPT, COLOR_YELLOW, -1);
    init_pair(UI_PAIR_DIM, COLOR_BLUE, -1);
    s->color = 1;
}

int ui_attr(const ui_state *s, int pair)
{
    if (s->color) return (int)COLOR_PAIR(pair) | (pair == UI_PAIR_ERROR ? A_BOLD : 0);
    switch (pair) {
    case UI_PAIR_TITLE: return A_REVERSE;
    case UI_PAIR_ERROR: return A_BOLD;
    case UI_PAIR_CUR: return A_BOLD;
    case UI_PAIR_DIM: return A_DIM;
    default: return A_NORMAL;
    }
}

/* ---- text ------------------------------------------------------------------ */

/* Columns of the longest prefix of text that fits w columns (w < 0: all
 * of it), and that prefix's length in bytes (if fit is not NULL). An
 * invalid byte counts as one column. */
static int cols_of(const char *text, int w, size_t *fit)
{
    mbstate_t st;
    memset(&st, 0, sizeof st);
    size_t len = strlen(text), i = 0;
    int cols = 0;
    while (i < len) {
        wchar_t wc;
        size_t n = mbrtowc(&wc, text + i, len - i, &st);
        int cw = 1;
        if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
            memset(&st, 0, sizeof st);
            n = 1;
        } else if ((cw = wcwidth(wc)) < 0) cw = 1;
        if (w >= 0 && cols + cw > w) break;
        cols += cw, i += n;
    }
    if (fit) *fit = i;
    return cols;
}

int ui_put(int y, int x, int w, const char *text)
{
    if (w <= 0) return 0;
    size_t fit;
    int cols = cols_of(text, w, &fit);
    if (fit > 0) mvaddnstr(y, x, text, (int)fit);
    return cols;
}

int ui_putf(int y, int x, int w, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return ui_put(y, x, w, buf);
}

int ui_cols(const char *text) { return cols_of(text, -1, NULL); }

char *ui_shorten(const ui_state *s, char *buf, size_t n, const char *text, int w)
{
    const char *dots = s->utf8 ? "…" : "~";
    int total = ui_cols(text);
    if (total <= w || w < 3) {
        size_t fit;
        cols_of(text, w < 0 ? 0 : w, &fit);
        snprintf(buf, n, "%.*s", (int)(total <= w ? strlen(text) : fit), text);
        return buf;
    }
    int head = (w - 1) / 2, tail = w - 1 - head; /* the end of a name says most: file extensions, "-a3" */
    size_t hb, skip;
    cols_of(text, head, &hb);
    cols_of(text, total - tail, &skip); /* bytes to drop to leave `tail` columns */
    while (text[skip] && ui_cols(text + skip) > tail) skip++;
    snprintf(buf, n, "%.*s%s%s", (int)hb, text, dots, text + skip);
    return buf;
}

const char *ui_fit(int w, int n, const char *const *alts)
{
    for (int i = 0; i < n; i++)
        if (ui_cols(alts[i]) <= w) return alts[i];
    return alts[n - 1];
}

int ui_wrap(int y, int x, int w, int max_rows, const char *text)
{
    int row = 0;
    const char *p = text;
    while (*p && row < max_rows && w > 0) {
        size_t fit;
        cols_of(p, w, &fit);
        size_t take = fit;
        if (p[fit] && p[fit] != ' ' && p[fit] != '\n') { /* break at the last space that fits */
            size_t sp = fit;
            while (sp > 0 && p[sp - 1] != ' ') sp--;
            if (sp > 0) take = sp;
        }
        const char *nl = memchr(p, '\n', take);
        if (nl) take = (size_t)(nl - p);
        mvaddnstr(y + row, x, p, (int)take);
        p += take;
        while (*p == ' ' || *p == '\n') p++;
        row++;
    }
    return row;
}

void ui_blank(int y, int x, int w)
{
    if (w > 0) mvhline(y, x, ' ', w);
}

void ui_rule(const ui_state *s, int y, int x, int w)
{
    for (int i = 0; i < w; i++) mvaddstr(y, x + i, s->utf8 ? "─" : "-");
}

/* ---- loss shades ------------------------------------------------------------ */

/* Upper bounds of levels 0..8 (level 9 is everything above): logarithmic,
 * because the losses that matter span 0.1% to 100%. */
static const double LEVEL_TOP[UI_LOSS_LEVELS - 1] = {0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.7};
static const char SHADES[UI_LOSS_LEVELS + 1] = " .:-=+*#%@";

int ui_loss_level(double rel)
{
    if (!(rel >= 0)) return 0; /* NaN: unknown */
    for (int i = 0; i < UI_LOSS_LEVELS - 1; i++)
        if (rel < LEVEL_TOP[i]) return i;
    return UI_LOSS_LEVELS - 1;
}

char ui_shade_char(int level)
{
    return SHADES[level < 0 ? 0 : level >= UI_LOSS_LEVELS ? UI_LOSS_LEVELS - 1 : level];
}

/* Eighths of a cell, left-aligned, for a bar's fractional end. */
static const char *const HBLOCK[8] = {" ", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};

void ui_bar(const ui_state *s, int y, int x, int w, double frac, int level)
{
    if (w <= 0) return;
    if (!(frac >= 0)) frac = 0;
    if (frac > 1) frac = 1;
    int eighths = (int)lround(frac * w * 8), full = eighths / 8, part = eighths % 8;
    if (!s->color) { /* the shade carries the loss; '.' keeps the length visible at level 0 */
        char c = level > 0 ? ui_shade_char(level) : '.';
        for (int i = 0; i < w; i++) mvaddch(y, x + i, (chtype)(i < full + (part >= 4) ? c : ' '));
        return;
    }
    attron(ui_attr(s, UI_PAIR_LOSS + level));
    for (int i = 0; i < w; i++) {
        const char *g = i < full ? (s->utf8 ? "█" : "#") : i == full && part ? (s->utf8 ? HBLOCK[part] : "#") : " ";
        mvaddstr(y, x + i, g);
    }
    attroff(ui_attr(s, UI_PAIR_LOSS + level));
}

/* ---- plots ------------------------------------------------------------------- */

static const char *const SPARK[8] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
static const char SPARK_ASCII[9] = "_.:-=+*#";

void ui_spark(const ui_state *s, int y, int x, int w, const double *v, double vmax)
{
    for (int i = 0; i < w; i++) {
        double t = vmax > 0 ? v[i] / vmax : 0;
        int k = (int)lround((t < 0 ? 0 : t > 1 ? 1 : t) * 7);
        if (s->utf8) mvaddstr(y, x + i, SPARK[k]);
        else mvaddch(y, x + i, (chtype)SPARK_ASCII[k]);
    }
}

/* UTF-8 of a code point below 0x10000 (braille and blocks need 3 bytes). */
static void utf8_of(unsigned cp, char out[4])
{
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    out[3] = 0;
}

/* Dot row (0 = top) of a value in a box of `rows` dot rows. */
static int dot_row(double v, double vmax, int rows)
{
    double t = vmax > 0 ? v / vmax : 0;
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    return (int)lround((1 - t) * (rows - 1));
}

/* Braille bit of the dot at (dx 0..1, dy 0..3) within a cell. */
static unsigned braille_bit(int dx, int dy)
{
    static const unsigned bits[2][4] = {{0x01, 0x02, 0x04, 0x40}, {0x08, 0x10, 0x20, 0x80}};
    return bits[dx][dy];
}

static int plot_braille(int y, int x, int w, int h, const double *v, double vmax)
{
    unsigned char *cell = calloc((size_t)w * (size_t)h, 1);
    if (!cell) return -1;
    int rows = 4 * h, prev = -1;
    for (int i = 0; i < 2 * w; i++) {
        int r = dot_row(v[i], vmax, rows), lo = r, hi = r;
        if (prev >= 0) lo = prev < r ? prev + 1 : r, hi = prev > r ? prev - 1 : r; /* join steep steps */
        if (lo > hi) lo = hi = r;
        for (int d = lo; d <= hi; d++) cell[(size_t)(d / 4) * (size_t)w + (size_t)(i / 2)] |= (unsigned char)braille_bit(i % 2, d % 4);
        prev = r;
    }
    char g[4];
    for (int cy = 0; cy < h; cy++)
        for (int cx = 0; cx < w; cx++) {
            unsigned bits = cell[(size_t)cy * (size_t)w + (size_t)cx];
            if (!bits) continue;
            utf8_of(0x2800 + bits, g);
            mvaddstr(y + cy, x + cx, g);
        }
    free(cell);
    return 0;
}

/* ASCII: three sub-rows a cell ('`' top, '-' middle, '.' bottom), '|'
 * where the curve jumps by more than a cell. */
static void plot_ascii(int y, int x, int w, int h, const double *v, double vmax)
{
    int rows = 3 * h, prev = -1;
    for (int cx = 0; cx < w; cx++) {
        int r = dot_row(0.5 * (v[2 * cx] + v[2 * cx + 1]), vmax, rows), cy = r / 3;
        int lo = prev < cy ? prev : cy, hi = prev < cy ? cy : prev; /* rows strictly between: '|' */
        for (int k = lo + 1; prev >= 0 && k < hi; k++) mvaddch(y + k, x + cx, '|');
        mvaddch(y + cy, x + cx, (chtype)"`-."[r % 3]);
        prev = cy;
    }
}

int ui_plot(const ui_state *s, int y, int x, int w, int h, const double *v, double vmax)
{
    if (w <= 0 || h <= 0) return 0;
    if (s->utf8) return plot_braille(y, x, w, h, v, vmax);
    plot_ascii(y, x, w, h, v, vmax);
    return 0;
}

void ui_vbars(const ui_state *s, int y, int x, int w, int h, const double *v)
{
    static const char *const VB[9] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
    for (int cx = 0; cx < w; cx++) {
        double t = v[cx] < 0 ? 0 : v[cx] > 1 ? 1 : v[cx];
        int eighths = (int)lround(t * h * 8);
        for (int cy = 0; cy < h; cy++) {
            int e = eighths - 8 * (h - 1 - cy); /* eighths reaching into this row */
            e = e < 0 ? 0 : e > 8 ? 8 : e;
            if (s->utf8) mvaddstr(y + cy, x + cx, VB[e]);
            else mvaddch(y + cy, x + cx, (chtype)(e >= 6 ? '#' : e >= 3 ? '=' : e >= 1 ? '_' : ' '));
        }
    }
}

const char *ui_glyph_cur(const ui_state *s) { return s->utf8 ? "▲" : "^"; }
const char *ui_glyph_opt(const ui_state *s) { return s->utf8 ? "◆" : "o"; }
