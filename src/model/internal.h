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

/* One layer's weights as float32, row-major (out, in) as stored by HF.
 * Each pointer either borrows from the mmap (F32 file, aligned) or points
 * into `owned`. */
typedef struct {
    const float *attn_norm; /* (d) */
    const float *wq;        /* (q_out, d) */
    const float *wk;        /* (k_out, d) */
    const float *wv;        /* (v_out, d) */
    const float *wo;        /* (d, o_in) */
    const float *bq, *bk, *bv; /* (q_out), (k_out), (v_out) or NULL */
    const float *mlp_norm;  /* (d) */
    const float *wg;        /* (ff, d) */
    const float *wu;        /* (ff, d) */
    const float *wd;        /* (d, ff) */
    float *owned;           /* conversion buffer, NULL if all borrowed */
} layer_weights;

struct a3_model {
    a3_config cfg;
    char *dir;
    a3_st_set *st;
    int threads;
    layer_shape *shapes; /* (n_layers) */
    float *inv_freq;     /* (head_dim/2) RoPE inverse frequencies */
};

int a3__layer_shapes_init(a3_model *m, a3_err *err);
void a3__layer_shapes_free(a3_model *m);
/* Check that every tensor the config implies exists with its shape and a
 * float dtype. */
int a3__check_tensors(const a3_model *m, a3_err *err);
int a3__layer_load(const a3_model *m, int layer, layer_weights *w, a3_err *err);
void a3__layer_release(layer_weights *w);
/* After non-finite activations: an error naming the first of layer l's
 * tensors holding NaN/Inf, or A3_OK when they are all finite. Scans every
 * weight of the layer, so only called on that error path. */
int a3__layer_nonfinite(const a3_model *m, int layer, const layer_weights *w, a3_err *err);
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
    size_t rows;
    int threads;
} fwd_scratch;

/* KV cache for one sequence (decoder), per layer. NULL in plain prefill. */
typedef struct {
    float **k; /* (n_layers) each (max_len, k_out of that layer) */
    float **v;
    int len, max_len;
} kv_cache;

int a3__scratch_init(const a3_model *m, fwd_scratch *s, size_t rows, int max_keys, a3_err *err);
void a3__scratch_free(fwd_scratch *s);
/* x: (n_seq * seqlen, d), updated in place. pos0: position of the first
 * token (decoder); kv may be NULL (then n_seq sequences attend within
 * themselves). */
int a3__layer_forward(const a3_model *m, int layer, const layer_weights *w,
                      float *x, int n_seq, int seqlen, int pos0, kv_cache *kv,
                      const a3_layer_hooks *hooks, fwd_scratch *s, a3_err *err);
void a3__rmsnorm(float *out, const float *x, const float *w, size_t rows, int d, float eps);

#endif
