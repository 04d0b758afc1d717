/* Private helpers shared by the plan module's files. */
#ifndef A3_PLAN_INTERNAL_H
#define A3_PLAN_INTERNAL_H

#include "a3/plan.h"

/* Full width of a component kind (head_dim for QK/OV, d_ff for MLP). */
int plan_full_width(const a3_plan_dims *m, a3_comp k);

/* Cost of one unit of width of kind k under budget kind b (params:
 * elements, kv: bytes, flops: FLOPs/token at context); 0 when that width
 * does not change that cost (MLP under kv) or b is NONE. */
int64_t plan_unit_cost(const a3_plan_dims *m, a3_comp k, a3_budget_kind b,
                       int kv_bytes, int context);

/* Raw (unnormalised) loss of KV group g (0 for the MLP) of layer l at a
 * width, read from the cache's curves; width in range, QK width even. */
double plan_group_loss(const a3_cache *c, a3_comp k, int l, int g, int width);

/* Raw loss of the plan's method for kind k: the sidecar's exact curve
 * when pr has one, else plan_group_loss. */
double plan_loss_of(const a3_plan *p, const a3_cache *c, const a3_pred *pr, a3_comp k, int l, int g, int width);
/* The plan's method index for kind k. */
int plan_method_of(const a3_plan *p, a3_comp k);

/* Number of groups a kind has per layer (n_kv_heads, or 1 for the MLP). */
int plan_groups(const a3_plan_dims *m, a3_comp k);

/* Width of group g of kind k in layer l. */
int *plan_width_ptr(const a3_plan *p, a3_comp k, int l, int g);

/* A3_EMISMATCH unless the cache's dims equal the plan's. */
int plan_match_cache(const a3_plan *p, const a3_cache *c, a3_err *err);

/* Dims in range (A3_EINVAL "<src>: model.<field>: <what>"). */
int plan_check_dims(const a3_plan_dims *m, const char *src, a3_err *err);

/* Whole-model full-width FLOPs per token in double: dims whose bound
 * exceeds 2^62 are refused, so int64 costs never overflow. */
double plan_cost_bound(const a3_plan_dims *m, int context);

/* Everything but the cache: enums, options, locks, ranks. */
int plan_check(const a3_plan *p, a3_err *err);

/* Lower-case hex digits only, 64 of them. */
int plan_is_hex64(const char *s);

#endif
