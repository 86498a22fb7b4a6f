"""The one place where the user's log-likelihood becomes a loss on a flat vector.

Solvers minimise ``loss(z) = -scale * (sum_i w_i l_i(theta(z)) + log_prior(theta(z)))`` over
the unconstrained vector ``z`` (sign flip and reparameterisation happen here only).

Derivatives: reverse mode for value and gradient, forward-over-reverse for the Hessian,
with value and gradient returned as auxiliary outputs of the same pass. With jaxmle's CPU
compiler options (``_xla``) forward-over-forward was no faster in the full Newton loop
(``docs/design.md``).

Long datasets (at least ``BLOCKED_OBS`` observations, per-observation form) are evaluated
block by block: each pass sums the value and derivatives of blocks of ``BLOCK_OBS``
observations (``lax.scan`` over slices of the data, never a copy), so a block's
intermediate terms stay in cache. This relies on what the per-observation form already
means: term ``i`` depends on observation ``i`` only.

Padding and zero weights: an observation is *active* when its mask entry is True and its
weight is > 0. Inactive observations contribute exactly 0 to the value and to every
derivative, even when their padding value lies outside the support: per-observation data
leaves (those whose leading axis has length n) are first overwritten at inactive positions
with the dataset's first active observation, so no NaN or inf is ever formed there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmle.core._parameters import ParameterSpace

# Datasets of at least BLOCKED_OBS observations are evaluated in blocks of about BLOCK_OBS,
# the fastest block size measured for a Normal pass at n = 10^7 (``docs/design.md``).
BLOCK_OBS = 2**18
BLOCKED_OBS = 2**20


@dataclasses.dataclass(frozen=True)
class ModelForm:
    """The model as the solver sees it (static): the public ``jm.Model``'s functions and
    the shape of the log-density's output.

    Attributes:
        log_density: ``log_density(params, data)`` -> scalar or ``(n,)`` per-observation terms.
        log_prior: optional ``log_prior(params)`` -> scalar (MAP fit), or None.
        n_obs_axis: ``n`` for the per-observation form, None for the scalar form.
    """

    log_density: Callable
    log_prior: Callable | None
    n_obs_axis: int | None

    @property
    def per_observation(self) -> bool:
        return self.n_obs_axis is not None


class Objective(NamedTuple):
    """Loss functions of one dataset on the flat unconstrained vector ``z``."""

    value: Callable            # z -> loss
    value_and_grad: Callable   # z -> (loss, grad)
    value_grad_hessian: Callable  # z -> (loss, grad, hessian)


class Likelihood(NamedTuple):
    """The log-likelihood pieces of one dataset, all functions of ``z``."""

    loglik: Callable       # z -> sum of active weighted terms (no prior)
    log_prior: Callable    # z -> log prior (0 without one)
    scores: Callable | None  # z -> (n, k) per-observation scores (zero rows when inactive)
    active: jax.Array | None  # (n,) bool, per-observation form only
    weights: jax.Array | None  # (n,) weights (1 where none were given)
    data: object             # the data with inactive observations replaced (see _safe_data)
    # Long datasets (n >= BLOCKED_OBS): ``block_loglik(z, i)`` of block ``i`` of the
    # observations and ``blocks``, the block indices; None otherwise.
    block_loglik: Callable | None = None
    blocks: object = None


def per_observation_leaf(leaf, n: int) -> bool:
    """Whether a data leaf holds one entry per observation (its leading axis has length n)."""
    return jnp.ndim(leaf) >= 1 and jnp.shape(leaf)[0] == n


def _safe_data(data, active: jax.Array, n: int):
    """Per-observation leaves with inactive entries replaced by the first active one."""
    first = jnp.argmax(active)

    def replace(leaf):
        if not per_observation_leaf(leaf, n):
            return leaf
        keep = active.reshape((n,) + (1,) * (leaf.ndim - 1))
        return jnp.where(keep, leaf, leaf[first])

    return jax.tree_util.tree_map(replace, data)


def _block_layout(n: int) -> tuple[int, int]:
    """``(blocks, block length)``: about ``BLOCK_OBS`` observations per block, at most ``n``."""
    count = -(-n // BLOCK_OBS)
    return count, min(n, 8 * -(-n // (8 * count)))


def log_prior_of(model: ModelForm, space: ParameterSpace) -> Callable:
    """``z -> log prior`` of the constrained parameters (0 without a prior)."""
    if model.log_prior is None:
        return lambda z: jnp.zeros((), z.dtype)
    return lambda z: model.log_prior(space.to_constrained(z))


def likelihood(model: ModelForm, space: ParameterSpace, data, weights, mask) -> Likelihood:
    """Builds the log-likelihood of one dataset as functions of ``z``."""
    prior = log_prior_of(model, space)
    if not model.per_observation:
        return Likelihood(lambda z: model.log_density(space.to_constrained(z), data),
                          prior, None, None, None, data)
    n = model.n_obs_axis
    active = jnp.ones((n,), bool) if mask is None else mask
    w = jnp.ones((n,)) if weights is None else weights
    active = active & (w > 0)
    safe = _safe_data(data, active, n)

    def masked_terms(z, data, active):
        return jnp.where(active, model.log_density(space.to_constrained(z), data), 0.0)

    def weighted_sum(z, data, active, w):
        return jnp.sum(w.astype(z.dtype) * masked_terms(z, data, active))

    def terms(z):
        return masked_terms(z, safe, active)

    def loglik(z):
        return weighted_sum(z, safe, active, w)

    if n < BLOCKED_OBS:
        return Likelihood(loglik, prior, jax.jacfwd(terms), active, w, safe)

    # Block i covers observations [i L, (i + 1) L); the last block is slid back to end at n
    # (a slice never copies the data), and its observations already counted are masked.
    count, length = _block_layout(n)
    leaves, treedef = jax.tree_util.tree_flatten(safe)
    per_observation = [per_observation_leaf(leaf, n) for leaf in leaves]

    def block_loglik(z, index):
        start = jnp.minimum(index * length, n - length)
        cut = lambda leaf: jax.lax.dynamic_slice_in_dim(leaf, start, length)
        block_data = treedef.unflatten([cut(leaf) if sliced else leaf
                                        for leaf, sliced in zip(leaves, per_observation)])
        fresh = start + jnp.arange(length) >= index * length
        return weighted_sum(z, block_data, cut(active) & fresh, cut(w))

    return Likelihood(loglik, prior, jax.jacfwd(terms), active, w, safe, block_loglik,
                      jnp.arange(count))


def with_hessian(value: Callable, *, forward_gradient: bool = False) -> Callable:
    """``z -> (value, gradient, Hessian)`` of a scalar function in one pass: the Hessian by
    forward mode over the gradient, value and gradient as its auxiliary outputs. The
    gradient is by reverse mode, or by forward mode with ``forward_gradient`` (a smaller
    program for a few parameters and a value that nests its own solves)."""
    if forward_gradient:
        def value_twice(z):
            val = value(z)
            return val, val

        def value_and_grad(z):
            grad, val = jax.jacfwd(value_twice, has_aux=True)(z)
            return val, grad
    else:
        value_and_grad = jax.value_and_grad(value)

    def grad_with_value(z):
        val, grad = value_and_grad(z)
        return grad, (val, grad)

    def value_grad_hessian(z):
        hessian, (val, grad) = jax.jacfwd(grad_with_value, has_aux=True)(z)
        return val, grad, 0.5 * (hessian + hessian.T)

    return value_grad_hessian


def objective(lik: Likelihood, scale: jax.Array | float = 1.0) -> Objective:
    """The loss ``-scale * (loglik + log_prior)`` of one dataset and its derivatives.

    For a long dataset every pass runs block by block (``lax.scan``), summing each
    block's value and derivatives: a block's intermediate terms stay in cache, where one
    pass over all observations would write each of them to memory (``docs/design.md``).
    """
    def value(z):
        return -scale * (lik.loglik(z) + lik.log_prior(z))

    if lik.blocks is None:
        return Objective(value, jax.value_and_grad(value), with_hessian(value))

    def summed(transform):
        """``z -> transform(prior loss)(z) + sum over blocks of transform(block loss)(z)``."""
        def total(z):
            def add(carry, block):
                part = transform(lambda v: -scale * lik.block_loglik(v, block))(z)
                return jax.tree_util.tree_map(jnp.add, carry, part), None
            start = transform(lambda v: -scale * lik.log_prior(v))(z)
            return jax.lax.scan(add, start, lik.blocks)[0]
        return total

    value_and_grad = summed(jax.value_and_grad)

    # Differentiating a scan's sum would run the scan backwards over stored residuals; the
    # value's derivative is the blocked gradient instead (optimisers with a line search
    # differentiate the value themselves).
    @jax.custom_jvp
    def blocked_value(z):
        return summed(lambda f: f)(z)

    @blocked_value.defjvp
    def blocked_value_jvp(primals, tangents):
        val, grad = value_and_grad(primals[0])
        return val, jnp.dot(grad, tangents[0])

    return Objective(blocked_value, value_and_grad, summed(with_hessian))
