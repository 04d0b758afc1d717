/* ref_hf: a deliberately plain reference forward pass for HF-layout models,
 * written independently of src/model/: one token at a time, naive loops,
 * float64 everywhere, RoPE angles computed from the formula. Slow; for
 * tests on small models only. Supports full-shape models (no "a3"
 * section). */
#ifndef A3_REF_HF_H
#define A3_REF_HF_H

#include <stddef.h>
#include <stdint.h>

/* logits: (n, vocab) doubles. Returns 0, or -1 with a message on stderr. */
int ref_hf_logits(const char *dir, const int32_t *tokens, int n, double *logits);

#endif
