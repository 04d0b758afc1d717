/* calib: statistics against a brute-force recomputation from the forward
 * pass's own activations, loss curves against measured errors, windows,
 * and resumed runs against uninterrupted ones. */
#include <math.h>
#include <stdint.h>

#include "a3/blas.h"
#include "a3/cache.h"
#include "a3/calib.h"
#include "a3/llama2c.h"
#include "a3/model.h"
#include "a3/synth.h"
#include "helpers/files.h"
#include "helpers/run_a3.h"
#include "test.h"

static a3_synth_spec spec_of(const char *kind)
{
    a3_synth_spec s = {.arch = A3_ARCH_LLAMA, .d = 32, .n_layers = 3, .n_heads = 4, .n_kv_heads = 4,
                       .head_dim = 8, .d_ff = 48, .vocab = 64, .max_seq = 64, .rope_theta = 10000.0,
                       .dtype = A3_DT_F32, .seed = 5};
    if (!strcmp(kind, "gqa")) s.n_kv_heads = 2;
    if (!strcmp(kind, "bias")) s.arch = A3_ARCH_QWEN2, s.qkv_bias = 1, s.n_kv_heads = 2;
    return s;
}

/* The synthetic model s written to dir and opened; NULL (a failed check
 * naming the error) if either step fails. */
static a3_model *synth_open(const char *dir, const a3_synth_spec *s)
{
    a3_err err = {0};
    a3_model *m = NULL;
    CHECKF(a3_synth_write(dir, s, &err) == 0 && a3_model_open(dir, &m, &err) == 0, "%s", err.msg);
    return m;
}

/* Brute-force sums from dumped activations: plain loops in double. */
typedef struct {
    const a3_config *c;
    double *gq, *gk, *gv, *cz, *d, *ru; /* one layer's */
    float *q, *k; /* dumped pre-RoPE q and k of the layer, (rows, width) */
    size_t rows;
} dump;

static void outer_add(double *G, const float *x, int stride, int off, size_t rows, int n)
{
    for (size_t r = 0; r < rows; r++)
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++)
                G[a * n + b] += (double)x[r * stride + off + a] * (double)x[r * stride + off + b];
}

static int dump_qkv(void *ctx, int layer, const float *q, const float *k, const float *v, size_t rows)
{
    dump *D = ctx;
    const a3_config *c = D->c;
    int hd = c->head_dim, qw = c->n_heads * hd, kw = c->n_kv_heads * hd;
    for (int h = 0; h < c->n_heads; h++) outer_add(D->gq + h * hd * hd, q, qw, h * hd, rows, hd);
    for (int g = 0; g < c->n_kv_heads; g++) {
        outer_add(D->gk + g * hd * hd, k, kw, g * hd, rows, hd);
        outer_add(D->gv + g * hd * hd, v, kw, g * hd, rows, hd);
    }
    memcpy(D->q + D->rows * qw, q, rows * qw * sizeof(float));
    memcpy(D->k + D->rows * kw, k, rows * kw * sizeof(float));
    return 0;
}

static int dump_z(void *ctx, int layer, const float *z, size_t rows)
{
    dump *D = ctx;
    int hd = D->c->head_dim;
    for (int h = 0; h < D->c->n_heads; h++) outer_add(D->cz + h * hd * hd, z, D->c->n_heads * hd, h * hd, rows, hd);
    return 0;
}

static int dump_u(void *ctx, int layer, const float *u, size_t rows)
{
    dump *D = ctx;
    int ff = D->c->d_ff;
    for (size_t r = 0; r < rows; r++)
        for (int n = 0; n < ff; n++) D->d[n] += (double)u[r * ff + n] * u[r * ff + n];
    outer_add(D->ru, u, ff, 0, rows, ff);
    D->rows += rows;
    return 0;
}

static double rel_diff(const double *a, const double *b, size_t n)
{
    double md = 0, mx = 1e-300;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs(a[i] - b[i]));
        mx = fmax(mx, fabs(b[i]));
    }
    return md / mx;
}

static void make_windows(int32_t *w, size_t n, int vocab)
{
    uint32_t s = 12345;
    for (size_t i = 0; i < n; i++) w[i] = (int32_t)((s = s * 1664525u + 1013904223u) >> 8) % vocab;
}

/* Mean over all token pairs (t, s) and the group's query heads of the
 * squared score error when only the first k pairs (in cache order) are
 * kept: the quantity qk_loss[k] claims to be. */
static double measured_qk_loss(const dump *D, const a3_cache_layer *L, int g, int k)
{
    const a3_config *c = D->c;
    int hd = c->head_dim, half = hd / 2, per = c->n_heads / c->n_kv_heads;
    int keep[64] = {0};
    for (int p = 0; p < k; p++) keep[L->qk_order[g * half + p]] = keep[L->qk_order[g * half + p] + half] = 1;
    double sum = 0;
    for (int h = g * per; h < (g + 1) * per; h++)
        for (size_t t = 0; t < D->rows; t++)
            for (size_t s = 0; s < D->rows; s++) {
                double e = 0;
                for (int a = 0; a < hd; a++)
                    if (!keep[a]) e += (double)D->q[t * c->n_heads * hd + h * hd + a] * D->k[s * c->n_kv_heads * hd + g * hd + a];
                sum += e * e;
            }
    return sum / ((double)D->rows * D->rows);
}

/* Statistics of the pass against brute-force sums over the activations of
 * the same forward pass, for the model in dir. */
static void check_model(const char *kind, const char *dir)
{
    a3_err err = {0};
    a3_model *m = NULL;
    CHECKF(a3_model_open(dir, &m, &err) == 0, "%s", err.msg);
    if (!m) return;
    const a3_config *c = a3_model_config(m);
    enum { NW = 3, L = 20 };
    int32_t win[NW * L];
    make_windows(win, NW * L, c->vocab);
    a3_cache *cache = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 1);
    a3_calib_opts o = {.mlp_full = 1};
    CHECKF(a3_calibrate(m, win, NW, L, &o, cache, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(cache->n_tokens == NW * L);

    int hd = c->head_dim, ff = c->d_ff, hh = hd * hd;
    float *x = malloc(NW * L * c->d * sizeof(float));
    CHECK(a3_model_embed(m, win, NW * L, x, &err) == 0);
    for (int l = 0; l < c->n_layers; l++) {
        dump D = {.c = c};
        D.gq = calloc(c->n_heads * hh, 8), D.cz = calloc(c->n_heads * hh, 8);
        D.gk = calloc(c->n_kv_heads * hh, 8), D.gv = calloc(c->n_kv_heads * hh, 8);
        D.d = calloc(ff, 8), D.ru = calloc(ff * ff, 8);
        D.q = malloc(NW * L * c->n_heads * hd * sizeof(float)), D.k = malloc(NW * L * c->n_kv_heads * hd * sizeof(float));
        /* Same chunking as the pass (the default), so the activations are
         * bit-identical: sgemm results depend on the batch shape at float32
         * round-off, which is not what this test is about. */
        a3_layer_hooks hk = {.ctx = &D, .on_qkv = dump_qkv, .on_z = dump_z, .on_u = dump_u};
        CHECK(a3_model_run_layer(m, l, x, NW, L, 0, &hk, &err) == 0);
        const a3_cache_layer *CL = &cache->layers[l];
        /* float64 sums of the same float32 products in another order: 1e-9 */
        double worst = fmax(fmax(rel_diff(CL->gq, D.gq, c->n_heads * hh), rel_diff(CL->gk, D.gk, c->n_kv_heads * hh)),
                            fmax(rel_diff(CL->gv, D.gv, c->n_kv_heads * hh), rel_diff(CL->c, D.cz, c->n_heads * hh)));
        worst = fmax(worst, fmax(rel_diff(CL->d, D.d, ff), rel_diff(CL->ru, D.ru, ff * ff)));
        CHECKF(worst <= 1e-9, "%s layer %d: statistics differ by %.3g relative", kind, l, worst);
        for (int g = 0; g < c->n_kv_heads; g++)
            for (int k = 0; k <= hd / 2; k += 2) {
                double meas = measured_qk_loss(&D, CL, g, k), pred = CL->qk_loss[g * (hd / 2 + 1) + k];
                CHECKF(fabs(meas - pred) <= 1e-9 * fmax(1e-300, CL->qk_loss[g * (hd / 2 + 1)]),
                       "%s layer %d group %d k %d: QK loss %.9g measured %.9g", kind, l, g, k, pred, meas);
            }
        double *all[] = {D.gq, D.gk, D.gv, D.cz, D.d, D.ru};
        for (int i = 0; i < 6; i++) free(all[i]);
        free(D.q), free(D.k);
    }
    free(x);
    a3_cache_free(cache);
    a3_model_free(m);
}

static void check_kind(const char *kind)
{
    char tmp[64], dir[128];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp);
    a3_synth_spec s = spec_of(kind);
    a3_err err = {0};
    CHECK(a3_synth_write(dir, &s, &err) == 0);
    check_model(kind, dir);
    test_rm_rf(tmp);
}

static void test_stats_stories260K(void)
{
    const char *data = test_shared_data();
    char tmp[64], dir[160], bin[4200], tok[4200];
    if (!data) SKIP("../shared/data not found: statistics on stories260K not checked");
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(bin, sizeof bin, "%s/models/stories260K/stories260K.bin", data);
    snprintf(tok, sizeof tok, "%s/models/stories260K/tok512.bin", data);
    snprintf(dir, sizeof dir, "%s/stories260K", tmp);
    a3_err err = {0};
    CHECKF(a3_llama2c_convert(bin, tok, dir, NULL, &err) == 0, "%s", err.msg);
    check_model("stories260K", dir);
    test_rm_rf(tmp);
}

static void test_stats_mha(void) { check_kind("mha"); }
static void test_stats_gqa(void) { check_kind("gqa"); }
static void test_stats_bias(void) { check_kind("bias"); }

static void test_windows(void)
{
    int32_t ids[1000], *w1, *w2;
    for (int i = 0; i < 1000; i++) ids[i] = i;
    int n1, n2, L1, L2;
    a3_err err = {0};
    CHECK(a3_calib_windows(ids, 1000, 8, 100, 42, 0, &w1, &n1, &L1, &err) == 0);
    CHECK(a3_calib_windows(ids, 1000, 8, 100, 42, 0, &w2, &n2, &L2, &err) == 0);
    CHECK(n1 == 8 && L1 == 100 && memcmp(w1, w2, sizeof(int32_t) * 800) == 0);
    for (int i = 0; i < 8; i++) /* each window is a contiguous run of the stream */
        CHECK(w1[i * 100 + 99] == w1[i * 100] + 99 && w1[i * 100] >= 0 && w1[i * 100] <= 900);
    free(w2);
    CHECK(a3_calib_windows(ids, 1000, 8, 100, 43, 0, &w2, &n2, &L2, &err) == 0);
    CHECK(memcmp(w1, w2, sizeof(int32_t) * 800) != 0); /* the seed matters */
    free(w1), free(w2);
    CHECK(a3_calib_windows(ids, 1000, 20, 100, 42, 0, &w1, &n1, &L1, &err) == A3_EINVAL);
    CHECKF(strstr(err.msg, "1000 tokens") && strstr(err.msg, "--allow-short"), "got '%s'", err.msg);
    CHECK(a3_calib_windows(ids, 1000, 20, 100, 42, 1, &w1, &n1, &L1, &err) == 0);
    CHECK(n1 == 10 && L1 == 100 && w1[999] == 999);
    free(w1);
    CHECK(a3_calib_windows(ids, 50, 2, 100, 42, 1, &w1, &n1, &L1, &err) == 0);
    CHECK(n1 == 1 && L1 == 50);
    free(w1);
}

static int same_cache(const a3_cache *a, const a3_cache *b)
{
    for (int l = 0; l < a->n_layers; l++)
        for (int s = 0; s < A3_SEC_COUNT; s++) {
            size_t n = a3_cache_section_len(a, (a3_cache_section)s);
            size_t es = (s == A3_SEC_QK_ORDER || s == A3_SEC_MLP_ORDER) ? 4 : 8;
            void *pa = a3_cache_section_ptr(a, l, (a3_cache_section)s), *pb = a3_cache_section_ptr(b, l, (a3_cache_section)s);
            if (n && memcmp(pa, pb, n * es) != 0) return 0;
        }
    return 1;
}

/* Interrupt after k layers, resume: the same statistics bit for bit. */
static void test_resume(void)
{
    char tmp[64], dir[128], ck[128];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp);
    snprintf(ck, sizeof ck, "%s/ckpt", tmp);
    a3_synth_spec s = spec_of("gqa");
    a3_err err = {0};
    a3_model *m = synth_open(dir, &s);
    if (!m) return;
    const a3_config *c = a3_model_config(m);
    enum { NW = 4, L = 24 };
    int32_t win[NW * L];
    make_windows(win, NW * L, s.vocab);
    a3_cache *ref = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 0);
    a3_calib_opts o = {0};
    CHECK(a3_calibrate(m, win, NW, L, &o, ref, NULL, NULL, &err) == 0);
    for (int k = 1; k < c->n_layers; k++) {
        a3_cache *part = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 0);
        a3_calib_opts o1 = {.checkpoint_dir = ck, .stop_after_layer = k};
        strcpy(o1.created, "2026-01-01T00:00:00Z");
        CHECK(a3_calibrate(m, win, NW, L, &o1, part, NULL, NULL, &err) == A3_ECANCELED);
        a3_cache_free(part);
        a3_cache *res = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 0);
        a3_calib_opts o2 = {.checkpoint_dir = ck, .resume = 1};
        strcpy(o2.created, "2030-01-01T00:00:00Z");
        CHECKF(a3_calibrate(m, win, NW, L, &o2, res, NULL, NULL, &err) == 0, "%s", err.msg);
        CHECKF(same_cache(ref, res), "resumed after %d layers differs", k);
        CHECK(strcmp(o2.created, "2026-01-01T00:00:00Z") == 0);
        a3_cache_free(res);
        test_rm_rf(ck);
    }
    /* A checkpoint of another run is refused, not silently used. */
    a3_cache *part = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 0);
    a3_calib_opts o3 = {.checkpoint_dir = ck, .stop_after_layer = 1};
    CHECK(a3_calibrate(m, win, NW, L, &o3, part, NULL, NULL, &err) == A3_ECANCELED);
    win[0] = (win[0] + 1) % s.vocab;
    a3_calib_opts o4 = {.checkpoint_dir = ck, .resume = 1};
    CHECK(a3_calibrate(m, win, NW, L, &o4, part, NULL, NULL, &err) == A3_EMISMATCH);
    a3_cache_free(part);
    a3_cache_free(ref);
    a3_model_free(m);
    test_rm_rf(tmp);
}

/* --threads must not move a bit of the statistics (issue 15: a Slurm job
 * resumed on a node with another core count matched neither run). The
 * model is big enough that OpenBLAS splits its GEMMs at 2 threads (before
 * the fixed tiles, ~9% of layer 0's q outputs differed by an ulp), with
 * the full MLP Gram on so the d_ff-wide product is covered too. */
static void test_threads_same_bits(void)
{
    char tmp[64], dir[128], ck[128];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp);
    snprintf(ck, sizeof ck, "%s/ckpt", tmp);
    a3_synth_spec s = spec_of("gqa");
    s.d = 128, s.n_heads = 8, s.n_kv_heads = 4, s.head_dim = 16, s.d_ff = 352, s.max_seq = 256;
    a3_err err = {0};
    a3_model *m = synth_open(dir, &s);
    if (!m) return;
    const a3_config *c = a3_model_config(m);
    enum { NW = 8, L = 256 };
    int32_t *win = malloc(sizeof(int32_t) * NW * L);
    make_windows(win, NW * L, s.vocab);
    a3_cache *run[3];
    for (int t = 0; t < 3; t++) {
        run[t] = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 1);
        a3_model_set_threads(m, t + 1);
        a3_calib_opts o = {.mlp_full = 1};
        CHECKF(a3_calibrate(m, win, NW, L, &o, run[t], NULL, NULL, &err) == 0, "%s", err.msg);
    }
    CHECK(same_cache(run[0], run[1]));
    CHECK(same_cache(run[0], run[2]));
    /* Interrupted on 2 threads, resumed on 1: the 1-thread run's bits. */
    a3_cache *part = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 1);
    a3_calib_opts o1 = {.mlp_full = 1, .checkpoint_dir = ck, .stop_after_layer = 1};
    a3_model_set_threads(m, 2);
    CHECK(a3_calibrate(m, win, NW, L, &o1, part, NULL, NULL, &err) == A3_ECANCELED);
    a3_cache_free(part);
    a3_cache *res = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 1);
    a3_calib_opts o2 = {.mlp_full = 1, .checkpoint_dir = ck, .resume = 1};
    a3_model_set_threads(m, 1);
    CHECKF(a3_calibrate(m, win, NW, L, &o2, res, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(same_cache(run[0], res));
    a3_model_set_threads(m, 0);
    a3_cache_free(res);
    for (int t = 0; t < 3; t++) a3_cache_free(run[t]);
    free(win);
    a3_model_free(m);
    test_rm_rf(tmp);
}

/* Layers finished on one OpenBLAS kernel and resumed on another cannot be
 * bitwise either run: the cache records both kernels in its metadata and
 * the CLI says so. The checkpoint's kernel is rewritten to a different
 * name, as if it came from another node. */
static void test_resume_other_kernel(void)
{
    char tmp[64], dir[128], ids[128], cache[128], ck[140], meta[160], err_path[140], args[600];
    if (!run_a3_bin()) SKIP("A3_BIN not set");
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp), snprintf(ids, sizeof ids, "%s/ids.bin", tmp);
    snprintf(cache, sizeof cache, "%s/c.cache", tmp), snprintf(ck, sizeof ck, "%s.ckpt", cache);
    snprintf(meta, sizeof meta, "%s/meta.json", ck), snprintf(err_path, sizeof err_path, "%s/err", tmp);
    a3_synth_spec s = spec_of("gqa");
    a3_err err = {0};
    a3_model *m = synth_open(dir, &s);
    if (!m) return;
    const a3_config *c = a3_model_config(m);
    enum { NW = 4, L = 16, N = 200 };
    int32_t stream[N], *win = NULL;
    unsigned char raw[N * 4];
    make_windows(stream, N, s.vocab);
    for (int i = 0; i < N; i++) tf_put_le32(raw + 4 * i, (uint32_t)stream[i]);
    CHECK(tf_write_bytes(ids, raw, sizeof raw) == 0);
    int nw, len; /* the windows `calibrate --ids --samples 4 --seqlen 16` draws */
    CHECK(a3_calib_windows(stream, N, NW, L, 0, 0, &win, &nw, &len, &err) == 0);
    a3_cache *part = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 0);
    a3_calib_opts o = {.checkpoint_dir = ck, .stop_after_layer = 1};
    CHECK(a3_calibrate(m, win, NW, L, &o, part, NULL, NULL, &err) == A3_ECANCELED);
    /* The a3 binary may run another kernel than this process (it re-executes
     * itself with OPENBLAS_CORETYPE where OpenBLAS misdetects the CPU), so
     * the other node's kernel is a name neither can have. */
    const char *cur = a3_blas_kernel_name(), *other = "OtherNode";
    CHECK(strcmp(o.kernel, cur) == 0);
    char *text = run_a3_slurp(meta, NULL), *k = text ? strstr(text, "\"kernel\": \"") : NULL;
    CHECKF(k, "no kernel in %s", meta);
    if (k) {
        char fixed[1024];
        snprintf(fixed, sizeof fixed, "%.*s\"kernel\": \"%s\"}\n", (int)(k - text), text, other);
        CHECK(tf_write_bytes(meta, fixed, strlen(fixed)) == 0);
    }
    snprintf(args, sizeof args, "calibrate '%s' --ids '%s' --samples %d --seqlen %d -o '%s' --resume", dir, ids, NW,
             L, cache);
    CHECK(run_a3(args, NULL, err_path) == 0);
    char want[200];
    snprintf(want, sizeof want, "computed with OpenBLAS kernel %s, this run's with ", other);
    CHECKF(run_a3_file_has(err_path, want), "no warning '%s'", want);
    snprintf(want, sizeof want, "\"blas_kernel\":\t\"%s+", other);
    a3_cache *got = NULL;
    CHECKF(a3_cache_load(cache, &got, &err) == 0, "%s", err.msg);
    CHECKF(got && got->meta_json && strstr(got->meta_json, want), "cache metadata lacks %s", want);
    a3_cache_free(got);
    free(text), free(win);
    a3_cache_free(part);
    a3_model_free(m);
    test_rm_rf(tmp);
}

static double max_rel(const double *a, const double *b, size_t n)
{
    double md = 0, mx = 1e-300;
    for (size_t i = 0; i < n; i++) md = fmax(md, fabs(a[i] - b[i])), mx = fmax(mx, fabs(b[i]));
    return md / mx;
}

/* Three shards of the windows, merged, equal one run over all of them.
 * Not bit-exact: each shard's forward pass runs its own batch shape, and
 * sgemm's float32 results depend on it (~1e-7 relative); 1e-5 allows for
 * that and nothing else (a missing or doubled shard is off by ~30%). */
static void test_merge_shards(void)
{
    char tmp[64], dir[128];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp);
    a3_synth_spec s = spec_of("gqa");
    a3_err err = {0};
    a3_model *m = synth_open(dir, &s);
    if (!m) return;
    const a3_config *c = a3_model_config(m);
    enum { NW = 6, L = 16 };
    int32_t win[NW * L];
    make_windows(win, NW * L, s.vocab);
    a3_cache *all = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 1), *sh[3];
    a3_calib_opts o = {.mlp_full = 1};
    CHECK(a3_calibrate(m, win, NW, L, &o, all, NULL, NULL, &err) == 0);
    const char *names[3] = {"s1", "s2", "s3"};
    for (int i = 0; i < 3; i++) {
        sh[i] = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 1);
        CHECK(a3_calibrate(m, win + i * 2 * L, 2, L, &o, sh[i], NULL, NULL, &err) == 0);
        sh[i]->meta_json = strdup("{\"calibration\": {\"samples\": 2, \"n_tokens\": 32, \"shard\": {}}}");
    }
    a3_cache *mg = NULL;
    CHECKF(a3_cache_merge(sh, names, 3, &mg, &err) == 0, "%s", err.msg);
    if (mg) {
        CHECK(mg->n_tokens == all->n_tokens);
        double worst = 0;
        for (int l = 0; l < c->n_layers; l++)
            for (int sec = 0; sec < A3_SEC_COUNT; sec++) {
                if (sec == A3_SEC_QK_ORDER || sec == A3_SEC_MLP_ORDER || sec == A3_SEC_QK_SCORE || sec == A3_SEC_MLP_SCORE) continue;
                size_t n = a3_cache_section_len(all, (a3_cache_section)sec);
                worst = fmax(worst, max_rel(a3_cache_section_ptr(mg, l, (a3_cache_section)sec),
                                            a3_cache_section_ptr(all, l, (a3_cache_section)sec), n));
            }
        CHECKF(worst <= 1e-5, "merged cache differs from the single run by %.3g", worst);
        CHECK(strstr(mg->meta_json, "\"samples\":\t6") || strstr(mg->meta_json, "\"samples\": 6"));
        CHECK(!strstr(mg->meta_json, "shard\""));
    }
    sh[1]->fingerprint[0] = 'x'; /* a shard of another model is refused */
    a3_cache *bad = NULL;
    CHECK(a3_cache_merge(sh, names, 3, &bad, &err) == A3_EMISMATCH && strstr(err.msg, "s2"));
    for (int i = 0; i < 3; i++) a3_cache_free(sh[i]);
    a3_cache_free(mg);
    a3_cache_free(all);
    a3_model_free(m);
    test_rm_rf(tmp);
}

/* Ctrl-C reaches the library as the progress callback returning non-zero.
 * It is asked after each phase of a chunk (projections, attention output,
 * MLP), so a cancel is seen before the chunk's MLP runs: the first call
 * comes with done = 0, and cancelling there stops the run with nothing
 * counted. Before, the first call came after the whole chunk (done = all
 * rows here: one chunk), so a 7B layer's Ctrl-C waited ~40 s. */
typedef struct {
    int calls;
    int64_t first_done;
} cancel_probe;

static int cancel_first(void *ctx, const char *stage, int64_t done, int64_t total)
{
    cancel_probe *p = ctx;
    if (p->calls++ == 0) p->first_done = done;
    return 1;
}

static void test_cancel_within_chunk(void)
{
    char tmp[64], dir[128];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp);
    a3_synth_spec s = spec_of("gqa");
    a3_err err = {0};
    a3_model *m = synth_open(dir, &s);
    if (!m) return;
    const a3_config *c = a3_model_config(m);
    enum { NW = 2, L = 16 };
    int32_t win[NW * L];
    make_windows(win, NW * L, s.vocab);
    a3_cache *cache = a3_cache_new(c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, 0);
    a3_calib_opts o = {0};
    cancel_probe p = {0, -1};
    CHECK(a3_calibrate(m, win, NW, L, &o, cache, cancel_first, &p, &err) == A3_ECANCELED);
    CHECKF(p.calls == 1 && p.first_done == 0, "calls %d, first at done=%lld (cancel asked only after the chunk)", p.calls,
           (long long)p.first_done);
    CHECKF(strstr(err.msg, "cancelled in layer 1/") != NULL, "%s", err.msg);
    a3_cache_free(cache);
    a3_model_free(m);
    test_rm_rf(tmp);
}

int main(void)
{
    RUN(test_merge_shards);
    RUN(test_stats_mha);
    RUN(test_stats_gqa);
    RUN(test_stats_bias);
    RUN(test_stats_stories260K);
    RUN(test_windows);
    RUN(test_threads_same_bits);
    RUN(test_resume_other_kernel);
    RUN(test_resume);
    RUN(test_cancel_within_chunk);
    return test_summary("calib");
}
