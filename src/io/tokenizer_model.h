/* Private to the tokenizer module: the model layer, text -> ids for each
 * kind of tokenizer (see tokenizer_core.h for the layering). Uses only the
 * core. Encoders append to w->ids and return A3_OK, A3_ENOMEM, or
 * A3_EFORMAT when PCRE2 fails on the text (match limit); they never add the
 * post-processor's special tokens (tokenizer.c does). */
#ifndef A3_TOKENIZER_MODEL_H
#define A3_TOKENIZER_MODEL_H

#include "tokenizer_core.h"

/* ---- tokenizer_hf.c: the HF tokenizer.json pipeline --------------------
 * Added tokens with normalized=false cut out of the raw text, normalizer,
 * added tokens with normalized=true, pre-tokenizer steps, BPE per word. */
extern const char tok_gpt2_pattern[]; /* ByteLevel's regex (use_regex) */
int tok_hf_encode(const a3_tokenizer *t, tok_work *w, const char *text, size_t len);
/* Replace every occurrence of op->a by op->b (left to right, no overlap). */
int tok_hf_replace(const char *s, size_t n, const tok_norm *op, tok_buf *out);
/* GPT-2's bytes_to_unicode tables (bl_char, bl_len, bl_rev). */
void tok_bytelevel_table(a3_tokenizer *t);
/* Byte-level piece -> bytes; characters outside the table are kept. */
int tok_bytelevel_decode(const a3_tokenizer *t, const char *s, size_t n, tok_buf *out);

/* ---- tokenizer_norm.c: HF normalizers ----------------------------------
 * Apply t's normalizer steps in order to s[0..n) into *out (tmp is
 * scratch; both are overwritten). NFC, NFD, NFKC and NFKD are utf8proc's
 * (Unicode 15 in Debian 12's libutf8proc); maximal runs of valid UTF-8 are
 * normalized separately and invalid bytes pass through unchanged (HF only
 * ever sees valid UTF-8). Returns 0 or -1 when out of memory. */
int tok_hf_normalize(const a3_tokenizer *t, const char *s, size_t n, tok_buf *out, tok_buf *tmp);

/* ---- tokenizer_l2c.c: llama2.c tokenizer.bin ---------------------------
 * run.c's encode: leading space, characters looked up or byte fallback,
 * greedy merges by score; with add_bos, BOS is part of the merge sequence
 * as in run.c. */
int tok_l2c_encode(const a3_tokenizer *t, tok_work *w, const char *text, size_t len, int add_bos);

#endif
