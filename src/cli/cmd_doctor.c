/* a3 doctor: CPU features, OpenBLAS kernel and threads, LAPACKE, sgemm speed.
 *
 * Plain text (no colour, so NO_COLOR needs nothing), at most 80 columns; the
 * last line is machine-readable for bench scripts:
 *   sgemm_gflops=312.4 kernel=SkylakeX threads=2 n=2048 fix=re-executed reexec=1 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a3/blas.h"
#include "a3/kernels.h"
#include "a3/pool.h"
#include "cli.h"

static const char *HELP =
    "usage: a3 doctor [--threads N] [--seconds S] [--size N] [--no-bench]\n\n"
    "Report what a3 runs on: CPU model and vector features, the OpenBLAS\n"
    "build and the kernel it uses, whether a3 re-executed itself to get a\n"
    "better kernel, threads, a LAPACKE check, and a sgemm speed measurement.\n\n"
    "options:\n"
    "  --threads N   OpenBLAS threads (default: all usable cores)\n"
    "  --seconds S   length of the sgemm measurement (default 2)\n"
    "  --size N      sgemm matrix size N x N x N (default 2048, halved on\n"
    "                slow machines so a call takes under S/4)\n"
    "  --no-bench    skip the sgemm measurement\n\n"
    "environment:\n"
    "  A3_NO_BLAS_FIX=1     do not re-execute to select a better kernel\n"
    "  OPENBLAS_CORETYPE=X  force OpenBLAS kernel X (a3 then leaves it alone)\n"
    "  OPENBLAS_VERBOSE=2   OpenBLAS prints the kernel it loads\n\n"
    "The last line is for scripts, e.g.\n"
    "  sgemm_gflops=312.4 kernel=SkylakeX threads=2 n=2048 fix=not-needed reexec=0\n\n"
    "exit codes: 0 ok, 1 a check failed (LAPACKE, sgemm), 2 usage\n\n"
    "examples:\n"
    "  a3 doctor\n"
    "  a3 doctor --threads 1 --no-bench\n";

#define WIDTH 80
#define KEYW 17 /* "  key" padded to this, value starts at column KEYW */

/* Print "  key<pad>value", wrapping the value at spaces to WIDTH columns
 * with continuation lines indented to KEYW; a word too long even for that
 * (a library path) gets a line of its own indented by 4. */
static void kv(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kv(const char *key, const char *fmt, ...)
{
    char val[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(val, sizeof val, fmt, ap);
    va_end(ap);
    /* col: characters on the current line; the padding up to the value
     * column is written lazily, just before the word that follows it. */
    int col = printf("  %s", key);
    int pad_to = col < KEYW ? KEYW : -1; /* -1: key too long, value below */
    const char *p = val;
    int first = 1;
    while (*p) {
        while (*p == ' ') p++;
        int w = (int)strcspn(p, " ");
        if (w == 0) break;
        if (pad_to < 0 || (!first && col + 1 + w > WIDTH)) {
            putchar('\n');
            col = 0, pad_to = KEYW, first = 1;
        }
        if (first && pad_to > 4 && (col > pad_to ? col : pad_to) + w > WIDTH) {
            if (col > 0) putchar('\n'); /* even the value column is too far */
            col = 0, pad_to = 4;
        }
        if (first && col < pad_to) col += printf("%*s", pad_to - col, "");
        col += printf("%s%.*s", first ? "" : " ", w, p);
        first = 0;
        p += w;
    }
    putchar('\n');
}

/* Append the names of the features in `flags` that are (have=1) or are
 * not (have=0) present, space-separated, to buf. */
static void feature_list(char *buf, size_t n, unsigned flags, int have)
{
    static const struct {
        unsigned bit;
        const char *name;
    } FEAT[] = {{A3_CPU_AVX, "AVX"},           {A3_CPU_AVX2, "AVX2"},
                {A3_CPU_FMA, "FMA"},           {A3_CPU_AVX512F, "AVX512F"},
                {A3_CPU_AVX512BW, "AVX512BW"}, {A3_CPU_AVX512VL, "AVX512VL"},
                {A3_CPU_AVX512DQ, "AVX512DQ"}, {A3_CPU_AVX512CD, "AVX512CD"},
                {A3_CPU_AVX512BF16, "avx512_bf16"}};
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof FEAT / sizeof FEAT[0]; i++) {
        if (!(flags & FEAT[i].bit) != !have) continue;
        int w = snprintf(buf + len, n - len, "%s%s", len ? " " : "", FEAT[i].name);
        if (w < 0 || (size_t)w >= n - len) break;
        len += (size_t)w;
    }
    if (!len) snprintf(buf, n, "(none)");
}

static const char *tier_str(int tier)
{
    switch (tier) {
    case A3_TIER_SSE: return "generic SSE kernels";
    case A3_TIER_AVX: return "AVX kernels";
    case A3_TIER_AVX2: return "AVX2+FMA kernels";
    case A3_TIER_AVX512: return "AVX-512 kernels";
    case A3_TIER_AVX512BF16: return "AVX-512 kernels, BF16 extras";
    }
    return "kernel unknown to a3";
}

typedef struct {
    long threads;
    double seconds;
    long size;
    int no_bench;
} doctor_opts;

static int parse(int argc, char **argv, doctor_opts *o)
{
    const cli_opt opts[] = {CLI_INT("--threads", &o->threads, 1, 256),
                            CLI_DOUBLE("--seconds", &o->seconds, 0.05, 600),
                            CLI_INT("--size", &o->size, 16, 16384),
                            CLI_FLAG("--no-bench", &o->no_bench),
                            {0}};
    return cli_parse(&(cli_spec){"doctor", HELP, opts, NULL}, argc, argv);
}

static void print_fix(a3_blas_fix fix, const char *target, const char *kernel,
                      const a3_blas_probe *p)
{
    const char *marker = p->marker;
    switch (fix) {
    case A3_BLAS_FIX_NOT_NEEDED:
        kv("kernel fix", "not needed: %s is as good as this CPU allows", kernel);
        break;
    case A3_BLAS_FIX_DONE:
        kv("kernel fix", "re-executed with %s=%s; OpenBLAS had picked %s",
           A3_BLAS_ENV_CORETYPE, target ? target : "?", marker);
        if (target && a3_blas_core_tier(kernel) < a3_blas_core_tier(target))
            kv("", "warning: OpenBLAS did not take %s and kept %s", target, kernel);
        break;
    case A3_BLAS_FIX_DISABLED:
        if (target)
            kv("kernel fix", "disabled by %s; would re-execute with %s=%s", A3_BLAS_ENV_NOFIX,
               A3_BLAS_ENV_CORETYPE, target);
        else kv("kernel fix", "disabled by %s (nothing to fix anyway)", A3_BLAS_ENV_NOFIX);
        break;
    case A3_BLAS_FIX_USER:
        kv("kernel fix", "none: %s=%s set by the user", A3_BLAS_ENV_CORETYPE, p->coretype);
        break;
    case A3_BLAS_FIX_STATIC:
        kv("kernel fix", "impossible: OpenBLAS is not a DYNAMIC_ARCH build (%s would be "
                         "better)", target ? target : "?");
        break;
    case A3_BLAS_FIX_UNKNOWN_CORE:
        kv("kernel fix", "none: a3 does not know kernel '%s'", kernel);
        break;
    case A3_BLAS_FIX_REEXEC:
        /* Start-up would have re-executed; still here means execv failed
         * (or a3_blas_startup was not called). */
        kv("kernel fix", "needed (%s=%s) but the re-execution did not happen",
           A3_BLAS_ENV_CORETYPE, target ? target : "?");
        break;
    }
}

int a3_cmd_doctor(int argc, char **argv)
{
    doctor_opts o = {.threads = 0, .seconds = 2.0, .size = 0, .no_bench = 0};
    int rc = parse(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    int status = 0;
    a3_err err = {0};

    printf("a3 doctor %s\n\n", A3_VERSION);

    /* CPU */
    a3_cpu_info cpu;
    a3_cpu_detect(&cpu);
    unsigned f = cpu.flags;
    const char *best = a3_blas_core_for_cpu(f);
    printf("CPU\n");
    kv("model", "%s", cpu.model[0] ? cpu.model : "(no brand string)");
    kv("vendor", "%s", cpu.vendor[0] ? cpu.vendor : "(unknown)");
    char feats[256];
    feature_list(feats, sizeof feats, f, 1);
    kv("features", "%s", feats);
    feature_list(feats, sizeof feats, f, 0);
    kv("missing", "%s", feats);
    kv("OS state", "OSXSAVE %s, YMM (AVX) %s, ZMM+opmask (AVX-512) %s",
       (f & A3_CPU_OSXSAVE) ? "yes" : "no", (f & A3_CPU_OS_AVX) ? "enabled" : "off",
       (f & A3_CPU_OS_AVX512) ? "enabled" : "off");
    kv("best kernel", "%s", best ? best : "generic (no AVX usable)");
    int def_threads = a3_threads_default();
    kv("usable cores", "%d", def_threads);

    /* OpenBLAS */
    const char *kernel = a3_blas_kernel_name();
    char path[4096];
    printf("\nOpenBLAS\n");
    kv("config", "%s", a3_blas_config());
    if (a3_blas_symbol_path("openblas_get_config", path, sizeof path, &err) == A3_OK)
        kv("library", "%s", path);
    else kv("library", "unknown (%s)", err.msg);
    kv("threading", "%s", a3_blas_threading());
    kv("kernel", "%s (%s)", kernel, tier_str(a3_blas_core_tier(kernel)));

    a3_blas_probe probe = {.core = kernel,
                           .config = a3_blas_config(),
                           .cpu = f,
                           .coretype = getenv(A3_BLAS_ENV_CORETYPE),
                           .nofix = getenv(A3_BLAS_ENV_NOFIX),
                           .marker = getenv(A3_BLAS_ENV_MARKER)};
    const char *target = NULL;
    a3_blas_fix fix = a3_blas_fix_plan(&probe, &target);
    print_fix(fix, target, kernel, &probe);
    if (fix == A3_BLAS_FIX_USER && best && a3_blas_core_tier(kernel) >= 0 &&
        a3_blas_core_tier(kernel) < a3_blas_core_tier(best))
        kv("", "note: this CPU can run %s (unset %s to let a3 choose)", best,
           A3_BLAS_ENV_CORETYPE);

    int threads = a3_blas_set_threads(o.threads > 0 ? (int)o.threads : def_threads);
    kv("threads", "%d%s", threads, o.threads > 0 ? " (--threads)" : " (all usable cores)");
    if (threads > def_threads)
        kv("", "warning: more threads than the %d usable cores (oversubscribed)", def_threads);
    kv("matvec", "%s (decoding, on the stored weights)", a3_k_impl());
    kv("prefill", "%s", a3_k_gemm_impl());
    char pfb[40];
    const char *pf = a3_k_prefetch(pfb, sizeof pfb);
    if (!strstr(pf, "(fixed)"))
        kv("prefetch", "auto: the first large decoding calls try none, l1, l2 and keep the fastest");
    else {
        char *sp = strchr(pfb, ' '); /* "none (fixed)": the name */
        if (sp) *sp = '\0';
        kv("prefetch", "%s (fixed by A3_MATVEC_PREFETCH)", pfb);
    }
    kv("thread split", "GEMM %d threads; attention %d workers, OpenBLAS at 1", threads, threads);
    long spin = a3_pool_spin_us();
    if (spin > 0) kv("pool polling", "%ld us before a worker sleeps (A3_POOL_SPIN_US; 0: at once)", spin);
    else kv("pool polling", "none: workers sleep at once (A3_POOL_SPIN_US=0)");

    /* LAPACKE */
    printf("\nLAPACKE\n");
    double lerr = 0;
    if (a3_blas_lapacke_selftest(&lerr, &err) == A3_OK)
        kv("dpotrf", "ok (4x4 Cholesky, max error %g)", lerr);
    else {
        kv("dpotrf", "FAILED: %s", err.msg);
        status = 1;
    }
    if (a3_blas_symbol_path("LAPACKE_dpotrf", path, sizeof path, &err) == A3_OK)
        kv("LAPACKE lib", "%s", path);
    if (a3_blas_symbol_path("dpotrf_", path, sizeof path, &err) == A3_OK)
        kv("LAPACK lib", "%s", path);

    /* sgemm */
    a3_blas_bench r = {0};
    int have = 0;
    if (!o.no_bench) {
        printf("\nsgemm (row-major C = A B, float)\n");
        fflush(stdout);
        if (a3_blas_sgemm_bench(o.seconds, (int)o.size, &r, &err) == A3_OK) {
            have = 1;
            kv("size", "%dx%dx%d%s", r.n, r.n, r.n, o.size ? "" : " (adaptive)");
            kv("rate", "%.1f GFLOP/s (%ld calls in %.2f s, %d threads, %s)", r.gflops, r.calls,
               r.seconds, r.threads, r.kernel);
        } else {
            kv("rate", "FAILED: %s", err.msg);
            status = 1;
        }
    }

    printf("\n");
    if (have) printf("sgemm_gflops=%.1f ", r.gflops);
    else printf("sgemm_gflops=none ");
    printf("kernel=%s threads=%d n=%d fix=%s reexec=%d\n", kernel, threads, have ? r.n : 0,
           a3_blas_fix_str(fix), fix == A3_BLAS_FIX_DONE);
    if (fflush(stdout) != 0) return 1;
    return status;
}
