/* model internals shared by weights.c, forward.c and model.c. */
#ifndef A3_MODEL_INTERNAL_H
#define A3_MODEL_INTERNAL_H

#include <stddef.h>

#include "a3/model.h"

/* Shapes of one layer, derived from the config's per-group ranks. */
typedef struct {
    int q_out, k_out, v_out, o_in, ff;
    int *q_off;  /* (n_heads) column offset of head h in Q (= in o_proj input for v side: see v_off) */
    int *k_off;  /* (n_kv_heads) offset of group g in K */
    int *v_off;  /* (n_kv_heads) offset of group g in V */
    int *z_off;  /* (n_heads) offset of head h in Z (the o_proj input) */
} layer_shape;

/* A weight matrix as stored in the file (row-major (out, in), dtype dt,
 * little-endian) and, when one exists, a float32 view of it: the file's
 * own bytes for aligned F32, or a conversion made for a prefill. Decoding
 * reads `raw` through a3_k_matvec and never needs `f32`. */
typedef struct {
    const void *raw;
    a3_dtype dt;
    const float *f32; /* NULL when not converted */
} wmat;

/* One layer's weights. Norm weights and biases (vectors) are always
 * float32; the matrices are wmat. */
typedef struct {
    const float *attn_norm; /* (d) */
    wmat wq;                /* (q_out, d) */
    wmat wk;                /* (k_out, d) */
    wmat wv;                /* (v_out, d) */
    wmat wo;                /* (d, o_in) */
    const float *bq, *bk, *bv; /* (q_out), (k_out), (v_out) or NULL */
    const float *mlp_norm;  /* (d) */
    wmat wg;                /* (ff, d) */
    wmat wu;                /* (ff, d) */
    wmat wd;                /* (d, ff) */
} layer_weights;

/* A float buffer reused across layers (and decoding steps): it only grows,
 * so a pass allocates it once, sized by its largest layer. */
typedef struct {
    float *p;
    size_t cap; /* floats */
} fbuf;

struct a3_model {
    a3_config cfg;
    char *dir;
    a3_st_set *st;
    int threads;
    layer_shape *shapes; /* (n_layers) */
    float *inv_freq;     /* (head_dim/2) RoPE inverse frequencies */
    float *final_norm;   /* (d) model.norm.weight as float32, converted at open */
};

int a3__layer_shapes_init(a3_model *m, a3_err *err);
void a3__layer_shapes_free(a3_model *m);
/* Check that every tensor the config implies exists with its shape and a
 * float dtype. */
int a3__check_tensors(const a3_model *m, a3_err *err);
/* Point w at layer `layer`'s tensors. Vectors that are not F32 are
 * converted into ws; with convert != 0 (prefill, more than
 * A3_K_MATVEC_ROWS rows) the matrices too, on the model's threads, so
 * every wmat has its f32 view; otherwise matrices stay raw. w is valid
 * until ws is next used or freed. */
int a3__layer_load(const a3_model *m, int layer, int convert, layer_weights *w, fbuf *ws,
                   a3_err *err);
void a3__fbuf_free(fbuf *b);
/* After non-finite activations: an error naming the first of layer l's
 * tensors holding NaN/Inf, or A3_OK when they are all finite. Scans every
 * weight of the layer (in its file dtype), so only called on that error
 * path. */
int a3__layer_nonfinite(const a3_model *m, int layer, a3_err *err);
/* Index of the first NaN/Inf element of t (any float dtype), -1 if none,
 * -2 when out of memory. Converts in slices: for error paths. */
int64_t a3__tensor_nonfinite(const a3_st_tensor *t);
/* Load a whole non-layer tensor as float32 (borrowed when possible).
 * *owned receives a buffer to free (or NULL). */
int a3__tensor_f32(const a3_model *m, const char *name, size_t numel,
                   const float **out, float **owned, a3_err *err);

/* Activations for one forward of n_rows = n_seq * seqlen tokens. */
typedef struct {
    float *xn, *q, *k, *v, *z, *g, *u; /* scratch, sized for the largest layer */
    float *scores;                      /* per attention thread */
    float *rope;      /* cos/sin of positions rope_pos0.. for rope_len rows, */
    int rope_len, rope_pos0; /* built once and reused by every layer */
    size_t rope_cap;  /* floats allocated in rope (it only grows) */
    size_t max_keys;  /* keys the scores buffer has room for */
    size_t rows;
    int threads;
    int fixed_tiles; /* GEMMs by a3_sgemm_nt_fixed: bits independent of threads */
    /* One block of a weight matrix in float32 (a3__scratch_wconv): a
     * forward that runs every layer once converts each matrix block by
     * block right before its product (a3__gemm_wconv) instead of the whole
     * layer up front, so it holds 8 MiB per thread in float32, not a
     * layer (7B: 810 MB). NULL: the layer's wmat carry their f32 views
     * (or decoding reads raw). */
    float *wconv;
    size_t wconv_n; /* its floats */
} fwd_scratch;

/* KV cache for one sequence (decoder), per layer. NULL in plain prefill. */
typedef struct {
    float **k; /* (n_layers) each (max_len, k_out of that layer) */
    float **v;
    int len, max_len;
} kv_cache;

int a3__scratch_init(const a3_model *m, fwd_scratch *s, size_t rows, int max_keys, a3_err *err);
void a3__scratch_free(fwd_scratch *s);
/* Elements of the largest weight matrix a forward pass must convert to
 * float32 (0 when every one is F32 used in place). */
size_t a3__layer_convert_max(const a3_model *m);
/* Largest block, in floats, one thread of a3__gemm_wconv converts at
 * once (8 MiB). */
#define A3__WCONV_FLOATS ((size_t)2 << 20)
/* Floats of buffer a3__gemm_wconv needs for any W of at most numel
 * elements and up to `rows` token rows on `threads` threads: threads *
 * min(numel, A3__WCONV_FLOATS), or what a3_k_gemm needs if more. */
size_t a3__wconv_floats(size_t numel, size_t rows, int threads);
/* The block one thread converts for W (out, in): ob rows by kc columns,
 * the whole matrix when it has at most A3__WCONV_FLOATS elements, else
 * all rows and a range of columns (kc a multiple of 16, at least 256), or
 * for W too tall for that, 256 columns of a block of rows; ob * kc <=
 * A3__WCONV_FLOATS. */
void a3__wconv_block(int out, int in, int *ob, int *kc);
/* Rows of W per chunk when a3__gemm_wconv runs on `threads` > 1 threads
 * at kc columns: out / threads rounded up to whole 16-row blocks, at most
 * out and at most A3__WCONV_FLOATS / kc. */
int a3__wconv_rows(int out, int kc, int threads);
/* y (rows, out; row stride ldy) = (acc ? y : 0) + x (rows, in) @ W^T for
 * W (out, in) stored as dt (F32, F16 or BF16), converted a block at a time
 * into buf (nbuf floats: at least a3__wconv_floats(out * in, rows,
 * threads), which is asserted, a caller's bug otherwise) and multiplied by
 * sgemm, accumulating over the same column ranges (kc of
 * a3__wconv_block) at any thread count. One thread: whole blocks, sgemm
 * on OpenBLAS's threads as set; several: each pool thread converts and
 * multiplies chunks of a3__wconv_rows rows with OpenBLAS at one thread.
 * F16/BF16 where the AVX-512F code runs: a3_k_gemm instead (no float32
 * copy of W; bits independent of the thread count). */
void a3__gemm_wconv(float *y, size_t ldy, const float *x, a3_dtype dt, const void *W, size_t rows, int in, int out,
                    int acc, float *buf, size_t nbuf, int threads);
/* Allocate s->wconv for the largest block a pass converts (none
 * to convert: left NULL, and linear() uses the F32 views). */
int a3__scratch_wconv(const a3_model *m, fwd_scratch *s, a3_err *err);
/* x: (n_seq * seqlen, d), updated in place. pos0: position of the first
 * token (decoder); kv may be NULL (then n_seq sequences attend within
 * themselves). */
int a3__layer_forward(const a3_model *m, int layer, const layer_weights *w,
                      float *x, int n_seq, int seqlen, int pos0, kv_cache *kv,
                      const a3_layer_hooks *hooks, fwd_scratch *s, a3_err *err);

#endif
