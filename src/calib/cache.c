/* cache: the calibration cache file (layout in include/a3/cache.h).
 *
 * Reading is defensive because a cache is a file from anywhere: the fixed
 * header and the metadata are checked first, the dims are capped, and the
 * bytes the dims imply are computed with overflow checks and compared with
 * the file size before any array is allocated, so a hostile file cannot make
 * the reader allocate more than the file holds. Every integer on disk is
 * little-endian, encoded and decoded byte by byte, so caches move between
 * hosts. */
#include "a3/cache.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "a3/crc32.h"

#define HEADER_BYTES 24 /* magic, version, S, J */
#define SEC_HEADER_BYTES 24 /* kind, layer, n, element type, CRC */
#define CHUNK_BYTES ((size_t)1 << 16) /* encode buffer for big-endian hosts */

static const char MAGIC[8] = "A3CACHE"; /* 7 letters and the NUL */

enum { ET_F64 = 0, ET_I32 = 1 };

static const char *const SEC_NAMES[A3_SEC_COUNT] = {
    "GQ", "GK", "GV", "C", "D", "RU", "QK_ORDER", "QK_SCORE", "QK_LOSS", "OV_SV", "MLP_ORDER", "MLP_SCORE", "MLP_LOSS",
    "WO_GRAM", "DOWN_NORM",
};

/* The dims every length derives from; shared by new, save and load. */
typedef struct {
    int d, n_layers, n_heads, n_kv_heads, head_dim, d_ff, mlp_full;
} dims;

/* What the metadata must say, beyond the dims. */
typedef struct {
    dims m;
    int64_t n_tokens;
    char fingerprint[65];
} meta_core;

/* ---- little-endian encoding ---------------------------------------------- */

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static int host_is_le(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Reverse each es-byte element: LE <-> host on a big-endian host. */
static void swap_elems(uint8_t *p, size_t n, size_t es)
{
    for (size_t i = 0; i < n; i++, p += es)
        for (size_t a = 0, b = es - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* ---- section geometry ----------------------------------------------------- */

static int sec_type(a3_cache_section s)
{
    return s == A3_SEC_QK_ORDER || s == A3_SEC_MLP_ORDER ? ET_I32 : ET_F64;
}

static size_t type_size(int t) { return t == ET_I32 ? 4 : 8; }

static int mul3(size_t a, size_t b, size_t c, size_t *out)
{
    size_t ab;
    return a3_mul_size(a, b, &ab) || a3_mul_size(ab, c, out) ? -1 : 0;
}

/* Element count of section s for dims m (0 for RU without mlp_full); -1 on
 * overflow (only possible for dims the caps reject, or on 32-bit hosts). */
static int dims_len(const dims *m, a3_cache_section s, size_t *out)
{
    size_t hd = (size_t)m->head_dim, half = hd / 2, h = (size_t)m->n_heads, kv = (size_t)m->n_kv_heads,
           ff = (size_t)m->d_ff;
    switch (s) {
    case A3_SEC_GQ:
    case A3_SEC_C: return mul3(h, hd, hd, out);
    case A3_SEC_GK:
    case A3_SEC_GV: return mul3(kv, hd, hd, out);
    case A3_SEC_WO_GRAM: return mul3(kv, hd, hd, out);
    case A3_SEC_D:
    case A3_SEC_DOWN_NORM:
    case A3_SEC_MLP_ORDER:
    case A3_SEC_MLP_SCORE: *out = ff; return 0;
    case A3_SEC_RU: return mul3(ff, ff, m->mlp_full ? 1 : 0, out);
    case A3_SEC_QK_ORDER:
    case A3_SEC_QK_SCORE: return mul3(kv, half, 1, out);
    case A3_SEC_QK_LOSS: return mul3(kv, half + 1, 1, out);
    case A3_SEC_OV_SV: return mul3(kv, hd, 1, out);
    case A3_SEC_MLP_LOSS: *out = ff + 1; return 0;
    default: return -1;
    }
}

/* Bytes of one section including its header (0 when absent). */
static int dims_sec_bytes(const dims *m, a3_cache_section s, size_t *out)
{
    size_t n, b;
    if (dims_len(m, s, &n) || a3_mul_size(n, type_size(sec_type(s)), &b)) return -1;
    if (n == 0) {
        *out = 0;
        return 0;
    }
    return a3_add_size(b, SEC_HEADER_BYTES, out);
}

/* Whole-file size for these dims and a metadata of meta_len bytes. */
static int dims_file_bytes(const dims *m, size_t meta_len, size_t *out)
{
    size_t per_layer = 0, total, b;
    for (int s = 0; s < A3_SEC_COUNT; s++)
        if (dims_sec_bytes(m, (a3_cache_section)s, &b) || a3_add_size(per_layer, b, &per_layer)) return -1;
    if (a3_mul_size(per_layer, (size_t)m->n_layers, &total)) return -1;
    if (a3_add_size(total, HEADER_BYTES + 4, &total) || a3_add_size(total, meta_len, out)) return -1;
    return 0;
}

/* Format a reason into why and return -1, for the check helpers below. */
__attribute__((format(printf, 3, 4))) static int why_set(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Structural checks shared by a3_cache_new and the reader. */
static int dims_check(const dims *m, char *why, size_t n)
{
    if (m->d < 1 || m->d > A3_CACHE_MAX_DIM || m->d_ff < 1 || m->d_ff > A3_CACHE_MAX_DIM)
        return why_set(why, n, "d %d or d_ff %d outside [1, %d]", m->d, m->d_ff, A3_CACHE_MAX_DIM);
    if (m->n_layers < 1 || m->n_layers > A3_CACHE_MAX_COUNT || m->n_heads < 1 || m->n_heads > A3_CACHE_MAX_COUNT)
        return why_set(why, n, "n_layers %d or n_heads %d outside [1, %d]", m->n_layers, m->n_heads,
                       A3_CACHE_MAX_COUNT);
    if (m->head_dim < 1 || m->head_dim > A3_CACHE_MAX_HEAD_DIM)
        return why_set(why, n, "head_dim %d outside [1, %d]", m->head_dim, A3_CACHE_MAX_HEAD_DIM);
    if (m->n_kv_heads < 1 || m->n_kv_heads > m->n_heads || m->n_heads % m->n_kv_heads)
        return why_set(why, n, "n_heads %d is not a multiple of n_kv_heads %d", m->n_heads, m->n_kv_heads);
    if (m->head_dim % 2) return why_set(why, n, "head_dim %d is odd (RoPE works on pairs)", m->head_dim);
    return 0;
}

static dims dims_of(const a3_cache *c)
{
    return (dims){c->d, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->d_ff, c->mlp_full ? 1 : 0};
}

/* ---- the in-memory cache -------------------------------------------------- */

static void *layer_get(const a3_cache_layer *L, a3_cache_section s)
{
    switch (s) {
    case A3_SEC_GQ: return L->gq;
    case A3_SEC_GK: return L->gk;
    case A3_SEC_GV: return L->gv;
    case A3_SEC_C: return L->c;
    case A3_SEC_D: return L->d;
    case A3_SEC_RU: return L->ru;
    case A3_SEC_QK_ORDER: return L->qk_order;
    case A3_SEC_QK_SCORE: return L->qk_score;
    case A3_SEC_QK_LOSS: return L->qk_loss;
    case A3_SEC_OV_SV: return L->ov_sv;
    case A3_SEC_MLP_ORDER: return L->mlp_order;
    case A3_SEC_MLP_SCORE: return L->mlp_score;
    case A3_SEC_MLP_LOSS: return L->mlp_loss;
    case A3_SEC_WO_GRAM: return L->wo_gram;
    case A3_SEC_DOWN_NORM: return L->down_norm;
    default: return NULL;
    }
}

static void layer_set(a3_cache_layer *L, a3_cache_section s, void *p)
{
    switch (s) {
    case A3_SEC_GQ: L->gq = p; break;
    case A3_SEC_GK: L->gk = p; break;
    case A3_SEC_GV: L->gv = p; break;
    case A3_SEC_C: L->c = p; break;
    case A3_SEC_D: L->d = p; break;
    case A3_SEC_RU: L->ru = p; break;
    case A3_SEC_QK_ORDER: L->qk_order = p; break;
    case A3_SEC_QK_SCORE: L->qk_score = p; break;
    case A3_SEC_QK_LOSS: L->qk_loss = p; break;
    case A3_SEC_OV_SV: L->ov_sv = p; break;
    case A3_SEC_MLP_ORDER: L->mlp_order = p; break;
    case A3_SEC_MLP_SCORE: L->mlp_score = p; break;
    case A3_SEC_MLP_LOSS: L->mlp_loss = p; break;
    case A3_SEC_WO_GRAM: L->wo_gram = p; break;
    case A3_SEC_DOWN_NORM: L->down_norm = p; break;
    default: break;
    }
}

/* What a3_cache_open reads: the loss curves the planner and the TUI's
 * overview need, about 1% of a cache's bytes. Every other section (the
 * matrices, the per-neuron vectors D and DOWN_NORM, the selection orders
 * and scores) stays on disk until a3_cache_need / a3_cache_need_section. */
static int sec_at_open(a3_cache_section s)
{
    return s == A3_SEC_QK_LOSS || s == A3_SEC_OV_SV || s == A3_SEC_MLP_LOSS;
}

static int sec_lazy(a3_cache_section s) { return !sec_at_open(s); }

/* Open-time state of a cache whose other sections are still on disk. */
struct a3_cache_file {
    char *path;
    FILE *fp;            /* kept open: later reads see the file that was checked */
    uint64_t size;
    uint64_t *off;       /* (n_layers x A3_SEC_COUNT) payload offsets */
    uint32_t *crc;       /* their stored CRCs */
    uint8_t *loaded;     /* (n_layers x A3_SEC_COUNT) 1 when in memory */
};

static void file_free(a3_cache_file *f)
{
    if (!f) return;
    if (f->fp) fclose(f->fp);
    free(f->path), free(f->off), free(f->crc), free(f->loaded);
    free(f);
}

static a3_cache *cache_alloc_lazy(const dims *m, int lazy)
{
    char why[160];
    if (dims_check(m, why, sizeof why)) return NULL;
    a3_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->d = m->d, c->n_layers = m->n_layers, c->n_heads = m->n_heads, c->n_kv_heads = m->n_kv_heads;
    c->head_dim = m->head_dim, c->d_ff = m->d_ff, c->mlp_full = m->mlp_full;
    c->layers = a3_calloc((size_t)m->n_layers, sizeof *c->layers);
    if (!c->layers) goto fail;
    for (int l = 0; l < m->n_layers; l++)
        for (int s = 0; s < A3_SEC_COUNT; s++) {
            size_t n;
            if (dims_len(m, (a3_cache_section)s, &n)) goto fail;
            if (n == 0 || (lazy && sec_lazy((a3_cache_section)s))) continue;
            void *p = a3_calloc(n, type_size(sec_type((a3_cache_section)s)));
            if (!p) goto fail;
            layer_set(&c->layers[l], (a3_cache_section)s, p);
        }
    return c;
fail:
    a3_cache_free(c);
    return NULL;
}

static a3_cache *cache_alloc(const dims *m) { return cache_alloc_lazy(m, 0); }

a3_cache *a3_cache_new(int d, int n_layers, int n_heads, int n_kv_heads, int head_dim, int d_ff, int mlp_full)
{
    dims m = {d, n_layers, n_heads, n_kv_heads, head_dim, d_ff, mlp_full ? 1 : 0};
    return cache_alloc(&m);
}

void a3_cache_free(a3_cache *c)
{
    if (!c) return;
    for (int l = 0; c->layers && l < c->n_layers; l++)
        for (int s = 0; s < A3_SEC_COUNT; s++) free(layer_get(&c->layers[l], (a3_cache_section)s));
    free(c->layers);
    free(c->meta_json);
    file_free(c->file);
    free(c);
}

size_t a3_cache_section_len(const a3_cache *c, a3_cache_section s)
{
    dims m = dims_of(c);
    size_t n;
    return dims_len(&m, s, &n) ? 0 : n;
}

void *a3_cache_section_ptr(const a3_cache *c, int layer, a3_cache_section s)
{
    if (!c || layer < 0 || layer >= c->n_layers || (int)s < 0 || s >= A3_SEC_COUNT) return NULL;
    return layer_get(&c->layers[layer], s);
}

const char *a3_cache_section_name(a3_cache_section s)
{
    return (int)s >= 0 && s < A3_SEC_COUNT ? SEC_NAMES[s] : "?";
}

/* ---- value checks (shared by save and load) ------------------------------ */

/* Each of `rows` rows of m indices must be a permutation of 0..m-1 (rows
 * are KV groups for QK_ORDER, one row for MLP_ORDER); seen is m bytes of
 * scratch. */
static int check_perm(const int32_t *v, size_t rows, size_t m, uint8_t *seen, char *why, size_t n)
{
    char where[48] = "";
    for (size_t r = 0; r < rows; r++, v += m) {
        if (rows > 1) snprintf(where, sizeof where, "KV group %zu: ", r);
        memset(seen, 0, m);
        for (size_t i = 0; i < m; i++) {
            if (v[i] < 0 || (size_t)v[i] >= m)
                return why_set(why, n, "%sindex %" PRId32 " at position %zu outside [0, %zu)", where, v[i], i, m);
            if (seen[v[i]]++)
                return why_set(why, n, "%sindex %" PRId32 " appears twice (not a permutation)", where, v[i]);
        }
    }
    return 0;
}

static int check_finite(const double *v, size_t cnt, char *why, size_t n)
{
    for (size_t i = 0; i < cnt; i++)
        if (!isfinite(v[i])) return why_set(why, n, "element %zu is not finite (%g)", i, v[i]);
    return 0;
}

/* Values of one section already in host order. seen: max(hd/2, d_ff) bytes. */
static int check_values(const dims *m, a3_cache_section s, const void *p, size_t cnt, uint8_t *seen, char *why,
                        size_t n)
{
    if (s == A3_SEC_QK_ORDER)
        return check_perm(p, (size_t)m->n_kv_heads, (size_t)m->head_dim / 2, seen, why, n);
    if (s == A3_SEC_MLP_ORDER) return check_perm(p, 1, (size_t)m->d_ff, seen, why, n);
    int rc = check_finite(p, cnt, why, n);
    if (rc || !sec_at_open(s)) return rc;
    const double *v = p;
    if (s == A3_SEC_QK_LOSS) return a3_curves_check(v, cnt, (size_t)m->head_dim / 2 + 1, 1e-9, why, n) ? -1 : 0;
    if (s == A3_SEC_MLP_LOSS) return a3_curves_check(v, cnt, cnt, 0, why, n) ? -1 : 0; /* tail sums: exact */
    /* OV_SV: singular values, whose squares the planner adds (a value of
     * 3e262, found by fuzzing, overflows them) */
    double sum = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (v[i] < 0) return why_set(why, n, "element %zu is negative (%g)", i, v[i]);
        sum += v[i] * v[i];
    }
    return isfinite(sum) ? 0 : why_set(why, n, "values too large: their sum of squares overflows");
}

int a3_curves_check(const double *v, size_t n, size_t len, double tol, char *why, size_t why_n)
{
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += fabs(v[i]);
    if (!isfinite(sum)) return why_set(why, why_n, "values too large: their sum overflows");
    for (size_t c0 = 0; len && c0 + len <= n; c0 += len) {
        double big = 0;
        for (size_t i = c0; i < c0 + len; i++) big = fmax(big, fabs(v[i]));
        for (size_t i = c0; i < c0 + len; i++)
            if (v[i] < -tol * big) return why_set(why, why_n, "element %zu is negative (%g)", i, v[i]);
        if (v[c0] > 0 && big / v[c0] > 1e300)
            return why_set(why, why_n, "element %zu: the curve's values reach %g times its value at width 0 (%g)", c0,
                           big / v[c0], v[c0]);
    }
    return 0;
}

static size_t scratch_bytes(const dims *m)
{
    size_t half = (size_t)m->head_dim / 2;
    return half > (size_t)m->d_ff ? half : (size_t)m->d_ff;
}

/* ---- metadata ------------------------------------------------------------- */

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* An integral JSON number in [lo, hi]. */
static int jint(const cJSON *v, double lo, double hi, int64_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double x = v->valuedouble;
    if (!(x >= lo && x <= hi) || x != floor(x)) return -1;
    *out = (int64_t)x;
    return 0;
}

static int is_hex64(const char *s)
{
    if (strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static int meta_dims(const char *path, const cJSON *model, dims *m, a3_err *err)
{
    static const char *const keys[6] = {"d", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff"};
    int *dst[6] = {&m->d, &m->n_layers, &m->n_heads, &m->n_kv_heads, &m->head_dim, &m->d_ff};
    for (int i = 0; i < 6; i++) {
        int64_t v;
        double hi = i == 0 || i == 5 ? A3_CACHE_MAX_DIM : A3_CACHE_MAX_COUNT;
        if (jint(jget(model, keys[i]), 1, hi, &v))
            return a3_err_set(err, A3_EFORMAT, "%s: metadata: model.%s: missing or not an integer in [1, %.0f]", path,
                              keys[i], hi);
        *dst[i] = (int)v;
    }
    char why[160];
    if (dims_check(m, why, sizeof why)) return a3_err_set(err, A3_EFORMAT, "%s: metadata: %s", path, why);
    return A3_OK;
}

static int meta_calib(const char *path, const cJSON *cal, meta_core *mc, a3_err *err)
{
    if (!cJSON_IsObject(cal)) return a3_err_set(err, A3_EFORMAT, "%s: metadata: \"calibration\" missing", path);
    if (jint(jget(cal, "n_tokens"), 1, 9007199254740992.0, &mc->n_tokens))
        return a3_err_set(err, A3_EFORMAT, "%s: metadata: calibration.n_tokens: missing or not a positive integer",
                          path);
    const cJSON *mf = jget(cal, "mlp_full");
    if (!cJSON_IsBool(mf))
        return a3_err_set(err, A3_EFORMAT, "%s: metadata: calibration.mlp_full: missing or not true/false", path);
    mc->m.mlp_full = cJSON_IsTrue(mf) ? 1 : 0;
    return A3_OK;
}

/* Check the required metadata fields of a parsed document. */
static int meta_check(const char *path, const cJSON *root, uint32_t version, meta_core *mc, a3_err *err)
{
    int64_t v;
    if (!cJSON_IsObject(root)) return a3_err_set(err, A3_EFORMAT, "%s: metadata: not a JSON object", path);
    const cJSON *fmt = jget(root, "format"), *model = jget(root, "model");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "a3-cache") != 0)
        return a3_err_set(err, A3_EFORMAT, "%s: metadata: \"format\" is not \"a3-cache\"", path);
    if (jint(jget(root, "version"), 0, 4294967295.0, &v) || (uint32_t)v != version)
        return a3_err_set(err, A3_EFORMAT, "%s: metadata: \"version\" missing or not the header's %" PRIu32, path,
                          version);
    if (!cJSON_IsObject(model)) return a3_err_set(err, A3_EFORMAT, "%s: metadata: \"model\" missing", path);
    int rc = meta_dims(path, model, &mc->m, err);
    if (rc) return rc;
    const cJSON *fp = jget(model, "fingerprint");
    if (!cJSON_IsString(fp) || !is_hex64(fp->valuestring))
        return a3_err_set(err, A3_EFORMAT, "%s: metadata: model.fingerprint: not 64 lower-case hex digits", path);
    memcpy(mc->fingerprint, fp->valuestring, 65);
    return meta_calib(path, jget(root, "calibration"), mc, err);
}

/* Parse len bytes of metadata text (NUL-terminated at len) and check it. */
static int meta_parse_core(const char *path, const char *text, size_t len, uint32_t version, meta_core *mc,
                           a3_err *err)
{
    if (strlen(text) != len) return a3_err_set(err, A3_EFORMAT, "%s: metadata: contains a NUL byte", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text && at <= text + len ? (long)(at - text) : -1;
        return a3_err_set(err, A3_EFORMAT, "%s: metadata: not valid JSON (near byte %ld)", path, off);
    }
    while (end && end < text + len && strchr(" \t\r\n", *end)) end++;
    int rc = end == text + len ? meta_check(path, root, version, mc, err)
                               : a3_err_set(err, A3_EFORMAT, "%s: metadata: not valid JSON (trailing data)", path);
    cJSON_Delete(root);
    return rc;
}

/* save: the struct and its metadata must describe the same cache. */
static int meta_agrees(const a3_cache *c, const char *path, a3_err *err)
{
    if (!c->meta_json) return a3_err_set(err, A3_EINVAL, "%s: cache metadata (meta_json) not set", path);
    size_t len = strlen(c->meta_json);
    if (len > A3_CACHE_META_MAX)
        return a3_err_set(err, A3_EINVAL, "%s: metadata: %zu bytes, over the %zu-byte cap", path, len,
                          A3_CACHE_META_MAX);
    meta_core mc;
    a3_err e2 = {0};
    if (meta_parse_core(path, c->meta_json, len, A3_CACHE_VERSION, &mc, &e2))
        return a3_err_set(err, A3_EINVAL, "%s", e2.msg);
    dims m = dims_of(c);
    if (memcmp(&m, &mc.m, sizeof m) != 0)
        return a3_err_set(err, A3_EINVAL, "%s: metadata dims or mlp_full differ from the cache's", path);
    if (mc.n_tokens != c->n_tokens)
        return a3_err_set(err, A3_EINVAL, "%s: metadata n_tokens %" PRId64 " differs from the cache's %" PRId64, path,
                          mc.n_tokens, c->n_tokens);
    if (strcmp(mc.fingerprint, c->fingerprint) != 0)
        return a3_err_set(err, A3_EINVAL, "%s: metadata fingerprint differs from the cache's", path);
    return A3_OK;
}

/* ---- save ----------------------------------------------------------------- */

/* The payload as little-endian bytes: itself on a little-endian host, else
 * a swapped copy in buf (at most CHUNK_BYTES, a multiple of es). */
static const uint8_t *payload_le(const uint8_t *p, size_t bytes, size_t es, uint8_t *buf)
{
    if (host_is_le()) return p;
    memcpy(buf, p, bytes);
    swap_elems(buf, bytes / es, es);
    return buf;
}

static uint32_t payload_crc(const uint8_t *p, size_t bytes, size_t es, uint8_t *buf)
{
    uint32_t crc = 0;
    for (size_t off = 0; off < bytes; off += CHUNK_BYTES) {
        size_t k = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        crc = a3_crc32_update(crc, payload_le(p + off, k, es, buf), k);
    }
    return crc;
}

static int save_section(a3_atomic *a, const a3_cache *c, int l, a3_cache_section s, uint8_t *buf, a3_err *err)
{
    size_t n = a3_cache_section_len(c, s);
    if (n == 0) return A3_OK; /* RU without mlp_full */
    int t = sec_type(s);
    size_t es = type_size(t), bytes = n * es; /* fits: the array was allocated */
    const uint8_t *p = a3_cache_section_ptr(c, l, s);
    uint8_t h[SEC_HEADER_BYTES];
    put_le32(h, (uint32_t)s);
    put_le32(h + 4, (uint32_t)l);
    put_le64(h + 8, (uint64_t)n);
    put_le32(h + 16, (uint32_t)t);
    put_le32(h + 20, payload_crc(p, bytes, es, buf));
    int rc = a3_atomic_write(a, h, sizeof h, err);
    for (size_t off = 0; rc == A3_OK && off < bytes; off += CHUNK_BYTES) {
        size_t k = bytes - off < CHUNK_BYTES ? bytes - off : CHUNK_BYTES;
        rc = a3_atomic_write(a, payload_le(p + off, k, es, buf), k, err);
    }
    return rc;
}

static int save_head(a3_atomic *a, const a3_cache *c, a3_err *err)
{
    uint8_t h[HEADER_BYTES], crc[4];
    size_t len = strlen(c->meta_json), n_sec = (size_t)c->n_layers * (A3_SEC_COUNT - (c->mlp_full ? 0 : 1));
    memcpy(h, MAGIC, 8);
    put_le32(h + 8, A3_CACHE_VERSION);
    put_le32(h + 12, (uint32_t)n_sec); /* <= 4096 * 13 by the caps */
    put_le64(h + 16, (uint64_t)len);
    put_le32(crc, a3_crc32(c->meta_json, len));
    int rc = a3_atomic_write(a, h, sizeof h, err);
    if (rc == A3_OK) rc = a3_atomic_write(a, c->meta_json, len, err);
    if (rc == A3_OK) rc = a3_atomic_write(a, crc, sizeof crc, err);
    return rc;
}

/* Refuse to write what a3_cache_load would reject. */
static int save_check_values(const a3_cache *c, const char *path, a3_err *err)
{
    dims m = dims_of(c);
    uint8_t *seen = malloc(scratch_bytes(&m));
    if (!seen) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    char why[200];
    int rc = A3_OK;
    for (int l = 0; rc == A3_OK && l < c->n_layers; l++)
        for (int s = 0; rc == A3_OK && s < A3_SEC_COUNT; s++) {
            size_t n = a3_cache_section_len(c, (a3_cache_section)s);
            const void *p = a3_cache_section_ptr(c, l, (a3_cache_section)s);
            if (n && check_values(&m, (a3_cache_section)s, p, n, seen, why, sizeof why))
                rc = a3_err_set(err, A3_EINVAL, "%s: section %s layer %d: %s", path, SEC_NAMES[s], l, why);
        }
    free(seen);
    return rc;
}

int a3_cache_save(const a3_cache *c, const char *path, a3_err *err)
{
    dims m = dims_of(c);
    char why[160];
    if (!c->layers || dims_check(&m, why, sizeof why))
        return a3_err_set(err, A3_EINVAL, "%s: invalid cache dims: %s", path, c->layers ? why : "no layers");
    if (c->file) /* some sections may be on disk only: a3_cache_load it whole */
        return a3_err_set(err, A3_EINVAL, "%s: the cache was opened for planning (a3_cache_open), not loaded whole",
                          path);
    int rc = meta_agrees(c, path, err);
    if (rc == A3_OK) rc = save_check_values(c, path, err);
    if (rc) return rc;
    uint8_t *buf = malloc(CHUNK_BYTES);
    if (!buf) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    a3_atomic a;
    rc = a3_atomic_open(&a, path, err);
    if (rc == A3_OK) rc = save_head(&a, c, err);
    for (int l = 0; rc == A3_OK && l < c->n_layers; l++)
        for (int s = 0; rc == A3_OK && s < A3_SEC_COUNT; s++) rc = save_section(&a, c, l, (a3_cache_section)s, buf, err);
    free(buf);
    if (rc == A3_OK) return a3_atomic_commit(&a, err);
    if (a.path) a3_atomic_abort(&a); /* open failure already cleaned up */
    return rc;
}

/* ---- load ----------------------------------------------------------------- */

typedef struct {
    const char *path;
    FILE *fp;
    uint64_t size; /* file size at open */
    uint64_t pos;  /* bytes consumed */
    int lazy;      /* leave all but the curves on disk (a3_cache_open) */
    a3_progress_fn progress;
    void *ctx;
} reader;

/* Read exactly n bytes of `what`, or fail naming the offset. */
static int rd(reader *r, void *buf, size_t n, const char *what, a3_err *err)
{
    if ((uint64_t)n > r->size - r->pos)
        return a3_err_set(err, A3_EFORMAT, "%s: truncated: %s needs %zu bytes at offset %" PRIu64 ", file is %" PRIu64
                          " bytes", r->path, what, n, r->pos, r->size);
    if (n && fread(buf, 1, n, r->fp) != n) {
        if (ferror(r->fp)) return a3_err_set(err, A3_EIO, "%s: read failed: %s", r->path, strerror(errno));
        return a3_err_set(err, A3_EFORMAT, "%s: truncated while reading %s (file shrank?)", r->path, what);
    }
    r->pos += n;
    return A3_OK;
}

typedef struct {
    uint32_t version, n_sec;
    uint64_t meta_len;
} file_head;

static int load_head(reader *r, file_head *h, a3_err *err)
{
    uint8_t b[HEADER_BYTES];
    int rc = rd(r, b, sizeof b, "header", err);
    if (rc) return rc;
    if (memcmp(b, MAGIC, 8) != 0)
        return a3_err_set(err, A3_EFORMAT, "%s: not an a3 calibration cache (bad magic)", r->path);
    h->version = get_le32(b + 8), h->n_sec = get_le32(b + 12), h->meta_len = get_le64(b + 16);
    if (h->version > A3_CACHE_VERSION)
        return a3_err_set(err, A3_EUNSUPPORTED,
                          "%s: format version %" PRIu32 " was written by a newer a3 (this one reads version %d)",
                          r->path, h->version, A3_CACHE_VERSION);
    if (h->version < 1)
        return a3_err_set(err, A3_EFORMAT, "%s: unknown format version %" PRIu32, r->path, h->version);
    if (h->meta_len > A3_CACHE_META_MAX)
        return a3_err_set(err, A3_EFORMAT, "%s: metadata: length %" PRIu64 " over the %zu-byte cap", r->path,
                          h->meta_len, A3_CACHE_META_MAX);
    if (h->meta_len + 4 > r->size - r->pos)
        return a3_err_set(err, A3_EFORMAT, "%s: truncated: metadata of %" PRIu64 " bytes and its CRC run past the end of "
                          "the %" PRIu64 "-byte file", r->path, h->meta_len, r->size);
    return A3_OK;
}

/* Metadata text (owned, NUL-terminated) and its required fields. */
static int load_meta(reader *r, const file_head *h, char **text, meta_core *mc, a3_err *err)
{
    size_t len = (size_t)h->meta_len;
    uint8_t crc[4];
    char *t = malloc(len + 1); /* len <= 16 MB, checked against the file */
    if (!t) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", r->path);
    int rc = rd(r, t, len, "metadata", err);
    if (rc == A3_OK) rc = rd(r, crc, 4, "metadata CRC", err);
    if (rc == A3_OK && get_le32(crc) != a3_crc32(t, len))
        rc = a3_err_set(err, A3_EFORMAT, "%s: metadata: CRC mismatch (stored %08" PRIx32 ", computed %08" PRIx32 ")",
                        r->path, get_le32(crc), a3_crc32(t, len));
    if (rc == A3_OK) {
        t[len] = '\0';
        rc = meta_parse_core(r->path, t, len, h->version, mc, err);
    }
    if (rc) free(t);
    else *text = t;
    return rc;
}

/* The section header at r->pos, checked against the dims and what was seen. */
static int load_sec_head(reader *r, const dims *m, const uint8_t *seen, uint32_t i, a3_cache_section *s, int *layer,
                         uint32_t *crc, a3_err *err)
{
    uint8_t b[SEC_HEADER_BYTES];
    char what[48];
    snprintf(what, sizeof what, "section header %" PRIu32, i);
    uint64_t at = r->pos;
    int rc = rd(r, b, sizeof b, what, err);
    if (rc) return rc;
    uint32_t kind = get_le32(b), l = get_le32(b + 4), type = get_le32(b + 16);
    uint64_t n = get_le64(b + 8);
    size_t want = 0;
    if (kind >= A3_SEC_COUNT)
        return a3_err_set(err, A3_EFORMAT, "%s: section %" PRIu32 " at offset %" PRIu64 ": unknown kind %" PRIu32,
                          r->path, i, at, kind);
    const char *nm = SEC_NAMES[kind];
    if (l >= (uint32_t)m->n_layers)
        return a3_err_set(err, A3_EFORMAT, "%s: section %s layer %" PRIu32 ": layer out of range (n_layers %d)",
                          r->path, nm, l, m->n_layers);
    if (type != (uint32_t)sec_type((a3_cache_section)kind))
        return a3_err_set(err, A3_EFORMAT, "%s: section %s layer %" PRIu32 ": element type %" PRIu32 ", expected %s",
                          r->path, nm, l, type, sec_type((a3_cache_section)kind) == ET_I32 ? "1 (i32)" : "0 (f64)");
    if (dims_len(m, (a3_cache_section)kind, &want)) /* cannot happen: the file size was checked */
        return a3_err_set(err, A3_EFORMAT, "%s: section %s: size overflow", r->path, nm);
    if (want == 0)
        return a3_err_set(err, A3_EFORMAT, "%s: section RU layer %" PRIu32 ": present but calibration.mlp_full is false",
                          r->path, l);
    if (n != (uint64_t)want)
        return a3_err_set(err, A3_EFORMAT, "%s: section %s layer %" PRIu32 ": %" PRIu64 " elements, the dims imply %zu",
                          r->path, nm, l, n, want);
    if (seen[(size_t)l * A3_SEC_COUNT + kind])
        return a3_err_set(err, A3_EFORMAT, "%s: section %s layer %" PRIu32 ": duplicated", r->path, nm, l);
    *s = (a3_cache_section)kind, *layer = (int)l, *crc = get_le32(b + 20);
    return A3_OK;
}

/* One section: header, payload straight into the cache's array, CRC over
 * the bytes as stored, then host order and value checks. */
static int load_section(reader *r, a3_cache *c, const dims *m, uint8_t *seen, uint8_t *scratch, uint32_t i,
                        a3_err *err)
{
    a3_cache_section s = A3_SEC_GQ;
    int l = 0;
    uint32_t crc = 0;
    int rc = load_sec_head(r, m, seen, i, &s, &l, &crc, err);
    if (rc) return rc;
    size_t n = a3_cache_section_len(c, s), es = type_size(sec_type(s));
    uint8_t *p = a3_cache_section_ptr(c, l, s);
    char what[48], why[200];
    snprintf(what, sizeof what, "section %s layer %d", SEC_NAMES[s], l);
    if (c->file && sec_lazy(s)) { /* remember where it is; a3_cache_need reads it */
        size_t si = (size_t)l * A3_SEC_COUNT + s;
        c->file->off[si] = r->pos, c->file->crc[si] = crc;
        if ((uint64_t)(n * es) > r->size - r->pos)
            return a3_err_set(err, A3_EFORMAT, "%s: truncated: %s needs %zu bytes at offset %" PRIu64 ", file is %" PRIu64
                              " bytes", r->path, what, n * es, r->pos, r->size);
        if (fseeko(r->fp, (off_t)(n * es), SEEK_CUR) != 0)
            return a3_err_set(err, A3_EIO, "%s: seek failed: %s", r->path, strerror(errno));
        r->pos += n * es;
        seen[si] = 1;
        return A3_OK;
    }
    rc = rd(r, p, n * es, what, err);
    if (rc) return rc;
    uint32_t got = a3_crc32(p, n * es);
    if (got != crc)
        return a3_err_set(err, A3_EFORMAT, "%s: %s: CRC mismatch (stored %08" PRIx32 ", computed %08" PRIx32 ")",
                          r->path, what, crc, got);
    if (!host_is_le()) swap_elems(p, n, es);
    if (check_values(m, s, p, n, scratch, why, sizeof why))
        return a3_err_set(err, A3_EFORMAT, "%s: %s: %s", r->path, what, why);
    seen[(size_t)l * A3_SEC_COUNT + s] = 1;
    return A3_OK;
}

/* After the last section: every expected section seen, nothing left. */
static int load_tail(reader *r, const a3_cache *c, const uint8_t *seen, a3_err *err)
{
    for (int l = 0; l < c->n_layers; l++)
        for (int s = 0; s < A3_SEC_COUNT; s++)
            if (a3_cache_section_len(c, (a3_cache_section)s) && !seen[(size_t)l * A3_SEC_COUNT + s])
                return a3_err_set(err, A3_EFORMAT, "%s: section %s layer %d: missing", r->path, SEC_NAMES[s], l);
    if (r->pos != r->size)
        return a3_err_set(err, A3_EFORMAT, "%s: trailing data after the last section (%" PRIu64 " bytes)", r->path,
                          r->size - r->pos);
    return A3_OK;
}

static int load_sections(reader *r, a3_cache *c, const file_head *h, a3_err *err)
{
    dims m = dims_of(c);
    uint8_t *seen = a3_calloc((size_t)c->n_layers, A3_SEC_COUNT), *scratch = malloc(scratch_bytes(&m));
    int rc = seen && scratch ? A3_OK : a3_err_set(err, A3_ENOMEM, "%s: out of memory", r->path);
    /* Bounded by the file: a section too many is a duplicate or past the end. */
    for (uint32_t i = 0; rc == A3_OK && i < h->n_sec; i++) {
        rc = load_section(r, c, &m, seen, scratch, i, err);
        if (rc == A3_OK && r->progress && r->progress(r->ctx, "open cache", i + 1, h->n_sec))
            rc = a3_err_set(err, A3_ECANCELED, "%s: opening cancelled", r->path);
    }
    if (rc == A3_OK) rc = load_tail(r, c, seen, err);
    free(seen);
    free(scratch);
    return rc;
}

static int load_fp(reader *r, a3_cache **out, a3_err *err)
{
    file_head h = {0};
    meta_core mc = {0};
    char *text = NULL;
    int rc = load_head(r, &h, err);
    if (rc == A3_OK) rc = load_meta(r, &h, &text, &mc, err);
    if (rc) return rc;
    size_t need = 0;
    if (dims_file_bytes(&mc.m, (size_t)h.meta_len, &need)) rc = a3_err_set(err, A3_EFORMAT, "%s: metadata: dims "
                                                                           "imply an impossible file size", r->path);
    else if ((uint64_t)need > r->size)
        rc = a3_err_set(err, A3_EFORMAT, "%s: truncated: file is %" PRIu64 " bytes, the dims imply %zu "
                        "(sections cut short or missing)", r->path, r->size, need);
    if (rc) {
        free(text);
        return rc;
    }
    a3_cache *c = cache_alloc_lazy(&mc.m, r->lazy); /* at most the file's size */
    if (c && r->lazy) {
        size_t ns = (size_t)mc.m.n_layers * A3_SEC_COUNT;
        c->file = calloc(1, sizeof *c->file);
        if (c->file) {
            c->file->path = strdup(r->path), c->file->size = r->size;
            c->file->off = a3_calloc(ns, sizeof *c->file->off), c->file->crc = a3_calloc(ns, sizeof *c->file->crc);
            c->file->loaded = a3_calloc(ns, 1);
        }
        if (!c->file || !c->file->path || !c->file->off || !c->file->crc || !c->file->loaded) {
            a3_cache_free(c);
            c = NULL;
        }
    }
    if (!c) {
        free(text);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory for %zu bytes of statistics", r->path, need);
    }
    c->meta_json = text;
    c->n_tokens = mc.n_tokens;
    memcpy(c->fingerprint, mc.fingerprint, sizeof c->fingerprint);
    rc = load_sections(r, c, &h, err);
    if (rc) a3_cache_free(c);
    else *out = c;
    return rc;
}

int a3_cache_open(const char *path, a3_progress_fn progress, void *ctx, a3_cache **out, a3_err *err)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return a3_err_set(err, A3_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc;
    if (fstat(fileno(fp), &st) != 0) rc = a3_err_set(err, A3_EIO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) rc = a3_err_set(err, A3_EIO, "%s: not a regular file", path);
    else {
        reader r = {path, fp, (uint64_t)st.st_size, 0, 1, progress, ctx};
        rc = load_fp(&r, out, err);
    }
    if (rc == A3_OK) (*out)->file->fp = fp; /* the other sections are read from it later */
    else fclose(fp);
    return rc;
}

/* One lazy section of layer l from the file into a new array: CRC over
 * the bytes as stored, then host order and the value checks of the eager
 * reader, so a corrupt section is an error here, before any use. */
static int need_section(const a3_cache *c, int l, a3_cache_section s, uint8_t *scratch, a3_err *err)
{
    a3_cache_file *f = c->file;
    size_t n = a3_cache_section_len(c, s), es = type_size(sec_type(s)), i = (size_t)l * A3_SEC_COUNT + s;
    if (n == 0 || f->loaded[i]) return A3_OK;
    char what[48], why[200];
    snprintf(what, sizeof what, "section %s layer %d", SEC_NAMES[s], l);
    uint8_t *p = a3_malloc_array(n, es);
    if (!p) return a3_err_set(err, A3_ENOMEM, "%s: %s: out of memory", f->path, what);
    int rc = A3_OK;
    if (fseeko(f->fp, (off_t)f->off[i], SEEK_SET) != 0)
        rc = a3_err_set(err, A3_EIO, "%s: %s: seek failed: %s", f->path, what, strerror(errno));
    else if (fread(p, 1, n * es, f->fp) != n * es)
        rc = ferror(f->fp) ? a3_err_set(err, A3_EIO, "%s: %s: read failed: %s", f->path, what, strerror(errno))
                           : a3_err_set(err, A3_EFORMAT, "%s: %s: truncated (file shrank since it was opened?)",
                                        f->path, what);
    uint32_t got = rc ? 0 : a3_crc32(p, n * es);
    if (rc == A3_OK && got != f->crc[i])
        rc = a3_err_set(err, A3_EFORMAT, "%s: %s: CRC mismatch (stored %08" PRIx32 ", computed %08" PRIx32 ")",
                        f->path, what, f->crc[i], got);
    if (rc == A3_OK && !host_is_le()) swap_elems(p, n, es);
    dims m = dims_of(c);
    if (rc == A3_OK && check_values(&m, s, p, n, scratch, why, sizeof why))
        rc = a3_err_set(err, A3_EFORMAT, "%s: %s: %s", f->path, what, why);
    if (rc) {
        free(p);
        return rc;
    }
    layer_set(&c->layers[l], s, p);
    f->loaded[i] = 1;
    return A3_OK;
}

/* need_section with its own value-check scratch. */
static int need_sections(const a3_cache *c, int layer, const a3_cache_section *secs, int n, a3_err *err)
{
    dims m = dims_of(c);
    uint8_t *scratch = malloc(scratch_bytes(&m));
    int rc = scratch ? A3_OK : a3_err_set(err, A3_ENOMEM, "%s: out of memory", c->file->path);
    for (int i = 0; rc == A3_OK && i < n; i++) rc = need_section(c, layer, secs[i], scratch, err);
    free(scratch);
    return rc;
}

int a3_cache_need(const a3_cache *c, int layer, a3_err *err)
{
    if (!c->file || layer < 0 || layer >= c->n_layers) return A3_OK;
    a3_cache_section secs[A3_SEC_COUNT];
    int n = 0;
    for (int s = 0; s < A3_SEC_COUNT; s++)
        if (sec_lazy((a3_cache_section)s)) secs[n++] = (a3_cache_section)s;
    int rc = need_sections(c, layer, secs, n, err);
    if (rc) a3_cache_release(c, layer); /* all of the layer or none of it */
    return rc;
}

int a3_cache_need_section(const a3_cache *c, int layer, a3_cache_section s, a3_err *err)
{
    if (!c->file || layer < 0 || layer >= c->n_layers || (int)s < 0 || s >= A3_SEC_COUNT || !sec_lazy(s))
        return A3_OK;
    return need_sections(c, layer, &s, 1, err);
}

void a3_cache_release(const a3_cache *c, int layer)
{
    if (!c->file || layer < 0 || layer >= c->n_layers) return;
    for (int s = 0; s < A3_SEC_COUNT; s++)
        if (sec_lazy((a3_cache_section)s)) {
            free(layer_get(&c->layers[layer], (a3_cache_section)s));
            layer_set(&c->layers[layer], (a3_cache_section)s, NULL);
            c->file->loaded[(size_t)layer * A3_SEC_COUNT + s] = 0;
        }
}

int a3_cache_load(const char *path, a3_cache **out, a3_err *err)
{
    a3_cache *c = NULL;
    *out = NULL;
    int rc = a3_cache_open(path, NULL, NULL, &c, err);
    for (int l = 0; rc == A3_OK && l < c->n_layers; l++) rc = a3_cache_need(c, l, err);
    if (rc == A3_OK) { /* all in memory: a plain cache again */
        file_free(c->file);
        c->file = NULL;
        *out = c;
    } else a3_cache_free(c);
    return rc;
}

/* ---- informative metadata ------------------------------------------------- */

static char *jdup(const cJSON *o, const char *k)
{
    const cJSON *v = jget(o, k);
    return strdup(cJSON_IsString(v) ? v->valuestring : "");
}

static int64_t jint_or(const cJSON *o, const char *k)
{
    int64_t v;
    return jint(jget(o, k), -9007199254740992.0, 9007199254740992.0, &v) ? -1 : v;
}

static int meta_texts(const cJSON *cal, a3_cache_meta *m)
{
    const cJSON *arr = jget(cal, "texts");
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : 0;
    if (n == 0) return 0;
    m->texts = a3_calloc((size_t)n, sizeof *m->texts);
    if (!m->texts) return -1;
    m->n_texts = n;
    int i = 0;
    for (const cJSON *t = arr->child; t && i < n; t = t->next, i++) {
        m->texts[i].path = jdup(t, "path");
        m->texts[i].sha256 = jdup(t, "sha256");
        if (!m->texts[i].path || !m->texts[i].sha256) return -1;
    }
    return 0;
}

int a3_cache_meta_parse(const a3_cache *c, a3_cache_meta *m, a3_err *err)
{
    memset(m, 0, sizeof *m);
    cJSON *root = c->meta_json ? cJSON_Parse(c->meta_json) : NULL;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return a3_err_set(err, A3_EFORMAT, "cache metadata: missing or not a JSON object");
    }
    const cJSON *model = jget(root, "model"), *cal = jget(root, "calibration");
    if (!cJSON_IsObject(model)) model = NULL; /* jget(NULL, ..) is NULL: fields read as absent */
    if (!cJSON_IsObject(cal)) cal = NULL;
    m->tool = jdup(root, "tool"), m->created = jdup(root, "created");
    m->model_path = jdup(model, "path"), m->architecture = jdup(model, "architecture");
    m->rope_layout = jdup(model, "rope_layout");
    m->samples = jint_or(cal, "samples"), m->seqlen = jint_or(cal, "seqlen"), m->seed = jint_or(cal, "seed");
    int bad = meta_texts(cal, m) || !m->tool || !m->created || !m->model_path || !m->architecture || !m->rope_layout;
    cJSON_Delete(root);
    if (bad) {
        a3_cache_meta_clear(m);
        return a3_err_set(err, A3_ENOMEM, "cache metadata: out of memory");
    }
    return A3_OK;
}

void a3_cache_meta_clear(a3_cache_meta *m)
{
    for (int i = 0; m->texts && i < m->n_texts; i++) {
        free(m->texts[i].path);
        free(m->texts[i].sha256);
    }
    free(m->texts);
    free(m->tool), free(m->created), free(m->model_path), free(m->architecture), free(m->rope_layout);
    memset(m, 0, sizeof *m);
}
