/* blas: placeholder until the kernel-selection work lands (issue 8). */
#include "a3/blas.h"

void a3_blas_startup(int argc, char **argv)
{
    (void)argc;
    (void)argv;
}
