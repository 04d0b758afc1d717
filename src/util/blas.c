/* blas: OpenBLAS kernel selection, thread control and a sgemm benchmark.
 *
 * No mutable global state: what the start-up decided reaches later code (a3
 * doctor) through the environment, the only thing that survives execv, and
 * everything else is recomputed on demand (cpuid is cheap). */
#define _GNU_SOURCE /* sched_getaffinity/CPU_COUNT, dladdr/RTLD_DEFAULT */

#include <cblas.h>
#include <dlfcn.h>
#include <errno.h>
#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define A3_X86 1
#endif

#include "a3/blas.h"
#include "a3/util.h"

/* ---- CPU features -------------------------------------------------------- */

#ifdef A3_X86
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void trim_copy(char *dst, size_t n, const char *src)
{
    while (*src == ' ') src++;
    size_t len = strnlen(src, n - 1);
    while (len > 0 && (src[len - 1] == ' ' || src[len - 1] == '\0')) len--;
    memcpy(dst, src, len);
    dst[len] = '\0';
}
#endif

void a3_cpu_detect(a3_cpu_info *out)
{
    memset(out, 0, sizeof *out);
#ifdef A3_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    unsigned max_leaf = a;
    memcpy(out->vendor, &b, 4);
    memcpy(out->vendor + 4, &d, 4);
    memcpy(out->vendor + 8, &c, 4);
    out->vendor[12] = '\0';

    unsigned f = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        if (c & (1u << 12)) f |= A3_CPU_FMA;
        if (c & (1u << 27)) f |= A3_CPU_OSXSAVE;
        if (c & (1u << 28)) f |= A3_CPU_AVX;
    }
    if (f & A3_CPU_OSXSAVE) {
        uint64_t xcr0 = xgetbv0();
        if ((xcr0 & 0x6) == 0x6) f |= A3_CPU_OS_AVX;          /* XMM, YMM */
        if ((xcr0 & 0xe6) == 0xe6) f |= A3_CPU_OS_AVX512;     /* + opmask, ZMM */
    }
    if (max_leaf >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        unsigned sub_max = a;
        if (b & (1u << 5)) f |= A3_CPU_AVX2;
        if (b & (1u << 16)) f |= A3_CPU_AVX512F;
        if (b & (1u << 17)) f |= A3_CPU_AVX512DQ;
        if (b & (1u << 28)) f |= A3_CPU_AVX512CD;
        if (b & (1u << 30)) f |= A3_CPU_AVX512BW;
        if (b & (1u << 31)) f |= A3_CPU_AVX512VL;
        if (sub_max >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)))
            f |= A3_CPU_AVX512BF16;
    }
    out->flags = f;

    if (__get_cpuid(0x80000000u, &a, &b, &c, &d) && a >= 0x80000004u) {
        unsigned regs[12];
        for (unsigned i = 0; i < 3; i++)
            if (!__get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2],
                             &regs[4 * i + 3]))
                return;
        char raw[49];
        memcpy(raw, regs, 48);
        raw[48] = '\0';
        trim_copy(out->model, sizeof out->model, raw);
    }
#endif
}

/* ---- kernel mapping ------------------------------------------------------ */

static const struct {
    const char *name;
    int tier;
} CORE_TIERS[] = {
    {"Unknown", A3_TIER_SSE},      {"Prescott", A3_TIER_SSE},     {"Katmai", A3_TIER_SSE},
    {"Coppermine", A3_TIER_SSE},   {"Northwood", A3_TIER_SSE},    {"Banias", A3_TIER_SSE},
    {"Atom", A3_TIER_SSE},         {"Core2", A3_TIER_SSE},        {"Penryn", A3_TIER_SSE},
    {"Dunnington", A3_TIER_SSE},   {"Nehalem", A3_TIER_SSE},      {"Athlon", A3_TIER_SSE},
    {"Opteron", A3_TIER_SSE},      {"Opteron_SSE3", A3_TIER_SSE}, {"Barcelona", A3_TIER_SSE},
    {"Nano", A3_TIER_SSE},         {"Bobcat", A3_TIER_SSE},       {"Sandybridge", A3_TIER_AVX},
    {"Bulldozer", A3_TIER_AVX},    {"Piledriver", A3_TIER_AVX},   {"Steamroller", A3_TIER_AVX},
    {"Excavator", A3_TIER_AVX},    {"Haswell", A3_TIER_AVX2},     {"Zen", A3_TIER_AVX2},
    {"SkylakeX", A3_TIER_AVX512},  {"Cooperlake", A3_TIER_AVX512BF16},
    {"SapphireRapids", A3_TIER_AVX512BF16},
};

int a3_blas_core_tier(const char *core)
{
    if (!core) return A3_TIER_UNKNOWN;
    for (size_t i = 0; i < sizeof CORE_TIERS / sizeof CORE_TIERS[0]; i++)
        if (strcasecmp(core, CORE_TIERS[i].name) == 0) return CORE_TIERS[i].tier;
    return A3_TIER_UNKNOWN;
}

const char *a3_blas_core_for_cpu(unsigned f)
{
    const unsigned avx512 = A3_CPU_AVX512F | A3_CPU_AVX512BW | A3_CPU_AVX512VL | A3_CPU_AVX512DQ;
    if (!(f & A3_CPU_AVX) || !(f & A3_CPU_OS_AVX)) return NULL;
    if ((f & avx512) == avx512 && (f & A3_CPU_OS_AVX512) && (f & A3_CPU_AVX2) && (f & A3_CPU_FMA))
        return "SkylakeX";
    if ((f & A3_CPU_AVX2) && (f & A3_CPU_FMA)) return "Haswell";
    return "Sandybridge";
}

static int env_set(const char *v)
{
    return v && v[0];
}

a3_blas_fix a3_blas_fix_plan(const a3_blas_probe *p, const char **target)
{
    const char *want = a3_blas_core_for_cpu(p->cpu);
    int cur = a3_blas_core_tier(p->core);
    /* want is only worth anything when it beats the current core. */
    const char *better = (want && cur != A3_TIER_UNKNOWN && a3_blas_core_tier(want) > cur) ? want : NULL;
    if (target) *target = NULL;

    if (env_set(p->marker)) {
        if (target) *target = env_set(p->coretype) ? p->coretype : NULL;
        return A3_BLAS_FIX_DONE;
    }
    if (env_set(p->nofix) && strcmp(p->nofix, "0") != 0) {
        if (target) *target = better;
        return A3_BLAS_FIX_DISABLED;
    }
    if (env_set(p->coretype)) return A3_BLAS_FIX_USER;
    if (cur == A3_TIER_UNKNOWN) {
        if (target) *target = want;
        return A3_BLAS_FIX_UNKNOWN_CORE;
    }
    if (!better) return A3_BLAS_FIX_NOT_NEEDED;
    if (target) *target = better;
    if (!p->config || !strstr(p->config, "DYNAMIC_ARCH")) return A3_BLAS_FIX_STATIC;
    return A3_BLAS_FIX_REEXEC;
}

const char *a3_blas_fix_str(a3_blas_fix f)
{
    switch (f) {
    case A3_BLAS_FIX_NOT_NEEDED: return "not-needed";
    case A3_BLAS_FIX_REEXEC: return "re-exec";
    case A3_BLAS_FIX_DONE: return "re-executed";
    case A3_BLAS_FIX_DISABLED: return "disabled";
    case A3_BLAS_FIX_USER: return "user-coretype";
    case A3_BLAS_FIX_STATIC: return "static-build";
    case A3_BLAS_FIX_UNKNOWN_CORE: return "unknown-core";
    }
    return "?";
}

/* ---- start-up -------------------------------------------------------------- */

/* Saved value of an environment variable, to put it back exactly. */
typedef struct {
    const char *name;
    char *value; /* strdup'ed, NULL when unset */
    int ok;      /* saved successfully */
} env_save;

static void env_save_get(env_save *s, const char *name)
{
    const char *v = getenv(name);
    s->name = name;
    s->value = v ? strdup(v) : NULL;
    s->ok = !v || s->value;
}

static void env_restore(env_save *s)
{
    if (s->ok) {
        if (s->value) (void)setenv(s->name, s->value, 1);
        else (void)unsetenv(s->name);
    }
    free(s->value);
    s->value = NULL;
}

int a3_blas_startup_with(char **argv, const a3_blas_probe *p, const char *exe, a3_err *err)
{
    a3_blas_probe q = *p;
    q.coretype = getenv(A3_BLAS_ENV_CORETYPE);
    q.nofix = getenv(A3_BLAS_ENV_NOFIX);
    q.marker = getenv(A3_BLAS_ENV_MARKER);
    const char *target = NULL;
    if (a3_blas_fix_plan(&q, &target) != A3_BLAS_FIX_REEXEC || !target) return 0;
    if (!argv || !argv[0]) return 0; /* nothing to re-execute with */
    if (!exe) exe = "/proc/self/exe";

    env_save saved[2];
    env_save_get(&saved[0], A3_BLAS_ENV_CORETYPE);
    env_save_get(&saved[1], A3_BLAS_ENV_MARKER);
    if (!saved[0].ok || !saved[1].ok) {
        env_restore(&saved[0]);
        env_restore(&saved[1]);
        return a3_err_set(err, A3_ENOMEM, "blas: saving the environment: out of memory");
    }
    /* q.core may point into storage the setenv calls do not touch (it is
     * OpenBLAS's static name), but copy it anyway: the marker must hold the
     * name as it was. */
    char prev[64];
    snprintf(prev, sizeof prev, "%s", q.core);
    int e = 0;
    if (setenv(A3_BLAS_ENV_CORETYPE, target, 1) != 0 || setenv(A3_BLAS_ENV_MARKER, prev, 1) != 0)
        e = errno;
    if (!e) {
        /* Nothing has been written yet in a3's main, but the test program
         * and other callers may have buffered output: flush it so exec
         * does not lose or duplicate it. Stdin is untouched (never read). */
        (void)fflush(NULL);
        execv(exe, argv);
        e = errno;
    }
    env_restore(&saved[0]);
    env_restore(&saved[1]);
    return a3_err_set(err, A3_EIO, "%s: re-executing with %s=%s: %s", exe, A3_BLAS_ENV_CORETYPE,
                      target, strerror(e));
}

void a3_blas_startup(int argc, char **argv)
{
    if (argc < 1 || !argv || argv[argc] != NULL) return;
    a3_cpu_info ci;
    a3_cpu_detect(&ci);
    a3_blas_probe p = {.core = a3_blas_kernel_name(), .config = a3_blas_config(), .cpu = ci.flags};
    (void)a3_blas_startup_with(argv, &p, NULL, NULL);
}

/* ---- run-time information ---------------------------------------------- */

const char *a3_blas_kernel_name(void)
{
    const char *s = openblas_get_corename();
    return s ? s : "unknown";
}

const char *a3_blas_config(void)
{
    const char *s = openblas_get_config();
    return s ? s : "unknown";
}

const char *a3_blas_threading(void)
{
    switch (openblas_get_parallel()) {
    case OPENBLAS_SEQUENTIAL: return "sequential";
    case OPENBLAS_THREAD: return "pthreads";
    case OPENBLAS_OPENMP: return "OpenMP";
    }
    return "unknown";
}

int a3_blas_symbol_path(const char *symbol, char *buf, size_t n, a3_err *err)
{
    if (!buf || n == 0) return a3_err_set(err, A3_EINVAL, "blas: symbol path: no buffer");
    buf[0] = '\0';
    /* dlsym gives the definition itself, not a PLT stub of the executable. */
    void *addr = dlsym(RTLD_DEFAULT, symbol);
    if (!addr) return a3_err_set(err, A3_EUNSUPPORTED, "%s: not found as a dynamic symbol", symbol);
    Dl_info info;
    if (!dladdr(addr, &info) || !info.dli_fname || !info.dli_fname[0])
        return a3_err_set(err, A3_EUNSUPPORTED, "%s: no shared object defines it", symbol);
    char *real = realpath(info.dli_fname, NULL);
    const char *name = real ? real : info.dli_fname;
    int w = snprintf(buf, n, "%s", name);
    free(real);
    if (w < 0 || (size_t)w >= n)
        return a3_err_set(err, A3_EINVAL, "%s: library path longer than %zu bytes", symbol, n);
    return A3_OK;
}

int a3_blas_lapacke_selftest(double *max_err, a3_err *err)
{
    /* A = L L^T with a known lower-triangular L; all values are small
     * integers or halves, so the factor comes back exactly. */
    static const double L[16] = {2, 0, 0, 0, 1, 3, 0, 0, -1, 2, 1, 0, 0.5, -1, 2, 4};
    double a[16];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double s = 0;
            for (int k = 0; k < 4; k++) s += L[i * 4 + k] * L[j * 4 + k];
            a[i * 4 + j] = s;
        }
    if (max_err) *max_err = INFINITY;
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', 4, a, 4);
    if (info != 0)
        return a3_err_set(err, A3_EUNSUPPORTED, "LAPACKE_dpotrf: returned %d on a 4x4 SPD matrix",
                          (int)info);
    double worst = 0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j <= i; j++) {
            double d = fabs(a[i * 4 + j] - L[i * 4 + j]);
            if (!(d <= worst)) worst = d; /* also catches NaN */
        }
    if (max_err) *max_err = worst;
    if (!(worst <= 1e-12))
        return a3_err_set(err, A3_EUNSUPPORTED, "LAPACKE_dpotrf: wrong factor (error %g)", worst);
    return A3_OK;
}

/* ---- threads ------------------------------------------------------------ */

/* Read a small pseudo-file (/proc, /sys: st_size is meaningless there, so
 * a3_read_file does not fit) into buf, NUL-terminated. 0 or -1. */
static int read_small(const char *path, char *buf, size_t n)
{
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    size_t got = fread(buf, 1, n - 1, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad) return -1;
    buf[got] = '\0';
    return 0;
}

/* CPUs allowed by a cgroup CPU quota, rounded up; 0 when unlimited/unknown. */
static int cgroup_quota_cpus(void)
{
    char buf[4096];
    long long quota = -1, period = 0;
    /* cgroup v2: "<quota|max> <period>" in the process's cgroup directory;
     * inside a container that directory is usually the namespace root. */
    char path[600] = "/sys/fs/cgroup/cpu.max";
    if (read_small("/proc/self/cgroup", buf, sizeof buf) == 0) {
        char *line = strstr(buf, "0::");
        if (line && (line == buf || line[-1] == '\n')) {
            char *end = strchr(line, '\n');
            if (end) *end = '\0';
            char cand[600];
            int w = snprintf(cand, sizeof cand, "/sys/fs/cgroup%.500s/cpu.max", line + 3);
            if (w > 0 && (size_t)w < sizeof cand && access(cand, R_OK) == 0)
                memcpy(path, cand, sizeof path);
        }
    }
    if (read_small(path, buf, sizeof buf) == 0) {
        if (strncmp(buf, "max", 3) == 0 || sscanf(buf, "%lld %lld", &quota, &period) != 2)
            quota = -1;
    } else {
        static const char *const dirs[] = {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"};
        for (size_t i = 0; i < sizeof dirs / sizeof dirs[0] && quota <= 0; i++) {
            char q[128], per[128];
            snprintf(q, sizeof q, "%s/cpu.cfs_quota_us", dirs[i]);
            snprintf(per, sizeof per, "%s/cpu.cfs_period_us", dirs[i]);
            if (read_small(q, buf, sizeof buf) != 0 || sscanf(buf, "%lld", &quota) != 1) {
                quota = -1;
                continue;
            }
            if (quota > 0 &&
                (read_small(per, buf, sizeof buf) != 0 || sscanf(buf, "%lld", &period) != 1))
                period = 0;
        }
    }
    if (quota <= 0 || period <= 0) return 0;
    long long n = (quota + period - 1) / period;
    return n > INT_MAX ? INT_MAX : (int)n;
}

int a3_threads_default(void)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int n = online > 0 ? (online > INT_MAX ? INT_MAX : (int)online) : 1;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0 && c < n) n = c;
    }
    int q = cgroup_quota_cpus();
    if (q > 0 && q < n) n = q;
    return n > 0 ? n : 1;
}

int a3_threads_resolve(long requested)
{
    if (requested <= 0) return a3_threads_default();
    return requested > 256 ? 256 : (int)requested;
}

int a3_blas_set_threads(int n)
{
    openblas_set_num_threads(n > 0 ? n : a3_threads_default());
    return openblas_get_num_threads();
}

int a3_blas_get_threads(void)
{
    return openblas_get_num_threads();
}

int a3_blas_single_begin(void)
{
    int prev = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return prev;
}

void a3_blas_single_end(int previous)
{
    openblas_set_num_threads(previous > 0 ? previous : 1);
}

/* ---- sgemm benchmark ---------------------------------------------------- */

static void sgemm_n(int n, const float *a, const float *b, float *c)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
}

/* Compare two entries of C with a double-precision dot product. */
static int sgemm_check(int n, const float *a, const float *b, const float *c)
{
    const int idx[2][2] = {{0, 0}, {n - 1, n / 2}};
    for (int t = 0; t < 2; t++) {
        int i = idx[t][0], j = idx[t][1];
        double s = 0, mag = 0;
        for (int k = 0; k < n; k++) {
            double p = (double)a[(size_t)i * n + k] * b[(size_t)k * n + j];
            s += p;
            mag += fabs(p);
        }
        double got = c[(size_t)i * n + j];
        if (!(fabs(got - s) <= 1e-4 * mag + 1e-6)) return -1;
    }
    return 0;
}

int a3_blas_sgemm_bench(double seconds, int n, a3_blas_bench *out, a3_err *err)
{
    memset(out, 0, sizeof *out);
    if (!(seconds > 0 && seconds <= 3600))
        return a3_err_set(err, A3_EINVAL, "sgemm bench: seconds must be in (0, 3600], got %g",
                          seconds);
    if (n > 16384)
        return a3_err_set(err, A3_EINVAL, "sgemm bench: n must be at most 16384, got %d", n);
    int adaptive = n <= 0;
    if (adaptive) n = 2048;

    size_t nn, bytes;
    if (a3_mul_size((size_t)n, (size_t)n, &nn) || a3_mul_size(nn, sizeof(float), &bytes))
        return a3_err_set(err, A3_EINVAL, "sgemm bench: n=%d too large", n);
    float *m[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0) {
            for (int j = 0; j < i; j++) free(m[j]);
            return a3_err_set(err, A3_ENOMEM, "sgemm bench: allocating 3 x %zu bytes", bytes);
        }
        m[i] = p;
    }
    float *a = m[0], *b = m[1], *c = m[2];
    /* Deterministic values in [-0.375, 0.375] (exact in float). */
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)((int)(i * 7 % 13) - 6) / 16.0f;
        b[i] = (float)((int)(i * 5 % 11) - 5) / 16.0f;
        c[i] = 0.0f;
    }

    /* Warm-up (thread pool, caches, page faults); it also sizes the run. */
    double t0 = a3_now();
    sgemm_n(n, a, b, c);
    double one = a3_now() - t0;
    while (adaptive && n > 256 && one > seconds / 4) {
        n /= 2; /* the buffers are large enough for any smaller n */
        t0 = a3_now();
        sgemm_n(n, a, b, c);
        one = a3_now() - t0;
    }

    long calls = 0;
    double el;
    t0 = a3_now();
    do {
        sgemm_n(n, a, b, c);
        calls++;
        el = a3_now() - t0;
    } while (el < seconds);

    int bad = sgemm_check(n, a, b, c);
    for (int i = 0; i < 3; i++) free(m[i]);
    if (bad)
        return a3_err_set(err, A3_EUNSUPPORTED, "sgemm bench: wrong result with kernel %s",
                          a3_blas_kernel_name());

    out->n = n;
    out->threads = openblas_get_num_threads();
    out->calls = calls;
    out->seconds = el;
    out->gflops = el > 0 ? 2.0 * n * (double)n * n * (double)calls / el / 1e9 : 0;
    out->kernel = a3_blas_kernel_name();
    return A3_OK;
}

double a3_blas_sgemm_gflops(double seconds, int n)
{
    a3_blas_bench r;
    if (a3_blas_sgemm_bench(seconds, n, &r, NULL) != A3_OK) return -1.0;
    return r.gflops;
}
