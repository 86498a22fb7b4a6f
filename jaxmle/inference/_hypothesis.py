"""Hypothesis tests beyond the likelihood ratio, and model comparison by information criteria.

The test trinity for a restriction of ``r`` free parameters (Rao 1948; Engle 1984, "Wald,
likelihood ratio, and Lagrange multiplier tests in econometrics", Handbook of Econometrics
vol. II, ch. 13): the likelihood-ratio test (``jm.lr_test``) needs both fits, the Wald test
(``wald_test``) only the full fit, the score (Lagrange-multiplier) test (``score_test``) only
the restricted fit. All three are asymptotically chi-squared with ``r`` degrees of freedom
under the restriction and agree to ``O_p(n^-1/2)`` under local alternatives.

``compare`` ranks non-nested (or nested) models fitted to the same data by AIC, AICc and BIC
with Akaike weights (Burnham & Anderson 2002, "Model Selection and Multimodel Inference",
2nd ed., sections 2.4 and 2.9).

Every tool accepts a single ``Fit`` or a batched one (then each output has the batch axis)
and returns NaN where a fit it relies on did not converge.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxmle.batch import _batched
from jaxmle.batch._batched import Batched
from jaxmle.core import _constraints, _engine, _information, _precision, _validation, _xla
from jaxmle.core._fit import Fit
from jaxmle.core._objective import ModelForm, likelihood, with_hessian
from jaxmle.core._parameters import ParameterSpace

# ----- Wald ------------------------------------------------------------------------------

def _restriction_matrix(R, q, names: tuple[str, ...], dtype):
    """``R`` as an ``(r, k)`` array (from an array or from dicts of name -> coefficient) and
    ``q`` as ``(r,)``; raises ValueError with the expected shapes and the names."""
    k = len(names)
    rows = [R] if isinstance(R, Mapping) else R
    if isinstance(rows, (list, tuple)) and rows and all(isinstance(row, Mapping) for row in rows):
        matrix = np.zeros((len(rows), k))
        for i, row in enumerate(rows):
            unknown = [name for name in row if name not in names]
            if unknown:
                raise ValueError(f"R names parameters {unknown} that the fit does not have; "
                                 f"fit.names are {list(names)}")
            for name, coefficient in row.items():
                matrix[i, names.index(name)] = coefficient
    else:
        matrix = np.asarray(R, dtype=np.float64)
        matrix = matrix[None, :] if matrix.ndim == 1 else matrix
        if matrix.ndim != 2 or matrix.shape[1] != k or matrix.shape[0] == 0:
            raise ValueError(f"R must have shape (r, k) = (r, {k}) or ({k},), one column per "
                             f"entry of fit.names {list(names)}; got shape {np.shape(R)}")
    r = matrix.shape[0]
    if not np.all(np.isfinite(matrix)):
        raise ValueError("R must be finite")
    if np.linalg.matrix_rank(matrix) < r:
        raise ValueError(f"the {r} rows of R must be linearly independent (a restriction "
                         "stated twice has no covariance to invert)")
    q = np.zeros(r) if q is None else np.asarray(q, dtype=np.float64)
    if q.shape not in ((), (r,)):
        raise ValueError(f"q must have shape ({r},) (one value per row of R) or be a scalar, "
                         f"got shape {q.shape}")
    return matrix.astype(dtype), np.broadcast_to(q, (r,)).astype(dtype)


@_precision.public
def wald_test(fit: Fit, R, q=None):
    """Wald test of the linear hypothesis ``R theta = q``.

    ``theta`` is the flattened estimate, in the order of ``fit.names`` (that of ``fit.cov``).
    The statistic ``(R theta - q)' (R cov R')^-1 (R theta - q)`` is asymptotically
    chi-squared with ``r`` degrees of freedom under the hypothesis (Wald 1943; Engle 1984,
    section 3). It uses the fit's covariance, so a fit with ``cov="robust"`` gives the
    robust Wald test. Unlike the likelihood-ratio and score tests it depends on the
    parameterisation: testing ``rate = 1`` and ``log(rate) = 0`` give different statistics
    in finite samples.

    Args:
        fit: a ``Fit`` (single or batched: ``R`` and ``q`` are shared by every dataset).
        R: ``(r, k)`` coefficients, ``k = len(fit.names)``; ``(k,)`` for one restriction;
            or a dict ``{name: coefficient}`` (names as in ``fit.names``) for one
            restriction, or a list of such dicts for several.
        q: ``(r,)`` right-hand side (a scalar is broadcast); default zeros.

    Returns:
        ``(statistic, df, pvalue)``: ``df = r``; statistic and p-value have the batch axis
        of a batched fit and are NaN where the fit did not converge.

    Raises:
        ValueError: if ``R`` has the wrong shape, names unknown parameters or has linearly
            dependent rows, or ``q`` has the wrong shape.

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> x = np.random.default_rng(0).gamma(1.5, 1.0, size=200)
        >>> f = jm.fit(jm.models.gamma, None, x)
        >>> statistic, df, pvalue = jm.wald_test(f, {"shape": 1.0}, 1.0)   # H0: shape = 1
        >>> df, bool(np.isclose(statistic, ((f.params["shape"] - 1) / f.se["shape"]) ** 2))
        (1, True)
    """
    matrix, q = _restriction_matrix(R, q, fit.names, np.dtype(fit.loglik.dtype))

    def one(params, cov):
        difference = matrix @ ravel_pytree(params)[0] - q
        factor = jax.scipy.linalg.cho_factor(matrix @ cov @ matrix.T)
        return difference @ jax.scipy.linalg.cho_solve(factor, difference)

    statistic = jax.vmap(one)(fit.params, fit.cov) if fit.batch_shape else one(fit.params, fit.cov)
    statistic = jnp.where(fit.converged, statistic, jnp.nan)
    df = matrix.shape[0]
    return jax.device_get(statistic), df, jax.device_get(jax.scipy.stats.chi2.sf(statistic, df))


# ----- score (Lagrange multiplier) --------------------------------------------------------

def _score_statistic(model: ModelForm, space: ParameterSpace, params, data, weights, mask):
    """``s' I^-1 s`` at ``params`` for one dataset (traceable), invariant to the
    parameterisation (see ``score_test``)."""
    # The log-likelihood as a function of the flat constrained vector theta: the same
    # likelihood (weights, mask, padding) over the identity map.
    identity = dataclasses.replace(space, constraints=(_constraints.real,) * len(space.shapes))
    loglik = likelihood(model, identity, data, weights, mask).loglik
    _, score, hessian = with_hessian(loglik)(space.flatten(params))
    z = space.to_unconstrained(params)
    jacobian = _information.constrained_jacobian(space, z)
    score_z = jacobian.T @ score
    # The fit's information routine: NaN (never a wrong number) where the information is
    # not positive definite or numerically singular (SINGULAR_HESSIAN in a fit); the
    # loss's gradient is minus the score.
    local = _information.local_information(-(jacobian.T @ hessian @ jacobian), -score_z, z)
    return jnp.where(local.definite, score_z @ local.inverse @ score_z, jnp.nan)


def _score_batch(model, space, chunk, params, data, weights, mask):
    one = lambda slices: _score_statistic(model, space, *slices)
    return jax.lax.map(one, (params, data, weights, mask), batch_size=chunk)


_score_compiled = _xla.jit(_score_statistic, static_argnums=(0, 1))
_score_batch_compiled = _xla.jit(_score_batch, static_argnums=(0, 1, 2))


def _unused_keys(log_density, free, fixed, data) -> list:
    """Keys of ``fixed`` whose values ``log_density`` never reads (from its jaxpr)."""
    keys = sorted(fixed, key=str)
    # The fixed values come first, so the jaxpr's first inputs are their leaves in order.
    closed = jax.make_jaxpr(lambda values, free, data: log_density({**free, **values}, data))(
        {key: fixed[key] for key in keys}, free, data)
    used = {id(v) for eqn in closed.jaxpr.eqns for v in eqn.invars}
    used |= {id(v) for v in closed.jaxpr.outvars}
    invars = iter(closed.jaxpr.invars)
    unused = []
    for key in keys:
        leaves = [next(invars) for _ in jax.tree_util.tree_leaves(fixed[key])]
        if not any(id(v) in used for v in leaves):
            unused.append(key)
    return unused


@_precision.public
def score_test(full_model, restricted: Fit, data, *, fixed: Mapping,
               constraints=None, weights=None, mask=None, chunk_size: int | None = None):
    """Score (Lagrange-multiplier) test of a restriction, from the restricted fit alone.

    The restricted model is the full model ``full_model`` with some parameters held
    fixed: ``restricted.params`` is a dict of the free ones and ``fixed`` a dict of the
    others (e.g. a gamma model ``{"shape", "rate"}`` restricted to the exponential by
    ``fixed={"shape": 1.0}``). At the restricted estimate ``theta_0`` (free values from the
    fit, the rest from ``fixed``) the statistic is ``s' I^-1 s`` with ``s`` the score of
    the full log-likelihood and ``I`` its observed information (Rao 1948; Engle 1984,
    section 4), asymptotically chi-squared with ``df`` = number of free coordinates of the
    fixed parameters under the restriction. The full model is never fitted.

    Parameterisation: the score is not zero at ``theta_0``, so the Hessian in the
    optimiser's unconstrained coordinates ``z`` carries a term ``sum_j s_j d2theta_j/dz2``
    that depends on the chosen map (log, logit, ...), and a statistic built on it would
    change with the constraints. The information is therefore taken as
    ``I_z = -J' H_theta J`` and the score as ``s_z = J' s_theta``, with ``H_theta`` and
    ``s_theta`` the derivatives of the log-likelihood in the user's flat coordinates and
    ``J = d theta / d z``. Every jaxmle constraint maps onto an open subset of an affine
    space (the simplex: of the hyperplane ``sum = 1``), so ``J`` spans its tangent space and
    ``s_z' I_z^-1 s_z`` does not depend on the map: for elementwise constraints it equals
    ``s_theta' (-H_theta)^-1 s_theta``, and a simplex is handled without choosing which
    entry to drop. ``constraints`` therefore matter only for the support of ``fixed`` and
    for counting ``df`` (a simplex of m entries has m - 1 free coordinates).

    Args:
        full_model: the full model: a ``jm.Model`` (a ready model from ``jm.models``, say)
            or a bare ``log_density(params, data)`` (params a dict).
        restricted: the restricted ``Fit`` (its ``params`` a dict of the free parameters),
            single, or batched over datasets (then every data leaf has the leading axis
            ``B`` and the datasets are tested in one compiled call).
        data: the data ``restricted`` was fitted to.
        fixed: dict of the parameters the restriction fixes, name -> value (shared by
            every dataset of a batch).
        constraints: constraints of the full parameters, as for ``jm.fit`` (with a bare
            log-density; a Model carries its own).
        weights: per-observation weights, as for ``jm.fit`` / ``jm.fit_batch``.
        mask: ``(B, n)`` padding mask of a batch, as for ``jm.fit_batch``.
        chunk_size: datasets vectorised together in a batch (default as in ``fit_batch``).

    Returns:
        ``(statistic, df, pvalue)``; statistic and p-value have the batch axis of a batched
        ``restricted`` and are NaN where the restricted fit did not converge or the
        information at ``theta_0`` is not positive definite or numerically singular (as
        for a fit's SINGULAR_HESSIAN).

    Raises:
        TypeError: if ``restricted.params`` or ``fixed`` is not a dict.
        ValueError: if ``fixed`` is empty, shares keys with ``restricted.params``, holds a
            parameter the model does not use or a value outside its support, if a
            parameter of the model is in neither, if the batch sizes differ, or if the
            degrees of freedom do not add up.

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> x = np.random.default_rng(0).gamma(1.5, 1.0, size=200)
        >>> exponential = jm.fit(jm.models.exponential, None, x)
        >>> statistic, df, pvalue = jm.score_test(jm.models.gamma, exponential, x,
        ...                                       fixed={"shape": 1.0})
        >>> df, bool(pvalue < 1e-3)
        (1, True)
    """
    precision = _precision.of_fit(restricted)
    spec, df, full, data, weights, mask = _full_model(
        full_model, restricted, data, fixed, constraints, weights, mask, precision)
    if restricted.batch_shape:
        chunk = _engine.resolve_chunk_size(chunk_size, spec, (data, weights, mask))
        batch = len(restricted)
        params = {**restricted.params, **{
            key: np.broadcast_to(full[key], (batch, *np.shape(full[key]))) for key in fixed}}
        statistic = _score_batch_compiled(spec.model, spec.space, chunk, params, data,
                                          weights, mask)
    else:
        statistic = _score_compiled(spec.model, spec.space, full, data, weights, mask)
    statistic = jnp.where(restricted.converged, statistic, jnp.nan)
    return jax.device_get(statistic), df, jax.device_get(jax.scipy.stats.chi2.sf(statistic, df))


def _full_model(full_model, restricted: Fit, data, fixed, constraints, weights, mask,
                precision):
    """Validates the inputs of ``score_test``; returns the full model's ``FitSpec``, the
    degrees of freedom, the full parameters of one dataset, and validated host data,
    weights and mask."""
    if not isinstance(restricted.params, dict):
        raise TypeError("score_test needs restricted.params to be a dict of the free parameters "
                        f"by name, got {type(restricted.params).__name__}")
    if not isinstance(fixed, Mapping):
        raise TypeError(f"fixed must be a dict of the fixed parameters by name, got {fixed!r}")
    if not fixed:
        raise ValueError("fixed is empty: a score test needs at least one fixed parameter")
    overlap = sorted(set(fixed) & set(restricted.params), key=str)
    if overlap:
        raise ValueError(f"fixed names {overlap}, which are free in the restricted fit "
                         f"(restricted.params has {sorted(restricted.params, key=str)}); "
                         "a parameter is either free or fixed")
    batched = bool(restricted.batch_shape)
    if mask is not None and not batched:
        raise ValueError("mask is for a batched restricted fit; a single dataset uses weights")
    dtype = np.dtype(precision)
    fixed = jax.tree_util.tree_map(lambda leaf: leaf.astype(dtype),
                                   _validation.as_host_tree(dict(fixed), dtype, "fixed"))
    free = jax.tree_util.tree_map(lambda leaf: leaf[0], restricted.params) if batched \
        else restricted.params
    full = {**free, **fixed}
    try:
        # A callable start: the (possibly non-finite) estimate of a failed fit must not
        # fail the support check; the fixed values are checked below.
        spec, _, data, weights, mask = _engine._prepare(
            full_model, lambda _: full, data, method="newton", constraints=constraints,
            log_prior=None, cov="observed", weights=weights, mask=mask, max_iter=None,
            gtol=None, precision=precision, batched=batched)
    except KeyError as error:
        raise ValueError(
            f"log_density raised KeyError({error.args[0]!r}) on the full parameters "
            f"{sorted(full, key=str)} (restricted.params and fixed together): a parameter "
            "of the full model is missing from both") from error
    if batched and _validation.batch_size_of(data) != len(restricted):
        raise ValueError(f"the restricted fit has {len(restricted)} datasets but data has "
                         f"{_validation.batch_size_of(data)} along its leading axis")
    data_one = _validation.abstract(
        jax.tree_util.tree_map(lambda leaf: leaf[0], data) if batched else data)
    unused = _unused_keys(spec.model.log_density, _validation.abstract(free), fixed, data_one)
    if unused:
        raise ValueError(f"fixed names {unused}, which log_density never reads: no parameter "
                         "of the full model has that name")
    space, df = spec.space, 0
    for (path, leaf), constraint, free_shape in zip(
            jax.tree_util.tree_flatten_with_path(full)[0], space.constraints, space.free_shapes):
        if path[0].key in fixed:
            problem = constraint.violation(np.asarray(leaf, np.float64))
            if problem:
                name = jax.tree_util.keystr(path, simple=True, separator=".")
                raise ValueError(f"fixed[{name}] = {leaf!r} is outside the support of "
                                 f"{constraint!r}: {problem}")
            df += math.prod(free_shape)
    if space.n_free - df != restricted.n_params:
        raise ValueError(f"the full model has {space.n_free} free parameters and fixed holds {df}, "
                         f"so the restricted fit should have {space.n_free - df}, but it has "
                         f"{restricted.n_params}: check constraints")
    return spec, df, full, data, weights, mask


# ----- model comparison -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Comparison(Batched):
    """Information criteria of several models fitted to the same data (``jm.compare``).

    Arrays have one entry per model along the last axis, in the order of ``names`` (the
    order of the mapping given to ``compare``); a batch adds a leading axis ``B``. Where a
    fit did not converge its criteria, delta and weight are NaN and the weights are
    normalised over the others.

    Attributes:
        names: the models' names.
        loglik: maximised log-likelihoods.
        n_params: free parameters ``k`` of each model.
        n_obs: observations ``n`` (NaN when unknown: a scalar log-density).
        converged: whether each fit converged.
        aic: ``2k - 2 loglik``.
        aicc: ``aic + 2k(k+1)/(n-k-1)``, the small-sample correction (Hurvich & Tsai 1989);
            NaN when n is unknown or ``n - k - 1 <= 0``.
        bic: ``k log(n) - 2 loglik`` (Schwarz 1978).
        delta_aic: ``aic - min(aic)`` over the models.
        weights: Akaike weights ``exp(-delta_aic/2)`` normalised to sum to 1 over the models
            (Burnham & Anderson 2002, section 2.9).
    """

    names: tuple[str, ...]
    loglik: np.ndarray
    n_params: np.ndarray
    n_obs: np.ndarray
    converged: np.ndarray
    aic: np.ndarray
    aicc: np.ndarray
    bic: np.ndarray
    delta_aic: np.ndarray
    weights: np.ndarray

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``(B,)`` for a comparison over a batch, ``()`` for a single dataset."""
        return self.aic.shape[:-1]

    @property
    def best(self):
        """Name of the model with the lowest AIC (None if no fit converged); for a batch, an
        object array of names with the batch shape."""
        finite = np.isfinite(self.aic)
        index = np.argmin(np.where(finite, self.aic, np.inf), axis=-1)
        names = np.array(self.names + (None,), dtype=object)
        return names[np.where(finite.any(axis=-1), index, len(self.names))]

    def table(self) -> str:
        """The models sorted by AIC (single dataset), or a summary over the batch: how
        often each model has the lowest AIC and BIC, and its mean Akaike weight."""
        return _batch_table(self) if self.batch_shape else _single_table(self)

    def __str__(self) -> str:
        return self.table()


_batched.register(Comparison, meta_fields=("names",))


def _single_table(c: Comparison) -> str:
    width = max(5, *map(len, c.names))
    order = np.argsort(np.where(np.isnan(c.aic), np.inf, c.aic), kind="stable")
    n = c.n_obs[np.isfinite(c.n_obs)]
    head = f"Model comparison (n = {n[0]:g}), sorted by AIC" if n.size else \
        "Model comparison (n unknown: no AICc or BIC), sorted by AIC"
    header = (f"{'model':<{width}}  {'k':>3}  {'loglik':>13}  {'AIC':>13}  {'dAIC':>8}  "
              f"{'weight':>7}  {'AICc':>13}  {'BIC':>13}")
    lines = [head, header]
    for i in order:
        row = (f"{c.names[i]:<{width}}  {c.n_params[i]:>3d}  {c.loglik[i]:>13.4f}  "
               f"{c.aic[i]:>13.4f}  {c.delta_aic[i]:>8.3f}  {c.weights[i]:>7.4f}  "
               f"{c.aicc[i]:>13.4f}  {c.bic[i]:>13.4f}")
        lines.append(row + ("" if c.converged[i] else "  (not converged)"))
    lines.append("weight: Akaike weight exp(-dAIC/2), normalised (Burnham & Anderson 2002)")
    return "\n".join(lines)


def _lowest(values: np.ndarray) -> np.ndarray:
    """Per dataset, a one-hot row marking the model with the lowest finite value."""
    finite = np.isfinite(values)
    index = np.argmin(np.where(finite, values, np.inf), axis=-1)
    one_hot = np.arange(values.shape[-1]) == index[..., None]
    return one_hot & finite.any(axis=-1, keepdims=True)


def _batch_table(c: Comparison) -> str:
    batch = c.aic.shape[0]
    width = max(5, *map(len, c.names))
    aic_wins, bic_wins = _lowest(c.aic).mean(axis=0), _lowest(c.bic).mean(axis=0)
    with warnings.catch_warnings():  # a model that never converged: its column is all NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_weight = np.nanmean(c.weights, axis=0)
        median_delta = np.nanmedian(c.delta_aic, axis=0)
    order = np.argsort(-aic_wins, kind="stable")
    header = (f"{'model':<{width}}  {'k':>3}  {'converged':>9}  {'lowest AIC':>10}  "
              f"{'lowest BIC':>10}  {'mean weight':>11}  {'median dAIC':>11}")
    lines = [f"Model comparison over {batch} datasets, sorted by how often AIC prefers the model",
             header]
    for i in order:
        lines.append(f"{c.names[i]:<{width}}  {int(c.n_params[0, i]):>3d}  "
                     f"{c.converged[:, i].mean():>9.1%}  {aic_wins[i]:>10.1%}  {bic_wins[i]:>10.1%}  "
                     f"{mean_weight[i]:>11.4f}  {median_delta[i]:>11.3f}")
    lines.append("lowest AIC/BIC: share of datasets where the model has the lowest criterion")
    lines.append("mean weight: Akaike weight averaged over the datasets where the fit converged")
    return "\n".join(lines)


@_precision.public
def compare(fits: Mapping[str, Fit]) -> Comparison:
    """Compares models fitted to the same data by AIC, AICc, BIC and Akaike weights.

    AIC estimates the expected Kullback-Leibler loss of each model up to a constant shared
    by all models of the same data; ``delta_aic`` is each model's excess over the best and
    the Akaike weights ``exp(-delta/2) / sum exp(-delta/2)`` are the weights of evidence
    for each model within the set. AICc adds the small-sample correction
    ``2k(k+1)/(n-k-1)`` (Burnham & Anderson 2002, sections 2.4, 2.9 and 2.6 for BIC).
    The models need not be nested, but must be fitted to the same observations (so that
    the log-likelihoods share their constant): a continuous and a discrete model of the
    same numbers are not comparable this way.

    Args:
        fits: a mapping ``name -> Fit``, all single fits, or all batched with the same ``B``
            (dataset ``b`` of every fit being the same data).

    Returns:
        A ``Comparison`` (arrays with a last axis over the models, in the mapping's order,
        and a leading axis ``B`` for batches); ``str()`` or ``.table()`` gives the table
        sorted by AIC, or for a batch a summary of how often each model has the lowest
        AIC/BIC and its mean weight.

    Raises:
        TypeError: if ``fits`` is not a non-empty mapping of ``Fit``.
        ValueError: if single and batched fits are mixed, the batch sizes differ, or the
            fits were made on different numbers of observations.

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> x = np.random.default_rng(0).gamma(3.0, 1.0, size=200)
        >>> c = jm.compare({"exponential": jm.fit(jm.models.exponential, None, x),
        ...                 "gamma": jm.fit(jm.models.gamma, None, x),
        ...                 "lognormal": jm.fit(jm.models.lognormal, None, x)})
        >>> c.best, c.names, bool(np.isclose(c.weights.sum(), 1.0))
        ('gamma', ('exponential', 'gamma', 'lognormal'), True)
    """
    if not isinstance(fits, Mapping) or not fits:
        raise TypeError(f"compare needs a non-empty mapping name -> Fit, got {fits!r}")
    wrong = [name for name, f in fits.items() if not isinstance(f, Fit)]
    if wrong:
        raise TypeError(f"compare needs Fit values; {wrong} are not")
    names = tuple(str(name) for name in fits)
    shapes = {name: f.batch_shape for name, f in zip(names, fits.values())}
    if len(set(shapes.values())) != 1:
        raise ValueError("compare needs all single fits or all batched fits with the same "
                         f"number of datasets; got batch shapes {shapes}")
    batch_shape = next(iter(shapes.values()))
    stack = lambda values: np.stack([np.broadcast_to(np.asarray(v, np.float64), batch_shape)
                                     for v in values], axis=-1)
    converged = stack(f.converged for f in fits.values()) > 0
    loglik = np.where(converged, stack(f.loglik for f in fits.values()), np.nan)
    k = stack(f.n_params for f in fits.values()).astype(int)
    n = stack(np.nan if f.n_obs is None else f.n_obs for f in fits.values())
    with warnings.catch_warnings():  # all n unknown (scalar log-densities): no check
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nanmax(n, axis=-1) - np.nanmin(n, axis=-1)
    if np.any(spread > 0):
        raise ValueError("compare needs fits of the same data, but their numbers of observations "
                         f"differ: {dict(zip(names, np.moveaxis(n, -1, 0).tolist()))}")
    aic = 2.0 * k - 2.0 * loglik
    bic = k * np.log(n) - 2.0 * loglik
    with np.errstate(divide="ignore", invalid="ignore"):
        correction = np.where(n - k - 1 > 0, 2.0 * k * (k + 1) / (n - k - 1), np.nan)
        delta = aic - np.where(np.isfinite(aic), aic, np.inf).min(axis=-1, keepdims=True)
        likelihoods = np.exp(-0.5 * delta)
        weights = likelihoods / np.nansum(likelihoods, axis=-1, keepdims=True)
    return Comparison(names, loglik, k, n, converged, aic, aic + correction, bic, delta, weights)
