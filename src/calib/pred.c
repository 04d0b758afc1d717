/* pred: the exact loss curve of every method (definitions and costs in
 * include/a3/pred.h), from the cache's statistics and the model's weights,
 * one layer at a time. */
#include "a3/pred.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "a3/blas.h"
#include "a3/linalg.h"
#include "a3/reduce.h"
#include "pred_internal.h"

static size_t qk_len(const a3_pred *p) { return (size_t)p->n_layers * p->n_kv_heads * (p->head_dim / 2 + 1); }
static size_t ov_len(const a3_pred *p) { return (size_t)p->n_layers * p->n_kv_heads * (p->head_dim + 1); }
static size_t mlp_len(const a3_pred *p) { return (size_t)p->n_layers * (p->d_ff + 1); }

void a3_pred_free(a3_pred *p)
{
    if (!p) return;
    for (int m = 0; m < A3_QK_METHOD_COUNT; m++) free(p->qk[m]);
    for (int m = 0; m < A3_OV_METHOD_COUNT; m++) free(p->ov[m]);
    for (int m = 0; m < A3_MLP_METHOD_COUNT; m++) free(p->mlp[m]);
    free(p->probe_rel);
    free(p->probe_dnll);
    free(p);
}

int a3_pred_new(const a3_cache *c, a3_pred **out, a3_err *err)
{
    a3_pred *p = calloc(1, sizeof *p);
    *out = NULL;
    if (!p) return a3_err_set(err, A3_ENOMEM, "prediction: out of memory");
    p->n_layers = c->n_layers, p->n_kv_heads = c->n_kv_heads, p->head_dim = c->head_dim, p->d_ff = c->d_ff;
    /* from the header, not from ru: a lazily opened cache (a3_cache_open)
     * has Ru on disk but not yet in memory */
    p->mlp_exact = c->mlp_full != 0;
    a3_plan_cache_fingerprint(c, p->cache_fingerprint);
    int ok = 1;
    for (int m = 0; m < A3_QK_METHOD_COUNT; m++) ok &= (p->qk[m] = calloc(qk_len(p), sizeof(double))) != NULL;
    for (int m = 0; m < A3_OV_METHOD_COUNT; m++) ok &= (p->ov[m] = calloc(ov_len(p), sizeof(double))) != NULL;
    for (int m = 0; m < A3_MLP_METHOD_COUNT; m++)
        if (m != A3_MLP_METHOD_A3_REFIT || p->mlp_exact) ok &= (p->mlp[m] = calloc(mlp_len(p), sizeof(double))) != NULL;
    size_t np = (size_t)p->n_layers * A3_COMP_COUNT * A3_PROBE_LEVELS;
    ok &= (p->probe_rel = calloc(np, sizeof(double))) != NULL;
    ok &= (p->probe_dnll = calloc(np, sizeof(double))) != NULL;
    p->probe_target = 0.3;
    if (!ok) {
        a3_pred_free(p);
        return a3_err_set(err, A3_ENOMEM, "prediction: out of memory for the curves");
    }
    *out = p;
    return A3_OK;
}

double a3_pred_loss(const a3_pred *p, a3_comp k, int m, int l, int g, int width)
{
    size_t hd = (size_t)p->head_dim, row = (size_t)l * p->n_kv_heads + (size_t)g;
    if (k == A3_COMP_QK) return p->qk[m][row * (hd / 2 + 1) + (size_t)width / 2];
    if (k == A3_COMP_OV) return p->ov[m][row * (hd + 1) + (size_t)width];
    return p->mlp[m] ? p->mlp[m][(size_t)l * (p->d_ff + 1) + (size_t)width] : NAN;
}

int a3_pred_has_probe(const a3_pred *p) { return p && p->layers_done == p->n_layers; }

/* The probe points of (l, k) sorted by rel, dnll clamped non-negative and
 * non-decreasing; returns their count (points with rel 0 are dropped). */
static int probe_points(const a3_pred *p, int l, a3_comp k, double *r, double *d)
{
    size_t i0 = ((size_t)l * A3_COMP_COUNT + (size_t)k) * A3_PROBE_LEVELS;
    int n = 0;
    for (int i = 0; i < A3_PROBE_LEVELS; i++)
        if (p->probe_rel[i0 + i] > 0) r[n] = p->probe_rel[i0 + i], d[n++] = p->probe_dnll[i0 + i];
    for (int i = 1; i < n; i++) /* insertion sort, n is tiny */
        for (int j = i; j > 0 && r[j] < r[j - 1]; j--) {
            double t = r[j];
            r[j] = r[j - 1], r[j - 1] = t, t = d[j], d[j] = d[j - 1], d[j - 1] = t;
        }
    for (int i = 0; i < n; i++) d[i] = fmax(d[i], i ? d[i - 1] : 0.0);
    return n;
}

double a3_pred_nll_single(const a3_pred *p, int l, a3_comp k, double rel)
{
    double r[A3_PROBE_LEVELS], d[A3_PROBE_LEVELS], r0 = 0, d0 = 0;
    int n = probe_points(p, l, k, r, d);
    if (n == 0 || rel <= 0) return 0;
    for (int i = 0; i < n; i++) {
        if (rel <= r[i]) return d0 + (d[i] - d0) * (rel - r0) / (r[i] - r0);
        r0 = r[i], d0 = d[i];
    }
    /* Past the last point (the component removed, rel 1): a cut whose kept
     * part cancels the dropped one has rel > 1 (QK with RoPE: the score
     * error of dropping some pairs can exceed all the scores' energy), but
     * it is not predicted to cost more than removing the component.
     * Extrapolating the last slope instead over-predicted stories260K's
     * uniform 30-40% plans 3.3-3.5x on DEV (rel up to 6.5). */
    return d0;
}

double a3_pred_kappa(const a3_pred *p)
{
    double den = p->joint_root * p->joint_root - p->joint_sum;
    if (!p->joint_known || !(den > 0)) return 0;
    return fmin(fmax((p->joint_dnll - p->joint_sum) / den, 0.0), 1.0);
}

double a3_pred_nll_total(const a3_pred *p, double S, double R)
{
    double k = a3_pred_kappa(p);
    return (1 - k) * S + k * R * R;
}

double a3_pred_scale(const a3_pred *p, int l, a3_comp k)
{
    double r[A3_PROBE_LEVELS], d[A3_PROBE_LEVELS], s = 0;
    int n = probe_points(p, l, k, r, d);
    for (int i = 0; i < n; i++) s = fmax(s, d[i] / r[i]);
    return s;
}

/* ---- QK ---------------------------------------------------------------- */

/* loss[k] for k kept pairs of `order` (Gq, Gk mean per token). */
static void qk_curve(const double *gq, const double *gk, int hd, const int32_t *order, double *loss)
{
    a3_qk_drop_loss(gq, gk, hd, order, 1.0, loss);
}

static int qk_layer(const a3_cache *c, int l, const a3_layer_f32 *w, a3_pred *p, double *gq, double *gk, a3_err *err)
{
    int hd = c->head_dim, half = hd / 2, per = c->n_heads / c->n_kv_heads;
    size_t hh = (size_t)hd * hd;
    double N = (double)c->n_tokens;
    int32_t order[512];
    for (int g = 0; g < c->n_kv_heads; g++) {
        memset(gq, 0, hh * sizeof *gq);
        for (int i = g * per; i < (g + 1) * per; i++)
            for (size_t e = 0; e < hh; e++) gq[e] += c->layers[l].gq[(size_t)i * hh + e] / N;
        for (size_t e = 0; e < hh; e++) gk[e] = c->layers[l].gk[(size_t)g * hh + e] / N;
        for (int m = 0; m < A3_QK_METHOD_COUNT; m++) {
            int rc = a3_qk_order(c, l, g, (a3_qk_method)m, w, order, err);
            if (rc) return rc;
            qk_curve(gq, gk, hd, order, p->qk[m] + ((size_t)l * c->n_kv_heads + g) * (half + 1));
        }
    }
    return A3_OK;
}

/* ---- OV ---------------------------------------------------------------- */

typedef struct {
    double *W, *Lw, *A, *K, *U, *ev, *T, *G, *M, *Wo, *Ci, *Z;
} ov_ws;

static void ov_ws_free(ov_ws *s)
{
    free(s->W), free(s->Lw), free(s->A), free(s->K), free(s->U), free(s->ev), free(s->T), free(s->G), free(s->M);
    free(s->Wo), free(s->Ci), free(s->Z);
}

static int ov_ws_alloc(ov_ws *s, int hd, int nh)
{
    size_t hh = (size_t)hd * hd;
    memset(s, 0, sizeof *s);
    s->W = malloc(hh * 8), s->Lw = malloc(hh * 8), s->A = malloc(hh * 8), s->K = malloc(hh * 8);
    s->U = malloc(hh * 8), s->ev = malloc((size_t)hd * 8), s->T = malloc(hh * 8), s->G = malloc(hh * 8);
    s->M = malloc(hh * 8), s->Wo = malloc((size_t)nh * hh * 8), s->Ci = malloc(hh * 8), s->Z = malloc(hh * 8);
    return s->W && s->Lw && s->A && s->K && s->U && s->ev && s->T && s->G && s->M && s->Wo && s->Ci && s->Z ? 0 : -1;
}

/* X (hd x hd) = U^T (Lw^T Y Lw) U, or U^T (Lw^-1 Y Lw^-T) U when inv; Y
 * symmetric. T and Z are scratch. */
static void sandwich(int hd, const double *Lw, const double *U, const double *Y, int inv, double *T, double *Z,
                     double *X)
{
    memcpy(T, Y, (size_t)hd * hd * 8);
    if (inv) {
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, hd, hd, 1.0, Lw, hd, T, hd);
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, hd, hd, 1.0, Lw, hd, T, hd);
    } else {
        cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, hd, hd, 1.0, Lw, hd, T, hd);
        cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, hd, hd, 1.0, Lw, hd, T, hd);
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hd, hd, hd, 1.0, T, hd, U, hd, 0.0, Z, hd);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hd, hd, hd, 1.0, U, hd, Z, hd, 0.0, X, hd);
}

/* loss[r] += sum_{j,k >= r} G[j,k] M[j,k], r = 0..hd. */
static void add_tail(int hd, const double *G, const double *M, double *loss)
{
    double acc = 0;
    for (int r = hd - 1; r >= 0; r--) {
        acc += G[r * hd + r] * M[r * hd + r];
        for (int k = r + 1; k < hd; k++) acc += 2 * G[r * hd + k] * M[r * hd + k];
        loss[r] += acc;
    }
}

/* The method's whitening Lw and basis U (descending) of group g, from the
 * per-head W_o Grams in s->Wo. */
static int ov_basis(const a3_cache *c, int l, int g, const a3_layer_f32 *w, a3_ov_method m, ov_ws *s)
{
    int hd = c->head_dim, per = c->n_heads / c->n_kv_heads;
    size_t hh = (size_t)hd * hd;
    a3_ov_weighting(c, l, g, m, w, s->W);
    if (a3_chol_damped(s->Lw, s->W, hd) < 0) return -1;
    /* A = sum_i Wo_i Wo_i^T; K = Lw^T A Lw = U S^2 U^T (descending) */
    memset(s->A, 0, hh * 8);
    for (int i = 0; i < per; i++)
        for (size_t e = 0; e < hh; e++) s->A[e] += s->Wo[(size_t)(g * per + i) * hh + e];
    memcpy(s->K, s->A, hh * 8);
    cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, hd, hd, 1.0, s->Lw, hd, s->K, hd);
    cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasNoTrans, CblasNonUnit, hd, hd, 1.0, s->Lw, hd, s->K, hd);
    for (int a = 0; a < hd; a++)
        for (int b = 0; b < a; b++) s->K[a * hd + b] = s->K[b * hd + a] = 0.5 * (s->K[a * hd + b] + s->K[b * hd + a]);
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', hd, s->K, hd, s->ev) != 0) return -1;
    for (int t = 0; t < hd; t++)
        for (int a = 0; a < hd; a++) s->U[a * hd + t] = s->K[a * hd + hd - 1 - t];
    return 0;
}

static int ov_group(const a3_cache *c, int l, int g, const a3_layer_f32 *w, a3_ov_method m, ov_ws *s, double *loss)
{
    int hd = c->head_dim, per = c->n_heads / c->n_kv_heads;
    size_t hh = (size_t)hd * hd;
    if (ov_basis(c, l, g, w, m, s)) return -1;
    memset(loss, 0, (size_t)(hd + 1) * 8);
    for (int i = g * per; i < (g + 1) * per; i++) {
        for (size_t e = 0; e < hh; e++) s->Ci[e] = c->layers[l].c[(size_t)i * hh + e] / (double)c->n_tokens;
        sandwich(hd, s->Lw, s->U, s->Ci, 1, s->T, s->Z, s->G);
        sandwich(hd, s->Lw, s->U, s->Wo + (size_t)i * hh, 0, s->T, s->Z, s->M);
        add_tail(hd, s->G, s->M, loss);
    }
    for (int r = 0; r <= hd; r++) loss[r] = fmax(loss[r], 0.0); /* round-off below 0 */
    return 0;
}

/* Wo_i Wo_i^T per query head, from o_proj (d, nh*hd): O(nh hd^2 d). */
static void wo_grams(const a3_layer_f32 *w, double *out)
{
    int hd = w->head_dim, nh = w->n_heads;
    size_t hh = (size_t)hd * hd;
    for (int i = 0; i < nh; i++) {
        double *dst = out + (size_t)i * hh;
        memset(dst, 0, hh * 8);
        for (int e = 0; e < w->d; e++) {
            const float *row = w->wo + (size_t)e * nh * hd + (size_t)i * hd;
            for (int a = 0; a < hd; a++)
                for (int b = a; b < hd; b++) dst[a * hd + b] += (double)row[a] * row[b];
        }
        for (int a = 0; a < hd; a++)
            for (int b = 0; b < a; b++) dst[a * hd + b] = dst[b * hd + a];
    }
}

int pred_ov_projector(const a3_cache *c, int l, int g, const a3_layer_f32 *w, int r, double *P)
{
    int hd = c->head_dim;
    size_t hh = (size_t)hd * hd;
    ov_ws s;
    int rc = ov_ws_alloc(&s, hd, c->n_heads) ? -1 : 0;
    if (!rc) {
        wo_grams(w, s.Wo);
        rc = ov_basis(c, l, g, w, A3_OV_METHOD_A3, &s);
    }
    if (!rc) { /* P = Lw^-T U_r U_r^T Lw^T */
        memset(s.T, 0, hh * 8);
        for (int a = 0; a < hd; a++)
            for (int b = 0; b < hd; b++) {
                double v = 0;
                for (int t = 0; t < r; t++) v += s.U[a * hd + t] * s.U[b * hd + t];
                s.T[a * hd + b] = v;
            }
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, hd, hd, 1.0, s.Lw, hd, s.T, hd);
        cblas_dtrmm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, hd, hd, 1.0, s.Lw, hd, s.T, hd);
        memcpy(P, s.T, hh * 8);
    }
    ov_ws_free(&s);
    return rc;
}

static int ov_layer(const a3_cache *c, int l, const a3_layer_f32 *w, a3_pred *p, a3_err *err)
{
    int hd = c->head_dim, nh = c->n_heads;
    ov_ws s;
    if (ov_ws_alloc(&s, hd, nh)) {
        ov_ws_free(&s);
        return a3_err_set(err, A3_ENOMEM, "prediction: layer %d: out of memory", l);
    }
    wo_grams(w, s.Wo);
    int rc = 0;
    for (int m = 0; rc == 0 && m < A3_OV_METHOD_COUNT; m++)
        for (int g = 0; rc == 0 && g < c->n_kv_heads; g++)
            rc = ov_group(c, l, g, w, (a3_ov_method)m, &s, p->ov[m] + ((size_t)l * c->n_kv_heads + g) * (hd + 1));
    ov_ws_free(&s);
    if (rc) return a3_err_set(err, A3_EFORMAT, "prediction: layer %d: OV curve failed (statistics not positive definite even with damping)", l);
    return A3_OK;
}

/* ---- MLP --------------------------------------------------------------- */

/* Diagonal estimate along order: loss[w] = sum_{i >= w} D_n |Wd_n|^2 / N. */
static void mlp_estimate(const a3_cache *c, int l, const int32_t *order, double *loss)
{
    const a3_cache_layer *L = &c->layers[l];
    loss[c->d_ff] = 0;
    for (int w = c->d_ff - 1; w >= 0; w--)
        loss[w] = loss[w + 1] + L->d[order[w]] * L->down_norm[order[w]] / (double)c->n_tokens;
}

/* Exact CUR loss along idx from the full symmetric H (ff x ff, row-major,
 * in whatever index order H is in): loss[w] = sum_{i,j >= w} H[idx_i,
 * idx_j] / N, one pass over the rows, O(d_ff^2). With idx the identity
 * the reads are contiguous. */
static void mlp_exact(const double *H, int ff, const int32_t *idx, double N, double *loss)
{
    double acc = 0;
    loss[ff] = 0;
    for (int w = ff - 1; w >= 0; w--) {
        const double *row = H + (size_t)idx[w] * ff;
        double s = row[idx[w]];
        for (int j = w + 1; j < ff; j++) s += 2 * row[idx[j]];
        acc += s;
        loss[w] = fmax(acc / N, 0.0);
    }
}

enum { TILE = 64 }; /* square tiles for transposes: 2 x 64 x 64 doubles fit L1+L2 */

/* T[n * d + e] = wd[e * ff + n] in double: W_down (d x ff, float) to
 * neuron-major rows, tile by tile so that reads and writes both stay in
 * cache lines already fetched (a plain strided loop misses on every read). */
static void transpose_wd(const float *wd, int d, int ff, double *T)
{
    for (int e0 = 0; e0 < d; e0 += TILE)
        for (int n0 = 0; n0 < ff; n0 += TILE) {
            int e1 = e0 + TILE < d ? e0 + TILE : d, n1 = n0 + TILE < ff ? n0 + TILE : ff;
            for (int n = n0; n < n1; n++)
                for (int e = e0; e < e1; e++) T[(size_t)n * d + e] = wd[(size_t)e * ff + n];
        }
}

/* Copy the upper triangle of the row-major H into its lower one, by tiles. */
static void mirror_upper(double *H, int ff)
{
    for (int i0 = 0; i0 < ff; i0 += TILE)
        for (int j0 = 0; j0 <= i0; j0 += TILE) {
            int i1 = i0 + TILE < ff ? i0 + TILE : ff, j1 = j0 + TILE < ff ? j0 + TILE : ff;
            for (int i = i0; i < i1; i++)
                for (int j = j0; j < j1 && j < i; j++) H[(size_t)i * ff + j] = H[(size_t)j * ff + i];
        }
}

/* R[i][j] = Ru[P_i][P_j] (+ delta on the diagonal) for j >= i: the upper
 * triangle, row-major, of Ru in the order P, which is the lower triangle
 * of the same matrix in column-major order (what dpotrf 'L' reads, with
 * no transposed copy). Row P_i of Ru is read whole, so it stays in cache. */
static void gather_upper(const double *Ru, int ff, const int32_t *P, double delta, double *R)
{
    for (int i = 0; i < ff; i++) {
        const double *src = Ru + (size_t)P[i] * ff;
        double *dst = R + (size_t)i * ff;
        for (int j = i; j < ff; j++) dst[j] = src[P[j]];
        dst[i] += delta;
    }
}

/* Work space of the exact MLP curves, allocated once for all layers (a
 * fresh 2 GiB per 7B layer would be page-faulted and zeroed every time). */
typedef struct {
    double *Z; /* (ff, d) */
    double *G; /* (ff, ff): the transposed W_d, then G and H_P, then Y when damped */
    double *R; /* (ff, ff) */
    int32_t *P, *Q, *pinv;
} mlp_ws;

static void mlp_ws_free(mlp_ws *s)
{
    free(s->Z), free(s->G), free(s->R), free(s->P), free(s->Q), free(s->pinv);
    memset(s, 0, sizeof *s);
}

static int mlp_ws_alloc(mlp_ws *s, int ff, int d)
{
    /* G also holds the transposed W_d and the damped Y (ff x d each) */
    s->Z = a3_malloc_array((size_t)ff * d, 8), s->G = a3_malloc_array((size_t)ff * (ff > d ? ff : d), 8);
    s->R = a3_malloc_array((size_t)ff * ff, 8);
    s->P = malloc((size_t)ff * 4), s->Q = malloc((size_t)ff * 4), s->pinv = malloc((size_t)ff * 4);
    return s->Z && s->G && s->R && s->P && s->Q && s->pinv ? 0 : -1;
}

/* Exact MLP curves of layer l (with Ru), all in the a3 order P, so that
 * every O(d_ff^2) pass reads memory in order:
 *   Z = W_d[P,:] (ff x d, double): a tiled transpose, then row copies;
 *   G = Z Z^T (dsyrk, upper), R = Ru[P,P] (upper), H_P = G o R, mirrored;
 *   a3 curve from H_P rows in order; weight-norm from H_P through
 *   idx = P^-1 o order_wn;
 *   refit: R + delta I = L L^T by dpotrf on R in place (row-major upper =
 *   column-major lower, so L^T lands in R's upper triangle), Y = L^T Z by
 *   dtrmm in place (minus delta L^-1 Z when damped), explained(w) = sum of
 *   the first w squared row norms.
 * Flops: d_ff^2 d (dsyrk) + d_ff^3 / 3 (dpotrf) + d_ff^2 d (dtrmm), plus
 * O(d_ff^2 + d_ff d) memory passes; work space 2 d_ff^2 + d_ff d doubles
 * (G's buffer, d_ff x max(d_ff, d), also holds the transposed W_d and
 * the damped Y).
 * dpotrf sees the same column-major lower triangle as LAPACKE_dpotrf's
 * row-major 'L' path did after its transposed copy, so L is unchanged. */
static int mlp_layer_exact(const a3_cache *c, int l, const a3_layer_f32 *w, a3_pred *p, mlp_ws *s, a3_err *err)
{
    int ff = c->d_ff, d = c->d, rc = 0;
    double N = (double)c->n_tokens;
    const double *Ru = c->layers[l].ru;
    int32_t *P = s->P, *Q = s->Q, *pinv = s->pinv;
    double *Z = s->Z, *G = s->G, *R = s->R, *T = G;
    rc = a3_mlp_order(c, l, A3_MLP_METHOD_A3, w, P, err);
    if (!rc) rc = a3_mlp_order(c, l, A3_MLP_METHOD_WEIGHT_NORM, w, Q, err);
    if (rc) return rc;
    transpose_wd(w->wd, d, ff, T); /* in G's buffer, before dsyrk writes G */
    for (int i = 0; i < ff; i++) memcpy(Z + (size_t)i * d, T + (size_t)P[i] * d, (size_t)d * 8);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, ff, d, 1.0, Z, d, 0.0, G, ff);
    gather_upper(Ru, ff, P, 0, R);
    for (int i = 0; i < ff; i++) {
        double *g = G + (size_t)i * ff;
        const double *r = R + (size_t)i * ff;
        for (int j = i; j < ff; j++) g[j] *= r[j];
    }
    mirror_upper(G, ff);
    for (int i = 0; i < ff; i++) pinv[P[i]] = i;
    for (int i = 0; i < ff; i++) Q[i] = pinv[Q[i]]; /* H_P's index of the i-th weight-norm neuron */
    for (int i = 0; i < ff; i++) pinv[i] = i;       /* the identity: H_P is in the a3 order */
    double *loss_a3 = p->mlp[A3_MLP_METHOD_A3] + (size_t)l * (ff + 1);
    mlp_exact(G, ff, pinv, N, loss_a3);
    mlp_exact(G, ff, Q, N, p->mlp[A3_MLP_METHOD_WEIGHT_NORM] + (size_t)l * (ff + 1));
    /* refit: undamped first; if Ru[P,P] is singular, damp (the solver's rule) */
    double delta = 0, unit = a3_mlp_refit_damping(Ru, ff);
    int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', ff, R, ff);
    for (double eps = 1e-10; info != 0 && eps <= 1e-2; eps *= 100) {
        delta = eps * unit;
        gather_upper(Ru, ff, P, delta, R);
        info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', ff, R, ff);
    }
    if (info != 0)
        return a3_err_set(err, A3_EFORMAT, "prediction: layer %d: refit curve: Ru not positive definite even with damping", l);
    double *Y = Z; /* in place unless damped, which needs Z once more: then in G's buffer */
    if (delta > 0) memcpy(Y = G, Z, (size_t)ff * d * 8);
    cblas_dtrmm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, ff, d, 1.0, R, ff, Y, d);
    if (delta > 0) { /* Y -= delta L^-1 Z; L = R's upper transposed */
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasUpper, CblasTrans, CblasNonUnit, ff, d, 1.0, R, ff, Z, d);
        for (size_t i = 0; i < (size_t)ff * d; i++) Y[i] -= delta * Z[i];
    }
    double *loss = p->mlp[A3_MLP_METHOD_A3_REFIT] + (size_t)l * (ff + 1), total = loss_a3[0], explained = 0;
    loss[0] = total;
    for (int k = 1; k <= ff; k++) {
        const double *y = Y + (size_t)(k - 1) * d;
        for (int e = 0; e < d; e++) explained += y[e] * y[e];
        loss[k] = fmax(total - explained / N, 0.0);
    }
    loss[ff] = 0; /* the full width is the identity */
    return A3_OK;
}

static int mlp_layer(const a3_cache *c, int l, const a3_layer_f32 *w, a3_pred *p, mlp_ws *s, a3_err *err)
{
    if (p->mlp_exact && !c->layers[l].ru)
        return a3_err_set(err, A3_EINVAL, "prediction: layer %d: Ru not loaded (a3_cache_need first)", l);
    if (p->mlp_exact && !s->Z && mlp_ws_alloc(s, c->d_ff, c->d))
        return a3_err_set(err, A3_ENOMEM, "prediction: layer %d: out of memory for the MLP curves (2 d_ff^2 + d_ff d doubles)", l);
    if (p->mlp_exact) return mlp_layer_exact(c, l, w, p, s, err);
    int ff = c->d_ff, rc = 0;
    int32_t *order = malloc((size_t)ff * sizeof *order);
    if (!order) return a3_err_set(err, A3_ENOMEM, "prediction: layer %d: out of memory", l);
    for (int m = 0; rc == 0 && m < A3_MLP_METHOD_COUNT; m++) {
        if (m == A3_MLP_METHOD_A3_REFIT) continue;
        rc = a3_mlp_order(c, l, (a3_mlp_method)m, w, order, err);
        if (!rc) mlp_estimate(c, l, order, p->mlp[m] + (size_t)l * (ff + 1));
    }
    free(order);
    return rc;
}

int a3_pred_curves(a3_model *m, const a3_cache *c, a3_pred *p, a3_progress_fn progress, void *ctx, a3_err *err)
{
    int hd = c->head_dim;
    double *gq = malloc((size_t)hd * hd * 8), *gk = malloc((size_t)hd * hd * 8);
    int rc = gq && gk ? A3_OK : a3_err_set(err, A3_ENOMEM, "prediction: out of memory");
    mlp_ws ws = {0};
    for (int l = 0; rc == A3_OK && l < c->n_layers; l++) {
        a3_layer_in li;
        rc = a3_layer_in_load(m, l, &li, err);
        /* Head-sized products on one OpenBLAS thread: no slower at that
         * size, and their bits then cannot depend on --threads. */
        int blas = a3_blas_single_begin();
        if (!rc) rc = qk_layer(c, l, &li.w, p, gq, gk, err);
        if (!rc) rc = ov_layer(c, l, &li.w, p, err);
        a3_blas_single_end(blas);
        if (!rc) rc = mlp_layer(c, l, &li.w, p, &ws, err);
        a3_layer_in_free(&li);
        if (!rc && progress && progress(ctx, "curves", l + 1, c->n_layers))
            rc = a3_err_set(err, A3_ECANCELED, "prediction: interrupted");
    }
    free(gq), free(gk);
    mlp_ws_free(&ws);
    return rc;
}
