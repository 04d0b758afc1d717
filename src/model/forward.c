/* forward: one transformer layer over a batch of token rows.
 *
 * x (rows, d) -> x + attn(rmsnorm(x)) -> x + mlp(rmsnorm(x)), rows =
 * n_seq * seqlen. Every projection is one sgemm over all rows. Attention
 * runs per (sequence, head) task on worker threads with OpenBLAS set to one
 * thread meanwhile, so the two levels of parallelism never oversubscribe
 * the cores. Causal attention is computed in query blocks of ATT_BLOCK rows
 * so that each block only multiplies against the keys it can see. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ATT_BLOCK 64

void a3__rmsnorm(float *out, const float *x, const float *w, size_t rows, int d, float eps)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * (size_t)d;
        float *o = out + r * (size_t)d;
        double ss = 0;
        for (int i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / d + eps));
        for (int i = 0; i < d; i++) o[i] = xr[i] * inv * w[i];
    }
}

/* y (rows, out) = beta * y + x (rows, in) @ W^T, W stored (out, in). */
static void linear(float *y, const float *x, const float *W, size_t rows, int in, int out, float beta)
{
    if (rows == 0 || out == 0) return;
    if (in == 0) {
        if (beta == 0) memset(y, 0, rows * (size_t)out * sizeof(float));
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, out, in, 1.0f, x, in, W, in,
                beta, y, out);
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
    if (!s->xn || !s->q || !s->k || !s->v || !s->z || !s->g || !s->u || !s->scores) {
        a3__scratch_free(s);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory for activations of %zu tokens", m->dir, rows);
    }
    return A3_OK;
}

void a3__scratch_free(fwd_scratch *s)
{
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
    float *cs = a3_malloc_array((size_t)seqlen * 2, (size_t)half * sizeof(float));
    if (!cs) return NULL;
    for (int t = 0; t < seqlen; t++)
        for (int f = 0; f < half; f++) {
            double a = (double)(pos0 + t) * m->inv_freq[f];
            cs[((size_t)t * half + f) * 2] = (float)cos(a);
            cs[((size_t)t * half + f) * 2 + 1] = (float)sin(a);
        }
    free(s->rope);
    s->rope = cs, s->rope_len = seqlen, s->rope_pos0 = pos0;
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

static void apply_rope(const a3_model *m, int l, float *q, float *k, int n_seq, int seqlen,
                       const float *cs)
{
    const a3_config *c = &m->cfg;
    const layer_shape *sh = &m->shapes[l];
    int half = c->head_dim / 2;
    for (int b = 0; b < n_seq; b++)
        for (int t = 0; t < seqlen; t++) {
            size_t row = (size_t)b * seqlen + t;
            const float *csr = cs + (size_t)t * half * 2;
            for (int h = 0; h < c->n_heads; h++) {
                int g = a3_config_group(c, h);
                const int *idx = c->rope_idx + ((size_t)l * c->n_kv_heads + g) * half;
                rope_head(q + row * sh->q_out + sh->q_off[h], c->qk_rank[l * c->n_kv_heads + g], idx, csr);
            }
            for (int g = 0; g < c->n_kv_heads; g++) {
                const int *idx = c->rope_idx + ((size_t)l * c->n_kv_heads + g) * half;
                rope_head(k + row * sh->k_out + sh->k_off[g], c->qk_rank[l * c->n_kv_heads + g], idx, csr);
            }
        }
}

typedef struct {
    const a3_model *m;
    int l, n_seq, seqlen, pos0;
    const float *q, *k, *v; /* k, v: keys of all positions (cache or batch) */
    size_t k_stride_seq;    /* rows between sequences in k/v (0 with a cache) */
    float *z, *scores;
    int tid, nthreads;
} att_job;

static void softmax_causal(float *s, int bs, int nk, int first_q_pos)
{
    for (int i = 0; i < bs; i++) {
        float *row = s + (size_t)i * nk;
        int visible = first_q_pos + i + 1; /* keys 0..pos inclusive */
        float mx = -INFINITY;
        for (int j = 0; j < visible; j++) mx = row[j] > mx ? row[j] : mx;
        double sum = 0;
        for (int j = 0; j < visible; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < visible; j++) row[j] *= inv;
        for (int j = visible; j < nk; j++) row[j] = 0;
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

static void *att_worker(void *arg)
{
    att_job *J = arg;
    int tasks = J->n_seq * J->m->cfg.n_heads;
    for (int t = J->tid; t < tasks; t += J->nthreads)
        attend_one(J, t / J->m->cfg.n_heads, t % J->m->cfg.n_heads, J->scores);
    return NULL;
}

static void attention(att_job base, int nthreads, float *scores, size_t scores_per_thread)
{
    int tasks = base.n_seq * base.m->cfg.n_heads;
    if (nthreads > tasks) nthreads = tasks;
    if (nthreads <= 1) {
        base.tid = 0, base.nthreads = 1, base.scores = scores;
        att_worker(&base);
        return;
    }
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    pthread_t th[64];
    att_job jobs[64];
    if (nthreads > 64) nthreads = 64;
    int started = 0;
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = base;
        jobs[i].tid = i, jobs[i].nthreads = nthreads;
        jobs[i].scores = scores + (size_t)i * scores_per_thread;
    }
    for (int i = 1; i < nthreads; i++)
        if (pthread_create(&th[i], NULL, att_worker, &jobs[i]) == 0) started = i;
        else break;
    /* Threads that failed to start: run their share here. */
    for (int i = started + 1; i < nthreads; i++) att_worker(&jobs[i]);
    att_worker(&jobs[0]);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
    openblas_set_num_threads(blas_threads);
}

static void swiglu(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
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

    a3__rmsnorm(s->xn, x, w->attn_norm, rows, c->d, c->rms_eps);
    linear(s->q, s->xn, w->wq, rows, c->d, sh->q_out, 0);
    linear(s->k, s->xn, w->wk, rows, c->d, sh->k_out, 0);
    linear(s->v, s->xn, w->wv, rows, c->d, sh->v_out, 0);
    add_bias(s->q, w->bq, rows, sh->q_out);
    add_bias(s->k, w->bk, rows, sh->k_out);
    add_bias(s->v, w->bv, rows, sh->v_out);
    if (hk && hk->on_qkv && (hrc = hk->on_qkv(hk->ctx, l, s->q, s->k, s->v, rows))) return hrc;
    if (hk && hk->edit_qkv && (hrc = hk->edit_qkv(hk->ctx, l, s->q, s->k, s->v, rows))) return hrc;
    apply_rope(m, l, s->q, s->k, n_seq, seqlen, cs);

    att_job job = {.m = m, .l = l, .n_seq = n_seq, .seqlen = seqlen, .pos0 = pos0, .q = s->q,
                   .k = s->k, .v = s->v, .k_stride_seq = (size_t)seqlen, .z = s->z};
    if (kv) { /* one sequence: append to the cache, attend over all of it */
        memcpy(kv->k[l] + (size_t)pos0 * sh->k_out, s->k, rows * sh->k_out * sizeof(float));
        memcpy(kv->v[l] + (size_t)pos0 * sh->v_out, s->v, rows * sh->v_out * sizeof(float));
        job.k = kv->k[l], job.v = kv->v[l], job.k_stride_seq = 0;
    }
    memset(s->z, 0, rows * (size_t)sh->o_in * sizeof(float));
    size_t max_keys = s->scores ? (size_t)(pos0 + seqlen) : 0;
    attention(job, s->threads, s->scores, (size_t)ATT_BLOCK * max_keys);
    if (hk && hk->on_z && (hrc = hk->on_z(hk->ctx, l, s->z, rows))) return hrc;
    linear(x, s->z, w->wo, rows, sh->o_in, c->d, 1.0f);

    a3__rmsnorm(s->xn, x, w->mlp_norm, rows, c->d, c->rms_eps);
    linear(s->g, s->xn, w->wg, rows, c->d, sh->ff, 0);
    linear(s->u, s->xn, w->wu, rows, c->d, sh->ff, 0);
    swiglu(s->g, s->u, rows * (size_t)sh->ff);
    if (hk && hk->on_u && (hrc = hk->on_u(hk->ctx, l, s->g, rows))) return hrc;
    if (hk && hk->edit_u && (hrc = hk->edit_u(hk->ctx, l, s->g, rows))) return hrc;
    linear(x, s->g, w->wd, rows, sh->ff, c->d, 1.0f);
    if (!all_finite(x, rows * (size_t)c->d)) {
        if ((hrc = a3__layer_nonfinite(m, l, w, err))) return hrc; /* names the tensor */
        return a3_err_set(err, A3_EFORMAT, "%s: layer %d: non-finite activations (overflow)", m->dir, l);
    }
    return A3_OK;
}
