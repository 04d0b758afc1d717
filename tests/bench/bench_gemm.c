/* bench_gemm [ROWS] [IN] [OUT] [THREADS] [REPEATS] [DTYPE]: one prefill
 * product, y (ROWS, OUT) = x (ROWS, IN) @ W^T with W (OUT, IN) stored as
 * DTYPE (f16 or bf16; defaults 512 4096 11008, the llama-7b gate/up
 * shape, all usable threads, 5 repeats, f16), three ways taking turns:
 *   own    a3_k_gemm: W widened while packed for a3's AVX-512F kernel
 *          (what prefill runs on such CPUs);
 *   conv   a3__gemm_wconv with the AVX2 level forced: blocks of W
 *          converted to float32, then OpenBLAS sgemm (what prefill runs
 *          elsewhere);
 *   sgemm  OpenBLAS sgemm on a float32 copy of W made beforehand,
 *          untimed: what PyTorch runs once it has converted the weights
 *          at load.
 * W is 8 copies taken in turn, so no run finds its weights in a last-level
 * cache from the run before (this host's is 260 MiB). Prints the median
 * GFLOP/s of each and own / conv, own / sgemm as medians of the ratios of
 * runs made back to back (steadier than the ratio of medians on a noisy
 * machine). Figures behind the notes in src/model/gemm_half.c. */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/model/internal.h" /* a3__gemm_wconv, a3__wconv_floats */
#include "a3/blas.h"
#include "a3/kernels.h"
#include "a3/util.h"

#define COPIES 8

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    a3_blas_startup(argc, argv); /* OpenBLAS on this CPU's kernel, as a3 runs it */
    int rows = argc > 1 ? atoi(argv[1]) : 512, in = argc > 2 ? atoi(argv[2]) : 4096;
    int out = argc > 3 ? atoi(argv[3]) : 11008, T = argc > 4 ? atoi(argv[4]) : a3_threads_default();
    int reps = argc > 5 ? atoi(argv[5]) : 5;
    const char *dname = argc > 6 ? argv[6] : "f16";
    a3_dtype dt = strcmp(dname, "bf16") == 0 ? A3_DT_BF16 : A3_DT_F16;
    if (rows < 1 || in < 1 || out < 1 || T < 1 || reps < 1 || (strcmp(dname, "f16") && strcmp(dname, "bf16"))) {
        fprintf(stderr, "usage: bench_gemm [ROWS] [IN] [OUT] [THREADS] [REPEATS] [f16|bf16]\n");
        return 2;
    }
    a3_blas_set_threads(T);
    size_t nw = (size_t)out * in;
    uint16_t *w = a3_malloc_array(nw * COPIES, sizeof(uint16_t));
    float *wf = a3_malloc_array(nw, sizeof(float)), *x = a3_malloc_array((size_t)rows * in, sizeof(float));
    float *y = a3_malloc_array((size_t)rows * out, sizeof(float));
    size_t nbuf = a3__wconv_floats(nw, (size_t)rows, T);
    float *buf = a3_malloc_array(nbuf, sizeof(float));
    double *g_own = malloc(sizeof(double) * (size_t)reps * 3), *g_conv = g_own + reps, *g_sg = g_own + 2 * reps;
    double *r_conv = malloc(sizeof(double) * (size_t)reps * 2), *r_sg = r_conv + reps;
    if (!w || !wf || !x || !y || !buf || !g_own || !r_conv) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        return 1;
    }
    uint32_t s = 1;
    for (size_t i = 0; i < nw * COPIES; i++) {
        s = s * 1664525u + 1013904223u;
        /* small values of either sign, never Inf/NaN in either format */
        w[i] = (uint16_t)((s >> 16 & 0x8000) | (dt == A3_DT_F16 ? 0x2000 | (s >> 20 & 0xfff) : 0x3c00 | (s >> 24)));
    }
    if (a3_k_to_f32(dt, w, nw, wf, T) != 0) return 1;
    for (size_t i = 0; i < (size_t)rows * in; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    double flop = 2.0 * rows * in * out;
    int own_ok = a3_k_gemm(dt, w, out, in, x, (size_t)rows, y, (size_t)out, 0, buf, nbuf, T) == 0;
    for (int r = 0; r < reps; r++) {
        const uint16_t *wr = w + (size_t)(r % COPIES) * nw;
        double t0 = a3_now();
        if (own_ok) a3_k_gemm(dt, wr, out, in, x, (size_t)rows, y, (size_t)out, 0, buf, nbuf, T);
        double t1 = a3_now();
        a3_k_force_avx2(1);
        a3__gemm_wconv(y, (size_t)out, x, dt, w + (size_t)((r + COPIES / 2) % COPIES) * nw, (size_t)rows, in, out, 0,
                       buf, nbuf, T);
        a3_k_force_avx2(0);
        double t2 = a3_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, out, in, 1.0f, x, in, wf, in, 0.0f, y, out);
        double t3 = a3_now();
        g_own[r] = flop / (t1 - t0) * 1e-9, g_conv[r] = flop / (t2 - t1) * 1e-9, g_sg[r] = flop / (t3 - t2) * 1e-9;
        r_conv[r] = (t2 - t1) / (t1 - t0), r_sg[r] = (t3 - t2) / (t1 - t0);
    }
    char kbuf[64];
    snprintf(kbuf, sizeof kbuf, "%s", a3_blas_kernel_name());
    if (!own_ok)
        printf("gemm %dx%dx%d %s T=%d: own n/a (no AVX-512F)  conv %.1f  sgemm %.1f GFLOP/s  [%s]\n", rows, in, out,
               dname, T, median(g_conv, reps), median(g_sg, reps), kbuf);
    else
        printf("gemm %dx%dx%d %s T=%d: own %.1f  conv %.1f  sgemm %.1f GFLOP/s; own/conv %.2fx  own/sgemm %.2fx"
               "  [%s]\n",
               rows, in, out, dname, T, median(g_own, reps), median(g_conv, reps), median(g_sg, reps),
               median(r_conv, reps), median(r_sg, reps), kbuf);
    free(w), free(wf), free(x), free(y), free(buf), free(g_own), free(r_conv);
    return 0;
}
