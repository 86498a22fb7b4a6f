"""Symmetric eigendecomposition of the small matrices of a fit (Newton steps, information).

A two-parameter model (Normal, Gamma, Weibull, log-normal, ...) has 2 x 2 Hessians, which
one Jacobi rotation diagonalises in closed form: a few elementwise operations, vectorised
across a batch, and no LAPACK call. On CPU both matter: JAX's first LAPACK call in a process
loads its LAPACK bindings from SciPy (in every fresh process, with the persistent
compilation cache as well), and LAPACK decomposes a batch one matrix at a time. Larger
matrices go to ``jnp.linalg.eigh``: a vectorised cyclic Jacobi iteration was slower from
k = 5 and compiled longer. The measurements are in ``docs/design.md``.

Reference: G. H. Golub & C. F. Van Loan, *Matrix Computations* (4th ed., 2013), section
8.5.2 (the symmetric Schur decomposition of a 2 x 2 matrix).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _rotation(matrix: jax.Array):
    """``(first, second, cos, sin)`` of a symmetric 2 x 2 ``matrix``: the diagonal after
    the Jacobi rotation ``[[cos, sin], [-sin, cos]]`` that zeroes its off-diagonal entry."""
    a, b, c = matrix[0, 0], 0.5 * (matrix[0, 1] + matrix[1, 0]), matrix[1, 1]
    # The rotation zeroes b when t = tan(angle) is the smaller root of
    # t^2 + 2 tau t - 1 = 0, tau = (c - a) / (2 b); then the diagonal is (a - t b, c + t b).
    diagonal = b == 0
    tau = (c - a) / (2.0 * jnp.where(diagonal, 1.0, b))
    t = jnp.where(tau >= 0, 1.0, -1.0) / (jnp.abs(tau) + jnp.sqrt(1.0 + tau * tau))
    t = jnp.where(diagonal, 0.0, t)
    cos = 1.0 / jnp.sqrt(1.0 + t * t)
    return a - t * b, c + t * b, cos, t * cos


def unordered_eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenvalues and eigenvectors (columns) of a symmetric ``(k, k)`` matrix in no
    particular order (a 2 x 2 matrix skips the sort), for callers that treat every
    eigenpair alike."""
    if matrix.shape[-1] != 2:
        return jnp.linalg.eigh(matrix)
    first, second, cos, sin = _rotation(matrix)
    return jnp.stack([first, second]), jnp.stack([jnp.stack([cos, -sin]),
                                                  jnp.stack([sin, cos])], axis=1)


def symmetric_eigh(matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric ``(k, k)`` matrix."""
    if matrix.shape[-1] != 2:
        return jnp.linalg.eigh(matrix)
    eigenvalues, vectors = unordered_eigh(matrix)
    swap = eigenvalues[1] < eigenvalues[0]
    return (jnp.where(swap, eigenvalues[::-1], eigenvalues),
            jnp.where(swap, vectors[:, ::-1], vectors))
