"""The linear-Gaussian group in closed form: ``jm.mixed.gaussian`` with
``jm.mixed.gaussian_random(q)``.

There the joint log-density is quadratic in the random effects, the Laplace approximation
is the exact marginal, and the marginal is a Gaussian density: ``y_g ~ N(X b, s^2 I + B B')``
with ``B = Z L`` (the rows of the group; ``L`` the lower triangle of ``params["L"]``). By
the matrix determinant lemma and Woodbury's identity, with ``A = I + B'B / s^2`` (q x q),
``r = y - X b`` and ``c = B'r / s^2``,

    log p(y_g) = -1/2 [n_g log(2 pi s^2) + log det A + r'r / s^2 - c' A^-1 c],

the conditional mode is ``u* = L A^-1 c`` and its covariance ``L A^-1 L'`` (Henderson's
mixed-model equations in the whitened effects ``v = L^-1 u``). Every term is a function of
the group's cross products of ``[X, Z, y]`` (``statistics``, computed once per fit), so an
evaluation costs the same whatever the group's size. No inner Newton runs and the
derivatives in ``z`` are those of this expression by automatic differentiation: the same
likelihood as the Laplace path (``_laplace``) in a smaller compiled program.

The q x q Cholesky factorisation and solves are written out over the static dimension
(``core._triangular``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmle import mixed
from jaxmle.core._triangular import cholesky_rows, forward_substitution
from jaxmle.core._status import Status
from jaxmle.random_effects._laplace import GroupModel, Mode


def applies(model: GroupModel) -> bool:
    """True for ``jm.mixed.gaussian`` with ``jm.mixed.gaussian_random(q)`` and one flat
    random-effect array of ``q`` entries."""
    return (model.log_density is mixed.gaussian
            and isinstance(model.log_random, mixed.GaussianRandom)
            and model.layout.q == model.log_random.dim and len(model.layout.shapes) == 1)


def statistics(data, mask):
    """One group's cross products of ``[X, Z, y]`` over its unmasked rows, ``(m, m)`` with
    ``m = p + q + 1``, and its row count: all the closed form needs, computed once per fit."""
    X, Z, y = data
    rows = mask.astype(y.dtype)
    columns = jnp.concatenate([X, Z, y[:, None]], axis=1) * rows[:, None]
    return columns.T @ columns, jnp.sum(rows)


def marginal(model: GroupModel, z, cross, count):
    """The group's exact log marginal likelihood at ``z`` from its ``statistics``, and
    ``(mode, sd)``: the conditional mode ``(q,)`` and standard deviations ``(q,)``."""
    q = model.log_random.dim
    params = model.space.to_constrained(z)
    beta = params["beta"]
    p = beta.shape[0]
    xx, zx, zz = cross[:p, :p], cross[p:p + q, :p], cross[p:p + q, p:p + q]
    xy, zy, yy = cross[:p, -1], cross[p:p + q, -1], cross[-1, -1]
    variance = params["sigma"] ** 2
    L = jnp.tril(params["L"])
    a = jnp.eye(q, dtype=z.dtype) + L.T @ zz @ L / variance          # I + B'B / s^2
    factor = cholesky_rows(a, q)
    whitened = forward_substitution(factor, L.T @ (zy - zx @ beta) / variance, q)  # C^-1 c, C C' = A
    log_det = 2.0 * sum(jnp.log(factor[i][i]) for i in range(q))
    residual = yy - 2.0 * beta @ xy + beta @ xx @ beta                 # r'r
    loglik = -0.5 * (count * jnp.log(2.0 * math.pi * variance) + log_det
                     + residual / variance - whitened @ whitened)
    # A^-1 = C^-T C^-1: the mode L A^-1 c = (C^-1 L')' (C^-1 c), its covariance (C^-1 L')'(C^-1 L').
    spread = forward_substitution(factor, L.T, q)                                 # C^-1 L'  (q, q)
    return loglik, (spread.T @ whitened, jnp.sqrt(jnp.sum(spread ** 2, axis=0)))


def group_derivatives(model: GroupModel, z, u0, cross, count):
    """As ``_laplace.group_derivatives`` (log-likelihood, gradient ``(k,)``, Hessian
    ``(k, k)`` in ``z``, ``Mode``), from the group's ``statistics``; ``u0`` is not needed."""
    def gradient(v):
        (loglik, (mode, sd)), grad = jax.value_and_grad(marginal, argnums=1, has_aux=True)(
            model, v, cross, count)
        return grad, (loglik, grad, mode, sd)

    hessian, (loglik, grad, mode, sd) = jax.jacfwd(gradient, has_aux=True)(z)
    finite = jnp.isfinite(loglik) & jnp.all(jnp.isfinite(mode))
    status = jnp.where(finite, int(Status.CONVERGED), int(Status.NONFINITE))
    return loglik, grad, 0.5 * (hessian + hessian.T), Mode(mode, sd, status.astype(jnp.int32),
                                                          jnp.zeros((), jnp.int32))
