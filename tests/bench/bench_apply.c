/* bench_apply MODEL_DIR [NWIN] [SEQLEN]: calibrates the model on synthetic
 * tokens (for a cache to solve from), then times `apply` of a plan that
 * halves every component, and reports the solve time per layer. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "a3/apply.h"
#include "a3/cache.h"
#include "a3/calib.h"
#include "a3/plan.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_apply MODEL_DIR [NWIN] [SEQLEN]\n");
        return 2;
    }
    a3_err err = {0};
    a3_model *m = NULL;
    a3_cache *c = NULL;
    a3_plan *p = NULL;
    if (a3_model_open(argv[1], &m, &err)) goto fail;
    const a3_config *k = a3_model_config(m);
    int nw = argc > 2 ? atoi(argv[2]) : 4, L = argc > 3 ? atoi(argv[3]) : 128;
    int32_t *tok = malloc((size_t)nw * L * sizeof *tok);
    for (int i = 0; i < nw * L; i++) tok[i] = (int32_t)((i * 7919 + 3) % k->vocab);
    c = a3_cache_new(k->d, k->n_layers, k->n_heads, k->n_kv_heads, k->head_dim, k->d_ff, 0);
    a3_calib_opts o = {0};
    if (a3_calibrate(m, tok, nw, L, &o, c, NULL, NULL, &err) || a3_model_fingerprint(argv[1], c->fingerprint, &err) ||
        a3_plan_from_cache(c, &p, &err) || a3_plan_set_config(p, k, &err))
        goto fail;
    for (int l = 0; l < k->n_layers; l++) {
        for (int g = 0; g < k->n_kv_heads; g++) a3_plan_qk(p, l)[g] = k->head_dim / 2 / 2 * 2, a3_plan_ov(p, l)[g] = k->head_dim / 2;
        p->mlp[l] = k->d_ff / 2;
    }
    char out[256];
    snprintf(out, sizeof out, "/tmp/a3-bench-apply.%ld", (long)getpid());
    a3_apply_opts ao = {.dtype = A3_DT_COUNT, .force = 1};
    double t0 = a3_now();
    if (a3_apply(m, c, p, &ao, out, NULL, &err)) goto fail;
    double t = a3_now() - t0;
    printf("apply    %-28.28s d=%-5d L=%-3d %7.2f s (%.3f s per layer, incl. reading and writing), kernel %s\n",
           argv[1], k->d, k->n_layers, t, t / k->n_layers, openblas_get_corename());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    if (system(cmd) != 0) fprintf(stderr, "bench_apply: could not remove %s\n", out);
    free(tok);
    a3_plan_free(p), a3_cache_free(c), a3_model_free(m);
    return 0;
fail:
    fprintf(stderr, "bench_apply: %s\n", err.msg);
    return 1;
}
