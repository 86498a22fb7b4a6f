"""Newton's method with the exact Hessian, globalised by an exact trust region.

Each iteration eigendecomposes the scaled Hessian ``C = D^-1 H D^-1`` (k x k, cheap) and
takes the trust-region step of radius ``r`` exactly (Moré & Sorensen 1983): the pure
Newton step when ``H`` is positive definite and that step is shorter than ``r``; otherwise
``p(mu) = -(C + mu I)^-1 D^-1 g`` with ``mu >= max(0, -lambda_min)`` and ``||p(mu)|| = r``,
found by Newton's method on the secular equation from a lower bound; in the hard case
(no gradient along the most negative curvature) the step goes on to the boundary along
that direction, so a saddle point is left, not reported as an optimum. Loss, gradient and
Hessian at the trial point come from one fused pass, so every iteration costs the same
under ``vmap`` (no nested line search).

Rules, each measured on ``benchmarks/hard_problems.py`` (the 35 Moré-Garbow-Hillstrom
problems from 1x, 10x and 100x their start, the 27 NIST StRD regressions from both starts,
least squares and Gaussian likelihoods with sigma free; RESULTS.md has the tables):

* Scaling ``D^2``: Moré's running maximum of ``|diag H|``, never more than ``MEMORY_CAP``
  times the current ``|diag H|``. The plain running maximum remembers the curvature of a
  far start forever: where a parameter's curvature later falls by more than ``1/eps``
  (a Gaussian sigma falling from 0.1 to 1e-13, NIST Lanczos1) its direction drowns in
  rounding and the fit crawls; the current diagonal alone (no memory) leads Newton onto
  the manifold where two exponentials merge (NIST Lanczos1-3, SINGULAR_HESSIAN).
* Radius: after an accepted step, the step measured in the new point's scaling, doubled
  when the ratio ``rho`` of actual to predicted decrease exceeds 0.75, kept above 0.25;
  after a rejection or a poorer step, the step times the minimiser of the quadratic
  through the loss, its slope along the step and the trial loss (Dennis & Schnabel 1983,
  6.4.2), within [0.1, 0.5], of the shorter of the step and the radius (an extrapolated
  step may be far longer than the radius; Moré-Garbow-Hillstrom Osborne 1 from 100x, NIST
  MGH17, ended STALLED when a radius that had grown past the steps shrank too slowly).
  Measuring in the new scaling keeps the radius meaningful when curvatures change by
  orders of magnitude between iterations. The first radius admits the pure Newton step.
  A failed extrapolation (below) leaves the radius as it was: it tested a multiple of
  Newton's step, not the quadratic model (Bard from 10x runs off to its infimum at
  infinity; shrinking there, the fit crawled for 750 iterations to a singular Hessian;
  keeping it, the fit reports BOUNDARY after 37).
* Extrapolation: when consecutive steps are multiples of Newton's, point the same way and
  the new Newton step is not much shorter than the last, convergence is only linear along
  that direction (a scale parameter in log coordinates far below its optimum moves 0.5 per
  Newton step); the multiple then doubles each iteration, accepted on sufficient decrease
  (Armijo), and falls back to 1 on the first failure, after which ``COOLDOWN`` iterations
  pass before the next try (in a curved valley, NIST Bennett5, every other iteration was
  a failed extrapolation). Never where the loss is below 1: a log-likelihood near its
  supremum 0 (separation in a logistic regression) has its optimum at infinity, and
  extrapolating there only runs past the point where the information still tells the
  boundary direction (BOUNDARY became SINGULAR_HESSIAN).
* Linear approach to a singular minimum: where consecutive Newton steps point the same way
  and shrink by a steady factor ``c`` in ``LINEAR_RATES`` (the loss grows like ``|u|^p``,
  ``p > 2``, along the direction: ``c = (p - 2) / (p - 1)``, Griewank & Osborne 1983), the
  next step is the sum of their geometric series, ``1 / (1 - c)`` times Newton's (Aitken's
  extrapolation), accepted on sufficient decrease; where the loss is at least 1 the
  doubling above covers these rates. Moré-Garbow-Hillstrom Powell singular: CONVERGED at
  RSS 3e-15 with the parameters 1e-4 from the minimiser 0 after 22 iterations; the series
  step lands within 1e-13 of it.
* Steps the model did not describe: a step accepted with a predicted decrease below the
  loss's rounding, or with ``rho`` outside [0.25, 4], tells nothing of the path, so no
  extrapolation, linear approach or receding is read from the next Newton step against it.
  NIST Lanczos1 with sigma free ends with residuals at the rounding of its data, where the
  loss moves by noise far above ``eps |f|``: a noise step seven times the last, pointing
  the same way, marked the certified minimum as receding (BOUNDARY) when the fit was
  compiled without LLVM's optimisations. No outcome of the collection changes otherwise.
* Acceptance: ``rho >= 1e-4``, and ``rho >= 0.25`` until a first step is accepted: at the
  start nothing backs the quadratic model yet, and a long first step that lowers the loss
  a little can land on a plateau where the model is flat (NIST Eckerle4 from its first
  start: a Gaussian peak moved off the data, zero gradient, SINGULAR_HESSIAN after one
  step; with the rule the first steps shrink and the fit converges). Near the optimum,
  where the predicted decrease falls to the rounding level of the loss (``64 eps |f|``:
  relative, so that a loss near 0 from a perfect fit is not allowed to rise by orders of
  magnitude, from 2e-21 to 4e-18 on Extended Powell singular), a step that does not raise
  the loss beyond that level and lowers the gradient norm.

Stopping (besides the driver's relative-gradient test, which is absolute for a loss below
1): the iterate is stationary when,
at a positive definite Hessian, every coordinate of its Newton step ``-H^-1 g`` is within
``decrement_tol`` standard errors (``sqrt(diag H^-1)``, times ``sqrt(|f|)`` where the
loss is below 1: near a perfect least-squares fit the loss ``RSS / 2`` falls towards 0 and
the statistical standard errors with ``sqrt(RSS)``; NIST Lanczos2 otherwise stopped short
of its certified parameters, and Moré-Garbow-Hillstrom Gaussian from 100x was CONVERGED
at a singular Hessian) or below the rounding resolution ``4 eps |z_i|`` of the
coordinate. When no step can reduce the loss any more (the radius
has shrunk below rounding, or the driver's patience runs out), an iterate within
``settled_tol`` standard errors of its Newton point is converged as far as the arithmetic
allows (NIST Lanczos1 with sigma free: residuals of 1e-13 on data of order 1 carry
rounding of 1e-3 relative, and so do the loss and its gradient); so is one, where the radius
has shrunk below rounding, whose whole Newton step promises a decrease below the loss change
of that rounding-sized trial (the loss's own noise, far above ``eps |f|`` there: Lanczos1's
Newton step in log sigma is 0.01-0.02 standard errors of pure noise, by CPU); otherwise
STALLED. A
start whose Hessian has clearly negative curvature is flagged ``saddle``: the driver's
gradient test does not stop there, so a symmetric start with a zero gradient (identical
mixture components) is left along negative curvature. Later iterates are not checked: an
eigendecomposition of every trial Hessian was a measurable share of the batch benchmarks'
time (``docs/design.md``), and
an iterate that lands on a saddle exactly is rare; certification reports one
(SINGULAR_HESSIAN). Neither test stops at an iterate reached by a step that cut the loss by
more than half, or on a linear approach, while the Newton steps shrink (by at least
``LINEAR_RATES[1]``) and until a step from it fails (``falling``, reported as
``unfinished`` to the driver): there the loss is still far from its minimum relative to
itself. The shrinking steps tell it from separation in a logistic regression, whose loss
falls by a constant factor per step of constant length (BOUNDARY there, not a fit run on
until its Hessian is singular). A fit to data without noise (NIST Lanczos1 and Lanczos2 as least squares) passed
the gradient test at RSS 1e-18 where the minimum is 1e-25, short of the certified
parameters; the quadratic convergence there costs one or two more iterations. A statistical fit, whose
loss falls by a tiny fraction of itself near its optimum, is unaffected.

Receding towards infinity: where consecutive Newton steps continue one direction and keep
their length, the loss approaches its supremum at infinity (``c exp(-u)`` in a log
coordinate ``u``: Newton's step stays 1); a Student-t fit to Normal-looking data runs its
degrees of freedom up so, until the loss is flat to rounding near ``df = 1e7`` and a
rounding-noise gradient passed every test (CONVERGED at an arbitrary ``df``). The iterate
is ``receding`` from the first such step until a Newton step that continues the last
shrinks (by ``LINEAR_RATES[1]``) or is negligible (the decrement test); a reversed step
does not end it, because noise reverses it. A fit that stops while receding, by any test,
is BOUNDARY (separation in a logistic regression stops so too).

References:
    Nocedal & Wright, *Numerical Optimization* (2006), ch. 4 (trust regions; ratio eq. 4.4;
    the exact subproblem, 4.3);
    J. J. Moré, "The Levenberg-Marquardt algorithm: implementation and theory" (1978);
    J. J. Moré & D. C. Sorensen, "Computing a trust region step" (1983);
    A. Griewank & M. R. Osborne, "Analysis of Newton's method at irregular singularities",
    SIAM J. Numer. Anal. 20 (1983) 747-773 (linear rates at a singular root);
    A. C. Aitken, "On Bernoulli's numerical solution of algebraic equations" (1926);
    J. E. Dennis & R. B. Schnabel, *Numerical Methods for Unconstrained Optimization and
    Nonlinear Equations* (1983), section 6.4.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxmle.core._eigh import symmetric_eigh
from jaxmle.core._information import correlation_eigh


MEMORY_CAP = 1e4     # the scaling remembers at most this multiple of the current |diag H|
SECULAR_ITERATIONS = 12  # Newton steps on the secular equation per trust-region step
SADDLE_TOL = 1e-8    # an eigenvalue below -SADDLE_TOL * max |eigenvalue|: clearly negative
MAX_MULTIPLIER = 2.0 ** 20  # the largest multiple of the Newton step extrapolated to
COOLDOWN = 10.0      # iterations without extrapolation after one failed
LINEAR_RATES = (0.5, 0.9)  # Newton steps shrinking by such a factor: a linear approach
FALLING_CUT = 0.5    # a step that removed more than this fraction of the loss: falling


class NewtonState(NamedTuple):
    z: jax.Array
    f: jax.Array
    g: jax.Array
    hessian: jax.Array
    radius: jax.Array
    scale: jax.Array
    last: jax.Array        # the step that reached z
    multiplier: jax.Array  # of the Newton step in it (0: a step that was not Newton's)
    cooldown: jax.Array    # iterations before the next extrapolation may be tried
    saddle: jax.Array      # z is the start and its Hessian has clearly negative curvature
    falling: jax.Array     # z was reached by a step that cut the loss by more than half,
                           # or on a linear approach, and no step from z has failed yet
    settled: jax.Array     # z is within settled_tol standard errors of its Newton point
    receding: jax.Array    # z was reached by Newton steps that kept their length along one
                           # direction, and no Newton step has shrunk since (module notes)

    @property
    def unfinished(self):
        """No optimum whatever the gradient: the driver's gradient test does not stop here."""
        return self.saddle | self.falling


def _shift_for_length(eigenvalues, projected, shift, target, iterations: int = 4):
    """A shift ``s >= shift`` whose step ``|| sum_i projected_i / (e_i + s) v_i ||`` is about
    ``target`` (from above), by Newton's method on ``1 / ||p(s)|| - 1 / target``, which
    increases ``s`` monotonically from a step longer than ``target`` (Moré & Sorensen 1983)."""
    def newton_update(_, shift):
        denominator = eigenvalues + shift
        length = jnp.sqrt(jnp.sum((projected / denominator) ** 2))
        slope = jnp.sum(projected ** 2 / denominator ** 3) / length ** 3
        update = (1.0 / target - 1.0 / length) / slope
        return shift + jnp.where(jnp.isfinite(update) & (update > 0), update, 0.0)

    # One loop body, compiled once (unrolled, the iterations lengthened compilation).
    return jax.lax.fori_loop(0, iterations, newton_update, jnp.asarray(shift, eigenvalues.dtype))


@dataclasses.dataclass(frozen=True)
class Newton:
    """Trust-region Newton (module notes).

    Attributes:
        decrement_tol: the fit is stationary when, at an iterate with a positive definite
            Hessian, every coordinate of the Newton step is below this many standard errors
            (or below the coordinate's rounding resolution).
        settled_tol: the same test, in standard errors, for an iterate from which no step
            reduces the loss beyond rounding any more: CONVERGED if it passes, else STALLED.
    """

    decrement_tol: float = 1e-9
    settled_tol: float = 1e-2
    name = "newton"
    patient = True  # the driver's budget by progress applies (``_loop.PATIENCE``)
    mean_loss = False
    one_evaluation = True  # value_grad_hessian once per init and per step (``_solver``)

    @staticmethod
    def _scale(h, old):
        """Moré's running maximum of ``|diag h|``, capped at ``MEMORY_CAP |diag h|``."""
        d = jnp.abs(jnp.diag(h))
        return jnp.minimum(jnp.maximum(old, d), MEMORY_CAP * d)

    @staticmethod
    def _root(scale):
        """The scaling ``d`` (``(k,)``): square roots of ``scale``, floored at 1e-8 of its
        largest entry."""
        tiny = jnp.finfo(scale.dtype).tiny
        d = jnp.sqrt(jnp.maximum(scale, jnp.maximum(1e-8 * jnp.max(scale), tiny)))
        return jnp.where(jnp.isfinite(d), d, 1.0)

    def init(self, objective, z):
        f, g, h = objective.value_grad_hessian(z)
        zero = jnp.zeros((), z.dtype)
        radius = zero + jnp.inf  # the first step decides it (see step)
        false = jnp.zeros((), bool)
        return NewtonState(z, f, g, h, radius, jnp.abs(jnp.diag(h)), last=jnp.zeros_like(z),
                           multiplier=zero, cooldown=zero, saddle=self._saddle(h),
                           falling=false, settled=false, receding=false)

    @staticmethod
    def _saddle(h):
        """True when ``h`` (``(k, k)``) has an eigenvalue below ``-SADDLE_TOL`` times its
        largest in absolute value, in its correlation form."""
        eigenvalues = correlation_eigh(h).eigenvalues
        return eigenvalues[0] < -SADDLE_TOL * jnp.max(jnp.abs(eigenvalues))

    def derivatives(self, objective, state: NewtonState):
        """Loss, gradient and Hessian at ``state.z``: kept from the step that accepted it."""
        return state.f, state.g, state.hessian

    def step(self, objective, state: NewtonState):
        eps = jnp.finfo(state.z.dtype).eps
        tiny = jnp.finfo(state.z.dtype).tiny
        d = self._root(state.scale)
        eigenvalues, vectors = symmetric_eigh(state.hessian / jnp.outer(d, d))
        smallest, largest = eigenvalues[0], jnp.max(jnp.abs(eigenvalues))
        projected = vectors.T @ (state.g / d)
        definite = smallest > 0
        positive = jnp.where(definite, eigenvalues, 1.0)
        newton_coef = -projected / positive
        newton_length = jnp.linalg.norm(newton_coef)
        radius = jnp.where(jnp.isinf(state.radius),
                           jnp.where(definite, newton_length,
                                     jnp.maximum(jnp.linalg.norm(projected) / largest, 1.0)),
                           state.radius)
        pure = definite & (newton_length <= radius)
        # Extrapolation: the previous step was (a multiple of) Newton's, and the Newton step
        # here continues it in direction and is not much shorter than the Newton step
        # there: convergence is only linear along that direction (e.g. a scale parameter in
        # log coordinates, far from its optimum), so the multiple doubles.
        last_scaled = vectors.T @ (state.last * d)
        last_length = jnp.linalg.norm(last_scaled)
        cosine = (newton_coef @ last_scaled) / jnp.maximum(newton_length * last_length, tiny)
        continues = definite & (state.multiplier >= 1) & (cosine >= 0.9)
        rate = newton_length * state.multiplier / jnp.maximum(last_length, tiny)
        # A linear approach to a singular minimum: along a direction where the loss grows
        # like |u|^p (p > 2), Newton's steps shrink by (p - 2) / (p - 1) each; their sum,
        # 1 / (1 - rate) times this step, is the minimiser (Aitken's extrapolation).
        # Where the loss is at least 1 the doubling below covers these rates.
        # Newton steps that shrink: the iterate is approaching a point, not running off to
        # infinity along a loss that falls without end (separation in a logistic regression,
        # where the Newton steps keep their length).
        shrinking = definite & (state.multiplier >= 1) & (rate <= LINEAR_RATES[1])
        linear = continues & (rate >= LINEAR_RATES[0]) & (rate <= LINEAR_RATES[1])
        large = jnp.abs(state.f) >= 1.0
        aitken = linear & (state.multiplier == 1) & (state.cooldown <= 0) & ~large
        chain = aitken | (continues & (state.cooldown <= 0) & large & (rate >= 0.5))
        multiplier = jnp.where(aitken, 1.0 / (1.0 - jnp.minimum(rate, LINEAR_RATES[1])),
                               jnp.where(chain, jnp.minimum(2.0 * state.multiplier,
                                                            MAX_MULTIPLIER), 1.0))
        # The trust-region step: the shift mu >= max(0, -smallest) with ||p(mu)|| = radius,
        # by Newton's method on the secular equation from a lower bound (Moré & Sorensen).
        floor = jnp.where(definite, 0.0, -smallest + 16 * eps * largest + tiny)
        lower = jnp.maximum(floor, jnp.linalg.norm(projected) / radius - eigenvalues[-1])
        shift = _shift_for_length(eigenvalues, projected, lower, radius, SECULAR_ITERATIONS)
        coef = -projected / (eigenvalues + shift)
        coef = jnp.where(chain, multiplier * newton_coef, jnp.where(pure, newton_coef, coef))
        # Hard case: the gradient has (almost) no component along the most negative
        # curvature, the shifted step stays inside: go to the boundary along that direction.
        short = jnp.linalg.norm(coef)
        extra = jnp.sqrt(jnp.maximum(radius ** 2 - short ** 2, 0.0))
        hard = (~definite) & (short < 0.99 * radius) & ~chain
        coef = coef.at[0].add(jnp.where(hard, jnp.where(projected[0] > 0, -extra, extra), 0.0))
        scaled_p = vectors @ coef
        p = scaled_p / d
        newton_step = (vectors @ newton_coef) / d
        se = jnp.sqrt((vectors ** 2) @ (1.0 / positive)) / d
        # Along a linear approach the Newton step understates the distance to the minimum
        # (and the standard errors grow without bound): not stationary however short.
        # Below a loss of 1 the standard errors are taken relative to the loss's square root
        # (a least-squares loss RSS / 2 near a perfect fit: sigma falls like sqrt(RSS)).
        resolution = se * jnp.sqrt(jnp.minimum(jnp.abs(state.f), 1.0))
        stationary = definite & ~linear & ~state.falling & jnp.all(
            jnp.abs(newton_step) <= self.decrement_tol * resolution + 4 * eps * jnp.abs(state.z))
        # Receding: Newton steps that keep their length along one direction, a loss that
        # approaches its supremum at infinity (module notes). Only a Newton step that
        # continues the last and shrinks, or a negligible one, ends it; a reversed step
        # does not (rounding noise reverses the step where the loss has gone flat).
        receding = ~stationary & jnp.where(continues, rate > LINEAR_RATES[1], state.receding)
        direction_ok = jnp.all(jnp.isfinite(p))
        p = jnp.where(direction_ok, p, 0.0)
        length = jnp.where(direction_ok, jnp.linalg.norm(coef), radius)

        z_try = state.z + p
        f_try, g_try, h_try = objective.value_grad_hessian(z_try)
        trial_finite = (jnp.isfinite(f_try) & jnp.all(jnp.isfinite(g_try))
                        & jnp.all(jnp.isfinite(h_try)))
        predicted = -(projected @ coef + 0.5 * jnp.sum(eigenvalues * coef ** 2))
        actual = state.f - f_try
        rho = jnp.where(predicted > 0, actual / jnp.where(predicted > 0, predicted, 1.0), -jnp.inf)
        noise = 64 * eps * jnp.abs(state.f)
        at_noise_floor = ((predicted <= noise) & (actual >= -16 * noise)
                          & (jnp.linalg.norm(g_try) < jnp.linalg.norm(state.g)))
        # An extrapolated step beyond twice Newton's is beyond the quadratic model: it is
        # accepted on sufficient decrease against the slope (Armijo).
        slope = state.g @ p
        armijo = actual >= -1e-4 * slope
        # Until a first step is accepted (``last`` is still zero) nothing backs the model
        # away from the start: a step must earn a good ratio.
        first = jnp.all(state.last == 0)
        accept = direction_ok & trial_finite & (
            jnp.where(chain, armijo, rho >= jnp.where(first, 0.25, 1e-4)) | at_noise_floor)
        rho_c = jnp.where(at_noise_floor | (chain & accept), 1.0,
                          jnp.where(jnp.isfinite(rho) & trial_finite, rho, -1.0))
        # A poor step: the radius shrinks to the minimiser of the quadratic through f, its
        # slope along the step and f at the trial (Dennis & Schnabel 1983, 6.4.2), within
        # [0.1, 0.5] of the step; a non-finite trial to a tenth.
        curvature = f_try - state.f - slope
        fraction = jnp.where(trial_finite & (curvature > 0),
                             -slope / (2 * jnp.where(curvature > 0, curvature, 1.0)), 0.1)
        fraction = jnp.clip(fraction, 0.1, 0.5)
        # The radius follows the step just taken: after a rejection, the step shrunk; after
        # an acceptance, the step measured in the new point's scaling (which can differ
        # by orders of magnitude), doubled when the model predicted it well.
        new_scale = self._scale(h_try, state.scale)
        new_d = self._root(new_scale)
        moved = jnp.linalg.norm(new_d * p)
        # A failed extrapolation says nothing about the quadratic model: the radius stays.
        new_radius = jnp.where(
            accept,
            jnp.where(rho_c > 0.75, 2.0 * moved,
                      jnp.where(rho_c >= 0.25, moved, fraction * moved)),
            jnp.where(chain, radius, fraction * jnp.minimum(length, radius)))
        stalled = ~accept & (length <= 4 * eps * jnp.linalg.norm(state.z * d) + tiny)
        # No step can reduce the loss beyond its rounding any more (module notes).
        settled = definite & jnp.all(
            jnp.abs(newton_step) <= self.settled_tol * se + 4 * eps * jnp.abs(state.z))
        # A stalled trial moved z by rounding only, so its loss change is the loss's noise:
        # where the whole Newton step promises less than that, no step can be told from noise.
        newton_decrease = 0.5 * jnp.sum(projected ** 2 / positive)
        drowned = definite & trial_finite & (newton_decrease <= jnp.abs(actual - predicted))
        stationary = stationary | (stalled & (settled | drowned))

        # A step the quadratic model did not describe (a predicted decrease below the loss's
        # rounding, or a ratio far from 1) tells nothing of the path: no extrapolation,
        # linear approach or receding is read from the next Newton step against it.
        described = (predicted > noise) & (rho_c >= 0.25) & (rho_c <= 4.0)

        pick = lambda new, old: jnp.where(accept, new, old)
        new_state = NewtonState(
            z=pick(z_try, state.z), f=pick(f_try, state.f), g=pick(g_try, state.g),
            hessian=pick(h_try, state.hessian), radius=new_radius,
            scale=pick(new_scale, state.scale),
            last=pick(p, state.last),
            multiplier=jnp.where(accept & (pure | chain) & described, multiplier, 0.0),
            cooldown=jnp.where(chain & ~accept, COOLDOWN, jnp.maximum(state.cooldown - 1, 0.0)),
            saddle=~accept & state.saddle,
            falling=accept & shrinking & (linear | (actual > FALLING_CUT * jnp.abs(state.f))),
            settled=~accept & settled,
            receding=receding)
        return new_state, stalled | stationary, stationary
