/* Tests for src/io/safetensors.c: hostile files that must fail cleanly
 * (table-driven, plus truncation at every byte and random byte flips),
 * writer and sharded round trips, and the float conversions against known
 * bit patterns and an independent reference (CPython's struct 'e'). */
#include "a3/safetensors.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <sys/stat.h>

#include "helpers/files.h"
#include "test.h"

/* ---- helpers --------------------------------------------------------------- */

/* Remove a test directory and the files in it (tests make no subdirectories). */
static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char *p = a3_path_join(dir, de->d_name);
        if (p) unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}

/* A safetensors file image: the 8-byte length `declared`, hl bytes of
 * header text, then data_len bytes of a fixed pattern (byte i = i*37+11). */
static unsigned char *st_image_raw(const char *header, size_t hl, uint64_t declared, size_t data_len,
                                   size_t *n)
{
    *n = 8 + hl + data_len;
    unsigned char *b = malloc(*n);
    if (!b) return NULL;
    tf_put_le64(b, declared);
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (unsigned char)(i * 37 + 11);
    return b;
}

/* The same with the true header length declared. */
static unsigned char *st_image(const char *header, size_t data_len, size_t *n)
{
    return st_image_raw(header, strlen(header), strlen(header), data_len, n);
}

/* The largest data_offsets end in a header, capped at cap: the data length
 * of a file whose data section is fully indexed (or cut short at cap). */
static size_t data_end(const char *header, size_t cap)
{
    size_t end = 0;
    for (const char *p = header; (p = strstr(p, "\"data_offsets\":[")) != NULL; p++) {
        unsigned long a, b;
        if (sscanf(p, "\"data_offsets\":[%lu,%lu]", &a, &b) == 2 && b > end) end = b;
    }
    return end < cap ? end : cap;
}

static int write_st(const char *path, const char *header, size_t data_len)
{
    size_t n;
    unsigned char *b = st_image(header, data_len, &n);
    int rc = b ? tf_write_bytes(path, b, n) : -1;
    free(b);
    return rc;
}

/* The open must fail with a one-line message naming `file` and containing `want`. */
static void expect_fail(int rc, a3_st_set *st, const a3_err *err, const char *file, const char *want,
                        const char *desc)
{
    CHECKF(rc != A3_OK, "%s: open succeeded", desc);
    CHECKF(st == NULL, "%s: set returned on failure", desc);
    CHECKF(err->msg[0] != 0, "%s: empty message", desc);
    CHECKF(strstr(err->msg, file) != NULL, "%s: message does not name %s: %s", desc, file, err->msg);
    CHECKF(strstr(err->msg, want) != NULL, "%s: want '%s' in: %s", desc, want, err->msg);
    CHECKF(strchr(err->msg, '\n') == NULL, "%s: message has a newline: %s", desc, err->msg);
    a3_st_free(st);
}

static int same_bits(float a, float b)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ---- corrupt single files ----------------------------------------------------- */

#define T_F32_2 "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"

/* Declared header lengths that are not the header's strlen. */
#define HL_REAL 0           /* strlen(header) */
#define HL_MAX UINT64_MAX   /* 2^64 - 1 */

typedef struct {
    const char *desc;
    const char *header; /* NULL: the file is data_len bytes of 'x' */
    uint64_t hlen;      /* declared header length, or HL_REAL */
    size_t data_len;    /* bytes after the header (the whole file when header is NULL) */
    const char *expect; /* substring of the error message */
} bad_file;

static const bad_file bad_files[] = {
    {"empty file", NULL, HL_REAL, 0, "too short"},
    {"5-byte file", NULL, HL_REAL, 5, "too short"},
    {"7-byte file", NULL, HL_REAL, 7, "too short"},
    {"header length beyond file", "{}", 1000, 0, "exceeds file size"},
    {"header length 2^64-1", "{}", HL_MAX, 0, "cap"},
    {"header length above 100 MB cap", "{}", 200 * 1024 * 1024, 0, "cap"},
    {"zero-length header", "", HL_REAL, 16, "not valid JSON"},
    {"truncated JSON", "{\"w\": {\"dtype\": \"F32\"", HL_REAL, 8, "not valid JSON"},
    {"header is an array", "[1, 2]", HL_REAL, 8, "not a JSON object"},
    {"header is a string", "\"hello\"", HL_REAL, 8, "not a JSON object"},
    {"header is null", "null", HL_REAL, 8, "not a JSON object"},
    {"trailing garbage", "{} xyz", HL_REAL, 8, "trailing bytes"},
    {"entry is a number", "{\"w\": 5}", HL_REAL, 8, "w: entry is not an object"},
    {"entry is an array", "{\"w\": [1]}", HL_REAL, 8, "w: entry is not an object"},
    {"empty tensor name", "{\"\": {" T_F32_2 "}}", HL_REAL, 8, "empty tensor name"},
    {"missing dtype", "{\"w\": {\"shape\":[2],\"data_offsets\":[0,8]}}", HL_REAL, 8, "w: dtype is missing"},
    {"dtype not a string", "{\"w\": {\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: dtype is not a string"},
    {"unknown dtype", "{\"w\": {\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: unknown dtype 'F12'"},
    {"lower-case dtype", "{\"w\": {\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "unknown dtype"},
    {"foreign dtype", "{\"w\": {\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: unsupported dtype 'F8_E4M3'"},
    {"missing shape", "{\"w\": {\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", HL_REAL, 8, "w: shape is missing"},
    {"shape not an array", "{\"w\": {\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: shape is not an array"},
    {"negative dim", "{\"w\": {\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: shape dim 0 is not a non-negative integer"},
    {"fractional dim", "{\"w\": {\"dtype\":\"F32\",\"shape\":[1, 1.5],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: shape dim 1 is not"},
    {"string dim", "{\"w\": {\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: shape dim 0 is not"},
    {"dim 1e300", "{\"w\": {\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: shape dim 0 is not"},
    {"rank 9", "{\"w\": {\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: shape has rank 9"},
    {"element count overflows",
     "{\"w\": {\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: shape element count overflows"},
    {"byte size overflows",
     "{\"w\": {\"dtype\":\"F32\",\"shape\":[4503599627370496,1024],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "w: shape byte size overflows"},
    {"missing data_offsets", "{\"w\": {\"dtype\":\"F32\",\"shape\":[2]}}", HL_REAL, 8, "w: data_offsets is missing"},
    {"one offset", "{\"w\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", HL_REAL, 8,
     "w: data_offsets must be two"},
    {"three offsets", "{\"w\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", HL_REAL, 8,
     "w: data_offsets must be two"},
    {"negative offset", "{\"w\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", HL_REAL, 8,
     "w: data_offsets must be two"},
    {"fractional offsets", "{\"w\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.5,8.5]}}", HL_REAL, 8,
     "w: data_offsets must be two"},
    {"string offsets", "{\"w\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}}", HL_REAL, 8,
     "w: data_offsets must be two"},
    {"offsets object", "{\"w\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"a\":0}}}", HL_REAL, 8,
     "w: data_offsets must be two"},
    {"huge offsets", "{\"w\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1e300,1e300]}}", HL_REAL, 8,
     "w: data_offsets must be two"},
    {"begin > end", "{\"w\": {\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", HL_REAL, 8,
     "w: data_offsets begin 8 > end 0"},
    {"end beyond data", "{\"w\": {" T_F32_2 "}}", HL_REAL, 4, "w: data_offsets end 8 beyond the data section"},
    {"end far beyond data",
     "{\"w\": {\"dtype\":\"U8\",\"shape\":[9007199254740990],\"data_offsets\":[2,9007199254740992]}}", HL_REAL, 4,
     "beyond the data section"},
    {"span too short", "{\"w\": {\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", HL_REAL, 16,
     "w: data_offsets span 8 bytes but shape and dtype need 12"},
    {"span too long", "{\"w\": {\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", HL_REAL, 16,
     "w: data_offsets span 8 bytes but shape and dtype need 4"},
    {"overlapping tensors",
     "{\"a\": {" T_F32_2 "}, \"b\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", HL_REAL, 16,
     "b: bytes [4, 12) overlap tensor 'a'"},
    {"tensor inside another",
     "{\"big\": {\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
     " \"small\": {\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[6,8]}}",
     HL_REAL, 16, "small: bytes [6, 8) overlap tensor 'big'"},
    {"overlap across an empty tensor",
     "{\"a\": {" T_F32_2 "}, \"e\": {\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},"
     " \"b\": {\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}",
     HL_REAL, 16, "b: bytes [6, 8) overlap tensor 'a'"},
    {"duplicate names", "{\"w\": {" T_F32_2 "}, \"w\": {\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
     HL_REAL, 16, "w: duplicate tensor name"},
    {"duplicate names, same bytes", "{\"w\": {" T_F32_2 "}, \"w\": {" T_F32_2 "}}", HL_REAL, 16,
     "w: duplicate tensor name"},
    {"names equal after \\u0000", "{\"a\\u0000x\": {" T_F32_2 "}, \"a\\u0000y\": {\"dtype\":\"F32\",\"shape\":[2],"
     "\"data_offsets\":[8,16]}}", HL_REAL, 16, "a: duplicate tensor name"},
    {"__metadata__ not an object", "{\"__metadata__\": [1], \"w\": {" T_F32_2 "}}", HL_REAL, 8,
     "header: __metadata__ is not an object"},
    {"__metadata__ value not a string", "{\"__metadata__\": {\"format\": 1}, \"w\": {" T_F32_2 "}}", HL_REAL, 8,
     "header: __metadata__ value 'format' is not a string"},
    {"two __metadata__", "{\"__metadata__\": {}, \"__metadata__\": {}}", HL_REAL, 8, "duplicate __metadata__"},
    {"control bytes in a name are masked", "{\"bad\\nname\": {\"shape\":[2],\"data_offsets\":[0,8]}}", HL_REAL, 8,
     "bad?name: dtype is missing"},
};

static void check_bad_file(const char *dir, const bad_file *c, size_t idx)
{
    char name[64];
    snprintf(name, sizeof name, "bad%02zu.safetensors", idx);
    char *path = a3_path_join(dir, name);
    CHECK(path != NULL);
    if (!path) return;
    size_t n = c->data_len;
    unsigned char *b;
    if (c->header) {
        size_t hb = strlen(c->header);
        b = st_image_raw(c->header, hb, c->hlen == HL_REAL ? hb : c->hlen, c->data_len, &n);
    } else {
        b = malloc(n ? n : 1);
        if (b) memset(b, 'x', n);
    }
    CHECK(b != NULL && tf_write_bytes(path, b, n) == 0);
    a3_st_set *st = NULL;
    a3_err err = {0};
    int rc = a3_st_open_file(path, &st, &err);
    expect_fail(rc, st, &err, path, c->expect, c->desc);
    free(b);
    free(path);
}

static void test_corrupt_table(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    size_t n = sizeof bad_files / sizeof bad_files[0];
    CHECK(n >= 15);
    for (size_t i = 0; i < n; i++) check_bad_file(tmp, &bad_files[i], i);
    rm_dir(tmp);
}

/* Nesting deeper than cJSON's limit is rejected, not recursed into. */
static void test_deep_nesting(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *path = a3_path_join(tmp, "deep.safetensors");
    size_t depth = 100000;
    char *h = malloc(2 * depth + 1);
    CHECK(path && h);
    if (!path || !h) return;
    memset(h, '[', depth);
    memset(h + depth, ']', depth);
    h[2 * depth] = 0;
    CHECK(write_st(path, h, 0) == 0);
    a3_st_set *st = NULL;
    a3_err err = {0};
    expect_fail(a3_st_open_file(path, &st, &err), st, &err, path, "not valid JSON", "deep nesting");
    free(h);
    free(path);
    rm_dir(tmp);
}

/* A NUL byte in the header's padding is not whitespace. */
static void test_nul_in_header(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *path = a3_path_join(tmp, "nul.safetensors");
    size_t n;
    unsigned char *b = st_image_raw("{}\0     ", 8, 8, 8, &n);
    CHECK(path && b && tf_write_bytes(path, b, n) == 0);
    a3_st_set *st = NULL;
    a3_err err = {0};
    expect_fail(a3_st_open_file(path, &st, &err), st, &err, path, "trailing bytes", "NUL in padding");
    free(b);
    free(path);
    rm_dir(tmp);
}

/* A directory or a missing path fails as I/O, naming the path. */
static void test_not_a_file(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    a3_st_set *st = NULL;
    a3_err err = {0};
    int rc = a3_st_open_file(tmp, &st, &err);
    CHECK(rc == A3_EIO);
    expect_fail(rc, st, &err, tmp, "not a regular file", "directory");
    char *p = a3_path_join(tmp, "nope.safetensors");
    rc = a3_st_open_file(p, &st, &err);
    CHECK(rc == A3_EIO);
    expect_fail(rc, st, &err, p, "cannot open", "missing file");
    free(p);
    rm_dir(tmp);
}

/* ---- valid files ---------------------------------------------------------------- */

/* Edge cases that are legal: empty tensors (even sharing an offset), a
 * scalar, metadata of strings, padding spaces. Bytes after the last tensor
 * are not (as in the reference Rust reader: MetadataIncompleteBuffer), nor
 * a hole between tensors. */
static void test_valid_edges(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *path = a3_path_join(tmp, "ok.safetensors");
    const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"x\":\"y\"},"
                    "\"e1\":{\"dtype\":\"F16\",\"shape\":[0,4],\"data_offsets\":[4,4]},"
                    "\"e2\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
                    "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                    "\"u\":{\"dtype\":\"U8\",\"shape\":[2,2],\"data_offsets\":[4,8]}}    ";
    a3_st_set *st = NULL;
    a3_err err = {0};
    CHECK(write_st(path, h, 24) == 0); /* 16 bytes nobody indexes */
    CHECK(a3_st_open_file(path, &st, &err) == A3_EFORMAT && strstr(err.msg, "16 bytes after the last tensor"));
    const char *hole = "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}";
    CHECK(write_st(path, hole, 6) == 0);
    CHECK(a3_st_open_file(path, &st, &err) == A3_EFORMAT && strstr(err.msg, "b: 2 bytes before it belong to no tensor"));
    CHECK(write_st(path, h, 8) == 0);
    int rc = a3_st_open_file(path, &st, &err);
    CHECKF(rc == A3_OK, "%s", err.msg);
    if (rc == A3_OK) {
        CHECK(a3_st_count(st) == 4);
        const a3_st_tensor *s = a3_st_find(st, "s"), *u = a3_st_find(st, "u");
        CHECK(s && s->ndim == 0 && s->numel == 1 && s->nbytes == 4);
        CHECK(u && u->ndim == 2 && u->numel == 4 && u->dtype == A3_DT_U8);
        CHECK(a3_st_find(st, "e1") && a3_st_find(st, "e1")->numel == 0);
        CHECK(a3_st_find(st, "__metadata__") == NULL);
        CHECK(strcmp(a3_st_get(st, 0)->name, "e1") == 0 && a3_st_get(st, 4) == NULL);
        CHECK(s && strcmp(s->file, path) == 0);
        /* pattern byte i is i*37+11 */
        CHECK(u && ((const unsigned char *)u->data)[1] == (unsigned char)(5 * 37 + 11));
        float f;
        CHECK(a3_st_load_f32(st, "u", 2, (const int64_t[]){2, 2}, &f, &err) == A3_EUNSUPPORTED);
        CHECK(strstr(err.msg, "U8") != NULL);
    }
    a3_st_free(st);
    a3_st_free(NULL);
    free(path);
    rm_dir(tmp);
}

/* Data offsets that leave an F32 tensor at an odd address: loading must
 * not use an aligned access (UBSan checks this in the sanitizer build). */
static void test_unaligned(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *path = a3_path_join(tmp, "odd.safetensors");
    /* header of exactly 120 bytes so the data section starts 8-aligned */
    char h[121];
    snprintf(h, sizeof h, "%-120s",
             "{\"h\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
             "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}");
    size_t n;
    unsigned char *b = st_image(h, 9, &n);
    CHECK(b != NULL);
    if (!b) return;
    uint32_t one = f32_bits(1.5f), two = f32_bits(-2.25f);
    for (int i = 0; i < 4; i++) {
        b[8 + 120 + 1 + i] = (unsigned char)(one >> (8 * i));
        b[8 + 120 + 5 + i] = (unsigned char)(two >> (8 * i));
    }
    CHECK(tf_write_bytes(path, b, n) == 0);
    a3_st_set *st = NULL;
    a3_err err = {0};
    int rc = a3_st_open_file(path, &st, &err);
    CHECKF(rc == A3_OK, "%s", err.msg);
    if (rc == A3_OK) {
        const a3_st_tensor *t = a3_st_find(st, "f");
        CHECK(t && ((uintptr_t)t->data % 4) != 0);
        float v[2] = {0};
        CHECK(a3_st_load_f32(st, "f", 1, (const int64_t[]){2}, v, &err) == A3_OK);
        CHECK(v[0] == 1.5f && v[1] == -2.25f);
    }
    a3_st_free(st);
    free(b);
    free(path);
    rm_dir(tmp);
}

/* ---- writer ------------------------------------------------------------------- */

static const float special[] = {
    0.0f, -0.0f, 1.0f, -1.5f, 3.14159265f, 65504.0f, 65519.0f, 65520.0f, 1e10f, -1e-8f,
    5.9604645e-8f, 2.9802322e-8f, 1e-40f, 1.0e30f, INFINITY, -INFINITY, NAN, 0.1f, 1.00390625f,
    3.3895314e38f,
};
#define N_SPECIAL (sizeof special / sizeof special[0])

static float expect_as(a3_dtype dt, float v)
{
    if (dt == A3_DT_F16) return a3_f16_to_f32(a3_f32_to_f16(v));
    if (dt == A3_DT_BF16) return a3_bf16_to_f32(a3_f32_to_bf16(v));
    return v;
}

/* The raw bytes of a tensor are the little-endian encoding of each value. */
static void check_raw(const a3_st_tensor *t, const float *src)
{
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->numel; i++) {
        uint32_t want = t->dtype == A3_DT_F32    ? f32_bits(src[i])
                        : t->dtype == A3_DT_F16 ? a3_f32_to_f16(src[i])
                                                 : a3_f32_to_bf16(src[i]);
        size_t es = a3_dtype_size(t->dtype);
        uint32_t got = 0;
        for (size_t k = 0; k < es; k++) got |= (uint32_t)p[i * es + k] << (8 * k);
        CHECKF(got == want, "%s[%zu]: 0x%x != 0x%x", t->name, i, got, want);
    }
}

/* Header length is a multiple of 8, padded with spaces, and carries the
 * format metadata; tensors appear in insertion order with rising offsets. */
static void check_header_layout(const char *path, const char *const *names, size_t n)
{
    size_t len = 0;
    unsigned char *b = tf_read_bytes(path, &len);
    CHECK(b && len >= 8);
    if (!b) return;
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)b[i] << (8 * i);
    CHECK(hl % 8 == 0 && hl + 8 <= len);
    CHECK(b[8] == '{');
    cJSON *root = cJSON_ParseWithLength((const char *)b + 8, (size_t)hl);
    CHECK(root != NULL);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(md, "format");
    CHECK(cJSON_IsString(fmt) && strcmp(fmt->valuestring, "pt") == 0);
    size_t i = 0;
    double prev_end = 0;
    for (const cJSON *it = root ? root->child : NULL; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0) continue;
        CHECK(i < n && strcmp(it->string, names[i]) == 0);
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        CHECK(cJSON_GetArraySize(off) == 2 && off->child->valuedouble == prev_end);
        if (cJSON_GetArraySize(off) == 2) prev_end = off->child->next->valuedouble;
        i++;
    }
    CHECK(i == n && prev_end + 8 + (double)hl == (double)len);
    cJSON_Delete(root);
    free(b);
}

static void test_writer_round_trip(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *path = a3_path_join(tmp, "w.safetensors");
    a3_st_writer *w = a3_st_writer_new();
    a3_err err = {0};
    CHECK(w != NULL);
    if (!w || !path) return;
    /* insertion order deliberately not sorted */
    const char *names[] = {"z.f32", "a.f16", "m.bf16", "scalar", "empty", "odd.f16"};
    const a3_dtype dts[] = {A3_DT_F32, A3_DT_F16, A3_DT_BF16, A3_DT_F32, A3_DT_BF16, A3_DT_F16};
    const int64_t shp[] = {4, 5};
    CHECK(a3_st_writer_add(w, names[0], dts[0], 2, shp, special, &err) == A3_OK);
    CHECK(a3_st_writer_add(w, names[1], dts[1], 2, shp, special, &err) == A3_OK);
    CHECK(a3_st_writer_add(w, names[2], dts[2], 2, shp, special, &err) == A3_OK);
    CHECK(a3_st_writer_add(w, names[3], dts[3], 0, NULL, special + 4, &err) == A3_OK);
    CHECK(a3_st_writer_add(w, names[4], dts[4], 1, (const int64_t[]){0}, NULL, &err) == A3_OK);
    CHECK(a3_st_writer_add(w, names[5], dts[5], 1, (const int64_t[]){3}, special + 2, &err) == A3_OK);
    int rc = a3_st_writer_save(w, path, &err);
    CHECKF(rc == A3_OK, "%s", err.msg);
    a3_st_writer_free(w);
    check_header_layout(path, names, 6);
    a3_st_set *st = NULL;
    rc = a3_st_open_file(path, &st, &err);
    CHECKF(rc == A3_OK, "%s", err.msg);
    for (size_t i = 0; rc == A3_OK && i < 6; i++) {
        const a3_st_tensor *t = a3_st_get(st, i);
        CHECK(strcmp(t->name, names[i]) == 0 && t->dtype == dts[i]);
    }
    for (size_t k = 0; rc == A3_OK && k < 3; k++) {
        float got[N_SPECIAL];
        /* the typed load refuses the Inf/NaN among the specials, naming
         * where; the conversion itself keeps every bit pattern */
        CHECK(a3_st_load_f32(st, names[k], 2, shp, got, &err) == A3_EFORMAT && strstr(err.msg, names[k]) &&
              strstr(err.msg, "is infinite"));
        const a3_st_tensor *t = a3_st_find(st, names[k]);
        CHECK(a3_convert_to_f32(t->dtype, t->data, t->numel, got) == A3_OK);
        for (size_t i = 0; i < N_SPECIAL; i++)
            CHECKF(same_bits(got[i], expect_as(dts[k], special[i])), "%s[%zu] = %g", names[k], i, got[i]);
        check_raw(a3_st_find(st, names[k]), special);
    }
    if (rc == A3_OK) {
        float s = 0, o[3];
        CHECK(a3_st_load_f32(st, "scalar", 0, NULL, &s, &err) == A3_OK && s == 3.14159265f);
        CHECK(a3_st_find(st, "empty")->nbytes == 0);
        CHECK(a3_st_load_f32(st, "odd.f16", 1, (const int64_t[]){3}, o, &err) == A3_OK);
        CHECK(o[0] == 1.0f && o[1] == -1.5f && o[2] == a3_f16_to_f32(a3_f32_to_f16(3.14159265f)));
    }
    a3_st_free(st);
    CHECK(tf_count_files(tmp) == 1); /* the atomic writer left no temp file */
    free(path);
    rm_dir(tmp);
}

static void test_writer_rejects(void)
{
    a3_st_writer *w = a3_st_writer_new();
    a3_err err = {0};
    float x[4] = {1, 2, 3, 4};
    CHECK(w != NULL);
    if (!w) return;
    CHECK(a3_st_writer_add(w, "a", A3_DT_F32, 1, (const int64_t[]){4}, x, &err) == A3_OK);
    CHECK(a3_st_writer_add(w, "a", A3_DT_F16, 1, (const int64_t[]){4}, x, &err) == A3_EINVAL);
    CHECK(strstr(err.msg, "a: duplicate") != NULL);
    CHECK(a3_st_writer_add(w, "b", A3_DT_I32, 1, (const int64_t[]){4}, x, &err) == A3_EINVAL);
    CHECK(strstr(err.msg, "I32") != NULL);
    CHECK(a3_st_writer_add(w, "c", A3_DT_F64, 1, (const int64_t[]){4}, x, &err) == A3_EINVAL);
    CHECK(a3_st_writer_add(w, "d", A3_DT_F32, 9, (const int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 4}, x, &err) ==
          A3_EINVAL);
    CHECK(a3_st_writer_add(w, "e", A3_DT_F32, 1, (const int64_t[]){-4}, x, &err) == A3_EINVAL);
    CHECK(a3_st_writer_add(w, "f", A3_DT_F32, 3, (const int64_t[]){INT64_MAX, INT64_MAX, 4}, x, &err) ==
          A3_EINVAL);
    CHECK(a3_st_writer_add(w, "__metadata__", A3_DT_F32, 1, (const int64_t[]){4}, x, &err) == A3_EINVAL);
    CHECK(a3_st_writer_add(w, "", A3_DT_F32, 1, (const int64_t[]){4}, x, &err) == A3_EINVAL);
    /* an unwritable destination fails cleanly and leaves no file */
    int rc = a3_st_writer_save(w, "/nonexistent-a3-dir/x.safetensors", &err);
    CHECK(rc == A3_EIO && strstr(err.msg, "/nonexistent-a3-dir/x.safetensors") != NULL);
    a3_st_writer_free(w);
    a3_st_writer_free(NULL);
}

/* Names that need JSON escaping survive the round trip. */
static void test_writer_escaping(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *path = a3_path_join(tmp, "esc.safetensors");
    a3_st_writer *w = a3_st_writer_new();
    a3_err err = {0};
    const char *name = "we\"ird\\name\t\xc3\xa9";
    float v = 7.0f;
    CHECK(w && a3_st_writer_add(w, name, A3_DT_F32, 1, (const int64_t[]){1}, &v, &err) == A3_OK);
    CHECK(a3_st_writer_save(w, path, &err) == A3_OK);
    a3_st_writer_free(w);
    a3_st_set *st = NULL;
    CHECK(a3_st_open_file(path, &st, &err) == A3_OK);
    float got = 0;
    CHECK(a3_st_load_f32(st, name, 1, (const int64_t[]){1}, &got, &err) == A3_OK && got == 7.0f);
    a3_st_free(st);
    free(path);
    rm_dir(tmp);
}

/* Thousands of tensors: every name found, absent names are not. */
static void test_find_many(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *path = a3_path_join(tmp, "many.safetensors");
    a3_st_writer *w = a3_st_writer_new();
    a3_err err = {0};
    enum { N = 3000 };
    char name[64];
    for (int i = 0; w && i < N; i++) {
        float v = (float)i;
        snprintf(name, sizeof name, "model.layers.%d.w", (i * 7919) % N);
        CHECK(a3_st_writer_add(w, name, A3_DT_BF16, 1, (const int64_t[]){1}, &v, &err) == A3_OK);
    }
    CHECK(a3_st_writer_save(w, path, &err) == A3_OK);
    a3_st_writer_free(w);
    a3_st_set *st = NULL;
    CHECK(a3_st_open_file(path, &st, &err) == A3_OK);
    CHECK(a3_st_count(st) == N);
    for (int i = 0; st && i < N; i++) {
        snprintf(name, sizeof name, "model.layers.%d.w", (i * 7919) % N);
        const a3_st_tensor *t = a3_st_find(st, name);
        float got = -1;
        CHECK(t && strcmp(t->name, name) == 0);
        CHECK(a3_st_load_f32(st, name, 1, (const int64_t[]){1}, &got, &err) == A3_OK);
        CHECK(got == a3_bf16_to_f32(a3_f32_to_bf16((float)i)));
    }
    CHECK(a3_st_find(st, "model.layers.3000.w") == NULL);
    CHECK(a3_st_find(st, "") == NULL && a3_st_find(st, "zzz") == NULL && a3_st_find(st, "a") == NULL);
    a3_st_free(st);
    free(path);
    rm_dir(tmp);
}

/* ---- truncation and byte flips ---------------------------------------------------- */

/* A valid file cut at every length: every cut fails cleanly naming the
 * file; only the whole file opens. */
static void test_truncation(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *full = a3_path_join(tmp, "full.safetensors"), *cut = a3_path_join(tmp, "cut.safetensors");
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[24,34]},"
                    "\"c\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[34,40]}}";
    size_t extra = 0, n;
    unsigned char *b = st_image(h, 40 + extra, &n);
    CHECK(b && full && cut && tf_write_bytes(full, b, n) == 0);
    if (!b || !full || !cut) return;
    size_t data_end = n - extra;
    int bad = 0;
    for (size_t len = 0; len <= n; len++) {
        CHECK(tf_write_bytes(cut, b, len) == 0);
        a3_st_set *st = NULL;
        a3_err err = {0};
        int rc = a3_st_open_file(cut, &st, &err);
        if (len < data_end) {
            if (rc == A3_OK || !strstr(err.msg, cut)) bad++;
        } else if (rc != A3_OK || a3_st_count(st) != 3) {
            bad++;
        }
        a3_st_free(st);
    }
    CHECKF(bad == 0, "%d cut points misbehaved", bad);
    free(b);
    free(full);
    free(cut);
    rm_dir(tmp);
}

static uint32_t xorshift(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* Read every tensor a mutated file claims to have, so ASan sees any
 * pointer that strays outside the mapping. */
static void touch_all(const a3_st_set *st)
{
    for (size_t i = 0; i < a3_st_count(st); i++) {
        const a3_st_tensor *t = a3_st_get(st, i);
        float *buf = malloc(t->numel ? t->numel * sizeof(float) : 1);
        if (!buf) continue;
        (void)a3_convert_to_f32(t->dtype, t->data, t->numel, buf);
        volatile unsigned char sink = 0;
        for (size_t k = 0; k < t->nbytes; k++) sink ^= ((const unsigned char *)t->data)[k];
        (void)sink;
        free(buf);
    }
}

static void test_fuzz_flips(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *path = a3_path_join(tmp, "fz.safetensors");
    a3_st_writer *w = a3_st_writer_new();
    a3_err err = {0};
    float v[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    CHECK(w && path);
    if (!w || !path) return;
    CHECK(a3_st_writer_add(w, "x", A3_DT_F32, 2, (const int64_t[]){3, 4}, v, &err) == A3_OK);
    CHECK(a3_st_writer_add(w, "y", A3_DT_F16, 1, (const int64_t[]){5}, v, &err) == A3_OK);
    CHECK(a3_st_writer_add(w, "z", A3_DT_BF16, 2, (const int64_t[]){2, 3}, v, &err) == A3_OK);
    CHECK(a3_st_writer_save(w, path, &err) == A3_OK);
    a3_st_writer_free(w);
    size_t n = 0;
    unsigned char *orig = tf_read_bytes(path, &n), *mut = malloc(n);
    CHECK(orig && mut);
    if (!orig || !mut) return;
    size_t hdr = 8;
    for (int i = 0; i < 8; i++) hdr += (size_t)orig[i] << (8 * i);
    CHECK(hdr < n);
    static const char interesting[] = "0123456789[]{},:\"-.e ";
    uint32_t seed = 0x1234567u;
    int opened = 0, failed = 0, bad = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(mut, orig, n);
        int flips = 1 + (int)(xorshift(&seed) % 3);
        for (int f = 0; f < flips; f++) {
            /* mostly the header, where the parser lives; sometimes JSON-ish bytes */
            size_t pos = (xorshift(&seed) % 4) ? xorshift(&seed) % hdr : xorshift(&seed) % n;
            uint32_t r = xorshift(&seed);
            mut[pos] = (r & 1) ? (unsigned char)interesting[(r >> 1) % (sizeof interesting - 1)]
                               : (unsigned char)(r >> 8);
        }
        if (tf_write_bytes(path, mut, n) != 0) {
            bad++;
            continue;
        }
        a3_st_set *st = NULL;
        int rc = a3_st_open_file(path, &st, &err);
        if (rc == A3_OK) {
            opened++;
            touch_all(st);
        } else {
            failed++;
            if (!err.msg[0] || !strstr(err.msg, path)) bad++;
        }
        a3_st_free(st);
    }
    CHECK(bad == 0);
    CHECK(opened > 0 && failed > 0);
    free(orig);
    free(mut);
    free(path);
    rm_dir(tmp);
}

/* ---- sharded directories ---------------------------------------------------------- */

typedef struct {
    const char *desc;
    const char *index;  /* model.safetensors.index.json text; NULL: no index */
    const char *shard_a; /* a.safetensors header (16 data bytes); NULL: absent */
    const char *shard_b; /* b.safetensors header (16 data bytes); NULL: absent */
    const char *file;   /* file the message must name */
    const char *expect;
} bad_dir;

#define SH_X "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
#define SH_Y "{\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
#define SH_XY                                                                                               \
    "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"                                       \
    "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}"
#define WM_OK "{\"metadata\":{\"total_size\":16},\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\"}}"
#define IDX "model.safetensors.index.json"

static const bad_dir bad_dirs[] = {
    {"no model files", NULL, NULL, NULL, "", "neither model.safetensors nor"},
    {"index not JSON", "{\"weight_map\": {", SH_X, SH_Y, IDX, "index: not a valid JSON object"},
    {"index is an array", "[]", SH_X, SH_Y, IDX, "index: not a valid JSON object"},
    {"no weight_map", "{\"metadata\":{}}", SH_X, SH_Y, IDX, "weight_map is missing"},
    {"weight_map an array", "{\"weight_map\":[\"a.safetensors\"]}", SH_X, SH_Y, IDX, "weight_map is not an object"},
    {"weight_map empty", "{\"weight_map\":{}}", SH_X, SH_Y, IDX, "weight_map is empty"},
    {"weight_map value a number", "{\"weight_map\":{\"x\":1}}", SH_X, SH_Y, IDX,
     "x: weight_map value is not a shard file name"},
    {"shard path escapes the dir", "{\"weight_map\":{\"x\":\"../a.safetensors\"}}", SH_X, SH_Y, IDX,
     "x: weight_map value is not a shard file name"},
    {"shard name empty", "{\"weight_map\":{\"x\":\"\"}}", SH_X, SH_Y, IDX, "x: weight_map value is not"},
    {"shard does not exist", "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"c.safetensors\"}}", SH_X, SH_Y, IDX,
     "y: weight_map names shard 'c.safetensors', which does not exist"},
    {"listed tensor absent from its shard",
     "{\"weight_map\":{\"x\":\"a.safetensors\",\"y\":\"b.safetensors\",\"q\":\"b.safetensors\"}}", SH_X, SH_Y, IDX,
     "q: listed in weight_map but absent from shard 'b.safetensors'"},
    {"tensor in two shards", WM_OK, SH_X, SH_XY, "b.safetensors", "x: also in shard"},
    {"tensor in a shard but not listed", "{\"weight_map\":{\"x\":\"a.safetensors\"}}", SH_XY,
     NULL, "a.safetensors", "not listed in weight_map"},
    {"tensor in the wrong shard", "{\"weight_map\":{\"x\":\"b.safetensors\",\"y\":\"a.safetensors\"}}", SH_X, SH_Y,
     IDX, "weight_map says shard"},
    {"tensor listed twice", "{\"weight_map\":{\"x\":\"a.safetensors\",\"x\":\"a.safetensors\"}}", SH_X, NULL, IDX,
     "x: listed twice in weight_map"},
    {"corrupt shard", WM_OK, SH_X, "{\"y\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     "b.safetensors", "y: unknown dtype 'Q4'"},
    {"truncated shard", WM_OK, SH_X, "{\"y\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}",
     "b.safetensors", "y: data_offsets end 32 beyond"},
};

static void check_bad_dir(const bad_dir *c)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *idx = a3_path_join(tmp, IDX), *a = a3_path_join(tmp, "a.safetensors"),
         *b = a3_path_join(tmp, "b.safetensors");
    CHECK(idx && a && b);
    if (c->index) CHECK(tf_write_bytes(idx, c->index, strlen(c->index)) == 0);
    if (c->shard_a) CHECK(write_st(a, c->shard_a, data_end(c->shard_a, 16)) == 0);
    if (c->shard_b) CHECK(write_st(b, c->shard_b, data_end(c->shard_b, 16)) == 0);
    a3_st_set *st = NULL;
    a3_err err = {0};
    int rc = a3_st_open_dir(tmp, &st, &err);
    char *want_file = a3_path_join(tmp, c->file);
    expect_fail(rc, st, &err, c->file[0] ? want_file : tmp, c->expect, c->desc);
    free(want_file);
    free(idx);
    free(a);
    free(b);
    rm_dir(tmp);
}

static void test_corrupt_dirs(void)
{
    for (size_t i = 0; i < sizeof bad_dirs / sizeof bad_dirs[0]; i++) check_bad_dir(&bad_dirs[i]);
}

static int save_shard(const char *dir, const char *file, const char *const *names, size_t n, float base)
{
    a3_st_writer *w = a3_st_writer_new();
    a3_err err = {0};
    int rc = w ? A3_OK : A3_ENOMEM;
    for (size_t i = 0; i < n && rc == A3_OK; i++) {
        float v[6];
        for (int k = 0; k < 6; k++) v[k] = base + (float)(10 * i + k);
        rc = a3_st_writer_add(w, names[i], A3_DT_F16, 2, (const int64_t[]){2, 3}, v, &err);
    }
    char *path = a3_path_join(dir, file);
    if (rc == A3_OK) rc = path ? a3_st_writer_save(w, path, &err) : A3_ENOMEM;
    free(path);
    a3_st_writer_free(w);
    return rc;
}

static void test_sharded_round_trip(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    const char *s1[] = {"model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight"};
    const char *s2[] = {"model.layers.1.mlp.up_proj.weight", "lm_head.weight", "model.norm.weight"};
    CHECK(save_shard(tmp, "model-00001-of-00002.safetensors", s1, 2, 100) == A3_OK);
    CHECK(save_shard(tmp, "model-00002-of-00002.safetensors", s2, 3, 200) == A3_OK);
    const char *index = "{\"metadata\": {\"total_size\": 60},\n \"weight_map\": {\n"
                        "  \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
                        "  \"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\",\n"
                        "  \"model.layers.0.mlp.up_proj.weight\": \"model-00001-of-00002.safetensors\",\n"
                        "  \"model.layers.1.mlp.up_proj.weight\": \"model-00002-of-00002.safetensors\",\n"
                        "  \"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}\n";
    char *idx = a3_path_join(tmp, IDX);
    CHECK(idx && tf_write_bytes(idx, index, strlen(index)) == 0);
    a3_st_set *st = NULL;
    a3_err err = {0};
    int rc = a3_st_open_dir(tmp, &st, &err);
    CHECKF(rc == A3_OK, "%s", err.msg);
    CHECK(a3_st_count(st) == 5);
    for (size_t i = 0; rc == A3_OK && i < 5; i++) {
        const char *name = i < 2 ? s1[i] : s2[i - 2];
        const char *shard = i < 2 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
        float base = i < 2 ? 100 : 200, got[6];
        size_t j = i < 2 ? i : i - 2;
        const a3_st_tensor *t = a3_st_find(st, name);
        CHECK(t && strstr(t->file, shard) != NULL && t->dtype == A3_DT_F16);
        CHECK(a3_st_load_f32(st, name, 2, (const int64_t[]){2, 3}, got, &err) == A3_OK);
        for (int k = 0; k < 6; k++) CHECK(got[k] == base + (float)(10 * j + k));
    }
    /* missing tensor names the directory the set came from */
    float dummy[6];
    CHECK(a3_st_load_f32(st, "model.layers.9.w", 2, (const int64_t[]){2, 3}, dummy, &err) != A3_OK);
    CHECK(strstr(err.msg, tmp) && strstr(err.msg, "model.layers.9.w: tensor not found"));
    a3_st_free(st);
    /* model.safetensors wins over the index when both exist */
    const char *one[] = {"only"};
    CHECK(save_shard(tmp, "model.safetensors", one, 1, 0) == A3_OK);
    CHECK(a3_st_open_dir(tmp, &st, &err) == A3_OK && a3_st_count(st) == 1 && a3_st_find(st, "only"));
    a3_st_free(st);
    free(idx);
    rm_dir(tmp);
}

/* ---- a3_st_load_f32 errors ----------------------------------------------------------- */

static void test_load_errors(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    char *path = a3_path_join(tmp, "l.safetensors");
    CHECK(write_st(path, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                         "\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[24,32]},"
                         "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[32,40]}}",
                   40) == 0);
    a3_st_set *st = NULL;
    a3_err err = {0};
    CHECK(a3_st_open_file(path, &st, &err) == A3_OK);
    float buf[8];
    CHECK(a3_st_load_f32(st, "nope", 1, (const int64_t[]){2}, buf, &err) == A3_EFORMAT);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "nope: tensor not found"));
    CHECK(a3_st_load_f32(st, "w", 2, (const int64_t[]){3, 2}, buf, &err) == A3_EFORMAT);
    CHECKF(strstr(err.msg, path) && strstr(err.msg, "w: shape [2, 3], expected [3, 2]"), "%s", err.msg);
    CHECK(a3_st_load_f32(st, "w", 1, (const int64_t[]){6}, buf, &err) == A3_EFORMAT);
    CHECK(strstr(err.msg, "expected [6]") != NULL);
    CHECK(a3_st_load_f32(st, "w", 3, (const int64_t[]){2, 3, 1}, buf, &err) == A3_EFORMAT);
    CHECK(a3_st_load_f32(st, "i", 1, (const int64_t[]){2}, buf, &err) == A3_EUNSUPPORTED);
    CHECK(strstr(err.msg, "i: dtype I32") != NULL);
    CHECK(a3_st_load_f32(st, "w", 2, (const int64_t[]){2, 3}, buf, &err) == A3_OK);
    a3_st_free(st);
    free(path);
    rm_dir(tmp);
}

/* ---- conversions ----------------------------------------------------------------------- */

static void test_f16_known(void)
{
    CHECK(a3_f16_to_f32(0x3C00) == 1.0f);
    CHECK(a3_f16_to_f32(0xC000) == -2.0f);
    CHECK(a3_f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(a3_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(a3_f16_to_f32(0x03FF) == 1023 * 0x1p-24f);
    CHECK(a3_f16_to_f32(0x0400) == 0x1p-14f);
    CHECK(a3_f16_to_f32(0x8001) == -0x1p-24f);
    CHECK(a3_f16_to_f32(0x3555) == 0x1.554p-2f);
    CHECK(f32_bits(a3_f16_to_f32(0x8000)) == 0x80000000u);
    CHECK(a3_f16_to_f32(0x7C00) == INFINITY && a3_f16_to_f32(0xFC00) == -INFINITY);
    CHECK(isnan(a3_f16_to_f32(0x7E00)) && isnan(a3_f16_to_f32(0x7C01)) && isnan(a3_f16_to_f32(0xFFFF)));

    CHECK(a3_f32_to_f16(1.0f) == 0x3C00);
    CHECK(a3_f32_to_f16(65504.0f) == 0x7BFF);
    CHECK(a3_f32_to_f16(65519.99f) == 0x7BFF);
    CHECK(a3_f32_to_f16(65520.0f) == 0x7C00); /* tie, odd mantissa: rounds up to inf */
    CHECK(a3_f32_to_f16(-1e10f) == 0xFC00);
    CHECK(a3_f32_to_f16(INFINITY) == 0x7C00 && a3_f32_to_f16(-INFINITY) == 0xFC00);
    CHECK(a3_f32_to_f16(-0.0f) == 0x8000);
    CHECK(a3_f32_to_f16(0x1p-24f) == 0x0001);
    CHECK(a3_f32_to_f16(0x1p-25f) == 0x0000);          /* tie between 0 and 2^-24: even */
    CHECK(a3_f32_to_f16(0x1.000002p-25f) == 0x0001);   /* just above the tie */
    CHECK(a3_f32_to_f16(0x1.8p-24f) == 0x0002);        /* tie 1.5 units: to even 2 */
    CHECK(a3_f32_to_f16(0x1.4p-23f) == 0x0002);        /* tie 2.5 units: to even 2 */
    CHECK(a3_f32_to_f16(0x1p-26f) == 0x0000);
    CHECK(a3_f32_to_f16(0x1p-14f - 0x1p-25f) == 0x0400); /* tie at top of subnormals: to even */
    CHECK(a3_f32_to_f16(1.0f + 0x1p-11f) == 0x3C00);   /* tie: even */
    CHECK(a3_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3C02); /* tie: even */
    CHECK(a3_f32_to_f16(1.0f + 0x1p-11f + 0x1p-23f) == 0x3C01);
    CHECK(a3_f32_to_f16(1e-30f) == 0 && a3_f32_to_f16(-1e-30f) == 0x8000);
    uint16_t n = a3_f32_to_f16(NAN);
    CHECK((n & 0x7C00) == 0x7C00 && (n & 0x3FF) != 0);
    n = a3_f32_to_f16(bits_f32(0xFF800001u)); /* NaN with payload only in low bits */
    CHECK((n & 0xFC00) == 0xFC00 && (n & 0x3FF) != 0);
}

/* Reference pairs computed independently with CPython's struct.pack('<e'),
 * which rounds to nearest even: {float32 bits, float16 bits}. */
static const uint32_t f16_ref[][2] = {
    {0xBC7953A7, 0xA3CB}, {0x46862E40, 0x7431}, {0x3DCA98CC, 0x2E55}, {0xB30B0052, 0x8001},
    {0xB41ECE0C, 0x8002}, {0x33E9D64A, 0x0002}, {0x3950B85A, 0x0A86}, {0x444AF305, 0x6258},
    {0x3905F66C, 0x0830}, {0x3B35A659, 0x19AD}, {0x44277C55, 0x613C}, {0x354A71E0, 0x000D},
    {0x3D8C789B, 0x2C64}, {0x4407A103, 0x603D}, {0xC1D71759, 0xCEB9}, {0xBC3B98D8, 0xA1DD},
    {0x3DA65EC4, 0x2D33}, {0xB98A7A3A, 0x8C54}, {0xC2BF5FF9, 0xD5FB}, {0x4024DB25, 0x4127},
    {0x35C18704, 0x0018}, {0xBC93743B, 0xA49C}, {0x3F0504BE, 0x3828}, {0xC3C958EA, 0xDE4B},
    {0xBCD8FF70, 0xA6C8}, {0x44E6008E, 0x6730}, {0xB4F8EB4F, 0x8008}, {0xC70851EB, 0xF843},
    {0xC6C9FA24, 0xF650}, {0xBB5BBA76, 0x9ADE}, {0xB2F8672C, 0x8000}, {0xB74E329D, 0x80CE},
    {0xB39BEE3B, 0x8001}, {0xB65E82B1, 0x8038}, {0xBEF55A3C, 0xB7AB}, {0xB4954B7E, 0x8005},
    {0x43A3903C, 0x5D1D}, {0xBFEE970B, 0xBF75}, {0xBF7E448E, 0xBBF2}, {0x39135160, 0x089B},
};

static void test_f16_reference(void)
{
    for (size_t i = 0; i < sizeof f16_ref / sizeof f16_ref[0]; i++) {
        uint16_t got = a3_f32_to_f16(bits_f32(f16_ref[i][0]));
        CHECKF(got == f16_ref[i][1], "0x%08" PRIX32 " -> 0x%04X, want 0x%04" PRIX32, f16_ref[i][0], got,
               f16_ref[i][1]);
    }
}

/* Every f16 value: widening matches the formula (-1)^s 2^(e-15) (1 + m/1024)
 * evaluated in double, and narrowing it back gives the same bits. */
static void test_f16_exhaustive(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        float f = a3_f16_to_f32((uint16_t)h);
        if (e == 31) {
            bad += m ? !isnan(f) : !(isinf(f) && (f < 0) == s);
            if (m) bad += (a3_f32_to_f16(f) & 0x7FFF) <= 0x7C00;
            else bad += a3_f32_to_f16(f) != h;
            continue;
        }
        double want = e ? ldexp(1.0 + m / 1024.0, e - 15) : ldexp(m / 1024.0, -14);
        if (s) want = -want;
        bad += (double)f != want || (signbit(f) != 0) != (s != 0) || a3_f32_to_f16(f) != h;
    }
    CHECKF(bad == 0, "%d f16 values wrong", bad);
}

/* Narrowing picks the nearest f16 (ties to even), checked against both
 * neighbours in double for pseudo-random floats across the whole f16 range. */
static void test_f16_nearest(void)
{
    uint32_t seed = 99;
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t r = xorshift(&seed);
        /* exponents 2^-27 .. 2^15, random mantissa and sign */
        uint32_t bits = (r & 0x807FFFFFu) | ((100u + (xorshift(&seed) % 43)) << 23);
        float f = bits_f32(bits);
        uint16_t h = a3_f32_to_f16(f);
        double d = fabs((double)f), got = fabs((double)a3_f16_to_f32(h));
        double err = fabs(got - d);
        uint16_t mag = h & 0x7FFF;
        double up = mag < 0x7C00 ? (double)a3_f16_to_f32((uint16_t)(mag + 1)) : INFINITY;
        double dn = mag > 0 ? (double)a3_f16_to_f32((uint16_t)(mag - 1)) : -1;
        if (mag == 0x7C00) { /* inf: only from >= 65520 */
            bad += d < 65520.0;
            continue;
        }
        if (fabs(up - d) < err || (dn >= 0 && fabs(d - dn) < err)) bad++;
        if ((fabs(up - d) == err || (dn >= 0 && fabs(d - dn) == err)) && (mag & 1)) bad++;
        if ((h >> 15) != (bits >> 31) && mag) bad++;
    }
    CHECKF(bad == 0, "%d values not rounded to nearest even", bad);
}

static void test_bf16(void)
{
    CHECK(a3_bf16_to_f32(0x3F80) == 1.0f && a3_bf16_to_f32(0xBF80) == -1.0f);
    CHECK(a3_bf16_to_f32(0x4049) == 3.140625f);
    CHECK(a3_bf16_to_f32(0x7F80) == INFINITY && a3_bf16_to_f32(0xFF80) == -INFINITY);
    CHECK(a3_bf16_to_f32(0x0001) == 0x1p-133f); /* smallest subnormal */
    CHECK(a3_bf16_to_f32(0x7F7F) == 0x1.FEp127f);
    CHECK(isnan(a3_bf16_to_f32(0x7FC0)) && isnan(a3_bf16_to_f32(0x7F81)));
    CHECK(a3_f32_to_bf16(1.0f) == 0x3F80);
    CHECK(a3_f32_to_bf16(1.0f + 0x1p-8f) == 0x3F80);      /* tie: even */
    CHECK(a3_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82);  /* tie: even */
    CHECK(a3_f32_to_bf16(bits_f32(0x3F808001u)) == 0x3F81);
    CHECK(a3_f32_to_bf16(bits_f32(0x3F807FFFu)) == 0x3F80);
    CHECK(a3_f32_to_bf16(bits_f32(0x7F7FFFFFu)) == 0x7F80); /* rounds up to inf */
    CHECK(a3_f32_to_bf16(-0.0f) == 0x8000);
    CHECK(a3_f32_to_bf16(0x1p-133f) == 0x0001);
    CHECK(a3_f32_to_bf16(-INFINITY) == 0xFF80);
    uint16_t n = a3_f32_to_bf16(bits_f32(0x7F800001u)); /* must not become inf */
    CHECK((n & 0x7F80) == 0x7F80 && (n & 0x7F) != 0);
    n = a3_f32_to_bf16(bits_f32(0xFFFFFFFFu)); /* must not carry out of the sign */
    CHECK(n >> 15 && (n & 0x7F80) == 0x7F80 && (n & 0x7F) != 0);
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = a3_bf16_to_f32((uint16_t)h);
        if (f32_bits(f) != h << 16) bad++;
        if (!isnan(f) && a3_f32_to_bf16(f) != h) bad++;
        if (isnan(f) && !isnan(a3_bf16_to_f32(a3_f32_to_bf16(f)))) bad++;
    }
    CHECKF(bad == 0, "%d bf16 values wrong", bad);
}

static void test_convert_to_f32(void)
{
    /* an odd offset into a byte buffer: nothing here is aligned */
    unsigned char raw[1 + 8 * 3];
    float out[3];
    const float fv[3] = {1.5f, -0.0f, 1e-40f};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++) raw[1 + 4 * i + k] = (unsigned char)(f32_bits(fv[i]) >> (8 * k));
    CHECK(a3_convert_to_f32(A3_DT_F32, raw + 1, 3, out) == A3_OK);
    for (int i = 0; i < 3; i++) CHECK(same_bits(out[i], fv[i]));
    const uint16_t hv[3] = {0x3C00, 0x0001, 0xFC00};
    for (int i = 0; i < 3; i++) {
        raw[1 + 2 * i] = (unsigned char)hv[i];
        raw[2 + 2 * i] = (unsigned char)(hv[i] >> 8);
    }
    CHECK(a3_convert_to_f32(A3_DT_F16, raw + 1, 3, out) == A3_OK);
    CHECK(out[0] == 1.0f && out[1] == 0x1p-24f && out[2] == -INFINITY);
    CHECK(a3_convert_to_f32(A3_DT_BF16, raw + 1, 1, out) == A3_OK && out[0] == a3_bf16_to_f32(0x3C00));
    const double dv[2] = {0.1, -1e300};
    for (int i = 0; i < 2; i++) {
        uint64_t u;
        memcpy(&u, &dv[i], 8);
        for (int k = 0; k < 8; k++) raw[1 + 8 * i + k] = (unsigned char)(u >> (8 * k));
    }
    CHECK(a3_convert_to_f32(A3_DT_F64, raw + 1, 2, out) == A3_OK);
    CHECK(out[0] == 0.1f && out[1] == -INFINITY);
    CHECK(a3_convert_to_f32(A3_DT_I32, raw, 1, out) == A3_EUNSUPPORTED);
    CHECK(a3_convert_to_f32(A3_DT_U8, raw, 1, out) == A3_EUNSUPPORTED);
    CHECK(a3_convert_to_f32(A3_DT_COUNT, raw, 1, out) == A3_EUNSUPPORTED);
}

static void test_dtype_names(void)
{
    for (int i = 0; i < A3_DT_COUNT; i++) {
        a3_dtype d;
        CHECK(a3_dtype_parse(a3_dtype_name((a3_dtype)i), &d) == 0 && d == (a3_dtype)i);
        CHECK(a3_dtype_size((a3_dtype)i) > 0);
    }
    a3_dtype d;
    CHECK(a3_dtype_parse("F8_E4M3", &d) == -1 && a3_dtype_parse("", &d) == -1);
    CHECK(a3_dtype_size(A3_DT_COUNT) == 0 && a3_dtype_size(A3_DT_BF16) == 2);
    CHECK(strcmp(a3_dtype_name(A3_DT_BF16), "BF16") == 0);
}

/* The streaming writer: misuse refused, the shard split where the size
 * says, an unfinished stream leaves no file, and a3_parse_bytes. */
static void test_stream(void)
{
    char tmp[64];
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    a3_err err = {0};
    float v[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    int64_t s3[1] = {3}, s4[1] = {4}, s10[1] = {10};
    /* 12 + 16 + 40 bytes of F32 with max 20: [a][b][c], c alone and over. */
    a3_st_stream *s = a3_st_stream_new();
    CHECK(a3_st_stream_declare(s, "a", A3_DT_F32, 1, s3, &err) == 0);
    CHECK(a3_st_stream_declare(s, "b", A3_DT_F32, 1, s4, &err) == 0);
    CHECK(a3_st_stream_declare(s, "c", A3_DT_F32, 1, s10, &err) == 0);
    CHECK(a3_st_stream_put(s, "a", v, 3, &err) == A3_EINVAL); /* before begin */
    CHECK(a3_st_stream_begin_dir(s, tmp, 20, &err) == 0 && a3_st_stream_nfiles(s) == 3);
    CHECK(a3_st_stream_declare(s, "d", A3_DT_F32, 1, s3, &err) == A3_EINVAL); /* after begin */
    CHECK(a3_st_stream_write(s, "b", 1, s4, v, &err) == A3_EINVAL && strstr(err.msg, "order"));
    CHECK(a3_st_stream_write(s, "a", 1, s4, v, &err) == A3_EINVAL && strstr(err.msg, "declared [3]"));
    CHECK(a3_st_stream_write(s, "a", 1, s3, v, &err) == 0);
    CHECK(a3_st_stream_put(s, "b", v, 2, &err) == 0 && a3_st_stream_put(s, "b", v + 2, 3, &err) == A3_EINVAL);
    CHECK(a3_st_stream_put(s, "b", v + 2, 2, &err) == 0);
    CHECK(a3_st_stream_finish(s, &err) == A3_EINVAL && strstr(err.msg, "c: never written"));
    CHECK(tf_count_files(tmp) >= 2); /* shard 1 done, shard 2 in its temp file */
    a3_st_stream_free(s); /* unfinished: everything goes */
    CHECK(tf_count_files(tmp) == 0);
    /* The same, finished: three shards and an index the reader accepts. */
    s = a3_st_stream_new();
    a3_st_stream_declare(s, "a", A3_DT_F32, 1, s3, &err);
    a3_st_stream_declare(s, "b", A3_DT_F16, 1, s4, &err);
    a3_st_stream_declare(s, "c", A3_DT_F32, 1, s10, &err);
    CHECK(a3_st_stream_begin_dir(s, tmp, 20, &err) == 0 && a3_st_stream_nfiles(s) == 2); /* 12+8, 40 */
    CHECK(a3_st_stream_write(s, "a", 1, s3, v, &err) == 0 && a3_st_stream_write(s, "b", 1, s4, v, &err) == 0);
    CHECK(a3_st_stream_write(s, "c", 1, s10, v, &err) == 0 && a3_st_stream_finish(s, &err) == 0);
    a3_st_stream_free(s);
    CHECK(tf_count_files(tmp) == 3);
    a3_st_set *st = NULL;
    CHECK(a3_st_open_dir(tmp, &st, &err) == 0 && a3_st_count(st) == 3);
    const a3_st_tensor *c = a3_st_find(st, "c"), *b = a3_st_find(st, "b");
    CHECK(c && strstr(c->file, "model-00002-of-00002.safetensors") && c->numel == 10);
    CHECK(b && strstr(b->file, "model-00001-of-00002.safetensors") && b->dtype == A3_DT_F16);
    float back[10];
    CHECK(a3_st_load_f32(st, "c", 1, s10, back, &err) == 0 && !memcmp(back, v, sizeof v));
    a3_st_free(st);
    rm_dir(tmp);
    /* More shards than five digits name: refused, nothing written. */
    CHECK(test_tmpdir(tmp, sizeof tmp) != NULL);
    s = a3_st_stream_new();
    for (int i = 0; i < 100000; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "t%d", i);
        a3_st_stream_declare(s, nm, A3_DT_F32, 1, s3, &err);
    }
    CHECK(a3_st_stream_begin_dir(s, tmp, 1, &err) == A3_EINVAL && strstr(err.msg, "shard"));
    CHECK(a3_st_stream_begin_dir(s, tmp, 0, &err) == A3_EINVAL);
    a3_st_stream_free(s);
    s = a3_st_stream_new();
    a3_st_stream_declare(s, "a", A3_DT_F32, 1, s3, &err);
    a3_st_stream_declare(s, "a", A3_DT_F32, 1, s3, &err);
    CHECK(a3_st_stream_begin_dir(s, tmp, 100, &err) == A3_EINVAL && strstr(err.msg, "duplicate"));
    a3_st_stream_free(s);
    CHECK(tf_count_files(tmp) == 0);
    rm_dir(tmp);
    /* Sizes: decimal and binary units, bytes; junk refused. */
    uint64_t n = 0;
    CHECK(a3_parse_bytes("5GB", &n) == 0 && n == 5000000000ull);
    CHECK(a3_parse_bytes("500mb", &n) == 0 && n == 500000000ull);
    CHECK(a3_parse_bytes("1.5GiB", &n) == 0 && n == 1610612736ull);
    CHECK(a3_parse_bytes("123", &n) == 0 && n == 123);
    CHECK(a3_parse_bytes("2KiB", &n) == 0 && n == 2048);
    const char *bad[] = {"", "0", "-5GB", "5 GB", "5XB", "GB", "0.1", "1e3", "0x10", "nan", "inf", "2000000PB",
                         "5GBs", " 5", "8G", "8g", "512M", "1K", "2T"}; /* bare K/M/G/T: 10^n or 2^n? */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECKF(a3_parse_bytes(bad[i], &n) == -1, "'%s' accepted", bad[i]);
}

int main(void)
{
    RUN(test_dtype_names);
    RUN(test_f16_known);
    RUN(test_f16_reference);
    RUN(test_f16_exhaustive);
    RUN(test_f16_nearest);
    RUN(test_bf16);
    RUN(test_convert_to_f32);
    RUN(test_corrupt_table);
    RUN(test_deep_nesting);
    RUN(test_nul_in_header);
    RUN(test_not_a_file);
    RUN(test_valid_edges);
    RUN(test_unaligned);
    RUN(test_writer_round_trip);
    RUN(test_writer_rejects);
    RUN(test_writer_escaping);
    RUN(test_find_many);
    RUN(test_truncation);
    RUN(test_fuzz_flips);
    RUN(test_corrupt_dirs);
    RUN(test_sharded_round_trip);
    RUN(test_load_errors);
    RUN(test_stream);
    return test_summary("safetensors");
}
