/* blas: OpenBLAS kernel selection, thread control and a sgemm benchmark.
 *
 * Debian's dynamic-arch OpenBLAS falls back to a generic kernel (Prescott)
 * on CPUs it does not recognise, which costs 3-5x in SGEMM. a3_blas_startup()
 * runs first thing in main(): when the core OpenBLAS picked is older than
 * what the CPU and OS support and the user has not set OPENBLAS_CORETYPE, it
 * re-executes the program once (execv of /proc/self/exe, same argv, same
 * file descriptors) with OPENBLAS_CORETYPE set, because OpenBLAS reads the
 * variable only when the library loads. The marker variable A3_BLAS_REEXEC
 * (value: the core OpenBLAS had picked) guards it so it can never loop;
 * A3_NO_BLAS_FIX=1 disables it. Stdin, argv and the exit status are those of
 * the original invocation because exec keeps the process, its descriptors
 * and its parent; nothing is read or written before the exec.
 *
 * Threads: GEMMs run on OpenBLAS's pool; attention runs its own workers with
 * OpenBLAS set to one thread meanwhile (a3_blas_single_begin/end), so the two
 * phases each use at most `total` threads and never multiply. Commands take
 * `--threads N`; 0 or absent means a3_threads_default().
 *
 * Except where noted, functions follow the util.h error convention. */
#ifndef A3_BLAS_H
#define A3_BLAS_H

#include <stddef.h>

#include "a3/util.h"

/* ---- start-up kernel fix ---------------------------------------------- */

/* Environment variables involved. */
#define A3_BLAS_ENV_CORETYPE "OPENBLAS_CORETYPE"
#define A3_BLAS_ENV_NOFIX "A3_NO_BLAS_FIX"
#define A3_BLAS_ENV_MARKER "A3_BLAS_REEXEC"

/* May not return (execv). Returns normally when nothing needs doing or the
 * re-exec failed (the program then runs with the kernel it has, and the
 * environment is as it was). Prints nothing. */
void a3_blas_startup(int argc, char **argv);

/* ---- CPU features -------------------------------------------------------- */

enum {
    A3_CPU_AVX = 1u << 0,
    A3_CPU_AVX2 = 1u << 1,
    A3_CPU_FMA = 1u << 2,
    A3_CPU_AVX512F = 1u << 3,
    A3_CPU_AVX512BW = 1u << 4,
    A3_CPU_AVX512VL = 1u << 5,
    A3_CPU_AVX512DQ = 1u << 6,
    A3_CPU_AVX512CD = 1u << 7,
    A3_CPU_AVX512BF16 = 1u << 8,
    A3_CPU_OSXSAVE = 1u << 9,  /* CPUID.1:ECX.OSXSAVE: xgetbv usable */
    A3_CPU_OS_AVX = 1u << 10,  /* XCR0 has SSE+YMM state enabled */
    A3_CPU_OS_AVX512 = 1u << 11 /* XCR0 also has opmask+ZMM state enabled */
};

typedef struct {
    unsigned flags;  /* A3_CPU_* */
    char vendor[13]; /* "GenuineIntel", "AuthenticAMD", "" if unknown */
    char model[49];  /* brand string, trimmed; "" if the CPU has none */
} a3_cpu_info;

/* Fill *out from cpuid/xgetbv (all zero on non-x86 builds). Cannot fail. */
void a3_cpu_detect(a3_cpu_info *out);

/* ---- kernel mapping (pure functions) ----------------------------------- */

/* Kernel tiers. A core name's tier says which instructions its SGEMM kernels
 * use; a3 only ever moves OpenBLAS up a tier. */
enum {
    A3_TIER_UNKNOWN = -1, /* a name this table does not know: leave it */
    A3_TIER_SSE = 0,      /* Prescott, Core2, Nehalem, Barcelona, Unknown ... */
    A3_TIER_AVX = 1,      /* Sandybridge, Bulldozer .. Excavator */
    A3_TIER_AVX2 = 2,     /* Haswell, Zen */
    A3_TIER_AVX512 = 3,   /* SkylakeX */
    A3_TIER_AVX512BF16 = 4 /* Cooperlake, SapphireRapids (same SGEMM) */
};

/* Tier of an OpenBLAS core name (case-insensitive); A3_TIER_UNKNOWN for NULL
 * or names not in the table. */
int a3_blas_core_tier(const char *core);

/* Best OPENBLAS_CORETYPE value for A3_CPU_* flags, or NULL when nothing
 * better than the generic kernel applies: "SkylakeX" for AVX-512
 * F+BW+VL+DQ with OS ZMM state, "Haswell" for AVX2+FMA with OS YMM state,
 * "Sandybridge" for AVX with OS YMM state. avx512_bf16 still maps to
 * SkylakeX: OpenBLAS 0.3.21 cannot force Cooperlake ("Core not found") and
 * Cooperlake's SGEMM kernels are SkylakeX's. */
const char *a3_blas_core_for_cpu(unsigned flags);

/* What start-up does about the kernel. */
typedef enum {
    A3_BLAS_FIX_NOT_NEEDED = 0, /* OpenBLAS's choice is as good as the CPU */
    A3_BLAS_FIX_REEXEC,         /* re-execute with OPENBLAS_CORETYPE=target */
    A3_BLAS_FIX_DONE,           /* marker set: this is the re-executed run */
    A3_BLAS_FIX_DISABLED,       /* A3_NO_BLAS_FIX set (target: what it would use) */
    A3_BLAS_FIX_USER,           /* OPENBLAS_CORETYPE set by the user */
    A3_BLAS_FIX_STATIC,         /* build not DYNAMIC_ARCH: cannot switch */
    A3_BLAS_FIX_UNKNOWN_CORE    /* core name not in the tier table: leave it */
} a3_blas_fix;

/* Inputs of the decision; everything the start-up reads, so the decision is
 * a pure function (tests pass made-up values). */
typedef struct {
    const char *core;     /* openblas_get_corename() */
    const char *config;   /* openblas_get_config() */
    unsigned cpu;         /* A3_CPU_* flags */
    const char *coretype; /* getenv(OPENBLAS_CORETYPE), NULL if unset */
    const char *nofix;    /* getenv(A3_NO_BLAS_FIX) */
    const char *marker;   /* getenv(A3_BLAS_REEXEC) */
} a3_blas_probe;

/* Decide. *target (may be NULL) receives the core a fix uses or would use,
 * NULL when none applies. A3_NO_BLAS_FIX counts as set unless empty or "0". */
a3_blas_fix a3_blas_fix_plan(const a3_blas_probe *p, const char **target);

/* One-line description of a decision, e.g. "not needed". */
const char *a3_blas_fix_str(a3_blas_fix f);

/* The start-up logic with the probe given by the caller (the environment
 * fields of *p are ignored and read with getenv) and the program to execute
 * (NULL: /proc/self/exe). a3_blas_startup() is this with the real probe.
 * Returns 0 when no re-exec was needed or allowed, A3_EIO when setenv or
 * execv failed, A3_ENOMEM when the environment could not be saved; the
 * environment is then as it was. Does not return when the exec succeeds. */
int a3_blas_startup_with(char **argv, const a3_blas_probe *p, const char *exe,
                         a3_err *err);

/* ---- run-time information ---------------------------------------------- */

/* Name of the kernel OpenBLAS uses ("SkylakeX", ...); never NULL.
 * Benchmarks print it next to their figures. */
const char *a3_blas_kernel_name(void);
/* openblas_get_config(), e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ..."; never NULL. */
const char *a3_blas_config(void);
/* OpenBLAS's threading model: "pthreads", "OpenMP" or "sequential". */
const char *a3_blas_threading(void);
/* File name (symlinks resolved) of the shared object that defines the
 * global symbol `symbol` ("openblas_get_config", "dpotrf_"), into buf.
 * A3_EUNSUPPORTED when it cannot be told (not found, static link). */
int a3_blas_symbol_path(const char *symbol, char *buf, size_t n, a3_err *err);

/* Prove LAPACKE links and works: LAPACKE_dpotrf on a fixed 4x4 SPD matrix,
 * checked against its known Cholesky factor. *max_err (may be NULL)
 * receives the largest deviation. A3_EUNSUPPORTED when the call fails or
 * the factor is wrong. */
int a3_blas_lapacke_selftest(double *max_err, a3_err *err);

/* ---- threads ------------------------------------------------------------ */

/* Cores this process may use: online CPUs in its affinity mask, capped by a
 * cgroup CPU quota (v2 cpu.max or v1 cfs quota), at least 1. */
int a3_threads_default(void);
/* A --threads value (0 or negative: default) clamped to [1, 256]. */
int a3_threads_resolve(long requested);

/* Set OpenBLAS's thread count (n <= 0: a3_threads_default()). Returns the
 * count OpenBLAS reports afterwards (it caps at its MAX_THREADS). */
int a3_blas_set_threads(int n);
int a3_blas_get_threads(void);

/* Bracket a region where the caller's own worker threads call BLAS: sets
 * OpenBLAS to one thread and returns the previous count for _end. */
int a3_blas_single_begin(void);
void a3_blas_single_end(int previous);

/* ---- sgemm benchmark ---------------------------------------------------- */

typedef struct {
    int n;           /* matrix size used (n x n x n) */
    int threads;     /* OpenBLAS threads during the run */
    long calls;      /* timed calls */
    double seconds;  /* timed wall-clock seconds */
    double gflops;   /* 2 n^3 calls / seconds / 1e9 */
    const char *kernel;
} a3_blas_bench;

/* Time row-major C = A B on n x n floats for about `seconds` (at least one
 * call) after one untimed warm-up call, on the current OpenBLAS threads.
 * n <= 0 picks adaptively: 2048, halved (not below 256) while one call
 * would take more than a quarter of `seconds`. A3_EINVAL for seconds <= 0
 * or n > 16384, A3_ENOMEM when the matrices cannot be allocated. */
int a3_blas_sgemm_bench(double seconds, int n, a3_blas_bench *out, a3_err *err);

/* Convenience: measured GFLOP/s, or a negative value on error. */
double a3_blas_sgemm_gflops(double seconds, int n);

#endif
