/* gguf_vocab: a model's tokenizer.json as llama.cpp's tokenizer.ggml.*
 * metadata (see a3_gguf_put_tokenizer in include/a3/gguf.h).
 *
 * llama.cpp re-implements the tokenizer from this metadata, so what is
 * written must make its algorithm give HF's ids:
 *  - "llama" (SentencePiece BPE): llama.cpp merges the adjacent pair whose
 *    concatenation is the vocabulary token with the highest score, the
 *    leftmost on ties; HF merges the pair of lowest merge rank. Scores
 *    -rank(first merge giving the token) make the two agree for
 *    SentencePiece-derived vocabularies (every split of a token is a merge,
 *    ranked by the token's score, which is what HF's converter and
 *    `a3 convert` write). Base characters and unreachable tokens get
 *    -1e9 (never compared: llama.cpp only scores merge results).
 *  - "gpt2" (byte-level BPE): llama.cpp applies the merges by rank, like
 *    HF, after splitting text with the regex of the pre-tokenizer named in
 *    tokenizer.ggml.pre; only regexes whose llama.cpp name is known here are
 *    accepted. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/gguf.h"
#include "a3/tokenizer.h"
#include "tokenizer_core.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* Pre-tokenizer regexes llama.cpp knows by name (its llama-vocab.cpp
 * pre-types), as they appear in tokenizer.json. */
static const struct {
    const char *name, *regex;
} KNOWN_PRE[] = {
    {"llama-bpe", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"qwen2", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

typedef struct {
    const char *path;
    cJSON *root, *model;
    int n;          /* tokens written (the model's vocabulary) */
    char **tok;     /* borrowed from the JSON, or owned placeholders */
    size_t *len;
    unsigned char *owned;
    float *score;
    int32_t *type;
} vocab;

static void vocab_free(vocab *v)
{
    for (int i = 0; v->tok && i < v->n; i++)
        if (v->owned[i]) free(v->tok[i]);
    free(v->tok), free(v->len), free(v->owned), free(v->score), free(v->type);
    cJSON_Delete(v->root);
}

static int is_type(const cJSON *o, const char *type)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsString(t) && strcmp(t->valuestring, type) == 0;
}

/* Does the (possibly Sequence) step o contain a step of type `type`? */
static const cJSON *find_step(const cJSON *o, const char *list_key, const char *type)
{
    if (!cJSON_IsObject(o)) return NULL;
    if (is_type(o, type)) return o;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, list_key), *e;
    cJSON_ArrayForEach(e, list) if (is_type(e, type)) return e;
    return NULL;
}

static int set_token(vocab *v, int id, const char *s, int type)
{
    if (id < 0) return 0;
    if (id >= v->n) return -1;
    if (v->owned[id]) free(v->tok[id]);
    v->tok[id] = (char *)s, v->len[id] = strlen(s), v->owned[id] = 0, v->type[id] = type;
    return 0;
}

static int is_byte_piece(const char *s)
{
    return strlen(s) == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>';
}

static int load_vocab(vocab *v, a3_err *err)
{
    const cJSON *vmap = cJSON_GetObjectItemCaseSensitive(v->model, "vocab"), *e;
    if (!cJSON_IsObject(vmap)) return a3_err_set(err, A3_EFORMAT, "%s: model.vocab: missing", v->path);
    int byte_fb = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v->model, "byte_fallback"));
    v->tok = calloc((size_t)v->n, sizeof *v->tok), v->len = calloc((size_t)v->n, sizeof *v->len);
    v->owned = calloc((size_t)v->n, 1), v->score = calloc((size_t)v->n, sizeof *v->score);
    v->type = calloc((size_t)v->n, sizeof *v->type);
    if (!v->tok || !v->len || !v->owned || !v->score || !v->type)
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory", v->path);
    for (int i = 0; i < v->n; i++) { /* placeholders for ids the tokenizer does not name */
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%d]", i);
        if (!(v->tok[i] = strdup(buf))) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", v->path);
        v->len[i] = strlen(buf), v->owned[i] = 1, v->type[i] = TT_UNUSED, v->score[i] = -1e9f;
    }
    cJSON_ArrayForEach(e, vmap)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble != (int)e->valuedouble)
            return a3_err_set(err, A3_EFORMAT, "%s: model.vocab: %s: bad id", v->path, e->string);
        if (set_token(v, (int)e->valuedouble, e->string, byte_fb && is_byte_piece(e->string) ? TT_BYTE : TT_NORMAL))
            return a3_err_set(err, A3_EUNSUPPORTED, "%s: model.vocab: id %d of %s is past the model's %d embeddings",
                              v->path, (int)e->valuedouble, e->string, v->n);
    }
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(v->model, "unk_token");
    const cJSON *uid = cJSON_IsString(unk) ? cJSON_GetObjectItemCaseSensitive(vmap, unk->valuestring) : NULL;
    if (cJSON_IsNumber(uid) && uid->valueint < v->n) v->type[uid->valueint] = TT_UNKNOWN;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(v->root, "added_tokens"))
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id"), *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(c))
            return a3_err_set(err, A3_EFORMAT, "%s: added_tokens: entry without id or content", v->path);
        int unk_id = cJSON_IsNumber(uid) ? uid->valueint : -1;
        int t = id->valueint == unk_id ? TT_UNKNOWN
              : cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "special")) ? TT_CONTROL : TT_USER;
        if (set_token(v, id->valueint, c->valuestring, t))
            return a3_err_set(err, A3_EUNSUPPORTED, "%s: added_tokens: id %d is past the model's %d embeddings",
                              v->path, id->valueint, v->n);
    }
    return A3_OK;
}

/* SentencePiece scores from the merge ranks (see the file comment). */
static int spm_scores(vocab *v, a3_err *err)
{
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(v->model, "merges"), *vmap = cJSON_GetObjectItemCaseSensitive(v->model, "vocab");
    unsigned char *seen = calloc((size_t)v->n, 1);
    char *buf = NULL;
    size_t cap = 0;
    int k = 0, rc = seen ? A3_OK : a3_err_set(err, A3_ENOMEM, "%s: out of memory", v->path);
    const cJSON *m;
    cJSON_ArrayForEach(m, merges)
    {
        if (rc) break;
        const char *a, *b;
        size_t na, nb;
        if (tok_merge_parts(m, &a, &na, &b, &nb)) {
            rc = a3_err_set(err, A3_EFORMAT, "%s: model.merges[%d]: not a pair", v->path, k);
            break;
        }
        if (na + nb + 1 > cap) {
            char *nbuf = realloc(buf, cap = 2 * (na + nb + 1));
            if (!nbuf) {
                rc = a3_err_set(err, A3_ENOMEM, "%s: out of memory", v->path);
                break;
            }
            buf = nbuf;
        }
        memcpy(buf, a, na), memcpy(buf + na, b, nb), buf[na + nb] = 0;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(vmap, buf);
        if (cJSON_IsNumber(id) && id->valueint >= 0 && id->valueint < v->n && !seen[id->valueint])
            seen[id->valueint] = 1, v->score[id->valueint] = -(float)k;
        k++;
    }
    free(seen), free(buf);
    return rc;
}

static int gpt2_merges(const vocab *v, a3_gguf_writer *w, a3_err *err)
{
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(v->model, "merges"), *m;
    int n = cJSON_GetArraySize(merges), k = 0;
    char **s = calloc((size_t)n + 1, sizeof *s);
    size_t *len = calloc((size_t)n + 1, sizeof *len);
    int rc = s && len ? A3_OK : a3_err_set(err, A3_ENOMEM, "%s: out of memory", v->path);
    cJSON_ArrayForEach(m, merges)
    {
        if (rc) break;
        const char *a, *b;
        size_t na, nb;
        if (tok_merge_parts(m, &a, &na, &b, &nb)) rc = a3_err_set(err, A3_EFORMAT, "%s: model.merges[%d]: not a pair", v->path, k);
        else if (!(s[k] = malloc(na + nb + 2))) rc = a3_err_set(err, A3_ENOMEM, "%s: out of memory", v->path);
        else {
            memcpy(s[k], a, na), s[k][na] = ' ', memcpy(s[k] + na + 1, b, nb);
            len[k++] = na + nb + 1;
        }
    }
    if (rc == A3_OK) rc = a3_gguf_kv_arr_str(w, "tokenizer.ggml.merges", (const char *const *)s, len, (size_t)k, err);
    for (int i = 0; s && i < k; i++) free(s[i]);
    free(s), free(len);
    return rc;
}

/* The llama.cpp pre-tokenizer name for a byte-level tokenizer.json. */
static int gpt2_pre(const vocab *v, const char **pre, a3_err *err)
{
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(v->root, "pre_tokenizer");
    const cJSON *split = find_step(pt, "pretokenizers", "Split");
    const cJSON *bl = find_step(pt, "pretokenizers", "ByteLevel");
    if (!split) {
        /* GPT-2 itself: ByteLevel with its built-in regex. */
        if (bl && !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(bl, "use_regex"))) return *pre = "gpt-2", A3_OK;
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: pre_tokenizer: no Split regex and no ByteLevel regex", v->path);
    }
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex");
    if (!cJSON_IsString(re)) return a3_err_set(err, A3_EUNSUPPORTED, "%s: pre_tokenizer.Split: not a regex pattern", v->path);
    for (size_t i = 0; i < sizeof KNOWN_PRE / sizeof KNOWN_PRE[0]; i++)
        if (strcmp(re->valuestring, KNOWN_PRE[i].regex) == 0) return *pre = KNOWN_PRE[i].name, A3_OK;
    return a3_err_set(err, A3_EUNSUPPORTED,
                      "%s: pre_tokenizer: regex not among those llama.cpp names (llama-bpe, qwen2); it would split "
                      "text differently",
                      v->path);
}

/* llama.cpp looks the newline up as "<0x0A>", else as "\n", when it loads
 * a SentencePiece vocabulary, and aborts when neither exists. */
static int has_newline(const vocab *v)
{
    for (int i = 0; i < v->n; i++)
        if ((v->len[i] == 6 && memcmp(v->tok[i], "<0x0A>", 6) == 0) || (v->len[i] == 1 && v->tok[i][0] == '\n'))
            return 1;
    return 0;
}

/* Does the SentencePiece-style tokenizer prepend "▁" to the text? */
static int spm_space_prefix(const cJSON *root)
{
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pre = find_step(norm, "normalizers", "Prepend");
    if (pre) return 1;
    const cJSON *ms = find_step(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pretokenizers", "Metaspace");
    if (!ms) return 0;
    const cJSON *scheme = cJSON_GetObjectItemCaseSensitive(ms, "prepend_scheme");
    if (cJSON_IsString(scheme)) return strcmp(scheme->valuestring, "never") != 0;
    return !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(ms, "add_prefix_space"));
}

static int put_special(a3_gguf_writer *w, const char *dir, a3_err *err)
{
    a3_tokenizer *t = NULL;
    int rc = a3_tok_load_dir(dir, &t, err);
    if (rc) return rc;
    int bos = a3_tok_bos(t), eos = a3_tok_eos(t);
    a3_tok_free(t);
    if (bos >= 0) rc = a3_gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos, err);
    if (rc == A3_OK && eos >= 0) rc = a3_gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos, err);
    /* a3 adds BOS whenever its tokenizer has one (eval, generate). */
    if (rc == A3_OK) rc = a3_gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", bos >= 0, err);
    if (rc == A3_OK) rc = a3_gguf_kv_bool(w, "tokenizer.ggml.add_eos_token", 0, err);
    return rc;
}

int a3_gguf_put_tokenizer(a3_gguf_writer *w, const char *dir, int n_vocab, const char **model_out,
                          const char **pre_out, a3_err *err)
{
    char *path = a3_path_join(dir, "tokenizer.json"), *text = NULL;
    vocab v = {.path = path, .n = n_vocab};
    int rc = path ? a3_read_file(path, (size_t)1 << 28, &text, NULL, err) : a3_err_set(err, A3_ENOMEM, "out of memory");
    if (rc == A3_EIO) rc = a3_err_set(err, A3_EIO, "%s: cannot read (a3 export needs a tokenizer.json)", path);
    if (rc == A3_OK && !(v.root = cJSON_Parse(text))) rc = a3_err_set(err, A3_EFORMAT, "%s: not valid JSON", path);
    free(text);
    if (rc == A3_OK) {
        v.model = cJSON_GetObjectItemCaseSensitive(v.root, "model");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(v.model, "type");
        /* A tokenizer.json without model.type but with merges is BPE. */
        if (cJSON_IsString(type) ? strcmp(type->valuestring, "BPE") != 0 : !cJSON_GetObjectItemCaseSensitive(v.model, "merges"))
            rc = a3_err_set(err, A3_EUNSUPPORTED, "%s: model.type: %s (a3 export writes BPE tokenizers only)", path,
                            cJSON_IsString(type) ? type->valuestring : "?");
    }
    if (rc == A3_OK) rc = load_vocab(&v, err);
    const cJSON *pt = v.root ? cJSON_GetObjectItemCaseSensitive(v.root, "pre_tokenizer") : NULL;
    const cJSON *dec = v.root ? cJSON_GetObjectItemCaseSensitive(v.root, "decoder") : NULL;
    int byte_level = find_step(pt, "pretokenizers", "ByteLevel") || find_step(dec, "decoders", "ByteLevel");
    const char *model = byte_level ? "gpt2" : "llama", *pre = "default";
    if (rc == A3_OK && byte_level) rc = gpt2_pre(&v, &pre, err);
    if (rc == A3_OK && !byte_level) rc = spm_scores(&v, err);
    if (rc == A3_OK && !byte_level && !has_newline(&v))
        rc = a3_err_set(err, A3_EUNSUPPORTED,
                        "%s: no <0x0A> or newline token: llama.cpp's SentencePiece tokenizer needs one to load", path);
    if (rc == A3_OK) rc = a3_gguf_kv_str(w, "tokenizer.ggml.model", model, err);
    if (rc == A3_OK) rc = a3_gguf_kv_str(w, "tokenizer.ggml.pre", pre, err);
    if (rc == A3_OK)
        rc = a3_gguf_kv_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v.tok, v.len, (size_t)v.n, err);
    if (rc == A3_OK && !byte_level) rc = a3_gguf_kv_arr(w, "tokenizer.ggml.scores", A3_GGUF_KV_F32, v.score, (size_t)v.n, err);
    if (rc == A3_OK) rc = a3_gguf_kv_arr(w, "tokenizer.ggml.token_type", A3_GGUF_KV_I32, v.type, (size_t)v.n, err);
    if (rc == A3_OK && byte_level) rc = gpt2_merges(&v, w, err);
    for (int i = 0; rc == A3_OK && i < v.n; i++)
        if (v.type[i] == TT_UNKNOWN) rc = a3_gguf_kv_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)i, err);
    if (rc == A3_OK && !byte_level)
        rc = a3_gguf_kv_bool(w, "tokenizer.ggml.add_space_prefix", spm_space_prefix(v.root), err);
    if (rc == A3_OK) rc = put_special(w, dir, err);
    if (rc == A3_OK) *model_out = model, *pre_out = pre;
    vocab_free(&v);
    free(path);
    return rc;
}
