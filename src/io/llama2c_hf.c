/* llama2c -> Hugging Face directory (see a3_llama2c_convert in
 * include/a3/llama2c.h). The output is assembled in "<out>.tmp.<pid>" and
 * renamed into place so a reader never sees a half-written model. */
#define _GNU_SOURCE /* renameat2 / RENAME_NOREPLACE where glibc has them */
#include "a3/llama2c.h"
#include "a3/cleanup.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "a3/tokenizer.h"

/* ---- config.json ---- */

static const char *torch_dtype_name(a3_dtype dt)
{
    return dt == A3_DT_F16 ? "float16" : dt == A3_DT_BF16 ? "bfloat16" : "float32";
}

/* Build the config object; NULL on allocation failure. */
static cJSON *config_json(const a3_llama2c_config *c, a3_dtype dt)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    if (!o || !arch || !cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"))) {
        cJSON_Delete(o);
        return NULL;
    }
    int ok = cJSON_AddStringToObject(o, "model_type", "llama") &&
             cJSON_AddNumberToObject(o, "hidden_size", c->dim) &&
             cJSON_AddNumberToObject(o, "intermediate_size", c->hidden_dim) &&
             cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads) &&
             cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_heads) &&
             cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers) &&
             cJSON_AddNumberToObject(o, "head_dim", c->head_dim) &&
             cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size) &&
             cJSON_AddNumberToObject(o, "max_position_embeddings", c->seq_len) &&
             /* llama2.c run.c hard-codes eps 1e-5 and theta 10000 */
             cJSON_AddNumberToObject(o, "rms_norm_eps", 1e-5) &&
             cJSON_AddNumberToObject(o, "rope_theta", 10000.0) &&
             cJSON_AddStringToObject(o, "hidden_act", "silu") &&
             cJSON_AddBoolToObject(o, "attention_bias", 0) &&
             cJSON_AddBoolToObject(o, "mlp_bias", 0) &&
             cJSON_AddBoolToObject(o, "tie_word_embeddings", c->shared_classifier) &&
             /* llama2.c tokenizers: 0 <unk>, 1 <s>, 2 </s> */
             cJSON_AddNumberToObject(o, "bos_token_id", 1) &&
             cJSON_AddNumberToObject(o, "eos_token_id", 2) &&
             cJSON_AddStringToObject(o, "torch_dtype", torch_dtype_name(dt));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int write_config(const a3_llama2c_config *c, a3_dtype dt, const char *dir, a3_err *err)
{
    char *path = a3_path_join(dir, "config.json");
    cJSON *o = config_json(c, dt);
    char *text = o ? cJSON_Print(o) : NULL;
    int rc;
    if (!path || !text) rc = a3_err_set(err, A3_ENOMEM, "%s: out of memory writing config.json", dir);
    else {
        size_t n = strlen(text);
        text[n] = '\n'; /* replace the NUL: files end with a newline */
        rc = a3_write_file_atomic(path, text, n + 1, err);
    }
    free(text);
    cJSON_Delete(o);
    free(path);
    return rc;
}

/* ---- model.safetensors ---- */

typedef struct {
    a3_st_writer *w;
    a3_dtype dt;
    const a3_llama2c_convert_opts *opts;
    int64_t done, total; /* tensors, for progress */
} st_job;

static int add_tensor(st_job *j, const char *name, int ndim, int64_t rows, int64_t cols,
                      const float *data, a3_err *err)
{
    int64_t shape[2] = {rows, cols};
    if (ndim == 1) shape[0] = cols;
    int rc = a3_st_writer_add(j->w, name, j->dt, ndim, shape, data, err);
    if (rc) return rc;
    j->done++;
    if (j->opts && j->opts->progress &&
        j->opts->progress(j->opts->progress_ctx, "convert", j->done, j->total))
        return a3_err_set(err, A3_ECANCELED, "convert: cancelled");
    return A3_OK;
}

/* wq/wk need their rows reordered for HF's rotate-half RoPE; the scratch
 * buffer holds one permuted matrix at a time. */
static int add_permuted(st_job *j, const char *name, const float *src, int n_heads, int head_dim,
                        int cols, float *scratch, a3_err *err)
{
    a3_llama2c_permute_rows(src, scratch, n_heads, head_dim, cols);
    return add_tensor(j, name, 2, (int64_t)n_heads * head_dim, cols, scratch, err);
}

static int add_layer(st_job *j, const a3_llama2c *m, int l, float *scratch, a3_err *err)
{
    const a3_llama2c_config *c = &m->config;
    const a3_llama2c_weights *w = &m->w;
    size_t L = (size_t)l, d = (size_t)c->dim, kv = (size_t)c->kv_dim, h = (size_t)c->hidden_dim;
    char n[9][96];
    static const char *const FMT[9] = {
        "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj.weight",
        "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
        "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.post_attention_layernorm.weight",
        "model.layers.%d.mlp.gate_proj.weight", "model.layers.%d.mlp.up_proj.weight",
        "model.layers.%d.mlp.down_proj.weight"};
    for (int i = 0; i < 9; i++) snprintf(n[i], sizeof n[i], FMT[i], l);
    int rc;
    if ((rc = add_tensor(j, n[0], 1, 0, c->dim, w->rms_att + L * d, err)) ||
        (rc = add_permuted(j, n[1], w->wq + L * d * d, c->n_heads, c->head_dim, c->dim, scratch, err)) ||
        (rc = add_permuted(j, n[2], w->wk + L * kv * d, c->n_kv_heads, c->head_dim, c->dim, scratch, err)) ||
        (rc = add_tensor(j, n[3], 2, c->kv_dim, c->dim, w->wv + L * kv * d, err)) ||
        (rc = add_tensor(j, n[4], 2, c->dim, c->dim, w->wo + L * d * d, err)) ||
        (rc = add_tensor(j, n[5], 1, 0, c->dim, w->rms_ffn + L * d, err)) ||
        (rc = add_tensor(j, n[6], 2, c->hidden_dim, c->dim, w->w1 + L * h * d, err)) ||
        (rc = add_tensor(j, n[7], 2, c->hidden_dim, c->dim, w->w3 + L * h * d, err)) ||
        (rc = add_tensor(j, n[8], 2, c->dim, c->hidden_dim, w->w2 + L * d * h, err)))
        return rc;
    return A3_OK;
}

static int add_all(st_job *j, const a3_llama2c *m, float *scratch, a3_err *err)
{
    const a3_llama2c_config *c = &m->config;
    int rc = add_tensor(j, "model.embed_tokens.weight", 2, c->vocab_size, c->dim,
                        m->w.token_embedding, err);
    for (int l = 0; rc == A3_OK && l < c->n_layers; l++) rc = add_layer(j, m, l, scratch, err);
    if (rc == A3_OK) rc = add_tensor(j, "model.norm.weight", 1, 0, c->dim, m->w.rms_final, err);
    if (rc == A3_OK && !c->shared_classifier)
        rc = add_tensor(j, "lm_head.weight", 2, c->vocab_size, c->dim, m->w.wcls, err);
    return rc;
}

static int write_weights(const a3_llama2c *m, a3_dtype dt, const a3_llama2c_convert_opts *opts,
                         const char *dir, a3_err *err)
{
    const a3_llama2c_config *c = &m->config;
    st_job j = {a3_st_writer_new(), dt, opts, 0, 2 + 9 * (int64_t)c->n_layers + !c->shared_classifier};
    /* largest permuted matrix is wq: (dim, dim) */
    float *scratch = a3_malloc_array((size_t)c->dim * (size_t)c->dim, sizeof(float));
    char *path = a3_path_join(dir, "model.safetensors");
    int rc;
    if (!j.w || !scratch || !path) rc = a3_err_set(err, A3_ENOMEM, "%s: out of memory converting", m->path);
    else rc = add_all(&j, m, scratch, err);
    free(scratch); /* the writer holds its own copies */
    if (rc == A3_OK) rc = a3_st_writer_save(j.w, path, err);
    a3_st_writer_free(j.w);
    free(path);
    return rc;
}

/* ---- output directory ---- */

/* Remove the entries of a directory we own (no recursion: a subdirectory
 * makes this fail rather than delete more than expected), then the
 * directory itself. */
static int remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int bad = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0) bad = 1;
    }
    closedir(d);
    return (rmdir(dir) != 0 || bad) ? -1 : 0;
}

/* An existing output may be replaced (with force) only if it is a regular
 * file or looks like a model directory, so a mistyped -o cannot wipe an
 * unrelated directory. */
static int check_replaceable(const char *out, const struct stat *st, a3_err *err)
{
    if (S_ISREG(st->st_mode)) return A3_OK;
    if (!S_ISDIR(st->st_mode))
        return a3_err_set(err, A3_EINVAL, "%s: exists and is not a file or directory; not replacing it", out);
    char *cfg = a3_path_join(out, "config.json");
    if (!cfg) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", out);
    int has_cfg = access(cfg, F_OK) == 0;
    free(cfg);
    DIR *d = opendir(out);
    if (!d) return a3_err_set(err, A3_EIO, "%s: cannot list: %s", out, strerror(errno));
    int subdir = 0;
    struct dirent *e;
    while (!subdir && (e = readdir(d)) != NULL) {
        struct stat es;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (fstatat(dirfd(d), e->d_name, &es, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(es.st_mode)) subdir = 1;
    }
    closedir(d);
    if (!has_cfg || subdir)
        return a3_err_set(err, A3_EINVAL,
                          "%s: exists and does not look like a model directory (%s); not replacing it",
                          out, subdir ? "it has subdirectories" : "no config.json");
    return A3_OK;
}

/* 1: out exists (and may be replaced), 0: absent, <0: error. */
static int check_output(const char *out, int force, a3_err *err)
{
    struct stat st;
    if (lstat(out, &st) != 0) {
        if (errno == ENOENT) return 0;
        return a3_err_set(err, A3_EIO, "%s: cannot stat: %s", out, strerror(errno));
    }
    if (!force)
        return a3_err_set(err, A3_EINVAL, "%s: already exists; refusing to overwrite it", out);
    int rc = check_replaceable(out, &st, err);
    return rc ? rc : 1;
}

static int remove_any(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return -1;
    return S_ISDIR(st.st_mode) ? remove_flat_dir(path) : unlink(path);
}

/* Rename without replacing an existing target where the kernel allows it
 * (closes the window between check_output and the rename). */
static int rename_noreplace(const char *from, const char *to)
{
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS) return -1;
#endif
    struct stat st;
    if (lstat(to, &st) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(from, to);
}

/* Move the finished tmp dir to out; with an existing out (force), move that
 * aside first and delete it only after the new one is in place. */
static int install(const char *tmp, const char *out, int exists, a3_err *err)
{
    if (!exists) {
        if (rename_noreplace(tmp, out) != 0)
            return a3_err_set(err, A3_EIO, "%s: cannot create: %s", out, strerror(errno));
        return A3_OK;
    }
    size_t n = strlen(out) + 32;
    char *old = malloc(n);
    if (!old) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", out);
    snprintf(old, n, "%s.old.%ld", out, (long)getpid());
    int rc = A3_OK;
    if (rename(out, old) != 0)
        rc = a3_err_set(err, A3_EIO, "%s: cannot move the existing output aside: %s", out, strerror(errno));
    else if (rename_noreplace(tmp, out) != 0) {
        int e = errno;
        if (rename(old, out) == 0) /* put the original back */
            rc = a3_err_set(err, A3_EIO, "%s: cannot create: %s", out, strerror(e));
        else rc = a3_err_set(err, A3_EIO, "%s: cannot create: %s (the original is now at %s)", out,
                             strerror(e), old);
    } else if (remove_any(old) != 0)
        rc = a3_err_set(err, A3_EIO, "%s: converted, but the replaced output remains at %s", out, old);
    free(old);
    return rc;
}

/* Flush the directory entries so the renamed files survive a crash. */
static int sync_dir(const char *dir, a3_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return a3_err_set(err, A3_EIO, "%s: cannot open: %s", dir, strerror(errno));
    int rc = fsync(fd) == 0 ? A3_OK : a3_err_set(err, A3_EIO, "%s: fsync failed: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

/* A vocabulary tokenizer.json cannot express (invalid UTF-8 pieces, byte
 * pieces out of place) is the input's fault: the error names src, the
 * user's tokenizer.bin, not the temporary file being written. */
static int write_tokenizer(const a3_tokenizer *tok, const char *src, const char *dir, a3_err *err)
{
    char *path = a3_path_join(dir, "tokenizer.json");
    if (!path) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", dir);
    int rc = a3_tok_save_hf(tok, path, err);
    size_t pl = strlen(path);
    if ((rc == A3_EUNSUPPORTED || rc == A3_EFORMAT) && !strncmp(err->msg, path, pl) && err->msg[pl] == ':') {
        char detail[sizeof err->msg];
        snprintf(detail, sizeof detail, "%s", err->msg + pl + (err->msg[pl + 1] == ' ' ? 2 : 1));
        a3_err_set(err, rc, "%s: %s (cannot be written as tokenizer.json)", src, detail);
    }
    free(path);
    return rc;
}

/* Fill the tmp directory; the caller removes it on failure. */
static int write_all(const a3_llama2c *m, const a3_tokenizer *tok, const char *tok_src, a3_dtype dt,
                     const a3_llama2c_convert_opts *opts, const char *tmp, a3_err *err)
{
    int rc = write_config(&m->config, dt, tmp, err);
    if (rc == A3_OK) rc = write_weights(m, dt, opts, tmp, err);
    if (rc == A3_OK && tok) rc = write_tokenizer(tok, tok_src, tmp, err);
    if (rc == A3_OK) rc = sync_dir(tmp, err);
    return rc;
}

static int convert_into(const a3_llama2c *m, const a3_tokenizer *tok, const char *tok_src, const char *out, int exists,
                        const a3_llama2c_convert_opts *opts, a3_err *err)
{
    a3_dtype dt = opts ? opts->dtype : A3_DT_F32;
    char *tmp = a3_tmp_path(out);
    if (!tmp) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", out);
    int rc = A3_OK;
    if (mkdir(tmp, 0755) != 0) rc = a3_err_set(err, A3_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    else {
        a3_cleanup_add(tmp); /* removed on SIGINT/SIGTERM (a3/cleanup.h) */
        rc = write_all(m, tok, tok_src, dt, opts, tmp, err);
        if (rc == A3_OK) rc = install(tmp, out, exists, err);
        if (rc != A3_OK) remove_flat_dir(tmp);
        a3_cleanup_forget(tmp);
    }
    free(tmp);
    return rc;
}

int a3_llama2c_convert(const char *ckpt_path, const char *tok_path, const char *out_dir,
                       const a3_llama2c_convert_opts *opts, a3_err *err)
{
    a3_dtype dt = opts ? opts->dtype : A3_DT_F32;
    if (dt != A3_DT_F32 && dt != A3_DT_F16 && dt != A3_DT_BF16)
        return a3_err_set(err, A3_EINVAL, "%s: output dtype must be F32, F16 or BF16", out_dir);
    int exists = check_output(out_dir, opts && opts->force, err);
    if (exists < 0) return exists;
    a3_llama2c *m = NULL;
    a3_tokenizer *tok = NULL;
    int rc = a3_llama2c_open(ckpt_path, &m, err);
    if (rc == A3_OK && tok_path) rc = a3_tok_load_llama2c(tok_path, m->config.vocab_size, &tok, err);
    if (rc == A3_OK) rc = convert_into(m, tok, tok_path, out_dir, exists, opts, err);
    if (tok) a3_tok_free(tok);
    a3_llama2c_close(m);
    return rc;
}
