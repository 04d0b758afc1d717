/* plan allocators: uniform and greedy (definitions in include/a3/plan.h).
 *
 * Both work on "components": one KV group's QK or OV, or one layer's MLP.
 * A component's allowed widths are indexed 0..n_mult: index i < n_mult is
 * lo + i * unit, index n_mult is the full width. Every cost is linear in
 * width, so a component's cost is width * ucost, and its contribution to
 * the objective is scale * (its group's loss at that width), with scale =
 * weight of its kind / total loss of its layer and kind. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/plan.h"
#include "a3/pred.h"
#include "internal.h"

typedef struct {
    a3_comp kind;
    int layer, group;
    int full, lo, unit, n_mult;
    int fixed;      /* locked, or its width does not change the budgeted cost */
    int keep;       /* the width a fixed component stays at: the plan's own
                     * if locked (a lock pins the width chosen), else full */
    int64_t ucost;  /* budgeted cost per unit of width */
    double scale;   /* objective per unit of raw loss */
} comp;

typedef struct {
    const a3_plan *p;
    const a3_cache *c;
    const a3_pred *pr; /* exact curves and probe, or NULL */
    comp *comps;      /* (n) in (layer, kind, group) order */
    size_t n;
    double *ov_tail;  /* (n_layers, n_kv, hd + 1): sum_{j >= r} sv_j^2 */
    int64_t target;   /* cost to remove at least */
} ws;

static int width_at(const comp *c, int i) { return i < c->n_mult ? c->lo + i * c->unit : c->full; }

/* Largest index whose width is <= x, clamped to the smallest allowed. */
static int index_floor(const comp *c, double x)
{
    if (x >= c->full) return c->n_mult;
    if (x < c->lo) return 0;
    int i = (int)((x - c->lo) / c->unit);
    return i < c->n_mult ? i : c->n_mult - 1;
}

static double raw_loss(const ws *w, const comp *c, int width)
{
    if (c->kind != A3_COMP_OV || w->pr) return plan_loss_of(w->p, w->c, w->pr, c->kind, c->layer, c->group, width);
    size_t hd = (size_t)w->p->dims.head_dim;
    return w->ov_tail[((size_t)c->layer * (size_t)w->p->dims.n_kv_heads + (size_t)c->group) * (hd + 1) +
                      (size_t)width];
}

static double comp_loss(const ws *w, const comp *c, int width) { return c->scale * raw_loss(w, c, width); }

/* ---- setup --------------------------------------------------------------------- */

static int unit_of(const a3_plan *p, a3_comp k)
{
    int m = p->alloc.multiple;
    return k == A3_COMP_QK && m % 2 ? 2 * m : m; /* lcm(2, m) */
}

static void fill_ov_tail(ws *w)
{
    const a3_plan_dims *m = &w->p->dims;
    size_t hd = (size_t)m->head_dim;
    for (int l = 0; l < m->n_layers; l++)
        for (int g = 0; g < m->n_kv_heads; g++) {
            const double *sv = w->c->layers[l].ov_sv + (size_t)g * hd;
            double *t = w->ov_tail + ((size_t)l * (size_t)m->n_kv_heads + (size_t)g) * (hd + 1);
            t[hd] = 0;
            for (size_t j = hd; j-- > 0;) t[j] = t[j + 1] + sv[j] * sv[j];
        }
}

/* weight_k / (total loss of layer l, kind k at width 0), or 0; with a
 * probe, weight_k * s[l][k] / total: the objective is then the predicted
 * NLL change (times the weights). */
static double kind_scale(const ws *w, a3_comp k, int l)
{
    double total = 0;
    comp probe = {.kind = k, .layer = l};
    for (probe.group = 0; probe.group < plan_groups(&w->p->dims, k); probe.group++)
        total += raw_loss(w, &probe, 0);
    double weight = w->p->alloc.weight[k];
    if (w->pr && a3_pred_has_probe(w->pr)) weight *= fmax(a3_pred_scale(w->pr, l, k), 0.0);
    return total > 0 ? weight / total : 0;
}

static void init_comp(ws *w, comp *c, a3_comp k, int l, int g, double scale)
{
    const a3_plan *p = w->p;
    int64_t kvb = (int64_t)a3_dtype_size(p->kv_dtype);
    c->kind = k, c->layer = l, c->group = g, c->scale = scale;
    c->full = plan_full_width(&p->dims, k);
    c->unit = unit_of(p, k);
    c->lo = (p->alloc.min_rank[k] + c->unit - 1) / c->unit * c->unit;
    c->n_mult = c->lo < c->full ? (c->full - 1 - c->lo) / c->unit + 1 : 0;
    c->ucost = plan_unit_cost(&p->dims, k, p->budget, (int)kvb, p->context);
    int locked = (p->lock[l] & (1u << k)) != 0;
    c->fixed = locked || c->n_mult == 0 || (p->budget != A3_BUDGET_NONE && c->ucost == 0);
    c->keep = locked ? *plan_width_ptr(p, k, l, g) : c->full;
}

static void ws_free(ws *w)
{
    free(w->comps);
    free(w->ov_tail);
}

static int ws_init(ws *w, const a3_plan *p, const a3_cache *c, const a3_pred *pr, a3_err *err)
{
    const a3_plan_dims *m = &p->dims;
    size_t nl = (size_t)m->n_layers, nkv = (size_t)m->n_kv_heads, hd = (size_t)m->head_dim;
    memset(w, 0, sizeof *w);
    w->p = p, w->c = c, w->pr = pr;
    w->n = nl * (2 * nkv + 1);
    w->comps = a3_malloc_array(w->n, sizeof *w->comps);
    w->ov_tail = a3_malloc_array(nl * nkv, (hd + 1) * sizeof(double));
    if (!w->comps || !w->ov_tail) {
        ws_free(w);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory allocating ranks", p->source);
    }
    fill_ov_tail(w);
    size_t i = 0;
    for (int l = 0; l < m->n_layers; l++)
        for (int k = 0; k < A3_COMP_COUNT; k++) {
            double scale = kind_scale(w, (a3_comp)k, l);
            for (int g = 0; g < plan_groups(m, (a3_comp)k); g++) init_comp(w, &w->comps[i++], (a3_comp)k, l, g, scale);
        }
    return A3_OK;
}

static double objective(const ws *w, const int *width)
{
    double s = 0;
    for (size_t i = 0; i < w->n; i++) s += comp_loss(w, &w->comps[i], width[i]);
    return s;
}

/* Cost removed by the widths, relative to full width. */
static int64_t removed_of(const ws *w, const int *width)
{
    int64_t r = 0;
    for (size_t i = 0; i < w->n; i++) r += (int64_t)(w->comps[i].full - width[i]) * w->comps[i].ucost;
    return r;
}

/* Every component at full width, except locked ones at their own. */
static void set_full(const ws *w, int *width)
{
    for (size_t i = 0; i < w->n; i++) width[i] = w->comps[i].fixed ? w->comps[i].keep : w->comps[i].full;
}

/* ---- uniform ------------------------------------------------------------------- */

/* Widths at keep-fraction f for every movable component. */
static void uniform_at(const ws *w, double f, int *width)
{
    for (size_t i = 0; i < w->n; i++) {
        const comp *c = &w->comps[i];
        width[i] = c->fixed ? c->keep : width_at(c, index_floor(c, f * c->full));
    }
}

typedef struct {
    double remainder; /* how far past its width the exact f * full lies, in steps */
    size_t i;
} add_back;

static int cmp_add_back(const void *a, const void *b)
{
    const add_back *x = a, *y = b;
    if (x->remainder != y->remainder) return x->remainder > y->remainder ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Give single steps back, components nearest their next step first, while
 * the budget still holds: the overshoot ends below one step's cost. */
static int uniform_add_back(const ws *w, double f, int *width, int64_t removed)
{
    add_back *o = a3_malloc_array(w->n, sizeof *o);
    if (!o) return A3_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++) {
        const comp *c = &w->comps[i];
        if (c->fixed || width[i] == c->full) continue;
        int next = width_at(c, index_floor(c, width[i]) + 1);
        o[n++] = (add_back){(f * c->full - width[i]) / (next - width[i]), i};
    }
    qsort(o, n, sizeof *o, cmp_add_back);
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t j = 0; j < n; j++) {
            const comp *c = &w->comps[o[j].i];
            int *wd = &width[o[j].i];
            if (*wd == c->full) continue;
            int next = width_at(c, index_floor(c, *wd) + 1);
            int64_t back = (int64_t)(next - *wd) * c->ucost;
            if (removed - back < w->target) continue;
            removed -= back, *wd = next, changed = 1;
        }
    }
    free(o);
    return A3_OK;
}

static int uniform_budget(const ws *w, int *width)
{
    double lo = 0, hi = 1; /* removed(lo) >= target > removed(hi) */
    set_full(w, width);
    if (w->target <= 0) return A3_OK;
    for (int it = 0; it < 64; it++) {
        double mid = 0.5 * (lo + hi);
        uniform_at(w, mid, width);
        if (removed_of(w, width) >= w->target) lo = mid;
        else hi = mid;
    }
    uniform_at(w, lo, width);
    return uniform_add_back(w, lo, width, removed_of(w, width));
}

/* No budget: each kind at its own keep-fraction, nearest allowed width. */
static void uniform_keep(const ws *w, int *width)
{
    for (size_t i = 0; i < w->n; i++) {
        const comp *c = &w->comps[i];
        double x = w->p->alloc.keep[c->kind] * c->full;
        int a = index_floor(c, x), wa = width_at(c, a);
        int wb = a < c->n_mult ? width_at(c, a + 1) : wa;
        width[i] = c->fixed ? c->keep : (x - wa < wb - x ? wa : wb);
    }
}

/* ---- greedy -------------------------------------------------------------------- */

typedef struct {
    double key;
    size_t i;
} heap_item;

typedef struct {
    heap_item *v;
    size_t n;
} heap;

static int heap_less(const heap_item *a, const heap_item *b)
{
    return a->key < b->key || (a->key == b->key && a->i < b->i); /* ties: stable by component */
}

static void heap_push(heap *h, heap_item it)
{
    size_t j = h->n++;
    for (; j > 0 && heap_less(&it, &h->v[(j - 1) / 2]); j = (j - 1) / 2) h->v[j] = h->v[(j - 1) / 2];
    h->v[j] = it;
}

static heap_item heap_pop(heap *h)
{
    heap_item top = h->v[0], last = h->v[--h->n];
    size_t j = 0;
    for (;;) {
        size_t c = 2 * j + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && heap_less(&h->v[c + 1], &h->v[c])) c++;
        if (!heap_less(&h->v[c], &last)) break;
        h->v[j] = h->v[c];
        j = c;
    }
    if (h->n) h->v[j] = last;
    return top;
}

/* Lower convex hull of a component's (width, loss) points, as point
 * indices ascending in width; collinear points are kept, so runs stay
 * short. Walking it from the right gives, at each vertex, the run of
 * units with the smallest average loss increase per unit removed. hx, hy
 * (n_mult + 1 each) hold the hull's points, so each loss is computed once
 * (a 70B MLP has 28,673 widths per layer). */
static int hull_of(const ws *w, const comp *c, int *hull, double *hx, double *hy)
{
    int n = 0;
    for (int i = 0; i <= c->n_mult; i++) {
        double x = width_at(c, i), y = comp_loss(w, c, (int)x);
        while (n >= 2) {
            double xa = hx[n - 2], ya = hy[n - 2], xb = hx[n - 1], yb = hy[n - 1];
            if ((xb - xa) * (y - ya) - (yb - ya) * (x - xa) >= 0) break; /* convex turn */
            n--;
        }
        hull[n] = i, hx[n] = x, hy[n] = y;
        n++;
    }
    return n;
}

typedef struct {
    int *hull;     /* all components' hulls, concatenated */
    size_t *start; /* (n + 1) offsets into hull */
    int *pos;      /* (n) current vertex of each component */
    heap h;
} greedy_state;

static void greedy_free(greedy_state *g)
{
    free(g->hull);
    free(g->start);
    free(g->pos);
    free(g->h.v);
}

static int greedy_init(const ws *w, greedy_state *g)
{
    size_t total = 0, most = 1;
    memset(g, 0, sizeof *g);
    for (size_t i = 0; i < w->n; i++) {
        size_t k = w->comps[i].fixed ? 0 : (size_t)w->comps[i].n_mult + 1;
        total += k, most = k > most ? k : most;
    }
    g->hull = a3_malloc_array(total ? total : 1, sizeof *g->hull);
    g->start = a3_malloc_array(w->n + 1, sizeof *g->start);
    g->pos = a3_malloc_array(w->n, sizeof *g->pos);
    g->h.v = a3_malloc_array(w->n, sizeof *g->h.v);
    double *hx = a3_malloc_array(most, sizeof *hx), *hy = a3_malloc_array(most, sizeof *hy);
    if (!g->hull || !g->start || !g->pos || !g->h.v || !hx || !hy) {
        free(hx), free(hy);
        greedy_free(g);
        return A3_ENOMEM;
    }
    g->start[0] = 0;
    for (size_t i = 0; i < w->n; i++) {
        int len = w->comps[i].fixed ? 0 : hull_of(w, &w->comps[i], g->hull + g->start[i], hx, hy);
        g->start[i + 1] = g->start[i] + (size_t)len;
        g->pos[i] = len - 1; /* the full width; -1 when fixed */
    }
    free(hx), free(hy);
    return A3_OK;
}

/* Objective increase per unit of cost of the run ending at vertex pos. */
static double run_key(const ws *w, const greedy_state *g, size_t i)
{
    const comp *c = &w->comps[i];
    const int *hl = g->hull + g->start[i];
    int a = width_at(c, hl[g->pos[i] - 1]), b = width_at(c, hl[g->pos[i]]);
    return (comp_loss(w, c, a) - comp_loss(w, c, b)) / ((double)(b - a) * (double)c->ucost);
}

static void push_next(const ws *w, greedy_state *g, size_t i)
{
    if (g->pos[i] > 0) heap_push(&g->h, (heap_item){run_key(w, g, i), i});
}

/* The last run: remove its units one by one until the budget is met. */
static int64_t finish_run(const ws *w, const comp *c, int from, int to, int *width, int64_t removed)
{
    for (int idx = from - 1; idx >= to && removed < w->target; idx--) {
        int nw = width_at(c, idx);
        removed += (int64_t)(*width - nw) * c->ucost;
        *width = nw;
    }
    return removed;
}

static int greedy_budget(const ws *w, int *width)
{
    greedy_state g;
    set_full(w, width);
    if (w->target <= 0 || removed_of(w, width) >= w->target) return A3_OK;
    if (greedy_init(w, &g)) return A3_ENOMEM;
    for (size_t i = 0; i < w->n; i++) push_next(w, &g, i);
    int64_t removed = removed_of(w, width); /* locked components may already remove some */
    while (removed < w->target && g.h.n > 0) {
        size_t i = heap_pop(&g.h).i;
        const comp *c = &w->comps[i];
        const int *hl = g.hull + g.start[i];
        int from = hl[g.pos[i]], to = hl[g.pos[i] - 1];
        int64_t run = (int64_t)(width[i] - width_at(c, to)) * c->ucost;
        if (removed + run >= w->target) {
            removed = finish_run(w, c, from, to, &width[i], removed);
            break;
        }
        removed += run;
        width[i] = width_at(c, to);
        g.pos[i]--;
        push_next(w, &g, i);
    }
    greedy_free(&g);
    return A3_OK;
}

/* ---- entry point ----------------------------------------------------------------- */

static int check_request(const a3_plan *p, const a3_cache *c, a3_err *err)
{
    int rc = plan_match_cache(p, c, err);
    if (!rc) rc = plan_check(p, err);
    if (rc) return rc;
    if (p->alloc.strategy == A3_STRATEGY_MANUAL)
        return a3_err_set(err, A3_EINVAL, "%s: allocator.strategy: a manual plan is not allocated", p->source);
    if (p->alloc.strategy == A3_STRATEGY_GREEDY && p->budget == A3_BUDGET_NONE)
        return a3_err_set(err, A3_EINVAL, "the greedy allocator needs a budget");
    return A3_OK;
}

/* target = ceil(pct% of the full value); error if locks and minimum ranks
 * leave less than that removable. */
static int set_target(ws *w, int *scratch, a3_err *err)
{
    a3_cost_counts full;
    a3_plan_full_costs(w->p, &full);
    int64_t fv = a3_plan_budget_value(&full, w->p->budget);
    w->target = (int64_t)ceill((long double)w->p->budget_pct * (long double)fv / 100.0L);
    uniform_at(w, 0, scratch);
    int64_t most = removed_of(w, scratch);
    if (most >= w->target) return A3_OK;
    return a3_err_set(err, A3_EINVAL,
                      "budget %s=%g%%: unreachable, at most %.1f%% can be removed with these locks and "
                      "minimum ranks",
                      a3_budget_name(w->p->budget), w->p->budget_pct,
                      fv > 0 ? 100.0 * (double)most / (double)fv : 0.0);
}

static int run_strategy(ws *w, int *width, int *other, a3_err *err)
{
    const a3_plan *p = w->p;
    int rc = A3_OK;
    if (p->budget == A3_BUDGET_NONE) {
        uniform_keep(w, width);
        return A3_OK;
    }
    if ((rc = set_target(w, other, err))) return rc;
    if (p->alloc.strategy == A3_STRATEGY_UNIFORM) rc = uniform_budget(w, width);
    else if (!(rc = greedy_budget(w, width)) && !(rc = uniform_budget(w, other))) {
        /* Greedy is exact only for convex curves; never do worse than uniform. */
        if (objective(w, other) < objective(w, width)) memcpy(width, other, w->n * sizeof *width);
    }
    if (rc == A3_ENOMEM) return a3_err_set(err, A3_ENOMEM, "%s: out of memory allocating ranks", p->source);
    return rc;
}

int a3_plan_allocate(a3_plan *p, const a3_cache *c, a3_err *err) { return a3_plan_allocate_with(p, c, NULL, err); }

int a3_plan_allocate_with(a3_plan *p, const a3_cache *c, const a3_pred *pr, a3_err *err)
{
    int rc = check_request(p, c, err);
    if (rc) return rc;
    ws w;
    if ((rc = ws_init(&w, p, c, pr, err))) return rc;
    int *width = a3_malloc_array(w.n, sizeof *width), *other = a3_malloc_array(w.n, sizeof *other);
    if (!width || !other) rc = a3_err_set(err, A3_ENOMEM, "%s: out of memory allocating ranks", p->source);
    if (!rc) rc = run_strategy(&w, width, other, err);
    for (size_t i = 0; !rc && i < w.n; i++) {
        const comp *cp = &w.comps[i];
        *plan_width_ptr(p, cp->kind, cp->layer, cp->group) = width[i];
    }
    free(width);
    free(other);
    ws_free(&w);
    return rc ? rc : a3_plan_update_loss_with(p, c, pr, err);
}
