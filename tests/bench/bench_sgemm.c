/* bench_sgemm [SECONDS]: the machine's sgemm rate and the OpenBLAS kernel,
 * for docs/PERFORMANCE.md (make bench-scale): row-major C = A B on
 * 2048 x 2048 floats (a3_blas_sgemm_bench), three runs of SECONDS / 3 on
 * all of OpenBLAS's threads (the best and the worst are printed), then one
 * on one thread; the kernel this process runs with against the best
 * one for the CPU (a3_blas_startup re-executes with OPENBLAS_CORETYPE set
 * when OpenBLAS picked a generic one). The last line is machine-readable
 * ("RESULT key=value ..."; the CPU model, which may contain spaces, is
 * printed on its own "CPU" line). */
#include <stdio.h>
#include <stdlib.h>

#include "a3/blas.h"

int main(int argc, char **argv)
{
    a3_blas_startup(argc, argv);
    double secs = argc > 1 ? atof(argv[1]) : 3.0;
    if (!(secs > 0)) {
        fprintf(stderr, "usage: bench_sgemm [SECONDS]\n");
        return 2;
    }
    a3_err err = {0};
    a3_cpu_info cpu;
    a3_cpu_detect(&cpu);
    const char *best = a3_blas_core_for_cpu(cpu.flags);
    int threads = a3_blas_get_threads();
    a3_blas_bench all, one, run;
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        if (a3_blas_sgemm_bench(secs / 3, 2048, &run, &err)) {
            fprintf(stderr, "bench_sgemm: %s\n", err.msg);
            return 1;
        }
        if (i == 0 || run.gflops > all.gflops) all = run;
        if (i == 0 || run.gflops < worst) worst = run.gflops;
    }
    a3_blas_set_threads(1);
    if (a3_blas_sgemm_bench(secs / 2, 2048, &one, &err)) {
        fprintf(stderr, "bench_sgemm: %s\n", err.msg);
        return 1;
    }
    a3_blas_set_threads(threads);
    const char *marker = getenv(A3_BLAS_ENV_MARKER), *coretype = getenv(A3_BLAS_ENV_CORETYPE);
    printf("sgemm    n=2048: %.1f GFLOP/s on %d threads (best of 3 runs, worst %.1f), %.1f GFLOP/s on 1; kernel %s "
           "(best for this CPU: %s; OPENBLAS_CORETYPE %s%s)\n",
           all.gflops, all.threads, worst, one.gflops, all.kernel, best ? best : "generic", coretype ? coretype : "unset",
           marker ? ", set by a3_blas_startup" : "");
    printf("CPU %s\n", cpu.model[0] ? cpu.model : "unknown");
    printf("CONFIG %s\n", a3_blas_config());
    printf("RESULT gflops=%.3f gflops_worst=%.3f threads=%d gflops_1t=%.3f kernel=%s best=%s tier=%d best_tier=%d reexec=%d "
           "threading=%s\n",
           all.gflops, worst, all.threads, one.gflops, all.kernel, best ? best : "generic", a3_blas_core_tier(all.kernel),
           best ? a3_blas_core_tier(best) : 0, marker != NULL, a3_blas_threading());
    return 0;
}
