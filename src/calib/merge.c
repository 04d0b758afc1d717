/* merge: combine caches calibrated on disjoint shards of the same windows.
 * The statistics are sums over tokens, so the merged statistics are the
 * sums of the shards'; the loss curves are then recomputed from them (the
 * weight statistics, WO_GRAM and DOWN_NORM, must agree exactly: same model). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "a3/calib.h"

static int same_dims(const a3_cache *a, const a3_cache *b)
{
    return a->d == b->d && a->n_layers == b->n_layers && a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->d_ff == b->d_ff && a->mlp_full == b->mlp_full;
}

static const a3_cache_section SUMS[] = {A3_SEC_GQ, A3_SEC_GK, A3_SEC_GV, A3_SEC_C, A3_SEC_D, A3_SEC_RU};
static const a3_cache_section WEIGHTS[] = {A3_SEC_WO_GRAM, A3_SEC_DOWN_NORM};

static int check_shard(const a3_cache *first, const a3_cache *s, const char *name, a3_err *err)
{
    if (!same_dims(first, s)) return a3_err_set(err, A3_EMISMATCH, "%s: dimensions differ from the first shard", name);
    if (strcmp(first->fingerprint, s->fingerprint))
        return a3_err_set(err, A3_EMISMATCH, "%s: calibrated on another model (fingerprint differs)", name);
    for (int l = 0; l < s->n_layers; l++)
        for (size_t k = 0; k < 2; k++) {
            size_t n = a3_cache_section_len(s, WEIGHTS[k]);
            if (memcmp(a3_cache_section_ptr(first, l, WEIGHTS[k]), a3_cache_section_ptr(s, l, WEIGHTS[k]), n * sizeof(double)))
                return a3_err_set(err, A3_EMISMATCH, "%s: layer %d: weight statistics differ (another model?)", name, l);
        }
    return A3_OK;
}

/* Metadata of the merged cache: the first shard's, with the totals. */
static char *merged_meta(const a3_cache *first, int64_t samples, int64_t tokens, int n, a3_err *err)
{
    cJSON *root = cJSON_Parse(first->meta_json ? first->meta_json : "");
    cJSON *cal = root ? cJSON_GetObjectItemCaseSensitive(root, "calibration") : NULL;
    if (!cJSON_IsObject(cal)) {
        cJSON_Delete(root);
        a3_err_set(err, A3_EFORMAT, "merge: first shard has no calibration metadata");
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(cal, "shard");
    cJSON_ReplaceItemInObjectCaseSensitive(cal, "samples", cJSON_CreateNumber((double)samples));
    cJSON_ReplaceItemInObjectCaseSensitive(cal, "n_tokens", cJSON_CreateNumber((double)tokens));
    cJSON_AddNumberToObject(cal, "merged_shards", n);
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    if (!s) a3_err_set(err, A3_ENOMEM, "merge: out of memory");
    return s;
}

static int64_t meta_samples(const a3_cache *c)
{
    cJSON *root = cJSON_Parse(c->meta_json ? c->meta_json : "");
    const cJSON *cal = root ? cJSON_GetObjectItemCaseSensitive(root, "calibration") : NULL;
    const cJSON *s = cal ? cJSON_GetObjectItemCaseSensitive(cal, "samples") : NULL;
    int64_t v = cJSON_IsNumber(s) ? (int64_t)s->valuedouble : 0;
    cJSON_Delete(root);
    return v;
}

int a3_cache_merge(a3_cache *const *shards, const char *const *names, int n, a3_cache **out, a3_err *err)
{
    *out = NULL;
    if (n < 1) return a3_err_set(err, A3_EINVAL, "merge: no shards");
    const a3_cache *f = shards[0];
    for (int i = 1; i < n; i++) {
        int rc = check_shard(f, shards[i], names[i], err);
        if (rc) return rc;
    }
    a3_cache *m = a3_cache_new(f->d, f->n_layers, f->n_heads, f->n_kv_heads, f->head_dim, f->d_ff, f->mlp_full);
    if (!m) return a3_err_set(err, A3_ENOMEM, "merge: out of memory");
    memcpy(m->fingerprint, f->fingerprint, sizeof m->fingerprint);
    int64_t samples = 0;
    for (int i = 0; i < n; i++) {
        m->n_tokens += shards[i]->n_tokens;
        samples += meta_samples(shards[i]);
        for (int l = 0; l < f->n_layers; l++)
            for (size_t k = 0; k < sizeof SUMS / sizeof SUMS[0]; k++) {
                size_t len = a3_cache_section_len(m, SUMS[k]);
                double *dst = a3_cache_section_ptr(m, l, SUMS[k]);
                const double *src = a3_cache_section_ptr(shards[i], l, SUMS[k]);
                for (size_t e = 0; dst && src && e < len; e++) dst[e] += src[e];
            }
    }
    int rc = A3_OK;
    for (int l = 0; rc == A3_OK && l < f->n_layers; l++) {
        for (size_t k = 0; k < 2; k++)
            memcpy(a3_cache_section_ptr(m, l, WEIGHTS[k]), a3_cache_section_ptr(f, l, WEIGHTS[k]),
                   a3_cache_section_len(m, WEIGHTS[k]) * sizeof(double));
        rc = a3_calib_curves_from_stats(m, l, err);
    }
    if (rc == A3_OK && !(m->meta_json = merged_meta(f, samples, m->n_tokens, n, err))) rc = err->code ? err->code : A3_ENOMEM;
    if (rc) {
        a3_cache_free(m);
        return rc;
    }
    *out = m;
    return A3_OK;
}
