/* stats: per-layer statistic accumulators (private to src/calib). */
#ifndef A3_CALIB_STATS_H
#define A3_CALIB_STATS_H

#include <stddef.h>

#include "a3/cache.h"

typedef struct {
    a3_cache *cache;
    int layer;
    double *buf;  /* widening buffer, STATS_BLOCK x max_width doubles */
    size_t rows;  /* tokens accumulated */
    int threads;  /* for the Gram products; the sums do not depend on it */
} stats_acc;

/* max_width: the widest activation row (max of n_heads*hd, d_ff). */
int stats_init(stats_acc *a, a3_cache *c, int layer, size_t max_width, int threads);
void stats_free(stats_acc *a);
/* q_off: column offset of each query head; kv_off: of each KV head. */
int stats_qkv(stats_acc *a, const float *q, const float *k, const float *v, size_t rows,
              const int *q_off, const int *kv_off);
int stats_z(stats_acc *a, const float *z, size_t rows, const int *q_off);
int stats_u(stats_acc *a, const float *u, size_t rows);
/* Fill the lower triangles. */
void stats_finish(stats_acc *a);

#endif
