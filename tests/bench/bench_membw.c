/* bench_membw [MIB] [THREADS] [REPEATS]: memory read bandwidth, the
 * denominator of the decoding bound (a token reads every weight once).
 * A buffer of MIB MiB (default 1024, far beyond the caches) is filled,
 * then streamed REPEATS times (default 5) by THREADS threads (default:
 * all cores) through the same thread pool the forward pass uses
 * (stream_read.h: contiguous part per thread, four accumulators), each
 * pass once with the hardware prefetcher alone and once with each of the
 * matvec kernel's software prefetch patterns (2 KiB ahead into L1, 8 KiB
 * ahead into L2). read_gbs is the best pass of any kind (10^9 bytes/s),
 * so the bound is never below what the kernel's own access patterns could
 * reach; plain_gbs the best without prefetch. Also
 * names the matvec code a3 would run on this CPU. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "a3/blas.h"
#include "a3/kernels.h"
#include "a3/pool.h"
#include "a3/util.h"
#include "stream_read.h"

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
    double best = 1e30, best_plain = 1e30;
    uint64_t check = 0;
    for (int r = 0; r < reps; r++) {
        double dt = stream_read(buf, n * sizeof(uint64_t), threads, 0, 0, &check);
        best_plain = dt < best_plain ? dt : best_plain;
        dt = stream_read(buf, n * sizeof(uint64_t), threads, 2048, 0, &check);
        best = dt < best ? dt : best;
        dt = stream_read(buf, n * sizeof(uint64_t), threads, 8192, 1, &check);
        best = dt < best ? dt : best;
    }
    best = best_plain < best ? best_plain : best;
    printf("membw read_gbs=%.2f plain_gbs=%.2f threads=%d size_mib=%ld best_of=%d matvec=%s (check %llx)\n",
           (double)n * sizeof(uint64_t) / best / 1e9, (double)n * sizeof(uint64_t) / best_plain / 1e9, threads,
           mib, reps, a3_k_impl(),
           (unsigned long long)(check & 0xff));
    free(buf);
    return 0;
}
