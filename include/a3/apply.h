/* apply: turn a model, its calibration cache and a rank plan into a
 * compressed model directory (A3-METHOD.md sections 3-5).
 *
 * Output: config.json (the original one plus an "a3" section: version,
 * methods, cache fingerprint, and per layer the QK rank and kept RoPE
 * frequencies of every KV group, the OV ranks, the MLP width; the attention
 * scale stays that of the original head_dim), model.safetensors with the
 * reduced shapes (see include/a3/reduce.h for the layouts), and the
 * tokenizer files. The weights are model.safetensors when they fit one
 * shard of max_shard_bytes (default A3_APPLY_SHARD_BYTES, 5 GB, what
 * transformers uses), else Hugging Face shards model-0000k-of-0000n.
 * safetensors with model.safetensors.index.json (see a3_st_stream in
 * include/a3/safetensors.h); each shard is written as its layers are
 * solved. With padded, the original shapes instead: reduced heads
 * zero-padded, kept RoPE pairs and MLP neurons at their original positions,
 * and no "a3" section, so that stock tooling loads a plain model with the
 * same logits. The directory appears atomically (built as <out>.tmp.<pid>,
 * then renamed); a failure or cancellation leaves nothing behind.
 *
 * Memory: one layer of the input in float32 at a time, plus that layer's
 * output in float32, plus the solver's work arrays (a few head_dim^2 or
 * d x head_dim matrices), the cache's matrices of that layer and a 1 MB
 * encode buffer; the model's weights are mapped, not copied. Nothing
 * grows with the number of layers. */
#ifndef A3_APPLY_H
#define A3_APPLY_H

#include "a3/cache.h"
#include "a3/model.h"
#include "a3/plan.h"
#include "a3/reduce.h"
#include "a3/safetensors.h"
#include "a3/util.h"

#define A3_APPLY_SHARD_BYTES ((uint64_t)5000000000) /* 5 GB */
/* Key apply adds to every output's config.json (value "a3 apply"). */
#define A3_APPLY_MARKER "a3_output"

/* Where the per-layer solutions come from when not from the one-shot
 * solvers of include/a3/reduce.h (e.g. the sequential solver of
 * include/a3/sequential.h). a3_apply calls begin_layer once per layer, in
 * order 0..n_layers-1, with that layer's original weights, then qk and ov
 * for every KV group and mlp once, with the contracts of a3_qk_select,
 * a3_ov_solve and a3_mlp_select (+ a3_mlp_refit into new_down when the
 * plan's MLP method is a3-refit; new_down is NULL otherwise). A non-zero
 * return stops the run with that code. record_key/record_json, if set: a
 * JSON object stored under that key in the output config's "a3" section. */
typedef struct {
    void *ctx;
    int (*begin_layer)(void *ctx, int layer, const a3_layer_f32 *w, a3_err *err);
    int (*qk)(void *ctx, int layer, int g, int rank, int32_t *idx, double *loss, a3_err *err);
    int (*ov)(void *ctx, int layer, int g, int rank, float *new_v, float *new_bv, float *new_o,
              double *loss, double *damping, a3_err *err);
    int (*mlp)(void *ctx, int layer, int width, int32_t *keep, float *new_down, a3_err *err);
    const char *record_key, *record_json;
} a3_layer_solver;

typedef struct {
    a3_dtype dtype;   /* output dtype; A3_DT_COUNT: the input's */
    uint64_t max_shard_bytes; /* tensor bytes per shard; 0: A3_APPLY_SHARD_BYTES */
    int padded;       /* original shapes, zero-padded */
    int force;        /* replace an existing output directory, only if
                       * apply wrote it: config.json has A3_APPLY_MARKER
                       * and every file is one apply writes (else
                       * A3_EINVAL, nothing touched) */
    a3_progress_fn progress;
    void *ctx;
    const a3_layer_solver *solver; /* NULL: one-shot from the cache */
} a3_apply_opts;

/* What the solves predicted, summed over layers and groups (mean loss per
 * token, in the units of the cache's curves), and the numerics. */
typedef struct {
    double qk_loss, ov_loss;
    double max_damping; /* largest Cholesky damping eps used (0: none) */
    int n_damped;       /* OV groups that needed damping */
} a3_apply_report;

int a3_apply(a3_model *m, const a3_cache *c, const a3_plan *p, const a3_apply_opts *o,
             const char *out_dir, a3_apply_report *rep, a3_err *err);

#endif
