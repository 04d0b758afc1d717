/* fixture: see fixture.h. */
#include "fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/calib.h"

a3_synth_spec tfix_spec(const char *kind, uint64_t seed)
{
    a3_synth_spec s = {.arch = A3_ARCH_LLAMA, .d = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 4,
                       .head_dim = 8, .d_ff = 40, .vocab = 64, .max_seq = 64, .rope_theta = 10000.0,
                       .dtype = A3_DT_F32, .seed = seed};
    if (!strcmp(kind, "gqa")) s.n_kv_heads = 2;
    if (!strcmp(kind, "bias")) s.arch = A3_ARCH_QWEN2, s.qkv_bias = 1, s.n_kv_heads = 2;
    if (!strcmp(kind, "narrow")) s.n_kv_heads = 2, s.d_ff = 24; /* d_ff below n_heads x head_dim */
    return s;
}

int tfix_calib(tfix *f, int nw, int len, uint32_t win_seed, int mlp_full)
{
    a3_err err = {0};
    if (a3_model_open(f->dir, &f->m, &err)) {
        fprintf(stderr, "  fixture: %s\n", err.msg);
        return -1;
    }
    const a3_config *k = a3_model_config(f->m);
    f->nw = nw, f->len = len;
    f->win = malloc((size_t)nw * len * sizeof *f->win);
    uint32_t r = win_seed;
    for (int i = 0; f->win && i < nw * len; i++)
        f->win[i] = (int32_t)(((r = r * 1664525u + 1013904223u) >> 8) % (uint32_t)k->vocab);
    f->c = a3_cache_new(k->d, k->n_layers, k->n_heads, k->n_kv_heads, k->head_dim, k->d_ff, mlp_full);
    a3_calib_opts o = {.mlp_full = mlp_full};
    if (!f->win || !f->c || a3_calibrate(f->m, f->win, nw, len, &o, f->c, NULL, NULL, &err) ||
        a3_model_fingerprint(f->dir, f->c->fingerprint, &err)) {
        fprintf(stderr, "  fixture: %s\n", err.msg[0] ? err.msg : "out of memory");
        return -1;
    }
    return 0;
}

int tfix_synth(tfix *f, const char *kind, uint64_t seed, int nw, int len, uint32_t win_seed, int mlp_full)
{
    memset(f, 0, sizeof *f);
    snprintf(f->tmp, sizeof f->tmp, "/tmp/a3test.XXXXXX");
    if (!mkdtemp(f->tmp)) {
        f->tmp[0] = 0;
        return -1;
    }
    snprintf(f->dir, sizeof f->dir, "%s/m", f->tmp);
    a3_synth_spec s = tfix_spec(kind, seed);
    a3_err err = {0};
    if (a3_synth_write(f->dir, &s, &err)) {
        fprintf(stderr, "  fixture: %s\n", err.msg);
        return -1;
    }
    return tfix_calib(f, nw, len, win_seed, mlp_full);
}

void tfix_down(tfix *f)
{
    a3_pred_free(f->pr);
    a3_cache_free(f->c);
    a3_model_free(f->m);
    free(f->win);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->tmp);
    if (f->tmp[0] && system(cmd) != 0) fprintf(stderr, "  (could not remove %s)\n", f->tmp);
    memset(f, 0, sizeof *f);
}
