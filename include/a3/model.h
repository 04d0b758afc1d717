/* model: a LLaMA-family decoder on the CPU.
 *
 * Weights stay memory-mapped in their file dtype. A forward pass converts
 * them to float32 in blocks of at most 8 MiB right before each block's
 * product (F32 files are used in place), so peak memory is one such block
 * plus activations, never a matrix, a layer or the model; a3_model_run_layer, which runs one layer over many
 * chunks of tokens, converts that layer once (one layer in float32).
 *
 * The forward pass is a batched prefill: n_seq independent sequences of
 * seqlen tokens, every GEMM through OpenBLAS sgemm, attention threaded over
 * (sequence, head). It supports compressed shapes (per-group QK/OV ranks,
 * kept RoPE frequencies, per-layer MLP widths) through a3_config.
 * HF layout: RoPE rotates halves (dim p pairs with p + rank/2). */
#ifndef A3_MODEL_H
#define A3_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "a3/config.h"
#include "a3/safetensors.h"
#include "a3/util.h"

typedef struct a3_model a3_model;

/* Open a HF model directory (config.json + safetensors). Checks that every
 * tensor the config implies is present with the right shape and dtype. */
int a3_model_open(const char *dir, a3_model **out, a3_err *err);
void a3_model_free(a3_model *m);
const a3_config *a3_model_config(const a3_model *m);
const char *a3_model_dir(const a3_model *m);
/* Borrowed: the model's tensor set (valid while the model lives). */
const a3_st_set *a3_model_tensors(const a3_model *m);

/* Threads used for attention (GEMMs use OpenBLAS's own threads). 0 = auto. */
void a3_model_set_threads(a3_model *m, int n);

/* Run n_seq sequences of seqlen tokens each through every layer and the
 * final norm. hidden_out: (n_seq * seqlen, d) floats. Token ids are
 * validated against the vocabulary. */
int a3_model_forward(a3_model *m, const int32_t *tokens, int n_seq, int seqlen,
                     float *hidden_out, a3_err *err);

/* logits (n_rows, vocab) = hidden (n_rows, d) @ lm_head^T. */
int a3_model_logits(a3_model *m, const float *hidden, size_t n_rows,
                    float *logits, a3_err *err);

/* Layer-wise execution, for the calibration pass: the caller keeps the
 * hidden states of all its tokens and runs one layer at a time over them,
 * so only that layer's weights are converted. Hooks see each chunk's
 * intermediate activations (any hook may be NULL); a non-zero return from a
 * hook stops the run with that code. */
typedef struct {
    void *ctx;
    /* q (rows, q_out), k (rows, k_out), v (rows, v_out): projections with
     * biases, before RoPE. */
    int (*on_qkv)(void *ctx, int layer, const float *q, const float *k,
                  const float *v, size_t rows);
    /* z (rows, o_in): per-head attention outputs, the input of o_proj. */
    int (*on_z)(void *ctx, int layer, const float *z, size_t rows);
    /* u (rows, ff): the MLP intermediate act(x Wg) * (x Wu). */
    int (*on_u)(void *ctx, int layer, const float *u, size_t rows);
    /* Editing hooks, called right after on_qkv / on_u with the same
     * buffers, which they may change in place before the layer goes on
     * (the NLL probe's truncations, include/a3/pred.h). */
    int (*edit_qkv)(void *ctx, int layer, float *q, float *k, float *v,
                    size_t rows);
    int (*edit_u)(void *ctx, int layer, float *u, size_t rows);
} a3_layer_hooks;

/* x (n, d) = embeddings of tokens. */
int a3_model_embed(const a3_model *m, const int32_t *tokens, size_t n,
                   float *x, a3_err *err);
/* Run layer `layer` in place over x (n_seq * seqlen, d), in chunks of
 * whole sequences of at most max_rows rows (0: a default that bounds the
 * scratch memory), calling hooks once per chunk. Its GEMMs run in fixed
 * tiles (include/a3/gemm_fixed.h), so x and what the hooks see are bitwise
 * the same for every thread count on one BLAS kernel (a3_model_forward's
 * are not: eval and generate keep OpenBLAS's own split). */
int a3_model_run_layer(a3_model *m, int layer, float *x, int n_seq,
                       int seqlen, size_t max_rows,
                       const a3_layer_hooks *hooks, a3_err *err);
/* One layer's matrices in float32, HF order, at the layer's shapes in the
 * model file (for an original model: the uncompressed shapes), to run a
 * modified copy of that layer, e.g. reduced components zero-padded back to
 * the original shapes. Biases NULL when the model has none. The norms are
 * the model's own. */
typedef struct {
    const float *wq, *wk, *wv, *wo; /* (q_out, d) (k_out, d) (v_out, d) (d, o_in) */
    const float *bq, *bk, *bv;      /* (q_out) (k_out) (v_out) or NULL */
    const float *wg, *wu, *wd;      /* (ff, d) (ff, d) (d, ff) */
} a3_layer_mats;
/* a3_model_run_layer with the layer's matrices taken from w instead of
 * the file (w is borrowed for the call). */
int a3_model_run_layer_mats(a3_model *m, int layer, const a3_layer_mats *w,
                            float *x, int n_seq, int seqlen, size_t max_rows,
                            const a3_layer_hooks *hooks, a3_err *err);
/* out (rows, d) = final RMSNorm of x; A3_EFORMAT naming model.norm.weight
 * when the result is not finite (overflow). */
int a3_model_final_norm(const a3_model *m, const float *x, size_t rows,
                        float *out, a3_err *err);

/* Incremental decoding with a KV cache for one sequence. */
typedef struct a3_decoder a3_decoder;
int a3_decoder_new(a3_model *m, int max_len, a3_decoder **out, a3_err *err);
void a3_decoder_free(a3_decoder *dec);
/* Append n tokens (prefill when n > 1) and return the logits of the last
 * one in logits (vocab floats). */
int a3_decoder_step(a3_decoder *dec, const int32_t *tokens, int n,
                    float *logits, a3_err *err);

/* Parameter counts by component (elements). */
typedef struct {
    int64_t embed, lm_head, norms, attn_qk, attn_ov, mlp, bias, total;
} a3_param_counts;
void a3_model_count_params(const a3_config *c, a3_param_counts *out);
/* KV-cache bytes per token for elements of elem_bytes bytes. */
int64_t a3_model_kv_bytes_per_token(const a3_config *c, int elem_bytes);

#endif
