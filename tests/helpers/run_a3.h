/* run_a3: run the a3 binary ($A3_BIN, set by `make check`) as a user would,
 * capturing its output, for the tests of the command line. */
#ifndef A3_TEST_RUN_A3_H
#define A3_TEST_RUN_A3_H

#include <stddef.h>

/* $A3_BIN when it names an executable, else NULL (callers SKIP). */
const char *run_a3_bin(void);

/* Run `$A3_BIN ARGS` through the shell with stdout to OUT and stderr to
 * ERR (either may be NULL: /dev/null). Returns the exit status, 128+N for
 * a death by signal N, or -1 when the shell could not be run. */
int run_a3(const char *args, const char *out, const char *err);

/* Start `$A3_BIN argv[0] argv[1] ...` (argv NULL-terminated) in the
 * background with stdout and stderr to ERR (or /dev/null) and stdin from
 * /dev/null. The child waits until run_a3_go releases it, so the caller can
 * prepare files that depend on its pid. Returns the pid, or -1. */
int run_a3_spawn(const char *const *argv, const char *err, int *go_fd);
/* Release a spawned child (closes go_fd). */
void run_a3_go(int go_fd);
/* Wait for pid: its exit status, 128+N for a death by signal N, or -1. */
int run_a3_wait(int pid);
/* Poll every millisecond until path exists (1) or timeout_s passes, or
 * the process pid is gone (0). */
int run_a3_wait_for_file(const char *path, double timeout_s, int pid);

/* The whole content of PATH, NUL-terminated (caller frees), or NULL. */
char *run_a3_slurp(const char *path, size_t *len);

/* True when PATH exists and contains NEEDLE. */
int run_a3_file_has(const char *path, const char *needle);

#endif
