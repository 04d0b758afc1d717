/* bench_ovparts HD PER D [GROUPS] [RANK]: where the time of one OV solve
 * goes (a3_ov_solve, src/a3/ov.c), step by step, for docs/PERFORMANCE.md.
 *
 * The steps of ov.c are repeated here on random data of the same shapes
 * (head dim HD, PER query heads per KV group, hidden size D, rank RANK,
 * default HD/2), each timed over GROUPS groups (default 4; the median
 * over the groups is printed: the threaded LAPACK steps vary a lot):
 *   gather   Wo_cat (HD, PER*D) built from o_proj (strided reads)
 *   trmm     M = Lc^T Wo_cat (cblas_dtrmm)
 *   gesdd    LAPACKE_dgesdd('S') of M: U, S, V^T (HD, PER*D)
 *   trsm     Y = Lc^-1 [V_g | b] (cblas_dtrsm)
 *   new_v    the triple loop S_t U[:,t]^T Y (new v rows)
 *   new_o    V^T rows copied into the o_proj column layout
 * and, for comparison, the same results by another route:
 *   gram     K = M M^T (dsyrk), eigenpairs of K (dsyevd): U and S^2
 *   vt       V_r^T = S_r^-1 U_r^T M (one dgemm, only the r rows needed)
 *   gemm_v   new v rows as one dgemm: diag(S_r) U_r^T Y
 * checking that the two routes agree (singular values, and the kept right
 * singular vectors up to sign). Also a3_ov_solve itself on a cache and
 * weights of those shapes, as the library runs it; and, to see inside
 * dgesdd (which for HD < PER*D starts with an LQ factorisation): the LQ
 * step alone (LAPACKE_dgelqf + LAPACKE_dorglq on the same matrix), and
 * dgesdd again with OpenBLAS on one thread. Ends with a "RESULT"
 * line of key=value pairs (seconds per group). */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/blas.h"
#include "a3/cache.h"
#include "a3/reduce.h"

static uint64_t rng_s = 12345;
static double rnd(void) /* uniform in (-1, 1) */
{
    uint64_t z = (rng_s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-52 - 1.0;
}

enum { S_GATHER, S_TRMM, S_GESDD, S_TRSM, S_NEWV, S_NEWO, S_GRAM, S_VT, S_GEMMV, S_LIB, S_LQ, S_GESDD1, S_COUNT };
static const char *S_NAME[S_COUNT] = {"gather", "trmm",   "gesdd", "trsm", "new_v", "new_o",
                                      "gram",   "vt",     "gemm_v", "lib", "lq",    "gesdd_1t"};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) /* sorts v */
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    a3_blas_startup(argc, argv);
    if (argc < 4) {
        fprintf(stderr, "usage: bench_ovparts HD PER D [GROUPS] [RANK]\n");
        return 2;
    }
    int hd = atoi(argv[1]), per = atoi(argv[2]), d = atoi(argv[3]);
    int ng = argc > 4 ? atoi(argv[4]) : 4, r = argc > 5 ? atoi(argv[5]) : hd / 2;
    if (hd < 2 || hd > 1024 || per < 1 || per > 64 || d < hd || d > 65536 || ng < 1 || r < 1 || r > hd) {
        fprintf(stderr, "bench_ovparts: bad sizes\n");
        return 2;
    }
    int nh = per * ng, cols = per * d, yc = d + 1;
    size_t hh = (size_t)hd * hd, hw = (size_t)hd * cols;
    /* Weights of ng groups, float32 HF order: wo (d, nh*hd), wv (ng*hd, d). */
    float *wo = a3_malloc_array((size_t)d, (size_t)nh * hd * 4), *wv = a3_malloc_array((size_t)ng * hd, (size_t)d * 4);
    double *C = a3_malloc_array(hh, 8), *Lc = a3_malloc_array(hh, 8), *M = a3_malloc_array(hw, 8);
    double *M2 = a3_malloc_array(hw, 8), *U = a3_malloc_array(hh, 8), *S = a3_malloc_array((size_t)hd, 8);
    double *VT = a3_malloc_array(hw, 8), *Y = a3_malloc_array((size_t)hd, (size_t)yc * 8);
    double *K = a3_malloc_array(hh, 8), *W = a3_malloc_array((size_t)hd, 8), *VT2 = a3_malloc_array((size_t)r, (size_t)cols * 8);
    double *UrS = a3_malloc_array((size_t)r, (size_t)hd * 8), *NV2 = a3_malloc_array((size_t)r, (size_t)yc * 8);
    double *M3 = a3_malloc_array(hw, 8), *tau = a3_malloc_array((size_t)hd, 8);
    float *new_v = a3_malloc_array((size_t)r, (size_t)d * 4), *new_o = a3_malloc_array((size_t)per * d, (size_t)r * 4);
    a3_cache *c = a3_cache_new(d, 1, nh, ng, hd, 2, 0);
    if (!wo || !wv || !C || !Lc || !M || !M2 || !U || !S || !VT || !Y || !K || !W || !VT2 || !UrS || !NV2 || !new_v ||
        !new_o || !c || !M3 || !tau) {
        fprintf(stderr, "bench_ovparts: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)d * nh * hd; i++) wo[i] = (float)(rnd() / sqrt((double)nh * hd));
    for (size_t i = 0; i < (size_t)ng * hd * d; i++) wv[i] = (float)(rnd() / sqrt((double)d));
    /* A symmetric positive definite weighting: B B^T / n + I. */
    double *Bm = a3_malloc_array(hh * 2, 8);
    if (!Bm) return 1;
    for (size_t i = 0; i < hh * 2; i++) Bm[i] = rnd();
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, hd, 2 * hd, 1.0 / hd, Bm, 2 * hd, 0.0, C, hd);
    for (int a = 0; a < hd; a++) {
        C[a * hd + a] += 1.0;
        for (int b = 0; b < a; b++) C[b * hd + a] = C[a * hd + b];
    }
    free(Bm);
    double t[S_COUNT] = {0}, tmin[S_COUNT] = {0}, tmax[S_COUNT] = {0}, max_sv = 0, max_vec = 0;
    double *all = a3_malloc_array((size_t)S_COUNT * ng, sizeof(double)); /* [step][group] */
    if (!all) return 1;
    for (int g = 0; g < ng; g++) {
        double t0;
        memcpy(Lc, C, hh * 8);
        if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', hd, Lc, hd)) return 1;
        for (int a = 0; a < hd; a++)
            for (int b = a + 1; b < hd; b++) Lc[a * hd + b] = 0;
        t0 = a3_now();
        for (int a = 0; a < hd; a++)
            for (int j = 0; j < per; j++)
                for (int e = 0; e < d; e++)
                    M[(size_t)a * cols + j * d + e] = wo[(size_t)e * nh * hd + (size_t)(g * per + j) * hd + a];
        all[(size_t)S_GATHER * ng + g] = a3_now() - t0;
        t0 = a3_now();
        cblas_dtrmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, hd, cols, 1.0, Lc, hd, M, cols);
        all[(size_t)S_TRMM * ng + g] = a3_now() - t0;
        memcpy(M2, M, hw * 8);
        memcpy(M3, M, hw * 8);
        t0 = a3_now();
        if (LAPACKE_dgelqf(LAPACK_ROW_MAJOR, hd, cols, M3, cols, tau) ||
            LAPACKE_dorglq(LAPACK_ROW_MAJOR, hd, cols, hd, M3, cols, tau))
            return 1;
        all[(size_t)S_LQ * ng + g] = a3_now() - t0;
        memcpy(M3, M, hw * 8);
        int nt = a3_blas_single_begin();
        t0 = a3_now();
        if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', hd, cols, M3, cols, S, U, hd, VT, cols)) return 1;
        all[(size_t)S_GESDD1 * ng + g] = a3_now() - t0;
        a3_blas_single_end(nt);
        t0 = a3_now();
        if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'S', hd, cols, M, cols, S, U, hd, VT, cols)) return 1;
        all[(size_t)S_GESDD * ng + g] = a3_now() - t0;
        t0 = a3_now();
        for (int a = 0; a < hd; a++) {
            for (int e = 0; e < d; e++) Y[(size_t)a * yc + e] = wv[((size_t)g * hd + a) * d + e];
            Y[(size_t)a * yc + d] = 0;
        }
        cblas_dtrsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, hd, yc, 1.0, Lc, hd, Y, yc);
        all[(size_t)S_TRSM * ng + g] = a3_now() - t0;
        t0 = a3_now();
        for (int tt = 0; tt < r; tt++)
            for (int e = 0; e <= d; e++) {
                double s = 0;
                for (int a = 0; a < hd; a++) s += U[a * hd + tt] * Y[(size_t)a * yc + e];
                if (e < d) new_v[(size_t)tt * d + e] = (float)(S[tt] * s);
            }
        all[(size_t)S_NEWV * ng + g] = a3_now() - t0;
        t0 = a3_now();
        for (int j = 0; j < per; j++)
            for (int e = 0; e < d; e++)
                for (int tt = 0; tt < r; tt++) new_o[((size_t)j * d + e) * r + tt] = (float)VT[(size_t)tt * cols + j * d + e];
        all[(size_t)S_NEWO * ng + g] = a3_now() - t0;
        /* The other route, from M2 = Lc^T Wo_cat. */
        t0 = a3_now();
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasNoTrans, hd, cols, 1.0, M2, cols, 0.0, K, hd);
        if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'L', hd, K, hd, W)) return 1; /* ascending; vectors in columns */
        all[(size_t)S_GRAM * ng + g] = a3_now() - t0;
        t0 = a3_now();
        for (int tt = 0; tt < r; tt++) { /* row tt of UrS = U[:, tt]^T / sigma_tt, eigenvalues descending */
            int col = hd - 1 - tt;
            double sg = sqrt(W[col] > 0 ? W[col] : 0);
            for (int a = 0; a < hd; a++) UrS[(size_t)tt * hd + a] = sg > 0 ? K[a * hd + col] / sg : 0;
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, cols, hd, 1.0, UrS, hd, M2, cols, 0.0, VT2, cols);
        all[(size_t)S_VT * ng + g] = a3_now() - t0;
        t0 = a3_now();
        for (int tt = 0; tt < r; tt++) { /* diag(S_r) U_r^T = sigma^2 * UrS */
            int col = hd - 1 - tt;
            for (int a = 0; a < hd; a++) UrS[(size_t)tt * hd + a] *= W[col];
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r, yc, hd, 1.0, UrS, hd, Y, yc, 0.0, NV2, yc);
        all[(size_t)S_GEMMV * ng + g] = a3_now() - t0;
        for (int tt = 0; tt < r; tt++) {
            double s1 = S[tt], s2 = sqrt(W[hd - 1 - tt] > 0 ? W[hd - 1 - tt] : 0), dot = 0;
            if (fabs(s1 - s2) / S[0] > max_sv) max_sv = fabs(s1 - s2) / S[0];
            for (int e = 0; e < cols; e++) dot += VT[(size_t)tt * cols + e] * VT2[(size_t)tt * cols + e];
            /* only well-separated singular values have well-defined vectors */
            double gap = tt + 1 < hd ? (S[tt] - S[tt + 1]) / S[0] : 1;
            if (gap > 1e-6 && fabs(1 - fabs(dot)) > max_vec) max_vec = fabs(1 - fabs(dot));
        }
    }
    /* The library's own call on a cache and weights of these shapes. */
    a3_cache_layer *L = &c->layers[0];
    c->n_tokens = 1;
    for (int i = 0; i < nh; i++) memcpy(L->c + (size_t)i * hh, C, hh * 8);
    for (int g = 0; g < ng; g++) memcpy(L->gv + (size_t)g * hh, C, hh * 8);
    a3_layer_f32 w = {.d = d, .n_heads = nh, .n_kv_heads = ng, .head_dim = hd, .d_ff = 2, .wv = wv, .wo = wo};
    a3_err err = {0};
    for (int g = 0; g < ng; g++) {
        double loss, damp, t0 = a3_now();
        if (a3_ov_solve(c, 0, g, r, A3_OV_METHOD_A3, &w, new_v, NULL, new_o, &loss, &damp, &err)) {
            fprintf(stderr, "bench_ovparts: %s\n", err.msg);
            return 1;
        }
        all[(size_t)S_LIB * ng + g] = a3_now() - t0;
    }
    for (int s = 0; s < S_COUNT; s++) {
        t[s] = median(all + (size_t)s * ng, ng); /* sorted now */
        tmin[s] = all[(size_t)s * ng], tmax[s] = all[(size_t)s * ng + ng - 1];
    }
    free(all);
    double now = t[S_GATHER] + t[S_TRMM] + t[S_GESDD] + t[S_TRSM] + t[S_NEWV] + t[S_NEWO];
    double alt = t[S_GATHER] + t[S_TRMM] + t[S_GRAM] + t[S_VT] + t[S_TRSM] + t[S_GEMMV] + t[S_NEWO];
    printf("ovparts  hd=%d per=%d d=%d rank=%d, per group (median of %d): gather %.4f, trmm %.4f, gesdd %.4f, trsm %.4f, "
           "new_v %.4f, new_o %.4f = %.4f s (a3_ov_solve %.4f s); Gram route: syrk+syevd %.4f, V^T gemm %.4f, "
           "new_v gemm %.4f -> %.4f s; agreement: sigma %.1e, vectors %.1e; inside gesdd: LQ alone %.4f s, gesdd on one "
           "thread %.4f s; range over groups: gesdd %.4f-%.4f, on one thread %.4f-%.4f (kernel %s, %d threads)\n",
           hd, per, d, r, ng, t[S_GATHER], t[S_TRMM], t[S_GESDD], t[S_TRSM], t[S_NEWV], t[S_NEWO], now, t[S_LIB],
           t[S_GRAM], t[S_VT], t[S_GEMMV], alt, max_sv, max_vec, t[S_LQ], t[S_GESDD1], tmin[S_GESDD], tmax[S_GESDD],
           tmin[S_GESDD1], tmax[S_GESDD1], a3_blas_kernel_name(),
           a3_blas_get_threads());
    printf("RESULT hd=%d per=%d d=%d rank=%d", hd, per, d, r);
    for (int s = 0; s < S_COUNT; s++)
        printf(" %s_s=%.6f %s_min_s=%.6f %s_max_s=%.6f", S_NAME[s], t[s], S_NAME[s], tmin[s], S_NAME[s], tmax[s]);
    printf(" steps_s=%.6f alt_s=%.6f sv_err=%.3g vec_err=%.3g kernel=%s threads=%d\n", now, alt, max_sv, max_vec,
           a3_blas_kernel_name(), a3_blas_get_threads());
    free(wo), free(wv), free(C), free(Lc), free(M), free(M2), free(U), free(S), free(VT), free(Y), free(K), free(W);
    free(VT2), free(UrS), free(NV2), free(new_v), free(new_o), free(M3), free(tau);
    a3_cache_free(c);
    return 0;
}
