"""Precision policy: float64 by default, float32 by explicit choice, entered in one place.

jaxmle never flips the user's global ``jax_enable_x64`` flag. Every public function that
computes is decorated with ``public``: it runs inside ``jax.enable_x64(True)`` (a
thread-local context) when its working precision is float64, and returns numpy arrays, since
outside that context JAX would silently truncate float64 arrays to float32 in any further
arithmetic. The working precision is the function's ``precision`` argument where it has
one, else that of the fit it starts from (``lr_test``, ``profile``, ``compare``, ...).
Nothing below the public edge enters a scope of its own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TypeVar

import jax
import numpy as np

from jaxmle.core._fit import Fit

PRECISIONS = ("float64", "float32")

F = TypeVar("F", bound=Callable)


def check_precision(precision: str) -> str:
    """Returns ``precision`` if it is one of ``PRECISIONS``, else raises ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def scope(precision: str) -> contextlib.AbstractContextManager:
    """Context in which JAX computes at ``precision`` (enables x64 locally for float64)."""
    if check_precision(precision) == "float64":
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def of_fit(fit) -> str:
    """``"float64"`` or ``"float32"``: the precision a ``Fit`` was computed in."""
    return "float64" if np.asarray(fit.loglik).dtype == np.float64 else "float32"


def _working_precision(signature: inspect.Signature, args, kwargs) -> str:
    """The ``precision`` argument, else the precision of the first ``Fit`` among the
    arguments (or the values of a mapping of fits), else float64."""
    bound = signature.bind_partial(*args, **kwargs)
    if "precision" in signature.parameters:
        bound.apply_defaults()
        return check_precision(bound.arguments["precision"])
    for value in bound.arguments.values():
        candidates = value.values() if isinstance(value, Mapping) else (value,)
        for candidate in candidates:
            if isinstance(candidate, Fit):
                return of_fit(candidate)
    return "float64"


def public(function: F) -> F:
    """Runs the public ``function`` in its working precision (module notes). A generator
    function is resumed in that precision each time and never holds it across a
    ``yield``: the caller's code between items runs in its own precision."""
    signature = inspect.signature(function)

    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def resumed(*args, **kwargs):
            precision = _working_precision(signature, args, kwargs)
            items = function(*args, **kwargs)
            while True:
                with scope(precision):
                    try:
                        item = next(items)
                    except StopIteration:
                        return
                yield item

        return resumed

    @functools.wraps(function)
    def scoped(*args, **kwargs):
        with scope(_working_precision(signature, args, kwargs)):
            return function(*args, **kwargs)

    return scoped
