/* pred_io: the prediction sidecar CACHE.pred (layout in include/a3/pred.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "a3/pred.h"

#define PRED_FILE_MAX ((size_t)1 << 30)

char *a3_pred_path(const char *cache_path)
{
    size_t n = strlen(cache_path);
    char *s = malloc(n + 6);
    if (s) memcpy(s, cache_path, n), memcpy(s + n, ".pred", 6);
    return s;
}

static size_t curve_len(const a3_pred *p, a3_comp k)
{
    if (k == A3_COMP_QK) return (size_t)p->n_layers * p->n_kv_heads * (p->head_dim / 2 + 1);
    if (k == A3_COMP_OV) return (size_t)p->n_layers * p->n_kv_heads * (p->head_dim + 1);
    return (size_t)p->n_layers * (p->d_ff + 1);
}

/* Curves of kind k (one per layer and KV group; the MLP's one per layer). */
static size_t curve_count(const a3_pred *p, a3_comp k)
{
    return (size_t)p->n_layers * (k == A3_COMP_MLP ? 1 : (size_t)p->n_kv_heads);
}

static int method_count(a3_comp k)
{
    return k == A3_COMP_QK ? A3_QK_METHOD_COUNT : k == A3_COMP_OV ? A3_OV_METHOD_COUNT : A3_MLP_METHOD_COUNT;
}

static double **curve_slot(a3_pred *p, a3_comp k, int m)
{
    return k == A3_COMP_QK ? &p->qk[m] : k == A3_COMP_OV ? &p->ov[m] : &p->mlp[m];
}

/* Numbers as "%.17g" raw text: this cJSON prints doubles with 15
 * significant digits, which does not round-trip. */
static cJSON *num17(double v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v + 0.0);
    return cJSON_CreateRaw(buf);
}

static cJSON *num_array(const double *v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *x = num17(v[i]);
        if (!x) {
            cJSON_Delete(a);
            return NULL;
        }
        cJSON_AddItemToArray(a, x);
    }
    return a;
}

static cJSON *to_json(const a3_pred *p)
{
    cJSON *r = cJSON_CreateObject(), *cache = cJSON_CreateObject(), *dims = cJSON_CreateObject();
    cJSON *curves = cJSON_CreateObject();
    if (!r || !cache || !dims || !curves) goto fail;
    cJSON_AddStringToObject(r, "format", "a3-pred");
    cJSON_AddNumberToObject(r, "version", A3_PRED_VERSION);
    cJSON_AddNumberToObject(r, "curves_version", A3_PRED_CURVES_VERSION);
    cJSON_AddStringToObject(r, "tool", "a3 " A3_VERSION);
    cJSON_AddStringToObject(cache, "fingerprint", p->cache_fingerprint);
    cJSON_AddItemToObject(r, "cache", cache), cache = NULL;
    cJSON_AddNumberToObject(dims, "n_layers", p->n_layers);
    cJSON_AddNumberToObject(dims, "n_kv_heads", p->n_kv_heads);
    cJSON_AddNumberToObject(dims, "head_dim", p->head_dim);
    cJSON_AddNumberToObject(dims, "d_ff", p->d_ff);
    cJSON_AddItemToObject(r, "dims", dims), dims = NULL;
    cJSON_AddBoolToObject(r, "mlp_exact", p->mlp_exact);
    for (int k = 0; k < A3_COMP_COUNT; k++) {
        cJSON *kind = cJSON_CreateObject();
        if (!kind) goto fail;
        cJSON_AddItemToObject(curves, a3_comp_name((a3_comp)k), kind);
        for (int m = 0; m < method_count((a3_comp)k); m++) {
            const double *v = *curve_slot((a3_pred *)p, (a3_comp)k, m);
            cJSON *a = v ? num_array(v, curve_len(p, (a3_comp)k)) : cJSON_CreateNull();
            if (!a) goto fail;
            cJSON_AddItemToObject(kind, a3_plan_method_name((a3_comp)k, m), a);
        }
    }
    cJSON_AddItemToObject(r, "curves", curves), curves = NULL;
    if (p->layers_done > 0) {
        cJSON *pr = cJSON_CreateObject();
        if (!pr) goto fail;
        cJSON_AddItemToObject(r, "probe", pr);
        cJSON_AddStringToObject(pr, "windows", p->probe_windows);
        cJSON_AddNumberToObject(pr, "tokens", (double)p->probe_tokens);
        cJSON_AddNumberToObject(pr, "samples", p->probe_samples);
        cJSON_AddNumberToObject(pr, "seqlen", p->probe_seqlen);
        cJSON_AddItemToObject(pr, "target", num17(p->probe_target));
        cJSON_AddItemToObject(pr, "base_nll", num17(p->base_nll));
        cJSON_AddNumberToObject(pr, "layers_done", p->layers_done);
        size_t np = (size_t)p->layers_done * A3_COMP_COUNT * A3_PROBE_LEVELS;
        cJSON *rel = num_array(p->probe_rel, np), *dn = num_array(p->probe_dnll, np);
        if (!rel || !dn) {
            cJSON_Delete(rel), cJSON_Delete(dn);
            goto fail;
        }
        cJSON_AddItemToObject(pr, "rel", rel);
        cJSON_AddItemToObject(pr, "dnll", dn);
        if (p->joint_known) {
            cJSON *j = cJSON_CreateObject();
            if (!j) goto fail;
            cJSON_AddItemToObject(pr, "joint", j);
            cJSON_AddItemToObject(j, "sum", num17(p->joint_sum));
            cJSON_AddItemToObject(j, "root", num17(p->joint_root));
            cJSON_AddItemToObject(j, "dnll", num17(p->joint_dnll));
        } else cJSON_AddNullToObject(pr, "joint");
    } else cJSON_AddNullToObject(r, "probe");
    return r;
fail:
    cJSON_Delete(r), cJSON_Delete(cache), cJSON_Delete(dims), cJSON_Delete(curves);
    return NULL;
}

int a3_pred_save(const a3_pred *p, const char *path, a3_err *err)
{
    cJSON *j = to_json(p);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!text) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    size_t n = strlen(text);
    text[n] = '\n'; /* replace the NUL: the file ends with a newline */
    int rc = a3_write_file_atomic(path, text, n + 1, err);
    free(text);
    return rc;
}

/* ---- load ------------------------------------------------------------------ */

static int bad(a3_err *err, const char *path, const char *what, const char *detail)
{
    return a3_err_set(err, A3_EFORMAT, "%s: %s: %s", path, what, detail);
}

static int get_int(const cJSON *o, const char *key, long lo, long hi, long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return -1;
    *out = (long)v->valuedouble;
    return 0;
}

/* Array of exactly n finite numbers into dst. */
static int get_array(const cJSON *a, size_t n, double *dst)
{
    if (!cJSON_IsArray(a) || (size_t)cJSON_GetArraySize(a) != n) return -1;
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a)
    {
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble)) return -1;
        dst[i++] = x->valuedouble;
    }
    return 0;
}

static int from_json(const cJSON *r, const char *path, const a3_cache *c, a3_pred *p, a3_err *err)
{
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(r, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "a3-pred"))
        return bad(err, path, "format", "not an a3 prediction file (\"format\": \"a3-pred\" expected)");
    long v, nl, nkv, hd, ff;
    if (get_int(r, "version", 0, 1 << 30, &v)) return bad(err, path, "version", "missing or not an integer");
    if (v != A3_PRED_VERSION)
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: version %ld not supported (this a3 reads %d)", path, v, A3_PRED_VERSION);
    long cv = 1; /* absent: written before the field existed */
    if (cJSON_GetObjectItemCaseSensitive(r, "curves_version") && get_int(r, "curves_version", 1, 1 << 30, &cv))
        return bad(err, path, "curves_version", "not a positive integer");
    if (cv != A3_PRED_CURVES_VERSION)
        return a3_err_set(err, A3_EMISMATCH, "%s: curves_version %ld: made by a%s a3 (this one computes version %d; "
                          "rerun 'a3 probe')", path, cv, cv < A3_PRED_CURVES_VERSION ? "n older" : " newer",
                          A3_PRED_CURVES_VERSION);
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(r, "dims");
    if (get_int(dims, "n_layers", 1, A3_CACHE_MAX_COUNT, &nl) || get_int(dims, "n_kv_heads", 1, A3_CACHE_MAX_COUNT, &nkv) ||
        get_int(dims, "head_dim", 2, A3_CACHE_MAX_COUNT, &hd) || get_int(dims, "d_ff", 1, A3_CACHE_MAX_DIM, &ff))
        return bad(err, path, "dims", "missing or out of range");
    if (nl != c->n_layers || nkv != c->n_kv_heads || hd != c->head_dim || ff != c->d_ff)
        return a3_err_set(err, A3_EMISMATCH, "%s: dims: made for another model than the cache's", path);
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "cache"), "fingerprint");
    if (!cJSON_IsString(fp) || strcmp(fp->valuestring, p->cache_fingerprint))
        return a3_err_set(err, A3_EMISMATCH, "%s: cache.fingerprint: made from another cache (rerun 'a3 probe')", path);
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(r, "mlp_exact");
    if (!cJSON_IsBool(ex) || cJSON_IsTrue(ex) != (p->mlp_exact != 0))
        return bad(err, path, "mlp_exact", "missing or disagrees with the cache (Ru present or not)");
    const cJSON *curves = cJSON_GetObjectItemCaseSensitive(r, "curves");
    for (int k = 0; k < A3_COMP_COUNT; k++) {
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(curves, a3_comp_name((a3_comp)k));
        for (int m = 0; m < method_count((a3_comp)k); m++) {
            double *dst = *curve_slot(p, (a3_comp)k, m);
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(kind, a3_plan_method_name((a3_comp)k, m));
            char where[64];
            snprintf(where, sizeof where, "curves.%s.%s", a3_comp_name((a3_comp)k), a3_plan_method_name((a3_comp)k, m));
            if (!dst) {
                if (!cJSON_IsNull(a)) return bad(err, path, where, "expected null (no Ru)");
                continue;
            }
            if (get_array(a, curve_len(p, (a3_comp)k), dst))
                return bad(err, path, where, "missing, wrong length or not finite numbers");
            char why[128];
            if (a3_curves_check(dst, curve_len(p, (a3_comp)k), curve_len(p, (a3_comp)k) / curve_count(p, (a3_comp)k),
                                1e-9, why, sizeof why))
                return bad(err, path, where, why);
        }
    }
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(r, "probe");
    if (cJSON_IsNull(pr)) return A3_OK;
    long done, samples, seqlen;
    const cJSON *win = cJSON_GetObjectItemCaseSensitive(pr, "windows");
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(pr, "tokens"), *keep = cJSON_GetObjectItemCaseSensitive(pr, "target");
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(pr, "base_nll");
    if (!cJSON_IsString(win) || strlen(win->valuestring) != 64 || !cJSON_IsNumber(tok) || tok->valuedouble < 1 ||
        !cJSON_IsNumber(keep) || !(keep->valuedouble > 0 && keep->valuedouble <= 1) || !cJSON_IsNumber(base) ||
        !isfinite(base->valuedouble) || get_int(pr, "layers_done", 1, nl, &done) ||
        get_int(pr, "samples", 1, 1 << 30, &samples) || get_int(pr, "seqlen", 1, 1 << 30, &seqlen))
        return bad(err, path, "probe", "malformed (windows, tokens, target, base_nll, layers_done, samples, seqlen)");
    memcpy(p->probe_windows, win->valuestring, 65);
    p->probe_tokens = (int64_t)tok->valuedouble;
    p->probe_target = keep->valuedouble, p->base_nll = base->valuedouble;
    p->layers_done = (int)done, p->probe_samples = (int)samples, p->probe_seqlen = (int)seqlen;
    size_t n = (size_t)done * A3_COMP_COUNT * A3_PROBE_LEVELS;
    if (get_array(cJSON_GetObjectItemCaseSensitive(pr, "rel"), n, p->probe_rel) ||
        get_array(cJSON_GetObjectItemCaseSensitive(pr, "dnll"), n, p->probe_dnll))
        return bad(err, path, "probe.rel/dnll", "missing, wrong length or not finite numbers");
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(pr, "joint");
    if (j && !cJSON_IsNull(j)) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "sum"), *jd = cJSON_GetObjectItemCaseSensitive(j, "dnll");
        const cJSON *jr = cJSON_GetObjectItemCaseSensitive(j, "root");
        if (!cJSON_IsNumber(js) || !cJSON_IsNumber(jd) || !cJSON_IsNumber(jr) || !isfinite(js->valuedouble) ||
            !isfinite(jd->valuedouble) || !isfinite(jr->valuedouble) || done != nl)
            return bad(err, path, "probe.joint", "expected {\"sum\": x, \"root\": x, \"dnll\": x} after all layers");
        p->joint_known = 1, p->joint_sum = js->valuedouble, p->joint_root = jr->valuedouble;
        p->joint_dnll = jd->valuedouble;
    }
    return A3_OK;
}

int a3_pred_load(const char *path, const a3_cache *c, a3_pred **out, a3_err *err)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = a3_read_file(path, PRED_FILE_MAX, &text, &len, err);
    if (rc) return rc;
    cJSON *r = cJSON_ParseWithLength(text, len);
    free(text);
    if (!r) return bad(err, path, "JSON", "not valid JSON (truncated?)");
    a3_pred *p = NULL;
    rc = a3_pred_new(c, &p, err);
    if (!rc) rc = from_json(r, path, c, p, err);
    cJSON_Delete(r);
    if (rc) {
        a3_pred_free(p);
        return rc;
    }
    *out = p;
    return A3_OK;
}

int a3_pred_load_for(const char *cache_path, const a3_cache *c, a3_pred **out, a3_err *err)
{
    *out = NULL;
    char *path = a3_pred_path(cache_path);
    if (!path) return a3_err_set(err, A3_ENOMEM, "out of memory");
    int rc = access(path, F_OK) == 0 ? a3_pred_load(path, c, out, err) : A3_OK;
    free(path);
    return rc;
}
