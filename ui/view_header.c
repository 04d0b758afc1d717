/* view_header: the four rows every view starts with: what is open, the
 * budget and whether the plan meets it, and the live totals (parameters,
 * KV cache, FLOPs, predicted loss), plus the status row at the bottom. */
#include <curses.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "draw.h"
#include "views.h"

static const char *arrow(const ui_state *s) { return s->utf8 ? "→" : "->"; }

static const char *file_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b && b[1] ? b + 1 : path;
}

static void title_row(ui_state *s)
{
    int w = COLS, attr = ui_attr(s, UI_PAIR_TITLE);
    char plan[160];
    snprintf(plan, sizeof plan, "%.120s%s", s->plan_path[0] ? file_name(s->plan_path) : "(not saved)",
             ui_dirty(s) ? " [modified]" : "");
    attron(attr);
    ui_blank(0, 0, w);
    int x = ui_putf(0, 0, w, " a3 tui  %s  cache %s  plan %s", s->title, file_name(s->cache_path), plan);
    const char *keys = "? help  q quit ";
    if (x + (int)strlen(keys) + 2 <= w) ui_put(0, w - (int)strlen(keys), w, keys);
    attroff(attr);
}

static void budget_row(ui_state *s)
{
    const a3_plan *p = s->plan;
    int64_t target, removed, full;
    int met, x = 0;
    char rest[128];
    ui_budget_status(s, &target, &removed, &full, &met);
    snprintf(rest, sizeof rest, "   %s, step %d, context %d", a3_strategy_name(p->alloc.strategy),
             p->alloc.multiple, p->context);
    if (p->budget == A3_BUDGET_NONE) {
        x = ui_put(1, 0, COLS, "budget  none (b sets one)");
    } else if (met) {
        x = ui_putf(1, 0, COLS, "budget  %s %g%% removed: ", a3_budget_name(p->budget), p->budget_pct);
        attron(ui_attr(s, UI_PAIR_GOOD));
        x += ui_putf(1, x, COLS - x, "met (removes %.1f%%)", ui_pct_removed(full - removed, full));
        attroff(ui_attr(s, UI_PAIR_GOOD));
    } else {
        attron(ui_attr(s, UI_PAIR_ERROR) | A_REVERSE);
        x = ui_putf(1, 0, COLS, "OVER BUDGET");
        attroff(ui_attr(s, UI_PAIR_ERROR) | A_REVERSE);
        x += ui_putf(1, x, COLS - x, "  %s: removes %.1f%%, target %g%%", a3_budget_name(p->budget),
                     ui_pct_removed(full - removed, full), p->budget_pct);
    }
    ui_put(1, x, COLS - x, rest);
}

static void totals_rows(ui_state *s)
{
    char a[32], b[32], c[32], d[32];
    int whole = s->full.total >= 0;
    int64_t pf = whole ? s->full.total : s->full.compressible, pc = whole ? s->cost.total : s->cost.compressible;
    int64_t ff = s->full.flops_total >= 0 ? s->full.flops_total : s->full.flops;
    int64_t fc = s->cost.flops_total >= 0 ? s->cost.flops_total : s->cost.flops;
    int x = ui_putf(2, 0, COLS, "params%s %s %s %s (-%.1f%%)   ", whole ? "" : " (compressible)",
                    ui_fmt_count(a, sizeof a, pf), arrow(s), ui_fmt_count(b, sizeof b, pc), ui_pct_removed(pc, pf));
    ui_putf(2, x, COLS - x, "KV/token %s %s %s (-%.1f%%)", ui_fmt_bytes(c, sizeof c, s->full.kv_bytes), arrow(s),
            ui_fmt_bytes(d, sizeof d, s->cost.kv_bytes), ui_pct_removed(s->cost.kv_bytes, s->full.kv_bytes));
    x = ui_putf(3, 0, COLS, "FLOPs/tok@%d %s %s %s (-%.1f%%)  ", s->plan->context, ui_fmt_count(a, sizeof a, ff),
                arrow(s), ui_fmt_count(b, sizeof b, fc), ui_pct_removed(fc, ff));
    if (s->loss_ok)
        ui_putf(3, x, COLS - x, "pred. loss QK %.2f%% OV %.2f%% MLP %.2f%%", 100 * s->loss.rel[0],
                100 * s->loss.rel[1], 100 * s->loss.rel[2]);
    else ui_put(3, x, COLS - x, "pred. loss unknown");
}

void view_header_draw(ui_state *s)
{
    title_row(s);
    budget_row(s);
    totals_rows(s);
}

void view_status_draw(ui_state *s, const char *hints)
{
    int y = LINES - 1;
    ui_blank(y, 0, COLS);
    if (s->msg[0]) {
        int attr = s->msg_error ? ui_attr(s, UI_PAIR_ERROR) : (int)A_NORMAL;
        attron(attr);
        ui_put(y, 0, COLS, s->msg);
        attroff(attr);
    } else {
        attron(ui_attr(s, UI_PAIR_DIM));
        ui_put(y, 0, COLS, hints);
        attroff(ui_attr(s, UI_PAIR_DIM));
    }
}
