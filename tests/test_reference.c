/* reference: the runtime against float64 PyTorch references written by
 * scripts/make_reference.py (tests/data/): the embedded sample model (F16
 * weights, GQA, tied), a random Qwen2 model (q/k/v biases, head_dim derived,
 * untied) and a random Llama with llama3 RoPE scaling and an explicit
 * head_dim. Logits, greedy generation, perplexity and tokenizer cases. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>

#include "a3/eval.h"
#include "a3/model.h"
#include "a3/tokenizer.h"
#include "test.h"

static cJSON *load_json(const char *path)
{
    char *text = NULL;
    size_t n;
    if (a3_read_file(path, 1 << 24, &text, &n, NULL)) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

static int32_t *int_array(const cJSON *a, int *n)
{
    *n = cJSON_GetArraySize(a);
    int32_t *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    for (int i = 0; v && i < *n; i++) v[i] = (int32_t)cJSON_GetArrayItem(a, i)->valuedouble;
    return v;
}

/* Max |a3 - ref| relative to max(1, max |ref|) over the stored positions.
 * The reference runs in float64 on the same (F16-rounded) weights; a3 runs
 * float32: round-off ~1e-6 of the logit scale. 2e-5 catches any real
 * error (a wrong RoPE frequency or scale moves logits by ~1e-1 or more). */
static double logits_vs_ref(a3_model *m, const cJSON *ref)
{
    int n, np;
    int32_t *tok = int_array(cJSON_GetObjectItem(ref, "tokens"), &n);
    int32_t *pos = int_array(cJSON_GetObjectItem(ref, "logit_positions"), &np);
    const a3_config *c = a3_model_config(m);
    float *h = malloc((size_t)n * c->d * 4), *lg = malloc((size_t)n * c->vocab * 4);
    a3_err err = {0};
    double md = INFINITY, sc = 1;
    if (!a3_model_forward(m, tok, 1, n, h, &err) && !a3_model_logits(m, h, (size_t)n, lg, &err)) {
        md = 0;
        const cJSON *rows = cJSON_GetObjectItem(ref, "logits");
        for (int r = 0; r < np; r++) {
            const cJSON *row = cJSON_GetArrayItem(rows, r);
            for (int v = 0; v < c->vocab; v++) {
                double x = cJSON_GetArrayItem(row, v)->valuedouble;
                sc = fmax(sc, fabs(x));
                md = fmax(md, fabs(x - lg[(size_t)pos[r] * c->vocab + v]));
            }
        }
    } else fprintf(stderr, "  forward: %s\n", err.msg);
    free(tok), free(pos), free(h), free(lg);
    return md / sc;
}

static void check_tiny(const char *dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/ref.json", dir);
    cJSON *ref = load_json(path);
    a3_model *m = NULL;
    a3_err err = {0};
    CHECKF(ref != NULL, "cannot read %s", path);
    CHECKF(a3_model_open(dir, &m, &err) == 0, "%s", err.msg);
    if (ref && m) {
        double d = logits_vs_ref(m, ref);
        CHECKF(d <= 2e-5, "%s: logits differ from the float64 reference by %.3g of their scale", dir, d);
    }
    a3_model_free(m);
    cJSON_Delete(ref);
}

static void test_tiny_qwen2(void) { check_tiny("tests/data/tiny-qwen2"); }
static void test_tiny_llama3(void) { check_tiny("tests/data/tiny-llama3"); }

static void test_sample_logits_and_greedy(void)
{
    cJSON *ref = load_json("tests/data/sample_ref.json");
    a3_model *m = NULL;
    a3_err err = {0};
    CHECK(ref != NULL);
    CHECKF(a3_model_open("samples/sample-model", &m, &err) == 0, "%s", err.msg);
    if (!ref || !m) goto done;
    double d = logits_vs_ref(m, ref);
    CHECKF(d <= 2e-5, "sample model: logits differ by %.3g of their scale", d);
    /* Greedy from BOS: the reference's smallest margin is ~0.1, far above
     * float32 round-off, so the tokens must match exactly. */
    int n;
    const cJSON *g = cJSON_GetObjectItem(ref, "greedy");
    int32_t *want = int_array(cJSON_GetObjectItem(g, "tokens"), &n);
    const a3_config *c = a3_model_config(m);
    float *lg = malloc((size_t)c->vocab * 4);
    a3_decoder *dec = NULL;
    int32_t t = 1;
    CHECK(a3_decoder_new(m, n + 1, &dec, &err) == 0);
    for (int i = 0; dec && i < n; i++) {
        CHECK(a3_decoder_step(dec, &t, 1, lg, &err) == 0);
        int best = 0;
        for (int v = 1; v < c->vocab; v++) best = lg[v] > lg[best] ? v : best;
        CHECKF(best == want[i], "greedy step %d: %d, reference %d", i, best, want[i]);
        t = best;
    }
    a3_decoder_free(dec);
    free(lg), free(want);
done:
    a3_model_free(m);
    cJSON_Delete(ref);
}

/* The reference NLL: ids = <s> + encode(eval.txt); windows start at
 * 0, 256, ...; each feeds ids[s : s+257] and scores the 256 tokens after
 * its first. Sums in float64 on both sides: 1e-5 absolute on the mean. */
static void test_sample_nll(void)
{
    cJSON *ref = load_json("tests/data/sample_ref.json");
    a3_model *m = NULL;
    a3_tokenizer *tok = NULL;
    a3_err err = {0};
    char *text = NULL;
    size_t len, n;
    int32_t *ids = NULL;
    CHECK(ref && a3_model_open("samples/sample-model", &m, &err) == 0 &&
          a3_tok_load_dir("samples/sample-model", &tok, &err) == 0 &&
          a3_read_file("samples/eval.txt", 1 << 24, &text, &len, &err) == 0 &&
          a3_tok_encode(tok, text, len, 1, &ids, &n, &err) == 0);
    if (ids) {
        const cJSON *nll = cJSON_GetObjectItem(ref, "nll");
        CHECK((double)n == cJSON_GetObjectItem(nll, "n_tokens_in_stream")->valuedouble);
        a3_seqs s = {0};
        for (size_t at = 0; at + 1 < n; at += 256) {
            size_t w = n - at < 257 ? n - at : 257;
            a3_seqs one;
            CHECK(a3_seqs_from_ids(ids + at, w, (int)w, 1, 0, &one, &err) == 0);
            s.seq = realloc(s.seq, (size_t)(s.n + 1) * sizeof *s.seq);
            s.len = realloc(s.len, (size_t)(s.n + 1) * sizeof *s.len);
            s.seq[s.n] = one.seq[0], s.len[s.n++] = one.len[0], s.n_tokens += one.len[0];
            free(one.seq), free(one.len);
        }
        a3_eval_result r;
        CHECK(a3_eval_nll(m, &s, &r, NULL, NULL, &err) == 0);
        CHECK((double)r.n_pred == cJSON_GetObjectItem(nll, "n_predicted")->valuedouble);
        CHECK_NEAR(r.mean_nll, cJSON_GetObjectItem(nll, "mean_nll")->valuedouble, 1e-5);
        a3_seqs_free(&s);
    }
    free(ids), free(text);
    a3_tok_free(tok);
    a3_model_free(m);
    cJSON_Delete(ref);
}

static void test_sample_tokenizer_cases(void)
{
    cJSON *ref = load_json("tests/data/sample_ref.json");
    a3_tokenizer *tok = NULL;
    a3_err err = {0};
    CHECK(ref && a3_tok_load_dir("samples/sample-model", &tok, &err) == 0);
    if (!ref || !tok) return;
    const cJSON *cases = cJSON_GetObjectItem(ref, "tokenizer_cases"), *cs;
    cJSON_ArrayForEach(cs, cases)
    {
        const char *text = cJSON_GetObjectItem(cs, "text")->valuestring;
        int n;
        int32_t *want = int_array(cJSON_GetObjectItem(cs, "ids"), &n), *got = NULL;
        size_t k = 0;
        CHECK(a3_tok_encode(tok, text, strlen(text), 0, &got, &k, &err) == 0);
        CHECKF((int)k == n && (n == 0 || memcmp(got, want, (size_t)n * 4) == 0), "ids differ for '%.40s'", text);
        free(want), free(got);
    }
    a3_tok_free(tok);
    cJSON_Delete(ref);
}

int main(void)
{
    RUN(test_tiny_qwen2);
    RUN(test_tiny_llama3);
    RUN(test_sample_logits_and_greedy);
    RUN(test_sample_nll);
    RUN(test_sample_tokenizer_cases);
    return test_summary("reference");
}
