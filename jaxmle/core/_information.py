"""The observed information at the estimate: certification, covariances, standard errors.

At the final iterate the exact Hessian ``A`` of the loss (the observed information of the
maximised objective, in unconstrained coordinates) is eigendecomposed once, in its
correlation form (``local_information``, which the fit, ``diagnose``, ``profile`` and the
score test share). That decides the final status and gives every covariance:

* ``A`` must be positive definite and not numerically singular: the smallest eigenvalue of
  its correlation form ``D^-1/2 A D^-1/2`` (D = diag A) must exceed ``100 k eps``.
  Otherwise the status is SINGULAR_HESSIAN and ``cov``/``se`` are NaN.
* The exact Newton step ``A^-1 g`` from the estimate must be below ``xtol`` relative to
  ``max(|z|, 1)``; a vanishing gradient with a large Newton step means the likelihood is
  still rising along a flat direction (status BOUNDARY; ``cov``/``se`` are then NaN).

Covariances in ``z`` (Newey & McFadden 1994, section 4; White 1982 for the sandwich):
``observed = A^-1``, ``opg = B^-1`` with ``B = sum_i w_i s_i s_i'`` over per-observation
scores, ``robust = A^-1 B A^-1``, ``cluster = G / (G - 1) A^-1 C A^-1`` with
``C = sum_g s_g s_g'`` over the summed scores of each of the ``G`` clusters (``_clusters``). They are mapped to the user's coordinates by the delta
method, ``cov = J cov_z J'`` with ``J = d theta / d z`` (exact at a stationary point).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmle.core._eigh import symmetric_eigh
from jaxmle.core._objective import Likelihood
from jaxmle.core._parameters import ParameterSpace
from jaxmle.core._status import Status

COVARIANCES = ("observed", "opg", "robust", "cluster")


class Assessment(NamedTuple):
    status: jax.Array
    cov: jax.Array  # (n_flat, n_flat), user coordinates
    loglik: jax.Array
    grad_norm: jax.Array


class CorrelationEigh(NamedTuple):
    """Eigendecomposition of the correlation form ``D^-1/2 M D^-1/2`` of a symmetric ``M``
    (``D = |diag M|``, 1 where 0): ascending ``eigenvalues``, ``vectors`` in columns, and
    ``scale = sqrt(D)``."""

    eigenvalues: jax.Array
    vectors: jax.Array
    scale: jax.Array


def correlation_eigh(matrix: jax.Array) -> CorrelationEigh:
    d = jnp.sqrt(jnp.abs(jnp.diag(matrix)))
    d = jnp.where(d > 0, d, 1.0)
    return CorrelationEigh(*symmetric_eigh(matrix / jnp.outer(d, d)), d)


def spd_inverse(matrix: jax.Array, decomposition: CorrelationEigh | None = None):
    """Inverse of a symmetric matrix and whether it is positive definite and well conditioned.

    Both come from one eigendecomposition of the correlation form (``decomposition``, the
    matrix's ``correlation_eigh`` when the caller has it already).
    """
    k = matrix.shape[0]
    eps = jnp.finfo(matrix.dtype).eps
    eigenvalues, vectors, d = correlation_eigh(matrix) if decomposition is None else decomposition
    ok = (jnp.all(jnp.isfinite(eigenvalues)) & (eigenvalues[0] > 100 * k * eps)
          & jnp.all(jnp.diag(matrix) > 0))
    inverse = (vectors / jnp.where(ok, eigenvalues, 1.0)) @ vectors.T
    return inverse / jnp.outer(d, d), ok


class LocalInformation(NamedTuple):
    """The observed information ``A`` (``(k, k)``, in ``z``) at a point, decomposed once.

    Attributes:
        decomposition: ``A``'s ``correlation_eigh``.
        inverse: ``A^-1`` (finite but meaningless where not ``definite``).
        definite: ``A`` is positive definite and not numerically singular.
        relative_step: ``(k,)`` the exact Newton step ``|A^-1 g|`` relative to
            ``max(|z|, 1)``.
    """

    decomposition: CorrelationEigh
    inverse: jax.Array
    definite: jax.Array
    relative_step: jax.Array


def local_information(information: jax.Array, gradient: jax.Array,
                      z: jax.Array) -> LocalInformation:
    """The one routine every tool uses at an estimate (the fit's certification, diagnose,
    profile, the score test): ``information`` is the Hessian of the loss at ``z``,
    ``gradient`` its gradient."""
    decomposition = correlation_eigh(information)
    inverse, definite = spd_inverse(information, decomposition)
    relative_step = jnp.abs(inverse @ gradient) / jnp.maximum(jnp.abs(z), 1.0)
    return LocalInformation(decomposition, inverse, definite, relative_step)


def outer_product_of_scores(lik: Likelihood, z: jax.Array) -> jax.Array:
    """``B = sum_i w_i s_i s_i'`` over the per-observation scores at ``z``: ``(k, k)``."""
    scores = lik.scores(z)
    return scores.T @ (lik.weights.astype(z.dtype)[:, None] * scores)


def clustered_outer_product(lik: Likelihood, z: jax.Array) -> jax.Array:
    """``G / (G - 1) sum_g s_g s_g'``, ``s_g = sum_{i in g} w_i s_i``: ``(k, k)``.

    The data is ``(data, codes)`` (``_clusters``); inactive observations have zero score
    rows and do not count towards ``G``.
    """
    codes = lik.data[1]
    n = codes.shape[0]
    scores = lik.scores(z) * lik.weights.astype(z.dtype)[:, None]
    sums = jax.ops.segment_sum(scores, codes, num_segments=n)
    present = jax.ops.segment_sum(lik.active.astype(z.dtype), codes, num_segments=n) > 0
    count = jnp.sum(present).astype(z.dtype)
    # G = 1 is refused before the fit; the where keeps a NaN (not inf) if it ever happens.
    return jnp.where(count > 1, count / jnp.maximum(count - 1.0, 1.0), jnp.nan) * (sums.T @ sums)


def constrained_jacobian(space: ParameterSpace, z: jax.Array) -> jax.Array:
    """``d theta / d z``: ``(n_flat, k)``, maps covariances in ``z`` to the user's coordinates."""
    return jax.jacfwd(lambda v: space.flatten(space.to_constrained(v)))(z)


def assess(derivatives, lik: Likelihood, space: ParameterSpace, z: jax.Array,
           loop_status: jax.Array, *, cov_kind: str, xtol: float) -> Assessment:
    """Final status, covariance (user coordinates), log-likelihood and gradient norm at ``z``.

    ``derivatives``: ``(loss, gradient, Hessian)`` of the unscaled loss at ``z`` (the loss is
    minus the log-likelihood minus the log-prior).
    """
    loss, g, information = derivatives
    local = local_information(information, g, z)
    inverse, info_ok = local.inverse, local.definite
    step_ok = jnp.max(local.relative_step) <= xtol
    status = jnp.where(loop_status != int(Status.CONVERGED), loop_status,
                       jnp.where(~info_ok, int(Status.SINGULAR_HESSIAN),
                                 jnp.where(step_ok, int(Status.CONVERGED), int(Status.BOUNDARY))))

    if cov_kind == "observed":
        cov_z, cov_ok = inverse, info_ok
    else:
        outer = (clustered_outer_product if cov_kind == "cluster"
                 else outer_product_of_scores)(lik, z)
        outer_inverse, outer_ok = spd_inverse(outer)
        if cov_kind == "opg":
            cov_z, cov_ok = outer_inverse, outer_ok
        else:
            cov_z, cov_ok = inverse @ outer @ inverse, info_ok
    jacobian = constrained_jacobian(space, z)
    cov = jacobian @ cov_z @ jacobian.T
    # At a BOUNDARY the estimate is drifting to the edge of the space: its curvature there
    # describes no interior optimum, so no standard error is reported.
    cov_ok = cov_ok & (status != int(Status.BOUNDARY))
    cov = jnp.where(cov_ok & jnp.all(jnp.isfinite(cov)), 0.5 * (cov + cov.T), jnp.nan)
    loglik = -loss - lik.log_prior(z)
    return Assessment(status.astype(jnp.int32), cov, loglik, jnp.max(jnp.abs(g)))
