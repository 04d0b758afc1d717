/* tokenizer_hfload: reading HF tokenizer.json (model type BPE) into the
 * tables tokenizer_hf.c encodes with, and a3_tok_load_dir (the loader
 * layer; see tokenizer_core.h). Every field is checked; anything the
 * encoder would not reproduce exactly (other model types, normalizers,
 * pre-tokenizers, post-processors or decoders it does not know, dropout,
 * subword prefixes) is refused with "<file>: <field>: <what>". */
#include "tokenizer_model.h"
#include "a3/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define MAX_DEPTH 4 /* nesting of Sequence steps */

static const char sp_space[] = "\xE2\x96\x81"; /* U+2581 "▁" */

/* ---- JSON helpers ------------------------------------------------------ */

static const cJSON *jget(const cJSON *o, const char *key)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = jget(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int dflt)
{
    const cJSON *v = jget(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* A JSON number that is an integer in [0, limit). */
static int jid(const cJSON *v, int64_t limit, int32_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < (double)limit) || d != floor(d)) return -1;
    *out = (int32_t)d;
    return 0;
}

static const char *jtype(const cJSON *o)
{
    const char *s = jstr(o, "type");
    return s ? s : "(none)";
}

/* Absent and JSON null both mean "no such step". */
static int jnull(const cJSON *o) { return !o || cJSON_IsNull(o); }

/* A {"String": s} or {"Regex": r} pattern. */
static const char *jpattern(const cJSON *o, int *is_regex)
{
    const cJSON *p = jget(o, "pattern");
    const char *s = jstr(p, "String");
    *is_regex = 0;
    if (s) return s;
    *is_regex = 1;
    return jstr(p, "Regex");
}

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---- model: vocab and merges ------------------------------------------ */

typedef struct {
    const char *path;
    a3_err *err;
} hf_ctx;

#define FAIL(c, code, ...) a3_err_set((c)->err, code, __VA_ARGS__)
#define OOM(c) a3_err_set((c)->err, A3_ENOMEM, "%s: out of memory", (c)->path)

static int check_model(const hf_ctx *c, const cJSON *model)
{
    if (!cJSON_IsObject(model)) return FAIL(c, A3_EFORMAT, "%s: model: missing or not an object", c->path);
    const char *type = jstr(model, "type");
    if (type && strcmp(type, "BPE") != 0)
        return FAIL(c, A3_EUNSUPPORTED, "%s: model.type: %s is not supported (only BPE)", c->path, type);
    if (!type && (jget(model, "merges") == NULL || jget(model, "vocab") == NULL))
        return FAIL(c, A3_EUNSUPPORTED, "%s: model.type: missing and not a BPE model", c->path);
    const cJSON *dropout = jget(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return FAIL(c, A3_EUNSUPPORTED, "%s: model.dropout: BPE dropout is not supported", c->path);
    const char *keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *s = jstr(model, keys[i]);
        if (s && *s)
            return FAIL(c, A3_EUNSUPPORTED, "%s: model.%s: \"%s\" is not supported", c->path, keys[i], s);
    }
    return A3_OK;
}

/* Highest id used by model.vocab and added_tokens, validating both. */
static int scan_ids(const hf_ctx *c, const cJSON *vocab, const cJSON *added, int32_t *max_id)
{
    if (!cJSON_IsObject(vocab)) return FAIL(c, A3_EFORMAT, "%s: model.vocab: missing or not an object", c->path);
    if (!jnull(added) && !cJSON_IsArray(added))
        return FAIL(c, A3_EFORMAT, "%s: added_tokens: not an array", c->path);
    *max_id = -1;
    const cJSON *e;
    int32_t id;
    cJSON_ArrayForEach(e, vocab) {
        if (jid(e, TOK_MAX_VOCAB, &id))
            return FAIL(c, A3_EFORMAT, "%s: model.vocab[\"%.40s\"]: id is not an integer in 0..%d",
                        c->path, e->string, TOK_MAX_VOCAB - 1);
        if (id > *max_id) *max_id = id;
    }
    size_t i = 0;
    cJSON_ArrayForEach(e, added) {
        if (jid(jget(e, "id"), TOK_MAX_VOCAB, &id) || !jstr(e, "content"))
            return FAIL(c, A3_EFORMAT, "%s: added_tokens[%zu]: needs an integer id in 0..%d and a content string",
                        c->path, i, TOK_MAX_VOCAB - 1);
        if (id > *max_id) *max_id = id;
        i++;
    }
    if (*max_id < 0) return FAIL(c, A3_EFORMAT, "%s: model.vocab: empty", c->path);
    return A3_OK;
}

/* Put each id's string (vocab string, else added content) in the arena. */
static int fill_pieces(a3_tokenizer *t, const hf_ctx *c, const cJSON *vocab, const cJSON *added)
{
    size_t n = (size_t)t->n_vocab;
    const char **src = a3_calloc(n, sizeof *src);
    t->in_model = a3_calloc(n, 1);
    t->is_added = a3_calloc(n, 1);
    t->off = a3_malloc_array(n, sizeof *t->off);
    t->len = a3_malloc_array(n, sizeof *t->len);
    tok_buf arena = {0};
    int rc = !src || !t->in_model || !t->is_added || !t->off || !t->len ? OOM(c) : A3_OK;
    const cJSON *e;
    int32_t id = 0;
    cJSON_ArrayForEach(e, vocab) {
        if (rc) break;
        jid(e, TOK_MAX_VOCAB, &id);
        if (t->in_model[id]) rc = FAIL(c, A3_EFORMAT, "%s: model.vocab: id %d used twice", c->path, (int)id);
        t->in_model[id] = 1;
        src[id] = e->string;
    }
    cJSON_ArrayForEach(e, added) {
        if (rc) break;
        jid(jget(e, "id"), TOK_MAX_VOCAB, &id);
        if (t->is_added[id]) rc = FAIL(c, A3_EFORMAT, "%s: added_tokens: id %d used twice", c->path, (int)id);
        t->is_added[id] = 1;
        if (!src[id]) src[id] = jstr(e, "content");
    }
    for (size_t i = 0; rc == A3_OK && i < n; i++) {
        const char *s = src[i] ? src[i] : "";
        t->off[i] = arena.n;
        t->len[i] = (uint32_t)strlen(s);
        if (tok_buf_put(&arena, s, t->len[i])) rc = OOM(c);
    }
    if (rc == A3_OK && !arena.p && tok_buf_put(&arena, "", 0)) rc = OOM(c);
    free(src);
    t->arena = arena.p;
    return rc;
}

static int load_vocab(a3_tokenizer *t, const hf_ctx *c, const cJSON *model, const cJSON *added)
{
    const cJSON *vocab = jget(model, "vocab");
    int32_t max_id = -1, dup = 0;
    int rc = scan_ids(c, vocab, added, &max_id);
    if (rc) return rc;
    t->n_vocab = max_id + 1;
    rc = fill_pieces(t, c, vocab, added);
    if (rc) return rc;
    rc = tok_strmap_build(t, 0, &dup);
    if (rc == A3_ENOMEM) return OOM(c);
    if (rc) return FAIL(c, A3_EFORMAT, "%s: model.vocab: token \"%.40s\" appears twice", c->path,
                        t->arena + t->off[dup]);
    return A3_OK;
}

static int load_merges(a3_tokenizer *t, const hf_ctx *c, const cJSON *model)
{
    const cJSON *merges = jget(model, "merges"), *m;
    if (jnull(merges)) return A3_OK;
    if (!cJSON_IsArray(merges)) return FAIL(c, A3_EFORMAT, "%s: model.merges: not an array", c->path);
    if (tok_pairmap_init(&t->pairs, (size_t)cJSON_GetArraySize(merges) + 1)) return OOM(c);
    tok_buf cat = {0};
    uint32_t rank = 0;
    int rc = A3_OK;
    cJSON_ArrayForEach(m, merges) {
        const char *a, *b;
        size_t al, bl;
        if (tok_merge_parts(m, &a, &al, &b, &bl)) {
            rc = FAIL(c, A3_EFORMAT, "%s: model.merges[%u]: not \"a b\" or [\"a\", \"b\"]", c->path, rank);
            break;
        }
        cat.n = 0;
        if (tok_buf_put(&cat, a, al) || tok_buf_put(&cat, b, bl)) {
            rc = OOM(c);
            break;
        }
        int32_t ia = tok_lookup(t, a, al), ib = tok_lookup(t, b, bl), ic = tok_lookup(t, cat.p, cat.n);
        if (ia < 0 || ib < 0 || ic < 0) {
            rc = FAIL(c, A3_EFORMAT, "%s: model.merges[%u]: \"%.40s\" not in model.vocab", c->path, rank,
                      ia < 0 ? a : ib < 0 ? b : cat.p);
            break;
        }
        tok_pairmap_put(&t->pairs, ia, ib, rank++, ic);
    }
    free(cat.p);
    return rc;
}

/* ---- normalizer -------------------------------------------------------- */

static int norm_add(a3_tokenizer *t, int op, const char *a, const char *b)
{
    tok_norm *p = realloc(t->norm, (t->n_norm + 1) * sizeof *p);
    if (!p) return -1;
    t->norm = p;
    tok_norm *n = &t->norm[t->n_norm];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->a_len = a ? strlen(a) : 0;
    n->b_len = b ? strlen(b) : 0;
    n->a = dup_bytes(a ? a : "", n->a_len);
    n->b = dup_bytes(b ? b : "", n->b_len);
    t->n_norm++; /* counted even on failure so a3_tok_free frees it */
    return n->a && n->b ? 0 : -1;
}

static int load_normalizer(a3_tokenizer *t, const hf_ctx *c, const cJSON *o, int depth)
{
    if (jnull(o)) return A3_OK;
    const char *type = jtype(o);
    if (strcmp(type, "Sequence") == 0 && depth < MAX_DEPTH) {
        const cJSON *e;
        cJSON_ArrayForEach(e, jget(o, "normalizers")) {
            int rc = load_normalizer(t, c, e, depth + 1);
            if (rc) return rc;
        }
        return A3_OK;
    }
    if (strcmp(type, "Prepend") == 0 && jstr(o, "prepend"))
        return norm_add(t, TOK_NORM_PREPEND, jstr(o, "prepend"), NULL) ? OOM(c) : A3_OK;
    const char *forms[] = {"NFC", "NFD", "NFKC", "NFKD"};
    const int form_ops[] = {TOK_NORM_NFC, TOK_NORM_NFD, TOK_NORM_NFKC, TOK_NORM_NFKD};
    for (int i = 0; i < 4; i++)
        if (strcmp(type, forms[i]) == 0) return norm_add(t, form_ops[i], NULL, NULL) ? OOM(c) : A3_OK;
    if (strcmp(type, "Replace") == 0) {
        int is_regex;
        const char *pat = jpattern(o, &is_regex), *content = jstr(o, "content");
        if (is_regex || !pat || !*pat || !content)
            return FAIL(c, A3_EUNSUPPORTED, "%s: normalizer.Replace: only a non-empty String pattern is supported",
                        c->path);
        return norm_add(t, TOK_NORM_REPLACE, pat, content) ? OOM(c) : A3_OK;
    }
    return FAIL(c, A3_EUNSUPPORTED,
                "%s: normalizer.type: %s is not supported (only Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD)", c->path, type);
}

/* ---- added tokens ------------------------------------------------------ */

typedef struct {
    unsigned char first;
    size_t len;
    uint32_t idx;
} match_key;

static int cmp_match_key(const void *x, const void *y)
{
    const match_key *a = x, *b = y;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1; /* longest first */
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static int build_matcher(a3_tokenizer *t, tok_matcher *m, int normalized)
{
    size_t n = 0;
    match_key *keys = a3_malloc_array(t->n_added + 1, sizeof *keys);
    if (!keys) return -1;
    for (size_t i = 0; i < t->n_added; i++) {
        const tok_added *a = &t->added[i];
        if (a->normalized != normalized || a->pat_len == 0) continue;
        keys[n++] = (match_key){(unsigned char)a->pat[0], a->pat_len, (uint32_t)i};
    }
    qsort(keys, n, sizeof *keys, cmp_match_key);
    m->order = a3_malloc_array(n + 1, sizeof *m->order);
    if (!m->order) {
        free(keys);
        return -1;
    }
    size_t k = 0;
    for (int c = 0; c <= 256; c++) {
        while (k < n && keys[k].first < c) k++;
        m->start[c] = (uint32_t)k;
    }
    for (size_t i = 0; i < n; i++) m->order[i] = keys[i].idx;
    free(keys);
    return 0;
}

/* Normalized added tokens are searched in normalized text, so their
 * pattern is their content normalized (HF's refresh_added_tokens). */
static int added_pattern(const a3_tokenizer *t, tok_added *a)
{
    if (!a->normalized || t->n_norm == 0) {
        a->pat = dup_bytes(a->content, a->content_len);
        a->pat_len = a->content_len;
        return a->pat ? 0 : -1;
    }
    tok_buf out = {0}, tmp = {0};
    int rc = tok_hf_normalize(t, a->content, a->content_len, &out, &tmp);
    free(tmp.p);
    a->pat = out.p ? out.p : dup_bytes("", 0);
    a->pat_len = out.n;
    return rc || !a->pat ? -1 : 0;
}

static int load_added(a3_tokenizer *t, const hf_ctx *c, const cJSON *added)
{
    size_t n = (size_t)cJSON_GetArraySize(added);
    t->added = a3_calloc(n + 1, sizeof *t->added);
    if (!t->added) return OOM(c);
    const cJSON *e;
    cJSON_ArrayForEach(e, added) { /* ids and contents checked by scan_ids */
        tok_added *a = &t->added[t->n_added++];
        int special = jbool(e, "special", 0);
        jid(jget(e, "id"), TOK_MAX_VOCAB, &a->id);
        a->content_len = strlen(jstr(e, "content"));
        a->content = dup_bytes(jstr(e, "content"), a->content_len);
        a->lstrip = (unsigned char)jbool(e, "lstrip", 0);
        a->rstrip = (unsigned char)jbool(e, "rstrip", 0);
        a->single_word = (unsigned char)jbool(e, "single_word", 0);
        a->normalized = (unsigned char)jbool(e, "normalized", !special);
        if (!a->content || added_pattern(t, a)) return OOM(c);
    }
    if (build_matcher(t, &t->raw_m, 0) || build_matcher(t, &t->norm_m, 1)) return OOM(c);
    return A3_OK;
}

/* ---- pre-tokenizer ----------------------------------------------------- */

/* HF's regexes run on Oniguruma, whose Unicode \s also matches U+0085 (NEL);
 * PCRE2's UCP \s does not, so spell it out. */
static int rewrite_space(const char *p, tok_buf *out)
{
    int in_class = 0;
    for (size_t i = 0; p[i]; i++) {
        const char *rep = NULL;
        if (p[i] == '\\' && p[i + 1]) {
            if (p[i + 1] == 's') rep = in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
            if (p[i + 1] == 'S' && !in_class) rep = "[^\\s\\x{85}]";
            if (rep ? tok_buf_put(out, rep, strlen(rep)) : tok_buf_put(out, p + i, 2)) return -1;
            i++;
            continue;
        }
        if (p[i] == '[' && !in_class) {
            in_class = 1;
            size_t k = i + 1 + (p[i + 1] == '^');
            if (tok_buf_put(out, p + i, k - i)) return -1;
            if (p[k] == ']' && tok_buf_put(out, "]", 1)) return -1; /* literal ']' first */
            i = p[k] == ']' ? k : k - 1;
            continue;
        }
        if (p[i] == ']' && in_class) in_class = 0;
        if (tok_buf_put(out, p + i, 1)) return -1;
    }
    return tok_buf_put(out, "", 0);
}

static int compile_re(const hf_ctx *c, const char *field, const char *pat, int literal, pcre2_code **out)
{
    tok_buf b = {0};
    if (literal ? tok_buf_put(&b, pat, strlen(pat)) : rewrite_space(pat, &b)) {
        free(b.p);
        return OOM(c);
    }
    int ec;
    PCRE2_SIZE eo;
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    *out = pcre2_compile((PCRE2_SPTR)b.p, b.n, opts, &ec, &eo, NULL);
    free(b.p);
    if (!*out) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return FAIL(c, A3_EUNSUPPORTED, "%s: %s: regex \"%.60s\" not accepted by PCRE2 at offset %zu: %s",
                    c->path, field, pat, (size_t)eo, (const char *)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* optional speed-up */
    return A3_OK;
}

static tok_pre *pre_add(a3_tokenizer *t, int op)
{
    if (t->n_pre >= TOK_MAX_LEVELS) return NULL;
    tok_pre *p = realloc(t->pre, (t->n_pre + 1) * sizeof *p);
    if (!p) return NULL;
    t->pre = p;
    p = &t->pre[t->n_pre++];
    memset(p, 0, sizeof *p);
    p->op = op;
    return p;
}

static int split_behavior(const char *s)
{
    const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < TOK_SPLIT_COUNT; i++)
        if (s && strcmp(s, names[i]) == 0) return i;
    return -1;
}

static int load_split(a3_tokenizer *t, const hf_ctx *c, const cJSON *o)
{
    int is_regex;
    const char *pat = jpattern(o, &is_regex);
    int behavior = split_behavior(jstr(o, "behavior"));
    if (!pat || behavior < 0)
        return FAIL(c, A3_EFORMAT, "%s: pre_tokenizer.Split: needs a pattern and a known behavior", c->path);
    tok_pre *p = pre_add(t, TOK_PRE_SPLIT);
    if (!p) return FAIL(c, A3_EUNSUPPORTED, "%s: pre_tokenizer: too many steps", c->path);
    p->behavior = behavior;
    p->invert = jbool(o, "invert", 0);
    return compile_re(c, "pre_tokenizer.Split.pattern", pat, !is_regex, &p->re);
}

static int load_metaspace(a3_tokenizer *t, const hf_ctx *c, const cJSON *o)
{
    tok_pre *p = pre_add(t, TOK_PRE_METASPACE);
    if (!p) return FAIL(c, A3_EUNSUPPORTED, "%s: pre_tokenizer: too many steps", c->path);
    const char *rep = jstr(o, "replacement");
    if (!rep) rep = sp_space;
    size_t n = strlen(rep);
    if (n == 0 || n >= sizeof p->repl || tok_utf8_len((const unsigned char *)rep, n) != n)
        return FAIL(c, A3_EFORMAT, "%s: pre_tokenizer.Metaspace.replacement: not one character", c->path);
    memcpy(p->repl, rep, n);
    p->repl_len = n;
    const char *scheme = jstr(o, "prepend_scheme");
    p->prepend = jbool(o, "add_prefix_space", 1) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
    if (scheme && strcmp(scheme, "first") == 0) p->prepend = TOK_PREPEND_FIRST;
    else if (scheme && strcmp(scheme, "never") == 0) p->prepend = TOK_PREPEND_NEVER;
    else if (scheme && strcmp(scheme, "always") == 0) p->prepend = TOK_PREPEND_ALWAYS;
    else if (scheme) return FAIL(c, A3_EFORMAT, "%s: pre_tokenizer.Metaspace.prepend_scheme: %s unknown", c->path, scheme);
    p->split = jbool(o, "split", 1);
    return A3_OK;
}

static int load_pre(a3_tokenizer *t, const hf_ctx *c, const cJSON *o, int depth)
{
    if (jnull(o)) return A3_OK;
    const char *type = jtype(o);
    if (strcmp(type, "Sequence") == 0 && depth < MAX_DEPTH) {
        const cJSON *e;
        cJSON_ArrayForEach(e, jget(o, "pretokenizers")) {
            int rc = load_pre(t, c, e, depth + 1);
            if (rc) return rc;
        }
        return A3_OK;
    }
    if (t->byte_level) /* the words after ByteLevel are already byte-mapped */
        return FAIL(c, A3_EUNSUPPORTED, "%s: pre_tokenizer: %s after ByteLevel is not supported", c->path, type);
    if (strcmp(type, "Split") == 0) return load_split(t, c, o);
    if (strcmp(type, "Metaspace") == 0) return load_metaspace(t, c, o);
    if (strcmp(type, "Digits") == 0) { /* Rust's char::is_numeric is \p{N} */
        tok_pre *p = pre_add(t, TOK_PRE_SPLIT);
        if (!p) return FAIL(c, A3_EUNSUPPORTED, "%s: pre_tokenizer: too many steps", c->path);
        p->behavior = TOK_SPLIT_ISOLATED;
        return compile_re(c, "pre_tokenizer.Digits", jbool(o, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", 0,
                          &p->re);
    }
    if (strcmp(type, "ByteLevel") == 0) {
        tok_pre *p = pre_add(t, TOK_PRE_BYTELEVEL);
        if (!p) return FAIL(c, A3_EUNSUPPORTED, "%s: pre_tokenizer: too many steps", c->path);
        t->byte_level = 1;
        p->add_prefix_space = jbool(o, "add_prefix_space", 1);
        if (!jbool(o, "use_regex", 1)) return A3_OK;
        return compile_re(c, "pre_tokenizer.ByteLevel", tok_gpt2_pattern, 0, &p->re);
    }
    return FAIL(c, A3_EUNSUPPORTED,
                "%s: pre_tokenizer.type: %s is not supported (only Sequence, Split, Digits, ByteLevel, Metaspace)",
                c->path, type);
}

/* ---- decoder ----------------------------------------------------------- */

static int load_decoder(a3_tokenizer *t, const hf_ctx *c, const cJSON *o, int depth)
{
    if (jnull(o)) return A3_OK;
    const char *type = jtype(o);
    if (strcmp(type, "Sequence") == 0 && depth < MAX_DEPTH) {
        const cJSON *e;
        cJSON_ArrayForEach(e, jget(o, "decoders")) {
            int rc = load_decoder(t, c, e, depth + 1);
            if (rc) return rc;
        }
        return A3_OK;
    }
    int is_regex;
    const char *pat = jpattern(o, &is_regex), *content = jstr(o, "content");
    if (strcmp(type, "Replace") == 0 && !is_regex && pat && content && strcmp(pat, sp_space) == 0 &&
        strcmp(content, " ") == 0)
        t->dec_space = 1;
    else if (strcmp(type, "ByteFallback") == 0) t->dec_byte_fallback = 1;
    else if (strcmp(type, "Fuse") == 0) return A3_OK; /* per-token decode concatenates anyway */
    else if (strcmp(type, "ByteLevel") == 0) t->dec_byte_level = 1;
    else if (strcmp(type, "Strip") == 0 && content && strcmp(content, " ") == 0)
        t->strip_first_space = cJSON_IsNumber(jget(o, "start")) && jget(o, "start")->valuedouble >= 1;
    else if (strcmp(type, "Metaspace") == 0) {
        const char *scheme = jstr(o, "prepend_scheme");
        t->dec_space = 1;
        t->strip_first_space = scheme ? strcmp(scheme, "never") != 0 : jbool(o, "add_prefix_space", 1);
    } else
        return FAIL(c, A3_EUNSUPPORTED,
                    "%s: decoder.type: %s is not supported (only Sequence, Replace \"\xE2\x96\x81\"->\" \", ByteFallback, "
                    "Fuse, Strip, ByteLevel, Metaspace)",
                    c->path, type);
    return A3_OK;
}

/* Per-token text: added tokens are their content; byte-level pieces map
 * characters back to bytes; SentencePiece pieces turn "▁" into ' ' and
 * <0xNN> into the byte. */
static int hf_decode_piece(const a3_tokenizer *t, int32_t id, tok_buf *out)
{
    if (t->is_added[id])
        for (size_t i = 0; i < t->n_added; i++)
            if (t->added[i].id == id) return tok_buf_put(out, t->added[i].content, t->added[i].content_len);
    uint32_t n;
    const char *s = tok_piece(t, id, &n);
    if (t->dec_byte_level) return tok_bytelevel_decode(t, s, n, out);
    int byte = t->dec_byte_fallback ? tok_parse_byte_piece(s, n) : -1;
    if (byte >= 0) {
        char b = (char)byte;
        return tok_buf_put(out, &b, 1);
    }
    tok_norm rep = {TOK_NORM_REPLACE, (char *)sp_space, " ", 3, 1};
    return t->dec_space ? tok_hf_replace(s, n, &rep, out) : tok_buf_put(out, s, n);
}

/* ---- post-processor: special tokens ----------------------------------- */

/* Put ids around what earlier steps produced: a later post-processor wraps
 * the output of an earlier one (HF's Sequence). */
static int wrap_ids(a3_tokenizer *t, const int32_t *pre, size_t n_pre, const int32_t *post, size_t n_post)
{
    int32_t *b = a3_malloc_array(t->n_before + n_pre + 1, sizeof *b);
    int32_t *a = a3_malloc_array(t->n_after + n_post + 1, sizeof *a);
    if (!a || !b) {
        free(a);
        free(b);
        return -1;
    }
    if (n_pre) memcpy(b, pre, n_pre * sizeof *b);
    if (t->n_before) memcpy(b + n_pre, t->before, t->n_before * sizeof *b);
    if (t->n_after) memcpy(a, t->after, t->n_after * sizeof *a);
    if (n_post) memcpy(a + t->n_after, post, n_post * sizeof *a);
    free(t->before);
    free(t->after);
    t->before = b;
    t->after = a;
    t->n_before += n_pre;
    t->n_after += n_post;
    return 0;
}

/* The ids of template special token `name` (special_tokens[name].ids),
 * appended to *v; HF refuses a template naming an undeclared token. */
static int template_ids(a3_tokenizer *t, const hf_ctx *c, const cJSON *post, const char *name, int32_t **v,
                        size_t *n, size_t *cap)
{
    const cJSON *ids = jget(jget(jget(post, "special_tokens"), name), "ids"), *e;
    if (!cJSON_IsArray(ids))
        return FAIL(c, A3_EFORMAT, "%s: post_processor.special_tokens: \"%.40s\" used by the template but not declared",
                    c->path, name);
    cJSON_ArrayForEach(e, ids) {
        int32_t id;
        if (jid(e, t->n_vocab, &id))
            return FAIL(c, A3_EFORMAT, "%s: post_processor.special_tokens[\"%.40s\"].ids: not ids in 0..%d", c->path,
                        name, (int)t->n_vocab - 1);
        if (tok_grow((void **)v, cap, *n + 1, sizeof **v)) return OOM(c);
        (*v)[(*n)++] = id;
    }
    return A3_OK;
}

/* TemplateProcessing's single template: special tokens, then $A once, then
 * special tokens. */
static int load_template(a3_tokenizer *t, const hf_ctx *c, const cJSON *o)
{
    const cJSON *single = jget(o, "single"), *e;
    if (!cJSON_IsArray(single))
        return FAIL(c, A3_EFORMAT, "%s: post_processor.single: missing or not an array", c->path);
    int32_t *v[2] = {NULL, NULL};
    size_t n[2] = {0, 0}, cap[2] = {0, 0};
    int seen = 0, rc = A3_OK;
    cJSON_ArrayForEach(e, single) {
        const char *name = jstr(jget(e, "SpecialToken"), "id"), *seq = jstr(jget(e, "Sequence"), "id");
        if (seq && strcmp(seq, "A") == 0 && !seen) seen = 1;
        else if (name) rc = template_ids(t, c, o, name, &v[seen], &n[seen], &cap[seen]);
        else
            rc = FAIL(c, A3_EUNSUPPORTED, "%s: post_processor.single: only special tokens around one $A are supported",
                      c->path);
        if (rc) break;
    }
    if (rc == A3_OK && !seen) rc = FAIL(c, A3_EUNSUPPORTED, "%s: post_processor.single: no $A", c->path);
    if (rc == A3_OK && wrap_ids(t, v[0], n[0], v[1], n[1])) rc = OOM(c);
    free(v[0]);
    free(v[1]);
    return rc;
}

/* RobertaProcessing and BertProcessing: cls $A sep, each a [name, id]. */
static int load_cls_sep(a3_tokenizer *t, const hf_ctx *c, const cJSON *o, const char *type)
{
    int32_t cls, sep;
    if (jid(cJSON_GetArrayItem(jget(o, "cls"), 1), t->n_vocab, &cls) ||
        jid(cJSON_GetArrayItem(jget(o, "sep"), 1), t->n_vocab, &sep))
        return FAIL(c, A3_EFORMAT, "%s: post_processor.%s: cls and sep must be [name, id] with an id in 0..%d",
                    c->path, type, (int)t->n_vocab - 1);
    return wrap_ids(t, &cls, 1, &sep, 1) ? OOM(c) : A3_OK;
}

/* The special tokens HF's post-processor adds around one sequence
 * (add_special_tokens=true). ByteLevel only adjusts offsets, not ids. */
static int load_post(a3_tokenizer *t, const hf_ctx *c, const cJSON *o, int depth)
{
    if (jnull(o)) return A3_OK;
    const char *type = jtype(o);
    if (strcmp(type, "Sequence") == 0 && depth < MAX_DEPTH) {
        const cJSON *e;
        cJSON_ArrayForEach(e, jget(o, "processors")) {
            int rc = load_post(t, c, e, depth + 1);
            if (rc) return rc;
        }
        return A3_OK;
    }
    if (strcmp(type, "TemplateProcessing") == 0) return load_template(t, c, o);
    if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0)
        return load_cls_sep(t, c, o, type);
    if (strcmp(type, "ByteLevel") == 0) return A3_OK;
    return FAIL(c, A3_EUNSUPPORTED,
                "%s: post_processor.type: %s is not supported (only Sequence, TemplateProcessing, ByteLevel, "
                "RobertaProcessing, BertProcessing)",
                c->path, type);
}

/* BOS is what the post-processor puts first (so a3_tok_bos and what encode
 * adds agree); EOS what it puts last, else a special added token with one of
 * the usual names. Plain vocabulary entries never count: Qwen's vocabulary
 * has an ordinary "<s>". */
static int load_specials(a3_tokenizer *t, const hf_ctx *c, const cJSON *root)
{
    int rc = load_post(t, c, jget(root, "post_processor"), 0);
    if (rc) return rc;
    t->bos = t->n_before ? t->before[0] : -1;
    t->eos = t->n_after ? t->after[t->n_after - 1] : -1;
    const char *eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>"};
    for (size_t i = 0; t->eos < 0 && i < 3; i++) t->eos = tok_added_id(t, eos_names[i]);
    const char *unk = jstr(jget(root, "model"), "unk_token");
    t->unk = unk ? tok_lookup(t, unk, strlen(unk)) : -1;
    return A3_OK;
}

/* ---- whole file -------------------------------------------------------- */

static void byte_tables(a3_tokenizer *t)
{
    tok_bytelevel_table(t);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b); /* HF's format!("<{:#04X}>") */
        t->byte_id[b] = t->byte_level ? tok_lookup(t, t->bl_char[b], t->bl_len[b])
                        : t->byte_fallback ? tok_lookup(t, name, 6) : -1;
    }
}

static int hf_parse(a3_tokenizer *t, const hf_ctx *c, const cJSON *root)
{
    const cJSON *model = jget(root, "model"), *added = jget(root, "added_tokens");
    int rc = check_model(c, model);
    if (!rc) rc = load_vocab(t, c, model, added);
    if (!rc) rc = load_merges(t, c, model);
    if (!rc) rc = load_normalizer(t, c, jget(root, "normalizer"), 0);
    if (!rc) rc = load_added(t, c, added);
    if (!rc) rc = load_pre(t, c, jget(root, "pre_tokenizer"), 0);
    if (!rc) rc = load_decoder(t, c, jget(root, "decoder"), 0);
    if (rc) return rc;
    t->byte_fallback = jbool(model, "byte_fallback", 0);
    t->fuse_unk = jbool(model, "fuse_unk", 0);
    t->ignore_merges = jbool(model, "ignore_merges", 0);
    if (jnull(jget(root, "decoder"))) { /* no decoder: undo what encoding did */
        t->dec_byte_level = t->byte_level;
        t->dec_byte_fallback = t->byte_fallback;
    }
    byte_tables(t);
    rc = load_specials(t, c, root);
    if (rc) return rc;
    if (tok_build_cuts(t) || tok_build_decode(t, hf_decode_piece)) return OOM(c);
    return A3_OK;
}

int a3_tok_load_hf(const char *path, a3_tokenizer **out, a3_err *err)
{
    *out = NULL;
    struct stat st;
    char *joined = NULL;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        joined = a3_path_join(path, "tokenizer.json");
        if (!joined) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
        path = joined;
    }
    char *text = NULL;
    size_t n;
    hf_ctx c = {path, err};
    int rc = a3_read_file(path, TOK_MAX_JSON, &text, &n, err);
    cJSON *root = NULL;
    if (rc == A3_OK) rc = a3_json_parse(path, text, n, &root, err); /* strict: see a3/json.h */
    a3_tokenizer *t = tok_new(TOK_KIND_HF);
    if (rc == A3_OK && !t) rc = OOM(&c);
    if (rc == A3_OK && !cJSON_IsObject(root)) rc = FAIL(&c, A3_EFORMAT, "%s: not a JSON object", path);
    if (rc == A3_OK) rc = hf_parse(t, &c, root);
    cJSON_Delete(root);
    free(text);
    free(joined);
    if (rc) {
        a3_tok_free(t);
        return rc;
    }
    *out = t;
    return A3_OK;
}

/* ---- model directories ------------------------------------------------- */

/* Read a small JSON file; *root is NULL (and 0 returned) if it is absent. */
static int read_json(const char *path, cJSON **root, a3_err *err)
{
    *root = NULL;
    if (access(path, F_OK) != 0) return A3_OK;
    char *text;
    size_t n;
    int rc = a3_read_file(path, (size_t)64 << 20, &text, &n, err);
    if (rc) return rc;
    rc = a3_json_parse(path, text, n, root, err);
    free(text);
    if (rc) return rc;
    if (!cJSON_IsObject(*root)) {
        cJSON_Delete(*root);
        *root = NULL;
        return a3_err_set(err, A3_EFORMAT, "%s: not a JSON object", path);
    }
    return A3_OK;
}

/* tokenizer_config.json's eos_token: "</s>" or {"content": "</s>"}; an
 * explicit null means none. */
static void tokcfg_eos(const a3_tokenizer *t, const cJSON *cfg, int32_t *id, int *set)
{
    const cJSON *v = jget(cfg, "eos_token");
    const char *name = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
    if (cJSON_IsNull(v)) {
        *id = -1;
        *set = 1;
    } else if (name && tok_name_id(t, name) >= 0) {
        *id = tok_name_id(t, name);
        *set = 1;
    }
}

/* config.json's eos_token_id (an int, or a list: the first). */
static int cfg_eos(const a3_tokenizer *t, const cJSON *cfg, const char *path, int32_t *id, a3_err *err)
{
    const cJSON *v = jget(cfg, "eos_token_id");
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
    if (jnull(v)) return A3_OK;
    if (jid(v, t->n_vocab, id))
        return a3_err_set(err, A3_EFORMAT, "%s: eos_token_id: not an id in 0..%d", path, (int)t->n_vocab - 1);
    return A3_OK;
}

/* EOS (where generation stops) from the model directory: tokenizer_config.json,
 * then config.json, then what tokenizer.json implies. BOS is not taken from
 * them: whether and which tokens encoding adds is the post-processor's
 * business alone, as in HF (Llama 3's first tokenizer.json adds none although
 * tokenizer_config.json names a bos_token). */
static int apply_configs(a3_tokenizer *t, const char *dir, a3_err *err)
{
    char *p1 = a3_path_join(dir, "tokenizer_config.json"), *p2 = a3_path_join(dir, "config.json");
    cJSON *tc = NULL, *mc = NULL;
    int rc = !p1 || !p2 ? a3_err_set(err, A3_ENOMEM, "%s: out of memory", dir) : A3_OK;
    if (rc == A3_OK) rc = read_json(p1, &tc, err);
    if (rc == A3_OK) rc = read_json(p2, &mc, err);
    int32_t eos = t->eos;
    int eos_set = 0;
    if (rc == A3_OK) {
        tokcfg_eos(t, tc, &eos, &eos_set);
        if (!eos_set) rc = cfg_eos(t, mc, p2, &eos, err);
    }
    if (rc == A3_OK) t->eos = eos;
    cJSON_Delete(tc);
    cJSON_Delete(mc);
    free(p1);
    free(p2);
    return rc;
}

int a3_tok_load_dir(const char *dir, a3_tokenizer **out, a3_err *err)
{
    *out = NULL;
    char *json = a3_path_join(dir, "tokenizer.json"), *bin = a3_path_join(dir, "tokenizer.bin");
    int rc;
    if (!json || !bin) rc = a3_err_set(err, A3_ENOMEM, "%s: out of memory", dir);
    else if (access(json, F_OK) == 0) {
        rc = a3_tok_load_hf(json, out, err);
        if (rc == A3_OK) rc = apply_configs(*out, dir, err);
        if (rc) {
            a3_tok_free(*out);
            *out = NULL;
        }
    } else if (access(bin, F_OK) == 0)
        rc = a3_tok_load_llama2c(bin, 0, out, err);
    else
        rc = a3_err_set(err, A3_EIO, "%s: no tokenizer.json or tokenizer.bin", dir);
    free(json);
    free(bin);
    return rc;
}
