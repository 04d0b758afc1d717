/* vmath: the prefill's exp, softmax, SwiGLU and log-sum-exp (vector and
 * scalar code) against libm's exp in double, every length 1..40 (tails)
 * and long rows, special values. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "a3/kernels.h"
#include "a3/vmath.h"
#include "test.h"

static int have_simd(void)
{
    a3_k_force_scalar(0);
    return strcmp(a3_k_impl(), "scalar") != 0;
}

static uint32_t rng_next(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* uniform in [lo, hi) */
static float uni(uint32_t *s, float lo, float hi) { return lo + (hi - lo) * (float)rng_next(s) / 16777216.0f; }

/* exp within 4 float32 ulp of exp in double over the normal range (the
 * Cephes polynomial is within 2: 4 leaves room for the final rounding of
 * 2^n * p and still fails on any wrong coefficient, which costs 1e-4 or
 * more); 0 below -87.3, exp(88) above 88, NaN kept, exp(0) = 1 exactly. */
static void test_exp(void)
{
    enum { N = 200003 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    if (!x || !y) SKIP("out of memory");
    uint32_t s = 7;
    for (int i = 0; i < N; i++) x[i] = uni(&s, -87.0f, 88.0f);
    for (int simd = 0; simd <= have_simd(); simd++) {
        a3_k_force_scalar(!simd);
        memcpy(y, x, N * sizeof(float));
        a3_v_exp(y, N);
        double worst = 0;
        for (int i = 0; i < N; i++) {
            double e = exp((double)x[i]);
            double ulp = ldexp(1.0, ilogb(e) - 23);
            double err = fabs(y[i] - e) / ulp;
            worst = err > worst ? err : worst;
        }
        CHECKF(worst <= 4, "simd=%d: worst error %.2f ulp", simd, worst);
        float sp[7] = {0.0f, -INFINITY, -100.0f, NAN, 100.0f, -87.2f, 1.0f};
        a3_v_exp(sp, 7);
        CHECK(sp[0] == 1.0f && sp[1] == 0.0f && isnan(sp[3]));
        CHECK(sp[2] == 0.0f || (simd == 0 && sp[2] < FLT_MIN)); /* libm: denormal or 0 */
        CHECK(sp[4] >= (float)exp(88.0) * 0.999f);             /* saturated (vector) or inf */
        CHECK(sp[5] > 0 && fabs(sp[5] - exp((double)-87.2f)) <= 1e-6 * exp((double)-87.2f));
        CHECK(fabs(sp[6] - M_E) <= 4 * ldexp(1.0, -22));
        /* an element's value does not depend on its position (tails) */
        for (int n = 1; n <= 20; n++) {
            float a[20], b[20];
            for (int i = 0; i < n; i++) a[i] = b[i] = x[i + 100];
            a3_v_exp(a, (size_t)n);
            a3_v_exp(b + n - 1, 1);
            CHECKF(a[n - 1] == b[n - 1], "simd=%d n=%d: tail element differs", simd, n);
        }
    }
    a3_k_force_scalar(0);
    free(x);
    free(y);
}

/* softmax against the double formula: every length 1..40 and 2049, rows
 * with a large spread; per element relative 1e-6 (exp's 4 ulp = 5e-7 plus
 * the float32 product by 1/sum) plus |x - max| * 2^-23 (x - max is
 * rounded to float32 before exp: up to half an ulp of it, which exp turns
 * into that relative error), and the row sums to 1 within 1e-5. */
static void test_softmax(void)
{
    uint32_t s = 11;
    float x[2049], y[2049];
    double ref[2049];
    for (int simd = 0; simd <= have_simd(); simd++) {
        a3_k_force_scalar(!simd);
        int bad = 0;
        for (int k = 1; k <= 41; k++) { /* 1..40, then 2049 */
            int n = k <= 40 ? k : 2049;
            for (int i = 0; i < n; i++) x[i] = uni(&s, -30.0f, 30.0f);
            memcpy(y, x, (size_t)n * sizeof(float));
            a3_v_softmax(y, (size_t)n);
            double mx = -INFINITY, sum = 0, got = 0;
            for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
            for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
            for (int i = 0; i < n; i++) {
                ref[i] = exp((double)x[i] - mx) / sum;
                if (fabs(y[i] - ref[i]) > (1e-6 + fabs(x[i] - mx) * 0x1p-23) * ref[i] + 1e-30) bad++;
                got += y[i];
            }
            CHECKF(fabs(got - 1) < 1e-5, "simd=%d n=%d: sums to %.9f", simd, n, got);
        }
        CHECKF(bad == 0, "simd=%d: %d elements off", simd, bad);
    }
    a3_k_force_scalar(0);
}

/* SwiGLU against g / (1 + exp(-g)) * u in double, g over [-100, 100]
 * (beyond the vector exp's saturation at 88): relative 1e-6 or 1e-30
 * absolute (silu(-100) is 4e-42, a denormal either way). */
static void test_swiglu(void)
{
    enum { N = 4099 };
    float g[N], u[N], y[N];
    uint32_t s = 13;
    for (int i = 0; i < N; i++) g[i] = uni(&s, -100.0f, 100.0f), u[i] = uni(&s, -2.0f, 2.0f);
    for (int simd = 0; simd <= have_simd(); simd++) {
        a3_k_force_scalar(!simd);
        int bad = 0;
        for (int k = 1; k <= 41; k++) { /* 1..40, then N */
            int n = k <= 40 ? k : N;
            memcpy(y, g, (size_t)n * sizeof(float));
            a3_v_swiglu(y, u, (size_t)n);
            for (int i = 0; i < n; i++) {
                double ref = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
                if (fabs(y[i] - ref) > 1e-6 * fabs(ref) + 1e-30) bad++;
            }
        }
        CHECKF(bad == 0, "simd=%d: %d elements off", simd, bad);
        float nan_in[9] = {NAN, 1, 1, 1, 1, 1, 1, 1, NAN}, one[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
        a3_v_swiglu(nan_in, one, 9);
        CHECK(isnan(nan_in[0]) && isnan(nan_in[8]));
    }
    a3_k_force_scalar(0);
}

/* log-sum-exp of a logit row (vocabulary-sized) against double: 1e-6
 * absolute (every term within exp's 4 ulp = 5e-7 relative moves log(sum)
 * by at most 5e-7; the sum itself is in double). */
static void test_logsumexp(void)
{
    enum { V = 32003 };
    static float x[V];
    uint32_t s = 17;
    for (int i = 0; i < V; i++) x[i] = uni(&s, -20.0f, 20.0f);
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < V; i++) sum += exp((double)x[i] - mx);
    double ref = mx + log(sum);
    for (int simd = 0; simd <= have_simd(); simd++) {
        a3_k_force_scalar(!simd);
        double got = a3_v_logsumexp(x, V);
        CHECKF(fabs(got - ref) < 1e-6, "simd=%d: %.9f vs %.9f", simd, got, ref);
        for (int n = 1; n <= 17; n++) { /* short rows: every tail length */
            double m2 = -INFINITY, s2 = 0;
            for (int i = 0; i < n; i++) m2 = x[i] > m2 ? x[i] : m2;
            for (int i = 0; i < n; i++) s2 += exp((double)x[i] - m2);
            CHECK_NEAR(a3_v_logsumexp(x, (size_t)n), m2 + log(s2), 1e-6);
        }
        float inf[3] = {-INFINITY, -INFINITY, -INFINITY};
        CHECK(a3_v_logsumexp(inf, 3) == -INFINITY);
    }
    a3_k_force_scalar(0);
}

int main(void)
{
    if (!have_simd()) fprintf(stderr, "  note: no AVX2+FMA here: scalar code only\n");
    RUN(test_exp);
    RUN(test_softmax);
    RUN(test_swiglu);
    RUN(test_logsumexp);
    return test_summary("vmath");
}
