/* bench_forward MODEL_DIR [SEQLEN] [NSEQ] [REPEATS]: forward-pass
 * throughput. Prints tokens/s and achieved GFLOP/s, counting the linear
 * layers (2 flops per weight per token) and causal attention (2 * keys *
 * (r_qk + r_ov) per head per token) but not the lm_head, beside the sgemm
 * rate and the OpenBLAS kernel measured in the same process. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "a3/blas.h"
#include "a3/model.h"

static double flops_per_token(const a3_config *c, int T)
{
    a3_param_counts p;
    a3_model_count_params(c, &p);
    double lin = 2.0 * (double)(p.attn_qk + p.attn_ov + p.mlp);
    double att = 0, keys = (T + 1) / 2.0; /* mean visible keys under the causal mask */
    int g = c->n_heads / c->n_kv_heads;
    for (int i = 0; i < c->n_layers * c->n_kv_heads; i++)
        att += 2.0 * keys * g * (c->qk_rank[i] + c->ov_rank[i]);
    return lin + att;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_forward MODEL_DIR [SEQLEN] [NSEQ] [REPEATS]\n");
        return 2;
    }
    a3_err err = {0};
    a3_model *m;
    if (a3_model_open(argv[1], &m, &err)) {
        fprintf(stderr, "bench_forward: %s\n", err.msg);
        return 1;
    }
    const a3_config *c = a3_model_config(m);
    int T = argc > 2 ? atoi(argv[2]) : 256, B = argc > 3 ? atoi(argv[3]) : 4, R = argc > 4 ? atoi(argv[4]) : 3;
    if (T > c->max_seq) T = c->max_seq;
    size_t rows = (size_t)T * B;
    int32_t *tok = malloc(rows * sizeof *tok);
    float *hid = malloc(rows * (size_t)c->d * sizeof(float));
    if (!tok || !hid) return 1;
    for (size_t i = 0; i < rows; i++) tok[i] = (int32_t)((i * 7919) % (size_t)c->vocab);
    if (a3_model_forward(m, tok, B, T, hid, &err)) { /* warm-up: page in the mapping */
        fprintf(stderr, "bench_forward: %s\n", err.msg);
        return 1;
    }
    double best = 1e30;
    for (int r = 0; r < R; r++) {
        double t0 = a3_now();
        a3_model_forward(m, tok, B, T, hid, &err);
        double el = a3_now() - t0;
        best = el < best ? el : best;
    }
    double tps = (double)rows / best, gf = tps * flops_per_token(c, T) / 1e9;
    double peak = a3_blas_sgemm_gflops(1.0, c->d >= 1024 ? 2048 : 1024);
    printf("forward  %-28.28s d=%-5d L=%-3d T=%-5d B=%-3d %9.0f tok/s %7.1f GFLOP/s "
           "(%4.1f%% of sgemm %.0f GFLOP/s, kernel %s, %d threads)\n",
           argv[1], c->d, c->n_layers, T, B, tps, gf, 100 * gf / peak, peak, openblas_get_corename(),
           openblas_get_num_threads());
    free(tok);
    free(hid);
    a3_model_free(m);
    return 0;
}
