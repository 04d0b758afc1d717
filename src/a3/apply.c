/* apply: see include/a3/apply.h. */
#define _GNU_SOURCE
#include "a3/apply.h"
#include "a3/cleanup.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "a3/reduce.h"

typedef struct {
    a3_model *m;
    const a3_cache *c;
    const a3_plan *p;
    const a3_apply_opts *o;
    a3_dtype dt;
    a3_st_stream *w; /* every output tensor declared up front */
    cJSON *layers; /* the "a3" section's per-layer array */
    a3_apply_report *rep;
} apply_ctx;

/* ---- one layer -------------------------------------------------------- */

/* One layer of the input in float32: a3_layer_in (src/a3/layer.c). */
typedef a3_layer_in layer_in;
#define layer_in_free a3_layer_in_free
#define layer_in_load a3_layer_in_load

/* Output arrays of one layer; row counts depend on padded vs reduced. */
typedef struct {
    float *q, *k, *v, *o, *bq, *bk, *bv, *g, *u, *dn;
    int q_rows, k_rows, v_rows, o_cols, ff;
} layer_out;

static void layer_out_free(layer_out *lo)
{
    free(lo->q), free(lo->k), free(lo->v), free(lo->o), free(lo->bq), free(lo->bk), free(lo->bv);
    free(lo->g), free(lo->u), free(lo->dn);
    memset(lo, 0, sizeof *lo);
}

/* Output shapes of layer l, from the plan alone: what lets every header
 * be written before the first layer is solved. */
static void layer_out_dims(const apply_ctx *A, int l, layer_out *lo)
{
    const a3_plan *p = A->p;
    int nkv = p->dims.n_kv_heads, per = p->dims.n_heads / nkv, hd = p->dims.head_dim;
    memset(lo, 0, sizeof *lo);
    for (int g = 0; g < nkv; g++) {
        int rq = A->o->padded ? hd : a3_plan_qk(p, l)[g], rv = A->o->padded ? hd : a3_plan_ov(p, l)[g];
        lo->q_rows += per * rq, lo->k_rows += rq, lo->v_rows += rv, lo->o_cols += per * rv;
    }
    lo->ff = A->o->padded ? p->dims.d_ff : p->mlp[l];
}

static int layer_out_alloc(const apply_ctx *A, int l, layer_out *lo)
{
    size_t d = (size_t)A->p->dims.d;
    layer_out_dims(A, l, lo);
    lo->q = calloc((size_t)lo->q_rows * d + 1, 4), lo->k = calloc((size_t)lo->k_rows * d + 1, 4);
    lo->v = calloc((size_t)lo->v_rows * d + 1, 4), lo->o = calloc(d * lo->o_cols + 1, 4);
    lo->bq = calloc((size_t)lo->q_rows + 1, 4), lo->bk = calloc((size_t)lo->k_rows + 1, 4), lo->bv = calloc((size_t)lo->v_rows + 1, 4);
    lo->g = calloc((size_t)lo->ff * d + 1, 4), lo->u = calloc((size_t)lo->ff * d + 1, 4), lo->dn = calloc(d * lo->ff + 1, 4);
    return lo->q && lo->k && lo->v && lo->o && lo->bq && lo->bk && lo->bv && lo->g && lo->u && lo->dn ? 0 : -1;
}

/* Copy original row `src` of W (and bias) to row `dst` of out. */
static void copy_row(float *out, float *bout, int dst, const float *W, const float *b, int src, int d)
{
    memcpy(out + (size_t)dst * d, W + (size_t)src * d, (size_t)d * sizeof(float));
    if (b) bout[dst] = b[src];
}

/* QK of group g: kept pair j -> reduced dims (j, j + m) or, padded, the
 * original dims (idx[j], idx[j] + hd/2). */
static void qk_group_rows(const apply_ctx *A, const layer_in *li, layer_out *lo, int g, const int32_t *idx, int m,
                          int *q_at, int *k_at)
{
    const a3_layer_f32 *w = &li->w;
    int hd = w->head_dim, half = hd / 2, per = w->n_heads / w->n_kv_heads, pad = A->o->padded;
    int width = pad ? hd : 2 * m;
    for (int s = 0; s <= per; s++) { /* s < per: the group's query heads; s == per: its key head */
        int head = s < per ? g * per + s : g, *at = s < per ? q_at : k_at;
        float *out = s < per ? lo->q : lo->k, *bout = s < per ? lo->bq : lo->bk;
        const float *W = s < per ? w->wq : w->wk, *b = s < per ? w->bq : w->bk;
        for (int j = 0; j < m; j++)
            for (int hf = 0; hf < 2; hf++) {
                int dst = pad ? idx[j] + hf * half : j + hf * m;
                copy_row(out, bout, *at + dst, W, b, head * hd + idx[j] + hf * half, w->d);
            }
        *at += width;
    }
}

static void record_layer(apply_ctx *A, int l, const int32_t *idx_all, int half)
{
    const a3_plan *p = A->p;
    int nkv = p->dims.n_kv_heads;
    cJSON *L = cJSON_CreateObject(), *rope = cJSON_CreateArray();
    cJSON_AddItemToObject(L, "qk", cJSON_CreateIntArray(a3_plan_qk(p, l), nkv));
    for (int g = 0; g < nkv; g++)
        cJSON_AddItemToArray(rope, cJSON_CreateIntArray((const int *)idx_all + (size_t)g * half, a3_plan_qk(p, l)[g] / 2));
    cJSON_AddItemToObject(L, "rope", rope);
    cJSON_AddItemToObject(L, "ov", cJSON_CreateIntArray(a3_plan_ov(p, l), nkv));
    cJSON_AddNumberToObject(L, "mlp", p->mlp[l]);
    cJSON_AddItemToArray(A->layers, L);
}

static int attention(apply_ctx *A, int l, const layer_in *li, layer_out *lo, a3_err *err)
{
    const a3_layer_f32 *w = &li->w;
    int nkv = w->n_kv_heads, per = w->n_heads / nkv, hd = w->head_dim, half = hd / 2, d = w->d;
    int32_t *idx = calloc((size_t)nkv * half + 1, sizeof *idx);
    float *nv = malloc((size_t)hd * d * 4), *nb = malloc((size_t)hd * 4), *no = malloc((size_t)per * d * hd * 4);
    int rc = (!idx || !nv || !nb || !no) ? a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", l) : A3_OK;
    int q_at = 0, k_at = 0, v_at = 0, o_at = 0;
    for (int g = 0; rc == A3_OK && g < nkv; g++) {
        int rq = a3_plan_qk(A->p, l)[g], rv = a3_plan_ov(A->p, l)[g];
        double lq, lv, damp;
        const a3_layer_solver *S = A->o->solver;
        rc = S ? S->qk(S->ctx, l, g, rq, idx + (size_t)g * half, &lq, err)
               : a3_qk_select(A->c, l, g, rq, A->p->qk_method, w, idx + (size_t)g * half, &lq, err);
        if (rc == A3_OK)
            rc = S ? S->ov(S->ctx, l, g, rv, nv, w->bv ? nb : NULL, no, &lv, &damp, err)
                   : a3_ov_solve(A->c, l, g, rv, A->p->ov_method, w, nv, w->bv ? nb : NULL, no, &lv, &damp, err);
        if (rc) break;
        A->rep->qk_loss += lq, A->rep->ov_loss += lv;
        if (damp > 0) A->rep->n_damped++, A->rep->max_damping = damp > A->rep->max_damping ? damp : A->rep->max_damping;
        qk_group_rows(A, li, lo, g, idx + (size_t)g * half, rq / 2, &q_at, &k_at);
        memcpy(lo->v + (size_t)v_at * d, nv, (size_t)rv * d * 4);
        if (w->bv) memcpy(lo->bv + v_at, nb, (size_t)rv * 4);
        v_at += A->o->padded ? hd : rv;
        for (int j = 0; j < per; j++) { /* head j's o_proj columns */
            for (int e = 0; e < d; e++)
                memcpy(lo->o + (size_t)e * lo->o_cols + o_at, no + ((size_t)j * d + e) * rv, (size_t)rv * 4);
            o_at += A->o->padded ? hd : rv;
        }
    }
    if (rc == A3_OK && !A->o->padded) record_layer(A, l, idx, half);
    free(idx), free(nv), free(nb), free(no);
    return rc;
}

static int mlp(apply_ctx *A, int l, const layer_in *li, layer_out *lo, a3_err *err)
{
    const a3_layer_f32 *w = &li->w;
    int width = A->p->mlp[l], d = w->d, ff = w->d_ff, pad = A->o->padded;
    int32_t *keep = malloc((size_t)width * sizeof *keep + 1);
    float *refit = A->p->mlp_method == A3_MLP_METHOD_A3_REFIT ? malloc((size_t)d * width * 4 + 1) : NULL;
    int rc = !keep || (A->p->mlp_method == A3_MLP_METHOD_A3_REFIT && !refit) ? a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", l) : A3_OK;
    if (rc == A3_OK && A->o->solver) rc = A->o->solver->mlp(A->o->solver->ctx, l, width, keep, refit, err);
    else if (rc == A3_OK) rc = a3_mlp_select(A->c, l, width, A->p->mlp_method, w, keep, err);
    if (rc == A3_OK && refit && !A->o->solver) rc = a3_mlp_refit(A->c, l, keep, width, w, refit, err);
    for (int j = 0; rc == A3_OK && j < width; j++) {
        int dst = pad ? keep[j] : j, n = keep[j];
        memcpy(lo->g + (size_t)dst * d, w->wg + (size_t)n * d, (size_t)d * 4);
        memcpy(lo->u + (size_t)dst * d, w->wu + (size_t)n * d, (size_t)d * 4);
    }
    /* down_proj (d, ff): gather along each row, not down the columns (a
     * stride of d_ff floats per element is 10x slower at 70B widths). */
    for (int e = 0; rc == A3_OK && e < d; e++) {
        float *dst_row = lo->dn + (size_t)e * lo->ff;
        const float *src_row = refit ? refit + (size_t)e * width : w->wd + (size_t)e * ff;
        for (int j = 0; j < width; j++) dst_row[pad ? keep[j] : j] = refit ? src_row[j] : src_row[keep[j]];
    }
    free(keep), free(refit);
    return rc;
}

/* The tensors of layer l in file order, with their shapes: declared
 * (data NULL) before the output is begun, then written with the data.
 * The rank is explicit: a component planned to width 0 is an empty (d, 0)
 * matrix, not a d-vector. */
static int layer_tensors(apply_ctx *A, int l, const layer_out *lo, const float *an, const float *mn, a3_err *err)
{
    int64_t d = A->p->dims.d;
    const struct {
        const char *suffix;
        const float *data;
        int64_t r, c;
    } t[] = {
        {"input_layernorm.weight", an, d, -1},
        {"self_attn.q_proj.weight", lo->q, lo->q_rows, d},
        {"self_attn.k_proj.weight", lo->k, lo->k_rows, d},
        {"self_attn.v_proj.weight", lo->v, lo->v_rows, d},
        {"self_attn.o_proj.weight", lo->o, d, lo->o_cols},
        {"self_attn.q_proj.bias", lo->bq, lo->q_rows, -1},
        {"self_attn.k_proj.bias", lo->bk, lo->k_rows, -1},
        {"self_attn.v_proj.bias", lo->bv, lo->v_rows, -1},
        {"post_attention_layernorm.weight", mn, d, -1},
        {"mlp.gate_proj.weight", lo->g, lo->ff, d},
        {"mlp.up_proj.weight", lo->u, lo->ff, d},
        {"mlp.down_proj.weight", lo->dn, d, lo->ff},
    };
    int rc = A3_OK;
    for (size_t i = 0; rc == A3_OK && i < sizeof t / sizeof t[0]; i++) {
        if (i >= 5 && i <= 7 && !A->p->dims.qkv_bias) continue;
        char name[160];
        snprintf(name, sizeof name, "model.layers.%d.%s", l, t[i].suffix);
        int64_t shape[2] = {t[i].r, t[i].c};
        int nd = t[i].c >= 0 ? 2 : 1; /* c -1: a vector; 0: an empty (r, 0) matrix (width planned to 0) */
        rc = an ? a3_st_stream_write(A->w, name, nd, shape, t[i].data, err)
                : a3_st_stream_declare(A->w, name, A->dt, nd, shape, err);
    }
    return rc;
}

static int emit_layer(apply_ctx *A, int l, const layer_out *lo, a3_err *err)
{
    int64_t d = A->p->dims.d;
    float *an = malloc((size_t)d * 4), *mn = malloc((size_t)d * 4);
    int64_t dv[1] = {d};
    char n1[160], n2[160];
    snprintf(n1, sizeof n1, "model.layers.%d.input_layernorm.weight", l);
    snprintf(n2, sizeof n2, "model.layers.%d.post_attention_layernorm.weight", l);
    int rc = (!an || !mn) ? a3_err_set(err, A3_ENOMEM, "out of memory") : A3_OK;
    if (rc == A3_OK) rc = a3_st_load_f32(a3_model_tensors(A->m), n1, 1, dv, an, err);
    if (rc == A3_OK) rc = a3_st_load_f32(a3_model_tensors(A->m), n2, 1, dv, mn, err);
    if (rc == A3_OK) rc = layer_tensors(A, l, lo, an, mn, err);
    free(an), free(mn);
    return rc;
}

static int one_layer(apply_ctx *A, int l, a3_err *err)
{
    layer_in li;
    layer_out lo;
    /* The cache's matrices of this layer only, read (and CRC-checked) now
     * when the cache was opened lazily, given back below. */
    int rc = a3_cache_need(A->c, l, err);
    if (rc) return rc;
    rc = layer_in_load(A->m, l, &li, err);
    if (rc == A3_OK && layer_out_alloc(A, l, &lo)) rc = a3_err_set(err, A3_ENOMEM, "layer %d: out of memory", l);
    else if (rc == A3_OK) {
        if (A->o->solver) rc = A->o->solver->begin_layer(A->o->solver->ctx, l, &li.w, err);
        if (rc == A3_OK) rc = attention(A, l, &li, &lo, err);
        if (rc == A3_OK) rc = mlp(A, l, &li, &lo, err);
        if (rc == A3_OK) rc = emit_layer(A, l, &lo, err);
        layer_out_free(&lo);
    }
    layer_in_free(&li);
    a3_cache_release(A->c, l);
    return rc;
}

/* ---- model-level tensors, config, directory -------------------------- */

/* Model-level tensors (embedding, final norm, lm_head) are copied in
 * pieces of COPY_ELEMS elements: a 128k-token vocabulary's embedding is
 * 4 GB in float32 at d = 8192, more than a layer. */
#define COPY_ELEMS ((size_t)1 << 22)

static int copy_tensor(apply_ctx *A, const char *name, int declare, a3_err *err)
{
    const a3_st_tensor *t = a3_st_find(a3_model_tensors(A->m), name);
    if (!t) return a3_err_set(err, A3_EFORMAT, "%s: %s: missing", a3_model_dir(A->m), name);
    if (declare) return a3_st_stream_declare(A->w, name, A->dt, t->ndim, t->shape, err);
    size_t chunk = t->numel < COPY_ELEMS ? t->numel : COPY_ELEMS;
    float *buf = a3_malloc_array(chunk ? chunk : 1, sizeof(float));
    if (!buf) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", name);
    int rc = A3_OK;
    for (size_t at = 0; rc == A3_OK && at < t->numel; at += chunk) {
        size_t k = t->numel - at < chunk ? t->numel - at : chunk;
        rc = a3_st_load_f32_part(a3_model_tensors(A->m), name, at, k, buf, err);
        if (rc == A3_OK) rc = a3_st_stream_put(A->w, name, buf, k, err);
    }
    free(buf);
    return rc;
}

static const char *torch_dtype(a3_dtype dt)
{
    return dt == A3_DT_F16 ? "float16" : dt == A3_DT_BF16 ? "bfloat16" : "float32";
}

static int write_config(apply_ctx *A, const char *dir, a3_err *err)
{
    char *src = a3_path_join(a3_model_dir(A->m), "config.json"), *text = NULL;
    int rc = src ? a3_read_file(src, 16u << 20, &text, NULL, err) : a3_err_set(err, A3_ENOMEM, "out of memory");
    cJSON *root = rc ? NULL : cJSON_Parse(text);
    free(text), free(src);
    if (rc) return rc;
    if (!root) return a3_err_set(err, A3_EFORMAT, "%s: config.json: not valid JSON", a3_model_dir(A->m));
    cJSON_DeleteItemFromObjectCaseSensitive(root, "a3");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "torch_dtype");
    cJSON_AddStringToObject(root, "torch_dtype", torch_dtype(A->dt));
    if (!A->o->padded) {
        cJSON *a3 = cJSON_AddObjectToObject(root, "a3"), *meth = cJSON_CreateObject();
        cJSON_AddNumberToObject(a3, "version", 1);
        cJSON_AddStringToObject(meth, "qk", a3_plan_method_name(A3_COMP_QK, A->p->qk_method));
        cJSON_AddStringToObject(meth, "ov", a3_plan_method_name(A3_COMP_OV, A->p->ov_method));
        cJSON_AddStringToObject(meth, "mlp", a3_plan_method_name(A3_COMP_MLP, A->p->mlp_method));
        cJSON_AddItemToObject(a3, "methods", meth);
        cJSON_AddStringToObject(a3, "cache_fingerprint", A->c->fingerprint);
        cJSON_AddNumberToObject(a3, "head_dim", A->p->dims.head_dim);
        if (A->o->solver && A->o->solver->record_key && A->o->solver->record_json) {
            cJSON *rec = cJSON_Parse(A->o->solver->record_json);
            if (!rec) {
                cJSON_Delete(root);
                return a3_err_set(err, A3_EINVAL, "%s: solver record is not valid JSON", dir);
            }
            cJSON_AddItemToObject(a3, A->o->solver->record_key, rec);
        }
        cJSON_AddItemToObject(a3, "layers", A->layers);
        A->layers = NULL; /* now owned by root */
    }
    /* Marks the directory as a3's own, so that apply --force may replace it
     * (and nothing else); loaders ignore unknown config keys. */
    cJSON_DeleteItemFromObjectCaseSensitive(root, A3_APPLY_MARKER);
    cJSON_AddStringToObject(root, A3_APPLY_MARKER, "a3 apply");
    char *out = cJSON_Print(root), *path = a3_path_join(dir, "config.json");
    cJSON_Delete(root);
    rc = out && path ? a3_write_file_atomic(path, out, strlen(out), err) : a3_err_set(err, A3_ENOMEM, "out of memory");
    free(out), free(path);
    return rc;
}

static int copy_file_if_present(const char *from_dir, const char *to_dir, const char *name, a3_err *err)
{
    char *src = a3_path_join(from_dir, name), *dst = a3_path_join(to_dir, name), *data = NULL;
    size_t n;
    int rc = A3_OK;
    if (!src || !dst) rc = a3_err_set(err, A3_ENOMEM, "out of memory");
    else if (access(src, R_OK) == 0 && (rc = a3_read_file(src, (size_t)1 << 30, &data, &n, err)) == A3_OK)
        rc = a3_write_file_atomic(dst, data, n, err);
    free(src), free(dst), free(data);
    return rc;
}

/* Output files a3 writes: the fixed names, and shards
 * model-NNNNN-of-NNNNN.safetensors with their index. */
static int is_output_file(const char *name)
{
    const char *files[] = {"config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json",
                           "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "tokenizer.bin",
                           "generation_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (!strcmp(name, files[i])) return 1;
    unsigned k, n;
    int end = 0;
    return strlen(name) == 35 && sscanf(name, "model-%5u-of-%5u.safetensors%n", &k, &n, &end) == 2 && end == 35;
}

/* Remove the files a3 writes from dir, then dir itself (which stays when
 * anything else is in it). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!is_output_file(e->d_name)) continue;
        char *p = a3_path_join(dir, e->d_name);
        if (p) unlink(p);
        free(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

/* --force replaces only a directory apply wrote: config.json carries the
 * marker and every entry is a file apply writes. Anything else (a user's
 * directory, another model) is refused, so nothing of theirs is lost. */
static int check_replaceable(const char *out, a3_err *err)
{
    struct stat st;
    if (stat(out, &st) != 0 || !S_ISDIR(st.st_mode))
        return a3_err_set(err, A3_EINVAL, "%s: exists and is not a directory a3 apply wrote: not replaced", out);
    char *cfg = a3_path_join(out, "config.json"), *text = NULL;
    int rc = cfg ? a3_read_file(cfg, 16u << 20, &text, NULL, NULL) : A3_ENOMEM;
    cJSON *root = rc ? NULL : cJSON_Parse(text);
    /* outputs of a3 before the marker: compressed ones have the "a3" section */
    int marked = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, A3_APPLY_MARKER)) ||
                 cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(root, "a3"));
    cJSON_Delete(root);
    free(text), free(cfg);
    if (!marked)
        return a3_err_set(err, A3_EINVAL, "%s: not an a3 apply output (no \"%s\" in config.json): not replaced",
                          out, A3_APPLY_MARKER);
    DIR *d = opendir(out);
    if (!d) return a3_err_set(err, A3_EIO, "%s: cannot list: %s", out, strerror(errno));
    rc = A3_OK;
    for (struct dirent *e; rc == A3_OK && (e = readdir(d)) != NULL;)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && !is_output_file(e->d_name))
            rc = a3_err_set(err, A3_EINVAL, "%s: holds %s, which a3 apply does not write: not replaced", out,
                            A3_ESC(e->d_name));
    closedir(d);
    return rc;
}

static int check_inputs(const apply_ctx *A, a3_err *err)
{
    const a3_config *k = a3_model_config(A->m);
    const a3_plan_dims *d = &A->p->dims;
    if (k->compressed) return a3_err_set(err, A3_EUNSUPPORTED, "%s: apply needs the original model, not a compressed one", a3_model_dir(A->m));
    if (d->d != k->d || d->n_layers != k->n_layers || d->n_heads != k->n_heads || d->n_kv_heads != k->n_kv_heads ||
        d->head_dim != k->head_dim || d->d_ff != k->d_ff)
        return a3_err_set(err, A3_EMISMATCH, "%s: the plan's dimensions do not match the model", A->p->source);
    if (A->c->d != k->d || A->c->n_layers != k->n_layers || A->c->n_heads != k->n_heads ||
        A->c->n_kv_heads != k->n_kv_heads || A->c->head_dim != k->head_dim || A->c->d_ff != k->d_ff)
        return a3_err_set(err, A3_EMISMATCH, "the cache's dimensions do not match the model");
    if (A->p->mlp_method == A3_MLP_METHOD_A3_REFIT && !A->c->mlp_full && !A->o->solver)
        return a3_err_set(err, A3_EINVAL, "%s: method a3-refit needs a cache calibrated with --mlp-full", A->p->source);
    return A3_OK;
}

/* Every output tensor with its shape, in file order. */
static int declare_all(apply_ctx *A, a3_err *err)
{
    const a3_config *k = a3_model_config(A->m);
    int rc = copy_tensor(A, "model.embed_tokens.weight", 1, err);
    for (int l = 0; rc == A3_OK && l < k->n_layers; l++) {
        layer_out lo;
        layer_out_dims(A, l, &lo);
        rc = layer_tensors(A, l, &lo, NULL, NULL, err);
    }
    if (rc == A3_OK) rc = copy_tensor(A, "model.norm.weight", 1, err);
    if (rc == A3_OK && !k->tie_embeddings) rc = copy_tensor(A, "lm_head.weight", 1, err);
    return rc;
}

static int build(apply_ctx *A, const char *tmp, a3_err *err)
{
    const a3_config *k = a3_model_config(A->m);
    uint64_t max = A->o->max_shard_bytes ? A->o->max_shard_bytes : A3_APPLY_SHARD_BYTES;
    int rc = declare_all(A, err);
    if (rc == A3_OK) rc = a3_st_stream_begin_dir(A->w, tmp, max, err);
    if (rc == A3_OK) rc = copy_tensor(A, "model.embed_tokens.weight", 0, err);
    for (int l = 0; rc == A3_OK && l < k->n_layers; l++) {
        rc = one_layer(A, l, err);
        if (rc == A3_OK && A->o->progress && A->o->progress(A->o->ctx, "apply", l + 1, k->n_layers))
            rc = a3_err_set(err, A3_ECANCELED, "apply: cancelled");
    }
    if (rc == A3_OK) rc = copy_tensor(A, "model.norm.weight", 0, err);
    if (rc == A3_OK && !k->tie_embeddings) rc = copy_tensor(A, "lm_head.weight", 0, err);
    if (rc == A3_OK) rc = a3_st_stream_finish(A->w, err);
    if (rc == A3_OK) rc = write_config(A, tmp, err);
    const char *tok[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                         "generation_config.json"};
    for (size_t i = 0; rc == A3_OK && i < sizeof tok / sizeof tok[0]; i++)
        rc = copy_file_if_present(a3_model_dir(A->m), tmp, tok[i], err);
    return rc;
}

/* Move tmp into place; with force, an existing output is moved aside first
 * and removed only after the new one is in. */
static int publish(const char *tmp, const char *out, int force, a3_err *err)
{
    if (access(out, F_OK) != 0) {
        if (rename(tmp, out) == 0) return A3_OK;
        return a3_err_set(err, A3_EIO, "%s: rename failed: %s", out, strerror(errno));
    }
    if (!force) return a3_err_set(err, A3_EINVAL, "%s: already exists (use --force to replace it)", out);
    char *old = a3_tmp_path(out);
    if (!old) return a3_err_set(err, A3_ENOMEM, "out of memory");
    size_t n = strlen(old);
    char *aside = malloc(n + 5);
    int rc = A3_OK;
    if (!aside) rc = a3_err_set(err, A3_ENOMEM, "out of memory");
    else {
        memcpy(aside, old, n);
        memcpy(aside + n, ".old", 5);
        if (rename(out, aside) != 0) rc = a3_err_set(err, A3_EIO, "%s: cannot move aside: %s", out, strerror(errno));
        else if (rename(tmp, out) != 0) {
            rc = a3_err_set(err, A3_EIO, "%s: rename failed: %s", out, strerror(errno));
            rename(aside, out);
        } else remove_dir(aside);
    }
    free(old), free(aside);
    return rc;
}

int a3_apply(a3_model *m, const a3_cache *c, const a3_plan *p, const a3_apply_opts *o, const char *out_dir,
             a3_apply_report *rep, a3_err *err)
{
    a3_apply_report local;
    apply_ctx A = {.m = m, .c = c, .p = p, .o = o, .rep = rep ? rep : &local};
    memset(A.rep, 0, sizeof *A.rep);
    const a3_st_tensor *emb = a3_st_find(a3_model_tensors(m), "model.embed_tokens.weight");
    A.dt = o->dtype == A3_DT_F32 || o->dtype == A3_DT_F16 || o->dtype == A3_DT_BF16 ? o->dtype : emb->dtype;
    int rc = check_inputs(&A, err);
    if (rc) return rc;
    if (access(out_dir, F_OK) == 0 && !o->force)
        return a3_err_set(err, A3_EINVAL, "%s: already exists (use --force to replace it)", out_dir);
    if (access(out_dir, F_OK) == 0 && (rc = check_replaceable(out_dir, err))) return rc;
    char *tmp = a3_tmp_path(out_dir);
    A.w = a3_st_stream_new();
    A.layers = cJSON_CreateArray();
    if (!tmp || !A.w || !A.layers) rc = a3_err_set(err, A3_ENOMEM, "out of memory");
    else if (mkdir(tmp, 0755) != 0) rc = a3_err_set(err, A3_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    else {
        a3_cleanup_add(tmp); /* removed on SIGINT/SIGTERM (a3/cleanup.h) */
        rc = build(&A, tmp, err);
        if (rc == A3_OK) rc = publish(tmp, out_dir, o->force, err);
        a3_st_stream_free(A.w); /* first: on failure it removes its shards and temp file */
        A.w = NULL;
        if (rc) remove_dir(tmp);
        a3_cleanup_forget(tmp);
    }
    cJSON_Delete(A.layers);
    a3_st_stream_free(A.w);
    free(tmp);
    return rc;
}
