/* state_commit: the commit flow: plan summary, a3_apply into a directory,
 * then perplexity of the original and the compressed model on a text file
 * (see state.h). Both runs happen on the calling thread; the progress
 * callback the dispatcher installed redraws and returns non-zero when the
 * user cancels, which a3_apply and a3_eval_nll turn into A3_ECANCELED
 * with nothing written. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "a3/tokenizer.h"
#include "state.h"

void ui_commit_begin(ui_state *s)
{
    if (!s->model) {
        ui_msg(s, 1, "commit needs the model: start as  a3 tui %s --model MODEL_DIR", s->cache_path);
        return;
    }
    if (s->model_warning[0]) {
        ui_msg(s, 1, "commit refused: %s", s->model_warning);
        return;
    }
    if (!s->loss_ok) {
        ui_msg(s, 1, "commit refused: the plan does not fit the cache");
        return;
    }
    memset(&s->commit, 0, sizeof s->commit);
    s->commit.phase = UI_COMMIT_SUMMARY;
    s->view = UI_VIEW_COMMIT;
    s->msg[0] = 0;
}

/* Default output: "<model dir>-a3" next to the model. */
static void default_out(const ui_state *s, char *buf, size_t n)
{
    char dir[UI_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", s->model_dir);
    for (size_t len = strlen(dir); len > 1 && dir[len - 1] == '/';) dir[--len] = 0;
    snprintf(buf, n, "%.*s-a3", (int)(n > 4 ? n - 4 : 0), dir);
}

void ui_commit_confirm(ui_state *s)
{
    char def[UI_PATH_MAX];
    default_out(s, def, sizeof def);
    ui_ask_text(s, UI_ASK_OUT_DIR, "Write the compressed model to:", def);
}

void ui_commit_offer_eval(ui_state *s)
{
    const char *def = access("samples/eval.txt", R_OK) == 0 ? "samples/eval.txt" : "";
    ui_ask_text(s, UI_ASK_EVAL_TEXT, "Perplexity on text file (empty: skip):", s->commit.text[0] ? s->commit.text : def);
}

void ui_commit_close(ui_state *s)
{
    s->view = s->base;
}

static void start_step(ui_state *s, ui_commit_phase phase, const char *stage)
{
    ui_commit *c = &s->commit;
    c->phase = phase;
    snprintf(c->stage, sizeof c->stage, "%s", stage);
    c->done = c->total = 0;
    c->cancel = 0;
    c->t0 = a3_now();
    s->view = UI_VIEW_COMMIT;
}

static int step_failed(ui_state *s, int rc, const a3_err *e, const char *what)
{
    ui_commit *c = &s->commit;
    c->phase = UI_COMMIT_FAILED;
    if (rc == A3_ECANCELED) snprintf(c->note, sizeof c->note, "%s cancelled: nothing was written", what);
    else snprintf(c->note, sizeof c->note, "%s failed: %s", what, e->msg);
    ui_msg(s, 1, "%s", c->note);
    return rc;
}

int ui_commit_apply(ui_state *s)
{
    ui_commit *c = &s->commit;
    a3_err e = {0};
    start_step(s, UI_COMMIT_RUNNING, "apply");
    int rc = a3_plan_validate(s->plan, s->cache, 0, &e);
    a3_apply_opts o = {.dtype = A3_DT_COUNT, .force = c->replace, .progress = s->progress, .ctx = s->progress_ctx};
    if (!rc) rc = a3_apply(s->model, s->cache, s->plan, &o, c->out_dir, &c->rep, &e);
    c->seconds = a3_now() - c->t0;
    if (rc) return step_failed(s, rc, &e, "apply");
    c->params_orig = s->full.total >= 0 ? s->full.total : s->full.compressible;
    c->params_comp = s->cost.total >= 0 ? s->cost.total : s->cost.compressible;
    c->phase = UI_COMMIT_APPLIED;
    ui_msg(s, 0, "wrote %s in %.1f s", c->out_dir, c->seconds);
    ui_commit_offer_eval(s);
    return 0;
}

/* Token windows of the text as `a3 eval` makes them (stream protocol). */
static int eval_seqs(ui_state *s, a3_seqs *seqs, a3_err *e)
{
    char *text = NULL;
    size_t len = 0;
    a3_tokenizer *tok = NULL;
    const a3_config *cfg = a3_model_config(s->model);
    int seqlen = cfg->max_seq > 1 && cfg->max_seq < UI_EVAL_SEQLEN ? cfg->max_seq : UI_EVAL_SEQLEN;
    int rc = a3_read_file(s->commit.text, (size_t)1 << 30, &text, &len, e);
    if (!rc) rc = a3_tok_load_dir(s->model_dir, &tok, e);
    if (!rc) rc = a3_seqs_from_text(tok, text, len, A3_PROTO_STREAM, seqlen, 0, UI_EVAL_MAX_TOKENS, seqs, e);
    if (!rc && seqs->n_tokens < 2) {
        a3_seqs_free(seqs);
        rc = a3_err_set(e, A3_EINVAL, "%s: too little text to score", s->commit.text);
    }
    s->commit.eval_seqlen = seqlen;
    s->commit.eval_tokens = rc ? 0 : seqs->n_tokens;
    free(text);
    a3_tok_free(tok);
    return rc;
}

int ui_commit_eval(ui_state *s)
{
    ui_commit *c = &s->commit;
    a3_err e = {0};
    a3_seqs seqs;
    a3_model *cm = NULL;
    memset(&seqs, 0, sizeof seqs);
    start_step(s, UI_COMMIT_EVALUATING, "reading text");
    int rc = eval_seqs(s, &seqs, &e);
    if (!rc) {
        snprintf(c->stage, sizeof c->stage, "perplexity, original");
        rc = a3_eval_nll(s->model, &seqs, &c->orig, s->progress, s->progress_ctx, &e);
    }
    if (!rc) rc = a3_model_open(c->out_dir, &cm, &e);
    if (!rc) {
        snprintf(c->stage, sizeof c->stage, "perplexity, compressed");
        c->done = c->total = 0;
        rc = a3_eval_nll(cm, &seqs, &c->comp, s->progress, s->progress_ctx, &e);
    }
    a3_model_free(cm);
    a3_seqs_free(&seqs);
    if (rc) return step_failed(s, rc, &e, "perplexity");
    c->phase = UI_COMMIT_EVALUATED;
    ui_msg(s, 0, "perplexity %.3f -> %.3f on %lld tokens", c->orig.ppl, c->comp.ppl, (long long)c->eval_tokens);
    return 0;
}
