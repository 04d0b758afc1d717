/* reduce: the A3 solvers (A3-METHOD.md sections 3-5), one component of one
 * layer at a time, from the calibration cache and that layer's weights.
 *
 * Weights are float32 in HF storage order (out, in); solves run in float64
 * and only the results are rounded to float32. Every function is pure: it
 * reads the cache and the given weights and writes the given outputs.
 *
 * Reduced layouts (what `a3 apply` writes and src/model runs):
 *   QK, group g at rank r = 2m: kept RoPE frequencies idx[0..m) ascending;
 *     each reduced head has dims (j, j + m) = original (idx[j], idx[j] + hd/2)
 *     (HF rotate_half layout kept inside the reduced head).
 *   OV, group g at rank r: v rows (r, d) = Sigma_r U_r^T Lc^-1 V_g,
 *     o columns of each head j of the group (d, r) = V_r restricted to that
 *     head's d outputs, where Lc^T Wo_cat = U Sigma V^T.
 *   MLP at width w: the kept neurons keep[0..w) ascending; gate/up rows and
 *     down columns gathered (or down refit by least squares). */
#ifndef A3_REDUCE_H
#define A3_REDUCE_H

#include <stdint.h>

#include "a3/cache.h"
#include "a3/model.h"
#include "a3/plan.h"
#include "a3/util.h"

/* One layer's original weights, float32, HF order. Biases may be NULL. */
typedef struct {
    int d, n_heads, n_kv_heads, head_dim, d_ff;
    const float *wq, *wk, *wv, *wo; /* (nh*hd, d) (nkv*hd, d) (nkv*hd, d) (d, nh*hd) */
    const float *bq, *bk, *bv;
    const float *wg, *wu, *wd;      /* (ff, d) (ff, d) (d, ff) */
} a3_layer_f32;

/* One layer of a model's weights in float32 (owned buffers). */
typedef struct {
    float *buf[10];
    a3_layer_f32 w;
} a3_layer_in;
/* Load layer l (biases when the model has them); free with
 * a3_layer_in_free (also after a failure). Errors name the tensor. */
int a3_layer_in_load(const a3_model *m, int l, a3_layer_in *li, a3_err *err);
void a3_layer_in_free(a3_layer_in *li);

/* QK: the pairs of group g in the method's selection order (the first k
 * are the choice at rank 2k; w only for weight-norm). */
int a3_qk_order(const a3_cache *c, int layer, int g, a3_qk_method m,
                const a3_layer_f32 *w, int32_t *order, a3_err *err);

/* QK: choose the rank/2 kept frequencies of group g (ascending in idx).
 * loss: the exact mean loss of that choice (trace form on the cache). */
int a3_qk_select(const a3_cache *c, int layer, int g, int rank, a3_qk_method m,
                 const a3_layer_f32 *w, int32_t *idx, double *loss, a3_err *err);

/* OV: solve group g at rank r. new_v (r, d), new_bv (r) if w->bv,
 * new_o (n_heads_in_group, d, r): head j's o_proj columns. loss: sum of the
 * dropped sigma^2 (mean per token). damping: eps used (0 if none). */
int a3_ov_solve(const a3_cache *c, int layer, int g, int rank, a3_ov_method m,
                const a3_layer_f32 *w, float *new_v, float *new_bv, float *new_o,
                double *loss, double *damping, a3_err *err);

/* OV: the method's weighting matrix W (hd x hd; mean per token) of group
 * g, whose damped Cholesky factor whitens W_o (w only for svd). */
void a3_ov_weighting(const a3_cache *c, int layer, int g, a3_ov_method m,
                     const a3_layer_f32 *w, double *W);

/* MLP: every neuron in the method's selection order (d_ff entries). */
int a3_mlp_order(const a3_cache *c, int layer, a3_mlp_method m,
                 const a3_layer_f32 *w, int32_t *order, a3_err *err);
/* The refit's damping unit: mean(diag Ru) of the layer (1 if not > 0). */
double a3_mlp_refit_damping(const double *Ru, int ff);

/* OV from explicit statistics (the sequential solver, docs/SEQUENTIAL.md):
 * minimise sum over the group's heads j of E||z_j Wo_j - y_j T S_j||^2 at
 * rank r, where Cyy (hd, hd) = E[y^T y] is shared by the group's heads and
 * Cyz (per, hd, hd) holds E[y_j^T z_j] per head. Cyz NULL means Cyz_j =
 * Cyy for every head, which is a3_ov_solve with weighting Cyy. Outputs as
 * a3_ov_solve; loss: sum of the dropped sigma^2 of Ly^-1 [Cyz_j Wo_j]_j
 * (Cyy = Ly Ly^T), the error above the part no rank can remove. */
int a3_ov_solve_stats(const double *Cyy, const double *Cyz, int layer, int g, int rank,
                      const a3_layer_f32 *w, float *new_v, float *new_bv, float *new_o,
                      double *loss, double *damping, a3_err *err);
/* a3_ov_solve_stats with an extra target per head: minimise sum_j
 * E||z_j Wo_j + t_j - y_j T S_j||^2, Cyd (per, hd, d) = E[y_j^T t_j]
 * (NULL: none, = a3_ov_solve_stats). Cyd without Cyz is
 * refused (A3_EINVAL). T (hd, rank; may be NULL) receives the map of the
 * solution in float64: new_v = T^T V_g, new_bv = T^T b_g, with V_g, b_g
 * the group's original v_proj rows and bias (before rounding to float). */
int a3_ov_solve_stats_t(const double *Cyy, const double *Cyz, const double *Cyd, int layer, int g, int rank,
                        const a3_layer_f32 *w, float *new_v, float *new_bv, float *new_o, double *loss,
                        double *damping, double *T, a3_err *err);

/* MLP: choose the kept neurons (ascending) at width w. */
int a3_mlp_select(const a3_cache *c, int layer, int width, a3_mlp_method m,
                  const a3_layer_f32 *w, int32_t *keep, a3_err *err);
/* Refit: new_down (d, width) = W_down Ru[:,S] Ru[S,S]^-1 (needs Ru). */
int a3_mlp_refit(const a3_cache *c, int layer, const int32_t *keep, int width,
                 const a3_layer_f32 *w, float *new_down, a3_err *err);

/* Refit from explicit statistics (the sequential solver): new_down (d,
 * width) = (G[S,S]^-1 UY[S,:])^T with G (ff, ff) = E[u^T u] of the inputs
 * the reduced MLP sees and UY (ff, d) = E[u^T y] against the target output
 * y; the same damping (1e-10 of the mean diagonal) and solver as
 * a3_mlp_refit, which is the case G = Ru, UY = Ru W_down^T. */
int a3_mlp_refit_stats(const double *G, const double *UY, int ff, int d, const int32_t *keep, int width,
                       int layer, float *new_down, a3_err *err);

#endif
