"""``Model``: what a fit maximises, as one immutable value (``jm.Model``).

A Model bundles the log-density with the constraints and the log-prior it is fitted under,
so a ``Fit`` can remember it (``fit.model``) and the tools that start from a fit
(``profile``, ``bootstrap``, ``diagnose``, ``refit``) work on exactly the objective that
was maximised. Models are compared by value: two Models built from the same function,
equal constraints and the same prior are equal and hash alike, so they share compiled fits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax


def _key(value):
    """A hashable, comparable stand-in for a field: constraint pytrees by value."""
    if value is None or callable(value):
        return value
    leaves, treedef = jax.tree_util.tree_flatten(value)
    return treedef, tuple(leaves)


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """A log-likelihood to maximise: log-density, constraints and optional log-prior.

    Attributes:
        log_density: ``log_density(params, data)``, traceable JAX code returning the total
            log-likelihood (a scalar) or per-observation terms (shape ``(n,)``).
        constraints: None (every parameter real) or a pytree matching the parameters (a dict
            may name only some keys) of ``jm.real``, ``jm.positive``, ``jm.unit_interval``,
            ``jm.interval(lo, hi)``, ``jm.simplex``, ``jm.ordered``.
        log_prior: optional ``log_prior(params) -> scalar``; fits are then MAP.

    Example:
        >>> import numpy as np
        >>> from jax.scipy import stats
        >>> import jaxmle as jm
        >>> normal = jm.Model(lambda p, x: stats.norm.logpdf(x, p["mu"], p["sigma"]),
        ...                   constraints={"sigma": jm.positive})
        >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=200)
        >>> fit = jm.fit(normal, {"mu": 0.0, "sigma": 1.0}, x)
        >>> fit.model == normal, bool(fit.params["sigma"] > 0)
        (True, True)
    """

    log_density: Callable
    constraints: Any = dataclasses.field(default=None, kw_only=True)
    log_prior: Callable | None = dataclasses.field(default=None, kw_only=True)

    def __post_init__(self):
        if not callable(self.log_density):
            raise TypeError("log_density must be a function log_density(params, data), got "
                            f"{self.log_density!r}")
        if self.log_prior is not None and not callable(self.log_prior):
            raise TypeError("log_prior must be a function log_prior(params) or None, got "
                            f"{self.log_prior!r}")

    def _identity(self) -> tuple:
        return (type(self),) + tuple(_key(getattr(self, field.name))
                                     for field in dataclasses.fields(self))

    def __eq__(self, other) -> bool:
        return isinstance(other, Model) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())


def resolve(model, *, constraints=None, log_prior=None) -> Model:
    """The Model of a public call: ``model`` itself, or a bare log-density with the keywords.

    Raises:
        ValueError: ``model`` is a Model and a keyword contradicts it.
        TypeError: ``model`` is neither a Model nor a function.
    """
    if not isinstance(model, Model):
        if not callable(model):
            raise TypeError("expected a jm.Model or a function log_density(params, data), got "
                            f"{model!r}")
        return Model(model, constraints=constraints, log_prior=log_prior)
    for name, given in (("constraints", constraints), ("log_prior", log_prior)):
        if given is not None and _key(given) != _key(getattr(model, name)):
            raise ValueError(
                f"{name}= contradicts the Model, which has {name}={getattr(model, name)!r}; "
                f"build the Model with the {name} you want (jm.Model(..., {name}=...)) "
                f"or leave {name}= out")
    return model
