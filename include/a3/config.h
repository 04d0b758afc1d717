/* config: a model's hyper-parameters, read from a HF config.json.
 *
 * Supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM (q/k/v
 * biases). A sliding window (Mistral's sliding_window, Qwen2's with
 * use_sliding_window) is accepted: a3 runs full attention, which is the same
 * computation for sequences no longer than the window, and refuses longer
 * ones (a3_config_check_seqlen).
 * Honoured: num_key_value_heads, head_dim, rms_norm_eps, rope_theta,
 * rope_scaling {rope_type "llama3"}, tie_word_embeddings, bos/eos_token_id,
 * torch_dtype, attention_bias, mlp_bias (refused if true).
 * Anything that changes the computation and is not handled is refused with
 * "<file>: <field>: <why>".
 *
 * A compressed model (written by `a3 apply`) carries an "a3" object with,
 * per layer, the QK and OV rank of each KV group, the kept RoPE frequency
 * indices of each group and the MLP width; the attention scale stays
 * 1/sqrt(head_dim) of the original head dim. An uncompressed model has the
 * same arrays filled with the full sizes, so the forward pass has one path. */
#ifndef A3_CONFIG_H
#define A3_CONFIG_H

#include <stdint.h>

#include "a3/safetensors.h"
#include "a3/util.h"

typedef enum { A3_ARCH_LLAMA, A3_ARCH_MISTRAL, A3_ARCH_QWEN2, A3_ARCH_COUNT } a3_arch;

typedef struct {
    a3_arch arch;
    int d;           /* hidden_size */
    int n_layers;
    int n_heads;     /* query heads */
    int n_kv_heads;  /* key/value heads (GQA groups) */
    int head_dim;    /* original head dim (attention scale uses it) */
    int d_ff;        /* intermediate_size (original) */
    int vocab;
    int max_seq;     /* max_position_embeddings */
    int sliding_window; /* attention window in tokens; 0 = none */
    float rms_eps;
    double rope_theta;
    int rope_llama3; /* rope_scaling type llama3 present */
    double rs_factor, rs_low, rs_high, rs_orig_max; /* llama3 scaling */
    int tie_embeddings;
    int qkv_bias;    /* q/k/v projections have biases (Qwen2) */
    int bos, eos;    /* -1 when absent */
    a3_dtype dtype;  /* torch_dtype, informational */

    /* Per-layer shapes; for an uncompressed model all full.
     * qk_rank, ov_rank: (n_layers, n_kv_heads), ints
     * rope_idx: (n_layers, n_kv_heads, head_dim/2): the frequency index of
     *   kept pair p of that group for p < qk_rank/2, -1 after.
     * mlp_width: (n_layers) */
    int *qk_rank;
    int *ov_rank;
    int *rope_idx;
    int *mlp_width;
    int compressed;  /* an "a3" section was present */
} a3_config;

/* Parse <dir>/config.json. On success the caller owns cfg (free with
 * a3_config_free). */
int a3_config_load(const char *dir, a3_config *cfg, a3_err *err);
/* Fill a config's shape arrays with full sizes (used by loaders/tests that
 * build configs by hand, after the scalar fields are set). */
int a3_config_init_full(a3_config *cfg, a3_err *err);
void a3_config_free(a3_config *cfg);

const char *a3_arch_name(a3_arch a); /* "LlamaForCausalLM", ... */

/* A3_EUNSUPPORTED with "<dir>/config.json: sliding_window: ..." when
 * sequences of seqlen tokens (positions 0..seqlen-1 attending to each other)
 * would reach beyond the model's sliding window, where full attention is
 * no longer the model's computation; A3_OK otherwise. */
int a3_config_check_seqlen(const a3_config *c, const char *dir, int seqlen, a3_err *err);
/* The longest sequence a3 computes exactly: the context length, or the
 * sliding window when it is shorter (for default sequence lengths). */
int a3_config_max_seqlen(const a3_config *c);

/* Group of query head h. */
static inline int a3_config_group(const a3_config *c, int h)
{
    return h / (c->n_heads / c->n_kv_heads);
}

#endif
