/* vmath: vector and scalar code of include/a3/vmath.h. The build targets
 * x86-64-v2, so the AVX2+FMA functions carry a target attribute and run
 * only after the CPU check; the scalar code is the reference the tests
 * compare them with. */
#include "a3/vmath.h"

#include <math.h>
#include <string.h>

#include "a3/kernels.h"

/* ---- scalar ---------------------------------------------------------------- */

static void exp_scalar(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = expf(x[i]);
}

static float max_scalar(const float *x, size_t n)
{
    float mx = x[0];
    for (size_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

static double sum_exp_scalar(const float *x, float *out, size_t n, float mx)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        float e = expf(x[i] - mx);
        if (out) out[i] = e;
        s += e;
    }
    return s;
}

static void swiglu_scalar(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ---- AVX2 + FMA -------------------------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma")))

static int x86_ok(void)
{
    static int ok = -1; /* the CPU does not change; a benign race at worst checks twice */
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return ok;
}

/* exp of 8 lanes (Cephes expf): x = n ln2 + r, |r| <= ln2/2, exp(r) by a
 * degree-6 polynomial, 2^n put into the exponent bits. ln2 is split in a
 * part exact in float (0.693359375) and a correction so that n ln2 is
 * subtracted without round-off. */
TGT static inline __m256 exp8(__m256 x)
{
    const __m256 hi = _mm256_set1_ps(88.0f), lo = _mm256_set1_ps(-87.3f);
    /* min/max return their second operand when either is NaN: x stays NaN */
    __m256 xc = _mm256_max_ps(lo, _mm256_min_ps(hi, x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    /* below the range: 0 (an ordered compare: NaN lanes keep y = NaN) */
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), y);
}

/* A tail of n < 8 floats through the same vector code. */
TGT static inline __m256 load_tail(const float *x, size_t n, float pad)
{
    float b[8];
    for (int i = 0; i < 8; i++) b[i] = (size_t)i < n ? x[i] : pad;
    return _mm256_loadu_ps(b);
}

TGT static inline void store_tail(float *x, size_t n, __m256 v)
{
    float b[8];
    _mm256_storeu_ps(b, v);
    memcpy(x, b, n * sizeof(float));
}

TGT static inline __m256d sum_pd(__m256d s, __m256 v)
{
    s = _mm256_add_pd(s, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    return _mm256_add_pd(s, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

TGT static inline double hsum_pd(__m256d s)
{
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

TGT static void exp_x86(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, exp8(_mm256_loadu_ps(x + i)));
    if (i < n) store_tail(x + i, n - i, exp8(load_tail(x + i, n - i, 0)));
}

TGT static float max_x86(const float *x, size_t n)
{
    __m256 m = _mm256_set1_ps(x[0]);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    if (i < n) m = _mm256_max_ps(m, load_tail(x + i, n - i, x[0]));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* sum_i exp(x[i] - mx) in double; out (may be x, or NULL) receives the
 * terms. */
TGT static double sum_exp_x86(const float *x, float *out, size_t n, float mx)
{
    __m256 m = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), m));
        if (out) _mm256_storeu_ps(out + i, e0), _mm256_storeu_ps(out + i + 8, e1);
        s0 = sum_pd(s0, e0);
        s1 = sum_pd(s1, e1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        if (out) _mm256_storeu_ps(out + i, e);
        s0 = sum_pd(s0, e);
    }
    if (i < n) { /* padding with -inf adds exp = 0 */
        __m256 e = exp8(_mm256_sub_ps(load_tail(x + i, n - i, -INFINITY), m));
        if (out) store_tail(out + i, n - i, e);
        s0 = sum_pd(s0, e);
    }
    return hsum_pd(_mm256_add_pd(s0, s1));
}

TGT static void scale_x86(float *x, size_t n, float a)
{
    __m256 v = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), v));
    for (; i < n; i++) x[i] *= a; /* a product: the same in either code */
}

TGT static inline __m256 swiglu8(__m256 g, __m256 u)
{
    __m256 den = _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), g)));
    return _mm256_mul_ps(_mm256_div_ps(g, den), u);
}

TGT static void swiglu_x86(float *g, const float *u, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(g + i, swiglu8(_mm256_loadu_ps(g + i), _mm256_loadu_ps(u + i)));
    if (i < n) store_tail(g + i, n - i, swiglu8(load_tail(g + i, n - i, 0), load_tail(u + i, n - i, 0)));
}

#else /* not x86-64 with GCC/Clang: scalar only */
static int x86_ok(void) { return 0; }
static void exp_x86(float *x, size_t n) { exp_scalar(x, n); }
static float max_x86(const float *x, size_t n) { return max_scalar(x, n); }
static double sum_exp_x86(const float *x, float *out, size_t n, float mx) { return sum_exp_scalar(x, out, n, mx); }
static void scale_x86(float *x, size_t n, float a)
{
    for (size_t i = 0; i < n; i++) x[i] *= a;
}
static void swiglu_x86(float *g, const float *u, size_t n) { swiglu_scalar(g, u, n); }
#endif

/* ---- dispatch --------------------------------------------------------------- */

/* The kernels' choice (A3_NO_SIMD, a3_k_force_scalar) and this CPU. */
static int simd(void) { return strcmp(a3_k_impl(), "scalar") != 0 && x86_ok(); }

void a3_v_exp(float *x, size_t n)
{
    if (simd()) exp_x86(x, n);
    else exp_scalar(x, n);
}

void a3_v_softmax(float *x, size_t n)
{
    if (n == 0) return;
    int v = simd();
    float mx = v ? max_x86(x, n) : max_scalar(x, n);
    double s = v ? sum_exp_x86(x, x, n, mx) : sum_exp_scalar(x, x, n, mx);
    float inv = (float)(1.0 / s);
    if (v) scale_x86(x, n, inv);
    else
        for (size_t i = 0; i < n; i++) x[i] *= inv;
}

void a3_v_swiglu(float *g, const float *u, size_t n)
{
    if (simd()) swiglu_x86(g, u, n);
    else swiglu_scalar(g, u, n);
}

double a3_v_logsumexp(const float *x, size_t n)
{
    if (n == 0) return -INFINITY;
    int v = simd();
    float mx = v ? max_x86(x, n) : max_scalar(x, n);
    if (isinf(mx)) return mx; /* all -inf, or a +inf term */
    double s = v ? sum_exp_x86(x, NULL, n, mx) : sum_exp_scalar(x, NULL, n, mx);
    return (double)mx + log(s);
}
