"""Parameter constraints as plain, hashable data, each a bijection from the real line.

A constraint maps an unconstrained array ``z`` (what the optimiser moves) to the user's
parameter ``theta`` and back. Constraints are frozen dataclasses compared by value, so
``interval(0, 1)`` built twice selects the same compiled function.

| constraint          | support                  | map z -> theta                      |
|---------------------|--------------------------|-------------------------------------|
| ``real``            | all reals                | identity                            |
| ``positive``        | theta > 0                | exp(z)                              |
| ``unit_interval``   | 0 < theta < 1            | logistic(z)                         |
| ``interval(lo, hi)``| lo < theta < hi          | lo + (hi - lo) logistic(z)          |
| ``simplex``         | theta > 0, sums to 1 over the last axis (m entries, m - 1 free) | softmax([z, 0]) (additive log-ratio) |
| ``ordered``         | strictly increasing along the last axis | z_0, then z_0 + cumsum(exp(z_1:)) |
| ``cholesky``        | lower-triangular ``(q, q)`` with a positive diagonal (q(q+1)/2 free) | rows of the lower triangle, diagonal exp(z) |
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Constraint:
    """Base class: the identity map on the real line (``jm.real``)."""

    name = "real"
    # Each entry of theta depends on the same entry of z alone (monotonically): a profile
    # over one entry of z is a profile over that entry of theta.
    elementwise = True

    def free_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the unconstrained array for a parameter of ``shape``."""
        return shape

    def to_constrained(self, z: jax.Array) -> jax.Array:
        return z

    def to_unconstrained(self, theta: jax.Array) -> jax.Array:
        return theta

    def violation(self, theta: np.ndarray) -> str | None:
        """Why host array ``theta`` lies outside the support, or None if it lies inside."""
        if not np.all(np.isfinite(theta)):
            return "values must be finite"
        return None

    def __repr__(self) -> str:
        return f"jm.{self.name}"


@dataclasses.dataclass(frozen=True, repr=False)
class Positive(Constraint):
    name = "positive"

    def to_constrained(self, z):
        return jnp.exp(z)

    def to_unconstrained(self, theta):
        return jnp.log(theta)

    def violation(self, theta):
        return super().violation(theta) or (
            None if np.all(theta > 0) else "values must be > 0")


@dataclasses.dataclass(frozen=True, repr=False)
class Interval(Constraint):
    """The open interval ``(lo, hi)``; ``unit_interval`` is ``Interval(0, 1)``."""

    lo: float = 0.0
    hi: float = 1.0

    def __post_init__(self):
        lo, hi = float(self.lo), float(self.hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"interval(lo, hi) needs finite lo < hi, got lo={self.lo!r}, hi={self.hi!r}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def name(self):
        return "unit_interval" if (self.lo, self.hi) == (0.0, 1.0) else f"interval({self.lo:g}, {self.hi:g})"

    def to_constrained(self, z):
        return self.lo + (self.hi - self.lo) * jax.nn.sigmoid(z)

    def to_unconstrained(self, theta):
        u = (theta - self.lo) / (self.hi - self.lo)
        return jnp.log(u) - jnp.log1p(-u)

    def violation(self, theta):
        return super().violation(theta) or (
            None if np.all((theta > self.lo) & (theta < self.hi))
            else f"values must lie strictly inside ({self.lo:g}, {self.hi:g})")


@dataclasses.dataclass(frozen=True, repr=False)
class Simplex(Constraint):
    """Probability vectors along the last axis, by the additive log-ratio map."""

    name = "simplex"
    elementwise = False

    def free_shape(self, shape):
        return (*shape[:-1], shape[-1] - 1)

    def to_constrained(self, z):
        zero = jnp.zeros((*z.shape[:-1], 1), z.dtype)
        return jax.nn.softmax(jnp.concatenate([z, zero], axis=-1), axis=-1)

    def to_unconstrained(self, theta):
        log_theta = jnp.log(theta)
        return log_theta[..., :-1] - log_theta[..., -1:]

    def violation(self, theta):
        if theta.ndim == 0 or theta.shape[-1] < 2:
            return f"a simplex needs at least 2 entries along its last axis, got shape {theta.shape}"
        problem = super().violation(theta)
        if problem:
            return problem
        if not np.all(theta > 0):
            return "simplex entries must be > 0 (a zero start is on the boundary)"
        sums = theta.sum(axis=-1)
        if not np.allclose(sums, 1.0, rtol=0.0, atol=1e-6):
            return f"simplex entries must sum to 1 along the last axis, got sums {np.unique(sums)}"
        return None


@dataclasses.dataclass(frozen=True, repr=False)
class Ordered(Constraint):
    """Strictly increasing vectors along the last axis (first entry free, then positive
    increments on the log scale): makes the labels of exchangeable components canonical, e.g.
    the means of a mixture."""

    name = "ordered"
    elementwise = False

    def to_constrained(self, z):
        increments = jnp.exp(z[..., 1:])
        return jnp.concatenate([z[..., :1], z[..., :1] + jnp.cumsum(increments, axis=-1)], axis=-1)

    def to_unconstrained(self, theta):
        return jnp.concatenate([theta[..., :1], jnp.log(jnp.diff(theta, axis=-1))], axis=-1)

    def violation(self, theta):
        if theta.ndim == 0:
            return "an ordered parameter needs at least one axis"
        return super().violation(theta) or (
            None if np.all(np.diff(theta, axis=-1) > 0)
            else "values must be strictly increasing along the last axis")


@dataclasses.dataclass(frozen=True, repr=False)
class Cholesky(Constraint):
    """Lower-triangular matrices with a positive diagonal over the last two axes: the
    Cholesky factor ``L`` of a covariance ``L L'`` (Pinheiro & Bates 1996, "Unconstrained
    parametrizations for variance-covariance matrices", the log-Cholesky form). The free
    coordinates are the lower triangle row by row (``numpy.tril_indices`` order), the
    diagonal entries on the log scale; the upper triangle is fixed at 0."""

    name = "cholesky"
    elementwise = False

    def free_shape(self, shape):
        q = shape[-1]
        return (*shape[:-2], q * (q + 1) // 2)

    @staticmethod
    def _indices(q: int):
        rows, cols = np.tril_indices(q)
        return rows, cols, rows == cols

    def to_constrained(self, z):
        m = z.shape[-1]
        q = int(round((math.sqrt(8 * m + 1) - 1) / 2))
        rows, cols, diagonal = self._indices(q)
        values = jnp.where(diagonal, jnp.exp(z), z)
        out = jnp.zeros((*z.shape[:-1], q, q), z.dtype)
        return out.at[..., rows, cols].set(values)

    def to_unconstrained(self, theta):
        rows, cols, diagonal = self._indices(theta.shape[-1])
        values = theta[..., rows, cols]
        return jnp.where(diagonal, jnp.log(jnp.where(diagonal, values, 1.0)), values)

    def violation(self, theta):
        if theta.ndim < 2 or theta.shape[-1] != theta.shape[-2] or theta.shape[-1] < 1:
            return f"a Cholesky factor must be a square (q, q) matrix, got shape {theta.shape}"
        problem = super().violation(theta)
        if problem:
            return problem
        if np.any(np.triu(theta, 1) != 0):
            return "a Cholesky factor must be lower-triangular (zeros above the diagonal)"
        if not np.all(np.diagonal(theta, axis1=-2, axis2=-1) > 0):
            return "the diagonal of a Cholesky factor must be > 0"
        return None


real = Constraint()
positive = Positive()
unit_interval = Interval(0.0, 1.0)
simplex = Simplex()
ordered = Ordered()
cholesky = Cholesky()


def interval(lo: float, hi: float) -> Interval:
    """The open interval ``(lo, hi)``, e.g. ``jm.interval(-1, 1)`` for a correlation.

    Example:
        >>> import jaxmle as jm
        >>> jm.interval(-1, 1) == jm.interval(-1.0, 1.0)
        True
    """
    return Interval(lo, hi)


BY_NAME = {"real": real, "positive": positive, "unit_interval": unit_interval, "simplex": simplex,
           "ordered": ordered, "cholesky": cholesky}


def as_constraint(spec) -> Constraint:
    """Accepts a constraint object or one of the names in ``BY_NAME``; raises otherwise."""
    if isinstance(spec, Constraint):
        return spec
    if isinstance(spec, str) and spec in BY_NAME:
        return BY_NAME[spec]
    raise ValueError(
        f"unknown constraint {spec!r}; use one of jm.real, jm.positive, jm.unit_interval, "
        f"jm.simplex, jm.ordered, jm.cholesky, jm.interval(lo, hi) (or the names {sorted(BY_NAME)})")
