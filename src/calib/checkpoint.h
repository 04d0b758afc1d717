/* checkpoint: resumable state of a calibration run (private to src/calib).
 *
 * A directory holding meta.json {"layers_done", "n_windows", "seqlen",
 * "mlp_full", "windows_hash", "created", "kernel"}, hidden.f32 (the hidden
 * states after layers_done layers, raw float32) and layer-NNN.bin (each
 * finished layer's cache arrays, raw, in section order, then a 64-bit
 * FNV-1a of those bytes). Every file is written atomically and meta.json
 * last, so a run killed at any point leaves a consistent checkpoint of the
 * layers it finished. */
#ifndef A3_CALIB_CHECKPOINT_H
#define A3_CALIB_CHECKPOINT_H

#include <stdint.h>

#include "a3/cache.h"
#include "a3/util.h"

typedef struct {
    int layers_done, n_windows, seqlen, mlp_full;
    uint64_t windows_hash;
    char created[40];
    char kernel[64]; /* OpenBLAS kernel(s) of the finished layers; "" if not recorded */
} ckpt_meta;

/* Copy a kernel name keeping only [A-Za-z0-9+_-] (it goes into JSON
 * unescaped), truncated to n - 1 characters. */
void ckpt_kernel_copy(char *dst, size_t n, const char *src);

uint64_t ckpt_hash(const void *data, size_t n, uint64_t h);
#define CKPT_HASH_INIT 0xcbf29ce484222325ULL

/* Save layer `layer` of cache, then hidden states, then meta. */
int ckpt_save(const char *dir, const a3_cache *c, int layer, const float *hidden, size_t n_floats,
              const ckpt_meta *meta, a3_err *err);
/* Load meta (A3_EIO if there is no checkpoint). */
int ckpt_load_meta(const char *dir, ckpt_meta *meta, a3_err *err);
/* Load finished layers [0, meta->layers_done) into cache and the hidden states. */
int ckpt_load_state(const char *dir, a3_cache *c, const ckpt_meta *meta, float *hidden, size_t n_floats,
                    a3_err *err);
/* Remove the checkpoint directory and its files. */
void ckpt_remove(const char *dir, int n_layers);

#endif
