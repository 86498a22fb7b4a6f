"""Any optax transformation as a ``Solver`` (``_solver``) for the loop driver: BFGS, L-BFGS,
gradient ascent.

The transformation receives the gradient of the loss (the negative log-likelihood, averaged
over observations for plain gradient methods so that learning rates do not depend on n) and
the extra arguments ``value``, ``grad`` and ``value_fn`` that line-search transformations use.
When the transformation's state stores the value and gradient of the accepted point (optax's
line searches do), they are read from there instead of being recomputed.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxmle.solvers import _bfgs


class OptaxState(NamedTuple):
    z: jax.Array
    f: jax.Array
    g: jax.Array
    opt_state: Any


@dataclasses.dataclass(frozen=True)
class OptaxSolver:
    """Solver over ``transformation``.

    Attributes:
        transformation: an optax transformation (extra arguments are passed when accepted).
        name: label shown in summaries.
        line_search: the transformation stores the accepted point's value and gradient in its
            state (under the names ``value`` and ``grad``) and decreases the loss monotonically,
            so a zero step means it cannot make progress (the fit then stalls).
    """

    transformation: Any
    name: str
    line_search: bool
    patient = False  # gradient methods may creep below rounding and still arrive
    one_evaluation = False  # line searches evaluate the loss several times per step

    @property
    def mean_loss(self) -> bool:
        """Plain gradient methods step on the per-observation mean, so learning rates do
        not depend on ``n``; line searches find their own step lengths."""
        return not self.line_search

    def init(self, objective, z):
        f, g = objective.value_and_grad(z)
        with jax.numpy_dtype_promotion("standard"):
            return OptaxState(z, f, g, self.transformation.init(z))

    def derivatives(self, objective, state: OptaxState):
        """Loss, gradient and exact Hessian at ``state.z`` (one fresh evaluation)."""
        return objective.value_grad_hessian(state.z)

    def step(self, objective, state: OptaxState):
        # optax's internals mix int32/int64 counters; trace them under standard promotion
        # so users who run JAX with strict promotion can still use every method.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = self.transformation.update(
                state.g, state.opt_state, state.z, value=state.f, grad=state.g,
                value_fn=objective.value)
        z = state.z + updates
        if self.line_search:
            f, g = optax.tree.get(opt_state, "value"), optax.tree.get(opt_state, "grad")
            stalled = jnp.all(updates == 0)
        else:
            f, g = objective.value_and_grad(z)
            stalled = jnp.zeros((), bool)
        return OptaxState(z, f, g, opt_state), stalled, jnp.zeros((), bool)


@functools.lru_cache(maxsize=64)
def from_method(method) -> OptaxSolver:
    """The solver for ``"bfgs"``, ``"lbfgs"`` or a user's optax transformation.

    Cached, so the same method yields the same (hash-equal) solver and compiled fit.
    """
    if method == "bfgs":
        return OptaxSolver(_bfgs.bfgs(), "bfgs", True)
    if method == "lbfgs":
        return OptaxSolver(optax.lbfgs(), "lbfgs", True)
    return OptaxSolver(optax.with_extra_args_support(method), _optax_name(method), False)


# optax combinators: their update functions wrap the ones that say what the optimiser is.
_WRAPPERS = {"chain", "with_extra_args_support", "named_chain"}


def _factories(update, depth: int = 0) -> list[str]:
    """The functions that built ``update`` (``scale_by_adam`` for its ``update_fn``), looking
    through combinators such as ``chain`` into the functions they close over."""
    factory = getattr(update, "__qualname__", "").split(".")[0]
    if factory not in _WRAPPERS or depth > 8:
        return [factory] if factory else []
    names = []
    for cell in getattr(update, "__closure__", None) or ():
        contents = cell.cell_contents
        inner = contents if isinstance(contents, tuple) else (contents,)
        for item in inner:
            item = getattr(item, "update", item)
            if callable(item) and "update" in getattr(item, "__name__", ""):
                names += [name for name in _factories(item, depth + 1) if name not in names]
    return names


def _optax_name(transformation) -> str:
    """A label for ``Fit.method``: ``optax:scale_by_adam+scale_by_learning_rate`` for
    ``optax.adam(...)`` (optax builds most optimisers as chains of transformations)."""
    return "optax:" + ("+".join(_factories(transformation.update)) or "transformation")
