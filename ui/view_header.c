/* view_header: the four rows every view starts with: what is open, the
 * budget and whether the plan meets it, and the live totals (parameters,
 * KV cache, FLOPs, predicted loss), plus the status row at the bottom.
 *
 * Narrow terminals: every row has shorter wordings (ui_fit), and names
 * (model, cache, plan files) are shortened in the middle before any state
 * marker ([modified], SYNTHETIC) or number is dropped. Each percentage
 * says its base: budgets are shares of the compressible part, the params
 * change of the whole model when --model (or the cache) gives its size. */
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
    const char *keys = "? help  q quit ", *mod = ui_dirty(s) ? " [modified]" : "";
    const char *plan = s->plan_path[0] ? file_name(s->plan_path) : "(not saved)";
    const char *cache = file_name(s->cache_path);
    char model[96], tm[96], tc[UI_PATH_MAX], tp[UI_PATH_MAX], line[3 * UI_PATH_MAX];
    snprintf(model, sizeof model, "%s", s->title);
    char *syn = strstr(model, " (SYNTHETIC cache)");
    if (syn) *syn = 0; /* a state marker: kept whatever the width */
    const char *synm = syn ? " SYNTHETIC" : "";
    /* fixed: " a3 tui  " + "  cache " + "  plan " + markers */
    int fixed = 9 + 8 + 7 + ui_cols(synm) + ui_cols(mod);
    int room = w - fixed, with_keys = 0;
    int need = ui_cols(model) + ui_cols(cache) + ui_cols(plan);
    if (need + (int)strlen(keys) + 2 <= room) with_keys = 1;
    /* shares when names must give way: plan 2/5, cache 2/5, model 1/5 (at least 6 each) */
    int wm = ui_cols(model), wc = ui_cols(cache), wp = ui_cols(plan);
    if (need > room) {
        int r = room > 18 ? room : 18;
        wm = wm < r / 5 ? wm : (r / 5 > 6 ? r / 5 : 6);
        wc = wc < (r - wm) / 2 ? wc : (r - wm) / 2;
        wp = r - wm - wc;
        if (ui_cols(plan) < wp) wc += wp - ui_cols(plan), wp = ui_cols(plan);
        if (ui_cols(cache) < wc) wm += wc - ui_cols(cache), wc = ui_cols(cache);
    }
    snprintf(line, sizeof line, " a3 tui  %s%s  cache %s  plan %s%s", ui_shorten(s, tm, sizeof tm, model, wm), synm,
             ui_shorten(s, tc, sizeof tc, cache, wc), ui_shorten(s, tp, sizeof tp, plan, wp), mod);
    attron(attr);
    ui_blank(0, 0, w);
    ui_put(0, 0, w, line);
    if (with_keys) ui_put(0, w - (int)strlen(keys), w, keys);
    attroff(attr);
}

static void budget_row(ui_state *s)
{
    const a3_plan *p = s->plan;
    int64_t target, removed, full;
    int met, x = 0;
    char a[160], b[160], c[160], r1[96], r2[96];
    ui_budget_status(s, &target, &removed, &full, &met);
    double now = ui_pct_removed(full - removed, full) + 0.0;
    const char *kind = a3_budget_name(p->budget);
    snprintf(r1, sizeof r1, "   %s, multiple %d, context %d", a3_strategy_name(p->alloc.strategy), p->alloc.multiple,
             p->context);
    snprintf(r2, sizeof r2, "  %s, mult. %d, ctx %d", a3_strategy_name(p->alloc.strategy), p->alloc.multiple,
             p->context);
    if (p->budget == A3_BUDGET_NONE) {
        x = ui_put(1, 0, COLS, "budget  none (b sets one)");
    } else if (met) {
        /* the budget's base is the compressible part; the rest of the row gives way first */
        snprintf(a, sizeof a, "budget  %s %g%% of compressible removed: ", kind, p->budget_pct);
        snprintf(b, sizeof b, "budget %s %g%% of compr.: ", kind, p->budget_pct);
        snprintf(c, sizeof c, "met (removes %.1f%%)", now);
        int room = COLS - ui_cols(r2), lc = ui_cols(c);
        const char *head = ui_cols(a) + lc <= room ? a : b;
        if (ui_cols(head) + lc > room) snprintf(c, sizeof c, "met %.1f%%", now);
        x = ui_put(1, 0, COLS, head);
        attron(ui_attr(s, UI_PAIR_GOOD));
        x += ui_put(1, x, COLS - x, c);
        attroff(ui_attr(s, UI_PAIR_GOOD));
    } else {
        attron(ui_attr(s, UI_PAIR_ERROR) | A_REVERSE);
        x = ui_putf(1, 0, COLS, "OVER BUDGET");
        attroff(ui_attr(s, UI_PAIR_ERROR) | A_REVERSE);
        snprintf(a, sizeof a, "  %s: removes %.1f%%, target %g%% of compressible", kind, now, p->budget_pct);
        snprintf(b, sizeof b, "  %s: removes %.1f%%, target %g%% of compr.", kind, now, p->budget_pct);
        snprintf(c, sizeof c, " %s %.1f%% < %g%%", kind, now, p->budget_pct);
        const char *alts[] = {a, b, c};
        x += ui_put(1, x, COLS - x, ui_fit(COLS - x - 24, 3, alts));
    }
    const char *rest[] = {r1, r2};
    ui_put(1, x, COLS - x, ui_fit(COLS - x, 2, rest));
}

static void totals_rows(ui_state *s)
{
    char a[32], b[32], c[32], d[32], pc1[16], pc2[16], pc3[16];
    char l1[256], l2[256], l3[256], m1[256], m2[256], m3[256];
    int whole = s->full.total >= 0;
    int64_t pf = whole ? s->full.total : s->full.compressible, pc = whole ? s->cost.total : s->cost.compressible;
    int64_t ff = s->full.flops_total >= 0 ? s->full.flops_total : s->full.flops;
    int64_t fc = s->cost.flops_total >= 0 ? s->cost.flops_total : s->cost.flops;
    const char *ar = arrow(s);
    ui_fmt_change(pc1, sizeof pc1, pc, pf);
    ui_fmt_change(pc2, sizeof pc2, s->cost.kv_bytes, s->full.kv_bytes);
    ui_fmt_change(pc3, sizeof pc3, fc, ff);
    ui_fmt_count(a, sizeof a, pf), ui_fmt_count(b, sizeof b, pc);
    ui_fmt_bytes(c, sizeof c, s->full.kv_bytes), ui_fmt_bytes(d, sizeof d, s->cost.kv_bytes);
    /* the params change is of the whole model (or of the compressible part, said so) */
    const char *base = whole ? "of model" : "of compressible", *sbase = whole ? "model" : "compr.";
    snprintf(l1, sizeof l1, "params %s %s %s (%s %s)   KV/token %s %s %s (%s)", a, ar, b, pc1, base, c, ar, d, pc2);
    snprintf(l2, sizeof l2, "params %s%s%s (%s %s)  KV/tok %s%s%s (%s)", a, ar, b, pc1, sbase, c, ar, d, pc2);
    snprintf(l3, sizeof l3, "params %s%s%s (%s %s)", a, ar, b, pc1, sbase);
    const char *row2[] = {l1, l2, l3};
    ui_put(2, 0, COLS, ui_fit(COLS, 3, row2));
    ui_fmt_count(a, sizeof a, ff), ui_fmt_count(b, sizeof b, fc);
    if (s->loss_ok) {
        /* the predicted NLL change (probe in CACHE.pred) next to the losses;
         * "estimate" when the MLP losses are the diagonal estimate */
        char nll[64] = "", nll2[40] = "";
        const char *est = s->loss.exact ? "" : " (estimate)", *est2 = s->loss.exact ? "" : " est.";
        if (s->loss.nll_known) {
            snprintf(nll, sizeof nll, "  NLL %+.3f (ppl x%.3f)", s->loss.dnll, exp(s->loss.dnll));
            snprintf(nll2, sizeof nll2, "  NLL %+.3f", s->loss.dnll);
        }
        snprintf(m1, sizeof m1, "FLOPs/tok@%d %s %s %s (%s)  pred. loss QK %.2f%% OV %.2f%% MLP %.2f%%%s%s",
                 s->plan->context, a, ar, b, pc3, 100 * s->loss.rel[0], 100 * s->loss.rel[1], 100 * s->loss.rel[2],
                 est, nll);
        snprintf(m2, sizeof m2, "FLOPs@%d %s%s%s (%s)  loss QK %.2f%% OV %.2f%% MLP %.2f%%%s%s", s->plan->context, a,
                 ar, b, pc3, 100 * s->loss.rel[0], 100 * s->loss.rel[1], 100 * s->loss.rel[2], est2, nll2);
        snprintf(m3, sizeof m3, "loss QK %.2f%% OV %.2f%% MLP %.2f%%%s%s  FLOPs %s", 100 * s->loss.rel[0],
                 100 * s->loss.rel[1], 100 * s->loss.rel[2], est2, nll2, pc3);
    } else {
        snprintf(m1, sizeof m1, "FLOPs/tok@%d %s %s %s (%s)  pred. loss unknown", s->plan->context, a, ar, b, pc3);
        snprintf(m2, sizeof m2, "FLOPs@%d %s%s%s (%s)  loss unknown", s->plan->context, a, ar, b, pc3);
        snprintf(m3, sizeof m3, "%s", m2);
    }
    const char *row3[] = {m1, m2, m3};
    ui_put(3, 0, COLS, ui_fit(COLS, 3, row3));
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
        const char *more = s->utf8 ? "… (! full)" : "... (! full)";
        attron(attr);
        if (ui_cols(s->msg) <= COLS) ui_put(y, 0, COLS, s->msg);
        else { /* cut: say so, and how to read the rest */
            int mw = COLS - ui_cols(more);
            ui_put(y, 0, mw, s->msg);
            ui_put(y, mw, COLS - mw, more);
        }
        attroff(attr);
    } else {
        attron(ui_attr(s, UI_PAIR_DIM));
        ui_put(y, 0, COLS, hints);
        attroff(ui_attr(s, UI_PAIR_DIM));
    }
}
