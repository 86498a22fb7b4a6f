"""A small Newton minimiser: the optimum of a cheap auxiliary problem (a large batch's
reduced problems, ``core/_solve.reduced_optima``) from which the fit on all observations
then starts, and the quick pass of a batch without a reduced form (``batch/_reduced``).

Its result is never an estimate by itself: the fit's own stopping test and certification
decide on it (from its last derivatives, or by a fit from it). It therefore carries none
of the trust-region machinery of ``_newton`` (radius, scaling, extrapolation, settled and
budget rules), which would be compiled a second time into every program that uses it; it
is a loop of one derivative evaluation per iteration:

* the step is saddle-free Newton with Levenberg damping, ``p = -V (|L| + mu max|L|)^-1 V' g``
  on the eigendecomposition ``H = V L V'`` (Dauphin et al., 2014): a descent direction
  whatever the curvature of a far start; where every lane's Hessian is positive definite
  and undamped that is Newton's step, solved by Cholesky (``_trials``);
* a trial is accepted when the loss falls, or stays within its rounding (``64 eps |f|``)
  while the gradient shrinks, or rises by at most ``FLAT`` of itself while the gradient
  falls to a quarter, so the iterate keeps approaching an optimum whose loss no longer
  resolves the last steps (a reduced Normal loss from raw statistics carries the rounding
  of ``sum x^2``, far above ``eps |f|`` when the mean is thousands of SDs from 0); ``mu``
  is divided by 4 on acceptance and multiplied by 4 (from at least ``1e-3``) on
  rejection;
* the loop stops at the relative-gradient test of the fit (``gtol``), after ``max_iter``
  iterations, or once ``mu`` exceeds ``1e8`` (no step gains any more).

The start is evaluated inside the loop (the first trial), so the derivative program is
traced and compiled once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmle.core import _loop
from jaxmle.core._eigh import unordered_eigh

STUCK_DAMPING = 1e8
FLAT = 1e-8  # a loss change below this fraction of the loss is no evidence against a step


class _State(NamedTuple):
    """One lane's state; ``minima`` carries every field with a leading lane axis."""

    z: jax.Array        # (k,) best point so far
    f: jax.Array        # its loss (inf before the first evaluation, which is kept as it is)
    g: jax.Array        # (k,) its gradient
    h: jax.Array        # (k, k) its Hessian
    trial: jax.Array    # (k,) the next point to evaluate
    damping: jax.Array  # mu
    count: jax.Array    # evaluations so far
    cut: jax.Array      # the fraction of the loss the step to z removed (0 at the start
                        # and once a step from z has failed)


def _advance(s: _State, going, f, g, h) -> _State:
    """One lane's iteration, given the loss, gradient and Hessian at its trial point; a
    no-op where ``going`` is False (the lane has stopped, ``_going``). The first
    evaluation, at the start, is kept whatever it is: the start's verdict is then the one
    its derivatives give. The next trial is set by ``_trials``."""
    dtype = s.z.dtype
    tiny = jnp.finfo(dtype).tiny
    noise = 64 * jnp.finfo(dtype).eps * jnp.abs(s.f)
    norm, old_norm = jnp.linalg.norm(g), jnp.linalg.norm(s.g)
    gains = ((f < s.f) | ((f <= s.f + noise) & (norm < old_norm))
             | ((f <= s.f + FLAT * jnp.abs(s.f)) & (norm < 0.25 * old_norm)))
    accept = (s.count == 0) | (_finite(f, g, h) & gains)
    keep = lambda new, old: jnp.where(accept, new, old)
    z, f, g, h = keep(s.trial, s.z), keep(f, s.f), keep(g, s.g), keep(h, s.h)
    damping = jnp.where(accept, s.damping / 4, jnp.maximum(4 * s.damping, 1e-3))
    cut = jnp.where(accept & (s.count > 0), (s.f - f) / jnp.maximum(jnp.abs(s.f), tiny), 0.0)
    new = _State(z, f, g, h, s.trial, damping, s.count + 1, cut)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(going, a, b), new, s)


def _saddle_free_trial(s: _State) -> jax.Array:
    """One lane's next point: ``z - V (|L| + mu max|L|)^-1 V' g`` (module notes)."""
    curvature, basis = unordered_eigh(s.h)
    curvature = jnp.abs(curvature)
    curvature = curvature + s.damping * jnp.max(curvature) + jnp.finfo(s.z.dtype).tiny
    return s.z - basis @ ((basis.T @ s.g) / curvature)


def _trials(s: _State, stepping: jax.Array) -> jax.Array:
    """``(B, k)``: the next point of every lane that stepped (``stepping``), its old trial
    elsewhere. Where every stepping lane has a positive definite Hessian and no damping,
    the saddle-free step is Newton's, ``-H^-1 g``, and a Cholesky solve gives it: an
    eigendecomposition of every lane's Hessian at every iteration was the largest cost
    after the derivative pass itself in a batch of logistic regressions (k = 5). A
    2 x 2 Hessian has its closed-form rotation (``unordered_eigh``) instead."""
    saddle_free = lambda: jax.vmap(_saddle_free_trial)(s)
    if s.z.shape[-1] == 2:
        trials = saddle_free()
    else:
        factor = jnp.linalg.cholesky(s.h)  # NaN where not positive definite
        plain = jnp.all(~stepping | ((s.damping == 0)
                                     & jnp.all(jnp.isfinite(factor), axis=(-2, -1))))
        solve = jax.vmap(lambda factor, g: jax.scipy.linalg.cho_solve((factor, True), g))
        trials = jax.lax.cond(plain, lambda: s.z - solve(factor, s.g), saddle_free)
    return jnp.where(stepping[:, None], trials, s.trial)


def _finite(f, g, h) -> jax.Array:
    return jnp.isfinite(f) & jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(h))


def _going(s: _State, active, *, gtol: float, max_iter: int) -> jax.Array:
    """Whether a lane goes on: before its first evaluation, or, if ``active``, below its
    cap with a finite loss that fails the fit's relative-gradient test while some step may
    still gain."""
    return (s.count == 0) | (active & (s.count < max_iter) & (s.damping < STUCK_DAMPING)
                             & jnp.isfinite(s.f)
                             & (_loop.relative_gradient(s.z, s.f, s.g) > gtol))


def descend(value_grad_hessian: Callable, z0: jax.Array, *, gtol: float, max_iter: int,
            active: jax.Array | None = None) -> _State:
    """The lanes' states where they stop, from the rows of ``z0`` (``(B, k)``, one problem
    per row): ``z`` the best point, ``f``, ``g``, ``h`` the loss and derivatives there
    (those at ``z0`` where no later evaluation was better, finite or not), ``count`` the
    evaluations made, the first at ``z0``, ``cut`` the fraction of the loss the step to
    ``z`` removed. ``value_grad_hessian(z) -> ((B,), (B, k),
    (B, k, k))`` evaluates every row at once (e.g. a ``vmap``); a row where ``active``
    (``(B,)`` bool, default all) is False is evaluated at ``z0`` only (a dataset whose data
    block its fit). The lanes step together until none goes on; traceable.

    The loop is written over lanes, not as a ``vmap`` of a one-problem loop: batching a
    traced loop re-traces its body until the batched parts of its state settle, which made
    tracing this loop several times longer."""
    dtype, (lanes, k) = z0.dtype, z0.shape
    state = _State(z0, jnp.full((lanes,), jnp.inf, dtype), jnp.zeros_like(z0),
                   jnp.zeros((lanes, k, k), dtype), z0,
                   jnp.zeros((lanes,), dtype), jnp.zeros((lanes,), jnp.int32),
                   jnp.zeros((lanes,), dtype))
    active = jnp.ones((lanes,), bool) if active is None else active
    options = dict(gtol=gtol, max_iter=max_iter)
    going = jax.vmap(functools.partial(_going, **options))

    def iteration(s):
        stepping = going(s, active)
        new = jax.vmap(_advance)(s, stepping, *value_grad_hessian(s.trial))
        return new._replace(trial=_trials(new, stepping))

    return _loop.repeat(iteration, state, lambda s: jnp.any(going(s, active)))


def minima(value_grad_hessian: Callable, z0: jax.Array, *, gtol: float,
           max_iter: int) -> tuple[jax.Array, jax.Array]:
    """``(z, ok)``: for each row of ``z0`` the point ``descend`` stops at, and whether its
    loss and derivatives there are finite (the start is returned where they are not);
    traceable."""
    out = descend(value_grad_hessian, z0, gtol=gtol, max_iter=max_iter)
    ok = jax.vmap(_finite)(out.f, out.g, out.h)
    return jnp.where(ok[:, None], out.z, z0), ok
