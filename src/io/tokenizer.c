/* tokenizer: the encoding entry point (the post-processor's special tokens
 * around the model's ids) and pre-tokenized id files; the top layer of the
 * tokenizer module (see tokenizer_core.h). */
#include "tokenizer_model.h"

#include <stdlib.h>
#include <string.h>

int a3_tok_encode(const a3_tokenizer *t, const char *text, size_t len, int add_special,
                  int32_t **ids, size_t *n_ids, a3_err *err)
{
    tok_work w;
    memset(&w, 0, sizeof w);
    *ids = NULL;
    *n_ids = 0;
    int rc = A3_OK;
    if (t->kind == TOK_KIND_LLAMA2C) {
        rc = tok_l2c_encode(t, &w, text, len, add_special && t->bos >= 0);
    } else {
        for (size_t i = 0; add_special && rc == A3_OK && i < t->n_before; i++)
            rc = tok_ids_push(&w, t->before[i]) ? A3_ENOMEM : A3_OK;
        if (rc == A3_OK) rc = tok_hf_encode(t, &w, text, len);
        for (size_t i = 0; add_special && rc == A3_OK && i < t->n_after; i++)
            rc = tok_ids_push(&w, t->after[i]) ? A3_ENOMEM : A3_OK;
    }
    if (rc == A3_OK && !w.ids && tok_ids_push(&w, 0) == 0) w.n_ids = 0; /* never NULL */
    if (rc == A3_OK && !w.ids) rc = A3_ENOMEM;
    if (rc) {
        tok_work_free(&w);
        if (rc == A3_ENOMEM) return a3_err_set(err, rc, "tokenizer: out of memory encoding %zu bytes", len);
        return a3_err_set(err, rc, "tokenizer: pre-tokenizer regex failed on the text (PCRE2 error or limit)");
    }
    *ids = w.ids;
    *n_ids = w.n_ids;
    w.ids = NULL;
    tok_work_free(&w);
    return A3_OK;
}

int a3_tok_special(const a3_tokenizer *t, int after, const int32_t **ids)
{
    *ids = after ? t->after : t->before;
    return (int)(after ? t->n_after : t->n_before);
}

const char *a3_tok_kind(const a3_tokenizer *t)
{
    if (t->kind == TOK_KIND_LLAMA2C) return "llama2.c tokenizer.bin";
    if (t->byte_level) return "tokenizer.json, byte-level BPE";
    return t->byte_fallback ? "tokenizer.json, BPE with byte fallback" : "tokenizer.json, BPE";
}

/* ---- pre-tokenized ids ------------------------------------------------- */

int a3_tok_read_ids(const char *path, int32_t **ids, size_t *n_ids, a3_err *err)
{
    *ids = NULL;
    *n_ids = 0;
    char *data;
    size_t n;
    int rc = a3_read_file(path, (size_t)1 << 34, &data, &n, err);
    if (rc) return rc;
    if (n % 4 != 0) {
        free(data);
        return a3_err_set(err, A3_EFORMAT, "%s: size %zu is not a multiple of 4 (uint32 ids)", path, n);
    }
    int32_t *v = a3_malloc_array(n / 4 ? n / 4 : 1, sizeof *v);
    if (!v) {
        free(data);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    }
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n / 4; i++, p += 4) {
        uint32_t x = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        if (x > INT32_MAX) {
            free(v);
            free(data);
            return a3_err_set(err, A3_EFORMAT, "%s: id %u at index %zu out of range", path, x, i);
        }
        v[i] = (int32_t)x;
    }
    free(data);
    *ids = v;
    *n_ids = n / 4;
    return A3_OK;
}

int a3_tok_check_ids(const char *src, const int32_t *ids, size_t n, int vocab, a3_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return a3_err_set(err, A3_EFORMAT, "%s: token id %d at position %zu is outside the model's vocabulary (%d)",
                              src, ids[i], i, vocab);
    return A3_OK;
}

int a3_tok_check_vocab(const a3_tokenizer *t, const char *dir, int vocab, a3_err *err)
{
    int nt = a3_tok_vocab_size(t);
    if (nt > vocab)
        return a3_err_set(err, A3_EMISMATCH, "%s: the tokenizer has %d tokens, more than the model's vocab_size %d",
                          dir, nt, vocab);
    return A3_OK;
}
