/* Private to the pred module (pred.c, probe.c). */
#ifndef A3_PRED_INTERNAL_H
#define A3_PRED_INTERNAL_H

#include "a3/cache.h"
#include "a3/reduce.h"

/* P (hd x hd) = Lw^-T U_r U_r^T Lw^T: the A3 OV solution of group g at
 * rank r acts as v -> v P (row vectors) on the group's values, exactly as
 * W~_v W~_o,i = W_v P W_o,i. -1 on failure. */
int pred_ov_projector(const a3_cache *c, int l, int g, const a3_layer_f32 *w, int r, double *P);

#endif
