"""The linear-Gaussian group in closed form: ``jm.mixed.gaussian`` with
``jm.mixed.gaussian_random(q)``.

There the joint log-density is quadratic in the random effects, the Laplace approximation
is the exact marginal, and the marginal is a Gaussian density: ``y_g ~ N(X b, V)`` with
``V = v I + Z S Z'``, ``v = sigma^2`` and ``S = L L'`` (``L`` the lower triangle of
``params["L"]``). With ``r = y - X b`` and ``W = V^-1``,

    log p(y_g) = -1/2 [n_g log(2 pi) + log det V + r'W r],

and in ``theta = (b, v, S)`` (``S`` as ``q x q`` free entries, so ``V`` is linear in
``theta``) its derivatives are the classical ones (e.g. Harville 1977):

    d/db = X'W r,   d/dv = -1/2 tr W + 1/2 r'W^2 r,   d/dS = -1/2 C + 1/2 s s',
    d2/db2 = -X'W X,   d2/db dv = -X'W^2 r,   d2/db_i dS_ab = -(X'W Z)_ia s_b,
    d2/dv2 = 1/2 tr W^2 - r'W^3 r,   d2/dv dS = 1/2 Z'W^2 Z - 1/2 (s t' + t s'),
    d2/dS_ab dS_cd = 1/2 C_bc C_da - 1/2 (s_a C_bc s_d + s_c C_da s_b),

with ``C = Z'W Z``, ``s = Z'W r``, ``t = Z'W^2 r``. By Woodbury's identity the powers of
``W`` are ``W^k = (I - Z P_k Z') / v^k`` with ``P_1 = M = L A^-1 L' / v``,
``A = I + L'Z'Z L / v`` (q x q) and ``P_(k+1) = P_k + M - M Z'Z P_k``, so every form above
is a block of ``([X, Z, r]'[X, Z, r] - [X, Z, r]'Z P_k Z'[X, Z, r]) / v^k``: a function of
the group's cross products of ``[X, Z, y]`` (``statistics``, computed once per fit), the
same cost whatever the group's size. The sums over groups are taken in ``theta`` and carried
to the optimiser's coordinates ``z`` once, by the chain rule through the small map
``z -> theta``. The conditional mode is ``u* = S s = M Z'r`` with covariance ``v M``
(Henderson's mixed-model equations). No inner Newton runs and no per-group automatic
differentiation: the same likelihood as the Laplace path (``_laplace``), derived by hand,
in a much smaller compiled program.

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


def _natural(model: GroupModel, z):
    """``(b (p,), v, L (q, q))`` at ``z``: the coefficients, the residual variance and the
    lower triangle of ``params["L"]``."""
    params = model.space.to_constrained(z)
    return params["beta"], params["sigma"] ** 2, jnp.tril(params["L"])


def _theta(model: GroupModel, z):
    """``z -> theta = (b (p,), v, S (q*q,))``, flat."""
    beta, variance, L = _natural(model, z)
    return jnp.concatenate([beta, jnp.reshape(variance, (1,)), (L @ L.T).ravel()])


def _group(beta, variance, L, cross, count):
    """One group at ``(b, v, L)`` from its ``statistics``: log-likelihood, gradient ``(d,)``
    and Hessian ``(d, d)`` in ``theta`` (``d = p + 1 + q^2``, module notes), mode and
    SDs ``(q,)``."""
    p, q = beta.shape[0], L.shape[0]
    shift = jnp.eye(p + q + 1, dtype=cross.dtype).at[:p, -1].set(-beta)  # [X, Z, y] -> [X, Z, r]
    square = shift.T @ cross @ shift
    zs = square[p:p + q]                                                # Z'[X, Z, r]  (q, m)
    zz = zs[:, p:p + q]
    factor = cholesky_rows(jnp.eye(q, dtype=cross.dtype) + L.T @ zz @ L / variance, q)
    spread = forward_substitution(factor, L.T, q)                       # C^-1 L', C C' = A
    m1 = spread.T @ spread / variance                                   # L A^-1 L' / v
    m2 = 2.0 * m1 - m1 @ zz @ m1
    m3 = m2 + m1 - m1 @ zz @ m2
    q1 = (square - zs.T @ m1 @ zs) / variance                           # [X, Z, r]'W[X, Z, r]
    q2 = (square - zs.T @ m2 @ zs) / variance ** 2                      # [X, Z, r]'W^2[X, Z, r]
    cubic = (square[-1, -1] - zs[:, -1] @ m3 @ zs[:, -1]) / variance ** 3  # r'W^3 r
    trace1, trace2 = (count - jnp.sum(m1 * zz)) / variance, (count - jnp.sum(m2 * zz)) / variance ** 2
    log_det = count * jnp.log(variance) + 2.0 * sum(jnp.log(factor[i][i]) for i in range(q))
    loglik = -0.5 * (count * math.log(2.0 * math.pi) + log_det + q1[-1, -1])

    x, u = slice(0, p), slice(p, p + q)
    c, s, t = q1[u, u], q1[u, -1], q2[u, -1]                            # Z'WZ, Z'Wr, Z'W^2 r
    grad = jnp.concatenate([q1[x, -1], jnp.reshape(0.5 * (q2[-1, -1] - trace1), (1,)),
                            (0.5 * (jnp.outer(s, s) - c)).ravel()])
    h_bv = -q2[x, -1][:, None]
    h_bs = -(q1[x, u][:, :, None] * s).reshape(p, q * q)
    h_vv = jnp.reshape(0.5 * trace2 - cubic, (1, 1))
    h_vs = (0.5 * (q2[u, u] - jnp.outer(s, t) - jnp.outer(t, s))).reshape(1, q * q)
    c_bc, c_da = c[None, :, :, None], c.T[:, None, None, :]             # indexed [a, b, c, d]
    h_ss = 0.5 * (c_bc * c_da - s[:, None, None, None] * c_bc * s
                  - s[None, None, :, None] * c_da * s[None, :, None, None]).reshape(q * q, q * q)
    hess = jnp.concatenate([jnp.concatenate([-q1[x, x], h_bv, h_bs], axis=1),
                            jnp.concatenate([h_bv.T, h_vv, h_vs], axis=1),
                            jnp.concatenate([h_bs.T, h_vs.T, h_ss], axis=1)])
    return loglik, grad, hess, m1 @ zs[:, -1], jnp.sqrt(variance * jnp.diagonal(m1))


def derivatives(model: GroupModel, z, cross, count):
    """The exact log marginal likelihood summed over groups, its gradient ``(k,)`` and Hessian
    ``(k, k)`` in ``z``, from every group's ``statistics`` (``cross`` ``(G, m, m)``,
    ``count`` ``(G,)``; a group with no rows contributes nothing), and each group's ``Mode``.
    """
    loglik, grad, hess, mode, sd = jax.vmap(_group, in_axes=(None, None, None, 0, 0))(
        *_natural(model, z), cross, count)
    grad, hess = jnp.sum(grad, axis=0), jnp.sum(hess, axis=0)
    # The chain rule to z: J'HJ + sum_i grad_i d2 theta_i / dz2.
    jacobian = jax.jacfwd(_theta, argnums=1)(model, z)
    bend = jax.hessian(lambda v: grad @ _theta(model, v))(z)
    finite = jnp.isfinite(loglik) & jnp.all(jnp.isfinite(mode), axis=1)
    status = jnp.where(finite, int(Status.CONVERGED), int(Status.NONFINITE)).astype(jnp.int32)
    return (jnp.sum(loglik), jacobian.T @ grad, jacobian.T @ hess @ jacobian + bend,
            Mode(mode, sd, status, jnp.zeros_like(status)))
