/* gguf: the GGUF v3 writer and Q8_0 (see include/a3/gguf.h). */
#include "a3/gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "a3/safetensors.h"

const char *a3_gguf_type_name(a3_gguf_type t)
{
    switch (t) {
    case A3_GGUF_F32: return "f32";
    case A3_GGUF_F16: return "f16";
    case A3_GGUF_BF16: return "bf16";
    case A3_GGUF_Q8_0: return "q8_0";
    }
    return "?";
}

int a3_gguf_type_parse(const char *s, a3_gguf_type *out)
{
    static const a3_gguf_type all[] = {A3_GGUF_F32, A3_GGUF_F16, A3_GGUF_BF16, A3_GGUF_Q8_0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, a3_gguf_type_name(all[i])) == 0) return *out = all[i], 0;
    return -1;
}

size_t a3_gguf_type_bytes(a3_gguf_type t, size_t n)
{
    size_t out = 0;
    switch (t) {
    case A3_GGUF_F32: return a3_mul_size(n, 4, &out) ? 0 : out;
    case A3_GGUF_F16:
    case A3_GGUF_BF16: return a3_mul_size(n, 2, &out) ? 0 : out;
    case A3_GGUF_Q8_0:
        if (n % A3_GGUF_QK8_0) return 0;
        return a3_mul_size(n / A3_GGUF_QK8_0, A3_GGUF_Q8_0_BYTES, &out) ? 0 : out;
    }
    return 0;
}

/* ---- Q8_0 ---------------------------------------------------------------- */

void a3_gguf_q8_0_quantize(const float *x, size_t n, uint8_t *out)
{
    for (size_t b = 0; b < n / A3_GGUF_QK8_0; b++, x += A3_GGUF_QK8_0, out += A3_GGUF_Q8_0_BYTES) {
        float amax = 0;
        for (int j = 0; j < A3_GGUF_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        /* The scale is the smallest f16 >= max|x| / 127 (ggml rounds to
         * nearest, which can round down, even to 0 for tiny blocks), and
         * quantization divides by that stored value: so |x / d| <= 127 and
         * |x - d q| <= d/2 hold for the values llama.cpp reconstructs. */
        float want = amax / 127.0f;
        uint16_t h = a3_f32_to_f16(want);
        if (a3_f16_to_f32(h) < want) h++; /* positive: the next f16 up */
        float d = a3_f16_to_f32(h), id = d > 0 ? 1.0f / d : 0.0f;
        out[0] = (uint8_t)(h & 0xff), out[1] = (uint8_t)(h >> 8);
        for (int j = 0; j < A3_GGUF_QK8_0; j++) {
            float q = roundf(x[j] * id);
            q = q > 127 ? 127 : q < -127 ? -127 : q; /* never needed; keeps the int8 cast defined */
            out[2 + j] = (uint8_t)(int8_t)q;
        }
    }
}

void a3_gguf_q8_0_dequantize(const uint8_t *in, size_t n, float *x)
{
    for (size_t b = 0; b < n / A3_GGUF_QK8_0; b++, x += A3_GGUF_QK8_0, in += A3_GGUF_Q8_0_BYTES) {
        float d = a3_f16_to_f32((uint16_t)(in[0] | in[1] << 8));
        for (int j = 0; j < A3_GGUF_QK8_0; j++) x[j] = d * (float)(int8_t)in[2 + j];
    }
}

/* ---- writer ---------------------------------------------------------------- */

typedef struct {
    char *name;
    a3_gguf_type type;
    int ndim;
    int64_t ne[4];
    size_t numel, nbytes;
    uint64_t offset;
    a3_gguf_fill_fn fill;
    void *ctx;
} gguf_tensor;

struct a3_gguf_writer {
    unsigned char *kv; /* encoded key/value pairs, back to back */
    size_t kv_len, kv_cap, n_kv;
    char **keys;
    size_t keys_cap;
    gguf_tensor *t;
    size_t n_t, t_cap;
};

a3_gguf_writer *a3_gguf_writer_new(void)
{
    return calloc(1, sizeof(a3_gguf_writer));
}

void a3_gguf_writer_free(a3_gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->keys), free(w->kv), free(w->t), free(w);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 2) return -1;
        n *= 2;
    }
    size_t bytes;
    if (a3_mul_size(n, elem, &bytes)) return -1;
    void *q = realloc(*p, bytes);
    if (!q) return -1;
    *p = q, *cap = n;
    return 0;
}

static int put(a3_gguf_writer *w, const void *p, size_t n)
{
    size_t need;
    if (a3_add_size(w->kv_len, n, &need) || grow((void **)&w->kv, &w->kv_cap, need, 1)) return -1;
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 0;
}

static int put_u32(a3_gguf_writer *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    return put(w, b, 4);
}

static int put_u64(a3_gguf_writer *w, uint64_t v)
{
    return put_u32(w, (uint32_t)v) || put_u32(w, (uint32_t)(v >> 32));
}

static int put_str(a3_gguf_writer *w, const char *s, size_t n)
{
    return put_u64(w, n) || put(w, s, n);
}

/* Start a pair: check the key is new, write key and type. On failure the
 * buffer is rolled back by the caller through *mark. */
static int kv_begin(a3_gguf_writer *w, const char *key, uint32_t type, size_t *mark, a3_err *err)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0) return a3_err_set(err, A3_EINVAL, "gguf: key %s: added twice", key);
    *mark = w->kv_len;
    if (grow((void **)&w->keys, &w->keys_cap, w->n_kv + 1, sizeof *w->keys) || put_str(w, key, strlen(key)) ||
        put_u32(w, type))
        return a3_err_set(err, A3_ENOMEM, "gguf: key %s: out of memory", key);
    return A3_OK;
}

static int kv_end(a3_gguf_writer *w, const char *key, int failed, size_t mark, a3_err *err)
{
    char *k = failed ? NULL : strdup(key);
    if (!k) {
        w->kv_len = mark;
        return a3_err_set(err, A3_ENOMEM, "gguf: key %s: out of memory", key);
    }
    w->keys[w->n_kv++] = k;
    return A3_OK;
}

static int kv_scalar(a3_gguf_writer *w, const char *key, uint32_t type, const void *v, size_t n, a3_err *err)
{
    size_t mark;
    int rc = kv_begin(w, key, type, &mark, err);
    return rc ? rc : kv_end(w, key, put(w, v, n), mark, err);
}

/* The writers below store multi-byte values little-endian by building the
 * bytes explicitly, so the file is right on any host. */
int a3_gguf_kv_u32(a3_gguf_writer *w, const char *key, uint32_t v, a3_err *err)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    return kv_scalar(w, key, A3_GGUF_KV_U32, b, 4, err);
}

int a3_gguf_kv_i32(a3_gguf_writer *w, const char *key, int32_t v, a3_err *err)
{
    uint32_t u = (uint32_t)v;
    unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
    return kv_scalar(w, key, A3_GGUF_KV_I32, b, 4, err);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

int a3_gguf_kv_f32(a3_gguf_writer *w, const char *key, float v, a3_err *err)
{
    uint32_t u = f32_bits(v);
    unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
    return kv_scalar(w, key, A3_GGUF_KV_F32, b, 4, err);
}

int a3_gguf_kv_bool(a3_gguf_writer *w, const char *key, int v, a3_err *err)
{
    unsigned char b = v ? 1 : 0;
    return kv_scalar(w, key, A3_GGUF_KV_BOOL, &b, 1, err);
}

int a3_gguf_kv_str(a3_gguf_writer *w, const char *key, const char *v, a3_err *err)
{
    size_t mark;
    int rc = kv_begin(w, key, A3_GGUF_KV_STRING, &mark, err);
    return rc ? rc : kv_end(w, key, put_str(w, v, strlen(v)), mark, err);
}

int a3_gguf_kv_arr(a3_gguf_writer *w, const char *key, int elem_type, const void *v, size_t n, a3_err *err)
{
    if (elem_type != A3_GGUF_KV_U32 && elem_type != A3_GGUF_KV_I32 && elem_type != A3_GGUF_KV_F32)
        return a3_err_set(err, A3_EINVAL, "gguf: key %s: unsupported array element type %d", key, elem_type);
    size_t mark;
    int rc = kv_begin(w, key, A3_GGUF_KV_ARRAY, &mark, err), failed;
    if (rc) return rc;
    failed = put_u32(w, (uint32_t)elem_type) || put_u64(w, n);
    const uint32_t *u = v; /* the three element types are all 4-byte words */
    for (size_t i = 0; i < n && !failed; i++) failed = put_u32(w, u[i]);
    return kv_end(w, key, failed, mark, err);
}

int a3_gguf_kv_arr_str(a3_gguf_writer *w, const char *key, const char *const *s, const size_t *len, size_t n,
                       a3_err *err)
{
    size_t mark;
    int rc = kv_begin(w, key, A3_GGUF_KV_ARRAY, &mark, err), failed;
    if (rc) return rc;
    failed = put_u32(w, A3_GGUF_KV_STRING) || put_u64(w, n);
    for (size_t i = 0; i < n && !failed; i++) failed = put_str(w, s[i], len[i]);
    return kv_end(w, key, failed, mark, err);
}

int a3_gguf_add_tensor(a3_gguf_writer *w, const char *name, a3_gguf_type type, int ndim, const int64_t *ne,
                       a3_gguf_fill_fn fill, void *ctx, a3_err *err)
{
    if (ndim < 1 || ndim > 4) return a3_err_set(err, A3_EINVAL, "gguf: tensor %s: %d dims (1..4)", name, ndim);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return a3_err_set(err, A3_EINVAL, "gguf: tensor %s: added twice", name);
    gguf_tensor t = {.type = type, .ndim = ndim, .numel = 1, .fill = fill, .ctx = ctx};
    for (int i = 0; i < ndim; i++) {
        if (ne[i] <= 0 || a3_mul_size(t.numel, (size_t)ne[i], &t.numel))
            return a3_err_set(err, A3_EINVAL, "gguf: tensor %s: bad dimension %lld", name, (long long)ne[i]);
        t.ne[i] = ne[i];
    }
    if (type == A3_GGUF_Q8_0 && ne[0] % A3_GGUF_QK8_0)
        return a3_err_set(err, A3_EINVAL, "gguf: tensor %s: rows of %lld are not a multiple of %d (Q8_0)", name,
                          (long long)ne[0], A3_GGUF_QK8_0);
    if (!(t.nbytes = a3_gguf_type_bytes(type, t.numel)))
        return a3_err_set(err, A3_EINVAL, "gguf: tensor %s: unknown type or too large", name);
    if (grow((void **)&w->t, &w->t_cap, w->n_t + 1, sizeof *w->t) || !(t.name = strdup(name)))
        return a3_err_set(err, A3_ENOMEM, "gguf: tensor %s: out of memory", name);
    w->t[w->n_t++] = t;
    return A3_OK;
}

static size_t align_up(size_t n)
{
    return (n + A3_GGUF_ALIGNMENT - 1) / A3_GGUF_ALIGNMENT * A3_GGUF_ALIGNMENT;
}

/* Header + key/values + tensor infos, built in the key/value buffer after
 * the pairs (kv_len is restored afterwards). */
static int build_header(a3_gguf_writer *w, unsigned char **out, size_t *len)
{
    size_t kv_len = w->kv_len;
    uint64_t off = 0;
    int failed = put_u32(w, A3_GGUF_MAGIC) || put_u32(w, A3_GGUF_VERSION) || put_u64(w, w->n_t) || put_u64(w, w->n_kv);
    size_t head_at = kv_len;
    for (size_t i = 0; i < w->n_t && !failed; i++) {
        gguf_tensor *t = &w->t[i];
        failed = put_str(w, t->name, strlen(t->name)) || put_u32(w, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim && !failed; d++) failed = put_u64(w, (uint64_t)t->ne[d]);
        t->offset = off;
        failed = failed || put_u32(w, (uint32_t)t->type) || put_u64(w, off);
        off += align_up(t->nbytes);
    }
    if (failed) {
        w->kv_len = kv_len;
        return -1;
    }
    /* file = [magic version counts][pairs][infos][pad] */
    size_t info_len = w->kv_len - head_at - 24, total = align_up(24 + kv_len + info_len);
    unsigned char *h = calloc(1, total);
    if (!h) {
        w->kv_len = kv_len;
        return -1;
    }
    memcpy(h, w->kv + head_at, 24);
    memcpy(h + 24, w->kv, kv_len);
    memcpy(h + 24 + kv_len, w->kv + head_at + 24, info_len);
    w->kv_len = kv_len;
    *out = h, *len = total;
    return 0;
}

static int write_tensor(const gguf_tensor *t, a3_atomic *a, float *f, void *bytes, a3_err *err)
{
    int rc = t->fill(t->ctx, f, t->numel, err);
    if (rc) return rc;
    switch (t->type) {
    case A3_GGUF_F32: memcpy(bytes, f, t->numel * 4); break;
    case A3_GGUF_F16:
        for (size_t i = 0; i < t->numel; i++) ((uint16_t *)bytes)[i] = a3_f32_to_f16(f[i]);
        break;
    case A3_GGUF_BF16:
        for (size_t i = 0; i < t->numel; i++) ((uint16_t *)bytes)[i] = a3_f32_to_bf16(f[i]);
        break;
    case A3_GGUF_Q8_0: a3_gguf_q8_0_quantize(f, t->numel, bytes); break;
    }
    static const unsigned char zeros[A3_GGUF_ALIGNMENT];
    rc = a3_atomic_write(a, bytes, t->nbytes, err);
    if (rc == A3_OK) rc = a3_atomic_write(a, zeros, align_up(t->nbytes) - t->nbytes, err);
    return rc;
}

int a3_gguf_write(a3_gguf_writer *w, const char *path, a3_progress_fn progress, void *ctx, uint64_t *bytes,
                  a3_err *err)
{
    unsigned char *head = NULL;
    size_t head_len = 0, max_numel = 1;
    if (build_header(w, &head, &head_len)) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < w->n_t; i++) max_numel = w->t[i].numel > max_numel ? w->t[i].numel : max_numel;
    /* Host byte order: a3 only builds on little-endian machines (the
     * safetensors reader makes the same assumption). */
    float *f = a3_malloc_array(max_numel, sizeof(float));
    void *buf = a3_malloc_array(max_numel, sizeof(float));
    a3_atomic a = {0};
    int rc = !f || !buf ? a3_err_set(err, A3_ENOMEM, "%s: out of memory", path) : a3_atomic_open(&a, path, err);
    if (rc == A3_OK) rc = a3_atomic_write(&a, head, head_len, err);
    uint64_t total = head_len;
    for (size_t i = 0; i < w->n_t && rc == A3_OK; i++) {
        rc = write_tensor(&w->t[i], &a, f, buf, err);
        total += align_up(w->t[i].nbytes);
        if (rc == A3_OK && progress && progress(ctx, "write", (int64_t)i + 1, (int64_t)w->n_t))
            rc = a3_err_set(err, A3_ECANCELED, "%s: cancelled", path);
    }
    if (rc == A3_OK) rc = a3_atomic_commit(&a, err);
    else if (a.path) a3_atomic_abort(&a);
    if (rc == A3_OK && bytes) *bytes = total;
    free(head), free(f), free(buf);
    return rc;
}
