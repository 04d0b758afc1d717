/* cache: the calibration statistics and loss curves of one model, in one
 * versioned file that the planner, the TUI and `a3 apply` load in
 * milliseconds without touching the model.
 *
 * In memory: a3_cache, below. Statistics are SUMS over the n_tokens
 * calibration tokens (E[.] = sum / n_tokens), float64. Matrices are
 * row-major and symmetric (both triangles stored).
 *
 * File layout (all integers little-endian):
 *   off 0   8 bytes  magic "A3CACHE\0"
 *   off 8   u32      format version (A3_CACHE_VERSION)
 *   off 12  u32      number of sections S
 *   off 16  u64      length J of the metadata JSON
 *   off 24  J bytes  metadata JSON (UTF-8, see below)
 *   then    u32      CRC-32 of the metadata JSON
 *   then S sections, each:
 *           u32 kind (a3_cache_section), u32 layer, u64 element count n,
 *           u32 element type (0 = f64, 1 = i32), u32 CRC-32 of the payload,
 *           n elements of payload
 *   The file ends exactly after the last section.
 *   Element type per kind: QK_ORDER and MLP_ORDER are i32 (4 bytes), every
 *   other kind f64 (8 bytes, IEEE 754 binary64), both little-endian. The
 *   payload CRC covers the payload bytes as stored. Writers emit sections
 *   layer by layer, kinds in enum order within a layer; readers accept any
 *   order. S counts the sections actually present (RU only with mlp_full).
 * Metadata JSON: {"format":"a3-cache","version":1,"tool":"a3 0.1.0",
 *   "created":"2026-11-23T20:00:00Z","model":{"path":..,"fingerprint":hex64,
 *   "architecture":..,"d":..,"n_layers":..,"n_heads":..,"n_kv_heads":..,
 *   "head_dim":..,"d_ff":..,"rope_layout":"half"},"calibration":{"texts":
 *   [{"path":..,"sha256":hex64}],"samples":N,"seqlen":L,"seed":S,
 *   "n_tokens":T,"mlp_full":bool,"blas_kernel":"Zen"}} (blas_kernel: the
 *   OpenBLAS kernel(s) of the statistics, '+'-joined after a resume on
 *   another; absent in caches made before it was recorded)
 * The metadata's "version" equals the header's; the metadata is at most
 * A3_CACHE_META_MAX bytes with no NUL byte; dims are integers within the
 * A3_CACHE_MAX_* caps below, head_dim even, n_heads a multiple of
 * n_kv_heads; fingerprint is 64 lower-case hex digits; n_tokens >= 1.
 * Other fields (path, architecture, texts...) are informative and optional
 * for the reader. Values: every f64 finite; each KV group's QK_ORDER row a
 * permutation of 0..hd/2-1 and MLP_ORDER a permutation of 0..d_ff-1.
 * Every section's n must equal what the dims in the metadata imply; a
 * missing, duplicated, unknown or mis-sized section, a CRC mismatch, a
 * truncated or over-long file, or a foreign magic/version is an error
 * naming the file and the section. Written atomically (temp + rename). */
#ifndef A3_CACHE_H
#define A3_CACHE_H

#include <stdint.h>

#include "a3/util.h"

#define A3_CACHE_VERSION 1

/* Sanity caps checked before anything is allocated (the file size is
 * checked against the dims too, so a short file cannot claim huge arrays). */
#define A3_CACHE_META_MAX ((size_t)16 << 20) /* metadata JSON bytes */
#define A3_CACHE_MAX_DIM (1 << 20)           /* d, d_ff */
#define A3_CACHE_MAX_COUNT (1 << 12)         /* n_layers, n_heads */
#define A3_CACHE_MAX_HEAD_DIM 1024           /* config.json's bound; the QK curves keep per-pair scratch on the stack */

typedef enum {
    A3_SEC_GQ,        /* (n_heads, hd, hd) f64: sum of q_i^T q_i, pre-RoPE */
    A3_SEC_GK,        /* (n_kv, hd, hd) f64 */
    A3_SEC_GV,        /* (n_kv, hd, hd) f64 */
    A3_SEC_C,         /* (n_heads, hd, hd) f64: sum of z_i^T z_i */
    A3_SEC_D,         /* (d_ff) f64: sum of u*u */
    A3_SEC_RU,        /* (d_ff, d_ff) f64, only with mlp_full */
    A3_SEC_QK_ORDER,  /* (n_kv, hd/2) i32: RoPE pairs by descending score */
    A3_SEC_QK_SCORE,  /* (n_kv, hd/2) f64: score of each pair in that order */
    A3_SEC_QK_LOSS,   /* (n_kv, hd/2 + 1) f64: mean loss keeping the first k pairs */
    A3_SEC_OV_SV,     /* (n_kv, hd) f64: singular values, descending */
    A3_SEC_MLP_ORDER, /* (d_ff) i32: neurons by descending score */
    A3_SEC_MLP_SCORE, /* (d_ff) f64: score of each neuron in that order */
    A3_SEC_MLP_LOSS,  /* (d_ff + 1) f64: mean loss keeping the first w neurons */
    A3_SEC_WO_GRAM,   /* (n_kv, hd, hd) f64: sum over the group's heads of
                       * Wo_i Wo_i^T (weights only: lets `cache merge`
                       * recompute the OV curves without the model) */
    A3_SEC_DOWN_NORM, /* (d_ff) f64: ||W_down[n,:]||^2 (weights only) */
    A3_SEC_COUNT
} a3_cache_section;

typedef struct {
    double *gq, *gk, *gv, *c, *d, *ru; /* ru NULL unless mlp_full */
    int32_t *qk_order;
    double *qk_score, *qk_loss;
    double *ov_sv;
    int32_t *mlp_order;
    double *mlp_score, *mlp_loss;
    double *wo_gram, *down_norm;
} a3_cache_layer;

typedef struct a3_cache_file a3_cache_file;

typedef struct {
    /* dims (copied into the metadata) */
    int d, n_layers, n_heads, n_kv_heads, head_dim, d_ff;
    int mlp_full;
    int64_t n_tokens;
    char fingerprint[65]; /* model fingerprint, hex SHA-256 */
    char *meta_json;      /* full metadata JSON as stored (owned) */
    a3_cache_layer *layers; /* (n_layers) */
    a3_cache_file *file;    /* a3_cache_open: where the sections still on
                             * disk are; NULL when everything is in memory */
} a3_cache;

/* Allocate a zeroed cache for the given dims (all arrays allocated; ru only
 * when mlp_full). meta_json and fingerprint left empty. NULL on failure,
 * including dims the file format would reject (see the caps above). */
a3_cache *a3_cache_new(int d, int n_layers, int n_heads, int n_kv_heads,
                       int head_dim, int d_ff, int mlp_full);
void a3_cache_free(a3_cache *c); /* accepts NULL */

/* Whether n finite values, curves of len values each (the loss at widths
 * 0, 1, ...), are fit for the planner, which adds curve values and divides
 * by a curve's value at width 0 (finite values alone were not: fuzzing
 * found a loss of -1e308 over one of 1e-307 giving NaN plans). Their sum
 * of magnitudes is finite; no value is below -tol times its curve's
 * largest (0 for tail sums; a little above for curves whose terms cancel
 * and so round); no value is over 1e300 times its curve's value at width
 * 0 (curves need not fall with width: only a bound, keeping relative
 * losses and their sums over layers finite). 0, or -1 with the reason
 * ("element I ...") in why. The cache's QK_LOSS and MLP_LOSS (load and
 * save) and the prediction sidecar's curves (load) are checked with it. */
int a3_curves_check(const double *v, size_t n, size_t len, double tol, char *why, size_t why_n);

/* Element count of a section for these dims (0 if absent, e.g. RU). */
size_t a3_cache_section_len(const a3_cache *c, a3_cache_section s);
/* Pointer to a layer's section array (double* or int32_t* as void*); NULL
 * for an absent section or an out-of-range layer/kind. */
void *a3_cache_section_ptr(const a3_cache *c, int layer, a3_cache_section s);
/* "GQ", "QK_ORDER", ... (the enum name without A3_SEC_); "?" if invalid. */
const char *a3_cache_section_name(a3_cache_section s);

/* Write atomically: on failure neither path nor a temp file is left, and an
 * existing file at path is untouched. meta_json must be set (the caller
 * builds it; see the layout above) and agree with the struct: its dims,
 * mlp_full, n_tokens and fingerprint must equal c's (A3_EINVAL otherwise).
 * The values are checked as a3_cache_load would (finite, permutations), so
 * a cache that saves also loads. A cache from a3_cache_open is refused
 * (A3_EINVAL): load it whole first. */
int a3_cache_save(const a3_cache *c, const char *path, a3_err *err);
/* Load and validate everything (see layout); *out owns everything, free
 * with a3_cache_free. A3_EFORMAT for a malformed file, A3_EUNSUPPORTED for
 * a newer format version, A3_EIO/A3_ENOMEM; *out is NULL on failure. */
int a3_cache_load(const char *path, a3_cache **out, a3_err *err);

/* Open for planning: the header, the metadata and the loss curves
 * (QK_LOSS, OV_SV, MLP_LOSS: what the planner, `cache info` and the TUI's
 * overview read) are read and checked as a3_cache_load does (so a corrupt
 * curve is an error here); every other section's header is checked and
 * its place and CRC remembered, its pointer stays NULL until
 * a3_cache_need or a3_cache_need_section reads it. The file is kept open.
 * progress (may be NULL) is called with sections done/total; non-zero
 * cancels (A3_ECANCELED). A 70B-shaped cache (1.7 GB) opens reading 19 MB
 * of it. */
int a3_cache_open(const char *path, a3_progress_fn progress, void *ctx,
                  a3_cache **out, a3_err *err);
/* Make every section of layer `layer` available: each one still on disk is
 * read, CRC- and value-checked now (a corrupt section is an error here,
 * before any use, naming the section, and then none of the layer's sections
 * but its curves stay in memory), nothing for sections in memory already (a3_cache_load,
 * a3_cache_new, or needed before). Anything that reads more than the
 * curves of a cache from a3_cache_open calls this first (a3_apply does,
 * per layer); a3_cache_need_section does it for one section (the TUI's
 * spectrum needs QK_SCORE or MLP_SCORE only). Out-of-range layers and the
 * curves: nothing to do, A3_OK. */
int a3_cache_need(const a3_cache *c, int layer, a3_err *err);
int a3_cache_need_section(const a3_cache *c, int layer, a3_cache_section s,
                          a3_err *err);
/* Give a layer's needed sections back (a3_cache_open caches only; a later
 * need reads them again; the curves stay). */
void a3_cache_release(const a3_cache *c, int layer);

/* The informative metadata fields, parsed from c->meta_json. Strings are
 * owned by the struct and never NULL ("" when the field is absent); the
 * integers are -1 when absent. Free with a3_cache_meta_clear. */
typedef struct {
    char *path;   /* as given to `a3 calibrate` */
    char *sha256; /* hex, or "" */
} a3_cache_text;

typedef struct {
    char *tool, *created;                     /* "a3 0.1.0", ISO 8601 UTC */
    char *model_path, *architecture, *rope_layout;
    a3_cache_text *texts;                     /* (n_texts) */
    int n_texts;
    int64_t samples, seqlen, seed;
} a3_cache_meta;

/* A3_EFORMAT if meta_json is missing or not a JSON object, A3_ENOMEM. */
int a3_cache_meta_parse(const a3_cache *c, a3_cache_meta *out, a3_err *err);
void a3_cache_meta_clear(a3_cache_meta *m); /* frees the members; idempotent */

/* Model fingerprint: the hex SHA-256 that ties a cache (and later a plan) to
 * the model it was computed from, cheap enough for a 100 GB model because it
 * hashes the model's description, not its weights. The hashed byte stream
 * is, all integers u64 little-endian:
 *   the length of config.json, then its bytes as they are on disk;
 *   the number of tensors;
 *   then for each tensor, names sorted by byte-wise strcmp:
 *     name length, name bytes; dtype-name length, dtype name ("F32",
 *     "BF16", ... as a3_dtype_name); ndim, then each dim; data byte length.
 * So it changes when config.json changes in any byte, or a tensor is added,
 * removed, renamed, reshaped or stored in another dtype; it does not change
 * when the same tensors are resharded or reordered, nor when weight values
 * change with the same shapes and dtypes (use file checksums for that).
 * Errors from opening the directory (config.json, safetensors) pass
 * through. */
int a3_model_fingerprint(const char *model_dir, char hex[65], a3_err *err);

#endif
