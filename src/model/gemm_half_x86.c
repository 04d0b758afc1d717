/* gemm_half_x86: the AVX-512F pieces of a3_k_gemm (gemm_half.c): packing
 * F16/BF16 weight rows as float panels, and the 32 x 12 micro-kernel.
 * Compiled with function target attributes like kernels_x86.c and only
 * reached after a3__k_use_avx512() said yes; other architectures get
 * unreachable stubs. */
#include <stdint.h>
#include <string.h>

#include "kernels_impl.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TGT5 __attribute__((target("avx512f,avx2,fma,f16c")))
#define MR A3__KG_MR
#define NR A3__KG_NR
/* How far ahead (in elements) packing prefetches each source row: two
 * cache lines, into L1. Rows of W are `ld` elements apart, usually a
 * multiple of 4 KiB, so the 16 rows of a tile share one L1 set and the
 * hardware prefetchers, which follow one stream per page, see 16 short
 * streams. Scratch program (7B shape 11008 x 4096, one thread): packing
 * 0.034 s per matrix without, 0.022 s with this prefetch, of 0.40 s for
 * the product; 128 and 256 ahead were no better. */
#define PACK_AHEAD 64

/* r[0..15] = transpose of r[0..15] (16 x 16 floats): pairs, quads, then
 * 128-bit lanes, then halves. */
TGT5 static inline void tr16(__m512 r[16])
{
    __m512 t[16];
    _Pragma("GCC unroll 16") for (int i = 0; i < 16; i += 2)
    {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    _Pragma("GCC unroll 16") for (int i = 0; i < 16; i += 4)
    {
        __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 2]);
        __m512d c = _mm512_castps_pd(t[i + 1]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    _Pragma("GCC unroll 16") for (int i = 0; i < 4; i++)
    {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    _Pragma("GCC unroll 16") for (int i = 0; i < 4; i++)
    {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* 16 stored values (32 bytes) as floats: exact for both dtypes. */
TGT5 static inline __m512 widen16(int bf16, __m256i h)
{
    if (bf16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

TGT5 static inline float widen1(int bf16, const unsigned char *p)
{
    uint16_t h = (uint16_t)(p[0] | p[1] << 8);
    if (bf16) {
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    return _cvtsh_ss(h);
}

/* 16 rows from `row` (nr of them real, the rest zeros) of 32 columns from
 * `col`: one cache line per row, read once, widened and transposed in two
 * halves into d[c * MR] (c < 32). */
TGT5 __attribute__((always_inline)) static inline void tile16x32(int bf16, const unsigned char *row, size_t ldb, int nr, float *d,
                                  const unsigned char *pf)
{
    __m512i raw[16];
    _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++)
    {
        if (pf && j < nr) _mm_prefetch((const char *)(pf + (size_t)j * ldb), _MM_HINT_T0);
        raw[j] = j < nr ? _mm512_loadu_si512((const void *)(row + (size_t)j * ldb)) : _mm512_setzero_si512();
    }
    _Pragma("GCC unroll 2") for (int q = 0; q < 2; q++)
    {
        __m512 r[16];
        _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++)
            r[j] = widen16(bf16, q ? _mm512_extracti64x4_epi64(raw[j], 1) : _mm512_castsi512_si256(raw[j]));
        tr16(r);
        _Pragma("GCC unroll 16") for (int c = 0; c < 16; c++) _mm512_storeu_ps(d + (size_t)(16 * q + c) * MR, r[c]);
    }
}

TGT5 void a3__kg_pack_w_x86(a3_dtype dt, const unsigned char *W, size_t ld, int mc, int k0, int kc, float *dst)
{
    int bf16 = dt == A3_DT_BF16;
    size_t ldb = 2 * ld;
    for (int p = 0; p < mc; p += MR) {
        float *d = dst + (size_t)p * (size_t)kc;
        for (int h = 0; h < MR; h += 16) {
            int nr = mc - p - h < 16 ? mc - p - h : 16;
            if (nr < 0) nr = 0;
            const unsigned char *row = W + (size_t)(p + h) * ldb + 2 * (size_t)k0;
            int i = 0;
            for (; i + 32 <= kc; i += 32) {
                /* the same rows further on, or at the end of the range the
                 * next 16 rows' first lines */
                const unsigned char *pf = NULL;
                if (i + PACK_AHEAD < kc) pf = row + 2 * (size_t)(i + PACK_AHEAD);
                else if (p + h + 16 + 16 <= mc) pf = row + 16 * ldb + 2 * (size_t)(i + PACK_AHEAD - kc);
                tile16x32(bf16, row + 2 * (size_t)i, ldb, nr, d + h + (size_t)i * MR, pf);
            }
            for (; i < kc; i++)
                for (int j = 0; j < 16; j++)
                    d[(size_t)i * MR + h + j] = j < nr ? widen1(bf16, row + (size_t)j * ldb + 2 * (size_t)i) : 0.0f;
        }
    }
}

/* 16 columns at a time: the panel's rows (zeros past nr) as a 16 x 16
 * tile, transposed, each column's NR values stored with a mask. A plain
 * copy, so exact. Twice the rate of the scalar loop it replaced (scratch
 * program, 512 x 4224 floats, one thread: 1.0 against 2.0 ms), which was
 * 1.1% of the samples of a 7B-shaped prefill on one thread. */
_Static_assert(NR <= 16, "a token panel's rows must fit one 16 x 16 tile");
TGT5 void a3__kg_pack_x_x86(const float *x, size_t ld, int nr, int k0, int kc, float *d)
{
    const __mmask16 keep = (__mmask16)((1u << NR) - 1);
    int i = 0;
    for (; i + 16 <= kc; i += 16) {
        __m512 r[16];
        _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++)
            r[j] = j < nr ? _mm512_loadu_ps(x + (size_t)j * ld + k0 + i) : _mm512_setzero_ps();
        tr16(r);
        _Pragma("GCC unroll 16") for (int c = 0; c < 16; c++) _mm512_mask_storeu_ps(d + (size_t)(i + c) * NR, keep, r[c]);
    }
    for (; i < kc; i++)
        for (int j = 0; j < NR; j++) d[(size_t)i * NR + j] = j < nr ? x[(size_t)j * ld + k0 + i] : 0.0f;
}

/* c[j * ldc + o] = (beta ? c : 0) + sum_i a[i * MR + o] * b[i * NR + j]
 * for j < nt, o < no: 24 accumulators (12 tokens x 2 vectors of 16
 * outputs), two loads and 12 broadcasts per step of i; each sum runs over
 * i in order. The macros keep every accumulator a named register (as
 * arrays GCC left them in memory at -O2: 46 against 116 GFLOP/s in the
 * scratch program). */
#ifndef KG_PFA
#define KG_PFA 8
#endif
#define KG_ACC(j) __m512 c##j##a = _mm512_setzero_ps(), c##j##b = _mm512_setzero_ps()
#define KG_FMA(j)                                                                                          \
    do {                                                                                                   \
        __m512 bb = _mm512_set1_ps(b[j]);                                                                  \
        c##j##a = _mm512_fmadd_ps(a0, bb, c##j##a);                                                        \
        c##j##b = _mm512_fmadd_ps(a1, bb, c##j##b);                                                        \
    } while (0)
#define KG_STORE(j)                                                                                        \
    do {                                                                                                   \
        if ((j) >= nt) break;                                                                              \
        float *cc = c + (size_t)(j) * ldc;                                                                 \
        if (beta) {                                                                                        \
            c##j##a = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cc), c##j##a);                               \
            c##j##b = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cc + 16), c##j##b);                          \
        }                                                                                                  \
        _mm512_mask_storeu_ps(cc, m0, c##j##a);                                                            \
        _mm512_mask_storeu_ps(cc + 16, m1, c##j##b);                                                       \
    } while (0)

TGT5 void a3__kg_kernel_x86(int kc, const float *a, const float *b, float *c, size_t ldc, int nt, int no, int beta)
{
    KG_ACC(0); KG_ACC(1); KG_ACC(2); KG_ACC(3); KG_ACC(4); KG_ACC(5);
    KG_ACC(6); KG_ACC(7); KG_ACC(8); KG_ACC(9); KG_ACC(10); KG_ACC(11);
    for (int j = 0; j < nt; j++) {
        _mm_prefetch((const char *)(c + (size_t)j * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (size_t)j * ldc + 16), _MM_HINT_T0);
    }
    for (int i = 0; i < kc; i++, a += MR, b += NR) {
        _mm_prefetch((const char *)(a + KG_PFA * MR), _MM_HINT_T0);
        _mm_prefetch((const char *)(a + KG_PFA * MR + 16), _MM_HINT_T0);
        __m512 a0 = _mm512_loadu_ps(a), a1 = _mm512_loadu_ps(a + 16);
        KG_FMA(0); KG_FMA(1); KG_FMA(2); KG_FMA(3); KG_FMA(4); KG_FMA(5);
        KG_FMA(6); KG_FMA(7); KG_FMA(8); KG_FMA(9); KG_FMA(10); KG_FMA(11);
    }
    __mmask16 m0 = no >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << no) - 1);
    __mmask16 m1 = no >= 32 ? (__mmask16)0xffff : no <= 16 ? 0 : (__mmask16)((1u << (no - 16)) - 1);
    KG_STORE(0); KG_STORE(1); KG_STORE(2); KG_STORE(3); KG_STORE(4); KG_STORE(5);
    KG_STORE(6); KG_STORE(7); KG_STORE(8); KG_STORE(9); KG_STORE(10); KG_STORE(11);
}

#else

void a3__kg_pack_w_x86(a3_dtype dt, const unsigned char *W, size_t ld, int mc, int k0, int kc, float *dst)
{
    (void)dt, (void)W, (void)ld, (void)mc, (void)k0, (void)kc, (void)dst;
}
void a3__kg_pack_x_x86(const float *x, size_t ld, int nr, int k0, int kc, float *d)
{
    (void)x, (void)ld, (void)nr, (void)k0, (void)kc, (void)d;
}
void a3__kg_kernel_x86(int kc, const float *a, const float *b, float *c, size_t ldc, int nt, int no, int beta)
{
    (void)kc, (void)a, (void)b, (void)c, (void)ldc, (void)nt, (void)no, (void)beta;
}
#endif
