/* tokenizer_save: a llama2.c tokenizer as an equivalent SentencePiece-style
 * HF tokenizer.json (what HF's LlamaConverter writes for Llama 2):
 *  - vocab: the pieces with ' ' spelled "▁", BOS/EOS under their
 *    SentencePiece names "<s>"/"</s>" (llama2.c stores "\n<s>\n");
 *  - merges: as HF's SentencePieceExtractor derives them: every way to
 *    write a token as two vocab pieces, per token ordered by (left id,
 *    right id), all stably ordered by the merged token's score, highest
 *    first. Tokens run.c can never merge into (score <= -1e10) are left out;
 *  - normalizer Prepend("▁") + Replace(" ", "▁"), byte_fallback, fuse_unk,
 *    <unk>/<s>/</s> as special added tokens, a Llama-2 post-processor and
 *    decoder.
 * run.c merges the highest-scoring pair, leftmost on ties; HF merges the
 * lowest rank. They agree whenever no two different tokens that can both be
 * merged into share a score (true of SentencePiece BPE vocabularies, whose
 * scores are minus the merge order), and tokens with two overlapping splits
 * (t1 t2 = t2 t3) never meet; see the tests for a vocabulary where a shared
 * score makes them differ. */
#include "tokenizer_core.h"

#include <stdlib.h>
#include <string.h>

static const char sp_space[] = "\xE2\x96\x81"; /* U+2581 "▁" */

typedef struct {
    tok_buf arena; /* names, NUL-separated */
    size_t *off;
    uint32_t *len;
} name_table;

typedef struct {
    float score;
    size_t seq;
    int32_t a, b;
} merge_entry;

/* ---- names ------------------------------------------------------------- */

static int valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = tok_utf8_len((const unsigned char *)s + i, n - i);
        if (s[i] == 0 || (k == 1 && (unsigned char)s[i] >= 0x80)) return 0;
        i += k;
    }
    return 1;
}

static int put_name(const a3_tokenizer *t, int32_t id, tok_buf *b)
{
    uint32_t n;
    const char *s = tok_piece(t, id, &n);
    if (id == t->bos && n == 5 && memcmp(s, "\n<s>\n", 5) == 0) return tok_buf_put(b, "<s>", 3);
    if (id == t->eos && n == 6 && memcmp(s, "\n</s>\n", 6) == 0) return tok_buf_put(b, "</s>", 4);
    for (uint32_t i = 0; i < n; i++)
        if (s[i] == ' ' ? tok_buf_put(b, sp_space, 3) : tok_buf_put(b, s + i, 1)) return -1;
    return 0;
}

typedef struct {
    const char *s;
    uint32_t len;
    int32_t id;
} name_ref;

static int cmp_name(const void *x, const void *y)
{
    const name_ref *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->s, b->s, n);
    if (c) return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

/* HF needs unique vocab keys; the ' ' -> "▁" spelling could collide with a
 * piece that already contained "▁". */
static int check_unique(const name_table *nt, int32_t n, const char *path, a3_err *err)
{
    name_ref *r = a3_malloc_array((size_t)n, sizeof *r);
    if (!r) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    for (int32_t i = 0; i < n; i++) r[i] = (name_ref){nt->arena.p + nt->off[i], nt->len[i], i};
    qsort(r, (size_t)n, sizeof *r, cmp_name);
    int rc = A3_OK;
    for (int32_t i = 1; i < n && rc == A3_OK; i++)
        if (cmp_name(&r[i - 1], &r[i]) == 0)
            rc = a3_err_set(err, A3_EUNSUPPORTED, "%s: tokens %d and %d would both be named \"%.40s\"", path,
                            (int)r[i - 1].id, (int)r[i].id, r[i].s);
    free(r);
    return rc;
}

static int build_names(const a3_tokenizer *t, name_table *nt, const char *path, a3_err *err)
{
    nt->off = a3_malloc_array((size_t)t->n_vocab, sizeof *nt->off);
    nt->len = a3_malloc_array((size_t)t->n_vocab, sizeof *nt->len);
    if (!nt->off || !nt->len) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        uint32_t n;
        const char *s = tok_piece(t, id, &n);
        if (id >= 3 && id < 259 && tok_parse_byte_piece(s, n) != id - 3)
            return a3_err_set(err, A3_EUNSUPPORTED, "%s: token %d is \"%.20s\", not the byte-fallback <0x%02X>",
                              path, (int)id, s, id - 3);
        if (!valid_utf8(s, n))
            return a3_err_set(err, A3_EUNSUPPORTED, "%s: token %d is not valid UTF-8 text", path, (int)id);
        nt->off[id] = nt->arena.n;
        if (put_name(t, id, &nt->arena) || tok_buf_put(&nt->arena, "", 1))
            return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
        nt->len[id] = (uint32_t)(nt->arena.n - nt->off[id] - 1);
    }
    return check_unique(nt, t->n_vocab, path, err);
}

/* ---- merges ------------------------------------------------------------ */

static int cmp_local(const void *x, const void *y)
{
    const merge_entry *a = x, *b = y;
    if (a->a != b->a) return a->a < b->a ? -1 : 1;
    return a->b < b->b ? -1 : a->b > b->b;
}

static int cmp_global(const void *x, const void *y)
{
    const merge_entry *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq; /* makes qsort stable */
}

static int name_is_concat(const name_table *nt, int32_t id, int32_t a, int32_t b)
{
    const char *s = nt->arena.p + nt->off[id];
    return nt->len[id] == nt->len[a] + nt->len[b] && memcmp(s, nt->arena.p + nt->off[a], nt->len[a]) == 0 &&
           memcmp(s + nt->len[a], nt->arena.p + nt->off[b], nt->len[b]) == 0;
}

/* Splits of token id into two tokens, appended to m[*n] sorted by ids. */
static void token_merges(const a3_tokenizer *t, const name_table *nt, int32_t id, merge_entry *m,
                         size_t *n)
{
    uint32_t len;
    const char *s = tok_piece(t, id, &len);
    size_t first = *n;
    for (uint32_t k = 1; k < len; k++) {
        int32_t a = tok_lookup(t, s, k), b = tok_lookup(t, s + k, len - k);
        /* BOS/EOS renamed: their llama2.c spelling is not their HF name. */
        if (a >= 0 && b >= 0 && name_is_concat(nt, id, a, b))
            m[(*n)++] = (merge_entry){t->score[id], 0, a, b};
    }
    qsort(m + first, *n - first, sizeof *m, cmp_local);
}

static int build_merges(const a3_tokenizer *t, const name_table *nt, merge_entry **out, size_t *n_out)
{
    size_t cap = 1;
    for (int32_t id = 0; id < t->n_vocab; id++) cap += t->len[id];
    merge_entry *m = a3_malloc_array(cap, sizeof *m);
    if (!m) return -1;
    size_t n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->canon[id] == id && t->score[id] > -1e10f) token_merges(t, nt, id, m, &n);
    for (size_t i = 0; i < n; i++) m[i].seq = i;
    qsort(m, n, sizeof *m, cmp_global);
    *out = m;
    *n_out = n;
    return 0;
}

/* ---- JSON text --------------------------------------------------------- */

static int json_str(tok_buf *b, const char *s, size_t n)
{
    if (tok_buf_put(b, "\"", 1)) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        int rc;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            rc = tok_buf_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            rc = tok_buf_put(b, esc, 6);
        } else {
            rc = tok_buf_put(b, s + i, 1);
        }
        if (rc) return -1;
    }
    return tok_buf_put(b, "\"", 1);
}

static int json_raw(tok_buf *b, const char *s) { return tok_buf_put(b, s, strlen(s)); }

static int json_name(tok_buf *b, const name_table *nt, int32_t id)
{
    return json_str(b, nt->arena.p + nt->off[id], nt->len[id]);
}

static int write_added(tok_buf *b, const a3_tokenizer *t, const name_table *nt)
{
    int32_t ids[3] = {t->unk, t->bos, t->eos};
    int rc = json_raw(b, "\"added_tokens\":[");
    for (int i = 0; i < 3 && !rc; i++) {
        char head[32];
        snprintf(head, sizeof head, "%s{\"id\":%d,\"content\":", i ? "," : "", (int)ids[i]);
        rc = json_raw(b, head) || json_name(b, nt, ids[i]) ||
             json_raw(b, ",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                         "\"normalized\":false,\"special\":true}");
    }
    return rc || json_raw(b, "],");
}

static int write_pipeline(tok_buf *b, const a3_tokenizer *t, const name_table *nt)
{
    char ids[64];
    snprintf(ids, sizeof ids, "\",\"ids\":[%d],\"tokens\":[", (int)t->bos);
    return json_raw(b, "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":["
                       "{\"type\":\"Prepend\",\"prepend\":\"\xE2\x96\x81\"},"
                       "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xE2\x96\x81\"}]},"
                       "\"pre_tokenizer\":null,"
                       "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
                       "{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
                       "\"pair\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
                       "{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":1}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],"
                       "\"special_tokens\":{\"<s>\":{\"id\":\"<s>") ||
           json_raw(b, ids) || json_name(b, nt, t->bos) ||
           json_raw(b, "]}}},"
                       "\"decoder\":{\"type\":\"Sequence\",\"decoders\":["
                       "{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xE2\x96\x81\"},\"content\":\" \"},"
                       "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
                       "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},");
}

static int write_model(tok_buf *b, const a3_tokenizer *t, const name_table *nt, const merge_entry *m,
                       size_t n_merges)
{
    int rc = json_raw(b, "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":") ||
             json_name(b, nt, t->unk) ||
             json_raw(b, ",\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,"
                         "\"fuse_unk\":true,\"byte_fallback\":true,\"ignore_merges\":false,\"vocab\":{");
    for (int32_t id = 0; id < t->n_vocab && !rc; id++) {
        char num[24];
        snprintf(num, sizeof num, ":%d", (int)id);
        rc = (id && json_raw(b, ",")) || json_name(b, nt, id) || json_raw(b, num);
    }
    rc = rc || json_raw(b, "},\"merges\":[");
    /* "a b" strings, readable by every tokenizers version; unambiguous since
     * names hold no ' ' (spelled "▁"). */
    tok_buf pair = {0};
    for (size_t i = 0; i < n_merges && !rc; i++) {
        pair.n = 0;
        rc = (i && json_raw(b, ",")) || tok_buf_put(&pair, nt->arena.p + nt->off[m[i].a], nt->len[m[i].a]) ||
             tok_buf_put(&pair, " ", 1) || tok_buf_put(&pair, nt->arena.p + nt->off[m[i].b], nt->len[m[i].b]) ||
             json_str(b, pair.p, pair.n);
    }
    free(pair.p);
    return rc || json_raw(b, "]}}\n");
}

int a3_tok_save_hf(const a3_tokenizer *t, const char *path, a3_err *err)
{
    if (t->kind != TOK_KIND_LLAMA2C)
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: only llama2.c tokenizers can be written as tokenizer.json",
                          path);
    name_table nt = {{0}, NULL, NULL};
    merge_entry *m = NULL;
    size_t n_merges = 0;
    tok_buf out = {0};
    int rc = build_names(t, &nt, path, err);
    if (rc == A3_OK && build_merges(t, &nt, &m, &n_merges))
        rc = a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    if (rc == A3_OK && (json_raw(&out, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,") ||
                        write_added(&out, t, &nt) || write_pipeline(&out, t, &nt) ||
                        write_model(&out, t, &nt, m, n_merges)))
        rc = a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    if (rc == A3_OK) rc = a3_write_file_atomic(path, out.p, out.n, err);
    free(out.p);
    free(m);
    free(nt.arena.p);
    free(nt.off);
    free(nt.len);
    return rc;
}
