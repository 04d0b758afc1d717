/* calibrate: windows, memory estimate, and the layer-by-layer pass. */
#include <stdlib.h>
#include <string.h>

#include "a3/blas.h"
#include "a3/calib.h"
#include "a3/safetensors.h"
#include "checkpoint.h"
#include "stats.h"

int a3_calib_windows(const int32_t *ids, size_t n, int n_samples, int seqlen, uint64_t seed,
                     int allow_short, int32_t **windows, int *n_windows, int *seqlen_out, a3_err *err)
{
    *windows = NULL;
    if (n_samples <= 0 || seqlen < 2 || n < 2)
        return a3_err_set(err, A3_EINVAL, "calibration: need at least 2 tokens and positive samples/seqlen");
    size_t want = (size_t)n_samples * (size_t)seqlen;
    int nw = n_samples, L = seqlen;
    if (n < want) {
        if (!allow_short)
            return a3_err_set(err, A3_EINVAL,
                              "calibration: the text has %zu tokens, fewer than --samples %d x --seqlen %d = %zu (use --allow-short to use what there is)",
                              n, n_samples, seqlen, want);
        nw = n >= (size_t)seqlen ? (int)(n / (size_t)seqlen) : 1;
        L = n >= (size_t)seqlen ? seqlen : (int)n;
    }
    int32_t *w = a3_malloc_array((size_t)nw * L, sizeof *w);
    if (!w) return a3_err_set(err, A3_ENOMEM, "calibration: out of memory for windows");
    uint64_t st = seed;
    for (int i = 0; i < nw; i++) {
        /* Short text: consecutive windows; else random starts (modulo bias is
         * below 2^-40 for any text that fits in memory). */
        size_t start = n < want ? (size_t)i * L : a3_splitmix64(&st) % (n - (size_t)L + 1);
        memcpy(w + (size_t)i * L, ids + start, (size_t)L * sizeof *w);
    }
    *windows = w;
    *n_windows = nw;
    *seqlen_out = L;
    return A3_OK;
}

size_t a3_calib_memory_estimate(const a3_config *c, int n_windows, int seqlen, int mlp_full)
{
    size_t rows = (size_t)n_windows * seqlen, d = (size_t)c->d, hd = (size_t)c->head_dim;
    size_t qw = (size_t)c->n_heads * hd, kw = (size_t)c->n_kv_heads * hd, ff = (size_t)c->d_ff;
    size_t chunk = rows < 8192 ? rows : 8192; /* a3_model_run_layer's default chunk */
    size_t hidden = rows * d * 4;
    size_t layer = (2 * qw * d + 2 * kw * d + 3 * ff * d + 2 * d) * 4;
    size_t scratch = chunk * (d + 2 * qw + 2 * kw + 2 * ff) * 4 + 64 * (size_t)seqlen * 4 * 2;
    size_t stats = (size_t)c->n_layers * ((2 * c->n_heads + 2 * c->n_kv_heads) * hd * hd + 3 * ff) * 8;
    if (mlp_full) stats += (size_t)c->n_layers * ff * ff * 8;
    size_t widen = 256 * (ff > qw ? ff : qw) * 8;
    return hidden + layer + scratch + stats + widen;
}

typedef struct {
    a3_cache *cache;
    stats_acc acc;
    int *q_off, *kv_off;
    a3_progress_fn progress;
    void *pctx;
    int64_t done, total;
    int threads;
    char stage[32];
} calib_run;

/* The progress callback is also the cancel check. It is asked after each
 * of the chunk's three phases, not only at its end: a chunk of a 7B layer
 * with --mlp-full is about 10 s of work here, and Ctrl-C should not wait
 * for all of it. */
static int ask_cancel(calib_run *r)
{
    return r->progress && r->progress(r->pctx, r->stage, r->done, r->total) ? A3_ECANCELED : 0;
}

static int hook_qkv(void *ctx, int layer, const float *q, const float *k, const float *v, size_t rows)
{
    calib_run *r = ctx;
    int rc = stats_qkv(&r->acc, q, k, v, rows, r->q_off, r->kv_off);
    return rc ? rc : ask_cancel(r);
}

static int hook_z(void *ctx, int layer, const float *z, size_t rows)
{
    calib_run *r = ctx;
    int rc = stats_z(&r->acc, z, rows, r->q_off);
    return rc ? rc : ask_cancel(r);
}

static int hook_u(void *ctx, int layer, const float *u, size_t rows)
{
    calib_run *r = ctx;
    stats_u(&r->acc, u, rows);
    r->done += (int64_t)rows;
    return ask_cancel(r);
}

/* Load one float32 copy of a layer tensor for the curves. */
static float *load_f32(const a3_model *m, int layer, const char *suffix, int64_t r, int64_t cdim, a3_err *err)
{
    char name[128];
    snprintf(name, sizeof name, "model.layers.%d.%s", layer, suffix);
    float *buf = a3_malloc_array((size_t)r * (size_t)cdim, sizeof(float));
    int64_t shape[2] = {r, cdim};
    if (!buf) a3_err_set(err, A3_ENOMEM, "calibration: out of memory for %s", name);
    else if (a3_st_load_f32(a3_model_tensors(m), name, 2, shape, buf, err)) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The curves' products are head-sized (hd x hd GEMMs and eigenproblems),
 * too small for threads to matter, so they run on one OpenBLAS thread:
 * then their bits cannot depend on --threads either. */
static int layer_curves(a3_model *m, a3_cache *c, int l, a3_err *err)
{
    float *wo = load_f32(m, l, "self_attn.o_proj.weight", c->d, (int64_t)c->n_heads * c->head_dim, err);
    float *wd = wo ? load_f32(m, l, "mlp.down_proj.weight", c->d, c->d_ff, err) : NULL;
    int rc = err && err->code ? err->code : A3_ENOMEM;
    if (wd) {
        int blas = a3_blas_single_begin();
        rc = a3_calib_curves(c, l, wo, wd, err);
        a3_blas_single_end(blas);
    }
    free(wo);
    free(wd);
    return rc;
}

static int run_one_layer(a3_model *m, calib_run *r, int l, float *x, int n_windows, int seqlen, a3_err *err)
{
    const a3_cache *c = r->cache;
    size_t wmax = (size_t)c->n_heads * c->head_dim;
    if ((size_t)c->d_ff > wmax) wmax = (size_t)c->d_ff;
    if (stats_init(&r->acc, r->cache, l, wmax, r->threads))
        return a3_err_set(err, A3_ENOMEM, "calibration: out of memory");
    snprintf(r->stage, sizeof r->stage, "layer %d/%d", l + 1, c->n_layers);
    a3_layer_hooks hk = {.ctx = r, .on_qkv = hook_qkv, .on_z = hook_z, .on_u = hook_u};
    int rc = a3_model_run_layer(m, l, x, n_windows, seqlen, 0, &hk, err);
    if (rc == A3_ECANCELED) /* numbered as the progress line numbers it */
        a3_err_set(err, rc, "calibration: cancelled in layer %d/%d", l + 1, c->n_layers);
    stats_finish(&r->acc);
    stats_free(&r->acc);
    return rc ? rc : layer_curves(m, r->cache, l, err);
}

static int check_dims(const a3_model *m, const a3_cache *c, a3_err *err)
{
    const a3_config *k = a3_model_config(m);
    if (k->compressed)
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: calibrate the original model, not an A3-compressed one", a3_model_dir(m));
    if (c->d != k->d || c->n_layers != k->n_layers || c->n_heads != k->n_heads || c->n_kv_heads != k->n_kv_heads ||
        c->head_dim != k->head_dim || c->d_ff != k->d_ff)
        return a3_err_set(err, A3_EMISMATCH, "%s: cache dimensions do not match the model", a3_model_dir(m));
    return A3_OK;
}

/* With opts->resume and a matching checkpoint: restore it. Returns the
 * number of layers already done (0 when starting fresh), or < 0. */
static int maybe_resume(a3_calib_opts *o, a3_cache *c, ckpt_meta *meta, float *x, size_t nx, a3_err *err)
{
    ckpt_meta old;
    if (!o->checkpoint_dir || !o->resume || ckpt_load_meta(o->checkpoint_dir, &old, NULL) != A3_OK) return 0;
    if (old.n_windows != meta->n_windows || old.seqlen != meta->seqlen || old.mlp_full != meta->mlp_full ||
        old.windows_hash != meta->windows_hash || old.layers_done > c->n_layers)
        return a3_err_set(err, A3_EMISMATCH, "%s: checkpoint is from a different calibration run (remove it or drop --resume)",
                          o->checkpoint_dir);
    int rc = ckpt_load_state(o->checkpoint_dir, c, &old, x, nx, err);
    if (rc) return rc;
    memcpy(o->created, old.created, sizeof o->created);
    memcpy(meta->created, old.created, sizeof meta->created);
    /* Another kernel rounds differently: record both, in layer order. */
    size_t ko = strlen(old.kernel), kn = strlen(meta->kernel);
    int same = ko >= kn && !strcmp(old.kernel + ko - kn, meta->kernel) && (ko == kn || old.kernel[ko - kn - 1] == '+');
    if (ko && !same) {
        char both[sizeof meta->kernel * 2 + 1];
        snprintf(both, sizeof both, "%s+%s", old.kernel, meta->kernel);
        ckpt_kernel_copy(meta->kernel, sizeof meta->kernel, both);
    }
    return old.layers_done;
}

int a3_calibrate(a3_model *m, const int32_t *windows, int n_windows, int seqlen, a3_calib_opts *opts,
                 a3_cache *cache, a3_progress_fn progress, void *ctx, a3_err *err)
{
    int rc = check_dims(m, cache, err);
    if (rc) return rc;
    size_t rows = (size_t)n_windows * seqlen, nx = rows * (size_t)cache->d;
    float *x = a3_malloc_array(nx, sizeof(float));
    int *q_off = calloc((size_t)cache->n_heads, sizeof(int)), *kv_off = calloc((size_t)cache->n_kv_heads, sizeof(int));
    if (!x || !q_off || !kv_off) {
        free(x), free(q_off), free(kv_off);
        return a3_err_set(err, A3_ENOMEM, "calibration: out of memory for %zu hidden states", rows);
    }
    for (int h = 0; h < cache->n_heads; h++) q_off[h] = h * cache->head_dim;
    for (int g = 0; g < cache->n_kv_heads; g++) kv_off[g] = g * cache->head_dim;
    cache->n_tokens = (int64_t)rows;
    ckpt_meta meta = {.n_windows = n_windows, .seqlen = seqlen, .mlp_full = opts->mlp_full,
                      .windows_hash = ckpt_hash(windows, rows * sizeof *windows, CKPT_HASH_INIT)};
    memcpy(meta.created, opts->created, sizeof meta.created);
    ckpt_kernel_copy(meta.kernel, sizeof meta.kernel, a3_blas_kernel_name());
    calib_run r = {.cache = cache, .q_off = q_off, .kv_off = kv_off, .progress = progress, .pctx = ctx,
                   .total = (int64_t)rows * cache->n_layers,
                   /* a3_model_set_threads gave OpenBLAS the model's total */
                   .threads = a3_blas_get_threads()};
    rc = a3_model_embed(m, windows, rows, x, err);
    int start = rc ? 0 : maybe_resume(opts, cache, &meta, x, nx, err);
    if (start < 0) rc = start;
    memcpy(opts->kernel, meta.kernel, sizeof opts->kernel);
    r.done = (int64_t)rows * start;
    for (int l = start; rc == A3_OK && l < cache->n_layers; l++) {
        rc = run_one_layer(m, &r, l, x, n_windows, seqlen, err);
        meta.layers_done = l + 1;
        if (rc == A3_OK && opts->checkpoint_dir)
            rc = ckpt_save(opts->checkpoint_dir, cache, l, x, nx, &meta, err);
        if (rc == A3_OK && opts->stop_after_layer && l + 1 == opts->stop_after_layer && l + 1 < cache->n_layers)
            rc = a3_err_set(err, A3_ECANCELED, "calibration: stopped after layer %d as asked", l + 1);
    }
    free(x), free(q_off), free(kv_off);
    return rc;
}
