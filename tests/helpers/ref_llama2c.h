/* ref_llama2c: an independent, deliberately plain reference forward pass
 * for tests, written in the style of llama2.c's run.c and sharing no code
 * with src/model. One token at a time with a KV cache, straight from the
 * llama2.c checkpoint arrays: RMSNorm (eps 1e-5), interleaved RoPE on pairs
 * (2i, 2i+1) with frequency 10000^(-2i/head_dim) computed from the formula
 * (not from the checkpoint's tables), GQA, SwiGLU. Activations are float32;
 * every dot product and sum of squares is accumulated in double so the
 * reference is tighter than the float32 code it checks. */
#ifndef A3_TEST_REF_LLAMA2C_H
#define A3_TEST_REF_LLAMA2C_H

#include "a3/llama2c.h"

typedef struct ref_l2c ref_l2c;

/* Run state for up to max_len positions (<= seq_len); NULL on bad
 * max_len or allocation failure. Borrows m's config and weights. */
ref_l2c *ref_l2c_new(const a3_llama2c_config *c, const a3_llama2c_weights *w, int max_len);
void ref_l2c_free(ref_l2c *r); /* accepts NULL */
/* Forget the cached positions (start a new sequence). */
void ref_l2c_reset(ref_l2c *r);
/* Feed the token at the next position and write vocab_size logits.
 * Returns 0, or -1 if the token is out of range or the cache is full. */
int ref_l2c_step(ref_l2c *r, int token, float *logits);
/* Greedy decoding from BOS (id 1) after a reset: writes up to max_new ids
 * to out (BOS not included), stopping when BOS is produced as llama2.c's
 * run.c does (that token is not stored). Returns the count, or -1 on
 * failure. */
int ref_l2c_greedy(ref_l2c *r, int max_new, int *out);

#endif
