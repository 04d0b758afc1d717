/* pool: a small persistent pool of worker threads for data-parallel loops.
 *
 * a3_pool_run(n, fn, ctx) calls fn(ctx, t, n) once for every t in [0, n),
 * t = 0 on the calling thread and the others on workers that are created on
 * first use. Between calls a worker polls for the next one for up to
 * 100 us (decoding makes a few hundred calls per token, and waking a
 * sleeping thread costs tens of microseconds in a virtual machine), then
 * sleeps on a condition variable, so it does not spin for long against
 * OpenBLAS's own threads; a3_pool_set_spin_us changes the limit (0: sleep
 * at once, for machines shared with other work). Creating threads per
 * call would cost more than the work of the small ones.
 *
 * Guarantees: every share runs exactly once before a3_pool_run returns,
 * whatever happens. When the pool is already busy (a nested call from
 * inside fn, or a second thread of the caller's program) or a worker
 * cannot be created, the remaining shares run one after the other on the
 * calling thread instead: slower, never wrong. fn must therefore not wait
 * for another share of the same call. */
#ifndef A3_POOL_H
#define A3_POOL_H

#include <stdatomic.h>

typedef void (*a3_pool_fn)(void *ctx, int t, int n);

/* Run fn(ctx, t, n) for t = 0..n-1 (n <= 1: just fn(ctx, 0, 1)). n is
 * capped at A3_POOL_MAX. */
void a3_pool_run(int n, a3_pool_fn fn, void *ctx);

#define A3_POOL_MAX 64

/* How long workers (and a caller waiting for them) poll before sleeping:
 * 0 to A3_POOL_SPIN_MAX_US microseconds, default 100. Returns 0, or -1
 * (out of range; nothing changed). Timing only: results are the same. */
#define A3_POOL_SPIN_MAX_US 1000000L
int a3_pool_set_spin_us(long us);
long a3_pool_spin_us(void);

/* Split [0, total) into n nearly equal parts, aligned to `align` items
 * (the last part takes the remainder): part t is [*lo, *hi). */
void a3_pool_split(long total, int t, int n, long align, long *lo, long *hi);

/* Chunks of work numbered one after the other over up to A3_CHUNKS_MAX
 * ranges (one per matrix of a call, say) and handed out one at a time
 * from a shared counter: a share that finishes early takes what another
 * has not started, and one call's ranges need one meeting of the threads.
 * Init (or rewind) before a3_pool_run; every share then loops on
 * a3_chunks_next until it returns 0. */
#define A3_CHUNKS_MAX 4
typedef struct {
    int n;
    long first[A3_CHUNKS_MAX + 1]; /* first[i]: range i's first chunk number */
    atomic_long next;
} a3_chunks;

/* n ranges (n < 1: one empty range, count not read); range i has
 * count[i] chunks (negative counts as 0). The counter starts at the first
 * chunk. 0, or -1 when n > A3_CHUNKS_MAX: then c hands out nothing (the
 * ranges that fit are not handed out alone, which would drop the rest's
 * work silently). */
__attribute__((warn_unused_result)) int a3_chunks_init(a3_chunks *c, int n, const long *count);
/* Hand out the same chunks again (no share of a call may be running). */
void a3_chunks_rewind(a3_chunks *c);
/* All chunks of all ranges. */
long a3_chunks_total(const a3_chunks *c);
/* Take a chunk: 1 with its range and its index within that range, or 0
 * once all are taken. Safe from any number of threads at once; each
 * chunk is taken exactly once. */
int a3_chunks_next(a3_chunks *c, int *range, long *index);

#endif
