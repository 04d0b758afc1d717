/* pred: the exact curve of every method equals the functional error
 * measured through `apply`, and the sidecar and the probe behave.
 *
 * Measurement: the model is calibrated (with Ru) on a few windows, every
 * component of every layer is cut (various widths) with one method, and the
 * plan is applied with the padded export (original shapes, so the
 * compressed weights act on the ORIGINAL model's activations). For each
 * layer the original model's float32 activations q, k, z, u on the
 * calibration tokens are captured, and in float64:
 *   QK group g: sum over token pairs (t, s) of the squared pre-RoPE score
 *     change q_t k_s - q~_t k~_s of the group's query heads, / N^2, with
 *     q~ = q on the dims whose padded q_proj row is kept (non-zero), else 0;
 *   OV group g: sum of |z_i W_o,i - z~_i W~_o,i|^2 over the group's heads,
 *     / N, with z~_i = z_i M^T and M (hd x hd) recovered from the padded
 *     v_proj by least squares (W~_v = M W_v, biases likewise);
 *   MLP: |u W_d^T - u W~_d^T|^2 / N with the padded down_proj.
 * The statistics were accumulated in float64 from the same float32
 * activations, so predicted and measured agree to round-off: checked to
 * 1e-6 of the component's total (its width-0 loss), the scale the planner
 * compares relative losses on. The float32 rounding of the solved weights
 * moves the measurement by ~1e-7 of the total at most. */
#include <cblas.h>
#include <float.h>
#include <lapacke.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "a3/apply.h"
#include "a3/cache.h"
#include "a3/calib.h"
#include "a3/eval.h"
#include "a3/llama2c.h"
#include "a3/model.h"
#include "a3/plan.h"
#include "a3/pred.h"
#include "a3/reduce.h"
#include "a3/synth.h"
#include "helpers/fixture.h"
#include "test.h"

typedef tfix fixture;

static void fixture_down(fixture *f) { tfix_down(f); }

/* With the exact curves in f->pr. */
static int with_pred(fixture *f, int rc)
{
    a3_err err = {0};
    if (rc || a3_pred_new(f->c, &f->pr, &err) || a3_pred_curves(f->m, f->c, f->pr, NULL, NULL, &err)) {
        if (!rc) fprintf(stderr, "  fixture: %s\n", err.msg);
        return -1;
    }
    return 0;
}

/* Calibrate dir's model on nw random windows (LCG seed 12345) of len tokens. */
static int fixture_calib(fixture *f, int nw, int len, int mlp_full)
{
    return with_pred(f, tfix_calib(f, nw, len, 12345, mlp_full));
}

/* Model seed 5, 4 windows of 24 tokens. */
static int fixture_synth(fixture *f, const char *kind, int mlp_full)
{
    return with_pred(f, tfix_synth(f, kind, 5, 4, 24, 12345, mlp_full));
}

/* ---- measurement ---------------------------------------------------------- */

typedef struct {
    float *q, *k, *v, *z, *u;
    size_t rows;
    int qw, kw, zw, ff;
} acts;

static int grab_qkv(void *ctx, int l, const float *q, const float *k, const float *v, size_t rows)
{
    acts *a = ctx;
    memcpy(a->q + a->rows * a->qw, q, rows * a->qw * 4);
    memcpy(a->k + a->rows * a->kw, k, rows * a->kw * 4);
    memcpy(a->v + a->rows * a->kw, v, rows * a->kw * 4);
    return 0;
}
static int grab_z(void *ctx, int l, const float *z, size_t rows)
{
    acts *a = ctx;
    memcpy(a->z + a->rows * a->zw, z, rows * a->zw * 4);
    return 0;
}
static int grab_u(void *ctx, int l, const float *u, size_t rows)
{
    acts *a = ctx;
    memcpy(a->u + a->rows * a->ff, u, rows * a->ff * 4);
    a->rows += rows;
    return 0;
}

/* Measured losses of one layer: qk[g], ov[g], mlp, from the original
 * activations A and the padded compressed weights cw. */
static void measure_layer(const fixture *f, const acts *A, const a3_layer_f32 *w, const a3_layer_f32 *cw, double *qk,
                          double *ov, double *mlp)
{
    const a3_config *k = a3_model_config(f->m);
    int hd = k->head_dim, per = k->n_heads / k->n_kv_heads, d = k->d, ff = k->d_ff, nh = k->n_heads;
    size_t n = A->rows;
    double N = (double)n;
    for (int g = 0; g < k->n_kv_heads; g++) {
        int drop[1024], nd = 0;
        for (int a = 0; a < hd; a++) {
            double s = 0;
            for (int e = 0; e < d; e++) s += fabs(cw->wk[((size_t)g * hd + a) * d + e]);
            if (s == 0) drop[nd++] = a;
        }
        double sum = 0;
        for (int i = g * per; i < (g + 1) * per; i++)
            for (size_t t = 0; t < n; t++)
                for (size_t s = 0; s < n; s++) {
                    double e = 0;
                    for (int x = 0; x < nd; x++)
                        e += (double)A->q[t * A->qw + i * hd + drop[x]] * A->k[s * A->kw + g * hd + drop[x]];
                    sum += e * e;
                }
        qk[g] = sum / (N * N);
        /* M (hd x hd): least squares W~v^T = [W_v | b_v]^T M^T over the d (+1) inputs */
        int cols = d + (w->bv ? 1 : 0);
        double *Av = malloc((size_t)cols * hd * 8), *Bv = malloc((size_t)cols * hd * 8), *Mt = NULL;
        for (int e = 0; e < cols; e++)
            for (int a = 0; a < hd; a++) {
                Av[(size_t)e * hd + a] = e < d ? w->wv[((size_t)g * hd + a) * d + e] : w->bv[g * hd + a];
                Bv[(size_t)e * hd + a] = e < d ? cw->wv[((size_t)g * hd + a) * d + e] : cw->bv[g * hd + a];
            }
        LAPACKE_dgels(LAPACK_ROW_MAJOR, 'N', cols, hd, hd, Av, hd, Bv, hd);
        Mt = Bv; /* first hd rows: M^T (hd x hd) */
        double so = 0;
        double *y = malloc((size_t)d * 8), *zt = malloc((size_t)hd * 8);
        for (int i = g * per; i < (g + 1) * per; i++)
            for (size_t t = 0; t < n; t++) {
                const float *z = A->z + t * A->zw + (size_t)i * hd;
                for (int b = 0; b < hd; b++) {
                    zt[b] = 0;
                    for (int a = 0; a < hd; a++) zt[b] += (double)z[a] * Mt[a * hd + b];
                }
                for (int e = 0; e < d; e++) {
                    double y0 = 0, y1 = 0;
                    for (int a = 0; a < hd; a++) {
                        y0 += (double)z[a] * w->wo[(size_t)e * nh * hd + (size_t)i * hd + a];
                        y1 += zt[a] * cw->wo[(size_t)e * nh * hd + (size_t)i * hd + a];
                    }
                    so += (y0 - y1) * (y0 - y1);
                }
            }
        ov[g] = so / N;
        free(Av), free(Bv), free(y), free(zt);
    }
    double sm = 0;
    for (size_t t = 0; t < n; t++)
        for (int e = 0; e < d; e++) {
            double dy = 0;
            for (int j = 0; j < ff; j++) dy += (double)A->u[t * ff + j] * ((double)w->wd[(size_t)e * ff + j] - cw->wd[(size_t)e * ff + j]);
            sm += dy * dy;
        }
    *mlp = sm / N;
}

/* Cut every component of every layer with method index mi (per kind,
 * modulo its count), apply padded, and compare every measured loss with
 * the curve of that method. */
static void check_methods(fixture *f, int mi, double tol)
{
    const a3_config *k = a3_model_config(f->m);
    int hd = k->head_dim, nkv = k->n_kv_heads, ff = k->d_ff;
    a3_plan *p = NULL;
    a3_err err = {0};
    CHECK(a3_plan_from_cache(f->c, &p, &err) == 0 && a3_plan_set_config(p, k, &err) == 0);
    if (!p) return;
    p->qk_method = (a3_qk_method)(mi % A3_QK_METHOD_COUNT);
    p->ov_method = (a3_ov_method)(mi % A3_OV_METHOD_COUNT);
    p->mlp_method = (a3_mlp_method)(mi % A3_MLP_METHOD_COUNT);
    for (int l = 0; l < k->n_layers; l++) {
        for (int g = 0; g < nkv; g++) {
            a3_plan_qk(p, l)[g] = 2 * ((l + g + mi) % (hd / 2));
            a3_plan_ov(p, l)[g] = (1 + l + 2 * g + mi) % hd;
        }
        p->mlp[l] = (ff * (1 + (l + mi) % 3)) / 4;
    }
    char out[4300];
    snprintf(out, sizeof out, "%s/padded%d", f->tmp, mi);
    a3_apply_opts o = {.padded = 1, .dtype = A3_DT_F32};
    a3_model *cm = NULL;
    CHECKF(a3_apply(f->m, f->c, p, &o, out, NULL, &err) == 0 && a3_model_open(out, &cm, &err) == 0, "%s", err.msg);
    if (!cm) {
        a3_plan_free(p);
        return;
    }
    size_t rows = (size_t)f->nw * f->len;
    int qw = k->n_heads * hd, kw = nkv * hd;
    acts A = {.q = malloc(rows * qw * 4), .k = malloc(rows * kw * 4), .v = malloc(rows * kw * 4),
              .z = malloc(rows * qw * 4), .u = malloc(rows * ff * 4), .qw = qw, .kw = kw, .zw = qw, .ff = ff};
    float *x = malloc(rows * k->d * 4);
    CHECK(a3_model_embed(f->m, f->win, rows, x, &err) == 0);
    double worst = 0;
    for (int l = 0; l < k->n_layers; l++) {
        A.rows = 0;
        a3_layer_hooks hk = {.ctx = &A, .on_qkv = grab_qkv, .on_z = grab_z, .on_u = grab_u};
        CHECK(a3_model_run_layer(f->m, l, x, f->nw, f->len, 0, &hk, &err) == 0);
        a3_layer_in wi, ci;
        CHECK(a3_layer_in_load(f->m, l, &wi, &err) == 0 && a3_layer_in_load(cm, l, &ci, &err) == 0);
        double qk[64], ov[64], mlp;
        measure_layer(f, &A, &wi.w, &ci.w, qk, ov, &mlp);
        for (int g = 0; g < nkv; g++) {
            double pq = a3_pred_loss(f->pr, A3_COMP_QK, p->qk_method, l, g, a3_plan_qk(p, l)[g]);
            double tq = a3_pred_loss(f->pr, A3_COMP_QK, p->qk_method, l, g, 0);
            double po = a3_pred_loss(f->pr, A3_COMP_OV, p->ov_method, l, g, a3_plan_ov(p, l)[g]);
            double to = a3_pred_loss(f->pr, A3_COMP_OV, p->ov_method, l, g, 0);
            CHECKF(fabs(pq - qk[g]) <= tol * tq, "qk %s layer %d group %d: predicted %.10g measured %.10g (total %.6g)",
                   a3_plan_method_name(A3_COMP_QK, p->qk_method), l, g, pq, qk[g], tq);
            CHECKF(fabs(po - ov[g]) <= tol * to, "ov %s layer %d group %d: predicted %.10g measured %.10g (total %.6g)",
                   a3_plan_method_name(A3_COMP_OV, p->ov_method), l, g, po, ov[g], to);
            worst = fmax(worst, fmax(fabs(pq - qk[g]) / tq, fabs(po - ov[g]) / to));
        }
        if (f->pr->mlp_exact) {
            double pm = a3_pred_loss(f->pr, A3_COMP_MLP, p->mlp_method, l, 0, p->mlp[l]);
            double tm = a3_pred_loss(f->pr, A3_COMP_MLP, p->mlp_method, l, 0, 0);
            CHECKF(fabs(pm - mlp) <= tol * tm, "mlp %s layer %d: predicted %.10g measured %.10g (total %.6g)",
                   a3_plan_method_name(A3_COMP_MLP, p->mlp_method), l, pm, mlp, tm);
            worst = fmax(worst, fabs(pm - mlp) / tm);
        }
        a3_layer_in_free(&wi), a3_layer_in_free(&ci);
    }
    if (getenv("A3_TEST_VERBOSE")) fprintf(stderr, "  methods %d: worst |pred - meas| / total %.3g\n", mi, worst);
    free(A.q), free(A.k), free(A.v), free(A.z), free(A.u), free(x);
    a3_model_free(cm);
    a3_plan_free(p);
}

static void all_methods(fixture *f)
{
    for (int mi = 0; mi < 3; mi++) check_methods(f, mi, 1e-6);
}

static void synth_kind(const char *kind)
{
    fixture f;
    if (fixture_synth(&f, kind, 1)) {
        fixture_down(&f);
        SKIP("fixture failed");
    }
    all_methods(&f);
    fixture_down(&f);
}

static void test_curves_mha(void) { synth_kind("mha"); }
static void test_curves_gqa(void) { synth_kind("gqa"); }
static void test_curves_bias(void) { synth_kind("bias"); }

static void test_curves_sample_model(void)
{
    fixture f;
    memset(&f, 0, sizeof f);
    snprintf(f.dir, sizeof f.dir, "samples/sample-model");
    if (access(f.dir, R_OK)) SKIP("samples/sample-model not found");
    if (!test_tmpdir(f.tmp, sizeof f.tmp) || fixture_calib(&f, 4, 48, 1)) {
        fixture_down(&f);
        SKIP("fixture failed");
    }
    all_methods(&f);
    fixture_down(&f);
}

static void test_curves_stories260K(void)
{
    const char *data = test_shared_data();
    if (!data) SKIP("../shared/data not found: exact curves on stories260K not checked");
    fixture f;
    memset(&f, 0, sizeof f);
    char bin[4200], tok[4200];
    if (!test_tmpdir(f.tmp, sizeof f.tmp)) SKIP("no temp dir");
    snprintf(bin, sizeof bin, "%s/models/stories260K/stories260K.bin", data);
    snprintf(tok, sizeof tok, "%s/models/stories260K/tok512.bin", data);
    snprintf(f.dir, sizeof f.dir, "%s/stories260K", f.tmp);
    a3_err err = {0};
    CHECKF(a3_llama2c_convert(bin, tok, f.dir, NULL, &err) == 0, "%s", err.msg);
    if (fixture_calib(&f, 4, 64, 1)) {
        fixture_down(&f);
        SKIP("fixture failed");
    }
    all_methods(&f);
    fixture_down(&f);
}

/* Without Ru the MLP curves are the diagonal estimate, marked as such, and
 * the refit has no curve. */
static void test_estimate_without_ru(void)
{
    fixture f;
    if (fixture_synth(&f, "mha", 0)) {
        fixture_down(&f);
        SKIP("fixture failed");
    }
    CHECK(f.pr->mlp_exact == 0);
    CHECK(isnan(a3_pred_loss(f.pr, A3_COMP_MLP, A3_MLP_METHOD_A3_REFIT, 0, 0, 10)));
    a3_plan *pl = NULL;
    a3_err err = {0};
    CHECK(a3_plan_from_cache(f.c, &pl, &err) == 0);
    if (pl) { /* no Ru: the default MLP method is plain a3 (the refit needs Ru) */
        pl->mlp_method = A3_MLP_METHOD_WEIGHT_NORM;
        a3_plan_default_methods(pl, f.c);
        CHECK(pl->qk_method == A3_QK_METHOD_A3 && pl->ov_method == A3_OV_METHOD_A3 &&
              pl->mlp_method == A3_MLP_METHOD_A3);
    }
    a3_plan_free(pl);
    const a3_cache_layer *L = &f.c->layers[1];
    double est = 0;
    for (int j = 10; j < 40; j++) est += L->mlp_score[j];
    CHECK_NEAR(a3_pred_loss(f.pr, A3_COMP_MLP, A3_MLP_METHOD_A3, 1, 0, 10), est, 1e-12 * est);
    fixture_down(&f);
}

/* A sidecar made with Ru loads with the cache opened lazily (Ru still on
 * disk): mlp_exact comes from the cache header. Regression: `a3 plan`
 * refused every --mlp-full sidecar ("mlp_exact disagrees"). */
static void test_pred_lazy_cache(void)
{
    fixture f;
    if (fixture_synth(&f, "mha", 1)) {
        fixture_down(&f);
        SKIP("fixture failed");
    }
    char cpath[4300], ppath[4400];
    snprintf(cpath, sizeof cpath, "%s/c.cache", f.tmp);
    snprintf(ppath, sizeof ppath, "%s.pred", cpath);
    a3_err err = {0};
    a3_cache *lazy = NULL;
    a3_pred *q = NULL;
    const char *text = "random-windows";
    const char *sha = "0000000000000000000000000000000000000000000000000000000000000000";
    a3_calib_meta meta = {.model_path = f.dir, .config = a3_model_config(f.m), .fingerprint = f.c->fingerprint,
                          .texts = &text, .text_sha256 = &sha, .n_texts = 1, .n_windows = f.nw, .seqlen = f.len,
                          .n_tokens = f.c->n_tokens, .mlp_full = 1, .created = "2026-01-01T00:00:00Z"};
    free(f.c->meta_json); /* saving needs metadata; the sidecar is made for the cache as saved */
    f.c->meta_json = a3_calib_meta_json(&meta, &err);
    a3_plan_cache_fingerprint(f.c, f.pr->cache_fingerprint);
    CHECKF(a3_cache_save(f.c, cpath, &err) == 0 && a3_pred_save(f.pr, ppath, &err) == 0 &&
               a3_cache_open(cpath, NULL, NULL, &lazy, &err) == 0,
           "%s", err.msg);
    CHECK(lazy && lazy->layers[0].ru == NULL); /* still on disk */
    CHECKF(lazy && a3_pred_load_for(cpath, lazy, &q, &err) == 0, "%s", err.msg);
    CHECK(q && q->mlp_exact && !isnan(a3_pred_loss(q, A3_COMP_MLP, A3_MLP_METHOD_A3_REFIT, 1, 0, 10)));
    a3_plan *pl = NULL;
    CHECK(lazy && a3_plan_from_cache(lazy, &pl, &err) == 0);
    if (pl) { /* with Ru (header mlp_full, Ru still on disk): the refit by default */
        a3_plan_default_methods(pl, lazy);
        CHECK(pl->qk_method == A3_QK_METHOD_A3 && pl->ov_method == A3_OV_METHOD_A3 &&
              pl->mlp_method == A3_MLP_METHOD_A3_REFIT);
    }
    a3_plan_free(pl);
    a3_pred_free(q);
    a3_cache_free(lazy);
    fixture_down(&f);
}

/* The probe's truncation of one component changes the NLL exactly as the
 * model applied with that component at that width does (a3_eval_nll, a
 * separate code path), on the same windows. float32 forward passes that
 * differ in summation order: 1e-4 nats absolute. Also: the sidecar saves
 * and loads to the same numbers, and a different cache is refused. */
static void test_probe_matches_apply(void)
{
    fixture f;
    if (fixture_synth(&f, "gqa", 1)) {
        fixture_down(&f);
        SKIP("fixture failed");
    }
    a3_err err = {0};
    a3_probe_opts po = {.target = 0.3};
    CHECKF(a3_probe(f.m, f.c, f.pr, f.win, f.nw, f.len, &po, NULL, NULL, &err) == 0, "%s", err.msg);
    CHECK(a3_pred_has_probe(f.pr));
    const a3_config *k = a3_model_config(f.m);
    a3_seqs sq = {.seq = malloc(f.nw * sizeof(int32_t *)), .len = malloc(f.nw * sizeof(int)), .n = f.nw};
    for (int s = 0; s < f.nw; s++) sq.seq[s] = f.win + (size_t)s * f.len, sq.len[s] = f.len;
    a3_eval_result base;
    CHECK(a3_eval_nll(f.m, &sq, &base, NULL, NULL, &err) == 0);
    CHECK_NEAR(base.mean_nll, f.pr->base_nll, 1e-4);
    int l = 1;
    for (int kind = 0; kind < A3_COMP_COUNT; kind++) {
        int w = a3_probe_width(f.c, f.pr, l, (a3_comp)kind, 0);
        a3_plan *p = NULL;
        CHECK(a3_plan_from_cache(f.c, &p, &err) == 0 && a3_plan_set_config(p, k, &err) == 0);
        for (int g = 0; g < k->n_kv_heads; g++) {
            if (kind == A3_COMP_QK) a3_plan_qk(p, l)[g] = w;
            if (kind == A3_COMP_OV) a3_plan_ov(p, l)[g] = w;
        }
        if (kind == A3_COMP_MLP) p->mlp[l] = w;
        char out[4300];
        snprintf(out, sizeof out, "%s/probe%d", f.tmp, kind);
        a3_apply_opts o = {.dtype = A3_DT_F32};
        a3_model *cm = NULL;
        a3_eval_result r;
        CHECKF(a3_apply(f.m, f.c, p, &o, out, NULL, &err) == 0 && a3_model_open(out, &cm, &err) == 0 &&
                   a3_eval_nll(cm, &sq, &r, NULL, NULL, &err) == 0,
               "%s", err.msg);
        double probe = f.pr->probe_dnll[((size_t)l * A3_COMP_COUNT + kind) * A3_PROBE_LEVELS];
        CHECKF(fabs((r.mean_nll - base.mean_nll) - probe) <= 1e-4, "%s width %d: probe %.6g, applied %.6g",
               a3_comp_name((a3_comp)kind), w, probe, r.mean_nll - base.mean_nll);
        CHECK(w > 0 && w < (kind == A3_COMP_MLP ? k->d_ff : k->head_dim));
        a3_model_free(cm);
        a3_plan_free(p);
    }
    free(sq.seq), free(sq.len);
    /* sidecar round trip */
    char path[4300];
    snprintf(path, sizeof path, "%s/c.pred", f.tmp);
    a3_pred *q = NULL;
    CHECKF(a3_pred_save(f.pr, path, &err) == 0 && a3_pred_load(path, f.c, &q, &err) == 0, "%s", err.msg);
    if (q) {
        CHECK(q->layers_done == f.pr->layers_done && q->base_nll == f.pr->base_nll);
        CHECK(memcmp(q->mlp[A3_MLP_METHOD_A3_REFIT], f.pr->mlp[A3_MLP_METHOD_A3_REFIT],
                     (size_t)k->n_layers * (k->d_ff + 1) * 8) == 0);
        CHECK(memcmp(q->probe_dnll, f.pr->probe_dnll, (size_t)k->n_layers * 3 * A3_PROBE_LEVELS * 8) == 0);
        CHECK_NEAR(a3_pred_nll_single(q, 1, A3_COMP_MLP, 0.1), a3_pred_nll_single(f.pr, 1, A3_COMP_MLP, 0.1), 0);
        CHECK(q->joint_known && q->joint_dnll == f.pr->joint_dnll && q->joint_sum == f.pr->joint_sum &&
              q->joint_root == f.pr->joint_root);
    }
    a3_pred_free(q), q = NULL;
    /* curves whose values are finite but make the planner's relative losses
     * not (a loss of -1e308 over a width-0 loss of 1e-307: NaN plans) are
     * refused at load, as the cache's are (a3_curves_check) */
    double *refit = f.pr->mlp[A3_MLP_METHOD_A3_REFIT], keep0 = refit[0], keep3 = refit[3];
    char bad_path[4400];
    snprintf(bad_path, sizeof bad_path, "%s.bad", path);
    refit[0] = 1e-307, refit[3] = -1e308;
    CHECKF(a3_pred_save(f.pr, bad_path, &err) == 0, "%s", err.msg);
    CHECKF(a3_pred_load(bad_path, f.c, &q, &err) == A3_EFORMAT && !q &&
               strstr(err.msg, "curves.mlp.a3-refit: element 3 is negative"),
           "%s", err.msg);
    refit[3] = 1.0; /* no negative value now: the bound on width 0 */
    CHECK(a3_pred_save(f.pr, bad_path, &err) == 0);
    CHECKF(a3_pred_load(bad_path, f.c, &q, &err) == A3_EFORMAT && strstr(err.msg, "times its value at width 0"),
           "%s", err.msg);
    refit[0] = keep0, refit[3] = keep3;
    /* a plan on the sidecar: exact curves, predicted NLL = sum of the
     * interpolated per-component changes, kept through the JSON file */
    a3_plan *pl = NULL;
    for (int l2 = 0; l2 < k->n_layers; l2++) /* random weights: NLL changes are noise; set clear ones */
        for (int kind = 0; kind < 3; kind++) {
            double *r = f.pr->probe_rel + (l2 * 3 + kind) * A3_PROBE_LEVELS;
            double *d = f.pr->probe_dnll + (l2 * 3 + kind) * A3_PROBE_LEVELS;
            r[0] = 0.3, r[1] = 1, d[0] = 0.03 * (l2 + 1) * (kind + 1), d[1] = 0.2 * (l2 + 1) * (kind + 1);
        }
    CHECK(a3_plan_from_cache(f.c, &pl, &err) == 0 && a3_plan_set_config(pl, k, &err) == 0);
    pl->budget = A3_BUDGET_PARAMS, pl->budget_pct = 30, pl->alloc.strategy = A3_STRATEGY_GREEDY;
    pl->mlp_method = A3_MLP_METHOD_A3_REFIT;
    CHECKF(a3_plan_allocate_with(pl, f.c, f.pr, &err) == 0, "%s", err.msg);
    double rel[64], sum = 0, root = 0;
    a3_plan_loss lo;
    CHECK(a3_plan_predict_with(pl, f.c, f.pr, rel, &lo, &err) == 0);
    for (int l2 = 0; l2 < k->n_layers; l2++)
        for (int kind = 0; kind < 3; kind++) {
            double fi = a3_pred_nll_single(f.pr, l2, (a3_comp)kind, rel[l2 * 3 + kind]);
            sum += fi, root += sqrt(fi);
        }
    CHECK(pl->loss.exact && pl->loss.nll_known && lo.nll_known);
    CHECK_NEAR(pl->loss.dnll, a3_pred_nll_total(f.pr, sum, root), 1e-12);
    CHECK(f.pr->joint_known);
    CHECK(sum > 0);
    char *txt = NULL;
    size_t tl;
    a3_plan *back = NULL;
    CHECK(a3_plan_to_json(pl, &txt, &tl, &err) == 0);
    if (getenv("A3_TEST_VERBOSE") && txt) fputs(txt, stderr);
    CHECK(txt && strstr(txt, "\"curves\": \"exact\"") &&
          strstr(txt, "\"predicted\": {\"nll_change\": 0."));
    CHECKF(txt && a3_plan_parse("p.json", txt, tl, &back, &err) == 0, "%s", err.msg);
    CHECK(back && back->loss.nll_known && fabs(back->loss.dnll - pl->loss.dnll) <= 1e-5 * pl->loss.dnll && back->loss.exact);
    a3_plan_free(back), back = NULL;
    char *bad = txt ? strstr(txt, "\"perplexity_ratio\": ") : NULL;
    if (bad) {
        bad[21] = '9'; /* 1.0x -> 9.0x: not exp(nll_change) */
        CHECK(a3_plan_parse("p.json", txt, tl, &back, &err) == A3_EFORMAT && strstr(err.msg, "perplexity_ratio"));
    }
    free(txt);
    /* without the sidecar: the MLP curves are called estimates */
    CHECK(a3_plan_update_loss(pl, f.c, &err) == 0 && !pl->loss.exact && !pl->loss.nll_known);
    a3_plan_free(pl);
    /* a sidecar of another calibration is refused */
    f.c->n_tokens += 1;
    free(f.c->meta_json), f.c->meta_json = strdup("{}");
    CHECK(a3_pred_load(path, f.c, &q, &err) == A3_EMISMATCH && strstr(err.msg, "another cache"));
    fixture_down(&f);
}

/* The NLL model: piecewise linear through (0,0) and the probe points,
 * clamped non-decreasing; greedy's slope is the steeper secant. */
static void test_pred_nll_interpolation(void)
{
    fixture f;
    if (fixture_synth(&f, "mha", 0)) {
        fixture_down(&f);
        SKIP("fixture failed");
    }
    a3_pred *p = f.pr;
    p->layers_done = p->n_layers;
    double *r = p->probe_rel + A3_PROBE_LEVELS * 1, *d = p->probe_dnll + A3_PROBE_LEVELS * 1; /* layer 0, OV */
    r[0] = 0.25, d[0] = 0.5, r[1] = 1.0, d[1] = 1.25;
    CHECK_NEAR(a3_pred_nll_single(p, 0, A3_COMP_OV, 0.125), 0.25, 1e-15);
    CHECK_NEAR(a3_pred_nll_single(p, 0, A3_COMP_OV, 0.625), 0.875, 1e-15);
    CHECK_NEAR(a3_pred_scale(p, 0, A3_COMP_OV), 2.0, 1e-15);
    /* past the last point (rel > 1): the removed component's change, by
     * hand 1.25, not the last slope's 1.25 + 1 * 1.0 */
    CHECK_NEAR(a3_pred_nll_single(p, 0, A3_COMP_OV, 2.0), 1.25, 1e-15);
    for (double x = 0, prev = 0; x <= 8; x += 0.0625) { /* non-decreasing, bounded by the removal */
        double y = a3_pred_nll_single(p, 0, A3_COMP_OV, x);
        CHECK(y >= prev && y <= 1.25);
        prev = y;
    }
    d[0] = -0.1, d[1] = 1.0; /* a noisy negative change counts as 0 */
    CHECK_NEAR(a3_pred_nll_single(p, 0, A3_COMP_OV, 0.25), 0, 1e-15);
    CHECK_NEAR(a3_pred_scale(p, 0, A3_COMP_OV), 1.0, 1e-15);
    d[0] = 0.8, d[1] = 0.4; /* non-decreasing */
    CHECK_NEAR(a3_pred_nll_single(p, 0, A3_COMP_OV, 1.0), 0.8, 1e-15);
    /* interaction: (1 - kappa) S + kappa R^2, kappa = (J - S_j) / (R_j^2 - S_j) */
    CHECK_NEAR(a3_pred_nll_total(p, 0.3, 1.0), 0.3, 0); /* no joint run */
    p->joint_known = 1, p->joint_sum = 1.0, p->joint_root = 3.0, p->joint_dnll = 2.0; /* kappa = 1/8 */
    CHECK_NEAR(a3_pred_kappa(p), 0.125, 1e-15);
    CHECK_NEAR(a3_pred_nll_total(p, 1.0, 3.0), 2.0, 1e-15); /* reproduces the joint run */
    CHECK_NEAR(a3_pred_nll_total(p, 0.5, 0.5 / sqrt(0.5)), 0.5, 1e-15); /* one component: no interaction */
    p->joint_dnll = 0.5; /* sub-additive noise: kappa clamped to 0 */
    CHECK_NEAR(a3_pred_nll_total(p, 1.0, 3.0), 1.0, 1e-15);
    fixture_down(&f);
}

/* The exact MLP curves (src/calib/pred.c computes them in the a3 order
 * with tiled transposes, dsyrk, dpotrf and dtrmm) against a straightforward
 * evaluation of their definitions (include/a3/pred.h) on a random model
 * with d_ff 150 (not a multiple of the 64-wide tiles), in the original
 * neuron indices:
 *   CUR (a3, weight-norm order o): sum_{i,j >= w} Ru[o_i,o_j] (W_d^T W_d)
 *     [o_i,o_j] / N by a double loop per width. Two summation orders of the
 *     same (ff - w)^2 terms: bound 4 ff^2 eps sum|terms| / N, computed.
 *   refit: (trace(W_d^T Ru W_d) - trace(B^T (Ru[S,S] + delta I)^-1 B)) / N,
 *     B = Ru[S,:] W_d, S = the a3 order's first w, one dposv per width,
 *     delta by the rule (undamped, else 1e-10, 1e-8... x the mean diagonal,
 *     tried on the whole Ru[P,P]). Both solve with Cholesky factors of the
 *     same leading blocks; the difference is round-off amplified by the
 *     condition of Ru[S,S]: 1e-12 of the total (measured 1.4e-14 with 256
 *     tokens, 8.6e-15 with 64, damped).
 * Full rank (256 tokens) and rank-deficient (64 tokens: damped). */
static void check_mlp_reference(int nw, int len, int d_ff)
{
    fixture f;
    memset(&f, 0, sizeof f);
    snprintf(f.tmp, sizeof f.tmp, "/tmp/a3test.XXXXXX");
    if (!mkdtemp(f.tmp)) SKIP("no temporary directory");
    snprintf(f.dir, sizeof f.dir, "%s/m", f.tmp);
    a3_synth_spec sp = tfix_spec("mha", 11);
    sp.d_ff = d_ff;
    a3_err err = {0};
    /* a synthetic model in a temporary directory: its calibration (with
     * the curves) failing is a failure here, not a missing resource */
    int ok = a3_synth_write(f.dir, &sp, &err) == 0 && fixture_calib(&f, nw, len, 1) == 0;
    CHECKF(ok, "d_ff %d: synthetic model or its calibration failed: %s", d_ff, err.msg);
    if (!ok) {
        fixture_down(&f);
        return;
    }
    const a3_cache *c = f.c;
    int ff = c->d_ff, d = c->d;
    double N = (double)c->n_tokens, worst_cur = 0, worst_refit = 0;
    double *G = malloc((size_t)ff * ff * 8), *R = malloc((size_t)ff * ff * 8), *B = malloc((size_t)ff * d * 8);
    double *X = malloc((size_t)ff * d * 8), *A = malloc((size_t)ff * ff * 8);
    int32_t *o = malloc((size_t)ff * sizeof *o);
    CHECK(G && R && B && X && A && o);
    for (int l = 0; G && R && B && X && A && o && l < c->n_layers; l++) {
        a3_layer_in li;
        CHECKF(a3_layer_in_load(f.m, l, &li, &err) == 0, "%s", err.msg);
        const float *wd = li.w.wd;
        const double *Ru = c->layers[l].ru;
        for (int n = 0; n < ff; n++)
            for (int k = 0; k < ff; k++) {
                double g = 0;
                for (int e = 0; e < d; e++) g += (double)wd[(size_t)e * ff + n] * wd[(size_t)e * ff + k];
                G[(size_t)n * ff + k] = g;
            }
        const int methods[2] = {A3_MLP_METHOD_A3, A3_MLP_METHOD_WEIGHT_NORM};
        for (int mi = 0; mi < 2; mi++) {
            CHECK(a3_mlp_order(c, l, (a3_mlp_method)methods[mi], &li.w, o, &err) == 0);
            for (int w = 0; w <= ff; w++) {
                double sum = 0, mag = 0;
                for (int i = w; i < ff; i++)
                    for (int j = w; j < ff; j++) {
                        double t = Ru[(size_t)o[i] * ff + o[j]] * G[(size_t)o[i] * ff + o[j]];
                        sum += t, mag += fabs(t);
                    }
                double got = a3_pred_loss(f.pr, A3_COMP_MLP, methods[mi], l, 0, w), want = fmax(sum / N, 0);
                double tol = 4.0 * ff * ff * DBL_EPSILON * mag / N + 1e-300;
                worst_cur = fmax(worst_cur, fabs(got - want) / tol);
                CHECKF(fabs(got - want) <= tol, "layer %d method %d width %d: %.17g, reference %.17g", l, mi, w, got, want);
            }
        }
        /* refit, in the a3 order */
        CHECK(a3_mlp_order(c, l, A3_MLP_METHOD_A3, &li.w, o, &err) == 0);
        double unit = a3_mlp_refit_damping(Ru, ff), delta = 0;
        int info = 1;
        for (double eps = 0; info != 0 && eps <= 1e-2; eps = eps == 0 ? 1e-10 : eps * 100) {
            delta = eps * unit;
            for (int i = 0; i < ff; i++)
                for (int j = 0; j < ff; j++) R[(size_t)i * ff + j] = Ru[(size_t)o[i] * ff + o[j]] + (i == j ? delta : 0);
            info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', ff, R, ff);
        }
        CHECK(info == 0);
        double total = 0; /* trace(W_d^T Ru W_d) / N */
        for (int n = 0; n < ff; n++)
            for (int k = 0; k < ff; k++) total += Ru[(size_t)n * ff + k] * G[(size_t)n * ff + k];
        total /= N;
        for (int i = 0; i < ff; i++) /* B = Ru[P,:] W_d^T-rows: B[i][e] = sum_n Ru[o_i][n] W_d[e][n] */
            for (int e = 0; e < d; e++) {
                double b = 0;
                for (int n = 0; n < ff; n++) b += Ru[(size_t)o[i] * ff + n] * wd[(size_t)e * ff + n];
                B[(size_t)i * d + e] = b;
            }
        for (int w = 1; w < ff; w++) {
            for (int i = 0; i < w; i++)
                for (int j = 0; j < w; j++) A[(size_t)i * w + j] = Ru[(size_t)o[i] * ff + o[j]] + (i == j ? delta : 0);
            memcpy(X, B, (size_t)w * d * 8);
            CHECK(LAPACKE_dposv(LAPACK_ROW_MAJOR, 'L', w, d, A, w, X, d) == 0);
            double ex = 0;
            for (size_t t = 0; t < (size_t)w * d; t++) ex += B[t] * X[t];
            double want = fmax(total - ex / N, 0), got = a3_pred_loss(f.pr, A3_COMP_MLP, A3_MLP_METHOD_A3_REFIT, l, 0, w);
            worst_refit = fmax(worst_refit, fabs(got - want) / total);
            CHECKF(fabs(got - want) <= 1e-12 * total, "layer %d refit width %d: %.17g, reference %.17g (total %.6g, delta %g)",
                   l, w, got, want, total, delta);
        }
        CHECK(a3_pred_loss(f.pr, A3_COMP_MLP, A3_MLP_METHOD_A3_REFIT, l, 0, 0) == a3_pred_loss(f.pr, A3_COMP_MLP, A3_MLP_METHOD_A3, l, 0, 0));
        CHECK(fabs(a3_pred_loss(f.pr, A3_COMP_MLP, A3_MLP_METHOD_A3, l, 0, 0) - total) <= 1e-12 * total);
        a3_layer_in_free(&li);
    }
    printf("  note: %d tokens: CUR within %.2g of its bound, refit within %.2g of the total\n", (int)N, worst_cur,
           worst_refit);
    free(G), free(R), free(B), free(X), free(A), free(o);
    fixture_down(&f);
}

static void test_mlp_curves_reference(void)
{
    check_mlp_reference(4, 64, 150); /* 256 tokens: Ru of full rank */
    check_mlp_reference(2, 32, 150); /* 64 tokens for 150 neurons: singular, damped */
    check_mlp_reference(4, 64, 24);  /* d_ff 24 below d 32 (the work space's shapes) */
}

/* The rule of `a3 calibrate`'s default probe. The estimate is recounted
 * here run by run as src/calib/probe.c makes them (clean pass, 6 cuts per
 * layer l run from l to the end, joint pass; one NLL evaluation per run)
 * and operation by operation for a layer; exact equality up to the
 * summation order (1e-12 relative). Then the two regimes: the sample model
 * at the demo's sampling gets the probe, a 7B shape at the default
 * sampling (128 x 2048 calibration, 8 x 2048 probe) does not, unless the
 * calibration is so long that the probe is a quarter of it. */
static double count_layer(const a3_config *k, int L)
{
    double f = 0, d = k->d;
    f += 2 * d * k->n_heads * k->head_dim;                 /* q_proj */
    f += 2 * 2 * d * k->n_kv_heads * k->head_dim;          /* k_proj, v_proj */
    f += 2 * (double)k->n_heads * k->head_dim * d;         /* o_proj */
    f += 3 * 2 * d * k->d_ff;                              /* gate, up, down */
    f += 2 * 2 * (double)k->n_heads * k->head_dim * L / 2; /* scores, values over L/2 keys */
    return f;
}

static void test_probe_default_rule(void)
{
    a3_config s = {.d = 128, .n_layers = 4, .n_heads = 8, .n_kv_heads = 4, .head_dim = 16, .d_ff = 352, .vocab = 512};
    a3_config b = {.d = 4096, .n_layers = 32, .n_heads = 32, .n_kv_heads = 32, .head_dim = 128, .d_ff = 11008,
                   .vocab = 32000};
    const a3_config *ks[2] = {&s, &b};
    for (int i = 0; i < 2; i++) {
        const a3_config *k = ks[i];
        int L = i ? 2048 : 256, nl = k->n_layers;
        double runs = nl, nlls = 2;
        for (int l = 0; l < nl; l++) runs += 6.0 * (nl - l), nlls += 6;
        runs += nl;
        double want = 100.0 * (runs * count_layer(k, L) + nlls * 2.0 * k->d * k->vocab);
        double got = a3_probe_cost_flops(k, 100, L);
        CHECKF(fabs(got - want) <= 1e-12 * want, "probe cost %.17g, recounted %.17g", got, want);
        double hd2 = (double)k->head_dim * k->head_dim;
        for (int full = 0; full < 2; full++) {
            double st = (2.0 * k->n_heads + 2.0 * k->n_kv_heads) * hd2 + (full ? (double)k->d_ff * k->d_ff : 2.0 * k->d_ff);
            want = 100.0 * nl * (count_layer(k, L) + st);
            got = a3_calib_cost_flops(k, 100, L, full);
            CHECKF(fabs(got - want) <= 1e-12 * want, "calibration cost %.17g, recounted %.17g", got, want);
        }
    }
    /* the demo: 32 x 256 calibration, 8 x 256 probe tokens (~7e10 flops) */
    CHECK(a3_probe_by_default(a3_probe_cost_flops(&s, 8 * 256, 256), a3_calib_cost_flops(&s, 32 * 256, 256, 0)));
    /* 7B: ~2e16 flops, 6x the default calibration's: not by default... */
    double p7 = a3_probe_cost_flops(&b, 8 * 2048, 2048), c7 = a3_calib_cost_flops(&b, 128 * 2048, 2048, 1);
    CHECKF(p7 > 1e16 && p7 > 4 * c7, "7B probe %.3g, calibration %.3g", p7, c7);
    CHECK(!a3_probe_by_default(p7, c7));
    /* ...but with 4096 calibration windows the probe is under a quarter */
    CHECK(a3_probe_by_default(p7, a3_calib_cost_flops(&b, 4096 * 2048, 2048, 1)));
    /* the two thresholds, at their edges */
    CHECK(a3_probe_by_default(A3_PROBE_AUTO_FLOPS, 0) && !a3_probe_by_default(1.01 * A3_PROBE_AUTO_FLOPS, 0));
    CHECK(a3_probe_by_default(4e12, 16e12) && !a3_probe_by_default(4e12, 15.9e12));
}

int main(void)
{
    RUN(test_curves_mha);
    RUN(test_curves_gqa);
    RUN(test_curves_bias);
    RUN(test_curves_sample_model);
    RUN(test_curves_stories260K);
    RUN(test_estimate_without_ru);
    RUN(test_pred_lazy_cache);
    RUN(test_probe_matches_apply);
    RUN(test_pred_nll_interpolation);
    RUN(test_probe_default_rule);
    RUN(test_mlp_curves_reference);
    return test_summary("pred");
}
