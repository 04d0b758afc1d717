/* plan checks: everything a plan must satisfy before a solver or a writer
 * sees it. Messages name the JSON path of the offending value, the same
 * path whether the plan came from a file or was built in memory. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "a3/plan.h"
#include "internal.h"

static int bad(const a3_plan *p, const char *path, const char *what, a3_err *err)
{
    return a3_err_set(err, A3_EINVAL, "%s: %s: %s", p->source, path, what);
}

/* One rank or width: in [0, full], even for QK. */
static int check_width(const a3_plan *p, a3_comp k, int l, int g, a3_err *err)
{
    int w = *plan_width_ptr(p, k, l, g), full = plan_full_width(&p->dims, k);
    char path[64], what[96];
    if (k == A3_COMP_MLP) snprintf(path, sizeof path, "layers[%d].mlp", l);
    else snprintf(path, sizeof path, "layers[%d].%s[%d]", l, a3_comp_name(k), g);
    if (w < 0) snprintf(what, sizeof what, "%s %d is negative", k == A3_COMP_MLP ? "width" : "rank", w);
    else if (w > full && k == A3_COMP_MLP) snprintf(what, sizeof what, "width %d exceeds d_ff %d", w, full);
    else if (w > full) snprintf(what, sizeof what, "rank %d exceeds head dim %d", w, full);
    else if (k == A3_COMP_QK && w % 2)
        snprintf(what, sizeof what, "odd rank %d (QK ranks keep whole RoPE pairs, so they are even)", w);
    else return A3_OK;
    return bad(p, path, what, err);
}

static int check_widths(const a3_plan *p, a3_err *err)
{
    for (int l = 0; l < p->dims.n_layers; l++)
        for (int k = 0; k < A3_COMP_COUNT; k++)
            for (int g = 0; g < plan_groups(&p->dims, (a3_comp)k); g++) {
                int rc = check_width(p, (a3_comp)k, l, g, err);
                if (rc) return rc;
            }
    return A3_OK;
}

static int check_ids(const a3_plan *p, a3_err *err)
{
    if (strnlen(p->tool, sizeof p->tool) == sizeof p->tool) return bad(p, "tool", "not terminated", err);
    if (strnlen(p->architecture, sizeof p->architecture) == sizeof p->architecture)
        return bad(p, "model.architecture", "not terminated", err);
    if (p->model_fingerprint[0] && !plan_is_hex64(p->model_fingerprint))
        return bad(p, "model.fingerprint", "not 64 lower-case hex digits (or empty)", err);
    if (p->cache_fingerprint[0] && !plan_is_hex64(p->cache_fingerprint))
        return bad(p, "cache.fingerprint", "not 64 lower-case hex digits (or empty)", err);
    return A3_OK;
}

static int check_methods_budget(const a3_plan *p, a3_err *err)
{
    char what[96];
    int m[A3_COMP_COUNT] = {(int)p->qk_method, (int)p->ov_method, (int)p->mlp_method};
    for (int k = 0; k < A3_COMP_COUNT; k++) {
        if (strcmp(a3_plan_method_name((a3_comp)k, m[k]), "?") != 0) continue;
        char path[32];
        snprintf(path, sizeof path, "methods.%s", a3_comp_name((a3_comp)k));
        return bad(p, path, "unknown method", err);
    }
    if ((unsigned)p->budget >= A3_BUDGET_COUNT) return bad(p, "budget.kind", "unknown budget kind", err);
    if (p->budget == A3_BUDGET_NONE && p->budget_pct != 0)
        return bad(p, "budget.percent", "must be 0 when the budget kind is none", err);
    if (!(p->budget_pct >= 0 && p->budget_pct < 100)) {
        snprintf(what, sizeof what, "%g out of range [0, 100)", p->budget_pct);
        return bad(p, "budget.percent", what, err);
    }
    if (p->context < 1 || p->context > A3_PLAN_MAX_CONTEXT) {
        snprintf(what, sizeof what, "%d out of range [1, %d]", p->context, A3_PLAN_MAX_CONTEXT);
        return bad(p, "context", what, err);
    }
    if (plan_cost_bound(&p->dims, p->context) > 0x1p62)
        return bad(p, "context", "too long for this model (FLOPs overflow 64 bits)", err);
    if (strcmp(a3_plan_kv_dtype_name(p->kv_dtype), "?") == 0) return bad(p, "kv_dtype", "not f16, bf16 or f32", err);
    return A3_OK;
}

static int check_alloc_kind(const a3_plan *p, a3_comp k, a3_err *err)
{
    const a3_plan_alloc *a = &p->alloc;
    char path[48], what[96];
    int full = plan_full_width(&p->dims, k);
    if (!(isfinite(a->weight[k]) && a->weight[k] >= 0 && a->weight[k] <= 1e6)) {
        snprintf(path, sizeof path, "allocator.weights.%s", a3_comp_name(k));
        return bad(p, path, "not a number in [0, 1e6]", err);
    }
    if (!(a->keep[k] >= 0 && a->keep[k] <= 1)) {
        snprintf(path, sizeof path, "allocator.keep.%s", a3_comp_name(k));
        return bad(p, path, "not a fraction in [0, 1]", err);
    }
    if (a->min_rank[k] < 0 || a->min_rank[k] > full) {
        snprintf(path, sizeof path, "allocator.min_rank.%s", a3_comp_name(k));
        snprintf(what, sizeof what, "%d out of range [0, %d]", a->min_rank[k], full);
        return bad(p, path, what, err);
    }
    return A3_OK;
}

static int check_alloc(const a3_plan *p, a3_err *err)
{
    if ((unsigned)p->alloc.strategy >= A3_STRATEGY_COUNT)
        return bad(p, "allocator.strategy", "unknown strategy", err);
    if (p->alloc.multiple < 1 || p->alloc.multiple > A3_PLAN_MAX_MULTIPLE) {
        char what[64];
        snprintf(what, sizeof what, "%d out of range [1, %d]", p->alloc.multiple, A3_PLAN_MAX_MULTIPLE);
        return bad(p, "allocator.multiple", what, err);
    }
    for (int k = 0; k < A3_COMP_COUNT; k++) {
        int rc = check_alloc_kind(p, (a3_comp)k, err);
        if (rc) return rc;
    }
    for (int l = 0; l < p->dims.n_layers; l++)
        if (p->lock[l] & ~A3_LOCK_ALL) return bad(p, "allocator.locks", "unknown lock bits", err);
    return A3_OK;
}

int plan_check(const a3_plan *p, a3_err *err)
{
    int rc = plan_check_dims(&p->dims, p->source, err);
    if (!rc) rc = check_ids(p, err);
    if (!rc) rc = check_methods_budget(p, err);
    if (!rc) rc = check_alloc(p, err);
    if (!rc) rc = check_widths(p, err);
    if (rc) return rc;
    if (p->loss_known) {
        for (int k = 0; k < A3_COMP_COUNT; k++)
            if (!isfinite(p->loss.rel[k])) return bad(p, "summary.relative_loss", "not finite", err);
        if (!isfinite(p->loss.objective)) return bad(p, "summary.objective", "not finite", err);
    }
    return A3_OK;
}

int a3_plan_validate(const a3_plan *p, const a3_cache *c, int force, a3_err *err)
{
    int rc = plan_check(p, err);
    if (rc || !c) return rc;
    if ((rc = plan_match_cache(p, c, err))) return rc;
    if (force || strcmp(p->model_fingerprint, c->fingerprint) == 0) return A3_OK;
    return a3_err_set(err, A3_EMISMATCH,
                      "%s: model.fingerprint: the plan is for model %.12s..., the cache for %.12s... "
                      "(refused unless forced)",
                      p->source, p->model_fingerprint[0] ? p->model_fingerprint : "(unknown)", c->fingerprint);
}
