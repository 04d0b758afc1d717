/* gemm_half: prefill products on F16/BF16 weights as stored (a3_k_gemm,
 * include/a3/kernels.h). The weights are widened to float while they are
 * packed for the kernel, so no separate float32 copy of W is written and
 * read back (conversion + OpenBLAS's own packing of that copy were 12% of
 * the samples of a 7B-shaped prefill).
 *
 * Blocking, as in BLIS: x is packed once per span of columns (as many
 * ranges of KC columns as fit in 16 MiB) into panels of NR token rows,
 * shared by the threads; then the threads take blocks of up to MC rows of
 * W (of any of the call's matrices) from one counter and, for each range
 * of the span in order, pack the block's range (at most MC x KC floats,
 * 1.2 MB: it stays in L2) into panels of MR rows and run the micro-kernel
 * over every token panel. Every output element is the sum over column
 * ranges in order, each range summed over its columns in order, whatever
 * thread computed it: the bits do not depend on the thread count. Memory:
 * the packed span (at most 16 MiB: more than 10920 token rows are
 * multiplied that many at a time) plus 1.2 MB per thread. */
#include <stdint.h>
#include <string.h>

#include "a3/kernels.h"
#include "a3/pool.h"
#include "kernels_impl.h"

#define MR A3__KG_MR
#define NR A3__KG_NR
/* Columns per range and most rows per block of W. Scratch program, 7B
 * shape (512 x 4096 times 4096 x 11008 F16), one thread: KC 256-512 and
 * MC 384-768 within the noise of each other (100-125 GFLOP/s); MC 1536
 * (1.2 x 2 MB per block) no better. */
#define KC 384
#define MC 768
/* x is packed for as many whole column ranges as fit in XCAP floats (16
 * MiB) at once: all of a 7B projection's at 512 tokens, so the threads
 * meet only once per matrix or few times. Packing one range at a time
 * made them wait for each other after every range (29 times for the 7B
 * down projection): llama-7b shape, 512 tokens, 2 threads, a3 eval
 * against the conversion + sgemm build, 1.05x with a meeting per range,
 * 1.24x with spans (medians of 3 and 4 interleaved runs). */
#define XCAP ((size_t)4 << 20)
/* Token rows multiplied at once: as many whole panels as let one range
 * of KC columns fit in XCAP (10920), so that the packed x never exceeds
 * it whatever the rows; more rows are done this many at a time (each
 * row's result does not depend on the others, so neither do the bits). */
#define ROWS_MAX (XCAP / KC / NR * NR)
#define ALIGN_FLOATS 16 /* 64 bytes: panels start on cache lines */

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* Columns of x packed at once for `rows` (<= ROWS_MAX) token rows: whole
 * ranges, at least one. */
static size_t span_cols(size_t rows)
{
    size_t k = XCAP / round_up(rows > 0 ? rows : 1, NR) / KC * KC;
    return k > KC ? k : KC;
}
static size_t x_floats(size_t rows)
{
    if (rows > ROWS_MAX) rows = ROWS_MAX;
    return span_cols(rows) * round_up(rows, NR) + ALIGN_FLOATS;
}
static size_t w_floats(void) { return (size_t)KC * MC + ALIGN_FLOATS; }

/* The shares a3_pool_run will make of `threads`. */
static int pool_threads(int threads) { return threads < 1 ? 1 : threads > A3_POOL_MAX ? A3_POOL_MAX : threads; }

size_t a3_k_gemm_floats(size_t rows, int threads)
{
    return x_floats(rows) + (size_t)pool_threads(threads) * w_floats();
}

const char *a3_k_gemm_impl(void)
{
    return a3__k_use_avx512() ? "avx512f (own GEMM, weights widened while packed)"
                              : "weights converted to float32 in blocks, OpenBLAS sgemm";
}

static float *aligned(float *p)
{
    uintptr_t u = (uintptr_t)p, a = ALIGN_FLOATS * sizeof(float);
    return (float *)(void *)(((u + a - 1) / a) * a);
}

typedef struct {
    const a3_k_gemm_w *w;
    int mc[A3_K_GEMM_MAX]; /* rows per block of matrix m */
    const float *x;
    float *xp, *wp;
    size_t rows, rp; /* rp: rows rounded up to whole panels */
    int in, s0, sn, acc;
    a3_chunks blocks; /* range m: matrix m's blocks of mc[m] rows */
} kg_job;
_Static_assert(A3_K_GEMM_MAX <= A3_CHUNKS_MAX, "a call's matrices must fit in one a3_chunks");

/* x's columns [s0, s0 + sn) as KC-column ranges, each as token panels:
 * range g (columns k0 = s0 + g KC, kc of them) at xp + g KC rp, panel tp
 * at + tp kc NR, element [i * NR + j] = x[(tp NR + j) * in + k0 + i], zero
 * for rows past the last. Token panels split between the threads. */
static void pack_x_part(void *p, int t, int nt)
{
    kg_job *J = p;
    long lo, hi;
    a3_pool_split((long)(J->rp / NR), t, nt, 1, &lo, &hi);
    for (int g = 0; g * KC < J->sn; g++) {
        int k0 = J->s0 + g * KC, kc = J->sn - g * KC < KC ? J->sn - g * KC : KC;
        for (long tp = lo; tp < hi; tp++) {
            float *d = J->xp + (size_t)g * KC * J->rp + (size_t)tp * (size_t)kc * NR;
            size_t r0 = (size_t)tp * NR;
            int nr = J->rows - r0 < NR ? (int)(J->rows - r0) : NR;
            a3__kg_pack_x_x86(J->x + r0 * (size_t)J->in, (size_t)J->in, nr, k0, kc, d);
        }
    }
}

/* Blocks of rows of the matrices, numbered one after the other, from the
 * shared counter; for each, every column range of the span in order: pack
 * the block's range, multiply it with every token panel. */
static void gemm_part(void *p, int t, int nt)
{
    kg_job *J = p;
    (void)nt;
    float *wp = J->wp + (size_t)t * w_floats(); /* aligned: w_floats is whole lines */
    int m;
    long b;
    while (a3_chunks_next(&J->blocks, &m, &b)) {
        const a3_k_gemm_w *w = &J->w[m];
        int o0 = (int)b * J->mc[m], mc = w->out - o0 < J->mc[m] ? w->out - o0 : J->mc[m];
        const unsigned char *W = (const unsigned char *)w->W + (size_t)o0 * (size_t)J->in * 2;
        for (int g = 0; g * KC < J->sn; g++) {
            int k0 = J->s0 + g * KC, kc = J->sn - g * KC < KC ? J->sn - g * KC : KC;
            a3__kg_pack_w_x86(w->dt, W, (size_t)J->in, mc, k0, kc, wp);
            const float *xg = J->xp + (size_t)g * KC * J->rp;
            for (size_t r0 = 0; r0 < J->rows; r0 += NR) {
                int nr = J->rows - r0 < NR ? (int)(J->rows - r0) : NR;
                const float *xb = xg + (r0 / NR) * (size_t)kc * NR;
                float *yb = w->y + r0 * w->ldy + (size_t)o0;
                for (int q = 0; q < mc; q += MR)
                    a3__kg_kernel_x86(kc, wp + (size_t)q * (size_t)kc, xb, yb + q, w->ldy, nr, mc - q,
                                      J->acc || k0 > 0);
            }
        }
    }
}

/* Rows [0, rows) with rows <= ROWS_MAX; checks done. */
static int gemm_rows(int n, const a3_k_gemm_w *w, int in, const float *x, size_t rows, int acc, float *buf,
                     int threads)
{
    if (in <= 0) {
        for (int m = 0; m < n; m++)
            if (!acc && w[m].out > 0)
                for (size_t r = 0; r < rows; r++) memset(w[m].y + r * w[m].ldy, 0, (size_t)w[m].out * sizeof(float));
        return A3_OK;
    }
    threads = pool_threads(threads); /* as a3_k_gemm_floats counted them */
    kg_job J = {.w = w, .x = x, .rows = rows, .rp = round_up(rows, NR), .in = in, .acc = acc};
    long nblocks[A3_K_GEMM_MAX];
    for (int m = 0; m < n; m++) {
        /* Blocks of at most MC rows, a whole number per thread where that
         * costs nothing (so that the last round does not leave a thread
         * idle), each a multiple of MR rows. */
        int out = w[m].out > 0 ? w[m].out : 0;
        int per = (out + threads * MC - 1) / (threads * MC) * threads;
        int mc = per > 0 ? (int)round_up((size_t)((out + per - 1) / per), MR) : MR;
        J.mc[m] = mc > MC ? MC : mc;
        nblocks[m] = (out + J.mc[m] - 1) / J.mc[m];
    }
    if (a3_chunks_init(&J.blocks, n, nblocks) != 0) return A3_EINVAL; /* n <= A3_K_GEMM_MAX: cannot happen */
    if (a3_chunks_total(&J.blocks) == 0) return A3_OK;
    /* both fit in a3_k_gemm_floats: the x part is whole lines long */
    J.xp = aligned(buf);
    J.wp = aligned(J.xp + span_cols(rows) * J.rp);
    size_t span = span_cols(rows);
    for (size_t s0 = 0; s0 < (size_t)in; s0 += span) {
        J.s0 = (int)s0;
        J.sn = (int)((size_t)in - s0 < span ? (size_t)in - s0 : span);
        a3_pool_run(threads, pack_x_part, &J);
        a3_chunks_rewind(&J.blocks);
        a3_pool_run(threads, gemm_part, &J);
    }
    return A3_OK;
}

int a3_k_gemm_n(int n, const a3_k_gemm_w *w, int in, const float *x, size_t rows, int acc, float *buf,
                size_t nbuf, int threads)
{
    if (n < 1 || n > A3_K_GEMM_MAX || !a3__k_use_avx512()) return A3_EUNSUPPORTED;
    for (int m = 0; m < n; m++)
        if (w[m].dt != A3_DT_F16 && w[m].dt != A3_DT_BF16) return A3_EUNSUPPORTED;
    if (rows == 0) return A3_OK;
    if (nbuf < a3_k_gemm_floats(rows, threads)) return A3_EINVAL;
    for (size_t r0 = 0; r0 < rows; r0 += ROWS_MAX) {
        a3_k_gemm_w part[A3_K_GEMM_MAX];
        for (int m = 0; m < n; m++) {
            part[m] = w[m];
            part[m].y += r0 * w[m].ldy;
        }
        int rc = gemm_rows(n, part, in, x + r0 * (size_t)(in > 0 ? in : 0),
                           rows - r0 < ROWS_MAX ? rows - r0 : ROWS_MAX, acc, buf, threads);
        if (rc != A3_OK) return rc;
    }
    return A3_OK;
}

int a3_k_gemm(a3_dtype dt, const void *W, int out, int in, const float *x, size_t rows, float *y, size_t ldy,
              int acc, float *buf, size_t nbuf, int threads)
{
    a3_k_gemm_w w = {dt, W, out, y, ldy};
    return a3_k_gemm_n(1, &w, in, x, rows, acc, buf, nbuf, threads);
}
