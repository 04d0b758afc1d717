/* llama2c: read Karpathy's llama2.c float32 checkpoints (memory-mapped,
 * hostile-input safe) and convert them to a Hugging Face model directory.
 *
 * All integers and floats are little-endian; weight matrices are stored
 * (out, in) row-major. kv_dim = n_kv_heads * head_dim, head_dim =
 * dim / n_heads, L = n_layers, V = |vocab_size|.
 *
 * Legacy layout (llama2.c export.py legacy_export, "version 0"):
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 *         seq_len                      (vocab_size < 0: separate classifier)
 *   float32 token_embedding (V, dim), rms_att (L, dim), wq (L, dim, dim),
 *         wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim),
 *         rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim, hidden),
 *         w3 (L, hidden, dim), rms_final (dim),
 *         freq_cis_real (seq_len, head_dim/2), freq_cis_imag (same),
 *         wcls (V, dim) only when not shared
 * Version 1 (export.py version1_export), a 256-byte header:
 *   uint32 magic 0x616b3432 ("ak42"), int32 version = 1, the 7 int32 params
 *   above (vocab_size > 0), uint8 shared_classifier, zero padding to 256;
 *   float32 rms_att (L, dim), rms_ffn (L, dim), rms_final (dim),
 *         token_embedding (V, dim), wq, wk, wv, wo, w1, w2, w3 (shapes as
 *         above, all layers each), wcls (V, dim) only when not shared
 * Version 2 (int8 Q8_0) is refused as unsupported.
 *
 * The file size must equal the layout's size exactly: a truncated or padded
 * file is an error, never a silent misread.
 *
 * Model semantics (llama2.c run.c): RMSNorm eps 1e-5, RoPE on interleaved
 * pairs (2i, 2i+1) of each head with frequency 10000^(-2i/head_dim),
 * SwiGLU MLP w2(silu(w1 x) * w3 x), attention scale 1/sqrt(head_dim). */
#ifndef A3_LLAMA2C_H
#define A3_LLAMA2C_H

#include <stddef.h>
#include <stdint.h>

#include "a3/safetensors.h"
#include "a3/util.h"

#define A3_LLAMA2C_MAGIC 0x616b3432u
#define A3_LLAMA2C_V1_HEADER 256 /* bytes */
#define A3_LLAMA2C_LEGACY_HEADER 28

typedef struct {
    int version;     /* 0 legacy, 1 */
    int dim;         /* model width */
    int hidden_dim;  /* MLP width */
    int n_layers;
    int n_heads;     /* query heads */
    int n_kv_heads;  /* key/value heads; divides n_heads */
    int vocab_size;  /* always positive here */
    int seq_len;     /* max context */
    int head_dim;    /* dim / n_heads, even */
    int kv_dim;      /* n_kv_heads * head_dim */
    int shared_classifier; /* wcls is the token embedding */
} a3_llama2c_config;

/* Borrowed from the mapping: valid until a3_llama2c_close. */
typedef struct {
    const float *token_embedding; /* (vocab, dim) */
    const float *rms_att;         /* (n_layers, dim) */
    const float *wq;              /* (n_layers, dim, dim) */
    const float *wk;              /* (n_layers, kv_dim, dim) */
    const float *wv;              /* (n_layers, kv_dim, dim) */
    const float *wo;              /* (n_layers, dim, dim) */
    const float *rms_ffn;         /* (n_layers, dim) */
    const float *w1;              /* (n_layers, hidden_dim, dim) gate */
    const float *w2;              /* (n_layers, dim, hidden_dim) down */
    const float *w3;              /* (n_layers, hidden_dim, dim) up */
    const float *rms_final;       /* (dim) */
    const float *freq_cis_real;   /* (seq_len, head_dim/2); legacy only, else NULL */
    const float *freq_cis_imag;   /* (seq_len, head_dim/2); legacy only, else NULL */
    const float *wcls;            /* (vocab, dim); == token_embedding if shared */
} a3_llama2c_weights;

/* An open checkpoint. Fields are read-only for callers. */
typedef struct {
    a3_llama2c_config config;
    a3_llama2c_weights w;
    char *path;     /* owned copy of the path, used in messages */
    void *map;      /* the whole file, mapped read-only */
    size_t map_size;
} a3_llama2c;

/* Map and validate a checkpoint. On success *out is owned by the caller
 * (a3_llama2c_close). Errors: A3_EIO (open/stat/mmap), A3_EFORMAT
 * (bad magic, header field out of range, dims that do not divide, file size
 * not matching the layout), A3_EUNSUPPORTED (version 2 int8 or another
 * version), A3_ENOMEM; the message starts with the path. */
int a3_llama2c_open(const char *path, a3_llama2c **out, a3_err *err);
void a3_llama2c_close(a3_llama2c *m); /* accepts NULL */

/* Exact byte size the layout needs for a config (version, shared flag and
 * dims set); 0 if it overflows size_t. */
size_t a3_llama2c_file_size(const a3_llama2c_config *c);

/* Reorder the rows of one layer's wq (n_heads = config n_heads) or wk
 * (n_heads = n_kv_heads) from llama2.c's interleaved RoPE pairs to HF's
 * rotate-half layout, as HF's convert_llama_weights_to_hf.py permute():
 * within each head, dst row i = src row 2i and dst row head_dim/2 + i =
 * src row 2i + 1. src and dst are (n_heads * head_dim, cols), distinct. */
void a3_llama2c_permute_rows(const float *src, float *dst, int n_heads,
                             int head_dim, int cols);

typedef struct {
    a3_dtype dtype;    /* A3_DT_F32 (default), A3_DT_F16 or A3_DT_BF16 */
    int force;         /* replace an existing output model directory */
    a3_progress_fn progress; /* optional, per tensor; may cancel */
    void *progress_ctx;
} a3_llama2c_convert_opts;

/* Convert checkpoint ckpt_path to a HF directory out_dir holding
 * config.json, model.safetensors and, when tok_path is non-NULL,
 * tokenizer.json (from the llama2.c tokenizer.bin at tok_path).
 * The directory appears atomically: it is built as "<out_dir>.tmp.<pid>"
 * and renamed; on any failure nothing is left behind. An existing out_dir
 * is an error (A3_EINVAL) unless opts->force, and even then only a model
 * directory (holding config.json and no subdirectories) or a regular file
 * is replaced. opts may be NULL (F32, no force). */
int a3_llama2c_convert(const char *ckpt_path, const char *tok_path,
                       const char *out_dir,
                       const a3_llama2c_convert_opts *opts, a3_err *err);

#endif
