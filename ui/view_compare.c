/* view_compare: the plan being edited against a saved one (v opens it):
 * the totals of both side by side, then every layer's widths, "now/saved",
 * with the layers that differ marked. The edit keys still work here, so a
 * plan can be reshaped while watching the difference; v closes. */
#include <curses.h>
#include <stdio.h>
#include <string.h>

#include "draw.h"
#include "views.h"

#define LAYER_W 7

/* "~109/128" (now/saved), and whether they differ. */
static int cell_text(const ui_state *s, int l, int k, char *buf, size_t n)
{
    int a0, a1, b0, b1, ng = k == A3_COMP_MLP ? 1 : s->plan->dims.n_kv_heads;
    int64_t as, bs;
    char a[24], b[24];
    ui_cell_widths(s, s->plan, l, k, &a0, &a1, &as);
    ui_cell_widths(s, s->cmp, l, k, &b0, &b1, &bs);
    ui_fmt_width(a, sizeof a, a0, a1, as, ng, 0);
    ui_fmt_width(b, sizeof b, b0, b1, bs, ng, 0);
    int differ = 0;
    for (int g = 0; g < ng; g++) {
        const int *pa = k == A3_COMP_MLP ? s->plan->mlp + l : (k == A3_COMP_QK ? a3_plan_qk(s->plan, l) : a3_plan_ov(s->plan, l)) + g;
        const int *pb = k == A3_COMP_MLP ? s->cmp->mlp + l : (k == A3_COMP_QK ? a3_plan_qk(s->cmp, l) : a3_plan_ov(s->cmp, l)) + g;
        differ |= *pa != *pb;
    }
    if (differ) snprintf(buf, n, "%s/%s", a, b);
    else snprintf(buf, n, "%s", a);
    return differ;
}

static void totals(ui_state *s, int y)
{
    char a[32], b[32], c[32], d[32];
    int whole = s->cost.total >= 0 && s->cmp_cost.total >= 0;
    ui_putf(y, 0, COLS, "comparing now (left) with %s (right of each /)", s->cmp_path);
    ui_putf(y + 1, 0, COLS, "params%s %s / %s   KV/token %s / %s   loss QK %.2f/%.2f%% OV %.2f/%.2f%% MLP %.2f/%.2f%%",
            whole ? "" : " (compr.)", ui_fmt_count(a, sizeof a, whole ? s->cost.total : s->cost.compressible),
            ui_fmt_count(b, sizeof b, whole ? s->cmp_cost.total : s->cmp_cost.compressible),
            ui_fmt_bytes(c, sizeof c, s->cost.kv_bytes), ui_fmt_bytes(d, sizeof d, s->cmp_cost.kv_bytes),
            100 * s->loss.rel[0], 100 * s->cmp_loss.rel[0], 100 * s->loss.rel[1], 100 * s->cmp_loss.rel[1],
            100 * s->loss.rel[2], 100 * s->cmp_loss.rel[2]);
}

void view_compare_draw(ui_state *s)
{
    static const char *const NAME[A3_COMP_COUNT] = {"  QK now/saved", "  OV now/saved", "  MLP now/saved"};
    int cw = (COLS - LAYER_W) / 3, y0 = UI_HEADER_ROWS + 3, page = LINES - y0 - 2, n = s->plan->dims.n_layers;
    int differ = 0;
    if (!s->cmp) return;
    totals(s, UI_HEADER_ROWS);
    attron(A_BOLD);
    ui_put(y0 - 1, 0, LAYER_W, "  layer");
    for (int k = 0; k < A3_COMP_COUNT; k++) ui_put(y0 - 1, LAYER_W + k * cw, cw - 1, NAME[k]);
    attroff(A_BOLD);
    s->page = page;
    int row = ui_row_of(s, s->layer);
    if (row < s->top) s->top = row;
    if (row >= s->top + page) s->top = row - page + 1;
    for (int l = 0; l < n; l++) { /* how many layers differ, for the legend */
        char t[64];
        int d = 0;
        for (int k = 0; k < A3_COMP_COUNT; k++) d |= cell_text(s, l, k, t, sizeof t);
        differ += d;
    }
    for (int i = 0; i < page && s->top + i < n; i++) {
        int l = s->order[s->top + i], y = y0 + i;
        ui_putf(y, 0, LAYER_W, "%s%4d", l == s->layer ? ">" : " ", l);
        for (int k = 0; k < A3_COMP_COUNT; k++) {
            char t[64];
            int d = cell_text(s, l, k, t, sizeof t), sel = l == s->layer && s->col == UI_COL_QK + k;
            if (sel) attron(A_REVERSE);
            if (d) attron(ui_attr(s, UI_PAIR_OPT) | A_BOLD);
            ui_putf(y, LAYER_W + k * cw, cw - 1, "%s %s", d ? "*" : " ", t);
            if (d) attroff(ui_attr(s, UI_PAIR_OPT) | A_BOLD);
            if (sel) attroff(A_REVERSE);
        }
    }
    ui_putf(LINES - 2, 0, COLS, "* differs (now/saved)  %d of %d layers differ  %d/%d", differ, n, row + 1, n);
    view_status_draw(s, "hjkl move  +/- width  a auto  v close  Esc overview  Enter detail  ? help");
}

int view_compare_key(ui_state *s, int ch)
{
    if (ch == 27) {
        s->view = s->base = UI_VIEW_OVERVIEW;
        return 1;
    }
    return view_overview_key(s, ch);
}
