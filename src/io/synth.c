/* synth: random-weight models (see include/a3/synth.h). */
#include "a3/synth.h"
#include "a3/cleanup.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int d, layers, heads, kv, ff, vocab, ctx;
} preset;

static const preset PRESETS[] = {
    {"tiny", 32, 2, 4, 4, 64, 96, 64},
    {"tiny-gqa", 32, 2, 4, 2, 64, 96, 64},
    {"llama-1b", 2048, 16, 32, 8, 8192, 32000, 2048},
    {"llama-7b", 4096, 32, 32, 32, 11008, 32000, 4096},
    {"llama-13b", 5120, 40, 40, 40, 13824, 32000, 4096},
    {"llama-70b", 8192, 80, 64, 8, 28672, 32000, 4096},
};

int a3_synth_preset(const char *name, a3_synth_spec *s, a3_err *err)
{
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++) {
        const preset *p = &PRESETS[i];
        if (strcmp(p->name, name)) continue;
        memset(s, 0, sizeof *s);
        s->arch = A3_ARCH_LLAMA;
        s->d = p->d, s->n_layers = p->layers, s->n_heads = p->heads, s->n_kv_heads = p->kv;
        s->head_dim = p->d / p->heads, s->d_ff = p->ff, s->vocab = p->vocab, s->max_seq = p->ctx;
        s->rope_theta = 10000.0;
        s->dtype = p->d >= 1024 ? A3_DT_F16 : A3_DT_F32;
        s->seed = 1;
        return A3_OK;
    }
    return a3_err_set(err, A3_EINVAL, "synth: unknown preset '%s' (tiny, tiny-gqa, llama-1b, llama-7b, llama-13b, llama-70b)", name);
}

/* Box-Muller over a3_splitmix64: deterministic for a seed, any platform. */
static double gauss(uint64_t *s)
{
    double u1 = ((double)(a3_splitmix64(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(a3_splitmix64(s) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* One tensor: declared (pass 0), or generated and streamed out in pieces
 * (pass 1), so that even a 70B-shaped model needs only a small buffer. */
typedef struct {
    a3_st_stream *w;
    int pass;
    float *buf; /* SYNTH_CHUNK floats */
} synth_out;

#define SYNTH_CHUNK ((size_t)1 << 20)

static int add_random(synth_out *w, const a3_synth_spec *sp, uint64_t *rng, const char *name,
                      int64_t rows, int64_t cols, double mean, double sd, a3_err *err)
{
    int64_t shape[2] = {rows, cols};
    if (w->pass == 0) return a3_st_stream_declare(w->w, name, sp->dtype, cols ? 2 : 1, shape, err);
    size_t n = (size_t)rows * (size_t)(cols ? cols : 1);
    int rc = A3_OK;
    for (size_t at = 0; rc == A3_OK && at < n; at += SYNTH_CHUNK) {
        size_t k = n - at < SYNTH_CHUNK ? n - at : SYNTH_CHUNK;
        for (size_t i = 0; i < k; i++) w->buf[i] = (float)(mean + sd * gauss(rng));
        rc = a3_st_stream_put(w->w, name, w->buf, k, err);
    }
    return rc;
}

static int add_layer(synth_out *w, const a3_synth_spec *s, uint64_t *rng, int l, a3_err *err)
{
    char nm[160];
    int64_t d = s->d, q = (int64_t)s->n_heads * s->head_dim, kv = (int64_t)s->n_kv_heads * s->head_dim;
    double sd_in = 1.0 / sqrt((double)d), sd_o = 1.0 / sqrt((double)q), sd_f = 1.0 / sqrt((double)s->d_ff);
    struct {
        const char *suffix;
        int64_t rows, cols;
        double mean, sd;
    } t[] = {
        {"input_layernorm.weight", d, 0, 1.0, 0.1},
        {"self_attn.q_proj.weight", q, d, 0, sd_in},
        {"self_attn.k_proj.weight", kv, d, 0, sd_in},
        {"self_attn.v_proj.weight", kv, d, 0, sd_in},
        {"self_attn.o_proj.weight", d, q, 0, sd_o},
        {"post_attention_layernorm.weight", d, 0, 1.0, 0.1},
        {"mlp.gate_proj.weight", s->d_ff, d, 0, sd_in},
        {"mlp.up_proj.weight", s->d_ff, d, 0, sd_in},
        {"mlp.down_proj.weight", d, s->d_ff, 0, sd_f},
        {"self_attn.q_proj.bias", q, 0, 0, 0.1},
        {"self_attn.k_proj.bias", kv, 0, 0, 0.1},
        {"self_attn.v_proj.bias", kv, 0, 0, 0.1},
    };
    int n = s->qkv_bias ? 12 : 9;
    for (int i = 0; i < n; i++) {
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, t[i].suffix);
        int rc = add_random(w, s, rng, nm, t[i].rows, t[i].cols, t[i].mean, t[i].sd, err);
        if (rc) return rc;
    }
    return A3_OK;
}

static int write_config(const char *dir, const a3_synth_spec *s, a3_err *err)
{
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    if (!o || !arr) {
        cJSON_Delete(o);
        cJSON_Delete(arr);
        return a3_err_set(err, A3_ENOMEM, "synth: out of memory");
    }
    cJSON_AddItemToArray(arr, cJSON_CreateString(a3_arch_name(s->arch)));
    cJSON_AddItemToObject(o, "architectures", arr);
    cJSON_AddStringToObject(o, "model_type", s->arch == A3_ARCH_QWEN2 ? "qwen2" : s->arch == A3_ARCH_MISTRAL ? "mistral" : "llama");
    cJSON_AddNumberToObject(o, "hidden_size", s->d);
    cJSON_AddNumberToObject(o, "intermediate_size", s->d_ff);
    cJSON_AddNumberToObject(o, "num_hidden_layers", s->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", s->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", s->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", s->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", s->vocab);
    cJSON_AddNumberToObject(o, "max_position_embeddings", s->max_seq);
    cJSON_AddNumberToObject(o, "rms_norm_eps", 1e-5);
    cJSON_AddNumberToObject(o, "rope_theta", s->rope_theta);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddBoolToObject(o, "tie_word_embeddings", s->tie_embeddings);
    cJSON_AddNumberToObject(o, "bos_token_id", 1);
    cJSON_AddNumberToObject(o, "eos_token_id", 2);
    cJSON_AddStringToObject(o, "torch_dtype", s->dtype == A3_DT_F16 ? "float16" : s->dtype == A3_DT_BF16 ? "bfloat16" : "float32");
    if (s->rope_llama3) {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
        cJSON_AddNumberToObject(rs, "factor", 8.0);
        cJSON_AddNumberToObject(rs, "low_freq_factor", 1.0);
        cJSON_AddNumberToObject(rs, "high_freq_factor", 4.0);
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", s->max_seq / 4 > 0 ? s->max_seq / 4 : 1);
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text) return a3_err_set(err, A3_ENOMEM, "synth: out of memory");
    char *path = a3_path_join(dir, "config.json");
    int rc = path ? a3_write_file_atomic(path, text, strlen(text), err) : a3_err_set(err, A3_ENOMEM, "synth: out of memory");
    free(path);
    free(text);
    return rc;
}

/* Every tensor, in file order; called once to declare, once to write. */
static int all_tensors(synth_out *w, const a3_synth_spec *s, a3_err *err)
{
    uint64_t rng = s->seed;
    int rc = add_random(w, s, &rng, "model.embed_tokens.weight", s->vocab, s->d, 0, 1.0, err);
    for (int l = 0; rc == A3_OK && l < s->n_layers; l++) rc = add_layer(w, s, &rng, l, err);
    if (rc == A3_OK) rc = add_random(w, s, &rng, "model.norm.weight", s->d, 0, 1.0, 0.1, err);
    if (rc == A3_OK && !s->tie_embeddings)
        rc = add_random(w, s, &rng, "lm_head.weight", s->vocab, s->d, 0, 1.0 / sqrt((double)s->d), err);
    return rc;
}

static int write_weights(const char *dir, const a3_synth_spec *s, a3_err *err)
{
    synth_out w = {a3_st_stream_new(), 0, malloc(SYNTH_CHUNK * sizeof(float))};
    char *path = a3_path_join(dir, "model.safetensors");
    int rc = w.w && w.buf && path ? A3_OK : a3_err_set(err, A3_ENOMEM, "synth: out of memory");
    if (rc == A3_OK) rc = all_tensors(&w, s, err);
    if (rc == A3_OK) rc = a3_st_stream_begin_file(w.w, path, err);
    w.pass = 1;
    if (rc == A3_OK) rc = all_tensors(&w, s, err);
    if (rc == A3_OK) rc = a3_st_stream_finish(w.w, err);
    a3_st_stream_free(w.w);
    free(w.buf);
    free(path);
    return rc;
}

static void remove_tree(const char *dir)
{
    const char *files[] = {"config.json", "model.safetensors"};
    for (size_t i = 0; i < 2; i++) {
        char *p = a3_path_join(dir, files[i]);
        if (p) unlink(p);
        free(p);
    }
    rmdir(dir);
}

int a3_synth_write(const char *dir, const a3_synth_spec *s, a3_err *err)
{
    if (s->d <= 0 || s->n_layers <= 0 || s->n_heads <= 0 || s->n_kv_heads <= 0 || s->head_dim <= 0 ||
        s->head_dim % 2 || s->n_heads % s->n_kv_heads || s->d_ff <= 0 || s->vocab <= 0 || s->max_seq <= 0)
        return a3_err_set(err, A3_EINVAL, "synth: %s: inconsistent model shape", dir);
    if (s->qkv_bias && s->arch != A3_ARCH_QWEN2)
        return a3_err_set(err, A3_EINVAL, "synth: %s: q/k/v biases need the Qwen2 architecture", dir);
    char *tmp = a3_tmp_path(dir);
    if (!tmp) return a3_err_set(err, A3_ENOMEM, "synth: out of memory");
    int rc = A3_OK;
    if (access(dir, F_OK) == 0) rc = a3_err_set(err, A3_EINVAL, "%s: already exists", dir);
    else if (mkdir(tmp, 0755) != 0) rc = a3_err_set(err, A3_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    else {
        a3_cleanup_add(tmp); /* removed on SIGINT/SIGTERM (a3/cleanup.h) */
        rc = write_config(tmp, s, err);
        if (rc == A3_OK) rc = write_weights(tmp, s, err);
        if (rc == A3_OK && rename(tmp, dir) != 0)
            rc = a3_err_set(err, A3_EIO, "%s: rename failed: %s", dir, strerror(errno));
        if (rc) remove_tree(tmp);
        a3_cleanup_forget(tmp);
    }
    free(tmp);
    return rc;
}
