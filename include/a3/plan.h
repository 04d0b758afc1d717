/* plan: rank plans (how wide every QK group, OV group and MLP of every
 * layer stays), their costs, their predicted loss, the allocators that make
 * them from a calibration cache, and their JSON file. The TUI and the CLI
 * (`a3 plan`) both call this module; `a3 apply` reads its plans.
 *
 * Units a plan chooses (A3-METHOD.md sections 3-6), per layer l:
 *   qk[l][g]  QK rank of KV group g, even (RoPE pairs are kept whole),
 *             0..head_dim; loss at rank r is the cache's qk_loss[g][r/2].
 *   ov[l][g]  OV rank of KV group g, 0..head_dim; loss at rank r is
 *             sum_{j>=r} ov_sv[g][j]^2.
 *   mlp[l]    MLP width, 0..d_ff; loss at width w is mlp_loss[w].
 * The predicted relative loss of a component (layer l, kind k) is
 *   rel(l,k) = sum_g loss_g(rank_g) / sum_g loss_g(0)    (0 if that is 0),
 * so every component runs from 0 (full width) to 1 (width 0) and layers
 * are comparable. The plan summary reports, per kind, the MEAN of rel(l,k)
 * over layers, and the objective sum_l sum_k weight_k * rel(l,k). The
 * curves are those of the plan's methods from the prediction sidecar
 * (include/a3/pred.h, the *_with functions) when given, exact for every
 * method (the MLP ones with Ru); otherwise the cache's A3 curves whatever
 * method is chosen (the MLP ones the diagonal estimate).
 *
 * Costs (A3-METHOD.md section 6; g = n_heads / n_kv_heads, b = 1 when the
 * model has q/k/v biases, else 0; per layer, summed over layers):
 *   parameters  QK: sum_g r_qk * (d + b) * (g + 1)
 *               OV: sum_g r_ov * (d * (1 + g) + b)
 *               MLP: 3 * d * w
 *               compressible = QK + OV + MLP (biases included); whole model
 *               adds vocab*d embeddings, vocab*d lm_head unless tied, and
 *               (2 * n_layers + 1) * d norm weights, exactly as
 *               a3_model_count_params counts them.
 *   KV bytes per token: sum_g (r_qk + r_ov) * bytes of the KV dtype.
 *   FLOPs per token, attending to T keys (the plan's context):
 *               layers = 2 * (compressible weights) + 1 per bias element
 *               + sum_g g * 2 * T * (r_qk + r_ov) (scores and the weighted
 *               sum of values); whole model adds the lm_head, 2 * vocab * d.
 *               Norms, RoPE, softmax and activations are not counted.
 * Budgets name the fraction REMOVED of a compressible total: params=20%
 * removes 20% of the compressible parameters, kv=30% removes 30% of the KV
 * bytes per token, flops=25% removes 25% of the layers' FLOPs per token.
 *
 * Allocators (a3_plan_allocate), both deterministic:
 *   uniform  one keep-fraction for every unlocked component the budget can
 *            shrink (the MLP stays whole under a kv budget), rounded down to
 *            each component's multiple, then single steps added back in
 *            order of rounding remainder while the budget still holds; or,
 *            with no budget, the keep-fraction per kind in alloc.keep.
 *   greedy   from full width, repeatedly remove the unit with the smallest
 *            increase of the objective per unit of cost saved, until the
 *            budget is met. Loss curves need not be convex, so "the next
 *            unit" is read on the lower convex hull of each component's
 *            curve: the step taken is the run of units with the smallest
 *            average increase per cost, which is the plain marginal ratio
 *            whenever the curve is convex (OV and the diagonal MLP curves
 *            always are). The last run is cut at the unit that meets the
 *            budget. If the uniform plan at the same budget predicts a
 *            lower objective (possible only with strongly non-convex
 *            curves), greedy returns that plan instead, so greedy is never
 *            worse than uniform by its own measure.
 *   Granularity: with multiple M (default 1) a component's allowed widths
 *   are its full width and the multiples of u in [min_rank, full), u = M
 *   (QK: lcm(2, M)); min_rank is rounded up to a multiple of u. Locked
 *   components keep the width they have in the plan (full width in a new
 *   plan) and their saving counts towards the budget: a lock pins a width
 *   and the allocators re-allocate around it. Budgets are met to within one step:
 *   the removed cost is >= the target and exceeds it by less than the cost
 *   of one allowed step of one component.
 *
 * Plan file (JSON, UTF-8), written with a fixed key order and layout so
 * that plans diff well: 2-space indentation, small objects and each
 * layer on one line. Every key shown is required, no other key is allowed.
 *   {
 *     "format": "a3-plan",
 *     "version": 1,
 *     "tool": "a3 0.1.0",
 *     "model": {
 *       "fingerprint": hex64, "architecture": "LlamaForCausalLM",
 *       "d": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 8,
 *       "head_dim": 128, "d_ff": 11008, "vocab": 32000 | null,
 *       "tie_embeddings": false, "qkv_bias": false },   (one key a line)
 *     "cache": {"fingerprint": hex64},
 *     "methods": {"qk": "a3", "ov": "a3", "mlp": "a3"},
 *     "budget": {"kind": "params", "percent": 20},   kind none|params|kv|flops
 *     "context": 2048,
 *     "kv_dtype": "f16",                            f16|bf16|f32
 *     "allocator": {
 *       "strategy": "greedy",                       uniform|greedy|manual
 *       "weights": {"qk": 1, "ov": 1, "mlp": 1},
 *       "keep": {"qk": 1, "ov": 1, "mlp": 1},
 *       "multiple": 1,
 *       "min_rank": {"qk": 2, "ov": 1, "mlp": 1},
 *       "locks": ["3", "5:qk"] },
 *     "summary": {   (informative; recomputed on save, checked on load)
 *       "params": {"compressible": N, "compressible_full": N,
 *                  "total": N|null, "total_full": N|null},
 *       "kv_bytes_per_token": {"plan": N, "full": N},
 *       "flops_per_token": {"layers": N, "layers_full": N,
 *                           "total": N|null, "total_full": N|null},
 *       "removed_percent": {"params": x, "params_total": x|null,
 *                           "kv": x, "flops": x},
 *       "relative_loss": {"aggregate": "mean over layers",
 *                         "qk": x|null, "ov": x|null, "mlp": x|null},
 *       "objective": x|null,
 *       "curves": "exact"|"estimate"|null,
 *       "predicted": {"nll_change": x|null, "perplexity_ratio": x|null} },
 *     ("curves" and "predicted" are optional on reading: plans written
 *     before the prediction sidecar lack them; perplexity_ratio must be
 *     exp(nll_change) to 1e-5.)
 *     "layers": [
 *       {"layer": 0, "qk": [128, ...], "ov": [128, ...], "mlp": 11008},
 *       ... ] }
 * Schema: docs/plan.schema.json. Numbers that are not integers print with
 * 6 significant digits, so save -> load -> save gives identical bytes.
 * Loading checks everything and names the place, e.g.
 *   "plan.json: layers[3].qk[1]: rank 9 exceeds head dim 8".
 * A summary whose costs disagree with the ranks (a hand-edited plan) is
 * accepted: summary_stale is set and its losses are dropped (unknown). */
#ifndef A3_PLAN_H
#define A3_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "a3/cache.h"
#include "a3/config.h"
#include "a3/safetensors.h"
#include "a3/util.h"

#define A3_PLAN_VERSION 1
#define A3_PLAN_FILE_MAX ((size_t)64 << 20) /* bytes a plan file may have */
#define A3_PLAN_MAX_VOCAB (1 << 24)
#define A3_PLAN_MAX_CONTEXT (1 << 24)
#define A3_PLAN_MAX_MULTIPLE 4096
#define A3_PLAN_SEQ_FILES 16  /* calibration text files a plan records */
#define A3_PLAN_SEQ_PATH 512  /* bytes of one recorded path, NUL included */

typedef enum { A3_COMP_QK, A3_COMP_OV, A3_COMP_MLP, A3_COMP_COUNT } a3_comp;

/* Exact per-method curves and NLL sensitivities (include/a3/pred.h). */
typedef struct a3_pred a3_pred;

/* Lock bits per layer: a locked component keeps its width (see above). */
#define A3_LOCK_QK (1u << A3_COMP_QK)
#define A3_LOCK_OV (1u << A3_COMP_OV)
#define A3_LOCK_MLP (1u << A3_COMP_MLP)
#define A3_LOCK_ALL (A3_LOCK_QK | A3_LOCK_OV | A3_LOCK_MLP)

typedef enum {
    A3_QK_METHOD_A3,           /* "a3": activation-aware CUR over RoPE pairs */
    A3_QK_METHOD_WEIGHT_NORM,  /* "weight-norm": pair scores from weight norms */
    A3_QK_METHOD_GREEDY_EXACT, /* "greedy-exact": pairs by exact loss (beyond paper) */
    A3_QK_METHOD_COUNT
} a3_qk_method;

typedef enum {
    A3_OV_METHOD_A3,      /* "a3": C for MHA, Gv for GQA (paper) */
    A3_OV_METHOD_A3_CSUM, /* "a3-csum": summed C for GQA (beyond paper) */
    A3_OV_METHOD_SVD,     /* "svd": plain SVD of W_v W_o, no activations */
    A3_OV_METHOD_COUNT
} a3_ov_method;

typedef enum {
    A3_MLP_METHOD_A3,          /* "a3": D-weighted CUR */
    A3_MLP_METHOD_WEIGHT_NORM, /* "weight-norm": no activations */
    A3_MLP_METHOD_A3_REFIT,    /* "a3-refit": least squares refit with Ru */
    A3_MLP_METHOD_COUNT
} a3_mlp_method;

typedef enum {
    A3_BUDGET_NONE,   /* "none" */
    A3_BUDGET_PARAMS, /* "params": compressible parameters */
    A3_BUDGET_KV,     /* "kv": KV-cache bytes per token */
    A3_BUDGET_FLOPS,  /* "flops": the layers' FLOPs per token at context */
    A3_BUDGET_COUNT
} a3_budget_kind;

typedef enum {
    A3_STRATEGY_UNIFORM, /* "uniform" */
    A3_STRATEGY_GREEDY,  /* "greedy" */
    A3_STRATEGY_MANUAL,  /* "manual": ranks set by hand (TUI, editor) */
    A3_STRATEGY_COUNT
} a3_strategy;

typedef struct {
    int d, n_layers, n_heads, n_kv_heads, head_dim, d_ff;
    int vocab;          /* 0: unknown (whole-model totals are then -1) */
    int tie_embeddings; /* lm_head shares the embedding matrix */
    int qkv_bias;       /* q/k/v projections have biases (Qwen2) */
} a3_plan_dims;

/* How the allocator was (or is to be) run; recorded in the file. */
typedef struct {
    a3_strategy strategy;
    double weight[A3_COMP_COUNT]; /* objective weight per kind, >= 0 */
    double keep[A3_COMP_COUNT];   /* uniform without a budget: keep-fraction
                                   * per kind in [0, 1] */
    int multiple;                 /* widths are multiples of M >= 1 (--multiple) */
    int min_rank[A3_COMP_COUNT];  /* smallest width an allocator picks,
                                   * 0..full (default QK 2, OV 1, MLP 1) */
} a3_plan_alloc;

/* Sequential reduction (include/a3/sequential.h): apply solves each layer
 * on the calibration tokens as the already-reduced layers transform them.
 * Recorded in the plan ("sequential", absent for one-shot) so that apply
 * honours it; the tokens are drawn as 'a3 calibrate' draws them. */
typedef struct {
    int on;                       /* 0: one-shot (the paper's A3) */
    int n_texts;                  /* calibration text files, 0 with ids */
    char texts[A3_PLAN_SEQ_FILES][A3_PLAN_SEQ_PATH];
    char ids[A3_PLAN_SEQ_PATH];   /* pre-tokenized ids file, or "" */
    int samples, seqlen;          /* windows, tokens per window; 0: the
                                   * calibrate defaults */
    int64_t seed;                 /* window seed, >= 0 */
} a3_plan_seq;

typedef struct {
    double rel[A3_COMP_COUNT]; /* mean over layers of rel(l, k) */
    double objective;          /* sum_l sum_k weight_k * rel(l, k) */
    int exact;                 /* every curve exact for the plan's methods
                                * (a prediction sidecar with Ru); else the
                                * MLP (and GQA OV) losses are estimates */
    int nll_known;             /* the probe was run: dnll is valid */
    double dnll;               /* predicted change of the mean NLL (nats);
                                * perplexity changes by exp(dnll) */
} a3_plan_loss;

/* Costs of a plan; all in elements, bytes or FLOPs per token. */
typedef struct {
    int64_t qk, ov, mlp, bias; /* compressible weights by kind; q/k/v biases */
    int64_t compressible;      /* qk + ov + mlp + bias */
    int64_t total;             /* + embeddings, lm_head, norms; -1 if vocab unknown */
    int64_t kv_bytes;          /* KV-cache bytes per token */
    int64_t flops;             /* layers, at the plan's context */
    int64_t flops_total;       /* + lm_head; -1 if vocab unknown */
} a3_cost_counts;

typedef struct {
    char tool[32];               /* "a3 0.1.0": the writer */
    a3_plan_dims dims;
    char architecture[64];       /* "LlamaForCausalLM", or "" if unknown */
    char model_fingerprint[65];  /* hex SHA-256 (a3_model_fingerprint) */
    char cache_fingerprint[65];  /* a3_plan_cache_fingerprint of the cache
                                  * planned on, or "" if none */
    a3_qk_method qk_method;
    a3_ov_method ov_method;
    a3_mlp_method mlp_method;
    a3_budget_kind budget;
    double budget_pct;           /* percent removed, [0, 100); 0 for none */
    int context;                 /* T for FLOPs, 1..A3_PLAN_MAX_CONTEXT */
    a3_dtype kv_dtype;           /* A3_DT_F16, A3_DT_BF16 or A3_DT_F32 */
    a3_plan_alloc alloc;
    a3_plan_seq seq;             /* sequential reduction, if on */
    uint8_t *lock;               /* (n_layers) A3_LOCK_* bits */
    int *qk;                     /* (n_layers, n_kv_heads) QK ranks */
    int *ov;                     /* (n_layers, n_kv_heads) OV ranks */
    int *mlp;                    /* (n_layers) MLP widths */
    int loss_known;              /* loss below is valid */
    a3_plan_loss loss;           /* as predicted when planned */
    int summary_stale;           /* loaded summary disagreed with the ranks */
    char source[256];            /* file name for messages ("plan" if none) */
} a3_plan;

/* ---- names ---------------------------------------------------------------- */

const char *a3_comp_name(a3_comp k);                  /* "qk", "ov", "mlp"; "?" */
const char *a3_plan_method_name(a3_comp k, int m);    /* "a3", ...; "?" */
int a3_plan_method_parse(a3_comp k, const char *s);   /* method, or -1 */
const char *a3_budget_name(a3_budget_kind b);         /* "params", ...; "?" */
int a3_budget_parse(const char *s);                   /* kind, or -1 */
const char *a3_strategy_name(a3_strategy s);          /* "greedy", ...; "?" */
int a3_strategy_parse(const char *s);                 /* strategy, or -1 */
const char *a3_plan_kv_dtype_name(a3_dtype dt);       /* "f16", "bf16", "f32"; "?" */
int a3_plan_kv_dtype_parse(const char *s, a3_dtype *out); /* 0, or -1 */

/* Turn sequential reduction on in q with these calibration tokens: text
 * files (n_texts >= 1) or an ids file, exactly one; samples/seqlen 0 for
 * the calibrate defaults, seed in [0, 2^53). A3_EINVAL (q unchanged) for
 * too many files, a path too long, or both/neither kind of tokens. */
int a3_plan_seq_set(a3_plan_seq *q, const char *const *texts, int n_texts, const char *ids, int samples,
                    int seqlen, int64_t seed, a3_err *err);
/* Sequential reduction on the cache's own calibration tokens (the files,
 * windows, length and seed its metadata records: a text file there without
 * a SHA-256 is the ids file it was calibrated from). A3_EINVAL when the
 * cache records no files or too many; q unchanged on failure. */
int a3_plan_seq_from_cache(a3_plan_seq *q, const a3_cache *c, a3_err *err);

/* ---- lifetime -------------------------------------------------------------- */

/* A full-width plan for these dims, with the defaults: methods "a3", no
 * budget, context 2048, KV dtype f16, strategy manual, weights 1, keep 1,
 * multiple 1, min ranks 2/1/1, nothing locked, loss unknown, source "plan",
 * empty fingerprints and architecture. A3_EINVAL names a bad dimension
 * (the caps are the cache's, head_dim even, n_heads a multiple of
 * n_kv_heads, vocab 0..A3_PLAN_MAX_VOCAB, costs within int64);
 * A3_ENOMEM. *out is NULL on failure; free with a3_plan_free. */
int a3_plan_new(const a3_plan_dims *dims, a3_plan **out, a3_err *err);
/* A full-width plan for the cache's model: dims, model fingerprint and
 * cache fingerprint from the cache; architecture, vocab, tie_embeddings and
 * qkv_bias from the metadata's "model" object when present (keys
 * "architecture", "vocab", "tie_embeddings", "qkv_bias"; qkv_bias defaults
 * to true for Qwen2ForCausalLM), else unknown/false. A3_EFORMAT if the
 * cache's fingerprint is not 64 hex digits. */
int a3_plan_from_cache(const a3_cache *c, a3_plan **out, a3_err *err);
/* Set p's methods to the defaults for plans on cache c (what `a3 plan` and
 * the TUI start from): a3 for QK and OV; for the MLP a3-refit when the
 * cache has Ru (calibrated with --mlp-full), else a3. Chosen on the DEV
 * splits of docs/RESULTS.md (section "predict"): with Ru the refit had the
 * lower NLL at every params budget on stories260K and the sample model. */
void a3_plan_default_methods(a3_plan *p, const a3_cache *c);
/* Deep copy (for undo in the TUI). */
int a3_plan_copy(const a3_plan *p, a3_plan **out, a3_err *err);
void a3_plan_free(a3_plan *p); /* accepts NULL */

/* Take vocab, tie_embeddings, qkv_bias and the architecture name from a
 * model config (the cache metadata may lack them). A3_EMISMATCH, naming the
 * field, if the config's dims differ from the plan's. */
int a3_plan_set_config(a3_plan *p, const a3_config *cfg, a3_err *err);

/* The identity of a cache as far as plans are concerned: hex SHA-256 of
 * the metadata JSON (u64 little-endian length, then its bytes; length 0 if
 * none) followed by, layer by layer, the QK_LOSS, OV_SV and MLP_LOSS arrays
 * as little-endian binary64. */
void a3_plan_cache_fingerprint(const a3_cache *c, char hex[65]);

/* Row pointers (no checks: l must be in range). */
static inline int *a3_plan_qk(const a3_plan *p, int l) { return p->qk + (size_t)l * p->dims.n_kv_heads; }
static inline int *a3_plan_ov(const a3_plan *p, int l) { return p->ov + (size_t)l * p->dims.n_kv_heads; }

/* ---- costs and predicted loss --------------------------------------------- */

/* Costs of the plan's widths (formulas above). */
void a3_plan_costs(const a3_plan *p, a3_cost_counts *out);
/* Cost of layer l's widths in the unit of budget kind b (params:
 * elements, kv: bytes, flops: FLOPs/token at the plan's context), for
 * components ks (A3_LOCK_* bits): what the TUI sorts layers by. 0 for
 * A3_BUDGET_NONE. */
int64_t a3_plan_layer_cost(const a3_plan *p, int l, unsigned ks, a3_budget_kind b);
/* Costs of the same model at full width (the uncompressed model). */
void a3_plan_full_costs(const a3_plan *p, a3_cost_counts *out);
/* The compressible total a budget kind is measured on (params:
 * compressible, kv: kv_bytes, flops: flops); 0 for A3_BUDGET_NONE. */
int64_t a3_plan_budget_value(const a3_cost_counts *c, a3_budget_kind b);

/* Predicted loss of the plan's ranks on the cache's curves (definitions
 * above), weights from p->alloc.weight. layer_rel, if not NULL, receives
 * rel(l, k) at [l * A3_COMP_COUNT + k]. A3_EMISMATCH if the cache's dims
 * differ from the plan's; A3_EINVAL if a rank is out of range. */
int a3_plan_predict(const a3_plan *p, const a3_cache *c, double *layer_rel,
                    a3_plan_loss *out, a3_err *err);
/* a3_plan_predict into p->loss; sets loss_known, clears summary_stale. */
int a3_plan_update_loss(a3_plan *p, const a3_cache *c, a3_err *err);
/* The same with a prediction sidecar (include/a3/pred.h; NULL: as above):
 * rel(l, k) reads the exact curve of the plan's method for kind k (the
 * cache's A3 curve where the sidecar has none, e.g. a3-refit without Ru),
 * out->exact says whether every curve used is exact, and with a complete
 * probe out->dnll = sum_l sum_k s[l][k] rel(l, k) (nll_known = 1). */
int a3_plan_predict_with(const a3_plan *p, const a3_cache *c, const a3_pred *pr,
                         double *layer_rel, a3_plan_loss *out, a3_err *err);
int a3_plan_update_loss_with(a3_plan *p, const a3_cache *c, const a3_pred *pr,
                             a3_err *err);

/* "removes 20.0% of <what> (keeps 80.0%)" for a value against its full
 * value (both rounded to 0.1% consistently, so they add up to 100.0%);
 * "adds X% ..." if value > full. Returns buf. */
char *a3_plan_fmt_change(char *buf, size_t n, int64_t value, int64_t full,
                         const char *what);

/* ---- allocation ------------------------------------------------------------ */

/* Set p's widths from the cache's curves, with p->budget, p->budget_pct,
 * p->context, p->kv_dtype (the cost the budget is measured in), p->lock
 * and p->alloc (strategy, weights, keep, multiple, min ranks), as the
 * header comment describes; then update p->loss. Uniform without a budget
 * uses alloc.keep; greedy needs a budget. A3_EINVAL with a message for a
 * budget that the locks and minimum ranks make unreachable ("at most X%
 * can be removed"), bad options, or a manual strategy; A3_EMISMATCH if the
 * cache's dims differ; A3_ENOMEM. On failure p's widths are unchanged. */
int a3_plan_allocate(a3_plan *p, const a3_cache *c, a3_err *err);
/* The same on the sidecar's curves of the plan's methods; with a complete
 * probe the objective weight of (layer l, kind k) becomes weight_k *
 * s[l][k], so greedy removes the unit with the least predicted NLL
 * increase per unit of cost. pr NULL: a3_plan_allocate. */
int a3_plan_allocate_with(a3_plan *p, const a3_cache *c, const a3_pred *pr,
                          a3_err *err);

/* Add a lock from a spec: "L" (whole layer), "L:qk", "L:ov", "L:mlp",
 * or a range "A-B" / "A-B:kind". A3_EINVAL naming the spec if malformed
 * or out of range. */
int a3_plan_lock_parse(a3_plan *p, const char *spec, a3_err *err);
/* Parse "params=20%" (the % optional) into kind and percent in [0, 100);
 * a bare "20" or "20%" is a params budget (the CLI's --budget and the
 * TUI's b take the same forms). A3_EINVAL naming what is wrong. */
int a3_plan_budget_parse(const char *s, a3_budget_kind *kind, double *pct,
                         a3_err *err);

/* ---- files ----------------------------------------------------------------- */

/* The plan's JSON text (layout above), summary recomputed from the ranks.
 * *out is NUL-terminated, *len excludes the NUL; caller frees. A3_EINVAL
 * if the plan is invalid (a3_plan_validate without a cache). */
int a3_plan_to_json(const a3_plan *p, char **out, size_t *len, a3_err *err);
/* Write a3_plan_to_json atomically (temp file + rename). */
int a3_plan_save(const a3_plan *p, const char *path, a3_err *err);
/* Parse and check a plan text; name is used in messages and kept in
 * source. A3_EFORMAT "<name>: <json path>: <what>" for anything malformed,
 * A3_EUNSUPPORTED for another format version, A3_ENOMEM. *out is NULL on
 * failure. A malformed plan never reaches a caller. */
int a3_plan_parse(const char *name, const char *text, size_t len,
                  a3_plan **out, a3_err *err);
/* Read path (at most A3_PLAN_FILE_MAX bytes) and a3_plan_parse it. */
int a3_plan_load(const char *path, a3_plan **out, a3_err *err);

/* Check an in-memory plan: dims, enums, options, ranks in range and even
 * QK ranks (A3_EINVAL "<source>: <json path>: <what>"). With a cache, also
 * that its dims equal the plan's (A3_EMISMATCH) and, unless force, that
 * the model fingerprints are equal (A3_EMISMATCH). A different cache
 * fingerprint is not an error: a plan may be applied with another
 * calibration of the same model. */
int a3_plan_validate(const a3_plan *p, const a3_cache *c, int force,
                     a3_err *err);

/* Write the plan's widths into a config of the same model (set up by
 * a3_config_load / a3_config_init_full): qk_rank, ov_rank, mlp_width; and
 * rope_idx entries at p >= qk_rank/2 to -1. Which RoPE pairs are kept (the
 * entries below qk_rank/2) is the QK solver's choice, not the plan's: they
 * are left for it to fill. A3_EMISMATCH naming the field if the config's
 * dims differ. */
int a3_plan_to_config_shapes(const a3_plan *p, a3_config *cfg, a3_err *err);

#endif
