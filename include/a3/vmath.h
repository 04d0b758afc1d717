/* vmath: vectorized element-wise math of the prefill: attention's
 * softmax, the SwiGLU product, eval's log-sum-exp.
 *
 * Same code choice as kernels.h: AVX2+FMA where the CPU has it, otherwise
 * (or with A3_NO_SIMD=1 / a3_k_force_scalar(1)) portable scalar code with
 * libm's expf/exp.
 *
 * Numerics of the vector exp: a degree-6 polynomial after range reduction
 * by ln 2 (Cephes expf), within 2 float32 ulp of exp for x in [-87.3, 88]
 * (tests/test_kernels.c checks 4 ulp against exp in double); exp(x) = 0
 * below -87.3 (where float32 results are denormal or 0 anyway; softmax
 * and log-sum-exp only lose terms below 1e-38 of their largest), exp(88)
 * above 88 (only SiLU sees such inputs: silu(-x) for x > 88 is then about
 * -x * 6e-39 instead of -x * exp(-x), both 0 next to any other term); NaN
 * in, NaN out. Tails shorter than 8 go through the same vector code
 * (padded), so an element's exp does not depend on where it sits and
 * results do not depend on how threads split an array. Sums are
 * accumulated in double in both implementations. */
#ifndef A3_VMATH_H
#define A3_VMATH_H

#include <stddef.h>

/* x[i] = exp(x[i]) for i < n. */
void a3_v_exp(float *x, size_t n);
/* x[i] = exp(x[i] - max) / sum_j exp(x[j] - max) for i < n (n >= 1). */
void a3_v_softmax(float *x, size_t n);
/* g[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i] for i < n. */
void a3_v_swiglu(float *g, const float *u, size_t n);
/* log(sum_i exp(x[i])) for i < n (n >= 1), computed as
 * max + log(sum exp(x[i] - max)) in double. */
double a3_v_logsumexp(const float *x, size_t n);

#endif
