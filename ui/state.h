/* state: the rank planner's UI model, without curses.
 *
 * Everything a keystroke changes lives here as plain functions over one
 * ui_state: the selection, edits to the plan (each an undoable step: the
 * previous plan is kept as an a3_plan_copy), the budget, files, prompts and
 * the commit flow (apply, then perplexity). The views (view_*.c) only map
 * keys to these calls and draw what the state holds, so this file can be
 * unit-tested and benchmarked without a terminal. The numbers all come
 * from the plan module (costs, predicted loss, allocators); nothing here
 * re-derives them.
 *
 * After any change the derived values (costs, per-layer predicted loss,
 * budget status) are recomputed at once: O(layers * KV groups * head_dim),
 * well under a millisecond for a 7B-shaped model. The budget-optimal plan
 * (what the greedy allocator would pick under the current budget, shown as
 * a marker in the detail view) is recomputed only when something it
 * depends on changes (budget, context, KV dtype, locks and locked widths,
 * multiple). */
#ifndef A3_UI_STATE_H
#define A3_UI_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "a3/apply.h"
#include "a3/cache.h"
#include "a3/eval.h"
#include "a3/model.h"
#include "a3/plan.h"
#include "a3/util.h"

#define UI_UNDO_MAX 256     /* undo depth; the oldest step is dropped beyond */
#define UI_PATH_MAX 1024
#define UI_MSG_MAX 1280 /* room for an a3_err message and a path */

/* The one state enum: which view has the keyboard. Help and prompts are
 * drawn over the base view (overview or detail) or the commit view. */
typedef enum {
    UI_VIEW_OVERVIEW, /* every layer a row, QK / OV / MLP columns */
    UI_VIEW_DETAIL,   /* curves of the selected cell */
    UI_VIEW_COMPARE,  /* the plan against a saved one, layer by layer */
    UI_VIEW_HELP,     /* every key, over the base view */
    UI_VIEW_MESSAGE,  /* the last message in full, over the base view */
    UI_VIEW_PROMPT,   /* a question on the bottom lines */
    UI_VIEW_COMMIT,   /* summary, apply progress, perplexity */
    UI_VIEW_QUIT,     /* the main loop ends */
    UI_VIEW_COUNT
} ui_view;

/* Selected column: the layer label (whole layer) or one component. */
enum { UI_COL_LAYER = 0, UI_COL_QK = 1, UI_COL_OV = 2, UI_COL_MLP = 3, UI_COL_COUNT };

typedef enum {
    UI_ASK_WIDTH,       /* text: width of the selected cell */
    UI_ASK_BUDGET,      /* text: "params=20", "kv 30%", "none" */
    UI_ASK_CONTEXT,     /* text: context for FLOPs */
    UI_ASK_MULTIPLE,    /* text: widths are multiples of this (--multiple) */
    UI_ASK_GOTO,        /* text: a layer to jump to */
    UI_ASK_COMPARE,     /* text: a saved plan to compare with */
    UI_ASK_SAVE_PATH,   /* text */
    UI_ASK_OVERWRITE,   /* y/n: replace an existing plan file */
    UI_ASK_OPEN_PATH,   /* text */
    UI_ASK_DISCARD,     /* y/n: drop unsaved changes and open */
    UI_ASK_QUIT,        /* y/s/n: unsaved changes on quit */
    UI_ASK_OUT_DIR,     /* text: apply's output directory */
    UI_ASK_REPLACE_DIR, /* y/n: replace an existing output directory */
    UI_ASK_EVAL_TEXT,   /* text: perplexity text file (empty: none) */
    UI_ASK_EVAL_SEQLEN, /* text: perplexity window length */
    UI_ASK_SEQ_TEXT,    /* text: calibration text for sequential reduction */
    UI_ASK_COUNT
} ui_ask;

typedef struct {
    ui_ask kind;
    ui_view back;          /* view under the prompt, restored after */
    char question[160];
    char choices[8];       /* "" for a text prompt, else the accepted keys */
    char buf[UI_PATH_MAX]; /* text typed so far (UTF-8) */
    size_t len;
    int then_quit;         /* save prompts started by quitting: quit after */
} ui_prompt;

/* How the commit scores perplexity: by default what `a3 eval` does
 * (stream protocol, windows of min(context, 2048), every token). */
typedef struct {
    char text[UI_PATH_MAX];  /* "" : no evaluation after apply */
    a3_eval_protocol proto;
    int seqlen;              /* 0 until a model is open */
} ui_eval_opts;

typedef enum {
    UI_COMMIT_SUMMARY,  /* plan summary; y to go on */
    UI_COMMIT_RUNNING,  /* a3_apply in progress */
    UI_COMMIT_APPLIED,  /* written; perplexity offered */
    UI_COMMIT_FAILED,   /* apply or eval failed or was cancelled: msg says */
    UI_COMMIT_EVALUATING,
    UI_COMMIT_EVALUATED /* original vs compressed side by side */
} ui_commit_phase;

typedef struct {
    ui_commit_phase phase;
    char out_dir[UI_PATH_MAX];
    int replace;           /* the user agreed to replace out_dir */
    char stage[64];        /* progress: current stage, units done/total */
    int64_t done, total;
    double t0, seconds;    /* start of the running step; apply's duration */
    double drawn;          /* when the progress was last redrawn */
    int cancel;            /* set by the view when the user cancels */
    a3_apply_report rep;
    ui_eval_opts used;     /* the settings of the last evaluation */
    a3_eval_result orig, comp;
    int64_t eval_tokens;   /* tokens per model scored */
    int64_t params_orig, params_comp; /* whole-model parameters */
    char note[UI_MSG_MAX]; /* failure or cancellation, for the view */
} ui_commit;

/* What the budget-optimal plan was computed for. */
typedef struct {
    a3_budget_kind budget;
    double pct;
    int context, multiple;
    a3_dtype kv_dtype;
    int min_rank[A3_COMP_COUNT];
    double weight[A3_COMP_COUNT];
    uint8_t *lock; /* (n_layers) copy */
} ui_opt_key;

typedef struct {
    a3_plan *plan;
    unsigned id;
} ui_snap;

/* Overview row order. */
typedef enum {
    UI_SORT_LAYER, /* layer 0 first */
    UI_SORT_LOSS,  /* highest predicted loss of the selected column first */
    UI_SORT_COST,  /* highest kept cost (the budget's unit; params without
                    * a budget) of the selected column first */
    UI_SORT_COUNT
} ui_sort;

typedef struct ui_state {
    /* inputs */
    a3_cache *cache;
    a3_pred *pred;               /* CACHE.pred (exact curves, probe), or NULL */
    char cache_path[UI_PATH_MAX];
    char model_dir[UI_PATH_MAX]; /* "" without --model */
    a3_model *model;             /* NULL without --model */
    char model_warning[UI_MSG_MAX]; /* why commit is refused ("" if it is not) */
    char title[96];              /* model name for the header */
    int synthetic;               /* the cache says "synthetic": true */

    /* the plan and its history */
    a3_plan *plan;
    char plan_path[UI_PATH_MAX]; /* "" until saved or opened */
    unsigned plan_id, saved_id, next_id; /* dirty when plan_id != saved_id */
    ui_snap undo[UI_UNDO_MAX], redo[UI_UNDO_MAX];
    int n_undo, n_redo;

    /* derived from the plan (ui_recompute) */
    a3_cost_counts cost, full;
    a3_plan_loss loss;
    double *rel;      /* (n_layers, A3_COMP_COUNT) predicted rel(l, k) */
    int loss_ok;      /* rel and loss valid */
    a3_plan *opt;     /* budget-optimal plan, NULL if none (opt_why says) */
    a3_plan *cmp;     /* a saved plan to compare with (v), or NULL */
    char cmp_path[UI_PATH_MAX];
    a3_cost_counts cmp_cost;
    a3_plan_loss cmp_loss;
    double *cmp_rel;  /* (n_layers, A3_COMP_COUNT) rel of cmp */
    char opt_why[UI_MSG_MAX];
    ui_opt_key opt_key;

    /* selection and views */
    ui_view view, base;   /* base: overview, detail or compare, under help/prompts */
    ui_view msg_back;     /* the view under the full message (! from the commit too) */
    int layer, col, group; /* group: -1 all KV groups, else one (detail) */
    int top;              /* first row shown in the overview (a row index) */
    int page;             /* layer rows the overview showed last frame */
    ui_sort sort;
    int *order;           /* (n_layers) layer shown in each row */
    ui_prompt prompt;
    ui_commit commit;
    ui_eval_opts eval;    /* the commit's perplexity settings */
    char msg[UI_MSG_MAX];   /* status line; cleared by the next key */
    int msg_error;
    char last[UI_MSG_MAX];  /* the last message, kept for ! (shown in full) */
    int last_error;
    int exit_status;
    char pending[UI_PATH_MAX]; /* path waiting for a yes/no answer */

    /* terminal capabilities, set by the dispatcher */
    int utf8, color;

    /* commit progress: the dispatcher points this at the commit view's
     * callback (which redraws and polls for a cancel key) */
    a3_progress_fn progress;
    void *progress_ctx;
} ui_state;

typedef struct {
    const char *cache, *plan, *model; /* plan, model may be NULL */
    a3_progress_fn load_progress;     /* loading (may be NULL): the cache's
                                       * sections done/total, then each
                                       * later step by name with total 0 */
    void *load_ctx;
} ui_options;

/* ---- lifetime ---------------------------------------------------------- */

/* Load the cache, the plan (or a full-width plan of the cache's model) and
 * the model if given; compute everything. A3_* with err set on failure
 * (the state is then freed). */
int ui_state_init(ui_state *s, const ui_options *o, a3_err *err);
void ui_state_free(ui_state *s); /* accepts a zeroed or half-built state */

/* ---- messages and queries ---------------------------------------------- */

void ui_msg(ui_state *s, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int ui_dirty(const ui_state *s);
/* ! : show the last message in full (wrapped), over the base view. */
void ui_show_last_msg(ui_state *s);
/* The component of the selected column (col 1..3), or -1 for the layer. */
int ui_sel_comp(const ui_state *s);
/* Kept widths of component k of layer l over its groups: min, max, sum. */
void ui_cell_widths(const ui_state *s, const a3_plan *p, int l, int k, int *min, int *max, int64_t *sum);
int ui_full_width(const ui_state *s, int k);
int ui_locked(const ui_state *s, int l, int k);
/* Width step of kind k: small (one multiple) or big (~1/16 of full). */
int ui_step_size(const ui_state *s, int k, int big);
/* Budget: the target cost to remove and what the plan removes (0 with no
 * budget); met is 1 when removed >= target. */
void ui_budget_status(const ui_state *s, int64_t *target, int64_t *removed, int64_t *full, int *met);
/* Raw loss of group g of (l, k) at width w from the cache's curves
 * (QK: w rounded down to even). */
double ui_group_loss(const ui_state *s, int l, int k, int g, int w);
/* Relative loss of (l, k) with group g (or all when g < 0) at width w and
 * the other groups at their planned widths; 0..1+ (QK curves need not be
 * monotone, so it may exceed 1). */
double ui_rel_at(const ui_state *s, int l, int k, int g, int w);

/* ---- recompute ----------------------------------------------------------- */

/* Costs, predicted loss and budget-optimal plan after a change. */
void ui_recompute(ui_state *s);

/* ---- selection ------------------------------------------------------------ */

/* dlayer moves by rows of the overview (its sort order). */
void ui_move(ui_state *s, int dlayer, int dcol);
void ui_move_to(ui_state *s, int layer);
/* Home/End: the first or last row. */
void ui_move_to_row(ui_state *s, int row);
int ui_row_of(const ui_state *s, int layer);
void ui_cycle_group(ui_state *s, int dir);
/* S: layer order -> by loss -> by cost -> layer order. */
void ui_cycle_sort(ui_state *s);
const char *ui_sort_name(ui_sort k);
/* : : "12" jumps to layer 12. -1 with a message if not a layer. */
int ui_goto_text(ui_state *s, const char *text);

/* ---- edits (each one undoable) --------------------------------------------- */

void ui_step(ui_state *s, int dir, int big);
int ui_set_width_text(ui_state *s, const char *text);
void ui_allocate(ui_state *s, a3_strategy strategy);
int ui_set_budget_text(ui_state *s, const char *text);
int ui_set_context_text(ui_state *s, const char *text);
int ui_set_multiple_text(ui_state *s, const char *text);
/* L: lock the selected cell (or whole layer) at the width it has now, so
 * that a and u re-allocate around it; L again unlocks. */
void ui_toggle_lock(ui_state *s);
/* Make p (owned from now on) the plan; the old one goes onto the undo
 * stack and the derived numbers are recomputed. */
void ui_replace_plan(ui_state *s, a3_plan *p);
void ui_undo(ui_state *s);
void ui_redo(ui_state *s);

/* ---- files (state_io.c) ------------------------------------------------------ */

/* Save to path; refuses an existing file unless overwrite (then returns 1
 * without writing, so the caller can ask). 0 saved, <0 error (msg set). */
int ui_save(ui_state *s, const char *path, int overwrite);
int ui_open(ui_state *s, const char *path);
/* Load a saved plan to compare with (v); 0, or -1 with a message. */
int ui_compare_open(ui_state *s, const char *path);
void ui_compare_close(ui_state *s);

/* ---- prompts (state_io.c) ----------------------------------------------------- */

void ui_ask_text(ui_state *s, ui_ask kind, const char *question, const char *initial);
void ui_ask_choice(ui_state *s, ui_ask kind, const char *question, const char *choices);
void ui_prompt_insert(ui_state *s, const char *utf8, size_t n);
void ui_prompt_backspace(ui_state *s);
void ui_prompt_clear(ui_state *s);
void ui_prompt_cancel(ui_state *s);
void ui_prompt_submit(ui_state *s);       /* Enter on a text prompt */
void ui_prompt_choose(ui_state *s, int c); /* a key on a choice prompt */

/* Key-level requests shared by the views. */
void ui_request_quit(ui_state *s);
void ui_request_save(ui_state *s);
void ui_request_open(ui_state *s);
void ui_request_budget(ui_state *s);
void ui_request_goto(ui_state *s);
void ui_request_compare(ui_state *s);

/* ---- commit (state_commit.c) ---------------------------------------------------- */

void ui_commit_begin(ui_state *s);      /* c: the summary, or why not */
void ui_commit_confirm(ui_state *s);    /* y on the summary: ask the directory */
void ui_commit_close(ui_state *s);      /* back to the plan */
/* Default output directory: "<model name>-a3" beside the cache (never
 * inside the model's own directory tree). */
void ui_commit_default_out(const ui_state *s, char *buf, size_t n);
/* The perplexity settings (summary and after apply): t text, p protocol,
 * w window length. */
void ui_eval_ask_text(ui_state *s);
void ui_eval_toggle_protocol(ui_state *s);
void ui_eval_ask_seqlen(ui_state *s);
int ui_eval_set_seqlen_text(ui_state *s, const char *text);
/* "samples/eval.txt, stream, windows of 512 tokens (a3 eval's defaults)" */
char *ui_eval_describe(const ui_state *s, const ui_eval_opts *e, char *buf, size_t n);
/* Sequential reduction (include/a3/sequential.h), recorded in the plan:
 * s toggles it (on: the cache's own calibration tokens, or asks for a
 * text when the cache records none), k sets the calibration text file. */
void ui_seq_toggle(ui_state *s);
void ui_seq_ask_text(ui_state *s);
int ui_seq_set_text(ui_state *s, const char *text); /* "": one-shot */
/* "one-shot (the paper's A3)" or "sequential on FILE, 64 x 512 tokens" */
char *ui_seq_describe(const ui_state *s, char *buf, size_t n);
int ui_commit_apply(ui_state *s);       /* run a3_apply into commit.out_dir,
                                         * then the evaluation if a text is set */
int ui_commit_eval(ui_state *s);        /* both models, with s->eval */
/* The progress line under the bar: "3/32 layers  4.1s  ETA 39.0s", or,
 * once every layer is solved, that the file is being written. */
char *ui_commit_progress_text(const ui_state *s, double now, char *buf, size_t n);

/* ---- formatting shared by the views (plain text) -------------------------------- */

/* An integer, with thousands grouped ("11,008") when group is set. */
char *ui_fmt_int(char *buf, size_t n, int64_t v, int group);
/* A cell's width: the width if its groups agree, else "~" and their mean
 * rounded half up ("~9" for 8.5). */
char *ui_fmt_width(char *buf, size_t n, int mn, int mx, int64_t sum, int n_groups, int group);
/* Rounded half up, as every mean of widths is shown. */
long ui_round_half_up(double x);
/* The change from full to value as a signed percentage, "-19.3%", and
 * "0.0%" (never "-0.0%") when it rounds to nothing. */
char *ui_fmt_change(char *buf, size_t n, int64_t value, int64_t full);
/* "6.74B", "512K", "1.23M": 3 significant digits with a suffix. */
char *ui_fmt_count(char *buf, size_t n, int64_t v);
/* "128 KiB", "1.5 MiB". */
char *ui_fmt_bytes(char *buf, size_t n, int64_t v);
/* Percent removed of full by value, e.g. 20.04 ("-" as NAN if full <= 0). */
double ui_pct_removed(int64_t value, int64_t full);

#endif
