/* blas: OpenBLAS kernel selection and thread control.
 *
 * Debian's dynamic-arch OpenBLAS falls back to a generic kernel on CPUs it
 * does not recognise. a3_blas_startup() runs first thing in main(): when
 * the core OpenBLAS picked is older than what the CPU supports and the user
 * has not set OPENBLAS_CORETYPE, it re-executes the program once with the
 * variable set (OpenBLAS reads it only when the library loads). Guarded by
 * an environment marker so it can never loop; A3_NO_BLAS_FIX=1 disables it. */
#ifndef A3_BLAS_H
#define A3_BLAS_H

/* May not return (execv). Returns normally when nothing needs doing or the
 * re-exec failed (the program then runs with the kernel it has). */
void a3_blas_startup(int argc, char **argv);

#endif
