/* util: errors, checked size arithmetic, atomic file output, progress, time.
 *
 * Error convention (every library module): functions return 0 (A3_OK) or a
 * negative A3_E* code, and on failure fill the caller's a3_err with one line
 * "<file>: <what>: <detail>". Library code never prints and never exits; the
 * CLI and the TUI decide how to show errors. Passing err == NULL is allowed
 * (the message is dropped). */
#ifndef A3_UTIL_H
#define A3_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum {
    A3_OK = 0,
    A3_EIO = -1,          /* open/read/write/mmap failed */
    A3_EFORMAT = -2,      /* a file's content is malformed or hostile */
    A3_ENOMEM = -3,       /* allocation failed */
    A3_EUNSUPPORTED = -4, /* well-formed, but a model/feature a3 does not do */
    A3_EINVAL = -5,       /* bad argument or option value from the user */
    A3_ECANCELED = -6,    /* a progress callback asked to stop */
    A3_EMISMATCH = -7     /* two inputs that must agree do not (fingerprints) */
};

typedef struct {
    int code;      /* last error code, 0 if none */
    char msg[512]; /* "<file>: <what>: <detail>", no trailing newline */
} a3_err;

/* Format msg into err (if non-NULL) and return code, so callers can write
 * `return a3_err_set(err, A3_EFORMAT, "%s: bad header", path);`. */
int a3_err_set(a3_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Exit status a CLI should use for an error code (see README: exit codes). */
int a3_err_exit_status(int code);

/* Untrusted text (names and values read from files, user arguments) made
 * safe for a one-line message: control characters (C0, DEL, C1 such as an
 * 8-bit CSI) and bytes that are not valid UTF-8 become C-style escapes
 * ("\n", "\x1b"), so no file can move the cursor, recolour the terminal
 * or break the line. Cut to fit n bytes (n >= 8), ending in "..." when
 * cut. Writes into buf and returns it. */
char *a3_escape(const char *s, char *buf, size_t n);
/* a3_escape into a buffer that lives to the end of the enclosing full
 * expression: a3_err_set(err, code, "%s: key %s", path, A3_ESC(key)). */
#define A3_ESC(s) a3_escape((s), (char[128]){0}, 128)

/* Index of the first NaN or infinite element of x[0..n), or -1 when all
 * are finite. For checks of numbers read from files. */
int64_t a3_find_nonfinite(const float *x, size_t n);

/* Checked arithmetic: return 0 and store the result, or -1 on overflow. */
int a3_mul_size(size_t a, size_t b, size_t *out);
int a3_add_size(size_t a, size_t b, size_t *out);

/* Allocation helpers: NULL on failure or overflow (count * size). */
void *a3_calloc(size_t count, size_t size);
void *a3_malloc_array(size_t count, size_t size);

/* Read a whole (small) file into a NUL-terminated buffer. *len excludes the
 * NUL. Caller frees. Refuses files larger than max_bytes. */
int a3_read_file(const char *path, size_t max_bytes, char **out, size_t *len,
                 a3_err *err);

/* Atomic output: bytes go to "<path>.tmp.<pid>" and are renamed over path on
 * commit, so readers never see a half-written file. abort removes the temp
 * file; both accept a partially failed writer. */
typedef struct {
    FILE *fp;
    char *path;
    char *tmp_path;
    int failed; /* set when any write failed; commit then refuses */
} a3_atomic;

int a3_atomic_open(a3_atomic *a, const char *path, a3_err *err);
int a3_atomic_write(a3_atomic *a, const void *buf, size_t n, a3_err *err);
int a3_atomic_commit(a3_atomic *a, a3_err *err); /* fsync, close, rename */
void a3_atomic_abort(a3_atomic *a);

/* Convenience: write a whole buffer atomically. */
int a3_write_file_atomic(const char *path, const void *buf, size_t n,
                         a3_err *err);

/* Progress reporting for long work. `done` of `total` units (tokens,
 * layers...) finished; return non-zero to ask the worker to cancel (it then
 * returns A3_ECANCELED). */
typedef int (*a3_progress_fn)(void *ctx, const char *stage, int64_t done,
                              int64_t total);

/* splitmix64: a small, seeded, platform-independent generator (used where
 * results must be reproducible from a seed: calibration windows, synthetic
 * weights). Advances *state. */
uint64_t a3_splitmix64(uint64_t *state);

/* A byte count as people write it: "5GB", "500MB", "1.5GiB", "123456".
 * KB/MB/GB/TB are decimal (10^3...), as Hugging Face and the SI count;
 * KiB/MiB/GiB/TiB binary; the unit is case-insensitive; a bare number is
 * bytes. 0 and *out on success; -1 for anything else (no number, an
 * unknown unit, trailing text, a result below 1 byte or above 2^60). */
int a3_parse_bytes(const char *s, uint64_t *out);

/* Monotonic wall-clock seconds. */
double a3_now(void);

/* "<path>.tmp.<pid>": where atomic writers stage their output. NULL on
 * allocation failure; caller frees. */
char *a3_tmp_path(const char *path);

/* Path join into a newly allocated string; NULL on allocation failure. */
char *a3_path_join(const char *dir, const char *name);

#endif
