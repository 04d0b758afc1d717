/* kernels internals: the vector implementation behind include/a3/kernels.h.
 * Each function handles output rows [o0, o1) (or elements [0, n)) on the
 * calling thread; kernels.c splits the work and chooses the code. */
#ifndef A3_KERNELS_IMPL_H
#define A3_KERNELS_IMPL_H

#include <stddef.h>

#include "a3/safetensors.h"

/* 1 when this CPU (and OS) can run the AVX2+FMA+F16C code. */
int a3__k_x86_ok(void);
/* 1 when it can also run the AVX-512F matvec. */
int a3__k_x86_512_ok(void);
/* Software prefetch policies of the matvec (kernels_x86.c says what each
 * does and where it won); they change timing only, never the bits. */
enum { A3__PF_NONE, A3__PF_L1, A3__PF_L2, A3__PF_COUNT };
/* avx512: the AVX-512F code (only after a3__k_x86_512_ok said yes); pf an
 * A3__PF_* policy. */
void a3__k_matvec_x86(a3_dtype dt, const unsigned char *W, int out, int in, const float *x,
                      int nrows, float *y, int acc, int o0, int o1, int avx512, int pf);
void a3__k_cvt_x86(a3_dtype dt, const unsigned char *src, size_t n, float *dst, int stream);

/* 1 when the AVX-512F code runs now (not forced off by a3_k_force_*,
 * A3_NO_SIMD or A3_NO_AVX512). */
int a3__k_use_avx512(void);

/* a3_k_gemm's AVX-512F pieces (gemm_half_x86.c). Micro-tile: MR rows of
 * W (two vectors of 16) by NR token rows. */
#define A3__KG_MR 32
#define A3__KG_NR 12
/* dst[(p / MR) * kc * MR + i * MR + p % MR] = float(W[p * ld + k0 + i]) for
 * p < round_up(mc, MR), i < kc: rows of W (dtype F16 or BF16, row stride
 * ld elements) as panels of MR rows, rows past mc zero. */
void a3__kg_pack_w_x86(a3_dtype dt, const unsigned char *W, size_t ld, int mc, int k0, int kc, float *dst);
/* d[i * NR + j] = x[j * ld + k0 + i] for i < kc, j < NR: one token panel
 * of x, rows j >= nr zero (nr <= NR). */
void a3__kg_pack_x_x86(const float *x, size_t ld, int nr, int k0, int kc, float *d);
/* c[j * ldc + o] = (beta ? c[j * ldc + o] : 0) + sum_i a[i * MR + o] *
 * b[i * NR + j] for j < nt, o < no (nt <= NR, no <= MR), the sum over i in
 * order. */
void a3__kg_kernel_x86(int kc, const float *a, const float *b, float *c, size_t ldc, int nt, int no, int beta);

#endif
