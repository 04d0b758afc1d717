/* test_gguf: the GGUF writer read back by an independent, handwritten
 * reader (this file, written from the format description, not from
 * src/io/gguf.c), Q8_0 round-trip bounds, writer misuse, and the export of
 * the sample model checked tensor by tensor against its safetensors (q/k
 * permutation, padding, tied embeddings, tokenizer metadata). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "a3/gguf.h"
#include "a3/model.h"
#include "a3/safetensors.h"
#include "a3/tokenizer.h"
#include "test.h"

static char g_tmp[64];

/* ---- a minimal GGUF reader ----------------------------------------------- */

typedef struct {
    char key[96];
    uint32_t type, arr_type;
    uint64_t n;          /* array length */
    size_t at;           /* offset of the value (arrays: of the first element) */
} rd_kv;

typedef struct {
    char name[96];
    uint32_t ndim, type;
    uint64_t ne[4], offset;
} rd_tensor;

typedef struct {
    unsigned char *b;
    size_t n, pos, data_at;
    int bad;
    uint32_t version;
    uint64_t n_tensors, n_kv;
    rd_kv kv[64];
    rd_tensor t[128];
} rd;

static uint64_t rd_le(rd *r, int bytes)
{
    if (r->pos + (size_t)bytes > r->n) return r->bad = 1, 0;
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)r->b[r->pos + i] << (8 * i);
    r->pos += (size_t)bytes;
    return v;
}

static void rd_str(rd *r, char *out, size_t cap)
{
    uint64_t len = rd_le(r, 8);
    if (r->bad || len > r->n - r->pos) return (void)(r->bad = 1);
    if (out) snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), (const char *)r->b + r->pos);
    r->pos += len;
}

static size_t scalar_size(uint32_t t)
{
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < 13 ? sz[t] : 0;
}

static void rd_skip_value(rd *r, uint32_t t)
{
    if (t == 8) return rd_str(r, NULL, 0);
    if (!scalar_size(t)) return (void)(r->bad = 1);
    r->pos += scalar_size(t);
    if (r->pos > r->n) r->bad = 1;
}

static int rd_open(rd *r, const char *path)
{
    memset(r, 0, sizeof *r);
    if (a3_read_file(path, (size_t)1 << 30, (char **)&r->b, &r->n, NULL)) return -1;
    if (rd_le(r, 4) != 0x46554747u) return -1;
    r->version = (uint32_t)rd_le(r, 4);
    r->n_tensors = rd_le(r, 8), r->n_kv = rd_le(r, 8);
    if (r->n_kv > 64 || r->n_tensors > 128) return -1;
    for (uint64_t i = 0; i < r->n_kv && !r->bad; i++) {
        rd_kv *k = &r->kv[i];
        rd_str(r, k->key, sizeof k->key);
        k->type = (uint32_t)rd_le(r, 4);
        if (k->type == 9) {
            k->arr_type = (uint32_t)rd_le(r, 4);
            k->n = rd_le(r, 8);
            k->at = r->pos;
            for (uint64_t j = 0; j < k->n && !r->bad; j++) rd_skip_value(r, k->arr_type);
        } else {
            k->at = r->pos;
            rd_skip_value(r, k->type);
        }
    }
    for (uint64_t i = 0; i < r->n_tensors && !r->bad; i++) {
        rd_tensor *t = &r->t[i];
        rd_str(r, t->name, sizeof t->name);
        t->ndim = (uint32_t)rd_le(r, 4);
        if (t->ndim < 1 || t->ndim > 4) return -1;
        for (uint32_t d = 0; d < t->ndim; d++) t->ne[d] = rd_le(r, 8);
        t->type = (uint32_t)rd_le(r, 4);
        t->offset = rd_le(r, 8);
    }
    r->data_at = (r->pos + 31) / 32 * 32;
    return r->bad ? -1 : 0;
}

static const rd_kv *rd_find(const rd *r, const char *key)
{
    for (uint64_t i = 0; i < r->n_kv; i++)
        if (strcmp(r->kv[i].key, key) == 0) return &r->kv[i];
    return NULL;
}

static const rd_tensor *rd_tensor_find(const rd *r, const char *name)
{
    for (uint64_t i = 0; i < r->n_tensors; i++)
        if (strcmp(r->t[i].name, name) == 0) return &r->t[i];
    return NULL;
}

static uint64_t kv_uint(const rd *r, const char *key, int bytes)
{
    const rd_kv *k = rd_find(r, key);
    if (!k) return UINT64_MAX;
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)r->b[k->at + i] << (8 * i);
    return v;
}

static float kv_f32_at(const rd *r, size_t at)
{
    uint32_t u = (uint32_t)r->b[at] | (uint32_t)r->b[at + 1] << 8 | (uint32_t)r->b[at + 2] << 16 |
                 (uint32_t)r->b[at + 3] << 24;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* String of a string value (or array element i), into out. */
static int kv_str(const rd *r, const char *key, int64_t i, char *out, size_t cap)
{
    const rd_kv *k = rd_find(r, key);
    if (!k) return -1;
    rd tmp = *r;
    tmp.pos = k->at;
    for (int64_t j = 0; j < i; j++) rd_str(&tmp, NULL, 0);
    rd_str(&tmp, out, cap);
    return tmp.bad ? -1 : 0;
}

/* Tensor element e as float (F32, F16, Q8_0 by hand: not via a3). */
static float half_to_float(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? INFINITY : ldexpf((float)(m | 1024), e - 25);
    return h & 0x8000 ? -v : v;
}

static float rd_elem(const rd *r, const rd_tensor *t, size_t e)
{
    const unsigned char *p = r->b + r->data_at + t->offset;
    if (t->type == 0) return kv_f32_at(r, (size_t)(p - r->b) + 4 * e);
    if (t->type == 1) return half_to_float((uint16_t)(p[2 * e] | p[2 * e + 1] << 8));
    const unsigned char *blk = p + (e / 32) * 34;
    return half_to_float((uint16_t)(blk[0] | blk[1] << 8)) * (float)(int8_t)blk[2 + e % 32];
}

/* ---- writer round trip ----------------------------------------------------- */

typedef struct {
    size_t n;
    float scale;
} fill_ctx;

static int fill_ramp(void *ctx, float *dst, size_t n, a3_err *err)
{
    const fill_ctx *c = ctx;
    for (size_t i = 0; i < n; i++) dst[i] = c->scale * ((float)i - (float)n / 3) / (float)n;
    return 0;
}

static void test_writer_roundtrip(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/rt.gguf", g_tmp);
    a3_gguf_writer *w = a3_gguf_writer_new();
    a3_err err = {0};
    fill_ctx a = {0, 2.0f}, b = {0, -0.5f}, c = {0, 3.0f};
    const char *strs[] = {"a", "", "\xe2\x96\x81the"};
    size_t lens[] = {1, 0, 6};
    int32_t iv[] = {-1, 2, 3};
    CHECK(a3_gguf_kv_str(w, "general.architecture", "llama", &err) == 0);
    CHECK(a3_gguf_kv_u32(w, "x.u32", 0xdeadbeefu, &err) == 0);
    CHECK(a3_gguf_kv_f32(w, "x.f32", 1e-5f, &err) == 0);
    CHECK(a3_gguf_kv_bool(w, "x.bool", 1, &err) == 0);
    CHECK(a3_gguf_kv_arr_str(w, "x.strs", strs, lens, 3, &err) == 0);
    CHECK(a3_gguf_kv_arr(w, "x.i32s", A3_GGUF_KV_I32, iv, 3, &err) == 0);
    CHECK(a3_gguf_kv_u32(w, "x.u32", 1, &err) == A3_EINVAL); /* duplicate key */
    CHECK(strstr(err.msg, "x.u32") != NULL);
    int64_t ne1[2] = {5, 3}, ne2[1] = {7}, ne3[2] = {64, 2}, bad[2] = {40, 2};
    CHECK(a3_gguf_add_tensor(w, "m", A3_GGUF_F32, 2, ne1, fill_ramp, &a, &err) == 0);
    CHECK(a3_gguf_add_tensor(w, "v", A3_GGUF_F16, 1, ne2, fill_ramp, &b, &err) == 0);
    CHECK(a3_gguf_add_tensor(w, "q", A3_GGUF_Q8_0, 2, ne3, fill_ramp, &c, &err) == 0);
    CHECK(a3_gguf_add_tensor(w, "m", A3_GGUF_F32, 2, ne1, fill_ramp, &a, &err) == A3_EINVAL);  /* duplicate */
    CHECK(a3_gguf_add_tensor(w, "bad", A3_GGUF_Q8_0, 2, bad, fill_ramp, &a, &err) == A3_EINVAL); /* 40 % 32 */
    uint64_t bytes = 0;
    CHECK(a3_gguf_write(w, path, NULL, NULL, &bytes, &err) == 0);
    a3_gguf_writer_free(w);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == bytes);
    rd r;
    CHECK(rd_open(&r, path) == 0);
    CHECK(r.version == 3 && r.n_kv == 6 && r.n_tensors == 3);
    char s[64];
    CHECK(kv_str(&r, "general.architecture", 0, s, sizeof s) == 0 && strcmp(s, "llama") == 0);
    CHECK(kv_uint(&r, "x.u32", 4) == 0xdeadbeefu && rd_find(&r, "x.u32")->type == 4);
    CHECK(kv_f32_at(&r, rd_find(&r, "x.f32")->at) == 1e-5f);
    CHECK(kv_uint(&r, "x.bool", 1) == 1 && rd_find(&r, "x.bool")->type == 7);
    const rd_kv *k = rd_find(&r, "x.strs");
    CHECK(k && k->type == 9 && k->arr_type == 8 && k->n == 3);
    CHECK(kv_str(&r, "x.strs", 1, s, sizeof s) == 0 && s[0] == 0);
    CHECK(kv_str(&r, "x.strs", 2, s, sizeof s) == 0 && strcmp(s, "\xe2\x96\x81the") == 0);
    k = rd_find(&r, "x.i32s");
    CHECK(k && k->arr_type == 5 && k->n == 3 && (int32_t)kv_uint(&r, "x.i32s", 4) == -1);
    /* Tensor infos: dims, types, offsets aligned to 32 and increasing. */
    const rd_tensor *tm = rd_tensor_find(&r, "m"), *tv = rd_tensor_find(&r, "v"), *tq = rd_tensor_find(&r, "q");
    CHECK(tm && tv && tq);
    if (!tm || !tv || !tq) return free(r.b);
    CHECK(tm->ndim == 2 && tm->ne[0] == 5 && tm->ne[1] == 3 && tm->type == 0 && tm->offset == 0);
    CHECK(tv->ndim == 1 && tv->ne[0] == 7 && tv->type == 1 && tv->offset == 64); /* 60 bytes -> 64 */
    CHECK(tq->type == 8 && tq->offset == 96 && tq->offset % 32 == 0);            /* 14 bytes -> 32 */
    CHECK(r.data_at % 32 == 0 && r.data_at + 96 + 4 * 34 <= r.n);
    /* Values: F32 exact, F16 within half an ulp, Q8_0 within d/2. */
    float ref[128];
    fill_ramp(&a, ref, 15, NULL);
    int ok = 1;
    for (size_t i = 0; i < 15; i++) ok &= rd_elem(&r, tm, i) == ref[i];
    CHECK(ok);
    fill_ramp(&b, ref, 7, NULL);
    double maxe = 0;
    for (size_t i = 0; i < 7; i++) maxe = fmax(maxe, fabs(rd_elem(&r, tv, i) - ref[i]) / fabs(ref[i] ? ref[i] : 1));
    CHECK(maxe <= 1.0 / 2048);
    fill_ramp(&c, ref, 128, NULL);
    ok = 1;
    for (size_t i = 0; i < 128; i++) {
        const unsigned char *blk = r.b + r.data_at + tq->offset + (i / 32) * 34;
        float d = half_to_float((uint16_t)(blk[0] | blk[1] << 8));
        ok &= fabsf(rd_elem(&r, tq, i) - ref[i]) <= d / 2 * (1 + 1e-6f);
    }
    CHECK(ok);
    free(r.b);
}

/* Q8_0 over random blocks (including zeros, tiny and huge values): every
 * element within d/2 of its input, d = the stored f16 scale, and the max
 * element of a block reconstructed to within d/2 of itself too. */
static void test_q8_0_bound(void)
{
    uint64_t s = 7;
    float x[32 * 64], y[32 * 64];
    uint8_t q[34 * 64];
    for (int i = 0; i < 32 * 64; i++) {
        double u = (double)(a3_splitmix64(&s) >> 11) / 9007199254740992.0 - 0.5;
        int blk = i / 32;
        x[i] = blk == 0 ? 0.0f : blk == 1 ? (float)(u * 1e-6) : blk == 2 ? (float)(u * 6e4) : (float)(u * (1 + blk));
    }
    a3_gguf_q8_0_quantize(x, 32 * 64, q);
    a3_gguf_q8_0_dequantize(q, 32 * 64, y);
    double worst = 0;
    for (int i = 0; i < 32 * 64; i++) {
        float d = a3_f16_to_f32((uint16_t)(q[(i / 32) * 34] | q[(i / 32) * 34 + 1] << 8));
        double e = fabs((double)x[i] - y[i]);
        if (d > 0) worst = fmax(worst, e / d);
        else CHECK(y[i] == 0 && x[i] == 0);
    }
    printf("  q8_0: max |x - q| = %.4f x scale (bound 0.5)\n", worst);
    CHECK(worst <= 0.5 + 1e-6);
    CHECK(a3_gguf_type_bytes(A3_GGUF_Q8_0, 64) == 68 && a3_gguf_type_bytes(A3_GGUF_Q8_0, 40) == 0);
    a3_gguf_type t;
    CHECK(a3_gguf_type_parse("q8_0", &t) == 0 && t == A3_GGUF_Q8_0 && a3_gguf_type_parse("q4_0", &t) == -1);
}

/* ---- export of the sample model ----------------------------------------- */

static void test_export_sample(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/sample.gguf", g_tmp);
    a3_err err = {0};
    a3_model *m = NULL;
    CHECK(a3_model_open("samples/sample-model", &m, &err) == 0);
    if (!m) return;
    a3_gguf_export_opts o = {.type = A3_GGUF_F32};
    a3_gguf_export_report rep;
    CHECK(a3_gguf_export(m, path, &o, &rep, &err) == 0);
    CHECK(rep.arch && strcmp(rep.arch, "llama") == 0 && rep.tok_model && strcmp(rep.tok_model, "llama") == 0);
    a3_gguf_export_report rep2;
    CHECK(a3_gguf_export(m, path, &o, &rep2, &err) == A3_EINVAL && strstr(err.msg, "--force")); /* exists */
    CHECK(rep.qk_padded == 0 && rep.ov_padded == 0 && rep.params_written == rep.params_model);
    const a3_config *c = a3_model_config(m);
    rd r;
    CHECK(rd_open(&r, path) == 0);
    CHECK(kv_uint(&r, "llama.block_count", 4) == (uint64_t)c->n_layers);
    CHECK(kv_uint(&r, "llama.attention.head_count_kv", 4) == (uint64_t)c->n_kv_heads);
    CHECK(kv_uint(&r, "llama.feed_forward_length", 4) == (uint64_t)c->d_ff);
    CHECK(kv_f32_at(&r, rd_find(&r, "llama.attention.layer_norm_rms_epsilon")->at) == c->rms_eps);
    CHECK(kv_uint(&r, "tokenizer.ggml.bos_token_id", 4) == 1 && kv_uint(&r, "tokenizer.ggml.eos_token_id", 4) == 2);
    CHECK(rd_find(&r, "tokenizer.ggml.tokens")->n == (uint64_t)c->vocab);
    CHECK(rd_tensor_find(&r, "output.weight") == NULL); /* tied: llama.cpp reuses token_embd */
    /* Token strings are the tokenizer's pieces: id 1 "<s>", and a byte. */
    char s[64];
    CHECK(kv_str(&r, "tokenizer.ggml.tokens", 1, s, sizeof s) == 0 && strcmp(s, "<s>") == 0);
    /* q rows: GGUF row 2i + s of head h = HF row s * hd/2 + i; k too. */
    int hd = c->head_dim, half = hd / 2;
    const rd_tensor *tq = rd_tensor_find(&r, "blk.1.attn_q.weight"), *tk = rd_tensor_find(&r, "blk.1.attn_k.weight");
    CHECK(tq && tq->ne[0] == (uint64_t)c->d && tq->ne[1] == (uint64_t)c->n_heads * hd && tk);
    size_t nq = (size_t)c->n_heads * hd * c->d;
    float *hfq = malloc(nq * 4);
    int64_t shape[2] = {(int64_t)c->n_heads * hd, c->d};
    CHECK(a3_st_load_f32(a3_model_tensors(m), "model.layers.1.self_attn.q_proj.weight", 2, shape, hfq, &err) == 0);
    int ok = tq != NULL;
    for (int h = 0; ok && h < c->n_heads; h++)
        for (int i = 0; i < half; i++)
            for (int sd = 0; sd < 2; sd++)
                for (int e = 0; e < c->d; e += 7)
                    ok &= rd_elem(&r, tq, ((size_t)h * hd + 2 * i + sd) * c->d + e) ==
                          hfq[((size_t)h * hd + sd * half + i) * c->d + e];
    CHECK(ok);
    free(hfq), free(r.b);
    a3_model_free(m);
    /* Bad inputs: a directory that is not a model, and no tokenizer.json. */
    CHECK(a3_model_open("/nonexistent-model", &m, &err) != 0);
}

static void test_export_no_tokenizer(void)
{
    /* tests/data/tiny-llama3 has weights but no tokenizer: refused, and
     * nothing is left behind. */
    char path[128];
    snprintf(path, sizeof path, "%s/notok.gguf", g_tmp);
    a3_err err = {0};
    a3_model *m = NULL;
    CHECK(a3_model_open("tests/data/tiny-llama3", &m, &err) == 0);
    if (!m) return;
    a3_gguf_export_opts o = {.type = A3_GGUF_F16};
    int rc = a3_gguf_export(m, path, &o, NULL, &err);
    CHECK(rc != 0 && strstr(err.msg, "tokenizer") != NULL);
    struct stat st;
    CHECK(stat(path, &st) != 0);
    a3_model_free(m);
}

int main(void)
{
    if (!test_tmpdir(g_tmp, sizeof g_tmp)) return fprintf(stderr, "cannot make a temp dir\n"), 1;
    RUN(test_writer_roundtrip);
    RUN(test_q8_0_bound);
    RUN(test_export_sample);
    RUN(test_export_no_tokenizer);
    test_rm_rf(g_tmp);
    return test_summary("gguf");
}
