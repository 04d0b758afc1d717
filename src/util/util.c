/* util: see include/a3/util.h. */
#define _GNU_SOURCE
#include "a3/util.h"

#include "a3/cleanup.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int a3_err_set(a3_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int a3_err_exit_status(int code)
{
    /* Documented in README "Exit codes": 0 ok, 1 failure/bad input,
     * 2 usage error, 3 unsupported model, 4 mismatch, 130 cancelled. */
    switch (code) {
    case A3_OK: return 0;
    case A3_EINVAL: return 2;
    case A3_EUNSUPPORTED: return 3;
    case A3_EMISMATCH: return 4;
    case A3_ECANCELED: return 130;
    default: return 1;
    }
}

int a3_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

int a3_add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a) return -1;
    *out = a + b;
    return 0;
}

void *a3_calloc(size_t count, size_t size)
{
    if (count == 0 || size == 0) return calloc(1, 1);
    return calloc(count, size);
}

void *a3_malloc_array(size_t count, size_t size)
{
    size_t n;
    if (a3_mul_size(count, size, &n)) return NULL;
    return malloc(n ? n : 1);
}

int a3_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                 a3_err *err)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return a3_err_set(err, A3_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || st.st_size < 0) {
        fclose(fp);
        return a3_err_set(err, A3_EIO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(fp);
        return a3_err_set(err, A3_EFORMAT, "%s: file too large (%lld bytes, limit %zu)",
                          path, (long long)st.st_size, max_bytes);
    }
    /* Read to EOF, not to st_size: a pipe, /dev/stdin or <(...) reports
     * size 0, and a file may grow. st_size only sizes the first buffer. */
    size_t cap = (size_t)st.st_size + 1 > 4096 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char *buf = malloc(cap + 1);
    int bad = 0;
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, fp);
        n += k;
        if (k == 0 || n < cap) {
            if (ferror(fp)) bad = 1;
            if (feof(fp) || bad) break;
            continue;
        }
        if (n > max_bytes) break;
        size_t ncap = cap > max_bytes / 2 ? max_bytes + 1 : 2 * cap;
        char *g = realloc(buf, ncap + 1);
        if (!g) free(buf);
        buf = g, cap = ncap;
    }
    fclose(fp);
    if (!buf) return a3_err_set(err, A3_ENOMEM, "%s: out of memory reading file", path);
    if (bad || n > max_bytes) {
        free(buf);
        if (bad) return a3_err_set(err, A3_EIO, "%s: read failed", path);
        return a3_err_set(err, A3_EFORMAT, "%s: file too large (more than %zu bytes)", path, max_bytes);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return A3_OK;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when invalid
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    int n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (n <= 1) return n;
    uint32_t cp = c & (0x7f >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

char *a3_escape(const char *s, char *buf, size_t n)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "(null)");
    size_t j = 0;
    while (*p) {
        char esc[8] = "";
        int k = utf8_len(p);
        if (k == 1 && *p >= 0x20 && *p != 0x7f && *p != '\\') esc[0] = (char)*p, esc[1] = 0;
        else if (k == 1 && (*p == '\n' || *p == '\t' || *p == '\r' || *p == '\\'))
            snprintf(esc, sizeof esc, "\\%c", *p == '\n' ? 'n' : *p == '\t' ? 't' : *p == '\r' ? 'r' : '\\');
        else if (k == 2 && p[0] == 0xc2 && p[1] < 0xa0) /* C1 control, U+0080..U+009F */
            snprintf(esc, sizeof esc, "\\u%04x", p[1]);
        else if (k <= 1) snprintf(esc, sizeof esc, "\\x%02x", *p);
        size_t len = k > 1 && !esc[0] ? (size_t)k : strlen(esc);
        if (j + len + 4 > n) { /* room for "..." and the NUL */
            memcpy(buf + j, "...", 4);
            return buf;
        }
        memcpy(buf + j, esc[0] ? (const void *)esc : (const void *)p, len);
        j += len;
        p += k ? k : 1;
    }
    buf[j] = 0;
    return buf;
}

int64_t a3_find_nonfinite(const float *x, size_t n)
{
    /* A branch-free OR over a block, then a rescan of the bad block: the
     * common all-finite case runs at memory speed. */
    for (size_t i0 = 0; i0 < n; i0 += 1024) {
        size_t e = n - i0 < 1024 ? n : i0 + 1024;
        int bad = 0;
        for (size_t i = i0; i < e; i++) bad |= !isfinite(x[i]);
        if (bad)
            for (size_t i = i0; i < e; i++)
                if (!isfinite(x[i])) return (int64_t)i;
    }
    return -1;
}

void a3__tmp_sweep(const char *path); /* src/util/cleanup.c */

char *a3_tmp_path(const char *path)
{
    a3__tmp_sweep(path); /* temporaries of killed runs (see a3/cleanup.h) */
    char suffix[32];
    int sl = snprintf(suffix, sizeof suffix, ".tmp.%ld", (long)getpid());
    size_t pl = strlen(path);
    char *t = malloc(pl + (size_t)sl + 1);
    if (!t) return NULL;
    memcpy(t, path, pl);
    memcpy(t + pl, suffix, (size_t)sl + 1);
    return t;
}

int a3_atomic_open(a3_atomic *a, const char *path, a3_err *err)
{
    memset(a, 0, sizeof *a);
    a->path = strdup(path);
    a->tmp_path = a3_tmp_path(path);
    if (!a->path || !a->tmp_path) {
        a3_atomic_abort(a);
        return a3_err_set(err, A3_ENOMEM, "%s: out of memory", path);
    }
    a3_cleanup_add(a->tmp_path);
    a->fp = fopen(a->tmp_path, "wb");
    if (!a->fp) {
        int e = errno;
        a3_atomic_abort(a);
        return a3_err_set(err, A3_EIO, "%s: cannot create: %s", path, strerror(e));
    }
    return A3_OK;
}

int a3_atomic_write(a3_atomic *a, const void *buf, size_t n, a3_err *err)
{
    if (a->failed || !a->fp) return a3_err_set(err, A3_EIO, "%s: writer already failed", a->path);
    if (n && fwrite(buf, 1, n, a->fp) != n) {
        a->failed = 1;
        return a3_err_set(err, A3_EIO, "%s: write failed: %s", a->path, strerror(errno));
    }
    return A3_OK;
}

int a3_atomic_commit(a3_atomic *a, a3_err *err)
{
    int rc = A3_OK;
    if (a->failed || !a->fp) {
        rc = a3_err_set(err, A3_EIO, "%s: not committed: an earlier write failed", a->path);
    } else if (fflush(a->fp) != 0 || fsync(fileno(a->fp)) != 0) {
        rc = a3_err_set(err, A3_EIO, "%s: flush failed: %s", a->path, strerror(errno));
    }
    if (a->fp && fclose(a->fp) != 0 && rc == A3_OK)
        rc = a3_err_set(err, A3_EIO, "%s: close failed: %s", a->path, strerror(errno));
    a->fp = NULL;
    if (rc == A3_OK && rename(a->tmp_path, a->path) != 0)
        rc = a3_err_set(err, A3_EIO, "%s: rename failed: %s", a->path, strerror(errno));
    if (rc != A3_OK) unlink(a->tmp_path);
    a3_cleanup_forget(a->tmp_path);
    free(a->path);
    free(a->tmp_path);
    a->path = a->tmp_path = NULL;
    return rc;
}

void a3_atomic_abort(a3_atomic *a)
{
    if (a->fp) fclose(a->fp);
    if (a->tmp_path) unlink(a->tmp_path), a3_cleanup_forget(a->tmp_path);
    free(a->path);
    free(a->tmp_path);
    memset(a, 0, sizeof *a);
}

int a3_write_file_atomic(const char *path, const void *buf, size_t n, a3_err *err)
{
    a3_atomic a;
    int rc = a3_atomic_open(&a, path, err);
    if (rc) return rc;
    rc = a3_atomic_write(&a, buf, n, err);
    if (rc) {
        a3_atomic_abort(&a);
        return rc;
    }
    return a3_atomic_commit(&a, err);
}

int a3_parse_bytes(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        double mul;
    } units[] = {{"", 1}, {"b", 1}, {"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
                 {"kib", 1024.0}, {"mib", 1048576.0}, {"gib", 1073741824.0}, {"tib", 1099511627776.0}};
    if (!s || !((*s >= '0' && *s <= '9') || *s == '.')) return -1; /* no sign, no space, no "inf" */
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || errno || !isfinite(x)) return -1;
    for (const char *c = s; c < end; c++)
        if (!((*c >= '0' && *c <= '9') || *c == '.')) return -1; /* no exponent, no hex */
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcasecmp(end, units[i].unit)) continue;
        double v = floor(x * units[i].mul);
        if (!(v >= 1 && v <= 0x1p60)) return -1;
        *out = (uint64_t)v;
        return 0;
    }
    return -1;
}

uint64_t a3_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

double a3_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

char *a3_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p) return NULL;
    size_t dl = strlen(dir);
    snprintf(p, n, "%s%s%s", dir, (dl && dir[dl - 1] == '/') ? "" : "/", name);
    return p;
}
