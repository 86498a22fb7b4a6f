"""Profile-likelihood intervals: every parameter entry of every dataset in one compiled call.

The profile log-likelihood of entry ``j`` is ``l_p(c) = max l(theta)`` over the other
parameters with ``theta_j = c``; the interval at level ``L`` is the set where
``2 (l_hat - l_p(c)) <= chi2_1(L)`` (Venzon & Moolgavkar 1988; Pawitan, *In All
Likelihood*, 2001, section 2.9). It is invariant to reparameterisation, so it is computed in
the optimiser's unconstrained coordinate ``z_j`` (log for positive, logit for intervals) and
mapped back; only parameters with elementwise constraints (real, positive, interval) can be
profiled this way.

Each end is found by continuation from the estimate along ``t >= 0``, ``z_j = z_hat_j +- t``,
on the signed root ``r(t) = sqrt(2 (l_hat - l_p))``, which is linear in ``t`` for a quadratic
log-likelihood: the first trial is at the Wald end, further trials extrapolate ``r`` through
the origin (at most 4x farther each), and once the threshold ``r* = sqrt(chi2_1(L))`` is
bracketed, regula falsi (bisection where the likelihood is not finite) finishes to
``|r - r*| <= 1e-7``. Every profile point is a damped-Newton fit of the other coordinates
(coordinate ``j`` frozen), warm-started at the last point inside the interval.

Outcomes per end: found; **open** (the profile stays above the threshold for ``1000``
standard errors, or flattens so that its slope would reach the threshold only 100 times
farther out than the current trial, or stays above it up to where the likelihood stops
being finite: the end is then the edge of the support, e.g. ``inf``, and flagged); **failed** (a profile fit did not converge: NaN,
flagged); **better optimum** (a profile point has a log-likelihood above the fit's: the fit was not
the maximum, so every interval of that dataset is NaN and ``better``, ``better_loglik``,
``better_params`` report the best point found — refit from it). A better optimum is only
seen where a profile passes through its basin; ``jm.multistart`` searches for one directly.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmle.batch import _batched
from jaxmle.batch._batched import Batched
from jaxmle.core import _engine, _information, _loop, _precision, _xla
from jaxmle.core._fit import Fit
from jaxmle.core._objective import Objective, likelihood, objective
from jaxmle.core._solve import FitSpec
from jaxmle.core._status import Status
from jaxmle.solvers._newton import Newton

ROOT_TOL = 1e-7       # |r - r*| at an end
OPEN_SE = 1000.0      # an end farther than this many standard errors of z_j is open
# ... and so is one that the current slope of r would reach only this many times farther
# out than the current trial: the profile has flattened towards an asymptote below r*.
OPEN_GROWTH = 100.0
MAX_TRIALS = 60       # profile fits per end
# A profile point beats the fit when its log-likelihood is higher by more than rounding.
BETTER_TOL = 1e-7

SEARCHING, FOUND, OPEN, FAILED, BETTER = range(5)


@dataclasses.dataclass(frozen=True)
class Profile(Batched):
    """Profile-likelihood intervals; a batch adds a leading axis ``B`` to every array
    (``len(profile)``, ``profile[i]``).

    Attributes:
        lower, upper: pytrees like ``params``: the interval ends (NaN where the entry was
            not profiled or its end failed, and everywhere when a better optimum was found;
            the edge of the support where the end is open).
        lower_open, upper_open: bool pytrees: the profile never fell to the threshold on
            that side (the interval is open there).
        failed: bool pytree: a profile fit on either side did not converge.
        better: bool: the profile found a log-likelihood above the fit's (the fit is not
            the maximum: refit from ``better_params``).
        better_loglik, better_params: the best such point (NaN when ``better`` is False).
        level: the confidence level.
    """

    lower: Any
    upper: Any
    lower_open: Any
    upper_open: Any
    failed: Any
    better: jax.Array
    better_loglik: jax.Array
    better_params: Any
    level: float | None = None

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """``(B,)`` for the profile of a batched fit, ``()`` for a single one."""
        return tuple(np.shape(self.better))


_batched.register(Profile, meta_fields=("level",))


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Static: which unconstrained coordinates to profile and where they sit in ``theta``."""

    spec: FitSpec
    z_index: tuple[int, ...]
    theta_index: tuple[int, ...]


def _frozen(loss: Objective, keep: jax.Array) -> Objective:
    """The loss with the coordinates where ``keep == 0`` frozen: their gradient is zero and
    their Hessian block the identity, so a Newton step never moves them."""
    def value_and_grad(z):
        f, g = loss.value_and_grad(z)
        return f, g * keep

    def value_grad_hessian(z):
        f, g, h = loss.value_grad_hessian(z)
        return f, g * keep, h * jnp.outer(keep, keep) + jnp.diag(1.0 - keep)

    return Objective(loss.value, value_and_grad, value_grad_hessian)


class _EndSearch(NamedTuple):
    """The search for one end along ``t >= 0`` (module notes)."""

    lo_t: jax.Array      # the farthest trial inside the interval so far
    lo_r: jax.Array      # its signed root
    lo_z: jax.Array      # its profile point, the warm start of the next trial
    hi_t: jax.Array      # the nearest trial beyond the threshold (inf: not bracketed yet)
    hi_r: jax.Array
    t: jax.Array         # the next trial (the end, once found)
    trials: jax.Array
    outcome: jax.Array   # SEARCHING until decided
    best_f: jax.Array    # the lowest loss of a point better than the fit (inf: none)
    best_z: jax.Array


def _search(plan: _Plan, loss: Objective, z_hat, loss_hat, se_z, j, direction, target):
    """One end: ``(outcome, t, best_loss, best_z)`` along ``z_j = z_hat_j + direction t``."""
    spec, newton = plan.spec, Newton()
    unit = jax.nn.one_hot(j, z_hat.shape[0], dtype=z_hat.dtype)
    restricted = _frozen(loss, 1.0 - unit)
    se = se_z[j]

    def profile_fit(t, z_warm):
        z0 = z_warm + (z_hat[j] + direction * t - z_warm[j]) * unit
        final = _loop.run(newton, restricted, z0, max_iter=spec.max_iter, gtol=spec.gtol)
        return final.solver_state.z, final.solver_state.f, final.status

    def step(s: _EndSearch) -> _EndSearch:
        t = s.t
        z, f, status = profile_fit(t, s.lo_z)
        ok = status == int(Status.CONVERGED)
        beyond = status == int(Status.NONFINITE_START)   # the likelihood is not finite here
        drop = f - loss_hat                                # l_hat - l_p(t)
        better = ok & (drop < -BETTER_TOL * jnp.maximum(1.0, jnp.abs(loss_hat)))
        r = jnp.where(beyond, jnp.inf, jnp.sqrt(jnp.maximum(2.0 * drop, 0.0)))
        above = r >= target
        inside = ok & ~above
        flat = inside & ~jnp.isfinite(s.hi_t) & (
            (target - r) * (t - s.lo_t) > OPEN_GROWTH * t * jnp.maximum(r - s.lo_r, 0.0))
        lo_t, lo_r = jnp.where(inside, t, s.lo_t), jnp.where(inside, r, s.lo_r)
        lo_z = jnp.where(inside, z, s.lo_z)
        bracket = above & (ok | beyond)
        hi_t, hi_r = jnp.where(bracket, t, s.hi_t), jnp.where(bracket, r, s.hi_r)
        root = ok & (jnp.abs(r - target) <= ROOT_TOL)
        collapsed = jnp.isfinite(hi_t) & (hi_t - lo_t <= 1e-12 * jnp.maximum(hi_t, 1.0))
        outcome = jnp.select(
            [better, ~ok & ~beyond, root, collapsed & jnp.isfinite(hi_r), collapsed,
             flat | (~jnp.isfinite(hi_t) & (t >= OPEN_SE * se))],
            [BETTER, FAILED, FOUND, FOUND, OPEN, OPEN], SEARCHING)
        improves = better & (f < s.best_f)
        best_f, best_z = jnp.where(improves, f, s.best_f), jnp.where(improves, z, s.best_z)
        # Next trial: extrapolate r through the origin until bracketed, then regula falsi.
        grow = jnp.clip(jnp.where(r > 0, t * target / jnp.where(r > 0, r, 1.0), 4.0 * t),
                        1.001 * t, 4.0 * t)
        falsi = lo_t + (target - lo_r) * (hi_t - lo_t) / jnp.where(jnp.isfinite(hi_r), hi_r - lo_r, 1.0)
        width = hi_t - lo_t
        falsi = jnp.where(jnp.isfinite(hi_r), jnp.clip(falsi, lo_t + 1e-3 * width, hi_t - 1e-3 * width),
                          lo_t + 0.5 * width)
        t_next = jnp.where(jnp.isfinite(hi_t), falsi, grow)
        t_keep = jnp.where(outcome == SEARCHING, t_next, jnp.where(root, t, lo_t))
        return _EndSearch(lo_t, lo_r, lo_z, hi_t, hi_r, t_keep, s.trials + 1, outcome, best_f,
                          best_z)

    inf = jnp.asarray(jnp.inf, z_hat.dtype)
    zero = jnp.zeros((), z_hat.dtype)
    first = _EndSearch(zero, zero, z_hat, inf, inf, target * se, jnp.zeros((), jnp.int32),
                       jnp.asarray(SEARCHING), inf, z_hat)
    final = _loop.repeat(step, first,
                         lambda s: (s.outcome == SEARCHING) & (s.trials < MAX_TRIALS))
    outcome = jnp.where(final.outcome == SEARCHING, FAILED, final.outcome)
    return outcome, final.t, final.best_f, final.best_z


def _profile_one(plan: _Plan, target, params, status, data, weights, mask):
    """All profiled entries of one dataset (traceable); ``target`` is ``sqrt(chi2_1(level))``."""
    spec, space = plan.spec, plan.spec.space
    lik = likelihood(spec.model, space, data, weights, mask)
    loss = objective(lik)
    z_hat = space.to_unconstrained(params)
    loss_hat, gradient, hessian = loss.value_grad_hessian(z_hat)
    local = _information.local_information(hessian, gradient, z_hat)
    information_ok = local.definite
    se_z = jnp.sqrt(jnp.diag(local.inverse))

    z_index = jnp.asarray(plan.z_index * 2, jnp.int32)
    theta_index = jnp.asarray(plan.theta_index * 2, jnp.int32)
    count = len(plan.z_index)
    direction = jnp.concatenate([-jnp.ones(count), jnp.ones(count)]).astype(z_hat.dtype)
    outcome, t, best_f, best_z = jax.vmap(
        lambda j, d: _search(plan, loss, z_hat, loss_hat, se_z, j, d, target))(z_index, direction)
    usable = (status == int(Status.CONVERGED)) & information_ok
    outcome = jnp.where(usable, outcome, FAILED)

    def end(j, theta_j, d, t, outcome):
        edge = jnp.where(outcome == OPEN, d * jnp.inf, d * t)
        z_end = z_hat.at[j].set(z_hat[j] + edge)
        value = space.flatten(space.to_constrained(z_end))[theta_j]
        return jnp.where((outcome == FOUND) | (outcome == OPEN), value, jnp.nan)

    better = jnp.any(outcome == BETTER) & usable
    # Every threshold is relative to the fit's log-likelihood: if that is not the maximum,
    # no interval of this dataset is right.
    ends = jnp.where(better, jnp.nan, jax.vmap(end)(z_index, theta_index, direction, t, outcome))
    n_flat = space.n_flat
    flat_nan = jnp.full((n_flat,), jnp.nan, z_hat.dtype)
    flat_false = jnp.zeros((n_flat,), bool)
    where = jnp.asarray(plan.theta_index, jnp.int32)
    lower, upper = ends[:count], ends[count:]
    is_open, is_failed = outcome == OPEN, outcome == FAILED
    best = jnp.argmin(best_f)
    return Profile(
        lower=space.unflatten(flat_nan.at[where].set(lower)),
        upper=space.unflatten(flat_nan.at[where].set(upper)),
        lower_open=space.unflatten(flat_false.at[where].set(is_open[:count])),
        upper_open=space.unflatten(flat_false.at[where].set(is_open[count:])),
        failed=space.unflatten(flat_false.at[where].set(is_failed[:count] | is_failed[count:])),
        better=better,
        better_loglik=jnp.where(better, -best_f[best] - lik.log_prior(best_z[best]), jnp.nan),
        better_params=jax.tree_util.tree_map(lambda leaf: jnp.where(better, leaf, jnp.nan),
                                             space.to_constrained(best_z[best])))


def _profile_batch(plan, chunk, target, params, status, data, weights, mask):
    one = lambda args: _profile_one(plan, target, *args)
    return jax.lax.map(one, (params, status, data, weights, mask), batch_size=chunk)


_profile_one_compiled = _xla.jit(_profile_one, static_argnums=0)
_profile_batch_compiled = _xla.jit(_profile_batch, static_argnums=(0, 1))


def _plan(spec: FitSpec, parameters: Sequence[str] | None) -> _Plan:
    """The coordinates to profile: every entry of the named leaves (default: every leaf
    with an elementwise constraint)."""
    space = spec.space
    names = space.leaf_names
    if parameters is None:
        chosen = [name for name, c in zip(names, space.constraints) if c.elementwise]
    else:
        chosen = [parameters] if isinstance(parameters, str) else list(parameters)
        unknown = [name for name in chosen if name not in names]
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; the parameters are {list(names)}")
        joint = [name for name in chosen if not space.constraints[names.index(name)].elementwise]
        if joint:
            raise ValueError(
                f"cannot profile {joint}: their constraint ({', '.join(repr(space.constraints[names.index(n)]) for n in joint)}) "
                "ties entries together; reparameterise the model so the quantity is a parameter "
                "of its own with an elementwise constraint")
    z_index, theta_index, z_start, theta_start = [], [], 0, 0
    for name, shape, free_shape in zip(names, space.shapes, space.free_shapes):
        size, free = int(np.prod(shape)), int(np.prod(free_shape))
        if name in chosen:
            z_index += range(z_start, z_start + free)
            theta_index += range(theta_start, theta_start + size)
        z_start, theta_start = z_start + free, theta_start + size
    if not z_index:
        raise ValueError("nothing to profile: no parameter has an elementwise constraint "
                         f"(real, positive, interval); the parameters are {list(names)}")
    return _Plan(spec, tuple(z_index), tuple(theta_index))


@_precision.public
def profile(fit: Fit, data, *, parameters: Sequence[str] | str | None = None,
            level: float = 0.95, weights=None, mask=None, max_iter: int | None = None,
            gtol: float | None = None, chunk_size: int | None = None) -> Profile:
    """Profile-likelihood confidence intervals for parameters of a single or batched fit.

    The objective profiled is the one the fit maximised (``fit.model``: with a prior, the
    log-posterior).

    Args:
        fit: the ``Fit`` from ``jm.fit``, or a batched one from ``jm.fit_batch`` (then
            ``data``, ``weights`` and ``mask`` carry the same leading axis ``B``).
        data: the data the fit used.
        parameters: leaf names to profile (every entry of each), default every leaf with an
            elementwise constraint (real, positive, interval).
        level: confidence level; the threshold is ``chi2_1(level) / 2`` below the maximum.
        max_iter, gtol: for each profile point's Newton fit (defaults as for ``jm.fit``).
        chunk_size: datasets profiled together in a batch (default as in ``fit_batch``).

    Returns:
        A ``Profile`` (see the module notes for open, failed and better-optimum ends).

    Example:
        >>> import numpy as np
        >>> import jaxmle as jm
        >>> x = np.random.default_rng(0).exponential(0.5, size=40)
        >>> fit = jm.fit(jm.models.exponential, None, x)
        >>> prof = jm.profile(fit, x)
        >>> lower, upper = float(prof.lower["rate"]), float(prof.upper["rate"])
        >>> bool(lower < fit.params["rate"] < upper), bool(upper - fit.params["rate"] > fit.params["rate"] - lower)
        (True, True)
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    spec, data, weights, mask = _engine.prepare_for_fit(
        fit, data, weights=weights, mask=mask, max_iter=max_iter, gtol=gtol)
    batched = bool(fit.batch_shape)
    precision = _precision.of_fit(fit)
    params = fit.params
    plan = _plan(spec, parameters)
    # sqrt of the chi-squared(1) quantile: the standard normal quantile of (1 + level) / 2.
    target = np.asarray(statistics.NormalDist().inv_cdf(0.5 + 0.5 * level), precision)
    if not batched:
        result = _profile_one_compiled(plan, target, params, fit.status, data, weights, mask)
    else:
        chunk = _engine.resolve_chunk_size(chunk_size, spec, (data, weights, mask))
        result = _profile_batch_compiled(plan, chunk, target, params, fit.status, data,
                                         weights, mask)
    return dataclasses.replace(jax.device_get(result), level=level)
