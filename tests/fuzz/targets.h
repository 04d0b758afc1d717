/* Fuzz targets: one function per input format a3 reads, taking the bytes
 * of one file and handing them to the library's own loader the way a user's
 * file reaches it (written to a private temporary directory, then opened by
 * path). Each returns the loader's status: A3_OK when the file was taken,
 * an error code when it was refused. A crash, a sanitizer report or a
 * broken invariant (abort with a message on stderr) is a defect.
 *
 * Used twice: by libFuzzer (`make fuzz`, tests/fuzz/fuzz_main.c, one binary
 * per target) and by tests/test_fuzz.c, which replays the committed inputs
 * (tests/fuzz/corpus/<target>/) and the repository's own valid files. */
#ifndef A3_FUZZ_TARGETS_H
#define A3_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

typedef int (*fz_fn)(const uint8_t *data, size_t size);

typedef struct {
    const char *name; /* corpus directory name, `make fuzz` target name */
    fz_fn fn;
    const char *what; /* the format, for messages */
} fz_target;

extern const fz_target fz_targets[];
extern const int fz_n_targets;

/* The target named name, or NULL. */
const fz_target *fz_find(const char *name);

/* Write a valid sidecar for the pred target's own cache to path: 0, or
 * an a3 error code with a message on stderr. */
int fz_pred_seed(const char *path);

/* Remove the temporary directory (also registered with atexit). */
void fz_cleanup(void);

#endif
