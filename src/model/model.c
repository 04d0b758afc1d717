/* model: open a HF directory, run the forward pass layer by layer, logits,
 * incremental decoding, parameter counts. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "a3/blas.h"
#include "a3/kernels.h"
#include "internal.h"

/* RoPE inverse frequencies, with HF's llama3 scaling when configured
 * (transformers' _compute_llama3_parameters). */
static int init_inv_freq(a3_model *m, a3_err *err)
{
    const a3_config *c = &m->cfg;
    int half = c->head_dim / 2;
    m->inv_freq = calloc((size_t)half, sizeof(float));
    if (!m->inv_freq) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", m->dir);
    for (int i = 0; i < half; i++) {
        /* HF computes base ** (2i / dim) in float32; so do we. */
        float expo = (float)(2 * i) / (float)c->head_dim;
        float f = 1.0f / powf((float)c->rope_theta, expo);
        if (c->rope_llama3) {
            double low_wl = c->rs_orig_max / c->rs_low, high_wl = c->rs_orig_max / c->rs_high;
            double wl = 2.0 * M_PI / f;
            if (wl > low_wl) f = (float)(f / c->rs_factor);
            else if (wl >= high_wl) {
                double sm = (c->rs_orig_max / wl - c->rs_low) / (c->rs_high - c->rs_low);
                f = (float)((1 - sm) * f / c->rs_factor + sm * f);
            }
        }
        m->inv_freq[i] = f;
    }
    return A3_OK;
}

/* model.norm.weight as float32, once: every decoding step uses it. */
static int init_final_norm(a3_model *m, a3_err *err)
{
    const float *nw;
    float *owned;
    size_t d = (size_t)m->cfg.d;
    int rc = a3__tensor_f32(m, "model.norm.weight", d, &nw, &owned, err);
    if (rc) return rc;
    if (!owned && !(owned = a3_malloc_array(d, sizeof(float))))
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory", m->dir);
    if (owned != nw) memcpy(owned, nw, d * sizeof(float));
    m->final_norm = owned;
    return A3_OK;
}

int a3_model_open(const char *dir, a3_model **out, a3_err *err)
{
    *out = NULL;
    a3_model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory", dir);
    }
    m->threads = a3_threads_default();
    int rc = a3_config_load(dir, &m->cfg, err);
    if (rc == A3_OK) rc = a3_st_open_dir(dir, &m->st, err);
    if (rc == A3_OK) rc = a3__layer_shapes_init(m, err);
    if (rc == A3_OK) rc = a3__check_tensors(m, err);
    if (rc == A3_OK) rc = init_inv_freq(m, err);
    if (rc == A3_OK) rc = init_final_norm(m, err);
    if (rc != A3_OK) {
        a3_model_free(m);
        return rc;
    }
    *out = m;
    return A3_OK;
}

void a3_model_free(a3_model *m)
{
    if (!m) return;
    a3__layer_shapes_free(m);
    a3_config_free(&m->cfg);
    a3_st_free(m->st);
    free(m->inv_freq);
    free(m->final_norm);
    free(m->dir);
    free(m);
}

const a3_config *a3_model_config(const a3_model *m) { return &m->cfg; }
const char *a3_model_dir(const a3_model *m) { return m->dir; }
const a3_st_set *a3_model_tensors(const a3_model *m) { return m->st; }

void a3_model_set_threads(a3_model *m, int n)
{
    /* One total for both phases: GEMMs use OpenBLAS's threads, attention
     * uses this many workers with OpenBLAS at one thread meanwhile. */
    m->threads = n > 0 ? n : a3_threads_default();
    a3_blas_set_threads(m->threads);
}

static int check_tokens(const a3_model *m, const int32_t *tokens, size_t n, a3_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab)
            return a3_err_set(err, A3_EINVAL, "%s: token id %d at position %zu is outside the vocabulary (%d)",
                              m->dir, tokens[i], i, m->cfg.vocab);
    return A3_OK;
}

int a3_model_embed(const a3_model *m, const int32_t *tokens, size_t n, float *x, a3_err *err)
{
    int rc = check_tokens(m, tokens, n, err);
    if (rc) return rc;
    const a3_st_tensor *t = a3_st_find(m->st, "model.embed_tokens.weight");
    size_t d = (size_t)m->cfg.d, es = a3_dtype_size(t->dtype);
    for (size_t i = 0; i < n; i++) {
        const char *row = (const char *)t->data + (size_t)tokens[i] * d * es;
        if (a3_k_to_f32(t->dtype, row, d, x + i * d, 1) != 0)
            return a3_err_set(err, A3_EUNSUPPORTED, "%s: embed_tokens: cannot convert dtype", t->file);
        if (a3_find_nonfinite(x + i * d, d) >= 0)
            return a3_err_set(err, A3_EFORMAT, "%s: model.embed_tokens.weight: row %d (token %d) holds NaN/Inf",
                              t->file, tokens[i], tokens[i]);
    }
    return A3_OK;
}

/* Run all layers over x (rows, d), then the final norm into out. The
 * caller owns the scratch (sized for rows and pos0 + seqlen keys) and the
 * weight buffer, so a decoder reuses both from step to step. */
static int run_layers(a3_model *m, float *x, int n_seq, int seqlen, int pos0, kv_cache *kv,
                      float *out, fwd_scratch *s, fbuf *ws, a3_err *err)
{
    const a3_config *c = &m->cfg;
    size_t rows = (size_t)n_seq * seqlen;
    int rc = A3_OK;
    /* Many rows: sgemm on float32 weights, converted a block at a time
     * right before its product (each is used once per pass). */
    if (rows > A3_K_MATVEC_ROWS && !s->wconv) rc = a3__scratch_wconv(m, s, err);
    for (int l = 0; l < c->n_layers && rc == A3_OK; l++) {
        layer_weights w;
        rc = a3__layer_load(m, l, 0, &w, ws, err);
        if (rc == A3_OK) rc = a3__layer_forward(m, l, &w, x, n_seq, seqlen, pos0, kv, NULL, s, err);
    }
    return rc ? rc : a3_model_final_norm(m, x, rows, out, err);
}

/* Default rows per chunk in run_layer: bounds scratch to roughly
 * rows * (d + 3 * width + 2 * d_ff) floats. */
#define LAYER_CHUNK_ROWS 8192

/* A float32 matrix given by the caller, in the form the forward reads. */
static wmat f32_mat(const float *p) { return (wmat){.raw = p, .dt = A3_DT_F32, .f32 = p}; }

static int run_layer(a3_model *m, int layer, const a3_layer_mats *mats, float *x, int n_seq, int seqlen,
                     size_t max_rows, const a3_layer_hooks *hooks, a3_err *err)
{
    if (layer < 0 || layer >= m->cfg.n_layers || n_seq <= 0 || seqlen <= 0)
        return a3_err_set(err, A3_EINVAL, "%s: run_layer: bad layer or batch", m->dir);
    if (a3_config_check_seqlen(&m->cfg, m->dir, seqlen, err)) return A3_EUNSUPPORTED;
    if (!max_rows) max_rows = LAYER_CHUNK_ROWS;
    int per = (size_t)seqlen >= max_rows ? 1 : (int)(max_rows / (size_t)seqlen);
    if (per > n_seq) per = n_seq;
    fwd_scratch s;
    layer_weights w;
    fbuf ws = {0};
    int rc = a3__scratch_init(m, &s, (size_t)per * seqlen, seqlen, err);
    if (rc) return rc;
    s.fixed_tiles = 1; /* statistics gathered here must not depend on --threads */
    float *norm_owned[2] = {NULL, NULL};
    if (mats) { /* the file's norms (only those are converted), the matrices given */
        char n1[96], n2[96];
        snprintf(n1, sizeof n1, "model.layers.%d.input_layernorm.weight", layer);
        snprintf(n2, sizeof n2, "model.layers.%d.post_attention_layernorm.weight", layer);
        memset(&w, 0, sizeof w);
        rc = a3__tensor_f32(m, n1, (size_t)m->cfg.d, &w.attn_norm, &norm_owned[0], err);
        if (rc == A3_OK) rc = a3__tensor_f32(m, n2, (size_t)m->cfg.d, &w.mlp_norm, &norm_owned[1], err);
        w.wq = f32_mat(mats->wq), w.wk = f32_mat(mats->wk), w.wv = f32_mat(mats->wv), w.wo = f32_mat(mats->wo);
        w.bq = mats->bq, w.bk = mats->bk, w.bv = mats->bv;
        w.wg = f32_mat(mats->wg), w.wu = f32_mat(mats->wu), w.wd = f32_mat(mats->wd);
    } else rc = a3__layer_load(m, layer, (size_t)per * seqlen > A3_K_MATVEC_ROWS, &w, &ws, err);
    for (int b = 0; rc == A3_OK && b < n_seq; b += per) {
        int nb = n_seq - b < per ? n_seq - b : per;
        float *xb = x + (size_t)b * seqlen * m->cfg.d;
        rc = a3__layer_forward(m, layer, &w, xb, nb, seqlen, 0, NULL, hooks, &s, err);
    }
    a3__fbuf_free(&ws);
    free(norm_owned[0]), free(norm_owned[1]);
    a3__scratch_free(&s);
    return rc;
}

int a3_model_final_norm(const a3_model *m, const float *x, size_t rows, float *out, a3_err *err)
{
    a3_k_rmsnorm(out, x, m->final_norm, rows, m->cfg.d, m->cfg.rms_eps, m->threads);
    /* The layers' outputs were checked, not this weight (found by fuzzing:
     * a NaN in it, or a finite 3e37 times a normalized activation of 10),
     * and the hidden states are the result callers keep. */
    size_t d = (size_t)m->cfg.d;
    if (a3_find_nonfinite(out, rows * d) < 0) return A3_OK;
    const a3_st_tensor *t = a3_st_find(m->st, "model.norm.weight");
    int64_t bad = a3_find_nonfinite(m->final_norm, d);
    if (bad >= 0)
        return a3_err_set(err, A3_EFORMAT, "%s: model.norm.weight: element %lld is NaN/Inf", t ? t->file : m->dir,
                          (long long)bad);
    return a3_err_set(err, A3_EFORMAT, "%s: non-finite activations after the final norm (overflow)", m->dir);
}

int a3_model_forward(a3_model *m, const int32_t *tokens, int n_seq, int seqlen, float *hidden_out,
                     a3_err *err)
{
    if (n_seq <= 0 || seqlen <= 0) return a3_err_set(err, A3_EINVAL, "%s: empty batch", m->dir);
    if (a3_config_check_seqlen(&m->cfg, m->dir, seqlen, err)) return A3_EUNSUPPORTED;
    size_t rows = (size_t)n_seq * seqlen;
    int rc;
    float *x = a3_malloc_array(rows, (size_t)m->cfg.d * sizeof(float));
    if (!x) return a3_err_set(err, A3_ENOMEM, "%s: out of memory for %zu tokens", m->dir, rows);
    fwd_scratch s;
    fbuf ws = {0};
    rc = a3_model_embed(m, tokens, rows, x, err);
    if (rc == A3_OK && (rc = a3__scratch_init(m, &s, rows, seqlen, err)) == A3_OK) {
        rc = run_layers(m, x, n_seq, seqlen, 0, NULL, hidden_out, &s, &ws, err);
        a3__scratch_free(&s);
    }
    a3__fbuf_free(&ws);
    free(x);
    return rc;
}

/* Logits are computed VOCAB_CHUNK vocabulary rows at a time, so that a
 * NaN/Inf row is caught in the chunk that meets it; F16/BF16 rows are
 * converted block by block as they are multiplied (a3__gemm_wconv), so a
 * large lm_head is never held in float32. */
#define VOCAB_CHUNK 4096

int a3_model_logits(a3_model *m, const float *hidden, size_t n_rows, float *logits, a3_err *err)
{
    const a3_config *c = &m->cfg;
    const char *name = c->tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    const a3_st_tensor *t = a3_st_find(m->st, name);
    size_t d = (size_t)c->d, es = a3_dtype_size(t->dtype);
    if (n_rows <= A3_K_MATVEC_ROWS) { /* decoding: read the stored rows in place */
        if (a3_k_matvec(t->dtype, t->data, c->vocab, c->d, hidden, (int)n_rows, logits, 0, m->threads))
            return a3_err_set(err, A3_EUNSUPPORTED, "%s: %s: cannot read dtype", t->file, name);
        if (a3_find_nonfinite(logits, n_rows * (size_t)c->vocab) < 0) return A3_OK;
        int64_t bad = a3__tensor_nonfinite(t); /* as below: name the row */
        if (bad >= 0)
            return a3_err_set(err, A3_EFORMAT, "%s: %s: row %lld holds NaN/Inf", t->file, name,
                              (long long)(bad / (int64_t)d));
        return a3_err_set(err, A3_EFORMAT, "%s: non-finite logits (overflow in the final layers?)", m->dir);
    }
    int borrow = t->dtype == A3_DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0;
    size_t most = a3__wconv_floats((size_t)(c->vocab < VOCAB_CHUNK ? c->vocab : VOCAB_CHUNK) * d, n_rows, m->threads);
    float *buf = borrow ? NULL : a3_malloc_array(most, sizeof(float));
    if (!borrow && !buf) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", m->dir);
    for (int v0 = 0; v0 < c->vocab; v0 += VOCAB_CHUNK) {
        int nv = c->vocab - v0 < VOCAB_CHUNK ? c->vocab - v0 : VOCAB_CHUNK;
        const char *src = (const char *)t->data + (size_t)v0 * d * es;
        if (borrow)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_rows, nv, (int)d, 1.0f, hidden, (int)d,
                        (const float *)(const void *)src, (int)d, 0.0f, logits + v0, c->vocab);
        else
            a3__gemm_wconv(logits + v0, (size_t)c->vocab, hidden, t->dtype, src, n_rows, (int)d, nv, 0, buf, most,
                           m->threads);
        /* A NaN/Inf vocabulary row poisons every row's log-sum-exp: name
         * it. Scanning the logits costs 1/d of the product; the weights are
         * rescanned only when something is wrong. */
        for (size_t r = 0; r < n_rows; r++) {
            if (a3_find_nonfinite(logits + r * (size_t)c->vocab + v0, (size_t)nv) < 0) continue;
            free(buf);
            int64_t bad = a3__tensor_nonfinite(t);
            if (bad >= 0)
                return a3_err_set(err, A3_EFORMAT, "%s: %s: row %lld holds NaN/Inf", t->file, name,
                                  (long long)(bad / (int64_t)d));
            return a3_err_set(err, A3_EFORMAT, "%s: non-finite logits (overflow in the final layers?)", m->dir);
        }
    }
    free(buf);
    return A3_OK;
}

/* The decoder keeps everything a step needs, so a decoding step (one
 * token) allocates nothing: the KV cache for max_len tokens is made here,
 * the activation scratch and hidden-state rows at the first step and
 * again only when a step brings more tokens than any before. A prompt of
 * more than A3_K_MATVEC_ROWS tokens converts each matrix to float32 before
 * its product (forward.c); that buffer and the prompt-sized scratch are
 * released after the step, so they do not stay allocated while decoding. */
struct a3_decoder {
    a3_model *m;
    kv_cache kv;
    fwd_scratch s; /* sized for s_rows rows, kv.max_len keys */
    size_t s_rows;
    fbuf ws;       /* norms/biases */
    float *x, *h;  /* (s_rows, d) each */
};

int a3_decoder_new(a3_model *m, int max_len, a3_decoder **out, a3_err *err)
{
    const a3_config *c = &m->cfg;
    *out = NULL;
    if (max_len <= 0) return a3_err_set(err, A3_EINVAL, "%s: decoder length must be positive", m->dir);
    if (a3_config_check_seqlen(c, m->dir, max_len, err)) return A3_EUNSUPPORTED;
    a3_decoder *d = calloc(1, sizeof *d);
    if (!d) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", m->dir);
    d->m = m;
    d->kv.max_len = max_len;
    d->kv.k = calloc((size_t)c->n_layers, sizeof(float *));
    d->kv.v = calloc((size_t)c->n_layers, sizeof(float *));
    int ok = d->kv.k && d->kv.v;
    for (int l = 0; ok && l < c->n_layers; l++) {
        d->kv.k[l] = a3_malloc_array((size_t)max_len, (size_t)m->shapes[l].k_out * sizeof(float));
        d->kv.v[l] = a3_malloc_array((size_t)max_len, (size_t)m->shapes[l].v_out * sizeof(float));
        ok = d->kv.k[l] && d->kv.v[l];
    }
    if (!ok) {
        a3_decoder_free(d);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory for a KV cache of %d tokens", m->dir, max_len);
    }
    *out = d;
    return A3_OK;
}

static void decoder_release_rows(a3_decoder *d)
{
    if (d->s_rows) a3__scratch_free(&d->s);
    free(d->x);
    free(d->h);
    d->x = d->h = NULL;
    d->s_rows = 0;
}

void a3_decoder_free(a3_decoder *d)
{
    if (!d) return;
    for (int l = 0; l < d->m->cfg.n_layers; l++) {
        if (d->kv.k) free(d->kv.k[l]);
        if (d->kv.v) free(d->kv.v[l]);
    }
    free(d->kv.k);
    free(d->kv.v);
    decoder_release_rows(d);
    a3__fbuf_free(&d->ws);
    free(d);
}

/* Scratch and hidden rows for n tokens, kept from earlier steps when big
 * enough. */
static int decoder_rows(a3_decoder *d, size_t n, a3_err *err)
{
    a3_model *m = d->m;
    if (n <= d->s_rows) return A3_OK;
    decoder_release_rows(d);
    size_t dd = (size_t)m->cfg.d;
    int rc = a3__scratch_init(m, &d->s, n, d->kv.max_len, err);
    if (rc) return rc;
    d->s_rows = n;
    d->x = a3_malloc_array(n, dd * sizeof(float));
    d->h = a3_malloc_array(n, dd * sizeof(float));
    if (!d->x || !d->h) {
        decoder_release_rows(d);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory", m->dir);
    }
    return A3_OK;
}

int a3_decoder_step(a3_decoder *d, const int32_t *tokens, int n, float *logits, a3_err *err)
{
    a3_model *m = d->m;
    size_t dd = (size_t)m->cfg.d;
    if (n <= 0 || d->kv.len + n > d->kv.max_len)
        return a3_err_set(err, A3_EINVAL, "%s: sequence longer than the decoder's %d tokens", m->dir, d->kv.max_len);
    int rc = decoder_rows(d, (size_t)n, err);
    if (rc == A3_OK) rc = a3_model_embed(m, tokens, (size_t)n, d->x, err);
    if (rc == A3_OK) rc = run_layers(m, d->x, 1, n, d->kv.len, &d->kv, d->h, &d->s, &d->ws, err);
    if (rc == A3_OK) rc = a3_model_logits(m, d->h + (size_t)(n - 1) * dd, 1, logits, err);
    if (rc == A3_OK) d->kv.len += n;
    if (n > A3_K_MATVEC_ROWS) { /* a prompt: drop its float32 layer and big scratch */
        decoder_release_rows(d);
        a3__fbuf_free(&d->ws);
    }
    return rc;
}

void a3_model_count_params(const a3_config *c, a3_param_counts *p)
{
    memset(p, 0, sizeof *p);
    int64_t d = c->d;
    int g = c->n_heads / c->n_kv_heads;
    p->embed = (int64_t)c->vocab * d;
    p->lm_head = c->tie_embeddings ? 0 : (int64_t)c->vocab * d;
    p->norms = (int64_t)(2 * c->n_layers + 1) * d;
    for (int l = 0; l < c->n_layers; l++) {
        for (int k = 0; k < c->n_kv_heads; k++) {
            int64_t rq = c->qk_rank[l * c->n_kv_heads + k], rv = c->ov_rank[l * c->n_kv_heads + k];
            p->attn_qk += rq * d * (g + 1); /* g query heads + one key head */
            p->attn_ov += rv * d * (1 + g); /* one value head + g o_proj slices */
            if (c->qkv_bias) p->bias += rq * (g + 1) + rv;
        }
        p->mlp += 3 * d * c->mlp_width[l];
    }
    p->total = p->embed + p->lm_head + p->norms + p->attn_qk + p->attn_ov + p->mlp + p->bias;
}

int64_t a3_model_kv_bytes_per_token(const a3_config *c, int elem_bytes)
{
    int64_t n = 0;
    for (int i = 0; i < c->n_layers * c->n_kv_heads; i++) n += c->qk_rank[i] + c->ov_rank[i];
    return n * elem_bytes;
}

int a3_model_run_layer(a3_model *m, int layer, float *x, int n_seq, int seqlen, size_t max_rows,
                       const a3_layer_hooks *hooks, a3_err *err)
{
    return run_layer(m, layer, NULL, x, n_seq, seqlen, max_rows, hooks, err);
}

int a3_model_run_layer_mats(a3_model *m, int layer, const a3_layer_mats *w, float *x, int n_seq, int seqlen,
                            size_t max_rows, const a3_layer_hooks *hooks, a3_err *err)
{
    return run_layer(m, layer, w, x, n_seq, seqlen, max_rows, hooks, err);
}
