/* gemm_fixed: see include/a3/gemm_fixed.h. Tiles go to thread t when
 * tile % n == t: any assignment would do, since a tile's result does not
 * depend on who computes it. */
#include <cblas.h>

#include "a3/blas.h"
#include "a3/gemm_fixed.h"
#include "a3/pool.h"

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

/* Run fn(ctx, tile) for tile < n_tiles on up to `threads` threads with
 * OpenBLAS at one thread (so the tiles never use OpenBLAS's splits). */
typedef struct {
    void (*fn)(const void *ctx, size_t tile);
    const void *ctx;
    size_t n_tiles;
} tile_job;

static void tile_part(void *p, int t, int nt)
{
    const tile_job *J = p;
    for (size_t i = (size_t)t; i < J->n_tiles; i += (size_t)nt) J->fn(J->ctx, i);
}

static void run_tiles(size_t n_tiles, int threads, void (*fn)(const void *, size_t), const void *ctx)
{
    tile_job J = {fn, ctx, n_tiles};
    int nt = threads < 1 ? 1 : threads;
    if ((size_t)nt > n_tiles) nt = n_tiles ? (int)n_tiles : 1;
    int prev = a3_blas_single_begin();
    a3_pool_run(nt, tile_part, &J);
    a3_blas_single_end(prev);
}

typedef struct {
    size_t rows;
    int out, in, acc;
    const float *x, *W;
    float *y;
    size_t col_tiles;
} sgemm_job;

static void sgemm_tile(const void *p, size_t tile)
{
    const sgemm_job *J = p;
    size_t r0 = tile / J->col_tiles * A3_GEMM_FIXED_ROWS, c0 = tile % J->col_tiles * A3_GEMM_FIXED_COLS;
    size_t nr = J->rows - r0 < A3_GEMM_FIXED_ROWS ? J->rows - r0 : A3_GEMM_FIXED_ROWS;
    size_t nc = (size_t)J->out - c0 < A3_GEMM_FIXED_COLS ? (size_t)J->out - c0 : A3_GEMM_FIXED_COLS;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nr, (int)nc, J->in, 1.0f, J->x + r0 * J->in, J->in,
                J->W + c0 * J->in, J->in, J->acc ? 1.0f : 0.0f, J->y + r0 * J->out + c0, J->out);
}

void a3_sgemm_nt_fixed(size_t rows, int out, int in, const float *x, const float *W, int acc, float *y,
                       int threads)
{
    if (rows == 0 || out <= 0 || in <= 0) return; /* in == 0: callers clear y themselves */
    sgemm_job J = {rows, out, in, acc, x, W, y, ceil_div((size_t)out, A3_GEMM_FIXED_COLS)};
    run_tiles(ceil_div(rows, A3_GEMM_FIXED_ROWS) * J.col_tiles, threads, sgemm_tile, &J);
}

typedef struct {
    int n, rows, ldx;
    const double *X;
    const int *off;
    double *G;
    size_t tiles; /* per matrix: T (T + 1) / 2 upper-triangle tiles, T column blocks */
    int T;
} gram_job;

static void gram_tile(const void *p, size_t tile)
{
    const gram_job *J = p;
    size_t k = tile / J->tiles, i = tile % J->tiles;
    int bi = 0, bj;
    while (i >= (size_t)(J->T - bi)) i -= (size_t)(J->T - bi), bi++; /* row block bi, column bj >= bi */
    bj = bi + (int)i;
    const double *X = J->X + (J->off ? J->off[k] : 0);
    double *G = J->G + k * (size_t)J->n * J->n;
    int c0 = bi * A3_GRAM_FIXED_COLS, c1 = bj * A3_GRAM_FIXED_COLS;
    int n0 = J->n - c0 < A3_GRAM_FIXED_COLS ? J->n - c0 : A3_GRAM_FIXED_COLS;
    int n1 = J->n - c1 < A3_GRAM_FIXED_COLS ? J->n - c1 : A3_GRAM_FIXED_COLS;
    if (bi == bj)
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, n0, J->rows, 1.0, X + c0, J->ldx, 1.0,
                    G + (size_t)c0 * J->n + c0, J->n);
    else
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n0, n1, J->rows, 1.0, X + c0, J->ldx, X + c1, J->ldx,
                    1.0, G + (size_t)c0 * J->n + c1, J->n);
}

void a3_dgram_fixed(int count, int n, int rows, const double *X, int ldx, const int *off, double *G,
                    int threads)
{
    if (count <= 0 || n <= 0 || rows <= 0) return;
    int T = (int)ceil_div((size_t)n, A3_GRAM_FIXED_COLS);
    gram_job J = {n, rows, ldx, X, off, G, (size_t)T * (T + 1) / 2, T};
    run_tiles((size_t)count * J.tiles, threads, gram_tile, &J);
}
