"""Multistart: fit every dataset from many starting points at once, keep the best optimum.

Every start of every dataset is solved as a dataset of its own in one batched fit (the
data of a dataset repeated once per start), so the batched driver's straggler compaction
applies: a start that needs many iterations holds one lane, not the other starts of its
dataset or its chunk (``jaxmle/batch/_batch.py``). The best start is the converged one with the
highest log-likelihood (if none converged: the highest finite one, with its non-converged
status). Converged starts are grouped into distinct optima: two
are the same optimum when every parameter agrees within ``SAME_RTOL`` relative or
``SAME_SE`` standard errors of the best fit. ``n_optima > 1`` flags a multimodal likelihood.

Default starts (``starts`` an int ``S``): the user's start (or ``init(data)``) and ``S - 1``
points around it in the optimiser's unconstrained coordinates,
``z0 + spread * max(|z0|, 1) * e`` with ``e`` standard normal (seeded): a positive parameter
is multiplied by about ``exp(+-spread)``, a real one moved by ``spread`` times its magnitude.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxmle.batch import _batch, _batched, _reduced
from jaxmle.batch._batched import Batched
from jaxmle.core import _engine, _parameters, _precision, _validation, _xla
from jaxmle.core._fit import Fit
from jaxmle.core._objective import likelihood
from jaxmle.core._solve import FitSpec
from jaxmle.core._status import Status

SAME_RTOL = 1e-5
SAME_SE = 1e-3


@dataclasses.dataclass(frozen=True)
class Multistart(Batched):
    """Result of ``jm.multistart``; a batch adds a leading axis ``B`` to every array
    (``len(result)``, ``result[i]``).

    Attributes:
        best: the ``Fit`` of the best start (batched ``Fit`` for a batch).
        fits: every start's ``Fit``; leading axis ``S`` (``(B, S)`` for a batch).
        n_optima: number of distinct optima among the converged starts.
        loglik_gap: best log-likelihood minus that of the next-best distinct optimum (NaN
            with a single optimum).
        distance: largest distance of another optimum from the best, in the best fit's
            standard errors (max over parameters; NaN with a single optimum).
    """

    best: Fit
    fits: Fit
    n_optima: jax.Array
    loglik_gap: jax.Array
    distance: jax.Array

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``(B,)`` for a batch of datasets, ``()`` for a single one."""
        return tuple(np.shape(self.n_optima))

    @property
    def multimodal(self):
        """True where more than one distinct optimum was found."""
        return self.n_optima > 1


_batched.register(Multistart)


def _take(tree, index):
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def compare_starts(spec: FitSpec, fits: Fit) -> Multistart:
    """Best start, distinct optima and their spread, from the fits of one dataset's starts."""
    converged = fits.status == int(Status.CONVERGED)
    loglik = fits.loglik
    ranked = jnp.where(converged, loglik, -jnp.inf)
    finite = jnp.where(jnp.isfinite(loglik), loglik, -jnp.inf)
    best_index = jnp.where(jnp.any(converged), jnp.argmax(ranked), jnp.argmax(finite))
    best = _take(fits, best_index)

    theta = jax.vmap(spec.space.flatten)(fits.params)            # (S, k)
    se_best = jnp.nan_to_num(spec.space.flatten(best.se))        # (k,)
    gap = jnp.abs(theta[:, None, :] - theta[None, :, :])
    tolerance = SAME_RTOL * (jnp.abs(theta[:, None, :]) + jnp.abs(theta[None, :, :])) + SAME_SE * se_best
    same = jnp.all(gap <= tolerance, axis=-1) & converged[:, None] & converged[None, :]
    earlier = jnp.tril(jnp.ones_like(same), k=-1)
    representative = converged & ~jnp.any(same & earlier, axis=1)
    other = representative & ~same[best_index]
    any_other = jnp.any(other)
    next_loglik = jnp.max(jnp.where(other, loglik, -jnp.inf))
    far = jnp.max(jnp.abs(theta - theta[best_index]) / jnp.where(se_best > 0, se_best, jnp.nan), axis=1)
    return Multistart(
        best=best, fits=fits, n_optima=jnp.sum(representative),
        loglik_gap=jnp.where(any_other, loglik[best_index] - next_loglik, jnp.nan),
        distance=jnp.where(any_other, jnp.max(jnp.where(other, far, -jnp.inf)), jnp.nan))


def _start_points(spec: FitSpec, init, starts, noise, spread, data, weights, mask):
    """The ``S`` starts of one dataset (traceable): the user's ``starts`` (a leading axis
    ``S``), or None for ``init`` (or ``init(data)``) moved by ``noise`` ``(S, k)``."""
    if starts is not None:
        return starts
    space = spec.space
    # As in fit: a data-driven start sees padding replaced by an active observation.
    safe = likelihood(spec.model, space, data, weights, mask).data
    z0 = space.to_unconstrained(spec.init_fn(safe) if spec.init_fn is not None else init)
    z0 = z0.astype(noise.dtype)
    return jax.vmap(space.to_constrained)(z0 + spread * jnp.maximum(jnp.abs(z0), 1.0) * noise)


def _batch_start_points(spec, init, starts, noise, spread, data, weights, mask):
    """``(B, S, ...)`` starts of every dataset."""
    one = lambda d, w, m: _start_points(spec, init, starts, noise, spread, d, w, m)
    return jax.vmap(one)(data, weights, mask)


_batch_start_points_compiled = _xla.jit(_batch_start_points, static_argnums=0)
_compare_batch = _xla.jit(lambda spec, fits: jax.vmap(lambda f: compare_starts(spec, f))(fits),
                          static_argnums=0)


def _solve(spec: FitSpec, init_values, user_starts, noise, spread, data, weights, mask,
           chunk_size) -> Multistart:
    """Every start of every dataset of a batch as a dataset of its own in one batched fit
    (its straggler compaction lets a slow start hold one lane, not its dataset's others);
    then the starts of each dataset are compared."""
    count = noise.shape[0]
    batch = _validation.batch_size_of(data)
    points = _batch_start_points_compiled(spec, init_values, user_starts, noise, spread, data,
                                          weights, mask)
    flat = lambda tree: jax.tree_util.tree_map(
        lambda leaf: np.asarray(leaf).reshape((batch * count, *np.shape(leaf)[2:])), tree)
    repeat = lambda tree: jax.tree_util.tree_map(lambda leaf: np.repeat(leaf, count, axis=0), tree)
    data, weights, mask = repeat(data), repeat(weights), repeat(mask)
    fixed = dataclasses.replace(spec, init_fn=None)
    chunk = _engine.resolve_chunk_size(chunk_size, fixed, (data, weights, mask))
    lay = _batch.layout(batch * count, chunk, jax.local_device_count())
    fits = _reduced.settle(_engine.dispatch(fixed, lay, None, data, weights, mask,
                                            starts=flat(points)))
    fits = jax.tree_util.tree_map(lambda leaf: leaf[:batch * count].reshape((batch, count, *leaf.shape[1:])),
                                  fits)
    return jax.device_get(_compare_batch(spec, fits))


def _host_starts(starts, space, dtype):
    """User starts (a pytree like init with a leading axis S) as host arrays, each start
    checked to lie in the support."""
    starts = _validation.as_host_tree(starts, dtype, "starts")
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None
             for leaf in jax.tree_util.tree_leaves(starts)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError("starts must be an int or a pytree like init whose leaves all have "
                         f"the same leading axis (one row per start); got leading sizes {sizes}")
    if jax.tree_util.tree_structure(starts) != space.treedef:
        raise ValueError("starts must have the pytree structure of init, with a leading axis")
    for s in range(sizes.pop()):
        _parameters.check_in_support(space, _take(starts, s))
    return starts


@_precision.public
def multistart(log_density: Callable, init, data, *, starts=16, spread: float = 1.0,
               seed: int = 0, batched: bool = False, mask=None, method="newton",
               constraints=None, log_prior: Callable | None = None, cov: str = "observed",
               weights=None, max_iter: int | None = None, gtol: float | None = None,
               precision: str = "float64", chunk_size: int | None = None) -> Multistart:
    """Fits from many starts at once and keeps the best; finds and counts local optima.

    Args:
        log_density, init, data, method, constraints, log_prior, cov, weights, max_iter,
            gtol, precision: as for ``jm.fit`` (``jm.fit_batch`` when ``batched``);
            ``log_density`` may be a ``jm.Model``.
        starts: the number ``S`` of default starts (the start itself and ``S - 1`` around
            it, see the module notes), or explicit starts: a pytree like ``init`` with a
            leading axis ``S`` (shared by every dataset of a batch).
        spread: size of the default perturbation in unconstrained coordinates.
        seed: seed of the default perturbations.
        batched: ``data`` holds ``B`` datasets along a leading axis (``mask`` as in
            ``fit_batch``); every array of the result then has a leading axis ``B``.
        chunk_size: starts vectorised together (default: chosen from the data size, as
            in ``fit_batch``).

    Returns:
        A ``Multistart``: ``best`` (the ``Fit`` to report), ``fits`` (every start),
        ``n_optima``, ``multimodal``, ``loglik_gap``, ``distance``. All starts are fitted
        as ``B * S`` datasets of one batched fit (memory: ``S`` times the data).

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> rng = np.random.default_rng(0)
        >>> x = np.concatenate([rng.normal(-2, 0.5, 150), rng.normal(2, 0.5, 150)])
        >>> ms = jm.multistart(jm.models.gaussian_mixture(2), None, x, starts=8)
        >>> bool(ms.best.converged), ms.best.params["mu"].round().tolist()
        (True, [-2.0, 2.0])
    """
    spec, init_values, data, weights, mask = _engine._prepare(
        log_density, init, data, method=method, constraints=constraints,
        log_prior=log_prior, cov=cov, weights=weights, mask=mask if batched else None,
        max_iter=max_iter, gtol=gtol, precision=precision, batched=batched)
    if mask is not None and not batched:
        raise ValueError("mask is for batched=True; a single dataset uses weights")
    dtype = np.dtype(precision)
    if isinstance(starts, (int, np.integer)) and not isinstance(starts, bool):
        if int(starts) < 1:
            raise ValueError(f"starts must be >= 1, got {starts}")
        noise = np.random.default_rng(seed).standard_normal((int(starts), spec.space.n_free))
        noise[0] = 0.0
        noise, user_starts = noise.astype(dtype), None
    else:
        user_starts = _host_starts(starts, spec.space, dtype)
        count = jax.tree_util.tree_leaves(user_starts)[0].shape[0]
        noise = np.zeros((count, spec.space.n_free), dtype)
    spread = np.asarray(spread, dtype)
    if batched:
        return _solve(spec, init_values, user_starts, noise, spread, data, weights, mask,
                      chunk_size)
    # A single dataset is a batch of one.
    one = lambda tree: jax.tree_util.tree_map(lambda leaf: leaf[None], tree)
    result = _solve(spec, init_values, user_starts, noise, spread, one(data), one(weights),
                    None, chunk_size)
    return result[0]
