/* probe: NLL sensitivity of every component (definition and cost in
 * include/a3/pred.h). The clean hidden state entering layer l is kept;
 * for each kind the layer is rerun with that component truncated (editing
 * hooks on the forward pass), then the rest of the model, and the mean NLL
 * of the probe tokens is compared with the clean one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/pred.h"
#include "a3/reduce.h"
#include "a3/sha256.h"
#include "pred_internal.h"

/* The truncations in force: per layer, a bit per kind (active), and that
 * kind's data. One component for the per-component runs, every component
 * of every layer for the joint run. */
typedef struct {
    const a3_cache *c;
    uint8_t *active;  /* (n_layers) bits 1 << kind */
    float *P;         /* (n_layers, n_kv, hd, hd) OV projectors, float32 */
    uint8_t *dropq;   /* (n_layers, n_kv, hd): query dims zeroed */
    uint8_t *dropu;   /* (n_layers, d_ff): neurons zeroed */
    float *vbuf;      /* (hd) */
} trunc_ctx;

static int edit_qkv(void *ctx, int l, float *q, float *k, float *v, size_t rows)
{
    trunc_ctx *t = ctx;
    const a3_cache *c = t->c;
    int hd = c->head_dim, per = c->n_heads / c->n_kv_heads, nkv = c->n_kv_heads, nh = c->n_heads;
    (void)k;
    if (t->active[l] & (1u << A3_COMP_QK)) { /* dropped pairs leave the scores: zero their query dims */
        const uint8_t *drop = t->dropq + (size_t)l * nkv * hd;
        for (size_t r = 0; r < rows; r++)
            for (int i = 0; i < nh; i++)
                for (int a = 0; a < hd; a++)
                    if (drop[(i / per) * hd + a]) q[r * (size_t)nh * hd + (size_t)i * hd + a] = 0;
    }
    if (t->active[l] & (1u << A3_COMP_OV)) { /* v -> v P per group */
        for (size_t r = 0; r < rows; r++)
            for (int g = 0; g < nkv; g++) {
                float *row = v + r * (size_t)nkv * hd + (size_t)g * hd;
                const float *P = t->P + ((size_t)l * nkv + g) * hd * hd;
                for (int b = 0; b < hd; b++) {
                    float s = 0;
                    for (int a = 0; a < hd; a++) s += row[a] * P[a * hd + b];
                    t->vbuf[b] = s;
                }
                memcpy(row, t->vbuf, (size_t)hd * sizeof *row);
            }
    }
    return 0;
}

static int edit_u(void *ctx, int l, float *u, size_t rows)
{
    trunc_ctx *t = ctx;
    int ff = t->c->d_ff;
    if (!(t->active[l] & (1u << A3_COMP_MLP))) return 0;
    const uint8_t *drop = t->dropu + (size_t)l * ff;
    for (size_t r = 0; r < rows; r++)
        for (int n = 0; n < ff; n++)
            if (drop[n]) u[r * (size_t)ff + n] = 0;
    return 0;
}

/* Mean next-token NLL of the windows from the last hidden state x. */
static int nll_of(a3_model *m, const float *x, const int32_t *win, int nw, int L, float *xn, float *lg, double *out,
                  a3_err *err)
{
    const a3_config *k = a3_model_config(m);
    size_t V = (size_t)k->vocab, rows = (size_t)nw * L;
    int rc = a3_model_final_norm(m, x, rows, xn, err);
    double sum = 0;
    int64_t n = 0;
    for (int s = 0; rc == 0 && s < nw; s++) {
        rc = a3_model_logits(m, xn + (size_t)s * L * k->d, (size_t)L, lg, err);
        for (int t = 0; rc == 0 && t + 1 < L; t++) {
            const float *z = lg + (size_t)t * V;
            double mx = z[0], se = 0;
            for (size_t j = 1; j < V; j++) mx = z[j] > mx ? z[j] : mx;
            for (size_t j = 0; j < V; j++) se += exp((double)z[j] - mx);
            sum += mx + log(se) - z[win[(size_t)s * L + t + 1]];
            n++;
        }
    }
    *out = n ? sum / (double)n : 0;
    return rc;
}

/* Layers from..n_layers-1 over x in place. */
static int run_from(a3_model *m, int from, float *x, int nw, int L, const a3_layer_hooks *hk, a3_err *err)
{
    int rc = 0;
    for (int l = from; rc == 0 && l < a3_model_config(m)->n_layers; l++)
        rc = a3_model_run_layer(m, l, x, nw, L, 0, hk, err);
    return rc;
}

/* Width of (l, k) at probe level lv: level 0 the allowed width whose
 * exact relative loss (A3 method) is closest to the target (ties: the
 * wider), level 1 width 0. QK widths are even. */
int a3_probe_width(const a3_cache *c, const a3_pred *p, int l, a3_comp k, int lv)
{
    if (lv > 0) return 0;
    int full = k == A3_COMP_MLP ? c->d_ff : c->head_dim, step = k == A3_COMP_QK ? 2 : 1, best = full;
    int groups = k == A3_COMP_MLP ? 1 : c->n_kv_heads, m = 0;
    double tot = 0, bd = INFINITY;
    for (int g = 0; g < groups; g++) tot += a3_pred_loss(p, k, m, l, g, 0);
    if (!(tot > 0)) return full;
    for (int w = full; w >= 0; w -= step) {
        double lost = 0;
        for (int g = 0; g < groups; g++) lost += a3_pred_loss(p, k, m, l, g, w);
        double dist = fabs(lost / tot - p->probe_target);
        if (dist < bd) bd = dist, best = w;
    }
    return best;
}

/* Set up the truncation of kind k in layer l at width w; *rel = the exact
 * relative loss of that cut (A3 method curves). */
static int setup(const a3_cache *c, const a3_pred *p, int l, a3_comp k, int w, const a3_layer_f32 *lw, trunc_ctx *t,
                 double *rel)
{
    int hd = c->head_dim, half = hd / 2, nkv = c->n_kv_heads, ff = c->d_ff;
    double lost = 0, total = 0;
    t->active[l] |= (uint8_t)(1u << k);
    if (k == A3_COMP_QK) {
        int keep = w / 2;
        uint8_t *drop = t->dropq + (size_t)l * nkv * hd;
        memset(drop, 0, (size_t)nkv * hd);
        for (int g = 0; g < nkv; g++) {
            const int32_t *order = c->layers[l].qk_order + (size_t)g * half;
            for (int j = keep; j < half; j++) drop[g * hd + order[j]] = drop[g * hd + order[j] + half] = 1;
            lost += a3_pred_loss(p, k, A3_QK_METHOD_A3, l, g, w);
            total += a3_pred_loss(p, k, A3_QK_METHOD_A3, l, g, 0);
        }
    } else if (k == A3_COMP_OV) {
        double *P = malloc((size_t)hd * hd * sizeof *P);
        if (!P) return -1;
        for (int g = 0; g < nkv; g++) {
            if (pred_ov_projector(c, l, g, lw, w, P)) {
                free(P);
                return -1;
            }
            for (size_t e = 0; e < (size_t)hd * hd; e++) t->P[((size_t)l * nkv + g) * hd * hd + e] = (float)P[e];
            lost += a3_pred_loss(p, k, A3_OV_METHOD_A3, l, g, w);
            total += a3_pred_loss(p, k, A3_OV_METHOD_A3, l, g, 0);
        }
        free(P);
    } else {
        uint8_t *drop = t->dropu + (size_t)l * ff;
        memset(drop, 0, (size_t)ff);
        for (int j = w; j < ff; j++) drop[c->layers[l].mlp_order[j]] = 1;
        lost = a3_pred_loss(p, k, A3_MLP_METHOD_A3, l, 0, w);
        total = a3_pred_loss(p, k, A3_MLP_METHOD_A3, l, 0, 0);
    }
    *rel = total > 0 ? lost / total : 0;
    return 0;
}

/* The joint run: every component of every layer at its level-0 cut at
 * once; its NLL change against the sum of the per-component predictions
 * there gives the interaction term (include/a3/pred.h). One forward pass
 * plus one layer load per layer. x, y: scratch hidden states. */
static int joint_run(a3_model *m, const a3_cache *c, a3_pred *p, trunc_ctx *t, const int32_t *win, int nw, int L,
                     float *x, float *y, float *xn, float *lg, a3_err *err)
{
    int nl = c->n_layers, rc = 0;
    double sum = 0, root = 0, nll = 0;
    memset(t->active, 0, (size_t)nl);
    for (int l = 0; !rc && l < nl; l++) {
        a3_layer_in li;
        rc = a3_layer_in_load(m, l, &li, err);
        for (int k = 0; !rc && k < A3_COMP_COUNT; k++) {
            double rel;
            if (setup(c, p, l, (a3_comp)k, a3_probe_width(c, p, l, (a3_comp)k, 0), &li.w, t, &rel))
                rc = a3_err_set(err, A3_EFORMAT, "probe: layer %d: OV projector failed (statistics not definite)", l);
            double f = a3_pred_nll_single(p, l, (a3_comp)k, rel);
            sum += f, root += sqrt(f);
        }
        a3_layer_in_free(&li);
    }
    a3_layer_hooks hk = {.ctx = t, .edit_qkv = edit_qkv, .edit_u = edit_u};
    if (!rc) rc = a3_model_embed(m, win, (size_t)nw * L, y, err);
    if (!rc) rc = run_from(m, 0, y, nw, L, &hk, err);
    if (!rc) rc = nll_of(m, y, win, nw, L, xn, lg, &nll, err);
    (void)x;
    if (!rc) p->joint_sum = sum, p->joint_root = root, p->joint_dnll = nll - p->base_nll, p->joint_known = 1;
    return rc;
}

static void windows_hash(const int32_t *win, size_t n, char hex[65])
{
    a3_sha256_ctx s;
    a3_sha256_init(&s);
    for (size_t i = 0; i < n; i++) {
        uint8_t b[4];
        uint32_t u = (uint32_t)win[i];
        for (int j = 0; j < 4; j++) b[j] = (uint8_t)(u >> (8 * j));
        a3_sha256_update(&s, b, 4);
    }
    uint8_t d[A3_SHA256_BYTES];
    a3_sha256_final(&s, d);
    a3_sha256_hex(d, hex);
}

int a3_probe(a3_model *m, const a3_cache *c, a3_pred *p, const int32_t *win, int nw, int L, const a3_probe_opts *o,
             a3_progress_fn progress, void *ctx, a3_err *err)
{
    const a3_config *k = a3_model_config(m);
    int nl = c->n_layers, hd = c->head_dim, nkv = c->n_kv_heads;
    if (k->n_layers != nl || k->d != c->d || k->d_ff != c->d_ff || k->head_dim != hd || k->n_kv_heads != nkv)
        return a3_err_set(err, A3_EMISMATCH, "probe: the model's dims differ from the cache's");
    if (nw < 1 || L < 2) return a3_err_set(err, A3_EINVAL, "probe: needs at least one window of 2+ tokens");
    char hex[65];
    windows_hash(win, (size_t)nw * L, hex);
    double target = o && o->target > 0 && o->target < 1 ? o->target : 0.3;
    if (p->layers_done > 0 && (strcmp(hex, p->probe_windows) || p->probe_target != target)) p->layers_done = 0;
    if (p->layers_done == 0) { /* a fresh probe */
        memcpy(p->probe_windows, hex, 65);
        p->probe_target = target, p->probe_samples = nw, p->probe_seqlen = L, p->probe_tokens = (int64_t)nw * L;
    }
    size_t rows = (size_t)nw * L, d = (size_t)k->d;
    float *x = a3_malloc_array(rows, d * 4), *y = a3_malloc_array(rows, d * 4), *xn = a3_malloc_array(rows, d * 4);
    float *lg = a3_malloc_array((size_t)L, (size_t)k->vocab * 4);
    trunc_ctx t = {.c = c, .active = calloc((size_t)nl, 1), .P = a3_malloc_array((size_t)nl * nkv * hd, (size_t)hd * 4),
                   .dropq = a3_malloc_array((size_t)nl * nkv, (size_t)hd), .dropu = a3_malloc_array((size_t)nl, (size_t)c->d_ff),
                   .vbuf = malloc((size_t)hd * 4)};
    int rc = x && y && xn && lg && t.active && t.P && t.dropq && t.dropu && t.vbuf
                 ? A3_OK
                 : a3_err_set(err, A3_ENOMEM, "probe: out of memory (%zu tokens)", rows);
    int64_t total = 1 + A3_COMP_COUNT * A3_PROBE_LEVELS * (int64_t)(nl - p->layers_done), done = 0;
    a3_layer_hooks hk = {.ctx = &t, .edit_qkv = edit_qkv, .edit_u = edit_u};
    /* the clean NLL (first run) and the clean input of the first layer to probe */
    if (!rc) rc = a3_model_embed(m, win, rows, x, err);
    if (!rc && p->layers_done == 0) {
        memcpy(y, x, rows * d * 4);
        rc = run_from(m, 0, y, nw, L, NULL, err);
        if (!rc) rc = nll_of(m, y, win, nw, L, xn, lg, &p->base_nll, err);
    }
    if (!rc && progress && progress(ctx, "probe", ++done, total)) rc = A3_ECANCELED;
    for (int l = 0; !rc && l < p->layers_done; l++) rc = a3_model_run_layer(m, l, x, nw, L, 0, NULL, err);
    for (int l = p->layers_done; !rc && l < nl; l++) {
        a3_layer_in li;
        rc = a3_layer_in_load(m, l, &li, err);
        for (int i = 0; !rc && i < A3_COMP_COUNT * A3_PROBE_LEVELS; i++) {
            a3_comp kind = (a3_comp)(i / A3_PROBE_LEVELS);
            int lv = i % A3_PROBE_LEVELS;
            double rel, nll = 0;
            memset(t.active, 0, (size_t)nl);
            if (setup(c, p, l, kind, a3_probe_width(c, p, l, kind, lv), &li.w, &t, &rel)) {
                rc = a3_err_set(err, A3_EFORMAT, "probe: layer %d: OV projector failed (statistics not definite)", l);
                break;
            }
            memcpy(y, x, rows * d * 4);
            rc = run_from(m, l, y, nw, L, &hk, err);
            if (!rc) rc = nll_of(m, y, win, nw, L, xn, lg, &nll, err);
            p->probe_rel[(size_t)l * A3_COMP_COUNT * A3_PROBE_LEVELS + i] = rel;
            p->probe_dnll[(size_t)l * A3_COMP_COUNT * A3_PROBE_LEVELS + i] = nll - p->base_nll;
            if (!rc && progress && progress(ctx, "probe", ++done, total)) rc = A3_ECANCELED;
        }
        a3_layer_in_free(&li);
        if (!rc) rc = a3_model_run_layer(m, l, x, nw, L, 0, NULL, err);
        if (!rc) {
            p->layers_done = l + 1;
            if (o && o->save_path) rc = a3_pred_save(p, o->save_path, err);
        }
    }
    if (rc == A3_ECANCELED && !err->code) a3_err_set(err, A3_ECANCELED, "probe: interrupted after %d layers", p->layers_done);
    if (!rc && p->layers_done == nl && !p->joint_known) rc = joint_run(m, c, p, &t, win, nw, L, x, y, xn, lg, err);
    if (!rc && p->joint_known && o && o->save_path) rc = a3_pred_save(p, o->save_path, err);
    free(x), free(y), free(xn), free(lg), free(t.active), free(t.P), free(t.dropq), free(t.dropu), free(t.vbuf);
    return rc;
}

/* Per token of one layer run: projections (multiply-add = 2 flops) and
 * causal attention over seqlen / 2 keys on average (scores and values). */
static double layer_flops(const a3_config *k, int seqlen)
{
    double d = k->d, q = (double)k->n_heads * k->head_dim, kv = (double)k->n_kv_heads * k->head_dim;
    return 2 * d * (q + 2 * kv) + 2 * q * d + 6 * d * k->d_ff + 2 * q * seqlen;
}

double a3_probe_cost_flops(const a3_config *k, int64_t probe_tokens, int seqlen)
{
    double nl = k->n_layers;
    return (double)probe_tokens *
           (nl * (3 * nl + 5) * layer_flops(k, seqlen) + (6 * nl + 2) * 2.0 * k->d * (double)k->vocab);
}

double a3_calib_cost_flops(const a3_config *k, int64_t tokens, int seqlen, int mlp_full)
{
    double hd2 = (double)k->head_dim * k->head_dim, ff = k->d_ff;
    double stats = (2.0 * k->n_heads + 2.0 * k->n_kv_heads) * hd2 + (mlp_full ? ff * ff : 2 * ff);
    return (double)tokens * k->n_layers * (layer_flops(k, seqlen) + stats);
}

int a3_probe_by_default(double probe_flops, double calib_flops)
{
    return probe_flops <= A3_PROBE_AUTO_FLOPS || probe_flops <= A3_PROBE_AUTO_SHARE * calib_flops;
}
