/* tokenizer_norm: HF normalizer steps (model layer; see tokenizer_core.h).
 * Prepend and Replace are plain byte operations; the Unicode normalization
 * forms come from utf8proc, a maintained library (Debian's libutf8proc),
 * with the same options as its own utf8proc_NFC & co. */
#include "tokenizer_model.h"

#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

static utf8proc_option_t form_options(int op)
{
    switch (op) {
    case TOK_NORM_NFC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    case TOK_NORM_NFD: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    case TOK_NORM_NFKC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    default: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    }
}

/* Normalize one run of valid UTF-8 (ASCII is its own normal form in all
 * four, so pure-ASCII runs skip the library). */
static int form_run(const char *s, size_t n, utf8proc_option_t opt, tok_buf *out)
{
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    if (i == n) return tok_buf_put(out, s, n);
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opt);
    /* The run was checked to be valid UTF-8, so the only failure is memory. */
    int rc = k < 0 ? -1 : tok_buf_put(out, dst, (size_t)k);
    free(dst);
    return rc;
}

/* Normalize the maximal valid UTF-8 runs of s; invalid bytes are copied
 * (a text with them cannot reach HF, so there is nothing to match). */
static int apply_form(const char *s, size_t n, int op, tok_buf *out)
{
    utf8proc_option_t opt = form_options(op);
    size_t start = 0, i = 0;
    while (i < n) {
        size_t k = tok_utf8_len((const unsigned char *)s + i, n - i);
        if (k == 1 && (unsigned char)s[i] >= 0x80) {
            if (form_run(s + start, i - start, opt, out) || tok_buf_put(out, s + i, 1)) return -1;
            start = i + 1;
        }
        i += k;
    }
    return form_run(s + start, n - start, opt, out);
}

int tok_hf_normalize(const a3_tokenizer *t, const char *s, size_t n, tok_buf *out, tok_buf *tmp)
{
    out->n = 0;
    if (tok_buf_put(out, s, n)) return -1;
    for (size_t k = 0; k < t->n_norm; k++) {
        const tok_norm *op = &t->norm[k];
        if (out->n == 0) break; /* every step maps "" to "" (Prepend too) */
        tmp->n = 0;
        int rc;
        if (op->op == TOK_NORM_PREPEND)
            rc = tok_buf_put(tmp, op->a, op->a_len) || tok_buf_put(tmp, out->p, out->n);
        else if (op->op == TOK_NORM_REPLACE)
            rc = tok_hf_replace(out->p, out->n, op, tmp);
        else
            rc = apply_form(out->p, out->n, op->op, tmp);
        if (rc) return -1;
        tok_buf swap = *out;
        *out = *tmp;
        *tmp = swap;
    }
    return 0;
}
