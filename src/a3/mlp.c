/* mlp: CUR over intermediate neurons (A3-METHOD section 5).
 *   a3           the cache's order: D_n ||W_down[n,:]||^2
 *   weight-norm  ||W_gate[:,n]|| ||W_up[:,n]|| ||W_down[n,:]||, no activations
 *   a3-refit     a3's choice, then W_down refit by least squares with Ru
 *                (Ru[S,S] undamped when Ru is positive definite, else
 *                damped exactly as the refit curve in include/a3/pred.h) */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "a3/linalg.h"
#include "a3/reduce.h"

static int refit_solve(double *A, double *B, int width, int d, double scale, int layer, float *new_down,
                       a3_err *err);

static int cmp_int(const void *a, const void *b) { return *(const int32_t *)a - *(const int32_t *)b; }

static double row_norm(const float *r, int n)
{
    double s = 0;
    for (int e = 0; e < n; e++) s += (double)r[e] * r[e];
    return sqrt(s);
}

static int weight_norm_order(const a3_layer_f32 *w, int32_t *order)
{
    double *s = malloc((size_t)w->d_ff * sizeof *s), *dn = calloc((size_t)w->d_ff, sizeof *dn);
    if (!s || !dn) {
        free(s), free(dn);
        return -1;
    }
    for (int e = 0; e < w->d; e++)
        for (int n = 0; n < w->d_ff; n++) dn[n] += (double)w->wd[(size_t)e * w->d_ff + n] * w->wd[(size_t)e * w->d_ff + n];
    for (int n = 0; n < w->d_ff; n++)
        s[n] = row_norm(w->wg + (size_t)n * w->d, w->d) * row_norm(w->wu + (size_t)n * w->d, w->d) * sqrt(dn[n]);
    int rc = a3_order_desc(s, w->d_ff, order, NULL);
    free(s), free(dn);
    return rc;
}

int a3_mlp_order(const a3_cache *c, int layer, a3_mlp_method m, const a3_layer_f32 *w, int32_t *order, a3_err *err)
{
    if (m != A3_MLP_METHOD_WEIGHT_NORM) {
        memcpy(order, c->layers[layer].mlp_order, (size_t)c->d_ff * sizeof *order);
        return A3_OK;
    }
    return weight_norm_order(w, order) ? a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", layer) : A3_OK;
}

int a3_mlp_select(const a3_cache *c, int layer, int width, a3_mlp_method m, const a3_layer_f32 *w, int32_t *keep,
                  a3_err *err)
{
    if (width < 0 || width > c->d_ff)
        return a3_err_set(err, A3_EINVAL, "layer %d: mlp width %d not in [0, %d]", layer, width, c->d_ff);
    int32_t *order = malloc((size_t)c->d_ff * sizeof *order);
    if (!order) return a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", layer);
    int rc = a3_mlp_order(c, layer, m, w, order, err);
    if (!rc) memcpy(keep, order, (size_t)width * sizeof *keep);
    free(order);
    if (!rc) qsort(keep, (size_t)width, sizeof *keep, cmp_int);
    return rc;
}

double a3_mlp_refit_damping(const double *Ru, int ff)
{
    double mean = 0;
    for (int n = 0; n < ff; n++) mean += Ru[(size_t)n * ff + n] / ff;
    return mean > 0 ? mean : 1;
}

int a3_mlp_refit(const a3_cache *c, int layer, const int32_t *keep, int width, const a3_layer_f32 *w, float *new_down,
                 a3_err *err)
{
    const double *Ru = c->layers[layer].ru;
    int ff = c->d_ff, d = w->d;
    if (!Ru) return a3_err_set(err, A3_EINVAL, "layer %d: mlp refit needs a cache calibrated with --mlp-full", layer);
    if (width == 0) return A3_OK;
    /* Solve Ru[S,S] X = Ru[S,:] W_down (width, d); W_down[n][e] = down[e][n]. */
    double *A = malloc((size_t)width * width * 8), *B = calloc((size_t)width * d, 8);
    if (!A || !B) {
        free(A), free(B);
        return a3_err_set(err, A3_ENOMEM, "layer %d: out of memory for the MLP refit", layer);
    }
    for (int i = 0; i < width; i++)
        for (int j = 0; j < width; j++) A[(size_t)i * width + j] = Ru[(size_t)keep[i] * ff + keep[j]];
    /* B = Ru[S,:] W_down^T as dgemm over blocks: EB rows of W_down (each
     * contiguous over the ff neurons) widened to float64 at a time, and SB
     * gathered rows of Ru; a plain loop here walked W_down with a stride of
     * ff floats (minutes per layer at LLaMA-1B widths). */
    enum { SB = 64, EB = 256 };
    int eb = d < EB ? d : EB, sb = width < SB ? width : SB;
    double *Wb = malloc((size_t)eb * ff * 8), *Rb = malloc((size_t)sb * ff * 8);
    if (!Wb || !Rb) {
        free(A), free(B), free(Wb), free(Rb);
        return a3_err_set(err, A3_ENOMEM, "layer %d: out of memory for the MLP refit", layer);
    }
    for (int e0 = 0; e0 < d; e0 += eb) {
        int ne = d - e0 < eb ? d - e0 : eb;
        for (size_t i = 0; i < (size_t)ne * ff; i++) Wb[i] = w->wd[(size_t)e0 * ff + i];
        for (int i0 = 0; i0 < width; i0 += sb) {
            int ni = width - i0 < sb ? width - i0 : sb;
            for (int i = 0; i < ni; i++) memcpy(Rb + (size_t)i * ff, Ru + (size_t)keep[i0 + i] * ff, (size_t)ff * 8);
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ni, ne, ff, 1.0, Rb, ff, Wb, ff, 0.0,
                        B + (size_t)i0 * d + e0, d);
        }
    }
    free(Wb), free(Rb);
    return refit_solve(A, B, width, d, a3_mlp_refit_damping(Ru, ff), layer, new_down, err);
}

/* Solve A X = B (A: width x width Gram matrix of the kept neurons, B:
 * width x d), write X^T into new_down (d, width); frees A and B.
 * Undamped first: exact whenever A is positive definite. If it is not,
 * damp by eps * scale (mean diagonal of the WHOLE layer's Gram matrix),
 * eps = 1e-10, 1e-8, ...: the same rule as the refit curve
 * (src/calib/pred.c), so the curve predicts this solve. */
static int refit_solve(double *A, double *B, int width, int d, double scale, int layer, float *new_down, a3_err *err)
{
    int info = a3_solve_spd_damped(A, B, width, d, scale);
    for (int e = 0; info == 0 && e < d; e++)
        for (int i = 0; i < width; i++) new_down[(size_t)e * width + i] = (float)B[(size_t)i * d + e];
    free(A), free(B);
    if (info < 0) return a3_err_set(err, A3_ENOMEM, "layer %d: out of memory for the MLP refit", layer);
    if (info) return a3_err_set(err, A3_EFORMAT, "layer %d: MLP refit: the kept neurons' Gram matrix is not positive definite", layer);
    return A3_OK;
}

int a3_mlp_refit_stats(const double *G, const double *UY, int ff, int d, const int32_t *keep, int width, int layer,
                       float *new_down, a3_err *err)
{
    if (width == 0) return A3_OK;
    double *A = malloc((size_t)width * width * 8), *B = malloc((size_t)width * d * 8);
    if (!A || !B) {
        free(A), free(B);
        return a3_err_set(err, A3_ENOMEM, "layer %d: out of memory for the MLP refit", layer);
    }
    for (int i = 0; i < width; i++) {
        for (int j = 0; j < width; j++) A[(size_t)i * width + j] = G[(size_t)keep[i] * ff + keep[j]];
        memcpy(B + (size_t)i * d, UY + (size_t)keep[i] * d, (size_t)d * sizeof *B);
    }
    return refit_solve(A, B, width, d, a3_mlp_refit_damping(G, ff), layer, new_down, err);
}
