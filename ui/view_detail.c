/* view_detail: the selected cell up close: its relative-loss curve against
 * the kept width (braille), with the current and the budget-optimal width
 * marked; its spectrum (log-scaled bars, with the values at the top and
 * the bottom of the scale); and for QK/OV the loss curve of each KV group
 * of the layer (sparklines, each from 0 to that group's loss at width 0),
 * Tab selecting one group to edit. Widths are integers ("11,008"); a mean
 * over groups is rounded half up and shown with "~" and the groups' range. */
#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "draw.h"
#include "views.h"

#define SPECTRUM_DECADES 4.0 /* the bars show 4 decades below the largest value */

typedef struct {
    int l, k, g;    /* layer, kind, group (-1: all) */
    int full;
    double cur, opt; /* widths (means over groups when g < 0); opt < 0: none */
    char cur_txt[32], opt_txt[32], full_txt[24]; /* the same as text */
} sel;

/* Width of (l, k) in plan p as text: group g's, or all groups' ("~" mean). */
static void width_text(const ui_state *s, const a3_plan *p, int l, int k, int g, char *buf, size_t n)
{
    int mn, mx;
    int64_t sum;
    if (g >= 0) {
        ui_fmt_int(buf, n, k == A3_COMP_QK ? a3_plan_qk(p, l)[g] : a3_plan_ov(p, l)[g], 1);
        return;
    }
    ui_cell_widths(s, p, l, k, &mn, &mx, &sum);
    ui_fmt_width(buf, n, mn, mx, sum, k == A3_COMP_MLP ? 1 : p->dims.n_kv_heads, 1);
}

static double mean_width(const ui_state *s, const a3_plan *p, int l, int k, int g)
{
    int mn, mx;
    int64_t sum;
    if (g >= 0) return k == A3_COMP_QK ? a3_plan_qk(p, l)[g] : a3_plan_ov(p, l)[g];
    ui_cell_widths(s, p, l, k, &mn, &mx, &sum);
    return (double)sum / (k == A3_COMP_MLP ? 1 : p->dims.n_kv_heads);
}

static sel selection(const ui_state *s)
{
    sel c;
    c.l = s->layer, c.k = ui_sel_comp(s) < 0 ? A3_COMP_QK : ui_sel_comp(s);
    c.g = c.k == A3_COMP_MLP ? -1 : s->group;
    c.full = ui_full_width(s, c.k);
    c.cur = mean_width(s, s->plan, c.l, c.k, c.g);
    c.opt = s->opt ? mean_width(s, s->opt, c.l, c.k, c.g) : -1;
    width_text(s, s->plan, c.l, c.k, c.g, c.cur_txt, sizeof c.cur_txt);
    if (s->opt) width_text(s, s->opt, c.l, c.k, c.g, c.opt_txt, sizeof c.opt_txt);
    ui_fmt_int(c.full_txt, sizeof c.full_txt, c.full, 1);
    return c;
}

/* The valid width nearest below a fraction of full (QK: even). */
static int width_at(const sel *c, double frac)
{
    int w = (int)floor(frac * c->full + 1e-9);
    if (w > c->full) w = c->full;
    return c->k == A3_COMP_QK ? w / 2 * 2 : w;
}

/* The component's predicted loss at the plan's widths. */
static double plan_rel(const ui_state *s, const sel *c)
{
    return s->loss_ok ? s->rel[(size_t)c->l * A3_COMP_COUNT + (size_t)c->k] : NAN;
}

static int col_of(double w, int full, int width) { return (int)lround(w / full * (width - 1)); }

/* "layer 3 OV (group 2): kept 36/128, predicted loss 0.74% (this group
 * 26.4%)  [locked]", shorter wordings when narrow: the numbers and the
 * lock marker stay. */
static void draw_title(ui_state *s, const sel *c, int y)
{
    static const char *const KIND_NAME[A3_COMP_COUNT] = {"QK", "OV", "MLP"};
    char grp[48] = "", sgrp[16] = "", range[48] = "", own[48] = "", sown[32] = "", a[256], b[256];
    int mn, mx;
    int64_t sum;
    if (c->k != A3_COMP_MLP) {
        snprintf(grp, sizeof grp, c->g < 0 ? " (mean of %d groups)" : " (group %d)",
                 c->g < 0 ? s->plan->dims.n_kv_heads : c->g);
        if (c->g >= 0) snprintf(sgrp, sizeof sgrp, " g%d", c->g);
    }
    ui_cell_widths(s, s->plan, c->l, c->k, &mn, &mx, &sum);
    if (c->g < 0 && mn != mx) snprintf(range, sizeof range, " (groups %d-%d)", mn, mx);
    if (c->g >= 0) { /* the group's own share: its loss over its loss at width 0 */
        double l0 = ui_group_loss(s, c->l, c->k, c->g, 0);
        double own_pct = l0 > 0 ? 100 * ui_group_loss(s, c->l, c->k, c->g, (int)c->cur) / l0 : 0.0;
        snprintf(own, sizeof own, " (this group %.1f%%)", own_pct);
        snprintf(sown, sizeof sown, " (g%d %.1f%%)", c->g, own_pct);
    }
    const char *lock = ui_locked(s, c->l, c->k) ? "  [locked]" : "";
    snprintf(a, sizeof a, "layer %d %s%s: kept %s/%s%s, predicted loss %.2f%%%s%s", c->l, KIND_NAME[c->k], grp,
             c->cur_txt, c->full_txt, range, 100 * plan_rel(s, c), own, lock);
    snprintf(b, sizeof b, "layer %d %s%s: kept %s/%s%s, loss %.2f%%%s%s", c->l, KIND_NAME[c->k], sgrp, c->cur_txt,
             c->full_txt, range, 100 * plan_rel(s, c), sown, lock[0] ? " [L]" : "");
    const char *alts[] = {a, b};
    attron(A_BOLD);
    ui_put(y, 0, COLS, ui_fit(COLS, 2, alts));
    attroff(A_BOLD);
}

/* Marker row under a plot: current and optimal widths as glyphs. */
static void draw_markers(ui_state *s, const sel *c, int y, int x, int w)
{
    ui_blank(y, x, w);
    if (c->opt >= 0) {
        attron(ui_attr(s, UI_PAIR_OPT) | A_BOLD);
        ui_put(y, x + col_of(c->opt, c->full, w), 1, ui_glyph_opt(s));
        attroff(ui_attr(s, UI_PAIR_OPT) | A_BOLD);
    }
    attron(ui_attr(s, UI_PAIR_CUR) | A_BOLD);
    ui_put(y, x + col_of(c->cur, c->full, w), 1, ui_glyph_cur(s));
    attroff(ui_attr(s, UI_PAIR_CUR) | A_BOLD);
}

static void draw_curve(ui_state *s, const sel *c, int y, int x, int w, int h)
{
    int pw = w - 6, ph = h - 4, n = 2 * pw;
    if (pw < 4 || ph < 2) return;
    double *v = malloc((size_t)n * sizeof *v), vmax = 1e-12;
    if (!v) return;
    for (int i = 0; i < n; i++) {
        v[i] = ui_rel_at(s, c->l, c->k, c->g, width_at(c, (double)i / (n - 1)));
        if (v[i] > vmax) vmax = v[i];
    }
    ui_put(y, x, w, "relative loss vs kept width");
    ui_putf(y + 1, x, 5, "%4.0f%%", 100 * vmax);
    ui_putf(y + ph / 2 + 1, x, 5, "%4.0f%%", 50 * vmax);
    ui_putf(y + ph, x, 5, "%4s", "0%");
    for (int r = 0; r < ph; r++) ui_put(y + 1 + r, x + 5, 1, s->utf8 ? "│" : "|");
    attron(ui_attr(s, UI_PAIR_CUR));
    ui_plot(s, y + 1, x + 6, pw, ph, v, vmax);
    attroff(ui_attr(s, UI_PAIR_CUR));
    free(v);
    draw_markers(s, c, y + ph + 1, x + 6, pw);
    ui_putf(y + ph + 2, x + 6, pw, "0");
    ui_putf(y + ph + 2, x + 6 + pw - 7, 7, "%7s", c->full_txt);
    char l1[UI_MSG_MAX + 160], l2[UI_MSG_MAX + 160], opt[UI_MSG_MAX + 32];
    if (c->opt >= 0) snprintf(opt, sizeof opt, "%s", c->opt_txt);
    else snprintf(opt, sizeof opt, "none (%s)", s->opt_why);
    snprintf(l1, sizeof l1, "%s current %s (%.2f%%)  %s budget-optimal %s", ui_glyph_cur(s), c->cur_txt,
             100 * plan_rel(s, c), ui_glyph_opt(s), opt);
    snprintf(l2, sizeof l2, "%s now %s (%.2f%%)  %s optimal %s", ui_glyph_cur(s), c->cur_txt, 100 * plan_rel(s, c),
             ui_glyph_opt(s), opt);
    const char *alts[] = {l1, l2};
    ui_put(y + ph + 3, x, w, ui_fit(w, 2, alts));
}

/* The spectrum of (l, k), summed over the selected groups, in its own
 * units (OV: sigma^2; QK: RoPE pair scores; MLP: neuron scores). */
static double *spectrum(const ui_state *s, const sel *c, int *n)
{
    const a3_cache_layer *L = &s->cache->layers[c->l];
    int hd = s->cache->head_dim, ng = c->k == A3_COMP_MLP ? 1 : s->cache->n_kv_heads;
    *n = c->k == A3_COMP_QK ? hd / 2 : c->k == A3_COMP_OV ? hd : s->cache->d_ff;
    double *v = calloc((size_t)*n, sizeof *v);
    for (int g = 0; v && g < ng; g++) {
        if (c->g >= 0 && g != c->g) continue;
        for (int j = 0; j < *n; j++) {
            size_t i = (size_t)g * (size_t)*n + (size_t)j;
            v[j] += c->k == A3_COMP_QK ? L->qk_score[i] : c->k == A3_COMP_OV ? L->ov_sv[i] * L->ov_sv[i] : L->mlp_score[j];
        }
    }
    return v;
}

#define AXIS_W 8 /* "1.2e+03" and a rule */

/* Bars (log scale) with the axis: the largest value at the top, the value
 * SPECTRUM_DECADES below it at the bottom, index 1 and n under the bars. */
static void draw_spectrum(ui_state *s, const sel *c, int y, int x, int w, int h)
{
    static const char *const NAME[A3_COMP_COUNT] = {"RoPE pair scores", "singular values^2", "neuron scores"};
    int n, bh = h - 3, bw = w - AXIS_W;
    if (bh < 1 || bw < 4) return;
    /* The scores stay on disk until a spectrum shows them (a3_cache_open
     * reads the curves only); a corrupt section is named here instead. */
    a3_err err = {0};
    a3_cache_section sec = c->k == A3_COMP_QK ? A3_SEC_QK_SCORE : A3_SEC_MLP_SCORE;
    if (c->k != A3_COMP_OV && a3_cache_need_section(s->cache, c->l, sec, &err)) {
        ui_putf(y, x, w, "%s", err.msg);
        return;
    }
    double *v = spectrum(s, c, &n), *col = malloc((size_t)bw * sizeof *col), top = 0;
    if (v && col) {
        char nt[24];
        for (int j = 0; j < n; j++) top = fabs(v[j]) > top ? fabs(v[j]) : top;
        for (int cx = 0; cx < bw; cx++) { /* the largest value a column covers */
            int a = (int)((int64_t)cx * n / bw), b = (int)((int64_t)(cx + 1) * n / bw);
            double m = 0;
            for (int j = a; j < (b > a ? b : a + 1); j++) m = fabs(v[j]) > m ? fabs(v[j]) : m;
            col[cx] = top > 0 && m > 0 ? 1 + log10(m / top) / SPECTRUM_DECADES : 0;
        }
        ui_putf(y, x, w, "%s (log)", NAME[c->k]);
        ui_putf(y + 1, x, AXIS_W - 1, "%7.1e", top);
        ui_putf(y + bh, x, AXIS_W - 1, "%7.1e", top * pow(10, -SPECTRUM_DECADES));
        for (int r = 0; r < bh; r++) ui_put(y + 1 + r, x + AXIS_W - 1, 1, s->utf8 ? "│" : "|");
        ui_vbars(s, y + 1, x + AXIS_W, bw, bh, col);
        draw_markers(s, c, y + 1 + bh, x + AXIS_W, bw);
        ui_fmt_int(nt, sizeof nt, n, 1);
        ui_put(y + 2 + bh, x + AXIS_W, bw, "1");
        ui_put(y + 2 + bh, x + AXIS_W + bw - ui_cols(nt), ui_cols(nt), nt);
    }
    free(v);
    free(col);
}

static void draw_group(ui_state *s, const sel *c, int y, int x, int w, int g)
{
    int sw = w - 4 - 12, wg = c->k == A3_COMP_QK ? a3_plan_qk(s->plan, c->l)[g] : a3_plan_ov(s->plan, c->l)[g];
    double *v = sw > 0 ? malloc((size_t)sw * sizeof *v) : NULL, l0 = ui_group_loss(s, c->l, c->k, g, 0);
    if (g == c->g) attron(A_REVERSE);
    ui_putf(y, x, 4, "g%-3d", g);
    if (g == c->g) attroff(A_REVERSE);
    for (int i = 0; v && i < sw; i++)
        v[i] = l0 > 0 ? ui_group_loss(s, c->l, c->k, g, width_at(c, (double)i / (sw > 1 ? sw - 1 : 1))) / l0 : 0;
    if (v) ui_spark(s, y, x + 4, sw, v, 1.0);
    double rel = l0 > 0 ? ui_group_loss(s, c->l, c->k, g, wg) / l0 : 0;
    ui_putf(y, x + 4 + (sw > 0 ? sw : 0), 12, " %4d %5.1f%%", wg, 100 * rel);
    free(v);
}

static void draw_groups(ui_state *s, const sel *c, int y, int x, int w, int h)
{
    int n = s->plan->dims.n_kv_heads, rows = h - 1, first = 0;
    if (rows < 1) return;
    if (c->g >= rows) first = c->g - rows + 1; /* keep the selected group in view */
    /* each sparkline: that group's loss from width 0 (left) to full
     * (right), as a share of its loss at width 0 (full height = 100%) */
    const char *head = w >= 44 ? "group loss vs width (top = its loss at 0)" : "group loss vs width";
    int hw = ui_put(y, x, w, head);
    ui_putf(y, x + hw, w - hw, "%*s", w - hw > 0 ? w - hw : 0, n > rows ? "Tab" : "width loss");
    for (int i = 0; i < rows && first + i < n; i++) draw_group(s, c, y + 1 + i, x, w, first + i);
}

void view_detail_draw(ui_state *s)
{
    sel c = selection(s);
    int y1 = UI_HEADER_ROWS + 1, body = LINES - 3 - y1 + 1;
    int lw = COLS * 3 / 5, rx = lw + 1, rw = COLS - rx;
    draw_title(s, &c, UI_HEADER_ROWS);
    draw_curve(s, &c, y1, 0, lw - 1, body);
    if (c.k == A3_COMP_MLP) draw_spectrum(s, &c, y1, rx, rw, body);
    else {
        int n = s->plan->dims.n_kv_heads, gh = (n < (body - 2) / 2 ? n : (body - 2) / 2) + 1;
        draw_spectrum(s, &c, y1, rx, rw, body - gh - 1);
        draw_groups(s, &c, y1 + body - gh, rx, rw, gh);
    }
    ui_rule(s, LINES - 2, 0, COLS);
    view_status_draw(s, "Tab group  +/- width  hjkl move  a auto  L lock  Esc back  ? help");
}

int view_detail_key(ui_state *s, int ch)
{
    switch (ch) {
    case '\t': ui_cycle_group(s, 1); return 1;
    case KEY_BTAB: ui_cycle_group(s, -1); return 1;
    case 27: case 'd': case '\n': case '\r': case KEY_ENTER: case KEY_BACKSPACE: case 127:
        s->view = s->base = UI_VIEW_OVERVIEW;
        s->group = -1; /* group edits belong to this view only */
        return 1;
    default: return view_overview_key(s, ch);
    }
}
