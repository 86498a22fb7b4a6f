"""The protocol every solver meets: a pair of pure functions over NamedTuple state.

The loop driver (``core._loop``) owns the iteration; a solver only says how to start at a
point and how to take one step from a state (optax's ``GradientTransformation`` and
blackjax's ``init``/``step`` pairs are the models). Solvers minimise a loss (the negative
log-likelihood, or the negative log-posterior) of one flat unconstrained vector ``z`` of
shape ``(k,)``; the sign flip and the reparameterisation happen before they see it
(``core._objective``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import jax

if TYPE_CHECKING:
    from jaxmle.core._objective import Objective


class SolverState(Protocol):
    """A solver's state: a NamedTuple with at least these fields.

    Attributes:
        z: ``(k,)`` the current iterate.
        f: ``()`` the loss at ``z``.
        g: ``(k,)`` its gradient.

    Optional fields the driver reads: ``unfinished`` (bool: ``z`` is known to be no
    optimum whatever its gradient, e.g. clearly negative curvature or a loss still falling
    fast), ``settled`` (bool: ``z`` is as near its optimum as the rounding of the loss
    allows) and ``receding`` (bool: the iterates run off towards infinity; a stop there
    is BOUNDARY).
    """

    z: jax.Array
    f: jax.Array
    g: jax.Array


class Solver(Protocol):
    """What the loop driver and the fit need from a solver (hashable: it keys compiled fits).

    Attributes:
        name: the label of ``Fit.method``.
        patient: the driver's budget by progress applies (``_loop.PATIENCE``,
            ``_loop.WINDOW``): a fit whose loss stopped falling beyond rounding, or gains
            nothing over a window, stops instead of running to ``max_iter``.
            For solvers that make steady progress per iteration (Newton); a gradient method
            may creep below rounding for long stretches and still arrive.
        mean_loss: the solver works on the loss averaged over observations, so its step
            sizes (learning rates) do not depend on ``n`` (plain optax gradient methods).
        one_evaluation: ``init`` evaluates ``objective.value_grad_hessian`` once, at ``z``,
            ``step`` once, at a point computed from its state alone, and neither calls the
            objective otherwise (Newton): the driver can then evaluate the objective at one
            place in the loop for the start and every step (``_loop.run_with_aux``).
    """

    name: str
    patient: bool
    mean_loss: bool
    one_evaluation: bool

    def init(self, objective: Objective, z: jax.Array) -> SolverState:
        """The state at ``z``."""

    def step(self, objective: Objective, state: SolverState
             ) -> tuple[SolverState, jax.Array, jax.Array]:
        """One iteration: ``(proposed state, stop, stationary)``. ``stationary`` is the
        solver's own scale-free optimality test at ``state`` (the driver then keeps
        ``state`` as the estimate); ``stop`` is True when the solver can go no further (it
        includes ``stationary``)."""

    def derivatives(self, objective: Objective, state: SolverState
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Loss, gradient and exact Hessian at ``state.z``, for the certification (kept
        from the state where it has them, else evaluated once)."""
