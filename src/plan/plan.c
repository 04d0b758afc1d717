/* plan: the in-memory plan, its names, costs and predicted loss (see
 * include/a3/plan.h for the definitions every function here implements). */
#include "a3/plan.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/pred.h"
#include "a3/sha256.h"
#include "internal.h"

/* ---- names ---------------------------------------------------------------- */

static const char *const COMP_NAMES[A3_COMP_COUNT] = {"qk", "ov", "mlp"};
static const char *const QK_METHODS[A3_QK_METHOD_COUNT] = {"a3", "weight-norm", "greedy-exact"};
static const char *const OV_METHODS[A3_OV_METHOD_COUNT] = {"a3", "a3-csum", "svd"};
static const char *const MLP_METHODS[A3_MLP_METHOD_COUNT] = {"a3", "weight-norm", "a3-refit"};
static const char *const BUDGET_NAMES[A3_BUDGET_COUNT] = {"none", "params", "kv", "flops"};
static const char *const STRATEGY_NAMES[A3_STRATEGY_COUNT] = {"uniform", "greedy", "manual"};

static int find_name(const char *const *names, int n, const char *s)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(names[i], s) == 0) return i;
    return -1;
}

const char *a3_comp_name(a3_comp k) { return (unsigned)k < A3_COMP_COUNT ? COMP_NAMES[k] : "?"; }

/* The method table of a kind, and its length. */
static const char *const *methods_of(a3_comp k, int *n)
{
    static const int counts[A3_COMP_COUNT] = {A3_QK_METHOD_COUNT, A3_OV_METHOD_COUNT, A3_MLP_METHOD_COUNT};
    static const char *const *const tables[A3_COMP_COUNT] = {QK_METHODS, OV_METHODS, MLP_METHODS};
    if ((unsigned)k >= A3_COMP_COUNT) {
        *n = 0;
        return NULL;
    }
    *n = counts[k];
    return tables[k];
}

const char *a3_plan_method_name(a3_comp k, int m)
{
    int n;
    const char *const *t = methods_of(k, &n);
    return m >= 0 && m < n ? t[m] : "?";
}

int a3_plan_method_parse(a3_comp k, const char *s)
{
    int n;
    const char *const *t = methods_of(k, &n);
    return t ? find_name(t, n, s) : -1;
}

const char *a3_budget_name(a3_budget_kind b) { return (unsigned)b < A3_BUDGET_COUNT ? BUDGET_NAMES[b] : "?"; }
int a3_budget_parse(const char *s) { return find_name(BUDGET_NAMES, A3_BUDGET_COUNT, s); }
const char *a3_strategy_name(a3_strategy s) { return (unsigned)s < A3_STRATEGY_COUNT ? STRATEGY_NAMES[s] : "?"; }
int a3_strategy_parse(const char *s) { return find_name(STRATEGY_NAMES, A3_STRATEGY_COUNT, s); }

const char *a3_plan_kv_dtype_name(a3_dtype dt)
{
    return dt == A3_DT_F16 ? "f16" : dt == A3_DT_BF16 ? "bf16" : dt == A3_DT_F32 ? "f32" : "?";
}

int a3_plan_seq_set(a3_plan_seq *q, const char *const *texts, int n_texts, const char *ids, int samples,
                    int seqlen, int64_t seed, a3_err *err)
{
    a3_plan_seq s = {.on = 1, .samples = samples, .seqlen = seqlen, .seed = seed};
    if (!n_texts == !(ids && ids[0]))
        return a3_err_set(err, A3_EINVAL, "sequential: give calibration text files or an ids file (one of the two)");
    if (n_texts > A3_PLAN_SEQ_FILES)
        return a3_err_set(err, A3_EINVAL, "sequential: at most %d calibration text files", A3_PLAN_SEQ_FILES);
    if (samples < 0 || seqlen < 0 || seed < 0 || seed > ((int64_t)1 << 53) - 1)
        return a3_err_set(err, A3_EINVAL, "sequential: samples, seqlen and seed must be >= 0 (seed below 2^53)");
    for (int i = 0; i <= n_texts; i++) {
        const char *f = i < n_texts ? texts[i] : ids ? ids : "";
        char *dst = i < n_texts ? s.texts[i] : s.ids;
        if (strlen(f) >= A3_PLAN_SEQ_PATH)
            return a3_err_set(err, A3_EINVAL, "%.60s...: path longer than %d bytes", f, A3_PLAN_SEQ_PATH - 1);
        memcpy(dst, f, strlen(f) + 1);
    }
    s.n_texts = n_texts;
    *q = s;
    return A3_OK;
}

int a3_plan_seq_from_cache(a3_plan_seq *q, const a3_cache *c, a3_err *err)
{
    a3_cache_meta m;
    int rc = a3_cache_meta_parse(c, &m, err);
    if (rc) return rc;
    const char *texts[A3_PLAN_SEQ_FILES];
    int ids = m.n_texts == 1 && !m.texts[0].sha256[0];
    if (m.n_texts < 1 || m.n_texts > A3_PLAN_SEQ_FILES)
        rc = a3_err_set(err, A3_EINVAL, "the cache records %d calibration files (1 to %d usable)", m.n_texts,
                        A3_PLAN_SEQ_FILES);
    for (int i = 0; rc == A3_OK && i < m.n_texts; i++) texts[i] = m.texts[i].path;
    int samples = m.samples > 0 && m.samples <= 1 << 20 ? (int)m.samples : 0;
    int seqlen = m.seqlen > 0 && m.seqlen <= 1 << 20 ? (int)m.seqlen : 0;
    if (rc == A3_OK)
        rc = a3_plan_seq_set(q, ids ? NULL : texts, ids ? 0 : m.n_texts, ids ? texts[0] : NULL, samples, seqlen,
                             m.seed > 0 ? m.seed : 0, err);
    a3_cache_meta_clear(&m);
    return rc;
}

int a3_plan_kv_dtype_parse(const char *s, a3_dtype *out)
{
    static const a3_dtype dts[3] = {A3_DT_F16, A3_DT_BF16, A3_DT_F32};
    for (int i = 0; s && i < 3; i++)
        if (strcmp(s, a3_plan_kv_dtype_name(dts[i])) == 0) {
            *out = dts[i];
            return 0;
        }
    return -1;
}

/* ---- shared helpers ---------------------------------------------------------- */

int plan_full_width(const a3_plan_dims *m, a3_comp k) { return k == A3_COMP_MLP ? m->d_ff : m->head_dim; }
int plan_groups(const a3_plan_dims *m, a3_comp k) { return k == A3_COMP_MLP ? 1 : m->n_kv_heads; }

int *plan_width_ptr(const a3_plan *p, a3_comp k, int l, int g)
{
    if (k == A3_COMP_MLP) return p->mlp + l;
    return (k == A3_COMP_QK ? a3_plan_qk(p, l) : a3_plan_ov(p, l)) + g;
}

int plan_is_hex64(const char *s)
{
    size_t i = 0;
    for (; s[i] && i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return i == 64 && s[64] == '\0';
}

/* Parameters per unit of width of each kind (biases included). */
static int64_t unit_params(const a3_plan_dims *m, a3_comp k)
{
    int64_t d = m->d, g = m->n_heads / m->n_kv_heads, b = m->qkv_bias ? 1 : 0;
    if (k == A3_COMP_QK) return (d + b) * (g + 1);
    if (k == A3_COMP_OV) return d * (1 + g) + b;
    return 3 * d;
}

/* Bias elements per unit of width (FLOPs count them once, weights twice). */
static int64_t unit_bias(const a3_plan_dims *m, a3_comp k)
{
    int64_t g = m->n_heads / m->n_kv_heads;
    if (!m->qkv_bias || k == A3_COMP_MLP) return 0;
    return k == A3_COMP_QK ? g + 1 : 1;
}

int64_t plan_unit_cost(const a3_plan_dims *m, a3_comp k, a3_budget_kind b, int kv_bytes, int context)
{
    int64_t g = m->n_heads / m->n_kv_heads;
    switch (b) {
    case A3_BUDGET_PARAMS: return unit_params(m, k);
    case A3_BUDGET_KV: return k == A3_COMP_MLP ? 0 : kv_bytes;
    case A3_BUDGET_FLOPS: {
        int64_t bias = unit_bias(m, k), lin = 2 * (unit_params(m, k) - bias) + bias;
        return lin + (k == A3_COMP_MLP ? 0 : g * 2 * (int64_t)context);
    }
    default: return 0;
    }
}

/* ---- dims and lifetime ------------------------------------------------------ */

/* Full-width whole-model FLOPs in double, to refuse dims whose costs would
 * overflow int64 (the caps alone allow products near 2^70). */
double plan_cost_bound(const a3_plan_dims *m, int context)
{
    double f = 0;
    for (int k = 0; k < A3_COMP_COUNT; k++)
        f += (double)plan_unit_cost(m, (a3_comp)k, A3_BUDGET_FLOPS, 4, context) * plan_full_width(m, (a3_comp)k) *
             plan_groups(m, (a3_comp)k);
    return f * m->n_layers + 4.0 * m->vocab * m->d + 2.0 * m->n_layers * m->d;
}

static int dim_range(const char *src, const char *field, int v, int lo, int hi, a3_err *err)
{
    if (v >= lo && v <= hi) return A3_OK;
    return a3_err_set(err, A3_EINVAL, "%s: model.%s: %d out of range [%d, %d]", src, field, v, lo, hi);
}

int plan_check_dims(const a3_plan_dims *m, const char *src, a3_err *err)
{
    int rc = dim_range(src, "d", m->d, 1, A3_CACHE_MAX_DIM, err);
    if (!rc) rc = dim_range(src, "n_layers", m->n_layers, 1, A3_CACHE_MAX_COUNT, err);
    if (!rc) rc = dim_range(src, "n_heads", m->n_heads, 1, A3_CACHE_MAX_COUNT, err);
    if (!rc) rc = dim_range(src, "n_kv_heads", m->n_kv_heads, 1, A3_CACHE_MAX_COUNT, err);
    if (!rc) rc = dim_range(src, "head_dim", m->head_dim, 2, A3_CACHE_MAX_COUNT, err);
    if (!rc) rc = dim_range(src, "d_ff", m->d_ff, 1, A3_CACHE_MAX_DIM, err);
    if (!rc) rc = dim_range(src, "vocab", m->vocab, 0, A3_PLAN_MAX_VOCAB, err);
    if (rc) return rc;
    if (m->head_dim % 2)
        return a3_err_set(err, A3_EINVAL, "%s: model.head_dim: %d is odd (RoPE pairs need an even head dim)", src,
                          m->head_dim);
    if (m->n_heads % m->n_kv_heads)
        return a3_err_set(err, A3_EINVAL, "%s: model.n_heads: %d is not a multiple of n_kv_heads %d", src, m->n_heads,
                          m->n_kv_heads);
    if ((m->tie_embeddings != 0 && m->tie_embeddings != 1) || (m->qkv_bias != 0 && m->qkv_bias != 1))
        return a3_err_set(err, A3_EINVAL, "%s: model: tie_embeddings and qkv_bias must be 0 or 1", src);
    if (plan_cost_bound(m, 1) > 0x1p62)
        return a3_err_set(err, A3_EINVAL, "%s: model: dimensions too large (costs overflow 64 bits)", src);
    return A3_OK;
}

void a3_plan_free(a3_plan *p)
{
    if (!p) return;
    free(p->lock);
    free(p->qk);
    free(p->ov);
    free(p->mlp);
    free(p);
}

static void set_defaults(a3_plan *p)
{
    snprintf(p->tool, sizeof p->tool, "a3 %s", A3_VERSION);
    snprintf(p->source, sizeof p->source, "plan");
    p->context = 2048;
    p->kv_dtype = A3_DT_F16;
    p->alloc.strategy = A3_STRATEGY_MANUAL;
    p->alloc.multiple = 1;
    static const int min_rank[A3_COMP_COUNT] = {2, 1, 1};
    for (int k = 0; k < A3_COMP_COUNT; k++) {
        p->alloc.weight[k] = 1;
        p->alloc.keep[k] = 1;
        p->alloc.min_rank[k] = min_rank[k];
    }
}

int a3_plan_new(const a3_plan_dims *dims, a3_plan **out, a3_err *err)
{
    *out = NULL;
    int rc = plan_check_dims(dims, "plan", err);
    if (rc) return rc;
    a3_plan *p = calloc(1, sizeof *p);
    size_t nl = (size_t)dims->n_layers, ng = nl * (size_t)dims->n_kv_heads;
    if (!p) return a3_err_set(err, A3_ENOMEM, "plan: out of memory");
    p->dims = *dims;
    p->lock = calloc(nl, 1);
    p->qk = a3_malloc_array(ng, sizeof *p->qk);
    p->ov = a3_malloc_array(ng, sizeof *p->ov);
    p->mlp = a3_malloc_array(nl, sizeof *p->mlp);
    if (!p->lock || !p->qk || !p->ov || !p->mlp) {
        a3_plan_free(p);
        return a3_err_set(err, A3_ENOMEM, "plan: out of memory");
    }
    for (size_t i = 0; i < ng; i++) p->qk[i] = p->ov[i] = dims->head_dim;
    for (size_t l = 0; l < nl; l++) p->mlp[l] = dims->d_ff;
    set_defaults(p);
    *out = p;
    return A3_OK;
}

int a3_plan_copy(const a3_plan *p, a3_plan **out, a3_err *err)
{
    int rc = a3_plan_new(&p->dims, out, err);
    if (rc) return rc;
    a3_plan *q = *out;
    uint8_t *lock = q->lock;
    int *qk = q->qk, *ov = q->ov, *mlp = q->mlp;
    *q = *p; /* scalars and strings; the arrays are re-pointed below */
    size_t nl = (size_t)p->dims.n_layers, ng = nl * (size_t)p->dims.n_kv_heads;
    q->lock = memcpy(lock, p->lock, nl);
    q->qk = memcpy(qk, p->qk, ng * sizeof *qk);
    q->ov = memcpy(ov, p->ov, ng * sizeof *ov);
    q->mlp = memcpy(mlp, p->mlp, nl * sizeof *mlp);
    return A3_OK;
}

/* ---- from a cache or a config -------------------------------------------------- */

/* An optional boolean or integer flag of the metadata's model object. */
static int meta_flag(const cJSON *model, const char *key, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v) ? 1 : 0;
    if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) return (int)v->valuedouble;
    return def;
}

/* The fields the cache format treats as informative: absent is fine. */
static void meta_model_fields(const a3_cache *c, a3_plan_dims *m, char *arch, size_t arch_n)
{
    cJSON *root = c->meta_json ? cJSON_Parse(c->meta_json) : NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, "architecture");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (cJSON_IsString(a) && strlen(a->valuestring) < arch_n) snprintf(arch, arch_n, "%s", a->valuestring);
    if (cJSON_IsNumber(v) && v->valuedouble >= 1 && v->valuedouble <= A3_PLAN_MAX_VOCAB &&
        v->valuedouble == floor(v->valuedouble))
        m->vocab = (int)v->valuedouble;
    m->tie_embeddings = meta_flag(model, "tie_embeddings", 0);
    m->qkv_bias = meta_flag(model, "qkv_bias", strcmp(arch, "Qwen2ForCausalLM") == 0);
    cJSON_Delete(root);
}

int a3_plan_from_cache(const a3_cache *c, a3_plan **out, a3_err *err)
{
    *out = NULL;
    if (!plan_is_hex64(c->fingerprint))
        return a3_err_set(err, A3_EFORMAT, "cache: model fingerprint is not 64 lower-case hex digits");
    a3_plan_dims m = {.d = c->d, .n_layers = c->n_layers, .n_heads = c->n_heads, .n_kv_heads = c->n_kv_heads,
                      .head_dim = c->head_dim, .d_ff = c->d_ff};
    char arch[64] = "";
    meta_model_fields(c, &m, arch, sizeof arch);
    int rc = a3_plan_new(&m, out, err);
    if (rc) return rc;
    memcpy((*out)->architecture, arch, sizeof arch);
    memcpy((*out)->model_fingerprint, c->fingerprint, 65);
    a3_plan_cache_fingerprint(c, (*out)->cache_fingerprint);
    return A3_OK;
}

void a3_plan_default_methods(a3_plan *p, const a3_cache *c)
{
    p->qk_method = A3_QK_METHOD_A3, p->ov_method = A3_OV_METHOD_A3;
    p->mlp_method = c->mlp_full ? A3_MLP_METHOD_A3_REFIT : A3_MLP_METHOD_A3;
}

/* Name of the first dim that differs between a plan and the given values. */
static const char *dims_differ(const a3_plan_dims *m, int d, int nl, int nh, int nkv, int hd, int ff)
{
    if (m->d != d) return "d";
    if (m->n_layers != nl) return "n_layers";
    if (m->n_heads != nh) return "n_heads";
    if (m->n_kv_heads != nkv) return "n_kv_heads";
    if (m->head_dim != hd) return "head_dim";
    if (m->d_ff != ff) return "d_ff";
    return NULL;
}

static int config_differs(const a3_plan *p, const a3_config *cfg, a3_err *err)
{
    const char *f = dims_differ(&p->dims, cfg->d, cfg->n_layers, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim,
                                cfg->d_ff);
    if (!f) return A3_OK;
    return a3_err_set(err, A3_EMISMATCH, "%s: model.%s: the plan's model differs from the config's", p->source, f);
}

int a3_plan_set_config(a3_plan *p, const a3_config *cfg, a3_err *err)
{
    int rc = config_differs(p, cfg, err);
    if (rc) return rc;
    if (cfg->vocab < 1 || cfg->vocab > A3_PLAN_MAX_VOCAB)
        return a3_err_set(err, A3_EINVAL, "%s: model.vocab: %d out of range [1, %d]", p->source, cfg->vocab,
                          A3_PLAN_MAX_VOCAB);
    p->dims.vocab = cfg->vocab;
    p->dims.tie_embeddings = cfg->tie_embeddings ? 1 : 0;
    p->dims.qkv_bias = cfg->qkv_bias ? 1 : 0;
    snprintf(p->architecture, sizeof p->architecture, "%s", a3_arch_name(cfg->arch));
    return A3_OK;
}

int plan_match_cache(const a3_plan *p, const a3_cache *c, a3_err *err)
{
    const char *f = dims_differ(&p->dims, c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff);
    if (!f) return A3_OK;
    return a3_err_set(err, A3_EMISMATCH, "%s: model.%s: the plan's model differs from the cache's", p->source, f);
}

int a3_plan_to_config_shapes(const a3_plan *p, a3_config *cfg, a3_err *err)
{
    int rc = config_differs(p, cfg, err);
    if (rc) return rc;
    assert(cfg->qk_rank && cfg->ov_rank && cfg->rope_idx && cfg->mlp_width);
    size_t ng = (size_t)p->dims.n_layers * (size_t)p->dims.n_kv_heads, half = (size_t)p->dims.head_dim / 2;
    for (size_t i = 0; i < ng; i++) {
        cfg->qk_rank[i] = p->qk[i];
        cfg->ov_rank[i] = p->ov[i];
        for (size_t j = (size_t)p->qk[i] / 2; j < half; j++) cfg->rope_idx[i * half + j] = -1;
    }
    for (int l = 0; l < p->dims.n_layers; l++) cfg->mlp_width[l] = p->mlp[l];
    return A3_OK;
}

/* ---- cache fingerprint ----------------------------------------------------------- */

static void sha_le64(a3_sha256_ctx *s, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    a3_sha256_update(s, b, 8);
}

/* Doubles as little-endian bytes, so the fingerprint is host-independent
 * (on a little-endian host: the array as it is). */
static void sha_f64(a3_sha256_ctx *s, const double *v, size_t n)
{
    const uint16_t one = 1;
    if (*(const uint8_t *)&one == 1) {
        a3_sha256_update(s, v, n * sizeof *v);
        return;
    }
    uint8_t buf[512 * 8];
    for (size_t i = 0; i < n;) {
        size_t m = 0;
        for (; i < n && m < sizeof buf; i++, m += 8) {
            uint64_t u;
            memcpy(&u, &v[i], 8);
            for (int j = 0; j < 8; j++) buf[m + (size_t)j] = (uint8_t)(u >> (8 * j));
        }
        a3_sha256_update(s, buf, m);
    }
}

void a3_plan_cache_fingerprint(const a3_cache *c, char hex[65])
{
    static const a3_cache_section secs[3] = {A3_SEC_QK_LOSS, A3_SEC_OV_SV, A3_SEC_MLP_LOSS};
    a3_sha256_ctx s;
    a3_sha256_init(&s);
    size_t mlen = c->meta_json ? strlen(c->meta_json) : 0;
    sha_le64(&s, mlen);
    if (mlen) a3_sha256_update(&s, c->meta_json, mlen);
    for (int l = 0; l < c->n_layers; l++)
        for (int i = 0; i < 3; i++)
            sha_f64(&s, a3_cache_section_ptr(c, l, secs[i]), a3_cache_section_len(c, secs[i]));
    uint8_t d[A3_SHA256_BYTES];
    a3_sha256_final(&s, d);
    a3_sha256_hex(d, hex);
}

/* ---- costs ------------------------------------------------------------------------ */

static void costs_of(const a3_plan *p, int full, a3_cost_counts *o)
{
    const a3_plan_dims *m = &p->dims;
    int64_t T = p->context, g = m->n_heads / m->n_kv_heads, kvb = (int64_t)a3_dtype_size(p->kv_dtype);
    int64_t width[A3_COMP_COUNT] = {0, 0, 0}; /* summed over layers and groups */
    size_t ng = (size_t)m->n_layers * (size_t)m->n_kv_heads;
    for (size_t i = 0; i < ng; i++) {
        width[A3_COMP_QK] += full ? m->head_dim : p->qk[i];
        width[A3_COMP_OV] += full ? m->head_dim : p->ov[i];
    }
    for (int l = 0; l < m->n_layers; l++) width[A3_COMP_MLP] += full ? m->d_ff : p->mlp[l];
    memset(o, 0, sizeof *o);
    int64_t *kind[A3_COMP_COUNT] = {&o->qk, &o->ov, &o->mlp};
    for (int k = 0; k < A3_COMP_COUNT; k++) {
        int64_t b = unit_bias(m, (a3_comp)k);
        *kind[k] = width[k] * (unit_params(m, (a3_comp)k) - b);
        o->bias += width[k] * b;
    }
    o->compressible = o->qk + o->ov + o->mlp + o->bias;
    int64_t attn = width[A3_COMP_QK] + width[A3_COMP_OV];
    o->kv_bytes = attn * kvb;
    o->flops = 2 * (o->qk + o->ov + o->mlp) + o->bias + g * 2 * T * attn;
    int64_t d = m->d, V = m->vocab;
    o->total = V ? o->compressible + V * d * (m->tie_embeddings ? 1 : 2) + (2 * (int64_t)m->n_layers + 1) * d : -1;
    o->flops_total = V ? o->flops + 2 * V * d : -1;
}

void a3_plan_costs(const a3_plan *p, a3_cost_counts *out) { costs_of(p, 0, out); }
void a3_plan_full_costs(const a3_plan *p, a3_cost_counts *out) { costs_of(p, 1, out); }

int64_t a3_plan_layer_cost(const a3_plan *p, int l, unsigned ks, a3_budget_kind b)
{
    int64_t cost = 0;
    int kvb = (int)a3_dtype_size(p->kv_dtype);
    for (int k = 0; k < A3_COMP_COUNT; k++) {
        if (!(ks & (1u << k))) continue;
        int64_t sum = 0;
        for (int g = 0; g < plan_groups(&p->dims, (a3_comp)k); g++) sum += *plan_width_ptr(p, (a3_comp)k, l, g);
        cost += sum * plan_unit_cost(&p->dims, (a3_comp)k, b, kvb, p->context);
    }
    return cost;
}

int64_t a3_plan_budget_value(const a3_cost_counts *c, a3_budget_kind b)
{
    switch (b) {
    case A3_BUDGET_PARAMS: return c->compressible;
    case A3_BUDGET_KV: return c->kv_bytes;
    case A3_BUDGET_FLOPS: return c->flops;
    default: return 0;
    }
}

char *a3_plan_fmt_change(char *buf, size_t n, int64_t value, int64_t full, const char *what)
{
    double pct = full > 0 ? 100.0 * (double)(full - value) / (double)full : 0;
    double r = round(pct * 10) / 10 + 0.0; /* + 0.0: never print "-0.0" */
    if (r >= 0) snprintf(buf, n, "removes %.1f%% of %s (keeps %.1f%%)", r, what, 100 - r);
    else snprintf(buf, n, "adds %.1f%% of %s (keeps %.1f%%)", -r, what, 100 - r);
    return buf;
}

/* ---- predicted loss --------------------------------------------------------------- */

double plan_group_loss(const a3_cache *c, a3_comp k, int l, int g, int width)
{
    const a3_cache_layer *L = &c->layers[l];
    size_t hd = (size_t)c->head_dim;
    if (k == A3_COMP_QK) return L->qk_loss[(size_t)g * (hd / 2 + 1) + (size_t)width / 2];
    if (k == A3_COMP_MLP) return L->mlp_loss[width];
    const double *sv = L->ov_sv + (size_t)g * hd;
    double s = 0;
    for (size_t j = hd; j-- > (size_t)width;) s += sv[j] * sv[j]; /* small first: less round-off */
    return s;
}

int plan_method_of(const a3_plan *p, a3_comp k)
{
    return k == A3_COMP_QK ? (int)p->qk_method : k == A3_COMP_OV ? (int)p->ov_method : (int)p->mlp_method;
}

double plan_loss_of(const a3_plan *p, const a3_cache *c, const a3_pred *pr, a3_comp k, int l, int g, int width)
{
    if (pr) {
        double v = a3_pred_loss(pr, k, plan_method_of(p, k), l, g, width);
        if (!isnan(v)) return v;
    }
    return plan_group_loss(c, k, l, g, width);
}

/* rel(l, k) of the plan's widths. */
static double layer_rel(const a3_plan *p, const a3_cache *c, const a3_pred *pr, a3_comp k, int l)
{
    double lost = 0, total = 0;
    for (int g = 0; g < plan_groups(&p->dims, k); g++) {
        lost += plan_loss_of(p, c, pr, k, l, g, *plan_width_ptr(p, k, l, g));
        total += plan_loss_of(p, c, pr, k, l, g, 0);
    }
    return total > 0 ? lost / total : 0;
}

/* Whether the curves used for the plan's methods are exact: the sidecar
 * has them, the MLP ones from Ru. Without a sidecar: the cache's A3
 * curves are exact for QK, for OV only with MHA, never for the MLP. */
static int curves_exact(const a3_plan *p, const a3_pred *pr)
{
    if (!pr) return 0;
    return pr->mlp_exact && !isnan(a3_pred_loss(pr, A3_COMP_MLP, p->mlp_method, 0, 0, 0));
}

int a3_plan_predict_with(const a3_plan *p, const a3_cache *c, const a3_pred *pr, double *rel_out, a3_plan_loss *out,
                         a3_err *err)
{
    int rc = plan_match_cache(p, c, err);
    if (!rc) rc = plan_check(p, err);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    int probe = pr && a3_pred_has_probe(pr);
    double root = 0;
    for (int l = 0; l < p->dims.n_layers; l++)
        for (int k = 0; k < A3_COMP_COUNT; k++) {
            double r = layer_rel(p, c, pr, (a3_comp)k, l);
            if (rel_out) rel_out[(size_t)l * A3_COMP_COUNT + (size_t)k] = r;
            out->rel[k] += r;
            out->objective += p->alloc.weight[k] * r;
            if (probe) {
                double f = a3_pred_nll_single(pr, l, (a3_comp)k, r);
                out->dnll += f, root += sqrt(f);
            }
        }
    for (int k = 0; k < A3_COMP_COUNT; k++) out->rel[k] /= p->dims.n_layers;
    if (probe) out->dnll = a3_pred_nll_total(pr, out->dnll, root);
    out->exact = curves_exact(p, pr);
    out->nll_known = probe;
    return A3_OK;
}

int a3_plan_predict(const a3_plan *p, const a3_cache *c, double *rel_out, a3_plan_loss *out, a3_err *err)
{
    return a3_plan_predict_with(p, c, NULL, rel_out, out, err);
}

int a3_plan_update_loss_with(a3_plan *p, const a3_cache *c, const a3_pred *pr, a3_err *err)
{
    a3_plan_loss loss;
    int rc = a3_plan_predict_with(p, c, pr, NULL, &loss, err);
    if (rc) return rc;
    p->loss = loss;
    p->loss_known = 1;
    p->summary_stale = 0;
    return A3_OK;
}

int a3_plan_update_loss(a3_plan *p, const a3_cache *c, a3_err *err) { return a3_plan_update_loss_with(p, c, NULL, err); }

/* ---- option parsing shared by the CLI and the TUI ------------------------------------ */

/* A non-negative decimal integer at *s (advanced); -1 if none or huge. */
static long parse_index(const char **s)
{
    if (**s < '0' || **s > '9') return -1;
    errno = 0;
    char *end;
    long v = strtol(*s, &end, 10);
    if (errno || v > 1000000) return -1;
    *s = end;
    return v;
}

int a3_plan_lock_parse(a3_plan *p, const char *spec, a3_err *err)
{
    const char *s = spec;
    long a = parse_index(&s), b = a;
    if (a >= 0 && *s == '-') {
        s++;
        b = parse_index(&s);
    }
    unsigned bits = A3_LOCK_ALL;
    if (a >= 0 && b >= 0 && *s == ':') {
        int k = find_name(COMP_NAMES, A3_COMP_COUNT, s + 1);
        bits = k < 0 ? 0 : 1u << k;
        s = k < 0 ? s : s + strlen(s);
    }
    if (a < 0 || b < a || *s || !bits)
        return a3_err_set(err, A3_EINVAL, "lock '%s': expected L, L:qk, L:ov, L:mlp or a range A-B[:kind]", spec);
    if (b >= p->dims.n_layers)
        return a3_err_set(err, A3_EINVAL, "lock '%s': layer %ld out of range (the model has %d layers)", spec, b,
                          p->dims.n_layers);
    for (long l = a; l <= b; l++) p->lock[l] |= (uint8_t)bits;
    return A3_OK;
}

int a3_plan_budget_parse(const char *s, a3_budget_kind *kind, double *pct, a3_err *err)
{
    const char *eq = strchr(s, '='), *num = eq ? eq + 1 : s;
    char name[16] = "params"; /* a bare percentage is a params budget */
    size_t n = eq ? (size_t)(eq - s) : 0;
    if (eq && n >= sizeof name)
        return a3_err_set(err, A3_EINVAL, "budget '%s': expected KIND=P%% with KIND params, kv or flops", s);
    if (!eq && !((*s >= '0' && *s <= '9') || *s == '.'))
        return a3_err_set(err, A3_EINVAL, "budget '%s': expected KIND=P%% (params, kv or flops) or P%% (params)", s);
    if (eq) {
        memcpy(name, s, n);
        name[n] = '\0';
    }
    int k = a3_budget_parse(name);
    if (k <= A3_BUDGET_NONE)
        return a3_err_set(err, A3_EINVAL, "budget '%s': unknown kind '%s' (params, kv or flops)", s, name);
    char *end;
    errno = 0;
    double v = strtod(num, &end);
    if (*end == '%') end++;
    if (errno || end == num || *end || !(v >= 0 && v < 100))
        return a3_err_set(err, A3_EINVAL, "budget '%s': expected a percentage removed in [0, 100)", s);
    *kind = (a3_budget_kind)k;
    *pct = v;
    return A3_OK;
}
