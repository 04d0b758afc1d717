/* synth: write a random-weight HF model directory of a chosen shape.
 *
 * Used by tests (small models of every supported kind), by benchmarks
 * (realistic widths) and by `a3 synth`. Weights are drawn from a seeded
 * generator: projections ~ N(0, 1/in) so that activations keep unit scale
 * through the residual stream, norms ~ 1 + N(0, 0.1^2), embeddings ~ N(0, 1).
 * Output is written atomically (temp directory, then rename). */
#ifndef A3_SYNTH_H
#define A3_SYNTH_H

#include <stdint.h>

#include "a3/config.h"
#include "a3/safetensors.h"
#include "a3/util.h"

typedef struct {
    a3_arch arch;
    int d, n_layers, n_heads, n_kv_heads, head_dim, d_ff, vocab, max_seq;
    int tie_embeddings;
    int qkv_bias;        /* Qwen2 only */
    double rope_theta;
    int rope_llama3;     /* llama3 scaling with factor 8, 1, 4, max_seq/4 */
    a3_dtype dtype;      /* F32, F16 or BF16 */
    uint64_t seed;
} a3_synth_spec;

/* Fill spec with a named preset ("tiny", "tiny-gqa", "llama-1b", "llama-7b",
 * "llama-13b", "llama-70b"); A3_EINVAL for an unknown name. */
int a3_synth_preset(const char *name, a3_synth_spec *spec, a3_err *err);
/* Write the model into dir (which must not exist). */
int a3_synth_write(const char *dir, const a3_synth_spec *spec, a3_err *err);

#endif
