/* sequential: reduce the layers in order, each one solved on the inputs
 * that the already-reduced layers produce (beyond the paper; the
 * derivations, what is exact and what is approximated are in
 * docs/SEQUENTIAL.md).
 *
 * Two hidden-state streams of the calibration tokens are kept: X, through
 * the original layers, and X^ (X_hat), through the reduced ones. For layer
 * l, with X and X^ its inputs:
 *   1. QK: q, k of the original weights on both streams give Gq, Gk (on X),
 *      their counterparts on X^ and the cross terms E[q^T q], E[k^T k]
 *      between the streams; the kept RoPE pairs minimise the score error
 *      ||q k^T - q^_S k^_S^T|| on these statistics; (qk_measured) or,
 *      where a group has at most A3_SEQ_QKM_CAP subsets to choose from,
 *      the subset whose attention outputs on X^ are closest to the
 *      original layer's on X (by default: after the OV solve and o
 *      refit that subset would get), each subset run through the layer
 *      up to z.
 *   2. OV: with the reduced QK in place, the attention outputs y of the
 *      original v_proj on X^ (the reduced pattern) against the original z
 *      on X: Cyy = E[y^T y], Cyz = E[y^T z], and (ov_drift) the share of
 *      the input drift x - x^ each head also fits; a3_ov_solve_stats_t.
 *      (ov_refit) then the kept o_proj columns are refit jointly by least
 *      squares to the original attention output plus the drift, from
 *      sums over the same pass (z^^T z^ and z^^T t of the full z^, which
 *      any v map acts on linearly).
 *   3. MLP: with the reduced attention in place, the intermediate u^ of the
 *      original gate/up on X^ against u on X and the original output
 *      y = u W_down: neurons scored on E[u^ u] and E[u^2]; refit (method
 *      a3-refit) by least squares of y on u^_S (a3_mlp_refit_stats).
 *   4. X^ goes through the reduced layer, X through the original one.
 * With X^ = X (the first layer, or full ranks upstream) every step is the
 * one-shot solve of include/a3/reduce.h (tests/test_sequential.c).
 * Methods without activations (qk weight-norm, ov svd, mlp weight-norm)
 * are the one-shot ones.
 *
 * The solver plugs into a3_apply (a3_apply_opts.solver), which calls it
 * layer by layer and writes the model as usual.
 *
 * Memory: both streams (2 x n_windows x seqlen x d floats), one chunk of
 * activations of each stream, the zero-padded reduced layer (one layer in
 * float32), and the layer's statistics in float64 (a few hd x hd per head,
 * hd x d per head for the OV drift, 2 (per x hd)^2 per group and
 * candidate for the measured QK, at most A3_SEQ_QKM_OV_BYTES;
 * with a3-refit also F x F + 2 F x d, F = d_ff, or max(d_ff, nh x hd)
 * with ov_refit, whose statistics reuse these buffers). Time: per layer,
 * partial passes of both streams up to q/k, up to z, up to u, and one
 * whole pass of each: about 4 calibration passes in all
 * (docs/SEQUENTIAL.md); with qk_measured one more partial pass of X up
 * to z (per batch of candidates, one for the small models) and one of X^
 * per candidate (at most A3_SEQ_QKM_CAP), on qk_measured_windows
 * windows. */
#ifndef A3_SEQUENTIAL_H
#define A3_SEQUENTIAL_H

#include <stddef.h>
#include <stdint.h>

#include "a3/apply.h"
#include "a3/cache.h"
#include "a3/model.h"
#include "a3/plan.h"
#include "a3/util.h"

typedef struct a3_seq a3_seq;

typedef struct {
    size_t chunk_rows;       /* rows per chunk, whole windows (0: 2048) */
    a3_progress_fn progress; /* stage "layer l/n"; done/total: token rows
                              * processed, 4 per token and layer, plus
                              * one per measured QK candidate and
                              * measured token */
    void *ctx;
    int target_layer_output; /* MLP refit target: the original layer's
                              * output minus the reduced stream's residual,
                              * y + h - h^, instead of the MLP output y */
    double ov_drift;         /* OV target of head i: z_i W_o,i + ov_drift *
                              * (x - x^), the layer inputs' drift (0: the
                              * attention output only; A3_SEQ_OV_DRIFT was
                              * chosen without ov_refit; the CLI and the
                              * TUI run 0 with ov_refit, a3_seq_opts_default;
                              * docs/SEQUENTIAL.md). Used only with MLP
                              * method a3-refit */
    int ov_refit;            /* after the per-head OV solve, every kept
                              * o_proj column refit jointly by least
                              * squares to z W_o^T + (x - x^) (the layer's
                              * attention output on X plus the whole input
                              * drift; docs/SEQUENTIAL.md, "OV refit"),
                              * from sums of the OV pass (no pass of its
                              * own). Used only with MLP method a3-refit
                              * and OV methods with activations (not svd) */
    int qk_measured;         /* A3_SEQ_QKM_*: choose each QK group's kept
                              * RoPE pairs by the attention-output error
                              * measured on X^ (every candidate subset run
                              * through the layer up to z) instead of the
                              * score proxy; groups with more than
                              * A3_SEQ_QKM_CAP candidates, and method
                              * weight-norm, keep the proxy's choice
                              * (docs/SEQUENTIAL.md, "Measured QK") */
    int qk_measured_windows; /* measure on the first this many calibration
                              * windows (a random sample: the windows are
                              * drawn at random); 0 or more than there
                              * are: all */
    size_t qk_measured_bytes; /* mode OV: the candidates' statistics held at
                               * a time (0: A3_SEQ_QKM_OV_BYTES; at least
                               * one candidate's) */
    const char *record_json; /* JSON object for the output config's "a3"
                              * section, key "sequential" (copied; NULL: {}) */
} a3_seq_opts;

/* Peak bytes of the solver itself (both streams, chunk scratch, padded
 * layer, statistics), not counting a3_apply's own layer buffers. */
size_t a3_seq_memory_estimate(const a3_config *c, int n_windows, int seqlen,
                              size_t chunk_rows, int refit);

/* Set up for model m (original, uncompressed), plan p and cache c (used
 * only by the methods without activations) over the calibration windows
 * (n_windows x seqlen token ids, copied: embedded into both streams).
 * A3_EUNSUPPORTED for a compressed model, A3_EINVAL for bad windows,
 * A3_ENOMEM. *out NULL on failure. */
int a3_seq_new(a3_model *m, const a3_plan *p, const a3_cache *c,
               const int32_t *windows, int n_windows, int seqlen,
               const a3_seq_opts *o, a3_seq **out, a3_err *err);
void a3_seq_free(a3_seq *s); /* accepts NULL */

/* The share of the input drift in each head's OV target, chosen on DEV
 * without the OV refit (docs/SEQUENTIAL.md, "OV drift"); the defaults
 * below use the OV refit instead, which fits the drift jointly. */
#define A3_SEQ_OV_DRIFT 0.5

/* The options the CLI and the TUI run with (progress and record_json
 * left to the caller): the MLP refit's target is the layer output, the
 * OV refit on and no per-head drift share, the QK pairs chosen by the
 * measured error after the OV solve and o refit (A3_SEQ_QKM_OV) on
 * A3_SEQ_QKM_WINDOWS windows, all chosen on DEV (docs/SEQUENTIAL.md, "OV
 * refit", "Measured QK"). */
a3_seq_opts a3_seq_opts_default(void);

/* a3_seq_opts.qk_measured: the error of group g's candidate S, summed
 * over the calibration tokens and the group's query heads i, with z_i
 * the original layer's attention output on X and z^_i(S) the layer's
 * with the group's q/k rows cut to S (v, o original) on X^:
 *   Z:        ||z^_i - z_i||^2
 *   ZO_HEAD:  ||(z^_i - z_i) W_o,i^T||^2    (through head i's o columns)
 *   ZO_GROUP: ||sum_i (z^_i - z_i) W_o,i^T||^2   (the group's heads jointly)
 *   OV:       min over S of ||sum_i z^_i T S_i - sum_i z_i W_o,i^T||^2,
 *             T (hd x r, r the plan's OV rank) the v map of the OV solve
 *             on this candidate's statistics (the group-summed Cyy, Cyz
 *             of a3-csum), S_i (r x d) the group's o columns refit by
 *             least squares: the group's output error after what the
 *             OV phase can make up (the cross-group terms and the input
 *             drift left out) */
enum { A3_SEQ_QKM_OFF, A3_SEQ_QKM_Z, A3_SEQ_QKM_ZO_HEAD, A3_SEQ_QKM_ZO_GROUP, A3_SEQ_QKM_OV, A3_SEQ_QKM_COUNT };
/* At most this many candidate subsets per group (every C(hd/2, kept pairs)
 * subset is tried; a group with more keeps the proxy's choice). Each
 * candidate costs one partial pass of the reduced stream up to z. */
#define A3_SEQ_QKM_CAP 70
/* The windows a3_seq_opts_default measures on (DEV: as good as all 64 on
 * both small models, a quarter of the cost; docs/SEQUENTIAL.md). */
#define A3_SEQ_QKM_WINDOWS 16

/* Mode OV keeps each candidate's statistics (two (per*hd)^2 sums per
 * group) until the windows end; at most this many bytes of them at a
 * time (the candidates in batches, each further batch one more run of the
 * original layer on the measured windows). The small models need one
 * batch (stories260K 16 KiB per candidate, the sample model 64 KiB). */
#define A3_SEQ_QKM_OV_BYTES ((size_t)64 << 20)

/* The calibrate defaults, used when a plan's samples/seqlen are 0. */
#define A3_SEQ_DEFAULT_SAMPLES 128
#define A3_SEQ_DEFAULT_SEQLEN 2048

/* a3_seq_new on the tokens q names (text files tokenized with m's
 * tokenizer, or an ids file), windows drawn as 'a3 calibrate' draws them
 * (a3_calib_windows; seqlen capped by the model's context; allow_short as
 * there). o may be NULL; with o->record_json NULL the output config
 * records q (files, samples, seqlen, seed). Errors name the file. */
int a3_seq_from_plan(a3_model *m, const a3_plan *p, const a3_cache *c, const a3_plan_seq *q, int allow_short,
                     const a3_seq_opts *o, a3_seq **out, a3_err *err);
/* The windows the solver runs on. */
void a3_seq_tokens(const a3_seq *s, int *n_windows, int *seqlen);

/* The solver for a3_apply_opts.solver (valid while s lives). Layers must
 * be solved in order; a3_apply does that. */
const a3_layer_solver *a3_seq_solver(a3_seq *s);

/* The measured QK's candidates of group g in the last solved layer:
 * returns their number n (0: the group was not measured, or g is not a
 * group of the model), their kept
 * pairs into pairs (n x kept pairs, ascending; may be NULL; at most
 * A3_SEQ_QKM_CAP rows) and each one's error into err (n; may be NULL):
 * the sums of a3_seq_opts.qk_measured's error (mode OV: less
 * ||t_g||^2). For tests. */
int a3_seq_qk_candidates(const a3_seq *s, int g, int32_t *pairs, double *err);

/* The stream after the last finished layer: X (reduced 0) or X^ (1),
 * (n_windows * seqlen, d), before the final norm. For tests. */
const float *a3_seq_stream(const a3_seq *s, int reduced);

#endif
