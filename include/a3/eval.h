/* eval: perplexity of a model over token sequences.
 *
 * Each sequence is scored on its own (positions restart at 0): every token
 * after the first is predicted from the ones before it, and the result is
 * the mean negative log-likelihood (nats) over all predicted tokens, summed
 * in float64. Sequences are batched (right-padded, which a causal model
 * ignores) so that every layer's weights are converted once per batch.
 *
 * Two ways to cut a token stream into sequences (documented in README):
 *  - stream: the whole text tokenized as one stream (BOS first if the
 *    tokenizer has one), cut into non-overlapping windows of seqlen tokens
 *    (a short last window is kept if it has 2+ tokens);
 *  - paragraphs: blank-line-separated paragraphs, each encoded on its own
 *    with BOS and cut to seqlen tokens (the stories260K reference protocol). */
#ifndef A3_EVAL_H
#define A3_EVAL_H

#include <stdint.h>

#include "a3/model.h"
#include "a3/tokenizer.h"
#include "a3/util.h"

typedef struct {
    int32_t **seq; /* owned */
    int *len;
    int n;
    int64_t n_tokens;
} a3_seqs;

typedef struct {
    double nll_sum;     /* nats */
    int64_t n_pred;     /* predicted tokens */
    int64_t n_tokens;   /* tokens run through the model */
    double seconds;
    double mean_nll, ppl;
} a3_eval_result;

typedef enum { A3_PROTO_STREAM, A3_PROTO_PARAGRAPHS, A3_PROTO_COUNT } a3_eval_protocol;

/* Build sequences from text. max_seqs <= 0 means no limit; max_tokens <= 0
 * means no limit (stops adding sequences once the total reaches it). */
int a3_seqs_from_text(const a3_tokenizer *tok, const char *text, size_t len,
                      a3_eval_protocol proto, int seqlen, int max_seqs,
                      int64_t max_tokens, a3_seqs *out, a3_err *err);
/* Windows of seqlen over a pre-tokenized id stream. */
int a3_seqs_from_ids(const int32_t *ids, size_t n, int seqlen, int max_seqs,
                     int64_t max_tokens, a3_seqs *out, a3_err *err);
void a3_seqs_free(a3_seqs *s);

/* The window length `a3 eval` uses without --seqlen, and the TUI's commit
 * by default: min(the model's context, or its sliding window when shorter,
 * 2048). */
#define A3_EVAL_SEQLEN_MAX_DEFAULT 2048
int a3_eval_default_seqlen(const a3_config *c);

int a3_eval_nll(a3_model *m, const a3_seqs *s, a3_eval_result *res,
                a3_progress_fn progress, void *ctx, a3_err *err);

#endif
