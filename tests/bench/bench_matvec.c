/* bench_matvec [D] [FF] [LAYERS] [THREADS] [REPEATS]: the decoding
 * kernel alone against a plain read of the same bytes. One buffer holds
 * LAYERS llama layers of F16 weights (q, o: D x D; k, v: D/4 x D; gate,
 * up: FF x D; down: D x FF; defaults 2048 8192 8 = the llama-1b-shaped
 * bench model, 0.97 GB). For each layer in turn, REPEATS times: the
 * threaded streaming read of its bytes (stream_read.h, without and with
 * software prefetch), then the matrix-vector products a decoding step
 * makes on them (a3_k_matvec, one vector, one call per matrix). Pairs a
 * few milliseconds apart see the same machine load, so the ratio holds on
 * a busy machine where the absolute figures do not. Prints the totals in
 * GB/s and matvec / the better read: what the kernel, the pool's wake-ups
 * and the row split cost against the bandwidth bound, without attention,
 * norms or the model file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/blas.h"
#include "a3/kernels.h"
#include "a3/pool.h"
#include "a3/util.h"
#include "stream_read.h"

int main(int argc, char **argv)
{
    int D = argc > 1 ? atoi(argv[1]) : 2048, FF = argc > 2 ? atoi(argv[2]) : 8192;
    int L = argc > 3 ? atoi(argv[3]) : 8, T = argc > 4 ? atoi(argv[4]) : a3_threads_default();
    int reps = argc > 5 ? atoi(argv[5]) : 5;
    if (D < 4 || FF < 1 || L < 1 || T < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_matvec [D] [FF] [LAYERS] [THREADS] [REPEATS]\n");
        return 2;
    }
    int KV = D / 4;
    size_t per = (size_t)D * D * 2 + (size_t)KV * D * 2 + (size_t)FF * D * 3; /* elements */
    size_t total = per * (size_t)L;
    uint16_t *w = a3_malloc_array(total, sizeof(uint16_t));
    float *x = a3_malloc_array((size_t)FF, sizeof(float)), *y = a3_malloc_array((size_t)FF * 2, sizeof(float));
    if (!w || !x || !y) {
        fprintf(stderr, "bench_matvec: out of memory for %zu MB\n", total * 2 / 1000000);
        return 1;
    }
    uint32_t s = 1;
    for (size_t i = 0; i < total; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = (uint16_t)(0x2000 | (s >> 20)); /* small positive halves, never Inf/NaN */
    }
    for (int i = 0; i < FF; i++) x[i] = (float)(i % 7) * 0.01f;
    /* Per layer, the read then the products over the same bytes: pairs
     * taken a few milliseconds apart see the same machine load. */
    const int shp[7][3] = {{D, D, 0}, {KV, D, 0}, {KV, D, 0}, {D, D, 1}, {FF, D, 0}, {FF, D, 0}, {D, FF, 1}};
    double t_rd = 0, t_rp = 0, t_mv = 0;
    uint64_t check = 0;
    for (int r = 0; r < reps; r++) {
        const uint16_t *p = w;
        for (int l = 0; l < L; l++, p += per) {
            t_rd += stream_read(p, per * 2, T, 0, &check);
            t_rp += stream_read(p, per * 2, T, 2048, &check);
            double t1 = a3_now();
            const uint16_t *q = p;
            for (int k = 0; k < 7; q += (size_t)shp[k][0] * shp[k][1], k++)
                a3_k_matvec(A3_DT_F16, q, shp[k][0], shp[k][1], x, 1, y, shp[k][2], T);
            t_mv += a3_now() - t1;
        }
    }
    double gb = (double)total * 2 / 1e9 * reps;
    double t_best = t_rd < t_rp ? t_rd : t_rp;
    printf("matvec read_gbs=%.2f read_prefetch_gbs=%.2f matvec_gbs=%.2f ratio=%.2f threads=%d size_gb=%.2f "
           "repeats=%d matvec=%s (check %x)\n", gb / t_rd, gb / t_rp, gb / t_mv, t_best / t_mv, T, gb / reps,
           reps, a3_k_impl(),
           (unsigned)((check ^ (uint64_t)y[0]) & 0xff));
    free(w), free(x), free(y);
    return 0;
}
