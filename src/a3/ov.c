/* ov: per-group value/output reduction (A3-METHOD section 4).
 *
 * With weighting W (hd x hd) = Lc Lc^T and Wo_cat = [Wo_i ...] (hd x g d),
 * Wo_i[a][e] = o_proj[e][i*hd + a]: thin SVD Lc^T Wo_cat = U S V^T, then
 *   v rows (r, d) = S_r U_r^T Lc^-1 V_g      (V_g: the group's v_proj rows)
 *   o cols of head j (d, r) = V_r^T restricted to head j.
 * Weightings: a3 = C_i (MHA) or Gv (GQA, as in the paper); a3-csum = sum of
 * the group's C_i; svd = V_g V_g^T (no activations: plain SVD of W_v W_o). */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "a3/linalg.h"
#include "a3/reduce.h"

void a3_ov_weighting(const a3_cache *c, int layer, int g, a3_ov_method m, const a3_layer_f32 *w, double *W)
{
    int hd = c->head_dim, per = c->n_heads / c->n_kv_heads;
    size_t hh = (size_t)hd * hd;
    const a3_cache_layer *L = &c->layers[layer];
    memset(W, 0, hh * sizeof *W);
    if (m == A3_OV_METHOD_SVD) {
        for (int a = 0; a < hd; a++)
            for (int b = 0; b < hd; b++) {
                double s = 0;
                const float *ra = w->wv + ((size_t)g * hd + a) * w->d, *rb = w->wv + ((size_t)g * hd + b) * w->d;
                for (int e = 0; e < w->d; e++) s += (double)ra[e] * rb[e];
                W[a * hd + b] = s;
            }
        return;
    }
    if (m == A3_OV_METHOD_A3 && per > 1) {
        for (size_t e = 0; e < hh; e++) W[e] = L->gv[(size_t)g * hh + e] / (double)c->n_tokens;
        return;
    }
    for (int i = g * per; i < (g + 1) * per; i++)
        for (size_t e = 0; e < hh; e++) W[e] += L->c[(size_t)i * hh + e] / (double)c->n_tokens;
}

typedef struct {
    double *W, *Lc, *M, *U, *S, *ev, *VT, *Y, *T;
} ov_work;

static void work_free(ov_work *k)
{
    free(k->W), free(k->Lc), free(k->M), free(k->U), free(k->S), free(k->ev), free(k->VT), free(k->Y), free(k->T);
}

static int work_alloc(ov_work *k, int hd, int per, int d)
{
    size_t hh = (size_t)hd * hd, hw = (size_t)hd * per * d, hy = (size_t)hd * (d + 1);
    memset(k, 0, sizeof *k);
    k->W = malloc(hh * 8), k->Lc = malloc(hh * 8), k->U = malloc(hh * 8), k->S = malloc((size_t)hd * 8);
    k->ev = malloc((size_t)hd * 8), k->M = malloc(hw * 8), k->VT = malloc(hw * 8);
    k->Y = malloc(hy * 8), k->T = malloc(hy * 8);
    return k->W && k->Lc && k->U && k->S && k->ev && k->M && k->VT && k->Y && k->T ? 0 : -1;
}

/* Thin SVD of the wide M (hd x cols), keeping the first r right singular
 * vectors, through the hd x hd Gram matrix: M M^T = U S^2 U^T (dsyevd),
 * V_r^T = S_r^-1 U_r^T M. This is what the method doc means by solving on
 * d_h x d_h matrices: dgesdd would first LQ-factor the wide M with
 * LAPACK's unblocked (BLAS-2, one core) code, 10-15x slower here (see
 * docs/PERFORMANCE.md). The Gram matrix squares the condition number, which
 * only affects directions with sigma below ~1e-8 sigma_1: they carry no
 * loss, and their V rows are set to zero (K is scratch, hd x hd). */
static int svd_via_gram(int hd, int cols, int r, const double *M, double *K, double *U, double *S, double *ev,
                        double *VT)
{
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, hd, cols, 1.0, M, cols, 0.0, K, hd);
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', hd, K, hd, ev) != 0) return -1;
    for (int t = 0; t < hd; t++) { /* ascending -> descending */
        S[t] = sqrt(fmax(0.0, ev[hd - 1 - t]));
        for (int a = 0; a < hd; a++) U[a * hd + t] = K[a * hd + hd - 1 - t];
    }
    if (r == 0) return 0;
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, cols, hd, 1.0, U, hd, M, cols, 0.0, VT, cols);
    for (int t = 0; t < r; t++) {
        double inv = S[t] > 1e-8 * S[0] ? 1.0 / S[t] : 0.0;
        for (size_t e = 0; e < (size_t)cols; e++) VT[(size_t)t * cols + e] *= inv;
    }
    return 0;
}

/* M = Lc^T Wo_cat (hd, per*d). */
static void whiten_wo(const a3_layer_f32 *w, int g, const double *Lc, double *M)
{
    int hd = w->head_dim, per = w->n_heads / w->n_kv_heads, d = w->d, cols = per * d;
    double *Wo = M; /* build Wo_cat in place, then multiply by Lc^T (lower) */
    for (int a = 0; a < hd; a++)
        for (int j = 0; j < per; j++)
            for (int e = 0; e < d; e++)
                Wo[(size_t)a * cols + j * d + e] = w->wo[(size_t)e * w->n_heads * hd + (size_t)(g * per + j) * hd + a];
    /* Lc^T is upper triangular: M = Lc^T Wo, computed in place by dtrmm. */
    cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, hd, cols, 1.0, Lc, hd, M, cols);
}

/* M = Lc^-1 [Cyz_1 Wo_1 ... Cyz_g Wo_g] (hd, per*d): the cross-covariance
 * form of the whitened target (sequential solver; docs/SEQUENTIAL.md). */
static void cross_wo(const a3_layer_f32 *w, int g, const double *Lc, const double *Cyz, const double *Cyd, double *M,
                     double *tmp)
{
    int hd = w->head_dim, per = w->n_heads / w->n_kv_heads, d = w->d, cols = per * d;
    for (int a = 0; a < hd; a++)
        for (int j = 0; j < per; j++)
            for (int e = 0; e < d; e++)
                tmp[(size_t)a * cols + j * d + e] = w->wo[(size_t)e * w->n_heads * hd + (size_t)(g * per + j) * hd + a];
    for (int j = 0; j < per; j++)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hd, d, hd, 1.0, Cyz + (size_t)j * hd * hd, hd,
                    tmp + (size_t)j * d, cols, 0.0, M + (size_t)j * d, cols);
    if (Cyd) /* + E[y_j^T t_j] of an extra target t_j (hd x d per head) */
        for (int a = 0; a < hd; a++)
            for (int j = 0; j < per; j++)
                for (int e = 0; e < d; e++) M[(size_t)a * cols + j * d + e] += Cyd[((size_t)j * hd + a) * d + e];
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, hd, cols, 1.0, Lc, hd, M, cols);
}

/* The solve for weighting k->W (already filled); Cyz NULL: one-shot. */
static int ov_solve_work(int g, int r, const double *Cyz, const double *Cyd, const a3_layer_f32 *w, ov_work *k, float *new_v,
                         float *new_bv, float *new_o, double *loss, double *damp, double *T)
{
    int hd = w->head_dim, per = w->n_heads / w->n_kv_heads, d = w->d, cols = per * d;
    if ((*damp = a3_chol_damped(k->Lc, k->W, hd)) < 0) return -1;
    if (Cyz) cross_wo(w, g, k->Lc, Cyz, Cyd, k->M, k->VT);
    else whiten_wo(w, g, k->Lc, k->M);
    if (svd_via_gram(hd, cols, r, k->M, k->W, k->U, k->S, k->ev, k->VT)) return -1;
    *loss = 0;
    for (int j = r; j < hd; j++) *loss += k->S[j] * k->S[j];
    /* Y = Lc^-1 [V_g | b_g] (hd, d + 1) */
    int yc = d + 1;
    for (int a = 0; a < hd; a++) {
        for (int e = 0; e < d; e++) k->Y[(size_t)a * yc + e] = w->wv[((size_t)g * hd + a) * d + e];
        k->Y[(size_t)a * yc + d] = w->bv ? w->bv[g * hd + a] : 0;
    }
    cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, hd, yc, 1.0, k->Lc, hd, k->Y, yc);
    /* new rows (r, d + 1) = S_r U_r^T Y */
    if (r > 0) cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, yc, hd, 1.0, k->U, hd, k->Y, yc, 0.0, k->T, yc);
    for (int t = 0; t < r; t++) {
        for (int e = 0; e < d; e++) new_v[(size_t)t * d + e] = (float)(k->S[t] * k->T[(size_t)t * yc + e]);
        if (new_bv) new_bv[t] = (float)(k->S[t] * k->T[(size_t)t * yc + d]);
    }
    for (int j = 0; j < per; j++)
        for (int e = 0; e < d; e++)
            for (int t = 0; t < r; t++)
                new_o[((size_t)j * d + e) * r + t] = (float)k->VT[(size_t)t * cols + j * d + e];
    if (T && r > 0) { /* the v rows are T^T [V_g | b_g] with T = Lc^-T U_r S_r (hd, r) */
        for (int a = 0; a < hd; a++)
            for (int t = 0; t < r; t++) T[(size_t)a * r + t] = k->U[(size_t)a * hd + t] * k->S[t];
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, hd, r, 1.0, k->Lc, hd, T, r);
    }
    return 0;
}

int a3_ov_solve(const a3_cache *c, int layer, int g, int rank, a3_ov_method m, const a3_layer_f32 *w, float *new_v,
                float *new_bv, float *new_o, double *loss, double *damping, a3_err *err)
{
    int hd = c->head_dim;
    if (rank < 0 || rank > hd)
        return a3_err_set(err, A3_EINVAL, "layer %d: ov[%d]: rank %d not in [0, %d]", layer, g, rank, hd);
    ov_work k;
    int rc = work_alloc(&k, hd, c->n_heads / c->n_kv_heads, w->d);
    if (rc == 0) {
        a3_ov_weighting(c, layer, g, m, w, k.W);
        rc = ov_solve_work(g, rank, NULL, NULL, w, &k, new_v, new_bv, new_o, loss, damping, NULL);
    }
    work_free(&k);
    if (rc) return a3_err_set(err, A3_EFORMAT, "layer %d: ov[%d]: solve failed (statistics not positive definite even with damping, or out of memory)", layer, g);
    return A3_OK;
}

int a3_ov_solve_stats(const double *Cyy, const double *Cyz, int layer, int g, int rank, const a3_layer_f32 *w,
                      float *new_v, float *new_bv, float *new_o, double *loss, double *damping, a3_err *err)
{
    return a3_ov_solve_stats_t(Cyy, Cyz, NULL, layer, g, rank, w, new_v, new_bv, new_o, loss, damping, NULL, err);
}

int a3_ov_solve_stats_t(const double *Cyy, const double *Cyz, const double *Cyd, int layer, int g, int rank,
                        const a3_layer_f32 *w, float *new_v, float *new_bv, float *new_o, double *loss,
                        double *damping, double *T, a3_err *err)
{
    int hd = w->head_dim;
    if (Cyd && !Cyz) /* the extra target only enters the cross-covariance form */
        return a3_err_set(err, A3_EINVAL, "layer %d: ov[%d]: an extra OV target needs Cyz", layer, g);
    if (rank < 0 || rank > hd)
        return a3_err_set(err, A3_EINVAL, "layer %d: ov[%d]: rank %d not in [0, %d]", layer, g, rank, hd);
    ov_work k;
    int rc = work_alloc(&k, hd, w->n_heads / w->n_kv_heads, w->d);
    if (rc == 0) {
        memcpy(k.W, Cyy, (size_t)hd * hd * sizeof *k.W);
        rc = ov_solve_work(g, rank, Cyz, Cyd, w, &k, new_v, new_bv, new_o, loss, damping, T);
    }
    work_free(&k);
    if (rc) return a3_err_set(err, A3_EFORMAT, "layer %d: ov[%d]: solve failed (statistics not positive definite even with damping, or out of memory)", layer, g);
    return A3_OK;
}
