"""Dense BFGS as an optax transformation, paired with optax's zoom (strong Wolfe) line search.

``scale_by_bfgs`` turns the gradient into the quasi-Newton direction ``-H g``, where ``H``
is the BFGS inverse-Hessian approximation (Nocedal & Wright, *Numerical Optimization*, 2006,
Algorithm 6.1, update eq. 6.17, initial scaling eq. 6.20). The update is skipped when the
curvature condition ``s'y > 0`` fails numerically, which keeps ``H`` positive definite.
The very first direction is the steepest-descent one, shortened to unit length when the
gradient is large, so the line search starts from a sensible trial step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class ScaleByBfgsState(NamedTuple):
    inverse_hessian: jax.Array
    previous_params: jax.Array
    previous_gradient: jax.Array
    count: jax.Array


def scale_by_bfgs() -> optax.GradientTransformation:
    """Gradient -> BFGS direction ``-H g`` (params and updates are flat vectors)."""

    def init(params):
        k = params.shape[0]
        return ScaleByBfgsState(jnp.eye(k, dtype=params.dtype), jnp.zeros_like(params),
                                jnp.zeros_like(params), jnp.zeros((), jnp.int32))

    def update(grad, state, params):
        eps = jnp.finfo(params.dtype).eps
        s = params - state.previous_params
        y = grad - state.previous_gradient
        sy = s @ y
        curvature_ok = (state.count > 0) & (sy > eps * jnp.linalg.norm(s) * jnp.linalg.norm(y))
        h = jnp.where((state.count == 1) & curvature_ok,
                      (sy / jnp.where(curvature_ok, y @ y, 1.0)) * jnp.eye(params.shape[0], dtype=params.dtype),
                      state.inverse_hessian)
        rho = 1.0 / jnp.where(curvature_ok, sy, 1.0)
        hy = h @ y
        updated = (h - rho * (jnp.outer(s, hy) + jnp.outer(hy, s))
                   + (rho * rho * (y @ hy) + rho) * jnp.outer(s, s))
        h = jnp.where(curvature_ok, updated, h)
        first = state.count == 0
        direction = jnp.where(first, -grad / jnp.maximum(jnp.linalg.norm(grad), 1.0), -h @ grad)
        return direction, ScaleByBfgsState(h, params, grad, state.count + 1)

    return optax.GradientTransformation(init, update)


def bfgs(max_linesearch_steps: int = 30) -> optax.GradientTransformationExtraArgs:
    """BFGS with a strong-Wolfe zoom line search trying the unit step first."""
    return optax.chain(
        scale_by_bfgs(),
        optax.scale_by_zoom_linesearch(max_linesearch_steps, initial_guess_strategy="one"))
