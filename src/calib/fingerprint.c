/* fingerprint: a3_model_fingerprint (the hashed byte stream is specified in
 * include/a3/cache.h). Reads config.json and the safetensors headers only;
 * tensor data pages are never touched, so it takes milliseconds even for a
 * 100 GB model. */
#include <stdlib.h>
#include <string.h>

#include "a3/cache.h"
#include "a3/safetensors.h"
#include "a3/sha256.h"

#define CONFIG_MAX ((size_t)16 << 20) /* config.json is a few KB; refuse junk */

static void hash_u64(a3_sha256_ctx *h, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    a3_sha256_update(h, b, sizeof b);
}

/* Length-prefixed, so no two different streams of fields hash alike. */
static void hash_bytes(a3_sha256_ctx *h, const void *p, size_t n)
{
    hash_u64(h, (uint64_t)n);
    a3_sha256_update(h, p, n);
}

static int cmp_by_name(const void *a, const void *b)
{
    const a3_st_tensor *x = *(const a3_st_tensor *const *)a, *y = *(const a3_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static void hash_tensor(a3_sha256_ctx *h, const a3_st_tensor *t)
{
    const char *dt = a3_dtype_name(t->dtype);
    hash_bytes(h, t->name, strlen(t->name));
    hash_bytes(h, dt, strlen(dt));
    hash_u64(h, (uint64_t)t->ndim);
    for (int i = 0; i < t->ndim; i++) hash_u64(h, (uint64_t)t->shape[i]);
    hash_u64(h, (uint64_t)t->nbytes);
}

/* The tensors in name order, so shard layout and header order do not matter. */
static int hash_tensors(a3_sha256_ctx *h, const a3_st_set *st, const char *dir, a3_err *err)
{
    size_t n = a3_st_count(st);
    const a3_st_tensor **v = a3_malloc_array(n ? n : 1, sizeof *v);
    if (!v) return a3_err_set(err, A3_ENOMEM, "%s: fingerprint: out of memory", dir);
    for (size_t i = 0; i < n; i++) v[i] = a3_st_get(st, i);
    qsort(v, n, sizeof *v, cmp_by_name);
    hash_u64(h, (uint64_t)n);
    for (size_t i = 0; i < n; i++) hash_tensor(h, v[i]);
    free(v);
    return A3_OK;
}

int a3_model_fingerprint(const char *model_dir, char hex[65], a3_err *err)
{
    char *cfg_path = a3_path_join(model_dir, "config.json"), *cfg = NULL;
    size_t len = 0;
    if (!cfg_path) return a3_err_set(err, A3_ENOMEM, "%s: fingerprint: out of memory", model_dir);
    int rc = a3_read_file(cfg_path, CONFIG_MAX, &cfg, &len, err);
    free(cfg_path);
    if (rc) return rc;
    a3_st_set *st = NULL;
    rc = a3_st_open_dir(model_dir, &st, err);
    if (rc == A3_OK) {
        a3_sha256_ctx h;
        a3_sha256_init(&h);
        hash_bytes(&h, cfg, len);
        rc = hash_tensors(&h, st, model_dir, err);
        uint8_t d[A3_SHA256_BYTES];
        a3_sha256_final(&h, d);
        if (rc == A3_OK) a3_sha256_hex(d, hex);
    }
    a3_st_free(st);
    free(cfg);
    return rc;
}
