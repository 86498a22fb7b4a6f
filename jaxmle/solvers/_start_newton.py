"""A small Newton minimiser for start points: the optimum of a cheap auxiliary problem
(a large batch's reduced problem, ``core/_solve.reduced_start_one``) from which the fit on
all observations then starts.

Its result is a start, not an estimate: the fit that follows applies its own stopping test
and certification. It therefore carries none of the trust-region machinery of ``_newton``
(radius, scaling, extrapolation, settled and budget rules), which would be compiled a second
time into every program that uses the reduced start; it is a loop of one derivative
evaluation per iteration:

* the step is saddle-free Newton with Levenberg damping, ``p = -V (|L| + mu max|L|)^-1 V' g``
  on the eigendecomposition ``H = V L V'`` (Dauphin et al., 2014): a descent direction
  whatever the curvature of a far start;
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

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmle.core import _loop
from jaxmle.core._eigh import symmetric_eigh

STUCK_DAMPING = 1e8
FLAT = 1e-8  # a loss change below this fraction of the loss is no evidence against a step


class _State(NamedTuple):
    z: jax.Array        # (k,) best point so far
    f: jax.Array        # its loss (inf before the first evaluation)
    g: jax.Array        # (k,) its gradient
    h: jax.Array        # (k, k) its Hessian
    trial: jax.Array    # (k,) the next point to evaluate
    damping: jax.Array  # mu
    count: jax.Array    # evaluations so far


def minimum(value_grad_hessian: Callable, z0: jax.Array, *, gtol: float,
            max_iter: int) -> tuple[jax.Array, jax.Array]:
    """``(z, ok)``: the point the loop stops at (``(k,)``) and whether its loss is finite
    (``z0`` is returned when it is not). ``value_grad_hessian(z) -> (loss, (k,), (k, k))``;
    traceable."""
    dtype = z0.dtype
    tiny = jnp.finfo(dtype).tiny
    k = z0.shape[0]
    state = _State(z0, jnp.full((), jnp.inf, dtype), jnp.zeros_like(z0),
                   jnp.zeros((k, k), dtype), z0,
                   jnp.zeros((), dtype), jnp.zeros((), jnp.int32))

    def step(s: _State) -> _State:
        f, g, h = value_grad_hessian(s.trial)
        noise = 64 * jnp.finfo(dtype).eps * jnp.abs(s.f)
        norm, old_norm = jnp.linalg.norm(g), jnp.linalg.norm(s.g)
        gains = ((f < s.f) | ((f <= s.f + noise) & (norm < old_norm))
                 | ((f <= s.f + FLAT * jnp.abs(s.f)) & (norm < 0.25 * old_norm)))
        accept = jnp.isfinite(f) & jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(h)) & gains
        keep = lambda new, old: jnp.where(accept, new, old)
        z, f, g, h = keep(s.trial, s.z), keep(f, s.f), keep(g, s.g), keep(h, s.h)
        damping = jnp.where(accept, s.damping / 4, jnp.maximum(4 * s.damping, 1e-3))
        curvature, basis = symmetric_eigh(h)
        curvature = jnp.abs(curvature)
        curvature = curvature + damping * jnp.max(curvature) + tiny
        return _State(z, f, g, h, z - basis @ ((basis.T @ g) / curvature), damping, s.count + 1)

    def going(s: _State) -> jax.Array:
        return (s.count == 0) | ((s.count < max_iter) & (s.damping < STUCK_DAMPING)
                                 & jnp.isfinite(s.f)
                                 & (_loop.relative_gradient(s.z, s.f, s.g) > gtol))

    out = _loop.repeat(step, state, going)
    ok = jnp.isfinite(out.f)
    return jnp.where(ok, out.z, z0), ok
