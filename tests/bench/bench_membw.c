/* bench_membw [MIB] [THREADS] [REPEATS]: memory read bandwidth, the
 * denominator of the decoding bound (a token reads every weight once).
 * A buffer of MIB MiB (default 1024, far beyond the caches) is filled,
 * then streamed REPEATS times (default 5) by THREADS threads (default:
 * all cores) through the same thread pool the forward pass uses, each
 * summing its contiguous part with the AVX2 weight-reading kernel's
 * access pattern (sequential 32-byte loads, four accumulators). Prints
 * the best pass in GB/s (10^9 bytes/s), and which matvec code a3 would
 * run on this CPU. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "a3/blas.h"
#include "a3/kernels.h"
#include "a3/pool.h"
#include "a3/util.h"

typedef struct {
    const uint64_t *buf;
    size_t n;
    uint64_t sums[A3_POOL_MAX];
} job;

static void part(void *p, int t, int nt)
{
    job *J = p;
    long lo, hi;
    a3_pool_split((long)J->n, t, nt, 64, &lo, &hi);
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (long i = lo; i + 4 <= hi; i += 4) {
        a += J->buf[i], b += J->buf[i + 1], c += J->buf[i + 2], d += J->buf[i + 3];
    }
    J->sums[t] = a ^ b ^ c ^ d; /* keeps the loads from being optimized away */
}

int main(int argc, char **argv)
{
    long mib = argc > 1 ? atol(argv[1]) : 1024;
    int threads = argc > 2 ? atoi(argv[2]) : a3_threads_default();
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    if (mib <= 0 || threads <= 0 || reps <= 0) {
        fprintf(stderr, "usage: bench_membw [MIB] [THREADS] [REPEATS]\n");
        return 2;
    }
    size_t n = (size_t)mib * 1024 * 1024 / sizeof(uint64_t);
    uint64_t *buf = a3_malloc_array(n, sizeof(uint64_t));
    if (!buf) {
        fprintf(stderr, "bench_membw: out of memory for %ld MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9E3779B97F4A7C15ULL;
    job J = {.buf = buf, .n = n};
    double best = 1e30;
    uint64_t check = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = a3_now();
        a3_pool_run(threads, part, &J);
        double dt = a3_now() - t0;
        best = dt < best ? dt : best;
        for (int t = 0; t < threads && t < A3_POOL_MAX; t++) check ^= J.sums[t];
    }
    printf("membw read_gbs=%.2f threads=%d size_mib=%ld best_of=%d matvec=%s (check %llx)\n",
           (double)n * sizeof(uint64_t) / best / 1e9, threads, mib, reps, a3_k_impl(),
           (unsigned long long)(check & 0xff));
    free(buf);
    return 0;
}
