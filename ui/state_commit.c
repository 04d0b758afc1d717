/* state_commit: the commit flow: plan summary with the perplexity settings,
 * a3_apply into a directory, then perplexity of the original and the
 * compressed model on a text file (see state.h). Both runs happen on the
 * calling thread; the progress callback the dispatcher installed redraws
 * and returns non-zero when the user cancels, which a3_apply and
 * a3_eval_nll turn into A3_ECANCELED (apply then writes nothing; a
 * cancelled evaluation leaves the written model in place and says so). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "a3/sequential.h"
#include "a3/tokenizer.h"
#include "state.h"

/* The defaults of `a3 eval`: stream protocol, windows of min(context,
 * 2048), every token; the text is samples/eval.txt when there is one. */
static void eval_defaults(ui_state *s)
{
    ui_eval_opts *e = &s->eval;
    if (e->seqlen > 0) return; /* already set (and maybe changed by the user) */
    e->proto = A3_PROTO_STREAM;
    e->seqlen = a3_eval_default_seqlen(a3_model_config(s->model));
    if (!e->text[0] && access("samples/eval.txt", R_OK) == 0) snprintf(e->text, sizeof e->text, "samples/eval.txt");
}

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
    eval_defaults(s);
    memset(&s->commit, 0, sizeof s->commit);
    s->commit.phase = UI_COMMIT_SUMMARY;
    s->view = UI_VIEW_COMMIT;
    s->msg[0] = 0;
}

static size_t strip_slashes(char *p)
{
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/') p[--len] = 0;
    return len;
}

/* "<model name>-a3" in the cache's directory: the cache is already an
 * output of the user's, while the model may sit in a source tree
 * (samples/sample-model) that a3 should not write into. */
void ui_commit_default_out(const ui_state *s, char *buf, size_t n)
{
    char model[UI_PATH_MAX], dir[UI_PATH_MAX];
    snprintf(model, sizeof model, "%s", s->model_dir);
    size_t len = strip_slashes(model);
    const char *name = model;
    for (size_t i = 0; i + 1 < len; i++)
        if (model[i] == '/') name = model + i + 1;
    snprintf(dir, sizeof dir, "%s", s->cache_path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(buf, n, "%.*s-a3", (int)(n > 4 ? n - 4 : 0), name);
    else {
        slash[1] = 0;
        snprintf(buf, n, "%.*s%.*s-a3", (int)(UI_PATH_MAX / 2), dir, (int)(UI_PATH_MAX / 2 - 4), name);
    }
}

void ui_commit_confirm(ui_state *s)
{
    char def[UI_PATH_MAX];
    ui_commit_default_out(s, def, sizeof def);
    ui_ask_text(s, UI_ASK_OUT_DIR, "Write the compressed model to:", def);
}

void ui_commit_close(ui_state *s)
{
    s->view = s->base;
}

/* ---- perplexity settings ------------------------------------------------------ */

void ui_eval_ask_text(ui_state *s)
{
    ui_ask_text(s, UI_ASK_EVAL_TEXT, "Perplexity text file (empty: no evaluation):", s->eval.text);
}

void ui_eval_toggle_protocol(ui_state *s)
{
    s->eval.proto = s->eval.proto == A3_PROTO_STREAM ? A3_PROTO_PARAGRAPHS : A3_PROTO_STREAM;
    ui_msg(s, 0, "perplexity protocol: %s", s->eval.proto == A3_PROTO_STREAM ? "stream" : "paragraphs");
}

void ui_eval_ask_seqlen(ui_state *s)
{
    char cur[32];
    snprintf(cur, sizeof cur, "%d", s->eval.seqlen);
    ui_ask_text(s, UI_ASK_EVAL_SEQLEN, "Perplexity window length (tokens):", cur);
}

int ui_eval_set_seqlen_text(ui_state *s, const char *text)
{
    int max = s->model ? a3_model_config(s->model)->max_seq : 1 << 20;
    char *end;
    long v = strtol(text, &end, 10);
    while (*end == ' ') end++;
    if (end == text || *end || v < 2 || v > max) {
        ui_msg(s, 1, "window length: expected an integer in [2, %d] (the model's context), got '%s'", max, text);
        return -1;
    }
    s->eval.seqlen = (int)v;
    ui_msg(s, 0, "perplexity windows of %ld tokens", v);
    return 0;
}

char *ui_eval_describe(const ui_state *s, const ui_eval_opts *e, char *buf, size_t n)
{
    int dflt = s->model && e->proto == A3_PROTO_STREAM && e->seqlen == a3_eval_default_seqlen(a3_model_config(s->model));
    snprintf(buf, n, "%s, %s, windows of %d tokens%s", e->text[0] ? e->text : "(no text: not evaluated)",
             e->proto == A3_PROTO_STREAM ? "stream" : "paragraphs", e->seqlen, dflt ? " (a3 eval's defaults)" : "");
    return buf;
}

/* ---- sequential reduction -------------------------------------------------------- */

/* The plan with q as its sequential setting, as an undoable edit. */
static void set_seq(ui_state *s, const a3_plan_seq *q)
{
    a3_plan *p = NULL;
    a3_err e = {0};
    if (a3_plan_copy(s->plan, &p, &e)) {
        ui_msg(s, 1, "%s", e.msg);
        return;
    }
    p->seq = *q;
    ui_replace_plan(s, p);
}

void ui_seq_ask_text(ui_state *s)
{
    ui_ask_text(s, UI_ASK_SEQ_TEXT, "Calibration text for sequential reduction (empty: one-shot):",
                s->plan->seq.n_texts ? s->plan->seq.texts[0] : "");
}

void ui_seq_toggle(ui_state *s)
{
    a3_plan_seq q = {0};
    a3_err e = {0};
    char d[UI_PATH_MAX + 64];
    if (s->plan->seq.on) {
        set_seq(s, &q);
        ui_msg(s, 0, "reduction: %s", ui_seq_describe(s, d, sizeof d));
    } else if (a3_plan_seq_from_cache(&q, s->cache, &e) == A3_OK) {
        set_seq(s, &q);
        ui_msg(s, 0, "reduction: %s (the cache's calibration; k changes the text)", ui_seq_describe(s, d, sizeof d));
    } else ui_seq_ask_text(s); /* the cache does not say what it was calibrated on */
}

int ui_seq_set_text(ui_state *s, const char *text)
{
    a3_plan_seq q = {0}, from = s->plan->seq;
    a3_err e = {0};
    char d[UI_PATH_MAX + 64];
    if (!from.on) a3_plan_seq_from_cache(&from, s->cache, &e); /* its windows and seed, if it says */
    if (*text && a3_plan_seq_set(&q, &text, 1, NULL, from.samples, from.seqlen, from.seed, &e)) {
        ui_msg(s, 1, "calibration text: %s", e.msg);
        return -1;
    }
    set_seq(s, &q);
    ui_msg(s, 0, "reduction: %s", ui_seq_describe(s, d, sizeof d));
    return 0;
}

char *ui_seq_describe(const ui_state *s, char *buf, size_t n)
{
    const a3_plan_seq *q = &s->plan->seq;
    if (!q->on) {
        snprintf(buf, n, "one-shot (the paper's A3)");
        return buf;
    }
    char sz[48];
    if (q->samples && q->seqlen) snprintf(sz, sizeof sz, "%d x %d tokens", q->samples, q->seqlen);
    else snprintf(sz, sizeof sz, "%d x %d tokens", q->samples ? q->samples : A3_SEQ_DEFAULT_SAMPLES,
                  q->seqlen ? q->seqlen : A3_SEQ_DEFAULT_SEQLEN);
    snprintf(buf, n, "sequential on %s%s, %s", q->n_texts ? q->texts[0] : q->ids,
             q->n_texts > 1 ? " and more" : "", sz);
    return buf;
}

/* ---- running -------------------------------------------------------------------- */

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
    int written = c->params_comp != 0; /* apply finished: the model is on disk */
    c->phase = UI_COMMIT_FAILED;
    if (rc == A3_ECANCELED && written)
        snprintf(c->note, sizeof c->note, "%s cancelled; the compressed model was written to %.1000s", what, c->out_dir);
    else if (rc == A3_ECANCELED) snprintf(c->note, sizeof c->note, "%s cancelled: nothing was written", what);
    else if (written)
        snprintf(c->note, sizeof c->note, "%s failed (the compressed model was written to %.400s): %.700s", what,
                 c->out_dir, e->msg);
    else snprintf(c->note, sizeof c->note, "%s failed: %.1000s", what, e->msg);
    ui_msg(s, 1, "%s", c->note);
    return rc;
}

int ui_commit_apply(ui_state *s)
{
    ui_commit *c = &s->commit;
    a3_err e = {0};
    start_step(s, UI_COMMIT_RUNNING, "apply");
    c->params_comp = 0;
    int rc = a3_plan_validate(s->plan, s->cache, 0, &e);
    a3_apply_opts o = {.dtype = A3_DT_COUNT, .force = c->replace, .progress = s->progress, .ctx = s->progress_ctx};
    a3_seq *seq = NULL;
    if (!rc && s->plan->seq.on) { /* the solver reports tokens through the layers instead */
        a3_seq_opts so = a3_seq_opts_default(); /* the CLI's */
        so.progress = s->progress, so.ctx = s->progress_ctx;
        snprintf(c->stage, sizeof c->stage, "sequential: reading the calibration text");
        rc = a3_seq_from_plan(s->model, s->plan, s->cache, &s->plan->seq, 1, &so, &seq, &e);
        if (!rc) o.solver = a3_seq_solver(seq), o.progress = NULL;
    }
    if (!rc) rc = a3_apply(s->model, s->cache, s->plan, &o, c->out_dir, &c->rep, &e);
    a3_seq_free(seq);
    c->seconds = a3_now() - c->t0;
    if (rc) return step_failed(s, rc, &e, "apply");
    c->params_orig = s->full.total >= 0 ? s->full.total : s->full.compressible;
    c->params_comp = s->cost.total >= 0 ? s->cost.total : s->cost.compressible;
    c->phase = UI_COMMIT_APPLIED;
    ui_msg(s, 0, "wrote %s in %.1f s", c->out_dir, c->seconds);
    return s->eval.text[0] ? ui_commit_eval(s) : 0;
}

/* Token windows of the text as `a3 eval` makes them with these settings. */
static int eval_seqs(ui_state *s, a3_seqs *seqs, a3_err *e)
{
    char *text = NULL;
    size_t len = 0;
    a3_tokenizer *tok = NULL;
    const ui_eval_opts *o = &s->eval;
    int rc = a3_read_file(o->text, (size_t)1 << 32, &text, &len, e);
    if (!rc) rc = a3_tok_load_dir(s->model_dir, &tok, e);
    if (!rc) rc = a3_seqs_from_text(tok, text, len, o->proto, o->seqlen, 0, 0, seqs, e);
    if (!rc && seqs->n_tokens < 2) {
        a3_seqs_free(seqs);
        rc = a3_err_set(e, A3_EINVAL, "%s: too little text to score", o->text);
    }
    s->commit.used = *o;
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
    if (!s->eval.text[0]) {
        ui_msg(s, 1, "no text to evaluate on: t sets one");
        return -1;
    }
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

char *ui_commit_progress_text(const ui_state *s, double now, char *buf, size_t n)
{
    const ui_commit *c = &s->commit;
    int seq = s->plan && s->plan->seq.on; /* the solver counts tokens through the layers */
    double el = now - c->t0;
    if (c->phase == UI_COMMIT_RUNNING && c->total > 0 && c->done >= c->total && !seq) {
        /* a3_apply reports layers; lm_head, config and tokenizer follow the last one */
        snprintf(buf, n, "%lld/%lld layers solved; finishing the model files  %.1fs", (long long)c->done,
                 (long long)c->total, el);
        return buf;
    }
    const char *unit = c->phase == UI_COMMIT_RUNNING && !seq ? " layers" : " tokens";
    if (c->done <= 0 || c->total <= 0) snprintf(buf, n, "starting  %.1fs", el);
    else
        snprintf(buf, n, "%lld/%lld%s  %.1fs  ETA %.1fs", (long long)c->done, (long long)c->total, unit, el,
                 el * (double)(c->total - c->done) / (double)c->done);
    return buf;
}
