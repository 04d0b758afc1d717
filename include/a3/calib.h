/* calib: the calibration pass (A3-METHOD.md section 2) and the loss curves
 * read from its statistics (sections 3-5).
 *
 * The pass keeps the hidden states of all calibration tokens (n_windows x
 * seqlen x d floats) and runs the model one layer at a time over them,
 * accumulating that layer's statistics in float64 from the forward pass's
 * own intermediate activations (hooks in include/a3/model.h):
 *   Gq_i = sum q_i^T q_i (per query head, pre-RoPE, biases included),
 *   Gk_j, Gv_j (per KV head), C_i = sum z_i^T z_i (attention outputs before
 *   o_proj), D = sum u*u (MLP intermediate), Ru = sum u^T u (optional).
 * Each Gram matrix is one dsyrk per chunk of rows. After a layer's
 * statistics are complete its loss curves are computed (they need W_o and
 * W_down as well), so the whole cache is ready when the last layer ends.
 *
 * Peak memory: hidden states + one layer's weights in float32 + chunk
 * scratch + the statistics (see a3_calib_memory_estimate). */
#ifndef A3_CALIB_H
#define A3_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "a3/cache.h"
#include "a3/model.h"
#include "a3/util.h"

/* Draw n_samples windows of seqlen tokens from the stream ids[0..n):
 * start offsets uniform in [0, n - seqlen], from a splitmix64 generator
 * seeded with seed (reproducible everywhere). When the stream holds fewer
 * than n_samples * seqlen tokens this is an error (A3_EINVAL, saying how
 * much there is) unless allow_short, in which case it uses consecutive
 * non-overlapping windows covering the stream (at least one; a stream
 * shorter than seqlen gives one shorter window: *seqlen_out says). */
int a3_calib_windows(const int32_t *ids, size_t n, int n_samples, int seqlen,
                     uint64_t seed, int allow_short, int32_t **windows,
                     int *n_windows, int *seqlen_out, a3_err *err);

/* Bytes the pass needs at its peak for this model and batch. */
size_t a3_calib_memory_estimate(const a3_config *c, int n_windows, int seqlen,
                                int mlp_full);

typedef struct {
    int mlp_full;               /* also gather Ru (d_ff^2 doubles per layer) */
    const char *checkpoint_dir; /* NULL: none; else state for --resume */
    int resume;                 /* continue from checkpoint_dir if valid */
    int stop_after_layer;       /* testing: stop with A3_ECANCELED after
                                 * this many layers (0 = never) */
    char created[40];           /* in/out: the run's start time; a resumed
                                 * run gets the original run's back, so its
                                 * cache is byte-identical */
    char kernel[64];            /* out: the OpenBLAS kernel that computed
                                 * the statistics ("Zen"), or the kernels
                                 * joined by '+' in layer order when a resume
                                 * ran on another one ("Haswell+Zen"): the
                                 * statistics are bitwise the same for every
                                 * --threads, but not across kernels */
} a3_calib_opts;

/* Run the pass and fill cache (allocated by the caller with a3_cache_new
 * for the model's dims) with statistics and curves; sets n_tokens.
 * progress gets stage "layer i/n" and tokens processed so far out of
 * n_layers * n_windows * seqlen; returning non-zero cancels (A3_ECANCELED;
 * the checkpoint, if any, keeps every finished layer). */
int a3_calibrate(a3_model *m, const int32_t *windows, int n_windows,
                 int seqlen, a3_calib_opts *opts, a3_cache *cache,
                 a3_progress_fn progress, void *ctx, a3_err *err);

/* What the cache metadata records about a run (see include/a3/cache.h). */
typedef struct {
    const char *model_path;
    const a3_config *config;
    const char *fingerprint; /* hex SHA-256 of the model */
    const char *const *texts; /* calibration files (text or ids) */
    const char *const *text_sha256; /* NULL, or per text the hex SHA-256 of
                                     * the bytes actually read (a pipe
                                     * cannot be read twice) */
    int n_texts;
    int n_windows, seqlen;
    int64_t seed, n_tokens;
    int mlp_full;
    const char *created;     /* ISO 8601 UTC */
    const char *blas_kernel; /* a3_calib_opts.kernel; NULL: not recorded */
    int shard_index, shard_count; /* 1-based K of N, or 0 when not sharded */
} a3_calib_meta;

/* Build the metadata JSON (hashing each text file with SHA-256). Returns a
 * malloc'd string or NULL with err set. */
char *a3_calib_meta_json(const a3_calib_meta *m, a3_err *err);

/* Combine caches calibrated on disjoint shards of one run (`calibrate
 * --shard K/N`): statistics and token counts add up, curves are recomputed.
 * names[] are used in messages. A3_EMISMATCH if the shards differ in
 * model or dims. *out is a new cache (metadata: the first shard's with the
 * totals and "merged_shards"). */
int a3_cache_merge(a3_cache *const *shards, const char *const *names, int n,
                   a3_cache **out, a3_err *err);

/* Remove a checkpoint directory left by a3_calibrate (after the cache it
 * was for has been saved). */
void a3_calib_checkpoint_remove(const char *dir, int n_layers);
/* Finished layers a checkpoint directory holds (0 when it has no valid
 * meta.json, -1 when there is no such directory). */
int a3_calib_checkpoint_layers(const char *dir);

/* Loss curves of one layer from its statistics (sums over n_tokens) and
 * the layer's weights: o_proj.weight (d, n_heads*hd) and
 * down_proj.weight (d, d_ff), float32 row-major as HF stores them.
 * Fills qk_order/score/loss, ov_sv, mlp_order/score/loss. */
int a3_calib_curves(a3_cache *cache, int layer, const float *o_proj,
                    const float *down_proj, a3_err *err);
/* The two halves of a3_calib_curves: the weights' own statistics
 * (WO_GRAM, DOWN_NORM sections), then the curves from the cache alone
 * (what `cache merge` reruns after adding shards together). */
int a3_calib_weight_stats(a3_cache *cache, int layer, const float *o_proj,
                          const float *down_proj, a3_err *err);
int a3_calib_curves_from_stats(a3_cache *cache, int layer, a3_err *err);

#endif
