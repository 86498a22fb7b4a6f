"""``fit`` and ``fit_batch``: validation at the edge, one compiled solve per shape inside.

Only arrays and one hashable static ``FitSpec`` cross the ``jit`` boundary, so repeated fits
of new data of the same shape reuse the compiled function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np
import optax

from jaxmle.batch import _batch, _reduced
from jaxmle.core import (_clusters, _information, _model, _parameters, _precision, _retry,
                         _validation, _xla)
from jaxmle.core._fit import Fit
from jaxmle.core._objective import ModelForm
from jaxmle.core._solve import FitSpec, fit_one
from jaxmle.models import ReadyModel
from jaxmle.solvers import _optax_solver
from jaxmle.solvers._newton import Newton

METHODS = ("newton", "bfgs", "lbfgs")
# Newton's cap is a safety net, not a budget: a fit stops by its progress (``_loop.PATIENCE``).
# Crawls along curved valleys that reach their minimum take up to ~8,500 Newton iterations
# in benchmarks/hard_problems.py (Meyer from 100x its start; Osborne 1 from 100x with sigma
# free: 1,196), each of them cut short by a cap of 1,000.
DEFAULT_MAX_ITER = {"newton": 10_000, "bfgs": 500, "lbfgs": 500}
# In a batch, a dataset that crawls holds its chunk's lanes until it stops (``_batch``), and
# some crawls never arrive: of 8,000 two-component mixture fits from perturbed starts
# (benchmarks/inference.py), a few crawl on after a component collapsed onto one point,
# with gains above the loop's nil-gain window (``_loop.WINDOW``), and with a cap of 10,000
# the batch took 96 s against 36 s with 1,000. A batch's chunks therefore step with 1,000;
# ``fit_batch`` fits a dataset that reaches it again with the single fit's cap, in lanes of
# its own (``_retry.full_budget``).
DEFAULT_MAX_ITER_BATCH = {**DEFAULT_MAX_ITER, "newton": 1_000}
DEFAULT_MAX_ITER_OPTAX = 10_000
DEFAULT_GTOL = {"float64": 1e-10, "float32": 1e-5}
DEFAULT_XTOL = 1e-4


def _solver_for(method):
    if method == "newton":
        return Newton()
    if (isinstance(method, str) and method in METHODS) or isinstance(
            method, (optax.GradientTransformation, optax.GradientTransformationExtraArgs)):
        return _optax_solver.from_method(method)
    raise ValueError(f"unknown method {method!r}; use one of {list(METHODS)} "
                     "or an optax.GradientTransformation")


_fit_compiled = _xla.jit(fit_one, static_argnums=0)


def _prepare(model, init, data, *, method, constraints, log_prior, cov, weights, mask,
             max_iter, gtol, precision, batched, clusters=None):
    """Validates every input before tracing; returns ``(spec, init, data, weights, mask)``.

    ``model`` is a ``jm.Model`` (then ``constraints`` and ``log_prior`` may only repeat
    it) or a bare log-density (then they build the Model). With ``cov="cluster"`` the
    returned data is ``(data, cluster codes)`` and the spec's log-density ignores the codes
    (``_clusters``).
    """
    model = _model.resolve(model, constraints=constraints, log_prior=log_prior)
    if init is None:
        if not isinstance(model, ReadyModel):
            raise TypeError("init is required (None is only accepted with a ready model from "
                            "jm.models, which has a start of its own)")
        init = model.start
    log_density, constraints, log_prior = model.log_density, model.constraints, model.log_prior
    solver = _solver_for(method)
    if cov not in _information.COVARIANCES:
        raise ValueError(f"unknown cov {cov!r}; use one of {list(_information.COVARIANCES)}")
    dtype = np.dtype(precision)

    data = _validation.as_host_tree(data, dtype, "data")
    if isinstance(model, ReadyModel) and model.check is not None:
        model.check(data, None if mask is None else np.asarray(mask))
    batch = _validation.batch_size_of(data) if batched else None
    data_one = _validation.abstract(jax.tree_util.tree_map(lambda x: x[0], data) if batched else data)

    if callable(init) and not isinstance(init, (jax.Array, np.ndarray)):
        init_fn, init_values = init, None
        init_abstract = _validation.init_abstract_from(init_fn, data_one)
        space = _parameters.build(init_abstract, constraints)
    else:
        init_fn = None
        init_values, space = _validation.host_init(init, constraints, dtype)
        init_abstract = _validation.abstract(init_values)

    n = _validation.model_shapes(log_density, log_prior, init_abstract, data_one)
    if weights is not None:
        weights = _validation.check_observation_array(weights, "weights", n, batch, dtype)
    if mask is not None:
        mask = _validation.check_observation_array(mask, "mask", n, batch, bool)
    if cov != "observed" and n is None:
        raise ValueError(f'cov="{cov}" needs per-observation scores: log_density must return '
                         "a 1-D array of per-observation terms, but it returned a scalar")
    if not batched:
        _validation.check_no_nan(data, "data")
    if cov == "cluster":
        if clusters is None:
            raise ValueError('cov="cluster" needs clusters=: one label per observation '
                             f"({'(B, n)' if batched else '(n,)'})")
        data = (data, _clusters.encode(clusters, n, batch, mask))
        log_density = _clusters.IgnoringCodes(log_density)
        init_fn = None if init_fn is None else _clusters.IgnoringCodes(init_fn)
    elif clusters is not None:
        raise ValueError(f'clusters= is only used with cov="cluster", got cov="{cov}"')
    if max_iter is None:
        max_iter = (DEFAULT_MAX_ITER_BATCH if batched else DEFAULT_MAX_ITER).get(
            solver.name, DEFAULT_MAX_ITER_OPTAX)
    if int(max_iter) < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    gtol = resolve_gtol(gtol, precision)
    if not gtol > 0:
        raise ValueError(f"gtol must be > 0, got {gtol}")
    spec = FitSpec(ModelForm(log_density, log_prior, n), space, solver, init_fn, cov,
                   int(max_iter), gtol, DEFAULT_XTOL, fitted=model)
    return spec, init_values, data, weights, mask


def model_of(fit: Fit) -> _model.Model:
    """The Model ``fit`` was made with (for the tools that start from a fit)."""
    if not isinstance(fit, Fit):
        raise TypeError(f"fit must be a jm.Fit, got {type(fit).__name__}")
    if fit.model is None:
        raise ValueError("this Fit does not know its model (it was not made by jm.fit, "
                         "jm.fit_batch or another jaxmle function); refit it with jm.fit")
    return fit.model


def prepare_for_fit(fit: Fit, data, *, weights, mask, max_iter=None, gtol=None):
    """Validated ``(spec, data, weights, mask)`` to evaluate ``fit``'s model on its data.

    For the tools that start from a finished single or batched fit (profiles,
    diagnostics): the spec (Newton, no data-driven start) has ``fit``'s parameter layout,
    and a batched fit's data must have its ``B`` datasets.
    """
    model = model_of(fit)
    batched = bool(fit.batch_shape)
    template = fit[0].params if batched else fit.params
    spec, _, data, weights, mask = _prepare(
        model, lambda _: template, data, method="newton", constraints=None,
        log_prior=None, cov="observed", weights=weights,
        mask=mask if batched else None, max_iter=max_iter, gtol=gtol,
        precision=_precision.of_fit(fit), batched=batched)
    if batched and len(fit) != _validation.batch_size_of(data):
        raise ValueError(f"fit has {len(fit)} datasets but data has "
                         f"{_validation.batch_size_of(data)}")
    return dataclasses.replace(spec, init_fn=None), data, weights, mask


@_precision.public
def fit(log_density: Callable, init, data, *, method="newton", constraints=None,
        log_prior: Callable | None = None, cov: str = "observed", weights=None,
        max_iter: int | None = None, gtol: float | None = None,
        precision: str = "float64", clusters=None) -> Fit:
    """Maximum-likelihood (or MAP) fit of one dataset.

    Args:
        log_density: ``log_density(params, data)``, traceable JAX code returning the total
            log-likelihood (scalar) or per-observation terms (shape ``(n,)``, summed here);
            or a ``jm.Model`` (then ``constraints`` and ``log_prior`` come from it), such as
            a ready model from ``jm.models`` (then ``init=None`` uses its data-driven start).
            The fit remembers the Model as ``fit.model``.
        init: starting values, any pytree of floats/arrays in the user's coordinates, or a
            callable ``init(data) -> pytree`` for data-dependent starts.
        data: any pytree of arrays, passed to ``log_density`` untouched (no NaN allowed).
        method: ``"newton"`` (damped Newton, exact Hessian; the default and most robust:
            where its path ends without a certified optimum, BOUNDARY, SINGULAR_HESSIAN,
            STALLED, NONFINITE or MAX_ITER at the default cap, the data are fitted again by
            BFGS from the start and Newton from where BFGS stopped, and that fit is
            returned where it is CONVERGED at a higher log-likelihood, ``core/_retry``),
            ``"bfgs"``, ``"lbfgs"``, or an ``optax.GradientTransformation`` (gradient ascent
            on the mean log-likelihood per observation with that optimiser).
        constraints: None, one constraint, or a pytree matching ``init`` (a dict may name
            only some keys) of ``jm.real``, ``jm.positive``, ``jm.unit_interval``,
            ``jm.interval(lo, hi)``, ``jm.simplex``. With a Model: None, or the Model's own.
        log_prior: optional ``log_prior(params) -> scalar``; the fit is then MAP. With a
            Model: None, or the Model's own.
        cov: ``"observed"`` (inverse observed information), ``"opg"``, ``"robust"``, or
            ``"cluster"`` (cluster-robust sandwich ``G / (G - 1) A^-1 (sum_g s_g s_g')
            A^-1`` over the summed scores ``s_g`` of each cluster; needs ``clusters``).
        weights: optional per-observation weights ``(n,)`` >= 0 (frequency convention:
            ``n_obs`` is their sum); needs the per-observation form.
        max_iter: iteration cap (default 10,000 Newton, 1,000 in a batch, 500 BFGS/L-BFGS,
            10,000 optax); a fit whose loss stops falling ends earlier
            (``Status.STALLED``, see ``_loop``).
        gtol: stopping tolerance on the relative gradient (default 1e-10 in float64,
            1e-5 in float32); see ``jaxmle.core._loop``.
        precision: ``"float64"`` (default) or ``"float32"`` for throughput. The global
            ``jax_enable_x64`` flag is never changed.
        clusters: with ``cov="cluster"``, ``(n,)`` cluster labels of any kind (numbers,
            strings, objects); at least 2 distinct ones.

    Returns:
        A ``Fit`` holding numpy (host) arrays. Numerical failures do not raise; they are reported in ``Fit.status``.

    Raises:
        ValueError, TypeError: for structural mistakes (shapes, dtypes, names, support), and
            a keyword that contradicts the Model.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> from jax.scipy import stats
        >>> import jaxmle as jm
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=500)
        >>> f = jm.fit(lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"]),
        ...            {"mu": 0.0, "sigma": 1.0}, x, constraints={"sigma": jm.positive})
        >>> bool(f.converged), bool(abs(f.params["mu"] - x.mean()) < 1e-9)
        (True, True)
    """
    spec, init_values, data, weights, _ = _prepare(
        log_density, init, data, method=method, constraints=constraints,
        log_prior=log_prior, cov=cov, weights=weights, mask=None, max_iter=max_iter,
        gtol=gtol, precision=precision, batched=False, clusters=clusters)
    fit_from = lambda spec, init: jax.device_get(_fit_compiled(spec, init, data, weights, None))
    return _retry.single(fit_from(spec, init_values), spec, init_values,
                         default_cap=max_iter is None, fit_from=fit_from)


@_precision.public
def fit_batch(log_density: Callable, init, data, *, mask=None, method="newton",
              constraints=None, log_prior: Callable | None = None, cov: str = "observed",
              weights=None, max_iter: int | None = None, gtol: float | None = None,
              precision: str = "float64", chunk_size: int | None = None,
              clusters=None) -> Fit:
    """Fits B independent datasets in one compiled call.

    Every leaf of ``data`` has a leading batch axis ``B``; slice ``b`` is dataset ``b``.
    Options are those of ``fit``, plus:

    Args:
        mask: optional boolean ``(B, n)``, False on padding of ragged datasets (needs the
            per-observation form). Padded entries affect neither values nor derivatives,
            whatever their value.
        weights: optional ``(B, n)`` per-observation weights.
        clusters: with ``cov="cluster"``, ``(B, n)`` labels, encoded per dataset (masked
            observations drop out; each dataset needs 2 clusters among its active rows).
        chunk_size: datasets vectorised together (default: chosen so that a chunk's data
            and derivative terms stay in cache, at most 128). A dataset that needs
            many iterations holds up one slot of a chunk, not the batch (``_batch``).
            With Newton's default cap, the chunks step at most 1,000 iterations, and a
            dataset that reaches them is fitted again from its start, in lanes of its
            own, with the cap of ``fit`` (10,000). The datasets whose Newton fit fails are
            fitted again as in ``fit``, together, after the batch, except those that end
            BOUNDARY (``core/_retry``).

    Returns:
        One ``Fit`` whose array fields have a leading axis ``B``. A dataset that fails
        (NaN data, too few observations, non-finite likelihood, no convergence) gets its own
        status and leaves every other dataset's result unchanged. For a model affine in
        functions of its data (Normal, Gamma, Poisson ...), each dataset starts at its
        sufficient-statistic optimum (``batch/_reduced``): the same estimates to the
        stopping tolerance as from ``init``, usually with ``n_iter`` 0.

    Example:
        >>> import numpy as np
        >>> from jax.scipy import stats
        >>> import jaxmle as jm
        >>> X = np.random.default_rng(1).normal(1.0, 2.0, size=(100, 50))
        >>> many = jm.fit_batch(lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"]),
        ...                     {"mu": 0.0, "sigma": 1.0}, X, constraints={"sigma": jm.positive})
        >>> many.params["mu"].shape, bool(many.converged.all())
        ((100,), True)
    """
    spec, init_values, data, weights, mask = _prepare(
        log_density, init, data, method=method, constraints=constraints,
        log_prior=log_prior, cov=cov, weights=weights, mask=mask, max_iter=max_iter,
        gtol=gtol, precision=precision, batched=True, clusters=clusters)
    batch = _validation.batch_size_of(data)
    chunk_size = resolve_chunk_size(chunk_size, spec, (data, weights, mask))
    lay = _batch.layout(batch, chunk_size, jax.local_device_count())
    fits = fetch(dispatch(spec, lay, init_values, data, weights, mask), batch)
    return retried(fits, spec, lay, init_values, data, weights, mask, chunk_size,
                   default_cap=max_iter is None)


def retried(fits: Fit, spec: FitSpec, lay: _batch.Layout, init_values, data, weights, mask,
            chunk_size: int, *, default_cap: bool) -> Fit:
    """A fetched batch ``fits`` of the validated host inputs (fitted in layout ``lay``), with
    each dataset that Newton took to the batch's default cap fitted again with a single
    fit's cap, and then the second fit of each dataset that Newton failed where that is
    better (``_retry``). The second fit's Newton stage runs the batch's full solve in layout
    ``lay``: the batch's own program, unless the batch took the reduced path
    (``_reduced``). The other fits run their rows in a layout of their own, whose size is
    the count of rows rounded up to a power of two: a few programs serve every call."""
    def small(rows: int) -> _batch.Layout:
        return _batch.layout(1 << (rows - 1).bit_length(), chunk_size, jax.local_device_count())

    def refit_rows(data, weights, mask):
        # Rows that ran to the cap were left undecided by any quick pass of the batch:
        # straight to the full solve.
        rows = _validation.batch_size_of(data)
        full = dataclasses.replace(spec, max_iter=DEFAULT_MAX_ITER[spec.solver.name])
        own = small(rows)
        return fetch(_reduced.dispatch(full, own, *_device_inputs(
            own, init_values, data, weights, mask), quick=False), rows)

    def bfgs_rows(data, weights, mask):
        rows = _validation.batch_size_of(data)
        return fetch(dispatch(_retry.prelude(spec), small(rows), init_values, data, weights,
                              mask), rows)

    def newton_rows(found, data, weights, mask):
        rows = _validation.batch_size_of(data)
        found = np.concatenate([found, np.full((lay.padded - rows, found.shape[1]), np.nan)])
        starts, data, weights, mask, valid = _device_inputs(lay, init_values, data, weights, mask)
        fits = _batch.solve(spec, lay, starts, found, data, weights, mask, valid)
        return jax.tree_util.tree_map(lambda leaf: leaf[:rows], jax.device_get(fits))

    fits, refitted = _retry.full_budget(fits, spec, data, weights, mask,
                                        default_cap=default_cap, refit_rows=refit_rows)
    return _retry.batch(fits, spec, data, weights, mask, default_cap=default_cap,
                        bfgs_rows=bfgs_rows, newton_rows=newton_rows, as_single=refitted)


def resolve_gtol(gtol: float | None, precision: str) -> float:
    """``gtol`` as given, or (None) the default of ``precision``."""
    return DEFAULT_GTOL[precision] if gtol is None else float(gtol)


def resolve_chunk_size(chunk_size: int | None, spec: FitSpec, batched_inputs) -> int:
    """``chunk_size`` checked, or (None) chosen from the bytes of one dataset."""
    if chunk_size is not None:
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)
    leaves = jax.tree_util.tree_leaves(batched_inputs)
    per_dataset = sum(leaf.nbytes for leaf in leaves) // leaves[0].shape[0]
    return _batch.auto_chunk_size(per_dataset, spec.model.n_obs_axis, spec.space.n_free)


def dispatch(spec: FitSpec, lay: _batch.Layout, init_values, data, weights, mask, *,
             starts=None) -> _reduced.Dispatched:
    """Starts the compiled batched fit of validated host inputs, padded to ``lay.padded``.

    Every dataset starts at ``init_values``, or at its own entry of ``starts`` (a pytree
    like ``init`` with a leading axis ``B``). Returns at once (JAX dispatches
    asynchronously; ``fetch`` or ``_reduced.settle`` gives the result): the caller can
    prepare the next batch while this one runs. JAX may read a host array in place while
    the fit runs: a caller whose caller may reuse its buffers before the fit is fetched
    hands it copies (``fit_stream``).
    """
    # Given starts (``jm.multistart``, ``jm.refit``) are each fitted along the single fit's
    # path, not the quick pass's: which optimum a start reaches is the point there.
    return _reduced.dispatch(spec, lay, *_device_inputs(lay, init_values, data, weights, mask,
                                                        starts=starts), quick=starts is None)


def _device_inputs(lay: _batch.Layout, init_values, data, weights, mask, *, starts=None):
    """``(starts, data, weights, mask, valid)`` of validated host inputs, padded to
    ``lay.padded`` rows and on the device (``dispatch`` has the conventions)."""
    batch = _validation.batch_size_of(data)
    valid = np.arange(lay.padded) < batch
    if starts is None:
        starts = jax.tree_util.tree_map(lambda leaf: np.broadcast_to(leaf, (batch, *np.shape(leaf))),
                                        init_values)
    pad = lambda leaf: _batch.pad(leaf, lay.padded)
    inputs = (jax.tree_util.tree_map(pad, starts), jax.tree_util.tree_map(pad, data),
              pad(weights), pad(mask), valid)
    # One transfer to the device serves every program of the call (``_reduced``); on CPU,
    # aligned host arrays are still read in place.
    return jax.device_put(inputs)


def fetch(dispatched: _reduced.Dispatched, batch: int) -> Fit:
    """The first ``batch`` datasets of a dispatched fit, as numpy arrays."""
    fits = jax.device_get(_reduced.settle(dispatched))
    return jax.tree_util.tree_map(lambda leaf: leaf[:batch], fits)
