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

/* Exact CUR loss along order from H = Ru o (Wd Wd^T) (full, row-major):
 * loss[w] = sum_{i,j >= w} H[o_i, o_j] / N, O(d_ff^2). */
static void mlp_exact(const double *H, int ff, const int32_t *order, double N, double *loss)
{
    double acc = 0;
    loss[ff] = 0;
    for (int w = ff - 1; w >= 0; w--) {
        const double *row = H + (size_t)order[w] * ff;
        double s = row[order[w]];
        for (int j = w + 1; j < ff; j++) s += 2 * row[order[j]];
        acc += s;
        loss[w] = fmax(acc / N, 0.0);
    }
}

/* Refit loss along the a3 order for every width (see pred.h): R = Ru[P,P]
 * + delta I = L L^T, Y = L^T Z - delta L^-1 Z with Z = Wd[P,:] (ff x d),
 * explained(w) = sum_{i<w} |Y_i|^2, loss(w) = (total - explained(w)) / N,
 * total = trace(Wd^T Ru Wd) = loss of the exact CUR curve at width 0. */
static int mlp_refit(const a3_cache *c, int l, const float *wd, const int32_t *order, double total, double *loss)
{
    int ff = c->d_ff, d = c->d;
    const double *Ru = c->layers[l].ru;
    double *R = a3_malloc_array((size_t)ff * ff, 8), *Y = a3_malloc_array((size_t)ff * d, 8);
    double *Z = a3_malloc_array((size_t)ff * d, 8);
    int rc = -1;
    if (!R || !Y || !Z) goto out;
    for (int i = 0; i < ff; i++)
        for (int e = 0; e < d; e++) Z[(size_t)i * d + e] = wd[(size_t)e * ff + order[i]];
    double delta = 0, unit = a3_mlp_refit_damping(Ru, ff);
    int info = 1;
    for (double eps = 0; info != 0 && eps <= 1e-2; eps = eps == 0 ? 1e-10 : eps * 100) {
        delta = eps * unit;
        for (int i = 0; i < ff; i++) {
            const double *src = Ru + (size_t)order[i] * ff;
            for (int j = 0; j <= i; j++) R[(size_t)i * ff + j] = src[order[j]];
            R[(size_t)i * ff + i] += delta;
        }
        info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', ff, R, ff);
    }
    if (info != 0) goto out;
    memcpy(Y, Z, (size_t)ff * d * 8);
    cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, ff, d, 1.0, R, ff, Y, d);
    if (delta > 0) { /* Y -= delta L^-1 Z */
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, ff, d, 1.0, R, ff, Z, d);
        for (size_t i = 0; i < (size_t)ff * d; i++) Y[i] -= delta * Z[i];
    }
    double N = (double)c->n_tokens, explained = 0;
    loss[0] = total;
    for (int w = 1; w <= ff; w++) {
        const double *y = Y + (size_t)(w - 1) * d;
        for (int e = 0; e < d; e++) explained += y[e] * y[e];
        loss[w] = fmax(total - explained / N, 0.0);
    }
    loss[ff] = 0; /* the full width is the identity */
    rc = 0;
out:
    free(R), free(Y), free(Z);
    return rc;
}

static int mlp_layer(const a3_cache *c, int l, const a3_layer_f32 *w, a3_pred *p, a3_err *err)
{
    int ff = c->d_ff;
    int32_t *order = malloc((size_t)ff * sizeof *order);
    double *H = NULL;
    int rc = 0;
    if (!order) return a3_err_set(err, A3_ENOMEM, "prediction: layer %d: out of memory", l);
    if (p->mlp_exact && !c->layers[l].ru) {
        free(order);
        return a3_err_set(err, A3_EINVAL, "prediction: layer %d: Ru not loaded (a3_cache_need first)", l);
    }
    if (p->mlp_exact) {
        /* H = (Wd^T Wd) o Ru: Wd^T Wd by dsyrk, O(d_ff^2 d). */
        H = a3_malloc_array((size_t)ff * ff, 8);
        double *W = a3_malloc_array((size_t)ff * c->d, 8);
        if (!H || !W) {
            free(W), free(H), free(order);
            return a3_err_set(err, A3_ENOMEM, "prediction: layer %d: out of memory for the MLP curves (2 x d_ff^2 doubles)", l);
        }
        for (size_t i = 0; i < (size_t)ff * c->d; i++) W[i] = w->wd[i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, ff, c->d, 1.0, W, ff, 0.0, H, ff);
        free(W);
        const double *Ru = c->layers[l].ru;
        for (int i = 0; i < ff; i++)
            for (int j = i; j < ff; j++) {
                double h = H[(size_t)i * ff + j] * Ru[(size_t)i * ff + j];
                H[(size_t)i * ff + j] = H[(size_t)j * ff + i] = h;
            }
    }
    for (int m = 0; rc == 0 && m < A3_MLP_METHOD_COUNT; m++) {
        if (m == A3_MLP_METHOD_A3_REFIT) continue;
        rc = a3_mlp_order(c, l, (a3_mlp_method)m, w, order, err);
        if (rc) break;
        double *loss = p->mlp[m] + (size_t)l * (ff + 1);
        if (H) mlp_exact(H, ff, order, (double)c->n_tokens, loss);
        else mlp_estimate(c, l, order, loss);
    }
    free(H);
    if (rc == 0 && p->mlp_exact) {
        rc = a3_mlp_order(c, l, A3_MLP_METHOD_A3, w, order, err);
        double total = p->mlp[A3_MLP_METHOD_A3][(size_t)l * (ff + 1)];
        if (rc == 0 && mlp_refit(c, l, w->wd, order, total, p->mlp[A3_MLP_METHOD_A3_REFIT] + (size_t)l * (ff + 1)))
            rc = a3_err_set(err, A3_EFORMAT, "prediction: layer %d: refit curve: Ru not positive definite even with damping (or out of memory)", l);
    }
    free(order);
    return rc;
}

int a3_pred_curves(a3_model *m, const a3_cache *c, a3_pred *p, a3_progress_fn progress, void *ctx, a3_err *err)
{
    int hd = c->head_dim;
    double *gq = malloc((size_t)hd * hd * 8), *gk = malloc((size_t)hd * hd * 8);
    int rc = gq && gk ? A3_OK : a3_err_set(err, A3_ENOMEM, "prediction: out of memory");
    for (int l = 0; rc == A3_OK && l < c->n_layers; l++) {
        a3_layer_in li;
        rc = a3_layer_in_load(m, l, &li, err);
        /* Head-sized products on one OpenBLAS thread: no slower at that
         * size, and their bits then cannot depend on --threads. */
        int blas = a3_blas_single_begin();
        if (!rc) rc = qk_layer(c, l, &li.w, p, gq, gk, err);
        if (!rc) rc = ov_layer(c, l, &li.w, p, err);
        a3_blas_single_end(blas);
        if (!rc) rc = mlp_layer(c, l, &li.w, p, err);
        a3_layer_in_free(&li);
        if (!rc && progress && progress(ctx, "curves", l + 1, c->n_layers))
            rc = a3_err_set(err, A3_ECANCELED, "prediction: interrupted");
    }
    free(gq), free(gk);
    return rc;
}
