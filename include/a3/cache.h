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
 * Metadata JSON: {"format":"a3-cache","version":1,"tool":"a3 0.1.0",
 *   "created":"2026-11-23T20:00:00Z","model":{"path":..,"fingerprint":hex64,
 *   "architecture":..,"d":..,"n_layers":..,"n_heads":..,"n_kv_heads":..,
 *   "head_dim":..,"d_ff":..,"rope_layout":"half"},"calibration":{"texts":
 *   [{"path":..,"sha256":hex64}],"samples":N,"seqlen":L,"seed":S,
 *   "n_tokens":T,"mlp_full":bool}}
 * Every section's n must equal what the dims in the metadata imply; a
 * missing, duplicated, unknown or mis-sized section, a CRC mismatch, a
 * truncated or over-long file, or a foreign magic/version is an error
 * naming the file and the section. Written atomically (temp + rename). */
#ifndef A3_CACHE_H
#define A3_CACHE_H

#include <stdint.h>

#include "a3/util.h"

#define A3_CACHE_VERSION 1

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
    A3_SEC_COUNT
} a3_cache_section;

typedef struct {
    double *gq, *gk, *gv, *c, *d, *ru; /* ru NULL unless mlp_full */
    int32_t *qk_order;
    double *qk_score, *qk_loss;
    double *ov_sv;
    int32_t *mlp_order;
    double *mlp_score, *mlp_loss;
} a3_cache_layer;

typedef struct {
    /* dims (copied into the metadata) */
    int d, n_layers, n_heads, n_kv_heads, head_dim, d_ff;
    int mlp_full;
    int64_t n_tokens;
    char fingerprint[65]; /* model fingerprint, hex SHA-256 */
    char *meta_json;      /* full metadata JSON as stored (owned) */
    a3_cache_layer *layers; /* (n_layers) */
} a3_cache;

/* Allocate a zeroed cache for the given dims (all arrays allocated; ru only
 * when mlp_full). meta_json and fingerprint left empty. NULL on failure. */
a3_cache *a3_cache_new(int d, int n_layers, int n_heads, int n_kv_heads,
                       int head_dim, int d_ff, int mlp_full);
void a3_cache_free(a3_cache *c); /* accepts NULL */

/* Element count of a section for these dims (0 if absent, e.g. RU). */
size_t a3_cache_section_len(const a3_cache *c, a3_cache_section s);
/* Pointer to a layer's section array (double* or int32_t* as void*). */
void *a3_cache_section_ptr(const a3_cache *c, int layer, a3_cache_section s);
const char *a3_cache_section_name(a3_cache_section s);

/* Write atomically. meta_json must be set (the caller builds it; see the
 * layout above). */
int a3_cache_save(const a3_cache *c, const char *path, a3_err *err);
/* Load and validate everything (see layout). */
int a3_cache_load(const char *path, a3_cache **out, a3_err *err);

#endif
