"""Small triangular algebra written out over a static dimension: scalar arithmetic that XLA
fuses across a ``vmap``, where a factorisation or triangular-solve library call per item and
per derivative level dominated the run time of the mixed model's derivative passes."""

from __future__ import annotations

import jax.numpy as jnp


def cholesky_rows(a, dim: int):
    """Lower Cholesky factor of a symmetric positive definite ``(dim, dim)`` ``a``, as rows
    of scalars (``factor[i][j]``, ``j <= i``)."""
    factor = [[None] * dim for _ in range(dim)]
    for j in range(dim):
        factor[j][j] = jnp.sqrt(a[j, j] - sum(factor[j][m] ** 2 for m in range(j)))
        for i in range(j + 1, dim):
            inner = sum(factor[i][m] * factor[j][m] for m in range(j))
            factor[i][j] = (a[i, j] - inner) / factor[j][j]
    return factor


def forward_substitution(lower, b, dim: int):
    """``lower^-1 b`` for a lower-triangular ``lower`` indexed as ``lower[i][j]`` (an array
    or ``cholesky_rows``); ``b`` ``(dim, ...)``."""
    out = []
    for i in range(dim):
        out.append((b[i] - sum(lower[i][m] * out[m] for m in range(i))) / lower[i][i])
    return jnp.stack(out)
