/* bench_matvec [D] [FF] [LAYERS] [THREADS] [REPEATS]: the decoding
 * kernel alone against a plain read of the same bytes. One buffer holds
 * LAYERS llama layers of F16 weights (q, o: D x D; k, v: D/4 x D; gate,
 * up: FF x D; down: D x FF; defaults 2048 8192 8 = the llama-1b-shaped
 * bench model, 0.97 GB). Taking turns layer by layer, REPEATS times over
 * every layer: the threaded streaming read of a layer's bytes
 * (stream_read.h, without software prefetch and with each of the
 * kernel's two patterns), and the matrix-vector products a decoding step
 * makes on a layer (a3_k_matvec, one vector, one call per matrix).
 * Measurements a few milliseconds apart see the same machine load, so the
 * ratio holds on a busy machine where the absolute figures do not; run
 * with LAYERS >= 4 so no layer is still cached from its previous
 * measurement (the loop below says why). Prints the totals in
 * GB/s and matvec / the better read: what the kernel, the pool's wake-ups
 * and the row split cost against the bandwidth bound, without attention,
 * norms or the model file. A second line gives the same ratio with each
 * software prefetch policy fixed (a3_k_set_prefetch) and the policy the
 * tuner chose: the figures
 * behind kernels_x86.c's notes on which policy wins where. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/blas.h"
#include "a3/kernels.h"
#include "a3/pool.h"
#include "a3/util.h"
#include "stream_read.h"

/* One decoding step's seven products on one layer's weights. */
static void layer_products(const uint16_t *p, const int shp[7][3], const float *x, float *y, int T)
{
    for (int k = 0; k < 7; p += (size_t)shp[k][0] * shp[k][1], k++)
        a3_k_matvec(A3_DT_F16, p, shp[k][0], shp[k][1], x, 1, y, shp[k][2], T);
}

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
    /* Let the prefetch tuner decide first (kernels.c: 48 large calls per
     * policy, a third of them with each), cycling through the layers so
     * it times reads from memory: the timed runs below then measure the
     * policy it keeps, not its trials. */
    char pf[48];
    for (int l = 0; l < 64 * L && !strstr(a3_k_prefetch(pf, sizeof pf), "(tuned)") &&
                    !strstr(pf, "(fixed)"); l++)
        layer_products(w + per * (size_t)(l % L), shp, x, y, T);
    static const char *const pol[3] = {"none", "l1", "l2"};
    uint64_t check = 0;
    /* Seven measurements (three reads, the products as tuned, the products
     * under each policy fixed) take turns, step by step, and each step
     * moves to the next layer: 7 and LAYERS share no factor at the
     * default 8, so every measurement meets every layer, and a layer comes
     * back only after LAYERS - 1 others (840 MB at the defaults), beyond
     * even a 260 MiB last-level cache. Reading a layer right before its
     * products, as this benchmark once did, let the products find it in
     * such a cache (up to 1.1x "the bound" on a Xeon). */
    double t_k[7] = {0};
    for (long i = 0; i < (long)reps * L * 7; i++) {
        int k = (int)(i % 7);
        const uint16_t *p = w + per * (size_t)(i % L);
        if (k >= 4) a3_k_set_prefetch(pol[k - 4]);
        double t1 = a3_now();
        if (k == 0) stream_read(p, per * 2, T, 0, 0, &check);
        else if (k == 1) stream_read(p, per * 2, T, 2048, 0, &check);
        else if (k == 2) stream_read(p, per * 2, T, 8192, 1, &check);
        else layer_products(p, shp, x, y, T);
        t_k[k] += a3_now() - t1;
        if (k >= 4) a3_k_set_prefetch("auto");
    }
    double t_rd = t_k[0], t_rp = t_k[1], t_rp2 = t_k[2], t_mv = t_k[3], *t_pol = t_k + 4;
    double gb = (double)total * 2 / 1e9 * reps;
    double t_best = t_rd < t_rp ? t_rd : t_rp;
    t_best = t_rp2 < t_best ? t_rp2 : t_best;
    printf("matvec read_gbs=%.2f read_prefetch_gbs=%.2f read_prefetch_l2_gbs=%.2f matvec_gbs=%.2f ratio=%.2f "
           "threads=%d size_gb=%.2f repeats=%d matvec=%s (check %x)\n", gb / t_rd, gb / t_rp, gb / t_rp2,
           gb / t_mv, t_best / t_mv, T, gb / reps,
           reps, a3_k_impl(),
           (unsigned)((check ^ (uint64_t)y[0]) & 0xff));
    char chosen[48];
    printf("policies none_vs_read=%.2f l1_vs_read=%.2f l2_vs_read=%.2f auto=%s threads=%d\n", t_best / t_pol[0],
           t_best / t_pol[1], t_best / t_pol[2], a3_k_prefetch(chosen, sizeof chosen), T);
    free(w), free(x), free(y);
    return 0;
}
