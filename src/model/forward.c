/* forward: one transformer layer over a batch of token rows.
 *
 * x (rows, d) -> x + attn(rmsnorm(x)) -> x + mlp(rmsnorm(x)), rows =
 * n_seq * seqlen. With more than A3_K_MATVEC_ROWS rows every projection is
 * one GEMM over all rows (a3_k_gemm on stored F16/BF16 weights where the
 * AVX-512F code runs, else sgemm on float32); with fewer (decoding) it is
 * a3_k_matvec on the weights as stored. q, k, v and gate, up each go in
 * one call (linear_same_x). Attention runs per (sequence, head)
 * task on the pool's threads with OpenBLAS set to one thread meanwhile, so
 * the two levels of parallelism never oversubscribe the cores; norms, RoPE
 * and the SwiGLU product are split over rows on the same threads. Causal
 * attention is computed in query blocks of ATT_BLOCK rows so that each
 * block only multiplies against the keys it can see. */
#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "a3/blas.h"
#include "a3/gemm_fixed.h"
#include "a3/kernels.h"
#include "a3/pool.h"
#include "a3/vmath.h"
#include "internal.h"

#define ATT_BLOCK 64

/* Where a3_k_gemm does not run (no AVX-512F, or forced off), products on
 * F16/BF16 weights convert W one block at a time (all of its
 * rows and a range of its columns, or, for very tall W, a block of rows)
 * and multiply each block right after converting it, accumulating over
 * the column ranges. A block is at most A3__WCONV_FLOATS (8 MiB), so it is
 * still in the last-level cache when sgemm packs it: W's float32 copy
 * never goes to memory and back, and a pass holds 8 MiB of converted
 * weights per thread instead of the largest matrix (180 MB at 7B). On
 * several threads each converts and multiplies its own rows of W. Speed: no
 * measurable change (llama-7b shape, 512 tokens, 1 and 2 threads,
 * interleaved with the whole-matrix code); the product is dominated by
 * sgemm's own kernel either way (85-87% of the samples in perf). */
#define WCONV_KMIN 256 /* columns per block at least: sgemm's own K blocks */

size_t a3__wconv_floats(size_t numel, size_t rows, int threads)
{
    size_t conv = (numel < A3__WCONV_FLOATS ? numel : A3__WCONV_FLOATS) * (size_t)(threads > 1 ? threads : 1);
    size_t own = a3_k_gemm_floats(rows, threads);
    return conv > own ? conv : own;
}

void a3__wconv_block(int out, int in, int *ob, int *kc)
{
    size_t cap = A3__WCONV_FLOATS;
    *ob = out, *kc = in;
    if ((size_t)out * (size_t)in <= cap) return;
    if ((size_t)out * WCONV_KMIN <= cap) {
        size_t k = cap / (size_t)out;
        k -= k % 16; /* whole cache lines of each converted row */
        if (k < (size_t)in) *kc = (int)k;
    } else {
        if (in > WCONV_KMIN) *kc = WCONV_KMIN;
        *ob = (int)(cap / (size_t)*kc);
    }
}

/* One thread's share of a3__gemm_wconv on several threads: chunks of ob
 * rows of W taken from a shared counter, each converted kc columns at a
 * time into the thread's own part of buf and multiplied there by a
 * one-thread sgemm. */
typedef struct {
    float *y;
    size_t ldy, rows, buf_per_thread;
    const float *x;
    a3_dtype dt;
    const unsigned char *W;
    int in, out, acc, ob, kc;
    float *buf;
    a3_chunks chunks; /* blocks of ob rows of W */
} wconv_job;

static void wconv_part(void *p, int t, int nt)
{
    wconv_job *J = p;
    (void)nt;
    size_t es = a3_dtype_size(J->dt);
    float *buf = J->buf + (size_t)t * J->buf_per_thread;
    int range;
    long c;
    while (a3_chunks_next(&J->chunks, &range, &c)) {
        int o0 = (int)c * J->ob, nb = J->out - o0 < J->ob ? J->out - o0 : J->ob;
        for (int k0 = 0; k0 < J->in; k0 += J->kc) {
            int nk = J->in - k0 < J->kc ? J->in - k0 : J->kc;
            a3_k_to_f32_2d(J->dt, J->W + ((size_t)o0 * (size_t)J->in + (size_t)k0) * es, (size_t)J->in,
                           (size_t)nb, (size_t)nk, buf, (size_t)nk, 1);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)J->rows, nb, nk, 1.0f, J->x + k0, J->in,
                        buf, nk, J->acc || k0 > 0 ? 1.0f : 0.0f, J->y + o0, (int)J->ldy);
        }
    }
}

/* Rows of W per chunk on several threads: one chunk per thread, in whole
 * 16-row blocks (whole cache lines of y per thread), no more than a
 * thread's buffer holds at kc columns. Each chunk packs x again inside
 * sgemm, so fewer, larger chunks pay less: llama-7b shape, 512 tokens, 2
 * threads, 6 interleaved runs, median wall 5.58 s with one chunk per
 * thread, 5.77 s with 2048 rows, 5.60-6.22 s with 1024 (noisy VM). The
 * shared counter still lets a thread that finishes first take a chunk the
 * other has not started. */
int a3__wconv_rows(int out, int kc, int threads)
{
    long per = ((long)out + threads - 1) / threads;
    per = (per + 15) / 16 * 16;
    long most = (long)(A3__WCONV_FLOATS / (size_t)(kc > 0 ? kc : 1));
    if (per > most) per = most;
    return per > out ? out : (int)per;
}

void a3__gemm_wconv(float *y, size_t ldy, const float *x, a3_dtype dt, const void *W, size_t rows, int in, int out,
                    int acc, float *buf, size_t nbuf, int threads)
{
    assert(nbuf >= a3__wconv_floats((size_t)out * (size_t)in, rows, threads));
    if (a3_k_gemm(dt, W, out, in, x, rows, y, ldy, acc, buf, nbuf, threads) == A3_OK) return;
    size_t es = a3_dtype_size(dt);
    int ob, kc;
    a3__wconv_block(out, in, &ob, &kc);
    if (threads > 1 && out >= 32) {
        /* Each thread converts its own rows and multiplies them on one
         * OpenBLAS thread: no hand-off between the pool's conversion and
         * OpenBLAS's threads, whose idle worker otherwise spins through
         * every conversion (perf, llama-7b shape, 512 tokens, 2 threads:
         * sched_yield about 15% of the samples). Sums differ from the
         * one-thread path's in round-off only (sgemm's own blocking and
         * kernels depend on the shapes it is given: 1 and 2 threads gave
         * different bits for 1024 x 4100 in test_gemm_wconv, which checks
         * every thread count against float64). */
        int rows_each = a3__wconv_rows(out, kc, threads);
        wconv_job J = {.y = y, .ldy = ldy, .rows = rows, .x = x, .dt = dt, .W = W, .in = in, .out = out,
                       .acc = acc, .ob = rows_each, .kc = kc, .buf = buf,
                       /* <= min(out * in, A3__WCONV_FLOATS): a3__wconv_floats' share */
                       .buf_per_thread = (size_t)rows_each * (size_t)kc};
        long nblocks = (out + rows_each - 1) / rows_each;
        int one = a3_chunks_init(&J.chunks, 1, &nblocks); /* one range always fits */
        assert(one == 0);
        (void)one;
        int prev = a3_blas_single_begin();
        a3_pool_run(threads, wconv_part, &J);
        a3_blas_single_end(prev);
        return;
    }
    for (int o0 = 0; o0 < out; o0 += ob) {
        int nb = out - o0 < ob ? out - o0 : ob;
        for (int k0 = 0; k0 < in; k0 += kc) {
            int nk = in - k0 < kc ? in - k0 : kc;
            /* the dtype was checked at open: the conversion cannot refuse it */
            a3_k_to_f32_2d(dt, (const char *)W + ((size_t)o0 * (size_t)in + (size_t)k0) * es, (size_t)in,
                           (size_t)nb, (size_t)nk, buf, (size_t)nk, threads);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, nb, nk, 1.0f, x + k0, in, buf, nk,
                        acc || k0 > 0 ? 1.0f : 0.0f, y + o0, (int)ldy);
        }
    }
}

/* y (rows, out) = (acc ? y : 0) + x (rows, in) @ W^T, W stored (out, in).
 * A few rows (decoding) or no float32 view and no conversion buffer: the
 * matvec kernel on the stored weights; a float32 view: sgemm on it;
 * otherwise sgemm on blocks converted as they are used. Statistics passes
 * (fixed_tiles) always run on float32 views (run_layer converts the
 * layer); were one to meet stored weights it takes the matvec kernel,
 * whose bits do not depend on the thread count either. The dtype was
 * checked at open, so the kernels cannot refuse it. */
static void linear(float *y, const float *x, const wmat *W, size_t rows, int in, int out, int acc,
                   const fwd_scratch *s)
{
    int threads = s->threads;
    if (rows == 0 || out == 0) return;
    if (in == 0) {
        if (!acc) memset(y, 0, rows * (size_t)out * sizeof(float));
        return;
    }
    const float *f = W->f32;
    if (rows <= A3_K_MATVEC_ROWS || (!f && (!s->wconv || s->fixed_tiles))) {
        a3_k_matvec(W->dt, W->raw, out, in, x, (int)rows, y, acc, threads);
        return;
    }
    if (!f) a3__gemm_wconv(y, (size_t)out, x, W->dt, W->raw, rows, in, out, acc, s->wconv, s->wconv_n, threads);
    else if (s->fixed_tiles) a3_sgemm_nt_fixed(rows, out, in, x, f, acc, y, threads);
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, out, in, 1.0f, x, in, f, in,
                     acc ? 1.0f : 0.0f, y, out);
}

/* y[i] = x @ W[i]^T for n products of the same x (q, k, v; gate, up).
 * When linear() would take the same kernel for all of them, one call does
 * them all: a3_k_matvec_n (decoding) wakes the threads once instead of n
 * times, a3_k_gemm_n (prefill on stored F16/BF16 weights) packs x once
 * and lets the threads meet once; each result is bit for bit what the
 * kernel gives it alone. Otherwise (a float32 view, an F32 file, another
 * CPU) one linear() each. */
static void linear_same_x(int n, float *const *y, const float *x, const wmat *const *W, const int *out,
                          size_t rows, int in, const fwd_scratch *s)
{
    a3_k_gemm_w g[A3_K_GEMM_MAX];
    int mv = 1, gemm = rows > A3_K_MATVEC_ROWS && s->wconv && !s->fixed_tiles;
    for (int i = 0; i < n && i < A3_K_GEMM_MAX; i++) {
        /* linear()'s tests: the matvec, or a3__gemm_wconv on the stored weights */
        mv = mv && (rows <= A3_K_MATVEC_ROWS || (!W[i]->f32 && (!s->wconv || s->fixed_tiles)));
        gemm = gemm && !W[i]->f32;
        g[i] = (a3_k_gemm_w){W[i]->dt, W[i]->raw, out[i], y[i], (size_t)out[i]};
    }
    if (n <= A3_K_GEMM_MAX && rows > 0 && in > 0) {
        if (mv && a3_k_matvec_n(n, g, in, x, (int)rows, 0, s->threads) == A3_OK) return;
        if (gemm && a3_k_gemm_n(n, g, in, x, rows, 0, s->wconv, s->wconv_n, s->threads) == A3_OK) return;
    }
    for (int i = 0; i < n; i++) linear(y[i], x, W[i], rows, in, out[i], 0, s);
}

static void add_bias(float *y, const float *b, size_t rows, int out)
{
    if (!b) return;
    for (size_t r = 0; r < rows; r++)
        for (int i = 0; i < out; i++) y[r * (size_t)out + i] += b[i];
}

int a3__scratch_init(const a3_model *m, fwd_scratch *s, size_t rows, int max_keys, a3_err *err)
{
    const a3_config *c = &m->cfg;
    memset(s, 0, sizeof *s);
    size_t wq = 1, wk = 1, wv = 1, wz = 1, wf = 1;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_shape *sh = &m->shapes[l];
        if ((size_t)sh->q_out > wq) wq = (size_t)sh->q_out;
        if ((size_t)sh->k_out > wk) wk = (size_t)sh->k_out;
        if ((size_t)sh->v_out > wv) wv = (size_t)sh->v_out;
        if ((size_t)sh->o_in > wz) wz = (size_t)sh->o_in;
        if ((size_t)sh->ff > wf) wf = (size_t)sh->ff;
    }
    s->rows = rows;
    s->threads = m->threads > 0 ? m->threads : 1;
    s->xn = a3_malloc_array(rows, (size_t)c->d * sizeof(float));
    s->q = a3_malloc_array(rows, wq * sizeof(float));
    s->k = a3_malloc_array(rows, wk * sizeof(float));
    s->v = a3_malloc_array(rows, wv * sizeof(float));
    s->z = a3_malloc_array(rows, wz * sizeof(float));
    s->g = a3_malloc_array(rows, wf * sizeof(float));
    s->u = a3_malloc_array(rows, wf * sizeof(float));
    s->scores = a3_malloc_array((size_t)s->threads * ATT_BLOCK, (size_t)max_keys * sizeof(float));
    s->max_keys = (size_t)max_keys;
    if (!s->xn || !s->q || !s->k || !s->v || !s->z || !s->g || !s->u || !s->scores) {
        a3__scratch_free(s);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory for activations of %zu tokens", m->dir, rows);
    }
    return A3_OK;
}

int a3__scratch_wconv(const a3_model *m, fwd_scratch *s, a3_err *err)
{
    size_t most = a3__layer_convert_max(m);
    free(s->wconv);
    s->wconv = NULL;
    s->wconv_n = 0;
    if (most == 0) return A3_OK; /* F32 in place: nothing to convert */
    most = a3__wconv_floats(most, s->rows, s->threads);
    if (!(s->wconv = a3_malloc_array(most, sizeof(float))))
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory for a block of weights in float32 (%zu floats)", m->dir, most);
    s->wconv_n = most;
    return A3_OK;
}

void a3__scratch_free(fwd_scratch *s)
{
    free(s->wconv);
    free(s->xn);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->z);
    free(s->g);
    free(s->u);
    free(s->scores);
    free(s->rope);
    memset(s, 0, sizeof *s);
}

/* cos/sin of position (pos0 + t) times inv_freq[f], for t < seqlen, kept
 * in the scratch: every layer of a pass uses the same table. */
static const float *rope_table(const a3_model *m, fwd_scratch *s, int seqlen, int pos0)
{
    if (s->rope && s->rope_len == seqlen && s->rope_pos0 == pos0) return s->rope;
    int half = m->cfg.head_dim / 2;
    size_t need = (size_t)seqlen * 2 * (size_t)half;
    float *cs = s->rope;
    if (need > s->rope_cap) { /* grows only: decoding steps reuse it */
        if (!(cs = a3_malloc_array(need ? need : 1, sizeof(float)))) return NULL;
        free(s->rope);
        s->rope = cs, s->rope_cap = need;
    }
    for (int t = 0; t < seqlen; t++)
        for (int f = 0; f < half; f++) {
            double a = (double)(pos0 + t) * m->inv_freq[f];
            cs[((size_t)t * half + f) * 2] = (float)cos(a);
            cs[((size_t)t * half + f) * 2 + 1] = (float)sin(a);
        }
    s->rope_len = seqlen, s->rope_pos0 = pos0;
    return cs;
}

/* Rotate one reduced head in place: kept pair p is (p, p + r/2) (HF
 * rotate_half layout) with frequency index idx[p]. */
static void rope_head(float *x, int r, const int *idx, const float *cs_row)
{
    int h = r / 2;
    for (int p = 0; p < h; p++) {
        float c = cs_row[idx[p] * 2], s = cs_row[idx[p] * 2 + 1];
        float a = x[p], b = x[p + h];
        x[p] = a * c - b * s;
        x[p + h] = b * c + a * s;
    }
}

typedef struct {
    const a3_model *m;
    int l, seqlen;
    size_t rows;
    float *q, *k;
    const float *cs;
} rope_job;

static void rope_part(void *p, int t, int nt)
{
    const rope_job *J = p;
    const a3_config *c = &J->m->cfg;
    const layer_shape *sh = &J->m->shapes[J->l];
    int half = c->head_dim / 2, l = J->l;
    long lo, hi;
    a3_pool_split((long)J->rows, t, nt, 1, &lo, &hi);
    for (size_t row = (size_t)lo; row < (size_t)hi; row++) {
        const float *csr = J->cs + (row % (size_t)J->seqlen) * half * 2;
        for (int h = 0; h < c->n_heads; h++) {
            int g = a3_config_group(c, h);
            const int *idx = c->rope_idx + ((size_t)l * c->n_kv_heads + g) * half;
            rope_head(J->q + row * sh->q_out + sh->q_off[h], c->qk_rank[l * c->n_kv_heads + g], idx, csr);
        }
        for (int g = 0; g < c->n_kv_heads; g++) {
            const int *idx = c->rope_idx + ((size_t)l * c->n_kv_heads + g) * half;
            rope_head(J->k + row * sh->k_out + sh->k_off[g], c->qk_rank[l * c->n_kv_heads + g], idx, csr);
        }
    }
}

/* Rows below which splitting the element-wise steps is not worth a wake-up. */
#define PAR_ROWS 16

static void apply_rope(const a3_model *m, int l, float *q, float *k, int n_seq, int seqlen,
                       const float *cs, int threads)
{
    rope_job J = {m, l, seqlen, (size_t)n_seq * seqlen, q, k, cs};
    a3_pool_run(J.rows < PAR_ROWS ? 1 : threads, rope_part, &J);
}

typedef struct {
    const a3_model *m;
    int l, n_seq, seqlen, pos0;
    const float *q, *k, *v; /* k, v: keys of all positions (cache or batch) */
    size_t k_stride_seq;    /* rows between sequences in k/v (0 with a cache) */
    float *z, *scores;
} att_job;

static void softmax_causal(float *s, int bs, int nk, int first_q_pos)
{
    for (int i = 0; i < bs; i++) {
        float *row = s + (size_t)i * nk;
        int visible = first_q_pos + i + 1; /* keys 0..pos inclusive */
        a3_v_softmax(row, (size_t)visible);
        memset(row + visible, 0, (size_t)(nk - visible) * sizeof(float));
    }
}

static void attend_one(const att_job *J, int b, int h, float *scores)
{
    const a3_config *c = &J->m->cfg;
    const layer_shape *sh = &J->m->shapes[J->l];
    int g = a3_config_group(c, h);
    int rq = c->qk_rank[J->l * c->n_kv_heads + g], rv = c->ov_rank[J->l * c->n_kv_heads + g];
    float scale = 1.0f / sqrtf((float)c->head_dim); /* original head dim, A3-METHOD 3c */
    const float *Q = J->q + (size_t)b * J->seqlen * sh->q_out + sh->q_off[h];
    const float *K = J->k + (size_t)b * J->k_stride_seq * sh->k_out + sh->k_off[g];
    const float *V = J->v + (size_t)b * J->k_stride_seq * sh->v_out + sh->v_off[g];
    float *Z = J->z + (size_t)b * J->seqlen * sh->o_in + sh->z_off[h];
    for (int i0 = 0; i0 < J->seqlen; i0 += ATT_BLOCK) {
        int bs = J->seqlen - i0 < ATT_BLOCK ? J->seqlen - i0 : ATT_BLOCK;
        int nk = J->pos0 + i0 + bs;
        if (rv > 0 && rq == 0) { /* no QK dims: uniform attention over visible keys */
            for (size_t e = 0; e < (size_t)bs * nk; e++) scores[e] = 0;
        } else if (rq > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bs, nk, rq, scale,
                        Q + (size_t)i0 * sh->q_out, sh->q_out, K, sh->k_out, 0.0f, scores, nk);
        }
        if (rv == 0) continue;
        softmax_causal(scores, bs, nk, J->pos0 + i0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bs, rv, nk, 1.0f, scores, nk, V,
                    sh->v_out, 0.0f, Z + (size_t)i0 * sh->o_in, sh->o_in);
    }
}

typedef struct {
    att_job base;
    size_t scores_per_thread;
} att_run;

static void att_part(void *p, int t, int nt)
{
    const att_run *R = p;
    const att_job *J = &R->base;
    float *scores = J->scores + (size_t)t * R->scores_per_thread;
    int tasks = J->n_seq * J->m->cfg.n_heads;
    for (int i = t; i < tasks; i += nt) attend_one(J, i / J->m->cfg.n_heads, i % J->m->cfg.n_heads, scores);
}

/* scores: nthreads slices of scores_per_thread floats, one per share. */
static void attention(att_job base, int nthreads, size_t scores_per_thread)
{
    int tasks = base.n_seq * base.m->cfg.n_heads;
    if (nthreads > tasks) nthreads = tasks;
    att_run R = {base, scores_per_thread};
    if (nthreads <= 1) {
        att_part(&R, 0, 1);
        return;
    }
    int blas_threads = a3_blas_single_begin();
    a3_pool_run(nthreads, att_part, &R);
    a3_blas_single_end(blas_threads);
}

typedef struct {
    float *g;
    const float *u;
    size_t n;
} swiglu_job;

static void swiglu_part(void *p, int t, int nt)
{
    const swiglu_job *J = p;
    long lo, hi;
    a3_pool_split((long)J->n, t, nt, 1024, &lo, &hi);
    a3_v_swiglu(J->g + lo, J->u + lo, (size_t)(hi - lo));
}

static void swiglu(float *g, const float *u, size_t rows, size_t width, int threads)
{
    swiglu_job J = {g, u, rows * width};
    a3_pool_run(rows < PAR_ROWS ? 1 : threads, swiglu_part, &J);
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

int a3__layer_forward(const a3_model *m, int l, const layer_weights *w, float *x, int n_seq,
                      int seqlen, int pos0, kv_cache *kv, const a3_layer_hooks *hk,
                      fwd_scratch *s, a3_err *err)
{
    int hrc;
    const a3_config *c = &m->cfg;
    const layer_shape *sh = &m->shapes[l];
    size_t rows = (size_t)n_seq * seqlen;
    const float *cs = rope_table(m, s, seqlen, pos0);
    if (!cs) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", m->dir);

    int T = s->threads;
    a3_k_rmsnorm(s->xn, x, w->attn_norm, rows, c->d, c->rms_eps, T);
    {
        float *const ys[3] = {s->q, s->k, s->v};
        const wmat *const ws[3] = {&w->wq, &w->wk, &w->wv};
        const int outs[3] = {sh->q_out, sh->k_out, sh->v_out};
        linear_same_x(3, ys, s->xn, ws, outs, rows, c->d, s);
    }
    add_bias(s->q, w->bq, rows, sh->q_out);
    add_bias(s->k, w->bk, rows, sh->k_out);
    add_bias(s->v, w->bv, rows, sh->v_out);
    if (hk && hk->on_qkv && (hrc = hk->on_qkv(hk->ctx, l, s->q, s->k, s->v, rows))) return hrc;
    if (hk && hk->edit_qkv && (hrc = hk->edit_qkv(hk->ctx, l, s->q, s->k, s->v, rows))) return hrc;
    apply_rope(m, l, s->q, s->k, n_seq, seqlen, cs, T);

    att_job job = {.m = m, .l = l, .n_seq = n_seq, .seqlen = seqlen, .pos0 = pos0, .q = s->q,
                   .k = s->k, .v = s->v, .k_stride_seq = (size_t)seqlen, .z = s->z, .scores = s->scores};
    if (kv) { /* one sequence: append to the cache, attend over all of it */
        memcpy(kv->k[l] + (size_t)pos0 * sh->k_out, s->k, rows * sh->k_out * sizeof(float));
        memcpy(kv->v[l] + (size_t)pos0 * sh->v_out, s->v, rows * sh->v_out * sizeof(float));
        job.k = kv->k[l], job.v = kv->v[l], job.k_stride_seq = 0;
    }
    if ((size_t)(pos0 + seqlen) > s->max_keys)
        return a3_err_set(err, A3_EINVAL, "%s: %d keys exceed the scratch's %zu", m->dir, pos0 + seqlen, s->max_keys);
    memset(s->z, 0, rows * (size_t)sh->o_in * sizeof(float));
    /* Each thread's slice holds a block of scores against the most keys
     * any block of this pass sees. */
    attention(job, s->threads, (size_t)ATT_BLOCK * (size_t)(pos0 + seqlen));
    if (hk && hk->on_z && (hrc = hk->on_z(hk->ctx, l, s->z, rows))) return hrc;
    linear(x, s->z, &w->wo, rows, sh->o_in, c->d, 1, s);

    a3_k_rmsnorm(s->xn, x, w->mlp_norm, rows, c->d, c->rms_eps, T);
    {
        float *const ys[2] = {s->g, s->u};
        const wmat *const ws[2] = {&w->wg, &w->wu};
        const int outs[2] = {sh->ff, sh->ff};
        linear_same_x(2, ys, s->xn, ws, outs, rows, c->d, s);
    }
    swiglu(s->g, s->u, rows, (size_t)sh->ff, T);
    if (hk && hk->on_u && (hrc = hk->on_u(hk->ctx, l, s->g, rows))) return hrc;
    if (hk && hk->edit_u && (hrc = hk->edit_u(hk->ctx, l, s->g, rows))) return hrc;
    linear(x, s->g, &w->wd, rows, sh->ff, c->d, 1, s);
    if (!all_finite(x, rows * (size_t)c->d)) {
        if ((hrc = a3__layer_nonfinite(m, l, err))) return hrc; /* names the tensor */
        return a3_err_set(err, A3_EFORMAT, "%s: layer %d: non-finite activations (overflow)", m->dir, l);
    }
    return A3_OK;
}
