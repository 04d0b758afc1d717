/* linalg: small dense linear-algebra helpers (float64, row-major). */
#ifndef A3_LINALG_H
#define A3_LINALG_H

#include <stdint.h>

/* Cholesky W = L L^T of a symmetric n x n matrix into L (lower, upper part
 * zeroed). When W is not positive definite (a head that never fires, a
 * rank-deficient statistic) the diagonal is damped by eps * mean(diag W)
 * with eps = 1e-10, 1e-8, ..., 1e-2 until it is. Returns the eps used (0:
 * none) or -1 if even 1e-2 fails. */
double a3_chol_damped(double *L, const double *W, int n);

/* Solve A X = B in place (A: n x n symmetric positive semidefinite, B:
 * n x m, row-major; X into B, A overwritten): undamped first, exact
 * whenever A is positive definite; otherwise A's diagonal damped by
 * eps * scale, eps = 1e-10, 1e-8, ..., 1e-2 (the refits' rule; the
 * caller chooses the scale). Returns 0, 1 if not positive definite even
 * at 1e-2, or -1 out of memory (A and B then unchanged). */
int a3_solve_spd_damped(double *A, double *B, int n, int m, double scale);

/* order[0..n) = indices of score sorted by descending value, ties by
 * ascending index (deterministic); sorted (may be NULL) gets the values in
 * that order. -1 on allocation failure. */
int a3_order_desc(const double *score, int n, int32_t *order, double *sorted);

/* The QK loss of keeping the first k RoPE pairs of order (pair p = dims p
 * and p + hd/2), for every k: loss[k] = sum over dropped dims a, b of
 * gq[a,b] gk[a,b] / div, loss[hd/2] = 0 (hd/2 + 1 values). Pairs are added
 * to the dropped set from the back of the order, so the whole curve costs
 * O(hd^2). Shared by the cache's curves and the exact-curve module. */
void a3_qk_drop_loss(const double *gq, const double *gk, int hd, const int32_t *order, double div, double *loss);

#endif
