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

#endif
