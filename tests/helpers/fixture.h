/* fixture: a small random model calibrated in memory, the common start of
 * the apply, sequential and prediction tests (each keeps its own seeds and
 * window counts, so their measured values stay as they were). */
#ifndef A3_TEST_FIXTURE_H
#define A3_TEST_FIXTURE_H

#include <stdint.h>

#include "a3/cache.h"
#include "a3/model.h"
#include "a3/pred.h"
#include "a3/synth.h"

typedef struct {
    char tmp[64], dir[128]; /* a fresh temporary directory; the model in dir */
    a3_model *m;
    a3_cache *c;     /* statistics (Ru with mlp_full), with the model's fingerprint */
    int32_t *win;    /* (nw * len) calibration windows */
    int nw, len;
    a3_pred *pr;     /* NULL unless the test fills it (freed by tfix_down) */
} tfix;

/* d 32, 2 layers, 4 query heads of head_dim 8, d_ff 40, vocab 64, F32:
 * kind "mha" has 4 KV heads, "gqa" 2, "bias" is Qwen2 with q/k/v biases
 * and 2 KV heads, "narrow" is "gqa" with d_ff 24 (below n_heads x
 * head_dim = 32). */
a3_synth_spec tfix_spec(const char *kind, uint64_t seed);

/* Write tfix_spec(kind, seed) into tmp/m, then tfix_calib. 0, or -1 with a
 * line on stderr; tfix_down cleans up either way. */
int tfix_synth(tfix *f, const char *kind, uint64_t seed, int nw, int len, uint32_t win_seed,
               int mlp_full);

/* Open the model in f->dir, draw nw windows of len token ids from an LCG
 * seeded with win_seed, calibrate them (with Ru when mlp_full) and set the
 * cache's fingerprint. 0, or -1 with a line on stderr. */
int tfix_calib(tfix *f, int nw, int len, uint32_t win_seed, int mlp_full);

void tfix_down(tfix *f);

#endif
