/* bench_calib MODEL_DIR [NWIN] [SEQLEN]: calibration throughput against the
 * plain forward pass over the same tokens, and peak RSS against the
 * estimate `a3 calibrate` prints. Calibration runs first so that the peak
 * RSS reading is its own. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "a3/cache.h"
#include "a3/calib.h"
#include "a3/model.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_calib MODEL_DIR [NWIN] [SEQLEN]\n");
        return 2;
    }
    a3_err err = {0};
    a3_model *m;
    if (a3_model_open(argv[1], &m, &err)) {
        fprintf(stderr, "bench_calib: %s\n", err.msg);
        return 1;
    }
    const a3_config *c = a3_model_config(m);
    int nw = argc > 2 ? atoi(argv[2]) : 16, L = argc > 3 ? atoi(argv[3]) : 256;
    if (L > c->max_seq) L = c->max_seq;
    size_t rows = (size_t)nw * L;
    int32_t *tok = malloc(rows * sizeof *tok);
    for (size_t i = 0; i < rows; i++) tok[i] = (int32_t)((i * 7919 + 13) % (size_t)c->vocab);
    a3_cache *cache = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 0);
    a3_calib_opts o = {0};
    double t0 = a3_now();
    if (!cache || a3_calibrate(m, tok, nw, L, &o, cache, NULL, NULL, &err)) {
        fprintf(stderr, "bench_calib: %s\n", err.msg);
        return 1;
    }
    double tc = a3_now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double rss = (double)ru.ru_maxrss * 1024.0, est = (double)a3_calib_memory_estimate(c, nw, L, 0);
    float *hid = malloc(rows * (size_t)c->d * sizeof(float));
    t0 = a3_now();
    a3_model_forward(m, tok, nw, L, hid, &err);
    double tf = a3_now() - t0;
    printf("calibrate %-26.26s d=%-5d L=%-3d %d x %d tok: %8.0f tok/s, forward %8.0f tok/s, "
           "calibration/forward time %.2fx; peak RSS %.1f MiB vs estimate %.1f MiB (kernel %s)\n",
           argv[1], c->d, c->n_layers, nw, L, rows / tc, rows / tf, tc / tf, rss / 1048576.0, est / 1048576.0,
           openblas_get_corename());
    free(hid);
    free(tok);
    a3_cache_free(cache);
    a3_model_free(m);
    return 0;
}
