/* cleanup: temporaries that an interrupt, an error or an exit must not
 * leave behind, in one registry.
 *
 * Every temporary a3 creates is named a3_tmp_path(target) =
 * "<target>.tmp.<pid>" and registered here from creation until it is
 * renamed into place or removed. On SIGINT/SIGTERM the handler installed by
 * a3_cleanup_install removes every registered temporary with
 * async-signal-safe calls only (unlink, unlinkat, rmdir, getdents64) and
 * exits with status 130 -- at once, or, for a command that stops
 * cooperatively, at the second signal (the first only sets the flag read by
 * a3_cleanup_interrupted, which progress callbacks return to cancel the
 * work; its error paths then remove what they made).
 *
 * A run killed with SIGKILL cannot clean up: its temporaries carry its pid,
 * so a3_tmp_path() removes the ones of `target` whose process no longer
 * exists before naming a new one (a3_cleanup_swept reports them).
 *
 * Directories registered here must be flat (files only), as a3's are. */
#ifndef A3_CLEANUP_H
#define A3_CLEANUP_H

#include <stddef.h>

/* Register path (a file or a flat directory) for removal on a signal or at
 * exit. 0, or -1 when the registry is full (the caller goes on; its own
 * error paths still clean up). Thread-safe. */
int a3_cleanup_add(const char *path);
/* Forget path (it was renamed into place or removed). Thread-safe. */
void a3_cleanup_forget(const char *path);

/* Install the SIGINT/SIGTERM handler and an atexit hook that remove every
 * registered temporary. With stop_msg == NULL the first signal cleans up
 * and exits with status 130. Otherwise the first signal writes stop_msg to
 * stderr and sets the flag (see a3_cleanup_interrupted); a second one cleans
 * up and exits 130. Idempotent; 0 or -1 when sigaction fails. */
int a3_cleanup_install(const char *stop_msg);
/* Number of SIGINT/SIGTERM received since install (0: none). */
int a3_cleanup_interrupted(void);

/* Remove a file, or a flat directory and its files (async-signal-safe). */
void a3_cleanup_remove(const char *path);

/* After a3_tmp_path() removed stale temporaries of killed runs: how many,
 * and the last one's path (valid until the next call); 0 when none. */
int a3_cleanup_swept(const char **last);

#endif
