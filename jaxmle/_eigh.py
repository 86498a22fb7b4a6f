"""Symmetric eigendecomposition of the small matrices of a fit (Newton steps, information).

A two-parameter model (Normal, Gamma, Weibull, log-normal, ...) has 2 x 2 Hessians, which
one Jacobi rotation diagonalises in closed form: a few elementwise operations, vectorised
across a batch, and no LAPACK call. On CPU both matter: JAX's first LAPACK call in a process
loads its LAPACK bindings from SciPy (0.24 s in a profile, in every fresh process, with the
persistent compilation cache as well: ``benchmarks/first_call.py``'s cached single fit
0.63 -> 0.32-0.38 s, uncached 1.04 -> 0.87-0.88 s), and LAPACK decomposes a batch one
matrix at a time (10,000 2 x 2 matrices: 0.28 ms, against 0.036 ms for the rotation).
Larger matrices go to ``jnp.linalg.eigh``: a vectorised cyclic Jacobi iteration was slower
from k = 5 (1,000 matrices: 3.1 vs 2.0 ms) and compiled 0.2-0.4 s longer (measured on the
project's 2-core CPU).

Reference: G. H. Golub & C. F. Van Loan, *Matrix Computations* (4th ed., 2013), section
8.5.2 (the symmetric Schur decomposition of a 2 x 2 matrix).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def symmetric_eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric ``(k, k)`` matrix."""
    if matrix.shape[-1] != 2:
        return jnp.linalg.eigh(matrix)
    a, b, c = matrix[0, 0], 0.5 * (matrix[0, 1] + matrix[1, 0]), matrix[1, 1]
    # The rotation [[cos, sin], [-sin, cos]] zeroes b when t = tan(angle) is the smaller root
    # of t^2 + 2 tau t - 1 = 0, tau = (c - a) / (2 b); then the diagonal is (a - t b, c + t b).
    diagonal = b == 0
    tau = (c - a) / (2.0 * jnp.where(diagonal, 1.0, b))
    t = jnp.where(tau >= 0, 1.0, -1.0) / (jnp.abs(tau) + jnp.sqrt(1.0 + tau * tau))
    t = jnp.where(diagonal, 0.0, t)
    cos = 1.0 / jnp.sqrt(1.0 + t * t)
    sin = t * cos
    first, second = a - t * b, c + t * b
    swap = second < first
    eigenvalues = jnp.where(swap, jnp.stack([second, first]), jnp.stack([first, second]))
    column_first, column_second = jnp.stack([cos, -sin]), jnp.stack([sin, cos])
    vectors = jnp.where(swap, jnp.stack([column_second, column_first], axis=1),
                        jnp.stack([column_first, column_second], axis=1))
    return eigenvalues, vectors
