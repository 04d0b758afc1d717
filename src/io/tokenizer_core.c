/* tokenizer_core: the tokenizer object, its lookup tables, the BPE merge
 * engine, decoding and freeing (the bottom layer; see tokenizer_core.h). */
#include "tokenizer_core.h"

#include <assert.h>
#include <cjson/cJSON.h>
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
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].pat);
    }
    free(t->added);
    free(t->raw_m.order);
    free(t->norm_m.order);
    for (size_t i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    free(t->norm);
    for (size_t i = 0; i < t->n_pre; i++)
        if (t->pre[i].re) pcre2_code_free(t->pre[i].re);
    free(t->pre);
    free(t->before);
    free(t->after);
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

const char *a3_tok_piece(const a3_tokenizer *t, int id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return "";
    }
    *len = t->len[id];
    return t->arena + t->off[id];
}

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
int tok_grow(void **p, size_t *cap, size_t need, size_t sz)
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

void tok_work_free(tok_work *w)
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

const char *tok_piece(const a3_tokenizer *t, int32_t id, uint32_t *len)
{
    *len = t->len[id];
    return t->arena + t->off[id];
}

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

uint32_t tok_utf8_cp(const unsigned char *s, size_t n, size_t *len)
{
    size_t k = tok_utf8_len(s, n);
    *len = k;
    if (k == 1) return s[0];
    uint32_t c = s[0] & (0x7F >> k);
    for (size_t i = 1; i < k; i++) c = c << 6 | (s[i] & 0x3F);
    return c;
}

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

int32_t tok_added_id(const a3_tokenizer *t, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].content_len == n && memcmp(t->added[i].content, name, n) == 0) return t->added[i].id;
    return -1;
}

int32_t tok_name_id(const a3_tokenizer *t, const char *name)
{
    int32_t id = tok_added_id(t, name);
    return id >= 0 ? id : tok_lookup(t, name, strlen(name));
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

int tok_merge_parts(const cJSON *m, const char **a, size_t *al, const char **b, size_t *bl)
{
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return -1;
        *a = s;
        *al = (size_t)(sp - s);
        *b = sp + 1;
        *bl = strlen(sp + 1);
        return 0;
    }
    if (cJSON_GetArraySize(m) != 2) return -1;
    const cJSON *x = cJSON_GetArrayItem(m, 0), *y = cJSON_GetArrayItem(m, 1);
    if (!cJSON_IsString(x) || !cJSON_IsString(y)) return -1;
    *a = x->valuestring;
    *al = strlen(*a);
    *b = y->valuestring;
    *bl = strlen(*b);
    return 0;
}
