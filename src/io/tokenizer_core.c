/* tokenizer: shared tables, the BPE merge engine, llama2.c tokenizer.bin,
 * decoding, pre-tokenized id files. See include/a3/tokenizer.h; the HF
 * tokenizer.json reader is in tokenizer_hf.c, the writer in
 * tokenizer_save.c. */
#include "tokenizer_impl.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---------------------------------------------------- */

a3_tokenizer *tok_new(int kind)
{
    a3_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = kind;
    t->bos = t->eos = t->unk = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    return t;
}

void a3_tok_free(a3_tokenizer *t)
{
    if (!t) return;
    tok_hf_free(t);
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->in_model);
    free(t->is_added);
    free(t->dec_arena);
    free(t->dec_off);
    free(t->dec_len);
    free(t->map.slot);
    free(t->canon);
    free(t->pairs.slot);
    free(t->cut);
    free(t->score);
    free(t);
}

int a3_tok_vocab_size(const a3_tokenizer *t) { return t->n_vocab; }
int a3_tok_bos(const a3_tokenizer *t) { return t->bos; }
int a3_tok_eos(const a3_tokenizer *t) { return t->eos; }

int tok_buf_put(tok_buf *b, const void *p, size_t n)
{
    if (n > SIZE_MAX - b->n - 1) return -1;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        char *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0; /* keeps the buffer usable as a C string */
    return 0;
}

/* Grow *p (elements of size sz) so that it holds at least need elements. */
static int tok_grow(void **p, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2) return -1;
        c *= 2;
    }
    size_t bytes;
    if (a3_mul_size(c, sz, &bytes)) return -1;
    void *q = realloc(*p, bytes);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

int tok_ids_push(tok_work *w, int32_t id)
{
    if (tok_grow((void **)&w->ids, &w->cap_ids, w->n_ids + 1, sizeof *w->ids)) return -1;
    w->ids[w->n_ids++] = id;
    return 0;
}

int tok_sym_push(tok_work *w, int32_t id)
{
    if (w->n_sym >= UINT32_MAX - 1) return -1; /* positions are uint32 */
    if (w->n_sym + 1 > w->cap_sym) {
        size_t cap = w->cap_sym, c2 = w->cap_sym, c3 = w->cap_sym;
        if (tok_grow((void **)&w->sym, &cap, w->n_sym + 1, sizeof *w->sym) ||
            tok_grow((void **)&w->prev, &c2, w->n_sym + 1, sizeof *w->prev) ||
            tok_grow((void **)&w->next, &c3, w->n_sym + 1, sizeof *w->next))
            return -1;
        /* All three grew from the same capacity with the same rule. */
        w->cap_sym = cap;
    }
    w->sym[w->n_sym++] = id;
    return 0;
}

const char *tok_piece(const a3_tokenizer *t, int32_t id, uint32_t *len)
{
    *len = t->len[id];
    return t->arena + t->off[id];
}

/* Length of the UTF-8 character at s (1 for an invalid or truncated
 * sequence, so every byte is consumed exactly once). */
size_t tok_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (k == 0 || k > n) return 1;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 1;
    if (k == 2 && c < 0xC2) return 1;                       /* overlong */
    if (k == 3 && c == 0xE0 && s[1] < 0xA0) return 1;       /* overlong */
    if (k == 3 && c == 0xED && s[1] >= 0xA0) return 1;      /* surrogate */
    if (k == 4 && c == 0xF0 && s[1] < 0x90) return 1;       /* overlong */
    if (k == 4 && (c > 0xF4 || (c == 0xF4 && s[1] >= 0x90))) return 1;
    return k;
}

/* "<0xNN>" (uppercase or lowercase hex) -> NN, else -1. */
int tok_parse_byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* ---- hash tables ------------------------------------------------------ */

static uint64_t tok_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t tok_mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static size_t tok_pow2_above(size_t n)
{
    size_t c = 16;
    while (c < n * 2) c *= 2;
    return c;
}

int32_t tok_lookup(const a3_tokenizer *t, const char *s, size_t n)
{
    if (!t->map.slot) return -1;
    size_t i = (size_t)tok_hash(s, n) & t->map.mask;
    for (;; i = (i + 1) & t->map.mask) {
        int32_t v = t->map.slot[i];
        if (v == 0) return -1;
        int32_t id = v - 1;
        if (t->len[id] == n && memcmp(t->arena + t->off[id], s, n) == 0) return id;
    }
}

/* Index every id (HF: only those in model.vocab). With allow_dups the lowest
 * id wins (what llama2.c's bsearch lookup effectively needs to be
 * deterministic); otherwise a duplicate is reported through *dup_id. */
int tok_strmap_build(a3_tokenizer *t, int allow_dups, int32_t *dup_id)
{
    size_t cap = tok_pow2_above((size_t)t->n_vocab);
    t->map.slot = a3_calloc(cap, sizeof *t->map.slot);
    if (!t->map.slot) return A3_ENOMEM;
    t->map.mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->in_model && !t->in_model[id]) continue;
        uint32_t n;
        const char *s = tok_piece(t, id, &n);
        size_t i = (size_t)tok_hash(s, n) & t->map.mask;
        for (;; i = (i + 1) & t->map.mask) {
            int32_t v = t->map.slot[i];
            if (v == 0) {
                t->map.slot[i] = id + 1;
                break;
            }
            if (t->len[v - 1] == n && memcmp(t->arena + t->off[v - 1], s, n) == 0) {
                if (!allow_dups) {
                    *dup_id = id;
                    return A3_EFORMAT;
                }
                break;
            }
        }
    }
    return A3_OK;
}

int tok_pairmap_init(tok_pairmap *m, size_t n)
{
    size_t cap = tok_pow2_above(n);
    m->slot = a3_malloc_array(cap, sizeof *m->slot);
    if (!m->slot) return A3_ENOMEM;
    for (size_t i = 0; i < cap; i++) m->slot[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->n = 0;
    return A3_OK;
}

/* Insert or overwrite: a later duplicate merge replaces the earlier one, as
 * HF's merges HashMap does. The table is sized for all entries up front. */
void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id)
{
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = (size_t)tok_mix(key) & m->mask;
    while (m->slot[i].key != UINT64_MAX && m->slot[i].key != key) i = (i + 1) & m->mask;
    if (m->slot[i].key == UINT64_MAX) m->n++;
    assert(m->n <= m->mask / 2 + 1);
    m->slot[i] = (tok_pair){key, rank, id};
}

const tok_pair *tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b)
{
    if (!m->slot) return NULL;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = (size_t)tok_mix(key) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        if (m->slot[i].key == key) return &m->slot[i];
        if (m->slot[i].key == UINT64_MAX) return NULL;
    }
}

/* ---- BPE merge engine -------------------------------------------------- */

static int cand_before(const tok_cand *a, const tok_cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int heap_push(tok_work *w, tok_cand c)
{
    if (tok_grow((void **)&w->heap, &w->cap_heap, w->n_heap + 1, sizeof *w->heap)) return -1;
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_before(&c, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
    return 0;
}

static tok_cand heap_pop(tok_work *w)
{
    tok_cand top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!cand_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* Queue the pair starting at symbol pos, if it is a known merge. */
static int push_pair(const a3_tokenizer *t, tok_work *w, uint32_t pos)
{
    int32_t a = w->sym[pos], b = w->sym[w->next[pos]];
    const tok_pair *p = t->canon ? tok_pairmap_get(&t->pairs, t->canon[a], t->canon[b])
                                 : tok_pairmap_get(&t->pairs, a, b);
    if (!p) return 0;
    return heap_push(w, (tok_cand){p->rank, pos, a, b, p->id});
}

/* Merge w->sym[0..n_sym) in place: best rank first, leftmost on ties. A
 * queued entry is applied only if the pair at its position still holds the
 * same two ids, so stale entries (a neighbour merged away) are skipped. */
int tok_bpe(const a3_tokenizer *t, tok_work *w)
{
    size_t n = w->n_sym;
    if (n < 2 || !t->pairs.slot) return 0;
    const uint32_t none = UINT32_MAX;
    w->n_heap = 0;
    for (size_t i = 0; i < n; i++) {
        w->prev[i] = i ? (uint32_t)i - 1 : none;
        w->next[i] = i + 1 < n ? (uint32_t)i + 1 : none;
    }
    for (size_t i = 0; i + 1 < n; i++)
        if (push_pair(t, w, (uint32_t)i)) return A3_ENOMEM;
    while (w->n_heap) {
        tok_cand c = heap_pop(w);
        uint32_t r = w->next[c.pos];
        if (w->sym[c.pos] != c.left || r == none || w->sym[r] != c.right) continue;
        w->sym[c.pos] = c.id;
        w->sym[r] = -1; /* removed; ids are never negative */
        w->next[c.pos] = w->next[r];
        if (w->next[r] != none) w->prev[w->next[r]] = c.pos;
        if (w->prev[c.pos] != none && push_pair(t, w, w->prev[c.pos])) return A3_ENOMEM;
        if (w->next[c.pos] != none && push_pair(t, w, c.pos)) return A3_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (w->sym[i] >= 0) w->sym[k++] = w->sym[i];
    w->n_sym = k;
    return 0;
}

int tok_sym_flush(const a3_tokenizer *t, tok_work *w)
{
    if (tok_bpe(t, w)) return -1;
    for (size_t i = 0; i < w->n_sym; i++)
        if (tok_ids_push(w, w->sym[i])) return -1;
    w->n_sym = 0;
    return 0;
}

int tok_sym_add(const a3_tokenizer *t, tok_work *w, int32_t id)
{
    if (w->n_sym && t->cut && t->cut[id] && tok_sym_flush(t, w)) return -1;
    return tok_sym_push(w, id);
}

/* Character starting at s[0] as a number; invalid bytes map above Unicode
 * so they stay distinct from real characters. */
static uint32_t char_key(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t k = tok_utf8_len(u, n);
    if (k == 1) return u[0] < 0x80 ? u[0] : 0x110000u + u[0];
    uint32_t c = u[0] & (0x7F >> k);
    for (size_t i = 1; i < k; i++) c = c << 6 | (u[i] & 0x3F);
    return c;
}

typedef struct {
    uint32_t *slot; /* key + 1, 0 = empty */
    size_t mask;
} char_set;

/* Returns 1 if key was present. */
static int char_set_add(char_set *cs, uint32_t key, int insert)
{
    size_t i = (size_t)tok_mix(key) & cs->mask;
    for (; cs->slot[i]; i = (i + 1) & cs->mask)
        if (cs->slot[i] == key + 1) return 1;
    if (insert) cs->slot[i] = key + 1;
    return 0;
}

/* Collect every character found at a non-zero byte offset of a merge
 * result (decoding from each offset, so misaligned UTF-8 is covered). */
int tok_build_cuts(a3_tokenizer *t)
{
    size_t total = 1;
    for (size_t i = 0; t->pairs.slot && i <= t->pairs.mask; i++)
        if (t->pairs.slot[i].key != UINT64_MAX) total += t->len[t->pairs.slot[i].id];
    size_t cap = tok_pow2_above(total);
    char_set cs = {a3_calloc(cap, sizeof *cs.slot), cap - 1};
    t->cut = a3_calloc((size_t)t->n_vocab, 1);
    if (!cs.slot || !t->cut) {
        free(cs.slot);
        return A3_ENOMEM;
    }
    for (size_t i = 0; t->pairs.slot && i <= t->pairs.mask; i++) {
        if (t->pairs.slot[i].key == UINT64_MAX) continue;
        uint32_t n;
        const char *s = tok_piece(t, t->pairs.slot[i].id, &n);
        for (uint32_t k = 1; k < n; k++) char_set_add(&cs, char_key(s + k, n - k), 1);
    }
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint32_t n;
        const char *s = tok_piece(t, id, &n);
        t->cut[id] = n > 0 && !char_set_add(&cs, char_key(s, n), 0);
    }
    free(cs.slot);
    return A3_OK;
}

/* ---- pieces and decoding ---------------------------------------------- */

int tok_build_decode(a3_tokenizer *t, tok_dec_fn fn)
{
    tok_buf b = {0};
    t->dec_off = a3_malloc_array((size_t)t->n_vocab, sizeof *t->dec_off);
    t->dec_len = a3_malloc_array((size_t)t->n_vocab, sizeof *t->dec_len);
    if (!t->dec_off || !t->dec_len || tok_buf_put(&b, "", 0)) goto oom;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t start = b.n;
        if (fn(t, id, &b)) goto oom;
        t->dec_off[id] = start;
        t->dec_len[id] = (uint32_t)(b.n - start);
    }
    t->dec_arena = b.p;
    return A3_OK;
oom:
    free(b.p);
    return A3_ENOMEM;
}

int a3_tok_decode(const a3_tokenizer *t, int prev, int id, char *buf, size_t cap)
{
    if (id < 0 || id >= t->n_vocab) return A3_EINVAL;
    const char *s = t->dec_arena + t->dec_off[id];
    size_t n = t->dec_len[id];
    /* SentencePiece's dummy prefix: the first piece of a text (after BOS, or
     * with no previous token) carries a space the text did not have. */
    if (t->strip_first_space && (prev < 0 || prev == t->bos) && n && s[0] == ' ') {
        s++;
        n--;
    }
    if (n > cap) return A3_ENOMEM;
    memcpy(buf, s, n);
    return (int)n;
}

/* ---- llama2.c tokenizer.bin -------------------------------------------- */

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
    if (tok_strmap_build(t, 1, &unused) || l2c_build_canon(t) || l2c_build_pairs(t) ||
        tok_build_cuts(t) || tok_build_decode(t, l2c_decode_piece))
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    for (int b = 0; b < 256; b++) t->byte_id[b] = b + 3; /* run.c: byte + 3 */
    t->unk = 0;
    t->bos = 1;
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
static int l2c_encode(const a3_tokenizer *t, tok_work *w, const char *text, size_t len, int add_bos)
{
    w->n_sym = 0;
    if (add_bos && tok_sym_add(t, w, t->bos)) return A3_ENOMEM;
    if (l2c_symbols(t, w, (const unsigned char *)text, len) || tok_sym_flush(t, w)) return A3_ENOMEM;
    return A3_OK;
}

/* ---- encode entry ------------------------------------------------------ */

static void tok_work_free(tok_work *w)
{
    free(w->ids);
    free(w->sym);
    free(w->prev);
    free(w->next);
    free(w->heap);
    free(w->word.p);
    free(w->normed.p);
    for (int i = 0; i < TOK_MAX_LEVELS; i++) {
        free(w->level_buf[i].p);
        free(w->spans[i]);
    }
    if (w->md) pcre2_match_data_free(w->md);
}

int a3_tok_encode(const a3_tokenizer *t, const char *text, size_t len, int add_bos,
                  int32_t **ids, size_t *n_ids, a3_err *err)
{
    tok_work w;
    memset(&w, 0, sizeof w);
    *ids = NULL;
    *n_ids = 0;
    int rc;
    if (t->kind == TOK_KIND_LLAMA2C) {
        rc = l2c_encode(t, &w, text, len, add_bos && t->bos >= 0);
    } else {
        rc = add_bos && t->bos >= 0 && tok_ids_push(&w, t->bos) ? A3_ENOMEM : A3_OK;
        if (rc == A3_OK) rc = tok_hf_encode(t, &w, text, len);
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
