/* linalg: small dense helpers shared by the calibration curves and the
 * solvers. */
#include "a3/linalg.h"

#include <lapacke.h>
#include <stdlib.h>
#include <string.h>

/* Cholesky of W (hd x hd, row-major, lower result), damping the diagonal by
 * eps * mean(diag) with eps = 1e-10, 1e-8, ... when W is not positive
 * definite (a head that never fires). Returns the eps used (0: none), or
 * -1 if even heavy damping fails. */
double a3_chol_damped(double *Lw, const double *W, int n)
{
    double mean = 0;
    for (int i = 0; i < n; i++) mean += W[i * n + i] / n;
    if (!(mean > 0)) mean = 1;
    for (double eps = 0; eps <= 1e-2; eps = eps ? eps * 100 : 1e-10) {
        memcpy(Lw, W, (size_t)n * n * sizeof *Lw);
        for (int i = 0; i < n; i++) Lw[i * n + i] += eps * mean;
        if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', n, Lw, n) == 0) {
            for (int i = 0; i < n; i++)
                for (int j = i + 1; j < n; j++) Lw[i * n + j] = 0;
            return eps;
        }
    }
    return -1;
}

int a3_solve_spd_damped(double *A, double *B, int n, int m, double scale)
{
    size_t nn = (size_t)n * n, nm = (size_t)n * m;
    double *A0 = malloc(nn * sizeof *A0), *B0 = malloc(nm * sizeof *B0);
    if (!A0 || !B0) {
        free(A0), free(B0);
        return -1;
    }
    memcpy(A0, A, nn * sizeof *A0), memcpy(B0, B, nm * sizeof *B0);
    int info = LAPACKE_dposv(LAPACK_ROW_MAJOR, 'L', n, m, A, n, B, m);
    for (double eps = 1e-10; info != 0 && eps <= 1e-2; eps *= 100) {
        memcpy(A, A0, nn * sizeof *A), memcpy(B, B0, nm * sizeof *B);
        for (int i = 0; i < n; i++) A[(size_t)i * n + i] += eps * scale;
        info = LAPACKE_dposv(LAPACK_ROW_MAJOR, 'L', n, m, A, n, B, m);
    }
    free(A0), free(B0);
    return info ? 1 : 0;
}

typedef struct {
    double score;
    int32_t idx;
} scored;

/* Descending score, ties by ascending index: a total, deterministic order. */
static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->idx - y->idx;
}

int a3_order_desc(const double *score, int n, int32_t *order, double *sorted)
{
    scored *s = malloc((size_t)(n > 0 ? n : 1) * sizeof *s);
    if (!s) return -1;
    for (int i = 0; i < n; i++) s[i] = (scored){score[i], i};
    qsort(s, (size_t)n, sizeof *s, cmp_scored);
    for (int i = 0; i < n; i++) {
        order[i] = s[i].idx;
        if (sorted) sorted[i] = s[i].score;
    }
    free(s);
    return 0;
}

void a3_qk_drop_loss(const double *gq, const double *gk, int hd, const int32_t *order, double div, double *loss)
{
    int half = hd / 2;
    double acc = 0;
    loss[half] = 0;
    for (int k = half - 1; k >= 0; k--) {
        for (int x = 0; x < 2; x++) {
            int a = order[k] + x * half;
            /* cross terms with the dims dropped before: pairs order[k+1..], then this pair's first dim */
            for (int j = half - 1; j > k; j--)
                for (int y = 0; y < 2; y++) {
                    int b = order[j] + y * half;
                    acc += 2 * gq[a * hd + b] * gk[a * hd + b];
                }
            if (x) acc += 2 * gq[a * hd + order[k]] * gk[a * hd + order[k]];
            acc += gq[a * hd + a] * gk[a * hd + a];
        }
        loss[k] = acc / div;
    }
}
