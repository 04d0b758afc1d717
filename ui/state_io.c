/* state_io: plan files and the prompts that ask for paths, numbers and
 * confirmations (see state.h). No curses here: the prompt view feeds keys
 * in, these functions decide what an answer does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state.h"

/* ---- files ------------------------------------------------------------------- */

int ui_save(ui_state *s, const char *path, int overwrite)
{
    a3_err e = {0};
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) { /* refused before any "overwrite?" question */
        ui_msg(s, 1, "not saved: %s is a directory; give a file name (e.g. %s/plan.json)", path, path);
        return -1;
    }
    if (!overwrite && access(path, F_OK) == 0) return 1;
    if (a3_plan_save(s->plan, path, &e)) {
        ui_msg(s, 1, "not saved: %s", e.msg);
        return -1;
    }
    snprintf(s->plan_path, sizeof s->plan_path, "%s", path);
    snprintf(s->plan->source, sizeof s->plan->source, "%s", path); /* later messages name the new file */
    s->saved_id = s->plan_id;
    ui_msg(s, 0, "saved %s", path);
    return 0;
}

int ui_open(ui_state *s, const char *path)
{
    a3_err e = {0};
    a3_plan *p = NULL;
    int rc = a3_plan_load(path, &p, &e);
    if (!rc) rc = a3_plan_validate(p, s->cache, 0, &e);
    if (!rc && s->model) rc = a3_plan_set_config(p, a3_model_config(s->model), &e);
    if (rc) {
        a3_plan_free(p);
        ui_msg(s, 1, "not opened: %s", e.msg);
        return -1;
    }
    int other = p->cache_fingerprint[0] && strcmp(p->cache_fingerprint, s->plan->cache_fingerprint) != 0;
    int stale = p->summary_stale;
    ui_replace_plan(s, p);
    snprintf(s->plan_path, sizeof s->plan_path, "%s", path);
    s->saved_id = s->plan_id;
    ui_msg(s, 0, "opened %s (%s%s%s)", path, a3_strategy_name(p->alloc.strategy),
           other ? "; planned on another calibration of this model" : "",
           stale ? "; its summary disagreed with its ranks and was recomputed" : "");
    return 0;
}

void ui_compare_close(ui_state *s)
{
    a3_plan_free(s->cmp);
    s->cmp = NULL;
    s->cmp_path[0] = 0;
    if (s->base == UI_VIEW_COMPARE) s->base = UI_VIEW_OVERVIEW;
    if (s->view == UI_VIEW_COMPARE) s->view = UI_VIEW_OVERVIEW;
}

int ui_compare_open(ui_state *s, const char *path)
{
    a3_err e = {0};
    a3_plan *p = NULL;
    int rc = a3_plan_load(path, &p, &e);
    if (!rc) rc = a3_plan_validate(p, s->cache, 0, &e);
    if (!rc) rc = a3_plan_predict(p, s->cache, s->cmp_rel, &s->cmp_loss, &e);
    if (rc) {
        a3_plan_free(p);
        ui_msg(s, 1, "not compared: %s", e.msg);
        return -1;
    }
    if (s->model) a3_plan_set_config(p, a3_model_config(s->model), &e); /* whole-model totals; dims already match */
    a3_plan_free(s->cmp);
    s->cmp = p;
    a3_plan_costs(p, &s->cmp_cost);
    snprintf(s->cmp_path, sizeof s->cmp_path, "%s", path);
    s->view = s->base = UI_VIEW_COMPARE;
    ui_msg(s, 0, "comparing with %s", path);
    return 0;
}

/* ---- prompts ------------------------------------------------------------------- */

static void ask(ui_state *s, ui_ask kind, const char *question, const char *choices, const char *initial)
{
    ui_prompt *p = &s->prompt;
    ui_view back = s->view == UI_VIEW_PROMPT ? p->back : s->view; /* a prompt after a prompt */
    int then_quit = s->view == UI_VIEW_PROMPT ? p->then_quit : 0;
    p->kind = kind, p->back = back, p->then_quit = then_quit;
    snprintf(p->question, sizeof p->question, "%s", question);
    snprintf(p->choices, sizeof p->choices, "%s", choices);
    snprintf(p->buf, sizeof p->buf, "%s", initial ? initial : "");
    p->len = strlen(p->buf);
    s->view = UI_VIEW_PROMPT;
}

void ui_ask_text(ui_state *s, ui_ask kind, const char *question, const char *initial)
{
    ask(s, kind, question, "", initial);
}

void ui_ask_choice(ui_state *s, ui_ask kind, const char *question, const char *choices)
{
    ask(s, kind, question, choices, NULL);
}

void ui_prompt_insert(ui_state *s, const char *utf8, size_t n)
{
    ui_prompt *p = &s->prompt;
    if (p->len + n >= sizeof p->buf) return; /* full: further keys are dropped */
    memcpy(p->buf + p->len, utf8, n);
    p->len += n;
    p->buf[p->len] = 0;
}

void ui_prompt_backspace(ui_state *s)
{
    ui_prompt *p = &s->prompt;
    while (p->len > 0) { /* one whole UTF-8 character: continuation bytes are 10xxxxxx */
        unsigned char c = (unsigned char)p->buf[--p->len];
        if ((c & 0xC0) != 0x80) break;
    }
    p->buf[p->len] = 0;
}

void ui_prompt_clear(ui_state *s)
{
    s->prompt.len = 0;
    s->prompt.buf[0] = 0;
}

static void close_prompt(ui_state *s) { s->view = s->prompt.back; }

void ui_prompt_cancel(ui_state *s)
{
    close_prompt(s);
    ui_msg(s, 0, "cancelled");
}

/* Leading and trailing spaces are never meant in a path or a number. */
static void trimmed(const char *in, char *out, size_t n)
{
    while (*in == ' ') in++;
    snprintf(out, n, "%s", in);
    for (size_t len = strlen(out); len > 0 && out[len - 1] == ' ';) out[--len] = 0;
}

static void submit_save(ui_state *s, const char *path, int then_quit)
{
    if (!*path) {
        ui_msg(s, 0, "not saved");
        return;
    }
    int rc = ui_save(s, path, 0);
    if (rc == 1) {
        snprintf(s->pending, sizeof s->pending, "%s", path);
        char q[160];
        snprintf(q, sizeof q, "%.100s exists. Overwrite it? (y/n)", path);
        ui_ask_choice(s, UI_ASK_OVERWRITE, q, "yn");
        s->prompt.then_quit = then_quit;
    } else if (rc == 0 && then_quit) s->view = UI_VIEW_QUIT;
}

static void submit_out_dir(ui_state *s, const char *dir)
{
    if (!*dir) {
        ui_msg(s, 0, "not applied");
        return;
    }
    snprintf(s->commit.out_dir, sizeof s->commit.out_dir, "%s", dir);
    s->commit.replace = 0;
    if (access(dir, F_OK) == 0) {
        char q[160];
        snprintf(q, sizeof q, "%.100s exists. Replace it? (y/n)", dir);
        ui_ask_choice(s, UI_ASK_REPLACE_DIR, q, "yn");
        return;
    }
    ui_commit_apply(s);
}

void ui_prompt_submit(ui_state *s)
{
    ui_prompt *p = &s->prompt;
    char text[UI_PATH_MAX];
    ui_ask kind = p->kind;
    int then_quit = p->then_quit;
    if (p->choices[0]) return; /* choice prompts answer with a key */
    trimmed(p->buf, text, sizeof text);
    close_prompt(s);
    switch (kind) {
    case UI_ASK_WIDTH: ui_set_width_text(s, text); break;
    case UI_ASK_BUDGET: ui_set_budget_text(s, text); break;
    case UI_ASK_CONTEXT: ui_set_context_text(s, text); break;
    case UI_ASK_MULTIPLE: ui_set_multiple_text(s, text); break;
    case UI_ASK_GOTO: ui_goto_text(s, text); break;
    case UI_ASK_COMPARE:
        if (*text) ui_compare_open(s, text);
        else ui_msg(s, 0, "nothing compared");
        break;
    case UI_ASK_SAVE_PATH: submit_save(s, text, then_quit); break;
    case UI_ASK_OPEN_PATH:
        if (*text) ui_open(s, text);
        else ui_msg(s, 0, "nothing opened");
        break;
    case UI_ASK_OUT_DIR: submit_out_dir(s, text); break;
    case UI_ASK_EVAL_TEXT:
        snprintf(s->eval.text, sizeof s->eval.text, "%s", text);
        if (*text) ui_msg(s, 0, "perplexity text: %s", text);
        else ui_msg(s, 0, "no perplexity text: the commit only applies");
        break;
    case UI_ASK_EVAL_SEQLEN: ui_eval_set_seqlen_text(s, text); break;
    case UI_ASK_SEQ_TEXT: ui_seq_set_text(s, text); break;
    default: break;
    }
}

void ui_prompt_choose(ui_state *s, int c)
{
    ui_prompt *p = &s->prompt;
    if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
    if (c == 27) c = 'n'; /* Esc: the safe answer */
    if (c <= 0 || c > 127 || !strchr(p->choices, c)) return;
    int then_quit = p->then_quit;
    close_prompt(s);
    switch (p->kind) {
    case UI_ASK_OVERWRITE:
        if (c == 'y' && ui_save(s, s->pending, 1) == 0 && then_quit) s->view = UI_VIEW_QUIT;
        else if (c != 'y') ui_msg(s, 0, "not saved");
        break;
    case UI_ASK_DISCARD:
        if (c == 'y') ui_ask_text(s, UI_ASK_OPEN_PATH, "Open plan:", s->plan_path);
        break;
    case UI_ASK_QUIT:
        if (c == 'y') s->view = UI_VIEW_QUIT;
        else if (c == 's') {
            ui_request_save(s);
            s->prompt.then_quit = 1;
        }
        break;
    case UI_ASK_REPLACE_DIR:
        if (c == 'y') {
            s->commit.replace = 1;
            ui_commit_apply(s);
        } else ui_msg(s, 0, "not applied");
        break;
    default: break;
    }
}

/* ---- requests from keys ----------------------------------------------------------- */

void ui_request_quit(ui_state *s)
{
    if (!ui_dirty(s)) {
        s->view = UI_VIEW_QUIT;
        return;
    }
    ui_ask_choice(s, UI_ASK_QUIT, "Unsaved changes to the plan. Quit without saving? (y quit, s save first, n stay)",
                  "ysn");
}

void ui_request_save(ui_state *s)
{
    ui_ask_text(s, UI_ASK_SAVE_PATH, "Save plan as:", s->plan_path[0] ? s->plan_path : "plan.json");
}

void ui_request_open(ui_state *s)
{
    if (ui_dirty(s))
        ui_ask_choice(s, UI_ASK_DISCARD, "Unsaved changes. Open another plan anyway? (y/n; z undoes the open)", "yn");
    else ui_ask_text(s, UI_ASK_OPEN_PATH, "Open plan:", s->plan_path);
}

void ui_request_budget(ui_state *s)
{
    char cur[64];
    const a3_plan *p = s->plan;
    if (p->budget == A3_BUDGET_NONE) snprintf(cur, sizeof cur, "params=20");
    else snprintf(cur, sizeof cur, "%s=%g", a3_budget_name(p->budget), p->budget_pct);
    ui_ask_text(s, UI_ASK_BUDGET, "Budget, % removed (params=20 or 20, kv=30, flops=25, none):", cur);
}

void ui_request_goto(ui_state *s)
{
    char q[64];
    snprintf(q, sizeof q, "Go to layer (0-%d):", s->plan->dims.n_layers - 1);
    ui_ask_text(s, UI_ASK_GOTO, q, "");
}

void ui_request_compare(ui_state *s)
{
    if (s->cmp) { /* v again: back to the comparison, or close it from there */
        if (s->view == UI_VIEW_COMPARE) ui_compare_close(s), ui_msg(s, 0, "comparison closed");
        else s->view = s->base = UI_VIEW_COMPARE;
        return;
    }
    ui_ask_text(s, UI_ASK_COMPARE, "Compare with saved plan:", s->plan_path);
}
