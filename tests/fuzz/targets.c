/* Fuzz targets (contract in targets.h). Every target writes the input to a
 * fixed name in one private directory and calls the loader by path, as a
 * user's file reaches it; what a loader accepts is then used a little (a
 * forward pass, an allocation, an encode) so that values it let through
 * are exercised too, and a few invariants are checked where two library
 * paths must agree. An invariant that breaks calls fz_fail, which prints
 * and aborts: libFuzzer and the replay test both see the abort. */
#define _GNU_SOURCE /* mkdtemp, memmem */
#include "targets.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "a3/cache.h"
#include "a3/cleanup.h"
#include "a3/config.h"
#include "a3/crc32.h"
#include "a3/llama2c.h"
#include "a3/model.h"
#include "a3/plan.h"
#include "a3/pred.h"
#include "a3/safetensors.h"
#include "a3/tokenizer.h"
#include "../helpers/files.h"
#include "../helpers/fixture.h"

/* ---- the private directory ----------------------------------------------------- */

/* Flat but for one flat subdirectory, model/ (config.json and
 * model.safetensors: the model and config targets' model directory). */
static char fz_dir[256];

static tfix fz_fix;      /* the pred target's model and cache */
static int fz_fix_state; /* 0 not made yet, 1 made, -1 failed */

void fz_cleanup(void)
{
    if (fz_fix_state) tfix_down(&fz_fix), fz_fix_state = 0;
    if (!fz_dir[0]) return;
    char p[320];
    snprintf(p, sizeof p, "%s/model", fz_dir);
    a3_cleanup_remove(p);
    a3_cleanup_remove(fz_dir);
    fz_dir[0] = '\0';
}

static void cleanup_at_exit(void)
{
    static int registered;
    if (!registered++) atexit(fz_cleanup);
}

static void fz_fail(const char *target, const char *what)
{
    fprintf(stderr, "fuzz %s: invariant broken: %s\n", target, what);
    abort();
}

/* The directory, created on first use; exits if it cannot be (a fuzz run
 * without somewhere to write proves nothing). */
static const char *dir(void)
{
    if (fz_dir[0]) return fz_dir;
    const char *t = getenv("TMPDIR");
    snprintf(fz_dir, sizeof fz_dir, "%s/a3-fuzz-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(fz_dir)) {
        perror("fuzz: mkdtemp");
        exit(2);
    }
    cleanup_at_exit();
    char p[320];
    snprintf(p, sizeof p, "%s/model", fz_dir);
    if (mkdir(p, 0700) != 0) {
        perror(p);
        exit(2);
    }
    return fz_dir;
}

/* dir()/name with the input's bytes in it; exits with a message if the
 * write failed, which is the harness's problem, not the input's. */
static const char *put(const char *name, const uint8_t *data, size_t size, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir(), name);
    if (tf_write_bytes(path, data, size) != 0) {
        perror(path);
        exit(2);
    }
    return path;
}

/* ---- safetensors --------------------------------------------------------------- */

volatile unsigned fz_sink; /* keeps the reads of tensor bytes */

/* Every tensor's bytes are read (a range outside the mapping would fault
 * here) and the float ones converted (NaN/Inf refused, not crashed on). */
static int fz_safetensors(const uint8_t *data, size_t size)
{
    char path[320];
    a3_err err = {0};
    a3_st_set *st = NULL;
    int rc = a3_st_open_file(put("in.safetensors", data, size, path, sizeof path), &st, &err);
    if (rc != A3_OK) return rc;
    unsigned sum = 0;
    for (size_t i = 0; i < a3_st_count(st); i++) {
        const a3_st_tensor *t = a3_st_get(st, i);
        if (!t || a3_st_find(st, t->name) != t) fz_fail("safetensors", "a tensor is not found by its own name");
        if (t->nbytes != t->numel * a3_dtype_size(t->dtype)) fz_fail("safetensors", "nbytes != numel * dtype size");
        const unsigned char *b = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sum += b[k];
        if ((t->dtype == A3_DT_F32 || t->dtype == A3_DT_F16 || t->dtype == A3_DT_BF16) && t->numel <= 4096) {
            float buf[4096];
            (void)a3_st_load_f32_part(st, t->name, 0, t->numel, buf, &err);
        }
    }
    if (a3_st_get(st, a3_st_count(st)) != NULL) fz_fail("safetensors", "a tensor past the end");
    fz_sink = sum;
    a3_st_free(st);
    return A3_OK;
}

/* ---- a model: a fixed config.json and the input as its weights ---------------- */

/* The config of `a3 synth --like tiny --layers 1` (its model.safetensors,
 * seed 1, is this target's valid seed). */
static const char TINY_CONFIG[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 32,"
    " \"intermediate_size\": 64, \"num_hidden_layers\": 1, \"num_attention_heads\": 4,"
    " \"num_key_value_heads\": 4, \"head_dim\": 8, \"vocab_size\": 96, \"max_position_embeddings\": 64,"
    " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000, \"hidden_act\": \"silu\", \"tie_word_embeddings\": false,"
    " \"bos_token_id\": 1, \"eos_token_id\": 2, \"torch_dtype\": \"float32\"}";

/* Opened, then one forward pass of 2 x 4 tokens (weights with NaN/Inf
 * must be refused at open or by the pass, never produce numbers). */
static int fz_model(const uint8_t *data, size_t size)
{
    char path[320];
    put("model/config.json", (const uint8_t *)TINY_CONFIG, sizeof TINY_CONFIG - 1, path, sizeof path);
    put("model/model.safetensors", data, size, path, sizeof path);
    snprintf(path, sizeof path, "%s/model", dir());
    a3_err err = {0};
    a3_model *m = NULL;
    int rc = a3_model_open(path, &m, &err);
    if (rc != A3_OK) return rc;
    a3_model_set_threads(m, 1);
    static const int32_t tok[8] = {1, 5, 17, 95, 1, 0, 33, 64};
    float hidden[8 * 32];
    rc = a3_model_forward(m, tok, 2, 4, hidden, &err);
    if (rc == A3_OK)
        for (int i = 0; i < 8 * 32; i++)
            if (!isfinite(hidden[i])) fz_fail("model", "forward pass returned NaN/Inf without an error");
    a3_model_free(m);
    return rc;
}

/* ---- config.json --------------------------------------------------------------- */

static int fz_config(const uint8_t *data, size_t size)
{
    char path[320];
    put("model/config.json", data, size, path, sizeof path);
    snprintf(path, sizeof path, "%s/model", dir());
    a3_err err = {0};
    a3_config cfg;
    memset(&cfg, 0, sizeof cfg);
    int rc = a3_config_load(path, &cfg, &err);
    if (rc != A3_OK) return rc;
    (void)a3_config_max_seqlen(&cfg);
    a3_config_free(&cfg);
    return A3_OK;
}

/* ---- plan JSON ----------------------------------------------------------------- */

/* A plan that parses writes JSON that parses to the same JSON again. */
static int fz_plan(const uint8_t *data, size_t size)
{
    a3_err err = {0};
    a3_plan *p = NULL, *q = NULL;
    int rc = a3_plan_parse("plan.json", (const char *)data, size, &p, &err);
    if (rc != A3_OK) return rc;
    (void)a3_plan_validate(p, NULL, 0, &err);
    a3_cost_counts cc;
    a3_plan_costs(p, &cc);
    char *j1 = NULL, *j2 = NULL;
    size_t n1 = 0, n2 = 0;
    if (a3_plan_to_json(p, &j1, &n1, &err) != A3_OK) fz_fail("plan", "a parsed plan cannot be written");
    if (a3_plan_parse("plan.json", j1, n1, &q, &err) != A3_OK) {
        fprintf(stderr, "%s\n", err.msg);
        fz_fail("plan", "a written plan does not parse");
    }
    if (a3_plan_to_json(q, &j2, &n2, &err) != A3_OK) fz_fail("plan", "a reparsed plan cannot be written");
    if (n1 != n2 || memcmp(j1, j2, n1) != 0) fz_fail("plan", "write(parse(write(p))) != write(p)");
    free(j1), free(j2);
    a3_plan_free(p), a3_plan_free(q);
    return A3_OK;
}

/* ---- calibration cache --------------------------------------------------------- */

/* Recompute the metadata's and every whole section's CRC in b, so that the
 * mutations reach the checks behind the CRCs (the CRC checks themselves
 * are tests/test_cache.c's). Layout: include/a3/cache.h. */
static void fix_crcs(uint8_t *b, size_t n)
{
    if (n < 28) return;
    uint64_t J = tf_get_le64(b + 16);
    if (J > n - 28) return;
    tf_put_le32(b + 24 + J, a3_crc32(b + 24, (size_t)J));
    size_t off = 28 + (size_t)J;
    while (off + 24 <= n) {
        uint64_t cnt = tf_get_le64(b + off + 8);
        size_t es = tf_get_le32(b + off + 16) == 1 ? 4 : 8;
        if (cnt > (n - off - 24) / es) return;
        tf_put_le32(b + off + 20, a3_crc32(b + off + 24, (size_t)cnt * es));
        off += 24 + (size_t)cnt * es;
    }
}

/* Whole load and lazy open must agree: a cache load takes is opened and
 * every layer needed without error, and one load refuses fails in open or
 * in some layer's need. What loads is planned on (uniform and greedy). */
static int fz_cache(const uint8_t *data, size_t size)
{
    uint8_t *b = malloc(size ? size : 1);
    if (!b) exit(2);
    memcpy(b, data, size);
    fix_crcs(b, size);
    char path[320];
    put("in.cache", b, size, path, sizeof path);
    free(b);
    a3_err err = {0};
    a3_cache *c = NULL, *lz = NULL;
    int rc = a3_cache_load(path, &c, &err);
    int lazy = a3_cache_open(path, NULL, NULL, &lz, &err);
    if (lazy == A3_OK)
        for (int l = 0; l < lz->n_layers && lazy == A3_OK; l++) lazy = a3_cache_need(lz, l, &err);
    if ((rc == A3_OK) != (lazy == A3_OK)) {
        fprintf(stderr, "load %d, open+need %d: %s\n", rc, lazy, err.msg);
        fz_fail("cache", "a3_cache_load and a3_cache_open + a3_cache_need disagree");
    }
    a3_cache_free(lz);
    if (rc != A3_OK) return rc;
    a3_plan *p = NULL;
    if (a3_plan_from_cache(c, &p, &err) == A3_OK) {
        a3_plan_default_methods(p, c);
        p->budget = A3_BUDGET_PARAMS, p->budget_pct = 30;
        for (int s = 0; s < 2; s++) {
            p->alloc.strategy = s ? A3_STRATEGY_GREEDY : A3_STRATEGY_UNIFORM;
            if (a3_plan_allocate(p, c, &err) == A3_OK && a3_plan_validate(p, c, 0, &err) != A3_OK) {
                fprintf(stderr, "%s\n", err.msg);
                fz_fail("cache", "an allocated plan does not validate against its cache");
            }
        }
    }
    a3_plan_free(p);
    a3_cache_free(c);
    return A3_OK;
}

/* ---- prediction sidecar -------------------------------------------------------- */

/* A sidecar belongs to one cache: the target's is a tiny calibrated model
 * (tests/helpers/fixture.h, "gqa" with Ru), made once per process. A
 * calibration is the same on every run of one machine, not across BLAS
 * kernels, so no sidecar is committed: fz_pred_seed writes a valid one. */
static const tfix *pred_fixture(void)
{
    if (!fz_fix_state) {
        fz_fix_state = tfix_synth(&fz_fix, "gqa", 1, 4, 16, 7, 1) == 0 ? 1 : -1;
        if (fz_fix_state < 0) {
            fprintf(stderr, "fuzz pred: cannot make the fixture\n");
            exit(2);
        }
        cleanup_at_exit();
    }
    return &fz_fix;
}

int fz_pred_seed(const char *path)
{
    const tfix *f = pred_fixture();
    a3_err err = {0};
    a3_pred *pr = NULL;
    a3_probe_opts po = {.target = 0.3};
    int rc = a3_pred_new(f->c, &pr, &err);
    if (rc == A3_OK) rc = a3_pred_curves(f->m, f->c, pr, NULL, NULL, &err);
    if (rc == A3_OK) rc = a3_probe(f->m, f->c, pr, f->win, f->nw, f->len, &po, NULL, NULL, &err);
    if (rc == A3_OK) rc = a3_pred_save(pr, path, &err);
    if (rc) fprintf(stderr, "fuzz pred: %s\n", err.msg);
    a3_pred_free(pr);
    return rc;
}

/* What loads is planned with (greedy uses the probe's sensitivities, the
 * summary its NLL model): a plan from a sidecar that loaded has finite
 * losses and validates. */
static int fz_pred(const uint8_t *data, size_t size)
{
    const tfix *f = pred_fixture();
    char path[320];
    a3_err err = {0};
    a3_pred *pr = NULL;
    int rc = a3_pred_load(put("in.pred", data, size, path, sizeof path), f->c, &pr, &err);
    if (rc != A3_OK) return rc;
    a3_plan *p = NULL;
    if (a3_plan_from_cache(f->c, &p, &err) != A3_OK) fz_fail("pred", "no plan from the fixture's cache");
    a3_plan_default_methods(p, f->c);
    p->budget = A3_BUDGET_PARAMS, p->budget_pct = 30;
    for (int s = 0; s < 2; s++) {
        p->alloc.strategy = s ? A3_STRATEGY_GREEDY : A3_STRATEGY_UNIFORM;
        if (a3_plan_allocate_with(p, f->c, pr, &err) != A3_OK) continue;
        if (a3_plan_validate(p, f->c, 0, &err) != A3_OK) {
            fprintf(stderr, "%s\n", err.msg);
            fz_fail("pred", "a plan allocated with a sidecar that loaded does not validate");
        }
        if (p->loss.nll_known && !isfinite(p->loss.dnll)) fz_fail("pred", "predicted NLL change not finite");
    }
    a3_plan_free(p);
    a3_pred_free(pr);
    return A3_OK;
}

/* ---- tokenizers ---------------------------------------------------------------- */

/* Text with ASCII, multi-byte UTF-8, a control byte, invalid UTF-8 and
 * spaces to merge or split: what encode sees from real files. */
static const char FZ_TEXT[] = "Hello  world\n\tcafe\xcc\x81 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80 12345 \x01 \xff\xfe end.";

static void exercise_tok(const char *target, const a3_tokenizer *t)
{
    a3_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    for (int special = 0; special < 2; special++) {
        if (a3_tok_encode(t, FZ_TEXT, sizeof FZ_TEXT - 1, special, &ids, &n, &err) != A3_OK) continue;
        int prev = -1;
        char buf[512];
        for (size_t i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= a3_tok_vocab_size(t)) fz_fail(target, "encode gave an id outside the vocabulary");
            (void)a3_tok_decode(t, prev, ids[i], buf, sizeof buf);
            size_t len;
            (void)a3_tok_piece(t, ids[i], &len);
            prev = ids[i];
        }
        free(ids);
        ids = NULL;
    }
}

static int fz_tokenizer_json(const uint8_t *data, size_t size)
{
    char path[320];
    a3_err err = {0};
    a3_tokenizer *t = NULL;
    int rc = a3_tok_load_hf(put("tokenizer.json", data, size, path, sizeof path), &t, &err);
    if (rc != A3_OK) return rc;
    exercise_tok("tokenizer_json", t);
    a3_tok_free(t);
    return A3_OK;
}

/* The input as text, through two fixed tokenizers: the sample model's
 * (SentencePiece layout with all 256 byte-fallback tokens, so decoding
 * the ids gives the text back: a3_tok_decode's contract) and a Llama 3
 * layout (regex split + byte-level BPE with a 26-token vocabulary: most
 * text meets no token, which HF drops). Files are read relative to the
 * repository root, where make fuzz and make check run. */
static int fz_encode(const uint8_t *data, size_t size)
{
    static a3_tokenizer *sp, *bl;
    a3_err err = {0};
    if (!sp && (a3_tok_load_hf("samples/sample-model/tokenizer.json", &sp, &err) ||
                a3_tok_load_hf("tests/fuzz/corpus/tokenizer_json/ok-llama3-layout.json", &bl, &err))) {
        fprintf(stderr, "fuzz encode: %s (run from the repository root)\n", err.msg);
        exit(2);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = a3_tok_encode(sp, (const char *)data, size, 0, &ids, &n, &err);
    if (rc != A3_OK) return rc;
    /* The round trip holds for text without U+2581 (the tokenizer's own
     * space mark: it decodes to a space) and without an added token's text
     * (as in HF, the text after one is encoded as a new start, with the
     * SentencePiece space before it: found by this target). */
    static const char *const marks[] = {"\xe2\x96\x81", "<unk>", "<s>", "</s>"};
    int mark = 0;
    for (size_t i = 0; i < sizeof marks / sizeof *marks; i++)
        mark |= memmem(data, size, marks[i], strlen(marks[i])) != NULL;
    char *back = malloc(4 * size + 64);
    if (!back) exit(2);
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        int w = a3_tok_decode(sp, i ? ids[i - 1] : -1, ids[i], back + len, 4 * size + 64 - len);
        if (w < 0) fz_fail("encode", "decode needs more than 4 bytes per input byte");
        len += (size_t)w;
    }
    if (!mark && (len != size || memcmp(back, data, size) != 0)) fz_fail("encode", "decode(encode(text)) != text");
    free(back), free(ids);
    ids = NULL;
    rc = a3_tok_encode(bl, (const char *)data, size, 1, &ids, &n, &err);
    for (size_t i = 0; rc == A3_OK && i < n; i++)
        if (ids[i] < 0 || ids[i] >= a3_tok_vocab_size(bl)) fz_fail("encode", "an id outside the vocabulary");
    free(ids);
    return rc;
}

static int fz_tokenizer_bin(const uint8_t *data, size_t size)
{
    char path[320];
    a3_err err = {0};
    a3_tokenizer *t = NULL;
    int rc = a3_tok_load_llama2c(put("tokenizer.bin", data, size, path, sizeof path), 0, &t, &err);
    if (rc != A3_OK) return rc;
    exercise_tok("tokenizer_bin", t);
    a3_tok_free(t);
    return A3_OK;
}

/* ---- llama2.c checkpoint ------------------------------------------------------- */

static int fz_llama2c(const uint8_t *data, size_t size)
{
    char path[320];
    a3_err err = {0};
    a3_llama2c *m = NULL;
    int rc = a3_llama2c_open(put("in.bin", data, size, path, sizeof path), &m, &err);
    if (rc != A3_OK) return rc;
    if (a3_llama2c_file_size(&m->config) != m->map_size) fz_fail("llama2c", "opened with a size the layout does not give");
    a3_llama2c_close(m);
    return A3_OK;
}

/* ---- the table ----------------------------------------------------------------- */

const fz_target fz_targets[] = {
    {"safetensors", fz_safetensors, "a .safetensors file"},
    {"model", fz_model, "model.safetensors of a fixed tiny config"},
    {"config", fz_config, "a config.json"},
    {"plan", fz_plan, "a plan JSON"},
    {"cache", fz_cache, "a calibration cache (CRCs fixed up)"},
    {"pred", fz_pred, "a prediction sidecar (CACHE.pred) of a fixed cache"},
    {"tokenizer_json", fz_tokenizer_json, "a Hugging Face tokenizer.json"},
    {"encode", fz_encode, "text to encode with two fixed tokenizers"},
    {"tokenizer_bin", fz_tokenizer_bin, "a llama2.c tokenizer.bin"},
    {"llama2c", fz_llama2c, "a llama2.c checkpoint"},
};
const int fz_n_targets = (int)(sizeof fz_targets / sizeof *fz_targets);

const fz_target *fz_find(const char *name)
{
    for (int i = 0; i < fz_n_targets; i++)
        if (strcmp(fz_targets[i].name, name) == 0) return &fz_targets[i];
    return NULL;
}
