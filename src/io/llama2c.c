/* llama2c: memory-mapped reader for llama2.c float32 checkpoints (see
 * include/a3/llama2c.h for the layouts). Every header field is range
 * checked and the file size must match the layout exactly before any
 * pointer into the mapping is formed. */
#include "a3/llama2c.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "llama2.c checkpoints are little-endian and used in place"
#endif

/* Sanity caps: far above any llama2.c model, low enough that products of
 * two fields cannot approach SIZE_MAX on 64-bit before the checked sums. */
#define MAX_DIM (1 << 16)
#define MAX_HIDDEN (1 << 20)
#define MAX_LAYERS 1024
#define MAX_HEADS 1024
#define MAX_VOCAB (1 << 22)
#define MAX_SEQ (1 << 24)

static int32_t le_i32(const unsigned char *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v); /* host is little-endian (checked above) */
    return v;
}

/* Range check one header field. */
static int check_field(const char *path, const char *name, int32_t v, int32_t lo, int32_t hi,
                       a3_err *err)
{
    if (v < lo || v > hi)
        return a3_err_set(err, A3_EFORMAT, "%s: header: %s = %ld is out of range [%ld, %ld]", path,
                          name, (long)v, (long)lo, (long)hi);
    return A3_OK;
}

/* The 7 int32 params at p: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len. vocab_sign_ok: a negative vocab_size is legal
 * (legacy separate-classifier flag). */
static int parse_params(const char *path, const unsigned char *p, int vocab_sign_ok,
                        a3_llama2c_config *c, a3_err *err)
{
    int32_t v[7];
    for (int i = 0; i < 7; i++) v[i] = le_i32(p + 4 * i);
    int32_t vocab = v[5];
    if (vocab_sign_ok && vocab < 0 && vocab >= -MAX_VOCAB) {
        vocab = -vocab;
        c->shared_classifier = 0;
    }
    int rc;
    if ((rc = check_field(path, "dim", v[0], 1, MAX_DIM, err)) ||
        (rc = check_field(path, "hidden_dim", v[1], 1, MAX_HIDDEN, err)) ||
        (rc = check_field(path, "n_layers", v[2], 1, MAX_LAYERS, err)) ||
        (rc = check_field(path, "n_heads", v[3], 1, MAX_HEADS, err)) ||
        (rc = check_field(path, "n_kv_heads", v[4], 1, MAX_HEADS, err)) ||
        (rc = check_field(path, "vocab_size", vocab, 1, MAX_VOCAB, err)) ||
        (rc = check_field(path, "seq_len", v[6], 1, MAX_SEQ, err)))
        return rc;
    c->dim = v[0];
    c->hidden_dim = v[1];
    c->n_layers = v[2];
    c->n_heads = v[3];
    c->n_kv_heads = v[4];
    c->vocab_size = vocab;
    c->seq_len = v[6];
    return A3_OK;
}

/* Relations between fields that the forward pass relies on. */
static int check_shape(const char *path, a3_llama2c_config *c, a3_err *err)
{
    if (c->dim % c->n_heads)
        return a3_err_set(err, A3_EFORMAT, "%s: header: n_heads %d does not divide dim %d", path,
                          c->n_heads, c->dim);
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return a3_err_set(err, A3_EFORMAT, "%s: header: n_kv_heads %d does not divide n_heads %d",
                          path, c->n_kv_heads, c->n_heads);
    c->head_dim = c->dim / c->n_heads;
    if (c->head_dim % 2)
        return a3_err_set(err, A3_EFORMAT, "%s: header: head_dim %d (dim / n_heads) is odd; RoPE needs pairs",
                          path, c->head_dim);
    c->kv_dim = c->n_kv_heads * c->head_dim;
    return A3_OK;
}

/* Version-1/2 header ("ak42" magic). */
static int parse_versioned(const char *path, const unsigned char *p, size_t size,
                           a3_llama2c_config *c, a3_err *err)
{
    if (size < 8)
        return a3_err_set(err, A3_EFORMAT, "%s: truncated header (%zu bytes)", path, size);
    int32_t version = le_i32(p + 4);
    if (version == 2)
        return a3_err_set(err, A3_EUNSUPPORTED,
                          "%s: int8 (Q8_0, version 2) llama2.c checkpoints are not supported; "
                          "export float32 (version 0 or 1) instead", path);
    if (version != 1)
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: unknown llama2.c checkpoint version %ld",
                          path, (long)version);
    if (size < A3_LLAMA2C_V1_HEADER)
        return a3_err_set(err, A3_EFORMAT, "%s: truncated header (%zu of %d bytes)", path, size,
                          A3_LLAMA2C_V1_HEADER);
    c->version = 1;
    int rc = parse_params(path, p + 8, 0, c, err);
    if (rc) return rc;
    unsigned flag = p[36];
    if (flag > 1)
        return a3_err_set(err, A3_EFORMAT, "%s: header: shared_classifier = %u is not 0 or 1", path,
                          flag);
    c->shared_classifier = (int)flag;
    return A3_OK;
}

static int parse_header(const char *path, const unsigned char *p, size_t size,
                        a3_llama2c_config *c, a3_err *err)
{
    memset(c, 0, sizeof *c);
    c->shared_classifier = 1;
    if (size < 4)
        return a3_err_set(err, A3_EFORMAT, "%s: too short for a llama2.c header (%zu bytes)", path,
                          size);
    int rc;
    if ((uint32_t)le_i32(p) == A3_LLAMA2C_MAGIC) rc = parse_versioned(path, p, size, c, err);
    else if (size < A3_LLAMA2C_LEGACY_HEADER)
        rc = a3_err_set(err, A3_EFORMAT, "%s: truncated header (%zu of %d bytes)", path, size,
                        A3_LLAMA2C_LEGACY_HEADER);
    else rc = parse_params(path, p, 1, c, err);
    return rc ? rc : check_shape(path, c, err);
}

/* total += a * b * c elements, overflow sticky in *bad. */
static void add3(size_t *total, size_t a, size_t b, size_t c, int *bad)
{
    size_t ab, abc;
    if (a3_mul_size(a, b, &ab) || a3_mul_size(ab, c, &abc) || a3_add_size(*total, abc, total))
        *bad = 1;
}

size_t a3_llama2c_file_size(const a3_llama2c_config *c)
{
    size_t L = (size_t)c->n_layers, d = (size_t)c->dim, kv = (size_t)c->kv_dim;
    size_t h = (size_t)c->hidden_dim, V = (size_t)c->vocab_size, n = 0;
    int bad = 0;
    add3(&n, V, d, 1, &bad);      /* token embedding */
    add3(&n, 2 * L, d, 1, &bad);  /* rms_att, rms_ffn */
    add3(&n, 2 * L, d, d, &bad);  /* wq, wo */
    add3(&n, 2 * L, kv, d, &bad); /* wk, wv */
    add3(&n, 3 * L, h, d, &bad);  /* w1, w2, w3 */
    add3(&n, d, 1, 1, &bad);      /* rms_final */
    if (c->version == 0) add3(&n, (size_t)c->seq_len, (size_t)c->head_dim, 1, &bad); /* freq_cis */
    if (!c->shared_classifier) add3(&n, V, d, 1, &bad);
    size_t bytes, hdr = c->version == 0 ? A3_LLAMA2C_LEGACY_HEADER : A3_LLAMA2C_V1_HEADER;
    if (bad || a3_mul_size(n, sizeof(float), &bytes) || a3_add_size(bytes, hdr, &bytes)) return 0;
    return bytes;
}

/* Hand out the next n floats of the (already size-checked) data section. */
static const float *take(const float **cur, size_t n)
{
    const float *p = *cur;
    *cur += n;
    return p;
}

static void map_legacy(const a3_llama2c_config *c, const float *f, a3_llama2c_weights *w)
{
    size_t L = (size_t)c->n_layers, d = (size_t)c->dim, kv = (size_t)c->kv_dim;
    size_t h = (size_t)c->hidden_dim, V = (size_t)c->vocab_size;
    size_t half = (size_t)c->seq_len * (size_t)c->head_dim / 2;
    w->token_embedding = take(&f, V * d);
    w->rms_att = take(&f, L * d);
    w->wq = take(&f, L * d * d);
    w->wk = take(&f, L * kv * d);
    w->wv = take(&f, L * kv * d);
    w->wo = take(&f, L * d * d);
    w->rms_ffn = take(&f, L * d);
    w->w1 = take(&f, L * h * d);
    w->w2 = take(&f, L * d * h);
    w->w3 = take(&f, L * h * d);
    w->rms_final = take(&f, d);
    w->freq_cis_real = take(&f, half);
    w->freq_cis_imag = take(&f, half);
    w->wcls = c->shared_classifier ? w->token_embedding : take(&f, V * d);
}

/* Order of export.py version1_export: norms first, then the matrices. */
static void map_v1(const a3_llama2c_config *c, const float *f, a3_llama2c_weights *w)
{
    size_t L = (size_t)c->n_layers, d = (size_t)c->dim, kv = (size_t)c->kv_dim;
    size_t h = (size_t)c->hidden_dim, V = (size_t)c->vocab_size;
    w->rms_att = take(&f, L * d);
    w->rms_ffn = take(&f, L * d);
    w->rms_final = take(&f, d);
    w->token_embedding = take(&f, V * d);
    w->wq = take(&f, L * d * d);
    w->wk = take(&f, L * kv * d);
    w->wv = take(&f, L * kv * d);
    w->wo = take(&f, L * d * d);
    w->w1 = take(&f, L * h * d);
    w->w2 = take(&f, L * d * h);
    w->w3 = take(&f, L * h * d);
    w->freq_cis_real = w->freq_cis_imag = NULL;
    w->wcls = c->shared_classifier ? w->token_embedding : take(&f, V * d);
}

static int check_size(const char *path, const a3_llama2c_config *c, size_t size, a3_err *err)
{
    size_t want = a3_llama2c_file_size(c);
    if (want == 0)
        return a3_err_set(err, A3_EFORMAT, "%s: header: dimensions overflow the address space", path);
    if (size != want)
        return a3_err_set(err, A3_EFORMAT,
                          "%s: file is %zu bytes but the header (version %d, dim %d, hidden_dim %d, "
                          "n_layers %d, n_heads %d, n_kv_heads %d, vocab %d, seq_len %d, %s classifier) "
                          "implies %zu bytes (%s)",
                          path, size, c->version, c->dim, c->hidden_dim, c->n_layers, c->n_heads,
                          c->n_kv_heads, c->vocab_size, c->seq_len,
                          c->shared_classifier ? "shared" : "separate", want,
                          size < want ? "truncated" : "trailing bytes");
    return A3_OK;
}

/* Map the whole file read-only; *map is NULL for an empty file. */
static int map_file(const char *path, void **map, size_t *size, a3_err *err)
{
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return a3_err_set(err, A3_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int rc = A3_OK;
    if (fstat(fd, &st) != 0) rc = a3_err_set(err, A3_EIO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode)) rc = a3_err_set(err, A3_EIO, "%s: not a regular file", path);
    else if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX)
        rc = a3_err_set(err, A3_EFORMAT, "%s: file too large to map", path);
    if (rc == A3_OK && st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) rc = a3_err_set(err, A3_EIO, "%s: mmap failed: %s", path, strerror(errno));
        else {
            *map = p;
            *size = (size_t)st.st_size;
        }
    }
    close(fd);
    return rc;
}

void a3_llama2c_close(a3_llama2c *m)
{
    if (!m) return;
    if (m->map) munmap(m->map, m->map_size);
    free(m->path);
    free(m);
}

int a3_llama2c_open(const char *path, a3_llama2c **out, a3_err *err)
{
    *out = NULL;
    a3_llama2c *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    }
    int rc = map_file(path, &m->map, &m->map_size, err);
    if (rc == A3_OK) rc = parse_header(path, m->map, m->map_size, &m->config, err);
    if (rc == A3_OK) rc = check_size(path, &m->config, m->map_size, err);
    if (rc) {
        a3_llama2c_close(m);
        return rc;
    }
    const unsigned char *base = m->map;
    if (m->config.version == 0)
        map_legacy(&m->config, (const float *)(base + A3_LLAMA2C_LEGACY_HEADER), &m->w);
    else map_v1(&m->config, (const float *)(base + A3_LLAMA2C_V1_HEADER), &m->w);
    *out = m;
    return A3_OK;
}

void a3_llama2c_permute_rows(const float *src, float *dst, int n_heads, int head_dim, int cols)
{
    size_t hd = (size_t)head_dim, half = hd / 2, nc = (size_t)cols;
    for (size_t h = 0; h < (size_t)n_heads; h++) {
        const float *s = src + h * hd * nc;
        float *d = dst + h * hd * nc;
        for (size_t i = 0; i < half; i++) {
            memcpy(d + i * nc, s + (2 * i) * nc, nc * sizeof(float));
            memcpy(d + (half + i) * nc, s + (2 * i + 1) * nc, nc * sizeof(float));
        }
    }
}
