/* checkpoint: see checkpoint.h. */
#include "checkpoint.h"
#include "a3/cleanup.h"

#include "a3/calib.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t ckpt_hash(const void *data, size_t n, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

void ckpt_kernel_copy(char *dst, size_t n, const char *src)
{
    size_t j = 0;
    for (; *src && j + 1 < n; src++)
        if (isalnum((unsigned char)*src) || *src == '+' || *src == '_' || *src == '-') dst[j++] = *src;
    dst[j] = 0;
}

static size_t elem_size(a3_cache_section s)
{
    return (s == A3_SEC_QK_ORDER || s == A3_SEC_MLP_ORDER) ? sizeof(int32_t) : sizeof(double);
}

static char *layer_path(const char *dir, int layer)
{
    char name[32];
    snprintf(name, sizeof name, "layer-%03d.bin", layer);
    return a3_path_join(dir, name);
}

static int save_layer(const char *dir, const a3_cache *c, int layer, a3_err *err)
{
    char *path = layer_path(dir, layer);
    if (!path) return a3_err_set(err, A3_ENOMEM, "checkpoint: out of memory");
    a3_atomic a;
    uint64_t h = CKPT_HASH_INIT;
    int rc = a3_atomic_open(&a, path, err);
    for (int s = 0; rc == A3_OK && s < A3_SEC_COUNT; s++) {
        size_t bytes = a3_cache_section_len(c, (a3_cache_section)s) * elem_size((a3_cache_section)s);
        const void *p = a3_cache_section_ptr(c, layer, (a3_cache_section)s);
        if (!bytes || !p) continue;
        h = ckpt_hash(p, bytes, h);
        rc = a3_atomic_write(&a, p, bytes, err);
    }
    if (rc == A3_OK) rc = a3_atomic_write(&a, &h, sizeof h, err);
    if (rc == A3_OK) rc = a3_atomic_commit(&a, err);
    else a3_atomic_abort(&a);
    free(path);
    return rc;
}

static int load_layer(const char *dir, a3_cache *c, int layer, a3_err *err)
{
    char *path = layer_path(dir, layer);
    if (!path) return a3_err_set(err, A3_ENOMEM, "checkpoint: out of memory");
    FILE *f = fopen(path, "rb");
    int rc = f ? A3_OK : a3_err_set(err, A3_EIO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t h = CKPT_HASH_INIT, stored = 0;
    for (int s = 0; rc == A3_OK && s < A3_SEC_COUNT; s++) {
        size_t bytes = a3_cache_section_len(c, (a3_cache_section)s) * elem_size((a3_cache_section)s);
        void *p = a3_cache_section_ptr(c, layer, (a3_cache_section)s);
        if (!bytes || !p) continue;
        if (fread(p, 1, bytes, f) != bytes) rc = a3_err_set(err, A3_EFORMAT, "%s: truncated", path);
        else h = ckpt_hash(p, bytes, h);
    }
    if (rc == A3_OK && (fread(&stored, sizeof stored, 1, f) != 1 || stored != h || fgetc(f) != EOF))
        rc = a3_err_set(err, A3_EFORMAT, "%s: checksum mismatch or wrong size", path);
    if (f) fclose(f);
    free(path);
    return rc;
}

static int save_meta(const char *dir, const ckpt_meta *m, a3_err *err)
{
    char text[512], hash[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)m->windows_hash);
    int n = snprintf(text, sizeof text,
                     "{\"layers_done\": %d, \"n_windows\": %d, \"seqlen\": %d, \"mlp_full\": %d, "
                     "\"windows_hash\": \"%s\", \"created\": \"%s\", \"kernel\": \"%s\"}\n",
                     m->layers_done, m->n_windows, m->seqlen, m->mlp_full, hash, m->created, m->kernel);
    char *path = a3_path_join(dir, "meta.json");
    if (!path) return a3_err_set(err, A3_ENOMEM, "checkpoint: out of memory");
    int rc = a3_write_file_atomic(path, text, (size_t)n, err);
    free(path);
    return rc;
}

int ckpt_save(const char *dir, const a3_cache *c, int layer, const float *hidden, size_t n_floats,
              const ckpt_meta *meta, a3_err *err)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return a3_err_set(err, A3_EIO, "%s: cannot create checkpoint directory: %s", dir, strerror(errno));
    int rc = save_layer(dir, c, layer, err);
    char *hp = a3_path_join(dir, "hidden.f32");
    if (!hp) return a3_err_set(err, A3_ENOMEM, "checkpoint: out of memory");
    if (rc == A3_OK) rc = a3_write_file_atomic(hp, hidden, n_floats * sizeof(float), err);
    free(hp);
    return rc ? rc : save_meta(dir, meta, err);
}

static int json_int(const cJSON *o, const char *k, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9) return -1;
    *out = (int)v->valuedouble;
    return 0;
}

int ckpt_load_meta(const char *dir, ckpt_meta *m, a3_err *err)
{
    char *path = a3_path_join(dir, "meta.json"), *text = NULL;
    if (!path) return a3_err_set(err, A3_ENOMEM, "checkpoint: out of memory");
    memset(m, 0, sizeof *m);
    int rc = a3_read_file(path, 1 << 16, &text, NULL, err);
    cJSON *o = rc ? NULL : cJSON_Parse(text);
    const cJSON *h = o ? cJSON_GetObjectItemCaseSensitive(o, "windows_hash") : NULL;
    const cJSON *cr = o ? cJSON_GetObjectItemCaseSensitive(o, "created") : NULL;
    if (rc == A3_OK && (!o || json_int(o, "layers_done", &m->layers_done) || json_int(o, "n_windows", &m->n_windows) ||
                        json_int(o, "seqlen", &m->seqlen) || json_int(o, "mlp_full", &m->mlp_full) ||
                        !cJSON_IsString(h) || !cJSON_IsString(cr) || strlen(cr->valuestring) >= sizeof m->created))
        rc = a3_err_set(err, A3_EFORMAT, "%s: malformed checkpoint metadata", path);
    if (rc == A3_OK) {
        m->windows_hash = strtoull(h->valuestring, NULL, 16);
        strcpy(m->created, cr->valuestring);
        /* Absent in checkpoints older than the field: kernel unknown. */
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(o, "kernel");
        if (cJSON_IsString(k)) ckpt_kernel_copy(m->kernel, sizeof m->kernel, k->valuestring);
    }
    cJSON_Delete(o);
    free(text);
    free(path);
    return rc;
}

int ckpt_load_state(const char *dir, a3_cache *c, const ckpt_meta *meta, float *hidden, size_t n_floats,
                    a3_err *err)
{
    for (int l = 0; l < meta->layers_done; l++) {
        int rc = load_layer(dir, c, l, err);
        if (rc) return rc;
    }
    char *hp = a3_path_join(dir, "hidden.f32");
    if (!hp) return a3_err_set(err, A3_ENOMEM, "checkpoint: out of memory");
    FILE *f = fopen(hp, "rb");
    int rc = A3_OK;
    if (!f) rc = a3_err_set(err, A3_EIO, "%s: cannot open: %s", hp, strerror(errno));
    else if (fread(hidden, sizeof(float), n_floats, f) != n_floats || fgetc(f) != EOF)
        rc = a3_err_set(err, A3_EFORMAT, "%s: wrong size for the recorded batch", hp);
    if (f) fclose(f);
    free(hp);
    return rc;
}

void ckpt_remove(const char *dir, int n_layers)
{
    (void)n_layers;
    /* Every file: also the temporaries of a run killed mid-write
     * (hidden.f32.tmp.<pid>), which no name list would cover. The
     * directory is a3's own ("<CACHE>.ckpt", flat). */
    a3_cleanup_remove(dir);
}

void a3_calib_checkpoint_remove(const char *dir, int n_layers) { ckpt_remove(dir, n_layers); }

int a3_calib_checkpoint_layers(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return -1;
    ckpt_meta m;
    return ckpt_load_meta(dir, &m, NULL) == A3_OK ? m.layers_done : 0;
}
