/* a3 tokenize MODEL (--text FILE | -): inspect tokenization, write --ids
 * files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "a3/tokenizer.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 tokenize MODEL_DIR (--text FILE | -) [--ids-out FILE] [--show]\n"
    "                   [--no-special]\n\n"
    "Tokenize a UTF-8 text with a model's tokenizer as one stream, exactly as\n"
    "eval (stream protocol) and calibrate do, and print a summary: the\n"
    "tokenizer, the special tokens it adds, the number of tokens. MODEL_DIR is\n"
    "a model directory (tokenizer.json, else tokenizer.bin) or a\n"
    "tokenizer.json / llama2.c tokenizer.bin file itself.\n\n"
    "options:\n"
    "  --text FILE      the text (- or a lone - reads standard input)\n"
    "  -o, --output FILE, --ids-out FILE\n"
    "                   write the ids as little-endian uint32, the format\n"
    "                   --ids of eval and calibrate reads (written atomically)\n"
    "  --show           one line per token: position, id, the text it decodes\n"
    "                   to (escaped, in quotes) and its vocabulary piece\n"
    "  --no-special     leave out the special tokens (BOS...) the tokenizer's\n"
    "                   post-processor adds, like HF's add_special_tokens=False\n\n"
    "examples:\n"
    "  a3 tokenize models/llama3 --text wiki.txt --ids-out wiki.ids\n"
    "  a3 eval models/llama3 --ids wiki.ids\n"
    "  echo 'Hello world' | a3 tokenize models/qwen3 - --show\n\n"
    "exit codes: 0 ok, 1 bad input file, 2 usage, 3 unsupported tokenizer\n";

typedef struct {
    const char *model, *text, *ids_out, *dash;
    int show, no_special;
} tok_opts;

/* --text: one text only (a second --text or '-' is an error, not a
 * replacement). */
static int opt_text(const char *cmd, const char *opt, const char *val, void *ctx)
{
    tok_opts *o = ctx;
    if (o->text || o->dash) return cli_usage(cmd, "give one text");
    o->text = val;
    return 0;
}

static int parse(int argc, char **argv, tok_opts *o)
{
    const cli_opt opts[] = {CLI_FN("--text", opt_text, o), CLI_OUTPUT(&o->ids_out), CLI_STR("--ids-out", &o->ids_out),
                            CLI_FLAG("--show", &o->show), CLI_FLAG("--no-special", &o->no_special), {0}};
    /* "a3 tokenize MODEL -": the second argument may only be '-' */
    const cli_opt pos[] = {CLI_STR("MODEL_DIR", &o->model), CLI_STR("-", &o->dash), {0}};
    int rc = cli_parse(&(cli_spec){"tokenize", HELP, opts, pos}, argc, argv);
    if (rc) return rc;
    if (o->dash && strcmp(o->dash, "-")) return cli_usage("tokenize", "unexpected argument '%s'", o->dash);
    if (o->dash && o->text) return cli_usage("tokenize", "give one text");
    if (o->dash) o->text = o->dash;
    if (!o->model) return cli_usage("tokenize", "missing MODEL_DIR");
    if (!o->text) return cli_usage("tokenize", "missing --text FILE (or - for standard input)");
    return 0;
}

/* A directory, a tokenizer.json, or a llama2.c tokenizer.bin. */
static int load(const char *path, a3_tokenizer **t, a3_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0 || S_ISDIR(st.st_mode)) return a3_tok_load_dir(path, t, err);
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".json")) return a3_tok_load_hf(path, t, err);
    return a3_tok_load_llama2c(path, 0, t, err);
}

static int read_stdin(char **out, size_t *len, a3_err *err)
{
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    while (p) {
        n += fread(p + n, 1, cap - n - 1, stdin);
        if (ferror(stdin)) {
            free(p);
            return a3_err_set(err, A3_EIO, "standard input: read error");
        }
        if (feof(stdin)) break;
        if (n + 1 >= cap) {
            char *q = cap < ((size_t)1 << 34) ? realloc(p, cap * 2) : NULL;
            if (!q) break;
            p = q;
            cap *= 2;
        }
    }
    if (!p || !feof(stdin)) {
        free(p);
        return a3_err_set(err, A3_ENOMEM, "standard input: out of memory (or above 16 GiB)");
    }
    p[n] = 0;
    *out = p;
    *len = n;
    return A3_OK;
}

/* Bytes as a quoted C-like string, cut with "..." past max output chars. */
static void put_escaped(const char *s, size_t n, size_t max)
{
    char buf[512];
    size_t k = 0;
    buf[k++] = '"';
    for (size_t i = 0; i < n && k + 8 < sizeof buf; i++) {
        unsigned char c = (unsigned char)s[i];
        if (k > max) {
            memcpy(buf + k, "...", 3);
            k += 3;
            break;
        }
        if (c == '\n') k += (size_t)snprintf(buf + k, sizeof buf - k, "\\n");
        else if (c == '\t') k += (size_t)snprintf(buf + k, sizeof buf - k, "\\t");
        else if (c == '\r') k += (size_t)snprintf(buf + k, sizeof buf - k, "\\r");
        else if (c == '"' || c == '\\') k += (size_t)snprintf(buf + k, sizeof buf - k, "\\%c", c);
        else if (c < 0x20 || c == 0x7F) k += (size_t)snprintf(buf + k, sizeof buf - k, "\\x%02X", c);
        else if (c < 0x80) buf[k++] = (char)c;
        else {
            /* A whole UTF-8 character passes; a byte of a split one (byte
             * fallback, byte-level pieces) is shown as \xNN. */
            size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0, j = 1;
            while (len && j < len && i + j < n && ((unsigned char)s[i + j] & 0xC0) == 0x80) j++;
            if (len && j == len) {
                memcpy(buf + k, s + i, len);
                k += len;
                i += len - 1;
            } else k += (size_t)snprintf(buf + k, sizeof buf - k, "\\x%02X", c);
        }
    }
    buf[k++] = '"';
    fwrite(buf, 1, k, stdout);
}

static void show(const a3_tokenizer *t, const int32_t *ids, size_t n)
{
    printf("%7s %8s  %s\n", "#", "id", "text, piece");
    for (size_t i = 0; i < n; i++) {
        char buf[1024];
        int w = a3_tok_decode(t, i ? ids[i - 1] : -1, ids[i], buf, sizeof buf);
        size_t plen;
        const char *piece = a3_tok_piece(t, ids[i], &plen);
        printf("%7zu %8d  ", i, (int)ids[i]);
        /* 18 + 30 + 2 + 30 columns at most (put_escaped's cut at 22). */
        put_escaped(buf, w > 0 ? (size_t)w : 0, 22);
        if (w < 0 || (size_t)w != plen || memcmp(buf, piece, plen) != 0) {
            fputs("  ", stdout);
            put_escaped(piece, plen, 22);
        }
        fputc('\n', stdout);
    }
}

static void special_line(const a3_tokenizer *t, int no_special)
{
    const int32_t *b, *a;
    int nb = a3_tok_special(t, 0, &b), na = a3_tok_special(t, 1, &a);
    printf("special    ");
    if (nb + na == 0) printf("none (the tokenizer adds none)\n");
    else {
        for (int side = 0; side < 2; side++) {
            int n = side ? na : nb;
            const int32_t *v = side ? a : b;
            if (!n) continue;
            printf("%s%s", side && nb ? "; " : "", side ? "after: " : "before: ");
            for (int i = 0; i < n; i++) {
                size_t len;
                const char *p = a3_tok_piece(t, v[i], &len);
                printf("%s%d ", i ? ", " : "", (int)v[i]);
                put_escaped(p, len, 28);
            }
        }
        printf("%s\n", no_special ? " (left out: --no-special)" : "");
    }
}

int a3_cmd_tokenize(int argc, char **argv)
{
    tok_opts o = {0};
    int prc = parse(argc, argv, &o);
    if (prc) return prc < 0 ? 0 : prc;
    a3_err err = {0};
    a3_tokenizer *t = NULL;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    int stdin_text = !strcmp(o.text, "-");
    int rc = load(o.model, &t, &err);
    if (rc == A3_OK)
        rc = stdin_text ? read_stdin(&text, &len, &err) : a3_read_file(o.text, (size_t)1 << 34, &text, &len, &err);
    if (rc == A3_OK) rc = a3_tok_encode(t, text, len, !o.no_special, &ids, &n, &err);
    if (rc == A3_OK && o.ids_out) {
        unsigned char *le = a3_malloc_array(n ? n : 1, 4);
        for (size_t i = 0; le && i < n; i++)
            for (int k = 0; k < 4; k++) le[4 * i + (size_t)k] = (unsigned char)((uint32_t)ids[i] >> (8 * k));
        rc = le ? a3_write_file_atomic(o.ids_out, le, 4 * n, &err)
                : a3_err_set(&err, A3_ENOMEM, "%s: out of memory", o.ids_out);
        free(le);
    }
    if (rc == A3_OK) {
        if (o.show) show(t, ids, n);
        printf("tokenizer  %s\n", o.model);
        printf("kind       %s, vocabulary %d\n", a3_tok_kind(t), a3_tok_vocab_size(t));
        special_line(t, o.no_special);
        printf("text       %s, %zu bytes\n", stdin_text ? "standard input" : o.text, len);
        printf("tokens     %zu", n);
        if (n) printf(" (%.2f bytes per token)", (double)len / (double)n);
        printf("\n");
        if (o.ids_out) printf("ids        %s (%zu x uint32, little-endian)\n", o.ids_out, n);
    }
    free(ids);
    free(text);
    a3_tok_free(t);
    return rc ? cli_fail("tokenize", &err) : 0;
}
