/* curves: loss curves of one layer from its statistics (A3-METHOD.md
 * sections 3b, 4, 5). All losses are means per calibration token (QK: per
 * pair of tokens), so they are comparable across caches of different sizes.
 *
 *  QK (RoPE, HF rotate_half layout: pair p = dims p and p + hd/2):
 *    score_p = Gq[a,a] Gk[a,a] + Gq[b,b] Gk[b,b] with Gq summed over the
 *    group's query heads; loss keeping the first k pairs in score order =
 *    trace(Gq[S',S'] Gk[S',S']) / N^2 over the dropped dims S' (exact: the
 *    mean over all token pairs of the squared score error).
 *  OV: weighting W = C_i (MHA, exact) or Gv (GQA, the paper's choice);
 *    sigma^2 = eigenvalues of Lw^T (sum_i Wo_i Wo_i^T) Lw with W/N = Lw Lw^T;
 *    loss keeping r = sum_{j>r} sigma_j^2.
 *  MLP: score_n = D_n / N * ||W_down[n,:]||^2, loss = sum of dropped scores.
 */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "a3/calib.h"
#include "a3/linalg.h"

static int qk_group(a3_cache *c, int layer, int g, double *gq)
{
    a3_cache_layer *L = &c->layers[layer];
    int hd = c->head_dim, half = hd / 2, per = c->n_heads / c->n_kv_heads;
    const double *gk = L->gk + (size_t)g * hd * hd;
    double n2 = (double)c->n_tokens * (double)c->n_tokens;
    memset(gq, 0, (size_t)hd * hd * sizeof *gq);
    for (int i = g * per; i < (g + 1) * per; i++)
        for (size_t e = 0; e < (size_t)hd * hd; e++) gq[e] += L->gq[(size_t)i * hd * hd + e];
    double score[512];
    for (int p = 0; p < half; p++) {
        int a = p, b = p + half;
        score[p] = (gq[a * hd + a] * gk[a * hd + a] + gq[b * hd + b] * gk[b * hd + b]) / n2;
    }
    int32_t *order = L->qk_order + (size_t)g * half;
    if (a3_order_desc(score, half, order, L->qk_score + (size_t)g * half)) return -1;
    /* Drop pairs from the lowest score up: loss(k) has pairs order[k..] dropped. */
    double *loss = L->qk_loss + (size_t)g * (half + 1);
    a3_qk_drop_loss(gq, gk, hd, order, n2, loss);
    return 0;
}

/* A_g = sum over the group's heads of Wo_i Wo_i^T, Wo_i[a][e] = o_proj[e][i*hd + a]. */
static void wo_gram(const a3_cache *c, const float *o_proj, int g, double *A, double *buf)
{
    int hd = c->head_dim, per = c->n_heads / c->n_kv_heads, w = c->n_heads * hd;
    memset(A, 0, (size_t)hd * hd * sizeof *A);
    for (int e0 = 0; e0 < c->d; e0 += 256) {
        int ne = c->d - e0 < 256 ? c->d - e0 : 256;
        for (int e = 0; e < ne; e++)
            for (int a = 0; a < per * hd; a++) buf[(size_t)e * per * hd + a] = o_proj[(size_t)(e0 + e) * w + g * per * hd + a];
        for (int i = 0; i < per; i++)
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, hd, ne, 1.0, buf + i * hd, per * hd, 1.0, A, hd);
    }
    for (int a = 0; a < hd; a++)
        for (int b = 0; b < a; b++) A[a * hd + b] = A[b * hd + a];
}

static int ov_group(a3_cache *c, int layer, int g, double *work)
{
    a3_cache_layer *L = &c->layers[layer];
    int hd = c->head_dim, per = c->n_heads / c->n_kv_heads;
    size_t hh = (size_t)hd * hd;
    double *W = work, *Lw = W + hh, *T = Lw + hh, *M = T + hh, *ev = M + hh;
    const double *A = L->wo_gram + (size_t)g * hh;
    const double *src = per == 1 ? L->c + (size_t)g * hh : L->gv + (size_t)g * hh;
    for (size_t e = 0; e < hh; e++) W[e] = src[e] / (double)c->n_tokens;
    if (a3_chol_damped(Lw, W, hd) < 0) return -1;
    /* M = Lw^T A Lw */
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hd, hd, hd, 1.0, Lw, hd, A, hd, 0.0, T, hd);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hd, hd, hd, 1.0, T, hd, Lw, hd, 0.0, M, hd);
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', hd, M, hd, ev) != 0) return -1;
    double *sv = L->ov_sv + (size_t)g * hd;
    for (int j = 0; j < hd; j++) sv[j] = sqrt(fmax(0.0, ev[hd - 1 - j])); /* ascending -> descending */
    return 0;
}

static int mlp_curve(a3_cache *c, int layer)
{
    a3_cache_layer *L = &c->layers[layer];
    int ff = c->d_ff;
    double *score = calloc((size_t)ff, sizeof *score);
    if (!score) return -1;
    for (int n = 0; n < ff; n++) score[n] = L->down_norm[n] * L->d[n] / (double)c->n_tokens;
    int rc = a3_order_desc(score, ff, L->mlp_order, L->mlp_score);
    free(score);
    if (rc) return -1;
    L->mlp_loss[ff] = 0;
    for (int w = ff - 1; w >= 0; w--) L->mlp_loss[w] = L->mlp_loss[w + 1] + L->mlp_score[w];
    return 0;
}

int a3_calib_weight_stats(a3_cache *c, int layer, const float *o_proj, const float *down_proj, a3_err *err)
{
    a3_cache_layer *L = &c->layers[layer];
    int hd = c->head_dim, per = c->n_heads / c->n_kv_heads, ff = c->d_ff;
    double *buf = a3_malloc_array((size_t)256 * per * hd, sizeof(double));
    if (!buf) return a3_err_set(err, A3_ENOMEM, "calibration: layer %d: out of memory", layer);
    for (int g = 0; g < c->n_kv_heads; g++) wo_gram(c, o_proj, g, L->wo_gram + (size_t)g * hd * hd, buf);
    free(buf);
    memset(L->down_norm, 0, (size_t)ff * sizeof *L->down_norm);
    for (int e = 0; e < c->d; e++)
        for (int n = 0; n < ff; n++) {
            double w = down_proj[(size_t)e * ff + n];
            L->down_norm[n] += w * w;
        }
    return A3_OK;
}

int a3_calib_curves_from_stats(a3_cache *c, int layer, a3_err *err)
{
    int hd = c->head_dim;
    if (hd > 1024 || c->n_tokens <= 0)
        return a3_err_set(err, A3_EINVAL, "calibration: layer %d: head dim %d or token count unsupported", layer, hd);
    double *work = a3_malloc_array(5 * (size_t)hd * hd + hd, sizeof(double));
    if (!work) return a3_err_set(err, A3_ENOMEM, "calibration: layer %d: out of memory for curves", layer);
    int rc = 0;
    for (int g = 0; rc == 0 && g < c->n_kv_heads; g++) rc = qk_group(c, layer, g, work);
    for (int g = 0; rc == 0 && g < c->n_kv_heads; g++) rc = ov_group(c, layer, g, work);
    if (rc == 0) rc = mlp_curve(c, layer);
    free(work);
    if (rc) return a3_err_set(err, A3_EFORMAT, "calibration: layer %d: loss curves failed (statistics not positive definite or out of memory)", layer);
    return A3_OK;
}

int a3_calib_curves(a3_cache *c, int layer, const float *o_proj, const float *down_proj, a3_err *err)
{
    int rc = a3_calib_weight_stats(c, layer, o_proj, down_proj, err);
    return rc ? rc : a3_calib_curves_from_stats(c, layer, err);
}
