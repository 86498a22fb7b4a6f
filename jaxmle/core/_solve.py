"""One dataset's fit as traceable pieces: start point, start, one iteration, finish.

``fit`` runs them to the end with the loop driver (``_loop.run``); the batched driver
(``_batch``) steps many datasets together and can move a slow one to another chunk between
iterations, which is why an iteration is a function of its own.

A single long dataset (per-observation form, at least ``SUBSAMPLE_MIN_OBS`` observations)
is first fitted on every ``stride``-th observation (about ``SUBSAMPLE_OBS`` of them, each
weighted by ``stride`` so the likelihood keeps its scale against a prior), from the given
start; the fit on all observations then starts where that one ended, if its estimate
passes the same certification as a fit's (status CONVERGED; else from the given start).
That estimate is about ``sqrt(stride)`` standard errors from the full one, where Newton
converges quadratically: one Normal fit of 10^7 observations from (0, 1) took
11 full iterations, with the subsample start 2 (timings in ``docs/design.md``; compiling
the second loop lengthens the first call). The stopping rule and the
certification of the full fit are unchanged; ``n_iter`` counts iterations on all
observations. With several local optima, the subsample's fit decides which one the full
fit reaches from the given start (``jm.multistart`` explores starts; batches are not
subsampled).

The reduced start (``reduced_inputs_one`` and ``reduced_optima``, used by large
batches, see ``_batch``): when the log-density is affine in functions of the data
(``_reduce``), the log-likelihood computed from sufficient statistics (one pass over the
data, then no cost per observation) is first minimised by the small Newton of
``solvers/_start_newton`` (the trust-region Newton, compiled a second time, cost more compile
time than the start saved), and the fit on all observations starts at that point. Reduced
and full log-likelihoods agree up to rounding, so both have the same optimum; the full
fit's stopping test and certification decide the result as from any start
(10,000 x 1,000 Normal from (0, 1): 8 full iterations -> 0; Gamma from (1, 1): 7.3 -> 0;
timings in ``docs/design.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmle.core import _information, _loop, _parameters, _reduce
from jaxmle.core._fit import Fit
from jaxmle.core._model import Model
from jaxmle.solvers import _start_newton
from jaxmle.solvers._solver import Solver
from jaxmle.core._objective import (Likelihood, ModelForm, likelihood, log_prior_of, objective,
                               per_observation_leaf)
from jaxmle.core._status import RUNNING, Status

SUBSAMPLE_MIN_OBS = 2**20
SUBSAMPLE_OBS = 2**16
REDUCED_MAX_ITER = 100  # iterations of the start minimiser on a reduced problem


@dataclasses.dataclass(frozen=True)
class FitSpec:
    """Everything static about a fit: it keys the compiled-function cache."""

    model: ModelForm
    space: _parameters.ParameterSpace
    solver: Solver
    init_fn: Callable | None
    cov_kind: str
    max_iter: int
    gtol: float
    xtol: float
    fitted: Model | None = None  # the user's Model, which each Fit carries


def _data_ok(data, active) -> jax.Array:
    """False when an active observation (or, for a scalar density, any entry) is NaN."""
    ok = jnp.ones((), bool)
    for leaf in jax.tree_util.tree_leaves(data):
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            continue
        bad = jnp.isnan(leaf)
        if active is not None and leaf.ndim >= 1 and leaf.shape[0] == active.shape[0]:
            bad = bad & active.reshape(active.shape + (1,) * (leaf.ndim - 1))
        ok = ok & ~jnp.any(bad)
    return ok


class _Problem(NamedTuple):
    """One dataset's likelihood, the loss the solver minimises, and pre-solve checks."""

    lik: object
    loss: object          # the solver's Objective
    n_obs: jax.Array | None
    blocked: jax.Array    # a Status code, or RUNNING when the data allow a solve


def _problem(spec: FitSpec, data, weights, mask, valid) -> _Problem:
    model = spec.model
    lik = likelihood(model, spec.space, data, weights, mask)
    if model.per_observation:
        n_obs = jnp.sum(jnp.where(lik.active, lik.weights, 0.0))
        enough = n_obs >= spec.space.n_free
    else:
        n_obs, enough = None, jnp.ones((), bool)
    blocked = jnp.where(~_data_ok(data, lik.active), int(Status.INVALID_DATA),
                        jnp.where(~enough, int(Status.TOO_FEW_OBSERVATIONS), RUNNING))
    # Padding datasets of a batch (valid False) are blocked: they never iterate.
    blocked = jnp.where(valid, blocked, int(Status.INVALID_DATA))
    mean_loss = spec.solver.mean_loss and model.per_observation
    scale = 1.0 / jnp.maximum(n_obs, 1.0) if mean_loss else 1.0
    return _Problem(lik, objective(lik, scale), n_obs, blocked)


def _initial_z(spec: FitSpec, problem: _Problem, init) -> jax.Array:
    # A data-driven start sees padded or zero-weight observations replaced by the first
    # active one: finite whatever the padding holds (a start, not an estimate).
    params0 = spec.init_fn(problem.lik.data) if spec.init_fn is not None else init
    # A callable init may return integers; the solver works in the scope's float dtype.
    return spec.space.to_unconstrained(params0).astype(jnp.result_type(float))


def _finish(spec: FitSpec, problem: _Problem, loop: _loop.LoopState) -> Fit:
    derivatives = spec.solver.derivatives(objective(problem.lik), loop.solver_state)
    return _fit_at(spec, problem, loop.solver_state.z, derivatives, loop.status, loop.n_iter)


def _fit_at(spec: FitSpec, problem: _Problem, z: jax.Array, derivatives, loop_status,
            n_iter) -> Fit:
    """The ``Fit`` at ``z``, certified from the loss, gradient and Hessian there
    (``derivatives``), where the loop stopped with ``loop_status``."""
    space = spec.space
    assessed = _information.assess(derivatives, problem.lik, space, z, loop_status,
                                   cov_kind=spec.cov_kind, xtol=spec.xtol)
    return Fit(
        params=space.to_constrained(z),
        se=space.unflatten(jnp.sqrt(jnp.diag(assessed.cov))),
        cov=assessed.cov, loglik=assessed.loglik, status=assessed.status,
        n_iter=n_iter, grad_norm=assessed.grad_norm, n_obs=problem.n_obs,
        n_params=space.n_free, names=space.names, method=spec.solver.name,
        cov_kind=spec.cov_kind, model=spec.fitted)


def reduction_for(spec: FitSpec, data_one) -> _reduce.Reduction | None:
    """The model's reduced form (``_reduce``) at the shapes of one dataset's data (arrays
    or shape structs), or None. Static: decided while tracing."""
    z = jax.ShapeDtypeStruct((spec.space.n_free,), jnp.result_type(float))
    return _reduce.reduction(spec.model.log_density, jax.eval_shape(spec.space.to_constrained, z),
                             data_one, spec.model.n_obs_axis)


def reduced_inputs_one(spec: FitSpec, reduction: _reduce.Reduction, init, data, weights,
                       mask, valid=True):
    """One dataset's unconstrained start ``init`` (or ``spec.init_fn(data)``), its
    statistics (one pass over its active observations) and its pre-solve status: the
    inputs of ``reduced_optima`` (traceable)."""
    problem = _problem(spec, data, weights, mask, valid)
    z0 = _initial_z(spec, problem, init)
    lik = problem.lik
    weights = None if lik.active is None else jnp.where(lik.active, lik.weights, 0.0)
    stats = _reduce.statistics(reduction, spec.space.to_constrained(z0), lik.data, weights)
    return z0, stats, problem.blocked


def reduced_optima(spec: FitSpec, reduction: _reduce.Reduction, z0: jax.Array, stats,
                   blocked: jax.Array) -> jax.Array:
    """``(B, k)``: the optimum of each dataset's reduced problem (its log-likelihood from
    its statistics ``stats``, leading axis ``B`` like ``z0`` and ``blocked``), found from
    its row of ``z0`` by the start minimiser (``_start_newton``); that row itself for a
    blocked dataset or a non-finite loss (traceable; no cost per observation)."""
    def derivatives(z, stats):
        reduced = Likelihood(
            lambda z: _reduce.loglik(reduction, spec.space.to_constrained(z), stats),
            log_prior_of(spec.model, spec.space), None, None, None, None)
        return objective(reduced).value_grad_hessian(z)

    z, _ = _start_newton.minima(lambda z: jax.vmap(derivatives)(z, stats), z0, gtol=spec.gtol,
                                max_iter=REDUCED_MAX_ITER)  # z0 where the loss is not finite
    return jnp.where((blocked == RUNNING)[:, None], z, z0)


def start_one(spec: FitSpec, init, data, weights, mask, valid=True, *,
              found: jax.Array | None = None) -> _loop.LoopState:
    """The loop state of one dataset at its start (traceable): ``init`` (or
    ``spec.init_fn(data)``), or ``found`` (``(k,)``, unconstrained) where it is finite."""
    problem = _problem(spec, data, weights, mask, valid)
    z0 = _initial_z(spec, problem, init)
    if found is not None:
        z0 = jnp.where(jnp.all(jnp.isfinite(found)), found, z0)
    return _loop.start(spec.solver, problem.loss, z0, max_iter=spec.max_iter, gtol=spec.gtol,
                       blocked=problem.blocked)


def initial_one(spec: FitSpec, init, data, weights, mask,
                valid=True) -> tuple[jax.Array, jax.Array]:
    """One dataset's unconstrained start (``init`` or ``spec.init_fn(data)``) and its
    pre-solve status (RUNNING where the data allow a fit); traceable."""
    problem = _problem(spec, data, weights, mask, valid)
    return _initial_z(spec, problem, init), problem.blocked


def derivatives_one(spec: FitSpec, z: jax.Array, data, weights, mask):
    """Loss, gradient and Hessian of one dataset at ``z`` (traceable)."""
    return _problem(spec, data, weights, mask, True).loss.value_grad_hessian(z)


def certify_at_one(spec: FitSpec, z: jax.Array, derivatives, n_iter: jax.Array, data,
                   weights, mask, valid=True) -> tuple[Fit, jax.Array]:
    """``(fit, decided)``: one dataset certified at ``z`` from its loss, gradient and
    Hessian there (``derivatives``), as a fit of the solver that stopped at ``z`` after
    ``n_iter`` iterations (traceable; the solver evaluates once per start, ``_loop``).
    ``decided``: the fit is CONVERGED, or its data block any fit."""
    problem = _problem(spec, data, weights, mask, valid)
    f, g, _ = derivatives
    # No solver state is built here: what a solver's start would add to the stopping test
    # (Newton's negative curvature) is no CONVERGED fit either way, as the certification
    # finds such a Hessian not positive definite.
    status = _loop.start_status(z, f, g, max_iter=spec.max_iter, gtol=spec.gtol,
                                blocked=problem.blocked)
    fit = _fit_at(spec, problem, z, derivatives, status, n_iter)
    return fit, (fit.status == int(Status.CONVERGED)) | (problem.blocked != RUNNING)


def step_one(spec: FitSpec, loop: _loop.LoopState, data, weights, mask) -> _loop.LoopState:
    """One iteration of one dataset; a no-op once it has finished (traceable)."""
    problem = _problem(spec, data, weights, mask, True)
    return _loop.advance(spec.solver, problem.loss, loop, max_iter=spec.max_iter, gtol=spec.gtol)


def finish_one(spec: FitSpec, loop: _loop.LoopState, data, weights, mask) -> Fit:
    """Certifies the final iterate and computes covariances: the ``Fit`` (traceable)."""
    return _finish(spec, _problem(spec, data, weights, mask, True), loop)


def _subsample_start(spec: FitSpec, z0: jax.Array, data, weights, mask) -> jax.Array:
    """The estimate from every ``stride``-th observation (module notes), else ``z0``."""
    n = spec.model.n_obs_axis
    stride = 2 ** ((n // SUBSAMPLE_OBS).bit_length() - 1)  # a power of two
    every = lambda leaf: leaf[::stride] if per_observation_leaf(leaf, n) else leaf
    n_sub = -(-n // stride)
    sub_weights = jnp.full((n_sub,), float(stride)) if weights is None else stride * weights[::stride]
    sub_spec = dataclasses.replace(spec, model=dataclasses.replace(
        spec.model, n_obs_axis=n_sub))
    sub = _problem(sub_spec, jax.tree_util.tree_map(every, data), sub_weights,
                   None if mask is None else mask[::stride], True)
    return _preliminary_estimate(sub_spec, sub, z0)


def _solved(spec: FitSpec, problem: _Problem, z0: jax.Array) -> _loop.LoopState:
    """The loop state where the fit of ``problem`` from ``z0`` stops."""
    return _loop.run(spec.solver, problem.loss, z0, max_iter=spec.max_iter, gtol=spec.gtol,
                     blocked=problem.blocked)


def _preliminary_estimate(spec: FitSpec, problem: _Problem, z0: jax.Array) -> jax.Array:
    """The estimate of a preliminary fit of ``problem`` from ``z0`` when it passes the fit's
    own certification, else ``z0``: not, e.g., one drifting to a boundary of a subsample's
    likelihood (separation in a logistic regression; status BOUNDARY)."""
    loop = _solved(spec, problem, z0)
    derivatives = spec.solver.derivatives(objective(problem.lik), loop.solver_state)
    checked = _information.assess(derivatives, problem.lik, spec.space, loop.solver_state.z,
                                  loop.status, cov_kind="observed", xtol=spec.xtol)
    return jnp.where(checked.status == int(Status.CONVERGED), loop.solver_state.z, z0)


def fit_one(spec: FitSpec, init, data, weights, mask) -> Fit:
    """Fits one dataset (traceable); its likelihood is built once, outside the loop."""
    problem = _problem(spec, data, weights, mask, True)
    z0 = _initial_z(spec, problem, init)
    n = spec.model.n_obs_axis
    if n is not None and n >= SUBSAMPLE_MIN_OBS:
        z0 = _subsample_start(spec, z0, data, weights, mask)
    return _finish(spec, problem, _solved(spec, problem, z0))
