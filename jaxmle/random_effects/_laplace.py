"""The Laplace approximation of one group's marginal likelihood, batched over groups.

For group ``g`` with data ``y_g`` and random effects ``u`` (flat, ``(q,)``) the joint
log-density is ``f_g(u, theta) = sum_i m_i log p(y_gi | u, theta) + log p(u | theta)``
(``m_i`` the row mask of the padded group). Its marginal log-likelihood is approximated by
expanding ``f_g`` to second order about the conditional mode ``u_g* = argmax_u f_g``:

    log p(y_g | theta) ~= f_g(u_g*, theta) - 1/2 log det(-H_g) + q/2 log(2 pi),

``H_g`` the Hessian of ``f_g`` in ``u`` at ``u_g*``; exact when ``f_g`` is quadratic in ``u``
(a linear-Gaussian model). Tierney & Kadane (1986), "Accurate approximations for
posterior moments and marginal densities", JASA 81; Kristensen, Nielsen, Berg, Skaug &
Bell (2016), "TMB: automatic differentiation and Laplace approximation", JSS 70(5).

**Inner problem.** ``u_g*`` is found by Newton's method on ``f_g`` with a
Levenberg-Marquardt shift (Nocedal & Wright 2006, section 10.3): the step solves
``(-H + lam D) d = grad`` (``D = |diag H|``) by Cholesky; an ascent step is accepted and
``lam`` falls tenfold (to 0, the pure Newton step), a failed one is rejected and ``lam``
rises tenfold. The group has converged when the pure Newton step from a point with ``-H``
positive definite is below ``INNER_TOL`` relative to ``max(|u|, 1)``; that step is then
taken too (Newton converges quadratically, so the mode is exact to rounding). Groups are
``vmap``-ped: the loop runs until every group of a chunk has stopped or ``max_inner``
iterations; a stopped group is not moved any more.

**Exact derivatives through the mode.** The outer Newton fit and the observed information
need the gradient and Hessian of each group's Laplace term in ``z``. They are written out
from the implicit function theorem rather than by nesting automatic differentiation
through the inner solve and the log-determinant. With ``w = (u, z)``, ``A = -f_uu`` and
``F(w) = f(w) - 1/2 log det(-f_uu(w))``, the mode moves as ``u*(z + t) = u* + U t +
1/2 U2[t, t] + O(t^3)``, where ``grad_u f(u*(z), z) = 0`` differentiated once and twice gives

    U = A^-1 f_uz,        U2_ab = A^-1 d^2/dt_a dt_b f_u(w* + P t),   P = [U; I];

hence, for ``l(z) = F(u*(z), z)``,

    dl/dz_a        = d/dt_a F(w* + P t)
                   = f_z,a + 1/2 tr(A^-1 D_a),
    d^2l/dz_a dz_b = d^2/dt_a dt_b F(w* + P t) + F_u . U2_ab
                   = f_tt,ab + 1/2 tr(A^-1 D_ab) + 1/2 tr(A^-1 D_a A^-1 D_b) + F_u . U2_ab,

``D_a``, ``D_ab`` the first and second derivatives of ``f_uu`` along ``P`` and
``F_u = 1/2 tr(A^-1 d f_uu / du)`` (``f_u = 0`` at the mode). Every derivative of ``f`` is
taken in one forward-mode pass along ``P`` and the unit ``u`` directions (third and fourth
order), and the only matrix factorised is ``A``, once. Implicit differentiation of an
inner optimum and the derivatives of the log-determinant term as in Kristensen et al.
(2016), section 2, and Bell (2008), "Algorithmic differentiation of implicit functions
and optimal values".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmle.core import _loop
from jaxmle.core._information import spd_inverse
from jaxmle.core._parameters import ParameterSpace, unflatten_last_axis
from jaxmle.core._status import Status

INNER_TOL = 1e-8      # relative pure Newton step at which a group's mode has converged
LAM_START = 1e-3      # the shift after the first rejected pure Newton step
LAM_MAX = 1e12        # a shift this large with no ascent: the group has stalled


@dataclasses.dataclass(frozen=True)
class RandomLayout:
    """The random-effect pytree as a flat vector ``(q,)`` (static, hashable)."""

    treedef: jax.tree_util.PyTreeDef
    shapes: tuple[tuple[int, ...], ...]

    @property
    def q(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes)

    def unflatten(self, u):
        """Flat ``(..., q)`` (jax or numpy) -> the pytree; leading axes are kept."""
        return unflatten_last_axis(u, self.shapes, self.treedef)

    def flatten(self, tree) -> jax.Array:
        return jnp.concatenate([jnp.ravel(leaf) for leaf in self.treedef.flatten_up_to(tree)])


@dataclasses.dataclass(frozen=True)
class GroupModel:
    """Everything static about the per-group joint log-density (hashable: keys compilation).

    Attributes:
        log_density: ``log_density(params, u, data) -> (n_g,)`` per-observation terms.
        log_random: ``log_random(params, u) -> scalar``.
        space: the parameters' constrained/unconstrained map.
        layout: the random effects' pytree layout.
        max_inner: the inner Newton iteration cap.
    """

    log_density: Callable
    log_random: Callable
    space: ParameterSpace
    layout: RandomLayout
    max_inner: int

    def joint(self, z, u, data, mask):
        """``f_g(u, theta(z))``: the masked sum of the group's terms plus the random
        effects' log-density."""
        params = self.space.to_constrained(z)
        effects = self.layout.unflatten(u)
        terms = self.log_density(params, effects, data)
        return jnp.sum(jnp.where(mask, terms, 0.0)) + self.log_random(params, effects)

    def value_grad_hessian(self, z, u, data, mask):
        """``f_g``, its gradient ``(q,)`` and Hessian ``(q, q)`` in ``u``."""
        value_and_grad = jax.value_and_grad(self.joint, argnums=1)

        def grad_with_value(v):
            val, grad = value_and_grad(z, v, data, mask)
            return grad, (val, grad)

        hessian, (val, grad) = jax.jacfwd(grad_with_value, has_aux=True)(u)
        return val, grad, 0.5 * (hessian + hessian.T)


class InnerState(NamedTuple):
    u: jax.Array
    f: jax.Array
    g: jax.Array
    h: jax.Array
    lam: jax.Array
    n_iter: jax.Array
    done: jax.Array
    start_ok: jax.Array  # the joint and its derivatives are finite at the start u0


class Mode(NamedTuple):
    """One group's inner solution at ``z``: the mode ``(q,)``, its conditional standard
    deviations ``sqrt diag (-H)^-1`` ``(q,)``, inner status and iterations."""

    u: jax.Array
    sd: jax.Array
    status: jax.Array
    n_iter: jax.Array

    @staticmethod
    def placeholder(groups: int, q: int, dtype) -> "Mode":
        """Zeros shaped like the ``Mode`` of ``groups`` groups (the loop's carry before
        the first evaluation)."""
        return Mode(jnp.zeros((groups, q), dtype), jnp.zeros((groups, q), dtype),
                    jnp.zeros(groups, jnp.int32), jnp.zeros(groups, jnp.int32))


def _shifted_step(h, g, lam):
    """``(-h + lam |diag h|) d = g`` by Cholesky; NaN where the matrix is not positive definite."""
    tiny = jnp.finfo(h.dtype).tiny
    a = -h + lam * jnp.diag(jnp.maximum(jnp.abs(jnp.diag(h)), tiny))
    factor = jnp.linalg.cholesky(a)
    return jax.scipy.linalg.cho_solve((factor, True), g)


def _iterate(model: GroupModel, z, u0, data, mask) -> InnerState:
    """The shifted Newton iterations of one group from ``u0`` (module notes); traceable.

    The start is the loop's first pass (``n_iter`` -1 until then), so the joint's
    derivatives are compiled once, not twice."""
    eps = jnp.finfo(u0.dtype).eps
    vgh = lambda u: model.value_grad_hessian(z, u, data, mask)
    q = u0.shape[0]
    zero = jnp.zeros((), u0.dtype)
    state = InnerState(u0, zero - jnp.inf, jnp.zeros_like(u0), -jnp.eye(q, dtype=u0.dtype),
                       zero, jnp.full((), -1, jnp.int32), jnp.zeros((), bool),
                       jnp.ones((), bool))

    def running(s):
        return ~s.done & (s.n_iter < model.max_inner)

    def body(s):
        first = s.n_iter < 0
        newton = _shifted_step(s.h, s.g, 0.0)
        definite = jnp.all(jnp.isfinite(newton))
        small = (~first & definite
                 & jnp.all(jnp.abs(newton) <= INNER_TOL * jnp.maximum(jnp.abs(s.u), 1.0)))
        d = jnp.where(s.lam == 0, newton, _shifted_step(s.h, s.g, s.lam))
        d_ok = jnp.all(jnp.isfinite(d))
        u_try = jnp.where(first, s.u, s.u + jnp.where(d_ok, d, 0.0))
        f_try, g_try, h_try = vgh(u_try)
        finite = jnp.isfinite(f_try) & jnp.all(jnp.isfinite(g_try)) & jnp.all(jnp.isfinite(h_try))
        ascent = f_try >= s.f - 64 * eps * (1.0 + jnp.abs(s.f))
        accept = finite & (first | (d_ok & ascent & ~small))
        lam = jnp.where(first, s.lam,
                        jnp.where(accept, jnp.where(s.lam > 1e-6, 0.1 * s.lam, 0.0),
                                  jnp.where(s.lam == 0, LAM_START, 10.0 * s.lam)))
        stalled = ~small & ~accept & (lam > LAM_MAX)
        pick = lambda new, old: jnp.where(accept, new, old)
        # At convergence the pure Newton step is taken as well: the mode is then exact to
        # rounding (quadratic convergence), which the implicit derivatives assume.
        u = jnp.where(small, s.u + newton, pick(u_try, s.u))
        start_ok = jnp.where(first, finite, s.start_ok)
        return InnerState(u, pick(f_try, s.f), pick(g_try, s.g), pick(h_try, s.h), lam,
                          s.n_iter + 1, small | stalled | ~start_ok, start_ok)

    return _loop.repeat(body, state, running)


def _mode(model: GroupModel, inner: InnerState, g, h) -> Mode:
    """The ``Mode`` of a finished inner solve, from the gradient ``(q,)`` and Hessian
    ``(q, q)`` of the joint at its mode."""
    inverse, definite = spd_inverse(-h)
    step = _shifted_step(h, g, 0.0)
    small = jnp.all(jnp.abs(step) <= INNER_TOL * jnp.maximum(jnp.abs(inner.u), 1.0))
    status = jnp.where(~inner.start_ok, int(Status.NONFINITE_START),
             jnp.where(~definite, int(Status.SINGULAR_HESSIAN),
             jnp.where(small, int(Status.CONVERGED),
             jnp.where(inner.n_iter >= model.max_inner, int(Status.MAX_ITER),
                       int(Status.STALLED)))))
    sd = jnp.where(definite, jnp.sqrt(jnp.abs(jnp.diag(inverse))), jnp.nan)
    return Mode(inner.u, sd, status.astype(jnp.int32), inner.n_iter)


def group_derivatives(model: GroupModel, z, u0, data, mask):
    """One group's Laplace log-likelihood ``f(u*) - 1/2 log det(-H) + q/2 log 2 pi``, its
    gradient ``(k,)`` and Hessian ``(k, k)`` in ``z`` (module notes), and its ``Mode`` at
    ``z``; traceable.

    NaN when ``-H`` is not positive definite at the mode (no Laplace approximation exists):
    the outer solver then rejects the point, and the group's inner status says why.
    """
    q, k = u0.shape[0], z.shape[0]
    dtype = z.dtype
    inner = _iterate(model, z, u0, data, mask)
    u = inner.u
    w0 = jnp.concatenate([u, z])
    at = lambda w: (w[q:], w[:q], data, mask)
    cross = jax.jacfwd(lambda w: jax.grad(model.joint, argnums=1)(*at(w)))(w0)  # (q, q + k)
    factor = jnp.linalg.cholesky(-cross[:, :q])
    solve = lambda b: jax.scipy.linalg.cho_solve((factor, True), b)
    path = jnp.concatenate([solve(cross[:, q:]), jnp.eye(k, dtype=dtype)])       # P (q + k, k)
    unit_u = jnp.concatenate([jnp.eye(q, dtype=dtype), jnp.zeros((k, q), dtype)])
    directions = jnp.concatenate([path, unit_u], axis=1)                          # (q + k, k + q)

    def along(t):
        """``(f, f_u, f_uu)`` at ``w* + P t`` and their derivatives along ``directions``."""
        def twice(s):
            out = model.value_grad_hessian(*at(w0 + path @ t + directions @ s))
            return out, out
        first, value = jax.jacfwd(twice, has_aux=True)(jnp.zeros(k + q, dtype))
        return first, (value, first)

    second, ((f, g_mode, h_mode), (f_d, _, h_d)) = jax.jacfwd(along, has_aux=True)(
        jnp.zeros(k, dtype))
    f_dt, g_dt, h_dt = second
    inverse = solve(jnp.eye(q, dtype=dtype))
    loglik = f - jnp.sum(jnp.log(jnp.diagonal(factor))) + 0.5 * q * math.log(2 * math.pi)
    score = f_d + 0.5 * jnp.einsum("ij,jic->c", inverse, h_d)        # F along the directions
    u2 = jnp.einsum("ij,jab->iab", inverse, g_dt[:, :k, :])          # U2 (q, k, k)
    m = jnp.einsum("ij,jka->ika", inverse, h_d[:, :, :k])            # A^-1 D_a
    hessian = (f_dt[:k, :] + 0.5 * jnp.einsum("ij,jiab->ab", inverse, h_dt[:, :, :k, :])
               + 0.5 * jnp.einsum("ika,kib->ab", m, m) + jnp.einsum("i,iab->ab", score[k:], u2))
    return (loglik, score[:k], 0.5 * (hessian + hessian.T),
            _mode(model, inner, g_mode, h_mode))
