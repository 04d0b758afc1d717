/* ref_hf: see ref_hf.h. Mirrors HF LlamaForCausalLM / Qwen2ForCausalLM
 * semantics: rotate_half RoPE, repeat_kv GQA, SwiGLU, RMSNorm. */
#include "ref_hf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/config.h"
#include "a3/safetensors.h"

typedef struct {
    a3_config c;
    a3_st_set *st;
} ref_model;

/* Load a tensor as doubles (converted through float32 as the file dictates). */
static double *get(const ref_model *r, const char *fmt, int l, size_t *n_out)
{
    char name[160];
    snprintf(name, sizeof name, fmt, l);
    const a3_st_tensor *t = a3_st_find(r->st, name);
    if (!t) return NULL;
    float *f = malloc(t->numel * sizeof(float));
    double *d = malloc(t->numel * sizeof(double));
    if (!f || !d || a3_convert_to_f32(t->dtype, t->data, t->numel, f)) {
        free(f);
        free(d);
        return NULL;
    }
    for (size_t i = 0; i < t->numel; i++) d[i] = f[i];
    free(f);
    if (n_out) *n_out = t->numel;
    return d;
}

static void rmsnorm(double *o, const double *x, const double *w, int d, double eps)
{
    double ss = 0;
    for (int i = 0; i < d; i++) ss += x[i] * x[i];
    double inv = 1.0 / sqrt(ss / d + eps);
    for (int i = 0; i < d; i++) o[i] = x[i] * inv * w[i];
}

/* y[out] = W[out][in] x[in] (+ b) */
static void matvec(double *y, const double *W, const double *x, const double *b, int out, int in)
{
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < in; i++) s += W[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static double inv_freq(const a3_config *c, int i)
{
    double f = 1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim);
    if (!c->rope_llama3) return f;
    double wl = 2 * M_PI / f, lo = c->rs_orig_max / c->rs_low, hi = c->rs_orig_max / c->rs_high;
    if (wl < hi) return f;
    if (wl > lo) return f / c->rs_factor;
    double s = (c->rs_orig_max / wl - c->rs_low) / (c->rs_high - c->rs_low);
    return (1 - s) * f / c->rs_factor + s * f;
}

static void rope(const a3_config *c, double *v, int pos)
{
    int h = c->head_dim / 2;
    for (int i = 0; i < h; i++) {
        double a = pos * inv_freq(c, i), x0 = v[i], x1 = v[i + h];
        v[i] = x0 * cos(a) - x1 * sin(a);
        v[i + h] = x1 * cos(a) + x0 * sin(a);
    }
}

static void attend(const a3_config *c, const double *q, const double *kc, const double *vc, int pos,
                   double *z)
{
    int hd = c->head_dim, g = c->n_heads / c->n_kv_heads, kvw = c->n_kv_heads * hd;
    /* HF's sliding window (Mistral): key s is seen iff pos - s < window. */
    int s0 = c->sliding_window > 0 && pos - c->sliding_window + 1 > 0 ? pos - c->sliding_window + 1 : 0;
    double *p = malloc((size_t)(pos + 1) * sizeof(double));
    for (int h = 0; h < c->n_heads; h++) {
        int kh = h / g;
        double mx = -INFINITY, sum = 0;
        for (int s = s0; s <= pos; s++) {
            double dot = 0;
            for (int i = 0; i < hd; i++) dot += q[h * hd + i] * kc[(size_t)s * kvw + kh * hd + i];
            p[s] = dot / sqrt((double)hd);
            if (p[s] > mx) mx = p[s];
        }
        for (int s = s0; s <= pos; s++) sum += (p[s] = exp(p[s] - mx));
        for (int i = 0; i < hd; i++) {
            double acc = 0;
            for (int s = s0; s <= pos; s++) acc += p[s] / sum * vc[(size_t)s * kvw + kh * hd + i];
            z[h * hd + i] = acc;
        }
    }
    free(p);
}

static int layer(const ref_model *r, int l, double *x, double *kc, double *vc, int pos)
{
    const a3_config *c = &r->c;
    int d = c->d, qw = c->n_heads * c->head_dim, kvw = c->n_kv_heads * c->head_dim, ff = c->d_ff;
    double *an = get(r, "model.layers.%d.input_layernorm.weight", l, NULL);
    double *wq = get(r, "model.layers.%d.self_attn.q_proj.weight", l, NULL);
    double *wk = get(r, "model.layers.%d.self_attn.k_proj.weight", l, NULL);
    double *wv = get(r, "model.layers.%d.self_attn.v_proj.weight", l, NULL);
    double *wo = get(r, "model.layers.%d.self_attn.o_proj.weight", l, NULL);
    double *bq = c->qkv_bias ? get(r, "model.layers.%d.self_attn.q_proj.bias", l, NULL) : NULL;
    double *bk = c->qkv_bias ? get(r, "model.layers.%d.self_attn.k_proj.bias", l, NULL) : NULL;
    double *bv = c->qkv_bias ? get(r, "model.layers.%d.self_attn.v_proj.bias", l, NULL) : NULL;
    double *mn = get(r, "model.layers.%d.post_attention_layernorm.weight", l, NULL);
    double *wg = get(r, "model.layers.%d.mlp.gate_proj.weight", l, NULL);
    double *wu = get(r, "model.layers.%d.mlp.up_proj.weight", l, NULL);
    double *wd = get(r, "model.layers.%d.mlp.down_proj.weight", l, NULL);
    double *xn = malloc(d * sizeof(double)), *q = malloc(qw * sizeof(double));
    double *z = malloc(qw * sizeof(double)), *o = malloc(d * sizeof(double));
    double *gg = malloc(ff * sizeof(double)), *uu = malloc(ff * sizeof(double));
    int ok = an && wq && wk && wv && wo && mn && wg && wu && wd && (!c->qkv_bias || (bq && bk && bv));
    if (ok) {
        double *k = kc + (size_t)pos * kvw, *v = vc + (size_t)pos * kvw;
        rmsnorm(xn, x, an, d, c->rms_eps);
        matvec(q, wq, xn, bq, qw, d);
        matvec(k, wk, xn, bk, kvw, d);
        matvec(v, wv, xn, bv, kvw, d);
        for (int h = 0; h < c->n_heads; h++) rope(c, q + h * c->head_dim, pos);
        for (int h = 0; h < c->n_kv_heads; h++) rope(c, k + h * c->head_dim, pos);
        attend(c, q, kc, vc, pos, z);
        matvec(o, wo, z, NULL, d, qw);
        for (int i = 0; i < d; i++) x[i] += o[i];
        rmsnorm(xn, x, mn, d, c->rms_eps);
        matvec(gg, wg, xn, NULL, ff, d);
        matvec(uu, wu, xn, NULL, ff, d);
        for (int i = 0; i < ff; i++) gg[i] = gg[i] / (1 + exp(-gg[i])) * uu[i];
        matvec(o, wd, gg, NULL, d, ff);
        for (int i = 0; i < d; i++) x[i] += o[i];
    }
    double *all[] = {an, wq, wk, wv, wo, bq, bk, bv, mn, wg, wu, wd, xn, q, z, o, gg, uu};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    return ok ? 0 : -1;
}

int ref_hf_logits(const char *dir, const int32_t *tokens, int n, double *logits)
{
    ref_model r = {0};
    a3_err err = {0};
    if (a3_config_load(dir, &r.c, &err) || a3_st_open_dir(dir, &r.st, &err)) {
        fprintf(stderr, "ref_hf: %s\n", err.msg);
        a3_config_free(&r.c);
        return -1;
    }
    const a3_config *c = &r.c;
    int d = c->d, kvw = c->n_kv_heads * c->head_dim, rc = 0;
    double **kc = calloc(c->n_layers, sizeof *kc), **vc = calloc(c->n_layers, sizeof *vc);
    for (int l = 0; l < c->n_layers; l++) {
        kc[l] = malloc((size_t)n * kvw * sizeof(double));
        vc[l] = malloc((size_t)n * kvw * sizeof(double));
    }
    double *emb = get(&r, "model.embed_tokens.weight", 0, NULL);
    double *head = c->tie_embeddings ? emb : get(&r, "lm_head.weight", 0, NULL);
    double *nw = get(&r, "model.norm.weight", 0, NULL);
    double *x = malloc(d * sizeof(double)), *xn = malloc(d * sizeof(double));
    for (int t = 0; t < n && rc == 0 && emb && head && nw; t++) {
        for (int i = 0; i < d; i++) x[i] = emb[(size_t)tokens[t] * d + i];
        for (int l = 0; l < c->n_layers && rc == 0; l++) rc = layer(&r, l, x, kc[l], vc[l], t);
        rmsnorm(xn, x, nw, d, c->rms_eps);
        matvec(logits + (size_t)t * c->vocab, head, xn, NULL, c->vocab, d);
    }
    if (!emb || !head || !nw) rc = -1;
    for (int l = 0; l < c->n_layers; l++) {
        free(kc[l]);
        free(vc[l]);
    }
    free(kc);
    free(vc);
    if (head != emb) free(head);
    free(emb);
    free(nw);
    free(x);
    free(xn);
    a3_st_free(r.st);
    a3_config_free(&r.c);
    return rc;
}
