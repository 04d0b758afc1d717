/* sequential: see include/a3/sequential.h and docs/SEQUENTIAL.md.
 *
 * Statistics are sums over the calibration tokens in float64; a cross
 * term X[a][b] is sum over tokens of hat_a * orig_b (hat: the reduced
 * stream X^, orig: the original stream X). Each pass runs both streams
 * chunk by chunk over the same windows: the original stream's activations
 * of a chunk are captured first, then the reduced stream's hooks pair them
 * row by row. Hooks stop a pass early (HOOK_STOP) once they have what the
 * phase needs, so the partial passes cost only the layer up to that point. */
#include "a3/sequential.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/calib.h"
#include "a3/linalg.h"
#include "a3/reduce.h"
#include "a3/tokens.h"

#define HOOK_STOP 1 /* positive: a3_model_run_layer returns it unchanged */
#define WIDEN_ROWS 256

enum { PH_QK, PH_QKM, PH_OV, PH_MLP, PH_ADVANCE };

struct a3_seq {
    a3_model *m;
    const a3_plan *p;
    const a3_cache *c;
    a3_layer_solver solver;
    char *record;
    a3_progress_fn progress;
    void *pctx;
    int64_t done, total;
    char stage[32];

    int d, nh, nkv, hd, per, ff, nw, L, chunk_seqs, next_layer;
    size_t N;
    float *x, *xh;                /* (N, d) original / reduced stream */
    float *buf;                   /* (chunk, d) a chunk of the reduced stream */
    float *cq, *ck, *cv, *cz, *cu; /* (chunk, width) captured original activations */
    float *ch;                    /* (chunk, d) original residual h = x + attn(x) */
    size_t cur_off;               /* float offset of the current chunk in x / xh */
    int drift;                    /* MLP refit target includes h - h^ */
    double ov_drift;              /* share of x - x^ in each head's OV target */
    int orefit;                   /* joint least-squares refit of the kept o_proj columns */
    int nkc;                      /* their number K (sum over heads of the group's rank) */
    int32_t *koff;                /* (nh) each head's first kept o column (in 0..K-1) */
    double *ovT;                  /* (nkv, hd, hd) each group's v map T (hd x r, row-major) */
    double *wa, *wb;              /* (WIDEN_ROWS, max width) widening scratch */
    double *wy;                   /* (WIDEN_ROWS, d) MLP target rows */
    int qkm;                      /* A3_SEQ_QKM_*: QK pairs chosen by a measured error */
    int qkm_c;                    /* the candidate being run (PH_QKM) */
    int qkm_c0, qkm_batch;        /* mode OV: the first candidate of the batch whose
                                   * statistics are held, and at most how many are */
    int qkm_nw;                   /* windows the measurement runs on (the first ones) */
    int *qkm_n;                   /* (nkv) candidates of each group this layer (<= 1: not measured) */
    int32_t *qkm_cand;            /* (nkv, A3_SEQ_QKM_CAP, hd/2) their kept pairs */
    double *qkm_err;              /* (A3_SEQ_QKM_CAP, nkv) their summed errors */
    double *qkm_w;                /* (nkv, per*hd, per*hd) the error's weight (W_o modes) */
    double *qkm_wo;               /* (nkv, per*hd, d) W_o,g^T (mode OV) */
    double *qkm_st;               /* (qkm_batch, nkv, 2 (per*hd)^2) each candidate's Gz_g, Xz_g (mode OV) */

    /* statistics of the current layer (sums) */
    double *gq, *gqh, *xq;  /* (nkv, hd, hd) query terms summed over the group */
    double *gk, *gkh, *xk;  /* (nkv, hd, hd) */
    double *gvh, *xv;       /* (nkv, hd, hd) v^T v^, v^T v */
    double *cyy, *cyz;      /* (nh, hd, hd) y^T y, y^T z */
    double *cyd;            /* (nh, hd, d) y^T (x - x^), with ov_drift only */
    double *du, *duh, *xu;  /* (ff) u*u, u^*u^, u^*u */
    double *ruh, *uy, *wdd; /* (F, F), (F, d), (d, F) double W_down; refit only; with
                             * orefit F = max(ff, nh*hd) and, before the MLP phase,
                             * they hold the OV refit's (K, K), (K, d) and W_o */
    int refit;

    /* the current layer's solution */
    int32_t *idx;              /* (nkv, hd/2) */
    double *qk_loss, *ov_loss, *ov_damp; /* (nkv) */
    float *sv, *sbv, *so;      /* (nkv, hd, d), (nkv, hd), (nkv, per * d * hd) */
    int32_t *keep;             /* (ff) */
    float *sdown;              /* (d, ff) refit, width columns used */

    /* the padded layer being run on X^ */
    float *pq, *pk, *pv, *po, *pbq, *pbk, *pbv, *pg, *pu, *pd;
    a3_layer_mats orig, pad;
};

/* ---- statistics ---------------------------------------------------------- */

/* out[k / div] += A[:, k*hd..]^T B[:, k*hd..] for k < nblk, A and B
 * (rows, width) float; B NULL means B = A. */
static void acc_cross(a3_seq *s, const float *A, const float *B, size_t rows, int width, int nblk, int div,
                      double *out)
{
    int hd = s->hd;
    size_t hh = (size_t)hd * hd;
    for (size_t r0 = 0; r0 < rows; r0 += WIDEN_ROWS) {
        size_t nr = rows - r0 < WIDEN_ROWS ? rows - r0 : WIDEN_ROWS;
        for (size_t i = 0; i < nr * (size_t)width; i++) s->wa[i] = A[r0 * width + i];
        if (B)
            for (size_t i = 0; i < nr * (size_t)width; i++) s->wb[i] = B[r0 * width + i];
        const double *wb = B ? s->wb : s->wa;
        for (int k = 0; k < nblk; k++)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hd, hd, (int)nr, 1.0, s->wa + (size_t)k * hd, width,
                        wb + (size_t)k * hd, width, 1.0, out + (size_t)(k / div) * hh, hd);
    }
}

static void stats_zero(a3_seq *s)
{
    size_t hh = (size_t)s->hd * s->hd, g = (size_t)s->nkv * hh, h = (size_t)s->nh * hh, f = (size_t)s->ff;
    double *z[] = {s->gq, s->gqh, s->xq, s->gk, s->gkh, s->xk, s->gvh, s->xv};
    for (int i = 0; i < 8; i++) memset(z[i], 0, g * 8);
    memset(s->cyy, 0, h * 8), memset(s->cyz, 0, h * 8);
    memset(s->du, 0, f * 8), memset(s->duh, 0, f * 8), memset(s->xu, 0, f * 8);
    if (s->cyd) memset(s->cyd, 0, h / (size_t)s->hd * (size_t)s->d * 8);
}

/* MLP statistics of one chunk: u (original, captured) and uh (reduced);
 * hh: the reduced stream's residual h^ at the MLP input. */
static void acc_mlp(a3_seq *s, const float *uh, const float *hh, size_t rows)
{
    const float *u = s->cu;
    size_t ff = (size_t)s->ff, d = (size_t)s->d;
    for (size_t r = 0; r < rows; r++)
        for (size_t n = 0; n < ff; n++) {
            double a = u[r * ff + n], b = uh[r * ff + n];
            s->du[n] += a * a, s->duh[n] += b * b, s->xu[n] += b * a;
        }
    if (!s->refit) return;
    for (size_t r0 = 0; r0 < rows; r0 += WIDEN_ROWS) {
        size_t nr = rows - r0 < WIDEN_ROWS ? rows - r0 : WIDEN_ROWS;
        for (size_t i = 0; i < nr * ff; i++) s->wa[i] = uh[r0 * ff + i], s->wb[i] = u[r0 * ff + i];
        /* target rows y = u W_down^T in float64 (d wide) */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)d, (int)ff, 1.0, s->wb, (int)ff, s->wdd,
                    (int)ff, 0.0, s->wy, (int)d);
        if (s->drift) /* the layer output: y + h - h^ (zero when the streams agree) */
            for (size_t i = 0; i < nr * d; i++) s->wy[i] += (double)s->ch[r0 * d + i] - (double)hh[r0 * d + i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)ff, (int)nr, 1.0, s->wa, (int)ff, 1.0, s->ruh, (int)ff);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)ff, (int)d, (int)nr, 1.0, s->wa, (int)ff, s->wy,
                    (int)d, 1.0, s->uy, (int)d);
    }
}

/* ---- hooks --------------------------------------------------------------- */

typedef struct {
    a3_seq *s;
    int phase, hat;
} hook_ctx;

static void copy_rows(float *dst, const float *src, size_t rows, int width)
{
    memcpy(dst, src, rows * (size_t)width * sizeof(float));
}

static int on_qkv(void *ctx, int layer, const float *q, const float *k, const float *v, size_t rows)
{
    hook_ctx *h = ctx;
    a3_seq *s = h->s;
    int qw = s->nh * s->hd, kw = s->nkv * s->hd;
    if (h->phase == PH_QK) {
        if (!h->hat) {
            copy_rows(s->cq, q, rows, qw), copy_rows(s->ck, k, rows, kw);
            return HOOK_STOP;
        }
        acc_cross(s, s->cq, NULL, rows, qw, s->nh, s->per, s->gq);
        acc_cross(s, q, NULL, rows, qw, s->nh, s->per, s->gqh);
        acc_cross(s, q, s->cq, rows, qw, s->nh, s->per, s->xq);
        acc_cross(s, s->ck, NULL, rows, kw, s->nkv, 1, s->gk);
        acc_cross(s, k, NULL, rows, kw, s->nkv, 1, s->gkh);
        acc_cross(s, k, s->ck, rows, kw, s->nkv, 1, s->xk);
        return HOOK_STOP;
    }
    if (h->phase == PH_OV) {
        if (!h->hat) copy_rows(s->cv, v, rows, kw);
        else {
            acc_cross(s, v, NULL, rows, kw, s->nkv, 1, s->gvh);
            acc_cross(s, v, s->cv, rows, kw, s->nkv, 1, s->xv);
        }
    }
    return 0;
}

/* cyd[i] += y_i^T (x - x^) over the chunk's rows: y_i head i's attention
 * output on the reduced stream, x - x^ the layer inputs' difference (both
 * streams are untouched during PH_OV: the passes run on copies). */
static void acc_drift(a3_seq *s, const float *z, size_t rows)
{
    size_t d = (size_t)s->d, qw = (size_t)s->nh * s->hd, hd = (size_t)s->hd;
    const float *x = s->x + s->cur_off, *xh = s->xh + s->cur_off;
    for (size_t r0 = 0; r0 < rows; r0 += WIDEN_ROWS) {
        size_t nr = rows - r0 < WIDEN_ROWS ? rows - r0 : WIDEN_ROWS;
        for (size_t i = 0; i < nr * qw; i++) s->wa[i] = z[r0 * qw + i];
        for (size_t i = 0; i < nr * d; i++) s->wy[i] = (double)x[r0 * d + i] - (double)xh[r0 * d + i];
        for (int h = 0; h < s->nh; h++)
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)hd, (int)d, (int)nr, 1.0, s->wa + h * hd, (int)qw,
                        s->wy, (int)d, 1.0, s->cyd + (size_t)h * hd * d, (int)d);
    }
}

/* OV refit statistics of one chunk (PH_OV, docs/SEQUENTIAL.md "OV
 * refit"): Gz += z^^T z^ (qw, qw) and Bz += z^^T t (qw, d), z^ the
 * attention outputs of the ORIGINAL v_proj under the reduced QK on X^ and
 * t = z W_o^T + (x - x^) the original layer's attention output on X plus
 * the layer inputs' drift (both streams are untouched during PH_OV: the
 * passes run on copies). Any v map T acts on z^ linearly (the attention
 * weights of a row sum to one, so a v bias maps along), so these sums give
 * the statistics of every T without another pass. Gz in s->ruh (upper
 * triangle), Bz in s->uy, W_o in float64 in s->wdd (d, nh*hd). */
static void acc_orefit(a3_seq *s, const float *zh, size_t rows)
{
    size_t d = (size_t)s->d, qw = (size_t)s->nh * s->hd;
    const float *x = s->x + s->cur_off, *xh = s->xh + s->cur_off;
    for (size_t r0 = 0; r0 < rows; r0 += WIDEN_ROWS) {
        size_t nr = rows - r0 < WIDEN_ROWS ? rows - r0 : WIDEN_ROWS;
        for (size_t i = 0; i < nr * qw; i++) s->wa[i] = zh[r0 * qw + i], s->wb[i] = s->cz[r0 * qw + i];
        for (size_t i = 0; i < nr * d; i++) s->wy[i] = (double)x[r0 * d + i] - (double)xh[r0 * d + i];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)d, (int)qw, 1.0, s->wb, (int)qw, s->wdd,
                    (int)qw, 1.0, s->wy, (int)d);
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)qw, (int)nr, 1.0, s->wa, (int)qw, 1.0, s->ruh, (int)qw);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)qw, (int)d, (int)nr, 1.0, s->wa, (int)qw, s->wy,
                    (int)d, 1.0, s->uy, (int)d);
    }
}

/* Mode OV: per group g and candidate, Gz_g += z^_g^T z^_g and Xz_g +=
 * z^_g^T z_g (P x P each, P = per*hd; z^_g the group's attention outputs
 * on X^ with the candidate's cut, z_g the original's on X). */
static size_t qkm_st_size(const a3_seq *s)
{
    size_t P = (size_t)s->per * s->hd;
    return 2 * P * P;
}

static void acc_qkm_ov(a3_seq *s, const float *zh, size_t rows)
{
    size_t qw = (size_t)s->nh * s->hd, P = (size_t)s->per * s->hd;
    size_t st = qkm_st_size(s);
    int c = s->qkm_c, cb = c - s->qkm_c0;
    for (size_t r0 = 0; r0 < rows; r0 += WIDEN_ROWS) {
        size_t nr = rows - r0 < WIDEN_ROWS ? rows - r0 : WIDEN_ROWS;
        for (size_t i = 0; i < nr * qw; i++) s->wa[i] = zh[r0 * qw + i], s->wb[i] = s->cz[r0 * qw + i];
        for (int g = 0; g < s->nkv; g++) {
            if (c >= s->qkm_n[g]) continue;
            double *G = s->qkm_st + ((size_t)cb * s->nkv + g) * st, *X = G + P * P;
            const double *Z = s->wa + (size_t)g * P, *Zo = s->wb + (size_t)g * P;
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)P, (int)nr, 1.0, Z, (int)qw, 1.0, G, (int)P);
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)P, (int)P, (int)nr, 1.0, Z, (int)qw, Zo, (int)qw,
                        1.0, X, (int)P);
        }
    }
}

/* Element (i, j) of a symmetric P x P matrix of which only the upper
 * triangle is filled (dsyrk). */
static inline double upper(const double *G, int P, int i, int j)
{
    return i < j ? G[(size_t)i * P + j] : G[(size_t)j * P + i];
}

/* Mode OV (docs/SEQUENTIAL.md, "Measured QK"): the error of group g's
 * candidate c after what the OV phase can make up, i.e. after the
 * per-head OV solve (with the group-summed Cyy, Cyz of a3-csum, whatever
 * the plan's OV method: the score only needs a v map of the plan's rank)
 * and the least-squares refit of the group's kept o columns for that map,
 * both aimed at the group's own output t_g = z_g W_o,g^T. With T the map
 * (hd x r), the kept outputs are z^_j T (j < per) and the refit's residual
 * is ||t_g||^2 - tr(BK^T GK^-1 BK), GK = (I x T)^T Gz_g (I x T), BK =
 * (I x T)^T Xz_g W_o,g^T; the score leaves out ||t_g||^2, the same for
 * every candidate. 0 (no better than nothing) when the group keeps no OV
 * rank or the refit's system cannot be solved. */
static int qkm_ov_score(a3_seq *s, int l, int g, int c, const a3_layer_f32 *w, double *score, a3_err *err)
{
    int hd = s->hd, per = s->per, d = s->d, P = per * hd, r = a3_plan_ov(s->p, l)[g], K = per * r;
    size_t hh = (size_t)hd * hd;
    const double *G = s->qkm_st + ((size_t)(c - s->qkm_c0) * s->nkv + g) * qkm_st_size(s), *X = G + (size_t)P * P;
    *score = 0;
    if (r == 0) return A3_OK;
    double *B = malloc((size_t)P * d * 8);
    if (B) /* z^_g^T (z_g W_o,g^T) = Xz_g W_o,g^T */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, P, d, P, 1.0, X, P, s->qkm_wo + (size_t)g * P * d, d,
                    0.0, B, d);
    double *cyy = calloc(hh, 8), *cyz = calloc(hh * per, 8), *T = malloc(hh * 8), *GK = malloc((size_t)K * K * 8),
           *BK = malloc((size_t)K * d * 8), *B0 = malloc((size_t)K * d * 8), *tmp = malloc(hh * 8),
           *t2 = malloc(hh * 8);
    float *nv = malloc((size_t)hd * d * 4), *nb = malloc((size_t)hd * 4), *no = malloc((size_t)per * d * hd * 4);
    int rc = B && cyy && cyz && T && GK && BK && B0 && tmp && t2 && nv && nb && no
                 ? A3_OK
                 : a3_err_set(err, A3_ENOMEM, "layer %d: out of memory for the measured QK", l);
    for (int j = 0; rc == A3_OK && j < per; j++)
        for (int a = 0; a < hd; a++)
            for (int b = 0; b < hd; b++) {
                int ia = j * hd + a, ib = j * hd + b;
                cyy[a * hd + b] += upper(G, P, ia, ib) / (double)s->N;
                cyz[a * hd + b] += X[(size_t)ia * P + ib] / (double)s->N;
            }
    for (int j = 1; rc == A3_OK && j < per; j++) memcpy(cyz + j * hh, cyz, hh * 8);
    double loss, damp;
    if (rc == A3_OK) rc = a3_ov_solve_stats_t(cyy, cyz, NULL, l, g, r, w, nv, w->bv ? nb : NULL, no, &loss, &damp, T, err);
    for (int j = 0; rc == A3_OK && j < per; j++) {
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, d, hd, 1.0, T, r, B + (size_t)j * hd * d, d, 0.0,
                    BK + (size_t)j * r * d, d);
        for (int j2 = 0; j2 < per; j2++) {
            /* G's block (j, j2) from the upper triangle */
            for (int a = 0; a < hd; a++)
                for (int b = 0; b < hd; b++) {
                    int ia = j * hd + a, ib = j2 * hd + b;
                    tmp[a * hd + b] = upper(G, P, ia, ib);
                }
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hd, r, hd, 1.0, tmp, hd, T, r, 0.0, t2, r);
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, r, hd, 1.0, T, r, t2, r, 0.0,
                        GK + (size_t)j * r * K + j2 * r, K);
        }
    }
    if (rc == A3_OK) {
        memcpy(B0, BK, (size_t)K * d * 8);
        /* damped like the refit it stands for (a3_mlp_refit_stats' rule) */
        int info = a3_solve_spd_damped(GK, BK, K, d, a3_mlp_refit_damping(GK, K));
        if (info < 0) rc = a3_err_set(err, A3_ENOMEM, "layer %d: out of memory for the measured QK", l);
        if (info == 0) {
            double t = 0;
            for (size_t i = 0; i < (size_t)K * d; i++) t += B0[i] * BK[i];
            *score = -t;
        }
    }
    free(B), free(cyy), free(cyz), free(T), free(GK), free(BK), free(B0), free(tmp), free(t2), free(nv), free(nb);
    free(no);
    return rc;
}

/* Measured QK (PH_QKM): every group's error for candidate s->qkm_c of one
 * chunk, zh the reduced layer's attention outputs (each group's q/k rows
 * cut to its candidate, v/o original) against s->cz, the original
 * layer's on X. Head i's z depends on its own q and its group's k, v
 * only, so one run scores one candidate of every group at once. */
static void acc_qkm(a3_seq *s, const float *zh, size_t rows)
{
    size_t qw = (size_t)s->nh * s->hd, P = (size_t)s->per * s->hd;
    int c = s->qkm_c;
    if (s->qkm == A3_SEQ_QKM_OV) {
        acc_qkm_ov(s, zh, rows);
        return;
    }
    for (size_t r0 = 0; r0 < rows; r0 += WIDEN_ROWS) {
        size_t nr = rows - r0 < WIDEN_ROWS ? rows - r0 : WIDEN_ROWS;
        for (size_t i = 0; i < nr * qw; i++) s->wa[i] = (double)zh[r0 * qw + i] - (double)s->cz[r0 * qw + i];
        for (int g = 0; g < s->nkv; g++) {
            if (c >= s->qkm_n[g]) continue;
            const double *D = s->wa + (size_t)g * P;
            double e = 0;
            if (s->qkm == A3_SEQ_QKM_Z) {
                for (size_t r = 0; r < nr; r++)
                    for (size_t j = 0; j < P; j++) e += D[r * qw + j] * D[r * qw + j];
            } else { /* D M D^T row by row, M the group's o-column Gram matrix */
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr, (int)P, (int)P, 1.0, D, (int)qw,
                            s->qkm_w + (size_t)g * P * P, (int)P, 0.0, s->wb + (size_t)g * P, (int)qw);
                const double *DM = s->wb + (size_t)g * P;
                for (size_t r = 0; r < nr; r++)
                    for (size_t j = 0; j < P; j++) e += D[r * qw + j] * DM[r * qw + j];
            }
            s->qkm_err[(size_t)c * s->nkv + g] += e;
        }
    }
}

static int on_z(void *ctx, int layer, const float *z, size_t rows)
{
    hook_ctx *h = ctx;
    a3_seq *s = h->s;
    int qw = s->nh * s->hd;
    if (h->phase != PH_OV && h->phase != PH_QKM) return 0;
    if (!h->hat) copy_rows(s->cz, z, rows, qw);
    else if (h->phase == PH_QKM) acc_qkm(s, z, rows);
    else {
        acc_cross(s, z, NULL, rows, qw, s->nh, 1, s->cyy);
        acc_cross(s, z, s->cz, rows, qw, s->nh, 1, s->cyz);
        if (s->cyd) acc_drift(s, z, rows);
        if (s->orefit) acc_orefit(s, z, rows);
    }
    return HOOK_STOP;
}

static int on_u(void *ctx, int layer, const float *u, size_t rows)
{
    hook_ctx *h = ctx;
    a3_seq *s = h->s;
    if (h->phase != PH_MLP) return 0;
    if (!h->hat) {
        copy_rows(s->cu, u, rows, s->ff);
        copy_rows(s->ch, s->x + s->cur_off, rows, s->d); /* runs in place: x holds h now */
        return 0; /* the original stream runs on: this pass advances X */
    }
    acc_mlp(s, u, s->buf, rows); /* runs on buf: it holds h^ now */
    return HOOK_STOP;
}

/* One pass of a phase over all chunks: the original stream (a copy of the
 * chunk, or X itself in PH_MLP, which advances it), then the reduced one
 * (a copy, or X^ itself in PH_ADVANCE). */
static int pass(a3_seq *s, int l, int phase, a3_err *err)
{
    size_t d = (size_t)s->d, L = (size_t)s->L;
    a3_layer_hooks ho = {.on_qkv = on_qkv, .on_z = on_z, .on_u = on_u}, hh = ho;
    hook_ctx co = {s, phase, 0}, ch = {s, phase, 1};
    ho.ctx = &co, hh.ctx = &ch;
    int rc = A3_OK;
    for (int b = 0; rc == A3_OK && b < s->nw; b += s->chunk_seqs) {
        int nb = s->nw - b < s->chunk_seqs ? s->nw - b : s->chunk_seqs;
        size_t rows = (size_t)nb * L, off = (size_t)b * L * d;
        s->cur_off = off;
        if (phase == PH_ADVANCE)
            rc = a3_model_run_layer_mats(s->m, l, &s->pad, s->xh + off, nb, s->L, rows, NULL, err);
        else {
            float *xo = s->x + off;
            if (phase != PH_MLP) memcpy(s->buf, xo, rows * d * sizeof(float)), xo = s->buf;
            rc = a3_model_run_layer_mats(s->m, l, &s->orig, xo, nb, s->L, rows, &ho, err);
            if (rc == HOOK_STOP || rc == A3_OK) {
                memcpy(s->buf, s->xh + off, rows * d * sizeof(float));
                rc = a3_model_run_layer_mats(s->m, l, phase == PH_QK ? &s->orig : &s->pad, s->buf, nb, s->L, rows,
                                             &hh, err);
            }
            if (rc == HOOK_STOP) rc = A3_OK;
        }
        s->done += (int64_t)rows;
        if (rc == A3_OK && s->progress && s->progress(s->pctx, s->stage, s->done, s->total))
            rc = a3_err_set(err, A3_ECANCELED, "sequential: cancelled in layer %d", l);
    }
    return rc;
}

/* ---- solves -------------------------------------------------------------- */

/* Mean score error of the QK group with dims `in` kept (in[a] != 0):
 * sum_ab Gq Gk - 2 sum_{b kept} sum_a Xq[b][a] Xk[b][a]
 * + sum_{a,b kept} Gq^ Gk^, over N^2 (docs/SEQUENTIAL.md, QK). */
static double qk_loss(const a3_seq *s, int g, const char *in)
{
    size_t hh = (size_t)s->hd * s->hd, o = (size_t)g * hh;
    int hd = s->hd;
    double t = 0, n2 = (double)s->N * (double)s->N;
    for (int a = 0; a < hd; a++)
        for (int b = 0; b < hd; b++) {
            size_t e = o + (size_t)a * hd + b;
            t += s->gq[e] * s->gk[e];
            if (in[a]) t -= 2 * s->xq[e] * s->xk[e];
            if (in[a] && in[b]) t += s->gqh[e] * s->gkh[e];
        }
    return t / n2;
}

static int cmp_i32(const void *a, const void *b) { return *(const int32_t *)a - *(const int32_t *)b; }

/* qk_loss[g]: the proxy loss of group g's kept pairs (sorted). */
static void qk_set_loss(a3_seq *s, int l, int g)
{
    int hd = s->hd, half = hd / 2, keep = a3_plan_qk(s->p, l)[g] / 2;
    const int32_t *idx = s->idx + (size_t)g * half;
    char in[1024];
    memset(in, 0, (size_t)hd);
    for (int k = 0; k < keep; k++) in[idx[k]] = in[idx[k] + half] = 1;
    s->qk_loss[g] = qk_loss(s, g, in);
}

static int solve_qk(a3_seq *s, int l, int g, const a3_layer_f32 *w, a3_err *err)
{
    int hd = s->hd, half = hd / 2, keep = a3_plan_qk(s->p, l)[g] / 2;
    size_t o = (size_t)g * hd * hd;
    int32_t *idx = s->idx + (size_t)g * half;
    char in[1024];
    if (s->p->qk_method == A3_QK_METHOD_WEIGHT_NORM) {
        double unused;
        int rc = a3_qk_select(s->c, l, g, 2 * keep, s->p->qk_method, w, idx, &unused, err);
        if (rc) return rc;
    } else if (s->p->qk_method == A3_QK_METHOD_GREEDY_EXACT) {
        /* backward elimination on the exact sequential loss */
        memset(in, 1, (size_t)hd);
        for (int alive = half; alive > keep; alive--) {
            int best = -1;
            double bl = 0;
            for (int p = 0; p < half; p++) {
                if (!in[p]) continue;
                in[p] = in[p + half] = 0;
                double v = qk_loss(s, g, in);
                in[p] = in[p + half] = 1;
                if (best < 0 || v < bl) best = p, bl = v;
            }
            in[best] = in[best + half] = 0;
        }
        for (int p = 0, k = 0; p < half; p++)
            if (in[p]) idx[k++] = p;
    } else {
        /* diagonal score: the loss a pair removes when kept alone, with
         * only the diagonal terms (= Gq[a,a] Gk[a,a] when X^ = X) */
        double score[512];
        int32_t order[512];
        for (int p = 0; p < half; p++) {
            score[p] = 0;
            for (int t = 0; t < 2; t++) {
                size_t a = o + (size_t)(p + t * half) * (hd + 1);
                score[p] += 2 * s->xq[a] * s->xk[a] - s->gqh[a] * s->gkh[a];
            }
        }
        if (a3_order_desc(score, half, order, NULL)) return a3_err_set(err, A3_ENOMEM, "out of memory");
        memcpy(idx, order, (size_t)keep * sizeof *idx);
    }
    qsort(idx, (size_t)keep, sizeof *idx, cmp_i32);
    qk_set_loss(s, l, g);
    return A3_OK;
}

static int solve_ov(a3_seq *s, int l, int g, const a3_layer_f32 *w, double *cyy, double *cyz, a3_err *err)
{
    int hd = s->hd, per = s->per, r = a3_plan_ov(s->p, l)[g];
    size_t hh = (size_t)hd * hd;
    float *nv = s->sv + (size_t)g * hd * s->d, *nb = w->bv ? s->sbv + (size_t)g * hd : NULL;
    float *no = s->so + (size_t)g * per * s->d * hd;
    if (s->p->ov_method == A3_OV_METHOD_SVD)
        return a3_ov_solve(s->c, l, g, r, s->p->ov_method, w, nv, nb, no, &s->ov_loss[g], &s->ov_damp[g], err);
    memset(cyy, 0, hh * 8), memset(cyz, 0, hh * 8);
    if (s->p->ov_method == A3_OV_METHOD_A3 && per > 1) { /* the paper's Gv for GQA */
        for (size_t e = 0; e < hh; e++) cyy[e] = s->gvh[g * hh + e] / (double)s->N;
        for (int j = 0; j < per; j++)
            for (size_t e = 0; e < hh; e++) cyz[j * hh + e] = s->xv[g * hh + e] / (double)s->N;
    } else { /* C_i (MHA) or the group's summed C (a3-csum): both the auto
              * and the cross term summed over the group's heads, as the
              * one-shot a3-csum weights every head with the summed C */
        for (int j = 0; j < per; j++)
            for (size_t e = 0; e < hh; e++) {
                size_t i = (size_t)(g * per + j) * hh + e;
                cyy[e] += s->cyy[i] / (double)s->N;
                cyz[e] += s->cyz[i] / (double)s->N;
            }
        for (int j = 1; j < per; j++) memcpy(cyz + j * hh, cyz, hh * 8);
    }
    /* the drift term E[y^T (x - x^)], weighted and summed like Cyz */
    double *cd = NULL;
    if (s->cyd) { /* allocated only where it is used (a3_seq_new) */
        size_t hdd = (size_t)hd * s->d;
        if (!(cd = calloc((size_t)per * hdd, 8))) return a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", l);
        for (int j = 0; j < per; j++)
            for (int j2 = 0; j2 < per; j2++) {
                const double *src = s->cyd + (size_t)(g * per + j2) * hdd;
                for (size_t e = 0; e < hdd; e++) cd[j * hdd + e] += s->ov_drift * src[e] / (double)s->N;
            }
    }
    int rc = a3_ov_solve_stats_t(cyy, cyz, cd, l, g, r, w, nv, nb, no, &s->ov_loss[g], &s->ov_damp[g],
                                 s->ovT ? s->ovT + (size_t)g * hh : NULL, err);
    free(cd);
    return rc;
}

static int solve_mlp(a3_seq *s, int l, const a3_layer_f32 *w, a3_err *err)
{
    int width = s->p->mlp[l], ff = s->ff, d = s->d;
    if (s->p->mlp_method == A3_MLP_METHOD_WEIGHT_NORM) return a3_mlp_select(s->c, l, width, s->p->mlp_method, w, s->keep, err);
    double *score = malloc((size_t)ff * sizeof *score);
    int32_t *order = malloc((size_t)ff * sizeof *order);
    int rc = score && order ? A3_OK : a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", l);
    for (int n = 0; rc == A3_OK && n < ff; n++) {
        /* ||W_down[n,:]||^2 (2 E[u^ u] - E[u^^2]): the diagonal score, =
         * D_n ||W_down[n,:]||^2 when X^ = X */
        double dn = 0;
        for (int e = 0; e < d; e++) dn += (double)w->wd[(size_t)e * ff + n] * w->wd[(size_t)e * ff + n];
        score[n] = dn * (2 * s->xu[n] - s->duh[n]) / (double)s->N;
    }
    if (rc == A3_OK && a3_order_desc(score, ff, order, NULL)) rc = a3_err_set(err, A3_ENOMEM, "out of memory");
    if (rc == A3_OK) {
        memcpy(s->keep, order, (size_t)width * sizeof *order);
        qsort(s->keep, (size_t)width, sizeof *s->keep, cmp_i32);
    }
    free(score), free(order);
    if (rc == A3_OK && s->refit) {
        for (int i = 0; i < ff; i++) /* dsyrk filled the upper triangle */
            for (int j = 0; j < i; j++) s->ruh[(size_t)i * ff + j] = s->ruh[(size_t)j * ff + i];
        rc = a3_mlp_refit_stats(s->ruh, s->uy, ff, d, s->keep, width, l, s->sdown, err);
    }
    return rc;
}

/* ---- the zero-padded reduced layer ------------------------------------- */

static void pad_qk(a3_seq *s, int l, const a3_layer_f32 *w)
{
    int hd = s->hd, half = hd / 2, d = s->d;
    size_t qw = (size_t)s->nh * hd, kw = (size_t)s->nkv * hd;
    memset(s->pq, 0, qw * d * 4), memset(s->pk, 0, kw * d * 4);
    if (w->bq) memset(s->pbq, 0, qw * 4), memset(s->pbk, 0, kw * 4);
    for (int h = 0; h <= s->nh + s->nkv - 1; h++) { /* query heads, then key heads */
        int is_q = h < s->nh, head = is_q ? h : h - s->nh, g = is_q ? h / s->per : head;
        int keep = a3_plan_qk(s->p, l)[g] / 2;
        const int32_t *idx = s->idx + (size_t)g * half;
        for (int j = 0; j < keep; j++)
            for (int t = 0; t < 2; t++) {
                size_t row = (size_t)head * hd + idx[j] + t * half;
                memcpy((is_q ? s->pq : s->pk) + row * d, (is_q ? w->wq : w->wk) + row * d, (size_t)d * 4);
                if (w->bq) (is_q ? s->pbq : s->pbk)[row] = (is_q ? w->bq : w->bk)[row];
            }
    }
    s->pad.wq = s->pq, s->pad.wk = s->pk;
    s->pad.bq = w->bq ? s->pbq : NULL, s->pad.bk = w->bk ? s->pbk : NULL;
}

/* ---- measured QK (docs/SEQUENTIAL.md, "Measured QK") ------------------- */

/* C(n, k), or cap + 1 once it exceeds cap (the partial products
 * C(n-k+i, i) grow with i, so the first one past cap decides). */
static int binom_capped(int n, int k, int cap)
{
    int64_t b = 1;
    for (int i = 1; i <= k; i++)
        if ((b = b * (n - k + i) / i) > cap) return cap + 1;
    return (int)b;
}

/* The candidates of each group of layer l into n (may be NULL): all
 * C(hd/2, kept pairs) subsets when measured, 1 (the proxy's choice) when
 * not: option off, weight-norm (one-shot, no activations), nothing to
 * choose (no pair or every pair kept) or more than A3_SEQ_QKM_CAP
 * subsets. Returns the most over the groups, 0 when no group is
 * measured: the number of extra partial passes of the reduced stream. */
static int qkm_layer(const a3_seq *s, int l, int *n)
{
    int half = s->hd / 2, most = 0;
    for (int g = 0; g < s->nkv; g++) {
        int c = 1;
        if (s->qkm && s->p->qk_method != A3_QK_METHOD_WEIGHT_NORM)
            c = binom_capped(half, a3_plan_qk(s->p, l)[g] / 2, A3_SEQ_QKM_CAP);
        if (c > A3_SEQ_QKM_CAP) c = 1;
        if (n) n[g] = c;
        if (c > most) most = c;
    }
    return most > 1 ? most : 0;
}

/* The first n k-subsets of 0..half-1 in lexicographic order (ascending
 * within each), rows of stride half. */
static void qkm_enumerate(int half, int k, int n, int32_t *out)
{
    int32_t c[512];
    for (int j = 0; j < k; j++) c[j] = j;
    for (int i = 0; i < n; i++) {
        memcpy(out + (size_t)i * half, c, (size_t)k * sizeof *c);
        int j = k - 1;
        while (j >= 0 && c[j] == half - k + j) j--;
        if (j < 0) break;
        c[j]++;
        for (int t = j + 1; t < k; t++) c[t] = c[t - 1] + 1;
    }
}

/* The error's weight of each group, (per*hd)^2: W_o,g^T W_o,g (the
 * group's o columns, ZO_GROUP), its diagonal blocks (one per head,
 * ZO_HEAD). */
static int qkm_weights(a3_seq *s, int l, const a3_layer_f32 *w, a3_err *err)
{
    size_t d = (size_t)s->d, hd = (size_t)s->hd, P = (size_t)s->per * hd, qw = (size_t)s->nh * hd;
    double *wg = a3_malloc_array(d, P * 8);
    if (!wg) return a3_err_set(err, A3_ENOMEM, "layer %d: out of memory for the measured QK", l);
    for (int g = 0; g < s->nkv; g++) {
        double *M = s->qkm_w + (size_t)g * P * P;
        for (size_t e = 0; e < d; e++)
            for (size_t a = 0; a < P; a++) wg[e * P + a] = w->wo[e * qw + (size_t)g * P + a];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)P, (int)d, 1.0, wg, (int)P, 0.0, M, (int)P);
        for (size_t a = 0; a < P; a++)
            for (size_t b = 0; b < a; b++) M[a * P + b] = M[b * P + a];
        if (s->qkm == A3_SEQ_QKM_ZO_HEAD)
            for (size_t a = 0; a < P; a++)
                for (size_t b = 0; b < P; b++)
                    if (a / hd != b / hd) M[a * P + b] = 0;
    }
    free(wg);
    return A3_OK;
}

/* Re-choose the kept pairs of every measured group (s->idx holds the
 * proxy's choice): per chunk, the original layer on X up to z once, then
 * for each candidate index c the layer with every measured group's q/k
 * rows cut to its c-th subset (v, o original) on X^ up to z; each group
 * keeps its subset of least summed error (acc_qkm). Groups with fewer
 * candidates than c run their last one, unscored. */
static int qk_measure(a3_seq *s, int l, const a3_layer_f32 *w, a3_err *err)
{
    int nc = qkm_layer(s, l, s->qkm_n), half = s->hd / 2, rc = A3_OK;
    if (!nc) return A3_OK;
    for (int g = 0; g < s->nkv; g++)
        if (s->qkm_n[g] > 1)
            qkm_enumerate(half, a3_plan_qk(s->p, l)[g] / 2, s->qkm_n[g],
                          s->qkm_cand + (size_t)g * A3_SEQ_QKM_CAP * half);
    memset(s->qkm_err, 0, (size_t)A3_SEQ_QKM_CAP * s->nkv * 8);
    if (s->qkm == A3_SEQ_QKM_OV) {
        size_t P = (size_t)s->per * s->hd, qw = (size_t)s->nh * s->hd;
        for (int g = 0; g < s->nkv; g++)
            for (size_t a = 0; a < P; a++)
                for (size_t e = 0; e < (size_t)s->d; e++)
                    s->qkm_wo[((size_t)g * P + a) * s->d + e] = w->wo[e * qw + (size_t)g * P + a];
    } else if (s->qkm != A3_SEQ_QKM_Z && (rc = qkm_weights(s, l, w, err))) return rc;
    size_t d = (size_t)s->d, L = (size_t)s->L;
    a3_layer_hooks ho = {.on_z = on_z}, hh = ho;
    hook_ctx co = {s, PH_QKM, 0}, ch = {s, PH_QKM, 1};
    ho.ctx = &co, hh.ctx = &ch;
    /* Mode OV holds each candidate's statistics until the end of the
     * windows, at most qkm_batch candidates at a time: each further batch
     * costs one more run of the original layer per chunk. */
    int batch = s->qkm == A3_SEQ_QKM_OV ? s->qkm_batch : nc;
    for (int c0 = 0; rc == A3_OK && c0 < nc; c0 += batch) {
        int c1 = nc - c0 < batch ? nc : c0 + batch;
        s->qkm_c0 = c0;
        if (s->qkm == A3_SEQ_QKM_OV) memset(s->qkm_st, 0, (size_t)(c1 - c0) * s->nkv * qkm_st_size(s) * 8);
        for (int b = 0; rc == A3_OK && b < s->qkm_nw; b += s->chunk_seqs) {
            int nb = s->qkm_nw - b < s->chunk_seqs ? s->qkm_nw - b : s->chunk_seqs;
            size_t rows = (size_t)nb * L, off = (size_t)b * L * d;
            s->cur_off = off;
            memcpy(s->buf, s->x + off, rows * d * sizeof(float));
            rc = a3_model_run_layer_mats(s->m, l, &s->orig, s->buf, nb, s->L, rows, &ho, err);
            for (int c = c0; (rc == HOOK_STOP || rc == A3_OK) && c < c1; c++) {
                for (int g = 0; g < s->nkv; g++) {
                    int n = s->qkm_n[g], k = a3_plan_qk(s->p, l)[g] / 2;
                    if (n > 1)
                        memcpy(s->idx + (size_t)g * half,
                               s->qkm_cand + ((size_t)g * A3_SEQ_QKM_CAP + (size_t)(c < n ? c : n - 1)) * half,
                               (size_t)k * sizeof *s->idx);
                }
                pad_qk(s, l, w); /* v, o: still the original's (s->pad = s->orig before OV) */
                s->qkm_c = c;
                memcpy(s->buf, s->xh + off, rows * d * sizeof(float));
                rc = a3_model_run_layer_mats(s->m, l, &s->pad, s->buf, nb, s->L, rows, &hh, err);
                s->done += (int64_t)rows;
            }
            if (rc == HOOK_STOP) rc = A3_OK;
            if (rc == A3_OK && s->progress && s->progress(s->pctx, s->stage, s->done, s->total))
                rc = a3_err_set(err, A3_ECANCELED, "sequential: cancelled in layer %d", l);
        }
        for (int g = 0; rc == A3_OK && s->qkm == A3_SEQ_QKM_OV && g < s->nkv; g++)
            for (int c = c0; rc == A3_OK && c < c1 && c < s->qkm_n[g] && s->qkm_n[g] > 1; c++)
                rc = qkm_ov_score(s, l, g, c, w, &s->qkm_err[(size_t)c * s->nkv + g], err);
    }
    for (int g = 0; rc == A3_OK && g < s->nkv; g++) {
        int n = s->qkm_n[g], best = 0;
        if (n <= 1) continue;
        for (int c = 1; c < n; c++)
            if (s->qkm_err[(size_t)c * s->nkv + g] < s->qkm_err[(size_t)best * s->nkv + g]) best = c;
        memcpy(s->idx + (size_t)g * half, s->qkm_cand + ((size_t)g * A3_SEQ_QKM_CAP + best) * half,
               (size_t)(a3_plan_qk(s->p, l)[g] / 2) * sizeof *s->idx);
        qk_set_loss(s, l, g);
    }
    return rc;
}

static void pad_ov(a3_seq *s, int l, const a3_layer_f32 *w)
{
    int hd = s->hd, d = s->d, per = s->per, qw = s->nh * hd;
    memset(s->pv, 0, (size_t)s->nkv * hd * d * 4), memset(s->po, 0, (size_t)d * qw * 4);
    if (w->bv) memset(s->pbv, 0, (size_t)s->nkv * hd * 4);
    for (int g = 0; g < s->nkv; g++) {
        int r = a3_plan_ov(s->p, l)[g];
        memcpy(s->pv + (size_t)g * hd * d, s->sv + (size_t)g * hd * d, (size_t)r * d * 4);
        if (w->bv) memcpy(s->pbv + (size_t)g * hd, s->sbv + (size_t)g * hd, (size_t)r * 4);
        const float *no = s->so + (size_t)g * per * d * hd;
        for (int j = 0; j < per; j++)
            for (int e = 0; e < d; e++)
                memcpy(s->po + (size_t)e * qw + (size_t)(g * per + j) * hd, no + ((size_t)j * d + e) * r, (size_t)r * 4);
    }
    s->pad.wv = s->pv, s->pad.wo = s->po, s->pad.bv = w->bv ? s->pbv : NULL;
}

/* The kept attention outputs' statistics for the v maps in s->ovT: with
 * P (qw, K) the block map of the full z^ to the kept columns (head h's
 * column c is z^_h T_g(h)[:, c]), GK = P^T Gz P (K, K) and BK = P^T Bz
 * (K, d); tmp: hd x hd doubles. */
static void orefit_stats(a3_seq *s, int l, double *GK, double *BK, double *tmp)
{
    int hd = s->hd, per = s->per, qw = s->nh * hd, K = s->nkc;
    size_t hh = (size_t)hd * hd;
    for (int h = 0; h < s->nh; h++) {
        int r = a3_plan_ov(s->p, l)[h / per];
        const double *T = s->ovT + (size_t)(h / per) * hh;
        if (!r) continue;
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, s->d, hd, 1.0, T, r, s->uy + (size_t)h * hd * s->d,
                    s->d, 0.0, BK + (size_t)s->koff[h] * s->d, s->d);
        for (int h2 = 0; h2 < s->nh; h2++) {
            int r2 = a3_plan_ov(s->p, l)[h2 / per];
            if (!r2) continue;
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, hd, r2, hd, 1.0, s->ruh + (size_t)h * hd * qw + h2 * hd,
                        qw, s->ovT + (size_t)(h2 / per) * hh, r2, 0.0, tmp, r2);
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, r2, hd, 1.0, T, r, tmp, r2, 0.0,
                        GK + (size_t)s->koff[h] * K + s->koff[h2], K);
        }
    }
}

/* The joint OV refit (docs/SEQUENTIAL.md, "OV refit"): with every group's
 * v map T from the per-head solve in place, every kept o_proj column is
 * solved at once, min E||z^_K W~^T - (z W_o^T + x - x^)||^2 with z^_K =
 * z^ P, from PH_OV's statistics (orefit_stats; no pass of its own). The
 * result replaces the o columns of the solution (what is written) and of
 * the padded layer (what advances X^). */
static int ov_refit(a3_seq *s, int l, const a3_layer_f32 *w, a3_err *err)
{
    int hd = s->hd, d = s->d, per = s->per, qw = s->nh * hd, K = 0;
    for (int h = 0; h < s->nh; h++) s->koff[h] = K, K += a3_plan_ov(s->p, l)[h / per];
    s->nkc = K;
    if (K == 0) return A3_OK;
    for (int i = 0; i < qw; i++) /* dsyrk filled the upper triangle */
        for (int j = 0; j < i; j++) s->ruh[(size_t)i * qw + j] = s->ruh[(size_t)j * qw + i];
    double *GK = malloc((size_t)K * K * 8), *S = malloc((size_t)K * d * 8), *tmp = malloc((size_t)hd * hd * 8);
    int rc = GK && S && tmp ? A3_OK : a3_err_set(err, A3_ENOMEM, "layer %d: out of memory for the OV refit", l);
    if (rc == A3_OK) {
        orefit_stats(s, l, GK, S, tmp);
        int info = a3_solve_spd_damped(GK, S, K, d, a3_mlp_refit_damping(GK, K));
        if (info < 0) rc = a3_err_set(err, A3_ENOMEM, "layer %d: out of memory for the OV refit", l);
        else if (info)
            rc = a3_err_set(err, A3_EFORMAT, "layer %d: OV refit: the kept attention outputs' Gram matrix is not positive definite", l);
    }
    for (int h = 0; rc == A3_OK && h < s->nh; h++) { /* S rows koff[h]..: head h's kept columns */
        int g = h / per, r = a3_plan_ov(s->p, l)[g];
        float *so = s->so + (size_t)g * per * d * hd + (size_t)(h % per) * d * r;
        for (int c = 0; c < r; c++)
            for (int e = 0; e < d; e++) so[(size_t)e * r + c] = (float)S[(size_t)(s->koff[h] + c) * d + e];
    }
    if (rc == A3_OK) pad_ov(s, l, w);
    free(GK), free(S), free(tmp);
    return rc;
}

static void pad_mlp(a3_seq *s, int l, const a3_layer_f32 *w)
{
    int d = s->d, ff = s->ff, width = s->p->mlp[l];
    memset(s->pg, 0, (size_t)ff * d * 4), memset(s->pu, 0, (size_t)ff * d * 4), memset(s->pd, 0, (size_t)d * ff * 4);
    for (int j = 0; j < width; j++) {
        int n = s->keep[j];
        memcpy(s->pg + (size_t)n * d, w->wg + (size_t)n * d, (size_t)d * 4);
        memcpy(s->pu + (size_t)n * d, w->wu + (size_t)n * d, (size_t)d * 4);
        for (int e = 0; e < d; e++)
            s->pd[(size_t)e * ff + n] = s->refit ? s->sdown[(size_t)e * width + j] : w->wd[(size_t)e * ff + n];
    }
    s->pad.wg = s->pg, s->pad.wu = s->pu, s->pad.wd = s->pd;
}

/* ---- the solver interface ---------------------------------------------- */

static int begin_layer(void *ctx, int l, const a3_layer_f32 *w, a3_err *err)
{
    a3_seq *s = ctx;
    if (l != s->next_layer)
        return a3_err_set(err, A3_EINVAL, "sequential: layer %d solved out of order (expected %d)", l, s->next_layer);
    snprintf(s->stage, sizeof s->stage, "layer %d/%d", l + 1, s->p->dims.n_layers);
    s->orig = (a3_layer_mats){w->wq, w->wk, w->wv, w->wo, w->bq, w->bk, w->bv, w->wg, w->wu, w->wd};
    s->pad = s->orig;
    stats_zero(s);
    size_t hh = (size_t)s->hd * s->hd;
    double *cyy = malloc(hh * 8), *cyz = malloc(hh * 8 * (size_t)s->per);
    int rc = cyy && cyz ? A3_OK : a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", l);
    if (rc == A3_OK) rc = pass(s, l, PH_QK, err);
    for (int g = 0; rc == A3_OK && g < s->nkv; g++) rc = solve_qk(s, l, g, w, err);
    if (rc == A3_OK && s->qkm) rc = qk_measure(s, l, w, err);
    if (rc == A3_OK && s->orefit) { /* the OV refit's statistics come with PH_OV (acc_orefit) */
        size_t qw = (size_t)s->nh * s->hd;
        for (size_t i = 0; i < (size_t)s->d * qw; i++) s->wdd[i] = w->wo[i];
        memset(s->ruh, 0, qw * qw * 8), memset(s->uy, 0, qw * s->d * 8);
    }
    if (rc == A3_OK) pad_qk(s, l, w), rc = pass(s, l, PH_OV, err);
    for (int g = 0; rc == A3_OK && g < s->nkv; g++) rc = solve_ov(s, l, g, w, cyy, cyz, err);
    if (rc == A3_OK) pad_ov(s, l, w);
    if (rc == A3_OK && s->orefit) rc = ov_refit(s, l, w, err);
    if (rc == A3_OK && s->refit) { /* after the OV refit, which used these buffers */
        memset(s->ruh, 0, (size_t)s->ff * s->ff * 8), memset(s->uy, 0, (size_t)s->ff * s->d * 8);
        for (size_t i = 0; i < (size_t)s->d * s->ff; i++) s->wdd[i] = w->wd[i];
    }
    if (rc == A3_OK) rc = pass(s, l, PH_MLP, err);
    if (rc == A3_OK) rc = solve_mlp(s, l, w, err);
    if (rc == A3_OK) pad_mlp(s, l, w), rc = pass(s, l, PH_ADVANCE, err);
    free(cyy), free(cyz);
    if (rc == A3_OK) s->next_layer = l + 1;
    return rc;
}

static int check_current(const a3_seq *s, int l, a3_err *err)
{
    if (l + 1 != s->next_layer)
        return a3_err_set(err, A3_EINVAL, "sequential: layer %d was not solved (call begin_layer first)", l);
    return A3_OK;
}

static int get_qk(void *ctx, int l, int g, int rank, int32_t *idx, double *loss, a3_err *err)
{
    a3_seq *s = ctx;
    int rc = check_current(s, l, err);
    if (rc) return rc;
    if (rank != a3_plan_qk(s->p, l)[g]) return a3_err_set(err, A3_EINVAL, "sequential: layer %d: qk[%d]: rank differs from the plan", l, g);
    memcpy(idx, s->idx + (size_t)g * (s->hd / 2), (size_t)(rank / 2) * sizeof *idx);
    *loss = s->qk_loss[g];
    return A3_OK;
}

static int get_ov(void *ctx, int l, int g, int rank, float *new_v, float *new_bv, float *new_o, double *loss,
                  double *damping, a3_err *err)
{
    a3_seq *s = ctx;
    int rc = check_current(s, l, err);
    if (rc) return rc;
    if (rank != a3_plan_ov(s->p, l)[g]) return a3_err_set(err, A3_EINVAL, "sequential: layer %d: ov[%d]: rank differs from the plan", l, g);
    memcpy(new_v, s->sv + (size_t)g * s->hd * s->d, (size_t)rank * s->d * 4);
    if (new_bv) memcpy(new_bv, s->sbv + (size_t)g * s->hd, (size_t)rank * 4);
    memcpy(new_o, s->so + (size_t)g * s->per * s->d * s->hd, (size_t)s->per * s->d * rank * 4);
    *loss = s->ov_loss[g], *damping = s->ov_damp[g];
    return A3_OK;
}

static int get_mlp(void *ctx, int l, int width, int32_t *keep, float *new_down, a3_err *err)
{
    a3_seq *s = ctx;
    int rc = check_current(s, l, err);
    if (rc) return rc;
    if (width != s->p->mlp[l]) return a3_err_set(err, A3_EINVAL, "sequential: layer %d: mlp width differs from the plan", l);
    if (new_down && !s->refit) return a3_err_set(err, A3_EINVAL, "sequential: layer %d: no refit was computed", l);
    memcpy(keep, s->keep, (size_t)width * sizeof *keep);
    if (new_down) memcpy(new_down, s->sdown, (size_t)s->d * width * 4);
    return A3_OK;
}

/* ---- lifetime ------------------------------------------------------------ */

static size_t chunk_seqs(size_t chunk_rows, int seqlen, int nw)
{
    size_t c = (chunk_rows ? chunk_rows : 2048) / (size_t)seqlen;
    if (c < 1) c = 1;
    if (c > (size_t)nw) c = (size_t)nw;
    return c;
}

size_t a3_seq_memory_estimate(const a3_config *c, int n_windows, int seqlen, size_t chunk_rows, int refit)
{
    size_t N = (size_t)n_windows * seqlen, d = (size_t)c->d, hd = (size_t)c->head_dim, ff = (size_t)c->d_ff;
    size_t qw = (size_t)c->n_heads * hd, kw = (size_t)c->n_kv_heads * hd, hh = hd * hd;
    size_t rows = chunk_seqs(chunk_rows, seqlen, n_windows) * (size_t)seqlen;
    size_t wmax = qw > ff ? qw : ff;
    size_t streams = 2 * N * d * 4;
    size_t chunk = rows * (d + 2 * qw + 2 * kw + ff) * 4;                 /* copy + captures */
    size_t fwd = rows * (d + 2 * qw + 2 * kw + 2 * ff) * 4 + 64 * (size_t)seqlen * 4 * 2; /* forward scratch */
    size_t layer = (2 * qw * d + 2 * kw * d + 3 * ff * d + 2 * qw + 2 * kw) * 4; /* padded layer */
    size_t sol = (kw * d + kw + (size_t)c->n_heads * d * hd + ff * d) * 4 + ff * 8;
    size_t stats = (8 * (size_t)c->n_kv_heads + 2 * (size_t)c->n_heads) * hh * 8 + 3 * ff * 8;
    size_t widen = (2 * WIDEN_ROWS * wmax + WIDEN_ROWS * d) * 8;
    /* with the refit: its statistics (at most: F = max(ff, nh*hd), the
     * size the OV refit needs when on), and (at most; not for svd or a3
     * with GQA) the OV drift term the CLI then uses */
    size_t fr = qw > ff ? qw : ff;
    if (refit) stats += (fr * fr + 2 * fr * d) * 8 + (size_t)c->n_heads * hd * d * 8 + 2 * qw * 4;
    /* the OV refit's v maps (nkv x hd^2); its solve's (K, K) system and
     * (K, d) right side with their copies (K <= nh*hd) are freed before
     * the MLP phase, whose statistics above are at least as large when
     * d_ff >= nh*hd, as at every LLaMA shape */
    if (refit) stats += (size_t)c->n_kv_heads * hh * 8;
    /* the measured QK of a3_seq_opts_default (mode OV): each candidate's
     * two (per*hd)^2 sums per group, W_o,g^T (per*hd x d per group), the
     * candidates with their errors */
    size_t P = qw / (size_t)c->n_kv_heads, cst = (size_t)c->n_kv_heads * A3_SEQ_QKM_CAP * 2 * P * P * 8;
    size_t per_c = (size_t)c->n_kv_heads * 2 * P * P * 8; /* one candidate, a3_seq_new's batch */
    if (cst > A3_SEQ_QKM_OV_BYTES) cst = per_c > A3_SEQ_QKM_OV_BYTES ? per_c : A3_SEQ_QKM_OV_BYTES / per_c * per_c;
    stats += cst + qw * d * 8 + (size_t)c->n_kv_heads * A3_SEQ_QKM_CAP * (hd / 2 * 4 + 8);
    return streams + chunk + fwd + layer + sol + stats + widen;
}

void a3_seq_free(a3_seq *s)
{
    if (!s) return;
    void *b[] = {s->record, s->x, s->xh, s->buf, s->cq, s->ck, s->cv, s->cz, s->cu, s->ch, s->wa, s->wb, s->wy,
                 s->gq, s->gqh, s->xq, s->gk, s->gkh, s->xk, s->gvh, s->xv, s->cyy, s->cyz, s->cyd, s->du, s->duh,
                 s->xu, s->ruh, s->uy, s->wdd, s->idx, s->qk_loss, s->ov_loss, s->ov_damp, s->sv, s->sbv,
                 s->so, s->keep, s->sdown, s->pq, s->pk, s->pv, s->po, s->pbq, s->pbk, s->pbv, s->pg,
                 s->pu, s->pd, s->koff, s->ovT, s->qkm_n, s->qkm_cand, s->qkm_err, s->qkm_w, s->qkm_wo, s->qkm_st};
    for (size_t i = 0; i < sizeof b / sizeof *b; i++) free(b[i]);
    free(s);
}

static void *arr(size_t n, size_t size, int *ok)
{
    void *p = a3_malloc_array(n ? n : 1, size);
    if (!p) *ok = 0;
    return p;
}

int a3_seq_new(a3_model *m, const a3_plan *p, const a3_cache *c, const int32_t *windows, int n_windows,
               int seqlen, const a3_seq_opts *o, a3_seq **out, a3_err *err)
{
    const a3_config *k = a3_model_config(m);
    *out = NULL;
    if (k->compressed)
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: sequential reduction needs the original model, not an A3-compressed one", a3_model_dir(m));
    if (n_windows <= 0 || seqlen <= 0 || seqlen > k->max_seq)
        return a3_err_set(err, A3_EINVAL, "sequential: need at least one window of 1..%d tokens", k->max_seq);
    if (p->dims.d != k->d || p->dims.n_layers != k->n_layers || p->dims.n_heads != k->n_heads ||
        p->dims.n_kv_heads != k->n_kv_heads || p->dims.head_dim != k->head_dim || p->dims.d_ff != k->d_ff)
        return a3_err_set(err, A3_EMISMATCH, "%s: plan dimensions do not match the model", p->source);
    if (k->head_dim > 1024)
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: head_dim %d: the sequential QK solve handles at most 1024", a3_model_dir(m), k->head_dim);
    a3_seq *s = calloc(1, sizeof *s);
    if (!s) return a3_err_set(err, A3_ENOMEM, "sequential: out of memory");
    s->m = m, s->p = p, s->c = c;
    s->progress = o ? o->progress : NULL, s->pctx = o ? o->ctx : NULL;
    s->d = k->d, s->nh = k->n_heads, s->nkv = k->n_kv_heads, s->hd = k->head_dim, s->ff = k->d_ff;
    s->per = s->nh / s->nkv, s->nw = n_windows, s->L = seqlen, s->N = (size_t)n_windows * seqlen;
    s->chunk_seqs = (int)chunk_seqs(o ? o->chunk_rows : 0, seqlen, n_windows);
    s->refit = p->mlp_method == A3_MLP_METHOD_A3_REFIT;
    s->drift = o ? o->target_layer_output : 0;
    /* only with the refit, whose target carries what the heads' drift
     * fit over- or under-shoots (docs/SEQUENTIAL.md, OV drift), and only
     * where the OV solve has a cross term to add it to: not svd (one-shot)
     * nor a3 with GQA (the paper's Gv). Zero here means the drift
     * statistics are neither allocated nor accumulated. */
    int ov_cross = p->ov_method != A3_OV_METHOD_SVD && !(p->ov_method == A3_OV_METHOD_A3 && s->per > 1);
    s->ov_drift = o && s->refit && ov_cross ? o->ov_drift : 0;
    /* the OV refit likewise only with the MLP refit (it leaves the rest of
     * the drift to it), and not for svd (one-shot, no activations) */
    s->orefit = o && o->ov_refit && s->refit && p->ov_method != A3_OV_METHOD_SVD;
    s->total = (int64_t)k->n_layers * 4 * (int64_t)s->N;
    if (o && (o->qk_measured < 0 || o->qk_measured >= A3_SEQ_QKM_COUNT)) {
        a3_seq_free(s);
        return a3_err_set(err, A3_EINVAL, "sequential: qk_measured %d is not an A3_SEQ_QKM_* mode", o->qk_measured);
    }
    s->qkm = o ? o->qk_measured : A3_SEQ_QKM_OFF;
    s->qkm_nw = o && o->qk_measured_windows > 0 && o->qk_measured_windows < n_windows ? o->qk_measured_windows : n_windows;
    int measured = 0;
    for (int l = 0; l < k->n_layers; l++) {
        int nc = qkm_layer(s, l, NULL);
        s->total += (int64_t)nc * s->qkm_nw * (int64_t)seqlen, measured |= nc > 0;
    }
    if (!measured) s->qkm = A3_SEQ_QKM_OFF; /* e.g. head_dim 128: allocate nothing for it */
    size_t d = (size_t)s->d, hd = (size_t)s->hd, ff = (size_t)s->ff, qw = (size_t)s->nh * hd, kw = (size_t)s->nkv * hd;
    size_t hh = hd * hd, rows = (size_t)s->chunk_seqs * seqlen, wmax = qw > ff ? qw : ff;
    int ok = 1;
    s->record = strdup(o && o->record_json ? o->record_json : "{}");
    if (!s->record) ok = 0;
    s->x = arr(s->N, d * 4, &ok), s->xh = arr(s->N, d * 4, &ok), s->buf = arr(rows, d * 4, &ok);
    s->cq = arr(rows, qw * 4, &ok), s->ck = arr(rows, kw * 4, &ok), s->cv = arr(rows, kw * 4, &ok);
    s->cz = arr(rows, qw * 4, &ok), s->cu = arr(rows, ff * 4, &ok), s->ch = arr(rows, d * 4, &ok);
    s->wa = arr(WIDEN_ROWS, wmax * 8, &ok), s->wb = arr(WIDEN_ROWS, wmax * 8, &ok), s->wy = arr(WIDEN_ROWS, d * 8, &ok);
    double **g[] = {&s->gq, &s->gqh, &s->xq, &s->gk, &s->gkh, &s->xk, &s->gvh, &s->xv};
    for (int i = 0; i < 8; i++) *g[i] = arr((size_t)s->nkv, hh * 8, &ok);
    s->cyy = arr((size_t)s->nh, hh * 8, &ok), s->cyz = arr((size_t)s->nh, hh * 8, &ok);
    s->du = arr(ff, 8, &ok), s->duh = arr(ff, 8, &ok), s->xu = arr(ff, 8, &ok);
    if (s->ov_drift != 0) s->cyd = arr((size_t)s->nh, hd * d * 8, &ok);
    size_t fr = s->orefit && qw > ff ? qw : ff; /* the OV refit reuses the MLP refit's buffers */
    if (s->refit) s->ruh = arr(fr, fr * 8, &ok), s->uy = arr(fr, d * 8, &ok), s->wdd = arr(d, fr * 8, &ok);
    if (s->orefit) s->koff = arr((size_t)s->nh, 4, &ok), s->ovT = arr((size_t)s->nkv, hh * 8, &ok);
    s->idx = arr((size_t)s->nkv, hd / 2 * 4, &ok);
    if (s->qkm) {
        s->qkm_n = arr((size_t)s->nkv, sizeof *s->qkm_n, &ok);
        s->qkm_cand = arr((size_t)s->nkv * A3_SEQ_QKM_CAP, hd / 2 * 4, &ok);
        s->qkm_err = arr((size_t)s->nkv * A3_SEQ_QKM_CAP, 8, &ok);
        if (s->qkm == A3_SEQ_QKM_ZO_HEAD || s->qkm == A3_SEQ_QKM_ZO_GROUP)
            s->qkm_w = arr((size_t)s->nkv * s->per * hd, (size_t)s->per * hd * 8, &ok);
        if (s->qkm == A3_SEQ_QKM_OV) {
            size_t per_c = (size_t)s->nkv * qkm_st_size(s) * 8;
            size_t b = (o->qk_measured_bytes ? o->qk_measured_bytes : A3_SEQ_QKM_OV_BYTES) / per_c;
            s->qkm_batch = b < 1 ? 1 : b > A3_SEQ_QKM_CAP ? A3_SEQ_QKM_CAP : (int)b;
            s->qkm_wo = arr((size_t)s->nkv * s->per * hd, d * 8, &ok);
            s->qkm_st = arr((size_t)s->qkm_batch * s->nkv, qkm_st_size(s) * 8, &ok);
        }
    }
    s->qk_loss = arr((size_t)s->nkv, 8, &ok), s->ov_loss = arr((size_t)s->nkv, 8, &ok), s->ov_damp = arr((size_t)s->nkv, 8, &ok);
    s->sv = arr(kw, d * 4, &ok), s->sbv = arr(kw, 4, &ok), s->so = arr(qw, d * 4, &ok);
    s->keep = arr(ff, 4, &ok), s->sdown = arr(d, ff * 4, &ok);
    s->pq = arr(qw, d * 4, &ok), s->pk = arr(kw, d * 4, &ok), s->pv = arr(kw, d * 4, &ok), s->po = arr(d, qw * 4, &ok);
    s->pbq = arr(qw, 4, &ok), s->pbk = arr(kw, 4, &ok), s->pbv = arr(kw, 4, &ok);
    s->pg = arr(ff, d * 4, &ok), s->pu = arr(ff, d * 4, &ok), s->pd = arr(d, ff * 4, &ok);
    int rc = ok ? A3_OK : a3_err_set(err, A3_ENOMEM, "sequential: out of memory for %zu tokens (about %.2f GiB)", s->N,
                                     (double)a3_seq_memory_estimate(k, n_windows, seqlen, rows, s->refit) / 1073741824.0);
    if (rc == A3_OK) rc = a3_model_embed(m, windows, s->N, s->x, err);
    if (rc) {
        a3_seq_free(s);
        return rc;
    }
    memcpy(s->xh, s->x, s->N * d * 4);
    s->solver = (a3_layer_solver){.ctx = s, .begin_layer = begin_layer, .qk = get_qk, .ov = get_ov, .mlp = get_mlp,
                                  .record_key = "sequential", .record_json = s->record};
    *out = s;
    return A3_OK;
}

/* What the output config records about a sequential run. */
static char *seq_record(const a3_plan_seq *q, int nw, int L)
{
    cJSON *r = cJSON_CreateObject(), *t = cJSON_AddArrayToObject(r, "texts");
    if (q->ids[0]) cJSON_AddItemToArray(t, cJSON_CreateString(q->ids));
    for (int i = 0; i < q->n_texts; i++) cJSON_AddItemToArray(t, cJSON_CreateString(q->texts[i]));
    cJSON_AddStringToObject(r, "tokens", q->ids[0] ? "ids" : "text");
    cJSON_AddNumberToObject(r, "samples", nw);
    cJSON_AddNumberToObject(r, "seqlen", L);
    cJSON_AddNumberToObject(r, "seed", (double)q->seed);
    char *s = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    return s;
}

int a3_seq_from_plan(a3_model *m, const a3_plan *p, const a3_cache *c, const a3_plan_seq *q, int allow_short,
                     const a3_seq_opts *o, a3_seq **out, a3_err *err)
{
    const a3_config *k = a3_model_config(m);
    int32_t *ids = NULL, *win = NULL;
    size_t n = 0;
    int nw = 0, L = 0, seqlen = q->seqlen ? q->seqlen : A3_SEQ_DEFAULT_SEQLEN;
    if (seqlen > k->max_seq) seqlen = k->max_seq;
    const char *texts[A3_PLAN_SEQ_FILES];
    for (int i = 0; i < q->n_texts; i++) texts[i] = q->texts[i];
    *out = NULL;
    int rc = a3_tokens_read(a3_model_dir(m), k->vocab, texts, q->n_texts, q->ids[0] ? q->ids : NULL, &ids, &n, NULL,
                            err);
    if (rc == A3_OK)
        rc = a3_calib_windows(ids, n, q->samples ? q->samples : A3_SEQ_DEFAULT_SAMPLES, seqlen, (uint64_t)q->seed,
                              allow_short, &win, &nw, &L, err);
    free(ids);
    a3_seq_opts so = o ? *o : (a3_seq_opts){0};
    char *rec = NULL;
    if (rc == A3_OK && !so.record_json && !(so.record_json = rec = seq_record(q, nw, L)))
        rc = a3_err_set(err, A3_ENOMEM, "out of memory");
    if (rc == A3_OK) rc = a3_seq_new(m, p, c, win, nw, L, &so, out, err);
    free(rec), free(win);
    return rc;
}

a3_seq_opts a3_seq_opts_default(void)
{
    return (a3_seq_opts){.target_layer_output = 1, .ov_drift = 0, .ov_refit = 1,
                         .qk_measured = A3_SEQ_QKM_OV, .qk_measured_windows = A3_SEQ_QKM_WINDOWS};
}

void a3_seq_tokens(const a3_seq *s, int *n_windows, int *seqlen) { *n_windows = s->nw, *seqlen = s->L; }

const a3_layer_solver *a3_seq_solver(a3_seq *s) { return &s->solver; }

int a3_seq_qk_candidates(const a3_seq *s, int g, int32_t *pairs, double *err)
{
    if (g < 0 || g >= s->nkv) return 0; /* no such group: nothing measured */
    int n = s->qkm && s->qkm_n ? s->qkm_n[g] : 0, half = s->hd / 2;
    if (n <= 1 || s->next_layer == 0) return 0;
    int keep = a3_plan_qk(s->p, s->next_layer - 1)[g] / 2;
    for (int c = 0; c < n; c++) {
        if (pairs)
            memcpy(pairs + (size_t)c * keep, s->qkm_cand + ((size_t)g * A3_SEQ_QKM_CAP + c) * half,
                   (size_t)keep * sizeof *pairs);
        if (err) err[c] = s->qkm_err[(size_t)c * s->nkv + g];
    }
    return n;
}

const float *a3_seq_stream(const a3_seq *s, int reduced) { return reduced ? s->xh : s->x; }
