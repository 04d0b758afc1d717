/* kernels: dispatch between the vector and the scalar code, threading, and
 * the portable scalar implementations (see include/a3/kernels.h). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/kernels.h"
#include "a3/pool.h"
#include "a3/util.h"
#include "kernels_impl.h"

/* -1: not decided yet; 0: scalar; 1: x86 vector code. Decided once (the
 * CPU does not change); a benign race at worst computes it twice. */
static int simd_state = -1;
static int forced_scalar;

static int use_simd(void)
{
    if (forced_scalar) return 0;
    if (simd_state < 0) {
        const char *e = getenv("A3_NO_SIMD");
        simd_state = (e && *e && strcmp(e, "0") != 0) ? 0 : a3__k_x86_ok();
    }
    return simd_state;
}

/* The matvec's AVX-512F code, decided the same way (A3_NO_AVX512=1 keeps
 * the AVX2 code, for comparisons). */
static int avx512_state = -1;
static int forced_avx2;

static int use_avx512(void)
{
    if (!use_simd() || forced_avx2) return 0;
    if (avx512_state < 0) {
        const char *e = getenv("A3_NO_AVX512");
        avx512_state = (e && *e && strcmp(e, "0") != 0) ? 0 : a3__k_x86_512_ok();
    }
    return avx512_state;
}

int a3__k_use_avx512(void) { return use_avx512(); }

const char *a3_k_impl(void)
{
    return use_avx512() ? "avx512f+f16c" : use_simd() ? "avx2+fma+f16c" : "scalar";
}
void a3_k_force_scalar(int on) { forced_scalar = on != 0; }
void a3_k_force_avx2(int on) { forced_avx2 = on != 0; }

static inline uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

static inline float elem(a3_dtype dt, const unsigned char *w, size_t i)
{
    if (dt == A3_DT_F16) return a3_f16_to_f32(le16(w + 2 * i));
    if (dt == A3_DT_BF16) return a3_bf16_to_f32(le16(w + 2 * i));
    uint32_t u = (uint32_t)w[4 * i] | (uint32_t)w[4 * i + 1] << 8 | (uint32_t)w[4 * i + 2] << 16 |
                 (uint32_t)w[4 * i + 3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int supported(a3_dtype dt) { return dt == A3_DT_F32 || dt == A3_DT_F16 || dt == A3_DT_BF16; }

/* ---- conversion -------------------------------------------------------- */

typedef struct {
    a3_dtype dt;
    const unsigned char *src;
    size_t n;
    float *dst;
    int simd, stream;
} cvt_job;

static void cvt_part(void *p, int t, int nt)
{
    const cvt_job *J = p;
    long lo, hi;
    a3_pool_split((long)J->n, t, nt, 1024, &lo, &hi);
    if (lo >= hi) return;
    size_t es = a3_dtype_size(J->dt);
    const unsigned char *s = J->src + (size_t)lo * es;
    float *d = J->dst + lo;
    size_t n = (size_t)(hi - lo);
    if (J->simd) a3__k_cvt_x86(J->dt, s, n, d, J->stream);
    else
        for (size_t i = 0; i < n; i++) d[i] = elem(J->dt, s, i);
}

/* Below this many elements one thread converts faster than two wake up. */
#define CVT_PAR_MIN (1 << 16)
/* From this many elements (64 MB of float32, beyond a last-level cache)
 * the output is written with non-temporal stores: it leaves the cache
 * before its reader comes back to it in any case. Smaller outputs stay
 * cached for the product that follows. */
#define CVT_STREAM_MIN ((size_t)16 << 20)

int a3_k_to_f32(a3_dtype dt, const void *src, size_t n, float *dst, int threads)
{
    if (!supported(dt)) return A3_EUNSUPPORTED;
    cvt_job J = {dt, src, n, dst, use_simd(), n >= CVT_STREAM_MIN};
    a3_pool_run(n < CVT_PAR_MIN ? 1 : threads, cvt_part, &J);
    return A3_OK;
}

typedef struct {
    a3_dtype dt;
    const unsigned char *src;
    size_t ld_src, rows, cols, ld_dst;
    float *dst;
    int simd;
} cvt2_job;

static void cvt2_part(void *p, int t, int nt)
{
    const cvt2_job *J = p;
    long lo, hi;
    a3_pool_split((long)J->rows, t, nt, 1, &lo, &hi);
    size_t es = a3_dtype_size(J->dt);
    /* Each row contributes a short run (a block's columns, 0.5-1 KiB of
     * F16 at 7B) at a long stride, which the hardware prefetcher follows
     * poorly: ask for the row 4 ahead. perf, llama-7b shape, 512 tokens,
     * one thread, loaded machine: the conversion's share of the samples
     * 5.5% without, 2.8% with. Into L2 (T1), not with the non-temporal
     * hint: on a Xeon (AVX-512, 2026-12-03) perf put 96% of this loop's
     * own samples on the instruction after prefetchnta, and a one-off
     * scratch program converting 4096 x 512 blocks of 24 F16 4096 x 4096
     * matrices (best of 6) read 3.1-3.9 GB/s with NTA, 4.7-5.0 with T1,
     * 4.3-4.7 with none. */
    size_t bytes = J->cols * es, ahead = 4 * J->ld_src * es;
    for (long r = lo; r < hi; r++) {
        const unsigned char *s = J->src + (size_t)r * J->ld_src * es;
        if (r + 4 < hi)
            for (size_t b = 0; b < bytes; b += 64) __builtin_prefetch(s + ahead + b, 0, 2);
        float *d = J->dst + (size_t)r * J->ld_dst;
        if (J->simd) a3__k_cvt_x86(J->dt, s, J->cols, d, 0);
        else
            for (size_t i = 0; i < J->cols; i++) d[i] = elem(J->dt, s, i);
    }
}

int a3_k_to_f32_2d(a3_dtype dt, const void *src, size_t ld_src, size_t rows, size_t cols, float *dst,
                   size_t ld_dst, int threads)
{
    if (!supported(dt)) return A3_EUNSUPPORTED;
    if (rows == 0 || cols == 0) return A3_OK;
    cvt2_job J = {dt, src, ld_src, rows, cols, ld_dst, dst, use_simd()};
    a3_pool_run(rows * cols < CVT_PAR_MIN ? 1 : threads, cvt2_part, &J);
    return A3_OK;
}

/* ---- matrix times vectors ------------------------------------------------ */

/* The software prefetch policy (kernels_impl.h). The fastest one depends on
 * the host (kernels_x86.c), so by default the matvec tunes it itself: the
 * first TUNE_CALLS large calls of each policy (at least TUNE_MIN_BYTES of
 * weights each, so the time is the memory's, not the call's) run the
 * policies in turn, interleaved call by call so that they see the same
 * machine, and the policy with the best total bytes / seconds is used
 * from then on. In decoding that is the first few tokens: llama-1b's
 * shapes make 7 such calls per layer. The bits never depend on the
 * policy, so neither does any result; only the speed does.
 * A3_MATVEC_PREFETCH=none|l1|l2 (or a3_k_set_prefetch) fixes one; the CLI
 * refuses other values at start (main.c). */
#define TUNE_CALLS 48
#define TUNE_MIN_BYTES (1u << 20)

static const char *const pf_names[A3__PF_COUNT] = {"none", "l1", "l2"};
static atomic_int pf_forced = -1; /* a3_k_set_prefetch; -1: not called, A3__PF_COUNT: auto */
static atomic_int pf_env = -2;    /* A3_MATVEC_PREFETCH: -2 unread, -1 auto */
static atomic_int pf_chosen = -1; /* the tuner's outcome; -1: still tuning */
static pthread_mutex_t tune_mu = PTHREAD_MUTEX_INITIALIZER;
static int tune_calls[A3__PF_COUNT], tune_next;
static double tune_sec[A3__PF_COUNT], tune_bytes[A3__PF_COUNT];

static int pf_fixed(void)
{
    int f = atomic_load(&pf_forced);
    if (f >= 0) return f < A3__PF_COUNT ? f : -1;
    int e = atomic_load(&pf_env);
    if (e == -2) {
        const char *v = getenv("A3_MATVEC_PREFETCH");
        e = -1;
        for (int i = 0; v && i < A3__PF_COUNT; i++)
            if (strcmp(v, pf_names[i]) == 0) e = i;
        atomic_store(&pf_env, e);
    }
    return e;
}

int a3_k_set_prefetch(const char *name)
{
    if (!name || strcmp(name, "auto") == 0) { /* overrides the environment too */
        atomic_store(&pf_forced, A3__PF_COUNT);
        return A3_OK;
    }
    for (int i = 0; i < A3__PF_COUNT; i++)
        if (strcmp(name, pf_names[i]) == 0) {
            atomic_store(&pf_forced, i);
            return A3_OK;
        }
    return A3_EINVAL;
}

void a3_k_prefetch_retune(void)
{
    pthread_mutex_lock(&tune_mu);
    memset(tune_calls, 0, sizeof tune_calls), memset(tune_sec, 0, sizeof tune_sec);
    memset(tune_bytes, 0, sizeof tune_bytes), tune_next = 0;
    atomic_store(&pf_chosen, -1);
    pthread_mutex_unlock(&tune_mu);
}

const char *a3_k_prefetch(char *buf, size_t size)
{
    int f = pf_fixed();
    if (f >= 0) snprintf(buf, size, "%s (fixed)", pf_names[f]);
    else {
        int c = atomic_load(&pf_chosen);
        if (c >= 0) snprintf(buf, size, "%s (tuned)", pf_names[c]);
        else snprintf(buf, size, "l1 (untuned: no 1 MiB call yet)"); /* pf_begin's choice until then */
    }
    return buf;
}

/* The policy for a call reading `bytes` of weights; *timed set when the
 * call is a tuning sample the caller must time and report to pf_end. */
static int pf_begin(size_t bytes, int *timed)
{
    *timed = 0;
    int f = pf_fixed();
    if (f >= 0) return f;
    int c = atomic_load(&pf_chosen);
    if (c >= 0) return c;
    if (bytes < TUNE_MIN_BYTES) return A3__PF_L1;
    pthread_mutex_lock(&tune_mu);
    int p = tune_next;
    tune_next = (tune_next + 1) % A3__PF_COUNT;
    pthread_mutex_unlock(&tune_mu);
    *timed = 1;
    return p;
}

static void pf_end(int p, size_t bytes, double sec)
{
    pthread_mutex_lock(&tune_mu);
    if (atomic_load(&pf_chosen) < 0) {
        tune_calls[p]++, tune_sec[p] += sec, tune_bytes[p] += (double)bytes;
        int done = 1, best = 0;
        for (int i = 0; i < A3__PF_COUNT; i++) {
            if (tune_calls[i] < TUNE_CALLS) done = 0;
            /* rate i > rate best, without dividing by a zero time */
            if (tune_bytes[i] * tune_sec[best] > tune_bytes[best] * tune_sec[i]) best = i;
        }
        if (done) atomic_store(&pf_chosen, best);
    }
    pthread_mutex_unlock(&tune_mu);
}

/* One matrix of a call (a3_k_matvec: one; a3_k_matvec_n: up to
 * A3_K_GEMM_MAX with the same x). */
typedef struct {
    a3_dtype dt;
    const unsigned char *W;
    int out;
    float *y;
    long chunk; /* rows per chunk, a multiple of 16 */
} mv_mat;

typedef struct {
    mv_mat m[A3_K_GEMM_MAX];
    int in, nrows, acc, simd, avx512, pf;
    const float *x;
    a3_chunks chunks; /* range i: matrix i's chunks of m[i].chunk rows */
} mv_job;
_Static_assert(A3_K_GEMM_MAX <= A3_CHUNKS_MAX, "a call's matrices must fit in one a3_chunks");

static void mv_scalar(const mv_job *J, const mv_mat *M, int o0, int o1)
{
    size_t es = a3_dtype_size(M->dt);
    for (int o = o0; o < o1; o++) {
        const unsigned char *w = M->W + (size_t)o * J->in * es;
        for (int r = 0; r < J->nrows; r++) {
            const float *x = J->x + (size_t)r * J->in;
            float s = 0;
            for (int i = 0; i < J->in; i++) s += elem(M->dt, w, (size_t)i) * x[i];
            float *yo = M->y + (size_t)r * M->out + o;
            *yo = J->acc ? *yo + s : s;
        }
    }
}

/* Shares take chunks of rows from a shared counter instead of a fixed
 * half each: a worker that wakes late (tens of microseconds in a virtual
 * machine, the whole time of a small decoding product) then finds the
 * caller already through part of the matrix and takes what is left, so
 * neither thread sits idle waiting for the other. Each row is still
 * computed by one thread in a fixed order, so the bits do not depend on
 * which thread took it. Chunks of whole 16-row blocks: whole cache lines
 * of y per thread (no false sharing). The chunks of several matrices are
 * numbered one after the other: one wake-up serves all of them. */
static void mv_part(void *p, int t, int nt)
{
    mv_job *J = p;
    (void)t, (void)nt;
    int i;
    long c;
    while (a3_chunks_next(&J->chunks, &i, &c)) {
        const mv_mat *M = &J->m[i];
        long lo = c * M->chunk, hi = lo + M->chunk < M->out ? lo + M->chunk : M->out;
        if (J->simd)
            a3__k_matvec_x86(M->dt, M->W, M->out, J->in, J->x, J->nrows, M->y, J->acc, (int)lo, (int)hi,
                             J->avx512, J->pf);
        else mv_scalar(J, M, (int)lo, (int)hi);
    }
}

/* Below this many weights a call is not worth waking a second thread. */
#define MV_PAR_MIN (1 << 15)

int a3_k_matvec_n(int n, const a3_k_gemm_w *w, int in, const float *x, int nrows, int acc, int threads)
{
    if (n < 1 || n > A3_K_GEMM_MAX) return A3_EUNSUPPORTED;
    for (int i = 0; i < n; i++)
        if (!supported(w[i].dt) || (w[i].out > 0 && w[i].ldy != (size_t)w[i].out)) return A3_EUNSUPPORTED;
    if (nrows <= 0) return A3_OK;
    if (in <= 0) { /* empty sum */
        for (int i = 0; i < n; i++)
            if (!acc && w[i].out > 0)
                for (int r = 0; r < nrows; r++) memset(w[i].y + (size_t)r * w[i].out, 0, (size_t)w[i].out * sizeof(float));
        return A3_OK;
    }
    mv_job J = {.in = in, .nrows = nrows, .acc = acc, .simd = use_simd(), .avx512 = use_avx512(), .x = x};
    long rows = 0;
    size_t bytes = 0, weights = 0;
    for (int i = 0; i < n; i++) {
        int out = w[i].out > 0 ? w[i].out : 0;
        rows += out;
        weights += (size_t)out * (size_t)in;
        bytes += (size_t)out * (size_t)in * a3_dtype_size(w[i].dt);
    }
    if (rows == 0) return A3_OK;
    int nt = weights < MV_PAR_MIN ? 1 : threads;
    if (nt > rows / 16) nt = rows / 16 > 0 ? (int)(rows / 16) : 1;
    long nchunks[A3_K_GEMM_MAX];
    for (int i = 0; i < n; i++) {
        int out = w[i].out > 0 ? w[i].out : 0;
        /* about 8 chunks per share, at least 16 rows */
        long chunk = nt > 1 ? ((long)out / (8L * nt) + 15) / 16 * 16 : out;
        if (chunk < 16) chunk = 16;
        J.m[i] = (mv_mat){w[i].dt, w[i].W, out, w[i].y, chunk};
        nchunks[i] = (out + chunk - 1) / chunk;
    }
    if (a3_chunks_init(&J.chunks, n, nchunks) != 0) return A3_EINVAL; /* n <= A3_K_GEMM_MAX: cannot happen */
    int timed = 0; /* the scalar code does not prefetch: nothing to tune */
    if (J.simd) J.pf = pf_begin(bytes, &timed);
    double t0 = timed ? a3_now() : 0;
    a3_pool_run(nt, mv_part, &J);
    if (timed) pf_end(J.pf, bytes, a3_now() - t0);
    return A3_OK;
}

int a3_k_matvec(a3_dtype dt, const void *W, int out, int in, const float *x, int nrows, float *y,
                int acc, int threads)
{
    a3_k_gemm_w w = {dt, W, out, y, (size_t)(out > 0 ? out : 0)};
    return a3_k_matvec_n(1, &w, in, x, nrows, acc, threads);
}

/* ---- RMSNorm --------------------------------------------------------------- */

typedef struct {
    float *out;
    const float *x, *w;
    size_t rows;
    int d;
    float eps;
} norm_job;

static void norm_part(void *p, int t, int nt)
{
    const norm_job *J = p;
    long lo, hi;
    a3_pool_split((long)J->rows, t, nt, 1, &lo, &hi);
    for (size_t r = (size_t)lo; r < (size_t)hi; r++) {
        const float *xr = J->x + r * (size_t)J->d;
        float *o = J->out + r * (size_t)J->d;
        double ss = 0;
        for (int i = 0; i < J->d; i++) ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / J->d + J->eps));
        for (int i = 0; i < J->d; i++) o[i] = xr[i] * inv * J->w[i];
    }
}

void a3_k_rmsnorm(float *out, const float *x, const float *w, size_t rows, int d, float eps, int threads)
{
    norm_job J = {out, x, w, rows, d, eps};
    a3_pool_run(rows < 16 ? 1 : threads, norm_part, &J);
}
