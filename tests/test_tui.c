/* tui: the rank planner, two ways.
 *
 * 1. Its UI model without a terminal: ui/state*.c hold every keystroke's
 *    effect as plain functions (no curses), so they are compiled in here
 *    and driven directly: edits, undo/redo, budgets, locks, files, and a
 *    cancelled commit that must leave nothing behind.
 * 2. The real program in tmux (send-keys, capture-pane), on a private
 *    socket (-L a3test-PID, -f /dev/null) so a user's sessions are never
 *    touched: stories260K's cache (made here from ../shared/data) and a
 *    synthetic 7B-shaped one (a3 cache synth). Screens are polled with a
 *    timeout, never slept on. Skipped with a message if tmux is missing.
 *
 * With A3_TUI_SCREENSHOTS=FILE the captured overview, detail, help and
 * commit screens are written to FILE as Markdown (docs/TUI.md). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <time.h>

#include "../ui/state.c"
#include "../ui/state_commit.c"
#include "../ui/state_io.c"
#include "a3/blas.h"
#include "helpers/run_a3.h"
#include "test.h"

static char g_tmp[64], g_a3[PATH_MAX], g_sock[64];
static char g_stories_cache[256], g_stories_model[256], g_7b_cache[256], g_tiny_cache[256];
static int g_have_tmux = -1;

/* ---- shell helpers ------------------------------------------------------------ */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static const char *a3_bin(void)
{
    if (g_a3[0]) return g_a3;
    const char *env = getenv("A3_BIN");
    if (!env || !realpath(env, g_a3)) {
        if (!realpath("build/a3", g_a3)) snprintf(g_a3, sizeof g_a3, "build/a3");
    }
    return g_a3;
}

static const char *tmpdir(void)
{
    if (!g_tmp[0] && !test_tmpdir(g_tmp, sizeof g_tmp)) g_tmp[0] = 0;
    return g_tmp;
}

/* A tiny GQA cache (2 layers, 2 KV groups, head_dim 8, d_ff 64). */
static const char *tiny_cache(void)
{
    if (g_tiny_cache[0]) return g_tiny_cache;
    snprintf(g_tiny_cache, sizeof g_tiny_cache, "%s/tiny.a3c", tmpdir());
    if (sh("'%s' cache synth --like tiny-gqa -o '%s' >/dev/null", a3_bin(), g_tiny_cache)) g_tiny_cache[0] = 0;
    return g_tiny_cache;
}

/* The synthetic 7B-shaped cache: 32 layers, 32 heads, 8 KV groups. */
static const char *cache_7b(void)
{
    if (g_7b_cache[0]) return g_7b_cache;
    snprintf(g_7b_cache, sizeof g_7b_cache, "%s/7b.a3c", tmpdir());
    if (sh("'%s' cache synth --like llama-7b --kv-heads 8 -o '%s' >/dev/null", a3_bin(), g_7b_cache))
        g_7b_cache[0] = 0;
    return g_7b_cache;
}

/* stories260K converted and calibrated (8 x 128 tokens): 0 without data. */
static int stories(void)
{
    if (g_stories_cache[0]) return 1;
    const char *d = test_shared_data();
    if (!d) return 0;
    char data[PATH_MAX];
    if (!realpath(d, data)) return 0;
    snprintf(g_stories_model, sizeof g_stories_model, "%s/stories260K", tmpdir());
    snprintf(g_stories_cache, sizeof g_stories_cache, "%s/stories.a3c", tmpdir());
    if (sh("'%s' convert '%s/models/stories260K/stories260K.bin' --tokenizer '%s/models/stories260K/tok512.bin' -o '%s' "
           ">/dev/null 2>&1",
           a3_bin(), data, data, g_stories_model) ||
        sh("'%s' calibrate '%s' --text '%s/text/tinystories/train-head.txt' --samples 8 --seqlen 128 -o '%s' "
           ">/dev/null 2>&1",
           a3_bin(), g_stories_model, data, g_stories_cache)) {
        fprintf(stderr, "  (could not make the stories260K cache)\n");
        g_stories_cache[0] = 0;
        return 0;
    }
    return 1;
}

/* ---- 1. the UI model without a terminal --------------------------------------------- */

static int open_state(ui_state *s, const char *cache, const char *plan, const char *model)
{
    ui_options o = {.cache = cache, .plan = plan, .model = model};
    a3_err e = {0};
    int rc = ui_state_init(s, &o, &e);
    if (rc) fprintf(stderr, "  ui_state_init: %s\n", e.msg);
    return rc;
}

static void test_state_edits_undo(void)
{
    ui_state s;
    if (!tiny_cache()[0] || open_state(&s, tiny_cache(), NULL, NULL)) {
        CHECK(0);
        return;
    }
    int64_t full = s.cost.compressible;
    CHECK(!ui_dirty(&s) && s.col == UI_COL_QK);
    ui_step(&s, -1, 0); /* QK: one RoPE pair less in every group of layer 0 */
    CHECK(a3_plan_qk(s.plan, 0)[0] == 6 && a3_plan_qk(s.plan, 0)[1] == 6);
    CHECK(s.cost.compressible < full && ui_dirty(&s));
    CHECK(s.plan->alloc.strategy == A3_STRATEGY_MANUAL);
    ui_move(&s, 0, 2); /* MLP */
    CHECK(ui_set_width_text(&s, "48") == 0 && s.plan->mlp[0] == 48);
    CHECK(ui_set_width_text(&s, "65") < 0 && s.msg_error); /* over d_ff 64 */
    ui_move(&s, 0, -2);
    CHECK(ui_set_width_text(&s, "5") < 0 && strstr(s.msg, "even")); /* QK ranks are whole pairs */
    ui_undo(&s);
    CHECK(s.plan->mlp[0] == 64 && a3_plan_qk(s.plan, 0)[0] == 6);
    ui_undo(&s);
    CHECK(a3_plan_qk(s.plan, 0)[0] == 8 && !ui_dirty(&s) && s.cost.compressible == full);
    ui_redo(&s);
    CHECK(a3_plan_qk(s.plan, 0)[0] == 6 && ui_dirty(&s));
    ui_step(&s, 1, 1); /* a big step up from 6 reaches full width */
    CHECK(a3_plan_qk(s.plan, 0)[0] == 8 && s.n_redo == 0);
    ui_state_free(&s);
}

static void test_state_groups_and_layers(void)
{
    ui_state s;
    if (!tiny_cache()[0] || open_state(&s, tiny_cache(), NULL, NULL)) {
        CHECK(0);
        return;
    }
    ui_move(&s, 0, 1); /* OV */
    ui_cycle_group(&s, 1);
    CHECK(s.group == 0);
    ui_step(&s, -1, 0);
    CHECK(a3_plan_ov(s.plan, 0)[0] == 7 && a3_plan_ov(s.plan, 0)[1] == 8); /* one group only */
    ui_cycle_group(&s, -1);
    CHECK(s.group == -1);
    ui_move(&s, 0, -5); /* the layer column: whole layer */
    CHECK(s.col == UI_COL_LAYER);
    CHECK(ui_set_width_text(&s, "48") < 0);       /* a layer takes a percentage */
    CHECK(ui_set_width_text(&s, "50%") == 0);
    CHECK(a3_plan_qk(s.plan, 0)[1] == 4 && a3_plan_ov(s.plan, 0)[0] == 4 && s.plan->mlp[0] == 32);
    ui_toggle_lock(&s); /* a lock pins the widths as they are (issue 15, TUI 7) */
    CHECK(s.plan->lock[0] == A3_LOCK_ALL && s.plan->mlp[0] == 32 && a3_plan_qk(s.plan, 0)[0] == 4);
    ui_step(&s, -1, 0);
    CHECK(s.plan->mlp[0] == 32 && strstr(s.msg, "locked"));
    ui_toggle_lock(&s);
    CHECK(s.plan->lock[0] == 0);
    ui_state_free(&s);
}

static void test_state_budget_allocate(void)
{
    ui_state s;
    int64_t target, removed, full;
    int met;
    if (!cache_7b()[0] || open_state(&s, cache_7b(), NULL, NULL)) {
        CHECK(0);
        return;
    }
    ui_allocate(&s, A3_STRATEGY_GREEDY);
    CHECK(s.msg_error && strstr(s.msg, "needs a budget")); /* greedy needs one */
    char greedy_msg[UI_MSG_MAX];
    snprintf(greedy_msg, sizeof greedy_msg, "%s", strstr(s.msg, "needs a budget"));
    ui_allocate(&s, A3_STRATEGY_UNIFORM); /* u refuses the same way (it used to reset every width) */
    CHECK(s.msg_error && strstr(s.msg, greedy_msg) && !ui_dirty(&s) && s.n_undo == 0);
    CHECK(ui_set_budget_text(&s, "kv 30%") == 0 && s.plan->budget == A3_BUDGET_KV && s.plan->budget_pct == 30);
    ui_budget_status(&s, &target, &removed, &full, &met);
    CHECK(!met && removed == 0);
    CHECK(s.opt != NULL); /* the budget-optimal plan, for the detail view */
    ui_allocate(&s, A3_STRATEGY_GREEDY);
    ui_budget_status(&s, &target, &removed, &full, &met);
    CHECK(met && removed >= target);
    CHECK(memcmp(s.plan->qk, s.opt->qk, 32 * 8 * sizeof(int)) == 0); /* a == the marker's ranks */
    ui_allocate(&s, A3_STRATEGY_UNIFORM);
    ui_budget_status(&s, &target, &removed, &full, &met);
    CHECK(met && removed >= target && s.plan->alloc.strategy == A3_STRATEGY_UNIFORM);
    CHECK(s.loss.objective >= s.opt->loss.objective); /* greedy is never worse by its own measure */
    /* a bare number is a params budget, as `a3 plan --budget 25` (not the current kind) */
    CHECK(ui_set_budget_text(&s, "25") == 0 && s.plan->budget == A3_BUDGET_PARAMS && s.plan->budget_pct == 25);
    CHECK(ui_set_budget_text(&s, "flops=101") < 0 && s.plan->budget_pct == 25);
    CHECK(ui_set_budget_text(&s, "none") == 0 && s.plan->budget == A3_BUDGET_NONE && !s.opt);
    CHECK(ui_set_context_text(&s, "4096") == 0 && s.plan->context == 4096);
    CHECK(ui_set_multiple_text(&s, "0") < 0 && s.plan->alloc.multiple == 1);
    ui_state_free(&s);
}

static void test_state_files(void)
{
    ui_state s;
    char path[128];
    if (!tiny_cache()[0] || open_state(&s, tiny_cache(), NULL, NULL)) {
        CHECK(0);
        return;
    }
    snprintf(path, sizeof path, "%s/state-plan.json", tmpdir());
    ui_step(&s, -1, 0);
    CHECK(ui_save(&s, path, 0) == 0 && !ui_dirty(&s));
    ui_step(&s, -1, 0);
    CHECK(ui_save(&s, path, 0) == 1 && ui_dirty(&s)); /* exists: the caller asks first */
    CHECK(ui_open(&s, path) == 0 && a3_plan_qk(s.plan, 0)[0] == 6 && !ui_dirty(&s));
    ui_undo(&s); /* the open is undoable: back to the unsaved 4 */
    CHECK(a3_plan_qk(s.plan, 0)[0] == 4 && ui_dirty(&s));
    CHECK(ui_open(&s, "/nonexistent/plan.json") < 0 && s.msg_error);
    ui_request_quit(&s);
    CHECK(s.view == UI_VIEW_PROMPT && s.prompt.kind == UI_ASK_QUIT);
    ui_prompt_choose(&s, 'n');
    CHECK(s.view == UI_VIEW_OVERVIEW);
    ui_request_save(&s);
    ui_prompt_clear(&s);
    ui_prompt_insert(&s, path, strlen(path));
    ui_prompt_submit(&s); /* exists: asks to overwrite */
    CHECK(s.view == UI_VIEW_PROMPT && s.prompt.kind == UI_ASK_OVERWRITE);
    ui_prompt_choose(&s, 'y');
    CHECK(s.view == UI_VIEW_OVERVIEW && !ui_dirty(&s));
    ui_state_free(&s);
}

static int cancel_at_once(void *ctx, const char *stage, int64_t done, int64_t total) { return 1; }

/* Lets apply finish, cancels the evaluation. */
static int cancel_after_apply(void *ctx, const char *stage, int64_t done, int64_t total)
{
    return strcmp(stage, "apply") != 0;
}

/* Cancelling apply from the progress callback writes nothing. */
static void test_state_commit_cancel(void)
{
    if (!stories()) SKIP("../shared/data not found: commit cancel not checked");
    ui_state s;
    if (open_state(&s, g_stories_cache, NULL, g_stories_model)) {
        CHECK(0);
        return;
    }
    CHECK(s.model_warning[0] == 0);
    CHECK(ui_set_budget_text(&s, "params=20") == 0);
    ui_allocate(&s, A3_STRATEGY_GREEDY);
    ui_commit_begin(&s);
    CHECK(s.view == UI_VIEW_COMMIT && s.commit.phase == UI_COMMIT_SUMMARY);
    s.progress = cancel_at_once, s.progress_ctx = &s;
    snprintf(s.commit.out_dir, sizeof s.commit.out_dir, "%s/cancelled", tmpdir());
    CHECK(ui_commit_apply(&s) == A3_ECANCELED);
    CHECK(s.commit.phase == UI_COMMIT_FAILED && strstr(s.commit.note, "cancelled: nothing was written"));
    CHECK(access(s.commit.out_dir, F_OK) != 0);
    /* Perplexity defaults are a3 eval's: stream, min(context, 2048) */
    CHECK(s.eval.proto == A3_PROTO_STREAM && s.eval.seqlen == a3_eval_default_seqlen(a3_model_config(s.model)));
    CHECK(s.eval.seqlen == (a3_model_config(s.model)->max_seq < 2048 ? a3_model_config(s.model)->max_seq : 2048));
    /* Applied, then the evaluation cancelled (Esc): the note says the
     * model WAS written, and where (issue 15, TUI 5). */
    s.progress = NULL;
    snprintf(s.eval.text, sizeof s.eval.text, "%s/text/tinystories/valid-head.txt", test_shared_data());
    s.eval.seqlen = 64;
    snprintf(s.commit.out_dir, sizeof s.commit.out_dir, "%s/written", tmpdir());
    s.progress = cancel_after_apply, s.progress_ctx = &s;
    CHECK(ui_commit_apply(&s) == A3_ECANCELED);
    CHECKF(strstr(s.commit.note, "perplexity cancelled; the compressed model was written to") &&
               strstr(s.commit.note, s.commit.out_dir),
           "%s", s.commit.note);
    CHECK(access(s.commit.out_dir, F_OK) == 0 && !strstr(s.commit.note, "nothing was written"));
    CHECK(s.commit.used.seqlen == 64 && s.commit.used.proto == A3_PROTO_STREAM);
    ui_state_free(&s);
}

/* Sequential reduction from the commit (issue 12): s turns it on with the
 * cache's own calibration tokens (recorded in the plan, undoable), the
 * commit applies it to the same bytes as 'a3 apply' of the saved plan,
 * the output records it; a missing calibration file fails naming it with
 * nothing written; an empty text is one-shot again. */
static void test_state_commit_sequential(void)
{
    if (!stories()) SKIP("../shared/data not found: sequential commit not checked");
    ui_state s;
    if (open_state(&s, g_stories_cache, NULL, g_stories_model)) {
        CHECK(0);
        return;
    }
    char d[UI_PATH_MAX + 64], plan[300], out[300], cli[300];
    CHECK(ui_set_budget_text(&s, "params=30") == 0);
    ui_allocate(&s, A3_STRATEGY_UNIFORM);
    ui_commit_begin(&s);
    CHECK(s.view == UI_VIEW_COMMIT && !s.plan->seq.on && strstr(ui_seq_describe(&s, d, sizeof d), "one-shot"));
    int dirty = ui_dirty(&s);
    ui_seq_toggle(&s);
    CHECK(s.plan->seq.on && s.plan->seq.n_texts == 1 && strstr(s.plan->seq.texts[0], "train-head.txt"));
    CHECK(s.plan->seq.samples == 8 && s.plan->seq.seqlen == 128 && s.plan->seq.seed == 0);
    CHECKF(strstr(ui_seq_describe(&s, d, sizeof d), "sequential on ") && strstr(d, "8 x 128 tokens"), "%s", d);
    CHECK(ui_dirty(&s) && (dirty || s.n_undo > 0));
    snprintf(plan, sizeof plan, "%s/seq-plan.json", tmpdir());
    a3_err e = {0};
    CHECK(a3_plan_save(s.plan, plan, &e) == A3_OK);
    snprintf(s.commit.out_dir, sizeof s.commit.out_dir, "%s/seq-out", tmpdir());
    s.eval.text[0] = 0; /* apply only */
    CHECKF(ui_commit_apply(&s) == 0 && s.commit.phase == UI_COMMIT_APPLIED, "%s", s.commit.note);
    snprintf(out, sizeof out, "%s/seq-out/config.json", tmpdir());
    CHECK(run_a3_file_has(out, "\"sequential\"") && run_a3_file_has(out, "train-head.txt"));
    snprintf(cli, sizeof cli, "%s/seq-cli", tmpdir());
    CHECK(sh("'%s' apply '%s' --cache '%s' --plan '%s' -o '%s' >/dev/null 2>&1", a3_bin(), g_stories_model,
             g_stories_cache, plan, cli) == 0);
    CHECK(sh("cmp -s '%s/seq-out/model.safetensors' '%s/model.safetensors'", tmpdir(), cli) == 0);
    /* a calibration file that is not there: named, nothing written */
    CHECK(ui_seq_set_text(&s, "no-such-calib.txt") == 0 && s.plan->seq.on);
    CHECK(strstr(ui_seq_describe(&s, d, sizeof d), "sequential on no-such-calib.txt, 8 x 128 tokens"));
    snprintf(s.commit.out_dir, sizeof s.commit.out_dir, "%s/seq-missing", tmpdir());
    CHECK(ui_commit_apply(&s) != 0 && s.commit.phase == UI_COMMIT_FAILED);
    CHECKF(strstr(s.commit.note, "no-such-calib.txt"), "%s", s.commit.note);
    CHECK(access(s.commit.out_dir, F_OK) != 0);
    CHECK(ui_seq_set_text(&s, "") == 0 && !s.plan->seq.on);
    ui_seq_toggle(&s);
    CHECK(s.plan->seq.on);
    ui_seq_toggle(&s);
    CHECK(!s.plan->seq.on && strstr(s.msg, "one-shot"));
    ui_state_free(&s);
}

/* Numbers as the views print them (issue 15, TUI 1 and 10): integers with
 * thousands grouped, group means rounded half up, no "-0.0%". */
static void test_state_formats(void)
{
    char b[64];
    CHECK(!strcmp(ui_fmt_int(b, sizeof b, 11008, 1), "11,008") && !strcmp(ui_fmt_int(b, sizeof b, 11007, 0), "11007"));
    CHECK(!strcmp(ui_fmt_int(b, sizeof b, 128, 1), "128") && !strcmp(ui_fmt_int(b, sizeof b, 1234567, 1), "1,234,567"));
    CHECK(!strcmp(ui_fmt_int(b, sizeof b, -1000, 1), "-1,000"));
    CHECK(!strcmp(ui_fmt_width(b, sizeof b, 8, 9, 17, 2, 1), "~9"));   /* 8.5: half up, not half to even ("~8") */
    CHECK(!strcmp(ui_fmt_width(b, sizeof b, 10, 11, 21, 2, 1), "~11")); /* 10.5 */
    CHECK(!strcmp(ui_fmt_width(b, sizeof b, 7, 7, 14, 2, 1), "7"));
    CHECK(!strcmp(ui_fmt_width(b, sizeof b, 11008, 11008, 11008, 1, 1), "11,008"));
    CHECK(ui_round_half_up(2.5) == 3 && ui_round_half_up(3.5) == 4 && ui_round_half_up(2.49) == 2);
    CHECK(!strcmp(ui_fmt_change(b, sizeof b, 100, 100), "0.0%"));
    CHECK(!strcmp(ui_fmt_change(b, sizeof b, 99999, 100000), "0.0%")); /* -0.001%: not "-0.0%" */
    CHECK(!strcmp(ui_fmt_change(b, sizeof b, 807, 1000), "-19.3%"));
    CHECK(!strcmp(ui_fmt_change(b, sizeof b, 1100, 1000), "+10.0%"));
}

/* L pins the width the cell has; a and u re-allocate around it (TUI 7). */
static void test_state_lock_pins(void)
{
    ui_state s;
    if (!cache_7b()[0] || open_state(&s, cache_7b(), NULL, NULL)) {
        CHECK(0);
        return;
    }
    ui_move(&s, 3, 2); /* layer 3, MLP */
    CHECK(ui_set_width_text(&s, "5000") == 0 && s.plan->mlp[3] == 5000);
    ui_toggle_lock(&s);
    CHECK(ui_locked(&s, 3, A3_COMP_MLP) && s.plan->mlp[3] == 5000 && strstr(s.msg, "locked at its width"));
    CHECK(ui_set_budget_text(&s, "params=20") == 0);
    CHECK(s.opt && s.opt->mlp[3] == 5000); /* the budget-optimal plan respects the pin too */
    for (int st = 0; st < 2; st++) {
        ui_allocate(&s, st ? A3_STRATEGY_GREEDY : A3_STRATEGY_UNIFORM);
        int64_t target, removed, full;
        int met;
        ui_budget_status(&s, &target, &removed, &full, &met);
        CHECKF(!s.msg_error && s.plan->mlp[3] == 5000 && met, "%s", s.msg);
        /* the pinned saving counts: other cells give up less than without it */
        int64_t others = 0;
        for (int l = 0; l < 32; l++) others += l == 3 ? 0 : 11008 - s.plan->mlp[l];
        CHECK(others >= 0);
    }
    ui_toggle_lock(&s);
    CHECK(!ui_locked(&s, 3, A3_COMP_MLP) && s.plan->mlp[3] == 5000);
    ui_state_free(&s);
}

/* Typed widths, budgets, saving and messages (TUI 8, 9, 10, 4). */
static void test_state_inputs_messages(void)
{
    ui_state s;
    char p1[128], p2[128], dir[128];
    if (!tiny_cache()[0] || open_state(&s, tiny_cache(), NULL, NULL)) {
        CHECK(0);
        return;
    }
    ui_move(&s, 0, 2); /* MLP, full 64 */
    const char *bad[] = {"1e1", "0x10", "+8", "8.0", "1e1%", " ", "-0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(ui_set_width_text(&s, bad[i]) < 0 && s.msg_error && s.plan->mlp[0] == 64, "'%s' accepted", bad[i]);
    CHECK(ui_set_width_text(&s, "10") == 0 && s.plan->mlp[0] == 10);
    CHECK(ui_set_width_text(&s, "50%") == 0 && s.plan->mlp[0] == 32);
    /* saving onto a directory is refused at once, not after "overwrite?" */
    snprintf(dir, sizeof dir, "%s/a-dir", tmpdir());
    CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST);
    ui_request_save(&s);
    ui_prompt_clear(&s);
    ui_prompt_insert(&s, dir, strlen(dir));
    ui_prompt_submit(&s);
    CHECKF(s.view == UI_VIEW_OVERVIEW && s.msg_error && strstr(s.msg, "is a directory"), "%s", s.msg);
    /* after save-as, messages name the new file, never the old one; and
     * no "plan: budget" from a plan that has no file */
    snprintf(p1, sizeof p1, "%s/first.json", tmpdir());
    snprintf(p2, sizeof p2, "%s/second.json", tmpdir());
    CHECK(ui_save(&s, p1, 1) == 0 && ui_save(&s, p2, 1) == 0);
    CHECK(ui_set_budget_text(&s, "params=99") == 0);
    ui_toggle_lock(&s); /* layer 0 MLP pinned: 99% unreachable */
    ui_allocate(&s, A3_STRATEGY_GREEDY);
    CHECKF(s.msg_error && strstr(s.msg, "unreachable") && !strstr(s.msg, "first.json") && strncmp(s.msg, "plan:", 5),
           "%s", s.msg);
    CHECK(a3_plan_validate(s.plan, NULL, 0, &(a3_err){0}) == 0 && !strcmp(s.plan->source, p2));
    /* the last message is kept whole for ! even after the status line is cleared */
    char last[UI_MSG_MAX];
    snprintf(last, sizeof last, "%s", s.msg);
    s.msg[0] = 0;
    ui_show_last_msg(&s);
    CHECK(s.view == UI_VIEW_MESSAGE && !strcmp(s.last, last) && s.last_error);
    ui_state_free(&s);
}

/* Without --plan, a model that does not fit the cache is named as such,
 * not as "the plan's model" (TUI 8). */
static void test_state_model_mismatch(void)
{
    char model[256];
    ui_state s;
    snprintf(model, sizeof model, "%s/synth-tiny", tmpdir());
    if (sh("'%s' synth --like tiny -o '%s' >/dev/null 2>&1", a3_bin(), model)) SKIP("a3 synth failed");
    ui_options o = {.cache = cache_7b(), .model = model};
    a3_err e = {0};
    CHECK(ui_state_init(&s, &o, &e) == A3_EMISMATCH);
    CHECKF(!strstr(e.msg, "plan") && strstr(e.msg, "not the model of cache") && strstr(e.msg, "the cache's"), "%s",
           e.msg);
}

/* Sort by loss or cost, go to a layer, compare with a saved plan (TUI 11). */
static void test_state_sort_goto_compare(void)
{
    ui_state s;
    char path[128];
    if (!cache_7b()[0] || open_state(&s, cache_7b(), NULL, NULL)) {
        CHECK(0);
        return;
    }
    CHECK(ui_set_budget_text(&s, "params=25") == 0);
    ui_allocate(&s, A3_STRATEGY_GREEDY);
    ui_move(&s, 0, 2); /* MLP column */
    ui_cycle_sort(&s);
    CHECK(s.sort == UI_SORT_LOSS && s.layer == 0);
    for (int r = 1; r < 32; r++) /* highest predicted MLP loss first */
        CHECK(s.rel[s.order[r - 1] * 3 + 2] >= s.rel[s.order[r] * 3 + 2]);
    ui_move_to_row(&s, 0);
    CHECK(s.layer == s.order[0]);
    ui_move(&s, 1, 0); /* down moves in the sorted order */
    CHECK(s.layer == s.order[1]);
    ui_cycle_sort(&s);
    CHECK(s.sort == UI_SORT_COST);
    for (int r = 1; r < 32; r++) CHECK(s.plan->mlp[s.order[r - 1]] >= s.plan->mlp[s.order[r]]);
    ui_cycle_sort(&s);
    CHECK(s.sort == UI_SORT_LAYER && s.order[5] == 5);
    CHECK(ui_goto_text(&s, "12") == 0 && s.layer == 12);
    CHECK(ui_goto_text(&s, "32") < 0 && s.msg_error && s.layer == 12);
    CHECK(ui_goto_text(&s, "1e1") < 0 && s.layer == 12);
    snprintf(path, sizeof path, "%s/cmp.json", tmpdir());
    CHECK(ui_save(&s, path, 1) == 0);
    ui_step(&s, -1, 1);
    CHECK(ui_compare_open(&s, path) == 0 && s.view == UI_VIEW_COMPARE && s.cmp);
    CHECK(s.cmp->mlp[12] == s.plan->mlp[12] + ui_step_size(&s, A3_COMP_MLP, 1) || s.cmp->mlp[12] > s.plan->mlp[12]);
    CHECK(s.cmp_cost.compressible > s.cost.compressible);
    CHECK(ui_compare_open(&s, "/nonexistent.json") < 0 && s.msg_error && s.cmp); /* the old one stays */
    ui_request_compare(&s); /* v in the compare view closes it */
    CHECK(!s.cmp && s.view == UI_VIEW_OVERVIEW);
    ui_state_free(&s);
}

/* Commit defaults and the progress line (Command line 10). */
static void test_state_commit_dir_progress(void)
{
    ui_state s;
    char buf[UI_PATH_MAX];
    memset(&s, 0, sizeof s);
    snprintf(s.model_dir, sizeof s.model_dir, "samples/sample-model/");
    snprintf(s.cache_path, sizeof s.cache_path, "demo-out/sample.cache");
    ui_commit_default_out(&s, buf, sizeof buf);
    CHECKF(!strcmp(buf, "demo-out/sample-model-a3"), "%s", buf); /* beside the cache, not in samples/ */
    snprintf(s.cache_path, sizeof s.cache_path, "model.cache");
    ui_commit_default_out(&s, buf, sizeof buf);
    CHECKF(!strcmp(buf, "sample-model-a3"), "%s", buf);
    s.commit.phase = UI_COMMIT_RUNNING, s.commit.t0 = 10;
    s.commit.done = 1, s.commit.total = 2;
    CHECK(strstr(ui_commit_progress_text(&s, 12, buf, sizeof buf), "1/2 layers") && strstr(buf, "ETA 2.0s"));
    s.commit.done = 2; /* every layer solved: the file is being written, no "ETA 0.0s" */
    CHECKF(strstr(ui_commit_progress_text(&s, 13, buf, sizeof buf), "finishing the model files") && !strstr(buf, "ETA"),
           "%s", buf);
}

/* ---- 2. the real program in tmux --------------------------------------------------------- */

static int have_tmux(void)
{
    if (g_have_tmux < 0) {
        g_have_tmux = sh("tmux -V >/dev/null 2>&1") == 0;
        snprintf(g_sock, sizeof g_sock, "a3test-%d", (int)getpid());
    }
    return g_have_tmux;
}

static int tmux(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int tmux(const char *fmt, ...)
{
    char args[3072];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return sh("tmux -f /dev/null -L %s %s >/dev/null 2>&1", g_sock, args);
}

/* The pane's text now. */
static void capture(char *out, size_t n)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "tmux -f /dev/null -L %s capture-pane -p -t tui 2>/dev/null", g_sock);
    FILE *p = popen(cmd, "r");
    size_t len = p ? fread(out, 1, n - 1, p) : 0;
    out[len] = 0;
    if (p) pclose(p);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char g_screen[65536];

/* Poll the pane until needle shows (or vanishes, with absent), up to
 * `secs`; g_screen keeps the last capture for messages. */
static int wait_screen(const char *needle, int absent, double secs)
{
    double end = now_s() + secs;
    for (;;) {
        capture(g_screen, sizeof g_screen);
        if ((strstr(g_screen, needle) != NULL) != absent) return 1;
        if (now_s() > end) {
            fprintf(stderr, "  timed out waiting for %s'%s'; screen:\n%s\n", absent ? "no " : "", needle, g_screen);
            return 0;
        }
        usleep(30000);
    }
}

static int wait_for(const char *needle) { return wait_screen(needle, 0, 10); }

/* Start `a3 tui ARGS` in a 100x30 pane; the shell prints the exit status
 * after it, which also shows that the terminal was given back. */
static int start_at(const char *env, const char *args, int w, int h, const char *wait)
{
    /* A session that outlives every test session: killing the last one
     * would stop the server, and a new-session racing its shutdown fails
     * (seen under load). */
    sh("tmux -f /dev/null -L %s has-session -t keep >/dev/null 2>&1 || "
       "tmux -f /dev/null -L %s new-session -d -s keep 'sleep 3600' >/dev/null 2>&1", g_sock, g_sock);
    tmux("kill-session -t tui");
    if (tmux("new-session -d -s tui -x %d -y %d \"cd '%s' && env LANG=C.UTF-8 LC_ALL=C.UTF-8 %s '%s' tui %s "
             "2>>tui-stderr.log; echo A3_EXIT=\\$?; sleep 60\"",
             w, h, tmpdir(), env, a3_bin(), args))
        return 0;
    return wait_screen(wait, 0, 90); /* loading a 70B-shaped cache under ASan on a loaded machine takes a while */
}

static int start(const char *env, const char *args) { return start_at(env, args, 100, 30, "? help"); }

static void keys(const char *k) { tmux("send-keys -t tui %s", k); }
static void text(const char *t) { tmux("send-keys -t tui -l '%s'", t); }

/* The planned parameter count in the header: "params 260K → 259K (...". */
static void header_params(char *out, size_t n)
{
    const char *p = strstr(g_screen, "params ");
    const char *a = p ? strstr(p, "→ ") : NULL;
    out[0] = 0;
    if (a) sscanf(a + strlen("→ "), "%31s", out);
    (void)n;
}

static char g_shot_overview[8192], g_shot_detail[8192], g_shot_help[8192], g_shot_commit[8192];
static char g_shot_summary[8192], g_shot_min[8192], g_shot_notice[4096], g_shot_70b[65536], g_shot_compare[8192];
static char g_shot_message[8192], g_shot_80[8192];

static void keep(char *dst, size_t n)
{
    size_t len = strnlen(g_screen, n - 1);
    memcpy(dst, g_screen, len);
    dst[len] = 0;
}

static void test_tui_stories_edit_save(void)
{
    if (!have_tmux()) SKIP("tmux not installed (scripts/setup.sh installs it): TUI not driven");
    if (!stories()) SKIP("../shared/data not found: stories260K TUI session not run");
    char before[32], after[32], plan[256], cmd[1024];
    snprintf(plan, sizeof plan, "%s/stories-plan.json", tmpdir());
    snprintf(cmd, sizeof cmd, "'%s'", g_stories_cache);
    CHECK(start("", cmd));
    CHECK(wait_for("QK rank /8") && wait_for("MLP width /172"));
    CHECK(strstr(g_screen, "5 layers") && strstr(g_screen, "budget  none"));
    header_params(before, sizeof before);
    keys("j l"); /* layer 1, OV */
    keys("Enter");
    CHECK(wait_for("layer 1 OV (mean of 4 groups): kept 8/8"));
    keys("-");
    CHECK(wait_for("kept 7/8"));
    header_params(after, sizeof after);
    CHECKF(before[0] && after[0] && strcmp(before, after), "params %s -> %s", before, after);
    CHECK(strstr(g_screen, "[modified]"));
    keys("Escape");
    CHECK(wait_for("QK rank /8"));
    keys("b C-u");
    text("params=25");
    keys("Enter");
    CHECK(wait_for("OVER BUDGET"));
    keys("a");
    CHECK(wait_for("budget  params 25% of compressible removed: met (removes 2"));
    keys("s C-u");
    text(plan);
    keys("Enter");
    CHECK(wait_for("saved "));
    CHECK(wait_screen("[modified]", 1, 5));
    struct stat st;
    CHECK(stat(plan, &st) == 0 && st.st_size > 200);
    CHECK(sh("grep -q '\"budget\": {\"kind\": \"params\", \"percent\": 25}' '%s'", plan) == 0);
    CHECK(sh("grep -q '\"strategy\": \"greedy\"' '%s'", plan) == 0);
    keys("s Enter"); /* the same path again: never overwritten without asking */
    CHECK(wait_for("exists. Overwrite it? (y/n)"));
    keys("n");
    CHECK(wait_for("not saved"));
    keys("h -"); /* layer 1 QK */
    CHECK(wait_for("[modified]"));
    keys("q");
    CHECK(wait_for("Unsaved changes to the plan. Quit without saving?"));
    keys("y");
    CHECK(wait_for("A3_EXIT=0"));
    /* reopen the saved plan */
    snprintf(cmd, sizeof cmd, "'%s' --plan '%s'", g_stories_cache, plan);
    CHECK(start("", cmd));
    CHECK(wait_for("plan stories-plan.json") && wait_for("met (removes 2"));
    CHECK(!strstr(g_screen, "[modified]"));
    keys("o"); /* and open it again from inside: the prompt offers its path */
    CHECK(wait_for("Open plan:"));
    keys("Enter");
    CHECK(wait_for("opened ") && wait_for("(greedy)"));
    keys("q");
    CHECK(wait_for("A3_EXIT=0"));
}

static void test_tui_7b_allocate(void)
{
    if (!have_tmux()) SKIP("tmux not installed: TUI not driven");
    char cmd[1024];
    if (!cache_7b()[0]) {
        CHECK(0);
        return;
    }
    snprintf(cmd, sizeof cmd, "'%s'", g_7b_cache);
    CHECK(start("NO_COLOR=1", cmd)); /* shades in the text, for the screenshots */
    CHECK(wait_for("MLP width /11,008") && wait_for("1/32 layers") && wait_for(" SYNTHETIC "));
    keys("NPage");
    CHECK(wait_for("24/32 layers"));
    keys("End");
    CHECK(wait_for("32/32 layers") && wait_for(">  31"));
    keys("Home");
    CHECK(wait_for("1/32 layers"));
    keys("b C-u");
    text("params=25");
    keys("Enter");
    CHECK(wait_for("OVER BUDGET  params: removes 0.0%, target 25% of compressible"));
    keys("a");
    CHECK(wait_for("budget  params 25% of compressible removed: met (removes 25.0%)"));
    CHECK(strstr(g_screen, "KV/token 128 KiB → ") && strstr(g_screen, "params 5.93B → "));
    keep(g_shot_overview, sizeof g_shot_overview);
    keys("l Enter"); /* OV of layer 0 */
    CHECK(wait_for("layer 0 OV (mean of 8 groups)") && wait_for("budget-optimal"));
    CHECK(strstr(g_screen, "g7") && strstr(g_screen, "singular values"));
    keys("Tab");
    CHECK(wait_for("layer 0 OV (group 0)") && wait_for("(this group "));
    keep(g_shot_detail, sizeof g_shot_detail);
    keys("Escape ?");
    CHECK(wait_for("Keys") && wait_for("allocate: greedy") && wait_for("lock: pin this width"));
    keep(g_shot_help, sizeof g_shot_help);
    keys("Space");
    CHECK(wait_for("MLP width /11,008"));
    keys("q");
    CHECK(wait_for("Quit without saving?"));
    keys("y");
    CHECK(wait_for("A3_EXIT=0"));
}

static void test_tui_resize_small(void)
{
    if (!have_tmux()) SKIP("tmux not installed: TUI not driven");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s'", tiny_cache());
    CHECK(start("", cmd));
    tmux("resize-window -t tui -x 80 -y 24");
    CHECK(wait_for("QK rank /8"));
    tmux("resize-window -t tui -x 60 -y 15");
    CHECK(wait_for("needs at least 72x20; this terminal is 60x15"));
    tmux("resize-window -t tui -x 40 -y 12"); /* the notice itself fits (wrapped), to its last word */
    CHECK(wait_for("is 40x12.") && wait_for("72x20") && wait_for("q to quit.") && wait_for("Enlarge it"));
    keep(g_shot_notice, sizeof g_shot_notice);
    tmux("resize-window -t tui -x 100 -y 30");
    CHECK(wait_for("QK rank /8"));
    keys("q");
    CHECK(wait_for("A3_EXIT=0"));
}

/* The sizes and caches of issue 15: 80x24 with a long plan name (state
 * markers stay, names give way), 72x20 (the minimum: every number of the
 * header still there), the 7B detail view in integers, a cut status
 * message readable in full with !, and a 70B-shaped cache at 200x60 with
 * the optimum marked, sorting and go-to. */
static void test_tui_sizes_and_truncation(void)
{
    if (!have_tmux()) SKIP("tmux not installed: TUI not driven");
    char cmd[1024], plan[256];
    if (!cache_7b()[0]) {
        CHECK(0);
        return;
    }
    /* a plan with a long name, opened at 80x24 and modified */
    snprintf(plan, sizeof plan, "%s/a-rather-long-plan-name-for-the-seven-b-model-v2.json", tmpdir());
    CHECK(sh("'%s' plan '%s' --budget 20 -o '%s' >/dev/null", a3_bin(), g_7b_cache, plan) == 0); /* --budget 20 = params */
    snprintf(cmd, sizeof cmd, "'%s' --plan '%s'", g_7b_cache, plan);
    CHECK(start_at("", cmd, 80, 24, "MLP width /11,008"));
    keys("-");
    CHECK(wait_for("[modified]"));
    CHECK(strstr(g_screen, " SYNTHETIC ") && strstr(g_screen, "-v2.json") && strstr(g_screen, "…"));
    keep(g_shot_80, sizeof g_shot_80);
    /* 72x20: the loss of every kind and every total keeps its number */
    tmux("resize-window -t tui -x 72 -y 20");
    CHECK(wait_for("MLP 1") && wait_for("[modified]"));
    CHECK(strstr(g_screen, "loss QK ") && strstr(g_screen, " OV ") && strstr(g_screen, "ctx 2048") &&
          strstr(g_screen, "% model)"));
    keep(g_shot_min, sizeof g_shot_min);
    keys("l Enter Tab"); /* the detail title at the minimum: numbers kept, wording shortened */
    CHECK(wait_for("layer 0 OV g0: kept ") && wait_for("%)") && wait_for("(g0 "));
    keys("Escape");
    CHECK(wait_for("OV rank /128"));
    /* the 7B MLP detail in integers; - changes the figure visibly */
    tmux("resize-window -t tui -x 80 -y 24");
    keys("l l Enter");
    CHECK(wait_for("layer 0 MLP: kept "));
    CHECK(!strstr(g_screen, "e+0") && !strstr(g_screen, "budget-optimal 1 "));
    keys("=");
    CHECK(wait_for("kept 11,008/11,008"));
    keys("-");
    CHECK(wait_for("kept 11,007/11,008") && wait_for("now 11,007"));
    CHECK(strstr(g_screen, "e+03") == NULL && strstr(g_screen, "e-0") != NULL); /* only the spectrum axis is in e-notation */
    /* a long error is cut on the status line, with the way to read it */
    keys("Escape 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 9 Enter");
    CHECK(wait_for("(! full)"));
    keys("!");
    CHECK(wait_for("Last message (an error):") && wait_for("exceeds the full"));
    keep(g_shot_message, sizeof g_shot_message);
    keys("Space");
    CHECK(wait_for("MLP width /11,008"));
    keys("q y");
    CHECK(wait_for("A3_EXIT="));
    /* 70B-shaped (40 layers here, to stay under 1 GB) at 200x60 */
    char c70[256];
    snprintf(c70, sizeof c70, "%s/70b.a3c", tmpdir());
    if (sh("'%s' cache synth --like llama-70b --layers 40 -o '%s' >/dev/null", a3_bin(), c70)) {
        CHECK(0);
        return;
    }
    snprintf(cmd, sizeof cmd, "'%s'", c70);
    CHECK(start_at("NO_COLOR=1", cmd, 200, 60, "MLP width /28,672"));
    keys("b C-u");
    text("20");
    keys("Enter a");
    CHECK(wait_for("params 20% of compressible removed: met"));
    CHECK(strstr(g_screen, "◆") && strstr(g_screen, "◆ optimal")); /* the optimum in the overview */
    keys("l l S");
    CHECK(wait_for("rows by predicted loss of the MLP") && wait_for("by loss") && wait_for("MLP width /28,672 ▼"));
    keep(g_shot_70b, sizeof g_shot_70b);
    keys(":");
    CHECK(wait_for("Go to layer (0-39):"));
    text("37");
    keys("Enter");
    CHECK(wait_for("layer 37"));
    keys("Enter");
    CHECK(wait_for("layer 37 MLP: kept ") && wait_for("neuron scores (log)") && wait_for("28,672"));
    keys("h Enter"); /* OV detail: the group chart says what its height means */
    keys("Enter");
    CHECK(wait_for("group loss vs width (top = its loss at 0)"));
    keys("q y");
    CHECK(wait_for("A3_EXIT="));
    unlink(c70);
}

/* TERM=dumb cannot position the cursor: a clear error, not a blank screen. */
static void test_tui_dumb_terminal(void)
{
    if (!have_tmux()) SKIP("tmux not installed: TUI not driven");
    tmux("kill-session -t tui");
    CHECK(tmux("new-session -d -s tui -x 100 -y 30 \"cd '%s' && env TERM=dumb '%s' tui '%s' 2>&1; echo A3_EXIT=\\$?; "
               "sleep 60\"",
               tmpdir(), a3_bin(), tiny_cache()) == 0);
    CHECK(wait_for("A3_EXIT=1"));
    CHECK(strstr(g_screen, "a3 tui: cannot draw on this terminal (TERM=dumb: this terminal cannot position the cursor)"));
}

/* v: compare with a saved plan, in the terminal. */
static void test_tui_compare(void)
{
    if (!have_tmux()) SKIP("tmux not installed: TUI not driven");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s'", tiny_cache());
    CHECK(start("", cmd));
    keys("s C-u");
    text("base.json");
    keys("Enter");
    CHECK(wait_for("saved base.json"));
    keys("j l -");
    CHECK(wait_for("[modified]"));
    keys("v Enter");
    CHECK(wait_for("comparing now (left) with base.json") && wait_for("1 of 2 layers differ"));
    CHECK(strstr(g_screen, "* 7/8") || strstr(g_screen, "~8/8")); /* one OV group narrowed: now/saved */
    keep(g_shot_compare, sizeof g_shot_compare);
    keys("v");
    CHECK(wait_for("comparison closed") && wait_for("OV rank /8"));
    keys("q y");
    CHECK(wait_for("A3_EXIT=0"));
}

/* NO_COLOR and a non-UTF-8 look: ASCII shades, arrows and rules. */
static void test_tui_ascii_no_color(void)
{
    if (!have_tmux()) SKIP("tmux not installed: TUI not driven");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s'", tiny_cache());
    CHECK(start("NO_COLOR=1 A3_TUI_ASCII=1", cmd));
    keys("b C-u");
    text("params=60");
    keys("Enter a");
    CHECK(wait_for("met (removes 6"));
    CHECK(strstr(g_screen, " -> ") && !strstr(g_screen, "→") && !strstr(g_screen, "█"));
    CHECK(strstr(g_screen, "loss <0.1% ") && strstr(g_screen, "..::--==++**##%%@@"));
    keys("Enter");
    CHECK(wait_for("relative loss vs kept width") && !strstr(g_screen, "⠀"));
    keys("q y");
    CHECK(wait_for("A3_EXIT=0"));
}

/* Ctrl-C: a clean plan quits at once (130); with changes it asks, and a
 * second Ctrl-C quits; SIGTERM quits at once (143). The shell's line after
 * it, on a clean screen, shows the terminal was restored. Also: commit
 * without --model says what is missing. */
static void test_tui_signals(void)
{
    if (!have_tmux()) SKIP("tmux not installed: TUI not driven");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s'", tiny_cache());
    CHECK(start("", cmd));
    keys("C-c");
    CHECK(wait_for("A3_EXIT=130"));
    CHECK(start("", cmd));
    keys("c");
    CHECK(wait_for("commit needs the model"));
    keys("-");
    CHECK(wait_for("[modified]"));
    keys("C-c");
    CHECK(wait_for("Unsaved changes to the plan"));
    keys("C-c");
    CHECK(wait_for("A3_EXIT=130"));
    /* SIGTERM to the a3 process (the pane shell's child, by pid) */
    CHECK(start("", cmd));
    keys("-");
    CHECK(wait_for("[modified]"));
    CHECK(sh("pid=$(tmux -f /dev/null -L %s list-panes -t tui -F '#{pane_pid}') && kill -TERM $(pgrep -P \"$pid\")",
             g_sock) == 0);
    CHECK(wait_for("A3_EXIT=143") && !strstr(g_screen, "QK rank"));
}

/* c: summary, confirmation, directory, apply, then perplexity side by side;
 * then a second evaluation cancelled with x. */
static void test_tui_commit(void)
{
    if (!have_tmux()) SKIP("tmux not installed: TUI not driven");
    if (!stories()) SKIP("../shared/data not found: commit not driven");
    char small[256], out[256];
    snprintf(small, sizeof small, "%s/small.txt", tmpdir());
    snprintf(out, sizeof out, "%s/stories260K-a3", tmpdir());
    CHECK(sh("head -c 6000 '%s/text/tinystories/valid-head.txt' > '%s'", test_shared_data(), small) == 0);
    CHECK(start("", "stories.a3c --model stories260K")); /* relative: the pane runs in the temporary directory */
    keys("b C-u");
    text("params=20");
    keys("Enter a");
    CHECK(wait_for("met (removes 2"));
    keys("c");
    CHECK(wait_for("Commit this plan") && wait_for("Apply it? (y/n)"));
    /* the evaluation settings are shown and changed before applying;
     * the defaults are a3 eval's (stories260K: context 512) */
    CHECK(wait_for("perplexity (no text: not evaluated), stream, windows of 512 tokens (a3 eval's defaults)"));
    keys("t C-u");
    text("small.txt");
    keys("Enter");
    CHECK(wait_for("perplexity small.txt, stream, windows of 512 tokens (a3 eval's defaults)"));
    keys("w C-u");
    text("1e1");
    keys("Enter");
    CHECK(wait_for("window length: expected an integer in [2, 512]"));
    keys("w C-u");
    text("256");
    keys("Enter");
    CHECK(wait_for("perplexity small.txt, stream, windows of 256 tokens") && !strstr(g_screen, "defaults"));
    CHECK(wait_for("reduction  one-shot (the paper's A3)"));
    keys("s"); /* on, with the cache's calibration, then off again */
    CHECK(wait_for("reduction  sequential on ") && wait_for("8 x 128 tokens"));
    keys("s");
    CHECK(wait_for("reduction  one-shot (the paper's A3)"));
    keep(g_shot_summary, sizeof g_shot_summary);
    keys("y");
    CHECK(wait_for("Write the compressed model to:") && wait_for("stories260K-a3"));
    keys("Enter"); /* applies, then evaluates with the settings shown */
    CHECK(wait_for("perplexity side by side") && wait_for("compressed") && wait_for("mean NLL"));
    CHECK(wait_for("text small.txt: ") && wait_for("stream protocol, windows of 256"));
    struct stat st;
    CHECK(stat(out, &st) == 0 && S_ISDIR(st.st_mode));
    keep(g_shot_commit, sizeof g_shot_commit);
    char big[PATH_MAX + 64], data[PATH_MAX];
    CHECK(realpath(test_shared_data(), data) != NULL); /* the TUI runs in the temporary directory */
    snprintf(big, sizeof big, "%s/text/tinystories/valid-head.txt", data);
    keys("t C-u");
    text(big);
    keys("Enter e x"); /* cancelled after apply: the model is there, and the note says so */
    CHECK(wait_for("perplexity cancelled; the compressed model was written to stories260K-a3"));
    CHECK(stat(out, &st) == 0);
    keys("Escape");
    CHECK(wait_for("QK rank /8"));
    keys("q y");
    CHECK(wait_for("A3_EXIT=0"));
}

/* Nothing on stderr in any session: no sanitizer report, no stray
 * message painted over the screen. */
static void test_tui_stderr_clean(void)
{
    if (!have_tmux()) SKIP("tmux not installed: TUI not driven");
    char path[128];
    struct stat st;
    snprintf(path, sizeof path, "%s/tui-stderr.log", tmpdir());
    if (stat(path, &st) != 0) SKIP("no TUI session ran");
    CHECKF(st.st_size == 0, "%s has %lld bytes", path, (long long)st.st_size);
    if (st.st_size) sh("head -c 4000 '%s' >&2", path);
}

/* ---- screenshots ------------------------------------------------------------------------------ */

static void write_shot(FILE *f, const char *title, const char *note, const char *shot)
{
    if (!shot[0]) return;
    fprintf(f, "## %s\n\n%s\n\n```\n", title, note);
    size_t n = strlen(shot);
    while (n > 0 && (shot[n - 1] == '\n' || shot[n - 1] == ' ')) n--;
    fwrite(shot, 1, n, f);
    fprintf(f, "\n```\n\n");
}

static void write_screenshots(void)
{
    const char *path = getenv("A3_TUI_SCREENSHOTS");
    if (!path || !g_shot_overview[0]) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "# a3 tui: screenshots\n\n"
               "Captured text of `a3 tui`, written by `tests/test_tui.c`\n"
               "(`A3_TUI_SCREENSHOTS=docs/TUI.md build/tests/test_tui`), not by hand: 100x30\n"
               "unless a section says otherwise. The 7B- and 70B-shaped caches are SYNTHETIC\n"
               "(`a3 cache synth --like llama-7b --kv-heads 8`, `--like llama-70b --layers 40`):\n"
               "their curves are made up. Colours do not survive the capture: in a terminal each\n"
               "bar is coloured by its predicted loss (with `NO_COLOR`, shaded `.:-=+*#%%@`).\n\n"
               "Reading the numbers: widths are integers (`11,008`); `~109` is the mean of a\n"
               "cell's KV groups when they differ, rounded half up. Percentages say their base:\n"
               "a budget is a share of the compressible part (QK, OV, MLP weights), the params\n"
               "change in the header is of the whole model (`of model`) when its size is known.\n"
               "A cell's loss is its predicted relative loss: the curve's loss at the kept width\n"
               "over its loss at width 0, in percent, as `a3 plan --show` prints it. `◆` marks\n"
               "the budget-optimal width (what `a` would choose); `L` a lock, which pins the\n"
               "width the cell has (`a` and `u` re-allocate around it). `m` sets the multiple\n"
               "(`a3 plan --multiple`): widths are multiples of it.\n\n");
    write_shot(f, "Overview", "After `b params=25` and `a` (greedy allocation), with `NO_COLOR=1`: every layer\n"
                              "a row; each cell the kept width, a bar of the kept fraction shaded by the\n"
                              "predicted relative loss with the budget-optimal width marked, and that loss.",
              g_shot_overview);
    write_shot(f, "Detail", "Enter on layer 0's OV cell, Tab to group 0: the loss curve against the kept width\n"
                            "(▲ current, ◆ budget-optimal), the spectrum on a log scale (largest value at the\n"
                            "top, 4 decades below it at the bottom, index 1 to head_dim under it), and every\n"
                            "KV group's loss curve: each sparkline runs from width 0 (left) to full width\n"
                            "(right), full height being that group's loss at width 0.", g_shot_detail);
    write_shot(f, "Help", "`?`", g_shot_help);
    write_shot(f, "80x24", "A long plan name gives way (shortened in the middle) so that `[modified]` and\n"
                           "`SYNTHETIC` stay on the title.", g_shot_80);
    write_shot(f, "72x20, the minimum", "Every figure of the header keeps its number; the wordings get shorter.",
               g_shot_min);
    write_shot(f, "40x12", "Below the minimum size, the notice is wrapped to fit.", g_shot_notice);
    write_shot(f, "The last message in full", "`!` after a message too long for the status line (which ends in\n"
                                              "`(! full)`).", g_shot_message);
    write_shot(f, "70B-shaped, 200x60", "`b 20`, `a`, then `S` on the MLP column: rows by predicted MLP loss, highest\n"
                                        "first (`S` again: by kept cost, then layer order); `:` goes to a layer.",
               g_shot_70b);
    write_shot(f, "Compare", "`v` with the saved `base.json` after narrowing one OV group of layer 1: now/saved\n"
                             "for every cell that differs.", g_shot_compare);
    write_shot(f, "Commit: the summary", "`c` on stories260K with `--model`. The perplexity settings default to\n"
                                         "`a3 eval`'s (stream protocol, windows of min(context, 2048), every token;\n"
                                         "the text samples/eval.txt when there is one): `t` text, `p` protocol, `w`\n"
                                         "window length. Here the text is set and the window changed to 256.",
               g_shot_summary);
    write_shot(f, "Commit: the result", "After `y` and the output directory (default: beside the cache): applied, then\n"
                                        "perplexity of the original and the compressed model side by side.",
               g_shot_commit);
    fclose(f);
}

int main(int argc, char **argv)
{
    /* Run the OpenBLAS kernel the a3 binary runs (it re-executes itself
     * the same way where OpenBLAS misdetects the CPU): the commit tests
     * compare this process's output with the CLI's byte for byte, and
     * float32 GEMMs of two kernels differ in the last bits. */
    a3_blas_startup(argc, argv);
    RUN(test_state_edits_undo);
    RUN(test_state_groups_and_layers);
    RUN(test_state_budget_allocate);
    RUN(test_state_files);
    RUN(test_state_commit_cancel);
    RUN(test_state_commit_sequential);
    RUN(test_state_formats);
    RUN(test_state_lock_pins);
    RUN(test_state_inputs_messages);
    RUN(test_state_model_mismatch);
    RUN(test_state_sort_goto_compare);
    RUN(test_state_commit_dir_progress);
    RUN(test_tui_stories_edit_save);
    RUN(test_tui_7b_allocate);
    RUN(test_tui_resize_small);
    RUN(test_tui_sizes_and_truncation);
    RUN(test_tui_dumb_terminal);
    RUN(test_tui_compare);
    RUN(test_tui_ascii_no_color);
    RUN(test_tui_signals);
    RUN(test_tui_commit);
    RUN(test_tui_stderr_clean);
    write_screenshots();
    if (g_have_tmux > 0) tmux("kill-server");
    if (g_tmp[0]) sh("rm -rf '%s'", g_tmp);
    return test_summary("tui");
}
