/* model: the forward pass against an independent float64 reference
 * (tests/helpers/ref_hf.c) on random models of every supported kind, plus
 * batching, incremental decoding, perplexity and bad-input cases. */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "a3/eval.h"
#include "a3/kernels.h"
#include "a3/model.h"
#include "a3/synth.h"
#include "helpers/files.h"
#include "helpers/ref_hf.h"
#include "test.h"

static a3_synth_spec base_spec(void)
{
    a3_synth_spec s = {.arch = A3_ARCH_LLAMA, .d = 48, .n_layers = 2, .n_heads = 4, .n_kv_heads = 4,
                       .head_dim = 12, .d_ff = 80, .vocab = 101, .max_seq = 64, .rope_theta = 10000.0,
                       .dtype = A3_DT_F32, .seed = 7};
    return s;
}

static void make_tokens(int32_t *t, int n, int vocab, uint32_t seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = (int32_t)((seed >> 8) % (uint32_t)vocab);
    }
}

/* Max |a3 - ref| over all logits, relative to max(1, max |ref|). */
static double compare_to_ref(const char *dir, const int32_t *tok, int n)
{
    a3_err err = {0};
    a3_model *m;
    if (a3_model_open(dir, &m, &err)) {
        fprintf(stderr, "  open: %s\n", err.msg);
        return INFINITY;
    }
    const a3_config *c = a3_model_config(m);
    size_t nl = (size_t)n * c->vocab;
    float *hid = malloc((size_t)n * c->d * sizeof(float)), *lg = malloc(nl * sizeof(float));
    double *ref = malloc(nl * sizeof(double)), worst = INFINITY;
    if (!a3_model_forward(m, tok, 1, n, hid, &err) && !a3_model_logits(m, hid, (size_t)n, lg, &err) &&
        !ref_hf_logits(dir, tok, n, ref)) {
        double scale = 1, md = 0;
        for (size_t i = 0; i < nl; i++) scale = fmax(scale, fabs(ref[i]));
        for (size_t i = 0; i < nl; i++) md = fmax(md, fabs(lg[i] - ref[i]));
        worst = md / scale;
    } else if (err.msg[0]) fprintf(stderr, "  forward: %s\n", err.msg);
    free(hid);
    free(lg);
    free(ref);
    a3_model_free(m);
    return worst;
}

/* Float32 with K <= 128-term dot products and a few layers: relative
 * round-off is ~ sqrt(K) * 6e-8 per product, growing mildly through the
 * layers; 2e-5 of the logit scale is a comfortable bound that still
 * catches any real error (a wrong RoPE pair or scale moves logits by ~1). */
#define LOGIT_TOL 2e-5

static void check_kind(const char *what, a3_synth_spec s)
{
    char tmp[64], dir[128];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp);
    a3_err err = {0};
    int rc = a3_synth_write(dir, &s, &err);
    CHECKF(rc == 0, "%s: synth: %s", what, err.msg);
    int32_t tok[40];
    make_tokens(tok, 40, s.vocab, (uint32_t)s.seed);
    double rel = compare_to_ref(dir, tok, 40);
    CHECKF(rel <= LOGIT_TOL, "%s: max relative logit error %.3g", what, rel);
    test_rm_rf(tmp);
}

static void test_llama_mha_tied(void)
{
    a3_synth_spec s = base_spec();
    s.tie_embeddings = 1;
    check_kind("llama MHA tied", s);
}

static void test_llama_gqa(void)
{
    a3_synth_spec s = base_spec();
    s.n_kv_heads = 2;
    check_kind("llama GQA", s);
}

static void test_qwen2_bias(void)
{
    a3_synth_spec s = base_spec();
    s.arch = A3_ARCH_QWEN2;
    s.n_kv_heads = 1;
    s.qkv_bias = 1;
    check_kind("qwen2 biases MQA", s);
}

static void test_llama3_rope_headdim(void)
{
    a3_synth_spec s = base_spec();
    s.rope_llama3 = 1;
    s.rope_theta = 500000.0;
    s.head_dim = 16; /* != d / heads */
    s.max_seq = 256; /* original_max 64: wavelengths 6.3 (< 16, kept), 32
                      * (between 16 and 64, smoothed), 167+ (> 64, divided):
                      * all three llama3 bands are exercised */
    s.n_kv_heads = 2;
    check_kind("llama3 scaling, head_dim 16", s);
}

static void test_f16_bf16_mistral(void)
{
    a3_synth_spec s = base_spec();
    s.dtype = A3_DT_F16;
    check_kind("F16", s);
    s.dtype = A3_DT_BF16;
    s.arch = A3_ARCH_MISTRAL;
    check_kind("BF16 mistral", s);
}

/* A batch of sequences gives each sequence's own result; the decoder's
 * incremental logits equal the prefill logits. */
static void test_batch_and_decoder(void)
{
    char tmp[64], dir[128];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp);
    a3_synth_spec s = base_spec();
    s.n_kv_heads = 2;
    a3_err err = {0};
    a3_model *m = NULL;
    CHECK(a3_synth_write(dir, &s, &err) == 0);
    CHECK(a3_model_open(dir, &m, &err) == 0);
    if (!m) return;
    enum { B = 3, T = 70 }; /* T > 64 crosses an attention block boundary */
    int32_t tok[B * T];
    make_tokens(tok, B * T, s.vocab, 3);
    size_t d = (size_t)s.d, V = (size_t)s.vocab;
    float *hb = malloc(B * T * d * sizeof(float)), *h1 = malloc(T * d * sizeof(float));
    double md = 0;
    CHECK(a3_model_forward(m, tok, B, T, hb, &err) == 0);
    for (int b = 0; b < B; b++) {
        CHECK(a3_model_forward(m, tok + b * T, 1, T, h1, &err) == 0);
        for (size_t i = 0; i < T * d; i++) md = fmax(md, fabs(h1[i] - hb[b * T * d + i]));
    }
    CHECKF(md <= 1e-5, "batch vs single max diff %.3g", md);
    float *full = malloc(T * V * sizeof(float)), *step = malloc(V * sizeof(float));
    a3_decoder *dec = NULL;
    CHECK(a3_model_logits(m, h1, T, full, &err) == 0);
    CHECK(a3_decoder_new(m, T, &dec, &err) == 0);
    int32_t *last = tok + (B - 1) * T;
    CHECK(a3_decoder_step(dec, last, 5, step, &err) == 0);
    md = 0;
    for (size_t v = 0; v < V; v++) md = fmax(md, fabs(step[v] - full[4 * V + v]));
    for (int t = 5; t < T; t++) {
        CHECK(a3_decoder_step(dec, last + t, 1, step, &err) == 0);
        for (size_t v = 0; v < V; v++) md = fmax(md, fabs(step[v] - full[t * V + v]));
    }
    CHECKF(md <= 1e-4, "decoder vs prefill max diff %.3g", md);
    CHECK(a3_decoder_step(dec, last, 1, step, &err) != 0); /* cache full */
    a3_decoder_free(dec);
    free(hb);
    free(h1);
    free(full);
    free(step);
    a3_model_free(m);
    test_rm_rf(tmp);
}

/* Logits of tokens tok[0..T) by decoding in steps of `chunk` tokens (the
 * first step takes `first`), on `threads` threads. */
static int decode_logits(a3_model *m, const int32_t *tok, int T, int first, int chunk, int threads,
                         float *out)
{
    a3_err err = {0};
    a3_decoder *dec = NULL;
    size_t V = (size_t)a3_model_config(m)->vocab;
    float *lg = malloc(V * sizeof(float));
    int rc = lg ? a3_decoder_new(m, T, &dec, &err) : -1;
    a3_model_set_threads(m, threads);
    for (int t = 0, n = first; rc == 0 && t < T; t += n, n = chunk) {
        if (n > T - t) n = T - t;
        rc = a3_decoder_step(dec, tok + t, n, lg, &err);
        if (rc == 0) memcpy(out + (size_t)(t + n - 1) * V, lg, V * sizeof(float));
    }
    if (rc) fprintf(stderr, "  decode: %s\n", err.msg);
    a3_decoder_free(dec);
    free(lg);
    return rc;
}

/* Decoding reads F16/BF16 weights in place (a3_k_matvec) while a prefill
 * converts them and uses sgemm: the two must agree to float32 round-off
 * (1e-4 of the logit scale, as above), in steps of 1 to 4 tokens (the
 * kernel's multi-row path) and on the scalar code too; and the thread
 * count must not change a single bit (every output row is computed by one
 * thread in a fixed order). d = 256 so that the matrices are large enough
 * to be split between threads. */
static void test_decoder_stored_dtypes(void)
{
    char tmp[64], dir[128];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp);
    a3_synth_spec s = base_spec();
    s.d = 256, s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 64, s.d_ff = 640, s.vocab = 300;
    static const a3_dtype dts[] = {A3_DT_F16, A3_DT_BF16, A3_DT_F32};
    enum { T = 24 };
    int32_t tok[T];
    make_tokens(tok, T, s.vocab, 11);
    size_t V = (size_t)s.vocab;
    float *ref = malloc(T * V * 4), *a = malloc(T * V * 4), *b = malloc(T * V * 4),
          *hid = malloc((size_t)T * s.d * 4);
    for (int k = 0; k < 3 && ref && a && b && hid; k++) {
        a3_err err = {0};
        a3_model *m = NULL;
        s.dtype = dts[k];
        test_rm_rf(dir);
        CHECKF(a3_synth_write(dir, &s, &err) == 0, "%s", err.msg);
        CHECKF(a3_model_open(dir, &m, &err) == 0, "%s", err.msg);
        if (!m) break;
        CHECK(a3_model_forward(m, tok, 1, T, hid, &err) == 0);
        CHECK(a3_model_logits(m, hid, T, ref, &err) == 0);
        double scale = 1;
        for (size_t i = 0; i < T * V; i++) scale = fmax(scale, fabs(ref[i]));
        CHECK(decode_logits(m, tok, T, 1, 1, 1, a) == 0);
        CHECK(decode_logits(m, tok, T, 1, 1, 2, b) == 0);
        CHECKF(memcmp(a, b, T * V * 4) == 0, "%s: 1 and 2 threads differ", a3_dtype_name(dts[k]));
        for (int chunk = 1; chunk <= A3_K_MATVEC_ROWS; chunk++)
            for (int scalar = 0; scalar <= 1; scalar++) {
                a3_k_force_scalar(scalar);
                memset(b, 0xff, T * V * 4); /* NaN: a step that wrote nothing fails */
                CHECK(decode_logits(m, tok, T, 1, chunk, 2, b) == 0);
                double md = 0;
                for (int t = 0, n = 1; t < T; t += n, n = chunk) { /* each step's last token */
                    int last = t + n - 1 < T - 1 ? t + n - 1 : T - 1;
                    for (size_t v = 0; v < V; v++) {
                        double e = fabs(b[last * V + v] - ref[last * V + v]);
                        md = isnan(e) ? INFINITY : fmax(md, e);
                    }
                }
                CHECKF(md <= 1e-4 * scale, "%s steps of %d, scalar=%d: decoder vs prefill %.3g (scale %.3g)",
                       a3_dtype_name(dts[k]), chunk, scalar, md, scale);
            }
        a3_k_force_scalar(0);
        a3_model_free(m);
    }
    free(ref), free(a), free(b), free(hid);
    test_rm_rf(tmp);
}

/* Perplexity equals the NLL computed from the reference's logits. */
static void test_eval_matches_reference(void)
{
    char tmp[64], dir[128];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp);
    a3_synth_spec s = base_spec();
    a3_err err = {0};
    a3_model *m = NULL;
    CHECK(a3_synth_write(dir, &s, &err) == 0);
    CHECK(a3_model_open(dir, &m, &err) == 0);
    if (!m) return;
    enum { N = 50 };
    int32_t ids[N];
    make_tokens(ids, N, s.vocab, 11);
    a3_seqs seqs;
    a3_eval_result r;
    CHECK(a3_seqs_from_ids(ids, N, 20, 0, 0, &seqs, &err) == 0);
    CHECK(seqs.n == 3 && seqs.len[2] == 10);
    CHECK(a3_eval_nll(m, &seqs, &r, NULL, NULL, &err) == 0);
    double nll = 0;
    int npred = 0;
    double *ref = malloc(20 * (size_t)s.vocab * sizeof(double));
    for (int w = 0; w < seqs.n; w++) {
        ref_hf_logits(dir, seqs.seq[w], seqs.len[w], ref);
        for (int t = 0; t + 1 < seqs.len[w]; t++, npred++) {
            double mx = -INFINITY, sum = 0;
            const double *l = ref + (size_t)t * s.vocab;
            for (int v = 0; v < s.vocab; v++) mx = fmax(mx, l[v]);
            for (int v = 0; v < s.vocab; v++) sum += exp(l[v] - mx);
            nll += log(sum) + mx - l[seqs.seq[w][t + 1]];
        }
    }
    CHECK(r.n_pred == npred && npred == 19 + 19 + 9);
    CHECK_NEAR(r.mean_nll, nll / npred, 1e-5);
    free(ref);
    a3_seqs_free(&seqs);
    a3_model_free(m);
    test_rm_rf(tmp);
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* Each bad config.json must be refused with a message naming the field. */
static void test_bad_configs(void)
{
    static const struct {
        const char *json, *expect;
    } cases[] = {
        {"{", "not valid JSON"},
        {"[]", "not a JSON object"},
        /* strict JSON (a3/json.h): cJSON alone accepted both */
        {"{\"architectures\":[\"LlamaForCausalLM\"]} trailing", "data after the value at line 1, column 40"},
        {"{\"hidden_size\":8,\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":16}", "\"hidden_size\" appears twice"},
        {"{\"architectures\":[\"Llama\xff" "ForCausalLM\"]}", "not valid UTF-8"},
        {"{\"architectures\":[\"GPT2LMHeadModel\"]}", "architectures"},
        {"{\"architectures\":[\"LlamaForCausalLM\"]}", "hidden_size"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":-4,\"num_hidden_layers\":1,\"num_attention_heads\":1,\"intermediate_size\":4,\"vocab_size\":4}", "hidden_size"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"num_key_value_heads\":3,\"intermediate_size\":4,\"vocab_size\":4}", "num_key_value_heads"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":4,\"vocab_size\":4,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":2}}", "rope_scaling"},
        {"{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":4,\"vocab_size\":4,\"max_position_embeddings\":4096,\"sliding_window\":0}", "sliding_window"},
        {"{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":4,\"vocab_size\":4,\"use_sliding_window\":true}", "use_sliding_window"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":4,\"vocab_size\":4,\"hidden_act\":\"gelu\"}", "hidden_act"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":4,\"vocab_size\":4,\"head_dim\":3}", "head_dim"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":4,\"vocab_size\":4,\"mlp_bias\":true}", "mlp_bias"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,\"intermediate_size\":4,\"vocab_size\":4}", "model.safetensors"},
    };
    char tmp[64], path[128];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(path, sizeof path, "%s/config.json", tmp);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        a3_err err = {0};
        a3_model *m = NULL;
        CHECK(write_text(path, cases[i].json) == 0);
        int rc = a3_model_open(tmp, &m, &err);
        CHECKF(rc != 0 && m == NULL, "case %zu accepted", i);
        CHECKF(strstr(err.msg, cases[i].expect) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].expect);
        CHECKF(strchr(err.msg, '\n') == NULL, "case %zu: message not one line", i);
    }
    test_rm_rf(tmp);
}

/* Missing tensors, wrong shapes, bad token ids and NaN weights are errors. */
static void test_bad_weights(void)
{
    char tmp[64], dir[128], cfg[160], cmd[400];
    if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
    snprintf(dir, sizeof dir, "%s/m", tmp);
    a3_synth_spec s = base_spec();
    a3_err err = {0};
    a3_model *m = NULL;
    CHECK(a3_synth_write(dir, &s, &err) == 0);
    /* Claim more layers than the file has. */
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"num_hidden_layers\":\\s*2/\"num_hidden_layers\": 3/' '%s'", cfg);
    CHECK(system(cmd) == 0);
    CHECK(a3_model_open(dir, &m, &err) != 0);
    CHECKF(strstr(err.msg, "model.layers.2.") && strstr(err.msg, "missing"), "got '%s'", err.msg);
    /* Claim fewer: the weights of layer 1 would be ignored -- refused,
     * naming them (the model would otherwise run as another model). */
    snprintf(cmd, sizeof cmd, "sed -i 's/\"num_hidden_layers\":\\s*3/\"num_hidden_layers\": 1/' '%s'", cfg);
    CHECK(system(cmd) == 0);
    CHECK(a3_model_open(dir, &m, &err) == A3_EFORMAT);
    CHECKF(strstr(err.msg, "does not use") && strstr(err.msg, "model.layers.1.") && strstr(err.msg, "(1 layers)"),
           "got '%s'", err.msg);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"num_hidden_layers\":\\s*1/\"num_hidden_layers\": 2/; s/\"intermediate_size\":\\s*80/\"intermediate_size\": 81/' '%s'", cfg);
    CHECK(system(cmd) == 0);
    CHECK(a3_model_open(dir, &m, &err) != 0);
    CHECKF(strstr(err.msg, "mlp.gate_proj.weight") && strstr(err.msg, "shape"), "got '%s'", err.msg);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"intermediate_size\":\\s*81/\"intermediate_size\": 80/' '%s'", cfg);
    CHECK(system(cmd) == 0);
    CHECK(a3_model_open(dir, &m, &err) == 0);
    if (m) {
        int32_t bad[3] = {1, 2, 101};
        float h[3 * 48];
        CHECK(a3_model_forward(m, bad, 1, 3, h, &err) == A3_EINVAL);
        CHECKF(strstr(err.msg, "outside the vocabulary"), "got '%s'", err.msg);
        a3_model_free(m);
    }
    test_rm_rf(tmp);
}

/* NaN/Inf in a weight is an error naming the tensor, on every path that
 * reads it: a layer weight in the forward pass, the embedding row of a
 * token in the text, (tied embeddings) a vocabulary row of a token the
 * text never uses, which reaches only the logits, and the final norm; a
 * finite weight that overflows is an error too. */
static void test_nonfinite_weights(void)
{
    static const struct {
        const char *tensor;
        size_t elem;
        float v;
        const char *expect;
    } cases[] = {
        {"model.layers.1.self_attn.q_proj.weight", 5, NAN, "model.layers.1.self_attn.q_proj.weight"},
        {"model.layers.0.mlp.down_proj.weight", 0, INFINITY, "model.layers.0.mlp.down_proj.weight"},
        {"model.embed_tokens.weight", 3 * 48 + 1, NAN, "model.embed_tokens.weight: row 3"},
        {"model.embed_tokens.weight", 100 * 48 + 7, -INFINITY, "model.embed_tokens.weight: row 100"},
        /* the final norm's weight: read after the last layer's check
         * (found by fuzzing, tests/fuzz/corpus/model/) */
        {"model.norm.weight", 7, NAN, "model.norm.weight: element 7"},
        /* finite, but its product with a normalized activation is not */
        {"model.norm.weight", 7, FLT_MAX, "after the final norm (overflow)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char tmp[64], dir[128], st[160];
        if (!test_tmpdir(tmp, sizeof tmp)) SKIP("no temp dir");
        snprintf(dir, sizeof dir, "%s/m", tmp);
        snprintf(st, sizeof st, "%s/model.safetensors", dir);
        a3_synth_spec s = base_spec();
        s.tie_embeddings = 1;
        a3_err err = {0};
        a3_model *m = NULL;
        CHECK(a3_synth_write(dir, &s, &err) == 0);
        CHECK(tf_st_poke_f32(st, cases[i].tensor, cases[i].elem, cases[i].v) == 0);
        CHECK(a3_model_open(dir, &m, &err) == 0);
        if (m) {
            int32_t tok[8] = {1, 3, 5, 7, 9, 11, 13, 3}; /* never token 100 */
            a3_seqs q = {0};
            a3_eval_result r;
            CHECK(a3_seqs_from_ids(tok, 8, 8, 0, 0, &q, &err) == 0);
            int rc = a3_eval_nll(m, &q, &r, NULL, NULL, &err);
            int overflow = isfinite(cases[i].v);
            CHECKF(rc == A3_EFORMAT && strstr(err.msg, cases[i].expect) && (overflow || strstr(err.msg, "NaN/Inf")),
                   "case %zu: rc %d, '%s'", i, rc, err.msg);
            /* decoding reads the stored weights through the matvec kernel:
             * the same error, one token at a time */
            a3_decoder *dec = NULL;
            float lg[101];
            rc = a3_decoder_new(m, 8, &dec, &err);
            for (int t = 0; rc == 0 && t < 8; t++) rc = a3_decoder_step(dec, tok + t, 1, lg, &err);
            /* one token at a time, the overflow can first show in the
             * logits (a token whose normalized activation stays below 1) */
            CHECKF(rc == A3_EFORMAT &&
                       (overflow ? strstr(err.msg, "overflow") != NULL
                                 : strstr(err.msg, cases[i].expect) && strstr(err.msg, "NaN/Inf")),
                   "decoder case %zu: rc %d, '%s'", i, rc, err.msg);
            a3_decoder_free(dec);
            a3_seqs_free(&q);
            a3_model_free(m);
        }
        test_rm_rf(tmp);
    }
}

static void test_param_counts(void)
{
    a3_config c = {.d = 8, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 2, .d_ff = 16,
                   .vocab = 10, .qkv_bias = 1};
    a3_err err = {0};
    CHECK(a3_config_init_full(&c, &err) == 0);
    a3_param_counts p;
    a3_model_count_params(&c, &p);
    /* Per layer: q 8x8, k 4x8, v 4x8, o 8x8, biases 8+4+4, mlp 3*8*16. */
    CHECK(p.attn_qk == 2 * (64 + 32));
    CHECK(p.attn_ov == 2 * (32 + 64));
    CHECK(p.bias == 2 * 16);
    CHECK(p.mlp == 2 * 384);
    CHECK(p.total == 80 + 80 + 5 * 8 + p.attn_qk + p.attn_ov + p.bias + p.mlp);
    CHECK(a3_model_kv_bytes_per_token(&c, 2) == 2 * 2 * (2 + 2) * 2 * 1);
    a3_config_free(&c);
}

int main(void)
{
    RUN(test_llama_mha_tied);
    RUN(test_llama_gqa);
    RUN(test_qwen2_bias);
    RUN(test_llama3_rope_headdim);
    RUN(test_f16_bf16_mistral);
    RUN(test_batch_and_decoder);
    RUN(test_decoder_stored_dtypes);
    RUN(test_eval_matches_reference);
    RUN(test_bad_configs);
    RUN(test_bad_weights);
    RUN(test_param_counts);
    RUN(test_nonfinite_weights);
    return test_summary("model");
}
