/* gguf: write GGUF v3 files (llama.cpp's model format) and export a3
 * models to them.
 *
 * File layout (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md),
 * every integer little-endian:
 *   u32 magic        "GGUF" (bytes 47 47 55 46)
 *   u32 version      3
 *   u64 n_tensors
 *   u64 n_kv
 *   n_kv key/value pairs:
 *     string key     (u64 length + UTF-8 bytes, no NUL)
 *     u32 value type (A3_GGUF_KV_*)
 *     value          scalars in their width; bool one byte; string as
 *                    above; array: u32 element type, u64 count, elements
 *   n_tensors tensor infos:
 *     string name
 *     u32 n_dims     (1..4)
 *     u64 ne[n_dims] ne[0] is the contiguous dimension: a row-major
 *                    (rows, cols) matrix has ne = {cols, rows}
 *     u32 ggml type  (A3_GGUF_F32 ...)
 *     u64 offset     of the tensor's data from the start of the data
 *                    section, a multiple of the alignment
 *   zero padding to general.alignment (32 unless that key says otherwise)
 *   data section     each tensor's bytes, zero-padded to the alignment
 *
 * Q8_0 (ggml type 8): blocks of 32 elements along ne[0], each an f16
 * scale d followed by 32 int8 q; element = d * q. a3 picks d = the
 * smallest f16 >= max|x| / 127 and q = round(x / d) with that stored
 * scale, so every element satisfies |x - d q| <= d / 2 (ggml's reference
 * rounds the scale to nearest and divides by the unrounded one, which can
 * exceed d / 2 by up to 127 d 2^-11, and loses blocks below ~4e-6
 * entirely when the scale underflows to 0).
 *
 * The writer holds the key/value pairs and the tensor list (names, shapes,
 * types, and a callback per tensor); tensor data is produced one tensor at
 * a time while the file is written, so memory stays at one tensor. */
#ifndef A3_GGUF_H
#define A3_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "a3/model.h"
#include "a3/util.h"

/* ggml tensor types a3 writes (values are ggml's). */
typedef enum {
    A3_GGUF_F32 = 0,
    A3_GGUF_F16 = 1,
    A3_GGUF_Q8_0 = 8,
    A3_GGUF_BF16 = 30
} a3_gguf_type;

/* GGUF value types. */
enum {
    A3_GGUF_KV_U8 = 0, A3_GGUF_KV_I8, A3_GGUF_KV_U16, A3_GGUF_KV_I16,
    A3_GGUF_KV_U32, A3_GGUF_KV_I32, A3_GGUF_KV_F32, A3_GGUF_KV_BOOL,
    A3_GGUF_KV_STRING, A3_GGUF_KV_ARRAY, A3_GGUF_KV_U64, A3_GGUF_KV_I64,
    A3_GGUF_KV_F64, A3_GGUF_KV_COUNT
};

#define A3_GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define A3_GGUF_VERSION 3
#define A3_GGUF_ALIGNMENT 32
#define A3_GGUF_QK8_0 32          /* elements per Q8_0 block */
#define A3_GGUF_Q8_0_BYTES 34     /* f16 scale + 32 int8 */

/* "f32", "f16", "bf16", "q8_0"; parse returns -1 for anything else. */
const char *a3_gguf_type_name(a3_gguf_type t);
int a3_gguf_type_parse(const char *s, a3_gguf_type *out);
/* Bytes of n elements of type t; 0 when n is not a whole number of blocks
 * (Q8_0: a multiple of 32) or t is unknown. */
size_t a3_gguf_type_bytes(a3_gguf_type t, size_t n);

/* Q8_0 of n floats (n a multiple of 32) into n / 32 blocks of 34 bytes;
 * and back. */
void a3_gguf_q8_0_quantize(const float *x, size_t n, uint8_t *out);
void a3_gguf_q8_0_dequantize(const uint8_t *in, size_t n, float *x);

/* ---- writer ------------------------------------------------------------ */

typedef struct a3_gguf_writer a3_gguf_writer;

/* Produce a tensor's n float32 values (row-major, ne[0] fastest) into dst;
 * 0 or an A3_E* code with err filled. */
typedef int (*a3_gguf_fill_fn)(void *ctx, float *dst, size_t n, a3_err *err);

a3_gguf_writer *a3_gguf_writer_new(void); /* NULL when out of memory */
void a3_gguf_writer_free(a3_gguf_writer *w); /* accepts NULL */

/* Key/value pairs, in the order added. A key added twice is A3_EINVAL.
 * Strings and arrays are copied. */
int a3_gguf_kv_u32(a3_gguf_writer *w, const char *key, uint32_t v, a3_err *err);
int a3_gguf_kv_i32(a3_gguf_writer *w, const char *key, int32_t v, a3_err *err);
int a3_gguf_kv_f32(a3_gguf_writer *w, const char *key, float v, a3_err *err);
int a3_gguf_kv_bool(a3_gguf_writer *w, const char *key, int v, a3_err *err);
int a3_gguf_kv_str(a3_gguf_writer *w, const char *key, const char *v, a3_err *err);
/* Arrays: n elements of type A3_GGUF_KV_{U32,I32,F32}; strings are given
 * with their lengths (they may hold any bytes but must not be NULL). */
int a3_gguf_kv_arr(a3_gguf_writer *w, const char *key, int elem_type,
                   const void *v, size_t n, a3_err *err);
int a3_gguf_kv_arr_str(a3_gguf_writer *w, const char *key,
                       const char *const *s, const size_t *len, size_t n,
                       a3_err *err);

/* Declare a tensor of ndim (1..4) dims ne (ne[0] contiguous) stored as
 * type; fill is called once, during write, with ctx. A Q8_0 tensor needs
 * ne[0] % 32 == 0 (A3_EINVAL otherwise). Names are unique (A3_EINVAL). */
int a3_gguf_add_tensor(a3_gguf_writer *w, const char *name, a3_gguf_type type,
                       int ndim, const int64_t *ne, a3_gguf_fill_fn fill,
                       void *ctx, a3_err *err);

/* Write the file atomically (temp file + rename; nothing is left behind on
 * failure). progress (may be NULL) is called after each tensor with the
 * stage "write", tensors done and total. *bytes (may be NULL) gets the file
 * size. */
int a3_gguf_write(a3_gguf_writer *w, const char *path, a3_progress_fn progress,
                  void *ctx, uint64_t *bytes, a3_err *err);

/* ---- export -------------------------------------------------------------
 *
 * a3_gguf_export writes a model directory (original, or compressed by
 * `a3 apply`) as a GGUF that an unmodified llama.cpp runs with a3's
 * logits:
 *  - architecture "llama" when every layer has the same MLP width, "deci"
 *    otherwise (llama.cpp reads per-layer feed_forward_length and
 *    head_count arrays for it);
 *  - llama.cpp has one key/value head size, equal to the RoPE dimension,
 *    for every layer, so QK and OV of reduced width are written zero-padded
 *    to the original head_dim: the kept RoPE pairs go back to their
 *    original frequency positions (the layout of `a3 apply --padded`); MLP
 *    neurons are written compact;
 *  - q/k rows (and biases) are permuted from HF's rotate-half RoPE layout
 *    to llama.cpp's interleaved pairs: GGUF row 2i + s of a head is HF row
 *    s * head_dim/2 + i (the inverse of HF's conversion permutation);
 *  - llama3 RoPE scaling becomes a rope_freqs tensor of per-frequency
 *    divisors;
 *  - the tokenizer (tokenizer.json, BPE) becomes tokenizer.ggml.*: model
 *    "llama" (SentencePiece-style: scores = minus the rank of the first
 *    merge producing the token, byte-fallback tokens typed BYTE) or "gpt2"
 *    (byte-level: the merges and a pre-tokenizer name llama.cpp knows,
 *    chosen from the pre-tokenizer regex; an unknown regex is refused,
 *    since llama.cpp would split text differently). A "llama" vocabulary
 *    without a "<0x0A>" (or "\n") token is refused: llama.cpp cannot load
 *    it. (Without byte-fallback tokens, llama.cpp also aborts on text with
 *    characters outside the vocabulary; HF maps them to <unk>.)
 * 2-D weights are stored as opts.type; norms (and rope_freqs) stay F32; a
 * weight whose rows are not a multiple of 32 cannot be Q8_0 and is stored
 * F16 instead (counted in the report). Memory: one layer in float32.
 * Refused (A3_EUNSUPPORTED): q/k/v biases together with per-layer MLP
 * widths (llama.cpp's deci has no attention biases), tokenizers other than
 * BPE. */
typedef struct {
    a3_gguf_type type; /* type of the 2-D weights */
    int force;         /* replace an existing output file */
    a3_progress_fn progress;
    void *ctx;
} a3_gguf_export_opts;

typedef struct {
    const char *arch;         /* "llama" or "deci" (static string) */
    const char *tok_model;    /* "llama" or "gpt2" */
    const char *tok_pre;      /* pre-tokenizer name written */
    int n_groups;             /* layers x KV groups */
    int qk_padded, ov_padded; /* groups whose QK / OV width was padded */
    int mlp_compact;          /* layers whose MLP is narrower than d_ff */
    int n_fallback_f16;       /* Q8_0 requested, written F16 (row length) */
    int64_t params_model;     /* parameters of the model as given */
    int64_t params_written;   /* elements written (with the padding) */
    uint64_t bytes;           /* file size */
} a3_gguf_export_report;

int a3_gguf_export(a3_model *m, const char *path, const a3_gguf_export_opts *o,
                   a3_gguf_export_report *rep, a3_err *err);

/* Tokenizer metadata of a model directory into w (tokenizer.ggml.*):
 * reads <dir>/tokenizer.json (BPE) and the special ids of a3's tokenizer
 * loader (a3_tok_load_dir). n_vocab: the model's vocabulary size (the
 * embedding rows); ids past the tokenizer's get placeholder UNUSED tokens.
 * model_out / pre_out: static strings naming what was written. */
int a3_gguf_put_tokenizer(a3_gguf_writer *w, const char *dir, int n_vocab,
                          const char **model_out, const char **pre_out,
                          a3_err *err);

#endif
