/* qk: choose the kept RoPE frequency pairs of a KV group (A3-METHOD 3b).
 *   a3            the cache's order (diagonal scores Gq[a,a] Gk[a,a] + ...)
 *   weight-norm   the same score from weight column norms, no activations
 *   greedy-exact  backward elimination on the exact loss trace(Gq Gk)|S'
 *                 (beyond the paper; nested, so one order for every rank) */
#include <stdlib.h>
#include <string.h>

#include "a3/reduce.h"

static int cmp_int(const void *a, const void *b) { return *(const int32_t *)a - *(const int32_t *)b; }

/* Gq summed over the group's query heads, (hd, hd), divided by N. */
static void group_gq(const a3_cache *c, int layer, int g, double *gq)
{
    int hd = c->head_dim, per = c->n_heads / c->n_kv_heads;
    const double *src = c->layers[layer].gq;
    memset(gq, 0, (size_t)hd * hd * sizeof *gq);
    for (int i = g * per; i < (g + 1) * per; i++)
        for (size_t e = 0; e < (size_t)hd * hd; e++) gq[e] += src[(size_t)i * hd * hd + e] / (double)c->n_tokens;
}

/* Exact loss with `drop` (dims) dropped: sum_{a,b in drop} Gq[a,b] Gk[a,b]. */
static double loss_of(const double *gq, const double *gk, int hd, const int *drop, int nd)
{
    double s = 0;
    for (int x = 0; x < nd; x++)
        for (int y = 0; y < nd; y++) s += gq[drop[x] * hd + drop[y]] * gk[drop[x] * hd + drop[y]];
    return s;
}

static int weight_norm_order(const a3_layer_f32 *w, int g, int32_t *order)
{
    int hd = w->head_dim, half = hd / 2, per = w->n_heads / w->n_kv_heads;
    double *score = calloc((size_t)half, sizeof *score);
    int32_t *used = calloc((size_t)half, sizeof *used);
    if (!score || !used) {
        free(score), free(used);
        return -1;
    }
    for (int p = 0; p < half; p++)
        for (int s = 0; s < 2; s++) {
            int a = p + s * half;
            double nq = 0, nk = 0;
            for (int i = g * per; i < (g + 1) * per; i++)
                for (int e = 0; e < w->d; e++) nq += (double)w->wq[((size_t)i * hd + a) * w->d + e] * w->wq[((size_t)i * hd + a) * w->d + e];
            for (int e = 0; e < w->d; e++) nk += (double)w->wk[((size_t)g * hd + a) * w->d + e] * w->wk[((size_t)g * hd + a) * w->d + e];
            score[p] += nq * nk;
        }
    for (int k = 0; k < half; k++) { /* selection sort: half <= 512 */
        int best = -1;
        for (int p = 0; p < half; p++)
            if (!used[p] && (best < 0 || score[p] > score[best])) best = p;
        used[best] = 1;
        order[k] = best;
    }
    free(score);
    free(used);
    return 0;
}

/* Backward elimination: drop pairs one at a time, each time the one whose
 * removal raises the exact loss least (ties: the lower pair index). The
 * drops are nested, so order[] lists the pairs kept longest first and the
 * first k of it are the greedy choice for every k. O(half^2 hd). */
static void greedy_order(const double *gq, const double *gk, int hd, int32_t *order)
{
    int half = hd / 2, alive[512], dropped[1024], nd = 0;
    for (int p = 0; p < half; p++) alive[p] = 1;
    for (int step = half - 1; step >= 0; step--) {
        int best = -1;
        double bl = 0;
        for (int p = 0; p < half; p++) {
            if (!alive[p]) continue;
            int a = p, b = p + half;
            double l = gq[a * hd + a] * gk[a * hd + a] + gq[b * hd + b] * gk[b * hd + b] + 2 * gq[a * hd + b] * gk[a * hd + b];
            for (int y = 0; y < nd; y++)
                l += 2 * (gq[a * hd + dropped[y]] * gk[a * hd + dropped[y]] + gq[b * hd + dropped[y]] * gk[b * hd + dropped[y]]);
            if (best < 0 || l < bl) best = p, bl = l;
        }
        alive[best] = 0;
        dropped[nd++] = best, dropped[nd++] = best + half;
        order[step] = best;
    }
}

/* Gk of group g divided by N. */
static void group_gk(const a3_cache *c, int layer, int g, double *gk)
{
    int hd = c->head_dim;
    for (size_t e = 0; e < (size_t)hd * hd; e++) gk[e] = c->layers[layer].gk[(size_t)g * hd * hd + e] / (double)c->n_tokens;
}

int a3_qk_order(const a3_cache *c, int layer, int g, a3_qk_method m, const a3_layer_f32 *w, int32_t *order,
                a3_err *err)
{
    int hd = c->head_dim, half = hd / 2;
    if (m == A3_QK_METHOD_A3) {
        memcpy(order, c->layers[layer].qk_order + (size_t)g * half, (size_t)half * sizeof *order);
        return A3_OK;
    }
    if (m == A3_QK_METHOD_WEIGHT_NORM)
        return weight_norm_order(w, g, order) ? a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", layer) : A3_OK;
    double *gq = malloc((size_t)hd * hd * sizeof *gq), *gk = malloc((size_t)hd * hd * sizeof *gk);
    if (!gq || !gk) {
        free(gq), free(gk);
        return a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", layer);
    }
    group_gq(c, layer, g, gq);
    group_gk(c, layer, g, gk);
    greedy_order(gq, gk, hd, order);
    free(gq), free(gk);
    return A3_OK;
}

int a3_qk_select(const a3_cache *c, int layer, int g, int rank, a3_qk_method m, const a3_layer_f32 *w,
                 int32_t *idx, double *loss, a3_err *err)
{
    int hd = c->head_dim, half = hd / 2, keep = rank / 2;
    if (rank < 0 || rank > hd || rank % 2)
        return a3_err_set(err, A3_EINVAL, "layer %d: qk[%d]: rank %d is not an even number in [0, %d]", layer, g, rank, hd);
    double *gq = malloc((size_t)hd * hd * sizeof *gq), *gk = malloc((size_t)hd * hd * sizeof *gk);
    int32_t *order = malloc((size_t)half * sizeof *order);
    if (!gq || !gk || !order) {
        free(gq), free(gk), free(order);
        return a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", layer);
    }
    int rc = a3_qk_order(c, layer, g, m, w, order, err);
    if (rc) {
        free(gq), free(gk), free(order);
        return rc;
    }
    group_gq(c, layer, g, gq);
    group_gk(c, layer, g, gk);
    memcpy(idx, order, (size_t)keep * sizeof *idx);
    qsort(idx, (size_t)keep, sizeof *idx, cmp_int);
    int drop[1024], nd = 0, k = 0;
    for (int p = 0; p < half; p++) {
        if (k < keep && idx[k] == p) k++;
        else drop[nd++] = p, drop[nd++] = p + half;
    }
    *loss = loss_of(gq, gk, hd, drop, nd);
    free(gq), free(gk), free(order);
    return A3_OK;
}
