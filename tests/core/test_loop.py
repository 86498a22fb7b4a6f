"""The loop driver: its budget by progress (patience, settled iterates, opting in) and the
lazy start of a one-evaluation solver."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxmle as jm
from jaxmle.core import _loop
from jaxmle.core._objective import Objective
from jaxmle.core._status import RUNNING
from jaxmle.solvers import _optax_solver
from jaxmle.solvers._newton import Newton


class _Idle(NamedTuple):
    z: jax.Array
    f: jax.Array
    g: jax.Array
    settled: jax.Array


class _IdleSolver:
    """A solver that never moves and whose gradient never passes the stopping test."""

    def __init__(self, patient, settled):
        self.patient, self.settled = patient, settled

    def init(self, objective, z):
        return _Idle(z, jnp.asarray(1.0), jnp.ones_like(z), jnp.asarray(self.settled))

    def step(self, objective, state):
        return state, jnp.asarray(False), jnp.asarray(False)


def _run(solver, max_iter):
    loop = _loop.start(solver, None, jnp.zeros(2), max_iter=max_iter, gtol=1e-10)
    while bool(_loop.running(loop)):
        loop = _loop.advance(solver, None, loop, max_iter=max_iter, gtol=1e-10)
    return jm.Status(int(loop.status)), int(loop.n_iter)


@pytest.mark.parametrize("settled, status", [(False, jm.Status.STALLED),
                                             (True, jm.Status.CONVERGED)])
def test_a_patient_solver_that_gains_nothing_stops_after_the_patience_window(settled, status):
    assert _run(_IdleSolver(True, settled), 10 * _loop.PATIENCE) == (status, _loop.PATIENCE)


class _CreepingSolver(_IdleSolver):
    """A patient solver whose loss (from 1,000) falls by ``gain`` per step, beyond rounding."""

    def __init__(self, gain):
        super().__init__(True, False)
        self.gain = gain

    def init(self, objective, z):
        return _Idle(z, jnp.asarray(1_000.0), jnp.ones_like(z), jnp.asarray(False))

    def step(self, objective, state):
        return state._replace(f=state.f - self.gain), jnp.asarray(False), jnp.asarray(False)


def test_a_fit_whose_gains_are_nil_over_a_window_stops_at_its_end():
    # 1e-9 per step: 5e-7 per window, below NIL_GAIN and NIL_FRACTION x 1,000 = 1e-2.
    assert _run(_CreepingSolver(1e-9), 4 * _loop.WINDOW) == (jm.Status.STALLED, _loop.WINDOW)
    # 1e-4 per step: 5e-2 per window is statistically something (above NIL_GAIN).
    assert _run(_CreepingSolver(1e-4), 4 * _loop.WINDOW) == (jm.Status.MAX_ITER,
                                                            4 * _loop.WINDOW)


def test_a_mixture_component_shrunk_onto_one_observation_stops_instead_of_crawling():
    # A fit of benchmarks/inference.py's multistart at its batch cap: the second component
    # (weight 1/500, sigma 1e-13 on one observation) gains ~1e-9 of the loss per 1,000
    # Newton iterations, beyond rounding, and ran to the cap of 10,000 (MAX_ITER).
    rng = np.random.default_rng(1)
    first = rng.uniform(size=(1_000, 500)) < 0.3
    x = np.where(first, rng.normal(-2.0, 0.5, first.shape), rng.normal(1.5, 1.5, first.shape))
    start = {"mu": ["0x1.feed03a1f759cp-2", "0x1.ff579ef5c2e18p-2"],
             "sigma": ["0x1.1001bef321ee1p+1", "0x1.764e312df6f5fp-44"],
             "weights": ["0x1.fef9db193cacdp-1", "0x1.0624e6c3533c2p-9"]}
    start = {name: np.array([float.fromhex(v) for v in values]) for name, values in start.items()}
    fit = jm.fit(jm.models.gaussian_mixture(2), start, x[425])
    assert fit.status == jm.Status.STALLED and int(fit.n_iter) == _loop.WINDOW


def test_a_solver_without_patience_runs_to_its_cap():
    assert _run(_IdleSolver(False, True), 2 * _loop.PATIENCE) == (jm.Status.MAX_ITER,
                                                                  2 * _loop.PATIENCE)


def _objective(loss, calls=None):
    def value_grad_hessian(z):
        if calls is not None:
            calls.append(z)
        return loss(z), jax.grad(loss)(z), jax.hessian(loss)(z)
    return Objective(loss, jax.value_and_grad(loss), value_grad_hessian)


def _rosenbrock(z):
    return 100 * (z[1] - z[0] ** 2) ** 2 + (1 - z[0]) ** 2


def _log_squares(z):
    return jnp.sum(jnp.log(z) ** 2)


def _lazy(solver, objective, z, **options):
    with_aux = lambda z: (*objective.value_grad_hessian(z), ())
    return _loop.run_with_aux(solver, with_aux, z, (), **options)[0]


@functools.cache
def _fit(run, loss):
    """Compiled once per loop and loss: the cap and the blocked status are traced."""
    return jax.jit(lambda z, cap, blocked: run(Newton(), _objective(loss), z, max_iter=cap,
                                               gtol=1e-10, blocked=blocked))


@pytest.mark.parametrize("loss, z0, max_iter, blocked", [
    (_rosenbrock, [-1.2, 1.0], 1000, RUNNING),        # many steps, rejections among them
    (_rosenbrock, [1.0, 1.0], 1000, RUNNING),         # the start is the optimum
    (_rosenbrock, [-1.2, 1.0], 3, RUNNING),           # stopped by the cap
    (_rosenbrock, [-1.2, 1.0], 0, RUNNING),           # no iteration allowed
    (_log_squares, [-1.0, 2.0], 100, RUNNING),        # non-finite start
    (_rosenbrock, [-1.2, 1.0], 100, int(jm.Status.INVALID_DATA)),   # blocked
])
def test_the_lazy_start_gives_the_eager_start_s_fit(loss, z0, max_iter, blocked):
    z0 = jnp.asarray(z0)
    lazy = _fit(_lazy, loss)(z0, max_iter, blocked)
    eager = _fit(_loop.run, loss)(z0, max_iter, blocked)
    assert int(lazy.status) == int(eager.status) and int(lazy.n_iter) == int(eager.n_iter)
    assert jnp.array_equal(lazy.solver_state.z, eager.solver_state.z, equal_nan=True)


def test_the_objective_is_traced_once_in_a_lazy_loop_and_twice_in_an_eager_one():
    for run, count in ((_lazy, 1), (_loop.run, 2)):
        calls = []
        jax.make_jaxpr(lambda z: run(Newton(), _objective(_rosenbrock, calls), z,
                                     max_iter=100, gtol=1e-10))(jnp.zeros(2))
        assert len(calls) == count


def test_a_solver_that_evaluates_more_than_once_per_step_is_refused():
    with pytest.raises(ValueError, match="more than once"):
        _lazy(_optax_solver.from_method("bfgs"), _objective(_rosenbrock), jnp.zeros(2),
              max_iter=10, gtol=1e-10)


def test_the_aux_returned_is_the_one_of_the_final_iterate():
    # aux = the point evaluated: it must equal the final iterate, also where the last
    # evaluation was a rejected trial (a cap falling after one; Rosenbrock rejects some).
    def with_aux(z):
        return (*_objective(_rosenbrock).value_grad_hessian(z), {"at": z})

    fit = jax.jit(lambda z, cap: _loop.run_with_aux(  # the cap traced: compiled once
        Newton(), with_aux, z, {"at": jnp.zeros(2)}, max_iter=cap, gtol=1e-10))
    for cap in range(1, 40):
        loop, aux = fit(jnp.asarray([-1.2, 1.0]), cap)
        assert jnp.array_equal(aux["at"], loop.solver_state.z), cap
