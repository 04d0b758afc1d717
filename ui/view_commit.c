/* view_commit: the plan summary and the perplexity settings before
 * applying, the progress of a3_apply and of the perplexity runs (a bar
 * redrawn at most 10 times a second, Esc/x/c cancels), and original vs
 * compressed side by side. */
#include <curses.h>
#include <stdio.h>
#include <string.h>

#include "draw.h"
#include "views.h"

/* The perplexity settings the commit will use (t, p, w change them). */
static void eval_settings(ui_state *s, int y, const char *label)
{
    char d[UI_PATH_MAX + 96];
    ui_eval_opts e = s->eval;
    int w = COLS - 4 - ui_cols(label);
    ui_eval_describe(s, &e, d, sizeof d);
    if (ui_cols(d) > w && e.text[0]) { /* the file name gives way, the settings stay */
        int tw = ui_cols(e.text) - (ui_cols(d) - w);
        ui_shorten(s, e.text, sizeof e.text, s->eval.text, tw > 8 ? tw : 8);
        ui_eval_describe(s, &e, d, sizeof d);
    }
    ui_putf(y, 3, COLS - 4, "%s%s", label, d);
}

static void summary(ui_state *s, int y)
{
    const a3_plan *p = s->plan;
    char line[200];
    int w = COLS - 4;
    attron(A_BOLD);
    ui_put(y, 1, COLS - 2, "Commit this plan");
    attroff(A_BOLD);
    ui_putf(y + 2, 3, w, "model      %s", s->model_dir);
    ui_putf(y + 3, 3, w, "plan       %s%s, %s, budget %s %g%%", s->plan_path[0] ? s->plan_path : "(not saved)",
            ui_dirty(s) ? " [modified]" : "", a3_strategy_name(p->alloc.strategy), a3_budget_name(p->budget),
            p->budget_pct);
    ui_putf(y + 4, 3, w, "params     %s", a3_plan_fmt_change(line, sizeof line, s->cost.compressible,
                                                             s->full.compressible, "compressible parameters"));
    ui_putf(y + 5, 3, w, "KV cache   %s", a3_plan_fmt_change(line, sizeof line, s->cost.kv_bytes, s->full.kv_bytes,
                                                             "KV-cache bytes per token"));
    ui_putf(y + 6, 3, w, "FLOPs      %s", a3_plan_fmt_change(line, sizeof line, s->cost.flops, s->full.flops,
                                                             "layer FLOPs per token"));
    ui_putf(y + 7, 3, w, "pred. loss QK %.2f%%  OV %.2f%%  MLP %.2f%%", 100 * s->loss.rel[0], 100 * s->loss.rel[1],
            100 * s->loss.rel[2]);
    ui_putf(y + 8, 3, w, "methods    qk %s, ov %s, mlp %s", a3_plan_method_name(A3_COMP_QK, (int)p->qk_method),
            a3_plan_method_name(A3_COMP_OV, (int)p->ov_method), a3_plan_method_name(A3_COMP_MLP, (int)p->mlp_method));
    eval_settings(s, y + 9, "perplexity ");
    char d[UI_PATH_MAX + 64];
    ui_putf(y + 10, 3, w, "reduction  %s", ui_seq_describe(s, d, sizeof d));
}

static void progress_bar(ui_state *s, int y)
{
    const ui_commit *c = &s->commit;
    char line[160];
    int bw = COLS - 6, fill = c->total > 0 ? (int)(bw * c->done / c->total) : 0;
    ui_putf(y, 3, COLS - 4, "%s", c->stage);
    for (int i = 0; i < bw; i++) mvaddstr(y + 1, 3 + i, i < fill ? (s->utf8 ? "█" : "#") : (s->utf8 ? "░" : "."));
    ui_put(y + 2, 3, COLS - 4, ui_commit_progress_text(s, a3_now(), line, sizeof line));
    ui_put(y + 4, 3, COLS - 4,
           c->phase == UI_COMMIT_RUNNING ? "Esc, x or c cancels cleanly (nothing is written)"
                                         : "Esc, x or c cancels the evaluation (the written model stays)");
}

static void results(ui_state *s, int y)
{
    const ui_commit *c = &s->commit;
    char a[32], b[32];
    attron(A_BOLD);
    ui_putf(y, 3, COLS - 4, "%-18s %14s %14s", "", "original", "compressed");
    attroff(A_BOLD);
    ui_putf(y + 1, 3, COLS - 4, "%-18s %14s %14s  (-%.1f%%)", "parameters", ui_fmt_count(a, sizeof a, c->params_orig),
            ui_fmt_count(b, sizeof b, c->params_comp), ui_pct_removed(c->params_comp, c->params_orig));
    ui_putf(y + 2, 3, COLS - 4, "%-18s %14.4f %14.4f  (%+.4f)", "mean NLL (nats)", c->orig.mean_nll, c->comp.mean_nll,
            c->comp.mean_nll - c->orig.mean_nll);
    ui_putf(y + 3, 3, COLS - 4, "%-18s %14.3f %14.3f  (%+.1f%%)", "perplexity", c->orig.ppl, c->comp.ppl,
            c->orig.ppl > 0 ? 100 * (c->comp.ppl / c->orig.ppl - 1) : 0);
    ui_putf(y + 4, 3, COLS - 4, "%-18s %14.0f %14.0f", "tokens/s",
            c->orig.seconds > 0 ? (double)c->orig.n_tokens / c->orig.seconds : 0,
            c->comp.seconds > 0 ? (double)c->comp.n_tokens / c->comp.seconds : 0);
    ui_putf(y + 6, 3, COLS - 4, "text %s: %lld tokens, %s protocol, windows of %d", c->used.text,
            (long long)c->eval_tokens, c->used.proto == A3_PROTO_STREAM ? "stream" : "paragraphs", c->used.seqlen);
}

void view_commit_draw(ui_state *s)
{
    const ui_commit *c = &s->commit;
    int y = UI_HEADER_ROWS + 1;
    for (int r = UI_HEADER_ROWS; r < LINES - 1; r++) ui_blank(r, 0, COLS);
    const char *hints = "Esc back to the plan";
    switch (c->phase) {
    case UI_COMMIT_SUMMARY:
        summary(s, y);
        hints = "y apply  s sequential  k calib.  t text  p protocol  w window  n/Esc back";
        attron(A_BOLD);
        ui_put(y + 12, 3, COLS - 4, "Apply it? (y/n)");
        attroff(A_BOLD);
        break;
    case UI_COMMIT_RUNNING:
    case UI_COMMIT_EVALUATING:
        ui_putf(y, 1, COLS - 2, "%s %s", c->phase == UI_COMMIT_RUNNING ? "Applying the plan to" : "Evaluating",
                c->phase == UI_COMMIT_RUNNING ? c->out_dir : c->used.text);
        progress_bar(s, y + 2);
        hints = "Esc/x/c cancel";
        break;
    case UI_COMMIT_APPLIED:
        ui_putf(y, 1, COLS - 2, "Wrote %s in %.1f s", c->out_dir, c->seconds);
        if (c->rep.n_damped) ui_putf(y + 1, 3, COLS - 4, "%d OV groups needed damping", c->rep.n_damped);
        eval_settings(s, y + 3, "e evaluates: ");
        hints = "e evaluate  t text  p protocol  w window  Esc back";
        break;
    case UI_COMMIT_FAILED:
        attron(ui_attr(s, UI_PAIR_ERROR));
        ui_put(y, 1, COLS - 2, c->note);
        attroff(ui_attr(s, UI_PAIR_ERROR));
        if (c->params_comp) eval_settings(s, y + 2, "e evaluates: ");
        hints = c->params_comp ? "e evaluate  t text  p protocol  w window  ! full message  Esc back"
                               : "! full message  Esc back to the plan";
        break;
    case UI_COMMIT_EVALUATED:
        ui_putf(y, 1, COLS - 2, "Wrote %s; perplexity side by side:", c->out_dir);
        results(s, y + 2);
        eval_settings(s, y + 10, "e again with: ");
        hints = "e evaluate again  t text  p protocol  w window  Esc back";
        break;
    }
    ui_rule(s, LINES - 2, 0, COLS);
    view_status_draw(s, hints);
}

int view_commit_key(ui_state *s, int ch)
{
    ui_commit_phase ph = s->commit.phase;
    if (ph == UI_COMMIT_SUMMARY && (ch == 'y' || ch == 'Y' || ch == '\n' || ch == '\r' || ch == KEY_ENTER)) {
        ui_commit_confirm(s);
        return 1;
    }
    int applied = ph == UI_COMMIT_APPLIED || ph == UI_COMMIT_EVALUATED || (ph == UI_COMMIT_FAILED && s->commit.params_comp);
    if (applied && ch == 'e') { /* after a failed perplexity run too: the model is written */
        ui_commit_eval(s);
        return 1;
    }
    if (ph == UI_COMMIT_SUMMARY && (ch == 's' || ch == 'k')) { /* how it reduces */
        if (ch == 's') ui_seq_toggle(s);
        else ui_seq_ask_text(s);
        return 1;
    }
    if (ph == UI_COMMIT_SUMMARY || applied) { /* the perplexity settings */
        switch (ch) {
        case 't': ui_eval_ask_text(s); return 1;
        case 'p': ui_eval_toggle_protocol(s); return 1;
        case 'w': ui_eval_ask_seqlen(s); return 1;
        default: break;
        }
    }
    if (ch == '!') {
        ui_show_last_msg(s);
        return 1;
    }
    if (ch == 27 || ch == 'q' || ch == 'n' || ch == 'N' || (ph != UI_COMMIT_SUMMARY && (ch == '\n' || ch == '\r'))) {
        ui_commit_close(s);
        s->msg[0] = 0;
        return 1;
    }
    return 0;
}

int view_commit_progress(void *ctx, const char *stage, int64_t done, int64_t total)
{
    ui_state *s = ctx;
    ui_commit *c = &s->commit;
    double now = a3_now();
    c->done = done, c->total = total;
    nodelay(stdscr, TRUE); /* look at the keyboard without waiting */
    for (int ch; (ch = getch()) != ERR;)
        if (ch == 27 || ch == 'x' || ch == 'X' || ch == 'c' || ch == 'C') c->cancel = 1;
    timeout(UI_TICK_MS);
    if (ui_signal_pending()) c->cancel = 1;
    if (now - c->drawn >= 0.1 || done == total || c->cancel) { /* redraw at most 10 times a second */
        ui_draw(s);
        c->drawn = now;
    }
    return c->cancel;
}
