/* tokenizer: llama2.c tokenizer.bin, HF tokenizer.json (SentencePiece-style
 * and byte-level BPE), the tokenizer.json writer, id files.
 *
 * Where the expected ids come from:
 *  - the small hand-made vocabularies below: derived by hand from the
 *    algorithms (run.c's greedy merge; HF's rank-ordered BPE after added
 *    tokens, normalizer and pre-tokenizer), step by step in the comments;
 *    each was also checked against HF tokenizers 0.23.2 (the npm binding
 *    of the Rust library) while writing this test;
 *  - tok512.bin: an independent straightforward Python transcription of
 *    llama2.c run.c's encode(), run outside this repository;
 *  - the tokenizer.json written from tok512.bin must give the same ids as
 *    tok512.bin on every paragraph of valid-head.txt (HF tokenizers 0.23.2
 *    gives those same ids on that file too). */
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "a3/tokenizer.h"
#include "test.h"

/* ---- helpers ----------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} blob;

static void blob_put(blob *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void blob_i32(blob *b, int32_t v)
{
    unsigned char q[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    blob_put(b, q, 4);
}

static void blob_token(blob *b, float score, const char *s)
{
    int32_t bits;
    memcpy(&bits, &score, 4);
    blob_i32(b, bits);
    blob_i32(b, (int32_t)strlen(s));
    blob_put(b, s, strlen(s));
}

/* A llama2.c tokenizer.bin: <unk>, BOS, EOS, <0x00>..<0xFF>, then extras. */
static blob l2c_blob(const char *const *extra, const float *scores, int n_extra)
{
    blob b = {0};
    blob_i32(&b, 8);
    blob_token(&b, 0, "<unk>");
    blob_token(&b, 0, "\n<s>\n");
    blob_token(&b, 0, "\n</s>\n");
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        blob_token(&b, 0, name);
    }
    for (int i = 0; i < n_extra; i++) blob_token(&b, scores[i], extra[i]);
    return b;
}

static char tmp_dir[64];

/* Write a file in this run's temporary directory; returns its path (static
 * ring of buffers, enough for one test case). */
static const char *tmp_file(const char *name, const void *data, size_t n)
{
    static char paths[8][256];
    static int k;
    char *p = paths[k++ % 8];
    snprintf(p, 256, "%s/%s", tmp_dir, name);
    FILE *fp = fopen(p, "wb");
    if (!fp) return p;
    if (n) fwrite(data, 1, n, fp);
    fclose(fp);
    return p;
}

static const char *tmp_text(const char *name, const char *s) { return tmp_file(name, s, strlen(s)); }

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    fprintf(stderr, "    %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, "\n");
}

static int check_ids_(const a3_tokenizer *t, const char *text, size_t len, int bos, const int32_t *exp,
                      size_t n_exp, int line)
{
    int32_t *ids = NULL;
    size_t n = 0;
    a3_err e = {0};
    int rc = a3_tok_encode(t, text, len, bos, &ids, &n, &e);
    int ok = rc == 0 && n == n_exp && (n == 0 || memcmp(ids, exp, n * sizeof *ids) == 0);
    if (!ok) {
        fprintf(stderr, "  FAIL %s (line %d): encode \"%.60s\" (rc %d %s)\n", t_case, line, text, rc, e.msg);
        print_ids("got     ", ids, n);
        print_ids("expected", exp, n_exp);
        t_case_failed = 1;
    }
    free(ids);
    return ok;
}

#define CHECK_IDS(t, text, bos, ...)                                                              \
    do {                                                                                          \
        const int32_t exp_[] = {__VA_ARGS__};                                                     \
        check_ids_(t, text, strlen(text), bos, exp_, sizeof exp_ / sizeof exp_[0], __LINE__);     \
    } while (0)
#define CHECK_NO_IDS(t, text) check_ids_(t, text, strlen(text), 0, NULL, 0, __LINE__)

/* Decode ids one by one into out (NUL-terminated); returns the length. */
static size_t decode_all(const a3_tokenizer *t, const int32_t *ids, size_t n, char *out, size_t cap)
{
    size_t len = 0;
    int prev = -1;
    for (size_t i = 0; i < n; i++) {
        int k = a3_tok_decode(t, prev, ids[i], out + len, cap - len - 1);
        if (k < 0) break;
        len += (size_t)k;
        prev = ids[i];
    }
    out[len] = 0;
    return len;
}

/* decode(encode(text)) == text. */
static int round_trips(const a3_tokenizer *t, const char *text, size_t len)
{
    int32_t *ids;
    size_t n;
    a3_err e;
    if (a3_tok_encode(t, text, len, 0, &ids, &n, &e)) return 0;
    char *out = malloc(len * 4 + 64);
    size_t m = out ? decode_all(t, ids, n, out, len * 4 + 64) : 0;
    int ok = out && m == len && memcmp(out, text, len) == 0;
    free(out);
    free(ids);
    return ok;
}

static int same_encoding(const a3_tokenizer *a, const a3_tokenizer *b, const char *text, size_t len)
{
    int32_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    a3_err e;
    int ok = a3_tok_encode(a, text, len, 0, &x, &nx, &e) == 0 && a3_tok_encode(b, text, len, 0, &y, &ny, &e) == 0 &&
             nx == ny && (nx == 0 || memcmp(x, y, nx * sizeof *x) == 0);
    if (!ok) {
        fprintf(stderr, "  FAIL %s: encodings differ on \"%.80s\"\n", t_case, text);
        print_ids("first ", x, nx);
        print_ids("second", y, ny);
    }
    free(x);
    free(y);
    return ok;
}

/* ---- llama2.c, hand-made vocabulary ------------------------------------ */

/* ids 259.. of the synthetic vocabulary; scores make merges happen in the
 * order ab, " a", bc, " ab", abc. */
static const char *const syn_pieces[] = {" ", "a", "b", "c", "\xC3\xA9", "ab", " a", "bc", " ab", "abc"};
static const float syn_scores[] = {-100, -101, -102, -103, -104, -1, -2, -3, -4, -5};

static a3_tokenizer *load_syn(void)
{
    blob b = l2c_blob(syn_pieces, syn_scores, 10);
    const char *path = tmp_file("syn.bin", b.p, b.n);
    free(b.p);
    a3_tokenizer *t = NULL;
    a3_err e = {0};
    int rc = a3_tok_load_llama2c(path, 269, &t, &e);
    CHECKF(rc == 0, "%s", e.msg);
    return t;
}

static void test_l2c_encode(void)
{
    a3_tokenizer *t = load_syn();
    if (!t) return;
    CHECK(a3_tok_vocab_size(t) == 269 && a3_tok_bos(t) == 1 && a3_tok_eos(t) == 2);
    /* "abc": dummy prefix + chars [" ",a,b,c] = [259,260,261,262]; pairs
     * " a"(-2) ab(-1) bc(-3): ab -> [259,264,262]; then " ab"(-4) vs
     * abc(-5): " ab" -> [267,262]; " abc" is not a token. */
    CHECK_IDS(t, "abc", 0, 267, 262);
    CHECK_IDS(t, "abc", 1, 1, 267, 262);
    /* "b a": [" ",b," ",a]; only " a" merges. */
    CHECK_IDS(t, "b a", 0, 259, 261, 265);
    /* Leading space: the dummy prefix plus the text's own space. */
    CHECK_IDS(t, " a", 0, 259, 265);
    /* "é" is a token; "世" (E4 B8 96) is not: byte fallback, byte + 3. */
    CHECK_IDS(t, "\xC3\xA9\xE4\xB8\x96", 0, 259, 263, 0xE4 + 3, 0xB8 + 3, 0x96 + 3);
    /* Emoji, 4 bytes F0 9F 98 80. */
    CHECK_IDS(t, "\xF0\x9F\x98\x80", 0, 259, 0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3);
    /* Invalid UTF-8: run.c groups FF with the continuation byte 80, finds
     * no such piece, and falls back to both bytes. */
    CHECK_IDS(t, "\xFF\x80" "a", 0, 259, 0xFF + 3, 0x80 + 3, 260);
    /* Empty text: no dummy prefix at all. */
    CHECK_NO_IDS(t, "");
    CHECK_IDS(t, "", 1, 1);
    a3_tok_free(t);
}

static void test_l2c_decode(void)
{
    a3_tokenizer *t = load_syn();
    if (!t) return;
    char buf[16];
    /* run.c: the leading space goes after BOS (and at the text start). */
    CHECK(a3_tok_decode(t, 1, 267, buf, sizeof buf) == 2 && memcmp(buf, "ab", 2) == 0);
    CHECK(a3_tok_decode(t, -1, 267, buf, sizeof buf) == 2 && memcmp(buf, "ab", 2) == 0);
    CHECK(a3_tok_decode(t, 262, 267, buf, sizeof buf) == 3 && memcmp(buf, " ab", 3) == 0);
    /* <0xE4> is the raw byte. */
    CHECK(a3_tok_decode(t, 262, 0xE4 + 3, buf, sizeof buf) == 1 && (unsigned char)buf[0] == 0xE4);
    CHECK(a3_tok_decode(t, 262, 267, buf, 2) < 0); /* buffer too small */
    CHECK(a3_tok_decode(t, 262, 269, buf, sizeof buf) < 0); /* no such id */
    const char *texts[] = {"abc", "b a é世 abc", "  two  spaces ", "\xF0\x9F\x98\x80!", "x\ny", ""};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        CHECKF(round_trips(t, texts[i], strlen(texts[i])), "\"%s\"", texts[i]);
    a3_tok_free(t);
}

/* The saved tokenizer.json must encode like the llama2.c tokenizer. */
static void test_l2c_save_hf(void)
{
    a3_tokenizer *t = load_syn(), *h = NULL;
    if (!t) return;
    char path[256];
    snprintf(path, sizeof path, "%s/syn.json", tmp_dir);
    a3_err e = {0};
    CHECKF(a3_tok_save_hf(t, path, &e) == 0, "%s", e.msg);
    CHECKF(a3_tok_load_hf(path, &h, &e) == 0, "%s", e.msg);
    if (h) {
        CHECK(a3_tok_vocab_size(h) == 269 && a3_tok_bos(h) == 1 && a3_tok_eos(h) == 2);
        const char *texts[] = {"abc", "b a", " a", "\xC3\xA9\xE4\xB8\x96", "\xF0\x9F\x98\x80", "\xFF\x80" "a",
                               "abcabc ab ba cab", "", "\xE4\xB8" "a"};
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
            CHECK(same_encoding(t, h, texts[i], strlen(texts[i])));
        CHECK_IDS(h, "abc", 1, 1, 267, 262); /* BOS from the post-processor */
        CHECK(round_trips(h, "b a é世 abc", strlen("b a é世 abc")));
    }
    a3_tok_free(h);
    a3_tok_free(t);
}

/* Where run.c and HF cannot agree: two different tokens with the same
 * score. Vocabulary extras " " a b c bc ab (259..264), bc and ab both -1.
 * run.c takes the leftmost best pair: "abc" -> [" ", ab, c]. HF's
 * converter orders equal scores by id, so "b c" gets rank 0 and HF gives
 * [" ", a, bc] (HF tokenizers 0.23.2 does, on this very file). */
static void test_l2c_score_tie(void)
{
    const char *const pieces[] = {" ", "a", "b", "c", "bc", "ab"};
    const float scores[] = {-10, -11, -12, -13, -1, -1};
    blob b = l2c_blob(pieces, scores, 6);
    const char *bin = tmp_file("tie.bin", b.p, b.n);
    free(b.p);
    char json[256];
    snprintf(json, sizeof json, "%s/tie.json", tmp_dir);
    a3_tokenizer *t = NULL, *h = NULL;
    a3_err e = {0};
    CHECKF(a3_tok_load_llama2c(bin, 0, &t, &e) == 0, "%s", e.msg);
    if (!t) return;
    CHECK_IDS(t, "abc", 0, 259, 264, 262);
    CHECKF(a3_tok_save_hf(t, json, &e) == 0, "%s", e.msg);
    CHECKF(a3_tok_load_hf(json, &h, &e) == 0, "%s", e.msg);
    if (h) CHECK_IDS(h, "abc", 0, 259, 260, 263);
    a3_tok_free(h);
    a3_tok_free(t);
}

typedef struct {
    const char *what;
    blob b;
    int vocab;
} bin_case;

static void test_l2c_corrupt(void)
{
    bin_case cases[16];
    int n = 0;
    blob b = {0};
    cases[n++] = (bin_case){"empty file", b, 0};
    blob_i32(&b, 0);
    cases[n++] = (bin_case){"max_token_length 0", b, 0};
    b = (blob){0};
    blob_i32(&b, -5);
    cases[n++] = (bin_case){"negative max_token_length", b, 0};
    b = (blob){0};
    blob_i32(&b, 1 << 30);
    cases[n++] = (bin_case){"huge max_token_length", b, 0};
    b = (blob){0};
    blob_i32(&b, 8);
    blob_put(&b, "\0\0", 2);
    cases[n++] = (bin_case){"truncated token header", b, 0};
    b = (blob){0};
    blob_i32(&b, 8);
    blob_i32(&b, 0);
    blob_i32(&b, -1);
    cases[n++] = (bin_case){"negative token length", b, 0};
    b = (blob){0};
    blob_i32(&b, 8);
    blob_token(&b, 0, "longer than eight");
    cases[n++] = (bin_case){"token longer than max", b, 0};
    b = (blob){0};
    blob_i32(&b, 8);
    blob_i32(&b, 0);
    blob_i32(&b, 8);
    blob_put(&b, "abc", 3);
    cases[n++] = (bin_case){"token bytes cut off", b, 0};
    b = (blob){0};
    blob_i32(&b, 8);
    for (int i = 0; i < 10; i++) blob_token(&b, 0, "x");
    cases[n++] = (bin_case){"too few tokens for byte fallback", b, 0};
    cases[n++] = (bin_case){"vocab size larger than file", l2c_blob(syn_pieces, syn_scores, 10), 300};
    b = l2c_blob(syn_pieces, syn_scores, 10);
    blob_put(&b, "xyz", 3);
    cases[n++] = (bin_case){"trailing bytes", b, 269};
    b = l2c_blob(syn_pieces, syn_scores, 10);
    blob_put(&b, "xyz", 3);
    cases[n++] = (bin_case){"partial record at end", b, 0};
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%d.bin", i);
        const char *path = tmp_file(name, cases[i].b.p, cases[i].b.n);
        a3_tokenizer *t = (a3_tokenizer *)&t; /* must be reset to NULL */
        a3_err e = {0};
        int rc = a3_tok_load_llama2c(path, cases[i].vocab, &t, &e);
        CHECKF(rc == A3_EFORMAT && t == NULL && strstr(e.msg, path) == e.msg, "%s: rc %d msg \"%s\"",
               cases[i].what, rc, e.msg);
        free(cases[i].b.p);
    }
    a3_tokenizer *t;
    a3_err e = {0};
    CHECK(a3_tok_load_llama2c("/nonexistent/tok.bin", 0, &t, &e) == A3_EIO && t == NULL);
    CHECK(strstr(e.msg, "/nonexistent/tok.bin") != NULL);
}

/* ---- tok512.bin (shared data) ------------------------------------------ */

static a3_tokenizer *load_tok512(char *why, size_t n)
{
    const char *data = test_shared_data();
    if (!data) {
        snprintf(why, n, "../shared/data not found (set A3_SHARED_DATA)");
        return NULL;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/models/stories260K/tok512.bin", data);
    if (access(path, R_OK) != 0) {
        snprintf(why, n, "%s is absent", path);
        return NULL;
    }
    a3_tokenizer *t = NULL;
    a3_err e = {0};
    if (a3_tok_load_llama2c(path, 512, &t, &e)) snprintf(why, n, "load failed: %s", e.msg);
    return t;
}

static void test_tok512_known(void)
{
    char why[600];
    a3_tokenizer *t = load_tok512(why, sizeof why);
    if (!t) {
        if (strncmp(why, "load", 4) == 0) CHECKF(0, "%s", why);
        SKIP("%s", why);
    }
    CHECK(a3_tok_vocab_size(t) == 512);
    CHECK_IDS(t, "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
              0, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267,
              337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426);
    CHECK_IDS(t, "Once upon", 1, 1, 403, 407);
    CHECK_IDS(t, "The cat's toy cost $5.99!", 0, 291, 280, 294, 439, 419, 267, 422, 280, 414, 356, 410, 494, 480,
              426, 483, 483, 443);
    CHECK_IDS(t, "  two  spaces", 0, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419);
    CHECK_IDS(t, "tab\there\n", 0, 259, 412, 430, 12, 260, 276, 13);
    CHECK_IDS(t, " ", 0, 410, 410);
    /* Multi-byte characters: "ï" and CJK by byte fallback, "é" and "—" are
     * pieces, the emoji is four bytes. */
    CHECK_IDS(t, "na\xC3\xAFve caf\xC3\xA9 \xE2\x80\x94 \xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x9C\x93 "
                 "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x99\x82",
              0, 297, 412, 198, 178, 360, 280, 412, 431, 485, 410, 481, 410, 465, 456, 425, 309, 266, 466, 410,
              229, 159, 150, 410, 233, 154, 168, 233, 159, 175, 235, 173, 161, 410, 243, 162, 156, 133);
    CHECK_IDS(t, "Spot. Spot saw the shiny car and said, \"Wow, Kitty, your car is so bright and clean!\" Kitty "
                 "smiled and replied, \"Thank you, Spot. I polish it every day.\"",
              0, 301, 427, 309, 426, 301, 427, 309, 394, 265, 262, 415, 271, 422, 280, 295, 269, 336, 432, 313,
              448, 327, 432, 410, 462, 362, 422, 432, 364, 420, 280, 295, 410, 293, 384, 268, 325, 428, 415, 413,
              269, 280, 305, 303, 443, 436, 410, 462, 362, 422, 262, 423, 290, 266, 269, 410, 276, 427, 421, 417,
              266, 432, 313, 434, 415, 303, 433, 364, 432, 301, 427, 309, 426, 359, 282, 414, 421, 293, 415, 312,
              344, 363, 328, 426, 436);
    const char *sample = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
    CHECK(round_trips(t, sample, strlen(sample)));
    a3_tok_free(t);
}

/* Calls fn(paragraph) for each blank-line-separated non-blank paragraph. */
static size_t for_paragraphs(const char *s, size_t n, void (*fn)(void *, const char *, size_t), void *ctx)
{
    size_t count = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && !(s[i] == '\n' && i + 1 < n && s[i + 1] == '\n')) continue;
        size_t len = i - start, k = 0;
        while (k < len && strchr(" \t\r\n", s[start + k])) k++;
        if (k < len) {
            fn(ctx, s + start, len);
            count++;
        }
        start = i + 2;
        i++;
    }
    return count;
}

typedef struct {
    const a3_tokenizer *a, *b;
    size_t differ, no_round_trip;
} para_ctx;

static void para_check(void *p, const char *s, size_t n)
{
    para_ctx *c = p;
    if (!same_encoding(c->a, c->b, s, n)) c->differ++;
    if (!round_trips(c->b, s, n)) c->no_round_trip++;
}

static void test_tok512_save_hf(void)
{
    char why[600], path[256];
    a3_tokenizer *t = load_tok512(why, sizeof why), *h = NULL;
    if (!t) SKIP("%s", why);
    snprintf(path, sizeof path, "%s/tok512.json", tmp_dir);
    a3_err e = {0};
    CHECKF(a3_tok_save_hf(t, path, &e) == 0, "%s", e.msg);
    CHECKF(a3_tok_load_hf(path, &h, &e) == 0, "%s", e.msg);
    char text_path[512];
    snprintf(text_path, sizeof text_path, "%s/text/tinystories/valid-head.txt", test_shared_data());
    char *text = NULL;
    size_t len = 0;
    if (h && a3_read_file(text_path, 1 << 26, &text, &len, &e) == 0) {
        para_ctx c = {t, h, 0, 0};
        size_t count = for_paragraphs(text, len, para_check, &c);
        CHECKF(count == 4300 && c.differ == 0 && c.no_round_trip == 0,
               "%zu paragraphs, %zu encode differently, %zu do not round-trip", count, c.differ,
               c.no_round_trip);
        /* The whole file as one text, timed (the lead wants MB/s). */
        for (int k = 0; k < 2; k++) {
            int32_t *ids;
            size_t n;
            double t0 = a3_now();
            CHECK(a3_tok_encode(k ? h : t, text, len, 1, &ids, &n, &e) == 0);
            double dt = a3_now() - t0;
            fprintf(stderr, "  note: %s encodes valid-head.txt (%zu bytes, %zu ids) at %.1f MB/s\n",
                    k ? "tokenizer.json" : "tok512.bin", len, n, (double)len / dt / 1e6);
            CHECK(dt < 10);
            free(ids);
        }
        CHECK(same_encoding(t, h, text, len));
    } else if (h) {
        CHECKF(0, "%s", e.msg);
    }
    free(text);
    a3_tok_free(h);
    a3_tok_free(t);
}

/* ---- HF SentencePiece-style, hand-made --------------------------------- */

#define SP_ADDED                                                                                         \
    "\"added_tokens\":["                                                                                 \
    "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"           \
    "\"normalized\":false,\"special\":true},"                                                            \
    "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"             \
    "\"normalized\":false,\"special\":true},"                                                            \
    "{\"id\":2,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"            \
    "\"normalized\":false,\"special\":true}],"
#define SP_MODEL                                                                                         \
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"fuse_unk\":true,"           \
    "\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0x0A>\":3,\"<0xE4>\":4,"      \
    "\"<0xB8>\":5,\"<0x96>\":6,\"▁\":7,\"a\":8,\"b\":9,\"c\":10,\"h\":11,\"e\":12,\"l\":13,\"o\":14,"   \
    "\"ll\":15,\"▁h\":16,\"▁he\":17,\"llo\":18,\"▁hello\":19,\"ab\":20},"                                \
    "\"merges\":[\"l l\",\"▁ h\",\"▁h e\",\"ll o\",\"▁he llo\",\"a b\"]}}"

/* Llama-2 layout: Prepend + Replace normalizer, no pre-tokenizer. */
static const char sp_json[] =
    "{\"version\":\"1.0\"," SP_ADDED
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"▁\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"▁\"}]},"
    "\"pre_tokenizer\":null,"
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\","
    "\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":"
    "{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"▁\"},"
    "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \","
    "\"start\":1,\"stop\":0}]}," SP_MODEL;

/* Newer Llama layout: Metaspace pre-tokenizer, prepend only at the start. */
static const char sp_meta_json[] =
    "{\"version\":\"1.0\"," SP_ADDED "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"first\","
    "\"split\":false},\"post_processor\":null,"
    "\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"first\",\"split\":false},"
    SP_MODEL;

static a3_tokenizer *load_json(const char *name, const char *json)
{
    const char *path = tmp_text(name, json);
    a3_tokenizer *t = NULL;
    a3_err e = {0};
    CHECKF(a3_tok_load_hf(path, &t, &e) == 0, "%s", e.msg);
    return t;
}

static void test_hf_sp(void)
{
    a3_tokenizer *t = load_json("sp.json", sp_json);
    if (!t) return;
    CHECK(a3_tok_vocab_size(t) == 21 && a3_tok_bos(t) == 1 && a3_tok_eos(t) == 2);
    /* "▁hello": [▁ h e l l o]; ranks: "l l" -> ll, "▁ h", "▁h e",
     * "ll o", "▁he llo" -> [▁hello]. */
    CHECK_IDS(t, "hello", 0, 19);
    CHECK_IDS(t, "hello", 1, 1, 19);
    /* No pre-tokenizer: one word, merges never cross "▁hello▁hello"'s
     * middle because no merge joins "o" and "▁". */
    CHECK_IDS(t, "hello hello", 0, 19, 19);
    /* Leading space: Prepend always adds one more "▁". */
    CHECK_IDS(t, " hello", 0, 7, 19);
    /* "\n" is not a piece: byte fallback <0x0A>; then "a b" merges. */
    CHECK_IDS(t, "ab\nc", 0, 7, 20, 3, 10);
    /* "世" = E4 B8 96, all three byte tokens exist. */
    CHECK_IDS(t, "\xE4\xB8\x96", 0, 7, 4, 5, 6);
    /* "é" = C3 A9 has no byte tokens: <unk>, and two in a row fuse. */
    CHECK_IDS(t, "\xC3\xA9\xC3\xA9 a", 0, 7, 0, 7, 8);
    /* Special tokens are cut out first; the rest is normalized on its own
     * (so it gets its own "▁", as in HF). */
    CHECK_IDS(t, "<s>hello", 0, 1, 19);
    CHECK_NO_IDS(t, "");
    CHECK_IDS(t, "", 1, 1);
    char buf[16];
    CHECK(a3_tok_decode(t, -1, 19, buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(a3_tok_decode(t, 19, 19, buf, sizeof buf) == 6 && memcmp(buf, " hello", 6) == 0);
    CHECK(a3_tok_decode(t, 19, 3, buf, sizeof buf) == 1 && buf[0] == '\n');
    CHECK(a3_tok_decode(t, 19, 1, buf, sizeof buf) == 3 && memcmp(buf, "<s>", 3) == 0);
    const char *texts[] = {"hello hello", " hello", "ab\nc", "\xE4\xB8\x96 abc", "c"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
        CHECKF(round_trips(t, texts[i], strlen(texts[i])), "\"%s\"", texts[i]);
    a3_tok_free(t);

    t = load_json("sp_meta.json", sp_meta_json);
    if (!t) return;
    CHECK_IDS(t, "hello", 0, 19);
    /* Metaspace adds no "▁" to text already starting with one. */
    CHECK_IDS(t, " hello", 0, 19);
    /* prepend_scheme "first": the piece after <s> is not at offset 0, so
     * "hello" gets no "▁": [h e l l o] -> [h e llo]. */
    CHECK_IDS(t, "<s>hello", 0, 1, 11, 12, 18);
    CHECK_IDS(t, "hello hello", 0, 19, 19);
    /* No post-processor: nothing is added and there is no BOS, although an
     * added token is named "<s>" (HF adds nothing either). */
    CHECK(a3_tok_bos(t) == -1 && a3_tok_eos(t) == 2);
    CHECK_IDS(t, "hello", 1, 19);
    CHECK(round_trips(t, "hello hello", 11));
    a3_tok_free(t);
}

/* ---- HF byte-level, hand-made ------------------------------------------ */

/* Byte characters: 'Ġ' (U+0120) is ' ', 'Ċ' (U+010A) is '\n', "é" (C3 A9)
 * is "Ã©". Only the characters the tests use are in the vocabulary (HF
 * drops characters missing from a vocabulary without unk). */
#define BL_VOCAB                                                                                          \
    "\"vocab\":{\"I\":0,\"'\":1,\"m\":2,\"Ġ\":3,\"1\":4,\"2\":5,\"3\":6,\"4\":7,\"5\":8,\"h\":9,\"Ã\":10,"  \
    "\"©\":11,\"l\":12,\"o\":13,\"!\":14,\"Ċ\":15,\"'m\":16,\"12\":17,\"123\":18,\"ll\":19,\"Ã©\":20,"      \
    "\"Ġh\":21,\"llo\":22,\"!!\":23,\"ĠhÃ©llo\":24,\"Ġ1\":25},"                                           \
    "\"merges\":[[\"Ġ\",\"1\"],[\"'\",\"m\"],[\"1\",\"2\"],[\"12\",\"3\"],[\"l\",\"l\"],[\"Ã\",\"©\"],"    \
    "[\"Ġ\",\"h\"],[\"ll\",\"o\"],[\"!\",\"!\"]]}}"
#define BL_HEAD                                                                                           \
    "{\"version\":\"1.0\",\"added_tokens\":["                                                             \
    "{\"id\":26,\"content\":\"<|begin_of_text|>\",\"single_word\":false,\"lstrip\":false,"            \
    "\"rstrip\":false,\"normalized\":false,\"special\":true},"                                           \
    "{\"id\":27,\"content\":\"<|end_of_text|>\",\"single_word\":false,\"lstrip\":false,"              \
    "\"rstrip\":false,\"normalized\":false,\"special\":true}],"                                          \
    "\"normalizer\":null,"                                                                                \
    "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":"          \
    "\"<|begin_of_text|>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],"     \
    "\"special_tokens\":{\"<|begin_of_text|>\":{\"id\":\"<|begin_of_text|>\",\"ids\":[26],"               \
    "\"tokens\":[\"<|begin_of_text|>\"]}}},"                                                              \
    "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,"                \
    "\"use_regex\":true},"
/* Llama 3's pattern (JSON-escaped). */
#define L3_PATTERN                                                                                        \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| "                 \
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"
#define BL_SPLIT                                                                                          \
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"        \
    "{\"Regex\":\"" L3_PATTERN "\"},\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\"," \
    "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]},"
#define BL_MODEL(ignore)                                                                                  \
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"fuse_unk\":false,"                 \
    "\"byte_fallback\":false,\"ignore_merges\":" ignore "," BL_VOCAB

static const char bl_json[] = BL_HEAD BL_SPLIT BL_MODEL("false");
static const char bl_ignore_json[] = BL_HEAD BL_SPLIT BL_MODEL("true");
static const char bl_gpt2_json[] = BL_HEAD "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
                                           "\"trim_offsets\":true,\"use_regex\":true}," BL_MODEL("false");

/* Llama 3's first release: no BOS template, a ByteLevel post-processor. */
#define BL_HEAD_L3BASE                                                                                    \
    "{\"version\":\"1.0\",\"added_tokens\":["                                                             \
    "{\"id\":26,\"content\":\"<|begin_of_text|>\",\"special\":true,\"normalized\":false},"                \
    "{\"id\":27,\"content\":\"<|end_of_text|>\",\"special\":true,\"normalized\":false}],"                 \
    "\"normalizer\":null,\"post_processor\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"             \
    "\"trim_offsets\":false,\"use_regex\":true},\"decoder\":{\"type\":\"ByteLevel\"},"
static const char bl_l3base_json[] = BL_HEAD_L3BASE BL_SPLIT BL_MODEL("false");

static const char bl_text[] = "I'm 12345 h\xC3\xA9llo!!\n";

static void test_hf_bytelevel(void)
{
    a3_tokenizer *t = load_json("bl.json", bl_json);
    if (!t) return;
    CHECK(a3_tok_vocab_size(t) == 28 && a3_tok_bos(t) == 26 && a3_tok_eos(t) == 27);
    /* Llama 3 split: "I" | "'m" (contraction) | " " (\s+ as the digits do
     * not take a space) | "123" "45" (\p{N}{1,3}) | " héllo" (one
     * non-letter then \p{L}+, é is a letter) | "!!\n". Byte-mapped and
     * merged by rank: 'm; 1 2 -> 12, 12 3 -> 123; in ĠhÃ©llo: l l, Ã ©,
     * Ġ h, ll o -> [Ġh Ã© llo]; ! ! -> [!! Ċ]. */
    CHECK_IDS(t, bl_text, 0, 0, 16, 3, 18, 7, 8, 21, 20, 22, 23, 15);
    CHECK_IDS(t, bl_text, 1, 26, 0, 16, 3, 18, 7, 8, 21, 20, 22, 23, 15);
    CHECK_IDS(t, "1234512", 0, 18, 7, 8, 4, 5);
    CHECK_IDS(t, "I'm<|end_of_text|>", 0, 0, 16, 27);
    /* 'e' is not in this vocabulary and there is no unk: dropped. */
    CHECK_IDS(t, "hello", 0, 9, 22);
    CHECK_NO_IDS(t, "");
    CHECK(round_trips(t, bl_text, strlen(bl_text)));
    char buf[16];
    CHECK(a3_tok_decode(t, -1, 3, buf, sizeof buf) == 1 && buf[0] == ' '); /* no strip */
    CHECK(a3_tok_decode(t, 3, 10, buf, sizeof buf) == 1 && (unsigned char)buf[0] == 0xC3);
    a3_tok_free(t);

    /* ignore_merges: a word that is itself a token is taken whole. */
    t = load_json("bl_ignore.json", bl_ignore_json);
    if (t) CHECK_IDS(t, bl_text, 0, 0, 16, 3, 18, 7, 8, 24, 23, 15);
    a3_tok_free(t);

    /* ByteLevel's own GPT-2 regex: " 12345" is one word, "Ġ 1" is the
     * best merge in it, and 2 3 4 5 stay apart; "!!" and "\n" split. */
    t = load_json("bl_gpt2.json", bl_gpt2_json);
    if (t) {
        CHECK_IDS(t, bl_text, 0, 0, 16, 25, 5, 6, 7, 8, 21, 20, 22, 23, 15);
        CHECK_IDS(t, "1234512", 0, 18, 7, 8, 17);
    }
    a3_tok_free(t);
}

/* ---- post-processors, normalizers, specials ----------------------------- */

/* sp_json's pipeline with another post-processor. */
static a3_tokenizer *sp_with_post(const char *name, const char *post)
{
    char json[4096];
    snprintf(json, sizeof json,
             "{\"version\":\"1.0\"," SP_ADDED
             "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"▁\"},"
             "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"▁\"}]},"
             "\"pre_tokenizer\":null,\"post_processor\":%s,\"decoder\":null," SP_MODEL,
             post);
    return load_json(name, json);
}

#define TPL_TOKEN(name, idlist) "\"" name "\":{\"id\":\"" name "\",\"ids\":[" idlist "],\"tokens\":[]}"

/* What HF's post-processors add around one sequence: the single template's
 * special tokens before and after $A (several ids each allowed),
 * Roberta/Bert cls + sep, ByteLevel nothing, and a Sequence applying each
 * in turn (a later one wraps the earlier one's output). */
static void test_post_processors(void)
{
    a3_tokenizer *t = sp_with_post(
        "tpl.json", "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],"
                    "\"pair\":[],\"special_tokens\":{" TPL_TOKEN("<s>", "1") "," TPL_TOKEN("</s>", "2,3") "}}");
    if (t) {
        CHECK_IDS(t, "hello", 1, 1, 19, 2, 3);
        CHECK_IDS(t, "hello", 0, 19);
        CHECK_IDS(t, "", 1, 1, 2, 3);
        const int32_t *v;
        CHECK(a3_tok_special(t, 0, &v) == 1 && v[0] == 1 && a3_tok_special(t, 1, &v) == 2 && v[1] == 3);
        CHECK(a3_tok_bos(t) == 1 && a3_tok_eos(t) == 3); /* EOS: the last one after */
    }
    a3_tok_free(t);
    t = sp_with_post("roberta.json", "{\"type\":\"RobertaProcessing\",\"sep\":[\"</s>\",2],\"cls\":[\"<s>\",1],"
                                     "\"trim_offsets\":true,\"add_prefix_space\":true}");
    if (t) CHECK_IDS(t, "hello", 1, 1, 19, 2);
    a3_tok_free(t);
    t = sp_with_post("bert.json", "{\"type\":\"BertProcessing\",\"sep\":[\"</s>\",2],\"cls\":[\"<unk>\",0]}");
    if (t) CHECK_IDS(t, "hello", 1, 0, 19, 2);
    a3_tok_free(t);
    t = sp_with_post("seq.json",
                     "{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\",\"trim_offsets\":false},"
                     "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],"
                     "\"special_tokens\":{" TPL_TOKEN("<s>", "1") "}},"
                     "{\"type\":\"RobertaProcessing\",\"sep\":[\"</s>\",2],\"cls\":[\"<unk>\",0]}]}");
    if (t) {
        CHECK_IDS(t, "hello", 1, 0, 1, 19, 2);
        CHECK(a3_tok_bos(t) == 0 && a3_tok_eos(t) == 2);
    }
    a3_tok_free(t);
    t = sp_with_post("bl_only.json", "{\"type\":\"ByteLevel\",\"add_prefix_space\":true}");
    if (t) {
        CHECK_IDS(t, "hello", 1, 19);
        CHECK(a3_tok_bos(t) == -1 && a3_tok_eos(t) == 2); /* EOS by the added token's name */
    }
    a3_tok_free(t);
}

/* Qwen's vocabulary holds "<s>" and "</s>" as ordinary tokens: they are
 * neither BOS nor EOS; its added "<|endoftext|>" is the EOS. */
static void test_plain_vocab_specials(void)
{
    static const char json[] =
        "{\"added_tokens\":[{\"id\":3,\"content\":\"<|endoftext|>\",\"special\":true,\"normalized\":false}],"
        "\"post_processor\":{\"type\":\"ByteLevel\"},\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"use_regex\":false},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"<s>\":0,\"</s>\":1,\"a\":2},\"merges\":[]}}";
    a3_tokenizer *t = load_json("qwenlike.json", json);
    if (t) CHECK(a3_tok_bos(t) == -1 && a3_tok_eos(t) == 3);
    a3_tok_free(t);
    static const char json2[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"<s>\":0,\"</s>\":1,\"a\":2},\"merges\":[]}}";
    t = load_json("plain.json", json2);
    if (t) CHECK(a3_tok_bos(t) == -1 && a3_tok_eos(t) == -1);
    a3_tok_free(t);
}

/* Unicode normalizers (utf8proc), expected forms written out by hand:
 * é = U+00E9 (C3 A9) = e + U+0301 (CC 81); "ﬁ" U+FB01 (EF AC 81) is "fi"
 * under NFKC/NFKD only. */
#define NF_JSON(form)                                                                                     \
    "{\"normalizer\":{\"type\":\"" form "\"},\"pre_tokenizer\":null,"                                     \
    "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"<0xFF>\":0,\"\xC3\xA9\":1,\"e\":2,"  \
    "\"\xCC\x81\":3,\"f\":4,\"i\":5,\"fi\":6,\"\xEF\xAC\x81\":7,\"<0xEF>\":8,\"<0xAC>\":9,\"<0x81>\":10,"  \
    "\"<0xC3>\":11,\"<0xA9>\":12,\"<0xCC>\":13},\"merges\":[\"f i\"]}}"

static void test_normalizers(void)
{
    static const char nfc[] = NF_JSON("NFC"), nfd[] = NF_JSON("NFD"), nfkc[] = NF_JSON("NFKC"),
                      nfkd[] = NF_JSON("NFKD");
    a3_tokenizer *t = load_json("nfc.json", nfc);
    if (t) {
        CHECK_IDS(t, "e\xCC\x81", 0, 1);
        CHECK_IDS(t, "\xC3\xA9", 0, 1);
        CHECK_IDS(t, "\xEF\xAC\x81", 0, 7);
        /* An invalid byte passes through (byte fallback) and does not stop
         * the valid text after it from composing. */
        CHECK_IDS(t, "\xFF" "e\xCC\x81", 0, 0, 1);
    }
    a3_tok_free(t);
    t = load_json("nfd.json", nfd);
    if (t) {
        CHECK_IDS(t, "\xC3\xA9", 0, 2, 3);
        CHECK_IDS(t, "\xEF\xAC\x81", 0, 7);
    }
    a3_tok_free(t);
    t = load_json("nfkc.json", nfkc);
    if (t) {
        CHECK_IDS(t, "\xEF\xAC\x81", 0, 6);
        CHECK_IDS(t, "e\xCC\x81", 0, 1);
    }
    a3_tok_free(t);
    t = load_json("nfkd.json", nfkd);
    if (t) CHECK_IDS(t, "\xEF\xAC\x81\xC3\xA9", 0, 6, 2, 3);
    a3_tok_free(t);
}

/* Pieces of several "▁" decode to as many spaces (Llama 2 has "▁▁" ...
 * "▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁▁"), with the Replace decoder and with Metaspace. */
static void test_decode_spaces(void)
{
    static const char *const decoders[] = {
        "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"▁\"},\"content\":\" \"},"
        "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}",
        "{\"type\":\"Metaspace\",\"replacement\":\"▁\",\"prepend_scheme\":\"always\",\"split\":false}",
    };
    for (int k = 0; k < 2; k++) {
        char json[2048], name[32];
        snprintf(json, sizeof json,
                 "{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"▁\"},"
                 "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"▁\"}]},\"decoder\":%s,"
                 "\"model\":{\"type\":\"BPE\",\"vocab\":{\"▁\":0,\"▁▁\":1,\"▁▁▁\":2,\"x\":3,\"▁x\":4},"
                 "\"merges\":[\"▁ ▁\",\"▁▁ ▁\",\"▁ x\"]}}",
                 decoders[k]);
        snprintf(name, sizeof name, "dec%d.json", k);
        a3_tokenizer *t = load_json(name, json);
        if (!t) continue;
        char buf[32];
        CHECK(a3_tok_decode(t, 3, 2, buf, sizeof buf) == 3 && memcmp(buf, "   ", 3) == 0);
        CHECK(a3_tok_decode(t, 3, 1, buf, sizeof buf) == 2 && memcmp(buf, "  ", 2) == 0);
        /* "   x": "▁▁▁▁x"; "▁ ▁" (rank 0) twice, leftmost first, then no
         * merge joins "▁▁ ▁▁" or "▁▁ x": [▁▁ ▁▁ x]. */
        CHECK_IDS(t, "   x", 0, 1, 1, 3);
        CHECK(round_trips(t, "   x  x", 7));
        a3_tok_free(t);
    }
}

/* ---- corrupt tokenizer.json -------------------------------------------- */

static void test_hf_corrupt(void)
{
    static const struct {
        const char *what, *json, *field;
        int code;
    } cases[] = {
        {"not JSON", "{\"model\": ", "JSON", A3_EFORMAT},
        {"array", "[1,2]", "JSON", A3_EFORMAT},
        {"no model", "{\"version\":\"1.0\"}", "model", A3_EFORMAT},
        {"WordPiece", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "model.type", A3_EUNSUPPORTED},
        {"Unigram", "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model.type", A3_EUNSUPPORTED},
        {"vocab not object", "{\"model\":{\"type\":\"BPE\",\"vocab\":[],\"merges\":[]}}", "model.vocab", A3_EFORMAT},
        {"empty vocab", "{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", "model.vocab", A3_EFORMAT},
        {"negative id", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", "model.vocab", A3_EFORMAT},
        {"fractional id", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0.5},\"merges\":[]}}", "model.vocab", A3_EFORMAT},
        {"huge id", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e12},\"merges\":[]}}", "model.vocab", A3_EFORMAT},
        {"string id", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"},\"merges\":[]}}", "model.vocab", A3_EFORMAT},
        {"id twice", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}", "id 0 used twice", A3_EFORMAT},
        {"token twice", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1},\"merges\":[]}}", "appears twice", A3_EFORMAT},
        {"merge not in vocab", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
         "model.merges[0]", A3_EFORMAT},
        {"merge without space", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}",
         "model.merges[0]", A3_EFORMAT},
        {"merge with two spaces", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a a\"]}}",
         "model.merges[0]", A3_EFORMAT},
        {"merge pair of three", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[\"a\",\"a\",\"a\"]]}}",
         "model.merges[0]", A3_EFORMAT},
        {"merges not array", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}", "model.merges", A3_EFORMAT},
        {"added token without id", "{\"added_tokens\":[{\"content\":\"x\"}],\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "added_tokens[0]", A3_EFORMAT},
        {"added tokens not array", "{\"added_tokens\":{},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "added_tokens", A3_EFORMAT},
        {"dropout", "{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{\"a\":0},\"merges\":[]}}", "model.dropout",
         A3_EUNSUPPORTED},
        {"subword prefix", "{\"model\":{\"type\":\"BPE\",\"continuing_subword_prefix\":\"##\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "continuing_subword_prefix", A3_EUNSUPPORTED},
        {"Lowercase normalizer", "{\"normalizer\":{\"type\":\"Lowercase\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "normalizer.type", A3_EUNSUPPORTED},
        {"Whitespace pre-tokenizer", "{\"pre_tokenizer\":{\"type\":\"Whitespace\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "pre_tokenizer.type", A3_EUNSUPPORTED},
        {"bad regex", "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":\"Isolated\"},"
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "pre_tokenizer.Split.pattern", A3_EUNSUPPORTED},
        {"unknown split behavior", "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"},"
                                   "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "pre_tokenizer.Split", A3_EFORMAT},
        {"Metaspace two-char replacement", "{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"ab\"},"
                                           "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "Metaspace.replacement", A3_EFORMAT},
        {"WordPiece decoder", "{\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "decoder.type", A3_EUNSUPPORTED},
        {"step after ByteLevel", "{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"ByteLevel\"},"
                                 "{\"type\":\"Digits\"}]},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "after ByteLevel", A3_EUNSUPPORTED},
        {"regex Replace normalizer", "{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" +\"},\"content\":\" \"},"
                                     "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "normalizer.Replace", A3_EUNSUPPORTED},
        {"unknown post-processor", "{\"post_processor\":{\"type\":\"Whatever\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
                                   "\"merges\":[]}}",
         "post_processor.type", A3_EUNSUPPORTED},
        {"template token not declared", "{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
                                        "{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{}},"
                                        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "post_processor.special_tokens", A3_EFORMAT},
        {"template id out of range", "{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
                                     "{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}],\"special_tokens\":{\"<s>\":"
                                     "{\"ids\":[7]}}},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "post_processor.special_tokens", A3_EFORMAT},
        {"template without $A", "{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[],\"special_tokens\":{}},"
                                "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "post_processor.single", A3_EUNSUPPORTED},
        {"template with $B", "{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"A\"}},"
                             "{\"Sequence\":{\"id\":\"B\"}}],\"special_tokens\":{}},"
                             "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "post_processor.single", A3_EUNSUPPORTED},
        {"Roberta without ids", "{\"post_processor\":{\"type\":\"RobertaProcessing\",\"cls\":[\"<s>\"],\"sep\":[\"</s>\",0]},"
                                "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
         "post_processor.RobertaProcessing", A3_EFORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char name[32];
        snprintf(name, sizeof name, "bad%zu.json", i);
        const char *path = tmp_text(name, cases[i].json);
        a3_tokenizer *t = (a3_tokenizer *)&t;
        a3_err e = {0};
        int rc = a3_tok_load_hf(path, &t, &e);
        CHECKF(rc == cases[i].code && t == NULL && strstr(e.msg, path) == e.msg &&
                   strstr(e.msg, cases[i].field) != NULL && !strchr(e.msg, '\n'),
               "%s: rc %d msg \"%s\"", cases[i].what, rc, e.msg);
    }
}

/* ---- directories, id files, refusals ----------------------------------- */

static void test_load_dir(void)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/model", tmp_dir);
    CHECK(mkdir(dir, 0700) == 0);
    a3_tokenizer *t = NULL;
    a3_err e = {0};
    CHECK(a3_tok_load_dir(dir, &t, &e) == A3_EIO && t == NULL && strstr(e.msg, dir));
    /* tokenizer.bin only: read to the end of the file. */
    blob b = l2c_blob(syn_pieces, syn_scores, 10);
    tmp_file("model/tokenizer.bin", b.p, b.n);
    free(b.p);
    CHECKF(a3_tok_load_dir(dir, &t, &e) == 0, "%s", e.msg);
    if (t) CHECK(a3_tok_vocab_size(t) == 269);
    a3_tok_free(t);
    /* tokenizer.json wins; what encoding adds stays the post-processor's
     * (tokenizer_config.json's bos_token and add_bos_token are not read, as
     * in HF); config.json supplies EOS. */
    tmp_text("model/tokenizer.json", bl_json);
    tmp_text("model/tokenizer_config.json", "{\"bos_token\":null,\"add_bos_token\":false}");
    tmp_text("model/config.json", "{\"bos_token_id\":27,\"eos_token_id\":[3,27]}");
    CHECKF(a3_tok_load_dir(dir, &t, &e) == 0, "%s", e.msg);
    if (t) CHECK(a3_tok_bos(t) == 26 && a3_tok_eos(t) == 3 && a3_tok_vocab_size(t) == 28);
    if (t) CHECK_IDS(t, "I'm", 1, 26, 0, 16);
    a3_tok_free(t);
    /* tokenizer_config.json's eos_token comes before config.json's. */
    tmp_text("model/tokenizer_config.json", "{\"bos_token\":{\"content\":\"<|end_of_text|>\"},"
                                            "\"eos_token\":{\"content\":\"<|end_of_text|>\"}}");
    CHECKF(a3_tok_load_dir(dir, &t, &e) == 0, "%s", e.msg);
    if (t) CHECK(a3_tok_bos(t) == 26 && a3_tok_eos(t) == 27);
    a3_tok_free(t);
    /* Llama 3's first tokenizer.json: a ByteLevel post-processor only, so
     * no BOS although tokenizer_config.json names one (HF adds none). */
    tmp_text("model/tokenizer.json", bl_l3base_json);
    CHECKF(a3_tok_load_dir(dir, &t, &e) == 0, "%s", e.msg);
    if (t) CHECK(a3_tok_bos(t) == -1 && a3_tok_eos(t) == 27);
    if (t) CHECK_IDS(t, "I'm", 1, 0, 16);
    a3_tok_free(t);
    tmp_text("model/tokenizer.json", bl_json);
    tmp_text("model/tokenizer_config.json", "{}");
    tmp_text("model/config.json", "{\"eos_token_id\":5000}");
    CHECK(a3_tok_load_dir(dir, &t, &e) == A3_EFORMAT && t == NULL && strstr(e.msg, "config.json"));
    tmp_text("model/config.json", "{not json");
    CHECK(a3_tok_load_dir(dir, &t, &e) == A3_EFORMAT && t == NULL && strstr(e.msg, "config.json"));
    /* A directory given to a3_tok_load_hf means its tokenizer.json. */
    CHECKF(a3_tok_load_hf(dir, &t, &e) == 0, "%s", e.msg);
    a3_tok_free(t);
    const char *names[] = {"tokenizer.bin", "tokenizer.json", "tokenizer_config.json", "config.json"};
    for (int i = 0; i < 4; i++) {
        char p[400];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void test_read_ids(void)
{
    const unsigned char good[] = {1, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0x10, 0x27, 0, 0};
    int32_t *ids = NULL;
    size_t n = 0;
    a3_err e = {0};
    CHECKF(a3_tok_read_ids(tmp_file("ids.bin", good, sizeof good), &ids, &n, &e) == 0, "%s", e.msg);
    CHECK(n == 3 && ids && ids[0] == 1 && ids[1] == 65535 && ids[2] == 10000);
    free(ids);
    CHECK(a3_tok_read_ids(tmp_file("empty.bin", "", 0), &ids, &n, &e) == 0 && n == 0);
    free(ids);
    const char *path = tmp_file("odd.bin", good, 7);
    CHECK(a3_tok_read_ids(path, &ids, &n, &e) == A3_EFORMAT && ids == NULL && strstr(e.msg, path));
    const unsigned char big[] = {0, 0, 0, 0x80};
    path = tmp_file("big.bin", big, 4);
    CHECK(a3_tok_read_ids(path, &ids, &n, &e) == A3_EFORMAT && ids == NULL && strstr(e.msg, path));
    CHECK(a3_tok_read_ids("/nonexistent/ids.bin", &ids, &n, &e) == A3_EIO);
}

static void test_save_refusals(void)
{
    a3_err e = {0};
    char path[300];
    snprintf(path, sizeof path, "%s/out.json", tmp_dir);
    a3_tokenizer *h = load_json("bl_src.json", bl_json);
    if (h) CHECK(a3_tok_save_hf(h, path, &e) == A3_EUNSUPPORTED && strstr(e.msg, path));
    a3_tok_free(h);
    /* Byte-fallback ids 3..258 must be <0x00>..<0xFF>: run.c hard-codes
     * byte + 3, HF looks the names up. */
    blob b = l2c_blob(syn_pieces, syn_scores, 10);
    memcpy(b.p + 4 + 3 * 8 + 5 + 5 + 6 + 8 + 3, "7", 1); /* <0x00> -> <0x70> */
    a3_tokenizer *t = NULL;
    CHECKF(a3_tok_load_llama2c(tmp_file("badbyte.bin", b.p, b.n), 0, &t, &e) == 0, "%s", e.msg);
    free(b.p);
    if (t) CHECKF(a3_tok_save_hf(t, path, &e) == A3_EUNSUPPORTED && strstr(e.msg, "token 3"), "%s", e.msg);
    a3_tok_free(t);
    CHECK(access(path, F_OK) != 0); /* nothing half-written */
}

/* Removes the files this run left in tmp_dir. */
static void cleanup_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmp_dir);
}

/* ---- a3 tokenize --------------------------------------------------------- */

/* Run `$A3_BIN args` through sh; exit status. */
static int run_sh(const char *bin, const char *args, const char *out, const char *errf)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2> '%s'", bin, args, out, errf);
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Lines of a file, and the widest (in bytes: an upper bound of columns). */
static int file_lines(const char *path, int *widest)
{
    FILE *f = fopen(path, "rb");
    int lines = 0, cur = 0, c;
    *widest = 0;
    while (f && (c = fgetc(f)) != EOF) {
        if (c == '\n') {
            lines++;
            cur = 0;
        } else if ((c & 0xC0) != 0x80 && ++cur > *widest) {
            *widest = cur;
        }
    }
    if (f) fclose(f);
    return lines;
}

/* The CLI writes what the library encodes; errors are one line with the
 * documented exit codes. */
static void test_cli_tokenize(void)
{
    const char *bin = getenv("A3_BIN");
    if (!bin || access(bin, X_OK) != 0) SKIP("A3_BIN not set (run via make check)");
    const char *model = "samples/sample-model", *text = "samples/eval.txt";
    char out[256], errf[256], ids[256], args[1024];
    snprintf(out, sizeof out, "%s/cli.out", tmp_dir);
    snprintf(errf, sizeof errf, "%s/cli.err", tmp_dir);
    snprintf(ids, sizeof ids, "%s/cli.ids", tmp_dir);
    a3_tokenizer *t = NULL;
    a3_err e = {0};
    char *s = NULL;
    size_t n = 0;
    CHECKF(a3_tok_load_dir(model, &t, &e) == 0 && a3_read_file(text, 1 << 24, &s, &n, &e) == 0, "%s", e.msg);
    if (!t || !s) {
        a3_tok_free(t);
        free(s);
        return;
    }
    for (int special = 1; special >= 0; special--) {
        snprintf(args, sizeof args, "tokenize %s --text %s --output '%s' %s", model, text, ids,
                 special ? "" : "--no-special");
        CHECK(run_sh(bin, args, out, errf) == 0);
        int32_t *want = NULL, *got = NULL;
        size_t nw = 0, ng = 0;
        CHECK(a3_tok_encode(t, s, n, special, &want, &nw, &e) == 0);
        CHECK(a3_tok_read_ids(ids, &got, &ng, &e) == 0 && ng == nw && nw > 100 &&
              memcmp(got, want, nw * sizeof *got) == 0 && (got[0] == 1) == special);
        free(want);
        free(got);
    }
    /* Standard input and --show: a header, one line per token, the summary
     * (5 lines), all within 80 columns. */
    int32_t *ids_v = NULL;
    size_t nv = 0;
    CHECK(a3_tok_encode(t, s, n < 2000 ? n : 2000, 1, &ids_v, &nv, &e) == 0);
    snprintf(args, sizeof args, "tokenize %s - --show < '%s'", model, tmp_file("head.txt", s, n < 2000 ? n : 2000));
    CHECK(run_sh(bin, args, out, errf) == 0);
    int widest, lines = file_lines(out, &widest);
    CHECKF(lines == (int)nv + 6 && widest <= 80, "%d lines for %zu tokens, %d columns", lines, nv, widest);
    free(ids_v);
    /* Errors: missing file 1, usage 2, unsupported 3; one line each. */
    static const struct {
        const char *args;
        int code;
        const char *has;
    } bad[] = {
        {"tokenize samples/sample-model --text /nonexistent/t.txt", 1, "/nonexistent/t.txt"},
        {"tokenize samples/sample-model", 2, "--text"},
        {"tokenize --text samples/eval.txt", 2, "MODEL_DIR"},
        {"tokenize samples --text samples/eval.txt", 1, "tokenizer.json"},
        {"tokenize TMP/wp.json --text samples/eval.txt", 3, "model.type"},
    };
    tmp_text("wp.json", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char a[512];
        const char *tmpk = strstr(bad[i].args, "TMP");
        if (tmpk) snprintf(a, sizeof a, "%.*s%s%s", (int)(tmpk - bad[i].args), bad[i].args, tmp_dir, tmpk + 3);
        else snprintf(a, sizeof a, "%s", bad[i].args);
        CHECKF(run_sh(bin, a, out, errf) == bad[i].code, "a3 %s", a);
        int w, l = file_lines(errf, &w);
        char *msg = NULL;
        size_t ml;
        CHECKF(l == 1 && a3_read_file(errf, 4096, &msg, &ml, NULL) == 0 && strstr(msg, bad[i].has), "a3 %s: %s", a,
               msg ? msg : "(no message)");
        free(msg);
    }
    free(s);
    a3_tok_free(t);
}

int main(void)
{
    if (!test_tmpdir(tmp_dir, sizeof tmp_dir)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    RUN(test_l2c_encode);
    RUN(test_l2c_decode);
    RUN(test_l2c_save_hf);
    RUN(test_l2c_score_tie);
    RUN(test_l2c_corrupt);
    RUN(test_tok512_known);
    RUN(test_tok512_save_hf);
    RUN(test_hf_sp);
    RUN(test_hf_bytelevel);
    RUN(test_post_processors);
    RUN(test_plain_vocab_specials);
    RUN(test_normalizers);
    RUN(test_decode_spaces);
    RUN(test_hf_corrupt);
    RUN(test_cli_tokenize);
    RUN(test_load_dir);
    RUN(test_read_ids);
    RUN(test_save_refusals);
    cleanup_tmp();
    return test_summary("tokenizer");
}
