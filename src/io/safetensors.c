/* safetensors: see include/a3/safetensors.h.
 *
 * Reading: each file is mmapped read-only; its JSON header is copied out and
 * parsed with cJSON, and every entry is validated before a data pointer into
 * the mapping is handed out. Nothing from the file is trusted: lengths are
 * checked against the bytes present, numbers must be exact non-negative
 * integers, products are overflow-checked, and byte ranges must not overlap.
 *
 * Writing: a stream knows every tensor's shape before the first byte, so
 * each file's header (padded with spaces to a multiple of 8 so the data
 * section starts 8-byte aligned) is written first and the data follows in
 * 1 MB encoded chunks through a3_atomic_*. The buffered writer keeps the
 * encoded tensors and feeds a stream at save. */
#include "a3/safetensors.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- dtypes ---------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} dtype_info[A3_DT_COUNT] = {
    [A3_DT_F32] = {"F32", 4}, [A3_DT_F16] = {"F16", 2}, [A3_DT_BF16] = {"BF16", 2},
    [A3_DT_F64] = {"F64", 8}, [A3_DT_I32] = {"I32", 4}, [A3_DT_I64] = {"I64", 8},
    [A3_DT_U8] = {"U8", 1},
};

/* Dtypes the format defines but a3 has no use for: reported as unsupported
 * rather than malformed, since such a file is well-formed. */
static const char *const dtype_foreign[] = {
    "BOOL", "I8", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2",
    "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
};

size_t a3_dtype_size(a3_dtype dt)
{
    if ((unsigned)dt >= A3_DT_COUNT) return 0;
    return dtype_info[dt].size;
}

const char *a3_dtype_name(a3_dtype dt)
{
    if ((unsigned)dt >= A3_DT_COUNT) return "?";
    return dtype_info[dt].name;
}

int a3_dtype_parse(const char *s, a3_dtype *out)
{
    for (int i = 0; s && i < A3_DT_COUNT; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (a3_dtype)i;
            return 0;
        }
    }
    return -1;
}

static int dtype_is_foreign(const char *s)
{
    for (size_t i = 0; i < sizeof dtype_foreign / sizeof dtype_foreign[0]; i++)
        if (strcmp(s, dtype_foreign[i]) == 0) return 1;
    return 0;
}

/* ---- element conversions ---------------------------------------------- */

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float a3_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        /* Zero or subnormal: mant * 2^-24 is exact in float32. */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

/* float32 below 2^-14 (f16's smallest normal) to an f16 subnormal, rounding
 * the mantissa shifted out to nearest even. x is |f|'s bits. */
static uint16_t f16_subnormal(uint32_t x)
{
    uint32_t e = x >> 23;
    if (e < 102) return 0; /* below 2^-25: rounds to zero */
    uint32_t mant = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14..24: value / 2^-24 = mant >> shift */
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++; /* may carry to 0x400: fine */
    return (uint16_t)q;
}

uint16_t a3_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) /* NaN: keep it quiet and keep the top payload bits */
        return (uint16_t)(sign | 0x7e00 | ((x >> 13) & 0x3ff));
    if (x >= 0x477ff000u) return sign | 0x7c00; /* >= 65520 rounds to inf */
    if (x < 0x38800000u) return (uint16_t)(sign | f16_subnormal(x));
    uint32_t q = (x >> 13) - (112u << 10), rem = x & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++; /* carry into exp is right */
    return (uint16_t)(sign | q);
}

float a3_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t a3_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    /* NaN must not round into inf (payload only in the low bits): force quiet. */
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* The file format is little-endian; these read/write it from any byte
 * address, so unaligned tensor data is never accessed through a wide type. */
static uint16_t load_le16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_le64(const unsigned char *p)
{
    return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

static void store_le16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void store_le32(unsigned char *p, uint32_t v)
{
    store_le16(p, (uint16_t)v);
    store_le16(p + 2, (uint16_t)(v >> 16));
}

static void f32_from_le(const unsigned char *p, size_t n, float *dst)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, p, n * sizeof(float)); /* layout already matches */
#else
    for (size_t i = 0; i < n; i++) dst[i] = f32_from_bits(load_le32(p + 4 * i));
#endif
}

int a3_convert_to_f32(a3_dtype dt, const void *src, size_t n, float *dst)
{
    const unsigned char *p = src;
    switch (dt) {
    case A3_DT_F32: f32_from_le(p, n, dst); return A3_OK;
    case A3_DT_F16:
        for (size_t i = 0; i < n; i++) dst[i] = a3_f16_to_f32(load_le16(p + 2 * i));
        return A3_OK;
    case A3_DT_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = a3_bf16_to_f32(load_le16(p + 2 * i));
        return A3_OK;
    case A3_DT_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = load_le64(p + 8 * i);
            double d;
            memcpy(&d, &u, sizeof d);
            dst[i] = (float)d;
        }
        return A3_OK;
    default: return A3_EUNSUPPORTED;
    }
}

/* ---- the set ------------------------------------------------------------ */

typedef struct {
    a3_st_tensor t;     /* first member: a3_st_get returns &entry->t */
    size_t begin, end;  /* byte range within its file's data section */
    size_t map;         /* index into set->maps */
} st_entry;

typedef struct {
    char *path;  /* full path, what a3_st_tensor.file points at */
    char *shard; /* file name as weight_map spells it; NULL for a lone file */
    void *base;  /* mmap of the whole file, size bytes */
    size_t size;
} st_map;

struct a3_st_set {
    char *origin;       /* file or directory opened, for "not found" errors */
    st_entry *ents;     /* header order, file by file */
    size_t n, cap;
    st_entry **byname;  /* n pointers sorted by name, for a3_st_find */
    st_map *maps;
    size_t nmaps, mapcap;
};

/* 100 MB: far above any real header (a 70B model's is ~100 KB), low enough
 * that a hostile length cannot make us allocate gigabytes. */
#define ST_HEADER_CAP ((size_t)100 * 1024 * 1024)
/* Numbers in JSON are doubles; above 2^53 they are no longer exact. */
#define ST_MAX_EXACT 9007199254740992.0

void a3_st_free(a3_st_set *st)
{
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free((char *)st->ents[i].t.name);
    for (size_t i = 0; i < st->nmaps; i++) {
        if (st->maps[i].base) munmap(st->maps[i].base, st->maps[i].size);
        free(st->maps[i].path);
        free(st->maps[i].shard);
    }
    free(st->maps);
    free(st->ents);
    free(st->byname);
    free(st->origin);
    free(st);
}

static a3_st_set *set_new(const char *origin)
{
    a3_st_set *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->origin = strdup(origin);
    if (!st->origin) {
        free(st);
        return NULL;
    }
    return st;
}

size_t a3_st_count(const a3_st_set *st) { return st ? st->n : 0; }

const a3_st_tensor *a3_st_get(const a3_st_set *st, size_t i)
{
    return (st && i < st->n) ? &st->ents[i].t : NULL;
}

static int cmp_key_entry(const void *key, const void *elem)
{
    return strcmp(key, (*(st_entry *const *)elem)->t.name);
}

const a3_st_tensor *a3_st_find(const a3_st_set *st, const char *name)
{
    if (!st || !name || !st->byname) return NULL;
    st_entry **hit = bsearch(name, st->byname, st->n, sizeof *st->byname, cmp_key_entry);
    return hit ? &(*hit)->t : NULL;
}

/* Copy of a name from the file fit for a one-line message: control bytes
 * become '?', and very long names are cut. */
static const char *printable(const char *s, char *buf, size_t n)
{
    size_t i = 0;
    for (; s[i] && i + 4 < n; i++) buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    if (s[i]) memcpy(buf + i, "...", 4);
    else buf[i] = 0;
    return buf;
}

#define PNAME(s) printable((s), (char[96]){0}, 96)

/* ---- mapping and header ---------------------------------------------------- */

static int map_file(const char *path, st_map *m, a3_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return a3_err_set(err, A3_EIO, "%s: header: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return a3_err_set(err, A3_EIO, "%s: header: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size < 8 || (uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        if (!S_ISREG(sb.st_mode)) return a3_err_set(err, A3_EIO, "%s: header: not a regular file", path);
        return a3_err_set(err, A3_EFORMAT, "%s: header: file too short (%lld bytes, need at least 8)",
                          path, (long long)sb.st_size);
    }
    void *base = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping stays valid without the descriptor */
    if (base == MAP_FAILED) return a3_err_set(err, A3_EIO, "%s: header: mmap failed: %s", path, strerror(e));
    m->base = base;
    m->size = (size_t)sb.st_size;
    return A3_OK;
}

/* Parse the header of a mapped file into *root (a JSON object) and report
 * where the data section starts. */
static int parse_header(const st_map *m, cJSON **root, size_t *data_start, a3_err *err)
{
    const unsigned char *p = m->base;
    uint64_t n = load_le64(p);
    if (n > ST_HEADER_CAP)
        return a3_err_set(err, A3_EFORMAT, "%s: header: header length %" PRIu64 " exceeds the %zu-byte cap",
                          m->path, n, ST_HEADER_CAP);
    if (n > m->size - 8)
        return a3_err_set(err, A3_EFORMAT, "%s: header: header length %" PRIu64 " exceeds file size %zu",
                          m->path, n, m->size);
    /* A NUL-terminated private copy: cJSON and strtod never see the mapping's end. */
    char *text = malloc((size_t)n + 1);
    if (!text) return a3_err_set(err, A3_ENOMEM, "%s: header: out of memory", m->path);
    memcpy(text, p + 8, (size_t)n);
    text[n] = 0;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    int trailing = 0;
    for (const char *q = end; j && q < text + n; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') trailing = 1;
    free(text);
    if (!j) return a3_err_set(err, A3_EFORMAT, "%s: header: not valid JSON", m->path);
    if (!cJSON_IsObject(j) || trailing) {
        cJSON_Delete(j);
        return a3_err_set(err, A3_EFORMAT, "%s: header: %s", m->path,
                          trailing ? "trailing bytes after the JSON header" : "not a JSON object");
    }
    *root = j;
    *data_start = 8 + (size_t)n;
    return A3_OK;
}

/* An exact non-negative integer that fits size_t, or -1. */
static int json_size(const cJSON *it, size_t *out)
{
    if (!cJSON_IsNumber(it)) return -1;
    double v = it->valuedouble;
    if (!(v >= 0.0) || v > ST_MAX_EXACT) return -1;
    uint64_t u = (uint64_t)v;
    if ((double)u != v || u > SIZE_MAX) return -1;
    *out = (size_t)u;
    return 0;
}

/* ---- one header entry ----------------------------------------------------- */

static int parse_dtype(const char *path, const char *name, const cJSON *e, a3_st_tensor *t, a3_err *err)
{
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt))
        return a3_err_set(err, A3_EFORMAT, "%s: %s: dtype %s", path, PNAME(name),
                          dt ? "is not a string" : "is missing");
    if (a3_dtype_parse(dt->valuestring, &t->dtype) == 0) return A3_OK;
    int code = dtype_is_foreign(dt->valuestring) ? A3_EUNSUPPORTED : A3_EFORMAT;
    return a3_err_set(err, code, "%s: %s: %s dtype '%s'", path, PNAME(name),
                      code == A3_EFORMAT ? "unknown" : "unsupported", PNAME(dt->valuestring));
}

static int parse_shape(const char *path, const char *name, const cJSON *e, a3_st_tensor *t, a3_err *err)
{
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(sh))
        return a3_err_set(err, A3_EFORMAT, "%s: %s: shape %s", path, PNAME(name),
                          sh ? "is not an array" : "is missing");
    int nd = cJSON_GetArraySize(sh);
    if (nd > A3_ST_MAX_DIMS)
        return a3_err_set(err, A3_EFORMAT, "%s: %s: shape has rank %d, more than %d", path, PNAME(name),
                          nd, A3_ST_MAX_DIMS);
    size_t numel = 1;
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        size_t v;
        if (json_size(d, &v))
            return a3_err_set(err, A3_EFORMAT, "%s: %s: shape dim %d is not a non-negative integer",
                              path, PNAME(name), i);
        if (a3_mul_size(numel, v, &numel))
            return a3_err_set(err, A3_EFORMAT, "%s: %s: shape element count overflows", path, PNAME(name));
        t->shape[i] = (int64_t)v; /* v <= 2^53 */
    }
    t->ndim = nd;
    t->numel = numel;
    if (a3_mul_size(numel, a3_dtype_size(t->dtype), &t->nbytes))
        return a3_err_set(err, A3_EFORMAT, "%s: %s: shape byte size overflows", path, PNAME(name));
    return A3_OK;
}

static int parse_offsets(const char *path, const char *name, const cJSON *e, size_t data_len,
                         st_entry *out, a3_err *err)
{
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    size_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_size(off->child, &b) ||
        json_size(off->child->next, &en))
        return a3_err_set(err, A3_EFORMAT, "%s: %s: data_offsets %s", path, PNAME(name),
                          off ? "must be two non-negative integers" : "is missing");
    if (b > en)
        return a3_err_set(err, A3_EFORMAT, "%s: %s: data_offsets begin %zu > end %zu", path, PNAME(name),
                          b, en);
    if (en > data_len)
        return a3_err_set(err, A3_EFORMAT, "%s: %s: data_offsets end %zu beyond the data section (%zu bytes)",
                          path, PNAME(name), en, data_len);
    if (en - b != out->t.nbytes)
        return a3_err_set(err, A3_EFORMAT, "%s: %s: data_offsets span %zu bytes but shape and dtype need %zu",
                          path, PNAME(name), en - b, out->t.nbytes);
    out->begin = b;
    out->end = en;
    return A3_OK;
}

static int check_metadata(const char *path, const cJSON *md, a3_err *err)
{
    if (!cJSON_IsObject(md))
        return a3_err_set(err, A3_EFORMAT, "%s: header: __metadata__ is not an object", path);
    for (const cJSON *kv = md->child; kv; kv = kv->next)
        if (!cJSON_IsString(kv))
            return a3_err_set(err, A3_EFORMAT, "%s: header: __metadata__ value '%s' is not a string", path,
                              PNAME(kv->string ? kv->string : "?"));
    return A3_OK;
}

static int grow_entries(a3_st_set *st, const char *path, a3_err *err)
{
    if (st->n < st->cap) return A3_OK;
    size_t cap = st->cap ? st->cap * 2 : 64;
    st_entry *e = cap > SIZE_MAX / sizeof *e ? NULL : realloc(st->ents, cap * sizeof *e);
    if (!e) return a3_err_set(err, A3_ENOMEM, "%s: header: out of memory", path);
    st->ents = e;
    st->cap = cap;
    return A3_OK;
}

/* Validate one header item and append it to the set. */
static int add_entry(a3_st_set *st, size_t mi, const cJSON *it, size_t data_start, a3_err *err)
{
    const st_map *m = &st->maps[mi];
    const char *name = it->string;
    if (!name || !*name) return a3_err_set(err, A3_EFORMAT, "%s: header: empty tensor name", m->path);
    if (!cJSON_IsObject(it))
        return a3_err_set(err, A3_EFORMAT, "%s: %s: entry is not an object", m->path, PNAME(name));
    st_entry e = {.map = mi};
    int rc = parse_dtype(m->path, name, it, &e.t, err);
    if (rc == A3_OK) rc = parse_shape(m->path, name, it, &e.t, err);
    if (rc == A3_OK) rc = parse_offsets(m->path, name, it, m->size - data_start, &e, err);
    if (rc == A3_OK) rc = grow_entries(st, m->path, err);
    if (rc != A3_OK) return rc;
    e.t.name = strdup(name);
    if (!e.t.name) return a3_err_set(err, A3_ENOMEM, "%s: header: out of memory", m->path);
    e.t.data = (const unsigned char *)m->base + data_start + e.begin;
    e.t.file = m->path;
    st->ents[st->n++] = e;
    return A3_OK;
}

/* ---- whole-file checks ----------------------------------------------------- */

/* By name; equal names by position in ents, so a duplicate is reported at
 * its later occurrence (qsort is not stable). */
static int cmp_entry_name(const void *a, const void *b)
{
    const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
    int c = strcmp(x->t.name, y->t.name);
    return c ? c : (x > y) - (x < y);
}

static int cmp_entry_begin(const void *a, const void *b)
{
    const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Pointers to ents[first, last), or NULL. */
static st_entry **entry_ptrs(a3_st_set *st, size_t first, size_t last)
{
    st_entry **v = a3_malloc_array(last - first, sizeof *v);
    for (size_t i = first; v && i < last; i++) v[i - first] = &st->ents[i];
    return v;
}

/* Duplicate names within one file, then overlapping byte ranges. Empty
 * tensors occupy no bytes and so overlap nothing. The format also says the
 * data section is entirely indexed: no hole between tensors and nothing
 * after the last one (data_len bytes in all). */
static int check_file_entries(a3_st_set *st, size_t first, size_t last, const char *path, size_t data_len,
                              a3_err *err)
{
    size_t n = last - first;
    st_entry **v = entry_ptrs(st, first, last);
    if (!v) return a3_err_set(err, A3_ENOMEM, "%s: header: out of memory", path);
    int rc = A3_OK;
    qsort(v, n, sizeof *v, cmp_entry_name);
    for (size_t i = 1; i < n && rc == A3_OK; i++)
        if (strcmp(v[i - 1]->t.name, v[i]->t.name) == 0)
            rc = a3_err_set(err, A3_EFORMAT, "%s: %s: duplicate tensor name", path, PNAME(v[i]->t.name));
    if (rc == A3_OK) qsort(v, n, sizeof *v, cmp_entry_begin);
    const st_entry *reach = NULL; /* the non-empty range ending furthest so far */
    for (size_t i = 0; i < n && rc == A3_OK; i++) {
        if (v[i]->begin == v[i]->end) continue;
        if (reach && v[i]->begin < reach->end)
            rc = a3_err_set(err, A3_EFORMAT, "%s: %s: bytes [%zu, %zu) overlap tensor '%s'", path,
                            PNAME(v[i]->t.name), v[i]->begin, v[i]->end, PNAME(reach->t.name));
        else if (v[i]->begin > (reach ? reach->end : 0))
            rc = a3_err_set(err, A3_EFORMAT, "%s: %s: %zu bytes before it belong to no tensor", path,
                            PNAME(v[i]->t.name), v[i]->begin - (reach ? reach->end : 0));
        if (!reach || v[i]->end > reach->end) reach = v[i];
    }
    size_t used = reach ? reach->end : 0;
    if (rc == A3_OK && used < data_len)
        rc = a3_err_set(err, A3_EFORMAT, "%s: %zu bytes after the last tensor's data (truncated header or appended junk)",
                        path, data_len - used);
    free(v);
    return rc;
}

static int add_map(a3_st_set *st, const char *path, const char *shard, a3_err *err)
{
    if (st->nmaps == st->mapcap) {
        size_t cap = st->mapcap ? st->mapcap * 2 : 4;
        st_map *m = a3_malloc_array(cap, sizeof *m);
        if (!m) return a3_err_set(err, A3_ENOMEM, "%s: header: out of memory", path);
        if (st->nmaps) memcpy(m, st->maps, st->nmaps * sizeof *m);
        free(st->maps);
        st->maps = m;
        st->mapcap = cap;
    }
    st_map *m = &st->maps[st->nmaps];
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    m->shard = shard ? strdup(shard) : NULL;
    st->nmaps++; /* counted now so a3_st_free releases whatever was built */
    if (!m->path || (shard && !m->shard))
        return a3_err_set(err, A3_ENOMEM, "%s: header: out of memory", path);
    return map_file(path, m, err);
}

/* Map one file and append its validated tensors to the set. */
static int load_file(a3_st_set *st, const char *path, const char *shard, a3_err *err)
{
    int rc = add_map(st, path, shard, err);
    if (rc != A3_OK) return rc;
    size_t mi = st->nmaps - 1, first = st->n, data_start = 0;
    cJSON *root = NULL;
    rc = parse_header(&st->maps[mi], &root, &data_start, err);
    int seen_md = 0;
    for (const cJSON *it = root ? root->child : NULL; it && rc == A3_OK; it = it->next) {
        if (it->string && strcmp(it->string, "__metadata__") == 0) {
            rc = seen_md++ ? a3_err_set(err, A3_EFORMAT, "%s: header: duplicate __metadata__", path)
                           : check_metadata(path, it, err);
            continue;
        }
        rc = add_entry(st, mi, it, data_start, err);
    }
    cJSON_Delete(root);
    if (rc == A3_OK) rc = check_file_entries(st, first, st->n, path, st->maps[mi].size - data_start, err);
    return rc;
}

/* Sort the name index over every file; a name in two files is an error. */
static int build_index(a3_st_set *st, a3_err *err)
{
    st->byname = entry_ptrs(st, 0, st->n);
    if (!st->byname) return a3_err_set(err, A3_ENOMEM, "%s: header: out of memory", st->origin);
    qsort(st->byname, st->n, sizeof *st->byname, cmp_entry_name);
    for (size_t i = 1; i < st->n; i++) {
        const st_entry *a = st->byname[i - 1], *b = st->byname[i];
        if (strcmp(a->t.name, b->t.name) == 0)
            return a3_err_set(err, A3_EFORMAT, "%s: %s: also in shard %s", b->t.file, PNAME(b->t.name),
                              a->t.file);
    }
    return A3_OK;
}

int a3_st_open_file(const char *path, a3_st_set **out, a3_err *err)
{
    *out = NULL;
    a3_st_set *st = set_new(path);
    if (!st) return a3_err_set(err, A3_ENOMEM, "%s: header: out of memory", path);
    int rc = load_file(st, path, NULL, err);
    if (rc == A3_OK) rc = build_index(st, err);
    if (rc != A3_OK) {
        a3_st_free(st);
        return rc;
    }
    *out = st;
    return A3_OK;
}

/* ---- sharded directories ---------------------------------------------------- */

typedef struct {
    const char *name;  /* tensor, borrowed from the parsed index */
    const char *shard; /* file name within the directory */
} wm_pair;

typedef struct {
    const char *dir, *path; /* model dir, index file path */
    cJSON *root;
    wm_pair *pairs; /* sorted by tensor name */
    size_t n;
} st_index;

static int cmp_pair_name(const void *a, const void *b)
{
    return strcmp(((const wm_pair *)a)->name, ((const wm_pair *)b)->name);
}

static int cmp_pair_shard(const void *a, const void *b)
{
    const wm_pair *x = a, *y = b;
    int c = strcmp(x->shard, y->shard);
    return c ? c : strcmp(x->name, y->name);
}

/* A shard must be a plain file name inside the model directory. */
static int shard_name_ok(const char *s)
{
    return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Collect weight_map into ix->pairs, sorted by name, each entry checked. */
static int read_weight_map(st_index *ix, a3_err *err)
{
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(ix->root, "weight_map");
    if (!cJSON_IsObject(wm) || !wm->child)
        return a3_err_set(err, A3_EFORMAT, "%s: index: weight_map %s", ix->path,
                          cJSON_IsObject(wm) ? "is empty" : wm ? "is not an object" : "is missing");
    size_t n = 0;
    for (const cJSON *it = wm->child; it; it = it->next) n++;
    ix->pairs = a3_malloc_array(n, sizeof *ix->pairs);
    if (!ix->pairs) return a3_err_set(err, A3_ENOMEM, "%s: index: out of memory", ix->path);
    for (const cJSON *it = wm->child; it; it = it->next) {
        const char *name = it->string ? it->string : "";
        if (!*name)
            return a3_err_set(err, A3_EFORMAT, "%s: index: empty tensor name in weight_map", ix->path);
        if (!cJSON_IsString(it) || !shard_name_ok(it->valuestring))
            return a3_err_set(err, A3_EFORMAT, "%s: %s: weight_map value is not a shard file name",
                              ix->path, PNAME(name));
        ix->pairs[ix->n++] = (wm_pair){name, it->valuestring};
    }
    qsort(ix->pairs, n, sizeof *ix->pairs, cmp_pair_name);
    for (size_t i = 1; i < n; i++)
        if (strcmp(ix->pairs[i - 1].name, ix->pairs[i].name) == 0)
            return a3_err_set(err, A3_EFORMAT, "%s: %s: listed twice in weight_map", ix->path,
                              PNAME(ix->pairs[i].name));
    return A3_OK;
}

/* Map every distinct shard once, in file-name order. */
static int load_shards(a3_st_set *st, const st_index *ix, a3_err *err)
{
    wm_pair *by_shard = a3_malloc_array(ix->n, sizeof *by_shard);
    if (!by_shard) return a3_err_set(err, A3_ENOMEM, "%s: index: out of memory", ix->path);
    memcpy(by_shard, ix->pairs, ix->n * sizeof *by_shard);
    qsort(by_shard, ix->n, sizeof *by_shard, cmp_pair_shard);
    int rc = A3_OK;
    for (size_t i = 0; i < ix->n && rc == A3_OK; i++) {
        if (i > 0 && strcmp(by_shard[i - 1].shard, by_shard[i].shard) == 0) continue;
        char *path = a3_path_join(ix->dir, by_shard[i].shard);
        if (!path) rc = a3_err_set(err, A3_ENOMEM, "%s: index: out of memory", ix->path);
        else if (access(path, F_OK) != 0)
            rc = a3_err_set(err, A3_EFORMAT, "%s: %s: weight_map names shard '%s', which does not exist",
                            ix->path, PNAME(by_shard[i].name), PNAME(by_shard[i].shard));
        else rc = load_file(st, path, by_shard[i].shard, err);
        free(path);
    }
    free(by_shard);
    return rc;
}

/* Every tensor in the shards is where weight_map says, and vice versa. */
static int check_weight_map(const a3_st_set *st, const st_index *ix, a3_err *err)
{
    for (size_t i = 0; i < st->n; i++) {
        const st_entry *e = &st->ents[i];
        const wm_pair *p = bsearch(&(wm_pair){e->t.name, NULL}, ix->pairs, ix->n, sizeof *p, cmp_pair_name);
        if (!p)
            return a3_err_set(err, A3_EFORMAT, "%s: %s: not listed in weight_map of %s", e->t.file,
                              PNAME(e->t.name), ix->path);
        if (strcmp(p->shard, st->maps[e->map].shard) != 0)
            return a3_err_set(err, A3_EFORMAT, "%s: %s: weight_map says shard '%s' but it is in %s",
                              ix->path, PNAME(e->t.name), PNAME(p->shard), e->t.file);
    }
    for (size_t i = 0; i < ix->n; i++)
        if (!a3_st_find(st, ix->pairs[i].name))
            return a3_err_set(err, A3_EFORMAT, "%s: %s: listed in weight_map but absent from shard '%s'",
                              ix->path, PNAME(ix->pairs[i].name), PNAME(ix->pairs[i].shard));
    return A3_OK;
}

static int open_index(const char *dir, const char *path, a3_st_set **out, a3_err *err)
{
    st_index ix = {.dir = dir, .path = path};
    char *text = NULL;
    size_t len = 0;
    a3_st_set *st = NULL;
    int rc = a3_read_file(path, ST_HEADER_CAP, &text, &len, err);
    if (rc == A3_OK) {
        ix.root = cJSON_ParseWithLength(text, len);
        if (!cJSON_IsObject(ix.root))
            rc = a3_err_set(err, A3_EFORMAT, "%s: index: not a valid JSON object", path);
    }
    if (rc == A3_OK) rc = read_weight_map(&ix, err);
    if (rc == A3_OK && !(st = set_new(dir)))
        rc = a3_err_set(err, A3_ENOMEM, "%s: index: out of memory", path);
    if (rc == A3_OK) rc = load_shards(st, &ix, err);
    if (rc == A3_OK) rc = build_index(st, err);
    if (rc == A3_OK) rc = check_weight_map(st, &ix, err);
    free(ix.pairs);
    cJSON_Delete(ix.root);
    free(text);
    if (rc != A3_OK) {
        a3_st_free(st);
        return rc;
    }
    *out = st;
    return A3_OK;
}

int a3_st_open_dir(const char *dir, a3_st_set **out, a3_err *err)
{
    *out = NULL;
    char *single = a3_path_join(dir, "model.safetensors");
    char *index = a3_path_join(dir, "model.safetensors.index.json");
    int rc;
    if (!single || !index) rc = a3_err_set(err, A3_ENOMEM, "%s: header: out of memory", dir);
    else if (access(single, F_OK) == 0) rc = a3_st_open_file(single, out, err);
    else if (access(index, F_OK) == 0) rc = open_index(dir, index, out, err);
    else
        rc = a3_err_set(err, A3_EIO,
                        "%s: header: neither model.safetensors nor model.safetensors.index.json exists", dir);
    free(single);
    free(index);
    return rc;
}

/* ---- typed load ------------------------------------------------------------ */

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Elements [first, first + n) of t to float32, refusing NaN/Inf with the
 * place named. */
static int convert_checked(const a3_st_tensor *t, size_t first, size_t n, float *dst, a3_err *err)
{
    int rc = a3_convert_to_f32(t->dtype, (const unsigned char *)t->data + first * a3_dtype_size(t->dtype), n, dst);
    int64_t bad = rc ? -1 : a3_find_nonfinite(dst, n);
    if (bad >= 0) {
        /* (row, column) of a matrix; plain index otherwise */
        int64_t cols = t->ndim == 2 && t->shape[1] ? t->shape[1] : 0, at_el = (int64_t)first + bad;
        char at[64];
        if (cols) snprintf(at, sizeof at, "row %lld, column %lld", (long long)(at_el / cols), (long long)(at_el % cols));
        else snprintf(at, sizeof at, "element %lld", (long long)at_el);
        return a3_err_set(err, A3_EFORMAT, "%s: %s: %s is %s", t->file, PNAME(t->name), at,
                          isnan(dst[bad]) ? "NaN" : "infinite");
    }
    return rc;
}

int a3_st_load_f32(const a3_st_set *st, const char *name, int ndim, const int64_t *shape, float *dst,
                   a3_err *err)
{
    assert(name && dst && (ndim <= 0 || shape));
    const a3_st_tensor *t = a3_st_find(st, name);
    if (!t)
        return a3_err_set(err, A3_EFORMAT, "%s: %s: tensor not found", st ? st->origin : "?", PNAME(name));
    int same = ndim == t->ndim;
    for (int i = 0; same && i < ndim; i++) same = shape[i] == t->shape[i];
    if (!same) {
        char want[160], got[160];
        shape_str(ndim < 0 ? 0 : ndim > A3_ST_MAX_DIMS ? A3_ST_MAX_DIMS : ndim, shape, want, sizeof want);
        shape_str(t->ndim, t->shape, got, sizeof got);
        return a3_err_set(err, A3_EFORMAT, "%s: %s: shape %s, expected %s", t->file, PNAME(name), got, want);
    }
    if (t->dtype != A3_DT_F32 && t->dtype != A3_DT_F16 && t->dtype != A3_DT_BF16)
        return a3_err_set(err, A3_EUNSUPPORTED,
                          "%s: %s: dtype %s cannot be loaded as float32 (F32, F16, BF16)", t->file,
                          PNAME(name), a3_dtype_name(t->dtype));
    return convert_checked(t, 0, t->numel, dst, err);
}

int a3_st_load_f32_part(const a3_st_set *st, const char *name, size_t first, size_t n, float *dst, a3_err *err)
{
    const a3_st_tensor *t = a3_st_find(st, name);
    if (!t)
        return a3_err_set(err, A3_EFORMAT, "%s: %s: tensor not found", st ? st->origin : "?", PNAME(name));
    if (first > t->numel || n > t->numel - first)
        return a3_err_set(err, A3_EINVAL, "%s: %s: elements %zu..%zu past its %zu", t->file, PNAME(name), first,
                          first + n, t->numel);
    if (t->dtype != A3_DT_F32 && t->dtype != A3_DT_F16 && t->dtype != A3_DT_BF16)
        return a3_err_set(err, A3_EUNSUPPORTED,
                          "%s: %s: dtype %s cannot be loaded as float32 (F32, F16, BF16)", t->file,
                          PNAME(name), a3_dtype_name(t->dtype));
    return convert_checked(t, first, n, dst, err);
}

/* ---- writer ------------------------------------------------------------------ */

static void encode(a3_dtype dt, const float *src, size_t n, unsigned char *dst)
{
    for (size_t i = 0; i < n; i++) {
        if (dt == A3_DT_F32) store_le32(dst + 4 * i, f32_bits(src[i]));
        else if (dt == A3_DT_F16) store_le16(dst + 2 * i, a3_f32_to_f16(src[i]));
        else store_le16(dst + 2 * i, a3_f32_to_bf16(src[i]));
    }
}

/* A tensor declared to a stream: where it goes and how far it is written. */
typedef struct {
    char *name;
    a3_dtype dtype;
    int ndim;
    int64_t shape[A3_ST_MAX_DIMS];
    size_t numel, nbytes;
    size_t file;  /* index into the stream's files */
    size_t begin; /* offset within that file's data section */
} sd_item;

typedef struct {
    char *path, *shard; /* full path; name within the directory */
    size_t first, last; /* items [first, last) */
    int committed;      /* renamed into place */
} sd_file;

struct a3_st_stream {
    sd_item *items; /* declaration order = file order */
    size_t n, cap;
    sd_file *files;
    size_t nfiles;
    char *dir, *index; /* directory and index path (sharded only) */
    size_t cur;        /* next item to write */
    size_t cur_done;   /* its elements written so far */
    size_t open_file;  /* file held in `out` (nfiles: none) */
    size_t opened;     /* files opened so far (they open in order) */
    a3_atomic out;
    unsigned char *buf; /* encode buffer, ST_CHUNK bytes */
    int begun, finished;
};

#define ST_CHUNK ((size_t)1 << 20) /* bytes encoded per write call */

a3_st_stream *a3_st_stream_new(void) { return calloc(1, sizeof(a3_st_stream)); }

void a3_st_stream_free(a3_st_stream *s)
{
    if (!s) return;
    if (s->out.path) a3_atomic_abort(&s->out);
    for (size_t i = 0; i < s->nfiles; i++) {
        /* An unfinished stream takes its finished shards back: a half
         * model must not look like a model. */
        if (!s->finished && s->files[i].committed) unlink(s->files[i].path);
        free(s->files[i].path), free(s->files[i].shard);
    }
    for (size_t i = 0; i < s->n; i++) free(s->items[i].name);
    free(s->items), free(s->files), free(s->dir), free(s->index), free(s->buf);
    free(s);
}

/* Arguments of declare: the name is new, dtype writable, shape sane. Names
 * are looked up linearly: a 70B model has ~720 tensors. */
static int declare_check(const a3_st_stream *s, const char *name, a3_dtype dtype, int ndim, const int64_t *shape,
                         size_t *numel, a3_err *err)
{
    if (!name || !*name) return a3_err_set(err, A3_EINVAL, "writer: header: empty tensor name");
    if (strcmp(name, "__metadata__") == 0)
        return a3_err_set(err, A3_EINVAL, "writer: %s: reserved name", name);
    if (dtype != A3_DT_F32 && dtype != A3_DT_F16 && dtype != A3_DT_BF16)
        return a3_err_set(err, A3_EINVAL, "writer: %s: cannot write dtype %s (F32, F16 or BF16 only)",
                          PNAME(name), a3_dtype_name(dtype));
    if (ndim < 0 || ndim > A3_ST_MAX_DIMS)
        return a3_err_set(err, A3_EINVAL, "writer: %s: rank %d outside 0..%d", PNAME(name), ndim,
                          A3_ST_MAX_DIMS);
    *numel = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || a3_mul_size(*numel, (size_t)shape[i], numel))
            return a3_err_set(err, A3_EINVAL, "writer: %s: bad shape dim %d (%" PRId64 ")", PNAME(name), i,
                              shape[i]);
    return A3_OK;
}

static int cmp_item_name(const void *a, const void *b)
{
    return strcmp((*(sd_item *const *)a)->name, (*(sd_item *const *)b)->name);
}

/* Names unique: checked once at begin by sorting (a declare-time scan
 * would be quadratic in the tensor count). */
static int check_unique(const a3_st_stream *s, a3_err *err)
{
    sd_item **v = a3_malloc_array(s->n ? s->n : 1, sizeof *v);
    if (!v) return a3_err_set(err, A3_ENOMEM, "writer: out of memory");
    for (size_t i = 0; i < s->n; i++) v[i] = &s->items[i];
    qsort(v, s->n, sizeof *v, cmp_item_name);
    int rc = A3_OK;
    for (size_t i = 1; rc == A3_OK && i < s->n; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0)
            rc = a3_err_set(err, A3_EINVAL, "writer: %s: duplicate tensor name", PNAME(v[i]->name));
    free(v);
    return rc;
}

int a3_st_stream_declare(a3_st_stream *s, const char *name, a3_dtype dtype, int ndim, const int64_t *shape,
                         a3_err *err)
{
    assert(s && (ndim <= 0 || shape));
    if (s->begun) return a3_err_set(err, A3_EINVAL, "writer: %s: declared after the output was begun", PNAME(name));
    size_t numel = 0, nbytes = 0;
    int rc = declare_check(s, name, dtype, ndim, shape, &numel, err);
    if (rc != A3_OK) return rc;
    if (a3_mul_size(numel, a3_dtype_size(dtype), &nbytes) || nbytes > (size_t)ST_MAX_EXACT)
        return a3_err_set(err, A3_EINVAL, "writer: %s: tensor too large", PNAME(name));
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        sd_item *v = cap > SIZE_MAX / sizeof *v ? NULL : realloc(s->items, cap * sizeof *v);
        if (!v) return a3_err_set(err, A3_ENOMEM, "writer: %s: out of memory", PNAME(name));
        s->items = v;
        s->cap = cap;
    }
    sd_item it = {.dtype = dtype, .ndim = ndim, .numel = numel, .nbytes = nbytes, .name = strdup(name)};
    if (!it.name) return a3_err_set(err, A3_ENOMEM, "writer: %s: out of memory", PNAME(name));
    if (ndim) memcpy(it.shape, shape, (size_t)ndim * sizeof *shape);
    s->items[s->n++] = it;
    return A3_OK;
}

/* Assign items to files: a new shard starts when the next tensor would take
 * the current one past max bytes of tensor data (as Hugging Face counts a
 * shard's size); a tensor larger than max gets a shard of its own. */
static size_t plan_shards(a3_st_stream *s, uint64_t max)
{
    size_t nf = 0;
    uint64_t size = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (i == 0 || (size > 0 && size + s->items[i].nbytes > max)) nf++, size = 0;
        s->items[i].file = nf - 1;
        s->items[i].begin = (size_t)size;
        size += s->items[i].nbytes;
    }
    return nf ? nf : 1;
}

static int add_file(a3_st_stream *s, size_t f, const char *dir, const char *name, a3_err *err)
{
    sd_file *F = &s->files[f];
    F->shard = strdup(name);
    F->path = dir ? a3_path_join(dir, name) : strdup(name);
    if (!F->shard || !F->path) return a3_err_set(err, A3_ENOMEM, "writer: %s: out of memory", name);
    F->first = F->last = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->items[i].file == f) {
            if (F->last == 0) F->first = i;
            F->last = i + 1;
        }
    return A3_OK;
}

static int stream_begin(a3_st_stream *s, size_t nfiles, a3_err *err)
{
    int rc = check_unique(s, err);
    if (rc) return rc;
    s->files = a3_calloc(nfiles, sizeof *s->files);
    s->buf = malloc(ST_CHUNK);
    if (!s->files || !s->buf) return a3_err_set(err, A3_ENOMEM, "writer: out of memory");
    s->nfiles = nfiles;
    s->open_file = nfiles;
    s->begun = 1;
    return A3_OK;
}

int a3_st_stream_begin_file(a3_st_stream *s, const char *path, a3_err *err)
{
    if (s->begun) return a3_err_set(err, A3_EINVAL, "%s: writer: already begun", path);
    plan_shards(s, UINT64_MAX);
    int rc = stream_begin(s, 1, err);
    return rc ? rc : add_file(s, 0, NULL, path, err);
}

int a3_st_stream_begin_dir(a3_st_stream *s, const char *dir, uint64_t max_shard_bytes, a3_err *err)
{
    if (s->begun) return a3_err_set(err, A3_EINVAL, "%s: writer: already begun", dir);
    if (max_shard_bytes == 0) return a3_err_set(err, A3_EINVAL, "%s: writer: shard size must be at least 1 byte", dir);
    size_t nf = plan_shards(s, max_shard_bytes);
    if (nf > A3_ST_MAX_SHARDS)
        return a3_err_set(err, A3_EINVAL, "%s: %zu shards of at most %" PRIu64 " bytes exceed the %d-shard limit of "
                          "the file names (raise the shard size)", dir, nf, max_shard_bytes, A3_ST_MAX_SHARDS);
    int rc = stream_begin(s, nf, err);
    if (rc == A3_OK && nf == 1) return add_file(s, 0, dir, "model.safetensors", err);
    s->dir = strdup(dir);
    s->index = a3_path_join(dir, "model.safetensors.index.json");
    if (rc == A3_OK && (!s->dir || !s->index)) rc = a3_err_set(err, A3_ENOMEM, "%s: writer: out of memory", dir);
    for (size_t f = 0; rc == A3_OK && f < nf; f++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", f + 1, nf);
        rc = add_file(s, f, dir, name, err);
    }
    return rc;
}

size_t a3_st_stream_nfiles(const a3_st_stream *s) { return s->begun ? s->nfiles : 0; }

/* A JSON number item printed exactly as the integer (cJSON would print
 * large values through %g, which a strict reader rejects). */
static cJSON *json_int(cJSON *arr, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    cJSON *it = cJSON_CreateRaw(buf);
    if (it && !cJSON_AddItemToArray(arr, it)) {
        cJSON_Delete(it);
        return NULL;
    }
    return it;
}

static cJSON *header_entry(const sd_item *it)
{
    cJSON *e = cJSON_CreateObject();
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
    int ok = e && shape && off && cJSON_AddStringToObject(e, "dtype", a3_dtype_name(it->dtype));
    for (int i = 0; ok && i < it->ndim; i++) ok = json_int(shape, (uint64_t)it->shape[i]) != NULL;
    ok = ok && json_int(off, it->begin) && json_int(off, (uint64_t)it->begin + it->nbytes);
    if (!ok) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

/* The header JSON text of one file, or NULL when out of memory. */
static char *file_header(const a3_st_stream *s, const sd_file *F)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(root, "__metadata__");
    int ok = md && cJSON_AddStringToObject(md, "format", "pt");
    for (size_t i = F->first; ok && i < F->last; i++) {
        cJSON *e = header_entry(&s->items[i]);
        ok = e && cJSON_AddItemToObject(root, s->items[i].name, e);
        if (e && !ok) cJSON_Delete(e);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

/* Create file f (through a temp name) and write its header; the header is
 * complete because every shape was declared before begin. */
static int open_file(a3_st_stream *s, size_t f, a3_err *err)
{
    sd_file *F = &s->files[f];
    char *text = file_header(s, F);
    if (!text) return a3_err_set(err, A3_ENOMEM, "%s: header: out of memory building the header", F->path);
    /* Padded with spaces so the data section starts 8-byte aligned. */
    size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
    unsigned char lenbuf[8];
    store_le32(lenbuf, (uint32_t)padded);
    store_le32(lenbuf + 4, (uint32_t)((uint64_t)padded >> 32));
    static const char spaces[] = "        ";
    int rc = a3_atomic_open(&s->out, F->path, err);
    if (rc == A3_OK) rc = a3_atomic_write(&s->out, lenbuf, 8, err);
    if (rc == A3_OK) rc = a3_atomic_write(&s->out, text, len, err);
    if (rc == A3_OK) rc = a3_atomic_write(&s->out, spaces, padded - len, err);
    free(text);
    if (rc == A3_OK) s->open_file = f;
    return rc;
}

static int close_file(a3_st_stream *s, a3_err *err)
{
    if (s->open_file == s->nfiles) return A3_OK;
    sd_file *F = &s->files[s->open_file];
    s->open_file = s->nfiles;
    int rc = a3_atomic_commit(&s->out, err);
    if (rc == A3_OK) F->committed = 1;
    return rc;
}

/* Open files in order up to f, closing each previous one (a file holding
 * no item, as for an empty model, is still written). */
static int move_to(a3_st_stream *s, size_t f, a3_err *err)
{
    while (s->opened <= f) {
        int rc = close_file(s, err);
        if (rc == A3_OK) rc = open_file(s, s->opened, err);
        if (rc) return rc;
        s->opened++;
    }
    return A3_OK;
}

static int put(a3_st_stream *s, const char *name, const float *src, const void *raw, size_t n, a3_err *err)
{
    if (!s->begun || s->finished) return a3_err_set(err, A3_EINVAL, "writer: %s: written before begin or after finish", PNAME(name));
    if (s->cur >= s->n || strcmp(s->items[s->cur].name, name) != 0)
        return a3_err_set(err, A3_EINVAL, "writer: %s: written out of declaration order (expected %s)", PNAME(name),
                          s->cur < s->n ? PNAME(s->items[s->cur].name) : "no more tensors");
    sd_item *it = &s->items[s->cur];
    if (n > it->numel - s->cur_done)
        return a3_err_set(err, A3_EINVAL, "writer: %s: %zu elements past its declared %zu", PNAME(name),
                          s->cur_done + n - it->numel, it->numel);
    int rc = move_to(s, it->file, err);
    size_t es = a3_dtype_size(it->dtype), per = ST_CHUNK / es;
    for (size_t done = 0; rc == A3_OK && done < n; done += per) {
        size_t k = n - done < per ? n - done : per;
        const void *bytes = raw ? (const unsigned char *)raw + done * es : s->buf;
        if (!raw) encode(it->dtype, src + done, k, s->buf);
        rc = a3_atomic_write(&s->out, bytes, k * es, err);
    }
    if (rc) return rc;
    s->cur_done += n;
    if (s->cur_done == it->numel) s->cur++, s->cur_done = 0;
    return A3_OK;
}

int a3_st_stream_put(a3_st_stream *s, const char *name, const float *data, size_t n, a3_err *err)
{
    assert(data || n == 0);
    return put(s, name, data, NULL, n, err);
}

int a3_st_stream_write(a3_st_stream *s, const char *name, int ndim, const int64_t *shape, const float *data,
                       a3_err *err)
{
    const sd_item *it = s->cur < s->n && strcmp(s->items[s->cur].name, name) == 0 ? &s->items[s->cur] : NULL;
    int same = it && s->cur_done == 0 && it->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = it->shape[i] == shape[i];
    if (it && !same) {
        char want[160], got[160];
        shape_str(it->ndim, it->shape, want, sizeof want);
        shape_str(ndim < 0 ? 0 : ndim > A3_ST_MAX_DIMS ? A3_ST_MAX_DIMS : ndim, shape, got, sizeof got);
        return a3_err_set(err, A3_EINVAL, "writer: %s: shape %s, declared %s", PNAME(name), got, want);
    }
    return put(s, name, data, NULL, it ? it->numel : 0, err);
}

static int write_index(const a3_st_stream *s, a3_err *err)
{
    uint64_t total = 0;
    for (size_t i = 0; i < s->n; i++) total += s->items[i].nbytes;
    cJSON *root = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(root, "metadata");
    cJSON *wm = cJSON_AddObjectToObject(root, "weight_map");
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, total);
    cJSON *tot = cJSON_CreateRaw(num);
    int ok = md && wm && tot && cJSON_AddItemToObject(md, "total_size", tot);
    if (tot && !ok) cJSON_Delete(tot);
    for (size_t i = 0; ok && i < s->n; i++)
        ok = cJSON_AddStringToObject(wm, s->items[i].name, s->files[s->items[i].file].shard) != NULL;
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return a3_err_set(err, A3_ENOMEM, "%s: out of memory", s->index);
    int rc = a3_write_file_atomic(s->index, text, strlen(text), err);
    free(text);
    return rc;
}

int a3_st_stream_finish(a3_st_stream *s, a3_err *err)
{
    if (!s->begun || s->finished) return a3_err_set(err, A3_EINVAL, "writer: finish before begin or twice");
    if (s->cur < s->n)
        return a3_err_set(err, A3_EINVAL, "%s: writer: %s: never written", s->files[s->items[s->cur].file].path,
                          PNAME(s->items[s->cur].name));
    int rc = move_to(s, s->nfiles - 1, err);
    if (rc == A3_OK) rc = close_file(s, err);
    if (rc == A3_OK && s->index) rc = write_index(s, err);
    if (rc == A3_OK) s->finished = 1;
    return rc;
}

/* ---- buffered writer: a stream fed at save time ------------------------------ */

typedef struct {
    char *name;
    a3_dtype dtype;
    int ndim;
    int64_t shape[A3_ST_MAX_DIMS];
    unsigned char *bytes; /* converted, little-endian, nbytes long */
    size_t nbytes;
} wt_item;

struct a3_st_writer {
    wt_item *items; /* insertion order */
    size_t n, cap;
};

a3_st_writer *a3_st_writer_new(void) { return calloc(1, sizeof(a3_st_writer)); }

void a3_st_writer_free(a3_st_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->items[i].name);
        free(w->items[i].bytes);
    }
    free(w->items);
    free(w);
}

int a3_st_writer_add(a3_st_writer *w, const char *name, a3_dtype dtype, int ndim, const int64_t *shape,
                     const float *data, a3_err *err)
{
    assert(w && (ndim <= 0 || shape));
    /* The stream checks the arguments the same way at save; checking now
     * reports a bad call where it is made (duplicates too: writer users
     * add a few hundred tensors at most). */
    a3_st_stream probe = {0};
    size_t numel = 0, nbytes = 0;
    int rc = declare_check(&probe, name, dtype, ndim, shape, &numel, err);
    for (size_t i = 0; rc == A3_OK && i < w->n; i++)
        if (strcmp(w->items[i].name, name) == 0)
            rc = a3_err_set(err, A3_EINVAL, "writer: %s: duplicate tensor name", PNAME(name));
    if (rc != A3_OK) return rc;
    if (a3_mul_size(numel, a3_dtype_size(dtype), &nbytes))
        return a3_err_set(err, A3_EINVAL, "writer: %s: tensor too large", PNAME(name));
    assert(data || numel == 0);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        wt_item *v = cap > SIZE_MAX / sizeof *v ? NULL : realloc(w->items, cap * sizeof *v);
        if (!v) return a3_err_set(err, A3_ENOMEM, "writer: %s: out of memory", PNAME(name));
        w->items = v;
        w->cap = cap;
    }
    wt_item it = {.dtype = dtype, .ndim = ndim, .nbytes = nbytes};
    it.name = strdup(name);
    it.bytes = malloc(nbytes ? nbytes : 1);
    if (!it.name || !it.bytes) {
        free(it.name);
        free(it.bytes);
        return a3_err_set(err, A3_ENOMEM, "writer: %s: out of memory", PNAME(name));
    }
    if (ndim) memcpy(it.shape, shape, (size_t)ndim * sizeof *shape);
    encode(dtype, data, numel, it.bytes);
    w->items[w->n++] = it;
    return A3_OK;
}

int a3_st_writer_save(a3_st_writer *w, const char *path, a3_err *err)
{
    a3_st_stream *s = a3_st_stream_new();
    int rc = s ? A3_OK : a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; rc == A3_OK && i < w->n; i++)
        rc = a3_st_stream_declare(s, w->items[i].name, w->items[i].dtype, w->items[i].ndim, w->items[i].shape, err);
    if (rc == A3_OK) rc = a3_st_stream_begin_file(s, path, err);
    for (size_t i = 0; rc == A3_OK && i < w->n; i++)
        rc = put(s, w->items[i].name, NULL, w->items[i].bytes, s->items[i].numel, err);
    if (rc == A3_OK) rc = a3_st_stream_finish(s, err);
    a3_st_stream_free(s);
    return rc;
}
