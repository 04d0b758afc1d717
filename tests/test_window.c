/* window: models with a sliding attention window (Mistral-7B-v0.1's
 * sliding_window 4096 below its 32768 context; Qwen2 with
 * use_sliding_window). a3 runs full attention, which is the model's own
 * computation for sequences no longer than the window, so such models are
 * accepted and only longer sequences are refused, with one line naming
 * sliding_window.
 *
 * Independent check: tests/helpers/ref_hf.c applies HF's sliding-window
 * mask (key s seen from position p iff p - s < window) in float64. Within
 * the window a3 must match it to the tolerance of test_model.c; one token
 * beyond, the reference itself shows that full attention would differ (so
 * the refusal is needed, not overcautious). */
#include <stdint.h>
#include <sys/wait.h>

#include "a3/config.h"
#include "a3/model.h"
#include "a3/synth.h"
#include "helpers/ref_hf.h"
#include "test.h"

#define WINDOW 16
#define LOGIT_TOL 2e-5 /* as test_model.c: float32 round-off, scaled */

static char tmp[64];

/* A random model in tmp/name whose config.json gets extra fields. */
static int make_model(const char *name, a3_arch arch, const char *extra, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/%s", tmp, name);
    a3_synth_spec s = {.arch = arch, .d = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 8,
                       .d_ff = 48, .vocab = 64, .max_seq = 64, .rope_theta = 10000.0, .dtype = A3_DT_F32,
                       .seed = 11, .qkv_bias = arch == A3_ARCH_QWEN2};
    a3_err err = {0};
    if (a3_synth_write(dir, &s, &err)) {
        fprintf(stderr, "  synth: %s\n", err.msg);
        return -1;
    }
    if (!extra || !*extra) return 0;
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text;
    size_t n;
    if (a3_read_file(path, 1 << 20, &text, &n, &err)) return -1;
    char *end = strrchr(text, '}');
    int rc = -1;
    if (end) {
        *end = 0;
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "%s, %s}\n", text, extra);
            rc = fclose(f) == 0 ? 0 : -1;
        }
    }
    free(text);
    return rc;
}

static void tokens(int32_t *t, int n)
{
    uint32_t x = 12345;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        t[i] = (int32_t)((x >> 8) % 64u);
    }
}

static void test_config(void)
{
    static const struct {
        a3_arch arch;
        const char *extra;
        int window, max_seqlen; /* -1: refused */
        const char *why;
    } cases[] = {
        {A3_ARCH_MISTRAL, "\"sliding_window\": 16", 16, 16, NULL},
        {A3_ARCH_MISTRAL, "\"sliding_window\": null", 0, 64, NULL},
        {A3_ARCH_MISTRAL, "\"sliding_window\": 4096", 4096, 64, NULL},
        {A3_ARCH_MISTRAL, "\"sliding_window\": 0", -1, 0, "sliding_window"},
        {A3_ARCH_MISTRAL, "\"sliding_window\": \"x\"", -1, 0, "sliding_window"},
        {A3_ARCH_QWEN2, "\"use_sliding_window\": true, \"sliding_window\": 16", 16, 16, NULL},
        {A3_ARCH_QWEN2, "\"use_sliding_window\": false, \"sliding_window\": 16", 0, 64, NULL},
        {A3_ARCH_QWEN2, "\"use_sliding_window\": true", -1, 0, "sliding_window"},
        {A3_ARCH_LLAMA, "", 0, 64, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char dir[128], name[16];
        snprintf(name, sizeof name, "c%zu", i);
        if (make_model(name, cases[i].arch, cases[i].extra, dir, sizeof dir)) {
            CHECKF(0, "case %zu: could not write the model", i);
            continue;
        }
        a3_err err = {0};
        a3_model *m = NULL;
        int rc = a3_model_open(dir, &m, &err);
        if (cases[i].window < 0) {
            CHECKF(rc != 0 && strstr(err.msg, cases[i].why) && !strchr(err.msg, '\n'), "case %zu: '%s'", i, err.msg);
            continue;
        }
        CHECKF(rc == 0, "case %zu: %s", i, err.msg);
        if (!m) continue;
        const a3_config *c = a3_model_config(m);
        CHECKF(c->sliding_window == cases[i].window && a3_config_max_seqlen(c) == cases[i].max_seqlen,
               "case %zu: window %d, max seqlen %d", i, c->sliding_window, a3_config_max_seqlen(c));
        CHECK(a3_config_check_seqlen(c, dir, cases[i].max_seqlen, &err) == A3_OK);
        if (cases[i].window > 0 && cases[i].window < 64) {
            CHECK(a3_config_check_seqlen(c, dir, cases[i].window + 1, &err) == A3_EUNSUPPORTED);
            CHECKF(strstr(err.msg, "config.json: sliding_window:") && strstr(err.msg, "16") && !strchr(err.msg, '\n'),
                   "'%s'", err.msg);
        }
        a3_model_free(m);
    }
}

/* a3 = HF (with its window) up to the window; past it the library refuses. */
static void test_exact_within_window(void)
{
    char dir[128], full[128];
    CHECK(make_model("mistral", A3_ARCH_MISTRAL, "\"sliding_window\": 16", dir, sizeof dir) == 0);
    CHECK(make_model("nowindow", A3_ARCH_MISTRAL, "", full, sizeof full) == 0); /* same seed, same weights */
    a3_err err = {0};
    a3_model *m = NULL;
    CHECKF(a3_model_open(dir, &m, &err) == 0, "%s", err.msg);
    if (!m) return;
    int32_t tok[WINDOW + 1];
    tokens(tok, WINDOW + 1);
    int V = 64;
    float hid[WINDOW * 32], lg[WINDOW * 64];
    double ref[(WINDOW + 1) * 64], ref_full[(WINDOW + 1) * 64];
    CHECKF(a3_model_forward(m, tok, 1, WINDOW, hid, &err) == 0, "%s", err.msg);
    CHECK(a3_model_logits(m, hid, WINDOW, lg, &err) == 0);
    CHECK(ref_hf_logits(dir, tok, WINDOW, ref) == 0);
    double scale = 1, worst = 0;
    for (int i = 0; i < WINDOW * V; i++) scale = fmax(scale, fabs(ref[i]));
    for (int i = 0; i < WINDOW * V; i++) worst = fmax(worst, fabs(lg[i] - ref[i]));
    CHECKF(worst / scale <= LOGIT_TOL, "max relative logit error %.3g within the window", worst / scale);

    /* One token more: refused by every entry point that runs sequences. */
    float hid2[(WINDOW + 1) * 32];
    CHECK(a3_model_forward(m, tok, 1, WINDOW + 1, hid2, &err) == A3_EUNSUPPORTED && strstr(err.msg, "sliding_window"));
    CHECK(a3_model_run_layer(m, 0, hid2, 1, WINDOW + 1, 0, NULL, &err) == A3_EUNSUPPORTED);
    a3_decoder *d = NULL;
    CHECK(a3_decoder_new(m, WINDOW + 1, &d, &err) == A3_EUNSUPPORTED && d == NULL);
    CHECK(a3_decoder_new(m, WINDOW, &d, &err) == A3_OK);
    a3_decoder_free(d);
    a3_model_free(m);

    /* ...and needed: at position WINDOW the windowed model differs from full
     * attention on the same weights by far more than round-off. */
    CHECK(ref_hf_logits(dir, tok, WINDOW + 1, ref) == 0);
    CHECK(ref_hf_logits(full, tok, WINDOW + 1, ref_full) == 0);
    double before = 0, at = 0;
    for (int i = 0; i < WINDOW * V; i++) before = fmax(before, fabs(ref[i] - ref_full[i]));
    for (int i = WINDOW * V; i < (WINDOW + 1) * V; i++) at = fmax(at, fabs(ref[i] - ref_full[i]));
    CHECKF(before == 0 && at / scale > 1e-3, "window vs full: %.3g before, %.3g at position %d", before, at, WINDOW);
}

/* Run `$A3_BIN args`; exit status, stderr in tmp/err. */
static int run_a3(const char *bin, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s/out' 2> '%s/err'", bin, args, tmp, tmp);
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int err_has(const char *what)
{
    char path[128], *s = NULL;
    size_t n;
    snprintf(path, sizeof path, "%s/err", tmp);
    if (a3_read_file(path, 1 << 20, &s, &n, NULL)) return 0;
    int lines = 0;
    for (size_t i = 0; i < n; i++) lines += s[i] == '\n';
    int ok = strstr(s, what) != NULL && lines == 1;
    if (!ok) fprintf(stderr, "    stderr: %s", s);
    free(s);
    return ok;
}

/* Where the CLI chooses sequence lengths: defaults stay inside the window,
 * explicit longer ones are refused (exit 3) before any work. */
static void test_cli(void)
{
    const char *bin = getenv("A3_BIN");
    if (!bin || access(bin, X_OK) != 0) SKIP("A3_BIN not set (run via make check)");
    char dir[128], ids[128], args[1024];
    CHECK(make_model("cli", A3_ARCH_MISTRAL, "\"sliding_window\": 16", dir, sizeof dir) == 0);
    snprintf(ids, sizeof ids, "%s/t.ids", tmp);
    unsigned char raw[400 * 4];
    int32_t t[400];
    tokens(t, 400);
    for (int i = 0; i < 400; i++) {
        raw[4 * i] = (unsigned char)t[i];
        raw[4 * i + 1] = raw[4 * i + 2] = raw[4 * i + 3] = 0;
    }
    CHECK(a3_write_file_atomic(ids, raw, sizeof raw, NULL) == 0);
    snprintf(args, sizeof args, "eval '%s' --ids '%s' --seqlen 17", dir, ids);
    CHECK(run_a3(bin, args) == 3 && err_has("sliding_window"));
    snprintf(args, sizeof args, "eval '%s' --ids '%s' --seqlen 16", dir, ids);
    CHECK(run_a3(bin, args) == 0);
    snprintf(args, sizeof args, "eval '%s' --ids '%s'", dir, ids); /* default: the window */
    CHECK(run_a3(bin, args) == 0);
    char path[128], *out = NULL;
    size_t n;
    snprintf(path, sizeof path, "%s/out", tmp);
    CHECK(a3_read_file(path, 1 << 20, &out, &n, NULL) == 0 && out && strstr(out, "seqlen 16"));
    free(out);
    snprintf(args, sizeof args, "calibrate '%s' --ids '%s' --samples 4 --seqlen 17 -o '%s/c.a3c'", dir, ids, tmp);
    CHECK(run_a3(bin, args) == 3 && err_has("sliding_window"));
    snprintf(args, sizeof args, "calibrate '%s' --ids '%s' --samples 4 -o '%s/c.a3c'", dir, ids, tmp);
    CHECK(run_a3(bin, args) == 0);
}

int main(void)
{
    if (!test_tmpdir(tmp, sizeof tmp)) {
        fprintf(stderr, "no temporary directory\n");
        return 1;
    }
    RUN(test_config);
    RUN(test_exact_within_window);
    RUN(test_cli);
    test_rm_rf(tmp);
    return test_summary("window");
}
