/* eval: perplexity (see include/a3/eval.h for the protocols). */
#include "a3/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "a3/vmath.h"

/* Rows per batch: bounds activation memory (about rows * (d + 2*d_ff) * 4
 * bytes of scratch) while keeping GEMMs large enough to run at speed. */
#define EVAL_BATCH_ROWS 8192
/* Logit rows computed at once: bounds the (rows, vocab) logits buffer. */
#define LOGIT_BYTES (64u << 20)

void a3_seqs_free(a3_seqs *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) free(s->seq[i]);
    free(s->seq);
    free(s->len);
    memset(s, 0, sizeof *s);
}

/* Append a copy of ids[0..n) as a new sequence. */
static int seqs_push(a3_seqs *s, const int32_t *ids, int n, a3_err *err)
{
    if ((s->n & (s->n - 1)) == 0) { /* grow at powers of two */
        size_t cap = s->n ? (size_t)s->n * 2 : 1;
        int32_t **ns = realloc(s->seq, cap * sizeof *ns);
        if (ns) s->seq = ns;
        int *nl = ns ? realloc(s->len, cap * sizeof *nl) : NULL;
        if (!ns || !nl) return a3_err_set(err, A3_ENOMEM, "eval: out of memory");
        s->len = nl;
    }
    int32_t *c = a3_malloc_array((size_t)n, sizeof *c);
    if (!c) return a3_err_set(err, A3_ENOMEM, "eval: out of memory");
    memcpy(c, ids, (size_t)n * sizeof *c);
    s->seq[s->n] = c;
    s->len[s->n++] = n;
    s->n_tokens += n;
    return A3_OK;
}

static int full(const a3_seqs *s, int max_seqs, int64_t max_tokens)
{
    return (max_seqs > 0 && s->n >= max_seqs) || (max_tokens > 0 && s->n_tokens >= max_tokens);
}

int a3_seqs_from_ids(const int32_t *ids, size_t n, int seqlen, int max_seqs, int64_t max_tokens,
                     a3_seqs *out, a3_err *err)
{
    memset(out, 0, sizeof *out);
    if (seqlen < 2) return a3_err_set(err, A3_EINVAL, "eval: sequence length must be at least 2");
    for (size_t at = 0; at + 1 < n && !full(out, max_seqs, max_tokens); at += (size_t)seqlen) {
        int w = n - at < (size_t)seqlen ? (int)(n - at) : seqlen;
        if (max_tokens > 0 && out->n_tokens + w > max_tokens) w = (int)(max_tokens - out->n_tokens);
        if (w < 2) break;
        int rc = seqs_push(out, ids + at, w, err);
        if (rc) {
            a3_seqs_free(out);
            return rc;
        }
    }
    return A3_OK;
}

/* Next blank-line-separated paragraph at or after *pos; returns its start
 * and length (0 when none left). Lines holding only whitespace count as
 * blank; the paragraph excludes its trailing newline. */
static size_t next_paragraph(const char *t, size_t len, size_t *pos, size_t *plen)
{
    size_t i = *pos;
    while (i < len && (t[i] == '\n' || t[i] == '\r' || t[i] == ' ' || t[i] == '\t')) i++;
    size_t start = i, end = i;
    while (i < len) {
        size_t ls = i;
        while (i < len && t[i] != '\n') i++;
        int blank = 1;
        for (size_t j = ls; j < i; j++)
            if (t[j] != ' ' && t[j] != '\t' && t[j] != '\r') blank = 0;
        if (blank) break;
        end = i;
        if (i < len) i++;
    }
    *pos = i;
    *plen = end - start;
    return start;
}

static int paragraphs(const a3_tokenizer *tok, const char *text, size_t len, int seqlen,
                      int max_seqs, int64_t max_tokens, a3_seqs *out, a3_err *err)
{
    size_t pos = 0, plen;
    while (!full(out, max_seqs, max_tokens)) {
        size_t start = next_paragraph(text, len, &pos, &plen);
        if (plen == 0) break;
        int32_t *ids;
        size_t n;
        int rc = a3_tok_encode(tok, text + start, plen, 1, &ids, &n, err);
        if (rc) return rc;
        int w = n > (size_t)seqlen ? seqlen : (int)n;
        rc = w >= 2 ? seqs_push(out, ids, w, err) : A3_OK;
        free(ids);
        if (rc) return rc;
    }
    return A3_OK;
}

int a3_seqs_from_text(const a3_tokenizer *tok, const char *text, size_t len, a3_eval_protocol proto,
                      int seqlen, int max_seqs, int64_t max_tokens, a3_seqs *out, a3_err *err)
{
    memset(out, 0, sizeof *out);
    if (seqlen < 2) return a3_err_set(err, A3_EINVAL, "eval: sequence length must be at least 2");
    if (proto == A3_PROTO_PARAGRAPHS) {
        int rc = paragraphs(tok, text, len, seqlen, max_seqs, max_tokens, out, err);
        if (rc) a3_seqs_free(out);
        return rc;
    }
    int32_t *ids;
    size_t n;
    int rc = a3_tok_encode(tok, text, len, 1, &ids, &n, err);
    if (rc) return rc;
    rc = a3_seqs_from_ids(ids, n, seqlen, max_seqs, max_tokens, out, err);
    free(ids);
    return rc;
}

/* NLL of targets under logits computed from hidden rows, chunked. */
static int score_rows(a3_model *m, const float *hidden, const int32_t *target, size_t rows,
                      double *nll, a3_err *err)
{
    int vocab = a3_model_config(m)->vocab;
    size_t d = (size_t)a3_model_config(m)->d;
    size_t chunk = LOGIT_BYTES / ((size_t)vocab * sizeof(float));
    if (chunk < 1) chunk = 1;
    float *lg = a3_malloc_array(chunk < rows ? chunk : rows, (size_t)vocab * sizeof(float));
    if (!lg) return a3_err_set(err, A3_ENOMEM, "eval: out of memory for logits");
    for (size_t r0 = 0; r0 < rows; r0 += chunk) {
        size_t nr = rows - r0 < chunk ? rows - r0 : chunk;
        int rc = a3_model_logits(m, hidden + r0 * d, nr, lg, err);
        if (rc) {
            free(lg);
            return rc;
        }
        for (size_t r = 0; r < nr; r++) {
            const float *l = lg + r * (size_t)vocab;
            *nll += a3_v_logsumexp(l, (size_t)vocab) - l[target[r0 + r]];
        }
    }
    free(lg);
    return A3_OK;
}

/* Score sequences [i0, i1) as one right-padded batch. */
static int eval_batch(a3_model *m, const a3_seqs *s, int i0, int i1, a3_eval_result *res, a3_err *err)
{
    int T = 0, nb = i1 - i0;
    size_t d = (size_t)a3_model_config(m)->d;
    for (int i = i0; i < i1; i++) T = s->len[i] > T ? s->len[i] : T;
    int32_t *tok = calloc((size_t)nb * T, sizeof *tok);
    float *hid = a3_malloc_array((size_t)nb * T, d * sizeof(float));
    int rc = (!tok || !hid) ? a3_err_set(err, A3_ENOMEM, "eval: out of memory") : A3_OK;
    for (int i = i0; rc == A3_OK && i < i1; i++)
        memcpy(tok + (size_t)(i - i0) * T, s->seq[i], (size_t)s->len[i] * sizeof *tok);
    if (rc == A3_OK) rc = a3_model_forward(m, tok, nb, T, hid, err);
    for (int i = i0; rc == A3_OK && i < i1; i++) {
        size_t base = (size_t)(i - i0) * T;
        /* Row t predicts token t+1. */
        rc = score_rows(m, hid + base * d, s->seq[i] + 1, (size_t)s->len[i] - 1, &res->nll_sum, err);
        res->n_pred += s->len[i] - 1;
        res->n_tokens += s->len[i];
    }
    free(tok);
    free(hid);
    return rc;
}

int a3_eval_nll(a3_model *m, const a3_seqs *s, a3_eval_result *res, a3_progress_fn progress,
                void *ctx, a3_err *err)
{
    memset(res, 0, sizeof *res);
    double t0 = a3_now();
    int i = 0;
    while (i < s->n) {
        int j = i, T = 0;
        while (j < s->n) { /* grow the batch while padded rows fit */
            int nt = s->len[j] > T ? s->len[j] : T;
            if (j > i && (int64_t)nt * (j - i + 1) > EVAL_BATCH_ROWS) break;
            T = nt;
            j++;
        }
        int rc = eval_batch(m, s, i, j, res, err);
        if (rc) return rc;
        i = j;
        if (progress && progress(ctx, "eval", res->n_tokens, s->n_tokens))
            return a3_err_set(err, A3_ECANCELED, "eval: cancelled");
    }
    res->seconds = a3_now() - t0;
    if (res->n_pred == 0) return a3_err_set(err, A3_EINVAL, "eval: no tokens to predict (text too short?)");
    res->mean_nll = res->nll_sum / (double)res->n_pred;
    res->ppl = exp(res->mean_nll);
    return A3_OK;
}

int a3_eval_default_seqlen(const a3_config *c)
{
    int max = a3_config_max_seqlen(c); /* the context, or a shorter sliding window */
    return max < A3_EVAL_SEQLEN_MAX_DEFAULT ? max : A3_EVAL_SEQLEN_MAX_DEFAULT;
}
