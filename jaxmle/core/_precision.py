"""Precision policy: float64 by default, float32 by explicit choice, in one place.

jaxmle never flips the user's global ``jax_enable_x64`` flag. Every fit runs inside
``jax.enable_x64(True)`` (a thread-local context) when the working precision is float64, and
returns numpy arrays: outside that context JAX would silently truncate float64 arrays to
float32 in any further arithmetic. Helpers that compute with JAX on a finished ``Fit``
(``lr_test``, ``delta_method``) re-enter the context with ``scope_like``.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

PRECISIONS = ("float64", "float32")


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


def scope_like(x) -> contextlib.AbstractContextManager:
    """The precision scope matching the floating dtype of array ``x``."""
    return scope("float64" if np.dtype(x.dtype) == np.float64 else "float32")

