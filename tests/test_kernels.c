/* kernels: the F16/BF16 conversion and matrix-vector kernels (vector and
 * scalar code) against an independent float64 reference, odd sizes and
 * tails, 1-3 threads; the thread pool's contract; RMSNorm. */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "../src/model/internal.h" /* a3__gemm_wconv, a3__wconv_block */
#include "../src/model/kernels_impl.h" /* a3__kg_pack_x_x86 */
#include "a3/kernels.h"
#include "a3/pool.h"
#include "test.h"

/* Reference decoders, written from the IEEE formats with ldexp (not the
 * bit tricks the library uses). */
static double ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, f = h & 1023;
    double v = e == 0 ? ldexp(f, -24) : e == 31 ? (f ? NAN : INFINITY) : ldexp(1024 + f, e - 25);
    return s ? -v : v;
}

static double ref_bf16(uint16_t h)
{
    int s = h >> 15, e = (h >> 7) & 255, f = h & 127;
    double v = e == 0 ? ldexp(f, -133) : e == 255 ? (f ? NAN : INFINITY) : ldexp(128 + f, e - 134);
    return s ? -v : v;
}

static int same(double a, float b) { return (isnan(a) && isnan(b)) || a == (double)b; }

/* Vector code levels this machine runs: 0 none, 1 AVX2, 2 also the
 * AVX-512F matvec. Level lv is selected by set_level(lv). */
static int have_simd(void)
{
    a3_k_force_scalar(0);
    a3_k_force_avx2(0);
    const char *impl = a3_k_impl();
    return strcmp(impl, "scalar") == 0 ? 0 : strncmp(impl, "avx512", 6) == 0 ? 2 : 1;
}

static void set_level(int lv)
{
    a3_k_force_scalar(lv == 0);
    a3_k_force_avx2(lv == 1);
}

/* Every F16 and BF16 bit pattern converts exactly, whole and in odd,
 * misaligned pieces, by both implementations on 1 and 2 threads. */
static void test_convert_every_value(void)
{
    uint16_t *h = malloc(65536 * 2 + 2);
    float *out = malloc(65536 * sizeof(float));
    if (!h || !out) SKIP("out of memory");
    for (int i = 0; i < 65536; i++) h[i + 1] = (uint16_t)i; /* h + 1: 2-byte aligned only */
    if (!have_simd()) fprintf(stderr, "  note: no AVX2+FMA+F16C here: scalar code only\n");
    for (int simd = 0; simd <= have_simd(); simd++)
        for (int dt = 0; dt < 2; dt++)
            for (int th = 1; th <= 2; th++) {
                a3_k_force_scalar(!simd);
                a3_dtype t = dt ? A3_DT_BF16 : A3_DT_F16;
                CHECK(a3_k_to_f32(t, h + 1, 65536, out, th) == 0);
                int bad = 0;
                for (int i = 0; i < 65536; i++) bad += !same(dt ? ref_bf16((uint16_t)i) : ref_f16((uint16_t)i), out[i]);
                CHECKF(bad == 0, "%s simd=%d threads=%d: %d values differ", dt ? "bf16" : "f16", simd, th, bad);
                /* odd starts and lengths exercise the scalar tails */
                for (int start = 0; start < 9; start++)
                    for (int n = 0; n < 40; n += 3) {
                        CHECK(a3_k_to_f32(t, h + 1 + start * 997, (size_t)n, out, th) == 0);
                        for (int i = 0; i < n; i++) {
                            uint16_t v = (uint16_t)(start * 997 + i);
                            if (!same(dt ? ref_bf16(v) : ref_f16(v), out[i])) bad++;
                        }
                    }
                CHECKF(bad == 0, "tails: %d values differ", bad);
            }
    a3_k_force_scalar(0);
    CHECK(a3_k_to_f32(A3_DT_F64, h, 4, out, 1) == A3_EUNSUPPORTED);
    free(h);
    free(out);
}

/* Outputs of 16M elements and more go through non-temporal stores with a
 * scalar head up to 32-byte alignment: every value still exact, for a
 * destination at each float offset 0..7 from an aligned address and an
 * odd length, on 1 and 2 threads (each thread's share has its own head). */
static void test_convert_streaming(void)
{
    const size_t n = ((size_t)16 << 20) + 13;
    uint16_t *h = malloc(n * 2);
    void *mem = NULL;
    if (posix_memalign(&mem, 32, (n + 8) * sizeof(float)) != 0) mem = NULL;
    float *buf = mem;
    if (!h || !buf) SKIP("out of memory (needs ~100 MB)");
    for (size_t i = 0; i < n; i++) h[i] = (uint16_t)(i * 40503u >> 3);
    for (int simd = 0; simd <= have_simd(); simd++)
        for (int dt = 0; dt < 2; dt++)
            for (int off = 0; off < 8; off += 3)
                for (int th = 1; th <= 2; th++) {
                    a3_k_force_scalar(!simd);
                    float *out = buf + off;
                    CHECK(a3_k_to_f32(dt ? A3_DT_BF16 : A3_DT_F16, h, n, out, th) == 0);
                    size_t bad = 0;
                    for (size_t i = 0; i < n; i++) bad += !same(dt ? ref_bf16(h[i]) : ref_f16(h[i]), out[i]);
                    CHECKF(bad == 0, "%s simd=%d offset=%d threads=%d: %zu of %zu values differ",
                           dt ? "bf16" : "f16", simd, off, th, bad, n);
                }
    a3_k_force_scalar(0);
    free(h);
    free(buf);
}

static uint32_t rng_next(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Random weights of moderate size in each format: F16 with exponents
 * 2^-6..2^1, BF16 2^-6..2^1, F32 uniform in (-2, 2). */
static void fill_weights(a3_dtype dt, unsigned char *w, size_t n, uint32_t *s)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rng_next(s);
        if (dt == A3_DT_F16) {
            uint16_t h = (uint16_t)((r & 1) << 15 | (9 + (r >> 1) % 8) << 10 | (r >> 4) % 1024);
            memcpy(w + 2 * i, &h, 2);
        } else if (dt == A3_DT_BF16) {
            uint16_t h = (uint16_t)((r & 1) << 15 | (121 + (r >> 1) % 8) << 7 | (r >> 4) % 128);
            memcpy(w + 2 * i, &h, 2);
        } else {
            float f = (float)((double)r / 8388608.0 * 4.0 - 2.0);
            memcpy(w + 4 * i, &f, 4);
        }
    }
}

static double ref_w(a3_dtype dt, const unsigned char *w, size_t i)
{
    uint16_t h;
    float f;
    if (dt == A3_DT_F32) return memcpy(&f, w + 4 * i, 4), (double)f;
    memcpy(&h, w + 2 * i, 2);
    return dt == A3_DT_F16 ? ref_f16(h) : ref_bf16(h);
}

/* Max over outputs of |y - ref| / bound, bound = 1.01 * in * 2^-24 *
 * sum_i |w_i x_i|: the worst-case error of summing `in` float32 products
 * in any order (each partial sum rounded once, relative error <= 2^-24;
 * the weights themselves are exact in float32). <= 1 passes. */
static double mv_check(a3_dtype dt, int out, int in, int nrows, int acc, int threads, float *yout)
{
    size_t es = dt == A3_DT_F32 ? 4 : 2;
    uint32_t s = (uint32_t)(out * 7919 + in * 104729 + nrows);
    unsigned char *w = malloc((size_t)out * in * es + 1);
    float *x = malloc((size_t)nrows * in * sizeof(float)), *y = malloc((size_t)nrows * out * sizeof(float));
    double worst = INFINITY;
    if (!w || !x || !y) goto done;
    unsigned char *wm = w + 1; /* misaligned on purpose: mmapped tensors need not be aligned */
    fill_weights(dt, wm, (size_t)out * in, &s);
    for (size_t i = 0; i < (size_t)nrows * in; i++) x[i] = (float)((double)rng_next(&s) / 8388608.0 - 1.0);
    for (size_t i = 0; i < (size_t)nrows * out; i++) y[i] = (float)i * 0.25f;
    if (a3_k_matvec(dt, wm, out, in, x, nrows, y, acc, threads) != 0) goto done;
    worst = 0;
    for (int r = 0; r < nrows; r++)
        for (int o = 0; o < out; o++) {
            double ref = 0, mag = 0;
            for (int i = 0; i < in; i++) {
                double p = ref_w(dt, wm, (size_t)o * in + i) * x[(size_t)r * in + i];
                ref += p, mag += fabs(p);
            }
            double init = acc ? (double)((size_t)r * out + o) * 0.25 : 0;
            double bound = 1.01 * (in + 1) * ldexp(1, -24) * (mag + fabs(init)) + 1e-30;
            double e = fabs(y[(size_t)r * out + o] - (ref + init)) / bound;
            worst = e > worst ? e : worst;
        }
    if (yout) memcpy(yout, y, (size_t)nrows * out * sizeof(float));
done:
    free(w), free(x), free(y);
    return worst;
}

/* A block of a row-major matrix converts exactly, at odd strides and
 * sizes, by both implementations on 1-3 threads; dst's padding between
 * rows (ld_dst > cols) is never written. */
static void test_convert_block(void)
{
    enum { ROWS = 37, LDS = 301, LDD = 131 };
    uint16_t *h = malloc((size_t)ROWS * LDS * 2);
    float *out = malloc((size_t)ROWS * LDD * sizeof(float));
    if (!h || !out) SKIP("out of memory");
    uint32_t s = 7;
    for (size_t i = 0; i < (size_t)ROWS * LDS; i++) h[i] = (uint16_t)rng_next(&s);
    for (int simd = 0; simd <= have_simd(); simd++)
        for (int dt = 0; dt < 2; dt++)
            for (int th = 1; th <= 3; th++)
                for (int cols = 1; cols <= LDD; cols += 26) {
                    a3_k_force_scalar(!simd);
                    for (size_t i = 0; i < (size_t)ROWS * LDD; i++) out[i] = -12345.0f;
                    int c0 = 5; /* a block that starts inside the rows: odd byte offsets */
                    CHECK(a3_k_to_f32_2d(dt ? A3_DT_BF16 : A3_DT_F16, h + c0, LDS, ROWS, (size_t)cols, out, LDD,
                                         th) == 0);
                    int bad = 0, pad = 0;
                    for (int r = 0; r < ROWS; r++)
                        for (int c = 0; c < LDD; c++) {
                            float v = out[(size_t)r * LDD + c];
                            if (c >= cols) pad += v != -12345.0f;
                            else {
                                uint16_t b = h[(size_t)r * LDS + c0 + c];
                                bad += !same(dt ? ref_bf16(b) : ref_f16(b), v);
                            }
                        }
                    CHECKF(bad == 0 && pad == 0, "%s simd=%d threads=%d cols=%d: %d differ, %d padding written",
                           dt ? "bf16" : "f16", simd, th, cols, bad, pad);
                }
    a3_k_force_scalar(0);
    CHECK(a3_k_to_f32_2d(A3_DT_F64, h, 4, 1, 4, out, 4, 1) == A3_EUNSUPPORTED);
    free(h), free(out);
}

/* The blocks a3__gemm_wconv converts: whole small matrices, column
 * ranges (multiples of 16) of wide ones, row blocks of very tall ones;
 * never more than A3__WCONV_FLOATS floats. */
static void test_wconv_blocks(void)
{
    int ob, kc;
    a3__wconv_block(100, 100, &ob, &kc);
    CHECK(ob == 100 && kc == 100);
    a3__wconv_block(4096, 4096, &ob, &kc); /* a 7B projection: 512 columns at a time */
    CHECK(ob == 4096 && kc == 512);
    a3__wconv_block(11008, 4096, &ob, &kc); /* too tall for 256 columns of every row */
    CHECKF(ob == 8192 && kc == 256, "ob %d kc %d", ob, kc);
    a3__wconv_block(4096, 11008, &ob, &kc);
    CHECKF(ob == 4096 && kc == 512, "ob %d kc %d", ob, kc);
    a3__wconv_block(40000, 100, &ob, &kc);
    CHECKF(kc == 100 && (size_t)ob * kc <= A3__WCONV_FLOATS && ob < 40000, "ob %d kc %d", ob, kc);
    for (int out = 1; out < 70000; out = out * 3 + 1)
        for (int in = 1; in < 70000; in = in * 5 + 3) {
            a3__wconv_block(out, in, &ob, &kc);
            size_t most = (size_t)out * in < A3__WCONV_FLOATS ? (size_t)out * in : A3__WCONV_FLOATS;
            CHECKF(ob >= 1 && kc >= 1 && ob <= out && kc <= in && (size_t)ob * kc <= most,
                   "out %d in %d: ob %d kc %d", out, in, ob, kc);
        }
}

/* y = acc * y + x W^T through a3__gemm_wconv, against float64 on the
 * decoded weights, with acc and a row stride ldy > out as the logits use,
 * on 1, 2 and 3 threads (3 leaves the pool an odd share), by both of its
 * paths: a3_k_gemm (AVX-512F: column ranges of 384 with a partial last
 * one and a scalar tail at in = 4100, partial row panels at 60 and 40
 * outputs, many row blocks at 9000, a partial token panel at 37 rows),
 * and with the AVX2 level forced, blocks converted for sgemm in all three
 * block regimes of a3__wconv_block. Tolerance: the worst-case float32
 * summation bound of mv_check ((in + 1) terms, whatever order the blocks
 * add in). a3_k_gemm's bits must not depend on the thread count (sgemm's
 * do: OpenBLAS blocks by shape). The buffer is exactly a3__wconv_floats
 * long and followed by a canary: a thread writing past its share shows. */
static void test_gemm_wconv(void)
{
    static const int shapes[][2] = {{60, 70}, {1024, 4100}, {9000, 300}, {40, 20}};
    int levels = 0;
    for (int lv = have_simd() == 2 ? 2 : 1; lv >= 1; lv--, levels++) {
        set_level(lv);
        for (int k = 0; k < 4; k++)
            for (int dt = 0; dt < 2; dt++)
                for (int acc = 0; acc < 2; acc++) {
                    float *first = NULL;
                    for (int threads = 1; threads <= 3; threads++) {
                        int out = shapes[k][0], in = shapes[k][1], rows = 37, ldy = out + 3;
                        a3_dtype t = dt ? A3_DT_BF16 : A3_DT_F16;
                        uint32_t s = (uint32_t)(out + in + dt);
                        size_t nbuf = a3__wconv_floats((size_t)out * in, (size_t)rows, threads);
                        size_t ny = (size_t)rows * ldy;
                        unsigned char *w = malloc((size_t)out * in * 2);
                        float *x = malloc((size_t)rows * in * sizeof(float)), *y = malloc(ny * sizeof(float));
                        float *buf = malloc((nbuf + 16) * sizeof(float));
                        double *wd = malloc((size_t)out * in * sizeof(double));
                        if (!first) first = malloc(ny * sizeof(float));
                        if (!w || !x || !y || !buf || !wd || !first) SKIP("out of memory");
                        for (int i = 0; i < 16; i++) buf[nbuf + i] = -7.0f;
                        fill_weights(t, w, (size_t)out * in, &s);
                        for (size_t i = 0; i < (size_t)out * in; i++) wd[i] = ref_w(t, w, i);
                        for (size_t i = 0; i < (size_t)rows * in; i++)
                            x[i] = (float)((double)rng_next(&s) / 8388608.0 - 1.0);
                        for (size_t i = 0; i < ny; i++) y[i] = (float)(i % 97) * 0.25f;
                        a3__gemm_wconv(y, (size_t)ldy, x, t, w, (size_t)rows, in, out, acc, buf, nbuf, threads);
                        double worst = 0;
                        int pad = 0, canary = 0;
                        for (int i = 0; i < 16; i++) canary += buf[nbuf + i] != -7.0f;
                        for (int r = 0; r < rows; r++) {
                            for (int o = out; o < ldy; o++)
                                pad += y[(size_t)r * ldy + o] != (float)(((size_t)r * ldy + o) % 97) * 0.25f;
                            for (int o = 0; o < out; o++) {
                                double ref = 0, mag = 0;
                                for (int i = 0; i < in; i++) {
                                    double p = wd[(size_t)o * in + i] * x[(size_t)r * in + i];
                                    ref += p, mag += fabs(p);
                                }
                                double init = acc ? (double)(((size_t)r * ldy + o) % 97) * 0.25 : 0;
                                double bound = 1.01 * (in + 1) * ldexp(1, -24) * (mag + fabs(init)) + 1e-30;
                                double e = fabs(y[(size_t)r * ldy + o] - (ref + init)) / bound;
                                worst = e > worst ? e : worst;
                            }
                        }
                        CHECKF(worst <= 1 && pad == 0 && canary == 0,
                               "level %d %dx%d %s acc=%d threads %d: error %.3g of the bound, %d padding "
                               "written, %d canary floats overwritten",
                               lv, out, in, dt ? "bf16" : "f16", acc, threads, worst, pad, canary);
                        if (threads == 1) memcpy(first, y, ny * sizeof(float));
                        else if (lv == 2)
                            CHECKF(memcmp(first, y, ny * sizeof(float)) == 0,
                                   "a3_k_gemm %dx%d %s acc=%d: bits differ between 1 and %d threads", out, in,
                                   dt ? "bf16" : "f16", acc, threads);
                        free(w), free(x), free(y), free(buf), free(wd);
                    }
                    free(first);
                }
    }
    set_level(have_simd());
    if (levels < 2) fprintf(stderr, "  note: no AVX-512F here: a3_k_gemm not tested, sgemm path only\n");
}

/* Outputs of row r of y = x W^T (W stored as dt, out x in, no
 * accumulation) outside the worst-case float32 summation bound around
 * the float64 sum: (in + 1) u sum |w x|, with 1% slack for the float64
 * reference's own rounding. */
static int row_outside_bound(a3_dtype dt, const void *w, const float *x, int r, int in, int out, const float *yrow)
{
    int far = 0;
    for (int o = 0; o < out; o++) {
        double ref = 0, mag = 0;
        for (int i = 0; i < in; i++) {
            double p = ref_w(dt, w, (size_t)o * in + i) * x[(size_t)r * in + i];
            ref += p, mag += fabs(p);
        }
        far += fabs(yrow[o] - ref) > 1.01 * (in + 1) * ldexp(1, -24) * mag + 1e-30;
    }
    return far;
}

/* a3_k_gemm's packing of one token panel of x against its definition in
 * kernels_impl.h, element by element: every width from 0 to 40 columns
 * (whole tiles of 16 and a scalar tail), every row count from 0 to 12,
 * at an offset k0 and a row stride that leave the rows unaligned, into a
 * panel filled with NaN first (so a value never written shows) and
 * followed by a canary (so one written past the panel shows). x's rows
 * past nr hold NaN: a read of them would show as a NaN in the panel. */
static void test_k_pack_x(void)
{
    if (have_simd() < 2) SKIP("no AVX-512F here: the packing is not reached");
    enum { NR = A3__KG_NR, KMAX = 40, LD = 53, K0 = 3 };
    float x[NR * LD], d[KMAX * NR + 16];
    int bad = 0, canary = 0;
    for (int nr = 0; nr <= NR; nr++)
        for (int kc = 0; kc <= KMAX; kc++) {
            for (int i = 0; i < NR * LD; i++) x[i] = i / LD < nr ? (float)i * 0.5f - 7.0f : NAN;
            for (int i = 0; i < KMAX * NR + 16; i++) d[i] = NAN;
            for (int i = 0; i < 16; i++) d[kc * NR + i] = -3.0f;
            a3__kg_pack_x_x86(x, LD, nr, K0, kc, d);
            for (int i = 0; i < kc; i++)
                for (int j = 0; j < NR; j++) {
                    float want = j < nr ? x[j * LD + K0 + i] : 0.0f;
                    bad += memcmp(&d[i * NR + j], &want, sizeof want) != 0;
                }
            for (int i = 0; i < 16; i++) canary += d[kc * NR + i] != -3.0f;
        }
    CHECKF(bad == 0 && canary == 0, "%d packed values differ from x, %d written past the panel", bad, canary);
}

/* a3_k_gemm on its own: every token count from 1 to 25 (partial token
 * panels of 12 on either side), W at an odd address (mmapped tensors need
 * not be aligned), against the sgemm path's float64 bound as above; the
 * result for a row must not depend on the other rows (bit for bit equal to
 * that row computed alone). Refuses F32 and the forced AVX2 level without
 * writing; in = 0 clears y (acc = 0) or leaves it. */
static void test_k_gemm(void)
{
    if (have_simd() < 2) {
        float y = 1.0f;
        CHECK(a3_k_gemm(A3_DT_F16, &y, 1, 1, &y, 1, &y, 1, 0, &y, 1, 1) == A3_EUNSUPPORTED && y == 1.0f);
        SKIP("no AVX-512F here: a3_k_gemm refuses (checked)");
    }
    int out = 45, in = 419;
    uint32_t s = 99;
    unsigned char *w = malloc((size_t)out * in * 2 + 1);
    float *x = malloc((size_t)25 * in * sizeof(float)), *y = malloc((size_t)25 * out * sizeof(float));
    size_t nb = a3_k_gemm_floats(25, 3);
    float *y1 = malloc((size_t)out * sizeof(float)), *buf = malloc(nb * sizeof(float));
    if (!w || !x || !y || !y1 || !buf) SKIP("out of memory");
    fill_weights(A3_DT_F16, w + 1, (size_t)out * in, &s);
    for (size_t i = 0; i < (size_t)25 * in; i++) x[i] = (float)((double)rng_next(&s) / 8388608.0 - 1.0);
    int bad = 0, alone = 0;
    for (int rows = 1; rows <= 25; rows++) {
        CHECK(a3_k_gemm(A3_DT_F16, w + 1, out, in, x, (size_t)rows, y, (size_t)out, 0, buf, nb, 2) == A3_OK);
        for (int r = 0; r < rows; r++) bad += row_outside_bound(A3_DT_F16, w + 1, x, r, in, out, y + (size_t)r * out);
        int r = rows - 1;
        CHECK(a3_k_gemm(A3_DT_F16, w + 1, out, in, x + (size_t)r * in, 1, y1, (size_t)out, 0, buf, nb, 1) == A3_OK);
        alone += memcmp(y1, y + (size_t)r * out, (size_t)out * sizeof(float)) != 0;
    }
    CHECKF(bad == 0 && alone == 0, "%d results outside the bound, %d rows differ from the row alone", bad, alone);
    /* 1100 token rows of 4100 columns: more than the 16 MiB of x packed at
     * once, so the columns come in two spans (the second partial), and the
     * threads meet between them. */
    {
        int R = 1100, IN = 4100, O = 40;
        unsigned char *w2 = malloc((size_t)O * IN * 2);
        float *x2 = malloc((size_t)R * IN * sizeof(float)), *ya = malloc((size_t)R * O * sizeof(float)),
              *yb = malloc((size_t)R * O * sizeof(float)), *b2 = malloc(a3_k_gemm_floats((size_t)R, 3) * sizeof(float));
        size_t nb2 = a3_k_gemm_floats((size_t)R, 3);
        if (!w2 || !x2 || !ya || !yb || !b2) SKIP("out of memory");
        CHECK(a3_k_gemm_floats((size_t)R, 1) < (size_t)R * IN); /* the case is what it says */
        fill_weights(A3_DT_BF16, w2, (size_t)O * IN, &s);
        for (size_t i = 0; i < (size_t)R * IN; i++) x2[i] = (float)((double)rng_next(&s) / 8388608.0 - 1.0);
        CHECK(a3_k_gemm(A3_DT_BF16, w2, O, IN, x2, (size_t)R, ya, (size_t)O, 0, b2, nb2, 1) == A3_OK);
        CHECK(a3_k_gemm(A3_DT_BF16, w2, O, IN, x2, (size_t)R, yb, (size_t)O, 0, b2, nb2, 3) == A3_OK);
        int far = 0;
        for (int r = 0; r < R; r += 7) far += row_outside_bound(A3_DT_BF16, w2, x2, r, IN, O, ya + (size_t)r * O);
        CHECKF(far == 0 && memcmp(ya, yb, (size_t)R * O * sizeof(float)) == 0,
               "two spans: %d results outside the bound, or 1 and 3 threads differ", far);
        free(w2), free(x2), free(ya), free(yb), free(b2);
    }
    /* Three products of the same x in one call (45, 7 and 33 outputs, F16,
     * BF16, F16 at different row strides), acc on, 25 rows, 3 threads:
     * each bit for bit what a3_k_gemm gives it alone on 1 thread; with an
     * F32 one among them the call refuses and writes nothing. */
    {
        static const int outs[3] = {45, 7, 33};
        a3_k_gemm_w g[3];
        float *ys[3], *alone1[3];
        int differ = 0;
        for (int m = 0; m < 3; m++) {
            size_t ld = (size_t)outs[m] + (size_t)m;
            ys[m] = malloc((size_t)25 * ld * sizeof(float));
            alone1[m] = malloc((size_t)25 * ld * sizeof(float));
            if (!ys[m] || !alone1[m]) SKIP("out of memory");
            for (size_t i = 0; i < 25 * ld; i++) ys[m][i] = alone1[m][i] = (float)(i % 13) - 6.0f;
            g[m] = (a3_k_gemm_w){m == 1 ? A3_DT_BF16 : A3_DT_F16, w + 1 + 2 * (size_t)m, outs[m], ys[m], ld};
        }
        CHECK(a3_k_gemm_n(3, g, in - 3, x, 25, 1, buf, nb, 3) == A3_OK);
        for (int m = 0; m < 3; m++) {
            CHECK(a3_k_gemm(g[m].dt, g[m].W, outs[m], in - 3, x, 25, alone1[m], g[m].ldy, 1, buf, nb, 1) == A3_OK);
            differ += memcmp(ys[m], alone1[m], 25 * g[m].ldy * sizeof(float)) != 0;
        }
        CHECKF(differ == 0, "%d of 3 products differ from the product alone", differ);
        g[2].dt = A3_DT_F32;
        float keep = ys[0][0];
        CHECK(a3_k_gemm_n(3, g, in - 3, x, 25, 0, buf, nb, 2) == A3_EUNSUPPORTED &&
              memcmp(&keep, ys[0], sizeof keep) == 0);
        CHECK(a3_k_gemm_n(0, g, in, x, 25, 0, buf, nb, 2) == A3_EUNSUPPORTED);
    CHECK(a3_k_gemm_floats(0, 1) > 0 && a3_k_gemm_floats(1, 1) == a3_k_gemm_floats(12, 1));
        CHECK(a3_k_gemm_n(A3_K_GEMM_MAX + 1, g, in, x, 25, 0, buf, nb, 2) == A3_EUNSUPPORTED);
        for (int m = 0; m < 3; m++) free(ys[m]), free(alone1[m]);
    }
    /* More token rows than one range of x packed may hold in 16 MiB
     * (10920): the buffer does not grow past that bound, and the rows are
     * done 10920 at a time, each row still bit for bit what it gives
     * alone (the first, both sides of the seam, the last) and within the
     * float64 bound. */
    {
        int R = 10930, IN = 400, O = 20;
        size_t nbr = a3_k_gemm_floats((size_t)R, 1);
        CHECK(nbr == a3_k_gemm_floats(10920, 1));
        CHECK(nbr <= ((size_t)4 << 20) + 16 + (size_t)384 * 768 + 16); /* x: 16 MiB; W: one 768 x 384 block */
        unsigned char *w3 = malloc((size_t)O * IN * 2);
        float *x3 = malloc((size_t)R * IN * sizeof(float)), *y3 = malloc((size_t)R * O * sizeof(float)),
              *b3 = malloc(nbr * sizeof(float)), one[20];
        if (!w3 || !x3 || !y3 || !b3) SKIP("out of memory");
        fill_weights(A3_DT_F16, w3, (size_t)O * IN, &s);
        for (size_t i = 0; i < (size_t)R * IN; i++) x3[i] = (float)((double)rng_next(&s) / 8388608.0 - 1.0);
        CHECK(a3_k_gemm(A3_DT_F16, w3, O, IN, x3, (size_t)R, y3, (size_t)O, 0, b3, nbr, 1) == A3_OK);
        static const int probe[4] = {0, 10919, 10920, 10929};
        int differ = 0, far = 0;
        for (int k = 0; k < 4; k++) {
            int r = probe[k];
            CHECK(a3_k_gemm(A3_DT_F16, w3, O, IN, x3 + (size_t)r * IN, 1, one, (size_t)O, 0, b3, nbr, 1) == A3_OK);
            differ += memcmp(one, y3 + (size_t)r * O, sizeof one) != 0;
            far += row_outside_bound(A3_DT_F16, w3, x3, r, IN, O, y3 + (size_t)r * O);
        }
        CHECKF(differ == 0 && far == 0, "10930 rows: %d probed rows differ from the row alone, %d results outside the bound",
               differ, far);
        free(w3), free(x3), free(y3), free(b3);
    }
    /* A buffer one float short is refused before anything is written. */
    for (int i = 0; i < out; i++) y1[i] = 3.0f;
    CHECK(a3_k_gemm(A3_DT_F16, w + 1, out, in, x, 1, y1, (size_t)out, 0, buf, a3_k_gemm_floats(1, 2) - 1, 2) ==
              A3_EINVAL &&
          y1[0] == 3.0f && y1[out - 1] == 3.0f);
    CHECK(a3_k_gemm(A3_DT_F32, w, out, 4, x, 1, y1, (size_t)out, 0, buf, nb, 1) == A3_EUNSUPPORTED && y1[0] == 3.0f);
    set_level(1);
    CHECK(a3_k_gemm(A3_DT_F16, w, out, 4, x, 1, y1, (size_t)out, 0, buf, nb, 1) == A3_EUNSUPPORTED && y1[0] == 3.0f);
    set_level(2);
    CHECK(a3_k_gemm(A3_DT_F16, w, out, 0, x, 1, y1, (size_t)out, 1, buf, nb, 1) == A3_OK && y1[0] == 3.0f);
    CHECK(a3_k_gemm(A3_DT_F16, w, out, 0, x, 1, y1, (size_t)out, 0, buf, nb, 1) == A3_OK && y1[0] == 0.0f &&
          y1[out - 1] == 0.0f);
    free(w), free(x), free(y), free(y1), free(buf);
}

/* a3_k_matvec_n: q/k/v-like products (300, 75 and 75 rows: more than
 * MV_PAR_MIN weights, so the threads share one queue of chunks from all
 * three) of F16, BF16 and F32 weights, 1 and 3 vectors, acc on and off,
 * on every code level and 1-3 threads: each result bit for bit what
 * a3_k_matvec gives it alone; an ldy other than out or n out of range
 * refuses without writing. */
static void test_matvec_n(void)
{
    static const int outs[3] = {300, 75, 75};
    static const a3_dtype dts[3] = {A3_DT_F16, A3_DT_BF16, A3_DT_F32};
    int in = 260, differ = 0, cases = 0;
    uint32_t s = 7;
    unsigned char *w[3];
    float *x = malloc((size_t)3 * in * sizeof(float)), *ya[3], *yb[3];
    if (!x) SKIP("out of memory");
    for (int m = 0; m < 3; m++) {
        w[m] = malloc((size_t)outs[m] * in * 4);
        ya[m] = malloc((size_t)3 * outs[m] * sizeof(float));
        yb[m] = malloc((size_t)3 * outs[m] * sizeof(float));
        if (!w[m] || !ya[m] || !yb[m]) SKIP("out of memory");
        fill_weights(dts[m], w[m], (size_t)outs[m] * in, &s);
    }
    for (size_t i = 0; i < (size_t)3 * in; i++) x[i] = (float)((double)rng_next(&s) / 8388608.0 - 1.0);
    for (int lv = 0; lv <= have_simd(); lv++)
        for (int threads = 1; threads <= 3; threads++)
            for (int nr = 1; nr <= 3; nr += 2)
                for (int acc = 0; acc < 2; acc++) {
                    set_level(lv);
                    a3_k_gemm_w g[3];
                    for (int m = 0; m < 3; m++) {
                        for (int i = 0; i < 3 * outs[m]; i++) ya[m][i] = yb[m][i] = (float)i * 0.5f;
                        g[m] = (a3_k_gemm_w){dts[m], w[m], outs[m], ya[m], (size_t)outs[m]};
                    }
                    CHECK(a3_k_matvec_n(3, g, in, x, nr, acc, threads) == A3_OK);
                    for (int m = 0; m < 3; m++) {
                        CHECK(a3_k_matvec(dts[m], w[m], outs[m], in, x, nr, yb[m], acc, 1) == A3_OK);
                        differ += memcmp(ya[m], yb[m], (size_t)nr * outs[m] * sizeof(float)) != 0;
                        cases++;
                    }
                }
    set_level(have_simd());
    CHECKF(differ == 0, "%d of %d products differ from a3_k_matvec alone", differ, cases);
    a3_k_gemm_w g[2] = {{A3_DT_F16, w[0], outs[0], ya[0], (size_t)outs[0]},
                        {A3_DT_BF16, w[1], outs[1], ya[1], (size_t)outs[1] + 1}};
    float keep = ya[0][0];
    CHECK(a3_k_matvec_n(2, g, in, x, 1, 0, 2) == A3_EUNSUPPORTED && memcmp(&keep, ya[0], sizeof keep) == 0);
    CHECK(a3_k_matvec_n(0, g, in, x, 1, 0, 2) == A3_EUNSUPPORTED);
    CHECK(a3_k_matvec_n(A3_K_GEMM_MAX + 1, g, in, x, 1, 0, 2) == A3_EUNSUPPORTED);
    for (int m = 0; m < 3; m++) free(w[m]), free(ya[m]), free(yb[m]);
    free(x);
}

static void test_matvec_against_double(void)
{
    static const int outs[] = {1, 5, 16, 17, 33, 100}, ins[] = {1, 3, 8, 15, 31, 32, 33, 64, 79, 100, 130, 257};
    static const a3_dtype dts[] = {A3_DT_F32, A3_DT_F16, A3_DT_BF16};
    /* odd and even counts: the kernel takes vectors in pairs */
    static const int nrs[] = {1, 2, 3, 4, 5, 8, 17, A3_K_MATVEC_ROWS};
    double worst = 0;
    int cases = 0;
    for (int simd = 0; simd <= have_simd(); simd++) {
        set_level(simd);
        for (int d = 0; d < 3; d++)
            for (size_t a = 0; a < sizeof outs / sizeof *outs; a++)
                for (size_t b = 0; b < sizeof ins / sizeof *ins; b++)
                    for (size_t ni = 0; ni < sizeof nrs / sizeof *nrs; ni++)
                        for (int acc = 0; acc <= 1; acc++) {
                            int nr = nrs[ni];
                            double e = mv_check(dts[d], outs[a], ins[b], nr, acc, 1 + (cases % 3), NULL);
                            CHECKF(e <= 1, "%s simd=%d out=%d in=%d rows=%d acc=%d: error %.3g of the bound",
                                   a3_dtype_name(dts[d]), simd, outs[a], ins[b], nr, acc, e);
                            worst = e > worst ? e : worst;
                            cases++;
                        }
    }
    set_level(have_simd());
    fprintf(stderr, "  note: %d matvec cases (%s), worst error %.3g of the float32 summation bound\n", cases,
            have_simd() == 2 ? "scalar, AVX2, AVX-512F" : have_simd() ? "scalar, AVX2" : "scalar only", worst);
}

/* Matrices big enough to be split between threads: same bound, and every
 * thread count gives bit-identical results (one thread per output row). */
static void test_matvec_threads(void)
{
    static const int shapes[][2] = {{300, 1000}, {129, 2050}, {1030, 64}};
    static const a3_dtype dts[] = {A3_DT_F32, A3_DT_F16, A3_DT_BF16};
    for (int simd = 0; simd <= have_simd(); simd++) {
        set_level(simd);
        for (int d = 0; d < 3; d++)
            for (int k = 0; k < 3; k++) {
                int out = shapes[k][0], in = shapes[k][1], nr = 3;
                float *y1 = malloc((size_t)nr * out * 4), *y2 = malloc((size_t)nr * out * 4);
                if (!y1 || !y2) SKIP("out of memory");
                double e1 = mv_check(dts[d], out, in, nr, 1, 1, y1);
                CHECKF(e1 <= 1, "threads 1: %.3g", e1);
                for (int th = 2; th <= 3; th++) {
                    double e2 = mv_check(dts[d], out, in, nr, 1, th, y2);
                    CHECKF(e2 <= 1, "threads %d: %.3g", th, e2);
                    CHECKF(memcmp(y1, y2, (size_t)nr * out * 4) == 0, "%s %dx%d simd=%d: threads %d differ from 1",
                           a3_dtype_name(dts[d]), out, in, simd, th);
                }
                free(y1), free(y2);
            }
    }
    set_level(have_simd());
    float y = 7;
    CHECK(a3_k_matvec(A3_DT_F64, &y, 1, 1, &y, 1, &y, 0, 1) == A3_EUNSUPPORTED);
    /* in == 0: an empty sum, y = 0 or kept */
    CHECK(a3_k_matvec(A3_DT_F16, NULL, 1, 0, NULL, 1, &y, 1, 1) == 0 && y == 7);
    CHECK(a3_k_matvec(A3_DT_F16, NULL, 1, 0, NULL, 1, &y, 0, 1) == 0 && y == 0);
}

/* The result for one vector does not depend on how many vectors share the
 * call (the kernel pairs them and shares each widened weight): a batch of
 * nrows equals nrows single-vector calls bit for bit, so a prompt's last
 * token gets the logits it would get decoded alone. */
static void test_matvec_rows_independent(void)
{
    static const int shapes[][2] = {{37, 300}, {20, 33}, {5, 64}};
    static const a3_dtype dts[] = {A3_DT_F32, A3_DT_F16, A3_DT_BF16};
    int nr_max = A3_K_MATVEC_ROWS, bad = 0, cases = 0;
    for (int simd = 0; simd <= have_simd(); simd++) {
        set_level(simd);
        for (int d = 0; d < 3; d++)
            for (int k = 0; k < 3; k++) {
                int out = shapes[k][0], in = shapes[k][1];
                size_t es = dts[d] == A3_DT_F32 ? 4 : 2;
                uint32_t s = (uint32_t)(out * 31 + in);
                unsigned char *w = malloc((size_t)out * in * es);
                float *x = malloc((size_t)nr_max * in * 4), *yb = malloc((size_t)nr_max * out * 4),
                      *y1 = malloc((size_t)out * 4);
                if (!w || !x || !yb || !y1) SKIP("out of memory");
                fill_weights(dts[d], w, (size_t)out * in, &s);
                for (size_t i = 0; i < (size_t)nr_max * in; i++) x[i] = (float)((double)rng_next(&s) / 8388608.0 - 1.0);
                for (int nr = 1; nr <= nr_max; nr++) {
                    CHECK(a3_k_matvec(dts[d], w, out, in, x, nr, yb, 0, 1 + nr % 2) == 0);
                    for (int r = 0; r < nr; r++) {
                        CHECK(a3_k_matvec(dts[d], w, out, in, x + (size_t)r * in, 1, y1, 0, 1) == 0);
                        bad += memcmp(y1, yb + (size_t)r * out, (size_t)out * 4) != 0;
                        cases++;
                    }
                }
                free(w), free(x), free(yb), free(y1);
            }
    }
    set_level(have_simd());
    CHECKF(bad == 0, "%d of %d vectors differ between batched and single calls", bad, cases);
}

/* The software prefetch policies change timing only: every policy (and
 * the tuner while it tries them) gives the same bits, within the bound,
 * on matrices large enough (>= 1 MiB of weights) to be tuning samples.
 * The tuner decides after its samples and ignores small calls. */
static void test_matvec_prefetch(void)
{
    static const char *pol[] = {"none", "l1", "l2"};
    static const a3_dtype dts[] = {A3_DT_F32, A3_DT_F16, A3_DT_BF16};
    int out = 700, in = 1000, nr = 3;
    float *y0 = malloc((size_t)nr * out * 4), *y1 = malloc((size_t)nr * out * 4);
    if (!y0 || !y1) SKIP("out of memory");
    char buf[40];
    for (int simd = 1; simd <= have_simd(); simd++) {
        set_level(simd);
        for (int d = 0; d < 3; d++)
            for (int n = 1; n <= nr; n += 2)
                for (int p = 0; p < 3; p++) {
                    CHECK(a3_k_set_prefetch(pol[p]) == 0);
                    CHECK(strncmp(a3_k_prefetch(buf, sizeof buf), pol[p], strlen(pol[p])) == 0);
                    double e = mv_check(dts[d], out, in, n, 1, 1 + p % 2, p ? y1 : y0);
                    CHECKF(e <= 1, "%s prefetch %s: error %.3g of the bound", a3_dtype_name(dts[d]), pol[p], e);
                    CHECKF(!p || memcmp(y0, y1, (size_t)n * out * 4) == 0, "%s simd=%d rows=%d: prefetch %s differs",
                           a3_dtype_name(dts[d]), simd, n, pol[p]);
                }
    }
    CHECK(a3_k_set_prefetch("l3") == A3_EINVAL);
    CHECK(strncmp(a3_k_prefetch(buf, sizeof buf), "l2 (fixed)", 10) == 0); /* unchanged */

    /* the tuner: a 1024 x 1024 F16 matrix (2 MiB) is a sample, 16 x 64 not */
    CHECK(a3_k_set_prefetch("auto") == 0);
    a3_k_prefetch_retune();
    int o2 = 1024, i2 = 1024;
    uint32_t s = 5;
    unsigned char *w = malloc((size_t)o2 * i2 * 2);
    float *x = malloc((size_t)i2 * 4), *ya = malloc((size_t)o2 * 4), *yb = malloc((size_t)o2 * 4);
    if (!w || !x || !ya || !yb) SKIP("out of memory");
    fill_weights(A3_DT_F16, w, (size_t)o2 * i2, &s);
    for (int i = 0; i < i2; i++) x[i] = (float)((double)rng_next(&s) / 8388608.0 - 1.0);
    for (int k = 0; k < 500; k++) CHECK(a3_k_matvec(A3_DT_F16, w, 16, 64, x, 1, ya, 0, 1) == 0);
    CHECKF(strcmp(a3_k_prefetch(buf, sizeof buf), "l1 (untuned: no 1 MiB call yet)") == 0, "small calls tuned: %s", buf);
    CHECK(a3_k_set_prefetch("none") == 0);
    CHECK(a3_k_matvec(A3_DT_F16, w, o2, i2, x, 1, ya, 0, 2) == 0);
    CHECK(a3_k_set_prefetch("auto") == 0);
    int bad = 0, calls = 0;
    for (; calls < 1000 && strstr(a3_k_prefetch(buf, sizeof buf), "untuned"); calls++) {
        CHECK(a3_k_matvec(A3_DT_F16, w, o2, i2, x, 1, yb, 0, 1 + calls % 2) == 0);
        bad += memcmp(ya, yb, (size_t)o2 * 4) != 0;
    }
    CHECKF(strstr(buf, "(tuned)") != NULL, "not tuned after %d calls: %s", calls, buf);
    /* three policies, 48 samples each (kernels.c TUNE_CALLS), in turn */
    CHECKF(calls == 3 * 48, "tuned after %d calls", calls);
    CHECKF(bad == 0, "%d of %d results differ from prefetch none while tuning", bad, calls);
    fprintf(stderr, "  note: tuner chose %s\n", buf);
    a3_k_prefetch_retune();
    CHECK(strcmp(a3_k_prefetch(buf, sizeof buf), "l1 (untuned: no 1 MiB call yet)") == 0);
    set_level(have_simd());
    free(w), free(x), free(ya), free(yb), free(y0), free(y1);
}

static void test_rmsnorm(void)
{
    int rows = 37, d = 67;
    float *x = malloc((size_t)rows * d * 4), *w = malloc((size_t)d * 4), *o1 = malloc((size_t)rows * d * 4),
          *o2 = malloc((size_t)rows * d * 4);
    if (!x || !w || !o1 || !o2) SKIP("out of memory");
    uint32_t s = 5;
    for (int i = 0; i < rows * d; i++) x[i] = (float)((double)rng_next(&s) / 4194304.0 - 2.0);
    for (int i = 0; i < d; i++) w[i] = (float)((double)rng_next(&s) / 8388608.0);
    a3_k_rmsnorm(o1, x, w, (size_t)rows, d, 1e-5f, 1);
    a3_k_rmsnorm(o2, x, w, (size_t)rows, d, 1e-5f, 2);
    CHECK(memcmp(o1, o2, (size_t)rows * d * 4) == 0);
    double md = 0;
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)x[r * d + i] * x[r * d + i];
        double inv = 1 / sqrt(ss / d + 1e-5);
        for (int i = 0; i < d; i++) {
            double ref = x[r * d + i] * inv * w[i];
            md = fmax(md, fabs(o1[r * d + i] - ref) / (fabs(ref) + 1e-30));
        }
    }
    /* three float32 roundings (inv, two products): <= 3 * 2^-24 relative */
    CHECKF(md <= 3 * 6e-8, "rmsnorm relative error %.3g", md);
    free(x), free(w), free(o1), free(o2);
}

typedef struct {
    int hits[A3_POOL_MAX];
    int nested_ok;
} pool_ctx;

static void count_share(void *p, int t, int n)
{
    pool_ctx *c = p;
    (void)n;
    __atomic_fetch_add(&c->hits[t], 1, __ATOMIC_RELAXED);
}

/* A share that outlasts the spin (the others go to sleep waiting). */
static void slow_share(void *p, int t, int n)
{
    if (t == n - 1) {
        struct timespec ts = {0, 150000};
        nanosleep(&ts, NULL);
    }
    count_share(p, t, n);
}

static void nested_share(void *p, int t, int n)
{
    pool_ctx *c = p, inner = {{0}, 0};
    a3_pool_run(3, count_share, &inner); /* the pool is busy: runs here */
    if (inner.hits[0] == 1 && inner.hits[1] == 1 && inner.hits[2] == 1)
        __atomic_fetch_add(&c->nested_ok, 1, __ATOMIC_RELAXED);
    count_share(p, t, n);
}

/* a3_chunks from every share of a pool call: each chunk of each range
 * must be taken exactly once, with the right range and index. */
typedef struct {
    a3_chunks c;
    int taken[4][8];
    int out_of_range;
} chunks_ctx;

static void chunks_share(void *p, int t, int n)
{
    chunks_ctx *C = p;
    (void)t, (void)n;
    int r;
    long i;
    while (a3_chunks_next(&C->c, &r, &i)) {
        if (r < 0 || r >= 4 || i < 0 || i >= 8) __atomic_fetch_add(&C->out_of_range, 1, __ATOMIC_RELAXED);
        else __atomic_fetch_add(&C->taken[r][i], 1, __ATOMIC_RELAXED);
    }
}

static void test_chunks(void)
{
    static const long count[4] = {3, 0, 8, -2}; /* an empty range; a negative count is none */
    chunks_ctx C = {0};
    CHECK(a3_chunks_init(&C.c, 4, count) == 0);
    CHECK(a3_chunks_total(&C.c) == 11);
    for (int rep = 0; rep < 3; rep++) { /* rewinding hands out the same chunks again */
        a3_pool_run(3, chunks_share, &C);
        a3_chunks_rewind(&C.c);
    }
    int bad = C.out_of_range;
    for (int r = 0; r < 4; r++)
        for (int i = 0; i < 8; i++) bad += C.taken[r][i] != (i < (r == 0 ? 3 : r == 2 ? 8 : 0) ? 3 : 0);
    CHECKF(bad == 0, "%d chunks not taken exactly once per pass, or out of range", bad);
    int r;
    long i;
    /* more ranges than fit: refused, count not read, and nothing handed
     * out rather than the first A3_CHUNKS_MAX ranges' chunks alone */
    CHECK(a3_chunks_init(&C.c, A3_CHUNKS_MAX + 1, count) == -1);
    CHECK(a3_chunks_total(&C.c) == 0 && a3_chunks_next(&C.c, &r, &i) == 0);
    CHECK(a3_chunks_init(&C.c, 0, NULL) == 0); /* no ranges: nothing to hand out, count not read */
    CHECK(a3_chunks_total(&C.c) == 0 && a3_chunks_next(&C.c, &r, &i) == 0);
    CHECK(a3_chunks_init(&C.c, 1, count) == 0);
    CHECK(a3_chunks_total(&C.c) == 3);
    for (int k = 0; k < 3; k++) CHECK(a3_chunks_next(&C.c, &r, &i) == 1 && r == 0 && i == k);
    CHECK(a3_chunks_next(&C.c, &r, &i) == 0 && a3_chunks_next(&C.c, &r, &i) == 0);
}

static void test_pool(void)
{
    for (int n = 1; n <= 9; n++)
        for (int rep = 0; rep < 50; rep++) {
            pool_ctx c = {{0}, 0};
            a3_pool_run(n, count_share, &c);
            int bad = 0;
            for (int t = 0; t < A3_POOL_MAX; t++) bad += c.hits[t] != (t < n);
            CHECKF(bad == 0, "n=%d: shares not run exactly once", n);
        }
    /* Many hand-offs with the timing varied: back-to-back calls, pauses
     * between calls (the workers asleep), a share that outlasts the
     * others (the caller waiting). A lost wake-up hangs here, a share run
     * twice or never fails the count. */
    int lost = 0;
    for (int rep = 0; rep < 20000; rep++) {
        pool_ctx c = {{0}, 0};
        int n = 2 + rep % 3;
        if (rep % 97 == 0) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
        a3_pool_run(n, rep % 89 == 0 ? slow_share : count_share, &c);
        for (int t = 0; t < A3_POOL_MAX; t++) lost += c.hits[t] != (t < n);
    }
    CHECKF(lost == 0, "%d shares not run exactly once over 20000 calls", lost);
    /* The same with polling off: every hand-off goes through the
     * condition variables. Out-of-range limits are refused unchanged. */
    CHECK(a3_pool_spin_us() == 100);
    CHECK(a3_pool_set_spin_us(-1) == -1 && a3_pool_set_spin_us(A3_POOL_SPIN_MAX_US + 1) == -1 &&
          a3_pool_spin_us() == 100);
    CHECK(a3_pool_set_spin_us(0) == 0 && a3_pool_spin_us() == 0);
    lost = 0;
    for (int rep = 0; rep < 5000; rep++) {
        pool_ctx c = {{0}, 0};
        int n = 2 + rep % 3;
        a3_pool_run(n, rep % 89 == 0 ? slow_share : count_share, &c);
        for (int t = 0; t < A3_POOL_MAX; t++) lost += c.hits[t] != (t < n);
    }
    CHECKF(lost == 0, "polling off: %d shares not run exactly once over 5000 calls", lost);
    CHECK(a3_pool_set_spin_us(100) == 0);
    pool_ctx c = {{0}, 0};
    a3_pool_run(4, nested_share, &c);
    CHECK(c.nested_ok == 4);
    for (int t = 0; t < 4; t++) CHECK(c.hits[t] == 1);
    /* split: parts tile [0, total) in order, aligned */
    for (long total = 0; total < 70; total += 7)
        for (int n = 1; n <= 5; n++) {
            long prev = 0;
            for (int t = 0; t < n; t++) {
                long lo, hi;
                a3_pool_split(total, t, n, 16, &lo, &hi);
                CHECK(lo == prev && hi >= lo && (hi == total || hi % 16 == 0));
                prev = hi;
            }
            CHECK(prev == total);
        }
}

int main(void)
{
    RUN(test_convert_every_value);
    RUN(test_convert_streaming);
    RUN(test_convert_block);
    RUN(test_wconv_blocks);
    RUN(test_gemm_wconv);
    RUN(test_k_pack_x);
    RUN(test_k_gemm);
    RUN(test_matvec_n);
    RUN(test_matvec_against_double);
    RUN(test_matvec_threads);
    RUN(test_matvec_rows_independent);
    RUN(test_matvec_prefetch);
    RUN(test_rmsnorm);
    RUN(test_pool);
    RUN(test_chunks);
    return test_summary("kernels");
}
