/* Minimal test harness: one program per module, one function per case.
 *
 *   static void test_thing(void) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-6); }
 *   int main(void) { RUN(test_thing); return test_summary("io"); }
 *
 * A case passes when none of its CHECKs fail; SKIP("why") ends it as skipped
 * (for tests needing ../shared/data). Each program ends with one line
 * "<name>: N passed, N failed, N skipped"; tests/run.sh adds them up. */
#ifndef A3_TEST_H
#define A3_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int t_passed, t_failed, t_skipped, t_case_failed, t_case_skipped;
static const char *t_case;

#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c)) {                                                           \
            fprintf(stderr, "  FAIL %s (%s:%d): %s\n", t_case, __FILE__,      \
                    __LINE__, #c);                                            \
            t_case_failed = 1;                                                \
        }                                                                     \
    } while (0)

#define CHECKF(c, ...)                                                        \
    do {                                                                      \
        if (!(c)) {                                                           \
            fprintf(stderr, "  FAIL %s (%s:%d): %s: ", t_case, __FILE__,      \
                    __LINE__, #c);                                            \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            t_case_failed = 1;                                                \
        }                                                                     \
    } while (0)

/* |a - b| <= tol, printing both values on failure. */
#define CHECK_NEAR(a, b, tol)                                                 \
    do {                                                                      \
        double t_a_ = (double)(a), t_b_ = (double)(b);                        \
        if (!(fabs(t_a_ - t_b_) <= (tol))) {                                  \
            fprintf(stderr, "  FAIL %s (%s:%d): %s = %.9g, %s = %.9g, tol %g\n", \
                    t_case, __FILE__, __LINE__, #a, t_a_, #b, t_b_,           \
                    (double)(tol));                                           \
            t_case_failed = 1;                                                \
        }                                                                     \
    } while (0)

#define SKIP(...)                                                             \
    do {                                                                      \
        fprintf(stderr, "  SKIP %s: ", t_case);                               \
        fprintf(stderr, __VA_ARGS__);                                         \
        fputc('\n', stderr);                                                  \
        t_case_skipped = 1;                                                   \
        return;                                                               \
    } while (0)

#define RUN(fn)                                                               \
    do {                                                                      \
        t_case = #fn;                                                         \
        t_case_failed = t_case_skipped = 0;                                   \
        fn();                                                                 \
        if (t_case_failed) t_failed++;                                        \
        else if (t_case_skipped) t_skipped++;                                 \
        else t_passed++;                                                      \
    } while (0)

static inline int test_summary(const char *name)
{
    printf("%s: %d passed, %d failed, %d skipped\n", name, t_passed, t_failed,
           t_skipped);
    return t_failed ? 1 : 0;
}

/* Path of the shared test data (../shared/data relative to the repo root,
 * or $A3_SHARED_DATA), or NULL when absent. */
static inline const char *test_shared_data(void)
{
    static char buf[4096];
    const char *env = getenv("A3_SHARED_DATA");
    if (env && access(env, R_OK) == 0) return env;
    const char *cands[] = {"../shared/data", "../../shared/data", "../../../shared/data"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (access(cands[i], R_OK) == 0) {
            snprintf(buf, sizeof buf, "%s", cands[i]);
            return buf;
        }
    }
    return NULL;
}

/* A fresh temporary directory for a test (caller removes it). */
static inline char *test_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/a3test.XXXXXX");
    return mkdtemp(buf);
}

/* Remove a test's temporary directory tree. */
static inline void test_rm_rf(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  (could not remove %s)\n", dir);
}

#endif
