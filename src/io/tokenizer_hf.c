/* tokenizer_hf: encoding with a HF tokenizer.json (model type BPE), the
 * model layer (see tokenizer_core.h; loading is tokenizer_hfload.c).
 *
 * Encoding follows the tokenizers library's pipeline:
 *  1. added tokens with normalized=false are cut out of the raw text
 *     (leftmost-longest, honouring lstrip/rstrip/single_word);
 *  2. each remaining piece is normalized (tokenizer_norm.c) and the
 *     normalized added tokens are cut out of it;
 *  3. the pre-tokenizer steps (Split regex, Digits, ByteLevel, Metaspace)
 *     split each piece further, in order, each with its delimiter behaviour;
 *  4. each final piece ("word") goes through BPE: characters (byte-level:
 *     the GPT-2 byte characters) looked up, byte fallback <0xNN> or unk for
 *     unknown ones, then merges by rank (tok_bpe).
 * The pipeline is walked depth-first so a multi-megabyte text never needs a
 * list of all its pieces. */
#include "tokenizer_model.h"

#include <stdlib.h>
#include <string.h>

/* GPT-2's pattern, used by ByteLevel when use_regex is true. */
const char tok_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- UTF-8 ------------------------------------------------------------ */

static int is_space_cp(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}


/* ---- GPT-2 byte <-> unicode -------------------------------------------- */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the other 68 bytes get U+0100.. in byte order. */
void tok_bytelevel_table(a3_tokenizer *t)
{
    int extra = 0;
    for (int c = 0; c < 0x144; c++) t->bl_rev[c] = -1;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = keep ? b : 256 + extra++;
        t->bl_rev[cp] = (int16_t)b;
        if (cp < 0x80) {
            t->bl_char[b][0] = (char)cp;
            t->bl_len[b] = 1;
        } else {
            t->bl_char[b][0] = (char)(0xC0 | cp >> 6);
            t->bl_char[b][1] = (char)(0x80 | (cp & 0x3F));
            t->bl_len[b] = 2;
        }
    }
}

/* Map a byte-level piece back to bytes; characters outside the table (only
 * in odd vocabularies) are kept as they are. */
int tok_bytelevel_decode(const a3_tokenizer *t, const char *s, size_t n, tok_buf *out)
{
    for (size_t i = 0; i < n;) {
        size_t k;
        uint32_t cp = tok_utf8_cp((const unsigned char *)s + i, n - i, &k);
        int b = k > 1 || cp < 0x80 ? (cp < 0x144 ? t->bl_rev[cp] : -1) : -1;
        char c = (char)b;
        if (b >= 0 ? tok_buf_put(out, &c, 1) : tok_buf_put(out, s + i, k)) return -1;
        i += k;
    }
    return 0;
}

/* ---- added-token matching --------------------------------------------- */

/* Length of the whitespace character ending at s[end-1] (not reaching
 * before from), or 0. */
static size_t space_before(const char *s, size_t from, size_t end)
{
    size_t b = end - 1;
    while (b > from && end - b < 4 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
    size_t k;
    uint32_t c = tok_utf8_cp((const unsigned char *)s + b, end - b, &k);
    return b + k == end && is_space_cp(c) ? k : 0;
}

static int is_word_byte(const char *s, size_t n, size_t i)
{
    unsigned char c = (unsigned char)s[i];
    (void)n;
    return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* Does added token a match at s[p..n)? Extends [*ms, *me) for lstrip and
 * rstrip (the whitespace is swallowed, as HF does). */
static int added_match_at(const tok_added *a, const char *s, size_t from, size_t n, size_t p,
                          size_t *ms, size_t *me)
{
    if (a->pat_len > n - p || memcmp(s + p, a->pat, a->pat_len) != 0) return 0;
    size_t b = p, e = p + a->pat_len;
    if (a->single_word && ((b > from && is_word_byte(s, n, b - 1)) || (e < n && is_word_byte(s, n, e))))
        return 0;
    if (a->lstrip)
        for (size_t k; b > from && (k = space_before(s, from, b)) > 0;) b -= k;
    if (a->rstrip)
        for (size_t k; e < n;) {
            uint32_t c = tok_utf8_cp((const unsigned char *)s + e, n - e, &k);
            if (!is_space_cp(c)) break;
            e += k;
        }
    *ms = b;
    *me = e;
    return 1;
}

/* Leftmost, then longest, added token in s[from..n). */
static int added_find(const a3_tokenizer *t, const tok_matcher *m, const char *s, size_t from,
                      size_t n, size_t *ms, size_t *me, int32_t *id)
{
    if (!m->order) return 0;
    for (size_t p = from; p < n; p++) {
        unsigned char c = (unsigned char)s[p];
        for (uint32_t i = m->start[c]; i < m->start[c + 1]; i++) {
            const tok_added *a = &t->added[m->order[i]];
            if (added_match_at(a, s, from, n, p, ms, me)) {
                *id = a->id;
                return 1;
            }
        }
    }
    return 0;
}

/* ---- normalizer -------------------------------------------------------- */

int tok_hf_replace(const char *s, size_t n, const tok_norm *op, tok_buf *out)
{
    size_t i = 0, last = 0;
    while (i + op->a_len <= n) {
        if (memcmp(s + i, op->a, op->a_len) == 0) {
            if (tok_buf_put(out, s + last, i - last) || tok_buf_put(out, op->b, op->b_len)) return -1;
            i += op->a_len;
            last = i;
        } else {
            i++;
        }
    }
    return tok_buf_put(out, s + last, n - last);
}

/* ---- BPE on one word --------------------------------------------------- */

/* HF's unknown-character handling: consecutive unknowns fuse into one unk
 * when fuse_unk; a pending unk is flushed by the next known character (so
 * byte-fallback ids can precede it, exactly as tokenizers does). */
typedef struct {
    int pending;
} unk_state;

static int sym_unknown(const a3_tokenizer *t, tok_work *w, unk_state *u, const unsigned char *c,
                       size_t k)
{
    int all = t->byte_fallback;
    for (size_t i = 0; all && i < k; i++) all = t->byte_id[c[i]] >= 0;
    if (all) {
        for (size_t i = 0; i < k; i++)
            if (tok_sym_add(t, w, t->byte_id[c[i]])) return -1;
        return 0;
    }
    if (t->unk < 0) return 0; /* HF drops unknowns when there is no unk */
    if (u->pending && !t->fuse_unk && tok_sym_add(t, w, t->unk)) return -1;
    u->pending = 1;
    return 0;
}

static int sym_known(const a3_tokenizer *t, tok_work *w, unk_state *u, int32_t id)
{
    if (u->pending && tok_sym_add(t, w, t->unk)) return -1;
    u->pending = 0;
    return tok_sym_add(t, w, id);
}

static int word_symbols(const a3_tokenizer *t, tok_work *w, const unsigned char *s, size_t n)
{
    unk_state u = {0};
    w->n_sym = 0;
    for (size_t i = 0; i < n;) {
        size_t k = t->byte_level ? 1 : tok_utf8_len(s + i, n - i);
        int32_t id = t->byte_level ? t->byte_id[s[i]] : tok_lookup(t, (const char *)s + i, k);
        int rc = id >= 0 ? sym_known(t, w, &u, id) : sym_unknown(t, w, &u, s + i, k);
        if (rc) return -1;
        i += k;
    }
    if (u.pending && tok_sym_add(t, w, t->unk)) return -1;
    return 0;
}

static int hf_word(const a3_tokenizer *t, tok_work *w, const char *s, size_t n)
{
    if (t->ignore_merges) {
        const char *key = s;
        size_t key_len = n;
        if (t->byte_level) { /* the vocab holds the byte characters */
            w->word.n = 0;
            for (size_t i = 0; i < n; i++) {
                unsigned char b = (unsigned char)s[i];
                if (tok_buf_put(&w->word, t->bl_char[b], t->bl_len[b])) return A3_ENOMEM;
            }
            key = w->word.p;
            key_len = w->word.n;
        }
        int32_t id = tok_lookup(t, key, key_len);
        if (id >= 0) return tok_ids_push(w, id) ? A3_ENOMEM : A3_OK;
    }
    if (word_symbols(t, w, (const unsigned char *)s, n) || tok_sym_flush(t, w)) return A3_ENOMEM;
    return A3_OK;
}

/* ---- pre-tokenizer ----------------------------------------------------- */

static int span_push(tok_work *w, int level, size_t *n, size_t s, size_t e, int delim)
{
    if (*n + 1 > w->cap_spans[level]) {
        size_t c = w->cap_spans[level] ? w->cap_spans[level] * 2 : 64;
        tok_span *p = a3_malloc_array(c, sizeof *p);
        if (!p) return -1;
        if (*n) memcpy(p, w->spans[level], *n * sizeof *p);
        free(w->spans[level]);
        w->spans[level] = p;
        w->cap_spans[level] = c;
    }
    w->spans[level][(*n)++] = (tok_span){s, e, delim};
    return 0;
}

/* Matches of re in s as spans covering s (HF's find_matches): gaps are
 * non-empty non-delimiters; an empty match right after the previous match
 * is skipped by stepping one character (onig's find_iter rule). */
static int regex_spans(tok_work *w, int level, const pcre2_code *re, const char *s, size_t n,
                       size_t *count)
{
    size_t at = 0, prev = 0, last_end = 0;
    int have_last = 0;
    *count = 0;
    while (at <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, at, 0, w->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return A3_EFORMAT;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        size_t ms = ov[0], me = ov[1];
        if (me < ms || me > n) return A3_EFORMAT; /* \K tricks; never in real patterns */
        if (ms == me && have_last && last_end == me) {
            at += at < n ? tok_utf8_len((const unsigned char *)s + at, n - at) : 1;
            continue;
        }
        if (ms != prev && span_push(w, level, count, prev, ms, 0)) return A3_ENOMEM;
        if (span_push(w, level, count, ms, me, 1)) return A3_ENOMEM;
        prev = at = last_end = me;
        have_last = 1;
    }
    if (prev != n && span_push(w, level, count, prev, n, 0)) return A3_ENOMEM;
    return A3_OK;
}

/* Occurrences of a literal (Metaspace's replacement) as spans. */
static int literal_spans(tok_work *w, int level, const char *lit, size_t lit_len, const char *s,
                         size_t n, size_t *count)
{
    size_t prev = 0;
    *count = 0;
    for (size_t i = 0; i + lit_len <= n;) {
        if (memcmp(s + i, lit, lit_len) != 0) {
            i++;
            continue;
        }
        if (i != prev && span_push(w, level, count, prev, i, 0)) return A3_ENOMEM;
        if (span_push(w, level, count, i, i + lit_len, 1)) return A3_ENOMEM;
        prev = i += lit_len;
    }
    if (prev != n && span_push(w, level, count, prev, n, 0)) return A3_ENOMEM;
    return A3_OK;
}

/* HF's SplitDelimiterBehavior, in place; returns the pieces to keep (no
 * empty ones). delim marks pieces to drop (Removed). */
static size_t apply_behavior(tok_span *sp, size_t n, int behavior)
{
    size_t k = 0;
    int prev_delim = 0;
    if (behavior == TOK_SPLIT_MERGED_NEXT) { /* HF folds from the right */
        k = n;
        for (size_t i = n; i-- > 0;) {
            tok_span cur = sp[i];
            if (cur.delim && !prev_delim && k < n) sp[k].s = cur.s;
            else sp[--k] = (tok_span){cur.s, cur.e, 0};
            prev_delim = cur.delim;
        }
        memmove(sp, sp + k, (n - k) * sizeof *sp);
        k = n - k;
    } else {
        for (size_t i = 0; i < n; i++) {
            tok_span cur = sp[i];
            int merge = (behavior == TOK_SPLIT_MERGED_PREV && cur.delim && !prev_delim) ||
                        (behavior == TOK_SPLIT_CONTIGUOUS && cur.delim == prev_delim);
            if (merge && k) sp[k - 1].e = cur.e;
            else sp[k++] = (tok_span){cur.s, cur.e, behavior == TOK_SPLIT_REMOVED && cur.delim};
            prev_delim = cur.delim;
        }
    }
    size_t out = 0;
    for (size_t i = 0; i < k; i++)
        if (!sp[i].delim && sp[i].e > sp[i].s) sp[out++] = sp[i];
    return out;
}

static int hf_pre(const a3_tokenizer *t, tok_work *w, size_t level, const char *s, size_t n,
                  int first);

/* Split s by the level's spans and behaviour; recurse into each piece. */
static int split_and_recurse(const a3_tokenizer *t, tok_work *w, size_t level, const char *s,
                             size_t count, int behavior, int invert, int first)
{
    tok_span *sp = w->spans[level];
    if (invert)
        for (size_t i = 0; i < count; i++) sp[i].delim = !sp[i].delim;
    size_t keep = apply_behavior(sp, count, behavior);
    for (size_t i = 0; i < keep; i++) {
        tok_span p = w->spans[level][i]; /* re-read: deeper levels do not touch it */
        int rc = hf_pre(t, w, level + 1, s + p.s, p.e - p.s, first && p.s == 0);
        if (rc) return rc;
    }
    return A3_OK;
}

static int pre_split(const a3_tokenizer *t, tok_work *w, size_t level, const char *s, size_t n,
                     int first)
{
    const tok_pre *p = &t->pre[level];
    size_t count;
    int rc = regex_spans(w, (int)level, p->re, s, n, &count);
    if (rc) return rc;
    return split_and_recurse(t, w, level, s, count, p->behavior, p->invert, first);
}

/* ByteLevel: optional prefix space, optional GPT-2 regex split; the byte
 * mapping itself happens in hf_word (it is the last step). */
static int pre_bytelevel(const a3_tokenizer *t, tok_work *w, size_t level, const char *s,
                         size_t n, int first)
{
    const tok_pre *p = &t->pre[level];
    if (p->add_prefix_space && s[0] != ' ') {
        tok_buf *b = &w->level_buf[level];
        b->n = 0;
        if (tok_buf_put(b, " ", 1) || tok_buf_put(b, s, n)) return A3_ENOMEM;
        s = b->p;
        n = b->n;
    }
    if (!p->re) return hf_pre(t, w, level + 1, s, n, first);
    size_t count;
    int rc = regex_spans(w, (int)level, p->re, s, n, &count);
    if (rc) return rc;
    return split_and_recurse(t, w, level, s, count, TOK_SPLIT_ISOLATED, 0, first);
}

/* Metaspace: spaces become the replacement, which is prepended per the
 * prepend scheme unless already there; optional split before each one. */
static int pre_metaspace(const a3_tokenizer *t, tok_work *w, size_t level, const char *s,
                         size_t n, int first)
{
    const tok_pre *p = &t->pre[level];
    tok_buf *b = &w->level_buf[level];
    tok_norm rep = {TOK_NORM_REPLACE, " ", (char *)p->repl, 1, p->repl_len};
    b->n = 0;
    int starts = n >= 1 && (s[0] == ' ' || (n >= p->repl_len && memcmp(s, p->repl, p->repl_len) == 0));
    int prepend = !starts && (p->prepend == TOK_PREPEND_ALWAYS || (p->prepend == TOK_PREPEND_FIRST && first));
    if ((prepend && tok_buf_put(b, p->repl, p->repl_len)) || tok_hf_replace(s, n, &rep, b))
        return A3_ENOMEM;
    if (!p->split) return hf_pre(t, w, level + 1, b->p, b->n, first);
    size_t count;
    int rc = literal_spans(w, (int)level, p->repl, p->repl_len, b->p, b->n, &count);
    if (rc) return rc;
    return split_and_recurse(t, w, level, b->p, count, TOK_SPLIT_MERGED_NEXT, 0, first);
}

static int hf_pre(const a3_tokenizer *t, tok_work *w, size_t level, const char *s, size_t n,
                  int first)
{
    if (n == 0) return A3_OK;
    if (level == t->n_pre) return hf_word(t, w, s, n);
    switch (t->pre[level].op) {
    case TOK_PRE_SPLIT: return pre_split(t, w, level, s, n, first);
    case TOK_PRE_BYTELEVEL: return pre_bytelevel(t, w, level, s, n, first);
    default: return pre_metaspace(t, w, level, s, n, first);
    }
}

/* ---- encode ------------------------------------------------------------ */

/* A piece of raw text between non-normalized added tokens. */
static int hf_segment(const a3_tokenizer *t, tok_work *w, const char *s, size_t n, int at_start)
{
    if (n == 0) return A3_OK;
    if (t->n_norm) {
        if (tok_hf_normalize(t, s, n, &w->normed, &w->word)) return A3_ENOMEM;
        s = w->normed.p;
        n = w->normed.n;
    }
    size_t at = 0, ms, me;
    int32_t id;
    while (added_find(t, &t->norm_m, s, at, n, &ms, &me, &id)) {
        int rc = hf_pre(t, w, 0, s + at, ms - at, at_start && at == 0);
        if (rc || tok_ids_push(w, id)) return rc ? rc : A3_ENOMEM;
        at = me;
    }
    return hf_pre(t, w, 0, s + at, n - at, at_start && at == 0);
}

int tok_hf_encode(const a3_tokenizer *t, tok_work *w, const char *text, size_t len)
{
    if (t->n_pre) {
        w->md = pcre2_match_data_create(1, NULL);
        if (!w->md) return A3_ENOMEM;
    }
    size_t at = 0, ms, me;
    int32_t id;
    while (added_find(t, &t->raw_m, text, at, len, &ms, &me, &id)) {
        int rc = hf_segment(t, w, text + at, ms - at, at == 0);
        if (rc || tok_ids_push(w, id)) return rc ? rc : A3_ENOMEM;
        at = me;
    }
    return hf_segment(t, w, text + at, len - at, at == 0);
}
