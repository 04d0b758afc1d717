/* stream_read: the threaded streaming read behind the decoding bound,
 * shared by bench_membw (which measures it) and bench_matvec (which
 * compares the kernel against it). Each thread sums its contiguous part of
 * the buffer in 64-bit words with four accumulators; with pf > 0 it also
 * asks for the line pf bytes ahead, into L1 or (l2) into L2, the way the
 * matvec kernel's prefetch policies l1 and l2 do, so the bound is at least
 * what the kernel's own access patterns can get. */
#ifndef A3_BENCH_STREAM_READ_H
#define A3_BENCH_STREAM_READ_H

#include <stddef.h>
#include <stdint.h>

#include "a3/pool.h"
#include "a3/util.h"

typedef struct {
    const uint64_t *buf;
    size_t n;
    long pf; /* prefetch distance in words, 0: none */
    int l2;  /* prefetch into L2 (T1) instead of L1 (T0) */
    uint64_t sums[A3_POOL_MAX];
} stream_job;

static void stream_part(void *p, int t, int nt)
{
    stream_job *J = p;
    long lo, hi;
    a3_pool_split((long)J->n, t, nt, 64, &lo, &hi);
    uint64_t a = 0, b = 0, c = 0, d = 0;
    if (J->pf > 0) {
        for (long i = lo; i + 8 <= hi; i += 8) { /* one 64-byte line per step */
            if (J->l2) __builtin_prefetch(J->buf + i + J->pf, 0, 2);
            else __builtin_prefetch(J->buf + i + J->pf, 0, 3);
            a += J->buf[i] + J->buf[i + 4], b += J->buf[i + 1] + J->buf[i + 5];
            c += J->buf[i + 2] + J->buf[i + 6], d += J->buf[i + 3] + J->buf[i + 7];
        }
    } else {
        for (long i = lo; i + 4 <= hi; i += 4) a += J->buf[i], b += J->buf[i + 1], c += J->buf[i + 2], d += J->buf[i + 3];
    }
    J->sums[t] = a ^ b ^ c ^ d; /* keeps the loads from being optimized away */
}

/* Seconds to read `bytes` (a multiple of 64) of buf on `threads` threads,
 * prefetching pf bytes ahead (0: hardware prefetch only) into L1 or (l2)
 * L2; folds the sums into *check. */
static double stream_read(const void *buf, size_t bytes, int threads, long pf, int l2, uint64_t *check)
{
    stream_job J = {.buf = buf, .n = bytes / 8, .pf = pf / 8, .l2 = l2};
    double t0 = a3_now();
    a3_pool_run(threads, stream_part, &J);
    double dt = a3_now() - t0;
    for (int t = 0; t < threads && t < A3_POOL_MAX; t++) *check ^= J.sums[t];
    return dt;
}

#endif
