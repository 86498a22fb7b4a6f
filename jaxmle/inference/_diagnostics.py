"""What is wrong with a fit, named: weak directions, boundaries, separation, misspecification.

``jm.diagnose`` evaluates, at the estimate of every dataset (one compiled call for a batch):

* **Weak directions.** The observed information ``A`` of the maximised objective (in the
  optimiser's unconstrained coordinates ``z``) in correlation form ``D^-1/2 A D^-1/2``;
  its eigenvalues are scale-free (they sum to ``k``; 1 each for uncorrelated
  parameters). An eigenvalue below ``WEAK_EIGENVALUE`` (or negative: a saddle, wrong-sign
  curvature) is a direction the data barely determine; every parameter whose share of
  that eigenvector, ``v_j^2``, is at least ``LOADING`` is named weak. Near-collinear
  regressors, unidentified parameters and flat likelihoods show up here.
* **Boundary.** At a fit with status BOUNDARY, the parameters that carry the exact Newton
  step ``A^-1 g`` (relative component above the fit's ``xtol``): the likelihood still rises
  as they go to an edge of the space (a constraint bound, or infinity).
* **Separation.** The fit stopped at BOUNDARY or SINGULAR_HESSIAN while some observations
  are predicted with probability ``> 1 - 1e-6`` (log-likelihood term above ``-1e-6``) by a
  model of probability masses (every term <= 0): complete or quasi-complete separation in a
  binary-response model, or, without covariates, every outcome the same (3 heads in 3).
* **Information-matrix discrepancy** (White 1982): under a correct model the observed
  information ``A`` and the outer product of per-observation scores ``B`` estimate the same
  matrix. ``im_ratio = trace(A^-1 B) / k`` is 1 up to ``O(1/sqrt(n))`` noise and
  ``se_ratio`` (sandwich over model-based standard error, per parameter) near 1; values far
  from 1 say the model's variance is wrong: use ``cov="robust"`` or another model.

Elementwise parameters (real, positive, interval) are named per entry; a simplex or
ordered leaf, whose free coordinates mix its entries, is named as a whole.

``jm.refit`` fits only the failures of a batch again, with another method or several
starts, and keeps a new fit where it beats the old one.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxmle.batch import _batched
from jaxmle.batch._batched import Batched
from jaxmle.core import _engine, _information, _precision, _retry, _summary, _xla
from jaxmle.core._fit import Fit
from jaxmle.core._objective import likelihood, objective
from jaxmle.core._solve import FitSpec
from jaxmle.core._status import Status
from jaxmle.inference._multistart import multistart
from jaxmle.models import ReadyModel

WEAK_EIGENVALUE = 1e-6  # condition number of the correlation form above ~1e6
LOADING = 0.1           # a parameter with this share of a weak eigenvector is named
PERFECT_TERM = -1e-6    # log(1 - 1e-6): an observation predicted with probability ~ 1


@dataclasses.dataclass(frozen=True)
class Diagnosis(Batched):
    """Result of ``jm.diagnose``; a batch adds a leading axis ``B`` to every array.

    Attributes:
        fit: the diagnosed ``Fit``.
        eigenvalues: ``(k,)`` ascending eigenvalues of the correlation form of the observed
            information (unconstrained coordinates).
        weak: pytree like ``params`` of bools: the parameter loads on a weak direction.
        boundary: pytree like ``params`` of bools: the likelihood rises towards an edge
            of this parameter's space.
        separation: bool, some observations are predicted perfectly (see module notes).
        n_separated: how many observations are predicted with probability ``> 1 - 1e-6``
            (0 for a scalar log-density).
        im_ratio: ``trace(A^-1 B) / k``; NaN for a scalar log-density and for a fit that
            did not converge (its curvature describes no optimum).
        se_ratio: pytree like ``params``: sandwich SE over observed-information SE (NaN
            where ``im_ratio`` is).
    """

    fit: Fit
    eigenvalues: Any
    weak: Any
    boundary: Any
    separation: Any
    n_separated: Any
    im_ratio: Any
    se_ratio: Any

    @property
    def condition(self):
        """Largest over smallest eigenvalue (inf or negative when not positive definite)."""
        return self.eigenvalues[..., -1] / self.eigenvalues[..., 0]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``(B,)`` for the diagnosis of a batched fit, ``()`` for a single one."""
        return self.fit.batch_shape

    def weak_names(self) -> list[str]:
        """Names of the parameters on weak directions (a single fit)."""
        return self._named(self.weak)

    def boundary_names(self) -> list[str]:
        """Names of the parameters heading for an edge of their space (a single fit)."""
        return self._named(self.boundary)

    def _named(self, flags) -> list[str]:
        if self.fit.batch_shape:
            raise TypeError("names are per dataset: index the batched Diagnosis first")
        return [name for name, flag in zip(self.fit.names, _summary.flat(flags)) if flag]

    def summary(self) -> str:
        """A text report of one fit, or a one-screen summary of a batch."""
        return _batch_report(self) if self.fit.batch_shape else _single_report(self)


_batched.register(Diagnosis)


def _leaf_links(spec: FitSpec) -> np.ndarray:
    """``(k, n_flat)`` bools: free coordinate ``i`` belongs to constrained entry ``j`` (entry
    by entry for elementwise leaves, the whole leaf otherwise)."""
    space = spec.space
    links = np.zeros((space.n_free, space.n_flat), bool)
    row = col = 0
    for constraint, shape, free_shape in zip(space.constraints, space.shapes, space.free_shapes):
        rows, cols = int(np.prod(free_shape)), int(np.prod(shape))
        if constraint.elementwise:
            links[row:row + rows, col:col + cols] = np.eye(rows, dtype=bool)
        else:
            links[row:row + rows, col:col + cols] = True
        row, col = row + rows, col + cols
    return links


def _diagnose_one(spec: FitSpec, params, status, data, weights, mask) -> tuple:
    """The array fields of one dataset's ``Diagnosis`` (traceable)."""
    space, model = spec.space, spec.model
    lik = likelihood(model, space, data, weights, mask)
    z = space.to_unconstrained(params)
    _, gradient, information = objective(lik).value_grad_hessian(z)
    k = information.shape[0]
    local = _information.local_information(information, gradient, z)
    eigenvalues, vectors, _ = local.decomposition
    weak_direction = ~(eigenvalues >= WEAK_EIGENVALUE)                      # NaN counts as weak
    weak_z = jnp.any((vectors ** 2 >= LOADING) & weak_direction[None, :], axis=1)

    inverse = local.inverse
    boundary_z = ((status == int(Status.BOUNDARY)) & local.definite
                  & (local.relative_step > spec.xtol))

    links = jnp.asarray(_leaf_links(spec))
    to_entries = lambda flags: space.unflatten(jnp.any(flags[:, None] & links, axis=0))

    jacobian = _information.constrained_jacobian(space, z)
    if model.per_observation:
        outer = _information.outer_product_of_scores(lik, z)
        usable = (status == int(Status.CONVERGED)) & jnp.all(jnp.isfinite(outer))
        im_ratio = jnp.where(usable, jnp.trace(inverse @ outer) / k, jnp.nan)
        model_var = jnp.diag(jacobian @ inverse @ jacobian.T)
        robust_var = jnp.diag(jacobian @ inverse @ outer @ inverse @ jacobian.T)
        se_ratio = jnp.where(usable, jnp.sqrt(robust_var / model_var), jnp.nan)
        terms = model.log_density(space.to_constrained(z), lik.data)
        masses = jnp.all(jnp.where(lik.active, terms, 0.0) <= 0.0)
        n_separated = jnp.sum(lik.active & (terms > PERFECT_TERM) & (terms <= 0.0))
    else:
        im_ratio = jnp.full((), jnp.nan, z.dtype)
        se_ratio = jnp.full((space.n_flat,), jnp.nan, z.dtype)
        masses, n_separated = jnp.zeros((), bool), jnp.zeros((), jnp.int32)
    stuck = (status == int(Status.BOUNDARY)) | (status == int(Status.SINGULAR_HESSIAN))
    separation = stuck & masses & (n_separated > 0)
    return (eigenvalues, to_entries(weak_z), to_entries(boundary_z), separation,
            n_separated.astype(jnp.int32), im_ratio, space.unflatten(se_ratio))


def _diagnose_batch(spec, chunk, params, status, data, weights, mask):
    one = lambda args: _diagnose_one(spec, *args)
    return jax.lax.map(one, (params, status, data, weights, mask), batch_size=chunk)


_diagnose_one_compiled = _xla.jit(_diagnose_one, static_argnums=0)
_diagnose_batch_compiled = _xla.jit(_diagnose_batch, static_argnums=(0, 1))


@_precision.public
def diagnose(fit: Fit, data, *, weights=None, mask=None,
             chunk_size: int | None = None) -> Diagnosis:
    """Diagnostics of a single or batched fit at its estimate (see the module notes), on
    the objective the fit maximised (``fit.model``).

    Args:
        fit: a ``Fit`` from ``jm.fit`` or ``jm.fit_batch`` (then ``data``, ``weights`` and
            ``mask`` carry the leading axis ``B``).
        data: the data the fit used.
        weights, mask: as given to the fit.
        chunk_size: datasets evaluated together in a batch (default as in ``fit_batch``).

    Returns:
        A ``Diagnosis``; ``summary()`` prints it (for a batch: one screen across datasets).

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> X = np.column_stack([np.ones(30), np.linspace(-1, 1, 30)])
        >>> y = (X[:, 1] > 0).astype(float)          # the slope separates y perfectly
        >>> fit = jm.fit(jm.models.logistic_regression, None, (X, y))
        >>> report = jm.diagnose(fit, (X, y))
        >>> jm.Status(int(fit.status)).name, bool(report.separation), report.boundary_names()
        ('BOUNDARY', True, ['beta[1]'])
    """
    spec, data, weights, mask = _engine.prepare_for_fit(fit, data, weights=weights, mask=mask)
    if not fit.batch_shape:
        fields = _diagnose_one_compiled(spec, fit.params, fit.status, data, weights, mask)
    else:
        chunk = _engine.resolve_chunk_size(chunk_size, spec, (data, weights, mask))
        fields = _diagnose_batch_compiled(spec, chunk, fit.params, fit.status, data,
                                          weights, mask)
    return Diagnosis(fit, *jax.device_get(fields))


def _single_report(d: Diagnosis) -> str:
    fit = d.fit
    status = Status(int(fit.status)).name
    lines = [f"Diagnosis of a {fit.method} fit: status {status}, log-likelihood {float(fit.loglik):.6g}",
             f"information eigenvalues (correlation form): smallest {d.eigenvalues[0]:.3g}, "
             f"largest {d.eigenvalues[-1]:.3g}, condition {d.condition:.3g}"]
    weak, edge = d.weak_names(), d.boundary_names()
    lines.append("weak directions: " + (", ".join(weak) if weak else "none"))
    lines.append("heading for a boundary: " + (", ".join(edge) if edge else "none"))
    if d.separation:
        lines.append(f"separation: {int(d.n_separated)} observations predicted with "
                     "probability ~1; the estimate is at infinity, not an MLE")
    if np.isfinite(d.im_ratio):
        ratios = ", ".join(f"{name} {r:.3g}" for name, r in zip(fit.names, _summary.flat(d.se_ratio)))
        lines.append(f"information-matrix ratio trace(A^-1 B)/k = {float(d.im_ratio):.3g} "
                     f"(1 under a correct model); sandwich/model SE: {ratios}")
    return "\n".join(lines)


def _batch_report(d: Diagnosis) -> str:
    fit, batch = d.fit, len(d)

    def flagged(tree) -> str:
        counts = _summary.flat_batch(tree, batch).sum(axis=0)
        named = [f"{name} {count}" for name, count in zip(fit.names, counts) if count]
        return ", ".join(named) if named else "none"

    failures = collections.defaultdict(list)
    for b, code in enumerate(np.asarray(fit.status)):
        if code != Status.CONVERGED:
            failures[Status(int(code)).name].append(b)
    lines = [_summary.batch_summary(fit),
             "datasets with weak directions, by parameter: " + flagged(d.weak),
             "datasets heading for a boundary, by parameter: " + flagged(d.boundary),
             f"datasets with separation: {int(np.sum(d.separation))}"]
    ratio = np.asarray(d.im_ratio)[np.asarray(fit.converged)]
    ratio = ratio[np.isfinite(ratio)]
    if ratio.size:
        lines.append(f"information-matrix ratio over converged datasets: median {np.median(ratio):.3g}, "
                     f"5%-95% {np.quantile(ratio, 0.05):.3g} to {np.quantile(ratio, 0.95):.3g}")
    for name, members in failures.items():
        shown = ", ".join(map(str, members[:10])) + (", ..." if len(members) > 10 else "")
        lines.append(f"{name}: datasets {shown}")
    return "\n".join(lines)


@_precision.public
def refit(fit: Fit, data, *, which=None, init=None, method="newton", starts: int = 1,
          spread: float = 1.0, seed: int = 0, mask=None, weights=None,
          max_iter: int | None = None, gtol: float | None = None,
          chunk_size: int | None = None) -> Fit:
    """Fits selected datasets of a batch again and keeps each new fit that is better.

    The model is the fit's own (``fit.model``).

    Args:
        fit: the batched ``Fit``.
        data, mask, weights: as given to the ``jm.fit_batch`` call that made ``fit``.
        which: boolean ``(B,)`` of the datasets to refit (default: those not converged).
        init: the new fits' start (default: a ready model's own start; a model without one
            needs ``init``).
        method, max_iter, gtol: the new fits' options (e.g. ``"bfgs"``, more iterations).
        starts, spread, seed: more than one start runs ``jm.multistart`` on each selected
            dataset and keeps its best start.

    Returns:
        A batched ``Fit`` like ``fit``: a selected dataset takes its new fit where that
        converged at a log-likelihood above the old one's by more than 100 times the
        stopping tolerance (relative; ``core/_retry``), or the old one's is not finite;
        every other dataset is unchanged. ``method`` reads e.g.
        ``"newton, refit bfgs"``. Covariances are of the old fit's kind.

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> X = np.random.default_rng(0).exponential(2.0, size=(4, 50))
        >>> first = jm.fit_batch(jm.models.weibull, {"shape": 1.0, "scale": 50.0}, X,
        ...                      max_iter=2)
        >>> bool(first.converged.any())
        False
        >>> bool(jm.refit(first, X).converged.all())
        True
    """
    if not isinstance(fit, Fit) or not fit.batch_shape:
        raise TypeError("refit needs a batched jm.Fit (from jm.fit_batch)")
    model = _engine.model_of(fit)
    if init is None and not isinstance(model, ReadyModel):
        raise TypeError("refit needs init=: the fit's model has no start of its own (only the "
                        "ready models of jm.models do)")
    which = ~np.asarray(fit.converged) if which is None else np.asarray(which)
    if which.shape != (len(fit),) or which.dtype != bool:
        raise ValueError(f"which must be a boolean array of shape ({len(fit)},), got "
                         f"{which.dtype} {which.shape}")
    chosen = np.flatnonzero(which)
    if chosen.size == 0:
        return fit
    take = lambda tree: None if tree is None else jax.tree_util.tree_map(
        lambda leaf: np.asarray(leaf)[chosen], tree)
    options = dict(method=method, mask=take(mask), cov=fit.cov_kind, weights=take(weights), max_iter=max_iter, gtol=gtol,
                   precision=_precision.of_fit(fit), chunk_size=chunk_size)
    if starts == 1:
        new = _engine.fit_batch(model, init, take(data), **options)
    else:
        new = multistart(model, init, take(data), starts=starts, spread=spread, seed=seed,
                         batched=True, **options).best
    # A converged new fit replaces the old only where it gains beyond the stopping
    # tolerance: BFGS run on from a BOUNDARY fit near a supremum at infinity stops
    # CONVERGED where the likelihood is flat to rounding (``_retry.GAIN``).
    tolerance = _engine.resolve_gtol(gtol, _precision.of_fit(fit))
    better = _retry.improves(np.asarray(fit.loglik)[chosen], new.status, new.loglik, tolerance)
    merged = _retry.replace_rows(fit, chosen[better],
                                 jax.tree_util.tree_map(lambda leaf: leaf[better], new))
    label = new.method if starts == 1 else f"{new.method} x{starts} starts"
    return dataclasses.replace(merged, method=f"{fit.method}, refit {label}")
