"""The loop driver: it owns every iteration, the stopping test, non-finite checks, the cap.

Solvers meet the ``Solver`` protocol (``solvers._solver``): pure ``init(objective, z0)``
and ``step(objective, state) -> (state, stop, stationary)`` over NamedTuple state. No
solver, fit or search has a loop of its own: ``run`` takes one fit to its end (single
fits, preliminary fits, profile points, the outer fit of a mixed model); ``run_lanes``
steps a group of fits side by side (a round of a batch, ``_batch``), where ``advance``
leaves a finished fit unchanged; ``repeat`` runs any other capped search over NamedTuple
state (the profile's search for an interval end, a group's inner mode in a mixed model).
``lax.while_loop`` is written here only.

Stopping rule (Dennis & Schnabel, *Numerical Methods for Unconstrained Optimization*, 1983,
section 7.2, the relative gradient): stop when

    max_i |g_i| * max(|z_i|, 1) / max(|f|, 1) <= gtol,

a test invariant to the scale of the loss, so the same ``gtol`` serves the summed
log-likelihood (Newton, BFGS, L-BFGS) and the per-observation mean (optax methods); or when
the solver reports the iterate stationary. The estimate is then certified with the exact
Hessian (see ``_information``).

Budget by progress (Newton; a solver opts in with ``patient = True``): a fit whose loss
has not fallen beyond its rounding level (``64 eps (1 + |f|)``), nor its iterate moved by
more than ``sqrt(eps)`` relative, for ``PATIENCE`` iterations, or whose loss fell over the
last ``WINDOW`` iterations by a gain nil both statistically and relative to itself
(``NIL_GAIN``, ``NIL_FRACTION``), stops STALLED, or CONVERGED when its solver reports the
iterate ``settled`` (as near its optimum as rounding allows); otherwise it runs to
``max_iter``. A state may also report ``unfinished`` (Newton: a start
with clearly negative curvature, or an iterate whose loss is still falling fast relative to
itself): the gradient test does not stop there; and ``receding`` (Newton: iterates running
off towards infinity): any stop there is BOUNDARY.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from jaxmle.core._objective import Objective
from jaxmle.core._status import RUNNING, Status

if TYPE_CHECKING:
    from jaxmle.solvers._solver import Solver

State = TypeVar("State")


# A fit (of a ``patient`` solver) whose loss has not fallen beyond its rounding level for
# this many iterations has stalled, whatever its iteration cap.
PATIENCE = 50
# ... and so has one whose loss fell, over the last ``WINDOW`` iterations, by less than
# ``NIL_GAIN`` (log-likelihood units: a likelihood-ratio statistic moving by 2e-3) and by
# less than ``NIL_FRACTION`` of itself. Measured on benchmarks/hard_problems.py, per 1,000
# iterations: the crawls that reach their minimum (Meyer from 100x, 8,377 iterations;
# Osborne 1 from 100x with sigma free, 1,190) gain at least 3.6e-2 of their loss; Meyer's
# crawls with sigma free, which reach nothing by 10,000, 1e-7 to 2e-6; two-component
# mixtures whose component has shrunk onto one observation (sigma 1e-14, below what its
# mean's rounding resolves) 1e-9.
WINDOW = 500
NIL_GAIN, NIL_FRACTION = 1e-3, 1e-5


class LoopState(NamedTuple):
    solver_state: Any
    n_iter: jax.Array
    status: jax.Array
    reference: jax.Array  # the loss at the last iteration that gained beyond rounding
    idle: jax.Array       # iterations since then
    checkpoint: jax.Array  # the loss at the last multiple of WINDOW iterations


def relative_gradient(z: jax.Array, f: jax.Array, g: jax.Array) -> jax.Array:
    """Dennis-Schnabel relative gradient ``max_i |g_i| max(|z_i|,1) / max(|f|,1)``."""
    return jnp.max(jnp.abs(g) * jnp.maximum(jnp.abs(z), 1.0)) / jnp.maximum(jnp.abs(f), 1.0)


def _finite(state) -> jax.Array:
    return _finite_at(state.z, state.f, state.g)


def _finite_at(z, f, g) -> jax.Array:
    return jnp.isfinite(f) & jnp.all(jnp.isfinite(g)) & jnp.all(jnp.isfinite(z))


def _unfinished(state) -> jax.Array:
    """True where the solver knows its iterate is no optimum whatever its gradient (a
    state's optional ``unfinished`` field: a saddle point it can leave, a loss still
    falling fast relative to itself)."""
    return jnp.asarray(getattr(state, "unfinished", False))


def start(solver: Solver, objective: Objective, z0: jax.Array, *, max_iter: int, gtol: float,
          blocked: jax.Array | int = RUNNING) -> LoopState:
    """The loop state at ``z0``: the solver initialised and the stopping test applied.

    ``blocked``: a status code other than RUNNING skips the iterations (bad data found
    before the solve), so such a dataset never holds up the others in its batch.
    """
    state0 = solver.init(objective, z0)
    status0 = start_status(state0.z, state0.f, state0.g, unfinished=_unfinished(state0),
                           max_iter=max_iter, gtol=gtol, blocked=blocked)
    zero = jnp.zeros((), jnp.int32)
    return LoopState(state0, zero, status0, state0.f, zero, state0.f)


def start_status(z: jax.Array, f: jax.Array, g: jax.Array, *, max_iter: int, gtol: float,
                 unfinished: jax.Array | bool = False,
                 blocked: jax.Array | int = RUNNING) -> jax.Array:
    """The status of a fit at its first point ``z`` (loss ``f``, gradient ``g``):
    ``blocked`` unless RUNNING, NONFINITE_START, CONVERGED where the relative gradient
    passes ``gtol`` and the point is not ``unfinished``, MAX_ITER under a cap of 0, else
    RUNNING (int32)."""
    ok = _finite_at(z, f, g)
    converged = ok & (relative_gradient(z, f, g) <= gtol) & ~jnp.asarray(unfinished, bool)
    status = jnp.where(blocked != RUNNING, blocked,
             jnp.where(~ok, int(Status.NONFINITE_START),
                       jnp.where(converged, int(Status.CONVERGED),
                                 jnp.where(max_iter <= 0, int(Status.MAX_ITER), RUNNING))))
    return status.astype(jnp.int32)


def advance(solver: Solver, objective: Objective, loop: LoopState, *, max_iter: int,
            gtol: float) -> LoopState:
    """One iteration; a no-op on a finished loop (so a batch can step all its members)."""
    proposed, stop, stationary = solver.step(objective, loop.solver_state)
    nonfinite = ~stationary & ~_finite(proposed)
    # A stationary iterate is the estimate, not the step taken from it; and a non-finite
    # step ends the fit without ever becoming the estimate: keep the old state in both.
    running = loop.status == RUNNING
    keep_old = stationary | nonfinite | ~running
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(keep_old, b, a),
                                 proposed, loop.solver_state)
    n_iter = loop.n_iter + 1
    eps = jnp.finfo(new.f.dtype).eps
    # Progress: the loss fell beyond rounding, or the iterate moved (exploring a plateau
    # where the loss is flat to rounding, with steps that grow).
    moved = jnp.any(jnp.abs(new.z - loop.solver_state.z)
                    > jnp.sqrt(eps) * jnp.maximum(jnp.abs(loop.solver_state.z), 1.0))
    gained = (loop.reference - new.f > 64 * eps * (1.0 + jnp.abs(new.f))) | moved
    reference = jnp.where(gained, new.f, loop.reference)
    idle = jnp.where(gained, 0, loop.idle + 1)
    converged = stationary | ((relative_gradient(new.z, new.f, new.g) <= gtol) & ~_unfinished(new))
    # Out of patience at a point the solver reports settled (as near its optimum as the
    # rounding of the loss lets it get): converged. Solvers opt in (``patient``): a
    # gradient method's loss can creep below rounding for long stretches and still arrive.
    # A window's end: a gain nil both statistically and relative to the loss is none.
    window_end = n_iter % WINDOW == 0
    nil = loop.checkpoint - new.f < jnp.minimum(NIL_GAIN, NIL_FRACTION * jnp.abs(new.f))
    checkpoint = jnp.where(window_end, new.f, loop.checkpoint)
    out_of_patience = ((idle >= PATIENCE) | (window_end & nil)) & solver.patient
    converged = converged | (out_of_patience & jnp.asarray(getattr(new, "settled", False)))
    # A stop on a path that recedes towards infinity is no optimum: the likelihood's
    # supremum lies at the edge of the space, where the loss fell below its rounding.
    receding = jnp.asarray(getattr(proposed, "receding", False))
    status = jnp.select(
        [~running, nonfinite, (converged | stop | out_of_patience) & receding, converged,
         stop | out_of_patience, n_iter >= max_iter],
        [loop.status, int(Status.NONFINITE), int(Status.BOUNDARY), int(Status.CONVERGED),
         int(Status.STALLED), int(Status.MAX_ITER)],
        RUNNING)
    return LoopState(new, jnp.where(running, n_iter, loop.n_iter), status.astype(loop.status.dtype),
                     jnp.where(running, reference, loop.reference),
                     jnp.where(running, idle, loop.idle),
                     jnp.where(running, checkpoint, loop.checkpoint))


def running(loop: LoopState) -> jax.Array:
    """True while a fit iterates (elementwise over lanes)."""
    return loop.status == RUNNING


def repeat(step: Callable[[State], State], state: State,
           keep_going: Callable[[State], jax.Array]) -> State:
    """``step`` applied to ``state`` while ``keep_going(state)`` (a traced loop); the
    caller's state carries its own cap."""
    return jax.lax.while_loop(keep_going, step, state)


def run(solver: Solver, objective: Objective, z0: jax.Array, *, max_iter: int, gtol: float,
        blocked: jax.Array | int = RUNNING) -> LoopState:
    """The loop state where the fit of ``objective`` from ``z0`` (``(k,)``) stops."""
    return repeat(lambda loop: advance(solver, objective, loop, max_iter=max_iter, gtol=gtol),
                  start(solver, objective, z0, max_iter=max_iter, gtol=gtol, blocked=blocked),
                  running)


def run_with_aux(solver: Solver, value_grad_hessian_aux: Callable, z0: jax.Array, aux0, *,
                 max_iter: int, gtol: float, blocked: jax.Array | int = RUNNING):
    """``(loop state, aux)`` where the fit from ``z0`` stops, as ``run``, for an objective
    ``value_grad_hessian_aux(z) -> (loss, gradient, Hessian, aux)`` whose derivative program
    outweighs the solver's own code (the mixed model's Laplace likelihood). ``aux`` (a
    pytree shaped like ``aux0``) is the one of the evaluation at the final iterate.

    The solver (``one_evaluation``: Newton) starts lazily (``_Lazy``): the loop's first pass
    evaluates the objective at ``z0`` and applies the start's tests, later passes evaluate
    it where the solver's step asks, so the objective is compiled once, not twice (start and
    step). For a cheap objective ``run`` is the smaller program: the start's own code then
    sits in the loop (measured on a Normal fit: 154 against 141 kernels); under ``vmap``
    both branches of the first-pass choice would also run on every pass.
    """
    if not solver.one_evaluation:
        raise ValueError(f"{solver.name} evaluates its objective more than once per step")
    options = dict(max_iter=max_iter, gtol=gtol)

    def one_pass(lazy: _Lazy) -> _Lazy:
        point = jax.lax.cond(lazy.started,
                             lambda: _evaluation_point(solver, lazy.loop.solver_state),
                             lambda: z0)
        *derivatives, aux = value_grad_hessian_aux(point)
        given = _given(tuple(derivatives))
        loop = jax.lax.cond(lazy.started,
                            lambda: advance(solver, given, lazy.loop, **options),
                            lambda: start(solver, given, z0, blocked=blocked, **options))
        # The evaluation's aux belongs to the iterate when the iterate is its point.
        kept = jnp.all(loop.solver_state.z == point)
        aux = jax.tree_util.tree_map(lambda new, old: jnp.where(kept, new, old), aux, lazy.aux)
        return _Lazy(loop, jnp.ones((), bool), aux)

    # Zeros shaped like a started loop: the first pass replaces them, so no code of the
    # solver's start runs before the loop.
    shape = jax.eval_shape(lambda z: start(solver, _given(_placeholder_derivatives(z)), z,
                                           blocked=blocked, **options), z0)
    placeholder = jax.tree_util.tree_map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), shape)
    lazy = repeat(one_pass, _Lazy(placeholder, jnp.zeros((), bool), aux0),
                  lambda lazy: ~lazy.started | running(lazy.loop))
    return lazy.loop, lazy.aux


def run_lanes(step: Callable[[LoopState], LoopState], lanes: LoopState,
              quota: jax.Array | int) -> LoopState:
    """Fits side by side (a leading lane axis on ``lanes``), all stepped by ``step`` until
    at most ``quota`` of them still run."""
    return repeat(step, lanes, lambda lanes: jnp.sum(running(lanes)) > quota)


class _Lazy(NamedTuple):
    """A fit whose start is the first pass of its loop (``started`` False until then), and
    the aux of the evaluation at its iterate (``run_with_aux``)."""

    loop: LoopState
    started: jax.Array
    aux: Any


def _placeholder_derivatives(z: jax.Array):
    """Zero loss, gradient ``(k,)`` and Hessian ``(k, k)``: the shapes of a state."""
    zero = jnp.zeros((), z.dtype)
    return zero, jnp.zeros_like(z), jnp.zeros((z.shape[0], z.shape[0]), z.dtype)


def _given(derivatives) -> Objective:
    """An objective that answers every call with ``derivatives`` ``(f, g, h)``: a solver of
    ``one_evaluation`` asks for them once, at the point ``_evaluation_point`` computed."""
    return Objective(lambda z: derivatives[0], lambda z: derivatives[:2], lambda z: derivatives)


def _evaluation_point(solver: Solver, state) -> jax.Array:
    """The point where ``solver.step`` evaluates the objective from ``state``: recorded
    from a step traced with placeholder derivatives, whose other results are unused and
    dropped. The step computes its proposal again when it runs (in another branch of
    ``run_with_aux``'s pass): a second small eigendecomposition per pass, cheap next to the
    objectives this serves."""
    points = []

    def record(z):
        points.append(z)
        return _placeholder_derivatives(z)

    solver.step(Objective(lambda z: record(z)[0], lambda z: record(z)[:2], record), state)
    (point,) = points
    return point
