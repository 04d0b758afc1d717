/* bench_solve MODEL_DIR [-w NWIN] [-s SEQLEN] [-r REPEATS] [-p LAYERS]...:
 * time of the A3 solves per layer, for the solve-time projections of
 * docs/PERFORMANCE.md (make bench-scale).
 *
 * Calibrates the model on NWIN synthetic windows of SEQLEN tokens (in
 * memory, for a cache to solve from), then for every layer of the model
 * converts its weights to float32 and times, separately and best of
 * REPEATS, what `a3 apply` does per layer at half width with the a3
 * methods:
 *   qk   a3_qk_select for every KV group, then the gather of the kept
 *        q/k rows (as apply does);
 *   ov   a3_ov_solve for every KV group, then the copy of the new o_proj
 *        columns into the layer's (d, o_in) matrix;
 *   mlp  a3_mlp_select, then the gather of gate/up rows and down columns;
 * and, for reference, the MLP gather with down_proj walked by rows, the
 * loss curves (a3_calib_curves: the spectra that
 * calibration computes once per layer) and the float32 conversion of the
 * layer's weights from the memory-mapped file (`load`).
 * With -k ov only the OV solves run (to profile them, e.g. under perf).
 * Prints the per-layer times (mean over the model's layers) and, for each
 * -p N, the projection to a model of N such layers. The last lines are
 * machine-readable: "RESULT key=value ..." and "PROJECT key=value ...". */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/blas.h"
#include "a3/cache.h"
#include "a3/calib.h"
#include "a3/model.h"
#include "a3/reduce.h"

#define MAX_PROJ 8

enum { T_LOAD, T_CURVES, T_QK, T_QK_GATHER, T_OV, T_OV_COPY, T_MLP, T_MLP_GATHER, T_MLP_GATHER_ROWS, T_COUNT };
static const char *T_NAME[T_COUNT] = {"load", "curves", "qk", "qk_gather", "ov", "ov_copy", "mlp", "mlp_gather",
                                      "mlp_gather_rows"};

/* One layer's float32 weights (HF order) and the output buffers of a
 * half-width reduction. */
typedef struct {
    float *buf[7];
    a3_layer_f32 w;
    float *out_q, *out_k, *out_v, *out_o, *nv, *no, *out_g, *out_u, *out_d;
    int32_t *idx, *keep;
} layer_bufs;

static void bufs_free(layer_bufs *b)
{
    for (int i = 0; i < 7; i++) free(b->buf[i]);
    free(b->out_q), free(b->out_k), free(b->out_v), free(b->out_o), free(b->nv), free(b->no);
    free(b->out_g), free(b->out_u), free(b->out_d), free(b->idx), free(b->keep);
    memset(b, 0, sizeof *b);
}

static int load_tensor(const a3_model *m, int l, const char *suffix, int64_t r, int64_t c, float **slot, a3_err *err)
{
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);
    int64_t shape[2] = {r, c};
    free(*slot);
    *slot = a3_malloc_array((size_t)r, (size_t)c * sizeof(float));
    if (!*slot) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", name);
    return a3_st_load_f32(a3_model_tensors(m), name, 2, shape, *slot, err);
}

static int layer_load(const a3_model *m, int l, layer_bufs *b, a3_err *err)
{
    const a3_config *k = a3_model_config(m);
    int64_t d = k->d, q = (int64_t)k->n_heads * k->head_dim, kv = (int64_t)k->n_kv_heads * k->head_dim, ff = k->d_ff;
    if (k->qkv_bias) return a3_err_set(err, A3_EUNSUPPORTED, "bench_solve: models with q/k/v biases are not handled");
    int rc;
    if ((rc = load_tensor(m, l, "self_attn.q_proj.weight", q, d, &b->buf[0], err)) ||
        (rc = load_tensor(m, l, "self_attn.k_proj.weight", kv, d, &b->buf[1], err)) ||
        (rc = load_tensor(m, l, "self_attn.v_proj.weight", kv, d, &b->buf[2], err)) ||
        (rc = load_tensor(m, l, "self_attn.o_proj.weight", d, q, &b->buf[3], err)) ||
        (rc = load_tensor(m, l, "mlp.gate_proj.weight", ff, d, &b->buf[4], err)) ||
        (rc = load_tensor(m, l, "mlp.up_proj.weight", ff, d, &b->buf[5], err)) ||
        (rc = load_tensor(m, l, "mlp.down_proj.weight", d, ff, &b->buf[6], err)))
        return rc;
    b->w = (a3_layer_f32){.d = k->d, .n_heads = k->n_heads, .n_kv_heads = k->n_kv_heads, .head_dim = k->head_dim,
                          .d_ff = k->d_ff, .wq = b->buf[0], .wk = b->buf[1], .wv = b->buf[2], .wo = b->buf[3],
                          .wg = b->buf[4], .wu = b->buf[5], .wd = b->buf[6]};
    return A3_OK;
}

/* Output buffers at half width: QK rank hd/2 (even), OV rank hd/2, MLP ff/2. */
static int bufs_alloc_out(const a3_config *k, layer_bufs *b)
{
    size_t d = (size_t)k->d, hd = (size_t)k->head_dim, nh = (size_t)k->n_heads, nkv = (size_t)k->n_kv_heads;
    size_t per = nh / nkv, rq = hd / 2, rv = hd / 2, w = (size_t)k->d_ff / 2;
    b->out_q = a3_malloc_array(nh * rq, d * 4), b->out_k = a3_malloc_array(nkv * rq, d * 4);
    b->out_v = a3_malloc_array(nkv * rv, d * 4), b->out_o = a3_malloc_array(d, nh * rv * 4);
    b->nv = a3_malloc_array(hd, d * 4), b->no = a3_malloc_array(per * d, hd * 4);
    b->out_g = a3_malloc_array(w + 1, d * 4), b->out_u = a3_malloc_array(w + 1, d * 4);
    b->out_d = a3_malloc_array(d, (w + 1) * 4);
    b->idx = a3_malloc_array(nkv * (hd / 2) + 1, sizeof(int32_t));
    b->keep = a3_malloc_array((size_t)k->d_ff + 1, sizeof(int32_t));
    return b->out_q && b->out_k && b->out_v && b->out_o && b->nv && b->no && b->out_g && b->out_u && b->out_d &&
                   b->idx && b->keep
               ? 0
               : -1;
}

/* QK of every group at rank hd/2, then the kept rows gathered as apply's
 * reduced layout does (pair j -> dims (j, j + m)). */
static int run_qk(const a3_cache *c, int l, layer_bufs *b, int gather, a3_err *err)
{
    const a3_layer_f32 *w = &b->w;
    int hd = w->head_dim, half = hd / 2, rank = hd / 2 / 2 * 2, m = rank / 2, per = w->n_heads / w->n_kv_heads;
    size_t d = (size_t)w->d;
    for (int g = 0; g < w->n_kv_heads; g++) {
        double loss;
        int32_t *idx = b->idx + (size_t)g * half;
        if (!gather) {
            int rc = a3_qk_select(c, l, g, rank, A3_QK_METHOD_A3, w, idx, &loss, err);
            if (rc) return rc;
            continue;
        }
        for (int s = 0; s <= per; s++) {
            int head = s < per ? g * per + s : g;
            float *out = s < per ? b->out_q + ((size_t)(g * per + s) * rank) * d : b->out_k + (size_t)g * rank * d;
            const float *W = s < per ? w->wq : w->wk;
            for (int j = 0; j < m; j++)
                for (int hf = 0; hf < 2; hf++)
                    memcpy(out + (size_t)(j + hf * m) * d, W + ((size_t)head * hd + idx[j] + hf * half) * d, d * 4);
        }
    }
    return A3_OK;
}

/* OV of every group at rank hd/2; with copy, also the v rows and the o_proj
 * columns written into the layer's matrices as apply does. */
static int run_ov(const a3_cache *c, int l, layer_bufs *b, int copy, a3_err *err, double *t_copy)
{
    const a3_layer_f32 *w = &b->w;
    int hd = w->head_dim, rv = hd / 2, per = w->n_heads / w->n_kv_heads, d = w->d;
    size_t o_cols = (size_t)w->n_heads * rv;
    *t_copy = 0;
    for (int g = 0; g < w->n_kv_heads; g++) {
        double loss, damp;
        int rc = a3_ov_solve(c, l, g, rv, A3_OV_METHOD_A3, w, b->nv, NULL, b->no, &loss, &damp, err);
        if (rc) return rc;
        if (!copy) continue;
        double t0 = a3_now();
        memcpy(b->out_v + (size_t)g * rv * d, b->nv, (size_t)rv * d * 4);
        for (int j = 0; j < per; j++) {
            size_t at = (size_t)(g * per + j) * rv;
            for (int e = 0; e < d; e++)
                memcpy(b->out_o + (size_t)e * o_cols + at, b->no + ((size_t)j * d + e) * rv, (size_t)rv * 4);
        }
        *t_copy += a3_now() - t0;
    }
    return A3_OK;
}

/* MLP at width ff/2: selection (gather 0), then gate/up rows and down
 * columns copied in apply's loop order (gather 1: down walked row by row),
 * or column by column with a stride of d_ff (gather 2: the same result,
 * the order apply used before; kept for comparison). */
static int run_mlp(const a3_cache *c, int l, layer_bufs *b, int gather, a3_err *err)
{
    const a3_layer_f32 *w = &b->w;
    int width = w->d_ff / 2, d = w->d, ff = w->d_ff;
    if (!gather) return a3_mlp_select(c, l, width, A3_MLP_METHOD_A3, w, b->keep, err);
    if (gather == 1) {
        for (int j = 0; j < width; j++) {
            memcpy(b->out_g + (size_t)j * d, w->wg + (size_t)b->keep[j] * d, (size_t)d * 4);
            memcpy(b->out_u + (size_t)j * d, w->wu + (size_t)b->keep[j] * d, (size_t)d * 4);
        }
        for (int e = 0; e < d; e++) {
            const float *src = w->wd + (size_t)e * ff;
            float *dst = b->out_d + (size_t)e * width;
            for (int j = 0; j < width; j++) dst[j] = src[b->keep[j]];
        }
        return A3_OK;
    }
    for (int j = 0; j < width; j++) {
        int n = b->keep[j];
        memcpy(b->out_g + (size_t)j * d, w->wg + (size_t)n * d, (size_t)d * 4);
        memcpy(b->out_u + (size_t)j * d, w->wu + (size_t)n * d, (size_t)d * 4);
        for (int e = 0; e < d; e++) b->out_d[(size_t)e * width + j] = w->wd[(size_t)e * ff + n];
    }
    return A3_OK;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_solve MODEL_DIR [-w NWIN] [-s SEQLEN] [-r REPEATS] [-p N_LAYERS]... [-k ov]\n");
}

int main(int argc, char **argv)
{
    a3_blas_startup(argc, argv);
    if (argc < 2 || argv[1][0] == '-') {
        usage();
        return 2;
    }
    int nw = 4, L = 128, reps = 3, proj[MAX_PROJ], np = 0, ov_only = 0;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc || strlen(argv[i]) != 2 || argv[i][0] != '-') {
            usage();
            return 2;
        }
        if (argv[i][1] == 'k') {
            if (strcmp(argv[++i], "ov") != 0) {
                usage();
                return 2;
            }
            ov_only = 1;
            continue;
        }
        int v = atoi(argv[++i]);
        if (v < 1) {
            usage();
            return 2;
        }
        switch (argv[i - 1][1]) {
        case 'w': nw = v; break;
        case 's': L = v; break;
        case 'r': reps = v; break;
        case 'p':
            if (np < MAX_PROJ) proj[np++] = v;
            break;
        default: usage(); return 2;
        }
    }
    a3_err err = {0};
    a3_model *m = NULL;
    a3_cache *c = NULL;
    layer_bufs b;
    memset(&b, 0, sizeof b);
    int32_t *tok = NULL;
    if (a3_model_open(argv[1], &m, &err)) goto fail;
    const a3_config *k = a3_model_config(m);
    if (L > k->max_seq) L = k->max_seq;
    tok = a3_malloc_array((size_t)nw * L, sizeof *tok);
    c = a3_cache_new(k->d, k->n_layers, k->n_heads, k->n_kv_heads, k->head_dim, k->d_ff, 0);
    if (!tok || !c || bufs_alloc_out(k, &b)) {
        a3_err_set(&err, A3_ENOMEM, "bench_solve: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < (size_t)nw * L; i++) tok[i] = (int32_t)((i * 7919 + 3) % (size_t)k->vocab);
    a3_calib_opts o;
    memset(&o, 0, sizeof o);
    double t0 = a3_now();
    if (a3_calibrate(m, tok, nw, L, &o, c, NULL, NULL, &err)) goto fail;
    double t_calib = a3_now() - t0;

    double tot[T_COUNT] = {0};
    for (int l = 0; l < k->n_layers; l++) {
        double best[T_COUNT];
        for (int t = 0; t < T_COUNT; t++) best[t] = 1e30;
        for (int r = 0; r < reps; r++) {
            double tt[T_COUNT] = {0}, t_ovc;
            t0 = a3_now();
            if (layer_load(m, l, &b, &err)) goto fail;
            tt[T_LOAD] = a3_now() - t0;
            if (ov_only) { /* for profiling: the OV solves alone */
                t0 = a3_now();
                if (run_ov(c, l, &b, 0, &err, &t_ovc)) goto fail;
                tt[T_OV] = a3_now() - t0;
                for (int t = 0; t < T_COUNT; t++) best[t] = tt[t] < best[t] ? tt[t] : best[t];
                continue;
            }
            t0 = a3_now();
            if (a3_calib_curves(c, l, b.w.wo, b.w.wd, &err)) goto fail;
            tt[T_CURVES] = a3_now() - t0;
            t0 = a3_now();
            if (run_qk(c, l, &b, 0, &err)) goto fail;
            tt[T_QK] = a3_now() - t0;
            t0 = a3_now();
            run_qk(c, l, &b, 1, &err);
            tt[T_QK_GATHER] = a3_now() - t0;
            t0 = a3_now();
            if (run_ov(c, l, &b, 0, &err, &t_ovc)) goto fail;
            tt[T_OV] = a3_now() - t0;
            if (run_ov(c, l, &b, 1, &err, &t_ovc)) goto fail; /* the copy alone is timed */
            tt[T_OV_COPY] = t_ovc;
            t0 = a3_now();
            if (run_mlp(c, l, &b, 0, &err)) goto fail;
            tt[T_MLP] = a3_now() - t0;
            t0 = a3_now();
            run_mlp(c, l, &b, 1, &err);
            tt[T_MLP_GATHER] = a3_now() - t0;
            t0 = a3_now();
            run_mlp(c, l, &b, 2, &err);
            tt[T_MLP_GATHER_ROWS] = a3_now() - t0;
            for (int t = 0; t < T_COUNT; t++) best[t] = tt[t] < best[t] ? tt[t] : best[t];
        }
        for (int t = 0; t < T_COUNT; t++) tot[t] += best[t] / k->n_layers;
    }
    double qk = tot[T_QK] + tot[T_QK_GATHER], ov = tot[T_OV] + tot[T_OV_COPY], mlp = tot[T_MLP] + tot[T_MLP_GATHER];
    double solve = qk + ov + mlp;
    const char *kernel = a3_blas_kernel_name();
    int threads = a3_blas_get_threads();
    printf("solve    %-28.28s d=%d heads=%d kv=%d hd=%d ff=%d, %d layer(s), calibrated on %d x %d tokens in %.2f s\n",
           argv[1], k->d, k->n_heads, k->n_kv_heads, k->head_dim, k->d_ff, k->n_layers, nw, L, t_calib);
    printf("solve    per layer at half width (best of %d): QK %.4f s (select %.4f + gather %.4f), "
           "OV %.4f s (solve %.4f + copy %.4f), MLP %.4f s (select %.4f + gather %.4f); total %.3f s\n",
           reps, qk, tot[T_QK], tot[T_QK_GATHER], ov, tot[T_OV], tot[T_OV_COPY], mlp, tot[T_MLP], tot[T_MLP_GATHER],
           solve);
    printf("solve    per layer, not in the solve: loss curves (calibration) %.3f s, weights to float32 %.3f s; "
           "MLP gather walking down_proj by columns (the old order) %.4f s (kernel %s, %d threads)\n",
           tot[T_CURVES], tot[T_LOAD], tot[T_MLP_GATHER_ROWS], kernel, threads);
    for (int i = 0; i < np; i++)
        printf("solve    projected for %d layers: solves %.1f s; + curves %.1f s; + float32 conversion %.1f s\n", proj[i],
               proj[i] * solve, proj[i] * (solve + tot[T_CURVES]), proj[i] * (solve + tot[T_CURVES] + tot[T_LOAD]));
    printf("RESULT d=%d heads=%d kv=%d hd=%d ff=%d layers=%d windows=%d seqlen=%d calib_s=%.4f", k->d, k->n_heads,
           k->n_kv_heads, k->head_dim, k->d_ff, k->n_layers, nw, L, t_calib);
    for (int t = 0; t < T_COUNT; t++) printf(" %s_s=%.6f", T_NAME[t], tot[t]);
    printf(" solve_s=%.6f kernel=%s threads=%d\n", solve, kernel, threads);
    for (int i = 0; i < np; i++)
        printf("PROJECT layers=%d solve_s=%.3f curves_s=%.3f load_s=%.3f\n", proj[i], proj[i] * solve,
               proj[i] * tot[T_CURVES], proj[i] * tot[T_LOAD]);
    bufs_free(&b);
    free(tok);
    a3_cache_free(c);
    a3_model_free(m);
    return 0;
fail:
    fprintf(stderr, "bench_solve: %s\n", err.msg[0] ? err.msg : "failed");
    bufs_free(&b);
    free(tok);
    a3_cache_free(c);
    a3_model_free(m);
    return 1;
}
