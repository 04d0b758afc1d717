/* bench_fwdgemm MODEL_DIR [SEQLEN] [NSEQ] [REPEATS]: where the forward
 * pass's time goes, for docs/PERFORMANCE.md (make bench-scale).
 *
 * This program defines cblas_sgemm itself: the library's calls resolve to
 * this definition (static link), which times the call and forwards it to
 * OpenBLAS's (dlsym RTLD_NEXT). Calls with M = the pass's row count are the
 * linear layers (one sgemm over all rows each, on the main thread); the
 * others are attention's per-block products (worker threads, OpenBLAS at
 * one thread) and are only counted. For the best of REPEATS passes it
 * prints: the pass's time, the time inside the linear layers' sgemm and
 * their GFLOP/s, and the same shapes timed alone (same operands, outside
 * the pass), the time the pass spends converting the layers' weights to
 * float32 (F16/BF16 files; done single-threaded, once per layer per pass),
 * beside a square sgemm (n = 2048) measured in the same process. The last line is machine-readable ("RESULT key=value ...").
 *
 * It measures the conversion + sgemm path: where the AVX-512F code runs,
 * prefill on F16/BF16 weights multiplies them with a3_k_gemm instead,
 * which makes no sgemm calls to time, so this program turns that code off
 * (a3_k_force_avx2) and says so. bench_gemm compares the two paths on one
 * product; make bench's speed section times the default. */
#define _GNU_SOURCE
#include <cblas.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/blas.h"
#include "a3/kernels.h"
#include "a3/model.h"

typedef void (*sgemm_fn)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE, const enum CBLAS_TRANSPOSE,
                         const blasint, const blasint, const blasint, const float, const float *, const blasint,
                         const float *, const blasint, const float, float *, const blasint);

static sgemm_fn real_sgemm;
static long g_rows = -1;       /* M of the linear layers' calls */
static double g_lin_s, g_lin_flops;
static long g_lin_calls;

/* Distinct linear shapes seen (for the standalone timing). */
#define MAX_SHAPES 16
static struct {
    int m, n, k, trans_b;
    long calls;
} g_shape[MAX_SHAPES];
static int g_nshape;

void cblas_sgemm(const enum CBLAS_ORDER Order, const enum CBLAS_TRANSPOSE TransA, const enum CBLAS_TRANSPOSE TransB,
                 const blasint M, const blasint N, const blasint K, const float alpha, const float *A,
                 const blasint lda, const float *B, const blasint ldb, const float beta, float *C, const blasint ldc)
{
    if (M != g_rows) { /* attention (worker threads): count only */
        real_sgemm(Order, TransA, TransB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    double t0 = a3_now();
    real_sgemm(Order, TransA, TransB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    g_lin_s += a3_now() - t0;
    g_lin_flops += 2.0 * M * (double)N * K;
    g_lin_calls++;
    int i;
    for (i = 0; i < g_nshape; i++)
        if (g_shape[i].m == M && g_shape[i].n == N && g_shape[i].k == K && g_shape[i].trans_b == (TransB == CblasTrans))
            break;
    if (i == g_nshape && g_nshape < MAX_SHAPES) {
        g_shape[i].m = M, g_shape[i].n = N, g_shape[i].k = K, g_shape[i].trans_b = TransB == CblasTrans;
        g_shape[i].calls = 0;
        g_nshape++;
    }
    if (i < g_nshape) g_shape[i].calls++;
}

/* GFLOP/s of C (m, n) = A (m, k) B, B given as (n, k) when trans_b, best
 * of a few calls after a warm-up. */
static double shape_gflops(int m, int n, int k, int trans_b, double seconds)
{
    float *a = a3_malloc_array((size_t)m, (size_t)k * 4), *b = a3_malloc_array((size_t)n, (size_t)k * 4);
    float *c = a3_malloc_array((size_t)m, (size_t)n * 4);
    double best = -1;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(i % 13) * 0.01f;
        for (size_t i = 0; i < (size_t)n * k; i++) b[i] = (float)(i % 7) * 0.01f;
        double t_end = a3_now() + seconds;
        for (int r = 0; r < 2 || (r < 50 && a3_now() < t_end); r++) {
            double t0 = a3_now();
            real_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, 1.0f, a, k, b,
                       trans_b ? k : n, 0.0f, c, n);
            double el = a3_now() - t0;
            if (r > 0 && (best < 0 || el < best)) best = el;
        }
    }
    free(a), free(b), free(c);
    return best > 0 ? 2.0 * m * (double)n * k / best / 1e9 : -1;
}

int main(int argc, char **argv)
{
    a3_blas_startup(argc, argv);
    void *sym = dlsym(RTLD_NEXT, "cblas_sgemm");
    if (!sym) {
        fprintf(stderr, "bench_fwdgemm: cannot find OpenBLAS's cblas_sgemm: %s\n", dlerror());
        return 1;
    }
    memcpy(&real_sgemm, &sym, sizeof real_sgemm);
    if (strncmp(a3_k_gemm_impl(), "avx512", 6) == 0) {
        a3_k_force_avx2(1);
        fprintf(stderr, "bench_fwdgemm: timing the conversion + sgemm path (a3_k_gemm, this CPU's default "
                        "for F16/BF16 prefill, turned off: it makes no sgemm calls to time)\n");
    }
    if (argc < 2) {
        fprintf(stderr, "usage: bench_fwdgemm MODEL_DIR [SEQLEN] [NSEQ] [REPEATS]\n");
        return 2;
    }
    a3_err err = {0};
    a3_model *m;
    if (a3_model_open(argv[1], &m, &err)) {
        fprintf(stderr, "bench_fwdgemm: %s\n", err.msg);
        return 1;
    }
    const a3_config *c = a3_model_config(m);
    int T = argc > 2 ? atoi(argv[2]) : 256, B = argc > 3 ? atoi(argv[3]) : 4, R = argc > 4 ? atoi(argv[4]) : 3;
    if (T > c->max_seq) T = c->max_seq;
    if (T < 1 || B < 1 || R < 1) {
        fprintf(stderr, "bench_fwdgemm: SEQLEN, NSEQ and REPEATS must be positive\n");
        return 2;
    }
    size_t rows = (size_t)T * B;
    int32_t *tok = a3_malloc_array(rows, sizeof *tok);
    float *hid = a3_malloc_array(rows, (size_t)c->d * sizeof(float));
    if (!tok || !hid) {
        fprintf(stderr, "bench_fwdgemm: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < rows; i++) tok[i] = (int32_t)((i * 7919) % (size_t)c->vocab);
    g_rows = (long)rows;
    if (a3_model_forward(m, tok, B, T, hid, &err)) { /* warm-up: page in the mapping */
        fprintf(stderr, "bench_fwdgemm: %s\n", err.msg);
        return 1;
    }
    double best = 1e30, best_lin = 0, best_flops = 0;
    long calls = 0;
    for (int r = 0; r < R; r++) {
        g_lin_s = g_lin_flops = 0, g_lin_calls = 0;
        double t0 = a3_now();
        if (a3_model_forward(m, tok, B, T, hid, &err)) {
            fprintf(stderr, "bench_fwdgemm: %s\n", err.msg);
            return 1;
        }
        double el = a3_now() - t0;
        if (el < best) best = el, best_lin = g_lin_s, best_flops = g_lin_flops, calls = g_lin_calls;
    }
    double lin_gf = best_flops / best_lin / 1e9;
    /* The same shapes alone, weighted by their FLOPs. */
    double alone_s = 0;
    for (int i = 0; i < g_nshape; i++) {
        double gf = shape_gflops(g_shape[i].m, g_shape[i].n, g_shape[i].k, g_shape[i].trans_b, 0.5);
        double fl = 2.0 * g_shape[i].m * (double)g_shape[i].n * g_shape[i].k * (double)g_shape[i].calls / (R + 1);
        if (gf > 0) alone_s += fl / (gf * 1e9);
        printf("fwdgemm  shape M=%-6d N=%-6d K=%-6d %s: %6.1f GFLOP/s alone\n", g_shape[i].m, g_shape[i].n,
               g_shape[i].k, g_shape[i].trans_b ? "x W^T" : "x W  ", gf);
    }
    double alone_gf = alone_s > 0 ? best_flops / alone_s / 1e9 : -1;
    /* What the pass spends converting the layers' weights to float32 (a
     * fresh buffer per tensor, as the model allocates one per layer). */
    double conv_s = 0;
    const a3_st_set *st = a3_model_tensors(m);
    for (size_t i = 0; i < a3_st_count(st); i++) {
        const a3_st_tensor *t = a3_st_get(st, i);
        if (strncmp(t->name, "model.layers.", 13) != 0 || t->dtype == A3_DT_F32) continue;
        double t0 = a3_now();
        float *buf = a3_malloc_array(t->numel, sizeof(float));
        if (!buf || a3_convert_to_f32(t->dtype, t->data, t->numel, buf) != 0) {
            fprintf(stderr, "bench_fwdgemm: %s: cannot convert\n", t->name);
            free(buf);
            return 1;
        }
        free(buf);
        conv_s += a3_now() - t0;
    }
    double peak = shape_gflops(2048, 2048, 2048, 0, 1.0);
    const char *kernel = a3_blas_kernel_name();
    int threads = a3_blas_get_threads();
    printf("fwdgemm  %-28.28s d=%-5d L=%-3d T=%-5d B=%-3d pass %.3f s: linear sgemm %.3f s (%.0f%% of the pass, "
           "%ld calls) at %.1f GFLOP/s in the pass, %.1f alone; weights to float32 %.3f s (%.0f%%); sgemm n=2048 "
           "%.1f GFLOP/s (kernel %s, %d threads)\n",
           argv[1], c->d, c->n_layers, T, B, best, best_lin, 100 * best_lin / best, calls, lin_gf, alone_gf, conv_s,
           100 * conv_s / best, peak, kernel, threads);
    printf("RESULT d=%d layers=%d T=%d B=%d pass_s=%.6f lin_s=%.6f lin_gflop=%.3f lin_gflops=%.3f alone_gflops=%.3f "
           "convert_s=%.6f sgemm_gflops=%.3f kernel=%s threads=%d\n",
           c->d, c->n_layers, T, B, best, best_lin, best_flops / 1e9, lin_gf, alone_gf, conv_s, peak, kernel, threads);
    free(tok);
    free(hid);
    a3_model_free(m);
    return 0;
}
