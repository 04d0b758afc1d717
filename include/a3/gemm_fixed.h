/* gemm_fixed: matrix products whose bits do not depend on the thread count.
 *
 * OpenBLAS divides a threaded GEMM between its threads by their number, and
 * its kernels round the parts of a divided product differently from the
 * whole (measured on the sample model: 1 and 2 threads give different
 * float32 bits in ~9% of layer 0's q projection, which calibration's
 * float64 statistics carry as ~1e-9 relative differences). The functions
 * below cut a product into tiles fixed by the shapes alone, compute every
 * tile with single-threaded BLAS and hand the tiles round-robin to up to
 * `threads` pool workers (include/a3/pool.h), OpenBLAS at one thread
 * meanwhile. Each output element is then produced by the same call on the
 * same operands whatever `threads` is, so results are bitwise identical for
 * every thread count on one BLAS kernel. Another kernel (Haswell, SkylakeX,
 * ...) still rounds differently: nothing here makes kernels agree.
 *
 * Cost: each tile packs its operands once more than one big call would;
 * at these tile sizes that was within timing noise (single thread,
 * 1024 x 11008 x 4096 sgemm: 2.84 s tiled vs 2.80-2.91 s whole). */
#ifndef A3_GEMM_FIXED_H
#define A3_GEMM_FIXED_H

#include <stddef.h>

/* Tile of a3_sgemm_nt_fixed: rows x output columns. */
#define A3_GEMM_FIXED_ROWS 512
#define A3_GEMM_FIXED_COLS 1024
/* Column tile of a3_dgram_fixed. */
#define A3_GRAM_FIXED_COLS 256

/* y (rows, out) = (acc ? y : 0) + x (rows, in) @ W^T, W stored (out, in);
 * all row-major float32, leading dimensions in, in and out. */
void a3_sgemm_nt_fixed(size_t rows, int out, int in, const float *x, const float *W, int acc,
                       float *y, int threads);

/* For k < count: the upper triangle of G_k (n, n), stored at G + k n n, +=
 * X_k^T X_k where X_k (rows, n) starts at X + off[k] with leading dimension
 * ldx (off NULL: one matrix at X). Float64; the lower triangles are not
 * touched. Tiles of A3_GRAM_FIXED_COLS columns: dsyrk on the diagonal,
 * dgemm above it. */
void a3_dgram_fixed(int count, int n, int rows, const double *X, int ldx, const int *off, double *G,
                    int threads);

#endif
