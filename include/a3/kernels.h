/* kernels: weight-format-aware building blocks of the forward pass.
 *
 * Weights are read in their file dtype (F32, F16, BF16; little-endian as
 * safetensors stores them), so decoding never converts or copies a weight
 * matrix: a3_k_matvec reads the F16/BF16 bits, widens them to float in
 * registers and multiplies. Prefill on F16/BF16 weights runs a3_k_gemm
 * where the AVX-512F code runs (it widens W while packing it for its own
 * kernel); elsewhere it converts blocks with a3_k_to_f32_2d and uses sgemm.
 *
 * Implementations chosen at run time: AVX2+FMA+F16C (x86-64 CPUs that
 * have all three, checked with cpuid by the compiler's
 * __builtin_cpu_supports), for the matvec AVX-512F where the CPU and OS
 * have it, and a portable scalar one. The build targets x86-64-v2, so the
 * vector code is compiled with function target attributes and only called
 * after the check. A3_NO_SIMD=1 in the environment, or
 * a3_k_force_scalar(1), selects the scalar code; A3_NO_AVX512=1 or
 * a3_k_force_avx2(1) the AVX2 matvec (tests compare them all). The
 * matvec's software prefetch is tuned at run time (a3_k_set_prefetch).
 *
 * Numerics: conversions are exact (F16 and BF16 values are all
 * representable in float32; NaN payloads are kept quiet NaNs). Dot
 * products accumulate in float32 in an implementation-specific order
 * (8- or 16-lane partial sums in the vector code), so results differ from a
 * sequential sum by float32 round-off only; each output element is
 * computed by one thread with a fixed order, so results do not depend on
 * the thread count. */
#ifndef A3_KERNELS_H
#define A3_KERNELS_H

#include <stddef.h>

#include "a3/safetensors.h"

/* "avx512f+f16c" (matvec; conversions run the AVX2 code), "avx2+fma+f16c"
 * or "scalar": what a3_k_* run right now. */
const char *a3_k_impl(void);
/* on != 0: use the scalar code from now on (0: back to the automatic
 * choice). For tests and benchmarks. */
void a3_k_force_scalar(int on);
/* on != 0: the AVX2 matvec even where AVX-512F is available. */
void a3_k_force_avx2(int on);

/* dst[i] = float(src[i]) for i < n, src of dtype dt (F32, F16 or BF16),
 * on up to `threads` threads. Returns A3_OK or A3_EUNSUPPORTED (other
 * dtypes; nothing written). */
int a3_k_to_f32(a3_dtype dt, const void *src, size_t n, float *dst, int threads);
/* The same for a block: dst[r * ld_dst + c] = float(src[r * ld_src + c])
 * for r < rows, c < cols (strides in elements), rows split over threads;
 * cached stores (the block is meant to be used while still in cache). */
int a3_k_to_f32_2d(a3_dtype dt, const void *src, size_t ld_src, size_t rows, size_t cols, float *dst,
                   size_t ld_dst, int threads);

/* One of several products of the same x (a3_k_matvec_n, a3_k_gemm_n):
 * y (rows, out; row stride ldy) from W (out, in) of dtype dt. */
#define A3_K_GEMM_MAX 4
typedef struct {
    a3_dtype dt;
    const void *W;
    int out;
    float *y;
    size_t ldy;
} a3_k_gemm_w;

/* Matrix times a few vectors, W (out, in) row-major of dtype dt:
 *   y[r * out + o] = (acc ? y[r * out + o] : 0) + sum_i W[o, i] x[r * in + i]
 * for r < nrows, o < out, on up to `threads` threads (rows of W are split
 * between threads, each W row is read once for all nrows vectors; the
 * result for one vector does not depend on nrows or threads). Meant
 * for nrows <= A3_K_MATVEC_ROWS; larger batches are faster through sgemm.
 * Returns A3_OK or A3_EUNSUPPORTED. */
int a3_k_matvec(a3_dtype dt, const void *W, int out, int in, const float *x, int nrows,
                float *y, int acc, int threads);
/* The same for n <= A3_K_GEMM_MAX matrices and the same x (q, k and v;
 * gate and up) in one call: one wake-up of the threads instead of n, their
 * rows taken from one queue; each result bit for bit what a3_k_matvec
 * gives it. ldy must equal out. Returns A3_OK or A3_EUNSUPPORTED (a dtype,
 * an ldy, or n; nothing written). */
int a3_k_matvec_n(int n, const a3_k_gemm_w *w, int in, const float *x, int nrows, int acc, int threads);

/* The matvec's software prefetch policy: "none", "l1" (2 KiB ahead into
 * L1), "l2" (8 KiB ahead into L2) or "auto" (default: the first large
 * calls try the three in turn and keep the fastest; see kernels.c). The
 * environment's A3_MATVEC_PREFETCH sets the same names. Timing only: the
 * results are bitwise the same under every policy. Returns A3_OK or
 * A3_EINVAL (unknown name; nothing changed). */
int a3_k_set_prefetch(const char *name);
/* Forget the tuner's choice (the next large calls tune again). */
void a3_k_prefetch_retune(void);
/* What runs now, e.g. "l2 (tuned)", "none (fixed)", "l1 (untuned: no
 * 1 MiB call yet)" (what small calls run until the tuner decides),
 * written to buf (40 bytes are enough); returns buf. */
const char *a3_k_prefetch(char *buf, size_t size);

/* Matrix times many vectors on F16/BF16 weights as stored (prefill):
 *   y[r * ldy + o] = (acc ? y[r * ldy + o] : 0) + sum_i W[o, i] x[r * in + i]
 * for r < rows, o < out, W (out, in) row-major, on up to `threads`
 * threads. W is widened to float while it is packed for an AVX-512F
 * kernel, a block of rows that stays in L2 at a time, so no float32 copy
 * of W is made. buf: nbuf floats, at least a3_k_gemm_floats(rows,
 * threads), any alignment. Each sum runs over ranges of 384 columns in
 * order, each in order: the bits depend neither on the thread count nor
 * on the other rows. Returns A3_OK; A3_EUNSUPPORTED (another dtype, or no
 * AVX-512F code now: see a3_k_impl), where the caller converts blocks and
 * uses sgemm instead; or A3_EINVAL (nbuf too small). Nothing is written
 * unless A3_OK. */
int a3_k_gemm(a3_dtype dt, const void *W, int out, int in, const float *x, size_t rows, float *y, size_t ldy,
              int acc, float *buf, size_t nbuf, int threads);
/* Several products of the same x at once (q, k, v; gate and up): x is
 * packed once for all of them and their row blocks share
 * one queue, so the threads meet once per span of columns instead of once
 * per product. Each product is bit for bit what a3_k_gemm gives it alone.
 * Returns what a3_k_gemm would (nothing written unless A3_OK) when it
 * would refuse any of them, or A3_EUNSUPPORTED when n is not in
 * [1, A3_K_GEMM_MAX]. */
int a3_k_gemm_n(int n, const a3_k_gemm_w *w, int in, const float *x, size_t rows, int acc, float *buf,
                size_t nbuf, int threads);
/* Floats of buf a3_k_gemm and a3_k_gemm_n need: x packed for up to 16
 * MiB of its columns at once (whatever the rows: more than 10920 are
 * multiplied that many at a time), plus 1.2 MB per thread for a block of
 * W. */
size_t a3_k_gemm_floats(size_t rows, int threads);
/* What prefill runs on F16/BF16 weights now: "avx512f (own GEMM, ...)"
 * when a3_k_gemm runs, else "weights converted to float32 in blocks,
 * OpenBLAS sgemm". */
const char *a3_k_gemm_impl(void);

/* Token rows up to which the forward pass uses a3_k_matvec on the weights
 * in place; above it, it converts the layer to float32 and uses sgemm.
 * The kernel reads each weight once for all rows and widens it once per
 * two rows, so its cost grows with the rows only through the FMAs, while
 * conversion + sgemm always costs a float32 write and read of the layer.
 * Measured on the llama-1b-shaped bench model (8 layers, F16, 1 thread,
 * interleaved, loaded machine): a prompt of 5 tokens 2.6x faster through
 * the kernel, 16 tokens 2.0x, 24 tokens 1.9x, 32 tokens 1.15x; so prompts
 * up to 32 tokens stay on the kernel. */
#define A3_K_MATVEC_ROWS 32

/* out (rows, d) = x * w / rms(x) per row (RMSNorm, sum of squares in
 * double), rows split over up to `threads` threads. */
void a3_k_rmsnorm(float *out, const float *x, const float *w, size_t rows, int d, float eps,
                  int threads);

#endif
