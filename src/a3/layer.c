/* layer: one layer's weights of a model in float32, HF order, for the
 * solvers and the curves (include/a3/reduce.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/reduce.h"

void a3_layer_in_free(a3_layer_in *li)
{
    for (int i = 0; i < 10; i++) free(li->buf[i]);
    memset(li, 0, sizeof *li);
}

static float *load(const a3_model *m, int l, const char *suffix, int64_t r, int64_t cdim, float **slot, a3_err *err)
{
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);
    int64_t shape[2] = {r, cdim};
    *slot = a3_malloc_array((size_t)r * (size_t)(cdim ? cdim : 1), sizeof(float));
    if (!*slot) {
        a3_err_set(err, A3_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    if (a3_st_load_f32(a3_model_tensors(m), name, cdim ? 2 : 1, shape, *slot, err)) return NULL;
    return *slot;
}

int a3_layer_in_load(const a3_model *m, int l, a3_layer_in *li, a3_err *err)
{
    const a3_config *k = a3_model_config(m);
    int64_t d = k->d, q = (int64_t)k->n_heads * k->head_dim, kv = (int64_t)k->n_kv_heads * k->head_dim, ff = k->d_ff;
    a3_layer_f32 *w = &li->w;
    memset(li, 0, sizeof *li);
    *w = (a3_layer_f32){.d = k->d, .n_heads = k->n_heads, .n_kv_heads = k->n_kv_heads, .head_dim = k->head_dim, .d_ff = k->d_ff};
    if (!(w->wq = load(m, l, "self_attn.q_proj.weight", q, d, &li->buf[0], err)) ||
        !(w->wk = load(m, l, "self_attn.k_proj.weight", kv, d, &li->buf[1], err)) ||
        !(w->wv = load(m, l, "self_attn.v_proj.weight", kv, d, &li->buf[2], err)) ||
        !(w->wo = load(m, l, "self_attn.o_proj.weight", d, q, &li->buf[3], err)) ||
        !(w->wg = load(m, l, "mlp.gate_proj.weight", ff, d, &li->buf[4], err)) ||
        !(w->wu = load(m, l, "mlp.up_proj.weight", ff, d, &li->buf[5], err)) ||
        !(w->wd = load(m, l, "mlp.down_proj.weight", d, ff, &li->buf[6], err)))
        return err->code ? err->code : A3_ENOMEM;
    if (k->qkv_bias && (!(w->bq = load(m, l, "self_attn.q_proj.bias", q, 0, &li->buf[7], err)) ||
                        !(w->bk = load(m, l, "self_attn.k_proj.bias", kv, 0, &li->buf[8], err)) ||
                        !(w->bv = load(m, l, "self_attn.v_proj.bias", kv, 0, &li->buf[9], err))))
        return err->code ? err->code : A3_ENOMEM;
    return A3_OK;
}

