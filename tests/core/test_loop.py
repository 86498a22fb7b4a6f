"""The loop driver's budget by progress: patience, settled iterates, opting in."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import pytest

import jaxmle as jm
from jaxmle.core import _loop


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


def test_a_solver_without_patience_runs_to_its_cap():
    assert _run(_IdleSolver(False, True), 2 * _loop.PATIENCE) == (jm.Status.MAX_ITER,
                                                                  2 * _loop.PATIENCE)
