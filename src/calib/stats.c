/* stats: accumulate a layer's Gram matrices from forward-pass hooks.
 *
 * Activations arrive as float32 rows; they are widened to float64 in
 * blocks of STATS_BLOCK rows and added block after block (upper triangle;
 * the lower one is filled in by stats_finish), so the sums are float64 from
 * the first product on. Each block's products go through a3_dgram_fixed,
 * whose tiles do not depend on the thread count, and blocks are added in
 * row order: with the forward pass's fixed tiles (a3_model_run_layer) the
 * sums are bitwise the same for every --threads on one BLAS kernel. */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

#include "a3/gemm_fixed.h"

#define STATS_BLOCK 256

int stats_init(stats_acc *a, a3_cache *c, int layer, size_t max_width, int threads)
{
    memset(a, 0, sizeof *a);
    a->cache = c;
    a->layer = layer;
    a->threads = threads;
    a->buf = a3_malloc_array(STATS_BLOCK, max_width * sizeof(double));
    return a->buf ? 0 : -1;
}

void stats_free(stats_acc *a)
{
    free(a->buf);
    a->buf = NULL;
}

/* G[k] += X[:, off_k : off_k + hd]^T X[...] for each of n_blocks column
 * blocks of width hd, where X is (rows, width) float. */
static void gram_blocks(stats_acc *a, const float *x, size_t rows, int width, int hd, int n_blocks,
                        const int *off, double *G)
{
    for (size_t r0 = 0; r0 < rows; r0 += STATS_BLOCK) {
        size_t nr = rows - r0 < STATS_BLOCK ? rows - r0 : STATS_BLOCK;
        for (size_t i = 0; i < nr * (size_t)width; i++) a->buf[i] = x[r0 * width + i];
        a3_dgram_fixed(n_blocks, hd, (int)nr, a->buf, width, off, G, a->threads);
    }
}

int stats_qkv(stats_acc *a, const float *q, const float *k, const float *v, size_t rows, const int *q_off,
              const int *kv_off)
{
    const a3_cache *c = a->cache;
    a3_cache_layer *L = &c->layers[a->layer];
    int hd = c->head_dim;
    gram_blocks(a, q, rows, c->n_heads * hd, hd, c->n_heads, q_off, L->gq);
    gram_blocks(a, k, rows, c->n_kv_heads * hd, hd, c->n_kv_heads, kv_off, L->gk);
    gram_blocks(a, v, rows, c->n_kv_heads * hd, hd, c->n_kv_heads, kv_off, L->gv);
    return 0;
}

int stats_z(stats_acc *a, const float *z, size_t rows, const int *q_off)
{
    const a3_cache *c = a->cache;
    gram_blocks(a, z, rows, c->n_heads * c->head_dim, c->head_dim, c->n_heads, q_off, c->layers[a->layer].c);
    return 0;
}

int stats_u(stats_acc *a, const float *u, size_t rows)
{
    const a3_cache *c = a->cache;
    a3_cache_layer *L = &c->layers[a->layer];
    size_t ff = (size_t)c->d_ff;
    for (size_t r = 0; r < rows; r++)
        for (size_t n = 0; n < ff; n++) L->d[n] += (double)u[r * ff + n] * u[r * ff + n];
    if (L->ru) {
        int zero = 0;
        gram_blocks(a, u, rows, (int)ff, (int)ff, 1, &zero, L->ru);
    }
    a->rows += rows;
    return 0;
}

static void symmetrize(double *G, int n, int count)
{
    for (int k = 0; k < count; k++) {
        double *g = G + (size_t)k * n * n;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++) g[(size_t)i * n + j] = g[(size_t)j * n + i];
    }
}

void stats_finish(stats_acc *a)
{
    const a3_cache *c = a->cache;
    a3_cache_layer *L = &c->layers[a->layer];
    int hd = c->head_dim;
    symmetrize(L->gq, hd, c->n_heads);
    symmetrize(L->gk, hd, c->n_kv_heads);
    symmetrize(L->gv, hd, c->n_kv_heads);
    symmetrize(L->c, hd, c->n_heads);
    if (L->ru) symmetrize(L->ru, c->d_ff, 1);
}
