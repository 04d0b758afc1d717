/* blas: kernel mapping tables, the start-up re-execution (argv, stdin, exit
 * status, at most once, opt-outs), threads, LAPACKE, the sgemm benchmark,
 * and `a3 doctor` through $A3_BIN.
 *
 * The re-execution is tested on this program itself: run with CHILD_FLAG
 * it acts as a tiny echo program that calls the start-up logic, then prints
 * its run count, environment, argv and stdin. The "old" mode pretends
 * OpenBLAS picked Prescott on an AVX2+FMA CPU every time, i.e. as if
 * OpenBLAS ignored OPENBLAS_CORETYPE, so a missing loop guard would show as
 * more than two runs (the counter is an environment variable, which
 * survives exec). No timing is asserted here; timings belong to benches. */
#define _GNU_SOURCE /* environ, pipe2 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <float.h>
#include <math.h>

#include "a3/blas.h"
#include "a3/gemm_fixed.h"
#include "test.h"

extern char **environ;

#define CHILD_FLAG "--blas-echo-child"
#define RUNS_VAR "A3_TEST_BLAS_RUNS"

/* ---- the echo child ---------------------------------------------------- */

static int child_main(int argc, char **argv)
{
    if (argc < 4) return 120;
    const char *r = getenv(RUNS_VAR);
    int runs = (r ? atoi(r) : 0) + 1;
    char rb[16];
    snprintf(rb, sizeof rb, "%d", runs);
    if (setenv(RUNS_VAR, rb, 1) != 0) return 121;
    if (runs > 5) return 122; /* a loop: stop it here, the parent reports */

    int code = atoi(argv[2]);
    const char *mode = argv[3];
    int startup_rc = 0;
    a3_blas_probe old = {.core = "Prescott",
                         .config = "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Prescott",
                         .cpu = A3_CPU_AVX | A3_CPU_AVX2 | A3_CPU_FMA | A3_CPU_OSXSAVE |
                                A3_CPU_OS_AVX};
    if (!strcmp(mode, "old")) startup_rc = a3_blas_startup_with(argv, &old, NULL, NULL);
    else if (!strcmp(mode, "badexe"))
        startup_rc = a3_blas_startup_with(argv, &old, "/nonexistent/a3-test", NULL);
    else if (!strcmp(mode, "real")) a3_blas_startup(argc, argv);
    else return 123;

    const char *ct = getenv(A3_BLAS_ENV_CORETYPE), *mk = getenv(A3_BLAS_ENV_MARKER);
    printf("runs=%d\nstartup_rc=%d\ncoretype=%s\nmarker=%s\nkernel=%s\nargc=%d\n", runs,
           startup_rc, ct ? ct : "(unset)", mk ? mk : "(unset)", a3_blas_kernel_name(), argc);
    for (int i = 0; i < argc; i++) printf("arg=%zu:%s\n", strlen(argv[i]), argv[i]);
    /* Echo stdin: length line, then the raw bytes. */
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) return 124;
    for (;;) {
        if (len == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) return 124;
            buf = nb, cap *= 2;
        }
        ssize_t n = read(0, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return 125;
        if (n == 0) break;
        len += (size_t)n;
    }
    printf("stdin=%zu\n", len);
    if (fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0) return 126;
    free(buf);
    return code;
}

/* ---- running a child ---------------------------------------------------- */

typedef struct {
    int status; /* exit status, or 128 + signal, or -1 if it could not run */
    char *out;  /* stdout, NUL-terminated (may contain NULs before) */
    size_t len;
} run_out;

static int name_in(const char *entry, const char *const *names)
{
    for (; names && *names; names++) {
        size_t n = strlen(*names);
        if (!strncmp(entry, *names, n) && (entry[n] == '=' || entry[n] == '\0')) return 1;
    }
    return 0;
}

/* Names the environment of every child starts without. */
static const char *const CLEAN[] = {RUNS_VAR, A3_BLAS_ENV_CORETYPE, A3_BLAS_ENV_NOFIX,
                                    A3_BLAS_ENV_MARKER, "OPENBLAS_VERBOSE", NULL};

/* Run exe with argv and environ minus CLEAN plus `set` ("K=V" entries),
 * feeding `in` on stdin and collecting stdout. The envp is built before
 * fork: this process has OpenBLAS threads, so the child only calls
 * async-signal-safe functions. */
static int run(const char *exe, char *const argv[], const char *const *set, const char *in,
               size_t in_len, run_out *r)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    size_t ne = 0, ns = 0;
    while (environ[ne]) ne++;
    while (set && set[ns]) ns++;
    char **envp = calloc(ne + ns + 1, sizeof *envp);
    if (!envp) return -1;
    size_t k = 0;
    for (size_t i = 0; i < ne; i++)
        if (!name_in(environ[i], CLEAN)) envp[k++] = environ[i];
    for (size_t i = 0; i < ns; i++) envp[k++] = (char *)set[i];
    envp[k] = NULL;

    int pin[2], pout[2];
    if (pipe2(pin, O_CLOEXEC) != 0) return free(envp), -1;
    if (pipe2(pout, O_CLOEXEC) != 0) {
        close(pin[0]), close(pin[1]), free(envp);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(pin[0]), close(pin[1]), close(pout[0]), close(pout[1]), free(envp);
        return -1;
    }
    if (pid == 0) {
        if (dup2(pin[0], 0) < 0 || dup2(pout[1], 1) < 0) _exit(127);
        execve(exe, argv, envp);
        _exit(127);
    }
    free(envp);
    close(pin[0]);
    close(pout[1]);
    int wfd = pin[1], rfd = pout[0];
    if (fcntl(wfd, F_SETFL, O_NONBLOCK) != 0) close(wfd), wfd = -1;
    size_t sent = 0, cap = 1 << 16;
    r->out = malloc(cap + 1);
    int ok = r->out != NULL;
    if (in_len == 0 && wfd >= 0) close(wfd), wfd = -1;
    while (ok && rfd >= 0) {
        struct pollfd pf[2] = {{.fd = rfd, .events = POLLIN}, {.fd = wfd, .events = POLLOUT}};
        if (poll(pf, wfd >= 0 ? 2 : 1, 30000) <= 0) {
            ok = 0; /* 30 s without progress: give up */
            break;
        }
        if (wfd >= 0 && (pf[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(wfd, in + sent, in_len - sent);
            if (n > 0) sent += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || sent == in_len)
                close(wfd), wfd = -1; /* EPIPE: the child does not read stdin */
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            if (r->len == cap) {
                char *nb = realloc(r->out, cap * 2 + 1);
                if (!nb) {
                    ok = 0;
                    break;
                }
                r->out = nb, cap *= 2;
            }
            ssize_t n = read(rfd, r->out + r->len, cap - r->len);
            if (n > 0) r->len += (size_t)n;
            else if (n == 0 || errno != EINTR) close(rfd), rfd = -1;
        }
    }
    if (wfd >= 0) close(wfd);
    if (rfd >= 0) close(rfd);
    if (!ok) kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    if (r->out) r->out[r->len] = '\0';
    if (!ok) return -1;
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    return 0;
}

/* Value of "key=" at the start of a line of out, copied into buf. */
static const char *field(const run_out *r, const char *key, char *buf, size_t n)
{
    size_t kl = strlen(key);
    const char *p = r->out;
    while (p && p < r->out + r->len) {
        if (!strncmp(p, key, kl) && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t l = strcspn(v, "\n");
            if (l >= n) l = n - 1;
            memcpy(buf, v, l);
            buf[l] = '\0';
            return buf;
        }
        const char *nl = memchr(p, '\n', (size_t)(r->out + r->len - p));
        p = nl ? nl + 1 : NULL;
    }
    buf[0] = '\0';
    return NULL;
}

static int field_int(const run_out *r, const char *key)
{
    char b[64];
    return field(r, key, b, sizeof b) ? atoi(b) : -1;
}

/* The stdin echo: the bytes after the "stdin=N\n" line. */
static int echoed_stdin_equals(const run_out *r, const char *in, size_t in_len)
{
    const char *p = r->out;
    for (;;) {
        const char *s = strstr(p, "stdin=");
        if (!s) return 0;
        if (s == r->out || s[-1] == '\n') {
            char *end;
            unsigned long long n = strtoull(s + 6, &end, 10);
            if (*end != '\n' || n != in_len) return 0;
            end++;
            return (size_t)(r->out + r->len - end) == in_len && memcmp(end, in, in_len) == 0;
        }
        p = s + 1;
    }
}

/* ---- pure tables --------------------------------------------------------- */

static void test_core_tier_table(void)
{
    static const struct {
        const char *name;
        int tier;
    } T[] = {
        {"Prescott", A3_TIER_SSE},     {"prescott", A3_TIER_SSE},    {"Unknown", A3_TIER_SSE},
        {"Nehalem", A3_TIER_SSE},      {"Core2", A3_TIER_SSE},       {"Barcelona", A3_TIER_SSE},
        {"Sandybridge", A3_TIER_AVX},  {"Excavator", A3_TIER_AVX},   {"Haswell", A3_TIER_AVX2},
        {"ZEN", A3_TIER_AVX2},         {"SkylakeX", A3_TIER_AVX512}, {"skylakex", A3_TIER_AVX512},
        {"Cooperlake", A3_TIER_AVX512BF16}, {"SapphireRapids", A3_TIER_AVX512BF16},
        {"Neoverse", A3_TIER_UNKNOWN}, {"", A3_TIER_UNKNOWN},        {"Haswell2", A3_TIER_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        CHECKF(a3_blas_core_tier(T[i].name) == T[i].tier, "%s -> %d, want %d", T[i].name,
               a3_blas_core_tier(T[i].name), T[i].tier);
    CHECK(a3_blas_core_tier(NULL) == A3_TIER_UNKNOWN);
}

static void test_core_for_cpu_table(void)
{
    const unsigned OS = A3_CPU_OSXSAVE | A3_CPU_OS_AVX, OS5 = OS | A3_CPU_OS_AVX512;
    const unsigned V2 = A3_CPU_AVX | A3_CPU_AVX2 | A3_CPU_FMA;
    const unsigned V512 =
        V2 | A3_CPU_AVX512F | A3_CPU_AVX512BW | A3_CPU_AVX512VL | A3_CPU_AVX512DQ;
    static const char *const NONE = NULL;
    const struct {
        unsigned flags;
        const char *want;
    } T[] = {
        {0, NONE},
        {OS5, NONE},                                   /* OS state but no AVX */
        {A3_CPU_AVX, NONE},                            /* AVX, OS did not enable YMM */
        {A3_CPU_AVX | OS, "Sandybridge"},
        {A3_CPU_AVX | A3_CPU_AVX2 | OS, "Sandybridge"}, /* AVX2 without FMA */
        {A3_CPU_AVX | A3_CPU_FMA | OS, "Sandybridge"},  /* FMA without AVX2 */
        {V2, NONE},                                    /* no OS support at all */
        {V2 | OS, "Haswell"},
        {V2 | OS5, "Haswell"},
        {V512 | OS, "Haswell"},                        /* OS does not save ZMM */
        {V512 | OS5, "SkylakeX"},
        {V512 | A3_CPU_AVX512CD | OS5, "SkylakeX"},
        {V512 | A3_CPU_AVX512BF16 | OS5, "SkylakeX"},  /* Cooperlake not forceable */
        {(V512 & ~A3_CPU_AVX512DQ) | OS5, "Haswell"},  /* Xeon Phi style: no DQ */
        {(V512 & ~A3_CPU_AVX512BW) | OS5, "Haswell"},
        {(V512 & ~A3_CPU_AVX512VL) | OS5, "Haswell"},
        {A3_CPU_AVX512F | A3_CPU_AVX512BW | A3_CPU_AVX512VL | A3_CPU_AVX512DQ | OS5, NONE},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        const char *got = a3_blas_core_for_cpu(T[i].flags);
        CHECKF((got == NULL && T[i].want == NULL) ||
                   (got && T[i].want && !strcmp(got, T[i].want)),
               "row %zu flags 0x%x -> %s, want %s", i, T[i].flags, got ? got : "NULL",
               T[i].want ? T[i].want : "NULL");
    }
}

static void test_fix_plan_table(void)
{
    const unsigned V2 = A3_CPU_AVX | A3_CPU_AVX2 | A3_CPU_FMA | A3_CPU_OSXSAVE | A3_CPU_OS_AVX;
    const unsigned V512 = V2 | A3_CPU_AVX512F | A3_CPU_AVX512BW | A3_CPU_AVX512VL |
                          A3_CPU_AVX512DQ | A3_CPU_OS_AVX512;
    const char *DYN = "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Prescott MAX_THREADS=64";
    const char *STAT = "OpenBLAS 0.3.21 NO_AFFINITY HASWELL MAX_THREADS=64";
    const struct {
        const char *core, *config;
        unsigned cpu;
        const char *coretype, *nofix, *marker;
        a3_blas_fix want;
        const char *target;
    } T[] = {
        {"Prescott", DYN, V512, NULL, NULL, NULL, A3_BLAS_FIX_REEXEC, "SkylakeX"},
        {"Prescott", DYN, V2, NULL, NULL, NULL, A3_BLAS_FIX_REEXEC, "Haswell"},
        {"Sandybridge", DYN, V2, NULL, NULL, NULL, A3_BLAS_FIX_REEXEC, "Haswell"},
        {"Haswell", DYN, V512, NULL, NULL, NULL, A3_BLAS_FIX_REEXEC, "SkylakeX"},
        {"Zen", DYN, V512, NULL, NULL, NULL, A3_BLAS_FIX_REEXEC, "SkylakeX"},
        {"Haswell", DYN, V2, NULL, NULL, NULL, A3_BLAS_FIX_NOT_NEEDED, NULL},
        {"SkylakeX", DYN, V512, NULL, NULL, NULL, A3_BLAS_FIX_NOT_NEEDED, NULL},
        {"Cooperlake", DYN, V512, NULL, NULL, NULL, A3_BLAS_FIX_NOT_NEEDED, NULL},
        {"SkylakeX", DYN, V2, NULL, NULL, NULL, A3_BLAS_FIX_NOT_NEEDED, NULL}, /* never down */
        {"Prescott", DYN, 0, NULL, NULL, NULL, A3_BLAS_FIX_NOT_NEEDED, NULL},
        {"Prescott", DYN, V512, "Prescott", NULL, NULL, A3_BLAS_FIX_USER, NULL},
        {"Prescott", DYN, V512, "", NULL, NULL, A3_BLAS_FIX_REEXEC, "SkylakeX"}, /* empty=unset */
        {"Prescott", DYN, V512, NULL, "1", NULL, A3_BLAS_FIX_DISABLED, "SkylakeX"},
        {"Prescott", DYN, V512, NULL, "yes", NULL, A3_BLAS_FIX_DISABLED, "SkylakeX"},
        {"SkylakeX", DYN, V512, NULL, "1", NULL, A3_BLAS_FIX_DISABLED, NULL},
        {"Prescott", DYN, V512, NULL, "0", NULL, A3_BLAS_FIX_REEXEC, "SkylakeX"},
        {"Prescott", DYN, V512, NULL, "", NULL, A3_BLAS_FIX_REEXEC, "SkylakeX"},
        {"Prescott", DYN, V512, "Prescott", "1", NULL, A3_BLAS_FIX_DISABLED, "SkylakeX"},
        /* The re-executed run: marker set, never again, even if OpenBLAS
         * ignored the variable. */
        {"SkylakeX", DYN, V512, "SkylakeX", NULL, "Prescott", A3_BLAS_FIX_DONE, "SkylakeX"},
        {"Prescott", DYN, V512, "SkylakeX", NULL, "Prescott", A3_BLAS_FIX_DONE, "SkylakeX"},
        {"Prescott", DYN, V512, NULL, NULL, "Prescott", A3_BLAS_FIX_DONE, NULL},
        {"Prescott", STAT, V512, NULL, NULL, NULL, A3_BLAS_FIX_STATIC, "SkylakeX"},
        {"Prescott", NULL, V512, NULL, NULL, NULL, A3_BLAS_FIX_STATIC, "SkylakeX"},
        {"Neoverse", DYN, V512, NULL, NULL, NULL, A3_BLAS_FIX_UNKNOWN_CORE, "SkylakeX"},
        {NULL, DYN, V512, NULL, NULL, NULL, A3_BLAS_FIX_UNKNOWN_CORE, "SkylakeX"},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        a3_blas_probe p = {T[i].core, T[i].config, T[i].cpu, T[i].coretype, T[i].nofix,
                           T[i].marker};
        const char *target = "sentinel";
        a3_blas_fix got = a3_blas_fix_plan(&p, &target);
        CHECKF(got == T[i].want, "row %zu: %s, want %s", i, a3_blas_fix_str(got),
               a3_blas_fix_str(T[i].want));
        CHECKF((!target && !T[i].target) || (target && T[i].target && !strcmp(target, T[i].target)),
               "row %zu: target %s, want %s", i, target ? target : "NULL",
               T[i].target ? T[i].target : "NULL");
        CHECK(a3_blas_fix_plan(&p, NULL) == got); /* target may be NULL */
        CHECK(strcmp(a3_blas_fix_str(got), "?") != 0);
    }
}

/* ---- re-execution ---------------------------------------------------------- */

static char *make_input(size_t n)
{
    char *in = malloc(n ? n : 1);
    if (!in) return NULL;
    for (size_t i = 0; i < n; i++) in[i] = (char)((i * 31 + 7) & 0xff); /* NULs, newlines */
    return in;
}

/* Run this program as the echo child with payload args, check argv and stdin
 * came through, and return the run for further checks (caller frees out). */
static int echo_run(const char *mode, int code, const char *const *set, const char *in,
                    size_t in_len, run_out *r)
{
    char codes[16];
    snprintf(codes, sizeof codes, "%d", code);
    char *argv[] = {"blas-echo", CHILD_FLAG, codes, (char *)mode, "a b", "", "  two  spaces ",
                    "tab\there", "-n", "\xc3\xbcnicode", "--threads", "2", "new\nline", NULL};
    int argc = (int)(sizeof argv / sizeof argv[0]) - 1;
    if (run("/proc/self/exe", argv, set, in, in_len, r) != 0) return -1;
    CHECKF(r->status == code, "exit status %d, want %d", r->status, code);
    CHECKF(field_int(r, "argc") == argc, "argc %d, want %d", field_int(r, "argc"), argc);
    /* Every argument, in order, byte for byte (lengths catch "" and spaces). */
    const char *p = r->out;
    for (int i = 0; i < argc; i++) {
        char want[128];
        int w = snprintf(want, sizeof want, "arg=%zu:%s\n", strlen(argv[i]), argv[i]);
        const char *q = p ? strstr(p, want) : NULL;
        CHECKF(q != NULL && w > 0, "argv[%d] '%s' not passed intact", i, argv[i]);
        p = q ? q + w : p;
    }
    CHECKF(echoed_stdin_equals(r, in, in_len), "stdin (%zu bytes) not echoed intact", in_len);
    return 0;
}

static void test_reexec_keeps_argv_stdin_exit(void)
{
    const size_t n = 300000; /* more than a pipe buffer */
    char *in = make_input(n);
    CHECK(in != NULL);
    if (!in) return;
    const int codes[] = {0, 3, 42, 255};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        run_out r;
        CHECK(echo_run("old", codes[i], NULL, in, n, &r) == 0);
        char b[64];
        CHECKF(field_int(&r, "runs") == 2, "runs=%d, want 2 (one re-exec)", field_int(&r, "runs"));
        CHECKF(!strcmp(field(&r, "coretype", b, sizeof b) ? b : "", "Haswell"),
               "OPENBLAS_CORETYPE=%s", b);
        CHECKF(!strcmp(field(&r, "marker", b, sizeof b) ? b : "", "Prescott"), "marker=%s", b);
        /* The re-executed child loaded OpenBLAS with the variable set. */
        if (strstr(a3_blas_config(), "DYNAMIC_ARCH"))
            CHECKF(!strcmp(field(&r, "kernel", b, sizeof b) ? b : "", "Haswell"), "kernel=%s", b);
        free(r.out);
    }
    /* Empty stdin too. */
    run_out r;
    CHECK(echo_run("old", 9, NULL, "", 0, &r) == 0);
    CHECK(field_int(&r, "runs") == 2);
    free(r.out);
    free(in);
}

static void test_reexec_at_most_once(void)
{
    /* The fake probe says Prescott on every run, like an OpenBLAS that
     * ignores OPENBLAS_CORETYPE: only the marker stops a second exec. */
    run_out r;
    CHECK(echo_run("old", 5, NULL, "x", 1, &r) == 0);
    CHECKF(field_int(&r, "runs") == 2, "runs=%d", field_int(&r, "runs"));
    free(r.out);
    /* A marker inherited from a parent a3 means no exec at all. */
    const char *set[] = {A3_BLAS_ENV_MARKER "=Prescott", NULL};
    CHECK(echo_run("old", 5, set, "x", 1, &r) == 0);
    CHECKF(field_int(&r, "runs") == 1, "runs=%d", field_int(&r, "runs"));
    free(r.out);
}

static void test_no_fix_env(void)
{
    run_out r;
    char b[64];
    const char *off[] = {A3_BLAS_ENV_NOFIX "=1", NULL};
    CHECK(echo_run("old", 4, off, "abc", 3, &r) == 0);
    CHECKF(field_int(&r, "runs") == 1, "runs=%d, want 1", field_int(&r, "runs"));
    CHECK(!strcmp(field(&r, "coretype", b, sizeof b) ? b : "", "(unset)"));
    CHECK(!strcmp(field(&r, "marker", b, sizeof b) ? b : "", "(unset)"));
    free(r.out);
    /* "0" does not disable. */
    const char *zero[] = {A3_BLAS_ENV_NOFIX "=0", NULL};
    CHECK(echo_run("old", 4, zero, "abc", 3, &r) == 0);
    CHECKF(field_int(&r, "runs") == 2, "runs=%d, want 2", field_int(&r, "runs"));
    free(r.out);
}

static void test_user_coretype(void)
{
    run_out r;
    char b[64];
    const char *set[] = {A3_BLAS_ENV_CORETYPE "=Prescott", NULL};
    CHECK(echo_run("old", 6, set, "abc", 3, &r) == 0);
    CHECKF(field_int(&r, "runs") == 1, "runs=%d, want 1", field_int(&r, "runs"));
    CHECK(!strcmp(field(&r, "coretype", b, sizeof b) ? b : "", "Prescott"));
    CHECK(!strcmp(field(&r, "marker", b, sizeof b) ? b : "", "(unset)"));
    CHECK(!strcmp(field(&r, "kernel", b, sizeof b) ? b : "", "Prescott"));
    free(r.out);
}

static void test_exec_failure_restores_env(void)
{
    run_out r;
    char b[64];
    CHECK(echo_run("badexe", 8, NULL, "abc", 3, &r) == 0);
    CHECKF(field_int(&r, "runs") == 1, "runs=%d", field_int(&r, "runs"));
    CHECKF(field_int(&r, "startup_rc") == A3_EIO, "startup_rc=%d", field_int(&r, "startup_rc"));
    CHECK(!strcmp(field(&r, "coretype", b, sizeof b) ? b : "", "(unset)"));
    CHECK(!strcmp(field(&r, "marker", b, sizeof b) ? b : "", "(unset)"));
    free(r.out);
}

static void test_real_startup(void)
{
    /* Whatever this machine needs: at most one exec, and if one happened
     * it asked for the core this CPU maps to. */
    run_out r;
    char b[64];
    CHECK(echo_run("real", 11, NULL, "hello\n", 6, &r) == 0);
    int runs = field_int(&r, "runs");
    CHECKF(runs == 1 || runs == 2, "runs=%d", runs);
    a3_cpu_info ci;
    a3_cpu_detect(&ci);
    const char *best = a3_blas_core_for_cpu(ci.flags);
    if (runs == 2) {
        CHECK(best && !strcmp(field(&r, "coretype", b, sizeof b) ? b : "", best));
    } else {
        const char *k = field(&r, "kernel", b, sizeof b);
        CHECKF(!best || (k && a3_blas_core_tier(k) >= a3_blas_core_tier(best)) ||
                   a3_blas_core_tier(k) == A3_TIER_UNKNOWN,
               "no re-exec but kernel %s is below %s", k ? k : "?", best ? best : "-");
    }
    free(r.out);
}

/* ---- a3 binary ------------------------------------------------------------ */

static int all_lines_fit(const run_out *r, int width)
{
    int col = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->out[i] == '\n') col = 0;
        else if (++col > width) return 0;
    }
    return 1;
}

static void test_a3_binary(void)
{
    const char *bin = getenv("A3_BIN");
    if (!bin || access(bin, X_OK) != 0) SKIP("A3_BIN not set (run via make check)");
    run_out r;
    char b[128];

    char *ver[] = {"a3", "--version", NULL};
    CHECK(run(bin, ver, NULL, "ignored", 7, &r) == 0);
    CHECK(r.status == 0 && r.out && !strncmp(r.out, "a3 ", 3));
    free(r.out);

    char *bogus[] = {"a3", "no-such-command", "", "x y", NULL};
    CHECK(run(bin, bogus, NULL, NULL, 0, &r) == 0);
    CHECKF(r.status == 2, "status %d", r.status);
    free(r.out);

    /* Plain run: the kernel in use is at least what the CPU maps to. */
    char *doc[] = {"a3", "doctor", "--no-bench", NULL};
    CHECK(run(bin, doc, NULL, NULL, 0, &r) == 0);
    CHECKF(r.status == 0, "doctor status %d", r.status);
    CHECK(all_lines_fit(&r, 80));
    a3_cpu_info ci;
    a3_cpu_detect(&ci);
    const char *best = a3_blas_core_for_cpu(ci.flags);
    const char *k = field(&r, "sgemm_gflops=none kernel", b, sizeof b);
    CHECK(k != NULL);
    if (k) {
        b[strcspn(b, " ")] = '\0';
        CHECKF(!best || a3_blas_core_tier(b) >= a3_blas_core_tier(best) ||
                   a3_blas_core_tier(b) == A3_TIER_UNKNOWN,
               "doctor reports kernel %s, CPU can run %s", b, best ? best : "-");
    }
    CHECK(strstr(r.out, "LAPACKE") && strstr(r.out, "ok (4x4"));
    free(r.out);

    const char *off[] = {A3_BLAS_ENV_NOFIX "=1", NULL};
    CHECK(run(bin, doc, off, NULL, 0, &r) == 0);
    CHECK(r.status == 0 && strstr(r.out, "fix=disabled reexec=0"));
    free(r.out);

    const char *user[] = {A3_BLAS_ENV_CORETYPE "=Prescott", NULL};
    CHECK(run(bin, doc, user, NULL, 0, &r) == 0);
    CHECK(r.status == 0 && strstr(r.out, "kernel=Prescott threads=") &&
          strstr(r.out, "fix=user-coretype reexec=0"));
    free(r.out);

    char *doc1[] = {"a3", "doctor", "--no-bench", "--threads", "1", NULL};
    CHECK(run(bin, doc1, NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 0 && strstr(r.out, " threads=1 "));
    free(r.out);

    char *bad[] = {"a3", "doctor", "--threads", "0", NULL};
    CHECK(run(bin, bad, NULL, NULL, 0, &r) == 0);
    CHECKF(r.status == 2, "status %d", r.status);
    free(r.out);

    char *help[] = {"a3", "doctor", "--help", NULL};
    CHECK(run(bin, help, NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 0 && strstr(r.out, "usage: a3 doctor") && all_lines_fit(&r, 80));
    free(r.out);

    /* A short real measurement: only that it runs and is grep-able. */
    char *bench[] = {"a3", "doctor", "--seconds", "0.1", "--size", "128", NULL};
    CHECK(run(bin, bench, NULL, NULL, 0, &r) == 0);
    CHECK(r.status == 0 && strstr(r.out, "\nsgemm_gflops=") && strstr(r.out, " n=128 "));
    free(r.out);
}

/* ---- threads, LAPACKE, sgemm, info ---------------------------------------- */

static void test_threads(void)
{
    int d = a3_threads_default();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK(d >= 1);
    CHECK(online < 1 || d <= online);
    CHECK(a3_threads_resolve(0) == d);
    CHECK(a3_threads_resolve(-3) == d);
    CHECK(a3_threads_resolve(3) == 3);
    CHECK(a3_threads_resolve(100000) == 256);

    if (strcmp(a3_blas_threading(), "sequential") == 0) SKIP("sequential OpenBLAS build");
    int before = a3_blas_get_threads();
    CHECK(a3_blas_set_threads(1) == 1);
    CHECK(a3_blas_get_threads() == 1);
    CHECK(a3_blas_set_threads(2) == 2);
    int prev = a3_blas_single_begin();
    CHECK(prev == 2);
    CHECK(a3_blas_get_threads() == 1);
    a3_blas_single_end(prev);
    CHECK(a3_blas_get_threads() == 2);
    CHECK(a3_blas_set_threads(0) == (d < 64 ? d : a3_blas_get_threads()));
    a3_blas_set_threads(before);
}

/* ---- fixed-tile products ------------------------------------------------ */

static float frand(uint64_t *s) { return (float)((a3_splitmix64(s) >> 40) / (double)(1 << 24)) - 0.5f; }

/* Against float64 loops, within the float32 (float64) accumulation bound
 * K eps sum |terms| of a K-term dot product; and bitwise the same for 1, 2
 * and 3 threads, on shapes that span several tiles with ragged edges. */
static void test_sgemm_fixed(void)
{
    enum { M = A3_GEMM_FIXED_ROWS * 2 + 76, N = A3_GEMM_FIXED_COLS + 276, K = 70 };
    uint64_t st = 7;
    float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K);
    float *y0 = malloc(sizeof(float) * M * N), *y[3];
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = frand(&st);
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = frand(&st);
    for (size_t i = 0; i < (size_t)M * N; i++) y0[i] = frand(&st);
    for (int acc = 0; acc < 2; acc++) {
        for (int t = 0; t < 3; t++) {
            y[t] = malloc(sizeof(float) * M * N);
            memcpy(y[t], y0, sizeof(float) * M * N);
            a3_sgemm_nt_fixed(M, N, K, x, w, acc, y[t], t + 1);
        }
        CHECK(memcmp(y[0], y[1], sizeof(float) * M * N) == 0);
        CHECK(memcmp(y[0], y[2], sizeof(float) * M * N) == 0);
        size_t bad = 0;
        for (size_t r = 0; r < M; r++)
            for (size_t o = 0; o < N; o++) {
                double ref = acc ? y0[r * N + o] : 0, mag = fabs(ref);
                for (int k = 0; k < K; k++) {
                    double p = (double)x[r * K + k] * w[o * K + k];
                    ref += p, mag += fabs(p);
                }
                if (fabs(y[0][r * N + o] - ref) > (K + 1) * FLT_EPSILON * mag) bad++;
            }
        CHECKF(bad == 0, "acc %d: %zu elements outside the float32 bound", acc, bad);
        for (int t = 0; t < 3; t++) free(y[t]);
    }
    free(x), free(w), free(y0);
}

static void test_dgram_fixed(void)
{
    enum { NB = 3, N = A3_GRAM_FIXED_COLS + 44, R = 40, LD = 1000 };
    const int off[NB] = {0, 310, 650};
    uint64_t st = 11;
    double *X = malloc(sizeof(double) * R * LD), *G[3];
    for (size_t i = 0; i < (size_t)R * LD; i++) X[i] = frand(&st);
    for (int t = 0; t < 3; t++) {
        G[t] = malloc(sizeof(double) * NB * N * N);
        for (size_t i = 0; i < (size_t)NB * N * N; i++) G[t][i] = 0.25; /* += must keep it */
        a3_dgram_fixed(NB, N, R, X, LD, off, G[t], t + 1);
    }
    CHECK(memcmp(G[0], G[1], sizeof(double) * NB * N * N) == 0);
    CHECK(memcmp(G[0], G[2], sizeof(double) * NB * N * N) == 0);
    size_t bad = 0, lower = 0;
    for (int k = 0; k < NB; k++)
        for (int a = 0; a < N; a++)
            for (int b = 0; b < N; b++) {
                double got = G[0][((size_t)k * N + a) * N + b];
                if (b < a) {
                    lower += got != 0.25;
                    continue;
                }
                double ref = 0.25, mag = 0.25;
                for (int r = 0; r < R; r++) {
                    double p = X[(size_t)r * LD + off[k] + a] * X[(size_t)r * LD + off[k] + b];
                    ref += p, mag += fabs(p);
                }
                if (fabs(got - ref) > (R + 1) * DBL_EPSILON * mag) bad++;
            }
    CHECKF(bad == 0, "%zu upper elements outside the float64 bound", bad);
    CHECKF(lower == 0, "%zu lower-triangle elements touched", lower);
    for (int t = 0; t < 3; t++) free(G[t]);
    free(X);
}

static void test_lapacke(void)
{
    double e = -1;
    a3_err err = {0};
    CHECKF(a3_blas_lapacke_selftest(&e, &err) == A3_OK, "%s", err.msg);
    CHECK(e == 0.0);
    CHECK(a3_blas_lapacke_selftest(NULL, NULL) == A3_OK);
}

static void test_sgemm_bench(void)
{
    a3_blas_bench r;
    a3_err err = {0};
    CHECKF(a3_blas_sgemm_bench(0.02, 96, &r, &err) == A3_OK, "%s", err.msg);
    CHECK(r.n == 96 && r.calls >= 1 && r.seconds >= 0.02 && r.gflops > 0);
    CHECK(r.kernel && !strcmp(r.kernel, a3_blas_kernel_name()));
    CHECK(r.threads == a3_blas_get_threads());
    CHECK(a3_blas_sgemm_bench(0, 96, &r, &err) == A3_EINVAL && err.msg[0]);
    CHECK(a3_blas_sgemm_bench(-1, 96, &r, NULL) == A3_EINVAL);
    CHECK(a3_blas_sgemm_bench(1, 20000, &r, NULL) == A3_EINVAL);
    CHECK(a3_blas_sgemm_gflops(0.02, 64) > 0);
    CHECK(a3_blas_sgemm_gflops(0, 64) < 0);
    /* Odd size: the correctness check covers edge tiles. */
    CHECK(a3_blas_sgemm_bench(0.01, 37, &r, NULL) == A3_OK && r.n == 37);
}

static void test_info(void)
{
    const char *k = a3_blas_kernel_name(), *c = a3_blas_config();
    CHECK(k && k[0] && c && strstr(c, "OpenBLAS"));
    CHECK(a3_blas_threading() && strcmp(a3_blas_threading(), "unknown") != 0);
    char path[4096];
    a3_err err = {0};
    CHECKF(a3_blas_symbol_path("openblas_get_config", path, sizeof path, &err) == A3_OK, "%s",
           err.msg);
    CHECKF(strstr(path, "openblas") != NULL, "%s", path);
    CHECK(a3_blas_symbol_path("no_such_symbol_a3", path, sizeof path, &err) == A3_EUNSUPPORTED);
    CHECK(a3_blas_symbol_path("openblas_get_config", path, 4, NULL) == A3_EINVAL);

    a3_cpu_info ci;
    a3_cpu_detect(&ci);
    unsigned f = ci.flags;
    CHECK(!(f & A3_CPU_OS_AVX512) || (f & A3_CPU_OS_AVX));
    CHECK(!(f & A3_CPU_OS_AVX) || (f & A3_CPU_OSXSAVE));
#if defined(__x86_64__)
    CHECK(ci.vendor[0] != '\0');
    CHECK(strlen(ci.model) < sizeof ci.model);
#endif
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], CHILD_FLAG)) return child_main(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    RUN(test_core_tier_table);
    RUN(test_core_for_cpu_table);
    RUN(test_fix_plan_table);
    RUN(test_reexec_keeps_argv_stdin_exit);
    RUN(test_reexec_at_most_once);
    RUN(test_no_fix_env);
    RUN(test_user_coretype);
    RUN(test_exec_failure_restores_env);
    RUN(test_real_startup);
    RUN(test_threads);
    RUN(test_sgemm_fixed);
    RUN(test_dgram_fixed);
    RUN(test_lapacke);
    RUN(test_sgemm_bench);
    RUN(test_info);
    RUN(test_a3_binary);
    return test_summary("blas");
}
