/* weights: find, check and view one layer's tensors at a time.
 *
 * Decoding (a few token rows) reads the matrices in their file dtype from
 * the memory map through a3_k_matvec: nothing is converted or allocated
 * per token. A forward pass leaves the matrices raw too and converts each
 * right before its product (forward.c, fwd_scratch.wconv); a3__layer_load
 * with `convert` makes float32 views of the whole layer in a buffer that
 * only grows, for callers that run one layer over many chunks. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/kernels.h"
#include "internal.h"

int a3__layer_shapes_init(a3_model *m, a3_err *err)
{
    const a3_config *c = &m->cfg;
    m->shapes = calloc((size_t)c->n_layers, sizeof *m->shapes);
    if (!m->shapes) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", m->dir);
    for (int l = 0; l < c->n_layers; l++) {
        layer_shape *s = &m->shapes[l];
        s->q_off = calloc((size_t)c->n_heads, sizeof(int));
        s->z_off = calloc((size_t)c->n_heads, sizeof(int));
        s->k_off = calloc((size_t)c->n_kv_heads, sizeof(int));
        s->v_off = calloc((size_t)c->n_kv_heads, sizeof(int));
        if (!s->q_off || !s->z_off || !s->k_off || !s->v_off)
            return a3_err_set(err, A3_ENOMEM, "%s: out of memory", m->dir);
        const int *qk = c->qk_rank + (size_t)l * c->n_kv_heads;
        const int *ov = c->ov_rank + (size_t)l * c->n_kv_heads;
        for (int g = 0; g < c->n_kv_heads; g++) {
            s->k_off[g] = s->k_out;
            s->v_off[g] = s->v_out;
            s->k_out += qk[g];
            s->v_out += ov[g];
        }
        for (int h = 0; h < c->n_heads; h++) {
            int g = a3_config_group(c, h);
            s->q_off[h] = s->q_out;
            s->z_off[h] = s->o_in;
            s->q_out += qk[g];
            s->o_in += ov[g];
        }
        s->ff = c->mlp_width[l];
    }
    return A3_OK;
}

void a3__layer_shapes_free(a3_model *m)
{
    if (!m->shapes) return;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        free(m->shapes[l].q_off);
        free(m->shapes[l].z_off);
        free(m->shapes[l].k_off);
        free(m->shapes[l].v_off);
    }
    free(m->shapes);
    m->shapes = NULL;
}

typedef struct {
    char name[128];
    int ndim;
    int64_t shape[2];
} tensor_spec;

/* The tensors of layer l, in a fixed order matching layer_weights. */
enum { T_ANORM, T_WQ, T_WK, T_WV, T_WO, T_BQ, T_BK, T_BV, T_MNORM, T_WG, T_WU, T_WD, T_COUNT };

static const char *const suffix[T_COUNT] = {
    "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
    "self_attn.v_proj.weight", "self_attn.o_proj.weight", "self_attn.q_proj.bias",
    "self_attn.k_proj.bias", "self_attn.v_proj.bias", "post_attention_layernorm.weight",
    "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"};

static int layer_specs(const a3_model *m, int l, tensor_spec *sp)
{
    const a3_config *c = &m->cfg;
    const layer_shape *s = &m->shapes[l];
    const int64_t d = c->d;
    const int64_t dims[T_COUNT][2] = {
        {d, 0}, {s->q_out, d}, {s->k_out, d}, {s->v_out, d}, {d, s->o_in}, {s->q_out, 0},
        {s->k_out, 0}, {s->v_out, 0}, {d, 0}, {s->ff, d}, {s->ff, d}, {d, s->ff}};
    for (int t = 0; t < T_COUNT; t++) {
        snprintf(sp[t].name, sizeof sp[t].name, "model.layers.%d.%s", l, suffix[t]);
        sp[t].shape[0] = dims[t][0];
        sp[t].shape[1] = dims[t][1];
        /* norms and biases are vectors; a matrix with a width planned to 0
         * is an empty (r, 0) or (0, c) matrix, still 2-D */
        sp[t].ndim = t == T_ANORM || t == T_MNORM || t == T_BQ || t == T_BK || t == T_BV ? 1 : 2;
    }
    return c->qkv_bias;
}

static int check_one(const a3_model *m, const char *name, int ndim, const int64_t *shape, a3_err *err)
{
    const a3_st_tensor *t = a3_st_find(m->st, name);
    if (!t) return a3_err_set(err, A3_EFORMAT, "%s: %s: missing tensor", m->dir, name);
    if (t->dtype != A3_DT_F32 && t->dtype != A3_DT_F16 && t->dtype != A3_DT_BF16)
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: %s: dtype %s is not supported (F32, F16, BF16)",
                          t->file, name, a3_dtype_name(t->dtype));
    int ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok)
        return a3_err_set(err, A3_EFORMAT, "%s: %s: shape does not match config.json (expected [%lld%s%lld])",
                          t->file, name, (long long)shape[0], ndim > 1 ? ", " : "",
                          ndim > 1 ? (long long)shape[1] : 0LL);
    return A3_OK;
}

/* Whether the config uses tensor `name`. Besides the weights it reads,
 * two kinds are tolerated because common exports carry them: RoPE
 * inv_freq buffers (recomputed from config.json) and an lm_head stored next
 * to tied embeddings (Hugging Face ignores it too). */
static int expected_tensor(const a3_config *c, const char *name)
{
    if (!strcmp(name, "model.embed_tokens.weight") || !strcmp(name, "model.norm.weight") ||
        !strcmp(name, "lm_head.weight"))
        return 1;
    size_t n = strlen(name), tail = strlen("rotary_emb.inv_freq");
    if (n > tail && !strcmp(name + n - tail, "rotary_emb.inv_freq")) return 1;
    int l, at = 0;
    if (sscanf(name, "model.layers.%d.%n", &l, &at) != 1 || at == 0 || l < 0 || l >= c->n_layers) return 0;
    char canon[160];
    snprintf(canon, sizeof canon, "model.layers.%d.", l);
    if (strncmp(name, canon, (size_t)at) != 0) return 0; /* "model.layers.01." or " 1." */
    for (int t = 0; t < T_COUNT; t++)
        if (!strcmp(name + at, suffix[t])) return c->qkv_bias || (t != T_BQ && t != T_BK && t != T_BV);
    return 0;
}

/* Weights config.json does not account for mean the two disagree (a layer
 * count cut down, another architecture's extra tensors): running anyway
 * gives a silently different model, so it is an error naming them. */
static int check_unused(const a3_model *m, a3_err *err)
{
    size_t n = a3_st_count(m->st), unused = 0;
    const a3_st_tensor *first = NULL;
    for (size_t i = 0; i < n; i++) {
        const a3_st_tensor *t = a3_st_get(m->st, i);
        if (!expected_tensor(&m->cfg, t->name)) unused++, first = first ? first : t;
    }
    if (!unused) return A3_OK;
    char name[96];
    a3_escape(first->name, name, sizeof name);
    return a3_err_set(err, A3_EFORMAT, "%s: %s: %zu tensor%s that config.json does not use (%d layers), e.g. %s",
                      m->dir, first->file, unused, unused > 1 ? "s" : "", m->cfg.n_layers, name);
}

int a3__check_tensors(const a3_model *m, a3_err *err)
{
    const a3_config *c = &m->cfg;
    int64_t emb[2] = {c->vocab, c->d}, dv[1] = {c->d};
    int rc;
    if ((rc = check_one(m, "model.embed_tokens.weight", 2, emb, err))) return rc;
    if ((rc = check_one(m, "model.norm.weight", 1, dv, err))) return rc;
    if (!c->tie_embeddings && (rc = check_one(m, "lm_head.weight", 2, emb, err))) return rc;
    for (int l = 0; l < c->n_layers; l++) {
        tensor_spec sp[T_COUNT];
        int bias = layer_specs(m, l, sp);
        for (int t = 0; t < T_COUNT; t++) {
            if (!bias && (t == T_BQ || t == T_BK || t == T_BV)) continue;
            if ((rc = check_one(m, sp[t].name, sp[t].ndim, sp[t].shape, err))) return rc;
        }
    }
    return check_unused(m, err);
}

/* F32 data that is 4-byte aligned can be used in place. */
static const float *borrowable(const a3_st_tensor *t)
{
    if (t->dtype == A3_DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) return t->data;
    return NULL;
}

int a3__tensor_f32(const a3_model *m, const char *name, size_t numel, const float **out,
                   float **owned, a3_err *err)
{
    const a3_st_tensor *t = a3_st_find(m->st, name);
    *owned = NULL;
    if (!t || t->numel != numel) return a3_err_set(err, A3_EFORMAT, "%s: %s: missing or wrong size", m->dir, name);
    if ((*out = borrowable(t))) return A3_OK;
    float *buf = a3_malloc_array(numel, sizeof(float));
    if (!buf) return a3_err_set(err, A3_ENOMEM, "%s: %s: out of memory", m->dir, name);
    if (a3_k_to_f32(t->dtype, t->data, numel, buf, m->threads) != 0) {
        free(buf);
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: %s: cannot convert dtype", t->file, name);
    }
    *out = *owned = buf;
    return A3_OK;
}

void a3__fbuf_free(fbuf *b)
{
    free(b->p);
    b->p = NULL, b->cap = 0;
}

/* Room for n floats; the old contents are not kept. Grows to exactly n:
 * a prefill asks once for its largest layer, so doubling would only waste
 * memory. */
static int fbuf_reserve(fbuf *b, size_t n)
{
    if (n <= b->cap) return A3_OK;
    float *p = a3_malloc_array(n, sizeof(float));
    if (!p) return A3_ENOMEM;
    free(b->p);
    b->p = p, b->cap = n;
    return A3_OK;
}

static int is_matrix(int i) { return i == T_WQ || i == T_WK || i == T_WV || i == T_WO || i == T_WG || i == T_WU || i == T_WD; }

int a3__layer_load(const a3_model *m, int l, int convert, layer_weights *w, fbuf *ws, a3_err *err)
{
    tensor_spec sp[T_COUNT];
    int bias = layer_specs(m, l, sp);
    const a3_st_tensor *t[T_COUNT] = {0};
    size_t need = 0;
    memset(w, 0, sizeof *w);
    for (int i = 0; i < T_COUNT; i++) {
        if (!bias && (i == T_BQ || i == T_BK || i == T_BV)) continue;
        t[i] = a3_st_find(m->st, sp[i].name);
        if (!t[i]) return a3_err_set(err, A3_EFORMAT, "%s: %s: missing tensor", m->dir, sp[i].name);
        if (!borrowable(t[i]) && (convert || !is_matrix(i))) need += t[i]->numel;
    }
    if (fbuf_reserve(ws, need) != A3_OK)
        return a3_err_set(err, A3_ENOMEM, "%s: layer %d: out of memory (%zu floats)", m->dir, l, need);
    const float *p[T_COUNT] = {0};
    size_t at = 0;
    for (int i = 0; i < T_COUNT; i++) {
        if (!t[i]) continue;
        if ((p[i] = borrowable(t[i]))) continue;
        if (is_matrix(i) && !convert) continue;
        float *dst = ws->p + at;
        /* Matrices on all threads; a vector is too small to share. */
        if (a3_k_to_f32(t[i]->dtype, t[i]->data, t[i]->numel, dst, is_matrix(i) ? m->threads : 1) != 0)
            return a3_err_set(err, A3_EUNSUPPORTED, "%s: %s: cannot convert dtype", t[i]->file, sp[i].name);
        p[i] = dst;
        at += t[i]->numel;
    }
    w->attn_norm = p[T_ANORM], w->bq = p[T_BQ], w->bk = p[T_BK], w->bv = p[T_BV], w->mlp_norm = p[T_MNORM];
    wmat *mat[T_COUNT] = {[T_WQ] = &w->wq, [T_WK] = &w->wk, [T_WV] = &w->wv, [T_WO] = &w->wo,
                          [T_WG] = &w->wg, [T_WU] = &w->wu, [T_WD] = &w->wd};
    for (int i = 0; i < T_COUNT; i++)
        if (mat[i]) *mat[i] = (wmat){.raw = t[i]->data, .dt = t[i]->dtype, .f32 = p[i]};
    return A3_OK;
}

size_t a3__layer_convert_max(const a3_model *m)
{
    size_t most = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        tensor_spec sp[T_COUNT];
        layer_specs(m, l, sp);
        for (int i = 0; i < T_COUNT; i++) {
            const a3_st_tensor *t = is_matrix(i) ? a3_st_find(m->st, sp[i].name) : NULL;
            if (t && !borrowable(t) && t->numel > most) most = t->numel;
        }
    }
    return most;
}

int64_t a3__tensor_nonfinite(const a3_st_tensor *t)
{
    enum { SLICE = 1 << 16 };
    const float *f = borrowable(t);
    if (f) return a3_find_nonfinite(f, t->numel);
    float *buf = a3_malloc_array(SLICE, sizeof(float));
    if (!buf) return -2;
    size_t es = a3_dtype_size(t->dtype);
    int64_t bad = -1;
    for (size_t i0 = 0; i0 < t->numel && bad < 0; i0 += SLICE) {
        size_t n = t->numel - i0 < SLICE ? t->numel - i0 : SLICE;
        if (a3_k_to_f32(t->dtype, (const char *)t->data + i0 * es, n, buf, 1) != 0) break;
        int64_t b = a3_find_nonfinite(buf, n);
        if (b >= 0) bad = (int64_t)i0 + b;
    }
    free(buf);
    return bad;
}

int a3__layer_nonfinite(const a3_model *m, int l, a3_err *err)
{
    tensor_spec sp[T_COUNT];
    int bias = layer_specs(m, l, sp);
    for (int t = 0; t < T_COUNT; t++) {
        if (!bias && (t == T_BQ || t == T_BK || t == T_BV)) continue;
        const a3_st_tensor *st = a3_st_find(m->st, sp[t].name);
        if (!st) continue;
        int64_t bad = a3__tensor_nonfinite(st);
        if (bad == -2) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", m->dir);
        if (bad >= 0)
            return a3_err_set(err, A3_EFORMAT, "%s: %s: element %lld is NaN/Inf", st->file, sp[t].name,
                              (long long)bad);
    }
    return A3_OK;
}
