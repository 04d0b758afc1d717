/* ref_llama2c: see ref_llama2c.h. Kept as close to llama2.c run.c as
 * possible so that a disagreement points at the code under test. */
#include "ref_llama2c.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ref_l2c {
    const a3_llama2c_config *c;
    const a3_llama2c_weights *w;
    int max_len, pos;
    float *x;           /* (dim) residual stream */
    float *xb, *xb2;    /* (dim) */
    float *hb, *hb2;    /* (hidden_dim) */
    float *q;           /* (dim) */
    float *att;         /* (max_len) */
    float *key_cache;   /* (n_layers, max_len, kv_dim) */
    float *value_cache; /* (n_layers, max_len, kv_dim) */
};

void ref_l2c_free(ref_l2c *r)
{
    if (!r) return;
    free(r->x);
    free(r->xb);
    free(r->xb2);
    free(r->hb);
    free(r->hb2);
    free(r->q);
    free(r->att);
    free(r->key_cache);
    free(r->value_cache);
    free(r);
}

ref_l2c *ref_l2c_new(const a3_llama2c_config *c, const a3_llama2c_weights *w, int max_len)
{
    if (max_len < 1 || max_len > c->seq_len) return NULL;
    ref_l2c *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->c = c;
    r->w = w;
    r->max_len = max_len;
    size_t d = (size_t)c->dim, h = (size_t)c->hidden_dim;
    size_t cache = (size_t)c->n_layers * (size_t)max_len * (size_t)c->kv_dim;
    r->x = calloc(d, sizeof(float));
    r->xb = calloc(d, sizeof(float));
    r->xb2 = calloc(d, sizeof(float));
    r->hb = calloc(h, sizeof(float));
    r->hb2 = calloc(h, sizeof(float));
    r->q = calloc(d, sizeof(float));
    r->att = calloc((size_t)max_len, sizeof(float));
    r->key_cache = calloc(cache, sizeof(float));
    r->value_cache = calloc(cache, sizeof(float));
    if (!r->x || !r->xb || !r->xb2 || !r->hb || !r->hb2 || !r->q || !r->att || !r->key_cache ||
        !r->value_cache) {
        ref_l2c_free(r);
        return NULL;
    }
    return r;
}

void ref_l2c_reset(ref_l2c *r) { r->pos = 0; }

static void rmsnorm(float *o, const float *x, const float *weight, int size)
{
    double ss = 0;
    for (int j = 0; j < size; j++) ss += (double)x[j] * x[j];
    double scale = 1.0 / sqrt(ss / size + 1e-5);
    for (int j = 0; j < size; j++) o[j] = (float)(weight[j] * (x[j] * scale));
}

/* W (d, n) @ x (n) -> xout (d), as run.c's matmul. */
static void matmul(float *xout, const float *x, const float *w, int n, int d)
{
    for (int i = 0; i < d; i++) {
        const float *row = w + (size_t)i * (size_t)n;
        double val = 0;
        for (int j = 0; j < n; j++) val += (double)row[j] * x[j];
        xout[i] = (float)val;
    }
}

static void softmax(float *x, int size)
{
    float max_val = x[0];
    for (int i = 1; i < size; i++)
        if (x[i] > max_val) max_val = x[i];
    double sum = 0;
    for (int i = 0; i < size; i++) {
        x[i] = (float)exp((double)x[i] - max_val);
        sum += x[i];
    }
    for (int i = 0; i < size; i++) x[i] = (float)(x[i] / sum);
}

/* Interleaved RoPE over the first n values of v (q: dim, k: kv_dim). */
static void rope(float *v, int n, int head_size, int pos)
{
    for (int i = 0; i < n; i += 2) {
        int head_dim = i % head_size;
        double freq = 1.0 / pow(10000.0, head_dim / (double)head_size);
        double val = pos * freq;
        double fcr = cos(val), fci = sin(val);
        double v0 = v[i], v1 = v[i + 1];
        v[i] = (float)(v0 * fcr - v1 * fci);
        v[i + 1] = (float)(v0 * fci + v1 * fcr);
    }
}

/* Multi-head attention of r->q over the cached keys/values of layer l,
 * result in r->xb. */
static void attention(ref_l2c *r, size_t loff)
{
    const a3_llama2c_config *c = r->c;
    int hs = c->head_dim, kv_mul = c->n_heads / c->n_kv_heads, kv_dim = c->kv_dim;
    for (int h = 0; h < c->n_heads; h++) {
        const float *q = r->q + h * hs;
        for (int t = 0; t <= r->pos; t++) {
            const float *k = r->key_cache + loff + (size_t)t * kv_dim + (h / kv_mul) * hs;
            double score = 0;
            for (int i = 0; i < hs; i++) score += (double)q[i] * k[i];
            r->att[t] = (float)(score / sqrt((double)hs));
        }
        softmax(r->att, r->pos + 1);
        float *xb = r->xb + h * hs;
        for (int i = 0; i < hs; i++) {
            double acc = 0;
            for (int t = 0; t <= r->pos; t++)
                acc += (double)r->att[t] * r->value_cache[loff + (size_t)t * kv_dim + (h / kv_mul) * hs + i];
            xb[i] = (float)acc;
        }
    }
}

static void layer(ref_l2c *r, int l)
{
    const a3_llama2c_config *c = r->c;
    const a3_llama2c_weights *w = r->w;
    size_t L = (size_t)l, d = (size_t)c->dim, kv = (size_t)c->kv_dim, hd = (size_t)c->hidden_dim;
    size_t loff = L * (size_t)r->max_len * kv;
    float *k = r->key_cache + loff + (size_t)r->pos * kv;
    float *v = r->value_cache + loff + (size_t)r->pos * kv;

    rmsnorm(r->xb, r->x, w->rms_att + L * d, c->dim);
    matmul(r->q, r->xb, w->wq + L * d * d, c->dim, c->dim);
    matmul(k, r->xb, w->wk + L * kv * d, c->dim, c->kv_dim);
    matmul(v, r->xb, w->wv + L * kv * d, c->dim, c->kv_dim);
    rope(r->q, c->dim, c->head_dim, r->pos);
    rope(k, c->kv_dim, c->head_dim, r->pos);
    attention(r, loff);
    matmul(r->xb2, r->xb, w->wo + L * d * d, c->dim, c->dim);
    for (int i = 0; i < c->dim; i++) r->x[i] += r->xb2[i];

    rmsnorm(r->xb, r->x, w->rms_ffn + L * d, c->dim);
    matmul(r->hb, r->xb, w->w1 + L * hd * d, c->dim, c->hidden_dim);
    matmul(r->hb2, r->xb, w->w3 + L * hd * d, c->dim, c->hidden_dim);
    for (int i = 0; i < c->hidden_dim; i++) {
        double g = r->hb[i];
        r->hb[i] = (float)(g / (1.0 + exp(-g)) * r->hb2[i]); /* SwiGLU */
    }
    matmul(r->xb, r->hb, w->w2 + L * d * hd, c->hidden_dim, c->dim);
    for (int i = 0; i < c->dim; i++) r->x[i] += r->xb[i];
}

int ref_l2c_step(ref_l2c *r, int token, float *logits)
{
    const a3_llama2c_config *c = r->c;
    if (token < 0 || token >= c->vocab_size || r->pos >= r->max_len) return -1;
    memcpy(r->x, r->w->token_embedding + (size_t)token * (size_t)c->dim, (size_t)c->dim * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) layer(r, l);
    rmsnorm(r->x, r->x, r->w->rms_final, c->dim);
    matmul(logits, r->x, r->w->wcls, c->dim, c->vocab_size);
    r->pos++;
    return 0;
}

static int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int ref_l2c_greedy(ref_l2c *r, int max_new, int *out)
{
    float *logits = calloc((size_t)r->c->vocab_size, sizeof(float));
    if (!logits) return -1;
    ref_l2c_reset(r);
    int token = 1, n = 0;
    while (n < max_new) {
        if (ref_l2c_step(r, token, logits) != 0) {
            n = -1;
            break;
        }
        token = argmax(logits, r->c->vocab_size);
        if (token == 1) break; /* run.c: BOS delimits sequences */
        out[n++] = token;
    }
    free(logits);
    return n;
}
