"""Ready pieces for ``jm.fit_mixed``: per-observation log-densities of the common
generalised linear mixed models and the Gaussian random-effect density.

Each log-density takes ``(params, u, data)`` with ``data = (X, Z, y)`` for one group: ``X``
``(n_g, p)`` fixed-effect covariates, ``Z`` ``(n_g, q)`` random-effect covariates (a column
of ones for a random intercept), ``y`` ``(n_g,)`` responses; the linear predictor is
``eta = X @ params["beta"] + Z @ u``. ``gaussian_random(q)`` is ``u ~ N(0, L L')`` with
``L = params["L"]``, a ``(q, q)`` Cholesky factor (constrain it with ``jm.cholesky``).

Example:
    >>> import numpy as np
    >>> import jaxmle as jm
    >>> params = {"beta": np.array([0.5]), "L": np.eye(1)}
    >>> X, Z, y = np.ones((3, 1)), np.ones((3, 1)), np.array([0.0, 1.0, 1.0])
    >>> jm.mixed.logistic(params, np.zeros(1), (X, Z, y)).shape
    (3,)
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.scipy import special, stats

from jaxmle.core._triangular import forward_substitution

__all__ = ["gaussian", "gaussian_random", "logistic", "poisson"]


def _eta(params, u, X, Z):
    return X @ params["beta"] + Z @ u


def gaussian(params, u, data):
    """Linear mixed model: ``y ~ N(eta, sigma^2)``; parameters ``beta`` ``(p,)`` and
    ``sigma`` (constrain with ``jm.positive``). Returns ``(n_g,)`` terms."""
    X, Z, y = data
    return stats.norm.logpdf(y, _eta(params, u, X, Z), params["sigma"])


def logistic(params, u, data):
    """Logistic mixed model: ``y ~ Bernoulli(sigmoid(eta))``, ``y`` in {0, 1}; parameters
    ``beta`` ``(p,)``. Returns ``(n_g,)`` terms."""
    X, Z, y = data
    eta = _eta(params, u, X, Z)
    return y * eta - jax.nn.softplus(eta)


def poisson(params, u, data):
    """Poisson mixed model with log link: ``y ~ Poisson(exp(eta))``; parameters ``beta``
    ``(p,)``. Returns ``(n_g,)`` terms."""
    X, Z, y = data
    eta = _eta(params, u, X, Z)
    return y * eta - jnp.exp(eta) - special.gammaln(y + 1.0)


@dataclasses.dataclass(frozen=True)
class GaussianRandom:
    """``log_random(params, u)`` of ``u ~ N(0, L L')`` in ``dim`` dimensions (a value:
    two of the same ``dim`` are equal, so fits with either share their compiled program)."""

    dim: int

    def __call__(self, params, u):
        L = params["L"]
        v = forward_substitution(L, jnp.reshape(u, (self.dim,)), self.dim)  # written out
        return (-0.5 * jnp.sum(v ** 2) - jnp.sum(jnp.log(jnp.diagonal(L)))
                - 0.5 * self.dim * math.log(2 * math.pi))


def gaussian_random(dim: int) -> GaussianRandom:
    """``log_random(params, u)`` of ``u ~ N(0, L L')``, ``L = params["L"]`` lower-triangular
    ``(dim, dim)`` with a positive diagonal (``jm.cholesky``).

    Computed by forward substitution: ``-1/2 |L^-1 u|^2 - sum log L_ii - dim/2 log 2 pi``.

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> log_random = jm.mixed.gaussian_random(2)
        >>> bool(np.isclose(log_random({"L": 2.0 * np.eye(2)}, np.zeros(2)), -np.log(8 * np.pi)))
        True
    """
    dim = int(dim)
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return GaussianRandom(dim)
