/* state: the planner's model: loading, derived numbers, selection, edits
 * and undo (see state.h). No curses here. */
#include "a3/pred.h"
#include "state.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- messages and small queries --------------------------------------------- */

void ui_msg(ui_state *s, int error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    va_end(ap);
    s->msg_error = error;
    memcpy(s->last, s->msg, sizeof s->last); /* the status line may crop it; ! shows it whole */
    s->last_error = error;
}

void ui_show_last_msg(ui_state *s)
{
    if (!s->last[0]) {
        ui_msg(s, 0, "no message yet");
        return;
    }
    s->msg_back = s->view;
    s->msg[0] = 0;
    s->view = UI_VIEW_MESSAGE;
}

int ui_dirty(const ui_state *s) { return s->plan_id != s->saved_id; }
int ui_sel_comp(const ui_state *s) { return s->col == UI_COL_LAYER ? -1 : s->col - UI_COL_QK; }
int ui_full_width(const ui_state *s, int k) { return k == A3_COMP_MLP ? s->plan->dims.d_ff : s->plan->dims.head_dim; }
int ui_locked(const ui_state *s, int l, int k) { return (s->plan->lock[l] >> k) & 1; }

static int n_groups(const ui_state *s, int k) { return k == A3_COMP_MLP ? 1 : s->plan->dims.n_kv_heads; }

static int *width_ptr(const a3_plan *p, int l, int k, int g)
{
    if (k == A3_COMP_MLP) return p->mlp + l;
    return (k == A3_COMP_QK ? a3_plan_qk(p, l) : a3_plan_ov(p, l)) + g;
}

void ui_cell_widths(const ui_state *s, const a3_plan *p, int l, int k, int *min, int *max, int64_t *sum)
{
    *min = *max = *width_ptr(p, l, k, 0);
    *sum = 0;
    for (int g = 0; g < n_groups(s, k); g++) {
        int w = *width_ptr(p, l, k, g);
        if (w < *min) *min = w;
        if (w > *max) *max = w;
        *sum += w;
    }
}

/* The width unit of a kind: the multiple (QK: lcm(2, multiple)), as the allocators use it (plan.h). */
static int unit_of(const ui_state *s, int k)
{
    int m = s->plan->alloc.multiple;
    return k == A3_COMP_QK && m % 2 ? 2 * m : m;
}

int ui_step_size(const ui_state *s, int k, int big)
{
    int u = unit_of(s, k);
    if (!big) return u;
    long n = lround(ui_full_width(s, k) / 16.0 / u); /* ~16 big steps across the width */
    return u * (int)(n < 1 ? 1 : n);
}

void ui_budget_status(const ui_state *s, int64_t *target, int64_t *removed, int64_t *full, int *met)
{
    const a3_plan *p = s->plan;
    *full = a3_plan_budget_value(&s->full, p->budget);
    *removed = *full - a3_plan_budget_value(&s->cost, p->budget);
    /* as the allocator rounds it: ceil(pct% of the full value) */
    *target = (int64_t)ceill((long double)p->budget_pct * (long double)*full / 100.0L);
    *met = p->budget == A3_BUDGET_NONE || *removed >= *target;
}

double ui_group_loss(const ui_state *s, int l, int k, int g, int w)
{
    const a3_cache_layer *L = &s->cache->layers[l];
    size_t hd = (size_t)s->cache->head_dim;
    if (k == A3_COMP_QK) return L->qk_loss[(size_t)g * (hd / 2 + 1) + (size_t)w / 2];
    if (k == A3_COMP_MLP) return L->mlp_loss[w];
    const double *sv = L->ov_sv + (size_t)g * hd;
    double sum = 0;
    for (size_t j = hd; j-- > (size_t)w;) sum += sv[j] * sv[j];
    return sum;
}

double ui_rel_at(const ui_state *s, int l, int k, int g, int w)
{
    double lost = 0, total = 0;
    for (int gg = 0; gg < n_groups(s, k); gg++) {
        int ww = g < 0 || gg == g ? w : *width_ptr(s->plan, l, k, gg);
        lost += ui_group_loss(s, l, k, gg, ww);
        total += ui_group_loss(s, l, k, gg, 0);
    }
    return total > 0 ? lost / total : 0;
}

/* ---- formatting ------------------------------------------------------------------- */

/* 3 significant digits of x < 999.5 */
static void fmt3(char *buf, size_t n, double x, const char *suffix)
{
    if (x >= 99.95) snprintf(buf, n, "%.0f%s", x, suffix);
    else if (x >= 9.995) snprintf(buf, n, "%.1f%s", x, suffix);
    else snprintf(buf, n, "%.2f%s", x, suffix);
}

char *ui_fmt_count(char *buf, size_t n, int64_t v)
{
    static const char *const SUF[] = {"", "K", "M", "B", "T"};
    double x = (double)v;
    int i = 0;
    if (v < 1000) {
        snprintf(buf, n, "%lld", (long long)v);
        return buf;
    }
    while (x >= 999.5 && i < 4) x /= 1000, i++;
    fmt3(buf, n, x, SUF[i]);
    return buf;
}

char *ui_fmt_bytes(char *buf, size_t n, int64_t v)
{
    static const char *const SUF[] = {" B", " KiB", " MiB", " GiB", " TiB"};
    double x = (double)v;
    int i = 0;
    if (v < 1024) {
        snprintf(buf, n, "%lld B", (long long)v);
        return buf;
    }
    while (x >= 999.5 && i < 4) x /= 1024, i++;
    fmt3(buf, n, x, SUF[i]);
    return buf;
}

long ui_round_half_up(double x) { return (long)floor(x + 0.5); }

char *ui_fmt_int(char *buf, size_t n, int64_t v, int group)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%lld", (long long)(v < 0 ? -v : v));
    size_t nd = strlen(digits), o = 0;
    char out[48];
    if (v < 0) out[o++] = '-';
    for (size_t i = 0; i < nd; i++) {
        if (group && i > 0 && (nd - i) % 3 == 0) out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = 0;
    snprintf(buf, n, "%s", out);
    return buf;
}

char *ui_fmt_width(char *buf, size_t n, int mn, int mx, int64_t sum, int n_groups, int group)
{
    char num[32];
    if (mn == mx) return ui_fmt_int(buf, n, mn, group);
    ui_fmt_int(num, sizeof num, ui_round_half_up((double)sum / n_groups), group);
    snprintf(buf, n, "~%s", num);
    return buf;
}

char *ui_fmt_change(char *buf, size_t n, int64_t value, int64_t full)
{
    double pct = full > 0 ? 100.0 * (double)(value - full) / (double)full : 0;
    double r = round(pct * 10) / 10;
    if (r == 0) snprintf(buf, n, "0.0%%"); /* also for a tiny change: never "-0.0%" */
    else snprintf(buf, n, "%+.1f%%", r);
    return buf;
}

double ui_pct_removed(int64_t value, int64_t full)
{
    return full > 0 ? 100.0 * (double)(full - value) / (double)full : NAN;
}

/* ---- the budget-optimal plan ----------------------------------------------------- */

static void opt_key_of(const a3_plan *p, ui_opt_key *k)
{
    k->budget = p->budget, k->pct = p->budget_pct, k->context = p->context;
    k->multiple = p->alloc.multiple, k->kv_dtype = p->kv_dtype;
    memcpy(k->min_rank, p->alloc.min_rank, sizeof k->min_rank);
    memcpy(k->weight, p->alloc.weight, sizeof k->weight);
}

/* Has anything the greedy allocator reads changed since opt was made? */
static int opt_stale(const ui_state *s)
{
    ui_opt_key k;
    opt_key_of(s->plan, &k);
    const ui_opt_key *o = &s->opt_key;
    if (k.budget != o->budget || k.pct != o->pct || k.context != o->context || k.multiple != o->multiple ||
        k.kv_dtype != o->kv_dtype || memcmp(k.min_rank, o->min_rank, sizeof k.min_rank) ||
        memcmp(k.weight, o->weight, sizeof k.weight) || memcmp(s->plan->lock, o->lock, (size_t)s->plan->dims.n_layers))
        return 1;
    /* A lock pins a width, so the optimum also depends on the locked
     * widths: opt kept them as they were when it was made. */
    for (int l = 0; l < s->plan->dims.n_layers; l++)
        for (int kk = 0; kk < A3_COMP_COUNT; kk++) {
            if (!ui_locked(s, l, kk)) continue;
            if (!s->opt) return 1; /* no optimum to compare with: cheap enough to redo */
            for (int g = 0; g < n_groups(s, kk); g++)
                if (*width_ptr(s->plan, l, kk, g) != *width_ptr(s->opt, l, kk, g)) return 1;
        }
    return 0;
}

static void update_optimal(ui_state *s, int force)
{
    if (!force && !opt_stale(s)) return;
    a3_plan_free(s->opt);
    s->opt = NULL;
    opt_key_of(s->plan, &s->opt_key);
    memcpy(s->opt_key.lock, s->plan->lock, (size_t)s->plan->dims.n_layers);
    if (s->plan->budget == A3_BUDGET_NONE) {
        snprintf(s->opt_why, sizeof s->opt_why, "no budget (b sets one)");
        return;
    }
    a3_err e = {0};
    a3_plan *p = NULL;
    int rc = a3_plan_copy(s->plan, &p, &e);
    if (!rc) {
        p->alloc.strategy = A3_STRATEGY_GREEDY;
        rc = a3_plan_allocate_with(p, s->cache, s->pred, &e);
    }
    if (rc) {
        snprintf(s->opt_why, sizeof s->opt_why, "%s", e.msg);
        a3_plan_free(p);
        return;
    }
    s->opt = p;
    s->opt_why[0] = 0;
}

/* ---- row order ------------------------------------------------------------------------ */

const char *ui_sort_name(ui_sort k)
{
    static const char *const N[UI_SORT_COUNT] = {"layer", "loss", "cost"};
    return k >= 0 && k < UI_SORT_COUNT ? N[k] : "?";
}

/* The selected column's components as lock bits (the layer column: all). */
static unsigned sel_bits(const ui_state *s)
{
    int k = ui_sel_comp(s);
    return k < 0 ? A3_LOCK_ALL : 1u << k;
}

static double sort_key(const ui_state *s, int l)
{
    unsigned bits = sel_bits(s);
    if (s->sort == UI_SORT_COST) {
        a3_budget_kind b = s->plan->budget == A3_BUDGET_NONE ? A3_BUDGET_PARAMS : s->plan->budget;
        return (double)a3_plan_layer_cost(s->plan, l, bits, b);
    }
    double v = 0; /* loss: rel of the component, or the layer's weighted sum (its share of the objective) */
    for (int k = 0; k < A3_COMP_COUNT && s->loss_ok; k++)
        if (bits & (1u << k)) v += (bits == A3_LOCK_ALL ? s->plan->alloc.weight[k] : 1) * s->rel[(size_t)l * A3_COMP_COUNT + (size_t)k];
    return v;
}

static double *g_sort_keys; /* qsort has no context argument in C11 */

static int cmp_rows(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    double kx = g_sort_keys[x], ky = g_sort_keys[y];
    if (kx != ky) return kx > ky ? -1 : 1; /* largest first */
    return x < y ? -1 : x > y;            /* ties: layer order */
}

static void sort_rows(ui_state *s)
{
    int n = s->plan->dims.n_layers;
    for (int i = 0; i < n; i++) s->order[i] = i;
    if (s->sort == UI_SORT_LAYER) return;
    double *keys = a3_malloc_array((size_t)n, sizeof *keys);
    if (!keys) { /* keep layer order; say why */
        s->sort = UI_SORT_LAYER;
        ui_msg(s, 1, "out of memory sorting the layers");
        return;
    }
    for (int l = 0; l < n; l++) keys[l] = sort_key(s, l);
    g_sort_keys = keys;
    qsort(s->order, (size_t)n, sizeof *s->order, cmp_rows);
    g_sort_keys = NULL;
    free(keys);
}

static void recompute(ui_state *s, int force_opt)
{
    a3_plan_costs(s->plan, &s->cost);
    a3_plan_full_costs(s->plan, &s->full);
    a3_err e = {0};
    s->loss_ok = a3_plan_predict_with(s->plan, s->cache, s->pred, s->rel, &s->loss, &e) == 0;
    if (s->loss_ok) { /* what a save records, kept current */
        s->plan->loss = s->loss;
        s->plan->loss_known = 1;
        s->plan->summary_stale = 0;
    } else ui_msg(s, 1, "%s", e.msg);
    update_optimal(s, force_opt);
    sort_rows(s);
}

void ui_recompute(ui_state *s) { recompute(s, 0); }

/* ---- lifetime ------------------------------------------------------------------------ */

static const char *base_name(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--; /* "dir/" names dir */
    const char *b = path;
    for (size_t i = 0; i + 1 < n; i++)
        if (path[i] == '/') b = path + i + 1;
    return b;
}

/* The header's model name, and whether the cache is a synthetic one. */
static void set_title(ui_state *s)
{
    cJSON *root = s->cache->meta_json ? cJSON_Parse(s->cache->meta_json) : NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(model, "path");
    s->synthetic = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "synthetic"));
    const char *name = s->model_dir[0] ? s->model_dir : cJSON_IsString(path) ? path->valuestring : "";
    if (strncmp(name, "synthetic:", 10) == 0) name += 10;
    char tmp[UI_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", base_name(name));
    size_t n = strlen(tmp);
    if (n > 1 && tmp[n - 1] == '/') tmp[n - 1] = 0;
    snprintf(s->title, sizeof s->title, "%.60s%s", *tmp ? tmp : "model", s->synthetic ? " (SYNTHETIC cache)" : "");
    cJSON_Delete(root);
}

static int load_plan(ui_state *s, const char *path, a3_err *err)
{
    if (!path) {
        int rc = a3_plan_from_cache(s->cache, &s->plan, err);
        if (!rc) a3_plan_default_methods(s->plan, s->cache); /* as `a3 plan` */
        return rc;
    }
    int rc = a3_plan_load(path, &s->plan, err);
    if (!rc) rc = a3_plan_validate(s->plan, s->cache, 0, err);
    if (!rc) snprintf(s->plan_path, sizeof s->plan_path, "%s", path);
    return rc;
}

/* The model is only needed to commit; a fingerprint that differs from the
 * cache's is shown as a warning and blocks the commit, as `a3 apply`
 * refuses it without --force. */
/* The first dimension in which the model differs from the cache, or NULL. */
static const char *model_cache_differ(const a3_config *m, const a3_cache *c, char *buf, size_t n)
{
    const char *f = m->d != c->d ? "d" : m->n_layers != c->n_layers ? "n_layers" : m->n_heads != c->n_heads ? "n_heads"
                    : m->n_kv_heads != c->n_kv_heads ? "n_kv_heads" : m->head_dim != c->head_dim ? "head_dim"
                    : m->d_ff != c->d_ff ? "d_ff" : NULL;
    if (!f) return NULL;
    int mv = !strcmp(f, "d") ? m->d : !strcmp(f, "n_layers") ? m->n_layers : !strcmp(f, "n_heads") ? m->n_heads
             : !strcmp(f, "n_kv_heads") ? m->n_kv_heads : !strcmp(f, "head_dim") ? m->head_dim : m->d_ff;
    int cv = !strcmp(f, "d") ? c->d : !strcmp(f, "n_layers") ? c->n_layers : !strcmp(f, "n_heads") ? c->n_heads
             : !strcmp(f, "n_kv_heads") ? c->n_kv_heads : !strcmp(f, "head_dim") ? c->head_dim : c->d_ff;
    snprintf(buf, n, "%s %d, the cache's %d", f, mv, cv);
    return buf;
}

static int open_model(ui_state *s, const char *dir, a3_err *err)
{
    char why[96];
    snprintf(s->model_dir, sizeof s->model_dir, "%s", dir);
    int rc = a3_model_open(dir, &s->model, err);
    if (rc) return rc;
    /* Without --plan the plan is the cache's own: a mismatch is between
     * the model and the cache, and is named so. */
    if (model_cache_differ(a3_model_config(s->model), s->cache, why, sizeof why))
        return a3_err_set(err, A3_EMISMATCH, "%s: not the model of cache %s (%s)", dir, s->cache_path, why);
    rc = a3_plan_set_config(s->plan, a3_model_config(s->model), err);
    if (rc) return rc;
    char fp[65];
    a3_err e = {0};
    if (a3_model_fingerprint(dir, fp, &e))
        snprintf(s->model_warning, sizeof s->model_warning, "%s", e.msg);
    else if (strcmp(fp, s->cache->fingerprint))
        snprintf(s->model_warning, sizeof s->model_warning,
                 "%s is not the model this cache was calibrated on (fingerprint %.12s..., cache %.12s...)", dir, fp,
                 s->cache->fingerprint);
    return A3_OK;
}

/* Name the next loading step to o->load_progress (total 0: no count). */
static void stage(const ui_options *o, const char *what)
{
    if (o->load_progress) o->load_progress(o->load_ctx, what, 0, 0);
}

int ui_state_init(ui_state *s, const ui_options *o, a3_err *err)
{
    memset(s, 0, sizeof *s);
    s->view = s->base = UI_VIEW_OVERVIEW;
    s->col = UI_COL_QK, s->group = -1;
    snprintf(s->cache_path, sizeof s->cache_path, "%s", o->cache);
    /* Curves only: the matrices are read when a commit's apply needs them. */
    int rc = a3_cache_open(o->cache, o->load_progress, o->load_ctx, &s->cache, err);
    if (!rc) stage(o, "the predicted curves (CACHE.pred)");
    if (!rc) rc = a3_pred_load_for(o->cache, s->cache, &s->pred, err);
    if (!rc) stage(o, "the plan");
    if (!rc) rc = load_plan(s, o->plan, err);
    if (!rc && o->model) stage(o, "the model");
    if (!rc && o->model) rc = open_model(s, o->model, err);
    if (rc) {
        ui_state_free(s);
        return rc;
    }
    size_t nl = (size_t)s->plan->dims.n_layers;
    s->rel = a3_malloc_array(nl * A3_COMP_COUNT, sizeof *s->rel);
    s->cmp_rel = a3_malloc_array(nl * A3_COMP_COUNT, sizeof *s->cmp_rel);
    s->order = a3_malloc_array(nl, sizeof *s->order);
    s->opt_key.lock = malloc(nl);
    if (!s->rel || !s->cmp_rel || !s->order || !s->opt_key.lock) {
        ui_state_free(s);
        return a3_err_set(err, A3_ENOMEM, "tui: out of memory");
    }
    set_title(s);
    s->next_id = 1;
    recompute(s, 1);
    return A3_OK;
}

static void clear_stack(ui_snap *st, int *n)
{
    for (int i = 0; i < *n; i++) a3_plan_free(st[i].plan);
    *n = 0;
}

void ui_state_free(ui_state *s)
{
    clear_stack(s->undo, &s->n_undo);
    clear_stack(s->redo, &s->n_redo);
    a3_plan_free(s->opt);
    a3_plan_free(s->cmp);
    a3_plan_free(s->plan);
    a3_cache_free(s->cache);
    a3_pred_free(s->pred);
    a3_model_free(s->model);
    free(s->rel);
    free(s->cmp_rel);
    free(s->order);
    free(s->opt_key.lock);
    s->opt = s->plan = s->cmp = NULL, s->cache = NULL, s->pred = NULL, s->model = NULL, s->rel = s->cmp_rel = NULL;
    s->order = NULL, s->opt_key.lock = NULL;
}

/* ---- selection ---------------------------------------------------------------------------- */

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

int ui_row_of(const ui_state *s, int layer)
{
    for (int r = 0; r < s->plan->dims.n_layers; r++)
        if (s->order[r] == layer) return r;
    return 0;
}

void ui_move_to_row(ui_state *s, int row) { s->layer = s->order[clampi(row, 0, s->plan->dims.n_layers - 1)]; }

void ui_move(ui_state *s, int dlayer, int dcol)
{
    if (dlayer) ui_move_to_row(s, ui_row_of(s, s->layer) + dlayer);
    s->col = clampi(s->col + dcol, 0, UI_COL_COUNT - 1);
    if (dcol && s->sort != UI_SORT_LAYER) sort_rows(s); /* the sort follows the selected column */
}

void ui_move_to(ui_state *s, int layer) { s->layer = clampi(layer, 0, s->plan->dims.n_layers - 1); }

void ui_cycle_sort(ui_state *s)
{
    static const char *const COL[UI_COL_COUNT] = {"whole layer", "QK", "OV", "MLP"};
    s->sort = (ui_sort)((s->sort + 1) % UI_SORT_COUNT);
    sort_rows(s);
    s->top = 0;
    if (s->sort == UI_SORT_LAYER) ui_msg(s, 0, "rows in layer order");
    else if (s->sort == UI_SORT_LOSS) ui_msg(s, 0, "rows by predicted loss of the %s, highest first", COL[s->col]);
    else
        ui_msg(s, 0, "rows by kept cost (%s) of the %s, highest first",
               s->plan->budget == A3_BUDGET_NONE ? "params" : a3_budget_name(s->plan->budget), COL[s->col]);
}

int ui_goto_text(ui_state *s, const char *text)
{
    char *end;
    long v = strtol(text, &end, 10);
    while (*end == ' ') end++;
    if (end == text || *end || v < 0 || v >= s->plan->dims.n_layers) {
        ui_msg(s, 1, "go to: expected a layer 0..%d, got '%s'", s->plan->dims.n_layers - 1, text);
        return -1;
    }
    s->layer = (int)v;
    ui_msg(s, 0, "layer %ld", v);
    return 0;
}

void ui_cycle_group(ui_state *s, int dir)
{
    int k = ui_sel_comp(s), n = s->plan->dims.n_kv_heads;
    if (k != A3_COMP_QK && k != A3_COMP_OV) {
        ui_msg(s, 0, "only QK and OV have KV groups");
        return;
    }
    s->group = (s->group + 1 + dir + (n + 1)) % (n + 1) - 1; /* -1 (all), 0 .. n-1, around */
}

/* ---- edits: copy, change, commit (the old plan goes onto the undo stack) ---------------------- */

static void push_snap(ui_snap *st, int *n, ui_snap v)
{
    if (*n == UI_UNDO_MAX) { /* full: forget the oldest step */
        a3_plan_free(st[0].plan);
        memmove(st, st + 1, (UI_UNDO_MAX - 1) * sizeof *st);
        (*n)--;
    }
    st[(*n)++] = v;
}

static void edit_commit(ui_state *s, a3_plan *p);

static a3_plan *edit_begin(ui_state *s)
{
    a3_plan *p = NULL;
    a3_err e = {0};
    if (a3_plan_copy(s->plan, &p, &e)) ui_msg(s, 1, "%s", e.msg);
    return p;
}

void ui_replace_plan(ui_state *s, a3_plan *p) { edit_commit(s, p); }

static void edit_commit(ui_state *s, a3_plan *p)
{
    push_snap(s->undo, &s->n_undo, (ui_snap){s->plan, s->plan_id});
    clear_stack(s->redo, &s->n_redo);
    s->plan = p;
    s->plan_id = s->next_id++;
    recompute(s, 0);
}

/* The next width from w in direction dir on the grid of multiples of u,
 * capped at full (which is always allowed) and 0. */
static int step_width(int w, int full, int u, int dir)
{
    if (dir > 0) return (w / u + 1) * u > full ? full : (w / u + 1) * u;
    return w <= 0 ? 0 : (w - 1) / u * u;
}

/* Step every unlocked group of (l, k) (one group if g >= 0); count changes. */
static int step_comp(ui_state *s, a3_plan *p, int l, int k, int g, int dir, int big)
{
    if (ui_locked(s, l, k)) return 0;
    int changed = 0, full = ui_full_width(s, k), u = ui_step_size(s, k, big);
    for (int gg = 0; gg < n_groups(s, k); gg++) {
        if (g >= 0 && gg != g) continue;
        int *w = width_ptr(p, l, k, gg), nw = step_width(*w, full, u, dir);
        changed += nw != *w;
        *w = nw;
    }
    return changed;
}

static const char *const KIND[A3_COMP_COUNT] = {"QK", "OV", "MLP"};

/* "layer 3 OV" / "layer 3 OV group 2" / "layer 3" for messages. */
static char *sel_name(const ui_state *s, char *buf, size_t n)
{
    int k = ui_sel_comp(s);
    if (k < 0) snprintf(buf, n, "layer %d", s->layer);
    else if (k != A3_COMP_MLP && s->group >= 0) snprintf(buf, n, "layer %d %s group %d", s->layer, KIND[k], s->group);
    else snprintf(buf, n, "layer %d %s", s->layer, KIND[k]);
    return buf;
}

/* After a manual change the plan no longer comes from an allocator. */
static void mark_manual(a3_plan *p) { p->alloc.strategy = A3_STRATEGY_MANUAL; }

void ui_step(ui_state *s, int dir, int big)
{
    char name[64];
    int k = ui_sel_comp(s), changed = 0, all_locked = 1;
    a3_plan *p = edit_begin(s);
    if (!p) return;
    for (int kk = 0; kk < A3_COMP_COUNT; kk++) {
        if (k >= 0 && kk != k) continue;
        all_locked &= ui_locked(s, s->layer, kk);
        changed += step_comp(s, p, s->layer, kk, k < 0 || kk == A3_COMP_MLP ? -1 : s->group, dir, big);
    }
    if (!changed) {
        a3_plan_free(p);
        ui_msg(s, 0, "%s: %s", sel_name(s, name, sizeof name),
               all_locked ? "locked (L unlocks)" : dir > 0 ? "already at full width" : "already at width 0");
        return;
    }
    mark_manual(p);
    edit_commit(s, p);
    s->msg[0] = 0;
}

/* Parse "N" (a width) or "N%" (of the full width, rounded down to the
 * multiple) for kind k. -1 with a message if it is not valid. */
static int parse_width(ui_state *s, const char *text, int k, int *out)
{
    char *end;
    const char *c = text;
    while (*c >= '0' && *c <= '9') c++;
    if (*c == '.' && strchr(text, '%')) /* a fraction only in a percentage: "12.5%" */
        for (c++; *c >= '0' && *c <= '9'; c++) continue;
    int plain = c > text && (*c == 0 || *c == '%' || *c == ' '); /* digits: no "1e1", "0x10", "+5" or " 5" */
    errno = 0;
    double v = strtod(text, &end);
    int pct = *end == '%';
    while (*end == '%' || *end == ' ') end++;
    int full = ui_full_width(s, k), u = unit_of(s, k);
    if (!plain || errno || end == text || *end || !(v >= 0) || (pct && v > 100) || (!pct && v != floor(v))) {
        ui_msg(s, 1, "'%s': expected a width 0..%d, or a percentage like 50%%", text, full);
        return -1;
    }
    if (pct) v = v >= 100 ? full : floor(v * full / 100 / u) * u;
    if (v > full) {
        ui_msg(s, 1, "%s width %s exceeds the full width %d", KIND[k], text, full);
        return -1;
    }
    if (k == A3_COMP_QK && (long)v % 2) {
        ui_msg(s, 1, "QK ranks are even (whole RoPE pairs): %ld or %ld", (long)v - 1, (long)v + 1);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int ui_set_width_text(ui_state *s, const char *text)
{
    int k = ui_sel_comp(s), w[A3_COMP_COUNT], changed = 0;
    char name[64];
    if (k < 0 && !strchr(text, '%')) {
        ui_msg(s, 1, "a whole layer takes a percentage (e.g. 50%%); select a QK, OV or MLP cell for a width");
        return -1;
    }
    for (int kk = 0; kk < A3_COMP_COUNT; kk++)
        if ((k < 0 || kk == k) && parse_width(s, text, kk, &w[kk])) return -1;
    a3_plan *p = edit_begin(s);
    if (!p) return -1;
    for (int kk = 0; kk < A3_COMP_COUNT; kk++) {
        if ((k >= 0 && kk != k) || ui_locked(s, s->layer, kk)) continue;
        for (int g = 0; g < n_groups(s, kk); g++) {
            if (k >= 0 && kk != A3_COMP_MLP && s->group >= 0 && g != s->group) continue;
            int *wp = width_ptr(p, s->layer, kk, g);
            changed += *wp != w[kk];
            *wp = w[kk];
        }
    }
    if (!changed) {
        a3_plan_free(p);
        ui_msg(s, 0, "%s: unchanged%s", sel_name(s, name, sizeof name),
               k >= 0 && ui_locked(s, s->layer, k) ? " (locked; L unlocks)" : "");
        return 0;
    }
    mark_manual(p);
    edit_commit(s, p);
    ui_msg(s, 0, "%s set to %s", sel_name(s, name, sizeof name), text);
    return 0;
}

void ui_allocate(ui_state *s, a3_strategy strategy)
{
    if (s->plan->budget == A3_BUDGET_NONE) { /* a and u alike: nothing to allocate to */
        ui_msg(s, 1, "%s allocation needs a budget: press b (e.g. params=20)", a3_strategy_name(strategy));
        return;
    }
    a3_plan *p = edit_begin(s);
    if (!p) return;
    a3_err e = {0};
    p->alloc.strategy = strategy;
    double t0 = a3_now();
    if (a3_plan_allocate_with(p, s->cache, s->pred, &e)) {
        a3_plan_free(p);
        ui_msg(s, 1, "%s", e.msg);
        return;
    }
    double ms = 1e3 * (a3_now() - t0);
    edit_commit(s, p);
    ui_msg(s, 0, "%s allocation under %s %g%% (%.0f ms)", a3_strategy_name(strategy), a3_budget_name(p->budget),
           p->budget_pct, ms);
}

/* "params=20", "params 20%", "kv:30", "20" (params, as --budget 20),
 * "none" / "off": into kind and percent. */
static int parse_budget(ui_state *s, const char *text, a3_budget_kind *kind, double *pct)
{
    char buf[64];
    a3_err e = {0};
    if (!strcmp(text, "none") || !strcmp(text, "off") || !strcmp(text, "")) {
        *kind = A3_BUDGET_NONE, *pct = 0;
        return 0;
    }
    snprintf(buf, sizeof buf, "%s", text);
    for (char *c = buf; *c; c++)
        if (*c == ' ' || *c == ':') *c = '=';
    for (char *c = strstr(buf, "=="); c; c = strstr(buf, "==")) memmove(c, c + 1, strlen(c)); /* "kv = 30" */
    if (a3_plan_budget_parse(buf, kind, pct, &e)) {
        ui_msg(s, 1, "%s", e.msg);
        return -1;
    }
    return 0;
}

int ui_set_budget_text(ui_state *s, const char *text)
{
    a3_budget_kind kind;
    double pct;
    if (parse_budget(s, text, &kind, &pct)) return -1;
    a3_plan *p = edit_begin(s);
    if (!p) return -1;
    p->budget = kind, p->budget_pct = pct;
    edit_commit(s, p);
    if (kind == A3_BUDGET_NONE) ui_msg(s, 0, "no budget");
    else ui_msg(s, 0, "budget: remove %g%% of %s; a allocates to it", pct, a3_budget_name(kind));
    return 0;
}

/* An integer in [lo, hi] from text, or -1 with a message naming what. */
static int parse_int(ui_state *s, const char *text, const char *what, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    while (*end == ' ') end++;
    if (errno || end == text || *end || v < lo || v > hi) {
        ui_msg(s, 1, "%s: expected an integer in [%ld, %ld], got '%s'", what, lo, hi, text);
        return -1;
    }
    *out = v;
    return 0;
}

/* Set an int field on a copy and keep it if the plan stays valid. */
static int set_plan_int(ui_state *s, const char *text, const char *what, long lo, long hi, size_t field)
{
    long v;
    if (parse_int(s, text, what, lo, hi, &v)) return -1;
    a3_plan *p = edit_begin(s);
    a3_err e = {0};
    if (!p) return -1;
    *(int *)((char *)p + field) = (int)v;
    if (a3_plan_validate(p, NULL, 0, &e)) {
        a3_plan_free(p);
        ui_msg(s, 1, "%s", e.msg);
        return -1;
    }
    edit_commit(s, p);
    ui_msg(s, 0, "%s set to %ld", what, v);
    return 0;
}

int ui_set_context_text(ui_state *s, const char *text)
{
    return set_plan_int(s, text, "context", 1, A3_PLAN_MAX_CONTEXT, offsetof(a3_plan, context));
}

int ui_set_multiple_text(ui_state *s, const char *text)
{
    return set_plan_int(s, text, "multiple", 1, A3_PLAN_MAX_MULTIPLE, offsetof(a3_plan, alloc.multiple));
}

void ui_toggle_lock(ui_state *s)
{
    int k = ui_sel_comp(s), l = s->layer;
    unsigned bits = k < 0 ? A3_LOCK_ALL : 1u << k;
    int unlock = (s->plan->lock[l] & bits) == bits;
    char name[64];
    a3_plan *p = edit_begin(s);
    if (!p) return;
    if (unlock) p->lock[l] &= (uint8_t)~bits;
    else p->lock[l] |= (uint8_t)bits; /* the widths stay as they are: a lock pins them */
    edit_commit(s, p);
    s->group = k < 0 ? -1 : s->group;
    if (k < 0) snprintf(name, sizeof name, "layer %d", l);
    else snprintf(name, sizeof name, "layer %d %s", l, KIND[k]);
    ui_msg(s, 0, "%s %s", name, unlock ? "unlocked" : "locked at its width (a and u re-allocate around it; L unlocks)");
}

static void swap_to(ui_state *s, ui_snap *from, int *n_from, ui_snap *to, int *n_to)
{
    push_snap(to, n_to, (ui_snap){s->plan, s->plan_id});
    ui_snap v = from[--(*n_from)];
    s->plan = v.plan, s->plan_id = v.id;
    recompute(s, 0);
}

void ui_undo(ui_state *s)
{
    if (!s->n_undo) {
        ui_msg(s, 0, "nothing to undo");
        return;
    }
    swap_to(s, s->undo, &s->n_undo, s->redo, &s->n_redo);
    ui_msg(s, 0, "undone (%d more to undo, %d to redo)", s->n_undo, s->n_redo);
}

void ui_redo(ui_state *s)
{
    if (!s->n_redo) {
        ui_msg(s, 0, "nothing to redo");
        return;
    }
    swap_to(s, s->redo, &s->n_redo, s->undo, &s->n_undo);
    ui_msg(s, 0, "redone (%d more to redo)", s->n_redo);
}
