"""Calibration by simulation: how estimates, standard errors and intervals behave at a truth.

``jm.calibrate`` simulates ``R`` datasets at known parameters, fits them all in one batch
(``jm.fit_batch``, or ``jm.fit_stream`` blocks when the data would exceed
``jaxmle.inference._bootstrap.MEMORY_BYTES``) and reports, per parameter entry, the performance
measures of Morris, White & Crowther ("Using simulation studies to evaluate statistical
methods", *Statistics in Medicine* 38, 2019, table 6), with their Monte-Carlo standard errors:

- over the ``R_c`` converged replicates: bias (MC SE ``sd / sqrt(R_c)``), RMSE, the mean
  standard error, the empirical standard deviation of the estimates (divisor ``R_c - 1``),
  and their ratio, the SE ratio (about 1 when the SEs are right; MC SE about
  ``ratio / sqrt(2 (R_c - 1))``, the error of the empirical SD);
- over **all** ``R`` replicates: the coverage of each interval kind (MC SE
  ``sqrt(c (1 - c) / R)``). Where a procedure gives no interval (NaN ends) it does not
  cover: the Wald interval exists only where the fit converged. Leaving such datasets out
  would overstate coverage: with Bernoulli n = 10, p = 0.2, the 10.7% of datasets with no
  success are fitted at the boundary (``BOUNDARY``, NaN standard error; the textbook Wald
  interval is then the point ``[0, 0]``, a miss as well). The Wald coverage among the
  converged replicates is ``coverage / converged``.

**Interval kinds** are the mapping ``INTERVALS``: name -> ``function(replicated, level) ->
(lower, upper)``, pytrees like ``params`` with the replicates' leading axis and NaN where
the kind gives no interval, where ``replicated`` is a ``Replicated`` (the fits of a block of
replicates, the data they were fitted to, and the model and options). A new kind is one
entry. Two are built in: ``"wald"`` and ``"profile"`` (``jm.profile``; entries under a
``simplex``/``ordered`` constraint cannot be profiled and get no interval; an open end is
the edge of the support, so it covers every truth on its side).

**Batches of truths** (``batched=True``): every leaf of ``truth`` has a leading axis ``T``;
all ``T x R`` datasets are fitted in one call and every result gets the axis ``T``.
Truth ``t`` is simulated exactly as a single call with ``seed + t`` would; replication ``r``
uses the key ``jax.random.fold_in(jax.random.key(seed + t), r)``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxmle.batch import _batched
from jaxmle.batch._batched import Batched
from jaxmle.batch._stream import concat_fits
from jaxmle.core import _engine, _parameters, _precision, _summary, _validation
from jaxmle.core._fit import Fit
from jaxmle.core._status import Status
from jaxmle.inference import _bootstrap
from jaxmle.inference import _profile as _profile_module
from jaxmle.models import ReadyModel


class Replicated(NamedTuple):
    """What an interval kind sees: a block of fitted replicates (see ``INTERVALS``).

    Attributes:
        fits: the batched ``Fit`` of the block (``fits.model`` is the model calibrated).
        data: the simulated data they were fitted to (host arrays, same leading axis).
    """

    fits: Fit
    data: Any


def _wald(replicated: Replicated, level: float):
    """``estimate -/+ z se`` where the fit converged, NaN (no interval) elsewhere."""
    fits = replicated.fits
    converged = np.asarray(fits.converged)

    def where_converged(bound):
        return np.where(converged.reshape(converged.shape + (1,) * (bound.ndim - 1)), bound, np.nan)

    return jax.tree_util.tree_map(where_converged, fits.conf_int(level))


def _profile(replicated: Replicated, level: float):
    """Profile-likelihood intervals (``jm.profile``); NaN where the fit or a profile failed."""
    result = _profile_module.profile(replicated.fits, replicated.data, level=level)
    return result.lower, result.upper


INTERVALS: dict[str, Callable[[Replicated, float], tuple[Any, Any]]] = {
    "wald": _wald, "profile": _profile}


@dataclasses.dataclass(frozen=True)
class Calibration(Batched):
    """Result of ``jm.calibrate``; per-parameter fields are pytrees like ``params``.

    A batch of truths adds a leading axis ``T`` to every array (``len(cal)``, ``cal[t]``).
    ``str()`` is a text table.

    Attributes:
        truth: the true parameters.
        bias, bias_mcse: mean of estimate - truth over converged replicates, and its
            Monte-Carlo standard error.
        rmse: root mean squared error over converged replicates.
        mean_se: mean of the fits' standard errors over converged replicates.
        sd: empirical standard deviation of the estimates over converged replicates.
        se_ratio, se_ratio_mcse: ``mean_se / sd`` and its Monte-Carlo standard error.
        coverage, coverage_mcse: dicts interval kind -> pytree: the fraction of all
            replicates whose interval holds the truth (no interval, NaN, is a miss).
        converged: the fraction of replicates whose fit converged.
        replicates: ``R``.
        level: the intervals' confidence level.
        fits: every replication's ``Fit``, leading axis ``R`` (``(T, R)`` for a batch).
    """

    truth: Any
    bias: Any
    bias_mcse: Any
    rmse: Any
    mean_se: Any
    sd: Any
    se_ratio: Any
    se_ratio_mcse: Any
    coverage: dict[str, Any]
    coverage_mcse: dict[str, Any]
    converged: Any
    replicates: int
    level: float
    fits: Fit

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``(T,)`` for a batch of truths, ``()`` for a single truth."""
        return tuple(np.shape(self.converged))

    def __str__(self) -> str:
        if not self.batch_shape:
            return self._table()
        return "\n\n".join(truth._table(t) for t, truth in enumerate(self))

    def _table(self, t: int | None = None) -> str:
        """The table of a single truth (``t``: its index in a batch, for the title)."""
        pick = _summary.flat
        fits = self.fits
        names = fits.names
        width = max([9] + [len(name) for name in names])
        kinds = list(self.coverage)
        header = (f"{'parameter':<{width}} {'truth':>10} {'bias (mc se)':>22} {'rmse':>10} "
                  f"{'mean se':>10} {'emp. sd':>10} {'se ratio (mc se)':>18}"
                  + "".join(f" {kind + ' cover (mc se)':>22}" for kind in kinds))
        columns = [pick(self.truth), pick(self.bias), pick(self.bias_mcse), pick(self.rmse),
                   pick(self.mean_se), pick(self.sd), pick(self.se_ratio), pick(self.se_ratio_mcse),
                   *[pick(self.coverage[kind]) for kind in kinds],
                   *[pick(self.coverage_mcse[kind]) for kind in kinds]]
        rows = []
        for j, name in enumerate(names):
            truth, bias, bias_mc, rmse, mean_se, sd, ratio, ratio_mc = (c[j] for c in columns[:8])
            cover = columns[8:8 + len(kinds)]
            cover_mc = columns[8 + len(kinds):]
            rows.append(f"{name:<{width}} {truth:>10.4g} {bias:>11.3e} ({bias_mc:>8.2e}) "
                        f"{rmse:>10.4g} {mean_se:>10.4g} {sd:>10.4g} {ratio:>9.4f} ({ratio_mc:.4f})"
                        + "".join(f" {c[j]:>13.4f} ({m[j]:.4f})" for c, m in zip(cover, cover_mc)))
        status = np.asarray(fits.status)
        failed = collections.Counter(Status(int(code)).name for code in status[status != Status.CONVERGED])
        converged = float(self.converged)
        rule = "-" * len(header)
        title = "Calibration" + ("" if t is None else f" at truth {t}")
        return "\n".join([
            (f"{title}: {self.replicates} replicates, {100 * self.level:g}% intervals "
             f"({fits.method}, cov={fits.cov_kind})"), rule, header, rule, *rows, rule,
            f"converged {100 * converged:.2f}%"
            + ("" if not failed else "; not converged: " + ", ".join(
                f"{name} {count}" for name, count in failed.most_common()))
            + " (estimates: converged fits; coverage: all replicates, no interval = miss)"])


_batched.register(Calibration, meta_fields=("replicates", "level"))


@_precision.public
def calibrate(log_density: Callable, simulate: Callable | None, truth, *, replicates: int = 1000,
              n: int | None = None, init=None, seed: int = 0, level: float = 0.95,
              intervals: Sequence[str] = ("wald",), batched: bool = False, method="newton",
              constraints=None, log_prior: Callable | None = None, cov: str = "observed",
              max_iter: int | None = None, gtol: float | None = None, precision: str = "float64",
              chunk_size: int | None = None) -> Calibration:
    """Simulates datasets at a known truth, fits them in one batch, and reports how well the
    estimates, standard errors and intervals are calibrated.

    See the module notes for the measures, their Monte-Carlo errors, how non-converged fits
    count, and how to add an interval kind.

    Args:
        log_density: the model to fit: a ``jm.Model`` (a ready model from ``jm.models``,
            say) or a bare log-density (then ``constraints`` and ``log_prior`` build it).
        simulate: ``simulate(key, params) -> data``, one dataset drawn at ``params``; with
            ``n``, called as ``simulate(key, params, n)``. None: the ready model's own
            ``simulate`` (which takes ``n``).
        truth: the true parameters, a pytree like the model's (a leading axis ``T`` on every
            leaf with ``batched=True``); each must lie inside the support.
        replicates: datasets ``R`` per truth (>= 2).
        n: observations per dataset, passed to ``simulate`` (None: ``simulate`` takes two
            arguments).
        init: start of every fit: a pytree or a callable ``init(data)``; None: the ready
            model's data-driven start, or else the truth.
        seed: seed of the simulation; truth ``t`` of a batch uses ``seed + t``.
        level: confidence level of the intervals, in (0, 1).
        intervals: interval kinds whose coverage is reported, names in ``INTERVALS``.
        batched: ``truth`` holds ``T`` truths along a leading axis.
        method, constraints, log_prior, cov, max_iter, gtol, precision, chunk_size: as for
            ``jm.fit_batch`` (``cov`` sets the standard errors being calibrated).

    Returns:
        A ``Calibration``; ``print()`` it for the table.

    Raises:
        ValueError, TypeError: ``replicates < 2``, ``level`` outside (0, 1), an unknown
            interval kind, a truth outside the support or unlike the model's parameters, a
            ``simulate`` whose data the model cannot take, no ``simulate`` for a model
            without one, and ``jm.fit_batch``'s errors.

    Example:
        >>> import jaxmle as jm
        >>> normal = jm.models.normal
        >>> cal = jm.calibrate(normal, normal.simulate, {"mu": 1.0, "sigma": 2.0}, n=200,
        ...                    replicates=2000)
        >>> float(cal.converged), bool(abs(cal.coverage["wald"]["mu"] - 0.95) < 0.02)
        (1.0, True)
        >>> bool(abs(cal.se_ratio["mu"] - 1) < 0.07)
        True
    """
    if simulate is None:
        if not (isinstance(log_density, ReadyModel) and log_density.simulate is not None):
            raise TypeError("calibrate needs simulate=: only the ready models of jm.models "
                            "bring their own")
        if n is None:
            raise ValueError("calibrate with a ready model's simulate needs n= (observations "
                             "per dataset)")
        simulate = log_density.simulate
    replicates = _bootstrap.check_count(replicates, "replicates")
    level = _bootstrap.check_level(level)
    kinds = [intervals] if isinstance(intervals, str) else list(intervals)
    unknown = [kind for kind in kinds if kind not in INTERVALS]
    if unknown or not kinds:
        raise ValueError(f"unknown interval kinds {unknown or kinds}; use some of {list(INTERVALS)}")
    dtype = np.dtype(_precision.check_precision(precision))
    truths = _validation.as_host_tree(truth, dtype, "truth")
    if batched:
        sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None
                 for leaf in jax.tree_util.tree_leaves(truths)}
        if len(sizes) != 1 or None in sizes:
            raise ValueError("with batched=True every leaf of truth needs the same leading "
                             f"axis T (one row per truth); got leading sizes {sizes}")
    else:
        truths = _bootstrap.take(truths, None)
    count = jax.tree_util.tree_leaves(truths)[0].shape[0]
    seed = _bootstrap.check_seed(seed, count)
    truth_one = _bootstrap.take(truths, 0)
    shapes = _bootstrap.simulated_shapes(simulate, n, truth_one)

    def make(start, stop):
        return _bootstrap.Datasets(_bootstrap.simulated(simulate, n, seed, replicates,
                                                        truths, start, stop))

    spec = _checked_spec(log_density, init, truth_one, make(0, 1).data, shapes,
                         method=method, constraints=constraints, log_prior=log_prior, cov=cov,
                         max_iter=max_iter, gtol=gtol, precision=precision)
    if jax.tree_util.tree_structure(truth_one) != spec.space.treedef:
        raise ValueError(f"truth {jax.tree_util.tree_structure(truth_one)} is unlike the "
                         f"model's parameters {spec.space.treedef}")
    for t in range(count):
        _parameters.check_in_support(spec.space, _bootstrap.take(truths, t))
    model = spec.fitted
    if init is None and not isinstance(model, ReadyModel):  # start every fit at its truth
        make_fits = lambda start, stop: make(start, stop)._replace(
            starts=_bootstrap.take(truths, np.arange(start, stop) // replicates))
        fitted, fit_init, fit_constraints, fit_prior = (
            spec.model.log_density, None, _bootstrap.constraint_tree(spec.space),
            model.log_prior)
    else:
        make_fits, fitted, fit_init, fit_constraints, fit_prior = make, model, init, None, None
    options = {"method": method, "constraints": fit_constraints, "log_prior": fit_prior,
               "cov": cov, "max_iter": max_iter, "gtol": gtol, "precision": precision,
               "chunk_size": chunk_size}
    flat_truths = _summary.flat_batch(truths, count)
    blocks, covered, done = [], {kind: [] for kind in kinds}, 0
    for fits, datasets in _bootstrap.fit_datasets(fitted, fit_init, make_fits,
                                                   count * replicates, options):
        # Fits started at the truth went through a wrapper that carries the start with
        # the data; what they fitted is the model.
        fits = dataclasses.replace(fits, model=model)
        # Interval kinds run block by block, next to the data the block was fitted to.
        replicated = Replicated(fits, datasets.data)
        truth_rows = flat_truths[np.arange(done, done + len(fits)) // replicates]
        for kind in kinds:
            covered[kind].append(_covered(INTERVALS[kind](replicated, level), len(fits), truth_rows))
        blocks.append(fits)
        done += len(fits)
    fits = concat_fits(blocks)

    fits = jax.tree_util.tree_map(
        lambda leaf: leaf.reshape((count, replicates) + leaf.shape[1:]), fits)
    result = _measures(spec.space, truths, fits, {kind: np.concatenate(c).reshape(
        count, replicates, -1) for kind, c in covered.items()}, level)
    return result if batched else result[0]


def _checked_spec(model, init, truth_one, data, shapes, **options):
    """The fit's validated spec on the first simulated dataset; a model that cannot take
    ``simulate``'s data fails here with both named."""
    start = init if init is not None or isinstance(model, ReadyModel) else truth_one
    try:
        spec, *_ = _engine._prepare(model, start, data, weights=None, mask=None,
                                    batched=True, **options)
    except (TypeError, ValueError) as error:
        raise type(error)(f"calibrate: fitting the data returned by simulate (one dataset: "
                          f"{shapes}) failed: {error}") from error
    return spec


def _covered(bounds, m: int, truth) -> np.ndarray:
    """``(m, k)``: ``lower <= truth <= upper`` (False at NaN ends), per replication and entry."""
    lower, upper = (_summary.flat_batch(bound, m) for bound in bounds)
    return (lower <= truth) & (truth <= upper)


def _measures(space, truths, fits: Fit, covered: dict, level: float) -> Calibration:
    """The performance measures of each truth (axis 0) over its replicates (axis 1)."""
    count, replicates = fits.batch_shape
    flat = lambda tree: _summary.flat_batch(tree, count * replicates).reshape(count, replicates, -1)
    truth = _summary.flat_batch(truths, count)[:, None, :]
    ok = np.asarray(fits.converged)[..., None]
    estimate = np.where(ok, flat(fits.params), np.nan)
    se = np.where(ok, flat(fits.se), np.nan)
    used = ok.sum(axis=1)  # (T, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        error = estimate - truth
        bias = np.nansum(error, axis=1) / used
        rmse = np.sqrt(np.nansum(error**2, axis=1) / used)
        centre = np.nansum(estimate, axis=1) / used
        sd = np.sqrt(np.nansum((estimate - centre[:, None, :]) ** 2, axis=1) / (used - 1))
        mean_se = np.nansum(se, axis=1) / used
        ratio = mean_se / sd
        coverage = {kind: c.mean(axis=1) for kind, c in covered.items()}
        unflatten = space.unflatten
        return Calibration(
            truth=truths, bias=unflatten(bias), bias_mcse=unflatten(sd / np.sqrt(used)),
            rmse=unflatten(rmse), mean_se=unflatten(mean_se), sd=unflatten(sd),
            se_ratio=unflatten(ratio), se_ratio_mcse=unflatten(ratio / np.sqrt(2.0 * (used - 1))),
            coverage={kind: unflatten(c) for kind, c in coverage.items()},
            coverage_mcse={kind: unflatten(np.sqrt(c * (1.0 - c) / replicates))
                           for kind, c in coverage.items()},
            converged=ok[..., 0].mean(axis=1), replicates=replicates, level=level, fits=fits)
