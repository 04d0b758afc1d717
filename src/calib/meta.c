/* meta: the cache's metadata JSON (layout in include/a3/cache.h). */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "a3/calib.h"
#include "a3/sha256.h"

static void add_model(cJSON *root, const a3_calib_meta *m)
{
    const a3_config *k = m->config;
    cJSON *mo = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(mo, "path", m->model_path);
    cJSON_AddStringToObject(mo, "fingerprint", m->fingerprint);
    cJSON_AddStringToObject(mo, "architecture", a3_arch_name(k->arch));
    int dims[] = {k->d, k->n_layers, k->n_heads, k->n_kv_heads, k->head_dim, k->d_ff};
    const char *dn[] = {"d", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff"};
    for (int i = 0; i < 6; i++) cJSON_AddNumberToObject(mo, dn[i], dims[i]);
    cJSON_AddNumberToObject(mo, "vocab", k->vocab);
    cJSON_AddBoolToObject(mo, "tie_embeddings", k->tie_embeddings);
    cJSON_AddBoolToObject(mo, "qkv_bias", k->qkv_bias);
    cJSON_AddStringToObject(mo, "rope_layout", "half");
}

static int add_calibration(cJSON *root, const a3_calib_meta *m, a3_err *err)
{
    cJSON *cal = cJSON_AddObjectToObject(root, "calibration"), *texts = cJSON_AddArrayToObject(cal, "texts");
    for (int i = 0; i < m->n_texts; i++) {
        char hex[65];
        int rc = m->text_sha256 ? A3_OK : a3_sha256_file(m->texts[i], hex, err);
        if (rc) return rc;
        if (m->text_sha256) snprintf(hex, sizeof hex, "%s", m->text_sha256[i]);
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "path", m->texts[i]);
        cJSON_AddStringToObject(t, "sha256", hex);
        cJSON_AddItemToArray(texts, t);
    }
    cJSON_AddNumberToObject(cal, "samples", m->n_windows);
    cJSON_AddNumberToObject(cal, "seqlen", m->seqlen);
    cJSON_AddNumberToObject(cal, "seed", (double)m->seed);
    cJSON_AddNumberToObject(cal, "n_tokens", (double)m->n_tokens);
    cJSON_AddBoolToObject(cal, "mlp_full", m->mlp_full);
    if (m->blas_kernel) cJSON_AddStringToObject(cal, "blas_kernel", m->blas_kernel);
    if (m->shard_count > 0) {
        cJSON *sh = cJSON_AddObjectToObject(cal, "shard");
        cJSON_AddNumberToObject(sh, "index", m->shard_index);
        cJSON_AddNumberToObject(sh, "count", m->shard_count);
    }
    return A3_OK;
}

char *a3_calib_meta_json(const a3_calib_meta *m, a3_err *err)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) {
        a3_err_set(err, A3_ENOMEM, "calibration: out of memory");
        return NULL;
    }
    cJSON_AddStringToObject(root, "format", "a3-cache");
    cJSON_AddNumberToObject(root, "version", A3_CACHE_VERSION);
    cJSON_AddStringToObject(root, "tool", "a3 " A3_VERSION);
    cJSON_AddStringToObject(root, "created", m->created);
    add_model(root, m);
    char *s = NULL;
    if (add_calibration(root, m, err) == A3_OK && !(s = cJSON_Print(root)))
        a3_err_set(err, A3_ENOMEM, "calibration: out of memory");
    cJSON_Delete(root);
    return s;
}
