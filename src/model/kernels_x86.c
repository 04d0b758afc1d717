/* kernels_x86: AVX2 + FMA + F16C versions of the matvec and conversion
 * kernels, and AVX-512F versions of the matvec. The build targets x86-64-v2 (no AVX), so these functions carry
 * a target attribute and are only reached after a3__k_x86_ok() said yes.
 * On other architectures the file provides a "no" and unreachable stubs. */
#include <stdint.h>
#include <string.h>

#include "kernels_impl.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))

/* F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does
 * not know "f16c". Its instructions use the YMM state, which the AVX2 check
 * below has already found the OS saving. */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

int a3__k_x86_ok(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
}

/* Eight weights starting at element i, widened to float. */
#define LD_F32(w, i) _mm256_loadu_ps((const float *)(const void *)((w) + 4 * (size_t)(i)))
#define LD_F16(w, i) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)((w) + 2 * (size_t)(i))))
#define LD_BF16(w, i)                                                                          \
    _mm256_castsi256_ps(_mm256_slli_epi32(                                                     \
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)((w) + 2 * (size_t)(i)))), 16))

TGT static inline float one_f32(const unsigned char *w, int i)
{
    float f;
    memcpy(&f, w + 4 * (size_t)i, 4);
    return f;
}
TGT static inline float one_f16(const unsigned char *w, int i)
{
    unsigned short h;
    memcpy(&h, w + 2 * (size_t)i, 2);
    return _cvtsh_ss(h);
}
TGT static inline float one_bf16(const unsigned char *w, int i)
{
    unsigned short h;
    memcpy(&h, w + 2 * (size_t)i, 2);
    unsigned int u = (unsigned int)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

TGT static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Software prefetch, three policies (kernels_impl.h, A3__PF_*), chosen at
 * run time because the best one depends on the host and no single one
 * wins everywhere (tests/bench/bench_matvec; kernels.c tunes it):
 * - A3__PF_L1: every line 2 KiB ahead into L1 (T0). On an EPYC (Zen) the
 *   hardware prefetcher alone left the F16 kernel at 0.73-0.77 of a plain
 *   streaming read of the same bytes; this brought it to 0.9-1.0.
 * - A3__PF_L2: every line 8 KiB ahead into L2 (T1). On a Xeon with
 *   AVX-512 (2026-12-03), bench_matvec's per-policy line, against the
 *   best streaming read: l2 109% / 93% at 1 / 2 threads, l1 103% / 82%,
 *   none 82% / 67%; `a3 generate` llama-1b, 1 thread, interleaved: 4-12%
 *   faster than l1 (docs/PERFORMANCE.md records which policy each
 *   bench_speed run chose).
 * - A3__PF_NONE: the hardware prefetcher alone; on an EPYC Zen 4 the
 *   software prefetch made the kernel slower.
 * Rows are contiguous, so near a row's end this fetches the next row,
 * which the loop reads next; past the matrix it is harmless (prefetches
 * never fault). Prefetches change no arithmetic: every policy gives the
 * same bits. */
#define PF_LINES(w, bytes, ahead, hint)                                                     \
    do {                                                                                    \
        for (int l_ = 0; l_ < (bytes); l_ += 64) _mm_prefetch((const char *)(w) + l_ + (ahead), hint); \
    } while (0)
#define PFL_NONE(w, bytes) ((void)0)
#define PFL_L1(w, bytes) PF_LINES(w, bytes, 2048, _MM_HINT_T0)
#define PFL_L2(w, bytes) PF_LINES(w, bytes, 8192, _MM_HINT_T1)

/* The dot products, written once for both register widths: VT a vector of
 * W floats with ZERO, FMA, LDX (load floats), ADD and HSUM (horizontal
 * sum); LD widens W weights. One weight row w (n elements of ES bytes)
 * times x: four independent W-lane accumulators hide the FMA latency,
 * then W-wide steps, then a scalar tail. */
#define DEF_DOT(ATTR, NAME, PFL, VT, W, ZERO, FMA, LDX, ADD, HSUM, LD, ONE, ES)     \
    ATTR static inline float NAME(const unsigned char *w, const float *x, int n)   \
    {                                                                              \
        VT a0 = ZERO(), a1 = a0, a2 = a0, a3 = a0;                                 \
        int i = 0;                                                                 \
        for (; i + 4 * W <= n; i += 4 * W) {                                       \
            PFL(w + ES * (size_t)i, ES * 4 * W);                                   \
            a0 = FMA(LD(w, i), LDX(x + i), a0);                                    \
            a1 = FMA(LD(w, i + W), LDX(x + i + W), a1);                            \
            a2 = FMA(LD(w, i + 2 * W), LDX(x + i + 2 * W), a2);                    \
            a3 = FMA(LD(w, i + 3 * W), LDX(x + i + 3 * W), a3);                    \
        }                                                                          \
        for (; i + W <= n; i += W) a0 = FMA(LD(w, i), LDX(x + i), a0);             \
        float s = HSUM(ADD(ADD(a0, a1), ADD(a2, a3)));                             \
        for (; i < n; i++) s += ONE(w, i) * x[i];                                  \
        return s;                                                                  \
    }

/* The same row against two vectors x, z at once: each weight is loaded and
 * widened once for both. Per vector the accumulators, their order and the
 * tail are those of DEF_DOT, so each result is bit-identical to the
 * single-vector dot (a token's logits do not depend on how many tokens
 * share the call). */
#define DEF_DOT2(ATTR, NAME, PFL, VT, W, ZERO, FMA, LDX, ADD, HSUM, LD, ONE, ES)                \
    ATTR static inline void NAME(const unsigned char *w, const float *x, const float *z, int n, \
                                 float *sx, float *sz)                                          \
    {                                                                                          \
        VT a0 = ZERO(), a1 = a0, a2 = a0, a3 = a0;                                             \
        VT b0 = a0, b1 = a0, b2 = a0, b3 = a0;                                                 \
        int i = 0;                                                                             \
        for (; i + 4 * W <= n; i += 4 * W) {                                                   \
            PFL(w + ES * (size_t)i, ES * 4 * W);                                               \
            VT w0 = LD(w, i), w1 = LD(w, i + W), w2 = LD(w, i + 2 * W), w3 = LD(w, i + 3 * W); \
            a0 = FMA(w0, LDX(x + i), a0);                                                      \
            a1 = FMA(w1, LDX(x + i + W), a1);                                                  \
            a2 = FMA(w2, LDX(x + i + 2 * W), a2);                                              \
            a3 = FMA(w3, LDX(x + i + 3 * W), a3);                                              \
            b0 = FMA(w0, LDX(z + i), b0);                                                      \
            b1 = FMA(w1, LDX(z + i + W), b1);                                                  \
            b2 = FMA(w2, LDX(z + i + 2 * W), b2);                                              \
            b3 = FMA(w3, LDX(z + i + 3 * W), b3);                                              \
        }                                                                                      \
        for (; i + W <= n; i += W) {                                                           \
            VT w0 = LD(w, i);                                                                  \
            a0 = FMA(w0, LDX(x + i), a0);                                                      \
            b0 = FMA(w0, LDX(z + i), b0);                                                      \
        }                                                                                      \
        float s = HSUM(ADD(ADD(a0, a1), ADD(a2, a3)));                                         \
        float t = HSUM(ADD(ADD(b0, b1), ADD(b2, b3)));                                         \
        for (; i < n; i++) {                                                                   \
            float wi = ONE(w, i);                                                              \
            s += wi * x[i], t += wi * z[i];                                                    \
        }                                                                                      \
        *sx = s, *sz = t;                                                                      \
    }

/* The register width as one argument list for DEF_DOT / DEF_DOT2 (EXPAND
 * makes the preprocessor split it into the macros' parameters). */
#define EXPAND(m, ...) m(__VA_ARGS__)
#define OPS8 __m256, 8, _mm256_setzero_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_add_ps, hsum

/* Rows o0..o1 of W against nrows vectors, two at a time: each row is read
 * from memory once, the later pairs find it in L1. */
#define DEF_MV(ATTR, NAME, DOT, DOT2, ES)                                                  \
    ATTR static void NAME(const unsigned char *W, int out, int in, const float *x, int nrows, \
                         float *y, int acc, int o0, int o1)                                \
    {                                                                                      \
        for (int o = o0; o < o1; o++) {                                                    \
            const unsigned char *w = W + (size_t)o * in * ES;                              \
            int r = 0;                                                                     \
            float s[2];                                                                    \
            for (; r + 2 <= nrows; r += 2) {                                               \
                DOT2(w, x + (size_t)r * in, x + (size_t)(r + 1) * in, in, s, s + 1);       \
                for (int k = 0; k < 2; k++) {                                              \
                    float *yo = y + (size_t)(r + k) * out + o;                             \
                    *yo = acc ? *yo + s[k] : s[k];                                         \
                }                                                                          \
            }                                                                              \
            if (r < nrows) {                                                               \
                s[0] = DOT(w, x + (size_t)r * in, in);                                     \
                float *yo = y + (size_t)r * out + o;                                       \
                *yo = acc ? *yo + s[0] : s[0];                                             \
            }                                                                              \
        }                                                                                  \
    }

/* One kernel: the dot, the two-vector dot and the matvec over rows, named
 * dot_N, dot2_N, mv_N, for one weight type (LD, ONE, ES bytes per
 * weight), prefetch policy (PFL) and register width (the OPS list, last). */
#define DEF_KERNEL(ATTR, N, PFL, LD, ONE, ES, ...)                \
    EXPAND(DEF_DOT, ATTR, dot_##N, PFL, __VA_ARGS__, LD, ONE, ES)   \
    EXPAND(DEF_DOT2, ATTR, dot2_##N, PFL, __VA_ARGS__, LD, ONE, ES) \
    DEF_MV(ATTR, mv_##N, dot_##N, dot2_##N, ES)
/* The three weight types for one width (OPS, last) and policy, and the
 * table row of their matvecs in a3_dtype order F32, F16, BF16. */
#define DEF_KERNELS(ATTR, S, PFL, LD32, LD16, LDB16, ...)          \
    DEF_KERNEL(ATTR, f32##S, PFL, LD32, one_f32, 4, __VA_ARGS__)   \
    DEF_KERNEL(ATTR, f16##S, PFL, LD16, one_f16, 2, __VA_ARGS__)   \
    DEF_KERNEL(ATTR, bf16##S, PFL, LDB16, one_bf16, 2, __VA_ARGS__)
#define MV_ROW(S) {mv_f32##S, mv_f16##S, mv_bf16##S}

typedef void (*mv_fn)(const unsigned char *W, int out, int in, const float *x, int nrows, float *y, int acc,
                      int o0, int o1);

DEF_KERNELS(TGT, _none, PFL_NONE, LD_F32, LD_F16, LD_BF16, OPS8)
DEF_KERNELS(TGT, _l1, PFL_L1, LD_F32, LD_F16, LD_BF16, OPS8)
DEF_KERNELS(TGT, _l2, PFL_L2, LD_F32, LD_F16, LD_BF16, OPS8)

/* ---- AVX-512 ------------------------------------------------------------
 * The same kernels on 16-lane registers: on this project's AMD EPYC (Zen 4,
 * which runs 512-bit operations as two 256-bit halves) the F16 kernel
 * on one thread reads 1.01-1.02 of a streaming read of the same bytes,
 * the AVX2 one 0.90-0.92 (`bench_matvec 2048 8192 8 1 5`, with and
 * without A3_NO_AVX512=1, interleaved): a decoding step is memory-bound
 * only once the widening and FMA instructions stop being the limit. Accumulators, their order
 * and the tails follow DEF_DOT / DEF_DOT2 with 16 lanes, so here too a
 * vector's result does not depend on how many vectors share the call. */
#define TGT5 __attribute__((target("avx512f,avx2,fma,f16c")))

#define LD5_F32(w, i) _mm512_loadu_ps((const float *)(const void *)((w) + 4 * (size_t)(i)))
#define LD5_F16(w, i) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)((w) + 2 * (size_t)(i))))
#define LD5_BF16(w, i)                                                                          \
    _mm512_castsi512_ps(_mm512_slli_epi32(                                                      \
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)((w) + 2 * (size_t)(i)))), 16))

#define OPS16 __m512, 16, _mm512_setzero_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_add_ps, _mm512_reduce_add_ps
DEF_KERNELS(TGT5, _none5, PFL_NONE, LD5_F32, LD5_F16, LD5_BF16, OPS16)
DEF_KERNELS(TGT5, _l15, PFL_L1, LD5_F32, LD5_F16, LD5_BF16, OPS16)
DEF_KERNELS(TGT5, _l25, PFL_L2, LD5_F32, LD5_F16, LD5_BF16, OPS16)

/* [avx512][prefetch policy][dtype] */
static const mv_fn mv_table[2][A3__PF_COUNT][3] = {
    {MV_ROW(_none), MV_ROW(_l1), MV_ROW(_l2)},
    {MV_ROW(_none5), MV_ROW(_l15), MV_ROW(_l25)},
};

int a3__k_x86_512_ok(void)
{
    __builtin_cpu_init(); /* libgcc also checks that the OS saves ZMM state */
    return a3__k_x86_ok() && __builtin_cpu_supports("avx512f");
}

void a3__k_matvec_x86(a3_dtype dt, const unsigned char *W, int out, int in, const float *x,
                      int nrows, float *y, int acc, int o0, int o1, int avx512, int pf)
{
    int k = dt == A3_DT_F32 ? 0 : dt == A3_DT_F16 ? 1 : dt == A3_DT_BF16 ? 2 : -1;
    if (k < 0 || pf < 0 || pf >= A3__PF_COUNT) return; /* kernels.c checked both */
    mv_table[avx512 != 0][pf][k](W, out, in, x, nrows, y, acc, o0, o1);
}

/* Widening conversion. With `stream`, the 32-byte-aligned body is written
 * with non-temporal stores: a destination larger than the last-level
 * cache would be evicted before its reader gets to it anyway, and
 * streaming skips reading each line before overwriting it (F16, 61M
 * elements, one thread: 1.3-1.5x the rate of plain stores in a one-off
 * comparison; no benchmark of make bench isolates it). */
#define DEF_CVT(NAME, LD, ONE)                                                     \
    TGT static void NAME(const unsigned char *s, size_t n, float *d, int stream)  \
    {                                                                              \
        size_t i = 0;                                                              \
        if (stream) {                                                              \
            for (; i < n && ((uintptr_t)(d + i) & 31) != 0; i++) d[i] = ONE(s + 2 * i, 0); \
            for (; i + 8 <= n; i += 8) _mm256_stream_ps(d + i, LD(s, i));         \
            _mm_sfence();                                                          \
        }                                                                          \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, LD(s, i));              \
        for (; i < n; i++) d[i] = ONE(s + 2 * i, 0);                               \
    }
DEF_CVT(cvt_f16, LD_F16, one_f16)
DEF_CVT(cvt_bf16, LD_BF16, one_bf16)

void a3__k_cvt_x86(a3_dtype dt, const unsigned char *src, size_t n, float *dst, int stream)
{
    if (dt == A3_DT_F16) cvt_f16(src, n, dst, stream);
    else if (dt == A3_DT_BF16) cvt_bf16(src, n, dst, stream);
    else if (dt == A3_DT_F32) memcpy(dst, src, n * sizeof(float));
}

#else /* not x86-64 with GCC/Clang: the scalar code in kernels.c runs */

int a3__k_x86_ok(void) { return 0; }
int a3__k_x86_512_ok(void) { return 0; }
void a3__k_matvec_x86(a3_dtype dt, const unsigned char *W, int out, int in, const float *x,
                      int nrows, float *y, int acc, int o0, int o1, int avx512, int pf)
{
    (void)dt, (void)W, (void)out, (void)in, (void)x, (void)nrows, (void)y, (void)acc, (void)o0, (void)o1;
    (void)avx512, (void)pf;
}
void a3__k_cvt_x86(a3_dtype dt, const unsigned char *src, size_t n, float *dst, int stream)
{
    (void)dt, (void)src, (void)n, (void)dst, (void)stream;
}
#endif
