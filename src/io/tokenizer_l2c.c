/* tokenizer_l2c: llama2.c tokenizer.bin, read and encoded as run.c does
 * (model layer; see tokenizer_core.h). */
#include "tokenizer_model.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const unsigned char *p;
    size_t n, at;
} tok_reader;

static int rd_i32(tok_reader *r, int32_t *v)
{
    if (r->n - r->at < 4) return -1;
    const unsigned char *q = r->p + r->at;
    *v = (int32_t)((uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24);
    r->at += 4;
    return 0;
}

static int rd_f32(tok_reader *r, float *v)
{
    int32_t bits;
    if (rd_i32(r, &bits)) return -1;
    memcpy(v, &bits, sizeof *v);
    return 0;
}

/* Read one token record (float score, int32 len, bytes) into arena. */
static int l2c_read_token(tok_reader *r, const char *path, int32_t i, int32_t max_len,
                          float *score, tok_buf *arena, a3_err *err)
{
    int32_t n;
    if (rd_f32(r, score) || rd_i32(r, &n))
        return a3_err_set(err, A3_EFORMAT, "%s: truncated at token %d header", path, (int)i);
    if (n < 0 || n > max_len)
        return a3_err_set(err, A3_EFORMAT, "%s: token %d length %d outside 0..max_token_length %d",
                          path, (int)i, (int)n, (int)max_len);
    if (r->n - r->at < (size_t)n)
        return a3_err_set(err, A3_EFORMAT, "%s: truncated in token %d (%d bytes, %zu left)", path,
                          (int)i, (int)n, r->n - r->at);
    if (tok_buf_put(arena, r->p + r->at, (size_t)n))
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    r->at += (size_t)n;
    return A3_OK;
}

/* Parse all token records; vocab_size > 0 demands exactly that many. */
static int l2c_parse(a3_tokenizer *t, tok_reader *r, const char *path, int vocab_size,
                     tok_buf *arena, a3_err *err)
{
    int32_t max_len;
    if (rd_i32(r, &max_len)) return a3_err_set(err, A3_EFORMAT, "%s: too short for header", path);
    if (max_len <= 0 || max_len > TOK_MAX_PIECE)
        return a3_err_set(err, A3_EFORMAT, "%s: bad max_token_length %d", path, (int)max_len);
    size_t cap = 0, cap2 = 0, cap3 = 0;
    for (int32_t i = 0; vocab_size > 0 ? i < vocab_size : r->at < r->n; i++) {
        if (i >= TOK_MAX_VOCAB)
            return a3_err_set(err, A3_EFORMAT, "%s: more than %d tokens", path, TOK_MAX_VOCAB);
        if (tok_grow((void **)&t->score, &cap, (size_t)i + 1, sizeof *t->score) ||
            tok_grow((void **)&t->off, &cap2, (size_t)i + 1, sizeof *t->off) ||
            tok_grow((void **)&t->len, &cap3, (size_t)i + 1, sizeof *t->len))
            return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
        t->off[i] = arena->n;
        int rc = l2c_read_token(r, path, i, max_len, &t->score[i], arena, err);
        if (rc) return rc;
        t->len[i] = (uint32_t)(arena->n - t->off[i]);
        t->n_vocab = i + 1;
    }
    if (r->at != r->n)
        return a3_err_set(err, A3_EFORMAT, "%s: %zu trailing bytes after %d tokens (vocab size mismatch?)",
                          path, r->n - r->at, (int)t->n_vocab);
    if (t->n_vocab < 259)
        return a3_err_set(err, A3_EFORMAT, "%s: only %d tokens; llama2.c needs ids 3..258 for byte fallback",
                          path, (int)t->n_vocab);
    return A3_OK;
}

static int cmp_float_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y ? 1 : 0;
}

/* Rank of score among the distinct scores sorted high to low. */
static uint32_t l2c_rank(const float *distinct, size_t n, float score)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (distinct[mid] >= score) lo = mid;
        else hi = mid;
    }
    return (uint32_t)lo;
}

/* Tokens run.c can produce by merging: canonical (lowest id of its piece)
 * and a score that can pass run.c's "score > best", best starting at -1e10
 * (so NaN and scores <= -1e10 never merge). */
static int l2c_mergeable(const a3_tokenizer *t, int32_t id)
{
    return t->canon[id] == id && t->score[id] > -1e10f;
}

/* Every way to write a token as the concatenation of two tokens is a merge,
 * since run.c looks up each adjacent concatenation. Equal scores share a
 * rank, so the engine's leftmost-on-ties matches run.c's strict ">". */
static int l2c_build_pairs(a3_tokenizer *t)
{
    size_t n_pairs = 0, n = 0;
    float *distinct = a3_malloc_array((size_t)t->n_vocab, sizeof *distinct);
    if (!distinct) return A3_ENOMEM;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!l2c_mergeable(t, id)) continue;
        distinct[n++] = t->score[id];
        n_pairs += t->len[id];
    }
    qsort(distinct, n, sizeof *distinct, cmp_float_desc);
    size_t n_distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (n_distinct == 0 || distinct[i] != distinct[n_distinct - 1]) distinct[n_distinct++] = distinct[i];
    int rc = tok_pairmap_init(&t->pairs, n_pairs + 1);
    for (int32_t id = 0; rc == A3_OK && id < t->n_vocab; id++) {
        if (!l2c_mergeable(t, id)) continue;
        uint32_t rank = l2c_rank(distinct, n_distinct, t->score[id]), len;
        const char *s = tok_piece(t, id, &len);
        for (uint32_t k = 1; k < len; k++) {
            int32_t a = tok_lookup(t, s, k), b = tok_lookup(t, s + k, len - k);
            if (a >= 0 && b >= 0) tok_pairmap_put(&t->pairs, a, b, rank, id);
        }
    }
    free(distinct);
    return rc;
}

static int l2c_build_canon(a3_tokenizer *t)
{
    t->canon = a3_malloc_array((size_t)t->n_vocab, sizeof *t->canon);
    if (!t->canon) return A3_ENOMEM;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint32_t n;
        const char *s = tok_piece(t, id, &n);
        t->canon[id] = tok_lookup(t, s, n);
    }
    return A3_OK;
}

/* run.c decode: "<0xNN>" pieces are the raw byte, others their bytes. */
static int l2c_decode_piece(const a3_tokenizer *t, int32_t id, tok_buf *out)
{
    uint32_t n;
    const char *s = tok_piece(t, id, &n);
    int byte = tok_parse_byte_piece(s, n);
    if (byte >= 0) {
        char c = (char)byte;
        return tok_buf_put(out, &c, 1);
    }
    return tok_buf_put(out, s, n);
}

static int l2c_finish(a3_tokenizer *t, const char *path, a3_err *err)
{
    int32_t unused;
    t->before = malloc(sizeof *t->before);
    if (!t->before || tok_strmap_build(t, 1, &unused) || l2c_build_canon(t) || l2c_build_pairs(t) ||
        tok_build_cuts(t) || tok_build_decode(t, l2c_decode_piece))
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    for (int b = 0; b < 256; b++) t->byte_id[b] = b + 3; /* run.c: byte + 3 */
    t->unk = 0;
    t->before[0] = t->bos = 1; /* run.c always starts with BOS */
    t->n_before = 1;
    t->eos = 2;
    t->strip_first_space = 1;
    return A3_OK;
}

int a3_tok_load_llama2c(const char *path, int vocab_size, a3_tokenizer **out, a3_err *err)
{
    *out = NULL;
    char *data = NULL;
    size_t n = 0;
    int rc = a3_read_file(path, TOK_MAX_JSON, &data, &n, err);
    if (rc) return rc;
    a3_tokenizer *t = tok_new(TOK_KIND_LLAMA2C);
    tok_buf arena = {0};
    if (!t || tok_buf_put(&arena, "", 0)) {
        rc = a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    tok_reader r = {(const unsigned char *)data, n, 0};
    rc = l2c_parse(t, &r, path, vocab_size, &arena, err);
    t->arena = arena.p;
    arena.p = NULL;
    if (rc == A3_OK) rc = l2c_finish(t, path, err);
    if (rc) goto fail;
    free(data);
    *out = t;
    return A3_OK;
fail:
    free(arena.p);
    free(data);
    a3_tok_free(t);
    return rc;
}

/* run.c's character loop: a lead byte and up to 3 following continuation
 * bytes form one unit, looked up as a piece, else emitted as byte + 3 ids.
 * Invalid UTF-8 falls out of the same rule (no validation, as in run.c). */
static int l2c_symbols(const a3_tokenizer *t, tok_work *w, const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    int32_t space = tok_lookup(t, " ", 1);
    if (tok_sym_add(t, w, space >= 0 ? space : t->byte_id[' '])) return -1;
    size_t start = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) k = 0;
        if (k == 0) start = i;
        k++;
        if (i + 1 < n && (s[i + 1] & 0xC0) == 0x80 && k < 4) continue;
        int32_t id = tok_lookup(t, (const char *)s + start, k);
        if (id >= 0) {
            if (tok_sym_add(t, w, id)) return -1;
        } else {
            for (size_t j = start; j < start + k; j++)
                if (tok_sym_add(t, w, t->byte_id[s[j]])) return -1;
        }
        k = 0;
    }
    return 0;
}

/* The whole text is one merge sequence (BOS included, as in run.c),
 * merged stretch by stretch between cuts. */
int tok_l2c_encode(const a3_tokenizer *t, tok_work *w, const char *text, size_t len, int add_bos)
{
    w->n_sym = 0;
    if (add_bos && tok_sym_add(t, w, t->bos)) return A3_ENOMEM;
    if (l2c_symbols(t, w, (const unsigned char *)text, len) || tok_sym_flush(t, w)) return A3_ENOMEM;
    return A3_OK;
}

