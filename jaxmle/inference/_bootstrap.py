"""The bootstrap: standard errors and intervals from refitting resampled or simulated data.

**Nonparametric** (the default): each replicate draws a dataset's observations with
replacement, as many as it has, and refits (Efron & Tibshirani, *An Introduction to the
Bootstrap*, 1993, chapter 6). An observation is one index of the leading axis of every
per-observation data leaf (a leaf whose leading axis has the ``n`` of the log-density's
per-observation terms; other leaves are kept whole); only active observations are drawn
(``mask`` True and, with ``weights``, weight > 0; a row keeps its weight). **Parametric**
(``simulate``): each replicate is ``simulate(key, fit.params)``, a dataset drawn from the
fitted model (Efron & Tibshirani 1993, section 6.5), refitted.

Statistics of each parameter entry, over the replicates that converged:

- standard error: the replicates' sample standard deviation, divisor ``R - 1`` (Efron &
  Tibshirani 1993, eq. 6.6);
- percentile interval: the ``(1 - level) / 2`` and ``(1 + level) / 2`` sample quantiles of
  the replicates (Efron & Tibshirani 1993, chapter 13; numpy's default linear interpolation);
- basic interval: ``(2 theta_hat - q_upper, 2 theta_hat - q_lower)`` (Davison & Hinkley,
  *Bootstrap Methods and their Application*, 1997, eq. 5.6).

Replicates that did not converge are left out of the statistics and counted
(``n_failed``, with a warning). Where the fit itself did not converge, its statistics are
NaN: the bootstrap describes the distribution of an MLE, and there is none to describe.

**Resampled copies, not frequency weights.** A resample is materialised (``x[indices]``)
rather than given as multinomial counts in ``weights=`` on the original data:
``fit_batch`` needs every data leaf with the batch axis, so the weighted form copies the
data as well and adds the weights; copies were faster in every case measured
(``docs/design.md``). Copies also work with a scalar (total) log-density, which cannot take weights.

**One call.** All replicates of all datasets are fitted in one ``jm.fit_batch`` call, each
warm-started at its dataset's estimate. When their data would exceed ``MEMORY_BYTES`` they
stream through ``jm.fit_stream`` in blocks of that size instead, generated as they are
needed, so memory stays bounded (results agree to rounding).

**Reproducible draws.** Dataset ``b`` of a batch is bootstrapped exactly as a single call
with ``seed + b`` would be. Nonparametric: replicate ``r`` draws the ``r``-th row of
``np.random.default_rng(seed + b).integers(0, n_b, size=(replicates, n_b))``, indices into
the ``n_b`` active observations in order. Parametric: replicate ``r`` simulates with the key
``jax.random.fold_in(jax.random.key(seed + b), r)``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxmle.batch import _batched
from jaxmle.batch._batched import Batched
from jaxmle.batch._stream import Block, concat_fits, fit_stream
from jaxmle.core import _engine, _precision, _summary, _validation
from jaxmle.core._fit import Fit
from jaxmle.core._status import Status

# Replicate data (with weights, masks and starts) fitted in one ``fit_batch`` call at most;
# a fit's peak memory is a few times its data. Above it, ``fit_stream`` blocks of this size.
MEMORY_BYTES = 512 * 2**20


@dataclasses.dataclass(frozen=True)
class Bootstrap(Batched):
    """Result of ``jm.bootstrap``; a batch adds a leading axis ``B`` to every array
    (``len(boot)``, ``boot[i]``).

    Attributes:
        estimate: the fit's estimate, a pytree like ``params``.
        se: bootstrap standard errors, a pytree like ``params``.
        percentile: ``(lower, upper)`` percentile interval, two pytrees like ``params``.
        basic: ``(lower, upper)`` basic interval, two pytrees like ``params``.
        fits: every replicate's ``Fit``, leading axis ``R`` (``(B, R)`` for a batch).
        n_failed: replicates that did not converge (left out of the statistics).
        level: the confidence level of the intervals.
        kind: ``"nonparametric"`` or ``"parametric"``.
    """

    estimate: Any
    se: Any
    percentile: tuple[Any, Any]
    basic: tuple[Any, Any]
    fits: Fit
    n_failed: Any
    level: float
    kind: str

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``(B,)`` for the bootstrap of a batched fit, ``()`` for a single one."""
        return tuple(np.shape(self.n_failed))

    @property
    def replicates(self):
        """The replicate estimates: a pytree like ``params``, leading axis ``R`` (``(B, R)``)."""
        return self.fits.params

    def __str__(self) -> str:
        names = self.fits.names
        replicates = self.fits.batch_shape[-1]
        if len(self.fits.batch_shape) == 2:
            failed = np.asarray(self.n_failed)
            return (f"Bootstrap ({self.kind}) of {failed.size} datasets, {replicates} replicates "
                    f"each; {failed.sum()} replicates did not converge (at most {failed.max()} "
                    "of one dataset) and were left out")
        columns = [_summary.flat(self.estimate), _summary.flat(self.se),
                   *(_summary.flat(end) for end in (*self.percentile, *self.basic))]
        width = max([9] + [len(name) for name in names])
        pct = f"{100 * self.level:g}%"
        header = (f"{'parameter':<{width}} {'estimate':>12} {'boot se':>11} "
                  f"{pct + ' percentile':>27} {pct + ' basic':>27}")
        rows = [f"{name:<{width}} {est:>12.6g} {se:>11.4g} {lo:>13.6g} {hi:>13.6g} "
                f"{basic_lo:>13.6g} {basic_hi:>13.6g}"
                for name, est, se, lo, hi, basic_lo, basic_hi in zip(names, *columns)]
        rule = "-" * len(header)
        return "\n".join([
            f"Bootstrap ({self.kind}), {replicates} replicates", rule, header, rule, *rows, rule,
            f"{int(self.n_failed)} replicates did not converge and were left out"])


_batched.register(Bootstrap, meta_fields=("level", "kind"))


def check_level(level: float) -> float:
    """``level`` if it lies strictly between 0 and 1, else ValueError."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    return float(level)


def check_count(count, name: str) -> int:
    """``count`` as an int if it is an integer >= 2, else ValueError."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 2:
        raise ValueError(f"{name} must be an integer >= 2, got {count!r}")
    return int(count)


def check_seed(seed, datasets: int) -> int:
    """``seed`` if ``seed, ..., seed + datasets - 1`` are valid unsigned 32-bit seeds."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0 \
            or seed + datasets > 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32 - {datasets}] (dataset b uses "
                         f"seed + b), got {seed!r}")
    return int(seed)


def take(tree, index):
    """Rows ``index`` of every leaf of a host pytree."""
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[index], tree)


# ----- simulation --------------------------------------------------------------------------


def _draw(simulate: Callable, n: int | None, seeds, replicate, params):
    """One dataset per row: ``simulate(fold_in(key(seeds[i]), replicate[i]), params[i])``."""
    def one(seed, r, row_params):
        key = jax.random.fold_in(jax.random.key(seed), r)
        return simulate(key, row_params) if n is None else simulate(key, row_params, n)
    return jax.vmap(one)(seeds, replicate, params)


_draw_compiled = jax.jit(_draw, static_argnums=(0, 1))


def simulated_shapes(simulate: Callable, n: int | None, params):
    """The shape/dtype pytree of ``simulate(key, params)`` (``(key, params, n)`` with ``n``).

    Raises:
        TypeError: ``simulate`` is not callable, not traceable, or returns no arrays.
    """
    if not callable(simulate):
        raise TypeError(f"simulate must be a function simulate(key, params) -> data, got {simulate!r}")
    out = _validation._traced(
        lambda key, p: simulate(key, p) if n is None else simulate(key, p, n),
        "simulate", jax.random.key(0), params)
    leaves = jax.tree_util.tree_leaves(out)
    if not leaves or not all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves):
        raise TypeError(f"simulate(key, params) must return a pytree of arrays (one dataset), "
                        f"got {out!r}")
    return out


def simulated(simulate: Callable, n: int | None, seed: int, replicates: int, params, start: int,
              stop: int):
    """Datasets ``start .. stop - 1`` of ``B x replicates``: global index ``g`` is replicate
    ``g % replicates`` of parameter row ``g // replicates``, keyed ``seed + g // replicates``.

    Returns:
        The data as host arrays, leading axis ``stop - start``.
    """
    index = np.arange(start, stop)
    dataset, replicate = index // replicates, index % replicates
    seeds = (seed + dataset).astype(np.uint32)
    data = _draw_compiled(simulate, n, seeds, replicate.astype(np.uint32), take(params, dataset))
    return jax.tree_util.tree_map(np.asarray, jax.device_get(data))


# ----- fitting many replicates ---------------------------------------------------------------


class Datasets(NamedTuple):
    """Datasets to fit (host arrays, common leading axis) and, optionally, each one's start."""

    data: Any
    weights: Any = None
    mask: Any = None
    starts: Any = None


@functools.lru_cache(maxsize=64)
def _on_data(log_density: Callable) -> Callable:
    """``log_density`` of ``(data, start)`` pairs (one object per model, so compiled fits are
    reused): the start travels with each dataset, so each can be warm-started at its own."""
    def log_density_of_pair(params, data_and_start):
        return log_density(params, data_and_start[0])
    return log_density_of_pair


def _start(data_and_start):
    return data_and_start[1]


def _nbytes(datasets: Datasets) -> int:
    return sum(np.asarray(leaf).nbytes for leaf in jax.tree_util.tree_leaves(tuple(datasets)))


def fit_datasets(log_density: Callable, init, make: Callable[[int, int], Datasets], total: int,
                 options: dict) -> Iterator[tuple[Fit, Datasets]]:
    """Fits ``total`` datasets made by ``make(start, stop)``; yields ``(fits, datasets)`` per
    block.

    One ``fit_batch`` call when the datasets take at most ``MEMORY_BYTES``, else
    ``fit_stream`` blocks of that size, each made when it is needed. Where ``make`` gives
    ``starts``, each dataset starts at its own (``init`` is then ignored).

    Args:
        log_density, init: the model (a function, or a ready model when there are no starts).
        make: ``make(start, stop) -> Datasets``: datasets ``start .. stop - 1``.
        total: the number of datasets.
        options: keyword options of ``fit_stream`` (method, constraints, log_prior, cov,
            max_iter, gtol, precision, chunk_size).
    """
    first = make(0, min(total, 1))
    block_size = max(1, min(total, MEMORY_BYTES // max(_nbytes(first), 1)))
    carried = first.starts is not None
    model = _on_data(log_density) if carried else log_density
    init = _start if carried else init

    def fit_data(datasets: Datasets):
        return (datasets.data, datasets.starts) if carried else datasets.data

    if block_size >= total:
        datasets = make(0, total)
        yield _engine.fit_batch(model, init, fit_data(datasets), weights=datasets.weights,
                                mask=datasets.mask, **options), datasets
        return
    made = collections.deque()

    def blocks():
        for start in range(0, total, block_size):
            made.append(make(start, min(start + block_size, total)))
            yield Block(fit_data(made[-1]), made[-1].mask, made[-1].weights)

    for fits in fit_stream(model, init, blocks(), block_size=block_size, **options):
        yield fits, made.popleft()


def constraint_tree(space):
    """The constraints of a ``ParameterSpace`` as a pytree matching the parameters."""
    return jax.tree_util.tree_unflatten(space.treedef, space.constraints)


# ----- nonparametric resampling ------------------------------------------------------------------


def _observation_count(spec, data) -> int:
    """``n``: the model's per-observation count, or (scalar log-density) the common leading
    axis of the per-dataset data leaves."""
    if spec.model.n_obs_axis is not None:
        return spec.model.n_obs_axis
    sizes = {np.shape(leaf)[1] for leaf in jax.tree_util.tree_leaves(data) if np.ndim(leaf) >= 2}
    if len(sizes) != 1:
        shapes = [np.shape(leaf)[1:] for leaf in jax.tree_util.tree_leaves(data)]
        raise ValueError("the nonparametric bootstrap resamples the leading axis of the data "
                         f"leaves, but their shapes {shapes} share none; return per-observation "
                         "terms from log_density (then n is known), or pass simulate")
    return sizes.pop()


def _resampler(data, weights, mask, n: int, seed: int, replicates: int):
    """``make(start, stop)`` of nonparametric replicates of a batch (leading axis ``B``)."""
    batch = _validation.batch_size_of(data)
    active = np.ones((batch, n), bool) if mask is None else mask.copy()
    if weights is not None:
        active &= weights > 0
    counts = active.sum(axis=1)
    masked = mask is not None or bool(np.any(counts < n))

    def rows_of(b):
        """``(replicates, n)`` observation indices of dataset ``b``'s replicates (padding: any
        active observation; it is masked out)."""
        positions = np.flatnonzero(active[b])
        rows = np.full((replicates, n), positions[0] if positions.size else 0, np.intp)
        if positions.size:
            draws = np.random.default_rng(seed + b).integers(0, positions.size,
                                                             size=(replicates, positions.size))
            rows[:, :positions.size] = positions[draws]
        return rows

    def make(start, stop):
        index = np.arange(start, stop)
        dataset = index // replicates
        rows = np.empty((stop - start, n), np.intp)
        for b in np.unique(dataset):
            here = dataset == b
            rows[here] = rows_of(b)[index[here] % replicates]

        def resample(leaf):
            if np.ndim(leaf) >= 2 and leaf.shape[1] == n:
                return leaf[dataset[:, None], rows]
            return leaf[dataset]

        return Datasets(
            data=jax.tree_util.tree_map(resample, data),
            weights=None if weights is None else weights[dataset[:, None], rows],
            mask=np.arange(n) < counts[dataset][:, None] if masked else None)

    return make


# ----- the public function ---------------------------------------------------------------------


@_precision.public
def bootstrap(fit: Fit, data, *, replicates: int = 1000, simulate: Callable | None = None,
              seed: int = 0, level: float = 0.95, mask=None, weights=None, method="newton",
              max_iter: int | None = None, gtol: float | None = None,
              chunk_size: int | None = None) -> Bootstrap:
    """Bootstrap standard errors and percentile and basic intervals of a single or batched fit.

    Every replicate is refitted with the fit's own model (``fit.model``: its constraints
    and log-prior). See the module notes for the resampling, the statistics and the
    reproducible draws.

    Args:
        fit: the ``Fit`` from ``jm.fit``, or a batched one from ``jm.fit_batch``.
        data: the data the fit used (leading axis ``B`` for a batch).
        replicates: bootstrap replicates ``R`` per dataset (>= 2; the Monte-Carlo relative
            error of a bootstrap SE is about ``1 / sqrt(2 R)``).
        simulate: None for the nonparametric bootstrap, or ``simulate(key, params) -> data``
            (one dataset shaped like ``data``'s) for the parametric one, evaluated at
            ``fit.params``; a ready model's with ``lambda key, p: model.simulate(key, p, n)``.
            In a batch, replicates of dataset ``b`` keep its ``mask[b]`` (and ``weights[b]``).
        seed: seed of the draws; dataset ``b`` of a batch uses ``seed + b``.
        level: confidence level of the intervals, in (0, 1).
        mask, weights: as given to the fit (``mask`` for a batch only).
        method, max_iter, gtol, chunk_size: as for ``jm.fit_batch``; the precision is the
            fit's.

    Returns:
        A ``Bootstrap``: ``se``, ``percentile``, ``basic``, ``replicates``, ``fits``,
        ``n_failed`` (with the batch axis ``B`` for a batch).

    Raises:
        ValueError, TypeError: ``replicates < 2``, ``level`` outside (0, 1), data or
            ``simulate`` output unlike the fit's data, and the structural errors of
            ``jm.fit_batch``.

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> x = np.random.default_rng(0).exponential(0.5, size=300)
        >>> fit = jm.fit(jm.models.exponential, None, x)
        >>> boot = jm.bootstrap(fit, x, replicates=200)
        >>> lower, upper = boot.percentile
        >>> int(boot.n_failed), bool(abs(boot.se["rate"] / fit.se["rate"] - 1) < 0.2)
        (0, True)
        >>> bool(lower["rate"] < fit.params["rate"] < upper["rate"])
        True
    """
    model = _engine.model_of(fit)
    replicates = check_count(replicates, "replicates")
    level = check_level(level)
    fit_batched = bool(fit.batch_shape)
    if mask is not None and not fit_batched:
        raise ValueError("mask is for a batched fit; a single dataset uses weights")
    datasets = len(fit) if fit_batched else 1
    seed = check_seed(seed, datasets)
    precision = _precision.of_fit(fit)
    template = fit[0].params if fit_batched else fit.params
    spec, _, data, weights, mask = _engine._prepare(
        model, lambda _: template, data, method=method, constraints=None,
        log_prior=None, cov="observed", weights=weights, mask=mask, max_iter=max_iter,
        gtol=gtol, precision=precision, batched=fit_batched)
    if fit_batched and _validation.batch_size_of(data) != datasets:
        raise ValueError(f"fit has {datasets} datasets but data has "
                         f"{_validation.batch_size_of(data)}")
    # Inside, a single dataset is a batch of one.
    if not fit_batched:
        data, weights = take(data, None), None if weights is None else weights[None]
    params = take(fit.params, None) if not fit_batched else fit.params
    if simulate is None:
        make_data = _resampler(data, weights, mask, _observation_count(spec, data), seed,
                               replicates)
    else:
        expected = _validation.abstract(take(data, 0))
        got = simulated_shapes(simulate, None, template)
        if jax.tree_util.tree_structure(got) != jax.tree_util.tree_structure(expected) or [
                leaf.shape for leaf in jax.tree_util.tree_leaves(got)] != [
                leaf.shape for leaf in jax.tree_util.tree_leaves(expected)]:
            raise ValueError("simulate(key, params) must return one dataset shaped like the "
                             f"fit's data: expected {expected}, got {got}")

        def make_data(start, stop):
            dataset = np.arange(start, stop) // replicates
            return Datasets(simulated(simulate, None, seed, replicates, params, start, stop),
                            None if weights is None else weights[dataset],
                            None if mask is None else mask[dataset])

    def make(start, stop):
        datasets = make_data(start, stop)
        return datasets._replace(starts=take(params, np.arange(start, stop) // replicates))

    options = {"method": method, "constraints": constraint_tree(spec.space),
               "log_prior": model.log_prior, "cov": "observed", "max_iter": max_iter, "gtol": gtol,
               "precision": precision, "chunk_size": chunk_size}
    fits = concat_fits(block for block, _ in fit_datasets(
        spec.model.log_density, None, make, datasets * replicates, options))

    # The replicates were fitted through a wrapper that carries each start with its data;
    # what they fitted is the fit's model.
    fits = dataclasses.replace(jax.tree_util.tree_map(
        lambda leaf: leaf.reshape((datasets, replicates) + leaf.shape[1:]), fits), model=model)
    result = _statistics(spec.space, fits, params, np.asarray(fit.converged).reshape(datasets), level,
                         "parametric" if simulate is not None else "nonparametric")
    if int(np.sum(result.n_failed)):
        counts = collections.Counter(Status(int(code)).name for code in
                                     np.asarray(fits.status)[~np.asarray(fits.converged)])
        warnings.warn(f"{int(np.sum(result.n_failed))} of {datasets * replicates} bootstrap "
                      f"replicates did not converge ({dict(counts)}) and were left out of the "
                      "statistics; see .n_failed and .fits.status", RuntimeWarning, stacklevel=2)
    return result if fit_batched else result[0]


def _statistics(space, fits: Fit, params, fit_converged, level: float, kind: str) -> Bootstrap:
    """SE and intervals of each dataset (axis 0) over its converged replicates (axis 1)."""
    datasets, replicates = fits.batch_shape
    values = _summary.flat_batch(fits.params, datasets * replicates).reshape(datasets, replicates, -1)
    estimate = _summary.flat_batch(params, datasets)
    ok = np.asarray(fits.converged)
    kept = np.where(ok[..., None], values, np.nan)
    alpha = 0.5 * (1.0 - level)
    with warnings.catch_warnings():  # datasets with fewer than 2 converged replicates: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        se = np.nanstd(kept, axis=1, ddof=1)
        lower, upper = np.nanquantile(kept, [alpha, 1.0 - alpha], axis=1)
    usable = ((ok.sum(axis=1) >= 2) & fit_converged)[:, None]
    se, lower, upper = (np.where(usable, value, np.nan) for value in (se, lower, upper))
    unflatten = space.unflatten
    return Bootstrap(
        estimate=unflatten(estimate), se=unflatten(se), percentile=(unflatten(lower), unflatten(upper)),
        basic=(unflatten(2.0 * estimate - upper), unflatten(2.0 * estimate - lower)), fits=fits,
        n_failed=replicates - ok.sum(axis=1), level=level, kind=kind)
