/* apply: the identities of A3-METHOD.md section 7 through the real apply
 * path, on random models of every supported kind:
 *   - full rank reproduces the original logits;
 *   - the predicted loss of a reduced component equals the error measured
 *     by running the calibration tokens through the original and the
 *     compressed model (QK pre-RoPE scores, OV head outputs for MHA, MLP
 *     output against the exact Ru form);
 *   - a padded export gives the compressed runtime's logits;
 *   - every method and baseline produces a loadable model;
 *   - sharded output holds the same tensors and gives the same logits as
 *     one file, with a consistent index, and leaves nothing when cut. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

#include "a3/apply.h"
#include "a3/cache.h"
#include "a3/calib.h"
#include "a3/model.h"
#include "a3/plan.h"
#include "a3/safetensors.h"
#include "a3/synth.h"
#include "helpers/files.h"
#include "helpers/fixture.h"
#include "test.h"

enum { NW = 4, L = 24 };

typedef tfix fixture;

/* Model seed 9, windows from LCG seed 777, with Ru. */
static int fixture_up(fixture *f, const char *kind) { return tfix_synth(f, kind, 9, NW, L, 777, 1); }
static void fixture_down(fixture *f) { tfix_down(f); }

static a3_plan *full_plan(fixture *f)
{
    a3_plan *p = NULL;
    a3_err err = {0};
    if (a3_plan_from_cache(f->c, &p, &err) || a3_plan_set_config(p, a3_model_config(f->m), &err)) {
        fprintf(stderr, "  plan: %s\n", err.msg);
        a3_plan_free(p);
        return NULL;
    }
    return p;
}

static a3_model *apply_open_sharded(fixture *f, const a3_plan *p, const char *name, int padded, uint64_t shard,
                                    a3_apply_report *rep)
{
    char out[200];
    snprintf(out, sizeof out, "%s/%s", f->tmp, name);
    a3_apply_opts o = {.padded = padded, .dtype = A3_DT_COUNT, .max_shard_bytes = shard};
    a3_err err = {0};
    a3_model *cm = NULL;
    if (a3_apply(f->m, f->c, p, &o, out, rep, &err) || a3_model_open(out, &cm, &err)) {
        fprintf(stderr, "  apply %s: %s\n", name, err.msg);
        return NULL;
    }
    return cm;
}

static a3_model *apply_open(fixture *f, const a3_plan *p, const char *name, int padded, a3_apply_report *rep)
{
    return apply_open_sharded(f, p, name, padded, 0, rep);
}

/* Max |logits(a) - logits(b)| / max(1, max |logits(a)|) over the windows. */
static double logit_diff(a3_model *a, a3_model *b, const int32_t *tok)
{
    const a3_config *c = a3_model_config(a);
    size_t rows = NW * L, V = (size_t)c->vocab;
    float *h = malloc(rows * c->d * 4), *la = malloc(rows * V * 4), *lb = malloc(rows * V * 4);
    a3_err err = {0};
    double md = INFINITY;
    if (!a3_model_forward(a, tok, NW, L, h, &err) && !a3_model_logits(a, h, rows, la, &err) &&
        !a3_model_forward(b, tok, NW, L, h, &err) && !a3_model_logits(b, h, rows, lb, &err)) {
        double sc = 1;
        md = 0;
        for (size_t i = 0; i < rows * V; i++) sc = fmax(sc, fabs(la[i])), md = fmax(md, fabs(la[i] - lb[i]));
        md /= sc;
    } else fprintf(stderr, "  forward: %s\n", err.msg);
    free(h), free(la), free(lb);
    return md;
}

static void full_rank_kind(const char *kind)
{
    fixture f;
    if (fixture_up(&f, kind)) SKIP("fixture failed");
    a3_plan *p = full_plan(&f);
    a3_model *cm = p ? apply_open(&f, p, "full", 0, NULL) : NULL;
    CHECK(cm != NULL);
    if (cm) {
        /* float64 solves rounded to float32 weights: 1e-5 of the logit scale */
        double d = logit_diff(f.m, cm, f.win);
        CHECKF(d <= 1e-5, "%s: full-rank apply changes logits by %.3g", kind, d);
        CHECK(a3_model_config(cm)->compressed);
    }
    a3_model_free(cm);
    a3_plan_free(p);
    fixture_down(&f);
}

static void test_full_rank_mha(void) { full_rank_kind("mha"); }
static void test_full_rank_gqa(void) { full_rank_kind("gqa"); }
static void test_full_rank_bias(void) { full_rank_kind("bias"); }

/* Activations of layer 0 of a model over the fixture's windows. */
typedef struct {
    float *q, *k, *z, *out;
    size_t rows;
    int qw, kw, zw;
} acts;

static int grab_qkv(void *ctx, int l, const float *q, const float *k, const float *v, size_t rows)
{
    acts *a = ctx;
    memcpy(a->q + a->rows * a->qw, q, rows * a->qw * 4);
    memcpy(a->k + a->rows * a->kw, k, rows * a->kw * 4);
    return 0;
}
static int grab_z(void *ctx, int l, const float *z, size_t rows)
{
    acts *a = ctx;
    memcpy(a->z + a->rows * a->zw, z, rows * a->zw * 4);
    a->rows += rows;
    return 0;
}

static void layer0(a3_model *m, const int32_t *tok, acts *a)
{
    const a3_config *c = a3_model_config(m);
    size_t rows = NW * L;
    int qw = 0, kw = 0, zw = 0, per = c->n_heads / c->n_kv_heads;
    for (int g = 0; g < c->n_kv_heads; g++) qw += per * c->qk_rank[g], kw += c->qk_rank[g], zw += per * c->ov_rank[g];
    *a = (acts){.q = malloc(rows * qw * 4 + 4), .k = malloc(rows * kw * 4 + 4), .z = malloc(rows * zw * 4 + 4),
                .out = malloc(rows * c->d * 4), .qw = qw, .kw = kw, .zw = zw};
    a3_err err = {0};
    a3_model_embed(m, tok, rows, a->out, &err);
    a3_layer_hooks hk = {.ctx = a, .on_qkv = grab_qkv, .on_z = grab_z};
    a3_model_run_layer(m, 0, a->out, NW, L, 0, &hk, &err);
}

static void acts_free(acts *a) { free(a->q), free(a->k), free(a->z), free(a->out); }

/* QK at rank 4 of 8 in group 0 of layer 0 only. */
static void test_qk_predicted_equals_measured(void)
{
    fixture f;
    if (fixture_up(&f, "gqa")) SKIP("fixture failed");
    a3_plan *p = full_plan(&f);
    if (!p) return;
    a3_plan_qk(p, 0)[0] = 4;
    a3_apply_report rep;
    a3_model *cm = apply_open(&f, p, "qk", 0, &rep);
    if (!cm) return;
    acts A, B;
    layer0(f.m, f.win, &A), layer0(cm, f.win, &B);
    int hd = 8, per = 2, r = 4;
    double sum = 0;
    size_t n = A.rows;
    for (int h = 0; h < per; h++) /* group 0's query heads are 0, 1; its key head is 0 */
        for (size_t t = 0; t < n; t++)
            for (size_t s = 0; s < n; s++) {
                double full = 0, red = 0;
                for (int a = 0; a < hd; a++) full += (double)A.q[t * A.qw + h * hd + a] * A.k[s * A.kw + a];
                for (int a = 0; a < r; a++) red += (double)B.q[t * B.qw + h * r + a] * B.k[s * B.kw + a];
                sum += (full - red) * (full - red);
            }
    double meas = sum / ((double)n * n), pred = f.c->layers[0].qk_loss[0 * (hd / 2 + 1) + r / 2];
    CHECKF(fabs(meas - pred) <= 1e-6 * fmax(pred, 1e-12), "QK predicted %.9g measured %.9g", pred, meas);
    CHECKF(fabs(rep.qk_loss - pred) <= 1e-9 * fmax(pred, 1e-12), "apply reported %.9g", rep.qk_loss);
    acts_free(&A), acts_free(&B);
    a3_model_free(cm);
    a3_plan_free(p);
    fixture_down(&f);
}

/* OV at rank 3 of 8 for every head of layer 0 (MHA: exact). */
static void test_ov_predicted_equals_measured(void)
{
    fixture f;
    if (fixture_up(&f, "mha")) SKIP("fixture failed");
    a3_plan *p = full_plan(&f);
    if (!p) return;
    int r = 3, hd = 8, d = 32, nh = 4;
    for (int g = 0; g < nh; g++) a3_plan_ov(p, 0)[g] = r;
    a3_apply_report rep;
    a3_model *cm = apply_open(&f, p, "ov", 0, &rep);
    if (!cm) return;
    acts A, B;
    layer0(f.m, f.win, &A), layer0(cm, f.win, &B);
    float *wo = malloc((size_t)d * nh * hd * 4), *wo2 = malloc((size_t)d * nh * r * 4);
    int64_t s1[2] = {d, nh * hd}, s2[2] = {d, nh * r};
    a3_err err = {0};
    CHECK(a3_st_load_f32(a3_model_tensors(f.m), "model.layers.0.self_attn.o_proj.weight", 2, s1, wo, &err) == 0);
    CHECK(a3_st_load_f32(a3_model_tensors(cm), "model.layers.0.self_attn.o_proj.weight", 2, s2, wo2, &err) == 0);
    double sum = 0, pred = 0;
    for (size_t t = 0; t < A.rows; t++)
        for (int h = 0; h < nh; h++)
            for (int e = 0; e < d; e++) {
                double y = 0, y2 = 0;
                for (int a = 0; a < hd; a++) y += (double)A.z[t * A.zw + h * hd + a] * wo[(size_t)e * nh * hd + h * hd + a];
                for (int a = 0; a < r; a++) y2 += (double)B.z[t * B.zw + h * r + a] * wo2[(size_t)e * nh * r + h * r + a];
                sum += (y - y2) * (y - y2);
            }
    for (int g = 0; g < nh; g++)
        for (int j = r; j < hd; j++) pred += f.c->layers[0].ov_sv[g * hd + j] * f.c->layers[0].ov_sv[g * hd + j];
    double meas = sum / (double)A.rows;
    /* float32 weights and activations: 1e-4 relative */
    CHECKF(fabs(meas - pred) <= 1e-4 * pred, "OV predicted %.9g measured %.9g", pred, meas);
    CHECKF(fabs(rep.ov_loss - pred) <= 1e-9 * pred, "apply reported %.9g, curve %.9g", rep.ov_loss, pred);
    free(wo), free(wo2);
    acts_free(&A), acts_free(&B);
    a3_model_free(cm);
    a3_plan_free(p);
    fixture_down(&f);
}

/* MLP of layer 0 at width 15 of 40: the layer-output change equals the
 * exact loss trace(W_down[S',:]^T Ru[S',S'] W_down[S',:]) / N; the refit
 * does no worse. */
static double mlp_measured(fixture *f, a3_plan *p, const char *name)
{
    a3_model *cm = apply_open(f, p, name, 0, NULL);
    if (!cm) return INFINITY;
    acts A, B;
    layer0(f->m, f->win, &A), layer0(cm, f->win, &B);
    double sum = 0;
    for (size_t i = 0; i < A.rows * 32; i++) sum += ((double)A.out[i] - B.out[i]) * ((double)A.out[i] - B.out[i]);
    acts_free(&A), acts_free(&B);
    a3_model_free(cm);
    return sum / (double)(NW * L);
}

static void test_mlp_predicted_equals_measured(void)
{
    fixture f;
    if (fixture_up(&f, "mha")) SKIP("fixture failed");
    a3_plan *p = full_plan(&f);
    if (!p) return;
    int w = 15, ff = 40, d = 32;
    p->mlp[0] = w;
    double meas = mlp_measured(&f, p, "mlp");
    const a3_cache_layer *CL = &f.c->layers[0];
    int kept[40] = {0};
    for (int j = 0; j < w; j++) kept[CL->mlp_order[j]] = 1;
    float *wd = malloc((size_t)d * ff * 4);
    int64_t sh[2] = {d, ff};
    a3_err err = {0};
    CHECK(a3_st_load_f32(a3_model_tensors(f.m), "model.layers.0.mlp.down_proj.weight", 2, sh, wd, &err) == 0);
    double exact = 0;
    for (int a = 0; a < ff; a++)
        for (int b = 0; b < ff; b++) {
            if (kept[a] || kept[b]) continue;
            double dot = 0;
            for (int e = 0; e < d; e++) dot += (double)wd[e * ff + a] * wd[e * ff + b];
            exact += CL->ru[a * ff + b] * dot;
        }
    exact /= (double)f.c->n_tokens;
    CHECKF(fabs(meas - exact) <= 1e-4 * exact, "MLP exact loss %.9g measured %.9g", exact, meas);
    p->mlp_method = A3_MLP_METHOD_A3_REFIT;
    double refit = mlp_measured(&f, p, "mlp-refit");
    CHECKF(refit <= meas * (1 + 1e-6), "refit error %.9g above plain %.9g", refit, meas);
    free(wd);
    a3_plan_free(p);
    fixture_down(&f);
}

/* Every layer and group reduced: padded export == compressed runtime. */
static void test_padded_equals_compressed(void)
{
    const char *kinds[] = {"mha", "gqa", "bias"};
    for (int kk = 0; kk < 3; kk++) {
        fixture f;
        if (fixture_up(&f, kinds[kk])) SKIP("fixture failed");
        a3_plan *p = full_plan(&f);
        if (!p) return;
        for (int l = 0; l < 2; l++) {
            for (int g = 0; g < p->dims.n_kv_heads; g++) a3_plan_qk(p, l)[g] = 2 + 2 * ((l + g) % 3), a3_plan_ov(p, l)[g] = 3 + (l + 2 * g) % 5;
            p->mlp[l] = 17 + 5 * l;
        }
        a3_model *cm = apply_open(&f, p, "red", 0, NULL), *pm = apply_open(&f, p, "pad", 1, NULL);
        CHECK(cm && pm);
        if (cm && pm) {
            CHECK(!a3_model_config(pm)->compressed);
            double d = logit_diff(cm, pm, f.win);
            CHECKF(d <= 1e-5, "%s: padded differs from compressed by %.3g", kinds[kk], d);
            double o = logit_diff(f.m, cm, f.win);
            CHECKF(o > 1e-3, "%s: a reduced model should differ from the original (%.3g)", kinds[kk], o);
        }
        a3_model_free(cm), a3_model_free(pm);
        a3_plan_free(p);
        fixture_down(&f);
    }
}

/* Zero widths (a3 plan --min-rank qk=0,ov=0,mlp=0 makes them): every OV
 * group and the MLP of layer 0 removed, QK of one group removed. The
 * reduced model stores empty tensors with their real 2-D shape, loads, and
 * gives the logits of the padded export (original shapes, zero rows) --
 * the runtime skips the empty products. Under ASan this was a heap read
 * overflow in the writer (a (d, 0) o_proj written as d floats). */
static void test_zero_widths(void)
{
    fixture f;
    if (fixture_up(&f, "gqa")) SKIP("fixture failed");
    a3_plan *p = full_plan(&f);
    if (!p) return;
    for (int g = 0; g < p->dims.n_kv_heads; g++) a3_plan_ov(p, 0)[g] = 0;
    a3_plan_qk(p, 1)[0] = 0;
    p->mlp[0] = 0;
    a3_model *cm = apply_open(&f, p, "zero", 0, NULL), *pm = apply_open(&f, p, "zpad", 1, NULL);
    CHECK(cm && pm);
    if (cm && pm) {
        double d = logit_diff(cm, pm, f.win);
        CHECKF(d <= 1e-5, "padded differs from compressed by %.3g", d);
    }
    char path[200];
    snprintf(path, sizeof path, "%s/zero/model.safetensors", f.tmp);
    a3_st_set *st = NULL;
    a3_err err = {0};
    CHECK(a3_st_open_file(path, &st, &err) == A3_OK);
    const a3_st_tensor *o = st ? a3_st_find(st, "model.layers.0.self_attn.o_proj.weight") : NULL;
    const a3_st_tensor *dn = st ? a3_st_find(st, "model.layers.0.mlp.down_proj.weight") : NULL;
    const a3_st_tensor *gt = st ? a3_st_find(st, "model.layers.0.mlp.gate_proj.weight") : NULL;
    CHECK(o && o->ndim == 2 && o->shape[0] == 32 && o->shape[1] == 0);
    CHECK(dn && dn->ndim == 2 && dn->shape[0] == 32 && dn->shape[1] == 0);
    CHECK(gt && gt->ndim == 2 && gt->shape[0] == 0 && gt->shape[1] == 32);
    a3_st_free(st);
    a3_model_free(cm), a3_model_free(pm);
    a3_plan_free(p);
    fixture_down(&f);
}

/* A NaN weight (put in after calibration) stops apply with an error naming
 * the tensor and where in it; nothing is written. */
static void test_nonfinite_weight(void)
{
    fixture f;
    if (fixture_up(&f, "mha")) SKIP("fixture failed");
    a3_plan *p = full_plan(&f);
    char st[200], out[200];
    snprintf(st, sizeof st, "%s/model.safetensors", f.dir);
    snprintf(out, sizeof out, "%s/nan-out", f.tmp);
    a3_model_free(f.m);
    f.m = NULL;
    a3_err err = {0};
    CHECK(tf_st_poke_f32(st, "model.layers.1.mlp.up_proj.weight", 2 * 32 + 5, NAN) == 0);
    CHECK(a3_model_open(f.dir, &f.m, &err) == A3_OK);
    a3_apply_opts o = {.dtype = A3_DT_COUNT};
    if (p && f.m) {
        int rc = a3_apply(f.m, f.c, p, &o, out, NULL, &err);
        CHECKF(rc == A3_EFORMAT && strstr(err.msg, "model.layers.1.mlp.up_proj.weight: row 2, column 5 is NaN"),
               "rc %d, '%s'", rc, err.msg);
        CHECK(access(out, F_OK) != 0);
    }
    /* The same for a tensor copied in pieces (lm_head, after the layers). */
    a3_model_free(f.m);
    f.m = NULL;
    CHECK(tf_st_poke_f32(st, "model.layers.1.mlp.up_proj.weight", 2 * 32 + 5, 0.5f) == 0);
    CHECK(tf_st_poke_f32(st, "lm_head.weight", 3 * 32 + 7, INFINITY) == 0);
    CHECK(a3_model_open(f.dir, &f.m, &err) == A3_OK);
    if (p && f.m) {
        int rc = a3_apply(f.m, f.c, p, &o, out, NULL, &err);
        CHECKF(rc == A3_EFORMAT && strstr(err.msg, "lm_head.weight: row 3, column 7 is infinite"), "rc %d, '%s'", rc,
               err.msg);
        CHECK(access(out, F_OK) != 0);
    }
    a3_plan_free(p);
    fixture_down(&f);
}

/* Every method produces a model that loads and runs; greedy-exact QK never
 * predicts a higher loss than the diagonal score. */
static void test_methods(void)
{
    fixture f;
    if (fixture_up(&f, "gqa")) SKIP("fixture failed");
    a3_plan *p = full_plan(&f);
    if (!p) return;
    for (int l = 0; l < 2; l++) {
        for (int g = 0; g < 2; g++) a3_plan_qk(p, l)[g] = 4, a3_plan_ov(p, l)[g] = 4;
        p->mlp[l] = 20;
    }
    double qk_loss[A3_QK_METHOD_COUNT];
    for (int m = 0; m < A3_QK_METHOD_COUNT; m++) {
        p->qk_method = (a3_qk_method)m;
        p->ov_method = (a3_ov_method)(m % A3_OV_METHOD_COUNT);
        p->mlp_method = (a3_mlp_method)(m % A3_MLP_METHOD_COUNT);
        char name[32];
        snprintf(name, sizeof name, "meth%d", m);
        a3_apply_report rep;
        a3_model *cm = apply_open(&f, p, name, 0, &rep);
        CHECKF(cm != NULL, "method set %d failed", m);
        if (cm) CHECK(logit_diff(f.m, cm, f.win) < 10);
        qk_loss[m] = rep.qk_loss;
        a3_model_free(cm);
    }
    CHECKF(qk_loss[A3_QK_METHOD_GREEDY_EXACT] <= qk_loss[A3_QK_METHOD_A3] * (1 + 1e-12),
           "greedy-exact %.9g > a3 %.9g", qk_loss[A3_QK_METHOD_GREEDY_EXACT], qk_loss[A3_QK_METHOD_A3]);
    /* An existing output is refused without force; nothing half-written. */
    char out[200];
    snprintf(out, sizeof out, "%s/meth0", f.tmp);
    a3_apply_opts o = {.dtype = A3_DT_COUNT};
    a3_err err = {0};
    CHECK(a3_apply(f.m, f.c, p, &o, out, NULL, &err) == A3_EINVAL && strstr(err.msg, "--force"));
    o.force = 1;
    CHECK(a3_apply(f.m, f.c, p, &o, out, NULL, &err) == 0);
    a3_plan_free(p);
    fixture_down(&f);
}

/* Every tensor of the single file is in the shards with the same dtype,
 * shape and bytes, and the other way round. */
static int same_tensors(const char *one_dir, const char *sharded_dir)
{
    a3_st_set *a = NULL, *b = NULL;
    a3_err err = {0};
    int same = a3_st_open_dir(one_dir, &a, &err) == 0 && a3_st_open_dir(sharded_dir, &b, &err) == 0 &&
               a3_st_count(a) == a3_st_count(b) && a3_st_count(a) > 0;
    for (size_t i = 0; same && i < a3_st_count(a); i++) {
        const a3_st_tensor *x = a3_st_get(a, i), *y = a3_st_find(b, x->name);
        same = y && x->dtype == y->dtype && x->ndim == y->ndim && x->nbytes == y->nbytes &&
               !memcmp(x->shape, y->shape, sizeof x->shape) && !memcmp(x->data, y->data, x->nbytes);
        if (!same) fprintf(stderr, "  tensor %s differs\n", x->name);
    }
    if (err.code) fprintf(stderr, "  open: %s\n", err.msg);
    a3_st_free(a), a3_st_free(b);
    return same;
}

static int exists_in(const char *dir, const char *name)
{
    char p[300];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

/* The index read with cJSON, apart from the library's reader: total_size
 * is the sum of the tensors' bytes; weight_map names every tensor once with
 * the shard its header is in; shards are model-0000k-of-0000n for k = 1..n,
 * each at most max bytes of tensor data unless it holds a single tensor.
 * Returns the number of shards, or -1. */
static int check_index(const char *dir, uint64_t max)
{
    char path[300], *text = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    a3_err err = {0};
    a3_st_set *set = NULL;
    if (a3_read_file(path, 1 << 24, &text, NULL, &err) || a3_st_open_dir(dir, &set, &err)) {
        fprintf(stderr, "  index: %s\n", err.msg);
        free(text);
        return -1;
    }
    cJSON *root = cJSON_Parse(text);
    const cJSON *total = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "metadata"), "total_size");
    const cJSON *wm = cJSON_GetObjectItem(root, "weight_map");
    uint64_t sum = 0;
    for (size_t i = 0; i < a3_st_count(set); i++) sum += a3_st_get(set, i)->nbytes;
    int ok = cJSON_IsNumber(total) && (uint64_t)total->valuedouble == sum && cJSON_GetArraySize(wm) == (int)a3_st_count(set);
    int nshard = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) nshard += strstr(e->d_name, ".safetensors") && !strstr(e->d_name, ".json");
    if (d) closedir(d);
    uint64_t *bytes = calloc((size_t)nshard + 1, sizeof *bytes);
    int *count = calloc((size_t)nshard + 1, sizeof *count);
    for (const cJSON *it = wm ? wm->child : NULL; ok && it; it = it->next) {
        const a3_st_tensor *t = a3_st_find(set, it->string);
        unsigned k = 0, n = 0;
        ok = t && cJSON_IsString(it) && sscanf(it->valuestring, "model-%5u-of-%5u.safetensors", &k, &n) == 2 &&
             (int)n == nshard && k >= 1 && k <= n && strstr(t->file, it->valuestring) &&
             strlen(strstr(t->file, it->valuestring)) == strlen(it->valuestring);
        if (ok) bytes[k] += t->nbytes, count[k]++;
    }
    for (int k = 1; ok && k <= nshard; k++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k, nshard);
        ok = exists_in(dir, name) && count[k] > 0 && (bytes[k] <= max || count[k] == 1);
        if (!ok) fprintf(stderr, "  shard %s: %d tensors, %llu bytes (max %llu)\n", name, count[k],
                         (unsigned long long)bytes[k], (unsigned long long)max);
    }
    free(bytes), free(count), free(text);
    cJSON_Delete(root);
    a3_st_free(set);
    return ok ? nshard : -1;
}

static int cancel_at_2(void *ctx, const char *stage, int64_t done, int64_t total) { return done >= 1; }

/* Sharded output (tiny shards force a split) == one file: same tensors,
 * same logits, for the reduced and the padded layout and every kind. */
static void test_sharded_equals_single(void)
{
    const char *kinds[] = {"mha", "bias"};
    const uint64_t tiny = 3000; /* bytes: a 32x32 F32 matrix is 4096, so big tensors get shards of their own */
    for (int kk = 0; kk < 2; kk++) {
        fixture f;
        if (fixture_up(&f, kinds[kk])) SKIP("fixture failed");
        a3_plan *p = full_plan(&f);
        if (!p) return;
        for (int l = 0; l < 2; l++) {
            for (int g = 0; g < p->dims.n_kv_heads; g++) a3_plan_qk(p, l)[g] = 4, a3_plan_ov(p, l)[g] = 3 + g % 4;
            p->mlp[l] = 21 + l;
        }
        for (int pad = 0; pad < 2; pad++) {
            char one[200], sh[200];
            snprintf(one, sizeof one, "%s/one%d", f.tmp, pad);
            snprintf(sh, sizeof sh, "%s/sh%d", f.tmp, pad);
            a3_model *m1 = apply_open(&f, p, one + strlen(f.tmp) + 1, pad, NULL);
            a3_model *m2 = apply_open_sharded(&f, p, sh + strlen(f.tmp) + 1, pad, tiny, NULL);
            CHECK(m1 && m2);
            /* Default shard size: one model.safetensors, no index. */
            CHECK(exists_in(one, "model.safetensors") && !exists_in(one, "model.safetensors.index.json"));
            CHECK(!exists_in(sh, "model.safetensors") && exists_in(sh, "model.safetensors.index.json"));
            int n = check_index(sh, tiny);
            CHECKF(n >= 10, "%s pad %d: %d shards", kinds[kk], pad, n);
            CHECKF(same_tensors(one, sh), "%s pad %d: sharded tensors differ from the single file", kinds[kk], pad);
            if (m1 && m2) {
                double d = logit_diff(m1, m2, f.win);
                CHECKF(d == 0, "%s pad %d: sharded logits differ by %.3g", kinds[kk], pad, d);
            }
            a3_model_free(m1), a3_model_free(m2);
        }
        /* A shard size that fits everything is one file again. */
        a3_model *m3 = apply_open_sharded(&f, p, "big", 0, 1u << 30, NULL);
        char big[200], one0[200];
        snprintf(big, sizeof big, "%s/big", f.tmp);
        snprintf(one0, sizeof one0, "%s/one0", f.tmp);
        CHECK(m3 && exists_in(big, "model.safetensors") && same_tensors(big, one0));
        a3_model_free(m3);
        /* Cancelled after the first layer, with shards already written:
         * neither the output nor a temporary is left. */
        char out[200];
        snprintf(out, sizeof out, "%s/cut", f.tmp);
        a3_apply_opts o = {.dtype = A3_DT_COUNT, .max_shard_bytes = tiny, .progress = cancel_at_2};
        a3_err err = {0};
        CHECK(a3_apply(f.m, f.c, p, &o, out, NULL, &err) == A3_ECANCELED);
        DIR *d = opendir(f.tmp);
        int left = 0;
        for (struct dirent *e; d && (e = readdir(d));) left += !strncmp(e->d_name, "cut", 3);
        if (d) closedir(d);
        CHECKF(left == 0, "%d entries named cut* left after a cancelled apply", left);
        a3_plan_free(p);
        fixture_down(&f);
    }
}

/* A cache opened lazily (as `a3 apply` does) with one byte of layer 1's GQ
 * matrix, or of its MLP_ORDER, flipped: it opens (only the curves are
 * read), and apply stops with the section's CRC error when it reaches
 * layer 1, writing nothing; a sound copy applies to the same model as the
 * in-memory cache. */
static void test_lazy_cache_corrupt_gram(void)
{
    fixture f;
    if (fixture_up(&f, "gqa")) SKIP("fixture failed");
    a3_plan *p = full_plan(&f);
    char path[200], out[200];
    snprintf(path, sizeof path, "%s/c.a3c", f.tmp);
    a3_err err = {0};
    a3_calib_meta meta = {.model_path = f.dir, .config = a3_model_config(f.m), .fingerprint = f.c->fingerprint,
                          .n_windows = NW, .seqlen = L, .seed = 1, .n_tokens = f.c->n_tokens, .mlp_full = 1,
                          .created = "2026-01-01T00:00:00Z"};
    f.c->meta_json = a3_calib_meta_json(&meta, &err);
    CHECKF(f.c->meta_json && a3_cache_save(f.c, path, &err) == 0, "save: %s", err.msg);
    a3_cache *good = NULL, *bad = NULL;
    CHECK(a3_cache_open(path, NULL, NULL, &good, &err) == 0);
    a3_apply_opts o = {.dtype = A3_DT_COUNT};
    snprintf(out, sizeof out, "%s/lazy-ok", f.tmp);
    CHECKF(p && good && a3_apply(f.m, good, p, &o, out, NULL, &err) == 0, "apply: %s", err.msg);
    snprintf(out, sizeof out, "%s/full-ok", f.tmp);
    CHECKF(p && a3_apply(f.m, f.c, p, &o, out, NULL, &err) == 0, "apply: %s", err.msg);
    char a[200], b[200];
    snprintf(a, sizeof a, "%s/lazy-ok", f.tmp), snprintf(b, sizeof b, "%s/full-ok", f.tmp);
    CHECK(same_tensors(a, b));
    /* Layer 1's GQ (a matrix) and MLP_ORDER (read by the MLP solver, since
     * it too stays on disk at open) damaged in turn. Where layer 1's section
     * s payload starts: header, metadata and its CRC, every section of layer
     * 0, layer 1's sections before s, then s's own 24-byte header (kinds in
     * order). */
    static const a3_cache_section hit[2] = {A3_SEC_GQ, A3_SEC_MLP_ORDER};
    a3_cache *eager = NULL;
    unsigned char *orig = NULL;
    for (int h = 0; h < 2; h++) {
        size_t n = 0, at = 24 + strlen(f.c->meta_json) + 4;
        for (int sct = 0; sct < A3_SEC_COUNT + (int)hit[h]; sct++) {
            size_t len = a3_cache_section_len(f.c, (a3_cache_section)(sct % A3_SEC_COUNT));
            size_t es = sct % A3_SEC_COUNT == A3_SEC_QK_ORDER || sct % A3_SEC_COUNT == A3_SEC_MLP_ORDER ? 4 : 8;
            if (len) at += 24 + len * es;
        }
        at += 24 + 1;
        unsigned char *bytes = tf_read_bytes(path, &n);
        CHECK(bytes && at < n);
        if (bytes && at < n) {
            if (!orig && (orig = malloc(n))) memcpy(orig, bytes, n);
            if (orig) memcpy(bytes, orig, n);
            bytes[at] ^= 0x01;
            CHECK(tf_write_bytes(path, bytes, n) == 0);
        }
        free(bytes);
        char want[64];
        snprintf(want, sizeof want, "c.a3c: section %s layer 1: CRC mismatch", a3_cache_section_name(hit[h]));
        CHECK(a3_cache_open(path, NULL, NULL, &bad, &err) == 0);
        snprintf(out, sizeof out, "%s/lazy-bad", f.tmp);
        int rc = p && bad ? a3_apply(f.m, bad, p, &o, out, NULL, &err) : -1;
        CHECKF(rc == A3_EFORMAT && strstr(err.msg, want), "rc %d '%s'", rc, err.msg);
        CHECK(access(out, F_OK) != 0);
        CHECK(a3_cache_load(path, &eager, &err) == A3_EFORMAT && strstr(err.msg, want + 7));
        a3_cache_free(bad), a3_cache_free(eager);
        bad = eager = NULL;
    }
    free(orig);
    a3_cache_free(good), a3_cache_free(bad), a3_cache_free(eager);
    a3_plan_free(p);
    fixture_down(&f);
}

int main(void)
{
    RUN(test_full_rank_mha);
    RUN(test_full_rank_gqa);
    RUN(test_full_rank_bias);
    RUN(test_qk_predicted_equals_measured);
    RUN(test_ov_predicted_equals_measured);
    RUN(test_mlp_predicted_equals_measured);
    RUN(test_padded_equals_compressed);
    RUN(test_methods);
    RUN(test_zero_widths);
    RUN(test_nonfinite_weight);
    RUN(test_sharded_equals_single);
    RUN(test_lazy_cache_corrupt_gram);
    return test_summary("apply");
}
