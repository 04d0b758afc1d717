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

/* order[0..n) = indices of score sorted by descending value, ties by
 * ascending index (deterministic); sorted (may be NULL) gets the values in
 * that order. -1 on allocation failure. */
int a3_order_desc(const double *score, int n, int32_t *order, double *sorted);

#endif
