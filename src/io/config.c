/* config: parse a HF config.json into a3_config (see include/a3/config.h). */
#include "a3/config.h"
#include "a3/json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *ARCH_NAMES[A3_ARCH_COUNT] = {
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"};

const char *a3_arch_name(a3_arch a)
{
    return (a >= 0 && a < A3_ARCH_COUNT) ? ARCH_NAMES[a] : "?";
}

/* Integer field: required (def < 0 means required) or defaulted; must be
 * an integral number in [lo, hi]. */
static int get_int(const cJSON *o, const char *path, const char *key, long def,
                   long lo, long hi, int *out, a3_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < 0) return a3_err_set(err, A3_EFORMAT, "%s: %s: missing", path, key);
        *out = (int)def;
        return A3_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return a3_err_set(err, A3_EFORMAT, "%s: %s: not an integer", path, key);
    if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
        return a3_err_set(err, A3_EFORMAT, "%s: %s: %.0f out of range [%ld, %ld]", path,
                          key, v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return A3_OK;
}

static int get_num(const cJSON *o, const char *path, const char *key, double def,
                   double lo, double hi, double *out, a3_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return A3_OK;
    }
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return a3_err_set(err, A3_EFORMAT, "%s: %s: not a number in [%g, %g]", path, key, lo, hi);
    *out = v->valuedouble;
    return A3_OK;
}

static int get_bool(const cJSON *o, const char *key, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return def;
}

/* bos/eos may be an int, a list (first one is used) or null. */
static int get_token_id(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e9) return (int)v->valuedouble;
    return -1;
}

static int parse_arch(const cJSON *root, const char *path, a3_config *c, a3_err *err)
{
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    if (!cJSON_IsString(a0))
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: architectures: missing (expected one of LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)", path);
    for (int i = 0; i < A3_ARCH_COUNT; i++)
        if (strcmp(a0->valuestring, ARCH_NAMES[i]) == 0) {
            c->arch = (a3_arch)i;
            return A3_OK;
        }
    return a3_err_set(err, A3_EUNSUPPORTED,
                      "%s: architectures: '%.64s' is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
                      path, A3_ESC(a0->valuestring));
}

static int parse_rope_scaling(const cJSON *root, const char *path, a3_config *c, a3_err *err)
{
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) return A3_OK;
    if (!cJSON_IsObject(rs)) return a3_err_set(err, A3_EFORMAT, "%s: rope_scaling: not an object", path);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!t) t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(t)) return a3_err_set(err, A3_EFORMAT, "%s: rope_scaling.rope_type: missing", path);
    if (strcmp(t->valuestring, "default") == 0) return A3_OK;
    if (strcmp(t->valuestring, "llama3") != 0)
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: rope_scaling.rope_type: '%.32s' is not supported (only llama3)",
                          path, A3_ESC(t->valuestring));
    int rc;
    if ((rc = get_num(rs, path, "factor", -1, 1e-6, 1e6, &c->rs_factor, err)) ||
        (rc = get_num(rs, path, "low_freq_factor", -1, 1e-6, 1e6, &c->rs_low, err)) ||
        (rc = get_num(rs, path, "high_freq_factor", -1, 1e-6, 1e6, &c->rs_high, err)) ||
        (rc = get_num(rs, path, "original_max_position_embeddings", -1, 1, 1e9, &c->rs_orig_max, err)))
        return rc;
    if (c->rs_factor < 0 || c->rs_low < 0 || c->rs_high < 0 || c->rs_orig_max < 0)
        return a3_err_set(err, A3_EFORMAT, "%s: rope_scaling: llama3 needs factor, low_freq_factor, high_freq_factor, original_max_position_embeddings", path);
    if (!(c->rs_high > c->rs_low))
        return a3_err_set(err, A3_EFORMAT, "%s: rope_scaling: high_freq_factor must exceed low_freq_factor", path);
    c->rope_llama3 = 1;
    return A3_OK;
}

/* Fields that change the computation in ways a3 does not implement. */
static int refuse_unsupported(const cJSON *root, const char *path, a3_config *c, a3_err *err)
{
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: hidden_act: only silu is supported", path);
    if (get_bool(root, "mlp_bias", 0))
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: mlp_bias: MLP biases are not supported", path);
    if (c->arch != A3_ARCH_QWEN2 && get_bool(root, "attention_bias", 0))
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: attention_bias: attention biases are supported for Qwen2 only", path);
    if (get_bool(root, "use_qk_norm", 0) || cJSON_GetObjectItemCaseSensitive(root, "qk_layernorm"))
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: use_qk_norm: QK-norm is not supported", path);
    /* A sliding window changes nothing for sequences no longer than it
     * (every key is inside the window), so the model is accepted and only
     * longer sequences are refused (a3_config_check_seqlen). Mistral applies
     * sliding_window unless it is null; Qwen2 only with use_sliding_window. */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    int qwen_sw = c->arch == A3_ARCH_QWEN2 && get_bool(root, "use_sliding_window", 0);
    c->sliding_window = 0;
    if (qwen_sw && (!sw || cJSON_IsNull(sw)))
        return a3_err_set(err, A3_EFORMAT, "%s: sliding_window: missing although use_sliding_window is true", path);
    if ((c->arch == A3_ARCH_MISTRAL || qwen_sw) && sw && !cJSON_IsNull(sw)) {
        int rc = get_int(root, path, "sliding_window", -1, 1, INT32_MAX, &c->sliding_window, err);
        if (rc) return rc;
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pretraining_tp");
    if (cJSON_IsNumber(pt) && pt->valuedouble > 1)
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: pretraining_tp: values above 1 are not supported", path);
    return A3_OK;
}

static int parse_dims(const cJSON *root, const char *path, a3_config *c, a3_err *err)
{
    int rc;
    if ((rc = get_int(root, path, "hidden_size", -1, 1, 1 << 16, &c->d, err)) ||
        (rc = get_int(root, path, "num_hidden_layers", -1, 1, 1024, &c->n_layers, err)) ||
        (rc = get_int(root, path, "num_attention_heads", -1, 1, 1024, &c->n_heads, err)) ||
        (rc = get_int(root, path, "num_key_value_heads", c->n_heads, 1, 1024, &c->n_kv_heads, err)) ||
        (rc = get_int(root, path, "intermediate_size", -1, 1, 1 << 20, &c->d_ff, err)) ||
        (rc = get_int(root, path, "vocab_size", -1, 1, 1 << 22, &c->vocab, err)) ||
        (rc = get_int(root, path, "max_position_embeddings", 2048, 1, 1 << 24, &c->max_seq, err)))
        return rc;
    int hd_def = c->d / c->n_heads;
    if ((rc = get_int(root, path, "head_dim", hd_def > 0 ? hd_def : 1, 1, 1024, &c->head_dim, err))) return rc;
    if (c->n_heads % c->n_kv_heads)
        return a3_err_set(err, A3_EFORMAT, "%s: num_key_value_heads: %d does not divide num_attention_heads %d",
                          path, c->n_kv_heads, c->n_heads);
    if (c->head_dim % 2)
        return a3_err_set(err, A3_EFORMAT, "%s: head_dim: %d is odd (RoPE needs pairs)", path, c->head_dim);
    double eps, theta;
    if ((rc = get_num(root, path, "rms_norm_eps", 1e-6, 1e-12, 1.0, &eps, err)) ||
        (rc = get_num(root, path, "rope_theta", 10000.0, 1.0, 1e12, &theta, err)))
        return rc;
    c->rms_eps = (float)eps;
    c->rope_theta = theta;
    return A3_OK;
}

static int parse_root(const cJSON *root, const char *path, a3_config *c, a3_err *err)
{
    int rc;
    if (!cJSON_IsObject(root)) return a3_err_set(err, A3_EFORMAT, "%s: not a JSON object", path);
    if ((rc = parse_arch(root, path, c, err)) || (rc = parse_dims(root, path, c, err)) ||
        (rc = refuse_unsupported(root, path, c, err)) || (rc = parse_rope_scaling(root, path, c, err)))
        return rc;
    c->tie_embeddings = get_bool(root, "tie_word_embeddings", 0);
    c->qkv_bias = c->arch == A3_ARCH_QWEN2;
    c->bos = get_token_id(root, "bos_token_id");
    c->eos = get_token_id(root, "eos_token_id");
    c->dtype = A3_DT_F32;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (cJSON_IsString(dt)) {
        if (strcmp(dt->valuestring, "float16") == 0) c->dtype = A3_DT_F16;
        else if (strcmp(dt->valuestring, "bfloat16") == 0) c->dtype = A3_DT_BF16;
    }
    return A3_OK;
}

int a3_config_init_full(a3_config *c, a3_err *err)
{
    size_t nl = (size_t)c->n_layers, nkv = (size_t)c->n_kv_heads, half = (size_t)c->head_dim / 2;
    c->qk_rank = a3_malloc_array(nl * nkv, sizeof(int));
    c->ov_rank = a3_malloc_array(nl * nkv, sizeof(int));
    c->rope_idx = a3_malloc_array(nl * nkv * half, sizeof(int));
    c->mlp_width = a3_malloc_array(nl, sizeof(int));
    if (!c->qk_rank || !c->ov_rank || !c->rope_idx || !c->mlp_width) {
        a3_config_free(c);
        return a3_err_set(err, A3_ENOMEM, "config: out of memory");
    }
    for (size_t i = 0; i < nl * nkv; i++) {
        c->qk_rank[i] = c->head_dim;
        c->ov_rank[i] = c->head_dim;
        for (size_t p = 0; p < half; p++) c->rope_idx[i * half + p] = (int)p;
    }
    for (size_t l = 0; l < nl; l++) c->mlp_width[l] = c->d_ff;
    return A3_OK;
}

/* One integer array of n entries in [lo, hi] at a3.layers[l].<key>. */
static int a3_int_array(const cJSON *arr, const char *path, int l, const char *key, int n, int lo, int hi,
                        int *out, a3_err *err)
{
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n)
        return a3_err_set(err, A3_EFORMAT, "%s: a3.layers[%d].%s: expected an array of %d", path, l, key, n);
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(arr, i);
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
            return a3_err_set(err, A3_EFORMAT, "%s: a3.layers[%d].%s[%d]: expected an integer in [%d, %d]", path, l,
                              key, i, lo, hi);
        out[i] = (int)v->valuedouble;
    }
    return A3_OK;
}

/* Kept RoPE frequencies of one group: qk/2 distinct indices. */
static int a3_rope(const cJSON *rope, const char *path, int l, int g, const a3_config *c, int *idx, a3_err *err)
{
    int half = c->head_dim / 2, n = c->qk_rank[l * c->n_kv_heads + g] / 2, seen[1024] = {0};
    char key[32];
    snprintf(key, sizeof key, "rope[%d]", g);
    int rc = a3_int_array(cJSON_GetArrayItem(rope, g), path, l, key, n, 0, half - 1, idx, err);
    for (int p = 0; rc == A3_OK && p < n; p++)
        if (seen[idx[p]]++)
            return a3_err_set(err, A3_EFORMAT, "%s: a3.layers[%d].rope[%d]: frequency %d kept twice", path, l, g, idx[p]);
    for (int p = n; p < half; p++) idx[p] = -1;
    return rc;
}

static int a3_layer(const cJSON *L, const char *path, int l, a3_config *c, a3_err *err)
{
    int nkv = c->n_kv_heads, *qk = c->qk_rank + l * nkv, rc;
    const cJSON *mlp = cJSON_GetObjectItemCaseSensitive(L, "mlp");
    if ((rc = a3_int_array(cJSON_GetObjectItemCaseSensitive(L, "qk"), path, l, "qk", nkv, 0, c->head_dim, qk, err)) ||
        (rc = a3_int_array(cJSON_GetObjectItemCaseSensitive(L, "ov"), path, l, "ov", nkv, 0, c->head_dim,
                           c->ov_rank + l * nkv, err)))
        return rc;
    for (int g = 0; g < nkv; g++)
        if (qk[g] % 2)
            return a3_err_set(err, A3_EFORMAT, "%s: a3.layers[%d].qk[%d]: rank %d is odd (RoPE keeps pairs)", path, l, g, qk[g]);
    if (!cJSON_IsNumber(mlp) || mlp->valuedouble != floor(mlp->valuedouble) || mlp->valuedouble < 0 ||
        mlp->valuedouble > c->d_ff)
        return a3_err_set(err, A3_EFORMAT, "%s: a3.layers[%d].mlp: expected an integer in [0, %d]", path, l, c->d_ff);
    c->mlp_width[l] = (int)mlp->valuedouble;
    const cJSON *rope = cJSON_GetObjectItemCaseSensitive(L, "rope");
    if (!cJSON_IsArray(rope) || cJSON_GetArraySize(rope) != nkv)
        return a3_err_set(err, A3_EFORMAT, "%s: a3.layers[%d].rope: expected an array of %d", path, l, nkv);
    for (int g = 0; g < nkv && rc == A3_OK; g++)
        rc = a3_rope(rope, path, l, g, c, c->rope_idx + ((size_t)l * nkv + g) * (c->head_dim / 2), err);
    return rc;
}

/* The "a3" section of a compressed model (see include/a3/config.h). */
static int parse_a3(const cJSON *root, const char *path, a3_config *c, a3_err *err)
{
    const cJSON *a3 = cJSON_GetObjectItemCaseSensitive(root, "a3");
    if (!a3 || cJSON_IsNull(a3)) return A3_OK;
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(a3, "version");
    if (!cJSON_IsNumber(ver) || ver->valuedouble != 1)
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: a3.version: only version 1 is supported", path);
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(a3, "layers");
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) != c->n_layers)
        return a3_err_set(err, A3_EFORMAT, "%s: a3.layers: expected an array of %d layers", path, c->n_layers);
    for (int l = 0; l < c->n_layers; l++) {
        int rc = a3_layer(cJSON_GetArrayItem(layers, l), path, l, c, err);
        if (rc) return rc;
    }
    c->compressed = 1;
    return A3_OK;
}

int a3_config_load(const char *dir, a3_config *cfg, a3_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    char *path = a3_path_join(dir, "config.json");
    if (!path) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", dir);
    char *text = NULL;
    size_t len;
    int rc = a3_read_file(path, 16u << 20, &text, &len, err);
    if (rc) {
        free(path);
        return rc;
    }
    cJSON *root = NULL;
    rc = a3_json_parse(path, text, len, &root, err); /* strict: see a3/json.h */
    free(text);
    if (rc == A3_OK) rc = parse_root(root, path, cfg, err);
    if (rc == A3_OK) rc = a3_config_init_full(cfg, err);
    if (rc == A3_OK) rc = parse_a3(root, path, cfg, err);
    cJSON_Delete(root);
    free(path);
    if (rc) a3_config_free(cfg);
    return rc;
}

void a3_config_free(a3_config *c)
{
    if (!c) return;
    free(c->qk_rank);
    free(c->ov_rank);
    free(c->rope_idx);
    free(c->mlp_width);
    c->qk_rank = c->ov_rank = c->rope_idx = c->mlp_width = NULL;
}

int a3_config_check_seqlen(const a3_config *c, const char *dir, int seqlen, a3_err *err)
{
    if (c->sliding_window <= 0 || seqlen <= c->sliding_window) return A3_OK;
    return a3_err_set(err, A3_EUNSUPPORTED,
                      "%s/config.json: sliding_window: a %d-token sequence is longer than the model's window of %d "
                      "(a3 runs full attention, the same only up to the window; use %d or fewer)",
                      dir ? dir : ".", seqlen, c->sliding_window, c->sliding_window);
}

int a3_config_max_seqlen(const a3_config *c)
{
    return c->sliding_window > 0 && c->sliding_window < c->max_seq ? c->sliding_window : c->max_seq;
}
