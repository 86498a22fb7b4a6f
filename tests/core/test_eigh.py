"""The closed-form 2 x 2 symmetric eigendecomposition, sorted and unordered, against LAPACK
(numpy)."""

import jax
import numpy as np
import pytest

from jaxmle.core._eigh import symmetric_eigh, unordered_eigh


def _two_by_two_cases():
    rng = np.random.default_rng(3)
    a, c = rng.normal(size=(2, 500)) * np.exp(rng.uniform(-20, 20, size=(2, 500)))
    b = rng.normal(size=500) * np.exp(rng.uniform(-20, 20, size=500))
    b[:50] = 0.0                   # already diagonal, either order
    c[50:100] = a[50:100]          # equal diagonal: a 45-degree rotation
    a[100:150], c[100:150], b[100:150] = 0.0, 1.0, 1e-200 * b[100:150]  # tau^2 overflows
    return np.stack([np.stack([a, b], -1), np.stack([b, c], -1)], -2)


@pytest.mark.parametrize("decompose", [symmetric_eigh, unordered_eigh])
def test_two_by_two_matches_lapack_and_is_an_orthonormal_decomposition(decompose):
    matrices = _two_by_two_cases()
    eigenvalues, vectors = map(np.asarray, jax.jit(jax.vmap(decompose))(matrices))
    scale = np.abs(matrices).max(axis=(1, 2))[:, None]
    # Both methods are backward stable: each within ~2 eps of the largest entry, so they
    # differ by at most 4 eps; the residual and orthogonality are held to the same bound.
    eps = np.finfo(float).eps
    eigenvalue_error = np.abs(np.sort(eigenvalues, axis=1)
                              - np.linalg.eigvalsh(matrices)) / scale
    assert eigenvalue_error.max() <= 4 * eps, eigenvalue_error.max()
    if decompose is symmetric_eigh:
        assert np.all(np.diff(eigenvalues, axis=1) >= 0)
    residual = matrices @ vectors - vectors * eigenvalues[:, None, :]
    residual_error = np.abs(residual).max(axis=1) / scale
    assert residual_error.max() <= 4 * eps, residual_error.max()
    np.testing.assert_allclose(np.swapaxes(vectors, 1, 2) @ vectors,
                               np.broadcast_to(np.eye(2), matrices.shape), atol=4 * eps)


@pytest.mark.parametrize("k", [1, 3])
def test_other_sizes_use_lapack(k):
    matrix = np.eye(k) + 0.1
    eigenvalues, vectors = symmetric_eigh(matrix)
    np.testing.assert_allclose(eigenvalues, np.linalg.eigvalsh(matrix), rtol=1e-15)
    np.testing.assert_allclose(vectors @ np.diag(eigenvalues) @ vectors.T, matrix, atol=1e-15)
