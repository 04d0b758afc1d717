/* view_overview: every layer a row, QK / OV / MLP as columns; each cell
 * shows the kept width, a bar of the kept fraction shaded by predicted
 * loss with the budget-optimal width marked on it, and the loss. Rows in
 * layer order, or sorted by loss or cost (S). Also the plan-editing keys,
 * which the detail and compare views share. */
#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "draw.h"
#include "views.h"

#define LAYER_W 7 /* ">  31 L" */

/* Rows for layer lines between the column titles and the legend. */
static int page_rows(void) { return LINES - UI_HEADER_ROWS - 3; }

static void keep_visible(ui_state *s, int page)
{
    int n = s->plan->dims.n_layers, row = ui_row_of(s, s->layer);
    if (row < s->top) s->top = row;
    if (row >= s->top + page) s->top = row - page + 1;
    if (s->top > n - page) s->top = n - page;
    if (s->top < 0) s->top = 0;
}

static void fmt_loss(char *buf, size_t n, double rel)
{
    double pct = 100 * rel;
    if (pct >= 999.5) snprintf(buf, n, ">999%%");
    else if (pct >= 9.995) snprintf(buf, n, "%.1f%%", pct);
    else snprintf(buf, n, "%.2f%%", pct);
}

static void draw_cell(ui_state *s, int y, int x, int cw, int l, int k, int selected)
{
    int mn, mx;
    int64_t sum;
    char wtxt[24], ltxt[16];
    ui_cell_widths(s, s->plan, l, k, &mn, &mx, &sum);
    int n = k == A3_COMP_MLP ? 1 : s->plan->dims.n_kv_heads, full = ui_full_width(s, k);
    double mean = (double)sum / n, rel = s->loss_ok ? s->rel[(size_t)l * A3_COMP_COUNT + (size_t)k] : -1;
    ui_fmt_width(wtxt, sizeof wtxt, mn, mx, sum, n, 1); /* "11,008"; groups differ: "~109", their mean */
    if (ui_cols(wtxt) > 6) ui_fmt_width(wtxt, sizeof wtxt, mn, mx, sum, n, 0);
    if (rel >= 0) fmt_loss(ltxt, sizeof ltxt, rel);
    else snprintf(ltxt, sizeof ltxt, "?");
    int bw = cw - 1 - 6 - 1 - 1 - 6 - 1;
    if (selected) attron(A_REVERSE);
    ui_blank(y, x, cw - 1);
    ui_put(y, x, 1, ui_locked(s, l, k) ? "L" : " ");
    ui_putf(y, x + 1, 6, "%6s", wtxt);
    if (selected) attroff(A_REVERSE);
    if (bw > 0) ui_bar(s, y, x + 8, bw, mean / full, ui_loss_level(rel));
    if (bw > 1 && s->opt) { /* the budget-optimal width on the bar */
        int omn, omx;
        int64_t osum;
        ui_cell_widths(s, s->opt, l, k, &omn, &omx, &osum);
        int ox = (int)lround((double)osum / n / full * (bw - 1));
        attron(ui_attr(s, UI_PAIR_OPT) | A_BOLD);
        ui_put(y, x + 8 + ox, 1, ui_glyph_opt(s));
        attroff(ui_attr(s, UI_PAIR_OPT) | A_BOLD);
    }
    if (selected) attron(A_REVERSE);
    ui_putf(y, x + cw - 8, 7, " %6s", ltxt);
    if (selected) attroff(A_REVERSE);
}

static void draw_row(ui_state *s, int y, int l, int cw)
{
    int sel_row = l == s->layer;
    uint8_t lk = s->plan->lock[l];
    ui_putf(y, 0, 1, "%s", sel_row ? ">" : " ");
    if (sel_row && s->col == UI_COL_LAYER) attron(A_REVERSE);
    ui_putf(y, 1, LAYER_W - 2, "%4d%s", l, lk == A3_LOCK_ALL ? "L" : " ");
    if (sel_row && s->col == UI_COL_LAYER) attroff(A_REVERSE);
    for (int k = 0; k < A3_COMP_COUNT; k++)
        draw_cell(s, y, LAYER_W + k * cw, cw, l, k, sel_row && s->col == UI_COL_QK + k);
}

static void draw_titles(ui_state *s, int y, int cw)
{
    static const char *const NAME[A3_COMP_COUNT] = {"QK rank", "OV rank", "MLP width"};
    char full[24];
    attron(A_BOLD);
    ui_put(y, 0, LAYER_W, "  layer");
    for (int k = 0; k < A3_COMP_COUNT; k++)
        ui_putf(y, LAYER_W + k * cw, cw - 1, "  %s /%s%s", NAME[k], ui_fmt_int(full, sizeof full, ui_full_width(s, k), 1),
                s->sort != UI_SORT_LAYER && ui_sel_comp(s) == k ? (s->utf8 ? " ▼" : " v") : "");
    if (s->sort != UI_SORT_LAYER && ui_sel_comp(s) < 0) ui_put(y, 0, 1, s->utf8 ? "▼" : "v");
    attroff(A_BOLD);
}

/* Shades from no loss to >= 70%, then the other markers. */
static void draw_legend(ui_state *s, int y)
{
    char a[160], b[160];
    int x = ui_put(y, 0, COLS, "loss <0.1% ");
    for (int i = 0; i < UI_LOSS_LEVELS && x + 2 < COLS; i++, x += 2) ui_bar(s, y, x, 2, 1.0, i);
    x += ui_put(y, x, COLS - x, " >=70%");
    /* the position is the row's, so it reads right in any sort order */
    int row = ui_row_of(s, s->layer) + 1, n = s->plan->dims.n_layers;
    const char *by = s->sort == UI_SORT_LAYER ? "layers" : s->sort == UI_SORT_LOSS ? "by loss" : "by cost";
    snprintf(a, sizeof a, "  %s optimal  L locked  ~ mean  %d/%d %s", ui_glyph_opt(s), row, n, by);
    snprintf(b, sizeof b, " %s opt L lock %d/%d %s", ui_glyph_opt(s), row, n, by);
    const char *alts[] = {a, b};
    ui_put(y, x, COLS - x, ui_fit(COLS - x, 2, alts));
}

void view_overview_draw(ui_state *s)
{
    int cw = (COLS - LAYER_W) / 3, page = page_rows(), y0 = UI_HEADER_ROWS + 1;
    s->page = page;
    keep_visible(s, page);
    draw_titles(s, UI_HEADER_ROWS, cw);
    for (int i = 0; i < page && s->top + i < s->plan->dims.n_layers; i++) draw_row(s, y0 + i, s->order[s->top + i], cw);
    draw_legend(s, LINES - 2);
    view_status_draw(s, "hjkl move  +/- width  a auto  b budget  L lock  S sort  : go to  ? help");
}

/* ---- keys ----------------------------------------------------------------------- */

static int move_key(ui_state *s, int ch)
{
    int page = s->page > 1 ? s->page : 1;
    switch (ch) {
    case KEY_UP: case 'k': ui_move(s, -1, 0); return 1;
    case KEY_DOWN: case 'j': ui_move(s, 1, 0); return 1;
    case KEY_LEFT: case 'h': ui_move(s, 0, -1); return 1;
    case KEY_RIGHT: case 'l': ui_move(s, 0, 1); return 1;
    case KEY_PPAGE: ui_move(s, -page, 0); return 1;
    case KEY_NPAGE: ui_move(s, page, 0); return 1;
    case KEY_HOME: case 'g': ui_move_to_row(s, 0); return 1;
    case KEY_END: case 'G': ui_move_to_row(s, s->plan->dims.n_layers - 1); return 1;
    case ':': ui_request_goto(s); return 1;
    default: return 0;
    }
}

static int edit_key(ui_state *s, int ch)
{
    switch (ch) {
    case '+': case '=': ui_step(s, 1, 0); return 1;
    case '-': case '_': ui_step(s, -1, 0); return 1;
    case ']': ui_step(s, 1, 1); return 1;
    case '[': ui_step(s, -1, 1); return 1;
    case 'a': ui_allocate(s, A3_STRATEGY_GREEDY); return 1;
    case 'u': ui_allocate(s, A3_STRATEGY_UNIFORM); return 1;
    case 'b': ui_request_budget(s); return 1;
    case 'L': ui_toggle_lock(s); return 1;
    case 'z': ui_undo(s); return 1;
    case 'y': case 18 /* Ctrl-R */: ui_redo(s); return 1;
    default: break;
    }
    if (ch >= '0' && ch <= '9') {
        char first[2] = {(char)ch, 0};
        ui_ask_text(s, UI_ASK_WIDTH, ui_sel_comp(s) < 0 ? "Width of the whole layer, % of full:" : "Width:", first);
        return 1;
    }
    return 0;
}

static int other_key(ui_state *s, int ch)
{
    char cur[32];
    switch (ch) {
    case 'x':
        snprintf(cur, sizeof cur, "%d", s->plan->context);
        ui_ask_text(s, UI_ASK_CONTEXT, "Context (tokens attended to, for FLOPs):", cur);
        return 1;
    case 'm':
        snprintf(cur, sizeof cur, "%d", s->plan->alloc.multiple);
        ui_ask_text(s, UI_ASK_MULTIPLE, "Multiple (widths are multiples of M; QK of lcm(2, M)):", cur);
        return 1;
    case 'S': ui_cycle_sort(s); return 1;
    case 'v': ui_request_compare(s); return 1;
    case '!': ui_show_last_msg(s); return 1;
    case 's': ui_request_save(s); return 1;
    case 'o': ui_request_open(s); return 1;
    case 'c': ui_commit_begin(s); return 1;
    case '?': s->view = UI_VIEW_HELP; return 1;
    case 'q': ui_request_quit(s); return 1;
    default: return 0;
    }
}

int view_overview_key(ui_state *s, int ch)
{
    if (ch == '\n' || ch == '\r' || ch == KEY_ENTER || ch == 'd') {
        s->view = s->base = UI_VIEW_DETAIL;
        return 1;
    }
    s->msg[0] = 0; /* a new key: the last message has been seen */
    return move_key(s, ch) || edit_key(s, ch) || other_key(s, ch);
}
