/* gguf_export: an a3 model (original or compressed) as a llama.cpp GGUF
 * (see a3_gguf_export in include/a3/gguf.h).
 *
 * Tensors are declared up front with fill callbacks; each callback reads
 * its source tensor from the model's memory-mapped safetensors (through
 * a3_st_load_f32) and lays it out the llama.cpp way, so memory stays at
 * one tensor in float32 plus its source.
 *
 * Compressed layouts (include/a3/reduce.h): in group g at QK rank 2m, the
 * reduced head's rows (j, j + m) are the original rows (idx[j],
 * idx[j] + hd/2) in HF order; padded back and permuted to llama.cpp's
 * interleaved RoPE pairs that is GGUF row 2 idx[j] + {0, 1} of the head.
 * OV at rank r: the group's v rows and each of its heads' o columns are
 * the first r of the original head, the rest zero (a3 apply --padded does
 * the same from the solver's output). */
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "a3/gguf.h"

enum { K_COPY, K_Q, K_K, K_V, K_O, K_BQ, K_BK, K_BV, K_ROPE_FREQS };

#define VEC (-1) /* cols of a 1-D tensor */

typedef struct export_ctx export_ctx;

typedef struct {
    export_ctx *E;
    int kind, layer;
    char src[128];           /* safetensors name */
    int64_t rows, cols;      /* source shape; cols VEC: 1-D (a 2-D cols may be 0) */
} fill_item;

struct export_ctx {
    a3_model *m;
    const a3_config *c;
    fill_item *items;
    size_t n_items;
};

static const int *qk_of(const a3_config *c, int l) { return c->qk_rank + (size_t)l * c->n_kv_heads; }
static const int *ov_of(const a3_config *c, int l) { return c->ov_rank + (size_t)l * c->n_kv_heads; }

static int load_src(const fill_item *it, float **out, a3_err *err)
{
    size_t n = (size_t)it->rows * (size_t)(it->cols != VEC ? it->cols : 1);
    int64_t shape[2] = {it->rows, it->cols};
    *out = a3_malloc_array(n ? n : 1, sizeof(float));
    if (!*out) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", it->src);
    return a3_st_load_f32(a3_model_tensors(it->E->m), it->src, it->cols != VEC ? 2 : 1, shape, *out, err);
}

/* q or k (and their biases): per head of the group, kept pair j's two rows
 * go to GGUF rows 2 idx[j] and 2 idx[j] + 1; everything else stays zero. */
static void place_qk(const a3_config *c, int l, int is_q, const float *src, float *dst, size_t width)
{
    int nkv = c->n_kv_heads, per = is_q ? c->n_heads / nkv : 1, hd = c->head_dim, half = hd / 2;
    size_t at = 0;
    for (int g = 0; g < nkv; g++) {
        int m = qk_of(c, l)[g] / 2;
        const int *idx = c->rope_idx + ((size_t)l * nkv + g) * half;
        for (int s = 0; s < per; s++) {
            size_t head = (size_t)g * per + s;
            for (int j = 0; j < m; j++)
                for (int hf = 0; hf < 2; hf++)
                    memcpy(dst + (head * hd + 2 * (size_t)idx[j] + hf) * width, src + (at + j + (size_t)hf * m) * width,
                           width * sizeof(float));
            at += 2 * (size_t)m;
        }
    }
}

/* v (and its bias): group g's r rows are the first r of its head. */
static void place_v(const a3_config *c, int l, const float *src, float *dst, size_t width)
{
    size_t at = 0;
    for (int g = 0; g < c->n_kv_heads; g++) {
        int r = ov_of(c, l)[g];
        memcpy(dst + (size_t)g * c->head_dim * width, src + at * width, (size_t)r * width * sizeof(float));
        at += (size_t)r;
    }
}

/* o (d, n_heads * hd): head h's r columns are the first r of its block. */
static void place_o(const a3_config *c, int l, const float *src, float *dst, size_t src_cols)
{
    int per = c->n_heads / c->n_kv_heads, hd = c->head_dim;
    size_t cols = (size_t)c->n_heads * hd;
    for (int e = 0; e < c->d; e++) {
        size_t at = 0;
        for (int h = 0; h < c->n_heads; h++) {
            int r = ov_of(c, l)[h / per];
            memcpy(dst + (size_t)e * cols + (size_t)h * hd, src + (size_t)e * src_cols + at, (size_t)r * sizeof(float));
            at += (size_t)r;
        }
    }
}

/* llama3 RoPE scaling as llama.cpp's per-frequency divisors: the original
 * inverse frequency over the scaled one a3 (and HF) use. */
static void rope_factors(const a3_config *c, float *out)
{
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float f = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)c->head_dim), s = f;
        double low_wl = c->rs_orig_max / c->rs_low, high_wl = c->rs_orig_max / c->rs_high, wl = 2.0 * M_PI / f;
        if (wl > low_wl) s = (float)(f / c->rs_factor);
        else if (wl >= high_wl) {
            double sm = (c->rs_orig_max / wl - c->rs_low) / (c->rs_high - c->rs_low);
            s = (float)((1 - sm) * f / c->rs_factor + sm * f);
        }
        out[i] = f / s;
    }
}

static int fill(void *ctx, float *dst, size_t n, a3_err *err)
{
    const fill_item *it = ctx;
    const a3_config *c = it->E->c;
    if (it->kind == K_ROPE_FREQS) return rope_factors(c, dst), A3_OK;
    float *src = NULL;
    int rc = load_src(it, &src, err);
    if (rc == A3_OK) {
        if (it->kind == K_COPY) memcpy(dst, src, n * sizeof(float));
        else {
            memset(dst, 0, n * sizeof(float));
            size_t width = it->cols != VEC ? (size_t)it->cols : 1;
            switch (it->kind) {
            case K_Q: case K_BQ: place_qk(c, it->layer, 1, src, dst, width); break;
            case K_K: case K_BK: place_qk(c, it->layer, 0, src, dst, width); break;
            case K_V: case K_BV: place_v(c, it->layer, src, dst, width); break;
            case K_O: place_o(c, it->layer, src, dst, width); break;
            }
        }
    }
    free(src);
    return rc;
}

/* ---- declaring the tensors --------------------------------------------- */

typedef struct {
    export_ctx *E;
    a3_gguf_writer *w;
    a3_gguf_type type;
    a3_gguf_export_report *rep;
} declare_ctx;

/* Source tensor src (rows, cols) -> GGUF tensor name with out_rows rows;
 * 1-D (cols VEC) tensors are F32. */
static int declare(declare_ctx *D, const char *name, int kind, int layer, const char *src, int64_t rows,
                   int64_t cols, int64_t out_rows, a3_err *err)
{
    fill_item *it = &D->E->items[D->E->n_items++];
    *it = (fill_item){.E = D->E, .kind = kind, .layer = layer, .rows = rows, .cols = cols};
    snprintf(it->src, sizeof it->src, "%s", src);
    int64_t ne[2] = {cols != VEC ? cols : out_rows, out_rows};
    if (kind == K_O) ne[0] = (int64_t)D->E->c->n_heads * D->E->c->head_dim, ne[1] = rows;
    a3_gguf_type t = cols != VEC ? D->type : A3_GGUF_F32;
    if (t == A3_GGUF_Q8_0 && ne[0] % A3_GGUF_QK8_0) t = A3_GGUF_F16, D->rep->n_fallback_f16++;
    D->rep->params_written += ne[0] * (cols != VEC ? ne[1] : 1);
    return a3_gguf_add_tensor(D->w, name, t, cols != VEC ? 2 : 1, ne, fill, it, err);
}

static int declare_layer(declare_ctx *D, int l, a3_err *err)
{
    const a3_config *c = D->E->c;
    int nkv = c->n_kv_heads, per = c->n_heads / nkv, hd = c->head_dim;
    int64_t d = c->d, q_rows = 0, k_rows = 0, v_rows = 0, o_cols = 0, ff = c->mlp_width[l];
    for (int g = 0; g < nkv; g++) {
        q_rows += (int64_t)per * qk_of(c, l)[g], k_rows += qk_of(c, l)[g];
        v_rows += ov_of(c, l)[g], o_cols += (int64_t)per * ov_of(c, l)[g];
        D->rep->qk_padded += qk_of(c, l)[g] < hd, D->rep->ov_padded += ov_of(c, l)[g] < hd;
    }
    D->rep->mlp_compact += ff < c->d_ff;
    int64_t qo = (int64_t)c->n_heads * hd, ko = (int64_t)nkv * hd;
    char src[128], dst[64];
    int rc = A3_OK;
#define T(gg, hf, kind, r, cc, out)                                                                                     \
    do {                                                                                                                \
        snprintf(src, sizeof src, "model.layers.%d.%s", l, hf);                                                         \
        snprintf(dst, sizeof dst, "blk.%d.%s", l, gg);                                                                  \
        if (rc == A3_OK) rc = declare(D, dst, kind, l, src, r, cc, out, err);                                           \
    } while (0)
    T("attn_norm.weight", "input_layernorm.weight", K_COPY, d, VEC, d);
    T("attn_q.weight", "self_attn.q_proj.weight", K_Q, q_rows, d, qo);
    T("attn_k.weight", "self_attn.k_proj.weight", K_K, k_rows, d, ko);
    T("attn_v.weight", "self_attn.v_proj.weight", K_V, v_rows, d, ko);
    if (c->qkv_bias) {
        T("attn_q.bias", "self_attn.q_proj.bias", K_BQ, q_rows, VEC, qo);
        T("attn_k.bias", "self_attn.k_proj.bias", K_BK, k_rows, VEC, ko);
        T("attn_v.bias", "self_attn.v_proj.bias", K_BV, v_rows, VEC, ko);
    }
    T("attn_output.weight", "self_attn.o_proj.weight", K_O, d, o_cols, d);
    T("ffn_norm.weight", "post_attention_layernorm.weight", K_COPY, d, VEC, d);
    T("ffn_gate.weight", "mlp.gate_proj.weight", K_COPY, ff, d, ff);
    T("ffn_up.weight", "mlp.up_proj.weight", K_COPY, ff, d, ff);
    T("ffn_down.weight", "mlp.down_proj.weight", K_COPY, d, ff, d);
#undef T
    return rc;
}

/* ---- hyper-parameters ---------------------------------------------------- */

static int uniform_mlp(const a3_config *c)
{
    for (int l = 1; l < c->n_layers; l++)
        if (c->mlp_width[l] != c->mlp_width[0]) return 0;
    return 1;
}

static uint32_t file_type(a3_gguf_type t)
{
    /* llama.cpp's llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32. */
    return t == A3_GGUF_F16 ? 1 : t == A3_GGUF_Q8_0 ? 7 : t == A3_GGUF_BF16 ? 32 : 0;
}

static int put_hparams(a3_gguf_writer *w, const a3_config *c, const char *arch, const char *name, a3_gguf_type type,
                       a3_err *err)
{
    char key[96];
    int rc = a3_gguf_kv_str(w, "general.architecture", arch, err);
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    if (rc == A3_OK) rc = a3_gguf_kv_str(w, "general.name", name, err);
    if (rc == A3_OK) rc = a3_gguf_kv_u32(w, "general.file_type", file_type(type), err);
    if (rc == A3_OK) rc = a3_gguf_kv_u32(w, "general.alignment", A3_GGUF_ALIGNMENT, err);
    if (rc == A3_OK) rc = a3_gguf_kv_u32(w, K("vocab_size"), (uint32_t)c->vocab, err);
    if (rc == A3_OK) rc = a3_gguf_kv_u32(w, K("context_length"), (uint32_t)c->max_seq, err);
    if (rc == A3_OK) rc = a3_gguf_kv_u32(w, K("embedding_length"), (uint32_t)c->d, err);
    if (rc == A3_OK) rc = a3_gguf_kv_u32(w, K("block_count"), (uint32_t)c->n_layers, err);
    if (strcmp(arch, "deci") == 0) {
        /* per-layer arrays (llama.cpp reads either a scalar or an array) */
        uint32_t *ff = a3_malloc_array((size_t)c->n_layers, 4), *h = a3_malloc_array((size_t)c->n_layers, 4),
                 *hkv = a3_malloc_array((size_t)c->n_layers, 4);
        if (!ff || !h || !hkv) rc = a3_err_set(err, A3_ENOMEM, "out of memory");
        for (int l = 0; rc == A3_OK && l < c->n_layers; l++)
            ff[l] = (uint32_t)c->mlp_width[l], h[l] = (uint32_t)c->n_heads, hkv[l] = (uint32_t)c->n_kv_heads;
        if (rc == A3_OK) rc = a3_gguf_kv_arr(w, K("feed_forward_length"), A3_GGUF_KV_U32, ff, (size_t)c->n_layers, err);
        if (rc == A3_OK) rc = a3_gguf_kv_arr(w, K("attention.head_count"), A3_GGUF_KV_U32, h, (size_t)c->n_layers, err);
        if (rc == A3_OK)
            rc = a3_gguf_kv_arr(w, K("attention.head_count_kv"), A3_GGUF_KV_U32, hkv, (size_t)c->n_layers, err);
        free(ff), free(h), free(hkv);
    } else {
        if (rc == A3_OK) rc = a3_gguf_kv_u32(w, K("feed_forward_length"), (uint32_t)c->mlp_width[0], err);
        if (rc == A3_OK) rc = a3_gguf_kv_u32(w, K("attention.head_count"), (uint32_t)c->n_heads, err);
        if (rc == A3_OK) rc = a3_gguf_kv_u32(w, K("attention.head_count_kv"), (uint32_t)c->n_kv_heads, err);
    }
    if (rc == A3_OK) rc = a3_gguf_kv_u32(w, K("attention.key_length"), (uint32_t)c->head_dim, err);
    if (rc == A3_OK) rc = a3_gguf_kv_u32(w, K("attention.value_length"), (uint32_t)c->head_dim, err);
    if (rc == A3_OK) rc = a3_gguf_kv_u32(w, K("rope.dimension_count"), (uint32_t)c->head_dim, err);
    if (rc == A3_OK) rc = a3_gguf_kv_f32(w, K("rope.freq_base"), (float)c->rope_theta, err);
    if (rc == A3_OK) rc = a3_gguf_kv_f32(w, K("attention.layer_norm_rms_epsilon"), c->rms_eps, err);
#undef K
    return rc;
}

static int check_model(const a3_config *c, const char *dir, int deci, a3_err *err)
{
    if (c->head_dim % 2) return a3_err_set(err, A3_EUNSUPPORTED, "%s: head_dim %d is odd (RoPE pairs)", dir, c->head_dim);
    if (deci && c->qkv_bias)
        return a3_err_set(err, A3_EUNSUPPORTED,
                          "%s: per-layer MLP widths need llama.cpp's deci architecture, which has no q/k/v biases", dir);
    for (int l = 0; l < c->n_layers; l++)
        if (c->mlp_width[l] <= 0)
            return a3_err_set(err, A3_EUNSUPPORTED, "%s: layer %d has no MLP (width 0)", dir, l);
    return A3_OK;
}

static int declare_all(declare_ctx *D, a3_err *err)
{
    const a3_config *c = D->E->c;
    int rc = declare(D, "token_embd.weight", K_COPY, -1, "model.embed_tokens.weight", c->vocab, c->d, c->vocab, err);
    if (rc == A3_OK && c->rope_llama3) {
        fill_item *it = &D->E->items[D->E->n_items++];
        *it = (fill_item){.E = D->E, .kind = K_ROPE_FREQS};
        int64_t ne[1] = {c->head_dim / 2};
        rc = a3_gguf_add_tensor(D->w, "rope_freqs.weight", A3_GGUF_F32, 1, ne, fill, it, err);
    }
    for (int l = 0; rc == A3_OK && l < c->n_layers; l++) rc = declare_layer(D, l, err);
    if (rc == A3_OK) rc = declare(D, "output_norm.weight", K_COPY, -1, "model.norm.weight", c->d, VEC, c->d, err);
    /* Tied embeddings: llama.cpp uses token_embd when output is absent. */
    if (rc == A3_OK && !c->tie_embeddings)
        rc = declare(D, "output.weight", K_COPY, -1, "lm_head.weight", c->vocab, c->d, c->vocab, err);
    return rc;
}

int a3_gguf_export(a3_model *m, const char *path, const a3_gguf_export_opts *o, a3_gguf_export_report *rep,
                   a3_err *err)
{
    a3_gguf_export_report local;
    rep = rep ? rep : &local;
    memset(rep, 0, sizeof *rep);
    const a3_config *c = a3_model_config(m);
    export_ctx E = {.m = m, .c = c};
    int deci = !uniform_mlp(c), rc = check_model(c, a3_model_dir(m), deci, err);
    if (rc) return rc;
    if (!o->force && access(path, F_OK) == 0)
        return a3_err_set(err, A3_EINVAL, "%s: already exists (use --force to replace it)", path);
    rep->arch = deci ? "deci" : "llama";
    rep->n_groups = c->n_layers * c->n_kv_heads;
    a3_param_counts pc;
    a3_model_count_params(c, &pc);
    rep->params_model = pc.total;
    /* a name for general.name: the directory's last component */
    char *dircopy = strdup(a3_model_dir(m));
    a3_gguf_writer *w = a3_gguf_writer_new();
    E.items = a3_calloc((size_t)c->n_layers * 16 + 8, sizeof *E.items);
    if (!dircopy || !w || !E.items) rc = a3_err_set(err, A3_ENOMEM, "out of memory");
    if (rc == A3_OK) rc = put_hparams(w, c, rep->arch, basename(dircopy), o->type, err);
    if (rc == A3_OK) rc = a3_gguf_put_tokenizer(w, a3_model_dir(m), c->vocab, &rep->tok_model, &rep->tok_pre, err);
    declare_ctx D = {.E = &E, .w = w, .type = o->type, .rep = rep};
    if (rc == A3_OK) rc = declare_all(&D, err);
    if (rc == A3_OK) rc = a3_gguf_write(w, path, o->progress, o->ctx, &rep->bytes, err);
    a3_gguf_writer_free(w);
    free(E.items), free(dircopy);
    return rc;
}
