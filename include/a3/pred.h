/* pred: what a plan will do, read from measurements: the exact loss curve
 * of every method (A3-METHOD.md sections 3-5, beyond the cache's A3
 * curves) and the probe's NLL sensitivities. Kept in a sidecar file next to
 * the cache, CACHE.pred, so the cache format (and caches already made)
 * stays as it is.
 *
 * Curves (a3_pred_curves; the model's weights are needed, one layer at a
 * time, plus the cache's statistics). For every layer, KV group and method
 * the raw loss (mean per calibration token; QK: per token pair, as in the
 * cache) at every width, in the selection order that method's solver uses:
 *   qk  [method][(l * n_kv + g) * (hd/2 + 1) + k]  k kept pairs
 *       a3: the cache's pair order; weight-norm: the solver's weight-norm
 *       order; greedy-exact: its backward elimination, which is nested, so
 *       one order serves every rank. Loss sum_i trace(Gq_i Gk)|dropped,
 *       exact for the RoPE-free score error. O(hd^2) per group.
 *   ov  [method][(l * n_kv + g) * (hd + 1) + r]   rank r
 *       the error of every query head's output z_i W_o,i, summed over the
 *       group's heads, of the method's rank-r solution. Every method keeps
 *       W~_vo,i = W_v P_r W_o,i with P_r = Lw^-T U_r U_r^T Lw^T (Lw the
 *       damped Cholesky factor of its weighting, Lw^T A Lw = U S^2 U^T,
 *       A = sum_i W_o,i W_o,i^T), so
 *         loss(r) = sum_i sum_{j,k >= r} G_i[j,k] M_i[j,k],
 *         G_i = U^T Lw^-1 (C_i/N) Lw^-T U,  M_i = U^T Lw^T W_o,i W_o,i^T Lw U;
 *       for MHA "a3" (Lw from C_i) this is sum_{j>=r} sigma_j^2; for GQA it
 *       is the attention-output error, not the paper's Gv objective.
 *       O(per hd^3 + per hd^2 d) per group.
 *   mlp [method][l * (d_ff + 1) + w]             width w
 *       a3 / weight-norm: the CUR loss of dropping order[w..]: with Ru
 *       (mlp_exact) trace(W_d[S',:]^T Ru[S',S'] W_d[S',:]) / N, exact, from
 *       H = Ru o (W_d W_d^T) by one pass over the order (O(d_ff^2 d) for
 *       the Gram matrix by dsyrk, O(d_ff^2) for the pass); without Ru the
 *       diagonal ESTIMATE sum_{n in S'} D_n ||W_d[n,:]||^2 / N.
 *       a3-refit (only with Ru): trace(W_d^T (Ru - Ru[:,S] Ru[S,S]^-1
 *       Ru[S,:]) W_d) / N for S = the a3 order's first w, for every w at
 *       once: with Ru[P,P] + delta I = L L^T (dpotrf, in the a3 order P,
 *       delta = 0 unless Ru is singular) and Y = L^-1 Ru[P,:] W_d =
 *       L^T W_d[P,:] - delta L^-1 W_d[P,:] (dtrmm, plus dtrsm when delta > 0),
 *       the explained energy at width w is the sum of the first w squared
 *       row norms of Y (Y's row i depends on the first i rows only). Cost
 *       O(d_ff^3 / 3 + d_ff^2 d), all BLAS-3: the growing-Cholesky recurrence
 *       in blocked form. The solver (a3_mlp_refit) uses the same delta.
 *   Totals for the relative loss: the width-0 entry (the output energy:
 *   trace(W_d^T Ru W_d)/N for the exact MLP curves).
 *   Complexity of the exact MLP curves of one layer (with Ru), all three
 *   methods together, everything in the a3 order P so that no pass gathers
 *   with strides: d_ff^2 d flops (dsyrk, G = W_d[P,:] W_d[P,:]^T) +
 *   d_ff^3 / 3 (dpotrf of Ru[P,P]) + d_ff^2 d (dtrmm, Y = L^T W_d[P,:]),
 *   about 1.44e12 for a 7B layer (d 4096, d_ff 11008), plus O(d_ff^2 +
 *   d_ff d) sequential memory passes (tiled transposes, the Hadamard
 *   product, the curve sums; the weight-norm curve gathers along rows of
 *   H in cache). Work space 2 d_ff^2 + d_ff d doubles (2.1 GiB at 7B),
 *   allocated once for all layers.
 *   Measured seconds: docs/PERFORMANCE.md, section "predict" (make
 *   bench-predict). QK and OV cost O(n_kv (hd^3 + per hd^2 d)): negligible.
 *
 * Probe (a3_probe): per layer l and kind k, the NLL change on a probe set
 * of tokens when only that component is cut with the A3 method (QK:
 * dropped pairs' query dims zeroed; OV: v replaced by v P_r; MLP: dropped
 * neurons of u zeroed: exactly what the reduced weights compute), at two
 * cuts: the width whose exact relative loss is closest to the target
 * (0.3), and width 0 (relative loss 1). The NLL change as a function of
 * the relative loss is taken piecewise linear through (0, 0) and those
 * points, constant past the last one (a relative loss above 1 is possible,
 * e.g. QK pairs whose scores cancel, and costs what removing the
 * component costs); the predicted NLL change of a plan is the sum over layers and
 * kinds, rel(l, k) from the curves of the plan's methods (first order:
 * perturbations of different components add up; the curves measure the
 * squared error, to which a small NLL change is proportional), corrected
 * for interaction: the NLL change is second order in the perturbation of
 * the output, and the perturbations e_i of different components are
 * correlated, |sum e_i|^2 = sum |e_i|^2 + kappa sum_{i != j} |e_i| |e_j|,
 * so with f_i ~ |e_i|^2 a plan is predicted
 *   sum f_i + kappa sum_{i != j} sqrt(f_i f_j) = (1 - kappa) S + kappa R^2,
 * S = sum f_i, R = sum sqrt f_i. kappa is measured by one joint run with
 * every component at its first cut at once: kappa = (J - S_j) /
 * (R_j^2 - S_j), clamped to [0, 1]. Many small cuts (uniform plans) thus
 * cost more than the same S in a few components, as measured. Cost: 1 + 6 n_layers truncated runs, each from layer l to the
 * end, plus the joint run, i.e. about 2 + 3 (n_layers + 1) forward passes
 * over the probe tokens (the clean hidden state at layer l is reused). Layers finish in order and the
 * sidecar is saved after each one, so an interrupted probe resumes at the
 * next layer.
 *
 * Sidecar (JSON, UTF-8, written atomically):
 *   {"format": "a3-pred", "version": 1, "curves_version": 2, "tool": "a3 0.1.0",
 *    "cache": {"fingerprint": hex64},        a3_plan_cache_fingerprint
 *    "dims": {"n_layers":..,"n_kv_heads":..,"head_dim":..,"d_ff":..},
 *    "mlp_exact": bool,
 *    "curves": {"qk": {"a3": [..], "weight-norm": [..], "greedy-exact": [..]},
 *               "ov": {"a3": [..], "a3-csum": [..], "svd": [..]},
 *               "mlp": {"a3": [..], "weight-norm": [..], "a3-refit": [..] | null}},
 *    "probe": null | {"windows": hex64, "tokens": N, "samples": n, "seqlen": L,
 *               "base_nll": x, "layers_done": k, "target": 0.3,
 *               "rel": [..], "dnll": [..],
 *               "joint": null | {"sum": S_j, "root": R_j, "dnll": J}}}   (layers_done x 3 kinds x
 *    A3_PROBE_LEVELS each, flat;
 *    the curves are flat arrays in the index order of the struct below)
 * Loading checks the format, the curves' definition version, dims, array
 * lengths, finite values and that the cache fingerprint matches the cache
 * it is used with. */
#ifndef A3_PRED_H
#define A3_PRED_H

#include <stdint.h>

#include "a3/cache.h"
#include "a3/model.h"
#include "a3/plan.h"
#include "a3/util.h"

#define A3_PRED_VERSION 1
/* The definition of what the sidecar's numbers are (which loss, which
 * selection order, which probe cuts), written as "curves_version" and
 * checked on load: a sidecar from code with another definition is refused
 * (A3_EMISMATCH), so 'a3 calibrate' and 'a3 probe' recompute it instead of
 * reusing it by its matching cache fingerprint, and 'a3 plan' asks for a
 * rerun. Files without the field (written before it existed) count as
 * version 1. Bump it with any change to src/calib/pred.c or probe.c that
 * moves a stored number by more than round-off (1e-12 relative). */
#define A3_PRED_CURVES_VERSION 2
#define A3_PROBE_LEVELS 2 /* probe cuts per component: near the target
                           * relative loss, and the whole component */

struct a3_pred {
    int n_layers, n_kv_heads, head_dim, d_ff;
    char cache_fingerprint[65];
    int mlp_exact; /* the MLP curves use Ru (exact); else diagonal estimates */
    double *qk[A3_QK_METHOD_COUNT];   /* (n_layers * n_kv, hd/2 + 1) */
    double *ov[A3_OV_METHOD_COUNT];   /* (n_layers * n_kv, hd + 1) */
    double *mlp[A3_MLP_METHOD_COUNT]; /* (n_layers, d_ff + 1); refit NULL without Ru */
    /* probe; layers_done == 0: no probe */
    int layers_done;
    int64_t probe_tokens;
    int probe_samples, probe_seqlen;
    char probe_windows[65]; /* hex SHA-256 of the probe's token ids (LE u32) */
    double probe_target, base_nll;
    double *probe_rel, *probe_dnll; /* (n_layers, 3, A3_PROBE_LEVELS) */
    int joint_known;                /* the joint run was made */
    double joint_sum, joint_root;   /* sum of the single predictions f_i
                                     * there, and sum of their sqrt */
    double joint_dnll;              /* its measured NLL change J */
};
/* typedef a3_pred is in plan.h */

/* Empty sidecar for the cache's dims (curves allocated, zero). */
int a3_pred_new(const a3_cache *c, a3_pred **out, a3_err *err);
void a3_pred_free(a3_pred *p); /* accepts NULL */

/* Fill every curve from the model (same dims as the cache) and the cache.
 * progress: stage "curves", layers done of n_layers. */
int a3_pred_curves(a3_model *m, const a3_cache *c, a3_pred *p,
                   a3_progress_fn progress, void *ctx, a3_err *err);

/* Raw loss of component kind k, method m, layer l, group g at width
 * (QK: even rank); NAN if that method has no curve (refit without Ru). */
double a3_pred_loss(const a3_pred *p, a3_comp k, int m, int l, int g, int width);
/* Whether the probe is complete (every layer measured). */
int a3_pred_has_probe(const a3_pred *p);
/* Predicted NLL change (nats) of layer l's kind k alone at relative loss
 * rel: piecewise linear through (0, 0) and the probe's points (rel_i,
 * dnll_i), the dnll made non-negative and non-decreasing (noise), and
 * constant past the last point (rel > 1 costs what removing the component
 * costs: saturating; see pred.c). */
double a3_pred_nll_single(const a3_pred *p, int l, a3_comp k, double rel);
/* Predicted NLL change of a plan whose single predictions are f_i, given
 * S = sum f_i and R = sum sqrt(f_i): (1 - kappa) S + kappa R^2, with
 * kappa in [0, 1] from the joint run (see above); S without one. */
double a3_pred_nll_total(const a3_pred *p, double S, double R);
/* kappa of the joint run (0 without one). */
double a3_pred_kappa(const a3_pred *p);
/* Sensitivity s[l][k] for the greedy allocator's linear objective: the
 * steeper of the probe points' secants dnll_i / rel_i (>= 0). */
double a3_pred_scale(const a3_pred *p, int l, a3_comp k);

/* The sidecar's path: cache_path + ".pred" (malloc'd; NULL on ENOMEM). */
char *a3_pred_path(const char *cache_path);
int a3_pred_save(const a3_pred *p, const char *path, a3_err *err);
/* Load and check against the cache (dims, fingerprint: A3_EMISMATCH). */
int a3_pred_load(const char *path, const a3_cache *c, a3_pred **out, a3_err *err);
/* a3_pred_load of a3_pred_path(cache_path) when that file exists; *out
 * NULL (and A3_OK) when it does not. */
int a3_pred_load_for(const char *cache_path, const a3_cache *c, a3_pred **out, a3_err *err);

typedef struct {
    double target;   /* relative loss of the first probe cut (0.3) */
    const char *save_path; /* save after every layer (resume point), or NULL */
} a3_probe_opts;

/* The width the probe cuts layer l's kind k to at level lv (0: the width
 * whose relative loss is nearest p->probe_target, 1: width 0). */
int a3_probe_width(const a3_cache *c, const a3_pred *p, int l, a3_comp k, int lv);

/* Run the probe over windows (n_windows x seqlen tokens), resuming after
 * p->layers_done layers when the windows match the recorded ones (a
 * different probe set restarts). Needs the curves. progress: stage
 * "probe layer i/n", layer runs done of their total. */
int a3_probe(a3_model *m, const a3_cache *c, a3_pred *p, const int32_t *windows,
             int n_windows, int seqlen, const a3_probe_opts *o,
             a3_progress_fn progress, void *ctx, a3_err *err);

/* Whether `a3 calibrate` runs the probe by default (without --probe or
 * --no-probe): when its estimated cost is at most A3_PROBE_AUTO_FLOPS, or
 * at most A3_PROBE_AUTO_SHARE of the calibration's own estimated cost.
 * The probe grows with n_layers^2 (each of the 6 n_layers cuts runs from its
 * layer to the end), the calibration with n_layers, so small models get it
 * and 7B-sized ones (about 2e16 flops for 8 x 2048 probe tokens, 6x a
 * default 128 x 2048 calibration) do not. Estimates in floating-point
 * operations, from the shape only (multiply-add = 2):
 *   layer run, per token: 2 d (q + 2 kv) + 2 q d + 6 d d_ff (projections,
 *     q = n_heads hd, kv = n_kv hd) + 2 q seqlen (causal attention)
 *   probe: tokens x (n_layers (3 n_layers + 5) layer runs + (6 n_layers + 2)
 *     x 2 d vocab for the NLL evaluations), see the probe's cost above
 *   calibration: tokens x n_layers x (layer run + (2 n_heads + 2 n_kv) hd^2
 *     for the Gram statistics + d_ff^2 with Ru (--mlp-full), else 2 d_ff)
 * They ignore memory traffic and threading: a rule, not a timing. */
#define A3_PROBE_AUTO_FLOPS 1e12
#define A3_PROBE_AUTO_SHARE 0.25
double a3_probe_cost_flops(const a3_config *k, int64_t probe_tokens, int seqlen);
double a3_calib_cost_flops(const a3_config *k, int64_t tokens, int seqlen, int mlp_full);
int a3_probe_by_default(double probe_flops, double calib_flops);

#endif
